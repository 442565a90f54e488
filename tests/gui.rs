//! The workstation driven through its widgets (egui_kittest, by accessibility label; no GPU):
//! demo orders, masked preview with the chip data, Model choice, supervisor approval, operator and
//! tester rules, personalization on the in-process virtual card and the simulated encoder with
//! read-back, a second personalization refused by the card, cancel, failing cards, the
//! 100,000-order table, and the scrubbed log.

mod support;

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable as _;
use persodesk::domain::chip::ChipModel;
use persodesk::domain::status::Status;
use persodesk::gui::devices::{VirtualSlot, lock_reader};
use persodesk::gui::log::LogBuffer;
use persodesk::gui::orders::Filter;
use persodesk::gui::{App, AppConfig, Screen, demo_chip_profiles, demo_keys};
use persodesk::store::Store;

use support::TempDir;
use support::gui::{
    assert_done, cancel_spoiling_the_card, choose_on_devices, config, demo_signed_in, harness, has,
    last_failure, loaded, personalize_order, reason_of, select, show, sign_in, signed_in,
    start_with_nobody_swiping, status_of, wait,
};

#[test]
fn supervisor_approves_then_operator_personalizes_on_the_simulated_encoder() {
    let dir = TempDir::new("flow");
    let mut h = role_choice(&dir);
    // The role choice comes first.
    assert!(h.query_by_label("Work as operator").is_some());
    sign_in(&mut h, "supervisor");
    loaded(&mut h);
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::DataPrepared);

    let row = select(&mut h, "DEMO-MC-0001");
    // Masked PAN and masked tracks; the clear PAN appears nowhere.
    assert!(has(&h, "541333******2345"));
    assert!(has(&h, "%B541333******2345^DOE/ALICE^2906"));
    assert!(has(&h, ";541333******2345=2906"));
    assert!(!has(&h, "5413330089012345"));
    assert!(!has(&h, "123000000"), "CVV shown");

    // Model choice: the product has a chip profile (Model 1); the order has no tlvData, so
    // Model 2 is disabled and clicking it changes nothing.
    assert_eq!(h.state().rows[row].model, Some(ChipModel::Model1));
    h.get_by_role_and_label(egui::accesskit::Role::RadioButton, "Model 2")
        .click();
    h.step();
    h.step();
    assert_eq!(h.state().rows[row].model, Some(ChipModel::Model1));
    // The chip data, Model 1 from the product's chip profile, masked per tag.
    assert!(has(
        &h,
        "Chip data: Model 1 (mchip-advance-1.2.3), AID A0000000041010"
    ));
    assert!(has(&h, "DGI 0201"));
    // Key DGIs by KCV only; the PIN block never.
    assert!(has(&h, "ICC master key KCVs: MK-AC "));
    assert!(has(
        &h,
        "DGI 8010  Reference PIN block  (8 bytes, encrypted)"
    ));
    assert!(has(&h, "ODA: CDA with CA A000000004 index E1"));

    // Approve.
    h.get_by_label("Approve").click();
    h.step();
    h.step();
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::Ready);
    assert!(has(&h, "CARD_PROD_READY"));
    // A supervisor does not personalize.
    assert!(h.query_by_label("Personalize this card").is_none());

    // The operator personalizes the approved order.
    sign_in(&mut h, "operator");
    let row = select(&mut h, "DEMO-MC-0001");
    let expected_t2 = h
        .state()
        .preview
        .prepared
        .as_ref()
        .and_then(|p| p.data.tracks.track2.as_ref().map(|t| t.body().to_string()))
        .expect("track 2");
    h.get_by_label("Personalize this card").click();
    h.step();
    assert_eq!(h.state().screen, Screen::Personalize);
    wait(&mut h, "the personalization", |a| !a.perso.is_running());
    assert_done(&h, "DEMO-MC-0001");
    assert!(
        h.query_by_label("Order DEMO-MC-0001: CARD_PROD_DONE")
            .is_some()
    );
    // Chip first (STORE DATA of every DGI), read back as a terminal and checked, then the stripe.
    assert!(has(&h, "read-back passed"), "{:?}", h.state().perso.last);
    assert!(has(&h, "PASS  order: PAN (5A)"));
    assert!(has(&h, "PASS  ARQC (9F26) per mc-cvn20 with imk-ac #1"));
    assert!(
        has(&h, "tracks 1, 2, 3 written and verified"),
        "{:?}",
        h.state()
            .perso
            .last
            .as_ref()
            .map(|f| f.result.as_ref().map(|r| &r.summary))
    );
    // The virtual card holds the personalized application for this order.
    {
        let vr = h
            .state()
            .devices
            .virtual_reader
            .clone()
            .expect("virtual reader");
        let r = lock_reader(&vr);
        let VirtualSlot::Card(c) = &r.slot else {
            panic!("no card in the virtual reader: {:?}", r.slot);
        };
        assert_eq!(c.order.as_deref(), Some("DEMO-MC-0001"));
        assert_eq!(c.profile, "mchip-advance-1.2.3");
        let app = c.card.application().expect("personalized");
        assert_eq!(app.aid, [0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10]);
        assert!(app.dgis.contains_key(&0x0201));
    }
    // The transcript is kept, with status words and no data.
    let transcript = h
        .state()
        .perso
        .last
        .as_ref()
        .and_then(|f| f.result.as_ref().ok())
        .and_then(|r| r.transcript.clone())
        .expect("transcript");
    assert!(transcript.entries.iter().any(|e| e.step == "STORE DATA"));
    assert!(
        transcript
            .entries
            .iter()
            .all(|e| e.sw.as_deref() == Some("9000"))
    );
    // The simulated encoder holds what was prepared.
    let card = h.state().devices.sim.as_ref().expect("sim").card();
    assert_eq!(card.track(2).as_deref(), Some(expected_t2.as_str()));

    // Statuses, approvals and audit are in the store, with who did what.
    let store = Store::open(&dir.db()).expect("store");
    let st = store.state("DEMO-MC-0001").expect("read").expect("stored");
    assert_eq!(st.status, Status::Done);
    let approvals = store.approvals("DEMO-MC-0001").expect("approvals");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].user, "alice");
    let audit = store.audit_trail(50).expect("audit");
    let done = audit
        .iter()
        .find(|r| r.action == "perso-done")
        .expect("perso-done audited");
    assert_eq!(done.role, "operator");
    assert_eq!(done.order_id.as_deref(), Some("DEMO-MC-0001"));
    for r in &audit {
        assert!(!r.outcome.contains("5413330089012345"), "{r:?}");
    }
    let _ = row;
}

#[test]
fn operator_cannot_personalize_an_unapproved_order() {
    let (dir, mut h) = demo_signed_in("operator", "operator");
    let row = select(&mut h, "DEMO-VISA-0001");
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::DataPrepared);
    assert!(
        h.query_by_label("Not allowed: operators personalize approved orders only")
            .is_some()
    );
    // The button is disabled: clicking it, or the shortcut, starts nothing.
    h.get_by_label("Personalize this card").click();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::P);
    h.step();
    h.step();
    assert!(!h.state().perso.is_running());
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::DataPrepared);
    // The method refuses too (the job's role rules against the store, as on the command line),
    // and the refusal is audited as the command line audits it.
    let err = h.state_mut().personalize(row).expect_err("refused");
    assert!(err.contains("approved orders only"), "{err}");
    let store = Store::open(&dir.db()).expect("store");
    let audit = store.audit_trail(10).expect("audit");
    assert!(
        audit.iter().any(|r| r.action == "perso-refused"
            && r.order_id.as_deref() == Some("DEMO-VISA-0001")
            && r.outcome.contains("approved orders only")),
        "{audit:?}"
    );
    // And the operator cannot approve.
    assert!(h.query_by_label("Approve").is_none());
    assert!(h.state_mut().approve(row).is_err());
}

#[test]
fn tester_reveals_on_test_keys_and_personalizes_without_approval() {
    let dir = TempDir::new("tester");
    let mut h = role_choice(&dir);

    // A supervisor has no reveal.
    sign_in(&mut h, "supervisor");
    loaded(&mut h);
    select(&mut h, "DEMO-MC-0001");
    assert!(h.query_by_label("Reveal clear values").is_none());
    assert!(h.state_mut().set_reveal(true).is_err());

    sign_in(&mut h, "tester");
    select(&mut h, "DEMO-MC-0001");
    assert!(!has(&h, "5413330089012345"));
    h.get_by_label("Reveal clear values").click();
    h.step();
    h.step();
    assert!(h.state().preview.revealed);
    assert!(has(&h, "%B5413330089012345^DOE/ALICE^2906"));
    // The chip data too (PAN in 5A), but key and PIN DGIs stay hidden.
    assert!(has(
        &h,
        "CLEAR VALUES (test keys); key and PIN DGIs stay hidden"
    ));
    assert!(has(
        &h,
        "DGI 8010  Reference PIN block  (8 bytes, encrypted)  key/PIN material"
    ));
    h.get_by_label("Mask values").click();
    h.step();
    h.step();
    assert!(!has(&h, "5413330089012345"));

    // Without approval, on test keys.
    assert!(
        h.query_by_label("Runs without approval (tester, test keys only).")
            .is_some()
    );
    h.get_by_label("Personalize this card").click();
    h.step();
    wait(&mut h, "the personalization", |a| !a.perso.is_running());
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::Done);
}

#[test]
fn a_failing_card_shows_the_failed_step() {
    let (_dir, mut h) = demo_signed_in("fail", "tester");
    h.get_by_label("Devices").click();
    h.step();
    h.step();
    h.get_by_label("Write error").click();
    h.step();
    h.step();
    h.get_by_label("Orders").click();
    h.step();
    h.step();
    select(&mut h, "DEMO-MC-0002");
    h.get_by_label("Personalize this card").click();
    h.step();
    wait(&mut h, "the personalization", |a| !a.perso.is_running());
    assert_eq!(
        status_of(&h, "DEMO-MC-0002"),
        Status::Failed,
        "{:?}",
        h.state().notice
    );
    assert!(
        h.query_by_label("Failed step: stripe write").is_some(),
        "{:?} {:?}",
        h.state().perso.last,
        h.state().screen
    );
    assert!(
        h.query_by_label("Order DEMO-MC-0002: CARD_PROD_FAILED")
            .is_some()
    );
    assert!(has(&h, "What to do:"));
    let reason = reason_of(&h, "DEMO-MC-0002");
    assert!(reason.starts_with("stripe write:"), "{reason}");
}

#[test]
fn model_1_and_model_2_show_their_chip_data() {
    let (_dir, mut h) = demo_signed_in("models", "supervisor");
    // A Model 2 demo order: the issuer's data is the default choice.
    let row = select(&mut h, "DEMO-MC-0001-M2");
    assert_eq!(h.state().rows[row].model, Some(ChipModel::Model2));
    assert!(has(&h, "Chip data: Model 2 (mchip-advance-1.2.3)"));
    assert!(has(
        &h,
        "Source: Model 2: issuer data under kek #1, MAC verified"
    ));
    assert!(!has(&h, "PIN generated"));
    assert!(has(&h, "DGI 9000"));
    // The PAN inside the records is masked.
    assert!(!has(&h, "5413330089012345"));

    // Model 1 computes the data from the chip profile instead (and generates a PIN).
    choose_model(&mut h, 1);
    assert_eq!(h.state().rows[row].model, Some(ChipModel::Model1));
    assert!(has(
        &h,
        "Chip data: Model 1 (mchip-advance-1.2.3), AID A0000000041010, PIN generated"
    ));
    assert!(!has(&h, "Chip data: Model 2"));
    assert!(!has(&h, "MAC verified"));
    assert!(!has(&h, "5413330089012345"));

    // And back.
    choose_model(&mut h, 2);
    assert!(has(
        &h,
        "Source: Model 2: issuer data under kek #1, MAC verified"
    ));
}

/// The app on the demo orders before anyone signs in (the role choice shown).
fn role_choice(dir: &TempDir) -> egui_kittest::Harness<'static, App> {
    let app = App::new(config(dir, true), LogBuffer::default()).expect("app");
    let mut h = harness(app);
    h.step();
    h
}

/// Loads the order file `file` and waits for its `rows` rows.
fn load_file(h: &mut egui_kittest::Harness<'_, App>, file: &std::path::Path, rows: usize) {
    h.state_mut()
        .load(persodesk::gui::worker::OrderSource::File(
            file.to_path_buf(),
        ));
    wait(h, "the file", |a| {
        a.loading.is_none() && a.rows.len() == rows
    });
}

/// Clicks the "Model `n`" choice of the selected order and waits for its chip preview.
fn choose_model(h: &mut egui_kittest::Harness<'_, App>, n: u8) {
    h.get_by_role_and_label(egui::accesskit::Role::RadioButton, &format!("Model {n}"))
        .click();
    wait(h, &format!("the Model {n} preview"), |a| {
        !a.preview.pending
            && a.preview
                .prepared
                .as_ref()
                .and_then(|p| p.data.chip.as_ref())
                .is_some_and(|c| c.model.number() == n)
    });
}

#[test]
fn a_personalized_virtual_card_refuses_a_second_personalization() {
    let (_dir, mut h) = demo_signed_in("second", "tester");
    personalize_order(&mut h, "DEMO-MC-0001");
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::Done);
    show(&mut h, "Devices");
    assert!(has(
        &h,
        "card present (personalized: order DEMO-MC-0001, mchip-advance-1.2.3)"
    ));

    // The same card again, for another order: the card answers 6985 to the first STORE DATA,
    // the card check refuses it and the order is left as it was (a tester's unapproved order:
    // DATA_PREPARED), not FAILED.
    show(&mut h, "Orders");
    personalize_order(&mut h, "DEMO-MC-0002");
    assert_eq!(status_of(&h, "DEMO-MC-0002"), Status::DataPrepared);
    assert!(
        h.query_by_label("Order DEMO-MC-0002: not started, the card was refused")
            .is_some()
    );
    let failure = last_failure(&h).expect("failed");
    assert!(failure.message.contains("6985"), "{failure:?}");
    assert_eq!(failure.step, persodesk::job::Step::CardCheck);
    assert!(has(&h, "Failed step: card check"));
    assert!(has(&h, "6985"));
    assert!(has(&h, "What to do: insert a fresh card"));
    let reason = reason_of(&h, "DEMO-MC-0002");
    assert!(reason.starts_with("card check: "), "{reason}");
    // The stripe was not written for the failed chip.
    let sim = h.state().devices.sim.as_ref().expect("sim").card();
    assert_ne!(
        sim.track(1).as_deref().map(|t| t.contains("SMITH/JOHN")),
        Some(true)
    );

    // A fresh card, and the retry succeeds.
    show(&mut h, "Devices");
    h.get_by_label("Insert a fresh card").click();
    h.step();
    h.step();
    assert!(has(&h, "card present (fresh)"));
    show(&mut h, "Orders");
    personalize_order(&mut h, "DEMO-MC-0002");
    assert_done(&h, "DEMO-MC-0002");
}

#[test]
fn cancel_leaves_the_order_failed_not_done() {
    let (_dir, mut h) = demo_signed_in("cancel", "tester");
    start_with_nobody_swiping(&mut h, "DEMO-VISA-0001");
    wait(&mut h, "the stripe step", |a| {
        a.perso.is_running() && a.perso.hint.is_some()
    });
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::Ongoing);
    // The chip is written by now: Cancel asks first.
    cancel_spoiling_the_card(&mut h);
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::Failed);
    assert!(
        h.query_by_label("Order DEMO-VISA-0001: CARD_PROD_FAILED")
            .is_some()
    );
    let reason = reason_of(&h, "DEMO-VISA-0001");
    assert!(reason.contains("cancel"), "{reason}");
}

#[test]
fn the_cancel_transport_stops_before_the_next_apdu() {
    use persodesk::devices::transport::{CardTransport, TransportError, VirtualTransport};
    use persodesk::gui::devices::{CardFault, virtual_card_for};
    use persodesk::job::{CancelToken, CancelTransport};
    let profiles = demo_chip_profiles().expect("profiles");
    let keys = demo_keys().expect("keys");
    let profile = profiles.get("vis-1.6.3-vcps-2.2.4").expect("profile");
    let card = virtual_card_for(profile, &keys, CardFault::None).expect("card");
    let mut inner = VirtualTransport::new(card);
    let flag = CancelToken::new();
    let select_isd = [
        0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 0x01, 0x51, 0, 0, 0, 0x00,
    ];
    {
        let mut t = CancelTransport::new(&mut inner, &flag);
        let r = t.transmit_raw(&select_isd).expect("answer");
        assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
        flag.cancel();
        assert_eq!(t.transmit_raw(&select_isd), Err(TransportError::Cancelled));
    }
    // The refused command never reached the card.
    assert_eq!(inner.card.commands(), 1);
}

#[test]
fn a_card_fault_fails_the_card_at_its_step() {
    let (_dir, mut h) = demo_signed_in("cardfault", "tester");
    choose_on_devices(&mut h, "6A80 at the first STORE DATA");
    personalize_order(&mut h, "DEMO-US-0001");
    assert_eq!(status_of(&h, "DEMO-US-0001"), Status::Failed);
    assert!(
        has(&h, "Failed step: STORE DATA 1 of "),
        "{:?}",
        h.state().perso.last
    );
    assert!(has(&h, "6A80"));
}

#[test]
fn reader_choice_is_remembered_and_virtual_card_actions_follow_the_role() {
    use persodesk::domain::review::Role;
    use persodesk::gui::devices::{CardFault, ReaderChoice, VirtualSlot};
    assert_eq!(
        ReaderChoice::from_setting("virtual"),
        Some(ReaderChoice::Virtual)
    );
    // Older versions stored the bare PC/SC reader name.
    assert_eq!(
        ReaderChoice::from_setting("ACS ACR39U 00 00"),
        Some(ReaderChoice::Pcsc("ACS ACR39U 00 00".into()))
    );
    let c = ReaderChoice::Pcsc("Virtual PCD 00 00".into());
    assert_eq!(ReaderChoice::from_setting(&c.to_setting()), Some(c.clone()));
    assert_eq!(ReaderChoice::from_setting(""), None);

    let dir = TempDir::new("reader");
    {
        let mut app = App::new(config(&dir, false), LogBuffer::default()).expect("app");
        // The virtual card is the default reader, with a fresh card in it.
        assert_eq!(app.devices.reader, Some(ReaderChoice::Virtual));
        app.sign_in(Role::Operator);
        assert!(app.set_card_fault(CardFault::WrongCryptogram).is_err());
        app.select_reader(Some(c.clone()));
        let vr = app.devices.virtual_reader.clone().expect("virtual reader");
        lock_reader(&vr).slot = VirtualSlot::InUse;
        assert!(
            app.insert_fresh_card().is_err(),
            "a card in use is not swapped"
        );
        lock_reader(&vr).slot = VirtualSlot::Empty;
        app.insert_fresh_card().expect("fresh card");
        assert!(matches!(lock_reader(&vr).slot, VirtualSlot::Fresh));
        app.sign_in(Role::Tester);
        app.set_card_fault(CardFault::WrongCryptogram)
            .expect("tester sets a fault");
        assert_eq!(lock_reader(&vr).fault, CardFault::WrongCryptogram);
    }
    let app = App::new(config(&dir, false), LogBuffer::default()).expect("app");
    assert_eq!(app.devices.reader, Some(c));
}

#[test]
fn the_table_lays_out_only_visible_rows_of_100000_and_filters() {
    let dir = TempDir::new("bulk");
    let mut h = signed_in(&dir, "supervisor", false);
    h.state_mut().rows = (0..100_000)
        .map(|i| {
            support::gui::bulk_row(i, |i| {
                if i.is_multiple_of(2) {
                    Status::DataPrepared
                } else {
                    Status::DataException
                }
            })
        })
        .collect();
    h.state_mut().set_filter(Filter::default());
    h.step();
    let start = Instant::now();
    for _ in 0..5 {
        h.step();
    }
    let per_frame = start.elapsed() / 5;
    let shown = h.query_all_by_label_contains("BULK-").count();
    assert!(shown > 5 && shown < 200, "{shown} rows laid out");
    // Generous bound for a debug build on a busy machine; a full layout of 100,000 rows takes
    // far longer.
    assert!(
        per_frame < Duration::from_millis(1500),
        "{per_frame:?} per frame"
    );
    assert!(h.query_by_label("100000 of 100000 orders").is_some());

    // Text filter (typed into the labelled search field) and status filter.
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Search")
        .focus();
    h.step();
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Search")
        .type_text("bulk-09999");
    h.step();
    h.step();
    assert_eq!(h.state().visible_rows().len(), 10);
    assert!(h.query_by_label("10 of 100000 orders").is_some());
    h.state_mut().set_filter(Filter {
        status: Some(Status::DataException),
        text: String::new(),
    });
    assert_eq!(h.state().visible_rows().len(), 50_000);
}

#[test]
fn order_files_load_in_the_background_and_the_last_file_is_remembered() {
    let dir = TempDir::new("file");
    let file = dir.0.join("orders.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"cardId":"F-1","cardProductId":"DEMO_VISA_US","encryptedData":{"pan":"4761739001010010","exp":"2805","encodedName":"DOE/JANE","cvv1":"123"}}"#,
            "\n",
            r#"{"cardId":"F-2","cardProductId":"DEMO_VISA_US","encryptedData":{"pan":"4761739001010010","exp":"2813","encodedName":"DOE/JOHN","cvv1":"123"}}"#,
            "\n"
        ),
    )
    .expect("write");
    {
        let app = App::new(config(&dir, false), LogBuffer::default()).expect("app");
        let mut h = harness(app);
        h.step();
        sign_in(&mut h, "supervisor");
        load_file(&mut h, &file, 2);
        assert_eq!(status_of(&h, "F-1"), Status::DataPrepared);
        assert_eq!(status_of(&h, "F-2"), Status::DataException);
        select(&mut h, "F-2");
        // The finding names the field path and the rule.
        assert!(has(&h, "encryptedData.exp: month 13"));
        assert!(h.query_by_label("Approve").is_some());
        assert!(h.state_mut().approve(1).is_err());
    }
    // A new session remembers the file and the statuses.
    let app = App::new(config(&dir, false), LogBuffer::default()).expect("app");
    assert_eq!(app.last_file.as_deref(), Some(file.as_path()));
    let store = app.store().expect("store");
    assert_eq!(
        store.state("F-2").expect("read").map(|s| s.status),
        Some(Status::DataException)
    );
}

#[test]
fn the_log_layer_scrubs_events() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::registry().with(logs.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(
            pan = "5413330089012345",
            order = "X-1",
            "prepared for 4761739001010010"
        );
        tracing::warn!(track2 = "4761739001010010=2805", "oops");
    });
    let lines = logs.lines();
    assert_eq!(lines.len(), 2);
    let all: String = lines
        .iter()
        .map(|l| l.text.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("pan=<redacted>"), "{all}");
    assert!(all.contains("track2=<redacted>"), "{all}");
    assert!(all.contains("order=X-1"), "{all}");
    assert!(all.contains("prepared for 476173******0010"), "{all}");
    assert!(!all.contains("5413330089012345") && !all.contains("4761739001010010"));
}

#[test]
fn production_mode_shows_itself_and_never_reveals() {
    let dir = TempDir::new("production");
    let mut c = config(&dir, true);
    c.mode = persodesk::config::Mode::Production;
    // Issue 13, finding 2: roles come from the configuration; no tester in production.
    c.roles = Some(persodesk::domain::review::Roles {
        supervisor: vec!["alice".into()],
        tester: vec!["alice".into()],
        ..Default::default()
    });
    let app = App::new(c, LogBuffer::default()).expect("app");
    let mut h = harness(app);
    h.step();
    assert!(has(&h, "PRODUCTION"));
    assert!(!has(&h, "TEST MODE"));
    h.get_by_label("Work as tester").click();
    h.step();
    assert!(h.state().session.is_none(), "no tester in production");
    h.get_by_label("Work as operator").click();
    h.step();
    assert!(h.state().session.is_none(), "alice is no operator");
    sign_in(&mut h, "supervisor");
    loaded(&mut h);
    select(&mut h, "DEMO-MC-0001");
    assert!(h.query_by_label("Reveal clear values").is_none());
    assert!(h.state_mut().set_reveal(true).is_err());
    assert!(!h.state().preview.revealed);
    assert!(!has(&h, "5413330089012345"));
}

#[test]
fn production_needs_a_configured_key_store_without_test_keys() {
    use persodesk::config::{Config, Mode};
    let none = Config {
        mode: Mode::Production,
        keys: None,
        profiles: None,
        roles: Some(Default::default()),
        store: None,
        reveal_timeout: None,
    };
    let e = AppConfig::production(&none).expect_err("no key store");
    assert!(e.contains("names no key store"), "{e}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = Config {
        mode: Mode::Production,
        keys: Some(root.join("assets/demo/keys.toml")),
        profiles: Some(root.join("profiles")),
        roles: Some(Default::default()),
        store: None,
        reveal_timeout: None,
    };
    let e = AppConfig::production(&demo).expect_err("demo keys");
    assert!(
        e.contains("production refuses key stores holding test keys"),
        "{e}"
    );
}

#[test]
fn a_tampered_model_2_envelope_is_a_data_exception_at_load() {
    let dir = TempDir::new("m2");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("assets/demo/orders-model2.json")).expect("m2");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cards = doc["cards"].as_array_mut().expect("cards");
    let mac = cards[1]["encryptedData"]["tlvData"]["mac"]
        .as_str()
        .expect("mac")
        .to_string();
    // One hex digit of the MAC changed.
    let flipped = if mac.starts_with('0') { "1" } else { "0" };
    cards[1]["encryptedData"]["tlvData"]["mac"] =
        serde_json::json!(format!("{flipped}{}", &mac[1..]));
    let file = dir.0.join("orders-model2.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let mut h = signed_in(&dir, "supervisor", false);
    load_file(&mut h, &file, 3);
    assert_eq!(status_of(&h, "DEMO-MC-0001-M2"), Status::DataPrepared);
    assert_eq!(status_of(&h, "DEMO-VISA-0001-M2"), Status::DataException);
    let row = h
        .state()
        .rows
        .iter()
        .find(|r| r.id == "DEMO-VISA-0001-M2")
        .expect("row");
    let reason = row
        .errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(
        reason
            .iter()
            .any(|r| r.contains("tlvData: mac: verification failed")),
        "{reason:?}"
    );
}

/// Issue 13, finding 3: a decision stands until a new decision. Reloading the file keeps a
/// rejected order rejected; switching the chip model of an approved order withdraws the
/// approval; both are in the audit trail.
#[test]
fn decisions_survive_a_reload_and_a_model_change_withdraws_the_approval() {
    let (dir, mut h) = demo_signed_in("decisions", "supervisor");
    let row = select(&mut h, "DEMO-VISA-0001");
    h.state_mut().reject(row, "name misspelt").expect("reject");
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::DataException);
    let row = select(&mut h, "DEMO-MC-0001-M2");
    assert_eq!(h.state().rows[row].model, Some(ChipModel::Model2));
    h.state_mut().approve(row).expect("approve");
    assert_eq!(status_of(&h, "DEMO-MC-0001-M2"), Status::Ready);

    // Model 1 instead of the reviewed Model 2 data: the approval is withdrawn.
    h.state_mut()
        .set_model(row, ChipModel::Model1)
        .expect("model 1");
    assert_eq!(status_of(&h, "DEMO-MC-0001-M2"), Status::DataPrepared);
    assert!(!h.state().rows[row].approved);

    // Reload: the rejection stands.
    h.state_mut()
        .load(persodesk::gui::worker::OrderSource::Demo);
    h.step();
    loaded(&mut h);
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::DataException);
    let store = Store::open(&dir.db()).expect("store");
    let trail = store.audit_trail(50).expect("trail");
    assert!(
        trail
            .iter()
            .any(|r| r.action == "approval-withdrawn" && r.outcome.contains("chip model changed"))
    );
    assert!(
        trail
            .iter()
            .any(|r| r.action == "approved" && r.outcome.contains("reviewed model=2 digest="))
    );
}

/// The window honours the tester's secure channel override as the command line honours `--scp`
/// and `--kmc-index`: an operator cannot set one; a tester's SCP03 override against the demo
/// Visa card stock (SCP02 i=55) fails the card in the chip session, and the same order without
/// the override goes through on a fresh card.
#[test]
fn the_channel_override_is_a_testers_and_the_job_uses_it() {
    use persodesk::domain::gp::session::Protocol;
    use persodesk::job::ChannelOverride;
    let scp03 = ChannelOverride {
        protocol: Some(Protocol::Scp03 { i: 0x70 }),
        kmc_index: Some(2),
    };
    let (_dir, mut h) = demo_signed_in("override", "operator");
    let e = h
        .state_mut()
        .set_channel_override(scp03)
        .expect_err("operator");
    assert!(e.contains("testers only"), "{e}");
    sign_in(&mut h, "tester");
    h.state_mut().set_channel_override(scp03).expect("tester");
    assert_eq!(h.state().channel_override(), scp03);
    personalize_order(&mut h, "DEMO-VISA-0001");
    // The card reports SCP02: the card check refuses it before anything is written.
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::DataPrepared);
    let failure = last_failure(&h).expect("failed");
    assert_eq!(failure.step, persodesk::job::Step::CardCheck, "{failure:?}");
    assert!(
        failure.message.contains("secure channel differs"),
        "{failure:?}"
    );
    assert!(has(&h, "What to do:"));

    h.state_mut()
        .set_channel_override(ChannelOverride::default())
        .expect("cleared");
    h.state_mut().insert_fresh_card().expect("fresh card");
    show(&mut h, "Orders");
    personalize_order(&mut h, "DEMO-VISA-0001");
    assert_done(&h, "DEMO-VISA-0001");
}
