//! The embedded engine: one SQLite file (bundled SQLite), WAL, writers serialised by IMMEDIATE
//! transactions that wait up to [`BUSY_TIMEOUT`] for the lock, then fail loudly.
//!
//! Schema version ([`SCHEMA_VERSION`], `PRAGMA user_version`): older stores are migrated on
//! open in one IMMEDIATE transaction (concurrent opens migrate once):
//! - v0 → v1 gives a trail written before the chain existed its chain, sealed in storage order;
//! - v1 → v2 adds the seal and owner columns, and an `adopted` record for every order whose
//!   status the trail does not explain;
//! - v2 → v3 adds the order queue and the station lease columns ([`super::queue`]).
//!
//! To add a version: a `migrate_vN` step at the end of [`migrate`] and `SCHEMA_VERSION + 1`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::key_pool::{KeyPoolTx, PairSize, PoolCount, SealedPair, count_row};
use super::queue::{Lease, QueueTx, QueuedOrder};
use super::{
    Approval, ApprovalRow, AuditRecord, BUSY_TIMEOUT, Engine, OrderRow, OrderState, StoreError, Tx,
    TxBody, audit, first_missing, set_head,
};
use crate::domain::status::Status;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    reason     TEXT,
    approved   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    owner      TEXT
);
CREATE TABLE IF NOT EXISTS approvals (
    id       INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL,
    at       INTEGER NOT NULL,
    user     TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason   TEXT
);
CREATE INDEX IF NOT EXISTS approvals_order ON approvals(order_id);
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    user     TEXT NOT NULL,
    role     TEXT NOT NULL,
    action   TEXT NOT NULL,
    order_id TEXT,
    outcome  TEXT NOT NULL,
    seq       INTEGER,
    prev_hash TEXT,
    hash      TEXT,
    seal      TEXT
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Schema version (`PRAGMA user_version`): 1 = the audit trail is hash-chained; 2 = records
/// carry seals, orders their owning process, every order's status is explained by the trail;
/// 3 = the order queue and station leases.
pub const SCHEMA_VERSION: i64 = 3;

/// The append-only triggers' names; verification reports a missing one.
const TRIGGERS: [&str; 2] = ["audit_no_update", "audit_no_delete"];

/// Append-only: SQLite refuses to change or remove audit records through any connection that does
/// not first drop these triggers. Created by the migration only: opening or verifying a store
/// never re-creates a dropped trigger (that would hide the tampering).
const AUDIT_TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// Version 3: the queue (each order only as a JWE or sealed) and the station lease columns.
const QUEUE_V3: &str = "
CREATE TABLE IF NOT EXISTS queue (
    order_id    TEXT PRIMARY KEY,
    request_key TEXT NOT NULL UNIQUE,
    form        TEXT NOT NULL,
    protected   TEXT NOT NULL,
    imported_at INTEGER NOT NULL
);
ALTER TABLE orders ADD COLUMN station TEXT;
ALTER TABLE orders ADD COLUMN step TEXT;
ALTER TABLE orders ADD COLUMN lease_until INTEGER;
ALTER TABLE orders ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
";

const SELECT_STATE: &str =
    "SELECT status, reason, approved, updated_at FROM orders WHERE order_id = ?1";

/// The SQLite engine: one connection.
pub struct SqliteEngine {
    conn: Connection,
    path: PathBuf,
}

impl SqliteEngine {
    /// Opens (creating when missing, 0600 in a private directory) and migrates the file.
    pub fn open(path: &Path) -> Result<SqliteEngine, StoreError> {
        let fail = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        crate::files::private_parent(path).map_err(|e| fail(e.kind().to_string()))?;
        // SQLite gives its -wal and -shm files the database file's mode: 0600 for all three.
        crate::files::ensure_private(path).map_err(|e| fail(e.kind().to_string()))?;
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        // WAL lets the UI read while a worker writes; the result row is ignored.
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| fail(e.to_string()))?;
        migrate(&conn).map_err(|e| fail(format!("schema migration: {e}")))?;
        // Deleted rows (a used ICC key pair's sealed blob) are overwritten, not only unlinked.
        conn.pragma_update(None, "secure_delete", true)
            .map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(super::key_pool::SQLITE_TABLE)
            .map_err(|e| fail(e.to_string()))?;
        Ok(SqliteEngine {
            conn,
            path: path.to_path_buf(),
        })
    }
}

impl Engine for SqliteEngine {
    fn write(&self, body: &mut TxBody<'_>) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
                .map_err(StoreError::from)
                .and_then(|tx| {
                    body(&mut SqliteTx(&tx))?;
                    tx.commit()?;
                    Ok(())
                });
            match result {
                Err(StoreError::Sql(e)) if is_busy(&e) && attempt < 3 => {
                    tracing::warn!(attempt, "the store is busy; retrying");
                }
                other => return other,
            }
        }
    }

    fn read(&self, body: &mut TxBody<'_>) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)?;
        body(&mut SqliteTx(&tx))?;
        tx.commit()?;
        Ok(())
    }

    fn reopen(&self) -> Result<Box<dyn Engine>, StoreError> {
        Ok(Box::new(SqliteEngine::open(&self.path)?))
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// Brings an older database to [`SCHEMA_VERSION`] in one write transaction.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        tx.commit()?;
        return Ok(());
    }
    if version < 2 {
        migrate_v2(&tx)?;
    }
    if !columns(&tx, "orders")?.iter().any(|c| c == "fence") {
        tx.execute_batch(QUEUE_V3)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Versions 0 and 1 to 2: the chain, seals, owners, adoption of unexplained orders, triggers.
fn migrate_v2(tx: &Connection) -> Result<(), StoreError> {
    let audit_columns = columns(tx, "audit")?;
    if !audit_columns.iter().any(|c| c == "hash") {
        tx.execute_batch(
            "ALTER TABLE audit ADD COLUMN seq INTEGER;
             ALTER TABLE audit ADD COLUMN prev_hash TEXT;
             ALTER TABLE audit ADD COLUMN hash TEXT;",
        )?;
        chain_legacy(tx)?;
    }
    if !audit_columns.iter().any(|c| c == "seal") {
        tx.execute_batch("ALTER TABLE audit ADD COLUMN seal TEXT;")?;
    }
    if !columns(tx, "orders")?.iter().any(|c| c == "owner") {
        tx.execute_batch("ALTER TABLE orders ADD COLUMN owner TEXT;")?;
    }
    super::adopt_unexplained(&mut SqliteTx(tx))?;
    tx.execute_batch(AUDIT_TRIGGERS)?;
    Ok(())
}

/// Chains the records of a trail written before the chain existed, in storage order.
fn chain_legacy(tx: &Connection) -> Result<(), StoreError> {
    let legacy: Vec<(i64, AuditRecord)> = {
        let mut stmt = tx.prepare(
            "SELECT id, at, user, role, action, order_id, outcome FROM audit ORDER BY id",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, audit_record(r, 1)?)))?
            .collect::<Result<_, _>>()?
    };
    let mut prev = audit::GENESIS.to_string();
    let mut seq = 0u64;
    for (id, record) in &legacy {
        seq += 1;
        let hash = audit::record_hash(&prev, seq, record);
        tx.execute(
            "UPDATE audit SET seq = ?2, prev_hash = ?3, hash = ?4 WHERE id = ?1",
            params![id, i64::try_from(seq).unwrap_or(i64::MAX), prev, hash],
        )?;
        prev = hash;
    }
    set_head(&mut SqliteTx(tx), seq, &prev, None)
}

fn row_state(status: &str, reason: Option<String>, approved: i64, at: i64) -> OrderState {
    OrderState {
        // An unknown status (a newer version's) is shown as an exception rather than trusted.
        status: Status::parse(status).unwrap_or(Status::DataException),
        reason,
        approved: approved != 0,
        updated_at: at,
    }
}

/// An audit record from six columns starting at `first`: at, user, role, action, order, outcome.
fn audit_record(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        at: r.get(first)?,
        user: r.get(first + 1)?,
        role: r.get(first + 2)?,
        action: r.get(first + 3)?,
        order_id: r.get(first + 4)?,
        outcome: r.get(first + 5)?,
    })
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The primitives on one SQLite transaction.
struct SqliteTx<'a>(&'a Connection);

impl SqliteTx<'_> {
    /// Runs `sql` with an order's status row as ?1-?6: id, status, reason, approved, time, owner.
    fn write_order(&self, sql: &str, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError> {
        self.0.prepare_cached(sql)?.execute(params![
            order,
            row.status.as_str(),
            row.reason,
            i64::from(row.approved),
            row.at,
            row.owner
        ])?;
        Ok(())
    }
}

impl Tx for SqliteTx<'_> {
    fn state(&mut self, order: &str) -> Result<Option<OrderState>, StoreError> {
        Ok(self
            .0
            .query_row(SELECT_STATE, [order], |r| {
                Ok(row_state(
                    &r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })
            .optional()?)
    }

    fn states(&mut self) -> Result<Vec<(String, OrderState)>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT order_id, status, reason, approved, updated_at FROM orders")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                row_state(&r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_prepared(&mut self, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError> {
        self.write_order(
            "INSERT INTO orders (order_id, status, reason, approved, updated_at, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(order_id) DO UPDATE SET status = ?2, reason = ?3, approved = ?4,
               updated_at = ?5, owner = ?6",
            order,
            row,
        )
    }

    fn update_order(&mut self, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError> {
        self.write_order(
            "UPDATE orders SET status = ?2, reason = ?3, approved = ?4, updated_at = ?5,
               owner = ?6 WHERE order_id = ?1",
            order,
            row,
        )
    }

    fn latest_decision(&mut self, order: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT decision FROM approvals WHERE order_id = ?1 ORDER BY id DESC LIMIT 1",
                [order],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn insert_approval(&mut self, order: &str, row: &ApprovalRow<'_>) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO approvals (order_id, at, user, decision, reason)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![order, row.at, row.user, row.decision, row.reason],
        )?;
        Ok(())
    }

    fn approvals(&mut self, order: &str) -> Result<Vec<Approval>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT at, user, decision, reason FROM approvals WHERE order_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([order], |r| {
            Ok(Approval {
                at: r.get(0)?,
                user: r.get(1)?,
                decision: r.get(2)?,
                reason: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = ?2",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    fn delete_setting(&mut self, key: &str) -> Result<(), StoreError> {
        self.0
            .execute("DELETE FROM settings WHERE key = ?1", [key])?;
        Ok(())
    }

    fn last_chained(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT seq, hash FROM audit WHERE seq IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    ))
                },
            )
            .optional()?)
    }

    fn insert_audit(&mut self, c: &audit::ChainedRecord) -> Result<(), StoreError> {
        let r = &c.record;
        self.0
            .prepare_cached(
                "INSERT INTO audit (at, user, role, action, order_id, outcome, seq, prev_hash,
                   hash, seal) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                r.at,
                r.user,
                r.role,
                r.action,
                r.order_id,
                r.outcome,
                c.seq.map(int),
                c.prev_hash,
                c.hash,
                c.seal
            ])?;
        Ok(())
    }

    fn audit_chain(&mut self) -> Result<Vec<audit::ChainedRecord>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT seq, at, user, role, action, order_id, outcome, prev_hash, hash, seal
             FROM audit ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(audit::ChainedRecord {
                seq: r
                    .get::<_, Option<i64>>(0)?
                    .and_then(|s| u64::try_from(s).ok()),
                record: audit_record(r, 1)?,
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
                seal: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit_trail(&mut self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT at, user, role, action, order_id, outcome FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            audit_record(r, 0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn decision_row(
        &mut self,
        order: &str,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT user, action, outcome FROM audit WHERE order_id = ?1
                   AND action IN ('approved', 'rejected', 'approval-withdrawn', 'prepared',
                                  'prepare-failed')
                   AND outcome NOT LIKE 'refused%'
                 ORDER BY id DESC LIMIT 1",
                [order],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    fn order_outcomes(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT order_id, outcome FROM audit WHERE order_id IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn ongoing(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT order_id, owner FROM orders WHERE status = ?1")?;
        let rows = stmt.query_map([Status::Ongoing.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sealed_count(&mut self) -> Result<(i64, i64), StoreError> {
        Ok(self
            .0
            .query_row("SELECT COUNT(seal), COUNT(*) FROM audit", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?)
    }

    fn missing_trigger(&mut self) -> Result<Option<String>, StoreError> {
        first_missing(&TRIGGERS, |name| {
            let present: i64 = self.0.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                [name],
                |r| r.get(0),
            )?;
            Ok(present > 0)
        })
    }
}

impl KeyPoolTx for SqliteTx<'_> {
    fn put_pair(&mut self, size: PairSize, pair: &SealedPair, at: i64) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO icc_key_pool (bits, exponent, pair_id, sealed, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![size.bits, size.exponent, pair.pair_id, pair.sealed, at],
        )?;
        Ok(())
    }

    fn take_pair(&mut self, size: PairSize) -> Result<Option<SealedPair>, StoreError> {
        Ok(self
            .0
            .query_row(
                "DELETE FROM icc_key_pool WHERE id = (
                     SELECT id FROM icc_key_pool WHERE bits = ?1 AND exponent = ?2
                     ORDER BY id LIMIT 1)
                 RETURNING pair_id, sealed",
                params![size.bits, size.exponent],
                |r| {
                    Ok(SealedPair {
                        pair_id: r.get(0)?,
                        sealed: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn take_pairs(&mut self, size: PairSize, n: i64) -> Result<Vec<SealedPair>, StoreError> {
        let mut stmt = self.0.prepare(
            "DELETE FROM icc_key_pool WHERE id IN (
                 SELECT id FROM icc_key_pool WHERE bits = ?1 AND exponent = ?2
                 ORDER BY id LIMIT ?3)
             RETURNING pair_id, sealed",
        )?;
        let rows = stmt.query_map(params![size.bits, size.exponent, n], |r| {
            Ok(SealedPair {
                pair_id: r.get(0)?,
                sealed: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn pool_counts(&mut self) -> Result<Vec<PoolCount>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT bits, exponent, COUNT(*) FROM icc_key_pool
             GROUP BY bits, exponent ORDER BY bits, exponent",
        )?;
        let rows = stmt.query_map([], |r| Ok(count_row(r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl QueueTx for SqliteTx<'_> {
    fn enqueue(&mut self, item: &QueuedOrder, at: i64) -> Result<bool, StoreError> {
        let known: i64 = self.0.query_row(
            "SELECT COUNT(*) FROM queue WHERE request_key = ?1 OR order_id = ?2",
            params![item.request_key, item.order_id],
            |r| r.get(0),
        )?;
        let in_orders: i64 = self.0.query_row(
            "SELECT COUNT(*) FROM orders WHERE order_id = ?1",
            [&item.order_id],
            |r| r.get(0),
        )?;
        if known > 0 || in_orders > 0 {
            return Ok(false);
        }
        self.0.execute(
            "INSERT INTO queue (order_id, request_key, form, protected, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                item.order_id,
                item.request_key,
                item.form.as_str(),
                item.protected,
                at
            ],
        )?;
        self.0.execute(
            "INSERT INTO orders (order_id, status, approved, updated_at) VALUES (?1, ?2, 0, ?3)",
            params![item.order_id, Status::Requested.as_str(), at],
        )?;
        Ok(true)
    }

    fn queued(&mut self, order: &str) -> Result<Option<QueuedOrder>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT order_id, request_key, form, protected FROM queue WHERE order_id = ?1",
                [order],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?
            .and_then(|(order_id, request_key, form, protected)| {
                QueuedOrder::from_row(order_id, request_key, &form, protected)
            }))
    }

    fn candidates(
        &mut self,
        statuses: &[Status],
        at: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let list = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self.0.prepare(&format!(
            "SELECT q.order_id FROM queue q JOIN orders o ON o.order_id = q.order_id
             WHERE o.status IN ({list}) AND (o.lease_until IS NULL OR o.lease_until < ?1)
             ORDER BY q.imported_at, q.order_id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![at, int(limit as u64)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn try_lock(&mut self, order: &str, at: i64) -> Result<bool, StoreError> {
        // The IMMEDIATE transaction already excludes every other writer.
        let free: i64 = self.0.query_row(
            "SELECT COUNT(*) FROM orders WHERE order_id = ?1
               AND (lease_until IS NULL OR lease_until < ?2)",
            params![order, at],
            |r| r.get(0),
        )?;
        Ok(free > 0)
    }

    fn leased(&mut self, at: i64) -> Result<i64, StoreError> {
        Ok(self.0.query_row(
            "SELECT COUNT(*) FROM orders WHERE lease_until >= ?1
               OR (status = ?2 AND lease_until IS NOT NULL)",
            params![at, Status::Ongoing.as_str()],
            |r| r.get(0),
        )?)
    }

    fn lease(&mut self, order: &str) -> Result<Option<Lease>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT owner, station, step, lease_until, fence FROM orders WHERE order_id = ?1",
                [order],
                |r| {
                    Ok(Lease {
                        owner: r.get(0)?,
                        station: r.get(1)?,
                        step: r.get(2)?,
                        until: r.get(3)?,
                        fence: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn set_lease(&mut self, order: &str, lease: &Lease) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE orders SET owner = ?2, station = ?3, step = ?4, lease_until = ?5, fence = ?6
             WHERE order_id = ?1",
            params![
                order,
                lease.owner,
                lease.station,
                lease.step,
                lease.until,
                lease.fence
            ],
        )?;
        Ok(())
    }

    fn expired(&mut self, at: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT order_id FROM orders WHERE status = ?1 AND lease_until IS NOT NULL
               AND lease_until < ?2 ORDER BY order_id",
        )?;
        let rows = stmt.query_map(params![Status::Ongoing.as_str(), at], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counts(&mut self) -> Result<Vec<(String, Option<String>, i64)>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT o.status, o.station, COUNT(*) FROM queue q JOIN orders o
               ON o.order_id = q.order_id GROUP BY o.status, o.station
             ORDER BY o.status, o.station",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn finished_by_station(
        &mut self,
        since: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT station, status, COUNT(*) FROM orders WHERE station IS NOT NULL
               AND updated_at >= ?1 AND status IN (?2, ?3)
             GROUP BY station, status ORDER BY station, status",
        )?;
        let (done, failed) = (Status::Done.as_str(), Status::Failed.as_str());
        let rows = stmt.query_map(params![since, done, failed], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
