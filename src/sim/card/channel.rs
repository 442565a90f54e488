//! The card side of the GlobalPlatform secure channels, written from GP 2.2 Amendment D (SCP03),
//! GP 2.2 Annex E (SCP02) and EMV CPS 1.1 (key diversification) — independently of the host's
//! `domain::gp` (only the block-cipher primitives of `domain::crypto` are shared).
//!
//! - static keys: the card's own ENC/MAC/DEK, or diversified from the KMC it was given with its
//!   KDD (EMV CPS 1.1, VISA2 or the AES "kdf3" method);
//! - SCP02 i=15/55: session keys from the sequence counter, full TDES card/host cryptograms,
//!   retail C-MAC with ICV chaining (ICV encrypted under the left half of S-MAC), C-DEC in TDES-CBC;
//! - SCP03 i=00/10/70: NIST SP 800-108 KDF with AES-CMAC, pseudo-random card challenge when i has
//!   bit 10, C-MAC chaining, C-DEC with the counter ICV, R-MAC (and R-ENC) on responses.

use zeroize::{Zeroize, Zeroizing};

use crate::domain::crypto::{
    self, AES_BLOCK, DES_BLOCK, MacPadding, aes_cbc_decrypt, aes_cbc_encrypt, aes_cmac,
    aes_ecb_encrypt, ct_eq, des_encrypt_block, pad_iso7816, retail_mac, tdes_cbc_decrypt,
    tdes_cbc_encrypt, tdes_ecb_decrypt, unpad_iso7816_len,
};

/// Status words the card side uses.
pub mod sw {
    /// Success.
    pub const OK: u16 = 0x9000;
    /// Authentication of the host cryptogram failed.
    pub const AUTH_FAILED: u16 = 0x6300;
    /// Wrong length.
    pub const WRONG_LENGTH: u16 = 0x6700;
    /// Security status not satisfied (bad or missing C-MAC, no secure channel).
    pub const SECURITY: u16 = 0x6982;
    /// Authentication method blocked (PIN try limit reached).
    pub const BLOCKED: u16 = 0x6983;
    /// Conditions of use not satisfied (wrong command order, already personalized).
    pub const CONDITIONS: u16 = 0x6985;
    /// Incorrect data.
    pub const WRONG_DATA: u16 = 0x6A80;
    /// Function not supported.
    pub const FUNCTION: u16 = 0x6A81;
    /// File or application not found.
    pub const NOT_FOUND: u16 = 0x6A82;
    /// Record not found.
    pub const RECORD_NOT_FOUND: u16 = 0x6A83;
    /// Incorrect P1 P2 (wrong STORE DATA sequence number).
    pub const WRONG_P1P2: u16 = 0x6A86;
    /// Referenced data not found (unknown key version, unknown GET DATA tag).
    pub const REF_NOT_FOUND: u16 = 0x6A88;
    /// Instruction not supported.
    pub const INS: u16 = 0x6D00;
    /// Class not supported.
    pub const CLA: u16 = 0x6E00;
    /// No precise diagnosis (an internal computation failed).
    pub const UNKNOWN: u16 = 0x6F00;
}

/// How the card's static keys are obtained.
#[derive(Clone)]
pub enum CardKeySource {
    /// Fixed ENC, MAC and DEK.
    Static {
        /// K-ENC.
        enc: Zeroizing<Vec<u8>>,
        /// K-MAC.
        mac: Zeroizing<Vec<u8>>,
        /// K-DEK.
        dek: Zeroizing<Vec<u8>>,
    },
    /// Diversified from a KMC with the card's KDD.
    Kmc {
        /// The master key.
        kmc: Zeroizing<Vec<u8>>,
        /// The diversification method.
        method: KmcMethod,
    },
}

impl std::fmt::Debug for CardKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static { .. } => f.write_str("CardKeySource::Static(<redacted>)"),
            Self::Kmc { method, .. } => write!(f, "CardKeySource::Kmc(<redacted>, {method:?})"),
        }
    }
}

/// Key diversification methods the card knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmcMethod {
    /// EMV CPS 1.1: KDD bytes 4..10.
    EmvCps11,
    /// VISA2: KDD bytes 0, 1, 4, 5, 6, 7.
    Visa2,
    /// AES counter-mode KDF over the whole KDD (GPPro "kdf3").
    Kdf3,
}

/// The card's three static keys.
pub struct Keys {
    pub(crate) enc: Zeroizing<Vec<u8>>,
    pub(crate) mac: Zeroizing<Vec<u8>>,
    pub(crate) dek: Zeroizing<Vec<u8>>,
}

impl CardKeySource {
    /// The static keys for a card with this KDD.
    pub fn keys(&self, kdd: &[u8; 10]) -> Result<Keys, u16> {
        match self {
            Self::Static { enc, mac, dek } => Ok(Keys {
                enc: enc.clone(),
                mac: mac.clone(),
                dek: dek.clone(),
            }),
            Self::Kmc { kmc, method } => Ok(Keys {
                enc: diversify(kmc, kdd, 1, *method)?,
                mac: diversify(kmc, kdd, 2, *method)?,
                dek: diversify(kmc, kdd, 3, *method)?,
            }),
        }
    }
}

fn diversify(
    kmc: &[u8],
    kdd: &[u8; 10],
    k: u8,
    method: KmcMethod,
) -> Result<Zeroizing<Vec<u8>>, u16> {
    let err = |_| sw::UNKNOWN;
    match method {
        KmcMethod::EmvCps11 | KmcMethod::Visa2 => {
            let six: [u8; 6] = if method == KmcMethod::EmvCps11 {
                [kdd[4], kdd[5], kdd[6], kdd[7], kdd[8], kdd[9]]
            } else {
                [kdd[0], kdd[1], kdd[4], kdd[5], kdd[6], kdd[7]]
            };
            let mut out = Zeroizing::new(Vec::with_capacity(16));
            out.extend_from_slice(&six);
            out.extend_from_slice(&[0xF0, k]);
            out.extend_from_slice(&six);
            out.extend_from_slice(&[0x0F, k]);
            crypto::tdes_ecb_encrypt(kmc, &mut out).map_err(err)?;
            Ok(out)
        }
        KmcMethod::Kdf3 => {
            // SP 800-108 counter mode: [i] || 00 00 00 || k || 00 || KDD.
            let mut out = Zeroizing::new(Vec::with_capacity(kmc.len()));
            let mut counter = 1u8;
            while out.len() < kmc.len() {
                let mut input = [0u8; 16];
                input[0] = counter;
                input[4] = k;
                input[6..].copy_from_slice(kdd);
                let block = Zeroizing::new(aes_cmac(kmc, &input).map_err(err)?);
                let take = (kmc.len() - out.len()).min(16);
                out.extend_from_slice(&block[..take]);
                counter = counter.wrapping_add(1);
            }
            Ok(out)
        }
    }
}

/// SCP03 KDF (GP Amd D §4.1.5): `L` bits from `key` with the derivation constant and context.
pub fn scp03_kdf(
    key: &[u8],
    constant: u8,
    bits: u16,
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, u16> {
    let len = usize::from(bits / 8);
    let mut out = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut counter = 1u8;
    while out.len() < len {
        let mut input = Zeroizing::new(Vec::with_capacity(16 + context.len()));
        input.extend_from_slice(&[0u8; 11]);
        input.push(constant);
        input.push(0x00);
        input.extend_from_slice(&bits.to_be_bytes());
        input.push(counter);
        input.extend_from_slice(context);
        let block = Zeroizing::new(aes_cmac(key, &input).map_err(|_| sw::UNKNOWN)?);
        out.extend_from_slice(&block[..]);
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Ok(out)
}

/// The protocol the card runs, with its "i".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardProtocol {
    /// SCP02 (i = 15 or 55).
    Scp02 {
        /// "i".
        i: u8,
    },
    /// SCP03 (i = 00, 10 or 70).
    Scp03 {
        /// "i".
        i: u8,
    },
}

/// The card's half of a secure channel in progress: after INITIALIZE UPDATE (awaiting EXTERNAL
/// AUTHENTICATE) or open. One type for both protocols, and deliberately not the host's
/// `gp::scp02::Channel` / `gp::scp03::Channel`: the virtual card checks the host's session
/// against an independent implementation, never against its own code.
pub struct CardChannel {
    protocol: CardProtocol,
    s_enc: Zeroizing<Vec<u8>>,
    s_mac: Zeroizing<Vec<u8>>,
    s_rmac: Zeroizing<Vec<u8>>,
    /// SCP02 session DEK; SCP03 uses the static DEK (kept here too).
    dek: Zeroizing<Vec<u8>>,
    host_challenge: [u8; 8],
    /// SCP02: seq(2) || card challenge(6); SCP03: card challenge(8).
    card_part: [u8; 8],
    /// The security level once EXTERNAL AUTHENTICATE succeeded.
    level: Option<u8>,
    /// SCP02: the last C-MAC (8); SCP03: the MAC chaining value (16).
    chain: [u8; 16],
    counter: u128,
}

impl Drop for CardChannel {
    fn drop(&mut self) {
        self.chain.zeroize();
    }
}

/// What INITIALIZE UPDATE answers, and the channel waiting for EXTERNAL AUTHENTICATE.
pub struct Opened {
    /// The response data (without SW).
    pub response: Vec<u8>,
    /// The channel.
    pub channel: CardChannel,
}

impl Opened {
    /// The answer `response` and a channel of `input`'s protocol and host challenge with the
    /// session keys `[S-ENC, S-MAC, S-RMAC, DEK]` and the card part, not yet authenticated.
    fn new(
        response: Vec<u8>,
        input: &InitInput<'_>,
        keys: [Zeroizing<Vec<u8>>; 4],
        card_part: [u8; 8],
    ) -> Self {
        let [s_enc, s_mac, s_rmac, dek] = keys;
        let channel = CardChannel {
            protocol: input.protocol,
            s_enc,
            s_mac,
            s_rmac,
            dek,
            host_challenge: input.host_challenge,
            card_part,
            level: None,
            chain: [0; 16],
            counter: 0,
        };
        Self { response, channel }
    }
}

/// Inputs of INITIALIZE UPDATE on the card side.
pub struct InitInput<'a> {
    /// Protocol and "i".
    pub protocol: CardProtocol,
    /// The card's static keys.
    pub keys: &'a Keys,
    /// KDD (10 bytes).
    pub kdd: &'a [u8; 10],
    /// Key version number.
    pub kvn: u8,
    /// The sequence counter (SCP02 uses 2 bytes, SCP03 3 bytes).
    pub sequence: u32,
    /// The host challenge.
    pub host_challenge: [u8; 8],
    /// The random part of the card challenge (used when the protocol does not make it
    /// pseudo-random).
    pub random: [u8; 8],
    /// The AID of the selected security domain or application (SCP03 pseudo-random challenge).
    pub selected_aid: &'a [u8],
}

fn tdes_full_mac(key: &[u8], data: &[u8]) -> Result<[u8; 8], u16> {
    let mut buf = Zeroizing::new(data.to_vec());
    pad_iso7816(&mut buf, DES_BLOCK);
    tdes_cbc_encrypt(key, &[0; 8], &mut buf).map_err(|_| sw::UNKNOWN)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&buf[buf.len() - 8..]);
    Ok(out)
}

fn scp02_session_key(
    key: &[u8],
    constant: [u8; 2],
    seq: [u8; 2],
) -> Result<Zeroizing<Vec<u8>>, u16> {
    let mut block = Zeroizing::new(vec![0u8; 16]);
    block[..2].copy_from_slice(&constant);
    block[2..4].copy_from_slice(&seq);
    tdes_cbc_encrypt(key, &[0; 8], &mut block).map_err(|_| sw::UNKNOWN)?;
    Ok(block)
}

impl CardChannel {
    /// INITIALIZE UPDATE on the card side.
    pub fn initialize(input: &InitInput<'_>) -> Result<Opened, u16> {
        let mut response = Vec::with_capacity(32);
        response.extend_from_slice(input.kdd);
        response.push(input.kvn);
        match input.protocol {
            CardProtocol::Scp02 { i } => {
                let all = input.sequence.to_be_bytes();
                let seq = [all[2], all[3]];
                let k = input.keys;
                let s_enc = scp02_session_key(&k.enc, [0x01, 0x82], seq)?;
                let s_mac = scp02_session_key(&k.mac, [0x01, 0x01], seq)?;
                let s_rmac = scp02_session_key(&k.mac, [0x01, 0x02], seq)?;
                let dek = scp02_session_key(&k.dek, [0x01, 0x81], seq)?;
                let mut card_challenge = [0u8; 6];
                if i & 0x40 != 0 {
                    // Pseudo-random: the first 6 bytes of a MAC over the selected AID with
                    // S-ENC (GP 2.2 E.4.2.1); the host does not check it.
                    let mac = tdes_full_mac(&s_enc, input.selected_aid)?;
                    card_challenge.copy_from_slice(&mac[..6]);
                } else {
                    card_challenge.copy_from_slice(&input.random[..6]);
                }
                let mut card_part = [0u8; 8];
                card_part[..2].copy_from_slice(&seq);
                card_part[2..].copy_from_slice(&card_challenge);
                let mut crypto_in = Vec::with_capacity(16);
                crypto_in.extend_from_slice(&input.host_challenge);
                crypto_in.extend_from_slice(&card_part);
                let card_cryptogram = tdes_full_mac(&s_enc, &crypto_in)?;
                response.push(0x02);
                response.extend_from_slice(&card_part);
                response.extend_from_slice(&card_cryptogram);
                let keys = [s_enc, s_mac, s_rmac, dek];
                Ok(Opened::new(response, input, keys, card_part))
            }
            CardProtocol::Scp03 { i } => {
                let k = input.keys;
                let seq = input.sequence.to_be_bytes();
                let seq3 = [seq[1], seq[2], seq[3]];
                let mut card_challenge = [0u8; 8];
                if i & 0x10 != 0 {
                    let mut ctx = Vec::with_capacity(3 + input.selected_aid.len());
                    ctx.extend_from_slice(&seq3);
                    ctx.extend_from_slice(input.selected_aid);
                    let c = scp03_kdf(&k.enc, 0x02, 64, &ctx)?;
                    card_challenge.copy_from_slice(&c);
                } else {
                    card_challenge = input.random;
                }
                let mut ctx = [0u8; 16];
                ctx[..8].copy_from_slice(&input.host_challenge);
                ctx[8..].copy_from_slice(&card_challenge);
                let bits = u16::try_from(k.enc.len() * 8).map_err(|_| sw::UNKNOWN)?;
                let s_enc = scp03_kdf(&k.enc, 0x04, bits, &ctx)?;
                let s_mac = scp03_kdf(&k.mac, 0x06, bits, &ctx)?;
                let s_rmac = scp03_kdf(&k.mac, 0x07, bits, &ctx)?;
                let card_cryptogram = scp03_kdf(&s_mac, 0x00, 64, &ctx)?;
                response.push(0x03);
                response.push(i);
                response.extend_from_slice(&card_challenge);
                response.extend_from_slice(&card_cryptogram);
                if i & 0x10 != 0 {
                    response.extend_from_slice(&seq3);
                }
                let keys = [s_enc, s_mac, s_rmac, k.dek.clone()];
                Ok(Opened::new(response, input, keys, card_challenge))
            }
        }
    }

    /// Whether EXTERNAL AUTHENTICATE succeeded.
    pub fn is_open(&self) -> bool {
        self.level.is_some()
    }

    /// The security level fixed by EXTERNAL AUTHENTICATE (`None` before it).
    pub fn level(&self) -> Option<u8> {
        self.level
    }

    /// Whether the security level asks for C-DEC.
    fn c_dec(&self) -> bool {
        self.level.is_some_and(|l| l & 0x02 != 0)
    }

    fn levels_allowed(&self, level: u8) -> bool {
        match self.protocol {
            // 00 (no secure messaging after the authentication) is a valid level (GP 2.3 §E.5.2,
            // Amendment D §7.1.2).
            CardProtocol::Scp02 { .. } => matches!(level, 0x00 | 0x01 | 0x03),
            CardProtocol::Scp03 { i } => match level {
                0x00 | 0x01 | 0x03 => true,
                0x11 | 0x13 => i & 0x20 != 0,
                0x33 => i & 0x60 == 0x60,
                _ => false,
            },
        }
    }

    /// EXTERNAL AUTHENTICATE `84 82 level 00 10 host-cryptogram C-MAC`; returns the SW.
    pub fn external_authenticate(&mut self, apdu: &[u8]) -> u16 {
        let [cla, ins, level, p2, lc, data @ ..] = apdu else {
            return sw::WRONG_LENGTH;
        };
        if *lc != 0x10 || data.len() < 16 {
            return sw::WRONG_LENGTH;
        }
        if *cla != 0x84 {
            return sw::SECURITY;
        }
        if !self.levels_allowed(*level) || *p2 != 0 {
            return sw::WRONG_P1P2;
        }
        let (host_cryptogram, mac) = (&data[..8], &data[8..16]);
        let expected = match self.protocol {
            CardProtocol::Scp02 { .. } => {
                let mut input = Vec::with_capacity(16);
                input.extend_from_slice(&self.card_part);
                input.extend_from_slice(&self.host_challenge);
                tdes_full_mac(&self.s_enc, &input).map(|m| m.to_vec())
            }
            CardProtocol::Scp03 { .. } => {
                let mut ctx = [0u8; 16];
                ctx[..8].copy_from_slice(&self.host_challenge);
                ctx[8..].copy_from_slice(&self.card_part);
                scp03_kdf(&self.s_mac, 0x01, 64, &ctx).map(|m| m.to_vec())
            }
        };
        let Ok(expected) = expected else {
            return sw::UNKNOWN;
        };
        if !ct_eq(&expected, host_cryptogram) {
            return sw::AUTH_FAILED;
        }
        let header = [*cla, *ins, *level, *p2, *lc];
        self.chain = [0; 16];
        if !self.check_mac(&header, host_cryptogram, mac) {
            return sw::SECURITY;
        }
        self.level = Some(*level);
        sw::OK
    }

    /// Verifies a C-MAC over `header || data` and advances the chain.
    fn check_mac(&mut self, header: &[u8; 5], data: &[u8], mac: &[u8]) -> bool {
        match self.protocol {
            CardProtocol::Scp02 { i } => {
                let mut icv = [0u8; 8];
                icv.copy_from_slice(&self.chain[..8]);
                if self.level.is_some() && i & 0x10 != 0 {
                    let left = self.s_mac.get(..8).unwrap_or_default();
                    if des_encrypt_block(left, &mut icv).is_err() {
                        return false;
                    }
                }
                let mut input = Zeroizing::new(Vec::with_capacity(5 + data.len()));
                input.extend_from_slice(header);
                input.extend_from_slice(data);
                let Ok(computed) = retail_mac(&self.s_mac, &icv, &input, MacPadding::Method2)
                else {
                    return false;
                };
                if !ct_eq(&computed, mac) {
                    return false;
                }
                self.chain = [0; 16];
                self.chain[..8].copy_from_slice(&computed);
                true
            }
            CardProtocol::Scp03 { .. } => {
                let mut input = Zeroizing::new(Vec::with_capacity(21 + data.len()));
                input.extend_from_slice(&self.chain);
                input.extend_from_slice(header);
                input.extend_from_slice(data);
                let Ok(computed) = aes_cmac(&self.s_mac, &input) else {
                    return false;
                };
                if !ct_eq(&computed[..8], mac) {
                    return false;
                }
                self.chain = computed;
                true
            }
        }
    }

    /// Unwraps a command inside the open channel: checks the C-MAC (and decrypts with C-DEC).
    /// Returns the plain data field, or the status word to answer (the caller closes the
    /// channel on error).
    pub fn unwrap(&mut self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, u16> {
        let [cla, ins, p1, p2, rest @ ..] = apdu else {
            return Err(sw::WRONG_LENGTH);
        };
        if self.level == Some(0x00) && cla & 0x04 == 0 {
            // Security level 00: commands travel plain.
            let data = match rest {
                [lc, body @ ..] if !body.is_empty() => body.get(..usize::from(*lc)).unwrap_or(body),
                _ => &[],
            };
            return Ok(Zeroizing::new(data.to_vec()));
        }
        if cla & 0x04 == 0 {
            return Err(sw::SECURITY);
        }
        let (lc, body) = match rest {
            [lc, body @ ..] => (*lc, body),
            [] => return Err(sw::SECURITY),
        };
        let body = body.get(..usize::from(lc)).ok_or(sw::WRONG_LENGTH)?;
        let Some(split) = body.len().checked_sub(8) else {
            return Err(sw::SECURITY);
        };
        let (data, mac) = body.split_at(split);
        match self.protocol {
            CardProtocol::Scp02 { .. } => {
                // C-DEC first (the MAC covers the plain data with Lc = plain + 8).
                let mut plain = Zeroizing::new(data.to_vec());
                if self.c_dec() && !plain.is_empty() {
                    tdes_cbc_decrypt(&self.s_enc, &[0; 8], &mut plain).map_err(|_| sw::SECURITY)?;
                    let len = unpad_iso7816_len(&plain, DES_BLOCK).map_err(|_| sw::SECURITY)?;
                    plain.truncate(len);
                }
                let lc = u8::try_from(plain.len() + 8).map_err(|_| sw::WRONG_LENGTH)?;
                if !self.check_mac(&[*cla, *ins, *p1, *p2, lc], &plain, mac) {
                    return Err(sw::SECURITY);
                }
                Ok(plain)
            }
            CardProtocol::Scp03 { .. } => {
                if !self.check_mac(&[*cla, *ins, *p1, *p2, lc], data, mac) {
                    return Err(sw::SECURITY);
                }
                let mut plain = Zeroizing::new(data.to_vec());
                if self.c_dec() {
                    self.counter = self.counter.wrapping_add(1);
                    if !plain.is_empty() {
                        let mut icv = self.counter.to_be_bytes();
                        aes_ecb_encrypt(&self.s_enc, &mut icv).map_err(|_| sw::UNKNOWN)?;
                        aes_cbc_decrypt(&self.s_enc, &icv, &mut plain).map_err(|_| sw::SECURITY)?;
                        let len = unpad_iso7816_len(&plain, AES_BLOCK).map_err(|_| sw::SECURITY)?;
                        plain.truncate(len);
                    }
                }
                Ok(plain)
            }
        }
    }

    /// Wraps a response inside the channel: SCP03 R-ENC and R-MAC when the level asks for them.
    pub fn wrap_response(&self, data: &[u8], status: u16) -> Vec<u8> {
        let level = self.level.unwrap_or(0);
        let carries = status == sw::OK || matches!(status >> 8, 0x62 | 0x63);
        let mut out = data.to_vec();
        if !matches!(self.protocol, CardProtocol::Scp03 { .. }) || level & 0x10 == 0 || !carries {
            out.extend_from_slice(&status.to_be_bytes());
            return out;
        }
        if level & 0x20 != 0 && !out.is_empty() {
            let mut icv = self.counter.to_be_bytes();
            icv[0] = 0x80;
            pad_iso7816(&mut out, AES_BLOCK);
            let ok = aes_ecb_encrypt(&self.s_enc, &mut icv)
                .and_then(|()| aes_cbc_encrypt(&self.s_enc, &icv, &mut out));
            if ok.is_err() {
                return sw::UNKNOWN.to_be_bytes().to_vec();
            }
        }
        let mut input = Vec::with_capacity(18 + out.len());
        input.extend_from_slice(&self.chain);
        input.extend_from_slice(&out);
        input.extend_from_slice(&status.to_be_bytes());
        match aes_cmac(&self.s_rmac, &input) {
            Ok(rmac) => out.extend_from_slice(&rmac[..8]),
            Err(_) => return sw::UNKNOWN.to_be_bytes().to_vec(),
        }
        out.extend_from_slice(&status.to_be_bytes());
        out
    }

    /// Decrypts a sensitive DGI value with the DEK: SCP02 session DEK in TDES-ECB, SCP03 static
    /// DEK in AES-CBC with a zero ICV.
    pub fn decrypt_sensitive(&self, value: &mut [u8]) -> Result<(), u16> {
        match self.protocol {
            CardProtocol::Scp02 { .. } => tdes_ecb_decrypt(&self.dek, value),
            CardProtocol::Scp03 { .. } => aes_cbc_decrypt(&self.dek, &[0; 16], value),
        }
        .map_err(|_| sw::WRONG_DATA)
    }
}
