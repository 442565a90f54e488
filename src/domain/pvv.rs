//! Visa PIN verification value.
//!
//! TSP = 11 rightmost PAN digits excluding the check digit ‖ PVKI ‖ first 4 PIN digits; TDES with
//! the PVK; decimalise; the first 4 digits.

use super::crypto::{self, CryptoError};
use super::decimal::{decimalise, pack_bcd};
use super::fields::{Pan, Pin, Pvv};

/// Computes the Visa PVV with a 16-byte PVK.
pub fn visa_pvv(pvk: &[u8], pan: &Pan, pvki: u8, pin: &Pin) -> Result<Pvv, CryptoError> {
    if pvk.len() != 16 {
        return Err(CryptoError::KeyLength {
            algorithm: "PVK (2-key TDES)",
            got: pvk.len(),
        });
    }
    visa_pvv_scheduled(&crypto::TdesSchedule::new(pvk)?, pan, pvki, pin)
}

/// [`visa_pvv`] with the PVK's precomputed schedule (a 2-key TDES key).
pub fn visa_pvv_scheduled(
    pvk: &crypto::TdesSchedule,
    pan: &Pan,
    pvki: u8,
    pin: &Pin,
) -> Result<Pvv, CryptoError> {
    if pvk.key_len() != 16 {
        return Err(CryptoError::KeyLength {
            algorithm: "PVK (2-key TDES)",
            got: pvk.key_len(),
        });
    }
    let p = pan.reveal().as_bytes();
    let end = p.len() - 1;
    let mut tsp = [0u8; 16];
    tsp[..11].copy_from_slice(&p[end - 11..end]);
    tsp[11] = b'0' + (pvki % 10);
    tsp[12..].copy_from_slice(&pin.reveal().as_bytes()[..4]);
    let mut block = [0u8; 8];
    pack_bcd(&tsp, &mut block);
    pvk.encrypt(&mut block);
    let pvv = Pvv::from_ascii(decimalise::<4>(&block));
    tsp.fill(0);
    block.fill(0);
    pvv.ok_or(CryptoError::DataLength { block: 8, got: 0 })
}
