//! Write Spotmill analyses in Rust.
//!
//! An analysis is a WebAssembly component that implements the WIT world `analysis`
//! (`wit/analysis.wit`: `spotmill:analysis/mapper@0.1.0` and
//! `spotmill:analysis/reducer@0.1.0`). This crate holds the bindings and implements that
//! world for any type that implements [`Analysis`]:
//!
//! ```ignore
//! use spotmill_guest::{telemetry, Analysis, OutputFile, Submission};
//! use std::collections::BTreeMap;
//!
//! #[derive(Default)]
//! struct OsCount;
//!
//! impl Analysis for OsCount {
//!     type Partial = BTreeMap<String, u64>;
//!     fn map(&mut self, sub: &Submission, partial: &mut Self::Partial) -> Result<(), String> {
//!         let payload = telemetry::parse(&sub.json)?; // validate first ...
//!         let os = payload.info.os.as_deref().unwrap_or("unknown");
//!         *partial.entry(os.to_owned()).or_default() += 1; // ... then mutate
//!         Ok(())
//!     }
//!     fn merge(into: &mut Self::Partial, other: Self::Partial) {
//!         for (k, v) in other { *into.entry(k).or_default() += v; }
//!     }
//!     fn publish(&self, partial: Self::Partial) -> Result<Vec<OutputFile>, String> {
//!         Ok(vec![spotmill_guest::json_file("os.json", &partial)?])
//!     }
//! }
//! spotmill_guest::export_analysis!(OsCount);
//! ```
//!
//! The analysis crate: `[lib] crate-type = ["cdylib"]`, a dependency on `spotmill-guest`
//! (nothing else is needed: `serde` and `serde_json` are re-exported), and a release
//! profile with `opt-level = "s"`, `lto = true`, `strip = true`, `panic = "abort"`,
//! `codegen-units = 1`. `cargo build --release --target wasm32-wasip2` then writes a
//! component (see `analyses/` and `scripts/build-analyses.sh`).
//!
//! What the SDK does for each WIT function:
//!
//! - `setup(params)`: parses `params` as JSON (the empty string stands for `null`), makes a
//!   fresh `A::default()` and calls [`Analysis::setup`]. The mapper and the reducer each
//!   hold their own instance of the analysis. If the host calls `map`, `flush`, `merge` or
//!   `publish` without a `setup` first, the SDK does an implicit `setup("")`.
//! - `map(batch)`: calls [`Analysis::map_batch`] (by default: [`Analysis::map`] on every
//!   submission, one [`RecordError`] per failing one) on the partial held by the instance.
//! - `flush()`: encodes the partial ([`Analysis::encode_partial`], JSON by default) and
//!   resets it to `Default`. If no submission was mapped successfully since the previous
//!   flush it returns the empty byte string (the empty partial).
//! - `merge(partials)`: decodes each partial (empty bytes = `Default`), folds them with
//!   [`Analysis::merge`] and encodes the result; if every input is empty the result is empty.
//!   A partial that does not decode fails the call with an error naming its index.
//! - `publish(partial)`: decodes the partial (empty = `Default`) and calls
//!   [`Analysis::publish`]; output paths are checked (relative, `/`-separated, no `..`).
//!
//! A panic in the analysis is a trap (guests are built with `panic = "abort"`): the host
//! drops the instance. Return `Err` for anything a record or the job can cause.

// Lets the generated code and the exported macros name this crate `::spotmill_guest` both
// from inside the crate and from the analyses that use it.
extern crate self as spotmill_guest;

pub mod telemetry;

/// Bucket boundaries and histogram definitions (the `spotmill-histograms` crate).
pub use spotmill_histograms as histograms;

pub use serde;
pub use serde_json;

/// The bindings generated from `wit/analysis.wit` (world `analysis`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "analysis",
        pub_export_macro: true,
        export_macro_name: "__export_analysis_world",
        default_bindings_module: "::spotmill_guest::bindings",
        runtime_path: "::spotmill_guest::__private::wit_bindgen::rt",
    });
}

pub use bindings::spotmill::analysis::types::{Dimensions, OutputFile, RecordError, Submission};

mod runtime;

#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::*;
    pub use wit_bindgen;
}

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An analysis: a mapper that turns submissions into a partial result, and a reducer that
/// merges partials and publishes files. Export it with [`export_analysis!`].
pub trait Analysis: Default + 'static {
    /// The partial result. It travels between instances as bytes made by
    /// [`Analysis::encode_partial`] (JSON by default: map keys must serialise as strings).
    /// `Default` is the empty partial.
    type Partial: Serialize + DeserializeOwned + Default;

    /// Called once per instance with the job's parameters (`null` when there are none),
    /// before anything else. The default accepts any parameters.
    fn setup(&mut self, params: &serde_json::Value) -> Result<(), String> {
        let _ = params;
        Ok(())
    }

    /// Adds one submission to `partial`.
    ///
    /// **A submission that fails must leave `partial` unchanged** (the contract: a rejected
    /// record contributed nothing). The SDK does not roll back for you: validate and
    /// extract everything first (e.g. [`telemetry::parse`] and `?`), then mutate.
    fn map(&mut self, sub: &Submission, partial: &mut Self::Partial) -> Result<(), String>;

    /// Adds a batch. The default calls [`Analysis::map`] on each submission and reports each
    /// failure with its index in the batch. Override it only to work on whole batches.
    fn map_batch(&mut self, batch: &[Submission], partial: &mut Self::Partial) -> Vec<RecordError> {
        let mut errors = Vec::new();
        for (index, sub) in batch.iter().enumerate() {
            if let Err(message) = self.map(sub, partial) {
                errors.push(RecordError {
                    index: index as u32,
                    message,
                });
            }
        }
        errors
    }

    /// Merges `other` into `into`. Must be associative and commutative, with
    /// `Default::default()` as identity: the host merges in any grouping and order.
    fn merge(into: &mut Self::Partial, other: Self::Partial);

    /// Turns the final partial into the files to publish (see [`json_file`]).
    fn publish(&self, partial: Self::Partial) -> Result<Vec<OutputFile>, String>;

    /// Encodes a partial (compact JSON by default).
    fn encode_partial(partial: &Self::Partial) -> Result<Vec<u8>, String> {
        serde_json::to_vec(partial).map_err(|e| format!("cannot encode the partial as JSON: {e}"))
    }

    /// Decodes a non-empty partial made by [`Analysis::encode_partial`] (the SDK maps the
    /// empty byte string to `Default` without calling this).
    fn decode_partial(bytes: &[u8]) -> Result<Self::Partial, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid JSON partial: {e}"))
    }
}

/// An output file holding `value` as pretty-printed JSON with a final newline (map keys
/// keep their order: use a `BTreeMap` for sorted keys).
pub fn json_file<T: Serialize + ?Sized>(path: &str, value: &T) -> Result<OutputFile, String> {
    let mut contents =
        serde_json::to_vec_pretty(value).map_err(|e| format!("cannot encode {path}: {e}"))?;
    contents.push(b'\n');
    Ok(OutputFile {
        path: path.to_owned(),
        contents,
    })
}

/// Exports an [`Analysis`] as the component's `mapper` and `reducer`. Use it once, at the
/// top level of the analysis crate: `spotmill_guest::export_analysis!(MyAnalysis);`
#[macro_export]
macro_rules! export_analysis {
    ($ty:ty) => {
        #[doc(hidden)]
        type __SpotmillExportedAnalysis = $crate::__private::Exported<$ty>;
        $crate::bindings::__export_analysis_world!(
            __SpotmillExportedAnalysis with_types_in $crate::bindings
        );
    };
}
