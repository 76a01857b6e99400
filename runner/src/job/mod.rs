//! A whole job on one machine: plan tasks over the inputs, run them on worker threads,
//! merge their partials with the reducer, publish the files.

pub mod history;
pub mod local;
pub mod merge;
pub mod output;
pub mod plan;
pub mod summary;

pub use local::{run_local, JobResult, RunOptions};
pub use merge::Merger;
pub use plan::{plan_tasks, PlanOptions};
pub use summary::Summary;
