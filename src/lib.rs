//! persodesk: a card personalization workstation.
//!
//! - [`domain`]: pure, sans-I/O card logic (orders, products, tracks, CVV/PVV/PIN blocks, masking).
//! - [`keys`]: key store adapters behind the domain's key store port.
//! - [`catalog`]: loading product files from a directory.
//! - [`files`]: private files (0600 in 0700 directories, no symlink following).
//! - [`config`]: the machine's configuration (test or production mode).
//! - [`devices`]: adapters to real devices (magnetic stripe encoder, ...).
//! - [`sim`]: simulated devices for tests and demos.
//! - [`run`]: the run of a card: [`job`] (one card's production run over any reader and encoder,
//!   recorded in the store), [`perso`] (personalizing over a transport, with a masked
//!   transcript) and [`verify`] (read-back verification), re-exported here.
//! - [`cli`]: the command line.
//! - [`gui`]: the desktop workstation (eframe).
//! - [`store`]: statuses, approvals and the audit trail (SQLite).

pub mod batch;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod devices;
pub mod domain;
pub mod files;
pub mod gui;
pub mod keys;
pub mod run;
pub mod sim;
pub mod store;

pub use run::{job, perso, verify};
