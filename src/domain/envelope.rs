//! The Model 2 envelope (docs/conventions.md, "Model 2 envelope"): an issuer-prepared DGI stream
//! encrypted under a KEK, with a MAC under a MAC key that travels wrapped under the same KEK.
//!
//! - `macKey`: the MAC key (16 bytes) wrapped under the KEK in ECB mode, no padding.
//! - `tlvData`: the plaintext DGI stream padded ISO/IEC 7816-4 style (`80 00..`, at least one
//!   byte) to the cipher block, encrypted in CBC mode with a zero IV under the KEK.
//! - `mac`: over the plaintext before padding; AES-CMAC with the MAC key when the KEK is AES,
//!   ISO 9797-1 MAC algorithm 3 (padding method 2) when it is TDES; the leftmost `mac_len` bytes
//!   (8 by default), compared in constant time.
//!
//! Opening checks in this order: MAC key unwrapped, ciphertext shape, padding, MAC. Errors name the
//! rule, never a byte of clear data.

use zeroize::Zeroizing;

use super::crypto::{self, CryptoError, MacPadding};

/// The KEK's algorithm decides the cipher and the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekAlgorithm {
    /// AES-128/192/256: AES-CBC and AES-CMAC.
    Aes,
    /// 2- or 3-key TDES: TDES-CBC and ISO 9797-1 MAC algorithm 3.
    Tdes,
}

impl KekAlgorithm {
    fn block(self) -> usize {
        match self {
            Self::Aes => crypto::AES_BLOCK,
            Self::Tdes => crypto::DES_BLOCK,
        }
    }
}

/// Per-product envelope settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeSettings {
    /// Bytes of MAC carried in the order (4 to 16; 8 by default).
    pub mac_len: usize,
}

impl Default for EnvelopeSettings {
    fn default() -> Self {
        Self { mac_len: 8 }
    }
}

/// The wrapped MAC key length.
pub const MAC_KEY_LEN: usize = 16;

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("macKey: must be {MAC_KEY_LEN} bytes wrapped under the KEK, got {0}")]
    MacKeyLength(usize),
    #[error(
        "tlvData: ciphertext length {len} is not a whole number of {block}-byte blocks (truncated?)"
    )]
    CiphertextLength { len: usize, block: usize },
    #[error(
        "tlvData: padding is not ISO/IEC 7816-4 (80 00..) after decryption (wrong KEK or corrupted data)"
    )]
    Padding,
    #[error("mac: must be {expected} bytes, got {got}")]
    MacLength { expected: usize, got: usize },
    #[error("mac: verification failed (tlvData, macKey or mac altered, or wrong KEK)")]
    MacMismatch,
    #[error("KEK: {0}")]
    Kek(CryptoError),
}

fn mac_over(
    alg: KekAlgorithm,
    mac_key: &[u8],
    data: &[u8],
) -> Result<Zeroizing<[u8; 16]>, EnvelopeError> {
    let mut out = Zeroizing::new([0u8; 16]);
    match alg {
        KekAlgorithm::Aes => {
            *out = crypto::aes_cmac(mac_key, data).map_err(EnvelopeError::Kek)?;
        }
        KekAlgorithm::Tdes => {
            let m = crypto::retail_mac(mac_key, &[0; 8], data, MacPadding::Method2)
                .map_err(EnvelopeError::Kek)?;
            out[..8].copy_from_slice(&m);
        }
    }
    Ok(out)
}

fn max_mac_len(alg: KekAlgorithm) -> usize {
    match alg {
        KekAlgorithm::Aes => 16,
        KekAlgorithm::Tdes => 8,
    }
}

/// Unwraps the MAC key, decrypts `tlv_data`, removes the padding strictly and verifies `mac`.
/// Returns the plaintext DGI stream in a zeroizing buffer.
pub fn open(
    alg: KekAlgorithm,
    kek: &[u8],
    wrapped_mac_key: &[u8],
    tlv_data: &[u8],
    mac: &[u8],
    settings: EnvelopeSettings,
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if wrapped_mac_key.len() != MAC_KEY_LEN {
        return Err(EnvelopeError::MacKeyLength(wrapped_mac_key.len()));
    }
    let mut mac_key = Zeroizing::new([0u8; MAC_KEY_LEN]);
    mac_key.copy_from_slice(wrapped_mac_key);
    match alg {
        KekAlgorithm::Aes => crypto::aes_ecb_decrypt(kek, mac_key.as_mut()),
        KekAlgorithm::Tdes => crypto::tdes_ecb_decrypt(kek, mac_key.as_mut()),
    }
    .map_err(EnvelopeError::Kek)?;

    let block = alg.block();
    if tlv_data.is_empty() || !tlv_data.len().is_multiple_of(block) {
        return Err(EnvelopeError::CiphertextLength {
            len: tlv_data.len(),
            block,
        });
    }
    let mut plain = Zeroizing::new(tlv_data.to_vec());
    match alg {
        KekAlgorithm::Aes => crypto::aes_cbc_decrypt(kek, &[0; 16], &mut plain),
        KekAlgorithm::Tdes => crypto::tdes_cbc_decrypt(kek, &[0; 8], &mut plain),
    }
    .map_err(EnvelopeError::Kek)?;
    let len = crypto::unpad_iso7816_len(&plain, block).map_err(|_| EnvelopeError::Padding)?;
    plain.truncate(len);

    let want = settings.mac_len.clamp(4, max_mac_len(alg));
    if mac.len() != want {
        return Err(EnvelopeError::MacLength {
            expected: want,
            got: mac.len(),
        });
    }
    let computed = mac_over(alg, mac_key.as_ref(), &plain)?;
    if !crypto::ct_eq(&computed[..want], mac) {
        return Err(EnvelopeError::MacMismatch);
    }
    Ok(plain)
}

/// The three encrypted fields of an envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `macKey`: the MAC key wrapped under the KEK.
    pub mac_key: Vec<u8>,
    /// `tlvData`: the padded, encrypted plaintext.
    pub tlv_data: Vec<u8>,
    /// `mac`: over the plaintext.
    pub mac: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(<{} bytes>)", self.tlv_data.len())
    }
}

/// Seals a plaintext DGI stream (the issuer side; used by the packer and tests). `mac_key` is the
/// fresh MAC key the caller drew at random.
pub fn seal(
    alg: KekAlgorithm,
    kek: &[u8],
    mac_key: &[u8; MAC_KEY_LEN],
    plaintext: &[u8],
    settings: EnvelopeSettings,
) -> Result<Sealed, EnvelopeError> {
    let block = alg.block();
    let mut wrapped = mac_key.to_vec();
    match alg {
        KekAlgorithm::Aes => crypto::aes_ecb_encrypt(kek, &mut wrapped),
        KekAlgorithm::Tdes => crypto::tdes_ecb_encrypt(kek, &mut wrapped),
    }
    .map_err(EnvelopeError::Kek)?;
    let mut data = Zeroizing::new(plaintext.to_vec());
    crypto::pad_iso7816(&mut data, block);
    match alg {
        KekAlgorithm::Aes => crypto::aes_cbc_encrypt(kek, &[0; 16], &mut data),
        KekAlgorithm::Tdes => crypto::tdes_cbc_encrypt(kek, &[0; 8], &mut data),
    }
    .map_err(EnvelopeError::Kek)?;
    let want = settings.mac_len.clamp(4, max_mac_len(alg));
    let mac = mac_over(alg, mac_key, plaintext)?;
    Ok(Sealed {
        mac_key: wrapped,
        tlv_data: data.to_vec(),
        mac: mac[..want].to_vec(),
    })
}

/// Opening or sealing through the key store failed: the key, or the envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeKeyError {
    #[error("encryptedData.tlvData.kekId: {0}")]
    Key(#[from] super::keystore::KeyError),
    #[error("encryptedData.tlvData.{0}")]
    Envelope(#[from] EnvelopeError),
}

/// Key store operations for Model 2 envelopes; the KEK never leaves the key store.
pub trait EnvelopeKeys: Send + Sync {
    /// Opens an envelope under the KEK `kek` (usage `kek`): unwrap, decrypt, unpad, verify.
    fn open_envelope(
        &self,
        kek: super::keystore::KeyRef,
        wrapped_mac_key: &[u8],
        tlv_data: &[u8],
        mac: &[u8],
        settings: EnvelopeSettings,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeKeyError>;

    /// Seals a plaintext DGI stream under `kek` with a fresh `mac_key` (issuer-side packer).
    fn seal_envelope(
        &self,
        kek: super::keystore::KeyRef,
        mac_key: &[u8; MAC_KEY_LEN],
        plaintext: &[u8],
        settings: EnvelopeSettings,
    ) -> Result<Sealed, EnvelopeKeyError>;
}
