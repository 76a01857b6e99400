//! `spotmill validate`: checks a component before it is submitted.

use std::path::PathBuf;

use anyhow::Context;
use spotmill::sandbox::Sandbox;
use spotmill::validate::{load_samples, validate, ValidateOptions};

use super::run::{load_config, read_params, LimitArgs};
use super::CacheArgs;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The component to check.
    pub component: PathBuf,
    /// Sample submissions: a folder in the published layout (default: bundled samples).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Records to dry-run at most.
    #[arg(long, default_value_t = 200)]
    pub records: usize,
    /// The job's parameters: a JSON file given to setup.
    #[arg(long, conflicts_with = "params_json")]
    pub params: Option<PathBuf>,
    /// The job's parameters as JSON text.
    #[arg(long)]
    pub params_json: Option<String>,
    /// Price of a CPU-hour, for the projected cost per GB.
    #[arg(long, default_value_t = 0.02)]
    pub cpu_hour_price: f64,
    /// A TOML file with the production [limits]; flags override it.
    #[arg(long, env = "SPOTMILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn execute(args: &ValidateArgs) -> anyhow::Result<i32> {
    let config = load_config(args.config.as_deref(), &args.limits, None)?;
    let options = ValidateOptions {
        params: read_params(args.params.as_deref(), args.params_json.as_deref())?,
        cpu_hour_price: args.cpu_hour_price,
        ..ValidateOptions::default()
    };
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read the component {}", args.component.display()))?;
    let samples = load_samples(args.input.as_deref(), args.records.max(1))?;
    let sandbox = Sandbox::new(config.limits, args.cache.open()?)?;
    let name = args
        .component
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report = validate(&sandbox, &name, &bytes, &samples, &options);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.passed { 0 } else { 1 })
}
