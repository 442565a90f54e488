//! The Personalize screen: one card at a time through the production flow of [`crate::job`]
//! ([`job::run_cancellable`] on a named thread, `persodesk-perso`), with a progress bar through
//! the job's steps (secure channel, STORE DATA n of m, read-back verification, stripe write), a
//! Cancel button (the job's [`CancelToken`]: between two APDUs and while the encoder waits) and a
//! clear result. The job's typed failure ([`job::StepFailure`]) names the step; the screen adds
//! what to do ([`advice`]). The window authorizes and records through the job as the command line
//! does ([`crate::gui::App::personalize`]).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use crate::devices::encoder::{EncoderEvent, SerialConfig};
use crate::domain::chip::ChipProfile;
use crate::domain::chip::channel::ChannelRule;
use crate::domain::gp::session::StepName;
use crate::domain::msr206::FlowStep;
use crate::domain::order::Order;
use crate::domain::prepare::PersoData;
use crate::domain::review::Session;
use crate::job::{
    self, CancelToken, CardConnector, CardJob, CheckLine, FailureKind, JobEvent, JobReport,
    PcscReader, SerialStripe, Step, StepFailure, StripeWriter,
};
use crate::keys::LoadedKeys;
use crate::perso::Transcript;

use super::Command;
use super::devices::{ReaderChoice, SharedVirtualReader, VirtualConnector, lock_reader};
use super::progress::{self, RunProgress};
use super::worker::Waker;
use crate::domain::track::TrackNo;

/// What the operator should do after `f` (the only thing the window adds to the job's failure).
pub fn advice(f: &StepFailure) -> &'static str {
    if f.spoiled_by_cancel() {
        return job::CHIP_PARTLY_WRITTEN;
    }
    match (f.kind, f.step) {
        (FailureKind::CardNotFresh, _) => {
            "insert a fresh card of the product's card stock (the order is still ready), then retry"
        }
        (FailureKind::Cancelled, s) if s.is_chip() => {
            "the chip may be partly personalized: set the card aside (insert a fresh card), then retry"
        }
        (FailureKind::Cancelled, _) => "cancelled; retry when ready",
        (FailureKind::Refused, Step::Authorization) => {
            "ask a supervisor to approve the order (or work as tester on test keys)"
        }
        (FailureKind::Refused, Step::CardKeys) => {
            "the card keys are not in the key store: check the profile's [channel] kmc_index"
        }
        (FailureKind::Refused, Step::Stripe(_)) => {
            "the prepared tracks do not fit the encoder: check the product patterns"
        }
        (FailureKind::Refused, _) => "check the chip profile and the prepared data, then retry",
        (FailureKind::DeviceUnavailable, Step::Stripe(_)) => {
            "choose a connected encoder on the Devices screen, then retry"
        }
        (FailureKind::DeviceUnavailable, _) => {
            "insert a card in the reader (on the Devices screen: a fresh virtual card, or another reader), then retry"
        }
        (FailureKind::Timeout, Step::Stripe(_)) => {
            "swipe the card through the encoder when asked, then retry"
        }
        (FailureKind::Timeout, _) => {
            "check the card is inserted and the reader connected, then retry with a new card"
        }
        (FailureKind::CardFailed, Step::ReadBack) => {
            "the chip does not hold what was prepared: destroy this card, use a new one and retry"
        }
        (FailureKind::CardFailed, Step::Stripe(Some(FlowStep::ReadBack))) => {
            "the stripe did not verify: destroy this card, use a new one and retry"
        }
        (FailureKind::CardFailed, Step::Stripe(_)) => {
            "the card was not written: use a new card (hi-co stripe) and retry"
        }
        (FailureKind::CardFailed, _) => {
            "the card refused the session: use a new card of the product's card stock and retry"
        }
    }
}

/// Why a personalization failed, as the screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersoFailure {
    /// The step that failed (the job's).
    pub step: Step,
    /// What happened (names steps and rules, never data).
    pub message: String,
    /// What the operator should do.
    pub advice: String,
    /// The chip session's masked transcript up to the failure (headers, lengths, status words).
    pub transcript: Option<Transcript>,
    /// The read-back checks, when the card was read.
    pub checks: Vec<CheckLine>,
    /// The card check refused the card: nothing was written, the order was not started.
    pub not_started: bool,
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
    pub checks: Vec<CheckLine>,
}

/// The screen's view of a job's report.
pub fn view(report: &JobReport) -> Result<PersoReport, PersoFailure> {
    let checks = report
        .chip
        .as_ref()
        .map(|c| c.read_back.clone())
        .unwrap_or_default();
    if let Some(f) = &report.failure {
        return Err(PersoFailure {
            step: f.step,
            message: f.message.clone(),
            advice: advice(f).to_string(),
            transcript: report.transcript.clone(),
            checks,
            not_started: f.kind == FailureKind::CardNotFresh,
        });
    }
    let chip = match &report.chip {
        Some(c) => {
            let passed = c.read_back.iter().filter(|k| k.status == "pass").count();
            format!(
                "chip: {} DGIs stored ({} APDUs, {} ms), read-back passed ({passed} checks passed, {} skipped)",
                c.dgis,
                c.apdus,
                c.millis,
                c.read_back.len() - passed
            )
        }
        None => "chip: none (stripe only)".into(),
    };
    let stripe = match &report.stripe {
        Some(s) => {
            let list: Vec<String> = s.tracks.iter().map(ToString::to_string).collect();
            format!("tracks {} written and verified", list.join(", "))
        }
        None => "stripe: not written (no encoder chosen)".into(),
    };
    Ok(PersoReport {
        summary: format!("{chip}; {stripe}"),
        transcript: report.transcript.clone(),
        checks,
    })
}

/// The reader the chip goes to.
#[derive(Clone, Default)]
pub enum CardTarget {
    /// No reader.
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
    /// How long the operator has for each swipe.
    pub swipe_timeout: Duration,
    /// The reader for the chip.
    pub card: CardTarget,
}

/// One card to personalize: the prepared data, the order it came from (read-back compares the
/// card with it), the chip profile and the secure channel (with a tester's overrides).
#[derive(Debug, Clone)]
pub struct PersoJob {
    /// Tracks and chip data (clear values inside; never logged).
    pub data: PersoData,
    /// The validated order.
    pub order: Order,
    /// The chip profile of the chip data, if any.
    pub profile: Option<ChipProfile>,
    /// The secure channel (the profile's, or a tester's override).
    pub channel: Option<ChannelRule>,
    /// The key store.
    pub keys: Arc<LoadedKeys>,
}

/// News from the personalization worker.
#[derive(Debug)]
pub enum PersoMsg {
    /// Progress of the job.
    Event(JobEvent),
    /// A hint for the operator (`swipe to write`).
    Hint(String),
    /// The encoder waits for a swipe.
    Swipe {
        /// `swipe to write`, `swipe to read back`.
        purpose: String,
        /// 1, or more after bad swipes.
        attempt: u32,
        /// How long the operator has.
        timeout: Duration,
    },
    /// The encoder reported a bad swipe and retries.
    BadSwipe {
        /// The flow step retried.
        step: String,
        /// The attempt that failed.
        failed_attempt: u32,
    },
    /// The run ended.
    Finished(Box<JobReport>),
}

/// A running personalization.
#[derive(Debug)]
pub struct Running {
    /// The row.
    pub row: usize,
    /// The order id.
    pub order_id: String,
    /// Who started it (the outcome is recorded in their name).
    pub who: Session,
    rx: Receiver<PersoMsg>,
    cancel: CancelToken,
}

/// A run that ended, for the store: the row, who ran it, the job's report.
#[derive(Debug)]
pub struct Ended {
    /// The row.
    pub row: usize,
    /// The order id.
    pub order_id: String,
    /// Who started it.
    pub who: Session,
    /// What the job did.
    pub report: JobReport,
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
    /// The job's latest progress.
    pub event: Option<JobEvent>,
    /// The latest hint.
    pub hint: Option<String>,
    /// The last result.
    pub last: Option<Finished>,
    /// The run's DGIs, swipe prompt and bad swipes (kept after the run ends).
    pub progress: RunProgress,
    /// Cancel was asked after the chip was written: the confirmation is showing.
    pub confirm_cancel: bool,
    /// The masked tracks of the run in flight (what the encoder panel shows once written).
    pub masked_tracks: Vec<(u8, String)>,
}

/// The progress bar's label and fraction for a job event.
pub fn stage(event: Option<&JobEvent>) -> (String, f32) {
    match event {
        None => ("prepare".into(), 0.0),
        Some(JobEvent::Perso(p)) if p.step == StepName::StoreData => {
            let n = p.store_data_sent.max(1);
            let m = p.store_data_total;
            let f = if m == 0 {
                1.0
            } else {
                f32::from(n) / f32::from(m)
            };
            (format!("STORE DATA {n} of {m}"), 0.15 + 0.35 * f)
        }
        Some(JobEvent::Perso(_)) => ("secure channel".into(), 0.1),
        Some(JobEvent::ReadBack) => (job::READ_BACK.into(), 0.5),
        Some(JobEvent::Stripe) => ("stripe write".into(), 0.65),
    }
}

/// Runs the job on the worker thread and returns its report.
fn run_job(
    job: &PersoJob,
    target: PersoTarget,
    cancel: &CancelToken,
    tx: &Sender<PersoMsg>,
    waker: &Waker,
) -> JobReport {
    let card_job = CardJob {
        order: &job.order,
        data: &job.data,
        keys: job.keys.port(),
        chip: job.profile.as_ref().zip(job.channel.clone()),
    };
    let mut stripe = target.encoder_port.map(|port| {
        let mut config = SerialConfig::new(port);
        config.swipe_timeout = target.swipe_timeout;
        let (tx, waker) = (tx.clone(), waker.clone());
        SerialStripe {
            config,
            observer: move |event: &EncoderEvent| {
                match event {
                    EncoderEvent::WaitingForSwipe {
                        purpose,
                        attempt,
                        timeout,
                    } => {
                        let _ = tx.send(PersoMsg::Hint(format!("{purpose}")));
                        let _ = tx.send(PersoMsg::Swipe {
                            purpose: purpose.to_string(),
                            attempt: *attempt,
                            timeout: *timeout,
                        });
                    }
                    EncoderEvent::BadSwipe {
                        step,
                        failed_attempt,
                    } => {
                        let _ = tx.send(PersoMsg::BadSwipe {
                            step: step.to_string(),
                            failed_attempt: *failed_attempt,
                        });
                    }
                    EncoderEvent::Sending { .. } => return,
                }
                waker.wake();
            },
        }
    });
    let stripe = stripe.as_mut().map(|s| s as &mut dyn StripeWriter);
    let mut on_event = |e: JobEvent| {
        let _ = tx.send(PersoMsg::Event(e));
        waker.wake();
    };
    match (target.card, &job.profile) {
        (CardTarget::Pcsc(name), _) => {
            let mut reader = PcscReader(name);
            job::run_cancellable(&card_job, Some(&mut reader), stripe, cancel, &mut on_event)
        }
        (CardTarget::Virtual(vr), Some(profile)) => {
            // The card's keys are its own (the reader's card stock), not the host's store.
            let card_keys = Arc::clone(&lock_reader(&vr).card_keys);
            let mut reader = VirtualConnector::new(vr, profile.clone(), card_keys);
            let report = job::run_cancellable(
                &card_job,
                Some(&mut reader as &mut dyn CardConnector),
                stripe,
                cancel,
                &mut on_event,
            );
            // The session went through when the job got past it (read-back or stripe).
            let personalized = report
                .failure
                .as_ref()
                .is_none_or(|f| matches!(f.step, Step::ReadBack | Step::Stripe(_)));
            reader.put_back(personalized.then_some(job.data.order_id.as_str()));
            report
        }
        _ => job::run_cancellable(&card_job, None, stripe, cancel, &mut on_event),
    }
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
        who: Session,
        job: PersoJob,
        target: PersoTarget,
        waker: Waker,
    ) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let cancel = CancelToken::new();
        let order_id = job.data.order_id.clone();
        let masked_tracks = [TrackNo::T1, TrackNo::T2, TrackNo::T3]
            .into_iter()
            .filter_map(|no| job.data.tracks.get(no).map(|t| (no.number(), t.masked())))
            .collect();
        let token = cancel.clone();
        super::worker::spawn_named("persodesk-perso", move || {
            let report = run_job(&job, target, &token, &tx, &waker);
            drop(job);
            let _ = tx.send(PersoMsg::Finished(Box::new(report)));
            waker.wake();
        })?;
        self.running = Some(Running {
            row,
            order_id,
            who,
            rx,
            cancel,
        });
        self.event = None;
        self.hint = None;
        self.last = None;
        self.progress = RunProgress::default();
        self.confirm_cancel = false;
        self.masked_tracks = masked_tracks;
        Ok(())
    }

    /// Asks the run to stop (before the next APDU, or within the encoder's poll interval).
    /// Once a STORE DATA was sent the card is spoiled by a cancel: this only opens the
    /// confirmation ([`confirm_cancel`](Self::confirm_cancel)); a second request while it shows
    /// changes nothing.
    pub fn cancel(&mut self) {
        let Some(r) = &self.running else { return };
        if self.progress.chip_written {
            self.confirm_cancel = true;
        } else {
            r.cancel.cancel();
        }
    }

    /// The operator's answer to the confirmation: `true` cancels (the card is spoiled),
    /// `false` keeps the run going.
    pub fn confirm_cancel(&mut self, cancel: bool) {
        if self.confirm_cancel
            && cancel
            && let Some(r) = &self.running
        {
            r.cancel.cancel();
        }
        self.confirm_cancel = false;
    }

    /// Reads the worker's messages; returns the ended run once (the caller records it, then
    /// shows it with [`show`](Self::show)).
    pub fn poll(&mut self) -> Option<Ended> {
        let running = self.running.as_mut()?;
        let report = loop {
            match running.rx.try_recv() {
                Ok(PersoMsg::Event(e)) => {
                    self.progress.on_event(&e);
                    self.event = Some(e);
                }
                Ok(PersoMsg::Hint(h)) => self.hint = Some(h),
                Ok(PersoMsg::Swipe {
                    purpose,
                    attempt,
                    timeout,
                }) => self.progress.waiting(purpose, attempt, timeout),
                Ok(PersoMsg::BadSwipe {
                    step,
                    failed_attempt,
                }) => self.progress.bad_swipe(step, failed_attempt),
                Ok(PersoMsg::Finished(report)) => break *report,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    break JobReport {
                        failure: Some(StepFailure::new(
                            Step::Connect,
                            "the personalization worker stopped unexpectedly",
                            FailureKind::CardFailed,
                        )),
                        ..JobReport::default()
                    };
                }
            }
        };
        let running = self.running.take()?;
        self.progress.swipe = None;
        self.confirm_cancel = false;
        if let Some(t) = &report.transcript {
            self.progress.dgis = progress::dgi_lines(t);
        }
        Some(Ended {
            row: running.row,
            order_id: running.order_id,
            who: running.who,
            report,
        })
    }

    /// Shows an ended run as the last result.
    pub fn show(&mut self, order_id: &str, report: &JobReport) {
        self.last = Some(Finished {
            order_id: order_id.to_string(),
            result: view(report),
        });
    }

    /// Draws the screen (scrolled: the DGI list, checks and transcript can be long).
    pub fn ui(&self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        egui::ScrollArea::vertical()
            .id_salt("perso-scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| self.body(ui, cmds));
    }

    fn body(&self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        ui.heading("Personalize");
        if let Some(r) = &self.running {
            ui.label(format!("Order {}", r.order_id));
            let (label, fraction) = stage(self.event.as_ref());
            ui.add(
                egui::ProgressBar::new(fraction)
                    .show_percentage()
                    .text(format!("Step: {label}")),
            );
            ui.label(format!("Step: {label}"));
            if let Some(h) = &self.hint {
                ui.label(format!("Encoder: {h}"));
            }
            self.progress.swipe_ui(ui);
            if ui
                .button("Cancel")
                .on_hover_text(super::Shortcut::Cancel.hover())
                .clicked()
            {
                cmds.push(Command::CancelPerso);
            }
            progress::dgi_list_ui(ui, &self.progress.dgis);
            if self.confirm_cancel {
                confirm_cancel_ui(ui, cmds);
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
                self.progress.swipe_ui(ui);
                progress::dgi_list_ui(ui, &self.progress.dgis);
                details(ui, &report.checks, report.transcript.as_ref());
            }
            Some(Finished {
                order_id,
                result: Err(f),
            }) => {
                let heading = if f.not_started {
                    format!("Order {order_id}: not started, the card was refused")
                } else {
                    format!("Order {order_id}: CARD_PROD_FAILED")
                };
                ui.colored_label(ui.visuals().error_fg_color, heading);
                ui.label(format!("Failed step: {}", f.step.label()));
                ui.label(&f.message);
                ui.label(format!("What to do: {}", f.advice));
                self.progress.swipe_ui(ui);
                progress::dgi_list_ui(ui, &self.progress.dgis);
                details(ui, &f.checks, f.transcript.as_ref());
            }
        }
    }
}

/// The confirmation a cancel needs once the chip was written.
fn confirm_cancel_ui(ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    let modal = egui::Modal::new(egui::Id::unique("confirm-cancel")).show(ui.ctx(), |ui| {
        ui.heading("Cancel this personalization?");
        ui.label(format!(
            "STORE DATA was already sent to this card: {}.",
            job::CHIP_PARTLY_WRITTEN
        ));
        ui.horizontal(|ui| {
            if ui.button("Cancel the run: this card is spoiled").clicked() {
                cmds.push(Command::ConfirmCancel(true));
            }
            if ui.button("Keep running").clicked() {
                cmds.push(Command::ConfirmCancel(false));
            }
        });
    });
    if modal.should_close() && !cmds.iter().any(|c| matches!(c, Command::ConfirmCancel(_))) {
        cmds.push(Command::ConfirmCancel(false));
    }
}

/// The read-back checks (names and outcomes, never values) and the masked APDU transcript.
fn details(ui: &mut egui::Ui, checks: &[CheckLine], transcript: Option<&Transcript>) {
    if let Some(t) = transcript
        && ui
            .button("Copy transcript")
            .on_hover_text("masked: headers, lengths, status words and timings only")
            .clicked()
    {
        ui.ctx().copy_text(t.to_string());
    }
    if !checks.is_empty() {
        egui::CollapsingHeader::new(format!("Read-back checks ({})", checks.len()))
            .default_open(true)
            .show(ui, |ui| {
                for c in checks {
                    let text = egui::RichText::new(c.to_string()).monospace();
                    ui.label(match c.status {
                        "pass" => text.color(progress::PASS_GREEN),
                        "fail" => text.color(ui.visuals().error_fg_color),
                        _ => text,
                    });
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
