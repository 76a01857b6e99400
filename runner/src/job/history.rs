//! What an output folder remembers between runs, so that a later run merges into it.
//!
//! `spotmill run` keeps, under `<output>/.spotmill/`, the merged partial of every run so
//! far, the keys of the input files it has counted, and the files each run published.
//! A later run with the same analysis and parameters reads only the inputs not counted
//! yet, merges their partial with the kept one and publishes the union; an analysis that
//! names its folders by content (the dashboard does) thereby writes a new immutable folder
//! and moves its pointer, and the old folders stay until `spotmill prune` removes them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The folder inside an output that holds the history.
pub const HISTORY_DIR: &str = ".spotmill";
const STATE_FILE: &str = "state.json";
const PARTIAL_FILE: &str = "partial";

/// One run that published into the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// 1 for the first run, then counting up.
    pub run: u64,
    /// Input files this run counted.
    pub inputs: u64,
    /// Paths it published, relative to the output folder.
    pub files: Vec<String>,
}

/// The history of an output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputHistory {
    pub analysis_sha256: String,
    pub params_sha256: String,
    /// Keys of every input file whose records are in the kept partial.
    pub counted: BTreeSet<String>,
    pub runs: Vec<RunRecord>,
}

fn history_dir(output: &Path) -> PathBuf {
    output.join(HISTORY_DIR)
}

impl OutputHistory {
    pub fn new(analysis_sha256: &str, params_sha256: &str) -> Self {
        OutputHistory {
            analysis_sha256: analysis_sha256.to_string(),
            params_sha256: params_sha256.to_string(),
            counted: BTreeSet::new(),
            runs: Vec::new(),
        }
    }

    /// The history and the kept partial of `output`, if it has any.
    pub fn load(output: &Path) -> anyhow::Result<Option<(OutputHistory, Vec<u8>)>> {
        let dir = history_dir(output);
        let state = dir.join(STATE_FILE);
        if !state.exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&state)
            .with_context(|| format!("cannot read {}", state.display()))?;
        let history: OutputHistory = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; run with --fresh to start the output over",
                state.display()
            )
        })?;
        let partial_path = dir.join(PARTIAL_FILE);
        let partial = fs::read(&partial_path)
            .with_context(|| format!("cannot read {}", partial_path.display()))?;
        Ok(Some((history, partial)))
    }

    /// Refuses to merge results of another analysis or other parameters.
    pub fn check_same_job(
        &self,
        analysis_sha256: &str,
        params_sha256: &str,
        output: &Path,
    ) -> anyhow::Result<()> {
        if self.analysis_sha256 != analysis_sha256 || self.params_sha256 != params_sha256 {
            bail!(
                "{} holds the results of another analysis or other parameters (analysis {}…); \
                 merging them would mix two jobs: use another --output, or --fresh to start it over",
                output.display(),
                &self.analysis_sha256[..12.min(self.analysis_sha256.len())]
            );
        }
        Ok(())
    }

    /// Records a run and writes the history: partial first, then the state naming it, each
    /// through a temporary file and a rename.
    pub fn record_run(
        &mut self,
        output: &Path,
        inputs: &[String],
        files: Vec<String>,
        partial: &[u8],
    ) -> anyhow::Result<()> {
        self.counted.extend(inputs.iter().cloned());
        let run = self.runs.last().map_or(1, |r| r.run + 1);
        self.runs.push(RunRecord {
            run,
            inputs: inputs.len() as u64,
            files,
        });
        let dir = history_dir(output);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomically(&dir.join(PARTIAL_FILE), partial)?;
        write_atomically(
            &dir.join(STATE_FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }

    /// Files published only by runs older than the newest `keep`, and not republished by
    /// any of those: what `spotmill prune` removes.
    pub fn stale_files(&self, keep: usize) -> Vec<String> {
        let split = self.runs.len().saturating_sub(keep.max(1));
        let (old, recent) = self.runs.split_at(split);
        let kept: BTreeSet<&String> = recent.iter().flat_map(|r| r.files.iter()).collect();
        let stale: BTreeSet<&String> = old
            .iter()
            .flat_map(|r| r.files.iter())
            .filter(|f| !kept.contains(f))
            .collect();
        stale.into_iter().cloned().collect()
    }

    /// Removes the stale files (see [`stale_files`](Self::stale_files)) and empty folders
    /// left behind, and forgets the runs older than the newest `keep`.
    pub fn prune(&mut self, output: &Path, keep: usize) -> anyhow::Result<Vec<String>> {
        let stale = self.stale_files(keep);
        for file in &stale {
            let path = super::output::safe_join(output, file)?;
            match fs::remove_file(&path) {
                Ok(()) => remove_empty_parents(output, &path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()))
                }
            }
        }
        let split = self.runs.len().saturating_sub(keep.max(1));
        self.runs.drain(..split);
        let dir = history_dir(output);
        write_atomically(
            &dir.join(STATE_FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(stale)
    }
}

fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || fs::remove_dir(d).is_err() {
            return;
        }
        dir = d.parent();
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("spotmill-tmp");
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_later_runs_republish_and_prunes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let mut history = OutputHistory::new("a", "p");
        for (run, files) in [
            vec!["versions.json", "x/1/f.json"],
            vec!["versions.json", "x/2/f.json"],
        ]
        .into_iter()
        .enumerate()
        {
            for f in &files {
                let path = out.join(f);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, b"1").unwrap();
            }
            let inputs = vec![format!("key{run}")];
            history
                .record_run(
                    out,
                    &inputs,
                    files.iter().map(|f| f.to_string()).collect(),
                    b"partial",
                )
                .unwrap();
        }
        assert_eq!(history.stale_files(1), vec!["x/1/f.json".to_string()]);
        assert!(history.stale_files(2).is_empty());

        let (loaded, partial) = OutputHistory::load(out).unwrap().unwrap();
        assert_eq!(loaded, history);
        assert_eq!(partial, b"partial");
        assert_eq!(loaded.counted.len(), 2);

        history.prune(out, 1).unwrap();
        assert!(!out.join("x/1").exists(), "the old folder is gone");
        assert!(out.join("x/2/f.json").exists() && out.join("versions.json").exists());
        assert_eq!(OutputHistory::load(out).unwrap().unwrap().0.runs.len(), 1);
        assert!(history.check_same_job("a", "p", out).is_ok());
        assert!(history.check_same_job("b", "p", out).is_err());
    }
}
