//! The published log format: containers (`.lzma`, `.xz`), record framing, object key ->
//! dimensions, and filters. Knows nothing of stores, queues or wasm.

pub mod container;
pub mod filter;
pub mod key;
pub mod records;

pub use container::{detect, open_decoder, ContainerError, ContainerKind};
pub use filter::{Allowed, Filter, FilterError};
pub use key::{object_key, parse_key, sanitize, Dimensions, KeyError};
pub use records::{LogItem, Record, RecordReader, Skip, SkipReason};
