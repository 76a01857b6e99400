//! Where logs come from: listing and opening inputs. Only a local folder for now; it knows the
//! published layout (to prune by filter while listing) but nothing of queues or wasm.

pub mod local;

use std::io::Read;

/// Opens the bytes of a listed input file: a local folder, or an object store.
/// Implementations must stream (never stage a whole file) and name the file in errors.
pub trait InputSource: Sync {
    fn open(&self, file: &InputFile) -> std::io::Result<Box<dyn Read + Send>>;
}

/// Files on the local disk, at `InputFile::path`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFiles;

impl InputSource for LocalFiles {
    fn open(&self, file: &InputFile) -> std::io::Result<Box<dyn Read + Send>> {
        let handle = std::fs::File::open(&file.path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.path.display())))?;
        Ok(Box::new(handle))
    }
}

pub use local::{
    list_inputs, open_input, InputFile, InputReader, ListError, ListOutcome, INPUT_BUFFER_BYTES,
};
