//! Telemetry histogram definitions (`Histograms.json` as served by the histogram server) and
//! the bucket layout of each kind.
//!
//! Pure code, no I/O: the bucket boundaries decide how long every generated
//! histogram array is and which values its buckets stand for, so they must be
//! exactly the ones Firefox and telemetry-server computed. The algorithms follow
//! `histogram_tools.py` (mozilla-central `toolkit/components/telemetry`, copied into
//! telemetry-server), which itself mirrors the C++ `Histogram::InitializeBucketRange`
//! (exponential) and `LinearHistogram::InitializeBucketRange` (linear) of
//! `ipc/chromium/src/base/histogram.cc`.

use std::fmt;

/// The histograms of Firefox Aurora 24 (590 definitions), the default vocabulary of
/// the generator. Kept next to the crate so the generator needs no network or
/// shared-data path at run time.
pub const AURORA24_JSON: &str = include_str!("../data/Histograms.aurora24.json");

/// Symbolic sizes that some definitions use instead of numbers. `histogram_tools.py`
/// leaves them unresolved (its `eval` fails), so their real sizes come from the
/// converted real payloads: `GC_REASON_2` has 102 buckets (107 values minus the 5
/// statistics) and `STARTUP_MEASUREMENT_ERRORS` 13 in `ss-ff-n-28.lzma`.
const KNOWN_CONSTANTS: &[(&str, u64)] = &[
    ("JS::gcreason::NUM_TELEMETRY_REASONS", 101),
    ("mozilla::StartupTimeline::MAX_EVENT_ID", 12),
];

/// The five histogram kinds of the 2013 definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Flag,
    Boolean,
    Enumerated,
    Linear,
    Exponential,
}

impl Kind {
    /// The spelling used in `Histograms.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Flag => "flag",
            Kind::Boolean => "boolean",
            Kind::Enumerated => "enumerated",
            Kind::Linear => "linear",
            Kind::Exponential => "exponential",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "flag" => Kind::Flag,
            "boolean" => Kind::Boolean,
            "enumerated" => Kind::Enumerated,
            "linear" => Kind::Linear,
            "exponential" => Kind::Exponential,
            _ => return None,
        })
    }

    /// Whether the payload carries `log_sum`/`log_sum_squares` (true) or
    /// `sum_squares_lo`/`sum_squares_hi` (false) for this kind; the other pair is -1
    /// in a converted (ver 2) array.
    ///
    /// Firefox's `ReflectHistogramSnapshot` (Telemetry.cpp) defines the log sums only
    /// for `Histogram::HISTOGRAM`, the exponential class, and the 64-bit sum of
    /// squares for every other class (linear, boolean, flag; enumerated is a linear
    /// histogram); telemetry-server's `convert.py` writes -1 for whichever is absent.
    /// Checked against every histogram of the real samples.
    pub fn carries_log_sums(self) -> bool {
        self == Kind::Exponential
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One histogram definition, with the bucket parameters `histogram_tools.py`
/// derives for its kind (flag and boolean: 1, 2, 3 buckets; enumerated: 1,
/// n_values, n_values + 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub kind: Kind,
    pub low: u64,
    pub high: u64,
    pub n_buckets: usize,
    /// Exponential histograms accumulate `log_sum`/`log_sum_squares` only when this
    /// is set; otherwise both stay 0 (as seen in the real payloads).
    pub extended_statistics_ok: bool,
}

/// Why a definitions file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("histogram definitions are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("histogram definitions must be a JSON object of name -> definition")]
    NotAnObject,
    #[error("histogram {name}: {problem}")]
    Invalid { name: String, problem: String },
}

fn invalid(name: &str, problem: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        name: name.to_owned(),
        problem: problem.into(),
    }
}

/// Parses a `Histograms.json` document. Definitions come back sorted by name (the
/// order of serde_json's map), which keeps everything derived from them
/// deterministic.
pub fn parse_definitions(json: &str) -> Result<Vec<Definition>, DefinitionError> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    let map = value.as_object().ok_or(DefinitionError::NotAnObject)?;
    map.iter().map(|(name, def)| parse_one(name, def)).collect()
}

/// The embedded Aurora 24 definitions.
pub fn default_definitions() -> Vec<Definition> {
    parse_definitions(AURORA24_JSON).expect("the embedded Histograms.aurora24.json is valid")
}

fn parse_one(name: &str, def: &serde_json::Value) -> Result<Definition, DefinitionError> {
    let obj = def
        .as_object()
        .ok_or_else(|| invalid(name, "definition is not an object"))?;
    let kind_str = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or_else(|| invalid(name, "missing kind"))?;
    let kind =
        Kind::parse(kind_str).ok_or_else(|| invalid(name, format!("unknown kind {kind_str:?}")))?;
    let field = |key: &str| -> Result<Option<u64>, DefinitionError> {
        obj.get(key).map(|v| number(name, key, v)).transpose()
    };
    let required = |key: &str| -> Result<u64, DefinitionError> {
        field(key)?.ok_or_else(|| invalid(name, format!("missing {key}")))
    };
    let (low, high, n_buckets) = match kind {
        Kind::Flag | Kind::Boolean => (1, 2, 3),
        Kind::Enumerated => {
            let n_values = required("n_values")?;
            (1, n_values, n_values + 1)
        }
        Kind::Linear | Kind::Exponential => (
            field("low")?.unwrap_or(1),
            required("high")?,
            required("n_buckets")?,
        ),
    };
    check_limits(name, low, high, n_buckets)?;
    let extended_statistics_ok = obj
        .get("extended_statistics_ok")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(Definition {
        name: name.to_owned(),
        kind,
        low,
        high,
        n_buckets: n_buckets as usize,
        extended_statistics_ok,
    })
}

/// Rejects parameters for which the bucket algorithms are undefined (a log of 0, a
/// division by `n_buckets - 2` = 0) or Firefox would assert.
fn check_limits(name: &str, low: u64, high: u64, n_buckets: u64) -> Result<(), DefinitionError> {
    if low == 0 || high <= low {
        return Err(invalid(
            name,
            format!("needs 1 <= low < high, got {low}..{high}"),
        ));
    }
    if !(3..=10_000).contains(&n_buckets) {
        return Err(invalid(
            name,
            format!("n_buckets {n_buckets} out of 3..=10000"),
        ));
    }
    Ok(())
}

/// A number field: a JSON number or, as in the real files, a string holding an
/// integer expression such as `"32 * 1024"` or `"80 + 1"` (what
/// `histogram_tools.py` feeds to `eval`), or a known symbolic constant.
fn number(name: &str, key: &str, v: &serde_json::Value) -> Result<u64, DefinitionError> {
    let parsed = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => eval_expression(s),
        _ => None,
    };
    parsed.ok_or_else(|| invalid(name, format!("{key} {v} is not a number we can evaluate")))
}

/// Evaluates a sum of products of unsigned integers or known constants; nothing
/// more appears in real definitions.
fn eval_expression(s: &str) -> Option<u64> {
    s.split('+').try_fold(0u64, |sum, term| {
        let product = term.split('*').try_fold(1u64, |p, factor| {
            let factor = factor.trim();
            let v = factor.parse::<u64>().ok().or_else(|| constant(factor))?;
            p.checked_mul(v)
        })?;
        sum.checked_add(product)
    })
}

fn constant(symbol: &str) -> Option<u64> {
    KNOWN_CONSTANTS
        .iter()
        .find(|(name, _)| *name == symbol)
        .map(|&(_, v)| v)
}

/// The lower bound of every bucket (`n_buckets` values, the first always 0), exactly
/// as `histogram_tools.py`'s `ranges()`: `exponential_buckets` for exponential
/// histograms, `linear_buckets` for all others.
pub fn bucket_boundaries(def: &Definition) -> Vec<u64> {
    match def.kind {
        Kind::Exponential => exponential_buckets(def.low, def.high, def.n_buckets),
        _ => linear_buckets(def.low, def.high, def.n_buckets),
    }
}

/// `linear_buckets(dmin, dmax, n)`: bucket i (1 <= i < n) starts at
/// `int((dmin * (n - 1 - i) + dmax * (i - 1)) / (n - 2) + 0.5)`, computed in doubles.
fn linear_buckets(low: u64, high: u64, n: usize) -> Vec<u64> {
    let (dmin, dmax) = (low as f64, high as f64);
    let mut out = vec![0u64; n];
    for (i, slot) in out.iter_mut().enumerate().skip(1) {
        let range = (dmin * (n - 1 - i) as f64 + dmax * (i - 1) as f64) / (n - 2) as f64;
        *slot = (range + 0.5) as u64;
    }
    out
}

/// `exponential_buckets(dmin, dmax, n)`: from `dmin`, each next bound is the
/// remaining log-range split evenly over the remaining buckets, rounded to nearest,
/// and at least one more than the previous bound.
fn exponential_buckets(low: u64, high: u64, n: usize) -> Vec<u64> {
    let log_max = (high as f64).ln();
    let mut out = vec![0u64; n];
    let mut current = low;
    out[1] = current;
    for (index, slot) in out.iter_mut().enumerate().skip(2) {
        let log_current = (current as f64).ln();
        let log_ratio = (log_max - log_current) / (n - index) as f64;
        let next = ((log_current + log_ratio).exp() + 0.5).floor() as u64;
        current = if next > current { next } else { current + 1 };
        *slot = current;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(kind: Kind, low: u64, high: u64, n_buckets: usize) -> Definition {
        Definition {
            name: "T".into(),
            kind,
            low,
            high,
            n_buckets,
            extended_statistics_ok: false,
        }
    }

    #[test]
    fn exponential_1_10000_50_matches_firefox() {
        let b = bucket_boundaries(&def(Kind::Exponential, 1, 10_000, 50));
        assert_eq!(b.len(), 50);
        // Narrow unit buckets while the log step rounds below +1, then log spacing;
        // the last bound is always `high`.
        assert_eq!(&b[..13], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17]);
        assert_eq!(&b[45..], &[5017, 5961, 7083, 8416, 10000]);
    }

    #[test]
    fn exponential_1_3000_10_matches_telemetry_server_fixture() {
        // The bucket keys 0, 1, 3, 8, 414, 1114 of DOM_TIMERS_FIRED_PER_NATIVE_TIMEOUT
        // (range [1, 3000], 10 buckets) in telemetry-server's convert tests.
        let b = bucket_boundaries(&def(Kind::Exponential, 1, 3000, 10));
        assert_eq!(b, vec![0, 1, 3, 8, 21, 57, 154, 414, 1114, 3000]);
    }

    #[test]
    fn linear_and_small_kinds() {
        let b = bucket_boundaries(&def(Kind::Linear, 1, 100, 20));
        assert_eq!(&b[..5], &[0, 1, 7, 12, 18]);
        assert_eq!(*b.last().unwrap(), 100);
        let b = bucket_boundaries(&def(Kind::Linear, 25, 2000, 81));
        assert_eq!(&b[..4], &[0, 25, 50, 75]);
        assert_eq!(b[80], 2000);
        assert_eq!(bucket_boundaries(&def(Kind::Flag, 1, 2, 3)), vec![0, 1, 2]);
    }

    #[test]
    fn parses_aurora24_with_string_numbers_and_defaults() {
        let defs = default_definitions();
        assert_eq!(defs.len(), 590);
        let get = |n: &str| defs.iter().find(|d| d.name == n).unwrap();
        let mem = get("MEMORY_RESIDENT"); // "32 * 1024" .. "16 * 1024 * 1024"
        assert_eq!((mem.low, mem.high, mem.n_buckets), (32768, 16 << 20, 200));
        assert!(mem.extended_statistics_ok);
        let popup = get("POPUP_NOTIFICATION_MAINACTION_TRIGGERED_MS"); // n_buckets "80 + 1"
        assert_eq!((popup.low, popup.high, popup.n_buckets), (25, 2000, 81));
        let a11y = get("A11Y_UPDATE_TIME"); // no low: defaults to 1
        assert_eq!((a11y.low, a11y.high, a11y.n_buckets), (1, 10_000, 50));
        let consumers = get("A11Y_CONSUMERS"); // enumerated, n_values 11
        assert_eq!(
            (consumers.kind, consumers.n_buckets),
            (Kind::Enumerated, 12)
        );
        assert_eq!(get("A11Y_INSTANTIATED_FLAG").n_buckets, 3);
        for d in &defs {
            let b = bucket_boundaries(d);
            assert_eq!(b.len(), d.n_buckets, "{}", d.name);
            assert!(
                b.windows(2).all(|w| w[0] < w[1]),
                "{} not increasing",
                d.name
            );
            assert_eq!((b[1], b[d.n_buckets - 1]), (d.low, d.high), "{}", d.name);
        }
    }

    #[test]
    fn rejects_unknown_symbols_and_kinds() {
        let err = parse_definitions(r#"{"X": {"kind": "enumerated", "n_values": "FOO::BAR"}}"#);
        assert!(matches!(err, Err(DefinitionError::Invalid { .. })));
        let err = parse_definitions(r#"{"X": {"kind": "count"}}"#);
        assert!(matches!(err, Err(DefinitionError::Invalid { .. })));
    }
}
