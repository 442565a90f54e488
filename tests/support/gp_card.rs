//! The tiny test card of `tests/gp_vectors.rs`: a minimal security domain (SELECT, INITIALIZE
//! UPDATE, EXTERNAL AUTHENTICATE, INSTALL, STORE DATA) that computes its side of SCP02 and SCP03
//! (session keys, cryptograms, C-MAC checks, C-DEC, R-MAC) with the shared primitives of
//! `domain::crypto` only, never with the `gp` module, so that a bug in one side cannot hide
//! itself in the other. Declared by gp_vectors.rs as `#[path = "support/gp_card.rs"] mod gp_card;`.

use super::*;

fn card_scp02_session_key(static_key: &[u8], constant: [u8; 2], seq: [u8; 2]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[..2].copy_from_slice(&constant);
    b[2..4].copy_from_slice(&seq);
    tdes_cbc_encrypt(static_key, &[0; 8], &mut b).expect("card tdes");
    b
}

fn card_tdes_mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    b.push(0x80);
    while !b.len().is_multiple_of(8) {
        b.push(0);
    }
    tdes_cbc_encrypt(key, &[0; 8], &mut b).expect("card tdes");
    b[b.len() - 8..].to_vec()
}

fn card_kdf(key: &[u8], constant: u8, context: &[u8], bits: u16) -> Vec<u8> {
    let mut out = vec![];
    let mut i = 1u8;
    while out.len() < usize::from(bits / 8) {
        let mut input = vec![0u8; 11];
        input.extend_from_slice(&[constant, 0x00]);
        input.extend_from_slice(&bits.to_be_bytes());
        input.push(i);
        input.extend_from_slice(context);
        out.extend_from_slice(&aes_cmac(key, &input).expect("card cmac"));
        i += 1;
    }
    out.truncate(usize::from(bits / 8));
    out
}

#[derive(Clone)]
pub enum CardScp {
    Two {
        seq: [u8; 2],
        challenge: [u8; 6],
        icv_encryption: bool,
    },
    Three {
        i: u8,
        seq: [u8; 3],
        challenge: [u8; 8],
    },
}

/// A minimal security domain: SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, INSTALL and
/// STORE DATA, checking every C-MAC and undoing C-DEC; records what it received.
pub struct TestCard {
    pub scp: CardScp,
    pub enc: Vec<u8>,
    pub mac: Vec<u8>,
    pub dek: Vec<u8>,
    pub kdd: [u8; 10],
    pub kvn: u8,
    // session state
    pub host_challenge: Vec<u8>,
    pub s_enc: Vec<u8>,
    pub s_mac: Vec<u8>,
    pub s_rmac: Vec<u8>,
    pub s_dek: Vec<u8>,
    pub level: u8,
    pub chain: Option<Vec<u8>>,
    pub counter: u128,
    // records
    pub selected: Vec<Vec<u8>>,
    pub installs: Vec<Vec<u8>>,
    pub store_data: Vec<(u8, u8, Vec<u8>)>,
    pub init_update_response: Vec<u8>,
    // fault injection: (INS, n-th command with that INS, SW)
    pub fail: Option<(u8, usize, u16)>,
    pub seen: Vec<u8>,
    pub corrupt_rmac: bool,
}

impl TestCard {
    pub fn new(scp: CardScp, enc: &[u8], mac: &[u8], dek: &[u8], kdd: [u8; 10], kvn: u8) -> Self {
        Self {
            scp,
            enc: enc.to_vec(),
            mac: mac.to_vec(),
            dek: dek.to_vec(),
            kdd,
            kvn,
            host_challenge: vec![],
            s_enc: vec![],
            s_mac: vec![],
            s_rmac: vec![],
            s_dek: vec![],
            level: 0,
            chain: None,
            counter: 0,
            selected: vec![],
            installs: vec![],
            store_data: vec![],
            init_update_response: vec![],
            fail: None,
            seen: vec![],
            corrupt_rmac: false,
        }
    }

    pub fn sw(sw: u16) -> Vec<u8> {
        sw.to_be_bytes().to_vec()
    }

    pub fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        assert!(apdu.len() >= 4, "short command");
        let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
        let data: Vec<u8> = if apdu.len() > 5 {
            let lc = usize::from(apdu[4]);
            assert!(apdu.len() == 5 + lc || apdu.len() == 6 + lc, "Lc mismatch");
            apdu[5..5 + lc].to_vec()
        } else {
            vec![]
        };
        let nth = self.seen.iter().filter(|&&i| i == ins).count();
        self.seen.push(ins);
        if let Some((fail_ins, fail_n, sw)) = self.fail
            && fail_ins == ins
            && fail_n == nth
        {
            return Self::sw(sw);
        }
        match ins {
            0xA4 => {
                assert_eq!((cla, p1, p2), (0x00, 0x04, 0x00));
                self.selected.push(data);
                Self::sw(0x9000)
            }
            0x50 => self.initialize_update(cla, &data),
            0x82 => self.external_authenticate(apdu, &data),
            _ => self.secured(cla, ins, p1, p2, &data),
        }
    }

    pub fn initialize_update(&mut self, cla: u8, host: &[u8]) -> Vec<u8> {
        assert_eq!(cla, 0x80);
        assert_eq!(host.len(), 8);
        self.host_challenge = host.to_vec();
        let mut r = self.kdd.to_vec();
        r.push(self.kvn);
        match self.scp.clone() {
            CardScp::Two { seq, challenge, .. } => {
                self.s_enc = card_scp02_session_key(&self.enc, [0x01, 0x82], seq);
                self.s_mac = card_scp02_session_key(&self.mac, [0x01, 0x01], seq);
                self.s_dek = card_scp02_session_key(&self.dek, [0x01, 0x81], seq);
                let cgram = card_tdes_mac(&self.s_enc, &[host, &seq[..], &challenge[..]].concat());
                r.push(0x02);
                r.extend_from_slice(&seq);
                r.extend_from_slice(&challenge);
                r.extend_from_slice(&cgram);
            }
            CardScp::Three { i, seq, challenge } => {
                let ctx = [host, &challenge[..]].concat();
                let bits = |k: &[u8]| u16::try_from(k.len() * 8).expect("bits");
                self.s_enc = card_kdf(&self.enc, 0x04, &ctx, bits(&self.enc));
                self.s_mac = card_kdf(&self.mac, 0x06, &ctx, bits(&self.mac));
                self.s_rmac = card_kdf(&self.mac, 0x07, &ctx, bits(&self.mac));
                r.extend_from_slice(&[0x03, i]);
                r.extend_from_slice(&challenge);
                r.extend_from_slice(&card_kdf(&self.s_mac, 0x00, &ctx, 64));
                r.extend_from_slice(&seq);
            }
        }
        self.init_update_response = r.clone();
        r.extend_from_slice(&[0x90, 0x00]);
        r
    }

    pub fn external_authenticate(&mut self, apdu: &[u8], data: &[u8]) -> Vec<u8> {
        assert_eq!(apdu[0], 0x84);
        assert_eq!(data.len(), 16);
        let (cgram, mac) = data.split_at(8);
        let header = &apdu[..5];
        match self.scp.clone() {
            CardScp::Two { seq, challenge, .. } => {
                let host = self.host_challenge.clone();
                let expected =
                    card_tdes_mac(&self.s_enc, &[&seq[..], &challenge[..], &host].concat());
                let m = retail_mac(
                    &self.s_mac,
                    &[0; 8],
                    &[header, cgram].concat(),
                    MacPadding::Method2,
                )
                .expect("card mac");
                if expected != cgram || m != mac {
                    return Self::sw(0x6300);
                }
                self.chain = Some(m.to_vec());
            }
            CardScp::Three { challenge, .. } => {
                let host = self.host_challenge.clone();
                let ctx = [&host[..], &challenge[..]].concat();
                let expected = card_kdf(&self.s_mac, 0x01, &ctx, 64);
                let full = aes_cmac(&self.s_mac, &[&[0u8; 16][..], header, cgram].concat())
                    .expect("card cmac");
                if expected != cgram || full[..8] != *mac {
                    return Self::sw(0x6300);
                }
                self.chain = Some(full.to_vec());
                self.counter = 0;
            }
        }
        self.level = apdu[2];
        Self::sw(0x9000)
    }

    pub fn secured(&mut self, cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        assert_eq!(cla, 0x84, "secured command without CLA 84");
        let Some(chain) = self.chain.clone() else {
            return Self::sw(0x6982);
        };
        assert!(data.len() >= 8);
        let (body, mac) = data.split_at(data.len() - 8);
        let c_dec = self.level & 0x02 != 0;
        let plain = match self.scp.clone() {
            CardScp::Two { icv_encryption, .. } => {
                let mut icv: [u8; 8] = chain.clone().try_into().expect("icv");
                if icv_encryption {
                    des_encrypt_block(&self.s_mac[..8], &mut icv).expect("card des");
                }
                let mut plain = body.to_vec();
                if c_dec && !plain.is_empty() {
                    tdes_cbc_decrypt(&self.s_enc, &[0; 8], &mut plain).expect("card dec");
                    let n = unpad_iso7816_len(&plain, 8).expect("card unpad");
                    plain.truncate(n);
                }
                let lc = u8::try_from(plain.len() + 8).expect("lc");
                let input = [&[cla, ins, p1, p2, lc][..], &plain].concat();
                let m = retail_mac(&self.s_mac, &icv, &input, MacPadding::Method2).expect("mac");
                if m != mac {
                    return Self::sw(0x6982);
                }
                self.chain = Some(m.to_vec());
                plain
            }
            CardScp::Three { .. } => {
                let lc = u8::try_from(data.len()).expect("lc");
                let input = [&chain[..], &[cla, ins, p1, p2, lc], body].concat();
                let full = aes_cmac(&self.s_mac, &input).expect("cmac");
                if full[..8] != *mac {
                    return Self::sw(0x6982);
                }
                self.chain = Some(full.to_vec());
                let mut plain = body.to_vec();
                if c_dec {
                    self.counter += 1;
                    if !plain.is_empty() {
                        let mut icv = self.counter.to_be_bytes();
                        aes_ecb_encrypt(&self.s_enc, &mut icv).expect("icv");
                        aes_cbc_decrypt(&self.s_enc, &icv, &mut plain).expect("card dec");
                        let n = unpad_iso7816_len(&plain, 16).expect("card unpad");
                        plain.truncate(n);
                    }
                }
                plain
            }
        };
        match ins {
            0xE6 => self.installs.push(plain),
            0xE2 => self.store_data.push((p1, p2, plain)),
            _ => return Self::sw(0x6D00),
        }
        let mut r = vec![];
        if self.level & 0x10 != 0 {
            let chain = self.chain.clone().expect("chain");
            let mut rmac = aes_cmac(&self.s_rmac, &[&chain[..], &[0x90, 0x00]].concat())
                .expect("rmac")[..8]
                .to_vec();
            if self.corrupt_rmac {
                rmac[0] ^= 0x01;
            }
            r.extend_from_slice(&rmac);
        }
        r.extend_from_slice(&[0x90, 0x00]);
        r
    }

    /// The DGIs as the applet would see them: reassembled stream, split into (id, value, P1 of
    /// the DGI's first command); encrypted values are left encrypted.
    pub fn dgis(&self) -> Vec<(u16, Vec<u8>, u8)> {
        let mut out = vec![];
        let mut stream: Vec<(u8, u8)> = vec![]; // (byte, p1) pairs
        for (p1, _, data) in &self.store_data {
            stream.extend(data.iter().map(|b| (*b, *p1)));
        }
        let bytes: Vec<u8> = stream.iter().map(|(b, _)| *b).collect();
        let mut i = 0;
        while i < bytes.len() {
            let id = u16::from_be_bytes([bytes[i], bytes[i + 1]]);
            let p1 = stream[i].1;
            let (len, hdr) = if bytes[i + 2] == 0xFF {
                (
                    usize::from(u16::from_be_bytes([bytes[i + 3], bytes[i + 4]])),
                    5,
                )
            } else {
                (usize::from(bytes[i + 2]), 3)
            };
            out.push((id, bytes[i + hdr..i + hdr + len].to_vec(), p1));
            i += hdr + len;
        }
        out
    }

    /// Decrypts a sensitive DGI value with the DEK as the applet would.
    pub fn decrypt_dgi(&self, value: &[u8]) -> Vec<u8> {
        let mut v = value.to_vec();
        match self.scp {
            CardScp::Two { .. } => tdes_ecb_decrypt(&self.s_dek, &mut v).expect("dek"),
            CardScp::Three { .. } => aes_cbc_decrypt(&self.dek, &[0; 16], &mut v).expect("dek"),
        }
        v
    }
}
