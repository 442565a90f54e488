//! GlobalPlatform secure channels and the EMV CPS personalization session, host side.
//!
//! Pure and sans-I/O: the [`session::PersoSession`] state machine yields command APDUs and consumes
//! response bytes; a transport (PC/SC, a simulated card) moves them. Nothing here draws random
//! numbers: the host challenge comes from the caller.
//!
//! - [`apdu`]: command/response APDUs and status words.
//! - [`card_keys`]: one card's static keys on the host, behind the key store port's `CardKeySet`.
//! - [`kdf`]: static card keys from a KMC (EMV CPS 1.1, VISA2, GPPro "kdf3").
//! - [`scp02`]: SCP02 session keys, cryptograms, C-MAC, C-DEC and the session DEK.
//! - [`scp03`]: SCP03 KDF, session keys, cryptograms, C-MAC chaining, C-DEC, R-MAC/R-ENC.
//! - [`session`]: SELECT → INITIALIZE UPDATE → EXTERNAL AUTHENTICATE → (INSTALL for perso) →
//!   STORE DATA × n.
//!
//! Key bytes live only in [`SecretKey`] (and the session key structs), which zeroize on drop and
//! never print their value.

pub mod apdu;
pub mod card_keys;
pub mod kdf;
pub mod scp02;
pub mod scp03;
pub mod session;

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::domain::crypto::CryptoError;
use apdu::CommandApdu;

/// A card or host cryptogram (8 bytes), or why it could not be computed.
pub type CryptogramResult = Result<[u8; 8], GpError>;

/// An error from the GP building blocks (not from the session flow, see
/// [`session::SessionError`]). Never carries key or data bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpError {
    /// A primitive rejected a key or data length.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A key of the wrong size for its use.
    #[error("{what} must be {expected}, got {got} bytes")]
    KeyLength {
        /// Which key.
        what: &'static str,
        /// The accepted sizes, in words.
        expected: &'static str,
        /// The size given.
        got: usize,
    },
    /// A card response that does not have the expected layout.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// Why, in words (never the bytes).
        reason: &'static str,
    },
    /// A feature of the protocol that this implementation does not provide.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A command that would not fit a short APDU once wrapped.
    #[error("command data of {len} bytes is too long to wrap (at most {max})")]
    TooLong {
        /// The plain data length.
        len: usize,
        /// The largest plain length that fits.
        max: usize,
    },
    /// The card's R-MAC does not verify.
    #[error("R-MAC mismatch")]
    RMacMismatch,
}

/// A symmetric key of 16, 24 or 32 bytes (2-/3-key TDES or AES-128/192/256). Zeroized on drop;
/// `Debug` shows the length only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    bytes: [u8; 32],
    len: usize,
}

impl SecretKey {
    /// Copies a 16-, 24- or 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, GpError> {
        match key.len() {
            16 | 24 | 32 => {
                let mut bytes = [0u8; 32];
                bytes[..key.len()].copy_from_slice(key);
                Ok(Self {
                    bytes,
                    len: key.len(),
                })
            }
            got => Err(GpError::KeyLength {
                what: "a card key",
                expected: "16, 24 or 32 bytes",
                got,
            }),
        }
    }

    /// Parses a hex string (test and demo keys).
    pub fn from_hex(hex_key: &str) -> Result<Self, GpError> {
        let mut raw = hex::decode(hex_key).map_err(|_| GpError::Malformed {
            what: "key",
            reason: "not hex",
        })?;
        let key = Self::new(&raw);
        raw.zeroize();
        key
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The key length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a key has 16, 24 or 32 bytes); present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<{} bytes>)", self.len)
    }
}

/// The three static card keys of a security domain's key set: ENC, MAC and DEK.
#[derive(Clone, Debug)]
pub struct StaticKeys {
    /// K-ENC.
    pub enc: SecretKey,
    /// K-MAC.
    pub mac: SecretKey,
    /// K-DEK.
    pub dek: SecretKey,
}

/// One of the three static keys (the `k` byte of key diversification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// K-ENC (01).
    Enc,
    /// K-MAC (02).
    Mac,
    /// K-DEK (03).
    Dek,
}

impl KeyPurpose {
    /// The diversification byte: 01 ENC, 02 MAC, 03 DEK.
    pub fn code(self) -> u8 {
        match self {
            Self::Enc => 0x01,
            Self::Mac => 0x02,
            Self::Dek => 0x03,
        }
    }
}

/// A secure channel security level (the P1 of EXTERNAL AUTHENTICATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityLevel {
    /// `01`: C-MAC.
    CMac,
    /// `03`: C-DECRYPTION and C-MAC.
    CMacCDec,
    /// `11`: C-MAC and R-MAC (SCP03 here).
    CMacRMac,
    /// `13`: C-DECRYPTION, C-MAC and R-MAC (SCP03 here).
    CMacCDecRMac,
    /// `33`: C-DECRYPTION, C-MAC, R-MAC and R-ENCRYPTION (SCP03 only).
    Full,
}

impl SecurityLevel {
    /// The P1 byte of EXTERNAL AUTHENTICATE.
    pub fn p1(self) -> u8 {
        match self {
            Self::CMac => 0x01,
            Self::CMacCDec => 0x03,
            Self::CMacRMac => 0x11,
            Self::CMacCDecRMac => 0x13,
            Self::Full => 0x33,
        }
    }

    /// The level for a P1 byte, if it is one of the supported ones.
    pub fn from_p1(p1: u8) -> Option<Self> {
        Some(match p1 {
            0x01 => Self::CMac,
            0x03 => Self::CMacCDec,
            0x11 => Self::CMacRMac,
            0x13 => Self::CMacCDecRMac,
            0x33 => Self::Full,
            _ => return None,
        })
    }

    /// Whether command data is encrypted.
    pub fn c_dec(self) -> bool {
        self.p1() & 0x02 != 0
    }

    /// The largest plain command data field that still fits a short APDU once wrapped at this
    /// level: the padded length (a multiple of the block, 8 for SCP02 and 16 for SCP03, always
    /// at least one padding byte) plus the 8-byte C-MAC stays within 255.
    pub fn max_plain_data(self) -> usize {
        if self.c_dec() { 239 } else { 247 }
    }

    /// The plain EXTERNAL AUTHENTICATE `80 82 level 00 08 host-cryptogram`, before the
    /// protocol's C-MAC.
    pub fn external_authenticate(self, host_cryptogram: &[u8; 8]) -> CommandApdu {
        CommandApdu::fixed(0x80, 0x82, self.p1(), 0x00, *host_cryptogram, None)
    }

    /// Whether responses carry an R-MAC.
    pub fn r_mac(self) -> bool {
        self.p1() & 0x10 != 0
    }

    /// Whether response data is encrypted.
    pub fn r_enc(self) -> bool {
        self.p1() & 0x20 != 0
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::CMac => "C-MAC",
            Self::CMacCDec => "C-MAC + C-DEC",
            Self::CMacRMac => "C-MAC + R-MAC",
            Self::CMacCDecRMac => "C-MAC + C-DEC + R-MAC",
            Self::Full => "C-MAC + C-DEC + R-MAC + R-ENC",
        };
        write!(f, "{:02X} ({name})", self.p1())
    }
}

fn array<const N: usize>(s: &[u8], what: &'static str) -> Result<[u8; N], GpError> {
    s.try_into().map_err(|_| GpError::Malformed {
        what,
        reason: "wrong length",
    })
}

/// `N` bytes of `data` from offset `at`, or a "too short" error (never a panic).
fn field<const N: usize>(data: &[u8], at: usize, what: &'static str) -> Result<[u8; N], GpError> {
    data.get(at..at.saturating_add(N))
        .ok_or(GpError::Malformed {
            what,
            reason: "too short",
        })
        .and_then(|s| array(s, what))
}
