//! Capture of a guest's stdout and stderr, truncated instead of fatal.
//!
//! wasmtime-wasi's `MemoryOutputPipe` traps the guest once its capacity is reached, which
//! would turn a chatty analysis into a failed one. This sink keeps the first bytes up to a
//! cap and counts the rest, so logs can be attached to errors without ever failing a call.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Largest write the guest is offered at once; keeps host allocations per write small.
const WRITE_PERMIT: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: u64,
}

/// A clonable handle on one captured stream; clones share the buffer.
#[derive(Debug, Clone)]
pub struct GuestLog {
    cap: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl GuestLog {
    pub fn new(cap: u64) -> Self {
        GuestLog {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            buffer: Arc::default(),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(buffer.kept.len());
        let kept = room.min(bytes.len());
        buffer.kept.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }

    /// The captured text (lossy UTF-8) with a note of how much was dropped, or `None`
    /// when the guest wrote nothing.
    pub fn text(&self) -> Option<String> {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.kept.is_empty() && buffer.dropped == 0 {
            return None;
        }
        let mut text = String::from_utf8_lossy(&buffer.kept).into_owned();
        if buffer.dropped > 0 {
            text.push_str(&format!("\n[... {} more bytes dropped]", buffer.dropped));
        }
        Some(text)
    }

    /// Bytes written past the cap since the last `clear`.
    pub fn dropped(&self) -> u64 {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dropped
    }

    /// Empties the capture, so that the next error only carries what its own call wrote.
    pub fn clear(&self) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.kept.clear();
        buffer.dropped = 0;
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let log = GuestLog::new(5);
        log.append(b"hello world");
        log.append(b"!!");
        assert_eq!(log.text().unwrap(), "hello\n[... 8 more bytes dropped]");
        log.clear();
        assert_eq!(log.text(), None);
    }
}
