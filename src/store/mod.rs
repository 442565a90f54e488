//! The workstation's records in an embedded SQLite database: order statuses, approvals, the audit
//! trail and a few settings. They survive restarts.
//!
//! The database lives in the user's data directory (`$PERSODESK_DATA_DIR`, else
//! `$XDG_DATA_HOME/persodesk`, else `~/.local/share/persodesk`), file `persodesk.sqlite3`.
//! Transitions are checked by the pure state machine in [`crate::domain::status`]; this adapter
//! only stores them. Nothing sensitive is stored: order ids, statuses, reasons (which name steps and
//! rules), user names, roles and times.
//!
//! The audit trail is append-only and hash-chained ([`audit`]): `persodesk audit verify` names
//! the first record that was modified, reordered or deleted.

pub mod audit;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::domain::mask::scrub_digit_runs;
use crate::domain::review::Session;
use crate::domain::status::{self, Event, Status, TransitionError};

/// The database file name inside the data directory.
pub const DB_FILE: &str = "persodesk.sqlite3";
/// Environment variable that overrides the data directory (tests, portable installs).
pub const DATA_DIR_ENV: &str = "PERSODESK_DATA_DIR";

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No data directory could be determined.
    #[error("no data directory: set {DATA_DIR_ENV}, XDG_DATA_HOME or HOME")]
    NoDataDir,
    /// The directory or database could not be opened.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The database path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A database operation failed.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The order is not in the store.
    #[error("order {0} is not in the store")]
    UnknownOrder(String),
    /// The state machine refused the event.
    #[error("order {order}: {source}")]
    Transition {
        /// The order id.
        order: String,
        /// The refusal.
        source: TransitionError,
    },
}

/// The stored state of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    /// Production status.
    pub status: Status,
    /// Why it is in a failure state (or why it was rejected).
    pub reason: Option<String>,
    /// A supervisor approved it and did not reject it since.
    pub approved: bool,
    /// Unix time of the last change.
    pub updated_at: i64,
}

/// One audit record: who did what to which order, when, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unix time.
    pub at: i64,
    /// User name.
    pub user: String,
    /// Role.
    pub role: String,
    /// What was done (`approved`, `perso-failed`, `load`, ...).
    pub action: String,
    /// The order concerned, if any.
    pub order_id: Option<String>,
    /// `ok`, `refused: ...`, or the resulting status and reason.
    pub outcome: String,
}

/// One supervisor decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Unix time.
    pub at: i64,
    /// The supervisor.
    pub user: String,
    /// `approved` or `rejected`.
    pub decision: String,
    /// The reason given (rejections).
    pub reason: Option<String>,
}

/// The statuses, approvals and audit trail.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The data directory: `$PERSODESK_DATA_DIR`, `$XDG_DATA_HOME/persodesk` or
/// `~/.local/share/persodesk`.
pub fn data_dir() -> Result<PathBuf, StoreError> {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var(DATA_DIR_ENV) {
        return Ok(d);
    }
    if let Some(d) = var("XDG_DATA_HOME") {
        return Ok(d.join("persodesk"));
    }
    var("HOME")
        .map(|h| h.join(".local/share/persodesk"))
        .ok_or(StoreError::NoDataDir)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::domain::date::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    reason     TEXT,
    approved   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
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
    hash      TEXT
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Schema version (`PRAGMA user_version`): 1 = the audit trail is hash-chained.
const SCHEMA_VERSION: i64 = 1;

/// Append-only: SQLite refuses to change or remove audit records through any connection that does
/// not first drop these triggers (and [`audit::verify`] catches one that does).
const AUDIT_TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// Brings an older database to [`SCHEMA_VERSION`]: a trail written before the chain existed gets
/// the chain columns, and its records are sealed in storage order (what happened to them before
/// this cannot be told). Runs in one write transaction, so concurrent opens migrate once.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return conn.execute_batch(AUDIT_TRIGGERS);
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let columns: Vec<String> = {
        let mut stmt = tx.prepare("SELECT name FROM pragma_table_info('audit')")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    if !columns.iter().any(|c| c == "hash") {
        tx.execute_batch(
            "ALTER TABLE audit ADD COLUMN seq INTEGER;
             ALTER TABLE audit ADD COLUMN prev_hash TEXT;
             ALTER TABLE audit ADD COLUMN hash TEXT;",
        )?;
        let legacy: Vec<(i64, AuditRecord)> = {
            let mut stmt = tx.prepare(
                "SELECT id, at, user, role, action, order_id, outcome FROM audit ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    AuditRecord {
                        at: r.get(1)?,
                        user: r.get(2)?,
                        role: r.get(3)?,
                        action: r.get(4)?,
                        order_id: r.get(5)?,
                        outcome: r.get(6)?,
                    },
                ))
            })?
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
        set_head(&tx, seq, &prev)?;
    }
    tx.execute_batch(AUDIT_TRIGGERS)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

fn set_head(conn: &Connection, count: u64, hash: &str) -> rusqlite::Result<()> {
    let mut put = conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = ?2",
    )?;
    put.execute(params![audit::COUNT_KEY, count.to_string()])?;
    put.execute(params![audit::HEAD_KEY, hash])?;
    Ok(())
}

/// The head kept in the settings: (count, hash), `None` when either is missing or unreadable.
fn read_head(conn: &Connection) -> rusqlite::Result<Option<(u64, String)>> {
    let get = |key: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
    };
    let count = get(audit::COUNT_KEY)?.and_then(|c| c.parse::<u64>().ok());
    Ok(count.zip(get(audit::HEAD_KEY)?))
}

/// Appends one record to the chain; the caller holds a write transaction on `conn`. The new
/// record follows the head kept in the settings (else the last stored record), so a record
/// removed from the end still shows as missing after later appends.
fn append_audit(conn: &Connection, record: &AuditRecord) -> rusqlite::Result<()> {
    let head = match read_head(conn)? {
        Some(head) => head,
        None => conn
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
            .optional()?
            .unwrap_or((0, audit::GENESIS.to_string())),
    };
    let seq = head.0.saturating_add(1);
    let hash = audit::record_hash(&head.1, seq, record);
    conn.prepare_cached(
        "INSERT INTO audit (at, user, role, action, order_id, outcome, seq, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        record.at,
        record.user,
        record.role,
        record.action,
        record.order_id,
        record.outcome,
        i64::try_from(seq).unwrap_or(i64::MAX),
        head.1,
        hash
    ])?;
    set_head(conn, seq, &hash)
}

/// One order's stored state, read on `conn` (the connection or an open transaction).
fn read_state(conn: &Connection, order_id: &str) -> rusqlite::Result<Option<OrderState>> {
    conn.query_row(
        "SELECT status, reason, approved, updated_at FROM orders WHERE order_id = ?1",
        [order_id],
        |r| {
            Ok(row_state(
                &r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        },
    )
    .optional()
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

impl Store {
    /// Opens (creating when missing) the database in [`data_dir`].
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open(&data_dir()?.join(DB_FILE))
    }

    /// Opens (creating when missing) the database at `path`, and its directory.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let fail = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.kind().to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(e.to_string()))?;
        // WAL lets the UI read while a worker writes; the result row is ignored.
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| fail(e.to_string()))?;
        migrate(&conn).map_err(|e| fail(format!("schema migration: {e}")))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens another connection to the same database (for a worker thread).
    pub fn reopen(&self) -> Result<Store, StoreError> {
        Store::open(&self.path)
    }

    /// The stored state of one order.
    pub fn state(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        Ok(read_state(&self.conn, order_id)?)
    }

    /// Every stored order state, by order id.
    pub fn states(&self) -> Result<HashMap<String, OrderState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT order_id, status, reason, approved, updated_at FROM orders")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                row_state(&r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, state) = row?;
            out.insert(id, state);
        }
        Ok(out)
    }

    /// Records the preparation results of a whole file in one transaction: new orders start as
    /// CARD_PROD_REQUESTED; orders not yet reviewed move to DATA_PREPARED or DATA_EXCEPTION; orders
    /// already reviewed keep their state. Returns the resulting state of each order, in order.
    pub fn record_preparation(
        &mut self,
        results: &[(&str, Option<&str>)],
    ) -> Result<Vec<OrderState>, StoreError> {
        let at = now();
        // IMMEDIATE: take the write lock up front, so a concurrent writer makes this wait (busy
        // timeout) instead of failing on a stale read snapshot.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(results.len());
        {
            let mut get = tx.prepare_cached(
                "SELECT status, reason, approved, updated_at FROM orders WHERE order_id = ?1",
            )?;
            let mut put = tx.prepare_cached(
                "INSERT INTO orders (order_id, status, reason, approved, updated_at)
                 VALUES (?1, ?2, ?3, 0, ?4)
                 ON CONFLICT(order_id) DO UPDATE SET status = ?2, reason = ?3, updated_at = ?4",
            )?;
            for (id, failure) in results {
                let current = get
                    .query_row([id], |r| {
                        Ok(row_state(
                            &r.get::<_, String>(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                        ))
                    })
                    .optional()?;
                let from = current.as_ref().map_or(Status::Requested, |s| s.status);
                let event = match failure {
                    None => Event::Prepared,
                    Some(reason) => Event::PrepareFailed {
                        reason: scrub_digit_runs(reason),
                    },
                };
                match status::next(from, &event) {
                    Ok(to) => {
                        let reason = event.reason();
                        let unchanged = current
                            .as_ref()
                            .is_some_and(|c| c.status == to && c.reason.as_deref() == reason);
                        if !unchanged {
                            put.execute(params![id, to.as_str(), reason, at])?;
                        }
                        out.push(OrderState {
                            status: to,
                            reason: reason.map(str::to_string),
                            approved: current.as_ref().is_some_and(|c| c.approved),
                            updated_at: if unchanged {
                                current.as_ref().map_or(at, |c| c.updated_at)
                            } else {
                                at
                            },
                        });
                    }
                    // Already reviewed or produced: the stored state stands.
                    Err(_) => out.push(current.unwrap_or(OrderState {
                        status: from,
                        reason: None,
                        approved: false,
                        updated_at: at,
                    })),
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Applies `event` to an order, checked by the state machine; records approvals and the
    /// audit trail. A refused event is audited too, and returned as an error.
    pub fn apply(
        &mut self,
        order_id: &str,
        event: &Event,
        who: &Session,
    ) -> Result<OrderState, StoreError> {
        let at = now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = read_state(&tx, order_id)?
            .ok_or_else(|| StoreError::UnknownOrder(order_id.to_string()))?;
        let to = match status::next(current.status, event) {
            Ok(to) => to,
            Err(e) => {
                drop(tx);
                self.audit(who, event.name(), Some(order_id), &format!("refused: {e}"))?;
                return Err(StoreError::Transition {
                    order: order_id.to_string(),
                    source: e,
                });
            }
        };
        let reason = event.reason().map(scrub_digit_runs);
        let approved = match event {
            Event::Approved => true,
            Event::Rejected { .. } | Event::Prepared | Event::PrepareFailed { .. } => false,
            _ => current.approved,
        };
        tx.execute(
            "UPDATE orders SET status = ?2, reason = ?3, approved = ?4, updated_at = ?5
             WHERE order_id = ?1",
            params![order_id, to.as_str(), reason, i64::from(approved), at],
        )?;
        if matches!(event, Event::Approved | Event::Rejected { .. }) {
            let decision = if approved { "approved" } else { "rejected" };
            tx.execute(
                "INSERT INTO approvals (order_id, at, user, decision, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![order_id, at, who.user, decision, reason],
            )?;
        }
        let outcome = match &reason {
            Some(r) => format!("{to}: {r}"),
            None => to.to_string(),
        };
        append_audit(
            &tx,
            &AuditRecord {
                at,
                user: who.user.clone(),
                role: who.role.as_str().to_string(),
                action: event.name().to_string(),
                order_id: Some(order_id.to_string()),
                outcome,
            },
        )?;
        tx.commit()?;
        Ok(OrderState {
            status: to,
            reason,
            approved,
            updated_at: at,
        })
    }

    /// Adds an audit record (scrubbed of digit runs as a last line of defence).
    pub fn audit(
        &self,
        who: &Session,
        action: &str,
        order_id: Option<&str>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        append_audit(
            &tx,
            &AuditRecord {
                at: now(),
                user: who.user.clone(),
                role: who.role.as_str().to_string(),
                action: action.to_string(),
                order_id: order_id.map(str::to_string),
                outcome: scrub_digit_runs(outcome),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The whole audit trail in storage order with its chain fields (for verification).
    pub fn audit_chain(&self) -> Result<Vec<audit::ChainedRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at, user, role, action, order_id, outcome, prev_hash, hash
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Checks the audit trail's hash chain and the head kept in the settings; the verdict names
    /// the first modified, reordered or deleted record.
    pub fn verify_audit(&self) -> Result<audit::Verdict, StoreError> {
        // One read transaction: the trail and the head from the same snapshot.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)?;
        let records = self.audit_chain()?;
        let head = read_head(&tx)?;
        tx.commit()?;
        Ok(audit::verify(
            &records,
            head.as_ref().map(|(n, h)| (*n, h.as_str())),
        ))
    }

    /// The latest `limit` audit records, newest first.
    pub fn audit_trail(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, user, role, action, order_id, outcome FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            audit_record(r, 0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every supervisor decision on an order, oldest first.
    pub fn approvals(&self, order_id: &str) -> Result<Vec<Approval>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, user, decision, reason FROM approvals WHERE order_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([order_id], |r| {
            Ok(Approval {
                at: r.get(0)?,
                user: r.get(1)?,
                decision: r.get(2)?,
                reason: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Orders left CARD_PROD_ONGOING by an application that stopped mid-run become
    /// CARD_PROD_FAILED ("interrupted"). Returns how many.
    pub fn recover_interrupted(&mut self, who: &Session) -> Result<usize, StoreError> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT order_id FROM orders WHERE status = ?1")?;
            let rows = stmt.query_map([Status::Ongoing.as_str()], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for id in &ids {
            let event = Event::Failed {
                reason: "interrupted: the application stopped during personalization; check the card and retry".into(),
            };
            self.apply(id, &event, who)?;
        }
        Ok(ids.len())
    }

    /// A remembered setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Remembers a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_times_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        // 2000-02-29 12:34:56 UTC = 951827696 (leap day of a century leap year).
        assert_eq!(format_time(951_827_696), "2000-02-29 12:34:56");
    }
}
