//! `persodesk station run`: a production station on the shared queue.
//!
//! Repeats until nothing is claimable and no other station's card can fail back (or `--max`
//! orders): expire lapsed leases, claim the next
//! order this role may work ([`crate::store::Store::claim`]: operators approved orders only, never
//! one they approved themselves), open it (JWE or sealed), prepare it, `job::authorize` (the role
//! rules and the approval's evidence), `job::run` (the one personalization flow) with the lease
//! renewed at every step, then the fenced final write ([`crate::store::Store::finish_claim`]) of
//! the outcome as the one flow maps it ([`job::outcome_event`]: a card the card check refused
//! puts the order back, not FAILED).
//! Prints one JSON summary line; appends one records line per order worked.
//!
//! `--reader virtual` is a fresh in-process virtual card per order for the order's chip profile
//! (card keys from the profile's test KMC), `--encoder sim` an in-process simulated MSR206 on a
//! pseudo-terminal: both test mode only.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Exit, keys_path, profiles_path, read_catalog, read_keys, unreadable};
use crate::devices::connector::{PcscReader, VirtualCardReader, blank_virtual_card};
use crate::devices::encoder::SerialConfig;
use crate::domain::chip::ChipProfiles;
use crate::domain::finding::Finding;
use crate::domain::product::Catalog;
use crate::domain::review::{Role, Session};
use crate::domain::status::Event;
use crate::job::{
    self, CardConnector, CardJob, FailureKind, JobEvent, JobReport, SerialStripe, Step,
    StepFailure, StripeWriter,
};
use crate::keys::LoadedKeys;
use crate::store::{Claim, Store};

/// `persodesk station ...`
#[derive(Debug, Args)]
pub struct StationArgs {
    #[command(subcommand)]
    command: StationCommand,
}

#[derive(Debug, Subcommand)]
enum StationCommand {
    /// Claim and personalize queued orders until none is left (or --max).
    Run(RunArgs),
}

/// Arguments of `station run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// PC/SC reader, or `virtual` (an in-process virtual card per order; test mode only).
    #[arg(long)]
    reader: String,
    /// Encoder serial port, `sim` (in-process simulated encoder; test mode only) or `none`.
    #[arg(long, default_value = "none")]
    encoder: String,
    /// operator (approved orders only) or tester (test keys; preparation included).
    #[arg(long)]
    role: String,
    /// User name for the audit trail, test mode only.
    #[arg(long)]
    user: Option<String>,
    /// This station's name [default: host name and process id].
    #[arg(long)]
    station: Option<String>,
    /// Stop after this many orders.
    #[arg(long)]
    max: Option<usize>,
    /// Lease length; renewed at every step of the card.
    #[arg(long, default_value_t = 60)]
    lease_seconds: i64,
    /// Key store file [default: assets/demo/keys.toml; production: the configuration's].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Directory holding products/ and chip/ [default: profiles; production: the
    /// configuration's].
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Records log (JSON Lines), one line per order worked [default: records.jsonl in the data
    /// directory].
    #[arg(long)]
    records: Option<PathBuf>,
}

/// The summary line.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    station: String,
    role: &'static str,
    claimed: usize,
    done: usize,
    failed: usize,
    refused: usize,
    stale_writes: usize,
    leases_expired: usize,
    seconds: f64,
    cards_per_minute: f64,
}

/// One records line.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StationRecord {
    at: String,
    operation: &'static str,
    station: String,
    order: String,
    fence: i64,
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Completed personalization sessions the virtual card counted (`None`: a real card).
    #[serde(skip_serializing_if = "Option::is_none")]
    personalizations: Option<u32>,
}

/// What a station works with.
struct Bench {
    who: Session,
    station: String,
    catalog: Catalog,
    chip_profiles: ChipProfiles,
    keys: LoadedKeys,
    reader: String,
    stripe_port: Option<String>,
    records: PathBuf,
}

/// Runs `persodesk station ...`.
pub fn run(args: &StationArgs) -> Exit {
    match &args.command {
        StationCommand::Run(a) => run_station(a).unwrap_or_else(|e| e),
    }
}

fn run_station(args: &RunArgs) -> Result<Exit, Exit> {
    let role = match args.role.as_str() {
        "operator" => Role::Operator,
        "tester" => Role::Tester,
        other => {
            return Err(unreadable(format!(
                "--role: `{other}` is not operator or tester"
            )));
        }
    };
    if args.lease_seconds < 2 {
        return Err(unreadable("--lease-seconds: must be at least 2"));
    }
    if args.reader == "virtual" {
        super::refuse_in_production("--reader virtual")?;
    }
    let sim = if args.encoder == "sim" {
        super::refuse_in_production("--encoder sim")?;
        Some(
            crate::sim::encoder::SimEncoder::start(crate::sim::encoder::SimConfig::default())
                .map_err(|e| unreadable(format!("--encoder sim: {e}")))?,
        )
    } else {
        None
    };
    let stripe_port = match (&sim, args.encoder.as_str()) {
        (Some(s), _) => Some(s.path().display().to_string()),
        (None, "none") => None,
        (None, port) => Some(port.to_string()),
    };
    let profiles = profiles_path(args.profiles.as_deref())?;
    let keys = read_keys(&keys_path(args.keys.as_deref())?)?;
    // The virtual card holds test keys in clear: refused before any claim on a token (else
    // every order would fail at connect).
    if args.reader == "virtual"
        && let Err(e) = keys.software()
    {
        return Err(unreadable(format!(
            "--reader virtual: {e}; on a token, use a PC/SC reader (`persodesk sim-card` holds \
             its own keys)"
        )));
    }
    let bench = Bench {
        who: super::session(role, args.user.as_deref())?,
        station: args.station.clone().unwrap_or_else(default_station),
        catalog: read_catalog(&profiles)?,
        chip_profiles: crate::catalog::load_chip_profiles(&profiles).map_err(unreadable)?,
        reader: args.reader.clone(),
        stripe_port,
        records: args
            .records
            .clone()
            .unwrap_or_else(super::records::default_path),
        keys,
    };
    let mut store = super::open_store(&bench.keys)?;
    let summary = work_queue(&bench, &mut store, args)?;
    let line = serde_json::to_string(&summary).map_err(|e| unreadable(e.to_string()))?;
    println!("{line}");
    if let Some(s) = sim {
        s.stop();
    }
    Ok(Exit::Ok)
}

fn default_station() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "station".into());
    format!("{host}-{}", std::process::id())
}

fn work_queue(bench: &Bench, store: &mut Store, args: &RunArgs) -> Result<Summary, Exit> {
    let started = Instant::now();
    let mut summary = Summary {
        station: bench.station.clone(),
        role: bench.who.role.as_str(),
        ..Summary::default()
    };
    let store_err = |e: crate::store::StoreError| unreadable(format!("store: {e}"));
    let mut skip: HashSet<String> = HashSet::new();
    while args.max.is_none_or(|m| summary.claimed < m) {
        summary.leases_expired += store.expire_leases(&bench.who).map_err(store_err)?;
        let claim = store
            .claim(&bench.who, &bench.station, args.lease_seconds, &|id| {
                skip.contains(id)
            })
            .map_err(store_err)?;
        let Some(claim) = claim else {
            // Another station's card may still fail back (its lease runs out): wait for it.
            if store.leased_ongoing().map_err(store_err)? > 0 {
                std::thread::sleep(std::time::Duration::from_millis(500));
                continue;
            }
            break;
        };
        summary.claimed += 1;
        let outcome = work_one(bench, store, &claim);
        let (label, error, count) = match outcome {
            Worked::Done(n) => {
                summary.done += 1;
                ("done", None, n)
            }
            Worked::Failed(e, n) => {
                summary.failed += 1;
                ("failed", Some(e), n)
            }
            Worked::Refused(e) => {
                summary.refused += 1;
                skip.insert(claim.order_id.clone());
                let _ = store.release(&claim);
                ("refused", Some(e), None)
            }
            Worked::NotStarted(e) => {
                summary.refused += 1;
                skip.insert(claim.order_id.clone());
                ("refused", Some(e), None)
            }
            Worked::Stale(e, n) => {
                summary.stale_writes += 1;
                ("stale", Some(e), n)
            }
        };
        let record = StationRecord {
            at: super::records::now_rfc3339(),
            operation: "station",
            station: bench.station.clone(),
            order: claim.order_id.clone(),
            fence: claim.fence,
            outcome: label.into(),
            error,
            personalizations: count,
        };
        if let Err(e) = super::records::append(&bench.records, &record) {
            eprintln!(
                "error: cannot append to {}: {}",
                bench.records.display(),
                e.kind()
            );
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if summary.seconds > 0.0 {
        summary.cards_per_minute = summary.done as f64 * 60.0 / summary.seconds;
    }
    Ok(summary)
}

/// How one claimed order ended.
enum Worked {
    /// Personalized and recorded CARD_PROD_DONE (virtual card's count).
    Done(Option<u32>),
    /// Recorded CARD_PROD_FAILED (why).
    Failed(String, Option<u32>),
    /// Not started: preparation, the role rules or the approval refused it.
    Refused(String),
    /// The card check refused the card (not fresh): nothing was written and the order is back
    /// where it was before it started (why).
    NotStarted(String),
    /// The final write was refused: the lease had been taken over.
    Stale(String, Option<u32>),
}

fn work_one(bench: &Bench, store: &mut Store, claim: &Claim) -> Worked {
    let item = match store.queued(&claim.order_id) {
        Ok(Some(item)) => item,
        Ok(None) => return Worked::Refused("not in the queue".into()),
        Err(e) => return Worked::Refused(format!("store: {e}")),
    };
    let entry = match super::queue::open_queued(&item, &bench.keys, &bench.catalog) {
        Ok(e) => e,
        Err(e) => return Worked::Refused(e),
    };
    let prepared =
        super::queue::prepare_entry(&entry, &bench.catalog, &bench.chip_profiles, &bench.keys);
    let failure = prepared.as_ref().err().map(|f| Finding::join(f));
    if let Err(e) =
        store.record_preparation_by(&[(claim.order_id.as_str(), failure.as_deref())], &bench.who)
    {
        return Worked::Refused(format!("store: {e}"));
    }
    let (order, data) = match prepared {
        Ok(x) => x,
        Err(f) => return Worked::Refused(format!("prepare: {}", Finding::join(&f))),
    };
    if let Err(e) = store.renew(claim, "authorization") {
        return Worked::Stale(e.to_string(), None);
    }
    if let Err(f) = job::authorize(store, &bench.who, &claim.order_id, &data) {
        return Worked::Refused(f.reason());
    }
    let report = run_card(bench, store, claim, order, &data);
    finish(store, bench, claim, &report)
}

/// The job on this station's reader and encoder; a card profile or virtual card that cannot be
/// had is the job's failure at `prepare` or `connect`, as the one flow words it.
fn run_card(
    bench: &Bench,
    store: &Store,
    claim: &Claim,
    order: &crate::domain::order::Order,
    data: &crate::domain::prepare::PersoData,
) -> CardRun {
    let failed = |step, message: String, kind| CardRun {
        report: JobReport {
            failure: Some(StepFailure::new(step, message, kind)),
            ..JobReport::default()
        },
        count: None,
    };
    let profile = match super::chip_profile_of(&bench.catalog, &bench.chip_profiles, order, data) {
        Ok(p) => p,
        Err(e) => return failed(Step::Prepare, e, FailureKind::Refused),
    };
    let card_job = CardJob {
        order,
        data,
        keys: bench.keys.port(),
        chip: profile.map(|p| (p, p.channel.clone())),
    };
    let mut virtual_reader = None;
    let mut pcsc = None;
    if bench.reader == "virtual" {
        match profile
            .map(|p| blank_virtual_card(p, &bench.keys))
            .transpose()
        {
            Ok(card) => virtual_reader = card.map(VirtualCardReader::new),
            Err(e) => return failed(Step::Connect, e.to_string(), FailureKind::DeviceUnavailable),
        }
    } else {
        pcsc = Some(PcscReader(bench.reader.clone()));
    }
    let connector: Option<&mut dyn CardConnector> = match (&mut virtual_reader, &mut pcsc) {
        (Some(v), _) => Some(v),
        (None, Some(p)) => Some(p),
        (None, None) => None,
    };
    let mut stripe = bench.stripe_port.as_deref().map(|port| SerialStripe {
        config: SerialConfig::new(port),
        observer: |_: &crate::devices::encoder::EncoderEvent| {},
    });
    let mut renewals = Renewals::new(store, claim);
    let report = job::run(
        &card_job,
        connector.filter(|_| data.chip.is_some()),
        stripe.as_mut().map(|s| s as &mut dyn StripeWriter),
        &mut |event| renewals.on(event),
    );
    // The virtual card counts its personalization: 1 once its application holds data.
    let count = (bench.reader == "virtual").then(|| {
        u32::from(
            virtual_reader
                .as_ref()
                .is_some_and(|v| v.card().application().is_some()),
        )
    });
    CardRun { report, count }
}

/// A run's report and the virtual card's personalization count (`None`: a real card).
struct CardRun {
    report: JobReport,
    count: Option<u32>,
}

/// The fenced final write of the run's outcome, mapped as the one flow maps it
/// ([`job::outcome_event`]).
fn finish(store: &Store, bench: &Bench, claim: &Claim, run: &CardRun) -> Worked {
    let failure = run.report.failure.as_ref();
    let event = match job::outcome_event(store, &claim.order_id, failure) {
        Ok(e) => e,
        Err(e) => return Worked::Stale(format!("store: {e}"), run.count),
    };
    match store.finish_claim(claim, &bench.who, &event) {
        Ok(_) => match (failure, &event) {
            (None, _) => Worked::Done(run.count),
            (Some(f), Event::NotStarted { .. }) => Worked::NotStarted(f.reason()),
            (Some(f), _) => Worked::Failed(f.reason(), run.count),
        },
        Err(e) => Worked::Stale(e.to_string(), run.count),
    }
}

/// Renews the lease at each new step of the card (at most once a second).
struct Renewals<'a> {
    store: &'a Store,
    claim: &'a Claim,
    last: Instant,
    step: String,
}

impl<'a> Renewals<'a> {
    fn new(store: &'a Store, claim: &'a Claim) -> Self {
        Renewals {
            store,
            claim,
            last: Instant::now(),
            step: String::new(),
        }
    }

    fn on(&mut self, event: JobEvent) {
        let step = match event {
            JobEvent::Perso(p) => p.step.to_string(),
            JobEvent::ReadBack => job::READ_BACK.to_string(),
            JobEvent::Stripe => "stripe write".to_string(),
        };
        if step == self.step && self.last.elapsed().as_secs() < 1 {
            return;
        }
        if let Err(e) = self.store.renew(self.claim, &step) {
            tracing::warn!(order = %self.claim.order_id, "lease renewal refused: {e}");
        }
        self.step = step;
        self.last = Instant::now();
    }
}
