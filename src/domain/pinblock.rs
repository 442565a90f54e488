//! ISO 9564-1 PIN blocks: format 0 (TDES, 8 bytes), format 2 (the EMV plaintext / reference PIN
//! block) and format 4 (AES, 16 bytes).
//!
//! Clear PIN blocks are secrets: they live in zeroizing buffers and never leave the key store
//! boundary except as the encrypted forms.

use zeroize::Zeroizing;

use super::crypto::{self, CryptoError};
use super::fields::{Pan, Pin};

/// Why a PIN block could not be decoded; never carries the block or the PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinBlockError {
    #[error("PIN block control field is {found:X}, expected format {expected}")]
    Format { expected: u8, found: u8 },
    #[error("PIN block PIN length {0} is not 4-12")]
    Length(u8),
    #[error("PIN block holds a non-decimal PIN digit")]
    Digit,
    #[error("PIN block fill is not the format's fill pattern")]
    Fill,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// An encrypted block could not be recovered. The one answer of [`iso0_decrypt`] and
    /// [`iso4_decrypt`] for every cause: telling a bad control nibble from a non-decimal digit
    /// would reveal bits of the clear block to whoever can submit blocks (a decryption oracle).
    #[error("PIN block cannot be recovered")]
    Unrecoverable,
}

fn nibble(block: &[u8], i: usize) -> u8 {
    let b = block[i / 2];
    if i.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0F
    }
}

fn set_nibble(block: &mut [u8], i: usize, v: u8) {
    let b = &mut block[i / 2];
    if i.is_multiple_of(2) {
        *b = (*b & 0x0F) | (v << 4);
    } else {
        *b = (*b & 0xF0) | (v & 0x0F);
    }
}

/// A random PIN of `digits` digits (clamped to 4-12) drawn from `fill` (the key store's random
/// source), by rejection sampling (bytes 250..=255 would bias the digits).
pub fn random_pin<E>(
    digits: u8,
    mut fill: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<Result<Pin, String>, E> {
    let n = usize::from(digits.clamp(4, 12));
    let mut out = Zeroizing::new(String::with_capacity(n));
    let mut buf = Zeroizing::new([0u8; 32]);
    while out.len() < n {
        fill(buf.as_mut())?;
        for b in buf.iter().filter(|b| **b < 250) {
            if out.len() < n {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(Pin::parse(&out))
}

/// The 8-byte PIN field `C N PIN F..F` with control nibble `control` (0 for format 0, 2 for the
/// EMV reference/plaintext PIN block).
pub fn pin_field_fill_f(pin: &Pin, control: u8) -> Zeroizing<[u8; 8]> {
    let mut f = Zeroizing::new([0xFFu8; 8]);
    let digits = pin.reveal().as_bytes();
    set_nibble(f.as_mut(), 0, control & 0x0F);
    // Pin guarantees 4..=12 digits.
    set_nibble(f.as_mut(), 1, digits.len() as u8 & 0x0F);
    for (i, d) in digits.iter().enumerate() {
        set_nibble(f.as_mut(), 2 + i, d - b'0');
    }
    f
}

fn format0_pan_field(pan: &Pan) -> [u8; 8] {
    let mut f = [0u8; 8];
    // Right-justified: fewer than 12 digits (a 12-digit PAN) leave leading zeros.
    let digits = pan.rightmost12_excluding_check();
    let start = 4 + 12usize.saturating_sub(digits.len());
    for (i, d) in digits.bytes().enumerate() {
        set_nibble(&mut f, start + i, d - b'0');
    }
    f
}

/// The clear ISO 9564 format 0 block: PIN field XOR PAN field.
pub fn iso0_encode(pin: &Pin, pan: &Pan) -> Zeroizing<[u8; 8]> {
    let mut block = pin_field_fill_f(pin, 0);
    for (b, p) in block.iter_mut().zip(format0_pan_field(pan)) {
        *b ^= p;
    }
    block
}

fn read_pin(field: &[u8], control: u8) -> Result<(Pin, usize), PinBlockError> {
    let found = nibble(field, 0);
    if found != control {
        return Err(PinBlockError::Format {
            expected: control,
            found,
        });
    }
    let n = nibble(field, 1);
    if !(4..=12).contains(&n) {
        return Err(PinBlockError::Length(n));
    }
    let mut digits = Zeroizing::new(String::with_capacity(12));
    for i in 0..usize::from(n) {
        let d = nibble(field, 2 + i);
        if d > 9 {
            return Err(PinBlockError::Digit);
        }
        digits.push(char::from(b'0' + d));
    }
    let pin = Pin::parse(&digits).map_err(|_| PinBlockError::Digit)?;
    Ok((pin, 2 + usize::from(n)))
}

/// Recovers the PIN from a clear ISO 9564 format 0 block.
pub fn iso0_decode(clear: &[u8; 8], pan: &Pan) -> Result<Pin, PinBlockError> {
    let mut field = Zeroizing::new(*clear);
    for (b, p) in field.iter_mut().zip(format0_pan_field(pan)) {
        *b ^= p;
    }
    let (pin, end) = read_pin(field.as_ref(), 0)?;
    if (end..16).any(|i| nibble(field.as_ref(), i) != 0x0F) {
        return Err(PinBlockError::Fill);
    }
    Ok(pin)
}

/// Decrypts a TDES-encrypted format 0 block and recovers the PIN. Every failure is
/// [`PinBlockError::Unrecoverable`] (no detail of the clear block).
pub fn iso0_decrypt(key: &[u8], encrypted: &[u8], pan: &Pan) -> Result<Pin, PinBlockError> {
    iso0_decrypt_detailed(key, encrypted, pan).map_err(|_| PinBlockError::Unrecoverable)
}

fn iso0_decrypt_detailed(key: &[u8], encrypted: &[u8], pan: &Pan) -> Result<Pin, PinBlockError> {
    let mut clear = Zeroizing::new([0u8; 8]);
    if encrypted.len() != 8 {
        return Err(CryptoError::DataLength {
            block: 8,
            got: encrypted.len(),
        }
        .into());
    }
    clear.copy_from_slice(encrypted);
    crypto::tdes_ecb_decrypt(key, clear.as_mut())?;
    iso0_decode(&clear, pan)
}

/// [`iso0_decrypt`] with the key's precomputed schedule.
pub fn iso0_decrypt_scheduled(
    key: &crypto::TdesSchedule,
    encrypted: &[u8],
    pan: &Pan,
) -> Result<Pin, PinBlockError> {
    let mut clear = Zeroizing::new([0u8; 8]);
    if encrypted.len() != 8 {
        return Err(PinBlockError::Unrecoverable);
    }
    clear.copy_from_slice(encrypted);
    key.decrypt(&mut clear);
    iso0_decode(&clear, pan).map_err(|_| PinBlockError::Unrecoverable)
}

/// Encrypts a format 0 block under a TDES key (used by issuer-side tools and tests).
pub fn iso0_encrypt(key: &[u8], pin: &Pin, pan: &Pan) -> Result<[u8; 8], CryptoError> {
    let mut block = *iso0_encode(pin, pan);
    crypto::tdes_ecb_encrypt(key, &mut block)?;
    Ok(block)
}

/// The format 4 PIN field: `4 N PIN A..A` (8 bytes) followed by 8 random bytes.
pub fn iso4_pin_field(pin: &Pin, random: &[u8; 8]) -> Zeroizing<[u8; 16]> {
    let mut f = Zeroizing::new([0xAAu8; 16]);
    let digits = pin.reveal().as_bytes();
    set_nibble(f.as_mut(), 0, 4);
    set_nibble(f.as_mut(), 1, digits.len() as u8 & 0x0F);
    for (i, d) in digits.iter().enumerate() {
        set_nibble(f.as_mut(), 2 + i, d - b'0');
    }
    f[8..].copy_from_slice(random);
    f
}

/// The format 4 PAN field: `M` (PAN length − 12, 0 for shorter PANs) ‖ PAN (left-padded with
/// zeros to 12 digits) ‖ zero padding, 16 bytes. `digits` are ASCII digits, at most 19.
pub fn iso4_pan_field_digits(digits: &[u8]) -> [u8; 16] {
    let mut f = [0u8; 16];
    let m = digits.len().saturating_sub(12);
    set_nibble(&mut f, 0, (m as u8) & 0x0F);
    let start = 1 + 12usize.saturating_sub(digits.len());
    for (i, d) in digits.iter().take(19).enumerate() {
        set_nibble(&mut f, start + i, d.wrapping_sub(b'0') & 0x0F);
    }
    f
}

/// The format 4 PAN field of a PAN.
pub fn iso4_pan_field(pan: &Pan) -> [u8; 16] {
    iso4_pan_field_digits(pan.reveal().as_bytes())
}

/// Enciphers a format 4 block: `E(E(PIN field) ⊕ PAN field)` under an AES key.
pub fn iso4_encrypt(
    key: &[u8],
    pin: &Pin,
    pan: &Pan,
    random: &[u8; 8],
) -> Result<[u8; 16], CryptoError> {
    let mut block = *iso4_pin_field(pin, random);
    crypto::aes_ecb_encrypt(key, &mut block)?;
    for (b, p) in block.iter_mut().zip(iso4_pan_field(pan)) {
        *b ^= p;
    }
    crypto::aes_ecb_encrypt(key, &mut block)?;
    Ok(block)
}

/// Deciphers a format 4 block and recovers the PIN. Every failure is
/// [`PinBlockError::Unrecoverable`] (no detail of the clear block).
pub fn iso4_decrypt(key: &[u8], encrypted: &[u8], pan: &Pan) -> Result<Pin, PinBlockError> {
    iso4_decrypt_detailed(key, encrypted, pan).map_err(|_| PinBlockError::Unrecoverable)
}

fn iso4_decrypt_detailed(key: &[u8], encrypted: &[u8], pan: &Pan) -> Result<Pin, PinBlockError> {
    if encrypted.len() != 16 {
        return Err(CryptoError::DataLength {
            block: 16,
            got: encrypted.len(),
        }
        .into());
    }
    let mut block = Zeroizing::new([0u8; 16]);
    block.copy_from_slice(encrypted);
    crypto::aes_ecb_decrypt(key, block.as_mut())?;
    for (b, p) in block.iter_mut().zip(iso4_pan_field(pan)) {
        *b ^= p;
    }
    crypto::aes_ecb_decrypt(key, block.as_mut())?;
    iso4_decode(&block)
}

/// Recovers the PIN from a deciphered format 4 PIN field (`4 N PIN A..A` and 8 random bytes).
pub fn iso4_decode(field: &[u8; 16]) -> Result<Pin, PinBlockError> {
    let (pin, end) = read_pin(field.as_ref(), 4)?;
    if (end..16).any(|i| nibble(field.as_ref(), i) != 0x0A) {
        return Err(PinBlockError::Fill);
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format0_round_trip() {
        let pin = Pin::parse("1234").expect("pin");
        let pan = Pan::parse("5413330089012345").expect("pan");
        let clear = iso0_encode(&pin, &pan);
        assert_eq!(iso0_decode(&clear, &pan).expect("decode"), pin);
        let mut broken = *clear;
        broken[0] ^= 0x10;
        assert!(matches!(
            iso0_decode(&broken, &pan),
            Err(PinBlockError::Format { .. })
        ));
    }

    /// ISO 9564-1 format 0 with a 12-digit PAN: its 11 digits before the check digit are
    /// right-justified with a leading zero, so the block equals the one for the same PAN with a
    /// leading 0 (13 digits, whose 12 rightmost digits before the check digit are `0` + those 11).
    /// This used to panic (found by tests/properties.rs).
    #[test]
    fn format0_with_a_12_digit_pan() {
        let pin = Pin::parse("1234").expect("pin");
        let short = Pan::parse("100000000008").expect("pan");
        let padded = Pan::parse("0100000000008").expect("pan");
        let clear = iso0_encode(&pin, &short);
        assert_eq!(*clear, *iso0_encode(&pin, &padded));
        // 04 1234 FF..: PIN field; PAN field 0000 010000000000.
        assert_eq!(
            hex::encode_upper(*clear),
            hex::encode_upper([0x04, 0x12, 0x34 ^ 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        );
        assert_eq!(iso0_decode(&clear, &short).expect("decode"), pin);
    }

    /// Issue 13 finding 12: a wrong PAN, a broken control nibble and a wrong key all give the
    /// same answer, so decrypt failures tell nothing about the clear block.
    #[test]
    fn decrypt_failures_are_one_message() {
        let key = [0x11u8; 16];
        let pin = Pin::parse("1234").expect("pin");
        let pan = Pan::parse("5413330089012345").expect("pan");
        let block = iso0_encrypt(&key, &pin, &pan).expect("encrypt");
        assert_eq!(iso0_decrypt(&key, &block, &pan).expect("decrypt"), pin);
        let other_pan = Pan::parse("5413330089019999").expect("pan");
        let wrong_key = [0x22u8; 16];
        let mut messages = std::collections::BTreeSet::new();
        for (k, b, p) in [
            (&key[..], &block[..], &other_pan),
            (&wrong_key[..], &block[..], &pan),
            (&key[..], &block[..4], &pan),
        ] {
            let e = iso0_decrypt(k, b, p).expect_err("must fail");
            assert_eq!(e, PinBlockError::Unrecoverable);
            messages.insert(e.to_string());
        }
        let e = iso4_decrypt(&[0x33u8; 16], &[0u8; 16], &pan).expect_err("must fail");
        messages.insert(e.to_string());
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            !messages
                .iter()
                .any(|m| m.contains("control") || m.contains("digit"))
        );
    }

    #[test]
    fn random_pin_rejects_biased_bytes_and_clamps_its_length() {
        // 250..=255 are skipped; 249 -> 9, 13 -> 3, 0 -> 0.
        let bytes = [255u8, 250, 249, 13, 0, 251, 7, 10];
        let mut at = 0;
        let fill = |buf: &mut [u8]| -> Result<(), ()> {
            for b in buf.iter_mut() {
                *b = bytes[at % bytes.len()];
                at += 1;
            }
            Ok(())
        };
        let pin = random_pin(4, fill).expect("fill").expect("pin");
        assert_eq!(pin.reveal(), "9307");
        let long = random_pin(20, |b: &mut [u8]| -> Result<(), ()> {
            b.fill(1);
            Ok(())
        });
        assert_eq!(long.expect("fill").expect("pin").reveal().len(), 12);
        assert!(random_pin(4, |_: &mut [u8]| Err::<(), _>("rng down")).is_err());
    }
}
