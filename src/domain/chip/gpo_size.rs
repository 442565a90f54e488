//! The GPO answer a card builds from a personalized GPO DGI must fit one short response:
//! ISO/IEC 7816-4 lets a short response carry at most 256 data bytes, and a contactless reader
//! (EMV Book C-3, Kernel 3) does not chain a GPO response.
//!
//! A Visa qVSDC answer (a contactless GPO DGI holding 9F10) is the DGI's objects plus what the
//! card adds per transaction: the ARQC (9F26, 8 bytes), the CID (9F27, 1), the ATC (9F36, 2)
//! and, on the fDDA path (its AIP announces DDA and the card holds an ICC key), the signed
//! dynamic application data 9F4B, as long as the ICC modulus. With a 1408-bit ICC key the SDAD
//! alone is 176 bytes, so the data a reader can also find in the records (VCPS: 57, 5F20, 5F34
//! with an AFL) must stay out of that DGI.
//!
//! Run on the prepared data of both models before any card is touched.

use super::ChipData;
use super::profile::{ChipProfile, DgiContent, Interface};
use crate::domain::finding::Finding;
use crate::domain::tlv;

/// The most data bytes one short response carries.
pub const MAX_RESPONSE_LEN: usize = 256;

/// The size of a BER-TLV with a `tag_len`-byte tag around `len` value bytes.
fn tlv_len(tag_len: usize, len: usize) -> usize {
    let l = match len {
        0..=127 => 1,
        128..=255 => 2,
        _ => 3,
    };
    tag_len + l + len
}

/// The ICC modulus length in bytes: twice the CRT prime p (DGI 8205) when the data holds the
/// private key, else the profile's `icc_key_bits`.
fn icc_modulus_len(chip: &ChipData, profile: &ChipProfile) -> usize {
    chip.dgi(0x8205)
        .map(|d| 2 * d.dgi.value().len())
        .unwrap_or(profile.oda.icc_key_bits.div_ceil(8))
}

/// The size of the response data the card sends for GPO DGI `id` (template 77).
fn response_len(
    chip: &ChipData,
    profile: &ChipProfile,
    id: u16,
    interface: Interface,
) -> Option<usize> {
    let value = chip.dgi(id)?.dgi.value();
    let raw = matches!(
        profile.dgi_rule(id).map(|r| &r.content),
        Some(DgiContent::Tags { raw: true, .. })
    );
    if raw {
        // Fixed-position AIP || AFL, answered as 77 { 82, 94 }.
        let afl = value.len().saturating_sub(2);
        return Some(tlv_len(1, tlv_len(1, 2) + tlv_len(1, afl)));
    }
    let objects = tlv::parse_all(value).ok()?;
    let has = |raw: u32| objects.iter().any(|t| t.tag().raw() == raw);
    let mut inner: usize = objects.iter().map(|t| t.to_bytes().len()).sum();
    if interface == Interface::Contactless && has(0x9F10) {
        for (tag, len) in [(0x9F26, 8), (0x9F27, 1), (0x9F36, 2)] {
            if !has(tag) {
                inner += tlv_len(2, len);
            }
        }
        let aip = objects
            .iter()
            .find(|t| t.tag().raw() == 0x82)
            .and_then(|t| t.value())
            .and_then(|v| v.first().copied())
            .or_else(|| profile.aip(interface).map(|a| a[0]))
            .unwrap_or(0);
        let icc_key = chip.dgi(0x8201).is_some() || chip.dgi(0x8205).is_some();
        if aip & 0x20 != 0 && icc_key && has(0x9F69) {
            inner += tlv_len(2, icc_modulus_len(chip, profile));
        }
    }
    Some(tlv_len(1, inner))
}

/// Refuses a GPO DGI whose answer cannot fit one short response, naming the DGI and the size.
pub fn check(chip: &ChipData, profile: &ChipProfile) -> Result<(), Finding> {
    for g in profile.gpo_answers() {
        let Some(len) = response_len(chip, profile, g.dgi, g.interface) else {
            continue;
        };
        if len > MAX_RESPONSE_LEN {
            return Err(Finding::new(
                format!("{}: dgi.{:04X}", profile.source, g.dgi),
                format!(
                    "the {} GPO answer of DGI {:04X} is {len} bytes with what the card adds (9F26, 9F27, 9F36 and the ICC-modulus-long SDAD 9F4B on the fDDA path): a GPO response carries at most {MAX_RESPONSE_LEN} bytes; move data a reader finds in the records (57, 5F20, 5F34, 9F6E) out of the DGI",
                    g.interface.as_str(),
                    g.dgi
                ),
            ));
        }
    }
    Ok(())
}
