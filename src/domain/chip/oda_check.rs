//! Offline data authentication of prepared chip data, checked per interface before any card is
//! touched: for every GPO answer whose AIP asks for ODA, the records its AFL lists must hold the
//! issuer certificate the CA key recovers (EMV Book 2 §5.3) and a signature over *that*
//! answer's static data (the records its AFL flags plus, when 9F4A lists 82, its AIP; Book 3
//! §10.3): the ICC certificate (§6.3) for DDA/CDA, the signed static application data for SDA.
//!
//! Model 2 runs it on the issuer's data (the CA key from the key store); it reads the DGIs as
//! a terminal reads the card, and shares only the codecs and the certificate recovery of
//! [`crate::domain::oda`] with the preparation.

use super::ChipData;
use super::profile::{ChipProfile, DgiContent, aip_asks_for_oda};
use crate::domain::oda::{self, CaPublicKey};
use crate::domain::order::Order;
use crate::domain::tlv::{self, Tlv};

/// One GPO answer as read from the prepared DGIs.
struct Answer {
    dgi: u16,
    aip: [u8; 2],
    afl: Vec<u8>,
}

fn answers(chip: &ChipData, profile: &ChipProfile) -> Result<Vec<Answer>, String> {
    let mut out = Vec::new();
    for g in profile.gpo_answers() {
        let Some(d) = chip.dgi(g.dgi) else { continue };
        let v = d.dgi.value();
        let raw = matches!(
            profile.dgi_rule(g.dgi).map(|r| &r.content),
            Some(DgiContent::Tags { raw: true, .. })
        );
        let (aip, afl) = if raw {
            let (aip, afl) = v
                .split_first_chunk::<2>()
                .ok_or_else(|| format!("DGI {:04X}: too short for AIP and AFL", g.dgi))?;
            (*aip, afl.to_vec())
        } else {
            let t = tlv::parse_all(v).map_err(|e| format!("DGI {:04X}: {e}", g.dgi))?;
            let aip = tlv::find(&t, crate::tag!(0x82))
                .and_then(Tlv::value)
                .and_then(|a| <[u8; 2]>::try_from(a).ok())
                .ok_or_else(|| format!("DGI {:04X}: no 2-byte AIP (82)", g.dgi))?;
            let afl = tlv::find(&t, crate::tag!(0x94))
                .and_then(Tlv::value)
                .ok_or_else(|| format!("DGI {:04X}: no AFL (94)", g.dgi))?;
            (aip, afl.to_vec())
        };
        out.push(Answer {
            dgi: g.dgi,
            aip,
            afl,
        });
    }
    Ok(out)
}

/// The records an AFL lists, as (SFI, record number, counts for ODA).
fn afl_records(afl: &[u8]) -> Result<Vec<(u8, u8, bool)>, String> {
    if !afl.len().is_multiple_of(4) {
        return Err(format!("AFL of {} bytes is not whole entries", afl.len()));
    }
    let mut out = Vec::new();
    for e in afl.chunks_exact(4) {
        let sfi = e[0] >> 3;
        for (n, rec) in (e[1]..=e[2]).enumerate() {
            out.push((sfi, rec, n < usize::from(e[3])));
        }
    }
    Ok(out)
}

/// A tag's value in the records an AFL lists.
fn in_records(chip: &ChipData, recs: &[(u8, u8, bool)], raw: u32) -> Option<Vec<u8>> {
    let tag = crate::domain::tlv::Tag::new(raw)?;
    recs.iter().find_map(|(sfi, rec, _)| {
        let d = chip.dgi(u16::from_be_bytes([*sfi, *rec]))?;
        let t = tlv::parse_all(d.dgi.value()).ok()?;
        tlv::find(&t, tag).and_then(Tlv::value).map(<[u8]>::to_vec)
    })
}

/// Checks ODA for every GPO answer of `chip` that asks for it. `ca` finds the CA key by RID
/// and index.
pub fn check(
    chip: &ChipData,
    profile: &ChipProfile,
    order: &Order,
    ca: &dyn Fn([u8; 5], u8) -> Option<CaPublicKey>,
) -> Result<(), String> {
    let rid: [u8; 5] = chip
        .aid
        .get(..5)
        .and_then(|r| r.try_into().ok())
        .ok_or("the AID is shorter than a RID")?;
    for a in answers(chip, profile)? {
        if !aip_asks_for_oda(a.aip) {
            continue;
        }
        check_answer(chip, order, &a, rid, ca).map_err(|e| {
            format!(
                "GPO answer {:04X} (AIP {}) asks for ODA: {e}",
                a.dgi,
                hex::encode_upper(a.aip)
            )
        })?;
    }
    Ok(())
}

fn check_answer(
    chip: &ChipData,
    order: &Order,
    a: &Answer,
    rid: [u8; 5],
    ca: &dyn Fn([u8; 5], u8) -> Option<CaPublicKey>,
) -> Result<(), String> {
    let recs = afl_records(&a.afl)?;
    let get = |t: u32| in_records(chip, &recs, t);
    let need = |t: u32| get(t).ok_or_else(|| format!("no tag {t:X} in the records its AFL lists"));
    let index = match need(0x8F)?.as_slice() {
        [i] => *i,
        _ => return Err("8F is not one byte".into()),
    };
    let ca_key = ca(rid, index).ok_or_else(|| {
        format!(
            "the key store knows no CA key for RID {} index {index:02X}",
            hex::encode_upper(rid)
        )
    })?;
    let issuer = oda::recover_issuer_certificate(
        &ca_key.key,
        &need(0x90)?,
        &get(0x92).unwrap_or_default(),
        &need(0x9F32)?,
    )
    .map_err(|e| format!("issuer certificate: {e}"))?;
    let pan = order.pan.reveal();
    if !issuer.issuer_id_matches_pan(pan) {
        return Err("the issuer certificate's issuer identifier is not the PAN's".into());
    }
    let card = u16::from(order.exp.yy) * 100 + u16::from(order.exp.mm);
    if issuer.fields.expiry.yymm() < card {
        return Err("the issuer certificate expires before the card".into());
    }
    let mut static_data = Vec::new();
    for (sfi, rec, for_oda) in &recs {
        if !for_oda {
            continue;
        }
        let d = chip
            .dgi(u16::from_be_bytes([*sfi, *rec]))
            .ok_or_else(|| format!("record SFI {sfi} number {rec} is missing"))?;
        let v = d.dgi.value();
        let t =
            tlv::Tlv::from_bytes(v).map_err(|e| format!("record SFI {sfi} number {rec}: {e}"))?;
        if t.tag() != crate::tag!(0x70) {
            return Err(format!("record SFI {sfi} number {rec} is not template 70"));
        }
        // SFI 1-10: the value of template 70 (the record is exactly one TLV: its value ends it).
        let value = v
            .get(v.len().saturating_sub(t.value_len())..)
            .unwrap_or_default();
        static_data.extend_from_slice(value);
    }
    if let Some(list) = get(0x9F4A) {
        for t in list {
            if t != 0x82 {
                return Err("9F4A lists a tag other than 82".into());
            }
            static_data.extend_from_slice(&a.aip);
        }
    }
    if let Some(ssad) = get(0x93) {
        oda::recover_static_application_data(&issuer.issuer_key, &ssad, &static_data)
            .map_err(|e| format!("signed static application data: {e}"))?;
        return Ok(());
    }
    let icc = oda::recover_icc_certificate(
        &issuer.issuer_key,
        &need(0x9F46)?,
        &get(0x9F48).unwrap_or_default(),
        &need(0x9F47)?,
        &static_data,
    )
    .map_err(|e| format!("ICC certificate: {e}"))?;
    if !icc.pan_matches(pan) {
        return Err("the ICC certificate's PAN is not the card's".into());
    }
    if icc.fields.expiry.yymm() > issuer.fields.expiry.yymm() {
        return Err("the ICC certificate expires after the issuer certificate".into());
    }
    Ok(())
}
