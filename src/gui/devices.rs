//! The Devices screen: PC/SC readers (refresh; card present or absent), encoder ports, the
//! simulated encoder (started in-process) and the virtual card.
//!
//! Listing runs on a named thread (`persodesk-devices`): the UI never calls PC/SC or opens a port.
//! Seam: the virtual card is not in this build yet; it will appear as a reader once it lands.

use std::sync::mpsc::{Receiver, Sender};

use crate::domain::review::Role;
use crate::sim::encoder::{SimEncoder, SimFault};

use super::Command;
use super::worker::Waker;

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
    std::thread::Builder::new()
        .name("persodesk-devices".into())
        .spawn(move || {
            while requests.recv().is_ok() {
                // Coalesce bursts of refresh requests.
                while requests.try_recv().is_ok() {}
                if out.send(scan()).is_err() {
                    break;
                }
                waker.wake();
            }
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
    /// The PC/SC reader chosen for the chip.
    pub reader: Option<String>,
}

impl std::fmt::Debug for DevicesState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicesState")
            .field("scan", &self.scan)
            .field("encoder", &self.encoder)
            .field("reader", &self.reader)
            .finish_non_exhaustive()
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

    /// Draws the screen.
    pub fn ui(&self, ui: &mut egui::Ui, role: Option<Role>, cmds: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.heading("Devices");
            if ui.button("Refresh").on_hover_text("F5").clicked() {
                cmds.push(Command::RefreshDevices);
            }
            if self.scanning {
                ui.spinner();
            }
        });

        ui.separator();
        ui.strong("Chip: PC/SC readers");
        match self.scan.as_ref().map(|s| &s.readers) {
            None => {
                ui.label("Scanning...");
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
                        let chosen = self.reader.as_deref() == Some(r.name.as_str());
                        if ui.radio(chosen, &r.name).clicked() {
                            cmds.push(Command::SelectReader(Some(r.name.clone())));
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
        ui.label("Virtual card: not available in this build yet.");

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
}
