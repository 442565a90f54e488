//! The desktop workstation (eframe): `persodesk` with no arguments.
//!
//! [`App`] is a plain struct: its state changes are methods ([`actions`], testable without a
//! window), drawing reads it ([`frame`]), and the screens (one file each: [`orders`],
//! [`preview`], [`devices`], [`personalize`], [`log`]) return [`Command`]s ([`commands`]) that
//! are applied at the end of the frame. [`config`] holds the demo assets and the configuration,
//! [`poll`] the workers' news.
//! Preparation, device listing and personalization run on named worker threads that report
//! through channels and wake the UI; the UI thread never blocks on them or calls a device.
//!
//! It starts on embedded defaults (demo products and chip profiles, demo keys, demo orders) so it
//! runs from any directory, with the simulated encoder started in-process and the virtual card in
//! its in-process reader.

pub mod actions;
pub mod card_picture;
pub mod channel;
pub mod commands;
pub mod config;
pub mod counter;
pub mod devices;
pub mod frame;
pub mod live;
pub mod log;
pub mod orders;
pub mod pan_search;
pub mod personalize;
pub mod poll;
pub mod pool;
pub mod preview;
pub mod progress;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Duration;

use crate::domain::chip::ChipModel;
use crate::domain::chip::{ChipProfile, ChipProfiles};
use crate::domain::mask::debug_fields;
use crate::domain::mode::Mode;
use crate::domain::product::{Catalog, Product};
use crate::domain::review::{self, OrderFacts, Role, Roles, Session};
use crate::domain::status::{self, Event, Status};
use crate::job::ChannelOverride;
use crate::keys::LoadedKeys;
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

pub use commands::{Command, Shortcut};
pub use config::{AppConfig, demo_catalog, demo_chip_profiles, demo_keys};

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
    /// The F1 shortcut sheet is shown.
    pub help_open: bool,
    /// The typed order file path, while its field is shown.
    pub path_field: Option<String>,
    /// Why the system file dialog could not open (shown above the path field).
    pub dialog_error: Option<String>,
    user: String,
    scroll_to_selected: bool,
    page_rows: usize,
    pan_tags: Vec<Option<pan_search::PanTag>>,
    reveal_timeout: Duration,
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
    file_rx: Option<Receiver<Result<Option<PathBuf>, String>>>,
    waker: Waker,
    keys: Arc<LoadedKeys>,
    channel_override: ChannelOverride,
    live: Option<live::LiveStates>,
    pool: Option<pool::PoolFiller>,
    /// Today's production, from the store's last live read.
    pub counter: Option<counter::Counter>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "App",
            &[
                ("session", &self.session),
                ("screen", &self.screen),
                ("rows", &self.rows.len()),
                ("selected", &self.selected),
            ],
        )
    }
}

impl App {
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

    /// How long clear values stay on screen before they are masked again.
    pub fn reveal_timeout(&self) -> Duration {
        self.reveal_timeout
    }

    /// Whole seconds left before clear values shown since `revealed_at` (egui time) are masked
    /// again (None: not stamped yet).
    pub fn reveal_left(&self, ctx: &egui::Context, revealed_at: Option<f64>) -> Option<u64> {
        let at = revealed_at?;
        let left = self.reveal_timeout.as_secs_f64() - (ctx.input(|i| i.time) - at);
        Some(left.max(0.0).ceil() as u64)
    }

    /// Indices of the rows the filter lets through.
    pub fn visible_rows(&self) -> &[usize] {
        &self.visible
    }

    /// Where the selected row is among the visible ones (a binary search: they are in file
    /// order, so a frame does not scan 100,000 rows).
    pub fn selected_position(&self) -> Option<usize> {
        self.selected
            .and_then(|s| self.visible.binary_search(&s).ok())
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

/// Opens the window on the embedded defaults, on the order file `open` when given (`persodesk
/// FILE`). Returns the process exit code.
pub fn run(open: Option<PathBuf>) -> ExitCode {
    let logs = LogBuffer::default();
    init_tracing(&logs);
    let config = match AppConfig::for_machine() {
        Ok(c) => AppConfig { open, ..c },
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
