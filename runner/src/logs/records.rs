//! Record framing of published logs: `<document id>\t<minified JSON>\n`.
//!
//! This is the hot path of every task (hundreds of MB/s of uncompressed text), so the reader
//! scans the decoder's buffer with `memchr`, copies each record once into its own `Vec`, and
//! only falls back to an internal (reused) line buffer when a line spans buffer refills.
//! JSON is not validated here: the sandboxed guest parses it anyway, and a bad record must be
//! attributed there, with its line and offset.

use std::fmt;
use std::io::{self, BufRead};

use memchr::memchr;
use serde::{Deserialize, Serialize};

/// One line of a log: a record, or a line we skipped and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    Record(Record),
    Skipped(Skip),
}

/// A record: the document id and its JSON bytes (not validated, trailing `\r` stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub json: Vec<u8>,
    /// 1-based line number in the uncompressed stream.
    pub line: u64,
    /// Byte offset of the line start in the uncompressed stream.
    pub offset: u64,
}

/// A line that is not a record; counted and reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// 1-based line number in the uncompressed stream.
    pub line: u64,
    /// Byte offset of the line start in the uncompressed stream.
    pub offset: u64,
    pub reason: SkipReason,
}

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// No tab separating the document id from the JSON.
    NoTab,
    /// Longer than the limit (`bytes` excludes the newline); discarded without buffering it.
    TooLong { bytes: u64, limit: usize },
    /// The document id is empty or not UTF-8.
    BadId,
    /// Nothing on the line (after stripping a trailing `\r`).
    EmptyLine,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoTab => f.write_str("no tab between document id and JSON"),
            SkipReason::TooLong { bytes, limit } => {
                write!(
                    f,
                    "line of {bytes} bytes exceeds the {limit}-byte line limit"
                )
            }
            SkipReason::BadId => f.write_str("document id is empty or not UTF-8"),
            SkipReason::EmptyLine => f.write_str("empty line"),
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (byte {}): {}",
            self.line, self.offset, self.reason
        )
    }
}

/// Splits an uncompressed log stream into [`LogItem`]s.
///
/// After the first `Err` (a decode or read error, which names the file when it comes from
/// [`open_decoder`](super::container::open_decoder)) the iterator ends: the stream position is
/// unknown, so nothing after it can be trusted.
pub struct RecordReader<R: BufRead> {
    reader: R,
    max_line_bytes: usize,
    /// A line that spans buffer refills; reused, never longer than `max_line_bytes`.
    pending: Vec<u8>,
    /// Lines produced so far (= number of the last line).
    line: u64,
    /// Uncompressed bytes consumed so far.
    offset: u64,
    done: bool,
}

/// How one line ended up, before it is classified.
enum Line {
    /// The whole line was in the reader's buffer and has been classified already.
    Direct(LogItem),
    /// The line is in `pending`.
    Pending,
    TooLong(u64),
    End,
}

impl<R: BufRead> RecordReader<R> {
    /// `max_line_bytes` caps a line's length (excluding `\n`); longer lines are skipped.
    /// Give `reader` a large buffer (e.g. 256 KiB): whole lines are then copied only once.
    pub fn new(reader: R, max_line_bytes: usize) -> RecordReader<R> {
        RecordReader {
            reader,
            max_line_bytes,
            pending: Vec::new(),
            line: 0,
            offset: 0,
            done: false,
        }
    }

    /// Uncompressed bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// Lines read so far (records and skips).
    pub fn lines_read(&self) -> u64 {
        self.line
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn next_item(&mut self) -> io::Result<Option<LogItem>> {
        let start = self.offset;
        let line = self.line + 1;
        let item = match self.read_line(line, start)? {
            Line::End => return Ok(None),
            Line::Direct(item) => item,
            Line::Pending => classify(&self.pending, line, start),
            Line::TooLong(bytes) => LogItem::Skipped(Skip {
                line,
                offset: start,
                reason: SkipReason::TooLong {
                    bytes,
                    limit: self.max_line_bytes,
                },
            }),
        };
        self.line = line;
        Ok(Some(item))
    }

    /// Reads one line, in constant memory whatever its length.
    fn read_line(&mut self, line: u64, start: u64) -> io::Result<Line> {
        self.pending.clear();
        let mut len: u64 = 0;
        let mut too_long = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                // A final line without `\n` still counts.
                return Ok(match (len, too_long) {
                    (0, _) => Line::End,
                    (bytes, true) => Line::TooLong(bytes),
                    _ => Line::Pending,
                });
            }
            let (take, newline) = match memchr(b'\n', buf) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            len += take as u64;
            too_long |= len > self.max_line_bytes as u64;
            let direct = newline && !too_long && self.pending.is_empty();
            let item = direct.then(|| classify(&buf[..take], line, start));
            if !too_long && !direct {
                self.pending.extend_from_slice(&buf[..take]);
            } else if too_long {
                self.pending.clear();
            }
            let consumed = take + usize::from(newline);
            self.reader.consume(consumed);
            self.offset += consumed as u64;
            if let Some(item) = item {
                return Ok(Line::Direct(item));
            }
            if newline {
                return Ok(if too_long {
                    Line::TooLong(len)
                } else {
                    Line::Pending
                });
            }
        }
    }
}

/// Turns one line (without `\n`) into a record or a skip.
fn classify(raw: &[u8], line: u64, offset: u64) -> LogItem {
    let content = raw.strip_suffix(b"\r").unwrap_or(raw);
    let skip = |reason| {
        LogItem::Skipped(Skip {
            line,
            offset,
            reason,
        })
    };
    if content.is_empty() {
        return skip(SkipReason::EmptyLine);
    }
    // Split at the FIRST tab: ids never contain one, the JSON might.
    let Some(tab) = memchr(b'\t', content) else {
        return skip(SkipReason::NoTab);
    };
    let id = match std::str::from_utf8(&content[..tab]) {
        Ok(id) if !id.is_empty() => id,
        _ => return skip(SkipReason::BadId),
    };
    LogItem::Record(Record {
        id: id.to_owned(),
        json: content[tab + 1..].to_vec(),
        line,
        offset,
    })
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = io::Result<LogItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_item() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::container::open_decoder;
    use crate::logs::container::tests::{data, xz};
    use std::io::{BufReader, Cursor, Read};

    const BIG: usize = 256 * 1024;

    fn items(bytes: &[u8], capacity: usize, max: usize) -> Vec<LogItem> {
        let reader = BufReader::with_capacity(capacity, Cursor::new(bytes.to_vec()));
        RecordReader::new(reader, max)
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    fn decoded(name: &str) -> Vec<LogItem> {
        let dec = open_decoder(Cursor::new(data(name)), name).unwrap();
        RecordReader::new(BufReader::with_capacity(BIG, dec), 1 << 24)
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    fn records(items: &[LogItem]) -> Vec<&Record> {
        items
            .iter()
            .filter_map(|i| match i {
                LogItem::Record(r) => Some(r),
                LogItem::Skipped(_) => None,
            })
            .collect()
    }

    fn skip(line: u64, offset: u64, reason: SkipReason) -> LogItem {
        LogItem::Skipped(Skip {
            line,
            offset,
            reason,
        })
    }

    fn record(id: &str, json: &str, line: u64, offset: u64) -> LogItem {
        LogItem::Record(Record {
            id: id.into(),
            json: json.into(),
            line,
            offset,
        })
    }

    #[test]
    fn test_txt_in_both_containers() {
        let expected = vec![
            skip(1, 0, SkipReason::NoTab),
            skip(2, 7, SkipReason::NoTab),
            skip(3, 14, SkipReason::NoTab),
            record("another ", "line", 4, 21),
            skip(5, 35, SkipReason::NoTab),
        ];
        assert_eq!(decoded("test.txt.xz"), expected);
        assert_eq!(decoded("test.txt.lzma"), expected);
    }

    #[test]
    fn real_sample_22_has_one_record() {
        let items = decoded("ss-ff-n-22.lzma");
        assert_eq!(items.len(), 1);
        let recs = records(&items);
        assert_eq!(recs.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&recs[0].json).unwrap();
        assert!(v["info"]["OS"].is_string(), "info.OS in {}", recs[0].id);
        assert_eq!((recs[0].line, recs[0].offset), (1, 0));
    }

    #[test]
    fn real_sample_28_has_four_records() {
        let items = decoded("ss-ff-n-28.lzma");
        let recs = records(&items);
        assert_eq!(items.len(), 4);
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "41550578-ba6c-4228-8fe8-eb4ba6fb2fe1",
                "7dbe9640-0a27-4c89-b937-abc19ecc2328",
                "fa35a0ff-3a75-4df7-89a3-cbca786c9727",
                "47656810-b826-49d8-bdae-8d9e8e656fae",
            ]
        );
        let mut expected_offset = 0;
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.line, i as u64 + 1);
            assert_eq!(r.offset, expected_offset);
            expected_offset += (r.id.len() + 1 + r.json.len() + 1) as u64;
            let v: serde_json::Value =
                serde_json::from_slice(&r.json).unwrap_or_else(|e| panic!("record {}: {e}", r.id));
            assert!(v["info"]["OS"].is_string(), "info.OS in {}", r.id);
        }
    }

    #[test]
    fn bytes_read_counts_uncompressed_bytes() {
        let dec = open_decoder(Cursor::new(data("test.txt.lzma")), "t").unwrap();
        let mut reader = RecordReader::new(BufReader::new(dec), 100);
        assert_eq!(reader.bytes_read(), 0);
        reader.next().unwrap().unwrap();
        assert_eq!(reader.bytes_read(), 7);
        assert_eq!(reader.by_ref().count(), 4);
        assert_eq!(reader.bytes_read(), 42);
        assert_eq!(reader.lines_read(), 5);
    }

    #[test]
    fn too_long_line_is_skipped_and_reading_goes_on() {
        let mut text = b"a\t{}\n".to_vec();
        text.extend(vec![b'x'; 100]);
        text.extend(b"\tmore\nb\t{\"k\":1}\n");
        for capacity in [7, 16, BIG] {
            let got = items(&text, capacity, 10);
            assert_eq!(
                got,
                vec![
                    record("a", "{}", 1, 0),
                    skip(
                        2,
                        5,
                        SkipReason::TooLong {
                            bytes: 105,
                            limit: 10
                        }
                    ),
                    record("b", "{\"k\":1}", 3, 111),
                ],
                "buffer capacity {capacity}"
            );
        }
    }

    #[test]
    fn limit_is_inclusive_and_final_long_line_counts() {
        let got = items(b"id\t4567\nid\t45678\nid\t456", BIG, 7);
        assert_eq!(
            got,
            vec![
                record("id", "4567", 1, 0),
                skip(2, 8, SkipReason::TooLong { bytes: 8, limit: 7 }),
                record("id", "456", 3, 17),
            ]
        );
        let got = items(b"ok\t1\nid\t45678", 4, 7);
        assert_eq!(
            got[1],
            skip(2, 5, SkipReason::TooLong { bytes: 8, limit: 7 })
        );
    }

    #[test]
    fn over_long_line_uses_constant_memory() {
        /// 64 MiB of `x` without a newline, then one record.
        struct Endless {
            left: u64,
            tail: Cursor<&'static [u8]>,
        }
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.left == 0 {
                    return self.tail.read(buf);
                }
                let n = buf.len().min(self.left as usize);
                buf[..n].fill(b'x');
                self.left -= n as u64;
                Ok(n)
            }
        }
        let big = 64u64 << 20;
        let source = Endless {
            left: big,
            tail: Cursor::new(b"\nid\t{}\n"),
        };
        let limit = 1 << 20;
        let mut reader = RecordReader::new(BufReader::with_capacity(BIG, source), limit);
        let first = reader.next().unwrap().unwrap();
        assert_eq!(first, skip(1, 0, SkipReason::TooLong { bytes: big, limit }));
        assert!(
            reader.pending.capacity() <= 2 * limit,
            "line buffer grew to {}",
            reader.pending.capacity()
        );
        assert_eq!(
            reader.next().unwrap().unwrap(),
            record("id", "{}", 2, big + 1)
        );
        assert!(reader.next().is_none());
    }

    #[test]
    fn framing_edge_cases() {
        let text = b"\n\r\nnotab\r\n\t{}\nid\t{\"a\":\"x\ty\"}\r\nlast\t{}";
        let got = items(text, BIG, 1000);
        assert_eq!(
            got,
            vec![
                skip(1, 0, SkipReason::EmptyLine),
                skip(2, 1, SkipReason::EmptyLine),
                skip(3, 3, SkipReason::NoTab),
                skip(4, 10, SkipReason::BadId),
                record("id", "{\"a\":\"x\ty\"}", 5, 14),
                record("last", "{}", 6, 30),
            ]
        );
        let got = items(b"\xff\xfe\t{}\n", BIG, 1000);
        assert_eq!(got, vec![skip(1, 0, SkipReason::BadId)]);
        assert!(items(b"", BIG, 10).is_empty());
    }

    #[test]
    fn tiny_buffers_give_the_same_items() {
        let mut text = Vec::new();
        for i in 0..500 {
            let body = "y".repeat(i * 7 % 97);
            text.extend(format!("doc-{i}\t{{\"b\":\"{body}\"}}\n").as_bytes());
            if i % 50 == 0 {
                text.extend(b"junk line\n\r\n");
            }
        }
        let reference = items(&text, BIG, 80);
        assert!(records(&reference).len() > 300);
        assert!(reference.iter().any(|i| matches!(
            i,
            LogItem::Skipped(Skip {
                reason: SkipReason::TooLong { .. },
                ..
            })
        )));
        for capacity in [1, 2, 3, 5, 64, 1000] {
            assert_eq!(items(&text, capacity, 80), reference, "capacity {capacity}");
        }
    }

    #[test]
    fn decode_error_ends_iteration_with_an_error() {
        let mut text = Vec::new();
        for i in 0..20_000 {
            text.extend(format!("doc-{i}\t{{\"n\":{}}}\n", i * 7919 % 10007).as_bytes());
        }
        let full = xz(&text);
        let cut = full[..full.len() / 2].to_vec();
        let dec = open_decoder(Cursor::new(cut), "cut-in-half.xz").unwrap();
        let mut reader = RecordReader::new(BufReader::with_capacity(BIG, dec), 1000);
        let mut ok = 0;
        let err = loop {
            match reader.next() {
                Some(Ok(_)) => ok += 1,
                Some(Err(e)) => break e,
                None => panic!("a truncated stream must not end cleanly"),
            }
        };
        assert!(ok > 0 && ok < 20_000, "{ok}");
        assert!(err.to_string().contains("cut-in-half.xz"), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(reader.next().is_none());
    }

    /// Throughput of the framing alone: `cargo test --release -p spotmill --lib
    /// logs::records::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let json = format!("{{\"h\":[{}]}}", "12,".repeat(26_000));
        let mut text = Vec::new();
        while text.len() < 512 << 20 {
            text.extend(b"0ab8723b-6fb3-455b-b34b-04d97482fda2\t");
            text.extend(json.as_bytes());
            text.push(b'\n');
        }
        let start = std::time::Instant::now();
        let reader = RecordReader::new(BufReader::with_capacity(BIG, &text[..]), 1 << 24);
        let n = reader
            .filter(|i| matches!(i, Ok(LogItem::Record(_))))
            .count();
        let secs = start.elapsed().as_secs_f64();
        println!("{n} records, {:.0} MB/s", text.len() as f64 / secs / 1e6);
    }
}
