//! DGI 8000 on the token: the ICC master keys MK-AC/SMI/SMC are derived in the token as session
//! objects (`C_DeriveKey`, `CKM_DES3_ECB_ENCRYPT_DATA` over the EMV Book 2 A1.4 derivation data
//! under each IMK), sensitive and extractable only so that `C_WrapKey` can wrap them under the
//! card's DEK, never `CKA_TOKEN`, destroyed when the call returns. Their KCVs are computed by the
//! token. The card's DEK is the token object the card's keys hold (`CardDek::Held`,
//! `card_session.rs`); a DEK given in host memory (tests' fixed DEKs) is created as a session
//! object that can only wrap.
//!
//! - SCP03 (AES DEK): `C_WrapKey` with `CKM_AES_CBC`, the IV of each key the previous key's
//!   ciphertext: equal to the session's AES-CBC (IV 0) over the 48 bytes.
//! - SCP02 (TDES session DEK): `C_WrapKey` with `CKM_DES3_ECB` when the token offers it for
//!   wrapping (`CKF_WRAP`); ECB over the 48 bytes is the three wraps side by side. A token
//!   without it (SoftHSM2 2.6.1) is refused unless it is a test token (`test = true`), where the
//!   keys are computed with `C_Encrypt` and encrypted with `C_Encrypt` under the DEK object (on
//!   the host for a host DEK), said once in the log.
//! - IMKs without `CKA_DERIVE` (accepted on a test token only, warned at load) never come here:
//!   their DGI 8000 is prepared in clear (`ops.rs`, `clear_icc_master_keys`).

use super::Op;
use std::sync::atomic::Ordering;

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::misc::KeyDerivationStringData;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use super::Pkcs11KeyStore;
use super::card_session::TokenDek;
use crate::domain::chip::ChipKcvs;
use crate::domain::emv_keys::{self, MkdOption};
use crate::domain::fields::{Pan, Psn};
use crate::domain::gp::SecretKey;
use crate::domain::keystore::{CardDek, HeldSecret, KeyError, KeyRef, KeyUsage};

/// Session objects destroyed when this drops (also on every error path).
pub(super) struct SessionObjects<'s> {
    session: &'s Session,
    pub(super) handles: Vec<ObjectHandle>,
}

impl<'s> SessionObjects<'s> {
    /// Objects of `session` to destroy on drop.
    pub(super) fn new(session: &'s Session, handles: Vec<ObjectHandle>) -> Self {
        Self { session, handles }
    }
}

impl Drop for SessionObjects<'_> {
    fn drop(&mut self) {
        for h in self.handles.drain(..) {
            if let Err(e) = self.session.destroy_object(h) {
                tracing::warn!(error = %super::token::describe(&e), "a session key object could not be destroyed");
            }
        }
    }
}

fn rule(key: KeyRef, rule: impl Into<String>) -> KeyError {
    KeyError::Rule {
        key,
        rule: rule.into(),
    }
}

/// The three IMKs of `index`, AC first.
fn imks(index: u32) -> [KeyRef; 3] {
    [KeyUsage::ImkAc, KeyUsage::ImkSmi, KeyUsage::ImkSmc].map(|u| KeyRef::new(u, index))
}

impl Pkcs11KeyStore {
    /// Derives MK-AC, MK-SMI and MK-SMC as session objects into `objects` (in that order).
    fn derive_icc_mks(
        &self,
        objects: &mut SessionObjects<'_>,
        index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<(), KeyError> {
        let [ac, ..] = imks(index);
        let data = Zeroizing::new(
            emv_keys::icc_derivation_data(option, pan.reveal(), &psn.to_string())
                .map_err(|e| rule(ac, format!("ICC master key derivation: {e}")))?,
        );
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::DES2),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
        ];
        for imk in imks(index) {
            let base = self.tdes(imk)?;
            if !self.object(imk)?.derive {
                return Err(rule(
                    imk,
                    "has CKA_DERIVE false: the ICC master keys cannot be derived in the token",
                ));
            }
            let m = Mechanism::Des3EcbEncryptData(KeyDerivationStringData::new(data.as_ref()));
            let h = objects
                .session
                .derive_key(&m, base, &template)
                .map_err(|e| self.store_err(imk, &e))?;
            objects.handles.push(h);
        }
        Ok(())
    }

    /// The KCVs of the derived keys, computed by the token.
    fn held_kcvs(&self, objects: &SessionObjects<'_>, index: u32) -> Result<ChipKcvs, KeyError> {
        let mut kcvs = [[0u8; 3]; 3];
        for ((kcv, h), imk) in kcvs.iter_mut().zip(&objects.handles).zip(imks(index)) {
            let c = objects
                .session
                .encrypt(&Mechanism::Des3Ecb, *h, &[0; 8])
                .map_err(|e| self.store_err(imk, &e))?;
            let first = c
                .get(..3)
                .ok_or_else(|| rule(imk, "the token's KCV is short"))?;
            kcv.copy_from_slice(first);
        }
        let [ac, smi, smc] = kcvs;
        Ok(ChipKcvs { ac, smi, smc })
    }

    /// Preparation: the KCVs of one card's ICC master keys, derived in the token and destroyed.
    pub(super) fn held_icc_master_kcvs(
        &self,
        index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<ChipKcvs, KeyError> {
        let [ac, ..] = imks(index);
        let session = self.token.session().map_err(|e| Self::tok_err(ac, e))?;
        let mut objects = SessionObjects {
            session: &session,
            handles: Vec::with_capacity(4),
        };
        self.derive_icc_mks(&mut objects, index, option, pan, psn)?;
        self.held_kcvs(&objects, index)
    }

    /// STORE DATA: DGI 8000 of one card wrapped under the card's DEK in the token.
    pub(super) fn held_for_card(
        &self,
        secret: &HeldSecret,
        dek: CardDek<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let Some((derivation_index, option, pan, psn)) = secret.icc_master_key_inputs() else {
            return self.wrapped_for_card(secret, dek);
        };
        let ac = secret.key();
        let (aes, held) = match dek {
            CardDek::Scp02Session(_) => (false, None),
            CardDek::Scp03Static(_) => (true, None),
            CardDek::Held(any) => {
                let d = self.token_dek(any, ac)?;
                (d.aes, Some(d.handle))
            }
        };
        if !aes && !self.token.can_wrap(MechanismType::DES3_ECB) {
            return self.scp02_without_wrap(secret, dek);
        }
        let session = self.token.session().map_err(|e| Self::tok_err(ac, e))?;
        let mut objects = SessionObjects {
            session: &session,
            handles: Vec::with_capacity(4),
        };
        self.derive_icc_mks(&mut objects, *derivation_index, *option, pan, *psn)?;
        let mks = objects.handles.clone();
        let wrapping = match (held, dek) {
            (Some(h), _) => h,
            (None, CardDek::Scp02Session(k) | CardDek::Scp03Static(k)) => {
                let h = self.wrapping_key(&session, k, aes, ac)?;
                objects.handles.push(h);
                h
            }
            (None, CardDek::Held(_)) => return Err(rule(ac, "the card's DEK is missing")),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(48));
        let mut iv = [0u8; 16];
        for mk in mks {
            let m = if aes {
                Mechanism::AesCbc(iv)
            } else {
                Mechanism::Des3Ecb
            };
            let wrapped = session
                .wrap_key(&m, wrapping, mk)
                .map_err(|e| self.store_err(ac, &e))?;
            if wrapped.len() != 16 {
                return Err(rule(
                    ac,
                    "the token's wrapped ICC master key is not 16 bytes",
                ));
            }
            iv.copy_from_slice(&wrapped);
            out.extend_from_slice(&wrapped);
        }
        tracing::debug!(
            aes,
            "DGI 8000 wrapped under the card's DEK in the token (C_WrapKey)"
        );
        self.wraps.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// The card's DEK object a [`CardDek::Held`] names: one this store's card keys made on this
    /// token (fails closed for anything else).
    pub(super) fn token_dek<'d>(
        &self,
        any: &'d dyn std::any::Any,
        ac: KeyRef,
    ) -> Result<&'d TokenDek, KeyError> {
        match any.downcast_ref::<TokenDek>() {
            Some(d) if d.token == self.token.label => Ok(d),
            _ => Err(rule(
                ac,
                format!(
                    "the card's DEK is held by another key store than token {}",
                    self.token.label
                ),
            )),
        }
    }

    /// A DEK given in host memory (a caller's test DEK) as a session object that can only wrap.
    pub(super) fn wrapping_key(
        &self,
        session: &Session,
        dek: &SecretKey,
        aes: bool,
        ac: KeyRef,
    ) -> Result<ObjectHandle, KeyError> {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(if aes { KeyType::AES } else { KeyType::DES2 }),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Value(dek.as_bytes().to_vec()),
        ];
        let made = session.create_object(&template);
        for a in template.iter_mut() {
            if let Attribute::Value(v) = a {
                v.zeroize();
            }
        }
        made.map_err(|e| self.store_err(ac, &e))
    }

    /// SCP02 on a token that cannot wrap with `CKM_DES3_ECB`: refused on a live token; on a test
    /// token, the keys come from `C_Encrypt` and are encrypted on the host (said once).
    fn scp02_without_wrap(
        &self,
        secret: &HeldSecret,
        dek: CardDek<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let ac = secret.key();
        let why = format!(
            "token {} offers no C_WrapKey with CKM_DES3_ECB (CKF_WRAP), which SCP02 needs to \
             send DGI 8000 wrapped under the card's session DEK",
            self.token.label
        );
        if !self.file.test {
            return Err(KeyError::Store {
                key: ac,
                rule: format!("{why}; refused on a live token"),
            });
        }
        if !self.fallback_noted.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                token = %self.token.label,
                "{why}: test token, so DGI 8000 is encrypted on the host for SCP02 (docs/hsm.md)"
            );
        }
        let Some((derivation_index, option, pan, psn)) = secret.icc_master_key_inputs() else {
            return Err(rule(ac, "not the ICC master keys"));
        };
        let data = Zeroizing::new(
            emv_keys::icc_derivation_data(*option, pan.reveal(), &psn.to_string())
                .map_err(|e| rule(ac, format!("ICC master key derivation: {e}")))?,
        );
        let mut value = Zeroizing::new(Vec::with_capacity(48));
        for imk in imks(*derivation_index) {
            value.extend_from_slice(self.icc_mk(imk, &data)?.as_bytes());
        }
        self.host_fallbacks.fetch_add(1, Ordering::Relaxed);
        if let CardDek::Held(any) = dek {
            // The card's session DEK stays in the token: C_Encrypt (TDES-ECB) under it.
            let d = self.token_dek(any, ac)?;
            let out = self.crypt(Op::Encrypt, ac, d.handle, &Mechanism::Des3Ecb, &value)?;
            self.card_counters.note_dek_encryption();
            return Ok(out);
        }
        dek.encrypt_on_host(&value)
            .map(Zeroizing::new)
            .map_err(|e| rule(ac, format!("DGI 8000 encryption under the card's DEK: {e}")))
    }

    /// How many DGI 8000 values this store wrapped in the token (`C_WrapKey`), and how many it
    /// encrypted on the host (SCP02 on a test token without DES3 wrapping): for tests and logs.
    pub fn held_counts(&self) -> (u64, u64) {
        (
            self.wraps.load(Ordering::Relaxed),
            self.host_fallbacks.load(Ordering::Relaxed),
        )
    }
}

impl Pkcs11KeyStore {
    /// How many secret-key session objects (`CKA_TOKEN` false) the store's session still sees:
    /// zero once every derivation and wrap has returned (for tests).
    pub fn session_key_objects(&self) -> usize {
        let Ok(session) = self.token.session() else {
            return usize::MAX;
        };
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(false),
            ])
            .map_or(usize::MAX, |v| v.len())
    }

    /// How many of those session objects are readable: not sensitive or extractable. The
    /// card's GlobalPlatform keys are neither (for tests, while a card's keys are open).
    pub fn readable_session_key_objects(&self) -> usize {
        let Ok(session) = self.token.session() else {
            return usize::MAX;
        };
        let Ok(handles) = session.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(false),
        ]) else {
            return usize::MAX;
        };
        handles
            .into_iter()
            .filter(|h| {
                let wanted = [
                    cryptoki::object::AttributeType::Sensitive,
                    cryptoki::object::AttributeType::Extractable,
                ];
                session.get_attributes(*h, &wanted).map_or(true, |attrs| {
                    attrs.iter().any(|a| {
                        matches!(
                            a,
                            Attribute::Sensitive(false) | Attribute::Extractable(true)
                        )
                    })
                })
            })
            .count()
    }
}
