//! The telemetry dashboard: per channel and major version, every histogram and simple
//! measure of saved-session (ver 2) submissions, summed per build date and per submission
//! date, per filter path (reason / appName / OS / osVersion / arch).
//!
//! # What one submission contributes
//!
//! - channel: `info.appUpdateChannel` (else the key's channel); major version:
//!   `info.appVersion` up to the first `.` (else the key's version); build id:
//!   `info.appBuildID` (else the key's), build date = its first 8 characters; submission
//!   date: the key's `submission_date`. Both dates must be valid `YYYYMMDD` dates, else the
//!   submission is a record error (as is a payload that is not `ver` 2).
//! - filter path: `info.reason` (else the key's reason), `info.appName` (else the key's),
//!   `info.OS`, `info.version` (on Linux its first 3 characters), `info.arch`; a missing or
//!   empty field is `unknown`. Every component (and channel / version, which become folder
//!   names) is sanitised: characters outside `[A-Za-z0-9._+-]` become `_`, at most 64
//!   characters, `.`/`..` become `_`, and `_id` / `name` (the filter tree's own keys) get
//!   a `_` prefix.
//! - every histogram whose name (or, for `STARTUP_X`, `X`) is in the definitions: its ver-2
//!   array, under its own name (`STARTUP_X` is its own measure). Histograms the definitions
//!   lack are **skipped and counted** (`skipped.json`), as telemetry-dashboard did: without
//!   a definition the dashboard could not label the buckets. Arrays whose length differs
//!   from the definition are kept (older builds had other layouts; see [`state`]).
//!   Arrays with fewer than 6 values, bucket counts that are not integers in [0, 2^53), or
//!   non-finite statistics are skipped and counted as malformed.
//! - every numeric simple measurement `name` -> `SIMPLE_MEASURES_<NAME>`, and every numeric
//!   entry `sub` of an object-valued one -> `SIMPLE_MEASURES_<NAME>_<SUB>` (upper-cased;
//!   names must be `[A-Za-z0-9_]`, at most 64 characters, else counted as malformed;
//!   deeper objects, strings, booleans and arrays are ignored). Each is an exponential
//!   histogram (low 1, high 30000, 50 buckets) with one sample: the count 1 in the bucket
//!   whose lower bound is the greatest one <= value (negative values in bucket 0), and the
//!   statistics sum = value, log_sum = ln(1 + |value|), log_sum_squares = log_sum²,
//!   sum_squares_lo = sum_squares_hi = -1: what Firefox exponential histograms carry (they
//!   accumulate `log(1 + sample)`, and ver-2 arrays hold -1 for the sum of squares),
//!   as telemetry-dashboard computed them.
//! - by-submission-date only if the submission date is at most 60 days after the build date.
//!
//! Each aggregate carries its submission count. See [`state`] for the merge rules and
//! [`publish`] for the files.

pub mod publish;
pub mod state;

use std::collections::BTreeMap;

use spotmill_guest::histograms::{self, Definition, Kind};
use spotmill_guest::serde_json::{self, Value};
use spotmill_guest::telemetry::{self, Measurement, Statistics};
use spotmill_guest::{Analysis, OutputFile, Submission};

use state::{
    add_to, note_revision, pack, Agg, By, CellKey, Revision, State, MAX_COUNT, MAX_LEN, MAX_STAT,
    SCALE,
};

/// The layout of the `SIMPLE_MEASURES_*` histograms.
pub const SIMPLE_LOW: u64 = 1;
pub const SIMPLE_HIGH: u64 = 30_000;
pub const SIMPLE_BUCKETS: usize = 50;
pub const SIMPLE_PREFIX: &str = "SIMPLE_MEASURES_";
/// Submissions submitted more than this many days after their build date are left out of
/// the by-submission-date aggregates.
pub const MAX_SUBMISSION_DELAY_DAYS: i64 = 60;

pub struct Dashboard {
    /// name -> definition, as given (JSON), for `histograms.json`.
    definitions: BTreeMap<String, Value>,
    /// Lower bounds of the simple measures' buckets.
    simple_bounds: Vec<u64>,
}

impl Default for Dashboard {
    fn default() -> Self {
        let definitions = serde_json::from_str(histograms::AURORA24_JSON)
            .expect("the embedded definitions are a JSON object");
        Dashboard {
            definitions,
            simple_bounds: histograms::bucket_boundaries(&simple_definition()),
        }
    }
}

/// The definition of every `SIMPLE_MEASURES_*` histogram.
pub fn simple_definition() -> Definition {
    Definition {
        name: "SIMPLE_MEASURES".to_owned(),
        kind: Kind::Exponential,
        low: SIMPLE_LOW,
        high: SIMPLE_HIGH,
        n_buckets: SIMPLE_BUCKETS,
        extended_statistics_ok: true,
    }
}

/// One histogram a submission contributes, validated.
struct Contribution {
    measure: String,
    len: u32,
    /// Packed non-zero buckets.
    buckets: Vec<u64>,
    present: u8,
    stats: [i128; 5],
}

impl Dashboard {
    /// The definition (as given) of a measure: its own, `X`'s for `STARTUP_X`.
    pub fn definition_json(&self, measure: &str) -> Option<Value> {
        if measure.starts_with(SIMPLE_PREFIX) {
            return Some(serde_json::json!({
                "kind": "exponential",
                "low": SIMPLE_LOW,
                "high": SIMPLE_HIGH,
                "n_buckets": SIMPLE_BUCKETS,
            }));
        }
        self.definitions
            .get(measure)
            .or_else(|| {
                measure
                    .strip_prefix("STARTUP_")
                    .and_then(|m| self.definitions.get(m))
            })
            .cloned()
    }

    fn is_known(&self, name: &str) -> bool {
        self.definitions.contains_key(name)
            || name
                .strip_prefix("STARTUP_")
                .is_some_and(|m| self.definitions.contains_key(m))
    }

    fn simple_contribution(&self, measure: String, value: f64) -> Option<Contribution> {
        if !value.is_finite() || value.abs() >= MAX_STAT {
            return None;
        }
        let index = self
            .simple_bounds
            .iter()
            .rposition(|&b| value >= b as f64)
            .unwrap_or(0);
        let log = (value.abs() + 1.0).ln();
        Some(Contribution {
            measure,
            len: self.simple_bounds.len() as u32,
            buckets: vec![pack(index as u32, 1)],
            present: 0b00111,
            stats: [fixed(value), fixed(log), fixed(log * log), 0, 0],
        })
    }
}

/// A statistic in fixed point.
pub fn fixed(v: f64) -> i128 {
    (v * SCALE).round() as i128
}

/// Validates a ver-2 array.
fn histogram_contribution(name: &str, values: &[f64]) -> Option<Contribution> {
    let (buckets, stats) = telemetry::split_statistics(values)?;
    let len = u32::try_from(buckets.len())
        .ok()
        .filter(|&n| n <= MAX_LEN)?;
    let mut out = Vec::new();
    for (i, &c) in buckets.iter().enumerate() {
        if !((0.0..MAX_COUNT).contains(&c) && c.fract() == 0.0) {
            return None;
        }
        if c != 0.0 {
            out.push(pack(i as u32, c as u64));
        }
    }
    let mut fixed_stats = [0i128; 5];
    let mut present = 0u8;
    for (i, &s) in stats.iter().enumerate() {
        match Statistics::known(s) {
            None => {}
            Some(v) if v.is_finite() && v.abs() < MAX_STAT => {
                fixed_stats[i] = fixed(v);
                present |= 1 << i;
            }
            Some(_) => return None,
        }
    }
    Some(Contribution {
        measure: name.to_owned(),
        len,
        buckets: out,
        present,
        stats: fixed_stats,
    })
}

/// A folder or filter-path component made safe (see the crate docs).
pub fn clean(s: Option<&str>) -> String {
    let s = s.map(str::trim).unwrap_or("");
    if s.is_empty() {
        return "unknown".to_owned();
    }
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out == "." || out == ".." {
        out = "_".to_owned();
    }
    if out == "_id" || out == "name" {
        out.insert(0, '_');
    }
    out
}

fn simple_name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Days since 1970-01-01 of a `YYYYMMDD` date; `None` if it is not a valid date.
pub fn days(yyyymmdd: &str) -> Option<i64> {
    if yyyymmdd.len() != 8 || !yyyymmdd.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = yyyymmdd.parse().ok()?;
    let (y, m, d) = (n / 10_000, n / 100 % 100, n % 100);
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if !(1..=12).contains(&m) {
        return None;
    }
    let max = month_days[(m - 1) as usize] + i64::from(m == 2 && leap);
    if !(1..=max).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

impl Analysis for Dashboard {
    type Partial = State;

    fn setup(&mut self, params: &Value) -> Result<(), String> {
        let defs = match params {
            Value::Null => return Ok(()),
            Value::Object(map) => match map.get("histograms") {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::String(text)) => text.clone(),
                Some(v @ Value::Object(_)) => v.to_string(),
                Some(_) => {
                    return Err(
                        "params.histograms must be the Histograms.json object (or its text)"
                            .to_owned(),
                    )
                }
            },
            _ => return Err("params must be a JSON object".to_owned()),
        };
        let parsed = histograms::parse_definitions(&defs).map_err(|e| e.to_string())?;
        for d in &parsed {
            let file_name_ok = d.name.len() <= 200
                && d.name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && d.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !file_name_ok || d.name.starts_with(SIMPLE_PREFIX) {
                return Err(format!(
                    "histogram definition name {:?} is not usable as a file name \
                     ([A-Za-z0-9_.-], at most 200 characters, not SIMPLE_MEASURES_*)",
                    d.name
                ));
            }
        }
        self.definitions = serde_json::from_str(&defs).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn map(&mut self, sub: &Submission, partial: &mut State) -> Result<(), String> {
        let payload = telemetry::parse(&sub.json)?;
        if payload.ver != Some(2) {
            return Err(format!("not a ver 2 payload (ver {:?})", payload.ver));
        }
        let info = &payload.info;
        let dims = &sub.dimensions;
        let pick = |v: &Option<std::borrow::Cow<'_, str>>, fallback: &str| -> String {
            match v.as_deref() {
                Some(s) if !s.is_empty() => s.to_owned(),
                _ => fallback.to_owned(),
            }
        };
        let channel = clean(Some(&pick(&info.app_update_channel, &dims.channel)));
        let app_version = pick(&info.app_version, &dims.version);
        let major = clean(Some(app_version.split('.').next().unwrap_or("")));
        let build_id = pick(&info.app_build_id, &dims.build_id);
        let build_date = build_id.get(..8).unwrap_or("");
        let build_days = days(build_date).ok_or_else(|| format!("bad build id {build_id:?}"))?;
        let submission_date = dims.submission_date.as_str();
        let submission_days = days(submission_date)
            .ok_or_else(|| format!("bad submission date {submission_date:?}"))?;
        let os = clean(info.os.as_deref());
        let os_version = match info.version.as_deref() {
            Some(v) if os == "Linux" => clean(Some(&v.chars().take(3).collect::<String>())),
            v => clean(v),
        };
        let path = [
            clean(Some(&pick(&info.reason, &dims.reason))),
            clean(Some(&pick(&info.app_name, &dims.app_name))),
            os,
            os_version,
            clean(info.arch.as_deref()),
        ];
        let revision = match payload.info_value("revision") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };

        // Validate and extract everything first: a failing submission leaves no trace.
        let mut contributions = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut malformed: Vec<String> = Vec::new();
        payload.for_each_histogram(|h| {
            if !self.is_known(h.name) {
                unknown.push(h.name.to_owned());
                return Ok(());
            }
            match histogram_contribution(h.name, h.values) {
                Some(c) => contributions.push(c),
                None => malformed.push(h.name.to_owned()),
            }
            Ok(())
        })?;
        for (name, m) in payload.simple_measurements()? {
            match m {
                Measurement::Number(v) => {
                    self.simple(&name, None, v, &mut contributions, &mut malformed)
                }
                Measurement::Other(raw) if raw.get().starts_with('{') => {
                    let Ok(obj) = serde_json::from_str::<BTreeMap<String, Value>>(raw.get()) else {
                        continue;
                    };
                    for (sub_name, v) in obj {
                        if let Some(v) = v.as_f64().filter(|_| v.is_number()) {
                            self.simple(
                                &name,
                                Some(&sub_name),
                                v,
                                &mut contributions,
                                &mut malformed,
                            );
                        }
                    }
                }
                Measurement::Other(_) => {}
            }
        }

        // Apply.
        let by_submission = submission_days - build_days <= MAX_SUBMISSION_DELAY_DAYS;
        // `days` checked both: 8 digits.
        let build_date: u32 = build_date.parse().map_err(|_| "bad build date")?;
        let submission_date: u32 = submission_date.parse().map_err(|_| "bad submission date")?;
        for name in unknown {
            *partial.unknown.entry(name).or_default() += 1;
        }
        for name in malformed {
            *partial.malformed.entry(name).or_default() += 1;
        }
        if contributions.is_empty() {
            return Ok(());
        }
        let folder = partial.folders.entry((channel, major)).or_default();
        let path = folder.paths.intern(&path);
        let build = folder.builds.intern(&build_id);
        for c in contributions {
            let cells = folder.measures.entry(c.measure.clone()).or_default();
            let agg = Agg {
                build,
                count: 1,
                present: c.present,
                stats: c.stats,
                buckets: c.buckets,
            };
            if by_submission {
                let key = CellKey {
                    by: By::SubmissionDate,
                    date: submission_date,
                    path,
                    len: c.len,
                };
                add_to(cells, key, agg.clone(), &folder.builds.values);
            }
            let key = CellKey {
                by: By::BuildDate,
                date: build_date,
                path,
                len: c.len,
            };
            add_to(cells, key, agg, &folder.builds.values);
            note_revision(
                &mut folder.revisions,
                c.measure,
                Revision {
                    build: build_id.clone(),
                    revision: revision.clone(),
                },
            );
        }
        Ok(())
    }

    fn merge(into: &mut State, other: State) {
        into.merge(other);
    }

    fn publish(&self, partial: State) -> Result<Vec<OutputFile>, String> {
        publish::publish(self, partial)
    }

    fn encode_partial(partial: &State) -> Result<Vec<u8>, String> {
        Ok(state::encode(partial))
    }

    fn decode_partial(bytes: &[u8]) -> Result<State, String> {
        state::decode(bytes)
    }
}

impl Dashboard {
    fn simple(
        &self,
        name: &str,
        sub: Option<&str>,
        value: f64,
        out: &mut Vec<Contribution>,
        malformed: &mut Vec<String>,
    ) {
        let full = match sub {
            Some(sub) => format!("{name}_{sub}"),
            None => name.to_owned(),
        };
        let ok = simple_name_ok(name) && sub.is_none_or(simple_name_ok);
        let measure = format!("{SIMPLE_PREFIX}{}", full.to_ascii_uppercase());
        match self.simple_contribution(measure, value).filter(|_| ok) {
            Some(c) => out.push(c),
            None => malformed.push(if ok {
                format!("simpleMeasurements.{full}")
            } else {
                "simpleMeasurements.<invalid name>".to_owned()
            }),
        }
    }
}

// Exported only for the guest: on the host the component exports (names with `:` and `@`)
// break the cdylib's link, and host unit tests call the `Analysis` methods directly.
#[cfg(target_arch = "wasm32")]
spotmill_guest::export_analysis!(Dashboard);

#[cfg(test)]
mod tests;
