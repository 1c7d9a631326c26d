//! What a `kind = "plugin"` job's plugin said, as the records and the status keep it (read
//! from its output by `logic::nagios`): its state, summary, details and metrics.

/// One metric, in Checkmk's terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Metric {
    /// A valid Checkmk metric name (see `logic::nagios::metric_name`).
    pub(crate) name: String,
    /// The plugin's own label, as it printed it.
    pub(crate) label: String,
    /// `null` in records of builds that let a value overflow to infinity (JSON has none):
    /// read as NaN, which no check shows, rather than the whole record taken for corrupt.
    #[serde(deserialize_with = "number_or_null")]
    pub(crate) value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) warn: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) crit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max: Option<f64>,
    /// The unit the plugin printed (`MB`, `ms`, `%`, `c`, empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) unit: String,
}

impl Metric {
    /// `name=value;warn;crit;min;max` (trailing empty fields left out), as Checkmk's `local`
    /// parser reads it.
    pub(crate) fn render(&self) -> String {
        let f = |v: Option<f64>| v.map(num).unwrap_or_default();
        let mut fields = vec![
            num(self.value),
            f(self.warn),
            f(self.crit),
            f(self.min),
            f(self.max),
        ];
        while fields.len() > 1 && fields.last().is_some_and(String::is_empty) {
            fields.pop();
        }
        format!("{}={}", self.name, fields.join(";"))
    }
}

fn number_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::Deserialize;
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A number as Checkmk reads it: no exponent, no needless zeros.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        // Rust's shortest round-trip form never uses an exponent for `{}` of an f64.
        format!("{v}")
    }
}

/// A plugin run, read.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PluginOutput {
    /// 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.
    pub(crate) state: u8,
    /// The first line, without its performance data.
    pub(crate) summary: String,
    /// The long output's text lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) details: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) metrics: Vec<Metric>,
    /// Why the state is not simply the exit code's (an exit code outside 0–3, a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[cfg(test)]
mod tests {
    /// A record an older build wrote with a metric value `null` (an overflow) still reads
    /// (`logic::plugin_view` leaves such a metric out of the check).
    #[test]
    fn a_null_metric_value_reads_as_no_number() {
        let m: super::Metric =
            serde_json::from_str(r#"{"name":"x","label":"x","value":null}"#).unwrap();
        assert!(m.value.is_nan());
    }
}
