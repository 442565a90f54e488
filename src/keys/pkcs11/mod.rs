//! A key store on a PKCS#11 token (an HSM; SoftHSM2 for tests and demos), loaded at run time
//! with the `cryptoki` crate. Format of the store file, label scheme and ceremony: docs/hsm.md.
//!
//! - Key objects are found by `CKA_LABEL` = `<usage>/<index>` (`kek/1`, `imk-ac/1`,
//!   `issuer-rsa/1`); a CVK is the pair of single-DES halves `cvk/<index>/a` and `cvk/<index>/b`
//!   (the Visa CVV's first step is single DES with the left half, a step no PKCS#11 mechanism
//!   offers on a 2-key object).
//! - A long-lived key object that is extractable or not sensitive is refused at load, by label.
//!   An IMK without `CKA_DERIVE` is refused on a live token and warned about on a test token.
//!   `CKA_VALUE` is never read; every operation runs in the token.
//! - A card's GlobalPlatform static keys are derived from the KMC into token session objects
//!   of the card's own session and never come out (`card_session.rs`); only the SCP session
//!   keys the host channel needs do.
//! - The reference PIN block (DGI 8010) is held wrapped under the bureau transport key
//!   `ktk/<index>` from preparation to STORE DATA (`ktk.rs`); a `ktk` must be AES and the token
//!   must offer `CKM_AES_KEY_WRAP_PAD`, checked at load.
//! - What comes out in clear into host memory, per card, and why: docs/hsm.md.

mod card_no_derive;
mod card_session;
mod file;
mod held;
mod jwe;
mod ktk;
mod ops;
mod seal;
mod token;

pub mod ceremony;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use zeroize::Zeroizing;

pub use card_session::CardKeyUse;
pub use file::{IssuerPublic, PinSource, StoreFile, is_pkcs11_file};
pub use ktk::KtkUse;
pub use token::{ObjectKind, TokenObject};

use crate::domain::chip::keys::IssuerOda;
use crate::domain::keystore::{KeyAlgorithm, KeyError, KeyInfo, KeyRef, KeyUsage};
use crate::domain::oda::{self, CaPublicKey, EmvPublicKey, PublicKeyCertificate};
use crate::keys::KeyFileError;
use token::Token;

/// A key store whose keys live on a PKCS#11 token.
#[derive(Debug)]
pub struct Pkcs11KeyStore {
    token: Token,
    file: StoreFile,
    source: String,
    infos: BTreeMap<KeyRef, KeyInfo>,
    issuers: BTreeMap<u32, (IssuerOda, CaPublicKey)>,
    /// The `jwe/<kid>` P-256 keys by kid: handle of the private key object and public point.
    jwe: BTreeMap<String, jwe::JweObject>,
    /// DGI 8000 values wrapped in the token (`C_WrapKey`).
    wraps: AtomicU64,
    /// DGI 8000 values encrypted on the host (SCP02 on a test token without DES3 wrapping).
    host_fallbacks: AtomicU64,
    /// The host fallback was logged once.
    fallback_noted: AtomicBool,
    /// The KMC fallback without `CKA_DERIVE` (test token) was logged once.
    kmc_fallback_noted: AtomicBool,
    /// What the token did with card keys (`C_DeriveKey`, session keys, DEK encryptions).
    card_counters: Arc<card_session::CardKeyCounters>,
    /// Values held under the ktk (DGI 8010), and how they reached a card.
    ktk_counters: ktk::KtkCounters,
}

/// What the KCV of an HMAC key (the `audit` key as a generic secret on the token) is computed
/// over: its first 3 bytes of `HMAC-SHA256(key, 16 zero bytes)` (docs/hsm.md). A token cannot
/// AES-encrypt with a generic secret, so the software store's AES KCV is not available there.
pub const HMAC_KCV_BLOCK: [u8; 16] = [0; 16];

/// The HMAC KCV of a clear audit key value (ceremony: the token's KCV of the new object must
/// equal it).
pub fn hmac_kcv(value: &[u8]) -> String {
    let mac = crate::store::audit::hmac_sha256(value, &HMAC_KCV_BLOCK);
    hex::encode_upper(&mac[..3])
}

/// The token label of a key: `cvk/3`.
pub fn label(key: KeyRef) -> String {
    format!("{}/{}", key.usage, key.index)
}

/// Parses a label of the scheme: `<usage>/<index>` or `cvk/<index>/a|b` (the half, if any).
pub fn parse_label(label: &str) -> Option<(KeyRef, Option<char>)> {
    let mut parts = label.split('/');
    let usage = KeyUsage::parse(parts.next()?)?;
    let index: u32 = parts.next()?.parse().ok()?;
    let half = match (parts.next(), parts.next()) {
        (None, _) => None,
        (Some("a"), None) if usage == KeyUsage::Cvk => Some('a'),
        (Some("b"), None) if usage == KeyUsage::Cvk => Some('b'),
        _ => return None,
    };
    Some((KeyRef::new(usage, index), half))
}

fn err(file: &str, location: impl Into<String>, rule: impl Into<String>) -> KeyFileError {
    KeyFileError {
        file: file.to_string(),
        location: location.into(),
        rule: rule.into(),
    }
}

/// The mechanisms an object of `kind` needs from the token.
fn needed_mechanisms(kind: ObjectKind) -> &'static [(MechanismType, &'static str)] {
    match kind {
        ObjectKind::Des => &[(MechanismType::DES_ECB, "CKM_DES_ECB")],
        ObjectKind::Des2 | ObjectKind::Des3 => &[
            (MechanismType::DES3_ECB, "CKM_DES3_ECB"),
            (MechanismType::DES3_CBC, "CKM_DES3_CBC"),
        ],
        ObjectKind::Aes(_) => &[
            (MechanismType::AES_ECB, "CKM_AES_ECB"),
            (MechanismType::AES_CBC, "CKM_AES_CBC"),
            (MechanismType::AES_CMAC, "CKM_AES_CMAC"),
        ],
        ObjectKind::Rsa => &[(MechanismType::RSA_X_509, "CKM_RSA_X_509")],
        ObjectKind::Generic(_) => &[(MechanismType::SHA256_HMAC, "CKM_SHA256_HMAC")],
        ObjectKind::EcP256 => &[(MechanismType::ECDH1_DERIVE, "CKM_ECDH1_DERIVE")],
    }
}

/// A one-part operation of the token with one key.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `C_Encrypt`.
    Encrypt,
    /// `C_Decrypt`.
    Decrypt,
    /// `C_Sign`.
    Sign,
}

impl Pkcs11KeyStore {
    /// Reads a store file, opens its token with the PIN it names and checks every key object.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(&name, "file", format!("cannot be read: {}", e.kind())))?;
        let file = file::parse(&name, &text)?;
        Self::open(&name, file, false)
    }

    /// Opens the token of a parsed store file; `rw` for a read-write session (key import).
    pub fn open(source: &str, file: StoreFile, rw: bool) -> Result<Self, KeyFileError> {
        let pin = file.pin.read().map_err(|(l, r)| err(source, l, r))?;
        let token = Token::open(&file.module, &file.token, &pin, rw)
            .map_err(|e| err(source, e.location, e.rule))?;
        drop(pin);
        let mut store = Self {
            token,
            file,
            source: source.to_string(),
            infos: BTreeMap::new(),
            issuers: BTreeMap::new(),
            jwe: BTreeMap::new(),
            wraps: AtomicU64::new(0),
            host_fallbacks: AtomicU64::new(0),
            fallback_noted: AtomicBool::new(false),
            kmc_fallback_noted: AtomicBool::new(false),
            card_counters: Arc::default(),
            ktk_counters: ktk::KtkCounters::default(),
        };
        store.index()?;
        Ok(store)
    }

    /// Checks the objects and computes their KCVs in the token.
    fn index(&mut self) -> Result<(), KeyFileError> {
        let src = self.source.clone();
        let mut refs = std::collections::BTreeSet::new();
        let mut no_derive = Vec::new();
        for (label, obj) in self.token.objects() {
            let key = if label.starts_with("jwe/") {
                KeyRef::new(KeyUsage::Jwe, 0)
            } else {
                let Some((key, _)) = parse_label(label) else {
                    continue;
                };
                key
            };
            if obj.extractable || !obj.sensitive {
                return Err(err(
                    &src,
                    label.as_str(),
                    format!(
                        "is {} on token {}: persodesk refuses a long-lived key that can leave the \
                         token in clear (CKA_SENSITIVE must be true, CKA_EXTRACTABLE false)",
                        if obj.extractable {
                            "extractable"
                        } else {
                            "not sensitive"
                        },
                        self.token.label
                    ),
                ));
            }
            let imk = matches!(
                key.usage,
                KeyUsage::ImkAc | KeyUsage::ImkSmi | KeyUsage::ImkSmc
            );
            if imk && !self.check_derives(label, obj)? {
                no_derive.push(label.clone());
            }
            for (m, name) in needed_mechanisms(obj.kind) {
                if !self.token.has(*m) {
                    return Err(err(
                        &src,
                        label.as_str(),
                        format!("token {} lacks the mechanism {name}", self.token.label),
                    ));
                }
            }
            if key.usage == KeyUsage::Ktk {
                self.check_ktk(label, obj)?;
            }
            if key.usage != KeyUsage::Jwe {
                refs.insert(key);
            }
        }
        self.note_no_derive(&no_derive);
        self.infos.clear();
        self.index_jwe()?;
        for key in refs {
            let info = self
                .key_info(key)
                .map_err(|e| err(&src, label(key), e.to_string()))?;
            self.infos.insert(key, info);
        }
        self.issuers.clear();
        for issuer in self.file.issuers.clone() {
            let at = format!("issuer[index {}]", issuer.index);
            let (oda, ca) = self.issuer_entry(&issuer).map_err(|r| err(&src, at, r))?;
            self.issuers.insert(issuer.index, (oda, ca));
        }
        Ok(())
    }

    /// An IMK derives the ICC master keys in the token: it needs `CKA_DERIVE` and the token
    /// `CKM_DES3_ECB_ENCRYPT_DATA` (docs/hsm.md). Without `CKA_DERIVE`, a test token
    /// (`test = true`) is accepted (`Ok(false)`: the keys are then computed with `C_Encrypt`
    /// and pass through host memory); a live token is refused, naming the label.
    fn check_derives(&self, label: &str, obj: &TokenObject) -> Result<bool, KeyFileError> {
        let rule = if !obj.derive {
            if self.file.test {
                return Ok(false);
            }
            "has CKA_DERIVE false: the ICC master keys are derived in the token with C_DeriveKey \
             (only a test token, test = true, may derive them with C_Encrypt through host memory)"
        } else if !self.token.has(MechanismType::DES3_ECB_ENCRYPT_DATA) {
            "needs the mechanism CKM_DES3_ECB_ENCRYPT_DATA (C_DeriveKey) the token lacks"
        } else {
            return Ok(true);
        };
        Err(err(
            &self.source,
            label,
            format!("{rule} (token {})", self.token.label),
        ))
    }

    /// A bureau transport key is AES and the token wraps and unwraps with
    /// `CKM_AES_KEY_WRAP_PAD` (RFC 5649); refused at load otherwise, naming the label.
    fn check_ktk(&self, label: &str, obj: &TokenObject) -> Result<(), KeyFileError> {
        let rule = if !matches!(obj.kind, ObjectKind::Aes(_)) {
            "a bureau transport key (ktk) is an AES key"
        } else if !self.token.can_wrap(MechanismType::AES_KEY_WRAP_PAD) {
            "needs C_WrapKey with CKM_AES_KEY_WRAP_PAD, which the token lacks"
        } else {
            return Ok(());
        };
        Err(err(
            &self.source,
            label,
            format!("{rule} (token {})", self.token.label),
        ))
    }

    /// One warning at load for the IMKs of a test token that lack `CKA_DERIVE`.
    fn note_no_derive(&self, labels: &[String]) {
        if labels.is_empty() {
            return;
        }
        tracing::warn!(
            token = %self.token.label,
            "{} on test token {}: CKA_DERIVE is missing, so the ICC master keys are derived with \
             C_Encrypt and pass through host memory (zeroized); DGI 8000 is encrypted on the host \
             (docs/hsm.md). The token's objects are not changed.",
            labels.join(", "),
            self.token.label
        );
    }

    /// Whether the three IMKs of `index` can derive in the token (`CKA_DERIVE`).
    pub(super) fn imks_derive(&self, index: u32) -> Result<bool, KeyError> {
        let mut all = true;
        for u in [KeyUsage::ImkAc, KeyUsage::ImkSmi, KeyUsage::ImkSmc] {
            all &= self.object(KeyRef::new(u, index))?.derive;
        }
        Ok(all)
    }

    fn key_info(&self, key: KeyRef) -> Result<KeyInfo, KeyError> {
        let (algorithm, kcv) = if key.usage == KeyUsage::Cvk && self.cvk_halves(key).is_ok() {
            let mut block = [0u8; 8];
            self.cvk_tdes(key, &mut block)?;
            (KeyAlgorithm::Tdes, hex::encode_upper(&block[..3]))
        } else {
            let obj = self.object(key)?;
            match obj.kind {
                ObjectKind::Rsa => (
                    KeyAlgorithm::Rsa,
                    crate::keys::software_chip::rsa_kcv(&obj.modulus),
                ),
                ObjectKind::Aes(_) => {
                    let c = self.encrypt(key, &Mechanism::AesEcb, &[0x01; 16])?;
                    (KeyAlgorithm::Aes, hex::encode_upper(&c[..3]))
                }
                ObjectKind::Des2 | ObjectKind::Des3 => {
                    let c = self.encrypt(key, &Mechanism::Des3Ecb, &[0; 8])?;
                    (KeyAlgorithm::Tdes, hex::encode_upper(&c[..3]))
                }
                ObjectKind::Generic(_) if key.usage == KeyUsage::Audit => {
                    let mac = self.crypt(
                        Op::Sign,
                        key,
                        obj.handle,
                        &Mechanism::Sha256Hmac,
                        &HMAC_KCV_BLOCK,
                    )?;
                    (KeyAlgorithm::Aes, hex::encode_upper(&mac[..3]))
                }
                ObjectKind::EcP256 => {
                    return Err(KeyError::Rule {
                        key,
                        rule: "an EC object is only allowed as a JWE key (jwe/<kid>)".into(),
                    });
                }
                ObjectKind::Generic(_) => {
                    return Err(KeyError::Rule {
                        key,
                        rule: "a generic-secret object is only allowed as the audit key (audit/N)"
                            .into(),
                    });
                }
                ObjectKind::Des => {
                    return Err(KeyError::Rule {
                        key,
                        rule:
                            "a single-DES object is only allowed as a CVK half (cvk/N/a, cvk/N/b)"
                                .into(),
                    });
                }
            }
        };
        Ok(KeyInfo {
            key,
            algorithm,
            kcv,
            test: self.file.test,
        })
    }

    fn issuer_entry(&self, i: &IssuerPublic) -> Result<(IssuerOda, CaPublicKey), String> {
        let key = KeyRef::new(KeyUsage::IssuerRsa, i.index);
        let obj = self.object(key).map_err(|e| e.to_string())?;
        if obj.kind != ObjectKind::Rsa {
            return Err(format!("{} is not an RSA private key", label(key)));
        }
        let public = EmvPublicKey::new(&obj.modulus, i.exponent)
            .map_err(|e| format!("{}: modulus: {e}", label(key)))?;
        let exp = i.exponent.bytes().to_vec();
        let rec = oda::recover_issuer_certificate(&i.ca_key, &i.certificate, &i.remainder, &exp)
            .map_err(|e| format!("certificate: does not verify with the CA key: {e}"))?;
        if rec.issuer_key != public {
            return Err(format!(
                "certificate: certifies a different issuer key than {} on the token",
                label(key)
            ));
        }
        if !rec.fields.issuer_id_well_formed() {
            return Err(
                "certificate: its issuer identifier is not 3 to 8 PAN digits padded with F (EMV Book 2 §5.3)"
                    .into(),
            );
        }
        let oda = IssuerOda {
            key,
            rid: i.rid,
            ca_index: i.ca_index,
            certificate: PublicKeyCertificate {
                certificate: i.certificate.clone(),
                remainder: i.remainder.clone(),
                exponent: exp,
            },
            public_key: public,
            fields: rec.fields,
        };
        let ca = CaPublicKey {
            rid: i.rid,
            index: i.ca_index,
            key: i.ca_key.clone(),
        };
        Ok((oda, ca))
    }

    /// The file the store came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The token label.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    /// Every key's public information.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.infos.values().cloned().collect()
    }

    /// Every key object of the scheme with its kind and flags (for `keys list`).
    pub fn objects(&self) -> Vec<(String, TokenObject)> {
        self.token
            .objects()
            .iter()
            .filter(|(l, _)| parse_label(l).is_some() || l.starts_with("jwe/"))
            .map(|(l, o)| (l.clone(), o.clone()))
            .collect()
    }

    /// How often the token derived card static keys, computed session keys under them and
    /// encrypted under a card's DEK object (for tests and logs).
    pub fn card_key_use(&self) -> CardKeyUse {
        self.card_counters.snapshot()
    }

    /// Whether the store file marks the token as a test token.
    pub fn is_test_token(&self) -> bool {
        self.file.test
    }

    /// The object of `key` (its label `usage/index`).
    fn object(&self, key: KeyRef) -> Result<&TokenObject, KeyError> {
        self.object_labelled(&label(key))
    }

    fn object_labelled(&self, label: &str) -> Result<&TokenObject, KeyError> {
        self.token
            .object(label)
            .ok_or_else(|| KeyError::NotOnToken {
                label: label.to_string(),
                token: self.token.label.clone(),
            })
    }

    fn store_err(&self, key: KeyRef, e: &cryptoki::error::Error) -> KeyError {
        KeyError::Store {
            key,
            rule: token::describe(e),
        }
    }

    fn tok_err(key: KeyRef, e: token::TokenError) -> KeyError {
        KeyError::Store { key, rule: e.rule }
    }

    /// Encrypts `data` with the object of `key` in the token.
    fn encrypt(
        &self,
        key: KeyRef,
        m: &Mechanism,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let obj = self.object(key)?.handle;
        self.crypt(Op::Encrypt, key, obj, m, data)
    }

    /// `op` with `key` (object `obj`, mechanism `m`) over `data` on the store's session.
    fn crypt(
        &self,
        op: Op,
        key: KeyRef,
        obj: ObjectHandle,
        m: &Mechanism,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.on_token(key, |s| match op {
            Op::Encrypt => s.encrypt(m, obj, data),
            Op::Decrypt => s.decrypt(m, obj, data),
            Op::Sign => s.sign(m, obj, data),
        })
    }

    /// Runs one operation with `key` on the store's session; its bytes in a zeroizing buffer,
    /// its error naming the key.
    fn on_token(
        &self,
        key: KeyRef,
        op: impl FnOnce(&cryptoki::session::Session) -> cryptoki::error::Result<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let s = self.token.session().map_err(|e| Self::tok_err(key, e))?;
        op(&s)
            .map(Zeroizing::new)
            .map_err(|e| self.store_err(key, &e))
    }

    /// The two single-DES halves of a CVK, each with the mechanism that runs it: `CKK_DES`, or
    /// `CKK_DES3` holding `K‖K‖K` for tools that create no single-DES objects.
    fn cvk_halves(&self, key: KeyRef) -> Result<[(ObjectHandle, Mechanism<'static>); 2], KeyError> {
        let half = |h: &str| -> Result<(ObjectHandle, Mechanism<'static>), KeyError> {
            let o = self.object_labelled(&format!("{}/{h}", label(key)))?;
            match o.kind {
                ObjectKind::Des => Ok((o.handle, Mechanism::DesEcb)),
                ObjectKind::Des3 => Ok((o.handle, Mechanism::Des3Ecb)),
                _ => Err(KeyError::Rule {
                    key,
                    rule: "a CVK half must be a CKK_DES (or CKK_DES3 K||K||K) object".into(),
                }),
            }
        };
        Ok([half("a")?, half("b")?])
    }

    /// `block = TDES_{A,B}(block)` = `E_A(D_B(E_A(block)))` with the CVK halves.
    fn cvk_tdes(&self, key: KeyRef, block: &mut [u8; 8]) -> Result<(), KeyError> {
        let [(a, ma), (b, mb)] = self.cvk_halves(key)?;
        let x = self.crypt(Op::Encrypt, key, a, &ma, block)?;
        let x = self.crypt(Op::Decrypt, key, b, &mb, &x)?;
        let x = self.crypt(Op::Encrypt, key, a, &ma, &x)?;
        block.copy_from_slice(&x);
        Ok(())
    }
}
