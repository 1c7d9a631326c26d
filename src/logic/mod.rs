//! Pure logic over the vocabulary (layer 2): when a job is due, when a result is stale, how
//! a daemon is judged, the robot result readers, the agent text rendered from a status, and
//! the config parsed from text to a validated spec. No file, process or user-database access
//! of its own: what it reads comes in as values or through a reader handed to it. Imports
//! only [`crate::model`] (see docs/ARCHITECTURE.md).

pub mod agent;
pub(crate) mod agent_mode;
pub(crate) mod build_error;
pub(crate) mod cached_view;
pub(crate) mod check_details;
pub(crate) mod checkmk_names;
pub(crate) mod config;
pub(crate) mod cron_set;
pub(crate) mod ctrl_view;
pub(crate) mod env_upkeep;
pub(crate) mod lifecycle_words;
pub(crate) mod liveness;
pub(crate) mod nagios;
pub(crate) mod pause_view;
pub(crate) mod plugin_view;
pub(crate) mod publish_plan;
pub mod robot;
pub(crate) mod run_env;
pub mod schedule;
pub(crate) mod scheduler;
pub(crate) mod staleness;
pub(crate) mod stopped;
