//! Known answers for the application cryptogram per CVN, for both independent implementations:
//! the virtual card (`sim::card::cryptogram`) and the terminal's read-back
//! (`domain::terminal::cvn` + `domain::readback::verify_arqc`).
//!
//! Sources (copied here, the tests read no file):
//! - knovichikhin/pyemv `tests/test_cvn_hsm.py` (commit cf6b82d): `test_visa_cvn10`,
//!   `test_visa_cvn18`, `test_visa_cvn22`, `test_mastercard_cvn16/17/20/21`. Issuer master key
//!   AC `0123456789ABCDEFFEDCBA9876543210`, PAN `1234567890123456`, PSN `00` (ICC MK-AC check
//!   digits `BAB0`), ATC `001C`.
//! - Visa VSDC Contact & Contactless Issuer Implementation Guide (Oct 2018) H.1 Example 1, as
//!   quoted by jPOS `CVN18DataBuilderTest`: the CVN 18 AC input.
//!
//! Each CDOL1 below asks for more than the AC elements (9F35, 9F45, 9F4C, 9F34, as the demo
//! products' CDOL1 does): the extra data must not enter the MAC.

use persodesk::domain::emv_keys::{self, Cvn, DesKey16, MkdOption};
use persodesk::domain::readback::{ArqcEvidence, Outcome, verify_arqc};
use persodesk::domain::terminal::cvn as terminal;
use persodesk::sim::card::CardCvn;
use persodesk::sim::card::cryptogram as card;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("test hex")
}

const IMK_AC: &str = "0123456789ABCDEFFEDCBA9876543210";
const PAN: &str = "1234567890123456";
/// The demo products' CDOL1: the AC elements, then 9F35, 9F45, 9F4C, 9F34.
const CDOL1: &str = "9F02069F03069F1A0295055F2A029A039C019F37049F35019F45029F4C089F3403";
/// Terminal data for the extra CDOL1 entries (9F35 22, 9F45 0000, 9F4C 8 bytes, 9F34 3 bytes).
const EXTRA: &str = "22 0000 1122334455667788 1F0302";

struct Vector {
    name: &'static str,
    card: CardCvn,
    terminal: Cvn,
    /// 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 as pyemv passes them.
    elements: &'static str,
    iad: &'static str,
    arqc: &'static str,
}

/// pyemv tests: Visa uses 9F02 000000004000, 95 8000048000, 9A 191105, 9C 01, UN 52BF4585;
/// Mastercard 9F02 000000009999, 95 8000000000, 9A 209906, 9C 00, UN ABCDEF12. AIP 1800.
/// Visa CVN 10 passes CVR `03A06010` (IAD bytes 3..7 of `06010A03A06010`); Mastercard passes
/// CVR `A00003220000` (and counters `00000000000322FF` for 17/21) out of the IAD in its comment.
const VECTORS: [Vector; 7] = [
    Vector {
        name: "pyemv test_visa_cvn10",
        card: CardCvn::Visa10,
        terminal: Cvn::Visa10,
        elements: "000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585",
        iad: "06010A03A06010",
        arqc: "29CCA15AE665FA2E",
    },
    Vector {
        name: "pyemv test_visa_cvn18",
        card: CardCvn::Visa18,
        terminal: Cvn::Visa18,
        elements: "000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585",
        iad: "06011203A0B800",
        arqc: "7A788EA6B8A3E733",
    },
    Vector {
        name: "pyemv test_visa_cvn22",
        card: CardCvn::Visa22,
        terminal: Cvn::Visa22,
        elements: "000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585",
        iad: "06011203A0B800",
        arqc: "7A788EA6B8A3E733",
    },
    Vector {
        name: "pyemv test_mastercard_cvn16",
        card: CardCvn::Mastercard16,
        terminal: Cvn::Mastercard16,
        elements: "000000009999 000000000000 0124 8000000000 0124 209906 00 ABCDEF12",
        iad: "0110A00003220000000000000000000000FF",
        arqc: "24CCF3DEE3158C70",
    },
    Vector {
        name: "pyemv test_mastercard_cvn17",
        card: CardCvn::Mastercard17,
        terminal: Cvn::Mastercard17,
        elements: "000000009999 000000000000 0124 8000000000 0124 209906 00 ABCDEF12",
        iad: "0111A00003220000000000000000000322FF",
        arqc: "EAE8A620A75648D8",
    },
    Vector {
        name: "pyemv test_mastercard_cvn20",
        card: CardCvn::Mastercard20,
        terminal: Cvn::Mastercard20,
        elements: "000000009999 000000000000 0124 8000000000 0124 209906 00 ABCDEF12",
        iad: "0114A00003220000000000000000000000FF",
        arqc: "CD29615D6452E70E",
    },
    Vector {
        name: "pyemv test_mastercard_cvn21",
        card: CardCvn::Mastercard21,
        terminal: Cvn::Mastercard21,
        elements: "000000009999 000000000000 0124 8000000000 0124 209906 00 ABCDEF12",
        iad: "0115A00003220000000000000000000322FF",
        arqc: "C30E54BE496CF5E5",
    },
];

const AIP: [u8; 2] = [0x18, 0x00];
const ATC: [u8; 2] = [0x00, 0x1C];

fn mk_ac() -> DesKey16 {
    let imk = DesKey16::from_slice(&h(IMK_AC)).expect("key");
    // Option A (pyemv uses A for Visa 10 and Mastercard, B for Visa 18/22: equal for 16 digits).
    let mk = emv_keys::derive_icc_master_key(MkdOption::A, &imk, PAN, "00").expect("mk");
    // pyemv: key_check_digits(icc_mk_ac) == "BAB0".
    assert_eq!(&mk.kcv().expect("kcv")[..2], &[0xBA, 0xB0]);
    mk
}

fn cdol1_data(v: &Vector) -> Vec<u8> {
    [h(v.elements), h(EXTRA)].concat()
}

#[test]
fn the_card_computes_each_cvn_from_its_element_set_not_the_whole_cdol1() {
    let mk = mk_ac();
    for v in &VECTORS {
        let data = cdol1_data(v);
        let elements = card::terminal_elements(&h(CDOL1), &data).expect(v.name);
        assert_eq!(elements, h(v.elements), "{}", v.name);
        let un: [u8; 4] = elements[25..29].try_into().expect("un");
        let key = card::session_key(v.card, mk.as_bytes(), ATC, un).expect(v.name);
        let input = card::ac_input(v.card, &elements, &AIP, ATC, &h(v.iad)).expect(v.name);
        let ac = card::cryptogram(v.card, &key, &input).expect(v.name);
        assert_eq!(hex::encode_upper(ac), v.arqc, "{}", v.name);
    }
}

fn evidence(v: &Vector, aid: &[u8]) -> ArqcEvidence {
    let data = cdol1_data(v);
    ArqcEvidence {
        aid: aid.to_vec(),
        cid: 0x80,
        atc: ATC,
        aip: AIP,
        un: h(v.elements)[25..29].try_into().expect("un"),
        ac: h(v.arqc).try_into().expect("ac"),
        iad: h(v.iad),
        elements: terminal::ac_elements(&h(CDOL1), &data),
    }
}

#[test]
fn the_read_back_verifies_each_cvn_known_answer() {
    let imk = DesKey16::from_slice(&h(IMK_AC)).expect("key");
    for v in &VECTORS {
        let e = evidence(v, &h("A0000000031010"));
        let outcome = verify_arqc(&e, &imk, MkdOption::A, v.terminal, PAN, "00");
        assert_eq!(outcome, Outcome::Pass, "{}", v.name);
        // One bit off in the cryptogram fails.
        let mut bad = e.clone();
        bad.ac[7] ^= 1;
        let outcome = verify_arqc(&bad, &imk, MkdOption::A, v.terminal, PAN, "00");
        assert!(matches!(outcome, Outcome::Fail(_)), "{}", v.name);
    }
}

#[test]
fn vsdc_guide_cvn18_ac_input() {
    // Visa VSDC Issuer Implementation Guide (2018) H.1 Example 1 (jPOS CVN18DataBuilderTest).
    let elements = h("000000000100 000000000000 0840 0000000000 0840 181231 01 ABCDEF10");
    let iad = h("06011203000000");
    let want = "00000000010000000000000008400000000000084018123101ABCDEF101800000106011203000000";
    let t = terminal::ac_input(Cvn::Visa18, &elements, [0x18, 0x00], [0x00, 0x01], &iad)
        .expect("input");
    assert_eq!(hex::encode_upper(t.as_slice()), want);
    let c = card::ac_input(
        CardCvn::Visa18,
        &elements,
        &[0x18, 0x00],
        [0x00, 0x01],
        &iad,
    )
    .expect("input");
    assert_eq!(hex::encode_upper(c.as_slice()), want);
}

#[test]
fn the_read_back_decodes_cvn_and_dki_per_scheme() {
    let visa = h("A0000000031010");
    let mc = h("A0000000041010");
    let info = terminal::decode(&visa, &h("06021203A00000")).expect("cvn 18");
    assert_eq!((info.cvn, info.dki), (Cvn::Visa18, 0x02));
    let info = terminal::decode(&visa, &h("06010A03A00000")).expect("cvn 10");
    assert_eq!(info.cvn, Cvn::Visa10);
    // Visa CVN 22: IAD format 2, 32 bytes, 1F 22 DKI CVR(5) ...
    let mut f2 = vec![0x1F, 0x22, 0x03, 0xA0, 0, 0, 0, 0];
    f2.resize(32, 0);
    let info = terminal::decode(&visa, &f2).expect("cvn 22");
    assert_eq!((info.cvn, info.dki), (Cvn::Visa22, 0x03));
    // CVN 22 coded 0x16 (decimal 22) is not Visa's coding.
    let err = terminal::decode(&visa, &h("06011603A00000")).expect_err("0x16");
    assert!(err.contains("coded 22"), "{err}");
    for (byte, cvn) in [
        (0x10, Cvn::Mastercard16),
        (0x11, Cvn::Mastercard17),
        (0x14, Cvn::Mastercard20),
        (0x15, Cvn::Mastercard21),
    ] {
        let mut iad = vec![0x05, byte];
        iad.resize(18, 0);
        let info = terminal::decode(&mc, &iad).expect("mc");
        assert_eq!((info.cvn, info.dki), (cvn, 0x05));
    }
}

#[test]
fn a_cdol1_without_an_ac_element_is_named() {
    // 9F37 missing.
    let err = terminal::ac_elements(&h("9F02069F03069F1A0295055F2A029A039C01"), &[0; 25])
        .expect_err("no UN");
    assert!(err.contains("9F37"), "{err}");
    assert!(card::terminal_elements(&h("9F0206"), &[0; 6]).is_none());
}

#[test]
fn the_card_reports_its_cvn_byte_and_the_personalized_dki() {
    // Visa CVN 22: format 2 with the DKI of a format-0 template, CVN byte 22.
    let iad = card::issuer_application_data(CardCvn::Visa22, Some(&h("06071203A00000")), false);
    assert_eq!(iad.len(), 32);
    assert_eq!(&iad[..4], &[0x1F, 0x22, 0x07, 0xA0]);
    let iad = card::issuer_application_data(CardCvn::Visa18, Some(&h("06071203A00000")), true);
    assert_eq!(iad, h("06071203A00400"));
    let iad = card::issuer_application_data(CardCvn::Mastercard17, None, false);
    assert_eq!((iad.len(), iad[1]), (18, 0x11));
}
