//! Pure logic over the vocabulary (layer 2): when a job is due, when a result is stale, how
//! a daemon is judged, the robot result readers, the agent text rendered from a status, and
//! the config parsed from text to a validated spec. No file, process or user-database access
//! of its own: what it reads comes in as values or through a reader handed to it. Imports
//! only [`crate::model`] (see docs/ARCHITECTURE.md).

pub mod agent;
pub mod agent_mode;
pub mod config;
pub mod ctrl_view;
pub mod liveness;
pub mod robot;
pub mod schedule;
pub mod staleness;
