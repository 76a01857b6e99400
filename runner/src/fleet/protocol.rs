//! What travels between submit, workers and the aggregator, and where it lives.
//!
//! Analysis bucket layout (under the `--job-bucket` prefix):
//!
//! ```text
//! code/<sha256>.wasm                       components, by content hash
//! jobs/<job>/job.json                      the job record: tasks, parameters, limits, queues
//! jobs/<job>/params.json                   the job's parameters
//! jobs/<job>/tasks/<task>.json             a task spec too big for one message (rare)
//! jobs/<job>/partials/<task>               a task's partial (re-runs overwrite it)
//! jobs/<job>/partials/<task>.failure.json  why the last attempt at a task failed
//! jobs/<job>/state.json                    aggregator state: merged task ids + stats
//! jobs/<job>/state/<generation>.partial    the merged partial that state.json points to
//! jobs/<job>/published/<revision>/...      published files, one immutable prefix each
//! jobs/<job>/current.json                  the pointer to the live revision (moved last)
//! jobs/<job>/versions.json                 every revision published, newest last
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::objects::S3Url;
use crate::logs::Dimensions;
use crate::sandbox::Limits;
use crate::store::InputFile;
use crate::task::{FileError, Quarantine, TaskOptions, TaskReport, TaskSpec};

/// Bumped when a message or record changes shape incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;
/// Quarantined records listed in a done message (the rest are counted).
pub const MAX_NOTES: usize = 20;

/// Where a job's objects live in the analysis bucket.
#[derive(Debug, Clone)]
pub struct JobPaths {
    pub root: S3Url,
    pub job: String,
}

impl JobPaths {
    pub fn new(root: S3Url, job: &str) -> Self {
        JobPaths {
            root,
            job: job.to_string(),
        }
    }
    pub fn bucket(&self) -> &str {
        &self.root.bucket
    }
    pub fn code(root: &S3Url, sha256: &str) -> String {
        root.key(&format!("code/{sha256}.wasm"))
    }
    fn job_key(&self, rest: &str) -> String {
        self.root.key(&format!("jobs/{}/{rest}", self.job))
    }
    pub fn job_record(&self) -> String {
        self.job_key("job.json")
    }
    pub fn params(&self) -> String {
        self.job_key("params.json")
    }
    pub fn task_spec(&self, task: &str) -> String {
        self.job_key(&format!("tasks/{task}.json"))
    }
    pub fn partials_prefix(&self) -> String {
        self.job_key("partials/")
    }
    pub fn partial(&self, task: &str) -> String {
        self.job_key(&format!("partials/{task}"))
    }
    pub fn failure(&self, task: &str) -> String {
        self.job_key(&format!("partials/{task}.failure.json"))
    }
    pub fn state(&self) -> String {
        self.job_key("state.json")
    }
    pub fn state_partial(&self, generation: u64) -> String {
        self.job_key(&format!("state/{generation:08}.partial"))
    }
    pub fn default_web(&self) -> S3Url {
        self.root.join(&format!("jobs/{}/published", self.job))
    }
}

/// A file of a task: its key under the input prefix, its size and its dimensions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFile {
    pub key: String,
    pub size: u64,
    pub dims: Dimensions,
}

impl TaskFile {
    pub fn from_input(file: &InputFile) -> Self {
        TaskFile {
            key: file.key.clone(),
            size: file.size,
            dims: file.dimensions.clone(),
        }
    }

    pub fn to_input(&self, input: &S3Url) -> InputFile {
        InputFile {
            key: self.key.clone(),
            path: format!("s3://{}/{}", input.bucket, input.key(&self.key)).into(),
            size: self.size,
            dimensions: self.dims.clone(),
        }
    }
}

/// How records are cut into calls (the part of [`TaskOptions`] that a job fixes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSettings {
    pub batch_records: usize,
    pub batch_bytes: usize,
    pub checkpoint_bytes: usize,
    pub max_line_bytes: usize,
    pub merge_fan_in: usize,
}

impl TaskSettings {
    pub fn from_options(options: &TaskOptions) -> Self {
        TaskSettings {
            batch_records: options.batch_records,
            batch_bytes: options.batch_bytes,
            checkpoint_bytes: options.checkpoint_bytes,
            max_line_bytes: options.max_line_bytes,
            merge_fan_in: options.merge_fan_in,
        }
    }

    pub fn options(&self, params: String) -> TaskOptions {
        TaskOptions {
            batch_records: self.batch_records.max(1),
            batch_bytes: self.batch_bytes.max(1),
            checkpoint_bytes: self.checkpoint_bytes.max(1),
            max_line_bytes: self.max_line_bytes.max(1),
            merge_fan_in: self.merge_fan_in.max(2),
            params,
        }
    }
}

/// One task on the task queue: everything a worker needs, or a pointer to the spec when
/// the file list would not fit in a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskMessage {
    pub version: u32,
    pub job: String,
    pub task: String,
    /// SHA-256 of the component (hex); the worker verifies the bytes it downloads.
    pub component: String,
    /// The analysis bucket and prefix (`s3://bucket/prefix/`).
    pub job_root: String,
    /// The input bucket and prefix; file keys are relative to it.
    pub input: String,
    pub files: Vec<TaskFile>,
    /// Set when `files` is empty because the list lives in S3 (`jobs/<job>/tasks/<id>.json`).
    pub spec_key: Option<String>,
    pub params_key: String,
    pub limits: Limits,
    pub settings: TaskSettings,
}

/// A task the worker finished: its partial is in place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneMessage {
    pub version: u32,
    pub job: String,
    pub task: String,
    pub partial_key: String,
    pub partial_bytes: u64,
    pub partial_sha256: String,
    pub worker: String,
    pub elapsed_ms: u64,
    pub stats: TaskStats,
}

/// What a task did, small enough for a message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskStats {
    pub files: u64,
    pub empty_files: u64,
    pub records: u64,
    pub records_mapped: u64,
    pub bytes_compressed: u64,
    pub bytes_uncompressed: u64,
    pub fuel_used: u64,
    pub lines_skipped: u64,
    pub quarantined: u64,
    /// The first quarantined records, one line each.
    pub quarantine_notes: Vec<String>,
    pub file_errors: Vec<String>,
    /// Seconds since the epoch when the worker finished.
    pub finished_at: f64,
}

impl TaskStats {
    pub fn from_report(report: &TaskReport) -> Self {
        TaskStats {
            files: report.files,
            empty_files: report.empty_files,
            records: report.records,
            records_mapped: report.records_mapped,
            bytes_compressed: report.bytes_compressed,
            bytes_uncompressed: report.bytes_uncompressed,
            fuel_used: report.fuel_used,
            lines_skipped: report.skipped.total(),
            quarantined: report.quarantined.len() as u64,
            quarantine_notes: notes(&report.quarantined),
            file_errors: report.file_errors.iter().map(file_error_note).collect(),
            finished_at: super::now_secs(),
        }
    }
}

fn notes(quarantined: &[Quarantine]) -> Vec<String> {
    quarantined
        .iter()
        .take(MAX_NOTES)
        .map(|q| truncate(&q.to_string(), 2000))
        .collect()
}

fn file_error_note(e: &FileError) -> String {
    truncate(
        &format!(
            "{}: {} ({} records read before)",
            e.file, e.error, e.records_before_error
        ),
        2000,
    )
}

pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Why the last attempt at a task failed (`partials/<task>.failure.json`); the task goes
/// back to the queue and, after the queue's maxReceiveCount, to the dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureReport {
    pub job: String,
    pub task: String,
    pub worker: String,
    pub reason: String,
    pub receive_count: u32,
    pub quarantine_notes: Vec<String>,
    pub file_errors: Vec<String>,
    pub at: f64,
}

impl FailureReport {
    pub fn notes_from(report: &TaskReport) -> (Vec<String>, Vec<String>) {
        (
            notes(&report.quarantined),
            report.file_errors.iter().map(file_error_note).collect(),
        )
    }
}

/// A task of the job record: id, files, bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobTask {
    pub id: String,
    pub bytes: u64,
    pub files: Vec<TaskFile>,
}

impl JobTask {
    pub fn from_spec(spec: &TaskSpec) -> Self {
        JobTask {
            id: spec.id.clone(),
            bytes: spec.bytes(),
            files: spec.files.iter().map(TaskFile::from_input).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysisRef {
    pub name: String,
    pub sha256: String,
    pub code_key: String,
    pub size: u64,
}

/// `jobs/<job>/job.json`: what was submitted. Written before any task is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub version: u32,
    pub job: String,
    pub created_at: f64,
    pub analysis: AnalysisRef,
    pub input: String,
    pub filter: serde_json::Value,
    pub params_key: String,
    pub limits: Limits,
    pub settings: TaskSettings,
    pub task_queue: String,
    pub done_queue: Option<String>,
    pub dead_letter_queue: Option<String>,
    pub input_files: u64,
    pub total_bytes: u64,
    pub tasks: Vec<JobTask>,
}

impl JobRecord {
    pub fn task(&self, id: &str) -> Option<&JobTask> {
        self.tasks
            .binary_search_by(|t| t.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.tasks[i])
    }
}

/// A task the aggregator merged, with what its worker reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergedTask {
    pub worker: String,
    pub stats: TaskStats,
}

/// A task that ended in the dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedTask {
    pub reason: String,
    pub receive_count: u32,
    pub quarantine_notes: Vec<String>,
    pub file_errors: Vec<String>,
    /// The task message, to resubmit once the cause is fixed.
    pub message: String,
}

/// A published revision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub revision: String,
    /// `s3://bucket/prefix/<revision>/`.
    pub location: String,
    pub files: Vec<String>,
    pub tasks_merged: u64,
    pub tasks_failed: Vec<String>,
    pub complete: bool,
    pub at: f64,
}

/// `jobs/<job>/state.json`: the set of merged task ids and the key of the merged partial
/// that holds exactly their contributions. One PUT replaces both at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AggregatorState {
    pub version: u32,
    pub job: String,
    pub generation: u64,
    /// The merged partial of every task in `merged` (None: nothing merged yet).
    pub partial_key: Option<String>,
    pub merged: BTreeMap<String, MergedTask>,
    pub failed: BTreeMap<String, FailedTask>,
    pub merge_fuel: u64,
    pub published: Option<Published>,
    pub updated_at: f64,
}
