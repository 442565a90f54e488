//! persodesk: a card personalization workstation.
//!
//! - [`domain`]: pure, sans-I/O card logic (orders, products, tracks, CVV/PVV/PIN blocks, masking).
//! - [`keys`]: key store adapters behind the domain's key store port.
//! - [`catalog`]: loading product files from a directory.
//! - [`files`]: private files (0600 in 0700 directories, no symlink following).
//! - [`config`]: the machine's configuration (test or production mode).
//! - [`devices`]: adapters to real devices (magnetic stripe encoder, ...).
//! - [`sim`]: simulated devices for tests and demos.
//! - [`perso`]: personalizing a card over a transport, with a masked transcript.
//! - [`verify`]: read-back verification of a personalized card.
//! - [`job`]: one card's production run over any reader and encoder, recorded in the store.
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
pub mod job;
pub mod keys;
pub mod perso;
pub mod sim;
pub mod store;
pub mod verify;
