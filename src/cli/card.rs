//! `persodesk readers`, `persodesk sim-card` and `persodesk read-card`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use clap::Args;

use super::{
    DEFAULT_KEYS, DEFAULT_PROFILES, Exit, read_catalog, read_keys, read_orders, unreadable,
};
use crate::devices::pcsc::{PcscTransport, ProtocolChoice, list_readers};
use crate::domain::emv_keys::MkdOption;
use crate::domain::keystore::KeyAlgorithm;
use crate::domain::oda::{CaPublicKey, EmvPublicKey, RsaExponent};
use crate::domain::readback::{Interface, Outcome};
use crate::sim::card::channel::{CardKeySource, CardProtocol, KmcMethod};
use crate::sim::card::{CardConfig, CardCvn, CardInterface, Fault, SavedState, VirtualCard};
use crate::sim::vpcd::{self, VpcdEvent};

/// `persodesk readers`: one reader name per line.
pub fn readers() -> Exit {
    match list_readers() {
        Ok(names) if names.is_empty() => {
            println!("no PC/SC reader");
            Exit::Ok
        }
        Ok(names) => {
            for n in names {
                println!("{n}");
            }
            Exit::Ok
        }
        Err(e) => unreadable(e),
    }
}

/// Arguments of `persodesk sim-card`.
#[derive(Debug, Args)]
pub struct SimCardArgs {
    /// The vpcd driver to connect to (loopback in tests).
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: SocketAddr,
    /// Key store holding the card's KMC (a test key).
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// Index of the `kmc` key the card's keys are diversified from.
    #[arg(long, default_value_t = 1)]
    kmc_index: u32,
    /// Secure channel: `scp02` or `scp03`.
    #[arg(long, default_value = "scp02")]
    scp: String,
    /// The "i" parameter in hex (SCP02: 15, 55; SCP03: 00, 10, 70).
    #[arg(long, default_value = "55")]
    i: String,
    /// Key diversification: `emv` (EMV CPS 1.1), `visa2` (TDES) or `kdf3` (AES).
    #[arg(long, default_value = "emv")]
    diversification: String,
    /// CVN of the payment application: visa-cvn10, visa-cvn18, visa-cvn22, mc-cvn16, mc-cvn17,
    /// mc-cvn20, mc-cvn21.
    #[arg(long, default_value = "visa-cvn18")]
    cvn: String,
    /// Card serial number (4 bytes hex) inside the KDD.
    #[arg(long, default_value = "00000001")]
    csn: String,
    /// Keep the personalized state in this file across restarts (clear test data).
    #[arg(long)]
    state: Option<PathBuf>,
    /// The card stock a chip profile expects: its [channel] (SCP and i, KMC index,
    /// diversification, key version, security domain) and its CVN, instead of those flags.
    #[arg(long, conflicts_with_all = ["scp", "i", "diversification", "cvn", "kmc_index"])]
    profile: Option<String>,
    /// Directory holding chip/ (for --profile).
    #[arg(long, default_value = DEFAULT_PROFILES)]
    profiles: PathBuf,
    /// The interface the card presents: contact or contactless (PPSE, contactless FCI and GPO).
    #[arg(long, default_value = "contact")]
    interface: String,
    /// Inject a fault for tests (commands counted from 1 since the card started):
    /// `remove-at:N` (pulled out at command N), `status-at:N:SW` (answers SW, e.g. 6982),
    /// `garbage-at:N` (answers one stray byte).
    #[arg(long)]
    fault: Vec<String>,
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let n = |i: usize| -> Result<u32, String> {
        parts
            .get(i)
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{s}`: N must be a command number from 1"))
    };
    match parts.first().copied() {
        Some("remove-at") if parts.len() == 2 => Ok(Fault::RemoveAt(n(1)?)),
        Some("garbage-at") if parts.len() == 2 => Ok(Fault::GarbageAt(n(1)?, vec![0x6F])),
        Some("status-at") if parts.len() == 3 => {
            let sw = parts
                .get(2)
                .filter(|v| v.len() == 4)
                .and_then(|v| u16::from_str_radix(v, 16).ok())
                .ok_or_else(|| format!("`{s}`: SW must be 4 hex digits"))?;
            Ok(Fault::StatusAt(n(1)?, sw))
        }
        _ => Err(format!(
            "`{s}` is not remove-at:N, status-at:N:SW or garbage-at:N"
        )),
    }
}

fn parse_hex_byte(s: &str, what: &str) -> Result<u8, Exit> {
    u8::from_str_radix(s, 16).map_err(|_| unreadable(format!("--{what}: `{s}` is not a hex byte")))
}

/// The card made from the flags (`--scp`, `--i`, `--kmc-index`, `--diversification`, `--cvn`)
/// or from `--profile`.
fn card_config(
    args: &SimCardArgs,
    store: &crate::keys::SoftwareKeyStore,
) -> Result<CardConfig, Exit> {
    let csn: [u8; 4] = match hex::decode(&args.csn).ok().and_then(|v| v.try_into().ok()) {
        Some(c) => c,
        None => return Err(unreadable("--csn: must be 4 bytes of hex")),
    };
    let Some(name) = &args.profile else {
        return flag_config(args, store, csn);
    };
    let profiles = crate::catalog::load_chip_profiles(&args.profiles).map_err(unreadable)?;
    let Some(profile) = profiles.get(name) else {
        return Err(unreadable(format!(
            "--profile: no chip profile `{name}` in {}",
            args.profiles.join("chip").display()
        )));
    };
    let (kmc, _) = store
        .test_kmc(profile.channel.kmc_index)
        .map_err(|e| unreadable(format!("--profile {name}: {e}")))?;
    crate::sim::card::stock::config_for(profile, kmc, csn)
        .map_err(|e| unreadable(format!("--profile: {e}")))
}

/// `persodesk sim-card`: serves a virtual card to pcscd's vpcd driver until killed. The card
/// answers like the T=0 card its ATR announces (`61xx` and GET RESPONSE, `6Cxx`).
pub fn sim_card(args: &SimCardArgs) -> Exit {
    let store = match read_keys(&args.keys) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Some(interface) = CardInterface::parse(&args.interface) else {
        return unreadable(format!(
            "--interface: `{}` is not contact or contactless",
            args.interface
        ));
    };
    // The simulated card holds its keys in clear: test keys of a software store only.
    let store = match store.software() {
        Ok(s) => s,
        Err(why) => return unreadable(format!("sim-card: {why}")),
    };
    let mut config = match card_config(args, store) {
        Ok(c) => c,
        Err(e) => return e,
    };
    config.t0 = true;
    config.interface = interface;
    serve(args, config)
}

fn flag_config(
    args: &SimCardArgs,
    store: &crate::keys::SoftwareKeyStore,
    csn: [u8; 4],
) -> Result<CardConfig, Exit> {
    let (kmc, algorithm) = store.test_kmc(args.kmc_index).map_err(unreadable)?;
    let i = parse_hex_byte(&args.i, "i")?;
    let protocol = match args.scp.as_str() {
        "scp02" => CardProtocol::Scp02 { i },
        "scp03" => CardProtocol::Scp03 { i },
        other => {
            return Err(unreadable(format!(
                "--scp: `{other}` is not scp02 or scp03"
            )));
        }
    };
    let method = match args.diversification.as_str() {
        "emv" => KmcMethod::EmvCps11,
        "visa2" => KmcMethod::Visa2,
        "kdf3" => KmcMethod::Kdf3,
        other => {
            return Err(unreadable(format!(
                "--diversification: `{other}` is not emv, visa2 or kdf3"
            )));
        }
    };
    if (method == KmcMethod::Kdf3) != (algorithm == KeyAlgorithm::Aes) {
        return Err(unreadable(format!(
            "kmc #{}: a {} key does not go with --diversification {}",
            args.kmc_index,
            algorithm.as_str(),
            args.diversification
        )));
    }
    let Some(cvn) = CardCvn::parse(&args.cvn) else {
        return Err(unreadable(format!(
            "--cvn: `{}` is not a supported CVN",
            args.cvn
        )));
    };
    let mut config = CardConfig::new(protocol, CardKeySource::Kmc { kmc, method }, csn);
    config.cvn = cvn;
    Ok(config)
}

fn serve(args: &SimCardArgs, config: CardConfig) -> Exit {
    let protocol = config.protocol;
    let mut card = match VirtualCard::new(config) {
        Ok(c) => c,
        Err(e) => return unreadable(e),
    };
    for f in &args.fault {
        match parse_fault(f) {
            Ok(fault) => card.inject(fault),
            Err(e) => return unreadable(format!("--fault: {e}")),
        }
    }
    if let Some(path) = args.state.as_ref().filter(|p| p.exists()) {
        let state = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<SavedState>(&t).map_err(|e| e.to_string()))
            .and_then(|s| card.restore(&s).map_err(|e| e.to_string()));
        if let Err(e) = state {
            return unreadable(format!("{}: {e}", path.display()));
        }
    }
    let card = Arc::new(Mutex::new(card));
    let stop = AtomicBool::new(false);
    eprintln!("sim-card: {protocol:?} card, serving vpcd at {}", args.vpcd);
    let mut last_saved = String::new();
    let state_path = args.state.clone();
    let result = vpcd::serve(&card, args.vpcd, &stop, |event, card| {
        match event {
            VpcdEvent::Connected => tracing::info!("connected to vpcd"),
            VpcdEvent::Disconnected => tracing::info!("vpcd closed the connection"),
            _ => tracing::debug!(?event, "vpcd"),
        }
        if let Some(path) = &state_path {
            save_state(path, card, &mut last_saved);
        }
    });
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => unreadable(format!("vpcd {}: {e}", args.vpcd)),
    }
}

fn save_state(path: &Path, card: &VirtualCard, last: &mut String) {
    let Ok(text) = serde_json::to_string_pretty(&card.save()) else {
        return;
    };
    if text == *last {
        return;
    }
    let written = crate::files::replace_private(path, text.as_bytes());
    match written {
        Ok(()) => *last = text,
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot save the card state"),
    }
}

/// Arguments of `persodesk read-card`.
#[derive(Debug, Args)]
pub struct ReadCardArgs {
    /// The PC/SC reader.
    #[arg(long)]
    reader: String,
    /// CA public key file (TOML: rid, index, modulus, exponent, hex).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Order file to compare the card with (and verify the ARQC with its IMK-AC, test keys only).
    #[arg(long, requires = "order")]
    expect: Option<PathBuf>,
    /// The order id in `--expect`.
    #[arg(long, requires = "expect")]
    order: Option<String>,
    /// ICC master key derivation option: a or b.
    #[arg(long, default_value = "a")]
    mkd_option: String,
    /// Directory holding products/.
    #[arg(long, default_value = DEFAULT_PROFILES)]
    profiles: PathBuf,
    /// Key store.
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The interface the reader talks to the card over: contact or contactless (then the PPSE
    /// must list the application, and a qVSDC card's ARQC and fDDA come with the GPO).
    #[arg(long, default_value = "contact")]
    interface: String,
}

#[derive(serde::Deserialize)]
struct CaFile {
    rid: String,
    index: String,
    modulus: String,
    exponent: String,
}

fn read_ca(path: &Path) -> Result<CaPublicKey, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {}", e.kind()))?;
    let f: CaFile = toml::from_str(&text)
        .map_err(|_| "not a CA key file (rid, index, modulus, exponent)".to_string())?;
    let rid: [u8; 5] = hex::decode(&f.rid)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or("rid: 5 bytes hex")?;
    let index = u8::from_str_radix(&f.index, 16).map_err(|_| "index: one hex byte")?;
    let modulus = hex::decode(&f.modulus).map_err(|_| "modulus: hex")?;
    let exponent = hex::decode(&f.exponent).map_err(|_| "exponent: hex")?;
    let exponent = RsaExponent::from_bytes(&exponent).map_err(|e| e.to_string())?;
    let key = EmvPublicKey::new(&modulus, exponent).map_err(|e| e.to_string())?;
    Ok(CaPublicKey { rid, index, key })
}

/// `persodesk read-card`: reads the card as a terminal, verifies it and prints a masked report.
pub fn read_card(args: &ReadCardArgs) -> Exit {
    let ca = match &args.ca {
        Some(p) => match read_ca(p) {
            Ok(k) => Some(k),
            Err(e) => return unreadable(format!("{}: {e}", p.display())),
        },
        None => None,
    };
    let expected = match (&args.expect, &args.order) {
        (Some(file), Some(id)) => {
            let catalog = match read_catalog(&args.profiles) {
                Ok(c) => c,
                Err(e) => return e,
            };
            let store = match read_keys(&args.keys) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let entries = match read_orders(file, &catalog, store.port()) {
                Ok(e) => e,
                Err(e) => return e,
            };
            match entries.into_iter().find(|e| &e.id == id).map(|e| e.outcome) {
                Some(Ok(order)) => {
                    let chip = issuer_chip_data(&order, &catalog, &args.profiles, &store);
                    Some((order, store, chip))
                }
                Some(Err(_)) => return unreadable(format!("order {id} is invalid (see validate)")),
                None => return unreadable(format!("order {id} is not in {}", file.display())),
            }
        }
        _ => None,
    };
    let option = match args.mkd_option.as_str() {
        "a" | "A" => MkdOption::A,
        "b" | "B" => MkdOption::B,
        other => return unreadable(format!("--mkd-option: `{other}` is not a or b")),
    };
    let interface = match args.interface.as_str() {
        "contact" => Interface::Contact,
        "contactless" => Interface::Contactless,
        other => {
            return unreadable(format!(
                "--interface: `{other}` is not contact or contactless"
            ));
        }
    };
    let mut transport = match PcscTransport::connect(&args.reader, ProtocolChoice::Any) {
        Ok(t) => t,
        Err(e) => return unreadable(e),
    };
    let result = crate::verify::read_card_on(&mut transport, interface, ca, None);
    let _ = transport.disconnect();
    let mut result = match result {
        Ok(r) => r,
        Err(e) => return fail_exit(&format!("read-back: {e}")),
    };
    match &expected {
        Some((order, store, chip)) => {
            let key = crate::verify::arqc_key(store.port(), order, option);
            crate::verify::check_against(&mut result, order, chip.as_ref(), key);
        }
        None => result.checks.push(crate::domain::readback::Check {
            name: "ARQC (9F26) with the issuer master key".into(),
            outcome: Outcome::Skipped("no --expect order".into()),
        }),
    }
    print_report(&result, args.json);
    if result.passed() {
        Exit::Ok
    } else {
        Exit::Invalid
    }
}

/// The issuer's Model 2 chip data of `order` (deterministic, so the card's records can be
/// compared with it). Model 1 data holds fresh ICC keys and a fresh PIN where generated, so it
/// is compared at personalization time instead (`persodesk personalize`).
fn issuer_chip_data(
    order: &crate::domain::order::Order,
    catalog: &crate::domain::product::Catalog,
    profiles: &Path,
    store: &crate::keys::LoadedKeys,
) -> Option<crate::domain::chip::ChipData> {
    use crate::domain::chip::ChipModel;
    use crate::domain::prepare::{ModelChoice, PrepInputs, prepare_card};
    order.tlv_data.as_ref()?;
    let product = catalog.get(&order.card_product_id)?;
    let chip_profiles = crate::catalog::load_chip_profiles(profiles).ok()?;
    let inputs = PrepInputs {
        profiles: &chip_profiles,
        date: crate::job::today(),
        keys: store.port(),
        icc_keys: &crate::keys::pool::InlineKeys,
        envelope: crate::domain::envelope::EnvelopeSettings::default(),
    };
    prepare_card(
        order,
        product,
        ModelChoice::Only(ChipModel::Model2),
        &inputs,
    )
    .ok()
    .and_then(|d| d.chip)
}

fn fail_exit(msg: &str) -> Exit {
    eprintln!("error: {msg}");
    Exit::Invalid
}

fn print_report(r: &crate::domain::readback::ReadBack, json: bool) {
    let c = &r.card;
    if json {
        let checks = crate::job::check_lines(r);
        let v = serde_json::json!({
            "aid": c.aid, "label": c.label, "pan": c.pan_masked, "expiry": c.expiry,
            "psn": c.psn, "name": c.name, "aip": c.aip, "records": c.records,
            "atc": c.atc, "pinTries": c.pin_tries, "passed": r.passed(), "checks": checks,
        });
        println!("{v}");
        return;
    }
    println!("AID {}  {}", c.aid, c.label.as_deref().unwrap_or("-"));
    println!(
        "PAN {}  expiry {}  PSN {}  name {}",
        c.pan_masked.as_deref().unwrap_or("-"),
        c.expiry.as_deref().unwrap_or("-"),
        c.psn.as_deref().unwrap_or("-"),
        c.name.as_deref().unwrap_or("-")
    );
    println!(
        "AIP {}  records {}  ATC {}  PIN tries {}",
        c.aip,
        c.records,
        c.atc.map_or("-".into(), |a| a.to_string()),
        c.pin_tries.map_or("-".into(), |a| a.to_string())
    );
    for k in &r.checks {
        println!("{k}");
    }
    println!(
        "{}",
        if r.passed() {
            "read-back: PASS"
        } else {
            "read-back: FAIL"
        }
    );
}
