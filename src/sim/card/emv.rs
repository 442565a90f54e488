//! The payment application of the virtual card (EMV Book 3 commands), working on the DGIs it was
//! personalized with.
//!
//! - SELECT: the FCI is DGI 9102 (or 9103) — a whole `6F` template, or the `A5` proprietary
//!   template that the card puts under `6F { 84 AID, ... }`. PSE and PPSE list the application.
//! - GET PROCESSING OPTIONS: format 2 (`77`) with the content of DGI 9104 (`82` AIP, `94` AFL),
//!   or, on an M/Chip-style card without 9104, format 1 (`80`) with the fixed-position AIP || AFL
//!   of the contact GPO response DGI A005; the PDOL data length is checked against the PDOL
//!   (`9F38`) of the FCI; the ATC counts up.
//! - READ RECORD: the record DGI `SFI || record`.
//! - GET DATA: `9F36` ATC, `9F17` PIN try counter.
//! - GENERATE AC: MAC algorithm 3 over the CVN's element set (terminal elements by tag out of the
//!   CDOL1 data || AIP || ATC || scheme part, see [`cryptogram`]) with MK-AC (first 16 bytes of
//!   DGI 8000) or its session key; the IAD from the personalized 9F10 (DKI, CVN byte) with the
//!   card's CVR; answer `77 {9F27, 9F36, 9F26, 9F10}`.
//! - INTERNAL AUTHENTICATE: signed dynamic application data (format 05) with the ICC private key
//!   from the CRT DGIs 8201-8205; answer `80 SDAD`.
//! - VERIFY (P2 = 80): the plaintext PIN block against DGI 8010, PIN try counter from 9010.

use std::collections::BTreeMap;

use rsa::traits::PrivateKeyParts;
use rsa::{BoxedUint, PrivateKey};
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::channel::sw;
use super::{Application, CardCvn, contactless, cryptogram, reply, tlv};
use crate::domain::crypto;
use crate::domain::tlv::{self as ber, Tag, Tlv};

/// "1PAY.SYS.DDF01".
pub const PSE: &[u8] = b"1PAY.SYS.DDF01";
/// "2PAY.SYS.DDF01".
pub const PPSE: &[u8] = b"2PAY.SYS.DDF01";

/// The state of the current transaction (reset by SELECT and power-off).
#[derive(Debug, Default)]
pub struct Transaction {
    pub(super) gpo_done: bool,
    verified: bool,
    /// The PDOL data of GET PROCESSING OPTIONS (enters the CDA transaction data hash).
    pdol: Vec<u8>,
    /// The AIP this interface's GPO returned (enters the AC).
    aip: Vec<u8>,
}

impl Transaction {
    /// Records what GET PROCESSING OPTIONS received and returned.
    pub(super) fn set_after_gpo(&mut self, pdol_data: &[u8], aip: &[u8]) {
        self.gpo_done = true;
        self.pdol = pdol_data.to_vec();
        self.aip = aip.to_vec();
        self.verified = false;
    }
}

/// What the application needs to know about the card it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The CVN its cryptograms follow.
    pub cvn: CardCvn,
    /// Whether the terminal talks to it over the contactless interface.
    pub contactless: bool,
}

/// DGIs whose encrypted value was padded (ISO/IEC 9797-1 method 2) before encryption: the RSA
/// key components, and the 8-byte PIN block when it arrives as a 16-byte AES block (SCP03).
/// Keys (8000, 8001) are block-aligned and unpadded.
pub fn is_padded_dgi(id: u16, len: usize) -> bool {
    matches!(id >> 8, 0x81..=0x83) || (id == 0x8010 && len == 16)
}

fn is_record(id: u16) -> bool {
    let [sfi, record] = id.to_be_bytes();
    (1..=30).contains(&sfi) && record != 0
}

/// Checks one DGI as it is stored.
pub fn check_dgi(id: u16, value: &[u8]) -> Result<(), u16> {
    let [sfi, _] = id.to_be_bytes();
    if is_record(id) && sfi <= 10 {
        // The whole value must be one template 70.
        let t = Tlv::from_bytes(value).map_err(|_| sw::WRONG_DATA)?;
        if t.tag().raw() != 0x70 {
            return Err(sw::WRONG_DATA);
        }
    }
    match id {
        0x8000 if value.len() != 48 => Err(sw::WRONG_DATA),
        0x8010 if value.len() != 8 || value.first().is_none_or(|b| b >> 4 != 0x2) => {
            Err(sw::WRONG_DATA)
        }
        0x9010 if value.len() != 2 => Err(sw::CONDITIONS),
        0x9102..=0x9104 => ber::parse_all(value)
            .map(|_| ())
            .map_err(|_| sw::WRONG_DATA),
        _ => Ok(()),
    }
}

/// Checks the whole personalization at the last STORE DATA: 9000 must hold the KCVs of the 8000
/// keys.
pub fn check_personalization(dgis: &BTreeMap<u16, Zeroizing<Vec<u8>>>) -> Result<(), u16> {
    if let (Some(keys), Some(kcvs)) = (dgis.get(&0x8000), dgis.get(&0x9000)) {
        let mut expected = Vec::with_capacity(9);
        for key in keys.chunks(16) {
            expected.extend_from_slice(&crypto::kcv_tdes(key).map_err(|_| sw::WRONG_DATA)?);
        }
        if kcvs.len() != expected.len() || !crypto::ct_eq(kcvs, &expected) {
            return Err(sw::WRONG_DATA);
        }
    }
    Ok(())
}

/// The first object with `tag` in a DGI holding TLVs.
pub(super) fn find_in(value: &[u8], tag: u32) -> Option<Vec<u8>> {
    let tag = Tag::new(tag)?;
    let tlvs = ber::parse_all(value).ok()?;
    ber::find(&tlvs, tag)
        .and_then(|t| t.value())
        .map(<[u8]>::to_vec)
}

/// The first object with `tag` in the application's records.
fn find_in_records(app: &Application, tag: u32) -> Option<Vec<u8>> {
    app.dgis
        .iter()
        .filter(|(id, _)| is_record(**id))
        .find_map(|(_, v)| find_in(v, tag))
}

/// The FCI DGI of the interface: contact 9102 (else 9103), contactless 9103 (else 9102).
fn fci_source(app: &Application, contactless: bool) -> Option<&[u8]> {
    let (first, second) = if contactless {
        (0x9103, 0x9102)
    } else {
        (0x9102, 0x9103)
    };
    app.dgis
        .get(&first)
        .or_else(|| app.dgis.get(&second))
        .map(|v| v.as_slice())
}

/// The FCI of the application on this interface.
pub fn application_fci(app: &Application, contactless: bool) -> Vec<u8> {
    match fci_source(app, contactless) {
        Some(v) if v.first() == Some(&0x6F) => v.to_vec(),
        Some(v) => tlv(0x6F, &[tlv(0x84, &app.aid), v.to_vec()].concat()),
        None => tlv(0x6F, &tlv(0x84, &app.aid)),
    }
}

/// The FCI of the PSE (`88` SFI 1), contact only.
pub fn pse_fci() -> Vec<u8> {
    tlv(
        0x6F,
        &[tlv(0x84, PSE), tlv(0xA5, &tlv(0x88, &[0x01]))].concat(),
    )
}

/// The FCI of the PPSE instance: its personalized DGI 9102 (a whole `6F`, or the `A5` template
/// put under `6F { 84 2PAY.SYS.DDF01 }`), never computed from the payment application (EMV
/// Book B: the PPSE is personalized data). `None` when it holds no 9102.
pub fn ppse_fci(ppse: &Application) -> Option<Vec<u8>> {
    let v = ppse.dgis.get(&0x9102)?;
    Some(match v.first() {
        Some(0x6F) => v.to_vec(),
        _ => tlv(0x6F, &[tlv(0x84, PPSE), v.to_vec()].concat()),
    })
}

fn directory_entry(app: &Application) -> Vec<u8> {
    let mut entry = tlv(0x4F, &app.aid);
    if let Some(label) = fci_source(app, false).and_then(|v| find_in(v, 0x50)) {
        entry.extend_from_slice(&tlv(0x50, &label));
    }
    entry.extend_from_slice(&tlv(0x87, &[0x01]));
    entry
}

/// Total length of the data a DOL asks for.
fn dol_len(dol: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut total = 0usize;
    while i < dol.len() {
        let first = *dol.get(i)?;
        i += 1;
        if first & 0x1F == 0x1F {
            while dol.get(i)? & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
        total += usize::from(*dol.get(i)?);
        i += 1;
    }
    Some(total)
}

/// Processes an application command.
pub fn process(
    app: &mut Application,
    tx: &mut Transaction,
    ctx: Context,
    pse: bool,
    apdu: &[u8],
    random: [u8; 8],
) -> Vec<u8> {
    let [cla, ins, p1, p2, ..] = apdu else {
        return reply(&[], sw::WRONG_LENGTH);
    };
    let data = super::command_data(apdu);
    match (*cla, *ins) {
        (0x00, 0xB2) => read_record(app, pse, *p1, *p2),
        _ if pse => reply(&[], sw::INS),
        (0x80, 0xA8) if ctx.contactless => contactless::gpo(app, tx, ctx, data, random),
        (0x80, 0xA8) => contact_gpo(app, tx, data),
        (0x80, 0xCA) => get_data(app, *p1, *p2),
        (0x80, 0xAE) => generate_ac(app, tx, ctx.cvn, *p1, data, random),
        (0x00, 0x88) => internal_authenticate(app, data, random),
        (0x00, 0x20) => verify(app, tx, *p2, data),
        (0x00 | 0x80, _) => reply(&[], sw::INS),
        _ => reply(&[], sw::CLA),
    }
}

fn read_record(app: &Application, pse: bool, record: u8, p2: u8) -> Vec<u8> {
    if p2 & 0x07 != 0x04 {
        return reply(&[], sw::WRONG_P1P2);
    }
    let sfi = p2 >> 3;
    if pse {
        if sfi == 1 && record == 1 {
            return reply(&tlv(0x70, &tlv(0x61, &directory_entry(app))), sw::OK);
        }
        return reply(&[], sw::RECORD_NOT_FOUND);
    }
    match app.dgis.get(&u16::from_be_bytes([sfi, record])) {
        Some(v) if record != 0 => reply(v, sw::OK),
        _ => reply(&[], sw::RECORD_NOT_FOUND),
    }
}

/// The M/Chip contact GPO response DGI: AIP (2 bytes) || AFL, fixed-position.
const MCHIP_GPO_CONTACT: u16 = 0xA005;

/// The AIP the card reports: `82` of DGI 9104, else the first two bytes of DGI A005.
fn aip_of(app: &Application) -> Vec<u8> {
    app.dgis
        .get(&0x9104)
        .and_then(|v| find_in(v, 0x82))
        .or_else(|| {
            app.dgis
                .get(&MCHIP_GPO_CONTACT)
                .and_then(|v| v.get(..2))
                .map(<[u8]>::to_vec)
        })
        .unwrap_or_else(|| vec![0, 0])
}

/// The PDOL the terminal saw over contactless: 9F38 of the contactless FCI (9103, else 9102).
pub(super) fn contactless_pdol(app: &Application) -> Option<Vec<u8>> {
    fci_source(app, true).and_then(|v| find_in(v, 0x9F38))
}

/// The first object with `tag` in any DGI holding TLVs (records, FCI and GPO DGIs).
pub(super) fn find_anywhere(app: &Application, tag: u32) -> Option<Vec<u8>> {
    app.dgis
        .iter()
        .filter(|(id, _)| **id < 0x8000 || (0x9100..=0x92FF).contains(*id))
        .find_map(|(_, v)| find_in(v, tag))
}

/// Whether the card holds an ICC private key (CRT DGIs 8201-8205).
pub(super) fn has_icc_key(app: &Application) -> bool {
    icc_key(app).is_some()
}

/// Counts the ATC and records the transaction of a GPO answered with `response`.
pub(super) fn finish_gpo(
    app: &mut Application,
    tx: &mut Transaction,
    pdol_data: &[u8],
    aip: &[u8],
    response: Vec<u8>,
) -> Vec<u8> {
    if app.atc == u16::MAX {
        return reply(&[], sw::CONDITIONS);
    }
    app.atc += 1;
    tx.set_after_gpo(pdol_data, aip);
    reply(&response, sw::OK)
}

/// Contact GET PROCESSING OPTIONS.
pub(super) fn contact_gpo(app: &mut Application, tx: &mut Transaction, data: &[u8]) -> Vec<u8> {
    let [0x83, len, pdol_data @ ..] = data else {
        return reply(&[], sw::WRONG_DATA);
    };
    if usize::from(*len) != pdol_data.len() {
        return reply(&[], sw::WRONG_LENGTH);
    }
    let expected = fci_source(app, false)
        .and_then(|v| find_in(v, 0x9F38))
        .map_or(Some(0), |pdol| dol_len(&pdol));
    if expected != Some(pdol_data.len()) {
        return reply(&[], sw::WRONG_LENGTH);
    }
    let response = match (app.dgis.get(&0x9104), app.dgis.get(&MCHIP_GPO_CONTACT)) {
        (Some(body), _) => match body.first() {
            Some(0x77 | 0x80) => body.to_vec(),
            _ => tlv(0x77, body),
        },
        (None, Some(fixed)) if fixed.len() >= 2 => tlv(0x80, fixed),
        _ => return reply(&[], sw::CONDITIONS),
    };
    let aip = aip_of(app);
    finish_gpo(app, tx, pdol_data, &aip, response)
}

fn get_data(app: &Application, p1: u8, p2: u8) -> Vec<u8> {
    match u16::from_be_bytes([p1, p2]) {
        0x9F36 => reply(&tlv(0x9F36, &app.atc.to_be_bytes()), sw::OK),
        0x9F17 => reply(&tlv(0x9F17, &[app.ptc]), sw::OK),
        _ => reply(&[], sw::REF_NOT_FOUND),
    }
}

/// The 9F10 the card was personalized with: DGI 9200 (VSDC IAD options), else the M/Chip-style
/// IAD template DGI A017 (key derivation index and CVN; its real number and layout are the applet
/// vendor's), else the first 9F10 in any DGI holding TLVs (records, contactless GPO DGIs).
pub(super) fn personalized_iad(app: &Application) -> Option<Vec<u8>> {
    [0x9200, 0xA017]
        .iter()
        .find_map(|id| app.dgis.get(id).and_then(|v| find_in(v, 0x9F10)))
        .or_else(|| find_anywhere(app, 0x9F10))
}

fn generate_ac(
    app: &mut Application,
    tx: &Transaction,
    cvn: CardCvn,
    p1: u8,
    data: &[u8],
    random: [u8; 8],
) -> Vec<u8> {
    if !tx.gpo_done {
        return reply(&[], sw::CONDITIONS);
    }
    if let Some(cdol1) = find_in_records(app, 0x8C)
        && dol_len(&cdol1) != Some(data.len())
    {
        return reply(&[], sw::WRONG_LENGTH);
    }
    let Some(mk) = app.dgis.get(&0x8000).and_then(|k| k.get(..16)) else {
        return reply(&[], sw::CONDITIONS);
    };
    let aip = tx.aip.clone();
    let atc = app.atc.to_be_bytes();
    let cdol1 = find_in_records(app, 0x8C).unwrap_or_default();
    // The CVN's terminal elements, by tag out of the CDOL1 data (not the whole CDOL1 data).
    let Some(elements) = cryptogram::terminal_elements(&cdol1, data) else {
        return reply(&[], sw::CONDITIONS);
    };
    let un: [u8; 4] = elements
        .get(25..29)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 4]);
    let Ok(key) = cryptogram::session_key(cvn, mk, atc, un) else {
        return reply(&[], sw::UNKNOWN);
    };
    let template = personalized_iad(app);
    let iad = cryptogram::issuer_application_data(cvn, template.as_deref(), tx.verified);
    let Some(input) = cryptogram::ac_input(cvn, &elements, &aip, atc, &iad) else {
        return reply(&[], sw::UNKNOWN);
    };
    let Ok(ac) = cryptogram::cryptogram(cvn, &key, &input) else {
        return reply(&[], sw::UNKNOWN);
    };
    let cid = match p1 & 0xC0 {
        0xC0 => return reply(&[], sw::WRONG_P1P2),
        t => t,
    };
    // CDA (P1 bit 5, when the AIP announces it): the AC travels inside the signed dynamic data.
    if p1 & 0x10 != 0 && aip.first().is_some_and(|b| b & 0x01 != 0) {
        let objects = [tlv(0x9F27, &[cid]), tlv(0x9F36, &atc), tlv(0x9F10, &iad)];
        let mut h = Sha1::new();
        h.update(&tx.pdol);
        h.update(data);
        for o in &objects {
            h.update(o);
        }
        // ICC dynamic data: Lidn || IDN || CID || AC || transaction data hash code.
        let mut icc_dd = vec![0x08];
        icc_dd.extend_from_slice(&random);
        icc_dd.push(cid);
        icc_dd.extend_from_slice(&ac);
        icc_dd.extend_from_slice(&h.finalize());
        let sdad = match sign_dynamic(app, &icc_dd, &un) {
            Ok(s) => s,
            Err(status) => return reply(&[], status),
        };
        let [cid_tlv, atc_tlv, iad_tlv] = objects;
        let body = [cid_tlv, atc_tlv, tlv(0x9F4B, &sdad), iad_tlv].concat();
        return reply(&tlv(0x77, &body), sw::OK);
    }
    let body = [
        tlv(0x9F27, &[cid]),
        tlv(0x9F36, &atc),
        tlv(0x9F26, &ac),
        tlv(0x9F10, &iad),
    ]
    .concat();
    reply(&tlv(0x77, &body), sw::OK)
}

/// The ICC private key from the CRT DGIs; the public exponent (3 or 65537) is the one that
/// reproduces `d mod (p-1)`.
fn icc_key(app: &Application) -> Option<PrivateKey> {
    let get = |id| app.dgis.get(&id).map(|v| v.as_slice());
    let (p, q, dp) = (get(0x8205)?, get(0x8204)?, get(0x8203)?);
    let dp = BoxedUint::from_be_slice_vartime(dp);
    [3u32, 65537].into_iter().find_map(|e| {
        let key = PrivateKey::from_p_q(
            BoxedUint::from_be_slice_vartime(p),
            BoxedUint::from_be_slice_vartime(q),
            BoxedUint::from(e),
        )
        .ok()?;
        (key.dp()? == &dp).then_some(key)
    })
}

fn internal_authenticate(app: &Application, ddol_data: &[u8], random: [u8; 8]) -> Vec<u8> {
    // ICC dynamic data: length || ICC dynamic number (8 bytes).
    let mut icc_dd = vec![0x08];
    icc_dd.extend_from_slice(&random);
    match sign_dynamic(app, &icc_dd, ddol_data) {
        Ok(sdad) => reply(&tlv(0x80, &sdad), sw::OK),
        Err(status) => reply(&[], status),
    }
}

/// Signed dynamic application data (format 05, SHA-1) over the ICC dynamic data `icc_dd`, the
/// hash also covering `after` (DDOL data for DDA, the unpredictable number for CDA).
pub(super) fn sign_dynamic(app: &Application, icc_dd: &[u8], after: &[u8]) -> Result<Vec<u8>, u16> {
    let key = icc_key(app).ok_or(sw::CONDITIONS)?;
    use rsa::traits::PublicKeyParts;
    let k = key.size();
    let pad_len = k.checked_sub(25 + icc_dd.len()).ok_or(sw::CONDITIONS)?;
    let mut block = Vec::with_capacity(k);
    block.extend_from_slice(&[0x6A, 0x05, 0x01]);
    block.push(u8::try_from(icc_dd.len()).map_err(|_| sw::CONDITIONS)?);
    block.extend_from_slice(icc_dd);
    block.resize(block.len() + pad_len, 0xBB);
    let mut h = Sha1::new();
    h.update(&block[1..]);
    h.update(after);
    block.extend_from_slice(&h.finalize());
    block.push(0xBC);
    let m = BoxedUint::from_be_slice(&block, key.n_bits_precision()).map_err(|_| sw::UNKNOWN)?;
    let no_rng: Option<&mut dyn rsa::rand_core::TryCryptoRng<Error = core::convert::Infallible>> =
        None;
    let s = rsa::hazmat::rsa_decrypt_and_check(&key, no_rng, &m).map_err(|_| sw::UNKNOWN)?;
    let bytes = s.to_be_bytes();
    let tail = bytes.get(bytes.len().saturating_sub(k)..).unwrap_or(&[]);
    let mut sdad = vec![0u8; k - tail.len()];
    sdad.extend_from_slice(tail);
    Ok(sdad)
}

fn verify(app: &mut Application, tx: &mut Transaction, p2: u8, data: &[u8]) -> Vec<u8> {
    if p2 != 0x80 {
        return reply(&[], sw::WRONG_P1P2);
    }
    let Some(reference) = app.dgis.get(&0x8010) else {
        return reply(&[], sw::REF_NOT_FOUND);
    };
    if data.len() != 8 {
        return reply(&[], sw::WRONG_LENGTH);
    }
    if app.ptc == 0 {
        return reply(&[], sw::BLOCKED);
    }
    if crypto::ct_eq(reference, data) {
        app.ptc = app
            .dgis
            .get(&0x9010)
            .and_then(|v| v.get(1).copied())
            .unwrap_or(3);
        tx.verified = true;
        reply(&[], sw::OK)
    } else {
        app.ptc -= 1;
        reply(&[], 0x63C0 | u16::from(app.ptc.min(0x0F)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dgis: &[(u16, &[u8])]) -> Application {
        Application {
            aid: vec![0xA0, 0, 0, 0, 0x04, 0x10, 0x10],
            dgis: dgis
                .iter()
                .map(|(id, v)| (*id, Zeroizing::new(v.to_vec())))
                .collect(),
            atc: 0,
            ptc: 3,
        }
    }

    #[test]
    fn gpo_answers_format_1_from_the_mchip_fixed_position_dgi() {
        // AIP 1980, AFL 08 01 01 00: the M/Chip contact GPO response DGI, no 9104.
        let mut a = app(&[(0xA005, &[0x19, 0x80, 0x08, 0x01, 0x01, 0x00])]);
        let mut tx = Transaction::default();
        let r = contact_gpo(&mut a, &mut tx, &[0x83, 0x00]);
        assert_eq!(
            r,
            [0x80, 0x06, 0x19, 0x80, 0x08, 0x01, 0x01, 0x00, 0x90, 0x00]
        );
        assert_eq!(a.atc, 1);
        assert_eq!(aip_of(&a), [0x19, 0x80]);
    }

    #[test]
    fn gpo_prefers_9104_and_refuses_without_either() {
        let mut a = app(&[
            (
                0x9104,
                &[0x82, 0x02, 0x39, 0x00, 0x94, 0x04, 0x10, 0x01, 0x01, 0x00],
            ),
            (0xA005, &[0x19, 0x80, 0x08, 0x01, 0x01, 0x00]),
        ]);
        let r = contact_gpo(&mut a, &mut Transaction::default(), &[0x83, 0x00]);
        assert_eq!(r.first(), Some(&0x77));
        assert_eq!(aip_of(&a), [0x39, 0x00]);
        let mut empty = app(&[]);
        let r = contact_gpo(&mut empty, &mut Transaction::default(), &[0x83, 0x00]);
        assert_eq!(r, [0x69, 0x85]);
    }
}
