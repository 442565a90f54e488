//! The window on a shared PostgreSQL store shows what other stations write, live: a second
//! connection (another station) changes an order and the window's row follows within seconds,
//! without the window doing anything.

#[path = "support/pg.rs"]
mod pg;
mod support;

use std::time::{Duration, Instant};

use persodesk::domain::review::{Role, Session};
use persodesk::domain::status::{Event, Status};
use persodesk::gui::App;
use persodesk::gui::log::LogBuffer;
use persodesk::store::{Store, StoreLocation};

use support::TempDir;

#[test]
fn the_window_on_a_shared_store_shows_other_stations_changes_live() {
    let Some(server) = pg::PgServer::start() else {
        return;
    };
    let url = server.create_db("live_window");
    let location = StoreLocation::parse(&url).expect("store URL");
    let dir = TempDir::new("live-window");
    let mut config = support::gui::config(&dir, true);
    config.store = Some(location.clone());
    let app = App::new(config, LogBuffer::default()).expect("the window opens the shared store");
    let mut h = support::gui::harness(app);
    h.step();
    support::gui::sign_in(&mut h, "supervisor");
    support::gui::loaded(&mut h);
    let id = h
        .state()
        .rows
        .iter()
        .find(|r| r.status == Status::DataPrepared)
        .map(|r| r.id.clone())
        .expect("a prepared demo order");

    // Another station, on its own connection, with the same audit key.
    let sealer = persodesk::gui::demo_keys()
        .expect("demo keys")
        .audit_sealer();
    let mut other = Store::open_at(&location, sealer).expect("second station");
    assert_eq!(
        other.state(&id).expect("read").map(|s| s.status),
        Some(Status::DataPrepared),
        "the window recorded its preparation in the shared store"
    );
    let bob = Session {
        user: "bob".into(),
        role: Role::Supervisor,
    };
    let reason = "rejected at the other desk";
    other
        .apply(
            &id,
            &Event::Rejected {
                reason: reason.into(),
            },
            &bob,
        )
        .expect("reject at the other station");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        h.step();
        let row = h.state().rows.iter().find(|r| r.id == id).cloned();
        let row = row.expect("the row stays");
        if row.status == Status::DataException {
            let shown = row.reason.unwrap_or_default();
            assert!(shown.contains(reason), "reason shown: {shown}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the window still shows {} for {id}",
            row.status.as_str()
        );
    }
}
