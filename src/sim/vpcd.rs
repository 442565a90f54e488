//! The bridge between the virtual card and pcscd's virtual reader driver (vsmartcard-vpcd).
//!
//! The card side connects to the driver as a TCP client (`Virtual PCD 00 00` listens on 35963).
//! Every message is a 2-byte big-endian length and a payload; a one-byte payload is a control
//! (`00` power off, `01` power on, `02` reset, `04` send the ATR), anything longer is a command
//! APDU, answered with the response APDU. `TCP_QUICKACK` is set before every read (without it
//! each APDU waits ~40 ms for a delayed ACK). Closing the socket is a card removal.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::SockRef;

use super::card::VirtualCard;

/// How often the bridge looks at its stop flag while idle.
const TICK: Duration = Duration::from_millis(100);

/// What the bridge saw, for logs and for saving the card state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpcdEvent {
    /// Connected to the driver.
    Connected,
    /// A control message (`00`, `01`, `02`, `04`).
    Control(u8),
    /// A command APDU was answered (its INS byte).
    Apdu(u8),
    /// The card was pulled (a removal fault): the connection was closed.
    Removed,
    /// The driver closed the connection.
    Disconnected,
}

/// Serves `card` to the vpcd driver at `addr` until `stop` is set. Reconnects (every 100 ms)
/// while the driver is not there yet or went away; after a removal fault, reconnects once the
/// card is present again. `on_event` runs after each event with the card locked.
pub fn serve(
    card: &Arc<Mutex<VirtualCard>>,
    addr: SocketAddr,
    stop: &AtomicBool,
    mut on_event: impl FnMut(VpcdEvent, &VirtualCard),
) -> io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let present = card
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_present();
        if !present {
            std::thread::sleep(TICK);
            continue;
        }
        let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(TICK);
                continue;
            }
        };
        {
            let guard = card.lock().unwrap_or_else(PoisonError::into_inner);
            on_event(VpcdEvent::Connected, &guard);
        }
        let ended = session(card, stream, stop, &mut on_event)?;
        let guard = card.lock().unwrap_or_else(PoisonError::into_inner);
        on_event(ended, &guard);
    }
    Ok(())
}

/// One connection: returns how it ended.
fn session(
    card: &Arc<Mutex<VirtualCard>>,
    mut stream: TcpStream,
    stop: &AtomicBool,
    on_event: &mut impl FnMut(VpcdEvent, &VirtualCard),
) -> io::Result<VpcdEvent> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TICK))?;
    let mut pending: Vec<u8> = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(VpcdEvent::Disconnected);
        }
        SockRef::from(&stream).set_tcp_quickack(true)?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(VpcdEvent::Disconnected),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(VpcdEvent::Disconnected);
            }
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(buf.get(..n).unwrap_or_default());
        while let Some((len, rest)) = frame(&pending) {
            let message = rest.get(..len).unwrap_or_default().to_vec();
            pending.drain(..2 + len);
            let mut guard = card.lock().unwrap_or_else(PoisonError::into_inner);
            let answer = match message.as_slice() {
                [control] => {
                    if *control <= 0x02 {
                        guard.reset();
                    }
                    let answer = (*control == 0x04).then(|| guard.atr().to_vec());
                    on_event(VpcdEvent::Control(*control), &guard);
                    answer
                }
                apdu => {
                    let response = guard.process(apdu);
                    if !guard.is_present() {
                        on_event(VpcdEvent::Removed, &guard);
                        return Ok(VpcdEvent::Removed);
                    }
                    on_event(VpcdEvent::Apdu(apdu.get(1).copied().unwrap_or(0)), &guard);
                    Some(response)
                }
            };
            drop(guard);
            if let Some(answer) = answer {
                let len = u16::try_from(answer.len()).unwrap_or(0);
                let mut out = Vec::with_capacity(answer.len() + 2);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&answer);
                stream.write_all(&out)?;
            }
        }
    }
}

/// A complete frame at the start of `pending`: (payload length, bytes after the length).
fn frame(pending: &[u8]) -> Option<(usize, &[u8])> {
    let [hi, lo, rest @ ..] = pending else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    (rest.len() >= len).then_some((len, rest))
}
