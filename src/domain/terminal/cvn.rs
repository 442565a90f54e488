//! Issuer application data (9F10) and the AC input per cryptogram version, terminal side.
//!
//! IAD layouts (docs/domain.md §2.3, §10):
//! - Visa format 0/1/3: `06 DKI CVN 03 CVR(3) [IDD]`; CVN byte `0A` = CVN 10, `12` = CVN 18.
//! - Visa format 2 (32 bytes): `1F CVN DKI CVR(5) IDD..`; CVN byte `22` = CVN 22 (Visa codes the
//!   CVN number as hex digits; jPOS `VISACryptogram` maps `0x22` to CVN '22').
//! - Mastercard M/Chip: `DKI CVN CVR(6) DAC/IDN(2) counters(8)` (18 bytes, longer with more
//!   counters); CVN byte `0001 0 ss c`: `10` CVN 16, `11` CVN 17, `14` CVN 20, `15` CVN 21.
//!
//! AC input (knovichikhin/pyemv `cvn.py`): `9F02 9F03 9F1A 95 5F2A 9A 9C 9F37` (the values the
//! terminal sent, by tag, whatever else the CDOL1 asks for) `|| 82 || 9F36 ||` scheme part: Visa
//! CVN 10 the 4-byte CVR (IAD bytes 3..7), CVN 18/22 the whole IAD, Mastercard the 6-byte CVR
//! (IAD bytes 2..8), plus the 8 counter bytes (IAD bytes 10..18) for CVN 17/21.

use zeroize::Zeroizing;

use crate::domain::emv_keys::Cvn;

/// The terminal elements of every CVN's AC input, in order, with their lengths.
pub const AC_ELEMENTS: [(u32, usize); 8] = [
    (0x9F02, 6),
    (0x9F03, 6),
    (0x9F1A, 2),
    (0x95, 5),
    (0x5F2A, 2),
    (0x9A, 3),
    (0x9C, 1),
    (0x9F37, 4),
];

/// What the IAD says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IadInfo {
    /// The cryptogram version.
    pub cvn: Cvn,
    /// The derivation key index (which issuer master key the host uses).
    pub dki: u8,
}

const VISA_RID: [u8; 5] = [0xA0, 0x00, 0x00, 0x00, 0x03];
const MASTERCARD_RID: [u8; 5] = [0xA0, 0x00, 0x00, 0x00, 0x04];

fn visa(iad: &[u8]) -> Result<IadInfo, String> {
    match iad {
        [0x06, dki, cvn, 0x03, _, _, _, ..] => match cvn {
            0x0A => Ok(IadInfo {
                cvn: Cvn::Visa10,
                dki: *dki,
            }),
            0x12 => Ok(IadInfo {
                cvn: Cvn::Visa18,
                dki: *dki,
            }),
            0x16 | 0x22 => Err(format!(
                "Visa IAD format 0/1/3 with CVN byte {cvn:02X}: CVN 22 is coded 22 in IAD format 2 (1F 22 DKI ..)"
            )),
            _ => Err(format!(
                "Visa IAD format 0/1/3 with unknown CVN byte {cvn:02X}"
            )),
        },
        [0x1F, cvn, dki, ..] if iad.len() == 32 => match cvn {
            0x22 => Ok(IadInfo {
                cvn: Cvn::Visa22,
                dki: *dki,
            }),
            _ => Err(format!("Visa IAD format 2 with unknown CVN byte {cvn:02X}")),
        },
        _ => Err(format!(
            "9F10 ({} bytes) is neither Visa format 0/1/3 (06 ..) nor format 2 (1F .., 32 bytes)",
            iad.len()
        )),
    }
}

fn mastercard(iad: &[u8]) -> Result<IadInfo, String> {
    let [dki, cvn, ..] = iad else {
        return Err("9F10 too short for a Mastercard IAD".into());
    };
    if iad.len() < 18 {
        return Err(format!(
            "Mastercard IAD is {} bytes, needs at least 18",
            iad.len()
        ));
    }
    let cvn = match cvn {
        0x10 => Cvn::Mastercard16,
        0x11 => Cvn::Mastercard17,
        0x14 => Cvn::Mastercard20,
        0x15 => Cvn::Mastercard21,
        other => return Err(format!("Mastercard IAD with unknown CVN byte {other:02X}")),
    };
    Ok(IadInfo { cvn, dki: *dki })
}

/// Decodes the IAD of an application with AID `aid` (its RID picks the scheme's layout).
pub fn decode(aid: &[u8], iad: &[u8]) -> Result<IadInfo, String> {
    match aid.get(..5) {
        Some(rid) if rid == VISA_RID => visa(iad),
        Some(rid) if rid == MASTERCARD_RID => mastercard(iad),
        _ => visa(iad).or_else(|_| mastercard(iad)),
    }
}

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

/// The AC elements out of the data sent for `cdol1`; the error names the first element the CDOL1
/// lacks (or gives with another length).
pub fn ac_elements(cdol1: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let dol = parse_dol(cdol1).ok_or("CDOL1 (8C) is not a valid DOL")?;
    let mut out = Zeroizing::new(Vec::with_capacity(29));
    for (tag, len) in AC_ELEMENTS {
        let mut at = 0;
        let mut found = None;
        for (t, l) in &dol {
            if *t == tag {
                found = Some((at, *l));
                break;
            }
            at += l;
        }
        match found {
            Some((at, l)) if l == len => {
                out.extend_from_slice(data.get(at..at + l).ok_or("CDOL1 data too short")?)
            }
            _ => {
                return Err(format!(
                    "CDOL1 (8C) lacks {tag:X} ({len} bytes), an AC input element"
                ));
            }
        }
    }
    Ok(out)
}

/// The scheme part of the AC input for `cvn`, out of the IAD.
pub fn scheme_part(cvn: Cvn, iad: &[u8]) -> Result<Vec<u8>, String> {
    let short = || format!("9F10 ({} bytes) too short for {cvn}", iad.len());
    Ok(match cvn {
        Cvn::Visa10 => iad.get(3..7).ok_or_else(short)?.to_vec(),
        Cvn::Visa18 | Cvn::Visa22 => iad.to_vec(),
        Cvn::Mastercard16 | Cvn::Mastercard20 => iad.get(2..8).ok_or_else(short)?.to_vec(),
        Cvn::Mastercard17 | Cvn::Mastercard21 => {
            let mut v = iad.get(2..8).ok_or_else(short)?.to_vec();
            v.extend_from_slice(iad.get(10..18).ok_or_else(short)?);
            v
        }
    })
}

/// The whole AC input: elements || AIP || ATC || scheme part.
pub fn ac_input(
    cvn: Cvn,
    elements: &[u8],
    aip: [u8; 2],
    atc: [u8; 2],
    iad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut input = Zeroizing::new(Vec::with_capacity(elements.len() + 40));
    input.extend_from_slice(elements);
    input.extend_from_slice(&aip);
    input.extend_from_slice(&atc);
    input.extend_from_slice(&scheme_part(cvn, iad)?);
    Ok(input)
}
