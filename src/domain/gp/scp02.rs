//! GlobalPlatform SCP02 (TDES), host side, for the "i" values 05, 15, 45 and 55: explicit
//! initiation, three keys, C-MAC on the modified APDU, ICV zero for EXTERNAL AUTHENTICATE and then
//! the previous C-MAC, DES-encrypted with the left half of S-MAC when i has bit 10.
//!
//! - Session keys: `TDES-CBC_K(IV 0)[const(2) || seq(2) || 00 × 12]`, const 0182 S-ENC, 0101 C-MAC,
//!   0102 R-MAC, 0181 S-DEK.
//! - Cryptograms: full TDES CBC-MAC with S-ENC (ISO 9797-1 padding method 2, IV 0).
//! - C-MAC: ISO 9797-1 MAC algorithm 3 with C-MAC over `CLA|04 INS P1 P2 Lc+8 data`.
//! - C-DEC: after the MAC over the plain data, TDES-CBC with S-ENC, IV 0, `80 00..` padding.
//! - Sensitive data (DGIs, keys): TDES-ECB with the session DEK.

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::apdu::CommandApdu;
use super::kdf::Kdd;
use super::{CryptogramResult, GpError, SecretKey, SecurityLevel, StaticKeys, field};
use crate::domain::crypto::{
    DES_BLOCK, MacPadding, des_encrypt_block, pad_iso7816, retail_mac, tdes_cbc_encrypt,
    tdes_ecb_encrypt,
};
use crate::domain::mask::debug_fields;

/// Derivation constant of S-ENC.
pub const CONST_ENC: [u8; 2] = [0x01, 0x82];
/// Derivation constant of C-MAC.
pub const CONST_C_MAC: [u8; 2] = [0x01, 0x01];
/// Derivation constant of R-MAC.
pub const CONST_R_MAC: [u8; 2] = [0x01, 0x02];
/// Derivation constant of the session DEK.
pub const CONST_DEK: [u8; 2] = [0x01, 0x81];

/// The INITIALIZE UPDATE response of an SCP02 card (28 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitUpdateResponse {
    /// Key diversification data.
    pub kdd: Kdd,
    /// Key version number of the key set the card used.
    pub key_version: u8,
    /// Sequence counter.
    pub sequence_counter: [u8; 2],
    /// Card challenge.
    pub card_challenge: [u8; 6],
    /// Card cryptogram.
    pub card_cryptogram: [u8; 8],
}

impl InitUpdateResponse {
    /// Parses the 28-byte response data; the protocol byte must be 02.
    pub fn parse(data: &[u8]) -> Result<Self, GpError> {
        const WHAT: &str = "SCP02 INITIALIZE UPDATE response";
        if data.len() != 28 {
            return Err(GpError::Malformed {
                what: WHAT,
                reason: "length is not 28 bytes",
            });
        }
        let [_, _, _, _, _, _, _, _, _, _, key_version, scp] = field::<12>(data, 0, WHAT)?;
        if scp != 0x02 {
            return Err(GpError::Malformed {
                what: WHAT,
                reason: "the card does not report SCP02",
            });
        }
        Ok(Self {
            kdd: field(data, 0, WHAT)?,
            key_version,
            sequence_counter: field(data, 12, WHAT)?,
            card_challenge: field(data, 14, WHAT)?,
            card_cryptogram: field(data, 20, WHAT)?,
        })
    }
}

/// The SCP02 "i" parameter, restricted to the variants implemented here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scp02Variant {
    i: u8,
}

impl Scp02Variant {
    /// i = 15: explicit initiation, C-MAC on the modified APDU, ICV encryption, 3 keys.
    pub const I15: Self = Self { i: 0x15 };
    /// i = 55: as 15, with a well-known pseudo-random card challenge.
    pub const I55: Self = Self { i: 0x55 };

    /// Accepts 05, 15, 45 and 55; the other options (C-MAC on the unmodified APDU, ICV = MAC over
    /// the AID, R-MAC, implicit initiation, one key) are refused.
    pub fn new(i: u8) -> Result<Self, GpError> {
        if i & 0x01 == 0 {
            return Err(GpError::Unsupported(
                "SCP02 with a single key (i bit 01 clear)",
            ));
        }
        if i & 0x02 != 0 {
            return Err(GpError::Unsupported(
                "SCP02 C-MAC on the unmodified APDU (i bit 02)",
            ));
        }
        if i & 0x04 == 0 {
            return Err(GpError::Unsupported(
                "SCP02 implicit initiation (i bit 04 clear)",
            ));
        }
        if i & 0x08 != 0 {
            return Err(GpError::Unsupported("SCP02 ICV = MAC over AID (i bit 08)"));
        }
        if i & 0x20 != 0 {
            return Err(GpError::Unsupported("SCP02 R-MAC (i bit 20)"));
        }
        if i & 0x80 != 0 {
            return Err(GpError::Unsupported("SCP02 i bit 80 (RFU)"));
        }
        Ok(Self { i })
    }

    /// The raw "i" value.
    pub fn i(self) -> u8 {
        self.i
    }

    /// Whether the ICV is DES-encrypted before each C-MAC after the first.
    pub fn icv_encryption(self) -> bool {
        self.i & 0x10 != 0
    }
}

/// The block an SCP02 session key is derived from: `const || seq || 00 × 12`.
pub fn derivation_data(constant: [u8; 2], sequence_counter: [u8; 2]) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..2].copy_from_slice(&constant);
    block[2..4].copy_from_slice(&sequence_counter);
    block
}

/// Derives one SCP02 session key: `TDES-CBC_K(IV 0)[const || seq || 00 × 12]`.
pub fn derive_session_key(
    static_key: &SecretKey,
    constant: [u8; 2],
    sequence_counter: [u8; 2],
) -> Result<SecretKey, GpError> {
    if static_key.len() != 16 {
        return Err(GpError::KeyLength {
            what: "an SCP02 static key",
            expected: "16 bytes (2-key TDES)",
            got: static_key.len(),
        });
    }
    let mut block = derivation_data(constant, sequence_counter);
    let key = tdes_cbc_encrypt(static_key.as_bytes(), &[0; 8], &mut block)
        .map_err(GpError::from)
        .and_then(|()| SecretKey::new(&block));
    block.zeroize();
    key
}

/// The four SCP02 session keys of one secure channel session.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    /// S-ENC: cryptograms and C-DEC.
    pub enc: SecretKey,
    /// C-MAC key.
    pub c_mac: SecretKey,
    /// R-MAC key.
    pub r_mac: SecretKey,
    /// Session DEK: sensitive data.
    pub dek: SecretKey,
}

impl SessionKeys {
    /// Derives the session keys from the static keys and the card's sequence counter.
    pub fn derive(keys: &StaticKeys, sequence_counter: [u8; 2]) -> Result<Self, GpError> {
        Ok(Self {
            enc: derive_session_key(&keys.enc, CONST_ENC, sequence_counter)?,
            c_mac: derive_session_key(&keys.mac, CONST_C_MAC, sequence_counter)?,
            r_mac: derive_session_key(&keys.mac, CONST_R_MAC, sequence_counter)?,
            dek: derive_session_key(&keys.dek, CONST_DEK, sequence_counter)?,
        })
    }

    /// Encrypts sensitive data (a DGI value, a key) with the session DEK in TDES-ECB; the length
    /// must already be a multiple of 8.
    pub fn encrypt_sensitive(&self, data: &[u8]) -> Result<Vec<u8>, GpError> {
        encrypt_with_session_dek(&self.dek, data)
    }
}

/// The session keys a channel uses: S-ENC, C-MAC and R-MAC. The session DEK is not among them:
/// it stays with the card's keys ([`crate::domain::keystore::CardKeySet`]), in a key store that
/// holds it.
#[derive(Clone, Debug)]
pub struct ChannelKeys {
    /// S-ENC: cryptograms and C-DEC.
    pub enc: SecretKey,
    /// C-MAC key.
    pub c_mac: SecretKey,
    /// R-MAC key.
    pub r_mac: SecretKey,
}

impl From<SessionKeys> for ChannelKeys {
    fn from(keys: SessionKeys) -> Self {
        let SessionKeys {
            enc, c_mac, r_mac, ..
        } = keys;
        Self { enc, c_mac, r_mac }
    }
}

impl ChannelKeys {
    /// The card cryptogram: MAC over `host challenge || seq || card challenge` (the sequence
    /// counter and card challenge of the card's INITIALIZE UPDATE answer).
    pub fn card_cryptogram(&self, host: &[u8; 8], card: &InitUpdateResponse) -> CryptogramResult {
        enc_mac(
            &self.enc,
            [host, &card.sequence_counter, &card.card_challenge],
        )
    }

    /// The host cryptogram: MAC over `seq || card challenge || host challenge`.
    pub fn host_cryptogram(&self, host: &[u8; 8], card: &InitUpdateResponse) -> CryptogramResult {
        enc_mac(
            &self.enc,
            [&card.sequence_counter, &card.card_challenge, host],
        )
    }
}

/// The full triple-DES MAC under S-ENC of the 16 bytes `parts` make (8 + 2 + 6 in the order a
/// cryptogram names them).
fn enc_mac(enc: &SecretKey, parts: [&[u8]; 3]) -> Result<[u8; 8], GpError> {
    let mut data = [0u8; 16];
    let mut at = 0;
    for part in parts {
        data[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    full_tdes_mac(enc, &data)
}

/// Sensitive data (keys, PIN blocks) encrypted with an SCP02 session DEK: TDES-ECB, as
/// [`SessionKeys::encrypt_sensitive`] does (also used by key stores at STORE DATA).
pub fn encrypt_with_session_dek(dek: &SecretKey, data: &[u8]) -> Result<Vec<u8>, GpError> {
    let mut out = data.to_vec();
    if let Err(e) = tdes_ecb_encrypt(dek.as_bytes(), &mut out) {
        out.zeroize();
        return Err(e.into());
    }
    Ok(out)
}

/// Full TDES CBC-MAC (IV 0, padding method 2): the last ciphertext block.
fn full_tdes_mac(key: &SecretKey, data: &[u8]) -> Result<[u8; 8], GpError> {
    let mut buf = data.to_vec();
    pad_iso7816(&mut buf, DES_BLOCK);
    let result = tdes_cbc_encrypt(key.as_bytes(), &[0; 8], &mut buf)
        .map_err(GpError::from)
        .and_then(|()| field::<8>(&buf, buf.len().saturating_sub(8), "MAC"));
    buf.zeroize();
    result
}

/// An open SCP02 secure channel, host side: wraps commands with C-MAC (and C-DEC).
///
/// A type of its own beside [`super::scp03::Channel`]: the two protocols share no cryptography
/// (TDES retail MAC with an ICV vs AES-CMAC with a chaining value and a counter) and SCP02 has no
/// R-MAC/R-ENC. The session holds either one behind its private `SecureChannel` enum; the virtual
/// card's side is `sim::card::channel::CardChannel`, written independently.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Channel {
    #[zeroize(skip)]
    keys: ChannelKeys,
    #[zeroize(skip)]
    variant: Scp02Variant,
    #[zeroize(skip)]
    level: SecurityLevel,
    icv: Option<[u8; 8]>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "scp02::Channel",
            &[("variant", &self.variant), ("level", &self.level)],
        )
    }
}

impl Channel {
    /// Prepares a channel; only C-MAC and C-MAC + C-DEC levels are supported for SCP02.
    pub fn new(
        keys: impl Into<ChannelKeys>,
        variant: Scp02Variant,
        level: SecurityLevel,
    ) -> Result<Self, GpError> {
        if level.r_mac() || level.r_enc() {
            return Err(GpError::Unsupported("SCP02 R-MAC / R-ENC security levels"));
        }
        Ok(Self {
            keys: keys.into(),
            variant,
            level,
            icv: None,
        })
    }

    /// The session keys of the channel.
    pub fn keys(&self) -> &ChannelKeys {
        &self.keys
    }

    /// The security level in force after EXTERNAL AUTHENTICATE.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    /// EXTERNAL AUTHENTICATE `84 82 level 00 10 host-cryptogram C-MAC` (ICV zero). Restarts the
    /// MAC chain.
    pub fn external_authenticate(
        &mut self,
        host_cryptogram: &[u8; 8],
    ) -> Result<CommandApdu, GpError> {
        self.icv = None;
        let plain = self.level.external_authenticate(host_cryptogram);
        self.wrap_inner(&plain, false)
    }

    /// Wraps a command (CLA 80 → 84) with C-MAC, and C-DEC when the level asks for it.
    pub fn wrap(&mut self, command: &CommandApdu) -> Result<CommandApdu, GpError> {
        if self.icv.is_none() {
            return Err(GpError::Unsupported(
                "wrapping before EXTERNAL AUTHENTICATE",
            ));
        }
        self.wrap_inner(command, self.level.c_dec())
    }

    fn wrap_inner(&mut self, command: &CommandApdu, encrypt: bool) -> Result<CommandApdu, GpError> {
        let data = command.data();
        let max = if encrypt { 239 } else { 247 };
        if data.len() > max {
            return Err(GpError::TooLong {
                len: data.len(),
                max,
            });
        }
        let mut icv = match self.icv {
            None => [0u8; 8],
            Some(previous) if self.variant.icv_encryption() => {
                let mut block = previous;
                let left = self.keys.c_mac.as_bytes().get(..8).unwrap_or_default();
                des_encrypt_block(left, &mut block)?;
                block
            }
            Some(previous) => previous,
        };
        let cla = command.cla | 0x04;
        let mut mac_input = Vec::with_capacity(5 + data.len());
        mac_input.extend_from_slice(&[cla, command.ins, command.p1, command.p2]);
        mac_input.push(u8::try_from(data.len() + 8).unwrap_or(u8::MAX));
        mac_input.extend_from_slice(data);
        let mac = retail_mac(
            self.keys.c_mac.as_bytes(),
            &icv,
            &mac_input,
            MacPadding::Method2,
        );
        mac_input.zeroize();
        icv.zeroize();
        let mac = mac?;
        self.icv = Some(mac);

        let mut body = data.to_vec();
        if encrypt && !body.is_empty() {
            pad_iso7816(&mut body, DES_BLOCK);
            if let Err(e) = tdes_cbc_encrypt(self.keys.enc.as_bytes(), &[0; 8], &mut body) {
                body.zeroize();
                return Err(e.into());
            }
        }
        body.extend_from_slice(&mac);
        let len = body.len();
        let wrapped = CommandApdu::new(cla, command.ins, command.p1, command.p2, body, command.le)
            .map_err(|_| GpError::TooLong { len, max })?;
        Ok(if command.is_redacted() {
            wrapped.redact()
        } else {
            wrapped
        })
    }
}
