//! How a pause for maintenance shows in the agent output: each check of a paused job (its
//! own and its tests') OK with who paused and until when, WARN once the pause is older than
//! its warn age (a forgotten pause is noticed), the result before the pause after that; the
//! daemon's OK line names a pause of the whole instance.
//!
//! An input to the renderer ([`crate::logic::agent::render`], ctrl's fast path
//! [`crate::logic::ctrl_view`]), not a rewrite of its output: which job a check belongs to is
//! known where the check is made, and the line's grammar stays in `agent`. Reading
//! `pause.json` is `service::pause`'s.

use crate::model::pause::PauseState;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The pauses in force, as the agent output shows them at `now`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PauseView {
    pub(crate) state: PauseState,
    /// A pause older than this shows as WARN.
    pub(crate) warn_after: Duration,
    /// When the pauses are judged (ctrl's clock, read by its caller).
    pub(crate) now: DateTime<Utc>,
}

impl PauseView {
    /// The check of `job` while it is paused: its state, and what its text starts with (the
    /// text it would have without the pause follows). `None`: not paused.
    pub(crate) fn check(&self, job: &str) -> Option<(u8, String)> {
        let p = self.state.of(job, self.now)?;
        let age = (self.now - p.since).to_std().unwrap_or_default();
        let (state, old) = if age > self.warn_after {
            // Where the agent caches the output, an age would be served unchanged for the
            // cache's life: the time the pause began instead (`cached_view`).
            let since = match crate::logic::cached_view::absolute() {
                Some(_) => format!("since {}", crate::logic::cached_view::time(p.since)),
                None => format!(
                    "for {}",
                    crate::model::duration::human_age(age.as_secs_f64())
                ),
            };
            (
                1,
                format!(
                    " (paused {since}, longer than {})",
                    crate::model::duration::format(self.warn_after)
                ),
            )
        } else {
            (0, String::new())
        };
        Some((
            state,
            format!("{}{old}; before the pause: ", text(&p.words())),
        ))
    }

    /// What the daemon's line adds, when it is OK, about a pause of every job.
    pub(crate) fn daemon_note(&self) -> Option<String> {
        let all = self.state.all.as_ref().filter(|p| p.holds(self.now))?;
        Some(format!(", all jobs {}", text(&all.words())))
    }
}

/// A pause's words as they may stand in a check's text: who paused is whatever the
/// environment said (`CORP\nina` holds a literal `\n`, which would start the details).
fn text(words: &str) -> String {
    crate::logic::check_details::text(words)
}
