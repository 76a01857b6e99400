//! `spotmill submit | worker | aggregate | status | create-queues`: the fleet commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use spotmill::fleet::aggregate::{aggregate, AggregateOptions};
use spotmill::fleet::protocol::TaskSettings;
use spotmill::fleet::submit::{submit, SubmitRequest};
use spotmill::fleet::worker::{run_worker, WorkerExit, WorkerOptions};
use spotmill::fleet::{interrupt, queue, Aws, AwsOptions, S3Url};
use spotmill::job::PlanOptions;
use spotmill::logs::Filter;
use spotmill::sandbox::Sandbox;
use spotmill::task::TaskOptions;

use super::run::{load_config, read_params, BatchArgs, LimitArgs};
use super::CacheArgs;

/// Where AWS is; the rest (credentials, profile) comes from the standard chain.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// Endpoint of an S3/SQS-compatible service (default: $AWS_ENDPOINT_URL, else AWS).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region (default: $AWS_REGION / the config files).
    #[arg(long)]
    pub region: Option<String>,
}

impl AwsArgs {
    fn connect(&self) -> anyhow::Result<Arc<Aws>> {
        Aws::connect(&AwsOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            max_attempts: 0,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The analysis component (.wasm).
    #[arg(long)]
    pub analysis: PathBuf,
    /// The logs: s3://bucket/prefix in the published layout.
    #[arg(long)]
    pub input: String,
    /// Filter in the telemetry schema's shape.
    #[arg(long)]
    pub filter: Option<PathBuf>,
    /// The job's parameters: a JSON file.
    #[arg(long, conflicts_with = "params_json")]
    pub params: Option<PathBuf>,
    #[arg(long)]
    pub params_json: Option<String>,
    /// The analysis bucket: s3://bucket/prefix for code, job records, partials, results.
    #[arg(long)]
    pub job_bucket: String,
    /// Task queue, by URL or name.
    #[arg(long)]
    pub task_queue: String,
    /// Done queue (URL or name), recorded so `aggregate` need not be told.
    #[arg(long)]
    pub done_queue: Option<String>,
    /// A job id of your choosing (default: generated).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Tasks to aim for when the input is small (tasks are also capped by --max-task-mb).
    #[arg(long, default_value_t = 64)]
    pub target_tasks: usize,
    #[arg(long, env = "SPOTMILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the submission as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub batching: BatchArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn submit_command(args: &SubmitArgs) -> anyhow::Result<i32> {
    let config = load_config(args.config.as_deref(), &args.limits, Some(&args.batching))?;
    let run = &config.run;
    let params = read_params(args.params.as_deref(), args.params_json.as_deref())?;
    let (filter, filter_json) = match &args.filter {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the filter {}", path.display()))?;
            (
                Filter::from_file(path)?,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
            )
        }
        None => (Filter::all(), serde_json::json!({"dimensions": []})),
    };
    let analysis = std::fs::read(&args.analysis)
        .with_context(|| format!("cannot read the analysis {}", args.analysis.display()))?;
    let name = args
        .analysis
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Refuse a component the workers could not run, before anything is sent.
    let sandbox = Sandbox::new(config.limits.clone(), args.cache.open()?)?;
    let loaded = sandbox.load(&name, &analysis)?;
    if loaded.component_exports_mapper_and_reducer().is_err() {
        bail!("{name}: a fleet job needs a component that exports both the mapper and the reducer");
    }
    let task = TaskOptions {
        batch_records: run.batch_records.max(1),
        batch_bytes: run.batch_bytes as usize,
        checkpoint_bytes: run.checkpoint_bytes as usize,
        max_line_bytes: run.max_line_bytes as usize,
        ..TaskOptions::default()
    };
    let request = SubmitRequest {
        analysis_name: name,
        analysis,
        input: S3Url::parse(&args.input)?,
        filter,
        filter_json,
        params,
        job_root: S3Url::parse(&args.job_bucket)?,
        task_queue: args.task_queue.clone(),
        done_queue: args.done_queue.clone(),
        limits: config.limits.clone(),
        settings: TaskSettings::from_options(&task),
        plan: PlanOptions {
            max_task_bytes: run.max_task_bytes,
            max_task_files: run.max_task_files,
            target_tasks: args.target_tasks.max(1),
        },
        job_id: args.job_id.clone(),
    };
    let aws = args.aws.connect()?;
    let submitted = submit(&aws, &request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&submitted)?);
    } else {
        eprintln!(
            "submitted {} tasks over {} files ({:.1} MB) to {}; job record {}",
            submitted.tasks,
            submitted.input_files,
            submitted.bytes as f64 / 1e6,
            submitted.task_queue,
            submitted.job_record
        );
        if !submitted.ignored.is_empty() {
            eprintln!(
                "{} keys outside the layout were ignored (see --log warn)",
                submitted.ignored.len()
            );
        }
        println!("{}", submitted.job);
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Task queue, by URL or name.
    #[arg(long)]
    pub task_queue: String,
    /// Done queue, by URL or name.
    #[arg(long)]
    pub done_queue: String,
    /// Tasks at once (default: one per core).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Long-poll wait of each receive, seconds (0-20).
    #[arg(long, default_value_t = 20)]
    pub wait_seconds: i32,
    /// The lease each extension grants, seconds.
    #[arg(long, default_value_t = 120)]
    pub visibility_timeout: i32,
    /// Extend leases every this many milliseconds (default: a third of the lease).
    #[arg(long)]
    pub lease_extend_ms: Option<u64>,
    /// Seconds a failed task waits before its next attempt.
    #[arg(long, default_value_t = 10)]
    pub failure_backoff: i32,
    /// Spot interruption notice URL, polled for a 200; `off` disables it. Default: the EC2
    /// metadata service, unless AWS_EC2_METADATA_DISABLED=true.
    #[arg(long)]
    pub interruption_url: Option<String>,
    /// How often to poll the notice URL, milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub interruption_poll_ms: u64,
    /// Name in events and reports (default: hostname-pid).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Exit after this many tasks.
    #[arg(long)]
    pub max_tasks: Option<u64>,
    /// Exit after this many seconds without a task.
    #[arg(long)]
    pub idle_exit_secs: Option<u64>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

pub fn worker_command(args: &WorkerArgs) -> anyhow::Result<i32> {
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let visibility = args.visibility_timeout.max(1);
    let extend = args
        .lease_extend_ms
        .map(Duration::from_millis)
        .unwrap_or_else(|| Duration::from_millis((visibility as u64 * 1000 / 3).max(200)));
    let metadata_disabled =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let interruption_url = match args.interruption_url.as_deref() {
        Some("off") | Some("") => None,
        Some(url) => Some(url.to_string()),
        None if metadata_disabled => None,
        None => Some(interrupt::SPOT_NOTICE_URL.to_string()),
    };
    let options = WorkerOptions {
        task_queue: args.task_queue.clone(),
        done_queue: args.done_queue.clone(),
        jobs,
        wait_seconds: args.wait_seconds,
        visibility_seconds: visibility,
        extend_every: extend,
        failure_backoff_seconds: args.failure_backoff.max(0),
        interruption_url,
        interruption_poll: Duration::from_millis(args.interruption_poll_ms.max(50)),
        cache: args.cache.open()?,
        worker_id: args
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id())),
        max_tasks: args.max_tasks,
        idle_exit: args.idle_exit_secs.map(Duration::from_secs),
    };
    let aws = args.aws.connect()?;
    let exit = run_worker(aws, options)?;
    let code = match exit {
        WorkerExit::Stopped { .. } | WorkerExit::Finished { .. } => 0,
    };
    // Abandoned tasks (released above) may still be running on blocking threads: leave
    // without waiting for them.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// The analysis bucket given to submit (s3://bucket/prefix).
    #[arg(long)]
    pub job_bucket: String,
    /// The job id printed by submit.
    #[arg(long)]
    pub job: String,
    /// Done queue (default: the one given to submit).
    #[arg(long)]
    pub done_queue: Option<String>,
    /// Dead-letter queue of the task queue (default: from its redrive policy).
    #[arg(long)]
    pub dead_letter_queue: Option<String>,
    /// Where to publish: s3://bucket/prefix (default: jobs/<job>/published/ in the job bucket).
    #[arg(long)]
    pub web: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub wait_seconds: i32,
    /// Seconds received done messages stay invisible while a round is merged.
    #[arg(long, default_value_t = 300)]
    pub lease_seconds: i32,
    /// Done messages merged per round at most.
    #[arg(long, default_value_t = 1000)]
    pub round_size: usize,
    /// Partials per reducer merge call.
    #[arg(long, default_value_t = 16)]
    pub fan_in: usize,
    /// Publish even if some tasks failed (the pointer lists them).
    #[arg(long)]
    pub allow_failed: bool,
    /// Give up after this many seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn aggregate_command(args: &AggregateArgs) -> anyhow::Result<i32> {
    let root = S3Url::parse(&args.job_bucket)?;
    let mut options = AggregateOptions::new(root, &args.job);
    options.done_queue = args.done_queue.clone();
    options.dead_letter_queue = args.dead_letter_queue.clone();
    options.web = args.web.as_deref().map(S3Url::parse).transpose()?;
    options.wait_seconds = args.wait_seconds;
    options.lease_seconds = args.lease_seconds.max(1);
    options.round_size = args.round_size.max(1);
    options.fan_in = args.fan_in.max(2);
    options.allow_failed = args.allow_failed;
    options.timeout = args.timeout_secs.map(Duration::from_secs);
    options.cache = args.cache.open()?;
    options.quiet = args.quiet || args.json;
    let aws = args.aws.connect()?;
    let outcome = aggregate(&aws, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        match &outcome.published {
            Some(p) => println!(
                "published {} files at {} ({} of {} tasks merged{})",
                p.files.len(),
                p.location,
                outcome.merged,
                outcome.tasks,
                if p.complete { "" } else { "; INCOMPLETE" }
            ),
            None => println!(
                "not published: {} of {} tasks failed (see `spotmill status`; --allow-failed publishes the rest)",
                outcome.failed.len(),
                outcome.tasks
            ),
        }
        for (task, reason) in &outcome.failed {
            println!("  failed {task}: {reason}");
        }
    }
    Ok(if outcome.failed.is_empty() { 0 } else { 1 })
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job id.
    pub job: String,
    /// The analysis bucket given to submit.
    #[arg(long)]
    pub job_bucket: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn status_command(args: &StatusArgs) -> anyhow::Result<i32> {
    let root = S3Url::parse(&args.job_bucket)?;
    let aws = args.aws.connect()?;
    let status = spotmill::fleet::status::status(&aws, &root, &args.job)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{status}");
    }
    Ok(if status.failed.is_empty() { 0 } else { 1 })
}

#[derive(Debug, clap::Args)]
pub struct CreateQueuesArgs {
    /// Task queue name (its dead-letter queue is `<name>-dlq`).
    #[arg(long)]
    pub task_queue: String,
    /// Done queue name.
    #[arg(long)]
    pub done_queue: String,
    /// Visibility timeout of the task queue, seconds.
    #[arg(long, default_value_t = 120)]
    pub visibility_timeout: u32,
    /// Deliveries before a task moves to the dead-letter queue.
    #[arg(long, default_value_t = 3)]
    pub max_receives: u32,
    /// Buckets to create too (local emulators; production buckets come from scripts/aws/).
    #[arg(long)]
    pub bucket: Vec<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn create_queues_command(args: &CreateQueuesArgs) -> anyhow::Result<i32> {
    let aws = args.aws.connect()?;
    aws.block_on(async {
        let (tasks, dlq) = queue::create_with_dead_letter(
            &aws.sqs,
            &args.task_queue,
            args.visibility_timeout,
            args.max_receives,
        )
        .await?;
        let done = queue::create(&aws.sqs, &args.done_queue, 300, None).await?;
        for bucket in &args.bucket {
            spotmill::fleet::objects::ensure_bucket(&aws.s3, bucket).await?;
        }
        println!("task queue        {}", tasks.url);
        println!("dead-letter queue {}", dlq.url);
        println!("done queue        {}", done.url);
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(0)
}
