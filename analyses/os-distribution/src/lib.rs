//! Counts submissions per operating system (`info.OS`) and publishes
//! `os-distribution.json`: a JSON object OS -> count, keys sorted, pretty-printed.
//!
//! A submission without `info.OS` (missing, `null` or empty) counts as `"unknown"`.
//! A submission that is not a JSON object, or whose `info` is malformed, is a record error.
//! Parameters are ignored.

use std::collections::BTreeMap;

use spotmill_guest::{telemetry, Analysis, OutputFile, Submission};

/// The key for submissions that do not say their OS.
pub const UNKNOWN: &str = "unknown";

#[derive(Default)]
pub struct OsDistribution;

impl Analysis for OsDistribution {
    type Partial = BTreeMap<String, u64>;

    fn map(&mut self, sub: &Submission, partial: &mut Self::Partial) -> Result<(), String> {
        let payload = telemetry::parse(&sub.json)?;
        let os = match payload.info.os.as_deref() {
            Some(os) if !os.is_empty() => os,
            _ => UNKNOWN,
        };
        *partial.entry(os.to_owned()).or_default() += 1;
        Ok(())
    }

    fn merge(into: &mut Self::Partial, other: Self::Partial) {
        for (os, count) in other {
            *into.entry(os).or_default() += count;
        }
    }

    fn publish(&self, partial: Self::Partial) -> Result<Vec<OutputFile>, String> {
        Ok(vec![spotmill_guest::json_file(
            "os-distribution.json",
            &partial,
        )?])
    }
}

spotmill_guest::export_analysis!(OsDistribution);
