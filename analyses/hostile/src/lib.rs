//! A hostile analysis, for testing the sandbox. Built once per cargo feature into
//! `hostile-<feature>.wasm`. It counts submissions per `info.OS` exactly like
//! os-distribution (same partial, same `os-distribution.json`), except on *triggering*
//! submissions, where it misbehaves as its feature says.
//!
//! Trigger: every submission by default; with params `{"trigger": "poison"}` only the
//! submissions whose id starts with `poison` (`{"trigger": "all"}` is the default).
//!
//! | feature | on a triggering submission |
//! |---|---|
//! | `infinite-loop` | loops forever without allocating (fuel / deadline) |
//! | `memory-hog` | allocates and touches 1 MiB blocks without end (memory cap) |
//! | `deep-recursion` | recurses without end (stack overflow trap) |
//! | `emit-flood` | `map` returns `count` record errors (default 2,000,000) of `message_bytes` bytes (default 1024), all with the triggering submission's index, or as many as memory allows (stops when an allocation fails) |
//! | `log-flood` | once per instance: writes 50 MiB to stdout and 50 MiB to stderr (write errors ignored), then counts normally |
//! | `panic` | panics (a trap; the message goes to stderr) |
//! | `open-file` | reads `/etc/passwd` and lists `/`: what succeeds goes into the partial under keys starting with `LEAK`; if both fail, a record error with the io errors |
//! | `open-socket` | TCP connect to 127.0.0.1:9, UDP bind on 127.0.0.1:0: same `LEAK` / record-error logic |
//! | `read-env` | every visible environment variable and argument goes into the partial under `LEAK` keys; then counts normally |
//! | `huge-flush` | counts normally and marks the partial: the next `flush` returns 300 MiB |
//! | `trap-in-merge` | counts normally and marks the partial (key `!trap-in-merge`): the reducer's `merge` panics on any partial holding that key |

use std::collections::BTreeMap;

use spotmill_guest::serde_json::Value;
use spotmill_guest::{telemetry, Analysis, OutputFile, RecordError, Submission};

#[derive(Default)]
pub struct Hostile {
    /// Only ids starting with `poison` trigger.
    poison_only: bool,
    /// emit-flood: how many errors, and how long each message is.
    flood_count: Option<usize>,
    flood_bytes: Option<usize>,
    /// log-flood: done once per instance.
    #[allow(dead_code)]
    flooded_logs: bool,
}

type Counts = BTreeMap<String, u64>;

/// Partial keys that mark a behaviour for flush / merge.
const HUGE_FLUSH_MARK: &str = "!huge-flush";
/// Over the host's default 256 MiB output cap, under its 512 MiB memory cap.
const HUGE_FLUSH_BYTES: usize = 300 << 20;
const TRAP_IN_MERGE_MARK: &str = "!trap-in-merge";

impl Hostile {
    fn triggers(&self, sub: &Submission) -> bool {
        !self.poison_only || sub.id.starts_with("poison")
    }

    /// Counts the submission under its OS, like os-distribution.
    fn count(sub: &Submission, partial: &mut Counts) -> Result<(), String> {
        let payload = telemetry::parse(&sub.json)?;
        let os = match payload.info.os.as_deref() {
            Some(os) if !os.is_empty() => os,
            _ => "unknown",
        };
        *partial.entry(os.to_owned()).or_default() += 1;
        Ok(())
    }

    /// The misbehaviour. Returns only for the features that go on counting afterwards.
    #[allow(unused_variables, unused_mut, unreachable_code)]
    fn misbehave(&mut self, sub: &Submission, partial: &mut Counts) -> Result<(), String> {
        #[cfg(feature = "infinite-loop")]
        {
            let mut i = 0u64;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        #[cfg(feature = "memory-hog")]
        {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xA5; 1 << 20]); // filled, so every page is touched
                std::hint::black_box(&hoard);
            }
        }
        #[cfg(feature = "deep-recursion")]
        {
            recurse(0);
        }
        #[cfg(feature = "panic")]
        {
            panic!(
                "hostile analysis: deliberate panic on submission {:?}",
                sub.id
            );
        }
        #[cfg(feature = "log-flood")]
        if !self.flooded_logs {
            self.flooded_logs = true;
            flood(&mut std::io::stdout(), 50 << 20);
            flood(&mut std::io::stderr(), 50 << 20);
        }
        #[cfg(feature = "open-file")]
        {
            let mut failures = Vec::new();
            match std::fs::read("/etc/passwd") {
                Ok(bytes) => leak(partial, "/etc/passwd", &String::from_utf8_lossy(&bytes)),
                Err(e) => failures.push(format!("read /etc/passwd: {e}")),
            }
            match std::fs::read_dir("/") {
                Ok(entries) => {
                    let names: Vec<String> = entries
                        .map(|e| match e {
                            Ok(e) => e.file_name().to_string_lossy().into_owned(),
                            Err(e) => format!("<{e}>"),
                        })
                        .collect();
                    leak(partial, "read_dir /", &names.join(" "));
                }
                Err(e) => failures.push(format!("read_dir /: {e}")),
            }
            if failures.len() == 2 {
                return Err(format!("hostile open-file: {}", failures.join("; ")));
            }
        }
        #[cfg(feature = "open-socket")]
        {
            let mut failures = Vec::new();
            match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(stream) => leak(partial, "tcp connect", &format!("{stream:?}")),
                Err(e) => failures.push(format!("tcp connect 127.0.0.1:9: {e}")),
            }
            match std::net::UdpSocket::bind("127.0.0.1:0") {
                Ok(socket) => {
                    let sent = socket.send_to(b"hostile", "127.0.0.1:9");
                    leak(partial, "udp bind", &format!("{socket:?} send: {sent:?}"));
                }
                Err(e) => failures.push(format!("udp bind 127.0.0.1:0: {e}")),
            }
            if failures.len() == 2 {
                return Err(format!("hostile open-socket: {}", failures.join("; ")));
            }
        }
        #[cfg(feature = "read-env")]
        {
            for (key, value) in std::env::vars_os() {
                let text = format!("{}={}", key.to_string_lossy(), value.to_string_lossy());
                leak(partial, "env", &text);
            }
            for (i, arg) in std::env::args_os().enumerate() {
                leak(partial, &format!("arg {i}"), &arg.to_string_lossy());
            }
        }
        #[cfg(feature = "huge-flush")]
        {
            partial.insert(HUGE_FLUSH_MARK.to_owned(), 1);
        }
        #[cfg(feature = "trap-in-merge")]
        {
            *partial.entry(TRAP_IN_MERGE_MARK.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    /// emit-flood: `count` errors of `bytes` bytes, cycling over `indices`, or as many as
    /// memory allows (every allocation is fallible; headroom is kept for the host's copy).
    #[allow(dead_code)]
    fn flood_errors(&self, indices: &[u32]) -> Vec<RecordError> {
        let count = self.flood_count.unwrap_or(2_000_000);
        let bytes = self.flood_bytes.unwrap_or(1024);
        let mut headroom: Vec<u8> = Vec::new();
        let _ = headroom.try_reserve_exact(count.saturating_mul(12).min(64 << 20) + (1 << 20));
        let mut errors: Vec<RecordError> = Vec::new();
        for n in 0..count {
            if errors.try_reserve(1).is_err() {
                break;
            }
            let mut message = String::new();
            if message.try_reserve_exact(bytes).is_err() {
                break;
            }
            message.push_str(&format!("hostile emit-flood error {n}: "));
            while message.len() < bytes {
                message.push('x');
            }
            message.truncate(bytes);
            errors.push(RecordError {
                index: indices[n % indices.len()],
                message,
            });
        }
        drop(headroom);
        errors
    }
}

/// Puts a leaked secret into the partial, where a test can see it.
#[allow(dead_code)]
fn leak(partial: &mut Counts, what: &str, text: &str) {
    *partial.entry(format!("LEAK {what}: {text}")).or_default() += 1;
}

#[allow(dead_code)]
fn flood(out: &mut dyn std::io::Write, total: usize) {
    let line = [b"hostile log-flood ".as_slice(), &[b'x'; 1005], b"\n"].concat();
    let mut written = 0;
    while written < total {
        if out.write_all(&line).is_err() {
            return; // the host closed the stream: stop, do not panic
        }
        written += line.len();
    }
    let _ = out.flush();
}

#[allow(dead_code, unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[(depth % 512) as usize] = depth as u8;
    let frame = std::hint::black_box(frame);
    recurse(depth + 1).wrapping_add(frame[(depth % 7) as usize] as u64)
}

impl Analysis for Hostile {
    type Partial = Counts;

    fn setup(&mut self, params: &Value) -> Result<(), String> {
        match params.get("trigger") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "all" => {}
            Some(Value::String(t)) if t == "poison" => self.poison_only = true,
            Some(other) => {
                return Err(format!(
                    "hostile: `trigger` must be \"all\" or \"poison\", not {other}"
                ))
            }
        }
        let size = |key: &str| params.get(key).and_then(Value::as_u64).map(|n| n as usize);
        self.flood_count = size("count");
        self.flood_bytes = size("message_bytes");
        Ok(())
    }

    fn map(&mut self, sub: &Submission, partial: &mut Counts) -> Result<(), String> {
        if self.triggers(sub) {
            // Validate first, so that a record error leaves the partial unchanged.
            telemetry::parse(&sub.json)?;
            self.misbehave(sub, partial)?;
        }
        Self::count(sub, partial)
    }

    #[cfg(feature = "emit-flood")]
    fn map_batch(&mut self, batch: &[Submission], partial: &mut Counts) -> Vec<RecordError> {
        let mut errors = Vec::new();
        let mut triggered = Vec::new();
        for (index, sub) in batch.iter().enumerate() {
            if self.triggers(sub) {
                triggered.push(index as u32);
            } else if let Err(message) = Self::count(sub, partial) {
                errors.push(RecordError {
                    index: index as u32,
                    message,
                });
            }
        }
        if !triggered.is_empty() {
            errors.extend(self.flood_errors(&triggered));
        }
        errors
    }

    fn merge(into: &mut Counts, other: Counts) {
        if cfg!(feature = "trap-in-merge")
            && (into.contains_key(TRAP_IN_MERGE_MARK) || other.contains_key(TRAP_IN_MERGE_MARK))
        {
            panic!("hostile analysis: deliberate trap in merge");
        }
        for (os, count) in other {
            *into.entry(os).or_default() += count;
        }
    }

    fn publish(&self, partial: Counts) -> Result<Vec<OutputFile>, String> {
        Ok(vec![spotmill_guest::json_file(
            "os-distribution.json",
            &partial,
        )?])
    }

    fn encode_partial(partial: &Counts) -> Result<Vec<u8>, String> {
        if cfg!(feature = "huge-flush") && partial.contains_key(HUGE_FLUSH_MARK) {
            return Ok(vec![b' '; HUGE_FLUSH_BYTES]);
        }
        spotmill_guest::serde_json::to_vec(partial).map_err(|e| e.to_string())
    }
}

spotmill_guest::export_analysis!(Hostile);
