//! One flow, two front ends: the same fault run through `persodesk personalize` (the binary, over
//! pcscd with `persodesk sim-card` and `persodesk sim-encoder`) and through the window (egui_kittest,
//! the in-process virtual card and simulated encoder) leaves the same state in the store: status,
//! failure reason and the kinds of the order's audit records.
//!
//! The faults: the card answers `6300` (wrong host cryptogram) to EXTERNAL AUTHENTICATE, and the
//! encoder reports a write error after the chip succeeded. Both front ends run as a tester with
//! the same secure channel override (`--scp scp02:55 --kmc-index 1` and its window equivalent).
//! It needs pcscd and the vpcd driver, like `pcsc_stack`, and skips loudly without them.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use persodesk::devices::pcsc::{PcscTransport, ProtocolChoice};
use persodesk::domain::gp::session::Protocol;
use persodesk::gui::devices::CardFault;
use persodesk::job::ChannelOverride;
use persodesk::sim::encoder::SimFault;
use persodesk::store::Store;

use support::TempDir;
use support::gui::{personalize_and_wait, select, signed_in};
use support::pcsc::{Cleanup, card_stock, spawn, start_encoder, start_stack, stop, wait_for};

const FILE: &str = "assets/demo/orders.json";
const ORDER: &str = "DEMO-VISA-0001";
const PROFILE: &str = "vis-1.6.3-vcps-2.2.4";

/// What the store holds about the order after a run.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    status: String,
    reason: Option<String>,
    /// The actions of the order's audit records, oldest first.
    actions: Vec<String>,
}

fn held(db: &Path) -> Held {
    let store = Store::open(db).expect("store");
    let state = store.state(ORDER).expect("state").expect("order in store");
    let mut actions: Vec<String> = store
        .audit_trail(500)
        .expect("audit trail")
        .into_iter()
        .filter(|r| r.order_id.as_deref() == Some(ORDER))
        .map(|r| r.action)
        .collect();
    actions.reverse();
    Held {
        status: state.status.as_str().to_string(),
        reason: state.reason,
        actions,
    }
}

/// The fault, as each front end's simulator takes it.
struct Fault {
    /// `persodesk sim-card --fault` (its T=0 numbering: SELECT 1-2, INITIALIZE UPDATE 3-4,
    /// EXTERNAL AUTHENTICATE 5), if any.
    sim_card: Option<&'static str>,
    /// `persodesk sim-encoder --fail`.
    sim_encoder: &'static str,
    /// The window's virtual card (in-process: EXTERNAL AUTHENTICATE is command 3).
    card: CardFault,
    /// The window's simulated encoder.
    encoder: SimFault,
}

/// The command line: one `personalize` of the order on a fresh card of the profile's stock.
fn by_cli(cleanup: &mut Cleanup, reader: &str, fault: &Fault) -> Held {
    let dir = TempDir::new("one-flow-cli");
    let encoder = start_encoder(cleanup, fault.sim_encoder);
    let (card_args, overrides) = card_stock(PROFILE, "scp02");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_persodesk"));
    sim.args(["sim-card", "--vpcd", "127.0.0.1:35963"])
        .args(&card_args);
    if let Some(f) = fault.sim_card {
        sim.args(["--fault", f]);
    }
    let card = spawn(cleanup, "persodesk sim-card", &mut sim);
    wait_for("the virtual card", Duration::from_secs(20), || {
        PcscTransport::connect(reader, ProtocolChoice::Any).ok()
    });
    let mut args = vec![
        "personalize",
        FILE,
        "--order",
        ORDER,
        "--reader",
        reader,
        "--role",
        "tester",
        "--user",
        "alice",
        "--json",
        "--encoder",
        encoder.as_str(),
        "--swipe-timeout",
        "10",
    ];
    args.extend(overrides);
    let out = support::persodesk_env(&args, &[("PERSODESK_DATA_DIR", dir.0.as_os_str())]);
    stop(cleanup, card);
    wait_for("the reader to be empty", Duration::from_secs(20), || {
        PcscTransport::connect(reader, ProtocolChoice::Any)
            .is_err()
            .then_some(())
    });
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    held(&dir.db())
}

/// The window: a tester personalizes the order on the virtual card and the simulated encoder.
fn by_window(fault: &Fault) -> Held {
    let dir = TempDir::new("one-flow-gui");
    {
        let mut h = signed_in(&dir, "tester", true);
        let app = h.state_mut();
        app.set_card_fault(fault.card).expect("card fault");
        app.set_sim_fault(fault.encoder).expect("encoder fault");
        app.set_channel_override(ChannelOverride {
            protocol: Some(Protocol::Scp02 { i: 0x55 }),
            kmc_index: Some(1),
        })
        .expect("tester override");
        select(&mut h, ORDER);
        personalize_and_wait(&mut h);
        assert!(h.state().perso.last.is_some(), "{:?}", h.state().notice);
    }
    held(&dir.db())
}

#[test]
fn one_fault_through_both_front_ends_leaves_the_same_store_state() {
    let Some(stack) = start_stack() else {
        return;
    };
    let mut cleanup = stack.cleanup;
    let faults = [
        (
            "6300 at EXTERNAL AUTHENTICATE",
            Fault {
                sim_card: Some("status-at:5:6300"),
                sim_encoder: "none",
                card: CardFault::WrongCryptogram,
                encoder: SimFault::None,
            },
            "EXTERNAL AUTHENTICATE: ",
        ),
        (
            "encoder write error",
            Fault {
                sim_card: None,
                sim_encoder: "write-error",
                card: CardFault::None,
                encoder: SimFault::WriteError,
            },
            "stripe write: ",
        ),
    ];
    for (name, fault, step) in &faults {
        let cli = by_cli(&mut cleanup, &stack.reader0, fault);
        let window = by_window(fault);
        assert_eq!(cli.status, "CARD_PROD_FAILED", "{name}: {cli:?}");
        assert!(
            cli.reason.as_deref().is_some_and(|r| r.starts_with(step)),
            "{name}: {cli:?}"
        );
        assert!(
            cli.actions.iter().any(|a| a == "perso-failed"),
            "{name}: {cli:?}"
        );
        assert_eq!(
            window, cli,
            "{name}: the window and the command line differ"
        );
        println!("{name}: both front ends stored {cli:?}");
    }
}
