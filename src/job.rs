//! One card's production run, whatever the devices: the role rules against the store, the chip
//! (secure channel, STORE DATA, read-back verification against the prepared data), then the
//! stripe (only after the chip succeeded), and the outcome in the store.
//!
//! Devices come in through two small ports, [`CardConnector`] (a fresh connection per phase, as a
//! terminal would get after a reset) and [`StripeWriter`]; the command line plugs in PC/SC and
//! the serial encoder, tests plug in the virtual card and fault injectors. Every failure names
//! its step; nothing here prints or logs card data.

use std::time::Instant;

use serde::Serialize;

use crate::devices::encoder::{
    EncoderEvent, FailureClass, SerialConfig, classify, write_card_stripe,
};
use crate::devices::transport::{CardTransport, TransportError};
use crate::domain::approval::{self, Evidence, review_message};
use crate::domain::chip::ChipProfile;
use crate::domain::chip::Interface;
use crate::domain::chip::channel::ChannelRule;
use crate::domain::gp::session::Progress;
use crate::domain::mode::Mode;
use crate::domain::order::Order;
use crate::domain::prepare::PersoData;
use crate::domain::readback::{Outcome, ReadBack};
use crate::domain::review::{OrderFacts, PersoGrant, Session, may_personalize};
use crate::domain::status::Event;
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

/// Opens connections to the card in the reader.
pub trait CardConnector {
    /// A new connection (the card is reset between personalization and read-back).
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError>;

    /// A new connection over `interface`, or `None` when this reader cannot present it (a
    /// contact reader and the contactless interface). By default: contact only.
    fn connect_on(
        &mut self,
        interface: Interface,
    ) -> Result<Option<Box<dyn CardTransport + '_>>, TransportError> {
        match interface {
            Interface::Contact => self.connect().map(Some),
            Interface::Contactless => Ok(None),
        }
    }
}

/// Writes and verifies a card's stripe.
pub trait StripeWriter {
    /// Writes the tracks of `data`, reads them back and compares.
    fn write_stripe(&mut self, data: &PersoData) -> Result<StripeOutcome, StepFailure>;
}

/// How a failure is classed (the command line maps it to an exit code).
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
}

/// Why a card failed: the step, a message naming steps, DGIs, tracks and status words (never
/// card data), and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The step (`EXTERNAL AUTHENTICATE`, `STORE DATA`, `read-back verification`, `stripe write`).
    pub step: String,
    /// What went wrong.
    pub message: String,
    /// Its class.
    pub kind: FailureKind,
}

impl StepFailure {
    /// A failure at `step`.
    pub fn new(step: impl Into<String>, message: impl Into<String>, kind: FailureKind) -> Self {
        Self {
            step: step.into(),
            message: message.into(),
            kind,
        }
    }

    /// `step: message`, as stored as the order's failure reason.
    pub fn reason(&self) -> String {
        format!("{}: {}", self.step, self.message)
    }
}

/// Classes a transport error.
pub fn transport_kind(e: &TransportError) -> FailureKind {
    match e {
        TransportError::BadResponse { .. } | TransportError::CardRemoved => FailureKind::CardFailed,
        TransportError::Timeout => FailureKind::Timeout,
        TransportError::Cancelled => FailureKind::Refused,
        _ => FailureKind::DeviceUnavailable,
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
    fn write_stripe(&mut self, data: &PersoData) -> Result<StripeOutcome, StepFailure> {
        let (tracks, bad_swipes) =
            write_card_stripe(self.config.clone(), data, self.observer.clone()).map_err(|e| {
                let (kind, step, class) = classify(&e);
                let step = step.map_or_else(|| "stripe".to_string(), |s| format!("stripe {s}"));
                let kind_of = match class {
                    FailureClass::Refused => FailureKind::Refused,
                    FailureClass::Unavailable => FailureKind::DeviceUnavailable,
                    FailureClass::CardFailed => FailureKind::CardFailed,
                    FailureClass::Timeout => FailureKind::Timeout,
                };
                StepFailure::new(step, format!("[{kind}] {e}"), kind_of)
            })?;
        Ok(StripeOutcome {
            port: self.config.path.clone(),
            tracks,
            bad_swipes,
        })
    }
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

/// The evidence of `data` as this store computes it (keyed digest under the audit key).
pub fn evidence(store: &Store, data: &PersoData) -> Evidence {
    Evidence::of(data, store.review_digest(&review_message(data)))
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
    approval::check(
        decision.as_ref(),
        &evidence(store, data),
        &who.user,
        dual_control,
    )
    .map_err(str::to_string)
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
    let store_failure = |e: StoreError| {
        StepFailure::new("authorization", format!("store: {e}"), FailureKind::Refused)
    };
    let state = store
        .state(order_id)
        .map_err(store_failure)?
        .ok_or_else(|| store_failure(StoreError::UnknownOrder(order_id.to_string())))?;
    // An unreadable configuration counts as production: the stricter rule.
    let mode = crate::config::mode().unwrap_or(Mode::Production);
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
                "authorization",
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

/// Records the outcome of a run: CARD_PROD_DONE, or CARD_PROD_FAILED with `step: message`.
pub fn record(
    store: &mut Store,
    who: &Session,
    order_id: &str,
    report: &JobReport,
) -> Result<OrderState, StoreError> {
    let event = match &report.failure {
        None => Event::Completed,
        Some(f) => Event::Failed { reason: f.reason() },
    };
    store.apply(order_id, &event, who)
}

/// Runs the chip (when the job has chip data and a connector is given), then the stripe (when a
/// writer is given). Stops at the first failure.
pub fn run(
    job: &CardJob<'_>,
    connector: Option<&mut dyn CardConnector>,
    stripe: Option<&mut dyn StripeWriter>,
    on_event: &mut dyn FnMut(JobEvent),
) -> JobReport {
    let mut report = JobReport::default();
    if let Some(chip_data) = &job.data.chip {
        let Some((profile, rule)) = &job.chip else {
            report.failure = Some(StepFailure::new(
                "prepare",
                "the chip data has no chip profile",
                FailureKind::Refused,
            ));
            return report;
        };
        let Some(connector) = connector else {
            report.failure = Some(StepFailure::new(
                "connect",
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
        };
        if let Err(f) = chip.run(connector, outcome, &mut report.transcript, on_event) {
            report.failure = Some(f);
            return report;
        }
    }
    if let Some(writer) = stripe {
        on_event(JobEvent::Stripe);
        match writer.write_stripe(job.data) {
            Ok(s) => report.stripe = Some(s),
            Err(f) => report.failure = Some(f),
        }
    }
    report
}

struct ChipPhase<'a> {
    job: &'a CardJob<'a>,
    profile: &'a ChipProfile,
    rule: &'a ChannelRule,
    chip: &'a crate::domain::chip::ChipData,
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
            .map_err(|e| StepFailure::new("card keys", e.to_string(), FailureKind::Refused))?;
        let started = Instant::now();
        let result = {
            let mut transport = connector
                .connect()
                .map_err(|e| StepFailure::new("connect", e.to_string(), transport_kind(&e)))?;
            let dgis = session_dgis(chip, rule.protocol);
            let ppse = crate::perso::ppse_session(self.profile, &options)
                .map_err(|e| StepFailure::new("PPSE", e.to_string(), FailureKind::Refused))?;
            let app =
                personalize_dgis_with(transport.as_mut(), options, dgis, job.keys, &mut |p| {
                    on_event(JobEvent::Perso(*p));
                });
            match (app, ppse) {
                (Ok(mut r), Some((options, dgis))) => {
                    // The PPSE instance, after the payment application.
                    personalize_dgis_with(transport.as_mut(), options, dgis, job.keys, &mut |_| {})
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
                let step = e
                    .step()
                    .map_or_else(|| "secure channel plan".to_string(), |s| s.to_string());
                return Err(StepFailure::new(step, e.to_string(), kind));
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
            READ_BACK,
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
            |e: TransportError| StepFailure::new(READ_BACK, e.to_string(), transport_kind(&e));
        let Some(mut transport) = connector.connect_on(interface).map_err(fail)? else {
            return Ok(None);
        };
        let ca = crate::verify::ca_for(job.keys, Some(chip), &chip.aid);
        let mut rb =
            crate::verify::read_card_on(transport.as_mut(), interface, ca, Some(&chip.aid))
                .map_err(fail)?;
        let key = crate::verify::arqc_key(job.keys, job.order, self.profile.mkd);
        crate::verify::check_against(&mut rb, job.order, Some(chip), key);
        Ok(Some(rb))
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
