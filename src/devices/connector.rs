//! The card readers a production run connects through: the [`CardConnector`] port, a PC/SC
//! reader by name ([`PcscReader`]) and the in-process virtual card ([`VirtualCardReader`]). The
//! command line, the stations and the window all use these two; tests add fault injectors.

use crate::devices::pcsc::{PcscTransport, ProtocolChoice};
use crate::devices::transport::{CardTransport, TransportError, VirtualTransport};
use crate::domain::chip::{ChipProfile, Interface};
use crate::keys::LoadedKeys;
use crate::sim::card::{CardInterface, VirtualCard};

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

/// A PC/SC reader by name: a new connection per phase (contact only).
pub struct PcscReader(pub String);

impl CardConnector for PcscReader {
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        Ok(Box::new(PcscTransport::connect(
            &self.0,
            ProtocolChoice::Any,
        )?))
    }
}

/// The in-process virtual card as a reader: every connection resets the card (a new connection
/// after a reset, as a terminal gets) and presents the interface asked for (the virtual card is
/// dual-interface).
#[derive(Debug)]
pub struct VirtualCardReader {
    transport: VirtualTransport,
}

impl VirtualCardReader {
    /// The reader holding `card`, named `in-process virtual card` in messages.
    pub fn new(card: VirtualCard) -> Self {
        VirtualCardReader {
            transport: VirtualTransport::new(card),
        }
    }

    /// The reader holding `card`, named `name` in messages.
    pub fn named(card: VirtualCard, name: &str) -> Self {
        VirtualCardReader {
            transport: VirtualTransport::named(card, name),
        }
    }

    /// The card (to inspect it).
    pub fn card(&self) -> &VirtualCard {
        &self.transport.card
    }

    /// The card (to inject faults or talk to it directly).
    pub fn card_mut(&mut self) -> &mut VirtualCard {
        &mut self.transport.card
    }

    /// Takes the card out of the reader.
    pub fn into_card(self) -> VirtualCard {
        self.transport.card
    }
}

impl VirtualCardReader {
    /// A new connection over `interface` (resets the card).
    fn link(&mut self, interface: Interface) -> Box<dyn CardTransport + '_> {
        self.transport.card.set_interface(match interface {
            Interface::Contact => CardInterface::Contact,
            Interface::Contactless => CardInterface::Contactless,
        });
        Box::new(&mut self.transport)
    }
}

impl CardConnector for VirtualCardReader {
    fn connect(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        Ok(self.link(Interface::Contact))
    }

    fn connect_on(
        &mut self,
        interface: Interface,
    ) -> Result<Option<Box<dyn CardTransport + '_>>, TransportError> {
        Ok(Some(self.link(interface)))
    }
}

/// A fresh blank virtual card of the stock `profile` names (see
/// [`crate::sim::card::stock::config_for`]), its card keys diversified from the profile's
/// **test** KMC in `keys`, with a random serial number.
pub fn blank_virtual_card(profile: &ChipProfile, keys: &LoadedKeys) -> Result<VirtualCard, String> {
    let (kmc, _) = keys
        .software()
        .map_err(|e| format!("virtual card: {e}"))?
        .test_kmc(profile.channel.kmc_index)
        .map_err(|e| format!("virtual card: {e}"))?;
    let mut csn = [0u8; 4];
    if getrandom::fill(&mut csn).is_err() {
        csn = [0, 0, 0, 1];
    }
    let config = crate::sim::card::stock::config_for(profile, kmc, csn)
        .map_err(|e| format!("virtual card: {e}"))?;
    VirtualCard::new(config).map_err(|e| format!("virtual card: {e}"))
}
