//! The operator's workstation, issue #18 items 4, 5, 7-10 and 12, through the window's widgets
//! (egui_kittest, by role and label): findings merged and counted at the top of the preview, the
//! keyboard (scroll into view, pages, ends, Enter, next ready, the F1 sheet), a path field when
//! no file dialog opens, `persodesk FILE`, layout at a narrow width, the reveal banner and its
//! timeout, the full-PAN search and the card picture.

mod support;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable as _;
use persodesk::domain::status::Status;
use persodesk::gui::log::LogBuffer;
use persodesk::gui::orders::Filter;
use persodesk::gui::{App, Screen, Shortcut};

use support::TempDir;
use support::gui::{
    config, demo_signed_in, harness, has, loaded, select, sign_in, signed_in, status_of, wait,
};

/// An order whose cvKeyIndex names no key: both tracks inject the CVV, so preparation reports
/// the same finding once per track.
const BAD_KEYINDEX: &str = r#"{"cardId":"BAD-KEYINDEX","cardProductId":"DEMO_VISA_CREDIT","encryptedData":{"pan":"4761739001010010","exp":"2812","encodedName":"MARTIN/BOB","pin":{"type":"ISO0","encryptedPin":"F421D9C96658A940","kid":1}},"paymentApplication":{"cvKeyIndex":9,"pvKeyIndex":1}}"#;
const GOOD: &str = r#"{"cardId":"OK-1","cardProductId":"DEMO_VISA_US","encryptedData":{"pan":"4761739001010010","exp":"2805","encodedName":"DOE/JANE","cvv1":"123"}}"#;

fn order_file(dir: &TempDir) -> std::path::PathBuf {
    let file = dir.0.join("orders.jsonl");
    std::fs::write(&file, format!("{GOOD}\n{BAD_KEYINDEX}\n")).expect("write");
    file
}

/// The window opened on `file` (`persodesk FILE`), a supervisor signed in, its two orders
/// loaded.
fn supervisor_on(dir: &TempDir, file: std::path::PathBuf) -> egui_kittest::Harness<'static, App> {
    let mut c = config(dir, false);
    c.open = Some(file);
    let app = App::new(c, LogBuffer::default()).expect("app");
    let mut h = harness(app);
    h.step();
    sign_in(&mut h, "supervisor");
    wait(&mut h, "the file", |a| {
        a.loading.is_none() && a.rows.len() == 2
    });
    h
}

#[test]
fn findings_are_merged_counted_and_shown_first_and_the_window_opens_on_a_file() {
    let dir = TempDir::new("findings");
    let file = order_file(&dir);
    // `persodesk FILE`: the window starts on that file instead of the demo orders.
    let mut h = supervisor_on(&dir, file.clone());
    assert_eq!(status_of(&h, "BAD-KEYINDEX"), Status::DataException);
    let (_, row) = h.state().row_by_id("BAD-KEYINDEX").expect("row");
    assert_eq!(row.errors.len(), 2, "{:?}", row.errors);
    assert_eq!(row.errors[0], row.errors[1]);
    // The table counts it once, as the preview lists it.
    assert!(h.query_by_label("1 E").is_some());
    select(&mut h, "BAD-KEYINDEX");
    assert!(has(&h, "Findings: 1 error, 0 warnings"));
    assert_eq!(
        h.query_all_by_label_contains("(reported 2 times)").count(),
        1
    );
    assert!(has(&h, "paymentApplication.cvKeyIndex"));
    // At the top: above the model choice and the review actions.
    let findings = h.get_by_label_contains("Findings: ").rect();
    let model = h.get_by_label("Chip data model:").rect();
    let approve = h.get_by_label("Approve").rect();
    assert!(findings.top() < model.top() && findings.top() < approve.top());
}

#[test]
fn merging_keeps_first_seen_order_and_counts() {
    use persodesk::domain::finding::Finding;
    let a = Finding::new("a", "rule a");
    let b = Finding::new("b", "rule b");
    let list = [a.clone(), b.clone(), a.clone()];
    let merged = persodesk::gui::preview::merged(&list);
    assert_eq!(merged, vec![(&a, 2), (&b, 1)]);
}

fn selected_id(h: &egui_kittest::Harness<'_, App>) -> String {
    h.state()
        .selected_row()
        .map(|(_, r)| r.id.clone())
        .unwrap_or_default()
}

fn press(h: &mut egui_kittest::Harness<'_, App>, s: Shortcut) {
    let k = s.keys();
    h.key_press_modifiers(k.modifiers, k.logical_key);
    h.step();
    h.step();
}

#[test]
fn the_keyboard_moves_through_100000_rows_and_keeps_the_selection_in_view() {
    let dir = TempDir::new("keys");
    let mut h = signed_in(&dir, "supervisor", false);
    h.state_mut().rows = (0..100_000)
        .map(|i| {
            support::gui::bulk_row(i, |i| {
                if i == 70_000 || i == 120 {
                    Status::Ready
                } else {
                    Status::DataPrepared
                }
            })
        })
        .collect();
    h.state_mut().set_filter(Filter::default());
    h.step();
    press(&mut h, Shortcut::LastRow);
    assert_eq!(selected_id(&h), "BULK-099999");
    // Scrolled into view: the last row is laid out (only visible rows are).
    assert!(h.query_by_label("BULK-099999").is_some());
    assert!(h.query_by_label("BULK-000000").is_none());
    press(&mut h, Shortcut::FirstRow);
    assert_eq!(selected_id(&h), "BULK-000000");
    assert!(h.query_by_label("BULK-000000").is_some());
    press(&mut h, Shortcut::NextRow);
    assert_eq!(selected_id(&h), "BULK-000001");
    press(&mut h, Shortcut::PageDown);
    let after_page: usize = selected_id(&h)[5..].parse().expect("index");
    assert!(
        after_page > 5,
        "one page is more than a few rows: {after_page}"
    );
    let shown = format!("BULK-{after_page:06}");
    assert!(h.query_by_label(&shown).is_some());
    press(&mut h, Shortcut::PageUp);
    assert_eq!(selected_id(&h), "BULK-000001");
    press(&mut h, Shortcut::PreviousRow);
    assert_eq!(selected_id(&h), "BULK-000000");
    // The next order ready to personalize, wrapping around.
    press(&mut h, Shortcut::NextReady);
    assert_eq!(selected_id(&h), "BULK-000120");
    press(&mut h, Shortcut::NextReady);
    assert_eq!(selected_id(&h), "BULK-070000");
    assert!(h.query_by_label("BULK-070000").is_some());
    press(&mut h, Shortcut::NextReady);
    assert_eq!(selected_id(&h), "BULK-000120");
}

#[test]
fn f1_lists_every_shortcut_and_hover_texts_name_the_same_keys() {
    let dir = TempDir::new("help");
    let mut h = signed_in(&dir, "supervisor", false);
    assert!(h.query_by_label("Keyboard shortcuts").is_none());
    press(&mut h, Shortcut::Help);
    assert!(h.query_by_label("Keyboard shortcuts").is_some());
    for s in Shortcut::ALL {
        assert!(h.query_by_label(s.label()).is_some(), "{s:?} missing");
        assert!(h.query_by_label(&s.text()).is_some(), "{s:?} keys missing");
    }
    // egui's names for the keys (independent of our labels).
    assert_eq!(Shortcut::Approve.text(), "Ctrl+Shift+A");
    assert_eq!(Shortcut::OpenFile.hover(), "open file (Ctrl+O)");
    assert_eq!(Shortcut::Help.text(), "F1");
    press(&mut h, Shortcut::Help);
    assert!(h.query_by_label("Keyboard shortcuts").is_none());
    h.get_by_label("Open file...").hover();
    // The tooltip comes after egui's hover delay (frames of 1/60 s).
    for _ in 0..60 {
        h.step();
    }
    assert!(h.query_by_label("open file (Ctrl+O)").is_some());
}

#[test]
fn enter_personalizes_the_selected_order_when_allowed() {
    let (_dir, mut h) = demo_signed_in("enter", "operator");
    select(&mut h, "DEMO-VISA-0001");
    // Not approved: Enter starts nothing.
    press(&mut h, Shortcut::PersonalizeSelected);
    assert!(!h.state().perso.is_running());
    assert_eq!(h.state().screen, Screen::Orders);
    assert_eq!(status_of(&h, "DEMO-VISA-0001"), Status::DataPrepared);
    sign_in(&mut h, "tester");
    select(&mut h, "DEMO-MC-0001");
    press(&mut h, Shortcut::PersonalizeSelected);
    assert_eq!(h.state().screen, Screen::Personalize);
    wait(&mut h, "the personalization", |a| !a.perso.is_running());
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::Done);
}

#[test]
fn without_a_file_dialog_the_window_says_so_and_offers_a_path_in_the_last_folder() {
    let dir = TempDir::new("path");
    let file = order_file(&dir);
    let mut h = signed_in(&dir, "supervisor", false);
    h.state_mut().last_file = Some(dir.0.join("earlier.json"));
    h.state_mut()
        .dialog_failed("no system file dialog: no desktop portal and no zenity");
    h.step();
    h.step();
    assert!(has(
        &h,
        "no desktop portal and no zenity: type the file's path below"
    ));
    let field = h.get_by_role_and_label(Role::TextInput, "Order file path");
    let start = format!("{}{}", dir.0.display(), std::path::MAIN_SEPARATOR);
    assert_eq!(field.value().as_deref(), Some(start.as_str()));
    field.focus();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Order file path")
        .type_text("orders.jsonl");
    h.step();
    h.step();
    h.get_by_label("Open this file").click();
    h.step();
    wait(&mut h, "the typed file", |a| {
        a.loading.is_none() && a.rows.len() == 2
    });
    assert_eq!(h.state().last_file.as_deref(), Some(file.as_path()));
    assert!(h.state().path_field.is_none());
}

#[test]
fn pan_and_status_stay_visible_at_the_narrowest_window_and_the_notice_never_overprints() {
    let dir = TempDir::new("layout");
    let app = App::new(config(&dir, true), LogBuffer::default()).expect("app");
    let mut h = egui_kittest::Harness::builder()
        .with_size(egui::vec2(960.0, 600.0))
        .build_ui_state(|ui, app: &mut App| app.draw(ui), app);
    h.step();
    sign_in(&mut h, "supervisor");
    loaded(&mut h);
    select(&mut h, "DEMO-VISA-0001-M2");
    // The table ends where the preview begins: its PAN and Status must be left of that.
    let preview_left = h.get_by_label("Order DEMO-VISA-0001-M2").rect().left();
    for header in ["PAN", "Status"] {
        let table_header = h
            .query_all_by_role_and_label(Role::Label, header)
            .map(|n| n.rect())
            .filter(|r| r.left() < preview_left)
            .min_by(|a, b| a.top().total_cmp(&b.top()))
            .expect("table header");
        assert!(
            table_header.right() <= preview_left,
            "{header} header at {table_header:?}, preview from {preview_left}"
        );
    }
    let pan = h
        .query_all_by_label("476173******0010")
        .map(|n| n.rect())
        .find(|r| r.left() < preview_left)
        .expect("a PAN in the table");
    assert!(pan.right() <= preview_left, "{pan:?}");
    // A very long notice is cut before the store path, not drawn over it.
    h.state_mut().notice = Some(persodesk::gui::Notice {
        text: "x".repeat(400),
        error: true,
    });
    h.step();
    h.step();
    let store = h.get_by_label_contains("store: ").rect();
    let notice = h.get_by_label(&"x".repeat(400)).rect();
    assert!(
        notice.right() <= store.left(),
        "{notice:?} overlaps {store:?}"
    );
}

#[test]
fn reveal_shows_a_banner_reveals_every_value_and_masks_on_timeout_and_selection() {
    let dir = TempDir::new("reveal");
    let mut c = config(&dir, true);
    c.reveal_timeout = std::time::Duration::from_secs(2);
    let app = App::new(c, LogBuffer::default()).expect("app");
    let mut h = harness(app);
    h.step();
    sign_in(&mut h, "tester");
    loaded(&mut h);
    select(&mut h, "DEMO-VISA-0001");
    assert!(!has(&h, "CLEAR VALUES SHOWN"));
    assert!(
        h.query_all_by_label("***").count() >= 2,
        "cvv1 and pvv masked"
    );
    h.get_by_label("Reveal clear values").click();
    h.step();
    h.step();
    assert!(has(
        &h,
        "CLEAR VALUES SHOWN (test keys): masked again in 2 s"
    ));
    let (t2, cvv, pvv) = {
        let p = h.state().preview.prepared.as_ref().expect("prepared");
        (
            p.data
                .tracks
                .track2
                .as_ref()
                .expect("t2")
                .reveal()
                .to_string(),
            p.data.cvv1.as_ref().expect("cvv1").reveal().to_string(),
            p.data.pvv.as_ref().expect("pvv").reveal().to_string(),
        )
    };
    // The value rows show what the tracks show.
    assert!(t2.contains(&cvv) && t2.contains(&pvv));
    assert!(h.query_by_label(&cvv).is_some());
    assert!(h.query_by_label(&pvv).is_some());
    assert!(h.query_by_label(&t2).is_some());
    assert_eq!(h.query_all_by_label("***").count(), 0);
    // egui's clock advances 1/60 s a frame: after 2 s the values are masked again.
    for _ in 0..130 {
        h.step();
    }
    assert!(!h.state().preview.revealed);
    assert!(!has(&h, "CLEAR VALUES SHOWN"));
    assert!(h.query_by_label(&t2).is_none());
    assert!(has(&h, "Clear values masked again (time out)"));
    // A selection change masks too.
    h.get_by_label("Reveal clear values").click();
    h.step();
    h.step();
    assert!(h.state().preview.revealed);
    select(&mut h, "DEMO-VISA-0002");
    assert!(!h.state().preview.revealed);
    assert!(!has(&h, "CLEAR VALUES SHOWN"));
}

#[test]
fn search_finds_an_order_by_its_full_pan_without_showing_it() {
    let dir = TempDir::new("search");
    // Two PANs with the same masked form (476173******0010), both Luhn-valid.
    let file = dir.0.join("twins.jsonl");
    let twin = GOOD
        .replace("OK-1", "OK-2")
        .replace("4761739001010010", "4761730000010010");
    std::fs::write(&file, format!("{GOOD}\n{twin}\n")).expect("write");
    let mut h = supervisor_on(&dir, file);
    let search = |h: &mut egui_kittest::Harness<'_, App>, text: &str| {
        h.state_mut().filter.text.clear();
        h.get_by_role_and_label(Role::TextInput, "Search").focus();
        h.step();
        h.get_by_role_and_label(Role::TextInput, "Search")
            .type_text(text);
        h.step();
        h.step();
    };
    let ids = |h: &egui_kittest::Harness<'_, App>| -> Vec<String> {
        h.state()
            .visible_rows()
            .iter()
            .map(|&i| h.state().rows[i].id.clone())
            .collect()
    };
    search(&mut h, "4761730000010010");
    assert_eq!(ids(&h), ["OK-2"]);
    assert!(has(
        &h,
        "full PAN: matched against the orders' PANs in memory, never shown"
    ));
    // Only the search field holds the digits typed; no label shows them.
    assert!(h.query_by_label("4761730000010010").is_none());
    search(&mut h, "4761 7390 0101 0010");
    assert_eq!(ids(&h), ["OK-1"]);
    // Another full PAN finds nothing; part of one searches the masked forms (both match).
    search(&mut h, "4761730000020010");
    assert!(ids(&h).is_empty());
    search(&mut h, "0010");
    assert!(has(&h, "digits match the masked PAN (first 6, last 4)"));
    assert_eq!(ids(&h), ["OK-1", "OK-2"]);
}

#[test]
fn the_card_picture_shows_the_embossing_the_stripe_and_the_chip_masked() {
    let (_dir, mut h) = demo_signed_in("picture", "supervisor");
    select(&mut h, "DEMO-MC-0001");
    assert!(has(&h, "Card picture"));
    // assets/demo/orders.json: PAN 5413330089012345, exp 2906, DOE/ALICE, MC AID A0000000041010.
    assert!(h.query_by_label("5413 33** **** 2345").is_some());
    assert!(h.query_by_label("VALID THRU 06/29").is_some());
    assert!(h.query_by_label("ALICE DOE").is_some());
    assert!(has(&h, "chip AID A0000000041010"));
    assert!(has(&h, "T2 ;541333******2345=2906"));
    assert!(has(&h, "T1 %B541333******2345^DOE/ALICE^2906"));
    assert!(!has(&h, "5413330089012345"));
}

#[test]
fn a_long_reason_wraps_in_the_preview_and_the_table_never_takes_its_clicks() {
    // What made a second Personalize click after a card check refusal vanish: the refusal's
    // long reason widened the preview, the table overflowed under it and took the click.
    let (_dir, mut h) = demo_signed_in("long-reason", "tester");
    let long = format!(
        "card check: {}insert a fresh card",
        "the card is already personalized, nothing was written; ".repeat(8)
    );
    let i = h.state().row_by_id("DEMO-MC-0001").expect("row").0;
    h.state_mut().rows[i].reason = Some(long.clone());
    select(&mut h, "DEMO-MC-0001");
    h.step();
    h.step();
    let reason = h.get_by_label(&long).rect();
    assert!(reason.right() <= 1400.0, "the reason runs off: {reason:?}");
    let heading = h.get_by_label("Order DEMO-MC-0001").rect();
    // The names beside the values stay on one line (a wrapping grid squeezed them to letters).
    let pan_value = h
        .query_all_by_label("541333******2345")
        .map(|n| n.rect())
        .find(|r| r.left() > heading.left())
        .expect("the preview's PAN");
    for name in ["Product", "Status", "Reason", "Approved"] {
        let r = h
            .query_all_by_label(name)
            .map(|n| n.rect())
            .find(|r| r.left() >= heading.left() && r.top() > heading.top())
            .expect(name);
        assert!(
            r.height() <= pan_value.height() + 2.0,
            "{name} wraps: {r:?}"
        );
    }
    let button = h.get_by_label("Personalize this card").rect();
    assert!(
        heading.left() > 1400.0 - 780.0 && button.left() >= heading.left(),
        "the preview grew: heading {heading:?}, button {button:?}"
    );
    h.get_by_label("Personalize this card").click();
    h.step();
    assert!(
        h.state().perso.is_running() || h.state().perso.last.is_some(),
        "the click did not start a run; notice {:?}",
        h.state().notice.as_ref().map(|n| n.text.clone())
    );
    wait(&mut h, "the personalization", |a| !a.perso.is_running());
    assert_eq!(status_of(&h, "DEMO-MC-0001"), Status::Done);
}

#[test]
fn the_documented_shortcuts_are_the_commands_shortcuts() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/workstation.md"),
    )
    .expect("docs/workstation.md");
    let rows: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("| ") && !l.starts_with("| keys"))
        .collect();
    for s in Shortcut::ALL {
        let row = format!("| {} | {} |", s.text(), s.label());
        assert!(
            rows.contains(&row.as_str()),
            "{row} missing from docs/workstation.md"
        );
    }
    let keyboard = rows.iter().filter(|r| {
        r.ends_with("|") && {
            let text = r.trim_start_matches("| ").split(" | ").next().unwrap_or("");
            Shortcut::ALL.iter().any(|s| s.text() == text)
        }
    });
    assert_eq!(
        keyboard.count(),
        Shortcut::ALL.len(),
        "a key documented twice"
    );
}
