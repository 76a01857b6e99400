//! `spotmill worker`: take tasks off the queue, run them under the sandbox, put the partial
//! under the task's key, report it on the done queue, then delete the task.
//!
//! - Leases: every in-flight task's visibility is pushed forward every `extend_every` while
//!   it runs; a worker that dies stops extending and SQS hands the task to another worker.
//! - Stopping: on SIGTERM/SIGINT or a spot interruption notice the worker takes no more
//!   work, releases every in-flight task at once (visibility 0, so another worker starts
//!   it right away) and returns; the caller exits without waiting for the abandoned tasks.
//! - Failures (a guest that fails the task, a missing or unreadable input object) are
//!   written to `partials/<task>.failure.json` and the task goes back to the queue after
//!   `failure_backoff`; after the queue's maxReceiveCount SQS moves it to the dead-letter
//!   queue, where the aggregator and `spotmill status` report it with that reason.
//!
//! Each event is printed on stdout as one JSON line (`{"event":"done","task":...}`), for
//! logs and for the fault tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::aws::Aws;
use super::objects::{self, S3Input, S3Url};
use super::protocol::{
    DoneMessage, FailureReport, JobPaths, TaskFile, TaskMessage, TaskStats, PROTOCOL_VERSION,
};
use super::queue::{Queue, Received};
use crate::sandbox::{ArtifactCache, LoadedAnalysis, Sandbox};
use crate::task::{run_task, Counters, TaskSpec};

/// How a worker runs.
#[derive(Clone)]
pub struct WorkerOptions {
    pub task_queue: String,
    pub done_queue: String,
    /// Tasks run at once (one per core by default).
    pub jobs: usize,
    /// Long-poll wait of each receive, in seconds (0-20).
    pub wait_seconds: i32,
    /// The lease each extension grants, in seconds.
    pub visibility_seconds: i32,
    /// How often leases are extended.
    pub extend_every: Duration,
    /// How long a failed task stays invisible before its next attempt, in seconds.
    pub failure_backoff_seconds: i32,
    /// The spot interruption notice URL; None: not polled.
    pub interruption_url: Option<String>,
    pub interruption_poll: Duration,
    pub cache: Option<ArtifactCache>,
    pub worker_id: String,
    /// Stop after this many tasks (None: run until stopped).
    pub max_tasks: Option<u64>,
    /// Stop after this long without a message (None: never).
    pub idle_exit: Option<Duration>,
}

/// Why the worker returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// SIGTERM/SIGINT or a spot notice: in-flight tasks were released.
    Stopped { reason: String, released: usize },
    /// `max_tasks` or `idle_exit` reached.
    Finished { tasks: u64 },
}

struct InFlight {
    receipt: String,
    task: String,
    job: String,
}

struct Shared {
    aws: Arc<Aws>,
    options: WorkerOptions,
    tasks: Queue,
    done: Queue,
    in_flight: Mutex<HashMap<usize, InFlight>>,
    stop: watch::Sender<Option<String>>,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    analyses: Mutex<HashMap<String, Arc<LoadedAnalysis>>>,
    params: Mutex<HashMap<String, String>>,
    finished: AtomicU64,
}

/// Prints one event line on stdout.
pub fn event(kind: &str, worker: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({"event": kind, "worker": worker, "t": super::now_secs()});
    if let (Some(map), serde_json::Value::Object(more)) = (line.as_object_mut(), fields) {
        map.extend(more);
    }
    println!("{line}");
}

pub fn run_worker(aws: Arc<Aws>, options: WorkerOptions) -> anyhow::Result<WorkerExit> {
    let runtime = aws.handle();
    runtime.block_on(run_async(Arc::clone(&aws), options))
}

async fn run_async(aws: Arc<Aws>, options: WorkerOptions) -> anyhow::Result<WorkerExit> {
    let tasks = Queue::resolve(&aws.sqs, &options.task_queue).await?;
    let done = Queue::resolve(&aws.sqs, &options.done_queue).await?;
    let (stop, mut stopped) = watch::channel(None::<String>);
    let shared = Arc::new(Shared {
        aws,
        options: options.clone(),
        tasks,
        done,
        in_flight: Mutex::default(),
        stop,
        sandboxes: Mutex::default(),
        analyses: Mutex::default(),
        params: Mutex::default(),
        finished: AtomicU64::new(0),
    });
    let id = options.worker_id.clone();

    // Signals.
    {
        let shared = Arc::clone(&shared);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        tokio::spawn(async move {
            let reason = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            shared.stop.send_replace(Some(reason.to_string()));
        });
    }
    // Spot interruption notices, on a plain thread (the client is blocking).
    if let Some(url) = options.interruption_url.clone() {
        let shared = Arc::clone(&shared);
        let poll = options.interruption_poll;
        std::thread::Builder::new()
            .name("spotmill-spot-notice".into())
            .spawn(move || loop {
                if shared.stop.borrow().is_some() {
                    return;
                }
                if super::interrupt::notice_posted(&url, Duration::from_secs(1)) {
                    shared
                        .stop
                        .send_replace(Some("spot interruption notice".to_string()));
                    return;
                }
                std::thread::sleep(poll);
            })?;
    }
    // Leases.
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(shared.options.extend_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let leases: Vec<(String, String)> = shared
                    .lock_in_flight()
                    .values()
                    .map(|f| (f.receipt.clone(), f.task.clone()))
                    .collect();
                for (receipt, task) in leases {
                    let result = shared
                        .tasks
                        .set_visibility(&receipt, shared.options.visibility_seconds)
                        .await;
                    if let Err(e) = result {
                        // Usually: the task finished meanwhile, or the lease was lost and
                        // another worker has it (its partial key is the same: harmless).
                        if shared
                            .lock_in_flight()
                            .values()
                            .any(|f| f.receipt == receipt)
                        {
                            tracing::warn!("could not extend the lease of {task}: {e:#}");
                            event(
                                "lease-lost",
                                &shared.options.worker_id,
                                serde_json::json!({"task": task, "error": format!("{e:#}")}),
                            );
                        }
                    }
                }
            }
        });
    }

    event(
        "ready",
        &id,
        serde_json::json!({"jobs": options.jobs, "pid": std::process::id()}),
    );
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..options.jobs.max(1) {
        slots.spawn(run_slot(Arc::clone(&shared), slot));
    }
    let all_slots = async {
        while let Some(joined) = slots.join_next().await {
            if let Err(e) = joined {
                tracing::error!("a worker slot panicked: {e}");
            }
        }
    };
    tokio::select! {
        _ = stopped.wait_for(|s| s.is_some()) => {}
        _ = all_slots => {
            let tasks = shared.finished.load(Ordering::Relaxed);
            event("exit", &id, serde_json::json!({"reason": "finished", "tasks": tasks}));
            return Ok(WorkerExit::Finished { tasks });
        }
    }
    let reason = shared.stop.borrow().clone().unwrap_or_default();
    event("stopping", &id, serde_json::json!({"reason": reason}));
    let released = release_all(&shared).await;
    event(
        "exit",
        &id,
        serde_json::json!({"reason": reason, "released": released}),
    );
    Ok(WorkerExit::Stopped { reason, released })
}

/// Gives every in-flight task back to the queue now.
async fn release_all(shared: &Arc<Shared>) -> usize {
    let leases: Vec<InFlight> = shared.lock_in_flight().drain().map(|(_, f)| f).collect();
    let mut releases = tokio::task::JoinSet::new();
    for lease in leases {
        let queue = shared.tasks.clone();
        releases.spawn(async move {
            let result = queue.set_visibility(&lease.receipt, 0).await;
            (lease, result)
        });
    }
    let mut released = 0;
    while let Some(Ok((lease, result))) = releases.join_next().await {
        match result {
            Ok(()) => {
                released += 1;
                event(
                    "released",
                    &shared.options.worker_id,
                    serde_json::json!({"task": lease.task, "job": lease.job}),
                );
            }
            Err(e) => tracing::warn!("could not release {}: {e:#}", lease.task),
        }
    }
    released
}

impl Shared {
    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<usize, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.borrow().is_some()
    }
}

/// What became of one task.
enum Outcome {
    Done(DoneMessage),
    Failed(FailureReport),
}

async fn run_slot(shared: Arc<Shared>, slot: usize) {
    let options = &shared.options;
    let mut stopped = shared.stop.subscribe();
    let mut idle_since = Instant::now();
    loop {
        if shared.stopping() {
            return;
        }
        if let Some(max) = options.max_tasks {
            if shared.finished.load(Ordering::Relaxed) >= max {
                return;
            }
        }
        let received = tokio::select! {
            r = shared.tasks.receive(1, options.wait_seconds, Some(options.visibility_seconds)) => r,
            _ = stopped.wait_for(|s| s.is_some()) => return,
        };
        let message = match received {
            Ok(mut messages) if !messages.is_empty() => messages.remove(0),
            Ok(_) => {
                if options.idle_exit.is_some_and(|d| idle_since.elapsed() >= d) {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        idle_since = Instant::now();
        let parsed: Option<TaskMessage> = serde_json::from_str(&message.body).ok();
        let (job, task) = parsed
            .as_ref()
            .map(|m| (m.job.clone(), m.task.clone()))
            .unwrap_or_else(|| (String::new(), format!("message {}", message.message_id)));
        shared.lock_in_flight().insert(
            slot,
            InFlight {
                receipt: message.receipt.clone(),
                task: task.clone(),
                job: job.clone(),
            },
        );
        if shared.stopping() {
            // The stop raced with this receive: the release pass takes it (or took it).
            return;
        }
        event(
            "start",
            &options.worker_id,
            serde_json::json!({"job": job, "task": task, "receive_count": message.receive_count, "slot": slot}),
        );
        let started = Instant::now();
        let work = {
            let shared = Arc::clone(&shared);
            let message = message.clone();
            tokio::task::spawn_blocking(move || process(&shared, parsed, &message, started))
        };
        let outcome = match work.await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(FailureReport {
                job: job.clone(),
                task: task.clone(),
                worker: options.worker_id.clone(),
                reason: format!("the worker panicked running the task: {e}"),
                receive_count: message.receive_count,
                quarantine_notes: Vec::new(),
                file_errors: Vec::new(),
                at: super::now_secs(),
            }),
        };
        if shared.stopping() {
            return; // released (or being released) by the stop pass
        }
        finish(&shared, &message, outcome).await;
        shared.lock_in_flight().remove(&slot);
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
}

async fn finish(shared: &Shared, message: &Received, outcome: Outcome) {
    let id = &shared.options.worker_id;
    match outcome {
        Outcome::Done(done) => {
            let body = serde_json::to_string(&done).expect("a done message serialises");
            if let Err(e) = shared.done.send(&body).await {
                // Not reported: leave the task to come back and be redone.
                tracing::error!("{e:#}");
                let _ = shared.tasks.set_visibility(&message.receipt, 0).await;
                return;
            }
            if let Err(e) = shared.tasks.delete(&message.receipt).await {
                // The lease was lost: another worker may redo the task; the aggregator
                // counts it once.
                tracing::warn!("could not delete the task message of {}: {e:#}", done.task);
            }
            event(
                "done",
                id,
                serde_json::json!({"job": done.job, "task": done.task, "ms": done.elapsed_ms,
                    "bytes": done.stats.bytes_compressed, "records": done.stats.records}),
            );
        }
        Outcome::Failed(report) => {
            event(
                "failed",
                id,
                serde_json::json!({"job": report.job, "task": report.task, "reason": report.reason,
                    "receive_count": report.receive_count}),
            );
            let backoff = shared.options.failure_backoff_seconds;
            if let Err(e) = shared.tasks.set_visibility(&message.receipt, backoff).await {
                tracing::warn!("could not hand back {}: {e:#}", report.task);
            }
        }
    }
}

/// Runs one task message to its outcome (on a blocking thread).
fn process(
    shared: &Shared,
    parsed: Option<TaskMessage>,
    message: &Received,
    started: Instant,
) -> Outcome {
    let worker = &shared.options.worker_id;
    let Some(task) = parsed else {
        return Outcome::Failed(FailureReport {
            job: String::new(),
            task: format!("message {}", message.message_id),
            worker: worker.clone(),
            reason: "not a spotmill task message (bad JSON)".into(),
            receive_count: message.receive_count,
            quarantine_notes: Vec::new(),
            file_errors: Vec::new(),
            at: super::now_secs(),
        });
    };
    if let Some(ms) = super::fault("task-delay-ms").and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let failure = |reason: String, notes: (Vec<String>, Vec<String>)| FailureReport {
        job: task.job.clone(),
        task: task.task.clone(),
        worker: worker.clone(),
        reason,
        receive_count: message.receive_count,
        quarantine_notes: notes.0,
        file_errors: notes.1,
        at: super::now_secs(),
    };
    let mut outcome = match run_message(shared, &task, started) {
        Ok(Ok(done)) => Outcome::Done(done),
        Ok(Err(report)) => Outcome::Failed(report),
        Err(e) => Outcome::Failed(failure(format!("{e:#}"), (Vec::new(), Vec::new()))),
    };
    if let Outcome::Failed(report) = &mut outcome {
        report.receive_count = message.receive_count;
        // Best effort: the reason is what status and the aggregator show for the task.
        if let Ok(root) = S3Url::parse(&task.job_root) {
            let paths = JobPaths::new(root, &task.job);
            let body = serde_json::to_vec_pretty(report).unwrap_or_default();
            let put = shared.aws.handle().block_on(objects::put(
                &shared.aws.s3,
                paths.bucket(),
                &paths.failure(&task.task),
                body,
                Some("application/json"),
            ));
            if let Err(e) = put {
                tracing::warn!("could not write the failure report of {}: {e:#}", task.task);
            }
        }
    }
    outcome
}

type TaskOutcome = Result<DoneMessage, FailureReport>;

fn run_message(
    shared: &Shared,
    task: &TaskMessage,
    started: Instant,
) -> anyhow::Result<TaskOutcome> {
    if task.version != PROTOCOL_VERSION {
        bail!(
            "task message version {} is not {PROTOCOL_VERSION}: upgrade the workers",
            task.version
        );
    }
    let runtime = shared.aws.handle();
    let s3 = &shared.aws.s3;
    let root = S3Url::parse(&task.job_root)?;
    let input = S3Url::parse(&task.input)?;
    let paths = JobPaths::new(root.clone(), &task.job);
    let files: Vec<TaskFile> = match &task.spec_key {
        Some(key) => {
            serde_json::from_slice(&runtime.block_on(objects::get(s3, &root.bucket, key))?)
                .with_context(|| format!("the task spec {key} is not valid"))?
        }
        None => task.files.clone(),
    };
    let analysis = shared.analysis(task, &root)?;
    let params = shared.params(task, &root)?;
    let spec = TaskSpec {
        id: task.task.clone(),
        files: files.iter().map(|f| f.to_input(&input)).collect(),
    };
    let source = S3Input::new(runtime.clone(), s3.clone(), input);
    let options = task.settings.options(params);
    let counters = Arc::new(Counters::default());
    let result = run_task(&analysis, &source, &spec, &options, &counters);
    let io_errors = source.errors();
    let failure = |reason: String, report: &crate::task::TaskReport| {
        let notes = FailureReport::notes_from(report);
        FailureReport {
            job: task.job.clone(),
            task: task.task.clone(),
            worker: shared.options.worker_id.clone(),
            reason,
            receive_count: 0,
            quarantine_notes: notes.0,
            file_errors: notes.1,
            at: super::now_secs(),
        }
    };
    let report = match result {
        Err(f) => return Ok(Err(failure(f.to_string(), &f.report))),
        Ok(report) if !io_errors.is_empty() => {
            return Ok(Err(failure(
                format!(
                    "{} input object(s) could not be read: {}",
                    io_errors.len(),
                    io_errors.join("; ")
                ),
                &report,
            )))
        }
        Ok(report) => report,
    };
    let partial = report.partial.clone();
    let partial_sha256 = hex::encode(Sha256::digest(&partial));
    let partial_bytes = partial.len() as u64;
    let key = paths.partial(&task.task);
    runtime.block_on(objects::put(s3, &root.bucket, &key, partial, None))?;
    Ok(Ok(DoneMessage {
        version: PROTOCOL_VERSION,
        job: task.job.clone(),
        task: task.task.clone(),
        partial_key: key,
        partial_bytes,
        partial_sha256,
        worker: shared.options.worker_id.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        stats: TaskStats::from_report(&report),
    }))
}

impl Shared {
    /// The job's component, downloaded, verified and compiled once per (component, limits).
    fn analysis(&self, task: &TaskMessage, root: &S3Url) -> anyhow::Result<Arc<LoadedAnalysis>> {
        let limits_key = serde_json::to_string(&task.limits)?;
        let key = format!("{}:{limits_key}", task.component);
        // Held while compiling: other slots wait for the same component instead of
        // compiling it again.
        let mut analyses = self.analyses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = analyses.get(&key) {
            return Ok(Arc::clone(found));
        }
        let code_key = JobPaths::code(root, &task.component);
        let bytes =
            self.aws
                .handle()
                .block_on(objects::get(&self.aws.s3, &root.bucket, &code_key))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != task.component {
            bail!(
                "the component at s3://{}/{code_key} has SHA-256 {actual}, not {} as the task says: refusing to run it",
                root.bucket,
                task.component
            );
        }
        let sandbox = {
            let mut sandboxes = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
            match sandboxes.get(&limits_key) {
                Some(s) => s.clone(),
                None => {
                    let s = Sandbox::new(task.limits.clone(), self.options.cache.clone())?;
                    sandboxes.insert(limits_key.clone(), s.clone());
                    s
                }
            }
        };
        let loaded = sandbox
            .load(
                &format!("{}.wasm", &task.component[..12.min(task.component.len())]),
                &bytes,
            )
            .map_err(|e| anyhow!("{e:#}"))?;
        let loaded = Arc::new(loaded);
        analyses.insert(key, Arc::clone(&loaded));
        Ok(loaded)
    }

    fn params(&self, task: &TaskMessage, root: &S3Url) -> anyhow::Result<String> {
        let mut params = self.params.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = params.get(&task.params_key) {
            return Ok(found.clone());
        }
        let bytes = self.aws.handle().block_on(objects::get(
            &self.aws.s3,
            &root.bucket,
            &task.params_key,
        ))?;
        let text = String::from_utf8(bytes).context("the job's params are not UTF-8")?;
        params.insert(task.params_key.clone(), text.clone());
        Ok(text)
    }
}
