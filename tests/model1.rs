//! Model 1 chip data, checked the way a terminal and a card would see it: certificate chains
//! recovered from the CA key for 1024/1152/1408/1984-bit CAs, every AFL record present, 57/5A/5F24
//! agreeing with the tracks, the PIN DGI holding the order's PIN, DGI 8000 against published
//! derivation vectors, and clear errors for bad input.

use std::path::Path;

use persodesk::domain::chip::ChipData;
use persodesk::domain::chip::keys::{ChipKeys, IccMasterKeyValue};
use persodesk::domain::chip::model1;
use persodesk::domain::chip::profile::{ChipProfile, DgiContent, OdaMethod};
use persodesk::domain::emv_keys::MkdOption;
use persodesk::domain::fields::{Pan, Psn};
use persodesk::domain::oda::{
    self, CaPublicKey, EmvPublicKey, IssuerCertFields, RsaExponent, RsaKeyPair,
};
use persodesk::domain::order::Order;
use persodesk::domain::tlv::{self, Tag};
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pool::{InlineKeys, KeyPool};
use persodesk::keys::software_chip::rsa_kcv;

#[path = "support/demo.rs"]
mod demo;
use demo::{DATE, demo, root};

fn find(tlvs: &[tlv::Tlv], raw: u32) -> Option<Vec<u8>> {
    let tag = Tag::new(raw)?;
    for t in tlvs {
        if t.tag() == tag {
            return t.value().map(<[u8]>::to_vec);
        }
        if let Some(c) = t.children()
            && let Some(v) = find(c, raw)
        {
            return Some(v);
        }
    }
    None
}

/// A tag's value anywhere in the record DGIs (what READ RECORD returns).
fn record_tag(chip: &ChipData, raw: u32) -> Option<Vec<u8>> {
    chip.dgis
        .iter()
        .filter(|d| d.dgi.is_record())
        .find_map(|d| find(&tlv::parse_all(d.dgi.value()).ok()?, raw))
}

/// The contact AFL as the card returns it from GPO (9104 TLV, or M/Chip's fixed A005 AIP||AFL).
fn contact_aip_afl(chip: &ChipData) -> ([u8; 2], Vec<u8>) {
    if let Some(d) = chip.dgi(0x9104) {
        let t = tlv::parse_all(d.dgi.value()).expect("9104 is TLV");
        let aip = find(&t, 0x82).expect("82");
        return ([aip[0], aip[1]], find(&t, 0x94).expect("94"));
    }
    let v = chip.dgi(0xA005).expect("A005").dgi.value().to_vec();
    ([v[0], v[1]], v[2..].to_vec())
}

/// Static data to be authenticated, walked independently of the library (EMV Book 3 10.3).
fn static_data(chip: &ChipData, afl: &[u8], aip: [u8; 2]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in afl.chunks(4) {
        let sfi = e[0] >> 3;
        for rec in e[1]..=e[2] {
            let d = chip
                .dgi(u16::from_be_bytes([sfi, rec]))
                .unwrap_or_else(|| panic!("AFL record {sfi}/{rec} missing"));
            if rec < e[1] + e[3] {
                let v = d.dgi.value();
                assert_eq!(v[0], 0x70);
                let skip = match v[1] {
                    0x81 => 3,
                    0x82 => 4,
                    _ => 2,
                };
                out.extend_from_slice(&v[skip..]);
            }
        }
    }
    if record_tag(chip, 0x9F4A).as_deref() == Some(&[0x82]) {
        out.extend_from_slice(&aip);
    }
    out
}

fn digits(v: &[u8]) -> String {
    v.iter()
        .flat_map(|b| [b >> 4, b & 15])
        .map(|n| {
            char::from_digit(u32::from(n), 16)
                .expect("nibble")
                .to_ascii_uppercase()
        })
        .collect::<String>()
        .trim_end_matches('F')
        .to_string()
}

/// Checks one card's chip data as a terminal would, against its tracks and the CA keys.
fn terminal_checks(
    chip: &ChipData,
    profile: &ChipProfile,
    order: &Order,
    track2: &str,
    cas: &[CaPublicKey],
) {
    let pan = order.pan.reveal();
    // DGIs in the profile's order, every required one present.
    let ids = chip.ids();
    let order_ids: Vec<u16> = profile.send_order().filter(|id| ids.contains(id)).collect();
    assert_eq!(ids, order_ids, "{}: DGIs follow the send order", order.id);
    for id in profile.required_dgis() {
        assert!(ids.contains(&id), "{}: required DGI {id:04X}", order.id);
    }
    for d in &chip.dgis {
        let rule = profile.dgi_rule(d.dgi.id()).expect("rule");
        assert_eq!((d.encrypt, d.pad), (rule.encrypt, rule.pad));
    }
    // 5A, 57, 5F24 and track 2 agree on PAN, expiry and service code.
    assert_eq!(digits(&record_tag(chip, 0x5A).expect("5A")), pan);
    let t57 = digits(&record_tag(chip, 0x57).expect("57"));
    let (p57, rest57) = t57.split_once('D').expect("57 separator");
    assert_eq!(p57, pan);
    let body = track2.trim_start_matches(';').trim_end_matches('?');
    let (p2, rest2) = body.split_once('=').expect("track 2 separator");
    assert_eq!(p2, pan);
    assert_eq!(rest57[..7], rest2[..7], "expiry and service code");
    let exp = order.exp.to_string();
    assert_eq!(&rest57[..4], exp);
    let f5f24 = digits(&record_tag(chip, 0x5F24).expect("5F24"));
    assert_eq!(&f5f24[..4], exp);
    let sc = digits(&record_tag(chip, 0x5F30).unwrap_or_else(|| vec![0x02, 0x01]));
    if record_tag(chip, 0x5F30).is_some() {
        assert_eq!(&sc[1..], &rest2[4..7]);
    }
    // Every AFL record exists; the ODA chain recovers.
    let (aip, afl) = contact_aip_afl(chip);
    let sda = static_data(chip, &afl, aip);
    if profile.oda.method == OdaMethod::None {
        return;
    }
    let ca_index = record_tag(chip, 0x8F).expect("8F")[0];
    let ca = cas
        .iter()
        .find(|c| c.rid[..] == chip.aid[..5] && c.index == ca_index)
        .expect("a CA public key for the AID's RID and 8F");
    let issuer = oda::recover_issuer_certificate(
        &ca.key,
        &record_tag(chip, 0x90).expect("90"),
        &record_tag(chip, 0x92).unwrap_or_default(),
        &record_tag(chip, 0x9F32).expect("9F32"),
    )
    .expect("issuer certificate recovers with the CA key");
    assert!(issuer.issuer_id_matches_pan(pan));
    match profile.oda.method {
        OdaMethod::Sda => {
            let ssad = oda::recover_static_application_data(
                &issuer.issuer_key,
                &record_tag(chip, 0x93).expect("93"),
                &sda,
            )
            .expect("SSAD verifies over the static data");
            assert_eq!(ssad.dac, profile.oda.dac);
        }
        _ => {
            let icc = oda::recover_icc_certificate(
                &issuer.issuer_key,
                &record_tag(chip, 0x9F46).expect("9F46"),
                &record_tag(chip, 0x9F48).unwrap_or_default(),
                &record_tag(chip, 0x9F47).expect("9F47"),
                &sda,
            )
            .expect("ICC certificate verifies over the static data");
            assert!(icc.pan_matches(pan));
            assert_eq!(
                (icc.fields.expiry.month(), icc.fields.expiry.year()),
                (order.exp.mm, order.exp.yy)
            );
            assert_eq!(icc.icc_key.bits(), profile.oda.icc_key_bits);
            // The CRT DGIs are the private half of the certified key: p * q = n.
            let p = chip.dgi(0x8205).expect("8205").dgi.value();
            let q = chip.dgi(0x8204).expect("8204").dgi.value();
            let pair = RsaKeyPair::from_primes(p, q, profile.oda.icc_exponent).expect("primes");
            assert_eq!(pair.public_key(), &icc.icc_key);
        }
    }
}

#[test]
fn every_profile_and_demo_order_is_consistent() {
    let d = demo();
    let cas = d.keys.ca_public_keys();
    assert_eq!(cas.len(), 2);
    let mut done = 0;
    for order in &d.orders {
        let product = d.catalog.get(&order.card_product_id).expect("product");
        for profile in d.profiles.profiles() {
            // The demo issuer keys cover one BIN each: run each order under every profile of its
            // scheme (the AID's RID names the CA).
            let issuer_rid = if order.pan.reveal().starts_with('5') {
                "A000000004"
            } else {
                "A000000003"
            };
            if hex::encode_upper(&profile.aid[..5]) != issuer_rid {
                continue;
            }
            let needs_pin = profile.required_dgis().any(|id| id == 0x8010);
            let result = model1::prepare(order, product, profile, DATE, &d.keys, &InlineKeys);
            if needs_pin && order.pin.is_none() && !product.random_pin {
                // The profile requires an offline PIN the order cannot give: a clear refusal.
                let e = format!("{:?}", result.expect_err("no PIN, no random PIN"));
                assert!(
                    e.contains("dgi.8010") && e.contains("encryptedData.pin"),
                    "{e}"
                );
                continue;
            }
            let data =
                result.unwrap_or_else(|e| panic!("{} under {}: {e:?}", order.id, profile.name));
            let chip = data.chip.as_ref().expect("chip");
            let t2 = data
                .tracks
                .track2
                .as_ref()
                .expect("track 2")
                .reveal()
                .to_string();
            terminal_checks(chip, profile, order, &t2, &cas);
            // KCVs: 9000 holds the KCVs of the keys in 8000.
            let mk = chip.dgi(0x8000).expect("8000").dgi.value();
            let kcvs: Vec<u8> = mk
                .chunks(16)
                .flat_map(|k| persodesk::domain::crypto::kcv_tdes(k).expect("kcv"))
                .collect();
            assert_eq!(chip.dgi(0x9000).expect("9000").dgi.value(), &kcvs[..]);
            // PIN: 8010 holds the order's PIN (decrypted here with the demo zone/transport key).
            if let Some(pin) = &order.pin {
                let block = chip.dgi(0x8010).expect("8010").dgi.value();
                let key = key_value(pin.format.key_usage().as_str(), pin.kid);
                let clear = match pin.format {
                    persodesk::domain::fields::PinBlockFormat::Iso4 => {
                        persodesk::domain::pinblock::iso4_decrypt(
                            &key,
                            pin.block.bytes(),
                            &order.pan,
                        )
                    }
                    _ => persodesk::domain::pinblock::iso0_decrypt(
                        &key,
                        pin.block.bytes(),
                        &order.pan,
                    ),
                }
                .expect("order PIN");
                let n = clear.reveal().len();
                assert_eq!(block[0], 0x20 | n as u8);
                assert_eq!(&digits(block)[2..2 + n], clear.reveal());
                assert!(!chip.pin_generated);
            } else if product.random_pin {
                assert!(chip.pin_generated);
                assert_eq!(chip.dgi(0x8010).expect("8010").dgi.value()[0] >> 4, 2);
            } else {
                assert!(chip.dgi(0x8010).is_none());
            }
            done += 1;
        }
    }
    assert!(done >= 8, "{done}");
}

/// A key value from the demo key file (tests may read the repository's own files).
fn key_value(usage: &str, index: u32) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let t: toml::Table = text.parse().expect("toml");
    let k = t["key"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| {
            k["usage"].as_str() == Some(usage) && k["index"].as_integer() == Some(i64::from(index))
        })
        .expect("key");
    hex::decode(k["value"].as_str().expect("value")).expect("hex")
}

/// Published known answers through the key store: EMV option A and B (pyemv, kd.py docstrings).
#[test]
fn dgi_8000_matches_published_derivation_vectors() {
    let toml = r#"
[[key]]
usage = "imk-ac"
index = 1
algorithm = "tdes"
value = "0123456789ABCDEFFEDCBA9876543210"
kcv = "08D7B4"
[[key]]
usage = "imk-smi"
index = 1
algorithm = "tdes"
value = "0123456789ABCDEFFEDCBA9876543210"
kcv = "08D7B4"
[[key]]
usage = "imk-smc"
index = 1
algorithm = "tdes"
value = "0123456789ABCDEFFEDCBA9876543210"
kcv = "08D7B4"
"#;
    let keys = SoftwareKeyStore::from_toml("t.toml", toml).expect("keys");
    let pan = Pan::parse("12345678901234567").expect("pan");
    let psn = Psn::parse("01").expect("psn");
    // Source: knovichikhin/pyemv pyemv/kd.py derive_icc_mk_a / derive_icc_mk_b docstrings.
    for (option, expected) in [
        (MkdOption::A, "73AD54688CEF2934B0979857E3C719F1"),
        (MkdOption::B, "AD406D7F6D7570916D75E5DCAB8CF737"),
    ] {
        let set = keys.icc_master_keys(1, option, &pan, psn).expect("derive");
        let IccMasterKeyValue::Clear(value) = &set.value else {
            panic!("the software store gives the ICC master keys in clear");
        };
        for k in value.chunks(16) {
            assert_eq!(hex::encode_upper(k), expected);
        }
        let kcv = persodesk::domain::crypto::kcv_tdes(&value[..16]).expect("kcv");
        assert_eq!(set.kcvs.ac, kcv);
    }
}

/// A key store with a CA of `ca_bits`, an issuer of `issuer_bits` at odaKeyIndex 1 (BIN
/// 476173, RID A000000003, CA index 99) and the demo symmetric keys.
fn store_with_pki(ca_bits: usize, issuer_bits: usize) -> (SoftwareKeyStore, CaPublicKey) {
    let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
    let ca = RsaKeyPair::generate(&mut rng, ca_bits, RsaExponent::Three).expect("ca");
    let issuer = RsaKeyPair::generate(&mut rng, issuer_bits, RsaExponent::Three).expect("issuer");
    let fields = IssuerCertFields {
        issuer_id: oda::issuer_identifier("476173").expect("id"),
        expiry: oda::CertExpiry::new(12, 35).expect("exp"),
        serial: [0, 0, 7],
    };
    let cert = oda::sign_issuer_certificate(&ca, &fields, issuer.public_key()).expect("sign");
    let crt = issuer.crt_components().expect("crt");
    let demo = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let symmetric: String = demo
        .split("\n# Demo issuer ODA key")
        .next()
        .expect("head")
        .to_string();
    let text = format!(
        "{symmetric}\n[[key]]\nusage = \"issuer-rsa\"\nindex = 1\nalgorithm = \"rsa\"\np = \"{}\"\nq = \"{}\"\nexponent = 3\ncertificate = \"{}\"\nremainder = \"{}\"\nrid = \"A000000003\"\nca_index = \"99\"\nca_modulus = \"{}\"\nca_exponent = 3\nkcv = \"{}\"\ntest = true\n",
        hex::encode(crt.p.expose()),
        hex::encode(crt.q.expose()),
        hex::encode(&cert.certificate),
        hex::encode(&cert.remainder),
        hex::encode(ca.modulus()),
        rsa_kcv(issuer.modulus()),
    );
    let keys = SoftwareKeyStore::from_toml("pki.toml", &text).expect("store with PKI");
    let capk = CaPublicKey {
        rid: [0xA0, 0, 0, 0, 3],
        index: 0x99,
        key: EmvPublicKey::new(ca.modulus(), RsaExponent::Three).expect("ca pub"),
    };
    (keys, capk)
}

fn visa_profile_with_icc_bits(bits: usize) -> ChipProfile {
    demo::edited_profile("vis-1.6.3-vcps-2.2.4", "vis.toml", |text| {
        text.replace("icc_key_bits = 1024", &format!("icc_key_bits = {bits}"))
    })
}

#[test]
fn certificate_chains_for_1024_1152_1408_1984_bit_cas() {
    let d = demo();
    let order = d.order("DEMO-VISA-0001");
    let mut order = order.clone();
    order.payment_application.oda_key_index = Some(1);
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let sda_profile = demo::edited_profile("vis-1.5.4-vcps-2.1.3", "us.toml", |text| text);
    for (ca_bits, issuer_bits, icc_bits) in [
        (1024, 960, 768),
        (1152, 1024, 768),
        (1408, 1152, 1024),
        (1984, 1408, 1152),
    ] {
        let (keys, ca) = store_with_pki(ca_bits, issuer_bits);
        let profile = visa_profile_with_icc_bits(icc_bits);
        let pool = KeyPool::start(icc_bits, RsaExponent::Three, 1).expect("pool");
        assert!(
            pool.wait_for(1, std::time::Duration::from_secs(60)),
            "pool fills"
        );
        let data = model1::prepare(&order, product, &profile, DATE, &keys, &pool).expect("prepare");
        let chip = data.chip.as_ref().expect("chip");
        assert!(chip.oda.as_ref().expect("oda").icc_key_from_pool);
        assert_eq!(record_tag(chip, 0x90).expect("90").len(), ca_bits / 8);
        assert_eq!(
            record_tag(chip, 0x9F46).expect("9F46").len(),
            issuer_bits / 8
        );
        let t2 = data
            .tracks
            .track2
            .as_ref()
            .expect("t2")
            .reveal()
            .to_string();
        terminal_checks(chip, &profile, &order, &t2, std::slice::from_ref(&ca));
        // SDA the same way.
        let data =
            model1::prepare(&order, product, &sda_profile, DATE, &keys, &InlineKeys).expect("sda");
        terminal_checks(
            data.chip.as_ref().expect("chip"),
            &sda_profile,
            &order,
            &t2,
            std::slice::from_ref(&ca),
        );
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let d = demo();
    let base = d.order("DEMO-VISA-0001").clone();
    let product = d.catalog.get(&base.card_product_id).expect("product");
    let profile = d.profiles.get("vis-1.6.3-vcps-2.2.4").expect("profile");
    let run = |o: &Order, p: &ChipProfile, k: &SoftwareKeyStore| -> String {
        match model1::prepare(o, product, p, DATE, k, &InlineKeys) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
    };
    // Unknown key index.
    let mut o = base.clone();
    o.payment_application.oda_key_index = Some(9);
    let e = run(&o, profile, &d.keys);
    assert!(
        e.contains("paymentApplication.odaKeyIndex")
            && e.contains("issuer-rsa #9 is not in the key store"),
        "{e}"
    );
    // Without a derivationKeyIndex neither 9F10's DKI nor DGI 8000 can be made.
    let mut o = base.clone();
    o.payment_application.derivation_key_index = None;
    let e = run(&o, profile, &d.keys);
    assert!(
        e.contains("paymentApplication.derivationKeyIndex") && e.contains("9F10"),
        "{e}"
    );
    // Wrong key type: the derivation index names a KEK slot that holds AES keys.
    let toml = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let aes_imk = toml.replacen(
        "usage = \"imk-ac\"\nindex = 1\nalgorithm = \"tdes\"\nvalue = \"0123456789ABCDEFFEDCBA9876543210\"\nkcv = \"08D7B4\"",
        "usage = \"imk-ac\"\nindex = 1\nalgorithm = \"aes\"\nvalue = \"000102030405060708090A0B0C0D0E0F\"\nkcv = \"C35280\"",
        1,
    );
    assert_ne!(aes_imk, toml);
    let keys = SoftwareKeyStore::from_toml("k.toml", &aes_imk).expect("keys");
    let e = run(&base, profile, &keys);
    assert!(
        e.contains("imk-ac #1 is aes, the operation needs tdes"),
        "{e}"
    );
    // RSA key too large for its certificate: a 1024-bit ICC key under a 960-bit issuer.
    let (keys, _) = store_with_pki(1024, 960);
    let mut o = base.clone();
    o.payment_application.oda_key_index = Some(1);
    let e = run(&o, profile, &keys);
    assert!(e.contains("too large for its certificate"), "{e}");
    // A required tag the order cannot yield: no name and no track 1 given... the track needs it
    // first; a profile that requires PAR (9F24 without ?) and an order without one.
    let strict = demo::edited_profile("vis-1.6.3-vcps-2.2.4", "strict.toml", |text| {
        text.replace("\"9F24?\"", "\"9F24\"")
    });
    let mut o = base.clone();
    o.par = None;
    let e = run(&o, &strict, &d.keys);
    assert!(
        e.contains("strict.toml: dgi.0302")
            && e.contains("tag 9F24")
            && e.contains("paymentAccountReference"),
        "{e}"
    );
    // A configuration the product does not have.
    let mut o = base.clone();
    o.payment_application.config = Some("gold".into());
    let e = run(&o, profile, &d.keys);
    assert!(
        e.contains("paymentApplication.config") && e.contains("`gold`"),
        "{e}"
    );
    // No PIN and no random PIN allowed: 8010 is required by this profile.
    let mut o = base.clone();
    o.pin = None;
    o.pvv = Some(persodesk::domain::fields::Pvv::parse("1234").expect("pvv"));
    let e = run(&o, profile, &d.keys);
    assert!(
        e.contains("dgi.8010") && e.contains("encryptedData.pin"),
        "{e}"
    );
    // No error message carries the PAN.
    assert!(!e.contains(base.pan.reveal()));
}

#[test]
fn chip_debug_and_masked_preview_hide_values() {
    let d = demo();
    let o = d.order("DEMO-VISA-0001");
    let product = d.catalog.get(&o.card_product_id).expect("product");
    let profile = d
        .profiles
        .get(product.chip_profile.as_deref().expect("p"))
        .expect("profile");
    let data = model1::prepare(o, product, profile, DATE, &d.keys, &InlineKeys).expect("prepare");
    let chip = data.chip.as_ref().expect("chip");
    let dbg = format!("{data:?}");
    assert!(!dbg.contains(o.pan.reveal()), "Debug leaks the PAN");
    let masked = serde_json::to_string(&persodesk::domain::chip::preview::preview(chip, false))
        .expect("json");
    assert!(!masked.contains(o.pan.reveal()));
    assert!(masked.contains("476173******0010"));
    assert!(masked.contains("MARTIN/BOB"));
    let clear = serde_json::to_string(&persodesk::domain::chip::preview::preview(chip, true))
        .expect("json");
    assert!(clear.contains(o.pan.reveal()));
    // Key and PIN DGIs never carry values, even on request.
    for p in persodesk::domain::chip::preview::preview(chip, true) {
        if ["8000", "8010", "8201", "8205"].contains(&p.dgi.as_str()) {
            assert!(p.value.is_none() && p.tlv.is_empty(), "{}", p.dgi);
        }
    }
    let mk = hex::encode_upper(chip.dgi(0x8000).expect("8000").dgi.value());
    assert!(!clear.contains(&mk));
    let _ = Path::new("");
    let _ = DgiContent::MasterKeys;
}
