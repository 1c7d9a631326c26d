//! What a Nagios-compatible plugin printed, read as Checkmk needs it (`kind = "plugin"` jobs).
//! Pure logic: text in, a [`PluginOutput`] out; no file or process is touched here.
//!
//! The plugin API (Nagios Plugin Development Guidelines, "Plugin Output"): the exit code is
//! the state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN); the first line of stdout is the
//! summary; performance data follows a `|` on the first line, and in the long output every
//! line after the first `|` found there is performance data too:
//!
//! ```text
//! DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
//! / 15272 MB (77%);
//! /boot 68 MB (69%); | /boot=68MB;88;93;0;98
//! /home=69357MB;253404;253409;0;253414
//! ```
//!
//! Each item is `'label'=value[UOM];[warn];[crit];[min];[max]`. Checkmk's `local` parser takes
//! metrics as `name=value;warn;crit;min;max` with plain numbers and names of `[A-Za-z0-9_]`
//! only, so labels are made valid names ([`metric_name`]) and values are brought to the base
//! unit Checkmk's metric system uses: seconds for `s`/`ms`/`us`, bytes for
//! `B`/`KB`/`MB`/`GB`/`TB` (the guidelines' 1024 steps), `%` and counters (`c`) as they are.

use std::collections::HashSet;

/// Longest summary kept, in characters (the agent output stays small whatever a plugin says).
pub(crate) use crate::model::plugin::{Metric, PluginOutput};

pub(crate) const MAX_SUMMARY: usize = 1000;
/// Long-output lines kept, and the characters each.
pub(crate) const MAX_DETAIL_LINES: usize = 50;
pub(crate) const MAX_DETAIL_CHARS: usize = 500;
/// Metrics kept.
pub(crate) const MAX_METRICS: usize = 100;
/// What is read of a plugin's stdout at most (a plugin that floods it is cut, not believed).
pub(crate) const MAX_STDOUT: u64 = 256 * 1024;

/// The state an exit code stands for, and a reason when the code is not one of the four.
pub(crate) fn state_of_exit(code: Option<i32>, signal: Option<i32>) -> (u8, Option<String>) {
    match code {
        Some(c @ 0..=3) => (c as u8, None),
        Some(c) => (
            3,
            Some(format!(
                "the plugin exited with {c}, which is not a plugin state (0-3)"
            )),
        ),
        None => (
            3,
            Some(match signal {
                Some(s) => format!("the plugin was ended by signal {s}"),
                None => "the plugin's exit code is unknown".into(),
            }),
        ),
    }
}

/// A plugin's output as text, decoded as Checkmk decodes an agent's lines (MRPE's too:
/// `SectionMarker.parse_line`, `ensure_str_with_fallback`): each line as UTF-8, a line that
/// is not UTF-8 as Latin-1 — an older plugin, or one run in a Latin-1 locale, printing
/// `45\xb0C` reads `45°C`, as it did through MRPE, not `45�C`. `cut`: the bytes are the
/// start of a longer output, whose last character may be cut in two; that part is left
/// out, not read as Latin-1 with the rest of its line.
pub(crate) fn decode(bytes: &[u8], cut: bool) -> String {
    let mut bytes = bytes;
    if cut {
        let last = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if let Err(e) = std::str::from_utf8(&bytes[last..]) {
            // Only a sequence cut at the very end (at most 3 bytes of one character).
            if e.error_len().is_none() && bytes.len() - (last + e.valid_up_to()) < 4 {
                bytes = &bytes[..last + e.valid_up_to()];
            }
        }
    }
    let mut out = String::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(s) => out.push_str(s),
            Err(_) => out.extend(line.iter().map(|&b| char::from(b))),
        }
    }
    out
}

/// Reads a plugin's stdout; `state` is what its exit code said (see [`state_of_exit`]).
pub(crate) fn parse(stdout: &str, state: u8, reason: Option<String>) -> PluginOutput {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (summary, first_perf) = match first.split_once('|') {
        Some((text, perf)) => (text, perf),
        None => (first, ""),
    };
    let mut perf: Vec<&str> = vec![first_perf];
    let mut details = Vec::new();
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf.push(line);
            continue;
        }
        match line.split_once('|') {
            Some((text, p)) => {
                push_detail(&mut details, text);
                perf.push(p);
                in_perf = true;
            }
            None => push_detail(&mut details, line),
        }
    }
    let mut metrics = Vec::new();
    let mut taken = HashSet::new();
    for chunk in perf {
        for (label, rest) in perf_items(chunk) {
            if metrics.len() >= MAX_METRICS {
                break;
            }
            if let Some(m) = metric(&label, rest, &mut taken) {
                metrics.push(m);
            }
        }
    }
    let summary = summary.trim();
    PluginOutput {
        state,
        summary: if summary.is_empty() {
            "(the plugin printed no output)".into()
        } else {
            cut(summary, MAX_SUMMARY)
        },
        details,
        metrics,
        reason,
    }
}

fn push_detail(details: &mut Vec<String>, line: &str) {
    let line = line.trim_end();
    if line.trim().is_empty() || details.len() >= MAX_DETAIL_LINES {
        return;
    }
    details.push(cut(line, MAX_DETAIL_CHARS));
}

/// `s` cut to `max` characters, marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// The items of a performance data chunk: (label, `value[UOM];warn;crit;min;max`).
/// A label may be quoted with `'` (a doubled `''` stands for one quote) and then hold spaces
/// and `=`.
fn perf_items(chunk: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let mut rest = chunk.trim_start();
    while !rest.is_empty() {
        let (label, after) = if let Some(q) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut i = 0;
            let b = q.as_bytes();
            let mut end = None;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        label.push('\'');
                        i += 2;
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                let c = q[i..].chars().next().unwrap_or(' ');
                label.push(c);
                i += c.len_utf8();
            }
            match end {
                Some(e) => (label, &q[e + 1..]),
                // An unterminated quote: nothing more can be told apart.
                None => break,
            }
        } else {
            match rest.find(['=', ' ', '\t']) {
                Some(i) => (rest[..i].to_string(), &rest[i..]),
                None => break,
            }
        };
        let Some(after) = after.strip_prefix('=') else {
            // Not an item (`label` without `=`): skip the word.
            rest = skip_word(after);
            continue;
        };
        let end = after.find([' ', '\t']).unwrap_or(after.len());
        out.push((label, &after[..end]));
        rest = after[end..].trim_start();
    }
    out
}

fn skip_word(s: &str) -> &str {
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    s[end..].trim_start()
}

/// The factor a unit brings a value to Checkmk's base unit by, or `None` for an unknown unit
/// (the value is then taken as it is).
fn unit_factor(unit: &str) -> Option<f64> {
    const K: f64 = 1024.0;
    Some(match unit {
        "" | "%" | "c" => 1.0,
        "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        _ => match unit.to_ascii_uppercase().as_str() {
            "B" => 1.0,
            "KB" | "KIB" => K,
            "MB" | "MIB" => K * K,
            "GB" | "GIB" => K * K * K,
            "TB" | "TIB" => K * K * K * K,
            _ => return None,
        },
    })
}

/// A number and the unit after it: `2643MB` → (2643, `MB`).
fn split_unit(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let mut end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(s.len());
    // The longest prefix that is a number: `5e3` is one, `5eggs` is 5 `eggs`.
    while end > 0 {
        if let Ok(v) = s[..end].parse::<f64>() {
            return v.is_finite().then_some((v, &s[end..]));
        }
        end -= 1;
    }
    None
}

/// A threshold as Checkmk can draw it: a plain upper bound (`10`, `~:10`, `0:10`); ranges
/// that alert inside (`@…`) or with another lower bound have no single line and are left out
/// (the state is the plugin's own anyway).
fn threshold(s: &str, factor: f64) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('@') {
        return None;
    }
    let upper = match s.split_once(':') {
        Some((lo, hi))
            if lo.is_empty() || lo == "~" || split_unit(lo).is_some_and(|v| v.0 == 0.0) =>
        {
            hi
        }
        Some(_) => return None,
        None => s,
    };
    split_unit(upper).and_then(|(v, _)| scaled(v, factor))
}

/// `v` in the base unit, if that is still a number: `1e300TB` is beyond any `f64` in bytes,
/// and JSON has no infinity (serde_json would write `null`, which no reader takes for a
/// number: the run's record would be unreadable).
fn scaled(v: f64, factor: f64) -> Option<f64> {
    let s = v * factor;
    s.is_finite().then_some(s)
}

/// One metric from `label` and `value[UOM];warn;crit;min;max`; `None` for a value that is
/// not a number (`U`, undetermined).
fn metric(label: &str, rest: &str, taken: &mut HashSet<String>) -> Option<Metric> {
    let mut fields = rest.split(';');
    let (value, unit) = split_unit(fields.next()?)?;
    let factor = unit_factor(unit).unwrap_or(1.0);
    let mut next = || fields.next().unwrap_or("");
    let warn = threshold(next(), factor);
    let crit = threshold(next(), factor);
    let min = split_unit(next()).and_then(|v| scaled(v.0, factor));
    let max = split_unit(next()).and_then(|v| scaled(v.0, factor));
    let value = scaled(value, factor)?;
    let name = unique(metric_name(label), taken);
    Some(Metric {
        name,
        label: cut(label, 200),
        value,
        warn,
        crit,
        min,
        max,
        unit: cut(unit, 20),
    })
}

/// `name`, or `name_2`, `name_3`, … when taken.
fn unique(name: String, taken: &mut HashSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}_{n}");
        n += 1;
    }
    candidate
}

/// Longest metric name made.
const MAX_METRIC_NAME: usize = 100;

/// A valid Checkmk metric name for a plugin's label: every character outside `[A-Za-z0-9_]`
/// becomes `_` (check_disk's `/` becomes `_`, `/boot` `_boot`), a leading digit gets a `_`
/// in front, and an empty label is `_`.
pub(crate) fn metric_name(label: &str) -> String {
    let mut out: String = label
        .chars()
        .take(MAX_METRIC_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Whether `name` is a valid Checkmk metric name.
pub(crate) fn is_metric_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T7's finding 4: a plugin printing Latin-1 read `45�C` in Checkmk, where MRPE (whose
    /// lines Checkmk decodes as UTF-8, else Latin-1) shows `45°C`. Line by line: a UTF-8
    /// line stays UTF-8 next to a Latin-1 one.
    #[test]
    fn output_that_is_not_utf8_is_latin1_line_by_line_as_checkmk_reads_it() {
        let out = b"TEMP WARNING - Temperatur 45\xb0C zu hoch | temp=45;40;50\nSensor \xc3\xa4u\xc3\x9fen: 3\xb0C\nK\xfchlung \xe0 l'arr\xeat\n";
        assert_eq!(
            decode(out, false),
            "TEMP WARNING - Temperatur 45°C zu hoch | temp=45;40;50\nSensor Ã¤uÃ\u{9f}en: 3°C\nKühlung à l'arrêt\n"
        );
        assert_eq!(decode("außen 3 °C\n".as_bytes(), false), "außen 3 °C\n");
        let p = parse(&decode(out, false), 1, None);
        assert_eq!(p.summary, "TEMP WARNING - Temperatur 45°C zu hoch");
        // A whole UTF-8 line next to a Latin-1 one keeps its UTF-8.
        assert_eq!(decode(b"\xc3\xa4 ok\n45\xb0C", false), "ä ok\n45°C");
        // Output cut at the cap inside a character: the cut character is left out, the rest
        // of its line stays UTF-8.
        assert_eq!(
            decode("a\nÜber €".as_bytes().split_at(10).0, true),
            "a\nÜber "
        );
        // Not cut: a Latin-1 line whose last byte looks like the start of a character.
        assert_eq!(decode(b"voil\xe0", false), "voilà");
    }

    #[test]
    fn exit_codes_map_to_states_and_others_are_unknown_with_the_code() {
        assert_eq!(state_of_exit(Some(0), None), (0, None));
        assert_eq!(state_of_exit(Some(2), None), (2, None));
        let (s, why) = state_of_exit(Some(7), None);
        assert_eq!(s, 3);
        assert!(why.unwrap().contains("exited with 7"));
        let (s, why) = state_of_exit(None, Some(9));
        assert_eq!(s, 3);
        assert!(why.unwrap().contains("signal 9"));
    }

    #[test]
    fn the_guidelines_example_reads_as_summary_details_and_four_metrics() {
        let out = "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
                   / 15272 MB (77%);\n\
                   /boot 68 MB (69%); | /boot=68MB;88;93;0;98\n\
                   /home=69357MB;253404;253409;0;253414\n\
                   /var/log=818MB;970;975;0;980\n";
        let p = parse(out, 0, None);
        assert_eq!(p.summary, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(p.details, vec!["/ 15272 MB (77%);", "/boot 68 MB (69%);"]);
        let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["_", "_boot", "_home", "_var_log"]);
        let mb = 1024.0 * 1024.0;
        assert_eq!(p.metrics[0].value, 2643.0 * mb);
        assert_eq!(p.metrics[0].warn, Some(5948.0 * mb));
        assert_eq!(p.metrics[0].crit, Some(5958.0 * mb));
        assert_eq!(p.metrics[0].min, Some(0.0));
        assert_eq!(p.metrics[0].max, Some(5968.0 * mb));
        assert_eq!(
            p.metrics[1].render(),
            format!(
                "_boot={};{};{};0;{}",
                68 * 1024 * 1024,
                88 * 1024 * 1024,
                93 * 1024 * 1024,
                98 * 1024 * 1024
            )
        );
    }

    #[test]
    fn units_are_brought_to_seconds_and_bytes() {
        let p = parse(
            "OK | time=0.5s;1;2 lat=250ms;;;0 tiny=10us size=2KB;;;; pct=12.5%;80;90;0;100 cnt=17c x=3 'odd unit'=4zz",
            0,
            None,
        );
        let by = |n: &str| p.metrics.iter().find(|m| m.name == n).unwrap().clone();
        assert_eq!(by("time").value, 0.5);
        assert_eq!(by("time").warn, Some(1.0));
        assert_eq!(by("lat").value, 0.25);
        assert_eq!(by("lat").min, Some(0.0));
        assert!((by("tiny").value - 1e-5).abs() < 1e-12);
        assert_eq!(by("size").value, 2048.0);
        assert_eq!(by("pct").render(), "pct=12.5;80;90;0;100");
        assert_eq!(by("cnt").value, 17.0);
        assert_eq!(by("x").render(), "x=3");
        assert_eq!(by("odd_unit").value, 4.0);
    }

    #[test]
    fn labels_become_valid_unique_names() {
        let p = parse(
            "OK | 'a b'=1 'a-b'=2 'it''s'=3 '5xx'=4 ''=5 é=6 a_b=7",
            0,
            None,
        );
        let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["a_b", "a_b_2", "it_s", "_5xx", "_", "__2", "a_b_3"]
        );
        assert!(p.metrics.iter().all(|m| is_metric_name(&m.name)), "{p:?}");
        assert_eq!(p.metrics[2].label, "it's");
    }

    #[test]
    fn undetermined_values_and_garbage_are_skipped() {
        let p = parse("OK | a=U;1;2 b= c=1;2;3 =4 nolabel 'open=5", 0, None);
        let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["c", "_"]);
    }

    /// A value or level that only overflows once brought to the base unit (`1e300TB` in
    /// bytes) is skipped as undetermined: kept, it would be written to the run's record as
    /// JSON `null` and make the whole record unreadable.
    #[test]
    fn values_beyond_a_number_in_the_base_unit_are_skipped() {
        let p = parse(
            "OK | inf=1e300TB big=1e300 lvl=1TB;1e300TB;2TB;1e300TB;1e300TB",
            0,
            None,
        );
        let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["big", "lvl"]);
        let lvl = &p.metrics[1];
        assert_eq!((lvl.warn, lvl.min, lvl.max), (None, None, None));
        assert_eq!(lvl.crit, Some(2.0 * 1024f64.powi(4)));
        let json = serde_json::to_string(&p.metrics).unwrap();
        let back: Vec<crate::model::plugin::Metric> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 2, "{json}");
    }

    #[test]
    fn ranges_without_a_single_upper_bound_are_left_out() {
        let p = parse("OK | a=5;10:20;@0:3 b=5;~:10;0:20 c=1;5e1;", 0, None);
        assert_eq!(p.metrics[0].warn, None);
        assert_eq!(p.metrics[0].crit, None);
        assert_eq!(p.metrics[1].warn, Some(10.0));
        assert_eq!(p.metrics[1].crit, Some(20.0));
        assert_eq!(p.metrics[2].warn, Some(50.0));
    }

    #[test]
    fn empty_output_says_so_and_floods_are_cut() {
        assert_eq!(parse("", 3, None).summary, "(the plugin printed no output)");
        let long = "x".repeat(5000);
        let mut many = format!("{long}\n");
        for i in 0..500 {
            many.push_str(&format!("line {i}\n"));
        }
        let p = parse(&many, 0, None);
        assert_eq!(p.summary.chars().count(), MAX_SUMMARY + 1);
        assert_eq!(p.details.len(), MAX_DETAIL_LINES);
        let perf: String = (0..500).map(|i| format!("m{i}=1 ")).collect();
        assert_eq!(
            parse(&format!("OK | {perf}"), 0, None).metrics.len(),
            MAX_METRICS
        );
    }
}
