//! EMV symmetric card keys (EMV Book 2 Annex A1): ICC master key derivation (options A and B),
//! session keys (EMV common session key, Mastercard SKD, none for Visa CVN 10), application
//! cryptograms and ARPC methods 1 and 2.
//!
//! Keys live in [`DesKey16`], which zeroizes on drop and prints only its check value. Errors never
//! carry key bytes, PAN digits or cryptograms.

use core::fmt;
use core::str::FromStr;

use sha1::{Digest, Sha1};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::domain::crypto::{self, CryptoError, MacPadding};

/// Why an EMV key or cryptogram computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmvKeyError {
    /// The key is not a double-length (16-byte) DES key.
    #[error("key length {0} bytes is not a double-length DES key (16 bytes)")]
    KeyLength(usize),
    /// The PAN is not 8 to 19 decimal digits (the digits themselves are not reported).
    #[error("PAN must be 8 to 19 decimal digits (got {len} characters)")]
    Pan {
        /// Number of characters received.
        len: usize,
    },
    /// The PAN sequence number is not exactly two decimal digits.
    #[error("PAN sequence number must be exactly 2 decimal digits")]
    Psn,
    /// ARPC method 2 proprietary authentication data is longer than 8 bytes.
    #[error("proprietary authentication data must be 0 to 8 bytes (got {0})")]
    ProprietaryDataLength(usize),
    /// A profile named an unknown method.
    #[error("unknown {kind} {name:?}; expected one of: {expected}")]
    UnknownName {
        /// What was being parsed (e.g. "session key method").
        kind: &'static str,
        /// The name as given in the profile.
        name: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// A block cipher primitive rejected its input.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A double-length (2-key TDES) DES key. Zeroized on drop; `Debug` prints only the key check
/// value.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DesKey16([u8; 16]);

impl DesKey16 {
    /// Wraps 16 key bytes (parity is left as given).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Copies a 16-byte key out of a slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EmvKeyError> {
        let mut key = Self([0; 16]);
        if bytes.len() != key.0.len() {
            return Err(EmvKeyError::KeyLength(bytes.len()));
        }
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// The raw key bytes. Keep the borrow short; do not copy them into unmanaged buffers.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The TDES key check value (first 3 bytes of TDES(key, 8 x `00`)).
    pub fn kcv(&self) -> Result<[u8; 3], EmvKeyError> {
        Ok(crypto::kcv_tdes(&self.0)?)
    }
}

impl fmt::Debug for DesKey16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kcv() {
            Ok([a, b, c]) => write!(f, "DesKey16(kcv {a:02X}{b:02X}{c:02X})"),
            Err(_) => f.write_str("DesKey16(<redacted>)"),
        }
    }
}

/// ICC master key derivation option (EMV Book 2 Annex A1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MkdOption {
    /// Option A: rightmost 16 digits of PAN || PSN.
    A,
    /// Option B: SHA-1 of PAN || PSN, decimalised; identical to A for PANs of 16 digits or less.
    B,
}

impl FromStr for MkdOption {
    type Err = EmvKeyError;

    /// Accepts `a`, `b`, `option-a`, `option-b` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "a" | "option-a" => Ok(Self::A),
            "b" | "option-b" => Ok(Self::B),
            _ => Err(unknown("master key derivation option", s, "a, b")),
        }
    }
}

/// The one of `all` whose profile name is `s`.
fn named<T: Copy>(all: &[T], name: fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter().copied().find(|v| name(*v) == s)
}

fn unknown(kind: &'static str, name: &str, expected: &'static str) -> EmvKeyError {
    EmvKeyError::UnknownName {
        kind,
        name: name.chars().take(40).collect(),
        expected,
    }
}

/// Up to 19 PAN digits followed by the 2 PSN digits, as ASCII.
struct PanPsnDigits {
    buf: [u8; 21],
    len: usize,
}

impl PanPsnDigits {
    fn new(pan: &str, psn: &str) -> Result<Self, EmvKeyError> {
        let pan = pan.as_bytes();
        let psn = psn.as_bytes();
        if !(8..=19).contains(&pan.len()) || !pan.iter().all(u8::is_ascii_digit) {
            return Err(EmvKeyError::Pan { len: pan.len() });
        }
        if psn.len() != 2 || !psn.iter().all(u8::is_ascii_digit) {
            return Err(EmvKeyError::Psn);
        }
        let mut buf = [b'0'; 21];
        let len = pan.len() + 2;
        buf[..pan.len()].copy_from_slice(pan);
        buf[pan.len()..len].copy_from_slice(psn);
        Ok(Self { buf, len })
    }

    fn digits(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn pan_len(&self) -> usize {
        self.len - 2
    }
}

/// Packs 16 decimal values (0..=9, not ASCII) into 8 BCD bytes.
fn pack_nibbles(nibbles: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        if let [hi, lo] = pair {
            *o = (hi << 4) | lo;
        }
    }
    out
}

/// Option A input: rightmost 16 digits of PAN || PSN, left-padded with zeros.
fn option_a_block(digits: &PanPsnDigits) -> [u8; 8] {
    let d = digits.digits();
    let take = d.len().min(16);
    let mut nibbles = [0u8; 16];
    for (n, c) in nibbles[16 - take..].iter_mut().zip(&d[d.len() - take..]) {
        *n = c - b'0';
    }
    pack_nibbles(&nibbles)
}

/// Option B input: SHA-1 over PAN || PSN (BCD, a leading 0 when odd), decimalised: hash nibbles
/// 0-9 left to right, then if fewer than 16 the nibbles A-F mapped to 0-5, left to right.
fn option_b_block(digits: &PanPsnDigits) -> [u8; 8] {
    let d = digits.digits();
    let odd = d.len() % 2;
    let mut packed = [0u8; 11];
    let packed_len = (d.len() + odd) / 2;
    for (i, c) in d.iter().enumerate() {
        let pos = i + odd;
        packed[pos / 2] |= (c - b'0') << if pos.is_multiple_of(2) { 4 } else { 0 };
    }
    let hash = Sha1::digest(&packed[..packed_len]);
    let hash_nibbles = || hash.iter().flat_map(|b| [b >> 4, b & 0x0F]);
    let decimal = hash_nibbles().filter(|n| *n < 10);
    let letters = hash_nibbles().filter(|n| *n >= 10).map(|n| n - 10);
    let mut nibbles = [0u8; 16];
    for (n, v) in nibbles.iter_mut().zip(decimal.chain(letters)) {
        *n = v;
    }
    pack_nibbles(&nibbles)
}

/// Builds `TDES_key(Y) || TDES_key(Y xor FF..FF)` with odd parity, the shape shared by master key
/// derivation.
fn derive_from_block(key: &DesKey16, y: [u8; 8]) -> Result<DesKey16, EmvKeyError> {
    let mut out = DesKey16([0; 16]);
    out.0[..8].copy_from_slice(&y);
    for (o, b) in out.0[8..].iter_mut().zip(y) {
        *o = !b;
    }
    crypto::tdes_ecb_encrypt(&key.0, &mut out.0)?;
    crypto::adjust_odd_parity(&mut out.0);
    Ok(out)
}

/// Derives an ICC master key from an issuer master key (EMV Book 2 A1.4), parity-adjusted.
///
/// `pan` is 8-19 decimal digits (no `F` padding); `psn` is the 2-digit PAN sequence number
/// (`"00"` when the card has none).
pub fn derive_icc_master_key(
    option: MkdOption,
    imk: &DesKey16,
    pan: &str,
    psn: &str,
) -> Result<DesKey16, EmvKeyError> {
    let digits = PanPsnDigits::new(pan, psn)?;
    let y = match option {
        MkdOption::B if digits.pan_len() > 16 => option_b_block(&digits),
        _ => option_a_block(&digits),
    };
    derive_from_block(imk, y)
}

/// The 16-byte block `Y || (Y xor FF..FF)` that master key derivation encrypts under the issuer
/// master key (EMV Book 2 A1.4), for key stores that run the encryption elsewhere (an HSM). The
/// result still needs odd parity ([`crypto::adjust_odd_parity`]).
pub fn icc_derivation_data(
    option: MkdOption,
    pan: &str,
    psn: &str,
) -> Result<[u8; 16], EmvKeyError> {
    let digits = PanPsnDigits::new(pan, psn)?;
    let y = match option {
        MkdOption::B if digits.pan_len() > 16 => option_b_block(&digits),
        _ => option_a_block(&digits),
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&y);
    for (o, b) in out[8..].iter_mut().zip(y) {
        *o = !b;
    }
    Ok(out)
}

/// The three ICC master keys personalised in CPS DGI 8000 (AC, SMI, SMC).
#[derive(Debug, Clone)]
pub struct IccMasterKeys {
    /// Application cryptogram master key (MK-AC).
    pub ac: DesKey16,
    /// Secure messaging integrity master key (MK-SMI).
    pub smi: DesKey16,
    /// Secure messaging confidentiality master key (MK-SMC).
    pub smc: DesKey16,
}

impl IccMasterKeys {
    /// Derives all three ICC master keys with the same option, PAN and PSN.
    pub fn derive(
        option: MkdOption,
        imk_ac: &DesKey16,
        imk_smi: &DesKey16,
        imk_smc: &DesKey16,
        pan: &str,
        psn: &str,
    ) -> Result<Self, EmvKeyError> {
        Ok(Self {
            ac: derive_icc_master_key(option, imk_ac, pan, psn)?,
            smi: derive_icc_master_key(option, imk_smi, pan, psn)?,
            smc: derive_icc_master_key(option, imk_smc, pan, psn)?,
        })
    }

    /// The 3-byte KCVs of AC, SMI and SMC concatenated (CPS DGI 9000 value).
    pub fn kcvs(&self) -> Result<[u8; 9], EmvKeyError> {
        let mut out = [0u8; 9];
        for (dst, key) in out
            .chunks_exact_mut(3)
            .zip([&self.ac, &self.smi, &self.smc])
        {
            dst.copy_from_slice(&key.kcv()?);
        }
        Ok(out)
    }
}

/// EMV common session key derivation (EMV Book 2 A1.3.1):
/// `SK = TDES_MK(R with byte 3 = F0) || TDES_MK(R with byte 3 = 0F)`, parity-adjusted.
pub fn derive_common_session_key(mk: &DesKey16, r: &[u8; 8]) -> Result<DesKey16, EmvKeyError> {
    let mut out = DesKey16([0; 16]);
    out.0[..8].copy_from_slice(r);
    out.0[8..].copy_from_slice(r);
    out.0[2] = 0xF0;
    out.0[10] = 0x0F;
    crypto::tdes_ecb_encrypt(&mk.0, &mut out.0)?;
    crypto::adjust_odd_parity(&mut out.0);
    Ok(out)
}

/// Diversification value for EMV CSK application cryptogram keys: `ATC || 00 x 6`.
pub fn r_emv_csk(atc: [u8; 2]) -> [u8; 8] {
    [atc[0], atc[1], 0, 0, 0, 0, 0, 0]
}

/// Diversification value for the Mastercard proprietary SKD: `ATC || 00 00 || UN`.
pub fn r_mastercard_skd(atc: [u8; 2], un: [u8; 4]) -> [u8; 8] {
    [atc[0], atc[1], 0, 0, un[0], un[1], un[2], un[3]]
}

/// How the application cryptogram session key is obtained from the ICC master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKeyMethod {
    /// EMV common session key with `R = ATC || 00 x 6` (profile name `emv-csk`).
    EmvCsk,
    /// Mastercard proprietary SKD with `R = ATC || 00 00 || UN` (profile name `mc-skd`).
    MastercardSkd,
    /// No session key: the ICC master key is used directly, as Visa CVN 10 (profile name `none`).
    None,
}

impl SessionKeyMethod {
    const ALL: [Self; 3] = [Self::EmvCsk, Self::MastercardSkd, Self::None];
    const NAMES: &'static str = "emv-csk, mc-skd, none";

    /// The profile name of this method.
    pub fn name(self) -> &'static str {
        match self {
            Self::EmvCsk => "emv-csk",
            Self::MastercardSkd => "mc-skd",
            Self::None => "none",
        }
    }

    /// The AC session key for this method, given the ATC (9F36) and unpredictable number (9F37).
    pub fn session_key(
        self,
        mk: &DesKey16,
        atc: [u8; 2],
        un: [u8; 4],
    ) -> Result<DesKey16, EmvKeyError> {
        match self {
            Self::EmvCsk => derive_common_session_key(mk, &r_emv_csk(atc)),
            Self::MastercardSkd => derive_common_session_key(mk, &r_mastercard_skd(atc, un)),
            Self::None => Ok(mk.clone()),
        }
    }
}

impl FromStr for SessionKeyMethod {
    type Err = EmvKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        named(&Self::ALL, Self::name, s)
            .ok_or_else(|| unknown("session key method", s, Self::NAMES))
    }
}

impl fmt::Display for SessionKeyMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Cryptogram version numbers with a documented session key method and AC padding
/// (docs/domain.md §3.3). The master key derivation option stays a separate profile value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cvn {
    /// Visa CVN 10: no session key, padding method 1.
    Visa10,
    /// Visa CVN 18: EMV CSK, padding method 2.
    Visa18,
    /// Visa CVN 22 (coded `22`, IAD format 2): EMV CSK, padding method 2.
    Visa22,
    /// Mastercard CVN 16: Mastercard SKD, padding method 2.
    Mastercard16,
    /// Mastercard CVN 17: Mastercard SKD, counters in the AC, padding method 2.
    Mastercard17,
    /// Mastercard CVN 20: EMV CSK, padding method 2.
    Mastercard20,
    /// Mastercard CVN 21: EMV CSK, counters in the AC, padding method 2.
    Mastercard21,
}

impl Cvn {
    const ALL: [Self; 7] = [
        Self::Visa10,
        Self::Visa18,
        Self::Visa22,
        Self::Mastercard16,
        Self::Mastercard17,
        Self::Mastercard20,
        Self::Mastercard21,
    ];
    const NAMES: &'static str =
        "visa-cvn10, visa-cvn18, visa-cvn22, mc-cvn16, mc-cvn17, mc-cvn20, mc-cvn21";

    /// The profile name (e.g. `visa-cvn10`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Visa10 => "visa-cvn10",
            Self::Visa18 => "visa-cvn18",
            Self::Visa22 => "visa-cvn22",
            Self::Mastercard16 => "mc-cvn16",
            Self::Mastercard17 => "mc-cvn17",
            Self::Mastercard20 => "mc-cvn20",
            Self::Mastercard21 => "mc-cvn21",
        }
    }

    /// The CVN byte as carried in the issuer application data (9F10).
    pub fn byte(self) -> u8 {
        match self {
            Self::Visa10 => 0x0A,
            Self::Visa18 => 0x12,
            // Visa writes CVN'22' in hex: the byte is 0x22 (jPOS VISACryptogram, emv-utils).
            Self::Visa22 => 0x22,
            Self::Mastercard16 => 0x10,
            Self::Mastercard17 => 0x11,
            Self::Mastercard20 => 0x14,
            Self::Mastercard21 => 0x15,
        }
    }

    /// The AC session key method.
    pub fn session_key_method(self) -> SessionKeyMethod {
        match self {
            Self::Visa10 => SessionKeyMethod::None,
            Self::Visa18 | Self::Visa22 | Self::Mastercard20 | Self::Mastercard21 => {
                SessionKeyMethod::EmvCsk
            }
            Self::Mastercard16 | Self::Mastercard17 => SessionKeyMethod::MastercardSkd,
        }
    }

    /// The ISO/IEC 9797-1 padding of the AC input.
    pub fn ac_padding(self) -> MacPadding {
        match self {
            Self::Visa10 => MacPadding::Method1,
            _ => MacPadding::Method2,
        }
    }
}

/// The terminal data every CVN here MACs into the application cryptogram, in order: amount
/// authorised, amount other, terminal country, TVR, currency, date, type, unpredictable number
/// (pyemv `cvn.py`; EMV Book 2 §8.1.1 recommended minimum). CDOL1 must ask for each; the card
/// adds 82, 9F36 and its CVN's own part.
pub const AC_TERMINAL_DATA: [u32; 8] = [0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37];

impl FromStr for Cvn {
    type Err = EmvKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        named(&Self::ALL, Self::name, s)
            .ok_or_else(|| unknown("cryptogram version", s, Self::NAMES))
    }
}

impl fmt::Display for Cvn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Application cryptogram (ARQC/TC/AAC): ISO/IEC 9797-1 MAC algorithm 3 with the AC session key
/// over the CDOL data, zero IV, 8 bytes.
pub fn application_cryptogram(
    sk: &DesKey16,
    data: &[u8],
    padding: MacPadding,
) -> Result<[u8; 8], EmvKeyError> {
    Ok(crypto::retail_mac(&sk.0, &[0; 8], data, padding)?)
}

/// Recomputes the cryptogram and compares it with `expected` in constant time.
pub fn verify_application_cryptogram(
    sk: &DesKey16,
    data: &[u8],
    padding: MacPadding,
    expected: &[u8],
) -> Result<bool, EmvKeyError> {
    let ac = application_cryptogram(sk, data, padding)?;
    Ok(crypto::ct_eq(&ac, expected))
}

/// ARPC method 1 (EMV Book 2 8.2.1): `TDES_key(ARQC xor (ARC || 00 x 6))`. The key is the AC
/// session key or, for some CVNs, the ICC master key.
pub fn arpc_method1(key: &DesKey16, arqc: &[u8; 8], arc: &[u8; 2]) -> Result<[u8; 8], EmvKeyError> {
    let mut block = *arqc;
    block[0] ^= arc[0];
    block[1] ^= arc[1];
    crypto::tdes_ecb_encrypt(&key.0, &mut block)?;
    Ok(block)
}

/// ARPC method 2 (EMV Book 2 8.2.2): the first 4 bytes of MAC algorithm 3 (padding method 2)
/// over `ARQC || CSU || proprietary authentication data (0-8 bytes)`.
pub fn arpc_method2(
    sk: &DesKey16,
    arqc: &[u8; 8],
    csu: &[u8; 4],
    proprietary: &[u8],
) -> Result<[u8; 4], EmvKeyError> {
    if proprietary.len() > 8 {
        return Err(EmvKeyError::ProprietaryDataLength(proprietary.len()));
    }
    let mut input = [0u8; 20];
    input[..8].copy_from_slice(arqc);
    input[8..12].copy_from_slice(csu);
    let end = 12 + proprietary.len();
    input[12..end].copy_from_slice(proprietary);
    let mac = crypto::retail_mac(&sk.0, &[0; 8], &input[..end], MacPadding::Method2)?;
    Ok([mac[0], mac[1], mac[2], mac[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_only_the_kcv() {
        let key = DesKey16::from_bytes([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "DesKey16(kcv 08D7B4)");
        assert!(!shown.contains("0123"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let k = DesKey16::from_bytes([0; 16]);
        assert!(matches!(
            derive_icc_master_key(MkdOption::A, &k, "12345x7890123456", "00"),
            Err(EmvKeyError::Pan { len: 16 })
        ));
        assert!(derive_icc_master_key(MkdOption::A, &k, "1234567890123456", "0").is_err());
        assert!(DesKey16::from_slice(&[0; 8]).is_err());
    }
}
