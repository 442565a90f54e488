//! The magnetic stripe encoder adapter: a thin serial loop around [`WriteSession`].
//!
//! [`SerialEncoder`] opens an MSR206-family encoder on a serial port (the `serialport` crate, raw
//! 8N1, default 9600 baud) and moves bytes between the port and the sans-I/O state machine in
//! `domain::msr206`. Waiting for the operator to swipe is reported as an [`EncoderEvent`] and bounded
//! by [`SerialConfig::swipe_timeout`]; it can also be cancelled through a [`CancelHandle`].
//!
//! The [`Encoder`] trait lets the GUI and CLI use a real device, the simulated encoder (which is a
//! pseudo-terminal, so it is driven by the same [`SerialEncoder`]), or a test double.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort};
use zeroize::Zeroizing;

use crate::domain::mask::debug_fields;
use crate::domain::msr206::{
    Action, Command, DeviceError, Expect, Feed, FlowConfig, FlowError, FlowStep, Outcome,
    ParseError, Response, ResponseKind, ResponseParser, SwipePurpose, TrackError, TrackSet, Wait,
    WriteSession,
};

/// Default baud rate of MSR206-family encoders.
pub const DEFAULT_BAUD: u32 = 9600;

/// Why writing a card failed. Messages name steps, tracks and rules, never track content.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// Track data was rejected before anything was sent.
    #[error("invalid track data: {0}")]
    InvalidTrack(#[from] TrackError),
    /// No serial port at that path.
    #[error("serial port {path} not found")]
    PortNotFound {
        /// The port path or name.
        path: String,
    },
    /// The port exists but could not be opened or configured.
    #[error("cannot open serial port {path}: {reason}")]
    PortOpen {
        /// The port path or name.
        path: String,
        /// The system's reason.
        reason: String,
    },
    /// Reading or writing the port failed.
    #[error("serial I/O failed during {step}: {source}")]
    Io {
        /// The flow step.
        step: FlowStep,
        /// The I/O error.
        source: io::Error,
    },
    /// The device did not answer a command that needs no swipe.
    #[error("encoder did not answer {step} within {timeout:?} (is it connected and powered?)")]
    DeviceTimeout {
        /// The flow step.
        step: FlowStep,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Nobody swiped a card in time.
    #[error("no card swiped within {timeout:?} ({purpose})")]
    SwipeTimeout {
        /// Write or read-back.
        purpose: SwipePurpose,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The operation was cancelled through a [`CancelHandle`].
    #[error("cancelled during {step}")]
    Cancelled {
        /// The flow step.
        step: FlowStep,
    },
    /// The device sent bytes that do not follow the protocol.
    #[error("encoder sent a malformed reply during {step}: {source}")]
    Protocol {
        /// The flow step.
        step: FlowStep,
        /// What was wrong.
        source: ParseError,
    },
    /// Device status, bad swipes or a read-back mismatch.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

/// Progress worth showing to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderEvent {
    /// A command is being sent.
    Sending {
        /// The flow step.
        step: FlowStep,
        /// 1, or more after bad swipes.
        attempt: u32,
    },
    /// The device waits for the operator to swipe a card.
    WaitingForSwipe {
        /// Write or read-back.
        purpose: SwipePurpose,
        /// 1, or more after bad swipes ("swipe again").
        attempt: u32,
        /// How long the operator has.
        timeout: Duration,
    },
    /// The device reported a bad swipe and the flow asks for another one (never silent).
    BadSwipe {
        /// The flow step that is retried.
        step: FlowStep,
        /// The attempt that failed (1-based).
        failed_attempt: u32,
    },
}

/// Anything that can write and verify a card's magnetic stripe.
pub trait Encoder {
    /// Writes the tracks, reads the card back and compares.
    fn write_and_verify(&mut self, tracks: &TrackSet) -> Result<Outcome, EncoderError>;

    /// Validates three optional bodies (without sentinels), then [`write_and_verify`](Self::write_and_verify).
    /// Invalid data never reaches the device.
    fn encode(
        &mut self,
        t1: Option<&str>,
        t2: Option<&str>,
        t3: Option<&str>,
    ) -> Result<Outcome, EncoderError> {
        let tracks = TrackSet::new(t1, t2, t3)?;
        self.write_and_verify(&tracks)
    }
}

/// Serial settings and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    /// Port path (`/dev/ttyUSB0`, `COM3`, or the simulator's pty).
    pub path: String,
    /// Baud rate; [`DEFAULT_BAUD`] by default.
    pub baud: u32,
    /// How long the device may take to answer a command that needs no swipe (default 2 s).
    pub reply_timeout: Duration,
    /// How long the operator has for each swipe (default 30 s).
    pub swipe_timeout: Duration,
    /// Pause after reset, which the device does not acknowledge (default 100 ms).
    pub reset_settle: Duration,
    /// Granularity of timeout and cancel checks (default 100 ms).
    pub poll_interval: Duration,
    /// Flow settings (bad swipe retries).
    pub flow: FlowConfig,
}

impl SerialConfig {
    /// Defaults for the port at `path`.
    pub fn new(path: impl Into<String>) -> Self {
        SerialConfig {
            path: path.into(),
            baud: DEFAULT_BAUD,
            reply_timeout: Duration::from_secs(2),
            swipe_timeout: Duration::from_secs(30),
            reset_settle: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
            flow: FlowConfig::default(),
        }
    }
}

/// Cancels a running [`SerialEncoder::write_and_verify`] from another thread (e.g. the GUI's
/// Cancel button). Takes effect within one poll interval.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A handle on an existing flag (the job's cancel token): setting it cancels. The encoder
    /// clears it when an operation starts and when it has acted on it.
    pub fn sharing(flag: Arc<AtomicBool>) -> Self {
        CancelHandle(flag)
    }

    /// Requests cancellation of the operation in progress.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

type Observer = Box<dyn FnMut(&EncoderEvent) + Send>;

/// An MSR206-family encoder on a serial port.
pub struct SerialEncoder {
    port: Box<dyn SerialPort>,
    config: SerialConfig,
    observer: Option<Observer>,
    cancel: CancelHandle,
}

impl fmt::Debug for SerialEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "SerialEncoder", &[("config", &self.config)])
    }
}

impl SerialEncoder {
    /// Opens and configures the port (raw, 8N1, no flow control).
    pub fn open(config: SerialConfig) -> Result<Self, EncoderError> {
        let port = serialport::new(&config.path, config.baud)
            .timeout(config.poll_interval)
            .open()
            .map_err(|e| open_error(&config.path, e))?;
        tracing::debug!(path = %config.path, baud = config.baud, "encoder port open");
        Ok(SerialEncoder {
            port,
            config,
            observer: None,
            cancel: CancelHandle::default(),
        })
    }

    /// Calls `observer` with every [`EncoderEvent`] (runs on the thread doing the write; for a GUI,
    /// forward to a channel and request a repaint).
    pub fn with_observer(mut self, observer: impl FnMut(&EncoderEvent) + Send + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Cancels through `handle` instead of a handle of its own.
    pub fn with_cancel(mut self, handle: CancelHandle) -> Self {
        self.cancel = handle;
        self
    }

    /// A handle that cancels the operation in progress.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The settings in use.
    pub fn config(&self) -> &SerialConfig {
        &self.config
    }

    fn emit(&mut self, event: EncoderEvent) {
        if let Some(observer) = self.observer.as_mut() {
            observer(&event);
        }
    }

    fn run(&mut self, tracks: &TrackSet) -> Result<Outcome, EncoderError> {
        // Stale bytes from an earlier, aborted exchange must not be taken for this one's replies.
        if let Err(e) = self.port.clear(ClearBuffer::All) {
            tracing::debug!(error = %e, "could not clear the port buffers");
        }
        let mut session = WriteSession::new(tracks.clone(), self.config.flow);
        let mut action = session.start();
        loop {
            action = match action {
                Action::Done(outcome) => return Ok(outcome),
                Action::Failed(error) => return Err(error.into()),
                Action::Send {
                    bytes,
                    expect,
                    step,
                    attempt,
                } => {
                    if attempt > 1 {
                        // The session retries a step only after a bad swipe.
                        self.emit(EncoderEvent::BadSwipe {
                            step,
                            failed_attempt: attempt - 1,
                        });
                    }
                    self.emit(EncoderEvent::Sending { step, attempt });
                    self.send(step, &bytes)?;
                    match expect {
                        Expect::Nothing => {
                            std::thread::sleep(self.config.reset_settle);
                            session.sent()
                        }
                        Expect::Reply { kind, wait } => {
                            let response = self.receive(step, kind, wait, attempt)?;
                            session.handle(response)
                        }
                    }
                }
            };
        }
    }

    fn send(&mut self, step: FlowStep, bytes: &[u8]) -> Result<(), EncoderError> {
        tracing::debug!(%step, len = bytes.len(), "encoder: send");
        self.port
            .write_all(bytes)
            .and_then(|()| self.port.flush())
            .map_err(|source| EncoderError::Io { step, source })
    }

    fn receive(
        &mut self,
        step: FlowStep,
        kind: ResponseKind,
        wait: Wait,
        attempt: u32,
    ) -> Result<Response, EncoderError> {
        let timeout = match wait {
            Wait::Device => self.config.reply_timeout,
            Wait::Swipe(purpose) => {
                let timeout = self.config.swipe_timeout;
                tracing::info!(%purpose, attempt, "encoder: waiting for a swipe");
                self.emit(EncoderEvent::WaitingForSwipe {
                    purpose,
                    attempt,
                    timeout,
                });
                timeout
            }
        };
        let deadline = Instant::now() + timeout;
        let mut parser = ResponseParser::new(kind);
        let mut buf = Zeroizing::new([0u8; 256]);
        loop {
            if self.cancel.take() {
                self.abort();
                return Err(EncoderError::Cancelled { step });
            }
            if Instant::now() >= deadline {
                self.abort();
                return Err(match wait {
                    Wait::Device => EncoderError::DeviceTimeout { step, timeout },
                    Wait::Swipe(purpose) => EncoderError::SwipeTimeout { purpose, timeout },
                });
            }
            let n = match self.port.read(&mut buf[..]) {
                Ok(0) => return Err(port_closed(step)),
                Ok(n) => n,
                Err(e) if is_retryable(&e) => continue,
                Err(source) => return Err(EncoderError::Io { step, source }),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            match parser.feed(chunk) {
                Ok(Feed::NeedMore) => {}
                Ok(Feed::Complete { response, consumed }) => {
                    if consumed < n {
                        tracing::warn!(%step, extra = n - consumed, "encoder: ignoring bytes after the reply");
                    }
                    tracing::debug!(%step, status = ?response.status(), "encoder: reply");
                    return Ok(response);
                }
                Err(source) => return Err(EncoderError::Protocol { step, source }),
            }
        }
    }

    /// Best effort: take the device out of a pending write/read after a timeout or cancel.
    fn abort(&mut self) {
        let reset = Command::Reset.to_bytes();
        if let Err(e) = self.port.write_all(&reset) {
            tracing::debug!(error = %e, "encoder: reset after abort failed");
        }
    }
}

impl Encoder for SerialEncoder {
    fn write_and_verify(&mut self, tracks: &TrackSet) -> Result<Outcome, EncoderError> {
        self.cancel.clear();
        let result = self.run(tracks);
        match &result {
            Ok(outcome) => {
                tracing::info!(tracks = ?outcome.tracks, "encoder: card written and verified")
            }
            Err(e) => tracing::warn!(error = %e, "encoder: write failed"),
        }
        result
    }
}

fn open_error(path: &str, e: serialport::Error) -> EncoderError {
    let path = path.to_owned();
    match e.kind() {
        serialport::ErrorKind::NoDevice if !std::path::Path::new(&path).exists() => {
            EncoderError::PortNotFound { path }
        }
        serialport::ErrorKind::Io(io::ErrorKind::NotFound) => EncoderError::PortNotFound { path },
        _ => EncoderError::PortOpen {
            path,
            reason: e.to_string(),
        },
    }
}

fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

fn port_closed(step: FlowStep) -> EncoderError {
    EncoderError::Io {
        step,
        source: io::Error::new(io::ErrorKind::UnexpectedEof, "the serial port was closed"),
    }
}

/// Writes the stripe of prepared `data` on the encoder `config` names, reads it back and
/// compares. The tracks are validated before the port is even opened: refused data never reaches
/// the device. `cancel`, when given, stops the write (also while waiting for a swipe). Returns the
/// track numbers written and the bad swipes retried.
pub fn write_card_stripe(
    config: SerialConfig,
    data: &crate::domain::prepare::PersoData,
    observer: impl FnMut(&EncoderEvent) + Send + 'static,
    cancel: Option<CancelHandle>,
) -> Result<(Vec<u8>, u32), EncoderError> {
    use crate::domain::track::TrackNo;
    let body = |no| data.tracks.get(no).map(|t| t.body());
    let tracks = TrackSet::new(body(TrackNo::T1), body(TrackNo::T2), body(TrackNo::T3))?;
    let mut encoder = SerialEncoder::open(config)?.with_observer(observer);
    if let Some(handle) = cancel {
        encoder = encoder.with_cancel(handle);
    }
    let outcome = encoder.write_and_verify(&tracks)?;
    Ok((
        outcome.tracks.iter().map(|t| t.number()).collect(),
        outcome.bad_swipes,
    ))
}

/// How an encoder failure is classed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The tracks were refused before the device was touched.
    Refused,
    /// The encoder cannot be reached.
    Unavailable,
    /// The encoder failed the card (status, bad swipes, read-back mismatch, bad reply).
    CardFailed,
    /// Nobody swiped in time, or the device did not answer.
    Timeout,
    /// The operator cancelled.
    Cancelled,
}

/// A stable kind name (`write-error`, `swipe-timeout`, ...), the flow step where known, and the
/// class of an encoder error.
pub fn classify(e: &EncoderError) -> (&'static str, Option<FlowStep>, FailureClass) {
    match e {
        EncoderError::InvalidTrack(_) => ("invalid-track", None, FailureClass::Refused),
        EncoderError::PortNotFound { .. } => ("port-not-found", None, FailureClass::Unavailable),
        EncoderError::PortOpen { .. } => ("port-open", None, FailureClass::Unavailable),
        EncoderError::Io { step, .. } => ("io", Some(*step), FailureClass::Unavailable),
        EncoderError::DeviceTimeout { step, .. } => {
            ("device-timeout", Some(*step), FailureClass::Timeout)
        }
        EncoderError::SwipeTimeout { purpose, .. } => {
            let step = match purpose {
                SwipePurpose::Write => FlowStep::Write,
                SwipePurpose::ReadBack => FlowStep::ReadBack,
            };
            ("swipe-timeout", Some(step), FailureClass::Timeout)
        }
        EncoderError::Cancelled { step } => ("cancelled", Some(*step), FailureClass::Cancelled),
        EncoderError::Protocol { step, .. } => ("protocol", Some(*step), FailureClass::CardFailed),
        EncoderError::Flow(flow) => match flow {
            FlowError::Device { step, error } => {
                let kind = match (error, step) {
                    (DeviceError::ReadWrite, FlowStep::Write) => "write-error",
                    (DeviceError::ReadWrite, FlowStep::ReadBack) => "read-error",
                    (DeviceError::ReadWrite, _) => "device-error",
                    (DeviceError::CommandFormat, _) => "command-format-error",
                    (DeviceError::InvalidCommand, _) => "invalid-command",
                    (DeviceError::BadSwipe, _) => "bad-swipes",
                    (DeviceError::Unknown(_), _) => "unknown-status",
                };
                (kind, Some(*step), FailureClass::CardFailed)
            }
            FlowError::TooManyBadSwipes { step, .. } => {
                ("bad-swipes", Some(*step), FailureClass::CardFailed)
            }
            FlowError::Mismatch(_) => (
                "read-back-mismatch",
                Some(FlowStep::ReadBack),
                FailureClass::CardFailed,
            ),
            FlowError::UnexpectedResponse(step) => {
                ("protocol", Some(*step), FailureClass::CardFailed)
            }
            FlowError::OutOfOrder => ("internal", None, FailureClass::CardFailed),
        },
    }
}
