//! The key store ports on the token: every step with a long-lived key is a `C_Encrypt`,
//! `C_Decrypt` or `C_Sign` in the token; host memory sees only inputs, per-card results and the
//! clear data the ports return (docs/hsm.md lists them).

use super::Op;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use zeroize::Zeroizing;

use super::{ObjectKind, Pkcs11KeyStore, label};
use crate::domain::chip::ChipKcvs;
use crate::domain::chip::keys::{
    ChipKeys, IccMasterKeySet, IccMasterKeyValue, IssuerOda, ReferencePinBlock,
};
use crate::domain::crypto::{self, MacPadding};
use crate::domain::decimal::{decimalise, pack_bcd};
use crate::domain::emv_keys::{self, DesKey16, MkdOption};
use crate::domain::envelope::{
    EnvelopeError, EnvelopeKeyError, EnvelopeKeys, EnvelopeSettings, MAC_KEY_LEN, Sealed,
};
use crate::domain::fields::{Cvv, Pan, Pin, PinBlockFormat, Psn, Pvv};
use crate::domain::gp::kdf::{Diversification, Kdd};
use crate::domain::keystore::{
    CardDek, CardKeySet, CardKeyStore, HeldSecret, KeyError, KeyInfo, KeyRef, KeyStore, KeyUsage,
    PinBlockRef,
};
use crate::domain::oda::CaPublicKey;
use crate::domain::pinblock;

fn rule(key: KeyRef, rule: impl Into<String>) -> KeyError {
    KeyError::Rule {
        key,
        rule: rule.into(),
    }
}

impl Pkcs11KeyStore {
    /// A TDES object (2- or 3-key) of `key`.
    pub(super) fn tdes(&self, key: KeyRef) -> Result<ObjectHandle, KeyError> {
        let o = self.object(key)?;
        match o.kind {
            ObjectKind::Des2 | ObjectKind::Des3 => Ok(o.handle),
            other => Err(KeyError::WrongAlgorithm {
                key,
                found: kind_name(other),
                needed: "tdes",
            }),
        }
    }

    fn aes(&self, key: KeyRef) -> Result<ObjectHandle, KeyError> {
        let o = self.object(key)?;
        match o.kind {
            ObjectKind::Aes(_) => Ok(o.handle),
            other => Err(KeyError::WrongAlgorithm {
                key,
                found: kind_name(other),
                needed: "aes",
            }),
        }
    }

    /// The clear PIN of an order's PIN block, deciphered in the token.
    fn clear_pin(&self, pin: PinBlockRef<'_>, pan: &Pan) -> Result<Pin, KeyError> {
        let key = pin.key;
        let block = pin.block.bytes();
        let pb = |source| KeyError::PinBlock { key, source };
        match pin.format {
            PinBlockFormat::Iso0 | PinBlockFormat::Iso0Tk => {
                let h = self.tdes(key)?;
                let clear = self.crypt(Op::Decrypt, key, h, &Mechanism::Des3Ecb, block)?;
                let clear: [u8; 8] = clear
                    .as_slice()
                    .try_into()
                    .map_err(|_| rule(key, "an ISO 0 PIN block is 8 bytes"))?;
                let clear = Zeroizing::new(clear);
                pinblock::iso0_decode(&clear, pan).map_err(pb)
            }
            PinBlockFormat::Iso4 => {
                let h = self.aes(key)?;
                let mut b = self.crypt(Op::Decrypt, key, h, &Mechanism::AesEcb, block)?;
                for (x, p) in b.iter_mut().zip(pinblock::iso4_pan_field(pan)) {
                    *x ^= p;
                }
                let field = self.crypt(Op::Decrypt, key, h, &Mechanism::AesEcb, &b)?;
                let field: [u8; 16] = field
                    .as_slice()
                    .try_into()
                    .map_err(|_| rule(key, "an ISO 4 PIN block is 16 bytes"))?;
                let field = Zeroizing::new(field);
                pinblock::iso4_decode(&field).map_err(pb)
            }
        }
    }

    fn issuer(&self, oda_index: u32) -> Result<&(IssuerOda, CaPublicKey), KeyError> {
        let key = KeyRef::new(KeyUsage::IssuerRsa, oda_index);
        self.object(key)?;
        self.issuers.get(&oda_index).ok_or_else(|| {
            rule(
                key,
                format!(
                    "{} has no [[issuer]] entry in {} (certificate, CA)",
                    label(key),
                    self.source
                ),
            )
        })
    }

    /// IMKs without `CKA_DERIVE` on a test token (warned at load; a live token is refused
    /// there): the ICC master keys are computed with `C_Encrypt` in the token and come to host
    /// memory (zeroizing), DGI 8000 in clear as the software store gives it.
    fn clear_icc_master_keys(
        &self,
        derivation_index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccMasterKeySet, KeyError> {
        let ac = KeyRef::new(KeyUsage::ImkAc, derivation_index);
        if !self.file.test {
            return Err(rule(
                ac,
                "has CKA_DERIVE false: refused on a live token (test = false)",
            ));
        }
        let data = Zeroizing::new(
            emv_keys::icc_derivation_data(option, pan.reveal(), &psn.to_string())
                .map_err(|e| rule(ac, format!("ICC master key derivation: {e}")))?,
        );
        let mks = [KeyUsage::ImkAc, KeyUsage::ImkSmi, KeyUsage::ImkSmc]
            .map(|u| self.icc_mk(KeyRef::new(u, derivation_index), &data));
        let [mk_ac, mk_smi, mk_smc] = mks;
        let (mk_ac, mk_smi, mk_smc) = (mk_ac?, mk_smi?, mk_smc?);
        let kcv = |k: &DesKey16| k.kcv().map_err(|e| rule(ac, e.to_string()));
        let kcvs = ChipKcvs {
            ac: kcv(&mk_ac)?,
            smi: kcv(&mk_smi)?,
            smc: kcv(&mk_smc)?,
        };
        let mut value = Zeroizing::new([0u8; 48]);
        value[..16].copy_from_slice(mk_ac.as_bytes());
        value[16..32].copy_from_slice(mk_smi.as_bytes());
        value[32..].copy_from_slice(mk_smc.as_bytes());
        Ok(IccMasterKeySet {
            value: IccMasterKeyValue::Clear(value),
            kcvs,
        })
    }

    /// One ICC master key: TDES-ECB of the derivation data under the IMK, in the token.
    pub(super) fn icc_mk(&self, imk: KeyRef, data: &[u8; 16]) -> Result<DesKey16, KeyError> {
        let h = self.tdes(imk)?;
        let mut v = self.crypt(Op::Encrypt, imk, h, &Mechanism::Des3Ecb, data)?;
        crypto::adjust_odd_parity(&mut v);
        DesKey16::from_slice(&v).map_err(|e| rule(imk, e.to_string()))
    }
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Des => "des",
        ObjectKind::Des2 | ObjectKind::Des3 => "tdes",
        ObjectKind::Aes(_) => "aes",
        ObjectKind::Rsa => "rsa",
        ObjectKind::Generic(_) => "generic secret",
        ObjectKind::EcP256 => "ec-p256",
    }
}

/// The Visa CVV input blocks (conventions: PAN ‖ expiry ‖ service code, `0`-padded to 32
/// digits, BCD).
fn cvv_blocks(pan: &Pan, exp: &str, service_code: &str) -> Zeroizing<[u8; 16]> {
    let mut digits = Zeroizing::new([b'0'; 32]);
    let input = pan
        .reveal()
        .bytes()
        .chain(exp.bytes())
        .chain(service_code.bytes());
    for (d, s) in digits.iter_mut().zip(input) {
        *d = s;
    }
    let mut blocks = Zeroizing::new([0u8; 16]);
    pack_bcd(digits.as_ref(), blocks.as_mut());
    blocks
}

impl KeyStore for Pkcs11KeyStore {
    fn info(&self, key: KeyRef) -> Result<KeyInfo, KeyError> {
        self.infos
            .get(&key)
            .cloned()
            .ok_or_else(|| KeyError::NotOnToken {
                label: label(key),
                token: self.token.label.clone(),
            })
    }

    fn visa_cvv(
        &self,
        cvk: KeyRef,
        pan: &Pan,
        exp: &str,
        service_code: &str,
    ) -> Result<Cvv, KeyError> {
        self.info(cvk)?;
        let [(a, ma), _] = self.cvk_halves(cvk).map_err(|_| {
            rule(
                cvk,
                format!(
                    "the Visa CVV needs the single-DES halves {0}/a and {0}/b on the token \
                     (no PKCS#11 mechanism runs single DES with half of a 2-key object)",
                    label(cvk)
                ),
            )
        })?;
        let blocks = cvv_blocks(pan, exp, service_code);
        let r = self.crypt(Op::Encrypt, cvk, a, &ma, &blocks[..8])?;
        let mut x = Zeroizing::new([0u8; 8]);
        for ((o, r), b) in x.iter_mut().zip(r.iter()).zip(&blocks[8..]) {
            *o = r ^ b;
        }
        self.cvk_tdes(cvk, &mut x)?;
        Cvv::from_ascii(decimalise::<3>(x.as_ref())).ok_or_else(|| rule(cvk, "CVV decimalisation"))
    }

    fn visa_pvv(
        &self,
        pvk: KeyRef,
        pvki: u8,
        pan: &Pan,
        pin: PinBlockRef<'_>,
    ) -> Result<Pvv, KeyError> {
        let h = self.tdes(pvk)?;
        let clear = self.clear_pin(pin, pan)?;
        let p = pan.reveal().as_bytes();
        let end = p.len() - 1;
        if end < 11 {
            return Err(rule(pvk, "the PAN is too short for a PVV"));
        }
        let mut tsp = Zeroizing::new([0u8; 16]);
        tsp[..11].copy_from_slice(&p[end - 11..end]);
        tsp[11] = b'0' + (pvki % 10);
        tsp[12..].copy_from_slice(&clear.reveal().as_bytes()[..4]);
        let mut block = Zeroizing::new([0u8; 8]);
        pack_bcd(tsp.as_ref(), block.as_mut());
        let c = self.crypt(Op::Encrypt, pvk, h, &Mechanism::Des3Ecb, block.as_ref())?;
        Pvv::from_ascii(decimalise::<4>(&c)).ok_or_else(|| rule(pvk, "PVV decimalisation"))
    }
}

impl ChipKeys for Pkcs11KeyStore {
    /// Derives the keys in the token (session objects) for their KCVs only: the value stays
    /// held until STORE DATA, where the token derives them again and wraps them under the card's
    /// DEK ([`CardKeyStore::held_secret_for_card`]). The keys never reach host memory here,
    /// except for IMKs without `CKA_DERIVE` on a test token (`clear_icc_master_keys`).
    fn icc_master_keys(
        &self,
        derivation_index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccMasterKeySet, KeyError> {
        if !self.imks_derive(derivation_index)? {
            return self.clear_icc_master_keys(derivation_index, option, pan, psn);
        }
        let kcvs = self.held_icc_master_kcvs(derivation_index, option, pan, psn)?;
        Ok(IccMasterKeySet {
            value: IccMasterKeyValue::Held(HeldSecret::IccMasterKeys {
                derivation_index,
                option,
                pan: pan.clone(),
                psn,
            }),
            kcvs,
        })
    }

    fn reference_pin_block(
        &self,
        pin: PinBlockRef<'_>,
        pan: &Pan,
        control: u8,
    ) -> Result<ReferencePinBlock, KeyError> {
        let clear = self.clear_pin(pin, pan)?;
        self.hold_pin_block(pinblock::pin_field_fill_f(&clear, control))
    }

    fn random_reference_pin_block(
        &self,
        digits: u8,
        control: u8,
    ) -> Result<ReferencePinBlock, KeyError> {
        let key = KeyRef::new(KeyUsage::Zpk, 0);
        let session = self.token.session().map_err(|e| Self::tok_err(key, e))?;
        let pin = pinblock::random_pin(digits, |buf| session.generate_random_slice(buf))
            .map_err(|e| self.store_err(key, &e))?
            .map_err(|r| rule(key, r))?;
        drop(session);
        self.hold_pin_block(pinblock::pin_field_fill_f(&pin, control))
    }

    fn ca_public_key(&self, rid: [u8; 5], index: u8) -> Option<CaPublicKey> {
        self.issuers
            .values()
            .map(|(_, ca)| ca)
            .find(|c| c.rid == rid && c.index == index)
            .cloned()
    }

    fn issuer_oda(&self, oda_index: u32) -> Result<IssuerOda, KeyError> {
        Ok(self.issuer(oda_index)?.0.clone())
    }

    fn issuer_sign_raw(&self, oda_index: u32, block: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = KeyRef::new(KeyUsage::IssuerRsa, oda_index);
        self.issuer(oda_index)?;
        let h = self.object(key)?.handle;
        Ok(self
            .crypt(Op::Sign, key, h, &Mechanism::RsaX509, block)?
            .to_vec())
    }
}

impl Pkcs11KeyStore {
    /// The MAC over `plain` with the MAC key wrapped under the KEK. The MAC key is deciphered by
    /// the token (`macKey` is ECB-wrapped, a form SoftHSM2's `C_UnwrapKey` does not take) and
    /// used on the host: a per-envelope key, zeroized when this returns.
    fn envelope_mac(
        &self,
        kek: KeyRef,
        h: ObjectHandle,
        aes: bool,
        wrapped: &[u8],
        plain: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeKeyError> {
        let ecb = if aes {
            Mechanism::AesEcb
        } else {
            Mechanism::Des3Ecb
        };
        let mac_key = self.crypt(Op::Decrypt, kek, h, &ecb, wrapped)?;
        let bad = EnvelopeError::Kek;
        Ok(Zeroizing::new(if aes {
            crypto::aes_cmac(&mac_key, plain).map_err(bad)?.to_vec()
        } else {
            crypto::retail_mac(&mac_key, &[0; 8], plain, MacPadding::Method2)
                .map_err(bad)?
                .to_vec()
        }))
    }

    fn kek(&self, kek: KeyRef) -> Result<(ObjectHandle, bool), KeyError> {
        let o = self.object(kek)?;
        match o.kind {
            ObjectKind::Aes(_) => Ok((o.handle, true)),
            ObjectKind::Des2 | ObjectKind::Des3 => Ok((o.handle, false)),
            other => Err(KeyError::WrongAlgorithm {
                key: kek,
                found: kind_name(other),
                needed: "aes or tdes",
            }),
        }
    }
}

impl EnvelopeKeys for Pkcs11KeyStore {
    fn open_envelope(
        &self,
        kek: KeyRef,
        wrapped_mac_key: &[u8],
        tlv_data: &[u8],
        mac: &[u8],
        settings: EnvelopeSettings,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeKeyError> {
        let (h, aes) = self.kek(kek)?;
        if wrapped_mac_key.len() != MAC_KEY_LEN {
            return Err(EnvelopeError::MacKeyLength(wrapped_mac_key.len()).into());
        }
        let block = if aes { 16 } else { 8 };
        if tlv_data.is_empty() || !tlv_data.len().is_multiple_of(block) {
            return Err(EnvelopeError::CiphertextLength {
                len: tlv_data.len(),
                block,
            }
            .into());
        }
        let mech = if aes {
            Mechanism::AesCbc([0; 16])
        } else {
            Mechanism::Des3Cbc([0; 8])
        };
        let mut plain = self.crypt(Op::Decrypt, kek, h, &mech, tlv_data)?;
        let len = crypto::unpad_iso7816_len(&plain, block).map_err(|_| EnvelopeError::Padding)?;
        plain.truncate(len);
        let want = settings.mac_len.clamp(4, if aes { 16 } else { 8 });
        if mac.len() != want {
            return Err(EnvelopeError::MacLength {
                expected: want,
                got: mac.len(),
            }
            .into());
        }
        let computed = self.envelope_mac(kek, h, aes, wrapped_mac_key, &plain)?;
        if !crypto::ct_eq(&computed[..want], mac) {
            return Err(EnvelopeError::MacMismatch.into());
        }
        Ok(plain)
    }

    fn seal_envelope(
        &self,
        kek: KeyRef,
        mac_key: &[u8; MAC_KEY_LEN],
        plaintext: &[u8],
        settings: EnvelopeSettings,
    ) -> Result<Sealed, EnvelopeKeyError> {
        let (h, aes) = self.kek(kek)?;
        let (ecb, cbc, block) = if aes {
            (Mechanism::AesEcb, Mechanism::AesCbc([0; 16]), 16)
        } else {
            (Mechanism::Des3Ecb, Mechanism::Des3Cbc([0; 8]), 8)
        };
        let wrapped = self.crypt(Op::Encrypt, kek, h, &ecb, mac_key)?;
        let mut data = Zeroizing::new(plaintext.to_vec());
        crypto::pad_iso7816(&mut data, block);
        let tlv = self.crypt(Op::Encrypt, kek, h, &cbc, &data)?;
        let bad = |e| EnvelopeError::Kek(e);
        let (mac, max) = if aes {
            (
                crypto::aes_cmac(mac_key, plaintext).map_err(bad)?.to_vec(),
                16,
            )
        } else {
            let m = crypto::retail_mac(mac_key, &[0; 8], plaintext, MacPadding::Method2);
            (m.map_err(bad)?.to_vec(), 8)
        };
        let want = settings.mac_len.clamp(4, max);
        Ok(Sealed {
            mac_key: wrapped.to_vec(),
            tlv_data: tlv.to_vec(),
            mac: mac[..want].to_vec(),
        })
    }
}

impl CardKeyStore for Pkcs11KeyStore {
    fn inventory(&self) -> Vec<KeyInfo> {
        self.list()
    }

    /// The card's static keys derived in the token as session objects of their own session
    /// (`card_session.rs`); they never come out, and are destroyed when the set drops. A KMC
    /// without `CKA_DERIVE`: on a test token only, diversified through host memory
    /// (`card_no_derive.rs`).
    fn open_card_keys(
        &self,
        kmc_index: u32,
        method: Diversification,
        kdd: &Kdd,
    ) -> Result<Box<dyn CardKeySet>, KeyError> {
        let kmc = KeyRef::new(KeyUsage::Kmc, kmc_index);
        if !self.object(kmc)?.derive {
            return self.card_keys_without_derive(kmc, method, kdd);
        }
        Ok(Box::new(self.token_card_keys(kmc_index, method, kdd)?))
    }

    fn ca_public_keys(&self) -> Vec<CaPublicKey> {
        let mut out: Vec<CaPublicKey> = Vec::new();
        for (_, ca) in self.issuers.values() {
            if !out.contains(ca) {
                out.push(ca.clone());
            }
        }
        out
    }

    fn arqc_master_key(
        &self,
        imk_index: u32,
        option: MkdOption,
        pan: &Pan,
        psn: Psn,
    ) -> Result<DesKey16, KeyError> {
        let imk = KeyRef::new(KeyUsage::ImkAc, imk_index);
        let data = Zeroizing::new(
            emv_keys::icc_derivation_data(option, pan.reveal(), &psn.to_string())
                .map_err(|e| rule(imk, format!("ICC master key derivation: {e}")))?,
        );
        self.icc_mk(imk, &data)
    }

    fn held_secret_for_card(
        &self,
        secret: &HeldSecret,
        dek: CardDek<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.held_for_card(secret, dek)
    }
}
