//! Personalizing a card: runs the sans-I/O [`PersoSession`] over a [`CardTransport`], reports
//! progress through a callback (the GUI forwards it to a channel), keeps a masked APDU
//! transcript. Recording outcomes is the job's business (`crate::job`).
//!
//! The transcript holds command headers, data lengths, status words and timings — never a data
//! field — so it may be shown and stored as it is.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::devices::transport::{CardTransport, TransportError, exchange};
use crate::domain::chip::channel::ChannelRule;
use crate::domain::chip::ppse::{PPSE_AID, PPSE_FCI_DGI};
use crate::domain::chip::{ChipData, ChipProfile};
use crate::domain::dgi::PersoDgi;
pub use crate::domain::gp::session::ChannelPlan;
use crate::domain::gp::session::{
    Aid, CardKeys, PersoPlan, PersoSession, PlanError, Progress, Protocol, SessionError, Step,
    StepName, Summary,
};
use crate::domain::keystore::{CardKeyStore, KeyAlgorithm, KeyError, KeyRef, KeyUsage};

/// One command of the transcript: no data bytes, ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscriptEntry {
    /// The session step the command belongs to.
    pub step: String,
    /// The DGI of a STORE DATA command.
    pub dgi: Option<String>,
    /// `CLA INS P1 P2` in hex.
    pub header: String,
    /// Length of the data field sent.
    pub lc: usize,
    /// The final status word (hex), when an answer came.
    pub sw: Option<String>,
    /// Length of the response data.
    pub response_len: usize,
    /// Raw APDUs it took (GET RESPONSE / resend included).
    pub raw_exchanges: u32,
    /// Round-trip time in microseconds.
    pub micros: u64,
}

impl fmt::Display for TranscriptEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Lc={}", self.header, self.lc)?;
        match &self.sw {
            Some(sw) => write!(f, " -> {sw} ({} bytes)", self.response_len)?,
            None => f.write_str(" -> no answer")?,
        }
        write!(f, "  [{}", self.step)?;
        if let Some(dgi) = &self.dgi {
            write!(f, " DGI {dgi}")?;
        }
        write!(f, ", {} us]", self.micros)
    }
}

/// A masked APDU transcript.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Transcript {
    /// The commands, in order.
    pub entries: Vec<TranscriptEntry>,
}

impl Transcript {
    /// Raw APDUs exchanged (including GET RESPONSE and resends).
    pub fn apdu_count(&self) -> u32 {
        self.entries.iter().map(|e| e.raw_exchanges.max(1)).sum()
    }

    /// Records one command and what came back.
    pub fn record(
        &mut self,
        step: &str,
        dgi: Option<u16>,
        command: &[u8],
        answer: Option<(&[u8], u32)>,
        elapsed: Duration,
    ) {
        let header = command
            .get(..4)
            .map(|h| {
                h.iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let lc = if command.len() > 5 {
            command.get(4).copied().map_or(0, usize::from)
        } else {
            0
        };
        let (sw, response_len, raw_exchanges) = match answer {
            Some((r, raw)) => (
                r.len()
                    .checked_sub(2)
                    .and_then(|i| r.get(i..))
                    .map(hex::encode_upper),
                r.len().saturating_sub(2),
                raw,
            ),
            None => (None, 0, 1),
        };
        self.entries.push(TranscriptEntry {
            step: step.to_string(),
            dgi: dgi.map(|d| format!("{d:04X}")),
            header,
            lc,
            sw,
            response_len,
            raw_exchanges,
            micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        });
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A successful personalization.
#[derive(Debug, Clone)]
pub struct PersoReport {
    /// What the session did.
    pub summary: Summary,
    /// The masked transcript.
    pub transcript: Transcript,
    /// Wall time of the session.
    pub elapsed: Duration,
}

/// Why a personalization stopped. Names the step (and DGI); never card data.
#[derive(Debug, thiserror::Error)]
pub enum PersoError {
    /// The plan was refused before anything was sent.
    #[error("personalization plan: {0}")]
    Plan(#[from] PlanError),
    /// The card answered, but not as the session needs.
    #[error("{error}")]
    Session {
        /// The session error (step, DGI, status word).
        error: SessionError,
        /// The transcript up to the failure.
        transcript: Transcript,
    },
    /// The transport failed during a step.
    #[error("{step}{}: {error}", dgi.map(|d| format!(" (DGI {d:04X})")).unwrap_or_default())]
    Transport {
        /// The step whose command was in flight.
        step: StepName,
        /// The DGI of the STORE DATA in flight.
        dgi: Option<u16>,
        /// What went wrong.
        error: TransportError,
        /// The transcript up to the failure.
        transcript: Transcript,
    },
}

impl PersoError {
    /// The step at which it failed (`None` for a refused plan).
    pub fn step(&self) -> Option<StepName> {
        match self {
            Self::Plan(_) => None,
            Self::Transport { step, .. } => Some(*step),
            Self::Session { error, .. } => Some(match error {
                SessionError::Status { step, .. }
                | SessionError::Malformed { step, .. }
                | SessionError::Apdu { step, .. }
                | SessionError::RMacMismatch { step, .. }
                | SessionError::Crypto { step, .. } => *step,
                SessionError::HeldDgi { .. } => StepName::StoreData,
                SessionError::CardCryptogramMismatch
                | SessionError::CardChallengeMismatch
                | SessionError::CardKeys(_)
                | SessionError::ProtocolMismatch { .. } => StepName::InitializeUpdate,
                SessionError::Finished => StepName::Finished,
            }),
        }
    }

    /// The transcript up to the failure.
    pub fn transcript(&self) -> Option<&Transcript> {
        match self {
            Self::Plan(_) => None,
            Self::Session { transcript, .. } | Self::Transport { transcript, .. } => {
                Some(transcript)
            }
        }
    }
}

/// Draws an 8-byte host challenge from the operating system.
pub fn host_challenge() -> [u8; 8] {
    let mut c = [0u8; 8];
    if getrandom::fill(&mut c).is_err() {
        // Never reached on Linux; a fixed challenge only weakens replay protection.
        c = [0xA5; 8];
    }
    c
}

/// The channel options for `chip` over `rule`. The card keys stay in `keys`: the session asks
/// the store to open the card's keys (the KMC diversified inside it with the KDD of
/// INITIALIZE UPDATE, [`CardKeyStore::open_card_keys`]); neither the KMC nor, on a token, the
/// card's static keys come out. The
/// KMC is checked here (present, of the method's algorithm) before any card is touched.
pub fn channel_options(
    rule: &ChannelRule,
    chip: &ChipData,
    keys: &dyn CardKeyStore,
) -> Result<ChannelPlan, KeyError> {
    let kmc = KeyRef::new(KeyUsage::Kmc, rule.kmc_index);
    let needed = if rule.diversification.is_aes() {
        KeyAlgorithm::Aes
    } else {
        KeyAlgorithm::Tdes
    };
    let info = keys.info(kmc)?;
    if info.algorithm != needed {
        return Err(KeyError::WrongAlgorithm {
            key: kmc,
            found: info.algorithm.as_str(),
            needed: needed.as_str(),
        });
    }
    let card_keys = CardKeys::Store {
        kmc_index: rule.kmc_index,
        method: rule.diversification,
    };
    let app = Aid::new(&chip.aid).map_err(|_| KeyError::Rule {
        key: KeyRef::new(KeyUsage::Kmc, rule.kmc_index),
        rule: "the chip data's AID is not 5 to 16 bytes".into(),
    })?;
    let sd = rule
        .security_domain
        .as_deref()
        .and_then(|a| Aid::new(a).ok());
    Ok(ChannelPlan {
        target_aid: sd.clone().unwrap_or_else(|| app.clone()),
        install_for_perso: sd.map(|_| app),
        protocol: rule.protocol,
        security_level: rule.security_level,
        key_version: rule.key_version,
        keys: card_keys,
        verify_card_challenge: matches!(rule.protocol, Protocol::Scp03 { i } if i & 0x10 != 0),
    })
}

/// The session's DGIs for `chip`, in send order with the profile's flags. Over SCP03 the DEK is
/// AES: a sensitive DGI that is not whole 16-byte blocks (the 8-byte PIN block of 8010) is padded
/// ISO/IEC 9797-1 method 2, which the card removes, as EMV CPS does for AES DEKs.
pub fn session_dgis(chip: &ChipData, protocol: Protocol) -> Vec<PersoDgi> {
    let aes = matches!(protocol, Protocol::Scp03 { .. });
    chip.dgis
        .iter()
        .map(|p| {
            let pad = p.pad || (p.encrypt && aes && p.value().len() % 16 != 0);
            let held = p.held.as_ref().map(|h| h.sent_padded(pad));
            PersoDgi {
                pad,
                held,
                ..p.clone()
            }
        })
        .collect()
}

/// The PPSE instance's personalization after the application's (`[ppse]` of the profile): one
/// DGI 9102 holding the FCI proprietary template that lists the application; reached like the
/// application (INSTALL [for personalization] through the security domain when the profile's
/// channel has one, else SELECT of the instance), in a new secure channel session. `None` when
/// the profile has no `[ppse]`.
pub fn ppse_session(
    profile: &ChipProfile,
    app: &ChannelPlan,
) -> Result<Option<(ChannelPlan, Vec<PersoDgi>)>, crate::domain::finding::Finding> {
    let Some(rule) = &profile.ppse else {
        return Ok(None);
    };
    let fci = rule.fci(&profile.aid, &profile.label)?;
    let ppse = Aid::new(PPSE_AID)
        .map_err(|e| crate::domain::finding::Finding::new("ppse", e.to_string()))?;
    let mut options = app.clone();
    if options.install_for_perso.is_some() {
        options.install_for_perso = Some(ppse);
    } else {
        options.target_aid = ppse;
    }
    let dgi = PersoDgi::new(PPSE_FCI_DGI, fci, false, false)
        .map_err(|e| crate::domain::finding::Finding::new("ppse", e.to_string()))?;
    Ok(Some((options, vec![dgi])))
}

/// Personalizes the card behind `transport` with `dgis` (in send order), with static keys or a
/// KMC in `options` (tests, tools); a [`CardKeys::Store`] plan needs [`personalize_dgis_with`].
pub fn personalize_dgis(
    transport: &mut dyn CardTransport,
    options: ChannelPlan,
    dgis: Vec<PersoDgi>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<PersoReport, PersoError> {
    run_session(transport, options, dgis, None, on_progress)
}

/// Personalizes the card behind `transport` with `dgis`, the card keys from `keys` (the KMC is
/// diversified inside the store once the card has given its KDD).
pub fn personalize_dgis_with(
    transport: &mut dyn CardTransport,
    options: ChannelPlan,
    dgis: Vec<PersoDgi>,
    keys: &dyn CardKeyStore,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<PersoReport, PersoError> {
    run_session(transport, options, dgis, Some(keys), on_progress)
}

fn run_session(
    transport: &mut dyn CardTransport,
    options: ChannelPlan,
    dgis: Vec<PersoDgi>,
    keys: Option<&dyn CardKeyStore>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<PersoReport, PersoError> {
    let plan = PersoPlan {
        channel: options,
        host_challenge: host_challenge(),
        dgis,
    };
    let started = Instant::now();
    let (mut session, first) = PersoSession::start(plan)?;
    let mut transcript = Transcript::default();
    let mut command = first;
    loop {
        let progress = session.progress();
        on_progress(&progress);
        let step = progress.step;
        let dgi = (step == StepName::StoreData)
            .then_some(progress.dgi)
            .flatten();
        let bytes = zeroize::Zeroizing::new(command.to_bytes());
        drop(command);
        let sent = Instant::now();
        let result = exchange(transport, &bytes);
        let elapsed = sent.elapsed();
        let step_label = step.to_string();
        let exchanged = match result {
            Ok(x) => x,
            Err(error) => {
                transcript.record(&step_label, dgi, &bytes, None, elapsed);
                tracing::warn!(%step, %error, "personalization transport failure");
                return Err(PersoError::Transport {
                    step,
                    dgi,
                    error,
                    transcript,
                });
            }
        };
        transcript.record(
            &step_label,
            dgi,
            &bytes,
            Some((&exchanged.response, exchanged.raw_exchanges)),
            elapsed,
        );
        match session.handle_response_with(&exchanged.response, keys) {
            Step::Transmit(next) => command = next,
            Step::Done(summary) => {
                on_progress(&session.progress());
                return Ok(PersoReport {
                    summary,
                    transcript,
                    elapsed: started.elapsed(),
                });
            }
            Step::Failed(error) => {
                tracing::warn!(%error, "personalization failed");
                return Err(PersoError::Session { error, transcript });
            }
        }
    }
}
