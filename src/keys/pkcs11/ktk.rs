//! DGI 8010 under the bureau transport key `ktk/<n>` (AES, `CKA_WRAP` + `CKA_UNWRAP`): the
//! reference PIN block is prepared before the card is known, so it is held wrapped until STORE
//! DATA, where the token translates it to the card's DEK (docs/hsm.md).
//!
//! - Preparation: the block built from the PIN the token recovered, followed by its ISO/IEC
//!   7816-4 padding (`80 00..`, 16 bytes: the same for the 8-byte TDES and 16-byte AES block),
//!   becomes a session object (`C_CreateObject`, `CKK_GENERIC_SECRET`, sensitive), is wrapped
//!   under the ktk (`C_WrapKey`, `CKM_AES_KEY_WRAP_PAD`) and destroyed: the clear block was in
//!   host memory only inside that call.
//! - STORE DATA: `C_UnwrapKey` under the ktk gives a sensitive session object again; SCP03
//!   wraps it under the card's DEK (`CKM_AES_CBC`, IV 0: the session's AES-CBC over the padded
//!   16 bytes); SCP02 with `CKM_DES3_ECB` (its first 8 bytes for an unpadded DGI). SoftHSM2
//!   2.6.1 cannot wrap with DES3: on a test token the value is unwrapped readable inside this
//!   one call and encrypted with `C_Encrypt` under the card's DEK object (zeroized); a live
//!   token refuses.
//! - No ktk on the token: a test token keeps the clear block (as before); a live token refuses
//!   the reference PIN block, naming `ktk` (fail closed).

use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use super::Pkcs11KeyStore;
use super::held::SessionObjects;
use crate::domain::chip::keys::ReferencePinBlock;
use crate::domain::crypto::pad_iso7816;
use crate::domain::keystore::{CardDek, HeldSecret, KeyError, KeyRef, KeyUsage};

/// What the store did with values under its ktk (for tests and logs).
#[derive(Debug, Default)]
pub(super) struct KtkCounters {
    held: AtomicU64,
    in_token: AtomicU64,
    on_host: AtomicU64,
}

/// Counts of values under a ktk: wrapped at preparation, translated to a card's DEK in the
/// token, and (SCP02 on a test token without DES3 wrapping) encrypted through host memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KtkUse {
    /// Wrapped under the ktk at preparation (`C_WrapKey`).
    pub held: u64,
    /// Unwrapped and wrapped under the card's DEK in the token at STORE DATA.
    pub in_token: u64,
    /// Unwrapped readable and encrypted with `C_Encrypt` (the SCP02 test-token fallback).
    pub on_host: u64,
}

/// The padded form of a value the token holds: `value ‖ 80 00..` to 16 bytes.
const HELD_LEN: usize = 16;

fn rule(key: KeyRef, rule: impl Into<String>) -> KeyError {
    KeyError::Rule {
        key,
        rule: rule.into(),
    }
}

/// A secret-key template for a transient generic secret (never `CKA_TOKEN`), sensitive unless
/// `readable` (the test-token fallback), extractable only so it can be wrapped.
fn generic_template(readable: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(!readable),
        Attribute::Extractable(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]
}

impl Pkcs11KeyStore {
    /// The ktk with the lowest index, if the token holds one.
    fn ktk(&self) -> Option<KeyRef> {
        self.infos
            .keys()
            .find(|k| k.usage == KeyUsage::Ktk)
            .copied()
    }

    /// The reference PIN block as the port returns it: wrapped under the ktk, clear on a test
    /// token without one, refused on a live token without one. `block` is zeroized on drop.
    pub(super) fn hold_pin_block(
        &self,
        block: Zeroizing<[u8; 8]>,
    ) -> Result<ReferencePinBlock, KeyError> {
        let Some(ktk) = self.ktk() else {
            if self.file.test {
                return Ok(ReferencePinBlock::Clear(block));
            }
            return Err(KeyError::Store {
                key: KeyRef::new(KeyUsage::Ktk, 1),
                rule: format!(
                    "token {} holds no bureau transport key (label ktk/<n>, AES, CKA_WRAP and \
                     CKA_UNWRAP): a live token keeps the reference PIN block (DGI 8010) only \
                     wrapped under it until STORE DATA",
                    self.token.label
                ),
            });
        };
        let h = self.object(ktk)?.handle;
        let session = self.token.session().map_err(|e| Self::tok_err(ktk, e))?;
        let mut value = Zeroizing::new(block.to_vec());
        pad_iso7816(&mut value, HELD_LEN);
        let mut template = generic_template(false);
        template.push(Attribute::Value(value.to_vec()));
        let made = session.create_object(&template);
        for a in template.iter_mut() {
            if let Attribute::Value(v) = a {
                v.zeroize();
            }
        }
        let obj = made.map_err(|e| self.store_err(ktk, &e))?;
        let objects = SessionObjects::new(&session, vec![obj]);
        let blob = session
            .wrap_key(&Mechanism::AesKeyWrapPad, h, obj)
            .map_err(|e| self.store_err(ktk, &e))?;
        drop(objects);
        self.ktk_counters.held.fetch_add(1, Ordering::Relaxed);
        Ok(ReferencePinBlock::Held(HeldSecret::Wrapped {
            ktk_index: ktk.index,
            blob,
            len: block.len(),
            pad: false,
        }))
    }

    /// STORE DATA: a value wrapped under a ktk, encrypted under the card's DEK as the session
    /// encrypts a clear sensitive DGI (padded as `pad` says), translated in the token.
    pub(super) fn wrapped_for_card(
        &self,
        secret: &HeldSecret,
        dek: CardDek<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let HeldSecret::Wrapped {
            ktk_index,
            blob,
            len,
            pad,
        } = secret
        else {
            return Err(rule(secret.key(), "not a value wrapped under a ktk"));
        };
        let ktk = KeyRef::new(KeyUsage::Ktk, *ktk_index);
        let sent = if *pad { HELD_LEN } else { *len };
        let aes = match dek {
            CardDek::Scp02Session(_) => false,
            CardDek::Scp03Static(_) => true,
            CardDek::Held(any) => self.token_dek(any, ktk)?.aes,
        };
        if aes && !sent.is_multiple_of(16) {
            return Err(rule(
                ktk,
                format!("a {sent}-byte DGI cannot be AES-CBC encrypted: set pad = true"),
            ));
        }
        if !aes && !self.token.can_wrap(MechanismType::DES3_ECB) {
            return self.scp02_wrapped_without_wrap(ktk, blob, sent, dek);
        }
        let h = self.object(ktk)?.handle;
        let session = self.token.session().map_err(|e| Self::tok_err(ktk, e))?;
        let mut objects = SessionObjects::new(&session, Vec::with_capacity(2));
        let value = self.unwrap_held(&session, h, blob, false, ktk)?;
        objects.handles.push(value);
        let wrapping = match dek {
            CardDek::Held(any) => self.token_dek(any, ktk)?.handle,
            CardDek::Scp02Session(k) | CardDek::Scp03Static(k) => {
                let w = self.wrapping_key(&session, k, aes, ktk)?;
                objects.handles.push(w);
                w
            }
        };
        let m = if aes {
            Mechanism::AesCbc([0; 16])
        } else {
            Mechanism::Des3Ecb
        };
        let mut out = Zeroizing::new(
            session
                .wrap_key(&m, wrapping, value)
                .map_err(|e| self.store_err(ktk, &e))?,
        );
        if out.len() != HELD_LEN {
            return Err(rule(ktk, "the token's wrapped DGI is not 16 bytes"));
        }
        out.truncate(sent);
        self.ktk_counters.in_token.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// `C_UnwrapKey` of a blob under the ktk: a generic secret session object of 16 bytes.
    fn unwrap_held(
        &self,
        session: &Session,
        ktk: ObjectHandle,
        blob: &[u8],
        readable: bool,
        key: KeyRef,
    ) -> Result<ObjectHandle, KeyError> {
        session
            .unwrap_key(
                &Mechanism::AesKeyWrapPad,
                ktk,
                blob,
                &generic_template(readable),
            )
            .map_err(|e| self.store_err(key, &e))
    }

    /// SCP02 on a token that cannot wrap with `CKM_DES3_ECB`: refused on a live token; on a test
    /// token the value is unwrapped readable inside this call and encrypted with `C_Encrypt`
    /// under the card's DEK object (on the host for a host DEK), zeroized.
    fn scp02_wrapped_without_wrap(
        &self,
        ktk: KeyRef,
        blob: &[u8],
        sent: usize,
        dek: CardDek<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if !self.file.test {
            return Err(KeyError::Store {
                key: ktk,
                rule: format!(
                    "token {} offers no C_WrapKey with CKM_DES3_ECB (CKF_WRAP), which SCP02 needs \
                     to send a DGI held under {} to the card's session DEK; refused on a live \
                     token",
                    self.token.label,
                    super::label(ktk)
                ),
            });
        }
        let h = self.object(ktk)?.handle;
        let session = self.token.session().map_err(|e| Self::tok_err(ktk, e))?;
        let obj = self.unwrap_held(&session, h, blob, true, ktk)?;
        let objects = SessionObjects::new(&session, vec![obj]);
        let read = session.get_attributes(obj, &[AttributeType::Value]);
        drop(objects);
        let mut value = Zeroizing::new(Vec::new());
        for a in read.map_err(|e| self.store_err(ktk, &e))? {
            if let Attribute::Value(mut v) = a {
                value.extend_from_slice(&v);
                v.zeroize();
            }
        }
        if value.len() != HELD_LEN {
            return Err(rule(ktk, "the unwrapped DGI is not 16 bytes"));
        }
        value.truncate(sent);
        self.ktk_counters.on_host.fetch_add(1, Ordering::Relaxed);
        if let CardDek::Held(any) = dek {
            let d = self.token_dek(any, ktk)?;
            let out = session
                .encrypt(&Mechanism::Des3Ecb, d.handle, &value)
                .map(Zeroizing::new)
                .map_err(|e| self.store_err(ktk, &e))?;
            self.card_counters.note_dek_encryption();
            return Ok(out);
        }
        dek.encrypt_on_host(&value)
            .map(Zeroizing::new)
            .map_err(|e| rule(ktk, format!("encryption under the card's DEK: {e}")))
    }

    /// What the store did with values under its ktk (for tests and logs).
    pub fn ktk_use(&self) -> KtkUse {
        let c = &self.ktk_counters;
        KtkUse {
            held: c.held.load(Ordering::Relaxed),
            in_token: c.in_token.load(Ordering::Relaxed),
            on_host: c.on_host.load(Ordering::Relaxed),
        }
    }
}
