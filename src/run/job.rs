//! One card's production run, whatever the devices: the role rules against the store, the chip
//! (secure channel, STORE DATA, read-back verification against the prepared data), then the
//! stripe (only after the chip succeeded), and the outcome in the store.
//!
//! Devices come in through two small ports, [`CardConnector`] (a fresh connection per phase, as a
//! terminal would get after a reset) and [`StripeWriter`]; the command line plugs in PC/SC
//! ([`PcscReader`]) and the serial encoder ([`SerialStripe`]), the window the same two or its
//! in-process virtual card, tests the virtual card and fault injectors. A [`CancelToken`] stops a
//! run between two APDUs and while the encoder waits for a swipe; progress goes to a callback
//! ([`JobEvent`]).
//!
//! Every failure is a [`StepFailure`]: a typed [`Step`] and a [`FailureKind`]. That one
//! vocabulary gives the command line its exit code and records-log line, the store its reason
//! ([`StepFailure::reason`]) and the window its advice. Nothing here prints or logs card data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

pub use crate::devices::connector::{CardConnector, PcscReader, VirtualCardReader};
use crate::devices::encoder::{
    CancelHandle, EncoderError, EncoderEvent, FailureClass, SerialConfig, classify,
    write_card_stripe,
};
use crate::devices::transport::{CardTransport, TransportError};
use crate::domain::approval::{self, Evidence, review_message};
use crate::domain::chip::ChipProfile;
use crate::domain::chip::Interface;
use crate::domain::chip::channel::ChannelRule;
use crate::domain::gp::session::{Progress, Protocol, StepName};
use crate::domain::mode::Mode;
use crate::domain::msr206::FlowStep;
use crate::domain::order::Order;
use crate::domain::prepare::PersoData;
use crate::domain::readback::{Outcome, ReadBack};
use crate::domain::review::{OrderFacts, PersoGrant, Role, Session, may_personalize};
use crate::domain::status::{Event, Status};
use crate::keys::KeyStorePort;
use crate::perso::{PersoError, Transcript, channel_options, personalize_dgis_with, session_dgis};
use crate::store::{OrderState, Store, StoreError};

/// Today's date (UTC) from the system clock.
pub fn today() -> crate::domain::chip::model1::PrepDate {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::domain::chip::model1::PrepDate::from_unix_secs(secs)
}

/// The step name of a failed read-back.
pub const READ_BACK: &str = "read-back verification";

/// Writes and verifies a card's stripe.
pub trait StripeWriter {
    /// Writes the tracks of `data`, reads them back and compares; stops when `cancel` is
    /// cancelled (also while waiting for a swipe).
    fn write_stripe(
        &mut self,
        data: &PersoData,
        cancel: &CancelToken,
    ) -> Result<StripeOutcome, StepFailure>;
}

/// The step a card failed at.
///
/// Its `Display` is the stable name the store's reason, the records log (`failedStep`) and the
/// exit code line carry (`EXTERNAL AUTHENTICATE`, `STORE DATA`, `read-back verification`,
/// `stripe write`); [`Step::label`] adds the window's detail (`STORE DATA 3 of 23`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The role rules against the store.
    Authorization,
    /// The card in the reader before anything is written: fresh, and of the plan's secure
    /// channel (a refusal here leaves the order as it was, [`FailureKind::CardNotFresh`]).
    CardCheck,
    /// The prepared data cannot be run (no chip profile for chip data).
    Prepare,
    /// The card keys of the secure channel (key store).
    CardKeys,
    /// Opening a connection to the card.
    Connect,
    /// Planning the PPSE instance.
    Ppse,
    /// Planning the secure channel session.
    ChannelPlan,
    /// A command of the GlobalPlatform session other than STORE DATA.
    Session(StepName),
    /// STORE DATA command `n` of `m`.
    StoreData {
        /// 1-based.
        n: u16,
        /// Commands of the session.
        m: u16,
    },
    /// The terminal-style read-back and its checks.
    ReadBack,
    /// The stripe, at the encoder's flow step when known.
    Stripe(Option<FlowStep>),
}

impl Step {
    /// The step with its detail, for the window (`STORE DATA 3 of 23`).
    pub fn label(&self) -> String {
        match self {
            Step::StoreData { n, m } if *m > 0 => format!("STORE DATA {n} of {m}"),
            other => other.to_string(),
        }
    }

    /// A step of the chip (connection, secure channel, STORE DATA, read-back).
    pub fn is_chip(&self) -> bool {
        !matches!(self, Step::Authorization | Step::Stripe(_))
    }

    /// The session step of `name`, with the STORE DATA count of the last progress seen.
    fn of_session(name: StepName, last: Option<&Progress>) -> Step {
        match (name, last) {
            (StepName::StoreData, Some(p)) => Step::StoreData {
                n: p.store_data_sent.max(1),
                m: p.store_data_total,
            },
            (StepName::StoreData, None) => Step::StoreData { n: 0, m: 0 },
            (name, _) => Step::Session(name),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Authorization => f.write_str("authorization"),
            Step::CardCheck => f.write_str("card check"),
            Step::Prepare => f.write_str("prepare"),
            Step::CardKeys => f.write_str("card keys"),
            Step::Connect => f.write_str("connect"),
            Step::Ppse => f.write_str("PPSE"),
            Step::ChannelPlan => f.write_str("secure channel plan"),
            Step::Session(name) => write!(f, "{name}"),
            Step::StoreData { .. } => f.write_str("STORE DATA"),
            Step::ReadBack => f.write_str(READ_BACK),
            Step::Stripe(None) => f.write_str("stripe"),
            Step::Stripe(Some(s)) => write!(f, "stripe {s}"),
        }
    }
}

/// How a failure is classed (the command line maps it to an exit code, the window to advice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Refused before any device was touched: data, keys or role rules.
    Refused,
    /// The reader or encoder cannot be reached.
    DeviceUnavailable,
    /// The card or the encoder failed the card.
    CardFailed,
    /// A device did not answer in time.
    Timeout,
    /// The operator cancelled the run (the card may be partly personalized).
    Cancelled,
    /// The card in the reader is not a fresh card of the plan's stock (already personalized,
    /// another secure channel); nothing was written and the order is left as it was.
    CardNotFresh,
}

impl From<FailureClass> for FailureKind {
    fn from(class: FailureClass) -> Self {
        match class {
            FailureClass::Refused => FailureKind::Refused,
            FailureClass::Unavailable => FailureKind::DeviceUnavailable,
            FailureClass::CardFailed => FailureKind::CardFailed,
            FailureClass::Timeout => FailureKind::Timeout,
            FailureClass::Cancelled => FailureKind::Cancelled,
        }
    }
}

/// Why a card failed: the step, a message naming steps, DGIs, tracks and status words (never
/// card data), and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The step.
    pub step: Step,
    /// What went wrong.
    pub message: String,
    /// Its class.
    pub kind: FailureKind,
    /// At least one STORE DATA had been sent to the card: its chip is (partly) written.
    pub chip_written: bool,
}

/// What a cancelled run whose chip was (partly) written tells the operator and the store.
pub const CHIP_PARTLY_WRITTEN: &str =
    "chip partly written: destroy this card and retry with a fresh one";

impl StepFailure {
    /// A failure at `step`.
    pub fn new(step: Step, message: impl Into<String>, kind: FailureKind) -> Self {
        Self {
            step,
            message: message.into(),
            kind,
            chip_written: false,
        }
    }

    /// `step: message`, as stored as the order's failure reason; a cancelled run whose chip
    /// was written adds [`CHIP_PARTLY_WRITTEN`].
    pub fn reason(&self) -> String {
        if self.spoiled_by_cancel() {
            format!("{}: {}; {CHIP_PARTLY_WRITTEN}", self.step, self.message)
        } else {
            format!("{}: {}", self.step, self.message)
        }
    }

    /// Cancelled after a STORE DATA was sent: the card is spoiled.
    pub fn spoiled_by_cancel(&self) -> bool {
        self.kind == FailureKind::Cancelled && self.chip_written
    }
}

/// Classes a transport error.
pub fn transport_kind(e: &TransportError) -> FailureKind {
    match e {
        TransportError::BadResponse { .. } | TransportError::CardRemoved => FailureKind::CardFailed,
        TransportError::Timeout => FailureKind::Timeout,
        TransportError::Cancelled => FailureKind::Cancelled,
        _ => FailureKind::DeviceUnavailable,
    }
}

/// Stops a run: between two APDUs ([`CancelTransport`]) and while the encoder waits for a swipe.
/// Clones share the flag (the window's Cancel button holds one, the worker another).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The encoder's cancel handle on the same flag.
    pub fn encoder_handle(&self) -> CancelHandle {
        CancelHandle::sharing(Arc::clone(&self.0))
    }
}

/// A transport that refuses every command once the run is cancelled, so a session stops between
/// two APDUs with "cancelled by the operator" and the refused command never reaches the card.
pub struct CancelTransport<'a> {
    inner: &'a mut dyn CardTransport,
    cancel: &'a CancelToken,
}

impl<'a> CancelTransport<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn CardTransport, cancel: &'a CancelToken) -> Self {
        CancelTransport { inner, cancel }
    }
}

impl CardTransport for CancelTransport<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.cancel.is_cancelled() {
            return Err(TransportError::Cancelled);
        }
        self.inner.transmit_raw(apdu)
    }

    fn reader_name(&self) -> &str {
        self.inner.reader_name()
    }
}

/// A tester's choice of secure channel instead of the chip profile's (`--scp`, `--kmc-index`
/// on the command line; the Devices screen in the window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelOverride {
    /// SCP02 / SCP03 and "i".
    pub protocol: Option<Protocol>,
    /// The `kmc` key index.
    pub kmc_index: Option<u32>,
}

impl ChannelOverride {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.protocol.is_none() && self.kmc_index.is_none()
    }

    /// Only testers override the chip profile's channel.
    pub fn allowed_for(&self, role: Role) -> Result<(), &'static str> {
        if self.is_empty() || role == Role::Tester {
            Ok(())
        } else {
            Err("the secure channel overrides are for testers only (the chip profile decides)")
        }
    }

    /// The profile's channel rule with the overrides applied.
    pub fn apply(&self, profile: &ChipProfile) -> ChannelRule {
        let mut rule = profile.channel.clone();
        if let Some(p) = self.protocol {
            rule = rule.with_protocol(p);
        }
        if let Some(i) = self.kmc_index {
            rule.kmc_index = i;
        }
        rule
    }
}

/// One read-back check as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    /// The check's name.
    pub check: String,
    /// `pass`, `fail` or `skipped`.
    pub status: &'static str,
    /// Why, for fail and skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the chip phase did (also when it failed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChipOutcome {
    /// 1 or 2.
    pub model: u8,
    /// The chip profile.
    pub profile: String,
    /// The secure channel used.
    pub channel: String,
    /// DGIs to store.
    pub dgis: usize,
    /// APDUs of the personalization session.
    pub apdus: u32,
    /// Milliseconds of the personalization session.
    pub millis: u64,
    /// Every read-back check.
    pub read_back: Vec<CheckLine>,
    /// Commands of the read-back.
    pub read_back_apdus: u32,
}

/// What the stripe phase did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StripeOutcome {
    /// The encoder.
    pub port: String,
    /// Tracks written and verified.
    pub tracks: Vec<u8>,
    /// Bad swipes retried.
    pub bad_swipes: u32,
}

/// The MSR206-family encoder on a serial port (the real serial code path; `sim-encoder`'s pty in
/// tests).
pub struct SerialStripe<F> {
    /// Port, baud and timeouts.
    pub config: SerialConfig,
    /// Sees the encoder's events ("waiting for the operator to swipe").
    pub observer: F,
}

impl<F: FnMut(&EncoderEvent) + Send + Clone + 'static> StripeWriter for SerialStripe<F> {
    fn write_stripe(
        &mut self,
        data: &PersoData,
        cancel: &CancelToken,
    ) -> Result<StripeOutcome, StepFailure> {
        let (tracks, bad_swipes) = write_card_stripe(
            self.config.clone(),
            data,
            self.observer.clone(),
            Some(cancel.encoder_handle()),
        )
        .map_err(|e| stripe_failure(&e))?;
        Ok(StripeOutcome {
            port: self.config.path.clone(),
            tracks,
            bad_swipes,
        })
    }
}

/// The failure of an encoder error: the flow step, `[kind] message`, the class.
pub fn stripe_failure(e: &EncoderError) -> StepFailure {
    let (kind, step, class) = classify(e);
    StepFailure::new(Step::Stripe(step), format!("[{kind}] {e}"), class.into())
}

/// A card to make: the order, its prepared data, and for chip data the profile and channel.
pub struct CardJob<'a> {
    /// The order.
    pub order: &'a Order,
    /// Its prepared data.
    pub data: &'a PersoData,
    /// The key store (card keys, CA keys, test IMKs for the ARQC).
    pub keys: &'a dyn KeyStorePort,
    /// The chip profile and the secure channel, when the data has a chip part.
    pub chip: Option<(&'a ChipProfile, ChannelRule)>,
}

/// Progress of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// A command of the personalization session is in flight.
    Perso(Progress),
    /// The read-back has started.
    ReadBack,
    /// The stripe write has started.
    Stripe,
}

/// Everything a run did.
#[derive(Debug, Default)]
pub struct JobReport {
    /// The chip phase, when there was chip data.
    pub chip: Option<ChipOutcome>,
    /// The stripe phase, when it succeeded.
    pub stripe: Option<StripeOutcome>,
    /// The masked APDU transcript of the personalization session.
    pub transcript: Option<Transcript>,
    /// `None` on success, else where and why it failed.
    pub failure: Option<StepFailure>,
}

impl JobReport {
    /// True when every phase succeeded.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// The evidence of `data` as this store computes it (keyed digest under the audit key); an
/// audit key that cannot compute it is an error, never a digest to compare against.
pub fn evidence(store: &Store, data: &PersoData) -> Result<Evidence, StoreError> {
    Ok(Evidence::of(
        data,
        store.review_digest(&review_message(data))?,
    ))
}

/// Whether the audit trail holds an approval covering exactly `data` by someone other than
/// `who` in production ([`crate::domain::approval::check`]); the trail must verify first.
pub fn approval_of(
    store: &Store,
    who: &Session,
    order_id: &str,
    data: &PersoData,
    mode: Mode,
) -> Result<(), String> {
    let verdict = store.verify_audit().map_err(|e| format!("store: {e}"))?;
    if let Some(problem) = &verdict.problem {
        return Err(format!("the audit trail does not verify: {problem}"));
    }
    let decision = store
        .decision(order_id)
        .map_err(|e| format!("store: {e}"))?;
    let dual_control = mode == Mode::Production;
    let evidence = evidence(store, data).map_err(|e| format!("store: {e}"))?;
    approval::check(decision.as_ref(), &evidence, &who.user, dual_control).map_err(str::to_string)
}

/// Checks the role rules against the store and marks the order CARD_PROD_ONGOING. An order
/// counts as approved only when the audit trail holds a matching approval
/// ([`approval_of`]): the store's status and `approved` flag alone are not evidence. A refusal
/// is audited and returned as a failure at step `authorization`.
pub fn authorize(
    store: &mut Store,
    who: &Session,
    order_id: &str,
    data: &PersoData,
) -> Result<PersoGrant, StepFailure> {
    // An unreadable configuration counts as production: the stricter rule.
    let mode = crate::config::mode().unwrap_or(Mode::Production);
    authorize_in(store, who, order_id, data, mode)
}

/// [`authorize`] in `mode` (the window passes the mode it runs in).
pub fn authorize_in(
    store: &mut Store,
    who: &Session,
    order_id: &str,
    data: &PersoData,
    mode: Mode,
) -> Result<PersoGrant, StepFailure> {
    let store_failure = |e: StoreError| {
        StepFailure::new(
            Step::Authorization,
            format!("store: {e}"),
            FailureKind::Refused,
        )
    };
    let state = store
        .state(order_id)
        .map_err(store_failure)?
        .ok_or_else(|| store_failure(StoreError::UnknownOrder(order_id.to_string())))?;
    let approval = approval_of(store, who, order_id, data, mode);
    let facts = OrderFacts {
        status: state.status,
        approved: approval.is_ok(),
        test_keys_only: data.non_test_keys().is_empty(),
    };
    let grant = match may_personalize(who.role, facts) {
        Ok(g) => g,
        Err(denied) => {
            let why = approval.err().map(|r| format!(": {r}")).unwrap_or_default();
            let message = format!("{denied} (order is {}){why}", state.status);
            let _ = store.audit(who, "perso-refused", Some(order_id), &message);
            return Err(StepFailure::new(
                Step::Authorization,
                message,
                FailureKind::Refused,
            ));
        }
    };
    let started = Event::Started {
        approval_bypass: grant.approval_bypass,
    };
    store
        .apply(order_id, &started, who)
        .map_err(store_failure)?;
    Ok(grant)
}

/// Records the outcome of a run ([`outcome_event`]) in the store.
pub fn record(
    store: &mut Store,
    who: &Session,
    order_id: &str,
    report: &JobReport,
) -> Result<OrderState, StoreError> {
    let event = outcome_event(store, order_id, report.failure.as_ref())?;
    store.apply(order_id, &event, who)
}

/// The store event of a run's outcome, the one mapping every front end records (the command
/// line and the window through [`record`], `station run` through its fenced final write):
/// CARD_PROD_DONE, or CARD_PROD_FAILED with `step: message`; a card the card check refused
/// ([`FailureKind::CardNotFresh`]) puts the order back where it was (CARD_PROD_READY, or
/// DATA_PREPARED for a tester's unapproved order), audited as `perso-refused` with the reason.
pub fn outcome_event(
    store: &Store,
    order_id: &str,
    failure: Option<&StepFailure>,
) -> Result<Event, StoreError> {
    Ok(match failure {
        None => Event::Completed,
        Some(f) if f.kind == FailureKind::CardNotFresh => {
            let approved = store.state(order_id)?.is_some_and(|s| s.approved);
            Event::NotStarted {
                back_to: if approved {
                    Status::Ready
                } else {
                    Status::DataPrepared
                },
                reason: f.reason(),
            }
        }
        Some(f) => Event::Failed { reason: f.reason() },
    })
}

/// Runs the chip (when the job has chip data and a connector is given), then the stripe (when a
/// writer is given). Stops at the first failure. Never cancelled: [`run_cancellable`].
pub fn run(
    job: &CardJob<'_>,
    connector: Option<&mut dyn CardConnector>,
    stripe: Option<&mut dyn StripeWriter>,
    on_event: &mut dyn FnMut(JobEvent),
) -> JobReport {
    run_cancellable(job, connector, stripe, &CancelToken::new(), on_event)
}

/// [`run`], stopping with a [`FailureKind::Cancelled`] failure once `cancel` is cancelled:
/// before the next APDU, between the chip and the stripe, or while the encoder waits.
pub fn run_cancellable(
    job: &CardJob<'_>,
    connector: Option<&mut dyn CardConnector>,
    stripe: Option<&mut dyn StripeWriter>,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(JobEvent),
) -> JobReport {
    let mut report = JobReport::default();
    if let Some(chip_data) = &job.data.chip {
        let Some((profile, rule)) = &job.chip else {
            report.failure = Some(StepFailure::new(
                Step::Prepare,
                "the chip data has no chip profile",
                FailureKind::Refused,
            ));
            return report;
        };
        let Some(connector) = connector else {
            report.failure = Some(StepFailure::new(
                Step::Connect,
                "the order has chip data but no reader was given",
                FailureKind::DeviceUnavailable,
            ));
            return report;
        };
        let outcome = report.chip.insert(ChipOutcome {
            model: chip_data.model.number(),
            profile: chip_data.profile.clone(),
            channel: rule.to_string(),
            dgis: chip_data.dgis.len(),
            ..ChipOutcome::default()
        });
        let chip = ChipPhase {
            job,
            profile,
            rule,
            chip: chip_data,
            cancel,
        };
        if let Err(f) = chip.run(connector, outcome, &mut report.transcript, on_event) {
            report.failure = Some(f);
            return report;
        }
    }
    if let Some(writer) = stripe {
        // The chip phase went through: the chip is written whatever the stripe does.
        let chip_written = report.chip.is_some();
        if cancel.is_cancelled() {
            let mut f = StepFailure::new(
                Step::Stripe(None),
                TransportError::Cancelled.to_string(),
                FailureKind::Cancelled,
            );
            f.chip_written = chip_written;
            report.failure = Some(f);
            return report;
        }
        on_event(JobEvent::Stripe);
        match writer.write_stripe(job.data, cancel) {
            Ok(s) => report.stripe = Some(s),
            Err(mut f) => {
                f.chip_written = chip_written;
                report.failure = Some(f);
            }
        }
    }
    report
}

struct ChipPhase<'a> {
    job: &'a CardJob<'a>,
    profile: &'a ChipProfile,
    rule: &'a ChannelRule,
    chip: &'a crate::domain::chip::ChipData,
    cancel: &'a CancelToken,
}

impl ChipPhase<'_> {
    fn run(
        &self,
        connector: &mut dyn CardConnector,
        outcome: &mut ChipOutcome,
        transcript: &mut Option<Transcript>,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> Result<(), StepFailure> {
        let (job, chip, rule) = (self.job, self.chip, self.rule);
        let options = channel_options(rule, chip, job.keys)
            .map_err(|e| StepFailure::new(Step::CardKeys, e.to_string(), FailureKind::Refused))?;
        let started = Instant::now();
        let mut last: Option<Progress> = None;
        // STORE DATA commands sent (both sessions): after the first, the chip is written.
        let mut store_data_sent = 0u32;
        let result = {
            let mut inner = connector
                .connect()
                .map_err(|e| StepFailure::new(Step::Connect, e.to_string(), transport_kind(&e)))?;
            let mut transport = CancelTransport::new(inner.as_mut(), self.cancel);
            let dgis = session_dgis(chip, rule.protocol);
            let ppse = crate::perso::ppse_session(self.profile, &options)
                .map_err(|e| StepFailure::new(Step::Ppse, e.to_string(), FailureKind::Refused))?;
            let app = personalize_dgis_with(&mut transport, options, dgis, job.keys, &mut |p| {
                store_data_sent += u32::from(p.step == StepName::StoreData);
                last = Some(*p);
                on_event(JobEvent::Perso(*p));
            });
            match (app, ppse) {
                (Ok(mut r), Some((options, dgis))) => {
                    // The PPSE instance, after the payment application.
                    personalize_dgis_with(&mut transport, options, dgis, job.keys, &mut |p| {
                        store_data_sent += u32::from(p.step == StepName::StoreData);
                        last = Some(*p)
                    })
                    .map(|p| {
                        r.transcript.entries.extend(p.transcript.entries);
                        r
                    })
                }
                (app, _) => app,
            }
        };
        match result {
            Ok(r) => {
                outcome.apdus = r.transcript.apdu_count();
                outcome.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                *transcript = Some(r.transcript);
            }
            Err(e) => {
                let kind = match &e {
                    PersoError::Plan(_) => FailureKind::Refused,
                    PersoError::Transport { error, .. } => transport_kind(error),
                    PersoError::Session { .. } => FailureKind::CardFailed,
                };
                outcome.apdus = e.transcript().map_or(0, Transcript::apdu_count);
                *transcript = e.transcript().cloned();
                if let Some(why) = not_fresh(&e, store_data_sent) {
                    return Err(StepFailure::new(
                        Step::CardCheck,
                        format!("{why} ({e}); nothing was written: insert a fresh card"),
                        FailureKind::CardNotFresh,
                    ));
                }
                let step = e
                    .step()
                    .map_or(Step::ChannelPlan, |s| Step::of_session(s, last.as_ref()));
                let mut failure = StepFailure::new(step, e.to_string(), kind);
                failure.chip_written = store_data_sent > 0;
                return Err(failure);
            }
        }
        on_event(JobEvent::ReadBack);
        self.read_back(connector, outcome)
    }

    /// Reads the card back as a terminal on every interface the profile personalizes (the
    /// interfaces of its `aip` table) and checks it against the order and the prepared data.
    /// Over contactless the check names start with `contactless: `.
    fn read_back(
        &self,
        connector: &mut dyn CardConnector,
        outcome: &mut ChipOutcome,
    ) -> Result<(), StepFailure> {
        let mut interfaces: Vec<Interface> = self.profile.aip.keys().copied().collect();
        if !interfaces.contains(&Interface::Contact) {
            interfaces.insert(0, Interface::Contact);
        }
        let mut failed = Vec::new();
        outcome.read_back.clear();
        outcome.read_back_apdus = 0;
        for interface in interfaces {
            let Some(rb) = self.read_back_on(connector, interface)? else {
                outcome.read_back.push(CheckLine {
                    check: format!("{} read-back", interface.as_str()),
                    status: "skipped",
                    reason: Some("the reader does not present this interface".into()),
                });
                continue;
            };
            let prefix = match interface {
                Interface::Contact => String::new(),
                Interface::Contactless => "contactless: ".to_string(),
            };
            for mut line in check_lines(&rb) {
                line.check = format!("{prefix}{}", line.check);
                outcome.read_back.push(line);
            }
            outcome.read_back_apdus += rb.commands;
            if !rb.passed() {
                failed.push(format!("{prefix}{}", rb.failed_checks()));
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(StepFailure::new(
            Step::ReadBack,
            format!("failed: {}", failed.join("; ")),
            FailureKind::CardFailed,
        ))
    }

    /// One interface's read-back with the checks against the order; `None` when the reader
    /// cannot present it.
    fn read_back_on(
        &self,
        connector: &mut dyn CardConnector,
        interface: Interface,
    ) -> Result<Option<ReadBack>, StepFailure> {
        let (job, chip) = (self.job, self.chip);
        let fail =
            |e: TransportError| StepFailure::new(Step::ReadBack, e.to_string(), transport_kind(&e));
        let Some(mut inner) = connector.connect_on(interface).map_err(fail)? else {
            return Ok(None);
        };
        let mut transport = CancelTransport::new(inner.as_mut(), self.cancel);
        let ca = crate::verify::ca_for(job.keys, Some(chip), &chip.aid);
        let mut rb = crate::verify::read_card_on(&mut transport, interface, ca, Some(&chip.aid))
            .map_err(fail)?;
        let key = crate::verify::arqc_key(job.keys, job.order, self.profile.mkd);
        crate::verify::check_against(&mut rb, job.order, Some(chip), key);
        Ok(Some(rb))
    }
}

/// Why the card in the reader is not a fresh card of the plan (`None`: another failure). Only
/// before the card accepted any STORE DATA: `6985` (conditions of use not satisfied) to SELECT,
/// INITIALIZE UPDATE, INSTALL [for personalization] or the first STORE DATA is a card already
/// personalized (GlobalPlatform card life cycle past SELECTABLE/PERSONALIZED for this instance);
/// a protocol other than the plan's in the INITIALIZE UPDATE answer, or `6A88` (the plan's key
/// version not found) to INITIALIZE UPDATE, is another secure channel than the plan's.
pub fn not_fresh(e: &PersoError, store_data_sent: u32) -> Option<&'static str> {
    use crate::domain::gp::apdu::StatusWord;
    use crate::domain::gp::session::SessionError;
    let PersoError::Session { error, .. } = e else {
        return None;
    };
    match error {
        SessionError::ProtocolMismatch { .. } if store_data_sent == 0 => {
            Some("the card's secure channel differs from the plan")
        }
        SessionError::Status {
            step: StepName::InitializeUpdate,
            sw: StatusWord::ReferencedDataNotFound,
            ..
        } if store_data_sent == 0 => Some("the card does not hold the plan's key version"),
        SessionError::Status {
            step,
            sw: StatusWord::ConditionsNotSatisfied,
            ..
        } => {
            let first = match step {
                StepName::StoreData => store_data_sent <= 1,
                StepName::Finished => false,
                _ => store_data_sent == 0,
            };
            first.then_some("the card is already personalized")
        }
        _ => None,
    }
}

impl std::fmt::Display for CheckLine {
    /// `PASS  name`, `FAIL  name: why`, `SKIP  name: why` (names and reasons, never values).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.status {
            "pass" => "PASS",
            "fail" => "FAIL",
            _ => "SKIP",
        };
        write!(f, "{tag}  {}", self.check)?;
        match &self.reason {
            Some(why) => write!(f, ": {why}"),
            None => Ok(()),
        }
    }
}

/// The read-back checks as recorded.
pub fn check_lines(rb: &ReadBack) -> Vec<CheckLine> {
    rb.checks
        .iter()
        .map(|k| {
            let (status, reason) = match &k.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(w) => ("fail", Some(w.clone())),
                Outcome::Skipped(w) => ("skipped", Some(w.clone())),
            };
            CheckLine {
                check: k.name.clone(),
                status,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_names_itself_as_the_store_and_the_records_log_carry_it() {
        let ext = Step::Session(StepName::ExternalAuthenticate);
        assert_eq!(ext.to_string(), "EXTERNAL AUTHENTICATE");
        let sd = Step::StoreData { n: 3, m: 23 };
        // The stable name (records log `failedStep`, the stored reason) has no count...
        assert_eq!(sd.to_string(), "STORE DATA");
        // ...the window's label has.
        assert_eq!(sd.label(), "STORE DATA 3 of 23");
        assert_eq!(
            Step::Stripe(Some(FlowStep::Write)).to_string(),
            "stripe write"
        );
        assert_eq!(Step::Stripe(None).to_string(), "stripe");
        assert_eq!(Step::ReadBack.to_string(), READ_BACK);
        let f = StepFailure::new(ext, "card answered 6300", FailureKind::CardFailed);
        assert_eq!(f.reason(), "EXTERNAL AUTHENTICATE: card answered 6300");
        assert!(ext.is_chip() && !Step::Stripe(None).is_chip() && !Step::Authorization.is_chip());
    }

    #[test]
    fn the_encoder_classes_and_transport_errors_map_into_one_vocabulary() {
        assert_eq!(
            FailureKind::from(FailureClass::Unavailable),
            FailureKind::DeviceUnavailable
        );
        assert_eq!(
            FailureKind::from(FailureClass::Cancelled),
            FailureKind::Cancelled
        );
        assert_eq!(
            transport_kind(&TransportError::Cancelled),
            FailureKind::Cancelled
        );
        assert_eq!(
            transport_kind(&TransportError::CardRemoved),
            FailureKind::CardFailed
        );
        assert_eq!(
            transport_kind(&TransportError::NoCard("r".into())),
            FailureKind::DeviceUnavailable
        );
    }

    #[test]
    fn only_testers_override_the_channel() {
        let none = ChannelOverride::default();
        assert!(none.allowed_for(Role::Operator).is_ok());
        let scp03 = ChannelOverride {
            protocol: Some(Protocol::Scp03 { i: 0x70 }),
            kmc_index: Some(2),
        };
        assert!(scp03.allowed_for(Role::Operator).is_err());
        assert!(scp03.allowed_for(Role::Tester).is_ok());
    }

    #[test]
    fn a_cancel_token_stops_the_next_apdu_and_is_shared_by_clones() {
        struct Echo(u32);
        impl CardTransport for Echo {
            fn transmit_raw(&mut self, _apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
                self.0 += 1;
                Ok(vec![0x90, 0x00])
            }
            fn reader_name(&self) -> &str {
                "echo"
            }
        }
        let token = CancelToken::new();
        let button = token.clone();
        let mut inner = Echo(0);
        {
            let mut t = CancelTransport::new(&mut inner, &token);
            assert!(t.transmit_raw(&[0, 0xA4, 4, 0]).is_ok());
            button.cancel();
            assert_eq!(
                t.transmit_raw(&[0, 0xA4, 4, 0]),
                Err(TransportError::Cancelled)
            );
        }
        assert_eq!(inner.0, 1, "the refused command never reached the card");
    }
}
