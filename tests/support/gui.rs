//! The workstation under egui_kittest (no GPU): its test configuration (demo assets, the
//! simulated encoder, the virtual card, a store in a temporary directory), a signed-in harness,
//! and the steps every GUI test takes (wait for a worker, select an order, personalize).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use persodesk::domain::status::Status;
use persodesk::gui::log::LogBuffer;
use persodesk::gui::personalize::PersoFailure;
use persodesk::gui::{App, AppConfig, demo_catalog, demo_chip_profiles, demo_keys};
use persodesk::sim::encoder::SimConfig;

use super::TempDir;

/// The app in `dir` (store, simulated encoder, virtual card; demo orders when `load_demo`),
/// signed in as `role` (`operator`, `supervisor`, `tester`), the demo orders loaded when asked.
/// A fresh directory `name` and the window on the demo orders with `role` signed in.
pub fn demo_signed_in(name: &str, role: &str) -> (TempDir, Harness<'static, App>) {
    let dir = TempDir::new(name);
    let h = signed_in(&dir, role, true);
    (dir, h)
}

pub fn signed_in(dir: &TempDir, role: &str, load_demo: bool) -> Harness<'static, App> {
    let app = App::new(config(dir, load_demo), LogBuffer::default()).expect("app");
    let mut h = harness(app);
    h.step();
    sign_in(&mut h, role);
    if load_demo {
        loaded(&mut h);
    }
    h
}

pub fn config(dir: &TempDir, load_demo: bool) -> AppConfig {
    AppConfig {
        catalog: demo_catalog().expect("demo products"),
        chip_profiles: demo_chip_profiles().expect("demo chip profiles"),
        keys: Arc::new(demo_keys().expect("demo keys")),
        key_pool: false,
        virtual_card: true,
        virtual_card_keys: None,
        store: Some(persodesk::store::StoreLocation::Sqlite(dir.db())),
        live_every: Duration::from_millis(100),
        start_sim_encoder: true,
        sim: SimConfig {
            swipe_delay: Duration::from_millis(5),
            ..SimConfig::default()
        },
        load_demo,
        scan_devices: false,
        user: "alice".into(),
        swipe_timeout: Duration::from_secs(5),
        reveal_timeout: persodesk::gui::config::DEFAULT_REVEAL_TIMEOUT,
        open: None,
        mode: persodesk::config::Mode::Test,
        roles: None,
    }
}

pub fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.draw(ui), app)
}

/// Steps frames until `cond` holds; fails after 20 s (workers are threads, not frames).
pub fn wait(h: &mut Harness<'_, App>, what: &str, cond: impl Fn(&App) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h.state()) {
            h.step();
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}; notice: {:?}; selected {:?}, preview pending {}, ready {}, errors {:?}",
            h.state().notice,
            h.state().selected_row().map(|(_, r)| r.id.clone()),
            h.state().preview.pending,
            h.state().preview.prepared.is_some(),
            h.state().preview.errors
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Some node's label contains `text`.
pub fn has(h: &Harness<'_, App>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

pub fn sign_in(h: &mut Harness<'_, App>, role: &str) {
    if h.state().session.is_some() {
        h.get_by_label("Switch role").click();
        h.step();
        h.step();
    }
    h.get_by_label(&format!("Work as {role}")).click();
    h.step();
    h.step();
    assert_eq!(
        h.state().session.as_ref().map(|s| s.role.as_str()),
        Some(role)
    );
}

pub fn loaded(h: &mut Harness<'_, App>) {
    wait(h, "demo orders", |a| {
        a.loading.is_none() && a.rows.len() == 9
    });
}

pub fn select(h: &mut Harness<'_, App>, id: &str) -> usize {
    // Let the layout settle (screen switches scroll the table to the selection).
    h.step();
    h.step();
    h.get_by_label(id).click();
    wait(h, "the preview", |a| {
        a.selected_row().is_some_and(|(_, r)| r.id == id)
            && !a.preview.pending
            && (a.preview.prepared.is_some() || !a.preview.errors.is_empty())
    });
    h.state().selected.expect("selected")
}

pub fn status_of(h: &Harness<'_, App>, id: &str) -> Status {
    h.state().row_by_id(id).expect("row").1.status
}

/// Selects order `id` and personalizes it, waiting until the run ends.
pub fn personalize_order(h: &mut Harness<'_, App>, id: &str) {
    select(h, id);
    personalize_and_wait(h);
}

pub fn personalize_and_wait(h: &mut Harness<'_, App>) {
    h.get_by_label("Personalize this card").click();
    h.step();
    wait(h, "the personalization", |a| !a.perso.is_running());
}

/// Sets the simulated encoder to "Nobody swipes" and starts personalizing `id`: the run then
/// waits at the stripe until it is cancelled.
pub fn start_with_nobody_swiping(h: &mut Harness<'_, App>, id: &str) {
    choose_on_devices(h, "Nobody swipes");
    select(h, id);
    h.get_by_label("Personalize this card").click();
    h.step();
}

pub fn show(h: &mut Harness<'_, App>, screen: &str) {
    h.get_by_label(screen).click();
    h.step();
    h.step();
}

/// Clicks `choice` (a simulated card or encoder setting) on the Devices screen, then goes back
/// to the Orders screen.
pub fn choose_on_devices(h: &mut Harness<'_, App>, choice: &str) {
    show(h, "Devices");
    h.get_by_label(choice).click();
    h.step();
    h.step();
    show(h, "Orders");
}

/// Cancels the running personalization with the Cancel button, confirming that the card is
/// spoiled, and waits until the run has stopped.
pub fn cancel_spoiling_the_card(h: &mut Harness<'_, App>) {
    h.get_by_label("Cancel").click();
    h.step();
    h.step();
    h.step();
    h.get_by_label("Cancel the run: this card is spoiled")
        .click();
    h.step();
    wait(h, "the cancelled run", |a| !a.perso.is_running());
}

/// Order `id`'s status is DONE (the last run shown when not).
pub fn assert_done(h: &Harness<'_, App>, id: &str) {
    assert_eq!(status_of(h, id), Status::Done, "{:?}", h.state().perso.last);
}

/// The reason stored with order `id` (a failure's or a rejection's).
pub fn reason_of(h: &Harness<'_, App>, id: &str) -> String {
    h.state()
        .row_by_id(id)
        .and_then(|(_, r)| r.reason.clone())
        .expect("reason")
}

/// The last run's failure as the Personalize screen shows it, if it failed.
pub fn last_failure(h: &Harness<'_, App>) -> Option<PersoFailure> {
    h.state()
        .perso
        .last
        .as_ref()
        .and_then(|f| f.result.as_ref().err())
        .cloned()
}

/// Row `i` of a synthetic 100,000-order table (a DEMO_VISA_US Model 1 order, masked PAN) with
/// the status `status(i)` gives it, approved when that status is READY.
pub fn bulk_row(i: usize, status: impl Fn(usize) -> Status) -> persodesk::gui::worker::OrderRow {
    let status = status(i);
    persodesk::gui::worker::OrderRow {
        id: format!("BULK-{i:06}"),
        product: "DEMO_VISA_US".into(),
        masked_pan: "476173******0010".into(),
        allowed: persodesk::domain::prepare::AllowedModels {
            model1: true,
            model2: false,
        },
        model: Some(persodesk::domain::chip::ChipModel::Model1),
        status,
        reason: None,
        approved: status == Status::Ready,
        test_keys_only: true,
        errors: Vec::new(),
        warnings: Vec::new(),
    }
}
