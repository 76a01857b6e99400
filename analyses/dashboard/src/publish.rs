//! The published layout.
//!
//! ```text
//! versions.json                         {"<channel>/<version>": "<channel>/<version>/<hash16>", ...}
//! skipped.json                          {"unknown_histograms": {name: n}, "malformed": {name: n}}
//! <channel>/<version>/<hash16>/
//!     <MEASURE>-by-build-date.json      {"YYYYMMDD": [[buckets..., sum, log_sum,
//!     <MEASURE>-by-submission-date.json     log_sum_squares, sum_squares_lo, sum_squares_hi,
//!                                           submissions, filter id], ...], ...}
//!     filter-tree.json                  {"_id": 0, "name": "reason", "saved-session": {"_id": 1,
//!                                           "name": "appName", ... {"_id": 5}}}
//!     histograms.json                   {MEASURE: definition} for the folder's measures
//!     revisions.json                    {MEASURE: {"buildId": newest build, "revision": its
//!                                           info.revision}}
//! ```
//!
//! `<hash16>` is the first 16 hex digits of a SHA-256 over the folder's files (sorted paths,
//! each as path, NUL, 8-byte length, contents): the same data gives the same folder, other
//! data a new folder, and `versions.json` points at the current one. Measure files are
//! compact JSON (one line); the small files are pretty-printed. Rows within a date are sorted
//! by filter id; filter ids number the tree's nodes in pre-order (keys sorted), and only the
//! leaves (full paths) carry data: a consumer sums the leaves below a node. A statistic that
//! no contribution carried is -1. Every file ends with a newline; nothing depends on time or
//! arrival order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use spotmill_guest::serde_json::{self, Map, Value};
use spotmill_guest::{json_file, OutputFile};

use crate::state::{unpack, Agg, By, Folder, State, SCALE};
use crate::Dashboard;

/// The names of the filter tree's levels.
pub const LEVELS: [&str; 5] = ["reason", "appName", "OS", "osVersion", "arch"];

#[derive(Default)]
struct Node {
    id: u64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: &[String]) {
        if let Some((first, rest)) = path.split_first() {
            self.children.entry(first.clone()).or_default().insert(rest);
        }
    }

    fn number(&mut self, next: &mut u64) {
        self.id = *next;
        *next += 1;
        for child in self.children.values_mut() {
            child.number(next);
        }
    }

    fn to_json(&self, depth: usize) -> Value {
        let mut map = Map::new();
        map.insert("_id".to_owned(), Value::from(self.id));
        if depth < LEVELS.len() {
            map.insert("name".to_owned(), Value::from(LEVELS[depth]));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_json(depth + 1));
        }
        Value::Object(map)
    }

    fn leaf_id(&self, path: &[String]) -> Option<u64> {
        match path.split_first() {
            None => Some(self.id),
            Some((first, rest)) => self.children.get(first)?.leaf_id(rest),
        }
    }
}

/// Appends a decimal integer (faster than `write!` in the guest).
fn push_u64(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut n = digits.len();
    loop {
        n -= 1;
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[n..] {
        out.push(d as char);
    }
}

/// A statistic as published: -1 when absent, an integer when whole.
fn push_stat(out: &mut String, stat: Option<i128>) {
    match stat {
        None => out.push_str("-1"),
        Some(v) => {
            let scale = SCALE as i128;
            if v % scale == 0 {
                let _ = write!(out, "{}", v / scale);
            } else {
                let f = v as f64 / SCALE;
                out.push_str(&serde_json::to_string(&f).unwrap_or_else(|_| "0".to_owned()));
            }
        }
    }
}

pub fn publish(dashboard: &Dashboard, state: State) -> Result<Vec<OutputFile>, String> {
    let mut files = Vec::new();
    let mut versions = BTreeMap::new();
    let State {
        folders,
        unknown,
        malformed,
    } = state;
    // Each folder's state is dropped once its files are made: the output replaces it.
    for ((channel, version), folder) in folders {
        let inner = folder_files(dashboard, &folder)?;
        drop(folder);
        let hash = folder_hash(&inner);
        let dir = format!("{channel}/{version}/{hash}");
        versions.insert(format!("{channel}/{version}"), dir.clone());
        for mut f in inner {
            f.path = format!("{dir}/{}", f.path);
            files.push(f);
        }
    }
    files.push(json_file("versions.json", &versions)?);
    files.push(json_file(
        "skipped.json",
        &serde_json::json!({
            "unknown_histograms": unknown,
            "malformed": malformed,
        }),
    )?);
    Ok(files)
}

/// The files of one folder, sorted by path (relative to the folder).
fn folder_files(dashboard: &Dashboard, folder: &Folder) -> Result<Vec<OutputFile>, String> {
    let builds = &folder.builds.values;
    let mut tree = Node::default();
    let mut used = vec![false; folder.paths.values.len()];
    for cells in folder.measures.values() {
        for key in cells.keys() {
            used[key.path as usize] = true;
        }
    }
    for (path, _) in folder.paths.values.iter().zip(&used).filter(|(_, &u)| u) {
        tree.insert(path);
    }
    tree.number(&mut 0);
    // Filter id of each path index.
    let ids: Vec<u64> = folder
        .paths
        .values
        .iter()
        .map(|p| tree.leaf_id(p).unwrap_or(u64::MAX))
        .collect();

    let mut inner: Vec<OutputFile> = Vec::new();
    let mut definitions = BTreeMap::new();
    for (measure, cells) in &folder.measures {
        if let Some(def) = dashboard.definition_json(measure) {
            definitions.insert(measure.clone(), def);
        }
        for by in [By::BuildDate, By::SubmissionDate] {
            // (date, path) -> the winning aggregate: the length whose newest build is the
            // newest; on a tie of build ids, the longer array.
            let mut winners: BTreeMap<(u32, u32), (u32, &Agg)> = BTreeMap::new();
            for (key, agg) in cells.iter().filter(|(k, _)| k.by == by) {
                let slot = winners
                    .entry((key.date, key.path))
                    .or_insert((key.len, agg));
                let better = builds[agg.build as usize]
                    .cmp(&builds[slot.1.build as usize])
                    .then(key.len.cmp(&slot.0))
                    .is_gt();
                if better {
                    *slot = (key.len, agg);
                }
            }
            // date -> filter id -> row
            let mut dates: BTreeMap<u32, BTreeMap<u64, String>> = BTreeMap::new();
            for ((date, path), (len, agg)) in winners {
                let id = ids[path as usize];
                let mut row = String::with_capacity(len as usize * 2 + 32);
                row.push('[');
                let mut next = 0u32;
                for (i, c) in agg.buckets.iter().map(|&b| unpack(b)) {
                    for _ in next..i {
                        row.push_str("0,");
                    }
                    push_u64(&mut row, c);
                    row.push(',');
                    next = i + 1;
                }
                for _ in next..len {
                    row.push_str("0,");
                }
                for i in 0..5 {
                    push_stat(&mut row, agg.stat(i));
                    row.push(',');
                }
                let _ = write!(row, "{},{id}]", agg.count);
                dates.entry(date).or_default().insert(id, row);
            }
            let mut text = String::from("{");
            for (n, (date, rows)) in dates.iter().enumerate() {
                if n > 0 {
                    text.push(',');
                }
                let _ = write!(text, "\"{date:08}\":[");
                for (m, row) in rows.values().enumerate() {
                    if m > 0 {
                        text.push(',');
                    }
                    text.push_str(row);
                }
                text.push(']');
            }
            text.push_str("}\n");
            inner.push(OutputFile {
                path: format!("{measure}-{}.json", by.suffix()),
                contents: text.into_bytes(),
            });
        }
    }
    inner.push(json_file("filter-tree.json", &tree.to_json(0))?);
    inner.push(json_file("histograms.json", &definitions)?);
    let revisions: BTreeMap<&String, Value> = folder
        .revisions
        .iter()
        .map(|(m, r)| {
            (
                m,
                serde_json::json!({"buildId": r.build, "revision": r.revision}),
            )
        })
        .collect();
    inner.push(json_file("revisions.json", &revisions)?);
    inner.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(inner)
}

/// The first 16 hex digits of SHA-256 over the folder's files (sorted by path).
pub fn folder_hash(files: &[OutputFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0u8]);
        h.update((f.contents.len() as u64).to_le_bytes());
        h.update(&f.contents);
    }
    let digest = h.finalize();
    digest[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
