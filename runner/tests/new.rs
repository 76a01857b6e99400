//! `spotmill new`: for each language, a new project in a temporary folder builds with its
//! own build.sh and the component passes `spotmill validate`.
//!
//! The Python, JavaScript and C toolchains are the ones scripts/build-guests-<language>.sh
//! install under `${SPOTMILL_TOOLS_DIR:-~/.cache/spotmill/tools}`; this test installs
//! nothing (build.sh runs with SPOTMILL_NO_INSTALL=1) and fails, naming the script, when a
//! toolchain is missing. Rust builds into `$SPOTMILL_WASM_TARGET_DIR` (default: a folder
//! under CARGO_TARGET_TMPDIR, kept between runs).
//!
//! Timing: the interpreter components (Python, JavaScript) are not byte-reproducible, so
//! each run builds new ones, and `spotmill validate` compiles each once (15-50 s, on a
//! shared --cache-dir under CARGO_TARGET_TMPDIR); C and a warm Rust build take seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use spotmill::new::{render, Language, Sources};

fn spotmill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spotmill"))
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn tmpdir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// `spotmill new`, build.sh, `spotmill validate` for one language.
fn new_builds_and_validates(language: Language, name: &str) {
    let parent = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    let output = spotmill()
        .args(["new", "--lang", language.as_str(), name, "--dir"])
        .arg(parent.path())
        .output()
        .expect("run spotmill new");
    assert!(output.status.success(), "spotmill new: {}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = parent.path().join(name);
    for step in ["build.sh", " validate ", " run --analysis "] {
        assert!(stdout.contains(step), "next steps lack `{step}`:\n{stdout}");
    }

    let mut build = Command::new("bash");
    build
        .arg(dir.join("build.sh"))
        .env("SPOTMILL_NO_INSTALL", "1");
    if language == Language::Rust {
        let target = std::env::var_os("SPOTMILL_WASM_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| tmpdir().join("new-wasm-target"));
        build.env("CARGO_TARGET_DIR", target);
    }
    let output = build.output().expect("run bash build.sh");
    assert!(
        output.status.success(),
        "{language}: build.sh failed{}: {}",
        match language {
            Language::Rust => String::new(),
            _ => format!(
                " (its toolchain is installed by `bash {}`; this test installs nothing)",
                language.tools_script()
            ),
        },
        text(&output)
    );
    let built = start.elapsed();
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{language}: build.sh wrote no {}",
        wasm.display()
    );

    let output = spotmill()
        .arg("validate")
        .arg(&wasm)
        .arg("--cache-dir")
        .arg(tmpdir().join("new-cache"))
        .output()
        .expect("run spotmill validate");
    assert!(
        output.status.success(),
        "{language}: spotmill validate failed: {}",
        text(&output)
    );
    eprintln!(
        "{language}: new + build {:.1} s, validate {:.1} s",
        built.as_secs_f64(),
        (start.elapsed() - built).as_secs_f64()
    );
}

#[test]
fn rust() {
    new_builds_and_validates(Language::Rust, "crash-count");
}

#[test]
fn python() {
    new_builds_and_validates(Language::Python, "crash-count");
}

#[test]
fn javascript() {
    new_builds_and_validates(Language::JavaScript, "crash-count");
}

#[test]
fn c() {
    new_builds_and_validates(Language::C, "crash-count");
}

#[test]
fn refuses_a_non_empty_folder_and_bad_names() {
    let parent = tempfile::tempdir().expect("temp dir");
    let existing = parent.path().join("taken");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("notes.txt"), "mine").unwrap();
    let output = spotmill()
        .args(["new", "--lang", "c", "taken", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("not empty"), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(existing.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 1);

    // An empty folder is fine.
    std::fs::create_dir(parent.path().join("empty")).unwrap();
    let output = spotmill()
        .args(["new", "--lang", "python", "empty", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));

    for (lang, name) in [
        ("rust", "Bad"),
        ("c", "../escape"),
        ("rust", "fn"),
        ("python", "json"),
    ] {
        let output = spotmill()
            .args(["new", "--lang", lang, name, "--dir"])
            .arg(parent.path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{lang} {name}: {}", text(&output));
    }
    let output = spotmill()
        .args(["new", "--lang", "c", "x", "--sdk", "/tmp", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "--sdk with c: {}", text(&output));
    assert!(!parent.path().join("x").exists());
}

/// Every language renders from the embedded examples, with the name everywhere and no
/// placeholder left.
#[test]
fn renders_every_language() {
    let sources = Sources::new(None, None).expect("this repository's SDK and WIT");
    assert!(Path::new(&sources.sdk).join("src/lib.rs").is_file());
    for language in Language::ALL {
        let files = render(language, "my-stats", &sources).expect("render");
        let build = files
            .iter()
            .find(|f| f.path == "build.sh")
            .expect("build.sh");
        assert!(build.executable);
        assert!(
            build.contents.contains("my-stats.wasm") || build.contents.contains("name=my-stats")
        );
        for file in &files {
            assert!(
                !has_placeholder(&file.contents),
                "{language}: {} keeps a placeholder",
                file.path
            );
            // The SDK files are verbatim copies (their comments may name the example).
            assert!(
                file.path.starts_with("spotmill.")
                    || !file.contents.contains("os-distribution.json"),
                "{language}: {} still publishes os-distribution.json",
                file.path
            );
        }
        let readme = files.iter().find(|f| f.path == "README.md").unwrap();
        for needle in [
            "bash build.sh",
            "spotmill validate my-stats.wasm",
            "spotmill run",
        ] {
            assert!(
                readme.contents.contains(needle),
                "{language}: README lacks {needle}"
            );
        }
    }
    let rust = render(Language::Rust, "my-stats", &sources).unwrap();
    let manifest = &rust
        .iter()
        .find(|f| f.path == "Cargo.toml")
        .unwrap()
        .contents;
    let parsed: toml::Table = toml::from_str(manifest).expect("Cargo.toml is TOML");
    assert_eq!(parsed["package"]["name"].as_str(), Some("my-stats"));
    assert!(parsed["workspace"].as_table().is_some_and(|t| t.is_empty()));
    assert_eq!(parsed["profile"]["release"]["lto"].as_bool(), Some(true));
    assert_eq!(
        parsed["dependencies"]["spotmill-guest"]["path"].as_str(),
        sources.sdk.to_str()
    );
    let lib = &rust
        .iter()
        .find(|f| f.path == "src/lib.rs")
        .unwrap()
        .contents;
    assert!(lib.contains("export_analysis!(MyStats)"), "{lib}");
    let python = render(Language::Python, "my-stats", &sources).unwrap();
    let module = &python
        .iter()
        .find(|f| f.path == "my_stats.py")
        .unwrap()
        .contents;
    assert!(
        module.contains("class MyStats(spotmill.Analysis)"),
        "{module}"
    );
}

fn has_placeholder(text: &str) -> bool {
    [
        "@NAME@",
        "@MODULE@",
        "@LIB@",
        "@TYPE@",
        "@REPO@",
        "@REPO_SH@",
        "@SDK@",
        "@WIT@",
        "@WIT_SH@",
    ]
    .iter()
    .any(|p| text.contains(p))
}
