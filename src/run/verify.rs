//! Read-back verification: reads a card as a terminal does (the domain's [`ReadBackSession`])
//! over a [`CardTransport`], then checks what it read against the order and the prepared chip
//! data, and the ARQC against the issuer master key (test keys only).
//!
//! The checks name fields, tags and DGIs; never values.

use zeroize::Zeroizing;

use crate::devices::transport::{CardTransport, TransportError, exchange};
use crate::domain::chip::ChipData;
use crate::domain::emv_keys::{DesKey16, MkdOption};
use crate::domain::keystore::CardKeyStore;
use crate::domain::oda::CaPublicKey;
use crate::domain::order::Order;
use crate::domain::readback::{
    ArqcEvidence, Check, Interface, Outcome, ReadBack, ReadBackSession, ReadStep, TerminalData,
    verify_arqc_mk,
};

/// AIDs tried when the PPSE lists none (Visa and Mastercard credit/debit).
pub const KNOWN_AIDS: [&[u8]; 4] = [
    &[0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10],
    &[0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10],
    &[0xA0, 0x00, 0x00, 0x00, 0x03, 0x20, 0x10],
    &[0xA0, 0x00, 0x00, 0x00, 0x04, 0x30, 0x60],
];

/// A terminal with a fresh unpredictable number and fixed transaction data.
pub fn terminal() -> TerminalData {
    let mut un = [0u8; 4];
    if getrandom::fill(&mut un).is_err() {
        un = [0x5A; 4];
    }
    TerminalData {
        un,
        date: [0x25, 0x01, 0x01],
        amount: [0, 0, 0, 0, 0x01, 0x00],
        country: [0x08, 0x40],
    }
}

/// Reads the card as a terminal over the contact interface: PPSE/AID (`first` tried first),
/// GPO, records, ODA with `ca`, DDA where offered, GET DATA, GENERATE AC.
pub fn read_card(
    transport: &mut dyn CardTransport,
    ca: Option<CaPublicKey>,
    first: Option<&[u8]>,
) -> Result<ReadBack, TransportError> {
    read_card_on(transport, Interface::Contact, ca, first)
}

/// Reads the card as a terminal over `interface` (see [`ReadBackSession::start_on`]).
pub fn read_card_on(
    transport: &mut dyn CardTransport,
    interface: Interface,
    ca: Option<CaPublicKey>,
    first: Option<&[u8]>,
) -> Result<ReadBack, TransportError> {
    let mut candidates: Vec<Vec<u8>> = first.map(<[u8]>::to_vec).into_iter().collect();
    candidates.extend(
        KNOWN_AIDS
            .iter()
            .filter(|a| Some(**a) != first)
            .map(|a| a.to_vec()),
    );
    let (mut session, mut command) =
        ReadBackSession::start_on(interface, terminal(), ca, candidates);
    loop {
        let response = exchange(transport, &command.to_bytes())?.response;
        match session.handle(&response) {
            ReadStep::Transmit(next) => command = next,
            ReadStep::Done(r) => return Ok(*r),
        }
    }
}

/// The CA public key for a card's chain: the one its chip data names, else the first of the
/// AID's RID in the key store.
pub fn ca_for(keys: &dyn CardKeyStore, chip: Option<&ChipData>, aid: &[u8]) -> Option<CaPublicKey> {
    let cas = keys.ca_public_keys();
    if let Some(oda) = chip.and_then(|c| c.oda.as_ref()) {
        return cas
            .into_iter()
            .find(|k| k.rid == oda.rid && k.index == oda.ca_index);
    }
    let rid = aid.get(..5)?;
    cas.into_iter().find(|k| k.rid.as_slice() == rid)
}

/// The key that verifies the card's ARQC: the card's MK-AC, derived by the key store from its
/// IMK-AC (the IMK stays in the store; stores refuse live keys for read-back).
pub struct ArqcKey {
    /// The card's ICC master key for application cryptograms, zeroized on drop.
    pub mk: DesKey16,
    /// ICC master key derivation option.
    pub option: MkdOption,
    /// The key index, for the check's name.
    pub index: u32,
}

/// The ARQC key of `order` (its PAN and PSN) when the store gives it; otherwise why not.
pub fn arqc_key(
    keys: &dyn CardKeyStore,
    order: &Order,
    option: MkdOption,
) -> Result<ArqcKey, String> {
    let index = order.payment_application.derivation_key_index.unwrap_or(1);
    keys.arqc_master_key(index, option, &order.pan, order.psn)
        .map(|mk| ArqcKey { mk, option, index })
        .map_err(|e| e.to_string())
}

/// Adds the checks against the order (PAN, expiry, PSN), the prepared records, and the ARQC.
pub fn check_against(
    rb: &mut ReadBack,
    order: &Order,
    chip: Option<&ChipData>,
    key: Result<ArqcKey, String>,
) {
    let pan = rb
        .pan
        .clone()
        .unwrap_or_else(|| Zeroizing::new(String::new()));
    rb.expect_same("order: PAN (5A)", pan.as_str() == order.pan.reveal());
    let exp = order.exp.to_string();
    let same_exp = rb.card.expiry.as_deref() == Some(exp.as_str());
    rb.expect_same("order: expiry (5F24)", same_exp);
    let psn = order.psn.to_string();
    let same_psn = rb.card.psn.as_deref() == Some(psn.as_str());
    rb.expect_same("order: PSN (5F34)", same_psn);
    if let Some(chip) = chip {
        rb.compare_records(chip.dgis.iter().map(|d| &d.dgi));
    }
    if let Some(arqc) = &rb.arqc {
        let checks = iad_checks(arqc, order);
        rb.checks.extend(checks);
    }
    let (name, outcome) = match (&rb.arqc, key) {
        (None, _) => (
            "ARQC (9F26)".to_string(),
            Outcome::Skipped("no ARQC".into()),
        ),
        (_, Err(why)) => ("ARQC (9F26)".to_string(), Outcome::Skipped(why)),
        (Some(arqc), Ok(k)) => match arqc.iad_info() {
            Err(why) => ("ARQC (9F26)".to_string(), Outcome::Fail(why)),
            Ok(info) => (
                format!("ARQC (9F26) per {} with imk-ac #{}", info.cvn, k.index),
                verify_arqc_mk(arqc, &k.mk, info.cvn, &format!("MK-AC ({:?})", k.option)),
            ),
        },
    };
    rb.checks.push(Check { name, outcome });
}

/// The IAD checks: its CVN is one the terminal knows, its DKI is the order's
/// `derivationKeyIndex` (the issuer host picks its IMK by it).
fn iad_checks(arqc: &ArqcEvidence, order: &Order) -> Vec<Check> {
    let info = arqc.iad_info();
    let cvn = Check {
        name: "IAD (9F10): CVN coding".into(),
        outcome: match &info {
            Ok(_) => Outcome::Pass,
            Err(why) => Outcome::Fail(why.clone()),
        },
    };
    let dki = Check {
        name: "IAD (9F10): DKI = paymentApplication.derivationKeyIndex".into(),
        outcome: match (&info, order.payment_application.derivation_key_index) {
            (Err(_), _) => Outcome::Skipped("IAD not decoded".into()),
            (Ok(_), None) => Outcome::Skipped("the order gives no derivationKeyIndex".into()),
            (Ok(i), Some(want)) if u32::from(i.dki) == want => Outcome::Pass,
            (Ok(i), Some(want)) => Outcome::Fail(format!(
                "DKI {:02X} in 9F10, the order's derivationKeyIndex is {want}",
                i.dki
            )),
        },
    };
    vec![cvn, dki]
}
