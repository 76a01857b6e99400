//! Spotmill: run untrusted WebAssembly map/reduce analyses over compressed telemetry logs.
//!
//! Layers, each knowing nothing of the ones above it:
//! - [`logs`]: containers (`.lzma`, `.xz`), record framing, object key -> dimensions, filters;
//! - [`store`]: listing and reading inputs (a local folder);
//! - [`gen`]: a deterministic generator of realistic published-log trees;
//! - [`sandbox`]: the wasmtime engine, WIT bindings, limits and typed outcomes;
//! - [`task`]: one task (a few files) through the mapper, with quarantine of bad records;
//! - [`job`]: planning, workers, merging and publishing for `spotmill run`;
//! - [`fleet`]: the same flow over S3 and SQS: submit, workers, aggregator, status.
pub mod config;
pub mod fleet;
pub mod gen;
pub mod job;
pub mod logs;
pub mod new;
pub mod sandbox;
pub mod serve;
pub mod store;
pub mod task;
pub mod validate;
