//! Roles and what each may do: the four-eyes rules of the workstation, as pure functions.
//!
//! - A supervisor reviews prepared orders on their masked previews and approves or rejects them
//!   (with a reason).
//! - An operator personalizes approved orders only.
//! - A tester may personalize without approval when every key the order used is a test key, and
//!   is the only role that may reveal clear values (test keys only).
//!
//! The role comes from a [`Session`], which [`session_for`] builds by the same rules for the
//! window and the command line: in production the user is the operating-system account running
//! the process (no `--user`), its roles come from the machine configuration's `[roles]`, and the
//! tester role is refused (testers work in test mode; production has no test token). In test
//! mode a configured `[roles]` table applies too; without one every role is open.

use std::fmt;

use super::mode::Mode;
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

/// Who may work in which role (the machine configuration's `[roles]`): operating-system
/// account names per role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// Operators.
    pub operator: Vec<String>,
    /// Supervisors.
    pub supervisor: Vec<String>,
    /// Testers.
    pub tester: Vec<String>,
}

impl Roles {
    /// The accounts granted `role`.
    pub fn members(&self, role: Role) -> &[String] {
        match role {
            Role::Operator => &self.operator,
            Role::Supervisor => &self.supervisor,
            Role::Tester => &self.tester,
        }
    }

    /// The roles `user` holds.
    pub fn of(&self, user: &str) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| self.members(*r).iter().any(|u| u == user))
            .collect()
    }
}

/// The session `account` (the operating-system user) may work in as `role`; `claimed` is a user
/// name given on the command line (`--user`), refused in production. The error is the rule.
pub fn session_for(
    mode: Mode,
    account: &str,
    claimed: Option<&str>,
    role: Role,
    roles: Option<&Roles>,
) -> Result<Session, String> {
    if mode == Mode::Production {
        if claimed.is_some() {
            return Err(
                "--user is refused in production: the user is the operating-system account running persodesk"
                    .into(),
            );
        }
        if role == Role::Tester {
            return Err(
                "the tester role is refused in production (testers work in test mode; no test token)"
                    .into(),
            );
        }
    }
    let user = claimed.unwrap_or(account);
    match roles {
        None if mode == Mode::Production => {
            Err("production needs [roles] in the machine configuration".into())
        }
        None => Ok(Session {
            user: user.to_string(),
            role,
        }),
        Some(r) if r.members(role).iter().any(|u| u == user) => Ok(Session {
            user: user.to_string(),
            role,
        }),
        Some(_) => Err(format!(
            "{user} is not a {role} in the machine configuration's [roles]"
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Roles {
        Roles {
            operator: vec!["alice".into()],
            supervisor: vec!["carol".into()],
            tester: vec!["tess".into()],
        }
    }

    /// Issue 13 finding 2: production takes the account, not a claimed name, and the roles
    /// from the configuration; no tester.
    #[test]
    fn production_sessions_come_from_the_account_and_the_roles() {
        let p = Mode::Production;
        let r = roles();
        let s = session_for(p, "alice", None, Role::Operator, Some(&r)).expect("operator");
        assert_eq!(s.user, "alice");
        let e =
            session_for(p, "alice", Some("carol"), Role::Operator, Some(&r)).expect_err("--user");
        assert!(e.contains("--user is refused"), "{e}");
        let e = session_for(p, "alice", None, Role::Supervisor, Some(&r)).expect_err("not sup");
        assert!(e.contains("alice is not a supervisor"), "{e}");
        let e = session_for(p, "tess", None, Role::Tester, Some(&r)).expect_err("tester");
        assert!(e.contains("tester role is refused"), "{e}");
        assert!(session_for(p, "alice", None, Role::Operator, None).is_err());
        // Test mode: a claimed name is fine; configured roles still apply.
        let t = Mode::Test;
        assert_eq!(
            session_for(t, "root", Some("bo"), Role::Tester, None).map(|s| s.user),
            Ok("bo".to_string())
        );
        assert!(session_for(t, "root", None, Role::Tester, Some(&r)).is_err());
        assert_eq!(r.of("carol"), vec![Role::Supervisor]);
    }
}
