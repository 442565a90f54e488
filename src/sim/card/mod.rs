//! A virtual EMV card: a GlobalPlatform security domain that accepts a CPS personalization, then a
//! payment application that answers a terminal.
//!
//! Sans-I/O: [`VirtualCard::process`] takes a command APDU and returns the response APDU. The
//! in-process transport (`devices::transport::VirtualTransport`), the vpcd bridge
//! (`sim::vpcd`) and tests drive it.
//!
//! It is an independent implementation of the card side: it knows only what arrives in APDUs and
//! its own keys, and shares nothing with persodesk's preparation or host session code beyond the
//! generic primitives of `domain::crypto`, `domain::tlv` and `domain::dgi`.
//!
//! GlobalPlatform part ([`channel`]): SELECT of the security domain or an application instance,
//! INITIALIZE UPDATE, EXTERNAL AUTHENTICATE (SCP02 i=15/55, SCP03 i=00/10/70, security levels
//! 00, 01, 03 and the R-MAC/R-ENC ones; keys from a KMC it is given, diversified with its KDD, or
//! static), INSTALL [for personalization], STORE DATA with sequence checks, DGI reassembly across
//! commands and DEK decryption; on the security domain GET DATA (66, CF, E0) and GET STATUS
//! (ISD, applications). Inside a session every command goes through secure messaging (C-MAC
//! checked, chain advanced, GP 2.3 §10.2) before it is answered — `6D00` for one it does not
//! implement — and a plain command at a C-MAC level ends the session first. Real status words:
//! `6300` wrong host cryptogram, `6982` bad or missing C-MAC, `6A86` wrong STORE DATA sequence,
//! `6985` commands out of order or a second personalization, `6A88` unknown key version, `6A80`
//! malformed DGIs (8000 not 48 bytes, 9000 KCVs that do not match 8000, a record that is not
//! template 70).
//!
//! Instances: the payment application and the PPSE (`2PAY.SYS.DDF01`), each personalized once.
//!
//! Payment application ([`emv`], [`contactless`], [`cryptogram`]): over contact SELECT PSE/AID
//! (FCI 9102), GPO from 9104 (or M/Chip A005); over contactless ([`CardConfig::interface`])
//! SELECT PPSE from the PPSE instance's personalized FCI (never computed), SELECT AID from 9103,
//! GPO from the contactless DGIs (M/Chip B005; Visa qVSDC 9115/9117 with the ARQC and the fDDA
//! signature). READ RECORD, GET DATA (9F36, 9F17), GENERATE AC per CVN element set (with CDA),
//! INTERNAL AUTHENTICATE (DDA with the 8201-8205 CRT key), VERIFY (plaintext PIN against 8010
//! and 9010).
//!
//! Faults for tests ([`Fault`]): the card pulled at command N, garbage or a given status word as
//! the answer to command N. With [`CardConfig::t0`] it answers like a T=0 card (`61xx` then GET
//! RESPONSE, `6Cxx` for a wrong Le); `sim-card` always does, as its ATR announces T=0.

pub mod channel;
pub mod contactless;
pub mod cryptogram;
pub mod emv;
pub mod stock;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::domain::crypto::{self, unpad_iso7816_len};
use channel::{CardChannel, CardKeySource, CardProtocol, InitInput, Keys, sw};

/// The default issuer security domain AID (GlobalPlatform).
pub const ISD_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

/// A T=0 ATR (TB1, TC1, 8 historical bytes ending in status `9000`).
pub const ATR: [u8; 12] = [
    0x3B, 0x68, 0x00, 0x00, 0x00, 0x73, 0xC8, 0x40, 0x13, 0x00, 0x90, 0x00,
];

/// The cryptogram version the payment application computes its AC with ([`cryptogram`] has the
/// element set, session key and padding of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardCvn {
    /// Visa CVN 10 (`0A`): MK-AC directly, padding method 1, AC data ends with the 4-byte CVR.
    Visa10,
    /// Visa CVN 18 (`12`): EMV common session key, padding method 2, AC data ends with the IAD.
    Visa18,
    /// Visa CVN 22 (`22`): as CVN 18, with IAD format 2 (`1F 22 DKI CVR(5) ..`, 32 bytes).
    Visa22,
    /// Mastercard CVN 16 (`10`): Mastercard SKD (ATC || 00 00 || UN), padding 2, 6-byte CVR.
    Mastercard16,
    /// Mastercard CVN 17 (`11`): as 16, the 8 counter bytes of the IAD also in the AC data.
    Mastercard17,
    /// Mastercard CVN 20 (`14`): EMV common session key, padding 2, 6-byte CVR.
    Mastercard20,
    /// Mastercard CVN 21 (`15`): as 20, the 8 counter bytes of the IAD also in the AC data.
    Mastercard21,
}

impl CardCvn {
    /// Parses a profile name (`visa-cvn10`, `visa-cvn18`, `visa-cvn22`, `mc-cvn16`, `mc-cvn17`,
    /// `mc-cvn20`, `mc-cvn21`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "visa-cvn10" => Self::Visa10,
            "visa-cvn18" => Self::Visa18,
            "visa-cvn22" => Self::Visa22,
            "mc-cvn16" => Self::Mastercard16,
            "mc-cvn17" => Self::Mastercard17,
            "mc-cvn20" => Self::Mastercard20,
            "mc-cvn21" => Self::Mastercard21,
            _ => return None,
        })
    }

    /// The CVN byte of the IAD (Visa: the CVN number read as hex digits; Mastercard
    /// `0001 0 ss c`).
    pub fn byte(self) -> u8 {
        match self {
            Self::Visa10 => 0x0A,
            Self::Visa18 => 0x12,
            Self::Visa22 => 0x22,
            Self::Mastercard16 => 0x10,
            Self::Mastercard17 => 0x11,
            Self::Mastercard20 => 0x14,
            Self::Mastercard21 => 0x15,
        }
    }
}

/// A fault to inject. Commands are counted from 1 since the card was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The card is pulled out when command N arrives: no answer, and none to any later command.
    RemoveAt(u32),
    /// Command N is answered with these bytes.
    GarbageAt(u32, Vec<u8>),
    /// Command N is answered with this status word only.
    StatusAt(u32, u16),
}

/// How the virtual card is made.
#[derive(Debug, Clone)]
pub struct CardConfig {
    /// SCP02 or SCP03 and "i".
    pub protocol: CardProtocol,
    /// The static keys or the KMC they are diversified from.
    pub keys: CardKeySource,
    /// Key version number of the key set.
    pub key_version: u8,
    /// Key diversification data (KMC-ID 6 || CSN 4).
    pub kdd: [u8; 10],
    /// The security domain's AID.
    pub isd_aid: Vec<u8>,
    /// Application instances that exist on the card (selectable, awaiting personalization).
    pub applications: Vec<Vec<u8>>,
    /// The CVN of the payment application.
    pub cvn: CardCvn,
    /// Answer like a T=0 card: `61xx` + GET RESPONSE for response data, `6Cxx` for a wrong Le.
    pub t0: bool,
    /// The interface the terminal uses (what SELECT PPSE and GPO answer depends on it).
    pub interface: CardInterface,
}

/// The interface of a dual-interface card the terminal talks over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CardInterface {
    /// ISO/IEC 7816 contacts.
    #[default]
    Contact,
    /// ISO/IEC 14443 (EMV contactless).
    Contactless,
}

impl CardInterface {
    /// Parses `contact` or `contactless`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "contact" => Some(Self::Contact),
            "contactless" => Some(Self::Contactless),
            _ => None,
        }
    }
}

impl CardConfig {
    /// A card with the given protocol and keys, the default ISD, the Visa and Mastercard credit
    /// application instances and the PPSE instance, CVN 18, the contact interface, and a KDD
    /// made of `00 00 45 41 53 59` and a CSN.
    pub fn new(protocol: CardProtocol, keys: CardKeySource, csn: [u8; 4]) -> Self {
        let mut kdd = [0u8; 10];
        kdd[..6].copy_from_slice(&[0x00, 0x00, 0x45, 0x41, 0x53, 0x59]);
        kdd[6..].copy_from_slice(&csn);
        Self {
            protocol,
            keys,
            key_version: 0x01,
            kdd,
            isd_aid: ISD_AID.to_vec(),
            applications: vec![
                vec![0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10],
                vec![0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10],
                vec![0xA0, 0x00, 0x00, 0x00, 0x03, 0x20, 0x10],
                vec![0xA0, 0x00, 0x00, 0x00, 0x04, 0x30, 0x60],
                emv::PPSE.to_vec(),
            ],
            cvn: CardCvn::Visa18,
            t0: false,
            interface: CardInterface::Contact,
        }
    }
}

/// What is selected.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selected {
    None,
    SecurityDomain,
    /// An application instance (personalized or not).
    Application(Vec<u8>),
    Pse,
    Ppse,
}

/// A personalization in progress (STORE DATA), staged until the last command.
#[derive(Default)]
struct Staging {
    target: Option<Vec<u8>>,
    next_p2: u16,
    stream: Zeroizing<Vec<u8>>,
    dgis: BTreeMap<u16, Zeroizing<Vec<u8>>>,
}

/// The personalized payment application.
#[derive(Clone)]
pub struct Application {
    /// Its AID.
    pub aid: Vec<u8>,
    /// The stored DGIs, clear (sensitive ones decrypted).
    pub dgis: BTreeMap<u16, Zeroizing<Vec<u8>>>,
    /// Application transaction counter.
    pub atc: u16,
    /// PIN try counter.
    pub ptc: u8,
}

/// The state that survives a restart of `persodesk sim-card --state FILE`. Holds clear card
/// data and keys: for simulated cards with test keys only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SavedState {
    /// The personalized application AID (hex), if any.
    pub aid: Option<String>,
    /// DGI id (4 hex digits) → value (hex).
    pub dgis: BTreeMap<String, String>,
    /// ATC.
    pub atc: u16,
    /// PIN try counter.
    pub ptc: u8,
    /// Secure channel sequence counter.
    pub sequence: u32,
    /// The PPSE instance's DGIs (id → hex), when it was personalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppse: Option<BTreeMap<String, String>>,
}

/// The virtual card.
pub struct VirtualCard {
    config: CardConfig,
    keys: Keys,
    present: bool,
    commands: u32,
    faults: Vec<Fault>,
    selected: Selected,
    channel: Option<CardChannel>,
    sequence: u32,
    fixed_random: Option<[u8; 8]>,
    staging: Staging,
    app: Option<Application>,
    /// The personalized PPSE instance (`2PAY.SYS.DDF01`).
    ppse: Option<Application>,
    pending_response: Option<Vec<u8>>,
    emv: emv::Transaction,
}

impl fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualCard")
            .field("protocol", &self.config.protocol)
            .field("present", &self.present)
            .field("commands", &self.commands)
            .field("personalized", &self.app.is_some())
            .finish_non_exhaustive()
    }
}

/// A card that cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardConfigError {
    /// The keys do not fit the protocol.
    #[error("virtual card: {0}")]
    Keys(&'static str),
    /// The saved state is unusable.
    #[error("virtual card state: {0}")]
    State(String),
}

impl VirtualCard {
    /// A blank card (not personalized).
    pub fn new(config: CardConfig) -> Result<Self, CardConfigError> {
        let keys = config
            .keys
            .keys(&config.kdd)
            .map_err(|_| CardConfigError::Keys("the keys cannot be derived"))?;
        let ok = match config.protocol {
            CardProtocol::Scp02 { i } => {
                matches!(i, 0x15 | 0x55)
                    && [&keys.enc, &keys.mac, &keys.dek]
                        .iter()
                        .all(|k| k.len() == 16)
            }
            CardProtocol::Scp03 { i } => {
                matches!(i, 0x00 | 0x10 | 0x70)
                    && [&keys.enc, &keys.mac, &keys.dek]
                        .iter()
                        .all(|k| matches!(k.len(), 16 | 24 | 32))
            }
        };
        if !ok {
            return Err(CardConfigError::Keys(
                "SCP02 needs i 15 or 55 and 16-byte TDES keys; SCP03 needs i 00, 10 or 70 and AES keys",
            ));
        }
        Ok(Self {
            config,
            keys,
            present: true,
            commands: 0,
            faults: Vec::new(),
            selected: Selected::None,
            channel: None,
            sequence: 1,
            fixed_random: None,
            staging: Staging::default(),
            app: None,
            ppse: None,
            pending_response: None,
            emv: emv::Transaction::default(),
        })
    }

    /// Adds a fault to inject.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Uses this value instead of random bytes for card challenges and dynamic numbers (tests).
    pub fn set_fixed_random(&mut self, random: [u8; 8]) {
        self.fixed_random = Some(random);
    }

    /// Sets the secure channel sequence counter (tests replaying real-card traces).
    pub fn set_sequence_counter(&mut self, sequence: u32) {
        self.sequence = sequence;
    }

    /// Whether the card is in the reader (false once a `RemoveAt` fault fired).
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// Puts the card back (after a removal) and resets it.
    pub fn insert(&mut self) {
        self.present = true;
        self.reset();
    }

    /// The ATR.
    pub fn atr(&self) -> &'static [u8] {
        &ATR
    }

    /// Commands received since creation.
    pub fn commands(&self) -> u32 {
        self.commands
    }

    /// The personalized application, if any.
    pub fn application(&self) -> Option<&Application> {
        self.app.as_ref()
    }

    /// The personalized PPSE instance, if any.
    pub fn ppse(&self) -> Option<&Application> {
        self.ppse.as_ref()
    }

    /// Presents the other interface (the same card moved from the contacts to the field):
    /// resets it.
    pub fn set_interface(&mut self, interface: CardInterface) {
        self.config.interface = interface;
        self.reset();
    }

    /// Power cycle / warm reset: closes the secure channel, drops a personalization in progress,
    /// clears the selection and the transaction.
    pub fn reset(&mut self) {
        self.selected = Selected::None;
        self.channel = None;
        self.staging = Staging::default();
        self.pending_response = None;
        self.emv = emv::Transaction::default();
    }

    /// The state to save.
    pub fn save(&self) -> SavedState {
        let mut state = SavedState {
            sequence: self.sequence,
            ..SavedState::default()
        };
        if let Some(app) = &self.app {
            state.aid = Some(hex::encode_upper(&app.aid));
            state.atc = app.atc;
            state.ptc = app.ptc;
            for (id, value) in &app.dgis {
                state
                    .dgis
                    .insert(format!("{id:04X}"), hex::encode_upper(value.as_slice()));
            }
        }
        state.ppse = self.ppse.as_ref().map(|p| {
            p.dgis
                .iter()
                .map(|(id, v)| (format!("{id:04X}"), hex::encode_upper(v.as_slice())))
                .collect()
        });
        state
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: &SavedState) -> Result<(), CardConfigError> {
        let bad = |what: &str| CardConfigError::State(what.to_string());
        self.sequence = state.sequence;
        let dgis_of = |map: &BTreeMap<String, String>| {
            let mut dgis = BTreeMap::new();
            for (id, value) in map {
                let id = u16::from_str_radix(id, 16).map_err(|_| bad("a DGI id is not hex"))?;
                let value = hex::decode(value).map_err(|_| bad("a DGI value is not hex"))?;
                dgis.insert(id, Zeroizing::new(value));
            }
            Ok::<_, CardConfigError>(dgis)
        };
        self.app = match &state.aid {
            None => None,
            Some(aid) => Some(Application {
                aid: hex::decode(aid).map_err(|_| bad("aid is not hex"))?,
                dgis: dgis_of(&state.dgis)?,
                atc: state.atc,
                ptc: state.ptc,
            }),
        };
        self.ppse = match &state.ppse {
            None => None,
            Some(map) => Some(Application {
                aid: emv::PPSE.to_vec(),
                dgis: dgis_of(map)?,
                atc: 0,
                ptc: 0,
            }),
        };
        Ok(())
    }

    fn random(&self) -> [u8; 8] {
        if let Some(r) = self.fixed_random {
            return r;
        }
        let mut r = [0u8; 8];
        if getrandom::fill(&mut r).is_err() {
            r = [0x5A; 8];
        }
        r
    }

    /// Processes one command APDU and returns the response APDU (data and SW). Returns an empty
    /// vector when the card is not present.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if !self.present {
            return Vec::new();
        }
        self.commands = self.commands.saturating_add(1);
        let n = self.commands;
        for fault in &self.faults {
            match fault {
                Fault::RemoveAt(at) if *at == n => {
                    self.present = false;
                    self.reset();
                    return Vec::new();
                }
                Fault::GarbageAt(at, bytes) if *at == n => return bytes.clone(),
                Fault::StatusAt(at, status) if *at == n => return status.to_be_bytes().to_vec(),
                _ => {}
            }
        }
        if self.config.t0 {
            self.process_t0(apdu)
        } else {
            self.dispatch(apdu)
        }
    }

    /// T=0 behaviour around [`Self::dispatch`].
    fn process_t0(&mut self, apdu: &[u8]) -> Vec<u8> {
        if let [0x00, 0xC0, 0x00, 0x00, le] = apdu {
            let Some(pending) = self.pending_response.take() else {
                return sw::CONDITIONS.to_be_bytes().to_vec();
            };
            let len = pending.len().saturating_sub(2);
            if *le != 0 && usize::from(*le) != len {
                let wrong = 0x6C00 | u16::try_from(len).unwrap_or(0);
                self.pending_response = Some(pending);
                return wrong.to_be_bytes().to_vec();
            }
            return pending;
        }
        self.pending_response = None;
        // Case 2 (header + Le): a wrong Le is answered 6Cxx, the terminal resends.
        let case2_le = match apdu {
            [_, _, _, _, le] => Some(*le),
            _ => None,
        };
        let response = self.dispatch(apdu);
        let len = response.len().saturating_sub(2);
        if len == 0 {
            return response;
        }
        if let Some(le) = case2_le {
            if le != 0 && usize::from(le) != len {
                return (0x6C00 | u16::try_from(len).unwrap_or(0))
                    .to_be_bytes()
                    .to_vec();
            }
            return response;
        }
        let more = 0x6100 | u16::try_from(len.min(0xFF)).unwrap_or(0);
        self.pending_response = Some(response);
        more.to_be_bytes().to_vec()
    }

    fn dispatch(&mut self, apdu: &[u8]) -> Vec<u8> {
        let [cla, ins, p1, p2, ..] = apdu else {
            return sw::WRONG_LENGTH.to_be_bytes().to_vec();
        };
        let (cla, ins, p1, p2) = (*cla, *ins, *p1, *p2);
        let data = command_data(apdu);
        match (cla & 0xFC, ins) {
            (0x00, 0xA4) => return self.select(p1, data),
            (0x80, 0x50) => return self.initialize_update(p1, data),
            (0x84, 0x82) | (0x80, 0x82) => return self.external_authenticate(apdu),
            _ => {}
        }
        // Inside a secure channel session every command goes through secure messaging (its
        // C-MAC checked and the MAC chain advanced, GP 2.3 §10.2); a command that is not wrapped
        // while the level asks for a C-MAC ends the session before it is answered.
        if let Some(level) = self.channel.as_ref().and_then(CardChannel::level) {
            let gp = cla & 0xF0 == 0x80 && matches!(ins, 0xE6 | 0xE2 | 0xF2 | 0xCA);
            if cla & 0x04 != 0 || (level == 0x00 && gp) {
                return self.secured(apdu, cla, |card, plain| {
                    card.sd_command(cla, ins, p1, p2, plain)
                });
            }
            if level != 0x00 {
                self.channel = None;
            }
        } else if self.channel.is_some() {
            // INITIALIZE UPDATE without EXTERNAL AUTHENTICATE: any other command ends it.
            self.channel = None;
        }
        match (cla & 0xFC, ins) {
            (0x80 | 0x84, 0xE6 | 0xE2 | 0xF2) => reply(&[], sw::SECURITY),
            (0x80, 0xCA) if matches!(self.selected, Selected::SecurityDomain) => {
                let (data, status) = self.gp_get_data(p1, p2);
                reply(&data, status)
            }
            _ => self.application_command(apdu, cla, ins),
        }
    }

    /// A command of the payment application (or a directory) outside GP secure messaging.
    fn application_command(&mut self, apdu: &[u8], cla: u8, ins: u8) -> Vec<u8> {
        // Only the personalized application answers its commands: another instance that is
        // selected (installed, not personalized) knows none of them.
        let on_app = match (&self.selected, &self.app) {
            (Selected::Application(aid), Some(app)) => *aid == app.aid,
            (Selected::Pse, Some(_)) => true,
            _ => false,
        };
        match &self.app {
            Some(_) if on_app => {
                let random = self.random();
                let pse = self.selected == Selected::Pse;
                let Some(app) = self.app.as_mut() else {
                    return reply(&[], sw::CONDITIONS);
                };
                let ctx = emv::Context {
                    cvn: self.config.cvn,
                    contactless: self.config.interface == CardInterface::Contactless,
                };
                emv::process(app, &mut self.emv, ctx, pse, apdu, random)
            }
            _ => reply(
                &[],
                if cla & 0x80 == 0 && ins == 0xB2 {
                    sw::CONDITIONS
                } else {
                    sw::INS
                },
            ),
        }
    }

    /// A command inside the secure channel session, its data already unwrapped: INSTALL, STORE
    /// DATA, and on the security domain GET STATUS and GET DATA; anything else `6D00` (the
    /// C-MAC was checked, so the host's and the card's MAC chains stay in step).
    fn sd_command(&mut self, cla: u8, ins: u8, p1: u8, p2: u8, plain: &[u8]) -> (Vec<u8>, u16) {
        let on_sd = matches!(self.selected, Selected::SecurityDomain);
        match (cla & 0xF0, ins) {
            (0x80, 0xE6) => (Vec::new(), self.install(p1, plain)),
            (0x80, 0xE2) => (Vec::new(), self.store_data(p1, p2, plain)),
            (0x80, 0xF2) if on_sd => self.gp_get_status(p1, p2, plain),
            (0x80, 0xCA) if on_sd => self.gp_get_data(p1, p2),
            (0x80, _) => (Vec::new(), sw::INS),
            _ => (Vec::new(), sw::CLA),
        }
    }

    fn select(&mut self, p1: u8, aid: &[u8]) -> Vec<u8> {
        if p1 != 0x04 {
            return reply(&[], sw::FUNCTION);
        }
        self.channel = None;
        self.staging = Staging::default();
        self.emv = emv::Transaction::default();
        if aid == self.config.isd_aid.as_slice() || aid.is_empty() {
            self.selected = Selected::SecurityDomain;
            let fci = tlv(
                0x6F,
                &[
                    tlv(0x84, &self.config.isd_aid),
                    tlv(0xA5, &tlv(0x9F65, &[0xFF])),
                ]
                .concat(),
            );
            return reply(&fci, sw::OK);
        }
        let contactless = self.config.interface == CardInterface::Contactless;
        if aid == emv::PPSE
            && let Some(ppse) = &self.ppse
        {
            // The PPSE is contactless only, and answers with its personalized FCI (before its
            // personalization the instance itself is selectable, below).
            match emv::ppse_fci(ppse).filter(|_| contactless) {
                Some(fci) => {
                    self.selected = Selected::Ppse;
                    return reply(&fci, sw::OK);
                }
                None => {
                    self.selected = Selected::None;
                    return reply(&[], sw::NOT_FOUND);
                }
            }
        }
        if let Some(app) = &self.app {
            if aid == emv::PSE && !contactless {
                self.selected = Selected::Pse;
                return reply(&emv::pse_fci(), sw::OK);
            }
            if !aid.is_empty() && app.aid.starts_with(aid) {
                self.selected = Selected::Application(app.aid.clone());
                return reply(&emv::application_fci(app, contactless), sw::OK);
            }
        }
        if let Some(instance) = self
            .config
            .applications
            .iter()
            .find(|a| a.as_slice() == aid)
            && self.app.as_ref().is_none_or(|a| a.aid != *instance)
        {
            self.selected = Selected::Application(instance.clone());
            let fci = tlv(0x6F, &tlv(0x84, instance));
            return reply(&fci, sw::OK);
        }
        self.selected = Selected::None;
        reply(&[], sw::NOT_FOUND)
    }

    fn selected_aid(&self) -> Option<&[u8]> {
        match &self.selected {
            Selected::SecurityDomain => Some(&self.config.isd_aid),
            Selected::Application(aid) => Some(aid),
            _ => None,
        }
    }

    fn initialize_update(&mut self, kvn: u8, data: &[u8]) -> Vec<u8> {
        self.channel = None;
        let Some(aid) = self.selected_aid().map(<[u8]>::to_vec) else {
            return reply(&[], sw::CONDITIONS);
        };
        let Ok(host_challenge) = <[u8; 8]>::try_from(data) else {
            return reply(&[], sw::WRONG_LENGTH);
        };
        if kvn != 0 && kvn != self.config.key_version {
            return reply(&[], sw::REF_NOT_FOUND);
        }
        let input = InitInput {
            protocol: self.config.protocol,
            keys: &self.keys,
            kdd: &self.config.kdd,
            kvn: self.config.key_version,
            sequence: self.sequence,
            host_challenge,
            random: self.random(),
            selected_aid: &aid,
        };
        match CardChannel::initialize(&input) {
            Ok(opened) => {
                self.sequence = self.sequence.wrapping_add(1) & 0x00FF_FFFF;
                self.channel = Some(opened.channel);
                reply(&opened.response, sw::OK)
            }
            Err(status) => reply(&[], status),
        }
    }

    fn external_authenticate(&mut self, apdu: &[u8]) -> Vec<u8> {
        let Some(channel) = self.channel.as_mut() else {
            return reply(&[], sw::CONDITIONS);
        };
        if channel.is_open() {
            self.channel = None;
            return reply(&[], sw::CONDITIONS);
        }
        let status = channel.external_authenticate(apdu);
        if status != sw::OK {
            self.channel = None;
        }
        reply(&[], status)
    }

    /// Runs a command that needs the open secure channel: unwraps it, runs `f` on the plain
    /// data, wraps the response. Any failure closes the channel.
    fn secured(
        &mut self,
        apdu: &[u8],
        cla: u8,
        f: impl FnOnce(&mut Self, &[u8]) -> (Vec<u8>, u16),
    ) -> Vec<u8> {
        let Some(channel) = self.channel.as_mut().filter(|c| c.is_open()) else {
            return reply(&[], sw::SECURITY);
        };
        if cla & 0x04 == 0 && channel.level() != Some(0x00) {
            self.channel = None;
            return reply(&[], sw::SECURITY);
        }
        let plain = match channel.unwrap(apdu) {
            Ok(p) => p,
            Err(status) => {
                self.channel = None;
                return reply(&[], status);
            }
        };
        let (data, status) = f(self, &plain);
        match &self.channel {
            Some(channel) => channel.wrap_response(&data, status),
            None => reply(&data, status),
        }
    }

    fn install(&mut self, p1: u8, data: &[u8]) -> u16 {
        if p1 != 0x20 || !matches!(self.selected, Selected::SecurityDomain) {
            return sw::WRONG_P1P2;
        }
        // 00 00 L AID 00 00 00
        let [0x00, 0x00, len, rest @ ..] = data else {
            return sw::WRONG_DATA;
        };
        let Some(aid) = rest.get(..usize::from(*len)) else {
            return sw::WRONG_DATA;
        };
        if !self.config.applications.iter().any(|a| a.as_slice() == aid) {
            return sw::REF_NOT_FOUND;
        }
        if self.is_personalized(aid) {
            return sw::CONDITIONS;
        }
        self.staging = Staging {
            target: Some(aid.to_vec()),
            ..Staging::default()
        };
        sw::OK
    }

    /// Whether the instance `aid` can take no more personalization: the PPSE once personalized,
    /// and any payment instance once the (single) payment application is.
    fn is_personalized(&self, aid: &[u8]) -> bool {
        if aid == emv::PPSE {
            self.ppse.is_some()
        } else {
            self.app.is_some()
        }
    }

    fn store_data(&mut self, p1: u8, p2: u8, data: &[u8]) -> u16 {
        let target = match (&self.selected, &self.staging.target) {
            (Selected::Application(aid), _) => aid.clone(),
            (Selected::SecurityDomain, Some(aid)) => aid.clone(),
            _ => return sw::CONDITIONS,
        };
        if self.is_personalized(&target) {
            return sw::CONDITIONS;
        }
        if u16::from(p2) != self.staging.next_p2 {
            self.staging = Staging::default();
            return sw::WRONG_P1P2;
        }
        self.staging.next_p2 += 1;
        let encrypted = p1 & 0x60 == 0x60;
        self.staging.stream.extend_from_slice(data);
        if let Err(status) = self.take_complete_dgis(encrypted) {
            self.staging = Staging::default();
            return status;
        }
        if p1 & 0x80 != 0 {
            if !self.staging.stream.is_empty() {
                self.staging = Staging::default();
                return sw::WRONG_DATA;
            }
            let dgis = std::mem::take(&mut self.staging.dgis);
            if let Err(status) = emv::check_personalization(&dgis) {
                self.staging = Staging::default();
                return status;
            }
            let ptc = dgis
                .get(&0x9010)
                .and_then(|v| v.first().copied())
                .unwrap_or(3);
            let done = Application {
                aid: target,
                dgis,
                atc: 0,
                ptc,
            };
            if done.aid == emv::PPSE {
                if emv::ppse_fci(&done).is_none() {
                    self.staging = Staging::default();
                    return sw::WRONG_DATA;
                }
                self.ppse = Some(done);
            } else {
                self.app = Some(done);
            }
            self.staging = Staging::default();
        }
        sw::OK
    }

    /// Moves every complete DGI of the stream into the staging map.
    fn take_complete_dgis(&mut self, encrypted: bool) -> Result<(), u16> {
        loop {
            let stream = &self.staging.stream;
            let Some((id, header, len)) = dgi_header(stream) else {
                return Ok(());
            };
            let Some(raw) = stream.get(header..header + len) else {
                return Ok(());
            };
            let mut value = Zeroizing::new(raw.to_vec());
            let rest = Zeroizing::new(stream[header + len..].to_vec());
            self.staging.stream = rest;
            if encrypted {
                let channel = self.channel.as_ref().ok_or(sw::SECURITY)?;
                channel.decrypt_sensitive(&mut value)?;
                if emv::is_padded_dgi(id, value.len()) {
                    let block = match self.config.protocol {
                        CardProtocol::Scp02 { .. } => crypto::DES_BLOCK,
                        CardProtocol::Scp03 { .. } => crypto::AES_BLOCK,
                    };
                    if let Ok(plain) = unpad_iso7816_len(&value, block) {
                        value.truncate(plain);
                    }
                }
            }
            emv::check_dgi(id, &value)?;
            self.staging.dgis.insert(id, value);
        }
    }

    fn gp_get_data(&self, p1: u8, p2: u8) -> (Vec<u8>, u16) {
        match (p1, p2) {
            (0x00, 0x66) => {
                // Card recognition data: GP 2.2 card, SCP0x with its "i".
                let (scp, i) = match self.config.protocol {
                    CardProtocol::Scp02 { i } => (0x02, i),
                    CardProtocol::Scp03 { i } => (0x03, i),
                };
                let oid = |tail: &[u8]| {
                    let mut v = vec![0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B];
                    v.extend_from_slice(tail);
                    tlv(0x06, &v)
                };
                let body = [
                    oid(&[0x01]),
                    tlv(0x60, &oid(&[0x02, 0x02, 0x02])),
                    tlv(0x63, &oid(&[0x03])),
                    tlv(0x64, &oid(&[0x04, scp, i])),
                ]
                .concat();
                (tlv(0x66, &tlv(0x73, &body)), sw::OK)
            }
            (0x00, 0xCF) => (tlv(0xCF, &self.config.kdd), sw::OK),
            (0x00, 0xE0) => {
                // Key information template: key id 01..03, the key version, type and length.
                let (kind, len) = match self.config.protocol {
                    CardProtocol::Scp02 { .. } => (0x80, 0x10),
                    CardProtocol::Scp03 { .. } => {
                        (0x88, u8::try_from(self.keys.enc.len()).unwrap_or(0x10))
                    }
                };
                let kvn = self.config.key_version;
                let body: Vec<u8> = (1u8..=3)
                    .flat_map(|id| tlv(0xC0, &[id, kvn, kind, len]))
                    .collect();
                (tlv(0xE0, &body), sw::OK)
            }
            _ => (Vec::new(), sw::REF_NOT_FOUND),
        }
    }

    /// GET STATUS (GP 2.3 §11.4): P1 `80` the issuer security domain, `40` applications and
    /// security domains, `20`/`10` load files (none on this card: `6A88`); P2 bit 2 the TLV
    /// format (`E3` entries with 4F, 9F70, C5), else the legacy `L AID life-cycle privileges`.
    /// Search criteria `4F 00` (every AID) or `4F L AID` (that one).
    fn gp_get_status(&self, p1: u8, p2: u8, criteria: &[u8]) -> (Vec<u8>, u16) {
        // 4F L AID, possibly followed by other criteria or a 5C tag list (ignored).
        let filter = match criteria {
            [0x4F, len, rest @ ..] if rest.len() >= usize::from(*len) => &rest[..usize::from(*len)],
            _ => return (Vec::new(), sw::WRONG_DATA),
        };
        if p2 & 0xFC != 0 {
            return (Vec::new(), sw::WRONG_P1P2);
        }
        // (AID, life cycle, privileges): ISD SECURED (0F) with SD + card lock/terminate
        // privileges; application instances SELECTABLE (07) or personalized (0F).
        let entries: Vec<(Vec<u8>, u8, u8)> = match p1 {
            0x80 => vec![(self.config.isd_aid.clone(), 0x0F, 0x9E)],
            0x40 => self
                .config
                .applications
                .iter()
                .map(|aid| {
                    let done = self.app.as_ref().is_some_and(|a| a.aid == *aid);
                    (aid.clone(), if done { 0x0F } else { 0x07 }, 0x00)
                })
                .collect(),
            0x20 | 0x10 => Vec::new(),
            _ => return (Vec::new(), sw::WRONG_P1P2),
        };
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|(aid, _, _)| aid.starts_with(filter))
            .collect();
        if entries.is_empty() {
            return (Vec::new(), sw::REF_NOT_FOUND);
        }
        let mut out = Vec::new();
        for (aid, life, privileges) in entries {
            if p2 & 0x02 != 0 {
                let body = [
                    tlv(0x4F, &aid),
                    tlv(0x9F70, &[life]),
                    tlv(0xC5, &[privileges]),
                ]
                .concat();
                out.extend_from_slice(&tlv(0xE3, &body));
            } else {
                out.push(u8::try_from(aid.len()).unwrap_or(0));
                out.extend_from_slice(&aid);
                out.extend_from_slice(&[life, privileges]);
            }
        }
        (out, sw::OK)
    }
}

/// The data field of a short command APDU (empty for cases 1 and 2).
fn command_data(apdu: &[u8]) -> &[u8] {
    match apdu {
        [_, _, _, _, lc, rest @ ..] if !rest.is_empty() => {
            rest.get(..usize::from(*lc)).unwrap_or(rest)
        }
        _ => &[],
    }
}

/// `id || L || value` header of the next DGI in the stream: (id, header length, value length).
fn dgi_header(stream: &[u8]) -> Option<(u16, usize, usize)> {
    match stream {
        [a, b, 0xFF, hi, lo, ..] => Some((
            u16::from_be_bytes([*a, *b]),
            5,
            usize::from(u16::from_be_bytes([*hi, *lo])),
        )),
        [_, _, 0xFF, ..] => None,
        [a, b, len, ..] => Some((u16::from_be_bytes([*a, *b]), 3, usize::from(*len))),
        _ => None,
    }
}

/// Response bytes: data then SW.
pub(crate) fn reply(data: &[u8], status: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2);
    out.extend_from_slice(data);
    out.extend_from_slice(&status.to_be_bytes());
    out
}

/// A BER-TLV with a 1- or 2-byte tag (given as a number) and a definite length.
pub(crate) fn tlv(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 5);
    if tag > 0xFF {
        out.extend_from_slice(&tag.to_be_bytes());
    } else {
        out.push(tag.to_be_bytes()[1]);
    }
    let len = value.len();
    if len < 0x80 {
        out.push(len.to_be_bytes()[7]);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len.to_be_bytes()[7]]);
    } else {
        let b = len.to_be_bytes();
        out.extend_from_slice(&[0x82, b[6], b[7]]);
    }
    out.extend_from_slice(value);
    out
}
