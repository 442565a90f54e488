//! The preparation worker: a named thread (`persodesk-prepare`) that reads order files, validates
//! and prepares every order (for its status), records the statuses in the store, and prepares the
//! selected order again for its preview. The UI thread only sends jobs and reads messages.
//!
//! Clear card data is held only for the order being previewed: a loaded file keeps the validated
//! orders, and each preview is prepared on demand through the one preparation entry point
//! ([`prepare_card`]) with the chip model the user chose. ICC key pairs for DDA/CDA profiles come
//! from a key pool filled by background threads started with the worker.
//!
//! A load prepares each order's tracks (for its status); chip data is prepared for the preview.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, OnceLock};

use crate::domain::chip::{ChipModel, ChipProfile, ChipProfiles};
use crate::domain::envelope::EnvelopeSettings;
use crate::domain::finding::Finding;
use crate::domain::order::{Order, OrderEntry, parse_orders};
use crate::domain::prepare::{
    AllowedModels, ModelChoice, PersoData, PrepInputs, prepare_card, prepare_tracks,
};
use crate::domain::product::Catalog;
use crate::domain::status::Status;
use crate::keys::LoadedKeys;
use crate::keys::pool::KeyPools;
use crate::store::Store;

use super::pan_search::PanTag;
use super::preview::ChipSection;

/// The demo orders, embedded so that the app starts from any directory.
pub const DEMO_ORDERS: &str = include_str!("../../assets/demo/orders.json");
/// The demo Model 2 orders (issuer-prepared chip data), loaded with the demo orders.
pub const DEMO_ORDERS_MODEL2: &str = include_str!("../../assets/demo/orders-model2.json");

/// Wakes the UI when a worker has news: a repaint request on the egui context, once known.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<OnceLock<egui::Context>>);

impl Waker {
    /// Remembers the context (first frame).
    pub fn set(&self, ctx: &egui::Context) {
        let _ = self.0.set(ctx.clone());
    }

    /// Requests a repaint, if the context is known.
    pub fn wake(&self) {
        if let Some(ctx) = self.0.get() {
            ctx.request_repaint();
        }
    }
}

/// Starts a thread named `name` (logs and debuggers tell the workers apart by it).
pub fn spawn_named(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// A worker's loop: answers each request with `answer` on `out` and wakes the window, until
/// either side hangs up.
pub fn serve<Q, A>(
    requests: &Receiver<Q>,
    out: &Sender<A>,
    waker: &Waker,
    mut answer: impl FnMut(Q) -> A,
) {
    while let Ok(request) = requests.recv() {
        if out.send(answer(request)).is_err() {
            break;
        }
        waker.wake();
    }
}

/// Where orders come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderSource {
    /// The embedded demo orders.
    Demo,
    /// An order file.
    File(PathBuf),
}

impl OrderSource {
    /// For titles and messages.
    pub fn label(&self) -> String {
        match self {
            OrderSource::Demo => "demo orders".into(),
            OrderSource::File(p) => p.display().to_string(),
        }
    }
}

/// One order as the table shows it. Nothing clear: the PAN is masked.
#[derive(Debug, Clone)]
pub struct OrderRow {
    /// Order id.
    pub id: String,
    /// `cardProductId`, or `-`.
    pub product: String,
    /// Masked PAN, or `-`.
    pub masked_pan: String,
    /// The chip models the order and product allow.
    pub allowed: AllowedModels,
    /// The chosen model (None: stripe only).
    pub model: Option<ChipModel>,
    /// Production status.
    pub status: Status,
    /// Why it is in a failure state.
    pub reason: Option<String>,
    /// A supervisor approved it.
    pub approved: bool,
    /// Every key its preparation used is a test key.
    pub test_keys_only: bool,
    /// Validation and preparation errors.
    pub errors: Vec<Finding>,
    /// Warnings.
    pub warnings: Vec<Finding>,
}

/// A job for the worker.
#[derive(Debug)]
pub enum PrepJob {
    /// Read, validate and prepare a whole file.
    Load {
        /// Identifies this load; messages of older loads are dropped by the UI.
        generation: u64,
        /// Where from.
        source: OrderSource,
    },
    /// Prepare one order of the current file for its preview.
    Preview {
        /// The load it belongs to.
        generation: u64,
        /// The row (position in the file, 0-based).
        row: usize,
        /// The chip model chosen.
        model: Option<ChipModel>,
    },
}

/// One order's preview data.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Tracks, chip data, sources, keys used (clear values inside; shown masked).
    pub data: PersoData,
    /// The validated order (the read-back compares the card with it).
    pub order: Order,
    /// The chip profile of the chip data.
    pub profile: Option<ChipProfile>,
    /// The chip data section.
    pub chip: ChipSection,
    /// Warnings of the order and of the preparation.
    pub warnings: Vec<Finding>,
}

/// News from the worker.
#[derive(Debug)]
pub enum PrepMsg {
    /// Progress of a load.
    Progress {
        /// The load.
        generation: u64,
        /// Orders prepared so far.
        done: usize,
        /// Orders in the file.
        total: usize,
    },
    /// A file is loaded.
    Loaded {
        /// The load.
        generation: u64,
        /// Where from.
        source: OrderSource,
        /// Every order.
        rows: Vec<OrderRow>,
        /// Each order's PAN tag, for the full-PAN search (`pan_tags[i]` for `rows[i]`).
        pan_tags: Vec<Option<PanTag>>,
        /// The store could not record the statuses (they are shown, not kept).
        store_error: Option<String>,
    },
    /// The file could not be read at all.
    LoadFailed {
        /// The load.
        generation: u64,
        /// Where from.
        source: OrderSource,
        /// Why.
        error: String,
    },
    /// A preview is ready.
    Preview {
        /// The load.
        generation: u64,
        /// The row.
        row: usize,
        /// The chip model it was prepared for.
        model: Option<ChipModel>,
        /// The data, or the errors.
        result: Result<Box<Prepared>, Vec<Finding>>,
    },
}

/// What the worker needs.
pub struct PrepContext {
    /// Products.
    pub catalog: Catalog,
    /// Chip profiles the products name.
    pub profiles: ChipProfiles,
    /// Keys.
    pub keys: Arc<LoadedKeys>,
    /// Keep a pool of ICC key pairs for DDA/CDA profiles (else they are generated when needed,
    /// on this worker).
    pub key_pool: bool,
    /// The store database, if any.
    pub store: Option<crate::store::StoreLocation>,
}

/// Starts ICC key pools for the profiles that need ICC keys (background threads).
fn start_pools(profiles: &ChipProfiles) -> KeyPools {
    let specs: Vec<_> = profiles
        .profiles()
        .iter()
        .filter(|p| p.oda.method.needs_icc_key())
        .map(|p| (p.oda.icc_key_bits, p.oda.icc_exponent))
        .collect();
    if specs.is_empty() {
        return KeyPools::default();
    }
    KeyPools::start(&specs, 2).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ICC key pool not started; keys are generated when needed");
        KeyPools::default()
    })
}

/// Starts the worker thread; it ends when the job sender is dropped.
pub fn spawn(
    ctx: PrepContext,
    jobs: Receiver<PrepJob>,
    out: Sender<PrepMsg>,
    waker: Waker,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    spawn_named("persodesk-prepare", move || {
        let pools = if ctx.key_pool {
            start_pools(&ctx.profiles)
        } else {
            KeyPools::default()
        };
        let mut worker = Worker {
            ctx,
            pools,
            entries: Vec::new(),
            generation: 0,
            store: None,
        };
        serve(&jobs, &out, &waker, |job| worker.handle(job, &out, &waker));
    })
}

struct Worker {
    ctx: PrepContext,
    pools: KeyPools,
    entries: Vec<OrderEntry>,
    generation: u64,
    store: Option<Store>,
}

fn join_findings(findings: &[Finding]) -> String {
    let mut s = String::new();
    for (i, f) in findings.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        s.push_str(&f.to_string());
        if s.len() > 400 {
            s.push_str("; ...");
            break;
        }
    }
    s
}

impl Worker {
    fn handle(&mut self, job: PrepJob, out: &Sender<PrepMsg>, waker: &Waker) -> PrepMsg {
        match job {
            PrepJob::Load { generation, source } => {
                match self.load(generation, &source, out, waker) {
                    Ok((rows, store_error)) => PrepMsg::Loaded {
                        generation,
                        source,
                        rows,
                        pan_tags: self.pan_tags(),
                        store_error,
                    },
                    Err(error) => {
                        tracing::warn!(source = %source.label(), %error, "order file not loaded");
                        PrepMsg::LoadFailed {
                            generation,
                            source,
                            error,
                        }
                    }
                }
            }
            PrepJob::Preview {
                generation,
                row,
                model,
            } => PrepMsg::Preview {
                generation,
                row,
                model,
                result: self.preview(generation, row, model),
            },
        }
    }

    fn load(
        &mut self,
        generation: u64,
        source: &OrderSource,
        out: &Sender<PrepMsg>,
        waker: &Waker,
    ) -> Result<(Vec<OrderRow>, Option<String>), String> {
        let rules = self.ctx.catalog.order_rules();
        let keys = self.ctx.keys.port();
        let entries = match source {
            OrderSource::Demo => {
                let mut entries = parse_orders(DEMO_ORDERS, &rules, keys)
                    .map_err(|e| format!("demo orders: {e}"))?;
                entries.extend(
                    parse_orders(DEMO_ORDERS_MODEL2, &rules, keys)
                        .map_err(|e| format!("demo Model 2 orders: {e}"))?,
                );
                entries
            }
            OrderSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: cannot be read: {}", path.display(), e.kind()))?;
                parse_orders(&text, &rules, keys).map_err(|e| format!("{}: {e}", source.label()))?
            }
        };
        let total = entries.len();
        let mut rows = Vec::with_capacity(total);
        for (i, entry) in entries.iter().enumerate() {
            rows.push(self.row(entry));
            if i % 2000 == 1999 {
                let _ = out.send(PrepMsg::Progress {
                    generation,
                    done: i + 1,
                    total,
                });
                waker.wake();
            }
        }
        self.entries = entries;
        self.generation = generation;
        let store_error = self.record(&mut rows).err();
        tracing::info!(
            source = %source.label(),
            orders = total,
            prepared = rows.iter().filter(|r| r.errors.is_empty()).count(),
            "orders loaded"
        );
        Ok((rows, store_error))
    }

    /// The PAN tag of every loaded order (None where the order did not parse).
    fn pan_tags(&self) -> Vec<Option<PanTag>> {
        self.entries
            .iter()
            .map(|e| {
                e.outcome
                    .as_ref()
                    .ok()
                    .and_then(|o| PanTag::of(o.pan.reveal()))
            })
            .collect()
    }

    fn row(&self, entry: &OrderEntry) -> OrderRow {
        let mut row = OrderRow {
            id: entry.id.clone(),
            product: entry.card_product_id.clone().unwrap_or_else(|| "-".into()),
            masked_pan: entry.masked_pan.clone().unwrap_or_else(|| "-".into()),
            allowed: AllowedModels::default(),
            model: None,
            status: Status::Requested,
            reason: None,
            approved: false,
            test_keys_only: false,
            errors: Vec::new(),
            warnings: entry.warnings.clone(),
        };
        let order = match &entry.outcome {
            Ok(o) => o,
            Err(errors) => {
                row.errors = errors.clone();
                row.status = Status::DataException;
                return row;
            }
        };
        let Some(product) = self.ctx.catalog.get(&order.card_product_id) else {
            row.errors.push(Finding::new(
                "cardProductId",
                format!("product {} is not in the catalog", order.card_product_id),
            ));
            row.status = Status::DataException;
            return row;
        };
        row.allowed = AllowedModels::of(order, product);
        row.model = row.allowed.default_choice();
        // Tracks for every order; the issuer's Model 2 data too (decrypt, MAC, checks: cheap),
        // so a bad envelope is a DATA_EXCEPTION at load. Model 1 chip data, which needs ICC key
        // generation, is prepared for the selected order only.
        let prepared = if row.model == Some(ChipModel::Model2) {
            let inputs = PrepInputs {
                profiles: &self.ctx.profiles,
                date: crate::job::today(),
                keys: self.ctx.keys.port(),
                icc_keys: &crate::keys::pool::InlineKeys,
                envelope: EnvelopeSettings::default(),
            };
            prepare_card(
                order,
                product,
                ModelChoice::Only(ChipModel::Model2),
                &inputs,
            )
        } else {
            prepare_tracks(order, product, self.ctx.keys.port())
        };
        match prepared {
            Ok(data) => {
                row.test_keys_only = data.non_test_keys().is_empty();
                row.warnings.extend(data.warnings.iter().cloned());
                row.status = Status::DataPrepared;
            }
            Err(errors) => {
                row.errors = errors;
                row.status = Status::DataException;
            }
        }
        row
    }

    fn record(&mut self, rows: &mut [OrderRow]) -> Result<(), String> {
        let Some(location) = &self.ctx.store else {
            return Ok(());
        };
        if self.store.is_none() {
            let sealer = self.ctx.keys.audit_sealer();
            self.store = Some(Store::open_at(location, sealer).map_err(|e| e.to_string())?);
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let reasons: Vec<Option<String>> = rows
            .iter()
            .map(|r| (!r.errors.is_empty()).then(|| join_findings(&r.errors)))
            .collect();
        let results: Vec<(&str, Option<&str>)> = rows
            .iter()
            .zip(&reasons)
            .map(|(r, reason)| (r.id.as_str(), reason.as_deref()))
            .collect();
        let states = store
            .record_preparation(&results)
            .map_err(|e| e.to_string())?;
        drop(results);
        for (row, state) in rows.iter_mut().zip(states) {
            row.status = state.status;
            row.reason = state.reason;
            row.approved = state.approved;
        }
        Ok(())
    }

    fn preview(
        &self,
        generation: u64,
        row: usize,
        model: Option<ChipModel>,
    ) -> Result<Box<Prepared>, Vec<Finding>> {
        let stale = || {
            vec![Finding::new(
                "order",
                "the order file was replaced; select again",
            )]
        };
        if generation != self.generation {
            return Err(stale());
        }
        let entry = self.entries.get(row).ok_or_else(stale)?;
        let order = entry.outcome.as_ref().map_err(Clone::clone)?;
        let product = self
            .ctx
            .catalog
            .get(&order.card_product_id)
            .ok_or_else(|| {
                vec![Finding::new(
                    "cardProductId",
                    format!("product {} is not in the catalog", order.card_product_id),
                )]
            })?;
        let choice = model.map_or(ModelChoice::StripeOnly, ModelChoice::Only);
        let inputs = PrepInputs {
            profiles: &self.ctx.profiles,
            date: crate::job::today(),
            keys: self.ctx.keys.port(),
            icc_keys: &self.pools,
            envelope: EnvelopeSettings::default(),
        };
        let data = prepare_card(order, product, choice, &inputs)?;
        let profile = data
            .chip
            .as_ref()
            .and_then(|c| self.ctx.profiles.get(&c.profile))
            .cloned();
        let mut warnings = entry.warnings.clone();
        warnings.extend(data.warnings.iter().cloned());
        tracing::debug!(order = %entry.id, model = ?model, "preview prepared");
        Ok(Box::new(Prepared {
            chip: ChipSection::of(&data, false),
            order: order.clone(),
            profile,
            data,
            warnings,
        }))
    }
}
