//! The config file: limits and run settings in TOML, overridden by command-line flags.
//!
//! ```toml
//! [limits]
//! fuel_per_call = 20_000_000_000
//! memory_bytes = 536_870_912
//!
//! [run]
//! jobs = 4
//! batch_records = 64
//! ```

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::sandbox::Limits;

/// Settings of `spotmill run` that are not sandbox limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Worker threads; 0 means one per core.
    pub jobs: usize,
    pub batch_records: usize,
    pub batch_bytes: u64,
    pub checkpoint_bytes: u64,
    pub max_line_bytes: u64,
    pub max_task_bytes: u64,
    pub max_task_files: usize,
}

impl Default for RunSettings {
    fn default() -> Self {
        let task = crate::task::TaskOptions::default();
        let plan = crate::job::PlanOptions::default();
        RunSettings {
            jobs: 0,
            batch_records: task.batch_records,
            batch_bytes: task.batch_bytes as u64,
            checkpoint_bytes: task.checkpoint_bytes as u64,
            max_line_bytes: task.max_line_bytes as u64,
            max_task_bytes: plan.max_task_bytes,
            max_task_files: plan.max_task_files,
        }
    }
}

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub limits: Limits,
    pub run: RunSettings,
}

impl Config {
    /// Reads a config file; unknown keys are errors (a typo must not silently fall back
    /// to a default limit).
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("the config file {} is not valid", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_keep_the_defaults_and_typos_are_errors() {
        let config: Config =
            toml::from_str("[limits]\nfuel_per_call = 5\n[run]\njobs = 3\n").unwrap();
        assert_eq!(config.limits.fuel_per_call, 5);
        assert_eq!(config.limits.memory_bytes, Limits::default().memory_bytes);
        assert_eq!(config.run.jobs, 3);
        let err = toml::from_str::<Config>("[limits]\nfuel_per_cal = 5\n").unwrap_err();
        assert!(err.to_string().contains("fuel_per_cal"), "{err}");
    }
}
