//! `persodesk audit verify|show|export`: checks the store's hash-chained, sealed audit trail,
//! lists it, or writes its head for a copy kept elsewhere.
//!
//! - `verify` checks the chain, the head, the append-only triggers, that every order's status is
//!   explained by the trail and, with the `audit` key (the configuration's key store in
//!   production, `--keys` in test mode), every seal. `--expect-head` compares with an earlier
//!   `export`: the trail must still hold that record with that hash (a wiped, truncated or
//!   replaced store fails).
//! - `export` prints `persodesk-audit-head v1 count=N head=HEX`.
//!
//! Exit codes: 0 intact (verify) or listed (show, export); 1 the trail was tampered with (verify
//! names the first problem); 2 no store at the path, or it cannot be opened.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Exit, unreadable};
use crate::store::audit::{ChainProblem, Verdict};
use crate::store::{self, Store};

/// `persodesk audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

/// Where the store and its key are.
#[derive(Debug, Args)]
struct StoreArgs {
    /// An SQLite store file (default: `--store`, else $PERSODESK_STORE, else the configuration's
    /// `store`, else persodesk.sqlite3 in $PERSODESK_DATA_DIR, $XDG_DATA_HOME/persodesk or
    /// ~/.local/share/persodesk).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Key store holding the `audit` key, to check the seals (test mode; production uses the
    /// configuration's key store and refuses this flag).
    #[arg(long)]
    keys: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit trail: chain, head, seals, triggers, order statuses.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// An earlier `audit export` line (or a file holding it) the trail must still contain.
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// List the newest audit records with their sequence numbers.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// How many records, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON array of the records (newest first) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the head (record count and hash) for a copy kept elsewhere.
    Export {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs `persodesk audit ...`.
pub fn run(args: &AuditArgs) -> Exit {
    match &args.command {
        AuditCommand::Verify { store, expect_head } => verify(store, expect_head.as_deref()),
        AuditCommand::Show { store, limit, json } => show(store, *limit, *json),
        AuditCommand::Export { store } => export(store),
    }
}

/// Opens an existing store (never creates one: a missing database is an input error), sealed
/// when an audit key is at hand (always in production).
fn open(args: &StoreArgs) -> Result<Store, Exit> {
    let location = match &args.db {
        Some(p) => store::StoreLocation::Sqlite(p.clone()),
        None => super::store_location()?,
    };
    if let store::StoreLocation::Sqlite(path) = &location
        && !path.is_file()
    {
        return Err(unreadable(format!(
            "{}: no persodesk store there",
            path.display()
        )));
    }
    let production = super::mode()? == crate::config::Mode::Production;
    let keys = if production || args.keys.is_some() {
        let p = super::keys_path(args.keys.as_deref())?;
        Some(super::read_keys(&p)?)
    } else {
        None
    };
    let sealer = keys
        .as_ref()
        .and_then(crate::keys::LoadedKeys::audit_sealer);
    if keys.is_some() && sealer.is_none() {
        return Err(unreadable("the key store holds no audit key"));
    }
    Store::open_at_for_verify(&location, sealer).map_err(unreadable)
}

/// Parses an export line, or reads it from a file.
fn expected_head(arg: &str) -> Result<(u64, String), Exit> {
    let text = if arg.starts_with("persodesk-audit-head") {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg)
            .map_err(|e| unreadable(format!("--expect-head {arg}: cannot be read: {}", e.kind())))?
    };
    let line = text.trim();
    let parse = || -> Option<(u64, String)> {
        let rest = line.strip_prefix("persodesk-audit-head v1 count=")?;
        let (count, head) = rest.split_once(" head=")?;
        Some((count.parse().ok()?, head.trim().to_string()))
    };
    parse().ok_or_else(|| {
        unreadable("--expect-head: not a `persodesk-audit-head v1 count=N head=HEX` line")
    })
}

/// The problem when the trail no longer holds record `count` with hash `head`.
fn compare_expected(store: &Store, count: u64, head: &str) -> Result<Option<ChainProblem>, Exit> {
    let chain = store.audit_chain().map_err(unreadable)?;
    if count == 0 {
        return Ok(None);
    }
    let found = chain.iter().find(|r| r.seq == Some(count));
    Ok(match found {
        None => Some(ChainProblem::Expected {
            detail: format!(
                "record {count} is gone: the trail holds {} records (wiped or replaced)",
                chain.len()
            ),
        }),
        Some(r) if r.hash.as_deref() != Some(head) => Some(ChainProblem::Expected {
            detail: format!("record {count} has another hash: the trail was rewritten"),
        }),
        Some(_) => None,
    })
}

fn verify(args: &StoreArgs, expect: Option<&str>) -> Exit {
    let expected = match expect.map(expected_head).transpose() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let store = match open(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut verdict: Verdict = match store.verify_audit() {
        Ok(v) => v,
        Err(e) => return unreadable(e),
    };
    if verdict.problem.is_none()
        && let Some((count, head)) = &expected
    {
        match compare_expected(&store, *count, head) {
            Ok(p) => verdict.problem = p,
            Err(e) => return e,
        }
    }
    let sealed = if store.sealed() {
        "sealed"
    } else {
        "seals not checked (no audit key)"
    };
    match &verdict.problem {
        None => {
            println!(
                "audit trail intact: {} records, head {}, {sealed}",
                verdict.records, verdict.head
            );
            println!("store: {}", store.path().display());
            Exit::Ok
        }
        Some(problem) => {
            println!("audit trail TAMPERED: {problem}");
            println!(
                "records 1-{} check out (head {})",
                verdict.records, verdict.head
            );
            println!("store: {}", store.path().display());
            Exit::Invalid
        }
    }
}

fn export(args: &StoreArgs) -> Exit {
    let store = match open(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    match store.audit_head() {
        Ok(Some((count, head))) => {
            println!("persodesk-audit-head v1 count={count} head={head}");
            Exit::Ok
        }
        Ok(None) => {
            println!(
                "persodesk-audit-head v1 count=0 head={}",
                store::audit::GENESIS
            );
            Exit::Ok
        }
        Err(e) => unreadable(e),
    }
}

/// Free text as shown on one terminal line: control characters escaped.
fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn show(args: &StoreArgs, limit: usize, json: bool) -> Exit {
    let store = match open(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let chain = match store.audit_chain() {
        Ok(c) => c,
        Err(e) => return unreadable(e),
    };
    if json {
        let records: Vec<serde_json::Value> = chain
            .iter()
            .rev()
            .take(limit)
            .map(|r| {
                serde_json::json!({
                    "seq": r.seq,
                    "at": r.record.at,
                    "user": r.record.user,
                    "role": r.record.role,
                    "action": r.record.action,
                    "order": r.record.order_id,
                    "outcome": r.record.outcome,
                    "hash": r.hash,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(records));
        return Exit::Ok;
    }
    let seq = |s: Option<u64>| s.map_or_else(|| "?".to_string(), |s| s.to_string());
    for r in chain.iter().rev().take(limit) {
        let rec = &r.record;
        println!(
            "{:>6}  {}  {}  {}  {}  {}  {}",
            seq(r.seq),
            store::format_time(rec.at),
            one_line(&rec.user),
            one_line(&rec.role),
            one_line(&rec.action),
            one_line(rec.order_id.as_deref().unwrap_or("-")),
            one_line(&rec.outcome)
        );
    }
    println!(
        "{} of {} records (newest first); check them with `persodesk audit verify`",
        chain.len().min(limit),
        chain.len()
    );
    Exit::Ok
}
