//! Moving APDUs to a card: the [`CardTransport`] trait, the ISO 7816-4 transport rules every
//! transport shares (GET RESPONSE on `61xx`, resend with Le on `6Cxx`), and the in-process
//! transport to the virtual card.

use std::fmt;

use crate::domain::mask::debug_fields;
use crate::sim::card::VirtualCard;

/// Why an APDU could not be exchanged. Never carries APDU data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The card was pulled out (or reset by someone else) during the session.
    #[error("the card was removed from the reader")]
    CardRemoved,
    /// There is no card in the reader.
    #[error("no card in reader {0}")]
    NoCard(String),
    /// The reader disappeared (unplugged) or does not exist.
    #[error("reader {0} is not available (unplugged or unknown)")]
    ReaderGone(String),
    /// The PC/SC service is not running.
    #[error("the PC/SC service (pcscd) is not running")]
    NoService,
    /// The card's answer is not a response APDU.
    #[error("the card answered {len} bytes, not a response APDU")]
    BadResponse {
        /// Bytes received.
        len: usize,
    },
    /// Another PC/SC failure.
    #[error("PC/SC: {0}")]
    Pcsc(String),
    /// The operator cancelled; no command was sent.
    #[error("cancelled by the operator")]
    Cancelled,
    /// The card or reader did not answer in time.
    #[error("the card did not answer in time")]
    Timeout,
}

/// Something that sends one command APDU and returns the card's raw answer.
pub trait CardTransport {
    /// One raw exchange: no `61xx`/`6Cxx` handling (see [`exchange`]).
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// The reader's name, for messages.
    fn reader_name(&self) -> &str;
}

/// A borrowed transport is a transport (a connector hands out connections on a transport it
/// keeps).
impl<T: CardTransport + ?Sized> CardTransport for &mut T {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit_raw(apdu)
    }

    fn reader_name(&self) -> &str {
        (**self).reader_name()
    }
}

/// The result of one logical command: the final response and the number of raw exchanges it took.
pub struct Exchanged {
    /// Data and SW of the final response.
    pub response: Vec<u8>,
    /// Raw APDUs sent (1 + GET RESPONSE / resend).
    pub raw_exchanges: u32,
}

impl fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Exchanged(<{} bytes>, {} raw)",
            self.response.len(),
            self.raw_exchanges
        )
    }
}

/// Sends a command and resolves the transport status words: `61xx` → GET RESPONSE with Le = xx
/// (repeated, data concatenated), `6Cxx` → the same command again with Le = xx. At most 32 raw
/// exchanges per command.
pub fn exchange(
    transport: &mut dyn CardTransport,
    apdu: &[u8],
) -> Result<Exchanged, TransportError> {
    const LIMIT: u32 = 32;
    let mut raw = 1u32;
    let mut response = transport.transmit_raw(apdu)?;
    let mut data = Vec::new();
    loop {
        let [.., sw1, sw2] = response[..] else {
            return Err(TransportError::BadResponse {
                len: response.len(),
            });
        };
        if raw >= LIMIT {
            break;
        }
        match sw1 {
            0x61 => {
                data.extend_from_slice(&response[..response.len() - 2]);
                raw += 1;
                response = transport.transmit_raw(&[0x00, 0xC0, 0x00, 0x00, sw2])?;
            }
            0x6C if response.len() == 2 => {
                let mut again = resend_with_le(apdu, sw2);
                raw += 1;
                response = transport.transmit_raw(&again)?;
                zeroize::Zeroize::zeroize(&mut again);
            }
            _ => break,
        }
    }
    if !data.is_empty() {
        data.extend_from_slice(&response);
        response = data;
    }
    Ok(Exchanged {
        response,
        raw_exchanges: raw,
    })
}

/// The same command with its Le replaced (or added).
fn resend_with_le(apdu: &[u8], le: u8) -> Vec<u8> {
    let body_end = if apdu.len() <= 5 {
        // Case 1 or 2: the header only.
        apdu.len().min(4)
    } else {
        // Case 3 or 4: header, Lc, data.
        let lc = apdu.get(4).copied().map_or(0, usize::from);
        (5 + lc).min(apdu.len())
    };
    let mut out = apdu.get(..body_end).unwrap_or(apdu).to_vec();
    out.push(le);
    out
}

/// The virtual card in the same process.
pub struct VirtualTransport {
    /// The card (reach in to inject faults or inspect it).
    pub card: VirtualCard,
    name: String,
}

impl fmt::Debug for VirtualTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "VirtualTransport", &[("card", &self.card)])
    }
}

impl VirtualTransport {
    /// Wraps a virtual card.
    pub fn new(card: VirtualCard) -> Self {
        Self::named(card, "in-process virtual card")
    }

    /// Wraps a virtual card shown in messages as reader `name`.
    pub fn named(card: VirtualCard, name: &str) -> Self {
        Self {
            card,
            name: name.into(),
        }
    }
}

impl CardTransport for VirtualTransport {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if !self.card.is_present() {
            return Err(TransportError::CardRemoved);
        }
        let response = self.card.process(apdu);
        if !self.card.is_present() {
            return Err(TransportError::CardRemoved);
        }
        Ok(response)
    }

    fn reader_name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_replaces_or_adds_le() {
        assert_eq!(
            resend_with_le(&[0x80, 0xCA, 0x9F, 0x36, 0x00], 5),
            [0x80, 0xCA, 0x9F, 0x36, 5]
        );
        assert_eq!(
            resend_with_le(&[0x00, 0xB2, 1, 0x0C], 9),
            [0x00, 0xB2, 1, 0x0C, 9]
        );
        assert_eq!(
            resend_with_le(&[0x80, 0xA8, 0, 0, 2, 0x83, 0, 0], 0x10),
            [0x80, 0xA8, 0, 0, 2, 0x83, 0, 0x10]
        );
        assert_eq!(
            resend_with_le(&[0x80, 0xA8, 0, 0, 2, 0x83, 0], 0x10),
            [0x80, 0xA8, 0, 0, 2, 0x83, 0, 0x10]
        );
    }
}
