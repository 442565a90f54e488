//! The Devices screen: PC/SC readers (refresh; card present or absent), the in-process virtual
//! card as one more reader, encoder ports, and the simulated encoder (started in-process).
//!
//! Listing runs on a named thread (`persodesk-devices`): the UI never calls PC/SC or opens a port.
//! The virtual card lives in a [`VirtualReader`] shared with the personalization worker: "Insert a
//! fresh card" puts a blank card in it, made (when a personalization starts) for the chip profile
//! of the order being personalized; a personalized card stays in the reader and refuses a second
//! personalization (status `6985`) until a fresh card is inserted.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::devices::connector::{CardConnector, VirtualCardReader, blank_virtual_card};
use crate::devices::transport::{CardTransport, TransportError};
use crate::domain::chip::{ChipProfile, Interface};
use crate::domain::mask::debug_fields;
use crate::domain::review::Role;
use crate::keys::LoadedKeys;
use crate::sim::card::{Fault, VirtualCard};
use crate::sim::encoder::{SimEncoder, SimFault};

use super::Command;
use super::worker::{Waker, serve, spawn_named};

/// One PC/SC reader as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    /// The reader's name.
    pub name: String,
    /// A card is in it.
    pub card_present: bool,
}

/// What the devices worker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceScan {
    /// PC/SC readers, or why they could not be listed.
    pub readers: Result<Vec<ReaderInfo>, String>,
    /// Serial ports, or why they could not be listed.
    pub ports: Result<Vec<String>, String>,
}

/// Which encoder the Personalize step writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderChoice {
    /// The simulated encoder started by the app.
    Simulated,
    /// A serial port.
    Port(String),
    /// None: cards get no stripe.
    None,
}

impl EncoderChoice {
    /// For the settings table: `sim`, `none` or the port path.
    pub fn to_setting(&self) -> String {
        match self {
            EncoderChoice::Simulated => "sim".into(),
            EncoderChoice::None => "none".into(),
            EncoderChoice::Port(p) => format!("port:{p}"),
        }
    }

    /// Reads [`to_setting`](Self::to_setting)'s form.
    pub fn from_setting(s: &str) -> Option<Self> {
        match s {
            "sim" => Some(EncoderChoice::Simulated),
            "none" => Some(EncoderChoice::None),
            _ => s
                .strip_prefix("port:")
                .map(|p| EncoderChoice::Port(p.to_string())),
        }
    }
}

/// The name the virtual card's reader is shown and remembered under.
pub const VIRTUAL_READER: &str = "Virtual card (in-process)";

/// Which reader the chip is personalized in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderChoice {
    /// The in-process virtual card.
    Virtual,
    /// A PC/SC reader, by name.
    Pcsc(String),
}

impl ReaderChoice {
    /// For the settings table: `virtual` or `pcsc:<name>`.
    pub fn to_setting(&self) -> String {
        match self {
            ReaderChoice::Virtual => "virtual".into(),
            ReaderChoice::Pcsc(name) => format!("pcsc:{name}"),
        }
    }

    /// Reads [`to_setting`](Self::to_setting)'s form (a bare name is a PC/SC reader, as older
    /// versions stored it; empty is none).
    pub fn from_setting(s: &str) -> Option<Self> {
        match s {
            "" => None,
            "virtual" => Some(ReaderChoice::Virtual),
            _ => Some(ReaderChoice::Pcsc(
                s.strip_prefix("pcsc:").unwrap_or(s).to_string(),
            )),
        }
    }

    /// For messages.
    pub fn label(&self) -> &str {
        match self {
            ReaderChoice::Virtual => VIRTUAL_READER,
            ReaderChoice::Pcsc(name) => name,
        }
    }
}

/// A fault the virtual card makes (tester). Commands are counted from the card's first one:
/// SELECT is 1, INITIALIZE UPDATE 2, EXTERNAL AUTHENTICATE 3, the first STORE DATA 4 (when the
/// profile names no security domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CardFault {
    /// A healthy card.
    #[default]
    None,
    /// Pulled out of the reader at the second STORE DATA (command 5).
    RemovedDuringStoreData,
    /// Answers `6A80` (bad data) to the first STORE DATA (command 4).
    BadDataAtStoreData,
    /// Answers `6300` (wrong host cryptogram) to EXTERNAL AUTHENTICATE (command 3).
    WrongCryptogram,
}

impl CardFault {
    /// Every choice, for the selector.
    pub const ALL: [CardFault; 4] = [
        CardFault::None,
        CardFault::RemovedDuringStoreData,
        CardFault::BadDataAtStoreData,
        CardFault::WrongCryptogram,
    ];

    /// For the selector.
    pub fn label(self) -> &'static str {
        match self {
            CardFault::None => "Healthy card",
            CardFault::RemovedDuringStoreData => "Card removed during STORE DATA",
            CardFault::BadDataAtStoreData => "6A80 at the first STORE DATA",
            CardFault::WrongCryptogram => "6300 at EXTERNAL AUTHENTICATE",
        }
    }

    fn fault(self) -> Option<Fault> {
        match self {
            CardFault::None => None,
            CardFault::RemovedDuringStoreData => Some(Fault::RemoveAt(5)),
            CardFault::BadDataAtStoreData => Some(Fault::StatusAt(4, 0x6A80)),
            CardFault::WrongCryptogram => Some(Fault::StatusAt(3, 0x6300)),
        }
    }
}

/// A virtual card in the reader.
#[derive(Debug)]
pub struct CardInReader {
    /// The card.
    pub card: VirtualCard,
    /// The chip profile it was made for.
    pub profile: String,
    /// The order it was personalized with, once it was.
    pub order: Option<String>,
}

/// What is in the virtual reader.
#[derive(Debug, Default)]
pub enum VirtualSlot {
    /// No card.
    #[default]
    Empty,
    /// A blank card from the stock, made for the profile of the first order personalized on it.
    Fresh,
    /// The personalization worker holds the card.
    InUse,
    /// A card that has been through a personalization (complete or not).
    Card(Box<CardInReader>),
}

/// The in-process virtual card's reader, shared by the Devices screen and the personalization
/// worker.
#[derive(Debug)]
pub struct VirtualReader {
    /// What is in it.
    pub slot: VirtualSlot,
    /// The fault the next fresh card makes.
    pub fault: CardFault,
    /// The keys its fresh cards hold (their card keys come from this store's test KMC): the
    /// card side's own keys, as a real card holds its own (`AppConfig::virtual_card_keys`, else
    /// the host key store's, which must then be a software store: a token's keys never leave it).
    pub card_keys: Arc<LoadedKeys>,
}

/// A handle on the virtual reader.
pub type SharedVirtualReader = Arc<Mutex<VirtualReader>>;

/// Locks the virtual reader (a panic while it was held leaves a usable state).
pub fn lock_reader(reader: &SharedVirtualReader) -> MutexGuard<'_, VirtualReader> {
    reader.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes a blank virtual card for cards of `profile` ([`blank_virtual_card`]: the profile's card
/// stock, card keys diversified from its **test** KMC) that makes `fault`.
pub fn virtual_card_for(
    profile: &ChipProfile,
    keys: &LoadedKeys,
    fault: CardFault,
) -> Result<VirtualCard, String> {
    let mut card = blank_virtual_card(profile, keys)?;
    if let Some(f) = fault.fault() {
        card.inject(f);
    }
    Ok(card)
}

/// The virtual reader as the job's [`CardConnector`]: the first connection takes the card out of
/// the slot (a fresh one is made for `profile`), every connection resets it (a new connection
/// after a reset, as a terminal gets) and presents the interface asked for (the virtual card is
/// dual-interface). [`put_back`](Self::put_back) (or drop) returns the card to the slot.
pub struct VirtualConnector {
    reader: SharedVirtualReader,
    profile: ChipProfile,
    keys: Arc<LoadedKeys>,
    held: Option<Held>,
}

struct Held {
    reader: VirtualCardReader,
    profile: String,
    order: Option<String>,
}

impl VirtualConnector {
    /// The virtual reader, for a card of `profile`.
    pub fn new(reader: SharedVirtualReader, profile: ChipProfile, keys: Arc<LoadedKeys>) -> Self {
        VirtualConnector {
            reader,
            profile,
            keys,
            held: None,
        }
    }

    fn held(&mut self) -> Result<&mut VirtualCardReader, TransportError> {
        if self.held.is_none() {
            let mut r = lock_reader(&self.reader);
            let fault = r.fault;
            let held = match std::mem::replace(&mut r.slot, VirtualSlot::InUse) {
                VirtualSlot::Card(c) => Held {
                    reader: VirtualCardReader::named(c.card, VIRTUAL_READER),
                    profile: c.profile,
                    order: c.order,
                },
                VirtualSlot::Fresh => match virtual_card_for(&self.profile, &self.keys, fault) {
                    Ok(card) => Held {
                        reader: VirtualCardReader::named(card, VIRTUAL_READER),
                        profile: self.profile.name.clone(),
                        order: None,
                    },
                    Err(e) => {
                        r.slot = VirtualSlot::Fresh;
                        return Err(TransportError::ReaderGone(format!(
                            "{VIRTUAL_READER}: no card of this stock ({e})"
                        )));
                    }
                },
                other => {
                    r.slot = other;
                    return Err(TransportError::NoCard(VIRTUAL_READER.into()));
                }
            };
            self.held = Some(held);
        }
        self.held
            .as_mut()
            .map(|h| &mut h.reader)
            .ok_or(TransportError::NoCard(VIRTUAL_READER.into()))
    }

    /// Returns the card to the slot, personalized for `order` when the session went through.
    pub fn put_back(&mut self, personalized_for: Option<&str>) {
        if let Some(h) = self.held.take() {
            lock_reader(&self.reader).slot = VirtualSlot::Card(Box::new(CardInReader {
                card: h.reader.into_card(),
                profile: h.profile,
                order: personalized_for.map(str::to_string).or(h.order),
            }));
        }
    }
}

impl Drop for VirtualConnector {
    fn drop(&mut self) {
        self.put_back(None);
    }
}

impl CardConnector for VirtualConnector {
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        self.held()?.connect()
    }

    fn connect_on(
        &mut self,
        interface: Interface,
    ) -> Result<Option<Box<dyn CardTransport + '_>>, TransportError> {
        self.held()?.connect_on(interface)
    }
}

/// Lists readers and ports.
pub fn scan() -> DeviceScan {
    DeviceScan {
        readers: scan_readers(),
        ports: serialport::available_ports()
            .map(|ps| ps.into_iter().map(|p| p.port_name).collect())
            .map_err(|e| e.to_string()),
    }
}

fn scan_readers() -> Result<Vec<ReaderInfo>, String> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(|e| format!("PC/SC not available: {e}"))?;
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list readers: {e}")),
    };
    let mut states: Vec<pcsc::ReaderState> = names
        .into_iter()
        .map(|n| pcsc::ReaderState::new(n, pcsc::State::UNAWARE))
        .collect();
    ctx.get_status_change(std::time::Duration::from_millis(0), &mut states)
        .map_err(|e| format!("cannot read reader states: {e}"))?;
    Ok(states
        .iter()
        .map(|s| ReaderInfo {
            name: s.name().to_string_lossy().into_owned(),
            card_present: s.event_state().contains(pcsc::State::PRESENT),
        })
        .collect())
}

/// Starts the devices worker: each message on `requests` triggers one scan.
pub fn spawn(
    requests: Receiver<()>,
    out: Sender<DeviceScan>,
    waker: Waker,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    spawn_named("persodesk-devices", move || {
        serve(&requests, &out, &waker, |()| {
            // Coalesce bursts of refresh requests.
            while requests.try_recv().is_ok() {}
            scan()
        });
    })
}

/// The Devices screen's state.
#[derive(Default)]
pub struct DevicesState {
    /// The last scan (None: scanning).
    pub scan: Option<DeviceScan>,
    /// A scan is out.
    pub scanning: bool,
    /// The simulated encoder, when started.
    pub sim: Option<SimEncoder>,
    /// Why the simulated encoder is not running.
    pub sim_error: Option<String>,
    /// The fault the simulated encoder is told to make.
    pub sim_fault: SimFault,
    /// The encoder chosen.
    pub encoder: Option<EncoderChoice>,
    /// The reader chosen for the chip.
    pub reader: Option<ReaderChoice>,
    /// The in-process virtual card's reader (None: not offered).
    pub virtual_reader: Option<SharedVirtualReader>,
    /// The tracks of the last card written and verified, masked (track number, layout).
    pub last_tracks: Vec<(u8, String)>,
}

impl std::fmt::Debug for DevicesState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(
            f,
            "DevicesState",
            &[
                ("scan", &self.scan),
                ("encoder", &self.encoder),
                ("reader", &self.reader),
            ],
        )
    }
}

impl DevicesState {
    /// The encoder port the Personalize step writes to, if any.
    pub fn encoder_port(&self) -> Option<String> {
        match self.encoder.as_ref()? {
            EncoderChoice::Simulated => self.sim.as_ref().map(|s| s.path().display().to_string()),
            EncoderChoice::Port(p) => Some(p.clone()),
            EncoderChoice::None => None,
        }
    }

    fn virtual_ui(
        &self,
        ui: &mut egui::Ui,
        vr: &SharedVirtualReader,
        role: Option<Role>,
        cmds: &mut Vec<Command>,
    ) {
        let (state, fault) = {
            let r = lock_reader(vr);
            let state = match &r.slot {
                VirtualSlot::Empty => "no card".to_string(),
                VirtualSlot::Fresh => "card present (fresh)".to_string(),
                VirtualSlot::InUse => "card present (in use)".to_string(),
                VirtualSlot::Card(c) => match &c.order {
                    Some(o) => format!("card present (personalized: order {o}, {})", c.profile),
                    None => format!("card present (not personalized, {})", c.profile),
                },
            };
            (state, r.fault)
        };
        ui.horizontal(|ui| {
            let chosen = self.reader == Some(ReaderChoice::Virtual);
            if ui.radio(chosen, VIRTUAL_READER).clicked() {
                cmds.push(Command::SelectReader(Some(ReaderChoice::Virtual)));
            }
            ui.label(state);
            if ui.button("Insert a fresh card").clicked() {
                cmds.push(Command::InsertFreshCard);
            }
        });
        if role == Some(Role::Tester) {
            ui.horizontal_wrapped(|ui| {
                ui.label("Virtual card faults (tester; applies to the next fresh card):");
                for f in CardFault::ALL {
                    if ui.radio(fault == f, f.label()).clicked() {
                        cmds.push(Command::SetCardFault(f));
                    }
                }
            });
        }
    }

    /// Draws the screen.
    pub fn ui(&self, ui: &mut egui::Ui, role: Option<Role>, cmds: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.heading("Devices");
            if ui
                .button("Refresh")
                .on_hover_text(super::Shortcut::RefreshDevices.hover())
                .clicked()
            {
                cmds.push(Command::RefreshDevices);
            }
            if self.scanning {
                ui.spinner();
            }
        });

        self.readers_ui(ui, role, cmds);
        self.encoders_ui(ui, cmds);
        if role == Some(Role::Tester) && self.sim.is_some() {
            ui.separator();
            ui.strong("Simulated encoder faults (tester)");
            ui.horizontal_wrapped(|ui| {
                for (fault, label) in [
                    (SimFault::None, "Healthy"),
                    (SimFault::WriteError, "Write error"),
                    (SimFault::BadSwipes(1), "One bad swipe"),
                    (SimFault::CorruptReadBack(2), "Corrupt read-back"),
                    (SimFault::NoSwipe, "Nobody swipes"),
                ] {
                    if ui.radio(self.sim_fault == fault, label).clicked() {
                        cmds.push(Command::SetSimFault(fault));
                    }
                }
            });
        }
    }

    /// The chip readers: the virtual card, the PC/SC readers, none.
    fn readers_ui(&self, ui: &mut egui::Ui, role: Option<Role>, cmds: &mut Vec<Command>) {
        ui.separator();
        ui.strong("Chip: card readers");
        if let Some(vr) = &self.virtual_reader {
            self.virtual_ui(ui, vr, role, cmds);
        }
        match self.scan.as_ref().map(|s| &s.readers) {
            None => {
                ui.label("PC/SC: scanning...");
            }
            Some(Err(e)) => {
                ui.label(e);
            }
            Some(Ok(readers)) if readers.is_empty() => {
                ui.label("No PC/SC reader connected.");
            }
            Some(Ok(readers)) => {
                for r in readers {
                    ui.horizontal(|ui| {
                        let c = ReaderChoice::Pcsc(r.name.clone());
                        if ui
                            .radio(self.reader.as_ref() == Some(&c), &r.name)
                            .clicked()
                        {
                            cmds.push(Command::SelectReader(Some(c)));
                        }
                        ui.label(if r.card_present {
                            "card present"
                        } else {
                            "no card"
                        });
                    });
                }
            }
        }
        if ui
            .radio(self.reader.is_none(), "No chip reader (stripe only)")
            .clicked()
        {
            cmds.push(Command::SelectReader(None));
        }
    }

    /// The encoders: the simulated one, the serial ports, none.
    fn encoders_ui(&self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        ui.separator();
        ui.strong("Magnetic stripe encoder");
        let choice = self.encoder.clone().unwrap_or(EncoderChoice::None);
        let sim_label = match &self.sim {
            Some(s) => format!("Simulated encoder ({})", s.path().display()),
            None => format!(
                "Simulated encoder (not running: {})",
                self.sim_error.as_deref().unwrap_or("not started")
            ),
        };
        if ui
            .add_enabled(
                self.sim.is_some(),
                egui::RadioButton::new(choice == EncoderChoice::Simulated, sim_label),
            )
            .clicked()
        {
            cmds.push(Command::SelectEncoder(EncoderChoice::Simulated));
        }
        match self.scan.as_ref().map(|s| &s.ports) {
            Some(Ok(ports)) => {
                for p in ports {
                    let c = EncoderChoice::Port(p.clone());
                    if ui.radio(choice == c, format!("Serial port {p}")).clicked() {
                        cmds.push(Command::SelectEncoder(c));
                    }
                }
            }
            Some(Err(e)) => {
                ui.label(format!("Serial ports: {e}"));
            }
            None => {}
        }
        if let EncoderChoice::Port(p) = &choice
            && !self
                .scan
                .as_ref()
                .and_then(|s| s.ports.as_ref().ok())
                .is_some_and(|ps| ps.contains(p))
        {
            ui.label(format!("Remembered port {p} (not seen in the last scan)"));
        }
        if ui
            .radio(choice == EncoderChoice::None, "No encoder (no stripe)")
            .clicked()
        {
            cmds.push(Command::SelectEncoder(EncoderChoice::None));
        }
        if !self.last_tracks.is_empty() {
            ui.label("Last tracks written and verified (masked):");
            egui::Grid::new("last-tracks").striped(true).show(ui, |ui| {
                for (no, masked) in &self.last_tracks {
                    ui.label(format!("Track {no}"));
                    ui.monospace(masked);
                    ui.end_row();
                }
            });
        }
    }
}
