//! The application cryptogram of the virtual card, per cryptogram version (CVN), written from the
//! public descriptions of each CVN (EMV Book 2 Annex A1; knovichikhin/pyemv `cvn.py`, whose
//! published test vectors are the known answers in this module's tests):
//!
//! | CVN | session key | padding | scheme part after `82 AIP`, `9F36 ATC` |
//! |---|---|---|---|
//! | Visa 10 (`0A`) | none (MK-AC) | method 1 | CVR, 4 bytes (IAD bytes 3..7) |
//! | Visa 18 (`12`) | EMV CSK, `R = ATC 00..00` | method 2 | the whole IAD |
//! | Visa 22 (`22`) | EMV CSK | method 2 | the whole IAD (format 2, `1F 22 DKI CVR(5) ...`) |
//! | MC 16 / 17 (`10`/`11`) | MC SKD, `R = ATC 00 00 UN` | method 2 | CVR 6 bytes (+ counters 8 for 17) |
//! | MC 20 / 21 (`14`/`15`) | EMV CSK | method 2 | CVR 6 bytes (+ counters 8 for 21) |
//!
//! The MAC input always starts with the terminal elements `9F02 9F03 9F1A 95 5F2A 9A 9C 9F37`,
//! taken by tag out of the CDOL1 data — never the whole CDOL1 data: a CDOL1 may ask for more
//! (9F35, 9F45, 9F4C, 9F34), which the card receives but does not MAC.
//!
//! The IAD (9F10) the card reports is built from the 9F10 it was personalized with (its DKI and
//! discretionary data), with the card's CVN byte and CVR filled in.

use zeroize::Zeroizing;

use super::CardCvn;
use super::channel::sw;
use crate::domain::crypto::{self, MacPadding};

/// The terminal elements of every CVN's AC input, in order, with their lengths.
pub const TERMINAL_ELEMENTS: [(u32, usize); 8] = [
    (0x9F02, 6),
    (0x9F03, 6),
    (0x9F1A, 2),
    (0x95, 5),
    (0x5F2A, 2),
    (0x9A, 3),
    (0x9C, 1),
    (0x9F37, 4),
];

/// `(tag, length)` entries of a DOL.
pub fn parse_dol(dol: &[u8]) -> Option<Vec<(u32, usize)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < dol.len() {
        let first = *dol.get(i)?;
        let mut tag = u32::from(first);
        i += 1;
        if first & 0x1F == 0x1F {
            loop {
                let b = *dol.get(i)?;
                tag = (tag << 8) | u32::from(b);
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        out.push((tag, usize::from(*dol.get(i)?)));
        i += 1;
    }
    Some(out)
}

/// The value the terminal gave for `tag` in the data of `dol`.
pub fn dol_value<'a>(dol: &[(u32, usize)], data: &'a [u8], tag: u32) -> Option<&'a [u8]> {
    let mut at = 0;
    for (t, len) in dol {
        if *t == tag {
            return data.get(at..at + len);
        }
        at += len;
    }
    None
}

/// The terminal elements of the AC input, out of the CDOL1 data; `None` when the CDOL1 lacks
/// one or gives it with another length.
pub fn terminal_elements(cdol1: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let dol = parse_dol(cdol1)?;
    let mut out = Vec::with_capacity(29);
    for (tag, len) in TERMINAL_ELEMENTS {
        let v = dol_value(&dol, data, tag).filter(|v| v.len() == len)?;
        out.extend_from_slice(v);
    }
    Some(out)
}

/// The IAD the card reports for `cvn`: the DKI (and the IDD) from the personalized 9F10
/// `template` when there is one (else DKI 00: nothing personalized one), the card's own CVN
/// byte; the CVR from the card's state (`A0` = ARQC in the first
/// GENERATE AC, second not requested; `04` in the next byte once offline PIN verified).
pub fn issuer_application_data(cvn: CardCvn, template: Option<&[u8]>, verified: bool) -> Vec<u8> {
    let pin = if verified { 0x04 } else { 0x00 };
    match cvn {
        CardCvn::Visa10 | CardCvn::Visa18 => {
            let mut iad = match template {
                Some(t @ [0x06, _, _, 0x03, ..]) if t.len() >= 7 => t.to_vec(),
                _ => vec![0x06, 0x00, cvn.byte(), 0x03, 0, 0, 0],
            };
            iad[2] = cvn.byte();
            iad[4..7].copy_from_slice(&[0xA0, pin, 0x00]);
            iad
        }
        CardCvn::Visa22 => {
            // Format 2: 1F || CVN || DKI || CVR (5) || IDD, 32 bytes.
            let mut iad = match template {
                Some(t @ [0x1F, ..]) if t.len() == 32 => {
                    let mut v = t.to_vec();
                    v[1] = cvn.byte();
                    v
                }
                Some([0x06, dki, ..]) | Some([0x1F, _, dki, ..]) => {
                    let mut v = vec![0u8; 32];
                    v[..3].copy_from_slice(&[0x1F, cvn.byte(), *dki]);
                    v
                }
                _ => {
                    let mut v = vec![0u8; 32];
                    v[..3].copy_from_slice(&[0x1F, cvn.byte(), 0x00]);
                    v
                }
            };
            iad[3..8].copy_from_slice(&[0xA0, pin, 0x00, 0x00, 0x00]);
            iad
        }
        _ => {
            // M/Chip: DKI || CVN || CVR (6) || DAC/IDN (2) || counters (8), 18 bytes.
            let mut iad = vec![0u8; 18];
            iad[0] = template.and_then(|t| t.first().copied()).unwrap_or(0x00);
            iad[1] = cvn.byte();
            iad[2..8].copy_from_slice(&[0xA0, pin, 0x00, 0x00, 0x00, 0x00]);
            iad
        }
    }
}

/// The whole AC input: terminal elements || AIP || ATC || scheme part.
pub fn ac_input(
    cvn: CardCvn,
    elements: &[u8],
    aip: &[u8],
    atc: [u8; 2],
    iad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut input = Zeroizing::new(Vec::with_capacity(elements.len() + 40));
    input.extend_from_slice(elements);
    input.extend_from_slice(aip);
    input.extend_from_slice(&atc);
    match cvn {
        CardCvn::Visa10 => input.extend_from_slice(iad.get(3..7)?),
        CardCvn::Visa18 | CardCvn::Visa22 => input.extend_from_slice(iad),
        CardCvn::Mastercard16 | CardCvn::Mastercard20 => input.extend_from_slice(iad.get(2..8)?),
        CardCvn::Mastercard17 | CardCvn::Mastercard21 => {
            // CVR (6) then the counters (8): IAD bytes 2..8 and 10..18.
            input.extend_from_slice(iad.get(2..8)?);
            input.extend_from_slice(iad.get(10..18)?);
        }
    }
    Some(input)
}

/// EMV common session key: `TDES_MK(R with byte 3 = F0) || TDES_MK(R with byte 3 = 0F)`.
fn common_session_key(mk: &[u8], r: [u8; 8]) -> Result<Zeroizing<Vec<u8>>, u16> {
    let mut out = Zeroizing::new(Vec::with_capacity(16));
    out.extend_from_slice(&r);
    out.extend_from_slice(&r);
    out[2] = 0xF0;
    out[10] = 0x0F;
    crypto::tdes_ecb_encrypt(mk, &mut out).map_err(|_| sw::UNKNOWN)?;
    crypto::adjust_odd_parity(&mut out);
    Ok(out)
}

/// The AC session key of `cvn` from MK-AC.
pub fn session_key(
    cvn: CardCvn,
    mk: &[u8],
    atc: [u8; 2],
    un: [u8; 4],
) -> Result<Zeroizing<Vec<u8>>, u16> {
    let [a, b] = atc;
    match cvn {
        CardCvn::Visa10 => Ok(Zeroizing::new(mk.to_vec())),
        CardCvn::Visa18 | CardCvn::Visa22 | CardCvn::Mastercard20 | CardCvn::Mastercard21 => {
            common_session_key(mk, [a, b, 0, 0, 0, 0, 0, 0])
        }
        CardCvn::Mastercard16 | CardCvn::Mastercard17 => {
            common_session_key(mk, [a, b, 0, 0, un[0], un[1], un[2], un[3]])
        }
    }
}

/// The 8-byte cryptogram: ISO/IEC 9797-1 MAC algorithm 3 with the session key.
pub fn cryptogram(cvn: CardCvn, key: &[u8], input: &[u8]) -> Result<[u8; 8], u16> {
    let padding = if cvn == CardCvn::Visa10 {
        MacPadding::Method1
    } else {
        MacPadding::Method2
    };
    crypto::retail_mac(key, &[0; 8], input, padding).map_err(|_| sw::UNKNOWN)
}
