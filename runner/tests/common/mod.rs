//! Shared helpers of the integration tests: the real guest components, real compressed
//! log trees, the real `spotmill` binary run under a timeout, and its `--json` summary.
//!
//! Every test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
pub use spotmill::gen::ContainerChoice;

/// How long one `spotmill` process may run before the test kills it and fails.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

/// Small limits for hostile guests, so that each misbehaviour is caught quickly.
pub const SMALL_LIMITS: &[&str] = &[
    "--fuel-per-call",
    "200000000",
    "--call-deadline-ms",
    "3000",
    "--memory-mb",
    "64",
    "--max-output-mb",
    "8",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_path_buf()
}

/// The folder of built components (`os-distribution.wasm`, `hostile-<feature>.wasm`):
/// `$SPOTMILL_ANALYSES_DIR` if set, else built once per test binary with
/// `scripts/build-analyses.sh` into a folder under `CARGO_TARGET_TMPDIR`.
pub fn analyses_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SPOTMILL_ANALYSES_DIR") {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("os-distribution.wasm").is_file(),
                "SPOTMILL_ANALYSES_DIR={} holds no os-distribution.wasm",
                dir.display()
            );
            return dir;
        }
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = tmp.join("spotmill-analyses");
        let wasm_target = std::env::var_os("SPOTMILL_WASM_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| tmp.join("spotmill-wasm-target"));
        let script = repo_root().join("scripts/build-analyses.sh");
        // Test binaries may run at once (nextest): the script shares the wasm target dir
        // and its uplifted artifact between features, so one build at a time.
        std::fs::create_dir_all(tmp).expect("create CARGO_TARGET_TMPDIR");
        let lock = std::fs::File::create(tmp.join("spotmill-analyses.lock"))
            .expect("create the build lock file");
        lock.lock().expect("lock the build lock file");
        // Another test binary of this `cargo test` may have just built them.
        let stamp = out.join(".built-from-sources");
        if is_newer_than_sources(&stamp) {
            return out;
        }
        let started = std::time::SystemTime::now();
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .env("SPOTMILL_WASM_TARGET_DIR", &wasm_target)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        // Stamped with the start of the build: a source edited meanwhile is newer.
        std::fs::File::create(&stamp)
            .and_then(|f| f.set_modified(started))
            .expect("write the build stamp");
        drop(lock);
        out
    })
}

/// Whether `stamp` exists and is newer than every source of the components (the guests,
/// the guest SDK, the WIT files and the build script).
fn is_newer_than_sources(stamp: &Path) -> bool {
    fn newest(dir: &Path, newest_seen: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                newest(&path, newest_seen);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest_seen = (*newest_seen).max(modified);
            }
        }
    }
    let Ok(built) = std::fs::metadata(stamp).and_then(|m| m.modified()) else {
        return false;
    };
    let root = repo_root();
    let mut sources = std::time::SystemTime::UNIX_EPOCH;
    for dir in ["analyses", "guest-sdk", "wit"] {
        newest(&root.join(dir), &mut sources);
    }
    if let Ok(m) =
        std::fs::metadata(root.join("scripts/build-analyses.sh")).and_then(|m| m.modified())
    {
        sources = sources.max(m);
    }
    built > sources
}

/// The path of a built component, e.g. `analysis("hostile-panic")`.
pub fn analysis(name: &str) -> PathBuf {
    let path = analyses_dir().join(format!("{name}.wasm"));
    assert!(path.is_file(), "missing component {}", path.display());
    path
}

/// A compiled-artifact cache shared by the tests of one binary (compiling is not what
/// most tests are about; the cache test uses its own folder).
pub fn shared_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("spotmill-test-cache")
}

pub fn tempdir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).expect("create CARGO_TARGET_TMPDIR");
    tempfile::Builder::new()
        .prefix("spotmill-it-")
        .tempdir_in(base)
        .expect("create a temp dir")
}

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// What a `spotmill` process did.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Fails if the runner itself panicked (the guest's own panic text inside a captured
    /// guest log is fine: it says `thread '<unnamed>'`).
    pub fn assert_no_runner_panic(&self) {
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            for signature in ["thread 'main'", "thread 'spotmill-worker"] {
                assert!(
                    !text.contains(signature),
                    "the runner panicked ({signature:?} in its {name}):\n{self}"
                );
            }
        }
        assert_ne!(
            self.code,
            Some(101),
            "exit code 101 is a Rust panic:\n{self}"
        );
        assert!(self.code.is_some(), "killed by a signal:\n{self}");
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 6000;
        let cut = |s: &str| -> String {
            if s.len() <= MAX {
                s.to_string()
            } else {
                let mut end = MAX;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}... [{} bytes more]", &s[..end], s.len() - end)
            }
        };
        write!(
            f,
            "exit code {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.elapsed,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// Runs the real binary with `args`, killing it and failing the test after
/// [`PROCESS_TIMEOUT`]. The environment variables that would change its behaviour
/// (`SPOTMILL_CONFIG`, `SPOTMILL_CACHE_DIR`) are removed.
pub fn spotmill<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spotmill"))
        .args(&args)
        .env_remove("SPOTMILL_CONFIG")
        .env_remove("SPOTMILL_CACHE_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the spotmill binary");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for spotmill") {
            break status;
        }
        if started.elapsed() > PROCESS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let out = Output {
                code: None,
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
                elapsed: started.elapsed(),
            };
            panic!(
                "spotmill {:?} did not finish within {PROCESS_TIMEOUT:?}: killed (a hang)\n{out}",
                args
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

/// A `spotmill run` and its parsed `--json` summary.
#[derive(Debug)]
pub struct Run {
    pub out: Output,
    pub summary: Summary,
}

/// `spotmill run --analysis A --input I --output O --json --quiet --cache-dir <shared>`
/// plus `extra`; the summary must parse.
pub fn run(analysis: &Path, input: &Path, output: &Path, extra: &[&str]) -> Run {
    let cache = shared_cache_dir();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("run"),
        OsStr::new("--analysis"),
        analysis.as_os_str(),
        OsStr::new("--input"),
        input.as_os_str(),
        OsStr::new("--output"),
        output.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("--quiet"),
    ];
    if !extra.contains(&"--cache-dir") && !extra.contains(&"--no-cache") {
        args.push(OsStr::new("--cache-dir"));
        args.push(cache.as_os_str());
    }
    args.extend(extra.iter().map(OsStr::new));
    let out = spotmill(&args);
    out.assert_no_runner_panic();
    let summary = parse_summary(&out);
    Run { out, summary }
}

/// Parses the `--json` summary on stdout (fails with the whole output if it does not).
pub fn parse_summary(out: &Output) -> Summary {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a JSON summary ({e}):\n{out}"))
}

/// The fields of `spotmill run --json` (runner/src/job/summary.rs) the tests look at.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub status: String,
    pub analysis: AnalysisInfo,
    pub input_files: u64,
    pub ignored_paths: u64,
    pub empty_files: u64,
    pub tasks: u64,
    pub tasks_failed: u64,
    pub records: u64,
    pub records_mapped: u64,
    pub records_quarantined: u64,
    pub lines_skipped: SkipCounts,
    pub quarantined: Vec<Quarantine>,
    pub file_errors: Vec<FileError>,
    pub task_failures: Vec<TaskFailure>,
    pub publish_error: Option<String>,
    pub output_dir: Option<String>,
    pub output_files: Vec<String>,
    #[serde(default)]
    pub inputs_counted_before: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AnalysisInfo {
    pub name: String,
    pub sha256: String,
    pub from_cache: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SkipCounts {
    pub by_reason: BTreeMap<String, u64>,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Quarantine {
    pub task: String,
    pub file: String,
    pub record_id: String,
    pub line: u64,
    pub failure: Value,
    pub log: Option<String>,
}

impl Quarantine {
    pub fn kind(&self) -> &str {
        self.failure["kind"].as_str().unwrap_or("<no kind>")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileError {
    pub task: String,
    pub file: String,
    pub error: String,
    pub records_before_error: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskFailure {
    pub task: String,
    pub reason: String,
    pub failure: Option<Value>,
    pub files: Vec<String>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.out.code
    }

    /// Fails with the whole output unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.out.code,
            Some(code),
            "unexpected exit code:\n{}",
            self.out
        );
    }
}

// ---------------------------------------------------------------------------------------
// Input trees
// ---------------------------------------------------------------------------------------

/// A key in the published layout.
pub fn key(channel: &str, version: &str, build: &str, date: &str, uuid: &str, ext: &str) -> String {
    format!("saved_session/Firefox/{channel}/{version}/{build}.{date}.v2.log.{uuid}.{ext}")
}

/// A simple key, distinct per `n`.
pub fn simple_key(n: usize, ext: &str) -> String {
    key(
        "nightly",
        "28.0a1",
        "20131029030201",
        "20131101",
        &format!("{n:032x}"),
        ext,
    )
}

/// Writes a real container (`write_log_file`) under `root/key` with these records.
pub fn write_log(root: &Path, key: &str, container: ContainerChoice, records: &[Rec]) -> PathBuf {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lines: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| (r.id.clone(), r.json.clone()))
        .collect();
    spotmill::gen::write_log_file(&path, container, &lines)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Writes raw uncompressed bytes under `root/key`, compressed by the `xz` tool into the
/// container the extension names (`.xz` or `.lzma`).
pub fn write_raw_with_xz_tool(root: &Path, key: &str, raw: &[u8]) -> PathBuf {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let format = if key.ends_with(".xz") { "xz" } else { "lzma" };
    let mut child = Command::new("xz")
        .args([&format!("--format={format}"), "-c", "-6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the xz tool");
    let mut stdin = child.stdin.take().unwrap();
    let raw = raw.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&raw));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "xz failed");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// One record to write: a document id and its JSON.
#[derive(Debug, Clone)]
pub struct Rec {
    pub id: String,
    pub json: Vec<u8>,
}

/// A small but real-shaped ver 2 submission with `info.OS = os` (`None`: no `OS` field).
pub fn submission(os: Option<&str>, n: usize) -> Vec<u8> {
    let mut info = serde_json::json!({
        "reason": "saved-session",
        "appName": "Firefox",
        "appVersion": "28.0a1",
        "appUpdateChannel": "nightly",
        "appBuildID": "20131029030201",
        "version": "6.1",
        "arch": "x86",
        "locale": "en-US",
    });
    if let Some(os) = os {
        info["OS"] = Value::String(os.to_string());
    }
    serde_json::to_vec(&serde_json::json!({
        "ver": 2,
        "info": info,
        "simpleMeasurements": {"uptime": n, "main": 100 + n},
        "histograms": {"CYCLE_COLLECTOR": [0, n % 7, 3, 0, 0, 12, 0.0, 0.0, -1, -1]},
    }))
    .unwrap()
}

/// `n` good records with ids `<prefix>-<i>` and OSes cycling over a few values
/// (including one with no OS at all, which counts as `unknown`).
pub fn good_records(prefix: &str, n: usize) -> Vec<Rec> {
    const OSES: [Option<&str>; 5] = [
        Some("WINNT"),
        Some("Darwin"),
        Some("WINNT"),
        Some("Linux"),
        None,
    ];
    (0..n)
        .map(|i| Rec {
            id: format!("{prefix}-{i:04}"),
            json: submission(OSES[(i + prefix.len()) % OSES.len()], i),
        })
        .collect()
}

/// Lays the real samples of runner/tests/data (listed in input.txt: key, tab, file) out
/// in `root`; returns (key, path) pairs.
pub fn lay_out_samples(root: &Path) -> Vec<(String, PathBuf)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let listing = std::fs::read_to_string(data.join("input.txt")).unwrap();
    let mut laid = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let (key, file) = line.split_once('\t').expect("input.txt: key<TAB>file");
        let name = Path::new(file).file_name().unwrap();
        let target = root.join(key);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(data.join(name), &target).unwrap();
        laid.push((key.to_string(), target));
    }
    assert!(!laid.is_empty());
    laid
}

/// Every file under `root`, as (key relative to root, path), sorted by key.
pub fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((key, path));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Independent expectations
// ---------------------------------------------------------------------------------------

/// Decompresses with the `xz` / `lzma` command-line tools (not Spotmill's reader).
pub fn decompress_with_tools(path: &Path) -> Vec<u8> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("lzma") => "lzma",
        other => panic!("unexpected extension {other:?} of {}", path.display()),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}`: {e}"));
    assert!(
        out.status.success(),
        "`{tool} -dc {}` failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The OS a submission counts under, the way os-distribution documents it: `info.OS`
/// when it is a non-empty string (numbers/booleans as their JSON text), else `unknown`.
pub fn os_of(json: &Value) -> String {
    match json.get("info").and_then(|i| i.get("OS")) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "unknown".to_string(),
    }
}

/// Counts `info.OS` over uncompressed log text: lines split on the first tab, JSON
/// parsed with serde_json.
pub fn count_os_in_text(text: &[u8], counts: &mut BTreeMap<String, u64>) -> u64 {
    let mut records = 0;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let tab = line
            .iter()
            .position(|&b| b == b'\t')
            .expect("test data lines have a tab");
        let json: Value = serde_json::from_slice(&line[tab + 1..]).expect("test data is JSON");
        *counts.entry(os_of(&json)).or_default() += 1;
        records += 1;
    }
    records
}

/// OS counts over files, decompressed with the command-line tools.
pub fn count_os_in_files<'a>(
    paths: impl IntoIterator<Item = &'a Path>,
) -> (BTreeMap<String, u64>, u64) {
    let mut counts = BTreeMap::new();
    let mut records = 0;
    for path in paths {
        records += count_os_in_text(&decompress_with_tools(path), &mut counts);
    }
    (counts, records)
}

/// OS counts of in-memory records.
pub fn count_os_in_records<'a>(
    records: impl IntoIterator<Item = &'a Rec>,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in records {
        let json: Value = serde_json::from_slice(&r.json).unwrap();
        *counts.entry(os_of(&json)).or_default() += 1;
    }
    counts
}

/// The published `os-distribution.json` of an output folder.
pub fn published_counts(output: &Path) -> BTreeMap<String, u64> {
    let path = output.join("os-distribution.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{} is not an OS -> count object ({e}): {text}",
            path.display()
        )
    })
}

/// Fails if any published key starts with `LEAK` (a sandbox escape).
pub fn assert_no_leak(output: &Path) {
    let path = output.join("os-distribution.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).unwrap();
    let leaks: Vec<&String> = value
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| k.starts_with("LEAK"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the guest escaped the sandbox: {leaks:#?}"
    );
}
