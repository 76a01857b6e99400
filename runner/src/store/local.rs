//! A local folder laid out like the published bucket:
//! `root/reason/appName/channel/version/buildId.submissionDate.v2.log.<uuid>.<ext>`.
//!
//! Listing walks the four directory levels and prunes every directory the filter rejects
//! without descending into it: on a real tree most of the data is outside the filter, and
//! `read_dir` on it would dominate planning time. Files that do not follow the layout are
//! returned with a reason (so the CLI can say why they were not read), never silently dropped.

use std::fs::{self, DirEntry, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::logs::container::{open_decoder, ContainerError};
use crate::logs::filter::Filter;
use crate::logs::key::{parse_key, sanitize, Dimensions};
use crate::logs::records::RecordReader;

/// Directory levels of the layout (reason, appName, channel, version).
const DIR_LEVELS: usize = 4;

/// Buffer between the decoder and the record reader: big enough that nearly every record
/// (~78 KB typical) is copied straight out of it.
pub const INPUT_BUFFER_BYTES: usize = 256 * 1024;

/// One selected log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Key relative to the root, `/`-separated (as in the bucket).
    pub key: String,
    pub path: PathBuf,
    /// Compressed size in bytes (for planning).
    pub size: u64,
    pub dimensions: Dimensions,
}

/// What a listing found.
#[derive(Debug, Clone, Default)]
pub struct ListOutcome {
    /// Selected files, sorted by key.
    pub files: Vec<InputFile>,
    /// Entries that are not part of the layout, with the reason, sorted by path. Hidden entries
    /// (`.DS_Store`, `.git`) are skipped silently.
    pub ignored: Vec<(PathBuf, String)>,
}

/// A listing that could not be completed. Failing (rather than skipping an unreadable
/// directory) is deliberate: a silently missing directory would skew every aggregate.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("input root {} does not exist; give the folder that holds the reason directories (e.g. saved_session/)", root.display())]
    RootMissing { root: PathBuf },
    #[error("input root {} is not a directory", root.display())]
    NotADirectory { root: PathBuf },
    #[error("cannot list {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Lists the logs under `root` that `filter` selects.
pub fn list_inputs(root: &Path, filter: &Filter) -> Result<ListOutcome, ListError> {
    let meta = fs::metadata(root).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ListError::RootMissing {
            root: root.to_owned(),
        },
        _ => ListError::Io {
            path: root.to_owned(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Err(ListError::NotADirectory {
            root: root.to_owned(),
        });
    }
    let canonical_root = fs::canonicalize(root).map_err(io_error(root))?;
    let mut walker = Walker {
        canonical_root,
        filter,
        outcome: ListOutcome::default(),
    };
    walker.walk(root, &mut Vec::new())?;
    let mut outcome = walker.outcome;
    outcome.files.sort_by(|a, b| a.key.cmp(&b.key));
    outcome.ignored.sort();
    Ok(outcome)
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ListError + '_ {
    move |source| ListError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a directory entry is, after resolving symlinks we are willing to follow.
enum EntryKind {
    Dir,
    File { size: u64 },
    Ignore(String),
}

struct Walker<'a> {
    canonical_root: PathBuf,
    filter: &'a Filter,
    outcome: ListOutcome,
}

impl Walker<'_> {
    /// Visits `dir`, whose path below the root is `parts` (one name per level).
    fn walk(&mut self, dir: &Path, parts: &mut Vec<String>) -> Result<(), ListError> {
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            self.visit(&entry, parts)?;
        }
        Ok(())
    }

    fn visit(&mut self, entry: &DirEntry, parts: &mut Vec<String>) -> Result<(), ListError> {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            self.ignore(path, "name is not valid UTF-8".into());
            return Ok(());
        };
        if name.starts_with('.') {
            return Ok(());
        }
        let level = parts.len();
        match self.kind(entry, &path)? {
            EntryKind::Ignore(reason) => self.ignore(path, reason),
            EntryKind::Dir if level < DIR_LEVELS => self.visit_dir(&path, name, parts)?,
            EntryKind::Dir => self.ignore(
                path,
                "directory below the version level; logs live at \
                 reason/appName/channel/version/<file>"
                    .into(),
            ),
            EntryKind::File { .. } if level < DIR_LEVELS => self.ignore(
                path,
                format!(
                    "file at directory level {level}; logs live at \
                     reason/appName/channel/version/<file>"
                ),
            ),
            EntryKind::File { size } => self.visit_file(path, name, parts, size),
        }
        Ok(())
    }

    fn visit_dir(
        &mut self,
        path: &Path,
        name: &str,
        parts: &mut Vec<String>,
    ) -> Result<(), ListError> {
        let level = parts.len();
        let clean = sanitize(name);
        // Prune without a word when neither the name nor its sanitised form could match: the
        // directory is simply outside the filter.
        if !self.filter.allows(level, name) && !self.filter.allows(level, &clean) {
            return Ok(());
        }
        if clean != name {
            self.ignore(
                path.to_owned(),
                format!("directory name is not a sanitised dimension value (expected `{clean}`)"),
            );
            return Ok(());
        }
        parts.push(name.to_owned());
        let result = self.walk(path, parts);
        parts.pop();
        result
    }

    fn visit_file(&mut self, path: PathBuf, name: &str, parts: &[String], size: u64) {
        let key = format!("{}/{name}", parts.join("/"));
        match parse_key(&key) {
            Err(e) => self.ignore(path, e.problem),
            Ok(dimensions) if self.filter.matches(&dimensions) => {
                self.outcome.files.push(InputFile {
                    key,
                    path,
                    size,
                    dimensions,
                })
            }
            Ok(_) => {}
        }
    }

    /// Classifies an entry. File symlinks are followed; directory symlinks only when they stay
    /// inside the root, so a listing never wanders into the rest of the file system.
    fn kind(&self, entry: &DirEntry, path: &Path) -> Result<EntryKind, ListError> {
        let file_type = entry.file_type().map_err(io_error(path))?;
        if file_type.is_dir() {
            return Ok(EntryKind::Dir);
        }
        if file_type.is_file() {
            let size = entry.metadata().map_err(io_error(path))?.len();
            return Ok(EntryKind::File { size });
        }
        if !file_type.is_symlink() {
            return Ok(EntryKind::Ignore("not a regular file or directory".into()));
        }
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => return Ok(EntryKind::Ignore(format!("broken symlink: {e}"))),
        };
        if meta.is_file() {
            return Ok(EntryKind::File { size: meta.len() });
        }
        if !meta.is_dir() {
            return Ok(EntryKind::Ignore(
                "symlink to something that is not a regular file or directory".into(),
            ));
        }
        let target = fs::canonicalize(path).map_err(io_error(path))?;
        if target.starts_with(&self.canonical_root) {
            Ok(EntryKind::Dir)
        } else {
            Ok(EntryKind::Ignore(format!(
                "symlink to a directory outside the input root ({}), not followed",
                target.display()
            )))
        }
    }

    fn ignore(&mut self, path: PathBuf, reason: String) {
        self.outcome.ignored.push((path, reason));
    }
}

/// The record stream of one local input file.
pub type InputReader = RecordReader<BufReader<Box<dyn Read + Send>>>;

/// Opens a listed file for reading records: file -> container decoder (by magic bytes) ->
/// 256 KiB buffer -> record framing. Errors (and read errors later) name the file's path.
/// An empty file is `ContainerError::Empty`: count it as a file without records.
pub fn open_input(file: &InputFile, max_line_bytes: usize) -> Result<InputReader, ContainerError> {
    let name = file.path.display().to_string();
    let handle = File::open(&file.path).map_err(|source| ContainerError::Io {
        name: name.clone(),
        source,
    })?;
    let decoder = open_decoder(handle, &name)?;
    Ok(RecordReader::new(
        BufReader::with_capacity(INPUT_BUFFER_BYTES, decoder),
        max_line_bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::records::LogItem;
    use std::io::Write;

    const K22: &str = "saved_session/Firefox/nightly/22.0a1/\
                       20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma";
    const K28: &str = "saved_session/Firefox/nightly/28.0a1/\
                       20131029030201.20131029.v2.log.0ab8723b6fb3455bb34b04d97482fda2.lzma";
    const KJUNE: &str =
        "saved_session/Firefox/aurora/23.0a2/20130603004016.20130605.v2.log.aa11.xz";

    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn put(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// The two real samples at their published keys plus a June aurora log.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        put(
            dir.path(),
            K22,
            &fs::read(sample("ss-ff-n-22.lzma")).unwrap(),
        );
        put(
            dir.path(),
            K28,
            &fs::read(sample("ss-ff-n-28.lzma")).unwrap(),
        );
        put(
            dir.path(),
            KJUNE,
            &xz(b"june-doc\t{\"info\":{\"OS\":\"Linux\"}}\n"),
        );
        dir
    }

    fn keys(outcome: &ListOutcome) -> Vec<&str> {
        outcome.files.iter().map(|f| f.key.as_str()).collect()
    }

    fn reasons(outcome: &ListOutcome, root: &Path) -> Vec<(String, String)> {
        outcome
            .ignored
            .iter()
            .map(|(p, r)| {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                (rel, r.clone())
            })
            .collect()
    }

    #[test]
    fn lists_the_real_samples_sorted_with_dimensions() {
        let dir = tree();
        let outcome = list_inputs(dir.path(), &Filter::all()).unwrap();
        assert_eq!(keys(&outcome), [KJUNE, K22, K28]);
        assert!(outcome.ignored.is_empty(), "{:?}", outcome.ignored);
        let f = &outcome.files[2];
        assert_eq!(f.size, 22540);
        assert_eq!(f.path, dir.path().join(K28));
        assert_eq!(f.dimensions.version, "28.0a1");
        assert_eq!(f.dimensions.submission_date, "20131029");
    }

    #[test]
    fn open_input_reads_records() {
        let dir = tree();
        let outcome = list_inputs(dir.path(), &Filter::all()).unwrap();
        let count = |f: &InputFile| {
            open_input(f, 1 << 24)
                .unwrap()
                .map(|item| match item.unwrap() {
                    LogItem::Record(r) => r.id,
                    LogItem::Skipped(s) => panic!("{s}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(count(&outcome.files[0]), ["june-doc"]);
        assert_eq!(count(&outcome.files[1]).len(), 1);
        let ids = count(&outcome.files[2]);
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[0], "41550578-ba6c-4228-8fe8-eb4ba6fb2fe1");
    }

    #[test]
    fn min_max_build_id_filter_selects_june_only() {
        let dir = tree();
        let filter = Filter::from_file(sample("filter_min_max_buildid.json")).unwrap();
        let outcome = list_inputs(dir.path(), &filter).unwrap();
        assert_eq!(keys(&outcome), [KJUNE]);
        let filter = Filter::from_file(sample("filter_saved_session_Fx_prerelease.json")).unwrap();
        assert!(list_inputs(dir.path(), &filter).unwrap().files.is_empty());
        let filter = Filter::from_file(sample("telemetry_schema.json")).unwrap();
        assert_eq!(list_inputs(dir.path(), &filter).unwrap().files.len(), 3);
    }

    #[test]
    fn pruned_directories_are_not_visited() {
        let dir = tree();
        let root = dir.path();
        // Junk under a reason the filter rejects: reported if visited, an error if the locked
        // directory is read (unless we run as root, which reads it anyway).
        put(root, "idle_daily/junk.txt", b"junk");
        put(root, "idle_daily/Firefox/nightly/26.0a1/not-a-log", b"junk");
        let locked = root.join("idle_daily/Firefox/locked");
        fs::create_dir_all(&locked).unwrap();
        put(root, "idle_daily/Firefox/locked/x/junk.txt", b"junk");
        set_mode(&locked, 0o000);

        let all = list_inputs(root, &Filter::all());
        let filter = Filter::from_json(
            r#"{"dimensions":[{"field_name":"reason","allowed_values":["saved-session"]}]}"#,
        )
        .unwrap();
        let pruned = list_inputs(root, &filter);
        set_mode(&locked, 0o755);

        match all {
            Ok(outcome) => assert!(
                reasons(&outcome, root)
                    .iter()
                    .any(|(p, _)| p == "idle_daily/junk.txt"),
                "the junk is visible without the filter: {:?}",
                outcome.ignored
            ),
            Err(e) => assert!(e.to_string().contains("locked"), "{e}"),
        }
        let pruned = pruned.unwrap();
        assert_eq!(keys(&pruned), [KJUNE, K22, K28]);
        assert!(pruned.ignored.is_empty(), "{:?}", pruned.ignored);
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn off_layout_entries_are_reported() {
        let dir = tree();
        let root = dir.path();
        let version_dir = "saved_session/Firefox/nightly/22.0a1";
        put(root, &format!("{version_dir}/.DS_Store"), b"hidden");
        put(root, ".hidden/whatever", b"hidden");
        put(root, &format!("{version_dir}/README.txt"), b"notes");
        put(
            root,
            &format!("{version_dir}/1.20131011.v1.log.ab.lzma"),
            b"old",
        );
        put(root, &format!("{version_dir}/deeper/x.lzma"), b"deep");
        put(root, "saved_session/notes.txt", b"notes");
        put(
            root,
            "saved-session/Firefox/nightly/1/1.2.v2.log.ab.lzma",
            b"dash",
        );
        let outcome = list_inputs(root, &Filter::all()).unwrap();
        assert_eq!(keys(&outcome), [KJUNE, K22, K28]);
        let got = reasons(&outcome, root);
        let expect = [
            ("saved-session", "expected `saved_session`"),
            (
                "saved_session/Firefox/nightly/22.0a1/1.20131011.v1.log.ab.lzma",
                "v1",
            ),
            ("saved_session/Firefox/nightly/22.0a1/README.txt", "parts"),
            (
                "saved_session/Firefox/nightly/22.0a1/deeper",
                "below the version level",
            ),
            ("saved_session/notes.txt", "directory level 1"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:?}");
        for ((path, reason), (want_path, want_reason)) in got.iter().zip(expect) {
            assert_eq!(path, want_path);
            assert!(reason.contains(want_reason), "{path}: {reason}");
        }
    }

    #[test]
    fn directory_symlinks_stay_inside_the_root() {
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        put(
            outside.path(),
            "24.0a2/20130901004016.20130905.v2.log.bb22.xz",
            &xz(b"x\t{}\n"),
        );
        let link = dir.path().join("saved_session/Firefox/beta");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        // A file symlink is followed wherever it points.
        let file_link = dir
            .path()
            .join("saved_session/Firefox/nightly/28.0a1/20131029030201.20131030.v2.log.cc33.lzma");
        std::os::unix::fs::symlink(sample("ss-ff-n-22.lzma"), &file_link).unwrap();
        let outcome = list_inputs(dir.path(), &Filter::all()).unwrap();
        assert_eq!(outcome.files.len(), 4, "{:?}", keys(&outcome));
        assert!(outcome
            .files
            .iter()
            .any(|f| f.path == file_link && f.size == 13583));
        let got = reasons(&outcome, dir.path());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "saved_session/Firefox/beta");
        assert!(got[0].1.contains("outside the input root"), "{}", got[0].1);
    }

    #[test]
    fn missing_root_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-root");
        let err = list_inputs(&missing, &Filter::all()).unwrap_err();
        assert!(matches!(err, ListError::RootMissing { .. }));
        assert!(err.to_string().contains("no-such-root"), "{err}");
        let file = put(dir.path(), "plain-file", b"x");
        let err = list_inputs(&file, &Filter::all()).unwrap_err();
        assert!(matches!(err, ListError::NotADirectory { .. }), "{err}");

        let key = "saved_session/Firefox/nightly/22.0a1/1.2.v2.log.ee.xz";
        put(dir.path(), key, b"");
        let outcome = list_inputs(dir.path(), &Filter::all()).unwrap();
        assert_eq!(outcome.files[0].size, 0);
        let err = open_input(&outcome.files[0], 100).err().unwrap();
        assert!(matches!(err, ContainerError::Empty { .. }), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}
