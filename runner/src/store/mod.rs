//! Where logs come from: listing and opening inputs. Only a local folder for now; it knows the
//! published layout (to prune by filter while listing) but nothing of queues or wasm.

pub mod local;

pub use local::{
    list_inputs, open_input, InputFile, InputReader, ListError, ListOutcome, INPUT_BUFFER_BYTES,
};
