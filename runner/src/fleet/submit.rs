//! `spotmill submit`: plan tasks over an input prefix, upload the component and the job
//! record, send the tasks.

use anyhow::{bail, Context};

use super::aws::Aws;
use super::objects::{self, S3Url};
use super::protocol::{
    AnalysisRef, JobPaths, JobRecord, JobTask, TaskMessage, TaskSettings, PROTOCOL_VERSION,
};
use super::queue::{Queue, MAX_MESSAGE_BYTES};
use crate::job::{plan_tasks, PlanOptions};
use crate::logs::Filter;
use crate::sandbox::cache::component_hash;
use crate::sandbox::Limits;

/// Everything a submission needs.
pub struct SubmitRequest {
    pub analysis_name: String,
    pub analysis: Vec<u8>,
    pub input: S3Url,
    pub filter: Filter,
    /// The filter as given, recorded in the job record.
    pub filter_json: serde_json::Value,
    /// The job's parameters, JSON text (may be empty).
    pub params: String,
    pub job_root: S3Url,
    pub task_queue: String,
    pub done_queue: Option<String>,
    pub limits: Limits,
    pub settings: TaskSettings,
    pub plan: PlanOptions,
    /// A chosen job id (default: generated).
    pub job_id: Option<String>,
}

/// What was submitted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Submitted {
    pub job: String,
    pub job_record: String,
    pub tasks: usize,
    pub input_files: u64,
    pub bytes: u64,
    pub ignored: Vec<String>,
    pub component: String,
    pub task_queue: String,
    pub dead_letter_queue: Option<String>,
}

/// A new job id: time-ordered, unique enough across machines.
pub fn new_job_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("job-{now}-{:08x}", rand::random::<u32>())
}

pub fn submit(aws: &Aws, request: &SubmitRequest) -> anyhow::Result<Submitted> {
    aws.block_on(submit_async(request, aws))
}

async fn submit_async(request: &SubmitRequest, aws: &Aws) -> anyhow::Result<Submitted> {
    let s3 = &aws.s3;
    let job = request.job_id.clone().unwrap_or_else(new_job_id);
    if job.is_empty()
        || !job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("job id `{job}` must be letters, digits, `-` or `_`");
    }
    let paths = JobPaths::new(request.job_root.clone(), &job);
    if objects::exists(s3, paths.bucket(), &paths.job_record()).await? {
        bail!(
            "job {job} already exists at s3://{}/{}",
            paths.bucket(),
            paths.job_record()
        );
    }

    let task_queue = Queue::resolve(&aws.sqs, &request.task_queue).await?;
    let done_queue = match &request.done_queue {
        Some(q) => Some(Queue::resolve(&aws.sqs, q).await?),
        None => None,
    };
    let dead_letter = task_queue.dead_letter_queue().await?;
    if dead_letter.is_none() {
        tracing::warn!(
            "the task queue {} has no redrive policy: a task that always fails will be retried forever",
            task_queue.url
        );
    }

    let listing = objects::list_inputs(s3, &request.input, &request.filter)
        .await
        .with_context(|| format!("listing {}", request.input))?;
    for (path, reason) in &listing.ignored {
        tracing::warn!("ignored {}: {reason}", path.display());
    }
    if listing.files.is_empty() {
        bail!(
            "no input objects under {} match the filter ({} keys outside the layout were ignored)",
            request.input,
            listing.ignored.len()
        );
    }
    let input_files = listing.files.len() as u64;
    let bytes: u64 = listing.files.iter().map(|f| f.size).sum();
    let specs = plan_tasks(listing.files, &request.plan);

    // The component, under its content hash (uploaded once whatever the job).
    let sha256 = component_hash(&request.analysis);
    let code_key = JobPaths::code(&request.job_root, &sha256);
    if !objects::exists(s3, paths.bucket(), &code_key).await? {
        objects::put(
            s3,
            paths.bucket(),
            &code_key,
            request.analysis.clone(),
            Some("application/wasm"),
        )
        .await?;
    }
    objects::put(
        s3,
        paths.bucket(),
        &paths.params(),
        request.params.clone().into_bytes(),
        Some("application/json"),
    )
    .await?;

    let mut messages = Vec::with_capacity(specs.len());
    for spec in &specs {
        let task = JobTask::from_spec(spec);
        let mut message = TaskMessage {
            version: PROTOCOL_VERSION,
            job: job.clone(),
            task: spec.id.clone(),
            component: sha256.clone(),
            job_root: request.job_root.to_string(),
            input: request.input.to_string(),
            files: task.files,
            spec_key: None,
            params_key: paths.params(),
            limits: request.limits.clone(),
            settings: request.settings.clone(),
        };
        let mut body = serde_json::to_string(&message)?;
        if body.len() > MAX_MESSAGE_BYTES - 1024 {
            // Too many files for one message: the list goes to S3, the message points at it.
            let key = paths.task_spec(&spec.id);
            objects::put(
                s3,
                paths.bucket(),
                &key,
                serde_json::to_vec(&message.files)?,
                Some("application/json"),
            )
            .await?;
            message.files.clear();
            message.spec_key = Some(key);
            body = serde_json::to_string(&message)?;
        }
        messages.push(body);
    }

    let record = JobRecord {
        version: PROTOCOL_VERSION,
        job: job.clone(),
        created_at: super::now_secs(),
        analysis: AnalysisRef {
            name: request.analysis_name.clone(),
            sha256: sha256.clone(),
            code_key,
            size: request.analysis.len() as u64,
        },
        input: request.input.to_string(),
        filter: request.filter_json.clone(),
        params_key: paths.params(),
        limits: request.limits.clone(),
        settings: request.settings.clone(),
        task_queue: task_queue.url.clone(),
        done_queue: done_queue.as_ref().map(|q| q.url.clone()),
        dead_letter_queue: dead_letter.as_ref().map(|q| q.url.clone()),
        input_files,
        total_bytes: bytes,
        tasks: specs.iter().map(JobTask::from_spec).collect(),
    };
    // The record first: a worker or aggregator that sees a task can always find its job.
    objects::put(
        s3,
        paths.bucket(),
        &paths.job_record(),
        serde_json::to_vec_pretty(&record)?,
        Some("application/json"),
    )
    .await?;
    task_queue.send_all(&messages).await?;

    Ok(Submitted {
        job,
        job_record: format!("s3://{}/{}", paths.bucket(), paths.job_record()),
        tasks: specs.len(),
        input_files,
        bytes,
        ignored: listing
            .ignored
            .iter()
            .map(|(p, r)| format!("{}: {r}", p.display()))
            .collect(),
        component: sha256,
        task_queue: task_queue.url,
        dead_letter_queue: dead_letter.map(|q| q.url),
    })
}

/// Reads a job record.
pub async fn load_job(aws: &Aws, root: &S3Url, job: &str) -> anyhow::Result<JobRecord> {
    let paths = JobPaths::new(root.clone(), job);
    let bytes = objects::get_optional(&aws.s3, paths.bucket(), &paths.job_record())
        .await?
        .with_context(|| {
            format!(
                "no job {job}: s3://{}/{} does not exist (check --job-bucket)",
                paths.bucket(),
                paths.job_record()
            )
        })?;
    let mut record: JobRecord = serde_json::from_slice(&bytes)
        .with_context(|| format!("the job record of {job} is not valid"))?;
    record.tasks.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(record)
}
