//! One task: a few input files through a mapper instance, into one partial result.
//!
//! A task is the unit of scheduling, retry and accounting. Inside it, records travel in
//! batches; a guest failure never loses or double-counts a record:
//!
//! - the mapper's state is checkpointed (`flush`) every `checkpoint_bytes` of input, and the
//!   batches since the last checkpoint (the *window*) are kept in memory;
//! - when a call fails (trap, fuel, memory, deadline, output cap), the instance is dropped
//!   and the window plus the failing batch are replayed one record at a time on fresh
//!   instances, each record followed by a flush: the record that fails alone is quarantined
//!   with its typed reason, every other record lands in exactly one flushed partial;
//! - records the guest itself rejects (`record-error`) are quarantined at once and never
//!   replayed;
//! - past `max_bad_records_per_task` quarantined records the task fails as a whole.

mod batch;
mod report;
mod run;

pub use batch::{wit_dimensions, TaskSpec};
pub use report::{FileError, Quarantine, SkipCounts, TaskFailure, TaskReport};
pub use run::{run_task, Counters, TaskOptions};

/// How a task ends: its report, or why it failed.
pub type TaskResult = Result<TaskReport, Box<TaskFailure>>;
