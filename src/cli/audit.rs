//! `persodesk audit verify|show`: checks the store's hash-chained audit trail, or lists it.
//!
//! Exit codes: 0 intact (verify) or listed (show); 1 the trail was tampered with (verify names
//! the first modified, reordered or deleted record by its sequence number); 2 no store at the
//! path, or it cannot be opened.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{Exit, unreadable};
use crate::store::{self, Store};

/// `persodesk audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit trail's hash chain; name the first modified, reordered or deleted record.
    Verify {
        /// The store database (default: persodesk.sqlite3 in $PERSODESK_DATA_DIR, else
        /// $XDG_DATA_HOME/persodesk, else ~/.local/share/persodesk).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// List the newest audit records with their sequence numbers.
    Show {
        /// The store database (default as for `verify`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// How many records, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// Runs `persodesk audit ...`.
pub fn run(args: &AuditArgs) -> Exit {
    match &args.command {
        AuditCommand::Verify { db } => verify(db.as_deref()),
        AuditCommand::Show { db, limit } => show(db.as_deref(), *limit),
    }
}

/// Opens an existing store (never creates one: a missing database is an input error).
fn open(db: Option<&Path>) -> Result<Store, Exit> {
    let path = match db {
        Some(p) => p.to_path_buf(),
        None => store::data_dir().map_err(unreadable)?.join(store::DB_FILE),
    };
    if !path.is_file() {
        return Err(unreadable(format!(
            "{}: no persodesk store there",
            path.display()
        )));
    }
    Store::open(&path).map_err(unreadable)
}

fn verify(db: Option<&Path>) -> Exit {
    let store = match open(db) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let verdict = match store.verify_audit() {
        Ok(v) => v,
        Err(e) => return unreadable(e),
    };
    match &verdict.problem {
        None => {
            println!(
                "audit trail intact: {} records, head {}",
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

fn show(db: Option<&Path>, limit: usize) -> Exit {
    let store = match open(db) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let chain = match store.audit_chain() {
        Ok(c) => c,
        Err(e) => return unreadable(e),
    };
    let seq = |s: Option<u64>| s.map_or_else(|| "?".to_string(), |s| s.to_string());
    for r in chain.iter().rev().take(limit) {
        let rec = &r.record;
        println!(
            "{:>6}  {}  {}  {}  {}  {}  {}",
            seq(r.seq),
            store::format_time(rec.at),
            rec.user,
            rec.role,
            rec.action,
            rec.order_id.as_deref().unwrap_or("-"),
            rec.outcome
        );
    }
    println!(
        "{} of {} records (newest first); check them with `persodesk audit verify`",
        chain.len().min(limit),
        chain.len()
    );
    Exit::Ok
}
