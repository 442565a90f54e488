//! The virtual card on both interfaces and the terminal's read-back, end to end through the job
//! (issue #12): each demo order (Model 1) personalized on an in-process virtual card made from
//! its profile's card stock (`sim::card::stock`), the PPSE instance personalized after the
//! application, then read back on the contact and the contactless interface.
//!
//! Also the GlobalPlatform card side: GET STATUS and GET DATA under secure messaging keep the
//! MAC chain in step, EXTERNAL AUTHENTICATE at security level 00 is accepted.

use std::path::PathBuf;

use persodesk::devices::transport::{CardTransport, TransportError};
use persodesk::domain::chip::{ChipProfiles, Interface};
use persodesk::domain::chip_model::{ChipModel, ModelChoice, PrepInputs, prepare_card};
use persodesk::domain::envelope::EnvelopeSettings;
use persodesk::domain::order::{Order, parse_order_file};
use persodesk::domain::product::Catalog;
use persodesk::domain::readback::Outcome;
use persodesk::job::{self, CardConnector, CardJob, CheckLine};
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pool::InlineKeys;
use persodesk::sim::card::{CardInterface, VirtualCard, stock};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Demo {
    keys: SoftwareKeyStore,
    catalog: Catalog,
    profiles: ChipProfiles,
    orders: Vec<Order>,
}

fn demo() -> Demo {
    let keys = SoftwareKeyStore::load(&root().join("assets/demo/keys.toml")).expect("keys");
    let catalog = persodesk::catalog::load_products(&root().join("profiles")).expect("products");
    let profiles =
        persodesk::catalog::load_chip_profiles(&root().join("profiles")).expect("chip profiles");
    let text = std::fs::read_to_string(root().join("assets/demo/orders.json")).expect("orders");
    let orders = parse_order_file(&text, &catalog.order_rules())
        .expect("order file")
        .into_iter()
        .filter_map(|e| e.outcome.ok())
        .collect();
    Demo {
        keys,
        catalog,
        profiles,
        orders,
    }
}

/// The same virtual card presented on either interface (a dual-interface reader).
struct DualReader {
    card: VirtualCard,
}

struct Link<'a>(&'a mut VirtualCard);

impl CardTransport for Link<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.process(apdu))
    }
    fn reader_name(&self) -> &str {
        "dual-interface virtual reader"
    }
}

impl CardConnector for DualReader {
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        self.card.set_interface(CardInterface::Contact);
        Ok(Box::new(Link(&mut self.card)))
    }

    fn connect_on(
        &mut self,
        interface: Interface,
    ) -> Result<Option<Box<dyn CardTransport + '_>>, TransportError> {
        self.card.set_interface(match interface {
            Interface::Contact => CardInterface::Contact,
            Interface::Contactless => CardInterface::Contactless,
        });
        Ok(Some(Box::new(Link(&mut self.card))))
    }
}

/// Personalizes `order` on a fresh card of its profile's stock and reads it back on every
/// interface; returns the read-back lines and the failure, if any.
fn run(d: &Demo, order: &Order) -> (Vec<CheckLine>, Option<String>, DualReader) {
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let name = product.chip_profile.as_deref().expect("chip product");
    let profile = d.profiles.get(name).expect("profile");
    let inputs = PrepInputs {
        profiles: &d.profiles,
        date: persodesk::domain::chip::model1::PrepDate::new(26, 11, 22).expect("date"),
        keys: &d.keys,
        icc_keys: &InlineKeys,
        envelope: EnvelopeSettings::default(),
    };
    let data = prepare_card(
        order,
        product,
        ModelChoice::Only(ChipModel::Model1),
        &inputs,
    )
    .expect("prepared");
    let (kmc, _) = d.keys.test_kmc(profile.channel.kmc_index).expect("kmc");
    let config = stock::config_for(profile, kmc, [0, 0, 0, 7]).expect("card stock");
    let mut reader = DualReader {
        card: VirtualCard::new(config).expect("card"),
    };
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
        assert!(reader.card.ppse().is_some(), "{id}: PPSE personalized");
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

#[test]
fn arqc_per_cvn_passes_on_both_interfaces() {
    let d = demo();
    for order in chip_orders(&d) {
        let (lines, _, _) = run(&d, order);
        for prefix in ["", "contactless: "] {
            assert_pass(
                &lines,
                &order.id,
                prefix,
                &["ARQC (9F26) per", "IAD (9F10): CVN coding"],
            );
        }
    }
}

#[test]
fn the_dki_in_9f10_is_the_orders_on_both_interfaces() {
    let d = demo();
    for order in chip_orders(&d) {
        let (lines, _, _) = run(&d, order);
        for prefix in ["", "contactless: "] {
            assert_pass(&lines, &order.id, prefix, &["IAD (9F10): DKI"]);
        }
    }
}

#[test]
fn every_demo_order_passes_every_check_on_both_interfaces() {
    let d = demo();
    for order in chip_orders(&d) {
        let (lines, failure, _) = run(&d, order);
        assert!(failure.is_none(), "{}: {failure:?} {lines:?}", order.id);
    }
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
