//! The chip data preview for the GUI and the command line: each DGI with its name, flags and
//! length, and its BER-TLV content as a tree with tag names from the dictionary.
//!
//! Masked by default, per tag sensitivity: the PAN shows its first 6 and last 4 digits inside
//! 5A, 57, 56, 9F6B; discretionary data (where iCVV and PVV sit: 57, 56, 9F6B, 9F1F) shows as
//! `*`; 5F20 stays visible; other personal or secret tags show as `*`. Key and PIN DGIs (8000,
//! 8010, 82xx, any DGI the profile encrypts) show only their length and, for 8000, the KCVs —
//! even on request. Clear values of the other DGIs only with `reveal` (callers allow it for test
//! keys only).

use serde::Serialize;

use super::ChipData;
use crate::domain::mask;
use crate::domain::tags::{self, Format, Sensitivity};
use crate::domain::tlv::{self, Tag};

/// One TLV node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlvNode {
    /// Tag in hex (`9F1F`).
    pub tag: String,
    /// Dictionary name, if known.
    pub name: Option<&'static str>,
    /// The value as shown: masked or clear; hex for binary, text for alphanumeric tags; empty
    /// for templates.
    pub value: String,
    /// Children of a template.
    pub children: Vec<TlvNode>,
    /// The value decoded for humans (8E: each CVM rule named, EMV Book 3 Annex C3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decoded: Vec<String>,
}

/// One DGI as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DgiPreview {
    /// DGI id in hex.
    pub dgi: String,
    /// Dictionary name, if known.
    pub name: Option<&'static str>,
    /// Sent encrypted.
    pub encrypted: bool,
    /// Value length in bytes.
    pub length: usize,
    /// The clear value in hex: only on request and never for key or PIN DGIs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Key check values (8000: AC, SMI, SMC), the only thing shown of keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
    /// TLV content, when the value is BER-TLV and may be shown.
    pub tlv: Vec<TlvNode>,
}

/// True for DGIs whose value is never shown: key and PIN material, or anything encrypted.
pub fn is_secret_dgi(id: u16, encrypted: bool) -> bool {
    encrypted || tags::dgi_is_secret(id)
}

/// The preview of all DGIs, masked unless `reveal`.
pub fn preview(chip: &ChipData, reveal: bool) -> Vec<DgiPreview> {
    chip.dgis
        .iter()
        .map(|d| {
            let id = d.dgi.id();
            let value = d.dgi.value();
            let name = tags::dgi_info(id).map(|i| i.name);
            if is_secret_dgi(id, d.encrypt) {
                let kcv = (id == 0x8000)
                    .then(|| {
                        chip.kcvs.map(|k| {
                            format!(
                                "{} {} {}",
                                hex::encode_upper(k.ac),
                                hex::encode_upper(k.smi),
                                hex::encode_upper(k.smc)
                            )
                        })
                    })
                    .flatten();
                return DgiPreview {
                    dgi: format!("{id:04X}"),
                    name,
                    encrypted: d.encrypt,
                    length: value.len(),
                    value: None,
                    kcv,
                    tlv: Vec::new(),
                };
            }
            let tlv = tlv::parse_all(value)
                .map(|tlvs| tlvs.iter().map(|t| node(t, reveal)).collect())
                .unwrap_or_default();
            DgiPreview {
                dgi: format!("{id:04X}"),
                name,
                encrypted: d.encrypt,
                length: value.len(),
                value: reveal.then(|| hex::encode_upper(value)),
                kcv: None,
                tlv,
            }
        })
        .collect()
}

fn node(t: &tlv::Tlv, reveal: bool) -> TlvNode {
    let tag = t.tag();
    let info = tags::lookup(tag);
    let children = t
        .children()
        .map(|c| c.iter().map(|c| node(c, reveal)).collect())
        .unwrap_or_default();
    let value = t.value().map(|v| show(tag, v, reveal)).unwrap_or_default();
    let decoded = match (tag.raw(), t.value()) {
        (0x8E, Some(v)) => super::cvm::CvmList::parse(v)
            .map(|l| l.describe())
            .unwrap_or_else(|e| vec![e]),
        _ => Vec::new(),
    };
    TlvNode {
        tag: tag.to_string(),
        name: info.map(|i| i.name),
        value,
        children,
        decoded,
    }
}

fn text(v: &[u8]) -> String {
    v.iter()
        .map(|b| {
            if (0x20..0x7F).contains(b) {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect()
}

/// Digits of a BCD / compressed numeric value, `F` padding dropped, `D` kept as separator.
fn nibbles(v: &[u8]) -> String {
    v.iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .filter(|n| *n != 0x0F)
        .map(|n| match n {
            0..=9 => char::from(b'0' + n),
            0x0D => 'D',
            _ => '?',
        })
        .collect()
}

/// Masks a track 2 style string `PAN<sep>YYMM SC DD`: PAN first 6 / last 4, DD as `*`.
fn mask_track2(s: &str, sep: char) -> String {
    match s.split_once(sep) {
        Some((pan, rest)) => {
            let keep = rest.len().min(7);
            format!(
                "{}{sep}{}{}",
                mask::mask_pan(pan),
                &rest[..keep],
                mask::stars(rest.len() - keep)
            )
        }
        None => mask::stars(s.len()),
    }
}

/// Masks a track 1 body `B PAN ^ NAME ^ YYMM SC DD`.
fn mask_track1(s: &str) -> String {
    let mut parts = s.splitn(3, '^');
    let head = parts.next().unwrap_or("");
    let (Some(name), Some(rest)) = (parts.next(), parts.next()) else {
        return mask::stars(s.len());
    };
    let (fc, pan) = head.split_at(head.len().min(1));
    let keep = rest.len().min(7);
    format!(
        "{fc}{}^{name}^{}{}",
        mask::mask_pan(pan),
        rest.get(..keep).unwrap_or(""),
        mask::stars(rest.len() - keep)
    )
}

fn show(tag: Tag, v: &[u8], reveal: bool) -> String {
    let info = tags::lookup(tag);
    let format = info.map(|i| i.format);
    let clear = || match format {
        Some(Format::AlphaNumeric | Format::AlphaNumericSpecial) => text(v),
        Some(Format::CompressedNumeric) if tag.raw() == 0x5A => nibbles(v),
        _ => hex::encode_upper(v),
    };
    if reveal {
        return match tag.raw() {
            0x57 => nibbles(v),
            _ => clear(),
        };
    }
    match (tag.raw(), info.map(|i| i.sensitivity)) {
        (0x5A, _) => mask::mask_pan(&nibbles(v)),
        (0x57 | 0x9F6B, _) => {
            let s = nibbles(v);
            if s.contains('D') {
                mask_track2(&s, 'D')
            } else {
                mask::stars(s.len())
            }
        }
        (0x56, _) => mask_track1(&text(v)),
        (0x5F20, _) => text(v),
        (_, Some(Sensitivity::Public)) => clear(),
        // Unknown, personal, track or secret data: length only.
        _ => mask::stars(v.len() * 2),
    }
}
