//! Issue #18, the operator's workstation, part 1 (egui_kittest, by role and label): the card
//! check before anything is written, the confirmation a cancel needs once the chip is written,
//! the swipe prompt and the bad swipes, the production counter, the per-DGI list, the copyable
//! masked transcript, the encoder's last masked tracks, the tester's channel override widget and
//! DGIs in hex in the log.

mod support;

use egui_kittest::kittest::Queryable as _;
use persodesk::domain::gp::session::Protocol;
use persodesk::domain::status::Status;
use persodesk::gui::log::LogBuffer;
use persodesk::job::{CHIP_PARTLY_WRITTEN, Step};

use support::TempDir;
use support::gui::{
    assert_done, cancel_spoiling_the_card, choose_on_devices, demo_signed_in, has, last_failure,
    personalize_order, reason_of, select, show, sign_in, signed_in, start_with_nobody_swiping,
    status_of, wait,
};

fn approve(h: &mut egui_kittest::Harness<'_, persodesk::gui::App>, id: &str) {
    select(h, id);
    h.get_by_label("Approve").click();
    h.step();
    h.step();
    assert_eq!(status_of(h, id), Status::Ready);
}

/// An approved order on a card that is already personalized: the card check refuses the card,
/// the order stays CARD_PROD_READY (not FAILED), the advice is to insert a fresh card; the
/// status bar counts today's production; the first run's DGIs stay listed with PASS, its
/// transcript can be copied (masked), and the encoder panel shows the masked tracks written.
#[test]
fn a_personalized_card_is_refused_and_the_approved_order_stays_ready() {
    let (dir, mut h) = demo_signed_in("cardcheck", "supervisor");
    approve(&mut h, "DEMO-MC-0001");
    approve(&mut h, "DEMO-MC-0002");
    sign_in(&mut h, "operator");
    personalize_order(&mut h, "DEMO-MC-0001");
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::Done);
    // The per-DGI list stays after completion, every DGI in hex with PASS.
    assert!(has(&h, "DGIs stored ("));
    assert!(h.query_by_label("DGI 0201").is_some());
    assert!(h.query_all_by_label("PASS").count() >= 10);
    assert_eq!(h.query_all_by_label("FAIL").count(), 0);
    let dgis = &h.state().perso.progress.dgis;
    assert!(dgis.iter().all(|l| l.passed == Some(true)), "{dgis:?}");
    // The transcript is copyable, and what is copied is the masked one.
    h.get_by_label("Copy transcript").click();
    h.step();
    let copied: Vec<String> = h
        .output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let text = copied.last().expect("copied");
    assert!(text.contains("84 E2 00 00 Lc="), "{text}");
    assert!(text.contains("DGI 0201"), "{text}");
    assert!(!text.contains("5413330089012345"), "{text}");
    // The encoder panel shows the last tracks written, masked.
    show(&mut h, "Devices");
    assert!(has(&h, "Last tracks written and verified (masked):"));
    assert!(has(&h, "%B541333******2345^DOE/ALICE^2906"));
    assert!(!has(&h, "5413330089012345"));

    // The same card for the second approved order.
    show(&mut h, "Orders");
    personalize_order(&mut h, "DEMO-MC-0002");
    assert_eq!(status_of(&h, "DEMO-MC-0002"), Status::Ready);
    let f = last_failure(&h).expect("refused");
    assert_eq!(f.step, Step::CardCheck);
    assert!(f.not_started);
    assert!(has(
        &h,
        "Order DEMO-MC-0002: not started, the card was refused"
    ));
    assert!(has(&h, "What to do: insert a fresh card"));
    let store = persodesk::store::Store::open(&dir.db()).expect("store");
    let st = store.state("DEMO-MC-0002").expect("read").expect("stored");
    assert_eq!(st.status, Status::Ready);
    let refused = store
        .audit_trail(100)
        .expect("audit")
        .into_iter()
        .find(|r| r.order_id.as_deref() == Some("DEMO-MC-0002"))
        .expect("audited");
    assert_eq!(refused.action, "perso-refused");
    assert!(refused.outcome.contains("card check"), "{refused:?}");

    // The counter: one done today, none failed, one approved order waiting.
    wait(&mut h, "the counter", |a| {
        a.counter
            .as_ref()
            .is_some_and(|c| c.done == 1 && c.waiting == 1)
    });
    assert!(has(&h, "today: 1 done · 0 failed · 1 waiting"));

    // A fresh card: done.
    show(&mut h, "Devices");
    h.get_by_label("Insert a fresh card").click();
    h.step();
    show(&mut h, "Orders");
    personalize_order(&mut h, "DEMO-MC-0002");
    assert_eq!(status_of(&h, "DEMO-MC-0002"), Status::Done);
}

/// Once a STORE DATA was sent, Cancel (and Esc) asks for confirmation; "Keep running" keeps the
/// run; confirming cancels it, the advice and the stored reason say the card is spoiled. While
/// the encoder waits, a large "Swipe the card now" prompt shows the seconds left.
#[test]
fn cancel_after_store_data_asks_first_and_says_the_card_is_spoiled() {
    let (_dir, mut h) = demo_signed_in("cancelconfirm", "tester");
    start_with_nobody_swiping(&mut h, "DEMO-VISA-0001");
    wait(&mut h, "the swipe", |a| {
        a.perso.is_running() && a.perso.progress.swipe.is_some()
    });
    assert!(has(&h, "Swipe the card now"));
    assert!(has(&h, "seconds left"));
    assert!(h.state().perso.progress.chip_written);
    // Esc asks, it does not cancel.
    h.key_press(egui::Key::Escape);
    // The modal's first frame only measures it.
    h.step();
    h.step();
    h.step();
    assert!(h.state().perso.confirm_cancel);
    assert!(has(&h, "Cancel this personalization?"));
    assert!(has(&h, CHIP_PARTLY_WRITTEN));
    h.get_by_label("Keep running").click();
    h.step();
    h.step();
    assert!(!h.state().perso.confirm_cancel);
    assert!(h.state().perso.is_running(), "still running");
    assert!(!has(&h, "Cancel this personalization?"));
    // The Cancel button asks too; confirming cancels.
    cancel_spoiling_the_card(&mut h);
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::Failed);
    assert!(has(&h, &format!("What to do: {CHIP_PARTLY_WRITTEN}")));
    let reason = reason_of(&h, "DEMO-VISA-0001");
    assert!(reason.contains(CHIP_PARTLY_WRITTEN), "{reason}");
}

/// A bad swipe that the encoder retries is shown (count and what failed), not silent.
#[test]
fn a_bad_swipe_retried_is_shown() {
    let (_dir, mut h) = demo_signed_in("badswipe", "tester");
    choose_on_devices(&mut h, "One bad swipe");
    personalize_order(&mut h, "DEMO-VISA-0001");
    assert_done(&h, "DEMO-VISA-0001");
    assert_eq!(h.state().perso.progress.bad_swipes, 1);
    assert!(has(&h, "Bad swipes retried: 1"));
    assert!(has(&h, "bad swipe, swipe the card again (status 39)"));
}

/// The secure channel override is a tester's widget on the Devices screen; an operator sees
/// that the chip profile decides and has no control.
#[test]
fn the_channel_override_widget_is_for_testers() {
    let (_dir, mut h) = demo_signed_in("overridewidget", "operator");
    show(&mut h, "Devices");
    assert!(has(&h, "overrides are for testers only"));
    assert!(h.query_by_label("SCP03 i=70").is_none());
    sign_in(&mut h, "tester");
    if h.state().screen != persodesk::gui::Screen::Devices {
        show(&mut h, "Devices");
    }
    h.get_by_label("SCP03 i=70").click();
    h.step();
    h.step();
    h.get_by_label("KMC index override").click();
    h.step();
    h.step();
    let o = h.state().channel_override();
    assert_eq!(o.protocol, Some(Protocol::Scp03 { i: 0x70 }));
    assert_eq!(o.kmc_index, Some(1));
    assert!(has(&h, "instead of the chip profile's"));
    h.get_by_label("Chip profile's").click();
    h.get_by_label("KMC index override").click();
    h.step();
    h.step();
    assert!(h.state().channel_override().is_empty());
}

/// The log writes DGI ids in hex, as everywhere else.
#[test]
fn the_log_writes_dgis_in_hex() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::registry().with(logs.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(dgi = 0x0101u16, len = 42, "STORE DATA");
    });
    let lines = logs.lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].text.contains("dgi=0101"), "{}", lines[0].text);
    assert!(lines[0].text.contains("len=42"), "{}", lines[0].text);
}

/// The counter per station: an order a station (`station run`) finished in the shared store
/// counts for that station, named in the counter's hover lines and counted in its label.
#[test]
fn the_counter_names_the_stations_that_worked_today() {
    use persodesk::domain::review::{Role, Session};
    use persodesk::domain::status::Event;
    use persodesk::store::queue::Form;
    use persodesk::store::{QueuedOrder, Store};

    let dir = TempDir::new("counter-stations");
    {
        let mut store = Store::open(&dir.db()).expect("store");
        let tina = Session {
            user: "tina".into(),
            role: Role::Tester,
        };
        let order = QueuedOrder {
            order_id: "ST-1".into(),
            request_key: "ST-1".into(),
            form: Form::Jwe,
            protected: "{\"cardId\":\"ST-1\",\"encryptedData\":\"eyJ.x.y.z\"}".into(),
        };
        store.enqueue(&tina, &[order]).expect("enqueue");
        let claim = store
            .claim(&tina, "station-a", 30, &|_| false)
            .expect("claim")
            .expect("claimable");
        store
            .record_preparation_by(&[("ST-1", None)], &tina)
            .expect("prepare");
        let started = Event::Started {
            approval_bypass: true,
        };
        store.apply("ST-1", &started, &tina).expect("start");
        store
            .finish_claim(&claim, &tina, &Event::Completed)
            .expect("finish");
    }
    let mut h = signed_in(&dir, "supervisor", false);
    wait(&mut h, "the per-station counter", |a| {
        a.counter.as_ref().is_some_and(|c| !c.stations.is_empty())
    });
    assert!(has(&h, "today: 1 done · 0 failed · 0 waiting · 1 station"));
    let lines = h.state().counter.as_ref().expect("counter").station_lines();
    assert_eq!(lines, ["station-a: 1 done · 0 failed"]);
}
