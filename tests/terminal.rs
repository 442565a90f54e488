//! The virtual card on both interfaces and the terminal's read-back, end to end through the job
//! (issue #12): each demo order (Model 1) personalized on an in-process virtual card made from
//! its profile's card stock (`sim::card::stock`), the PPSE instance personalized after the
//! application, then read back on the contact and the contactless interface.
//!
//! Also the GlobalPlatform card side: GET STATUS and GET DATA under secure messaging keep the
//! MAC chain in step, EXTERNAL AUTHENTICATE at security level 00 is accepted.

use persodesk::domain::chip::{ChipModel, ChipProfile, ChipProfiles, Interface};
use persodesk::domain::order::Order;
use persodesk::domain::prepare::{ModelChoice, prepare_card};
use persodesk::domain::product::Catalog;
use persodesk::domain::readback::Outcome;
use persodesk::job::{self, CardConnector, CardJob, CheckLine, VirtualCardReader};
use persodesk::keys::SoftwareKeyStore;
use persodesk::sim::card::{CardInterface, VirtualCard, stock};

#[path = "support/demo.rs"]
mod demo;
use demo::root;

struct Demo {
    keys: SoftwareKeyStore,
    catalog: Catalog,
    profiles: ChipProfiles,
    orders: Vec<Order>,
    /// The model the orders are prepared with.
    model: ChipModel,
}

fn demo() -> Demo {
    let catalog = demo::catalog();
    let orders = demo::orders(&catalog, demo::ORDERS);
    Demo {
        keys: demo::keys(),
        catalog,
        profiles: demo::chip_profiles(),
        orders,
        model: ChipModel::Model1,
    }
}

/// The Model 2 demo orders (assets/demo/orders-model2.json: the issuer's sealed DGIs of
/// assets/demo/model2/), one per chip profile.
fn demo_model2() -> Demo {
    let mut d = demo();
    d.orders = demo::orders(&d.catalog, demo::ORDERS_MODEL2);
    d.model = ChipModel::Model2;
    d
}

/// The demo orders with production-size ODA keys (tests/fixtures/keys-production.toml: a
/// 1984-bit CA and issuer key per scheme) and `profile`'s ICC key at 1408 bits.
fn demo_production(profile: &str) -> Demo {
    let mut d = demo();
    d.keys = SoftwareKeyStore::load(&root().join("tests/fixtures/keys-production.toml"))
        .expect("production-size keys");
    let path = root().join(format!("profiles/chip/{profile}.toml"));
    let text = std::fs::read_to_string(&path).expect("profile");
    let text = text.replace("icc_key_bits = 1024", "icc_key_bits = 1408");
    let p = ChipProfile::from_toml(&path.display().to_string(), profile, &text).expect("profile");
    d.profiles = ChipProfiles::new(vec![p]).expect("profiles");
    let catalog = &d.catalog;
    d.orders.retain(|o| {
        catalog
            .get(&o.card_product_id)
            .is_some_and(|p| p.chip_profile.as_deref() == Some(profile))
    });
    assert!(!d.orders.is_empty(), "{profile}: demo orders");
    d
}

/// Personalizes `order` on a fresh card of its profile's stock and reads it back on every
/// interface; returns the read-back lines and the failure, if any.
fn run(d: &Demo, order: &Order) -> (Vec<CheckLine>, Option<String>, VirtualCardReader) {
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let name = product.chip_profile.as_deref().expect("chip product");
    let profile = d.profiles.get(name).expect("profile");
    let inputs = demo::prep_inputs(&d.profiles, &d.keys);
    let data = prepare_card(order, product, ModelChoice::Only(d.model), &inputs)
        .unwrap_or_else(|e| panic!("{}: {e:?}", order.id));
    let (kmc, _) = d.keys.test_kmc(profile.channel.kmc_index).expect("kmc");
    let config = stock::config_for(profile, kmc, [0, 0, 0, 7]).expect("card stock");
    // The same virtual card presented on either interface (a dual-interface reader).
    let mut reader = VirtualCardReader::new(VirtualCard::new(config).expect("card"));
    let job = CardJob {
        order,
        data: &data,
        keys: &d.keys,
        chip: Some((profile, profile.channel.clone())),
    };
    let report = job::run(
        &job,
        Some(&mut reader as &mut dyn CardConnector),
        None,
        &mut |_| {},
    );
    let lines = report.chip.map(|c| c.read_back).unwrap_or_default();
    (lines, report.failure.map(|f| f.reason()), reader)
}

fn status<'a>(lines: &'a [CheckLine], name: &str) -> Option<&'a str> {
    lines.iter().find(|l| l.check == name).map(|l| l.status)
}

fn chip_orders(d: &Demo) -> Vec<&Order> {
    d.orders
        .iter()
        .filter(|o| {
            d.catalog
                .get(&o.card_product_id)
                .is_some_and(|p| p.chip_profile.is_some())
        })
        .collect()
}

#[test]
fn the_ppse_instance_is_personalized_and_answers_over_contactless_only() {
    let d = demo();
    for order in chip_orders(&d) {
        let (lines, _, reader) = run(&d, order);
        let id = &order.id;
        assert!(reader.card().ppse().is_some(), "{id}: PPSE personalized");
        assert_eq!(
            status(&lines, "contactless: SELECT PPSE"),
            Some("pass"),
            "{id}: {lines:?}"
        );
        assert_eq!(
            status(&lines, "contactless: PPSE: directory entries 61 {4F, 87}"),
            Some("pass"),
            "{id}"
        );
        // Over contact the PPSE is not there; the terminal falls back to the AID list.
        assert_eq!(status(&lines, "SELECT PPSE"), Some("skipped"), "{id}");
    }
}

/// The lines of `prefix` whose name starts with one of `names`: each must pass.
fn assert_pass(lines: &[CheckLine], id: &str, prefix: &str, names: &[&str]) {
    let found: Vec<_> = lines
        .iter()
        .filter(|l| {
            names
                .iter()
                .any(|n| l.check.starts_with(&format!("{prefix}{n}")))
        })
        .collect();
    assert!(found.len() >= names.len(), "{id} {prefix}: {lines:?}");
    for l in found {
        assert_eq!(l.status, "pass", "{id}: {} {:?}", l.check, l.reason);
    }
}

/// Every demo chip order: the checks starting with `names` pass on both interfaces.
fn passes_on_both_interfaces(names: &[&str]) {
    let d = demo();
    for order in chip_orders(&d) {
        let (lines, _, _) = run(&d, order);
        for prefix in ["", "contactless: "] {
            assert_pass(&lines, &order.id, prefix, names);
        }
    }
}

#[test]
fn arqc_per_cvn_passes_on_both_interfaces() {
    passes_on_both_interfaces(&["ARQC (9F26) per", "IAD (9F10): CVN coding"]);
}

#[test]
fn the_dki_in_9f10_is_the_orders_on_both_interfaces() {
    passes_on_both_interfaces(&["IAD (9F10): DKI"]);
}

#[test]
fn every_demo_order_passes_every_check_on_both_interfaces() {
    let d = demo();
    for order in chip_orders(&d) {
        let (lines, failure, _) = run(&d, order);
        assert!(failure.is_none(), "{}: {failure:?} {lines:?}", order.id);
    }
}

/// Every check of every order of `d` passes on both interfaces, and the interface-specific
/// checks were really made (not skipped): ODA on each, and on contactless the PPSE and the
/// fDDA or CDA signature the contactless AIP announces.
fn every_check_passes_on_both_interfaces(d: &Demo) {
    let orders = chip_orders(d);
    assert!(!orders.is_empty());
    for order in orders {
        let id = &order.id;
        let (lines, failure, _) = run(d, order);
        assert!(failure.is_none(), "{id}: {failure:?} {lines:?}");
        for l in &lines {
            assert_ne!(l.status, "fail", "{id}: {} {:?}", l.check, l.reason);
        }
        let product = d.catalog.get(&order.card_product_id).expect("product");
        let profile = d
            .profiles
            .get(product.chip_profile.as_deref().expect("chip"))
            .expect("profile");
        let aip_of = |i| profile.aip.get(&i).copied().unwrap_or([0, 0]);
        for (prefix, interface) in [
            ("", Interface::Contact),
            ("contactless: ", Interface::Contactless),
        ] {
            assert_pass(&lines, id, prefix, &["ARQC (9F26) per", "IAD (9F10): DKI"]);
            // SDA, DDA or CDA announced by this interface's AIP: the chain must verify.
            if aip_of(interface)[0] & 0x61 != 0 {
                assert_pass(&lines, id, prefix, &["ODA: issuer certificate"]);
            }
        }
        assert_pass(&lines, id, "contactless: ", &["SELECT PPSE"]);
        let signed = lines.iter().any(|l| {
            (l.check.starts_with("contactless: fDDA") || l.check.starts_with("contactless: CDA"))
                && l.status == "pass"
        });
        if aip_of(Interface::Contactless)[0] & 0x21 != 0 {
            assert!(signed, "{id}: contactless fDDA/CDA verified: {lines:?}");
        }
    }
}

/// Issue #12: the Model 2 demo orders (the issuer's data) on both interfaces.
#[test]
fn model2_demo_orders_pass_every_check_on_both_interfaces() {
    every_check_passes_on_both_interfaces(&demo_model2());
}

/// Issue #12, production key sizes (a 1984-bit CA and issuer key, a 1408-bit ICC key):
/// personalized and verified on both interfaces. Before the fix the VIS 1.6.3 qVSDC GPO answer
/// (DGI 9117 with the 176-byte SDAD) was over 256 bytes.
#[test]
fn production_keys_vis_1_6_3_on_both_interfaces() {
    every_check_passes_on_both_interfaces(&demo_production("vis-1.6.3-vcps-2.2.4"));
}

#[test]
fn production_keys_vis_1_5_4_on_both_interfaces() {
    every_check_passes_on_both_interfaces(&demo_production("vis-1.5.4-vcps-2.1.3"));
}

#[test]
fn production_keys_mchip_advance_on_both_interfaces() {
    every_check_passes_on_both_interfaces(&demo_production("mchip-advance-1.2.3"));
}

#[test]
fn a_record_over_256_bytes_fails_the_read_back() {
    // The terminal names the record; a short READ RECORD response holds at most 256 bytes.
    use persodesk::domain::readback::{ReadBackSession, ReadStep, TerminalData};
    let terminal = TerminalData {
        un: [1, 2, 3, 4],
        date: [0x26, 0x01, 0x01],
        amount: [0, 0, 0, 0, 1, 0],
        country: [0x08, 0x40],
    };
    let aid = vec![0xA0, 0, 0, 0, 0x03, 0x10, 0x10];
    let (mut s, _) = ReadBackSession::start(terminal, None, vec![aid.clone()]);
    let mut step = s.handle(&[0x6A, 0x82]);
    let fci = [
        &[0x6F, 0x0B, 0x84, 0x07][..],
        &aid,
        &[0xA5, 0x00, 0x90, 0x00],
    ]
    .concat();
    step = match step {
        ReadStep::Transmit(_) => s.handle(&fci),
        d => d,
    };
    // GPO: AIP 0000, AFL SFI 1 record 1.
    step = match step {
        ReadStep::Transmit(_) => {
            s.handle(&[0x80, 0x06, 0x00, 0x00, 0x08, 0x01, 0x01, 0x00, 0x90, 0x00])
        }
        d => d,
    };
    // A 300-byte record: 70 82 01 28 { 5F20 .. }.
    let mut record = vec![0x70, 0x82, 0x01, 0x28, 0x9F, 0x7C, 0x82, 0x01, 0x23];
    record.resize(300, 0x20);
    record.extend_from_slice(&[0x90, 0x00]);
    step = match step {
        ReadStep::Transmit(_) => s.handle(&record),
        d => d,
    };
    while let ReadStep::Transmit(_) = step {
        step = s.handle(&[0x6A, 0x88]);
    }
    let ReadStep::Done(rb) = step else {
        unreachable!()
    };
    let check = rb
        .checks
        .iter()
        .find(|c| c.name == "READ RECORD SFI 1 record 1: at most 256 bytes")
        .expect("the record size check");
    assert!(matches!(check.outcome, Outcome::Fail(_)), "{check}");
}

/// Issue #12 item 8/brief item 4: the M/Chip profile supports Kernel 2 EMV mode only and claims
/// no contactless mag-stripe mode, so it carries none of that mode's data objects (a Kernel 2
/// reader would otherwise try mag-stripe mode with incomplete data: no PCVC3/PUNATC/NATC, no
/// COMPUTE CRYPTOGRAPHIC CHECKSUM). Failed before: the profile put 56 and 9F6B in record 0101.
#[test]
fn mchip_claims_no_mag_stripe_mode() {
    let d = demo();
    let order = demo::order(&d.orders, "DEMO-MC-0001");
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let inputs = demo::prep_inputs(&d.profiles, &d.keys);
    let data = prepare_card(
        order,
        product,
        ModelChoice::Only(ChipModel::Model1),
        &inputs,
    )
    .expect("prepared");
    let chip = data.chip.as_ref().expect("chip");
    // Mag-stripe mode objects (EMV Book C-2 Annex A): 56, 9F6B, 9F62-9F67, UDOL 9F69.
    let magstripe = [
        0x56, 0x9F6B, 0x9F62, 0x9F63, 0x9F64, 0x9F65, 0x9F66, 0x9F67, 0x9F69,
    ];
    for dgi in &chip.dgis {
        let v = dgi.dgi.value();
        let Ok(tlvs) = persodesk::domain::tlv::parse_all(v) else {
            continue;
        };
        let mut stack: Vec<_> = tlvs.iter().collect();
        while let Some(t) = stack.pop() {
            assert!(
                !magstripe.contains(&t.tag().raw()),
                "DGI {:04X} carries mag-stripe mode tag {:X}",
                dgi.dgi.id(),
                t.tag().raw()
            );
            stack.extend(t.children().unwrap_or_default());
        }
    }
    // The contactless AIP says "EMV mode supported" (byte 2 bit 8).
    let profile = d.profiles.get("mchip-advance-1.2.3").expect("profile");
    let aip = profile
        .aip
        .get(&Interface::Contactless)
        .expect("contactless AIP");
    assert_eq!(aip[1] & 0x80, 0x80);
    // The personalized card does not answer COMPUTE CRYPTOGRAPHIC CHECKSUM.
    let (_, failure, mut reader) = run(&d, order);
    assert!(failure.is_none(), "{failure:?}");
    let card = reader.card_mut();
    card.set_interface(CardInterface::Contactless);
    let select = [&[0x00, 0xA4, 0x04, 0x00, 0x07][..], &profile.aid, &[0x00]].concat();
    let r = card.process(&select);
    assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
    let r = card.process(&[0x80, 0x2A, 0x8E, 0x80, 0x04, 1, 2, 3, 4, 0x00]);
    assert_eq!(r, [0x6D, 0x00], "COMPUTE CRYPTOGRAPHIC CHECKSUM");
}

/// A terminal with no PSE/PPSE over contact tries its known AIDs in order (Visa first). On a
/// card whose stock also holds unpersonalized instances, the M/Chip card must still be found
/// and read. Failed before: the unpersonalized Visa instance's bare FCI was taken as the
/// application (a failed FCI check) and the card answered GPO for it from the M/Chip data.
#[test]
fn contact_read_without_a_directory_skips_unpersonalized_instances() {
    let d = demo();
    let order = demo::order(&d.orders, "DEMO-MC-0001");
    let (_, failure, mut reader) = run(&d, order);
    assert!(failure.is_none(), "{failure:?}");
    let ca = d
        .keys
        .ca_public_keys()
        .into_iter()
        .find(|k| k.rid == [0xA0, 0, 0, 0, 0x04]);
    let mut contact = reader.connect().expect("contact");
    let rb = persodesk::verify::read_card(contact.as_mut(), ca, None).expect("read");
    drop(contact);
    for c in &rb.checks {
        assert!(!matches!(c.outcome, Outcome::Fail(_)), "{c}");
    }
    assert_eq!(rb.card.aid, "A0000000041010");
    assert!(rb.checks.iter().any(|c| {
        c.name
            .starts_with("SELECT AID A0000000031010: not a candidate")
    }));
    // The unpersonalized instance, selected, answers no payment command.
    let card = reader.card_mut();
    let r = card.process(&[
        0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0, 0, 0, 0x03, 0x10, 0x10, 0x00,
    ]);
    assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
    let r = card.process(&[0x80, 0xA8, 0x00, 0x00, 0x02, 0x83, 0x00, 0x00]);
    assert_eq!(r, [0x6D, 0x00], "GPO on an unpersonalized instance");
}
