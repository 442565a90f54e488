//! [`JweKeys`] on the token: ECDH (P-256) with the `jwe/<kid>` private key object
//! (`CKO_PRIVATE_KEY`, `CKK_EC`, `CKA_EC_PARAMS` = P-256) by `C_DeriveKey` with
//! `CKM_ECDH1_DERIVE` (KDF `CKD_NULL`). The public point comes from the public key object with
//! the same label. The private scalar never leaves the token; Z, the per-message shared secret
//! the port returns (as the software store does), is read from the derived session object, which
//! is destroyed at once.

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use zeroize::Zeroizing;

use super::{ObjectKind, Pkcs11KeyStore};
use crate::domain::jwe::{P256Point, SharedSecret};
use crate::domain::keystore::{
    JweKeyError, JweKeys, JwePublicKey, KeyAlgorithm, KeyInfo, KeyRef, KeyUsage,
};
use crate::keys::KeyFileError;

/// One `jwe/<kid>` key on the token.
#[derive(Debug, Clone)]
pub(super) struct JweObject {
    info: KeyInfo,
    point: P256Point,
    handle: ObjectHandle,
}

impl Pkcs11KeyStore {
    /// Indexes the `jwe/<kid>` objects (already checked sensitive and non-extractable): each must
    /// be a P-256 private key with a public key object of the same label.
    pub(super) fn index_jwe(&mut self) -> Result<(), KeyFileError> {
        self.jwe.clear();
        let mut n = 0u32;
        for (label, obj) in self.token.objects() {
            let Some(kid) = label.strip_prefix("jwe/") else {
                continue;
            };
            let bad = |rule: &str| super::err(&self.source, label.as_str(), rule);
            if obj.kind != ObjectKind::EcP256 {
                return Err(bad("a jwe key must be a P-256 private key (CKK_EC)"));
            }
            let point = P256Point::from_sec1(&obj.ec_point).map_err(|_| {
                bad("has no public key object with the same label holding its P-256 point (CKA_EC_POINT)")
            })?;
            n += 1;
            let info = KeyInfo {
                key: KeyRef::new(KeyUsage::Jwe, n),
                algorithm: KeyAlgorithm::EcP256,
                kcv: crate::keys::software_jwe::ec_kcv(&point),
                test: self.file.test,
            };
            self.infos.insert(info.key, info.clone());
            self.jwe.insert(
                kid.to_string(),
                JweObject {
                    info,
                    point,
                    handle: obj.handle,
                },
            );
        }
        Ok(())
    }

    fn jwe_object(&self, kid: &str) -> Result<&JweObject, JweKeyError> {
        self.jwe
            .get(kid)
            .ok_or_else(|| JweKeyError::UnknownKid(kid.to_string()))
    }
}

impl JweKeys for Pkcs11KeyStore {
    fn jwe_agree(&self, kid: &str, epk: &P256Point) -> Result<SharedSecret, JweKeyError> {
        let o = self.jwe_object(kid)?;
        let fail = |what: &str, e: &cryptoki::error::Error| JweKeyError::Rule {
            kid: kid.to_string(),
            rule: format!(
                "ECDH on token {}: {what}: {}",
                self.token.label,
                super::token::describe(e)
            ),
        };
        let public = epk.sec1();
        let params = Ecdh1DeriveParams::new(EcKdf::null(), &public);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let s = self.token.session().map_err(|e| JweKeyError::Rule {
            kid: kid.to_string(),
            rule: e.rule,
        })?;
        let z = s
            .derive_key(&Mechanism::Ecdh1Derive(params), o.handle, &template)
            .map_err(|e| fail("C_DeriveKey (CKM_ECDH1_DERIVE)", &e))?;
        let value = s.get_attributes(z, &[AttributeType::Value]);
        let destroyed = s.destroy_object(z);
        let mut out = Zeroizing::new([0u8; 32]);
        for a in value.map_err(|e| fail("C_GetAttributeValue of Z", &e))? {
            if let Attribute::Value(v) = a {
                let v = Zeroizing::new(v);
                if v.len() != 32 {
                    return Err(JweKeyError::Rule {
                        kid: kid.to_string(),
                        rule: "the token's ECDH result is not 32 bytes".into(),
                    });
                }
                out.copy_from_slice(&v);
            }
        }
        destroyed.map_err(|e| fail("C_DestroyObject of Z", &e))?;
        Ok(SharedSecret::new(out))
    }

    fn jwe_public(&self, kid: &str) -> Result<JwePublicKey, JweKeyError> {
        let o = self.jwe_object(kid)?;
        Ok(JwePublicKey {
            kid: kid.to_string(),
            point: o.point.clone(),
            test: o.info.test,
        })
    }
}
