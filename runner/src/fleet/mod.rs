//! The fleet: the same map/reduce flow as `spotmill run`, spread over machines that may be
//! killed at any moment.
//!
//! - [`objects`]: S3 (or an S3-compatible store): listing with filter pruning, streaming
//!   reads as an [`crate::store::InputSource`], puts (multipart when large);
//! - [`queue`]: SQS task and done queues: batched sends, long polls, leases, dead letters;
//! - [`protocol`]: what travels between them: task and done messages, the job record,
//!   the aggregator's durable state, and where each lives in the analysis bucket;
//! - [`submit`], [`worker`], [`aggregate`], [`status`]: the four roles.
//!
//! Exactly-once accounting rests on three facts: a task's partial lives at a key derived
//! from its id (a re-run overwrites, never duplicates); the aggregator persists the set of
//! merged task ids *with* the merged state in one atomic PUT (`state.json`) before it
//! deletes any done message; and published files go under a new immutable prefix before
//! the pointer (`current.json`) moves.

pub mod aggregate;
pub mod aws;
pub mod interrupt;
pub mod objects;
pub mod protocol;
pub mod queue;
pub mod status;
pub mod submit;
pub mod worker;

pub use aws::{Aws, AwsOptions};
pub use objects::{S3Input, S3Url};
pub use queue::Queue;

/// Test-only fault injection (`SPOTMILL_FAULT=exit-after-state-write,task-delay-ms=500`):
/// lets the fault tests stop a process at an exact point. Unset in production.
pub fn fault(name: &str) -> Option<String> {
    let spec = std::env::var("SPOTMILL_FAULT").ok()?;
    spec.split(',').find_map(|item| {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// Seconds since the Unix epoch, as a float (for records and throughput).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
