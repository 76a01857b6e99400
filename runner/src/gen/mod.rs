//! A deterministic generator of realistic published telemetry-log trees.
//!
//! The tree has the layout of the 2013 published bucket
//! (`reason/appName/channel/version/buildId.submissionDate.v2.log.<uuid>.<ext>`),
//! each file a `.lzma` (LZMA_Alone) or `.xz` container of lines
//! `<document id>\t<ver 2 JSON>\n`. It exists so the runner can be tested and
//! benchmarked at scale without real user data.
//!
//! Determinism: the same seed and config give a byte-identical tree. Dimensions are
//! drawn from the master [`ChaCha8Rng`] and grouped by key prefix
//! ([`tree::plan`]); group `i` then uses stream `i + 1` of the same seed for its
//! payloads, file names and containers. Threads only change which group is written
//! when, never what is written.

pub mod histograms;
mod json;
pub mod payload;
pub mod tree;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use xz2::stream::{Check, LzmaOptions, Stream};
use xz2::write::XzEncoder;

use histograms::{bucket_boundaries, default_definitions, Definition};
use payload::{write_payload, PayloadSpec, Prepared};
use tree::{object_key, Group};

/// Which containers the generated files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ContainerChoice {
    /// LZMA_Alone (`.lzma`), what the 2013 published bucket held.
    Lzma,
    /// `.xz` streams (CRC64 check).
    Xz,
    /// Each file independently `.lzma` or `.xz`, so readers meet both.
    Mixed,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    pub submissions: u64,
    /// A file is closed before a line would take it past this many uncompressed
    /// bytes (a single larger line still gets a file of its own).
    pub max_file_bytes: u64,
    /// Inclusive range of histograms per submission.
    pub histograms_per_submission: (usize, usize),
    pub container: ContainerChoice,
    /// LZMA preset, 0-9. Low presets keep generation fast; the ratio on these
    /// payloads barely changes.
    pub compression_level: u32,
    /// Worker threads; 0 means the available parallelism, at most 4. The output does
    /// not depend on it.
    pub threads: usize,
    /// Histogram vocabulary; `None` means the embedded Aurora 24 definitions.
    pub definitions: Option<Vec<Definition>>,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            submissions: 1000,
            max_file_bytes: 32 << 20,
            histograms_per_submission: (300, 400),
            container: ContainerChoice::Lzma,
            compression_level: 1,
            threads: 0,
            definitions: None,
        }
    }
}

/// Progress, reported on the calling thread after each finished file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenProgress {
    pub files: u64,
    pub submissions: u64,
    pub submissions_total: u64,
    pub uncompressed_bytes: u64,
    pub compressed_bytes: u64,
}

/// Totals of a generated tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GenSummary {
    pub files: u64,
    pub submissions: u64,
    pub uncompressed_bytes: u64,
    pub compressed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("invalid generator config: {0}")]
    Config(String),
    #[error("output directory {0} is not empty; the tree must not mix with other files")]
    OutputNotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Compression(#[from] xz2::stream::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a published-log tree under `out` (created if missing, must be empty) and
/// nothing else.
pub fn generate(
    out: &Path,
    cfg: &GenConfig,
    progress: &dyn Fn(GenProgress),
) -> Result<GenSummary, GenError> {
    validate(cfg)?;
    prepare_output(out)?;
    let prepared = prepare_histograms(cfg);
    let spec = PayloadSpec {
        histograms: &prepared,
        histograms_per_submission: cfg.histograms_per_submission,
    };
    let groups = tree::plan(&mut ChaCha8Rng::seed_from_u64(cfg.seed), cfg.submissions);
    let threads = worker_count(cfg.threads, groups.len());
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Result<FileDone, GenError>>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (groups, next, spec) = (&groups, &next, &spec);
            scope.spawn(move || {
                let report = |r: Result<FileDone, GenError>| tx.send(r).is_ok();
                while let Some(i) = claim(next, groups.len()) {
                    let writer = GroupWriter::new(out, cfg, spec, i, &groups[i]);
                    if let Err(e) = writer.write_all(&report) {
                        // Stop every worker: the first error is the answer.
                        next.store(groups.len(), Ordering::Relaxed);
                        report(Err(e));
                        return;
                    }
                }
            });
        }
        drop(tx);
        collect(rx, cfg.submissions, progress, &next, groups.len())
    })
}

fn claim(next: &AtomicUsize, len: usize) -> Option<usize> {
    let i = next.fetch_add(1, Ordering::Relaxed);
    (i < len).then_some(i)
}

/// Sums finished files on the calling thread (the progress callback need not be
/// `Sync`) and keeps the first error.
fn collect(
    rx: mpsc::Receiver<Result<FileDone, GenError>>,
    total: u64,
    progress: &dyn Fn(GenProgress),
    next: &AtomicUsize,
    groups: usize,
) -> Result<GenSummary, GenError> {
    let mut sum = GenSummary::default();
    let mut first_error = None;
    for msg in rx {
        match msg {
            Ok(done) => {
                sum.files += 1;
                sum.submissions += done.submissions;
                sum.uncompressed_bytes += done.uncompressed;
                sum.compressed_bytes += done.compressed;
                progress(GenProgress {
                    files: sum.files,
                    submissions: sum.submissions,
                    submissions_total: total,
                    uncompressed_bytes: sum.uncompressed_bytes,
                    compressed_bytes: sum.compressed_bytes,
                });
            }
            Err(e) => {
                next.store(groups, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(sum), Err)
}

fn validate(cfg: &GenConfig) -> Result<(), GenError> {
    let (lo, hi) = cfg.histograms_per_submission;
    if lo > hi {
        return Err(GenError::Config(format!(
            "histograms_per_submission {lo}..={hi} is empty"
        )));
    }
    if cfg.compression_level > 9 {
        return Err(GenError::Config(format!(
            "compression_level {} > 9",
            cfg.compression_level
        )));
    }
    if cfg.max_file_bytes == 0 {
        return Err(GenError::Config("max_file_bytes must be > 0".into()));
    }
    if cfg.definitions.as_ref().is_some_and(|d| d.is_empty()) {
        return Err(GenError::Config("no histogram definitions".into()));
    }
    Ok(())
}

/// Creates `out` or accepts it empty: leftovers of another run would make the tree
/// depend on history.
fn prepare_output(out: &Path) -> Result<(), GenError> {
    fs::create_dir_all(out).map_err(io_err(out))?;
    let mut entries = fs::read_dir(out).map_err(io_err(out))?;
    if entries.next().is_some() {
        return Err(GenError::OutputNotEmpty(out.to_owned()));
    }
    Ok(())
}

fn prepare_histograms(cfg: &GenConfig) -> Vec<Prepared> {
    let defs = cfg.definitions.clone().unwrap_or_else(default_definitions);
    defs.into_iter()
        .map(|def| Prepared {
            bounds: bucket_boundaries(&def),
            def,
        })
        .collect()
}

fn worker_count(requested: usize, groups: usize) -> usize {
    let auto = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let wanted = if requested == 0 { auto } else { requested };
    wanted.clamp(1, groups.max(1))
}

/// One file written by a worker.
struct FileDone {
    submissions: u64,
    uncompressed: u64,
    compressed: u64,
}

/// Writes one group's submissions, rolling over to a new file at the size cap.
struct GroupWriter<'a> {
    out: &'a Path,
    cfg: &'a GenConfig,
    spec: &'a PayloadSpec<'a>,
    group: &'a Group,
    rng: ChaCha8Rng,
}

impl<'a> GroupWriter<'a> {
    fn new(
        out: &'a Path,
        cfg: &'a GenConfig,
        spec: &'a PayloadSpec<'a>,
        index: usize,
        group: &'a Group,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(index as u64 + 1);
        GroupWriter {
            out,
            cfg,
            spec,
            group,
            rng,
        }
    }

    fn write_all(
        mut self,
        report: &dyn Fn(Result<FileDone, GenError>) -> bool,
    ) -> Result<(), GenError> {
        let mut line = Vec::with_capacity(128 << 10);
        let mut file: Option<OpenFile> = None;
        for _ in 0..self.group.submissions {
            line.clear();
            line.extend_from_slice(uuid_dashed(&mut self.rng).as_bytes());
            line.push(b'\t');
            write_payload(&mut line, &mut self.rng, &self.group.dims, self.spec);
            line.push(b'\n');
            let full = file
                .as_ref()
                .is_some_and(|f| f.uncompressed + line.len() as u64 > self.cfg.max_file_bytes);
            if full {
                report(Ok(file.take().expect("checked above").finish()?));
            }
            if file.is_none() {
                file = Some(self.open_file()?);
            }
            file.as_mut().expect("opened above").write_line(&line)?;
        }
        if let Some(f) = file {
            report(Ok(f.finish()?));
        }
        Ok(())
    }

    fn open_file(&mut self) -> Result<OpenFile, GenError> {
        let container = match self.cfg.container {
            ContainerChoice::Mixed if self.rng.random_bool(0.5) => ContainerChoice::Xz,
            ContainerChoice::Mixed => ContainerChoice::Lzma,
            c => c,
        };
        let uuid = format!("{:032x}", self.rng.random::<u128>());
        let key = object_key(&self.group.dims, &uuid, extension(container));
        let path = self.out.join(key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        OpenFile::create(path, container, self.cfg.compression_level)
    }
}

/// A random (version 4) UUID in its dashed form, the document id of a line.
fn uuid_dashed(rng: &mut ChaCha8Rng) -> String {
    let v = (rng.random::<u128>() & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The file extension of a container.
pub fn extension(container: ContainerChoice) -> &'static str {
    match container {
        ContainerChoice::Xz => "xz",
        _ => "lzma",
    }
}

/// An xz2 encoder for a container: LZMA_Alone (`5d` header, unknown size) or `.xz`.
fn encoder_stream(container: ContainerChoice, level: u32) -> Result<Stream, xz2::stream::Error> {
    match container {
        ContainerChoice::Xz => Stream::new_easy_encoder(level, Check::Crc64),
        _ => Stream::new_lzma_encoder(&LzmaOptions::new_preset(level)?),
    }
}

/// A log file being written.
struct OpenFile {
    path: PathBuf,
    encoder: XzEncoder<BufWriter<File>>,
    uncompressed: u64,
    lines: u64,
}

impl OpenFile {
    fn create(path: PathBuf, container: ContainerChoice, level: u32) -> Result<Self, GenError> {
        let file = File::create(&path).map_err(io_err(&path))?;
        let stream = encoder_stream(container, level)?;
        Ok(OpenFile {
            encoder: XzEncoder::new_stream(BufWriter::with_capacity(256 << 10, file), stream),
            path,
            uncompressed: 0,
            lines: 0,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), GenError> {
        self.encoder.write_all(line).map_err(io_err(&self.path))?;
        self.uncompressed += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    fn finish(self) -> Result<FileDone, GenError> {
        let path = self.path;
        let mut writer = self.encoder.finish().map_err(io_err(&path))?;
        writer.flush().map_err(io_err(&path))?;
        let compressed = writer.get_ref().metadata().map_err(io_err(&path))?.len();
        Ok(FileDone {
            submissions: self.lines,
            uncompressed: self.uncompressed,
            compressed,
        })
    }
}

/// Writes `lines` (`(document id, JSON)`) as one log file in `container`, for tests
/// that need specific records in real containers. Returns the compressed size.
pub fn write_log_file(
    path: &Path,
    container: ContainerChoice,
    lines: &[(String, Vec<u8>)],
) -> io::Result<u64> {
    let container = match container {
        ContainerChoice::Mixed => ContainerChoice::Lzma,
        c => c,
    };
    let mut file = OpenFile::create(path.to_owned(), container, 6).map_err(into_io)?;
    for (id, json) in lines {
        let mut line = Vec::with_capacity(id.len() + json.len() + 2);
        line.extend_from_slice(id.as_bytes());
        line.push(b'\t');
        line.extend_from_slice(json);
        line.push(b'\n');
        file.write_line(&line).map_err(into_io)?;
    }
    Ok(file.finish().map_err(into_io)?.compressed)
}

fn into_io(e: GenError) -> io::Error {
    match e {
        GenError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
