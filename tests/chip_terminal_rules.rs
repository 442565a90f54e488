//! Chip data read the way an EMV terminal reads it, per interface, written from EMV Books 2 and
//! 3 (not from the preparation code): each GPO answer's AIP and AFL, the records that AFL lists
//! (READ RECORD: at most 256 bytes), the issuer certificate recovered with the CA key and
//! checked (Book 2 §5.3), and the ICC certificate or SSAD hash over the static data of THAT
//! answer: the records its AFL flags for ODA plus, when 9F4A lists 82, the AIP it returned
//! (Book 3 §10.3). Shared with the library: the TLV codec and the raw RSA public operation only.
//!
//! The GPO answers are found by their DGI per the scheme notes (docs/domain.md §2.1/§2.2):
//! Visa 9104 (contact), 9115/9117 (qVSDC); Mastercard A005 (contact), B005 (contactless), both
//! fixed-position AIP || AFL.

use std::path::Path;

use persodesk::domain::chip::ChipData;
use persodesk::domain::chip::model1;
use persodesk::domain::chip::profile::ChipProfile;
use persodesk::domain::oda::{self, CaPublicKey};
use persodesk::domain::order::{Order, parse_order_file};
use persodesk::domain::tlv::{self, Tag};
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pool::InlineKeys;
use sha1::{Digest, Sha1};

#[path = "support/demo.rs"]
mod demo;
use demo::{DATE, Demo, demo, root};

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
/// `e` says every one of `needles` (the field, then the rule).
fn assert_says(e: &str, needles: &[&str]) {
    for needle in needles {
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    }
}

#[test]
fn every_interface_verifies_its_own_static_data() {
    let d = demo();
    let keys = demo::keys();
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
    let keys = demo::keys();
    let order = d.order("DEMO-MC-0001");
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
    let keys = demo::keys();
    // One 9F46 record for both interfaces, as before the fix.
    let profile = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "shared.toml", |text| {
        text.replace(
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
        )
    });
    let e = refused(&d, d.order("DEMO-VISA-0001"), &profile, &keys);
    assert_says(&e, &["oda.certificates", "different static data"]);
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
    // The issuer certificate (248 bytes under a 1984-bit CA) with its exponent and CA index in
    // one record, as the profile had it before.
    let profile = demo::edited_profile("mchip-advance-1.2.3", "big.toml", |text| {
        text.replace(
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
        )
    });
    let e = refused(&d, d.order("DEMO-MC-0001"), &profile, &keys);
    assert_says(&e, &["DGI 0301", "256"]);
}

fn order_of(d: &Demo, id: &str) -> Order {
    d.order(id).clone()
}

fn refused(d: &Demo, order: &Order, profile: &ChipProfile, keys: &SoftwareKeyStore) -> String {
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let e = model1::prepare(order, product, profile, DATE, keys, &InlineKeys).expect_err("refused");
    persodesk::domain::finding::Finding::join(&e)
}

/// Book 2 §5.3/§6.3 at preparation: the issuer certificate must cover the PAN's issuer
/// identifier, come from a CA of the AID's RID, and not expire before the card.
#[test]
fn issuer_certificate_must_fit_the_card() {
    let d = demo();
    let keys = demo::keys();
    // The Mastercard order with the Visa issuer key (issuer id 476173): named as an order error.
    let mut o = order_of(&d, "DEMO-MC-0001");
    o.payment_application.oda_key_index = Some(2);
    let mc = d.profiles.get("mchip-advance-1.2.3").expect("mc");
    let e = refused(&d, &o, mc, &keys);
    assert_says(&e, &["paymentApplication.odaKeyIndex", "issuer identifier"]);
    // The Visa order under a profile whose AID has the Mastercard RID.
    let other_rid = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "rid.toml", |text| {
        text.replace("aid = \"A0000000031010\"", "aid = \"A0000000041010\"")
    });
    let o = order_of(&d, "DEMO-VISA-0001");
    let e = refused(&d, &o, &other_rid, &keys);
    assert_says(&e, &["odaKeyIndex", "RID A000000003"]);
    // A card expiring after the issuer certificate (12/35 in the demo store).
    let mut o = order_of(&d, "DEMO-VISA-0001");
    o.exp = persodesk::domain::fields::Yymm { yy: 36, mm: 1 };
    let visa = d.profiles.get("vis-1.6.3-vcps-2.2.4").expect("visa");
    let e = refused(&d, &o, visa, &keys);
    assert_says(&e, &["odaKeyIndex", "before the card"]);
}

/// The Derivation Key Index in 9F10 is the order's derivationKeyIndex and the CVN byte the
/// profile's (Visa CVN 18 = 0x12, format 0: `06 DKI CVN CVR`; VCPS Supplemental Requirements
/// App. M as quoted by emv-utils).
#[test]
fn iad_carries_the_orders_dki_and_the_profiles_cvn() {
    let d = demo();
    // The demo IMKs also at index 7.
    let text = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let mut extra = String::new();
    for block in text.split("[[key]]") {
        if ["imk-ac", "imk-smi", "imk-smc"]
            .iter()
            .any(|u| block.contains(&format!("usage = \"{u}\"")))
        {
            extra.push_str("[[key]]");
            extra.push_str(&block.replace("index = 1", "index = 7"));
        }
    }
    let keys = SoftwareKeyStore::from_toml("k.toml", &format!("{text}\n{extra}")).expect("keys");
    let visa = d.profiles.get("vis-1.6.3-vcps-2.2.4").expect("visa");
    let mut o = order_of(&d, "DEMO-VISA-0001");
    o.payment_application.derivation_key_index = Some(7);
    let product = d.catalog.get(&o.card_product_id).expect("product");
    let data = model1::prepare(&o, product, visa, DATE, &keys, &InlineKeys).expect("prepared");
    let chip = data.chip.expect("chip");
    for id in [0x9117, 0x9200] {
        let t = tlv::parse_all(chip.dgi(id).expect("dgi").dgi.value()).expect("tlv");
        let iad = value_of(&t, 0x9F10).expect("9F10");
        assert_eq!(&iad[..3], &[0x06, 0x07, 0x12], "DGI {id:04X}");
        assert_eq!(iad.len(), 7);
    }
    // CVN 22 is coded 0x22 with IAD format 2 (32 bytes, 1F CVN DKI).
    let cvn22 = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "cvn22.toml", |text| {
        text.replace("cvn = \"visa-cvn18\"", "cvn = \"visa-cvn22\"")
            .replace("cvr = \"03A00000\"", "cvr = \"0000000000\"")
    });
    let data = model1::prepare(&o, product, &cvn22, DATE, &keys, &InlineKeys).expect("cvn22");
    let chip = data.chip.expect("chip");
    let t = tlv::parse_all(chip.dgi(0x9200).expect("9200").dgi.value()).expect("tlv");
    let iad = value_of(&t, 0x9F10).expect("9F10");
    assert_eq!((iad.len(), &iad[..3]), (32, &[0x1F, 0x22, 0x07][..]));
}

/// CDOL1 carries every terminal element the CVN MACs (pyemv cvn.py: 9F02 9F03 9F1A 95 5F2A 9A
/// 9C 9F37); the shipped products do.
#[test]
fn cdol1_carries_the_cvn_elements() {
    let d = demo();
    let keys = demo::keys();
    let o = order_of(&d, "DEMO-VISA-0001");
    let visa = d
        .profiles
        .get("vis-1.6.3-vcps-2.2.4")
        .expect("visa")
        .clone();
    let mut product = d.catalog.get(&o.card_product_id).expect("product").clone();
    let cdol1 = Tag::new(0x8C).expect("tag");
    // 9F37 (unpredictable number) left out.
    product.configs.get_mut("default").expect("default").insert(
        cdol1,
        hex::decode("9F02069F03069F1A0295055F2A029A039C01").expect("hex"),
    );
    let e = model1::prepare(&o, &product, &visa, DATE, &keys, &InlineKeys).expect_err("refused");
    let e = persodesk::domain::finding::Finding::join(&e);
    assert_says(&e, &["config.default.8C", "lacks 9F37"]);
}

/// A card with a reference PIN (8010) whose CVM list verifies no PIN offline is warned about,
/// or refused with `pin.cvm_check = "refuse"` (EMV Book 3 Annex C3: 42 = online PIN).
#[test]
fn reference_pin_and_cvm_list_agree() {
    let d = demo();
    let keys = demo::keys();
    let o = order_of(&d, "DEMO-VISA-0001");
    let visa = d.profiles.get("vis-1.6.3-vcps-2.2.4").expect("visa");
    let product = d.catalog.get(&o.card_product_id).expect("product");
    let ok = model1::prepare(&o, product, visa, DATE, &keys, &InlineKeys).expect("prepared");
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let mut online_only = product.clone();
    online_only
        .configs
        .get_mut("default")
        .expect("default")
        .insert(
            Tag::new(0x8E).expect("tag"),
            hex::decode("000000000000000042031E031F00").expect("hex"),
        );
    let data = model1::prepare(&o, &online_only, visa, DATE, &keys, &InlineKeys).expect("warns");
    let w = persodesk::domain::finding::Finding::join(&data.warnings);
    assert!(
        w.contains("config.default.8E") && w.contains("reference PIN"),
        "{w}"
    );
    let strict = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "strict.toml", |text| {
        text.replace("try_limit = 3", "try_limit = 3\ncvm_check = \"refuse\"")
    });
    let e =
        model1::prepare(&o, &online_only, &strict, DATE, &keys, &InlineKeys).expect_err("refused");
    assert!(persodesk::domain::finding::Finding::join(&e).contains("reference PIN"));
}

/// The order's track 2 must carry the chip product's service code (5F30 carries it).
#[test]
fn track_service_code_matches_the_chip_product() {
    let d = demo();
    let keys = demo::keys();
    let us = d.profiles.get("vis-1.5.4-vcps-2.1.3").expect("us");
    let text = std::fs::read_to_string(root().join("assets/demo/orders.json")).expect("orders");
    let text = text.replace("=28052010000987000000?", "=28051010000987000000?");
    let orders: Vec<Order> = parse_order_file(&text, &d.catalog.order_rules())
        .expect("file")
        .into_iter()
        .map(|e| e.outcome.expect("valid"))
        .collect();
    let o = demo::order(&orders, "DEMO-US-0001");
    let e = refused(&d, o, us, &keys);
    assert_says(&e, &["trackData.track2", "service code 101"]);
}

/// iCVV at a digit offset per track (profile `icvv = { track2 = N, track1 = M }`).
#[test]
fn icvv_offset_per_track() {
    let d = demo();
    let keys = demo::keys();
    let per_track = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "icvv.toml", |text| {
        text.replace("icvv = \"cvv\"", "icvv = { track2 = 0, track1 = 2 }")
    });
    let o = order_of(&d, "DEMO-VISA-0001");
    let product = d.catalog.get(&o.card_product_id).expect("product");
    let with = |p: &ChipProfile| {
        let data = model1::prepare(&o, product, p, DATE, &keys, &InlineKeys).expect("prepared");
        let chip = data.chip.expect("chip");
        let t = tlv::parse_all(chip.dgi(0x0101).expect("0101").dgi.value()).expect("tlv");
        (
            value_of(&t, 0x57).expect("57"),
            value_of(&t, 0x9F1F).expect("9F1F"),
        )
    };
    let (t57, t1dd) = with(&per_track);
    let (base57, base1dd) = with(d.profiles.get("vis-1.6.3-vcps-2.2.4").expect("visa"));
    // 57: PAN (16) D YYMM SC (7), then the discretionary data `1|pvv|cvv|00000`: the shipped
    // profile puts the iCVV at the cvv token (offset 5), this one at offset 0 of track 2.
    let n = |v: &[u8]| hex::encode_upper(v);
    assert_eq!(n(&t57)[24..27], n(&base57)[29..32], "the iCVV at offset 0");
    assert_eq!(n(&t57)[..24], n(&base57)[..24]);
    // 9F1F `1|pvv|cvv|000000000000`: the iCVV at offset 2 instead of 5.
    assert_eq!(t1dd[2..5], base1dd[5..8], "the iCVV at offset 2 of track 1");
    assert_eq!(t1dd[..2], base1dd[..2]);
    assert_eq!(t1dd[8..], base1dd[8..]);
}

/// `contactless_name = false` leaves the cardholder name out of the contactless-only DGIs (the
/// qVSDC GPO answers) and keeps it in the records both interfaces read.
#[test]
fn cardholder_name_over_contactless_is_a_profile_setting() {
    let d = demo();
    let keys = demo::keys();
    let no_name = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "noname.toml", |text| {
        text.replace(
            "scheme = \"visa\"",
            "scheme = \"visa\"\ncontactless_name = false",
        )
    });
    let o = order_of(&d, "DEMO-VISA-0001");
    let product = d.catalog.get(&o.card_product_id).expect("product");
    let name_in = |p: &ChipProfile, id: u16| {
        let data = model1::prepare(&o, product, p, DATE, &keys, &InlineKeys).expect("prepared");
        let chip = data.chip.expect("chip");
        let t = tlv::parse_all(chip.dgi(id).expect("dgi").dgi.value()).expect("tlv");
        value_of(&t, 0x5F20).is_some()
    };
    let shipped = d.profiles.get("vis-1.6.3-vcps-2.2.4").expect("visa");
    // 9115 (qVSDC without ODA) carries 5F20; 9117 (fDDA) leaves it to the records (its
    // answer must fit 256 bytes with the SDAD).
    assert!(name_in(shipped, 0x9115));
    assert!(!name_in(&no_name, 0x9115));
    assert!(name_in(&no_name, 0x0101), "the shared record keeps it");
}
