//! Who this process acts for, in words: a pause's `by` and a build's messages name the user
//! the same way, from the environment (no user database lookup for a label).

/// The login behind sudo, else the user's name, made safe to show in a local check's line;
/// else `uid N` (this process's effective uid).
pub(crate) fn user_label() -> String {
    ["SUDO_USER", "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.trim().is_empty()))
        // Shown in a local check's text: nothing that could end its service name or line.
        .map(|v| {
            v.chars()
                .map(
                    |c| match c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '\\') {
                        true => c,
                        false => '_',
                    },
                )
                .take(64)
                .collect::<String>()
        })
        .unwrap_or_else(|| format!("uid {}", super::current_uid()))
}
