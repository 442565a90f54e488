//! Static card keys from an issuer master key (KMC) and the card's key diversification data (KDD,
//! the first 10 bytes of the INITIALIZE UPDATE response).
//!
//! - EMV CPS 1.1: `K = TDES-ECB_KMC(KDD[4..10] || F0 || k || KDD[4..10] || 0F || k)`.
//! - VISA2: the same with `KDD[0..2] || KDD[4..8]` as the six diversification bytes.
//! - GPPro "kdf3" (AES): NIST SP 800-108 counter mode with AES-CMAC over
//!   `i || 00 00 00 || k || 00 || KDD`, as long as the KMC.
//!
//! `k` is 01 for ENC, 02 for MAC, 03 for DEK. Which method a card batch uses is a profile setting.

use zeroize::Zeroize;

use super::{GpError, KeyPurpose, SecretKey, StaticKeys};
use crate::domain::crypto::{aes_cmac, tdes_ecb_encrypt};

/// Key diversification data: KMC-ID (6) || CSN (4) in EMV CPS.
pub type Kdd = [u8; 10];

/// How static card keys are derived from the KMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diversification {
    /// EMV CPS 1.1 (TDES; KDD bytes 4..9).
    EmvCps11,
    /// VISA2 (TDES; KDD bytes 0, 1, 4, 5, 6, 7).
    Visa2,
    /// GPPro "kdf3" (AES-CMAC counter-mode KDF over the whole KDD), for SCP03 cards.
    Kdf3,
}

impl Diversification {
    /// Whether the method yields AES keys (SCP03) rather than TDES keys (SCP02).
    pub fn is_aes(self) -> bool {
        self == Self::Kdf3
    }
}

/// The 16-byte blocks the KMC turns into one static key of `len` bytes: EMV CPS 1.1 and VISA2
/// encrypt the one block with TDES-ECB (`len` 16); kdf3 takes the AES-CMAC of each block, one
/// per 16 output bytes (counter 1, 2), and keeps the first `len` bytes. A key store that holds
/// the KMC runs the same blocks inside it.
pub fn diversification_blocks(
    kdd: &Kdd,
    purpose: KeyPurpose,
    method: Diversification,
    len: usize,
) -> Vec<[u8; 16]> {
    let k = purpose.code();
    match method {
        Diversification::EmvCps11 | Diversification::Visa2 => {
            let mut six = [0u8; 6];
            if method == Diversification::EmvCps11 {
                six.copy_from_slice(&kdd[4..10]);
            } else {
                six[..2].copy_from_slice(&kdd[..2]);
                six[2..].copy_from_slice(&kdd[4..8]);
            }
            let mut block = [0u8; 16];
            block[..6].copy_from_slice(&six);
            block[6] = 0xF0;
            block[7] = k;
            block[8..14].copy_from_slice(&six);
            block[14] = 0x0F;
            block[15] = k;
            vec![block]
        }
        Diversification::Kdf3 => (1..=len.div_ceil(16))
            .map(|counter| {
                let mut input = [0u8; 16];
                input[0] = u8::try_from(counter).unwrap_or(u8::MAX);
                input[4] = k;
                input[6..].copy_from_slice(kdd);
                input
            })
            .collect(),
    }
}

/// The AES-CMAC subkey K1 from `L = AES_K(0^128)`: `L << 1`, XOR `87` into the last byte when
/// the shifted-out bit was 1 (NIST SP 800-38B §6.1). For one complete block `M`,
/// `CMAC_K(M) = AES_K(M ⊕ K1)` (§6.2): a key store that cannot derive with CMAC derives the
/// kdf3 keys by ECB encryption of `M ⊕ K1`.
pub fn cmac_subkey1(l: &[u8; 16]) -> [u8; 16] {
    let mut k1 = [0u8; 16];
    for i in 0..16 {
        let next = l.get(i + 1).map_or(0, |b| b >> 7);
        k1[i] = (l[i] << 1) | next;
    }
    if l[0] & 0x80 != 0 {
        k1[15] ^= 0x87;
    }
    k1
}

/// Derives one static key.
pub fn diversify_key(
    kmc: &SecretKey,
    kdd: &Kdd,
    purpose: KeyPurpose,
    method: Diversification,
) -> Result<SecretKey, GpError> {
    match method {
        Diversification::EmvCps11 | Diversification::Visa2 => {
            if kmc.len() != 16 {
                return Err(GpError::KeyLength {
                    what: "a TDES KMC",
                    expected: "16 bytes",
                    got: kmc.len(),
                });
            }
            let mut block = diversification_blocks(kdd, purpose, method, 16)
                .first()
                .copied()
                .unwrap_or_default();
            let result = tdes_ecb_encrypt(kmc.as_bytes(), &mut block)
                .map_err(GpError::from)
                .and_then(|()| SecretKey::new(&block));
            block.zeroize();
            result
        }
        Diversification::Kdf3 => {
            let len = kmc.len();
            let mut out = zeroize::Zeroizing::new(Vec::with_capacity(32));
            for input in diversification_blocks(kdd, purpose, method, len) {
                let mut block = aes_cmac(kmc.as_bytes(), &input)?;
                out.extend_from_slice(&block);
                block.zeroize();
            }
            out.truncate(len);
            SecretKey::new(&out)
        }
    }
}

/// Derives the ENC, MAC and DEK keys of a card.
pub fn diversify(
    kmc: &SecretKey,
    kdd: &Kdd,
    method: Diversification,
) -> Result<StaticKeys, GpError> {
    Ok(StaticKeys {
        enc: diversify_key(kmc, kdd, KeyPurpose::Enc, method)?,
        mac: diversify_key(kmc, kdd, KeyPurpose::Mac, method)?,
        dek: diversify_key(kmc, kdd, KeyPurpose::Dek, method)?,
    })
}

#[cfg(test)]
mod tests {
    use super::cmac_subkey1;

    /// RFC 4493 §4 (subkey generation, AES-128 key 2B7E1516…): L and K1 as published.
    #[test]
    fn cmac_subkey1_is_rfc_4493s_k1() {
        let l: [u8; 16] = hex::decode("7df76b0c1ab899b33e42f047b91b546f")
            .expect("hex")
            .try_into()
            .expect("16");
        assert_eq!(
            hex::encode(cmac_subkey1(&l)),
            "fbeed618357133667c85e08f7236a8de"
        );
    }

    /// RFC 4493 §4: K2 = dbl(K1) = F7DDAC30…; K1's top bit is set, so the 87 reduction runs.
    #[test]
    fn cmac_doubling_reduces_when_the_top_bit_is_set() {
        let k1: [u8; 16] = hex::decode("fbeed618357133667c85e08f7236a8de")
            .expect("hex")
            .try_into()
            .expect("16");
        assert_eq!(
            hex::encode(cmac_subkey1(&k1)),
            "f7ddac306ae266ccf90bc11ee46d513b"
        );
    }
}
