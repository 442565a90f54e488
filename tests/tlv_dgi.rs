//! BER-TLV, CPS DGI and tag dictionary: known examples, every error with its offset, and
//! round-trip / never-panic properties.

use persodesk::domain::dgi::{self, Dgi, DgiError};
use persodesk::domain::tags::{self, Format, Sensitivity};
use persodesk::domain::tlv::{self, MAX_DEPTH, Reader, Tag, Tlv, TlvError};
use persodesk::tag;
use proptest::collection::vec;
use proptest::prelude::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("test hex")
}

fn prim(raw: u32, value: &str) -> Tlv {
    Tlv::primitive(Tag::new(raw).expect("tag"), h(value)).expect("primitive")
}

fn cons(raw: u32, children: Vec<Tlv>) -> Tlv {
    Tlv::constructed(Tag::new(raw).expect("tag"), children).expect("constructed")
}

const TRACK2: &str = "6228000100001117D30122010123456789";

// ---------------------------------------------------------------------------------------------
// Tags

#[test]
fn tag_display_is_upper_hex_of_its_bytes() {
    assert_eq!(tag!(0x9F1F).to_string(), "9F1F");
    assert_eq!(tag!(0x5A).to_string(), "5A");
    assert_eq!(tag!(0xBF0C).to_string(), "BF0C");
    assert_eq!(tag!(0x9F8101).to_string(), "9F8101");
    assert_eq!(format!("{:?}", tag!(0x0A)), "Tag(0A)");
}

#[test]
fn tag_constructed_bit_and_class() {
    for raw in [0x70, 0x77, 0x61, 0x6F, 0xA5, 0xBF0C] {
        assert!(Tag::new(raw).expect("tag").is_constructed(), "{raw:X}");
    }
    for raw in [0x5A, 0x57, 0x80, 0x82, 0x9F1F, 0x5F20, 0xC3, 0xDD] {
        assert!(!Tag::new(raw).expect("tag").is_constructed(), "{raw:X}");
    }
    assert_eq!(tag!(0x5A).class(), tlv::TagClass::Application);
    assert_eq!(tag!(0x9F1F).class(), tlv::TagClass::ContextSpecific);
    assert_eq!(tag!(0xC3).class(), tlv::TagClass::Private);
    assert_eq!(tag!(0x01).class(), tlv::TagClass::Universal);
}

#[test]
fn tag_rejects_invalid_encodings() {
    for raw in [0, 0xFF, 0x9F, 0x5F, 0x5A20, 0x9F80, 0x9F1F20, 0x9F81_8101] {
        assert_eq!(Tag::new(raw), None, "{raw:X}");
    }
    assert_eq!(Tag::from_bytes(&h("9F 1F")), Some(tag!(0x9F1F)));
    assert_eq!(Tag::from_bytes(&h("9F")), None);
}

// ---------------------------------------------------------------------------------------------
// TLV known examples

#[test]
fn lengths_use_the_minimal_form() {
    let cases: [(usize, &str); 5] = [
        (0, "5A 00"),
        (0x7F, "5A 7F"),
        (0x80, "5A 81 80"),
        (0xFF, "5A 81 FF"),
        (0x100, "5A 82 01 00"),
    ];
    for (len, header) in cases {
        let tlv = Tlv::primitive(tag!(0x5A), vec![0xAB; len]).expect("tlv");
        let bytes = tlv.to_bytes();
        let header = h(header);
        assert_eq!(bytes.get(..header.len()), Some(&header[..]), "len {len}");
        assert_eq!(bytes.len(), tlv.encoded_len());
        assert_eq!(Tlv::from_bytes(&bytes).expect("parse"), tlv);
    }
    let mut out = Vec::new();
    tlv::encode_length(0xFFFF, &mut out);
    assert_eq!(out, h("82 FF FF"));
}

#[test]
fn record_template_with_track2_parses_and_reencodes() {
    let bytes = h(&format!("70 13 57 11 {TRACK2}"));
    let tlv = Tlv::from_bytes(&bytes).expect("parse");
    assert_eq!(tlv.tag(), tag!(0x70));
    let children = tlv.children().expect("constructed");
    assert_eq!(children.len(), 1);
    assert_eq!(
        tlv.find(tag!(0x57)).and_then(Tlv::value),
        Some(&h(TRACK2)[..])
    );
    assert_eq!(tlv.to_bytes(), bytes);
}

#[test]
fn find_searches_nested_templates_depth_first() {
    let fci = cons(
        0x6F,
        vec![
            prim(0x84, "A0000000031010"),
            cons(
                0xA5,
                vec![
                    prim(0x50, "56495341"),
                    cons(0xBF0C, vec![cons(0x61, vec![prim(0x4F, "A0000000041010")])]),
                ],
            ),
        ],
    );
    let bytes = fci.to_bytes();
    let parsed = tlv::parse_all(&bytes).expect("parse");
    assert_eq!(parsed, std::slice::from_ref(&fci));
    assert_eq!(
        tlv::find(&parsed, tag!(0x4F)).and_then(Tlv::value),
        Some(&h("A0000000041010")[..])
    );
    assert_eq!(fci.find(tag!(0x6F)).map(Tlv::tag), Some(tag!(0x6F)));
    assert!(tlv::find(&parsed, tag!(0x5A)).is_none());
    assert_eq!(
        tlv::find(&parsed, tag!(0xA5)).map(Tlv::is_constructed),
        Some(true)
    );
}

#[test]
fn encode_value_writes_template_content_only() {
    let record = cons(
        0x70,
        vec![prim(0x5A, "4761739001010010"), prim(0x5F34, "00")],
    );
    let mut content = Vec::new();
    record.encode_value(&mut content);
    assert_eq!(content, h("5A 08 4761739001010010 5F34 01 00"));
    assert_eq!(record.value_len(), content.len());
}

#[test]
fn gpo_dgi_9104_holds_aip_and_the_afl_example() {
    let stream = h("9104 12 82 02 1980 94 0C 08010100 10010400 18010201");
    let dgis = dgi::parse_stream(&stream).expect("stream");
    assert_eq!(dgis.len(), 1);
    let gpo = dgis.first().expect("one dgi");
    assert_eq!(gpo.id(), 0x9104);
    let tlvs = tlv::parse_all(gpo.value()).expect("tlvs");
    assert_eq!(tlvs.len(), 2);
    let afl = tlv::find(&tlvs, tag!(0x94))
        .and_then(Tlv::value)
        .expect("afl");
    assert_eq!(afl, &h("08010100 10010400 18010201")[..]);
    assert_eq!(afl.len() % 4, 0);
    assert_eq!(
        tlv::find(&tlvs, tag!(0x82)).and_then(Tlv::value),
        Some(&h("1980")[..])
    );
}

#[test]
fn padding_is_rejected_strictly_and_skipped_leniently() {
    let bytes = h("00 5A 01 12 FF 70 05 00 82 01 19 00 00");
    assert_eq!(
        tlv::parse_all(&bytes),
        Err(TlvError::Padding { offset: 0, byte: 0 })
    );
    let lenient = tlv::parse_all_skip_padding(&bytes).expect("lenient");
    assert_eq!(
        lenient,
        [prim(0x5A, "12"), cons(0x70, vec![prim(0x82, "19")])]
    );
    assert_eq!(
        tlv::parse_all(&h("5A 01 12 FF")),
        Err(TlvError::Padding {
            offset: 3,
            byte: 0xFF
        })
    );
}

#[test]
fn raw_reader_borrows_values() {
    let bytes = h("5F20 03 414243 9F1F 02 3132");
    let mut r = Reader::new(&bytes);
    let first = tlv::RawTlv::read(&mut r).expect("first");
    assert_eq!(
        (first.tag, first.offset, first.value_offset),
        (tag!(0x5F20), 0, 3)
    );
    assert_eq!(first.value, b"ABC");
    let second = tlv::RawTlv::read(&mut r).expect("second");
    assert_eq!(
        (second.tag, second.offset, second.value),
        (tag!(0x9F1F), 6, &b"12"[..])
    );
    assert!(r.is_empty());
    assert_eq!(tlv::validate_all(&bytes), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// TLV errors, each with its offset

fn parse_err(s: &str) -> TlvError {
    tlv::parse_all(&h(s)).expect_err("must fail")
}

#[test]
fn truncated_tag() {
    assert_eq!(parse_err("9F"), TlvError::TruncatedTag { offset: 0 });
    assert_eq!(
        parse_err("5A 01 12 9F 81"),
        TlvError::TruncatedTag { offset: 3 }
    );
}

#[test]
fn tag_too_long() {
    assert_eq!(
        parse_err("5A 00 9F 81 81 01 00"),
        TlvError::TagTooLong { offset: 2 }
    );
}

#[test]
fn truncated_length() {
    for (input, offset, tag) in [
        ("5A", 1, tag!(0x5A)),
        ("5A 81", 1, tag!(0x5A)),
        ("82 00 9F1F 82 01", 4, tag!(0x9F1F)),
    ] {
        assert_eq!(
            parse_err(input),
            TlvError::TruncatedLength { offset, tag },
            "{input}"
        );
    }
}

#[test]
fn unsupported_length_forms() {
    let tag = tag!(0x5A);
    for (input, first_byte) in [
        ("5A 80 00 00", 0x80),
        ("5A 83 00 01 00", 0x83),
        ("5A FF", 0xFF),
    ] {
        assert_eq!(
            parse_err(input),
            TlvError::UnsupportedLengthForm {
                offset: 1,
                tag,
                first_byte
            },
            "{input}"
        );
    }
}

#[test]
fn non_minimal_lengths() {
    let tag = tag!(0x5A);
    assert_eq!(
        parse_err("5A 81 05 0102030405"),
        TlvError::NonMinimalLength { offset: 1, tag }
    );
    let long = format!("5A 82 00 FF {}", "00".repeat(255));
    assert_eq!(
        parse_err(&long),
        TlvError::NonMinimalLength { offset: 1, tag }
    );
    assert_eq!(
        parse_err("70 04 9F10 81 01"),
        TlvError::NonMinimalLength {
            offset: 4,
            tag: tag!(0x9F10)
        }
    );
}

#[test]
fn truncated_values_at_top_level_and_inside_a_template() {
    assert_eq!(
        parse_err("5A 05 0102"),
        TlvError::TruncatedValue {
            offset: 2,
            tag: tag!(0x5A),
            needed: 5,
            available: 2
        }
    );
    // The child claims 5 bytes but its parent template only has 2 left.
    assert_eq!(
        parse_err("70 04 5A 05 0102 0304"),
        TlvError::TruncatedValue {
            offset: 4,
            tag: tag!(0x5A),
            needed: 5,
            available: 2
        }
    );
}

#[test]
fn trailing_bytes_after_one_object() {
    assert_eq!(
        Tlv::from_bytes(&h("5A 01 12 00 00")),
        Err(TlvError::TrailingBytes {
            offset: 3,
            count: 2
        })
    );
    assert_eq!(
        tlv::validate_one(&h("70 00 70 00")).map(|r| r.tag),
        Err(TlvError::TrailingBytes {
            offset: 2,
            count: 2
        })
    );
}

/// `levels` nested `70` templates around an empty innermost one.
fn nested_70(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..levels {
        let len = u8::try_from(bytes.len()).expect("short");
        let mut outer = vec![0x70, len];
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    bytes
}

#[test]
fn depth_limit_is_enforced_when_parsing() {
    let ok = nested_70(MAX_DEPTH);
    assert_eq!(tlv::parse_all(&ok).map(|t| t.len()), Ok(1));
    assert_eq!(tlv::validate_all(&ok), Ok(()));
    let deep = nested_70(MAX_DEPTH + 1);
    let expected = TlvError::DepthLimit {
        offset: 2 * MAX_DEPTH,
        tag: tag!(0x70),
    };
    assert_eq!(tlv::parse_all(&deep), Err(expected.clone()));
    assert_eq!(tlv::validate_all(&deep), Err(expected));
}

#[test]
fn building_errors() {
    assert_eq!(
        Tlv::primitive(tag!(0x70), vec![1]),
        Err(TlvError::NotPrimitive { tag: tag!(0x70) })
    );
    assert_eq!(
        Tlv::constructed(tag!(0x5A), vec![]),
        Err(TlvError::NotConstructed { tag: tag!(0x5A) })
    );
    assert_eq!(
        Tlv::primitive(tag!(0x90), vec![0; 0x1_0000]),
        Err(TlvError::ValueTooLong {
            tag: tag!(0x90),
            len: 0x1_0000
        })
    );
    let big = Tlv::primitive(tag!(0x90), vec![0; 0xFFFF]).expect("max value");
    assert_eq!(
        Tlv::constructed(tag!(0x70), vec![big]),
        Err(TlvError::ValueTooLong {
            tag: tag!(0x70),
            len: 0xFFFF + 4
        })
    );
    let mut node = cons(0x70, vec![]);
    for _ in 1..MAX_DEPTH {
        node = Tlv::constructed(tag!(0x70), vec![node]).expect("within limit");
    }
    assert_eq!(
        Tlv::constructed(tag!(0x70), vec![node]),
        Err(TlvError::TooDeep { tag: tag!(0x70) })
    );
}

#[test]
fn errors_and_debug_never_show_sensitive_values() {
    let pan = prim(0x5A, "4761739001010010");
    let record = cons(0x70, vec![pan, prim(0x57, TRACK2), prim(0x82, "1980")]);
    let debug = format!("{record:?}");
    assert!(!debug.contains("4761739001010010"), "{debug}");
    assert!(!debug.contains("6228000100001117"), "{debug}");
    assert!(debug.contains("1980"), "public AIP is shown: {debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let unknown = Tlv::primitive(tag!(0xDF01), vec![0x42; 4]).expect("tlv");
    assert!(!format!("{unknown:?}").contains("42424242"));
    let err = tlv::parse_all(&h("5A 08 4761739001")).expect_err("truncated");
    assert!(!err.to_string().contains("4761739001"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// DGI known examples

#[test]
fn record_dgi_0101_with_track2() {
    let dgi = Dgi::record_from_tlvs(1, 1, vec![prim(0x57, TRACK2)]).expect("record");
    let mut out = Vec::new();
    dgi.encode(&mut out);
    assert_eq!(out, h(&format!("0101 15 70 13 57 11 {TRACK2}")));
    assert_eq!(dgi.encoded_len(), out.len());
    assert_eq!(dgi.record_position(), Some((1, 1)));
    assert_eq!(
        dgi.oda_input().expect("oda"),
        &h(&format!("57 11 {TRACK2}"))[..]
    );
    assert_eq!(Dgi::from_bytes(&out).expect("parse"), dgi);
    assert_eq!(
        Dgi::record(1, 1, dgi.value().to_vec()).expect("validated"),
        dgi
    );
}

#[test]
fn dgi_of_431_bytes_uses_ff_01_af() {
    let dgi = Dgi::new(0x0201, vec![0x5A; 431]).expect("dgi");
    let mut out = Vec::new();
    dgi.encode(&mut out);
    assert_eq!(out.get(..5), Some(&h("0201 FF 01 AF")[..]));
    assert_eq!(out.len(), 5 + 431);
    assert_eq!(dgi.encoded_len(), out.len());
    assert_eq!(dgi::parse_stream(&out).expect("parse"), [dgi]);
}

#[test]
fn vsdc_split_dgi_in_long_form_for_254_bytes() {
    // 0201 FF00FE 70 81FB 90 81F8 <248 bytes>: a 1984-bit issuer certificate record.
    let cert = Tlv::primitive(tag!(0x90), vec![0x6A; 248]).expect("90");
    let dgi = Dgi::record_from_tlvs(2, 1, vec![cert]).expect("record");
    assert_eq!(dgi.value().len(), 254);
    let mut long = Vec::new();
    dgi.encode_long_form(&mut long);
    assert_eq!(long.get(..11), Some(&h("0201 FF00FE 70 81FB 90 81F8")[..]));
    assert_eq!(long.len(), dgi.encoded_len_long_form());
    let mut short = Vec::new();
    dgi.encode(&mut short);
    assert_eq!(short.get(..9), Some(&h("0201 FE 70 81FB 90 81F8")[..]));
    assert_eq!(Dgi::from_bytes(&long).expect("long"), dgi);
    assert_eq!(Dgi::from_bytes(&short).expect("short"), dgi);
    assert_eq!(dgi.validate(), Ok(()));
}

#[test]
fn stream_helpers_sum_lengths() {
    let dgis = [
        Dgi::new(0x9010, h("0303")).expect("9010"),
        Dgi::new(0x8000, vec![0x11; 48]).expect("8000"),
        Dgi::new(0x0201, vec![0x22; 300]).expect("0201"),
    ];
    assert_eq!(dgi::value_len_sum(&dgis), 2 + 48 + 300);
    assert_eq!(dgi::encoded_len_sum(&dgis), (3 + 2) + (3 + 48) + (5 + 300));
    let mut out = Vec::new();
    dgi::encode_stream(&dgis, &mut out);
    assert_eq!(out.len(), dgi::encoded_len_sum(&dgis));
    assert_eq!(dgi::parse_stream(&out).expect("parse"), dgis);
    assert_eq!(dgi::parse_stream(&[]).expect("empty"), []);
}

#[test]
fn records_of_sfi_11_to_30_are_stored_as_given() {
    let dgi = Dgi::record(11, 1, b"not tlv".to_vec()).expect("stored as given");
    assert_eq!(dgi.oda_input().expect("oda"), b"not tlv");
    assert_eq!(dgi.validate(), Ok(()));
    let last = Dgi::record(30, 255, vec![]).expect("1EFF");
    assert_eq!(last.id(), 0x1EFF);
}

#[test]
fn dgi_classification() {
    let record = Dgi::new(0x0203, vec![]).expect("dgi");
    assert!(record.is_record());
    for id in [0x0001, 0x0100, 0x1F01, 0x9102, 0x8000] {
        assert!(!Dgi::new(id, vec![]).expect("dgi").is_record(), "{id:04X}");
    }
    let reserved = Dgi::new(0x7FF5, vec![]).expect("dgi");
    assert!(reserved.is_reserved());
    assert_eq!(reserved.validate(), Err(DgiError::Reserved { dgi: 0x7FF5 }));
    assert!(!Dgi::new(0x7FFF, vec![]).expect("dgi").is_reserved());
    let keys = Dgi::new(0x8000, vec![]).expect("dgi");
    assert!(keys.is_secret());
    assert_eq!(
        keys.info().map(|i| i.name),
        Some("ICC master keys (MK-AC, MK-SMI, MK-SMC)")
    );
}

#[test]
fn dgi_debug_shows_id_and_length_only() {
    let keys = Dgi::new(0x8000, vec![0xC3; 48]).expect("dgi");
    let debug = format!("{keys:?}");
    assert_eq!(debug, "Dgi { id: 8000, len: 48 }");
    let value = keys.into_value();
    assert_eq!(value.len(), 48);
}

// ---------------------------------------------------------------------------------------------
// DGI errors, each with its offset

fn stream_err(s: &str) -> DgiError {
    dgi::parse_stream(&h(s)).expect_err("must fail")
}

#[test]
fn dgi_truncated_id() {
    assert_eq!(stream_err("01"), DgiError::TruncatedId { offset: 0 });
    assert_eq!(
        stream_err("0101 01 AA 02"),
        DgiError::TruncatedId { offset: 4 }
    );
}

#[test]
fn dgi_truncated_length() {
    assert_eq!(
        stream_err("0101"),
        DgiError::TruncatedLength {
            offset: 2,
            dgi: 0x0101
        }
    );
    assert_eq!(
        stream_err("9010 02 0303 8000 FF 01"),
        DgiError::TruncatedLength {
            offset: 7,
            dgi: 0x8000
        }
    );
}

#[test]
fn dgi_length_out_of_range() {
    assert_eq!(
        stream_err("0101 FF FFFF"),
        DgiError::LengthOutOfRange {
            offset: 2,
            dgi: 0x0101
        }
    );
}

#[test]
fn dgi_truncated_value() {
    assert_eq!(
        stream_err("9010 02 0303 8010 08 2412"),
        DgiError::TruncatedValue {
            offset: 8,
            dgi: 0x8010,
            needed: 8,
            available: 2
        }
    );
}

#[test]
fn dgi_trailing_bytes() {
    assert_eq!(
        Dgi::from_bytes(&h("9010 02 0303 00")),
        Err(DgiError::TrailingBytes {
            offset: 5,
            count: 1
        })
    );
}

#[test]
fn dgi_building_errors() {
    assert_eq!(
        Dgi::new(0x0201, vec![0; 0xFFFF]),
        Err(DgiError::ValueTooLong {
            dgi: 0x0201,
            len: 0xFFFF
        })
    );
    assert_eq!(
        Dgi::new(0x0201, vec![0; 0xFFFE]).map(|d| d.value().len()),
        Ok(0xFFFE)
    );
    for (sfi, record) in [(0, 1), (31, 1), (1, 0)] {
        let dgi = u16::from_be_bytes([sfi, record]);
        assert_eq!(
            Dgi::record(sfi, record, vec![]),
            Err(DgiError::NotARecord { dgi })
        );
    }
    assert_eq!(
        Dgi::record_from_tlvs(0x1F, 1, vec![]),
        Err(DgiError::NotARecord { dgi: 0x1F01 })
    );
    assert_eq!(
        Dgi::new(0x9102, vec![]).expect("dgi").oda_input(),
        Err(DgiError::NotARecord { dgi: 0x9102 })
    );
}

#[test]
fn record_template_errors() {
    assert_eq!(
        Dgi::record(1, 1, h("57 02 1234")),
        Err(DgiError::RecordTemplateTag {
            dgi: 0x0101,
            tag: tag!(0x57)
        })
    );
    assert_eq!(
        Dgi::record(1, 2, h("70 04 5A 81 01 12")),
        Err(DgiError::RecordTlv {
            dgi: 0x0102,
            error: TlvError::NonMinimalLength {
                offset: 3,
                tag: tag!(0x5A)
            }
        })
    );
    assert_eq!(
        Dgi::record(10, 1, h("70 00 70 00")),
        Err(DgiError::RecordTlv {
            dgi: 0x0A01,
            error: TlvError::TrailingBytes {
                offset: 2,
                count: 2
            }
        })
    );
    assert_eq!(
        Dgi::record(1, 1, vec![]),
        Err(DgiError::RecordTlv {
            dgi: 0x0101,
            error: TlvError::TruncatedTag { offset: 0 }
        })
    );
    let err = Dgi::record(1, 3, h("70 03 5A 01 47 00")).expect_err("trailing");
    assert!(err.to_string().contains("0103"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Dictionary

#[test]
fn dictionary_is_sorted_without_duplicates() {
    for pair in tags::TAGS.windows(2) {
        if let [a, b] = pair {
            assert!(a.tag < b.tag, "{} then {}", a.tag, b.tag);
        }
    }
    for info in tags::TAGS {
        assert_eq!(tags::lookup(info.tag), Some(info));
        assert!(!info.name.is_empty());
    }
}

#[test]
fn dictionary_covers_the_required_tags() {
    let required: &[u32] = &[
        0x4F, 0x50, 0x56, 0x57, 0x5A, 0x5F20, 0x5F24, 0x5F25, 0x5F28, 0x5F2A, 0x5F2D, 0x5F30,
        0x5F34, 0x61, 0x6F, 0x70, 0x77, 0x80, 0x82, 0x84, 0x87, 0x88, 0x8C, 0x8D, 0x8E, 0x8F, 0x90,
        0x92, 0x93, 0x94, 0x95, 0x9A, 0x9C, 0x9F02, 0x9F03, 0x9F07, 0x9F08, 0x9F0D, 0x9F0E, 0x9F0F,
        0x9F10, 0x9F11, 0x9F12, 0x9F14, 0x9F17, 0x9F19, 0x9F1A, 0x9F1F, 0x9F23, 0x9F24, 0x9F25,
        0x9F26, 0x9F27, 0x9F32, 0x9F33, 0x9F35, 0x9F36, 0x9F37, 0x9F38, 0x9F40, 0x9F42, 0x9F44,
        0x9F46, 0x9F47, 0x9F48, 0x9F49, 0x9F4A, 0x9F4B, 0x9F4D, 0x9F5A, 0x9F5D, 0x9F63, 0x9F66,
        0x9F68, 0x9F69, 0x9F6B, 0x9F6C, 0x9F6E, 0x9F7C, 0xA5, 0xBF0C, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7,
        0xC8, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xD1, 0xD3, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
        0xDB, 0xDC, 0xDD,
    ];
    for raw in required {
        let tag = Tag::new(*raw).expect("valid tag");
        assert!(tags::lookup(tag).is_some(), "{tag} missing");
    }
    assert!(tags::lookup(tag!(0xDF01)).is_none());
}

#[test]
fn dictionary_formats_and_sensitivity() {
    let sensitivity = |t: Tag| tags::lookup(t).map(|i| i.sensitivity);
    assert_eq!(sensitivity(tag!(0x5A)), Some(Sensitivity::Pan));
    for t in [tag!(0x57), tag!(0x56), tag!(0x9F1F), tag!(0x9F6B)] {
        assert_eq!(sensitivity(t), Some(Sensitivity::TrackData), "{t}");
    }
    for t in [tag!(0x99), tag!(0xDA), tag!(0xDB), tag!(0xDC), tag!(0xDD)] {
        assert_eq!(sensitivity(t), Some(Sensitivity::Secret), "{t}");
    }
    assert!(tags::value_may_be_shown(tag!(0x82)));
    assert!(!tags::value_may_be_shown(tag!(0x5F20)));
    assert!(!tags::value_may_be_shown(tag!(0xDF01)));
    for t in [tag!(0x8C), tag!(0x8D), tag!(0x9F38), tag!(0x9F49)] {
        assert_eq!(tags::lookup(t).map(|i| i.format), Some(Format::Dol), "{t}");
    }
    assert_eq!(
        tags::lookup(tag!(0x5A)).map(|i| i.format),
        Some(Format::CompressedNumeric)
    );
    assert_eq!(
        tags::lookup(tag!(0x5F24)).map(|i| i.format),
        Some(Format::Numeric)
    );
    assert_eq!(tags::name(tag!(0x9F1F)), Some("Track 1 Discretionary Data"));
    assert_eq!(
        tags::name(tag!(0xC3)),
        Some("Card Issuer Action Code - Decline (M/Chip)")
    );
    for info in tags::TAGS {
        assert_eq!(
            info.tag.is_constructed(),
            info.format == Format::Template,
            "{}",
            info.tag
        );
    }
}

#[test]
fn dgi_names_and_secret_flags() {
    let names = [
        (0x9102, "FCI contact"),
        (0x8000, "ICC master keys (MK-AC, MK-SMI, MK-SMC)"),
        (0xA002, "M/Chip configuration"),
        (0xB010, "M/Chip configuration"),
        (0x0301, "Application record"),
    ];
    for (id, name) in names {
        assert_eq!(tags::dgi_info(id).map(|i| i.name), Some(name), "{id:04X}");
    }
    assert_eq!(tags::dgi_info(0x4242), None);
    let secret = [
        0x8000, 0x8001, 0x8010, 0x8101, 0x8102, 0x8105, 0x8106, 0x8201, 0x8205, 0x8301, 0x8305,
        0x8400, 0x8401, 0xA006, 0xA016,
    ];
    for id in secret {
        assert!(tags::dgi_is_secret(id), "{id:04X}");
    }
    let clear = [
        0x9000, 0x9010, 0x9102, 0x9103, 0x9104, 0x8103, 0x8104, 0x7FFF, 0x9115, 0x9116, 0x9117,
        0x9200, 0x9206, 0x3001, 0xA002, 0x0101, 0x4242,
    ];
    for id in clear {
        assert!(!tags::dgi_is_secret(id), "{id:04X}");
    }
    for id in [
        0x8201, 0x8202, 0x8203, 0x8204, 0x8205, 0x8301, 0x8302, 0x8303, 0x8304, 0x8305,
    ] {
        assert!(tags::dgi_info(id).is_some(), "{id:04X}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Valid tags: class, the constructed bit, and a short or 2-/3-byte tag number.
fn tag_strategy(constructed: bool) -> impl Strategy<Value = Tag> {
    let number = prop_oneof![
        (0u32..0x1F).prop_map(|n| (n, 0u32, 0usize)),
        (0u32..0x80).prop_map(|b| (0x1F, b, 1usize)),
        (0x80u32..0x100, 0u32..0x80).prop_map(|(b1, b2)| (0x1F, (b1 << 8) | b2, 2usize)),
    ];
    (0u32..4, number).prop_filter_map("00/FF first byte", move |(class, (low, rest, n))| {
        let first = (class << 6) | if constructed { 0x20 } else { 0 } | low;
        Tag::new((first << (8 * n)) | rest)
    })
}

fn tree_strategy() -> impl Strategy<Value = Tlv> {
    let leaf = (tag_strategy(false), vec(any::<u8>(), 0..300))
        .prop_map(|(tag, value)| Tlv::primitive(tag, value).expect("leaf"));
    leaf.prop_recursive(6, 64, 6, |inner| {
        (tag_strategy(true), vec(inner, 0..6))
            .prop_map(|(tag, children)| Tlv::constructed(tag, children).expect("node"))
    })
}

fn dgi_strategy() -> impl Strategy<Value = (Dgi, bool)> {
    let len = prop_oneof![0usize..=260, 250usize..=600];
    (any::<u16>(), len, any::<u8>(), any::<bool>())
        .prop_map(|(id, len, fill, long)| (Dgi::new(id, vec![fill; len]).expect("dgi"), long))
}

proptest! {
    #[test]
    fn tlv_trees_round_trip(trees in vec(tree_strategy(), 0..4)) {
        let mut bytes = Vec::new();
        tlv::encode_all(&trees, &mut bytes);
        prop_assert_eq!(bytes.len(), trees.iter().map(Tlv::encoded_len).sum::<usize>());
        prop_assert_eq!(tlv::validate_all(&bytes), Ok(()));
        let parsed = tlv::parse_all(&bytes).expect("parse");
        prop_assert_eq!(&parsed, &trees);
        prop_assert_eq!(tlv::parse_all_skip_padding(&bytes).expect("lenient"), trees);
    }

    #[test]
    fn every_node_is_found_by_its_tag(tree in tree_strategy()) {
        let mut stack = vec![&tree];
        while let Some(node) = stack.pop() {
            let found = tree.find(node.tag()).expect("found");
            prop_assert_eq!(found.tag(), node.tag());
            stack.extend(node.children().unwrap_or(&[]));
        }
    }

    #[test]
    fn dgi_streams_round_trip(items in vec(dgi_strategy(), 0..8)) {
        let mut bytes = Vec::new();
        for (dgi, long) in &items {
            if *long { dgi.encode_long_form(&mut bytes) } else { dgi.encode(&mut bytes) }
        }
        let dgis: Vec<Dgi> = items.into_iter().map(|(d, _)| d).collect();
        prop_assert_eq!(&dgi::parse_stream(&bytes).expect("parse"), &dgis);
        let mut short = Vec::new();
        dgi::encode_stream(&dgis, &mut short);
        prop_assert_eq!(short.len(), dgi::encoded_len_sum(&dgis));
        prop_assert_eq!(dgi::parse_stream(&short).expect("parse short"), dgis);
    }

    #[test]
    fn strict_tlv_parsing_never_panics_and_is_canonical(bytes in vec(any::<u8>(), 0..200)) {
        let strict = tlv::parse_all(&bytes);
        prop_assert_eq!(tlv::validate_all(&bytes).is_ok(), strict.is_ok());
        if let Ok(tlvs) = strict {
            let mut again = Vec::new();
            tlv::encode_all(&tlvs, &mut again);
            prop_assert_eq!(again, bytes.clone());
        }
        if let Ok(tlvs) = tlv::parse_all_skip_padding(&bytes) {
            let mut again = Vec::new();
            tlv::encode_all(&tlvs, &mut again);
            prop_assert_eq!(tlv::parse_all(&again).expect("canonical"), tlvs);
        }
        let _ = Tlv::from_bytes(&bytes);
    }

    #[test]
    fn tlv_parsing_of_structured_noise_never_panics(
        parts in vec(prop_oneof![
            Just(vec![0x70u8]), Just(vec![0x9F]), Just(vec![0x81]), Just(vec![0x82]),
            Just(vec![0x00]), Just(vec![0xFF]), vec(any::<u8>(), 0..4),
        ], 0..60)
    ) {
        let bytes: Vec<u8> = parts.concat();
        let strict = tlv::parse_all(&bytes);
        prop_assert_eq!(tlv::validate_all(&bytes).is_ok(), strict.is_ok());
        let _ = tlv::parse_all_skip_padding(&bytes);
        let _ = tlv::validate_one(&bytes);
    }

    #[test]
    fn dgi_parsing_never_panics(bytes in vec(any::<u8>(), 0..300)) {
        if let Ok(dgis) = dgi::parse_stream(&bytes) {
            // Short form re-encoding is never longer than the input and parses back equal.
            prop_assert!(dgi::encoded_len_sum(&dgis) <= bytes.len());
            prop_assert!(dgi::value_len_sum(&dgis) + 3 * dgis.len() <= bytes.len());
            let mut again = Vec::new();
            dgi::encode_stream(&dgis, &mut again);
            prop_assert_eq!(dgi::parse_stream(&again).expect("reparse"), dgis.clone());
            for d in &dgis {
                let _ = d.validate();
                let _ = d.oda_input();
            }
        }
        let _ = Dgi::from_bytes(&bytes);
    }

    #[test]
    fn record_validation_never_panics(sfi in 0u8..=32, rec in any::<u8>(), value in vec(any::<u8>(), 0..80)) {
        let built = Dgi::record(sfi, rec, value.clone());
        if (1..=10).contains(&sfi) && rec != 0 {
            prop_assert_eq!(built.is_ok(), tlv::validate_one(&value).is_ok_and(|r| r.tag == tag!(0x70)));
        }
    }
}
