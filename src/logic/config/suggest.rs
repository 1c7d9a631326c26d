//! Serde's and toml's words for a config error turned into an admin's: "a whole number"
//! instead of `usize`, "use [[job]] for each job" instead of `invalid type: map, expected a
//! sequence`, and "did you mean `every`?" (the nearest known key) instead of the list of
//! every field.

/// `message` (as toml's parse gives it, for `field` when known) in the admin's words.
pub(crate) fn admin_words(message: &str, field: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((key, known)) = rest.split_once('`') {
            return unknown_key(key, known);
        }
    }
    if message == "invalid type: map, expected a sequence" && field.is_none_or(|f| f == "job") {
        return "`[job]` is one table; write `[[job]]` (double brackets) above each job".into();
    }
    if message.starts_with("missing escaped value")
        || message.starts_with("invalid escape")
        || message.contains("expected `b`, `e`")
    {
        return "a backslash inside double quotes starts an escape sequence; use single quotes for Windows paths ('C:\\Program Files\\x.exe'), or write each backslash twice".into();
    }
    for int in ["usize", "u64", "u32", "u16", "u8", "i64", "i32"] {
        let Some(found) = message
            .strip_suffix(&format!(", expected {int}"))
            .map(str::trim)
        else {
            continue;
        };
        let signed = int.starts_with('i');
        let want = if signed {
            "a whole number"
        } else {
            "a whole number (0 or more)"
        };
        return match found.strip_prefix("invalid type: string ") {
            Some(s) => {
                format!("expected {want}, found the text {s}; write the number without quotes")
            }
            None => format!("expected {want}, found {}", found_words(found)),
        };
    }
    if let Some(found) = message.strip_suffix(", expected a sequence") {
        return format!(
            "expected a list in brackets, such as [\"program\", \"argument\"], found {}",
            found_words(found)
        );
    }
    message.to_string()
}

/// `invalid type: floating point `1.5`` → "1.5".
fn found_words(found: &str) -> String {
    let inner = found
        .strip_prefix("invalid type: ")
        .or_else(|| found.strip_prefix("invalid value: "))
        .unwrap_or(found);
    let inner = inner
        .replace("floating point ", "")
        .replace("integer ", "")
        .replace("string ", "the text ");
    inner.replace('`', "")
}

/// "unknown key `evry`; did you mean `every`?", or the keys when none is near.
fn unknown_key(key: &str, known: &str) -> String {
    let keys: Vec<&str> = known
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    let nearest = keys
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len());
    match nearest {
        Some((_, k)) => format!("unknown key `{key}`; did you mean `{k}`?"),
        None if keys.is_empty() => format!("unknown key `{key}`"),
        None => format!(
            "unknown key `{key}`; the keys here are described in the README's Config section"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::admin_words as w;

    #[test]
    fn types_become_words() {
        assert_eq!(
            w("invalid type: string \"4\", expected usize", Some("max_parallel")),
            "expected a whole number (0 or more), found the text \"4\"; write the number without quotes"
        );
        assert_eq!(
            w("invalid value: integer `-1`, expected usize", None),
            "expected a whole number (0 or more), found -1"
        );
        assert!(w("invalid type: map, expected a sequence", None).contains("[[job]]"));
        assert!(w(
            "unknown field `evry`, expected one of `name`, `every`, `cron`",
            None
        )
        .ends_with("did you mean `every`?"));
        assert!(!w(
            "unknown field `zzzzzz`, expected one of `name`, `every`",
            None
        )
        .contains("did you mean"));
    }
}
