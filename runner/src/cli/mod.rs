//! The `spotmill` command line: flags and dispatch; the work is in the library.

pub mod fleet;
pub mod gen;
pub mod new;
pub mod progress;
pub mod run;
pub mod serve;
pub mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spotmill",
    version,
    about = "Run untrusted WebAssembly map/reduce analyses over compressed telemetry logs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace); RUST_LOG works too.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a realistic published-log tree (deterministic for a seed).
    Gen(gen::GenArgs),
    /// Run an analysis over a local folder of logs, on every core.
    Run(Box<run::RunArgs>),
    /// Remove the files of an output folder that only older runs published (retention).
    Prune(run::PruneArgs),
    /// Check a component before submitting it: contract, imports, limits, merge laws, cost.
    Validate(Box<validate::ValidateArgs>),
    /// Serve the telemetry dashboard page over a dashboard analysis's output folder.
    Serve(serve::ServeArgs),
    /// Start a new analysis (Rust, Python, JavaScript or C) from the os-distribution example.
    New(new::NewArgs),
    /// Plan a job over an S3 prefix and send its tasks to the task queue; prints the job id.
    Submit(Box<fleet::SubmitArgs>),
    /// Run tasks from the task queue until stopped (SIGTERM, spot interruption notice).
    Worker(Box<fleet::WorkerArgs>),
    /// Merge a job's partials as they are reported, then publish its files.
    Aggregate(Box<fleet::AggregateArgs>),
    /// Where a fleet job stands: tasks queued, running, done, failed; throughput, ETA.
    Status(Box<fleet::StatusArgs>),
    /// Create a task queue with its dead-letter queue and a done queue (and buckets).
    CreateQueues(Box<fleet::CreateQueuesArgs>),
}

/// Flags shared by commands that load a component.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Folder of compiled artifacts (default: $SPOTMILL_CACHE_DIR or ~/.cache/spotmill).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Compile the component every time instead of using the cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    pub fn open(&self) -> anyhow::Result<Option<spotmill::sandbox::ArtifactCache>> {
        if self.no_cache {
            return Ok(None);
        }
        let dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(spotmill::sandbox::ArtifactCache::default_dir);
        Ok(Some(spotmill::sandbox::ArtifactCache::open(
            &dir.join("artifacts"),
        )?))
    }
}
