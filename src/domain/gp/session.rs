//! The personalization session, host side: a sans-I/O state machine that yields one command APDU
//! at a time and consumes the card's responses.
//!
//! ```text
//! SELECT target AID
//!   → INITIALIZE UPDATE (host challenge from the caller)
//!   → verify the card cryptogram (and, for SCP03, optionally the pseudo-random card challenge)
//!   → EXTERNAL AUTHENTICATE (C-MAC; fixes the security level)
//!   → [INSTALL [for personalization] of the instance AID, inside the secure channel]
//!   → STORE DATA × n (P1 00/60, | 80 on the very last command; P2 00, 01, .. per command)
//!   → Done(Summary)
//! ```
//!
//! Each state is its own type that consumes itself on a response and returns the next state with
//! the command to send. Any status word other than `9000` ends the session with an error naming
//! the step, the DGI (for STORE DATA) and the status word. Transport status words (`61xx` GET
//! RESPONSE, `6Cxx` resend with Le) must be resolved by the transport before the response is
//! handed over; if they arrive here they are errors like any other.
//!
//! INSTALL [for personalization] is sent after EXTERNAL AUTHENTICATE: the security domain that
//! forwards STORE DATA to the applet only accepts it inside a secure channel session
//! (GlobalPlatformPro `personalize`, GP card specification §11.5).
//!
//! DGI encoding: `id(2) || L || value` with `L` one byte (0..=254) or `FF hi lo`. A DGI that does not
//! fit one command is split into consecutive commands that continue the raw byte stream, and then
//! always uses the 3-byte length form. Sensitive DGIs are encrypted with the DEK (SCP02: session
//! DEK, TDES-ECB; SCP03: static DEK, AES-CBC zero IV) after optional ISO/IEC 9797-1 method 2
//! padding to the cipher block.

use std::fmt;

use zeroize::Zeroizing;

use super::apdu::{ApduError, CommandApdu, ResponseApdu, StatusWord, select_by_aid};
use super::card_keys::HostCardKeys;
use super::kdf::{Diversification, Kdd, diversify};
use super::scp02::{self, Scp02Variant};
use super::scp03;
use super::{GpError, SecretKey, SecurityLevel, StaticKeys};
use crate::domain::crypto::{AES_BLOCK, DES_BLOCK, ct_eq, pad_iso7816};
use crate::domain::dgi::PersoDgi;
use crate::domain::keystore::{CardKeySet, CardKeyStore, KeyError, KeyRef, KeyUsage};
use crate::domain::mask::debug_fields;

/// An application or security domain identifier (5 to 16 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Aid(Vec<u8>);

impl Aid {
    /// Accepts 5 to 16 bytes.
    pub fn new(aid: &[u8]) -> Result<Self, PlanError> {
        if (5..=16).contains(&aid.len()) {
            Ok(Self(aid.to_vec()))
        } else {
            Err(PlanError::AidLength { len: aid.len() })
        }
    }

    /// Parses hex.
    pub fn from_hex(aid: &str) -> Result<Self, PlanError> {
        let raw = hex::decode(aid).map_err(|_| PlanError::AidLength { len: 0 })?;
        Self::new(&raw)
    }

    /// The AID bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aid({})", hex::encode_upper(&self.0))
    }
}

impl fmt::Display for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(&self.0))
    }
}

/// The secure channel protocol and its "i" parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SCP02 with i = 05, 15, 45 or 55.
    Scp02 {
        /// The "i" parameter.
        i: u8,
    },
    /// SCP03 (S8 mode) with the "i" the card reports, e.g. 00, 10 or 70.
    Scp03 {
        /// The "i" parameter; the card's INITIALIZE UPDATE response must report the same value.
        i: u8,
    },
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scp02 { i } => write!(f, "SCP02 i={i:02X}"),
            Self::Scp03 { i } => write!(f, "SCP03 i={i:02X}"),
        }
    }
}

/// Where the static card keys come from.
#[derive(Debug, Clone)]
pub enum CardKeys {
    /// The static keys of the card (batch keys).
    Static(StaticKeys),
    /// A KMC diversified with the KDD returned by INITIALIZE UPDATE.
    Master {
        /// The issuer master key.
        kmc: SecretKey,
        /// The diversification method of the card batch.
        method: Diversification,
    },
    /// The KMC `kmc #kmc_index` of a key store: the store diversifies it with the KDD of
    /// INITIALIZE UPDATE ([`CardKeyStore::open_card_keys`]) and keeps the card's static keys;
    /// neither they nor the KMC come out. The store is handed to
    /// [`PersoSession::handle_response_with`].
    Store {
        /// The KMC's index in the key store.
        kmc_index: u32,
        /// The diversification method of the card batch.
        method: Diversification,
    },
}

/// How to open the secure channel and what to reach through it: the one channel struct the
/// chip profile's rule becomes ([`crate::perso::channel_options`]) and every front end (command
/// line, window, stations) hands to the session.
#[derive(Debug, Clone)]
pub struct ChannelPlan {
    /// The AID to SELECT: the application itself (CPS style), or its security domain when
    /// `install_for_perso` is set (GP style).
    pub target_aid: Aid,
    /// The application instance to personalize through the selected security domain with
    /// INSTALL [for personalization].
    pub install_for_perso: Option<Aid>,
    /// SCP02 or SCP03 and its "i".
    pub protocol: Protocol,
    /// C-MAC or C-MAC + C-DEC (SCP03 also allows the R-MAC / R-ENC levels).
    pub security_level: SecurityLevel,
    /// Key version number for INITIALIZE UPDATE (00 = the card's default key set).
    pub key_version: u8,
    /// The static keys, a KMC, or (front ends) the key store's KMC by index.
    pub keys: CardKeys,
    /// SCP03 with a pseudo-random card challenge (i bit 10): check that the card challenge is
    /// `KDF(K-ENC, 02, seq || target AID)`. Not available for SCP02.
    pub verify_card_challenge: bool,
}

/// Everything a personalization session needs: the channel, the host challenge added when the
/// session starts (from the caller: the domain draws no random numbers), and the DGIs.
#[derive(Debug, Clone)]
pub struct PersoPlan {
    /// The secure channel and its target.
    pub channel: ChannelPlan,
    /// The 8-byte host challenge, drawn by the caller.
    pub host_challenge: [u8; 8],
    /// The DGIs in send order.
    pub dgis: Vec<PersoDgi>,
}

/// A plan that cannot be run; found before any command is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An AID must have 5 to 16 bytes.
    #[error("an AID must have 5 to 16 bytes, got {len}")]
    AidLength {
        /// The length given.
        len: usize,
    },
    /// There is nothing to store (the last STORE DATA carries the end-of-personalization bit).
    #[error("no DGI to store")]
    NoDgis,
    /// The protocol, security level or keys do not go together.
    #[error("{0}")]
    Unsupported(GpError),
    /// A sensitive DGI without padding whose length is not a multiple of the DEK block.
    #[error(
        "DGI {id:04X}: {len} bytes is not a multiple of the {block}-byte DEK block and padding is off"
    )]
    NotBlockAligned {
        /// The DGI.
        id: u16,
        /// Its value length.
        len: usize,
        /// The DEK block size.
        block: usize,
    },
    /// Padding is only applied to DGIs that are encrypted.
    #[error("DGI {id:04X}: padding is set but the DGI is not encrypted")]
    PadWithoutEncryption {
        /// The DGI.
        id: u16,
    },
    /// A DGI longer than the 3-byte length form allows (65 534 bytes).
    #[error("DGI {id:04X}: {len} bytes is longer than 65534")]
    DgiTooLong {
        /// The DGI.
        id: u16,
        /// Its length after padding.
        len: usize,
    },
    /// P2 counts STORE DATA commands from 00 to FF.
    #[error("{count} STORE DATA commands needed, at most 256 fit one session")]
    TooManyCommands {
        /// The number of commands the DGIs need.
        count: usize,
    },
}

/// A protocol step, as shown in progress and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    /// SELECT of the target AID.
    Select,
    /// INITIALIZE UPDATE.
    InitializeUpdate,
    /// EXTERNAL AUTHENTICATE.
    ExternalAuthenticate,
    /// INSTALL [for personalization].
    InstallForPersonalization,
    /// STORE DATA.
    StoreData,
    /// The session is over.
    Finished,
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Select => "SELECT",
            Self::InitializeUpdate => "INITIALIZE UPDATE",
            Self::ExternalAuthenticate => "EXTERNAL AUTHENTICATE",
            Self::InstallForPersonalization => "INSTALL [for personalization]",
            Self::StoreData => "STORE DATA",
            Self::Finished => "finished",
        })
    }
}

/// Where a session stands, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The step whose command is in flight (or `Finished`).
    pub step: StepName,
    /// The 1-based number of the STORE DATA command in flight (0 before the first).
    pub store_data_sent: u16,
    /// The number of STORE DATA commands of the whole session.
    pub store_data_total: u16,
    /// The DGI of the STORE DATA command in flight.
    pub dgi: Option<u16>,
    /// Commands issued so far, including the one in flight.
    pub commands_sent: u16,
    /// Commands of the whole session.
    pub commands_total: u16,
}

impl Progress {
    /// Completed fraction in 0.0..=1.0, counting answered commands.
    pub fn fraction(&self) -> f32 {
        if self.commands_total == 0 {
            return 1.0;
        }
        let done = if self.step == StepName::Finished {
            self.commands_sent
        } else {
            self.commands_sent.saturating_sub(1)
        };
        f32::from(done) / f32::from(self.commands_total)
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.step, self.dgi) {
            (StepName::StoreData, Some(dgi)) => write!(
                f,
                "STORE DATA {} of {} (DGI {dgi:04X})",
                self.store_data_sent, self.store_data_total
            ),
            (step, _) => write!(f, "{step}"),
        }
    }
}

/// What a successful session did (no key or card data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The protocol used.
    pub protocol: Protocol,
    /// The security level of the session.
    pub security_level: SecurityLevel,
    /// The card's key diversification data.
    pub kdd: Kdd,
    /// The key version the card used.
    pub key_version: u8,
    /// The card's sequence counter (2 bytes SCP02, 3 bytes SCP03 when present).
    pub sequence_counter: Vec<u8>,
    /// The DGIs stored, in order.
    pub dgis: Vec<u16>,
    /// The number of STORE DATA commands.
    pub store_data_commands: u16,
    /// All commands of the session.
    pub commands: u16,
}

/// Why a session stopped. Names the step, the DGI (id only) and the status word; never key
/// bytes or DGI values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The card answered with a status word other than `9000`.
    Status {
        /// The step.
        step: StepName,
        /// The DGI of the STORE DATA command, if any.
        dgi: Option<u16>,
        /// The status word.
        sw: StatusWord,
    },
    /// The card cryptogram does not match the keys.
    CardCryptogramMismatch,
    /// SCP03 pseudo-random card challenge does not match K-ENC, sequence counter and AID.
    CardChallengeMismatch,
    /// The card reports another protocol or "i" than the plan.
    ProtocolMismatch {
        /// What the plan says.
        expected: Protocol,
        /// What the card reports (protocol byte and, for SCP03, "i").
        got: String,
    },
    /// A response the step cannot use.
    Malformed {
        /// The step.
        step: StepName,
        /// Why.
        source: GpError,
    },
    /// The response bytes were not even an APDU.
    Apdu {
        /// The step.
        step: StepName,
        /// Why.
        source: ApduError,
    },
    /// The card's R-MAC does not verify.
    RMacMismatch {
        /// The step.
        step: StepName,
        /// The DGI of the STORE DATA command, if any.
        dgi: Option<u16>,
    },
    /// A computation failed (a key of the wrong size surfaced late).
    Crypto {
        /// The step.
        step: StepName,
        /// Why.
        source: GpError,
    },
    /// The key store could not give the card's static keys (KMC missing, refused, token error).
    CardKeys(KeyError),
    /// A sensitive DGI could not be encrypted for the card under its DEK: a held one (no store,
    /// token error, a wrap mechanism the token lacks) or a clear one (the card's keys failed).
    HeldDgi {
        /// The DGI.
        dgi: u16,
        /// Why.
        error: KeyError,
    },
    /// A response arrived after the session ended.
    Finished,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dgi = |d: &Option<u16>| d.map(|d| format!(" (DGI {d:04X})")).unwrap_or_default();
        match self {
            Self::Status { step, dgi: d, sw } => {
                write!(f, "{step}{} failed: card answered {sw}", dgi(d))
            }
            Self::CardCryptogramMismatch => {
                f.write_str("card cryptogram mismatch (possible wrong keys)")
            }
            Self::CardChallengeMismatch => f.write_str(
                "pseudo-random card challenge mismatch (possible wrong keys or security domain AID)",
            ),
            Self::ProtocolMismatch { expected, got } => {
                write!(f, "the plan says {expected} but the card reports {got}")
            }
            Self::Malformed { step, source } => write!(f, "{step}: {source}"),
            Self::Apdu { step, source } => write!(f, "{step}: {source}"),
            Self::RMacMismatch { step, dgi: d } => {
                write!(f, "{step}{}: R-MAC of the card's response does not verify", dgi(d))
            }
            Self::Crypto { step, source } => write!(f, "{step}: {source}"),
            Self::CardKeys(e) => write!(f, "INITIALIZE UPDATE: card keys: {e}"),
            Self::HeldDgi { dgi, error } => {
                write!(f, "STORE DATA (DGI {dgi:04X}): key store: {error}")
            }
            Self::Finished => f.write_str("the session is already finished"),
        }
    }
}

impl std::error::Error for SessionError {}

/// The outcome of feeding the session: send a command, or stop.
#[must_use = "the step carries the next command to send or the final result"]
#[derive(Debug)]
pub enum Step {
    /// Send this command and pass the response to [`PersoSession::handle_response`].
    Transmit(CommandApdu),
    /// Personalization completed.
    Done(Summary),
    /// The session ended with an error; the card is in an unknown state.
    Failed(SessionError),
}

// ---------------------------------------------------------------------------------------------
// Plan validation and STORE DATA layout

struct Layout {
    max_chunk: usize,
    block: usize,
    store_data_total: u16,
}

/// The DEK block and the largest plain STORE DATA field of an SCP02 plan; refuses what SCP02
/// cannot do (R-MAC/R-ENC, a card challenge check, AES keys or diversification).
fn scp02_layout(plan: &PersoPlan, i: u8) -> Result<(usize, usize), PlanError> {
    let unsupported = PlanError::Unsupported;
    let level = plan.channel.security_level;
    Scp02Variant::new(i).map_err(unsupported)?;
    if level.r_mac() || level.r_enc() {
        return Err(unsupported(GpError::Unsupported(
            "SCP02 R-MAC / R-ENC security levels",
        )));
    }
    if plan.channel.verify_card_challenge {
        return Err(unsupported(GpError::Unsupported(
            "pseudo-random card challenge check for SCP02",
        )));
    }
    match &plan.channel.keys {
        CardKeys::Static(k) => {
            for key in [&k.enc, &k.mac, &k.dek] {
                if key.len() != 16 {
                    return Err(unsupported(GpError::KeyLength {
                        what: "an SCP02 static key",
                        expected: "16 bytes (2-key TDES)",
                        got: key.len(),
                    }));
                }
            }
        }
        CardKeys::Store { method, .. } => {
            if method.is_aes() {
                return Err(unsupported(GpError::Unsupported(
                    "kdf3 (AES) diversification with SCP02",
                )));
            }
        }
        CardKeys::Master { kmc, method } => {
            if method.is_aes() {
                return Err(unsupported(GpError::Unsupported(
                    "kdf3 (AES) diversification with SCP02",
                )));
            }
            if kmc.len() != 16 {
                return Err(unsupported(GpError::KeyLength {
                    what: "a TDES KMC",
                    expected: "16 bytes",
                    got: kmc.len(),
                }));
            }
        }
    }
    Ok((DES_BLOCK, level.max_plain_data()))
}

/// The DEK block and the largest plain STORE DATA field of an SCP03 plan; refuses S16 mode,
/// levels the "i" does not support and TDES diversification.
fn scp03_layout(plan: &PersoPlan, i: u8) -> Result<(usize, usize), PlanError> {
    let unsupported = PlanError::Unsupported;
    let level = plan.channel.security_level;
    if i & 0x01 != 0 {
        return Err(unsupported(GpError::Unsupported(
            "SCP03 S16 mode (i bit 01)",
        )));
    }
    if level.r_mac() && i & 0x20 == 0 {
        return Err(unsupported(GpError::Unsupported(
            "an R-MAC level with an SCP03 i without R-MAC support (bit 20)",
        )));
    }
    if level.r_enc() && i & 0x40 == 0 {
        return Err(unsupported(GpError::Unsupported(
            "an R-ENC level with an SCP03 i without R-ENC support (bit 40)",
        )));
    }
    if plan.channel.verify_card_challenge && i & 0x10 == 0 {
        return Err(unsupported(GpError::Unsupported(
            "a card challenge check with a random card challenge (i bit 10 clear)",
        )));
    }
    match &plan.channel.keys {
        CardKeys::Static(_) => {} // SecretKey guarantees 16/24/32 bytes
        CardKeys::Master { method, .. } | CardKeys::Store { method, .. } => {
            if !method.is_aes() {
                return Err(unsupported(GpError::Unsupported(
                    "TDES (EMV CPS / VISA2) diversification with SCP03",
                )));
            }
        }
    }
    Ok((AES_BLOCK, level.max_plain_data()))
}

fn validate(plan: &PersoPlan) -> Result<Layout, PlanError> {
    if plan.dgis.is_empty() {
        return Err(PlanError::NoDgis);
    }
    let (block, max_chunk) = match plan.channel.protocol {
        Protocol::Scp02 { i } => scp02_layout(plan, i)?,
        Protocol::Scp03 { i } => scp03_layout(plan, i)?,
    };
    let mut count = 0usize;
    for dgi in &plan.dgis {
        let len = dgi.value().len();
        if dgi.pad && !dgi.encrypt {
            return Err(PlanError::PadWithoutEncryption { id: dgi.id() });
        }
        if dgi.encrypt && !dgi.pad && len % block != 0 {
            return Err(PlanError::NotBlockAligned {
                id: dgi.id(),
                len,
                block,
            });
        }
        let sent_len = sent_value_len(dgi, block);
        if sent_len > 0xFFFE {
            return Err(PlanError::DgiTooLong {
                id: dgi.id(),
                len: sent_len,
            });
        }
        count += commands_for(sent_len, max_chunk);
    }
    let store_data_total = u16::try_from(count)
        .ok()
        .filter(|&c| c <= 256)
        .ok_or(PlanError::TooManyCommands { count })?;
    Ok(Layout {
        max_chunk,
        block,
        store_data_total,
    })
}

/// The length of the value as sent (after padding).
fn sent_value_len(dgi: &PersoDgi, block: usize) -> usize {
    let len = dgi.value().len();
    if dgi.pad {
        (len / block + 1) * block
    } else {
        len
    }
}

/// Whether a DGI whose sent value has `len` bytes needs more than one command.
fn is_split(len: usize, max_chunk: usize) -> bool {
    len > 0xFE || 3 + len > max_chunk
}

fn header_len(len: usize, max_chunk: usize) -> usize {
    if is_split(len, max_chunk) { 5 } else { 3 }
}

fn commands_for(len: usize, max_chunk: usize) -> usize {
    (header_len(len, max_chunk) + len).div_ceil(max_chunk)
}

// ---------------------------------------------------------------------------------------------
// Secure channel of the session

/// The open secure channel of a session, whichever protocol the plan names, with the card's
/// keys that encrypt its sensitive data.
struct SecureChannel {
    link: Link,
    keys: Box<dyn CardKeySet>,
}

/// The protocol's channel: C-MAC, C-DEC, R-MAC.
enum Link {
    Scp02(scp02::Channel),
    Scp03(scp03::Channel),
}

impl SecureChannel {
    fn external_authenticate(&mut self, host_cryptogram: &[u8; 8]) -> Result<CommandApdu, GpError> {
        match &mut self.link {
            Link::Scp02(c) => c.external_authenticate(host_cryptogram),
            Link::Scp03(c) => c.external_authenticate(host_cryptogram),
        }
    }

    fn wrap(&mut self, command: &CommandApdu) -> Result<CommandApdu, GpError> {
        match &mut self.link {
            Link::Scp02(c) => c.wrap(command),
            Link::Scp03(c) => c.wrap(command),
        }
    }

    /// Checks the R-MAC of a `9000` response (SCP03 R-MAC levels).
    fn check_response(&self, response: &ResponseApdu) -> Result<(), GpError> {
        match &self.link {
            Link::Scp02(_) => Ok(()),
            Link::Scp03(c) => c.unwrap(response).map(|_| ()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The states

/// What every state after SELECT carries along.
struct Context {
    plan: PersoPlan,
    layout: Layout,
}

struct AwaitSelect {
    ctx: Context,
}

struct AwaitInitUpdate {
    ctx: Context,
}

/// What INITIALIZE UPDATE told us, for the summary.
struct CardInfo {
    kdd: Kdd,
    key_version: u8,
    sequence_counter: Vec<u8>,
}

struct AwaitExtAuth {
    ctx: Context,
    channel: SecureChannel,
    card: CardInfo,
}

struct AwaitInstall {
    ctx: Context,
    channel: SecureChannel,
    card: CardInfo,
}

struct AwaitStoreData {
    ctx: Context,
    channel: SecureChannel,
    card: CardInfo,
    feed: StoreDataFeed,
}

enum State {
    AwaitSelect(AwaitSelect),
    AwaitInitUpdate(AwaitInitUpdate),
    AwaitExtAuth(AwaitExtAuth),
    AwaitInstall(AwaitInstall),
    AwaitStoreData(AwaitStoreData),
    Finished,
}

/// What a state does with an answer: the next state and command, or why the session stopped.
type Handled = Result<Next, SessionError>;

/// The result of one state handling one response.
enum Next {
    Send(Box<State>, CommandApdu),
    Done(Summary),
}

fn expect_success(
    response: &ResponseApdu,
    step: StepName,
    dgi: Option<u16>,
) -> Result<(), SessionError> {
    if response.sw.is_success() {
        Ok(())
    } else {
        Err(SessionError::Status {
            step,
            dgi,
            sw: response.sw,
        })
    }
}

impl AwaitSelect {
    fn handle(self, response: &ResponseApdu) -> Handled {
        expect_success(response, StepName::Select, None)?;
        let plan = &self.ctx.plan;
        let command = CommandApdu::new(
            0x80,
            0x50,
            plan.channel.key_version,
            0x00,
            plan.host_challenge.to_vec(),
            Some(0x00),
        )
        .map_err(|source| SessionError::Apdu {
            step: StepName::InitializeUpdate,
            source,
        })?;
        Ok(Next::Send(
            Box::new(State::AwaitInitUpdate(AwaitInitUpdate { ctx: self.ctx })),
            command,
        ))
    }
}

impl AwaitInitUpdate {
    fn handle(self, response: &ResponseApdu, store: Option<&dyn CardKeyStore>) -> Handled {
        expect_success(response, StepName::InitializeUpdate, None)?;
        let plan = &self.ctx.plan;
        let data = response.data();
        if let Some(&scp) = data.get(11) {
            let expected_scp = match plan.channel.protocol {
                Protocol::Scp02 { .. } => 0x02,
                Protocol::Scp03 { .. } => 0x03,
            };
            if scp != expected_scp {
                return Err(SessionError::ProtocolMismatch {
                    expected: plan.channel.protocol,
                    got: format!("SCP{scp:02X}"),
                });
            }
        }
        let (mut channel, card, host_cryptogram) = match plan.channel.protocol {
            Protocol::Scp02 { i } => open_scp02(plan, i, data, store)?,
            Protocol::Scp03 { i } => open_scp03(plan, i, data, store)?,
        };
        let command = channel
            .external_authenticate(&host_cryptogram)
            .map_err(|source| SessionError::Crypto {
                step: StepName::ExternalAuthenticate,
                source,
            })?;
        Ok(Next::Send(
            Box::new(State::AwaitExtAuth(AwaitExtAuth {
                ctx: self.ctx,
                channel,
                card,
            })),
            command,
        ))
    }
}

/// A secure channel opened from the INITIALIZE UPDATE answer, what the card told, and the host
/// cryptogram for EXTERNAL AUTHENTICATE.
type Opened = (SecureChannel, CardInfo, [u8; 8]);
/// An opened channel, or why the card's INITIALIZE UPDATE answer could not open one.
type Opening = Result<Opened, SessionError>;

fn malformed(source: GpError) -> SessionError {
    SessionError::Malformed {
        step: StepName::InitializeUpdate,
        source,
    }
}

fn crypto(source: GpError) -> SessionError {
    SessionError::Crypto {
        step: StepName::InitializeUpdate,
        source,
    }
}

/// The card's keys: the plan's static keys, its KMC diversified with the card's KDD on the host,
/// or the key store's KMC diversified inside the store, which keeps them.
fn card_keys(
    plan: &PersoPlan,
    store: Option<&dyn CardKeyStore>,
    kdd: &Kdd,
) -> Result<Box<dyn CardKeySet>, SessionError> {
    let aes = matches!(plan.channel.protocol, Protocol::Scp03 { .. });
    let plan_key = KeyRef::new(KeyUsage::Kmc, 0);
    match &plan.channel.keys {
        CardKeys::Static(keys) => Ok(Box::new(HostCardKeys::new(keys.clone(), plan_key, aes))),
        CardKeys::Master { kmc, method } => {
            let keys = diversify(kmc, kdd, *method).map_err(crypto)?;
            Ok(Box::new(HostCardKeys::new(keys, plan_key, aes)))
        }
        CardKeys::Store { kmc_index, method } => match store {
            Some(s) => s
                .open_card_keys(*kmc_index, *method, kdd)
                .map_err(SessionError::CardKeys),
            None => Err(SessionError::CardKeys(KeyError::Rule {
                key: KeyRef::new(KeyUsage::Kmc, *kmc_index),
                rule: "no key store was given to the session".into(),
            })),
        },
    }
}

/// SCP02: session keys from the sequence counter, the card cryptogram checked.
fn open_scp02(plan: &PersoPlan, i: u8, data: &[u8], store: Option<&dyn CardKeyStore>) -> Opening {
    let host = &plan.host_challenge;
    let r = scp02::InitUpdateResponse::parse(data).map_err(malformed)?;
    let mut keys = card_keys(plan, store, &r.kdd)?;
    let session = keys
        .scp02_session(r.sequence_counter)
        .map_err(SessionError::CardKeys)?;
    let expected = session.card_cryptogram(host, &r).map_err(crypto)?;
    if !ct_eq(&expected, &r.card_cryptogram) {
        return Err(SessionError::CardCryptogramMismatch);
    }
    let host_cryptogram = session.host_cryptogram(host, &r).map_err(crypto)?;
    let variant = Scp02Variant::new(i).map_err(crypto)?;
    let channel =
        scp02::Channel::new(session, variant, plan.channel.security_level).map_err(crypto)?;
    let card = CardInfo {
        kdd: r.kdd,
        key_version: r.key_version,
        sequence_counter: r.sequence_counter.to_vec(),
    };
    let channel = SecureChannel {
        link: Link::Scp02(channel),
        keys,
    };
    Ok((channel, card, host_cryptogram))
}

/// SCP03: the card's "i" checked, session keys from both challenges, the card cryptogram (and,
/// when the plan asks, the pseudo-random card challenge) checked.
fn open_scp03(plan: &PersoPlan, i: u8, data: &[u8], store: Option<&dyn CardKeyStore>) -> Opening {
    let host = &plan.host_challenge;
    let r = scp03::InitUpdateResponse::parse(data).map_err(malformed)?;
    if r.i != i {
        return Err(SessionError::ProtocolMismatch {
            expected: plan.channel.protocol,
            got: format!("SCP03 i={:02X}", r.i),
        });
    }
    let mut keys = card_keys(plan, store, &r.kdd)?;
    let session = keys
        .scp03_session(host, &r.card_challenge)
        .map_err(SessionError::CardKeys)?;
    let expected = session.card_cryptogram(host, &r).map_err(crypto)?;
    if !ct_eq(&expected, &r.card_cryptogram) {
        return Err(SessionError::CardCryptogramMismatch);
    }
    if plan.channel.verify_card_challenge {
        let seq = r.sequence_counter.ok_or(malformed(GpError::Malformed {
            what: "SCP03 INITIALIZE UPDATE response",
            reason: "no sequence counter for a pseudo-random card challenge",
        }))?;
        let challenge = keys
            .scp03_card_challenge(&seq, plan.channel.target_aid.as_bytes())
            .map_err(SessionError::CardKeys)?;
        if !ct_eq(&challenge, &r.card_challenge) {
            return Err(SessionError::CardChallengeMismatch);
        }
    }
    let host_cryptogram = session.host_cryptogram(host, &r).map_err(crypto)?;
    let card = CardInfo {
        kdd: r.kdd,
        key_version: r.key_version,
        sequence_counter: r.sequence_counter.map(|s| s.to_vec()).unwrap_or_default(),
    };
    let channel = SecureChannel {
        link: Link::Scp03(scp03::Channel::new(session, plan.channel.security_level)),
        keys,
    };
    Ok((channel, card, host_cryptogram))
}

impl AwaitExtAuth {
    fn handle(self, response: &ResponseApdu, store: Option<&dyn CardKeyStore>) -> Handled {
        expect_success(response, StepName::ExternalAuthenticate, None)?;
        let Self {
            ctx,
            mut channel,
            card,
        } = self;
        match &ctx.plan.channel.install_for_perso {
            Some(instance) => {
                let aid = instance.as_bytes();
                let mut data = Vec::with_capacity(aid.len() + 6);
                data.extend_from_slice(&[0x00, 0x00]);
                data.push(u8::try_from(aid.len()).unwrap_or(0));
                data.extend_from_slice(aid);
                data.extend_from_slice(&[0x00, 0x00, 0x00]);
                const STEP: StepName = StepName::InstallForPersonalization;
                let plain = CommandApdu::new(0x80, 0xE6, 0x20, 0x00, data, None)
                    .map_err(|source| SessionError::Apdu { step: STEP, source })?;
                let command = channel
                    .wrap(&plain)
                    .map_err(|source| SessionError::Crypto { step: STEP, source })?;
                Ok(Next::Send(
                    Box::new(State::AwaitInstall(AwaitInstall { ctx, channel, card })),
                    command,
                ))
            }
            None => first_store_data(ctx, channel, card, store),
        }
    }
}

impl AwaitInstall {
    fn handle(self, response: &ResponseApdu, store: Option<&dyn CardKeyStore>) -> Handled {
        const STEP: StepName = StepName::InstallForPersonalization;
        expect_success(response, STEP, None)?;
        check_rmac(&self.channel, response, STEP, None)?;
        first_store_data(self.ctx, self.channel, self.card, store)
    }
}

fn check_rmac(
    channel: &SecureChannel,
    response: &ResponseApdu,
    step: StepName,
    dgi: Option<u16>,
) -> Result<(), SessionError> {
    channel.check_response(response).map_err(|e| match e {
        GpError::RMacMismatch => SessionError::RMacMismatch { step, dgi },
        source => SessionError::Malformed { step, source },
    })
}

fn first_store_data(
    mut ctx: Context,
    mut channel: SecureChannel,
    card: CardInfo,
    store: Option<&dyn CardKeyStore>,
) -> Handled {
    let dgis = std::mem::take(&mut ctx.plan.dgis);
    let mut feed = StoreDataFeed {
        pending: dgis.into_iter(),
        current: None,
        sequence: 0,
        stored: Vec::new(),
    };
    let command = feed.next_command(&ctx.layout, &mut channel, store)?;
    Ok(Next::Send(
        Box::new(State::AwaitStoreData(AwaitStoreData {
            ctx,
            channel,
            card,
            feed,
        })),
        command,
    ))
}

impl AwaitStoreData {
    fn handle(mut self, response: &ResponseApdu, store: Option<&dyn CardKeyStore>) -> Handled {
        const STEP: StepName = StepName::StoreData;
        let dgi = self.feed.current_dgi();
        expect_success(response, STEP, dgi)?;
        check_rmac(&self.channel, response, STEP, dgi)?;
        if self.feed.is_complete() {
            let plan = &self.ctx.plan;
            return Ok(Next::Done(Summary {
                protocol: plan.channel.protocol,
                security_level: plan.channel.security_level,
                kdd: self.card.kdd,
                key_version: self.card.key_version,
                sequence_counter: std::mem::take(&mut self.card.sequence_counter),
                dgis: std::mem::take(&mut self.feed.stored),
                store_data_commands: self.feed.sequence,
                commands: 0, // filled in by the session
            }));
        }
        let command = self
            .feed
            .next_command(&self.ctx.layout, &mut self.channel, store)?;
        Ok(Next::Send(Box::new(State::AwaitStoreData(self)), command))
    }
}

/// The DGI being sent: its encoded stream (header + value as sent) and how far it went.
struct CurrentDgi {
    id: u16,
    encrypt: bool,
    encoded: Zeroizing<Vec<u8>>,
    offset: usize,
}

/// Cuts the DGIs into STORE DATA commands, one DGI (or fragment) per command.
struct StoreDataFeed {
    pending: std::vec::IntoIter<PersoDgi>,
    current: Option<CurrentDgi>,
    /// STORE DATA commands issued so far (the next P2).
    sequence: u16,
    stored: Vec<u16>,
}

impl StoreDataFeed {
    fn current_dgi(&self) -> Option<u16> {
        self.current.as_ref().map(|c| c.id)
    }

    fn is_complete(&self) -> bool {
        self.pending.len() == 0
            && self
                .current
                .as_ref()
                .is_none_or(|c| c.offset >= c.encoded.len())
    }

    fn next_command(
        &mut self,
        layout: &Layout,
        channel: &mut SecureChannel,
        store: Option<&dyn CardKeyStore>,
    ) -> Result<CommandApdu, SessionError> {
        const STEP: StepName = StepName::StoreData;
        let needs_next = self
            .current
            .as_ref()
            .is_none_or(|c| c.offset >= c.encoded.len());
        if needs_next {
            let Some(dgi) = self.pending.next() else {
                return Err(SessionError::Finished);
            };
            let encoded = encode_dgi(&dgi, layout, channel, store)?;
            self.stored.push(dgi.id());
            self.current = Some(CurrentDgi {
                id: dgi.id(),
                encrypt: dgi.encrypt,
                encoded,
                offset: 0,
            });
        }
        let Some(current) = self.current.as_mut() else {
            return Err(SessionError::Finished);
        };
        let end = (current.offset + layout.max_chunk).min(current.encoded.len());
        let chunk = current
            .encoded
            .get(current.offset..end)
            .unwrap_or(&[])
            .to_vec();
        current.offset = end;
        let last = self.pending.len() == 0 && end >= current.encoded.len();
        let mut p1 = if current.encrypt { 0x60 } else { 0x00 };
        if last {
            p1 |= 0x80;
        }
        let p2 = u8::try_from(self.sequence).map_err(|_| SessionError::Malformed {
            step: STEP,
            source: GpError::Unsupported("more than 256 STORE DATA commands"),
        })?;
        self.sequence += 1;
        tracing::debug!(dgi = current.id, p1, p2, len = chunk.len(), "STORE DATA");
        let plain = CommandApdu::new(0x80, 0xE2, p1, p2, chunk, None)
            .map_err(|source| SessionError::Apdu { step: STEP, source })?
            .redact();
        channel
            .wrap(&plain)
            .map_err(|source| SessionError::Crypto { step: STEP, source })
    }
}

/// `id || L || value-as-sent`, with the 3-byte length form when the DGI is split. A held DGI's
/// value comes from the key store, already encrypted under the card's DEK.
fn encode_dgi(
    dgi: &PersoDgi,
    layout: &Layout,
    channel: &SecureChannel,
    store: Option<&dyn CardKeyStore>,
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    let crypto = |source| SessionError::Crypto {
        step: StepName::StoreData,
        source,
    };
    let value = match &dgi.held {
        Some(held) => held_value(dgi, held, channel, store)?,
        None => {
            let mut value = Zeroizing::new(dgi.value().to_vec());
            if dgi.pad {
                pad_iso7816(&mut value, layout.block);
            }
            if dgi.encrypt {
                value = channel.keys.encrypt_sensitive(&value).map_err(|error| {
                    SessionError::HeldDgi {
                        dgi: dgi.id(),
                        error,
                    }
                })?;
            }
            value
        }
    };
    let len = value.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len + 5));
    out.extend_from_slice(&dgi.id().to_be_bytes());
    let len16 = u16::try_from(len).map_err(|_| crypto(GpError::TooLong { len, max: 0xFFFE }))?;
    if is_split(len, layout.max_chunk) {
        out.push(0xFF);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(len16.to_be_bytes()[1]);
    }
    out.extend_from_slice(&value);
    Ok(out)
}

/// The value of a held DGI, encrypted for the card by the key store. Fails closed: a held DGI
/// must be sent encrypted, padded only where the held value pads itself (a wrapped key cannot
/// be padded; a value wrapped under a `ktk` carries its padding), and needs a store.
fn held_value(
    dgi: &PersoDgi,
    held: &crate::domain::keystore::HeldSecret,
    channel: &SecureChannel,
    store: Option<&dyn CardKeyStore>,
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    let fail = |rule: &str| SessionError::HeldDgi {
        dgi: dgi.id(),
        error: KeyError::Rule {
            key: held.key(),
            rule: rule.into(),
        },
    };
    if !dgi.encrypt || dgi.pad != held.pads() {
        return Err(fail(
            "a DGI held in the key store must be sent encrypted, and padded only as the held \
             value is (profile flags)",
        ));
    }
    let store = store.ok_or_else(|| fail("no key store was given to the session"))?;
    let held_err = |error| SessionError::HeldDgi {
        dgi: dgi.id(),
        error,
    };
    let dek = channel.keys.dek().map_err(held_err)?;
    store.held_secret_for_card(held, dek).map_err(held_err)
}

// ---------------------------------------------------------------------------------------------
// The session

/// A personalization session. Start it with [`PersoSession::start`], send each
/// [`Step::Transmit`] command and feed the response bytes to [`PersoSession::handle_response`]
/// until [`Step::Done`] or [`Step::Failed`].
pub struct PersoSession {
    state: State,
    progress: Progress,
}

impl fmt::Debug for PersoSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "PersoSession", &[("progress", &self.progress)])
    }
}

impl PersoSession {
    /// Validates the plan and returns the session with its first command (SELECT).
    pub fn start(plan: PersoPlan) -> Result<(Self, CommandApdu), PlanError> {
        let layout = validate(&plan)?;
        let select = select_by_aid(plan.channel.target_aid.as_bytes()).map_err(|_| {
            PlanError::AidLength {
                len: plan.channel.target_aid.as_bytes().len(),
            }
        })?;
        let fixed = 3 + u16::from(plan.channel.install_for_perso.is_some());
        let progress = Progress {
            step: StepName::Select,
            store_data_sent: 0,
            store_data_total: layout.store_data_total,
            dgi: None,
            commands_sent: 1,
            commands_total: fixed + layout.store_data_total,
        };
        let session = Self {
            state: State::AwaitSelect(AwaitSelect {
                ctx: Context { plan, layout },
            }),
            progress,
        };
        Ok((session, select))
    }

    /// Consumes the card's response (data and status word, as received) to the last command.
    /// A plan with [`CardKeys::Store`] needs [`Self::handle_response_with`].
    pub fn handle_response(&mut self, response: &[u8]) -> Step {
        self.handle_response_with(response, None)
    }

    /// Like [`Self::handle_response`], with the key store that diversifies the KMC of a
    /// [`CardKeys::Store`] plan inside it once INITIALIZE UPDATE has given the KDD, and that
    /// encrypts held DGIs ([`PersoDgi::held`]) for the card at STORE DATA.
    pub fn handle_response_with(
        &mut self,
        response: &[u8],
        store: Option<&dyn CardKeyStore>,
    ) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let step = self.progress.step;
        let parsed = match ResponseApdu::parse(response) {
            Ok(r) => r,
            Err(source) => return self.fail(SessionError::Apdu { step, source }),
        };
        let result = match state {
            State::AwaitSelect(s) => s.handle(&parsed),
            State::AwaitInitUpdate(s) => s.handle(&parsed, store),
            State::AwaitExtAuth(s) => s.handle(&parsed, store),
            State::AwaitInstall(s) => s.handle(&parsed, store),
            State::AwaitStoreData(s) => s.handle(&parsed, store),
            State::Finished => Err(SessionError::Finished),
        };
        match result {
            Ok(Next::Send(next, command)) => {
                self.progress.commands_sent = self.progress.commands_sent.saturating_add(1);
                self.progress.step = match next.as_ref() {
                    State::AwaitSelect(_) => StepName::Select,
                    State::AwaitInitUpdate(_) => StepName::InitializeUpdate,
                    State::AwaitExtAuth(_) => StepName::ExternalAuthenticate,
                    State::AwaitInstall(_) => StepName::InstallForPersonalization,
                    State::AwaitStoreData(s) => {
                        self.progress.store_data_sent = s.feed.sequence;
                        self.progress.dgi = s.feed.current_dgi();
                        StepName::StoreData
                    }
                    State::Finished => StepName::Finished,
                };
                tracing::debug!(progress = %self.progress, "gp session");
                self.state = *next;
                Step::Transmit(command)
            }
            Ok(Next::Done(mut summary)) => {
                summary.commands = self.progress.commands_sent;
                self.progress.step = StepName::Finished;
                self.progress.dgi = None;
                Step::Done(summary)
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, error: SessionError) -> Step {
        self.state = State::Finished;
        if error != SessionError::Finished {
            tracing::debug!(error = %error, "gp session failed");
        }
        self.progress.step = StepName::Finished;
        Step::Failed(error)
    }

    /// Where the session stands.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Whether the session ended (done or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }
}
