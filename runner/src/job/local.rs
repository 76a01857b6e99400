//! `spotmill run`: every task on worker threads of this process, then merge and publish.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sandbox::{CallError, FuelMeter, LoadedAnalysis, ReducerInstance};
use crate::task::{run_task, Counters, TaskFailure, TaskOptions, TaskReport, TaskResult, TaskSpec};

/// How a local job runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads, one task each at a time.
    pub jobs: usize,
    pub task: TaskOptions,
}

/// What a local job produced.
#[derive(Debug)]
pub struct JobResult {
    pub reports: Vec<TaskReport>,
    pub failures: Vec<TaskFailure>,
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
                    let result = run_task(analysis, &task, &options.task, counters);
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

    let (files, publish_error) = if failures.is_empty() {
        match merger.finish_and_publish() {
            Ok(files) => (files, None),
            Err(e) => (Vec::new(), Some(e)),
        }
    } else {
        (Vec::new(), None)
    };
    JobResult {
        reports,
        failures,
        files,
        publish_error,
        reduce_fuel: merger.meter.used(),
        elapsed: started.elapsed(),
    }
}

/// Merges partials in groups as they come, so memory holds at most `fan_in` of them.
struct Merger<'a> {
    analysis: &'a LoadedAnalysis,
    params: &'a str,
    fan_in: usize,
    pending: Vec<Vec<u8>>,
    reducer: Option<ReducerInstance>,
    meter: FuelMeter,
    error: Option<String>,
}

impl<'a> Merger<'a> {
    fn new(analysis: &'a LoadedAnalysis, params: &'a str, fan_in: usize) -> Self {
        Merger {
            analysis,
            params,
            fan_in: fan_in.max(2),
            pending: Vec::new(),
            reducer: None,
            // The reduce side of a job gets one task's budget.
            meter: FuelMeter::new(analysis.sandbox.limits().fuel_per_task),
            error: None,
        }
    }

    fn add(&mut self, partial: Vec<u8>) {
        if partial.is_empty() || self.error.is_some() {
            return;
        }
        self.pending.push(partial);
        if self.pending.len() >= self.fan_in {
            if let Err(e) = self.merge_pending() {
                self.error = Some(e);
            }
        }
    }

    fn reducer(&mut self) -> Result<&mut ReducerInstance, String> {
        if self.reducer.is_none() {
            let reducer = ReducerInstance::start(self.analysis, self.params, &mut self.meter)
                .map_err(|e| describe("starting the reducer", &e))?;
            self.reducer = Some(reducer);
        }
        Ok(self.reducer.as_mut().expect("started above"))
    }

    fn merge_pending(&mut self) -> Result<(), String> {
        if self.pending.len() < 2 {
            return Ok(());
        }
        let partials = std::mem::take(&mut self.pending);
        let mut meter = self.meter;
        let result = self.reducer()?.merge(&partials, &mut meter);
        self.meter = meter;
        let merged = result.map_err(|e| {
            self.reducer = None;
            describe(&format!("merging {} task partials", partials.len()), &e)
        })?;
        self.pending.push(merged);
        Ok(())
    }

    fn finish_and_publish(&mut self) -> Result<Vec<(String, Vec<u8>)>, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.merge_pending()?;
        let last = self.pending.pop().unwrap_or_default();
        let mut meter = self.meter;
        let result = self.reducer()?.publish(&last, &mut meter);
        self.meter = meter;
        let files = result.map_err(|e| describe("publishing the result", &e))?;
        Ok(files.into_iter().map(|f| (f.path, f.contents)).collect())
    }
}

fn describe(what: &str, error: &CallError) -> String {
    format!("{what} failed: {error}")
}
