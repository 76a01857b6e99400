//! The hostile guests (analyses/hostile, one component per misbehaviour) through the real
//! binary: each violation is caught, typed and attributed; a bad record is quarantined
//! exactly once and nothing else is lost or counted twice.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;

/// A small tree: `files` files of `per_file` good records each, `.lzma` and `.xz` in turn.
/// File `i` has key `simple_key(i)` and records `f<i>-0000`...; with `--jobs 2` each file
/// is a task of its own (the planner aims at 8 tasks), task `t00000<i>` for file `i`.
struct Tree {
    _dir: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
    keys: Vec<String>,
    records: Vec<Vec<Rec>>,
}

impl Tree {
    fn new(files: usize, per_file: usize) -> Tree {
        let dir = tempdir();
        let input = dir.path().join("input");
        let output = dir.path().join("output");
        let mut keys = Vec::new();
        let mut records = Vec::new();
        for i in 0..files {
            let (ext, container) = if i % 2 == 0 {
                ("lzma", ContainerChoice::Lzma)
            } else {
                ("xz", ContainerChoice::Xz)
            };
            let key = simple_key(i, ext);
            let recs = good_records(&format!("f{i}"), per_file);
            write_log(&input, &key, container, &recs);
            keys.push(key);
            records.push(recs);
        }
        Tree {
            _dir: dir,
            input,
            output,
            keys,
            records,
        }
    }

    fn expected_counts(&self) -> BTreeMap<String, u64> {
        count_os_in_records(self.records.iter().flatten())
    }

    fn total(&self) -> u64 {
        self.records.iter().map(|r| r.len() as u64).sum()
    }

    fn run(&self, analysis_name: &str, extra: &[&str]) -> Run {
        run(&analysis(analysis_name), &self.input, &self.output, extra)
    }
}

fn args<'a>(limits: &'a [&'a str], more: &'a [&'a str]) -> Vec<&'a str> {
    limits.iter().chain(more).copied().collect()
}

/// Runs a hostile guest that misbehaves on every record over 4 files in 4 tasks with a
/// budget of 2 bad records: every task must be attempted and fail with its first bad
/// records attributed (task, file, id, line) and typed as one of `kinds`.
fn every_task_fails(feature: &str, limits: &[&str], kinds: &[&str]) -> Run {
    let tree = Tree::new(4, 4);
    let run = tree.run(
        &format!("hostile-{feature}"),
        &args(limits, &["--jobs", "2", "--max-bad-records", "2"]),
    );
    let s = &run.summary;
    run.assert_code(1);
    assert_eq!(s.status, "failed", "{}", run.out);
    assert_eq!(s.tasks, 4, "one task per file\n{}", run.out);
    assert_eq!(
        s.tasks_failed, 4,
        "every task was attempted and failed\n{}",
        run.out
    );
    assert!(s.output_files.is_empty() && s.output_dir.is_none());
    assert!(
        !tree.output.join("os-distribution.json").exists(),
        "nothing may be published after a failed task"
    );
    for (i, key) in tree.keys.iter().enumerate() {
        let task = format!("t{i:06}");
        let failure = s
            .task_failures
            .iter()
            .find(|f| f.task == task)
            .unwrap_or_else(|| panic!("task {task} is not among the failures\n{}", run.out));
        assert_eq!(failure.files, vec![key.clone()]);
        assert!(
            failure.reason.contains("--max-bad-records")
                && kinds.iter().any(|k| failure.reason.contains(k)),
            "task {task}: the reason should name the budget and one of {kinds:?}: {}",
            failure.reason
        );
        assert!(
            run.out.stderr.contains(&format!("task {task} failed")),
            "task {task}'s failure is reported on stderr\n{}",
            run.out
        );
        // Budget 2: the third bad record fails the task; they are lines 1, 2, 3.
        let bad: Vec<&Quarantine> = s.quarantined.iter().filter(|q| q.task == task).collect();
        assert_eq!(bad.len(), 3, "task {task}: {bad:#?}");
        for (n, q) in bad.iter().enumerate() {
            assert_eq!(q.file, *key, "{q:#?}");
            assert_eq!(q.line, n as u64 + 1, "{q:#?}");
            assert_eq!(q.record_id, tree.records[i][n].id, "{q:#?}");
            assert!(
                kinds.contains(&q.kind()),
                "task {task}: failure {} is not one of {kinds:?}",
                q.failure
            );
        }
    }
    assert_eq!(s.records_quarantined, 12);
    run
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let run = every_task_fails("infinite-loop", SMALL_LIMITS, &["out-of-fuel"]);
    for q in &run.summary.quarantined {
        assert_eq!(q.failure["limit"], 200_000_000u64, "{}", q.failure);
        assert_eq!(q.failure["task_budget"], false, "{}", q.failure);
    }
}

#[test]
fn memory_hog_hits_the_memory_cap() {
    let run = every_task_fails("memory-hog", SMALL_LIMITS, &["memory-cap"]);
    for q in &run.summary.quarantined {
        assert_eq!(q.failure["limit"], 64u64 << 20, "{}", q.failure);
        assert!(q.failure["requested"].as_u64().unwrap() > 64 << 20);
    }
}

#[test]
fn deep_recursion_traps() {
    every_task_fails("deep-recursion", SMALL_LIMITS, &["trap"]);
}

#[test]
fn deep_recursion_says_stack_overflow() {
    let run = every_task_fails("deep-recursion", SMALL_LIMITS, &["trap"]);
    for q in &run.summary.quarantined {
        let message = q.failure["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains("stack"),
            "a stack overflow should say so: {message:?}"
        );
    }
}

#[test]
fn panic_traps_with_the_guest_message_in_the_log() {
    let run = every_task_fails("panic", SMALL_LIMITS, &["trap"]);
    for q in &run.summary.quarantined {
        let log = q.log.as_deref().unwrap_or_default();
        let expected = format!("deliberate panic on submission {:?}", q.record_id);
        assert!(
            log.contains(&expected),
            "guest log {log:?} lacks {expected:?}"
        );
    }
}

#[test]
fn emit_flood_hits_a_cap() {
    // Building the messages byte by byte takes fuel: more of it, and less memory to fill.
    let limits = [
        "--fuel-per-call",
        "2000000000",
        "--call-deadline-ms",
        "10000",
        "--memory-mb",
        "16",
        "--max-output-mb",
        "4",
    ];
    every_task_fails("emit-flood", &limits, &["output-cap", "memory-cap"]);
}

#[test]
fn huge_flush_hits_the_output_cap() {
    // Enough memory for the 100 MiB partial and the guest's copies of it (about 300 MiB
    // in all), so that the output cap is what stops it.
    let limits = [
        "--fuel-per-call",
        "2000000000",
        "--call-deadline-ms",
        "10000",
        "--memory-mb",
        "512",
        "--max-output-mb",
        "8",
    ];
    let run = every_task_fails("huge-flush", &limits, &["output-cap"]);
    for q in &run.summary.quarantined {
        // `bytes` is null when the host stopped the copy before its end.
        let bytes = &q.failure["bytes"];
        assert!(bytes.is_null() || *bytes == 100u64 << 20, "{}", q.failure);
        assert_eq!(q.failure["limit"], 8u64 << 20, "{}", q.failure);
    }
}

#[test]
fn trap_in_merge_fails_the_publish() {
    let tree = Tree::new(4, 4);
    let run = tree.run(
        "hostile-trap-in-merge",
        &args(SMALL_LIMITS, &["--jobs", "2"]),
    );
    let s = &run.summary;
    run.assert_code(1);
    assert_eq!(s.status, "failed");
    assert_eq!(s.tasks, 4);
    assert_eq!(s.tasks_failed, 0, "the mappers are fine\n{}", run.out);
    assert_eq!(s.records, tree.total());
    assert_eq!(s.records_mapped, tree.total());
    let error = s
        .publish_error
        .as_deref()
        .unwrap_or_else(|| panic!("a publish error is expected\n{}", run.out));
    assert!(
        error.contains("merg") && error.contains("trap"),
        "the publish error should say the merge trapped: {error}"
    );
    assert!(!tree.output.join("os-distribution.json").exists());
}

#[test]
fn log_flood_is_truncated_not_fatal() {
    let tree = Tree::new(4, 4);
    let run = tree.run("hostile-log-flood", &args(SMALL_LIMITS, &["--jobs", "2"]));
    run.assert_code(0);
    let s = &run.summary;
    assert_eq!(s.status, "ok");
    assert_eq!(s.records_mapped, tree.total());
    assert_eq!(s.records_quarantined, 0, "{}", run.out);
    assert_eq!(published_counts(&tree.output), tree.expected_counts());
}

#[test]
fn read_env_sees_nothing_and_counts_normally() {
    let tree = Tree::new(4, 4);
    let run = tree.run("hostile-read-env", &args(SMALL_LIMITS, &["--jobs", "2"]));
    run.assert_code(0);
    assert_no_leak(&tree.output);
    assert_eq!(published_counts(&tree.output), tree.expected_counts());
    assert_eq!(run.summary.records_quarantined, 0);
}

/// open-file / open-socket: every attempt must fail inside the sandbox, so every record is
/// a guest error carrying the io errors, and nothing leaks into the published output.
fn no_access(feature: &str) {
    let tree = Tree::new(4, 4);
    let run = tree.run(
        &format!("hostile-{feature}"),
        &args(SMALL_LIMITS, &["--jobs", "2", "--max-bad-records", "1000"]),
    );
    // Every record is rejected: the run fails and publishes nothing (an empty answer is
    // not a good one), each record quarantined with the guest's own error.
    run.assert_code(1);
    let s = &run.summary;
    assert_eq!(s.status, "failed");
    assert!(
        s.publish_error
            .as_deref()
            .is_some_and(|e| e.contains("quarantined")),
        "{}",
        run.out
    );
    assert_eq!(s.records, tree.total());
    assert_eq!(s.records_quarantined, tree.total(), "{}", run.out);
    assert_eq!(s.records_mapped, 0);
    let marker = format!("hostile {feature}: ");
    for q in &s.quarantined {
        assert_eq!(q.kind(), "guest-error", "{}", q.failure);
        let message = q.failure["message"].as_str().unwrap_or_default();
        assert!(message.contains(&marker), "{message}");
    }
    assert!(
        !tree.output.exists() || std::fs::read_dir(&tree.output).unwrap().next().is_none(),
        "nothing may be published (so nothing can leak)"
    );
}

#[test]
fn open_file_gets_no_files() {
    no_access("open-file");
}

#[test]
fn open_socket_gets_no_network() {
    no_access("open-socket");
}

// ---------------------------------------------------------------------------------------
// Quarantine exactness
// ---------------------------------------------------------------------------------------

const POISON_FILE: usize = 3;
const POISON_LINE: u64 = 7;
const POISON_ID: &str = "poison-0001";

/// 8 files of 12 good records, and the same tree with a poison record inserted at line 7
/// of file 3 (with `--batch-records 4`: the middle of its second batch, after a first batch
/// of the same window). Returns (poisoned, clean).
fn poisoned_trees() -> (Tree, Tree) {
    let mut with = Tree::new(8, 12);
    let without = Tree::new(8, 12);
    let recs = &mut with.records[POISON_FILE];
    recs.insert(
        POISON_LINE as usize - 1,
        Rec {
            id: POISON_ID.to_string(),
            json: submission(Some("PoisonOS"), 99),
        },
    );
    assert!(with.keys[POISON_FILE].ends_with(".xz"));
    write_log(
        &with.input,
        &with.keys[POISON_FILE],
        ContainerChoice::Xz,
        recs,
    );
    (with, without)
}

fn quarantine_exactly_the_poison(feature: &str, kind: &str, extra: &[&str]) {
    let (tree, clean) = poisoned_trees();
    let mut more = vec![
        "--params-json",
        r#"{"trigger":"poison"}"#,
        "--batch-records",
        "4",
    ];
    more.extend_from_slice(extra);
    let run = tree.run(&format!("hostile-{feature}"), &args(SMALL_LIMITS, &more));
    run.assert_code(0);
    let s = &run.summary;
    assert_eq!(s.status, "ok", "{}", run.out);
    assert_eq!(s.records, tree.total());
    assert_eq!(s.records_quarantined, 1, "{}", run.out);
    assert_eq!(s.records_mapped, tree.total() - 1, "none lost, none twice");
    let q = &s.quarantined[0];
    assert_eq!(q.file, tree.keys[POISON_FILE]);
    assert_eq!(q.record_id, POISON_ID);
    assert_eq!(q.line, POISON_LINE);
    assert_eq!(q.kind(), kind, "{}", q.failure);

    // The published counts: those of the good records, counted once each...
    let published = published_counts(&tree.output);
    let expected = count_os_in_records(tree.records.iter().flatten().filter(|r| r.id != POISON_ID));
    assert_eq!(published, expected);
    assert_eq!(expected, clean.expected_counts());
    // ...and exactly what os-distribution publishes over the data without the poison line.
    let baseline = clean.run("os-distribution", &["--jobs", "2"]);
    baseline.assert_code(0);
    assert_eq!(published, published_counts(&clean.output));
}

#[test]
fn panic_on_one_record_quarantines_exactly_it() {
    quarantine_exactly_the_poison("panic", "trap", &["--jobs", "1"]);
}

#[test]
fn panic_on_one_record_with_a_checkpoint_after_every_batch() {
    quarantine_exactly_the_poison("panic", "trap", &["--jobs", "2", "--checkpoint-mb", "0"]);
}

#[test]
fn infinite_loop_on_one_record_quarantines_exactly_it() {
    quarantine_exactly_the_poison("infinite-loop", "out-of-fuel", &["--jobs", "1"]);
}

#[test]
fn memory_hog_on_one_record_quarantines_exactly_it() {
    quarantine_exactly_the_poison("memory-hog", "memory-cap", &["--jobs", "2"]);
}

#[test]
fn memory_hog_on_one_record_with_a_checkpoint_after_every_batch() {
    quarantine_exactly_the_poison("memory-hog", "memory-cap", &["--checkpoint-mb", "0"]);
}

/// The window replayed after a failure spans several batches and several files when the
/// task holds many files and checkpoints are rare: one task of all 8 files, through the
/// library API (the planner would cut them into several tasks).
#[test]
fn replaying_a_window_of_several_files_counts_each_record_once() {
    use spotmill::job::{run_local, RunOptions};
    use spotmill::logs::Filter;
    use spotmill::sandbox::{Limits, Sandbox};
    use spotmill::store::list_inputs;
    use spotmill::task::{Counters, TaskOptions, TaskSpec};

    let (tree, _clean) = poisoned_trees();
    let limits = Limits {
        fuel_per_call: 200_000_000,
        call_deadline_ms: 3000,
        memory_bytes: 64 << 20,
        max_output_bytes: 8 << 20,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits, None).unwrap();
    let bytes = std::fs::read(analysis("hostile-panic")).unwrap();
    let loaded = sandbox.load("hostile-panic.wasm", &bytes).unwrap();
    let listing = list_inputs(&tree.input, &Filter::all()).unwrap();
    assert_eq!(listing.files.len(), 8);
    let spec = TaskSpec {
        id: "t-all".to_string(),
        files: listing.files,
    };
    for checkpoint_bytes in [64 << 20, 3000, 0] {
        let options = RunOptions {
            jobs: 1,
            task: TaskOptions {
                batch_records: 4,
                checkpoint_bytes,
                params: r#"{"trigger":"poison"}"#.to_string(),
                ..TaskOptions::default()
            },
            previous_partial: None,
        };
        let counters = std::sync::Arc::new(Counters::default());
        let job = run_local(&loaded, vec![spec.clone()], &options, &counters, &|_| {});
        assert!(job.succeeded(), "checkpoint {checkpoint_bytes}: {job:#?}");
        let report = &job.reports[0];
        assert_eq!(report.records, tree.total());
        assert_eq!(
            report.records_mapped,
            tree.total() - 1,
            "checkpoint {checkpoint_bytes}"
        );
        assert_eq!(report.quarantined.len(), 1);
        let q = &report.quarantined[0];
        assert_eq!(
            (
                q.file.as_str(),
                q.record_id.as_str(),
                q.line,
                q.failure.kind()
            ),
            (
                tree.keys[POISON_FILE].as_str(),
                POISON_ID,
                POISON_LINE,
                "trap"
            )
        );
        let (path, contents) = &job.files[0];
        assert_eq!(path, "os-distribution.json");
        let published: BTreeMap<String, u64> = serde_json::from_slice(contents).unwrap();
        let expected =
            count_os_in_records(tree.records.iter().flatten().filter(|r| r.id != POISON_ID));
        assert_eq!(published, expected, "checkpoint {checkpoint_bytes}");
    }
}
