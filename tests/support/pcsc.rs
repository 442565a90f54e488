//! pcscd with the vsmartcard-vpcd readers for one test at a time (a machine-wide lock file), the
//! processes a test starts (`persodesk sim-card`, `persodesk sim-encoder`), stopped by PID on drop,
//! and the virtual card stock of each demo chip profile.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use persodesk::devices::pcsc::{PcscTransport, ProtocolChoice, list_readers};

pub const PCSCD: &str = "/usr/sbin/pcscd";
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
pub const READER0: &str = "Virtual PCD 00 00";
pub const READER1: &str = "Virtual PCD 00 01";
/// Kills the processes it holds (by PID) and removes its files when dropped.
#[derive(Default)]
pub struct Cleanup {
    /// Processes, by name.
    pub children: Vec<(String, Child)>,
    /// Files.
    pub files: Vec<PathBuf>,
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

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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

/// pcscd with the vpcd readers, held for one test: its processes stop (and the machine-wide lock
/// is released) when it is dropped.
pub struct Stack {
    /// Processes and files to clean up.
    pub cleanup: Cleanup,
    /// The machine-wide pcscd lock.
    pub _lock: File,
    /// `Virtual PCD 00 00`.
    pub reader0: String,
    /// `Virtual PCD 00 01`.
    pub reader1: String,
}

/// Starts pcscd, or returns `None` (with a loud message) when pcscd or vpcd is not installed.
pub fn start_stack() -> Option<Stack> {
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
        return None;
    }
    // One pcscd per machine: serialize with any other test (binary) that starts one.
    let lock = File::create(std::env::temp_dir().join("persodesk-pcscd.lock")).expect("lock file");
    lock.lock().expect("lock");
    let mut cleanup = Cleanup::default();
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
    let find = |prefix: &str| {
        readers
            .iter()
            .find(|n| n.starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("reader {prefix}"))
    };
    Some(Stack {
        reader0: find(READER0),
        reader1: find(READER1),
        cleanup,
        _lock: lock,
    })
}

pub fn spawn(cleanup: &mut Cleanup, name: &str, cmd: &mut Command) -> usize {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    cleanup.children.push((name.to_string(), child));
    cleanup.children.len() - 1
}

pub fn stop(cleanup: &mut Cleanup, index: usize) {
    let (_, mut child) = cleanup.children.remove(index);
    let _ = child.kill();
    let _ = child.wait();
}

/// Inserts a card: starts `persodesk sim-card --vpcd 127.0.0.1:35963 <args>` and waits until
/// `reader` sees it. Returns its index in `cleanup` (for [`pull_card`]).
pub fn insert_card(cleanup: &mut Cleanup, reader: &str, args: &[&str]) -> usize {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_persodesk"));
    cmd.args(["sim-card", "--vpcd", "127.0.0.1:35963"])
        .args(args);
    let i = spawn(cleanup, "persodesk sim-card", &mut cmd);
    wait_for("the virtual card", Duration::from_secs(20), || {
        PcscTransport::connect(reader, ProtocolChoice::Any).ok()
    });
    i
}

/// Pulls the card out (stops the `sim-card` at `index`) and waits until `reader` is empty, so
/// that the next card goes into an empty reader.
pub fn pull_card(cleanup: &mut Cleanup, reader: &str, index: usize) {
    stop(cleanup, index);
    wait_for("the reader to be empty", Duration::from_secs(20), || {
        PcscTransport::connect(reader, ProtocolChoice::Any)
            .is_err()
            .then_some(())
    });
}

/// The virtual card stock a chip profile's cards are made of, over `scp` (`scp02` or `scp03`):
/// `sim-card` arguments and the `personalize` override that matches them.
pub fn card_stock(profile: &str, scp: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    let cvn = match profile {
        "mchip-advance-1.2.3" => "mc-cvn20",
        "vis-1.5.4-vcps-2.1.3" => "visa-cvn10",
        _ => "visa-cvn18",
    };
    let card = |v: &[&'static str]| {
        let mut a = v.to_vec();
        a.extend(["--cvn", cvn]);
        a
    };
    match (scp, profile) {
        ("scp03", _) => (
            card(&[
                "--scp",
                "scp03",
                "--i",
                "70",
                "--kmc-index",
                "2",
                "--diversification",
                "kdf3",
            ]),
            vec!["--scp", "scp03:70", "--kmc-index", "2"],
        ),
        (_, "vis-1.5.4-vcps-2.1.3") => (
            card(&["--scp", "scp02", "--i", "15", "--diversification", "visa2"]),
            vec!["--scp", "scp02:15", "--kmc-index", "1"],
        ),
        _ => (
            card(&["--scp", "scp02", "--i", "55", "--diversification", "emv"]),
            vec!["--scp", "scp02:55", "--kmc-index", "1"],
        ),
    }
}

/// Starts `persodesk sim-encoder` and returns its device path.
pub fn start_encoder(cleanup: &mut Cleanup, fail: &str) -> String {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_persodesk"))
        .args(["sim-encoder", "--swipe-delay-ms", "5", "--fail", fail])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start persodesk sim-encoder");
    let stdout = child.stdout.take().expect("stdout");
    cleanup
        .children
        .push(("persodesk sim-encoder".into(), child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("sim-encoder prints its device path");
    first
        .strip_prefix("encoder device: ")
        .expect("device line")
        .to_string()
}

/// Every demo chip order: file, order id, chip profile and PAN (to check it is never printed).
pub const DEMO: [(&str, &str, &str, &str); 9] = [
    (
        "assets/demo/orders.json",
        "DEMO-MC-0001",
        "mchip-advance-1.2.3",
        "5413330089012345",
    ),
    (
        "assets/demo/orders.json",
        "DEMO-MC-0002",
        "mchip-advance-1.2.3",
        "5413330089012345",
    ),
    (
        "assets/demo/orders.json",
        "DEMO-VISA-0001",
        "vis-1.6.3-vcps-2.2.4",
        "4761739001010010",
    ),
    (
        "assets/demo/orders.json",
        "DEMO-VISA-0002",
        "vis-1.6.3-vcps-2.2.4",
        "4761739001010010",
    ),
    (
        "assets/demo/orders.json",
        "DEMO-VISA-0003",
        "vis-1.6.3-vcps-2.2.4",
        "4761739001010010",
    ),
    (
        "assets/demo/orders.json",
        "DEMO-US-0001",
        "vis-1.5.4-vcps-2.1.3",
        "4761739001010010",
    ),
    (
        "assets/demo/orders-model2.json",
        "DEMO-MC-0001-M2",
        "mchip-advance-1.2.3",
        "5413330089012345",
    ),
    (
        "assets/demo/orders-model2.json",
        "DEMO-VISA-0001-M2",
        "vis-1.6.3-vcps-2.2.4",
        "4761739001010010",
    ),
    (
        "assets/demo/orders-model2.json",
        "DEMO-US-0001-M2",
        "vis-1.5.4-vcps-2.1.3",
        "4761739001010010",
    ),
];
