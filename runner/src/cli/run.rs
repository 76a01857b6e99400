//! `spotmill run`: a folder of logs in, the analysis's published files out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use spotmill::config::Config;
use spotmill::job::history::OutputHistory;
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
    /// Start the output over: ignore the results of earlier runs kept in it (by default a
    /// run merges into them, reading only inputs they did not count).
    #[arg(long)]
    pub fresh: bool,
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

/// The config file (if any) with the command line's limits and batching on top: flags
/// override the file, which overrides the defaults.
pub fn load_config(
    path: Option<&Path>,
    limits: &LimitArgs,
    batching: Option<&BatchArgs>,
) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    limits.apply(&mut config.limits);
    if let Some(batching) = batching {
        batching.apply(&mut config.run);
    }
    Ok(config)
}

impl BatchArgs {
    pub fn apply(&self, settings: &mut spotmill::config::RunSettings) {
        if let Some(v) = self.batch_records {
            settings.batch_records = v;
        }
        if let Some(v) = self.checkpoint_mb {
            settings.checkpoint_bytes = v << 20;
        }
        if let Some(v) = self.max_line_mb {
            settings.max_line_bytes = v << 20;
        }
        if let Some(v) = self.max_task_mb {
            settings.max_task_bytes = v << 20;
        }
        if let Some(v) = self.max_task_files {
            settings.max_task_files = v;
        }
    }
}

pub fn execute(args: &RunArgs) -> anyhow::Result<i32> {
    let mut config = load_config(args.config.as_deref(), &args.limits, Some(&args.batching))?;
    let settings = &mut config.run;
    if let Some(v) = args.jobs {
        settings.jobs = v;
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

    // An output folder that holds earlier results of the same job is merged into: only
    // the inputs not counted yet are read (never counted twice).
    let params_sha256 = spotmill::sandbox::cache::component_hash(params.as_bytes());
    let previous = if args.fresh {
        None
    } else {
        OutputHistory::load(&args.output)?
    };
    let mut listing = listing;
    let mut already_counted = 0;
    if let Some((history, _)) = &previous {
        history.check_same_job(&analysis.hash, &params_sha256, &args.output)?;
        let before = listing.files.len();
        listing.files.retain(|f| !history.counted.contains(&f.key));
        already_counted = (before - listing.files.len()) as u64;
        if listing.files.is_empty() && args.json {
            let nothing = serde_json::json!({
                "status": "ok",
                "new_input_files": 0,
                "inputs_counted_before": already_counted,
                "output_dir": args.output.display().to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&nothing)?);
            return Ok(0);
        }
        if listing.files.is_empty() {
            println!(
                "no new input files: all {already_counted} matching files were counted by earlier runs into {}; \
                 its output is unchanged (use --fresh to recount them)",
                args.output.display()
            );
            return Ok(0);
        }
    }
    let (mut history, previous_partial) = match previous {
        Some((history, partial)) => (history, Some(partial)),
        None => (OutputHistory::new(&analysis.hash, &params_sha256), None),
    };
    let run_keys: Vec<String> = listing.files.iter().map(|f| f.key.clone()).collect();
    let input_files = listing.files.len() as u64;
    let total_bytes: u64 = listing.files.iter().map(|f| f.size).sum();
    let plan = PlanOptions {
        max_task_bytes: settings.max_task_bytes,
        max_task_files: settings.max_task_files,
        target_tasks: jobs * 4,
    };
    let tasks = plan_tasks(listing.files, &plan);
    let task_count = tasks.len() as u64;

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
        previous_partial,
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
                let partial = job.partial.as_deref().unwrap_or_default();
                history.record_run(&args.output, &run_keys, written.clone(), partial)?;
                summary.output_dir = Some(args.output.display().to_string());
                summary.output_files = written;
                summary.inputs_counted_before = already_counted;
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

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// An output folder written by `spotmill run`.
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep the files of this many most recent runs.
    #[arg(long, default_value_t = 1)]
    pub keep_runs: usize,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `spotmill prune`: the retention step for merged outputs.
pub fn prune(args: &PruneArgs) -> anyhow::Result<i32> {
    let Some((mut history, _)) = OutputHistory::load(&args.dir)? else {
        bail!(
            "{} has no run history (it was not written by `spotmill run`)",
            args.dir.display()
        );
    };
    let stale = if args.dry_run {
        history.stale_files(args.keep_runs)
    } else {
        history.prune(&args.dir, args.keep_runs)?
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "{verb} {} files published only by runs older than the last {}",
        stale.len(),
        args.keep_runs.max(1)
    );
    for file in stale.iter().take(20) {
        println!("  {file}");
    }
    if stale.len() > 20 {
        println!("  ... and {} more", stale.len() - 20);
    }
    Ok(0)
}
