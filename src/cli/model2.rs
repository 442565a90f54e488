//! `persodesk model2 pack`: the issuer-side packer for testers. It seals a plain DGI file (one
//! `DGI=hex` per line) under a test KEK as a Model 2 envelope (docs/conventions.md) and writes the
//! order with `encryptedData.tlvData` filled in.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{DEFAULT_KEYS, DEFAULT_PROFILES, Exit, read_catalog, read_keys, unreadable};
use crate::domain::dgi;
use crate::domain::dgi_text;
use crate::domain::envelope::{EnvelopeSettings, MAC_KEY_LEN};
use crate::domain::keystore::{KeyRef, KeyUsage};

/// Arguments of `model2`.
#[derive(Debug, Args)]
pub struct Model2Args {
    #[command(subcommand)]
    command: Model2Command,
}

#[derive(Debug, Subcommand)]
enum Model2Command {
    /// Seal a DGI file under a test KEK and write the order carrying it as tlvData.
    Pack(PackArgs),
}

/// Arguments of `model2 pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// Plain DGI file: one `DGI=hex` per line, `#` comments.
    #[arg(long)]
    dgis: PathBuf,
    /// Index of the KEK (usage kek) to seal under; must be a test key.
    #[arg(long = "kek-index")]
    kek_index: u32,
    /// Key store file.
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// Order file: one order object, or a batch with --id.
    #[arg(long)]
    order: PathBuf,
    /// The order to use from a batch (cardId or issuerRequestId).
    #[arg(long)]
    id: Option<String>,
    /// Directory holding products/ and chip/ (the AID comes from the product's chip profile).
    #[arg(long, default_value = DEFAULT_PROFILES)]
    profiles: PathBuf,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `model2`.
pub fn run(args: &Model2Args) -> Exit {
    match &args.command {
        Model2Command::Pack(p) => pack(p),
    }
}

fn pick_order(v: Value, id: Option<&str>) -> Result<Value, String> {
    let matches = |o: &Value| id.is_none_or(|id| o["cardId"] == id || o["issuerRequestId"] == id);
    match v {
        Value::Object(ref m) if m.contains_key("cards") => {
            let cards = m["cards"].as_array().ok_or("cards: must be an array")?;
            if id.is_none() && cards.len() != 1 {
                return Err("the file holds several orders: name one with --id".into());
            }
            cards
                .iter()
                .find(|o| matches(o))
                .cloned()
                .ok_or_else(|| "no order with that id in the file".into())
        }
        Value::Object(_) if matches(&v) => Ok(v),
        Value::Object(_) => Err("the order does not have that id".into()),
        _ => Err("expected one order object or {\"cards\": [...]}".into()),
    }
}

/// The DGI text file of `--dgis`.
fn read_dgis(args: &PackArgs) -> Result<Vec<dgi::Dgi>, Exit> {
    let file = args.dgis.display().to_string();
    let text = std::fs::read_to_string(&args.dgis)
        .map_err(|e| unreadable(format!("{file}: cannot be read: {}", e.kind())))?;
    dgi_text::parse(&file, &text).map_err(unreadable)
}

/// The order (`--id` picks one of a file's) to pack the DGIs into.
fn read_order(args: &PackArgs) -> Result<Value, Exit> {
    let order_text = std::fs::read_to_string(&args.order).map_err(|e| {
        unreadable(format!(
            "{}: cannot be read: {}",
            args.order.display(),
            e.kind()
        ))
    })?;
    serde_json::from_str::<Value>(&order_text)
        .map_err(|e| format!("not valid JSON (line {})", e.line()))
        .and_then(|v| pick_order(v, args.id.as_deref()))
        .map_err(|e| unreadable(format!("{}: {e}", args.order.display())))
}

/// The packed order on standard output, or in `path`.
fn write_packed(path: Option<&std::path::Path>, out: &str) -> Exit {
    match path {
        None => {
            print!("{out}");
            Exit::Ok
        }
        // The packed order holds the clear PAN: owner-only, never through a planted link.
        Some(p) => match crate::files::open_private(p, crate::files::Existing::Truncate)
            .and_then(|mut f| std::io::Write::write_all(&mut f, out.as_bytes()))
        {
            Ok(()) => Exit::Ok,
            Err(e) => unreadable(format!("{}: cannot be written: {}", p.display(), e.kind())),
        },
    }
}

fn pack(args: &PackArgs) -> Exit {
    if let Err(e) = super::refuse_in_production("model2 pack (a tester's tool on test keys)") {
        return e;
    }
    let catalog = match read_catalog(&args.profiles) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let profiles = match crate::catalog::load_chip_profiles(&args.profiles) {
        Ok(p) => p,
        Err(e) => return unreadable(e),
    };
    let loaded = match read_keys(&args.keys) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let keys = loaded.port();
    let dgis = match read_dgis(args) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let mut order = match read_order(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let product_id = order["cardProductId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(profile) = catalog
        .get(&product_id)
        .and_then(|p| p.chip_profile.as_deref())
        .and_then(|name| profiles.get(name))
    else {
        eprintln!("error: cardProductId: product {product_id} has no known chip profile");
        return Exit::Invalid;
    };
    let kek = KeyRef::new(KeyUsage::Kek, args.kek_index);
    match keys.info(kek) {
        Ok(info) if info.test => {}
        Ok(_) => {
            eprintln!(
                "error: --kek-index: key {kek} is not a test key; the packer is for test data only"
            );
            return Exit::Invalid;
        }
        Err(e) => {
            eprintln!("error: --kek-index: {e}");
            return Exit::Invalid;
        }
    }
    let mut mac_key = zeroize::Zeroizing::new([0u8; MAC_KEY_LEN]);
    if getrandom::fill(mac_key.as_mut()).is_err() {
        eprintln!("error: no randomness for the MAC key");
        return Exit::Unreadable;
    }
    let mut plain = zeroize::Zeroizing::new(Vec::new());
    dgi::encode_stream(&dgis, &mut plain);
    let sealed = match keys.seal_envelope(kek, &mac_key, &plain, EnvelopeSettings::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    let mut tlv = json!({
        "appletAid": hex::encode_upper(&profile.aid),
        "appletDataLength": dgi::value_len_sum(&dgis),
        "tlvDataLength": plain.len(),
        "kekId": args.kek_index,
        "macKey": hex::encode_upper(&sealed.mac_key),
        "tlvData": hex::encode_upper(&sealed.tlv_data),
        "mac": hex::encode_upper(&sealed.mac),
    });
    if let Some(code) = &profile.applet_start_code {
        tlv["appletStartCode"] = code.clone().into();
    }
    if !order["encryptedData"].is_object() {
        eprintln!("error: encryptedData: must be a JSON object to carry tlvData");
        return Exit::Invalid;
    }
    order["encryptedData"]["tlvData"] = tlv;
    let out = match serde_json::to_string_pretty(&order) {
        Ok(s) => s + "\n",
        Err(_) => return unreadable("the order cannot be written as JSON"),
    };
    tracing::info!(dgis = dgis.len(), kek = %kek, "Model 2 data packed");
    write_packed(args.out.as_deref(), &out)
}
