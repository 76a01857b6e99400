//! `spotmill new`: writes the starting point of an analysis (see [`spotmill::new`]).

use std::path::{Path, PathBuf};

use anyhow::bail;
use spotmill::new::{create, next_steps, Language, Sources};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Javascript,
    C,
}

impl From<Lang> for Language {
    fn from(lang: Lang) -> Language {
        match lang {
            Lang::Rust => Language::Rust,
            Lang::Python => Language::Python,
            Lang::Javascript => Language::JavaScript,
            Lang::C => Language::C,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The analysis name: lowercase letters, digits, `-` and `_` (the folder, the file names,
    /// `<name>.wasm` and the published `<name>.json`).
    pub name: String,
    /// The language of the analysis.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The folder to create `<name>/` in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Rust: the `spotmill-guest` crate to depend on (default: this repository's guest-sdk).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// Python, JavaScript, C: the WIT folder to build against (default: this repository's wit).
    #[arg(long)]
    pub wit: Option<PathBuf>,
}

pub fn execute(args: &NewArgs) -> anyhow::Result<i32> {
    let language = Language::from(args.lang);
    if args.sdk.is_some() && language != Language::Rust {
        bail!("--sdk applies to --lang rust only ({language} projects copy the SDK files)");
    }
    if args.wit.is_some() && language == Language::Rust {
        bail!("--wit does not apply to --lang rust (the Rust SDK embeds its WIT; see --sdk)");
    }
    let sources = Sources::new(args.sdk.as_deref(), args.wit.as_deref())?;
    let created = create(language, &args.name, &args.dir, &sources)?;
    print!("{}", next_steps(&created, &spotmill_command()));
    Ok(0)
}

/// `spotmill` when that is this binary on PATH, else this binary's path.
fn spotmill_command() -> String {
    let Ok(me) = std::env::current_exe() else {
        return "spotmill".to_owned();
    };
    let me = me.canonicalize().unwrap_or(me);
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join("spotmill");
            Path::new(&candidate)
                .canonicalize()
                .is_ok_and(|found| found == me)
        })
    });
    if on_path {
        "spotmill".to_owned()
    } else {
        me.display().to_string()
    }
}
