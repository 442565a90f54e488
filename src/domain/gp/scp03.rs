//! GlobalPlatform SCP03 (AES, GP Card Specification Amendment D), host side, S8 mode (8-byte
//! challenges, cryptograms and MACs).
//!
//! - KDF: NIST SP 800-108 counter mode with AES-CMAC; input
//!   `00 × 11 || const || 00 || L(2, bits) || i(1) || context`.
//! - Session keys (context = host challenge || card challenge): S-ENC from K-ENC (04), S-MAC (06)
//!   and S-RMAC (07) from K-MAC, as long as the static keys.
//! - Cryptograms: KDF with S-MAC, L = 64, const 00 (card) / 01 (host).
//! - Pseudo-random card challenge: KDF with K-ENC, const 02, L = 64, context = seq(3) || SD AID.
//! - C-MAC: AES-CMAC(S-MAC) over `chaining value || CLA|04 INS P1 P2 Lc+8 || data`; the first
//!   8 bytes are sent, all 16 chain (16 × 00 at EXTERNAL AUTHENTICATE).
//! - C-DEC: the encryption counter is incremented for every command after EXTERNAL AUTHENTICATE;
//!   data padded `80 00..`, AES-CBC with S-ENC and ICV = AES_S-ENC(counter as a 16-byte block);
//!   the C-MAC covers the ciphertext.
//! - R-MAC: AES-CMAC(S-RMAC) over `chaining value || data || SW`, first 8 bytes; only on `9000`
//!   and warning (62xx, 63xx) status words. R-ENC: ICV from the counter block with first byte 80.
//! - Sensitive data: the static K-DEK in AES-CBC with a zero IV (no session DEK in SCP03).

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::apdu::{CommandApdu, ResponseApdu, StatusWord};
use super::kdf::Kdd;
use super::{CryptogramResult, GpError, SecretKey, SecurityLevel, StaticKeys, array, field};
use crate::domain::crypto::{
    AES_BLOCK, aes_cbc_decrypt, aes_cbc_encrypt, aes_cmac, aes_ecb_encrypt, ct_eq, pad_iso7816,
    unpad_iso7816_len,
};
use crate::domain::mask::debug_fields;

/// KDF constant: card cryptogram.
pub const CONST_CARD_CRYPTOGRAM: u8 = 0x00;
/// KDF constant: host cryptogram.
pub const CONST_HOST_CRYPTOGRAM: u8 = 0x01;
/// KDF constant: pseudo-random card challenge.
pub const CONST_CARD_CHALLENGE: u8 = 0x02;
/// KDF constant: S-ENC.
pub const CONST_S_ENC: u8 = 0x04;
/// KDF constant: S-MAC.
pub const CONST_S_MAC: u8 = 0x06;
/// KDF constant: S-RMAC.
pub const CONST_S_RMAC: u8 = 0x07;

/// The SCP03 key derivation function; `l_bits` is the output length in bits (a multiple of 8).
pub fn kdf(
    key: &SecretKey,
    constant: u8,
    context: &[u8],
    l_bits: u16,
) -> Result<Zeroizing<Vec<u8>>, GpError> {
    let len = usize::from(l_bits / 8);
    let mut out = Zeroizing::new(Vec::with_capacity(len + 16));
    for input in kdf_inputs(constant, context, l_bits)? {
        let mut block = aes_cmac(key.as_bytes(), &input)?;
        out.extend_from_slice(&block);
        block.zeroize();
    }
    out.truncate(len);
    Ok(out)
}

/// The CMAC inputs of the SCP03 KDF, one per 16 output bytes:
/// `00 × 11 || const || 00 || L(2, bits) || i(1) || context` with `i` = 1, 2, … The KDF output
/// is the CMACs concatenated and cut to `l_bits` (a key store runs the CMACs on a key it holds).
pub fn kdf_inputs(
    constant: u8,
    context: &[u8],
    l_bits: u16,
) -> Result<Vec<Zeroizing<Vec<u8>>>, GpError> {
    let blocks = usize::from(l_bits / 8).div_ceil(16);
    if blocks > 255 {
        return Err(GpError::Unsupported(
            "SCP03 KDF output longer than 255 blocks",
        ));
    }
    let mut input = Zeroizing::new(Vec::with_capacity(16 + context.len()));
    input.extend_from_slice(&[0u8; 11]);
    input.push(constant);
    input.push(0x00);
    input.extend_from_slice(&l_bits.to_be_bytes());
    input.push(0x00); // counter, set below
    input.extend_from_slice(context);
    Ok((1..=blocks)
        .map(|counter| {
            let mut one = input.clone();
            one[15] = u8::try_from(counter).unwrap_or(u8::MAX);
            one
        })
        .collect())
}

/// The KDF context of the session keys and cryptograms: host challenge || card challenge.
pub fn challenge_context(host_challenge: &[u8; 8], card_challenge: &[u8; 8]) -> [u8; 16] {
    let mut context = [0u8; 16];
    context[..8].copy_from_slice(host_challenge);
    context[8..].copy_from_slice(card_challenge);
    context
}

/// The KDF context of the pseudo-random card challenge: sequence counter || SD AID.
pub fn card_challenge_context(sequence_counter: &[u8; 3], sd_aid: &[u8]) -> Vec<u8> {
    let mut context = Vec::with_capacity(3 + sd_aid.len());
    context.extend_from_slice(sequence_counter);
    context.extend_from_slice(sd_aid);
    context
}

/// The INITIALIZE UPDATE response of an SCP03 card in S8 mode (29 bytes, or 32 with the
/// sequence counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitUpdateResponse {
    /// Key diversification data.
    pub kdd: Kdd,
    /// Key version number.
    pub key_version: u8,
    /// The card's "i" parameter.
    pub i: u8,
    /// Card challenge.
    pub card_challenge: [u8; 8],
    /// Card cryptogram.
    pub card_cryptogram: [u8; 8],
    /// Sequence counter (present with a pseudo-random card challenge).
    pub sequence_counter: Option<[u8; 3]>,
}

impl InitUpdateResponse {
    /// Parses the response data; the protocol byte must be 03 and the mode S8.
    pub fn parse(data: &[u8]) -> Result<Self, GpError> {
        const WHAT: &str = "SCP03 INITIALIZE UPDATE response";
        if data.len() < 13 {
            return Err(GpError::Malformed {
                what: WHAT,
                reason: "shorter than 13 bytes",
            });
        }
        let [_, _, _, _, _, _, _, _, _, _, key_version, scp, i] = field::<13>(data, 0, WHAT)?;
        if scp != 0x03 {
            return Err(GpError::Malformed {
                what: WHAT,
                reason: "the card does not report SCP03",
            });
        }
        if i & 0x01 != 0 {
            return Err(GpError::Unsupported("SCP03 S16 mode (i bit 01)"));
        }
        let sequence_counter = match data.len() {
            29 => None,
            32 => Some(field::<3>(data, 29, WHAT)?),
            _ => {
                return Err(GpError::Malformed {
                    what: WHAT,
                    reason: "length is neither 29 nor 32 bytes",
                });
            }
        };
        Ok(Self {
            kdd: field(data, 0, WHAT)?,
            key_version,
            i,
            card_challenge: field(data, 13, WHAT)?,
            card_cryptogram: field(data, 21, WHAT)?,
            sequence_counter,
        })
    }
}

/// The card challenge a card with a pseudo-random challenge (i bit 10) must send:
/// `KDF(K-ENC, 02, seq || AID, 64)`.
pub fn pseudo_random_card_challenge(
    static_enc: &SecretKey,
    sequence_counter: &[u8; 3],
    sd_aid: &[u8],
) -> Result<[u8; 8], GpError> {
    let context = card_challenge_context(sequence_counter, sd_aid);
    let out = kdf(static_enc, CONST_CARD_CHALLENGE, &context, 64)?;
    array(&out, "card challenge")
}

/// The three SCP03 session keys.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    /// S-ENC.
    pub enc: SecretKey,
    /// S-MAC.
    pub mac: SecretKey,
    /// S-RMAC.
    pub rmac: SecretKey,
}

impl SessionKeys {
    /// Derives the session keys; the static keys must be AES keys.
    pub fn derive(
        keys: &StaticKeys,
        host_challenge: &[u8; 8],
        card_challenge: &[u8; 8],
    ) -> Result<Self, GpError> {
        let context = challenge_context(host_challenge, card_challenge);
        let derive = |key: &SecretKey, constant: u8| -> Result<SecretKey, GpError> {
            let bits = u16::try_from(key.len() * 8).unwrap_or(u16::MAX);
            SecretKey::new(&kdf(key, constant, &context, bits)?)
        };
        Ok(Self {
            enc: derive(&keys.enc, CONST_S_ENC)?,
            mac: derive(&keys.mac, CONST_S_MAC)?,
            rmac: derive(&keys.mac, CONST_S_RMAC)?,
        })
    }

    /// The card cryptogram (8 bytes), over the host challenge and the card challenge of the
    /// card's INITIALIZE UPDATE answer.
    pub fn card_cryptogram(&self, host: &[u8; 8], card: &InitUpdateResponse) -> CryptogramResult {
        self.cryptogram(CONST_CARD_CRYPTOGRAM, host, &card.card_challenge)
    }

    /// The host cryptogram (8 bytes).
    pub fn host_cryptogram(&self, host: &[u8; 8], card: &InitUpdateResponse) -> CryptogramResult {
        self.cryptogram(CONST_HOST_CRYPTOGRAM, host, &card.card_challenge)
    }

    fn cryptogram(
        &self,
        constant: u8,
        host_challenge: &[u8; 8],
        card_challenge: &[u8; 8],
    ) -> Result<[u8; 8], GpError> {
        let mut context = [0u8; 16];
        context[..8].copy_from_slice(host_challenge);
        context[8..].copy_from_slice(card_challenge);
        array(&kdf(&self.mac, constant, &context, 64)?, "cryptogram")
    }
}

/// Encrypts sensitive data with the static K-DEK in AES-CBC, zero IV; the length must already be
/// a multiple of 16.
pub fn encrypt_sensitive(static_dek: &SecretKey, data: &[u8]) -> Result<Vec<u8>, GpError> {
    let mut out = data.to_vec();
    if let Err(e) = aes_cbc_encrypt(static_dek.as_bytes(), &[0; 16], &mut out) {
        out.zeroize();
        return Err(e.into());
    }
    Ok(out)
}

/// An open SCP03 secure channel, host side: C-MAC chaining, C-DEC counter, R-MAC/R-ENC. See
/// [`super::scp02::Channel`] for why the two protocols keep a type each.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Channel {
    #[zeroize(skip)]
    keys: SessionKeys,
    #[zeroize(skip)]
    level: SecurityLevel,
    chaining: [u8; 16],
    counter: u128,
    authenticated: bool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "scp03::Channel",
            &[("level", &self.level), ("counter", &self.counter)],
        )
    }
}

impl Channel {
    /// Prepares a channel at the given security level.
    pub fn new(keys: SessionKeys, level: SecurityLevel) -> Self {
        Self {
            keys,
            level,
            chaining: [0; 16],
            counter: 0,
            authenticated: false,
        }
    }

    /// The security level in force after EXTERNAL AUTHENTICATE.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    /// EXTERNAL AUTHENTICATE `84 82 level 00 10 host-cryptogram C-MAC`, chaining from 16 × 00.
    pub fn external_authenticate(
        &mut self,
        host_cryptogram: &[u8; 8],
    ) -> Result<CommandApdu, GpError> {
        self.chaining = [0; 16];
        self.counter = 0;
        let plain = self.level.external_authenticate(host_cryptogram);
        let wrapped = self.mac_and_build(&plain, plain.data().to_vec())?;
        self.authenticated = true;
        Ok(wrapped)
    }

    /// Wraps a command (CLA 80 → 84): C-DEC when the level asks for it, then C-MAC.
    pub fn wrap(&mut self, command: &CommandApdu) -> Result<CommandApdu, GpError> {
        if !self.authenticated {
            return Err(GpError::Unsupported(
                "wrapping before EXTERNAL AUTHENTICATE",
            ));
        }
        let data = command.data();
        let max = self.level.max_plain_data();
        if data.len() > max {
            return Err(GpError::TooLong {
                len: data.len(),
                max,
            });
        }
        let mut body = data.to_vec();
        if self.level.c_dec() {
            self.counter = self.counter.wrapping_add(1);
            if !body.is_empty() {
                pad_iso7816(&mut body, AES_BLOCK);
                let mut icv = self.counter.to_be_bytes();
                let result = aes_ecb_encrypt(self.keys.enc.as_bytes(), &mut icv)
                    .and_then(|()| aes_cbc_encrypt(self.keys.enc.as_bytes(), &icv, &mut body));
                icv.zeroize();
                if let Err(e) = result {
                    body.zeroize();
                    return Err(e.into());
                }
            }
        }
        self.mac_and_build(command, body)
    }

    fn mac_and_build(
        &mut self,
        command: &CommandApdu,
        mut body: Vec<u8>,
    ) -> Result<CommandApdu, GpError> {
        let cla = command.cla | 0x04;
        let lc = body.len() + 8;
        let Ok(lc_byte) = u8::try_from(lc) else {
            body.zeroize();
            return Err(GpError::TooLong {
                len: command.data().len(),
                max: self.level.max_plain_data(),
            });
        };
        let mut mac_input = Zeroizing::new(Vec::with_capacity(21 + body.len()));
        mac_input.extend_from_slice(&self.chaining);
        mac_input.extend_from_slice(&[cla, command.ins, command.p1, command.p2, lc_byte]);
        mac_input.extend_from_slice(&body);
        let mac = match aes_cmac(self.keys.mac.as_bytes(), &mac_input) {
            Ok(mac) => mac,
            Err(e) => {
                body.zeroize();
                return Err(e.into());
            }
        };
        self.chaining = mac;
        body.extend_from_slice(&mac[..8]);
        let wrapped = CommandApdu::new(cla, command.ins, command.p1, command.p2, body, command.le)
            .map_err(|_| GpError::TooLong {
                len: command.data().len(),
                max: self.level.max_plain_data(),
            })?;
        Ok(if command.is_redacted() {
            wrapped.redact()
        } else {
            wrapped
        })
    }

    /// Checks the R-MAC (and removes R-ENC) of the response to the last wrapped command, as the
    /// level requires; returns the plain response data. Error status words carry no R-MAC and
    /// are returned unchanged (the caller reports the status word).
    pub fn unwrap(&self, response: &ResponseApdu) -> Result<Zeroizing<Vec<u8>>, GpError> {
        let data = response.data();
        if !self.level.r_mac() || !sw_carries_rmac(response.sw) {
            return Ok(Zeroizing::new(data.to_vec()));
        }
        let Some(split) = data.len().checked_sub(8) else {
            return Err(GpError::Malformed {
                what: "SCP03 response",
                reason: "missing R-MAC",
            });
        };
        let (body, rmac) = data.split_at(split);
        let mut mac_input = Zeroizing::new(Vec::with_capacity(18 + body.len()));
        mac_input.extend_from_slice(&self.chaining);
        mac_input.extend_from_slice(body);
        mac_input.extend_from_slice(&response.sw.to_u16().to_be_bytes());
        let expected = aes_cmac(self.keys.rmac.as_bytes(), &mac_input)?;
        if !ct_eq(&expected[..8], rmac) {
            return Err(GpError::RMacMismatch);
        }
        if !self.level.r_enc() || body.is_empty() {
            return Ok(Zeroizing::new(body.to_vec()));
        }
        let mut plain = Zeroizing::new(body.to_vec());
        let mut icv = self.counter.to_be_bytes();
        icv[0] = 0x80;
        let result = aes_ecb_encrypt(self.keys.enc.as_bytes(), &mut icv)
            .and_then(|()| aes_cbc_decrypt(self.keys.enc.as_bytes(), &icv, &mut plain))
            .and_then(|()| unpad_iso7816_len(&plain, AES_BLOCK));
        icv.zeroize();
        let len = result?;
        plain.truncate(len);
        Ok(plain)
    }
}

/// Whether the status word is one after which SCP03 responses carry an R-MAC.
pub fn sw_carries_rmac(sw: StatusWord) -> bool {
    sw.is_success() || matches!(sw.to_u16() >> 8, 0x62 | 0x63)
}
