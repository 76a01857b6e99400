//! Reading telemetry submissions (Firefox saved-session pings, payload `ver` 2).
//!
//! [`parse`] reads the top level once, keeping `info` (small) parsed and the big parts
//! (`histograms`, `simpleMeasurements`) as raw JSON slices that are walked only on demand.
//! Strings borrow from the submission's bytes unless they hold escapes.
//!
//! ```ignore
//! let payload = telemetry::parse(&sub.json)?;            // Err(String) on bad JSON
//! let os = payload.info.os.as_deref().unwrap_or("unknown");
//! payload.for_each_histogram(|h| {
//!     if let Some((buckets, stats)) = h.split() { /* ... */ }
//!     Ok(())
//! })?;
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A parsed submission. Cheap to make: only `info` is parsed into fields.
#[derive(Debug)]
pub struct Payload<'a> {
    /// The payload version (`ver`), if it is an integer.
    pub ver: Option<i64>,
    /// The common `info` fields.
    pub info: Info<'a>,
    info_raw: Option<&'a RawValue>,
    histograms: Option<&'a RawValue>,
    simple_measurements: Option<&'a RawValue>,
}

/// The usual fields of a submission's `info` object. Strings, numbers and booleans are
/// accepted (numbers and booleans as their JSON text); `null` or absence is `None`.
/// Other fields: [`Payload::info_value`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Info<'a> {
    /// `OS`, e.g. `WINNT`, `Darwin`, `Linux`.
    pub os: Option<Cow<'a, str>>,
    /// `version`: the OS version, e.g. `6.1`.
    pub version: Option<Cow<'a, str>>,
    /// `arch`, e.g. `x86`, `x86-64`.
    pub arch: Option<Cow<'a, str>>,
    /// `appName`, e.g. `Firefox`.
    pub app_name: Option<Cow<'a, str>>,
    /// `appVersion`, e.g. `28.0a1`.
    pub app_version: Option<Cow<'a, str>>,
    /// `appBuildID`, e.g. `20131029030201`.
    pub app_build_id: Option<Cow<'a, str>>,
    /// `appUpdateChannel`, e.g. `nightly`.
    pub app_update_channel: Option<Cow<'a, str>>,
    /// `reason`, e.g. `saved-session`.
    pub reason: Option<Cow<'a, str>>,
    /// `platformBuildID`.
    pub platform_build_id: Option<Cow<'a, str>>,
    /// `locale`, e.g. `en-US`.
    pub locale: Option<Cow<'a, str>>,
}

/// Parses a submission's JSON. The top level must be an object; `info`, `histograms` and
/// `simpleMeasurements` may be missing or `null`. Fails with a message saying why.
pub fn parse(json: &[u8]) -> Result<Payload<'_>, String> {
    let text = std::str::from_utf8(json).map_err(|e| format!("submission is not UTF-8: {e}"))?;
    if !text.trim_start().starts_with('{') {
        return Err("submission is not a JSON object".to_owned());
    }
    let raw: RawPayload<'_> =
        serde_json::from_str(text).map_err(|e| format!("submission is not valid JSON: {e}"))?;
    let info = match raw.info {
        Some(info) => {
            let text = info.get();
            if !text.starts_with('{') {
                return Err("submission's `info` is not an object".to_owned());
            }
            serde_json::from_str::<Info<'_>>(text)
                .map_err(|e| format!("submission's `info`: {e}"))?
        }
        None => Info::default(),
    };
    let ver = raw.ver.and_then(|v| v.get().parse::<i64>().ok());
    Ok(Payload {
        ver,
        info,
        info_raw: raw.info,
        histograms: raw.histograms,
        simple_measurements: raw.simple_measurements,
    })
}

#[derive(Deserialize)]
struct RawPayload<'a> {
    #[serde(borrow, default)]
    ver: Option<&'a RawValue>,
    #[serde(borrow, default)]
    info: Option<&'a RawValue>,
    #[serde(borrow, default)]
    histograms: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "simpleMeasurements")]
    simple_measurements: Option<&'a RawValue>,
}

impl<'a> Payload<'a> {
    /// Any field of `info`, as a JSON value (`None` if there is no such field).
    pub fn info_value(&self, key: &str) -> Option<serde_json::Value> {
        let raw = self.info_raw?;
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(raw.get()).ok()?;
        map.get(key).cloned()
    }

    /// The raw JSON of `histograms`, if present and not `null`.
    pub fn histograms_json(&self) -> Option<&'a str> {
        self.histograms.map(RawValue::get)
    }

    /// Calls `f` on every histogram, in document order, parsing one array at a time into a
    /// reused buffer. Stops at the first error (a malformed histogram, or `f`'s own).
    pub fn for_each_histogram<F>(&self, f: F) -> Result<(), String>
    where
        F: FnMut(Histogram<'_>) -> Result<(), String>,
    {
        self.walk_histograms(None, f)
    }

    /// The values of the histogram called `name`, if there is one.
    pub fn histogram(&self, name: &str) -> Result<Option<Vec<f64>>, String> {
        let mut found = None;
        self.walk_histograms(Some(name), |h| {
            found = Some(h.values.to_vec());
            Ok(())
        })?;
        Ok(found)
    }

    /// Every histogram's name with its unparsed array, in document order (for random access
    /// or to parse only some of them with [`parse_histogram_values`]).
    pub fn histograms_raw(&self) -> Result<Vec<(Cow<'a, str>, &'a RawValue)>, String> {
        raw_entries(self.histograms).map_err(|e| format!("submission's `histograms`: {e}"))
    }

    /// The entries of `simpleMeasurements`, in document order.
    pub fn simple_measurements(&self) -> Result<Vec<(Cow<'a, str>, Measurement<'a>)>, String> {
        let entries = raw_entries(self.simple_measurements)
            .map_err(|e| format!("submission's `simpleMeasurements`: {e}"))?;
        Ok(entries
            .into_iter()
            .map(|(name, raw)| (name, Measurement::from_raw(raw)))
            .collect())
    }

    fn walk_histograms<F>(&self, only: Option<&str>, f: F) -> Result<(), String>
    where
        F: FnMut(Histogram<'_>) -> Result<(), String>,
    {
        let Some(raw) = self.histograms else {
            return Ok(());
        };
        if raw.get() == "null" {
            return Ok(());
        }
        let mut walker = HistogramWalker {
            only,
            f,
            buffer: Vec::new(),
            failed: None,
        };
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let result = (&mut de).deserialize_map(&mut walker);
        if let Some(message) = walker.failed {
            return Err(message);
        }
        result.map_err(|e| format!("submission's `histograms`: {e}"))
    }
}

/// One simple measurement: a number, or anything else as raw JSON.
#[derive(Debug, Clone, Copy)]
pub enum Measurement<'a> {
    Number(f64),
    Other(&'a RawValue),
}

impl<'a> Measurement<'a> {
    fn from_raw(raw: &'a RawValue) -> Self {
        match raw.get().parse::<f64>() {
            Ok(n)
                if raw
                    .get()
                    .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
            {
                Measurement::Number(n)
            }
            _ => Measurement::Other(raw),
        }
    }

    /// The number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Measurement::Number(n) => Some(*n),
            Measurement::Other(_) => None,
        }
    }
}

/// One histogram of a ver-2 payload: its name and its flat array
/// `[bucket counts..., sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi]`.
/// Values are `f64` (counts are integers, exact up to 2^53; some statistics are not).
#[derive(Debug, Clone, Copy)]
pub struct Histogram<'b> {
    pub name: &'b str,
    pub values: &'b [f64],
}

impl<'b> Histogram<'b> {
    /// The bucket counts and the five statistics; `None` if the array is too short
    /// (fewer than one bucket plus five statistics).
    pub fn split(&self) -> Option<(&'b [f64], Statistics)> {
        let (buckets, stats) = split_statistics(self.values)?;
        Some((buckets, Statistics::from_array(stats)))
    }

    /// The bucket counts (empty if the array is too short to be ver 2).
    pub fn buckets(&self) -> &'b [f64] {
        split_statistics(self.values).map_or(&[], |(b, _)| b)
    }
}

/// Splits a ver-2 histogram array into its buckets and its five trailing statistics.
/// `None` if it has fewer than six values (one bucket plus five statistics).
pub fn split_statistics<T: Copy>(values: &[T]) -> Option<(&[T], [T; 5])> {
    if values.len() < 6 {
        return None;
    }
    let (buckets, stats) = values.split_at(values.len() - 5);
    Some((buckets, [stats[0], stats[1], stats[2], stats[3], stats[4]]))
}

/// The five statistics that end a ver-2 histogram array. A statistic the histogram kind
/// does not carry is `-1` in the data: [`Statistics::known`] turns that into `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Statistics {
    pub sum: f64,
    pub log_sum: f64,
    pub log_sum_squares: f64,
    pub sum_squares_lo: f64,
    pub sum_squares_hi: f64,
}

impl Statistics {
    pub fn from_array(a: [f64; 5]) -> Self {
        Statistics {
            sum: a[0],
            log_sum: a[1],
            log_sum_squares: a[2],
            sum_squares_lo: a[3],
            sum_squares_hi: a[4],
        }
    }

    /// `None` for the `-1` that marks a statistic as absent.
    pub fn known(value: f64) -> Option<f64> {
        if value == -1.0 {
            None
        } else {
            Some(value)
        }
    }
}

/// Parses one histogram's raw array (from [`Payload::histograms_raw`]) into numbers.
pub fn parse_histogram_values(raw: &RawValue) -> Result<Vec<f64>, String> {
    serde_json::from_str(raw.get())
        .map_err(|e| format!("histogram is not an array of numbers: {e}"))
}

// ---------------------------------------------------------------------------------------
// Deserialisation helpers.

/// A string that borrows from the input when it can.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A string, number or boolean as text; `null` as `None`.
struct Lenient<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Lenient<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number, a boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Info<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Info<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut info = Info::default();
                while let Some(CowStr(key)) = map.next_key()? {
                    let slot = match key.as_ref() {
                        "OS" => &mut info.os,
                        "version" => &mut info.version,
                        "arch" => &mut info.arch,
                        "appName" => &mut info.app_name,
                        "appVersion" => &mut info.app_version,
                        "appBuildID" => &mut info.app_build_id,
                        "appUpdateChannel" => &mut info.app_update_channel,
                        "reason" => &mut info.reason,
                        "platformBuildID" => &mut info.platform_build_id,
                        "locale" => &mut info.locale,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let Lenient(value) = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format_args!("field `{key}`: {e}")))?;
                    *slot = value;
                }
                Ok(info)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The entries of a JSON object with their values unparsed; `None`/`null` is empty.
fn raw_entries(raw: Option<&RawValue>) -> Result<Vec<(Cow<'_, str>, &RawValue)>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.get() == "null" {
        return Ok(Vec::new());
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut entries = Vec::new();
            while let Some(CowStr(key)) = map.next_key()? {
                let value: &'de RawValue = map.next_value()?;
                entries.push((key, value));
            }
            Ok(entries)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    (&mut de).deserialize_map(V).map_err(|e| e.to_string())
}

struct HistogramWalker<'n, F> {
    only: Option<&'n str>,
    f: F,
    buffer: Vec<f64>,
    /// The callback's own error (kept apart so it is not decorated with a JSON position).
    failed: Option<String>,
}

impl<'de, F> Visitor<'de> for &mut HistogramWalker<'_, F>
where
    F: FnMut(Histogram<'_>) -> Result<(), String>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of histograms")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(CowStr(name)) = map.next_key()? {
            if self.only.is_some_and(|only| only != name) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.buffer.clear();
            map.next_value_seed(ValuesSeed(&mut self.buffer))
                .map_err(|e| de::Error::custom(format_args!("histogram {name:?}: {e}")))?;
            let histogram = Histogram {
                name: &name,
                values: &self.buffer,
            };
            if let Err(message) = (self.f)(histogram) {
                self.failed = Some(message);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// Reads an array of numbers into a reused buffer.
struct ValuesSeed<'b>(&'b mut Vec<f64>);

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers")
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some(value) = seq.next_element::<f64>()? {
            self.0.push(value);
        }
        Ok(())
    }
}
