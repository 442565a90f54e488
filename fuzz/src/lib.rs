//! Fuzzing harness library: persodesk's pure modules compiled by path, and the entry functions
//! the cargo-fuzz targets call. `tests/fuzz_corpus.rs` in the main crate includes
//! [`entries`] too and replays every committed corpus file through the same functions.

#![allow(missing_docs, dead_code, clippy::all)]

#[path = "../../src/domain/mod.rs"]
pub mod domain;

#[path = "../../src/keys/mod.rs"]
pub mod keys;

pub mod entries;
