//! `persodesk encode`: prepares one order's tracks, writes them with an MSR206-family encoder,
//! reads the card back, compares, prints a masked result and appends the outcome to the records
//! log (JSON Lines, see [`super::records`]).
//!
//! It follows the role rules, status transitions and audit records of `personalize`
//! ([`crate::job::authorize`], [`crate::job::record`]): an operator encodes approved orders only;
//! a stripe-only run of an order whose product has a chip profile is recorded as incomplete
//! (CARD_PROD_FAILED, "stripe only"), never CARD_PROD_DONE. `--role` defaults to operator in
//! production and tester in test mode (demo work on test keys).
//!
//! Exit codes: 0 written and verified; 1 order invalid, preparation failed, refused by the role
//! rules or track data refused before reaching the device; 2 input unreadable (file, profiles, keys, unknown order id, records
//! log not writable); 3 encoder unavailable (port missing, cannot be opened, I/O failure); 4 the
//! encoder failed the card (device error status, too many bad swipes, read-back mismatch, malformed
//! reply); 5 timeout (nobody swiped, or the device did not answer).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::records::{self, EncodeRecord, Outcome, RecordError};
use super::{
    Exit, catalog_at, keys_path, open_store, read_keys, read_orders, select_orders, unreadable,
};
use crate::devices::encoder::{DEFAULT_BAUD, EncoderError, EncoderEvent, SerialConfig};
use crate::domain::finding::Finding;
use crate::domain::msr206::FlowStep;
use crate::domain::prepare::{PersoData, prepare_tracks};
use crate::domain::review::{Role, Session};
use crate::domain::status::Event;
use crate::domain::track::TrackNo;
use crate::job;
use crate::store::Store;

/// Arguments of `encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Order file: one order, {"cards": [...]}, or JSON Lines.
    file: PathBuf,
    /// The order to encode.
    #[arg(long)]
    order: String,
    /// Encoder serial port (`/dev/ttyUSB0`, `COM3`, or the path `persodesk sim-encoder` prints).
    #[arg(long)]
    encoder: String,
    /// Directory holding products/ (and chip/) [default: profiles; production: the
    /// configuration's, and this flag is refused].
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Key store file [default: assets/demo/keys.toml; production: the configuration's, and
    /// this flag is refused].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Role: operator (approved orders only) or tester (test keys) [default: operator in
    /// production, tester in test mode].
    #[arg(long)]
    role: Option<String>,
    /// User name for the audit trail, test mode only (default and production: the
    /// operating-system account).
    #[arg(long)]
    user: Option<String>,
    /// Records log (JSON Lines) to append the outcome to [default: records.jsonl beside the
    /// workstation store, the same file `personalize` uses].
    #[arg(long)]
    records: Option<PathBuf>,
    #[command(flatten)]
    serial: SerialOptions,
    /// Print the result as one JSON object (the record) instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 3600.0 {
        return Err("must be more than 0 and at most 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A failure with its stable kind, the step where known, the message and the exit code.
pub(super) struct Failure {
    pub(super) error: RecordError,
    pub(super) exit: Exit,
}

impl Failure {
    fn new(kind: &'static str, step: Option<FlowStep>, message: String, exit: Exit) -> Self {
        Failure {
            error: RecordError {
                kind,
                step: step.map(|s| s.to_string()),
                message,
            },
            exit,
        }
    }

    fn findings(kind: &'static str, findings: &[Finding]) -> Self {
        Failure::new(kind, None, Finding::join(findings), Exit::Invalid)
    }
}

/// Maps an encoder error to its kind and exit code.
fn classify(e: &EncoderError) -> Failure {
    let (kind, step, class) = crate::devices::encoder::classify(e);
    let exit = Exit::from(crate::job::FailureKind::from(class));
    Failure::new(kind, step, e.to_string(), exit)
}

/// The role `encode` runs in: `--role`, else operator in production and tester in test mode.
fn role_of(args: &EncodeArgs) -> Result<Role, Exit> {
    let mode = super::mode()?;
    let default = if mode == crate::config::Mode::Production {
        "operator"
    } else {
        "tester"
    };
    let name = args.role.as_deref().unwrap_or(default);
    Role::parse(name)
        .filter(|r| *r != Role::Supervisor)
        .ok_or_else(|| {
            unreadable(format!(
                "--role: `{name}` is not operator or tester (supervisors review, they do not encode)"
            ))
        })
}

/// Runs `encode`.
pub fn run(args: &EncodeArgs) -> Exit {
    let who = match role_of(args).and_then(|r| super::session(r, args.user.as_deref())) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let (profiles, catalog) = match catalog_at(args.profiles.as_deref()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let keys = match keys_path(args.keys.as_deref()).and_then(|p| read_keys(&p)) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let entries = match read_orders(&args.file, &catalog, keys.port()) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let entry = match select_orders(&entries, Some(&args.order), &args.file) {
        Ok(selected) => match selected.first() {
            Some(e) => *e,
            None => return Exit::Unreadable,
        },
        Err(e) => return e,
    };
    let mut record = EncodeRecord {
        at: String::new(),
        operation: "encode",
        order: entry.id.clone(),
        card_product_id: entry.card_product_id.clone(),
        masked_pan: entry.masked_pan.clone(),
        encoder: args.encoder.clone(),
        outcome: Outcome::Failed,
        tracks: Vec::new(),
        bad_swipes: 0,
        error: None,
        status: None,
    };

    let mut store = match open_store(&keys) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let run = Run {
        args,
        profiles: &profiles,
        catalog: &catalog,
        keys: keys.port(),
        who: &who,
    };
    let result = run.prepare_and_encode(entry, &mut store, &mut record);
    let mut exit = match result {
        Ok(()) => {
            record.outcome = Outcome::Written;
            Exit::Ok
        }
        Err(failure) => {
            eprintln!(
                "error: order {}: encode failed [{}]: {}",
                record.order, failure.error.kind, failure.error.message
            );
            record.error = Some(failure.error);
            failure.exit
        }
    };
    record.at = records::now_rfc3339();
    if args.json {
        match serde_json::to_string(&record) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("error: cannot print the result as JSON: {e}"),
        }
    } else {
        print_outcome(&record);
    }
    let path = args.records.clone().unwrap_or_else(records::default_path);
    match records::append(&path, &record) {
        Ok(()) => tracing::info!(path = %path.display(), "outcome recorded"),
        Err(e) => {
            eprintln!(
                "error: cannot append the outcome to {}: {}",
                path.display(),
                e.kind()
            );
            exit = exit.max(Exit::Unreadable);
        }
    }
    exit
}

/// What one `encode` run works with.
struct Run<'a> {
    args: &'a EncodeArgs,
    profiles: &'a std::path::Path,
    catalog: &'a crate::domain::product::Catalog,
    keys: &'a dyn crate::keys::KeyStorePort,
    who: &'a Session,
}

impl Run<'_> {
    /// Prepares, records the preparation, authorizes (role rules, approval evidence), writes the
    /// stripe, and records the outcome: a chip product's stripe-only run as incomplete.
    fn prepare_and_encode(
        &self,
        entry: &crate::domain::order::OrderEntry,
        store: &mut Store,
        record: &mut EncodeRecord,
    ) -> Result<(), Failure> {
        let store_failure = |e: crate::store::StoreError| {
            Failure::new(
                "store",
                None,
                format!("workstation store: {e}"),
                Exit::Unreadable,
            )
        };
        let prepared = self.prepare(entry);
        let failure = prepared.as_ref().err().map(|f| f.error.message.clone());
        store
            .record_preparation_by(&[(entry.id.as_str(), failure.as_deref())], self.who)
            .map_err(store_failure)?;
        let (data, chip_profile) = prepared?;
        job::authorize(store, self.who, &entry.id, &data)
            .map_err(|f| Failure::new("refused", None, f.message, Exit::Invalid))?;
        let written = self.write(&data, record);
        let event_failure = match (&written, &chip_profile) {
            (Err(f), _) => Some(format!("stripe: [{}] {}", f.error.kind, f.error.message)),
            (Ok(()), Some(profile)) => Some(format!(
                "incomplete: stripe only; the chip ({profile}) is not personalized: use personalize"
            )),
            (Ok(()), None) => None,
        };
        let event = match &event_failure {
            None => Event::Completed,
            Some(reason) => Event::Failed {
                reason: reason.clone(),
            },
        };
        let stored = store
            .apply(&entry.id, &event, self.who)
            .map_err(store_failure)?;
        record.status = Some(stored.status.as_str());
        written
    }

    fn prepare(
        &self,
        entry: &crate::domain::order::OrderEntry,
    ) -> Result<(PersoData, Option<String>), Failure> {
        let order = entry
            .outcome
            .as_ref()
            .map_err(|errors| Failure::findings("invalid-order", errors))?;
        let product = self.catalog.get(&order.card_product_id).ok_or_else(|| {
            let f = Finding::new(
                "cardProductId",
                format!(
                    "product {} is not in {}",
                    order.card_product_id,
                    self.profiles.join("products").display()
                ),
            );
            Failure::findings("invalid-order", &[f])
        })?;
        let data = prepare_tracks(order, product, self.keys)
            .map_err(|e| Failure::findings("prepare-failed", &e))?;
        Ok((data, product.chip_profile.clone()))
    }

    fn write(&self, data: &PersoData, record: &mut EncodeRecord) -> Result<(), Failure> {
        let args = self.args;
        let name = data.name.as_ref().map_or("-", |n| n.as_str());
        let header = format!(
            "{}  {}  {}  {name}",
            data.order_id, data.card_product_id, data.masked_pan
        );
        if !args.json {
            println!("{header}");
            for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
                if let Some(t) = data.tracks.get(no) {
                    println!("  {}   {}", no.key(), t.masked());
                }
            }
        }
        let (tracks, bad_swipes) = write_stripe(args.serial.config(&args.encoder), data)?;
        record.tracks = tracks;
        record.bad_swipes = bad_swipes;
        tracing::debug!(order = %data.order_id, "encoded");
        Ok(())
    }
}

/// The encoder's serial settings `encode` and `personalize` both take.
#[derive(Debug, Args)]
pub(super) struct SerialOptions {
    /// Seconds the operator has for each swipe.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    swipe_timeout: Duration,
    /// Baud rate of the encoder.
    #[arg(long, default_value_t = DEFAULT_BAUD)]
    baud: u32,
}

impl SerialOptions {
    /// The serial configuration of the encoder on `port` with these settings.
    pub(super) fn config(&self, port: &str) -> SerialConfig {
        let mut config = SerialConfig::new(port.to_string());
        config.baud = self.baud;
        config.swipe_timeout = self.swipe_timeout;
        config
    }
}

/// Writes the stripe of `data` with the encoder `config` names, reads it back and compares
/// (see [`crate::devices::encoder::write_card_stripe`]).
fn write_stripe(config: SerialConfig, data: &PersoData) -> Result<(Vec<u8>, u32), Failure> {
    crate::devices::encoder::write_card_stripe(config, data, show_event, None)
        .map_err(|e| classify(&e))
}

/// Operator-visible progress on stderr (stdout carries the result).
pub(super) fn show_event(event: &EncoderEvent) {
    if let EncoderEvent::WaitingForSwipe {
        purpose,
        attempt,
        timeout,
    } = event
    {
        let again = if *attempt > 1 { " again" } else { "" };
        eprintln!(
            "encoder: {purpose}{again} (attempt {attempt}, {} s)",
            timeout.as_secs_f64()
        );
    }
    if let EncoderEvent::BadSwipe {
        step,
        failed_attempt,
    } = event
    {
        eprintln!("encoder: bad swipe at {step} (attempt {failed_attempt}); retrying");
    }
}

fn print_outcome(record: &EncodeRecord) {
    match (&record.outcome, &record.error) {
        (Outcome::Written, _) => {
            let tracks: Vec<String> = record.tracks.iter().map(ToString::to_string).collect();
            println!(
                "  written and verified: track(s) {}; {} bad swipe(s)",
                tracks.join(", "),
                record.bad_swipes
            );
            if record.status == Some(crate::domain::status::Status::Failed.as_str()) {
                println!(
                    "  recorded as incomplete (CARD_PROD_FAILED): stripe only, the chip is not personalized"
                );
            }
        }
        (Outcome::Failed, Some(e)) => {
            // Without prepared data no header line was printed.
            if matches!(e.kind, "invalid-order" | "prepare-failed") {
                println!(
                    "{}  {}  FAILED",
                    record.order,
                    record.card_product_id.as_deref().unwrap_or("-")
                );
            }
            println!("  FAILED [{}]  {}", e.kind, e.message);
        }
        (Outcome::Failed, None) => println!("  FAILED"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;
    use std::time::Duration;

    #[test]
    fn seconds_parse_and_bounds() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("abc").is_err());
    }
}
