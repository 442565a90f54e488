//! Key store adapters implementing the key store ports of [`crate::domain::keystore`],
//! [`crate::domain::chip::keys`] and [`crate::domain::envelope`].
//!
//! [`software::SoftwareKeyStore`] holds keys read from a TOML file (format in docs/key-store.md);
//! [`pkcs11::Pkcs11KeyStore`] uses keys on a PKCS#11 token (docs/hsm.md). [`load`] reads either
//! from a `--keys` file: every front end loads its key store through it.

pub mod persisted_pool;
pub mod pool;
pub mod published;
pub mod software;
pub mod software_chip;
mod software_envelope;
pub mod software_jwe;
mod software_seal;

pub mod card;
pub mod pkcs11;

use std::path::Path;

pub use software::{KeyFileError, SoftwareKeyStore};

use crate::domain::chip_model::CardKeys;
use crate::domain::keystore::{CardKeyStore, KeyInfo};

/// Every key store port in one trait object: preparation ([`CardKeys`]) and the card side
/// ([`CardKeyStore`]).
pub trait KeyStorePort: CardKeys + CardKeyStore {}

impl<T: CardKeys + CardKeyStore + ?Sized> KeyStorePort for T {}

/// A loaded key store: the software store (tests, demos) or a PKCS#11 token.
#[derive(Debug)]
pub enum LoadedKeys {
    /// Keys in a TOML file.
    Software(SoftwareKeyStore),
    /// Keys on a PKCS#11 token.
    Pkcs11(Box<pkcs11::Pkcs11KeyStore>),
}

impl LoadedKeys {
    /// The store as the ports.
    pub fn port(&self) -> &dyn KeyStorePort {
        match self {
            Self::Software(s) => s,
            Self::Pkcs11(p) => p.as_ref(),
        }
    }

    /// Every key's public information.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.port().inventory()
    }

    /// The software store, for what only test keys in clear can do (the simulated card).
    pub fn software(&self) -> Option<&SoftwareKeyStore> {
        match self {
            Self::Software(s) => Some(s),
            Self::Pkcs11(_) => None,
        }
    }

    /// The sealing of data at rest (`store` key), or `None` when this key store cannot seal:
    /// callers refuse to keep such data rather than keep it in clear.
    pub fn store_seal(&self) -> Option<&dyn crate::domain::keystore::StoreSealKeys> {
        match self {
            Self::Software(s) => Some(s),
            Self::Pkcs11(_) => None,
        }
    }

    /// The file the store came from.
    pub fn source(&self) -> &str {
        match self {
            Self::Software(s) => s.source(),
            Self::Pkcs11(p) => p.source(),
        }
    }
}

/// Loads the key store a `--keys` file names: a PKCS#11 store file (it has a `[pkcs11]` table)
/// or a software key file.
pub fn load(path: &Path) -> Result<LoadedKeys, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyFileError {
        file: path.display().to_string(),
        location: "file".into(),
        rule: format!("cannot be read: {}", e.kind()),
    })?;
    if pkcs11::is_pkcs11_file(&text) {
        pkcs11::Pkcs11KeyStore::load(path).map(|p| LoadedKeys::Pkcs11(Box::new(p)))
    } else {
        SoftwareKeyStore::from_toml(&path.display().to_string(), &text).map(LoadedKeys::Software)
    }
}
