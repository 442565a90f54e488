//! The production-status state machine, the review rules, and the SQLite store (statuses,
//! approvals, audit, settings) surviving a reopen.

mod support;

use persodesk::domain::review::{
    self, OrderFacts, PersoGrant, Role, Session, may_personalize, may_reveal, may_review,
};
use persodesk::domain::status::{Event, Status, next};
use persodesk::store::{Store, StoreError, format_time};

/// A fresh directory under the system temp dir, removed on drop.
use support::TempDir;

fn who(role: Role) -> Session {
    Session {
        user: format!("{role}-1"),
        role,
    }
}

fn rejected(r: &str) -> Event {
    Event::Rejected { reason: r.into() }
}

#[test]
fn happy_path_follows_the_central_issuance_states() {
    let mut s = Status::Requested;
    for (event, expect) in [
        (Event::Prepared, Status::DataPrepared),
        (Event::Approved, Status::Ready),
        (
            Event::Started {
                approval_bypass: false,
            },
            Status::Ongoing,
        ),
        (Event::Completed, Status::Done),
    ] {
        s = next(s, &event).expect("allowed");
        assert_eq!(s, expect);
    }
    assert_eq!(s.as_str(), "CARD_PROD_DONE");
}

#[test]
fn refused_transitions_name_the_state_and_rule() {
    // Unapproved data cannot be started except by the tester bypass.
    let e = next(
        Status::DataPrepared,
        &Event::Started {
            approval_bypass: false,
        },
    )
    .expect_err("needs approval");
    assert!(e.to_string().contains("DATA_PREPARED"), "{e}");
    assert!(e.to_string().contains("approved first"), "{e}");
    assert_eq!(
        next(
            Status::DataPrepared,
            &Event::Started {
                approval_bypass: true
            }
        ),
        Ok(Status::Ongoing)
    );
    // A rejection needs a reason.
    assert!(next(Status::DataPrepared, &rejected("  ")).is_err());
    assert_eq!(
        next(Status::DataPrepared, &rejected("name misspelt")),
        Ok(Status::DataException)
    );
    // Exceptions cannot be approved; done is final; reviewed data is not re-prepared.
    assert!(next(Status::DataException, &Event::Approved).is_err());
    assert!(
        next(
            Status::Done,
            &Event::Started {
                approval_bypass: true
            }
        )
        .is_err()
    );
    assert!(next(Status::Ready, &Event::Prepared).is_err());
    assert!(next(Status::Requested, &Event::Completed).is_err());
    // A failed run may be retried; a prepare failure may be fixed by preparing again.
    assert_eq!(
        next(
            Status::Failed,
            &Event::Started {
                approval_bypass: false
            }
        ),
        Ok(Status::Ongoing)
    );
    assert_eq!(
        next(Status::DataException, &Event::Prepared),
        Ok(Status::DataPrepared)
    );
    assert_eq!(
        next(
            Status::Ongoing,
            &Event::Failed {
                reason: "stripe write: encoder error".into()
            }
        ),
        Ok(Status::Failed)
    );
}

fn facts(status: Status, approved: bool, test_keys_only: bool) -> OrderFacts {
    OrderFacts {
        status,
        approved,
        test_keys_only,
    }
}

#[test]
fn review_rules_per_role() {
    // Only supervisors review, and only prepared data.
    assert!(may_review(Role::Supervisor, facts(Status::DataPrepared, false, true)).is_ok());
    assert!(may_review(Role::Operator, facts(Status::DataPrepared, false, true)).is_err());
    assert!(may_review(Role::Tester, facts(Status::DataPrepared, false, true)).is_err());
    assert!(may_review(Role::Supervisor, facts(Status::DataException, false, true)).is_err());

    // Operators personalize approved orders only.
    let d = may_personalize(Role::Operator, facts(Status::DataPrepared, false, true))
        .expect_err("unapproved");
    assert_eq!(d.rule, "operators personalize approved orders only");
    assert_eq!(
        may_personalize(Role::Operator, facts(Status::Ready, true, false)),
        Ok(PersoGrant {
            approval_bypass: false
        })
    );
    // A failed tester run (never approved) cannot be retried by an operator.
    assert!(may_personalize(Role::Operator, facts(Status::Failed, false, true)).is_err());
    assert!(may_personalize(Role::Operator, facts(Status::Failed, true, false)).is_ok());
    // Supervisors do not personalize.
    assert!(may_personalize(Role::Supervisor, facts(Status::Ready, true, true)).is_err());
    // Testers run without approval on test keys only.
    assert_eq!(
        may_personalize(Role::Tester, facts(Status::DataPrepared, false, true)),
        Ok(PersoGrant {
            approval_bypass: true
        })
    );
    assert!(may_personalize(Role::Tester, facts(Status::DataPrepared, false, false)).is_err());
    assert!(may_personalize(Role::Tester, facts(Status::Done, true, true)).is_err());

    // Reveal: testers on test keys only.
    assert!(may_reveal(Role::Tester, true).is_ok());
    assert!(may_reveal(Role::Tester, false).is_err());
    assert!(may_reveal(Role::Supervisor, true).is_err());
    assert!(may_reveal(Role::Operator, true).is_err());
    assert_eq!(review::Role::parse("tester"), Some(Role::Tester));
}

#[test]
fn store_records_statuses_approvals_and_audit_and_survives_reopen() {
    let dir = TempDir::new("store");
    let sup = who(Role::Supervisor);
    let op = who(Role::Operator);
    {
        let mut store = Store::open(&dir.db()).expect("open");
        let states = store
            .record_preparation(&[
                ("A", None),
                ("B", Some("encryptedData.exp: month 13 is not 01-12")),
                ("C", None),
            ])
            .expect("record");
        assert_eq!(
            states.iter().map(|s| s.status).collect::<Vec<_>>(),
            [
                Status::DataPrepared,
                Status::DataException,
                Status::DataPrepared
            ]
        );
        assert_eq!(
            states[1].reason.as_deref(),
            Some("encryptedData.exp: month 13 is not 01-12")
        );
        let st = store.apply("A", &Event::Approved, &sup).expect("approve");
        assert_eq!((st.status, st.approved), (Status::Ready, true));
        store
            .apply("C", &rejected("wrong name on track 1"), &sup)
            .expect("reject");
        store
            .apply(
                "A",
                &Event::Started {
                    approval_bypass: false,
                },
                &op,
            )
            .expect("start");
        store.set_setting("gui.encoder", "sim").expect("setting");
    }
    // Reopen: everything is still there.
    let mut store = Store::open(&dir.db()).expect("reopen");
    let a = store.state("A").expect("read").expect("A stored");
    assert_eq!(a.status, Status::Ongoing);
    assert!(a.approved);
    let c = store.state("C").expect("read").expect("C stored");
    assert_eq!(c.status, Status::DataException);
    assert!(
        c.reason
            .as_deref()
            .is_some_and(|r| r.contains("wrong name"))
    );
    assert_eq!(
        store.setting("gui.encoder").expect("setting").as_deref(),
        Some("sim")
    );
    let approvals = store.approvals("A").expect("approvals");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].decision, "approved");
    assert_eq!(approvals[0].user, "supervisor-1");
    assert_eq!(
        store.approvals("C").expect("approvals")[0].decision,
        "rejected"
    );

    // Re-preparing a reviewed order leaves its state alone, and a rejection stands until a new
    // decision (issue 13, finding 3: reloading no longer makes C approvable again).
    let again = store
        .record_preparation(&[("A", None), ("C", None)])
        .expect("record again");
    assert_eq!(again[0].status, Status::Ongoing);
    assert_eq!(again[1].status, Status::DataException);

    // A run of this (living) process is not interrupted; once its owner is a process that does
    // not run (pid 1 did not start at tick 0), it becomes a failure with the reason.
    assert_eq!(store.recover_interrupted(&op).expect("recover"), 0);
    rusqlite::Connection::open(dir.db())
        .expect("db")
        .execute("UPDATE orders SET owner = '1:0' WHERE order_id = 'A'", [])
        .expect("owner");
    assert_eq!(store.recover_interrupted(&op).expect("recover"), 1);
    let a = store.state("A").expect("read").expect("A");
    assert_eq!(a.status, Status::Failed);
    assert!(
        a.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("interrupted"))
    );

    // A refused event is an error naming the state, and is audited.
    let err = store
        .apply("B", &Event::Approved, &sup)
        .expect_err("exception cannot be approved");
    assert!(matches!(err, StoreError::Transition { .. }), "{err}");
    assert!(err.to_string().contains("DATA_EXCEPTION"), "{err}");
    assert!(matches!(
        store.apply("nope", &Event::Approved, &sup),
        Err(StoreError::UnknownOrder(_))
    ));

    let audit = store.audit_trail(100).expect("audit");
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            "approved",
            "perso-failed",
            "perso-started",
            "rejected",
            "approved",
            "prepared",
            "prepare-failed",
            "prepared"
        ]
    );
    assert!(audit[0].outcome.starts_with("refused:"), "{:?}", audit[0]);
    assert_eq!(audit[2].user, "operator-1");
    assert_eq!(audit[2].role, "operator");
    // Preparation is audited as the operating-system account, role `system`.
    assert_eq!(audit[7].role, "system");
    assert!(audit[1].outcome.contains("interrupted"), "{:?}", audit[1]);
    assert!(audit.iter().all(|r| r.at > 0));
}

#[test]
fn store_scrubs_digit_runs_from_reasons_and_audit() {
    let dir = TempDir::new("scrub");
    let mut store = Store::open(&dir.db()).expect("open");
    store
        .record_preparation(&[("X", Some("track 5413330089012345 is bad"))])
        .expect("record");
    let x = store.state("X").expect("read").expect("X");
    assert_eq!(x.reason.as_deref(), Some("track 541333******2345 is bad"));
    store
        .audit(
            &who(Role::Tester),
            "note",
            Some("X"),
            "saw 4761739001010010",
        )
        .expect("audit");
    let audit = store.audit_trail(1).expect("audit");
    assert_eq!(audit[0].outcome, "saw 476173******0010");
}

#[test]
fn open_reports_an_unusable_path() {
    let dir = TempDir::new("bad");
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let err = Store::open(&file.join("db.sqlite3")).expect_err("parent is a file");
    assert!(err.to_string().contains("cannot open the store"), "{err}");
}

#[test]
fn time_format_is_utc() {
    // 1700000000 = 2023-11-14 22:13:20 UTC (date -u -d @1700000000).
    assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
}

/// Issue 13, finding 10: the tester's start without approval is named in the audit trail.
#[test]
fn the_testers_approval_bypass_is_audited() {
    let dir = TempDir::new("bypass");
    let mut store = Store::open(&dir.db()).expect("open");
    store.record_preparation(&[("T", None)]).expect("record");
    store
        .apply(
            "T",
            &Event::Started {
                approval_bypass: true,
            },
            &who(Role::Tester),
        )
        .expect("start");
    let trail = store.audit_trail(1).expect("trail");
    assert_eq!(trail[0].action, "perso-started");
    assert!(
        trail[0].outcome.contains("approval bypass"),
        "{:?}",
        trail[0]
    );
}
