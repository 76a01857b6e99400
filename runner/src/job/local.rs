//! `spotmill run`: every task on worker threads of this process, then merge and publish.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::merge::Merger;
use crate::sandbox::LoadedAnalysis;
use crate::store::LocalFiles;
use crate::task::{run_task, Counters, TaskFailure, TaskOptions, TaskReport, TaskResult, TaskSpec};

/// How a local job runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads, one task each at a time.
    pub jobs: usize,
    pub task: TaskOptions,
    /// The merged partial of earlier runs into the same output, merged with this run's.
    pub previous_partial: Option<Vec<u8>>,
}

/// What a local job produced.
#[derive(Debug)]
pub struct JobResult {
    pub reports: Vec<TaskReport>,
    pub failures: Vec<TaskFailure>,
    /// The final merged partial (earlier runs' included), when every task succeeded.
    pub partial: Option<Vec<u8>>,
    /// The published files (path, contents), when every task succeeded and publish worked.
    pub files: Vec<(String, Vec<u8>)>,
    /// Why merging or publishing failed, if it did.
    pub publish_error: Option<String>,
    /// Fuel burned by the merges and the publish.
    pub reduce_fuel: u64,
    pub elapsed: Duration,
}

impl JobResult {
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && self.publish_error.is_none()
    }
}

/// Runs the tasks on `options.jobs` threads, merges the partials of the tasks that
/// succeeded and, if none failed, publishes. `on_task` sees each task as it ends (for
/// progress and logs).
pub fn run_local(
    analysis: &LoadedAnalysis,
    mut tasks: Vec<TaskSpec>,
    options: &RunOptions,
    counters: &Arc<Counters>,
    on_task: &(dyn Fn(&TaskResult) + Sync),
) -> JobResult {
    let started = Instant::now();
    // Largest first: the job ends sooner when no big task is left for last.
    tasks.sort_by_key(|t| std::cmp::Reverse(t.bytes()));
    let queue = Mutex::new(VecDeque::from(tasks));
    let (sender, receiver) = crossbeam_channel::unbounded();
    let jobs = options.jobs.max(1);

    let mut merger = Merger::new(analysis, &options.task.params, options.task.merge_fan_in);
    if let Some(previous) = &options.previous_partial {
        merger.add(previous.clone());
    }
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    std::thread::scope(|scope| {
        for worker in 0..jobs {
            let sender = sender.clone();
            let queue = &queue;
            std::thread::Builder::new()
                .name(format!("spotmill-worker-{worker}"))
                .spawn_scoped(scope, move || loop {
                    let Some(task) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let result = run_task(analysis, &LocalFiles, &task, &options.task, counters);
                    if sender.send(result).is_err() {
                        return;
                    }
                })
                .expect("cannot start a worker thread");
        }
        drop(sender);
        // The merge runs here, beside the workers, as partials arrive.
        for result in receiver {
            on_task(&result);
            match result {
                Ok(mut report) => {
                    merger.add(std::mem::take(&mut report.partial));
                    reports.push(report);
                }
                Err(failure) => failures.push(*failure),
            }
        }
    });
    reports.sort_by(|a, b| a.task.cmp(&b.task));
    failures.sort_by(|a, b| a.task.cmp(&b.task));

    let mut partial = None;
    let records: u64 = reports.iter().map(|r| r.records).sum();
    let mapped: u64 = reports.iter().map(|r| r.records_mapped).sum();
    let (files, publish_error) = if failures.is_empty() && records > 0 && mapped == 0 {
        // Below every task's budget, but nothing went into the result: publishing it
        // would present an empty answer as a good one.
        let error = format!(
            "every one of the {records} records was quarantined, so there is nothing to publish; \
             see the quarantined records for why"
        );
        (Vec::new(), Some(error))
    } else if failures.is_empty() {
        match merger.finish() {
            Ok(merged) => {
                let published = merger.publish(&merged);
                partial = Some(merged);
                match published {
                    Ok(files) => (files, None),
                    Err(e) => (Vec::new(), Some(e)),
                }
            }
            Err(e) => (Vec::new(), Some(e)),
        }
    } else {
        (Vec::new(), None)
    };
    JobResult {
        partial,
        reports,
        failures,
        files,
        publish_error,
        reduce_fuel: merger.fuel_used(),
        elapsed: started.elapsed(),
    }
}
