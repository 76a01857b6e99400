//! `spotmill validate`: the good components pass, every hostile one fails with the check
//! and the reason its misbehaviour deserves.

mod common;

use std::path::Path;

use common::{analyses_dir, analysis, shared_cache_dir, spotmill, tempdir};
use serde_json::Value;

/// Runs `spotmill validate --json` and returns its exit code and report.
fn validate(component: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let cache = shared_cache_dir();
    let mut args: Vec<String> = vec![
        "validate".into(),
        component.display().to_string(),
        "--json".into(),
        "--records".into(),
        "20".into(),
        "--cache-dir".into(),
        cache.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = spotmill(&args);
    out.assert_no_runner_panic();
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate printed no JSON report ({e}): {}\n{}",
            out.stdout, out.stderr
        )
    });
    (out.code, report)
}

fn failed_checks(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["passed"] == Value::Bool(false))
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_valid(component: &Path) {
    let (code, report) = validate(component, &[]);
    assert!(
        failed_checks(&report).is_empty(),
        "{}: {:?}",
        component.display(),
        failed_checks(&report)
    );
    assert_eq!(code, Some(0));
    assert_eq!(report["passed"], Value::Bool(true));
    assert!(report["records"].as_u64().unwrap() >= 20);
    assert!(report["fuel_per_record"]["p50"].as_u64().unwrap() > 0);
    assert!(report["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(report["cpu_seconds_per_gb"].as_f64().unwrap() > 0.0);
}

/// A hostile component fails validation, and the named check says why.
fn assert_fails(feature: &str, extra: &[&str], check: &str, reasons: &[&str]) {
    let (code, report) = validate(&analysis(&format!("hostile-{feature}")), extra);
    assert_eq!(code, Some(1), "{feature}: exit code");
    assert_eq!(report["passed"], Value::Bool(false));
    let failed = failed_checks(&report);
    let detail = failed
        .iter()
        .find(|(name, _)| name == check)
        .map(|(_, detail)| detail.to_lowercase())
        .unwrap_or_else(|| panic!("{feature}: check {check:?} did not fail; failed: {failed:?}"));
    assert!(
        reasons.iter().any(|r| detail.contains(r)),
        "{feature}: {check} says {detail:?}, expected one of {reasons:?}"
    );
}

const QUICK: &[&str] = &["--fuel-per-call", "300000000", "--memory-mb", "64"];

#[test]
fn the_rust_analyses_are_valid() {
    assert_valid(&analysis("os-distribution"));
}

#[test]
fn every_language_example_is_valid() {
    let dir = analyses_dir();
    let mut missing = Vec::new();
    for (language, script) in [
        ("python", "python"),
        ("javascript", "javascript"),
        ("c", "c"),
    ] {
        let path = dir.join(format!("os-distribution-{language}.wasm"));
        if path.is_file() {
            assert_valid(&path);
        } else {
            missing.push(format!(
                "{} (bash scripts/build-guests-{script}.sh {})",
                path.display(),
                dir.display()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "components missing: {}",
        missing.join("; ")
    );
}

#[test]
fn hostile_guests_fail_for_their_reason() {
    assert_fails("infinite-loop", QUICK, "map", &["out of fuel"]);
    assert_fails("memory-hog", QUICK, "map", &["memory cap"]);
    assert_fails("deep-recursion", QUICK, "map", &["stack overflow"]);
    assert_fails("panic", QUICK, "map", &["trap"]);
    assert_fails(
        "emit-flood",
        &["--memory-mb", "64"],
        "map",
        &["memory cap", "output cap"],
    );
    assert_fails("huge-flush", &[], "flush", &["output cap"]);
    assert_fails("log-flood", &[], "logs", &["past the"]);
    assert_fails("open-file", &[], "records accepted", &["/etc/passwd"]);
    assert_fails(
        "open-socket",
        &[],
        "records accepted",
        &["connect", "permission", "denied"],
    );
    assert_fails("read-env", &[], "environment", &["environment variables"]);
    assert_fails("trap-in-merge", &[], "merge", &["trap"]);
}

#[test]
fn a_core_module_or_garbage_is_not_a_component() {
    let dir = tempdir();
    for (name, bytes) in [
        ("core.wasm", b"\0asm\x01\0\0\0".to_vec()),
        ("junk.wasm", b"not wasm at all".to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, report) = validate(&path, &[]);
        assert_eq!(code, Some(1));
        let failed = failed_checks(&report);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, "component");
    }
}
