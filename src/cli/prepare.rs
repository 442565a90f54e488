//! `persodesk prepare`: tracks and sources per order, text or JSON Lines, masked unless
//! `--reveal` (refused when any key used is not a test key).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{DEFAULT_KEYS, DEFAULT_PROFILES, Exit, read_catalog, read_keys, read_orders};
use crate::domain::finding::Finding;
use crate::domain::prepare::{PersoData, prepare};
use crate::domain::track::{Track, TrackNo};

/// Arguments of `prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Order file: one order, {"cards": [...]}, or JSON Lines.
    file: PathBuf,
    /// Only the order with this id.
    #[arg(long)]
    order: Option<String>,
    /// Directory holding products/ (and chip/).
    #[arg(long, default_value = DEFAULT_PROFILES)]
    profiles: PathBuf,
    /// Key store file.
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// One JSON object per order per line.
    #[arg(long)]
    json: bool,
    /// Show clear values; refused unless every key the order used is a test key.
    #[arg(long)]
    reveal: bool,
}

fn show(t: Option<&Track>, reveal: bool) -> Option<String> {
    t.map(|t| {
        if reveal {
            t.reveal().to_string()
        } else {
            t.masked()
        }
    })
}

fn print_errors(json: bool, id: &str, product: Option<&str>, errors: &[Finding]) {
    if json {
        println!(
            "{}",
            json!({"id": id, "cardProductId": product, "errors": errors})
        );
    } else {
        println!("{id}  {}  FAILED", product.unwrap_or("-"));
        for e in errors {
            println!("  error    {e}");
        }
    }
}

fn print_data(json: bool, data: &PersoData, reveal: bool, warnings: &[Finding]) {
    let t = &data.tracks;
    if json {
        let tracks = json!({
            "track1": show(t.track1.as_ref(), reveal),
            "track2": show(t.track2.as_ref(), reveal),
            "track3": show(t.track3.as_ref(), reveal),
        });
        println!(
            "{}",
            json!({
                "id": data.order_id,
                "cardProductId": data.card_product_id,
                "tracks": tracks,
                "sources": data.sources,
                "warnings": warnings,
            })
        );
        return;
    }
    let name = data.name.as_ref().map_or("-", |n| n.as_str());
    println!(
        "{}  {}  {}  {name}",
        data.order_id, data.card_product_id, data.masked_pan
    );
    for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
        if let Some(s) = show(t.get(no), reveal) {
            let src = data.sources.get(no.key()).map_or("", String::as_str);
            println!("  {}   {s}   ({src})", no.key());
        }
    }
    for (k, v) in data.sources.iter().filter(|(k, _)| !k.starts_with("track")) {
        println!("  {k:<7}  {v}");
    }
    for w in warnings {
        println!("  warning  {w}");
    }
}

/// Runs `prepare`.
pub fn run(args: &PrepareArgs) -> Exit {
    let catalog = match read_catalog(&args.profiles) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let keys = match read_keys(&args.keys) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let entries = match read_orders(&args.file, &catalog) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let selected: Vec<_> = entries
        .iter()
        .filter(|e| args.order.as_ref().is_none_or(|id| &e.id == id))
        .collect();
    if let Some(id) = &args.order
        && selected.is_empty()
    {
        eprintln!("error: no order with id {id} in {}", args.file.display());
        return Exit::Unreadable;
    }
    let mut exit = Exit::Ok;
    for entry in selected {
        let product_id = entry.card_product_id.as_deref();
        let order = match &entry.outcome {
            Ok(o) => o,
            Err(errors) => {
                print_errors(args.json, &entry.id, product_id, errors);
                exit = Exit::Invalid;
                continue;
            }
        };
        let Some(product) = catalog.get(&order.card_product_id) else {
            let f = Finding::new(
                "cardProductId",
                format!(
                    "product {} is not in {}",
                    order.card_product_id,
                    args.profiles.join("products").display()
                ),
            );
            print_errors(args.json, &entry.id, product_id, &[f]);
            exit = Exit::Invalid;
            continue;
        };
        match prepare(order, product, &keys) {
            Ok(data) => {
                let non_test = data.non_test_keys();
                if args.reveal && !non_test.is_empty() {
                    let names: Vec<String> = non_test.iter().map(ToString::to_string).collect();
                    eprintln!(
                        "error: order {}: --reveal refused: key {} is not a test key",
                        entry.id,
                        names.join(", ")
                    );
                    exit = Exit::Invalid;
                    continue;
                }
                tracing::debug!(order = %entry.id, product = %data.card_product_id, "prepared");
                let mut warnings = entry.warnings.clone();
                warnings.extend(data.warnings.iter().cloned());
                print_data(args.json, &data, args.reveal, &warnings);
            }
            Err(errors) => {
                print_errors(args.json, &entry.id, product_id, &errors);
                exit = Exit::Invalid;
            }
        }
    }
    exit
}
