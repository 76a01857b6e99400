//! `spotmill status <job>`: where a job stands, from the job record, the aggregator's
//! state, the partials and failure reports in the bucket, and the queues' depths.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::aggregate::load_state;
use super::aws::Aws;
use super::objects::{self, S3Url};
use super::protocol::{FailureReport, JobPaths, Published};
use super::queue::{Depth, Queue};
use super::submit::load_job;

/// Failure reports read at most (each is one GET).
const MAX_FAILURE_REPORTS: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct TaskProblem {
    pub task: String,
    pub reason: String,
    pub receive_count: u32,
    pub quarantine_notes: Vec<String>,
    pub file_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub analysis: String,
    pub component: String,
    pub input: String,
    pub state: String,
    pub tasks: usize,
    /// Not started (or waiting to be retried), estimated from the queue.
    pub queued: usize,
    /// Leased by a worker now (the task queue's in-flight count, capped).
    pub running: usize,
    /// Partial written by a worker.
    pub done: usize,
    /// Merged by the aggregator.
    pub merged: usize,
    /// Failed at least once and not done yet; will be retried.
    pub retrying: Vec<TaskProblem>,
    /// In the dead-letter queue (or recorded as such by the aggregator).
    pub failed: Vec<TaskProblem>,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_uncompressed_done: u64,
    pub records_done: u64,
    pub records_quarantined: u64,
    pub quarantine_notes: Vec<String>,
    pub elapsed_seconds: f64,
    pub mb_per_s_compressed: f64,
    pub eta_seconds: Option<f64>,
    pub task_queue: Option<Depth>,
    pub dead_letter_queue: Option<Depth>,
    pub published: Option<Published>,
}

pub fn status(aws: &Aws, root: &S3Url, job: &str) -> anyhow::Result<JobStatus> {
    aws.block_on(status_async(aws, root, job))
}

async fn status_async(aws: &Aws, root: &S3Url, job: &str) -> anyhow::Result<JobStatus> {
    let record = load_job(aws, root, job).await?;
    let paths = JobPaths::new(root.clone(), job);
    let state = load_state(aws, &paths).await?.unwrap_or_default();
    let listed = objects::list_all(&aws.s3, paths.bucket(), &paths.partials_prefix()).await?;
    let prefix = paths.partials_prefix();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut failure_reports: Vec<String> = Vec::new();
    let mut last_done = record.created_at;
    for object in &listed {
        let name = &object.key[prefix.len()..];
        if let Some(task) = name.strip_suffix(".failure.json") {
            failure_reports.push(task.to_string());
        } else if record.task(name).is_some() {
            done.insert(name.to_string());
            if let Some(t) = object.modified {
                last_done = last_done.max(t);
            }
        }
    }
    done.extend(state.merged.keys().cloned());

    let mut failed: Vec<TaskProblem> = state
        .failed
        .iter()
        .filter(|(t, _)| !done.contains(*t))
        .map(|(t, f)| TaskProblem {
            task: t.clone(),
            reason: f.reason.clone(),
            receive_count: f.receive_count,
            quarantine_notes: f.quarantine_notes.clone(),
            file_errors: f.file_errors.clone(),
        })
        .collect();
    let failed_ids: BTreeSet<String> = failed.iter().map(|f| f.task.clone()).collect();
    let mut retrying = Vec::new();
    for task in failure_reports
        .iter()
        .filter(|t| !done.contains(*t) && !failed_ids.contains(*t))
        .take(MAX_FAILURE_REPORTS)
    {
        let report: Option<FailureReport> =
            objects::get_optional(&aws.s3, paths.bucket(), &paths.failure(task))
                .await?
                .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(r) = report {
            retrying.push(TaskProblem {
                task: task.clone(),
                reason: r.reason,
                receive_count: r.receive_count,
                quarantine_notes: r.quarantine_notes,
                file_errors: r.file_errors,
            });
        }
    }

    let task_queue = match Queue::resolve(&aws.sqs, &record.task_queue).await {
        Ok(q) => q.depth().await.ok(),
        Err(_) => None,
    };
    let dead_letter_queue = match &record.dead_letter_queue {
        Some(url) => match Queue::resolve(&aws.sqs, url).await {
            Ok(q) => q.depth().await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    // Tasks in the dead-letter queue that the aggregator has not swept yet are failed too,
    // but only the retry reports can name them: count the queue's depth as failed.
    let in_dead_letters = dead_letter_queue
        .map(|d| d.visible + d.in_flight)
        .unwrap_or(0) as usize;
    let mut moved: Vec<TaskProblem> = Vec::new();
    if in_dead_letters > 0 {
        // The retrying tasks with the most deliveries are the ones SQS moved.
        retrying.sort_by_key(|p| std::cmp::Reverse(p.receive_count));
        let n = in_dead_letters.min(retrying.len());
        moved.extend(retrying.drain(..n));
        for m in &mut moved {
            m.reason = format!("{} (in the dead-letter queue)", m.reason);
        }
    }
    failed.extend(moved);
    failed.sort_by(|a, b| a.task.cmp(&b.task));
    retrying.sort_by(|a, b| a.task.cmp(&b.task));

    let total = record.tasks.len();
    let remaining = total.saturating_sub(done.len() + failed.len());
    let running = task_queue
        .map(|d| d.in_flight as usize)
        .unwrap_or(0)
        .min(remaining);
    let queued = remaining - running;

    let bytes_done: u64 = done
        .iter()
        .filter_map(|t| record.task(t))
        .map(|t| t.bytes)
        .sum();
    let bytes_failed: u64 = failed
        .iter()
        .filter_map(|f| record.task(&f.task))
        .map(|t| t.bytes)
        .sum();
    let mut bytes_uncompressed_done = 0;
    let mut records_done = 0;
    let mut records_quarantined = 0;
    let mut quarantine_notes = Vec::new();
    for merged in state.merged.values() {
        bytes_uncompressed_done += merged.stats.bytes_uncompressed;
        records_done += merged.stats.records;
        records_quarantined += merged.stats.quarantined;
        for note in &merged.stats.quarantine_notes {
            if quarantine_notes.len() < 20 {
                quarantine_notes.push(note.clone());
            }
        }
    }
    let now = super::now_secs();
    let finished = remaining == 0;
    let elapsed = if finished { last_done } else { now } - record.created_at;
    let elapsed = elapsed.max(0.0);
    let rate = if elapsed > 0.0 {
        bytes_done as f64 / elapsed
    } else {
        0.0
    };
    let left = record.total_bytes.saturating_sub(bytes_done + bytes_failed);
    let eta_seconds = if left == 0 {
        Some(0.0)
    } else if rate > 0.0 {
        Some(left as f64 / rate)
    } else {
        None
    };
    let state_word = if state.published.is_some() && failed.is_empty() {
        "published"
    } else if state.published.is_some() {
        "published-incomplete"
    } else if finished && !failed.is_empty() {
        "failed"
    } else if finished {
        "done (waiting for the aggregator)"
    } else {
        "running"
    };
    Ok(JobStatus {
        job: record.job.clone(),
        analysis: record.analysis.name.clone(),
        component: record.analysis.sha256.clone(),
        input: record.input.clone(),
        state: state_word.to_string(),
        tasks: total,
        queued,
        running,
        done: done.len(),
        merged: state.merged.len(),
        retrying,
        failed,
        bytes_total: record.total_bytes,
        bytes_done,
        bytes_uncompressed_done,
        records_done,
        records_quarantined,
        quarantine_notes,
        elapsed_seconds: elapsed,
        mb_per_s_compressed: rate / 1e6,
        eta_seconds,
        task_queue,
        dead_letter_queue,
        published: state.published,
    })
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job        {} ({})", self.job, self.state)?;
        writeln!(
            f,
            "analysis   {} (sha256 {}…)",
            self.analysis,
            &self.component[..12.min(self.component.len())]
        )?;
        writeln!(f, "input      {}", self.input)?;
        writeln!(
            f,
            "tasks      {} total: {} queued, {} running, {} done ({} merged), {} retrying, {} failed",
            self.tasks,
            self.queued,
            self.running,
            self.done,
            self.merged,
            self.retrying.len(),
            self.failed.len()
        )?;
        let pct = if self.bytes_total > 0 {
            100.0 * self.bytes_done as f64 / self.bytes_total as f64
        } else {
            100.0
        };
        writeln!(
            f,
            "bytes      {:.1} MB of {:.1} MB compressed processed ({pct:.0}%), {:.1} MB uncompressed, {} records",
            self.bytes_done as f64 / 1e6,
            self.bytes_total as f64 / 1e6,
            self.bytes_uncompressed_done as f64 / 1e6,
            self.records_done
        )?;
        let eta = match self.eta_seconds {
            Some(s) => format!("{s:.0} s"),
            None => "unknown".into(),
        };
        writeln!(
            f,
            "throughput {:.2} MB/s compressed over {:.0} s; ETA {eta}",
            self.mb_per_s_compressed, self.elapsed_seconds
        )?;
        if let Some(p) = &self.published {
            writeln!(
                f,
                "published  {} at {} ({} files{})",
                p.revision,
                p.location,
                p.files.len(),
                if p.complete { "" } else { ", INCOMPLETE" }
            )?;
        }
        for (title, list) in [("failed", &self.failed), ("retrying", &self.retrying)] {
            if list.is_empty() {
                continue;
            }
            writeln!(f, "{title} tasks:")?;
            for p in list.iter() {
                writeln!(
                    f,
                    "  {} (delivered {} times): {}",
                    p.task, p.receive_count, p.reason
                )?;
                for note in p.quarantine_notes.iter().take(3) {
                    writeln!(f, "    quarantined: {note}")?;
                }
                for e in p.file_errors.iter().take(3) {
                    writeln!(f, "    input error: {e}")?;
                }
            }
        }
        if self.records_quarantined > 0 {
            writeln!(
                f,
                "quarantined records in merged tasks: {}",
                self.records_quarantined
            )?;
            for note in self.quarantine_notes.iter().take(10) {
                writeln!(f, "  {note}")?;
            }
        }
        Ok(())
    }
}
