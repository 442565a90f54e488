//! Visa CVV / Mastercard CVC (and CVV2, iCVV with substitute service codes), EMV-independent.
//!
//! PAN ‖ expiry ‖ service code, right-padded with `0` to 32 digits, split into two 8-byte BCD
//! blocks; `R = DES_A(B1)`, `R = TDES(R ⊕ B2)` with the double-length CVK; decimalise; 3 digits.

use super::crypto::{self, CryptoError};
use super::decimal::{decimalise, pack_bcd};
use super::fields::Cvv;

/// Service code used for the chip's iCVV.
pub const ICVV_SERVICE_CODE: &str = "999";
/// Service code used for CVV2.
pub const CVV2_SERVICE_CODE: &str = "000";

/// Computes a Visa CVV with a 16-byte CVK over ASCII digit strings `pan`, `exp` (as encoded on the
/// stripe, normally YYMM) and `service_code`.
pub fn visa_cvv(cvk: &[u8], pan: &str, exp: &str, service_code: &str) -> Result<Cvv, CryptoError> {
    if cvk.len() != 16 {
        return Err(CryptoError::KeyLength {
            algorithm: "CVK (2-key TDES)",
            got: cvk.len(),
        });
    }
    visa_cvv_scheduled(&crypto::TdesSchedule::new(cvk)?, pan, exp, service_code)
}

/// [`visa_cvv`] with the CVK's precomputed schedule (a 2-key TDES key).
pub fn visa_cvv_scheduled(
    cvk: &crypto::TdesSchedule,
    pan: &str,
    exp: &str,
    service_code: &str,
) -> Result<Cvv, CryptoError> {
    if cvk.key_len() != 16 {
        return Err(CryptoError::KeyLength {
            algorithm: "CVK (2-key TDES)",
            got: cvk.key_len(),
        });
    }
    let mut digits = [b'0'; 32];
    let input = pan.bytes().chain(exp.bytes()).chain(service_code.bytes());
    for (d, s) in digits.iter_mut().zip(input) {
        *d = s;
    }
    let mut blocks = [0u8; 16];
    pack_bcd(&digits, &mut blocks);
    let (b1, b2) = blocks.split_at(8);
    let mut r = [0u8; 8];
    r.copy_from_slice(b1);
    cvk.encrypt_first(&mut r);
    for (x, y) in r.iter_mut().zip(b2) {
        *x ^= y;
    }
    cvk.encrypt(&mut r);
    let cvv = Cvv::from_ascii(decimalise::<3>(&r));
    r.fill(0);
    blocks.fill(0);
    digits.fill(0);
    cvv.ok_or(CryptoError::DataLength { block: 8, got: 0 })
}
