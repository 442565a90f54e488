//! `persodesk keys pool fill|status`: the persisted ICC key pool ([`crate::store::key_pool`]).
//! Filling generates on every core and seals each private key with the key store's `store` key;
//! a key store without one is refused (private keys are never kept in clear).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::super::{Exit, keys_path, read_keys, unreadable};
use crate::domain::oda::RsaExponent;
use crate::keys::persisted_pool;
use crate::store::key_pool::IccKeyPoolStore;

/// Arguments of `keys pool`.
#[derive(Debug, Args)]
pub struct PoolArgs {
    #[command(subcommand)]
    command: PoolCommand,
}

#[derive(Debug, Subcommand)]
enum PoolCommand {
    /// Generate COUNT ICC key pairs of BITS bits (on every core), sealed, into the store.
    Fill {
        /// Modulus size in bits (a multiple of 8, as the chip profile's icc_key_bits).
        #[arg(long)]
        bits: usize,
        /// How many pairs to add.
        #[arg(long)]
        count: usize,
        /// Public exponent: 3 or 65537 (the chip profile's icc_exponent).
        #[arg(long, default_value_t = 3)]
        exponent: u32,
        /// Key store holding the `store` sealing key [default: assets/demo/keys.toml;
        /// production: the configuration's, and this flag is refused].
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Generating threads [default: the cores available].
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Pairs left per size and exponent.
    Status,
}

/// Runs `keys pool`.
pub fn run(args: &PoolArgs) -> Exit {
    match &args.command {
        PoolCommand::Fill {
            bits,
            count,
            exponent,
            keys,
            jobs,
        } => fill(*bits, *count, *exponent, keys.as_deref(), *jobs),
        PoolCommand::Status => status(),
    }
}

fn fill(
    bits: usize,
    count: usize,
    exponent: u32,
    keys: Option<&Path>,
    jobs: Option<usize>,
) -> Exit {
    let e = match RsaExponent::from_value(exponent) {
        Ok(e) => e,
        Err(err) => return unreadable(format!("--exponent: {err}")),
    };
    if !bits.is_multiple_of(8) || !(512..=1984).contains(&bits) {
        return unreadable("--bits must be a multiple of 8 from 512 to 1984");
    }
    let keys = match keys_path(keys).and_then(|p| read_keys(&p)) {
        Ok(k) => k,
        Err(x) => return x,
    };
    // Refuse before generating anything when the key store cannot seal.
    let Some(seal) = keys.store_seal() else {
        return unreadable(format!(
            "{}: this key store cannot seal: the ICC key pool keeps private keys sealed only",
            keys.source()
        ));
    };
    if let Err(err) = seal.store_seal("icc-key:probe", b"") {
        return unreadable(format!(
            "{}: {err}: the ICC key pool keeps private keys sealed only (a key of usage store)",
            keys.source()
        ));
    }
    // The store the global `--store` / `$PERSODESK_STORE` / the configuration names.
    let location = match super::super::store_location() {
        Ok(l) => l,
        Err(x) => return x,
    };
    let mut db = match crate::store::Store::open_at(&location, keys.audit_sealer()) {
        Ok(s) => s,
        Err(err) => return unreadable(format!("workstation store: {err}")),
    };
    let jobs = jobs.unwrap_or_else(crate::batch::default_jobs);
    let started = std::time::Instant::now();
    let kept = persisted_pool::fill(seal, bits, e, count, jobs, |batch| {
        db.put_pairs(bits, exponent, batch)
            .map_err(|e| e.to_string())
    });
    match kept {
        Ok(n) => {
            eprintln!(
                "added {n} sealed {bits}-bit ICC key pair(s) (e = {exponent}) in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            print_counts(&db)
        }
        Err(err) => {
            eprintln!("error: ICC key pool: {err}");
            Exit::Invalid
        }
    }
}

fn print_counts(db: &crate::store::Store) -> Exit {
    match db.pool_counts() {
        Ok(counts) => {
            if counts.is_empty() {
                println!("ICC key pool: empty");
            }
            for c in counts {
                println!(
                    "{} bits  e={}  {} pair(s) left",
                    c.bits, c.exponent, c.count
                );
            }
            Exit::Ok
        }
        Err(e) => unreadable(format!("workstation store: {e}")),
    }
}

fn status() -> Exit {
    let location = match super::super::store_location() {
        Ok(l) => l,
        Err(x) => return x,
    };
    match crate::store::Store::open_at_for_verify(&location, None) {
        Ok(db) => print_counts(&db),
        Err(e) => unreadable(format!("workstation store: {e}")),
    }
}
