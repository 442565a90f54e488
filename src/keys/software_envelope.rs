//! [`EnvelopeKeys`] for the software key store: the KEK is used in place and never copied out.

use zeroize::Zeroizing;

use super::SoftwareKeyStore;
use crate::domain::envelope::{
    self, EnvelopeKeyError, EnvelopeKeys, EnvelopeSettings, KekAlgorithm, MAC_KEY_LEN, Sealed,
};
use crate::domain::keystore::{KeyAlgorithm, KeyError, KeyRef, KeyStore};

impl SoftwareKeyStore {
    fn kek(&self, kek: KeyRef) -> Result<(KekAlgorithm, &[u8]), KeyError> {
        let algorithm = self.info(kek)?.algorithm;
        let alg = match algorithm {
            KeyAlgorithm::Aes => KekAlgorithm::Aes,
            KeyAlgorithm::Tdes => KekAlgorithm::Tdes,
            KeyAlgorithm::Rsa | KeyAlgorithm::EcP256 => {
                return Err(KeyError::WrongAlgorithm {
                    key: kek,
                    found: algorithm.as_str(),
                    needed: "aes or tdes",
                });
            }
        };
        Ok((alg, &self.entry(kek, algorithm)?.value))
    }
}

impl EnvelopeKeys for SoftwareKeyStore {
    fn open_envelope(
        &self,
        kek: KeyRef,
        wrapped_mac_key: &[u8],
        tlv_data: &[u8],
        mac: &[u8],
        settings: EnvelopeSettings,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeKeyError> {
        let (alg, key) = self.kek(kek)?;
        Ok(envelope::open(
            alg,
            key,
            wrapped_mac_key,
            tlv_data,
            mac,
            settings,
        )?)
    }

    fn seal_envelope(
        &self,
        kek: KeyRef,
        mac_key: &[u8; MAC_KEY_LEN],
        plaintext: &[u8],
        settings: EnvelopeSettings,
    ) -> Result<Sealed, EnvelopeKeyError> {
        let (alg, key) = self.kek(kek)?;
        Ok(envelope::seal(alg, key, mac_key, plaintext, settings)?)
    }
}
