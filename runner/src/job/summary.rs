//! The end-of-job summary: for people (`Display`) and for machines (`--json`).

use std::fmt;

use serde::Serialize;

use crate::sandbox::LoadedAnalysis;
use crate::task::{FileError, Quarantine, SkipCounts};

use super::local::JobResult;

/// Quarantined records and file errors listed in full; the rest are counted.
const MAX_LISTED: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct AnalysisInfo {
    pub name: String,
    pub sha256: String,
    pub size_bytes: usize,
    pub compile_ms: f64,
    pub from_cache: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskFailureInfo {
    pub task: String,
    pub reason: String,
    pub failure: Option<crate::sandbox::GuestFailure>,
    pub files: Vec<String>,
}

/// Everything a run reports at its end.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `ok`, `failed`, or `ok-with-input-errors` (published, but some files could not be
    /// read to their end).
    pub status: String,
    pub analysis: AnalysisInfo,
    pub input_files: u64,
    pub ignored_paths: u64,
    pub empty_files: u64,
    pub tasks: u64,
    pub tasks_failed: u64,
    pub records: u64,
    pub records_mapped: u64,
    pub records_quarantined: u64,
    pub lines_skipped: SkipCounts,
    pub bytes_compressed: u64,
    pub bytes_uncompressed: u64,
    pub fuel_used: u64,
    pub wall_seconds: f64,
    pub mb_per_s_uncompressed: f64,
    pub mb_per_s_compressed: f64,
    pub quarantined: Vec<Quarantine>,
    pub file_errors: Vec<FileError>,
    pub task_failures: Vec<TaskFailureInfo>,
    pub publish_error: Option<String>,
    pub output_dir: Option<String>,
    /// Matching input files skipped because earlier runs into the output counted them.
    pub inputs_counted_before: u64,
    pub output_files: Vec<String>,
}

impl Summary {
    pub fn new(
        analysis: &LoadedAnalysis,
        input_files: u64,
        ignored_paths: u64,
        tasks: u64,
        job: &JobResult,
    ) -> Self {
        let reports = job
            .reports
            .iter()
            .chain(job.failures.iter().map(|f| &f.report));
        let mut s = Summary {
            status: String::new(),
            analysis: AnalysisInfo {
                name: analysis.name.clone(),
                sha256: analysis.hash.clone(),
                size_bytes: analysis.size,
                compile_ms: analysis.compile_time.as_secs_f64() * 1000.0,
                from_cache: analysis.from_cache,
            },
            input_files,
            ignored_paths,
            empty_files: 0,
            tasks,
            tasks_failed: job.failures.len() as u64,
            records: 0,
            records_mapped: 0,
            records_quarantined: 0,
            lines_skipped: SkipCounts::default(),
            bytes_compressed: 0,
            bytes_uncompressed: 0,
            fuel_used: job.reduce_fuel,
            wall_seconds: job.elapsed.as_secs_f64(),
            mb_per_s_uncompressed: 0.0,
            mb_per_s_compressed: 0.0,
            quarantined: Vec::new(),
            file_errors: Vec::new(),
            task_failures: Vec::new(),
            publish_error: job.publish_error.clone(),
            output_dir: None,
            inputs_counted_before: 0,
            output_files: Vec::new(),
        };
        for report in reports {
            s.empty_files += report.empty_files;
            s.records += report.records;
            s.records_mapped += report.records_mapped;
            s.records_quarantined += report.quarantined.len() as u64;
            s.lines_skipped.absorb(report.skipped.clone());
            s.bytes_compressed += report.bytes_compressed;
            s.bytes_uncompressed += report.bytes_uncompressed;
            s.fuel_used += report.fuel_used;
            let room = MAX_LISTED.saturating_sub(s.quarantined.len());
            s.quarantined
                .extend(report.quarantined.iter().take(room).cloned());
            s.file_errors.extend(report.file_errors.iter().cloned());
        }
        s.task_failures = job
            .failures
            .iter()
            .map(|f| TaskFailureInfo {
                task: f.task.clone(),
                reason: f.to_string(),
                failure: f.failure.clone(),
                files: f.report.task_files.clone(),
            })
            .collect();
        let seconds = s.wall_seconds.max(1e-9);
        s.mb_per_s_uncompressed = s.bytes_uncompressed as f64 / 1e6 / seconds;
        s.mb_per_s_compressed = s.bytes_compressed as f64 / 1e6 / seconds;
        s.status = if !job.succeeded() {
            "failed"
        } else if !s.file_errors.is_empty() {
            "ok-with-input-errors"
        } else {
            "ok"
        }
        .to_string();
        s
    }

    /// The process exit code: 0 ok, 1 failed, 2 published but with unreadable inputs.
    pub fn exit_code(&self) -> i32 {
        match self.status.as_str() {
            "ok" => 0,
            "ok-with-input-errors" => 2,
            _ => 1,
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.analysis;
        writeln!(
            f,
            "analysis   {} (sha256 {}…, {} KB, {} in {:.0} ms)",
            a.name,
            &a.sha256[..12.min(a.sha256.len())],
            a.size_bytes / 1024,
            if a.from_cache {
                "loaded from cache"
            } else {
                "compiled"
            },
            a.compile_ms
        )?;
        writeln!(
            f,
            "inputs     {} files ({} empty, {} ignored paths), {} tasks ({} failed)",
            self.input_files, self.empty_files, self.ignored_paths, self.tasks, self.tasks_failed
        )?;
        writeln!(
            f,
            "records    {} read, {} mapped, {} quarantined, {} lines skipped",
            self.records,
            self.records_mapped,
            self.records_quarantined,
            self.lines_skipped.total()
        )?;
        writeln!(
            f,
            "bytes      {} compressed, {} uncompressed",
            mb(self.bytes_compressed),
            mb(self.bytes_uncompressed)
        )?;
        writeln!(
            f,
            "time       {:.2} s wall, {:.1} MB/s uncompressed ({:.1} MB/s compressed), {:.3e} fuel",
            self.wall_seconds,
            self.mb_per_s_uncompressed,
            self.mb_per_s_compressed,
            self.fuel_used as f64
        )?;
        if self.lines_skipped.total() > 0 {
            let reasons: Vec<String> = self
                .lines_skipped
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            writeln!(f, "\nskipped lines ({}):", reasons.join(", "))?;
            for example in &self.lines_skipped.examples {
                writeln!(f, "  {example}")?;
            }
        }
        if !self.quarantined.is_empty() {
            writeln!(f, "\nquarantined records ({}):", self.records_quarantined)?;
            for q in &self.quarantined {
                writeln!(f, "  {q}")?;
            }
            if self.records_quarantined > self.quarantined.len() as u64 {
                writeln!(
                    f,
                    "  ... and {} more",
                    self.records_quarantined - self.quarantined.len() as u64
                )?;
            }
        }
        if !self.file_errors.is_empty() {
            writeln!(
                f,
                "\nfiles that could not be read to the end ({}):",
                self.file_errors.len()
            )?;
            for e in self.file_errors.iter().take(MAX_LISTED) {
                writeln!(
                    f,
                    "  task {}: {} ({} records before the error were kept)",
                    e.task, e.error, e.records_before_error
                )?;
            }
        }
        if !self.task_failures.is_empty() {
            writeln!(f, "\nfailed tasks ({}):", self.task_failures.len())?;
            for t in &self.task_failures {
                writeln!(f, "  {}", t.reason)?;
                let shown: Vec<&str> = t.files.iter().take(3).map(String::as_str).collect();
                let more = t.files.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                writeln!(f, "    files: {}{more}", shown.join(", "))?;
            }
            writeln!(
                f,
                "\nnothing was published: fix the analysis or raise the limits, then run again"
            )?;
        }
        if let Some(e) = &self.publish_error {
            writeln!(f, "\nnothing was published: {e}")?;
        }
        if let Some(dir) = &self.output_dir {
            if self.inputs_counted_before > 0 {
                writeln!(
                    f,
                    "\nmerged into the earlier results in {dir} ({} input files counted before were not read again)",
                    self.inputs_counted_before
                )?;
            }
            writeln!(f, "\npublished {} files to {dir}:", self.output_files.len())?;
            for file in self.output_files.iter().take(20) {
                writeln!(f, "  {file}")?;
            }
            if self.output_files.len() > 20 {
                writeln!(f, "  ... and {} more", self.output_files.len() - 20)?;
            }
        }
        write!(f, "status     {}", self.status)
    }
}
