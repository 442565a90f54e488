//! One suite of store tests, run against both engines: SQLite (a temp file) and PostgreSQL (a
//! real server started by `support/pg.rs`, one database per test). Each test is a generic
//! function over an [`Engine`] fixture, instantiated twice by `both!`.

#[path = "support/pg.rs"]
mod pg;
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use persodesk::domain::review::{Role, Session};
use persodesk::domain::status::{Event, Status};
use persodesk::store::audit::{self, ChainProblem};
use persodesk::store::key_pool::{IccKeyPoolStore, PoolCount, SealedPair};
use persodesk::store::queue::Form;
use persodesk::store::{AuditRecord, QueuedOrder, Store, StoreError, StoreLocation};

use support::TempDir;

fn who(role: Role, user: &str) -> Session {
    Session {
        user: user.into(),
        role,
    }
}

/// One server for the whole binary (each test gets its own database).
fn server() -> Option<&'static pg::PgServer> {
    static SERVER: OnceLock<Option<pg::PgServer>> = OnceLock::new();
    SERVER.get_or_init(pg::PgServer::start).as_ref()
}

/// Where a test's store lives, and how to reach around it (tampering).
enum Fixture {
    Sqlite(TempDir),
    Postgres(String),
}

impl Fixture {
    fn sqlite() -> Option<Fixture> {
        Some(Fixture::Sqlite(TempDir::new("shared-store")))
    }

    fn postgres(name: &str) -> Option<Fixture> {
        let server = server()?;
        Some(Fixture::Postgres(server.create_db(name)))
    }

    fn location(&self) -> StoreLocation {
        match self {
            Fixture::Sqlite(d) => StoreLocation::Sqlite(d.0.join("store.sqlite3")),
            Fixture::Postgres(url) => StoreLocation::Postgres(url.clone()),
        }
    }

    fn open(&self) -> Store {
        Store::open_at(&self.location(), None).expect("store opens")
    }

    /// Runs raw SQL around the store (an attacker with database access).
    fn raw(&self, sql: &str) -> Result<(), String> {
        match self {
            Fixture::Sqlite(d) => rusqlite::Connection::open(d.0.join("store.sqlite3"))
                .and_then(|c| c.execute_batch(sql))
                .map_err(|e| e.to_string()),
            Fixture::Postgres(url) => ::postgres::Client::connect(url, ::postgres::NoTls)
                .and_then(|mut c| c.batch_execute(sql))
                .map_err(|e| {
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_string())
                }),
        }
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Fixture::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $name() {
                super::$name(super::Fixture::postgres(stringify!($name)));
            })*
        }
    };
}

both!(
    statuses_approvals_and_the_trail_verify,
    the_trail_is_append_only,
    concurrent_writers_never_fork_the_chain,
    import_is_idempotent_and_keeps_the_protected_form,
    claims_lease_and_fence,
    four_eyes_and_roles_in_claims,
    queue_counts_per_status_and_station,
    batch_takes_return_distinct_pairs_and_fewer_when_short,
    concurrent_batch_takes_never_share_a_pair,
    concurrent_single_takes_never_share_a_pair,
);

fn fixture_or_skip(f: Option<Fixture>) -> Option<Fixture> {
    if f.is_none() {
        eprintln!("SKIPPED (PERSODESK_SKIP_PG=1)");
    }
    f
}

fn statuses_approvals_and_the_trail_verify(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let mut s = f.open();
    let sup = who(Role::Supervisor, "carol");
    let op = who(Role::Operator, "alice");
    let states = s
        .record_preparation(&[("O-1", None), ("O-2", Some("encryptedData.pan: Luhn"))])
        .expect("prepare");
    assert_eq!(states[0].status, Status::DataPrepared);
    assert_eq!(states[1].status, Status::DataException);
    assert_eq!(states[1].reason.as_deref(), Some("encryptedData.pan: Luhn"));
    s.apply("O-1", &Event::Approved, &sup).expect("approve");
    s.apply(
        "O-1",
        &Event::Started {
            approval_bypass: false,
        },
        &op,
    )
    .expect("start");
    let done = s.apply("O-1", &Event::Completed, &op).expect("done");
    assert_eq!(done.status, Status::Done);
    // A refused transition is an error, and audited.
    let err = s
        .apply("O-1", &Event::Completed, &op)
        .expect_err("done is final");
    assert!(matches!(err, StoreError::Transition { .. }), "{err}");
    assert_eq!(s.approvals("O-1").expect("approvals").len(), 1);
    s.set_setting("ui.reader", "Reader 1").expect("setting");
    // Everything survives a reopen, and the trail verifies.
    drop(s);
    let s = f.open();
    assert_eq!(
        s.setting("ui.reader").expect("setting").as_deref(),
        Some("Reader 1")
    );
    let states = s.states().expect("states");
    assert_eq!(states["O-1"].status, Status::Done);
    assert!(states["O-1"].approved);
    let verdict = s.verify_audit().expect("verify");
    assert!(verdict.intact(), "{:?}", verdict.problem);
    // prepared x2, approved, started, completed, refused completion.
    assert_eq!(verdict.records, 6);
    let trail = s.audit_trail(1).expect("trail");
    assert!(trail[0].outcome.starts_with("refused"), "{:?}", trail[0]);
}

fn the_trail_is_append_only(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let s = f.open();
    s.audit(&who(Role::Operator, "alice"), "load", None, "ok")
        .expect("audit");
    s.audit(&who(Role::Operator, "alice"), "load", None, "ok 2")
        .expect("audit");
    let user_col = match f {
        Fixture::Sqlite(_) => "user",
        Fixture::Postgres(_) => "user_name",
    };
    let update = f.raw(&format!("UPDATE audit SET {user_col} = 'mallory'"));
    assert!(
        update.is_err_and(|e| e.contains("append-only")),
        "UPDATE must be refused"
    );
    assert!(
        f.raw("DELETE FROM audit")
            .is_err_and(|e| e.contains("append-only")),
        "DELETE must be refused"
    );
    if let Fixture::Postgres(_) = f {
        assert!(
            f.raw("TRUNCATE audit")
                .is_err_and(|e| e.contains("append-only")),
            "TRUNCATE must be refused"
        );
    }
    assert!(s.verify_audit().expect("verify").intact());
    // Dropping the trigger and rewriting a record is seen: the trigger, then the hash.
    let drop_trigger = match f {
        Fixture::Sqlite(_) => "DROP TRIGGER audit_no_update".to_string(),
        Fixture::Postgres(_) => "DROP TRIGGER audit_no_update ON audit".to_string(),
    };
    f.raw(&drop_trigger).expect("drop trigger");
    let verdict = s.verify_audit().expect("verify");
    assert!(
        matches!(&verdict.problem, Some(ChainProblem::Store { detail }) if detail.contains("audit_no_update")),
        "{:?}",
        verdict.problem
    );
    f.raw(&format!(
        "UPDATE audit SET {user_col} = 'mallory' WHERE seq = 1"
    ))
    .expect("update without trigger");
    let verdict = s.verify_audit().expect("verify");
    assert_eq!(verdict.problem, Some(ChainProblem::Modified { seq: 1 }));
}

fn concurrent_writers_never_fork_the_chain(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let s = f.open();
    const WRITERS: usize = 4;
    const EACH: usize = 40;
    let location = f.location();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let location = location.clone();
            std::thread::spawn(move || {
                let s = Store::open_at(&location, None).expect("open");
                for i in 0..EACH {
                    s.audit(
                        &who(Role::Operator, &format!("w{w}")),
                        "load",
                        None,
                        &format!("record {i}"),
                    )
                    .expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let verdict = s.verify_audit().expect("verify");
    assert!(verdict.intact(), "{:?}", verdict.problem);
    let chain = s.audit_chain().expect("chain");
    assert_eq!(chain.len(), WRITERS * EACH);
    // One chain: sequence numbers 1..n in storage order, each linked to the one before.
    for (i, r) in chain.iter().enumerate() {
        assert_eq!(r.seq, Some(i as u64 + 1));
        let prev = if i == 0 {
            audit::GENESIS.to_string()
        } else {
            chain[i - 1].hash.clone().expect("hash")
        };
        assert_eq!(r.prev_hash.as_deref(), Some(prev.as_str()));
    }
}

fn queued(id: &str, key: &str) -> QueuedOrder {
    QueuedOrder {
        order_id: id.into(),
        request_key: key.into(),
        form: Form::Jwe,
        protected: format!("{{\"cardId\":\"{id}\",\"encryptedData\":\"eyJ.x.y.z\"}}"),
    }
}

fn import_is_idempotent_and_keeps_the_protected_form(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let s = f.open();
    let op = who(Role::Operator, "alice");
    let added = s
        .enqueue(&op, &[queued("Q-1", "REQ-1"), queued("Q-2", "Q-2")])
        .expect("enqueue");
    assert_eq!(added, vec![true, true]);
    // The same request key under another card id, and the same card id: known.
    let again = s
        .enqueue(&op, &[queued("Q-9", "REQ-1"), queued("Q-2", "Q-2")])
        .expect("enqueue again");
    assert_eq!(again, vec![false, false]);
    assert_eq!(
        s.state("Q-1").expect("state").map(|st| st.status),
        Some(Status::Requested)
    );
    assert!(s.state("Q-9").expect("state").is_none());
    let back = s.queued("Q-1").expect("queued").expect("present");
    assert_eq!(back, queued("Q-1", "REQ-1"));
    assert!(s.verify_audit().expect("verify").intact());
}

fn claims_lease_and_fence(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let mut s = f.open();
    let tester = who(Role::Tester, "tina");
    s.enqueue(&tester, &[queued("L-1", "L-1")])
        .expect("enqueue");
    let a = s
        .claim(&tester, "station-a", 1, &|_| false)
        .expect("claim")
        .expect("claimable");
    assert_eq!((a.order_id.as_str(), a.fence), ("L-1", 1));
    // Leased: nobody else gets it.
    assert!(
        s.claim(&tester, "station-b", 1, &|_| false)
            .expect("claim")
            .is_none()
    );
    s.record_preparation_by(&[("L-1", None)], &tester)
        .expect("prepare");
    s.apply(
        "L-1",
        &Event::Started {
            approval_bypass: true,
        },
        &tester,
    )
    .expect("start");
    s.renew(&a, "STORE DATA").expect("renew");
    // Station A stops renewing: the lease runs out.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(s.expire_leases(&tester).expect("expire"), 1);
    let st = s.state("L-1").expect("state").expect("present");
    assert_eq!(st.status, Status::Failed);
    let reason = st.reason.expect("reason");
    assert!(
        reason.contains("interrupted at station station-a, step STORE DATA"),
        "{reason}"
    );
    let b = s
        .claim(&tester, "station-b", 30, &|_| false)
        .expect("claim")
        .expect("claimable again");
    assert_eq!(b.fence, 2);
    // A's late write is refused by the fencing token; B's counts.
    let late = s
        .finish_claim(&a, &tester, &Event::Completed)
        .expect_err("stale token");
    assert!(late.to_string().contains("fencing token 1"), "{late}");
    assert!(s.renew(&a, "STORE DATA").is_err());
    s.apply(
        "L-1",
        &Event::Started {
            approval_bypass: true,
        },
        &tester,
    )
    .expect("restart");
    let done = s
        .finish_claim(&b, &tester, &Event::Completed)
        .expect("fenced write");
    assert_eq!(done.status, Status::Done);
    // The production counter's per-station figures: the order counts for the station that
    // finished it (B), not for A, whose claim lapsed; nothing changed after a later time.
    let today = s.station_production(0).expect("station production");
    let b_tally = today.get("station-b").expect("station-b counted");
    assert_eq!((b_tally.done, b_tally.failed), (1, 0));
    assert!(!today.contains_key("station-a"), "{today:?}");
    let later = s
        .station_production(persodesk::store::now() + 3_600)
        .expect("station production");
    assert!(later.is_empty(), "{later:?}");
    assert!(
        s.claim(&tester, "station-b", 30, &|_| false)
            .expect("claim")
            .is_none()
    );
    let verdict = s.verify_audit().expect("verify");
    assert!(verdict.intact(), "{:?}", verdict.problem);
}

fn four_eyes_and_roles_in_claims(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let mut s = f.open();
    let carol = who(Role::Supervisor, "carol");
    s.enqueue(&carol, &[queued("F-1", "F-1"), queued("F-2", "F-2")])
        .expect("enqueue");
    s.record_preparation_by(&[("F-1", None), ("F-2", None)], &carol)
        .expect("prepare");
    let evidence = persodesk::domain::approval::Evidence {
        model: "1".into(),
        digest: "AB".repeat(32),
    };
    s.approve("F-1", &carol, &evidence).expect("approve");
    // Operators claim approved orders only, and never one they approved themselves.
    let as_carol = who(Role::Operator, "carol");
    assert!(
        s.claim(&as_carol, "st", 30, &|_| false)
            .expect("claim")
            .is_none()
    );
    let alice = who(Role::Operator, "alice");
    let c = s
        .claim(&alice, "st", 30, &|_| false)
        .expect("claim")
        .expect("approved order");
    assert_eq!(c.order_id, "F-1");
    // F-2 is not approved: not for operators; a tester may take it; skip lists are honoured.
    assert!(
        s.claim(&alice, "st", 30, &|_| false)
            .expect("claim")
            .is_none()
    );
    let tina = who(Role::Tester, "tina");
    assert!(
        s.claim(&tina, "st", 30, &|id| id == "F-2")
            .expect("claim")
            .is_none()
    );
    let t = s
        .claim(&tina, "st", 30, &|_| false)
        .expect("claim")
        .expect("tester");
    assert_eq!(t.order_id, "F-2");
}

fn queue_counts_per_status_and_station(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let s = f.open();
    let tina = who(Role::Tester, "tina");
    s.enqueue(
        &tina,
        &[
            queued("C-1", "C-1"),
            queued("C-2", "C-2"),
            queued("C-3", "C-3"),
        ],
    )
    .expect("enqueue");
    s.claim(&tina, "east", 30, &|_| false)
        .expect("claim")
        .expect("one");
    let counts = s.queue_counts().expect("counts");
    assert_eq!(counts.statuses.get("CARD_PROD_REQUESTED"), Some(&3));
    assert_eq!(
        counts
            .stations
            .get("east")
            .and_then(|m| m.get("CARD_PROD_REQUESTED")),
        Some(&1)
    );
}

fn sealed(id: &str) -> SealedPair {
    SealedPair {
        pair_id: id.into(),
        sealed: format!("blob-{id}").into_bytes(),
    }
}

fn left(s: &Store, bits: usize) -> u64 {
    s.pool_counts()
        .expect("counts")
        .iter()
        .find(|c| c.bits == bits && c.exponent == 3)
        .map_or(0, |c: &PoolCount| c.count)
}

/// A batch take deletes and returns up to N distinct pairs of the size asked for, the oldest
/// first, fewer (then none) when the pool holds fewer; other sizes are untouched.
fn batch_takes_return_distinct_pairs_and_fewer_when_short(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    let mut s = f.open();
    let ids = ["a", "b", "c", "d", "e"];
    let five: Vec<SealedPair> = ids.iter().map(|i| sealed(i)).collect();
    s.put_pairs(1024, 3, &five).expect("put");
    s.put_pairs(1152, 3, &[sealed("x"), sealed("y")])
        .expect("put");
    assert!(s.take_pairs(1024, 3, 0).expect("take 0").is_empty());
    assert!(
        s.take_pairs(1024, 65537, 5)
            .expect("other exponent")
            .is_empty()
    );
    assert_eq!(left(&s, 1024), 5);
    let mut first: Vec<String> = s
        .take_pairs(1024, 3, 3)
        .expect("take 3")
        .into_iter()
        .map(|p| p.pair_id)
        .collect();
    first.sort();
    assert_eq!(first, ["a", "b", "c"], "the three oldest, each once");
    assert_eq!(left(&s, 1024), 2, "deleted when taken");
    let rest = s.take_pairs(1024, 3, 10).expect("take 10");
    let mut rest_ids: Vec<&str> = rest.iter().map(|p| p.pair_id.as_str()).collect();
    rest_ids.sort_unstable();
    assert_eq!(rest_ids, ["d", "e"], "fewer when the pool has fewer");
    assert_eq!(
        rest[0].sealed,
        format!("blob-{}", rest[0].pair_id).into_bytes()
    );
    assert!(s.take_pairs(1024, 3, 10).expect("empty").is_empty());
    assert_eq!(left(&s, 1024), 0);
    assert_eq!(left(&s, 1152), 2, "another size is untouched");
}

/// Two connections drain a pool of 40 pairs at once, each calling `take` until it returns
/// none; every pair must come out exactly once.
fn assert_two_connections_share_out(f: &Fixture, take: fn(&mut Store) -> Vec<SealedPair>) {
    let mut s = f.open();
    let all: Vec<SealedPair> = (0..40).map(|i| sealed(&format!("p{i}"))).collect();
    s.put_pairs(1024, 3, &all).expect("put");
    let taken: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut s = f.open();
                    let mut got = Vec::new();
                    loop {
                        let batch = take(&mut s);
                        if batch.is_empty() {
                            return got;
                        }
                        got.extend(batch.into_iter().map(|p| p.pair_id));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut distinct = taken.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(taken.len(), 40, "every pair taken");
    assert_eq!(distinct.len(), 40, "no pair taken twice");
    assert_eq!(left(&s, 1024), 0);
}

/// Two connections taking batches of 3 at once share out the pool: every pair exactly once.
fn concurrent_batch_takes_never_share_a_pair(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    assert_two_connections_share_out(&f, |s| {
        let batch = s.take_pairs(1024, 3, 3).expect("take");
        assert!(batch.len() <= 3);
        batch
    });
}

/// Two connections taking one pair at a time never take the same pair.
fn concurrent_single_takes_never_share_a_pair(f: Option<Fixture>) {
    let Some(f) = fixture_or_skip(f) else { return };
    assert_two_connections_share_out(&f, |s| {
        s.take_pair(1024, 3).expect("take").into_iter().collect()
    });
}

/// SQLite: a store at the previous schema (version 2, as the last release wrote it) upgrades
/// to version 3 with its records intact and the queue usable.
#[test]
fn sqlite_upgrades_from_version_2() {
    let dir = TempDir::new("upgrade-v2");
    let path = dir.0.join("old.sqlite3");
    {
        let c = rusqlite::Connection::open(&path).expect("create");
        c.execute_batch(V2_SQLITE).expect("v2 schema");
        let rec = old_record();
        let hash = audit::record_hash(audit::GENESIS, 1, &rec);
        c.execute(
            "INSERT INTO audit (at, user, role, action, order_id, outcome, seq, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)",
            rusqlite::params![
                rec.at,
                rec.user,
                rec.role,
                rec.action,
                rec.order_id,
                rec.outcome,
                audit::GENESIS,
                hash
            ],
        )
        .expect("record");
        c.execute_batch(&format!(
            "INSERT INTO orders (order_id, status, approved, updated_at, owner)
               VALUES ('OLD-1', 'DATA_PREPARED', 0, 1700000000, NULL);
             INSERT INTO settings VALUES ('audit.count', '1'), ('audit.head', '{hash}');
             PRAGMA user_version = 2;"
        ))
        .expect("v2 data");
    }
    let s = Store::open(&path).expect("upgrade");
    let version: i64 = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("version");
    assert_eq!(version, persodesk::store::sqlite::SCHEMA_VERSION);
    assert_eq!(version, 3);
    let verdict = s.verify_audit().expect("verify");
    assert!(verdict.intact(), "{:?}", verdict.problem);
    assert_eq!(verdict.records, 1);
    assert_eq!(
        s.state("OLD-1").expect("state").map(|st| st.status),
        Some(Status::DataPrepared)
    );
    let added = s
        .enqueue(&who(Role::Operator, "alice"), &[queued("NEW-1", "NEW-1")])
        .expect("queue after the upgrade");
    assert_eq!(added, vec![true]);
}

/// PostgreSQL: a store created at version 1 (no queue) upgrades to version 2 with its records.
#[test]
fn postgres_upgrades_from_version_1() {
    let Some(server) = server() else {
        eprintln!("SKIPPED (PERSODESK_SKIP_PG=1)");
        return;
    };
    let url = server.create_db("upgrade_v1");
    persodesk::store::postgres::PgEngine::open_at_version(&url, 1).expect("v1");
    assert_eq!(
        persodesk::store::postgres::schema_version(&url).expect("version"),
        1
    );
    let mut c = server.client("upgrade_v1");
    let has_queue: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = 'queue')",
            &[],
        )
        .expect("query")
        .get(0);
    assert!(!has_queue, "version 1 has no queue");
    let rec = old_record();
    let hash = audit::record_hash(audit::GENESIS, 1, &rec);
    c.execute(
        "INSERT INTO audit (at, user_name, role, action, order_id, outcome, seq, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)",
        &[
            &rec.at,
            &rec.user,
            &rec.role,
            &rec.action,
            &rec.order_id,
            &rec.outcome,
            &audit::GENESIS,
            &hash,
        ],
    )
    .expect("record");
    c.batch_execute(&format!(
        "INSERT INTO orders (order_id, status, approved, updated_at)
           VALUES ('OLD-1', 'DATA_PREPARED', FALSE, 1700000000);
         INSERT INTO settings VALUES ('audit.count', '1'), ('audit.head', '{hash}');"
    ))
    .expect("v1 data");
    let s = Store::open_at(&StoreLocation::Postgres(url.clone()), None).expect("upgrade");
    assert_eq!(
        persodesk::store::postgres::schema_version(&url).expect("version"),
        persodesk::store::postgres::SCHEMA_VERSION
    );
    let verdict = s.verify_audit().expect("verify");
    assert!(verdict.intact(), "{:?}", verdict.problem);
    assert_eq!(verdict.records, 1);
    assert_eq!(
        s.enqueue(&who(Role::Operator, "alice"), &[queued("NEW-1", "NEW-1")])
            .expect("queue after the upgrade"),
        vec![true]
    );
}

#[test]
fn store_locations_parse_and_hide_passwords() {
    assert_eq!(
        StoreLocation::parse("postgresql://pd:secret@db/persodesk").expect("pg"),
        StoreLocation::Postgres("postgresql://pd:secret@db/persodesk".into())
    );
    assert_eq!(
        StoreLocation::parse("postgresql://pd:secret@db/persodesk")
            .expect("pg")
            .to_string(),
        "postgresql://pd:***@db/persodesk"
    );
    assert_eq!(
        StoreLocation::parse("sqlite:/var/lib/pd.sqlite3").expect("sqlite"),
        StoreLocation::Sqlite("/var/lib/pd.sqlite3".into())
    );
    assert_eq!(
        StoreLocation::parse("./pd.sqlite3").expect("path"),
        StoreLocation::Sqlite("./pd.sqlite3".into())
    );
    let err = StoreLocation::parse("mysql://u:pw@h/db").expect_err("unknown scheme");
    assert!(!err.to_string().contains("pw@"), "{err}");
}

/// The schema as version 2 (the previous release) created it.
const V2_SQLITE: &str = "
CREATE TABLE orders (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT,
    approved INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL, owner TEXT);
CREATE TABLE approvals (id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, at INTEGER NOT NULL,
    user TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT);
CREATE INDEX approvals_order ON approvals(order_id);
CREATE TABLE audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, user TEXT NOT NULL,
    role TEXT NOT NULL, action TEXT NOT NULL, order_id TEXT, outcome TEXT NOT NULL,
    seq INTEGER, prev_hash TEXT, hash TEXT, seal TEXT);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// The one audit record of the old-version stores the upgrade tests start from.
fn old_record() -> AuditRecord {
    AuditRecord {
        at: 1_700_000_000,
        user: "carol".into(),
        role: "supervisor".into(),
        action: "prepared".into(),
        order_id: Some("OLD-1".into()),
        outcome: "DATA_PREPARED".into(),
    }
}

fn cli(args: &[&str], data: &std::path::Path) -> (bool, String) {
    let out = support::persodesk_command(args, &[("PERSODESK_DATA_DIR", data)])
        .env_remove("PERSODESK_CONFIG")
        .env_remove("PERSODESK_STORE")
        .output()
        .expect("persodesk runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `queue import` keeps a JWE order as received, seals a plain one under the `store` key, and
/// refuses plain orders (naming the field) when the key store cannot seal them.
#[test]
fn queue_import_keeps_orders_only_protected() {
    let dir = TempDir::new("queue-import");
    // `queue import FILE` into a new SQLite store `name` in `dir`: all six demo orders.
    let import_all = |file: &str, name: &str| {
        let db = dir.0.join(name);
        let store = format!("sqlite:{}", db.display());
        let (ok, out) = cli(&["queue", "import", file, "--store", &store], &dir.0);
        assert!(ok, "{out}");
        assert!(
            out.contains("imported 6, already known 0, invalid 0"),
            "{out}"
        );
        db
    };
    let db = import_all("assets/demo/orders-jwe.json", "q.sqlite3");
    let s = Store::open(&db).expect("store");
    let q = s.queued("DEMO-MC-0001").expect("queued").expect("present");
    assert_eq!(q.form, Form::Jwe);
    let jwe: serde_json::Value = serde_json::from_str(&q.protected).expect("order as received");
    assert!(
        jwe["encryptedData"]
            .as_str()
            .is_some_and(|j| j.starts_with("eyJ"))
    );
    drop(s);
    // Plain orders, sealed: the file holds no PAN afterwards.
    let plain = import_all("assets/demo/orders.json", "plain.sqlite3");
    let s = Store::open(&plain).expect("store");
    assert_eq!(
        s.queued("DEMO-MC-0001").expect("queued").map(|q| q.form),
        Some(Form::Sealed)
    );
    drop(s);
    let bytes = std::fs::read(&plain).expect("db file");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("5413330089012345"),
        "a PAN in the store file"
    );
    // Without a store key: refused, named, nothing queued.
    let keys = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/keys.toml"),
    )
    .expect("keys");
    let cut = keys.find("# Demo store key").expect("store key section");
    let no_store = dir.0.join("no-store-keys.toml");
    std::fs::write(&no_store, &keys[..cut]).expect("keys file");
    let third = format!("sqlite:{}", dir.0.join("third.sqlite3").display());
    let (ok, out) = cli(
        &[
            "queue",
            "import",
            "assets/demo/orders.json",
            "--keys",
            no_store.to_str().expect("utf-8"),
            "--store",
            &third,
        ],
        &dir.0,
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("imported 0, already known 0, invalid 6"),
        "{out}"
    );
    assert!(
        out.contains("encryptedData: plain, and the key store cannot seal it"),
        "{out}"
    );
}
