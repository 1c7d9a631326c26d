//! How a `kind = "plugin"` job's result reads in its local check (pure rendering, see
//! [`crate::logic::agent`]): the plugin's summary first, its metrics after the job's own, its long
//! output as details, each line after a literal `\n` (Checkmk's separator of summary and
//! details in a local check; a real line break would end the check line). Also how a URL is
//! put into a check text so that Checkmk makes one link of all of it.

use crate::logic::nagios::PluginOutput;

/// The text before the run's age: `DISK OK - free space: …, last run `.
pub(crate) fn head(p: &PluginOutput) -> String {
    // The daemon's own states are 0–3 (`nagios::state_of_exit`); another is from a status
    // file someone else wrote (another instance's): shown as UNKNOWN, and said why.
    let odd = (p.state > 3).then(|| {
        format!(
            "state {} is none of Checkmk's (0-3), shown as UNKNOWN",
            p.state
        )
    });
    match (p.reason.as_deref(), odd.as_deref()) {
        (Some(r), Some(o)) => format!("{} ({r}; {o}), last run ", p.summary),
        (Some(r), None) | (None, Some(r)) => format!("{} ({r}), last run ", p.summary),
        (None, None) => format!("{}, last run ", p.summary),
    }
}

/// The job's metrics (`-` or `a=1|b=2`) followed by the plugin's, whose names never take one
/// of the job's (a plugin's `runtime` becomes `plugin_runtime`).
pub(crate) fn metrics(job: &str, p: &PluginOutput) -> String {
    let mine: Vec<&str> = if job == "-" {
        Vec::new()
    } else {
        job.split('|').collect()
    };
    let own = |n: &str| mine.iter().any(|m| m.split('=').next() == Some(n));
    // Every name in the line, so that a renamed one takes none of them either (a plugin
    // printing `runtime` and `plugin_runtime` gets `plugin_runtime_2` for its first).
    let mut names: std::collections::HashSet<String> = mine
        .iter()
        .filter_map(|m| m.split('=').next())
        .chain(p.metrics.iter().map(|m| m.name.as_str()))
        .map(str::to_string)
        .collect();
    let mut all: Vec<String> = mine.iter().map(|m| m.to_string()).collect();
    for m in &p.metrics {
        if !crate::logic::nagios::is_metric_name(&m.name) || !m.value.is_finite() {
            continue;
        }
        let mut m = m.clone();
        if own(&m.name) {
            let base = format!("plugin_{}", m.name);
            let mut name = base.clone();
            let mut k = 2;
            while !names.insert(name.clone()) {
                name = format!("{base}_{k}");
                k += 1;
            }
            m.name = name;
        }
        all.push(m.render());
    }
    if all.is_empty() {
        "-".into()
    } else {
        all.join("|")
    }
}

/// The plugin's long output as details: `\n` (the two characters) before each line.
pub(crate) fn details(p: &PluginOutput) -> String {
    let mut out = String::new();
    for line in &p.details {
        out.push_str("\\n");
        // A line of its own: no break in it, nor a literal `\n` (`C:\nightly`) that would
        // split it in two for Checkmk.
        out.push_str(&crate::logic::check_details::text(line));
    }
    out
}

/// `url` as it may stand in a check text: one Checkmk link, or nothing where a status file
/// carries something that is no such URL.
pub(crate) fn url_text(url: &str) -> &str {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '"' | '\'' | '>' | '<' | ',' | '\\' | '|' | ';')
        });
    if ok {
        url
    } else {
        "(invalid URL)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::nagios::parse;

    #[test]
    fn metrics_follow_the_jobs_own_and_never_take_their_names() {
        let p = parse("OK | runtime=2s x=1", 0, None);
        assert_eq!(
            metrics("runtime=0.500", &p),
            "runtime=0.500|plugin_runtime=2|x=1"
        );
        assert_eq!(metrics("-", &parse("OK", 0, None)), "-");
        // Nor one of the plugin's own: every name in a line is one graph.
        let p = parse(
            "OK | runtime=1s plugin_runtime=2 plugin_runtime_2=3",
            0,
            None,
        );
        assert_eq!(
            metrics("runtime=0.500", &p),
            "runtime=0.500|plugin_runtime_3=1|plugin_runtime=2|plugin_runtime_2=3"
        );
    }

    /// A metric read back as no number (`null` in an older build's record) is left out.
    #[test]
    fn a_metric_without_a_number_is_left_out() {
        let p: PluginOutput = serde_json::from_str(
            r#"{"state":0,"summary":"OK","metrics":[{"name":"x","label":"x","value":null},{"name":"y","label":"y","value":2}]}"#,
        )
        .unwrap();
        assert_eq!(metrics("-", &p), "y=2");
    }

    #[test]
    fn details_are_joined_by_the_literal_separator() {
        let p = parse("OK\nline one\nline two | a=1\nb=2", 0, None);
        assert_eq!(details(&p), "\\nline one\\nline two");
        assert_eq!(head(&p), "OK, last run ");
    }

    #[test]
    fn a_url_that_would_break_the_link_is_not_shown() {
        assert_eq!(
            url_text("http://h/a/log.html#s1-t1"),
            "http://h/a/log.html#s1-t1"
        );
        assert_eq!(url_text("http://h/a b"), "(invalid URL)");
        assert_eq!(url_text("javascript:alert(1)"), "(invalid URL)");
    }
}
