//! Object keys of published logs and the six dimensions they carry.
//!
//! A published log lives under
//! `reason/appName/channel/version/buildId.submissionDate.v2.log.<uuid>.<ext>`, relative to the
//! data root (a bucket prefix or a local folder). The dimensions are only ever read from the key,
//! never from the records, so listing and filtering need no decompression.

use serde::{Deserialize, Serialize};

/// Number of positional dimensions in a key (and in a filter).
pub const DIMENSION_COUNT: usize = 6;

/// The only log version Spotmill reads: ver 2 payloads carry histograms as flat arrays, older
/// versions use another shape that the analyses would misread.
pub const LOG_VERSION: &str = "v2";

/// Container extensions a published key may end with (the container is still detected by its
/// magic bytes; the extension only keeps stray files out of the listing).
pub const EXTENSIONS: [&str; 2] = ["lzma", "xz"];

/// The six dimensions of a published log, in key order. Values are sanitised (see [`sanitize`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dimensions {
    pub reason: String,
    pub app_name: String,
    pub channel: String,
    pub version: String,
    pub build_id: String,
    pub submission_date: String,
}

impl Dimensions {
    /// The values in key (and filter) order, so positional code can index them.
    pub fn as_array(&self) -> [&str; DIMENSION_COUNT] {
        [
            &self.reason,
            &self.app_name,
            &self.channel,
            &self.version,
            &self.build_id,
            &self.submission_date,
        ]
    }
}

/// A key that does not follow the published layout; says which key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object key `{key}`: {problem} (expected reason/appName/channel/version/buildId.submissionDate.v2.log.<uuid>.lzma|xz)")]
pub struct KeyError {
    pub key: String,
    pub problem: String,
}

impl KeyError {
    fn new(key: &str, problem: impl Into<String>) -> KeyError {
        KeyError {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The telemetry-server's dimension sanitiser, `TelemetrySchema.safe_filename` in
/// mozilla/telemetry-server `telemetry/telemetry_schema.py`:
/// `re.sub(r'[^a-zA-Z0-9_/.]', "_", value)`.
///
/// Every character outside ASCII letters, digits, `_`, `/` and `.` becomes one `_` (one per
/// character: the server applied it to JSON-decoded unicode strings). `/` and `.` survive because
/// upstream sanitised the joined directory path, not each value; we keep that so keys written by
/// the server and values sanitised here agree byte for byte.
pub fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| if is_safe_char(c) { c } else { '_' })
        .collect()
}

/// Characters `sanitize` keeps as they are.
fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.')
}

/// Parses a key relative to the data root into its dimensions.
///
/// Strict on purpose: a file that does not follow the layout is reported by the lister instead
/// of being read with made-up dimensions.
pub fn parse_key(key: &str) -> Result<Dimensions, KeyError> {
    let dirs: Vec<&str> = key.split('/').collect();
    let [reason, app_name, channel, version, file_name] = dirs[..] else {
        return Err(KeyError::new(
            key,
            format!(
                "has {} `/`-separated parts, expected 5 (4 directories and a file name)",
                dirs.len()
            ),
        ));
    };
    let names = ["reason", "appName", "channel", "version"];
    for (name, value) in names.iter().zip([reason, app_name, channel, version]) {
        check_value(key, name, value)?;
    }
    let (build_id, submission_date) = parse_file_name(key, file_name)?;
    Ok(Dimensions {
        reason: reason.to_owned(),
        app_name: app_name.to_owned(),
        channel: channel.to_owned(),
        version: version.to_owned(),
        build_id: build_id.to_owned(),
        submission_date: submission_date.to_owned(),
    })
}

/// Splits `buildId.submissionDate.v2.log.<uuid>.<ext>` and returns (buildId, submissionDate).
fn parse_file_name<'a>(key: &str, file_name: &'a str) -> Result<(&'a str, &'a str), KeyError> {
    let parts: Vec<&str> = file_name.split('.').collect();
    let [build_id, submission_date, log_version, log, uuid, ext] = parts[..] else {
        return Err(KeyError::new(
            key,
            format!(
                "file name `{file_name}` has {} `.`-separated parts, expected 6",
                parts.len()
            ),
        ));
    };
    check_value(key, "buildId", build_id)?;
    check_value(key, "submissionDate", submission_date)?;
    if log_version != LOG_VERSION {
        return Err(KeyError::new(
            key,
            format!("log version `{log_version}` is not supported, only `{LOG_VERSION}`"),
        ));
    }
    if log != "log" {
        return Err(KeyError::new(
            key,
            format!("fourth file name part is `{log}`, expected `log`"),
        ));
    }
    if uuid.is_empty() || !uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(KeyError::new(
            key,
            format!("uuid `{uuid}` must be non-empty ASCII letters, digits or `-`"),
        ));
    }
    if !EXTENSIONS.contains(&ext) {
        return Err(KeyError::new(
            key,
            format!("extension `{ext}` is not one of {EXTENSIONS:?}"),
        ));
    }
    Ok((build_id, submission_date))
}

/// A dimension value must be present and already sanitised (the server never wrote others).
fn check_value(key: &str, name: &str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::new(key, format!("{name} is empty")));
    }
    if !value.chars().all(is_safe_char) {
        return Err(KeyError::new(
            key,
            format!(
                "{name} `{value}` is not sanitised (would be `{}`)",
                sanitize(value)
            ),
        ));
    }
    Ok(())
}

/// Builds the key of a log; the inverse of [`parse_key`]. Values are assumed sanitised.
pub fn object_key(d: &Dimensions, uuid: &str, ext: &str) -> String {
    format!(
        "{}/{}/{}/{}/{}.{}.{LOG_VERSION}.log.{uuid}.{ext}",
        d.reason, d.app_name, d.channel, d.version, d.build_id, d.submission_date
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_keys() -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/input.txt");
        let text = std::fs::read_to_string(path).expect("read tests/data/input.txt");
        text.lines()
            .map(|l| l.split('\t').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn sanitize_follows_telemetry_server() {
        // The cases of telemetry-server's test_safe_filename, plus the kept characters.
        assert_eq!(sanitize("saved-session"), "saved_session");
        assert_eq!(sanitize("Hello World!"), "Hello_World_");
        assert_eq!(sanitize("what\nam\ni"), "what_am_i");
        assert_eq!(sanitize("22.0a1"), "22.0a1");
        assert_eq!(sanitize("a/b_c.D9"), "a/b_c.D9");
        // One underscore per character, not per UTF-8 byte.
        assert_eq!(sanitize("né"), "n_");
        assert_eq!(sanitize(""), "");
    }

    #[test]
    fn parses_the_real_keys() {
        let keys = real_keys();
        assert_eq!(keys.len(), 2);
        let d = parse_key(&keys[0]).unwrap();
        assert_eq!(
            d.as_array(),
            [
                "saved_session",
                "Firefox",
                "nightly",
                "22.0a1",
                "20130226031002",
                "20131011"
            ]
        );
        let d = parse_key(&keys[1]).unwrap();
        assert_eq!(d.version, "28.0a1");
        assert_eq!(d.build_id, "20131029030201");
        assert_eq!(d.submission_date, "20131029");
    }

    #[test]
    fn object_key_round_trips() {
        for key in real_keys() {
            let d = parse_key(&key).unwrap();
            let file = key.rsplit('/').next().unwrap();
            let parts: Vec<&str> = file.split('.').collect();
            assert_eq!(object_key(&d, parts[4], parts[5]), key);
        }
    }

    #[test]
    fn rejects_keys_off_the_layout() {
        let good = "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a.lzma";
        assert!(parse_key(good).is_ok());
        let cases = [
            (
                "Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a.lzma",
                "parts",
            ),
            (
                "a/saved_session/Firefox/nightly/22.0a1/1.2.v2.log.e28a.lzma",
                "parts",
            ),
            (
                "saved_session/Firefox/nightly/22.0a1/1.2.v1.log.e28a.lzma",
                "version",
            ),
            (
                "saved_session/Firefox/nightly/22.0a1/1.2.v2.txt.e28a.lzma",
                "`log`",
            ),
            (
                "saved_session/Firefox/nightly/22.0a1/1.2.v2.log.e28a.gz",
                "extension",
            ),
            (
                "saved_session/Firefox/nightly/22.0a1/1.2.v2.log.e28a.lzma.part",
                "parts",
            ),
            (
                "saved_session/Firefox/nightly/22.0a1/1.2.v2.log..lzma",
                "uuid",
            ),
            (
                "saved_session//nightly/22.0a1/1.2.v2.log.e28a.lzma",
                "appName is empty",
            ),
            (
                "saved-session/Firefox/nightly/22.0a1/1.2.v2.log.e28a.lzma",
                "saved_session",
            ),
            (
                "saved_session/Firefox/nightly/22.0a1/.2.v2.log.e28a.lzma",
                "buildId",
            ),
        ];
        for (key, needle) in cases {
            let err = parse_key(key).expect_err(key);
            let msg = err.to_string();
            assert!(msg.contains(key), "{msg}");
            assert!(msg.contains(needle), "{key}: {msg}");
        }
    }
}
