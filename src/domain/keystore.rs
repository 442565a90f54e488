//! The key store port: what the domain may ask of keys. Operations take a key reference
//! (usage + index, as orders name keys) and return results; key values never come out, so an HSM
//! can implement the same trait as the software store.

use std::fmt;

use super::crypto::CryptoError;
use super::fields::{Cvv, EncryptedPinBlock, Pan, PinBlockFormat, Pvv};
use super::pinblock::PinBlockError;

/// What a key is for. Orders name keys by index within a usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum KeyUsage {
    /// Card verification key (CVV/CVC, iCVV).
    Cvk,
    /// PIN verification key (Visa PVV).
    Pvk,
    /// Zone PIN key: ISO 0 (TDES) and ISO 4 (AES) PIN blocks.
    Zpk,
    /// PIN transport key: ISO 0 blocks of `ISO0TK` orders.
    PinTk,
    /// Issuer master key for application cryptograms.
    ImkAc,
    /// Issuer master key for secure messaging integrity.
    ImkSmi,
    /// Issuer master key for secure messaging confidentiality.
    ImkSmc,
    /// Key encryption key (Model 2 envelopes).
    Kek,
    /// Card manager master key (GlobalPlatform card keys).
    Kmc,
    /// Issuer RSA private key (ODA certificates).
    IssuerRsa,
    /// Seals the store's audit trail (HMAC-SHA256 key; algorithm aes, 16-32 bytes).
    Audit,
    /// The bureau's P-256 key for JWE `encryptedData` (ECDH-ES), named by its `kid`.
    Jwe,
    /// Seals data a store keeps at rest (AES-256-GCM, [`super::seal`]): queued orders, pooled
    /// ICC keys.
    Store,
    /// Bureau transport key (AES): holds a sensitive DGI prepared before the card is known
    /// wrapped until STORE DATA (a PKCS#11 store: `C_WrapKey`, `CKM_AES_KEY_WRAP_PAD`).
    Ktk,
}

impl KeyUsage {
    /// Every usage, in the key file's spelling.
    pub const ALL: [KeyUsage; 14] = [
        Self::Cvk,
        Self::Pvk,
        Self::Zpk,
        Self::PinTk,
        Self::ImkAc,
        Self::ImkSmi,
        Self::ImkSmc,
        Self::Kek,
        Self::Kmc,
        Self::IssuerRsa,
        Self::Audit,
        Self::Jwe,
        Self::Store,
        Self::Ktk,
    ];

    /// The key file spelling (`cvk`, `pin-tk`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cvk => "cvk",
            Self::Pvk => "pvk",
            Self::Zpk => "zpk",
            Self::PinTk => "pin-tk",
            Self::ImkAc => "imk-ac",
            Self::ImkSmi => "imk-smi",
            Self::ImkSmc => "imk-smc",
            Self::Kek => "kek",
            Self::Kmc => "kmc",
            Self::IssuerRsa => "issuer-rsa",
            Self::Audit => "audit",
            Self::Jwe => "jwe",
            Self::Store => "store",
            Self::Ktk => "ktk",
        }
    }

    /// Parses the key file spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.as_str() == s)
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key reference: usage and index, e.g. `cvk #3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct KeyRef {
    /// What the key is for.
    pub usage: KeyUsage,
    /// The index orders use.
    pub index: u32,
}

impl KeyRef {
    /// Makes a reference.
    pub fn new(usage: KeyUsage, index: u32) -> Self {
        Self { usage, index }
    }
}

impl KeyRef {
    /// Appends the reference as [`Display`](fmt::Display) writes it (`cvk #3`), without the
    /// formatting machinery (source texts of every card).
    pub fn push_to(self, out: &mut String) {
        out.push_str(self.usage.as_str());
        out.push_str(" #");
        push_decimal(out, self.index);
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{}", self.usage, self.index)
    }
}

/// Key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyAlgorithm {
    /// Triple DES, 16 or 24 bytes.
    Tdes,
    /// AES, 16, 24 or 32 bytes.
    Aes,
    /// RSA private key.
    Rsa,
    /// EC private key on P-256 (JWE key agreement).
    EcP256,
}

impl KeyAlgorithm {
    /// The key file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tdes => "tdes",
            Self::Aes => "aes",
            Self::Rsa => "rsa",
            Self::EcP256 => "ec-p256",
        }
    }
}

/// What may be known about a key without its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The reference.
    pub key: KeyRef,
    /// Algorithm.
    pub algorithm: KeyAlgorithm,
    /// Key check value, upper-case hex (3 bytes).
    pub kcv: String,
    /// A test key: its results may be revealed.
    pub test: bool,
}

/// A key operation failed. Names the key, never its value or the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {0} is not in the key store")]
    NotFound(KeyRef),
    #[error("key {key} is {found}, the operation needs {needed}")]
    WrongAlgorithm {
        key: KeyRef,
        found: &'static str,
        needed: &'static str,
    },
    #[error("key {key}: {source}")]
    Crypto { key: KeyRef, source: CryptoError },
    /// One message for every failure: no detail of the clear block (issue 13, finding 12).
    #[error("PIN block cannot be recovered with key {key}")]
    PinBlock { key: KeyRef, source: PinBlockError },
    /// Any other rule a key operation broke (the rule names no value).
    #[error("key {key}: {rule}")]
    Rule { key: KeyRef, rule: String },
    /// A PKCS#11 token holds no object with the key's label (`cvk/9`).
    #[error("{label} is not on token {token}")]
    NotOnToken { label: String, token: String },
    /// The key store itself failed (token gone, session closed, mechanism refused).
    #[error("key {key}: key store: {rule}")]
    Store { key: KeyRef, rule: String },
}

/// The PIN of an order as the key store needs it: the encrypted block, its format and its key.
#[derive(Debug, Clone, Copy)]
pub struct PinBlockRef<'a> {
    /// ISO 9564 format of the block.
    pub format: PinBlockFormat,
    /// The key it is encrypted under (`zpk` or `pin-tk`).
    pub key: KeyRef,
    /// The encrypted block.
    pub block: &'a EncryptedPinBlock,
}

impl PinBlockFormat {
    /// The key usage a block of this format is encrypted under (docs/conventions.md).
    pub fn key_usage(self) -> KeyUsage {
        match self {
            Self::Iso0 | Self::Iso4 => KeyUsage::Zpk,
            Self::Iso0Tk => KeyUsage::PinTk,
        }
    }
}

/// Operations on keys held elsewhere (software store, HSM). Implementations must be usable from
/// worker threads.
pub trait KeyStore: Send + Sync {
    /// Algorithm, KCV and test flag of a key.
    fn info(&self, key: KeyRef) -> Result<KeyInfo, KeyError>;

    /// Visa CVV over PAN, expiry (YYMM) and service code with the CVK `cvk`.
    fn visa_cvv(
        &self,
        cvk: KeyRef,
        pan: &Pan,
        exp: &str,
        service_code: &str,
    ) -> Result<Cvv, KeyError>;

    /// Visa PVV with the PVK `pvk` and key index `pvki`, from the PIN recovered from `pin` inside
    /// the key store; the clear PIN never leaves it.
    fn visa_pvv(
        &self,
        pvk: KeyRef,
        pvki: u8,
        pan: &Pan,
        pin: PinBlockRef<'_>,
    ) -> Result<Pvv, KeyError>;
}

/// Notes that an operation used `key`, once, with its public information (for the reveal
/// policy); `path` names the order field that chose the key, for the error.
pub fn note_key_use(
    keys: &dyn KeyStore,
    used: &mut Vec<KeyInfo>,
    key: KeyRef,
    path: &str,
) -> Result<(), super::finding::Finding> {
    if used.iter().any(|k| k.key == key) {
        return Ok(());
    }
    let info = keys
        .info(key)
        .map_err(|e| super::finding::Finding::new(path, e.to_string()))?;
    used.push(info);
    Ok(())
}

/// The card-side keys of personalization and read-back, by reference: GlobalPlatform card keys
/// diversified from a KMC, the CA public keys of the issuer entries, and the ICC master key that
/// checks an ARQC. Implemented by every key store; the KMC and the IMK-AC stay inside it.
pub trait CardKeyStore: KeyStore {
    /// Every key's public information (label, algorithm, KCV, test flag).
    fn inventory(&self) -> Vec<KeyInfo>;

    /// One card's GlobalPlatform keys for one secure channel session: the KMC `kmc #kmc_index`
    /// diversified inside the store with the card's KDD (INITIALIZE UPDATE) by `method`. The
    /// static ENC/MAC/DEK stay in the returned [`CardKeySet`] (a PKCS#11 store keeps them as
    /// token session objects, destroyed when it drops); only the SCP session keys the channel
    /// needs come out of it.
    fn open_card_keys(
        &self,
        kmc_index: u32,
        method: super::gp::kdf::Diversification,
        kdd: &super::gp::kdf::Kdd,
    ) -> Result<Box<dyn CardKeySet>, KeyError>;

    /// The CA public keys named by the store's issuer entries (RID, index), without duplicates.
    fn ca_public_keys(&self) -> Vec<super::oda::CaPublicKey>;

    /// MK-AC of one card, derived inside the store from `imk-ac #imk_index` (EMV Book 2 A1.4),
    /// for the read-back ARQC check. Stores may refuse live keys.
    fn arqc_master_key(
        &self,
        imk_index: u32,
        option: super::emv_keys::MkdOption,
        pan: &Pan,
        psn: super::fields::Psn,
    ) -> Result<super::emv_keys::DesKey16, KeyError>;

    /// The value of a sensitive DGI held in the store ([`HeldSecret`]), encrypted for the card
    /// under `dek` exactly as the GP session encrypts a clear sensitive DGI (the card receives
    /// the same bytes). A PKCS#11 store derives the secret and wraps it inside the token
    /// (`C_WrapKey`) under the DEK object its [`CardKeySet`] holds ([`CardDek::Held`]); it fails
    /// closed when the token cannot wrap under that DEK.
    fn held_secret_for_card(
        &self,
        secret: &HeldSecret,
        dek: CardDek<'_>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError>;
}

/// Sealing of data at rest with the key store's `store` key (AES-256-GCM, format in
/// [`super::seal`]); the key stays in the store. `purpose` binds a blob to its row and use.
pub trait StoreSealKeys: Send + Sync {
    /// Seals `plaintext` under the `store` key with the lowest index, with a fresh random nonce.
    fn store_seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// Opens a blob sealed for `purpose` by one of the store's `store` keys (the blob names its
    /// index). Fails closed: unknown key, altered bytes or another purpose are errors.
    fn store_open(
        &self,
        purpose: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError>;
}

/// The `store` key a sealed blob names, and the blob's parts: the first step of every
/// [`StoreSealKeys::store_open`]. A malformed blob is a rule error on `store #0`.
pub fn sealed_by(sealed: &[u8]) -> Result<(KeyRef, super::seal::Sealed<'_>), KeyError> {
    let parsed = super::seal::parse(sealed).map_err(|e| KeyError::Rule {
        key: KeyRef::new(KeyUsage::Store, 0),
        rule: e.to_string(),
    })?;
    Ok((KeyRef::new(KeyUsage::Store, parsed.key_index), parsed))
}

/// A JWE key operation failed. Names the `kid`, never a key value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweKeyError {
    #[error("kid {0} is not in the key store (usage jwe)")]
    UnknownKid(String),
    #[error("kid {kid}: {rule}")]
    Rule { kid: String, rule: String },
}

/// The public part of a JWE key.
#[derive(Debug, Clone)]
pub struct JwePublicKey {
    /// The `kid` senders put in the JWE header.
    pub kid: String,
    /// The public point.
    pub point: super::jwe::P256Point,
    /// A test key (demo and test orders may be sealed for it).
    pub test: bool,
}

/// Key agreement with the bureau's JWE keys (usage `jwe`), chosen by `kid`: the private key
/// stays in the store (a PKCS#11 store does `CKM_ECDH1_DERIVE` in the token).
pub trait JweKeys: Send + Sync {
    /// ECDH (P-256) of the private key `kid` with a validated ephemeral public point: Z.
    fn jwe_agree(
        &self,
        kid: &str,
        epk: &super::jwe::P256Point,
    ) -> Result<super::jwe::SharedSecret, JweKeyError>;

    /// The public key of `kid`.
    fn jwe_public(&self, kid: &str) -> Result<JwePublicKey, JweKeyError>;
}

/// No JWE keys: every `kid` is unknown (front ends that were given no key store).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJweKeys;

impl JweKeys for NoJweKeys {
    fn jwe_agree(
        &self,
        kid: &str,
        _epk: &super::jwe::P256Point,
    ) -> Result<super::jwe::SharedSecret, JweKeyError> {
        Err(JweKeyError::Rule {
            kid: kid.to_string(),
            rule: "no key store was given to open JWE encryptedData".into(),
        })
    }

    fn jwe_public(&self, kid: &str) -> Result<JwePublicKey, JweKeyError> {
        Err(JweKeyError::Rule {
            kid: kid.to_string(),
            rule: "no key store was given to open JWE encryptedData".into(),
        })
    }
}

/// A sensitive DGI value that stays inside the key store until STORE DATA: the prepared DGI
/// carries this reference instead of clear bytes, and the session asks the store
/// ([`CardKeyStore::held_secret_for_card`]) for the value already encrypted under the card's
/// DEK. A PKCS#11 store derives or unwraps and wraps inside the token (docs/hsm.md). `Debug`
/// shows no value (the PAN masked, no blob bytes).
#[derive(Clone, PartialEq, Eq)]
pub enum HeldSecret {
    /// MK-AC ‖ MK-SMI ‖ MK-SMC of one card (DGI 8000, 48 bytes), derived from the IMKs at
    /// `derivation_index` with `option` (EMV Book 2 A1.4).
    IccMasterKeys {
        /// The IMKs' index (`imk-ac`, `imk-smi`, `imk-smc`).
        derivation_index: u32,
        /// Option A or B.
        option: super::emv_keys::MkdOption,
        /// The card's PAN.
        pan: Pan,
        /// The card's PAN sequence number.
        psn: super::fields::Psn,
    },
    /// A value made at preparation (the reference PIN block, DGI 8010) and kept wrapped under
    /// the bureau transport key `ktk #ktk_index`: the store's blob holds the value followed by
    /// its ISO/IEC 7816-4 padding to 16 bytes, so it serves a padded and an unpadded DGI alike.
    Wrapped {
        /// The `ktk` the blob is wrapped under.
        ktk_index: u32,
        /// The wrapped value, in the store's own form (PKCS#11: `CKM_AES_KEY_WRAP_PAD`).
        blob: Vec<u8>,
        /// The clear value's length before padding (8 for a PIN block).
        len: usize,
        /// The DGI is sent padded (`80 00..`, the profile's `pad`): set by the preparation.
        pad: bool,
    },
}

impl fmt::Debug for HeldSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IccMasterKeys {
                derivation_index,
                option,
                pan,
                psn,
            } => f
                .debug_struct("IccMasterKeys")
                .field("derivation_index", derivation_index)
                .field("option", option)
                .field("pan", pan)
                .field("psn", psn)
                .finish(),
            Self::Wrapped {
                ktk_index,
                blob,
                len,
                pad,
            } => f
                .debug_struct("Wrapped")
                .field("ktk_index", ktk_index)
                .field("blob", &format_args!("<{} bytes>", blob.len()))
                .field("len", len)
                .field("pad", pad)
                .finish(),
        }
    }
}

impl HeldSecret {
    /// The length of the clear value the card receives (before encryption and padding).
    pub fn len(&self) -> usize {
        match self {
            Self::IccMasterKeys { .. } => 48,
            Self::Wrapped { len, .. } => *len,
        }
    }

    /// Never empty (clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the store sends the value padded (`80 00..`) itself: the DGI's `pad` flag must
    /// match it. A wrapped key (DGI 8000) cannot be padded.
    pub fn pads(&self) -> bool {
        match self {
            Self::IccMasterKeys { .. } => false,
            Self::Wrapped { pad, .. } => *pad,
        }
    }

    /// The same secret sent padded as `pad` says, for a channel that pads the DGI although its
    /// profile does not (SCP03: an 8-byte DGI 8010 under an AES DEK). A wrapped value holds its
    /// padded form, so it can be sent either way; a wrapped key (DGI 8000) keeps its own rule.
    pub fn sent_padded(&self, pad: bool) -> Self {
        match self {
            Self::Wrapped {
                ktk_index,
                blob,
                len,
                ..
            } => Self::Wrapped {
                ktk_index: *ktk_index,
                blob: blob.clone(),
                len: *len,
                pad,
            },
            other => other.clone(),
        }
    }

    /// The derivation inputs of held ICC master keys (IMK index, option, PAN, PSN), or `None`
    /// for another secret.
    pub fn icc_master_key_inputs(
        &self,
    ) -> Option<(&u32, &super::emv_keys::MkdOption, &Pan, &super::fields::Psn)> {
        match self {
            Self::IccMasterKeys {
                derivation_index,
                option,
                pan,
                psn,
            } => Some((derivation_index, option, pan, psn)),
            Self::Wrapped { .. } => None,
        }
    }

    /// The key the secret comes from, for errors.
    pub fn key(&self) -> KeyRef {
        match self {
            Self::IccMasterKeys {
                derivation_index, ..
            } => KeyRef::new(KeyUsage::ImkAc, *derivation_index),
            Self::Wrapped { ktk_index, .. } => KeyRef::new(KeyUsage::Ktk, *ktk_index),
        }
    }
}

/// The card's DEK a sensitive DGI is encrypted under at STORE DATA, exactly as the GP session
/// encrypts sensitive DGIs (`encrypt_sensitive`): SCP02 with the session DEK (TDES-ECB), SCP03
/// with the static DEK (AES-CBC, IV 0).
#[derive(Debug, Clone, Copy)]
pub enum CardDek<'a> {
    /// SCP02: the session DEK in host memory, TDES-ECB.
    Scp02Session(&'a super::gp::SecretKey),
    /// SCP03: the static DEK in host memory, AES-CBC with a zero IV.
    Scp03Static(&'a super::gp::SecretKey),
    /// A DEK that never left the key store that opened the card's keys: that store's own
    /// reference to it (a PKCS#11 store's token object), which only that store understands.
    Held(&'a dyn std::any::Any),
}

impl CardDek<'_> {
    /// Encrypts `data` on the host as the GP session does for sensitive DGIs. A DEK held in a
    /// key store cannot: an error.
    pub fn encrypt_on_host(&self, data: &[u8]) -> Result<Vec<u8>, super::gp::GpError> {
        match self {
            Self::Scp02Session(dek) => super::gp::scp02::encrypt_with_session_dek(dek, data),
            Self::Scp03Static(dek) => super::gp::scp03::encrypt_sensitive(dek, data),
            Self::Held(_) => Err(super::gp::GpError::Unsupported(
                "encryption on the host under a DEK held in a key store",
            )),
        }
    }
}

/// One card's GlobalPlatform static keys (ENC, MAC, DEK) for one secure channel session, held
/// where they were made: in the key store that diversified the KMC
/// ([`CardKeyStore::open_card_keys`]; a PKCS#11 store keeps them as token session objects), or
/// on the host for plans that carry static keys or a KMC ([`super::gp::card_keys::HostCardKeys`]).
/// No method returns a static key or the card's DEK: only the session keys the secure channel
/// needs, and sensitive data already encrypted under the DEK.
pub trait CardKeySet: Send {
    /// SCP02: S-ENC, C-MAC and R-MAC for the card's sequence counter. The session DEK is
    /// derived too and stays inside, for [`Self::encrypt_sensitive`] and [`Self::dek`].
    fn scp02_session(
        &mut self,
        sequence_counter: [u8; 2],
    ) -> Result<super::gp::scp02::ChannelKeys, KeyError>;

    /// SCP03: S-ENC, S-MAC and S-RMAC from both challenges (the static DEK is the DEK).
    fn scp03_session(
        &mut self,
        host_challenge: &[u8; 8],
        card_challenge: &[u8; 8],
    ) -> Result<super::gp::scp03::SessionKeys, KeyError>;

    /// SCP03: the pseudo-random card challenge `KDF(K-ENC, 02, seq || SD AID, 64)`.
    fn scp03_card_challenge(
        &self,
        sequence_counter: &[u8; 3],
        sd_aid: &[u8],
    ) -> Result<[u8; 8], KeyError>;

    /// Sensitive data (a DGI value whose length is a multiple of the block) encrypted under the
    /// card's DEK as the card receives it: SCP02 session DEK in TDES-ECB, SCP03 static DEK in
    /// AES-CBC with IV 0. Needs the session opened first.
    fn encrypt_sensitive(&self, data: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError>;

    /// The card's DEK for [`CardKeyStore::held_secret_for_card`]. Needs the session opened
    /// first.
    fn dek(&self) -> Result<CardDek<'_>, KeyError>;

    /// The KCVs of the static ENC, MAC and DEK (TDES: 8 × 00; AES: 16 × 01, the GP
    /// convention), computed where the keys are: public, for checks against published vectors.
    fn static_kcvs(&self) -> Result<[[u8; 3]; 3], KeyError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-built reference text is what `format!` writes, at every digit count.
    #[test]
    fn a_key_reference_pushed_by_hand_reads_as_its_display() {
        for usage in [KeyUsage::Cvk, KeyUsage::Pvk, KeyUsage::Zpk] {
            for index in [0, 1, 9, 10, 99, 100, 12_345, u32::MAX] {
                let key = KeyRef::new(usage, index);
                let mut text = String::from("x ");
                key.push_to(&mut text);
                assert_eq!(text, format!("x {key}"));
            }
        }
    }

    /// A value wrapped under a ktk names the ktk, pads as its DGI says and shows no blob byte.
    #[test]
    fn a_wrapped_value_names_its_ktk_and_debug_shows_no_bytes() {
        let blob = vec![0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69];
        let held = HeldSecret::Wrapped {
            ktk_index: 2,
            blob: blob.clone(),
            len: 8,
            pad: true,
        };
        assert_eq!(held.key(), KeyRef::new(KeyUsage::Ktk, 2));
        assert_eq!((held.len(), held.pads()), (8, true));
        let debug = format!("{held:?}");
        assert!(debug.contains("<6 bytes>"), "{debug}");
        assert!(
            !debug.contains("A5") && !debug.contains("165") && !debug.contains("a5"),
            "{debug}"
        );
        assert_eq!(KeyUsage::parse("ktk"), Some(KeyUsage::Ktk));
    }
}
