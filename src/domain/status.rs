//! Order production status: the central-issuance production states and the transitions between
//! them, as a pure state machine.
//!
//! ```text
//! CARD_PROD_REQUESTED ──prepared──▶ DATA_PREPARED ──approved──▶ CARD_PROD_READY ──started──▶ CARD_PROD_ONGOING ──done──▶ CARD_PROD_DONE
//!          └──prepare failed──▶ DATA_EXCEPTION ◀──rejected──┘                                          └──failed──▶ CARD_PROD_FAILED
//! ```
//!
//! - Preparation may be repeated while nothing was approved (REQUESTED, DATA_PREPARED,
//!   DATA_EXCEPTION): a fixed key store or product turns an exception into DATA_PREPARED.
//! - A tester may start a DATA_PREPARED order without approval when every key is a test key
//!   ([`Event::Started`] with `approval_bypass`); who may do what is [`super::review`]'s business.
//! - A failed run (CARD_PROD_FAILED) may be started again; CARD_PROD_DONE is final.
//! - A run whose card check refused the card ([`Event::NotStarted`]: nothing was written) goes
//!   back from CARD_PROD_ONGOING to CARD_PROD_READY (or DATA_PREPARED for a tester's unapproved
//!   order), never to CARD_PROD_FAILED.
//! - An approval is withdrawn (CARD_PROD_READY back to DATA_PREPARED, audited) when what would be
//!   personalized changes, e.g. the chip model: the new data needs a new review.
//!
//! Every failure state carries the reason; reasons name steps and rules, never card data.

use std::fmt;

/// A production state of one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The order was received; nothing prepared yet.
    Requested,
    /// Card data prepared; waiting for a supervisor's review.
    DataPrepared,
    /// Preparation failed or the supervisor rejected the data (reason recorded).
    DataException,
    /// Approved: ready for production.
    Ready,
    /// Personalization in progress.
    Ongoing,
    /// Personalized and verified.
    Done,
    /// Personalization failed (reason recorded); may be retried.
    Failed,
}

impl Status {
    /// Every status, in production order.
    pub const ALL: [Status; 7] = [
        Status::Requested,
        Status::DataPrepared,
        Status::DataException,
        Status::Ready,
        Status::Ongoing,
        Status::Done,
        Status::Failed,
    ];

    /// The central-issuance name (`CARD_PROD_READY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "CARD_PROD_REQUESTED",
            Status::DataPrepared => "DATA_PREPARED",
            Status::DataException => "DATA_EXCEPTION",
            Status::Ready => "CARD_PROD_READY",
            Status::Ongoing => "CARD_PROD_ONGOING",
            Status::Done => "CARD_PROD_DONE",
            Status::Failed => "CARD_PROD_FAILED",
        }
    }

    /// Parses the central-issuance name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for the states that carry a reason.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::DataException | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Card data was prepared without error.
    Prepared,
    /// Preparation failed.
    PrepareFailed {
        /// Field paths and rules, never values.
        reason: String,
    },
    /// A supervisor approved the masked preview.
    Approved,
    /// The approval no longer covers what would be personalized (the chip model changed): the
    /// order needs a new review.
    ApprovalWithdrawn {
        /// Why.
        reason: String,
    },
    /// A supervisor rejected the data.
    Rejected {
        /// Why, as the supervisor wrote it.
        reason: String,
    },
    /// Personalization started.
    Started {
        /// Started from DATA_PREPARED without approval (testers on test keys only).
        approval_bypass: bool,
    },
    /// Personalization finished and verified.
    Completed,
    /// Personalization failed.
    Failed {
        /// The step and what went wrong.
        reason: String,
    },
    /// The card check refused the card before anything was written (already personalized,
    /// another secure channel): the order goes back to where it was before it started.
    NotStarted {
        /// READY for an approved order, DATA_PREPARED for a tester's unapproved one.
        back_to: Status,
        /// The card check's finding.
        reason: String,
    },
}

impl Event {
    /// A short name for audit records (`approved`, `perso-failed`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Prepared => "prepared",
            Event::PrepareFailed { .. } => "prepare-failed",
            Event::Approved => "approved",
            Event::Rejected { .. } => "rejected",
            Event::ApprovalWithdrawn { .. } => "approval-withdrawn",
            Event::Started { .. } => "perso-started",
            Event::Completed => "perso-done",
            Event::Failed { .. } => "perso-failed",
            Event::NotStarted { .. } => "perso-refused",
        }
    }

    /// The reason the event carries, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Event::PrepareFailed { reason }
            | Event::Rejected { reason }
            | Event::ApprovalWithdrawn { reason }
            | Event::Failed { reason }
            | Event::NotStarted { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// An event that is not allowed in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not allowed for an order in {from}{hint}")]
pub struct TransitionError {
    /// The state the order is in.
    pub from: Status,
    /// The event's name.
    pub event: &'static str,
    /// What would be needed instead (may be empty).
    pub hint: &'static str,
}

/// The state after `event` in state `from`, or why the event is not allowed there.
pub fn next(from: Status, event: &Event) -> Result<Status, TransitionError> {
    use Status as S;
    let refuse = |hint: &'static str| TransitionError {
        from,
        event: event.name(),
        hint,
    };
    match (from, event) {
        (S::Requested | S::DataPrepared | S::DataException, Event::Prepared) => Ok(S::DataPrepared),
        (S::Requested | S::DataPrepared | S::DataException, Event::PrepareFailed { .. }) => {
            Ok(S::DataException)
        }
        (S::DataPrepared, Event::Approved) => Ok(S::Ready),
        (S::Ready, Event::ApprovalWithdrawn { .. }) => Ok(S::DataPrepared),
        (S::DataPrepared | S::Ready, Event::Rejected { reason }) => {
            if reason.trim().is_empty() {
                Err(refuse(" without a reason"))
            } else {
                Ok(S::DataException)
            }
        }
        (S::Ready | S::Failed, Event::Started { .. }) => Ok(S::Ongoing),
        (
            S::DataPrepared,
            Event::Started {
                approval_bypass: true,
            },
        ) => Ok(S::Ongoing),
        (
            S::DataPrepared,
            Event::Started {
                approval_bypass: false,
            },
        ) => Err(refuse(" (it must be approved first)")),
        (S::Ongoing, Event::Completed) => Ok(S::Done),
        (S::Ongoing, Event::Failed { .. }) => Ok(S::Failed),
        (
            S::Ongoing,
            Event::NotStarted {
                back_to: to @ (S::Ready | S::DataPrepared),
                ..
            },
        ) => Ok(*to),
        (
            S::Ready | S::Ongoing | S::Done | S::Failed,
            Event::Prepared | Event::PrepareFailed { .. },
        ) => Err(refuse(" (its data was already reviewed)")),
        (S::Done, _) => Err(refuse(" (the card is already done)")),
        _ => Err(refuse("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawn_approval_needs_a_new_review() {
        let w = Event::ApprovalWithdrawn {
            reason: "chip model changed".into(),
        };
        assert_eq!(next(Status::Ready, &w), Ok(Status::DataPrepared));
        assert!(next(Status::DataPrepared, &w).is_err());
        assert!(next(Status::Ongoing, &w).is_err());
    }

    #[test]
    fn a_refused_card_puts_the_order_back_but_nowhere_else() {
        let back = |to| Event::NotStarted {
            back_to: to,
            reason: "card check: already personalized".into(),
        };
        assert_eq!(
            next(Status::Ongoing, &back(Status::Ready)),
            Ok(Status::Ready)
        );
        assert_eq!(
            next(Status::Ongoing, &back(Status::DataPrepared)),
            Ok(Status::DataPrepared)
        );
        // Only from a started run, and never to a produced or failed state.
        assert!(next(Status::Ongoing, &back(Status::Done)).is_err());
        assert!(next(Status::Ongoing, &back(Status::Failed)).is_err());
        assert!(next(Status::Ready, &back(Status::Ready)).is_err());
        assert_eq!(back(Status::Ready).name(), "perso-refused");
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("READY"), None);
    }
}
