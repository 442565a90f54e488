//! The Personalize screen and its worker: one card at a time on a named thread
//! (`persodesk-perso`), with a progress bar through the steps (prepare, secure channel, STORE DATA
//! n of m, stripe write, read-back verification), a Cancel button and a clear result. A failure
//! names its step and what to do.
//!
//! Seam: the worker calls a [`Personalizer`]. [`DeskPersonalizer`] writes the stripe through an
//! [`Encoder`](crate::devices::encoder::Encoder); the chip steps report "no chip data" until the
//! card session (GlobalPlatform + CPS over PC/SC or the virtual card) plugs in at
//! [`DeskPersonalizer::chip`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use crate::devices::encoder::{
    CancelHandle, Encoder, EncoderError, EncoderEvent, SerialConfig, SerialEncoder,
};
use crate::domain::msr206::{FlowError, FlowStep, SwipePurpose, TrackSet};
use crate::domain::prepare::PersoData;

use super::Command;
use super::worker::Waker;

/// A step of personalizing one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersoStep {
    /// Checking the prepared data.
    Prepare,
    /// Opening the secure channel to the chip.
    SecureChannel,
    /// Sending DGI `n` of `m`.
    StoreData {
        /// 1-based.
        n: usize,
        /// Total.
        m: usize,
    },
    /// Writing the magnetic stripe.
    StripeWrite,
    /// Reading the stripe back and comparing.
    ReadBack,
}

impl PersoStep {
    /// A label for the progress bar.
    pub fn label(self) -> String {
        match self {
            PersoStep::Prepare => "prepare".into(),
            PersoStep::SecureChannel => "secure channel".into(),
            PersoStep::StoreData { n, m } => format!("STORE DATA {n} of {m}"),
            PersoStep::StripeWrite => "stripe write".into(),
            PersoStep::ReadBack => "read-back verification".into(),
        }
    }

    /// Progress fraction at the start of this step.
    pub fn fraction(self) -> f32 {
        match self {
            PersoStep::Prepare => 0.0,
            PersoStep::SecureChannel => 0.1,
            PersoStep::StoreData { n, m } => {
                let f = if m == 0 { 1.0 } else { n as f32 / m as f32 };
                0.2 + 0.4 * f
            }
            PersoStep::StripeWrite => 0.6,
            PersoStep::ReadBack => 0.8,
        }
    }
}

/// Why a personalization failed: the step, what happened, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersoFailure {
    /// The step that failed.
    pub step: PersoStep,
    /// What happened (names steps and rules, never data).
    pub message: String,
    /// What the operator should do.
    pub advice: String,
}

impl std::fmt::Display for PersoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step.label(), self.message)
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersoReport {
    /// A one-line summary (`tracks 1, 2 written and verified; chip: none`).
    pub summary: String,
}

/// Where the card goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersoTarget {
    /// The encoder's serial port (or the simulated encoder's pty); None: no stripe write.
    pub encoder_port: Option<String>,
    /// The PC/SC reader for the chip; None: no chip.
    pub reader: Option<String>,
}

/// Talks to the worker from inside a [`Personalizer`]: progress, cancellation.
pub struct PersoControl {
    tx: Sender<PersoMsg>,
    waker: Waker,
    cancel: Arc<AtomicBool>,
}

impl PersoControl {
    /// Reports that `step` has started.
    pub fn step(&self, step: PersoStep) {
        let _ = self.tx.send(PersoMsg::Step(step));
        self.waker.wake();
    }

    /// Hands a device's cancel handle to the UI's Cancel button.
    pub fn cancellable(&self, handle: CancelHandle) {
        let _ = self.tx.send(PersoMsg::Cancellable(handle));
        self.waker.wake();
    }

    /// True once the user pressed Cancel.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// Personalizes one card. Runs on the worker thread.
pub trait Personalizer: Send {
    /// Runs every step for `data` on `target`, reporting progress through `ctl`.
    fn personalize(
        &mut self,
        data: &PersoData,
        target: &PersoTarget,
        ctl: &PersoControl,
    ) -> Result<PersoReport, PersoFailure>;
}

/// The workstation's personalizer: chip (seam) then stripe.
#[derive(Debug, Clone)]
pub struct DeskPersonalizer {
    /// Serial settings applied to the encoder port (timeouts).
    pub swipe_timeout: Duration,
}

impl Default for DeskPersonalizer {
    fn default() -> Self {
        DeskPersonalizer {
            swipe_timeout: Duration::from_secs(30),
        }
    }
}

fn encoder_failure(e: &EncoderError) -> PersoFailure {
    let (step, advice) = match e {
        EncoderError::InvalidTrack(_) => (
            PersoStep::Prepare,
            "the prepared tracks do not fit the encoder: check the product patterns",
        ),
        EncoderError::PortNotFound { .. } | EncoderError::PortOpen { .. } => (
            PersoStep::StripeWrite,
            "choose a connected encoder on the Devices screen, then retry",
        ),
        EncoderError::Io { step, .. } | EncoderError::DeviceTimeout { step, .. } => (
            flow_step(*step),
            "check that the encoder is connected and powered, then retry",
        ),
        EncoderError::SwipeTimeout { purpose, .. } => (
            match purpose {
                SwipePurpose::Write => PersoStep::StripeWrite,
                SwipePurpose::ReadBack => PersoStep::ReadBack,
            },
            "swipe the card through the encoder when asked, then retry",
        ),
        EncoderError::Cancelled { step } => (flow_step(*step), "cancelled; retry when ready"),
        EncoderError::Protocol { step, .. } => (
            flow_step(*step),
            "the encoder answered out of protocol: check the port is an MSR206-family encoder",
        ),
        EncoderError::Flow(FlowError::Mismatch(_)) => (
            PersoStep::ReadBack,
            "the stripe did not verify: destroy this card, use a new one and retry",
        ),
        EncoderError::Flow(FlowError::Device { step, .. })
        | EncoderError::Flow(FlowError::TooManyBadSwipes { step, .. }) => (
            flow_step(*step),
            "the card was not written: use a new card (hi-co stripe) and retry",
        ),
        EncoderError::Flow(_) => (
            PersoStep::StripeWrite,
            "retry; if it persists, reset the encoder",
        ),
    };
    PersoFailure {
        step,
        message: e.to_string(),
        advice: advice.into(),
    }
}

fn flow_step(step: FlowStep) -> PersoStep {
    match step {
        FlowStep::ReadBack => PersoStep::ReadBack,
        _ => PersoStep::StripeWrite,
    }
}

impl DeskPersonalizer {
    /// The chip steps. SEAM: the card session (secure channel, STORE DATA of each DGI) plugs in
    /// here once `PersoData` carries chip data; until then there is nothing to send.
    fn chip(&mut self, _data: &PersoData, target: &PersoTarget, ctl: &PersoControl) -> String {
        ctl.step(PersoStep::SecureChannel);
        match &target.reader {
            Some(reader) => format!("chip: no chip data to send to {reader}"),
            None => "chip: no chip data".into(),
        }
    }

    fn stripe(
        &mut self,
        data: &PersoData,
        target: &PersoTarget,
        ctl: &PersoControl,
    ) -> Result<String, PersoFailure> {
        let t = &data.tracks;
        if t.track1.is_none() && t.track2.is_none() && t.track3.is_none() {
            return Ok("stripe: no tracks".into());
        }
        let Some(port) = &target.encoder_port else {
            return Err(PersoFailure {
                step: PersoStep::StripeWrite,
                message: "no encoder selected".into(),
                advice: "choose an encoder on the Devices screen, then retry".into(),
            });
        };
        let tracks = TrackSet::new(
            t.track1.as_ref().map(|t| t.body()),
            t.track2.as_ref().map(|t| t.body()),
            t.track3.as_ref().map(|t| t.body()),
        )
        .map_err(|e| encoder_failure(&EncoderError::InvalidTrack(e)))?;
        ctl.step(PersoStep::StripeWrite);
        let mut config = SerialConfig::new(port.clone());
        config.swipe_timeout = self.swipe_timeout;
        let tx = ctl.tx.clone();
        let waker = ctl.waker.clone();
        let mut encoder = SerialEncoder::open(config)
            .map_err(|e| encoder_failure(&e))?
            .with_observer(move |event| {
                let step = match event {
                    EncoderEvent::Sending {
                        step: FlowStep::ReadBack,
                        ..
                    }
                    | EncoderEvent::WaitingForSwipe {
                        purpose: SwipePurpose::ReadBack,
                        ..
                    } => PersoStep::ReadBack,
                    _ => PersoStep::StripeWrite,
                };
                let _ = tx.send(PersoMsg::Step(step));
                if let EncoderEvent::WaitingForSwipe { purpose, .. } = event {
                    let _ = tx.send(PersoMsg::Hint(format!("{purpose}")));
                }
                waker.wake();
            });
        ctl.cancellable(encoder.cancel_handle());
        if ctl.cancelled() {
            return Err(encoder_failure(&EncoderError::Cancelled {
                step: FlowStep::Reset,
            }));
        }
        let outcome = encoder
            .write_and_verify(&tracks)
            .map_err(|e| encoder_failure(&e))?;
        let list: Vec<String> = outcome.tracks.iter().map(ToString::to_string).collect();
        Ok(format!("tracks {} written and verified", list.join(", ")))
    }
}

impl Personalizer for DeskPersonalizer {
    fn personalize(
        &mut self,
        data: &PersoData,
        target: &PersoTarget,
        ctl: &PersoControl,
    ) -> Result<PersoReport, PersoFailure> {
        ctl.step(PersoStep::Prepare);
        let chip = self.chip(data, target, ctl);
        if ctl.cancelled() {
            return Err(PersoFailure {
                step: PersoStep::SecureChannel,
                message: "cancelled".into(),
                advice: "retry when ready".into(),
            });
        }
        let stripe = self.stripe(data, target, ctl)?;
        Ok(PersoReport {
            summary: format!("{stripe}; {chip}"),
        })
    }
}

/// News from the personalization worker.
#[derive(Debug)]
pub enum PersoMsg {
    /// A step started.
    Step(PersoStep),
    /// A hint for the operator (`swipe to write`).
    Hint(String),
    /// The device can be cancelled through this handle.
    Cancellable(CancelHandle),
    /// The run ended.
    Finished(Result<PersoReport, PersoFailure>),
}

/// A running personalization.
#[derive(Debug)]
pub struct Running {
    /// The row.
    pub row: usize,
    /// The order id.
    pub order_id: String,
    rx: Receiver<PersoMsg>,
    cancel: Arc<AtomicBool>,
    device_cancel: Option<CancelHandle>,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The order id.
    pub order_id: String,
    /// The report or the failure.
    pub result: Result<PersoReport, PersoFailure>,
}

/// The Personalize screen's state.
#[derive(Debug, Default)]
pub struct PersoState {
    /// The run in progress.
    pub running: Option<Running>,
    /// The current step.
    pub step: Option<PersoStep>,
    /// The latest hint.
    pub hint: Option<String>,
    /// The last result.
    pub last: Option<Finished>,
}

impl PersoState {
    /// A run is in progress.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts a run on a named worker thread.
    pub fn start(
        &mut self,
        row: usize,
        data: PersoData,
        target: PersoTarget,
        mut personalizer: Box<dyn Personalizer>,
        waker: Waker,
    ) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let ctl = PersoControl {
            tx: tx.clone(),
            waker: waker.clone(),
            cancel: Arc::clone(&cancel),
        };
        let order_id = data.order_id.clone();
        std::thread::Builder::new()
            .name("persodesk-perso".into())
            .spawn(move || {
                let result = personalizer.personalize(&data, &target, &ctl);
                drop(data);
                let _ = tx.send(PersoMsg::Finished(result));
                waker.wake();
            })?;
        self.running = Some(Running {
            row,
            order_id,
            rx,
            cancel,
            device_cancel: None,
        });
        self.step = Some(PersoStep::Prepare);
        self.hint = None;
        self.last = None;
        Ok(())
    }

    /// Asks the run to stop (the device stops within its poll interval).
    pub fn cancel(&mut self) {
        if let Some(r) = &self.running {
            r.cancel.store(true, Ordering::SeqCst);
            if let Some(h) = &r.device_cancel {
                h.cancel();
            }
        }
    }

    /// Reads the worker's messages; returns the finished run (row and result) once.
    pub fn poll(&mut self) -> Option<(usize, Finished)> {
        let running = self.running.as_mut()?;
        loop {
            match running.rx.try_recv() {
                Ok(PersoMsg::Step(s)) => self.step = Some(s),
                Ok(PersoMsg::Hint(h)) => self.hint = Some(h),
                Ok(PersoMsg::Cancellable(h)) => {
                    if running.cancel.load(Ordering::SeqCst) {
                        h.cancel();
                    }
                    running.device_cancel = Some(h);
                }
                Ok(PersoMsg::Finished(result)) => {
                    let row = running.row;
                    let done = Finished {
                        order_id: running.order_id.clone(),
                        result,
                    };
                    self.running = None;
                    self.last = Some(done.clone());
                    return Some((row, done));
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    let row = running.row;
                    let done = Finished {
                        order_id: running.order_id.clone(),
                        result: Err(PersoFailure {
                            step: self.step.unwrap_or(PersoStep::Prepare),
                            message: "the personalization worker stopped unexpectedly".into(),
                            advice: "check the card, then retry".into(),
                        }),
                    };
                    self.running = None;
                    self.last = Some(done.clone());
                    return Some((row, done));
                }
            }
        }
    }

    /// Draws the screen.
    pub fn ui(&self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        ui.heading("Personalize");
        if let Some(r) = &self.running {
            ui.label(format!("Order {}", r.order_id));
            let step = self.step.unwrap_or(PersoStep::Prepare);
            ui.add(
                egui::ProgressBar::new(step.fraction())
                    .show_percentage()
                    .text(format!("Step: {}", step.label())),
            );
            ui.label(format!("Step: {}", step.label()));
            if let Some(h) = &self.hint {
                ui.label(format!("Encoder: {h}"));
            }
            if ui.button("Cancel").on_hover_text("Esc").clicked() {
                cmds.push(Command::CancelPerso);
            }
            return;
        }
        match &self.last {
            None => {
                ui.label(
                    "Select an order, then press Personalize in its preview (Ctrl+P). \
                     Progress and the result show here.",
                );
            }
            Some(Finished {
                order_id,
                result: Ok(report),
            }) => {
                ui.add(egui::ProgressBar::new(1.0).text("done"));
                ui.strong(format!("Order {order_id}: CARD_PROD_DONE"));
                ui.label(&report.summary);
            }
            Some(Finished {
                order_id,
                result: Err(f),
            }) => {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("Order {order_id}: CARD_PROD_FAILED"),
                );
                ui.label(format!("Failed step: {}", f.step.label()));
                ui.label(&f.message);
                ui.label(format!("What to do: {}", f.advice));
            }
        }
    }
}
