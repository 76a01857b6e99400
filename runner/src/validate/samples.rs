//! Sample submissions for a dry-run: the analyst's own folder, or the bundled real
//! samples plus a few generated ones.

use std::path::Path;

use crate::logs::{parse_key, Dimensions, Filter, LogItem};
use crate::store::{list_inputs, open_input};

/// One submission to dry-run, with where it came from.
#[derive(Debug, Clone)]
pub struct SampleRecord {
    pub id: String,
    pub dimensions: Dimensions,
    pub json: Vec<u8>,
    /// File key and line, for messages.
    pub origin: String,
}

/// The records of a dry-run and a sentence saying what they are.
#[derive(Debug, Clone)]
pub struct SampleSource {
    pub description: String,
    pub records: Vec<SampleRecord>,
}

/// The two real 2013 logs (telemetry-server's test fixtures), under their keys.
const BUNDLED: [(&str, &[u8]); 2] = [
    (
        "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma",
        include_bytes!("../../tests/data/ss-ff-n-22.lzma"),
    ),
    (
        "saved_session/Firefox/nightly/28.0a1/20131029030201.20131029.v2.log.0ab8723b6fb3455bb34b04d97482fda2.lzma",
        include_bytes!("../../tests/data/ss-ff-n-28.lzma"),
    ),
];

/// Generated submissions added to the bundled ones, for variety of channels and OSes.
const GENERATED: u64 = 40;

/// Reads up to `max` records from `input` (a published-layout folder), or the bundled
/// samples when `input` is None.
pub fn load_samples(input: Option<&Path>, max: usize) -> anyhow::Result<SampleSource> {
    match input {
        Some(dir) => {
            let listing = list_inputs(dir, &Filter::all())?;
            let mut records = Vec::new();
            for file in &listing.files {
                if records.len() >= max {
                    break;
                }
                let reader = open_input(file, 64 << 20)?;
                read_records(reader, &file.key, &file.dimensions, max, &mut records)?;
            }
            if records.is_empty() {
                anyhow::bail!("no records found under {}", dir.display());
            }
            Ok(SampleSource {
                description: format!("from {}", dir.display()),
                records,
            })
        }
        None => bundled(max),
    }
}

fn bundled(max: usize) -> anyhow::Result<SampleSource> {
    let mut records = Vec::new();
    for (key, bytes) in BUNDLED {
        let dimensions = parse_key(key)?;
        let decoder = crate::logs::open_decoder(std::io::Cursor::new(bytes), key)?;
        let reader = crate::logs::RecordReader::new(std::io::BufReader::new(decoder), 64 << 20);
        read_records(reader, key, &dimensions, max, &mut records)?;
    }
    let dir = std::env::temp_dir().join(format!("spotmill-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = crate::gen::GenConfig {
        seed: 1,
        submissions: GENERATED,
        threads: 1,
        ..Default::default()
    };
    let generated = crate::gen::generate(&dir, &config, &|_| {})
        .map_err(anyhow::Error::from)
        .and_then(|_| load_samples(Some(&dir), max.saturating_sub(records.len())));
    let _ = std::fs::remove_dir_all(&dir);
    records.extend(generated?.records);
    Ok(SampleSource {
        description: "bundled: 5 real 2013 submissions and 40 generated ones".to_string(),
        records,
    })
}

fn read_records<R: std::io::BufRead>(
    reader: crate::logs::RecordReader<R>,
    key: &str,
    dimensions: &Dimensions,
    max: usize,
    out: &mut Vec<SampleRecord>,
) -> anyhow::Result<()> {
    for item in reader {
        if out.len() >= max {
            break;
        }
        if let LogItem::Record(record) = item? {
            out.push(SampleRecord {
                id: record.id,
                dimensions: dimensions.clone(),
                json: record.json,
                origin: format!("{key}, line {}", record.line),
            });
        }
    }
    Ok(())
}
