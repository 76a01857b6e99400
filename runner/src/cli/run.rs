//! `spotmill run`: a folder of logs in, the analysis's published files out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use spotmill::config::Config;
use spotmill::job::{output, plan_tasks, run_local, PlanOptions, RunOptions, Summary};
use spotmill::logs::Filter;
use spotmill::sandbox::{Limits, Sandbox};
use spotmill::store::list_inputs;
use spotmill::task::{Counters, TaskOptions};

use super::progress::RunProgress;
use super::CacheArgs;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The analysis component (.wasm) exporting the mapper and the reducer.
    #[arg(long)]
    pub analysis: PathBuf,
    /// Folder of logs in the published layout (reason/app/channel/version/build.date...).
    #[arg(long)]
    pub input: PathBuf,
    /// Folder to publish the result files into (created if missing).
    #[arg(long)]
    pub output: PathBuf,
    /// Filter in the telemetry schema's shape (positional "*", lists, {min,max}).
    #[arg(long)]
    pub filter: Option<PathBuf>,
    /// The job's parameters: a JSON file given to the analysis's setup.
    #[arg(long, conflicts_with = "params_json")]
    pub params: Option<PathBuf>,
    /// The job's parameters as JSON text.
    #[arg(long)]
    pub params_json: Option<String>,
    /// A TOML file with [limits] and [run] settings; flags override it.
    #[arg(long, env = "SPOTMILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub batching: BatchArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Sandbox limits; each overrides the config file, which overrides the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Fuel for one guest call (one batch, flush, merge or publish).
    #[arg(long)]
    pub fuel_per_call: Option<u64>,
    /// Fuel for a whole task.
    #[arg(long)]
    pub fuel_per_task: Option<u64>,
    /// Fuel for one reducer call (merge, publish).
    #[arg(long)]
    pub fuel_per_reduce_call: Option<u64>,
    /// Wall-clock deadline of one reducer call, in ms.
    #[arg(long)]
    pub reduce_deadline_ms: Option<u64>,
    /// Memory cap of one instance, in MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Wall-clock deadline of one guest call, in ms.
    #[arg(long)]
    pub call_deadline_ms: Option<u64>,
    /// Bytes one call may return, in MiB.
    #[arg(long)]
    pub max_output_mb: Option<u64>,
    /// Guest stdout+stderr kept per instance, in KiB (the rest is dropped).
    #[arg(long)]
    pub max_log_kb: Option<u64>,
    /// Quarantined records a task may have before it fails.
    #[arg(long)]
    pub max_bad_records: Option<u64>,
}

impl LimitArgs {
    pub fn apply(&self, limits: &mut Limits) {
        let set = |target: &mut u64, value: Option<u64>, scale: u64| {
            if let Some(v) = value {
                *target = v.saturating_mul(scale);
            }
        };
        set(&mut limits.fuel_per_call, self.fuel_per_call, 1);
        set(&mut limits.fuel_per_task, self.fuel_per_task, 1);
        set(
            &mut limits.fuel_per_reduce_call,
            self.fuel_per_reduce_call,
            1,
        );
        set(&mut limits.reduce_deadline_ms, self.reduce_deadline_ms, 1);
        set(&mut limits.memory_bytes, self.memory_mb, 1 << 20);
        set(&mut limits.call_deadline_ms, self.call_deadline_ms, 1);
        set(&mut limits.max_output_bytes, self.max_output_mb, 1 << 20);
        set(&mut limits.max_log_bytes, self.max_log_kb, 1 << 10);
        set(
            &mut limits.max_bad_records_per_task,
            self.max_bad_records,
            1,
        );
    }
}

/// How input is cut into tasks and calls.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BatchArgs {
    /// Records per map call.
    #[arg(long)]
    pub batch_records: Option<usize>,
    /// Input MiB between checkpoints (what a failure replays at most).
    #[arg(long)]
    pub checkpoint_mb: Option<u64>,
    /// Lines longer than this many MiB are skipped and counted.
    #[arg(long)]
    pub max_line_mb: Option<u64>,
    /// Compressed MiB per task at most.
    #[arg(long)]
    pub max_task_mb: Option<u64>,
    /// Files per task at most.
    #[arg(long)]
    pub max_task_files: Option<usize>,
}

/// Reads the job's parameters: a file, inline JSON, or nothing (empty string).
pub fn read_params(file: Option<&Path>, inline: Option<&str>) -> anyhow::Result<String> {
    let text = match (file, inline) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the params file {}", path.display()))?,
        (None, Some(text)) => text.to_string(),
        (None, None) => return Ok(String::new()),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .context("the job's params are not valid JSON")?;
    Ok(text)
}

pub fn execute(args: &RunArgs) -> anyhow::Result<i32> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    args.limits.apply(&mut config.limits);
    let settings = &mut config.run;
    let b = &args.batching;
    if let Some(v) = args.jobs {
        settings.jobs = v;
    }
    if let Some(v) = b.batch_records {
        settings.batch_records = v;
    }
    if let Some(v) = b.checkpoint_mb {
        settings.checkpoint_bytes = v << 20;
    }
    if let Some(v) = b.max_line_mb {
        settings.max_line_bytes = v << 20;
    }
    if let Some(v) = b.max_task_mb {
        settings.max_task_bytes = v << 20;
    }
    if let Some(v) = b.max_task_files {
        settings.max_task_files = v;
    }
    let jobs = if settings.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        settings.jobs
    };
    let params = read_params(args.params.as_deref(), args.params_json.as_deref())?;
    let filter = match &args.filter {
        Some(path) => Filter::from_file(path)?,
        None => Filter::all(),
    };

    let listing = list_inputs(&args.input, &filter)?;
    for (path, reason) in &listing.ignored {
        tracing::warn!("ignored {}: {reason}", path.display());
    }
    if listing.files.is_empty() {
        bail!(
            "no input files under {} match the filter{}; check --input and --filter",
            args.input.display(),
            if listing.ignored.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} paths outside the layout were ignored)",
                    listing.ignored.len()
                )
            }
        );
    }
    let input_files = listing.files.len() as u64;
    let total_bytes: u64 = listing.files.iter().map(|f| f.size).sum();
    let plan = PlanOptions {
        max_task_bytes: settings.max_task_bytes,
        max_task_files: settings.max_task_files,
        target_tasks: jobs * 4,
    };
    let tasks = plan_tasks(listing.files, &plan);
    let task_count = tasks.len() as u64;

    let bytes = std::fs::read(&args.analysis)
        .with_context(|| format!("cannot read the analysis {}", args.analysis.display()))?;
    let sandbox = Sandbox::new(config.limits.clone(), args.cache.open()?)?;
    let name = args
        .analysis
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let analysis = sandbox.load(&name, &bytes)?;
    if analysis.component_exports_mapper_and_reducer().is_err() {
        bail!("{name}: `spotmill run` needs a component that exports both the mapper and the reducer (world `analysis`)");
    }

    let options = RunOptions {
        jobs,
        task: TaskOptions {
            batch_records: settings.batch_records.max(1),
            batch_bytes: settings.batch_bytes as usize,
            checkpoint_bytes: settings.checkpoint_bytes as usize,
            max_line_bytes: settings.max_line_bytes as usize,
            params,
            ..TaskOptions::default()
        },
    };
    let counters = Arc::new(Counters::default());
    let progress = RunProgress::start(
        total_bytes,
        task_count,
        Arc::clone(&counters),
        args.quiet || args.json,
    );
    let job = run_local(&analysis, tasks, &options, &counters, &|result| {
        if let Err(failure) = result {
            progress.println(&format!("{failure}"));
        }
    });
    progress.finish();

    let mut summary = Summary::new(
        &analysis,
        input_files,
        listing.ignored.len() as u64,
        task_count,
        &job,
    );
    if job.succeeded() {
        match output::write_files(&args.output, &job.files) {
            Ok(written) => {
                summary.output_dir = Some(args.output.display().to_string());
                summary.output_files = written;
            }
            Err(e) => {
                summary.publish_error = Some(format!("{e:#}"));
                summary.status = "failed".into();
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(summary.exit_code())
}
