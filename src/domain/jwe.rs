//! JWE compact serialization for an order's `encryptedData` (RFC 7516), with the one algorithm
//! pair the central-issuance API uses: `ECDH-ES` direct key agreement on P-256 and `A256GCM`
//! content encryption (RFC 7518 §4.6 and §5.3).
//!
//! Opening checks, in this order: five base64url parts; the protected header (a JSON object with
//! `alg = "ECDH-ES"`, `enc = "A256GCM"`, a `kid`, no `zip`, no `crit`); an empty encrypted key;
//! `epk` a valid P-256 point (so an invalid-curve point never reaches the key agreement); a
//! 96-bit IV and a 128-bit tag; then the key store's agreement for `kid` gives Z, the Concat KDF
//! (written here once) gives the content key, and AES-256-GCM checks the tag over the ciphertext
//! with the protected header's base64url as AAD before any plaintext exists. Every failure after
//! the key agreement is the same [`JweError::Decrypt`]: no oracle of which part was wrong.
//!
//! The content key and the plaintext live in zeroizing buffers; [`ClearObject`] wipes the strings
//! of the decrypted JSON when dropped. Errors never carry plaintext.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use base64ct::{Base64UrlUnpadded, Encoding};
use p256::elliptic_curve::sec1::ToSec1Point;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::keystore::{JweKeyError, JweKeys};

/// The only key management algorithm accepted.
pub const ALG: &str = "ECDH-ES";
/// The only content encryption algorithm accepted.
pub const ENC: &str = "A256GCM";
/// AES-256 content key length.
pub const KEY_LEN: usize = 32;
/// GCM IV length (96 bits, RFC 7518 §5.3).
pub const IV_LEN: usize = 12;
/// GCM tag length (128 bits).
pub const TAG_LEN: usize = 16;

/// The message of every decryption failure.
pub const DECRYPT_RULE: &str = "JWE cannot be decrypted: authentication failed (wrong key, or an altered header, IV, ciphertext or tag)";

/// Why a JWE `encryptedData` was refused. The text names the rule, never plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("JWE compact form must have 5 parts separated by '.', got {0}")]
    Parts(usize),
    #[error("JWE {0} is not base64url (unpadded)")]
    Base64(&'static str),
    #[error("JWE protected header: {0}")]
    Header(String),
    #[error("JWE alg must be \"ECDH-ES\" (direct key agreement), got {0}")]
    Alg(String),
    #[error("JWE enc must be \"A256GCM\", got {0}")]
    Enc(String),
    #[error("JWE header zip is refused: compressed plaintext is not supported")]
    Zip,
    #[error("JWE header crit is refused: no critical extension is supported")]
    Crit,
    #[error("JWE encrypted key must be empty for ECDH-ES direct key agreement")]
    EncryptedKey,
    #[error("JWE epk: {0}")]
    Epk(String),
    #[error("JWE {part} must be {bits} bits")]
    Length { part: &'static str, bits: usize },
    #[error("JWE kid {0} is not in the key store (usage jwe)")]
    UnknownKid(String),
    #[error("JWE kid {kid}: {rule}")]
    Key { kid: String, rule: String },
    #[error("{DECRYPT_RULE}")]
    Decrypt,
    #[error("JWE plaintext {0}")]
    Plaintext(String),
}

impl From<JweKeyError> for JweError {
    fn from(e: JweKeyError) -> Self {
        match e {
            JweKeyError::UnknownKid(kid) => Self::UnknownKid(kid),
            JweKeyError::Rule { kid, rule } => Self::Key { kid, rule },
        }
    }
}

/// A header value quoted in an error: short printable ASCII as JSON, anything else elided.
fn quoted(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(Value::String(s)) if s.len() <= 32 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            format!("\"{s}\"")
        }
        Some(_) => "another value".into(),
    }
}

/// A public point on P-256, checked on the curve and not the identity.
#[derive(Clone, PartialEq, Eq)]
pub struct P256Point(p256::PublicKey);

impl fmt::Debug for P256Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P256Point({})", hex::encode_upper(self.sec1()))
    }
}

impl From<p256::PublicKey> for P256Point {
    fn from(key: p256::PublicKey) -> Self {
        Self(key)
    }
}

impl P256Point {
    /// From the uncompressed SEC1 form `04 || X || Y` (65 bytes), checked on the curve.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 65 || bytes[0] != 0x04 {
            return Err("must be 04 || X || Y (65 bytes, uncompressed)".into());
        }
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| "is not a point on P-256".into())
    }

    /// From affine coordinates of 32 bytes each (a JWK's `x` and `y`).
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Result<Self, String> {
        if x.len() != 32 || y.len() != 32 {
            return Err("x and y must be 32 bytes each".into());
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(0x04);
        sec1.extend_from_slice(x);
        sec1.extend_from_slice(y);
        Self::from_sec1(&sec1)
    }

    /// The validated key.
    pub fn public_key(&self) -> &p256::PublicKey {
        &self.0
    }

    /// `04 || X || Y`.
    pub fn sec1(&self) -> Vec<u8> {
        self.0.as_affine().to_sec1_point(false).as_bytes().to_vec()
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`, and `kid` when given).
    pub fn jwk(&self, kid: Option<&str>) -> Value {
        let sec1 = self.sec1();
        let mut jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": Base64UrlUnpadded::encode_string(&sec1[1..33]),
            "y": Base64UrlUnpadded::encode_string(&sec1[33..]),
        });
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    fn from_jwk(v: Option<&Value>) -> Result<Self, JweError> {
        let epk = |rule: &str| JweError::Epk(rule.to_string());
        let Some(Value::Object(jwk)) = v else {
            return Err(epk("is required: an EC P-256 public JWK"));
        };
        if jwk.get("kty").and_then(Value::as_str) != Some("EC") {
            return Err(epk("kty must be \"EC\""));
        }
        if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
            return Err(epk("crv must be \"P-256\""));
        }
        if jwk.contains_key("d") {
            return Err(epk("must be a public key (it holds d)"));
        }
        let coord = |k: &str| {
            jwk.get(k)
                .and_then(Value::as_str)
                .and_then(|s| Base64UrlUnpadded::decode_vec(s).ok())
                .ok_or_else(|| epk(&format!("{k} must be base64url")))
        };
        let (x, y) = (coord("x")?, coord("y")?);
        Self::from_coordinates(&x, &y)
            .map_err(|rule| JweError::Epk(format!("not a valid P-256 public key: {rule}")))
    }
}

/// The ECDH shared secret Z (the X coordinate of the shared point), zeroized on drop.
pub struct SharedSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

impl SharedSecret {
    /// Wraps Z.
    pub fn new(z: Zeroizing<[u8; 32]>) -> Self {
        Self(z)
    }

    /// ECDH of a private key with a validated point.
    pub fn agree(secret: &p256::SecretKey, public: &P256Point) -> Self {
        let shared =
            p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.public_key().as_affine());
        let mut z = Zeroizing::new([0u8; 32]);
        z.copy_from_slice(shared.raw_secret_bytes());
        Self(z)
    }

    /// Z, for the KDF.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The Concat KDF of RFC 7518 §4.6.2 (NIST SP 800-56A §5.8.1) with SHA-256: `AlgorithmID` =
/// `alg_id` (the `enc` value for direct key agreement), `PartyUInfo` = `apu`, `PartyVInfo` =
/// `apv`, `SuppPubInfo` = the key length in bits, `SuppPrivInfo` empty. `out.len()` is the key
/// length in bytes.
pub fn concat_kdf(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8], out: &mut [u8]) {
    let bits = u32::try_from(out.len() * 8).unwrap_or(u32::MAX);
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes();
    for (round, chunk) in out.chunks_mut(32).enumerate() {
        let counter = u32::try_from(round + 1).unwrap_or(u32::MAX);
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(len(alg_id.as_bytes()));
        h.update(alg_id.as_bytes());
        h.update(len(apu));
        h.update(apu);
        h.update(len(apv));
        h.update(apv);
        h.update(bits.to_be_bytes());
        let mut digest = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
        chunk.copy_from_slice(&digest[..chunk.len()]);
        digest.zeroize();
    }
}

/// The content key of an `ECDH-ES` + `A256GCM` JWE.
fn content_key(z: &SharedSecret, apu: &[u8], apv: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    concat_kdf(z.expose(), ENC, apu, apv, key.as_mut());
    key
}

/// The five parts of a compact JWE, decoded, with its header checked.
struct Parsed<'a> {
    header_b64: &'a str,
    kid: String,
    epk: P256Point,
    apu: Vec<u8>,
    apv: Vec<u8>,
    iv: [u8; IV_LEN],
    ciphertext: Vec<u8>,
    tag: [u8; TAG_LEN],
}

fn b64(part: &str, name: &'static str) -> Result<Vec<u8>, JweError> {
    Base64UrlUnpadded::decode_vec(part).map_err(|_| JweError::Base64(name))
}

fn header_bytes(header: &Map<String, Value>, key: &str) -> Result<Vec<u8>, JweError> {
    match header.get(key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Base64UrlUnpadded::decode_vec(s)
            .map_err(|_| JweError::Header(format!("{key} must be base64url"))),
        Some(_) => Err(JweError::Header(format!("{key} must be a string"))),
    }
}

/// Checks the protected header: algorithms, refused headers, `kid`; returns the `kid`.
fn check_header(header: &Map<String, Value>) -> Result<String, JweError> {
    if header.get("alg").and_then(Value::as_str) != Some(ALG) {
        return Err(JweError::Alg(quoted(header.get("alg"))));
    }
    if header.get("enc").and_then(Value::as_str) != Some(ENC) {
        return Err(JweError::Enc(quoted(header.get("enc"))));
    }
    if header.contains_key("zip") {
        return Err(JweError::Zip);
    }
    if header.contains_key("crit") {
        return Err(JweError::Crit);
    }
    match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => Ok(k.clone()),
        _ => Err(JweError::Header(
            "kid is required: a non-empty string naming the bureau key".into(),
        )),
    }
}

fn parse(compact: &str) -> Result<Parsed<'_>, JweError> {
    let parts: Vec<&str> = compact.trim().split('.').collect();
    let [header_b64, encrypted_key, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Parts(parts.len()));
    };
    let header_json = b64(header_b64, "protected header")?;
    let encrypted_key = b64(encrypted_key, "encrypted key")?;
    let iv = b64(iv, "IV")?;
    let ciphertext = b64(ciphertext, "ciphertext")?;
    let tag = b64(tag, "tag")?;
    let header = match serde_json::from_slice::<Value>(&header_json) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(JweError::Header("must be a JSON object".into())),
        Err(_) => return Err(JweError::Header("is not valid JSON".into())),
    };
    let kid = check_header(&header)?;
    if !encrypted_key.is_empty() {
        return Err(JweError::EncryptedKey);
    }
    let epk = P256Point::from_jwk(header.get("epk"))?;
    let apu = header_bytes(&header, "apu")?;
    let apv = header_bytes(&header, "apv")?;
    let iv = <[u8; IV_LEN]>::try_from(iv.as_slice()).map_err(|_| JweError::Length {
        part: "IV",
        bits: IV_LEN * 8,
    })?;
    let tag = <[u8; TAG_LEN]>::try_from(tag.as_slice()).map_err(|_| JweError::Length {
        part: "tag",
        bits: TAG_LEN * 8,
    })?;
    Ok(Parsed {
        header_b64,
        kid,
        epk,
        apu,
        apv,
        iv,
        ciphertext,
        tag,
    })
}

/// Decrypts a compact JWE with the key store's key for its `kid`. The plaintext exists only
/// once the tag has been checked.
pub fn open(compact: &str, keys: &dyn JweKeys) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let p = parse(compact)?;
    let z = keys.jwe_agree(&p.kid, &p.epk)?;
    let key = content_key(&z, &p.apu, &p.apv);
    drop(z);
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| JweError::Decrypt)?;
    let mut buf = Zeroizing::new(p.ciphertext);
    cipher
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(p.iv),
            p.header_b64.as_bytes(),
            buf.as_mut_slice().into(),
            &Tag::<Aes256Gcm>::from(p.tag),
        )
        .map_err(|_| JweError::Decrypt)?;
    Ok(buf)
}

/// A decrypted `encryptedData` object; its strings are wiped when it is dropped.
pub struct ClearObject(Map<String, Value>);

impl fmt::Debug for ClearObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClearObject(<{} fields redacted>)", self.0.len())
    }
}

impl ClearObject {
    /// The object, for validation.
    pub fn map(&self) -> &Map<String, Value> {
        &self.0
    }
}

fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(m) => m.values_mut().for_each(wipe),
        _ => {}
    }
}

impl Drop for ClearObject {
    fn drop(&mut self) {
        self.0.values_mut().for_each(wipe);
    }
}

/// Decrypts a compact JWE whose plaintext must be the UTF-8 JSON of an object.
pub fn open_object(compact: &str, keys: &dyn JweKeys) -> Result<ClearObject, JweError> {
    let plain = open(compact, keys)?;
    let text =
        std::str::from_utf8(&plain).map_err(|_| JweError::Plaintext("is not UTF-8 text".into()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(ClearObject(m)),
        Ok(mut other) => {
            wipe(&mut other);
            Err(JweError::Plaintext("is not a JSON object".into()))
        }
        Err(_) => Err(JweError::Plaintext(
            "is not JSON (it must be a JSON object)".into(),
        )),
    }
}

/// Randomness a sealer draws: the ephemeral private scalar and the IV.
pub struct SealRandom {
    /// 32 random bytes for the ephemeral scalar (drawn again while not a valid scalar).
    pub ephemeral: Zeroizing<[u8; 32]>,
    /// The GCM IV.
    pub iv: [u8; IV_LEN],
}

/// Encrypts `plaintext` for `recipient` (`kid`) as a compact JWE (`ECDH-ES`, `A256GCM`, no
/// apu/apv). Returns `None` when `random.ephemeral` is not a valid scalar (draw again).
pub fn seal(
    plaintext: &[u8],
    kid: &str,
    recipient: &P256Point,
    random: &SealRandom,
) -> Option<String> {
    let secret = p256::SecretKey::from_slice(random.ephemeral.as_ref()).ok()?;
    let epk = P256Point(secret.public_key());
    let header = json!({"alg": ALG, "enc": ENC, "kid": kid, "epk": epk.jwk(None)});
    let header_b64 = Base64UrlUnpadded::encode_string(header.to_string().as_bytes());
    let z = SharedSecret::agree(&secret, recipient);
    let key = content_key(&z, &[], &[]);
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).ok()?;
    let mut buf = Zeroizing::new(plaintext.to_vec());
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(random.iv),
            header_b64.as_bytes(),
            buf.as_mut_slice().into(),
        )
        .ok()?;
    Some(format!(
        "{header_b64}..{}.{}.{}",
        Base64UrlUnpadded::encode_string(&random.iv),
        Base64UrlUnpadded::encode_string(&buf),
        Base64UrlUnpadded::encode_string(&tag),
    ))
}
