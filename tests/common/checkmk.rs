//! A parser for what the Checkmk server reads from an agent, following its grammar closely
//! enough to reject what Checkmk would misread: section headers with their options
//! (`sep(N)`, `cached(MTIME,INTERVAL)`, `encoding(…)`, `persist(…)`, `nostrip`), piggyback
//! markers `<<<<host>>>>` … `<<<<>>>>`, and local checks `[cached(…) ]STATE NAME METRICS TEXT`
//! with quoted names (spaces allowed), `P` states and metrics `name=value[unit];warn;crit;min;max`
//! joined by `|` (levels may be `lo:hi` ranges). Every agent output a test produces goes
//! through [`parse`] (also via `parse_section` and `local_lines`).
#![allow(dead_code)]

use std::fmt;

/// One section, with the host its data belongs to (`None`: the agent's own host).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub host: Option<String>,
    pub name: String,
    /// The field separator as an ASCII code (`sep(0)`), if given.
    pub sep: Option<u8>,
    /// `cached(MTIME,INTERVAL)` added by the agent for a cached plugin.
    pub cached: Option<(u64, u64)>,
    pub lines: Vec<String>,
}

/// A local check's state: `0`–`3`, or `P` (computed from the metrics' levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Fixed(u8),
    P,
}

/// A level: a plain number (upper level) or a `lo:hi` range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    Upper(f64),
    Range(Option<f64>, Option<f64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub warn: Option<Level>,
    pub crit: Option<Level>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LocalCheck {
    pub host: Option<String>,
    pub cached: Option<(u64, u64)>,
    pub state: State,
    pub name: String,
    pub metrics: Vec<Metric>,
    pub text: String,
    /// The text up to the first literal `\n` (backslash, n): what Checkmk shows as the
    /// summary.
    pub summary: String,
    /// The lines after it, split at each literal `\n`: Checkmk's details (long output).
    pub details: Vec<String>,
}

impl LocalCheck {
    /// The state as a number (`P` is judged like Checkmk: worst level reached, else OK).
    pub fn state_num(&self) -> u8 {
        match self.state {
            State::Fixed(s) => s,
            State::P => {
                let over = |l: &Option<Level>, v: f64| match l {
                    Some(Level::Upper(x)) => v >= *x,
                    Some(Level::Range(lo, hi)) => {
                        lo.is_some_and(|lo| v < lo) || hi.is_some_and(|hi| v > hi)
                    }
                    None => false,
                };
                self.metrics.iter().fold(0, |s, m| {
                    s.max(if over(&m.crit, m.value) {
                        2
                    } else if over(&m.warn, m.value) {
                        1
                    } else {
                        0
                    })
                })
            }
        }
    }

    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// A whole agent output.
#[derive(Debug, Clone, Default)]
pub struct AgentOutput {
    pub sections: Vec<Section>,
}

#[derive(Debug)]
pub struct ParseError {
    pub line: usize,
    pub text: String,
    pub why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.why, self.text)
    }
}

impl AgentOutput {
    /// The sections named `name` for `host` (`None`: the agent's own host).
    pub fn sections(&self, host: Option<&str>, name: &str) -> Vec<&Section> {
        self.sections
            .iter()
            .filter(|s| s.host.as_deref() == host && s.name == name)
            .collect()
    }

    /// The first section named `name` on the agent's own host.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections(None, name).into_iter().next()
    }

    /// Every host that piggyback data is given for.
    pub fn piggyback_hosts(&self) -> Vec<String> {
        let mut h: Vec<String> = Vec::new();
        for s in &self.sections {
            if let Some(x) = &s.host {
                if !h.contains(x) {
                    h.push(x.clone());
                }
            }
        }
        h
    }

    /// The local checks of `host` (`None`: the agent's own host), parsed.
    pub fn local(&self, host: Option<&str>) -> Vec<LocalCheck> {
        self.sections(host, "local")
            .iter()
            .flat_map(|s| {
                s.lines.iter().map(move |l| {
                    parse_local(l, s.host.clone(), s.cached)
                        .unwrap_or_else(|e| panic!("bad local check {l:?}: {e}"))
                })
            })
            .collect()
    }

    /// The local check named `name` on `host` that Checkmk shows: the last of that name.
    pub fn shown(&self, host: Option<&str>, name: &str) -> Option<LocalCheck> {
        self.local(host).into_iter().rfind(|c| c.name == name)
    }

    /// The local check named `name` on `host`.
    pub fn check(&self, host: Option<&str>, name: &str) -> LocalCheck {
        self.local(host)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no local check {name:?} for {host:?} in {:#?}",
                    self.sections
                )
            })
    }
}

/// Parses an agent output; every line must fit the grammar, and no service comes twice.
pub fn parse(out: &str) -> Result<AgentOutput, ParseError> {
    parse_with(out, false)
}

/// [`parse`], but a second local check of one name on one host is taken as Checkmk takes it:
/// the later hides the earlier ([`AgentOutput::shown`]). For an output that says a thing twice
/// on purpose (ctrl's CRIT line after it was ended partway).
pub fn parse_later_hides_earlier(out: &str) -> Result<AgentOutput, ParseError> {
    parse_with(out, true)
}

fn parse_with(out: &str, later_hides_earlier: bool) -> Result<AgentOutput, ParseError> {
    let mut res = AgentOutput::default();
    let mut host: Option<String> = None;
    let mut current: Option<Section> = None;
    for (i, line) in out.lines().enumerate() {
        let err = |why: &str| ParseError {
            line: i + 1,
            text: line.to_string(),
            why: why.to_string(),
        };
        // Checkmk splits with Python's splitlines() (VT, FF, FS, GS, RS, NEL, U+2028/9 break a
        // line too) and a sep(0) section at NUL: a text must hold none of them.
        if let Some(c) = line
            .chars()
            .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            return Err(err(&format!(
                "U+{:04X} in a line: Checkmk would split the line there or show garbage",
                c as u32
            )));
        }
        if line.starts_with("<<<<") {
            let inner = line
                .strip_prefix("<<<<")
                .and_then(|l| l.strip_suffix(">>>>"))
                .ok_or_else(|| err("a piggyback marker is <<<<host>>>> or <<<<>>>>"))?;
            if inner.contains(['<', '>']) || inner.chars().any(char::is_whitespace) {
                return Err(err("bad piggyback host name"));
            }
            res.sections.extend(current.take());
            host = (!inner.is_empty()).then(|| inner.to_string());
            continue;
        }
        if line.starts_with("<<<") {
            let inner = line
                .strip_prefix("<<<")
                .and_then(|l| l.strip_suffix(">>>"))
                .ok_or_else(|| err("a section header is <<<name[:option…]>>>"))?;
            let mut parts = inner.split(':');
            let name = parts.next().unwrap_or_default();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(err("bad section name"));
            }
            let mut section = Section {
                host: host.clone(),
                name: name.to_string(),
                sep: None,
                cached: None,
                lines: Vec::new(),
            };
            for opt in parts {
                let arg = |key: &str| {
                    opt.strip_prefix(key)
                        .and_then(|r| r.strip_prefix('('))
                        .and_then(|r| r.strip_suffix(')'))
                };
                if let Some(n) = arg("sep") {
                    section.sep = Some(n.parse().map_err(|_| err("sep(N): N is 0-255"))?);
                } else if let Some(c) = arg("cached") {
                    section.cached = Some(parse_cached(c).ok_or_else(|| err("bad cached(…)"))?);
                } else if arg("encoding").is_some() || arg("persist").is_some() || opt == "nostrip"
                {
                } else {
                    return Err(err("unknown section option"));
                }
            }
            res.sections.extend(current.replace(section));
            continue;
        }
        match &mut current {
            Some(s) => s.lines.push(line.to_string()),
            None if line.is_empty() => {}
            None => return Err(err("data before any section header")),
        }
    }
    res.sections.extend(current);
    if let Some(h) = host {
        return Err(ParseError {
            line: out.lines().count(),
            text: String::new(),
            why: format!("piggyback data for {h:?} is not closed with <<<<>>>>"),
        });
    }
    // Local checks are checked here, so a malformed line fails the parse, not a later look.
    // Two checks of one name on one host are one service in Checkmk: the later hides the
    // earlier (a failure followed by a pass shows OK).
    let mut names = std::collections::HashSet::new();
    for s in res.sections.iter().filter(|s| s.name == "local") {
        for l in &s.lines {
            let c = parse_local(l, s.host.clone(), s.cached).map_err(|why| ParseError {
                line: 0,
                text: l.clone(),
                why,
            })?;
            if !names.insert((c.host.clone(), c.name.clone())) && !later_hides_earlier {
                return Err(ParseError {
                    line: 0,
                    text: l.clone(),
                    why: format!("a second service {:?} on {:?}", c.name, c.host),
                });
            }
        }
    }
    Ok(res)
}

fn parse_cached(c: &str) -> Option<(u64, u64)> {
    let (a, b) = c.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// One local check line.
pub fn parse_local(
    line: &str,
    host: Option<String>,
    section_cached: Option<(u64, u64)>,
) -> Result<LocalCheck, String> {
    let mut rest = line;
    let mut cached = section_cached;
    if let Some(r) = rest.strip_prefix("cached(") {
        let (c, r) = r.split_once(") ").ok_or("unclosed cached(…) prefix")?;
        cached = Some(parse_cached(c).ok_or("bad cached(…) prefix")?);
        rest = r;
    }
    let (state, r) = rest.split_once(' ').ok_or("no state")?;
    let state = match state {
        "0" | "1" | "2" | "3" => State::Fixed(state.parse().map_err(|_| "state")?),
        "P" => State::P,
        s => return Err(format!("bad state {s:?} (0, 1, 2, 3 or P)")),
    };
    let (name, r) = if let Some(q) = r.strip_prefix('"') {
        let (name, r) = q.split_once('"').ok_or("unclosed quoted service name")?;
        let r = r
            .strip_prefix(' ')
            .ok_or("no space after the quoted service name")?;
        (name.to_string(), r)
    } else {
        let (name, r) = r
            .split_once(' ')
            .ok_or("no metrics after the service name")?;
        (name.to_string(), r)
    };
    if name.is_empty() {
        return Err("empty service name".into());
    }
    // The local parser takes neither quote inside a service name (quoted or not), and drops
    // such a line without a trace.
    if name.contains(['\'', '"']) {
        return Err(format!("service name {name:?} contains a quote"));
    }
    let (metrics, text) = r.split_once(' ').unwrap_or((r, ""));
    let metrics = if metrics == "-" {
        Vec::new()
    } else {
        metrics
            .split('|')
            .map(parse_metric)
            .collect::<Result<Vec<_>, _>>()?
    };
    if state == State::P && metrics.is_empty() {
        return Err("state P needs metrics with levels".into());
    }
    let mut parts = text.split("\\n");
    let summary = parts.next().unwrap_or_default().to_string();
    Ok(LocalCheck {
        host,
        cached,
        state,
        name,
        metrics,
        text: text.to_string(),
        summary,
        details: parts.map(str::to_string).collect(),
    })
}

fn parse_metric(m: &str) -> Result<Metric, String> {
    let (name, v) = m.split_once('=').ok_or(format!("metric {m:?}: no '='"))?;
    // Checkmk's metric names: letters, digits and `_` only.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut f = v.split(';');
    let value = f.next().unwrap_or_default();
    // Checkmk's `float()` takes `inf` and `nan` (and `1e999`, which is infinite) and hands
    // them to the core, whose graphs take no such value: a product that prints one has
    // printed no time or count at all.
    let no_number = |s: &str| {
        let s = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
        s.starts_with("inf") || s.starts_with("nan")
    };
    if no_number(value) {
        return Err(format!("metric {name}: {value:?} is not a finite number"));
    }
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(value.len());
    let (num, unit) = value.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("metric {name}: bad value {num:?}"))?;
    if !value.is_finite() {
        return Err(format!("metric {name}: {num:?} is not a finite number"));
    }
    let num = |s: &str| -> Result<Option<f64>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && !no_number(s) => Ok(Some(v)),
            Ok(_) => Err(format!("metric {name}: {s:?} is not a finite number")),
            Err(_) => Err(format!("metric {name}: bad number {s:?}")),
        }
    };
    let level = |s: Option<&str>| -> Result<Option<Level>, String> {
        match s {
            None | Some("") => Ok(None),
            Some(s) => match s.split_once(':') {
                Some((lo, hi)) => Ok(Some(Level::Range(num(lo)?, num(hi)?))),
                None => Ok(num(s)?.map(Level::Upper)),
            },
        }
    };
    let warn = level(f.next())?;
    let crit = level(f.next())?;
    let min = num(f.next().unwrap_or_default())?;
    let max = num(f.next().unwrap_or_default())?;
    if f.next().is_some() {
        return Err(format!("metric {name}: more than value;warn;crit;min;max"));
    }
    Ok(Metric {
        name: name.to_string(),
        value,
        unit: unit.to_string(),
        warn,
        crit,
        min,
        max,
    })
}

/// [`parse`], panicking with the output on a grammar error.
pub fn parse_ok(out: &str) -> AgentOutput {
    parse(out).unwrap_or_else(|e| panic!("agent output breaks Checkmk's grammar: {e}\n{out}"))
}
