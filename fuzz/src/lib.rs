//! Fuzzing harness library: persodesk's pure modules compiled by path, and the entry functions
//! the cargo-fuzz targets call. `tests/fuzz_corpus.rs` in the main crate includes
//! [`entries`] too and replays every committed corpus file through the same functions.

#![allow(missing_docs, dead_code, clippy::all)]

#[path = "../../src/domain/mod.rs"]
pub mod domain;

#[path = "../../src/keys/mod.rs"]
pub mod keys;

pub mod entries;

/// The virtual card (`src/sim/card`), compiled by path like `domain`: it needs only the domain's
/// generic codecs and crates already listed, none of the GUI or PC/SC ones.
#[path = "../../src/sim/card/mod.rs"]
pub mod sim_card;

/// `crate::sim::card` as in persodesk, for the shared entry functions.
pub mod sim {
    pub use super::sim_card as card;
}
