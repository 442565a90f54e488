//! The production records: order statuses, approvals, the audit trail, a few settings and the
//! order queue. They survive restarts and, on PostgreSQL, are shared by every station.
//!
//! One port, two engines: [`Store`] holds the rules (the state machine, the hash chain, recovery)
//! and talks to its engine only through [`Engine`] (transactions) and [`Tx`] (the primitive reads
//! and writes inside one). [`sqlite`] is the embedded default — a file in the user's data
//! directory (`$PERSODESK_DATA_DIR`, else `$XDG_DATA_HOME/persodesk`, else
//! `~/.local/share/persodesk`), `persodesk.sqlite3` — and [`postgres`] the shared store of a bureau.
//! Which one: `--store URL`, else `$PERSODESK_STORE`, else the machine configuration's `store`,
//! else the data directory's SQLite file ([`StoreLocation`]).
//!
//! Transitions are checked by the pure state machine in [`crate::domain::status`]; the engines
//! only store them. Nothing sensitive is stored in clear: order ids, statuses, reasons (which
//! name steps and rules), user names, roles and times; queued orders only as a JWE or sealed
//! under the key store's `store` key ([`queue`]).
//!
//! The audit trail is append-only, hash-chained and, with the key store's `audit` key, sealed
//! ([`audit`]): `persodesk audit verify` names the first record that was modified, reordered,
//! deleted or written without the key, a dropped protection trigger, and an order whose status
//! no record explains. Every status change is audited. Appends are serialised by the engine's
//! write transaction (SQLite: IMMEDIATE; PostgreSQL: a row lock on the chain lock row taken first
//! in every write transaction), so the chain never forks however many stations write.
//!
//! - Approvals are evidence: an `approved` record names the approver, the chip model and a keyed
//!   digest of the reviewed data ([`crate::domain::approval`]); the `approved` column is kept for
//!   display only and trusted by nothing.
//! - A personalization in progress names its process (`owner`); any command that opens the store
//!   turns an order left CARD_PROD_ONGOING by a process of this machine that no longer runs into
//!   CARD_PROD_FAILED ("interrupted"); a station's claim carries a lease instead ([`queue`]).
//! - Schema versions are migrated at open, per engine ([`sqlite::SCHEMA_VERSION`],
//!   [`postgres::SCHEMA_VERSION`]).

pub mod audit;
pub mod key_pool;
pub mod postgres;
pub mod queue;
pub mod sqlite;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use audit::Sealer;
pub use queue::{Claim, QueueCounts, QueuedOrder};

use crate::domain::approval;
use crate::domain::mask::debug_fields;
use crate::domain::status::{Event, Status, TransitionError};

/// The database file name inside the data directory.
pub const DB_FILE: &str = "persodesk.sqlite3";
/// Environment variable that overrides the data directory (tests, portable installs).
pub const DATA_DIR_ENV: &str = "PERSODESK_DATA_DIR";
/// Environment variable naming the store (a URL or a path), below `--store`.
pub const STORE_ENV: &str = "PERSODESK_STORE";
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
        /// The database path or URL (without a password).
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A store URL that names no engine.
    #[error("store {0}: not a store (postgresql://…, sqlite:PATH or a path)")]
    BadLocation(String),
    /// An SQLite operation failed.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A PostgreSQL operation failed.
    #[error("store (PostgreSQL): {0}")]
    Postgres(String),
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
    /// The audit key could not seal (nothing was written).
    #[error("audit seal ({key}): {rule}")]
    Seal {
        /// The audit key's name.
        key: String,
        /// Why it could not seal.
        rule: String,
    },
}

impl StoreError {
    /// The error of `sealer` failing with `rule`.
    pub fn seal(sealer: &dyn Sealer, rule: String) -> StoreError {
        StoreError::Seal {
            key: sealer.key_name(),
            rule,
        }
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        // The server's message and SQLSTATE (no parameters are ever part of it).
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(format!("{} ({})", db.message(), db.code().code())),
            None => StoreError::Postgres(e.to_string()),
        }
    }
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

/// Where the store is.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgresql://user@host:port/db?host=/socket/dir`).
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for StoreLocation {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(p) => write!(f, "{}", p.display()),
            StoreLocation::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// `postgresql://user:secret@host/db` → `postgresql://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl StoreLocation {
    /// Parses `postgresql://…` / `postgres://…` (PostgreSQL), `sqlite:PATH` or a plain path
    /// (SQLite). An unknown scheme (`mysql://…`) is refused, not taken for a file name.
    pub fn parse(text: &str) -> Result<StoreLocation, StoreError> {
        let t = text.trim();
        if t.starts_with("postgresql://") || t.starts_with("postgres://") {
            return Ok(StoreLocation::Postgres(t.to_string()));
        }
        if let Some(path) = t.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::BadLocation(text.to_string()));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if t.is_empty() || t.contains("://") {
            return Err(StoreError::BadLocation(redact_password(text)));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(t)))
    }

    /// The store in force: `flag` (`--store`), else `$PERSODESK_STORE`, else `configured` (the
    /// machine configuration's `store`), else the data directory's SQLite file.
    pub fn resolve(
        flag: Option<&str>,
        configured: Option<&str>,
    ) -> Result<StoreLocation, StoreError> {
        let env = std::env::var(STORE_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        match flag
            .map(str::to_string)
            .or(env)
            .or(configured.map(str::to_string))
        {
            Some(text) => StoreLocation::parse(&text),
            None => Ok(StoreLocation::Sqlite(data_dir()?.join(DB_FILE))),
        }
    }

    /// True for a PostgreSQL store.
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
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
    crate::domain::date::utc_date_time(secs, ' ')
}

/// The primitive reads and writes of one engine inside one transaction. The rules live in
/// [`Store`]; an engine only maps these to its SQL. To add a table: a migration in each engine
/// (`sqlite::migrate`, `postgres::MIGRATIONS`), primitives here, rules in [`Store`] or a module
/// beside [`queue`].
pub trait Tx: queue::QueueTx + key_pool::KeyPoolTx {
    /// One order's stored state.
    fn state(&mut self, order: &str) -> Result<Option<OrderState>, StoreError>;
    /// Every order's state.
    fn states(&mut self) -> Result<Vec<(String, OrderState)>, StoreError>;
    /// Inserts an order, or resets an existing one, to `row` (preparation: the caller clears
    /// `approved` and `owner`).
    fn put_prepared(&mut self, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError>;
    /// Updates an order's status row.
    fn update_order(&mut self, order: &str, row: &OrderRow<'_>) -> Result<(), StoreError>;
    /// The newest decision in the approvals table.
    fn latest_decision(&mut self, order: &str) -> Result<Option<String>, StoreError>;
    /// Adds a row to the approvals table.
    fn insert_approval(&mut self, order: &str, row: &ApprovalRow<'_>) -> Result<(), StoreError>;
    /// Every decision on an order, oldest first.
    fn approvals(&mut self, order: &str) -> Result<Vec<Approval>, StoreError>;
    /// A setting.
    fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a setting.
    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Removes a setting.
    fn delete_setting(&mut self, key: &str) -> Result<(), StoreError>;
    /// The newest chained record's (seq, hash), in storage order.
    fn last_chained(&mut self) -> Result<Option<(u64, String)>, StoreError>;
    /// Appends a chained record.
    fn insert_audit(&mut self, record: &audit::ChainedRecord) -> Result<(), StoreError>;
    /// The whole trail in storage order.
    fn audit_chain(&mut self) -> Result<Vec<audit::ChainedRecord>, StoreError>;
    /// The newest `limit` records, newest first.
    fn audit_trail(&mut self, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// The newest review record (user, action, outcome) of an order.
    fn decision_row(&mut self, order: &str)
    -> Result<Option<(String, String, String)>, StoreError>;
    /// (order, outcome) of every record naming an order, in storage order.
    fn order_outcomes(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// Orders CARD_PROD_ONGOING with their owner.
    fn ongoing(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError>;
    /// How many records carry a seal, and how many there are.
    fn sealed_count(&mut self) -> Result<(i64, i64), StoreError>;
    /// The first append-only trigger that is missing (or disabled).
    fn missing_trigger(&mut self) -> Result<Option<String>, StoreError>;
}

/// The columns of an order's status row written together.
#[derive(Debug, Clone, Copy)]
pub struct OrderRow<'a> {
    /// The new status.
    pub status: Status,
    /// Its reason.
    pub reason: Option<&'a str>,
    /// Approved (display only).
    pub approved: bool,
    /// When.
    pub at: i64,
    /// The owning process while CARD_PROD_ONGOING.
    pub owner: Option<&'a str>,
}

/// The columns of one approvals row (a supervisor's decision on an order).
#[derive(Debug, Clone, Copy)]
pub struct ApprovalRow<'a> {
    /// When.
    pub at: i64,
    /// The supervisor.
    pub user: &'a str,
    /// `approved` or `rejected`.
    pub decision: &'a str,
    /// The reason given (rejections).
    pub reason: Option<&'a str>,
}

/// A transaction body.
pub type TxBody<'a> = dyn FnMut(&mut dyn Tx) -> Result<(), StoreError> + 'a;

/// A database engine: runs transaction bodies.
pub trait Engine: Send {
    /// Runs `body` in a write transaction that serialises against every other writer (retried
    /// when the engine reports a transient conflict), committed when it returns `Ok`.
    fn write(&self, body: &mut TxBody<'_>) -> Result<(), StoreError>;
    /// A write transaction that appends nothing to the audit trail (leases): it need not
    /// queue behind the chain's writers. By default the same as [`Engine::write`].
    fn write_unchained(&self, body: &mut TxBody<'_>) -> Result<(), StoreError> {
        self.write(body)
    }
    /// Runs `body` in a read transaction (one consistent snapshot).
    fn read(&self, body: &mut TxBody<'_>) -> Result<(), StoreError>;
    /// Another handle on the same database (a worker thread's).
    fn reopen(&self) -> Result<Box<dyn Engine>, StoreError>;
}

/// The statuses, approvals, audit trail, settings and queue: the port every front end uses.
pub struct Store {
    engine: Box<dyn Engine>,
    location: StoreLocation,
    path: PathBuf,
    sealer: Option<Arc<dyn Sealer>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(f, "Store", &[("location", &self.location)])
    }
}

/// The head kept in the settings: (count, hash), `None` when either is missing or unreadable.
fn read_head(tx: &mut dyn Tx) -> Result<Option<(u64, String)>, StoreError> {
    let count = tx
        .setting(audit::COUNT_KEY)?
        .and_then(|c| c.parse::<u64>().ok());
    Ok(count.zip(tx.setting(audit::HEAD_KEY)?))
}

/// Writes the head (count, hash, seal) to the settings.
pub(crate) fn set_head(
    tx: &mut dyn Tx,
    count: u64,
    hash: &str,
    seal: Option<&str>,
) -> Result<(), StoreError> {
    tx.put_setting(audit::COUNT_KEY, &count.to_string())?;
    tx.put_setting(audit::HEAD_KEY, hash)?;
    match seal {
        Some(seal) => tx.put_setting(audit::HEAD_SEAL_KEY, seal),
        None => tx.delete_setting(audit::HEAD_SEAL_KEY),
    }
}

/// [`append_audit`] of `action` on `order_id` by `by` at `at` with `outcome`.
pub(crate) fn append_audit_by(
    tx: &mut dyn Tx,
    sealer: Option<&dyn Sealer>,
    by: Actor<'_>,
    at: i64,
    action: &str,
    order_id: Option<&str>,
    outcome: String,
) -> Result<(), StoreError> {
    append_audit(
        tx,
        sealer,
        &AuditRecord::by(by, at, action, order_id, outcome),
    )
}

/// Appends one record to the chain (sealed with `sealer` when given) inside a write
/// transaction. The new record follows the head kept in the settings (else the last stored
/// record), so a record removed from the end still shows as missing after later appends.
pub(crate) fn append_audit(
    tx: &mut dyn Tx,
    sealer: Option<&dyn Sealer>,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    let head = match read_head(tx)? {
        Some(head) => head,
        None => tx
            .last_chained()?
            .unwrap_or((0, audit::GENESIS.to_string())),
    };
    let seq = head.0.saturating_add(1);
    let hash = audit::record_hash(&head.1, seq, record);
    let seal = sealer
        .map(|s| audit::record_seal(s, &hash).map_err(|e| StoreError::seal(s, e)))
        .transpose()?;
    let head_seal = sealer
        .map(|s| audit::head_seal(s, seq, &hash).map_err(|e| StoreError::seal(s, e)))
        .transpose()?;
    tx.insert_audit(&audit::ChainedRecord {
        seq: Some(seq),
        record: record.clone(),
        prev_hash: Some(head.1),
        hash: Some(hash.clone()),
        seal,
    })?;
    set_head(tx, seq, &hash, head_seal.as_deref())
}

/// Who wrote an audit record: the user and the role they worked as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor<'a> {
    /// The user name.
    pub user: &'a str,
    /// The role (or [`SYSTEM_ROLE`]).
    pub role: &'a str,
}

impl<'a> Actor<'a> {
    /// A signed-in user in their role.
    pub(crate) fn of(who: &'a crate::domain::review::Session) -> Self {
        Actor {
            user: &who.user,
            role: who.role.as_str(),
        }
    }
}

impl AuditRecord {
    /// A record of `action` by `by` at `at`, on `order_id` when given, with its `outcome`.
    pub(crate) fn by(
        by: Actor<'_>,
        at: i64,
        action: &str,
        order_id: Option<&str>,
        outcome: String,
    ) -> Self {
        AuditRecord {
            at,
            user: by.user.to_string(),
            role: by.role.to_string(),
            action: action.to_string(),
            order_id: order_id.map(str::to_string),
            outcome,
        }
    }
}

/// Ends an abandoned run inside a write transaction: order `id` becomes CARD_PROD_FAILED for
/// `reason` (its approval kept, no owner) and the trail gets a `perso-failed` record by `by`.
/// The one write both a dead process's run ([`Store::recover_interrupted`]) and a lapsed station
/// lease ([`Store::expire_leases`]) end with.
pub(crate) fn fail_abandoned(
    tx: &mut dyn Tx,
    sealer: Option<&dyn Sealer>,
    id: &str,
    reason: &str,
    by: Actor<'_>,
    at: i64,
) -> Result<(), StoreError> {
    let approved = tx.state(id)?.is_some_and(|s| s.approved);
    tx.update_order(
        id,
        &OrderRow {
            status: Status::Failed,
            reason: Some(reason),
            approved,
            at,
            owner: None,
        },
    )?;
    append_audit_by(
        tx,
        sealer,
        by,
        at,
        "perso-failed",
        Some(id),
        outcome_of(Status::Failed, Some(reason), None),
    )
}

/// Orders (id, stored status) whose status is not the one the trail's last status record for
/// them states.
pub(crate) fn unexplained_orders(tx: &mut dyn Tx) -> Result<Vec<(String, String)>, StoreError> {
    let mut stated: HashMap<String, String> = HashMap::new();
    for (order, outcome) in tx.order_outcomes()? {
        if let Some(status) = stated_status(&outcome) {
            stated.insert(order, status.to_string());
        }
    }
    let mut out: Vec<(String, String)> = tx
        .states()?
        .into_iter()
        .filter(|(id, s)| stated.get(id).map(String::as_str) != Some(s.status.as_str()))
        .map(|(id, s)| (id, s.status.as_str().to_string()))
        .collect();
    out.sort();
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

/// Versions before 2 did not audit preparation: each order whose status the trail does not
/// explain gets one `adopted` record stating it as found at the upgrade.
pub(crate) fn adopt_unexplained(tx: &mut dyn Tx) -> Result<(), StoreError> {
    let me = os_user();
    for (order, status) in unexplained_orders(tx)? {
        let outcome = format!("{status}: found at the schema upgrade to version 2");
        let record = AuditRecord::by(
            Actor {
                user: &me,
                role: SYSTEM_ROLE,
            },
            now(),
            "adopted",
            Some(&order),
            outcome,
        );
        append_audit(tx, None, &record)?;
    }
    Ok(())
}

/// The first of an engine's append-only triggers that `present` does not find.
pub(crate) fn first_missing(
    triggers: &[&str],
    mut present: impl FnMut(&str) -> Result<bool, StoreError>,
) -> Result<Option<String>, StoreError> {
    for name in triggers {
        if !present(name)? {
            return Ok(Some((*name).to_string()));
        }
    }
    Ok(None)
}

/// A dropped trigger or an order whose status the trail does not explain.
fn store_problem(tx: &mut dyn Tx) -> Result<Option<audit::ChainProblem>, StoreError> {
    if let Some(name) = tx.missing_trigger()? {
        return Ok(Some(audit::ChainProblem::Store {
            detail: format!("the append-only trigger {name} was dropped"),
        }));
    }
    Ok(unexplained_orders(tx)?
        .into_iter()
        .next()
        .map(|(order, status)| audit::ChainProblem::Store {
            detail: format!(
                "order {order}: its status {status} is not the one the trail records (changed around the store)"
            ),
        }))
}

/// The operating-system account running this process (the identity the store records for its
/// own changes and the CLI uses in production).
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", nix::unistd::getuid()), |u| u.name)
}

/// This process as an owner token: `pid:start time@host` (start time in clock ticks after boot,
/// `/proc/<pid>/stat` field 22), so a reused pid is not mistaken for the owner, and a shared
/// store's other machines do not judge this machine's processes.
pub fn process_token() -> String {
    let pid = std::process::id();
    format!("{pid}:{}@{}", start_time(pid).unwrap_or(0), host_name())
}

/// This machine's host name (`?` when unknown).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: field 3 (state) onwards; start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when the process `token` names still runs. A station's lease token
/// (`station:…`, [`queue`]) is never judged by process: its lease decides.
fn owner_alive(token: &str) -> bool {
    if token.starts_with(queue::LEASE_OWNER_PREFIX) {
        return true;
    }
    let token = match token.rsplit_once('@') {
        // Another machine's process: this one cannot tell (leases decide there).
        Some((_, host)) if host != host_name() => return true,
        Some((local, _)) => local,
        None => token,
    };
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
pub(crate) fn outcome_of(to: Status, reason: Option<&str>, note: Option<String>) -> String {
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

mod port;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_tokens_of_other_hosts_are_not_judged_here() {
        assert!(owner_alive(&process_token()));
        // A pid that cannot run (above pid_max) on this host is dead; on another host, unknown.
        assert!(!owner_alive("999999999:1"));
        assert!(!owner_alive(&format!("999999999:1@{}", host_name())));
        assert!(owner_alive("999999999:1@another-host.invalid"));
    }
}
