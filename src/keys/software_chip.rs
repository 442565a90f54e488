//! [`ChipKeys`] for the software key store, and its `issuer-rsa` entries:
//!
//! ```toml
//! [[key]]
//! usage = "issuer-rsa"
//! index = 1                 # the order's odaKeyIndex
//! algorithm = "rsa"
//! p = "..."                 # issuer private key: primes (hex), the rest is recomputed
//! q = "..."
//! exponent = 3              # 3 or 65537
//! certificate = "..."       # issuer public key certificate (90), signed by the CA
//! remainder = ""            # issuer public key remainder (92), empty when absent
//! rid = "A000000004"        # CA's RID
//! ca_index = "E1"           # CA public key index (8F)
//! ca_modulus = "..."        # CA public key, to check the certificate at load
//! ca_exponent = 3
//! kcv = "1A2B3C"            # first 3 bytes of SHA-1(issuer modulus)
//! test = true
//! ```
//!
//! At load the certificate is recovered with the CA key and must certify exactly this issuer key.
//! The primes never leave the store: it signs on request ([`ChipKeys::issuer_sign_raw`]).

use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::software::SoftwareKeyStore;
use crate::domain::chip::ChipKcvs;
use crate::domain::chip::keys::{
    ChipKeys, IccMasterKeySet, IccMasterKeyValue, IssuerOda, ReferencePinBlock,
};
use crate::domain::emv_keys::{DesKey16, IccMasterKeys, MkdOption};
use crate::domain::fields::{Pan, Pin, PinBlockFormat, Psn};
use crate::domain::keystore::{KeyAlgorithm, KeyError, KeyRef, KeyUsage, PinBlockRef};
use crate::domain::oda::{
    self, CaPublicKey, EmvPublicKey, PublicKeyCertificate, RecoverySigner, RsaExponent, RsaKeyPair,
};
use crate::domain::pinblock;

/// An issuer RSA key with its certificate material and the CA that certified it.
pub(crate) struct IssuerRsa {
    pub(crate) pair: RsaKeyPair,
    pub(crate) oda: IssuerOda,
    pub(crate) ca: CaPublicKey,
}

/// The public fields of an issuer ODA key entry, the same in a software key file and in a
/// PKCS#11 store file's `[[issuer]]` tables.
pub(crate) const ISSUER_PUBLIC_FIELDS: [&str; 7] = [
    "exponent",
    "certificate",
    "remainder",
    "rid",
    "ca_index",
    "ca_modulus",
    "ca_exponent",
];

/// Whether `k` is a field an `issuer-rsa` entry adds to the common ones: its primes and the
/// public fields.
pub(crate) fn is_rsa_field(k: &str) -> bool {
    k == "p" || k == "q" || ISSUER_PUBLIC_FIELDS.contains(&k)
}

/// The RSA check value convention: first 3 bytes of SHA-1(modulus), upper-case hex.
pub fn rsa_kcv(modulus: &[u8]) -> String {
    let d = Sha1::digest(modulus);
    hex::encode_upper(&d[..3])
}

fn hexfield(t: &toml::Table, f: &str, allow_empty: bool) -> Result<Vec<u8>, (String, String)> {
    match t.get(f) {
        Some(toml::Value::String(s)) if allow_empty && s.is_empty() => Ok(Vec::new()),
        Some(toml::Value::String(s)) => hex::decode(s)
            .map_err(|_| (f.to_string(), "must be an even number of hex digits".into())),
        None if allow_empty => Ok(Vec::new()),
        _ => Err((f.to_string(), "is required (hex string)".into())),
    }
}

fn exponent(t: &toml::Table, f: &str) -> Result<RsaExponent, (String, String)> {
    match t.get(f) {
        Some(toml::Value::Integer(i)) => u32::try_from(*i)
            .ok()
            .and_then(|e| RsaExponent::from_value(e).ok())
            .ok_or_else(|| (f.to_string(), "must be 3 or 65537".into())),
        _ => Err((f.to_string(), "is required: 3 or 65537".into())),
    }
}

/// Parses and checks an `issuer-rsa` entry; errors are (field, rule) and never carry values.
pub(crate) fn parse_issuer_rsa(
    key: KeyRef,
    t: &toml::Table,
) -> Result<(IssuerRsa, String), (String, String)> {
    if key.usage != KeyUsage::IssuerRsa {
        return Err((
            "algorithm".into(),
            "rsa keys are only supported for usage issuer-rsa".into(),
        ));
    }
    let p = Zeroizing::new(hexfield(t, "p", false)?);
    let q = Zeroizing::new(hexfield(t, "q", false)?);
    let e = exponent(t, "exponent")?;
    let pair =
        RsaKeyPair::from_primes(&p, &q, e).map_err(|err| ("p, q".to_string(), err.to_string()))?;
    let certificate = hexfield(t, "certificate", false)?;
    let remainder = hexfield(t, "remainder", true)?;
    let rid: [u8; 5] = hexfield(t, "rid", false)?
        .try_into()
        .map_err(|_| ("rid".to_string(), "must be 5 bytes".to_string()))?;
    let ca_index = match hexfield(t, "ca_index", false)?.as_slice() {
        [i] => *i,
        _ => return Err(("ca_index".into(), "must be 1 byte (2 hex digits)".into())),
    };
    let ca_key = EmvPublicKey::new(
        &hexfield(t, "ca_modulus", false)?,
        exponent(t, "ca_exponent")?,
    )
    .map_err(|err| ("ca_modulus".to_string(), err.to_string()))?;
    let exp_bytes = pair.public_key().exponent().bytes().to_vec();
    let rec = oda::recover_issuer_certificate(&ca_key, &certificate, &remainder, &exp_bytes)
        .map_err(|err| {
            (
                "certificate".to_string(),
                format!("does not verify with the CA key: {err}"),
            )
        })?;
    if rec.issuer_key != *pair.public_key() {
        return Err((
            "certificate".into(),
            "certifies a different issuer key than p and q".into(),
        ));
    }
    if !rec.fields.issuer_id_well_formed() {
        return Err((
            "certificate".into(),
            "its issuer identifier is not 3 to 8 PAN digits padded with F (EMV Book 2 §5.3)".into(),
        ));
    }
    let kcv = rsa_kcv(pair.modulus());
    let oda = IssuerOda {
        key,
        rid,
        ca_index,
        certificate: PublicKeyCertificate {
            certificate,
            remainder,
            exponent: exp_bytes,
        },
        public_key: pair.public_key().clone(),
        fields: rec.fields,
    };
    let ca = CaPublicKey {
        rid,
        index: ca_index,
        key: ca_key,
    };
    Ok((IssuerRsa { pair, oda, ca }, kcv))
}

fn imk(store: &SoftwareKeyStore, usage: KeyUsage, index: u32) -> Result<DesKey16, KeyError> {
    let key = KeyRef::new(usage, index);
    let e = store.entry(key, KeyAlgorithm::Tdes)?;
    DesKey16::from_slice(&e.value).map_err(|_| KeyError::Rule {
        key,
        rule: "an issuer master key must be a double-length (16-byte) TDES key".into(),
    })
}

impl SoftwareKeyStore {
    fn clear_pin(&self, pin: PinBlockRef<'_>, pan: &Pan) -> Result<Pin, KeyError> {
        let key = pin.key;
        match pin.format {
            PinBlockFormat::Iso0 | PinBlockFormat::Iso0Tk => {
                let e = self.entry(key, KeyAlgorithm::Tdes)?;
                pinblock::iso0_decrypt(&e.value, pin.block.bytes(), pan)
            }
            PinBlockFormat::Iso4 => {
                let e = self.entry(key, KeyAlgorithm::Aes)?;
                pinblock::iso4_decrypt(&e.value, pin.block.bytes(), pan)
            }
        }
        .map_err(|source| KeyError::PinBlock { key, source })
    }

    fn issuer(&self, oda_index: u32) -> Result<&IssuerRsa, KeyError> {
        let key = KeyRef::new(KeyUsage::IssuerRsa, oda_index);
        let e = self.entry(key, KeyAlgorithm::Rsa)?;
        e.rsa.as_deref().ok_or(KeyError::Rule {
            key,
            rule: "holds no RSA key".into(),
        })
    }

    /// The CA public keys named by the store's issuer entries (RID, index), without duplicates.
    pub fn ca_public_keys(&self) -> Vec<CaPublicKey> {
        let mut out: Vec<CaPublicKey> = Vec::new();
        for info in self.list() {
            if info.key.usage == KeyUsage::IssuerRsa
                && let Ok(i) = self.issuer(info.key.index)
                && !out.contains(&i.ca)
            {
                out.push(i.ca.clone());
            }
        }
        out
    }
}

impl ChipKeys for SoftwareKeyStore {
    fn icc_master_keys(
        &self,
        derivation_index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccMasterKeySet, KeyError> {
        let ac = imk(self, KeyUsage::ImkAc, derivation_index)?;
        let smi = imk(self, KeyUsage::ImkSmi, derivation_index)?;
        let smc = imk(self, KeyUsage::ImkSmc, derivation_index)?;
        let psn = psn.to_string();
        let key = KeyRef::new(KeyUsage::ImkAc, derivation_index);
        let rule = |e: crate::domain::emv_keys::EmvKeyError| KeyError::Rule {
            key,
            rule: format!("ICC master key derivation: {e}"),
        };
        let mks =
            IccMasterKeys::derive(option, &ac, &smi, &smc, pan.reveal(), &psn).map_err(rule)?;
        let mut value = Zeroizing::new([0u8; 48]);
        value[..16].copy_from_slice(mks.ac.as_bytes());
        value[16..32].copy_from_slice(mks.smi.as_bytes());
        value[32..].copy_from_slice(mks.smc.as_bytes());
        let kcvs = ChipKcvs {
            ac: mks.ac.kcv().map_err(rule)?,
            smi: mks.smi.kcv().map_err(rule)?,
            smc: mks.smc.kcv().map_err(rule)?,
        };
        Ok(IccMasterKeySet {
            value: IccMasterKeyValue::Clear(value),
            kcvs,
        })
    }

    fn reference_pin_block(
        &self,
        pin: PinBlockRef<'_>,
        pan: &Pan,
        control: u8,
    ) -> Result<ReferencePinBlock, KeyError> {
        let clear = self.clear_pin(pin, pan)?;
        Ok(ReferencePinBlock::Clear(pinblock::pin_field_fill_f(
            &clear, control,
        )))
    }

    fn random_reference_pin_block(
        &self,
        digits: u8,
        control: u8,
    ) -> Result<ReferencePinBlock, KeyError> {
        let key = KeyRef::new(KeyUsage::Zpk, 0);
        let pin = pinblock::random_pin(digits, getrandom::fill)
            .map_err(|_| KeyError::Rule {
                key,
                rule: "the system random number generator failed".into(),
            })?
            .map_err(|r| KeyError::Rule { key, rule: r })?;
        Ok(ReferencePinBlock::Clear(pinblock::pin_field_fill_f(
            &pin, control,
        )))
    }

    fn ca_public_key(&self, rid: [u8; 5], index: u8) -> Option<CaPublicKey> {
        self.ca_public_keys()
            .into_iter()
            .find(|c| c.rid == rid && c.index == index)
    }

    fn issuer_oda(&self, oda_index: u32) -> Result<IssuerOda, KeyError> {
        Ok(self.issuer(oda_index)?.oda.clone())
    }

    fn issuer_sign_raw(&self, oda_index: u32, block: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = KeyRef::new(KeyUsage::IssuerRsa, oda_index);
        self.issuer(oda_index)?
            .pair
            .sign_raw(block)
            .map_err(|e| KeyError::Rule {
                key,
                rule: e.to_string(),
            })
    }
}
