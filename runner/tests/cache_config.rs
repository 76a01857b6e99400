//! The compiled-artifact cache and the config file, through the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The sealed artifacts in `<cache-dir>/artifacts/`.
fn artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

struct Samples {
    _dir: tempfile::TempDir,
    input: PathBuf,
    root: PathBuf,
    expected: std::collections::BTreeMap<String, u64>,
}

fn samples() -> Samples {
    let dir = tempdir();
    let input = dir.path().join("input");
    let laid = lay_out_samples(&input);
    let (expected, _) = count_os_in_files(laid.iter().map(|(_, p)| p.as_path()));
    Samples {
        root: dir.path().to_path_buf(),
        _dir: dir,
        input,
        expected,
    }
}

/// Runs `component` over the samples with its own cache dir; returns from_cache.
fn run_cached(s: &Samples, component: &Path, cache: &Path, n: usize) -> bool {
    let output = s.root.join(format!("out-{n}"));
    let cache = cache.to_str().unwrap();
    let r = run(component, &s.input, &output, &["--cache-dir", cache]);
    r.assert_code(0);
    assert_eq!(published_counts(&output), s.expected, "run {n}");
    r.summary.analysis.from_cache
}

#[test]
fn the_cache_is_used_and_never_trusts_altered_artifacts() {
    let s = samples();
    let cache = s.root.join("cache");
    let os = analysis("os-distribution");

    assert!(!run_cached(&s, &os, &cache, 1), "the first run compiles");
    assert!(
        run_cached(&s, &os, &cache, 2),
        "the second run loads from the cache"
    );
    let files = artifacts(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let slot = files[0].clone();
    let sha = sha_of(&os);
    assert!(
        slot.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&sha),
        "the artifact is keyed by the component's sha256: {slot:?}"
    );

    // Flipped bytes in the middle: refused, recompiled, and stored again.
    let mut bytes = std::fs::read(&slot).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xFF;
    }
    std::fs::write(&slot, &bytes).unwrap();
    assert!(
        !run_cached(&s, &os, &cache, 3),
        "a corrupt artifact is recompiled"
    );
    assert!(run_cached(&s, &os, &cache, 4), "and stored again");

    // Truncated to less than a seal.
    std::fs::write(&slot, b"short").unwrap();
    assert!(!run_cached(&s, &os, &cache, 5));

    // Another component's genuine, sealed artifact moved into this slot: refused (had it
    // been loaded, hostile-panic would trap on every record and the run would fail).
    let hostile = analysis("hostile-panic");
    let hostile_out = s.root.join("out-hostile");
    let r = run(
        &hostile,
        &s.input,
        &hostile_out,
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--max-bad-records",
            "100",
        ],
    );
    assert_eq!(r.summary.records_quarantined, 5, "{}", r.out);
    let hostile_slot = artifacts(&cache)
        .into_iter()
        .find(|p| p != &slot)
        .expect("hostile-panic's artifact");
    std::fs::copy(&hostile_slot, &slot).unwrap();
    assert!(
        !run_cached(&s, &os, &cache, 6),
        "a foreign artifact is recompiled"
    );
    assert!(run_cached(&s, &os, &cache, 7));

    // An artifact sealed under another key (the cache key replaced): refused.
    std::fs::write(cache.join("artifacts/cache-key"), [7u8; 32]).unwrap();
    assert!(!run_cached(&s, &os, &cache, 8));
    assert!(run_cached(&s, &os, &cache, 9));
}

fn sha_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

// ---------------------------------------------------------------------------------------
// Config file
// ---------------------------------------------------------------------------------------

fn run_with_config(s: &Samples, config_text: &str, extra: &[&str], n: usize) -> Run {
    let config = s.root.join(format!("config-{n}.toml"));
    std::fs::write(&config, config_text).unwrap();
    let output = s.root.join(format!("out-config-{n}"));
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&analysis("os-distribution"), &s.input, &output, &args)
}

#[test]
fn config_limits_apply_and_flags_override_them() {
    let s = samples();
    let tiny = "[limits]\nfuel_per_call = 1000\n";
    let r = run_with_config(&s, tiny, &[], 1);
    r.assert_code(1);
    assert_eq!(r.summary.status, "failed");
    // Either the instances cannot even start (tasks fail) or every record runs out of
    // fuel (all quarantined, nothing published): both are failures, both out of fuel.
    assert!(
        r.summary.tasks_failed > 0
            || r.summary
                .publish_error
                .as_deref()
                .is_some_and(|e| e.contains("quarantined")),
        "{}",
        r.out
    );
    let kinds: Vec<String> = r
        .summary
        .task_failures
        .iter()
        .filter_map(|f| f.failure.as_ref())
        .chain(r.summary.quarantined.iter().map(|q| &q.failure))
        .map(|f| f["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "out-of-fuel"),
        "every failure is out of fuel: {kinds:?}\n{}",
        r.out
    );
    assert!(
        r.summary
            .task_failures
            .iter()
            .all(|f| f.reason.contains("out of fuel")),
        "{:#?}",
        r.summary.task_failures
    );

    let r = run_with_config(&s, tiny, &["--fuel-per-call", "20000000000"], 2);
    r.assert_code(0);
    assert_eq!(published_counts(&s.root.join("out-config-2")), s.expected);

    // The [run] table applies too.
    let r = run_with_config(&s, "[run]\njobs = 1\nbatch_records = 1\n", &[], 3);
    r.assert_code(0);
    assert_eq!(published_counts(&s.root.join("out-config-3")), s.expected);
}

#[test]
fn a_typo_in_the_config_is_an_error_naming_the_key() {
    let s = samples();
    for (n, (text, key)) in [
        ("[limits]\nfuel_per_cal = 5\n", "fuel_per_cal"),
        ("[run]\njbos = 2\n", "jbos"),
        ("[limit]\nfuel_per_call = 5\n", "limit"),
    ]
    .into_iter()
    .enumerate()
    {
        let config = s.root.join(format!("typo-{n}.toml"));
        std::fs::write(&config, text).unwrap();
        let out = spotmill([
            "run".as_ref(),
            "--analysis".as_ref(),
            analysis("os-distribution").as_os_str(),
            "--input".as_ref(),
            s.input.as_os_str(),
            "--output".as_ref(),
            s.root.join("out-typo").as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--json".as_ref(),
            "--no-cache".as_ref(),
        ]);
        out.assert_no_runner_panic();
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            out.stderr.contains(&format!("`{key}`")) && out.stderr.contains("config"),
            "the error should name the key `{key}` and the config file:\n{out}"
        );
    }
}
