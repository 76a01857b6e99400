//! The os-distribution analysis written in other languages (guest-sdk/python,
//! guest-sdk/javascript, guest-sdk/c) gives exactly the Rust one's result: the same
//! published bytes, the same record counts and the same quarantined records, on the real
//! samples, on a generated tree, and on hand-made records with the awkward cases (missing,
//! null, empty, numeric and boolean OS; escapes; non-JSON and malformed submissions).
//!
//! Builds nothing: the components come from `$SPOTMILL_ANALYSES_DIR` (default
//! `${CARGO_TARGET_DIR:-target}/analyses`, where the build scripts write), made by
//! scripts/build-analyses.sh (Rust) and scripts/build-guests-<language>.sh. A missing
//! component fails the test with the command that builds it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spotmill::gen::{write_log_file, ContainerChoice};

/// (language, component file, the script that builds it).
const LANGUAGES: &[(&str, &str, &str)] = &[
    (
        "python",
        "os-distribution-python.wasm",
        "scripts/build-guests-python.sh",
    ),
    (
        "javascript",
        "os-distribution-javascript.wasm",
        "scripts/build-guests-javascript.sh",
    ),
    ("c", "os-distribution-c.wasm", "scripts/build-guests-c.sh"),
];

const RUST: (&str, &str, &str) = ("rust", "os-distribution.wasm", "scripts/build-analyses.sh");

/// A cold compile of an interpreter guest takes 20-50 s; a run is far shorter.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_path_buf()
}

fn analyses_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPOTMILL_ANALYSES_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("analyses")
}

/// The component of a language, or a failure saying how to build it.
fn component((language, file, script): (&str, &str, &str)) -> PathBuf {
    let dir = analyses_dir();
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "the {language} component {} is missing: build it with `bash {script} {}` \
         (this test builds nothing; SPOTMILL_ANALYSES_DIR names the folder it reads)",
        path.display(),
        dir.display(),
    );
    path
}

/// What a run gives: its summary and its published files.
struct Outcome {
    summary: Value,
    files: BTreeMap<String, Vec<u8>>,
}

impl Outcome {
    fn u64(&self, field: &str) -> u64 {
        self.summary[field]
            .as_u64()
            .unwrap_or_else(|| panic!("summary has no `{field}`: {}", self.summary))
    }

    /// (file, line) of every quarantined record, sorted.
    fn quarantined(&self) -> Vec<(String, u64)> {
        let mut q: Vec<(String, u64)> = self.summary["quarantined"]
            .as_array()
            .expect("summary has `quarantined`")
            .iter()
            .map(|q| {
                (
                    q["file"].as_str().unwrap_or_default().to_owned(),
                    q["line"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        q.sort();
        q
    }
}

/// `spotmill run` of `analysis` over `input` into `work/<language>`.
fn run(language: &str, analysis: &Path, input: &Path, work: &Path) -> Outcome {
    let output = work.join(format!("out-{language}"));
    let stdout_path = work.join(format!("{language}.stdout"));
    let stderr_path = work.join(format!("{language}.stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_spotmill"))
        .arg("run")
        .arg("--analysis")
        .arg(analysis)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&output)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"))
        .spawn()
        .expect("start spotmill");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for spotmill") {
            break status;
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{language}: spotmill run took over {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "{language}: spotmill run failed ({status}):\n{stdout}\n{stderr}"
    );
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{language}: --json output is not JSON ({e}):\n{stdout}"));
    assert_eq!(
        summary["status"], "ok",
        "{language}: the run did not succeed:\n{summary:#}\n{stderr}"
    );
    let mut files = BTreeMap::new();
    for name in summary["output_files"].as_array().expect("output_files") {
        let name = name.as_str().expect("a file name");
        let bytes = std::fs::read(output.join(name))
            .unwrap_or_else(|e| panic!("{language}: cannot read published {name}: {e}"));
        files.insert(name.to_owned(), bytes);
    }
    Outcome { summary, files }
}

/// Runs the Rust component and every other language over `input`; each must give the
/// Rust result. Returns the Rust outcome for the caller's own checks.
fn assert_all_languages_agree(input: &Path) -> Outcome {
    // Fail early, naming every missing component at once.
    let missing: Vec<String> = std::iter::once(RUST)
        .chain(LANGUAGES.iter().copied())
        .filter(|(_, file, _)| !analyses_dir().join(file).is_file())
        .map(|(language, file, script)| {
            format!(
                "  {language}: {file} (build it with `bash {script} {}`)",
                analyses_dir().display()
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "components missing from {} (SPOTMILL_ANALYSES_DIR; this test builds nothing):\n{}",
        analyses_dir().display(),
        missing.join("\n")
    );

    let work = tempfile::tempdir().expect("temp dir");
    let rust = run("rust", &component(RUST), input, work.path());
    assert!(!rust.files.is_empty(), "the Rust run published nothing");
    let mut failures = Vec::new();
    for &lang in LANGUAGES {
        let language = lang.0;
        let other = run(language, &component(lang), input, work.path());
        for field in ["records", "records_mapped", "records_quarantined"] {
            if other.u64(field) != rust.u64(field) {
                failures.push(format!(
                    "{language}: {field} = {}, rust: {}",
                    other.u64(field),
                    rust.u64(field)
                ));
            }
        }
        if other.quarantined() != rust.quarantined() {
            failures.push(format!(
                "{language}: quarantined {:?}, rust: {:?}",
                other.quarantined(),
                rust.quarantined()
            ));
        }
        if other.files.keys().ne(rust.files.keys()) {
            failures.push(format!(
                "{language}: published {:?}, rust: {:?}",
                other.files.keys().collect::<Vec<_>>(),
                rust.files.keys().collect::<Vec<_>>()
            ));
        }
        for (name, bytes) in &rust.files {
            if let Some(theirs) = other.files.get(name) {
                if theirs != bytes {
                    failures.push(format!(
                        "{language}: {name} differs from rust's\n--- rust\n{}\n--- {language}\n{}",
                        String::from_utf8_lossy(bytes),
                        String::from_utf8_lossy(theirs)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    rust
}

fn published_counts(outcome: &Outcome) -> BTreeMap<String, u64> {
    let bytes = &outcome.files["os-distribution.json"];
    serde_json::from_slice(bytes).expect("os-distribution.json is a JSON object of counts")
}

#[test]
fn every_language_matches_rust_on_the_real_samples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("input");
    let data = repo_root().join("runner/tests/data");
    let list = std::fs::read_to_string(data.join("input.txt")).expect("read input.txt");
    let mut files = 0;
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (key, source) = line.split_once('\t').expect("`<key>\\t<file>` lines");
        let name = Path::new(source).file_name().expect("a file name");
        let path = input.join(key);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(data.join(name), &path).expect("copy a sample");
        files += 1;
    }
    assert!(files > 0);
    let rust = assert_all_languages_agree(&input);
    assert!(rust.u64("records_mapped") > 0);
}

#[test]
fn every_language_matches_rust_on_a_generated_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("input");
    let status = Command::new(env!("CARGO_BIN_EXE_spotmill"))
        .arg("gen")
        .arg("--out")
        .arg(&input)
        .args(["--submissions", "300", "--seed", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run spotmill gen");
    assert!(status.success(), "spotmill gen failed: {status}");
    let rust = assert_all_languages_agree(&input);
    assert_eq!(rust.u64("records_mapped"), 300);
    assert!(
        published_counts(&rust).len() > 1,
        "the generated tree should have several OSes"
    );
}

/// Submissions whose handling is easy to get subtly different across JSON libraries.
/// The expected counts are the Rust SDK's reading (`telemetry::parse`).
const AWKWARD: &[&[u8]] = &[
    br#"{"info":{"OS":"WINNT"}}"#,
    br#"{"info":{"OS":"Linux","version":"6.1"},"ver":2}"#,
    b" \t{\"info\":{\"OS\":\"Darwin\"}}\r ",
    br#"{"info":{}}"#,
    br#"{}"#,
    br#"{"info":null}"#,
    br#"{"info":{"OS":null}}"#,
    br#"{"info":{"OS":""}}"#,
    br#"{"info":{"OS":42}}"#,
    br#"{"info":{"OS":1.5}}"#,
    br#"{"info":{"OS":1E2}}"#,
    br#"{"info":{"OS":1e21}}"#,
    br#"{"info":{"OS":0.1}}"#,
    br#"{"info":{"OS":1e-7}}"#,
    br#"{"info":{"OS":true}}"#,
    br#"{"info":{"OS":false}}"#,
    br#"{"info":{"OS":"L\u00ednux \ud83d\ude00"}}"#,
    "{\"info\":{\"OS\":\"Línux 😀\"}}".as_bytes(),
    br#"{"info":{"OS":"quo\"te\\ \n\t\u0001\/"}}"#,
    br#"{"info":{"OS":"__proto__"}}"#,
    br#"{"info":{"OS":"constructor"}}"#,
    br#"{"info":{"OS":"10"}}"#,
    br#"{"info":{"OS":"9"}}"#,
    br#"{"info":{"OS":"A"}}"#,
    br#"{"info":{"OS":"WINNT","OS":"Linux"}}"#,
    br#"{"info":{"OS":"WINNT","extra":{"deep":[1,2,{"x":null}]}},"histograms":{"A":[1,2,3]}}"#,
    br#"{"info":{"OS":"WINNT","locale":7,"cpucount":{}}}"#,
    br#"{"x":"\ud800","info":{"OS":"lone surrogate outside info is fine"}}"#,
    // Record errors.
    b"not json",
    b"[1,2]",
    br#""a string""#,
    br#"{"info":5}"#,
    br#"{"info":[1]}"#,
    br#"{"info":"x"}"#,
    br#"{"info":{"OS":{}}}"#,
    br#"{"info":{"OS":[]}}"#,
    br#"{"info":{"version":[1]}}"#,
    br#"{"info":{"OS":"a"}} trailing"#,
    br#"{"info":{"OS":"a"},}"#,
    br#"{"info":{"OS":NaN}}"#,
    br#"{"info":{"OS":"\ud800"}}"#,
    b"{\"info\":{\"OS\":\"a\x01b\"}}",
    b"{\"info\":{\"OS\":\"\xff\"}}",
    br#"{"info":{"OS":"a"}"#,
    b"",
    br#"{"info":{"OS":1e400}}"#,
];

#[test]
fn every_language_matches_rust_on_awkward_submissions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("input");
    let key = "saved_session/Firefox/nightly/28.0a1/\
               20131029030201.20131029.v2.log.0123456789abcdef0123456789abcdef.lzma";
    let path = input.join(key);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    let mut lines: Vec<(String, Vec<u8>)> = AWKWARD
        .iter()
        .enumerate()
        .map(|(i, json)| {
            (
                format!("{i:08x}-0000-4000-8000-000000000000"),
                json.to_vec(),
            )
        })
        .collect();
    // Deep nesting where the SDKs skip values: serde_json has no limit there.
    for depth in [127, 128, 600] {
        let mut json = br#"{"info":{"OS":"nested"},"histograms":"#.to_vec();
        json.extend(std::iter::repeat_n(b'[', depth));
        json.extend(std::iter::repeat_n(b']', depth));
        json.push(b'}');
        lines.push((format!("deep-{depth}"), json));
    }
    write_log_file(&path, ContainerChoice::Lzma, &lines).expect("write the log");

    let rust = assert_all_languages_agree(&input);
    // The Rust reading, spelled out: a guard against all four being wrong the same way.
    assert_eq!(rust.u64("records"), lines.len() as u64);
    assert_eq!(rust.u64("records_quarantined"), 18, "{:#}", rust.summary);
    let counts = published_counts(&rust);
    assert_eq!(counts["unknown"], 5);
    assert_eq!(counts["WINNT"], 3);
    assert_eq!(counts["Linux"], 2);
    assert_eq!(counts["nested"], 3);
    assert_eq!(counts["1000000000000000000000"], 1);
    assert_eq!(counts["0.0000001"], 1);
    assert_eq!(counts["100"], 1);
    assert_eq!(counts["true"], 1);
    assert_eq!(counts["Línux 😀"], 2);
    assert_eq!(counts["__proto__"], 1);
}
