//! The key operations chip preparation needs, by key reference; key values never leave the key
//! store (an HSM can implement the same trait).
//!
//! - ICC master keys (DGI 8000) from the issuer master keys at a `derivationKeyIndex` (usages
//!   `imk-ac`, `imk-smi`, `imk-smc`): a zeroizing 48-byte value (or, from an HSM, a reference
//!   the store resolves at STORE DATA) and the KCVs.
//! - The reference PIN block (DGI 8010) from the order's encrypted PIN, recovered inside the
//!   store, or from a PIN the store generates at random: clear, or (an HSM with a bureau
//!   transport key `ktk`) wrapped until STORE DATA.
//! - ODA: the issuer RSA key at an `odaKeyIndex` (usage `issuer-rsa`) signs; its public
//!   certificate material (90, 92, 9F32), CA index (8F) and RID come with it.

use zeroize::Zeroizing;

use super::ChipKcvs;
use crate::domain::emv_keys::MkdOption;
use crate::domain::fields::{Pan, Psn};
use crate::domain::keystore::{HeldSecret, KeyError, KeyRef, KeyStore, PinBlockRef};
use crate::domain::oda::{
    CaPublicKey, EmvPublicKey, IssuerCertFields, OdaError, PublicKeyCertificate, RecoverySigner,
};

/// The DGI 8000 value (MK-AC || MK-SMI || MK-SMC): clear bytes (the software store), or held
/// in the key store until STORE DATA (a PKCS#11 store: the keys never reach host memory).
pub enum IccMasterKeyValue {
    /// 48 bytes, zeroized on drop.
    Clear(Zeroizing<[u8; 48]>),
    /// Derived again inside the store at STORE DATA and sent wrapped under the card's DEK.
    Held(HeldSecret),
}

/// The reference PIN block (DGI 8010): clear bytes (the software store, a token without a
/// `ktk`), or wrapped under the bureau transport key until STORE DATA (a PKCS#11 store with a
/// `ktk`: the clear block existed on the host only inside the call that built it).
pub enum ReferencePinBlock {
    /// `C N PIN F..F`, zeroized on drop.
    Clear(Zeroizing<[u8; 8]>),
    /// Wrapped under a `ktk` ([`HeldSecret::Wrapped`]).
    Held(HeldSecret),
}

impl std::fmt::Debug for ReferencePinBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Clear(_) => f.write_str("ReferencePinBlock(<redacted, 8 bytes>)"),
            Self::Held(h) => write!(f, "ReferencePinBlock({h:?})"),
        }
    }
}

/// The DGI 8000 value and its check values.
pub struct IccMasterKeySet {
    /// The value, clear or held in the store.
    pub value: IccMasterKeyValue,
    /// KCVs of the three keys.
    pub kcvs: ChipKcvs,
}

impl std::fmt::Debug for IccMasterKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match &self.value {
            IccMasterKeyValue::Clear(_) => "<redacted, 48 bytes>",
            IccMasterKeyValue::Held(_) => "<held in the key store>",
        };
        f.debug_struct("IccMasterKeySet")
            .field("value", &value)
            .field("kcvs", &self.kcvs)
            .finish()
    }
}

/// The public side of an issuer ODA key entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerOda {
    /// The key entry.
    pub key: KeyRef,
    /// RID of the CA that certified the issuer key.
    pub rid: [u8; 5],
    /// CA public key index (8F).
    pub ca_index: u8,
    /// Issuer public key certificate (90), remainder (92, may be empty) and exponent (9F32).
    pub certificate: PublicKeyCertificate,
    /// The issuer public key (for size rules and checks).
    pub public_key: EmvPublicKey,
    /// Issuer identifier, expiry and serial, as recovered from the certificate at load.
    pub fields: IssuerCertFields,
}

/// Key operations for chip data. Everything [`KeyStore`] offers (iCVV, key info) plus these.
pub trait ChipKeys: KeyStore {
    /// Derives MK-AC, MK-SMI and MK-SMC for PAN and PSN from the IMKs at `derivation_index`
    /// with `option` (EMV Book 2 A1.4).
    fn icc_master_keys(
        &self,
        derivation_index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccMasterKeySet, KeyError>;

    /// The reference PIN block `C N PIN F..F` (C = `control`) from the PIN recovered from `pin`
    /// inside the store: clear, or held wrapped under the store's `ktk`.
    fn reference_pin_block(
        &self,
        pin: PinBlockRef<'_>,
        pan: &Pan,
        control: u8,
    ) -> Result<ReferencePinBlock, KeyError>;

    /// The reference PIN block of a PIN of `digits` digits generated at random inside the store:
    /// clear, or held wrapped under the store's `ktk`.
    fn random_reference_pin_block(
        &self,
        digits: u8,
        control: u8,
    ) -> Result<ReferencePinBlock, KeyError>;

    /// The issuer ODA key at `oda_index`: certificate material, CA index and RID.
    fn issuer_oda(&self, oda_index: u32) -> Result<IssuerOda, KeyError>;

    /// The raw RSA private operation with the issuer key at `oda_index` (message recovery).
    fn issuer_sign_raw(&self, oda_index: u32, block: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// The CA public key the store knows for RID `rid` and index `index` (8F), if any.
    fn ca_public_key(&self, rid: [u8; 5], index: u8) -> Option<CaPublicKey>;
}

/// Signs with the issuer key through [`ChipKeys`], for the certificate builders in `oda`.
pub struct IssuerSigner<'a> {
    keys: &'a dyn ChipKeys,
    index: u32,
    public: EmvPublicKey,
}

impl<'a> IssuerSigner<'a> {
    /// A signer for the issuer key at `index` whose public key is `public`.
    pub fn new(keys: &'a dyn ChipKeys, index: u32, public: EmvPublicKey) -> Self {
        Self {
            keys,
            index,
            public,
        }
    }
}

impl RecoverySigner for IssuerSigner<'_> {
    fn public_key(&self) -> &EmvPublicKey {
        &self.public
    }

    fn sign_raw(&self, block: &[u8]) -> Result<Vec<u8>, OdaError> {
        self.keys
            .issuer_sign_raw(self.index, block)
            .map_err(|_| OdaError::Rsa("issuer key operation in the key store"))
    }
}

/// An ICC RSA key pair and whether a pool had it ready.
pub struct IccKeyPair {
    /// The pair (private half zeroized on drop).
    pub pair: crate::domain::oda::RsaKeyPair,
    /// Taken from a pool of pre-generated pairs (false: generated inline).
    pub from_pool: bool,
}

/// Where ICC key pairs come from: a pool of pre-generated pairs, or inline generation.
pub trait IccKeySource {
    /// A fresh key pair of exactly `bits` bits with exponent `exponent`; never handed out twice.
    fn icc_key_pair(
        &self,
        bits: usize,
        exponent: crate::domain::oda::RsaExponent,
    ) -> Result<IccKeyPair, OdaError>;

    /// The serial number of the `n`th ICC certificate (from 0) of `pair`, unique per
    /// certificate. The shipped sources return random bytes; this default hashes the fresh
    /// pair's modulus with `n` (a pair is never handed out twice).
    fn certificate_serial(&self, pair: &IccKeyPair, n: u8) -> Result<[u8; 3], OdaError> {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        h.update(pair.pair.modulus());
        h.update([n]);
        let d = h.finalize();
        Ok([d[0], d[1], d[2]])
    }
}
