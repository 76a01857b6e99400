//! The partial result: aggregates per (channel, major version) folder, per measure and per
//! cell (by-build-date | by-submission-date, date, filter path), with a merge that is a
//! commutative monoid, and a compact binary encoding.
//!
//! # Why the merge is exactly associative and commutative
//!
//! - Bucket counts and the submission count are `u64` added with wrapping arithmetic.
//! - Statistics are fixed-point integers ([`SCALE`] units per 1.0, `i128`, wrapping) with
//!   `None` for "absent" (-1 in the data): `None + None = None`, `None + x = x`. Floating
//!   point sums would depend on the grouping; fixed-point sums do not, so the published
//!   files are byte-identical whatever the order the host merges partials in.
//! - Arrays of different lengths (a histogram whose definition changed between builds) are
//!   kept apart, one [`Agg`] per length, each with the maximum build id that contributed to
//!   it. Publishing picks the length whose maximum build id is the greatest (a tie on build
//!   id goes to the longer array), so "the newest build's layout wins" is decided from the
//!   state, never from arrival order. Every contribution of the winning length is summed,
//!   including those of older builds (as telemetry-dashboard did for equal lengths).

use std::collections::BTreeMap;

use spotmill_guest::serde::{Deserialize, Serialize};

/// Fixed-point scale of the statistics: 1e-9 resolution.
pub const SCALE: f64 = 1_000_000_000.0;
/// Statistics whose magnitude is at least this are rejected as malformed (keeps the
/// fixed-point values far from `i128` overflow).
pub const MAX_STAT: f64 = 1e20;
/// Bucket counts must be integers below 2^48.
pub const MAX_COUNT: f64 = 281_474_976_710_656.0;

/// Which date a cell is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub enum By {
    BuildDate,
    SubmissionDate,
}

impl By {
    pub fn suffix(self) -> &'static str {
        match self {
            By::BuildDate => "by-build-date",
            By::SubmissionDate => "by-submission-date",
        }
    }
}

/// A filter path: reason, appName, OS, osVersion, arch.
pub type FilterPath = [String; 5];

/// The key of one aggregate inside a measure: the date kind, the date (`YYYYMMDD` as a
/// number) and the filter path (an index into the folder's path table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub struct CellKey {
    pub by: By,
    pub date: u32,
    pub path: u32,
    /// The array's number of buckets: arrays of different lengths are kept apart.
    pub len: u32,
}

/// Bucket counts are packed with their index: `index << 48 | count` (definitions have at
/// most 10000 buckets, arrays are accepted up to [`MAX_LEN`]); counts are summed modulo
/// 2^48 (input counts must be below [`MAX_COUNT`]).
pub const COUNT_BITS: u32 = 48;
pub const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
pub const MAX_LEN: u32 = 65_535;

pub fn pack(index: u32, count: u64) -> u64 {
    (u64::from(index) << COUNT_BITS) | (count & COUNT_MASK)
}

pub fn unpack(packed: u64) -> (u32, u64) {
    ((packed >> COUNT_BITS) as u32, packed & COUNT_MASK)
}

/// The aggregate of all contributions of one array length, in a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub struct Agg {
    /// The greatest `appBuildID` among the contributions (index into the folder's builds).
    pub build: u32,
    /// Submissions that contributed.
    pub count: u64,
    /// Bit i set: statistic i is known (some contribution did not have -1).
    pub present: u8,
    /// sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi in [`SCALE`] units
    /// (0 when absent).
    pub stats: [i128; 5],
    /// Non-zero buckets, [`pack`]ed, sorted by index.
    pub buckets: Vec<u64>,
}

impl Agg {
    pub fn stat(&self, i: usize) -> Option<i128> {
        (self.present & (1 << i) != 0).then_some(self.stats[i])
    }

    /// Adds `other`; build indices are both valid in `builds`.
    pub fn add(&mut self, other: &Agg, builds: &[String]) {
        if builds[other.build as usize] > builds[self.build as usize] {
            self.build = other.build;
        }
        self.buckets = add_sparse(&self.buckets, &other.buckets);
        for (a, b) in self.stats.iter_mut().zip(other.stats) {
            *a = a.wrapping_add(b);
        }
        self.present |= other.present;
        self.count = self.count.wrapping_add(other.count);
    }
}

/// Adds packed sparse bucket vectors (both sorted by index).
fn add_sparse(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i).map(|&x| unpack(x)), b.get(j).map(|&y| unpack(y))) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (x.0, x.1.wrapping_add(y.1) & COUNT_MASK)
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                x
            }
            (Some(x), None) => {
                i += 1;
                x
            }
            (_, Some(y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!(),
        };
        if next.1 != 0 {
            out.push(pack(next.0, next.1));
        }
    }
    out
}

/// Adds `agg` to the cell entry `key` of `cells`.
pub fn add_to(cells: &mut BTreeMap<CellKey, Agg>, key: CellKey, agg: Agg, builds: &[String]) {
    match cells.get_mut(&key) {
        Some(mine) => mine.add(&agg, builds),
        None => {
            cells.insert(key, agg);
        }
    }
}

/// The revision (`info.revision`) of the newest build seen for a measure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub struct Revision {
    pub build: String,
    pub revision: String,
}

/// A table of distinct values with their indices (indices depend on arrival order, so
/// nothing published depends on them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub struct Interner<T: Ord + Clone> {
    pub values: Vec<T>,
    index: BTreeMap<T, u32>,
}

impl<T: Ord + Clone> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: Vec::new(),
            index: BTreeMap::new(),
        }
    }
}

impl<T: Ord + Clone> Interner<T> {
    pub fn intern(&mut self, value: &T) -> u32 {
        if let Some(&i) = self.index.get(value) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(value.clone());
        self.index.insert(value.clone(), i);
        i
    }
}

/// One `<channel>/<major version>` folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub struct Folder {
    pub paths: Interner<FilterPath>,
    pub builds: Interner<String>,
    /// measure -> cell key (with the array length) -> aggregate.
    pub measures: BTreeMap<String, BTreeMap<CellKey, Agg>>,
    /// measure -> newest (build, revision); ties on build go to the greatest revision.
    pub revisions: BTreeMap<String, Revision>,
}

impl Folder {
    pub fn merge(&mut self, other: Folder) {
        let paths: Vec<u32> = other
            .paths
            .values
            .iter()
            .map(|p| self.paths.intern(p))
            .collect();
        let builds: Vec<u32> = other
            .builds
            .values
            .iter()
            .map(|b| self.builds.intern(b))
            .collect();
        for (measure, cells) in other.measures {
            let mine = self.measures.entry(measure).or_default();
            for (key, mut agg) in cells {
                let key = CellKey {
                    path: paths[key.path as usize],
                    ..key
                };
                agg.build = builds[agg.build as usize];
                add_to(mine, key, agg, &self.builds.values);
            }
        }
        for (measure, rev) in other.revisions {
            note_revision(&mut self.revisions, measure, rev);
        }
    }
}

pub fn note_revision(map: &mut BTreeMap<String, Revision>, measure: String, rev: Revision) {
    match map.get_mut(&measure) {
        Some(existing) => {
            if rev > *existing {
                *existing = rev;
            }
        }
        None => {
            map.insert(measure, rev);
        }
    }
}

/// The whole partial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "spotmill_guest::serde")]
pub struct State {
    /// (channel, major version) -> folder.
    pub folders: BTreeMap<(String, String), Folder>,
    /// Histograms skipped because the definitions lack them: name -> occurrences.
    pub unknown: BTreeMap<String, u64>,
    /// Histograms or simple measures skipped because their values are unusable.
    pub malformed: BTreeMap<String, u64>,
}

/// The aggregates independent of interning: (channel, version, measure, by, date, path,
/// len) -> (build, buckets, stats, count).
pub type Canonical = BTreeMap<
    (String, String, String, By, u32, FilterPath, u32),
    (String, Vec<(u32, u64)>, [Option<i128>; 5], u64),
>;

impl State {
    pub fn merge(&mut self, other: State) {
        for (key, folder) in other.folders {
            match self.folders.get_mut(&key) {
                Some(existing) => existing.merge(folder),
                None => {
                    self.folders.insert(key, folder);
                }
            }
        }
        add_counts(&mut self.unknown, other.unknown);
        add_counts(&mut self.malformed, other.malformed);
    }

    /// The state without its interning (to compare states built in different orders).
    pub fn canonical(&self) -> (Canonical, Vec<BTreeMap<String, Revision>>) {
        let mut out = Canonical::new();
        let mut revisions = Vec::new();
        for ((channel, version), folder) in &self.folders {
            revisions.push(folder.revisions.clone());
            for (measure, cells) in &folder.measures {
                for (key, agg) in cells {
                    out.insert(
                        (
                            channel.clone(),
                            version.clone(),
                            measure.clone(),
                            key.by,
                            key.date,
                            folder.paths.values[key.path as usize].clone(),
                            key.len,
                        ),
                        (
                            folder.builds.values[agg.build as usize].clone(),
                            agg.buckets.iter().map(|&b| unpack(b)).collect(),
                            [0, 1, 2, 3, 4].map(|i| agg.stat(i)),
                            agg.count,
                        ),
                    );
                }
            }
        }
        (out, revisions)
    }
}

pub fn add_counts(into: &mut BTreeMap<String, u64>, other: BTreeMap<String, u64>) {
    for (k, v) in other {
        let slot = into.entry(k).or_default();
        *slot = slot.wrapping_add(v);
    }
}

// ---------------------------------------------------------------------------------------
// Binary encoding: "DSH2", then LEB128 varints, length-prefixed strings, sparse buckets.

const MAGIC: &[u8; 4] = b"DSH2";

pub fn encode(state: &State) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 << 16));
    w.0.extend_from_slice(MAGIC);
    w.counts(&state.unknown);
    w.counts(&state.malformed);
    w.uint(state.folders.len() as u128);
    for ((channel, version), folder) in &state.folders {
        w.str(channel);
        w.str(version);
        w.uint(folder.paths.values.len() as u128);
        for path in &folder.paths.values {
            for part in path {
                w.str(part);
            }
        }
        w.uint(folder.builds.values.len() as u128);
        for build in &folder.builds.values {
            w.str(build);
        }
        w.uint(folder.revisions.len() as u128);
        for (measure, rev) in &folder.revisions {
            w.str(measure);
            w.str(&rev.build);
            w.str(&rev.revision);
        }
        w.uint(folder.measures.len() as u128);
        for (measure, cells) in &folder.measures {
            w.str(measure);
            w.uint(cells.len() as u128);
            for (key, agg) in cells {
                w.0.push(match key.by {
                    By::BuildDate => 0,
                    By::SubmissionDate => 1,
                });
                w.uint(u128::from(key.date));
                w.uint(u128::from(key.path));
                w.uint(u128::from(key.len));
                w.uint(u128::from(agg.build));
                w.uint(u128::from(agg.count));
                w.0.push(agg.present);
                for i in 0..5 {
                    if let Some(s) = agg.stat(i) {
                        w.uint(zigzag(s));
                    }
                }
                w.uint(agg.buckets.len() as u128);
                let mut last = 0u32;
                for (i, c) in agg.buckets.iter().map(|&b| unpack(b)) {
                    w.uint(u128::from(i - last));
                    w.uint(u128::from(c));
                    last = i;
                }
            }
        }
    }
    w.0
}

pub fn decode(bytes: &[u8]) -> Result<State, String> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err("not a dashboard partial (bad magic)".to_owned());
    }
    let mut state = State {
        unknown: r.counts()?,
        malformed: r.counts()?,
        ..State::default()
    };
    for _ in 0..r.len()? {
        let channel = r.str()?;
        let version = r.str()?;
        let mut folder = Folder::default();
        for _ in 0..r.len()? {
            let path = [r.str()?, r.str()?, r.str()?, r.str()?, r.str()?];
            folder.paths.intern(&path);
        }
        for _ in 0..r.len()? {
            let build = r.str()?;
            folder.builds.intern(&build);
        }
        let (n_paths, n_builds) = (folder.paths.values.len(), folder.builds.values.len());
        for _ in 0..r.len()? {
            let measure = r.str()?;
            let rev = Revision {
                build: r.str()?,
                revision: r.str()?,
            };
            folder.revisions.insert(measure, rev);
        }
        for _ in 0..r.len()? {
            let measure = r.str()?;
            let mut cells = BTreeMap::new();
            for _ in 0..r.len()? {
                let by = match r.take(1)?[0] {
                    0 => By::BuildDate,
                    1 => By::SubmissionDate,
                    b => return Err(format!("bad date kind {b}")),
                };
                let date = r.u32()?;
                let path = r.u32()?;
                if path as usize >= n_paths {
                    return Err("filter path index out of range".to_owned());
                }
                let len = r.u32()?;
                if len > MAX_LEN {
                    return Err("array length out of range".to_owned());
                }
                let build = r.u32()?;
                if build as usize >= n_builds {
                    return Err("build index out of range".to_owned());
                }
                let count = u64::try_from(r.uint()?).map_err(|_| "bad count")?;
                let present = r.take(1)?[0];
                if present >= 32 {
                    return Err("bad statistics mask".to_owned());
                }
                let mut stats = [0i128; 5];
                for (i, s) in stats.iter_mut().enumerate() {
                    if present & (1 << i) != 0 {
                        *s = unzigzag(r.uint()?);
                    }
                }
                let n = r.len()?;
                let mut buckets = Vec::with_capacity(n);
                let mut index = 0u32;
                for k in 0..n {
                    let step = r.u32()?;
                    index = index.checked_add(step).ok_or("bad bucket index")?;
                    let c = u64::try_from(r.uint()?).map_err(|_| "bad bucket count")?;
                    if (k > 0 && step == 0) || index >= len || c == 0 || c > COUNT_MASK {
                        return Err("bad sparse bucket".to_owned());
                    }
                    buckets.push(pack(index, c));
                }
                let key = CellKey {
                    by,
                    date,
                    path,
                    len,
                };
                let agg = Agg {
                    build,
                    count,
                    present,
                    stats,
                    buckets,
                };
                if cells.insert(key, agg).is_some() {
                    return Err("duplicate cell".to_owned());
                }
            }
            folder.measures.insert(measure, cells);
        }
        state.folders.insert((channel, version), folder);
    }
    if r.pos != bytes.len() {
        return Err("trailing bytes after the partial".to_owned());
    }
    Ok(state)
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u128) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn str(&mut self, s: &str) {
        self.uint(s.len() as u128);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn counts(&mut self, map: &BTreeMap<String, u64>) {
        self.uint(map.len() as u128);
        for (k, v) in map {
            self.str(k);
            self.uint(u128::from(*v));
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("truncated dashboard partial")?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn uint(&mut self) -> Result<u128, String> {
        let mut v = 0u128;
        for shift in (0..128).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".to_owned())
    }
    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.uint()?).map_err(|_| "value out of range".to_owned())
    }
    /// A count of items, bounded by the bytes left (each item takes at least one byte).
    fn len(&mut self) -> Result<usize, String> {
        let n = self.uint()?;
        if n > (self.bytes.len() - self.pos) as u128 {
            return Err("item count larger than the partial".to_owned());
        }
        Ok(n as usize)
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_owned())
    }
    fn counts(&mut self) -> Result<BTreeMap<String, u64>, String> {
        let mut map = BTreeMap::new();
        for _ in 0..self.len()? {
            let k = self.str()?;
            let v = u64::try_from(self.uint()?).map_err(|_| "bad count")?;
            map.insert(k, v);
        }
        Ok(map)
    }
}
