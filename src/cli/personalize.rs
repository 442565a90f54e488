//! `persodesk personalize`: one card end to end. Prepares the order (Model 1 or 2), checks the
//! role rules against the workstation's store, opens the profile's secure channel on the reader,
//! stores every DGI, reads the card back as a terminal and compares it with what was prepared,
//! then writes and verifies the stripe when an encoder is given (only after the chip succeeded).
//!
//! The outcome goes to the store (status and audit, the same database the workstation uses) and
//! to the records log (JSON Lines). Everything printed is masked; the APDU transcript holds
//! headers, lengths and status words only.
//!
//! Exit codes: 0 personalized and verified; 1 order invalid, preparation failed or refused by the
//! role rules; 2 input unreadable; 3 reader or encoder unavailable; 4 the card or the encoder
//! failed (status word, read-back mismatch, stripe mismatch); 5 timeout (encoder).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::encode::{SerialOptions, show_event};
use super::{
    Exit, keys_path, open_store, profiles_path, read_catalog, read_keys, read_orders, records,
    select_orders, unreadable,
};
use crate::domain::chip::ChipProfile;
use crate::domain::chip::ChipProfiles;
use crate::domain::chip::channel::{ChannelRule, parse_protocol, protocol_name};
use crate::domain::chip::model1::PrepDate;
use crate::domain::envelope::EnvelopeSettings;
use crate::domain::finding::Finding;
use crate::domain::gp::session::StepName;
use crate::domain::order::{Order, OrderEntry};
use crate::domain::prepare::PersoData;
use crate::domain::prepare::{ModelChoice, PrepInputs, prepare_card};
use crate::domain::review::{Role, Session};
use crate::domain::status::Status;
use crate::job::{
    self, CancelToken, CardConnector, CardJob, ChannelOverride, ChipOutcome, FailureKind, JobEvent,
    PcscReader, SerialStripe, StripeOutcome, StripeWriter,
};
use crate::keys::LoadedKeys;
use crate::keys::pool::InlineKeys;
use crate::perso::Transcript;
use crate::store::Store;

/// Arguments of `personalize`.
#[derive(Debug, Args)]
pub struct PersonalizeArgs {
    /// Order file: one order, {"cards": [...]}, or JSON Lines.
    file: PathBuf,
    /// The order to personalize.
    #[arg(long)]
    order: String,
    /// The PC/SC reader holding the card (`persodesk readers`); needed for chip products.
    #[arg(long)]
    reader: Option<String>,
    /// Chip data model: 1, 2, auto (2 when the order carries tlvData, else 1), none (stripe only).
    #[arg(long, default_value = "auto")]
    model: String,
    /// Encoder serial port: write and verify the stripe after the chip succeeded.
    #[arg(long)]
    encoder: Option<String>,
    /// Directory holding products/ and chip/ [default: profiles; production: the
    /// configuration's, and this flag is refused].
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Key store file [default: assets/demo/keys.toml; production: the configuration's, and
    /// this flag is refused].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Secure channel instead of the chip profile's (testers only: scp02:55, scp03:70, ...).
    #[arg(long)]
    scp: Option<String>,
    /// `kmc` key index instead of the chip profile's (testers only).
    #[arg(long)]
    kmc_index: Option<u32>,
    /// Preparation date YYMMDD (default: today).
    #[arg(long)]
    date: Option<String>,
    /// Role the command runs in: operator (approved orders only) or tester (test keys).
    #[arg(long, default_value = "operator")]
    role: String,
    /// User name for the audit trail, test mode only (default and production: the
    /// operating-system account).
    #[arg(long)]
    user: Option<String>,
    /// Records log (JSON Lines) to append the outcome to [default: records.jsonl beside the
    /// workstation store, in $PERSODESK_DATA_DIR or the user's data directory; the same file
    /// `encode` uses].
    #[arg(long)]
    records: Option<PathBuf>,
    /// Print the masked APDU transcript.
    #[arg(long)]
    transcript: bool,
    #[command(flatten)]
    serial: SerialOptions,
    /// Print the outcome as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One line of the records log for a personalization.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PersonalizeRecord {
    at: String,
    operation: &'static str,
    order: String,
    card_product_id: Option<String>,
    masked_pan: Option<String>,
    reader: Option<String>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chip: Option<ChipOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stripe: Option<StripeOutcome>,
}

fn exit_of(kind: FailureKind) -> Exit {
    Exit::from(kind)
}

/// Inputs loaded once per run.
struct Loaded {
    profiles: PathBuf,
    catalog: crate::domain::product::Catalog,
    chip_profiles: ChipProfiles,
    keys: LoadedKeys,
    entries: Vec<OrderEntry>,
}

fn load(args: &PersonalizeArgs) -> Result<Loaded, Exit> {
    let profiles = profiles_path(args.profiles.as_deref())?;
    let catalog = read_catalog(&profiles)?;
    let chip_profiles = crate::catalog::load_chip_profiles(&profiles).map_err(unreadable)?;
    let keys = read_keys(&keys_path(args.keys.as_deref())?)?;
    let entries = read_orders(&args.file, &catalog, keys.port())?;
    Ok(Loaded {
        profiles,
        catalog,
        chip_profiles,
        keys,
        entries,
    })
}

/// What the arguments ask for, checked before anything is read.
struct Request {
    who: Session,
    choice: ModelChoice,
    date: PrepDate,
    overrides: ChannelOverride,
}

/// Checks the role, model, date and the tester's channel overrides.
fn request(args: &PersonalizeArgs) -> Result<Request, Exit> {
    let Some(role) = Role::parse(&args.role).filter(|r| *r != Role::Supervisor) else {
        return Err(unreadable(format!(
            "--role: `{}` is not operator or tester (supervisors review, they do not personalize)",
            args.role
        )));
    };
    let who = super::session(role, args.user.as_deref())?;
    let choice = ModelChoice::parse(&args.model)
        .ok_or_else(|| unreadable("--model must be 1, 2, auto or none"))?;
    let date = match &args.date {
        None => crate::job::today(),
        Some(d) => super::prepare::parse_date(d)
            .ok_or_else(|| unreadable("--date must be a valid YYMMDD date"))?,
    };
    let protocol = match args.scp.as_deref().map(parse_protocol) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return Err(unreadable(format!("--scp: {e}"))),
    };
    let overrides = ChannelOverride {
        protocol,
        kmc_index: args.kmc_index,
    };
    if overrides.allowed_for(role).is_err() {
        eprintln!("error: --scp and --kmc-index are for testers only (the chip profile decides)");
        return Err(Exit::Invalid);
    }
    Ok(Request {
        who,
        choice,
        date,
        overrides,
    })
}

/// Runs `personalize`: the request, the inputs, the preparation, then the card.
pub fn run(args: &PersonalizeArgs) -> Exit {
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let loaded = match load(args) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let entry = match select_orders(&loaded.entries, Some(&args.order), &args.file) {
        Ok(selected) => match selected.first() {
            Some(e) => *e,
            None => return Exit::Unreadable,
        },
        Err(e) => return e,
    };
    let mut store: Store = match open_store(&loaded.keys) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let records_path = args.records.clone().unwrap_or_else(records::default_path);
    let mut record = PersonalizeRecord {
        at: String::new(),
        operation: "personalize",
        order: entry.id.clone(),
        card_product_id: entry.card_product_id.clone(),
        masked_pan: entry.masked_pan.clone(),
        reader: args.reader.clone(),
        outcome: "failed",
        failed_step: None,
        error: None,
        chip: None,
        stripe: None,
    };
    let (order, data) = match prepare_recorded(&mut store, entry, &loaded, &req) {
        Ok(Ok(x)) => x,
        Ok(Err(findings)) => {
            record.failed_step = Some("prepare".into());
            record.error = Some(Finding::join(&findings));
            return finish(args, &records_path, &mut record, None, Exit::Invalid);
        }
        Err(e) => return e,
    };
    print_header(args, &data);
    let card = Card {
        args,
        loaded: &loaded,
        who: &req.who,
        order,
        data: &data,
        overrides: req.overrides,
    };
    card.personalize(&mut store, &records_path, &mut record)
}

/// Prepares the order; the store learns DATA_PREPARED or DATA_EXCEPTION either way.
fn prepare_recorded<'a>(
    store: &mut Store,
    entry: &'a OrderEntry,
    loaded: &Loaded,
    req: &Request,
) -> Result<Result<(&'a Order, PersoData), Vec<Finding>>, Exit> {
    let inputs = PrepInputs {
        profiles: &loaded.chip_profiles,
        date: req.date,
        keys: loaded.keys.port(),
        icc_keys: &InlineKeys,
        envelope: EnvelopeSettings::default(),
    };
    let prepared = prepare_entry(entry, loaded, req.choice, &inputs);
    let failure = prepared.as_ref().err().map(|f| Finding::join(f));
    store
        .record_preparation_by(&[(entry.id.as_str(), failure.as_deref())], &req.who)
        .map_err(|e| unreadable(format!("workstation store: {e}")))?;
    Ok(prepared)
}

/// One prepared card and what the arguments say about its devices.
struct Card<'a> {
    args: &'a PersonalizeArgs,
    loaded: &'a Loaded,
    who: &'a Session,
    order: &'a Order,
    data: &'a PersoData,
    overrides: ChannelOverride,
}

impl Card<'_> {
    /// The role rules, the job on the reader and the encoder, the outcome in the store and the
    /// records log.
    fn personalize(
        &self,
        store: &mut Store,
        records_path: &std::path::Path,
        record: &mut PersonalizeRecord,
    ) -> Exit {
        let (args, data) = (self.args, self.data);
        if data.chip.is_some() && args.reader.is_none() {
            return unreadable("--reader is needed: the order has chip data");
        }
        if data.chip.is_none() && args.encoder.is_none() {
            return unreadable(
                "nothing to personalize: the order has no chip data and no --encoder",
            );
        }
        // The role rules, against the store's view of the order.
        if let Err(f) = job::authorize(store, self.who, &data.order_id, data) {
            record.failed_step = Some(f.step.to_string());
            record.error = Some(f.message);
            return finish(args, records_path, record, None, exit_of(f.kind));
        }
        let chip = match channel_of(self.loaded, self.order, data, self.overrides) {
            Ok(c) => c,
            Err(f) => return unreadable(f),
        };
        let card_job = CardJob {
            order: self.order,
            data,
            keys: self.loaded.keys.port(),
            chip,
        };
        let report = self.run_job(&card_job);
        let stored = job::record(store, self.who, &data.order_id, &report);
        let exit = outcome(record, &report, stored);
        finish(args, records_path, record, report.transcript.as_ref(), exit)
    }

    /// Runs the job on the PC/SC reader and the serial encoder the arguments name.
    fn run_job(&self, card_job: &CardJob<'_>) -> job::JobReport {
        let args = self.args;
        if let Some((_, rule)) = &card_job.chip {
            eprintln!(
                "card: {} on {}",
                protocol_name(rule.protocol),
                args.reader.as_deref().unwrap_or("-")
            );
        }
        let mut connector = args.reader.clone().map(PcscReader);
        let mut stripe = args.encoder.as_deref().map(|port| SerialStripe {
            config: args.serial.config(port),
            observer: show_event,
        });
        // Ctrl-C ends the process; the token is the job's, never cancelled here.
        job::run_cancellable(
            card_job,
            connector.as_mut().map(|c| c as &mut dyn CardConnector),
            stripe.as_mut().map(|s| s as &mut dyn StripeWriter),
            &CancelToken::new(),
            &mut show_progress(),
        )
    }
}

/// Fills the record from the report; the exit code, reported only as the store committed it.
fn outcome(
    record: &mut PersonalizeRecord,
    report: &job::JobReport,
    stored: Result<crate::store::OrderState, crate::store::StoreError>,
) -> Exit {
    record.chip = report.chip.clone();
    record.stripe = report.stripe.clone();
    let exit = match &report.failure {
        None => {
            record.outcome = "personalized";
            Exit::Ok
        }
        Some(f) => {
            record.failed_step = Some(f.step.to_string());
            record.error = Some(f.message.clone());
            exit_of(f.kind)
        }
    };
    match stored {
        Ok(state) => {
            tracing::info!(order = %record.order, status = %state.status, "outcome stored");
            exit
        }
        Err(e) => {
            eprintln!(
                "error: workstation store: the outcome could not be recorded ({e}); the order stays CARD_PROD_ONGOING until the next command marks it interrupted: check the card"
            );
            record.outcome = "not-recorded";
            exit.max(Exit::Unreadable)
        }
    }
}

/// The chip profile and secure channel of a chip order, with the tester's overrides.
fn channel_of<'a>(
    loaded: &'a Loaded,
    order: &Order,
    data: &PersoData,
    overrides: ChannelOverride,
) -> Result<Option<(&'a ChipProfile, ChannelRule)>, String> {
    let profile = super::chip_profile_of(&loaded.catalog, &loaded.chip_profiles, order, data)?;
    Ok(profile.map(|p| (p, overrides.apply(p))))
}

/// Progress on stderr: each step once, each STORE DATA with its DGI.
fn show_progress() -> impl FnMut(JobEvent) {
    let mut last = None;
    move |event| match event {
        JobEvent::Perso(p) => {
            let now = (p.step, p.store_data_sent);
            if last != Some(now) && p.step != StepName::Finished {
                last = Some(now);
                match (p.step, p.dgi) {
                    (StepName::StoreData, Some(dgi)) => eprintln!(
                        "  STORE DATA {} of {} (DGI {dgi:04X})",
                        p.store_data_sent, p.store_data_total
                    ),
                    (step, _) => eprintln!("  {step}"),
                }
            }
        }
        JobEvent::ReadBack => eprintln!("  {}", job::READ_BACK),
        JobEvent::Stripe => eprintln!("  stripe write"),
    }
}

/// Prepares the order with the chosen model; findings name fields and rules.
fn prepare_entry<'a>(
    entry: &'a OrderEntry,
    loaded: &Loaded,
    choice: ModelChoice,
    inputs: &PrepInputs<'_>,
) -> Result<(&'a Order, PersoData), Vec<Finding>> {
    let order = entry.outcome.as_ref().map_err(Clone::clone)?;
    let product = loaded.catalog.get(&order.card_product_id).ok_or_else(|| {
        vec![Finding::new(
            "cardProductId",
            format!(
                "product {} is not in {}",
                order.card_product_id,
                loaded.profiles.join("products").display()
            ),
        )]
    })?;
    let data = prepare_card(order, product, choice, inputs)?;
    Ok((order, data))
}

fn print_header(args: &PersonalizeArgs, data: &PersoData) {
    if args.json {
        return;
    }
    let name = data.name.as_ref().map_or("-", |n| n.as_str());
    println!(
        "{}  {}  {}  {name}",
        data.order_id, data.card_product_id, data.masked_pan
    );
    if let Some(chip) = &data.chip {
        println!(
            "  chip     Model {} ({}), {} DGIs",
            chip.model.number(),
            chip.profile,
            chip.dgis.len()
        );
    }
}

/// Prints the outcome, appends it to the records log, returns the exit code.
fn finish(
    args: &PersonalizeArgs,
    path: &std::path::Path,
    record: &mut PersonalizeRecord,
    transcript: Option<&Transcript>,
    exit: Exit,
) -> Exit {
    record.at = records::now_rfc3339();
    if args.json {
        match serde_json::to_string(&*record) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("error: cannot print the result as JSON: {e}"),
        }
    } else {
        print_outcome(record);
        if args.transcript
            && let Some(t) = transcript
        {
            print!("{t}");
        }
    }
    if let (Some(f), Some(e)) = (&record.failed_step, &record.error) {
        eprintln!("error: order {}: failed at {f}: {e}", record.order);
    }
    match records::append(path, &*record) {
        Ok(()) => exit,
        Err(e) => {
            eprintln!(
                "error: cannot append the outcome to {}: {}",
                path.display(),
                e.kind()
            );
            exit.max(Exit::Unreadable)
        }
    }
}

fn print_outcome(r: &PersonalizeRecord) {
    if let Some(c) = &r.chip {
        println!(
            "  chip     {} DGIs over {}: {} APDUs, {} ms",
            c.dgis, c.channel, c.apdus, c.millis
        );
        for k in &c.read_back {
            let reason = k
                .reason
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            println!("    {:<7} {}{reason}", k.status, k.check);
        }
    }
    if let Some(s) = &r.stripe {
        let tracks: Vec<String> = s.tracks.iter().map(ToString::to_string).collect();
        println!(
            "  stripe   written and verified on {}: track(s) {}; {} bad swipe(s)",
            s.port,
            tracks.join(", "),
            s.bad_swipes
        );
    }
    match (&r.failed_step, &r.error) {
        (Some(step), Some(e)) => println!("  FAILED at {step}: {e}"),
        _ if r.outcome == "personalized" => println!("  PERSONALIZED ({})", Status::Done),
        _ if r.outcome == "not-recorded" => {
            println!("  NOT RECORDED: the store did not commit the outcome");
        }
        _ => println!("  FAILED"),
    }
}
