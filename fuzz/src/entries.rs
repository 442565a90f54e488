//! Fuzz entry functions: one per target, each taking arbitrary bytes. They must never panic on any
//! input; the `assert!`s below are properties that hold for every input (a failure is a bug).
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, through `persodesk_fuzz`) and by
//! the corpus replay test (`tests/fuzz_corpus.rs`, through `#[path]`). The parent module provides
//! `domain` and `keys`: the by-path modules in the fuzz crate, `persodesk::{domain, keys}` in the
//! test.

use std::sync::OnceLock;

use super::domain::dgi::{self, PersoDgi};
use super::domain::fields::{Pan, Yymm};
use super::domain::gp::session::{
    Aid, CardKeys, ChannelPlan, PersoPlan, PersoSession, Protocol, Step,
};
use super::domain::gp::{SecretKey, SecurityLevel, StaticKeys, scp02};
use super::domain::msr206::{
    Action, Expect, Feed, FlowConfig, Response, ResponseKind, ResponseParser, TrackBody,
    TrackNumber, TrackSet, WriteSession,
};
use super::domain::order::{OrderRules, parse_order_file};
use super::domain::prepare::prepare_tracks;
use super::domain::product::{Catalog, Product};
use super::domain::tlv;
use super::domain::track::{Track, TrackNo};
use super::keys::SoftwareKeyStore;

/// The demo products and key store (test keys only), compiled in.
struct Demo {
    catalog: Catalog,
    keys: SoftwareKeyStore,
}

fn demo() -> Option<&'static Demo> {
    static DEMO: OnceLock<Option<Demo>> = OnceLock::new();
    DEMO.get_or_init(|| {
        let products = [
            (
                "demo_mc_debit.toml",
                include_str!("../../profiles/products/demo_mc_debit.toml"),
            ),
            (
                "demo_visa_credit.toml",
                include_str!("../../profiles/products/demo_visa_credit.toml"),
            ),
            (
                "demo_visa_us.toml",
                include_str!("../../profiles/products/demo_visa_us.toml"),
            ),
        ];
        let products: Vec<Product> = products
            .iter()
            .map(|(file, text)| Product::from_toml(file, text).ok())
            .collect::<Option<_>>()?;
        let catalog = Catalog::new(products).ok()?;
        let keys =
            SoftwareKeyStore::from_toml("keys.toml", include_str!("../../assets/demo/keys.toml"))
                .ok()?;
        Some(Demo { catalog, keys })
    })
    .as_ref()
}

/// Order files: parsing, validation, and for every valid order of a demo product, preparation
/// with the demo keys and the encoder's track checks. The masked tracks never show a full PAN.
pub fn order(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(demo) = demo() else {
        panic!("the demo products and keys must load");
    };
    let rules = demo.catalog.order_rules();
    let Ok(entries) = parse_order_file(text, &rules) else {
        // Also without product rules: another code path for the Luhn check.
        let _ = parse_order_file(text, &OrderRules::default());
        return;
    };
    for entry in entries {
        let Ok(order) = &entry.outcome else {
            continue;
        };
        let Some(product) = demo.catalog.get(&order.card_product_id) else {
            continue;
        };
        let Ok(data) = prepare_tracks(order, product, &demo.keys) else {
            continue;
        };
        let pan = order.pan.reveal();
        for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
            if let Some(track) = data.tracks.get(no) {
                let masked = track.masked();
                assert!(!masked.contains(pan), "a masked track shows the full PAN");
                assert_eq!(masked.len(), track.len(), "masking keeps the length");
            }
        }
        let body = |no| data.tracks.get(no).map(Track::body);
        let _ = TrackSet::new(body(TrackNo::T1), body(TrackNo::T2), body(TrackNo::T3));
    }
}

/// Product files.
pub fn product(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(product) = Product::from_toml("fuzz.toml", text) {
        let _ = Catalog::new(vec![product]);
    }
}

/// Key store files. A file that loads lists its keys; no error message quotes a hex run of the
/// input's key values (checked by the regression tests, not here).
pub fn keystore(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(store) = SoftwareKeyStore::from_toml("fuzz.toml", text) {
        let _ = store.list();
    }
}

/// BER-TLV: the strict validator agrees with the parser, and parse ∘ encode ∘ parse = parse.
pub fn tlv(data: &[u8]) {
    let parsed = tlv::parse_all(data);
    let _ = tlv::parse_all_skip_padding(data);
    let _ = tlv::validate_one(data);
    let _ = tlv::validate_all(data);
    if let Ok(tlvs) = parsed {
        let mut out = Vec::new();
        tlv::encode_all(&tlvs, &mut out);
        let again = tlv::parse_all(&out);
        assert!(again.as_ref() == Ok(&tlvs), "TLV re-encoding round trip");
        for t in &tlvs {
            assert_eq!(t.encoded_len(), t.to_bytes().len(), "encoded_len");
        }
    }
}

/// CPS DGI streams: parse, re-encode, parse again equal; per-DGI checks never panic.
pub fn dgi(data: &[u8]) {
    let _ = dgi::Dgi::from_bytes(data);
    let Ok(dgis) = dgi::parse_stream(data) else {
        return;
    };
    for d in &dgis {
        let _ = d.validate();
        let _ = d.oda_input();
        let _ = d.info();
    }
    let mut out = Vec::new();
    dgi::encode_stream(&dgis, &mut out);
    assert_eq!(out.len(), dgi::encoded_len_sum(&dgis), "encoded_len_sum");
    let again = dgi::parse_stream(&out);
    assert!(again.as_ref() == Ok(&dgis), "DGI re-encoding round trip");
}

/// Track overrides (`trackData`): the first byte picks the track and whether the order's PAN and
/// expiry are known; the rest is the track text. A valid track never shows its PAN when masked,
/// and its body goes through the encoder's own checks without panicking.
pub fn track(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let no = match selector % 3 {
        0 => TrackNo::T1,
        1 => TrackNo::T2,
        _ => TrackNo::T3,
    };
    let pan = Pan::parse("4761739001010010").ok();
    let exp = Yymm::parse("2805").ok();
    let pan = if selector & 0x10 != 0 {
        pan.as_ref()
    } else {
        None
    };
    let exp = if selector & 0x20 != 0 { exp } else { None };
    let Ok(track) = Track::from_order(no, text, pan, exp) else {
        return;
    };
    let masked = track.masked();
    assert_eq!(masked.len(), track.len(), "masking keeps the length");
    let digits: String = track
        .reveal()
        .chars()
        .skip(if no == TrackNo::T1 { 2 } else { 1 })
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(
        !masked.contains(digits.as_str()),
        "a masked track shows the full PAN"
    );
    let number = match no {
        TrackNo::T1 => TrackNumber::One,
        TrackNo::T2 => TrackNumber::Two,
        TrackNo::T3 => TrackNumber::Three,
    };
    let _ = track.name_field();
    let _ = TrackBody::new(number, track.body());
}

/// Encoder replies: the first byte picks the reply kind and how the rest is chunked; the bytes go
/// through the incremental parser, and every reply parsed drives a write session.
pub fn msr206(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Whole replies only, at every split (1..=8 bytes per feed).
    let chunk = usize::from(selector & 0x07) + 1;
    let mut session = WriteSession::new(
        match TrackSet::new(
            Some("B4000001234567899^TEST/CARD^3012"),
            Some("4000=3012"),
            None,
        ) {
            Ok(t) => t,
            Err(_) => panic!("fixed tracks are valid"),
        },
        FlowConfig {
            max_bad_swipes: u32::from(selector >> 6),
        },
    );
    let mut action = session.start();
    let mut input = rest;
    let mut replies = 0usize;
    loop {
        action = match action {
            Action::Done(_) | Action::Failed(_) => return,
            Action::Send { expect, .. } => match expect {
                Expect::Nothing => session.sent(),
                Expect::Reply { kind, .. } => {
                    let Some((response, used)) = parse_one(kind, input, chunk) else {
                        return;
                    };
                    assert!(used <= input.len() && used > 0, "parser consumed bytes");
                    input = input.get(used..).unwrap_or_default();
                    replies += 1;
                    assert!(replies <= data.len(), "one reply needs at least one byte");
                    session.handle(response)
                }
            },
        };
    }
}

/// Parses one reply of `kind` from `input`, fed `chunk` bytes at a time. Returns the reply and the
/// bytes it used, or `None` on a malformed or incomplete reply.
fn parse_one(kind: ResponseKind, input: &[u8], chunk: usize) -> Option<(Response, usize)> {
    let mut parser = ResponseParser::new(kind);
    let mut offset = 0;
    for piece in input.chunks(chunk) {
        match parser.feed(piece) {
            Ok(Feed::NeedMore) => offset += piece.len(),
            Ok(Feed::Complete { response, consumed }) => {
                assert!(consumed <= piece.len(), "consumed within the slice");
                // A finished parser refuses more input.
                assert!(
                    parser.feed(&[0x1B]).is_err(),
                    "finished parser refuses input"
                );
                return Some((response, offset + consumed));
            }
            Err(_) => return None,
        }
    }
    None
}

/// Card responses to the GlobalPlatform personalization session. The input is a sequence of
/// responses, each a length byte and that many bytes. Byte 0 picks SCP02 i=15 or SCP03 i=00, the
/// security level and whether the INITIALIZE UPDATE response gets a correct card cryptogram
/// (SCP02), so that the fuzzer reaches EXTERNAL AUTHENTICATE and STORE DATA.
pub fn gp_session(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let key = |hex: &str| SecretKey::from_hex(hex).ok();
    let (Some(enc), Some(mac), Some(dek)) = (
        key("404142434445464748494A4B4C4D4E4F"),
        key("404142434445464748494A4B4C4D4E4F"),
        key("404142434445464748494A4B4C4D4E4F"),
    ) else {
        panic!("fixed test keys are valid");
    };
    let keys = StaticKeys { enc, mac, dek };
    let scp02 = selector & 0x01 == 0;
    let protocol = if scp02 {
        Protocol::Scp02 { i: 0x15 }
    } else {
        Protocol::Scp03 { i: 0x00 }
    };
    let security_level = if selector & 0x02 == 0 {
        SecurityLevel::CMac
    } else {
        SecurityLevel::CMacCDec
    };
    let (Ok(target_aid), Ok(instance)) = (
        Aid::from_hex("A0000000041010"),
        Aid::from_hex("A000000004101001"),
    ) else {
        panic!("fixed AIDs are valid");
    };
    let host_challenge = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    let plan = PersoPlan {
        channel: ChannelPlan {
            target_aid,
            install_for_perso: (selector & 0x04 != 0).then_some(instance),
            protocol,
            security_level,
            key_version: 0,
            keys: CardKeys::Static(keys.clone()),
            verify_card_challenge: false,
        },
        host_challenge,
        dgis: [
            (0x0101, vec![0x70, 0x03, 0x5F, 0x20, 0x00], false, false),
            (0x8000, vec![0x42; 16], true, false),
            (0x9000, vec![0x01, 0x02, 0x03], false, false),
            (0x8010, vec![0x24, 0x12, 0x34, 0xFF], true, true),
        ]
        .into_iter()
        .filter_map(|(id, value, encrypt, pad)| PersoDgi::new(id, value, encrypt, pad).ok())
        .collect(),
    };
    let Ok((mut session, _select)) = PersoSession::start(plan) else {
        panic!("the fixed plan is valid");
    };
    let fix_cryptogram = scp02 && selector & 0x08 != 0;
    let mut responses = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (response, next) = tail.split_at(len);
        rest = next;
        let mut response = response.to_vec();
        // The second response answers INITIALIZE UPDATE: 28 data bytes and 90 00 for SCP02.
        if fix_cryptogram && responses == 1 && response.len() == 30 {
            card_cryptogram(&keys, &host_challenge, &mut response);
        }
        responses += 1;
        match session.handle_response(&response) {
            Step::Transmit(_) => {}
            Step::Done(_) | Step::Failed(_) => {
                assert!(session.is_finished(), "a finished session says so");
                return;
            }
        }
    }
}

/// Writes the correct SCP02 card cryptogram into a 28-byte INITIALIZE UPDATE response (+ SW).
fn card_cryptogram(keys: &StaticKeys, host_challenge: &[u8; 8], response: &mut [u8]) {
    let Some(Ok(card)) = response.get(..28).map(scp02::InitUpdateResponse::parse) else {
        return;
    };
    let Ok(session) = scp02::SessionKeys::derive(keys, card.sequence_counter) else {
        return;
    };
    if let (Ok(cryptogram), Some(slot)) = (
        scp02::ChannelKeys::from(session).card_cryptogram(host_challenge, &card),
        response.get_mut(20..28),
    ) {
        slot.copy_from_slice(&cryptogram);
    }
}

// ------------------------------------------------------------------------------------------------
// Chip profiles, the Model 2 envelope, the virtual card, the read-back session
// ------------------------------------------------------------------------------------------------

use super::domain::chip::model2;
use super::domain::chip::profile::{ChipProfile, ChipProfiles, Interface};
use super::domain::dgi_text;
use super::domain::envelope::{EnvelopeKeys, EnvelopeSettings};
use super::domain::keystore::{KeyRef, KeyUsage};
use super::domain::oda::{CaPublicKey, EmvPublicKey, RsaExponent};
use super::domain::order::Order;
use super::domain::prepare::PersoData;
use super::domain::readback::{ReadBackSession, ReadStep, TerminalData};
use super::sim::card::channel::{CardKeySource, CardProtocol};
use super::sim::card::{CardConfig, ISD_AID, SavedState, VirtualCard};

/// The demo chip profiles (name, file text), compiled in.
const CHIP_PROFILES: [(&str, &str); 3] = [
    (
        "mchip-advance-1.2.3",
        include_str!("../../profiles/chip/mchip-advance-1.2.3.toml"),
    ),
    (
        "vis-1.5.4-vcps-2.1.3",
        include_str!("../../profiles/chip/vis-1.5.4-vcps-2.1.3.toml"),
    ),
    (
        "vis-1.6.3-vcps-2.2.4",
        include_str!("../../profiles/chip/vis-1.6.3-vcps-2.2.4.toml"),
    ),
];

fn chip_profiles() -> Option<&'static ChipProfiles> {
    static PROFILES: OnceLock<Option<ChipProfiles>> = OnceLock::new();
    PROFILES
        .get_or_init(|| {
            let profiles = CHIP_PROFILES
                .iter()
                .map(|(name, text)| ChipProfile::from_toml(name, name, text).ok())
                .collect::<Option<Vec<_>>>()?;
            ChipProfiles::new(profiles).ok()
        })
        .as_ref()
}

/// Chip profile files: a profile that loads answers every question the preparation asks it.
pub fn chip_profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = ChipProfile::from_toml("fuzz.toml", "fuzz", text) else {
        return;
    };
    for rule in profile.dgis() {
        assert!(
            profile.dgi_rule(rule.id).is_some(),
            "a declared DGI has a rule"
        );
        let _ = profile.is_reserved(rule.id);
    }
    let sent = profile.send_order().count();
    assert_eq!(sent, profile.dgis().len(), "every DGI is sent once");
    let _ = profile.required_dgis().count();
    let _ = profile.records().count();
    for interface in [Interface::Contact, Interface::Contactless] {
        let _ = profile.aip(interface);
        let _ = profile.afl(interface);
    }
    let _ = ChipProfiles::new(vec![profile.clone(), profile]);
}

/// A demo Model 2 order with its product's prepared tracks and its chip profile.
struct Model2Demo {
    order: Order,
    data: PersoData,
    profile: &'static ChipProfile,
}

fn model2_demo() -> &'static [Model2Demo] {
    static DEMO: OnceLock<Vec<Model2Demo>> = OnceLock::new();
    DEMO.get_or_init(|| {
        let (Some(demo), Some(profiles)) = (demo(), chip_profiles()) else {
            return Vec::new();
        };
        let text = include_str!("../../assets/demo/orders-model2.json");
        let Ok(entries) = parse_order_file(text, &demo.catalog.order_rules()) else {
            return Vec::new();
        };
        entries
            .into_iter()
            .filter_map(|entry| {
                let order = entry.outcome.ok()?;
                let product = demo.catalog.get(&order.card_product_id)?;
                let profile = profiles.get(product.chip_profile.as_deref()?)?;
                let data = prepare_tracks(&order, product, &demo.keys).ok()?;
                Some(Model2Demo {
                    order,
                    data,
                    profile,
                })
            })
            .collect()
    })
}

/// The Model 2 envelope: byte 0 picks the demo order (bits 0-1), the KEK (bit 2: the demo AES
/// KEK #1 or the TDES KEK #2), whether the rest is sealed by the harness as the issuer would
/// (bit 3 clear: the fuzzer controls the plaintext DGI stream and reaches the structure, profile,
/// order and key checks) or taken as the ciphertext itself (bit 3 set: decryption, padding and
/// MAC checks), and whether the declared lengths are right (bit 4 clear) or come from the next
/// four bytes. An accepted dataset is consistent with the order, and no error names clear data.
pub fn model2(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let demos = model2_demo();
    let Some(demo_keys) = demo() else {
        panic!("the demo products and keys must load");
    };
    assert!(!demos.is_empty(), "the demo Model 2 orders must prepare");
    let Some(base) = demos.get(usize::from(selector & 0x03) % demos.len()) else {
        return;
    };
    let kek = KeyRef::new(KeyUsage::Kek, if selector & 0x04 == 0 { 1 } else { 2 });
    let (declared, rest) = match (selector & 0x10 != 0, rest.split_first_chunk::<4>()) {
        (true, Some((d, tail))) => (
            Some((
                u32::from(u16::from_be_bytes([d[0], d[1]])),
                u32::from(u16::from_be_bytes([d[2], d[3]])),
            )),
            tail,
        ),
        (true, None) => return,
        (false, _) => (None, rest),
    };
    let settings = EnvelopeSettings::default();
    let Some(env) = &base.order.tlv_data else {
        panic!("demo Model 2 orders carry tlvData");
    };
    let mut env = env.clone();
    env.kek_id = kek.index;
    if selector & 0x08 == 0 {
        let Ok(sealed) = demo_keys
            .keys
            .seal_envelope(kek, &[0x5A; 16], rest, settings)
        else {
            panic!("sealing under a demo KEK works");
        };
        env.mac_key = sealed.mac_key;
        env.tlv_data = sealed.tlv_data;
        env.mac = sealed.mac;
        env.tlv_data_length = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        env.applet_data_length = dgi::parse_stream(rest)
            .map(|d| u32::try_from(dgi::value_len_sum(&d)).unwrap_or(u32::MAX))
            .unwrap_or(0);
    } else {
        env.tlv_data = rest.to_vec();
    }
    if let Some((tlv_len, applet_len)) = declared {
        env.tlv_data_length = tlv_len;
        env.applet_data_length = applet_len;
    }
    let mut order = base.order.clone();
    order.tlv_data = Some(env);
    match model2::import(
        &order,
        base.profile,
        &base.data.tracks,
        &demo_keys.keys,
        settings,
    ) {
        Ok(chip) => {
            assert!(!chip.dgis.is_empty(), "an accepted dataset has DGIs");
        }
        Err(e) => {
            let message = e.to_string();
            let pan = order.pan.reveal();
            assert!(!message.contains(pan), "a Model 2 error shows the PAN");
            let _ = e.finding();
        }
    }
}

/// The test keys of the virtual card (the GlobalPlatform default test keys).
const CARD_KEY: &str = "404142434445464748494A4B4C4D4E4F";

fn card_keys(scp03: bool) -> Option<(CardProtocol, CardKeySource, CardKeys, Protocol)> {
    let key = |hex: &str| SecretKey::from_hex(hex).ok();
    let static_keys = StaticKeys {
        enc: key(CARD_KEY)?,
        mac: key(CARD_KEY)?,
        dek: key(CARD_KEY)?,
    };
    let bytes = hex::decode(CARD_KEY).ok()?;
    let source = CardKeySource::Static {
        enc: zeroize::Zeroizing::new(bytes.clone()),
        mac: zeroize::Zeroizing::new(bytes.clone()),
        dek: zeroize::Zeroizing::new(bytes),
    };
    Some(if scp03 {
        (
            CardProtocol::Scp03 { i: 0x00 },
            source,
            CardKeys::Static(static_keys),
            Protocol::Scp03 { i: 0x00 },
        )
    } else {
        (
            CardProtocol::Scp02 { i: 0x15 },
            source,
            CardKeys::Static(static_keys),
            Protocol::Scp02 { i: 0x15 },
        )
    })
}

/// A blank virtual card and the host plan options that open its secure channel.
fn blank_card(scp03: bool, t0: bool) -> Option<(VirtualCard, CardKeys, Protocol)> {
    let (card_protocol, source, host_keys, protocol) = card_keys(scp03)?;
    let mut config = CardConfig::new(card_protocol, source, [0x12, 0x34, 0x56, 0x78]);
    config.t0 = t0;
    let mut card = VirtualCard::new(config).ok()?;
    card.set_fixed_random([0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7]);
    Some((card, host_keys, protocol))
}

/// Personalizes `card` with `dgis` through persodesk's own host session; the number of commands.
fn personalize(
    card: &mut VirtualCard,
    keys: CardKeys,
    protocol: Protocol,
    security_level: SecurityLevel,
    gp_style: bool,
    dgis: Vec<PersoDgi>,
) -> Option<bool> {
    let app = Aid::from_hex("A0000000031010").ok()?;
    let plan = PersoPlan {
        channel: ChannelPlan {
            target_aid: if gp_style {
                Aid::new(&ISD_AID).ok()?
            } else {
                app.clone()
            },
            install_for_perso: gp_style.then_some(app),
            protocol,
            security_level,
            key_version: 0,
            keys,
            verify_card_challenge: false,
        },
        host_challenge: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
        dgis,
    };
    let (mut session, first) = PersoSession::start(plan).ok()?;
    let mut command = first.to_bytes();
    // SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, INSTALL, at most 255 STORE DATA + slack.
    for _ in 0..300 {
        let response = card.process(&command);
        match session.handle_response(&response) {
            Step::Transmit(next) => command = next.to_bytes(),
            Step::Done(_) => return Some(true),
            Step::Failed(_) => return Some(false),
        }
    }
    panic!("the personalization session does not end");
}

/// The demo Visa card's DGIs (assets/demo/model2, Model 1 output of a demo order) with the
/// profile's flags.
fn demo_card_dgis() -> Vec<PersoDgi> {
    let Some(profile) = chip_profiles().and_then(|p| p.get("vis-1.6.3-vcps-2.2.4")) else {
        return Vec::new();
    };
    let text = include_str!("../../assets/demo/model2/vis-1.6.3-vcps-2.2.4.dgi");
    let Ok(dgis) = dgi_text::parse("vis-1.6.3-vcps-2.2.4.dgi", text) else {
        return Vec::new();
    };
    dgis.iter()
        .map(|d| {
            let (encrypt, pad) = profile
                .dgi_rule(d.id())
                .map_or((false, false), |r| (r.encrypt, r.pad));
            PersoDgi {
                dgi: d.clone(),
                encrypt,
                pad,
                held: None,
            }
        })
        .collect()
}

/// The state of a virtual card personalized with the demo Visa DGIs.
fn personalized_state() -> &'static SavedState {
    static STATE: OnceLock<SavedState> = OnceLock::new();
    STATE.get_or_init(|| {
        let Some((mut card, keys, protocol)) = blank_card(false, false) else {
            panic!("the blank virtual card builds");
        };
        let done = personalize(
            &mut card,
            keys,
            protocol,
            SecurityLevel::CMacCDec,
            false,
            demo_card_dgis(),
        );
        assert_eq!(done, Some(true), "the demo card personalizes");
        card.save()
    })
}

/// Commands fed to the virtual card. Byte 0: bit 0 SCP02 i=15 / SCP03 i=00, bit 1 T=0, bit 2
/// C-MAC or C-MAC + C-DEC, bits 4-5 the mode: 0 a blank card, 1 a card personalized with the demo
/// DGIs, 2 and 3 a blank card first personalized through persodesk's host session (CPS style, GP
/// style with INSTALL) with the DGI stream that follows (2-byte length, then the stream), so the
/// fuzzer controls what the card's STORE DATA handling parses. Then: commands, each a length byte
/// and that many bytes. The card answers every command with at least a status word while
/// present.
pub fn vcard(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let scp03 = selector & 0x01 != 0;
    let t0 = selector & 0x02 != 0;
    let level = if selector & 0x04 == 0 {
        SecurityLevel::CMac
    } else {
        SecurityLevel::CMacCDec
    };
    let Some((mut card, keys, protocol)) = blank_card(scp03, t0) else {
        panic!("the blank virtual card builds");
    };
    match (selector >> 4) & 0x03 {
        0 => {}
        1 => {
            if card.restore(personalized_state()).is_err() {
                panic!("the demo card state restores");
            }
        }
        mode => {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
            let (stream, tail) = tail.split_at(len);
            rest = tail;
            let Ok(dgis) = dgi::parse_stream(stream) else {
                return;
            };
            let dgis = dgis
                .iter()
                .map(|d| {
                    // The card's convention: 80xx-83xx encrypted, 81xx-83xx padded first.
                    let high = d.id() >> 8;
                    let (encrypt, pad) =
                        ((0x80..=0x83).contains(&high), (0x81..=0x83).contains(&high));
                    PersoDgi {
                        dgi: d.clone(),
                        encrypt,
                        pad,
                        held: None,
                    }
                })
                .collect();
            let _ = personalize(&mut card, keys, protocol, level, mode == 3, dgis);
        }
    }
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (command, next) = tail.split_at(len);
        rest = next;
        let response = card.process(command);
        assert!(response.len() >= 2, "the card answers with a status word");
    }
}

/// The demo test CA (assets/demo/keys.toml, issuer-rsa #1, CA index E1).
const DEMO_CA_MODULUS: &str = "BCEB58D872383CD8469EA11AABEADEAA17CEA25A0FBAA51B5B9BB51077D98DE0F77C71AAAE8BE44AC736867A0632E58E6E15D26A075184CBA1B40F1C70B7EDC61747B10BA0BA716FCF61DBA349DE60FEF195742A5519EF7596BB5F2E47E495D2420B744C42C37A9D3D074BF0EC0150A2E059651B377ACE55819C6A8B91E62EAFE42B0CDB01650AE38E00C4FCEA72E8D048522740690AC4234F997E1EA2E7277AA5786C2F37D85504E22175FFCA530CFF";

/// Card responses fed to the read-back session. Byte 0: bit 0 whether the CA key is known (ODA
/// runs), bit 1 whether the Visa and Mastercard AIDs are candidates. Then responses, each a
/// 2-byte big-endian length and that many bytes. A session fed only short answers ends; the
/// checks it reports never show a PAN in clear.
pub fn readback(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let ca = (selector & 0x01 != 0)
        .then(|| {
            let modulus = hex::decode(DEMO_CA_MODULUS).ok()?;
            let key = EmvPublicKey::new(&modulus, RsaExponent::Three).ok()?;
            Some(CaPublicKey {
                rid: [0xA0, 0x00, 0x00, 0x00, 0x03],
                index: 0xE1,
                key,
            })
        })
        .flatten();
    let candidates = if selector & 0x02 != 0 {
        vec![
            vec![0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10],
            vec![0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10],
        ]
    } else {
        Vec::new()
    };
    let terminal = TerminalData {
        un: [0xDE, 0xAD, 0xBE, 0xEF],
        date: [0x25, 0x06, 0x15],
        amount: [0, 0, 0, 0, 0x10, 0x00],
        country: [0x08, 0x40],
    };
    let (mut session, _select) = ReadBackSession::start(terminal, ca, candidates);
    let mut commands = 1usize;
    loop {
        let (response, next) = match rest.split_first_chunk::<2>() {
            Some((len, tail)) => {
                let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
                tail.split_at(len)
            }
            // Out of input: the card stops answering.
            None => (&[][..], &[][..]),
        };
        rest = next;
        match session.handle(response) {
            ReadStep::Transmit(_) => {
                commands += 1;
                assert!(commands <= 1000, "the read-back session does not end");
            }
            ReadStep::Done(result) => {
                // A PAN of 12+ digits read from 5A never shows whole in the report (the AID is
                // shown as the card gives it, so it is left out of the check).
                let pan = result
                    .pan
                    .as_deref()
                    .filter(|p| p.len() >= 12 && p.bytes().all(|b| b.is_ascii_digit()));
                if let Some(pan) = pan {
                    for check in &result.checks {
                        let line = check.to_string();
                        assert!(!line.contains(pan), "a read-back check shows the PAN");
                    }
                    let card = super::domain::readback::CardSummary {
                        aid: String::new(),
                        ..result.card.clone()
                    };
                    let debug = format!("{card:?}");
                    assert!(!debug.contains(pan), "the card summary shows the PAN");
                }
                let _ = result.passed();
                return;
            }
        }
    }
}

/// Seed inputs made from the demo data: (target, file name, bytes). Written to `fuzz/corpus/` by
/// `cargo test --test fuzz_corpus -- --ignored write_seeds`.
pub fn demo_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, text) in CHIP_PROFILES {
        out.push((
            "chip_profile",
            format!("seed-{name}"),
            text.as_bytes().to_vec(),
        ));
    }
    // Model 2: each demo order with its profile's demo DGI stream, under both KEKs; wrong
    // declared lengths; the order's own ciphertext (raw mode).
    let dgi_files = [
        (
            "mchip-advance-1.2.3",
            include_str!("../../assets/demo/model2/mchip-advance-1.2.3.dgi"),
        ),
        (
            "vis-1.5.4-vcps-2.1.3",
            include_str!("../../assets/demo/model2/vis-1.5.4-vcps-2.1.3.dgi"),
        ),
        (
            "vis-1.6.3-vcps-2.2.4",
            include_str!("../../assets/demo/model2/vis-1.6.3-vcps-2.2.4.dgi"),
        ),
    ];
    for (i, demo) in model2_demo().iter().enumerate() {
        let Ok(index) = u8::try_from(i) else { break };
        let Some((_, text)) = dgi_files.iter().find(|(n, _)| *n == demo.profile.name) else {
            continue;
        };
        let Ok(dgis) = dgi_text::parse("demo.dgi", text) else {
            continue;
        };
        let mut stream = Vec::new();
        dgi::encode_stream(&dgis, &mut stream);
        for (selector, tag) in [(0x00, "aes"), (0x04, "tdes")] {
            let mut seed = vec![index | selector];
            seed.extend_from_slice(&stream);
            out.push(("model2", format!("seed-{}-{tag}", demo.order.id), seed));
        }
        let mut seed = vec![index | 0x10, 0x00, 0x10, 0x00, 0x08];
        seed.extend_from_slice(&stream);
        out.push(("model2", format!("seed-{}-lengths", demo.order.id), seed));
        if let Some(env) = &demo.order.tlv_data {
            let mut seed = vec![index | 0x08 | if env.kek_id == 2 { 0x04 } else { 0 }];
            seed.extend_from_slice(&env.tlv_data);
            out.push(("model2", format!("seed-{}-raw", demo.order.id), seed));
        }
    }
    // A terminal reading the demo card: its commands (vcard) and the card's answers (readback).
    let Some((mut card, _, _)) = blank_card(false, false) else {
        return out;
    };
    if card.restore(personalized_state()).is_err() {
        return out;
    }
    let terminal = TerminalData {
        un: [0xDE, 0xAD, 0xBE, 0xEF],
        date: [0x25, 0x06, 0x15],
        amount: [0, 0, 0, 0, 0x10, 0x00],
        country: [0x08, 0x40],
    };
    let (mut session, first) = ReadBackSession::start(terminal, None, Vec::new());
    let (mut commands, mut responses) = (Vec::new(), vec![0x01]);
    let mut command = first.to_bytes();
    for _ in 0..100 {
        let response = card.process(&command);
        if let Ok(len) = u8::try_from(command.len()) {
            commands.push(len);
            commands.extend_from_slice(&command);
        }
        if let Ok(len) = u16::try_from(response.len()) {
            responses.extend_from_slice(&len.to_be_bytes());
            responses.extend_from_slice(&response);
        }
        match session.handle(&response) {
            ReadStep::Transmit(next) => command = next.to_bytes(),
            ReadStep::Done(_) => break,
        }
    }
    out.push(("readback", "seed-demo-visa".into(), responses.clone()));
    responses[0] = 0x03;
    out.push(("readback", "seed-demo-visa-ca".into(), responses));
    let mut seed = vec![0x10];
    seed.extend_from_slice(&commands);
    out.push(("vcard", "seed-terminal".into(), seed));
    let mut seed = vec![0x12];
    seed.extend_from_slice(&commands);
    out.push(("vcard", "seed-terminal-t0".into(), seed));
    // Blank card: SELECT ISD, GET DATA 66, INITIALIZE UPDATE.
    let mut seed = vec![0x00];
    for c in [
        &[
            0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00,
        ][..],
        &[0x80, 0xCA, 0x00, 0x66, 0x00],
        &[0x80, 0x50, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00],
    ] {
        seed.push(u8::try_from(c.len()).unwrap_or(0));
        seed.extend_from_slice(c);
    }
    out.push(("vcard", "seed-blank".into(), seed.clone()));
    seed[0] = 0x01;
    out.push(("vcard", "seed-blank-scp03".into(), seed));
    // Personalization with the demo DGIs through the host session, then the terminal.
    let mut stream = Vec::new();
    let text = include_str!("../../assets/demo/model2/vis-1.6.3-vcps-2.2.4.dgi");
    if let Ok(dgis) = dgi_text::parse("demo.dgi", text) {
        dgi::encode_stream(&dgis, &mut stream);
    }
    if let Ok(len) = u16::try_from(stream.len()) {
        for (selector, tag) in [(0x24, "cps-scp02"), (0x35, "gp-scp03")] {
            let mut seed = vec![selector];
            seed.extend_from_slice(&len.to_be_bytes());
            seed.extend_from_slice(&stream);
            seed.extend_from_slice(&commands);
            out.push(("vcard", format!("seed-perso-{tag}"), seed));
        }
    }
    out
}
