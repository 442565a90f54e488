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

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persodesk::devices::pcsc::{PcscTransport, ProtocolChoice, list_readers};
use persodesk::devices::transport::exchange;
use persodesk::domain::emv_keys::{Cvn, DesKey16, MkdOption};
use persodesk::domain::gp::kdf::Diversification;
use persodesk::domain::gp::session::{Aid, CardKeys, Protocol};
use persodesk::domain::gp::{SecretKey, SecurityLevel};
use persodesk::domain::readback::{Outcome, ReadBackSession, ReadStep, TerminalData, verify_arqc};
use persodesk::perso::{ChannelOptions, personalize_dgis};
use persodesk::sim::card::channel::{CardKeySource, CardProtocol, KmcMethod};
use persodesk::sim::card::{CardConfig, VirtualCard};
use zeroize::Zeroizing;

const PCSCD: &str = "/usr/sbin/pcscd";
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
const READER0: &str = "Virtual PCD 00 00";
const READER1: &str = "Virtual PCD 00 01";
/// The demo key store's KMC (kmc #1, TDES, a test key).
const DEMO_KMC: &str = "404142434445464748494A4B4C4D4E4F";
const AES_KMC: &str = "000102030405060708090A0B0C0D0E0F";

/// Kills the processes it holds (by PID) and removes its files when dropped.
#[derive(Default)]
struct Cleanup {
    children: Vec<(String, Child)>,
    files: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (name, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("stopped {name} (pid {})", child.id());
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminal() -> TerminalData {
    TerminalData {
        un: [0x01, 0x23, 0x45, 0x67],
        date: [0x25, 0x06, 0x15],
        amount: [0, 0, 0, 0, 0x10, 0x00],
        country: [0x08, 0x40],
    }
}

fn perso_and_verify(reader: &str, protocol: Protocol, level: SecurityLevel, keys: CardKeys) {
    let mut transport = wait_for(
        &format!("a card in {reader}"),
        Duration::from_secs(20),
        || PcscTransport::connect(reader, ProtocolChoice::T0).ok(),
    );
    let atr = transport.atr().expect("atr");
    assert_eq!(atr.first(), Some(&0x3B), "ATR");
    let aid = Aid::new(&support::AID).expect("aid");
    let options = ChannelOptions {
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
        terminal(),
        Some(support::ca_public()),
        vec![support::AID.to_vec()],
    );
    let mut read_apdus = 0;
    let rb = loop {
        let x = exchange(&mut transport, &command).expect("read-back exchange");
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
    if !Path::new(PCSCD).exists() || !Path::new(VPCD_DRIVER).exists() {
        eprintln!();
        eprintln!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        eprintln!(
            "!!! SKIPPED: pcscd / vsmartcard-vpcd are not installed (run bash .ci/setup)   !!!"
        );
        eprintln!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        return;
    }
    // One pcscd per machine: serialize with any other test binary that starts one.
    let lock = File::create(std::env::temp_dir().join("persodesk-pcscd.lock")).expect("lock file");
    lock.lock().expect("lock");
    let mut cleanup = Cleanup::default();
    let dir = std::env::temp_dir();
    let tag = std::process::id();

    let pcscd = Command::new(PCSCD)
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pcscd");
    cleanup.children.push(("pcscd".into(), pcscd));
    wait_for(
        "pcscd to list the vpcd readers",
        Duration::from_secs(15),
        || {
            list_readers()
                .ok()
                .filter(|r| r.iter().any(|n| n.starts_with(READER0)))
        },
    );
    let readers = list_readers().expect("readers");
    let reader0 = readers
        .iter()
        .find(|n| n.starts_with(READER0))
        .cloned()
        .expect("reader 0");
    let reader1 = readers
        .iter()
        .find(|n| n.starts_with(READER1))
        .cloned()
        .expect("reader 1");

    // `persodesk readers` sees them.
    let out = Command::new(env!("CARGO_BIN_EXE_persodesk"))
        .arg("readers")
        .output()
        .expect("persodesk readers");
    assert!(String::from_utf8_lossy(&out.stdout).contains(READER0));

    // SCP02 i=55, C-MAC + C-DEC, through `persodesk sim-card` with the demo KMC.
    let state = dir.join(format!("persodesk-sim-{tag}.json"));
    cleanup.files.push(state.clone());
    let sim = Command::new(env!("CARGO_BIN_EXE_persodesk"))
        .args([
            "sim-card",
            "--vpcd",
            "127.0.0.1:35963",
            "--keys",
            "assets/demo/keys.toml",
        ])
        .args(["--scp", "scp02", "--i", "55", "--state"])
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start persodesk sim-card");
    cleanup.children.push(("persodesk sim-card".into(), sim));
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
    let out = Command::new(env!("CARGO_BIN_EXE_persodesk"))
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
