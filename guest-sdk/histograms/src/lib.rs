//! Telemetry histogram definitions and bucket boundaries.
//!
//! Being moved here from the runner's generator; until then only the signatures exist.

/// The kinds of Firefox telemetry histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flag,
    Boolean,
    Enumerated,
    Linear,
    Exponential,
}
