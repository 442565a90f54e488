//! A KMC object without `CKA_DERIVE` (a token provisioned by a tool that cannot set it, as
//! `pkcs11-tool` 0.23): on a **test token** only, the card's static keys are diversified as
//! before in-token derivation existed, `C_Encrypt` (`CKM_DES3_ECB`, EMV CPS 1.1 / VISA2) or
//! `C_Sign` (`CKM_AES_CMAC`, kdf3) of the diversification blocks under the KMC, and held on the
//! host for the card's session ([`HostCardKeys`], zeroized), said once in the log. A live token
//! is refused, naming the label and `CKA_DERIVE` (fail closed). The KMC stays in the token.

use super::Op;
use std::sync::atomic::Ordering;

use cryptoki::mechanism::Mechanism;
use zeroize::Zeroizing;

use super::card_session::no_derive;
use super::{ObjectKind, Pkcs11KeyStore, label};
use crate::domain::gp::card_keys::HostCardKeys;
use crate::domain::gp::kdf::{Diversification, Kdd, diversification_blocks};
use crate::domain::gp::{KeyPurpose, SecretKey, StaticKeys};
use crate::domain::keystore::{CardKeySet, KeyError, KeyRef};

impl Pkcs11KeyStore {
    /// The card's keys from a KMC without `CKA_DERIVE` (module doc).
    pub(super) fn card_keys_without_derive(
        &self,
        kmc: KeyRef,
        method: Diversification,
        kdd: &Kdd,
    ) -> Result<Box<dyn CardKeySet>, KeyError> {
        if !self.file.test {
            return Err(no_derive(kmc, &self.token.label));
        }
        if !self.kmc_fallback_noted.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                token = %self.token.label,
                "{} on test token {}: CKA_DERIVE is missing, so the card's GlobalPlatform static \
                 keys are diversified with C_Encrypt / C_Sign and pass through host memory \
                 (zeroized) for each card's session (docs/hsm.md). The token's objects are not \
                 changed.",
                label(kmc),
                self.token.label
            );
        }
        let keys = StaticKeys {
            enc: self.host_static_key(kmc, kdd, KeyPurpose::Enc, method)?,
            mac: self.host_static_key(kmc, kdd, KeyPurpose::Mac, method)?,
            dek: self.host_static_key(kmc, kdd, KeyPurpose::Dek, method)?,
        };
        Ok(Box::new(HostCardKeys::new(keys, kmc, method.is_aes())))
    }

    /// One static key: each diversification block encrypted (TDES) or CMACed (AES) under the
    /// KMC in the token, the results on the host.
    fn host_static_key(
        &self,
        kmc: KeyRef,
        kdd: &Kdd,
        purpose: KeyPurpose,
        method: Diversification,
    ) -> Result<SecretKey, KeyError> {
        let o = self.object(kmc)?;
        let (len, m) = match (o.kind, method.is_aes()) {
            (ObjectKind::Aes(n), true) => (n, Mechanism::AesCMac),
            (ObjectKind::Des2 | ObjectKind::Des3, false) => (16, Mechanism::Des3Ecb),
            (_, aes) => {
                return Err(KeyError::WrongAlgorithm {
                    key: kmc,
                    found: if aes { "tdes" } else { "aes" },
                    needed: if aes {
                        "aes (kdf3)"
                    } else {
                        "tdes (EMV CPS 1.1 / VISA2)"
                    },
                });
            }
        };
        let mut out = Zeroizing::new(Vec::with_capacity(32));
        for block in diversification_blocks(kdd, purpose, method, len) {
            let v = if method.is_aes() {
                self.crypt(Op::Sign, kmc, o.handle, &m, &block)?
            } else {
                self.crypt(Op::Encrypt, kmc, o.handle, &m, &block)?
            };
            out.extend_from_slice(&v);
        }
        out.truncate(len);
        SecretKey::new(&out).map_err(|e| KeyError::Rule {
            key: kmc,
            rule: e.to_string(),
        })
    }
}
