//! The shared engine: PostgreSQL through the synchronous `postgres` crate, with a small pool of
//! connections (idle ones kept, up to [`POOL_IDLE`]).
//!
//! - **Chain.** Every write transaction that may append to the audit trail first takes a row
//!   lock on the single row of `chain_lock` (`SELECT … FOR UPDATE`), so appends are serialised
//!   in commit order and the chain never forks, whatever the number of stations. Taking it first
//!   also gives every such transaction the same lock order (no deadlock with order rows). Lease
//!   writes ([`Engine::write_unchained`]) skip it, and may not append.
//! - **Append-only.** Triggers refuse UPDATE, DELETE and TRUNCATE on `audit`; verification names
//!   a missing or disabled one.
//! - **Migrations.** `persodesk_schema.version`; [`MIGRATIONS`] `[n]` brings version `n` to
//!   `n + 1`, all under a transaction-scoped advisory lock (concurrent opens migrate once). To add
//!   a table: append a migration and bump nothing else ([`SCHEMA_VERSION`] follows).
//! - Conflicts the server reports as transient (serialization failure 40001, deadlock 40P01)
//!   are retried a few times.

use std::sync::Mutex;

use postgres::{Client, NoTls, Row};

use super::key_pool::{KeyPoolTx, PairSize, PoolCount, SealedPair, count_row};
use super::queue::{Lease, QueueTx, QueuedOrder};
use super::{
    Approval, ApprovalRow, AuditRecord, Engine, OrderRow, OrderState, StoreError, Tx, TxBody,
    audit, first_missing,
};
use crate::domain::status::Status;

/// Idle connections kept for reuse.
pub const POOL_IDLE: usize = 4;

/// The advisory lock key of schema migrations ("pd" "st").
const MIGRATION_LOCK: i64 = 0x7064_7374;

/// Version 1: statuses, approvals, the chained trail with its append-only triggers, settings,
/// the chain lock.
const V1: &str = r"
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    reason     TEXT,
    approved   BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL,
    owner      TEXT
);
CREATE TABLE approvals (
    id        BIGSERIAL PRIMARY KEY,
    order_id  TEXT NOT NULL,
    at        BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    decision  TEXT NOT NULL,
    reason    TEXT
);
CREATE INDEX approvals_order ON approvals(order_id);
CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    role      TEXT NOT NULL,
    action    TEXT NOT NULL,
    order_id  TEXT,
    outcome   TEXT NOT NULL,
    seq       BIGINT,
    prev_hash TEXT,
    hash      TEXT,
    seal      TEXT
);
CREATE INDEX audit_order ON audit(order_id);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE chain_lock (id INTEGER PRIMARY KEY);
INSERT INTO chain_lock (id) VALUES (1);
CREATE FUNCTION persodesk_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION persodesk_audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION persodesk_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION persodesk_audit_append_only();
";

/// Version 2: the order queue and the station lease columns.
const V2: &str = r"
CREATE TABLE queue (
    order_id    TEXT PRIMARY KEY,
    request_key TEXT NOT NULL UNIQUE,
    form        TEXT NOT NULL,
    protected   TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
ALTER TABLE orders ADD COLUMN station TEXT;
ALTER TABLE orders ADD COLUMN step TEXT;
ALTER TABLE orders ADD COLUMN lease_until BIGINT;
ALTER TABLE orders ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;
CREATE INDEX orders_status ON orders(status);
";

/// Version 3: the persisted ICC key pool (sealed private keys only).
const V3: &str = r"
CREATE TABLE icc_key_pool (
    id         BIGSERIAL PRIMARY KEY,
    bits       BIGINT NOT NULL,
    exponent   BIGINT NOT NULL,
    pair_id    TEXT NOT NULL UNIQUE,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX icc_key_pool_size ON icc_key_pool(bits, exponent, id);
";

/// The migrations in order: `MIGRATIONS[n]` brings a store at version `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The append-only triggers' names; verification reports a missing or disabled one.
const TRIGGERS: [&str; 3] = ["audit_no_update", "audit_no_delete", "audit_no_truncate"];

/// The PostgreSQL engine: a connection string and idle connections.
pub struct PgEngine {
    url: String,
    idle: Mutex<Vec<Client>>,
}

impl PgEngine {
    /// Connects and migrates the schema to [`SCHEMA_VERSION`].
    pub fn open(url: &str) -> Result<PgEngine, StoreError> {
        PgEngine::open_at_version(url, SCHEMA_VERSION)
    }

    /// Connects and migrates the schema up to `version` only (tests of the upgrade path).
    pub fn open_at_version(url: &str, version: i64) -> Result<PgEngine, StoreError> {
        let engine = PgEngine {
            url: url.to_string(),
            idle: Mutex::new(Vec::new()),
        };
        let mut client = engine.connect()?;
        migrate(&mut client, version)?;
        engine.give(client);
        Ok(engine)
    }

    fn connect(&self) -> Result<Client, StoreError> {
        Ok(Client::connect(&self.url, NoTls)?)
    }

    fn take(&self) -> Result<Client, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn give(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_IDLE
        {
            idle.push(client);
        }
    }

    /// One transaction on a pooled connection, retried on transient conflicts.
    fn transaction(
        &self,
        body: &mut TxBody<'_>,
        chained: bool,
        read_only: bool,
    ) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut client = self.take()?;
            let result = run_tx(&mut client, body, chained, read_only);
            self.give(client);
            match result {
                Err(StoreError::Postgres(m)) if is_transient(&m) && attempt < 5 => {
                    tracing::warn!(attempt, "the shared store reported a conflict; retrying");
                }
                other => return other,
            }
        }
    }
}

fn run_tx(
    client: &mut Client,
    body: &mut TxBody<'_>,
    chained: bool,
    read_only: bool,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    if read_only {
        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    } else if chained {
        tx.execute("SELECT id FROM chain_lock WHERE id = 1 FOR UPDATE", &[])?;
    }
    body(&mut PgTx {
        tx: &mut tx,
        chained,
    })?;
    tx.commit()?;
    Ok(())
}

fn is_transient(message: &str) -> bool {
    message.ends_with("(40001)") || message.ends_with("(40P01)")
}

impl Engine for PgEngine {
    fn write(&self, body: &mut TxBody<'_>) -> Result<(), StoreError> {
        self.transaction(body, true, false)
    }

    fn write_unchained(&self, body: &mut TxBody<'_>) -> Result<(), StoreError> {
        self.transaction(body, false, false)
    }

    fn read(&self, body: &mut TxBody<'_>) -> Result<(), StoreError> {
        self.transaction(body, false, true)
    }

    fn reopen(&self) -> Result<Box<dyn Engine>, StoreError> {
        Ok(Box::new(PgEngine {
            url: self.url.clone(),
            idle: Mutex::new(Vec::new()),
        }))
    }
}

/// Brings the schema to `target` under the migration lock.
fn migrate(client: &mut Client, target: i64) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS persodesk_schema (version BIGINT NOT NULL)")?;
    let version: Option<i64> = tx
        .query_opt("SELECT version FROM persodesk_schema", &[])?
        .map(|r| r.get(0));
    let mut version = match version {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO persodesk_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Postgres(format!(
            "the store's schema is version {version}, newer than this build's {SCHEMA_VERSION}"
        )));
    }
    while version < target.min(SCHEMA_VERSION) {
        let step = usize::try_from(version).unwrap_or(usize::MAX);
        let Some(sql) = MIGRATIONS.get(step) else {
            break;
        };
        tx.batch_execute(sql)?;
        version += 1;
        tracing::info!(version, "shared store schema migrated");
    }
    tx.execute("UPDATE persodesk_schema SET version = $1", &[&version])?;
    tx.commit()?;
    Ok(())
}

/// The store's schema version (tests of the upgrade path).
pub fn schema_version(url: &str) -> Result<i64, StoreError> {
    let mut client = Client::connect(url, NoTls)?;
    Ok(client
        .query_one("SELECT version FROM persodesk_schema", &[])?
        .get(0))
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn row_state(r: &Row, first: usize) -> OrderState {
    let status: String = r.get(first);
    OrderState {
        // An unknown status (a newer version's) is shown as an exception rather than trusted.
        status: Status::parse(&status).unwrap_or(Status::DataException),
        reason: r.get(first + 1),
        approved: r.get(first + 2),
        updated_at: r.get(first + 3),
    }
}

fn audit_record(r: &Row, first: usize) -> AuditRecord {
    AuditRecord {
        at: r.get(first),
        user: r.get(first + 1),
        role: r.get(first + 2),
        action: r.get(first + 3),
        order_id: r.get(first + 4),
        outcome: r.get(first + 5),
    }
}

/// The primitives on one PostgreSQL transaction.
struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    chained: bool,
}

impl PgTx<'_, '_> {
    /// Runs `sql` with an order's status row as $1-$6: id, status, reason, approved, time, owner.
    fn write_order(
        &mut self,
        sql: &str,
        order: &str,
        row: &OrderRow<'_>,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            sql,
            &[
                &order,
                &row.status.as_str(),
                &row.reason,
                &row.approved,
                &row.at,
                &row.owner,
            ],
        )?;
        Ok(())
    }
}

impl Tx for PgTx<'_, '_> {
    fn state(&mut self, order: &str) -> Result<Option<OrderState>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT status, reason, approved, updated_at FROM orders WHERE order_id = $1",
                &[&order],
            )?
            .map(|r| row_state(&r, 0)))
    }

    fn states(&mut self) -> Result<Vec<(String, OrderState)>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT order_id, status, reason, approved, updated_at FROM orders",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), row_state(r, 1)))
            .collect())
    }

    fn put_prepared(&mut self, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError> {
        self.write_order(
            "INSERT INTO orders (order_id, status, reason, approved, updated_at, owner)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (order_id) DO UPDATE SET status = $2, reason = $3, approved = $4,
               updated_at = $5, owner = $6",
            order,
            row,
        )
    }

    fn update_order(&mut self, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError> {
        self.write_order(
            "UPDATE orders SET status = $2, reason = $3, approved = $4, updated_at = $5,
               owner = $6 WHERE order_id = $1",
            order,
            row,
        )
    }

    fn latest_decision(&mut self, order: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT decision FROM approvals WHERE order_id = $1 ORDER BY id DESC LIMIT 1",
                &[&order],
            )?
            .map(|r| r.get(0)))
    }

    fn insert_approval(&mut self, order: &str, row: &ApprovalRow<'_>) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO approvals (order_id, at, user_name, decision, reason)
             VALUES ($1, $2, $3, $4, $5)",
            &[&order, &row.at, &row.user, &row.decision, &row.reason],
        )?;
        Ok(())
    }

    fn approvals(&mut self, order: &str) -> Result<Vec<Approval>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT at, user_name, decision, reason FROM approvals WHERE order_id = $1
                 ORDER BY id",
                &[&order],
            )?
            .iter()
            .map(|r| Approval {
                at: r.get(0),
                user: r.get(1),
                decision: r.get(2),
                reason: r.get(3),
            })
            .collect())
    }

    fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn delete_setting(&mut self, key: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM settings WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn last_chained(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT seq, hash FROM audit WHERE seq IS NOT NULL ORDER BY id DESC LIMIT 1",
                &[],
            )?
            .map(|r| {
                (
                    u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                    r.get::<_, Option<String>>(1).unwrap_or_default(),
                )
            }))
    }

    fn insert_audit(&mut self, c: &audit::ChainedRecord) -> Result<(), StoreError> {
        if !self.chained {
            return Err(StoreError::Postgres(
                "an audit record outside a chained write transaction".into(),
            ));
        }
        let r = &c.record;
        self.tx.execute(
            "INSERT INTO audit (at, user_name, role, action, order_id, outcome, seq, prev_hash,
               hash, seal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &r.at,
                &r.user,
                &r.role,
                &r.action,
                &r.order_id,
                &r.outcome,
                &c.seq.map(int),
                &c.prev_hash,
                &c.hash,
                &c.seal,
            ],
        )?;
        Ok(())
    }

    fn audit_chain(&mut self) -> Result<Vec<audit::ChainedRecord>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT seq, at, user_name, role, action, order_id, outcome, prev_hash, hash,
                   seal FROM audit ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| audit::ChainedRecord {
                seq: r
                    .get::<_, Option<i64>>(0)
                    .and_then(|s| u64::try_from(s).ok()),
                record: audit_record(r, 1),
                prev_hash: r.get(7),
                hash: r.get(8),
                seal: r.get(9),
            })
            .collect())
    }

    fn audit_trail(&mut self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT at, user_name, role, action, order_id, outcome FROM audit
                 ORDER BY id DESC LIMIT $1",
                &[&int(limit as u64)],
            )?
            .iter()
            .map(|r| audit_record(r, 0))
            .collect())
    }

    fn decision_row(
        &mut self,
        order: &str,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT user_name, action, outcome FROM audit WHERE order_id = $1
                   AND action IN ('approved', 'rejected', 'approval-withdrawn', 'prepared',
                                  'prepare-failed')
                   AND outcome NOT LIKE 'refused%'
                 ORDER BY id DESC LIMIT 1",
                &[&order],
            )?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    fn order_outcomes(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT order_id, outcome FROM audit WHERE order_id IS NOT NULL ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn ongoing(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT order_id, owner FROM orders WHERE status = $1",
                &[&Status::Ongoing.as_str()],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn sealed_count(&mut self) -> Result<(i64, i64), StoreError> {
        let r = self
            .tx
            .query_one("SELECT COUNT(seal), COUNT(*) FROM audit", &[])?;
        Ok((r.get(0), r.get(1)))
    }

    fn missing_trigger(&mut self) -> Result<Option<String>, StoreError> {
        first_missing(&TRIGGERS, |name| {
            let present: i64 = self
                .tx
                .query_one(
                    "SELECT COUNT(*) FROM pg_trigger WHERE tgname = $1
                       AND tgrelid = 'audit'::regclass AND tgenabled <> 'D'",
                    &[&name],
                )?
                .get(0);
            Ok(present > 0)
        })
    }
}

impl KeyPoolTx for PgTx<'_, '_> {
    fn put_pair(&mut self, size: PairSize, pair: &SealedPair, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO icc_key_pool (bits, exponent, pair_id, sealed, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&size.bits, &size.exponent, &pair.pair_id, &pair.sealed, &at],
        )?;
        Ok(())
    }

    fn take_pair(&mut self, size: PairSize) -> Result<Option<SealedPair>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "DELETE FROM icc_key_pool WHERE id = (
                     SELECT id FROM icc_key_pool WHERE bits = $1 AND exponent = $2
                     ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING pair_id, sealed",
                &[&size.bits, &size.exponent],
            )?
            .map(|r| SealedPair {
                pair_id: r.get(0),
                sealed: r.get(1),
            }))
    }

    fn take_pairs(&mut self, size: PairSize, n: i64) -> Result<Vec<SealedPair>, StoreError> {
        Ok(self
            .tx
            .query(
                "DELETE FROM icc_key_pool WHERE id IN (
                     SELECT id FROM icc_key_pool WHERE bits = $1 AND exponent = $2
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING pair_id, sealed",
                &[&size.bits, &size.exponent, &n],
            )?
            .iter()
            .map(|r| SealedPair {
                pair_id: r.get(0),
                sealed: r.get(1),
            })
            .collect())
    }

    fn pool_counts(&mut self) -> Result<Vec<PoolCount>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT bits, exponent, COUNT(*) FROM icc_key_pool
                 GROUP BY bits, exponent ORDER BY bits, exponent",
                &[],
            )?
            .iter()
            .map(|r| count_row(r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

impl QueueTx for PgTx<'_, '_> {
    fn enqueue(&mut self, item: &QueuedOrder, at: i64) -> Result<bool, StoreError> {
        let known: i64 = self
            .tx
            .query_one(
                "SELECT (SELECT COUNT(*) FROM queue WHERE request_key = $1 OR order_id = $2)
                      + (SELECT COUNT(*) FROM orders WHERE order_id = $2)",
                &[&item.request_key, &item.order_id],
            )?
            .get(0);
        if known > 0 {
            return Ok(false);
        }
        self.tx.execute(
            "INSERT INTO queue (order_id, request_key, form, protected, imported_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &item.order_id,
                &item.request_key,
                &item.form.as_str(),
                &item.protected,
                &at,
            ],
        )?;
        self.tx.execute(
            "INSERT INTO orders (order_id, status, approved, updated_at)
             VALUES ($1, $2, FALSE, $3)",
            &[&item.order_id, &Status::Requested.as_str(), &at],
        )?;
        Ok(true)
    }

    fn queued(&mut self, order: &str) -> Result<Option<QueuedOrder>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT order_id, request_key, form, protected FROM queue WHERE order_id = $1",
                &[&order],
            )?
            .and_then(|r| {
                let form: String = r.get(2);
                QueuedOrder::from_row(r.get(0), r.get(1), &form, r.get(3))
            }))
    }

    fn candidates(
        &mut self,
        statuses: &[Status],
        at: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        Ok(self
            .tx
            .query(
                "SELECT o.order_id FROM orders o JOIN queue q ON q.order_id = o.order_id
                 WHERE o.status = ANY($1) AND (o.lease_until IS NULL OR o.lease_until < $2)
                 ORDER BY q.imported_at, q.order_id LIMIT $3",
                &[&names, &at, &int(limit as u64)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn try_lock(&mut self, order: &str, at: i64) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT order_id FROM orders WHERE order_id = $1
                   AND (lease_until IS NULL OR lease_until < $2)
                 FOR UPDATE SKIP LOCKED",
                &[&order, &at],
            )?
            .is_some())
    }

    fn leased(&mut self, at: i64) -> Result<i64, StoreError> {
        Ok(self
            .tx
            .query_one(
                "SELECT COUNT(*) FROM orders WHERE lease_until >= $1
                   OR (status = $2 AND lease_until IS NOT NULL)",
                &[&at, &Status::Ongoing.as_str()],
            )?
            .get(0))
    }

    fn lease(&mut self, order: &str) -> Result<Option<Lease>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT owner, station, step, lease_until, fence FROM orders WHERE order_id = $1
                 FOR UPDATE",
                &[&order],
            )?
            .map(|r| Lease {
                owner: r.get(0),
                station: r.get(1),
                step: r.get(2),
                until: r.get(3),
                fence: r.get(4),
            }))
    }

    fn set_lease(&mut self, order: &str, lease: &Lease) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE orders SET owner = $2, station = $3, step = $4, lease_until = $5, fence = $6
             WHERE order_id = $1",
            &[
                &order,
                &lease.owner,
                &lease.station,
                &lease.step,
                &lease.until,
                &lease.fence,
            ],
        )?;
        Ok(())
    }

    fn expired(&mut self, at: i64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT order_id FROM orders WHERE status = $1 AND lease_until IS NOT NULL
                   AND lease_until < $2 ORDER BY order_id FOR UPDATE SKIP LOCKED",
                &[&Status::Ongoing.as_str(), &at],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn counts(&mut self) -> Result<Vec<(String, Option<String>, i64)>, StoreError> {
        Ok(self
            .tx
            .query(
                "SELECT o.status, o.station, COUNT(*) FROM queue q JOIN orders o
                   ON o.order_id = q.order_id GROUP BY o.status, o.station
                 ORDER BY o.status, o.station",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
    fn finished_by_station(
        &mut self,
        since: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let (done, failed) = (Status::Done.as_str(), Status::Failed.as_str());
        Ok(self
            .tx
            .query(
                "SELECT station, status, COUNT(*) FROM orders WHERE station IS NOT NULL
                   AND updated_at >= $1 AND status IN ($2, $3)
                 GROUP BY station, status ORDER BY station, status",
                &[&since, &done, &failed],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
