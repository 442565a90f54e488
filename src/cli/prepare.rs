//! `persodesk prepare`: tracks and sources per order, text or JSON Lines, masked unless
//! `--reveal` (refused when any key used is not a test key).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{
    Exit, keys_path, open_store, profiles_path, read_catalog, read_keys, read_orders, select_orders,
};
use crate::domain::chip::ChipData;
use crate::domain::chip::model1::PrepDate;
use crate::domain::chip::preview::{TlvNode, preview};
use crate::domain::chip_model::{ModelChoice, PrepInputs, prepare_card};
use crate::domain::envelope::EnvelopeSettings;
use crate::domain::finding::Finding;
use crate::domain::prepare::PersoData;
use crate::domain::track::{Track, TrackNo};
use crate::keys::pool::KeyPools;

/// Arguments of `prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Order file: one order, {"cards": [...]}, or JSON Lines.
    file: PathBuf,
    /// Only the order with this id.
    #[arg(long)]
    order: Option<String>,
    /// Directory holding products/ (and chip/) [default: profiles; production: the
    /// configuration's, and this flag is refused].
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Key store file [default: assets/demo/keys.toml; production: the configuration's, and
    /// this flag is refused].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// One JSON object per order per line.
    #[arg(long)]
    json: bool,
    /// Show clear values; refused unless every key the order used is a test key.
    #[arg(long)]
    reveal: bool,
    /// Chip data model: 1 (computed here), 2 (issuer-prepared tlvData), auto (2 for orders with
    /// tlvData, else 1 when the product has a chip profile), none (tracks only).
    #[arg(long, default_value = "auto")]
    model: String,
    /// Preparation date YYMMDD (default: today); 5F25 when an order has no effectiveDate.
    #[arg(long)]
    date: Option<String>,
    /// Record each order's outcome (DATA_PREPARED or DATA_EXCEPTION with the findings) in the
    /// workstation store, as the workstation does when it loads a file (audited, as the
    /// operating-system account).
    #[arg(long)]
    record: bool,
}

pub(crate) fn parse_date(s: &str) -> Option<PrepDate> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| s.get(i..i + 2).and_then(|x| x.parse::<u8>().ok());
    PrepDate::new(n(0)?, n(2)?, n(4)?)
}

fn chip_json(chip: &ChipData, reveal: bool) -> serde_json::Value {
    let dgis: Vec<serde_json::Value> = preview(chip, reveal)
        .into_iter()
        .map(|d| {
            let mut v = json!({
                "dgi": d.dgi,
                "encrypted": d.encrypted,
                "length": d.length,
                "tlv": d.tlv,
            });
            if let Some(x) = d.value {
                v["value"] = json!(x);
            }
            if let Some(k) = d.kcv {
                v["kcv"] = json!(k);
            }
            v
        })
        .collect();
    let kcv = chip.kcvs.map(|k| {
        json!({"ac": hex::encode_upper(k.ac), "smi": hex::encode_upper(k.smi), "smc": hex::encode_upper(k.smc)})
    });
    let oda = chip.oda.as_ref().map(|o| {
        json!({
            "method": o.method.as_str().to_uppercase(),
            "rid": hex::encode_upper(o.rid),
            "caIndex": format!("{:02X}", o.ca_index),
            "issuerKeyBits": o.issuer_key_bits,
            "iccKeyBits": o.icc_key_bits,
            "iccKeyFromPool": o.icc_key_from_pool,
        })
    });
    json!({
        "profile": chip.profile,
        "model": chip.model.number(),
        "aid": hex::encode_upper(&chip.aid),
        "dgis": dgis,
        "kcv": kcv,
        "oda": oda,
        "pinGenerated": chip.pin_generated,
    })
}

fn print_tlv(nodes: &[TlvNode], depth: usize) {
    for n in nodes {
        let name = n.name.unwrap_or("?");
        println!(
            "  {:width$}{} {name}: {}",
            "",
            n.tag,
            n.value,
            width = 4 + depth * 2
        );
        print_tlv(&n.children, depth + 1);
    }
}

fn print_chip(chip: &ChipData, reveal: bool) {
    println!("  chip     {}", chip.title());
    for d in preview(chip, reveal) {
        let flag = if d.encrypted { " encrypted" } else { "" };
        let kcv = d.kcv.map(|k| format!(" KCV {k}")).unwrap_or_default();
        println!(
            "    DGI {} ({} bytes{flag}){kcv} {}",
            d.dgi,
            d.length,
            d.name.unwrap_or("")
        );
        if d.tlv.is_empty()
            && let Some(v) = &d.value
        {
            println!("      {v}");
        }
        print_tlv(&d.tlv, 0);
    }
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
        let mut v = json!({
            "id": data.order_id,
            "cardProductId": data.card_product_id,
            "tracks": tracks,
            "sources": data.sources,
            "warnings": warnings,
        });
        if let Some(chip) = &data.chip {
            v["chip"] = chip_json(chip, reveal);
        }
        println!("{v}");
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
    if let Some(chip) = &data.chip {
        print_chip(chip, reveal);
    }
    for w in warnings {
        println!("  warning  {w}");
    }
}

/// Runs `prepare`.
pub fn run(args: &PrepareArgs) -> Exit {
    let profiles = match profiles_path(args.profiles.as_deref()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let catalog = match read_catalog(&profiles) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Some(model) = ModelChoice::parse(&args.model) else {
        eprintln!("error: --model must be 1, 2, auto or none");
        return Exit::Unreadable;
    };
    let date = match &args.date {
        None => crate::job::today(),
        Some(d) => match parse_date(d) {
            Some(d) => d,
            None => {
                eprintln!("error: --date must be a valid YYMMDD date");
                return Exit::Unreadable;
            }
        },
    };
    let chip_profiles = if model == ModelChoice::StripeOnly {
        crate::domain::chip::ChipProfiles::default()
    } else {
        match crate::catalog::load_chip_profiles(&profiles) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Unreadable;
            }
        }
    };
    if args.reveal {
        match super::mode() {
            Ok(m) if !m.allows_reveal() => {
                eprintln!("error: --reveal refused: this workstation runs in {m} mode");
                return Exit::Invalid;
            }
            Ok(_) => {}
            Err(e) => return e,
        }
    }
    let keys = match keys_path(args.keys.as_deref()).and_then(|p| read_keys(&p)) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let entries = match read_orders(&args.file, &catalog, keys.port()) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let selected = match select_orders(&entries, args.order.as_deref(), &args.file) {
        Ok(s) => s,
        Err(e) => return e,
    };
    // ICC key pairs for DDA/CDA profiles come from a pool filled in the background.
    let specs: Vec<_> = chip_profiles
        .profiles()
        .iter()
        .filter(|p| p.oda.method.needs_icc_key())
        .map(|p| (p.oda.icc_key_bits, p.oda.icc_exponent))
        .collect();
    let pools = if specs.is_empty() || model == ModelChoice::StripeOnly {
        KeyPools::default()
    } else {
        KeyPools::start(&specs, selected.len().clamp(1, 4)).unwrap_or_default()
    };
    let inputs = PrepInputs {
        profiles: &chip_profiles,
        date,
        keys: keys.port(),
        icc_keys: &pools,
        envelope: EnvelopeSettings::default(),
    };
    let mut exit = Exit::Ok;
    let mut outcomes: Vec<(&str, Option<String>)> = Vec::new();
    let findings = |f: &[Finding]| Some(Finding::join(f));
    for entry in selected {
        let product_id = entry.card_product_id.as_deref();
        let order = match &entry.outcome {
            Ok(o) => o,
            Err(errors) => {
                print_errors(args.json, &entry.id, product_id, errors);
                outcomes.push((&entry.id, findings(errors)));
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
                    profiles.join("products").display()
                ),
            );
            print_errors(args.json, &entry.id, product_id, std::slice::from_ref(&f));
            outcomes.push((&entry.id, findings(&[f])));
            exit = Exit::Invalid;
            continue;
        };
        let result = prepare_card(order, product, model, &inputs);
        outcomes.push((&entry.id, result.as_ref().err().and_then(|e| findings(e))));
        match result {
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
    if args.record {
        let mut store = match open_store(&keys) {
            Ok(s) => s,
            Err(e) => return exit.max(e),
        };
        let refs: Vec<(&str, Option<&str>)> =
            outcomes.iter().map(|(id, r)| (*id, r.as_deref())).collect();
        let recorded = store.record_preparation(&refs);
        match recorded {
            Ok(states) => eprintln!(
                "recorded {} order(s) in the workstation store",
                states.len()
            ),
            Err(e) => {
                eprintln!("error: workstation store: {e}");
                exit = exit.max(Exit::Unreadable);
            }
        }
    }
    exit
}
