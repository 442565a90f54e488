//! GET PROCESSING OPTIONS over the contactless interface, from the contactless GPO DGIs the card
//! was personalized with (written from EMV Book C-2 / C-3 and the public VCPS notes, not from the
//! preparation):
//!
//! - Mastercard (Kernel 2): DGI B005, fixed-position `AIP || AFL`, answered as format 2
//!   `77 { 82, 94 }`; the terminal then reads the records and asks GENERATE AC (with CDA).
//! - Visa qVSDC (Kernel 3): DGI 9117 (online with ODA) when the terminal's TTQ (9F66, first PDOL
//!   entry by tag) has byte 1 bit 1 "offline data authentication for online authorizations
//!   supported" and the card holds an ICC key, else 9115 (or 9116). The answer is `77` with the
//!   DGI's objects, the card's IAD (9F10), ATC (9F36), CID `80` (9F27) and ARQC (9F26) per the
//!   CVN over the PDOL data; on the ODA path also 9F69 (card authentication related data: fDDA
//!   version `01`, card unpredictable number, CTQ) and 9F4B, the signed dynamic application data
//!   (format 05) whose hash covers `9F37 || 9F02 || 5F2A || 9F69` (fDDA version 01), the ICC
//!   dynamic number being the ATC.
//! - Neither: the contact GPO.

use super::channel::sw;
use super::emv::{self, Context, Transaction};
use super::{Application, cryptogram, reply, tlv};
use crate::domain::tlv::{self as ber};

/// The Mastercard contactless GPO response DGI: AIP (2) || AFL.
const MCHIP_GPO_CONTACTLESS: u16 = 0xB005;

/// The value of `tag` in the PDOL data.
fn pdol_value<'a>(app: &Application, data: &'a [u8], tag: u32) -> Option<&'a [u8]> {
    let pdol = emv::contactless_pdol(app)?;
    let dol = cryptogram::parse_dol(&pdol)?;
    cryptogram::dol_value(&dol, data, tag)
}

/// Contactless GET PROCESSING OPTIONS.
pub fn gpo(
    app: &mut Application,
    tx: &mut Transaction,
    ctx: Context,
    data: &[u8],
    random: [u8; 8],
) -> Vec<u8> {
    let [0x83, len, pdol_data @ ..] = data else {
        return reply(&[], sw::WRONG_DATA);
    };
    if usize::from(*len) != pdol_data.len() {
        return reply(&[], sw::WRONG_LENGTH);
    }
    let expected = emv::contactless_pdol(app).map_or(Some(0), |p| {
        cryptogram::parse_dol(&p).map(|d| d.iter().map(|(_, l)| l).sum())
    });
    if expected != Some(pdol_data.len()) {
        return reply(&[], sw::WRONG_LENGTH);
    }
    if let Some(fixed) = app.dgis.get(&MCHIP_GPO_CONTACTLESS).map(|v| v.to_vec()) {
        let (Some(aip), Some(afl)) = (fixed.get(..2), fixed.get(2..)) else {
            return reply(&[], sw::CONDITIONS);
        };
        let body = [tlv(0x82, aip), tlv(0x94, afl)].concat();
        return emv::finish_gpo(app, tx, pdol_data, aip, tlv(0x77, &body));
    }
    let ttq = pdol_value(app, pdol_data, 0x9F66).unwrap_or_default();
    let wants_oda = ttq.first().is_some_and(|b| b & 0x01 != 0) && emv::has_icc_key(app);
    let dgi = [
        (0x9117, wants_oda),
        (0x9115, true),
        (0x9116, true),
        (0x9117, true),
    ]
    .into_iter()
    .find(|(id, ok)| *ok && app.dgis.contains_key(id))
    .map(|(id, _)| id);
    let Some(dgi) = dgi else {
        return emv::contact_gpo(app, tx, data);
    };
    qvsdc(app, tx, ctx, dgi, pdol_data, random)
}

fn qvsdc(
    app: &mut Application,
    tx: &mut Transaction,
    ctx: Context,
    dgi: u16,
    pdol_data: &[u8],
    random: [u8; 8],
) -> Vec<u8> {
    let Some(objects) = app.dgis.get(&dgi).and_then(|v| ber::parse_all(v).ok()) else {
        return reply(&[], sw::CONDITIONS);
    };
    let Some(aip) = objects
        .iter()
        .find(|t| t.tag().raw() == 0x82)
        .and_then(|t| t.value())
        .map(<[u8]>::to_vec)
    else {
        return reply(&[], sw::CONDITIONS);
    };
    let Some(pdol) = emv::contactless_pdol(app) else {
        return reply(&[], sw::CONDITIONS);
    };
    let Some(elements) = cryptogram::terminal_elements(&pdol, pdol_data) else {
        return reply(&[], sw::CONDITIONS);
    };
    if app.atc == u16::MAX {
        return reply(&[], sw::CONDITIONS);
    }
    app.atc += 1;
    let atc = app.atc.to_be_bytes();
    let un: [u8; 4] = elements[25..29].try_into().unwrap_or([0; 4]);
    let Some(mk) = app.dgis.get(&0x8000).and_then(|k| k.get(..16)) else {
        return reply(&[], sw::CONDITIONS);
    };
    let Ok(key) = cryptogram::session_key(ctx.cvn, mk, atc, un) else {
        return reply(&[], sw::UNKNOWN);
    };
    let template = emv::personalized_iad(app);
    let iad = cryptogram::issuer_application_data(ctx.cvn, template.as_deref(), false);
    let input = cryptogram::ac_input(ctx.cvn, &elements, &aip, atc, &iad);
    let Some(Ok(ac)) = input.map(|i| cryptogram::cryptogram(ctx.cvn, &key, &i)) else {
        return reply(&[], sw::UNKNOWN);
    };
    let mut body: Vec<u8> = objects
        .iter()
        .filter(|t| !matches!(t.tag().raw(), 0x9F10 | 0x9F26 | 0x9F27 | 0x9F36 | 0x9F69))
        .flat_map(|t| t.to_bytes())
        .collect();
    for (tag, value) in [
        (0x9F10, iad.as_slice()),
        (0x9F26, ac.as_slice()),
        (0x9F27, &[0x80][..]),
        (0x9F36, atc.as_slice()),
    ] {
        body.extend_from_slice(&tlv(tag, value));
    }
    if dgi == 0x9117 && aip.first().is_some_and(|b| b & 0x20 != 0) && emv::has_icc_key(app) {
        match fdda(app, pdol_data, atc, &random) {
            Ok(objects) => body.extend_from_slice(&objects),
            Err(status) => return reply(&[], status),
        }
    }
    tx.gpo_done = true;
    tx.set_after_gpo(pdol_data, &aip);
    reply(&tlv(0x77, &body), sw::OK)
}

/// fDDA version 01: `9F69` and the SDAD `9F4B` over `9F37 || 9F02 || 5F2A || 9F69`.
fn fdda(
    app: &Application,
    pdol_data: &[u8],
    atc: [u8; 2],
    random: &[u8; 8],
) -> Result<Vec<u8>, u16> {
    let get = |tag| pdol_value(app, pdol_data, tag).ok_or(sw::CONDITIONS);
    let (un, amount, currency) = (get(0x9F37)?, get(0x9F02)?, get(0x5F2A)?);
    // The personalized 9F69 is a template (fDDA version, card UN, CTQ): the card fills in its
    // own unpredictable number and answers the result in place of the template.
    let template = emv::find_anywhere(app, 0x9F69).filter(|t| t.len() >= 7);
    let version = template.as_ref().map_or(0x01, |t| t[0]);
    let ctq = match &template {
        Some(t) => t[5..7].to_vec(),
        None => emv::find_anywhere(app, 0x9F6C).unwrap_or_else(|| vec![0x00, 0x00]),
    };
    let mut card_data = vec![version];
    card_data.extend_from_slice(&random[..4]);
    card_data.extend_from_slice(ctq.get(..2).unwrap_or(&[0, 0]));
    let mut terminal_data = Vec::with_capacity(20);
    terminal_data.extend_from_slice(un);
    terminal_data.extend_from_slice(amount);
    terminal_data.extend_from_slice(currency);
    terminal_data.extend_from_slice(&card_data);
    // ICC dynamic data: length || ICC dynamic number (the ATC).
    let icc_dd = [&[0x02][..], &atc].concat();
    let sdad = emv::sign_dynamic(app, &icc_dd, &terminal_data)?;
    Ok([tlv(0x9F69, &card_data), tlv(0x9F4B, &sdad)].concat())
}
