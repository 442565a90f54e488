//! Roles and what each may do: the four-eyes rules of the workstation, as pure functions.
//!
//! - A supervisor reviews prepared orders on their masked previews and approves or rejects them
//!   (with a reason).
//! - An operator personalizes approved orders only.
//! - A tester may personalize without approval when every key the order used is a test key, and
//!   is the only role that may reveal clear values (test keys only).
//!
//! The role comes from a [`Session`]; how a session is obtained (today: chosen at start; later:
//! authenticated) is the adapter's business.

use std::fmt;

use super::status::Status;

/// A workstation role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Personalizes approved orders.
    Operator,
    /// Reviews, approves and rejects prepared orders.
    Supervisor,
    /// Runs everything on test keys and simulated devices.
    Tester,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Operator, Role::Supervisor, Role::Tester];

    /// Lower-case name (`operator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Tester => "tester",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is working: a user name and a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's name, as recorded in the audit trail.
    pub user: String,
    /// The role the user works in.
    pub role: Role,
}

/// An action refused to a role, with the rule that refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} refused to the {role}: {rule}")]
pub struct Denied {
    /// What was attempted.
    pub action: &'static str,
    /// Who attempted it.
    pub role: Role,
    /// The rule.
    pub rule: &'static str,
}

/// Facts about an order that the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFacts {
    /// Its production status.
    pub status: Status,
    /// A supervisor approved its data (and did not reject it since).
    pub approved: bool,
    /// Every key its preparation used is a test key.
    pub test_keys_only: bool,
}

/// May `role` approve or reject this order?
pub fn may_review(role: Role, facts: OrderFacts) -> Result<(), Denied> {
    let deny = |rule| Denied {
        action: "review",
        role,
        rule,
    };
    if role != Role::Supervisor {
        return Err(deny("only a supervisor approves or rejects"));
    }
    match facts.status {
        Status::DataPrepared => Ok(()),
        Status::Ready => Ok(()),
        _ => Err(deny("only prepared orders are reviewed")),
    }
}

/// May `role` personalize this order? The answer says whether it runs without approval.
pub fn may_personalize(role: Role, facts: OrderFacts) -> Result<PersoGrant, Denied> {
    let deny = |rule| Denied {
        action: "personalization",
        role,
        rule,
    };
    match facts.status {
        Status::Ready | Status::Failed | Status::DataPrepared => {}
        Status::Done => return Err(deny("the card is already done")),
        Status::Ongoing => return Err(deny("a personalization is already running")),
        Status::Requested | Status::DataException => {
            return Err(deny("the order has no prepared data"));
        }
    }
    match role {
        Role::Supervisor => Err(deny(
            "supervisors review; operators and testers personalize",
        )),
        Role::Operator if facts.approved && facts.status != Status::DataPrepared => {
            Ok(PersoGrant {
                approval_bypass: false,
            })
        }
        Role::Operator => Err(deny("operators personalize approved orders only")),
        Role::Tester if facts.approved && facts.status != Status::DataPrepared => Ok(PersoGrant {
            approval_bypass: false,
        }),
        Role::Tester if facts.test_keys_only => Ok(PersoGrant {
            approval_bypass: true,
        }),
        Role::Tester => Err(deny(
            "without approval, testers personalize on test keys only",
        )),
    }
}

/// Permission to personalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersoGrant {
    /// The order runs without a supervisor's approval (tester, test keys).
    pub approval_bypass: bool,
}

/// May `role` see clear values of this order's data?
pub fn may_reveal(role: Role, test_keys_only: bool) -> Result<(), Denied> {
    let deny = |rule| Denied {
        action: "reveal",
        role,
        rule,
    };
    match role {
        Role::Tester if test_keys_only => Ok(()),
        Role::Tester => Err(deny("clear values only for data made with test keys")),
        _ => Err(deny("only testers may reveal clear values")),
    }
}
