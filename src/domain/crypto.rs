//! Block cipher primitives shared by every card algorithm: DES/TDES and AES in ECB and CBC,
//! ISO/IEC 9797-1 MAC algorithm 3 (retail MAC), AES-CMAC, ISO 7816-4 padding, key check values
//! and DES parity.
//!
//! Functions take key bytes by reference and never keep them; callers own zeroization. Errors
//! never carry key or data bytes.

use aes::{Aes128, Aes192, Aes256};
use cmac::{Cmac, Mac};
use des::cipher::array::Array;
use des::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2, TdesEde3};

/// A crypto primitive was called with a key or data of the wrong size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("key length {got} bytes is not valid for {algorithm}")]
    KeyLength { algorithm: &'static str, got: usize },
    #[error("data length {got} bytes is not a multiple of the {block}-byte block")]
    DataLength { block: usize, got: usize },
    #[error("padding is not ISO/IEC 7816-4 (80 00..)")]
    Padding,
}

/// DES block size in bytes.
pub const DES_BLOCK: usize = 8;
/// AES block size in bytes.
pub const AES_BLOCK: usize = 16;

fn check_blocks(data: &[u8], block: usize) -> Result<(), CryptoError> {
    if data.len().is_multiple_of(block) {
        Ok(())
    } else {
        Err(CryptoError::DataLength {
            block,
            got: data.len(),
        })
    }
}

/// A TDES key schedule for 16-byte (2-key) or 24-byte (3-key) keys.
enum Tdes {
    Two(TdesEde2),
    Three(TdesEde3),
}

impl Tdes {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let err = CryptoError::KeyLength {
            algorithm: "TDES",
            got: key.len(),
        };
        match key.len() {
            16 => TdesEde2::new_from_slice(key)
                .map(Tdes::Two)
                .map_err(|_| err),
            24 => TdesEde3::new_from_slice(key)
                .map(Tdes::Three)
                .map_err(|_| err),
            _ => Err(err),
        }
    }

    fn encrypt(&self, block: &mut [u8; 8]) {
        let b = block.into();
        match self {
            Tdes::Two(c) => c.encrypt_block(b),
            Tdes::Three(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8; 8]) {
        let b = block.into();
        match self {
            Tdes::Two(c) => c.decrypt_block(b),
            Tdes::Three(c) => c.decrypt_block(b),
        }
    }
}

/// A precomputed TDES key schedule (16- or 24-byte key) with the single-DES schedule of its first
/// 8 bytes (Visa CVV's first step), for key stores that run the same key for every card. Table
/// driven ([`super::des_tables`]: several times faster than the `des` crate per block, the
/// batch hot path); the round keys are wiped on drop.
pub struct TdesSchedule {
    first: super::des_tables::Des,
    full: super::des_tables::Tdes,
    len: usize,
}

impl std::fmt::Debug for TdesSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TdesSchedule(<{}-byte key redacted>)", self.len)
    }
}

impl TdesSchedule {
    /// The schedules of a 16- or 24-byte key.
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let err = || CryptoError::KeyLength {
            algorithm: "TDES",
            got: key.len(),
        };
        let full = super::des_tables::Tdes::new(key).ok_or_else(err)?;
        let first: &[u8; 8] = key
            .get(..8)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(err)?;
        Ok(Self {
            first: super::des_tables::Des::new(first),
            full,
            len: key.len(),
        })
    }

    /// Key length in bytes (16 or 24).
    pub fn key_len(&self) -> usize {
        self.len
    }

    /// TDES encryption of one block.
    pub fn encrypt(&self, block: &mut [u8; 8]) {
        self.full.encrypt(block);
    }

    /// TDES decryption of one block.
    pub fn decrypt(&self, block: &mut [u8; 8]) {
        self.full.decrypt(block);
    }

    /// Single DES encryption of one block with the key's first 8 bytes.
    pub fn encrypt_first(&self, block: &mut [u8; 8]) {
        self.first.encrypt(block);
    }
}

enum AesKey {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl AesKey {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let err = CryptoError::KeyLength {
            algorithm: "AES",
            got: key.len(),
        };
        match key.len() {
            16 => Aes128::new_from_slice(key)
                .map(AesKey::A128)
                .map_err(|_| err),
            24 => Aes192::new_from_slice(key)
                .map(AesKey::A192)
                .map_err(|_| err),
            32 => Aes256::new_from_slice(key)
                .map(AesKey::A256)
                .map_err(|_| err),
            _ => Err(err),
        }
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        let b = block.into();
        match self {
            AesKey::A128(c) => c.encrypt_block(b),
            AesKey::A192(c) => c.encrypt_block(b),
            AesKey::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8; 16]) {
        let b = block.into();
        match self {
            AesKey::A128(c) => c.decrypt_block(b),
            AesKey::A192(c) => c.decrypt_block(b),
            AesKey::A256(c) => c.decrypt_block(b),
        }
    }
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Single DES encryption of one 8-byte block with an 8-byte key.
pub fn des_encrypt_block(key: &[u8], block: &mut [u8; 8]) -> Result<(), CryptoError> {
    let c = Des::new_from_slice(key).map_err(|_| CryptoError::KeyLength {
        algorithm: "DES",
        got: key.len(),
    })?;
    c.encrypt_block(block.into());
    Ok(())
}

/// Single DES decryption of one 8-byte block with an 8-byte key.
pub fn des_decrypt_block(key: &[u8], block: &mut [u8; 8]) -> Result<(), CryptoError> {
    let c = Des::new_from_slice(key).map_err(|_| CryptoError::KeyLength {
        algorithm: "DES",
        got: key.len(),
    })?;
    c.decrypt_block(block.into());
    Ok(())
}

/// TDES-ECB encryption in place (16- or 24-byte key, data a multiple of 8 bytes).
pub fn tdes_ecb_encrypt(key: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = Tdes::new(key)?;
    check_blocks(data, DES_BLOCK)?;
    data.as_chunks_mut::<DES_BLOCK>()
        .0
        .iter_mut()
        .for_each(|b| c.encrypt(b));
    Ok(())
}

/// TDES-ECB decryption in place.
pub fn tdes_ecb_decrypt(key: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = Tdes::new(key)?;
    check_blocks(data, DES_BLOCK)?;
    data.as_chunks_mut::<DES_BLOCK>()
        .0
        .iter_mut()
        .for_each(|b| c.decrypt(b));
    Ok(())
}

/// TDES-CBC encryption in place with the given IV.
pub fn tdes_cbc_encrypt(key: &[u8], iv: &[u8; 8], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = Tdes::new(key)?;
    check_blocks(data, DES_BLOCK)?;
    let mut chain = *iv;
    for b in data.as_chunks_mut::<DES_BLOCK>().0 {
        xor_into(b, &chain);
        c.encrypt(b);
        chain = *b;
    }
    Ok(())
}

/// TDES-CBC decryption in place with the given IV.
pub fn tdes_cbc_decrypt(key: &[u8], iv: &[u8; 8], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = Tdes::new(key)?;
    check_blocks(data, DES_BLOCK)?;
    let mut chain = *iv;
    for b in data.as_chunks_mut::<DES_BLOCK>().0 {
        let next = *b;
        c.decrypt(b);
        xor_into(b, &chain);
        chain = next;
    }
    Ok(())
}

/// AES-ECB encryption in place (16-, 24- or 32-byte key, data a multiple of 16 bytes).
pub fn aes_ecb_encrypt(key: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = AesKey::new(key)?;
    check_blocks(data, AES_BLOCK)?;
    data.as_chunks_mut::<AES_BLOCK>()
        .0
        .iter_mut()
        .for_each(|b| c.encrypt(b));
    Ok(())
}

/// AES-ECB decryption in place.
pub fn aes_ecb_decrypt(key: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = AesKey::new(key)?;
    check_blocks(data, AES_BLOCK)?;
    data.as_chunks_mut::<AES_BLOCK>()
        .0
        .iter_mut()
        .for_each(|b| c.decrypt(b));
    Ok(())
}

/// AES-CBC encryption in place with the given IV.
pub fn aes_cbc_encrypt(key: &[u8], iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = AesKey::new(key)?;
    check_blocks(data, AES_BLOCK)?;
    let mut chain = *iv;
    for b in data.as_chunks_mut::<AES_BLOCK>().0 {
        xor_into(b, &chain);
        c.encrypt(b);
        chain = *b;
    }
    Ok(())
}

/// AES-CBC decryption in place with the given IV.
pub fn aes_cbc_decrypt(key: &[u8], iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
    let c = AesKey::new(key)?;
    check_blocks(data, AES_BLOCK)?;
    let mut chain = *iv;
    for b in data.as_chunks_mut::<AES_BLOCK>().0 {
        let next = *b;
        c.decrypt(b);
        xor_into(b, &chain);
        chain = next;
    }
    Ok(())
}

/// Appends ISO/IEC 7816-4 padding (`80 00..`, always at least one byte) up to a multiple of `block`.
/// This is also ISO/IEC 9797-1 padding method 2.
pub fn pad_iso7816(data: &mut Vec<u8>, block: usize) {
    data.push(0x80);
    while !data.len().is_multiple_of(block) {
        data.push(0x00);
    }
}

/// Returns the length of `data` without its ISO/IEC 7816-4 padding; strict: the padding must be
/// `80` followed by zeros only, within the last block.
pub fn unpad_iso7816_len(data: &[u8], block: usize) -> Result<usize, CryptoError> {
    check_blocks(data, block)?;
    let mut i = data.len();
    while i > 0 && data[i - 1] == 0x00 {
        i -= 1;
        if data.len() - i >= block {
            return Err(CryptoError::Padding);
        }
    }
    if i == 0 || data[i - 1] != 0x80 {
        return Err(CryptoError::Padding);
    }
    Ok(i - 1)
}

/// How a MAC input is padded to the block size (ISO/IEC 9797-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacPadding {
    /// Method 1: zeros, none when already aligned (an empty message gets one block).
    Method1,
    /// Method 2: `80` then zeros, always at least one byte.
    Method2,
}

/// ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC") with a 16-byte key: single-DES CBC with the left
/// key half, the last block through TDES. Returns the full 8-byte MAC.
pub fn retail_mac(
    key: &[u8],
    iv: &[u8; 8],
    data: &[u8],
    padding: MacPadding,
) -> Result<[u8; 8], CryptoError> {
    if key.len() != 16 {
        return Err(CryptoError::KeyLength {
            algorithm: "retail MAC (2-key TDES)",
            got: key.len(),
        });
    }
    let left = Des::new_from_slice(&key[..8]).map_err(|_| CryptoError::KeyLength {
        algorithm: "DES",
        got: 8,
    })?;
    let right = Des::new_from_slice(&key[8..]).map_err(|_| CryptoError::KeyLength {
        algorithm: "DES",
        got: 8,
    })?;
    let mut chain = *iv;
    let mut process = |block: &[u8; 8]| {
        xor_into(&mut chain, block);
        left.encrypt_block((&mut chain).into());
    };
    let full = data.len() / DES_BLOCK;
    let rem = &data[full * DES_BLOCK..];
    let needs_pad_block = match padding {
        MacPadding::Method2 => true,
        MacPadding::Method1 => !rem.is_empty() || data.is_empty(),
    };
    data.as_chunks::<DES_BLOCK>()
        .0
        .iter()
        .for_each(&mut process);
    if needs_pad_block {
        let mut last = [0u8; DES_BLOCK];
        last[..rem.len()].copy_from_slice(rem);
        if padding == MacPadding::Method2 {
            last[rem.len()] = 0x80;
        }
        process(&last);
    }
    let b: &mut Array<u8, _> = (&mut chain).into();
    right.decrypt_block(b);
    left.encrypt_block(b);
    Ok(chain)
}

/// AES-CMAC (NIST SP 800-38B / RFC 4493) with a 16-, 24- or 32-byte key; the full 16-byte tag.
pub fn aes_cmac(key: &[u8], data: &[u8]) -> Result<[u8; 16], CryptoError> {
    let err = CryptoError::KeyLength {
        algorithm: "AES-CMAC",
        got: key.len(),
    };
    let tag = match key.len() {
        16 => {
            let mut m = <Cmac<Aes128> as cmac::KeyInit>::new_from_slice(key).map_err(|_| err)?;
            m.update(data);
            m.finalize().into_bytes()
        }
        24 => {
            let mut m = <Cmac<Aes192> as cmac::KeyInit>::new_from_slice(key).map_err(|_| err)?;
            m.update(data);
            m.finalize().into_bytes()
        }
        32 => {
            let mut m = <Cmac<Aes256> as cmac::KeyInit>::new_from_slice(key).map_err(|_| err)?;
            m.update(data);
            m.finalize().into_bytes()
        }
        _ => return Err(err),
    };
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// TDES key check value: the first 3 bytes of TDES(key, 8 x `00`).
pub fn kcv_tdes(key: &[u8]) -> Result<[u8; 3], CryptoError> {
    let mut block = [0u8; 8];
    tdes_ecb_encrypt(key, &mut block)?;
    Ok([block[0], block[1], block[2]])
}

/// AES key check value, GlobalPlatform convention: the first 3 bytes of AES(key, 16 x `01`).
pub fn kcv_aes(key: &[u8]) -> Result<[u8; 3], CryptoError> {
    let mut block = [0x01u8; 16];
    aes_ecb_encrypt(key, &mut block)?;
    Ok([block[0], block[1], block[2]])
}

/// Forces odd parity on every byte (DES key convention).
pub fn adjust_odd_parity(key: &mut [u8]) {
    for b in key.iter_mut() {
        let ones = (*b & 0xFE).count_ones();
        *b = (*b & 0xFE) | u8::from(ones % 2 == 0);
    }
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_hex as h;

    #[test]
    fn tdes_kcv_of_the_classic_test_key() {
        // KCV 08D7B4 for 0123456789ABCDEF FEDCBA9876543210 (Atalla/Thales examples; issue #2).
        let kcv = kcv_tdes(&h("0123456789ABCDEFFEDCBA9876543210")).expect("kcv");
        assert_eq!(hex::encode_upper(kcv), "08D7B4");
    }

    #[test]
    fn cbc_round_trips_and_differs_from_ecb() {
        let key = h("0123456789ABCDEFFEDCBA9876543210");
        let plain = h("00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF");
        let mut cbc = plain.clone();
        tdes_cbc_encrypt(&key, &[0; 8], &mut cbc).expect("enc");
        let mut ecb = plain.clone();
        tdes_ecb_encrypt(&key, &mut ecb).expect("enc");
        assert_eq!(cbc[..8], ecb[..8]);
        assert_ne!(cbc[8..16], ecb[8..16]);
        tdes_cbc_decrypt(&key, &[0; 8], &mut cbc).expect("dec");
        assert_eq!(cbc, plain);

        let akey = h("2B7E151628AED2A6ABF7158809CF4F3C");
        let mut a = plain.clone();
        aes_cbc_encrypt(&akey, &[0; 16], &mut a).expect("enc");
        aes_cbc_decrypt(&akey, &[0; 16], &mut a).expect("dec");
        assert_eq!(a, plain);
    }

    #[test]
    fn aes_cmac_rfc4493_example_2() {
        let tag = aes_cmac(
            &h("2B7E151628AED2A6ABF7158809CF4F3C"),
            &h("6BC1BEE22E409F96E93D7E117393172A"),
        )
        .expect("cmac");
        assert_eq!(hex::encode_upper(tag), "070A16B46B4D4144F79BDD9DD04A287C");
    }

    #[test]
    fn padding_is_strict() {
        let mut v = vec![1, 2, 3];
        pad_iso7816(&mut v, 8);
        assert_eq!(v, [1, 2, 3, 0x80, 0, 0, 0, 0]);
        assert_eq!(unpad_iso7816_len(&v, 8), Ok(3));
        let mut aligned = vec![0u8; 8];
        pad_iso7816(&mut aligned, 8);
        assert_eq!(aligned.len(), 16);
        assert_eq!(
            unpad_iso7816_len(&[1, 2, 3, 0, 0, 0, 0, 0], 8),
            Err(CryptoError::Padding)
        );
        assert_eq!(
            unpad_iso7816_len(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
            Err(CryptoError::Padding)
        );
        assert!(unpad_iso7816_len(&[1, 2, 3], 8).is_err());
    }

    #[test]
    fn wrong_key_lengths_are_errors_not_panics() {
        assert!(tdes_ecb_encrypt(&[0; 15], &mut [0; 8]).is_err());
        assert!(aes_ecb_encrypt(&[0; 20], &mut [0; 16]).is_err());
        assert!(tdes_ecb_encrypt(&[0; 16], &mut [0; 7]).is_err());
        assert!(retail_mac(&[0; 24], &[0; 8], b"x", MacPadding::Method2).is_err());
    }

    #[test]
    fn parity() {
        let mut k = [0x00, 0x01, 0xFE, 0xFF];
        adjust_odd_parity(&mut k);
        assert_eq!(k, [0x01, 0x01, 0xFE, 0xFE]);
    }
}
