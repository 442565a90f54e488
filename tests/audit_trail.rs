//! The tamper-evident audit trail: records are append-only (SQLite refuses UPDATE and DELETE) and
//! hash-chained; `Store::verify_audit` and `persodesk audit verify` name the first modified,
//! reordered or deleted record by its sequence number and the command exits 1. Tampering is done
//! the way someone with the database file would: a second SQLite connection that drops the
//! triggers first. A database written before the chain existed is migrated and sealed.

mod support;

use std::path::Path;
use std::process::Output;

use persodesk::domain::review::{Role, Session};
use persodesk::domain::status::Event;
use persodesk::store::audit::ChainProblem;
use persodesk::store::{Store, audit};
use rusqlite::Connection;

/// A fresh directory under the system temp dir, removed on drop.
use support::TempDir;

fn who() -> Session {
    Session {
        user: "ana".into(),
        role: Role::Supervisor,
    }
}

/// A store with five audit records (sequence numbers 1-5).
fn five_records(dir: &TempDir) -> Store {
    let store = Store::open(&dir.db()).expect("store");
    for i in 1..=5 {
        store
            .audit(
                &who(),
                "load",
                Some(&format!("ORDER-{i}")),
                &format!("ok {i}"),
            )
            .expect("audit");
    }
    let v = store.verify_audit().expect("verify");
    assert!(v.intact(), "{v:?}");
    assert_eq!(v.records, 5);
    store
}

/// A connection that can change the table: the append-only triggers dropped.
fn tamperer(db: &Path) -> Connection {
    let c = Connection::open(db).expect("open");
    // Opening a store no longer re-creates dropped triggers (verify reports them instead).
    c.execute_batch(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
    )
    .expect("drop triggers");
    c
}

fn cli(args: &[&str], data_dir: &Path) -> Output {
    support::persodesk_command(args, &[("PERSODESK_DATA_DIR", data_dir)])
        .env_remove("XDG_DATA_HOME")
        .output()
        .expect("run persodesk")
}

/// Runs `sql` on the store file around the store (its triggers dropped), as an attacker would.
fn tamper(db: &Path, sql: &str) {
    tamperer(db).execute(sql, []).expect("tamper");
}

/// Five records in a store in a new directory `name`, then `sql` run around the store.
fn tampered(name: &str, sql: &str) -> (TempDir, Store) {
    let dir = TempDir::new(name);
    let store = five_records(&dir);
    tamper(&dir.db(), sql);
    (dir, store)
}

/// What verifying the trail finds wrong, if anything.
fn problem(store: &Store) -> Option<ChainProblem> {
    store.verify_audit().expect("verify").problem
}

/// `audit verify --db` exits `code` and says `needle` on stdout.
fn assert_cli_verify(db: &Path, dir: &Path, code: i32, needle: &str) {
    let out = cli(&["audit", "verify", "--db", &db.display().to_string()], dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "{stdout}");
    assert!(stdout.contains(needle), "wanted {needle:?} in: {stdout}");
}

#[test]
fn an_intact_trail_verifies_and_every_write_path_is_chained() {
    let dir = TempDir::new("intact");
    let mut store = Store::open(&dir.db()).expect("store");
    store.audit(&who(), "sign-in", None, "ok").expect("audit");
    store
        .record_preparation(&[("ORDER-1", None)])
        .expect("prepare");
    store
        .apply("ORDER-1", &Event::Approved, &who())
        .expect("approve");
    // A refused event is audited too (through `audit`, after the transaction).
    assert!(store.apply("ORDER-1", &Event::Approved, &who()).is_err());
    let chain = store.audit_chain().expect("chain");
    // sign-in, prepared (preparation is audited since issue 13), approved, the refusal.
    assert_eq!(chain.len(), 4);
    let seqs: Vec<_> = chain.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(chain[0].prev_hash.as_deref(), Some(audit::GENESIS));
    assert_eq!(chain[1].prev_hash, chain[0].hash);
    let v = store.verify_audit().expect("verify");
    assert!(v.intact(), "{v:?}");
    assert_eq!(v.head, chain[3].hash.clone().expect("hash"));
    // The head is kept in the settings.
    assert_eq!(
        store.setting(audit::COUNT_KEY).expect("count").as_deref(),
        Some("4")
    );
    // The existing API still reads it, newest first.
    let trail = store.audit_trail(10).expect("trail");
    assert_eq!(trail.len(), 4);
    assert!(trail[0].outcome.starts_with("refused:"));

    // A second connection (a GUI worker) appends to the same chain.
    let other = store.reopen().expect("reopen");
    other
        .audit(&who(), "reveal", Some("ORDER-1"), "ok")
        .expect("audit");
    store.audit(&who(), "sign-out", None, "ok").expect("audit");
    let v = store.verify_audit().expect("verify");
    assert!(v.intact(), "{v:?}");
    assert_eq!(v.records, 6);

    assert_cli_verify(&dir.db(), &dir.0, 0, "audit trail intact: 6 records");
    // Without --db: the default store in PERSODESK_DATA_DIR.
    let out = cli(&["audit", "verify"], &dir.0);
    assert_eq!(out.status.code(), Some(0));
    let out = cli(&["audit", "show", "--limit", "2"], &dir.0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("sign-out"), "{stdout}");
    assert!(!stdout.contains("sign-in"), "{stdout}");
    assert!(stdout.contains("2 of 6 records"), "{stdout}");
}

#[test]
fn records_cannot_be_changed_or_deleted_through_sqlite() {
    let dir = TempDir::new("append-only");
    let _store = five_records(&dir);
    let c = Connection::open(dir.db()).expect("open");
    for sql in [
        "UPDATE audit SET outcome = 'ok' WHERE seq = 2",
        "DELETE FROM audit WHERE seq = 5",
    ] {
        let refused = c.execute(sql, []);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("append-only")),
            "{sql}: {refused:?}"
        );
    }
}

#[test]
fn a_modified_field_is_named() {
    let (dir, store) = tampered(
        "modified",
        "UPDATE audit SET user = 'mallory' WHERE seq = 2",
    );
    let v = store.verify_audit().expect("verify");
    assert_eq!(v.problem, Some(ChainProblem::Modified { seq: 2 }));
    assert_eq!(v.records, 1, "record 1 still checks out");
    assert_cli_verify(&dir.db(), &dir.0, 1, "record 2 was modified");

    // Changing the time of an otherwise untouched record shows as well.
    let (_dir, store) = tampered(
        "modified-time",
        "UPDATE audit SET at = at - 3600 WHERE seq = 4",
    );
    assert_eq!(problem(&store), Some(ChainProblem::Modified { seq: 4 }));
}

#[test]
fn two_swapped_records_are_named() {
    let dir = TempDir::new("swapped");
    let store = five_records(&dir);
    // Swap the rows holding records 3 and 4 (every column but the row id).
    tamperer(&dir.db())
        .execute_batch(
            "CREATE TEMP TABLE s AS SELECT * FROM audit WHERE seq IN (3, 4);
             UPDATE audit SET (at, user, role, action, order_id, outcome, seq, prev_hash, hash) =
               (SELECT at, user, role, action, order_id, outcome, seq, prev_hash, hash
                FROM s WHERE s.id != audit.id)
             WHERE seq IN (3, 4);",
        )
        .expect("tamper");
    let chain = store.audit_chain().expect("chain");
    let seqs: Vec<_> = chain.iter().filter_map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 4, 3, 5], "the swap happened");
    let v = store.verify_audit().expect("verify");
    assert_eq!(
        v.problem,
        Some(ChainProblem::Reordered {
            seq: 4,
            expected: 3
        })
    );
    assert_cli_verify(&dir.db(), &dir.0, 1, "record 4 is out of order");
}

#[test]
fn a_deleted_middle_record_is_named() {
    let (dir, store) = tampered("deleted", "DELETE FROM audit WHERE seq = 3");
    assert_eq!(problem(&store), Some(ChainProblem::Deleted { seq: 3 }));
    assert_cli_verify(&dir.db(), &dir.0, 1, "record 3 was deleted");

    // Renumbering the later records to close the gap breaks their links instead.
    tamper(&dir.db(), "UPDATE audit SET seq = seq - 1 WHERE seq > 3");
    assert_eq!(problem(&store), Some(ChainProblem::BrokenLink { seq: 3 }));
}

#[test]
fn a_deleted_last_record_is_named_even_after_later_appends() {
    let (dir, store) = tampered("truncated", "DELETE FROM audit WHERE seq = 5");
    assert_eq!(
        problem(&store),
        Some(ChainProblem::Truncated { last: 4, count: 5 })
    );
    assert_cli_verify(&dir.db(), &dir.0, 1, "record 5 was deleted");

    // The application goes on: the next record is number 6, so record 5 stays missing.
    store.audit(&who(), "sign-in", None, "ok").expect("audit");
    assert_eq!(problem(&store), Some(ChainProblem::Deleted { seq: 5 }));

    // Deleting the last record and the head in the settings too still shows: the head is gone.
    let dir = TempDir::new("truncated-head");
    let store = five_records(&dir);
    tamperer(&dir.db())
        .execute_batch(
            "DELETE FROM audit WHERE seq = 5;
             DELETE FROM settings WHERE key IN ('audit.count', 'audit.head');",
        )
        .expect("tamper");
    let v = store.verify_audit().expect("verify");
    assert!(
        matches!(v.problem, Some(ChainProblem::Head { .. })),
        "{v:?}"
    );
}

#[test]
fn a_database_from_before_the_chain_is_migrated_and_sealed() {
    let dir = TempDir::new("migrate");
    {
        // The schema as persodesk wrote it before the chain (user_version 0).
        let c = Connection::open(dir.db()).expect("open");
        c.execute_batch(
            "CREATE TABLE audit (
                 id INTEGER PRIMARY KEY, at INTEGER NOT NULL, user TEXT NOT NULL,
                 role TEXT NOT NULL, action TEXT NOT NULL, order_id TEXT, outcome TEXT NOT NULL);
             CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO audit (at, user, role, action, order_id, outcome) VALUES
                 (1700000001, 'ana', 'supervisor', 'approved', 'A', 'CARD_PROD_READY'),
                 (1700000002, 'bo', 'operator', 'perso-started', 'A', 'CARD_PROD_ONGOING'),
                 (1700000003, 'bo', 'operator', 'sign-in', NULL, 'ok');",
        )
        .expect("old schema");
    }
    let store = Store::open(&dir.db()).expect("store");
    let v = store.verify_audit().expect("verify");
    assert!(v.intact(), "{v:?}");
    assert_eq!(v.records, 3);
    let trail = store.audit_trail(10).expect("trail");
    assert_eq!(trail.len(), 3);
    assert_eq!(trail[2].user, "ana");
    store.audit(&who(), "sign-in", None, "ok").expect("audit");
    assert_eq!(store.verify_audit().expect("verify").records, 4);
    // Reopening does not migrate again (the records keep their hashes).
    let before = store.audit_chain().expect("chain");
    drop(store);
    let store = Store::open(&dir.db()).expect("reopen");
    assert_eq!(store.audit_chain().expect("chain"), before);
    // And a sealed legacy record is protected like any other.
    tamperer(&dir.db())
        .execute(
            "UPDATE audit SET outcome = 'CARD_PROD_DONE' WHERE seq = 2",
            [],
        )
        .expect("tamper");
    assert_eq!(problem(&store), Some(ChainProblem::Modified { seq: 2 }));
}

#[test]
fn verify_without_a_store_is_an_input_error() {
    let dir = TempDir::new("missing");
    let out = cli(
        &[
            "audit",
            "verify",
            "--db",
            &dir.0.join("none.sqlite3").display().to_string(),
        ],
        &dir.0,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no persodesk store"));
    assert!(
        !dir.0.join("none.sqlite3").exists(),
        "verify must not create a store"
    );
}

/// An audit key that works until `broken` is set, as a token does until it fails.
struct FlakySealer {
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl persodesk::store::Sealer for FlakySealer {
    fn mac(&self, message: &[u8]) -> Result<[u8; 32], String> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("HMAC in the token failed: CKR_DEVICE_ERROR".into());
        }
        Ok(audit::hmac_sha256(b"flaky test audit key", message))
    }
    fn key_name(&self) -> String {
        "audit #7".into()
    }
}

/// A seal the audit key cannot compute fails closed: the record is not written, the error names
/// the key, no review digest is made, and the trail does not verify while the key fails.
#[test]
fn an_audit_key_that_fails_writes_nothing_and_verifies_nothing() {
    use std::sync::atomic::Ordering;
    let dir = TempDir::new("flaky-seal");
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sealer = std::sync::Arc::new(FlakySealer {
        broken: std::sync::Arc::clone(&broken),
    });
    let store = Store::open_sealed(&dir.db(), sealer).expect("store");
    store
        .audit(&who(), "login", None, "ok")
        .expect("sealed write");
    let before = store.audit_trail(100).expect("trail").len();

    broken.store(true, Ordering::SeqCst);
    let err = store
        .audit(&who(), "approve", Some("O-1"), "ok")
        .expect_err("a failing audit key must refuse the write");
    let text = err.to_string();
    assert!(
        text.contains("audit #7") && text.contains("CKR_DEVICE_ERROR"),
        "{text}"
    );
    assert!(store.review_digest(b"reviewed data").is_err());
    assert!(!store.verify_audit().expect("verify").intact());

    broken.store(false, Ordering::SeqCst);
    assert_eq!(store.audit_trail(100).expect("trail").len(), before);
    let verdict = store.verify_audit().expect("verify");
    assert!(verdict.intact(), "{:?}", verdict.problem);
}
