//! Typed outcomes of a guest call that did not end normally.

use std::fmt;

/// Why a guest call failed. Every variant says which limit or fault, and how much was used,
/// so that an analyst can tell a bug in their code from a limit to raise.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GuestFailure {
    /// The call burned all the fuel it was given.
    OutOfFuel { limit: u64, task_budget: bool },
    /// The instance tried to grow its memory past the cap.
    MemoryCap { requested: u64, limit: u64 },
    /// The call ran past its wall-clock deadline.
    Deadline { limit_ms: u64 },
    /// The call returned more bytes than allowed (`bytes` is None when wasmtime stopped
    /// the copy before it was complete).
    OutputCap { bytes: Option<u64>, limit: u64 },
    /// The guest returned an error value (its own message).
    GuestError { message: String },
    /// The guest trapped: a panic, stack overflow, out-of-bounds access...
    Trap { message: String },
}

impl GuestFailure {
    /// A short stable name, for summaries and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::OutOfFuel { .. } => "out-of-fuel",
            GuestFailure::MemoryCap { .. } => "memory-cap",
            GuestFailure::Deadline { .. } => "deadline",
            GuestFailure::OutputCap { .. } => "output-cap",
            GuestFailure::GuestError { .. } => "guest-error",
            GuestFailure::Trap { .. } => "trap",
        }
    }

    /// Whether the instance can still be used after this failure. A guest error is a
    /// normal return; everything else leaves the instance poisoned or mid-call.
    pub fn instance_is_usable(&self) -> bool {
        matches!(
            self,
            GuestFailure::GuestError { .. } | GuestFailure::OutputCap { .. }
        )
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::OutOfFuel { limit, task_budget: false } => write!(
                f,
                "out of fuel: the call used all of its {limit} fuel (if the analysis is just slow, raise --fuel-per-call for map and flush, --fuel-per-reduce-call for merge and publish)"
            ),
            GuestFailure::OutOfFuel { limit, task_budget: true } => write!(
                f,
                "out of fuel: the task used all of its {limit} fuel (raise --fuel-per-task or make tasks smaller)"
            ),
            GuestFailure::MemoryCap { requested, limit } => write!(
                f,
                "memory cap: the instance asked for {requested} bytes of memory, over the cap of {limit} (raise --memory-mb)"
            ),
            GuestFailure::Deadline { limit_ms } => write!(
                f,
                "deadline: the call ran past its {limit_ms} ms deadline (raise --call-deadline-ms, or --reduce-deadline-ms for merge and publish)"
            ),
            GuestFailure::OutputCap { bytes: Some(bytes), limit } => write!(
                f,
                "output cap: the call returned {bytes} bytes, over the cap of {limit} (raise --max-output-mb)"
            ),
            GuestFailure::OutputCap { bytes: None, limit } => write!(
                f,
                "output cap: the call tried to return more than {limit} bytes (raise --max-output-mb)"
            ),
            GuestFailure::GuestError { message } => write!(f, "guest error: {message}"),
            GuestFailure::Trap { message } => write!(f, "trap: {message}"),
        }
    }
}
