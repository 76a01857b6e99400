//! Compressed containers of published logs: `.xz` (possibly concatenated streams) and
//! LZMA_Alone (`.lzma`).
//!
//! The container is recognised by its magic bytes, never by the file name: renamed or
//! mis-suffixed objects exist. Decoding streams through liblzma (xz2) with a fixed memory limit,
//! so memory stays constant whatever the file size.
//!
//! We drive `xz2::stream::Stream` ourselves instead of using `xz2::bufread::XzDecoder` so that
//! (a) every error names the file and says whether it is corrupt or truncated, (b) a stream that
//! ends without its end-of-stream marker is always an error, never a silent short read, and
//! (c) bytes after the end of an LZMA_Alone stream (which has no framing for a second stream)
//! are reported instead of silently dropped.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use xz2::stream::{Action, Status, Stream};

/// The `.xz` stream header magic.
const XZ_MAGIC: [u8; 6] = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00];

/// LZMA_Alone header: properties byte, 4-byte dictionary size, 8-byte uncompressed size.
const LZMA_ALONE_HEADER: usize = 13;

/// liblzma's own sanity limit on a declared LZMA_Alone uncompressed size (2^38 bytes); larger
/// values mean the bytes are not an LZMA_Alone header.
const LZMA_ALONE_MAX_SIZE: u64 = 1 << 38;

/// Bytes `open_decoder` peeks to recognise a container.
pub const HEADER_BYTES: usize = LZMA_ALONE_HEADER;

/// Decoder memory limit. Logs are written with dictionaries up to 64 MiB (xz -9), which need
/// about 65 MiB to decode; anything far beyond that is a hostile or broken header.
pub const DEFAULT_MEMLIMIT: u64 = 256 * 1024 * 1024;

/// Compressed-input buffer size; the output side is buffered by the caller.
const INPUT_BUFFER: usize = 64 * 1024;

/// The containers Spotmill reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Xz,
    LzmaAlone,
}

impl std::fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerKind::Xz => "xz",
            ContainerKind::LzmaAlone => "LZMA_Alone (.lzma)",
        })
    }
}

/// Why a container could not be opened or decoded. Errors during reading reach callers as an
/// `io::Error` wrapping one of these (`err.get_ref()` downcasts to it).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Zero bytes: count it as an empty input, not a failure of the job.
    #[error("{name}: empty file (0 bytes), no records")]
    Empty { name: String },
    #[error(
        "{name}: unknown container format (first bytes {head}); expected xz (fd 37 7a 58 5a 00) \
         or LZMA_Alone (.lzma)"
    )]
    UnknownFormat { name: String, head: String },
    #[error("{name}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{name}: corrupt {kind} data near compressed byte {offset}: {detail}; the object is \
         damaged, fetch it again or exclude it"
    )]
    Corrupt {
        name: String,
        kind: ContainerKind,
        offset: u64,
        detail: String,
    },
    #[error(
        "{name}: truncated {kind} data: the compressed input ends after {compressed_bytes} bytes \
         without an end-of-stream marker (partial upload or cut download?)"
    )]
    Truncated {
        name: String,
        kind: ContainerKind,
        compressed_bytes: u64,
    },
    #[error(
        "{name}: corrupt LZMA_Alone data: {trailing} unexpected bytes after the end of the \
         stream at compressed byte {offset} (two .lzma files concatenated?)"
    )]
    TrailingData {
        name: String,
        offset: u64,
        trailing: usize,
    },
    #[error(
        "{name}: decoding needs more than the {limit}-byte memory limit (dictionary too large); \
         the header is probably corrupt"
    )]
    MemLimit { name: String, limit: u64 },
}

impl ContainerError {
    /// The io::Error kind a reading error surfaces as.
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            ContainerError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            ContainerError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }
}

/// Recognises a container from its first bytes (give at least [`HEADER_BYTES`] when the file
/// has them). LZMA_Alone has no magic, so we apply liblzma's own plausibility rules: properties
/// byte < 225, dictionary size 2^n or 2^n + 2^(n-1) (or all ones), uncompressed size below 2^38
/// or unknown (all 0xFF).
pub fn detect(header: &[u8]) -> Option<ContainerKind> {
    if header.starts_with(&XZ_MAGIC) {
        return Some(ContainerKind::Xz);
    }
    if is_lzma_alone_header(header) {
        return Some(ContainerKind::LzmaAlone);
    }
    None
}

fn is_lzma_alone_header(header: &[u8]) -> bool {
    let Some(header) = header.get(..LZMA_ALONE_HEADER) else {
        return false;
    };
    let properties = header[0];
    let dict_size = u32::from_le_bytes(header[1..5].try_into().expect("4 bytes"));
    let size = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
    properties < 9 * 5 * 5
        && plausible_dict_size(dict_size)
        && (size == u64::MAX || size < LZMA_ALONE_MAX_SIZE)
}

/// liblzma's "picky" check (alone_decoder.c): round up to 2^n or 2^n + 2^(n-1) and compare.
fn plausible_dict_size(dict_size: u32) -> bool {
    if dict_size == u32::MAX {
        return true;
    }
    let mut d = dict_size.wrapping_sub(1);
    d |= d >> 2;
    d |= d >> 3;
    d |= d >> 4;
    d |= d >> 8;
    d |= d >> 16;
    d.wrapping_add(1) == dict_size
}

/// Opens a decompressing reader over `reader`, choosing the container from its magic bytes.
///
/// `name` (object key or path) is used in every error, including the `io::Error`s that
/// reading the returned stream may produce (corrupt data, truncation). The peeked header bytes
/// are replayed to the decoder, so `reader` is consumed exactly once, from its start.
pub fn open_decoder<R: Read + Send + 'static>(
    reader: R,
    name: &str,
) -> Result<Box<dyn Read + Send>, ContainerError> {
    open_decoder_with_limit(reader, name, DEFAULT_MEMLIMIT)
}

/// [`open_decoder`] with an explicit decoder memory limit in bytes.
pub fn open_decoder_with_limit<R: Read + Send + 'static>(
    mut reader: R,
    name: &str,
    memlimit: u64,
) -> Result<Box<dyn Read + Send>, ContainerError> {
    let mut header = [0u8; HEADER_BYTES];
    let len = read_up_to(&mut reader, &mut header).map_err(|source| ContainerError::Io {
        name: name.to_owned(),
        source,
    })?;
    let header = header[..len].to_vec();
    if header.is_empty() {
        return Err(ContainerError::Empty {
            name: name.to_owned(),
        });
    }
    let Some(kind) = detect(&header) else {
        return Err(ContainerError::UnknownFormat {
            name: name.to_owned(),
            head: hex_bytes(&header),
        });
    };
    let stream =
        new_stream(kind, memlimit).map_err(|e| stream_error(name, kind, 0, e, memlimit))?;
    let input = BufReader::with_capacity(INPUT_BUFFER, Cursor::new(header).chain(reader));
    Ok(Box::new(Decoder {
        input,
        stream,
        kind,
        name: name.to_owned(),
        memlimit,
        finished: false,
        pending_error: None,
    }))
}

fn new_stream(kind: ContainerKind, memlimit: u64) -> Result<Stream, xz2::stream::Error> {
    match kind {
        ContainerKind::Xz => Stream::new_stream_decoder(memlimit, xz2::stream::CONCATENATED),
        ContainerKind::LzmaAlone => Stream::new_lzma_decoder(memlimit),
    }
}

/// Reads until `buf` is full or the input ends; a short header must not be mistaken for EOF.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn hex_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn stream_error(
    name: &str,
    kind: ContainerKind,
    offset: u64,
    error: xz2::stream::Error,
    memlimit: u64,
) -> ContainerError {
    match error {
        xz2::stream::Error::MemLimit => ContainerError::MemLimit {
            name: name.to_owned(),
            limit: memlimit,
        },
        other => ContainerError::Corrupt {
            name: name.to_owned(),
            kind,
            offset,
            detail: other.to_string(),
        },
    }
}

/// Streaming decoder over a buffered compressed input.
struct Decoder<R: BufRead> {
    input: R,
    stream: Stream,
    kind: ContainerKind,
    name: String,
    memlimit: u64,
    /// liblzma reported the end of the (last) stream.
    finished: bool,
    /// An error met while the same call also produced bytes: those bytes are returned
    /// first (the records before the damage count), the error on the next read.
    pending_error: Option<io::Error>,
}

impl<R: BufRead> Decoder<R> {
    /// After the end of an LZMA_Alone stream nothing may follow (xz handles concatenation and
    /// padding itself, with `CONCATENATED`).
    fn check_trailing(&mut self) -> io::Result<usize> {
        if self.kind == ContainerKind::Xz {
            return Ok(0);
        }
        let trailing = self.fill()?.len();
        if trailing == 0 {
            return Ok(0);
        }
        Err(ContainerError::TrailingData {
            name: self.name.clone(),
            offset: self.stream.total_in(),
            trailing,
        }
        .into_io())
    }

    fn fill(&mut self) -> io::Result<&[u8]> {
        let name = &self.name;
        self.input.fill_buf().map_err(|source| {
            ContainerError::Io {
                name: name.clone(),
                source,
            }
            .into_io()
        })
    }

    fn error(&self, e: xz2::stream::Error) -> io::Error {
        stream_error(
            &self.name,
            self.kind,
            self.stream.total_in(),
            e,
            self.memlimit,
        )
        .into_io()
    }

    fn truncated(&self) -> io::Error {
        ContainerError::Truncated {
            name: self.name.clone(),
            kind: self.kind,
            compressed_bytes: self.stream.total_in(),
        }
        .into_io()
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        if self.finished {
            return self.check_trailing();
        }
        loop {
            let input = match self.input.fill_buf() {
                Ok(input) => input,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    let name = self.name.clone();
                    return Err(ContainerError::Io { name, source }.into_io());
                }
            };
            let eof = input.is_empty();
            let action = if eof { Action::Finish } else { Action::Run };
            let (in_before, out_before) = (self.stream.total_in(), self.stream.total_out());
            let result = self.stream.process(input, buf, action);
            let consumed = (self.stream.total_in() - in_before) as usize;
            let produced = (self.stream.total_out() - out_before) as usize;
            self.input.consume(consumed);
            match result {
                Err(e) if produced > 0 => {
                    self.pending_error = Some(self.error(e));
                    return Ok(produced);
                }
                Err(e) => return Err(self.error(e)),
                Ok(Status::StreamEnd) => {
                    self.finished = true;
                    if produced == 0 {
                        return self.check_trailing();
                    }
                    return Ok(produced);
                }
                Ok(_) if produced > 0 => return Ok(produced),
                // Input exhausted but liblzma still expects more: the stream was cut short.
                Ok(_) if eof => return Err(self.truncated()),
                Ok(_) if consumed == 0 => {
                    return Err(self.error(xz2::stream::Error::Data));
                }
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use xz2::stream::LzmaOptions;

    pub(crate) fn data(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub(crate) fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    pub(crate) fn lzma_alone(bytes: &[u8]) -> Vec<u8> {
        let opts = LzmaOptions::new_preset(6).unwrap();
        let stream = Stream::new_lzma_encoder(&opts).unwrap();
        let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn decode(bytes: Vec<u8>, name: &str) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        let mut dec = open_decoder(Cursor::new(bytes), name).map_err(ContainerError::into_io)?;
        dec.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Pseudo-random text that compresses poorly enough to span many blocks.
    fn sample_text(lines: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..lines {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            writeln!(
                out,
                "id-{i}\t{{\"v\":{x},\"w\":\"{:x}\"}}",
                x.rotate_left(17)
            )
            .unwrap();
        }
        out
    }

    const TEST_TXT: &[u8] = b"line 1\nline 2\nline 3\nanother \tline\nline 5\n";

    #[test]
    fn detects_by_magic_not_name() {
        assert_eq!(detect(&data("test.txt.xz")), Some(ContainerKind::Xz));
        assert_eq!(
            detect(&data("test.txt.lzma")),
            Some(ContainerKind::LzmaAlone)
        );
        assert_eq!(
            detect(&data("ss-ff-n-28.lzma")),
            Some(ContainerKind::LzmaAlone)
        );
        assert_eq!(detect(b"{\"version\": 1}"), None);
        assert_eq!(detect(b"line 1\nline 2\n"), None);
        assert_eq!(detect(&[0x5d, 0, 0]), None, "too short for LZMA_Alone");
        // The .xz sample under a .lzma name still decodes as xz.
        assert_eq!(
            decode(data("test.txt.xz"), "renamed.lzma").unwrap(),
            TEST_TXT
        );
    }

    #[test]
    fn both_test_files_decode_to_the_same_lines() {
        assert_eq!(
            decode(data("test.txt.xz"), "test.txt.xz").unwrap(),
            TEST_TXT
        );
        assert_eq!(
            decode(data("test.txt.lzma"), "test.txt.lzma").unwrap(),
            TEST_TXT
        );
    }

    #[test]
    fn real_lzma_samples_decode() {
        let out = decode(data("ss-ff-n-22.lzma"), "ss-ff-n-22.lzma").unwrap();
        assert_eq!(out.len(), 60349);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let out = decode(data("ss-ff-n-28.lzma"), "ss-ff-n-28.lzma").unwrap();
        assert!(out.starts_with(b"41550578-ba6c-4228-8fe8-eb4ba6fb2fe1\t{"));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 4);
    }

    #[test]
    fn concatenated_xz_streams_are_all_read() {
        let (a, b) = (sample_text(1000), b"tail\tline\n".to_vec());
        let mut cat = xz(&a);
        cat.extend(xz(&b));
        let mut expected = a.clone();
        expected.extend(&b);
        assert_eq!(decode(cat.clone(), "cat.xz").unwrap(), expected);
        // Stream padding (4 zero bytes) between streams is legal xz.
        let mut padded = xz(&a);
        padded.extend([0u8; 4]);
        padded.extend(xz(&b));
        assert_eq!(decode(padded, "padded.xz").unwrap(), expected);
    }

    #[test]
    fn generated_lzma_alone_round_trips() {
        let text = sample_text(5000);
        assert_eq!(decode(lzma_alone(&text), "gen.lzma").unwrap(), text);
    }

    fn assert_truncated(bytes: Vec<u8>, name: &str) {
        let err = decode(bytes, name).expect_err("truncated input must fail");
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{msg}");
    }

    #[test]
    fn truncated_xz_is_an_error() {
        let full = xz(&sample_text(3000));
        assert_truncated(full[..full.len() / 2].to_vec(), "half.xz");
        // Cut inside the index/footer: all data decoded, end marker missing.
        assert_truncated(full[..full.len() - 8].to_vec(), "nofooter.xz");
        let real = data("test.txt.xz");
        assert_truncated(real[..real.len() / 2].to_vec(), "test-half.txt.xz");
    }

    #[test]
    fn truncated_lzma_is_an_error() {
        let real = data("ss-ff-n-28.lzma");
        assert_truncated(real[..real.len() / 2].to_vec(), "ss-ff-n-28-half.lzma");
        let real = data("test.txt.lzma");
        assert_truncated(real[..real.len() - 3].to_vec(), "test-cut.txt.lzma");
        let gen = lzma_alone(&sample_text(3000));
        assert_truncated(gen[..gen.len() / 2].to_vec(), "gen-half.lzma");
        // Header only: no compressed data at all.
        assert_truncated(gen[..HEADER_BYTES].to_vec(), "header-only.lzma");
    }

    fn assert_corrupt(bytes: Vec<u8>, name: &str) {
        let err = decode(bytes, name).expect_err("corrupt input must fail");
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn corrupted_byte_is_an_error() {
        let mut bytes = xz(&sample_text(3000));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        assert_corrupt(bytes, "flipped.xz");
        let mut bytes = data("ss-ff-n-28.lzma");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        // LZMA_Alone has no checksum; the range decoder notices the damage (or the size or
        // end marker no longer matches), either way it must not read as a clean stream.
        let err = decode(bytes, "flipped.lzma").expect_err("corrupt lzma must fail");
        let msg = err.to_string();
        assert!(msg.contains("flipped.lzma"), "{msg}");
        assert!(
            msg.contains("corrupt") || msg.contains("truncated"),
            "{msg}"
        );
    }

    #[test]
    fn trailing_garbage_after_lzma_alone_is_an_error() {
        let mut bytes = data("test.txt.lzma");
        bytes.extend(b"garbage");
        assert_corrupt(bytes, "trailing.lzma");
        let mut bytes = data("test.txt.xz");
        bytes.extend(b"garbage garbage!");
        assert_corrupt(bytes, "trailing.xz");
        // Fewer than a stream header's 12 bytes: liblzma waits for the rest of a header, so
        // this reads as a cut-off second stream. Still an error naming the file.
        let mut bytes = data("test.txt.xz");
        bytes.extend(b"garbage!");
        let err = decode(bytes, "short-trailing.xz").unwrap_err();
        assert!(err.to_string().contains("short-trailing.xz"), "{err}");
    }

    #[test]
    fn empty_and_unknown_inputs() {
        let err = open_decoder(Cursor::new(Vec::new()), "empty.xz")
            .err()
            .unwrap();
        assert!(matches!(err, ContainerError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("empty.xz"));
        let err = open_decoder(Cursor::new(b"PK\x03\x04zipfile".to_vec()), "data.zip")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(matches!(err, ContainerError::UnknownFormat { .. }), "{msg}");
        assert!(
            msg.contains("data.zip") && msg.contains("50 4b 03 04"),
            "{msg}"
        );
        let err = open_decoder(Cursor::new(b"x".to_vec()), "one-byte")
            .err()
            .unwrap();
        assert!(matches!(err, ContainerError::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn header_is_peeked_from_a_slow_reader() {
        /// Hands out one byte per read, like a socket under pressure.
        struct OneByte(Cursor<Vec<u8>>);
        impl Read for OneByte {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let mut out = Vec::new();
        open_decoder(OneByte(Cursor::new(data("test.txt.lzma"))), "slow.lzma")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, TEST_TXT);
    }

    #[test]
    fn memory_limit_is_enforced() {
        let bytes = data("ss-ff-n-28.lzma"); // 8 MiB dictionary
        let mut out = Vec::new();
        let err = open_decoder_with_limit(Cursor::new(bytes), "big-dict.lzma", 1 << 20)
            .map_err(ContainerError::into_io)
            .and_then(|mut d| d.read_to_end(&mut out))
            .expect_err("1 MiB is below what an 8 MiB dictionary needs");
        let msg = err.to_string();
        assert!(
            msg.contains("big-dict.lzma") && msg.contains("memory limit"),
            "{msg}"
        );
    }

    #[test]
    fn io_errors_are_downcastable() {
        let full = xz(b"abc\n");
        let err = decode(full[..full.len() - 4].to_vec(), "cut.xz").unwrap_err();
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<ContainerError>());
        assert!(
            matches!(inner, Some(ContainerError::Truncated { .. })),
            "{err:?}"
        );
    }
}
