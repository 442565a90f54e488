//! Fuzz entry functions: one per target, each taking arbitrary bytes. They must never panic on any
//! input; the `assert!`s below are properties that hold for every input (a failure is a bug).
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, through `persodesk_fuzz`) and by
//! the corpus replay test (`tests/fuzz_corpus.rs`, through `#[path]`). The parent module provides
//! `domain` and `keys`: the by-path modules in the fuzz crate, `persodesk::{domain, keys}` in the
//! test.

use std::sync::OnceLock;

use super::domain::dgi;
use super::domain::fields::{Pan, Yymm};
use super::domain::gp::session::{
    Aid, CardKeys, Dgi as GpDgi, PersoPlan, PersoSession, Protocol, Step,
};
use super::domain::gp::{SecretKey, SecurityLevel, StaticKeys, scp02};
use super::domain::msr206::{
    Action, Expect, Feed, FlowConfig, Response, ResponseKind, ResponseParser, TrackBody,
    TrackNumber, TrackSet, WriteSession,
};
use super::domain::order::{OrderRules, parse_order_file};
use super::domain::prepare::prepare;
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
        let Ok(data) = prepare(order, product, &demo.keys) else {
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
        target_aid,
        install_for_perso: (selector & 0x04 != 0).then_some(instance),
        protocol,
        security_level,
        key_version: 0,
        keys: CardKeys::Static(keys.clone()),
        host_challenge,
        verify_card_challenge: false,
        dgis: vec![
            GpDgi::new(0x0101, vec![0x70, 0x03, 0x5F, 0x20, 0x00], false, false),
            GpDgi::new(0x8000, vec![0x42; 16], true, false),
            GpDgi::new(0x9000, vec![0x01, 0x02, 0x03], false, false),
            GpDgi::new(0x8010, vec![0x24, 0x12, 0x34, 0xFF], true, true),
        ],
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
    let (Some(&[s0, s1]), Some(challenge)) = (response.get(12..14), response.get(14..20)) else {
        return;
    };
    let Ok(challenge) = <[u8; 6]>::try_from(challenge) else {
        return;
    };
    let seq = [s0, s1];
    let Ok(session) = scp02::SessionKeys::derive(keys, seq) else {
        return;
    };
    if let (Ok(cryptogram), Some(slot)) = (
        session.card_cryptogram(host_challenge, &seq, &challenge),
        response.get_mut(20..28),
    ) {
        slot.copy_from_slice(&cryptogram);
    }
}
