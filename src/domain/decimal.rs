//! Decimalisation shared by CVV and PVV: take the decimal nibbles of a block left to right, then
//! the hex nibbles A-F minus 10, and keep the first `N` digits.

/// Decimalises `block` into `N` ASCII digits (N ≤ 2 × block length).
pub fn decimalise<const N: usize>(block: &[u8]) -> [u8; N] {
    let nibbles = block.iter().flat_map(|b| [b >> 4, b & 0x0F]);
    let digits = nibbles
        .clone()
        .filter(|n| *n < 10)
        .chain(nibbles.filter(|n| *n >= 10).map(|n| n - 10));
    let mut out = [b'0'; N];
    for (o, d) in out.iter_mut().zip(digits) {
        *o = b'0' + d;
    }
    out
}

/// Packs an ASCII digit string (even length) into BCD bytes.
pub fn pack_bcd(digits: &[u8], out: &mut [u8]) {
    for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let hi = pair.first().map_or(0, |d| d.wrapping_sub(b'0') & 0x0F);
        let lo = pair.get(1).map_or(0, |d| d.wrapping_sub(b'0') & 0x0F);
        *o = (hi << 4) | lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_first_then_letters() {
        // 8D5625FA78011A0C -> digits 8 5 6 2 5 7 8 0 1 1 0, then D F A A C -> 3 5 0 0 2
        assert_eq!(
            &decimalise::<3>(&[0x8D, 0x56, 0x25, 0xFA, 0x78, 0x01, 0x1A, 0x0C]),
            b"856"
        );
        assert_eq!(&decimalise::<4>(&[0xAB, 0xCD, 0xEF, 0xA1]), b"1012");
    }
}
