//! `spotmill gen`.

use std::path::PathBuf;

use clap::ValueEnum;
use spotmill::gen::{generate, ContainerChoice, GenConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Container {
    Lzma,
    Xz,
    Mixed,
}

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Folder to create (must be empty or missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of submissions.
    #[arg(long, default_value_t = 20_000)]
    pub submissions: u64,
    /// Seed: the same seed and flags give a byte-identical tree.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Roll files over at this many uncompressed MB.
    #[arg(long, default_value_t = 32)]
    pub max_file_mb: u64,
    #[arg(long, value_enum, default_value = "lzma")]
    pub container: Container,
    /// Print the totals as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: &GenArgs) -> anyhow::Result<i32> {
    let config = GenConfig {
        seed: args.seed,
        submissions: args.submissions,
        max_file_bytes: args.max_file_mb.max(1) << 20,
        container: match args.container {
            Container::Lzma => ContainerChoice::Lzma,
            Container::Xz => ContainerChoice::Xz,
            Container::Mixed => ContainerChoice::Mixed,
        },
        ..GenConfig::default()
    };
    let bar = super::progress::count_bar(args.submissions, "submissions", args.json);
    let summary = generate(&args.out, &config, &|p| bar.set_position(p.submissions))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "generated {} submissions in {} files under {}: {:.1} MB uncompressed, {:.1} MB compressed",
            summary.submissions,
            summary.files,
            args.out.display(),
            summary.uncompressed_bytes as f64 / 1e6,
            summary.compressed_bytes as f64 / 1e6
        );
    }
    Ok(0)
}
