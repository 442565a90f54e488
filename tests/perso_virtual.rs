//! Personalization through the in-process virtual card: every protocol and security level, both
//! CPS (SELECT the application) and GP (SELECT the ISD + INSTALL [for personalization]) styles,
//! T=0 behaviour, the fault cases (each asserting the step named), then the personalized card as
//! a payment application and the read-back verification.
//!
//! Known answers: the virtual card's secure channel is pinned to real-card traces first
//! (vectors copied from /work/shared/vectors/vectors.json, sources: osmocom/pysim
//! tests/unittests/test_globalplatform.py SCP02_Auth_Test / SCP03_Test_AES128_03 (real card
//! traces) and kaoh/globalplatform scp02Test.c get_status_mac_only).

mod support;

use std::time::Instant;

use persodesk::devices::transport::{CardTransport, TransportError, VirtualTransport, exchange};
use persodesk::domain::emv_keys::{Cvn, DesKey16, MkdOption};
use persodesk::domain::gp::SecretKey;
use persodesk::domain::gp::SecurityLevel;
use persodesk::domain::gp::kdf::Diversification;
use persodesk::domain::gp::session::{Aid, CardKeys, Protocol, SessionError, StepName};
use persodesk::domain::readback::{Outcome, ReadBackSession, ReadStep, verify_arqc};
use persodesk::perso::{ChannelPlan, PersoError, personalize_dgis};
use persodesk::sim::card::channel::{CardKeySource, CardProtocol, KmcMethod};
use persodesk::sim::card::{CardConfig, Fault, ISD_AID, VirtualCard};
use zeroize::Zeroizing;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}

const KMC_TDES: &str = "404142434445464748494A4B4C4D4E4F";
const KMC_AES: &str = "000102030405060708090A0B0C0D0E0F";

fn card(protocol: CardProtocol) -> VirtualCard {
    let (kmc, method) = match protocol {
        CardProtocol::Scp02 { .. } => (KMC_TDES, KmcMethod::EmvCps11),
        CardProtocol::Scp03 { .. } => (KMC_AES, KmcMethod::Kdf3),
    };
    let keys = CardKeySource::Kmc {
        kmc: Zeroizing::new(h(kmc)),
        method,
    };
    VirtualCard::new(CardConfig::new(protocol, keys, [0x12, 0x34, 0x56, 0x78])).expect("card")
}

fn options(protocol: Protocol, level: SecurityLevel, gp_style: bool) -> ChannelPlan {
    let (kmc, method) = match protocol {
        Protocol::Scp02 { .. } => (KMC_TDES, Diversification::EmvCps11),
        Protocol::Scp03 { .. } => (KMC_AES, Diversification::Kdf3),
    };
    let aid = Aid::new(&support::AID).expect("aid");
    ChannelPlan {
        target_aid: if gp_style {
            Aid::new(&ISD_AID).expect("isd")
        } else {
            aid.clone()
        },
        install_for_perso: gp_style.then_some(aid),
        protocol,
        security_level: level,
        key_version: 0,
        keys: CardKeys::Master {
            kmc: SecretKey::from_hex(kmc).expect("kmc"),
            method,
        },
        verify_card_challenge: matches!(protocol, Protocol::Scp03 { i } if i & 0x10 != 0),
    }
}

/// Reads the card back and verifies everything, including the ARQC with the demo IMK-AC.
fn read_back(t: &mut dyn CardTransport) -> persodesk::domain::readback::ReadBack {
    let (mut session, mut command) = ReadBackSession::start(
        support::terminal([0xDE, 0xAD, 0xBE, 0xEF]),
        Some(support::ca_public()),
        vec![support::AID.to_vec()],
    );
    loop {
        let r = exchange(t, &command.to_bytes()).expect("read-back exchange");
        match session.handle(&r.response) {
            ReadStep::Transmit(next) => command = next,
            ReadStep::Done(result) => return *result,
        }
    }
}

fn personalize(
    t: &mut VirtualTransport,
    protocol: Protocol,
    level: SecurityLevel,
    gp_style: bool,
) -> Result<persodesk::perso::PersoReport, PersoError> {
    let mut steps = Vec::new();
    let result = personalize_dgis(
        t,
        options(protocol, level, gp_style),
        support::dgis(matches!(protocol, Protocol::Scp03 { .. })),
        &mut |p| steps.push(p.step),
    );
    if result.is_ok() {
        assert_eq!(
            steps.first(),
            Some(&StepName::Select),
            "progress starts at SELECT"
        );
        assert!(
            steps.contains(&StepName::StoreData),
            "progress reports STORE DATA"
        );
        assert_eq!(
            steps.last(),
            Some(&StepName::Finished),
            "progress ends finished"
        );
    }
    result
}

#[test]
fn every_protocol_and_level_personalizes_and_reads_back() {
    let cases = [
        (Protocol::Scp02 { i: 0x15 }, SecurityLevel::CMac),
        (Protocol::Scp02 { i: 0x15 }, SecurityLevel::CMacCDec),
        (Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMac),
        (Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMacCDec),
        (Protocol::Scp03 { i: 0x00 }, SecurityLevel::CMac),
        (Protocol::Scp03 { i: 0x00 }, SecurityLevel::CMacCDec),
        (Protocol::Scp03 { i: 0x10 }, SecurityLevel::CMac),
        (Protocol::Scp03 { i: 0x10 }, SecurityLevel::CMacCDec),
        (Protocol::Scp03 { i: 0x70 }, SecurityLevel::CMacCDec),
        (Protocol::Scp03 { i: 0x70 }, SecurityLevel::CMacCDecRMac),
        (Protocol::Scp03 { i: 0x70 }, SecurityLevel::Full),
    ];
    let imk = DesKey16::from_slice(&h(support::IMK_AC)).expect("imk");
    for (n, (protocol, level)) in cases.into_iter().enumerate() {
        let gp_style = n % 2 == 1;
        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        let started = Instant::now();
        let report = personalize(&mut t, protocol, level, gp_style)
            .unwrap_or_else(|e| panic!("{protocol} {level} gp={gp_style}: {e}"));
        println!(
            "perso {protocol} level {level} gp-style={gp_style}: {} APDUs, {:?} per card",
            report.transcript.apdu_count(),
            started.elapsed()
        );
        assert_eq!(
            report.summary.dgis.len(),
            support::dgis(matches!(protocol, Protocol::Scp03 { .. })).len()
        );
        let app = t.card.application().expect("personalized");
        assert_eq!(app.aid, support::AID);
        // The card decrypted the sensitive DGIs to what was sent.
        let mk = support::icc_master_keys();
        assert_eq!(
            app.dgis.get(&0x8000).map(|v| v[..16].to_vec()),
            Some(mk.ac.as_bytes().to_vec())
        );
        assert_eq!(
            app.dgis.get(&0x8010).map(|v| v.to_vec()),
            Some(h("241234FFFFFFFFFF"))
        );
        let crt = support::chain().icc.crt_components().expect("crt");
        assert_eq!(
            app.dgis.get(&0x8205).map(|v| v.to_vec()),
            Some(crt.p.expose().to_vec()),
            "padding removed from the CRT prime"
        );
        // Masked transcript: headers, lengths, SWs only.
        let text = report.transcript.to_string();
        assert!(
            !text.contains(&support::PAN[..10]),
            "no PAN in the transcript"
        );
        assert!(text.contains("84 E2"), "{text}");

        let rb = read_back(&mut t);
        for c in &rb.checks {
            println!("  {c}");
        }
        assert!(rb.passed(), "read-back failed for {protocol} {level}");
        assert!(
            rb.checks
                .iter()
                .any(|c| c.name.starts_with("DDA") && c.outcome == Outcome::Pass)
        );
        assert!(
            rb.checks
                .iter()
                .any(|c| c.name.starts_with("ODA: ICC") && c.outcome == Outcome::Pass)
        );
        let arqc = rb.arqc.as_ref().expect("arqc");
        assert_eq!(arqc.cvn(), Some(Cvn::Visa18));
        let pan = rb.pan.as_ref().expect("pan");
        assert_eq!(
            verify_arqc(arqc, &imk, MkdOption::A, Cvn::Visa18, pan, support::PSN),
            Outcome::Pass
        );
        // A wrong IMK does not verify.
        let wrong = DesKey16::from_slice(&h("1123456789ABCDEFFEDCBA9876543211")).expect("k");
        assert!(matches!(
            verify_arqc(arqc, &wrong, MkdOption::A, Cvn::Visa18, pan, support::PSN),
            Outcome::Fail(_)
        ));
        assert_eq!(rb.card.pan_masked.as_deref(), Some("476173******0119"));
        assert_eq!(rb.card.pin_tries, Some(3));
    }
}

#[test]
fn t0_card_needs_get_response_and_le_resend() {
    let keys = CardKeySource::Kmc {
        kmc: Zeroizing::new(h(KMC_AES)),
        method: KmcMethod::Kdf3,
    };
    let mut cfg = CardConfig::new(CardProtocol::Scp03 { i: 0x70 }, keys, [1, 2, 3, 4]);
    cfg.t0 = true;
    let mut t = VirtualTransport::new(VirtualCard::new(cfg).expect("card"));
    // Raw: a case-4 SELECT gets 61xx under T=0.
    let raw = t
        .transmit_raw(&[
            0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 1, 0x51, 0, 0, 0, 0x00,
        ])
        .expect("raw");
    assert_eq!(raw[0], 0x61, "T=0 card answers 61xx");
    let report = personalize(
        &mut t,
        Protocol::Scp03 { i: 0x70 },
        SecurityLevel::CMacCDec,
        false,
    )
    .expect("perso over T=0");
    assert!(
        report
            .transcript
            .entries
            .iter()
            .any(|e| e.raw_exchanges == 2),
        "GET RESPONSE used"
    );
    let rb = read_back(&mut t);
    assert!(rb.passed());
    // GET DATA with a wrong Le: 6Cxx, then the transport resends with the right Le.
    let x = exchange(&mut t, &[0x80, 0xCA, 0x9F, 0x17, 0x05]).expect("exchange");
    assert_eq!(x.raw_exchanges, 2, "6Cxx then resend with Le");
    assert_eq!(x.response, [0x9F, 0x17, 0x01, 0x03, 0x90, 0x00]);
}

fn expect_failure(
    fault: Option<Fault>,
    wrong_keys: bool,
    already: bool,
) -> (PersoError, VirtualTransport) {
    let protocol = Protocol::Scp02 { i: 0x55 };
    let mut c = card(CardProtocol::from(protocol));
    if let Some(f) = fault {
        c.inject(f);
    }
    let mut t = VirtualTransport::new(c);
    if already {
        personalize(&mut t, protocol, SecurityLevel::CMac, false).expect("first perso");
    }
    let mut opts = options(protocol, SecurityLevel::CMac, false);
    if wrong_keys {
        opts.keys = CardKeys::Master {
            kmc: SecretKey::from_hex("505152535455565758595A5B5C5D5E5F").expect("k"),
            method: Diversification::EmvCps11,
        };
    }
    let err = personalize_dgis(
        &mut t,
        opts,
        support::dgis(matches!(protocol, Protocol::Scp03 { .. })),
        &mut |_| {},
    )
    .expect_err("must fail");
    (err, t)
}

#[test]
fn card_removed_mid_session_names_store_data_and_a_fresh_card_works() {
    // Commands: SELECT, INIT UPDATE, EXT AUTH, then STORE DATA #1 (4), #2 (5) ...
    let (err, mut t) = expect_failure(Some(Fault::RemoveAt(6)), false, false);
    assert_eq!(err.step(), Some(StepName::StoreData));
    assert!(
        matches!(
            &err,
            PersoError::Transport {
                error: TransportError::CardRemoved,
                dgi: Some(0x0201),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("STORE DATA (DGI 0201)"), "{err}");
    assert!(err.to_string().contains("removed"), "{err}");
    assert!(t.card.application().is_none(), "nothing half-personalized");
    // Put it back: a retry works.
    t.card.insert();
    personalize(
        &mut t,
        Protocol::Scp02 { i: 0x55 },
        SecurityLevel::CMac,
        false,
    )
    .expect("retry");
}

#[test]
fn wrong_keys_fail_at_initialize_update() {
    let (err, _) = expect_failure(None, true, false);
    assert_eq!(err.step(), Some(StepName::InitializeUpdate));
    assert!(matches!(
        &err,
        PersoError::Session {
            error: SessionError::CardCryptogramMismatch,
            ..
        }
    ));
}

#[test]
fn second_personalization_is_refused_with_6985() {
    let (err, _) = expect_failure(None, false, true);
    assert_eq!(err.step(), Some(StepName::StoreData));
    assert!(err.to_string().contains("6985"), "{err}");
    assert!(err.to_string().contains("DGI 0101"), "{err}");
}

#[test]
fn garbage_and_error_status_words_name_the_step() {
    let (err, _) = expect_failure(Some(Fault::GarbageAt(2, vec![0x42])), false, false);
    assert_eq!(err.step(), Some(StepName::InitializeUpdate));
    assert!(err.to_string().contains("INITIALIZE UPDATE"), "{err}");
    let (err, _) = expect_failure(
        Some(Fault::GarbageAt(2, vec![0x13, 0x37, 0x90, 0x00])),
        false,
        false,
    );
    assert_eq!(err.step(), Some(StepName::InitializeUpdate), "{err}");
    let (err, _) = expect_failure(Some(Fault::StatusAt(3, 0x6982)), false, false);
    assert_eq!(err.step(), Some(StepName::ExternalAuthenticate));
    assert!(err.to_string().contains("6982"), "{err}");
    let (err, _) = expect_failure(Some(Fault::StatusAt(9, 0x6A80)), false, false);
    assert_eq!(err.step(), Some(StepName::StoreData));
    assert!(err.to_string().contains("6A80"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The virtual card against real-card traces

fn static_card(
    protocol: CardProtocol,
    enc: &str,
    mac: &str,
    dek: &str,
    kdd: &str,
    kvn: u8,
) -> VirtualCard {
    static_card_with_isd(protocol, enc, mac, dek, kdd, kvn, &ISD_AID)
}

fn static_card_with_isd(
    protocol: CardProtocol,
    enc: &str,
    mac: &str,
    dek: &str,
    kdd: &str,
    kvn: u8,
    isd: &[u8],
) -> VirtualCard {
    let keys = CardKeySource::Static {
        enc: Zeroizing::new(h(enc)),
        mac: Zeroizing::new(h(mac)),
        dek: Zeroizing::new(h(dek)),
    };
    let mut cfg = CardConfig::new(protocol, keys, [0; 4]);
    cfg.kdd.copy_from_slice(&h(kdd));
    cfg.key_version = kvn;
    cfg.isd_aid = isd.to_vec();
    VirtualCard::new(cfg).expect("card")
}

fn sw_of(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

/// The pysim SCP02 trace's INITIALIZE UPDATE (host challenge 40A62C37FA6304F8) and its
/// EXTERNAL AUTHENTICATE (C-MAC, level 01).
const PYSIM_INIT_UPDATE: &str = "805000000840A62C37FA6304F800";
const PYSIM_EXT_AUTH: &str = "8482010010BA6961667737C5BCEBECE14C7D6A4376";

/// The card of the pysim SCP02 trace (gp-scp02, a real sysmoISIM): its static keys, sequence
/// counter 0001 and the trace's card challenge; i=15 (the trace's challenge is random).
fn pysim_trace_card() -> VirtualCard {
    let mut c = static_card(
        CardProtocol::Scp02 { i: 0x15 },
        "100102030405060708090a0b0c0d0e0f",
        "101102030405060708090a0b0c0d0e0f",
        "102102030405060708090a0b0c0d0e0f",
        "00000000000000000000",
        0x70,
    );
    c.set_sequence_counter(0x0001);
    c.set_fixed_random([0x6B, 0x45, 0x24, 0xAB, 0xEE, 0x7C, 0, 0]);
    c
}

/// V: gp-scp02 "SCP02 mutual auth + C-MAC wrap (i=55 style, ICV encryption)" (pysim, real
/// sysmoISIM trace): the card's INITIALIZE UPDATE answer, acceptance of the host's EXTERNAL
/// AUTHENTICATE and of the C-MAC'd commands. The card challenge of this trace is random, so the
/// card runs as i=15 with the trace's challenge.
#[test]
fn virtual_card_matches_scp02_real_card_trace() {
    let mut c = pysim_trace_card();
    assert_eq!(sw_of(&c.process(&h("00A4040000"))), 0x9000);
    let r = c.process(&h(PYSIM_INIT_UPDATE));
    assert_eq!(
        hex::encode_upper(&r),
        "00000000000000000000700200016B4524ABEE7CF32EA3838BC148F39000"
    );
    assert_eq!(sw_of(&c.process(&h(PYSIM_EXT_AUTH))), 0x9000);
    // The trace's C-MAC'd GET STATUS / GET DATA chain (each MAC chained on the previous one):
    // the issuer security domain checks every C-MAC (GP 2.3), so the chain stays in step and
    // the last command, GET STATUS of the ISD, answers its registry entry.
    let r = c.process(&h("84F220020814DB34FA4341DCA8"));
    assert_ne!(sw_of(&r), 0x6982, "C-MAC of the trace accepted");
    let r = c.process(&h("84CA00660855ED7C5FF069512B00"));
    assert_eq!(sw_of(&r), 0x9000, "GET DATA 66 under the secure channel");
    assert_eq!(r[0], 0x66, "card recognition data");
    let r = c.process(&h("84F22002124F0212345C054F9F70C58FC1B380C4228AF8"));
    assert_eq!(sw_of(&r), 0x6A88, "no such load file, C-MAC accepted");
    let r = c.process(&h("84F280020A4F003B95F09317DE6A4E00"));
    assert_eq!(sw_of(&r), 0x9000, "GET STATUS of the ISD");
    let mut isd = vec![0x4F, 0x08];
    isd.extend_from_slice(&ISD_AID);
    assert_eq!(r[0], 0xE3, "TLV format entry");
    assert_eq!(&r[2..12], isd.as_slice(), "E3 {{4F ISD AID ..}}");
}

/// EXTERNAL AUTHENTICATE at security level 00 (no secure messaging afterwards) is allowed by
/// GP 2.3 (§E.5.2): the card accepts it, then plain commands. Keys and challenges of the pysim
/// trace above; the host's C-MAC over `84 82 00 00 10 || host cryptogram` is computed here from
/// GP 2.2 Annex E (S-MAC = TDES-CBC(K-MAC)[0101 || seq || 00..], retail MAC, zero ICV).
#[test]
fn external_authenticate_at_level_00_is_accepted() {
    let mut c = pysim_trace_card();
    assert_eq!(sw_of(&c.process(&h("00A4040000"))), 0x9000);
    c.process(&h(PYSIM_INIT_UPDATE));
    let mut s_mac = [0u8; 16];
    s_mac[..4].copy_from_slice(&[0x01, 0x01, 0x00, 0x01]);
    persodesk::domain::crypto::tdes_cbc_encrypt(
        &h("101102030405060708090a0b0c0d0e0f"),
        &[0; 8],
        &mut s_mac,
    )
    .expect("s-mac");
    let host_cryptogram = h("BA6961667737C5BC");
    let header = h("8482000010");
    let mac = persodesk::domain::crypto::retail_mac(
        &s_mac,
        &[0; 8],
        &[header.clone(), host_cryptogram.clone()].concat(),
        persodesk::domain::crypto::MacPadding::Method2,
    )
    .expect("mac");
    let ea = [header, host_cryptogram, mac.to_vec()].concat();
    assert_eq!(sw_of(&c.process(&ea)), 0x9000, "level 00 accepted");
    let r = c.process(&h("80F28002024F0000"));
    assert_eq!(sw_of(&r), 0x9000, "plain GET STATUS at level 00");
}

/// A command sent without secure messaging inside a C-MAC session ends the session before it
/// is refused: the next wrapped command finds no session (6982), never a half-advanced chain.
#[test]
fn a_plain_command_inside_a_cmac_session_closes_it() {
    let mut c = pysim_trace_card();
    c.process(&h("00A4040000"));
    c.process(&h(PYSIM_INIT_UPDATE));
    assert_eq!(sw_of(&c.process(&h(PYSIM_EXT_AUTH))), 0x9000);
    let r = c.process(&h("80E2000003010100"));
    assert_eq!(sw_of(&r), 0x6982, "STORE DATA without C-MAC refused");
    let r = c.process(&h("84F220020814DB34FA4341DCA8"));
    assert_eq!(sw_of(&r), 0x6982, "the session was closed");
}

/// The card of the GPShell SCP02 trace (kaoh/globalplatform): one static key for ENC, MAC and
/// DEK, sequence counter 069F and the trace's card challenge.
fn gpshell_trace_card() -> VirtualCard {
    let k = "404142434445464748494A4B4C4D4E4F";
    let mut c = static_card(
        CardProtocol::Scp02 { i: 0x15 },
        k,
        k,
        k,
        "000074746E6E6E626262",
        0x01,
    );
    c.set_sequence_counter(0x069F);
    c.set_fixed_random([0xAA, 0x2A, 0x05, 0x91, 0xE7, 0x33, 0, 0]);
    c
}

/// V: gp-scp02 "SCP02 mutual auth i=15 + C-MAC GET STATUS (GPShell)" (kaoh/globalplatform).
#[test]
fn virtual_card_matches_scp02_gpshell_trace() {
    let mut c = gpshell_trace_card();
    assert_eq!(sw_of(&c.process(&h("00A4040000"))), 0x9000);
    let r = c.process(&h("8050000008D5AD539A60CA5E7200"));
    assert_eq!(
        hex::encode_upper(&r),
        "000074746E6E6E6262620102069FAA2A0591E73367DD78794D04315E9000"
    );
    assert_eq!(
        sw_of(&c.process(&h("84820100107C799B3C771DBAE6BEF49310977617BA"))),
        0x9000
    );
    // A host cryptogram off by one bit: 6300 on a fresh session.
    let mut c2 = gpshell_trace_card();
    c2.process(&h("00A4040000"));
    c2.process(&h("8050000008D5AD539A60CA5E7200"));
    assert_eq!(
        sw_of(&c2.process(&h("84820100107C799B3C771DBAE7BEF49310977617BA"))),
        0x6300
    );
    // The right cryptogram with a corrupted C-MAC: 6982.
    c2.process(&h("00A4040000"));
    c2.set_sequence_counter(0x069F);
    c2.process(&h("8050000008D5AD539A60CA5E7200"));
    assert_eq!(
        sw_of(&c2.process(&h("84820100107C799B3C771DBAE6BEF49310977617BB"))),
        0x6982
    );
}

/// V: gp-scp03 "SCP03 AES128 S8 SL=03" (pysim, real card trace, i=70, pseudo-random challenge):
/// the card derives the trace's card challenge and cryptogram itself from K-ENC, the sequence
/// counter and the selected AID (the trace's ISD A000000151000000 per pysim).
#[test]
fn virtual_card_matches_scp03_real_card_trace() {
    let mut c = static_card_with_isd(
        CardProtocol::Scp03 { i: 0x70 },
        "000102030405060708090a0b0c0d0e0f",
        "101112131415161718191a1b1c1d1e1f",
        "000102030405060708090a0b0c0d0e0f",
        "00000000000000000000",
        0x30,
        &h("A0000005591010FFFFFFFF8900000100"),
    );
    c.set_sequence_counter(0x000001);
    assert_eq!(
        sw_of(&c.process(&h("00A4040010A0000005591010FFFFFFFF890000010000"))),
        0x9000
    );
    let r = c.process(&h("80503000088e1552d0513c60f300"));
    assert_eq!(
        hex::encode_upper(&r).to_lowercase(),
        "0000000000000000000030037030760cd2c47c1dd395065fe5ead8a9d70000019000"
    );
    assert_eq!(
        sw_of(&c.process(&h("8482030010FD4721A14D9B07003C451D2F8AE6BB21"))),
        0x9000
    );
}

/// The GP session with the card keys in a key store (`CardKeys::Store`): the store diversifies
/// its KMC with the KDD the card gave (the KMC never enters the plan), SCP02 and SCP03; without
/// a store, or with a store lacking the KMC, the session stops at INITIALIZE UPDATE with a
/// card-keys error and never sends EXTERNAL AUTHENTICATE.
#[test]
fn the_session_takes_the_card_keys_from_the_key_store() {
    use persodesk::keys::SoftwareKeyStore;
    use persodesk::perso::personalize_dgis_with;
    let entry = |index: u32, alg: &str, value: &str| {
        let v = h(value);
        let kcv = match alg {
            "aes" => persodesk::domain::crypto::kcv_aes(&v),
            _ => persodesk::domain::crypto::kcv_tdes(&v),
        }
        .expect("kcv");
        format!(
            "[[key]]\nusage = \"kmc\"\nindex = {index}\nalgorithm = \"{alg}\"\nvalue = \"{value}\"\n\
             kcv = \"{}\"\ntest = true\n",
            hex::encode_upper(kcv)
        )
    };
    let store = SoftwareKeyStore::from_toml(
        "k.toml",
        &format!("{}{}", entry(1, "tdes", KMC_TDES), entry(2, "aes", KMC_AES)),
    )
    .expect("keys");
    for (protocol, index, method) in [
        (Protocol::Scp02 { i: 0x55 }, 1, Diversification::EmvCps11),
        (Protocol::Scp03 { i: 0x00 }, 2, Diversification::Kdf3),
    ] {
        let mut opts = options(protocol, SecurityLevel::CMac, false);
        opts.keys = CardKeys::Store {
            kmc_index: index,
            method,
        };
        let dgis = || support::dgis(matches!(protocol, Protocol::Scp03 { .. }));
        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        let report = personalize_dgis_with(&mut t, opts.clone(), dgis(), &store, &mut |_| {})
            .expect("personalized with the store's card keys");
        assert!(report.summary.store_data_commands > 0, "{protocol}");

        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        let err =
            personalize_dgis(&mut t, opts.clone(), dgis(), &mut |_| {}).expect_err("no store");
        assert_eq!(err.step(), Some(StepName::InitializeUpdate));
        assert!(
            matches!(&err, PersoError::Session { error: SessionError::CardKeys(_), transcript }
                if transcript.entries.len() == 2),
            "{err}"
        );
        assert!(err.to_string().contains("no key store was given"), "{err}");

        let empty = SoftwareKeyStore::default();
        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        let err =
            personalize_dgis_with(&mut t, opts, dgis(), &empty, &mut |_| {}).expect_err("no kmc");
        assert!(
            err.to_string()
                .contains(&format!("kmc #{index} is not in the key store")),
            "{err}"
        );
    }
}

/// A DGI 8000 held in the key store (`PersoDgi::held`, as a PKCS#11 store prepares it): the
/// session asks the store for the value encrypted under the card's DEK at STORE DATA, SCP02 and
/// SCP03. The virtual card checks DGI 9000 (the KCVs of the independently derived keys of
/// `support::icc_master_keys`) against the keys it decrypted from DGI 8000, so a wrong value is
/// refused by the card. Without a store, or with a held DGI the profile would send in clear, the
/// session stops at STORE DATA (DGI 8000) before sending it.
#[test]
fn a_held_dgi_8000_is_encrypted_by_the_key_store_at_store_data() {
    use persodesk::domain::fields::{Pan, Psn};
    use persodesk::domain::keystore::HeldSecret;
    use persodesk::keys::SoftwareKeyStore;
    use persodesk::perso::personalize_dgis_with;
    let entry = |usage: &str, index: u32, alg: &str, value: &str| {
        let v = h(value);
        let kcv = match alg {
            "aes" => persodesk::domain::crypto::kcv_aes(&v),
            _ => persodesk::domain::crypto::kcv_tdes(&v),
        }
        .expect("kcv");
        format!(
            "[[key]]\nusage = \"{usage}\"\nindex = {index}\nalgorithm = \"{alg}\"\n\
             value = \"{value}\"\nkcv = \"{}\"\ntest = true\n",
            hex::encode_upper(kcv)
        )
    };
    let toml = [
        entry("kmc", 1, "tdes", KMC_TDES),
        entry("kmc", 2, "aes", KMC_AES),
        entry("imk-ac", 1, "tdes", support::IMK_AC),
        entry("imk-smi", 1, "tdes", support::IMK_SMI),
        entry("imk-smc", 1, "tdes", support::IMK_SMC),
    ]
    .concat();
    let store = SoftwareKeyStore::from_toml("k.toml", &toml).expect("keys");
    let held = HeldSecret::IccMasterKeys {
        derivation_index: 1,
        option: MkdOption::A,
        pan: Pan::parse(support::PAN).expect("pan"),
        psn: Psn::parse(support::PSN).expect("psn"),
    };
    let shown = format!("{held:?}");
    assert!(
        !shown.contains(support::PAN),
        "Debug shows the PAN: {shown}"
    );
    let held_dgis = |aes: bool, encrypt: bool| {
        let mut dgis = support::dgis(aes);
        let d = dgis.iter_mut().find(|d| d.id() == 0x8000).expect("8000");
        *d = persodesk::domain::dgi::PersoDgi::new(0x8000, vec![0; 48], encrypt, false)
            .expect("dgi");
        d.held = Some(held.clone());
        dgis
    };
    for (protocol, index, method) in [
        (Protocol::Scp02 { i: 0x55 }, 1, Diversification::EmvCps11),
        (Protocol::Scp03 { i: 0x00 }, 2, Diversification::Kdf3),
    ] {
        let aes = matches!(protocol, Protocol::Scp03 { .. });
        let mut opts = options(protocol, SecurityLevel::CMac, false);
        opts.keys = CardKeys::Store {
            kmc_index: index,
            method,
        };
        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        personalize_dgis_with(
            &mut t,
            opts.clone(),
            held_dgis(aes, true),
            &store,
            &mut |_| {},
        )
        .expect("the card accepts the store's DGI 8000 (its KCVs match DGI 9000)");

        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        let err = personalize_dgis_with(&mut t, opts, held_dgis(aes, false), &store, &mut |_| {})
            .expect_err("a held DGI sent in clear");
        assert_eq!(err.step(), Some(StepName::StoreData), "{err}");
        assert!(
            err.to_string().contains("DGI 8000") && err.to_string().contains("sent encrypted"),
            "{err}"
        );

        let mut t = VirtualTransport::new(card(CardProtocol::from(protocol)));
        let opts = options(protocol, SecurityLevel::CMac, false);
        let err = personalize_dgis(&mut t, opts, held_dgis(aes, true), &mut |_| {})
            .expect_err("no store for a held DGI");
        assert!(
            matches!(
                &err,
                PersoError::Session {
                    error: SessionError::HeldDgi { dgi: 0x8000, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("no key store was given"), "{err}");
    }
}
