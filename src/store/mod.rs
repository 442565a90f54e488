//! The workstation's records in an embedded SQLite database: order statuses, approvals, the audit
//! trail and a few settings. They survive restarts.
//!
//! The database lives in the user's data directory (`$PERSODESK_DATA_DIR`, else
//! `$XDG_DATA_HOME/persodesk`, else `~/.local/share/persodesk`), file `persodesk.sqlite3`.
//! Transitions are checked by the pure state machine in [`crate::domain::status`]; this adapter
//! only stores them. Nothing sensitive is stored: order ids, statuses, reasons (which name steps and
//! rules), user names, roles and times.
//!
//! The audit trail is append-only, hash-chained and, with the key store's `audit` key, sealed
//! ([`audit`]): `persodesk audit verify` names the first record that was modified, reordered,
//! deleted or written without the key, a dropped protection trigger, and an order whose status
//! no record explains. Every status change is audited.
//!
//! - Approvals are evidence: an `approved` record names the approver, the chip model and a keyed
//!   digest of the reviewed data ([`crate::domain::approval`]); the `approved` column is kept for
//!   display only and trusted by nothing.
//! - A personalization in progress names its process (`owner`); any command that opens the store
//!   turns an order left CARD_PROD_ONGOING by a process that no longer runs into
//!   CARD_PROD_FAILED ("interrupted").
//! - Writers wait up to [`BUSY_TIMEOUT`] for the write lock, then fail loudly.
//! - Schema version ([`SCHEMA_VERSION`], `PRAGMA user_version`): older stores are migrated on
//!   open. All SQL lives in this module, so another database can replace it in one place.

pub mod audit;
pub mod key_pool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

pub use audit::Sealer;

use crate::domain::approval::{self, Decision};
use crate::domain::mask::scrub_digit_runs;
use crate::domain::review::Session;
use crate::domain::status::{self, Event, Status, TransitionError};

/// The database file name inside the data directory.
pub const DB_FILE: &str = "persodesk.sqlite3";
/// Environment variable that overrides the data directory (tests, portable installs).
pub const DATA_DIR_ENV: &str = "PERSODESK_DATA_DIR";
/// How long a writer waits for another writer's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The role recorded for changes the application makes by itself (recovery, preparation).
pub const SYSTEM_ROLE: &str = "system";

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
    /// A rule of the store refused the change (named).
    #[error("order {order}: {rule}")]
    Refused {
        /// The order id.
        order: String,
        /// The rule.
        rule: String,
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
    sealer: Option<Arc<dyn Sealer>>,
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
/// carry seals, orders their owning process, every order's status is explained by the trail.
pub const SCHEMA_VERSION: i64 = 2;

/// The append-only triggers' names; [`Store::verify_audit`] reports a missing one.
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

const SELECT_STATE: &str =
    "SELECT status, reason, approved, updated_at FROM orders WHERE order_id = ?1";

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// Brings an older database to [`SCHEMA_VERSION`] in one write transaction (concurrent opens
/// migrate once): v0 → v1 gives a trail written before the chain existed its chain, sealed in
/// storage order (what happened to it before cannot be told); v1 → v2 adds the seal and owner
/// columns, and an `adopted` record for every order whose status the trail does not explain.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return tx.commit();
    }
    let audit_columns = columns(&tx, "audit")?;
    if !audit_columns.iter().any(|c| c == "hash") {
        tx.execute_batch(
            "ALTER TABLE audit ADD COLUMN seq INTEGER;
             ALTER TABLE audit ADD COLUMN prev_hash TEXT;
             ALTER TABLE audit ADD COLUMN hash TEXT;",
        )?;
        chain_legacy(&tx)?;
    }
    if !audit_columns.iter().any(|c| c == "seal") {
        tx.execute_batch("ALTER TABLE audit ADD COLUMN seal TEXT;")?;
    }
    if !columns(&tx, "orders")?.iter().any(|c| c == "owner") {
        tx.execute_batch("ALTER TABLE orders ADD COLUMN owner TEXT;")?;
    }
    adopt_unexplained(&tx)?;
    tx.execute_batch(AUDIT_TRIGGERS)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Chains the records of a trail written before the chain existed, in storage order.
fn chain_legacy(tx: &Connection) -> rusqlite::Result<()> {
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
    set_head(tx, seq, &prev, None)
}

/// Versions before 2 did not audit preparation: each order whose status the trail does not explain gets
/// one `adopted` record stating it as found at the upgrade.
fn adopt_unexplained(tx: &Connection) -> rusqlite::Result<()> {
    for (order, status) in unexplained_orders(tx)? {
        append_audit(
            tx,
            None,
            &AuditRecord {
                at: now(),
                user: os_user(),
                role: SYSTEM_ROLE.into(),
                action: "adopted".into(),
                order_id: Some(order),
                outcome: format!("{status}: found at the schema upgrade to version 2"),
            },
        )?;
    }
    Ok(())
}

/// Orders (id, stored status) whose status is not the one the trail's last status record for
/// them states.
fn unexplained_orders(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stated: HashMap<String, String> = HashMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT order_id, outcome FROM audit WHERE order_id IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (order, outcome) = row?;
            if let Some(status) = stated_status(&outcome) {
                stated.insert(order, status.to_string());
            }
        }
    }
    let mut stmt = conn.prepare("SELECT order_id, status FROM orders ORDER BY order_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (order, status) = row?;
        if stated.get(&order) != Some(&status) {
            out.push((order, status));
        }
    }
    Ok(out)
}

/// The status an audit outcome states (`CARD_PROD_READY; reviewed ...` → `CARD_PROD_READY`).
fn stated_status(outcome: &str) -> Option<&str> {
    let end = outcome
        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .unwrap_or(outcome.len());
    let name = &outcome[..end];
    Status::parse(name).map(|_| name)
}

fn set_head(conn: &Connection, count: u64, hash: &str, seal: Option<&str>) -> rusqlite::Result<()> {
    let mut put = conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = ?2",
    )?;
    put.execute(params![audit::COUNT_KEY, count.to_string()])?;
    put.execute(params![audit::HEAD_KEY, hash])?;
    match seal {
        Some(seal) => {
            put.execute(params![audit::HEAD_SEAL_KEY, seal])?;
        }
        None => {
            conn.execute(
                "DELETE FROM settings WHERE key = ?1",
                [audit::HEAD_SEAL_KEY],
            )?;
        }
    }
    Ok(())
}

fn get_setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
}

/// The head kept in the settings: (count, hash), `None` when either is missing or unreadable.
fn read_head(conn: &Connection) -> rusqlite::Result<Option<(u64, String)>> {
    let count = get_setting(conn, audit::COUNT_KEY)?.and_then(|c| c.parse::<u64>().ok());
    Ok(count.zip(get_setting(conn, audit::HEAD_KEY)?))
}

/// Appends one record to the chain (sealed with `sealer` when given); the caller holds a write
/// transaction on `conn`. The new record follows the head kept in the settings (else the last
/// stored record), so a record removed from the end still shows as missing after later appends.
fn append_audit(
    conn: &Connection,
    sealer: Option<&dyn Sealer>,
    record: &AuditRecord,
) -> rusqlite::Result<()> {
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
    let seal = sealer.map(|s| audit::record_seal(s, &hash));
    conn.prepare_cached(
        "INSERT INTO audit (at, user, role, action, order_id, outcome, seq, prev_hash, hash, seal)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
        hash,
        seal
    ])?;
    let head_seal = sealer.map(|s| audit::head_seal(s, seq, &hash));
    set_head(conn, seq, &hash, head_seal.as_deref())
}

/// One order's stored state, read on `conn` (the connection or an open transaction).
fn read_state(conn: &Connection, order_id: &str) -> rusqlite::Result<Option<OrderState>> {
    conn.query_row(SELECT_STATE, [order_id], |r| {
        Ok(row_state(
            &r.get::<_, String>(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
        ))
    })
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

/// The operating-system account running this process (the identity the store records for its
/// own changes and the CLI uses in production).
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", nix::unistd::getuid()), |u| u.name)
}

/// This process as an owner token: `pid:start time` (clock ticks after boot, `/proc/<pid>/stat`
/// field 22), so a reused pid is not mistaken for the owner.
pub fn process_token() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or(0))
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: field 3 (state) onwards; start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when the process `token` names still runs.
fn owner_alive(token: &str) -> bool {
    let Some((pid, start)) = token.split_once(':') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => start_time(pid) == Some(start),
        _ => false,
    }
}

/// The reason an order left CARD_PROD_ONGOING by a stopped process gets.
pub const INTERRUPTED: &str =
    "interrupted: the application stopped during personalization; check the card and retry";

/// Runs `f` in an IMMEDIATE transaction, retrying a busy database a few times (each attempt
/// waits up to [`BUSY_TIMEOUT`]); then the error is returned for the caller to report loudly.
fn with_write<T>(
    conn: &mut Connection,
    mut f: impl FnMut(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)
            .and_then(|tx| {
                let out = f(&tx)?;
                tx.commit()?;
                Ok(out)
            });
        match result {
            Err(StoreError::Sql(e)) if is_busy(&e) && attempt < 3 => {
                tracing::warn!(attempt, "the store is busy; retrying");
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Store {
    /// Opens (creating when missing) the database in [`data_dir`].
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open(&data_dir()?.join(DB_FILE))
    }

    /// Opens (creating when missing) the database at `path`, and its directory, without an audit
    /// key: records are chained but not sealed (tests and test mode without an `audit` key).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, None, true)
    }

    /// Opens the database at `path` to verify it: no seal adoption and no recovery of
    /// interrupted runs (verifying writes nothing but a schema migration).
    pub fn open_for_verify(
        path: &Path,
        sealer: Option<Arc<dyn Sealer>>,
    ) -> Result<Store, StoreError> {
        Store::open_with(path, sealer, false)
    }

    /// Opens the database at `path` sealing every record with `sealer` (the `audit` key). A
    /// trail that holds no sealed record yet is adopted: an `audit-sealed` record seals it as
    /// found.
    pub fn open_sealed(path: &Path, sealer: Arc<dyn Sealer>) -> Result<Store, StoreError> {
        Store::open_with(path, Some(sealer), true)
    }

    /// Opens the database at `path`, sealed when `sealer` is given ([`Store::open_sealed`]),
    /// else unsealed ([`Store::open`]).
    pub fn open_keyed(path: &Path, sealer: Option<Arc<dyn Sealer>>) -> Result<Store, StoreError> {
        Store::open_with(path, sealer, true)
    }

    fn open_with(
        path: &Path,
        sealer: Option<Arc<dyn Sealer>>,
        write: bool,
    ) -> Result<Store, StoreError> {
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
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            sealer,
        };
        if write {
            store
                .adopt_seal()
                .map_err(|e| fail(format!("audit seal: {e}")))?;
            store
                .recover_dead()
                .map_err(|e| fail(format!("interrupted runs: {e}")))?;
        }
        Ok(store)
    }

    fn seal(&self) -> Option<&dyn Sealer> {
        self.sealer.as_deref()
    }

    /// True when records are sealed with an audit key.
    pub fn sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// First sealed open of a trail without any sealed record: one sealed `audit-sealed` record
    /// covers everything before it (through the chain).
    fn adopt_seal(&mut self) -> Result<(), StoreError> {
        let Some(sealer) = self.sealer.clone() else {
            return Ok(());
        };
        with_write(&mut self.conn, |tx| {
            let sealed: i64 = tx.query_row(
                "SELECT COUNT(*) FROM audit WHERE seal IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            let head_seal = get_setting(tx, audit::HEAD_SEAL_KEY)?;
            if sealed > 0 || head_seal.is_some() {
                return Ok(());
            }
            let count: i64 = tx.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
            append_audit(
                tx,
                Some(sealer.as_ref()),
                &AuditRecord {
                    at: now(),
                    user: os_user(),
                    role: SYSTEM_ROLE.into(),
                    action: audit::ADOPTION.into(),
                    order_id: None,
                    outcome: format!(
                        "sealing starts with key {}; {count} earlier record(s) sealed as found",
                        sealer.key_name()
                    ),
                },
            )?;
            Ok(())
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens another connection to the same database (for a worker thread), with the same seal.
    pub fn reopen(&self) -> Result<Store, StoreError> {
        Store::open_with(&self.path, self.sealer.clone(), true)
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
    /// already reviewed keep their state, and so does a rejected order (a decision stands until a
    /// new decision). Each change is audited (by the operating-system account, role `system`).
    /// Returns the resulting state of each order, in order.
    pub fn record_preparation(
        &mut self,
        results: &[(&str, Option<&str>)],
    ) -> Result<Vec<OrderState>, StoreError> {
        let user = os_user();
        self.record_preparation_as(results, &user, SYSTEM_ROLE)
    }

    /// [`Store::record_preparation`] audited as `who`.
    pub fn record_preparation_by(
        &mut self,
        results: &[(&str, Option<&str>)],
        who: &Session,
    ) -> Result<Vec<OrderState>, StoreError> {
        self.record_preparation_as(results, &who.user, who.role.as_str())
    }

    fn record_preparation_as(
        &mut self,
        results: &[(&str, Option<&str>)],
        user: &str,
        role: &str,
    ) -> Result<Vec<OrderState>, StoreError> {
        let sealer = self.sealer.clone();
        with_write(&mut self.conn, |tx| {
            let at = now();
            let mut out = Vec::with_capacity(results.len());
            for (id, failure) in results {
                let current = read_state(tx, id)?;
                let event = match failure {
                    None => Event::Prepared,
                    Some(reason) => Event::PrepareFailed {
                        reason: scrub_digit_runs(reason),
                    },
                };
                let rejected = latest_decision(tx, id)?.as_deref() == Some("rejected");
                let from = current.as_ref().map_or(Status::Requested, |s| s.status);
                let to = match status::next(from, &event) {
                    Ok(to) if !(rejected && from == Status::DataException) => to,
                    // Already reviewed, rejected or produced: the stored state stands.
                    _ => {
                        out.push(current.unwrap_or(OrderState {
                            status: from,
                            reason: None,
                            approved: false,
                            updated_at: at,
                        }));
                        continue;
                    }
                };
                let reason = event.reason();
                let unchanged = current
                    .as_ref()
                    .is_some_and(|c| c.status == to && c.reason.as_deref() == reason);
                if unchanged {
                    out.extend(current);
                    continue;
                }
                tx.prepare_cached(
                    "INSERT INTO orders (order_id, status, reason, approved, updated_at)
                     VALUES (?1, ?2, ?3, 0, ?4)
                     ON CONFLICT(order_id) DO UPDATE SET status = ?2, reason = ?3, approved = 0,
                       updated_at = ?4, owner = NULL",
                )?
                .execute(params![id, to.as_str(), reason, at])?;
                append_audit(
                    tx,
                    sealer.as_deref(),
                    &AuditRecord {
                        at,
                        user: user.to_string(),
                        role: role.to_string(),
                        action: event.name().to_string(),
                        order_id: Some(id.to_string()),
                        outcome: outcome_of(to, reason, None),
                    },
                )?;
                out.push(OrderState {
                    status: to,
                    reason: reason.map(str::to_string),
                    approved: false,
                    updated_at: at,
                });
            }
            Ok(out)
        })
    }

    /// Applies `event` to an order, checked by the state machine; records approvals and the
    /// audit trail. A refused event is audited too, and returned as an error. An approval made
    /// here carries no evidence of the reviewed data (use [`Store::approve`]): personalization
    /// does not accept it.
    pub fn apply(
        &mut self,
        order_id: &str,
        event: &Event,
        who: &Session,
    ) -> Result<OrderState, StoreError> {
        self.apply_with(order_id, event, who, None)
    }

    /// A supervisor's approval as evidence: the record names the approver and `evidence` (the
    /// chip model and the keyed digest of the reviewed data, [`approval::Evidence`]).
    pub fn approve(
        &mut self,
        order_id: &str,
        who: &Session,
        evidence: &approval::Evidence,
    ) -> Result<OrderState, StoreError> {
        self.apply_with(order_id, &Event::Approved, who, Some(evidence))
    }

    fn apply_with(
        &mut self,
        order_id: &str,
        event: &Event,
        who: &Session,
        evidence: Option<&approval::Evidence>,
    ) -> Result<OrderState, StoreError> {
        let sealer = self.sealer.clone();
        let token = process_token();
        let applied = with_write(&mut self.conn, |tx| {
            let at = now();
            let current = read_state(tx, order_id)?
                .ok_or_else(|| StoreError::UnknownOrder(order_id.to_string()))?;
            let to = match status::next(current.status, event) {
                Ok(to) => to,
                Err(e) => return Ok(Err(e)),
            };
            let reason = event.reason().map(scrub_digit_runs);
            let approved = match event {
                Event::Approved => true,
                Event::Started { .. } | Event::Completed | Event::Failed { .. } => current.approved,
                _ => false,
            };
            let owner = matches!(event, Event::Started { .. }).then_some(token.as_str());
            tx.execute(
                "UPDATE orders SET status = ?2, reason = ?3, approved = ?4, updated_at = ?5,
                   owner = ?6 WHERE order_id = ?1",
                params![
                    order_id,
                    to.as_str(),
                    reason,
                    i64::from(approved),
                    at,
                    owner
                ],
            )?;
            if let Some(decision) = decision_name(event) {
                tx.execute(
                    "INSERT INTO approvals (order_id, at, user, decision, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![order_id, at, who.user, decision, reason],
                )?;
            }
            append_audit(
                tx,
                sealer.as_deref(),
                &AuditRecord {
                    at,
                    user: who.user.clone(),
                    role: who.role.as_str().to_string(),
                    action: event.name().to_string(),
                    order_id: Some(order_id.to_string()),
                    outcome: outcome_of(to, reason.as_deref(), event_note(event, evidence)),
                },
            )?;
            Ok(Ok(OrderState {
                status: to,
                reason,
                approved,
                updated_at: at,
            }))
        })?;
        applied.or_else(|e| {
            self.audit(who, event.name(), Some(order_id), &format!("refused: {e}"))?;
            Err(StoreError::Transition {
                order: order_id.to_string(),
                source: e,
            })
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
        self.audit_as(&who.user, who.role.as_str(), action, order_id, outcome)
    }

    fn audit_as(
        &self,
        user: &str,
        role: &str,
        action: &str,
        order_id: Option<&str>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        append_audit(
            &tx,
            self.seal(),
            &AuditRecord {
                at: now(),
                user: user.to_string(),
                role: role.to_string(),
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

    /// Checks the audit trail's hash chain, the head kept in the settings and, in a sealed
    /// store, every seal; then the store's protections (the append-only triggers) and that every
    /// order's status is the one the trail states. The verdict names the first problem.
    pub fn verify_audit(&self) -> Result<audit::Verdict, StoreError> {
        // One read transaction: the trail, the head and the orders from the same snapshot.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)?;
        let records = self.audit_chain()?;
        let head = read_head(&tx)?;
        let head_seal = get_setting(&tx, audit::HEAD_SEAL_KEY)?;
        let mut verdict = audit::verify_sealed(
            &records,
            head.as_ref().map(|(count, hash)| audit::Head {
                count: *count,
                hash,
                seal: head_seal.as_deref(),
            }),
            self.seal(),
        );
        if verdict.problem.is_none() {
            verdict.problem = store_problem(&tx)?;
        }
        tx.commit()?;
        Ok(verdict)
    }

    /// The head `(count, hash)` for a copy kept elsewhere (`persodesk audit export`).
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(read_head(&self.conn)?)
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

    /// The newest review decision on an order, read from the audit trail (approved with its
    /// evidence, rejected, or withdrawn). Only as trustworthy as [`Store::verify_audit`] says.
    pub fn decision(&self, order_id: &str) -> Result<Option<Decision>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT user, action, outcome FROM audit WHERE order_id = ?1
                   AND action IN ('approved', 'rejected', 'approval-withdrawn', 'prepared',
                                  'prepare-failed')
                   AND outcome NOT LIKE 'refused%'
                 ORDER BY id DESC LIMIT 1",
                [order_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.and_then(|(user, action, outcome)| approval::decision_of(&action, &user, &outcome)))
    }

    /// The keyed digest of reviewed data ([`approval::review_message`]): HMAC-SHA256 under the
    /// audit key in a sealed store, else plain SHA-256 (test stores; not evidence).
    pub fn review_digest(&self, message: &[u8]) -> String {
        match self.seal() {
            Some(s) => hex::encode_upper(s.mac(message)),
            None => {
                use sha2::Digest;
                hex::encode_upper(sha2::Sha256::digest(message))
            }
        }
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

    /// Orders left CARD_PROD_ONGOING by a process that no longer runs become CARD_PROD_FAILED
    /// ("interrupted"), audited as `who`. Returns how many.
    pub fn recover_interrupted(&mut self, who: &Session) -> Result<usize, StoreError> {
        self.recover_as(&who.user, who.role.as_str())
    }

    /// [`Store::recover_interrupted`] as the application itself (every open).
    fn recover_dead(&mut self) -> Result<usize, StoreError> {
        self.recover_as(&os_user(), SYSTEM_ROLE)
    }

    fn recover_as(&mut self, user: &str, role: &str) -> Result<usize, StoreError> {
        let ongoing: Vec<(String, Option<String>)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT order_id, owner FROM orders WHERE status = ?1")?;
            let rows =
                stmt.query_map([Status::Ongoing.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let sealer = self.sealer.clone();
        let mut n = 0;
        for (id, owner) in ongoing {
            if owner.as_deref().is_some_and(owner_alive) {
                continue;
            }
            n += with_write(&mut self.conn, |tx| {
                // Re-checked under the write lock: the run may have ended meanwhile.
                let still: Option<Option<String>> = tx
                    .query_row(
                        "SELECT owner FROM orders WHERE order_id = ?1 AND status = ?2",
                        params![id, Status::Ongoing.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if still != Some(owner.clone()) {
                    return Ok(0);
                }
                tx.execute(
                    "UPDATE orders SET status = ?2, reason = ?3, updated_at = ?4, owner = NULL
                     WHERE order_id = ?1",
                    params![id, Status::Failed.as_str(), INTERRUPTED, now()],
                )?;
                append_audit(
                    tx,
                    sealer.as_deref(),
                    &AuditRecord {
                        at: now(),
                        user: user.to_string(),
                        role: role.to_string(),
                        action: "perso-failed".into(),
                        order_id: Some(id.clone()),
                        outcome: outcome_of(Status::Failed, Some(INTERRUPTED), None),
                    },
                )?;
                Ok(1)
            })?;
        }
        Ok(n)
    }

    /// A remembered setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(get_setting(&self.conn, key)?)
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

/// The newest decision recorded in the approvals table (`approved`, `rejected`, `withdrawn`).
fn latest_decision(conn: &Connection, order_id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT decision FROM approvals WHERE order_id = ?1 ORDER BY id DESC LIMIT 1",
        [order_id],
        |r| r.get(0),
    )
    .optional()
}

fn decision_name(event: &Event) -> Option<&'static str> {
    match event {
        Event::Approved => Some("approved"),
        Event::Rejected { .. } => Some("rejected"),
        Event::ApprovalWithdrawn { .. } => Some("withdrawn"),
        _ => None,
    }
}

/// What an event's record notes besides the status: the evidence of an approval, the tester's
/// approval bypass.
fn event_note(event: &Event, evidence: Option<&approval::Evidence>) -> Option<String> {
    match (event, evidence) {
        (Event::Approved, Some(e)) => Some(e.to_string()),
        (Event::Approved, None) => Some("no evidence of the reviewed data".into()),
        (
            Event::Started {
                approval_bypass: true,
            },
            _,
        ) => Some("approval bypass: tester on test keys".into()),
        _ => None,
    }
}

/// `STATUS`, `STATUS: reason` and/or `STATUS; note`.
fn outcome_of(to: Status, reason: Option<&str>, note: Option<String>) -> String {
    let mut s = to.to_string();
    if let Some(n) = note {
        s.push_str("; ");
        s.push_str(&n);
    }
    if let Some(r) = reason {
        s.push_str(": ");
        s.push_str(r);
    }
    s
}

/// A dropped trigger or an order whose status the trail does not explain.
fn store_problem(conn: &Connection) -> rusqlite::Result<Option<audit::ChainProblem>> {
    for name in TRIGGERS {
        let present: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
            [name],
            |r| r.get(0),
        )?;
        if present == 0 {
            return Ok(Some(audit::ChainProblem::Store {
                detail: format!("the append-only trigger {name} was dropped"),
            }));
        }
    }
    Ok(unexplained_orders(conn)?
        .into_iter()
        .next()
        .map(|(order, status)| audit::ChainProblem::Store {
            detail: format!(
                "order {order}: its status {status} is not the one the trail records (changed around the store)"
            ),
        }))
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
