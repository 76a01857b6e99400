//! Bad inputs and bad components through `spotmill run`: clear errors or counted skips that
//! name the file, never a hang or a panic, every other record counted exactly.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// Records whose JSON carries a few hundred bytes of pseudo-random hex (so the compressed
/// file is large enough to be damaged in its middle), all with `info.OS = os`.
fn bulky_records(prefix: &str, os: &str, n: usize) -> Vec<Rec> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ prefix.len() as u64;
    (0..n)
        .map(|i| {
            let noise: String = (0..24)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    format!("{:016x}", state >> 1)
                })
                .collect();
            let json = serde_json::to_vec(&serde_json::json!({
                "ver": 2,
                "info": {"OS": os, "appName": "Firefox"},
                "noise": noise,
            }))
            .unwrap();
            Rec {
                id: format!("{prefix}-{i:04}"),
                json,
            }
        })
        .collect()
}

#[test]
fn damaged_files_and_bad_lines_are_reported_and_the_rest_is_counted_exactly() {
    let dir = tempdir();
    let input = dir.path().join("input");
    let output = dir.path().join("output");

    // A: a good .lzma file.
    let a_key = simple_key(0, "lzma");
    let a = good_records("a", 6);
    write_log(&input, &a_key, ContainerChoice::Lzma, &a);

    // B: an .xz file (made by the xz tool) with good records and three bad lines.
    let b_key = simple_key(1, "xz");
    let b_good = good_records("b", 8);
    let mut raw = Vec::new();
    let mut line = 0u64;
    let mut push = |raw: &mut Vec<u8>, bytes: &[u8]| {
        raw.extend_from_slice(bytes);
        raw.push(b'\n');
        line += 1;
        line
    };
    for r in &b_good[..3] {
        push(&mut raw, &[r.id.as_bytes(), b"\t", &r.json].concat());
    }
    let no_tab_line = push(&mut raw, b"this line has no tab at all");
    let long_json = format!(
        r#"{{"ver":2,"info":{{"OS":"LongOS"}},"pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let long_line = push(&mut raw, format!("long-0001\t{long_json}").as_bytes());
    for r in &b_good[3..6] {
        push(&mut raw, &[r.id.as_bytes(), b"\t", &r.json].concat());
    }
    let bad_json_line = push(&mut raw, b"bad-json-0001\tthis is not JSON {");
    for r in &b_good[6..] {
        push(&mut raw, &[r.id.as_bytes(), b"\t", &r.json].concat());
    }
    write_raw_with_xz_tool(&input, &b_key, &raw);

    // C: an .xz file with bytes flipped in its middle.
    let c_key = simple_key(2, "xz");
    let c = bulky_records("c", "CorruptOS", 400);
    let c_path = write_log(&input, &c_key, ContainerChoice::Xz, &c);
    let mut bytes = std::fs::read(&c_path).unwrap();
    assert!(bytes.len() > 10_000, "C is {} bytes", bytes.len());
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(&c_path, &bytes).unwrap();

    // D: an .lzma file cut in half.
    let d_key = simple_key(3, "lzma");
    let d = bulky_records("d", "TruncatedOS", 400);
    let d_path = write_log(&input, &d_key, ContainerChoice::Lzma, &d);
    let bytes = std::fs::read(&d_path).unwrap();
    std::fs::write(&d_path, &bytes[..bytes.len() / 2]).unwrap();

    // E: an empty file; F: a file that is no container at all.
    let e_key = simple_key(4, "lzma");
    std::fs::write(input.join(&e_key), b"").unwrap();
    let f_key = simple_key(5, "xz");
    std::fs::write(
        input.join(&f_key),
        b"this is not a compressed file, just some text\n".repeat(20),
    )
    .unwrap();

    let r = run(
        &analysis("os-distribution"),
        &input,
        &output,
        &["--jobs", "2", "--max-line-mb", "1"],
    );
    // Published, but with unreadable inputs: exit code 2 (summary.rs).
    r.assert_code(2);
    let s = &r.summary;
    assert_eq!(s.status, "ok-with-input-errors", "{}", r.out);
    assert_eq!(s.input_files, 6);
    assert_eq!(s.empty_files, 1, "{}", r.out);
    assert!(s.task_failures.is_empty(), "{}", r.out);

    // Files that could not be read to their end: C, D and F, each named.
    let errors: BTreeMap<&str, &FileError> =
        s.file_errors.iter().map(|e| (e.file.as_str(), e)).collect();
    let keys: Vec<&str> = errors.keys().copied().collect();
    let mut expected_keys = vec![c_key.as_str(), d_key.as_str(), f_key.as_str()];
    expected_keys.sort();
    assert_eq!(keys, expected_keys, "{:#?}", s.file_errors);
    for (key, e) in &errors {
        assert!(
            e.error.contains(key),
            "the error should name the file: {e:#?}"
        );
    }
    let (ce, de, fe) = (
        errors[c_key.as_str()],
        errors[d_key.as_str()],
        errors[f_key.as_str()],
    );
    assert!(ce.error.contains("corrupt"), "{ce:#?}");
    assert!(de.error.contains("truncated"), "{de:#?}");
    assert!(fe.error.contains("unknown container format"), "{fe:#?}");
    assert_eq!(fe.records_before_error, 0);
    assert!(ce.records_before_error < c.len() as u64);
    assert!(de.records_before_error < d.len() as u64);
    assert!(de.records_before_error > 0, "half of D decodes: {de:#?}");

    // Lines that are not records: counted by reason, with B named in the examples.
    let skipped: BTreeMap<&str, u64> = s
        .lines_skipped
        .by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        skipped,
        BTreeMap::from([("no-tab", 1), ("too-long", 1)]),
        "{}",
        r.out
    );
    for wanted in [no_tab_line, long_line] {
        assert!(
            s.lines_skipped
                .examples
                .iter()
                .any(|e| e.contains(&b_key) && e.contains(&format!("line {wanted} "))),
            "line {wanted} of B should be among {:#?}",
            s.lines_skipped.examples
        );
    }

    // The non-JSON record: a record error of the analysis, quarantined once.
    let in_b: Vec<&Quarantine> = s.quarantined.iter().filter(|q| q.file == b_key).collect();
    assert_eq!(in_b.len(), 1, "{in_b:#?}");
    assert_eq!(in_b[0].record_id, "bad-json-0001");
    assert_eq!(in_b[0].line, bad_json_line);
    assert_eq!(in_b[0].kind(), "guest-error");
    assert!(
        s.quarantined
            .iter()
            .all(|q| q.file == b_key || q.file == c_key),
        "only B's bad line and (maybe) garbage decoded from C can be quarantined: {:#?}",
        s.quarantined
    );

    // Counts: every good record of A and B exactly; D's prefix exactly; C at most what was
    // read before its error; the too-long line never.
    let published = published_counts(&output);
    let mut expected = count_os_in_records(a.iter().chain(&b_good));
    expected.insert("TruncatedOS".into(), de.records_before_error);
    let c_counted = published.get("CorruptOS").copied().unwrap_or(0);
    assert!(c_counted <= ce.records_before_error);
    if c_counted > 0 {
        expected.insert("CorruptOS".into(), c_counted);
    }
    let good_keys: Vec<&String> = expected.keys().collect();
    let published_good: BTreeMap<String, u64> = published
        .iter()
        .filter(|(k, _)| good_keys.contains(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(published_good, expected, "published: {published:#?}");
    assert!(!published.contains_key("LongOS"), "{published:#?}");
    assert_eq!(
        s.records,
        (a.len() + b_good.len() + 1) as u64 + ce.records_before_error + de.records_before_error,
        "records read: A, B (with its non-JSON record), C and D before their errors"
    );
}

/// Records decoded before a corruption is detected are kept (`FileError`: "Records read
/// before the error are kept and counted"), for a corrupt file as for a truncated one, even
/// when liblzma reports the error in the same call that decoded them.
#[test]
fn records_before_a_corruption_are_kept() {
    let dir = tempdir();
    let input = dir.path().join("input");
    let output = dir.path().join("output");
    let key = simple_key(0, "xz");
    let records = bulky_records("c", "CorruptOS", 400);
    let path = write_log(&input, &key, ContainerChoice::Xz, &records);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();

    // What the xz tool decodes before it gives up: complete lines only.
    let tool = std::process::Command::new("xz")
        .arg("-dc")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!tool.status.success(), "the damage must be detected");
    let complete = tool.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(complete > 100, "the xz tool recovers {complete} lines");

    let r = run(&analysis("os-distribution"), &input, &output, &[]);
    r.assert_code(2);
    let error = &r.summary.file_errors[0];
    assert!(
        error.records_before_error * 10 >= complete * 9,
        "Spotmill kept {} records before the corruption, the xz tool decodes {complete}",
        error.records_before_error
    );
    assert_eq!(
        published_counts(&output).get("CorruptOS").copied(),
        Some(error.records_before_error)
    );
}

/// Fails unless `spotmill run` refuses the component with a clear error on stderr.
fn refuses_component(component: &Path, expected: &[&str]) {
    let dir = tempdir();
    let input = dir.path().join("input");
    lay_out_samples(&input);
    let output = dir.path().join("output");
    let out = spotmill([
        "run".as_ref(),
        "--analysis".as_ref(),
        component.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
        "--json".as_ref(),
        "--no-cache".as_ref(),
    ]);
    out.assert_no_runner_panic();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("error: "), "{out}");
    for text in expected {
        assert!(
            out.stderr.contains(text),
            "stderr should contain {text:?}:\n{out}"
        );
    }
    assert!(!output.join("os-distribution.json").exists());
}

#[test]
fn a_core_module_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    refuses_component(
        &path,
        &["core.wasm", "core WebAssembly module, not a component"],
    );
}

#[test]
fn random_bytes_are_refused() {
    let dir = tempdir();
    let path = dir.path().join("random.wasm");
    let mut state: u32 = 12345;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect();
    std::fs::write(&path, bytes).unwrap();
    refuses_component(&path, &["random.wasm", "not a WebAssembly file"]);
}

#[test]
fn a_truncated_component_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("half.wasm");
    let bytes = std::fs::read(analysis("os-distribution")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    refuses_component(&path, &["half.wasm", "not a valid WebAssembly component"]);
}

#[test]
fn a_missing_component_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("nonexistent.wasm");
    refuses_component(&path, &["cannot read the analysis", "nonexistent.wasm"]);
}
