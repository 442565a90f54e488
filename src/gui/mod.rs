//! The desktop workstation (eframe): `persodesk` with no arguments.
//!
//! [`App`] is a plain struct: its state changes are methods (testable without a window), drawing
//! reads it, and the screens (one file each: [`orders`], [`preview`], [`devices`],
//! [`personalize`], [`log`]) return [`Command`]s that are applied at the end of the frame.
//! Preparation, device listing and personalization run on named worker threads that report
//! through channels and wake the UI; the UI thread never blocks on them or calls a device.
//!
//! It starts on embedded defaults (demo products and chip profiles, demo keys, demo orders) so it
//! runs from any directory, with the simulated encoder started in-process and the virtual card in
//! its in-process reader.

pub mod devices;
pub mod log;
pub mod orders;
pub mod personalize;
pub mod preview;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Duration;

use crate::domain::chip::{ChipProfile, ChipProfiles};
use crate::domain::chip_model::ChipModel;
use crate::domain::mode::Mode;
use crate::domain::product::{Catalog, Product};
use crate::domain::review::{self, OrderFacts, Role, Roles, Session};
use crate::domain::status::{self, Event, Status};
use crate::job::ChannelOverride;
use crate::keys::SoftwareKeyStore;
use crate::sim::encoder::{SimConfig, SimEncoder, SimFault};
use crate::store::{self, Store};

use devices::{
    CardFault, DeviceScan, DevicesState, EncoderChoice, ReaderChoice, VirtualReader, VirtualSlot,
    lock_reader,
};
use log::{LogBuffer, LogScreen};
use orders::Filter;
use personalize::{CardTarget, PersoJob, PersoState, PersoTarget};
use preview::PreviewState;
use worker::{OrderRow, OrderSource, PrepContext, PrepJob, PrepMsg, Waker};

/// The demo products, embedded.
const DEMO_PRODUCTS: [(&str, &str); 3] = [
    (
        "embedded:profiles/products/demo_mc_debit.toml",
        include_str!("../../profiles/products/demo_mc_debit.toml"),
    ),
    (
        "embedded:profiles/products/demo_visa_credit.toml",
        include_str!("../../profiles/products/demo_visa_credit.toml"),
    ),
    (
        "embedded:profiles/products/demo_visa_us.toml",
        include_str!("../../profiles/products/demo_visa_us.toml"),
    ),
];
/// The demo chip profiles (file stem, text), embedded.
const DEMO_CHIP_PROFILES: [(&str, &str); 3] = [
    (
        "mchip-advance-1.2.3",
        include_str!("../../profiles/chip/mchip-advance-1.2.3.toml"),
    ),
    (
        "vis-1.5.4-vcps-2.1.3",
        include_str!("../../profiles/chip/vis-1.5.4-vcps-2.1.3.toml"),
    ),
    (
        "vis-1.6.3-vcps-2.2.4",
        include_str!("../../profiles/chip/vis-1.6.3-vcps-2.2.4.toml"),
    ),
];
/// The demo key store (test keys only), embedded.
const DEMO_KEYS: &str = include_str!("../../assets/demo/keys.toml");

/// Settings keys in the store.
const SETTING_LAST_FILE: &str = "gui.last_file";
const SETTING_ENCODER: &str = "gui.encoder";
const SETTING_READER: &str = "gui.reader";

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Orders table and the preview of the selected order.
    Orders,
    /// Readers and encoders.
    Devices,
    /// The personalization in progress and its result.
    Personalize,
    /// Application events and the audit trail.
    Log,
}

impl Screen {
    const ALL: [Screen; 4] = [
        Screen::Orders,
        Screen::Devices,
        Screen::Personalize,
        Screen::Log,
    ];

    fn label(self) -> &'static str {
        match self {
            Screen::Orders => "Orders",
            Screen::Devices => "Devices",
            Screen::Personalize => "Personalize",
            Screen::Log => "Log",
        }
    }
}

/// An action asked for by the user, applied at the end of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start working in a role.
    SignIn(Role),
    /// Back to the role choice.
    SignOut,
    /// Show a screen.
    Show(Screen),
    /// Open the file dialog (on a thread).
    OpenFileDialog,
    /// Load the embedded demo orders.
    LoadDemo,
    /// Load an order file.
    LoadFile(PathBuf),
    /// The filter changed.
    FilterChanged,
    /// Select a row.
    Select(usize),
    /// Select the next (+1) or previous (-1) visible row.
    MoveSelection(i32),
    /// Choose the chip model of a row.
    SetModel(usize, ChipModel),
    /// Approve a row (supervisor).
    Approve(usize),
    /// Reject a row with a reason (supervisor).
    Reject(usize, String),
    /// Show or hide clear values (tester, test keys).
    Reveal(bool),
    /// Personalize a row.
    Personalize(usize),
    /// Cancel the running personalization.
    CancelPerso,
    /// Scan readers and ports again.
    RefreshDevices,
    /// Choose the encoder.
    SelectEncoder(EncoderChoice),
    /// Choose the chip reader.
    SelectReader(Option<ReaderChoice>),
    /// Put a fresh card in the virtual reader.
    InsertFreshCard,
    /// Make the next fresh virtual card fail (tester).
    SetCardFault(CardFault),
    /// Make the simulated encoder fail (tester).
    SetSimFault(SimFault),
    /// Read the audit trail again.
    RefreshAudit,
}

/// A keyboard shortcut and the command it gives.
struct Shortcut {
    shortcut: egui::KeyboardShortcut,
    label: &'static str,
}

const fn sc(modifiers: egui::Modifiers, key: egui::Key, label: &'static str) -> Shortcut {
    Shortcut {
        shortcut: egui::KeyboardShortcut::new(modifiers, key),
        label,
    }
}

const SHORTCUTS: [Shortcut; 6] = [
    sc(egui::Modifiers::COMMAND, egui::Key::O, "open file"),
    sc(egui::Modifiers::COMMAND, egui::Key::D, "demo orders"),
    sc(egui::Modifiers::COMMAND, egui::Key::P, "personalize"),
    sc(
        egui::Modifiers::COMMAND.plus(egui::Modifiers::SHIFT),
        egui::Key::A,
        "approve",
    ),
    sc(egui::Modifiers::NONE, egui::Key::Escape, "cancel"),
    sc(egui::Modifiers::NONE, egui::Key::F5, "refresh devices"),
];

/// A message in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The text (never sensitive).
    pub text: String,
    /// An error rather than information.
    pub error: bool,
}

/// A load in progress.
#[derive(Debug, Clone)]
pub struct Loading {
    /// Where from.
    pub source: OrderSource,
    /// Orders prepared of total, once known.
    pub progress: Option<(usize, usize)>,
}

/// How the app starts.
pub struct AppConfig {
    /// Products.
    pub catalog: Catalog,
    /// Chip profiles the products name.
    pub chip_profiles: ChipProfiles,
    /// Keys.
    pub keys: Arc<SoftwareKeyStore>,
    /// Keep a background pool of ICC key pairs for DDA/CDA profiles.
    pub key_pool: bool,
    /// Offer the in-process virtual card as a reader (with a fresh card in it).
    pub virtual_card: bool,
    /// The store database (None: statuses only in memory).
    pub store_path: Option<PathBuf>,
    /// Start the simulated encoder and choose it by default.
    pub start_sim_encoder: bool,
    /// The simulated encoder's settings.
    pub sim: SimConfig,
    /// Load the demo orders at start.
    pub load_demo: bool,
    /// Scan PC/SC readers and serial ports at start.
    pub scan_devices: bool,
    /// The user name for the audit trail.
    pub user: String,
    /// How long the operator has for each swipe.
    pub swipe_timeout: Duration,
    /// Test or production (production: no demo data, no simulators, no reveal).
    pub mode: Mode,
    /// Who may work in which role (the configuration's `[roles]`; production needs it).
    pub roles: Option<Roles>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("store_path", &self.store_path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The embedded demo catalog.
pub fn demo_catalog() -> Result<Catalog, String> {
    let products = DEMO_PRODUCTS
        .iter()
        .map(|(name, text)| Product::from_toml(name, text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Catalog::new(products).map_err(|e| e.to_string())
}

/// The embedded demo chip profiles.
pub fn demo_chip_profiles() -> Result<ChipProfiles, String> {
    let profiles = DEMO_CHIP_PROFILES
        .iter()
        .map(|(name, text)| {
            ChipProfile::from_toml(&format!("embedded:profiles/chip/{name}.toml"), name, text)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    ChipProfiles::new(profiles).map_err(|e| e.to_string())
}

/// The embedded demo key store (test keys only).
pub fn demo_keys() -> Result<SoftwareKeyStore, String> {
    SoftwareKeyStore::from_toml("embedded:assets/demo/keys.toml", DEMO_KEYS)
        .map_err(|e| e.to_string())
}

impl AppConfig {
    /// The embedded defaults: demo products, demo keys, demo orders, the simulated encoder, the
    /// store in the user's data directory.
    pub fn embedded() -> Result<AppConfig, String> {
        let store_path = store::data_dir()
            .map(|d| d.join(store::DB_FILE))
            .map_err(|e| tracing::warn!(error = %e, "no store"))
            .ok();
        Ok(AppConfig {
            catalog: demo_catalog()?,
            chip_profiles: demo_chip_profiles()?,
            keys: Arc::new(demo_keys()?),
            key_pool: true,
            virtual_card: true,
            store_path,
            start_sim_encoder: true,
            sim: SimConfig {
                swipe_delay: Duration::from_millis(400),
                ..SimConfig::default()
            },
            load_demo: true,
            scan_devices: true,
            user: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "user".into()),
            swipe_timeout: Duration::from_secs(30),
            mode: Mode::Test,
            roles: None,
        })
    }

    /// Production: the key store and profiles the machine's configuration names (no test key
    /// allowed), no demo orders, no simulated devices.
    pub fn production(config: &crate::config::Config) -> Result<AppConfig, String> {
        let keys_path = config
            .keys
            .as_deref()
            .ok_or("production mode: the configuration names no key store (keys = \"...\")")?;
        let profiles = config.profiles.as_deref().ok_or(
            "production mode: the configuration names no profiles directory (profiles = \"...\")",
        )?;
        let roles = config.roles.clone().ok_or(
            "production mode: the configuration names no roles ([roles] operator = [...])",
        )?;
        let keys = SoftwareKeyStore::load(keys_path).map_err(|e| e.to_string())?;
        Mode::Production
            .check_key_store(&keys.list())
            .map_err(|f| format!("{}: {f}", keys_path.display()))?;
        if let Some((key, rule)) = keys.production_findings().first() {
            return Err(format!(
                "{}: key {key}: {rule}: production refuses it",
                keys_path.display()
            ));
        }
        if keys.audit_sealer().is_none() {
            return Err(format!(
                "{}: production needs an audit key (usage audit) to seal the audit trail",
                keys_path.display()
            ));
        }
        let mut c = AppConfig::embedded()?;
        c.catalog = crate::catalog::load_products(profiles).map_err(|e| e.to_string())?;
        c.chip_profiles =
            crate::catalog::load_chip_profiles(profiles).map_err(|e| e.to_string())?;
        c.keys = Arc::new(keys);
        c.virtual_card = false;
        c.start_sim_encoder = false;
        c.load_demo = false;
        c.mode = Mode::Production;
        c.user = store::os_user();
        c.roles = Some(roles);
        Ok(c)
    }

    /// The configuration for this machine's mode ([`crate::config`]).
    pub fn for_machine() -> Result<AppConfig, String> {
        let config = crate::config::load()?;
        match config.mode {
            Mode::Test => AppConfig::embedded().map(|mut c| {
                c.roles = config.roles.clone();
                c
            }),
            Mode::Production => AppConfig::production(&config),
        }
    }
}

/// The whole application state.
pub struct App {
    /// Who is working (None: the role choice is shown).
    pub session: Option<Session>,
    /// The screen shown.
    pub screen: Screen,
    /// Every order of the current file.
    pub rows: Vec<OrderRow>,
    /// Where the rows came from.
    pub source: Option<OrderSource>,
    /// A load in progress.
    pub loading: Option<Loading>,
    /// The selected row.
    pub selected: Option<usize>,
    /// The table filter.
    pub filter: Filter,
    /// The preview of the selected row.
    pub preview: PreviewState,
    /// The personalization.
    pub perso: PersoState,
    /// Readers, encoders, the simulated encoder.
    pub devices: DevicesState,
    /// The Log screen.
    pub log_screen: LogScreen,
    /// Captured application events.
    pub logs: LogBuffer,
    /// The status bar message.
    pub notice: Option<Notice>,
    /// The last order file opened (remembered).
    pub last_file: Option<PathBuf>,
    /// Test or production.
    pub mode: Mode,
    user: String,
    roles: Option<Roles>,
    store: Option<Store>,
    visible: Vec<usize>,
    generation: u64,
    preview_generation: u64,
    swipe_timeout: Duration,
    prep_tx: Sender<PrepJob>,
    prep_rx: Receiver<PrepMsg>,
    dev_tx: Sender<()>,
    dev_rx: Receiver<DeviceScan>,
    file_rx: Option<Receiver<Option<PathBuf>>>,
    waker: Waker,
    keys: Arc<SoftwareKeyStore>,
    channel_override: ChannelOverride,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("session", &self.session)
            .field("screen", &self.screen)
            .field("rows", &self.rows.len())
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Starts the workers (and the simulated encoder) and, if asked, loads the demo orders.
    pub fn new(config: AppConfig, logs: LogBuffer) -> Result<App, String> {
        let waker = Waker::default();
        let mut notice = None;
        let sealer = config.keys.audit_sealer();
        if config.mode == Mode::Production && sealer.is_none() {
            return Err("production needs an audit key (usage audit) in the key store".into());
        }
        let store = match &config.store_path {
            Some(p) => match Store::open_keyed(p, sealer) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "statuses are kept in memory only");
                    notice = Some(Notice {
                        text: format!("{e}; statuses are kept in memory only"),
                        error: true,
                    });
                    None
                }
            },
            None => None,
        };
        let (prep_tx, prep_jobs) = channel();
        let (prep_out, prep_rx) = channel();
        let keys = Arc::clone(&config.keys);
        worker::spawn(
            PrepContext {
                catalog: config.catalog,
                profiles: config.chip_profiles,
                keys: config.keys,
                key_pool: config.key_pool,
                store_path: store.as_ref().map(|s| s.path().to_path_buf()),
            },
            prep_jobs,
            prep_out,
            waker.clone(),
        )
        .map_err(|e| format!("cannot start the preparation worker: {e}"))?;
        let (dev_tx, dev_requests) = channel();
        let (dev_out, dev_rx) = channel();
        devices::spawn(dev_requests, dev_out, waker.clone())
            .map_err(|e| format!("cannot start the devices worker: {e}"))?;

        let mut devs = DevicesState::default();
        if config.start_sim_encoder {
            match SimEncoder::start(config.sim) {
                Ok(sim) => devs.sim = Some(sim),
                Err(e) => devs.sim_error = Some(e.to_string()),
            }
        }
        let setting = |k| store.as_ref().and_then(|s| s.setting(k).ok().flatten());
        devs.encoder = setting(SETTING_ENCODER)
            .and_then(|s| EncoderChoice::from_setting(&s))
            .filter(|c| *c != EncoderChoice::Simulated || devs.sim.is_some())
            .or_else(|| devs.sim.is_some().then_some(EncoderChoice::Simulated));
        if config.virtual_card {
            devs.virtual_reader = Some(Arc::new(std::sync::Mutex::new(VirtualReader {
                slot: VirtualSlot::Fresh,
                fault: CardFault::None,
            })));
        }
        devs.reader = match setting(SETTING_READER) {
            Some(s) => ReaderChoice::from_setting(&s),
            None => config.virtual_card.then_some(ReaderChoice::Virtual),
        }
        .filter(|r| *r != ReaderChoice::Virtual || config.virtual_card);
        let last_file = setting(SETTING_LAST_FILE).map(PathBuf::from);

        let swipe_timeout = config.swipe_timeout;
        let mut app = App {
            session: None,
            screen: Screen::Orders,
            rows: Vec::new(),
            source: None,
            loading: None,
            selected: None,
            filter: Filter::default(),
            preview: PreviewState::default(),
            perso: PersoState::default(),
            devices: devs,
            log_screen: LogScreen::default(),
            logs,
            notice,
            last_file,
            mode: config.mode,
            user: config.user,
            roles: config.roles,
            store,
            visible: Vec::new(),
            generation: 0,
            preview_generation: 0,
            swipe_timeout,
            prep_tx,
            prep_rx,
            dev_tx,
            dev_rx,
            file_rx: None,
            waker,
            keys,
            channel_override: ChannelOverride::default(),
        };
        if config.scan_devices {
            app.refresh_devices();
        }
        if config.load_demo {
            app.load(OrderSource::Demo);
        }
        tracing::info!("workstation started");
        Ok(app)
    }

    /// Overrides the chip profile's secure channel for the next personalizations (testers only,
    /// as `--scp` / `--kmc-index` on the command line); the default clears the override.
    pub fn set_channel_override(&mut self, overrides: ChannelOverride) -> Result<(), String> {
        let who = self.session()?;
        overrides.allowed_for(who.role)?;
        self.channel_override = overrides;
        Ok(())
    }

    /// The secure channel override in force.
    pub fn channel_override(&self) -> ChannelOverride {
        self.channel_override
    }

    /// The swipe timeout given to the encoder.
    pub fn swipe_timeout(&self) -> Duration {
        self.swipe_timeout
    }

    /// The store, if open.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Indices of the rows the filter lets through.
    pub fn visible_rows(&self) -> &[usize] {
        &self.visible
    }

    /// The selected row.
    pub fn selected_row(&self) -> Option<(usize, &OrderRow)> {
        let i = self.selected?;
        self.rows.get(i).map(|r| (i, r))
    }

    /// The row with this order id.
    pub fn row_by_id(&self, id: &str) -> Option<(usize, &OrderRow)> {
        self.rows.iter().enumerate().find(|(_, r)| r.id == id)
    }

    /// Something is under way (a load, a preview, a personalization, a scan, a dialog).
    pub fn busy(&self) -> bool {
        self.loading.is_some()
            || self.preview.pending
            || self.perso.is_running()
            || self.devices.scanning
            || self.file_rx.is_some()
    }

    fn info(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::warn!(message = %text, "refused or failed");
        self.notice = Some(Notice { text, error: true });
    }

    fn remember(&mut self, key: &str, value: &str) {
        if let Some(s) = &self.store
            && let Err(e) = s.set_setting(key, value)
        {
            tracing::warn!(error = %e, "setting not saved");
        }
    }

    // ---- state changes -------------------------------------------------------------------

    /// Starts working in `role`.
    pub fn sign_in(&mut self, role: Role) {
        // The same rules as the command line: the account and the configured roles.
        let session =
            match review::session_for(self.mode, &self.user, None, role, self.roles.as_ref()) {
                Ok(s) => s,
                Err(rule) => {
                    self.error(rule);
                    return;
                }
            };
        if let Some(store) = self.store.as_mut() {
            match store.recover_interrupted(&session) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(orders = n, "interrupted personalizations marked failed"),
                Err(e) => tracing::warn!(error = %e, "could not check interrupted runs"),
            }
            let _ = store.audit(&session, "sign-in", None, "ok");
        }
        tracing::info!(user = %session.user, role = %role, "signed in");
        self.session = Some(session);
        self.preview.revealed = false;
        self.info(format!("Working as {role}"));
    }

    /// Back to the role choice.
    pub fn sign_out(&mut self) {
        self.session = None;
        self.preview.revealed = false;
    }

    /// Loads orders in the background.
    pub fn load(&mut self, source: OrderSource) {
        self.generation += 1;
        self.loading = Some(Loading {
            source: source.clone(),
            progress: None,
        });
        if self
            .prep_tx
            .send(PrepJob::Load {
                generation: self.generation,
                source,
            })
            .is_err()
        {
            self.loading = None;
            self.error("the preparation worker stopped; restart the application");
        }
    }

    /// Opens the file dialog on a thread; the chosen file is loaded when it returns.
    pub fn open_file_dialog(&mut self) {
        if self.file_rx.is_some() {
            return;
        }
        let (tx, rx) = channel();
        let waker = self.waker.clone();
        let start = self
            .last_file
            .as_ref()
            .and_then(|p| p.parent())
            .map(PathBuf::from);
        let spawned = std::thread::Builder::new()
            .name("persodesk-file-dialog".into())
            .spawn(move || {
                let mut d = rfd::FileDialog::new()
                    .set_title("Open an order file")
                    .add_filter("orders", &["json", "jsonl", "ndjson"]);
                if let Some(dir) = start {
                    d = d.set_directory(dir);
                }
                let _ = tx.send(d.pick_file());
                waker.wake();
            });
        match spawned {
            Ok(_) => self.file_rx = Some(rx),
            Err(e) => self.error(format!("cannot open the file dialog: {e}")),
        }
    }

    /// Changes the filter text or status and recomputes the visible rows.
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.refilter();
    }

    fn refilter(&mut self) {
        self.visible = self.filter.apply(&self.rows);
    }

    /// Selects a row and prepares its preview in the background.
    pub fn select(&mut self, row: usize) {
        if row >= self.rows.len() {
            return;
        }
        if self.selected != Some(row) {
            self.preview = PreviewState::default();
        }
        self.selected = Some(row);
        self.request_preview();
    }

    fn move_selection(&mut self, delta: i32) {
        if self.visible.is_empty() {
            return;
        }
        let pos = self
            .selected
            .and_then(|s| self.visible.iter().position(|&v| v == s));
        let next = match pos {
            None => 0,
            Some(p) if delta < 0 => p.saturating_sub(1),
            Some(p) => (p + 1).min(self.visible.len() - 1),
        };
        if let Some(&row) = self.visible.get(next) {
            self.select(row);
        }
    }

    fn request_preview(&mut self) {
        let Some((row, r)) = self.selected_row() else {
            return;
        };
        let model = r.model;
        self.preview.row = Some(row);
        self.preview.pending = true;
        self.preview.revealed = false;
        self.preview.revealed_chip = None;
        self.preview_generation = self.generation;
        let _ = self.prep_tx.send(PrepJob::Preview {
            generation: self.generation,
            row,
            model,
        });
    }

    /// Chooses the chip model of a row (only one the order and product allow).
    pub fn set_model(&mut self, row: usize, model: ChipModel) -> Result<(), String> {
        let r = self
            .rows
            .get_mut(row)
            .ok_or_else(|| "no such order".to_string())?;
        if !r.allowed.allows(model) {
            return Err(format!("order {}: {model} is not allowed for it", r.id));
        }
        let before = r.model.replace(model);
        // The approval covered the data of the other model: withdrawn, audited.
        if before != Some(model) && r.status == Status::Ready {
            let reason = format!(
                "chip model changed from {} to {model}: the new data needs a new review",
                before.map_or_else(|| "none".to_string(), |m| m.to_string())
            );
            let who = self.session().unwrap_or_else(|_| Session {
                user: self.user.clone(),
                role: Role::Operator,
            });
            self.transition(row, &Event::ApprovalWithdrawn { reason }, &who)?;
        }
        if self.selected == Some(row) {
            self.request_preview();
        }
        Ok(())
    }

    fn facts(&self, row: usize) -> Result<(OrderFacts, String), String> {
        let r = self
            .rows
            .get(row)
            .ok_or_else(|| "no such order".to_string())?;
        Ok((
            OrderFacts {
                status: r.status,
                approved: r.approved,
                test_keys_only: r.test_keys_only,
            },
            r.id.clone(),
        ))
    }

    fn session(&self) -> Result<Session, String> {
        self.session
            .clone()
            .ok_or_else(|| "choose a role first".to_string())
    }

    /// Applies an event to a row through the store (or in memory without one).
    fn transition(&mut self, row: usize, event: &Event, who: &Session) -> Result<(), String> {
        let r = self
            .rows
            .get(row)
            .ok_or_else(|| "no such order".to_string())?;
        let id = r.id.clone();
        let (to, reason, approved) = match self.store.as_mut() {
            Some(store) => {
                let st = store.apply(&id, event, who).map_err(|e| e.to_string())?;
                (st.status, st.reason, st.approved)
            }
            None => {
                let to = status::next(r.status, event).map_err(|e| format!("order {id}: {e}"))?;
                let approved = match event {
                    Event::Approved => true,
                    Event::Rejected { .. } => false,
                    _ => r.approved,
                };
                (to, event.reason().map(str::to_string), approved)
            }
        };
        if let Some(r) = self.rows.get_mut(row) {
            r.status = to;
            r.reason = reason;
            r.approved = approved;
        }
        tracing::info!(order = %id, event = event.name(), status = %to, user = %who.user, "order status");
        self.refilter();
        Ok(())
    }

    fn refuse(&mut self, row: usize, action: &str, d: &review::Denied) -> String {
        if let (Some(store), Some(session), Some(r)) =
            (&self.store, &self.session, self.rows.get(row))
        {
            let _ = store.audit(
                session,
                action,
                Some(&r.id),
                &format!("refused: {}", d.rule),
            );
        }
        d.to_string()
    }

    /// Approves a row's data (supervisor).
    pub fn approve(&mut self, row: usize) -> Result<(), String> {
        let who = self.session()?;
        let (facts, id) = self.facts(row)?;
        if let Err(d) = review::may_review(who.role, facts) {
            return Err(self.refuse(row, "approve", &d));
        }
        if self.store.is_some() {
            // The approval records what was reviewed: the previewed data of this row.
            let data = match &self.preview.prepared {
                Some(p) if self.preview.row == Some(row) && !self.preview.pending => &p.data,
                _ => return Err(format!("order {id}: its preview is not ready yet")),
            };
            let approved = self.store.as_mut().map(|store| {
                let evidence = crate::job::evidence(store, data);
                store.approve(&id, &who, &evidence)
            });
            if let Some(result) = approved {
                let st = result.map_err(|e| e.to_string())?;
                if let Some(r) = self.rows.get_mut(row) {
                    r.status = st.status;
                    r.reason = st.reason;
                    r.approved = st.approved;
                }
                self.refilter();
            }
        } else {
            self.transition(row, &Event::Approved, &who)?;
        }
        self.info(format!("Order {id} approved"));
        Ok(())
    }

    /// Rejects a row's data with a reason (supervisor).
    pub fn reject(&mut self, row: usize, reason: &str) -> Result<(), String> {
        let who = self.session()?;
        let (facts, id) = self.facts(row)?;
        if let Err(d) = review::may_review(who.role, facts) {
            return Err(self.refuse(row, "reject", &d));
        }
        if reason.trim().is_empty() {
            return Err("a rejection needs a reason".into());
        }
        let event = Event::Rejected {
            reason: format!("rejected by {}: {}", who.user, reason.trim()),
        };
        self.transition(row, &event, &who)?;
        self.preview.reject_reason.clear();
        self.info(format!("Order {id} rejected"));
        Ok(())
    }

    /// Shows or hides clear values of the previewed order (tester, test keys only).
    pub fn set_reveal(&mut self, on: bool) -> Result<(), String> {
        if !on {
            self.preview.revealed = false;
            self.preview.revealed_chip = None;
            return Ok(());
        }
        let who = self.session()?;
        let row = self
            .selected
            .ok_or_else(|| "select an order first".to_string())?;
        let prepared = self
            .preview
            .prepared
            .as_ref()
            .ok_or_else(|| "the preview is not ready".to_string())?;
        let test_only = prepared.data.non_test_keys().is_empty() && self.mode.allows_reveal();
        if let Err(d) = review::may_reveal(who.role, test_only) {
            return Err(self.refuse(row, "reveal", &d));
        }
        if let (Some(store), Some(r)) = (&self.store, self.rows.get(row)) {
            let _ = store.audit(&who, "reveal", Some(&r.id), "ok (test keys)");
        }
        self.preview.revealed_chip = Some(preview::ChipSection::of(&prepared.data, true));
        self.preview.revealed = true;
        Ok(())
    }

    /// Starts personalizing a row on the worker (its preview must be ready): the role rules
    /// against the store ([`crate::job::authorize_in`]), then [`crate::job::run_cancellable`] on
    /// the worker; [`poll`](Self::poll) records the outcome ([`crate::job::record`]).
    pub fn personalize(&mut self, row: usize) -> Result<(), String> {
        let who = self.session()?;
        if self.perso.is_running() {
            return Err("a personalization is already running".into());
        }
        let id = self
            .rows
            .get(row)
            .map(|r| r.id.clone())
            .ok_or_else(|| "no such order".to_string())?;
        let (data, order, profile) = match &self.preview.prepared {
            Some(p) if self.preview.row == Some(row) && !self.preview.pending => {
                (p.data.clone(), p.order.clone(), p.profile.clone())
            }
            _ => return Err(format!("order {id}: its preview is not ready yet")),
        };
        self.channel_override
            .allowed_for(who.role)
            .map_err(|e| format!("order {id}: {e}"))?;
        let target = PersoTarget {
            encoder_port: self.devices.encoder_port(),
            swipe_timeout: self.swipe_timeout,
            card: CardTarget::of(
                self.devices.reader.as_ref(),
                self.devices.virtual_reader.as_ref(),
            ),
        };
        // The command line's input rules: a reader for chip data, something to personalize.
        if data.chip.is_some() && matches!(target.card, CardTarget::None) {
            return Err(format!(
                "order {id} has chip data: choose a reader (or the virtual card) on the Devices screen"
            ));
        }
        if data.chip.is_none() && target.encoder_port.is_none() {
            return Err(format!(
                "order {id}: nothing to personalize: no chip data and no encoder chosen"
            ));
        }
        let mode = self.mode;
        let Some(store) = self.store.as_mut() else {
            return Err(
                "personalization needs the workstation store (statuses are in memory only)".into(),
            );
        };
        let authorized = crate::job::authorize_in(store, &who, &id, &data, mode);
        self.sync_row(row);
        authorized.map_err(|f| f.message)?;
        let job = PersoJob {
            channel: profile.as_ref().map(|p| self.channel_override.apply(p)),
            data,
            order,
            profile,
            keys: Arc::clone(&self.keys),
        };
        if let Err(e) = self
            .perso
            .start(row, who.clone(), job, target, self.waker.clone())
        {
            let report = crate::job::JobReport {
                failure: Some(crate::job::StepFailure::new(
                    crate::job::Step::Connect,
                    format!("cannot start the personalization worker: {e}"),
                    crate::job::FailureKind::DeviceUnavailable,
                )),
                ..Default::default()
            };
            let _ = self.record_run(row, &id, &who, &report);
            return Err(format!("cannot start the personalization worker: {e}"));
        }
        self.screen = Screen::Personalize;
        self.info(format!("Personalizing order {id}"));
        Ok(())
    }

    /// Reads a row's status, reason and approval back from the store.
    fn sync_row(&mut self, row: usize) {
        let Some(r) = self.rows.get(row) else {
            return;
        };
        let state = self
            .store
            .as_ref()
            .and_then(|s| s.state(&r.id).ok().flatten());
        if let (Some(st), Some(r)) = (state, self.rows.get_mut(row)) {
            r.status = st.status;
            r.reason = st.reason;
            r.approved = st.approved;
        }
        self.refilter();
    }

    /// Records a run's outcome through the job, in the name of who ran it.
    fn record_run(
        &mut self,
        row: usize,
        id: &str,
        who: &Session,
        report: &crate::job::JobReport,
    ) -> Result<(), String> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| "the workstation store is gone".to_string())?;
        let recorded = crate::job::record(store, who, id, report);
        self.sync_row(row);
        let state = recorded.map_err(|e| {
            format!("order {id}: the outcome could not be recorded ({e}); check the card")
        })?;
        tracing::info!(order = %id, status = %state.status, user = %who.user, "outcome stored");
        Ok(())
    }

    /// Cancels the running personalization.
    pub fn cancel_personalization(&mut self) {
        self.perso.cancel();
    }

    /// Scans readers and ports in the background.
    pub fn refresh_devices(&mut self) {
        self.devices.scanning = self.dev_tx.send(()).is_ok();
    }

    /// Chooses the encoder (remembered).
    pub fn select_encoder(&mut self, choice: EncoderChoice) {
        self.remember(SETTING_ENCODER, &choice.to_setting());
        self.devices.encoder = Some(choice);
    }

    /// Chooses the chip reader (remembered).
    pub fn select_reader(&mut self, reader: Option<ReaderChoice>) {
        self.remember(
            SETTING_READER,
            &reader
                .as_ref()
                .map(ReaderChoice::to_setting)
                .unwrap_or_default(),
        );
        self.devices.reader = reader;
    }

    /// Puts a fresh (blank) card in the virtual reader, made for the chip profile of the order
    /// personalized on it; the card that was there is discarded.
    pub fn insert_fresh_card(&mut self) -> Result<(), String> {
        let vr = self
            .devices
            .virtual_reader
            .as_ref()
            .ok_or_else(|| "the virtual card is not offered in this session".to_string())?;
        let mut r = lock_reader(vr);
        if matches!(r.slot, VirtualSlot::InUse) {
            return Err("the virtual card is in use by a personalization".into());
        }
        r.slot = VirtualSlot::Fresh;
        drop(r);
        if let (Some(store), Some(session)) = (&self.store, &self.session) {
            let _ = store.audit(session, "insert-card", None, "virtual card: fresh card");
        }
        self.info("A fresh card is in the virtual reader");
        Ok(())
    }

    /// Makes the next fresh virtual card fail (tester only).
    pub fn set_card_fault(&mut self, fault: CardFault) -> Result<(), String> {
        let who = self.session()?;
        if who.role != Role::Tester {
            return Err("only testers change the virtual card".into());
        }
        let vr = self
            .devices
            .virtual_reader
            .as_ref()
            .ok_or_else(|| "the virtual card is not offered in this session".to_string())?;
        lock_reader(vr).fault = fault;
        Ok(())
    }

    /// Tells the simulated encoder to fail (tester only).
    pub fn set_sim_fault(&mut self, fault: SimFault) -> Result<(), String> {
        let who = self.session()?;
        if who.role != Role::Tester {
            return Err("only testers change the simulated encoder".into());
        }
        let sim = self
            .devices
            .sim
            .as_ref()
            .ok_or_else(|| "the simulated encoder is not running".to_string())?;
        sim.set_fault(fault);
        self.devices.sim_fault = fault;
        Ok(())
    }

    /// Reads the audit trail for the Log screen.
    pub fn refresh_audit(&mut self) {
        if let Some(store) = &self.store {
            match store.audit_trail(500) {
                Ok(a) => self.log_screen.audit = a,
                Err(e) => self.error(e.to_string()),
            }
        }
    }

    /// Applies one command.
    pub fn apply(&mut self, cmd: Command) {
        let result = match cmd {
            Command::SignIn(role) => {
                self.sign_in(role);
                Ok(())
            }
            Command::SignOut => {
                self.sign_out();
                Ok(())
            }
            Command::Show(screen) => {
                self.screen = screen;
                if screen == Screen::Log {
                    self.refresh_audit();
                }
                Ok(())
            }
            Command::OpenFileDialog => {
                self.open_file_dialog();
                Ok(())
            }
            Command::LoadDemo => {
                self.load(OrderSource::Demo);
                Ok(())
            }
            Command::LoadFile(p) => {
                self.load(OrderSource::File(p));
                Ok(())
            }
            Command::FilterChanged => {
                self.refilter();
                Ok(())
            }
            Command::Select(i) => {
                self.select(i);
                Ok(())
            }
            Command::MoveSelection(d) => {
                self.move_selection(d);
                Ok(())
            }
            Command::SetModel(i, m) => self.set_model(i, m),
            Command::Approve(i) => self.approve(i),
            Command::Reject(i, reason) => self.reject(i, &reason),
            Command::Reveal(on) => self.set_reveal(on),
            Command::Personalize(i) => self.personalize(i),
            Command::CancelPerso => {
                self.cancel_personalization();
                Ok(())
            }
            Command::RefreshDevices => {
                self.refresh_devices();
                Ok(())
            }
            Command::SelectEncoder(c) => {
                self.select_encoder(c);
                Ok(())
            }
            Command::SelectReader(r) => {
                self.select_reader(r);
                Ok(())
            }
            Command::SetSimFault(f) => self.set_sim_fault(f),
            Command::InsertFreshCard => self.insert_fresh_card(),
            Command::SetCardFault(f) => self.set_card_fault(f),
            Command::RefreshAudit => {
                self.refresh_audit();
                Ok(())
            }
        };
        if let Err(e) = result {
            self.error(e);
        }
    }

    /// Reads every worker's news. Called each frame; tests may call it directly.
    pub fn poll(&mut self) {
        loop {
            match self.prep_rx.try_recv() {
                Ok(msg) => self.on_prep(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.loading.take().is_some() || self.preview.pending {
                        self.preview.pending = false;
                        self.error("the preparation worker stopped; restart the application");
                    }
                    break;
                }
            }
        }
        while let Ok(scan) = self.dev_rx.try_recv() {
            self.devices.scanning = false;
            self.devices.scan = Some(scan);
        }
        if let Some(rx) = &self.file_rx {
            match rx.try_recv() {
                Ok(choice) => {
                    self.file_rx = None;
                    if let Some(path) = choice {
                        self.load(OrderSource::File(path));
                    }
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.file_rx = None,
            }
        }
        if let Some(ended) = self.perso.poll() {
            let recorded = self.record_run(ended.row, &ended.order_id, &ended.who, &ended.report);
            self.perso.show(&ended.order_id, &ended.report);
            let id = &ended.order_id;
            let outcome = match (&recorded, &ended.report.failure) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), None) => Ok(match &self.perso.last {
                    Some(personalize::Finished { result: Ok(r), .. }) => {
                        format!("Order {id}: CARD_PROD_DONE ({})", r.summary)
                    }
                    _ => format!("Order {id}: CARD_PROD_DONE"),
                }),
                (Ok(()), Some(f)) => Err(format!(
                    "Order {id}: failed at {}: {}",
                    f.step.label(),
                    f.message
                )),
            };
            match outcome {
                Ok(text) => self.info(text),
                Err(text) => self.error(text),
            }
        }
    }

    fn on_prep(&mut self, msg: PrepMsg) {
        match msg {
            PrepMsg::Progress {
                generation,
                done,
                total,
            } if generation == self.generation => {
                if let Some(l) = &mut self.loading {
                    l.progress = Some((done, total));
                }
            }
            PrepMsg::Loaded {
                generation,
                source,
                rows,
                store_error,
            } if generation == self.generation => {
                self.loading = None;
                let n = rows.len();
                let exceptions = rows.iter().filter(|r| !r.errors.is_empty()).count();
                self.rows = rows;
                self.selected = None;
                self.preview = PreviewState::default();
                self.refilter();
                if let OrderSource::File(p) = &source {
                    self.remember(SETTING_LAST_FILE, &p.display().to_string());
                    self.last_file = Some(p.clone());
                }
                if let (Some(store), Some(session)) = (&self.store, &self.session) {
                    let _ = store.audit(
                        session,
                        "load",
                        None,
                        &format!("{}: {n} orders, {exceptions} with errors", source.label()),
                    );
                }
                self.source = Some(source);
                match store_error {
                    Some(e) => self.error(format!("statuses not saved: {e}")),
                    None => self.info(format!("{n} orders loaded, {exceptions} with errors")),
                }
            }
            PrepMsg::LoadFailed {
                generation,
                source: _,
                error,
            } if generation == self.generation => {
                self.loading = None;
                self.error(error);
            }
            PrepMsg::Preview {
                generation,
                row,
                model,
                result,
            } if generation == self.preview_generation
                && self.preview.row == Some(row)
                && self.rows.get(row).is_some_and(|r| r.model == model) =>
            {
                self.preview.pending = false;
                match result {
                    Ok(p) => {
                        self.preview.prepared = Some(p);
                        self.preview.errors.clear();
                    }
                    Err(errors) => {
                        self.preview.prepared = None;
                        self.preview.errors = errors;
                    }
                }
            }
            _ => {}
        }
    }

    // ---- drawing ---------------------------------------------------------------------------

    fn shortcuts(&self, ctx: &egui::Context, cmds: &mut Vec<Command>) {
        let no_focus = ctx.memory(|m| m.focused().is_none());
        ctx.input_mut(|i| {
            for s in &SHORTCUTS {
                if !i.consume_shortcut(&s.shortcut) {
                    continue;
                }
                match s.label {
                    "open file" => cmds.push(Command::OpenFileDialog),
                    "demo orders" => cmds.push(Command::LoadDemo),
                    "personalize" => {
                        if let Some(r) = self.selected {
                            cmds.push(Command::Personalize(r));
                        }
                    }
                    "approve" => {
                        if let Some(r) = self.selected {
                            cmds.push(Command::Approve(r));
                        }
                    }
                    "cancel" => cmds.push(Command::CancelPerso),
                    "refresh devices" => cmds.push(Command::RefreshDevices),
                    _ => {}
                }
            }
            if no_focus && self.screen == Screen::Orders {
                if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowDown) {
                    cmds.push(Command::MoveSelection(1));
                }
                if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowUp) {
                    cmds.push(Command::MoveSelection(-1));
                }
            }
            for f in &i.raw.dropped_files {
                let p = f.path();
                if !p.as_os_str().is_empty() {
                    cmds.push(Command::LoadFile(p.to_path_buf()));
                }
            }
        });
    }

    fn role_choice(ui: &mut egui::Ui, user: &str, cmds: &mut Vec<Command>) {
        ui.vertical_centered(|ui| {
            ui.add_space(80.0);
            ui.heading("persodesk");
            ui.label("Card personalization workstation");
            ui.add_space(24.0);
            ui.label(format!("Signed in as {user}. Choose your role:"));
            ui.add_space(12.0);
            for (role, what) in [
                (Role::Operator, "personalizes approved orders"),
                (
                    Role::Supervisor,
                    "reviews masked previews, approves or rejects",
                ),
                (
                    Role::Tester,
                    "test keys and simulated devices, without approval",
                ),
            ] {
                let b =
                    egui::Button::new(format!("Work as {role}")).min_size(egui::vec2(260.0, 32.0));
                if ui.add(b).on_hover_text(what).clicked() {
                    cmds.push(Command::SignIn(role));
                }
                ui.label(what);
                ui.add_space(8.0);
            }
        });
    }

    /// Draws one frame and applies the commands it produced.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.waker.set(&ctx);
        self.poll();
        let mut cmds = Vec::new();
        if self.session.is_some() {
            self.shortcuts(&ctx, &mut cmds);
        }

        egui::Panel::top("top-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong("persodesk");
                match self.mode {
                    Mode::Production => {
                        ui.colored_label(ui.visuals().warn_fg_color, "PRODUCTION")
                            .on_hover_text("live keys and orders; no demo data, no reveal");
                    }
                    Mode::Test => {
                        ui.label("TEST MODE")
                            .on_hover_text("demo orders, test keys and simulated devices allowed");
                    }
                }
                ui.separator();
                if self.session.is_some() {
                    for s in Screen::ALL {
                        if ui.selectable_label(self.screen == s, s.label()).clicked() {
                            cmds.push(Command::Show(s));
                        }
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if let Some(s) = &self.session {
                        if ui.button("Switch role").clicked() {
                            cmds.push(Command::SignOut);
                        }
                        ui.label(format!("{} ({})", s.user, s.role));
                    }
                });
            });
        });
        egui::Panel::bottom("status-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                match &self.notice {
                    Some(n) if n.error => {
                        ui.colored_label(ui.visuals().error_fg_color, &n.text);
                    }
                    Some(n) => {
                        ui.label(&n.text);
                    }
                    None => {
                        ui.label("Ready");
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let encoder = match &self.devices.encoder {
                        Some(EncoderChoice::Simulated) => "encoder: simulated".to_string(),
                        Some(EncoderChoice::Port(p)) => format!("encoder: {p}"),
                        _ => "encoder: none".to_string(),
                    };
                    ui.label(encoder);
                    ui.separator();
                    ui.label(match &self.store {
                        Some(s) => format!("store: {}", s.path().display()),
                        None => "store: memory only".into(),
                    });
                });
            });
        });

        match (&self.session, self.screen) {
            (None, _) => {
                let user = self.user.clone();
                egui::CentralPanel::default()
                    .show(ui, |ui| Self::role_choice(ui, &user, &mut cmds));
            }
            (Some(_), Screen::Orders) => {
                let mut preview = std::mem::take(&mut self.preview);
                egui::Panel::right("preview")
                    .resizable(true)
                    .default_size(620.0)
                    .min_size(380.0)
                    .max_size(780.0)
                    .show(ui, |ui| {
                        ui.set_min_width(600.0);
                        egui::ScrollArea::both()
                            .id_salt("preview-scroll")
                            .show(ui, |ui| preview::ui(self, &mut preview, ui, &mut cmds));
                    });
                self.preview = preview;
                let mut filter = self.filter.clone();
                egui::CentralPanel::default()
                    .show(ui, |ui| orders::ui(self, &mut filter, ui, &mut cmds));
                self.filter = filter;
            }
            (Some(s), Screen::Devices) => {
                let role = Some(s.role);
                egui::CentralPanel::default().show(ui, |ui| self.devices.ui(ui, role, &mut cmds));
            }
            (Some(_), Screen::Personalize) => {
                egui::CentralPanel::default().show(ui, |ui| self.perso.ui(ui, &mut cmds));
            }
            (Some(_), Screen::Log) => {
                let logs = self.logs.clone();
                egui::CentralPanel::default()
                    .show(ui, |ui| self.log_screen.ui(ui, &logs, &mut cmds));
            }
        }

        for cmd in cmds {
            self.apply(cmd);
        }
        if self.busy() {
            ctx.request_repaint_after(Duration::from_millis(200));
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }
}

fn init_tracing(logs: &LogBuffer) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let captured = logs.layer().with_filter(
        tracing_subscriber::filter::Targets::new().with_target("persodesk", tracing::Level::DEBUG),
    );
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(captured)
        .try_init();
}

fn style(ctx: &egui::Context) {
    use egui::{FontId, TextStyle};
    ctx.all_styles_mut(|s| {
        s.text_styles
            .insert(TextStyle::Body, FontId::proportional(15.0));
        s.text_styles
            .insert(TextStyle::Button, FontId::proportional(15.0));
        s.text_styles
            .insert(TextStyle::Monospace, FontId::monospace(14.0));
        s.text_styles
            .insert(TextStyle::Heading, FontId::proportional(20.0));
    });
}

/// Opens the window on the embedded defaults. Returns the process exit code.
pub fn run() -> ExitCode {
    let logs = LogBuffer::default();
    init_tracing(&logs);
    let config = match AppConfig::for_machine() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("persodesk")
            .with_inner_size([1360.0, 820.0])
            .with_min_inner_size([960.0, 600.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let result = eframe::run_native(
        "persodesk",
        options,
        Box::new(move |cc| {
            style(&cc.egui_ctx);
            let app = App::new(config, logs)?;
            Ok(Box::new(app))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot open the window: {e}");
            ExitCode::from(2)
        }
    }
}
