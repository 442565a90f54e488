//! [`StoreSealKeys`] on the token: AES-256-GCM (`CKM_AES_GCM`, 96-bit nonce from
//! `C_GenerateRandom`, 128-bit tag) with a `store/<n>` AES-256 object, in the blob format of
//! [`crate::domain::seal`]: a blob sealed by the software store with the same key value opens
//! here, and the other way round.

use super::Op;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use zeroize::Zeroizing;

use super::{ObjectKind, Pkcs11KeyStore, label};
use crate::domain::keystore::{KeyError, KeyRef, KeyUsage, StoreSealKeys, sealed_by};
use crate::domain::seal::{self, NONCE_LEN, TAG_LEN};

impl Pkcs11KeyStore {
    /// Whether the token holds a `store/<n>` key.
    pub fn has_store_key(&self) -> bool {
        self.sealing_key().is_ok()
    }

    /// The `store` key with the lowest index, which seals new data.
    fn sealing_key(&self) -> Result<KeyRef, KeyError> {
        self.infos
            .keys()
            .copied()
            .find(|k| k.usage == KeyUsage::Store)
            .ok_or_else(|| KeyError::Rule {
                key: KeyRef::new(KeyUsage::Store, 1),
                rule: format!(
                    "token {} has no store key (an AES-256 object labelled store/<n>)",
                    self.token.label
                ),
            })
    }

    fn store_object(&self, key: KeyRef) -> Result<cryptoki::object::ObjectHandle, KeyError> {
        let o = self.object(key)?;
        if o.kind != ObjectKind::Aes(32) {
            return Err(KeyError::Rule {
                key,
                rule: format!("{} must be an AES-256 object", label(key)),
            });
        }
        Ok(o.handle)
    }

    fn gcm(
        &self,
        key: KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &[u8],
        encrypt: bool,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let h = self.store_object(key)?;
        let mut iv = *nonce;
        let bits = u64::try_from(TAG_LEN * 8).unwrap_or(128);
        let params = GcmParams::new(&mut iv, aad, bits.into()).map_err(|e| KeyError::Store {
            key,
            rule: super::token::describe(&e),
        })?;
        let m = Mechanism::AesGcm(params);
        if encrypt {
            self.crypt(Op::Encrypt, key, h, &m, data)
        } else {
            // A wrong tag is CKR_ENCRYPTED_DATA_INVALID: one message, as the software store.
            self.crypt(Op::Decrypt, key, h, &m, data)
                .map_err(|_| KeyError::Rule {
                    key,
                    rule: seal::SealError::Open.to_string(),
                })
        }
    }
}

impl StoreSealKeys for Pkcs11KeyStore {
    fn store_seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.sealing_key()?;
        let mut nonce = [0u8; NONCE_LEN];
        {
            let s = self.token.session().map_err(|e| Self::tok_err(key, e))?;
            s.generate_random_slice(&mut nonce)
                .map_err(|e| self.store_err(key, &e))?;
        }
        let aad = seal::aad(key.index, purpose);
        let out = self.gcm(key, &nonce, &aad, plaintext, true)?;
        Ok(seal::frame(key.index, &nonce, &out))
    }

    fn store_open(&self, purpose: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (key, parsed) = sealed_by(sealed)?;
        let aad = seal::aad(key.index, purpose);
        self.gcm(key, &parsed.nonce, &aad, parsed.ciphertext_and_tag, false)
    }
}

/// HMAC-SHA256 of the audit trail in the token (`CKM_SHA256_HMAC` on the generic-secret object
/// `audit/<n>`), on a session of its own so that it can outlive a borrow of the store.
struct TokenAuditSeal {
    session: std::sync::Mutex<cryptoki::session::Session>,
    handle: cryptoki::object::ObjectHandle,
    name: String,
}

impl crate::store::Sealer for TokenAuditSeal {
    fn mac(&self, message: &[u8]) -> Result<[u8; 32], String> {
        let mut out = [0u8; 32];
        let signed = self
            .session
            .lock()
            .map_err(|_| "the session lock is poisoned".to_string())
            .and_then(|s| {
                s.sign(&Mechanism::Sha256Hmac, self.handle, message)
                    .map_err(|e| super::token::describe(&e))
            });
        match signed {
            Ok(mac) if mac.len() == 32 => {
                out.copy_from_slice(&mac);
                Ok(out)
            }
            Ok(_) => Err("the token's HMAC is not 32 bytes".into()),
            Err(rule) => Err(format!("HMAC in the token failed: {rule}")),
        }
    }

    fn key_name(&self) -> String {
        self.name.clone()
    }
}

impl Pkcs11KeyStore {
    /// The sealer of the audit trail on the token: the `audit/<n>` object with the lowest index
    /// (a generic secret, `CKM_SHA256_HMAC`), or `None` when the token has none.
    pub fn audit_sealer(&self) -> Option<std::sync::Arc<dyn crate::store::Sealer>> {
        let key = self
            .infos
            .keys()
            .copied()
            .find(|k| k.usage == KeyUsage::Audit)?;
        let o = self.object(key).ok()?;
        if !matches!(o.kind, ObjectKind::Generic(_)) {
            return None;
        }
        let session = self.token.extra_session().ok()?;
        Some(std::sync::Arc::new(TokenAuditSeal {
            session: std::sync::Mutex::new(session),
            handle: o.handle,
            name: key.to_string(),
        }))
    }
}
