//! os-distribution over real and generated logs gives exactly the counts the test computes
//! by itself (with the `xz`/`lzma` tools and serde_json, not Spotmill's reader).

mod common;

use std::path::Path;

use common::*;

#[test]
fn os_distribution_over_the_real_samples_matches_an_independent_count() {
    let dir = tempdir();
    let input = dir.path().join("input");
    let output = dir.path().join("output");
    let samples = lay_out_samples(&input);
    let (expected, records) = count_os_in_files(samples.iter().map(|(_, p)| p.as_path()));
    assert!(records > 0);

    let run = run(
        &analysis("os-distribution"),
        &input,
        &output,
        &["--jobs", "2"],
    );
    run.assert_code(0);
    let s = &run.summary;
    assert_eq!(s.status, "ok", "{}", run.out);
    assert_eq!(s.input_files, samples.len() as u64);
    assert_eq!(s.records, records, "{}", run.out);
    assert_eq!(s.records_mapped, records);
    assert_eq!(s.records_quarantined, 0);
    assert!(s.file_errors.is_empty() && s.task_failures.is_empty());
    assert_eq!(s.output_files, vec!["os-distribution.json".to_string()]);
    assert_eq!(published_counts(&output), expected);
}

/// The generated tree's channel (level 2) and submission date (level 5), read from the key
/// by the test's own code.
fn channel_and_date(key: &str) -> (String, String) {
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(parts.len(), 5, "unexpected key {key}");
    let date = parts[4].split('.').nth(1).expect("buildId.date...");
    (parts[2].to_string(), date.to_string())
}

#[test]
fn a_filter_selects_exactly_the_matching_files_of_a_generated_tree() {
    let dir = tempdir();
    let input = dir.path().join("input");
    let gen = spotmill([
        "gen".as_ref(),
        "--out".as_ref(),
        input.as_os_str(),
        "--submissions".as_ref(),
        "300".as_ref(),
        "--seed".as_ref(),
        "7".as_ref(),
        "--max-file-mb".as_ref(),
        "1".as_ref(),
        "--container".as_ref(),
        "mixed".as_ref(),
        "--json".as_ref(),
    ]);
    gen.assert_no_runner_panic();
    assert_eq!(gen.code, Some(0), "{gen}");

    let channels = ["nightly", "aurora"];
    let (min, max) = ("20131101", "20131105");
    let filter = dir.path().join("filter.json");
    std::fs::write(
        &filter,
        serde_json::to_string_pretty(&serde_json::json!({
            "version": 1,
            "dimensions": [
                {"field_name": "reason", "allowed_values": "*"},
                {"field_name": "appName", "allowed_values": "*"},
                {"field_name": "appUpdateChannel", "allowed_values": channels},
                {"field_name": "appVersion", "allowed_values": "*"},
                {"field_name": "appBuildID", "allowed_values": "*"},
                {"field_name": "submission_date", "allowed_values": {"min": min, "max": max}},
            ]
        }))
        .unwrap(),
    )
    .unwrap();

    let all = files_under(&input);
    let matching: Vec<&(String, std::path::PathBuf)> = all
        .iter()
        .filter(|(key, _)| {
            let (channel, date) = channel_and_date(key);
            channels.contains(&channel.as_str()) && min <= date.as_str() && date.as_str() <= max
        })
        .collect();
    assert!(
        !matching.is_empty() && matching.len() < all.len(),
        "the filter must select some but not all of the {} files (it selected {})",
        all.len(),
        matching.len()
    );
    let (expected, records) = count_os_in_files(matching.iter().map(|(_, p)| p.as_path()));
    let (unfiltered, all_records) = count_os_in_files(all.iter().map(|(_, p)| p.as_path()));
    assert_ne!(
        expected, unfiltered,
        "pick a filter that changes the counts"
    );

    // Filtered.
    let output = dir.path().join("filtered");
    let filter_arg = filter.to_str().unwrap();
    let run = run(
        &analysis("os-distribution"),
        &input,
        &output,
        &["--filter", filter_arg, "--jobs", "2"],
    );
    run.assert_code(0);
    assert_eq!(run.summary.status, "ok");
    assert_eq!(
        run.summary.input_files,
        matching.len() as u64,
        "files selected by the filter\n{}",
        run.out
    );
    assert_eq!(run.summary.records, records);
    assert_eq!(run.summary.records_mapped, records);
    assert_eq!(published_counts(&output), expected);

    // Unfiltered, for contrast: the filter did something.
    let output_all = dir.path().join("unfiltered");
    let run_all = run_unfiltered(&input, &output_all);
    assert_eq!(run_all.summary.input_files, all.len() as u64);
    assert_eq!(run_all.summary.records, all_records);
    assert_eq!(published_counts(&output_all), unfiltered);
    assert_ne!(published_counts(&output), published_counts(&output_all));
}

fn run_unfiltered(input: &Path, output: &Path) -> Run {
    let run = run(
        &analysis("os-distribution"),
        input,
        output,
        &["--jobs", "2"],
    );
    run.assert_code(0);
    run
}
