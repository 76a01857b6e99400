//! End-to-end tests of the generator: real containers read back by the `xz`/`lzma`
//! command-line tools, key/info agreement, roll-over, determinism, and the bucket
//! layout checked against the real 2013 samples.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::histograms::{bucket_boundaries, default_definitions, Definition, Kind};
use super::tree::sanitize;
use super::*;

/// The real samples (telemetry-server test fixtures); override with
/// `SPOTMILL_SAMPLES_DIR`.
fn samples_dir() -> PathBuf {
    std::env::var_os("SPOTMILL_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")))
}

fn small_config(seed: u64, submissions: u64) -> GenConfig {
    GenConfig {
        seed,
        submissions,
        container: ContainerChoice::Mixed,
        threads: 2,
        ..GenConfig::default()
    }
}

/// Every file under `root`, relative path -> bytes, in path order.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Decompresses with the command-line tool matching the extension.
fn decompress_with_cli(path: &Path) -> String {
    let tool = if path.extension().unwrap() == "xz" {
        "xz"
    } else {
        "lzma"
    };
    let out = Command::new(tool).arg("-dc").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} -dc {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn definitions_by_name() -> BTreeMap<String, Definition> {
    default_definitions()
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect()
}

/// Checks one histogram array against its definition; returns false if the name
/// has no definition (real payloads carry some newer histograms).
fn check_histogram(defs: &BTreeMap<String, Definition>, name: &str, arr: &[Value]) -> bool {
    let def = match defs
        .get(name)
        .or_else(|| name.strip_prefix("STARTUP_").and_then(|n| defs.get(n)))
    {
        Some(d) => d,
        None => return false,
    };
    let n = def.n_buckets;
    assert_eq!(arr.len(), n + 5, "{name}: length");
    let stats = &arr[n..];
    let exp = def.kind == Kind::Exponential;
    assert_eq!(stats[1] == -1, !exp, "{name}: log_sum {stats:?}");
    assert_eq!(stats[2] == -1, !exp, "{name}: log_sum_squares {stats:?}");
    assert_eq!(stats[3] == -1, exp, "{name}: sum_squares_lo {stats:?}");
    assert_eq!(stats[4] == -1, exp, "{name}: sum_squares_hi {stats:?}");
    let bounds = bucket_boundaries(def);
    let counts: Vec<u64> = arr[..n].iter().map(|c| c.as_u64().unwrap()).collect();
    let lower: u64 = counts.iter().zip(&bounds).map(|(c, b)| c * b).sum();
    let sum = stats[0].as_u64().unwrap();
    assert!(
        sum >= lower,
        "{name}: sum {sum} below the bucket lower bounds {lower}"
    );
    if counts[n - 1] == 0 {
        let upper: u64 = counts.iter().zip(&bounds[1..]).map(|(c, b)| c * b).sum();
        assert!(
            sum < upper.max(1),
            "{name}: sum {sum} above the bucket upper bounds {upper}"
        );
    }
    true
}

#[test]
fn bucket_layout_matches_real_samples() {
    let defs = definitions_by_name();
    let mut checked = 0;
    for sample in ["ss-ff-n-22.lzma", "ss-ff-n-28.lzma"] {
        let file = File::open(samples_dir().join(sample)).unwrap();
        let stream = Stream::new_lzma_decoder(u64::MAX).unwrap();
        let mut text = String::new();
        xz2::read::XzDecoder::new_stream(file, stream)
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            let (_, json) = line.split_once('\t').unwrap();
            let v: Value = serde_json::from_str(json).unwrap();
            for (name, arr) in v["histograms"].as_object().unwrap() {
                checked += usize::from(check_histogram(&defs, name, arr.as_array().unwrap()));
            }
        }
    }
    // 1,500 real histograms have an Aurora 24 definition.
    assert!(checked > 1400, "only {checked} real histograms checked");
}

#[test]
fn tree_reads_back_with_cli_tools_and_keys_match_info() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &small_config(11, 60), &|_| {}).unwrap();
    assert_eq!(summary.submissions, 60);
    let defs = definitions_by_name();
    let files = read_tree(dir.path());
    assert_eq!(files.len() as u64, summary.files);
    let top: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert!(
        top.iter().all(|e| e.path().is_dir()),
        "only reason folders at the top"
    );
    let (mut lines, mut bytes, mut compressed) = (0u64, 0u64, 0u64);
    let mut extensions = BTreeMap::new();
    for (rel, raw) in &files {
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 5, "{rel}");
        let name: Vec<&str> = parts[4].split('.').collect();
        // buildId.date.v2.log.uuid.ext
        assert_eq!(name.len(), 6, "{rel}");
        assert_eq!((name[2], name[3]), ("v2", "log"));
        assert!(
            name[1].len() == 8 && name[1] >= &name[0][..8],
            "{rel}: submitted before built"
        );
        assert!(name[4].len() == 32 && name[4].bytes().all(|c| c.is_ascii_hexdigit()));
        let magic: &[u8] = if name[5] == "xz" {
            b"\xfd7zXZ\0"
        } else {
            b"\x5d\0\0"
        };
        assert!(
            raw.starts_with(magic),
            "{rel}: wrong magic for its extension"
        );
        *extensions.entry(name[5]).or_insert(0) += 1;
        compressed += raw.len() as u64;
        let text = decompress_with_cli(&dir.path().join(rel));
        bytes += text.len() as u64;
        for line in text.lines() {
            lines += 1;
            let (id, json) = line.split_once('\t').unwrap();
            assert_eq!(id.len(), 36, "{id}");
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["ver"], 2);
            let info = &v["info"];
            let dims = [
                &info["reason"],
                &info["appName"],
                &info["appUpdateChannel"],
                &info["appVersion"],
            ];
            let dims: Vec<String> = dims.iter().map(|d| sanitize(d.as_str().unwrap())).collect();
            assert_eq!(dims, parts[..4], "{rel}");
            assert_eq!(info["appBuildID"], name[0]);
            for (h, arr) in v["histograms"].as_object().unwrap() {
                assert!(
                    check_histogram(&defs, h, arr.as_array().unwrap()),
                    "{h} has no definition"
                );
            }
        }
    }
    assert_eq!(
        (lines, bytes, compressed),
        (60, summary.uncompressed_bytes, summary.compressed_bytes)
    );
    assert_eq!(
        extensions.len(),
        2,
        "Mixed should give both containers: {extensions:?}"
    );
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let one_thread = GenConfig {
        threads: 1,
        ..small_config(5, 40)
    };
    generate(a.path(), &one_thread, &|_| {}).unwrap();
    generate(b.path(), &small_config(5, 40), &|_| {}).unwrap();
    generate(c.path(), &small_config(6, 40), &|_| {}).unwrap();
    let (ta, tb, tc) = (
        read_tree(a.path()),
        read_tree(b.path()),
        read_tree(c.path()),
    );
    assert!(!ta.is_empty());
    assert!(ta == tb, "same seed, different trees");
    assert!(ta != tc, "different seeds, same tree");
}

#[test]
fn files_roll_over_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 300_000;
    let cfg = GenConfig {
        max_file_bytes: cap,
        container: ContainerChoice::Lzma,
        ..small_config(3, 120)
    };
    let summary = generate(dir.path(), &cfg, &|_| {}).unwrap();
    let mut per_prefix: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut lines = 0;
    for rel in read_tree(dir.path()).keys() {
        let text = decompress_with_cli(&dir.path().join(rel));
        assert!(
            text.len() as u64 <= cap,
            "{rel}: {} bytes over the cap",
            text.len()
        );
        lines += text.lines().count() as u64;
        let prefix = rel.rsplitn(3, '.').nth(2).unwrap().to_owned();
        let entry = per_prefix.entry(prefix).or_default();
        entry.0 += 1;
        entry.1 += text.lines().count() as u64;
    }
    assert_eq!(lines, 120);
    assert!(
        summary.files > per_prefix.len() as u64,
        "no roll-over: {per_prefix:?}"
    );
    // A prefix with several files has each one filled close to the cap.
    assert!(per_prefix
        .values()
        .any(|&(files, lines)| files >= 2 && lines >= 2 * files - 1));
}

#[test]
fn payloads_are_realistic_in_size_and_progress_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let calls = std::cell::Cell::new(0u64);
    let summary = generate(dir.path(), &small_config(21, 50), &|p| {
        calls.set(calls.get() + 1);
        assert!(p.submissions <= p.submissions_total);
    })
    .unwrap();
    assert_eq!(calls.get(), summary.files);
    let mean = summary.uncompressed_bytes / summary.submissions;
    assert!(
        (25_000..=90_000).contains(&mean),
        "mean payload {mean} bytes"
    );
    assert!(
        summary.compressed_bytes * 3 < summary.uncompressed_bytes,
        "{summary:?}"
    );
}

#[test]
fn refuses_a_non_empty_output_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
    let err = generate(dir.path(), &small_config(1, 1), &|_| {}).unwrap_err();
    assert!(matches!(err, GenError::OutputNotEmpty(_)));
    let empty = tempfile::tempdir().unwrap();
    let bad = GenConfig {
        histograms_per_submission: (5, 4),
        ..small_config(1, 1)
    };
    assert!(matches!(
        generate(empty.path(), &bad, &|_| {}),
        Err(GenError::Config(_))
    ));
}

#[test]
fn write_log_file_uses_real_containers() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vec![
        (
            "id-1".to_owned(),
            br#"{"ver":2,"info":{"reason":"saved-session"}}"#.to_vec(),
        ),
        ("id-2".to_owned(), b"not json at all".to_vec()),
    ];
    for container in [ContainerChoice::Lzma, ContainerChoice::Xz] {
        let path = dir.path().join(format!("t.{}", extension(container)));
        let size = write_log_file(&path, container, &lines).unwrap();
        assert_eq!(size, fs::metadata(&path).unwrap().len());
        let text = decompress_with_cli(&path);
        assert_eq!(
            text,
            "id-1\t{\"ver\":2,\"info\":{\"reason\":\"saved-session\"}}\nid-2\tnot json at all\n"
        );
    }
}

/// Throughput measurement, not a check: `SPOTMILL_GEN_N=20000 cargo test --release
/// -p spotmill --lib gen::tests::measure_generation -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_generation() {
    let n = std::env::var("SPOTMILL_GEN_N").map_or(2000, |v| v.parse().unwrap());
    let level = std::env::var("SPOTMILL_GEN_LEVEL").map_or(1, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        submissions: n,
        compression_level: level,
        ..GenConfig::default()
    };
    let start = std::time::Instant::now();
    let s = generate(dir.path(), &cfg, &|_| {}).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} submissions, level {level}: {secs:.1} s, {} files, {:.1} MB -> {:.1} MB, mean payload {} B, {:.1} MB/s uncompressed",
        s.files,
        s.uncompressed_bytes as f64 / 1e6,
        s.compressed_bytes as f64 / 1e6,
        s.uncompressed_bytes / s.submissions,
        s.uncompressed_bytes as f64 / 1e6 / secs
    );
}
