//! Host bindings generated from `wit/analysis.wit`, one module per world, so that a
//! component exporting only a mapper (or only a reducer) can still be instantiated for
//! the half it has.

/// Bindings for the `map-only` world: the mapper half of an analysis.
pub mod mapper {
    wasmtime::component::bindgen!({ path: "../wit", world: "map-only" });
    pub use self::spotmill::analysis::types::Dimensions;
    pub use exports::spotmill::analysis::mapper::{RecordError, Submission};
}

/// Bindings for the `reduce-only` world: the reducer half of an analysis.
pub mod reducer {
    wasmtime::component::bindgen!({ path: "../wit", world: "reduce-only" });
    pub use exports::spotmill::analysis::reducer::OutputFile;
}

/// The name of the contract's package, as components import and export it.
pub const PACKAGE: &str = "spotmill:analysis";
/// The version of the contract this runner links.
pub const VERSION: &str = "0.1.0";
