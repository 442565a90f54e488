//! `persodesk encode`: prepares one order's tracks, writes them with an MSR206-family encoder,
//! reads the card back, compares, prints a masked result and appends the outcome to the records
//! log (JSON Lines, see [`super::records`]).
//!
//! Exit codes: 0 written and verified; 1 order invalid, preparation failed or track data refused
//! before reaching the device; 2 input unreadable (file, profiles, keys, unknown order id, records
//! log not writable); 3 encoder unavailable (port missing, cannot be opened, I/O failure); 4 the
//! encoder failed the card (device error status, too many bad swipes, read-back mismatch, malformed
//! reply); 5 timeout (nobody swiped, or the device did not answer).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::records::{self, EncodeRecord, Outcome, RecordError};
use super::{
    DEFAULT_KEYS, DEFAULT_PROFILES, Exit, read_catalog, read_keys, read_orders, select_orders,
};
use crate::devices::encoder::{
    DEFAULT_BAUD, EncoderError, EncoderEvent, FailureClass, SerialConfig,
};
use crate::domain::finding::Finding;
use crate::domain::msr206::FlowStep;
use crate::domain::prepare::{PersoData, prepare};
use crate::domain::track::TrackNo;

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
    /// Directory holding products/ (and chip/).
    #[arg(long, default_value = DEFAULT_PROFILES)]
    profiles: PathBuf,
    /// Key store file.
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// Records log (JSON Lines) to append the outcome to
    /// [default: $XDG_DATA_HOME/persodesk/records.jsonl, else ~/.local/share/persodesk/records.jsonl]
    #[arg(long)]
    records: Option<PathBuf>,
    /// Seconds the operator has for each swipe.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    swipe_timeout: Duration,
    /// Baud rate of the encoder.
    #[arg(long, default_value_t = DEFAULT_BAUD)]
    baud: u32,
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
    let exit = match class {
        FailureClass::Refused => Exit::Invalid,
        FailureClass::Unavailable => Exit::DeviceUnavailable,
        FailureClass::CardFailed => Exit::CardFailed,
        FailureClass::Timeout => Exit::Timeout,
    };
    Failure::new(kind, step, e.to_string(), exit)
}

/// Runs `encode`.
pub fn run(args: &EncodeArgs) -> Exit {
    let catalog = match read_catalog(&args.profiles) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let keys = match read_keys(&args.keys) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let entries = match read_orders(&args.file, &catalog, &keys) {
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
    };

    let result = prepare_and_encode(args, entry, &catalog, &keys, &mut record);
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

fn prepare_and_encode(
    args: &EncodeArgs,
    entry: &crate::domain::order::OrderEntry,
    catalog: &crate::domain::product::Catalog,
    keys: &crate::keys::SoftwareKeyStore,
    record: &mut EncodeRecord,
) -> Result<(), Failure> {
    let order = entry
        .outcome
        .as_ref()
        .map_err(|errors| Failure::findings("invalid-order", errors))?;
    let product = catalog.get(&order.card_product_id).ok_or_else(|| {
        let f = Finding::new(
            "cardProductId",
            format!(
                "product {} is not in {}",
                order.card_product_id,
                args.profiles.join("products").display()
            ),
        );
        Failure::findings("invalid-order", &[f])
    })?;
    let data =
        prepare(order, product, keys).map_err(|e| Failure::findings("prepare-failed", &e))?;
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
    let (tracks, bad_swipes) = write_stripe(&args.encoder, args.baud, args.swipe_timeout, &data)?;
    record.tracks = tracks;
    record.bad_swipes = bad_swipes;
    tracing::debug!(order = %data.order_id, "encoded");
    Ok(())
}

/// Writes the stripe of `data` with the encoder on `port`, reads it back and compares (see
/// [`crate::devices::encoder::write_card_stripe`]).
fn write_stripe(
    port: &str,
    baud: u32,
    swipe_timeout: Duration,
    data: &PersoData,
) -> Result<(Vec<u8>, u32), Failure> {
    let mut config = SerialConfig::new(port.to_string());
    config.baud = baud;
    config.swipe_timeout = swipe_timeout;
    crate::devices::encoder::write_card_stripe(config, data, show_event).map_err(|e| classify(&e))
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
