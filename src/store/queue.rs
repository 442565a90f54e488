//! The order queue and station leases.
//!
//! - **Queue.** `persodesk queue import` adds each valid order as CARD_PROD_REQUESTED, once: the
//!   request key is `issuerRequestId`, else `cardId`. An order is kept only in protected form —
//!   as received when its `encryptedData` is a JWE, else the whole order sealed under the key
//!   store's `store` key (purpose `queue-order:<id>`, [`crate::domain::seal`]); a station opens
//!   it at claim time.
//! - **Claim.** A station claims the oldest order it may work (`SELECT … FOR UPDATE SKIP LOCKED`
//!   on PostgreSQL, an IMMEDIATE transaction on SQLite) whose lease is free or expired: the claim
//!   writes a lease (`station`, `lease_until`) and increments the order's fencing token
//!   (`fence`). The station renews the lease while the card is worked (naming the step), and
//!   its final status write must present the token: a write from a station whose lease was
//!   taken over is refused ([`Store::finish_claim`]).
//! - **Expiry.** An order CARD_PROD_ONGOING whose lease ran out becomes CARD_PROD_FAILED
//!   ("interrupted at station X, step Y") and is claimable again ([`Store::expire_leases`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Actor, OrderState, Store, StoreError, append_audit_by, fail_abandoned, now};
use crate::domain::approval::{self, Decision};
use crate::domain::mask::debug_fields;
use crate::domain::review::{Role, Session};
use crate::domain::status::{Event, Status};

/// How a lease owner token starts: `station:<name>:<process token>`.
pub const LEASE_OWNER_PREFIX: &str = "station:";

/// How a queued order is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// The order as received; its `encryptedData` is a JWE for the bureau's key.
    Jwe,
    /// The whole order sealed under the key store's `store` key (base64 of the PDS1 blob).
    Sealed,
}

impl Form {
    /// `jwe` or `sealed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Jwe => "jwe",
            Form::Sealed => "sealed",
        }
    }
}

/// One queued order in its protected form.
#[derive(Clone, PartialEq, Eq)]
pub struct QueuedOrder {
    /// The order id (`cardId`).
    pub order_id: String,
    /// `issuerRequestId`, else `cardId` (what makes an import idempotent).
    pub request_key: String,
    /// How it is protected.
    pub form: Form,
    /// The order JSON with a JWE `encryptedData`, or base64 of the sealed order.
    pub protected: String,
}

impl std::fmt::Debug for QueuedOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "QueuedOrder",
            &[
                ("order_id", &self.order_id),
                ("request_key", &self.request_key),
                ("form", &self.form),
            ],
        )
    }
}

impl QueuedOrder {
    /// From stored columns; an unknown form reads as nothing (a newer version's row).
    pub fn from_row(
        order_id: String,
        request_key: String,
        form: &str,
        protected: String,
    ) -> Option<QueuedOrder> {
        let form = match form {
            "jwe" => Form::Jwe,
            "sealed" => Form::Sealed,
            _ => return None,
        };
        Some(QueuedOrder {
            order_id,
            request_key,
            form,
            protected,
        })
    }

    /// The sealing purpose of a plain order: `queue-order:<id>`.
    pub fn purpose(order_id: &str) -> String {
        format!("queue-order:{order_id}")
    }
}

/// An order's lease columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    /// Who holds the order (a process token while CARD_PROD_ONGOING).
    pub owner: Option<String>,
    /// The station that claimed it last.
    pub station: Option<String>,
    /// The step the station reported last.
    pub step: Option<String>,
    /// Unix time the lease runs out (`None`: not leased).
    pub until: Option<i64>,
    /// The fencing token: incremented by every claim.
    pub fence: i64,
}

/// A station's claim on one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The order.
    pub order_id: String,
    /// Its status when claimed.
    pub status: Status,
    /// The fencing token the final write must present.
    pub fence: i64,
    /// The station.
    pub station: String,
    /// The lease length in seconds.
    pub lease_seconds: i64,
}

/// `queue status`: orders per status, and per station per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Queued orders per status.
    pub statuses: BTreeMap<String, i64>,
    /// Per station (that claimed them last), per status.
    pub stations: BTreeMap<String, BTreeMap<String, i64>>,
}

/// What one station finished since a time: its orders now CARD_PROD_DONE or CARD_PROD_FAILED.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StationTally {
    /// CARD_PROD_DONE.
    pub done: usize,
    /// CARD_PROD_FAILED.
    pub failed: usize,
}

/// The queue's primitives inside one transaction.
pub trait QueueTx {
    /// Adds a queued order and its CARD_PROD_REQUESTED status row; `false` when its request
    /// key or order id is known already.
    fn enqueue(&mut self, item: &QueuedOrder, at: i64) -> Result<bool, StoreError>;
    /// A queued order.
    fn queued(&mut self, order: &str) -> Result<Option<QueuedOrder>, StoreError>;
    /// Up to `limit` queued orders in one of `statuses` whose lease is free or expired at
    /// `at`, oldest first (not locked: see [`QueueTx::try_lock`]).
    fn candidates(
        &mut self,
        statuses: &[Status],
        at: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Locks the order for this transaction when its lease is still free or expired at `at`
    /// and no other transaction holds it (`FOR UPDATE SKIP LOCKED`); `false` otherwise.
    fn try_lock(&mut self, order: &str, at: i64) -> Result<bool, StoreError>;
    /// How many orders hold a lease that runs at `at`, or are CARD_PROD_ONGOING under one.
    fn leased(&mut self, at: i64) -> Result<i64, StoreError>;
    /// An order's lease columns.
    fn lease(&mut self, order: &str) -> Result<Option<Lease>, StoreError>;
    /// Writes an order's lease columns.
    fn set_lease(&mut self, order: &str, lease: &Lease) -> Result<(), StoreError>;
    /// Orders CARD_PROD_ONGOING whose lease ran out before `at`.
    fn expired(&mut self, at: i64) -> Result<Vec<String>, StoreError>;
    /// (status, station, count) over the queued orders.
    fn counts(&mut self) -> Result<Vec<(String, Option<String>, i64)>, StoreError>;
    /// (station, status, count) of the orders a station claimed last that are CARD_PROD_DONE or
    /// CARD_PROD_FAILED and changed at or after `since`.
    fn finished_by_station(&mut self, since: i64)
    -> Result<Vec<(String, String, i64)>, StoreError>;
}

/// The statuses a role may claim: operators approved work (and retries), testers anything not
/// finished (preparation included; test keys only, checked by `job::authorize`).
pub fn claimable(role: Role) -> &'static [Status] {
    match role {
        Role::Tester => &[
            Status::Requested,
            Status::DataPrepared,
            Status::Ready,
            Status::Failed,
        ],
        _ => &[Status::Ready, Status::Failed],
    }
}

impl Store {
    /// Adds orders to the queue in one transaction, audited (`queued`) as `who`. Returns for each
    /// whether it was new.
    pub fn enqueue(&self, who: &Session, items: &[QueuedOrder]) -> Result<Vec<bool>, StoreError> {
        self.write(|tx| {
            let at = now();
            let mut added = Vec::with_capacity(items.len());
            for item in items {
                let new = tx.enqueue(item, at)?;
                if new {
                    append_audit_by(
                        tx,
                        self.seal(),
                        Actor::of(who),
                        at,
                        "queued",
                        Some(&item.order_id),
                        format!("{}; {}", Status::Requested.as_str(), item.form.as_str()),
                    )?;
                }
                added.push(new);
            }
            Ok(added)
        })
    }

    /// A queued order in its protected form.
    pub fn queued(&self, order_id: &str) -> Result<Option<QueuedOrder>, StoreError> {
        self.read(|tx| tx.queued(order_id))
    }

    /// Claims the oldest order `who` may work at `station` (not one in `skip`; for operators not
    /// one `who` approved: four eyes), leasing it for `lease_seconds`.
    pub fn claim(
        &self,
        who: &Session,
        station: &str,
        lease_seconds: i64,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Claim>, StoreError> {
        let statuses = claimable(who.role);
        self.write_unchained(|tx| {
            let at = now();
            for id in tx.candidates(statuses, at, 64)? {
                if skip(&id) || approved_by(tx, &id, &who.user)? || !tx.try_lock(&id, at)? {
                    continue;
                }
                let Some(state) = tx.state(&id)? else {
                    continue;
                };
                let mut lease = tx.lease(&id)?.unwrap_or_default();
                lease.fence += 1;
                lease.station = Some(station.to_string());
                lease.step = Some("claimed".into());
                lease.until = Some(at + lease_seconds);
                tx.set_lease(&id, &lease)?;
                return Ok(Some(Claim {
                    order_id: id,
                    status: state.status,
                    fence: lease.fence,
                    station: station.to_string(),
                    lease_seconds,
                }));
            }
            Ok(None)
        })
    }

    /// Renews a claim's lease, naming the step being worked; refused when the fencing token is
    /// stale (another station took the order over).
    pub fn renew(&self, claim: &Claim, step: &str) -> Result<(), StoreError> {
        self.write_unchained(|tx| {
            let mut lease = fenced(tx, claim)?;
            lease.step = Some(step.to_string());
            lease.until = Some(now() + claim.lease_seconds);
            tx.set_lease(&claim.order_id, &lease)
        })
    }

    /// Gives a claim up without a status change (the station will not work the order).
    pub fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.write_unchained(|tx| {
            let mut lease = fenced(tx, claim)?;
            lease.until = None;
            lease.step = None;
            tx.set_lease(&claim.order_id, &lease)
        })
    }

    /// The final status write of a claim, `event` being the run's outcome as
    /// [`crate::job::outcome_event`] maps it (CARD_PROD_DONE, CARD_PROD_FAILED, or back to
    /// READY / DATA_PREPARED for a card the card check refused), only while the claim's fencing
    /// token is the order's.
    pub fn finish_claim(
        &self,
        claim: &Claim,
        who: &Session,
        event: &Event,
    ) -> Result<OrderState, StoreError> {
        self.write(|tx| {
            let mut lease = fenced(tx, claim)?;
            let state = self
                .apply_in(tx, &claim.order_id, event, who, None, None)?
                .map_err(|source| StoreError::Transition {
                    order: claim.order_id.clone(),
                    source,
                })?;
            lease.until = None;
            lease.step = None;
            lease.owner = None;
            tx.set_lease(&claim.order_id, &lease)?;
            Ok(state)
        })
    }

    /// Orders CARD_PROD_ONGOING whose lease ran out become CARD_PROD_FAILED ("interrupted at
    /// station X, step Y"), audited as `who`; they are claimable again. Returns how many.
    pub fn expire_leases(&self, who: &Session) -> Result<usize, StoreError> {
        self.write(|tx| {
            let at = now();
            let expired = tx.expired(at)?;
            for id in &expired {
                let mut lease = tx.lease(id)?.unwrap_or_default();
                let reason = format!(
                    "interrupted at station {}, step {}: its lease ran out",
                    lease.station.as_deref().unwrap_or("?"),
                    lease.step.as_deref().unwrap_or("?")
                );
                fail_abandoned(tx, self.seal(), id, &reason, Actor::of(who), at)?;
                lease.until = None;
                lease.owner = None;
                tx.set_lease(id, &lease)?;
            }
            Ok(expired.len())
        })
    }

    /// How many orders are under a running station lease, or CARD_PROD_ONGOING under one
    /// (work that may still come back to the queue).
    pub fn leased_ongoing(&self) -> Result<usize, StoreError> {
        let n = self.read(|tx| tx.leased(now()))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Queued orders per status and per station.
    pub fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        let rows = self.read(|tx| tx.counts())?;
        let mut counts = QueueCounts::default();
        for (status, station, n) in rows {
            *counts.statuses.entry(status.clone()).or_default() += n;
            if let Some(station) = station {
                *counts
                    .stations
                    .entry(station)
                    .or_default()
                    .entry(status)
                    .or_default() += n;
            }
        }
        Ok(counts)
    }
}

impl Store {
    /// Per station (the one that claimed each order last), the orders it finished or failed
    /// since `since` (Unix seconds): the production counter's per-station figures.
    pub fn station_production(
        &self,
        since: i64,
    ) -> Result<BTreeMap<String, StationTally>, StoreError> {
        let rows = self.read(|tx| tx.finished_by_station(since))?;
        let mut tally: BTreeMap<String, StationTally> = BTreeMap::new();
        for (station, status, n) in rows {
            let n = usize::try_from(n).unwrap_or(0);
            let entry = tally.entry(station).or_default();
            match Status::parse(&status) {
                Some(Status::Done) => entry.done += n,
                Some(Status::Failed) => entry.failed += n,
                _ => {}
            }
        }
        Ok(tally)
    }
}

/// The lease, when `claim`'s fencing token is still the order's and its station still holds it.
fn fenced(tx: &mut dyn super::Tx, claim: &Claim) -> Result<Lease, StoreError> {
    let lease = tx.lease(&claim.order_id)?.unwrap_or_default();
    if lease.fence != claim.fence || lease.station.as_deref() != Some(claim.station.as_str()) {
        return Err(StoreError::Refused {
            order: claim.order_id.clone(),
            rule: format!(
                "fencing token {} of station {} is stale (the order's is {}): its lease was taken over",
                claim.fence, claim.station, lease.fence
            ),
        });
    }
    Ok(lease)
}

/// True when the order's standing decision is an approval by `user` (four eyes: they may not
/// personalize it).
fn approved_by(tx: &mut dyn super::Tx, order: &str, user: &str) -> Result<bool, StoreError> {
    let row = tx.decision_row(order)?;
    Ok(matches!(
        row.and_then(|(u, action, outcome)| approval::decision_of(&action, &u, &outcome)),
        Some(Decision::Approved { by, .. }) if by == user
    ))
}
