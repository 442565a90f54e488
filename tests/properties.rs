//! Property tests (proptest): TLV and DGI encode/decode round trips, track building always within
//! the ISO 7813 / ISO 4909 character sets and lengths (or an error, never an invalid track), and
//! masking never letting a PAN through.
//!
//! The leak property: for a generated Luhn-valid PAN, no run of 7 consecutive digits of it (any
//! "7-digit window") appears in what persodesk shows of an order carrying it: the masked PAN,
//! masked tracks, `Debug` of `Pan`, `Track`, `Order` and `PersoData`, the masked chip preview of
//! the order prepared with Model 1, the messages of bad orders carrying it, and the transcript of
//! its personalization on the virtual card. The first 6 and last 4 digits may show; any 7-digit
//! window reaches across the masked middle, so a leak of more than 6 + 4 digits always contains
//! one. A window counts as leaked only when it is absent from the same outputs made for a fixed
//! reference PAN (the background: static hex such as `000000...` in DGIs may contain any digit
//! string by chance, and would show for every PAN).

use std::sync::OnceLock;

use persodesk::devices::transport::VirtualTransport;
use persodesk::domain::chip::keys::{IccKeyPair, IccKeySource};
use persodesk::domain::chip::model1;
use persodesk::domain::chip::{ChipProfiles, preview};
use persodesk::domain::dgi::{self, Dgi};
use persodesk::domain::fields::{Cvv, EncodedName, Pan, Pvv, ServiceCode, Yymm};
use persodesk::domain::gp::SecretKey;
use persodesk::domain::gp::SecurityLevel;
use persodesk::domain::gp::kdf::Diversification;
use persodesk::domain::gp::session::{Aid, CardKeys, Protocol};
use persodesk::domain::mask;
use persodesk::domain::oda::{OdaError, RsaExponent, RsaKeyPair};
use persodesk::domain::order::parse_order_file;
use persodesk::domain::product::{Catalog, Pattern, PatternTrack};
use persodesk::domain::tlv::{self, Tag, Tlv};
use persodesk::domain::track::{
    Injected, Track, TrackNo, build_track1, build_track2, build_track3,
};
use persodesk::keys::SoftwareKeyStore;
use persodesk::perso::{ChannelPlan, personalize_dgis};
use persodesk::sim::card::channel::{CardKeySource, CardProtocol, KmcMethod};
use persodesk::sim::card::{CardConfig, VirtualCard};
use proptest::prelude::*;
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[path = "support/demo.rs"]
mod demo;
use demo::DATE;

// ------------------------------------------------------------------------------------------------
// TLV and DGI round trips
// ------------------------------------------------------------------------------------------------

/// A valid tag: one byte (low bits not 11111), two bytes (`xF 0..7F`), or three bytes.
fn tag(constructed: bool) -> impl Strategy<Value = Tag> {
    let first = any::<u8>().prop_map(move |b| {
        let b = if constructed { b | 0x20 } else { b & !0x20 };
        if b == 0xFF { 0xDF } else { b }
    });
    (first, 0u8..3, any::<u8>(), any::<u8>()).prop_filter_map("valid tag", |(first, n, b2, b3)| {
        let raw = match n {
            0 if first & 0x1F != 0x1F => u32::from(first),
            0 | 1 => (u32::from(first | 0x1F) << 8) | u32::from(b2 & 0x7F).max(0x1F),
            _ => {
                (u32::from(first | 0x1F) << 16) | (u32::from(b2 | 0x80) << 8) | u32::from(b3 & 0x7F)
            }
        };
        Tag::new(raw)
    })
}

/// TLV trees up to 3 levels deep, values up to 300 bytes (long-form lengths included).
fn tlv_tree() -> impl Strategy<Value = Tlv> {
    let leaf = (tag(false), prop::collection::vec(any::<u8>(), 0..300))
        .prop_filter_map("primitive", |(t, v)| Tlv::primitive(t, v).ok());
    leaf.prop_recursive(3, 24, 4, |inner| {
        (tag(true), prop::collection::vec(inner, 0..4))
            .prop_filter_map("constructed", |(t, children)| {
                Tlv::constructed(t, children).ok()
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// encode then parse gives the same objects back, and `encoded_len` is the encoded size.
    #[test]
    fn tlv_encode_parse_round_trip(tlvs in prop::collection::vec(tlv_tree(), 0..5)) {
        let mut bytes = Vec::new();
        tlv::encode_all(&tlvs, &mut bytes);
        prop_assert_eq!(bytes.len(), tlvs.iter().map(Tlv::encoded_len).sum::<usize>());
        let parsed = tlv::parse_all(&bytes);
        prop_assert!(parsed.as_ref() == Ok(&tlvs), "round trip: {:?}", parsed.err());
        prop_assert!(tlv::validate_all(&bytes).is_ok());
        // And byte-exact: encoding the parsed objects gives the same bytes.
        let mut again = Vec::new();
        tlv::encode_all(&parsed.unwrap_or_default(), &mut again);
        prop_assert_eq!(again, bytes);
    }

    /// Any bytes the parser accepts re-encode to exactly those bytes (the codec is canonical:
    /// no second encoding of the same objects is accepted).
    #[test]
    fn tlv_accepted_bytes_are_canonical(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(tlvs) = tlv::parse_all(&bytes) {
            let mut again = Vec::new();
            tlv::encode_all(&tlvs, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    /// A DGI stream (ids and values of any length up to 600 bytes: one- and three-byte length
    /// fields) encodes and parses back to the same DGIs.
    #[test]
    fn dgi_stream_round_trip(
        items in prop::collection::vec((any::<u16>(), prop::collection::vec(any::<u8>(), 0..600)), 0..6)
    ) {
        let dgis: Vec<Dgi> = items
            .into_iter()
            .map(|(id, value)| Dgi::new(id, value).expect("short value"))
            .collect();
        let mut bytes = Vec::new();
        dgi::encode_stream(&dgis, &mut bytes);
        prop_assert_eq!(bytes.len(), dgi::encoded_len_sum(&dgis));
        let expected_len: usize = dgis
            .iter()
            .map(|d| 2 + if d.value().len() < 0xFF { 1 } else { 3 } + d.value().len())
            .sum();
        prop_assert_eq!(bytes.len(), expected_len, "CPS length fields: 1 byte, or FF + 2 bytes");
        let parsed = dgi::parse_stream(&bytes);
        prop_assert!(parsed.as_ref() == Ok(&dgis), "round trip: {:?}", parsed.err());
    }
}

// ------------------------------------------------------------------------------------------------
// Tracks: within the ISO character sets and lengths, or an error
// ------------------------------------------------------------------------------------------------

/// A Luhn-valid PAN of 12-19 digits (check digit computed here, independently of persodesk).
fn luhn_pan() -> impl Strategy<Value = String> {
    (1u8..=9, prop::collection::vec(0u8..=9, 10..=17)).prop_map(|(first, rest)| {
        let mut digits = vec![first];
        digits.extend(rest);
        with_luhn(digits)
    })
}

/// PANs under the BIN the demo Mastercard issuer certificate covers (541333): Model 1 refuses
/// a PAN its issuer certificate does not cover (EMV Book 2 §5.3).
fn demo_bin_pan() -> impl Strategy<Value = String> {
    prop::collection::vec(0u8..=9, 5..=12).prop_map(|rest| {
        let mut digits = vec![5, 4, 1, 3, 3, 3];
        digits.extend(rest);
        with_luhn(digits)
    })
}

/// The digits with their Luhn check digit appended.
fn with_luhn(mut digits: Vec<u8>) -> String {
    {
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                let d = u32::from(d);
                if i % 2 == 0 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum();
        digits.push(u8::try_from((10 - sum % 10) % 10).expect("digit"));
        digits.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

/// ISO/IEC 7813 track 1: 6-bit alphanumeric set (0x20-0x5F), `%` first, `?` last, at most 79
/// characters with the LRC. Tracks 2 and 3 (ISO 7813, ISO 4909): 4-bit set (0x30-0x3F), `;`
/// first, `?` last, at most 40 / 107 with the LRC. Sentinels appear nowhere else.
fn iso_valid(no: TrackNo, text: &str) -> Result<(), String> {
    let (start, set, iso_max): (char, fn(char) -> bool, usize) = match no {
        TrackNo::T1 => ('%', |c| ('\x20'..='\x5F').contains(&c), 79),
        TrackNo::T2 => (';', |c| ('\x30'..='\x3F').contains(&c), 40),
        TrackNo::T3 => (';', |c| ('\x30'..='\x3F').contains(&c), 107),
    };
    let inner = text
        .strip_prefix(start)
        .and_then(|t| t.strip_suffix('?'))
        .ok_or("sentinels")?;
    if text.chars().count() + 1 > iso_max {
        return Err(format!(
            "{} characters + LRC > {iso_max}",
            text.chars().count()
        ));
    }
    if let Some(c) = inner
        .chars()
        .find(|&c| !set(c) || c == '?' || c == '%' || c == ';')
    {
        return Err(format!(
            "character {c:?} outside the set or a sentinel inside"
        ));
    }
    Ok(())
}

fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z]{1,12}/[A-Z]{1,12}",
        "[A-Z ./-]{0,30}",
        "[ -~]{0,30}",
        any::<String>(),
    ]
}

fn pattern_text(track: PatternTrack) -> impl Strategy<Value = String> {
    // Free text: any printable character on track 1, the track 2 character set on track 2.
    let free = match track {
        PatternTrack::Track1 => "[ -~]{0,12}",
        PatternTrack::Track2 => "[0-9=:<>A-F]{0,8}",
    };
    let segment = prop_oneof![
        Just("cvv".to_string()),
        Just("pvv".to_string()),
        "[0-9]{0,20}",
        free,
    ];
    prop::collection::vec(segment, 1..5).prop_map(|s| s.join("|"))
}

fn check_track(
    no: TrackNo,
    result: Result<Track, impl std::fmt::Display>,
    pan: &str,
) -> Result<(), TestCaseError> {
    match result {
        Ok(track) => {
            let text = track.reveal();
            prop_assert!(
                iso_valid(no, text).is_ok(),
                "{no:?} built but not ISO-valid: {:?}",
                iso_valid(no, text)
            );
            let after = if no == TrackNo::T1 { 2 } else { 1 };
            prop_assert_eq!(text.get(after..after + pan.len()), Some(pan));
            let masked = track.masked();
            prop_assert_eq!(masked.chars().count(), text.chars().count());
            prop_assert!(leak(&masked, pan).is_none(), "masked track leaks");
            let shown = format!("{track:?} {track}");
            prop_assert!(
                leak(&shown, pan).is_none(),
                "Debug/Display leaks: {}",
                shown
            );
        }
        Err(e) => prop_assert!(leak(&e.to_string(), pan).is_none(), "error leaks: {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Track 1 and 2 from generated names, expiries, service codes and discretionary patterns:
    /// either an ISO-valid track carrying the PAN, or an error (that does not show the PAN).
    #[test]
    fn built_tracks_are_iso_valid_or_refused(
        pan in luhn_pan(),
        name in name_text(),
        exp in "[0-9]{4}",
        sc in "[0-9]{3}",
        p1 in pattern_text(PatternTrack::Track1),
        p2 in pattern_text(PatternTrack::Track2),
        cvv in "[0-9]{3}",
        pvv in "[0-9]{4}",
        t3_body in prop_oneof!["[0-9=]{0,110}", "[ -~]{0,20}"],
    ) {
        let Ok(p) = Pan::parse(&pan) else { return Err(TestCaseError::fail("generated PAN")) };
        let (Ok(exp), Ok(sc), Ok(cvv), Ok(pvv)) =
            (Yymm::parse(&exp), ServiceCode::parse(&sc), Cvv::parse(&cvv), Pvv::parse(&pvv))
        else {
            return Ok(());
        };
        let values = Injected { cvv: Some(&cvv), pvv: Some(&pvv) };
        if let (Ok(name), Ok(dd)) = (EncodedName::parse(&name), Pattern::parse(&p1, PatternTrack::Track1)) {
            check_track(TrackNo::T1, build_track1(&p, &name, exp, sc, &dd, values), &pan)?;
        }
        if let Ok(dd) = Pattern::parse(&p2, PatternTrack::Track2) {
            check_track(TrackNo::T2, build_track2(&p, exp, sc, &dd, values), &pan)?;
        }
        check_track(TrackNo::T3, build_track3(&p, &t3_body), &pan)?;
    }
}

// ------------------------------------------------------------------------------------------------
// Masking: no 7-digit window of the PAN in anything persodesk shows
// ------------------------------------------------------------------------------------------------

/// The first 7-digit window of `pan` that `text` contains, if any.
fn leak(text: &str, pan: &str) -> Option<String> {
    pan.as_bytes()
        .windows(7)
        .filter_map(|w| std::str::from_utf8(w).ok())
        .find(|w| text.contains(w))
        .map(str::to_string)
}

/// One ICC key pair for every case (generation is the slow part; persodesk never reuses a pair,
/// this source does so for the test only).
struct FixedIccKey(RsaKeyPair);

impl IccKeySource for FixedIccKey {
    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        let pair =
            if self.0.public_key().bits() == bits && self.0.public_key().exponent() == exponent {
                self.0.clone()
            } else {
                let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
                RsaKeyPair::generate(&mut rng, bits, exponent)?
            };
        Ok(IccKeyPair {
            pair,
            from_pool: false,
        })
    }
}

struct Demo {
    catalog: Catalog,
    profiles: ChipProfiles,
    keys: SoftwareKeyStore,
    orders: Value,
    icc: FixedIccKey,
    background: String,
}

fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let catalog = demo::catalog();
        let profiles = demo::chip_profiles();
        let keys = demo::keys();
        let orders: Value = serde_json::from_str(&demo::read(demo::ORDERS)).expect("json");
        let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
        let icc =
            FixedIccKey(RsaKeyPair::generate(&mut rng, 1024, RsaExponent::Three).expect("rsa"));
        let mut demo = Demo {
            catalog,
            profiles,
            keys,
            orders,
            icc,
            background: String::new(),
        };
        demo.background = outputs(&demo, REFERENCE_PAN)
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        demo
    })
}

/// The reference PAN the background is made with (Luhn-valid, not a demo PAN).
const REFERENCE_PAN: &str = "5413339876543217";

impl Demo {
    fn order(&self, id: &str) -> Value {
        demo::card_by_id(&self.orders, id)
    }
}

/// Every output persodesk makes for orders carrying `pan`, labelled. Panics (failing the case)
/// when the good order does not prepare or personalize: the property must see real outputs.
fn outputs(d: &Demo, pan: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let parsed = Pan::parse(pan).expect("pan");
    out.push(("mask_pan", mask::mask_pan(pan)));
    out.push(("Pan Debug/Display", format!("{parsed:?} {parsed}")));
    out.push((
        "scrub_digit_runs",
        mask::scrub_digit_runs(&format!("card {pan} ok")),
    ));

    // The good order: the Mastercard demo order (CVV computed over the PAN, CDA, Model 1).
    let mut good = d.order("DEMO-MC-0002");
    good["encryptedData"]["pan"] = json!(pan);
    let rules = d.catalog.order_rules();
    let entries = parse_order_file(&good.to_string(), &rules).expect("file");
    let entry = entries.into_iter().next().expect("one entry");
    out.push(("OrderEntry Debug", format!("{entry:?}")));
    let order = entry.outcome.expect("the generated order is valid");
    out.push(("Order Debug", format!("{order:?}")));
    let product = d.catalog.get(&order.card_product_id).expect("product");
    let profile = d
        .profiles
        .get(product.chip_profile.as_deref().expect("chip profile"))
        .expect("profile");
    let data = match model1::prepare(&order, product, profile, DATE, &d.keys, &d.icc) {
        Ok(data) => data,
        Err(findings) => {
            // The demo product's track 2 holds PANs of up to 16 digits; longer ones are refused.
            assert!(
                pan.len() > 16,
                "Model 1 refused a {}-digit PAN: {findings:?}",
                pan.len()
            );
            for f in findings {
                out.push(("prepare finding", f.to_string()));
            }
            return out;
        }
    };
    for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
        if let Some(t) = data.tracks.get(no) {
            out.push((
                "Track masked/Debug/Display",
                format!("{} {t:?} {t}", t.masked()),
            ));
        }
    }
    out.push(("PersoData Debug", format!("{data:?}")));
    let chip = data.chip.as_ref().expect("chip data");
    let shown = preview::preview(chip, false);
    out.push((
        "chip preview (json)",
        serde_json::to_string(&shown).expect("json"),
    ));
    out.push(("chip preview (Debug)", format!("{shown:?}")));

    // Its personalization on the virtual card: the transcript.
    let dgis = chip.dgis.clone();
    let kmc = "404142434445464748494A4B4C4D4E4F";
    let card = VirtualCard::new(CardConfig::new(
        CardProtocol::Scp02 { i: 0x55 },
        CardKeySource::Kmc {
            kmc: Zeroizing::new(hex::decode(kmc).expect("hex")),
            method: KmcMethod::EmvCps11,
        },
        [0x12, 0x34, 0x56, 0x78],
    ))
    .expect("card");
    let mut transport = VirtualTransport::new(card);
    let options = ChannelPlan {
        target_aid: Aid::new(&chip.aid).expect("aid"),
        install_for_perso: None,
        protocol: Protocol::Scp02 { i: 0x55 },
        security_level: SecurityLevel::CMacCDec,
        key_version: 0,
        keys: CardKeys::Master {
            kmc: SecretKey::from_hex(kmc).expect("kmc"),
            method: Diversification::EmvCps11,
        },
        verify_card_challenge: false,
    };
    let report = personalize_dgis(&mut transport, options, dgis, &mut |_| {})
        .expect("the generated order personalizes");
    out.push(("perso transcript", report.transcript.to_string()));

    // Bad orders carrying the PAN (or a PAN one digit off): every finding and Debug.
    let mut bad_luhn = pan.to_string();
    let last = bad_luhn.pop().and_then(|c| c.to_digit(10)).expect("digit");
    bad_luhn.push(char::from_digit((last + 1) % 10, 10).expect("digit"));
    let mut bad = Vec::new();
    let mut o = good.clone();
    o["encryptedData"]["exp"] = json!("2913");
    bad.push(o);
    let mut o = good.clone();
    o["encryptedData"]["pan"] = json!(bad_luhn);
    bad.push(o);
    let mut o = good.clone();
    o["encryptedData"]["encodedName"] = json!(format!("DOE/{pan}"));
    bad.push(o);
    let mut o = good.clone();
    o["trackData"] = json!({
        "track2": format!(";{pan}=3001201000000000000?"),
        "track1": format!("%B{bad_luhn}^DOE/ALICE^3001201000000000000?"),
    });
    bad.push(o);
    let mut o = d.order("DEMO-VISA-0001");
    o["encryptedData"]["pan"] = json!(pan);
    o["encryptedData"]["pvv"] = json!(pan);
    bad.push(o);
    let mut o = d.order("DEMO-VISA-0001");
    o["encryptedData"]["pan"] = json!(pan);
    bad.push(o);
    let file = json!({ "cards": bad }).to_string();
    for entry in parse_order_file(&file, &rules).expect("file") {
        out.push(("bad order Debug", format!("{entry:?}")));
        match &entry.outcome {
            Err(findings) => {
                for f in findings {
                    out.push(("bad order finding", f.to_string()));
                }
            }
            Ok(order) => {
                let product = d.catalog.get(&order.card_product_id).expect("product");
                if let Err(findings) =
                    persodesk::domain::prepare::prepare_tracks(order, product, &d.keys)
                {
                    for f in findings {
                        out.push(("prepare finding", f.to_string()));
                    }
                }
            }
        }
        for w in &entry.warnings {
            out.push(("warning", w.to_string()));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// No output for an order carrying a generated PAN shows a 7-digit window of it (beyond
    /// what the same outputs show for the reference PAN).
    #[test]
    fn no_output_shows_more_than_6_and_4_pan_digits(pan in demo_bin_pan()) {
        let d = demo();
        let outputs = outputs(d, &pan);
        if pan.len() <= 16 {
            for needed in ["chip preview (json)", "perso transcript", "bad order finding"] {
                prop_assert!(outputs.iter().any(|(what, _)| *what == needed), "no {}", needed);
            }
        }
        for (what, text) in outputs {
            if let Some(w) = leak(&text, &pan).filter(|w| !d.background.contains(w.as_str())) {
                let at = text.find(&w).unwrap_or(0);
                let context = text.get(at.saturating_sub(40)..(at + 47).min(text.len())).unwrap_or("");
                prop_assert!(false, "{what} shows PAN digits {w}: ...{context}...");
            }
        }
    }
}

/// The leak check itself can fail: an unmasked PAN, or 7 of its digits, are found.
#[test]
fn the_leak_check_finds_a_clear_pan() {
    let pan = "5413330089012345";
    assert_eq!(leak(&format!("x {pan} y"), pan).as_deref(), Some("5413330"));
    assert_eq!(leak("digits 3008901 here", pan).as_deref(), Some("3008901"));
    assert_eq!(leak(&mask::mask_pan(pan), pan), None);
    assert_eq!(leak("541333******2345", pan), None);
    assert!(iso_valid(TrackNo::T2, ";5413330089012345=2906?").is_ok());
    assert!(iso_valid(TrackNo::T2, ";5413330089012345=29A6?").is_err());
    assert!(iso_valid(TrackNo::T1, "%B5413330089012345^DOE/A^2906?").is_ok());
    assert!(iso_valid(TrackNo::T1, &format!("%B{}?", "1".repeat(77))).is_err());
}
