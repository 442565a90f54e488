//! The Personalize screen and its worker: one card at a time on a named thread
//! (`persodesk-perso`), with a progress bar through the steps (prepare, secure channel, STORE DATA
//! n of m, stripe write, read-back verification), a Cancel button and a clear result. A failure
//! names its step and what to do.
//!
//! The worker calls a [`Personalizer`]. [`DeskPersonalizer`] personalizes the chip first (the
//! GlobalPlatform + CPS session of [`perso::personalize_dgis`] over a PC/SC reader or the
//! in-process virtual card, then a terminal-style read-back checked against the order and the
//! prepared data by [`verify`]), and writes the stripe through an
//! [`Encoder`](crate::devices::encoder::Encoder) only once the chip succeeded. Cancel stops
//! between two APDUs ([`CancelTransport`]) or while the encoder waits; a cancelled card is a
//! failed card.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use crate::devices::encoder::{
    CancelHandle, Encoder, EncoderError, EncoderEvent, SerialConfig, SerialEncoder,
};
use crate::devices::pcsc::{PcscTransport, ProtocolChoice};
use crate::devices::transport::{CardTransport, TransportError, VirtualTransport};
use crate::domain::chip::{ChipData, ChipProfile};
use crate::domain::gp::session::{Progress, StepName};
use crate::domain::msr206::{FlowError, FlowStep, SwipePurpose, TrackSet};
use crate::domain::order::Order;
use crate::domain::prepare::PersoData;
use crate::domain::readback::{Check, Outcome};
use crate::keys::LoadedKeys;
use crate::perso::{self, PersoError, Transcript};
use crate::verify;

use super::Command;
use super::devices::{
    CardInReader, ReaderChoice, SharedVirtualReader, VirtualSlot, lock_reader, virtual_card_for,
};
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
    /// Reading the chip as a terminal and checking it against the order and prepared data.
    ChipReadBack,
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
            PersoStep::ChipReadBack => "read-back verification".into(),
            PersoStep::StripeWrite => "stripe write".into(),
            PersoStep::ReadBack => "stripe read-back".into(),
        }
    }

    /// Progress fraction at the start of this step.
    pub fn fraction(self) -> f32 {
        match self {
            PersoStep::Prepare => 0.0,
            PersoStep::SecureChannel => 0.1,
            PersoStep::StoreData { n, m } => {
                let f = if m == 0 { 1.0 } else { n as f32 / m as f32 };
                0.15 + 0.35 * f
            }
            PersoStep::ChipReadBack => 0.5,
            PersoStep::StripeWrite => 0.65,
            PersoStep::ReadBack => 0.85,
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
    /// The chip session's masked transcript up to the failure (headers, lengths, status words).
    pub transcript: Option<Transcript>,
    /// The read-back checks, when the card was read.
    pub checks: Vec<Check>,
}

impl PersoFailure {
    fn new(step: PersoStep, message: impl Into<String>, advice: impl Into<String>) -> Self {
        PersoFailure {
            step,
            message: message.into(),
            advice: advice.into(),
            transcript: None,
            checks: Vec::new(),
        }
    }
}

impl std::fmt::Display for PersoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step.label(), self.message)
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersoReport {
    /// A one-line summary (`chip: 23 DGIs ...; tracks 1, 2 written and verified`).
    pub summary: String,
    /// The chip session's masked transcript.
    pub transcript: Option<Transcript>,
    /// The read-back checks.
    pub checks: Vec<Check>,
}

/// The reader the chip goes to.
#[derive(Clone, Default)]
pub enum CardTarget {
    /// No reader: a card with chip data fails at the secure channel step.
    #[default]
    None,
    /// A PC/SC reader, by name.
    Pcsc(String),
    /// The in-process virtual card.
    Virtual(SharedVirtualReader),
}

impl std::fmt::Debug for CardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardTarget::None => f.write_str("None"),
            CardTarget::Pcsc(r) => write!(f, "Pcsc({r})"),
            CardTarget::Virtual(_) => f.write_str("Virtual"),
        }
    }
}

impl CardTarget {
    /// The target for a reader choice.
    pub fn of(choice: Option<&ReaderChoice>, virtual_reader: Option<&SharedVirtualReader>) -> Self {
        match (choice, virtual_reader) {
            (Some(ReaderChoice::Pcsc(name)), _) => CardTarget::Pcsc(name.clone()),
            (Some(ReaderChoice::Virtual), Some(vr)) => CardTarget::Virtual(Arc::clone(vr)),
            _ => CardTarget::None,
        }
    }
}

/// Where the card goes.
#[derive(Debug, Clone, Default)]
pub struct PersoTarget {
    /// The encoder's serial port (or the simulated encoder's pty); None: no stripe write.
    pub encoder_port: Option<String>,
    /// The reader for the chip.
    pub card: CardTarget,
}

/// One card to personalize: the prepared data, the order it came from (read-back compares the
/// card with it) and the chip profile (secure channel, ARQC key derivation).
#[derive(Debug, Clone)]
pub struct PersoJob {
    /// Tracks and chip data (clear values inside; never logged).
    pub data: PersoData,
    /// The validated order.
    pub order: Order,
    /// The chip profile of the chip data, if any.
    pub profile: Option<ChipProfile>,
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
    /// Runs every step for `job` on `target`, reporting progress through `ctl`.
    fn personalize(
        &mut self,
        job: &PersoJob,
        target: &PersoTarget,
        ctl: &PersoControl,
    ) -> Result<PersoReport, PersoFailure>;
}

/// The workstation's personalizer: chip, read-back, then stripe.
#[derive(Debug, Clone)]
pub struct DeskPersonalizer {
    /// Serial settings applied to the encoder port (timeouts).
    pub swipe_timeout: Duration,
    /// The key store: card keys for the secure channel, the CA key and the ARQC key (test keys)
    /// for the read-back, the KMC of the virtual card (test keys).
    pub keys: Arc<LoadedKeys>,
}

/// A transport that refuses every command once the operator cancelled, so a session stops
/// between two APDUs with "cancelled by the operator".
pub struct CancelTransport<'a> {
    inner: &'a mut dyn CardTransport,
    cancel: &'a AtomicBool,
}

impl<'a> CancelTransport<'a> {
    /// Wraps `inner`; `cancel` is the Cancel button's flag.
    pub fn new(inner: &'a mut dyn CardTransport, cancel: &'a AtomicBool) -> Self {
        CancelTransport { inner, cancel }
    }
}

impl CardTransport for CancelTransport<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(TransportError::Cancelled);
        }
        self.inner.transmit_raw(apdu)
    }

    fn reader_name(&self) -> &str {
        self.inner.reader_name()
    }
}

/// The card in the reader for one run; the virtual card goes back into its reader on drop.
enum OpenCard {
    Pcsc(PcscTransport),
    Virtual {
        transport: Box<VirtualTransport>,
        reader: SharedVirtualReader,
        profile: String,
        order: Option<String>,
    },
}

impl OpenCard {
    fn transport(&mut self) -> &mut dyn CardTransport {
        match self {
            OpenCard::Pcsc(t) => t,
            OpenCard::Virtual { transport, .. } => transport.as_mut(),
        }
    }

    /// Power-cycles before the read-back where the transport allows it (the virtual card); a
    /// PC/SC card is read on the same connection.
    fn reset(&mut self) {
        if let OpenCard::Virtual { transport, .. } = self {
            transport.card.reset();
        }
    }

    /// Puts the card back (virtual) or disconnects leaving the card as it is (PC/SC).
    fn close(self, personalized_for: Option<&str>) {
        match self {
            OpenCard::Pcsc(t) => {
                let _ = t.disconnect();
            }
            OpenCard::Virtual {
                transport,
                reader,
                profile,
                order,
            } => {
                let mut r = lock_reader(&reader);
                r.slot = VirtualSlot::Card(Box::new(CardInReader {
                    card: transport.card,
                    profile,
                    order: personalized_for.map(str::to_string).or(order),
                }));
            }
        }
    }
}

fn perso_step(p: &Progress) -> PersoStep {
    match p.step {
        StepName::StoreData => PersoStep::StoreData {
            n: usize::from(p.store_data_sent.max(1)),
            m: usize::from(p.store_data_total),
        },
        _ => PersoStep::SecureChannel,
    }
}

fn perso_failure(e: &PersoError, last: PersoStep) -> PersoFailure {
    let step = match e.step() {
        None => PersoStep::Prepare,
        Some(StepName::StoreData) => match last {
            s @ PersoStep::StoreData { .. } => s,
            _ => PersoStep::StoreData { n: 0, m: 0 },
        },
        Some(StepName::Finished) => last,
        Some(_) => PersoStep::SecureChannel,
    };
    let cancelled = matches!(
        e,
        PersoError::Transport {
            error: TransportError::Cancelled,
            ..
        }
    );
    let advice = if cancelled {
        "the chip may be partly personalized: set the card aside (insert a fresh card), then retry"
    } else {
        match e {
            PersoError::Plan(_) => "check the chip profile and the prepared data, then retry",
            PersoError::Transport { .. } => {
                "check the card is inserted and the reader connected, then retry with a new card"
            }
            PersoError::Session { .. } => {
                "the card refused the session: use a new card of the product's card stock and retry"
            }
        }
    };
    let mut f = PersoFailure::new(step, e.to_string(), advice);
    f.transcript = e.transcript().cloned();
    f
}

fn cancelled_failure(step: PersoStep) -> PersoFailure {
    PersoFailure::new(step, "cancelled by the operator", "retry when ready")
}

impl DeskPersonalizer {
    /// The workstation's personalizer over `keys`.
    pub fn new(keys: Arc<LoadedKeys>, swipe_timeout: Duration) -> Self {
        DeskPersonalizer {
            swipe_timeout,
            keys,
        }
    }

    fn open(&self, target: &CardTarget, profile: &ChipProfile) -> Result<OpenCard, PersoFailure> {
        match target {
            CardTarget::None => Err(PersoFailure::new(
                PersoStep::SecureChannel,
                "no chip reader selected",
                "choose a reader (or the virtual card) on the Devices screen, then retry",
            )),
            CardTarget::Pcsc(name) => PcscTransport::connect(name, ProtocolChoice::Any)
                .map(OpenCard::Pcsc)
                .map_err(|e| {
                    PersoFailure::new(
                        PersoStep::SecureChannel,
                        e.to_string(),
                        "insert a card in the reader (or choose another reader), then retry",
                    )
                }),
            CardTarget::Virtual(reader) => {
                let mut r = lock_reader(reader);
                let fault = r.fault;
                match std::mem::replace(&mut r.slot, VirtualSlot::InUse) {
                    VirtualSlot::Card(c) => Ok(OpenCard::Virtual {
                        transport: Box::new(VirtualTransport::new(c.card)),
                        reader: Arc::clone(reader),
                        profile: c.profile,
                        order: c.order,
                    }),
                    VirtualSlot::Fresh => match virtual_card_for(profile, &self.keys, fault) {
                        Ok(card) => Ok(OpenCard::Virtual {
                            transport: Box::new(VirtualTransport::new(card)),
                            reader: Arc::clone(reader),
                            profile: profile.name.clone(),
                            order: None,
                        }),
                        Err(e) => {
                            r.slot = VirtualSlot::Fresh;
                            Err(PersoFailure::new(
                                PersoStep::SecureChannel,
                                e,
                                "the virtual card cannot be made for this chip profile",
                            ))
                        }
                    },
                    other => {
                        r.slot = other;
                        Err(PersoFailure::new(
                            PersoStep::SecureChannel,
                            "no card in the virtual reader",
                            "press \"Insert a fresh card\" on the Devices screen, then retry",
                        ))
                    }
                }
            }
        }
    }

    /// The chip steps: secure channel, STORE DATA of each DGI, read-back verification.
    fn chip(
        &mut self,
        job: &PersoJob,
        chip: &ChipData,
        target: &PersoTarget,
        ctl: &PersoControl,
    ) -> Result<(String, Transcript, Vec<Check>), PersoFailure> {
        let profile = job.profile.as_ref().ok_or_else(|| {
            PersoFailure::new(
                PersoStep::Prepare,
                format!("chip profile {} is not loaded", chip.profile),
                "check the product's chip profile, then prepare again",
            )
        })?;
        let options = perso::channel_options(&profile.channel, chip, self.keys.port()).map_err(|e| {
            PersoFailure::new(
                PersoStep::Prepare,
                format!("secure channel keys: {e}"),
                "the card keys are not in the key store: check the profile's [channel] kmc_index",
            )
        })?;
        let dgis = perso::session_dgis(chip, profile.channel.protocol);
        ctl.step(PersoStep::SecureChannel);
        let mut card = self.open(&target.card, profile)?;
        let mut last = PersoStep::SecureChannel;
        let result = {
            let mut transport = CancelTransport::new(card.transport(), &ctl.cancel);
            perso::personalize_dgis_with(
                &mut transport,
                options,
                dgis,
                self.keys.port(),
                &mut |p: &Progress| {
                    if p.step == StepName::Finished {
                        return;
                    }
                    let s = perso_step(p);
                    if s != last {
                        last = s;
                        ctl.step(s);
                    }
                },
            )
        };
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                card.close(None);
                return Err(perso_failure(&e, last));
            }
        };
        let transcript = report.transcript;
        let fail_rb = |message: String, transcript: &Transcript, checks: Vec<Check>| {
            let mut f = PersoFailure::new(
                PersoStep::ChipReadBack,
                message,
                "the chip does not hold what was prepared: destroy this card, use a new one and retry",
            );
            f.transcript = Some(transcript.clone());
            f.checks = checks;
            f
        };
        if ctl.cancelled() {
            card.close(Some(&job.data.order_id));
            let mut f = cancelled_failure(PersoStep::ChipReadBack);
            f.transcript = Some(transcript);
            return Err(f);
        }
        ctl.step(PersoStep::ChipReadBack);
        card.reset();
        let read = {
            let mut transport = CancelTransport::new(card.transport(), &ctl.cancel);
            verify::read_card(
                &mut transport,
                verify::ca_for(self.keys.port(), Some(chip), &chip.aid),
                Some(&chip.aid),
            )
        };
        card.close(Some(&job.data.order_id));
        let mut rb = match read {
            Ok(rb) => rb,
            Err(TransportError::Cancelled) => {
                let mut f = cancelled_failure(PersoStep::ChipReadBack);
                f.transcript = Some(transcript);
                return Err(f);
            }
            Err(e) => {
                return Err(fail_rb(
                    format!("the card could not be read: {e}"),
                    &transcript,
                    Vec::new(),
                ));
            }
        };
        verify::check_against(
            &mut rb,
            &job.order,
            Some(chip),
            verify::arqc_key(self.keys.port(), &job.order, profile.mkd),
        );
        if !rb.passed() {
            let message = format!("check failed: {}", rb.failed_checks());
            return Err(fail_rb(message, &transcript, rb.checks));
        }
        let passed = rb
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Pass)
            .count();
        let summary = format!(
            "chip: {} DGIs stored ({} APDUs, {} ms), read-back passed ({passed} checks passed, {} skipped)",
            chip.dgis.len(),
            transcript.apdu_count(),
            report.elapsed.as_millis(),
            rb.checks.len() - passed
        );
        Ok((summary, transcript, rb.checks))
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
    PersoFailure::new(step, e.to_string(), advice)
}

fn flow_step(step: FlowStep) -> PersoStep {
    match step {
        FlowStep::ReadBack => PersoStep::ReadBack,
        _ => PersoStep::StripeWrite,
    }
}

impl DeskPersonalizer {
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
            return Err(PersoFailure::new(
                PersoStep::StripeWrite,
                "no encoder selected",
                "choose an encoder on the Devices screen, then retry",
            ));
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
        job: &PersoJob,
        target: &PersoTarget,
        ctl: &PersoControl,
    ) -> Result<PersoReport, PersoFailure> {
        ctl.step(PersoStep::Prepare);
        if ctl.cancelled() {
            return Err(cancelled_failure(PersoStep::Prepare));
        }
        let mut report = PersoReport::default();
        let chip = match &job.data.chip {
            Some(chip) => {
                let (summary, transcript, checks) = self.chip(job, chip, target, ctl)?;
                report.transcript = Some(transcript);
                report.checks = checks;
                summary
            }
            None => "chip: none (stripe only)".into(),
        };
        if ctl.cancelled() {
            let mut f = cancelled_failure(PersoStep::StripeWrite);
            f.transcript = report.transcript;
            f.checks = report.checks;
            return Err(f);
        }
        let stripe = self.stripe(&job.data, target, ctl).map_err(|mut f| {
            f.transcript = report.transcript.clone();
            f.checks = report.checks.clone();
            f
        })?;
        report.summary = format!("{chip}; {stripe}");
        Ok(report)
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
        job: PersoJob,
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
        let order_id = job.data.order_id.clone();
        std::thread::Builder::new()
            .name("persodesk-perso".into())
            .spawn(move || {
                let result = personalizer.personalize(&job, &target, &ctl);
                drop(job);
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
                        result: Err(PersoFailure::new(
                            self.step.unwrap_or(PersoStep::Prepare),
                            "the personalization worker stopped unexpectedly",
                            "check the card, then retry",
                        )),
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
                details(ui, &report.checks, report.transcript.as_ref());
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
                details(ui, &f.checks, f.transcript.as_ref());
            }
        }
    }
}

/// The read-back checks (names and outcomes, never values) and the masked APDU transcript.
fn details(ui: &mut egui::Ui, checks: &[Check], transcript: Option<&Transcript>) {
    if !checks.is_empty() {
        egui::CollapsingHeader::new(format!("Read-back checks ({})", checks.len()))
            .default_open(true)
            .show(ui, |ui| {
                for c in checks {
                    ui.monospace(c.to_string());
                }
            });
    }
    if let Some(t) = transcript {
        egui::CollapsingHeader::new(format!(
            "APDU transcript ({} commands, {} APDUs; headers, lengths and status words only)",
            t.entries.len(),
            t.apdu_count()
        ))
        .default_open(false)
        .show(ui, |ui| {
            egui::Grid::new("transcript").striped(true).show(ui, |ui| {
                for h in ["step", "DGI", "header", "Lc", "SW", "Le", "µs"] {
                    ui.strong(h);
                }
                ui.end_row();
                for e in &t.entries {
                    ui.label(&e.step);
                    ui.monospace(e.dgi.as_deref().unwrap_or(""));
                    ui.monospace(&e.header);
                    ui.monospace(e.lc.to_string());
                    ui.monospace(e.sw.as_deref().unwrap_or("-"));
                    ui.monospace(e.response_len.to_string());
                    ui.monospace(e.micros.to_string());
                    ui.end_row();
                }
            });
        });
    }
}
