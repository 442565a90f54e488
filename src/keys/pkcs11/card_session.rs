//! One card's GlobalPlatform keys in the token ([`TokenCardKeys`]): the static ENC/MAC/DEK are
//! token session objects derived from the KMC with `C_DeriveKey`, sensitive and never
//! extractable, in a session of their own that is closed (and the objects destroyed) when the
//! card's secure channel session ends. Only the SCP session keys the host channel needs come
//! out (docs/hsm.md, "What is in clear in host memory").
//!
//! - EMV CPS 1.1 / VISA2: the diversification is TDES-ECB of one 16-byte block under the KMC,
//!   so `C_DeriveKey(kmc, CKM_DES3_ECB_ENCRYPT_DATA, block)` gives the static key (`CKK_DES2`).
//! - kdf3: AES-CMAC of one complete block `M` is `AES_K(M ⊕ K1)`, `K1 = dbl(AES_K(0¹²⁸))`
//!   (NIST SP 800-38B §6.1, §6.2). `L = AES_K(0¹²⁸)` comes from `C_Encrypt` (it is a known
//!   plaintext's ciphertext, like a KCV, not the key), `K1` is computed on the host, and
//!   `C_DeriveKey(kmc, CKM_AES_ECB_ENCRYPT_DATA, M1 ⊕ K1 ‖ M2 ⊕ K1)` gives the static key,
//!   cut to the KMC's length (`CKA_VALUE_LEN`).
//! - SCP02 S-ENC, C-MAC, R-MAC: `C_Encrypt` with `CKM_DES3_CBC` (IV 0) of the derivation data
//!   under the static key (exactly the session key bytes); the session DEK:
//!   `C_DeriveKey(static DEK, CKM_DES3_CBC_ENCRYPT_DATA)`, a token object too.
//! - SCP03 S-ENC, S-MAC, S-RMAC and the pseudo-random card challenge: the SCP03 KDF with each
//!   CMAC a `C_Sign` (`CKM_AES_CMAC`) under the static key; the static DEK is the DEK.
//! - Sensitive data: `C_Encrypt` under the DEK object (TDES-ECB / AES-CBC IV 0); held DGI 8000
//!   is wrapped under it by the store (`held.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::ekdf::DesCbcDeriveParams;
use cryptoki::mechanism::misc::KeyDerivationStringData;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use super::{ObjectKind, Pkcs11KeyStore, label, token};
use crate::domain::gp::kdf::{Diversification, Kdd, cmac_subkey1, diversification_blocks};
use crate::domain::gp::{KeyPurpose, SecretKey, scp02, scp03};
use crate::domain::keystore::{CardDek, CardKeySet, KeyError, KeyRef, KeyUsage};

/// How often the token ran each step of the card keys (for tests and logs): static keys derived
/// (`C_DeriveKey` from the KMC), session keys computed (`C_Encrypt` / `C_Sign` under a static
/// key), encryptions under a DEK object (`C_Encrypt`).
#[derive(Debug, Default)]
pub(super) struct CardKeyCounters {
    static_derivations: AtomicU64,
    session_key_operations: AtomicU64,
    dek_encryptions: AtomicU64,
}

/// What [`Pkcs11KeyStore::card_key_use`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CardKeyUse {
    /// Static card keys derived from a KMC in the token (`C_DeriveKey`), 3 per card.
    pub static_derivations: u64,
    /// Session keys and card challenges computed in the token under a static key object.
    pub session_key_operations: u64,
    /// Sensitive data encrypted in the token under a card's DEK object (`C_Encrypt`).
    pub dek_encryptions: u64,
}

impl CardKeyCounters {
    pub(super) fn snapshot(&self) -> CardKeyUse {
        CardKeyUse {
            static_derivations: self.static_derivations.load(Ordering::Relaxed),
            session_key_operations: self.session_key_operations.load(Ordering::Relaxed),
            dek_encryptions: self.dek_encryptions.load(Ordering::Relaxed),
        }
    }

    pub(super) fn note_dek_encryption(&self) {
        self.dek_encryptions.fetch_add(1, Ordering::Relaxed);
    }
}

/// The card's DEK as the store that made it recognises it ([`CardDek::Held`]).
#[derive(Debug)]
pub(super) struct TokenDek {
    /// The token the object lives on.
    pub token: String,
    /// The DEK object (a session object of the card's session).
    pub handle: ObjectHandle,
    /// SCP03 (AES-CBC) rather than SCP02 (TDES-ECB).
    pub aes: bool,
}

/// Session objects of one card, destroyed on drop before the session closes.
struct CardObjects {
    session: Session,
    handles: Vec<ObjectHandle>,
}

impl Drop for CardObjects {
    fn drop(&mut self) {
        for h in self.handles.drain(..) {
            if let Err(e) = self.session.destroy_object(h) {
                tracing::warn!(error = %token::describe(&e), "a card key object could not be destroyed");
            }
        }
    }
}

/// One card's static keys as token session objects ([`CardKeySet`]).
pub(super) struct TokenCardKeys {
    objects: CardObjects,
    kmc: KeyRef,
    /// AES (kdf3, SCP03) and the keys' length; TDES keys are 16 bytes.
    aes: bool,
    len: usize,
    /// Static ENC, MAC, DEK.
    statics: [ObjectHandle; 3],
    /// The DEK sensitive data goes under, once a session is open.
    dek: Option<TokenDek>,
    token: String,
    counters: Arc<CardKeyCounters>,
}

impl std::fmt::Debug for TokenCardKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCardKeys")
            .field("kmc", &self.kmc)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A KMC without `CKA_DERIVE` where the keys must be derived in the token (fail closed).
pub(super) fn no_derive(kmc: KeyRef, token: &str) -> KeyError {
    rule(
        kmc,
        format!(
            "{} has CKA_DERIVE false on token {token}: the card's GlobalPlatform keys are \
             diversified in the token with C_DeriveKey and never come out (keys import sets \
             CKA_DERIVE on a KMC; only a test token, test = true, may diversify them with \
             C_Encrypt through host memory)",
            label(kmc)
        ),
    )
}

fn rule(key: KeyRef, rule: impl Into<String>) -> KeyError {
    KeyError::Rule {
        key,
        rule: rule.into(),
    }
}

fn store_err(key: KeyRef, e: &cryptoki::error::Error) -> KeyError {
    KeyError::Store {
        key,
        rule: token::describe(e),
    }
}

/// A card key's template: a session object, sensitive, never extractable, with only the uses
/// it has (`purpose` `None` is the SCP02 session DEK). `len` is set for AES keys
/// (`CKA_VALUE_LEN`). Every key encrypts: its KCV, the SCP02 session keys, sensitive data.
fn card_key_template(aes: bool, len: usize, purpose: Option<KeyPurpose>) -> Vec<Attribute> {
    let dek = matches!(purpose, Some(KeyPurpose::Dek) | None);
    // The SCP02 static DEK only derives the session DEK; the DEK that data goes under wraps.
    let scp02_static_dek = !aes && purpose == Some(KeyPurpose::Dek);
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(if aes { KeyType::AES } else { KeyType::DES2 }),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        // SCP03 session keys and card challenges are CMACs (C_Sign) under ENC and MAC.
        Attribute::Sign(aes && !dek),
        Attribute::Decrypt(false),
        Attribute::Verify(false),
        Attribute::Wrap(dek && !scp02_static_dek),
        Attribute::Unwrap(false),
        Attribute::Derive(scp02_static_dek),
    ];
    if aes {
        t.push(Attribute::ValueLen(u64::try_from(len).unwrap_or(0).into()));
    }
    t
}

impl Pkcs11KeyStore {
    /// Opens one card's keys: the static keys derived from `kmc #kmc_index` in a new session.
    pub(super) fn token_card_keys(
        &self,
        kmc_index: u32,
        method: Diversification,
        kdd: &Kdd,
    ) -> Result<TokenCardKeys, KeyError> {
        let kmc = KeyRef::new(KeyUsage::Kmc, kmc_index);
        let (base, aes, len) = self.kmc_for_derivation(kmc, method)?;
        let session = self
            .token
            .extra_session()
            .map_err(|e| Self::tok_err(kmc, e))?;
        let mut keys = TokenCardKeys {
            objects: CardObjects {
                session,
                handles: Vec::with_capacity(4),
            },
            kmc,
            aes,
            len,
            statics: [base; 3],
            dek: None,
            token: self.token.label.clone(),
            counters: Arc::clone(&self.card_counters),
        };
        let k1 = if aes { Some(keys.cmac_k1(base)?) } else { None };
        for (i, purpose) in [KeyPurpose::Enc, KeyPurpose::Mac, KeyPurpose::Dek]
            .into_iter()
            .enumerate()
        {
            let h = keys.derive_static(base, kdd, purpose, method, k1.as_deref())?;
            keys.statics[i] = h;
        }
        Ok(keys)
    }

    /// The KMC object, checked for derivation in the token: its kind matches `method`, it has
    /// `CKA_DERIVE`, and the token offers the derivation mechanisms. Fails closed, by label.
    fn kmc_for_derivation(
        &self,
        kmc: KeyRef,
        method: Diversification,
    ) -> Result<(ObjectHandle, bool, usize), KeyError> {
        let o = self.object(kmc)?;
        let (aes, len, needed): (bool, usize, &[(MechanismType, &str)]) = match (o.kind, method) {
            (ObjectKind::Aes(n), Diversification::Kdf3) => (
                true,
                n,
                &[(
                    MechanismType::AES_ECB_ENCRYPT_DATA,
                    "CKM_AES_ECB_ENCRYPT_DATA",
                )],
            ),
            (ObjectKind::Des2 | ObjectKind::Des3, m) if !m.is_aes() => (
                false,
                16,
                &[
                    (
                        MechanismType::DES3_ECB_ENCRYPT_DATA,
                        "CKM_DES3_ECB_ENCRYPT_DATA",
                    ),
                    (
                        MechanismType::DES3_CBC_ENCRYPT_DATA,
                        "CKM_DES3_CBC_ENCRYPT_DATA",
                    ),
                ],
            ),
            _ => {
                return Err(KeyError::WrongAlgorithm {
                    key: kmc,
                    found: if matches!(o.kind, ObjectKind::Aes(_)) {
                        "aes"
                    } else {
                        "tdes"
                    },
                    needed: if method.is_aes() {
                        "aes (kdf3)"
                    } else {
                        "tdes (EMV CPS 1.1 / VISA2)"
                    },
                });
            }
        };
        if !o.derive {
            return Err(no_derive(kmc, &self.token.label));
        }
        for (m, name) in needed {
            if !self.token.has(*m) {
                return Err(KeyError::Store {
                    key: kmc,
                    rule: format!(
                        "token {} lacks {name}, which derives the card's keys in the token",
                        self.token.label
                    ),
                });
            }
        }
        Ok((o.handle, aes, len))
    }
}

impl TokenCardKeys {
    fn session(&self) -> &Session {
        &self.objects.session
    }

    /// K1 of AES-CMAC under the KMC: `dbl(L)`, `L = C_Encrypt(kmc, CKM_AES_ECB, 16 × 00)`.
    fn cmac_k1(&self, kmc: ObjectHandle) -> Result<Zeroizing<[u8; 16]>, KeyError> {
        let l = Zeroizing::new(
            self.session()
                .encrypt(&Mechanism::AesEcb, kmc, &[0; 16])
                .map_err(|e| store_err(self.kmc, &e))?,
        );
        let l: [u8; 16] = l
            .as_slice()
            .try_into()
            .map_err(|_| rule(self.kmc, "the token's AES block is not 16 bytes"))?;
        let mut l = Zeroizing::new(l);
        let k1 = Zeroizing::new(cmac_subkey1(&l));
        l.zeroize();
        Ok(k1)
    }

    /// One static key as a session object (kdf.rs has the blocks; module doc the mechanisms).
    fn derive_static(
        &mut self,
        kmc: ObjectHandle,
        kdd: &Kdd,
        purpose: KeyPurpose,
        method: Diversification,
        k1: Option<&[u8; 16]>,
    ) -> Result<ObjectHandle, KeyError> {
        let mut data = Zeroizing::new(Vec::with_capacity(32));
        for block in diversification_blocks(kdd, purpose, method, self.len) {
            match k1 {
                Some(k1) => data.extend(block.iter().zip(k1).map(|(m, k)| m ^ k)),
                None => data.extend_from_slice(&block),
            }
        }
        let template = card_key_template(self.aes, self.len, Some(purpose));
        let m = if self.aes {
            Mechanism::AesEcbEncryptData(KeyDerivationStringData::new(&data))
        } else {
            Mechanism::Des3EcbEncryptData(KeyDerivationStringData::new(&data))
        };
        let h = self
            .session()
            .derive_key(&m, kmc, &template)
            .map_err(|e| store_err(self.kmc, &e))?;
        self.objects.handles.push(h);
        self.counters
            .static_derivations
            .fetch_add(1, Ordering::Relaxed);
        Ok(h)
    }

    fn static_key(&self, purpose: KeyPurpose) -> ObjectHandle {
        let [enc, mac, dek] = self.statics;
        match purpose {
            KeyPurpose::Enc => enc,
            KeyPurpose::Mac => mac,
            KeyPurpose::Dek => dek,
        }
    }

    /// One SCP02 session key: `C_Encrypt(static, CKM_DES3_CBC, IV 0)` of its derivation data.
    fn scp02_key(
        &self,
        purpose: KeyPurpose,
        constant: [u8; 2],
        seq: [u8; 2],
    ) -> Result<SecretKey, KeyError> {
        let data = scp02::derivation_data(constant, seq);
        let v = Zeroizing::new(
            self.session()
                .encrypt(&Mechanism::Des3Cbc([0; 8]), self.static_key(purpose), &data)
                .map_err(|e| store_err(self.kmc, &e))?,
        );
        self.counters
            .session_key_operations
            .fetch_add(1, Ordering::Relaxed);
        SecretKey::new(&v).map_err(|e| rule(self.kmc, e.to_string()))
    }

    /// The SCP03 KDF under a static key, each CMAC a `C_Sign` with `CKM_AES_CMAC`.
    fn scp03_kdf(
        &self,
        purpose: KeyPurpose,
        constant: u8,
        context: &[u8],
        l_bits: u16,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let inputs = scp03::kdf_inputs(constant, context, l_bits)
            .map_err(|e| rule(self.kmc, e.to_string()))?;
        let mut out = Zeroizing::new(Vec::with_capacity(inputs.len() * 16));
        for input in inputs {
            let mac = Zeroizing::new(
                self.session()
                    .sign(&Mechanism::AesCMac, self.static_key(purpose), &input)
                    .map_err(|e| store_err(self.kmc, &e))?,
            );
            out.extend_from_slice(&mac);
        }
        self.counters
            .session_key_operations
            .fetch_add(1, Ordering::Relaxed);
        out.truncate(usize::from(l_bits / 8));
        Ok(out)
    }

    fn not_opened(&self) -> KeyError {
        rule(
            self.kmc,
            "card keys: no secure channel session was opened yet",
        )
    }

    fn wrong_protocol(&self, what: &str) -> KeyError {
        rule(
            self.kmc,
            format!("card keys diversified for the other protocol cannot open {what}"),
        )
    }
}

impl CardKeySet for TokenCardKeys {
    fn scp02_session(&mut self, seq: [u8; 2]) -> Result<scp02::ChannelKeys, KeyError> {
        if self.aes {
            return Err(self.wrong_protocol("SCP02"));
        }
        let keys = scp02::ChannelKeys {
            enc: self.scp02_key(KeyPurpose::Enc, scp02::CONST_ENC, seq)?,
            c_mac: self.scp02_key(KeyPurpose::Mac, scp02::CONST_C_MAC, seq)?,
            r_mac: self.scp02_key(KeyPurpose::Mac, scp02::CONST_R_MAC, seq)?,
        };
        let data = scp02::derivation_data(scp02::CONST_DEK, seq);
        let m = Mechanism::Des3CbcEncryptData(DesCbcDeriveParams::new([0; 8], &data));
        let template = card_key_template(false, 16, None);
        let h = self
            .session()
            .derive_key(&m, self.static_key(KeyPurpose::Dek), &template)
            .map_err(|e| store_err(self.kmc, &e))?;
        self.objects.handles.push(h);
        self.dek = Some(TokenDek {
            token: self.token.clone(),
            handle: h,
            aes: false,
        });
        Ok(keys)
    }

    fn scp03_session(
        &mut self,
        host_challenge: &[u8; 8],
        card_challenge: &[u8; 8],
    ) -> Result<scp03::SessionKeys, KeyError> {
        if !self.aes {
            return Err(self.wrong_protocol("SCP03"));
        }
        let context = scp03::challenge_context(host_challenge, card_challenge);
        let bits = u16::try_from(self.len * 8).unwrap_or(u16::MAX);
        let key = |purpose, constant| -> Result<SecretKey, KeyError> {
            let v = self.scp03_kdf(purpose, constant, &context, bits)?;
            SecretKey::new(&v).map_err(|e| rule(self.kmc, e.to_string()))
        };
        let keys = scp03::SessionKeys {
            enc: key(KeyPurpose::Enc, scp03::CONST_S_ENC)?,
            mac: key(KeyPurpose::Mac, scp03::CONST_S_MAC)?,
            rmac: key(KeyPurpose::Mac, scp03::CONST_S_RMAC)?,
        };
        self.dek = Some(TokenDek {
            token: self.token.clone(),
            handle: self.static_key(KeyPurpose::Dek),
            aes: true,
        });
        Ok(keys)
    }

    fn scp03_card_challenge(&self, seq: &[u8; 3], sd_aid: &[u8]) -> Result<[u8; 8], KeyError> {
        if !self.aes {
            return Err(self.wrong_protocol("an SCP03 card challenge"));
        }
        let context = scp03::card_challenge_context(seq, sd_aid);
        let out = self.scp03_kdf(KeyPurpose::Enc, scp03::CONST_CARD_CHALLENGE, &context, 64)?;
        out.as_slice()
            .try_into()
            .map_err(|_| rule(self.kmc, "the card challenge is not 8 bytes"))
    }

    fn encrypt_sensitive(&self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let dek = self.dek.as_ref().ok_or_else(|| self.not_opened())?;
        let m = if dek.aes {
            Mechanism::AesCbc([0; 16])
        } else {
            Mechanism::Des3Ecb
        };
        let out = self
            .session()
            .encrypt(&m, dek.handle, data)
            .map(Zeroizing::new)
            .map_err(|e| store_err(self.kmc, &e))?;
        self.counters.note_dek_encryption();
        Ok(out)
    }

    fn dek(&self) -> Result<CardDek<'_>, KeyError> {
        let dek = self.dek.as_ref().ok_or_else(|| self.not_opened())?;
        Ok(CardDek::Held(dek))
    }

    fn static_kcvs(&self) -> Result<[[u8; 3]; 3], KeyError> {
        let mut out = [[0u8; 3]; 3];
        for (kcv, purpose) in
            out.iter_mut()
                .zip([KeyPurpose::Enc, KeyPurpose::Mac, KeyPurpose::Dek])
        {
            let (m, block): (Mechanism, &[u8]) = if self.aes {
                (Mechanism::AesEcb, &[0x01; 16])
            } else {
                (Mechanism::Des3Ecb, &[0; 8])
            };
            let c = self
                .session()
                .encrypt(&m, self.static_key(purpose), block)
                .map_err(|e| store_err(self.kmc, &e))?;
            let first = c
                .get(..3)
                .ok_or_else(|| rule(self.kmc, "the token's KCV is short"))?;
            kcv.copy_from_slice(first);
        }
        Ok(out)
    }
}
