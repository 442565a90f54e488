//! Key store adapters implementing [`crate::domain::keystore::KeyStore`].
//!
//! [`software::SoftwareKeyStore`] holds keys read from a TOML file (format in README.md); an HSM
//! adapter can replace it without touching the domain.

pub mod pool;
pub mod software;
pub mod software_chip;
mod software_envelope;
pub mod software_jwe;

pub use software::{KeyFileError, SoftwareKeyStore};
pub mod card;
