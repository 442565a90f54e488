//! Personalization and read-back through the real PC/SC stack: pcscd with the vsmartcard-vpcd
//! driver, the virtual card connected to it over loopback TCP (`persodesk sim-card` for SCP02 on
//! "Virtual PCD 00 00", the in-process vpcd bridge for SCP03 on "Virtual PCD 00 01"), the pcsc
//! crate on the host side.
//!
//! One test only: pcscd is one per machine. A lock file serializes it with other test binaries.
//! It starts `pcscd -f` (foreground; not `-a`, which would log APDUs, i.e. clear card data) and
//! stops it and every other process it started by PID, also on panic. It skips with a loud
//! message only when pcscd or the vpcd driver is not installed (`bash .ci/setup` installs them).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persodesk::devices::pcsc::{PcscTransport, ProtocolChoice};
use persodesk::devices::transport::exchange;
use persodesk::domain::emv_keys::{Cvn, DesKey16, MkdOption};
use persodesk::domain::gp::kdf::Diversification;
use persodesk::domain::gp::session::{Aid, CardKeys, Protocol};
use persodesk::domain::gp::{SecretKey, SecurityLevel};
use persodesk::domain::readback::{Outcome, ReadBackSession, ReadStep, verify_arqc};
use persodesk::perso::{ChannelPlan, personalize_dgis};
use persodesk::sim::card::channel::{CardKeySource, CardProtocol, KmcMethod};
use persodesk::sim::card::{CardConfig, VirtualCard};
use zeroize::Zeroizing;

use support::pcsc::{
    Cleanup, DEMO, READER0, Stack, card_stock, insert_card, pull_card, start_encoder, start_stack,
    wait_for,
};

/// The demo key store's KMC (kmc #1, TDES, a test key).
const DEMO_KMC: &str = "404142434445464748494A4B4C4D4E4F";
const AES_KMC: &str = "000102030405060708090A0B0C0D0E0F";

fn perso_and_verify(reader: &str, protocol: Protocol, level: SecurityLevel, keys: CardKeys) {
    let mut transport = wait_for(
        &format!("a card in {reader}"),
        Duration::from_secs(20),
        || PcscTransport::connect(reader, ProtocolChoice::T0).ok(),
    );
    let atr = transport.atr().expect("atr");
    assert_eq!(atr.first(), Some(&0x3B), "ATR");
    let aid = Aid::new(&support::AID).expect("aid");
    let options = ChannelPlan {
        target_aid: aid,
        install_for_perso: None,
        protocol,
        security_level: level,
        key_version: 0,
        keys,
        verify_card_challenge: matches!(protocol, Protocol::Scp03 { i } if i & 0x10 != 0),
    };
    let started = Instant::now();
    let report = personalize_dgis(
        &mut transport,
        options,
        support::dgis(matches!(protocol, Protocol::Scp03 { .. })),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{reader}: {e}"));
    let perso_time = started.elapsed();
    let (mut session, mut command) = ReadBackSession::start(
        support::terminal([0x01, 0x23, 0x45, 0x67]),
        Some(support::ca_public()),
        vec![support::AID.to_vec()],
    );
    let mut read_apdus = 0;
    let rb = loop {
        let x = exchange(&mut transport, &command.to_bytes()).expect("read-back exchange");
        read_apdus += x.raw_exchanges;
        match session.handle(&x.response) {
            ReadStep::Transmit(next) => command = next,
            ReadStep::Done(r) => break *r,
        }
    };
    let total = started.elapsed();
    transport.disconnect().expect("disconnect");
    for c in &rb.checks {
        println!("  {c}");
    }
    assert!(rb.passed(), "{reader}: read-back failed");
    let arqc = rb.arqc.as_ref().expect("arqc");
    let imk = DesKey16::from_slice(&hex::decode(support::IMK_AC).expect("hex")).expect("imk");
    let pan = rb.pan.as_ref().expect("pan");
    assert_eq!(
        verify_arqc(arqc, &imk, MkdOption::A, Cvn::Visa18, pan, support::PSN),
        Outcome::Pass
    );
    println!(
        "{reader} {protocol} {level}: personalized in {perso_time:?} ({} APDUs), read back and verified in {:?} ({read_apdus} APDUs); {total:?} per card",
        report.transcript.apdu_count(),
        total - perso_time,
    );
}

fn write_file(dir: &Path, name: &str, text: &str, cleanup: &mut Cleanup) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write temp file");
    cleanup.files.push(p.clone());
    p
}

#[test]
fn personalize_and_read_back_through_pcscd_and_vpcd() {
    let Some(stack) = start_stack() else {
        return;
    };
    let Stack {
        mut cleanup,
        _lock,
        reader0,
        reader1,
    } = stack;
    let dir = std::env::temp_dir();
    let tag = std::process::id();

    // `persodesk readers` sees them.
    let out = support::persodesk_command::<&str>(&[], &[])
        .arg("readers")
        .output()
        .expect("persodesk readers");
    assert!(String::from_utf8_lossy(&out.stdout).contains(READER0));

    // SCP02 i=55, C-MAC + C-DEC, through `persodesk sim-card` with the demo KMC.
    let state = dir.join(format!("persodesk-sim-{tag}.json"));
    cleanup.files.push(state.clone());
    let mut sim = support::persodesk_command::<&str>(&[], &[]);
    sim.args(["sim-card", "--vpcd", "127.0.0.1:35963"])
        .args(["--keys", "assets/demo/keys.toml"])
        .args(["--scp", "scp02", "--i", "55", "--state"])
        .arg(&state);
    support::pcsc::spawn(&mut cleanup, "persodesk sim-card", &mut sim);
    perso_and_verify(
        &reader0,
        Protocol::Scp02 { i: 0x55 },
        SecurityLevel::CMacCDec,
        CardKeys::Master {
            kmc: SecretKey::from_hex(DEMO_KMC).expect("kmc"),
            method: Diversification::EmvCps11,
        },
    );
    // The state file holds the personalized application.
    let saved = wait_for("the sim-card state file", Duration::from_secs(5), || {
        std::fs::read_to_string(&state)
            .ok()
            .filter(|t| t.contains("A0000000031010"))
    });
    assert!(saved.contains("\"8000\""));

    // `persodesk read-card` against the same card, with the test CA.
    let ca = support::ca_public();
    let ca_file = write_file(
        &dir,
        &format!("persodesk-ca-{tag}.toml"),
        &format!(
            "rid = \"{}\"\nindex = \"{:02X}\"\nmodulus = \"{}\"\nexponent = \"03\"\n",
            hex::encode_upper(ca.rid),
            ca.index,
            hex::encode_upper(ca.key.modulus())
        ),
        &mut cleanup,
    );
    let out = support::persodesk_command::<&str>(&[], &[])
        .args(["read-card", "--reader", &reader0, "--ca"])
        .arg(&ca_file)
        .output()
        .expect("persodesk read-card");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "read-card: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("read-back: PASS"));
    assert!(text.contains("476173******0119"));
    assert!(!text.contains(support::PAN), "masked report");

    // SCP03 i=70, C-MAC + C-DEC, through the in-process bridge on the second reader.
    let keys = CardKeySource::Kmc {
        kmc: Zeroizing::new(hex::decode(AES_KMC).expect("hex")),
        method: KmcMethod::Kdf3,
    };
    let card = VirtualCard::new(CardConfig::new(
        CardProtocol::Scp03 { i: 0x70 },
        keys,
        [9, 8, 7, 6],
    ))
    .expect("card");
    let card = Arc::new(Mutex::new(card));
    let stop = Arc::new(AtomicBool::new(false));
    let bridge = {
        let (card, stop) = (Arc::clone(&card), Arc::clone(&stop));
        let addr: SocketAddr = "127.0.0.1:35964".parse().expect("addr");
        std::thread::Builder::new()
            .name("vpcd-bridge".into())
            .spawn(move || persodesk::sim::vpcd::serve(&card, addr, &stop, |_, _| {}))
            .expect("bridge thread")
    };
    perso_and_verify(
        &reader1,
        Protocol::Scp03 { i: 0x70 },
        SecurityLevel::CMacCDec,
        CardKeys::Master {
            kmc: SecretKey::from_hex(AES_KMC).expect("kmc"),
            method: Diversification::Kdf3,
        },
    );
    stop.store(true, Ordering::Relaxed);
    bridge.join().expect("bridge").expect("bridge io");
    drop(cleanup);
}

/// A child process the test stops before the next card (and on panic, through [`Cleanup`]).
/// The demo orders: (file, order id, chip profile of its product, a clear value that must never
/// be printed).
struct Run {
    code: Option<i32>,
    json: serde_json::Value,
    stdout: String,
    stderr: String,
}

fn personalize(data_dir: &Path, reader: &str, file: &str, order: &str, extra: &[&str]) -> Run {
    let out = support::persodesk_command::<&str>(&[], &[])
        .args(["personalize", file, "--order", order, "--reader", reader])
        .args(["--role", "tester", "--user", "ci", "--json"])
        .args(extra)
        .env("PERSODESK_DATA_DIR", data_dir)
        .env("RUST_LOG", "trace")
        .output()
        .expect("persodesk personalize");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code(),
        json: serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn status_of(data_dir: &Path, order: &str) -> (String, Option<String>) {
    let store =
        persodesk::store::Store::open(&data_dir.join(persodesk::store::DB_FILE)).expect("store");
    let s = store.state(order).expect("state").expect("order in store");
    (s.status.as_str().to_string(), s.reason)
}

/// Every demo order, Model 1 and Model 2, over SCP02 and SCP03, through the real PC/SC stack with
/// `persodesk personalize` (chip, read-back against the prepared data, ARQC, stripe on the
/// simulated encoder); then the faults of the card issue, each followed by a retry on a fresh
/// card. Prints the time per card and the APDU counts.
#[test]
fn every_demo_order_personalizes_through_the_cli() {
    let Some(stack) = start_stack() else {
        return;
    };
    let Stack {
        mut cleanup,
        _lock,
        reader0,
        ..
    } = stack;
    let root = std::env::temp_dir().join(format!("persodesk-cli-stack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let encoder = start_encoder(&mut cleanup, "none");
    // A card is pulled out: wait until the reader is empty before the next one goes in.
    let stop = |cleanup: &mut Cleanup, index: usize| pull_card(cleanup, &reader0, index);
    let sim = |cleanup: &mut Cleanup, args: &[&str], faults: &[&str]| {
        let mut args = args.to_vec();
        for f in faults {
            args.extend(["--fault", f]);
        }
        insert_card(cleanup, &reader0, &args)
    };

    println!("card                   model channel   perso APDUs  read-back APDUs  wall ms");
    let mut cards = 0u32;
    let mut total = Duration::ZERO;
    for scp in ["scp02", "scp03"] {
        let data_dir = root.join(scp);
        std::fs::create_dir_all(&data_dir).expect("data dir");
        for (file, order, profile, pan) in DEMO {
            let (card_args, override_args) = card_stock(profile, scp);
            let card = sim(&mut cleanup, &card_args, &[]);
            let mut extra = override_args.clone();
            extra.extend(["--encoder", encoder.as_str(), "--swipe-timeout", "10"]);
            let started = Instant::now();
            let run = personalize(&data_dir, &reader0, file, order, &extra);
            let wall = started.elapsed();
            stop(&mut cleanup, card);
            assert_eq!(
                run.code,
                Some(0),
                "{order} over {scp}: {}\n{}",
                run.stdout,
                run.stderr
            );
            let j = &run.json;
            assert_eq!(j["outcome"], "personalized", "{order}");
            let checks = j["chip"]["readBack"].as_array().expect("checks");
            assert!(checks.iter().all(|c| c["status"] != "fail"), "{order}");
            let passed = |name: &str| {
                checks.iter().any(|c| {
                    c["check"].as_str().is_some_and(|n| n.starts_with(name))
                        && c["status"] == "pass"
                })
            };
            for name in [
                "ARQC (9F26) per ",
                "record SFI",
                "ODA: issuer certificate",
                "order: PAN (5A)",
            ] {
                assert!(passed(name), "{order} over {scp}: no passed check {name}");
            }
            // The M/Chip profile announces CDA: the ARQC came inside a verified signature.
            if profile == "mchip-advance-1.2.3" {
                assert!(
                    passed("CDA: signed dynamic data (9F4B)"),
                    "{order} over {scp}: CDA"
                );
            }
            assert!(!j["stripe"]["tracks"].as_array().expect("tracks").is_empty());
            assert_eq!(status_of(&data_dir, order).0, "CARD_PROD_DONE");
            for text in [&run.stdout, &run.stderr] {
                assert!(!text.contains(pan), "{order}: clear PAN printed");
            }
            println!(
                "{order:<22} {}     {scp}     {:>5}        {:>5}          {:>5}",
                j["chip"]["model"],
                j["chip"]["apdus"],
                j["chip"]["readBackApdus"],
                wall.as_millis()
            );
            cards += 1;
            total += wall;
        }
        let records = std::fs::read_to_string(data_dir.join("records.jsonl")).expect("records");
        assert_eq!(records.lines().count(), DEMO.len());
        for (_, _, _, pan) in DEMO {
            assert!(!records.contains(pan), "clear PAN in the records log");
        }
    }
    println!(
        "{cards} cards personalized, verified and encoded; {:?} per card (process start, chip, read-back, stripe)",
        total / cards
    );

    // Faults: each fails at its step, the order is marked failed with that step, and a retry on
    // a fresh card works.
    let (file, order, profile, _) = DEMO[2];
    let (card_args, override_args) = card_stock(profile, "scp02");
    let faults: [(&str, &str, &str); 4] = [
        // sim-card answers as its T=0 ATR says (61xx, then GET RESPONSE): SELECT is commands 1-2,
        // INITIALIZE UPDATE 3-4, EXTERNAL AUTHENTICATE 5.
        ("status-at:5:6982", "EXTERNAL AUTHENTICATE", "6982"),
        ("garbage-at:3", "INITIALIZE UPDATE", "not a response APDU"),
        ("remove-at:9", "STORE DATA", "removed"),
        ("status-at:12:6A80", "STORE DATA", "6A80"),
    ];
    for (i, (fault, step, says)) in faults.iter().enumerate() {
        let data_dir = root.join(format!("fault-{i}"));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let card = sim(&mut cleanup, &card_args, &[fault]);
        let run = personalize(&data_dir, &reader0, file, order, &override_args);
        stop(&mut cleanup, card);
        assert_eq!(run.code, Some(4), "{fault}: {}", run.stdout);
        assert_eq!(run.json["outcome"], "failed");
        assert_eq!(run.json["failedStep"], *step, "{fault}");
        assert!(
            run.json["error"].as_str().expect("error").contains(says),
            "{fault}: {}",
            run.json["error"]
        );
        let (status, reason) = status_of(&data_dir, order);
        assert_eq!(status, "CARD_PROD_FAILED", "{fault}");
        assert!(reason.expect("reason").starts_with(step), "{fault}");
        // A fresh card: the same order goes through.
        let card = sim(&mut cleanup, &card_args, &[]);
        let run = personalize(&data_dir, &reader0, file, order, &override_args);
        stop(&mut cleanup, card);
        assert_eq!(run.code, Some(0), "retry after {fault}: {}", run.stdout);
        assert_eq!(status_of(&data_dir, order).0, "CARD_PROD_DONE");
        println!("fault {fault:<18} -> failed at {step}; retry on a fresh card: done");
    }

    // The stripe fails after the chip succeeded: both outcomes are recorded, the order fails at
    // the stripe step, and a retry with a working encoder (and a fresh card) goes through.
    let broken = start_encoder(&mut cleanup, "write-error");
    let data_dir = root.join("stripe-fault");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let mut extra = override_args.clone();
    extra.extend(["--encoder", broken.as_str(), "--swipe-timeout", "10"]);
    let card = sim(&mut cleanup, &card_args, &[]);
    let run = personalize(&data_dir, &reader0, file, order, &extra);
    stop(&mut cleanup, card);
    assert_eq!(run.code, Some(4), "{}", run.stdout);
    let step = run.json["failedStep"].as_str().expect("step");
    assert!(step.starts_with("stripe"), "{step}");
    let checks = run.json["chip"]["readBack"]
        .as_array()
        .expect("chip recorded");
    assert!(checks.iter().all(|c| c["status"] != "fail"));
    let (status, reason) = status_of(&data_dir, order);
    assert_eq!(status, "CARD_PROD_FAILED");
    assert!(reason.expect("reason").starts_with("stripe"));
    let mut extra = override_args.clone();
    extra.extend(["--encoder", encoder.as_str(), "--swipe-timeout", "10"]);
    let card = sim(&mut cleanup, &card_args, &[]);
    let run = personalize(&data_dir, &reader0, file, order, &extra);
    stop(&mut cleanup, card);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    println!("stripe write error after the chip -> failed at {step}; retry: done");

    // An already personalized card refuses a second personalization (6985 to the first STORE
    // DATA): the card check stops before anything is written, exit 4, and the order is left as
    // it was (a tester's unapproved order: DATA_PREPARED, not FAILED). An operator may not
    // personalize an order nobody approved.
    let data_dir = root.join("second");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let card = sim(&mut cleanup, &card_args, &[]);
    let first = personalize(&data_dir, &reader0, file, order, &override_args);
    assert_eq!(first.code, Some(0), "{}", first.stdout);
    let (_, other, _, _) = DEMO[3];
    let second = personalize(&data_dir, &reader0, file, other, &override_args);
    stop(&mut cleanup, card);
    assert_eq!(second.code, Some(4));
    assert_eq!(second.json["failedStep"], "card check");
    let error = second.json["error"].as_str().expect("error");
    assert!(error.contains("6985"), "{error}");
    assert!(error.contains("insert a fresh card"), "{error}");
    let (status, reason) = status_of(&data_dir, other);
    assert_eq!(status, "DATA_PREPARED", "{reason:?}");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("card check: ")),
        "{reason:?}"
    );
    let out = support::persodesk_command::<&str>(&[], &[])
        .args([
            "personalize",
            file,
            "--order",
            DEMO[4].1,
            "--reader",
            &reader0,
            "--json",
        ])
        .args(["--role", "operator"])
        .env("PERSODESK_DATA_DIR", &data_dir)
        .output()
        .expect("personalize as operator");
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("operator refusal as JSON");
    assert_eq!(j["failedStep"], "authorization");
    assert!(
        j["error"]
            .as_str()
            .expect("error")
            .contains("approved orders only")
    );

    // A reader that is not there.
    let gone = personalize(
        &data_dir,
        "Virtual PCD 00 07",
        file,
        DEMO[4].1,
        &override_args,
    );
    assert_eq!(gone.code, Some(3));
    assert_eq!(gone.json["failedStep"], "connect");

    let _ = std::fs::remove_dir_all(&root);
    drop(cleanup);
}

/// The CA public key file `read-card --ca` takes, for the CA of `rid` in the demo key store.
fn demo_ca_file(dir: &Path, rid: &[u8], cleanup: &mut Cleanup) -> PathBuf {
    let store = persodesk::keys::SoftwareKeyStore::load(Path::new("assets/demo/keys.toml"))
        .expect("demo keys");
    let ca = store
        .ca_public_keys()
        .into_iter()
        .find(|k| k.rid.as_slice() == rid)
        .expect("a demo CA for the RID");
    write_file(
        dir,
        &format!(
            "persodesk-ca-{}-{}.toml",
            hex::encode(rid),
            std::process::id()
        ),
        &format!(
            "rid = \"{}\"\nindex = \"{:02X}\"\nmodulus = \"{}\"\nexponent = \"{}\"\n",
            hex::encode_upper(ca.rid),
            ca.index,
            hex::encode_upper(ca.key.modulus()),
            hex::encode_upper(ca.key.exponent().bytes())
        ),
        cleanup,
    )
}

/// Issue #12: every chip profile's demo card (Model 1 and Model 2), personalized by the CLI
/// through pcscd + vpcd on `sim-card`, then the same card (its state file) presented on the
/// contactless and on the contact interface and read by `persodesk read-card --interface ..
/// --expect`: every check passes, and the interface's own checks were made (PPSE, ODA, the
/// contactless fDDA/CDA signature, the ARQC per CVN with the demo IMK-AC, the DKI).
#[test]
fn every_profile_reads_on_both_interfaces_through_pcscd() {
    let Some(stack) = start_stack() else {
        return;
    };
    let Stack {
        mut cleanup,
        _lock,
        reader0,
        ..
    } = stack;
    let root = std::env::temp_dir().join(format!("persodesk-dual-stack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let sim = |cleanup: &mut Cleanup, profile: &str, state: &Path, interface: &str| {
        let state = state.to_str().expect("utf-8 temp path");
        let args = [
            "--profile",
            profile,
            "--interface",
            interface,
            "--state",
            state,
        ];
        insert_card(cleanup, &reader0, &args)
    };
    let pull = |cleanup: &mut Cleanup, index: usize| pull_card(cleanup, &reader0, index);
    let cards = [DEMO[0], DEMO[2], DEMO[5], DEMO[6], DEMO[7], DEMO[8]];
    for (n, (file, order, profile, pan)) in cards.into_iter().enumerate() {
        let state = root.join(format!("card-{n}.json"));
        let data_dir = root.join(format!("data-{n}"));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let card = sim(&mut cleanup, profile, &state, "contact");
        let run = personalize(&data_dir, &reader0, file, order, &[]);
        pull(&mut cleanup, card);
        assert_eq!(run.code, Some(0), "{order}: {}\n{}", run.stdout, run.stderr);
        let rid: &[u8] = if profile.starts_with("mchip") {
            &[0xA0, 0, 0, 0, 0x04]
        } else {
            &[0xA0, 0, 0, 0, 0x03]
        };
        let ca = demo_ca_file(&root, rid, &mut cleanup);
        for interface in ["contactless", "contact"] {
            let card = sim(&mut cleanup, profile, &state, interface);
            let out = support::persodesk_command::<&str>(&[], &[])
                .args(["read-card", "--reader", &reader0, "--interface", interface])
                .args(["--expect", file, "--order", order, "--json", "--ca"])
                .arg(&ca)
                .output()
                .expect("persodesk read-card");
            pull(&mut cleanup, card);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains(pan), "{order}: clear PAN printed");
            assert!(
                out.status.success(),
                "{order} {interface}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
            assert_eq!(j["passed"], true, "{order} {interface}");
            let checks = j["checks"].as_array().expect("checks");
            for c in checks {
                assert_ne!(c["status"], "fail", "{order} {interface}: {c}");
            }
            let passed = |name: &str| {
                checks.iter().any(|c| {
                    c["check"].as_str().is_some_and(|n| n.contains(name)) && c["status"] == "pass"
                })
            };
            let mut want = vec![
                "GET PROCESSING OPTIONS",
                "ARQC (9F26) per ",
                "IAD (9F10): DKI",
                "order: PAN (5A)",
                "ODA: issuer certificate",
            ];
            if interface == "contactless" {
                want.push("SELECT PPSE");
                match profile {
                    "mchip-advance-1.2.3" => want.push("CDA: signed dynamic data (9F4B)"),
                    "vis-1.6.3-vcps-2.2.4" => want.push("fDDA: SDAD (9F4B)"),
                    _ => {}
                }
            }
            if profile == "vis-1.5.4-vcps-2.1.3" && interface == "contactless" {
                // AIP 0020 asks for no ODA over contactless.
                want.retain(|w| *w != "ODA: issuer certificate");
            }
            for w in want {
                assert!(
                    passed(w),
                    "{order} {interface}: no passed check {w}: {checks:?}"
                );
            }
            println!(
                "{order:<20} {interface:<11} {} checks, all pass",
                checks.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    drop(cleanup);
}
