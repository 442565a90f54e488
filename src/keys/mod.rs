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

use std::sync::Arc;

use crate::domain::keystore::{CardKeyStore, JweKeys, KeyInfo, StoreSealKeys};
use crate::domain::prepare::CardKeys;

/// Every key store port in one trait object: preparation ([`CardKeys`]: chip keys and Model 2
/// envelopes), the card side ([`CardKeyStore`]: card keys, CA keys, ARQC check) and JWE intake
/// ([`JweKeys`]). Front ends, `perso`, `job` and `verify` take this, never a concrete store.
pub trait KeyStorePort: CardKeys + CardKeyStore + JweKeys {}

impl<T: CardKeys + CardKeyStore + JweKeys + ?Sized> KeyStorePort for T {}

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

    /// The software store, for the one thing that needs test keys in clear: the simulated card
    /// (sim-card, the in-process virtual card). A PKCS#11 store is refused with a message: its
    /// keys never leave the token.
    pub fn software(&self) -> Result<&SoftwareKeyStore, String> {
        match self {
            Self::Software(s) => Ok(s),
            Self::Pkcs11(p) => Err(format!(
                "{}: the simulated card needs test keys in clear (a software key file); the keys \
                 of PKCS#11 token {} never leave it",
                p.source(),
                p.token_label()
            )),
        }
    }

    /// The sealing of data at rest (`store` key), or `None` when this key store has no `store`
    /// key: callers refuse to keep such data rather than keep it in clear.
    pub fn store_seal(&self) -> Option<&dyn StoreSealKeys> {
        match self {
            Self::Software(s) => Some(s),
            Self::Pkcs11(p) => p
                .has_store_key()
                .then_some(p.as_ref() as &dyn StoreSealKeys),
        }
    }

    /// The sealer of the audit trail (the `audit` key with the lowest index), if the store has
    /// one: HMAC-SHA256 in the software store, `CKM_SHA256_HMAC` in the token.
    pub fn audit_sealer(&self) -> Option<Arc<dyn crate::store::Sealer>> {
        match self {
            Self::Software(s) => s.audit_sealer(),
            Self::Pkcs11(p) => p.audit_sealer(),
        }
    }

    /// Why production refuses this store, if it does: the software store always (keys in a
    /// file), a test token, a test key, or (software) published, demo and weak key values.
    pub fn production_refusal(&self) -> Option<String> {
        match self {
            Self::Software(_) => Some(
                "is a software key store (keys in a file): production needs a PKCS#11 store \
                 ([pkcs11] table) on a token that is not a test token (docs/hsm.md)"
                    .into(),
            ),
            Self::Pkcs11(p) if p.is_test_token() => Some(format!(
                "token {} is a test token (test = true in [pkcs11]): production refuses it",
                p.token_label()
            )),
            Self::Pkcs11(_) => None,
        }
    }

    /// The key store rules of `mode`: production refuses test keys, a software store, a test
    /// token, published, demo and weak key values (software store), and a store without an
    /// `audit` key. The message names the file and the rule, never a key value.
    pub fn check_mode(&self, mode: crate::domain::mode::Mode) -> Result<(), String> {
        let file = self.source();
        mode.check_key_store(&self.list())
            .map_err(|f| format!("{file}: {f}"))?;
        if mode != crate::domain::mode::Mode::Production {
            return Ok(());
        }
        if let Self::Software(s) = self
            && let Some((key, rule)) = s.production_findings().first()
        {
            return Err(format!("{file}: key {key}: {rule}: production refuses it"));
        }
        if let Some(why) = self.production_refusal() {
            return Err(format!("{file}: {why}"));
        }
        if self.audit_sealer().is_none() {
            return Err(format!(
                "{file}: production needs an audit key (usage audit) to seal the audit trail"
            ));
        }
        Ok(())
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
