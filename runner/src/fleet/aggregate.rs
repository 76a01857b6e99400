//! `spotmill aggregate`: the master. Consumes done messages, merges the partials they name
//! with the reducer (each task id once), persists the merged state with the set of merged
//! ids, deletes the messages, and publishes when every task is merged or failed.
//!
//! Crash safety, step by step (a restart resumes from `state.json`):
//! 1. receive a round of done messages (they stay invisible for `lease_seconds`);
//! 2. fetch the partials of task ids not yet merged, tree-merge them with the previous
//!    merged partial;
//! 3. PUT the new merged partial under a new generation key (unreferenced until step 4);
//! 4. PUT `state.json` (generation, merged ids, partial key): the commit point;
//! 5. delete the round's messages. A crash before 5 re-delivers them; their ids are in the
//!    merged set, so they are deleted without being merged again.
//!
//! Publishing writes every file under a new prefix `<web>/<revision>/` (the revision is the
//! state generation, so a restart rewrites the same files), then `versions.json`, then moves
//! the pointer `current.json` last: a reader of the pointer never sees half a revision.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};

use super::aws::Aws;
use super::objects::{self, S3Url};
use super::protocol::{
    AggregatorState, DoneMessage, FailedTask, FailureReport, JobPaths, JobRecord, MergedTask,
    Published, TaskMessage, PROTOCOL_VERSION,
};
use super::queue::{Queue, Received};
use super::submit::load_job;
use crate::job::{output, Merger};
use crate::sandbox::{ArtifactCache, LoadedAnalysis, Sandbox};

/// How the aggregator runs.
#[derive(Clone)]
pub struct AggregateOptions {
    pub job_root: S3Url,
    pub job: String,
    /// Default: the job record's done queue.
    pub done_queue: Option<String>,
    /// Default: the job record's dead-letter queue.
    pub dead_letter_queue: Option<String>,
    /// Where to publish (default `jobs/<job>/published/` in the analysis bucket).
    pub web: Option<S3Url>,
    pub wait_seconds: i32,
    /// How long received done messages stay invisible while a round is merged.
    pub lease_seconds: i32,
    /// Done messages per round at most.
    pub round_size: usize,
    pub fan_in: usize,
    pub fetch_concurrency: usize,
    /// Publish even when some tasks failed (the pointer says which).
    pub allow_failed: bool,
    /// Give up after this long without finishing.
    pub timeout: Option<Duration>,
    pub cache: Option<ArtifactCache>,
    pub quiet: bool,
}

impl AggregateOptions {
    pub fn new(job_root: S3Url, job: &str) -> Self {
        AggregateOptions {
            job_root,
            job: job.to_string(),
            done_queue: None,
            dead_letter_queue: None,
            web: None,
            wait_seconds: 20,
            lease_seconds: 300,
            round_size: 1000,
            fan_in: 16,
            fetch_concurrency: 32,
            allow_failed: false,
            timeout: None,
            cache: None,
            quiet: false,
        }
    }
}

/// How an aggregation ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AggregateOutcome {
    pub job: String,
    pub tasks: usize,
    pub merged: usize,
    pub failed: BTreeMap<String, String>,
    pub duplicates_ignored: u64,
    pub published: Option<Published>,
    pub merge_seconds: f64,
    pub wall_seconds: f64,
}

/// Merges partials as a tree: groups of `fan_in` at each level, so memory holds at most
/// `fan_in` partials per level and no partial is re-merged more than log(n) times.
pub struct TreeMerger<'a> {
    analysis: &'a LoadedAnalysis,
    params: &'a str,
    fan_in: usize,
    levels: Vec<Vec<Vec<u8>>>,
    fuel: u64,
}

impl<'a> TreeMerger<'a> {
    pub fn new(analysis: &'a LoadedAnalysis, params: &'a str, fan_in: usize) -> Self {
        TreeMerger {
            analysis,
            params,
            fan_in: fan_in.max(2),
            levels: Vec::new(),
            fuel: 0,
        }
    }

    pub fn add(&mut self, partial: Vec<u8>) -> Result<(), String> {
        if partial.is_empty() {
            return Ok(());
        }
        self.push(0, partial)
    }

    fn push(&mut self, level: usize, partial: Vec<u8>) -> Result<(), String> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(partial);
        if self.levels[level].len() >= self.fan_in {
            let group = std::mem::take(&mut self.levels[level]);
            let merged = self.merge_group(group)?;
            self.push(level + 1, merged)?;
        }
        Ok(())
    }

    fn merge_group(&mut self, group: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        let mut merger = Merger::new(self.analysis, self.params, group.len().max(2));
        for partial in group {
            merger.add(partial);
        }
        let merged = merger.finish();
        self.fuel += merger.fuel_used();
        merged
    }

    /// Merges everything left into one partial (empty: nothing was added).
    pub fn finish(mut self) -> Result<(Vec<u8>, u64), String> {
        let mut rest: Vec<Vec<u8>> = self.levels.drain(..).flatten().collect();
        while rest.len() > 1 {
            let mut next = Vec::new();
            let groups: Vec<Vec<Vec<u8>>> = rest.chunks(self.fan_in).map(|c| c.to_vec()).collect();
            for group in groups {
                next.push(if group.len() == 1 {
                    group.into_iter().next().unwrap_or_default()
                } else {
                    self.merge_group(group)?
                });
            }
            rest = next;
        }
        Ok((rest.pop().unwrap_or_default(), self.fuel))
    }
}

/// Downloads, verifies and compiles a job's component.
pub fn load_analysis(
    aws: &Aws,
    record: &JobRecord,
    root: &S3Url,
    cache: Option<ArtifactCache>,
) -> anyhow::Result<LoadedAnalysis> {
    let bytes = aws.block_on(objects::get(
        &aws.s3,
        &root.bucket,
        &record.analysis.code_key,
    ))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != record.analysis.sha256 {
        bail!(
            "the component s3://{}/{} has SHA-256 {actual}, not {} as the job says",
            root.bucket,
            record.analysis.code_key,
            record.analysis.sha256
        );
    }
    let sandbox = Sandbox::new(record.limits.clone(), cache)?;
    sandbox.load(&record.analysis.name, &bytes)
}

pub async fn load_state(aws: &Aws, paths: &JobPaths) -> anyhow::Result<Option<AggregatorState>> {
    match objects::get_optional(&aws.s3, paths.bucket(), &paths.state()).await? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).context("the aggregator state is not valid")?,
        )),
        None => Ok(None),
    }
}

async fn save_state(aws: &Aws, paths: &JobPaths, state: &AggregatorState) -> anyhow::Result<()> {
    objects::put(
        &aws.s3,
        paths.bucket(),
        &paths.state(),
        serde_json::to_vec(state)?,
        Some("application/json"),
    )
    .await
}

pub fn aggregate(aws: &Arc<Aws>, options: &AggregateOptions) -> anyhow::Result<AggregateOutcome> {
    let started = Instant::now();
    let record = aws.block_on(load_job(aws, &options.job_root, &options.job))?;
    let paths = JobPaths::new(options.job_root.clone(), &options.job);
    let analysis = load_analysis(aws, &record, &options.job_root, options.cache.clone())?;
    if analysis.component_exports_mapper_and_reducer().is_err() {
        bail!(
            "{}: the job's component exports no reducer",
            record.analysis.name
        );
    }
    let params = String::from_utf8(aws.block_on(objects::get(
        &aws.s3,
        paths.bucket(),
        &record.params_key,
    ))?)
    .context("the job's params are not UTF-8")?;
    let done_url = options
        .done_queue
        .clone()
        .or_else(|| record.done_queue.clone())
        .ok_or_else(|| {
            anyhow!(
                "job {} was submitted without --done-queue: give --done-queue",
                record.job
            )
        })?;
    let done = aws.block_on(Queue::resolve(&aws.sqs, &done_url))?;
    let dead_letter = match options
        .dead_letter_queue
        .clone()
        .or_else(|| record.dead_letter_queue.clone())
    {
        Some(q) => Some(aws.block_on(Queue::resolve(&aws.sqs, &q))?),
        None => None,
    };
    let mut state = aws
        .block_on(load_state(aws, &paths))?
        .unwrap_or(AggregatorState {
            version: PROTOCOL_VERSION,
            job: record.job.clone(),
            ..AggregatorState::default()
        });
    let known: HashSet<&str> = record.tasks.iter().map(|t| t.id.as_str()).collect();
    let total = record.tasks.len();
    let mut duplicates = 0u64;
    let mut merge_time = Duration::ZERO;
    let deadline = options.timeout.map(|t| started + t);

    loop {
        let accounted = state.merged.len()
            + state
                .failed
                .keys()
                .filter(|t| !state.merged.contains_key(*t))
                .count();
        if accounted >= total {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!(
                "timed out: {} of {total} tasks merged, {} failed",
                state.merged.len(),
                state.failed.len()
            );
        }
        let round = aws.block_on(receive_round(&done, options))?;
        let mut fresh: BTreeMap<String, DoneMessage> = BTreeMap::new();
        let mut fresh_receipts: BTreeMap<String, String> = BTreeMap::new();
        let mut acknowledge: Vec<String> = Vec::new();
        let mut foreign: Vec<String> = Vec::new();
        for message in round {
            let parsed: DoneMessage = match serde_json::from_str(&message.body) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(
                        "dropping a message that is not a done message ({e}): {}",
                        super::protocol::truncate(&message.body, 200)
                    );
                    acknowledge.push(message.receipt);
                    continue;
                }
            };
            if parsed.job != record.job {
                foreign.push(message.receipt);
                continue;
            }
            if !known.contains(parsed.task.as_str()) {
                tracing::error!("dropping a done message for unknown task {}", parsed.task);
                acknowledge.push(message.receipt);
                continue;
            }
            if state.merged.contains_key(&parsed.task) || fresh.contains_key(&parsed.task) {
                duplicates += 1;
                acknowledge.push(message.receipt);
                continue;
            }
            fresh_receipts.insert(parsed.task.clone(), message.receipt);
            fresh.insert(parsed.task.clone(), parsed);
        }
        // Another job's messages go back at once.
        for receipt in foreign {
            let _ = aws.block_on(done.set_visibility(&receipt, 0));
        }
        if !fresh.is_empty() {
            let merge_started = Instant::now();
            let fetched = aws.block_on(fetch_partials(
                aws,
                &paths,
                &fresh,
                options.fetch_concurrency,
            ));
            let mut tree = TreeMerger::new(&analysis, &params, options.fan_in);
            if let Some(key) = &state.partial_key {
                let previous = aws.block_on(objects::get(&aws.s3, paths.bucket(), key))?;
                tree.add(previous).map_err(|e| anyhow!(e))?;
            }
            let mut merged_now = Vec::new();
            for (task, partial) in fetched {
                match partial {
                    Ok(bytes) => {
                        let expected = &fresh[&task].partial_sha256;
                        let actual = hex::encode(Sha256::digest(&bytes));
                        if &actual != expected {
                            // A re-run overwrote it with other bytes: both are complete
                            // results of the task; one of them is merged, once.
                            tracing::warn!("the partial of {task} changed since its done message");
                        }
                        tree.add(bytes).map_err(|e| anyhow!(e))?;
                        merged_now.push(task);
                    }
                    Err(e) => {
                        // Not merged and not acknowledged: it comes back and is retried.
                        tracing::error!("cannot read the partial of {task}: {e:#}");
                    }
                }
            }
            let (merged, fuel) = tree.finish().map_err(|e| anyhow!(e))?;
            let generation = state.generation + 1;
            let key = paths.state_partial(generation);
            aws.block_on(objects::put(&aws.s3, paths.bucket(), &key, merged, None))?;
            let previous_key = state.partial_key.replace(key);
            state.generation = generation;
            state.merge_fuel += fuel;
            for task in &merged_now {
                let message = &fresh[task];
                state.failed.remove(task);
                state.merged.insert(
                    task.clone(),
                    MergedTask {
                        worker: message.worker.clone(),
                        stats: message.stats.clone(),
                    },
                );
            }
            state.updated_at = super::now_secs();
            aws.block_on(save_state(aws, &paths, &state))?;
            merge_time += merge_started.elapsed();
            if super::fault("exit-after-state-write").is_some() {
                eprintln!(
                    "SPOTMILL_FAULT: exiting after the state write, before deleting messages"
                );
                std::process::exit(75);
            }
            if let Some(old) = previous_key {
                // Unreferenced since the commit above.
                let _ = aws.block_on(objects::delete(&aws.s3, paths.bucket(), &old));
            }
            // Messages whose partial could not be read are not acknowledged: they come
            // back after the lease and are tried again.
            for task in &merged_now {
                if let Some(receipt) = fresh_receipts.remove(task) {
                    acknowledge.push(receipt);
                }
            }
        }
        // Only now that the state is durable: delete the merged, duplicate and unusable ones.
        if !acknowledge.is_empty() {
            aws.block_on(done.delete_all(&acknowledge))?;
        }
        if let Some(dlq) = &dead_letter {
            aws.block_on(sweep_dead_letters(
                aws, dlq, &paths, &record, &mut state, options,
            ))?;
        }
        if !options.quiet {
            eprintln!(
                "aggregate {}: {}/{total} tasks merged, {} failed, {duplicates} duplicate messages ignored",
                record.job,
                state.merged.len(),
                state.failed.len()
            );
        }
    }

    let failed: BTreeMap<String, String> = state
        .failed
        .iter()
        .filter(|(t, _)| !state.merged.contains_key(*t))
        .map(|(t, f)| (t.clone(), f.reason.clone()))
        .collect();
    let published = if failed.is_empty() || options.allow_failed {
        Some(publish(
            aws, options, &paths, &analysis, &params, &mut state, &failed,
        )?)
    } else {
        None
    };
    Ok(AggregateOutcome {
        job: record.job.clone(),
        tasks: total,
        merged: state.merged.len(),
        failed,
        duplicates_ignored: duplicates,
        published,
        merge_seconds: merge_time.as_secs_f64(),
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

async fn receive_round(done: &Queue, options: &AggregateOptions) -> anyhow::Result<Vec<Received>> {
    let mut round = Vec::new();
    loop {
        let wait = if round.is_empty() {
            options.wait_seconds
        } else {
            0
        };
        let got = done.receive(10, wait, Some(options.lease_seconds)).await?;
        if got.is_empty() {
            break;
        }
        round.extend(got);
        if round.len() >= options.round_size {
            break;
        }
    }
    Ok(round)
}

async fn fetch_partials(
    aws: &Aws,
    paths: &JobPaths,
    fresh: &BTreeMap<String, DoneMessage>,
    concurrency: usize,
) -> Vec<(String, anyhow::Result<Vec<u8>>)> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for (task, message) in fresh {
        let s3 = aws.s3.clone();
        let bucket = paths.bucket().to_string();
        let key = message.partial_key.clone();
        let task = task.clone();
        let semaphore = Arc::clone(&semaphore);
        running.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let result = objects::get(&s3, &bucket, &key).await;
            (task, result)
        });
    }
    let mut out = Vec::with_capacity(fresh.len());
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(pair) => out.push(pair),
            Err(e) => tracing::error!("a partial download panicked: {e}"),
        }
    }
    // Merge order does not change the result of a lawful reducer; keep it stable anyway.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Records the job's tasks that ended in the dead-letter queue as failed (with the reason
/// the last worker wrote), persists that, then deletes them from the dead-letter queue
/// (the task message is kept in the state, to resubmit once the cause is fixed).
async fn sweep_dead_letters(
    aws: &Aws,
    dlq: &Queue,
    paths: &JobPaths,
    record: &JobRecord,
    state: &mut AggregatorState,
    options: &AggregateOptions,
) -> anyhow::Result<()> {
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for _ in 0..10 {
        let got = dlq
            .receive(10, 0, Some(options.lease_seconds.min(60)))
            .await?;
        if got.is_empty() {
            break;
        }
        for message in got {
            match serde_json::from_str::<TaskMessage>(&message.body) {
                Ok(task) if task.job == record.job => ours.push((task, message)),
                _ => foreign.push(message.receipt),
            }
        }
    }
    for receipt in foreign {
        let _ = dlq.set_visibility(&receipt, 0).await;
    }
    if ours.is_empty() {
        return Ok(());
    }
    for (task, message) in &ours {
        if state.merged.contains_key(&task.task) {
            continue; // a late duplicate of a task another attempt finished
        }
        let report: Option<FailureReport> =
            objects::get_optional(&aws.s3, paths.bucket(), &paths.failure(&task.task))
                .await?
                .and_then(|b| serde_json::from_slice(&b).ok());
        let failed = match report {
            Some(r) => FailedTask {
                reason: r.reason,
                receive_count: message.receive_count.max(r.receive_count),
                quarantine_notes: r.quarantine_notes,
                file_errors: r.file_errors,
                message: message.body.clone(),
            },
            None => FailedTask {
                reason: format!(
                    "moved to the dead-letter queue after {} deliveries without completing \
                     (workers died or lost the lease; no failure report)",
                    message.receive_count.saturating_sub(1)
                ),
                receive_count: message.receive_count,
                quarantine_notes: Vec::new(),
                file_errors: Vec::new(),
                message: message.body.clone(),
            },
        };
        state.failed.insert(task.task.clone(), failed);
    }
    state.updated_at = super::now_secs();
    save_state(aws, paths, state).await?;
    let receipts: Vec<String> = ours.into_iter().map(|(_, m)| m.receipt).collect();
    dlq.delete_all(&receipts).await?;
    Ok(())
}

fn content_type(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        Some("html") => "text/html",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

fn publish(
    aws: &Aws,
    options: &AggregateOptions,
    paths: &JobPaths,
    analysis: &LoadedAnalysis,
    params: &str,
    state: &mut AggregatorState,
    failed: &BTreeMap<String, String>,
) -> anyhow::Result<Published> {
    let partial = match &state.partial_key {
        Some(key) => aws.block_on(objects::get(&aws.s3, paths.bucket(), key))?,
        None => Vec::new(),
    };
    let mut merger = Merger::new(analysis, params, 2);
    let files = merger.publish(&partial).map_err(|e| anyhow!(e))?;
    if files.len() > output::MAX_FILES {
        bail!(
            "the analysis published {} files, more than {}",
            files.len(),
            output::MAX_FILES
        );
    }
    for (path, _) in &files {
        // The same path rules as a local publish: relative, no `..`, no empty segments.
        output::safe_join(Path::new("/"), path)?;
    }
    let web = options.web.clone().unwrap_or_else(|| paths.default_web());
    let revision = format!("r{:08}", state.generation);
    let location = web.join(&revision);
    let names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    aws.block_on(async {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
        let mut running = tokio::task::JoinSet::new();
        for (path, contents) in files {
            let s3 = aws.s3.clone();
            let bucket = location.bucket.clone();
            let key = location.key(&path);
            let semaphore = Arc::clone(&semaphore);
            running.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                objects::put(&s3, &bucket, &key, contents, Some(content_type(&path))).await
            });
        }
        while let Some(joined) = running.join_next().await {
            joined.map_err(|e| anyhow!("an upload panicked: {e}"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let published = Published {
        revision: revision.clone(),
        location: location.to_string(),
        files: names,
        tasks_merged: state.merged.len() as u64,
        tasks_failed: failed.keys().cloned().collect(),
        complete: failed.is_empty(),
        at: super::now_secs(),
    };
    aws.block_on(async {
        let versions_key = web.key("versions.json");
        let mut versions: Vec<Published> =
            match objects::get_optional(&aws.s3, &web.bucket, &versions_key).await? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                None => Vec::new(),
            };
        versions.retain(|v| v.revision != revision);
        versions.push(published.clone());
        objects::put(
            &aws.s3,
            &web.bucket,
            &versions_key,
            serde_json::to_vec_pretty(&versions)?,
            Some("application/json"),
        )
        .await?;
        // The pointer moves last.
        objects::put(
            &aws.s3,
            &web.bucket,
            &web.key("current.json"),
            serde_json::to_vec_pretty(&published)?,
            Some("application/json"),
        )
        .await?;
        state.published = Some(published.clone());
        state.updated_at = super::now_secs();
        save_state(aws, paths, state).await
    })?;
    Ok(published)
}
