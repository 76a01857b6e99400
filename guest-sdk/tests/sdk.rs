//! Host tests of the SDK's pure parts: the WIT functions driven through
//! `spotmill_guest::__private` (what the component exports forward to) and the telemetry
//! helpers, on the real samples when they are there.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use spotmill_guest::__private::{
    check_output_path, mapper_flush, mapper_map, mapper_setup, reducer_merge, reducer_publish,
    reducer_setup,
};
use spotmill_guest::telemetry::{self, split_statistics, Measurement, Statistics};
use spotmill_guest::{Analysis, Dimensions, OutputFile, Submission};

#[derive(Default)]
struct OsCount {
    prefix: String,
}

impl Analysis for OsCount {
    type Partial = BTreeMap<String, u64>;

    fn setup(&mut self, params: &serde_json::Value) -> Result<(), String> {
        if params.get("fail").is_some() {
            return Err("asked to fail".into());
        }
        if let Some(p) = params.get("prefix").and_then(|p| p.as_str()) {
            self.prefix = p.to_owned();
        }
        Ok(())
    }

    fn map(&mut self, sub: &Submission, partial: &mut Self::Partial) -> Result<(), String> {
        let payload = telemetry::parse(&sub.json)?;
        let os = payload.info.os.as_deref().unwrap_or("unknown");
        *partial.entry(format!("{}{os}", self.prefix)).or_default() += 1;
        Ok(())
    }

    fn merge(into: &mut Self::Partial, other: Self::Partial) {
        for (k, v) in other {
            *into.entry(k).or_default() += v;
        }
    }

    fn publish(&self, partial: Self::Partial) -> Result<Vec<OutputFile>, String> {
        if partial.contains_key("bad-path") {
            return Ok(vec![OutputFile {
                path: "../escape".into(),
                contents: vec![],
            }]);
        }
        Ok(vec![spotmill_guest::json_file("os.json", &partial)?])
    }
}

fn sub(id: &str, json: &str) -> Submission {
    Submission {
        id: id.into(),
        dimensions: Dimensions {
            reason: "saved_session".into(),
            app_name: "Firefox".into(),
            channel: "nightly".into(),
            version: "28.0a1".into(),
            build_id: "20131029030201".into(),
            submission_date: "20131029".into(),
        },
        json: json.as_bytes().to_vec(),
    }
}

fn decode(bytes: &[u8]) -> BTreeMap<String, u64> {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn map_flush_collects_errors_and_resets() {
    mapper_setup::<OsCount>("").unwrap();
    let errors = mapper_map::<OsCount>(&[
        sub("a", r#"{"info":{"OS":"WINNT"}}"#),
        sub("b", r#"{"info":{"OS":"WINNT"}"#),
        sub("c", r#"{"info":{"OS":"Linux"}}"#),
        sub("d", r#"[1,2]"#),
        sub("e", r#"{"ver":2}"#),
    ]);
    let indices: Vec<u32> = errors.iter().map(|e| e.index).collect();
    assert_eq!(indices, vec![1, 3]);
    assert!(
        errors[0].message.contains("not valid JSON"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[1].message.contains("not a JSON object"),
        "{}",
        errors[1].message
    );
    let partial = decode(&mapper_flush::<OsCount>().unwrap());
    assert_eq!(partial["WINNT"], 1);
    assert_eq!(partial["Linux"], 1);
    assert_eq!(partial["unknown"], 1);
    // Reset: the next flush is the empty partial.
    assert_eq!(mapper_flush::<OsCount>().unwrap(), b"");
    // A batch where everything fails leaves the partial empty.
    assert_eq!(mapper_map::<OsCount>(&[sub("x", "{")]).len(), 1);
    assert_eq!(mapper_flush::<OsCount>().unwrap(), b"");
}

#[test]
fn setup_params_and_errors() {
    mapper_setup::<OsCount>(r#"{"prefix":"os:"}"#).unwrap();
    assert!(mapper_map::<OsCount>(&[sub("a", r#"{"info":{"OS":"Darwin"}}"#)]).is_empty());
    assert_eq!(decode(&mapper_flush::<OsCount>().unwrap())["os:Darwin"], 1);
    let err = mapper_setup::<OsCount>("{nope").unwrap_err();
    assert!(err.contains("params are not valid JSON"), "{err}");
    assert_eq!(
        reducer_setup::<OsCount>(r#"{"fail":1}"#).unwrap_err(),
        "asked to fail"
    );
    reducer_setup::<OsCount>("  ").unwrap();
}

#[test]
fn map_without_setup_does_an_implicit_setup() {
    assert!(mapper_map::<OsCount>(&[sub("a", r#"{"info":{"OS":"Linux"}}"#)]).is_empty());
    assert_eq!(decode(&mapper_flush::<OsCount>().unwrap())["Linux"], 1);
}

#[test]
fn merge_handles_empty_partials_and_names_bad_ones() {
    reducer_setup::<OsCount>("").unwrap();
    assert_eq!(reducer_merge::<OsCount>(&[]).unwrap(), b"");
    assert_eq!(reducer_merge::<OsCount>(&[vec![], vec![]]).unwrap(), b"");
    let merged = reducer_merge::<OsCount>(&[
        br#"{"WINNT":2}"#.to_vec(),
        vec![],
        br#"{"WINNT":1,"Linux":4}"#.to_vec(),
    ])
    .unwrap();
    let merged = decode(&merged);
    assert_eq!(merged["WINNT"], 3);
    assert_eq!(merged["Linux"], 4);
    let err =
        reducer_merge::<OsCount>(&[vec![], br#"{"a":1}"#.to_vec(), b"{oops".to_vec()]).unwrap_err();
    assert!(err.starts_with("partial 2 (of 3): "), "{err}");
}

#[test]
fn publish_outputs_and_checks_paths() {
    reducer_setup::<OsCount>("").unwrap();
    let files = reducer_publish::<OsCount>(br#"{"b":1,"a":2}"#).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "os.json");
    assert_eq!(
        String::from_utf8(files[0].contents.clone()).unwrap(),
        "{\n  \"a\": 2,\n  \"b\": 1\n}\n"
    );
    let empty = reducer_publish::<OsCount>(b"").unwrap();
    assert_eq!(empty[0].contents, b"{}\n");
    let err = reducer_publish::<OsCount>(br#"{"bad-path":1}"#).unwrap_err();
    assert!(err.contains("invalid output path"), "{err}");
    let err = reducer_publish::<OsCount>(b"[").unwrap_err();
    assert!(err.starts_with("the final partial: "), "{err}");
}

#[test]
fn output_paths() {
    for ok in ["a.json", "a/b/c.json", "x..y"] {
        check_output_path(ok).unwrap();
    }
    for bad in ["", "/a", "a//b", "../a", "a/./b", "a/", "a\\b"] {
        assert!(check_output_path(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn parse_info_fields_leniently() {
    let json =
        br#"{"ver":2,"info":{"OS":"WINNT","version":6.1,"arch":"x86-64","appName":"Fire\u0066ox",
        "appVersion":"28.0a1","appBuildID":20131029030201,"appUpdateChannel":"nightly",
        "reason":"saved-session","locale":null,"memsize":8145,"nested":{"a":[1]}}}"#;
    let p = telemetry::parse(json).unwrap();
    assert_eq!(p.ver, Some(2));
    assert_eq!(p.info.os.as_deref(), Some("WINNT"));
    assert!(matches!(p.info.os, Some(std::borrow::Cow::Borrowed(_))));
    assert_eq!(p.info.version.as_deref(), Some("6.1"));
    assert_eq!(p.info.app_name.as_deref(), Some("Firefox"));
    assert_eq!(p.info.app_build_id.as_deref(), Some("20131029030201"));
    assert_eq!(p.info.reason.as_deref(), Some("saved-session"));
    assert_eq!(p.info.locale, None);
    assert_eq!(p.info_value("memsize"), Some(serde_json::json!(8145)));
    assert_eq!(p.info_value("missing"), None);
    // No histograms at all is fine.
    p.for_each_histogram(|_| panic!("no histograms")).unwrap();
    assert!(p.simple_measurements().unwrap().is_empty());

    assert!(telemetry::parse(br#"{"info":{"OS":{"x":1}}}"#)
        .unwrap_err()
        .contains("field `OS`"));
    assert!(telemetry::parse(br#"{"info":[1]}"#)
        .unwrap_err()
        .contains("not an object"));
    assert!(telemetry::parse(b"\xff\xfe").unwrap_err().contains("UTF-8"));
    assert!(telemetry::parse(b"").is_err());
    assert!(telemetry::parse(br#"{"info":{}} trailing"#).is_err());
}

#[test]
fn histograms_walk_split_and_errors() {
    let json = br#"{"histograms":{"A":[1,2,3,6,1.5,2.5,-1,-1],"B":[0,1,0,0,-1,-1,0,0],"C":[1,2]},
        "simpleMeasurements":{"uptime":6,"js":{"x":1},"neg":-2.5}}"#;
    let p = telemetry::parse(json).unwrap();
    let mut seen = Vec::new();
    p.for_each_histogram(|h| {
        seen.push((h.name.to_owned(), h.values.len(), h.buckets().to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            ("A".into(), 8, vec![1.0, 2.0, 3.0]),
            ("B".into(), 8, vec![0.0, 1.0, 0.0]),
            ("C".into(), 2, vec![]),
        ]
    );
    let a = p.histogram("A").unwrap().unwrap();
    let (buckets, stats) = split_statistics(&a).unwrap();
    assert_eq!(buckets, &[1.0, 2.0, 3.0]);
    let stats = Statistics::from_array(stats);
    assert_eq!(stats.sum, 6.0);
    assert_eq!(stats.log_sum, 1.5);
    assert_eq!(Statistics::known(stats.sum_squares_lo), None);
    assert_eq!(p.histogram("Z").unwrap(), None);
    assert_eq!(split_statistics(&[1i64, 2, 3, 4, 5]), None);
    assert_eq!(
        split_statistics(&[9i64, 1, 2, 3, 4, 5]),
        Some((&[9i64][..], [1, 2, 3, 4, 5]))
    );

    // The callback's error comes back as it is.
    let err = p
        .for_each_histogram(|h| {
            if h.name == "B" {
                Err("stop at B".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert_eq!(err, "stop at B");

    let raw = p.histograms_raw().unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(
        telemetry::parse_histogram_values(raw[2].1).unwrap(),
        vec![1.0, 2.0]
    );

    let sm = p.simple_measurements().unwrap();
    assert_eq!(sm.len(), 3);
    assert_eq!(sm[0].1.as_f64(), Some(6.0));
    assert!(matches!(sm[1].1, Measurement::Other(raw) if raw.get() == r#"{"x":1}"#));
    assert_eq!(sm[2].1.as_f64(), Some(-2.5));

    let bad = telemetry::parse(br#"{"histograms":{"A":[1,"x"]}}"#).unwrap();
    let err = bad.for_each_histogram(|_| Ok(())).unwrap_err();
    assert!(err.contains("histogram \"A\""), "{err}");
}

/// The real samples (`shared/data/telemetry-samples`), if `lzma` can read them here.
fn sample_lines() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/telemetry-samples");
    let mut lines = Vec::new();
    for name in ["ss-ff-n-22.lzma", "ss-ff-n-28.lzma"] {
        let Ok(out) = std::process::Command::new("lzma")
            .arg("-dc")
            .arg(dir.join(name))
            .output()
        else {
            return Vec::new();
        };
        if !out.status.success() {
            return Vec::new();
        }
        let mut text = String::new();
        out.stdout.as_slice().read_to_string(&mut text).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

#[test]
fn real_samples() {
    let lines = sample_lines();
    if lines.is_empty() {
        eprintln!("skipped: samples or `lzma` not available");
        return;
    }
    assert_eq!(lines.len(), 5);
    let mut batch = Vec::new();
    for line in &lines {
        let (id, json) = line.split_once('\t').unwrap();
        let p = telemetry::parse(json.as_bytes()).unwrap();
        assert_eq!(p.ver, Some(2));
        assert_eq!(p.info.app_name.as_deref(), Some("Firefox"));
        assert!(p.info.os.is_some());
        let mut n = 0;
        p.for_each_histogram(|h| {
            let (buckets, _) = h.split().ok_or_else(|| format!("{} too short", h.name))?;
            assert!(!buckets.is_empty());
            n += 1;
            Ok(())
        })
        .unwrap();
        assert!(n > 100, "{n} histograms");
        assert!(p
            .simple_measurements()
            .unwrap()
            .iter()
            .any(|(k, m)| k == "uptime" && m.as_f64().is_some()));
        batch.push(sub(id, json));
    }
    mapper_setup::<OsCount>("").unwrap();
    assert!(mapper_map::<OsCount>(&batch).is_empty());
    let partial = decode(&mapper_flush::<OsCount>().unwrap());
    assert_eq!(partial.values().sum::<u64>(), 5);
}

#[test]
fn failed_setup_fails_later_calls() {
    assert_eq!(
        mapper_setup::<OsCount>(r#"{"fail":1}"#).unwrap_err(),
        "asked to fail"
    );
    let errors = mapper_map::<OsCount>(&[sub("a", r#"{"info":{"OS":"Linux"}}"#), sub("b", "{}")]);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[1].index, 1);
    assert_eq!(errors[0].message, "setup failed: asked to fail");
    assert_eq!(
        mapper_flush::<OsCount>().unwrap_err(),
        "setup failed: asked to fail"
    );
    // A later successful setup recovers.
    mapper_setup::<OsCount>("").unwrap();
    assert!(mapper_map::<OsCount>(&[sub("a", "{}")]).is_empty());

    assert!(reducer_setup::<OsCount>(r#"{"fail":1}"#).is_err());
    assert!(reducer_merge::<OsCount>(&[b"{}".to_vec()]).is_err());
    assert!(reducer_publish::<OsCount>(b"").is_err());
}

/// An analysis whose `map_batch` reports more errors than submissions.
#[derive(Default)]
struct Noisy;

impl Analysis for Noisy {
    type Partial = BTreeMap<String, u64>;
    fn map(&mut self, _: &Submission, partial: &mut Self::Partial) -> Result<(), String> {
        *partial.entry("n".into()).or_default() += 1;
        Ok(())
    }
    fn map_batch(
        &mut self,
        batch: &[Submission],
        partial: &mut Self::Partial,
    ) -> Vec<spotmill_guest::RecordError> {
        self.map(&batch[1], partial).unwrap();
        (0..10)
            .map(|_| spotmill_guest::RecordError {
                index: 0,
                message: "noise".into(),
            })
            .collect()
    }
    fn merge(into: &mut Self::Partial, other: Self::Partial) {
        OsCount::merge(into, other)
    }
    fn publish(&self, _: Self::Partial) -> Result<Vec<OutputFile>, String> {
        Ok(vec![])
    }
}

#[test]
fn dirty_tracks_submissions_not_error_count() {
    mapper_setup::<Noisy>("").unwrap();
    assert_eq!(
        mapper_map::<Noisy>(&[sub("a", "{}"), sub("b", "{}")]).len(),
        10
    );
    assert_eq!(decode(&mapper_flush::<Noisy>().unwrap())["n"], 1);
}
