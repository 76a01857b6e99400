//! What a task reports: counts, skipped lines, quarantined records, file errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::logs::Skip;
use crate::sandbox::{CallError, GuestFailure};

/// A record taken out of the job because the analysis failed on it.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantine {
    pub task: String,
    /// The object key of the file.
    pub file: String,
    pub record_id: String,
    pub line: u64,
    pub failure: GuestFailure,
    /// What the guest printed during the failing call (truncated).
    pub log: Option<String>,
}

impl fmt::Display for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {}, file {}, line {}, record {}: {}",
            self.task, self.file, self.line, self.record_id, self.failure
        )?;
        write_guest_log(f, self.log.as_deref())
    }
}

/// The guest's captured output under a report line, indented.
fn write_guest_log(f: &mut fmt::Formatter<'_>, log: Option<&str>) -> fmt::Result {
    match log {
        Some(log) => write!(
            f,
            "\n    guest output: {}",
            log.trim_end().replace('\n', "\n      ")
        ),
        None => Ok(()),
    }
}

/// A file that could not be read to its end (corrupt or truncated container, I/O error).
/// Records read before the error are kept and counted.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub task: String,
    pub file: String,
    pub error: String,
    pub records_before_error: u64,
}

/// Lines that were not records, by reason, with the first few for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SkipCounts {
    pub by_reason: BTreeMap<String, u64>,
    pub examples: Vec<String>,
}

impl SkipCounts {
    pub const MAX_EXAMPLES: usize = 20;

    pub fn add(&mut self, file: &str, skip: &Skip) {
        let reason = match skip.reason {
            crate::logs::SkipReason::NoTab => "no-tab",
            crate::logs::SkipReason::TooLong { .. } => "too-long",
            crate::logs::SkipReason::BadId => "bad-id",
            crate::logs::SkipReason::EmptyLine => "empty-line",
        };
        *self.by_reason.entry(reason.to_string()).or_default() += 1;
        if self.examples.len() < Self::MAX_EXAMPLES {
            self.examples.push(format!("{file}: {skip}"));
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }

    pub fn absorb(&mut self, other: SkipCounts) {
        for (reason, n) in other.by_reason {
            *self.by_reason.entry(reason).or_default() += n;
        }
        let room = Self::MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

/// The result of a task that completed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskReport {
    pub task: String,
    /// The keys of the task's files.
    pub task_files: Vec<String>,
    /// The task's partial result (empty bytes: the empty partial).
    #[serde(skip)]
    pub partial: Vec<u8>,
    pub files: u64,
    pub empty_files: u64,
    /// Records read from the files (lines that were records).
    pub records: u64,
    /// Records that went into the partial.
    pub records_mapped: u64,
    pub bytes_compressed: u64,
    pub bytes_uncompressed: u64,
    pub fuel_used: u64,
    pub instances: u64,
    pub skipped: SkipCounts,
    pub quarantined: Vec<Quarantine>,
    pub file_errors: Vec<FileError>,
}

/// A task that failed as a whole: no partial, and why.
#[derive(Debug, Clone, Serialize)]
pub struct TaskFailure {
    pub task: String,
    pub reason: String,
    pub failure: Option<GuestFailure>,
    pub log: Option<String>,
    /// What the task had seen until it failed (its partial is discarded).
    pub report: TaskReport,
}

impl TaskFailure {
    pub fn new(report: TaskReport, reason: String, call: Option<CallError>) -> Self {
        let (failure, log) = match call {
            Some(c) => (Some(c.failure), c.log),
            None => (None, None),
        };
        TaskFailure {
            task: report.task.clone(),
            reason,
            failure,
            log,
            report,
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} failed: {}", self.task, self.reason)?;
        write_guest_log(f, self.log.as_deref())
    }
}
