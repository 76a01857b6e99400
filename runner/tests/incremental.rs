//! A later run into the same output merges into it: only new inputs are read, nothing is
//! counted twice, and the published files equal those of one run over everything.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{analysis, files_under, run, spotmill, tempdir};

/// Every published file (the run history under `.spotmill/` aside), by relative path.
fn published(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|(key, _)| !key.starts_with(".spotmill/"))
        .map(|(key, path)| (key, std::fs::read(path).unwrap()))
        .collect()
}

fn copy_tree(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) {
    for (key, path) in files_under(from) {
        if keep(&key) {
            let target = to.join(&key);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(path, target).unwrap();
        }
    }
}

#[test]
fn two_runs_into_one_output_equal_one_run_over_everything() {
    let dir = tempdir();
    let all = dir.path().join("all");
    let gen = spotmill([
        "gen",
        "--out",
        all.to_str().unwrap(),
        "--submissions",
        "120",
        "--seed",
        "21",
    ]);
    assert_eq!(gen.code, Some(0), "{}", gen.stderr);
    let dashboard = analysis("dashboard");

    // The first run sees the release channel only; the second sees everything.
    let partial = dir.path().join("partial");
    copy_tree(&all, &partial, |key| {
        key.split('/').nth(2) == Some("release")
    });
    let merged = dir.path().join("merged");
    let first = run(&dashboard, &partial, &merged, &[]);
    assert_eq!(first.out.code, Some(0), "{}", first.out.stderr);
    let first_versions = std::fs::read_to_string(merged.join("versions.json")).unwrap();
    let second = run(&dashboard, &all, &merged, &[]);
    assert_eq!(second.out.code, Some(0), "{}", second.out.stderr);
    let release_files = files_under(&partial).len() as u64;
    assert_eq!(
        second.summary.inputs_counted_before, release_files,
        "the first run's inputs are not read again"
    );
    assert_eq!(
        second.summary.input_files,
        files_under(&all).len() as u64 - release_files
    );

    let once = dir.path().join("once");
    let single = run(&dashboard, &all, &once, &[]);
    assert_eq!(single.out.code, Some(0), "{}", single.out.stderr);

    // The merged output holds everything the single run published, byte for byte; its
    // extra files are the first run's folders, which the pointer no longer names.
    let merged_files = published(&merged);
    let once_files = published(&once);
    for (path, bytes) in &once_files {
        assert_eq!(
            merged_files.get(path),
            Some(bytes),
            "{path} differs from a single run's"
        );
    }
    assert_ne!(
        first_versions,
        std::fs::read_to_string(merged.join("versions.json")).unwrap()
    );

    // A third run finds nothing new and changes nothing.
    let third = spotmill([
        "run",
        "--analysis",
        dashboard.to_str().unwrap(),
        "--input",
        all.to_str().unwrap(),
        "--output",
        merged.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    assert!(
        third.stdout.contains("no new input files"),
        "{}",
        third.stdout
    );
    assert_eq!(published(&merged), merged_files);

    // Retention removes exactly the files no later run published: the merged output then
    // equals the single run's.
    let prune = spotmill([
        "prune",
        "--dir",
        merged.to_str().unwrap(),
        "--keep-runs",
        "1",
    ]);
    assert_eq!(prune.code, Some(0), "{}", prune.stderr);
    assert_eq!(published(&merged), once_files);
}

#[test]
fn another_analysis_is_not_merged_into_an_output() {
    let dir = tempdir();
    let input = dir.path().join("in");
    common::lay_out_samples(&input);
    let out = dir.path().join("out");
    let first = run(&analysis("os-distribution"), &input, &out, &[]);
    assert_eq!(first.out.code, Some(0), "{}", first.out.stderr);
    let other = spotmill([
        "run",
        "--analysis",
        analysis("dashboard").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(other.code, Some(1));
    assert!(
        other.stderr.contains("another analysis"),
        "{}",
        other.stderr
    );
    let fresh = run(&analysis("dashboard"), &input, &out, &["--fresh"]);
    assert_eq!(fresh.out.code, Some(0), "{}", fresh.out.stderr);
}
