//! Histogram definitions and bucket boundaries: the shared `spotmill-histograms` crate,
//! which guests use too, so the generator and the analyses agree on every bucket.
pub use spotmill_histograms::*;
