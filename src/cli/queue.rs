//! `persodesk queue import|status` and `persodesk review approve|reject`: the shared order queue.
//!
//! - `queue import FILE` validates every order (the same intake as `validate`), and adds each
//!   valid one as CARD_PROD_REQUESTED, once (by `issuerRequestId`, else `cardId`). An order is
//!   kept only protected: as received when its `encryptedData` is a JWE, else sealed under the
//!   key store's `store` key; without one plain orders are refused. Prints `imported N, already
//!   known M, invalid K` (and each invalid order's field errors). Exit 1 when any was invalid.
//! - `queue status [--json]` counts the queued orders per status and per station.
//! - `review approve ID…` (supervisor) opens each queued order, prepares it and records the
//!   approval as evidence of the prepared data (the record `job::authorize` checks);
//!   `review reject ID --reason TEXT` rejects it.

use std::path::PathBuf;

use base64ct::{Base64, Encoding};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Exit, keys_path, profiles_path, read_catalog, read_keys, read_orders, unreadable};
use crate::domain::envelope::EnvelopeSettings;
use crate::domain::finding::Finding;
use crate::domain::keystore::{JweKeys, StoreSealKeys};
use crate::domain::order::{Order, OrderEntry, parse_orders};
use crate::domain::prepare::PersoData;
use crate::domain::prepare::{ModelChoice, PrepInputs, prepare_card};
use crate::domain::review::{OrderFacts, Role, Session, may_review};
use crate::domain::status::Event;
use crate::keys::LoadedKeys;
use crate::keys::pool::InlineKeys;
use crate::store::queue::Form;
use crate::store::{QueuedOrder, Store};

/// `persodesk queue ...`
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Validate an order file and add its valid orders to the queue (idempotent).
    Import {
        /// Order file: one order, {"cards": [...]}, or JSON Lines.
        file: PathBuf,
        /// Key store file (JWE orders, the `store` sealing key, the `audit` key) [default:
        /// assets/demo/keys.toml; production: the configuration's, and this flag is refused].
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Directory holding products/ [default: profiles; production: the configuration's].
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// User name for the audit trail, test mode only.
        #[arg(long)]
        user: Option<String>,
    },
    /// Count the queued orders per status and per station.
    Status {
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
        /// Key store file (for the `audit` key) [default: assets/demo/keys.toml].
        #[arg(long)]
        keys: Option<PathBuf>,
    },
}

/// `persodesk review ...`
#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    command: ReviewCommand,
    /// Key store file [default: assets/demo/keys.toml; production: the configuration's].
    #[arg(long, global = true)]
    keys: Option<PathBuf>,
    /// Directory holding products/ and chip/ [default: profiles; production: the
    /// configuration's].
    #[arg(long, global = true)]
    profiles: Option<PathBuf>,
    /// Supervisor name for the audit trail, test mode only.
    #[arg(long, global = true)]
    user: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ReviewCommand {
    /// Approve queued orders: each is prepared and the approval names what was reviewed.
    Approve {
        /// Order ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Reject a queued order.
    Reject {
        /// Order id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// Runs `persodesk queue ...`.
pub fn run_queue(args: &QueueArgs) -> Exit {
    let result = match &args.command {
        QueueCommand::Import {
            file,
            keys,
            profiles,
            user,
        } => import(file, keys.as_ref(), profiles.as_ref(), user.as_deref()),
        QueueCommand::Status { json, keys } => status(*json, keys.as_ref()),
    };
    result.unwrap_or_else(|e| e)
}

/// The raw order values of a file, by 1-based position (the intake's positions).
fn raw_orders(text: &str) -> Vec<Value> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(mut m)) if m.contains_key("cards") => match m.remove("cards") {
            Some(Value::Array(cards)) => cards,
            _ => Vec::new(),
        },
        Ok(v @ Value::Object(_)) => vec![v],
        Ok(Value::Array(cards)) => cards,
        Ok(_) => Vec::new(),
        Err(_) => trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect(),
    }
}

/// The protected form of one valid order: as received with a JWE, else sealed.
fn protect(
    entry: &OrderEntry,
    raw: &Value,
    seal: Option<&dyn StoreSealKeys>,
) -> Result<QueuedOrder, String> {
    let request_key = entry
        .issuer_request_id
        .clone()
        .unwrap_or_else(|| entry.id.clone());
    let text = zeroize::Zeroizing::new(raw.to_string());
    let (form, protected) = if raw.get("encryptedData").is_some_and(Value::is_string) {
        (Form::Jwe, text.to_string())
    } else {
        let refuse = |why: String| {
            format!(
                "plain, and the key store cannot seal it ({why}): refused, nothing is queued in clear (add a `store` key or send a JWE)"
            )
        };
        let seal = seal.ok_or_else(|| refuse("no store key".into()))?;
        let blob = seal
            .store_seal(&QueuedOrder::purpose(&entry.id), text.as_bytes())
            .map_err(|e| refuse(e.to_string()))?;
        (Form::Sealed, Base64::encode_string(&blob))
    };
    Ok(QueuedOrder {
        order_id: entry.id.clone(),
        request_key,
        form,
        protected,
    })
}

fn import(
    file: &std::path::Path,
    keys: Option<&PathBuf>,
    profiles: Option<&PathBuf>,
    user: Option<&str>,
) -> Result<Exit, Exit> {
    let who =
        super::session(Role::Operator, user).or_else(|_| super::session(Role::Supervisor, user))?;
    let catalog = read_catalog(&profiles_path(profiles.map(PathBuf::as_path))?)?;
    let keys = read_keys(&keys_path(keys.map(PathBuf::as_path))?)?;
    let entries = read_orders(file, &catalog, keys.port())?;
    let text = super::read_order_text(file)?;
    let raw = raw_orders(&text);
    let seal: Option<&dyn StoreSealKeys> = keys.store_seal();
    let mut items = Vec::new();
    let mut invalid = 0;
    for entry in &entries {
        let mut errors = entry.outcome.as_ref().err().cloned().unwrap_or_default();
        if let Some(id) = &entry.card_product_id
            && catalog.get(id).is_none()
        {
            errors.push(Finding::new(
                "cardProductId",
                format!("product {id} is not known"),
            ));
        }
        if errors.is_empty() {
            let value = raw.get(entry.position - 1).unwrap_or(&Value::Null);
            match protect(entry, value, seal) {
                Ok(item) => items.push(item),
                Err(rule) => errors.push(Finding::new("encryptedData", rule)),
            }
        }
        if !errors.is_empty() {
            invalid += 1;
            println!("invalid  {}", entry.id);
            for e in &errors {
                println!("  error    {e}");
            }
        }
    }
    let store = super::open_store(&keys)?;
    let added = store
        .enqueue(&who, &items)
        .map_err(|e| unreadable(format!("store: {e}")))?;
    let imported = added.iter().filter(|a| **a).count();
    println!(
        "imported {imported}, already known {}, invalid {invalid}",
        added.len() - imported
    );
    Ok(if invalid == 0 {
        Exit::Ok
    } else {
        Exit::Invalid
    })
}

fn status(json: bool, keys: Option<&PathBuf>) -> Result<Exit, Exit> {
    let keys = read_keys(&keys_path(keys.map(PathBuf::as_path))?)?;
    let store = super::open_store(&keys)?;
    let counts = store
        .queue_counts()
        .map_err(|e| unreadable(format!("store: {e}")))?;
    if json {
        let line = serde_json::to_string(&counts).map_err(|e| unreadable(e.to_string()))?;
        println!("{line}");
        return Ok(Exit::Ok);
    }
    let total: i64 = counts.statuses.values().sum();
    println!("{total} queued orders");
    for (status, n) in &counts.statuses {
        println!("  {status:<20} {n}");
    }
    for (station, statuses) in &counts.stations {
        let parts: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("station {station}: {}", parts.join(", "));
    }
    Ok(Exit::Ok)
}

/// A queued order opened (JWE decrypted or unsealed) and validated again by the intake.
pub(crate) fn open_queued(
    item: &QueuedOrder,
    keys: &LoadedKeys,
    catalog: &crate::domain::product::Catalog,
) -> Result<OrderEntry, String> {
    let text = match item.form {
        Form::Jwe => zeroize::Zeroizing::new(item.protected.clone()),
        Form::Sealed => {
            let blob = Base64::decode_vec(&item.protected)
                .map_err(|_| "the sealed order is not base64".to_string())?;
            let plain = keys
                .store_seal()
                .ok_or_else(|| "this key store cannot open sealed orders".to_string())?
                .store_open(&QueuedOrder::purpose(&item.order_id), &blob)
                .map_err(|e| format!("the sealed order cannot be opened: {e}"))?;
            zeroize::Zeroizing::new(
                String::from_utf8(plain.to_vec())
                    .map_err(|_| "the sealed order is not UTF-8".to_string())?,
            )
        }
    };
    let jwe: &dyn JweKeys = keys.port();
    let mut entries =
        parse_orders(&text, &catalog.order_rules(), jwe).map_err(|e| e.to_string())?;
    let entry = entries
        .pop()
        .filter(|e| e.id == item.order_id)
        .ok_or_else(|| format!("the queued order is not order {}", item.order_id))?;
    Ok(entry)
}

/// Prepares an opened order (Model auto); findings name fields and rules.
pub(crate) fn prepare_entry<'a>(
    entry: &'a OrderEntry,
    catalog: &crate::domain::product::Catalog,
    chip_profiles: &crate::domain::chip::ChipProfiles,
    keys: &LoadedKeys,
) -> Result<(&'a Order, PersoData), Vec<Finding>> {
    let order = entry.outcome.as_ref().map_err(Clone::clone)?;
    let product = catalog.get(&order.card_product_id).ok_or_else(|| {
        vec![Finding::new(
            "cardProductId",
            format!("product {} is not known", order.card_product_id),
        )]
    })?;
    let inputs = PrepInputs {
        profiles: chip_profiles,
        date: crate::job::today(),
        keys: keys.port(),
        icc_keys: &InlineKeys,
        envelope: EnvelopeSettings::default(),
    };
    let data = prepare_card(order, product, ModelChoice::Auto, &inputs)?;
    Ok((order, data))
}

/// Runs `persodesk review ...`.
pub fn run_review(args: &ReviewArgs) -> Exit {
    review(args).unwrap_or_else(|e| e)
}

fn review(args: &ReviewArgs) -> Result<Exit, Exit> {
    let who = super::session(Role::Supervisor, args.user.as_deref())?;
    let profiles = profiles_path(args.profiles.as_deref())?;
    let catalog = read_catalog(&profiles)?;
    let chip_profiles = crate::catalog::load_chip_profiles(&profiles).map_err(unreadable)?;
    let keys = read_keys(&keys_path(args.keys.as_deref())?)?;
    let mut store = super::open_store(&keys)?;
    let mut exit = Exit::Ok;
    match &args.command {
        ReviewCommand::Approve { ids } => {
            for id in ids {
                match approve_one(&mut store, &who, id, &keys, (&catalog, &chip_profiles)) {
                    Ok(status) => println!("approved {id}: {status}"),
                    Err(why) => {
                        println!("refused  {id}: {why}");
                        exit = Exit::Invalid;
                    }
                }
            }
        }
        ReviewCommand::Reject { id, reason } => {
            if reason.trim().is_empty() {
                return Err(unreadable("--reason: a rejection needs a reason"));
            }
            let event = Event::Rejected {
                reason: format!("rejected by {}: {}", who.user, reason.trim()),
            };
            match store.apply(id, &event, &who) {
                Ok(state) => println!("rejected {id}: {}", state.status),
                Err(e) => {
                    println!("refused  {id}: {e}");
                    exit = Exit::Invalid;
                }
            }
        }
    }
    Ok(exit)
}

/// Opens, prepares and approves one queued order; the approval carries the evidence of the
/// prepared data, as the window's approval does.
fn approve_one(
    store: &mut Store,
    who: &Session,
    id: &str,
    keys: &LoadedKeys,
    (catalog, chip_profiles): (
        &crate::domain::product::Catalog,
        &crate::domain::chip::ChipProfiles,
    ),
) -> Result<String, String> {
    let item = store
        .queued(id)
        .map_err(|e| format!("store: {e}"))?
        .ok_or_else(|| "not in the queue".to_string())?;
    let entry = open_queued(&item, keys, catalog)?;
    let prepared = prepare_entry(&entry, catalog, chip_profiles, keys);
    let failure = prepared.as_ref().err().map(|f| Finding::join(f));
    store
        .record_preparation_by(&[(id, failure.as_deref())], who)
        .map_err(|e| format!("store: {e}"))?;
    let (_, data) = prepared.map_err(|f| format!("preparation failed: {}", Finding::join(&f)))?;
    let state = store
        .state(id)
        .map_err(|e| format!("store: {e}"))?
        .ok_or_else(|| "not in the store".to_string())?;
    let facts = OrderFacts {
        status: state.status,
        approved: state.approved,
        test_keys_only: data.non_test_keys().is_empty(),
    };
    if let Err(d) = may_review(who.role, facts) {
        let _ = store.audit(who, "approve", Some(id), &format!("refused: {}", d.rule));
        return Err(d.to_string());
    }
    let evidence = crate::job::evidence(store, &data).map_err(|e| e.to_string())?;
    let state = store
        .approve(id, who, &evidence)
        .map_err(|e| e.to_string())?;
    Ok(state.status.to_string())
}
