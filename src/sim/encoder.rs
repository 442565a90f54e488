//! A simulated MSR206-family magnetic stripe encoder behind a pseudo-terminal.
//!
//! [`SimEncoder::start`] opens a pty pair, puts the slave in raw mode and serves the device side on
//! the master in a named thread. The host opens [`SimEncoder::path`] like any serial port.
//!
//! The device side is an independent implementation of docs/domain.md §7.3: it shares no code with the
//! host's `domain::msr206` (not even constants), so a misreading on one side cannot hide itself on
//! the other. It answers reset (silently), communication test (`1B 79`), hi-co / lo-co, BPI and
//! leading-zero settings (`1B 30`), ISO write (`1B 30` once "swiped", after validating the bodies
//! itself) and ISO read (the data block with sentinels, as a real reader returns it). Each ISO write
//! is a fresh blank card: tracks left empty read back empty. Unknown commands get `1B 34`, malformed
//! writes `1B 32`. For tests it can be told to fail: see [`SimFault`].

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use crate::domain::mask::debug_fields;

const ESC: u8 = 0x1B;
/// Commands that arrive without completing are dropped past this size.
const MAX_PENDING: usize = 2048;
/// How often the device thread checks its stop flag.
const POLL_MS: u16 = 20;

/// A failure to inject into the simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimFault {
    /// Behave like a healthy device.
    #[default]
    None,
    /// Answer every ISO write with `1B 31` (read/write error) and store nothing.
    WriteError,
    /// Answer the next N ISO writes with `1B 39` (bad swipe), then succeed.
    BadSwipes(u32),
    /// Nobody swipes: ISO write and ISO read get no answer at all.
    NoSwipe,
    /// The device is dead: no command gets any answer.
    Silent,
    /// ISO read returns the given track (1..=3) with one character changed.
    CorruptReadBack(u8),
}

/// Settings of the simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// How long the "operator" takes to swipe after an ISO write or read command.
    pub swipe_delay: Duration,
    /// The failure simulated from the start (see [`SimEncoder::set_fault`] to change it later).
    pub fault: SimFault,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            swipe_delay: Duration::from_millis(20),
            fault: SimFault::None,
        }
    }
}

/// A command as the device understood it, for tests to inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimCommand {
    /// `1B 61`.
    Reset,
    /// `1B 65`.
    CommTest,
    /// `1B 78`.
    HiCo,
    /// `1B 79`.
    LoCo,
    /// `1B 62 xx`.
    Bpi,
    /// `1B 7A xx yy`.
    LeadingZeros,
    /// `1B 77 ..`, well formed.
    IsoWrite,
    /// `1B 77 ..` that the device rejected (bad framing or track data).
    BadWrite,
    /// `1B 72`.
    IsoRead,
    /// `1B xx` with an unknown `xx`.
    Unknown,
}

/// The simulated card: the track bodies last written (without sentinels).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SimCard {
    tracks: [Option<Zeroizing<Vec<u8>>>; 3],
}

impl SimCard {
    /// The body written on track `n` (1..=3), if any. Test helper; cardholder data.
    pub fn track(&self, n: u8) -> Option<String> {
        let slot = usize::from(n).checked_sub(1)?;
        let body = self.tracks.get(slot)?.as_ref()?;
        Some(String::from_utf8_lossy(body).into_owned())
    }
}

impl fmt::Debug for SimCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lens: Vec<Option<usize>> = self
            .tracks
            .iter()
            .map(|t| t.as_ref().map(|b| b.len()))
            .collect();
        f.debug_struct("SimCard")
            .field("track_lengths", &lens)
            .finish()
    }
}

/// What the device saw, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimLog {
    /// Bytes received from the host.
    pub bytes_received: usize,
    /// Commands in arrival order.
    pub commands: Vec<SimCommand>,
}

impl SimLog {
    /// How many ISO write commands arrived (well formed or not).
    pub fn writes(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, SimCommand::IsoWrite | SimCommand::BadWrite))
            .count()
    }
}

/// The simulator could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Opening or configuring the pseudo-terminal failed.
    #[error("pseudo-terminal: {0}")]
    Pty(#[source] nix::Error),
    /// The device thread could not be started.
    #[error("cannot start the device thread: {0}")]
    Thread(#[source] io::Error),
    /// Signal handling for the blocking runner failed.
    #[error("signal handling: {0}")]
    Signal(#[source] nix::Error),
    /// Writing the runner's messages failed.
    #[error("cannot print: {0}")]
    Output(#[source] io::Error),
}

#[derive(Default)]
struct Shared {
    fault: SimFault,
    card: SimCard,
    log: SimLog,
}

/// A running simulated encoder. Dropping it stops the device thread.
pub struct SimEncoder {
    path: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for SimEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "SimEncoder", &[("path", &self.path)])
    }
}

impl SimEncoder {
    /// Opens a pty pair and starts serving on the master in a thread named `sim-encoder`.
    pub fn start(config: SimConfig) -> Result<Self, SimError> {
        let pty = openpty(None, None).map_err(SimError::Pty)?;
        let mut termios = tcgetattr(&pty.slave).map_err(SimError::Pty)?;
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).map_err(SimError::Pty)?;
        let path = nix::unistd::ttyname(&pty.slave).map_err(SimError::Pty)?;

        let shared = Arc::new(Mutex::new(Shared {
            fault: config.fault,
            ..Shared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let device = Device {
            master: File::from(pty.master),
            // Kept open for the device's lifetime: with no slave open, reads on the master fail
            // with EIO whenever the host closes its port.
            _slave: pty.slave,
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            config,
            pending: Zeroizing::new(Vec::new()),
        };
        let thread = std::thread::Builder::new()
            .name("sim-encoder".into())
            .spawn(move || device.serve())
            .map_err(SimError::Thread)?;
        tracing::info!(path = %path.display(), "simulated encoder started");
        Ok(SimEncoder {
            path,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The serial device path for the host to open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the failure to simulate from now on.
    pub fn set_fault(&self, fault: SimFault) {
        lock(&self.shared).fault = fault;
    }

    /// The card as last written.
    pub fn card(&self) -> SimCard {
        lock(&self.shared).card.clone()
    }

    /// What the device has seen so far.
    pub fn log(&self) -> SimLog {
        lock(&self.shared).log.clone()
    }

    /// Stops the device thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("simulated encoder thread panicked");
        }
    }
}

impl Drop for SimEncoder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a simulated encoder until SIGINT or SIGTERM, for `persodesk sim-encoder`.
///
/// Prints the device path to open (`encoder device: /dev/pts/N`) to `out`, then serves. The signals
/// are blocked in the calling thread (and so in the device thread it starts) and awaited with
/// `sigwait`, so Ctrl-C stops the simulator cleanly. Call it from the main thread before starting
/// other threads, or those threads may still take the signal with its default action.
pub fn run_sim_encoder_blocking(config: SimConfig, out: &mut dyn Write) -> Result<(), SimError> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut previous))
        .map_err(SimError::Signal)?;
    let result = serve_until_signal(config, &signals, out);
    let restored = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    result?;
    restored.map_err(SimError::Signal)
}

fn serve_until_signal(
    config: SimConfig,
    signals: &SigSet,
    out: &mut dyn Write,
) -> Result<(), SimError> {
    let sim = SimEncoder::start(config)?;
    let path = sim.path().display();
    print_line(out, &format!("encoder device: {path}"))?;
    print_line(
        out,
        "simulated MSR206 encoder running; press Ctrl-C to stop",
    )?;
    let signal = signals.wait().map_err(SimError::Signal)?;
    print_line(out, &format!("stopping on {signal}"))?;
    let log = sim.log();
    print_line(
        out,
        &format!(
            "served {} command(s), {} ISO write(s), {} byte(s) received",
            log.commands.len(),
            log.writes(),
            log.bytes_received
        ),
    )?;
    sim.stop();
    Ok(())
}

/// Writes one whole line in one call, so a reader sees complete lines.
fn print_line(out: &mut dyn Write, line: &str) -> Result<(), SimError> {
    out.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush())
        .map_err(SimError::Output)
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------------------------------------------------------------
// The device side
// ------------------------------------------------------------------------------------------------

/// One command parsed from the byte stream.
enum Parsed {
    /// Wait for more bytes.
    Incomplete,
    /// Drop this many bytes that cannot start a command.
    Junk(usize),
    /// A command and its length in bytes.
    Command(DeviceCommand, usize),
}

enum DeviceCommand {
    Reset,
    CommTest,
    HiCo,
    LoCo,
    Bpi(u8),
    LeadingZeros,
    Write(Option<SimCard>),
    Read,
    Unknown,
}

impl DeviceCommand {
    fn kind(&self) -> SimCommand {
        match self {
            DeviceCommand::Reset => SimCommand::Reset,
            DeviceCommand::CommTest => SimCommand::CommTest,
            DeviceCommand::HiCo => SimCommand::HiCo,
            DeviceCommand::LoCo => SimCommand::LoCo,
            DeviceCommand::Bpi(_) => SimCommand::Bpi,
            DeviceCommand::LeadingZeros => SimCommand::LeadingZeros,
            DeviceCommand::Write(Some(_)) => SimCommand::IsoWrite,
            DeviceCommand::Write(None) => SimCommand::BadWrite,
            DeviceCommand::Read => SimCommand::IsoRead,
            DeviceCommand::Unknown => SimCommand::Unknown,
        }
    }
}

struct Device {
    master: File,
    _slave: OwnedFd,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    config: SimConfig,
    pending: Zeroizing<Vec<u8>>,
}

impl Device {
    fn serve(mut self) {
        let mut buf = Zeroizing::new([0u8; 512]);
        while !self.stop.load(Ordering::SeqCst) {
            if !self.readable() {
                continue;
            }
            match self.master.read(&mut buf[..]) {
                Ok(n) => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    self.pending.extend_from_slice(bytes);
                    lock(&self.shared).log.bytes_received += n;
                    self.process();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sim encoder: read failed");
                    std::thread::sleep(Duration::from_millis(u64::from(POLL_MS)));
                }
            }
        }
        tracing::debug!("simulated encoder stopped");
    }

    fn readable(&self) -> bool {
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::from(POLL_MS)), Ok(n) if n > 0)
    }

    fn process(&mut self) {
        loop {
            match parse(&self.pending) {
                Parsed::Incomplete => {
                    if self.pending.len() > MAX_PENDING {
                        self.pending.clear();
                        self.reply(&[ESC, 0x32]);
                    }
                    return;
                }
                Parsed::Junk(n) => self.consume(n),
                Parsed::Command(command, n) => {
                    self.consume(n);
                    self.execute(command);
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        self.pending.drain(..n);
    }

    fn execute(&mut self, command: DeviceCommand) {
        let kind = command.kind();
        tracing::debug!(command = ?kind, "sim encoder: command");
        let fault = {
            let mut shared = lock(&self.shared);
            shared.log.commands.push(kind);
            shared.fault
        };
        if fault == SimFault::Silent {
            return;
        }
        match command {
            DeviceCommand::Reset => {}
            DeviceCommand::CommTest => self.reply(&[ESC, 0x79]),
            DeviceCommand::HiCo | DeviceCommand::LoCo | DeviceCommand::LeadingZeros => {
                self.reply(&[ESC, 0x30]);
            }
            DeviceCommand::Bpi(value) => {
                let ok = matches!(value, 0xA0 | 0xA1 | 0xD2 | 0x4B | 0xC0 | 0xC1);
                self.reply(&[ESC, if ok { 0x30 } else { 0x32 }]);
            }
            DeviceCommand::Write(card) => self.write(card, fault),
            DeviceCommand::Read => self.read(fault),
            DeviceCommand::Unknown => self.reply(&[ESC, 0x34]),
        }
    }

    fn write(&mut self, card: Option<SimCard>, fault: SimFault) {
        let Some(card) = card else {
            self.reply(&[ESC, 0x32]);
            return;
        };
        match fault {
            SimFault::NoSwipe => {}
            SimFault::WriteError => self.swiped(&[ESC, 0x31]),
            SimFault::BadSwipes(n) if n > 0 => {
                lock(&self.shared).fault = SimFault::BadSwipes(n - 1);
                self.swiped(&[ESC, 0x39]);
            }
            _ => {
                lock(&self.shared).card = card;
                self.swiped(&[ESC, 0x30]);
            }
        }
    }

    fn read(&mut self, fault: SimFault) {
        if fault == SimFault::NoSwipe {
            return;
        }
        let card = lock(&self.shared).card.clone();
        let corrupt = match fault {
            SimFault::CorruptReadBack(n) => Some(n),
            _ => None,
        };
        let block = read_block(&card, corrupt);
        self.swiped(&block);
    }

    fn swiped(&mut self, bytes: &[u8]) {
        std::thread::sleep(self.config.swipe_delay);
        self.reply(bytes);
    }

    fn reply(&mut self, bytes: &[u8]) {
        if let Err(e) = self
            .master
            .write_all(bytes)
            .and_then(|()| self.master.flush())
        {
            tracing::warn!(error = %e, "sim encoder: reply failed");
        }
    }
}

/// Recognises one command at the start of `bytes`.
fn parse(bytes: &[u8]) -> Parsed {
    match bytes {
        [] | [ESC] => Parsed::Incomplete,
        [ESC, 0x61, ..] => Parsed::Command(DeviceCommand::Reset, 2),
        [ESC, 0x65, ..] => Parsed::Command(DeviceCommand::CommTest, 2),
        [ESC, 0x78, ..] => Parsed::Command(DeviceCommand::HiCo, 2),
        [ESC, 0x79, ..] => Parsed::Command(DeviceCommand::LoCo, 2),
        [ESC, 0x72, ..] => Parsed::Command(DeviceCommand::Read, 2),
        [ESC, 0x62] | [ESC, 0x7A] | [ESC, 0x7A, _] => Parsed::Incomplete,
        [ESC, 0x62, v, ..] => Parsed::Command(DeviceCommand::Bpi(*v), 3),
        [ESC, 0x7A, _, _, ..] => Parsed::Command(DeviceCommand::LeadingZeros, 4),
        [ESC, 0x77, rest @ ..] => parse_write(rest),
        [ESC, _, ..] => Parsed::Command(DeviceCommand::Unknown, 2),
        [_, ..] => Parsed::Junk(1),
    }
}

/// `rest` follows `1B 77`: `1B 73 1B 01 <t1> 1B 02 <t2> 1B 03 <t3> 3F 1C`.
fn parse_write(rest: &[u8]) -> Parsed {
    const HEADER: [u8; 4] = [ESC, 0x73, ESC, 0x01];
    let seen = rest.len().min(HEADER.len());
    if rest.get(..seen) != HEADER.get(..seen) {
        // Not a write frame: drop the command bytes and let the rest be parsed afresh.
        return Parsed::Command(DeviceCommand::Write(None), 2);
    }
    // 0x1C never occurs in valid track data, so the first one ends the frame.
    let Some(fs) = rest.iter().position(|&b| b == 0x1C) else {
        return Parsed::Incomplete;
    };
    let frame = rest.get(..fs).unwrap_or_default();
    let card = frame
        .strip_prefix(&HEADER[..])
        .and_then(|inner| inner.strip_suffix(b"?"))
        .and_then(split_tracks);
    Parsed::Command(DeviceCommand::Write(card), 2 + fs + 1)
}

/// Splits `<t1> 1B 02 <t2> 1B 03 <t3>` and checks each body against the device's own rules.
fn split_tracks(inner: &[u8]) -> Option<SimCard> {
    let (t1, rest) = split_at_marker(inner, 0x02)?;
    let (t2, t3) = split_at_marker(rest, 0x03)?;
    let mut card = SimCard::default();
    for (slot, (n, body)) in card.tracks.iter_mut().zip([(1u8, t1), (2, t2), (3, t3)]) {
        if !body_ok(n, body) {
            return None;
        }
        if !body.is_empty() {
            *slot = Some(Zeroizing::new(body.to_vec()));
        }
    }
    Some(card)
}

fn split_at_marker(bytes: &[u8], marker: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.windows(2).position(|w| w == [ESC, marker])?;
    Some((bytes.get(..at)?, bytes.get(at + 2..)?))
}

/// The simulated device's reading of the track rules: track 1 takes ASCII 20h..5Fh except `%` and
/// `?`, at most 76 characters; tracks 2 and 3 take `0`..`?` except `;` and `?`, at most 37 / 104.
fn body_ok(track: u8, body: &[u8]) -> bool {
    let (max, allowed): (usize, fn(u8) -> bool) = match track {
        1 => (76, |b| (0x20..=0x5F).contains(&b) && b != b'%' && b != b'?'),
        2 => (37, |b| (b'0'..=b'?').contains(&b) && b != b';' && b != b'?'),
        _ => (104, |b| {
            (b'0'..=b'?').contains(&b) && b != b';' && b != b'?'
        }),
    };
    body.len() <= max && body.iter().all(|&b| allowed(b))
}

/// `1B 73 1B 01 %t1? 1B 02 ;t2? 1B 03 ;t3? 3F 1C 1B 30`; empty tracks send nothing between markers.
fn read_block(card: &SimCard, corrupt: Option<u8>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![ESC, 0x73]);
    for (i, (track, sentinel)) in [(1u8, b'%'), (2, b';'), (3, b';')].into_iter().enumerate() {
        out.extend_from_slice(&[ESC, track]);
        let mut body: Vec<u8> = card
            .tracks
            .get(i)
            .and_then(|t| t.as_ref())
            .map(|b| b.to_vec())
            .unwrap_or_default();
        if corrupt == Some(track) {
            corrupt_body(&mut body);
        }
        if !body.is_empty() {
            out.push(sentinel);
            out.extend_from_slice(&body);
            out.push(b'?');
        }
        zeroize::Zeroize::zeroize(&mut body);
    }
    out.extend_from_slice(&[b'?', 0x1C, ESC, 0x30]);
    out
}

/// Changes the first character (or invents one on an empty track).
fn corrupt_body(body: &mut Vec<u8>) {
    match body.first_mut() {
        Some(c) => *c = if *c == b'1' { b'2' } else { b'1' },
        None => body.push(b'1'),
    }
}
