//! The command line: parses intent, calls the library, prints results. Masked by default.
//!
//! Exit codes: 0 all orders fine; 1 any order invalid or refused; 2 the input (file, profiles,
//! keys) cannot be read or parsed at all.

mod audit;
mod card;
pub mod demo;
mod encode;
mod jwe;
mod keys;
mod model2;
mod personalize;
pub mod prepare;
mod queue;
pub mod records;
mod sim_encoder;
mod station;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::domain::keystore::{JweKeys, NoJweKeys};
use crate::domain::order::{OrderEntry, parse_orders};
use crate::domain::product::Catalog;
use crate::keys::LoadedKeys;

/// Default product/profile directory.
pub const DEFAULT_PROFILES: &str = "profiles";
/// Default key store file.
pub const DEFAULT_KEYS: &str = "assets/demo/keys.toml";

/// persodesk: card personalization workstation. Without a command it opens the window.
#[derive(Debug, Parser)]
#[command(
    name = "persodesk",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// An order file to open the window on (instead of the demo orders).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The store: postgresql://… (shared), sqlite:PATH or a path [default: $PERSODESK_STORE,
    /// else the configuration's `store`, else persodesk.sqlite3 in the data directory;
    /// production: the configuration's, and this flag is refused].
    #[arg(long, global = true)]
    store: Option<String>,
}

/// `--store` as given on the command line.
static STORE_FLAG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an order file: every order is listed with its errors and warnings.
    Validate {
        /// Order file: one order, {"cards": [...]}, or JSON Lines.
        file: PathBuf,
        /// Directory holding products/ (and chip/) [default: profiles; production: the
        /// configuration's, and this flag is refused].
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Key store file, for orders whose encryptedData is a JWE (test mode; none: JWE orders
        /// are refused) [production: the configuration's, and this flag is refused].
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Prepare card data: tracks and where each injected value came from.
    Prepare(prepare::PrepareArgs),
    /// List the PC/SC readers.
    Readers,
    /// Serve a virtual EMV card to pcscd's vpcd driver (reader "Virtual PCD 00 00").
    SimCard(card::SimCardArgs),
    /// Personalize one card: chip over a PC/SC reader, read-back verification, then the stripe.
    Personalize(personalize::PersonalizeArgs),
    /// Read a card as a terminal and verify it (ODA, DDA, ARQC); masked report.
    ReadCard(card::ReadCardArgs),
    /// Write one order's magnetic stripe with an MSR206-family encoder, read it back and compare.
    Encode(encode::EncodeArgs),
    /// Run a simulated MSR206 encoder on a pseudo-terminal until interrupted (prints its path).
    SimEncoder(sim_encoder::SimEncoderArgs),
    /// Key store tools: demo ODA PKI, CA public keys.
    Keys(keys::KeysArgs),
    /// Model 2 tools for testers: seal a DGI file as an issuer would (`model2 pack`).
    Model2(model2::Model2Args),
    /// JWE tools for testers: encrypt orders' encryptedData for a bureau key (`jwe seal`).
    Jwe(jwe::JweArgs),
    /// The store's audit trail: `audit verify` checks its hash chain, `audit show` lists it.
    Audit(audit::AuditArgs),
    /// The order queue: `queue import FILE` adds orders, `queue status` counts them.
    Queue(queue::QueueArgs),
    /// Supervisor review of queued orders: `review approve ID…`, `review reject ID --reason`.
    Review(queue::ReviewArgs),
    /// A production station: claims queued orders and personalizes them (`station run`).
    Station(station::StationArgs),
    /// Tools for testers: `demo orders` writes a generated JSON Lines order file of any size.
    Demo(demo::DemoArgs),
}

/// Outcome classes mapped to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything fine.
    Ok = 0,
    /// Some order invalid, failed or refused.
    Invalid = 1,
    /// Input unreadable.
    Unreadable = 2,
    /// The encoder (or another device) cannot be reached: port missing, not openable, I/O failure.
    DeviceUnavailable = 3,
    /// The device failed the card: error status, bad swipes, read-back mismatch, malformed reply.
    CardFailed = 4,
    /// Nobody swiped a card in time, or the device did not answer.
    Timeout = 5,
}

impl From<crate::job::FailureKind> for Exit {
    /// The one mapping of a failure's class to an exit code (`personalize` and `encode`).
    fn from(kind: crate::job::FailureKind) -> Self {
        use crate::job::FailureKind;
        match kind {
            FailureKind::Refused => Exit::Invalid,
            FailureKind::DeviceUnavailable => Exit::DeviceUnavailable,
            // A card that is not fresh is the card's problem, not the order's: 4, as a card
            // that fails; the order is left as it was.
            FailureKind::CardFailed | FailureKind::Cancelled | FailureKind::CardNotFresh => {
                Exit::CardFailed
            }
            FailureKind::Timeout => Exit::Timeout,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Sets up logging to stderr from `RUST_LOG` (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Keeps secrets out of core dumps and away from same-user debuggers: `RLIMIT_CORE` 0 and
/// `prctl(PR_SET_DUMPABLE, 0)` (which also makes `/proc/<pid>/mem` and ptrace owner-proof).
pub fn harden_process() -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("RLIMIT_CORE: {e}"))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    if let Err(e) = harden_process() {
        eprintln!("error: cannot protect the process memory: {e}");
        return Exit::Unreadable.into();
    }
    let cli = Cli::parse();
    if cli.command.is_none() {
        // `persodesk FILE`: a mistyped command or a missing file is said here, before a window
        // opens on nothing.
        if let Some(file) = cli.file.as_deref().filter(|f| !f.is_file()) {
            eprintln!(
                "error: FILE: {}: no such order file (nor a command; `persodesk --help` lists them)",
                file.display()
            );
            return Exit::Unreadable.into();
        }
        return crate::gui::run(cli.file);
    }
    init_logging();
    run(cli).into()
}

fn run(cli: Cli) -> Exit {
    let _ = STORE_FLAG.set(cli.store.clone());
    match cli.command {
        None => Exit::Ok,
        Some(Command::Validate {
            file,
            profiles,
            keys,
        }) => match validate_paths(profiles.as_deref(), keys.as_deref()) {
            Ok((p, k)) => validate(&file, &p, k.as_deref()),
            Err(e) => e,
        },
        Some(Command::Prepare(args)) => prepare::run(&args),
        Some(Command::Readers) => card::readers(),
        Some(Command::SimCard(args)) => card::sim_card(&args),
        Some(Command::ReadCard(args)) => card::read_card(&args),
        Some(Command::Personalize(args)) => personalize::run(&args),
        Some(Command::Encode(args)) => encode::run(&args),
        Some(Command::SimEncoder(args)) => sim_encoder::run(&args),
        Some(Command::Keys(args)) => keys::run(&args),
        Some(Command::Model2(args)) => model2::run(&args),
        Some(Command::Jwe(args)) => jwe::run(&args),
        Some(Command::Audit(args)) => audit::run(&args),
        Some(Command::Queue(args)) => queue::run_queue(&args),
        Some(Command::Review(args)) => queue::run_review(&args),
        Some(Command::Station(args)) => station::run(&args),
        Some(Command::Demo(args)) => demo::run(&args),
    }
}

/// Prints an input error and returns [`Exit::Unreadable`].
pub(crate) fn unreadable(what: impl std::fmt::Display) -> Exit {
    eprintln!("error: {what}");
    Exit::Unreadable
}

/// The largest order file read (16 MiB, about 10 000 orders with Model 2 data).
pub const MAX_ORDER_FILE: u64 = 16 * 1024 * 1024;

/// Reads an order file's text: a regular file of at most [`MAX_ORDER_FILE`] bytes.
pub(crate) fn read_order_text(file: &Path) -> Result<zeroize::Zeroizing<String>, Exit> {
    use std::io::Read;
    let fail = |what: String| unreadable(format!("{}: {what}", file.display()));
    let meta =
        std::fs::metadata(file).map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    if meta.len() > MAX_ORDER_FILE {
        return Err(fail(format!(
            "is {} bytes, more than the limit of {MAX_ORDER_FILE} bytes: split the batch",
            meta.len()
        )));
    }
    let f = std::fs::File::open(file).map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    let mut text = zeroize::Zeroizing::new(String::new());
    f.take(MAX_ORDER_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    if text.len() as u64 > MAX_ORDER_FILE {
        return Err(fail(format!(
            "is more than the limit of {MAX_ORDER_FILE} bytes"
        )));
    }
    Ok(text)
}

/// Reads and parses an order file; JWE `encryptedData` is opened with `keys`.
pub(crate) fn read_orders(
    file: &Path,
    catalog: &Catalog,
    keys: &dyn JweKeys,
) -> Result<Vec<OrderEntry>, Exit> {
    let text = read_order_text(file)?;
    let mut entries = parse_orders(&text, &catalog.order_rules(), keys)
        .map_err(|e| unreadable(format!("{}: {e}", file.display())))?;
    // Production refuses demo orders and test products outright.
    let mode = mode()?;
    for entry in &mut entries {
        check_order_mode(entry, catalog, mode);
    }
    tracing::info!(file = %file.display(), orders = entries.len(), "order file read");
    Ok(entries)
}

/// Applies the machine's mode rules to one entry: production refuses demo orders and test
/// products outright (a finding added to the entry's errors).
pub(crate) fn check_order_mode(
    entry: &mut OrderEntry,
    catalog: &Catalog,
    mode: crate::config::Mode,
) {
    let test_product = entry
        .card_product_id
        .as_deref()
        .and_then(|id| catalog.get(id))
        .is_some_and(|p| p.test);
    let mut ids = vec![entry.id.as_str()];
    ids.extend(entry.issuer_request_id.as_deref());
    let signs = crate::domain::mode::OrderSigns {
        ids: &ids,
        product_id: entry.card_product_id.as_deref(),
        product_is_test: test_product,
        pan: entry.outcome.as_ref().ok().map(|o| o.pan.reveal()),
    };
    if let Err(f) = mode.check_order_data(&signs) {
        match &mut entry.outcome {
            Ok(_) => entry.outcome = Err(vec![f]),
            Err(errors) => errors.push(f),
        }
    }
}

/// The orders `--order ID` selects (all without it); an id the file lacks is an input error.
pub(crate) fn select_orders<'a>(
    entries: &'a [OrderEntry],
    id: Option<&str>,
    file: &Path,
) -> Result<Vec<&'a OrderEntry>, Exit> {
    let selected: Vec<_> = entries
        .iter()
        .filter(|e| id.is_none_or(|id| e.id == id))
        .collect();
    match id {
        Some(id) if selected.is_empty() => Err(unreadable(format!(
            "no order with id {id} in {}",
            file.display()
        ))),
        _ => Ok(selected),
    }
}

pub(crate) fn read_catalog(profiles: &Path) -> Result<Catalog, Exit> {
    let catalog = crate::catalog::load_products(profiles).map_err(unreadable)?;
    tracing::info!(products = catalog.products().len(), "products loaded");
    Ok(catalog)
}

/// The operating mode of this machine ([`crate::config`]); an unreadable configuration is an
/// input error.
pub(crate) fn mode() -> Result<crate::config::Mode, Exit> {
    crate::config::mode().map_err(unreadable)
}

/// The machine's configuration in force ([`crate::config::load`]); unreadable is an input error.
pub(crate) fn machine() -> Result<crate::config::Config, Exit> {
    crate::config::load().map_err(unreadable)
}

/// A path production takes from the configuration only: `flag` (the command-line value) is
/// refused there; test mode uses it or `default`.
fn configured_path(
    flag: Option<&Path>,
    option: &str,
    configured: impl FnOnce(&crate::config::Config) -> Option<PathBuf>,
    default: &str,
) -> Result<PathBuf, Exit> {
    let config = machine()?;
    if config.mode == crate::config::Mode::Production {
        if flag.is_some() {
            return Err(unreadable(format!(
                "{option} is refused in production: it comes from the machine configuration"
            )));
        }
        return configured(&config)
            .ok_or_else(|| unreadable(format!("production: the configuration names no {option}")));
    }
    Ok(flag.map_or_else(
        || configured(&config).unwrap_or_else(|| PathBuf::from(default)),
        Path::to_path_buf,
    ))
}

/// The key store file: `--keys` (test mode), else the configuration's, else the demo store.
pub(crate) fn keys_path(flag: Option<&Path>) -> Result<PathBuf, Exit> {
    configured_path(flag, "--keys", |c| c.keys.clone(), DEFAULT_KEYS)
}

/// The profiles directory: `--profiles` (test mode), else the configuration's, else `profiles`.
/// The profiles folder (`--profiles`, the configuration, or the default) and its products.
pub(crate) fn catalog_at(flag: Option<&Path>) -> Result<(PathBuf, Catalog), Exit> {
    let profiles = profiles_path(flag)?;
    let catalog = read_catalog(&profiles)?;
    Ok((profiles, catalog))
}

pub(crate) fn profiles_path(flag: Option<&Path>) -> Result<PathBuf, Exit> {
    configured_path(flag, "--profiles", |c| c.profiles.clone(), DEFAULT_PROFILES)
}

/// The profiles and key store `validate` uses: the key store only when one is given (test
/// mode) or configured (production), since only JWE orders need it.
fn validate_paths(
    profiles: Option<&Path>,
    keys: Option<&Path>,
) -> Result<(PathBuf, Option<PathBuf>), Exit> {
    let profiles = profiles_path(profiles)?;
    let keys = match (keys, mode()?) {
        (None, crate::config::Mode::Test) => None,
        (k, _) => Some(keys_path(k)?),
    };
    Ok((profiles, keys))
}

/// Refuses `what` in production (commands that write test keys, tester-only overrides).
pub(crate) fn refuse_in_production(what: &str) -> Result<(), Exit> {
    if mode()? == crate::config::Mode::Production {
        eprintln!("error: {what} is refused in production");
        return Err(Exit::Invalid);
    }
    Ok(())
}

/// Who runs this command in `role` ([`crate::domain::review::session_for`]): the
/// operating-system account, roles from the configuration; `--user` only in test mode.
pub(crate) fn session(
    role: crate::domain::review::Role,
    user: Option<&str>,
) -> Result<crate::domain::review::Session, Exit> {
    let config = machine()?;
    let account = crate::store::os_user();
    crate::domain::review::session_for(config.mode, &account, user, role, config.roles.as_ref())
        .map_err(|rule| {
            eprintln!("error: {rule}");
            Exit::Invalid
        })
}

/// Where the store is: `--store`, `$PERSODESK_STORE`, the configuration's `store`, else the data
/// directory's SQLite file ([`crate::store::StoreLocation::resolve`]). Production takes it from
/// the configuration only: the flag and the variable are refused there.
pub(crate) fn store_location() -> Result<crate::store::StoreLocation, Exit> {
    let config = machine()?;
    let flag = STORE_FLAG.get().cloned().flatten();
    if config.mode == crate::config::Mode::Production {
        let env = std::env::var_os(crate::store::STORE_ENV).is_some_and(|v| !v.is_empty());
        if flag.is_some() || env {
            return Err(unreadable(format!(
                "--store and ${} are refused in production: the store comes from the machine configuration",
                crate::store::STORE_ENV
            )));
        }
    }
    crate::store::StoreLocation::resolve(flag.as_deref(), config.store.as_deref())
        .map_err(|e| unreadable(format!("store: {e}")))
}

/// Opens the store ([`store_location`]), sealed with the key store's `audit` key (production
/// refuses a key store without one, see [`read_keys`]).
pub(crate) fn open_store(keys: &LoadedKeys) -> Result<crate::store::Store, Exit> {
    let location = store_location()?;
    let sealer = keys.audit_sealer();
    if sealer.is_none() && mode()? == crate::config::Mode::Production {
        return Err(unreadable(
            "workstation store: production needs an audit key (usage audit) in the key store",
        ));
    }
    crate::store::Store::open_at(&location, sealer)
        .map_err(|e| unreadable(format!("workstation store: {e}")))
}

/// Loads a key store (software file or PKCS#11 store file, [`crate::keys::load`]); production
/// refuses test keys, a test token, published, demo and weak key values, and a store without an
/// `audit` key.
pub(crate) fn read_keys(keys: &Path) -> Result<LoadedKeys, Exit> {
    let store = crate::keys::load(keys).map_err(unreadable)?;
    store.check_mode(mode()?).map_err(unreadable)?;
    tracing::info!(file = %keys.display(), keys = store.list().len(), "key store loaded");
    Ok(store)
}

fn validate(file: &Path, profiles: &Path, keys: Option<&Path>) -> Exit {
    let catalog = match read_catalog(profiles) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let store = match keys.map(read_keys).transpose() {
        Ok(s) => s,
        Err(e) => return e,
    };
    let jwe: &dyn JweKeys = match &store {
        Some(s) => s.port(),
        None => &NoJweKeys,
    };
    let entries = match read_orders(file, &catalog, jwe) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let mut invalid = 0;
    for entry in &entries {
        let mut errors = match &entry.outcome {
            Ok(_) => Vec::new(),
            Err(errors) => errors.clone(),
        };
        if let Some(id) = &entry.card_product_id
            && catalog.get(id).is_none()
        {
            errors.push(crate::domain::finding::Finding::new(
                "cardProductId",
                format!(
                    "product {id} is not in {}",
                    profiles.join("products").display()
                ),
            ));
        }
        let pan = entry.masked_pan.as_deref().unwrap_or("-");
        let product = entry.card_product_id.as_deref().unwrap_or("-");
        if errors.is_empty() {
            println!("ok       {}  {product}  {pan}", entry.id);
        } else {
            invalid += 1;
            println!("invalid  {}  {product}  {pan}", entry.id);
            for e in &errors {
                println!("  error    {e}");
            }
        }
        for w in &entry.warnings {
            println!("  warning  {w}");
        }
    }
    println!(
        "{} orders: {} valid, {invalid} invalid",
        entries.len(),
        entries.len() - invalid
    );
    if invalid == 0 {
        Exit::Ok
    } else {
        Exit::Invalid
    }
}

/// The chip profile of a chip order's product (`None`: the order has no chip data); the one
/// lookup `personalize` and `station run` make before the job.
fn chip_profile_of<'a>(
    catalog: &Catalog,
    profiles: &'a crate::domain::chip::ChipProfiles,
    order: &crate::domain::order::Order,
    data: &crate::domain::prepare::PersoData,
) -> Result<Option<&'a crate::domain::chip::ChipProfile>, String> {
    if data.chip.is_none() {
        return Ok(None);
    }
    let product = catalog
        .get(&order.card_product_id)
        .ok_or_else(|| format!("product {} vanished", order.card_product_id))?;
    crate::domain::prepare::profile_of(product, profiles)
        .map(Some)
        .map_err(|f| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `persodesk FILE` opens the window on FILE; a command is still a command, and a file
    /// given with a command is refused rather than ignored.
    #[test]
    fn a_file_without_a_command_opens_the_window_on_it() {
        let cli = Cli::try_parse_from(["persodesk", "orders.jsonl"]).expect("parse");
        assert!(cli.command.is_none());
        assert_eq!(
            cli.file.as_deref(),
            Some(std::path::Path::new("orders.jsonl"))
        );
        let cli = Cli::try_parse_from(["persodesk", "readers"]).expect("parse");
        assert!(matches!(cli.command, Some(Command::Readers)));
        assert!(cli.file.is_none());
        let cli = Cli::try_parse_from(["persodesk"]).expect("parse");
        assert!(cli.command.is_none() && cli.file.is_none());
        assert!(Cli::try_parse_from(["persodesk", "orders.jsonl", "readers"]).is_err());
    }
}
