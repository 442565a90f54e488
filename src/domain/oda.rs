//! Offline data authentication (ODA) data preparation, EMV Book 2 §5-6 (docs/domain.md §4):
//! the issuer public key certificate (90, 92, 9F32), the ICC public key certificate (9F46, 9F48,
//! 9F47), signed static application data for SDA (93), the static data to be authenticated, and
//! the CA public key check value. Every signed item has a matching `recover_*` function that checks
//! the layout and the SHA-1 hash the way a terminal does (expiry dates are returned, not judged:
//! the domain has no clock).
//!
//! Signing is the raw RSA private-key operation on the formatted block (message recovery, no
//! PKCS#1 padding). RSA key generation takes the caller's random number generator; it is
//! separate from certificate building so a pool of pre-generated ICC key pairs can feed
//! per-card preparation. Private key material is only handed out as [`SecretBytes`], which
//! zeroizes on drop and never prints its contents; errors name the rule and never carry key
//! bytes.

use core::fmt;

use rsa::hazmat::{rsa_decrypt_and_check, rsa_encrypt};
use rsa::rand_core::{CryptoRng, TryCryptoRng};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, PrivateKey, PublicKey};
use sha1::{Digest, Sha1};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Largest EMV RSA modulus: 1984 bits.
pub const MAX_MODULUS_BYTES: usize = 248;
/// Smallest modulus accepted here: 512 bits (the formats need at least 42 bytes; schemes
/// require more, which is a profile rule).
pub const MIN_MODULUS_BYTES: usize = 64;

const HASH_LEN: usize = 20;
const HEADER: u8 = 0x6A;
const TRAILER: u8 = 0xBC;
const PAD: u8 = 0xBB;
const FORMAT_ISSUER: u8 = 0x02;
const FORMAT_SSAD: u8 = 0x03;
const FORMAT_ICC: u8 = 0x04;
const ALGO_SHA1: u8 = 0x01;
const ALGO_RSA: u8 = 0x01;
/// Bytes of an issuer certificate that are not issuer key: 15 header + 20 hash + 1 trailer.
const ISSUER_OVERHEAD: usize = 36;
/// Bytes of an ICC certificate that are not ICC key: 21 header + 20 hash + 1 trailer.
const ICC_OVERHEAD: usize = 42;
/// Bytes of an SSAD that are not padding: 5 header + 20 hash + 1 trailer.
const SSAD_OVERHEAD: usize = 26;

const WHAT_ISSUER_CERT: &str = "issuer certificate (90)";
const WHAT_ICC_CERT: &str = "ICC certificate (9F46)";
const WHAT_SSAD: &str = "signed static application data (93)";

/// Why ODA data could not be built or did not verify. Messages name the rule, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdaError {
    /// The public exponent is neither 3 nor 65537 (or not encoded as `03` / `01 00 01`).
    #[error("exponent must be 3 or 65537 (encoded 03 or 010001)")]
    Exponent,
    /// A modulus length is outside the EMV range or not whole bytes.
    #[error(
        "{what} modulus {bits} bits must be a multiple of 8 between {} and {} bits",
        MIN_MODULUS_BYTES * 8,
        MAX_MODULUS_BYTES * 8
    )]
    ModulusSize {
        /// Which key.
        what: &'static str,
        /// Its size in bits.
        bits: usize,
    },
    /// A modulus is even or has a zero leading byte.
    #[error("{what} modulus must be odd with a non-zero leading byte")]
    ModulusShape {
        /// Which key.
        what: &'static str,
    },
    /// A certified key is longer than the key that signs its certificate.
    #[error("{what} modulus {bits} bits exceeds {signer} modulus {signer_bits} bits")]
    ModulusExceedsSigner {
        /// The certified key ("ICC", "issuer").
        what: &'static str,
        /// Its size in bits.
        bits: usize,
        /// The signing key ("issuer", "CA").
        signer: &'static str,
        /// The signer's size in bits.
        signer_bits: usize,
    },
    /// Signed data is not exactly as long as the recovering modulus.
    #[error("{what} is {got} bytes, expected {expected} (the signer's modulus length)")]
    SignedLength {
        /// Which item.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The modulus length.
        expected: usize,
    },
    /// Signed data, read as an integer, is not smaller than the modulus.
    #[error("{what} is not smaller than the signer's modulus")]
    SignedRange {
        /// Which item.
        what: &'static str,
    },
    /// The recovered block does not end with `BC`.
    #[error("recovered {what} does not end with trailer BC")]
    Trailer {
        /// Which item.
        what: &'static str,
    },
    /// The recovered block does not start with `6A`.
    #[error("recovered {what} does not start with header 6A")]
    Header {
        /// Which item.
        what: &'static str,
    },
    /// The recovered format byte is not the one for this item (02, 03 or 04).
    #[error("recovered {what} has format {got:02X}, expected {expected:02X}")]
    Format {
        /// Which item.
        what: &'static str,
        /// The format byte found.
        got: u8,
        /// The format byte required.
        expected: u8,
    },
    /// The SHA-1 in the recovered block does not match the data it covers.
    #[error("{what} hash does not match the signed data")]
    HashMismatch {
        /// Which item.
        what: &'static str,
    },
    /// The hash algorithm indicator is not 01 (SHA-1).
    #[error("{what} names hash algorithm {got:02X}; only 01 (SHA-1) is supported")]
    HashAlgorithm {
        /// Which item.
        what: &'static str,
        /// The indicator found.
        got: u8,
    },
    /// The public key algorithm indicator is not 01 (RSA).
    #[error("{what} names public key algorithm {got:02X}; only 01 (RSA) is supported")]
    PkAlgorithm {
        /// Which item.
        what: &'static str,
        /// The indicator found.
        got: u8,
    },
    /// The remainder length does not complete the modulus length stated in the certificate.
    #[error("{what} key remainder must be {expected} bytes, got {got}")]
    Remainder {
        /// Which certificate.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The exponent length byte in the certificate disagrees with the exponent received.
    #[error("{what} exponent length {field} does not match the {got}-byte exponent")]
    ExponentLength {
        /// Which certificate.
        what: &'static str,
        /// The length byte in the certificate.
        field: u8,
        /// The exponent length received.
        got: usize,
    },
    /// A certificate expiry is not a valid BCD MMYY.
    #[error("certificate expiry must be BCD MMYY with month 01-12")]
    Expiry,
    /// A digit string (PAN, issuer identifier) is malformed; the digits are not reported.
    #[error("{field} must be {min} to {max} decimal digits")]
    Digits {
        /// Which field.
        field: &'static str,
        /// Fewest digits allowed.
        min: usize,
        /// Most digits allowed.
        max: usize,
    },
    /// The AFL is not a whole number of 4-byte entries.
    #[error("AFL length {0} is not a multiple of 4")]
    AflLength(usize),
    /// An AFL entry breaks a rule.
    #[error("AFL entry {index}: {rule}")]
    AflEntry {
        /// Zero-based entry number.
        index: usize,
        /// The rule broken.
        rule: &'static str,
    },
    /// A record the AFL marks for ODA was not supplied.
    #[error("record {record} of SFI {sfi} is marked for offline data authentication but missing")]
    RecordMissing {
        /// Short file identifier.
        sfi: u8,
        /// Record number.
        record: u8,
    },
    /// A record in SFI 1-10 is not exactly one template 70.
    #[error("record {record} of SFI {sfi} is not a single template 70 (required for SFI 1-10)")]
    RecordTemplate {
        /// Short file identifier.
        sfi: u8,
        /// Record number.
        record: u8,
    },
    /// The static data authentication tag list (9F4A) names something other than the AIP.
    #[error("static data authentication tag list (9F4A) may list only tag 82 (AIP)")]
    TagList,
    /// The RSA library refused an operation.
    #[error("RSA {0} failed")]
    Rsa(&'static str),
}

/// Bytes that are secret (private key components). Zeroized on drop; `Debug` prints only the
/// length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// The secret bytes. Keep the borrow short; do not copy them into unmanaged buffers.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted, {} bytes>)", self.0.len())
    }
}

/// An EMV RSA public exponent: only 3 and 65537 are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaExponent {
    /// e = 3, encoded `03`.
    Three,
    /// e = 65537, encoded `01 00 01`.
    F4,
}

impl RsaExponent {
    /// Parses the exponent as carried in 9F32 / 9F47 / a CAPK (`03` or `01 00 01`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OdaError> {
        match bytes {
            [0x03] => Ok(Self::Three),
            [0x01, 0x00, 0x01] => Ok(Self::F4),
            _ => Err(OdaError::Exponent),
        }
    }

    /// From the integer value.
    pub fn from_value(value: u32) -> Result<Self, OdaError> {
        match value {
            3 => Ok(Self::Three),
            65537 => Ok(Self::F4),
            _ => Err(OdaError::Exponent),
        }
    }

    /// The encoding used in 9F32 / 9F47.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Self::Three => &[0x03],
            Self::F4 => &[0x01, 0x00, 0x01],
        }
    }

    /// The integer value.
    pub fn value(self) -> u32 {
        match self {
            Self::Three => 3,
            Self::F4 => 65537,
        }
    }

    fn to_uint(self) -> BoxedUint {
        BoxedUint::from_be_slice_vartime(self.bytes())
    }
}

fn check_modulus_len(what: &'static str, len: usize) -> Result<(), OdaError> {
    if (MIN_MODULUS_BYTES..=MAX_MODULUS_BYTES).contains(&len) {
        Ok(())
    } else {
        Err(OdaError::ModulusSize {
            what,
            bits: len * 8,
        })
    }
}

/// An EMV RSA public key: modulus (big-endian, no leading zero) and exponent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmvPublicKey {
    modulus: Vec<u8>,
    exponent: RsaExponent,
}

impl EmvPublicKey {
    /// Checks and wraps a modulus: 64 to 248 bytes, odd, non-zero leading byte.
    pub fn new(modulus: &[u8], exponent: RsaExponent) -> Result<Self, OdaError> {
        const WHAT: &str = "public key";
        check_modulus_len(WHAT, modulus.len())?;
        let odd = modulus.last().is_some_and(|b| b & 1 == 1);
        let leading = modulus.first().is_some_and(|b| *b != 0);
        if !odd || !leading {
            return Err(OdaError::ModulusShape { what: WHAT });
        }
        Ok(Self {
            modulus: modulus.to_vec(),
            exponent,
        })
    }

    /// The modulus, big-endian.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// The public exponent.
    pub fn exponent(&self) -> RsaExponent {
        self.exponent
    }

    /// Modulus length in bytes (N_CA, N_I or N_IC in EMV terms).
    pub fn modulus_len(&self) -> usize {
        self.modulus.len()
    }

    /// Modulus length in bits as EMV counts it (bytes x 8).
    pub fn bits(&self) -> usize {
        self.modulus.len() * 8
    }

    fn to_rsa(&self) -> Result<PublicKey, OdaError> {
        let n = BoxedUint::from_be_slice(&self.modulus, bits_u32(self.modulus.len()))
            .map_err(|_| OdaError::Rsa("public key import"))?;
        PublicKey::new_with_size_limits(
            n,
            self.exponent.to_uint(),
            MIN_MODULUS_BYTES * 8 - 7..=MAX_MODULUS_BYTES * 8,
        )
        .map_err(|_| OdaError::Rsa("public key import"))
    }
}

fn bits_u32(bytes: usize) -> u32 {
    u32::try_from(bytes * 8).unwrap_or(u32::MAX)
}

/// A certification authority public key as loaded in terminals (CAPK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPublicKey {
    /// Registered application provider identifier (5 bytes).
    pub rid: [u8; 5],
    /// CA public key index (8F).
    pub index: u8,
    /// The key.
    pub key: EmvPublicKey,
}

impl CaPublicKey {
    /// CAPK check value: SHA-1(RID || index || modulus || exponent).
    pub fn check_value(&self) -> [u8; HASH_LEN] {
        let mut h = Sha1::new();
        h.update(self.rid);
        h.update([self.index]);
        h.update(self.key.modulus());
        h.update(self.key.exponent().bytes());
        h.finalize().into()
    }
}

/// Something that can apply the raw RSA private-key operation for message recovery: an
/// in-memory [`RsaKeyPair`] here, an HSM adapter elsewhere.
pub trait RecoverySigner {
    /// The public half, used for size rules.
    fn public_key(&self) -> &EmvPublicKey;

    /// Raw RSA private operation on a block exactly as long as the modulus.
    fn sign_raw(&self, block: &[u8]) -> Result<Vec<u8>, OdaError>;
}

/// An RSA key pair (CA, issuer or ICC). The private half zeroizes on drop; `Debug` shows only
/// the public size and exponent.
#[derive(Clone)]
pub struct RsaKeyPair {
    private: PrivateKey,
    public: EmvPublicKey,
    /// The fixed-width CRT key ([`super::rsa_crt`]), made at the first signature (an ICC key,
    /// which signs nothing at preparation, never pays for it); `None` inside: rsa's path.
    fast: std::sync::OnceLock<Option<std::sync::Arc<super::rsa_crt::CrtKey>>>,
}

impl fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeyPair")
            .field("bits", &self.public.bits())
            .field("exponent", &self.public.exponent.value())
            .field("private", &"<redacted>")
            .finish()
    }
}

/// The ICC private key in CRT form, each component left-padded to half the modulus length.
#[derive(Debug, Clone)]
pub struct CrtComponents {
    /// q^-1 mod p (DGI 8201).
    pub q_inv_mod_p: SecretBytes,
    /// d mod (q-1) (DGI 8202).
    pub d_mod_q1: SecretBytes,
    /// d mod (p-1) (DGI 8203).
    pub d_mod_p1: SecretBytes,
    /// Prime q (DGI 8204).
    pub q: SecretBytes,
    /// Prime p (DGI 8205).
    pub p: SecretBytes,
}

impl CrtComponents {
    /// The components in CPS order: `[(0x8201, q^-1 mod p), (0x8202, d mod (q-1)),
    /// (0x8203, d mod (p-1)), (0x8204, q), (0x8205, p)]`.
    pub fn dgis(&self) -> [(u16, &SecretBytes); 5] {
        [
            (0x8201, &self.q_inv_mod_p),
            (0x8202, &self.d_mod_q1),
            (0x8203, &self.d_mod_p1),
            (0x8204, &self.q),
            (0x8205, &self.p),
        ]
    }
}

/// Serialises a secret integer into exactly `width` big-endian bytes.
fn secret_fixed(x: &BoxedUint, width: usize) -> Result<SecretBytes, OdaError> {
    let full = Zeroizing::new(x.to_be_bytes());
    let skip = full.len().saturating_sub(width);
    let (lead, tail) = full.split_at(skip);
    if lead.iter().any(|b| *b != 0) {
        return Err(OdaError::Rsa(
            "private key export (component wider than expected)",
        ));
    }
    let mut out = SecretBytes(vec![0; width]);
    let start = width - tail.len();
    if let Some(dst) = out.0.get_mut(start..) {
        dst.copy_from_slice(tail);
    }
    Ok(out)
}

/// Serialises a public integer (a signature or recovered block) into exactly `width` bytes.
fn public_fixed(x: &BoxedUint, width: usize) -> Vec<u8> {
    let full = x.to_be_bytes();
    let tail = full.get(full.len().saturating_sub(width)..).unwrap_or(&[]);
    let mut out = vec![0; width - tail.len()];
    out.extend_from_slice(tail);
    out
}

impl RsaKeyPair {
    /// Generates a key pair with a modulus of exactly `bits` bits (a multiple of 8 between 512
    /// and 1984) and exponent 3 or 65537, using the caller's cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        bits: usize,
        exponent: RsaExponent,
    ) -> Result<Self, OdaError> {
        const WHAT: &str = "generated";
        if !bits.is_multiple_of(8) {
            return Err(OdaError::ModulusSize { what: WHAT, bits });
        }
        check_modulus_len(WHAT, bits / 8)?;
        let private = PrivateKey::new_with_exp_unchecked(rng, bits, exponent.to_uint())
            .map_err(|_| OdaError::Rsa("key generation"))?;
        Self::from_private(private, exponent)
    }

    /// Rebuilds a key pair from its primes (big-endian), e.g. from a key pool store. The
    /// private exponent is recomputed; `p` must be the prime the CRT coefficient reduces by.
    pub fn from_primes(p: &[u8], q: &[u8], exponent: RsaExponent) -> Result<Self, OdaError> {
        let private = PrivateKey::from_p_q(
            BoxedUint::from_be_slice_vartime(p),
            BoxedUint::from_be_slice_vartime(q),
            exponent.to_uint(),
        )
        .map_err(|_| OdaError::Rsa("key import from primes"))?;
        Self::from_private(private, exponent)
    }

    fn from_private(private: PrivateKey, exponent: RsaExponent) -> Result<Self, OdaError> {
        let modulus = public_fixed(private.n().as_ref(), private.size());
        let public = EmvPublicKey::new(&modulus, exponent)?;
        Ok(Self {
            private,
            public,
            fast: std::sync::OnceLock::new(),
        })
    }

    /// The fixed-width CRT key, built once; `None` for sizes it does not cover.
    fn fast_crt(&self) -> Option<&super::rsa_crt::CrtKey> {
        self.fast
            .get_or_init(|| {
                let c = self.crt_components().ok()?;
                let parts = super::rsa_crt::CrtParts {
                    p: c.p.expose(),
                    q: c.q.expose(),
                    dp: c.d_mod_p1.expose(),
                    dq: c.d_mod_q1.expose(),
                    qinv: c.q_inv_mod_p.expose(),
                };
                super::rsa_crt::CrtKey::new(&parts).map(std::sync::Arc::new)
            })
            .as_deref()
    }

    /// `m^d mod n` through the fixed-width CRT key, checked against the public key
    /// (`s^e mod n == m`, rsa's own public operation); `None` when the key has no fixed-width
    /// form. A result that fails the check is an error (a fault), never returned.
    fn sign_fast(&self, block: &[u8], m: &BoxedUint) -> Option<Result<Vec<u8>, OdaError>> {
        let k = self.public.modulus_len();
        let s = self.fast_crt()?.private_op(block, k)?;
        let fault = OdaError::Rsa("private-key operation (CRT fault check)");
        let checked = BoxedUint::from_be_slice(&s, self.private.n_bits_precision())
            .ok()
            .and_then(|s| rsa_encrypt(&self.private, &s).ok())
            .is_some_and(|back| back == *m);
        Some(if checked { Ok(s.to_vec()) } else { Err(fault) })
    }

    /// The public half.
    pub fn public_key(&self) -> &EmvPublicKey {
        &self.public
    }

    /// The modulus, big-endian (CPS DGI 8103 for an ICC key).
    pub fn modulus(&self) -> &[u8] {
        self.public.modulus()
    }

    /// The private exponent d, as long as the modulus (CPS DGI 8101 for an ICC key).
    pub fn private_exponent(&self) -> Result<SecretBytes, OdaError> {
        secret_fixed(self.private.d(), self.public.modulus_len())
    }

    /// The CRT components for CPS DGIs 8201-8205, each half the modulus length (rounded up).
    pub fn crt_components(&self) -> Result<CrtComponents, OdaError> {
        let width = self.public.modulus_len().div_ceil(2);
        let missing = OdaError::Rsa("private key export (CRT values unavailable)");
        let [p, q] = self.private.primes() else {
            return Err(missing);
        };
        let q_inv = Zeroizing::new(self.private.crt_coefficient().ok_or(missing.clone())?);
        let dp = self.private.dp().ok_or(missing.clone())?;
        let dq = self.private.dq().ok_or(missing)?;
        Ok(CrtComponents {
            q_inv_mod_p: secret_fixed(&q_inv, width)?,
            d_mod_q1: secret_fixed(dq, width)?,
            d_mod_p1: secret_fixed(dp, width)?,
            q: secret_fixed(q.as_ref(), width)?,
            p: secret_fixed(p.as_ref(), width)?,
        })
    }
}

impl RecoverySigner for RsaKeyPair {
    fn public_key(&self) -> &EmvPublicKey {
        &self.public
    }

    fn sign_raw(&self, block: &[u8]) -> Result<Vec<u8>, OdaError> {
        let k = self.public.modulus_len();
        if block.len() != k {
            return Err(OdaError::SignedLength {
                what: "block to sign",
                got: block.len(),
                expected: k,
            });
        }
        let m = BoxedUint::from_be_slice(block, self.private.n_bits_precision())
            .map_err(|_| OdaError::Rsa("block import"))?;
        if m >= *self.private.n().as_ref() {
            return Err(OdaError::SignedRange {
                what: "block to sign",
            });
        }
        // No blinding: the message is public and crypto-bigint's exponentiation is
        // constant-time; the result is checked against the public key (CRT fault check).
        if let Some(signed) = self.sign_fast(block, &m) {
            return signed;
        }
        let no_rng: Option<&mut dyn TryCryptoRng<Error = core::convert::Infallible>> = None;
        let s = rsa_decrypt_and_check(&self.private, no_rng, &m)
            .map_err(|_| OdaError::Rsa("private-key operation"))?;
        Ok(public_fixed(&s, k))
    }
}

/// The raw RSA public operation (message recovery) on data exactly as long as the modulus;
/// `what` names the item in errors. No format or hash checks: see the `recover_*` functions.
pub fn recover_raw(
    key: &EmvPublicKey,
    signed: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, OdaError> {
    let k = key.modulus_len();
    if signed.len() != k {
        return Err(OdaError::SignedLength {
            what,
            got: signed.len(),
            expected: k,
        });
    }
    let public = key.to_rsa()?;
    let c = BoxedUint::from_be_slice(signed, public.n_bits_precision())
        .map_err(|_| OdaError::Rsa("signature import"))?;
    if c >= *public.n().as_ref() {
        return Err(OdaError::SignedRange { what });
    }
    let m = rsa_encrypt(&public, &c).map_err(|_| OdaError::Rsa("public-key operation"))?;
    Ok(public_fixed(&m, k))
}

/// A certificate expiry date, BCD `MM YY` as carried in certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertExpiry([u8; 2]);

fn bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

impl CertExpiry {
    /// From a month (1-12) and a two-digit year (0-99).
    pub fn new(month: u8, year: u8) -> Result<Self, OdaError> {
        if !(1..=12).contains(&month) || year > 99 {
            return Err(OdaError::Expiry);
        }
        Ok(Self([bcd(month), bcd(year)]))
    }

    /// From the BCD bytes `MM YY`.
    pub fn from_bcd(bytes: [u8; 2]) -> Result<Self, OdaError> {
        let month = from_bcd(bytes[0]).ok_or(OdaError::Expiry)?;
        let year = from_bcd(bytes[1]).ok_or(OdaError::Expiry)?;
        Self::new(month, year)
    }

    /// The BCD bytes `MM YY`.
    pub fn bcd(self) -> [u8; 2] {
        self.0
    }

    /// Month, 1-12.
    pub fn month(self) -> u8 {
        from_bcd(self.0[0]).unwrap_or(0)
    }

    /// Two-digit year, 0-99.
    pub fn year(self) -> u8 {
        from_bcd(self.0[1]).unwrap_or(0)
    }

    /// `YYMM` as a number, for comparing dates of 2000-2099 (the last day of the month is
    /// meant, EMV Book 2 §5.3 step 9).
    pub fn yymm(self) -> u16 {
        u16::from(self.year()) * 100 + u16::from(self.month())
    }
}

/// Packs decimal digits left-justified into `N` bytes of compressed numeric, `F`-padded.
fn pack_cn<const N: usize>(
    digits: &str,
    field: &'static str,
    (min, max): (usize, usize),
) -> Result<[u8; N], OdaError> {
    let d = digits.as_bytes();
    let max = max.min(N * 2);
    if !(min..=max).contains(&d.len()) || !d.iter().all(u8::is_ascii_digit) {
        return Err(OdaError::Digits { field, min, max });
    }
    let mut out = [0xFF; N];
    for (i, c) in d.iter().enumerate() {
        let nibble = c - b'0';
        if let Some(byte) = out.get_mut(i / 2) {
            *byte = if i.is_multiple_of(2) {
                (nibble << 4) | 0x0F
            } else {
                (*byte & 0xF0) | nibble
            };
        }
    }
    Ok(out)
}

/// The issuer identifier of an issuer certificate: the leftmost 3-8 PAN digits, `F`-padded to
/// 4 bytes.
pub fn issuer_identifier(leading_pan_digits: &str) -> Result<[u8; 4], OdaError> {
    pack_cn(leading_pan_digits, "issuer identifier", (3, 8))
}

/// The application PAN field of an ICC certificate: the PAN (8-19 digits), `F`-padded to 10
/// bytes.
pub fn pan_field(pan: &str) -> Result<[u8; 10], OdaError> {
    pack_cn(pan, "PAN", (8, 19))
}

/// The digits of a compressed numeric field up to its first `F`.
fn cn_digits(field: &[u8]) -> impl Iterator<Item = u8> + '_ {
    field
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .take_while(|n| *n != 0x0F)
}

/// A signed public key: the certificate, the modulus remainder (empty when the whole modulus
/// fits, in which case the remainder tag is omitted) and the exponent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyCertificate {
    /// Tag 90 (issuer) or 9F46 (ICC).
    pub certificate: Vec<u8>,
    /// Tag 92 (issuer) or 9F48 (ICC); empty when absent.
    pub remainder: Vec<u8>,
    /// Tag 9F32 (issuer) or 9F47 (ICC).
    pub exponent: Vec<u8>,
}

/// Fields of an issuer public key certificate other than the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerCertFields {
    /// Leftmost 3-8 PAN digits, `F`-padded (see [`issuer_identifier`]).
    pub issuer_id: [u8; 4],
    /// Certificate expiry.
    pub expiry: CertExpiry,
    /// Certificate serial number, assigned by the CA.
    pub serial: [u8; 3],
}

/// Fields of an ICC public key certificate other than the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IccCertFields {
    /// Application PAN, `F`-padded (see [`pan_field`]).
    pub pan: [u8; 10],
    /// Certificate expiry.
    pub expiry: CertExpiry,
    /// Certificate serial number, assigned by the issuer.
    pub serial: [u8; 3],
}

/// Checks the certified key fits under the signer and returns (leftmost part, remainder).
fn split_certified_key<'k>(
    key: &'k EmvPublicKey,
    what: &'static str,
    signer: &dyn RecoverySigner,
    signer_what: &'static str,
    overhead: usize,
) -> Result<(&'k [u8], &'k [u8]), OdaError> {
    let signer_len = signer.public_key().modulus_len();
    if key.modulus_len() > signer_len {
        return Err(OdaError::ModulusExceedsSigner {
            what,
            bits: key.bits(),
            signer: signer_what,
            signer_bits: signer_len * 8,
        });
    }
    let room = signer_len - overhead;
    Ok(key.modulus().split_at(key.modulus_len().min(room)))
}

fn length_byte(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

/// Completes a formatted block (`6A` .. body already written) with `BB` padding up to
/// `k - 21`, the SHA-1 over the body and `extra`, and the trailer; then signs it.
fn finish_and_sign(
    signer: &dyn RecoverySigner,
    mut block: Vec<u8>,
    extra: &[&[u8]],
) -> Result<Vec<u8>, OdaError> {
    let k = signer.public_key().modulus_len();
    block.resize(k - HASH_LEN - 1, PAD);
    let mut h = Sha1::new();
    if let Some((_, body)) = block.split_first() {
        h.update(body);
    }
    extra.iter().for_each(|e| h.update(e));
    block.extend_from_slice(&h.finalize());
    block.push(TRAILER);
    signer.sign_raw(&block)
}

/// Builds and signs the issuer public key certificate (90) with the CA key; returns 90, 92
/// (empty when absent) and 9F32.
pub fn sign_issuer_certificate(
    ca: &impl RecoverySigner,
    fields: &IssuerCertFields,
    issuer_key: &EmvPublicKey,
) -> Result<PublicKeyCertificate, OdaError> {
    let (leftmost, remainder) =
        split_certified_key(issuer_key, "issuer", ca, "CA", ISSUER_OVERHEAD)?;
    let exponent = issuer_key.exponent().bytes();
    let mut block = Vec::with_capacity(ca.public_key().modulus_len());
    block.extend_from_slice(&[HEADER, FORMAT_ISSUER]);
    block.extend_from_slice(&fields.issuer_id);
    block.extend_from_slice(&fields.expiry.bcd());
    block.extend_from_slice(&fields.serial);
    block.extend_from_slice(&[ALGO_SHA1, ALGO_RSA]);
    block.push(length_byte(issuer_key.modulus_len()));
    block.push(length_byte(exponent.len()));
    block.extend_from_slice(leftmost);
    let certificate = finish_and_sign(ca, block, &[remainder, exponent])?;
    Ok(PublicKeyCertificate {
        certificate,
        remainder: remainder.to_vec(),
        exponent: exponent.to_vec(),
    })
}

/// Builds and signs the ICC public key certificate (9F46) with the issuer key over the static
/// data to be authenticated; returns 9F46, 9F48 (empty when absent) and 9F47.
pub fn sign_icc_certificate(
    issuer: &impl RecoverySigner,
    fields: &IccCertFields,
    icc_key: &EmvPublicKey,
    static_data: &[u8],
) -> Result<PublicKeyCertificate, OdaError> {
    let (leftmost, remainder) =
        split_certified_key(icc_key, "ICC", issuer, "issuer", ICC_OVERHEAD)?;
    let exponent = icc_key.exponent().bytes();
    let mut block = Vec::with_capacity(issuer.public_key().modulus_len());
    block.extend_from_slice(&[HEADER, FORMAT_ICC]);
    block.extend_from_slice(&fields.pan);
    block.extend_from_slice(&fields.expiry.bcd());
    block.extend_from_slice(&fields.serial);
    block.extend_from_slice(&[ALGO_SHA1, ALGO_RSA]);
    block.push(length_byte(icc_key.modulus_len()));
    block.push(length_byte(exponent.len()));
    block.extend_from_slice(leftmost);
    let certificate = finish_and_sign(issuer, block, &[remainder, exponent, static_data])?;
    Ok(PublicKeyCertificate {
        certificate,
        remainder: remainder.to_vec(),
        exponent: exponent.to_vec(),
    })
}

/// Builds and signs the signed static application data (93) for SDA with the issuer key.
pub fn sign_static_application_data(
    issuer: &impl RecoverySigner,
    dac: [u8; 2],
    static_data: &[u8],
) -> Result<Vec<u8>, OdaError> {
    let k = issuer.public_key().modulus_len();
    let mut block = Vec::with_capacity(k);
    block.extend_from_slice(&[HEADER, FORMAT_SSAD, ALGO_SHA1]);
    block.extend_from_slice(&dac);
    finish_and_sign(issuer, block, &[static_data])
}

/// A recovered block split into its body (format byte through the padded data) and hash.
struct Recovered {
    block: Vec<u8>,
}

impl Recovered {
    /// Recovers `signed` and checks length, trailer, header and format.
    fn open(
        key: &EmvPublicKey,
        signed: &[u8],
        what: &'static str,
        format: u8,
    ) -> Result<Self, OdaError> {
        let block = recover_raw(key, signed, what)?;
        if block.last() != Some(&TRAILER) {
            return Err(OdaError::Trailer { what });
        }
        if block.first() != Some(&HEADER) {
            return Err(OdaError::Header { what });
        }
        let got = block.get(1).copied().unwrap_or_default();
        if got != format {
            return Err(OdaError::Format {
                what,
                got,
                expected: format,
            });
        }
        Ok(Self { block })
    }

    /// Format byte through the end of the data field (before the hash).
    fn body(&self) -> &[u8] {
        let end = self.block.len().saturating_sub(HASH_LEN + 1);
        self.block.get(1..end).unwrap_or(&[])
    }

    fn hash(&self) -> [u8; HASH_LEN] {
        let end = self.block.len().saturating_sub(1);
        let start = end.saturating_sub(HASH_LEN);
        let mut out = [0; HASH_LEN];
        if let Some(h) = self.block.get(start..end) {
            out.copy_from_slice(h);
        }
        out
    }

    /// Checks the hash over body || extra.
    fn check_hash(&self, extra: &[&[u8]], what: &'static str) -> Result<[u8; HASH_LEN], OdaError> {
        let mut h = Sha1::new();
        h.update(self.body());
        extra.iter().for_each(|e| h.update(e));
        let computed: [u8; HASH_LEN] = h.finalize().into();
        let stated = self.hash();
        if computed == stated {
            Ok(stated)
        } else {
            Err(OdaError::HashMismatch { what })
        }
    }
}

/// The common tail of issuer and ICC certificates: algorithms, lengths, key field.
struct CertKeyPart<'a> {
    hash_algorithm: u8,
    pk_algorithm: u8,
    key_len: u8,
    exp_len: u8,
    key_field: &'a [u8],
}

impl<'a> CertKeyPart<'a> {
    fn parse(rest: &'a [u8]) -> Option<Self> {
        let ([hash_algorithm, pk_algorithm, key_len, exp_len], key_field) =
            rest.split_first_chunk::<4>()?;
        Some(Self {
            hash_algorithm: *hash_algorithm,
            pk_algorithm: *pk_algorithm,
            key_len: *key_len,
            exp_len: *exp_len,
            key_field,
        })
    }

    /// Checks the indicators and lengths and reassembles the certified key.
    fn key(
        &self,
        remainder: &[u8],
        exponent: &[u8],
        what: &'static str,
    ) -> Result<EmvPublicKey, OdaError> {
        if self.hash_algorithm != ALGO_SHA1 {
            return Err(OdaError::HashAlgorithm {
                what,
                got: self.hash_algorithm,
            });
        }
        if self.pk_algorithm != ALGO_RSA {
            return Err(OdaError::PkAlgorithm {
                what,
                got: self.pk_algorithm,
            });
        }
        if usize::from(self.exp_len) != exponent.len() {
            return Err(OdaError::ExponentLength {
                what,
                field: self.exp_len,
                got: exponent.len(),
            });
        }
        let exponent = RsaExponent::from_bytes(exponent)?;
        let key_len = usize::from(self.key_len);
        let in_cert = key_len.min(self.key_field.len());
        let expected_remainder = key_len - in_cert;
        if remainder.len() != expected_remainder {
            return Err(OdaError::Remainder {
                what,
                expected: expected_remainder,
                got: remainder.len(),
            });
        }
        let mut modulus = Vec::with_capacity(key_len);
        modulus.extend_from_slice(self.key_field.get(..in_cert).unwrap_or(&[]));
        modulus.extend_from_slice(remainder);
        EmvPublicKey::new(&modulus, exponent)
    }
}

/// An issuer public key certificate after recovery and verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredIssuerCertificate {
    /// Issuer identifier and certificate data.
    pub fields: IssuerCertFields,
    /// The certified issuer public key.
    pub issuer_key: EmvPublicKey,
    /// The SHA-1 carried in (and verified against) the certificate.
    pub hash: [u8; HASH_LEN],
}

impl RecoveredIssuerCertificate {
    /// True when the issuer identifier digits equal the leading digits of `pan`.
    pub fn issuer_id_matches_pan(&self, pan: &str) -> bool {
        self.fields.issuer_id_matches_pan(pan)
    }
}

impl IssuerCertFields {
    /// True when the issuer identifier digits equal the leading digits of `pan`.
    pub fn issuer_id_matches_pan(&self, pan: &str) -> bool {
        let mut pan_digits = pan.bytes().map(|c| c.wrapping_sub(b'0'));
        cn_digits(&self.issuer_id).all(|d| pan_digits.next() == Some(d))
    }

    /// True when the issuer identifier is 3 to 8 decimal digits, then only `F` padding
    /// (EMV Book 2 §5.3 step 8).
    pub fn issuer_id_well_formed(&self) -> bool {
        let nibbles: Vec<u8> = self
            .issuer_id
            .iter()
            .flat_map(|b| [b >> 4, b & 0x0F])
            .collect();
        let digits = nibbles.iter().take_while(|n| **n <= 9).count();
        (3..=8).contains(&digits) && nibbles[digits..].iter().all(|n| *n == 0x0F)
    }
}

/// Recovers the issuer public key certificate (90) with the CA public key and verifies format,
/// hash, algorithm indicators and lengths against 92 (empty when absent) and 9F32.
pub fn recover_issuer_certificate(
    ca_key: &EmvPublicKey,
    certificate: &[u8],
    remainder: &[u8],
    exponent: &[u8],
) -> Result<RecoveredIssuerCertificate, OdaError> {
    const WHAT: &str = WHAT_ISSUER_CERT;
    let rec = Recovered::open(ca_key, certificate, WHAT, FORMAT_ISSUER)?;
    let hash = rec.check_hash(&[remainder, exponent], WHAT)?;
    let short = OdaError::SignedLength {
        what: WHAT,
        got: certificate.len(),
        expected: ca_key.modulus_len(),
    };
    let (head, rest) = rec.body().split_first_chunk::<10>().ok_or(short.clone())?;
    let [_, i0, i1, i2, i3, m, y, s0, s1, s2] = *head;
    let part = CertKeyPart::parse(rest).ok_or(short)?;
    let issuer_key = part.key(remainder, exponent, WHAT)?;
    Ok(RecoveredIssuerCertificate {
        fields: IssuerCertFields {
            issuer_id: [i0, i1, i2, i3],
            expiry: CertExpiry::from_bcd([m, y])?,
            serial: [s0, s1, s2],
        },
        issuer_key,
        hash,
    })
}

/// An ICC public key certificate after recovery and verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredIccCertificate {
    /// PAN and certificate data.
    pub fields: IccCertFields,
    /// The certified ICC public key.
    pub icc_key: EmvPublicKey,
    /// The SHA-1 carried in (and verified against) the certificate.
    pub hash: [u8; HASH_LEN],
}

impl RecoveredIccCertificate {
    /// True when the certificate's PAN equals `pan` (as digits, `F` padding ignored).
    pub fn pan_matches(&self, pan: &str) -> bool {
        pan_field(pan).is_ok_and(|p| p == self.fields.pan)
    }
}

/// Recovers the ICC public key certificate (9F46) with the issuer public key and verifies it
/// against 9F48 (empty when absent), 9F47 and the static data to be authenticated.
pub fn recover_icc_certificate(
    issuer_key: &EmvPublicKey,
    certificate: &[u8],
    remainder: &[u8],
    exponent: &[u8],
    static_data: &[u8],
) -> Result<RecoveredIccCertificate, OdaError> {
    const WHAT: &str = WHAT_ICC_CERT;
    let rec = Recovered::open(issuer_key, certificate, WHAT, FORMAT_ICC)?;
    let hash = rec.check_hash(&[remainder, exponent, static_data], WHAT)?;
    let short = OdaError::SignedLength {
        what: WHAT,
        got: certificate.len(),
        expected: issuer_key.modulus_len(),
    };
    let (head, rest) = rec.body().split_first_chunk::<16>().ok_or(short.clone())?;
    let [_, pan @ .., m, y, s0, s1, s2] = *head;
    let part = CertKeyPart::parse(rest).ok_or(short)?;
    let icc_key = part.key(remainder, exponent, WHAT)?;
    Ok(RecoveredIccCertificate {
        fields: IccCertFields {
            pan,
            expiry: CertExpiry::from_bcd([m, y])?,
            serial: [s0, s1, s2],
        },
        icc_key,
        hash,
    })
}

/// Signed static application data after recovery and verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredSsad {
    /// Data authentication code.
    pub dac: [u8; 2],
    /// The SHA-1 carried in (and verified against) the block.
    pub hash: [u8; HASH_LEN],
}

/// Recovers signed static application data (93) with the issuer public key and verifies it
/// against the static data to be authenticated.
pub fn recover_static_application_data(
    issuer_key: &EmvPublicKey,
    ssad: &[u8],
    static_data: &[u8],
) -> Result<RecoveredSsad, OdaError> {
    const WHAT: &str = WHAT_SSAD;
    let rec = Recovered::open(issuer_key, ssad, WHAT, FORMAT_SSAD)?;
    let hash = rec.check_hash(&[static_data], WHAT)?;
    let Some([_, algorithm, d0, d1]) = rec.body().first_chunk::<4>().copied() else {
        return Err(OdaError::SignedLength {
            what: WHAT,
            got: ssad.len(),
            expected: SSAD_OVERHEAD,
        });
    };
    if algorithm != ALGO_SHA1 {
        return Err(OdaError::HashAlgorithm {
            what: WHAT,
            got: algorithm,
        });
    }
    Ok(RecoveredSsad {
        dac: [d0, d1],
        hash,
    })
}

/// One AFL entry (4 bytes).
struct AflEntry {
    sfi: u8,
    first: u8,
    last: u8,
    oda_records: u8,
}

impl AflEntry {
    fn parse(index: usize, raw: [u8; 4]) -> Result<Self, OdaError> {
        let [sfi_byte, first, last, oda_records] = raw;
        let err = |rule| OdaError::AflEntry { index, rule };
        let sfi = sfi_byte >> 3;
        if sfi_byte & 0x07 != 0 {
            return Err(err("low 3 bits of the SFI byte must be 0"));
        }
        if !(1..=30).contains(&sfi) {
            return Err(err("SFI must be 1 to 30"));
        }
        if first == 0 {
            return Err(err("first record must not be 0"));
        }
        if last < first {
            return Err(err("last record precedes first record"));
        }
        if u16::from(oda_records) > u16::from(last - first) + 1 {
            return Err(err("more ODA records than records in the range"));
        }
        Ok(Self {
            sfi,
            first,
            last,
            oda_records,
        })
    }

    /// The records that take part in ODA: the first `oda_records` of the range.
    fn oda_range(&self) -> impl Iterator<Item = u8> {
        (self.first..=self.last).take(usize::from(self.oda_records))
    }
}

/// The value of a record that is exactly one `70 L V` template.
fn template_70_value(record: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = record.split_first()?;
    if tag != 0x70 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, value) = match first {
        0x00..=0x7F => (usize::from(first), rest),
        0x81 => {
            let (&l, v) = rest.split_first()?;
            (usize::from(l), v)
        }
        0x82 => {
            let ([hi, lo], v) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes([*hi, *lo])), v)
        }
        _ => return None,
    };
    (value.len() == len).then_some(value)
}

/// Checks a static data authentication tag list (9F4A value): only tag 82 may appear.
fn check_sda_tag_list(list: &[u8]) -> Result<usize, OdaError> {
    if list.iter().all(|t| *t == 0x82) {
        Ok(list.len())
    } else {
        Err(OdaError::TagList)
    }
}

/// Builds the static data to be authenticated (docs/domain.md §4.4): for every AFL entry, the first
/// "#ODA" records in order, as the value of template 70 for SFI 1-10 and as the whole record for
/// SFI 11-30; then, when a 9F4A tag list is given, the AIP for each listed `82`.
///
/// `record(sfi, number)` returns the record content as the card will return it to READ RECORD.
/// Build certificates only after the final records and interface-specific AIP are fixed.
pub fn static_data_to_authenticate<'r, F>(
    afl: &[u8],
    mut record: F,
    sda_tag_list: Option<&[u8]>,
    aip: [u8; 2],
) -> Result<Vec<u8>, OdaError>
where
    F: FnMut(u8, u8) -> Option<&'r [u8]>,
{
    if !afl.len().is_multiple_of(4) {
        return Err(OdaError::AflLength(afl.len()));
    }
    let mut out = Vec::new();
    for (index, raw) in afl.chunks_exact(4).enumerate() {
        let mut entry = [0u8; 4];
        entry.copy_from_slice(raw);
        let entry = AflEntry::parse(index, entry)?;
        for number in entry.oda_range() {
            let sfi = entry.sfi;
            let content = record(sfi, number).ok_or(OdaError::RecordMissing {
                sfi,
                record: number,
            })?;
            let part = if sfi <= 10 {
                template_70_value(content).ok_or(OdaError::RecordTemplate {
                    sfi,
                    record: number,
                })?
            } else {
                content
            };
            out.extend_from_slice(part);
        }
    }
    if let Some(list) = sda_tag_list {
        for _ in 0..check_sda_tag_list(list)? {
            out.extend_from_slice(&aip);
        }
    }
    Ok(out)
}
