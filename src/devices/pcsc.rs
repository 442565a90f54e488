//! PC/SC readers through the `pcsc` crate: list readers, connect (T=0 or T=1), transmit.
//!
//! A personalization session keeps one connection for its whole length: dropping a
//! `pcsc::Card` resets the card and kills an open secure channel, so [`PcscTransport`]
//! disconnects explicitly, leaving the card as it is ([`PcscTransport::disconnect`], also done on
//! drop). Card removal and an unplugged reader come back as [`TransportError::CardRemoved`] and
//! [`TransportError::ReaderGone`].

use std::ffi::CString;
use std::fmt;

use pcsc::{Card, Context, Disposition, Protocols, Scope, ShareMode};

use super::transport::{CardTransport, TransportError};
use crate::domain::mask::debug_fields;

fn map_error(reader: &str, e: pcsc::Error) -> TransportError {
    match e {
        pcsc::Error::RemovedCard | pcsc::Error::ResetCard => TransportError::CardRemoved,
        pcsc::Error::NoSmartcard => TransportError::NoCard(reader.to_string()),
        pcsc::Error::ReaderUnavailable
        | pcsc::Error::UnknownReader
        | pcsc::Error::NoReadersAvailable => TransportError::ReaderGone(reader.to_string()),
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => TransportError::NoService,
        pcsc::Error::Timeout => TransportError::Timeout,
        other => TransportError::Pcsc(other.to_string()),
    }
}

/// The names of the PC/SC readers on this machine (empty when there are none).
pub fn list_readers() -> Result<Vec<String>, TransportError> {
    let ctx = Context::establish(Scope::User).map_err(|e| map_error("", e))?;
    let names = ctx.list_readers_owned().map_err(|e| map_error("", e))?;
    Ok(names
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect())
}

/// Which transmission protocols to accept when connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// T=0 only.
    T0,
    /// T=1 only.
    T1,
    /// Whatever the card offers.
    Any,
}

/// A connection to the card in one reader.
pub struct PcscTransport {
    card: Option<Card>,
    reader: String,
    // Kept alive as long as the card handle.
    _ctx: Context,
}

impl fmt::Debug for PcscTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(
            f,
            "PcscTransport",
            &[
                ("reader", &self.reader),
                ("connected", &self.card.is_some()),
            ],
        )
    }
}

impl PcscTransport {
    /// Connects exclusively to the card in `reader`.
    pub fn connect(reader: &str, protocol: ProtocolChoice) -> Result<Self, TransportError> {
        let ctx = Context::establish(Scope::User).map_err(|e| map_error(reader, e))?;
        let name = CString::new(reader).map_err(|_| TransportError::ReaderGone(reader.into()))?;
        let protocols = match protocol {
            ProtocolChoice::T0 => Protocols::T0,
            ProtocolChoice::T1 => Protocols::T1,
            ProtocolChoice::Any => Protocols::ANY,
        };
        let card = ctx
            .connect(&name, ShareMode::Exclusive, protocols)
            .map_err(|e| map_error(reader, e))?;
        Ok(Self {
            card: Some(card),
            reader: reader.to_string(),
            _ctx: ctx,
        })
    }

    /// The card's ATR.
    pub fn atr(&self) -> Result<Vec<u8>, TransportError> {
        let card = self.card.as_ref().ok_or(TransportError::CardRemoved)?;
        let status = card
            .status2_owned()
            .map_err(|e| map_error(&self.reader, e))?;
        Ok(status.atr().to_vec())
    }

    /// Disconnects, leaving the card powered and as it is.
    pub fn disconnect(mut self) -> Result<(), TransportError> {
        self.disconnect_inner()
    }

    fn disconnect_inner(&mut self) -> Result<(), TransportError> {
        match self.card.take() {
            None => Ok(()),
            Some(card) => card
                .disconnect(Disposition::LeaveCard)
                .map_err(|(_, e)| map_error(&self.reader, e)),
        }
    }
}

impl Drop for PcscTransport {
    fn drop(&mut self) {
        let _ = self.disconnect_inner();
    }
}

impl CardTransport for PcscTransport {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let card = self.card.as_ref().ok_or(TransportError::CardRemoved)?;
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE];
        let result = card
            .transmit(apdu, &mut buf)
            .map(<[u8]>::to_vec)
            .map_err(|e| map_error(&self.reader, e));
        zeroize::Zeroize::zeroize(&mut buf);
        match result {
            // Some drivers (vpcd among them) answer nothing when the card went away during the
            // command: ask the reader whether the card is still there.
            // The driver notices within its polling interval, so look a few times.
            Ok(r) if r.is_empty() => {
                for _ in 0..10 {
                    match card.status2_owned() {
                        Ok(status) if status.status().contains(pcsc::Status::PRESENT) => {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        Ok(_) => return Err(TransportError::CardRemoved),
                        Err(e) => return Err(map_error(&self.reader, e)),
                    }
                }
                Err(TransportError::BadResponse { len: 0 })
            }
            other => other,
        }
    }

    fn reader_name(&self) -> &str {
        &self.reader
    }
}
