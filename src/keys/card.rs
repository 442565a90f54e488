//! Card keys out of the software key store for the personalization session, the simulated card
//! and read-back verification.
//!
//! The GP host session needs the KMC (or static keys) in memory for the length of one session
//! (`domain::gp::session::CardKeys`). The simulated card and the ARQC check of read-back get
//! key values only for keys marked `test = true`.

use zeroize::Zeroizing;

use super::SoftwareKeyStore;
use crate::domain::emv_keys::DesKey16;
use crate::domain::gp::SecretKey;
use crate::domain::gp::card_keys::HostCardKeys;
use crate::domain::gp::kdf::Diversification;
use crate::domain::gp::session::CardKeys;
use crate::domain::keystore::{KeyAlgorithm, KeyError, KeyRef, KeyUsage};

/// A key that may only be used for tests was asked for, and it is not a test key.
fn refuse_live(key: KeyRef) -> KeyError {
    KeyError::WrongAlgorithm {
        key,
        found: "a live key",
        needed: "a test key (test = true)",
    }
}

impl SoftwareKeyStore {
    /// The KMC `kmc #index` as the secure channel keys of a personalization session, diversified
    /// per card with `method` (TDES for EMV CPS 1.1 / VISA2, AES for kdf3).
    pub fn gp_card_keys(&self, index: u32, method: Diversification) -> Result<CardKeys, KeyError> {
        let key = KeyRef::new(KeyUsage::Kmc, index);
        let needed = if method.is_aes() {
            KeyAlgorithm::Aes
        } else {
            KeyAlgorithm::Tdes
        };
        let e = self.entry(key, needed)?;
        let kmc = SecretKey::new(&e.value).map_err(|_| KeyError::WrongAlgorithm {
            key,
            found: "a key of another length",
            needed: "16, 24 or 32 bytes",
        })?;
        Ok(CardKeys::Master { kmc, method })
    }

    /// The value of a test KMC for the simulated card, with its algorithm. Refuses live keys.
    pub fn test_kmc(&self, index: u32) -> Result<(Zeroizing<Vec<u8>>, KeyAlgorithm), KeyError> {
        let key = KeyRef::new(KeyUsage::Kmc, index);
        let info = self.info_of(key)?;
        if !info.1 {
            return Err(refuse_live(key));
        }
        let e = self.entry(key, info.0)?;
        Ok((e.value.clone(), info.0))
    }

    /// The issuer master key for application cryptograms (`imk-ac #index`), for read-back ARQC
    /// verification. Refuses live keys: a workstation never holds a live IMK in the clear.
    pub fn test_imk_ac(&self, index: u32) -> Result<DesKey16, KeyError> {
        let key = KeyRef::new(KeyUsage::ImkAc, index);
        if !self.info_of(key)?.1 {
            return Err(refuse_live(key));
        }
        let e = self.entry(key, KeyAlgorithm::Tdes)?;
        DesKey16::from_slice(&e.value).map_err(|_| KeyError::WrongAlgorithm {
            key,
            found: "a 24-byte TDES key",
            needed: "a 16-byte TDES key",
        })
    }

    fn info_of(&self, key: KeyRef) -> Result<(KeyAlgorithm, bool), KeyError> {
        use crate::domain::keystore::KeyStore;
        let info = self.info(key)?;
        Ok((info.algorithm, info.test))
    }
}

impl crate::domain::keystore::CardKeyStore for SoftwareKeyStore {
    fn inventory(&self) -> Vec<crate::domain::keystore::KeyInfo> {
        self.list()
    }

    /// The KMC diversified on the host (software crypto) into a [`HostCardKeys`]: the same
    /// keys, session keys and encryptions as a plan that carries the KMC.
    fn open_card_keys(
        &self,
        kmc_index: u32,
        method: Diversification,
        kdd: &crate::domain::gp::kdf::Kdd,
    ) -> Result<Box<dyn crate::domain::keystore::CardKeySet>, KeyError> {
        let key = KeyRef::new(KeyUsage::Kmc, kmc_index);
        let CardKeys::Master { kmc, method } = self.gp_card_keys(kmc_index, method)? else {
            return Err(KeyError::Rule {
                key,
                rule: "holds no master key".into(),
            });
        };
        let keys =
            crate::domain::gp::kdf::diversify(&kmc, kdd, method).map_err(|e| KeyError::Rule {
                key,
                rule: format!("card key diversification: {e}"),
            })?;
        Ok(Box::new(HostCardKeys::new(keys, key, method.is_aes())))
    }

    fn ca_public_keys(&self) -> Vec<crate::domain::oda::CaPublicKey> {
        SoftwareKeyStore::ca_public_keys(self)
    }

    fn arqc_master_key(
        &self,
        imk_index: u32,
        option: crate::domain::emv_keys::MkdOption,
        pan: &crate::domain::fields::Pan,
        psn: crate::domain::fields::Psn,
    ) -> Result<DesKey16, KeyError> {
        let key = KeyRef::new(KeyUsage::ImkAc, imk_index);
        let imk = self.test_imk_ac(imk_index)?;
        crate::domain::emv_keys::derive_icc_master_key(option, &imk, pan.reveal(), &psn.to_string())
            .map_err(|e| KeyError::Rule {
                key,
                rule: format!("ICC master key derivation: {e}"),
            })
    }

    /// Software crypto: the ICC master keys derived as for preparation, then encrypted under
    /// the card's DEK as the GP session encrypts a clear sensitive DGI.
    fn held_secret_for_card(
        &self,
        secret: &crate::domain::keystore::HeldSecret,
        dek: crate::domain::keystore::CardDek<'_>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        use crate::domain::chip::keys::ChipKeys;
        let Some((derivation_index, option, pan, psn)) = secret.icc_master_key_inputs() else {
            return Err(KeyError::Rule {
                key: secret.key(),
                rule: "a value wrapped under a ktk is held by a PKCS#11 store, not this one".into(),
            });
        };
        let set = self.icc_master_keys(*derivation_index, *option, pan, *psn)?;
        let crate::domain::chip::keys::IccMasterKeyValue::Clear(value) = &set.value else {
            return Err(KeyError::Rule {
                key: secret.key(),
                rule: "the software store holds ICC master keys in clear only".into(),
            });
        };
        dek.encrypt_on_host(value.as_ref())
            .map(zeroize::Zeroizing::new)
            .map_err(|e| KeyError::Rule {
                key: secret.key(),
                rule: format!("DGI 8000 encryption under the card's DEK: {e}"),
            })
    }
}
