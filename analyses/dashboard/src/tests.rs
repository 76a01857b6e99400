//! Host unit tests: merge rules (associativity, commutativity, -1 statistics, length
//! change), statistics of known histograms and simple measures, encoding, publishing.

use super::*;
use crate::state::{decode, encode, unpack};
use spotmill_guest::Dimensions;

fn sub(json: &str, build_id: &str, submission_date: &str) -> Submission {
    Submission {
        id: "id".into(),
        dimensions: Dimensions {
            reason: "saved_session".into(),
            app_name: "Firefox".into(),
            channel: "nightly".into(),
            version: "28.0a1".into(),
            build_id: build_id.into(),
            submission_date: submission_date.into(),
        },
        json: json.as_bytes().to_vec(),
    }
}

/// A ver-2 payload with the given histograms (JSON object text) and simple measures.
fn payload(build: &str, os: &str, histograms: &str, simple: &str) -> String {
    format!(
        r#"{{"ver":2,"info":{{"reason":"saved-session","OS":"{os}","appName":"Firefox","appVersion":"28.0a1","appBuildID":"{build}","appUpdateChannel":"nightly","version":"6.1","arch":"x86","revision":"r{build}"}},"simpleMeasurements":{simple},"histograms":{histograms}}}"#
    )
}

fn mapped(subs: &[Submission]) -> State {
    let mut d = Dashboard::default();
    let mut state = State::default();
    for s in subs {
        d.map(s, &mut state).unwrap();
    }
    state
}

fn merged(parts: Vec<State>) -> State {
    let mut acc = State::default();
    for p in parts {
        Dashboard::merge(&mut acc, p);
    }
    acc
}

/// Files of a publish, as path -> text.
fn files(state: State) -> BTreeMap<String, String> {
    Dashboard::default()
        .publish(state)
        .unwrap()
        .into_iter()
        .map(|f| (f.path, String::from_utf8(f.contents).unwrap()))
        .collect()
}

fn cell<'a>(files: &'a BTreeMap<String, String>, suffix: &str) -> &'a str {
    files
        .iter()
        .find(|(p, _)| p.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} in {:?}", files.keys().collect::<Vec<_>>()))
        .1
}

/// Submissions that exercise every rule: two layouts of GC_MS (3 and 4 buckets) from
/// builds in various orders, -1 and known statistics, a nested simple measure, an
/// unknown histogram, two filter paths, a late submission.
fn corpus() -> Vec<Submission> {
    let mut out = Vec::new();
    let cases = [
        (
            "20131029030201",
            "WINNT",
            "[1,2,3,10,-1,-1,5,0]",
            "20131030",
        ),
        (
            "20131029030201",
            "WINNT",
            "[0,1,0,2,-1,-1,-3,2]",
            "20131030",
        ),
        (
            "20131029040000",
            "WINNT",
            "[1,1,1,1,9,0.5,0.25,-1,-1]",
            "20131030",
        ),
        (
            "20131029010000",
            "WINNT",
            "[4,0,0,0,7,-1,-1,1,0]",
            "20131031",
        ),
        (
            "20131029030201",
            "Darwin",
            "[5,5,5,20,-1,-1,-1,-1]",
            "20140101",
        ),
        (
            "20131029050000",
            "Darwin",
            "[1,0,0,1,-1,-1,1,0]",
            "20131030",
        ),
    ];
    for (build, os, gc, date) in cases {
        let h = format!(r#"{{"GC_MS":{gc},"NOT_A_HISTOGRAM":[1,0,0,0,0,0]}}"#);
        let json = payload(
            build,
            os,
            &h,
            r#"{"main":1234,"js":{"customIter":0},"flag":true}"#,
        );
        out.push(sub(&json, build, date));
    }
    out
}

#[test]
fn merge_is_associative_and_commutative() {
    let subs = corpus();
    let singles: Vec<State> = subs
        .iter()
        .map(|s| mapped(std::slice::from_ref(s)))
        .collect();
    let all_at_once = mapped(&subs).canonical();
    // Every grouping of three parts, and several orders.
    let (a, b, c) = (
        merged(singles[0..2].to_vec()),
        merged(singles[2..4].to_vec()),
        merged(singles[4..].to_vec()),
    );
    let left = merged(vec![merged(vec![a.clone(), b.clone()]), c.clone()]);
    let right = merged(vec![a.clone(), merged(vec![b.clone(), c.clone()])]);
    assert_eq!(left.canonical(), right.canonical());
    assert_eq!(left.canonical(), all_at_once);
    let reversed = merged(singles.iter().rev().cloned().collect());
    assert_eq!(reversed.canonical(), all_at_once);
    let shuffled = merged([3, 0, 5, 1, 4, 2].map(|i| singles[i].clone()).to_vec());
    assert_eq!(shuffled.canonical(), all_at_once);
    // The empty partial is the identity, and published files do not depend on the order.
    let with_empty = merged(vec![State::default(), left.clone(), State::default()]);
    assert_eq!(with_empty.canonical(), all_at_once);
    assert_eq!(files(left), files(reversed));
    assert_eq!(files(right), files(shuffled));
}

#[test]
fn encoding_round_trips() {
    let state = mapped(&corpus());
    let bytes = encode(&state);
    let back = decode(&bytes).unwrap();
    assert_eq!(back.canonical(), state.canonical());
    assert_eq!(encode(&back), bytes);
    assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(decode(b"nope").is_err());
    let mut d = Dashboard::default();
    let mut s = State::default();
    d.map(&corpus()[0], &mut s).unwrap();
    assert_eq!(
        Dashboard::decode_partial(&Dashboard::encode_partial(&s).unwrap()).unwrap(),
        s
    );
}

#[test]
fn statistics_missing_in_both_stay_minus_one_and_sum_otherwise() {
    let subs = corpus();
    // Two WINNT submissions of the same build, same 3-bucket layout, by-submission 20131030.
    let f = files(mapped(&subs[0..2]));
    let text = cell(&f, "GC_MS-by-submission-date.json");
    let v: Value = serde_json::from_str(text).unwrap();
    // buckets 1+0, 2+1, 3+0; sum 12; log sums -1 in both; lo 5 + -3; hi 0 + 2; 2 submissions.
    assert_eq!(
        v["20131030"][0],
        serde_json::json!([1, 3, 3, 12, -1, -1, 2, 2, 2, 5])
    );
}

#[test]
fn newest_build_layout_wins_whatever_the_order() {
    let subs = corpus();
    // WINNT cells by build date 20131029: layouts 3 buckets (builds ..030201 x2),
    // 4 buckets (..040000 and the older ..010000). The 4-bucket layout has the newest build
    // (..040000), so it wins and sums both of its contributions, the older one included.
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let picked: Vec<Submission> = order.iter().map(|&i| subs[i].clone()).collect();
        let f = files(merged(
            picked
                .iter()
                .map(|s| mapped(std::slice::from_ref(s)))
                .collect(),
        ));
        let v: Value = serde_json::from_str(cell(&f, "GC_MS-by-build-date.json")).unwrap();
        assert_eq!(
            v["20131029"][0],
            serde_json::json!([5, 1, 1, 1, 16, 0.5, 0.25, 1, 0, 2, 5]),
            "order {order:?}"
        );
        let rev: Value = serde_json::from_str(cell(&f, "revisions.json")).unwrap();
        assert_eq!(rev["GC_MS"]["buildId"], "20131029040000");
        assert_eq!(rev["GC_MS"]["revision"], "r20131029040000");
    }
    // A tie on the newest build id goes to the longer array.
    let a = payload(
        "20131029030201",
        "WINNT",
        r#"{"GC_MS":[1,1,1,3,-1,-1,3,0]}"#,
        "{}",
    );
    let b = payload(
        "20131029030201",
        "WINNT",
        r#"{"GC_MS":[0,0,0,2,8,-1,-1,0,0]}"#,
        "{}",
    );
    let f = files(mapped(&[
        sub(&a, "x", "20131030"),
        sub(&b, "x", "20131030"),
    ]));
    let v: Value = serde_json::from_str(cell(&f, "GC_MS-by-build-date.json")).unwrap();
    assert_eq!(
        v["20131029"][0],
        serde_json::json!([0, 0, 0, 2, 8, -1, -1, 0, 0, 1, 5])
    );
}

#[test]
fn simple_measures_are_exponential_histograms() {
    let f = files(mapped(&corpus()[0..1]));
    let v: Value =
        serde_json::from_str(cell(&f, "SIMPLE_MEASURES_MAIN-by-build-date.json")).unwrap();
    let row = v["20131029"][0].as_array().unwrap();
    assert_eq!(row.len(), 50 + 5 + 2);
    let bounds = histograms::bucket_boundaries(&simple_definition());
    let i = bounds.iter().rposition(|&b| b <= 1234).unwrap();
    assert!(bounds[i] <= 1234 && bounds.get(i + 1).is_none_or(|&n| n > 1234));
    for (j, c) in row[..50].iter().enumerate() {
        assert_eq!(c.as_u64().unwrap(), u64::from(j == i), "bucket {j}");
    }
    let log = 1235f64.ln();
    assert_eq!(row[50], 1234);
    assert!((row[51].as_f64().unwrap() - log).abs() < 1e-8);
    assert!((row[52].as_f64().unwrap() - log * log).abs() < 1e-8);
    assert_eq!(
        (&row[53], &row[54], &row[55]),
        (&Value::from(-1), &Value::from(-1), &Value::from(1))
    );
    // Nested: js.customIter = 0 -> bucket 0; booleans are ignored.
    let v: Value =
        serde_json::from_str(cell(&f, "SIMPLE_MEASURES_JS_CUSTOMITER-by-build-date.json")).unwrap();
    assert_eq!(v["20131029"][0][0], 1);
    assert_eq!(v["20131029"][0][50], 0);
    assert!(!f.keys().any(|p| p.contains("SIMPLE_MEASURES_FLAG")));
    let defs: Value = serde_json::from_str(cell(&f, "histograms.json")).unwrap();
    assert_eq!(defs["SIMPLE_MEASURES_MAIN"]["n_buckets"], 50);
    assert_eq!(defs["GC_MS"]["kind"], "exponential");
}

#[test]
fn late_submissions_and_unknown_histograms() {
    let subs = corpus();
    let f = files(mapped(&subs));
    // The Darwin submission of 20140101 is 64 days after its build: build date only.
    let v: Value = serde_json::from_str(cell(&f, "GC_MS-by-submission-date.json")).unwrap();
    assert!(v.get("20140101").is_none());
    let v: Value = serde_json::from_str(cell(&f, "GC_MS-by-build-date.json")).unwrap();
    assert_eq!(
        v["20131029"].as_array().unwrap().len(),
        2,
        "two filter paths"
    );
    let skipped: Value = serde_json::from_str(&f["skipped.json"]).unwrap();
    assert_eq!(skipped["unknown_histograms"]["NOT_A_HISTOGRAM"], 6);
    let tree: Value = serde_json::from_str(cell(&f, "filter-tree.json")).unwrap();
    assert_eq!(tree["name"], "reason");
    // Pre-order ids, keys sorted: Darwin (3, 4, 5) before WINNT (6, 7, 8).
    assert_eq!(
        tree["saved-session"]["Firefox"]["Darwin"]["6.1"]["x86"]["_id"],
        5
    );
    assert_eq!(
        tree["saved-session"]["Firefox"]["WINNT"]["6.1"]["x86"]["_id"],
        8
    );
    assert_eq!(
        tree["saved-session"]["Firefox"]["Darwin"]["6.1"]["name"],
        "arch"
    );
    let versions: Value = serde_json::from_str(&f["versions.json"]).unwrap();
    let dir = versions["nightly/28"].as_str().unwrap();
    assert!(dir.starts_with("nightly/28/") && dir.len() == "nightly/28/".len() + 16);
    // Other data, other folder; same data, same folder.
    let g = files(mapped(&subs[..5]));
    let other: Value = serde_json::from_str(&g["versions.json"]).unwrap();
    assert_ne!(other["nightly/28"], versions["nightly/28"]);
    assert_eq!(files(mapped(&subs)), f);
}

#[test]
fn bad_submissions_are_record_errors_and_leave_no_trace() {
    let mut d = Dashboard::default();
    let mut state = State::default();
    let bad = [
        payload("2013xx29", "WINNT", "{}", "{}"),
        payload("20131029030201", "WINNT", r#"{"GC_MS":[1,2,3,"x"]}"#, "{}"),
        r#"{"ver":1,"info":{}}"#.to_owned(),
        "[]".to_owned(),
    ];
    for json in &bad {
        assert!(
            d.map(&sub(json, "2013xx29", "20131030"), &mut state)
                .is_err(),
            "{json}"
        );
    }
    assert_eq!(state, State::default());
    // Malformed arrays are skipped and counted; the rest of the submission counts.
    let json = payload(
        "20131029030201",
        "WINNT",
        r#"{"GC_MS":[1,2],"GC_MAX_PAUSE_MS":[0.5,1,2,-1,-1,0,0]}"#,
        "{}",
    );
    d.map(&sub(&json, "x", "20131030"), &mut state).unwrap();
    assert_eq!(state.malformed.get("GC_MS"), Some(&1));
    assert_eq!(state.malformed.get("GC_MAX_PAUSE_MS"), Some(&1));
    // Hostile dimensions cannot escape the output folder.
    let json = payload(
        "20131029030201",
        "../..",
        r#"{"GC_MS":[1,2,3,10,-1,-1,5,0]}"#,
        "{}",
    )
    .replace("\"nightly\"", "\"../../etc\"");
    let mut s = State::default();
    d.map(&sub(&json, "x", "20131030"), &mut s).unwrap();
    for path in files(s).keys() {
        spotmill_guest::__private::check_output_path(path).unwrap();
        assert!(
            path.split('/').all(|seg| seg != ".." && seg != "."),
            "{path}"
        );
    }
}

#[test]
fn params_choose_the_definitions() {
    let mut d = Dashboard::default();
    d.setup(&serde_json::json!({"histograms": {"ONLY": {"kind": "flag"}}}))
        .unwrap();
    let mut s = State::default();
    let json = payload(
        "20131029030201",
        "WINNT",
        r#"{"ONLY":[0,1,0,0,-1,-1,0,0],"GC_MS":[1,2,3,10,-1,-1,5,0]}"#,
        "{}",
    );
    d.map(&sub(&json, "x", "20131030"), &mut s).unwrap();
    assert_eq!(s.unknown.get("GC_MS"), Some(&1));
    assert!(d.setup(&serde_json::json!({"histograms": 3})).is_err());
    assert!(d
        .setup(&serde_json::json!({"histograms": {"A/B": {"kind": "flag"}}}))
        .is_err());
    let mut fresh = Dashboard::default();
    fresh.setup(&Value::Null).unwrap();
    assert!(fresh.definitions.len() > 500);
    assert_eq!(days("20131029").unwrap() - days("20130831").unwrap(), 59);
    assert!(days("20130230").is_none() && days("2013023").is_none());
    assert_eq!(clean(Some("..")), "_");
    assert_eq!(clean(Some("_id")), "__id");
    assert_eq!(clean(None), "unknown");
    let _ = unpack(0);
}
