//! [`Store`]'s rules over whichever engine holds the records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    Actor, Approval, ApprovalRow, AuditRecord, Engine, INTERRUPTED, OrderRow, OrderState,
    SYSTEM_ROLE, Sealer, Store, StoreError, StoreLocation, Tx, TxBody, append_audit,
    append_audit_by, audit, data_dir, decision_name, event_note, fail_abandoned, now, os_user,
    outcome_of, owner_alive, process_token, read_head, store_problem,
};
use crate::domain::approval::{self, Decision};
use crate::domain::mask::scrub_digit_runs;
use crate::domain::review::Session;
use crate::domain::status::{self, Event, Status};

impl Store {
    /// Opens (creating when missing) the database in [`data_dir`].
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open(&data_dir()?.join(super::DB_FILE))
    }

    /// Opens (creating when missing) the SQLite database at `path`, and its directory, without
    /// an audit key: records are chained but not sealed (tests and test mode without an `audit`
    /// key).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(&StoreLocation::Sqlite(path.to_path_buf()), None, true)
    }

    /// Opens the SQLite database at `path` to verify it: no seal adoption and no recovery of
    /// interrupted runs (verifying writes nothing but a schema migration).
    pub fn open_for_verify(
        path: &Path,
        sealer: Option<Arc<dyn Sealer>>,
    ) -> Result<Store, StoreError> {
        Store::open_with(&StoreLocation::Sqlite(path.to_path_buf()), sealer, false)
    }

    /// Opens the SQLite database at `path` sealing every record with `sealer` (the `audit`
    /// key). A trail that holds no sealed record yet is adopted: an `audit-sealed` record seals
    /// it as found.
    pub fn open_sealed(path: &Path, sealer: Arc<dyn Sealer>) -> Result<Store, StoreError> {
        Store::open_with(
            &StoreLocation::Sqlite(path.to_path_buf()),
            Some(sealer),
            true,
        )
    }

    /// Opens the SQLite database at `path`, sealed when `sealer` is given.
    pub fn open_keyed(path: &Path, sealer: Option<Arc<dyn Sealer>>) -> Result<Store, StoreError> {
        Store::open_with(&StoreLocation::Sqlite(path.to_path_buf()), sealer, true)
    }

    /// Opens the store at `location` (either engine), sealed when `sealer` is given; the schema
    /// is migrated, and orders left by dead processes are recovered.
    pub fn open_at(
        location: &StoreLocation,
        sealer: Option<Arc<dyn Sealer>>,
    ) -> Result<Store, StoreError> {
        Store::open_with(location, sealer, true)
    }

    /// Opens the store at `location` to verify it (nothing written but a schema migration).
    pub fn open_at_for_verify(
        location: &StoreLocation,
        sealer: Option<Arc<dyn Sealer>>,
    ) -> Result<Store, StoreError> {
        Store::open_with(location, sealer, false)
    }

    fn open_with(
        location: &StoreLocation,
        sealer: Option<Arc<dyn Sealer>>,
        write: bool,
    ) -> Result<Store, StoreError> {
        let fail = |reason: String| StoreError::Open {
            path: location.to_string(),
            reason,
        };
        let (engine, path): (Box<dyn Engine>, PathBuf) = match location {
            StoreLocation::Sqlite(path) => (
                Box::new(super::sqlite::SqliteEngine::open(path)?),
                path.clone(),
            ),
            StoreLocation::Postgres(url) => (
                Box::new(super::postgres::PgEngine::open(url).map_err(|e| fail(e.to_string()))?),
                PathBuf::from(location.to_string()),
            ),
        };
        let store = Store {
            engine,
            location: location.clone(),
            path,
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

    /// Runs `f` in a write transaction and returns its value.
    pub(crate) fn write<T>(
        &self,
        f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        returning(|body| self.engine.write(body), f)
    }

    /// Runs `f` in a write transaction that appends no audit record ([`Engine::write_unchained`]).
    pub(crate) fn write_unchained<T>(
        &self,
        f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        returning(|body| self.engine.write_unchained(body), f)
    }

    /// Runs `f` in a read transaction and returns its value.
    pub(crate) fn read<T>(
        &self,
        f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        returning(|body| self.engine.read(body), f)
    }

    pub(crate) fn seal(&self) -> Option<&dyn Sealer> {
        self.sealer.as_deref()
    }

    /// True when records are sealed with an audit key.
    pub fn sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// First sealed open of a trail without any sealed record: one sealed `audit-sealed` record
    /// covers everything before it (through the chain).
    fn adopt_seal(&self) -> Result<(), StoreError> {
        let Some(sealer) = self.sealer.clone() else {
            return Ok(());
        };
        self.write(|tx| {
            let (sealed, count) = tx.sealed_count()?;
            let head_seal = tx.setting(audit::HEAD_SEAL_KEY)?;
            if sealed > 0 || head_seal.is_some() {
                return Ok(());
            }
            append_audit_by(
                tx,
                Some(sealer.as_ref()),
                Actor {
                    user: &os_user(),
                    role: SYSTEM_ROLE,
                },
                now(),
                audit::ADOPTION,
                None,
                format!(
                    "sealing starts with key {}; {count} earlier record(s) sealed as found",
                    sealer.key_name()
                ),
            )
        })
    }

    /// The SQLite file, or for PostgreSQL the URL without its password (for display).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the store is.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Opens another handle on the same database (for a worker thread), with the same seal.
    pub fn reopen(&self) -> Result<Store, StoreError> {
        let store = Store {
            engine: self.engine.reopen()?,
            location: self.location.clone(),
            path: self.path.clone(),
            sealer: self.sealer.clone(),
        };
        store.recover_dead()?;
        Ok(store)
    }

    /// The stored state of one order.
    pub fn state(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        self.read(|tx| tx.state(order_id))
    }

    /// Every stored order state, by order id.
    pub fn states(&self) -> Result<HashMap<String, OrderState>, StoreError> {
        Ok(self.read(|tx| tx.states())?.into_iter().collect())
    }

    /// Records the preparation results of a whole file in one transaction: new orders start as
    /// CARD_PROD_REQUESTED; orders not yet reviewed move to DATA_PREPARED or DATA_EXCEPTION;
    /// orders already reviewed keep their state, and so does a rejected order (a decision stands
    /// until a new decision). Each change is audited (by the operating-system account, role
    /// `system`). Returns the resulting state of each order, in order.
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
        self.write(|tx| {
            let at = now();
            let mut out = Vec::with_capacity(results.len());
            for (id, failure) in results {
                out.push(prepare_one(
                    tx,
                    sealer.as_deref(),
                    id,
                    *failure,
                    at,
                    (user, role),
                )?);
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
        let token = process_token();
        let owner = matches!(event, Event::Started { .. }).then_some(token.as_str());
        let applied = self.write(|tx| self.apply_in(tx, order_id, event, who, evidence, owner))?;
        applied.or_else(|e| {
            self.audit(who, event.name(), Some(order_id), &format!("refused: {e}"))?;
            Err(StoreError::Transition {
                order: order_id.to_string(),
                source: e,
            })
        })
    }

    /// [`Store::apply`] inside an open write transaction; `owner` names who holds the order
    /// while CARD_PROD_ONGOING. The state machine's refusal is returned inside `Ok`.
    pub(crate) fn apply_in(
        &self,
        tx: &mut dyn Tx,
        order_id: &str,
        event: &Event,
        who: &Session,
        evidence: Option<&approval::Evidence>,
        owner: Option<&str>,
    ) -> Result<Result<OrderState, status::TransitionError>, StoreError> {
        let at = now();
        let current = tx
            .state(order_id)?
            .ok_or_else(|| StoreError::UnknownOrder(order_id.to_string()))?;
        let to = match status::next(current.status, event) {
            Ok(to) => to,
            Err(e) => return Ok(Err(e)),
        };
        let reason = event.reason().map(scrub_digit_runs);
        let approved = match event {
            Event::Approved => true,
            Event::Started { .. }
            | Event::Completed
            | Event::Failed { .. }
            | Event::NotStarted { .. } => current.approved,
            _ => false,
        };
        tx.update_order(
            order_id,
            &OrderRow {
                status: to,
                reason: reason.as_deref(),
                approved,
                at,
                owner,
            },
        )?;
        if let Some(decision) = decision_name(event) {
            let row = ApprovalRow {
                at,
                user: &who.user,
                decision,
                reason: reason.as_deref(),
            };
            tx.insert_approval(order_id, &row)?;
        }
        append_audit_by(
            tx,
            self.seal(),
            Actor::of(who),
            at,
            event.name(),
            Some(order_id),
            outcome_of(to, reason.as_deref(), event_note(event, evidence)),
        )?;
        Ok(Ok(OrderState {
            status: to,
            reason,
            approved,
            updated_at: at,
        }))
    }

    /// Adds an audit record (scrubbed of digit runs as a last line of defence).
    pub fn audit(
        &self,
        who: &Session,
        action: &str,
        order_id: Option<&str>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let outcome = scrub_digit_runs(outcome);
        let record = AuditRecord::by(Actor::of(who), now(), action, order_id, outcome);
        self.write(|tx| append_audit(tx, self.seal(), &record))
    }

    /// The whole audit trail in storage order with its chain fields (for verification).
    pub fn audit_chain(&self) -> Result<Vec<audit::ChainedRecord>, StoreError> {
        self.read(|tx| tx.audit_chain())
    }

    /// Checks the audit trail's hash chain, the head kept in the settings and, in a sealed
    /// store, every seal; then the store's protections (the append-only triggers) and that every
    /// order's status is the one the trail states. The verdict names the first problem.
    pub fn verify_audit(&self) -> Result<audit::Verdict, StoreError> {
        // One read transaction: the trail, the head and the orders from the same snapshot.
        self.read(|tx| {
            let records = tx.audit_chain()?;
            let head = read_head(tx)?;
            let head_seal = tx.setting(audit::HEAD_SEAL_KEY)?;
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
                verdict.problem = store_problem(tx)?;
            }
            Ok(verdict)
        })
    }

    /// The head `(count, hash)` for a copy kept elsewhere (`persodesk audit export`).
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.read(|tx| read_head(tx))
    }

    /// The latest `limit` audit records, newest first.
    pub fn audit_trail(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(|tx| tx.audit_trail(limit))
    }

    /// The newest review decision on an order, read from the audit trail (approved with its
    /// evidence, rejected, or withdrawn). Only as trustworthy as [`Store::verify_audit`] says.
    pub fn decision(&self, order_id: &str) -> Result<Option<Decision>, StoreError> {
        let row = self.read(|tx| tx.decision_row(order_id))?;
        Ok(row.and_then(|(user, action, outcome)| approval::decision_of(&action, &user, &outcome)))
    }

    /// The keyed digest of reviewed data ([`approval::review_message`]): HMAC-SHA256 under the
    /// audit key in a sealed store, else plain SHA-256 (test stores; not evidence).
    pub fn review_digest(&self, message: &[u8]) -> Result<String, StoreError> {
        match self.seal() {
            Some(s) => s
                .mac(message)
                .map(hex::encode_upper)
                .map_err(|e| StoreError::seal(s, e)),
            None => {
                use sha2::Digest;
                Ok(hex::encode_upper(sha2::Sha256::digest(message)))
            }
        }
    }

    /// Every supervisor decision on an order, oldest first.
    pub fn approvals(&self, order_id: &str) -> Result<Vec<Approval>, StoreError> {
        self.read(|tx| tx.approvals(order_id))
    }

    /// Orders left CARD_PROD_ONGOING by a process that no longer runs become CARD_PROD_FAILED
    /// ("interrupted"), audited as `who`. Returns how many.
    pub fn recover_interrupted(&mut self, who: &Session) -> Result<usize, StoreError> {
        self.recover_as(&who.user, who.role.as_str())
    }

    /// [`Store::recover_interrupted`] as the application itself (every open).
    fn recover_dead(&self) -> Result<usize, StoreError> {
        self.recover_as(&os_user(), SYSTEM_ROLE)
    }

    fn recover_as(&self, user: &str, role: &str) -> Result<usize, StoreError> {
        let dead: Vec<(String, Option<String>)> = self
            .read(|tx| tx.ongoing())?
            .into_iter()
            .filter(|(_, owner)| !owner.as_deref().is_some_and(owner_alive))
            .collect();
        let mut n = 0;
        for (id, owner) in dead {
            n += self.write(|tx| {
                // Re-checked under the write lock: the run may have ended meanwhile.
                let still = tx
                    .ongoing()?
                    .into_iter()
                    .any(|(o, w)| o == id && w == owner);
                // A station's claim is judged by its lease ([`Store::expire_leases`]).
                let leased = tx.lease(&id)?.is_some_and(|l| l.until.is_some());
                if !still || leased {
                    return Ok(0);
                }
                fail_abandoned(
                    tx,
                    self.seal(),
                    &id,
                    INTERRUPTED,
                    Actor { user, role },
                    now(),
                )?;
                Ok(1)
            })?;
        }
        Ok(n)
    }

    /// A remembered setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|tx| tx.setting(key))
    }

    /// Remembers a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| tx.put_setting(key, value))
    }
}

/// One order's preparation result inside [`Store::record_preparation`].
fn prepare_one(
    tx: &mut dyn Tx,
    sealer: Option<&dyn Sealer>,
    id: &str,
    failure: Option<&str>,
    at: i64,
    (user, role): (&str, &str),
) -> Result<OrderState, StoreError> {
    let current = tx.state(id)?;
    let event = match failure {
        None => Event::Prepared,
        Some(reason) => Event::PrepareFailed {
            reason: scrub_digit_runs(reason),
        },
    };
    let rejected = tx.latest_decision(id)?.as_deref() == Some("rejected");
    let from = current.as_ref().map_or(Status::Requested, |s| s.status);
    let to = match status::next(from, &event) {
        Ok(to) if !(rejected && from == Status::DataException) => to,
        // Already reviewed, rejected or produced: the stored state stands.
        _ => {
            return Ok(current.unwrap_or(OrderState {
                status: from,
                reason: None,
                approved: false,
                updated_at: at,
            }));
        }
    };
    let reason = event.reason();
    if let Some(c) = current
        .as_ref()
        .filter(|c| c.status == to && c.reason.as_deref() == reason)
    {
        return Ok(c.clone());
    }
    let row = OrderRow {
        status: to,
        reason,
        approved: false,
        at,
        owner: None,
    };
    tx.put_prepared(id, &row)?;
    append_audit_by(
        tx,
        sealer,
        Actor { user, role },
        at,
        event.name(),
        Some(id),
        outcome_of(to, reason, None),
    )?;
    Ok(OrderState {
        status: to,
        reason: reason.map(str::to_string),
        approved: false,
        updated_at: at,
    })
}

/// Runs `f` as the body of one engine transaction (`run`) and hands back the value of its last
/// (committed) attempt; the engine bodies themselves return nothing.
fn returning<T>(
    run: impl FnOnce(&mut TxBody<'_>) -> Result<(), StoreError>,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut out = None;
    run(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Postgres("the transaction returned nothing".into()))
}
