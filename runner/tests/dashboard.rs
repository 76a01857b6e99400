//! The dashboard analysis (analyses/dashboard) against an independent computation.
//!
//! The expected aggregates are computed here in plain Rust from the same lines: files are
//! decompressed with the `xz` command-line tool, every line parsed with serde_json, and the
//! dashboard's rules (see analyses/dashboard/src/lib.rs) applied without the analysis, the
//! guest SDK or the histograms crate. The published files are then read back (versions.json
//! -> folder, filter-tree.json -> paths, every measure file) and compared cell by cell.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::{analysis, run, spotmill, tempdir};

const LEVELS: [&str; 5] = ["reason", "appName", "OS", "osVersion", "arch"];

/// (channel/version, measure, "by-build-date" | "by-submission-date", date, path)
type Key = (String, String, String, String, Vec<String>);

/// One aggregate: buckets, 5 statistics (None = -1), submission count.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    buckets: Vec<f64>,
    stats: [Option<f64>; 5],
    count: u64,
}

#[derive(Debug, Default)]
struct Expected {
    /// key -> array length -> (newest build, aggregate)
    cells: BTreeMap<Key, BTreeMap<usize, (String, Row)>>,
    unknown: BTreeMap<String, u64>,
    submissions: u64,
}

impl Expected {
    fn add(&mut self, key: Key, build: &str, row: Row) {
        let layouts = self.cells.entry(key).or_default();
        match layouts.get_mut(&row.buckets.len()) {
            None => {
                layouts.insert(row.buckets.len(), (build.to_owned(), row));
            }
            Some((newest, acc)) => {
                if build > newest.as_str() {
                    *newest = build.to_owned();
                }
                for (a, b) in acc.buckets.iter_mut().zip(&row.buckets) {
                    *a += b;
                }
                for (a, b) in acc.stats.iter_mut().zip(row.stats) {
                    *a = match (*a, b) {
                        (None, None) => None,
                        (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
                    };
                }
                acc.count += row.count;
            }
        }
    }

    /// The published view: per key, the layout with the newest build (tie: longest).
    fn winners(&self) -> BTreeMap<Key, Row> {
        self.cells
            .iter()
            .map(|(k, layouts)| {
                let (_, (_, row)) = layouts
                    .iter()
                    .max_by(|(la, (ba, _)), (lb, (bb, _))| ba.cmp(bb).then(la.cmp(lb)))
                    .expect("non-empty");
                (k.clone(), row.clone())
            })
            .collect()
    }
}

/// Firefox's exponential bucket lower bounds (histogram_tools.py), re-derived here.
fn exponential_buckets(low: f64, high: f64, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    let mut current = low;
    out[1] = current;
    for (i, slot) in out.iter_mut().enumerate().skip(2) {
        let log_current = current.ln();
        let ratio = (high.ln() - log_current) / (n - i) as f64;
        let next = ((log_current + ratio).exp() + 0.5).floor();
        current = if next > current { next } else { current + 1.0 };
        *slot = current;
    }
    out
}

fn clean(s: Option<&str>) -> String {
    let s = s.map(str::trim).unwrap_or("");
    if s.is_empty() {
        return "unknown".into();
    }
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out == "." || out == ".." {
        out = "_".into();
    }
    if out == "_id" || out == "name" {
        out.insert(0, '_');
    }
    out
}

fn days(d: &str) -> i64 {
    let n: i64 = d.parse().expect("a YYYYMMDD date");
    let (y, m, dd) = (n / 10_000, n / 100 % 100, n % 100);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + dd - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn definitions() -> BTreeSet<String> {
    let path = common::repo_root().join("guest-sdk/histograms/data/Histograms.aurora24.json");
    let text = std::fs::read_to_string(path).expect("read Histograms.aurora24.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn decompress(path: &Path) -> Vec<u8> {
    let out = Command::new("xz")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("run xz -dc");
    assert!(out.status.success(), "xz -dc {}", path.display());
    out.stdout
}

/// The independent computation over every log under `input`.
fn expected(input: &Path) -> Expected {
    let defs = definitions();
    let simple_bounds = exponential_buckets(1.0, 30000.0, 50);
    let mut exp = Expected::default();
    for file in files_under(input) {
        let rel = file
            .strip_prefix(input)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        let (key_reason, key_app, key_channel, key_version) =
            (parts[0], parts[1], parts[2], parts[3]);
        let fields: Vec<&str> = parts[4].split('.').collect();
        let (key_build, submission_date) = (fields[0], fields[1]);
        let text = decompress(&file);
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let tab = line.iter().position(|&b| b == b'\t').expect("id<TAB>json");
            let doc: Value = serde_json::from_slice(&line[tab + 1..]).expect("JSON line");
            assert_eq!(doc["ver"], 2);
            exp.submissions += 1;
            let info = &doc["info"];
            let get = |k: &str, fallback: &str| -> String {
                match info.get(k).and_then(Value::as_str) {
                    Some(s) if !s.is_empty() => s.to_owned(),
                    _ => fallback.to_owned(),
                }
            };
            let channel = clean(Some(&get("appUpdateChannel", key_channel)));
            let app_version = get("appVersion", key_version);
            let major = clean(Some(app_version.split('.').next().unwrap()));
            let build = get("appBuildID", key_build);
            let build_date = build[..8].to_owned();
            let os = clean(info.get("OS").and_then(Value::as_str));
            let os_version = info.get("version").and_then(Value::as_str);
            let os_version = if os == "Linux" {
                clean(
                    os_version
                        .map(|v| v.chars().take(3).collect::<String>())
                        .as_deref(),
                )
            } else {
                clean(os_version)
            };
            let path = vec![
                clean(Some(&get("reason", key_reason))),
                clean(Some(&get("appName", key_app))),
                os,
                os_version,
                clean(info.get("arch").and_then(Value::as_str)),
            ];
            let folder = format!("{channel}/{major}");
            let by_submission = days(submission_date) - days(&build_date) <= 60;

            let mut rows: Vec<(String, Row)> = Vec::new();
            if let Some(hs) = doc.get("histograms").and_then(Value::as_object) {
                for (name, values) in hs {
                    let known = defs.contains(name)
                        || name
                            .strip_prefix("STARTUP_")
                            .is_some_and(|n| defs.contains(n));
                    if !known {
                        *exp.unknown.entry(name.clone()).or_default() += 1;
                        continue;
                    }
                    let v: Vec<f64> = values
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect();
                    let n = v.len() - 5;
                    let stats = [0, 1, 2, 3, 4].map(|i| Some(v[n + i]).filter(|&s| s != -1.0));
                    rows.push((
                        name.clone(),
                        Row {
                            buckets: v[..n].to_vec(),
                            stats,
                            count: 1,
                        },
                    ));
                }
            }
            let mut simple = |name: String, value: f64| {
                let mut buckets = vec![0.0; 50];
                let i = simple_bounds.iter().rposition(|&b| value >= b).unwrap_or(0);
                buckets[i] = 1.0;
                let log = (value.abs() + 1.0).ln();
                rows.push((
                    format!("SIMPLE_MEASURES_{}", name.to_uppercase()),
                    Row {
                        buckets,
                        stats: [Some(value), Some(log), Some(log * log), None, None],
                        count: 1,
                    },
                ));
            };
            let ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            if let Some(sm) = doc.get("simpleMeasurements").and_then(Value::as_object) {
                for (name, value) in sm {
                    match value {
                        Value::Number(n) if ok(name) => simple(name.clone(), n.as_f64().unwrap()),
                        Value::Object(obj) if ok(name) => {
                            for (sub, v) in obj {
                                if let (Value::Number(n), true) = (v, ok(sub)) {
                                    simple(format!("{name}_{sub}"), n.as_f64().unwrap());
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            for (measure, row) in rows {
                if by_submission {
                    let key = (
                        folder.clone(),
                        measure.clone(),
                        "by-submission-date".to_owned(),
                        submission_date.to_owned(),
                        path.clone(),
                    );
                    exp.add(key, &build, row.clone());
                }
                let key = (
                    folder.clone(),
                    measure,
                    "by-build-date".to_owned(),
                    build_date.clone(),
                    path.clone(),
                );
                exp.add(key, &build, row);
            }
        }
    }
    exp
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Leaf filter ids -> paths, checking the tree's shape on the way.
fn leaves(
    node: &Value,
    depth: usize,
    path: &mut Vec<String>,
    out: &mut BTreeMap<u64, Vec<String>>,
) {
    let obj = node.as_object().expect("a tree node is an object");
    let id = obj["_id"].as_u64().expect("_id");
    if depth == LEVELS.len() {
        assert_eq!(obj.len(), 1, "a leaf holds only _id: {node}");
        out.insert(id, path.clone());
        return;
    }
    assert_eq!(obj["name"], LEVELS[depth]);
    for (k, child) in obj {
        if k == "_id" || k == "name" {
            continue;
        }
        path.push(k.clone());
        leaves(child, depth + 1, path, out);
        path.pop();
    }
}

/// Everything the dashboard published under `out`, as cells.
fn published(out: &Path) -> (BTreeMap<Key, Row>, BTreeMap<String, u64>) {
    let versions = read_json(&out.join("versions.json"));
    let mut cells = BTreeMap::new();
    for (cv, dir) in versions.as_object().unwrap() {
        let dir = out.join(dir.as_str().unwrap());
        let mut ids = BTreeMap::new();
        leaves(
            &read_json(&dir.join("filter-tree.json")),
            0,
            &mut Vec::new(),
            &mut ids,
        );
        let defs = read_json(&dir.join("histograms.json"));
        let revisions = read_json(&dir.join("revisions.json"));
        let mut measures = BTreeSet::new();
        for file in files_under(&dir) {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            let (measure, by) = if let Some(m) = name.strip_suffix("-by-build-date.json") {
                (m.to_owned(), "by-build-date")
            } else if let Some(m) = name.strip_suffix("-by-submission-date.json") {
                (m.to_owned(), "by-submission-date")
            } else {
                continue;
            };
            measures.insert(measure.clone());
            for (date, rows) in read_json(&file).as_object().unwrap() {
                for row in rows.as_array().unwrap() {
                    let v: Vec<f64> = row
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect();
                    let n = v.len() - 7;
                    let id = v[n + 6] as u64;
                    let path = ids
                        .get(&id)
                        .unwrap_or_else(|| panic!("filter id {id} is not a leaf"));
                    let key = (
                        cv.clone(),
                        measure.clone(),
                        by.to_owned(),
                        date.clone(),
                        path.clone(),
                    );
                    let stats = [0, 1, 2, 3, 4].map(|i| Some(v[n + i]).filter(|&s| s != -1.0));
                    let prev = cells.insert(
                        key,
                        Row {
                            buckets: v[..n].to_vec(),
                            stats,
                            count: v[n + 5] as u64,
                        },
                    );
                    assert!(
                        prev.is_none(),
                        "two rows for one cell in {}",
                        file.display()
                    );
                }
            }
        }
        let def_names: BTreeSet<String> = defs.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            def_names, measures,
            "histograms.json of {cv} lists the folder's measures"
        );
        let rev_names: BTreeSet<String> = revisions.as_object().unwrap().keys().cloned().collect();
        assert_eq!(rev_names, measures, "revisions.json of {cv}");
    }
    let skipped = read_json(&out.join("skipped.json"));
    let unknown = serde_json::from_value(skipped["unknown_histograms"].clone()).unwrap();
    (cells, unknown)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 + 1e-9 * a.abs().max(b.abs())
}

fn compare(expected: &Expected, out: &Path) {
    let want = expected.winners();
    let (got, unknown) = published(out);
    let want_keys: BTreeSet<&Key> = want.keys().collect();
    let got_keys: BTreeSet<&Key> = got.keys().collect();
    let missing: Vec<_> = want_keys.difference(&got_keys).take(5).collect();
    let extra: Vec<_> = got_keys.difference(&want_keys).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, w) in &want {
        let g = &got[key];
        assert_eq!(w.buckets, g.buckets, "buckets of {key:?}");
        assert_eq!(w.count, g.count, "count of {key:?}");
        for i in 0..5 {
            match (w.stats[i], g.stats[i]) {
                (None, None) => {}
                (Some(a), Some(b)) if close(a, b) => {}
                (a, b) => panic!("statistic {i} of {key:?}: expected {a:?}, published {b:?}"),
            }
        }
    }
    assert_eq!(unknown, expected.unknown, "skipped.json unknown_histograms");
}

/// The published files (the run history `spotmill run` keeps under `.spotmill/` aside).
fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|p| !p.strip_prefix(dir).unwrap().starts_with(".spotmill"))
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The two real sample logs laid out under their keys (runner/tests/data/input.txt).
fn real_samples(root: &Path, only: Option<&str>) -> PathBuf {
    let data = common::repo_root().join("runner/tests/data");
    let input = root.join("input");
    let list = std::fs::read_to_string(data.join("input.txt")).unwrap();
    for line in list.lines().filter(|l| !l.is_empty()) {
        let (key, local) = line.split_once('\t').unwrap();
        let name = Path::new(local).file_name().unwrap().to_str().unwrap();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let dest = input.join(key);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(data.join(name), &dest).unwrap();
    }
    input
}

fn run_ok(input: &Path, output: &Path, extra: &[&str]) -> common::Run {
    let r = run(&analysis("dashboard"), input, output, extra);
    assert_eq!(r.summary.status, "ok", "{}", r.out);
    assert_eq!(r.summary.records_quarantined, 0, "{}", r.out);
    r
}

#[test]
fn real_samples_match_an_independent_computation() {
    let tmp = tempdir();
    let input = real_samples(tmp.path(), None);
    let exp = expected(&input);
    assert_eq!(exp.submissions, 5);
    let out = tmp.path().join("out");
    let r = run_ok(&input, &out, &[]);
    assert_eq!(r.summary.records_mapped, 5);
    compare(&exp, &out);

    // Deterministic: the same input gives byte-identical files, also with histogram
    // definitions passed explicitly as params (the same Aurora 24 file).
    let out2 = tmp.path().join("out2");
    let defs = common::repo_root().join("guest-sdk/histograms/data/Histograms.aurora24.json");
    let params = tmp.path().join("params.json");
    let text = format!(
        "{{\"histograms\": {}}}",
        std::fs::read_to_string(defs).unwrap()
    );
    std::fs::write(&params, text).unwrap();
    run_ok(&input, &out2, &["--params", params.to_str().unwrap()]);
    assert_eq!(tree_bytes(&out), tree_bytes(&out2));

    // Immutable folders: without the 22.0a1 log, nightly/28 keeps its folder (same data)
    // and nightly/22 disappears; with other definitions, nightly/28 gets a new folder.
    let only28 = real_samples(&tmp.path().join("only28"), Some("ss-ff-n-28.lzma"));
    let out3 = tmp.path().join("out3");
    run_ok(&only28, &out3, &[]);
    let v1 = read_json(&out.join("versions.json"));
    let v3 = read_json(&out3.join("versions.json"));
    assert_eq!(v1["nightly/28"], v3["nightly/28"]);
    assert!(v3.get("nightly/22").is_none());
    let out4 = tmp.path().join("out4");
    let r = run_ok(
        &only28,
        &out4,
        &[
            "--params-json",
            r#"{"histograms": {"GC_MS": {"kind": "exponential", "high": "10000", "n_buckets": 50}}}"#,
        ],
    );
    let v4 = read_json(&out4.join("versions.json"));
    assert_ne!(v3["nightly/28"], v4["nightly/28"], "{}", r.out);
    let dir4 = out4.join(v4["nightly/28"].as_str().unwrap());
    assert!(dir4.join("GC_MS-by-build-date.json").is_file());
    assert!(!dir4.join("MEMORY_RESIDENT-by-build-date.json").exists());
}

#[test]
fn generated_tree_matches_an_independent_computation() {
    let tmp = tempdir();
    let input = tmp.path().join("gen");
    let g = spotmill([
        "gen",
        "--out",
        input.to_str().unwrap(),
        "--submissions",
        "150",
        "--seed",
        "11",
    ]);
    assert_eq!(g.code, Some(0), "{g}");
    let exp = expected(&input);
    assert_eq!(exp.submissions, 150);
    let out = tmp.path().join("out");
    let r = run_ok(&input, &out, &[]);
    assert_eq!(r.summary.records_mapped, 150);
    compare(&exp, &out);
    // Some simple measures, nested ones included, and STARTUP_ histograms are there.
    let (got, _) = published(&out);
    assert!(got.keys().any(|k| k.1 == "SIMPLE_MEASURES_JS_CUSTOMITER"));
    assert!(got.keys().any(|k| k.1.starts_with("STARTUP_")));
}
