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
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::encode::{parse_seconds, write_stripe};
use super::{
    DEFAULT_KEYS, DEFAULT_PROFILES, Exit, read_catalog, read_keys, read_orders, records,
    select_orders, unreadable,
};
use crate::devices::encoder::DEFAULT_BAUD;
use crate::devices::pcsc::{PcscTransport, ProtocolChoice};
use crate::devices::transport::TransportError;
use crate::domain::chip::channel::{ChannelRule, parse_protocol, protocol_name};
use crate::domain::chip::{ChipData, ChipProfile, ChipProfiles};
use crate::domain::chip_model::{ModelChoice, PrepInputs, prepare_card, profile_of};
use crate::domain::envelope::EnvelopeSettings;
use crate::domain::finding::Finding;
use crate::domain::gp::session::{Progress, StepName};
use crate::domain::order::{Order, OrderEntry};
use crate::domain::prepare::PersoData;
use crate::domain::readback::{Outcome, ReadBack};
use crate::domain::review::{OrderFacts, Role, Session, may_personalize};
use crate::domain::status::{Event, Status};
use crate::keys::SoftwareKeyStore;
use crate::keys::pool::InlineKeys;
use crate::perso::{PersoError, Transcript, channel_options, personalize_dgis, session_dgis};
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
    /// Directory holding products/ and chip/.
    #[arg(long, default_value = DEFAULT_PROFILES)]
    profiles: PathBuf,
    /// Key store file.
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// Secure channel instead of the chip profile's (testers: scp02:55, scp03:70, ...).
    #[arg(long)]
    scp: Option<String>,
    /// `kmc` key index instead of the chip profile's.
    #[arg(long)]
    kmc_index: Option<u32>,
    /// Preparation date YYMMDD (default: today).
    #[arg(long)]
    date: Option<String>,
    /// Role the command runs in: operator (approved orders only) or tester (test keys).
    #[arg(long, default_value = "operator")]
    role: String,
    /// User name for the audit trail (default: $USER).
    #[arg(long)]
    user: Option<String>,
    /// Records log (JSON Lines) to append the outcome to [default: records.jsonl beside the
    /// workstation store, in $PERSODESK_DATA_DIR or the user's data directory].
    #[arg(long)]
    records: Option<PathBuf>,
    /// Print the masked APDU transcript.
    #[arg(long)]
    transcript: bool,
    /// Seconds the operator has for each swipe.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    swipe_timeout: Duration,
    /// Baud rate of the encoder.
    #[arg(long, default_value_t = DEFAULT_BAUD)]
    baud: u32,
    /// Print the outcome as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The chip part of the outcome.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChipOutcome {
    model: u8,
    profile: String,
    channel: String,
    dgis: usize,
    apdus: u32,
    millis: u64,
    read_back: Vec<CheckLine>,
    read_back_apdus: u32,
}

/// One read-back check, as recorded.
#[derive(Debug, Clone, Serialize)]
struct CheckLine {
    check: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The stripe part of the outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct StripeOutcome {
    port: String,
    tracks: Vec<u8>,
    bad_swipes: u32,
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

/// Why the card failed: the step, the message (names steps, DGIs, status words; no card data)
/// and the exit code.
struct StepFailure {
    step: String,
    message: String,
    exit: Exit,
}

impl StepFailure {
    fn new(step: impl Into<String>, message: impl Into<String>, exit: Exit) -> Self {
        Self {
            step: step.into(),
            message: message.into(),
            exit,
        }
    }
}

fn transport_exit(e: &TransportError) -> Exit {
    match e {
        TransportError::BadResponse { .. } | TransportError::CardRemoved => Exit::CardFailed,
        _ => Exit::DeviceUnavailable,
    }
}

fn step_label(step: Option<StepName>) -> String {
    match step {
        None => "secure channel plan".into(),
        Some(s) => s.to_string(),
    }
}

fn findings_text(f: &[Finding]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Inputs loaded once per run.
struct Loaded {
    catalog: crate::domain::product::Catalog,
    chip_profiles: ChipProfiles,
    keys: SoftwareKeyStore,
    entries: Vec<OrderEntry>,
}

fn load(args: &PersonalizeArgs) -> Result<Loaded, Exit> {
    let catalog = read_catalog(&args.profiles)?;
    let chip_profiles = crate::catalog::load_chip_profiles(&args.profiles).map_err(unreadable)?;
    let keys = read_keys(&args.keys)?;
    let entries = read_orders(&args.file, &catalog)?;
    Ok(Loaded {
        catalog,
        chip_profiles,
        keys,
        entries,
    })
}

/// Runs `personalize`.
pub fn run(args: &PersonalizeArgs) -> Exit {
    let Some(role) = Role::parse(&args.role).filter(|r| *r != Role::Supervisor) else {
        return unreadable(format!(
            "--role: `{}` is not operator or tester (supervisors review, they do not personalize)",
            args.role
        ));
    };
    let Some(choice) = ModelChoice::parse(&args.model) else {
        return unreadable("--model must be 1, 2, auto or none");
    };
    let date = match &args.date {
        None => super::prepare::today(),
        Some(d) => match super::prepare::parse_date(d) {
            Some(d) => d,
            None => return unreadable("--date must be a valid YYMMDD date"),
        },
    };
    let protocol = match args.scp.as_deref().map(parse_protocol) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return unreadable(format!("--scp: {e}")),
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
    let mut store = match Store::open_default() {
        Ok(s) => s,
        Err(e) => return unreadable(format!("workstation store: {e}")),
    };
    let records_path = args.records.clone().unwrap_or_else(|| {
        store
            .path()
            .parent()
            .map_or_else(records::default_path, |d| d.join(records::RECORDS_FILE))
    });
    let who = Session {
        user: args
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".into()),
        role,
    };
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

    // Preparation: the store learns DATA_PREPARED or DATA_EXCEPTION either way.
    let inputs = PrepInputs {
        profiles: &loaded.chip_profiles,
        date,
        keys: &loaded.keys,
        icc_keys: &InlineKeys,
        envelope: EnvelopeSettings::default(),
    };
    let prepared = prepare_entry(entry, &loaded, choice, &inputs, args);
    let failure = prepared.as_ref().err().map(|f| findings_text(f));
    if let Err(e) = store.record_preparation(&[(entry.id.as_str(), failure.as_deref())]) {
        return unreadable(format!("workstation store: {e}"));
    }
    let (order, data) = match prepared {
        Ok(x) => x,
        Err(findings) => {
            record.failed_step = Some("prepare".into());
            record.error = Some(findings_text(&findings));
            return finish(args, &records_path, &mut record, None, Exit::Invalid);
        }
    };
    print_header(args, &data);

    // The role rules, against the store's view of the order.
    let state = match store.state(&entry.id) {
        Ok(Some(s)) => s,
        Ok(None) => return unreadable(format!("order {} is not in the store", entry.id)),
        Err(e) => return unreadable(format!("workstation store: {e}")),
    };
    let facts = OrderFacts {
        status: state.status,
        approved: state.approved,
        test_keys_only: data.non_test_keys().is_empty(),
    };
    let grant = match may_personalize(role, facts) {
        Ok(g) => g,
        Err(denied) => {
            let _ = store.audit(&who, "perso-refused", Some(&entry.id), &denied.to_string());
            record.failed_step = Some("authorization".into());
            record.error = Some(format!("{denied} (order is {})", state.status));
            return finish(args, &records_path, &mut record, None, Exit::Invalid);
        }
    };
    if data.chip.is_some() && args.reader.is_none() {
        return unreadable("--reader is needed: the order has chip data");
    }
    if data.chip.is_none() && args.encoder.is_none() {
        return unreadable("nothing to personalize: the order has no chip data and no --encoder");
    }
    let started = Event::Started {
        approval_bypass: grant.approval_bypass,
    };
    if let Err(e) = store.apply(&entry.id, &started, &who) {
        return unreadable(format!("workstation store: {e}"));
    }

    let mut transcript = None;
    let outcome = personalize_card(
        args,
        &loaded,
        order,
        &data,
        protocol,
        &mut record,
        &mut transcript,
    );
    let event = match &outcome {
        Ok(()) => Event::Completed,
        Err(f) => Event::Failed {
            reason: format!("{}: {}", f.step, f.message),
        },
    };
    let stored = store.apply(&entry.id, &event, &who);
    let exit = match outcome {
        Ok(()) => {
            record.outcome = "personalized";
            Exit::Ok
        }
        Err(f) => {
            record.failed_step = Some(f.step);
            record.error = Some(f.message);
            f.exit
        }
    };
    let exit = match stored {
        Ok(state) => {
            tracing::info!(order = %entry.id, status = %state.status, "outcome stored");
            exit
        }
        Err(e) => {
            eprintln!("error: workstation store: {e}");
            exit.max(Exit::Unreadable)
        }
    };
    finish(args, &records_path, &mut record, transcript.as_ref(), exit)
}

/// Prepares the order with the chosen model; findings name fields and rules.
fn prepare_entry<'a>(
    entry: &'a OrderEntry,
    loaded: &Loaded,
    choice: ModelChoice,
    inputs: &PrepInputs<'_>,
    args: &PersonalizeArgs,
) -> Result<(&'a Order, PersoData), Vec<Finding>> {
    let order = entry.outcome.as_ref().map_err(Clone::clone)?;
    let product = loaded.catalog.get(&order.card_product_id).ok_or_else(|| {
        vec![Finding::new(
            "cardProductId",
            format!(
                "product {} is not in {}",
                order.card_product_id,
                args.profiles.join("products").display()
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

/// The chip (when there is chip data), then the stripe (when an encoder is given).
fn personalize_card(
    args: &PersonalizeArgs,
    loaded: &Loaded,
    order: &Order,
    data: &PersoData,
    protocol: Option<crate::domain::gp::session::Protocol>,
    record: &mut PersonalizeRecord,
    transcript: &mut Option<Transcript>,
) -> Result<(), StepFailure> {
    if let (Some(chip), Some(reader)) = (&data.chip, &args.reader) {
        let product = loaded
            .catalog
            .get(&order.card_product_id)
            .ok_or_else(|| StepFailure::new("prepare", "product vanished", Exit::Invalid))?;
        let profile = profile_of(product, &loaded.chip_profiles)
            .map_err(|f| StepFailure::new("prepare", f.to_string(), Exit::Invalid))?;
        let mut rule = profile.channel.clone();
        if let Some(p) = protocol {
            rule = rule.with_protocol(p);
        }
        if let Some(i) = args.kmc_index {
            rule.kmc_index = i;
        }
        personalize_chip(
            reader,
            &loaded.keys,
            (order, chip, profile),
            &rule,
            &mut record.chip,
            transcript,
        )?;
    }
    if let Some(port) = &args.encoder {
        let (tracks, bad_swipes) = write_stripe(port, args.baud, args.swipe_timeout, data)
            .map_err(|f| {
                let step = match f.error.step.as_deref() {
                    Some(s) => format!("stripe {s}"),
                    None => "stripe".into(),
                };
                StepFailure::new(
                    step,
                    format!("[{}] {}", f.error.kind, f.error.message),
                    f.exit,
                )
            })?;
        record.stripe = Some(StripeOutcome {
            port: port.clone(),
            tracks,
            bad_swipes,
        });
    }
    Ok(())
}

fn check_lines(rb: &ReadBack) -> Vec<CheckLine> {
    rb.checks
        .iter()
        .map(|k| {
            let (status, reason) = match &k.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(w) => ("fail", Some(w.clone())),
                Outcome::Skipped(w) => ("skipped", Some(w.clone())),
            };
            CheckLine {
                check: k.name.clone(),
                status,
                reason,
            }
        })
        .collect()
}

/// Secure channel, STORE DATA of every DGI, then the read-back on a fresh connection. What was
/// done goes to `recorded`, also when it fails.
fn personalize_chip(
    reader: &str,
    keys: &SoftwareKeyStore,
    (order, chip, profile): (&Order, &ChipData, &ChipProfile),
    rule: &ChannelRule,
    recorded: &mut Option<ChipOutcome>,
    transcript: &mut Option<Transcript>,
) -> Result<(), StepFailure> {
    let outcome = recorded.insert(ChipOutcome {
        model: chip.model.number(),
        profile: chip.profile.clone(),
        channel: rule.to_string(),
        dgis: chip.dgis.len(),
        ..ChipOutcome::default()
    });
    let options = channel_options(rule, chip, keys)
        .map_err(|e| StepFailure::new("card keys", e.to_string(), Exit::Invalid))?;
    let mut transport = PcscTransport::connect(reader, ProtocolChoice::Any).map_err(|e| {
        let exit = transport_exit(&e);
        StepFailure::new("connect", e.to_string(), exit)
    })?;
    eprintln!(
        "card: {} on {reader}, {} DGIs",
        protocol_name(rule.protocol),
        chip.dgis.len()
    );
    let mut last = None;
    let mut on_progress = |p: &Progress| {
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
    };
    let started = Instant::now();
    let result = personalize_dgis(
        &mut transport,
        options,
        session_dgis(chip, rule.protocol),
        &mut on_progress,
    );
    drop(transport);
    match result {
        Ok(report) => {
            outcome.apdus = report.transcript.apdu_count();
            outcome.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            *transcript = Some(report.transcript);
        }
        Err(e) => {
            let exit = match &e {
                PersoError::Plan(_) => Exit::Invalid,
                PersoError::Transport { error, .. } => transport_exit(error),
                PersoError::Session { .. } => Exit::CardFailed,
            };
            outcome.apdus = e.transcript().map_or(0, Transcript::apdu_count);
            *transcript = e.transcript().cloned();
            let step = step_label(e.step());
            return Err(StepFailure::new(step, e.to_string(), exit));
        }
    }

    // Read back as a terminal would: a new connection, PPSE/AID, GPO, records, ODA, ARQC.
    eprintln!("  read-back verification");
    let verify = |outcome: &mut ChipOutcome| -> Result<(), StepFailure> {
        let mut transport = PcscTransport::connect(reader, ProtocolChoice::Any).map_err(|e| {
            let exit = transport_exit(&e);
            StepFailure::new("read-back verification", e.to_string(), exit)
        })?;
        let ca = crate::verify::ca_for(keys, Some(chip), &chip.aid);
        let mut rb =
            crate::verify::read_card(&mut transport, ca, Some(&chip.aid)).map_err(|e| {
                let exit = transport_exit(&e);
                StepFailure::new("read-back verification", e.to_string(), exit)
            })?;
        let key = crate::verify::arqc_key(keys, order, profile.mkd);
        crate::verify::check_against(&mut rb, order, Some(chip), key);
        outcome.read_back = check_lines(&rb);
        outcome.read_back_apdus = rb.commands;
        if rb.passed() {
            Ok(())
        } else {
            let failed: Vec<&str> = rb
                .checks
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
                .map(|c| c.name.as_str())
                .collect();
            Err(StepFailure::new(
                "read-back verification",
                format!("failed: {}", failed.join(", ")),
                Exit::CardFailed,
            ))
        }
    };
    verify(outcome)
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
        _ => println!("  FAILED"),
    }
}
