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

/// Derives one static key.
pub fn diversify_key(
    kmc: &SecretKey,
    kdd: &Kdd,
    purpose: KeyPurpose,
    method: Diversification,
) -> Result<SecretKey, GpError> {
    let k = purpose.code();
    match method {
        Diversification::EmvCps11 | Diversification::Visa2 => {
            if kmc.len() != 16 {
                return Err(GpError::KeyLength {
                    what: "a TDES KMC",
                    expected: "16 bytes",
                    got: kmc.len(),
                });
            }
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
            let result = tdes_ecb_encrypt(kmc.as_bytes(), &mut block)
                .map_err(GpError::from)
                .and_then(|()| SecretKey::new(&block));
            block.zeroize();
            result
        }
        Diversification::Kdf3 => {
            let mut input = [0u8; 16];
            input[4] = k;
            input[6..].copy_from_slice(kdd);
            let mut out = [0u8; 32];
            let len = kmc.len();
            let mut filled = 0;
            let mut counter = 1u8;
            while filled < len {
                input[0] = counter;
                let mut block = aes_cmac(kmc.as_bytes(), &input)?;
                let take = (len - filled).min(16);
                out[filled..filled + take].copy_from_slice(&block[..take]);
                block.zeroize();
                filled += take;
                counter = counter.wrapping_add(1);
            }
            let key = SecretKey::new(&out[..len]);
            out.zeroize();
            key
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
