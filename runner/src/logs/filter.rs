//! Which logs an analysis reads, in the telemetry schema's shape.
//!
//! ```json
//! {"version": 1, "dimensions": [
//!   {"field_name": "reason", "allowed_values": ["saved-session"]},
//!   {"field_name": "appBuildID", "allowed_values": {"min": "20130600", "max": "20130607"}}, ...]}
//! ```
//!
//! Dimensions match by position (reason, appName, channel, version, buildId, submissionDate),
//! like telemetry-server's `TelemetrySchema.is_allowed`; missing trailing dimensions allow
//! anything. Values are sanitised like keys are, so `"saved-session"` matches `saved_session`.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::key::{sanitize, Dimensions, DIMENSION_COUNT};

/// The field names the production schema uses at each position, plus the names of
/// [`Dimensions`]; used only to catch a filter written in the wrong order.
const KNOWN_NAMES: [&[&str]; DIMENSION_COUNT] = [
    &["reason"],
    &["appName", "app_name"],
    &["appUpdateChannel", "channel"],
    &["appVersion", "version"],
    &["appBuildID", "buildId", "build_id"],
    &["submission_date", "submissionDate"],
];

/// What one position allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// `"*"` or an absent dimension.
    Any,
    /// A list (or a single string) of sanitised values.
    Values(Vec<String>),
    /// `{"min": .., "max": ..}`, inclusive, compared as strings; either bound may be absent.
    Range {
        min: Option<String>,
        max: Option<String>,
    },
}

impl Allowed {
    /// Whether `value` (a sanitised key value) is allowed here.
    pub fn allows(&self, value: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Values(values) => values.iter().any(|v| v == value),
            Allowed::Range { min, max } => {
                min.as_deref().is_none_or(|min| value >= min)
                    && max.as_deref().is_none_or(|max| value <= max)
            }
        }
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Any => f.write_str("*"),
            Allowed::Values(values) => write!(f, "{values:?}"),
            Allowed::Range { min, max } => write!(
                f,
                "{}..={}",
                min.as_deref().unwrap_or(""),
                max.as_deref().unwrap_or("")
            ),
        }
    }
}

/// A parsed, validated filter: one [`Allowed`] per dimension position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    levels: [Allowed; DIMENSION_COUNT],
}

/// A filter that could not be read or does not have the schema's shape.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter {origin}: cannot read it: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("filter {origin}: not valid JSON: {source}")]
    Json {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("filter {origin}: at {at}: {problem}")]
    Shape {
        origin: String,
        at: String,
        problem: String,
    },
}

/// Where a shape problem is; turned into a [`FilterError::Shape`] once the origin is known.
struct ShapeProblem {
    at: String,
    problem: String,
}

fn problem(at: impl Into<String>, problem: impl Into<String>) -> ShapeProblem {
    ShapeProblem {
        at: at.into(),
        problem: problem.into(),
    }
}

impl Filter {
    /// Allows every log.
    pub fn all() -> Filter {
        Filter {
            levels: std::array::from_fn(|_| Allowed::Any),
        }
    }

    /// Parses a filter given as JSON text (errors call it `<inline JSON>`).
    pub fn from_json(text: &str) -> Result<Filter, FilterError> {
        Self::parse(text, "<inline JSON>")
    }

    /// Reads and parses a filter file; errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Filter, FilterError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FilterError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    fn parse(text: &str, origin: &str) -> Result<Filter, FilterError> {
        let value: Value = serde_json::from_str(text).map_err(|source| FilterError::Json {
            origin: origin.to_owned(),
            source,
        })?;
        Self::from_value(&value).map_err(|p| FilterError::Shape {
            origin: origin.to_owned(),
            at: p.at,
            problem: p.problem,
        })
    }

    fn from_value(value: &Value) -> Result<Filter, ShapeProblem> {
        let Some(top) = value.as_object() else {
            return Err(problem("top level", "expected an object with `dimensions`"));
        };
        check_version(top)?;
        let dims = match top.get("dimensions") {
            Some(Value::Array(dims)) => dims,
            Some(_) => return Err(problem("dimensions", "expected an array")),
            None => return Err(problem("top level", "missing `dimensions` array")),
        };
        if dims.len() > DIMENSION_COUNT {
            return Err(problem(
                "dimensions",
                format!(
                    "has {} entries, at most {DIMENSION_COUNT} (reason, appName, channel, \
                     version, buildId, submission_date)",
                    dims.len()
                ),
            ));
        }
        let mut filter = Filter::all();
        for (i, dim) in dims.iter().enumerate() {
            filter.levels[i] = parse_dimension(i, dim)?;
        }
        Ok(filter)
    }

    /// Whether a log with these dimensions is selected.
    pub fn matches(&self, d: &Dimensions) -> bool {
        d.as_array()
            .iter()
            .enumerate()
            .all(|(level, value)| self.allows(level, value))
    }

    /// Whether `value` is allowed at position `level` (0 = reason ... 5 = submission date);
    /// lets a lister skip a whole directory. Positions past the sixth allow anything.
    pub fn allows(&self, level: usize, value: &str) -> bool {
        self.levels.get(level).is_none_or(|a| a.allows(value))
    }

    /// What each position allows, for display and for planners that want to reason about it.
    pub fn levels(&self) -> &[Allowed; DIMENSION_COUNT] {
        &self.levels
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter::all()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                f.write_str(" / ")?;
            }
            write!(f, "{}={level}", KNOWN_NAMES[i][0])?;
        }
        Ok(())
    }
}

/// Only version 1 of the schema shape exists; another version may mean other semantics.
fn check_version(top: &Map<String, Value>) -> Result<(), ShapeProblem> {
    match top.get("version") {
        None => Ok(()),
        Some(v) if v.as_u64() == Some(1) => Ok(()),
        Some(v) => Err(problem("version", format!("{v} is not supported, only 1"))),
    }
}

fn parse_dimension(index: usize, dim: &Value) -> Result<Allowed, ShapeProblem> {
    let at = format!("dimensions[{index}]");
    let Some(dim) = dim.as_object() else {
        return Err(problem(at, "expected an object with `allowed_values`"));
    };
    let at = check_field_name(index, dim, at)?;
    let Some(allowed) = dim.get("allowed_values") else {
        return Err(problem(at, "missing `allowed_values`"));
    };
    parse_allowed(allowed, &format!("{at}.allowed_values"))
}

/// Filters are positional; a known field name at another position means the author expected
/// matching by name, which would silently select the wrong logs.
fn check_field_name(
    index: usize,
    dim: &Map<String, Value>,
    at: String,
) -> Result<String, ShapeProblem> {
    let name = match dim.get("field_name") {
        None => return Ok(at),
        Some(Value::String(name)) => name,
        Some(_) => return Err(problem(format!("{at}.field_name"), "expected a string")),
    };
    let at = format!("{at} ({name})");
    let elsewhere = KNOWN_NAMES
        .iter()
        .position(|names| names.contains(&name.as_str()));
    match elsewhere {
        Some(pos) if pos != index => Err(problem(
            at,
            format!(
                "`{name}` is dimension {pos} but appears at position {index}; dimensions are \
                 positional (reason, appName, channel, version, buildId, submission_date), \
                 use \"*\" for the ones you do not filter"
            ),
        )),
        _ => Ok(at),
    }
}

fn parse_allowed(value: &Value, at: &str) -> Result<Allowed, ShapeProblem> {
    match value {
        Value::String(s) if s == "*" => Ok(Allowed::Any),
        // telemetry-server treats a plain string as a one-element list.
        Value::String(s) => Ok(Allowed::Values(vec![sanitize(s)])),
        Value::Array(items) => parse_list(items, at),
        Value::Object(map) => parse_range(map, at),
        other => Err(problem(
            at,
            format!(
                "expected \"*\", a list of strings or {{\"min\", \"max\"}}, found {}",
                json_type(other)
            ),
        )),
    }
}

fn parse_list(items: &[Value], at: &str) -> Result<Allowed, ShapeProblem> {
    let values = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(sanitize(s)),
            other => Err(problem(
                format!("{at}[{i}]"),
                format!(
                    "expected a string, found {} (write build ids and dates as strings)",
                    json_type(other)
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Allowed::Values(values))
}

fn parse_range(map: &Map<String, Value>, at: &str) -> Result<Allowed, ShapeProblem> {
    if let Some(key) = map.keys().find(|k| *k != "min" && *k != "max") {
        return Err(problem(
            at,
            format!("unknown key `{key}`, only `min` and `max`"),
        ));
    }
    let bound = |name: &str| -> Result<Option<String>, ShapeProblem> {
        match map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(sanitize(s))),
            Some(other) => Err(problem(
                format!("{at}.{name}"),
                format!(
                    "expected a string (bounds compare as strings), found {}",
                    json_type(other)
                ),
            )),
        }
    };
    let (min, max) = (bound("min")?, bound("max")?);
    if let (Some(lo), Some(hi)) = (&min, &max) {
        if lo > hi {
            return Err(problem(
                at,
                format!("min `{lo}` is greater than max `{hi}`, nothing would match"),
            ));
        }
    }
    Ok(Allowed::Range { min, max })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::key::parse_key;

    fn data(name: &str) -> String {
        format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn dims(key: &str) -> Dimensions {
        parse_key(key).unwrap()
    }

    const K22: &str =
        "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a.lzma";
    const K28: &str =
        "saved_session/Firefox/nightly/28.0a1/20131029030201.20131029.v2.log.0ab8.lzma";

    #[test]
    fn all_matches_everything() {
        assert!(Filter::all().matches(&dims(K22)));
        assert!(Filter::all().allows(3, "anything"));
    }

    #[test]
    fn production_schema_sanitises_list_values() {
        let f = Filter::from_file(data("telemetry_schema.json")).unwrap();
        assert!(f.matches(&dims(K22)));
        assert!(f.allows(0, "saved_session"));
        assert!(f.allows(0, "idle_daily"));
        assert!(!f.allows(0, "saved-session"), "filter values are sanitised");
        assert!(!f.allows(1, "Seamonkey"));
        assert!(f.allows(3, "99.0"));
    }

    #[test]
    fn min_max_on_build_id() {
        let f = Filter::from_file(data("filter_min_max_buildid.json")).unwrap();
        // 20130226031002 < "20130600": out; both real samples are out.
        assert!(!f.matches(&dims(K22)));
        assert!(!f.matches(&dims(K28)));
        assert!(f.allows(4, "20130600"), "min is inclusive");
        assert!(f.allows(4, "20130603123456"));
        assert!(f.allows(4, "20130607"), "max is inclusive");
        // String comparison: a longer build id past the max date is greater than "20130607".
        assert!(!f.allows(4, "20130607000000"));
        assert!(!f.allows(4, "20130599999999"));
        assert!(!f.allows(2, "release"));
        assert!(f.allows(2, "aurora"));
        let inside = K22.replace("20130226031002", "20130601030201");
        assert!(f.matches(&dims(&inside)));
        let wrong_app = inside.replace("Firefox", "Thunderbird");
        assert!(!f.matches(&dims(&wrong_app)));
    }

    #[test]
    fn min_max_on_submission_date() {
        let f = Filter::from_file(data("filter_saved_session_Fx_prerelease.json")).unwrap();
        assert!(!f.matches(&dims(K28)), "20131029 is before 20131101");
        let inside = K28.replace(".20131029.", ".20131102.");
        assert!(f.matches(&dims(&inside)));
        let after = K28.replace(".20131029.", ".20131104.");
        assert!(!f.matches(&dims(&after)));
    }

    #[test]
    fn test_filter_file() {
        let f = Filter::from_file(data("test-filter.json")).unwrap();
        assert!(
            !f.matches(&dims(K22)),
            "submission date 20131011 not listed"
        );
        let listed = K22.replace(".20131011.", ".20131013.");
        assert!(f.matches(&dims(&listed)));
        assert!(f.allows(2, "nightly_ux"), "nightly-ux is sanitised");
    }

    #[test]
    fn fewer_dimensions_allow_the_rest() {
        let f = Filter::from_json(
            r#"{"dimensions":[{"field_name":"reason","allowed_values":"saved-session"}]}"#,
        )
        .unwrap();
        assert!(f.matches(&dims(K22)));
        assert!(!f.allows(0, "idle_daily"));
        assert_eq!(f.levels()[5], Allowed::Any);
    }

    #[test]
    fn open_ended_ranges() {
        let any = r#"{"allowed_values":"*"}"#;
        let text = format!(
            r#"{{"version":1,"dimensions":[{any},{any},{any},{any},{{"allowed_values":{{"min":"2013"}}}}]}}"#
        );
        let f = Filter::from_json(&text).unwrap();
        assert!(f.allows(4, "2013"));
        assert!(f.allows(4, "99999999"));
        assert!(!f.allows(4, "2012"));
        let f = Filter::from_json(r#"{"dimensions":[{"allowed_values":{"max":"m"}}]}"#).unwrap();
        assert!(f.allows(0, "a"));
        assert!(!f.allows(0, "z"));
    }

    #[test]
    fn bad_filters_say_what_and_where() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[]", "top level"),
            (r#"{"version":1}"#, "missing `dimensions`"),
            (r#"{"dimensions":{}}"#, "expected an array"),
            (r#"{"version":2,"dimensions":[]}"#, "version"),
            (r#"{"dimensions":[1]}"#, "dimensions[0]"),
            (
                r#"{"dimensions":[{"field_name":"reason"}]}"#,
                "missing `allowed_values`",
            ),
            (
                r#"{"dimensions":[{"field_name":"reason","allowed_values":3}]}"#,
                "dimensions[0] (reason).allowed_values: expected",
            ),
            (
                r#"{"dimensions":[{"allowed_values":["a",7]}]}"#,
                "dimensions[0].allowed_values[1]",
            ),
            (
                r#"{"dimensions":[{"allowed_values":{"min":"b","max":"a"}}]}"#,
                "greater than max",
            ),
            (r#"{"dimensions":[{"allowed_values":{"min":1}}]}"#, ".min"),
            (
                r#"{"dimensions":[{"allowed_values":{"low":"1"}}]}"#,
                "unknown key `low`",
            ),
            (
                r#"{"dimensions":[{"field_name":"submission_date","allowed_values":"*"}]}"#,
                "positional",
            ),
            (
                &format!(
                    r#"{{"dimensions":[{}]}}"#,
                    [r#"{"allowed_values":"*"}"#; 7].join(",")
                ),
                "at most 6",
            ),
        ];
        for (text, needle) in cases {
            let err = Filter::from_json(text).expect_err(text).to_string();
            assert!(err.contains("<inline JSON>"), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken-filter.json");
        std::fs::write(&path, r#"{"dimensions":[{"allowed_values":null}]}"#).unwrap();
        let err = Filter::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("broken-filter.json"), "{err}");
        assert!(err.contains("null"), "{err}");
        let err = Filter::from_file(dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
