//! The sandbox: one wasmtime engine per process, components checked against the WIT
//! contract and compiled once, and guest calls under fuel, memory, deadline and output
//! limits with WASI p2 linked but nothing granted.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod guest_log;
pub mod host_state;
pub mod instance;
pub mod limits;
pub mod outcome;

pub use cache::ArtifactCache;
pub use engine::{import_is_provided, CompiledComponent, LoadedAnalysis, Sandbox};
pub use instance::{CallError, FuelMeter, InstanceStats, MapperInstance, ReducerInstance};
pub use limits::Limits;
pub use outcome::GuestFailure;
