//! How the window starts: the embedded demo assets (products, chip profiles, key store), the
//! [`AppConfig`] (embedded defaults, production from the machine's configuration) and
//! [`App::new`], which builds the app from it (store, workers, simulated devices).

use super::*;
use crate::domain::mask::debug_fields;
use crate::keys::SoftwareKeyStore;
use crate::store::{Sealer, StoreLocation};

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
pub(super) const SETTING_LAST_FILE: &str = "gui.last_file";
pub(super) const SETTING_ENCODER: &str = "gui.encoder";
pub(super) const SETTING_READER: &str = "gui.reader";

/// How long revealed clear values stay on screen unless configured otherwise.
pub const DEFAULT_REVEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the app starts.
pub struct AppConfig {
    /// Products.
    pub catalog: Catalog,
    /// Chip profiles the products name.
    pub chip_profiles: ChipProfiles,
    /// Keys.
    pub keys: Arc<LoadedKeys>,
    /// Keep a background pool of ICC key pairs for DDA/CDA profiles.
    pub key_pool: bool,
    /// Offer the in-process virtual card as a reader (with a fresh card in it).
    pub virtual_card: bool,
    /// The keys the virtual card's fresh cards hold (the card side: their card keys come from
    /// this store's test KMC, as a real card holds its own), independent of `keys` (the host
    /// side). `None`: `keys`, which must then be a software store; with `keys` on a PKCS#11
    /// token, give the virtual card the demo software key file here (docs/workstation.md).
    pub virtual_card_keys: Option<Arc<LoadedKeys>>,
    /// The store database (None: statuses only in memory).
    pub store: Option<StoreLocation>,
    /// How often a shared store's statuses are read for the live view.
    pub live_every: Duration,
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
    /// How long a tester's revealed clear values stay on screen (default 60 s).
    pub reveal_timeout: Duration,
    /// An order file to open at start (`persodesk FILE`), instead of the demo orders.
    pub open: Option<PathBuf>,
    /// Test or production (production: no demo data, no simulators, no reveal).
    pub mode: Mode,
    /// Who may work in which role (the configuration's `[roles]`; production needs it).
    pub roles: Option<Roles>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "AppConfig",
            &[("store", &self.store), ("user", &self.user)],
        )
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
pub fn demo_keys() -> Result<LoadedKeys, String> {
    SoftwareKeyStore::from_toml("embedded:assets/demo/keys.toml", DEMO_KEYS)
        .map(LoadedKeys::Software)
        .map_err(|e| e.to_string())
}

/// Production's store: the configuration's `store`, else the data directory's SQLite file; the
/// environment variable is refused there, as on the command line.
fn production_store(config: &crate::config::Config) -> Result<StoreLocation, String> {
    if std::env::var_os(store::STORE_ENV).is_some_and(|v| !v.is_empty()) {
        return Err(format!(
            "${} is refused in production: the store comes from the machine configuration",
            store::STORE_ENV
        ));
    }
    let location = match config.store.as_deref() {
        Some(text) => StoreLocation::parse(text),
        None => StoreLocation::resolve(None, None),
    };
    location.map_err(|e| format!("production mode: store: {e}"))
}

impl AppConfig {
    /// The embedded defaults: demo products, demo keys, demo orders, the simulated encoder, the
    /// store in the user's data directory.
    pub fn embedded() -> Result<AppConfig, String> {
        // `$PERSODESK_STORE` (a shared PostgreSQL store) or the data directory's SQLite file.
        let store = StoreLocation::resolve(None, None)
            .map_err(|e| tracing::warn!(error = %e, "no store"))
            .ok();
        Ok(AppConfig {
            catalog: demo_catalog()?,
            chip_profiles: demo_chip_profiles()?,
            keys: Arc::new(demo_keys()?),
            key_pool: true,
            virtual_card: true,
            virtual_card_keys: None,
            store,
            live_every: super::live::LIVE_EVERY,
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
            reveal_timeout: DEFAULT_REVEAL_TIMEOUT,
            open: None,
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
        let keys = crate::keys::load(keys_path).map_err(|e| e.to_string())?;
        keys.check_mode(Mode::Production)?;
        let mut c = AppConfig::embedded()?;
        c.catalog = crate::catalog::load_products(profiles).map_err(|e| e.to_string())?;
        c.chip_profiles =
            crate::catalog::load_chip_profiles(profiles).map_err(|e| e.to_string())?;
        c.keys = Arc::new(keys);
        c.store = Some(production_store(config)?);
        c.virtual_card = false;
        c.virtual_card_keys = None;
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
        let configured = match config.mode {
            Mode::Test => AppConfig::embedded().map(|mut c| {
                c.roles = config.roles.clone();
                if let Some(configured) = config.store.as_deref()
                    && std::env::var_os(store::STORE_ENV).is_none()
                {
                    c.store = StoreLocation::parse(configured)
                        .map_err(|e| tracing::warn!(error = %e, "configured store"))
                        .ok();
                }
                c
            }),
            Mode::Production => AppConfig::production(&config),
        };
        configured.map(|c| AppConfig {
            reveal_timeout: config.reveal_timeout.unwrap_or(c.reveal_timeout),
            ..c
        })
    }
}

/// The workstation's store; when it cannot open, statuses stay in memory and the notice says so.
fn open_store(
    location: Option<&StoreLocation>,
    sealer: Option<Arc<dyn Sealer>>,
) -> (Option<Store>, Option<Notice>) {
    let Some(location) = location else {
        return (None, None);
    };
    match Store::open_at(location, sealer) {
        Ok(s) => (Some(s), None),
        Err(e) => {
            tracing::warn!(error = %e, "statuses are kept in memory only");
            let notice = Notice {
                text: format!("{e}; statuses are kept in memory only"),
                error: true,
            };
            (None, Some(notice))
        }
    }
}

impl App {
    /// Starts the workers (and the simulated encoder) and, if asked, loads the demo orders.
    pub fn new(config: AppConfig, logs: LogBuffer) -> Result<App, String> {
        let waker = Waker::default();
        let sealer = config.keys.audit_sealer();
        if config.mode == Mode::Production && sealer.is_none() {
            return Err("production needs an audit key (usage audit) in the key store".into());
        }
        let (store, notice) = open_store(config.store.as_ref(), sealer);
        let pool_sizes = pool::FillPlan::sizes_for(&config.chip_profiles);
        let (prep_tx, prep_jobs) = channel();
        let (prep_out, prep_rx) = channel();
        let keys = Arc::clone(&config.keys);
        worker::spawn(
            PrepContext {
                catalog: config.catalog,
                profiles: config.chip_profiles,
                keys: config.keys,
                key_pool: config.key_pool,
                store: store.as_ref().map(|s| s.location().clone()),
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

        let devs = devices_at_start(
            config.start_sim_encoder.then_some(config.sim),
            config.virtual_card.then(|| {
                config
                    .virtual_card_keys
                    .unwrap_or_else(|| Arc::clone(&keys))
            }),
            store.as_ref(),
        );
        let setting = |k| store.as_ref().and_then(|s| s.setting(k).ok().flatten());
        let last_file = setting(SETTING_LAST_FILE).map(PathBuf::from);

        let swipe_timeout = config.swipe_timeout;
        let live = store.as_ref().and_then(|s| {
            let sealer = keys.audit_sealer();
            super::live::LiveStates::start(s.location(), sealer, config.live_every, waker.clone())
        });
        let pool = store
            .as_ref()
            .filter(|_| config.key_pool)
            .and_then(|s| pool::start_for(s.location(), pool_sizes, &keys, &waker));
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
            help_open: false,
            path_field: None,
            dialog_error: None,
            user: config.user,
            scroll_to_selected: false,
            page_rows: 20,
            pan_tags: Vec::new(),
            reveal_timeout: config.reveal_timeout,
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
            live,
            pool,
            counter: None,
        };
        if config.scan_devices {
            app.refresh_devices();
        }
        match config.open {
            Some(path) => app.load(OrderSource::File(path)),
            None if config.load_demo => app.load(OrderSource::Demo),
            None => {}
        }
        tracing::info!("workstation started");
        Ok(app)
    }
}

/// The devices the window starts with: the simulated encoder (when asked), the virtual reader
/// with a fresh card (when offered: `Some` with the keys its cards hold), and the encoder and
/// reader chosen last time (the store's settings).
fn devices_at_start(
    sim: Option<SimConfig>,
    virtual_card: Option<Arc<LoadedKeys>>,
    store: Option<&Store>,
) -> DevicesState {
    let offered = virtual_card.is_some();
    let mut devs = DevicesState::default();
    let setting = |k| store.and_then(|s| s.setting(k).ok().flatten());
    if let Some(sim) = sim {
        match SimEncoder::start(sim) {
            Ok(sim) => devs.sim = Some(sim),
            Err(e) => devs.sim_error = Some(e.to_string()),
        }
    }
    devs.encoder = setting(SETTING_ENCODER)
        .and_then(|s| EncoderChoice::from_setting(&s))
        .filter(|c| *c != EncoderChoice::Simulated || devs.sim.is_some())
        .or_else(|| devs.sim.is_some().then_some(EncoderChoice::Simulated));
    if let Some(card_keys) = virtual_card {
        devs.virtual_reader = Some(Arc::new(std::sync::Mutex::new(VirtualReader {
            slot: VirtualSlot::Fresh,
            fault: CardFault::None,
            card_keys,
        })));
    }
    devs.reader = match setting(SETTING_READER) {
        Some(s) => ReaderChoice::from_setting(&s),
        None => offered.then_some(ReaderChoice::Virtual),
    }
    .filter(|r| *r != ReaderChoice::Virtual || offered);
    devs
}
