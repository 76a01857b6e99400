//! Writing the reducer's published files into the output folder, safely: the paths come
//! from untrusted code.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

/// Most files one publish may write.
pub const MAX_FILES: usize = 100_000;

/// Checks a published path: relative, `/`-separated, no `.`/`..`/empty segments, no
/// backslash or NUL. Returns it as a path under `root`.
pub fn safe_join(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        bail!("the analysis published a file with an unsafe path {path:?}: paths must be relative and `/`-separated");
    }
    let mut joined = root.to_path_buf();
    for segment in path.split('/') {
        let as_path = Path::new(segment);
        match as_path.components().next() {
            Some(Component::Normal(_)) if as_path.components().count() == 1 => joined.push(segment),
            _ => bail!("the analysis published a file with an unsafe path {path:?}: segment {segment:?} is not allowed"),
        }
    }
    Ok(joined)
}

/// Writes every file under `root` (created if needed), each through a temporary file and a
/// rename so a reader never sees half a file. Returns the paths written, relative.
pub fn write_files(root: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<String>> {
    if files.len() > MAX_FILES {
        bail!(
            "the analysis published {} files, more than the {MAX_FILES} allowed",
            files.len()
        );
    }
    // Check every path before writing anything.
    let targets: Vec<PathBuf> = files
        .iter()
        .map(|(p, _)| safe_join(root, p))
        .collect::<Result<_, _>>()?;
    for (target, (_, contents)) in targets.iter().zip(files) {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the folder {}", parent.display()))?;
        }
        let tmp = target.with_extension("spotmill-tmp");
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(contents)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, target)
            .with_context(|| format!("cannot move {} into place", target.display()))?;
    }
    Ok(files.iter().map(|(p, _)| p.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_paths_that_leave_the_output_folder() {
        let root = Path::new("/out");
        assert_eq!(
            safe_join(root, "a/b.json").unwrap(),
            PathBuf::from("/out/a/b.json")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a/.",
            "a\0b",
        ] {
            assert!(safe_join(root, bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn writes_nothing_when_one_path_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            ("good.json".to_string(), b"1".to_vec()),
            ("../bad".to_string(), b"2".to_vec()),
        ];
        assert!(write_files(dir.path(), &files).is_err());
        assert!(!dir.path().join("good.json").exists());
        write_files(dir.path(), &files[..1]).unwrap();
        assert_eq!(fs::read(dir.path().join("good.json")).unwrap(), b"1");
    }
}
