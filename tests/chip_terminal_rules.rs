//! Chip data read the way an EMV terminal reads it, per interface, written from EMV Books 2 and
//! 3 (not from the preparation code): each GPO answer's AIP and AFL, the records that AFL lists
//! (READ RECORD: at most 256 bytes), the issuer certificate recovered with the CA key and
//! checked (Book 2 §5.3), and the ICC certificate or SSAD hash over the static data of THAT
//! answer: the records its AFL flags for ODA plus, when 9F4A lists 82, the AIP it returned
//! (Book 3 §10.3). Shared with the library: the TLV codec and the raw RSA public operation only.
//!
//! The GPO answers are found by their DGI per the scheme notes (domain reference §2.1/§2.2):
//! Visa 9104 (contact), 9115/9117 (qVSDC); Mastercard A005 (contact), B005 (contactless), both
//! fixed-position AIP || AFL.

use std::path::{Path, PathBuf};

use persodesk::domain::chip::ChipData;
use persodesk::domain::chip::ChipProfiles;
use persodesk::domain::chip::model1::{self, PrepDate};
use persodesk::domain::chip::profile::ChipProfile;
use persodesk::domain::oda::{self, CaPublicKey};
use persodesk::domain::order::{Order, parse_order_file};
use persodesk::domain::product::Catalog;
use persodesk::domain::tlv::{self, Tag};
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pool::InlineKeys;
use sha1::{Digest, Sha1};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const DATE: PrepDate = PrepDate {
    yy: 25,
    mm: 1,
    dd: 15,
};

struct Demo {
    catalog: Catalog,
    profiles: ChipProfiles,
    orders: Vec<Order>,
}

fn demo() -> Demo {
    let catalog = persodesk::catalog::load_products(&root().join("profiles")).expect("products");
    let profiles =
        persodesk::catalog::load_chip_profiles(&root().join("profiles")).expect("chip profiles");
    let text = std::fs::read_to_string(root().join("assets/demo/orders.json")).expect("orders");
    let orders = parse_order_file(&text, &catalog.order_rules())
        .expect("order file")
        .into_iter()
        .map(|e| e.outcome.expect("demo orders are valid"))
        .collect();
    Demo {
        catalog,
        profiles,
        orders,
    }
}

fn store(file: &Path) -> SoftwareKeyStore {
    SoftwareKeyStore::load(file).expect("key store")
}

/// The GPO answers a terminal gets: (DGI, interface, AIP, AFL).
fn gpo_answers(chip: &ChipData) -> Vec<(u16, &'static str, [u8; 2], Vec<u8>)> {
    let mut out = Vec::new();
    for (id, interface) in [
        (0x9104, "contact"),
        (0x9115, "contactless"),
        (0x9117, "contactless"),
    ] {
        if let Some(d) = chip.dgi(id) {
            let t = tlv::parse_all(d.dgi.value()).expect("GPO DGI is TLV");
            let aip = value_of(&t, 0x82).expect("82");
            let afl = value_of(&t, 0x94).expect("94");
            out.push((id, interface, [aip[0], aip[1]], afl));
        }
    }
    for (id, interface) in [(0xA005, "contact"), (0xB005, "contactless")] {
        if let Some(d) = chip.dgi(id) {
            let v = d.dgi.value();
            out.push((id, interface, [v[0], v[1]], v[2..].to_vec()));
        }
    }
    out
}

fn value_of(tlvs: &[tlv::Tlv], raw: u32) -> Option<Vec<u8>> {
    let tag = Tag::new(raw)?;
    tlvs.iter().find_map(|t| {
        if t.tag() == tag {
            t.value().map(<[u8]>::to_vec)
        } else {
            t.children().and_then(|c| value_of(c, raw))
        }
    })
}

/// What READ RECORD returns for each AFL record, with its ODA flag.
fn read_records(chip: &ChipData, afl: &[u8]) -> Vec<(u16, Vec<u8>, bool)> {
    assert_eq!(afl.len() % 4, 0, "AFL entries are 4 bytes");
    let mut out = Vec::new();
    for e in afl.chunks(4) {
        let sfi = e[0] >> 3;
        for rec in e[1]..=e[2] {
            let id = u16::from_be_bytes([sfi, rec]);
            let d = chip
                .dgi(id)
                .unwrap_or_else(|| panic!("AFL lists SFI {sfi} record {rec}, not personalized"));
            let v = d.dgi.value().to_vec();
            assert!(
                v.len() <= 256,
                "record {id:04X} is {} bytes: READ RECORD returns at most 256",
                v.len()
            );
            out.push((id, v, rec - e[1] < e[3]));
        }
    }
    out
}

/// The value of template 70 (records of SFI 1-10 go into the static data without 70 L).
fn template_value(record: &[u8]) -> &[u8] {
    assert_eq!(record[0], 0x70, "record template");
    let (len, skip) = match record[1] {
        0x81 => (usize::from(record[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([record[2], record[3]])), 4),
        n => (usize::from(n), 2),
    };
    assert_eq!(record.len(), skip + len, "one template per record");
    &record[skip..]
}

fn in_records(records: &[(u16, Vec<u8>, bool)], raw: u32) -> Vec<Vec<u8>> {
    records
        .iter()
        .filter_map(|(_, r, _)| value_of(&tlv::parse_all(r).ok()?, raw))
        .collect()
}

fn one(records: &[(u16, Vec<u8>, bool)], raw: u32) -> Option<Vec<u8>> {
    let all = in_records(records, raw);
    assert!(
        all.len() <= 1,
        "tag {raw:X} read {} times on one interface",
        all.len()
    );
    all.into_iter().next()
}

/// Recovers a signed block (Book 2 §5.3 / §6.3 / §5.4) and checks header, format, trailer and
/// the SHA-1 over `format..before hash || extra`. Returns the recovered block.
fn recover(key: &oda::EmvPublicKey, signed: &[u8], format: u8, extra: &[&[u8]]) -> Vec<u8> {
    let m = oda::recover_raw(key, signed, "signed data").expect("RSA public operation");
    let n = m.len();
    assert_eq!(m[0], 0x6A, "header");
    assert_eq!(m[1], format, "format");
    assert_eq!(m[n - 1], 0xBC, "trailer");
    let mut h = Sha1::new();
    h.update(&m[1..n - 21]);
    for e in extra {
        h.update(e);
    }
    assert_eq!(
        h.finalize().as_slice(),
        &m[n - 21..n - 1],
        "hash of format {format:02X}"
    );
    m
}

fn pan_digits(cn: &[u8]) -> String {
    hex::encode_upper(cn).trim_end_matches('F').to_string()
}

/// Offline data authentication of one GPO answer, as a terminal performs it. Returns the ICC
/// certificate (or SSAD) it verified.
fn terminal_oda(
    chip: &ChipData,
    order: &Order,
    aip: [u8; 2],
    afl: &[u8],
    cas: &[CaPublicKey],
) -> Vec<u8> {
    let records = read_records(chip, afl);
    let ca_index = one(&records, 0x8F).expect("8F")[0];
    let rid: [u8; 5] = chip.aid[..5].try_into().expect("rid");
    let ca = cas
        .iter()
        .find(|c| c.rid == rid && c.index == ca_index)
        .expect("the CA key of the AID's RID and 8F");
    // Issuer certificate (Book 2 §5.3).
    let cert = one(&records, 0x90).expect("90");
    let rem = one(&records, 0x92).unwrap_or_default();
    let exp = one(&records, 0x9F32).expect("9F32");
    let m = recover(&ca.key, &cert, 0x02, &[&rem, &exp]);
    let issuer_id = pan_digits(&m[2..6]);
    let pan = order.pan.reveal();
    assert!(pan.starts_with(&issuer_id), "issuer identifier vs PAN");
    let issuer_exp = (m[7], m[6]); // (YY, MM) BCD
    let n_i = usize::from(m[13]);
    let mut modulus = m[15..m.len() - 21].to_vec();
    modulus.truncate(n_i.min(modulus.len()));
    modulus.extend_from_slice(&rem);
    assert_eq!(modulus.len(), n_i, "issuer modulus length");
    let issuer = oda::EmvPublicKey::new(
        &modulus,
        oda::RsaExponent::from_bytes(&exp).expect("exponent"),
    )
    .expect("issuer key");
    // Static data to be authenticated for THIS answer.
    let mut sd = Vec::new();
    for (_, r, for_oda) in &records {
        if *for_oda {
            sd.extend_from_slice(template_value(r));
        }
    }
    if let Some(list) = one(&records, 0x9F4A) {
        assert_eq!(list, [0x82], "9F4A lists only 82");
        sd.extend_from_slice(&aip);
    }
    if aip[0] & 0x40 != 0 && aip[0] & 0x21 == 0 {
        let ssad = one(&records, 0x93).expect("93 for SDA");
        recover(&issuer, &ssad, 0x03, &[&sd]);
        return ssad;
    }
    let icc = one(&records, 0x9F46).expect("9F46");
    let icc_rem = one(&records, 0x9F48).unwrap_or_default();
    let icc_exp = one(&records, 0x9F47).expect("9F47");
    let m = recover(&issuer, &icc, 0x04, &[&icc_rem, &icc_exp, &sd]);
    assert_eq!(pan_digits(&m[2..12]), pan, "ICC certificate PAN = 5A");
    let icc_exp_date = (m[13], m[12]);
    assert!(
        icc_exp_date <= issuer_exp,
        "ICC certificate outlives the issuer's"
    );
    icc
}

/// Every demo order of every profile: each GPO answer whose AIP asks for ODA verifies with the
/// records and AIP of that answer. Fails on main: the contactless answers (Visa 9117 AIP 2020,
/// M/Chip B005 AIP 1980) read an ICC certificate hashed over the contact AIP.
#[test]
fn every_interface_verifies_its_own_static_data() {
    let d = demo();
    let keys = store(&root().join("assets/demo/keys.toml"));
    let cas = keys.ca_public_keys();
    let mut contactless_verified = 0;
    for order in &d.orders {
        let product = d.catalog.get(&order.card_product_id).expect("product");
        let Some(name) = &product.chip_profile else {
            continue;
        };
        let profile = d.profiles.get(name).expect("profile");
        let data = model1::prepare(order, product, profile, DATE, &keys, &InlineKeys)
            .unwrap_or_else(|e| panic!("{}: {e:?}", order.id));
        let chip = data.chip.as_ref().expect("chip");
        let mut certs = Vec::new();
        for (dgi, interface, aip, afl) in gpo_answers(chip) {
            if aip[0] & 0x61 == 0 {
                continue;
            }
            certs.push(terminal_oda(chip, order, aip, &afl, &cas));
            if interface == "contactless" {
                contactless_verified += 1;
            }
            let _ = dgi;
        }
        assert!(
            !certs.is_empty(),
            "{}: some interface asks for ODA",
            order.id
        );
        if let Some(oda) = &chip.oda
            && oda.icc_key_bits.is_some()
        {
            // One serial per ICC certificate, and two certificates of a card differ.
            assert_eq!(oda.icc_certificate_serials.len(), certs.len().min(2));
        }
    }
    assert!(contactless_verified >= 5, "{contactless_verified}");
}

/// The ICC certificate serial differs between two preparations of the same card (a reissue).
#[test]
fn icc_certificate_serials_differ_per_certificate() {
    let d = demo();
    let keys = store(&root().join("assets/demo/keys.toml"));
    let order = d
        .orders
        .iter()
        .find(|o| o.id == "DEMO-MC-0001")
        .expect("order");
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let profile = d.profiles.get("mchip-advance-1.2.3").expect("profile");
    let serials = |_: u8| {
        let data =
            model1::prepare(order, product, profile, DATE, &keys, &InlineKeys).expect("prep");
        data.chip
            .expect("chip")
            .oda
            .expect("oda")
            .icc_certificate_serials
    };
    let a = serials(0);
    let b = serials(1);
    assert_eq!(a.len(), 2, "contact and contactless certificates");
    assert_ne!(a[0], a[1]);
    assert!(
        a.iter().all(|s| !b.contains(s)),
        "a reissue repeats no serial"
    );
}

/// A profile whose two interfaces share one ICC certificate but present different AIPs is
/// refused at preparation, naming the rule (Book 3 §10.3).
#[test]
fn a_shared_certificate_with_different_aips_is_refused() {
    let d = demo();
    let keys = store(&root().join("assets/demo/keys.toml"));
    let text = std::fs::read_to_string(root().join("profiles/chip/vis-1.6.3-vcps-2.2.4.toml"))
        .expect("profile");
    // One 9F46 record for both interfaces, as before the fix.
    let text = text
        .replace(
            "certificates = \"per-interface\"",
            "certificates = \"shared\"",
        )
        .replace(
            "[dgi.0203]\ntags = [\"9F46\"]\ninterfaces = [\"contact\"]",
            "[dgi.0203]\ntags = [\"9F46\"]",
        )
        .replace(
            "[dgi.0204]\ntags = [\"9F46\"]\ninterfaces = [\"contactless\"]",
            "[dgi.0204]\ntags = [\"9F49\"]",
        )
        .replace(
            "tags = [\"9F47\", \"9F48?\", \"9F49\"]",
            "tags = [\"9F47\", \"9F48?\"]",
        );
    let profile = ChipProfile::from_toml("shared.toml", "vis-1.6.3-vcps-2.2.4", &text)
        .expect("the layout itself loads");
    let order = d
        .orders
        .iter()
        .find(|o| o.id == "DEMO-VISA-0001")
        .expect("order");
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let e =
        model1::prepare(order, product, &profile, DATE, &keys, &InlineKeys).expect_err("refused");
    let e = format!("{e:?}");
    assert!(
        e.contains("oda.certificates") && e.contains("different static data"),
        "{e}"
    );
}

/// Production key sizes (a 1984-bit CA, a 1984-bit issuer key, a 1408-bit ICC key; fixture
/// made with `persodesk keys demo-pki --ca-bits 1984 --issuer-bits 1984`): every profile's
/// records fit READ RECORD and every interface verifies.
#[test]
fn production_key_sizes_fit_every_profile() {
    let d = demo();
    let keys = store(&root().join("tests/fixtures/keys-production.toml"));
    let cas = keys.ca_public_keys();
    assert!(cas.iter().all(|c| c.key.bits() == 1984), "1984-bit CAs");
    let mut done = std::collections::BTreeSet::new();
    for order in &d.orders {
        let product = d.catalog.get(&order.card_product_id).expect("product");
        let Some(name) = &product.chip_profile else {
            continue;
        };
        if !done.insert(name.clone()) {
            continue;
        }
        let path = root().join(format!("profiles/chip/{name}.toml"));
        let text = std::fs::read_to_string(&path).expect("profile");
        let text = text.replace("icc_key_bits = 1024", "icc_key_bits = 1408");
        let profile = ChipProfile::from_toml("p.toml", name, &text).expect("profile");
        let data = model1::prepare(order, product, &profile, DATE, &keys, &InlineKeys)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let chip = data.chip.as_ref().expect("chip");
        let oda = chip.oda.as_ref().expect("oda");
        assert_eq!(oda.issuer_key_bits, 1984, "{name}");
        for (_, _, aip, afl) in gpo_answers(chip) {
            read_records(chip, &afl);
            if aip[0] & 0x61 != 0 {
                terminal_oda(chip, order, aip, &afl, &cas);
            }
        }
    }
    assert_eq!(done.len(), 3, "{done:?}");
}

/// A record that cannot be read is refused, naming the DGI and its size.
#[test]
fn a_record_over_256_bytes_is_refused() {
    let d = demo();
    let keys = store(&root().join("tests/fixtures/keys-production.toml"));
    let text = std::fs::read_to_string(root().join("profiles/chip/mchip-advance-1.2.3.toml"))
        .expect("profile");
    // The issuer certificate (248 bytes under a 1984-bit CA) with its exponent and CA index in
    // one record, as the profile had it before.
    let text = text
        .replace(
            "tags = [\"8F\", \"9F32\", \"92?\"]",
            "tags = [\"8F\", \"90\", \"9F32\", \"92?\"]",
        )
        .replace(
            "[dgi.0302]\ntags = [\"90\"]",
            "[dgi.0302]\ntags = [\"9F24?\"]",
        )
        .replace(
            "tags = [\"57\", \"5F20\", \"9F24?\"]",
            "tags = [\"57\", \"5F20\"]",
        );
    let profile = ChipProfile::from_toml("big.toml", "mchip-advance-1.2.3", &text).expect("loads");
    let order = d
        .orders
        .iter()
        .find(|o| o.id == "DEMO-MC-0001")
        .expect("order");
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let e =
        model1::prepare(order, product, &profile, DATE, &keys, &InlineKeys).expect_err("refused");
    let e = format!("{e:?}");
    assert!(e.contains("DGI 0301") && e.contains("256"), "{e}");
}
