//! Length caps on text that came from a file, a run or the config, so what reaches a record,
//! `status.json` or the agent stays small whatever those held.

/// Longest text (an error, a note, a name) passed on to the agent: enough for any real
/// message, and a file someone filled with megabytes cannot flood the agent's output.
pub(crate) const MAX_TEXT: usize = 1024;
/// Longest name-like value (job, schedule, run id, suite).
pub(crate) const MAX_NAME: usize = 256;

/// Cuts `s` to at most `max` bytes (at a character boundary), marking the cut.
pub(crate) fn clip(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

pub(crate) fn clip_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        clip(s, max);
    }
}
