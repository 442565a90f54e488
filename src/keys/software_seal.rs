//! [`StoreSealKeys`] for the software key store: AES-256-GCM with the `store` key in place.

use zeroize::Zeroizing;

use super::SoftwareKeyStore;
use crate::domain::keystore::{
    KeyAlgorithm, KeyError, KeyRef, KeyStore, KeyUsage, StoreSealKeys, sealed_by,
};
use crate::domain::seal::{self, NONCE_LEN};

impl SoftwareKeyStore {
    /// The `store` key with the lowest index, which seals new data.
    fn sealing_key(&self) -> Result<KeyRef, KeyError> {
        self.list()
            .into_iter()
            .map(|i| i.key)
            .filter(|k| k.usage == KeyUsage::Store)
            .min()
            .ok_or_else(|| KeyError::Rule {
                key: KeyRef::new(KeyUsage::Store, 1),
                rule: "the key store has no store key (usage = \"store\", algorithm aes, 32 bytes)"
                    .into(),
            })
    }

    fn store_key_value(&self, key: KeyRef) -> Result<&[u8], KeyError> {
        let e = self.entry(key, KeyAlgorithm::Aes)?;
        if e.value.len() != 32 {
            return Err(KeyError::Rule {
                key,
                rule: "a store key must be 32 bytes (AES-256)".into(),
            });
        }
        Ok(&e.value)
    }
}

impl StoreSealKeys for SoftwareKeyStore {
    fn store_seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.sealing_key()?;
        let value = self.store_key_value(key)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| KeyError::Store {
            key,
            rule: "the system random number generator failed".into(),
        })?;
        seal::seal_with(value, key.index, &nonce, purpose, plaintext).map_err(|e| KeyError::Rule {
            key,
            rule: e.to_string(),
        })
    }

    fn store_open(&self, purpose: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (key, parsed) = sealed_by(sealed)?;
        self.info(key)?;
        let value = self.store_key_value(key)?;
        seal::open_with(value, &parsed, purpose).map_err(|e| KeyError::Rule {
            key,
            rule: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = r#"
[[key]]
usage = "store"
index = 2
algorithm = "aes"
value = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
kcv = "KCV"
test = true
"#;

    fn store() -> SoftwareKeyStore {
        let kcv = hex::encode_upper(
            crate::domain::crypto::kcv_aes(&(0u8..32).collect::<Vec<_>>()).expect("kcv"),
        );
        SoftwareKeyStore::from_toml("t.toml", &KEYS.replace("KCV", &kcv)).expect("keys")
    }

    #[test]
    fn seals_with_the_store_key_and_opens_only_for_the_same_purpose() {
        let s = store();
        let a = s.store_seal("queue-order:1", b"pan data").expect("seal");
        let b = s.store_seal("queue-order:1", b"pan data").expect("seal");
        assert_ne!(a, b, "every seal draws a fresh nonce");
        assert_eq!(seal::parse(&a).expect("parse").key_index, 2);
        assert!(!a.windows(8).any(|w| w == b"pan data"));
        let opened = s.store_open("queue-order:1", &a).expect("open");
        assert_eq!(opened.as_slice(), b"pan data");
        assert!(s.store_open("queue-order:2", &a).is_err());
    }

    #[test]
    fn a_store_without_a_store_key_refuses_to_seal() {
        let s = SoftwareKeyStore::default();
        let e = s.store_seal("x", b"y").expect_err("no key");
        assert!(e.to_string().contains("no store key"), "{e}");
    }
}
