//! Read-back verification, terminal side, sans-I/O: reads a personalized card as a terminal does
//! and checks it.
//!
//! ```text
//! SELECT PPSE (the AID from its directory, else the candidates given)
//!   → SELECT AID (FCI, PDOL)
//!   → GET PROCESSING OPTIONS (PDOL data from the terminal data)
//!   → READ RECORD for every AFL record
//!   → [ODA chain: issuer certificate with the CA key, ICC certificate over the static data]
//!   → [INTERNAL AUTHENTICATE (DDA) when the AIP says DDA and the ICC key was recovered]
//!   → GET DATA 9F36, 9F17
//!   → GENERATE AC (ARQC) with the CDOL1 data
//!   → Done(ReadBack)
//! ```
//!
//! [`ReadBackSession`] yields one command at a time; the caller transmits it and feeds the
//! response. Like `gp::session`, each phase is a state of its own that consumes the response to
//! its command and names the next state with its [`CommandApdu`]. Checks are collected with
//! pass / fail / skipped and a reason that names tags and rules, never card data. The ARQC is returned as [`ArqcEvidence`] and verified with
//! [`verify_arqc`] by whoever holds the issuer master key (test keys only).
//!
//! The AC input is the CVN's element set (`domain::terminal::cvn`): the terminal elements
//! `9F02 9F03 9F1A 95 5F2A 9A 9C 9F37` by tag out of the CDOL1 data, then AIP, ATC and the
//! scheme part of the issuer application data (9F10) — never the whole CDOL1 data.

use std::fmt;

use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

pub use crate::domain::chip::Interface;
use crate::domain::emv_keys::{self, Cvn, DesKey16, MkdOption};
use crate::domain::gp::apdu::{ApduError, CommandApdu, ResponseApdu, StatusWord, select_by_aid};
use crate::domain::mask;
use crate::domain::mask::debug_fields;
use crate::domain::oda::{self, CaPublicKey, EmvPublicKey};
use crate::domain::terminal::cvn::{self as terminal_cvn, IadInfo};
use crate::domain::tlv::{self, Tag, Tlv};

/// The check of the issuer certificate.
const ISSUER: &str = "ODA: issuer certificate (90) with the CA key";
/// The check of the ICC certificate.
const ICC: &str = "ODA: ICC certificate (9F46) over the static data";

/// The PAN read from 5A, empty when none was.
fn pan_of(result: &ReadBack) -> Zeroizing<String> {
    Zeroizing::new(
        result
            .pan
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
    )
}

/// "2PAY.SYS.DDF01".
const PPSE: [u8; 14] = *b"2PAY.SYS.DDF01";

/// What a terminal contributes (the domain has no clock and draws no random numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalData {
    /// Unpredictable number (9F37).
    pub un: [u8; 4],
    /// Transaction date YYMMDD (9A), BCD.
    pub date: [u8; 3],
    /// Amount authorised (9F02), BCD, 6 bytes.
    pub amount: [u8; 6],
    /// Terminal country code (9F1A) and transaction currency (5F2A).
    pub country: [u8; 2],
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed, with the rule.
    Fail(String),
    /// The check could not run, and why.
    Skipped(String),
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked ("SELECT AID", "ODA: issuer certificate", ...).
    pub name: String,
    /// Its outcome.
    pub outcome: Outcome,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Pass => write!(f, "PASS  {}", self.name),
            Outcome::Fail(why) => write!(f, "FAIL  {}: {why}", self.name),
            Outcome::Skipped(why) => write!(f, "SKIP  {}: {why}", self.name),
        }
    }
}

/// What the ARQC check needs. The AC elements hold card data: zeroized on drop, never printed.
#[derive(Clone)]
pub struct ArqcEvidence {
    /// The AID of the application (its RID picks the IAD layout).
    pub aid: Vec<u8>,
    /// Cryptogram information data (9F27).
    pub cid: u8,
    /// ATC (9F36) of the GENERATE AC response.
    pub atc: [u8; 2],
    /// AIP (82) the GPO returned.
    pub aip: [u8; 2],
    /// The unpredictable number sent.
    pub un: [u8; 4],
    /// The cryptogram (9F26).
    pub ac: [u8; 8],
    /// Issuer application data (9F10).
    pub iad: Vec<u8>,
    /// The AC elements the terminal sent (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 values, by tag out
    /// of the CDOL1 data), or why the CDOL1 lacks them.
    pub elements: Result<Zeroizing<Vec<u8>>, String>,
}

impl fmt::Debug for ArqcEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ArqcEvidence(cid {:02X}, atc {}, <{} element bytes>)",
            self.cid,
            hex::encode_upper(self.atc),
            self.elements.as_ref().map_or(0, |e| e.len())
        )
    }
}

impl ArqcEvidence {
    /// What the IAD says (CVN and DKI), or why it cannot be read.
    pub fn iad_info(&self) -> Result<IadInfo, String> {
        terminal_cvn::decode(&self.aid, &self.iad)
    }

    /// The CVN the IAD announces.
    pub fn cvn(&self) -> Option<Cvn> {
        self.iad_info().ok().map(|i| i.cvn)
    }
}

/// Verifies the ARQC with the issuer master key `imk` (test keys only: the caller checks): the
/// AC input is the CVN's element set ([`terminal_cvn`]), not the whole CDOL1 data.
pub fn verify_arqc(
    evidence: &ArqcEvidence,
    imk: &DesKey16,
    option: MkdOption,
    cvn: Cvn,
    pan: &str,
    psn: &str,
) -> Outcome {
    let mk = match emv_keys::derive_icc_master_key(option, imk, pan, psn) {
        Ok(k) => k,
        Err(e) => return Outcome::Fail(format!("MK-AC derivation: {e}")),
    };
    verify_arqc_mk(evidence, &mk, cvn, &format!("MK-AC ({option:?})"))
}

/// Verifies the ARQC with the card's MK-AC `mk` (derived by the key store from its IMK-AC);
/// `mk_name` names it in a failure.
pub fn verify_arqc_mk(evidence: &ArqcEvidence, mk: &DesKey16, cvn: Cvn, mk_name: &str) -> Outcome {
    let elements = match &evidence.elements {
        Ok(e) => e,
        Err(why) => return Outcome::Fail(why.clone()),
    };
    let input =
        match terminal_cvn::ac_input(cvn, elements, evidence.aip, evidence.atc, &evidence.iad) {
            Ok(i) => i,
            Err(why) => return Outcome::Fail(why),
        };
    let sk = match cvn
        .session_key_method()
        .session_key(mk, evidence.atc, evidence.un)
    {
        Ok(k) => k,
        Err(e) => return Outcome::Fail(format!("session key: {e}")),
    };
    match emv_keys::verify_application_cryptogram(&sk, &input, cvn.ac_padding(), &evidence.ac) {
        Ok(true) => Outcome::Pass,
        Ok(false) => Outcome::Fail(format!("9F26 does not match {mk_name} with {cvn}")),
        Err(e) => Outcome::Fail(e.to_string()),
    }
}

/// What was read from the card (only what the report shows, masked where it must be).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardSummary {
    /// The selected AID (hex).
    pub aid: String,
    /// Application label (50).
    pub label: Option<String>,
    /// Masked PAN (5A).
    pub pan_masked: Option<String>,
    /// Expiry YYMM (from 5F24).
    pub expiry: Option<String>,
    /// PAN sequence number (5F34).
    pub psn: Option<String>,
    /// Cardholder name (5F20).
    pub name: Option<String>,
    /// AIP (hex).
    pub aip: String,
    /// Records read.
    pub records: usize,
    /// ATC (GET DATA 9F36).
    pub atc: Option<u16>,
    /// PIN try counter (GET DATA 9F17).
    pub pin_tries: Option<u8>,
}

/// One record read from the card: clear card data, zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct CardRecord {
    /// Short file identifier.
    pub sfi: u8,
    /// Record number.
    pub number: u8,
    /// The record as read (template `70` for SFI 1..10).
    pub data: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for CardRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CardRecord(SFI {} #{}, {} bytes)",
            self.sfi,
            self.number,
            self.data.len()
        )
    }
}

/// The read-back result.
#[derive(Clone)]
pub struct ReadBack {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// What was read.
    pub card: CardSummary,
    /// The ARQC, when GENERATE AC succeeded.
    pub arqc: Option<ArqcEvidence>,
    /// The clear PAN (for ARQC verification and comparison with the order); zeroized on drop.
    pub pan: Option<Zeroizing<String>>,
    /// Commands sent.
    pub commands: u32,
    /// The records the AFL listed, as read.
    pub records: Vec<CardRecord>,
}

impl fmt::Debug for ReadBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(
            f,
            "ReadBack",
            &[
                ("checks", &self.checks),
                ("card", &self.card),
                ("arqc", &self.arqc.is_some()),
                ("records", &self.records),
                ("commands", &self.commands),
            ],
        )
    }
}

impl ReadBack {
    /// The names of the failed checks, joined with `, ` (empty when all passed).
    pub fn failed_checks(&self) -> String {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Compares every record read with the prepared record DGI of the same SFI and number, and
    /// checks that each record the card's AFL lists was prepared. Adds one check per record
    /// (names SFI, record and DGI; never data) and returns how many differ.
    pub fn compare_records<'a>(
        &mut self,
        prepared: impl IntoIterator<Item = &'a crate::domain::dgi::Dgi> + Clone,
    ) -> usize {
        let mut failed = 0;
        let mut checks = Vec::with_capacity(self.records.len());
        for r in &self.records {
            let id = u16::from_be_bytes([r.sfi, r.number]);
            let dgi = prepared.clone().into_iter().find(|d| d.id() == id);
            let outcome = match dgi {
                None => Outcome::Fail("not among the prepared DGIs".into()),
                Some(d) if d.value() == r.data.as_slice() => Outcome::Pass,
                Some(d) => Outcome::Fail(format!(
                    "differs from the prepared DGI ({} bytes read, {} prepared)",
                    r.data.len(),
                    d.value().len()
                )),
            };
            if matches!(outcome, Outcome::Fail(_)) {
                failed += 1;
            }
            checks.push(Check {
                name: format!("record SFI {} #{} = DGI {id:04X}", r.sfi, r.number),
                outcome,
            });
        }
        if self.records.is_empty() {
            failed += 1;
            checks.push(Check {
                name: "records compared with the prepared DGIs".into(),
                outcome: Outcome::Fail("no record was read".into()),
            });
        }
        self.checks.extend(checks);
        failed
    }

    /// Adds a check comparing a value read from the card with the prepared one (`name` says
    /// which; values never appear in the check).
    pub fn expect_same(&mut self, name: &str, ok: bool) {
        self.checks.push(Check {
            name: name.to_string(),
            outcome: if ok {
                Outcome::Pass
            } else {
                Outcome::Fail("differs from what was prepared".into())
            },
        });
    }

    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Fail(_)))
    }
}

/// The next thing to do.
#[must_use]
#[derive(Debug)]
pub enum ReadStep {
    /// Transmit this command APDU and feed the response to [`ReadBackSession::handle`].
    Transmit(CommandApdu),
    /// Finished.
    Done(Box<ReadBack>),
}

/// The phases of a read-back, in the order of the module's diagram: what the session awaits
/// the answer to ([`ReadBackSession::phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPhase {
    /// SELECT PPSE.
    SelectPpse,
    /// SELECT of a candidate AID.
    SelectAid,
    /// GET PROCESSING OPTIONS.
    GetProcessingOptions,
    /// READ RECORD of an AFL record.
    ReadRecord,
    /// INTERNAL AUTHENTICATE (DDA).
    InternalAuthenticate,
    /// GET DATA 9F36 (ATC).
    GetAtc,
    /// GET DATA 9F17 (PIN try counter).
    GetPinTries,
    /// GENERATE AC (ARQC).
    GenerateAc,
    /// Done: nothing more to send.
    Finished,
}

/// Awaiting the answer to SELECT PPSE.
struct AwaitPpse;

/// Awaiting the answer to SELECT of candidate `index`.
struct AwaitSelectAid {
    index: usize,
}

/// Awaiting the GET PROCESSING OPTIONS answer.
struct AwaitGpo;

/// Awaiting READ RECORD of the `index`th record the AFL lists.
struct AwaitRecord {
    index: usize,
}

/// Awaiting the INTERNAL AUTHENTICATE signature.
struct AwaitInternalAuthenticate;

/// Awaiting GET DATA 9F36.
struct AwaitAtc;

/// Awaiting GET DATA 9F17.
struct AwaitPinTries;

/// Awaiting the GENERATE AC answer.
struct AwaitGenerateAc;

/// One state per phase; each consumes the response to its command and names the next.
enum State {
    Ppse(AwaitPpse),
    SelectAid(AwaitSelectAid),
    Gpo(AwaitGpo),
    Record(AwaitRecord),
    InternalAuthenticate(AwaitInternalAuthenticate),
    Atc(AwaitAtc),
    PinTries(AwaitPinTries),
    GenerateAc(AwaitGenerateAc),
    Finished,
}

impl State {
    fn phase(&self) -> ReadPhase {
        match self {
            Self::Ppse(_) => ReadPhase::SelectPpse,
            Self::SelectAid(_) => ReadPhase::SelectAid,
            Self::Gpo(_) => ReadPhase::GetProcessingOptions,
            Self::Record(_) => ReadPhase::ReadRecord,
            Self::InternalAuthenticate(_) => ReadPhase::InternalAuthenticate,
            Self::Atc(_) => ReadPhase::GetAtc,
            Self::PinTries(_) => ReadPhase::GetPinTries,
            Self::GenerateAc(_) => ReadPhase::GenerateAc,
            Self::Finished => ReadPhase::Finished,
        }
    }
}

/// The result of one state handling one response.
enum Next {
    Send(State, CommandApdu),
    Done,
}

/// What the read-back has learnt so far and the checks it made.
struct Reading {
    terminal: TerminalData,
    interface: Interface,
    /// The objects of a qVSDC GPO response (ARQC and fDDA arrive there), else empty.
    gpo_objects: Vec<Tlv>,
    ca: Option<CaPublicKey>,
    candidates: Vec<Vec<u8>>,
    aid: Vec<u8>,
    fci: Vec<Tlv>,
    aip: [u8; 2],
    afl: Vec<u8>,
    /// (sfi, record number, record bytes).
    records: Vec<(u8, u8, Zeroizing<Vec<u8>>)>,
    record_plan: Vec<(u8, u8)>,
    data: Vec<Tlv>,
    icc_key: Option<EmvPublicKey>,
    ddol_data: Vec<u8>,
    pdol_data: Vec<u8>,
    cdol1_data: Vec<u8>,
    cda: bool,
    result: ReadBack,
}

/// The read-back state machine.
pub struct ReadBackSession {
    reading: Reading,
    state: State,
}

impl fmt::Debug for ReadBackSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "ReadBackSession", &[("phase", &self.state.phase())])
    }
}

fn find_value(tlvs: &[Tlv], tag: u32) -> Option<&[u8]> {
    Tag::new(tag)
        .and_then(|t| tlv::find(tlvs, t))
        .and_then(Tlv::value)
}

/// `GET PROCESSING OPTIONS` with the PDOL data in template 83.
fn gpo_command(pdol_data: &[u8]) -> Result<CommandApdu, ApduError> {
    let len = u8::try_from(pdol_data.len()).map_err(|_| ApduError::CommandTooLong {
        len: pdol_data.len(),
    })?;
    let data = [&[0x83, len][..], pdol_data].concat();
    CommandApdu::new(0x80, 0xA8, 0x00, 0x00, data, Some(0x00))
}

/// `READ RECORD` of record `record` in SFI `sfi`.
fn read_record_command(sfi: u8, record: u8) -> CommandApdu {
    CommandApdu::fixed(0x00, 0xB2, record, (sfi << 3) | 0x04, [], Some(0x00))
}

/// `GET DATA` of a two-byte tag.
fn get_data_command(tag: u16) -> CommandApdu {
    let [p1, p2] = tag.to_be_bytes();
    CommandApdu::fixed(0x80, 0xCA, p1, p2, [], Some(0x00))
}

/// A response too short to hold a status word reads as status `0000` with no data.
fn parse_response(response: &[u8]) -> ResponseApdu {
    ResponseApdu::parse(response)
        .unwrap_or_else(|_| ResponseApdu::new(Vec::new(), StatusWord::from_u16(0)))
}

/// Every directory entry (61) of a PPSE FCI carries an AID (4F) and a priority (87) (EMV Book B
/// §3.3).
fn ppse_entries(fci: &[Tlv]) -> Outcome {
    let Some(bf0c) = Tag::new(0xBF0C).and_then(|t| tlv::find(fci, t)) else {
        return Outcome::Fail("no BF0C in the PPSE FCI".into());
    };
    let entries: Vec<&Tlv> = bf0c
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|t| t.tag().raw() == 0x61)
        .collect();
    if entries.is_empty() {
        return Outcome::Fail("BF0C holds no entry 61".into());
    }
    for e in entries {
        let kids = e.children().unwrap_or_default();
        if find_value(kids, 0x4F).is_none() || find_value(kids, 0x87).is_none() {
            return Outcome::Fail("an entry 61 lacks 4F or 87".into());
        }
    }
    Outcome::Pass
}

/// Recovers signed dynamic application data (format 05, SHA-1) and checks its hash over the
/// data and `after` (the DDOL data for DDA, the unpredictable number for CDA). Returns the ICC
/// dynamic data.
fn recover_sdad(key: &EmvPublicKey, sdad: &[u8], after: &[u8]) -> Result<Vec<u8>, String> {
    let block = oda::recover_raw(key, sdad, "signed dynamic application data")
        .map_err(|e| e.to_string())?;
    let n = block.len();
    if n < 26 || block.first() != Some(&0x6A) || block.last() != Some(&0xBC) {
        return Err("recovered data lacks header 6A or trailer BC".into());
    }
    if block.get(1) != Some(&0x05) || block.get(2) != Some(&0x01) {
        return Err("not format 05 with SHA-1".into());
    }
    let (Some(body), Some(hash)) = (block.get(1..n - 21), block.get(n - 21..n - 1)) else {
        return Err("recovered data too short".into());
    };
    let mut h = Sha1::new();
    h.update(body);
    h.update(after);
    if h.finalize().as_slice() != hash {
        return Err("hash over the dynamic data does not match".into());
    }
    let len = usize::from(block.get(3).copied().unwrap_or(0));
    block
        .get(4..4 + len)
        .filter(|_| 4 + len <= n - 21)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "ICC dynamic data length exceeds the block".to_string())
}

impl ReadBackSession {
    /// Starts a read-back over the contact interface. `candidates` are AIDs to try when the
    /// PPSE does not list one; `ca` is the CA public key for the ODA chain (ODA is skipped
    /// without it).
    pub fn start(
        terminal: TerminalData,
        ca: Option<CaPublicKey>,
        candidates: Vec<Vec<u8>>,
    ) -> (Self, CommandApdu) {
        Self::start_on(Interface::Contact, terminal, ca, candidates)
    }

    /// Starts a read-back over `interface`: over contactless the PPSE must list the application,
    /// the terminal's TTQ asks for ODA for online authorizations, and a qVSDC card's GPO
    /// response (ARQC, fDDA signature) replaces GENERATE AC.
    pub fn start_on(
        interface: Interface,
        terminal: TerminalData,
        ca: Option<CaPublicKey>,
        candidates: Vec<Vec<u8>>,
    ) -> (Self, CommandApdu) {
        let reading = Reading {
            terminal,
            interface,
            gpo_objects: Vec::new(),
            ca,
            candidates,
            aid: Vec::new(),
            fci: Vec::new(),
            aip: [0; 2],
            afl: Vec::new(),
            records: Vec::new(),
            record_plan: Vec::new(),
            data: Vec::new(),
            icc_key: None,
            ddol_data: Vec::new(),
            pdol_data: Vec::new(),
            cdol1_data: Vec::new(),
            cda: false,
            result: ReadBack::empty(1),
        };
        let select = CommandApdu::fixed(0x00, 0xA4, 0x04, 0x00, PPSE, Some(0x00));
        let session = Self {
            reading,
            state: State::Ppse(AwaitPpse),
        };
        (session, select)
    }

    /// The phase whose answer the session awaits.
    pub fn phase(&self) -> ReadPhase {
        self.state.phase()
    }

    /// Consumes the response (data and SW) to the last command.
    pub fn handle(&mut self, response: &[u8]) -> ReadStep {
        let response = parse_response(response);
        let r = &mut self.reading;
        let next = match std::mem::replace(&mut self.state, State::Finished) {
            State::Ppse(s) => s.handle(r, &response),
            State::SelectAid(s) => s.handle(r, &response),
            State::Gpo(s) => s.handle(r, &response),
            State::Record(s) => s.handle(r, &response),
            State::InternalAuthenticate(s) => s.handle(r, &response),
            State::Atc(s) => s.handle(r, &response),
            State::PinTries(s) => s.handle(r, &response),
            State::GenerateAc(s) => s.handle(r, &response),
            State::Finished => Next::Done,
        };
        match next {
            Next::Send(state, command) => {
                self.state = state;
                r.result.commands += 1;
                ReadStep::Transmit(command)
            }
            Next::Done => ReadStep::Done(Box::new(r.finish())),
        }
    }
}

impl ReadBack {
    fn empty(commands: u32) -> Self {
        ReadBack {
            checks: Vec::new(),
            card: CardSummary::default(),
            arqc: None,
            pan: None,
            commands,
            records: Vec::new(),
        }
    }
}

impl AwaitPpse {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        let status = response.sw.to_u16();
        let fci = response
            .sw
            .is_success()
            .then(|| tlv::parse_all(response.data()).ok())
            .flatten();
        let listed = fci
            .as_ref()
            .and_then(|t| find_value(t, 0x4F).map(<[u8]>::to_vec));
        let contactless = r.interface == Interface::Contactless;
        match (listed, contactless) {
            (Some(aid), _) => {
                r.candidates.insert(0, aid);
                r.check("SELECT PPSE", Outcome::Pass);
                let outcome = fci.as_deref().map_or(Outcome::Pass, ppse_entries);
                r.check("PPSE: directory entries 61 {4F, 87}", outcome);
            }
            (None, true) => r.check(
                "SELECT PPSE",
                Outcome::Fail(format!(
                    "SW {status:04X}: a contactless card must list its application in the PPSE"
                )),
            ),
            (None, false) => r.check(
                "SELECT PPSE",
                Outcome::Skipped(format!("SW {status:04X}, trying the known AIDs")),
            ),
        }
        r.select_next(0)
    }
}

impl AwaitSelectAid {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        let i = self.index;
        if !response.sw.is_success() {
            return r.select_next(i + 1);
        }
        let Ok(fci) = tlv::parse_all(response.data()) else {
            r.check("SELECT AID", Outcome::Fail("FCI is not BER-TLV".into()));
            return Next::Done;
        };
        let has = |tag| Tag::new(tag).and_then(|t| tlv::find(&fci, t)).is_some();
        if !(has(0x84) && has(0xA5)) && i + 1 < r.candidates.len() {
            // EMV Book 1 §12.3.3: an answer without the FCI of an application (an instance not
            // personalized yet) is not a candidate; try the next AID.
            let aid = hex::encode_upper(r.candidates.get(i).map_or(&[][..], |a| a));
            r.check(
                &format!("SELECT AID {aid}: not a candidate"),
                Outcome::Skipped("FCI lacks 84 or A5".into()),
            );
            return r.select_next(i + 1);
        }
        r.aid = r.candidates.get(i).cloned().unwrap_or_default();
        r.result.card.aid = hex::encode_upper(&r.aid);
        // Free text from the card: a digit run that could be a PAN is masked.
        r.result.card.label =
            find_value(&fci, 0x50).map(|l| mask::scrub_digit_runs(&String::from_utf8_lossy(l)));
        let ok = has(0x6F) && has(0x84) && has(0xA5);
        r.check(
            "SELECT AID: FCI 6F with 84 and A5",
            if ok {
                Outcome::Pass
            } else {
                Outcome::Fail("FCI lacks 84 or A5".into())
            },
        );
        r.fci = fci;
        r.pdol_data = find_value(&r.fci, 0x9F38)
            .map(|d| r.dol_data(d))
            .unwrap_or_default();
        let command = gpo_command(&r.pdol_data);
        r.send(State::Gpo(AwaitGpo), "GET PROCESSING OPTIONS", command)
    }
}

/// AIP (82) and AFL (94) of a GPO answer in format 1 (`80`) or 2 (`77`).
fn aip_and_afl(data: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let parsed = match data {
        [0x80, len, rest @ ..] if usize::from(*len) == rest.len() && rest.len() >= 2 => Some((
            rest.get(..2).unwrap_or_default().to_vec(),
            rest.get(2..).unwrap_or_default().to_vec(),
        )),
        _ => tlv::parse_all(data).ok().and_then(|t| {
            Some((
                find_value(&t, 0x82)?.to_vec(),
                find_value(&t, 0x94)?.to_vec(),
            ))
        }),
    };
    parsed.filter(|(aip, afl)| aip.len() == 2 && afl.len() % 4 == 0 && !afl.is_empty())
}

impl AwaitGpo {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        let data = response.data();
        if !response.sw.is_success() {
            r.check(
                "GET PROCESSING OPTIONS",
                Outcome::Fail(format!("SW {:04X}", response.sw.to_u16())),
            );
            return Next::Done;
        }
        let Some((aip, afl)) = aip_and_afl(data) else {
            r.check(
                "GET PROCESSING OPTIONS",
                Outcome::Fail("no AIP (82) and AFL (94)".into()),
            );
            return Next::Done;
        };
        r.check("GET PROCESSING OPTIONS", Outcome::Pass);
        if data.len() > 256 {
            // A short response carries at most 256 data bytes (ISO/IEC 7816-4); a reader cannot
            // receive a longer GPO answer.
            r.check(
                "GET PROCESSING OPTIONS: at most 256 bytes",
                Outcome::Fail(format!("{} bytes", data.len())),
            );
        }
        r.take_qvsdc_gpo(data);
        r.aip = [
            aip.first().copied().unwrap_or(0),
            aip.get(1).copied().unwrap_or(0),
        ];
        r.result.card.aip = hex::encode_upper(r.aip);
        for entry in afl.chunks_exact(4) {
            if let [sfi, first, last, _] = entry {
                for n in *first..=*last {
                    r.record_plan.push((sfi >> 3, n));
                }
            }
        }
        r.afl = afl;
        r.read_next(0)
    }
}

impl AwaitRecord {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        let (sfi, n) = r.record_plan.get(self.index).copied().unwrap_or((0, 0));
        let data = response.data();
        if !response.sw.is_success() {
            r.check(
                &format!("READ RECORD SFI {sfi} record {n}"),
                Outcome::Fail(format!("SW {:04X}", response.sw.to_u16())),
            );
            return Next::Done;
        }
        if data.len() > 256 {
            // A short response carries at most 256 data bytes (ISO/IEC 7816-4).
            r.check(
                &format!("READ RECORD SFI {sfi} record {n}: at most 256 bytes"),
                Outcome::Fail(format!("{} bytes", data.len())),
            );
        }
        match Tlv::from_bytes(data) {
            Ok(t) if t.tag().raw() == 0x70 => {
                if let Some(children) = t.children() {
                    r.data.extend(children.iter().cloned());
                }
            }
            _ if sfi > 10 => {}
            _ => {
                r.check(
                    &format!("READ RECORD SFI {sfi} record {n}"),
                    Outcome::Fail("not a template 70".into()),
                );
                return Next::Done;
            }
        }
        r.records.push((sfi, n, Zeroizing::new(data.to_vec())));
        r.read_next(self.index + 1)
    }
}

impl AwaitInternalAuthenticate {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        let outcome = r.check_sdad(response.sw.to_u16(), response.data());
        r.check("DDA: INTERNAL AUTHENTICATE signature", outcome);
        Next::Send(State::Atc(AwaitAtc), get_data_command(0x9F36))
    }
}

impl AwaitAtc {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        if let (true, [0x9F, 0x36, 0x02, a, b]) = (response.sw.is_success(), response.data()) {
            r.result.card.atc = Some(u16::from_be_bytes([*a, *b]));
        }
        Next::Send(State::PinTries(AwaitPinTries), get_data_command(0x9F17))
    }
}

impl AwaitPinTries {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        if let (true, [0x9F, 0x17, 0x01, n]) = (response.sw.is_success(), response.data()) {
            r.result.card.pin_tries = Some(*n);
        }
        if !r.gpo_objects.is_empty() {
            // qVSDC: the ARQC came with the GPO response.
            return Next::Done;
        }
        let Some(cdol1) = find_value(&r.data, 0x8C).map(<[u8]>::to_vec) else {
            r.check(
                "GENERATE AC",
                Outcome::Fail("no CDOL1 (8C) in the records".into()),
            );
            return Next::Done;
        };
        r.cdol1_data = r.dol_data(&cdol1);
        // An ARQC, with a CDA signature when the card announces CDA (AIP byte 1 bit 1) and its
        // ICC key was recovered.
        r.cda = r.aip[0] & 0x01 != 0 && r.icc_key.is_some();
        let p1 = if r.cda { 0x90 } else { 0x80 };
        let command = CommandApdu::new(0x80, 0xAE, p1, 0x00, r.cdol1_data.clone(), Some(0x00));
        r.send(State::GenerateAc(AwaitGenerateAc), "GENERATE AC", command)
    }
}

impl AwaitGenerateAc {
    fn handle(self, r: &mut Reading, response: &ResponseApdu) -> Next {
        r.take_arqc(response.sw.to_u16(), response.data());
        Next::Done
    }
}

impl Reading {
    /// Keeps the ARQC the card answered (cryptogram information `cid`, ATC, AC, IAD and the
    /// AC's input `elements`) for [`verify_arqc`].
    fn keep_arqc(
        &mut self,
        cid: u8,
        atc: [u8; 2],
        ac: [u8; 8],
        iad: Vec<u8>,
        elements: Result<Zeroizing<Vec<u8>>, String>,
    ) {
        self.result.arqc = Some(ArqcEvidence {
            aid: self.aid.clone(),
            cid,
            atc,
            aip: self.aip,
            un: self.terminal.un,
            ac,
            iad,
            elements,
        });
    }

    fn check(&mut self, name: &str, outcome: Outcome) {
        self.result.checks.push(Check {
            name: name.to_string(),
            outcome,
        });
    }

    /// Sends `command` and awaits its answer in `state`; a command that cannot be built fails
    /// the check `name` and ends the read-back.
    fn send(&mut self, state: State, name: &str, command: Result<CommandApdu, ApduError>) -> Next {
        match command {
            Ok(command) => Next::Send(state, command),
            Err(e) => {
                self.check(name, Outcome::Fail(e.to_string()));
                Next::Done
            }
        }
    }

    /// The result, with the records read; the session keeps an empty one.
    fn finish(&mut self) -> ReadBack {
        self.result.card.records = self.records.len();
        self.result.records = self
            .records
            .iter()
            .map(|(sfi, number, data)| CardRecord {
                sfi: *sfi,
                number: *number,
                data: data.clone(),
            })
            .collect();
        std::mem::replace(&mut self.result, ReadBack::empty(0))
    }

    /// SELECT of candidate `i`, or the end when none is left.
    fn select_next(&mut self, i: usize) -> Next {
        match self.candidates.get(i) {
            Some(aid) => {
                let command = select_by_aid(aid);
                let state = State::SelectAid(AwaitSelectAid { index: i });
                self.send(state, "SELECT AID", command)
            }
            None => {
                self.check(
                    "SELECT AID",
                    Outcome::Fail("no application answered SELECT".into()),
                );
                Next::Done
            }
        }
    }

    /// READ RECORD of the `i`th AFL record; after the last, the ODA checks and the next phase.
    fn read_next(&mut self, i: usize) -> Next {
        if let Some((sfi, n)) = self.record_plan.get(i).copied() {
            let state = State::Record(AwaitRecord { index: i });
            return Next::Send(state, read_record_command(sfi, n));
        }
        self.check("READ RECORD: every AFL record", Outcome::Pass);
        self.summarize_records();
        self.oda();
        if !self.gpo_objects.is_empty() {
            self.qvsdc_checks();
            return Next::Send(State::Atc(AwaitAtc), get_data_command(0x9F36));
        }
        let dda = self.aip[0] & 0x20 != 0;
        if dda && self.icc_key.is_some() {
            let ddol = find_value(&self.data, 0x9F49)
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| vec![0x9F, 0x37, 0x04]);
            self.ddol_data = self.dol_data(&ddol);
            let command =
                CommandApdu::new(0x00, 0x88, 0x00, 0x00, self.ddol_data.clone(), Some(0x00));
            let state = State::InternalAuthenticate(AwaitInternalAuthenticate);
            return self.send(state, "DDA: INTERNAL AUTHENTICATE signature", command);
        }
        let why = if dda {
            "no ICC public key recovered"
        } else {
            "the AIP does not announce DDA"
        };
        self.check(
            "DDA: INTERNAL AUTHENTICATE signature",
            Outcome::Skipped(why.into()),
        );
        Next::Send(State::Atc(AwaitAtc), get_data_command(0x9F36))
    }
    /// The terminal's value for a DOL entry, right-justified / truncated to `len`.
    fn dol_data(&self, dol: &[u8]) -> Vec<u8> {
        let t = &self.terminal;
        let mut out = Vec::new();
        for (tag, len) in terminal_cvn::parse_dol(dol).unwrap_or_default() {
            let value: &[u8] = match tag {
                0x9F02 => &t.amount,
                0x9F1A | 0x5F2A => &t.country,
                0x9A => &t.date,
                0x9F37 => &t.un,
                // TTQ: qVSDC, contact chip, online PIN, signature; over contactless also
                // "offline data authentication for online authorizations supported".
                0x9F66 if self.interface == Interface::Contactless => &[0x37, 0x00, 0x00, 0x00],
                0x9F66 => &[0x36, 0x00, 0x00, 0x00],
                _ => &[],
            };
            let mut field = vec![0u8; len];
            let n = value.len().min(len);
            if let (Some(dst), Some(src)) = (field.get_mut(len - n..), value.get(..n)) {
                dst.copy_from_slice(src);
            }
            out.extend_from_slice(&field);
        }
        out
    }

    /// Keeps the objects of a GPO response that carries a cryptogram (qVSDC); the card data in
    /// it (57, 5F20, 5F34 ..) joins the records' data.
    fn take_qvsdc_gpo(&mut self, data: &[u8]) {
        let objects = match tlv::parse_all(data).ok().as_deref() {
            Some([t]) if t.tag().raw() == 0x77 => t.children().unwrap_or_default().to_vec(),
            _ => return,
        };
        if find_value(&objects, 0x9F26).is_none() {
            return;
        }
        self.data.extend(
            objects
                .iter()
                .filter(|t| !matches!(t.tag().raw(), 0x82 | 0x94))
                .cloned(),
        );
        self.gpo_objects = objects;
    }

    /// qVSDC (Kernel 3): the fDDA signature over the terminal's dynamic data, and the ARQC
    /// evidence out of the GPO response.
    fn qvsdc_checks(&mut self) {
        const FDDA: &str = "fDDA: SDAD (9F4B) over 9F37 9F02 5F2A 9F69";
        let objects = self.gpo_objects.clone();
        let outcome = match (find_value(&objects, 0x9F4B), &self.icc_key) {
            (None, _) if self.aip[0] & 0x20 != 0 => {
                Outcome::Fail("the AIP announces DDA but the GPO response carries no 9F4B".into())
            }
            (None, _) => Outcome::Skipped("no 9F4B in the GPO response".into()),
            (Some(_), None) => Outcome::Fail("no ICC public key recovered".into()),
            (Some(sdad), Some(key)) => {
                let card = find_value(&objects, 0x9F69)
                    .or_else(|| find_value(&self.data, 0x9F69))
                    .unwrap_or_default();
                let t = &self.terminal;
                let after = [&t.un[..], &t.amount, &t.country, card].concat();
                match recover_sdad(key, sdad, &after) {
                    Ok(_) => Outcome::Pass,
                    Err(why) => Outcome::Fail(why),
                }
            }
        };
        self.check(FDDA, outcome);
        let get = |tag| find_value(&objects, tag);
        let (Some(&[cid]), Some(&[a, b]), Some(ac), Some(iad)) =
            (get(0x9F27), get(0x9F36), get(0x9F26), get(0x9F10))
        else {
            self.check(
                "qVSDC GPO: ARQC (9F26, 9F27, 9F36, 9F10)",
                Outcome::Fail("9F27, 9F36, 9F26 or 9F10 missing".into()),
            );
            return;
        };
        let Ok(ac) = <[u8; 8]>::try_from(ac) else {
            self.check(
                "qVSDC GPO: ARQC (9F26, 9F27, 9F36, 9F10)",
                Outcome::Fail("9F26 is not 8 bytes".into()),
            );
            return;
        };
        self.check("qVSDC GPO: ARQC (9F26, 9F27, 9F36, 9F10)", Outcome::Pass);
        let elements = find_value(&self.fci, 0x9F38)
            .ok_or_else(|| "no PDOL (9F38) in the FCI".to_string())
            .and_then(|pdol| terminal_cvn::ac_elements(pdol, &self.pdol_data));
        self.keep_arqc(cid, [a, b], ac, iad.to_vec(), elements);
    }

    fn summarize_records(&mut self) {
        let card = &mut self.result.card;
        if let Some(pan) = find_value(&self.data, 0x5A) {
            let digits: String = hex::encode_upper(pan).trim_end_matches('F').to_string();
            card.pan_masked = Some(mask::mask_pan(&digits));
            self.result.pan = Some(Zeroizing::new(digits));
        }
        card.expiry = find_value(&self.data, 0x5F24)
            .and_then(|e| e.get(..2))
            .map(hex::encode_upper);
        // 5F34 is one byte; a longer value is not shown whole (it could carry the PAN).
        card.psn = find_value(&self.data, 0x5F34)
            .and_then(|p| p.get(..1))
            .map(hex::encode_upper);
        card.name = find_value(&self.data, 0x5F20)
            .map(|n| mask::scrub_digit_runs(String::from_utf8_lossy(n).trim()));
    }

    /// The ODA chain: issuer certificate (90, 92, 9F32) with the CA key, ICC certificate (9F46,
    /// 9F48, 9F47) over the static data, or SSAD (93) for SDA.
    fn oda(&mut self) {
        // Book 3 §10.3: the terminal performs the ODA the AIP of this GPO announces (SDA 40,
        // DDA 20, CDA 01), and none when it announces none.
        if self.aip[0] & 0x61 == 0 {
            self.check(
                ISSUER,
                Outcome::Skipped("the AIP announces no SDA, DDA or CDA".into()),
            );
            return;
        }
        let Some(ca) = self.ca.clone() else {
            self.check(ISSUER, Outcome::Skipped("no CA public key given".into()));
            return;
        };
        let Some(issuer) = self.issuer_certificate(&ca) else {
            return;
        };
        self.check(ISSUER, Outcome::Pass);
        self.icc_certificate(&issuer, &pan_of(&self.result));
    }

    /// The issuer certificate (90, 92, 9F32) recovered with the CA key named by 8F, its issuer
    /// identifier matching the PAN; `None` after a failed check.
    fn issuer_certificate(&mut self, ca: &CaPublicKey) -> Option<oda::RecoveredIssuerCertificate> {
        let data = self.data.clone();
        let v = |tag| find_value(&data, tag).map(<[u8]>::to_vec);
        match v(0x8F) {
            Some(index) if index.as_slice() == [ca.index] => {}
            Some(index) => {
                self.check(
                    ISSUER,
                    Outcome::Fail(format!(
                        "8F is {} but the CA key is index {:02X}",
                        hex::encode_upper(index),
                        ca.index
                    )),
                );
                return None;
            }
            None => {
                self.check(
                    ISSUER,
                    Outcome::Fail("no CA index (8F) in the records".into()),
                );
                return None;
            }
        }
        let (Some(cert), Some(exp)) = (v(0x90), v(0x9F32)) else {
            self.check(ISSUER, Outcome::Fail("90 or 9F32 missing".into()));
            return None;
        };
        let issuer = match oda::recover_issuer_certificate(
            &ca.key,
            &cert,
            &v(0x92).unwrap_or_default(),
            &exp,
        ) {
            Ok(i) => i,
            Err(e) => {
                self.check(ISSUER, Outcome::Fail(e.to_string()));
                return None;
            }
        };
        if !issuer.issuer_id_matches_pan(&pan_of(&self.result)) {
            self.check(
                ISSUER,
                Outcome::Fail("issuer identifier does not match the PAN".into()),
            );
            return None;
        }
        Some(issuer)
    }

    /// The ICC certificate (9F46, 9F48, 9F47) over the static data, or SSAD (93) for SDA, with
    /// the issuer key.
    fn icc_certificate(&mut self, issuer: &oda::RecoveredIssuerCertificate, pan: &str) {
        let data = self.data.clone();
        let v = |tag| find_value(&data, tag).map(<[u8]>::to_vec);
        let records = &self.records;
        let static_data = oda::static_data_to_authenticate(
            &self.afl,
            |sfi, n| {
                records
                    .iter()
                    .find(|(s, r, _)| *s == sfi && *r == n)
                    .map(|(_, _, d)| d.as_slice())
            },
            find_value(&data, 0x9F4A),
            self.aip,
        );
        let static_data = match static_data {
            Ok(s) => s,
            Err(e) => {
                self.check(ICC, Outcome::Fail(e.to_string()));
                return;
            }
        };
        if let (Some(cert), Some(exp)) = (v(0x9F46), v(0x9F47)) {
            match oda::recover_icc_certificate(
                &issuer.issuer_key,
                &cert,
                &v(0x9F48).unwrap_or_default(),
                &exp,
                &static_data,
            ) {
                Ok(icc) if icc.pan_matches(pan) => {
                    self.check(ICC, Outcome::Pass);
                    self.icc_key = Some(icc.icc_key);
                }
                Ok(_) => self.check(
                    ICC,
                    Outcome::Fail("the certified PAN does not match 5A".into()),
                ),
                Err(e) => self.check(ICC, Outcome::Fail(e.to_string())),
            }
        } else if let Some(ssad) = v(0x93) {
            let outcome =
                match oda::recover_static_application_data(&issuer.issuer_key, &ssad, &static_data)
                {
                    Ok(_) => Outcome::Pass,
                    Err(e) => Outcome::Fail(e.to_string()),
                };
            self.check("ODA: SDA signed static data (93)", outcome);
        } else {
            self.check(
                ICC,
                Outcome::Skipped("neither 9F46 nor 93 on the card".into()),
            );
        }
    }

    /// Signed dynamic application data (format 05) from INTERNAL AUTHENTICATE.
    fn check_sdad(&self, status: u16, data: &[u8]) -> Outcome {
        if status != 0x9000 {
            return Outcome::Fail(format!("SW {status:04X}"));
        }
        let Some(key) = &self.icc_key else {
            return Outcome::Skipped("no ICC key".into());
        };
        let sdad = match Tlv::from_bytes(data) {
            Ok(t) if t.tag().raw() == 0x80 => t.value().map(<[u8]>::to_vec),
            Ok(t) => t
                .find(Tag::new(0x9F4B).unwrap_or(t.tag()))
                .and_then(Tlv::value)
                .map(<[u8]>::to_vec),
            Err(_) => None,
        };
        let Some(sdad) = sdad else {
            return Outcome::Fail("no signed dynamic data (80 or 9F4B)".into());
        };
        match recover_sdad(key, &sdad, &self.ddol_data) {
            Ok(_) => Outcome::Pass,
            Err(why) => Outcome::Fail(why),
        }
    }

    /// Verifies a CDA GENERATE AC response (EMV Book 2 §6.6): the SDAD recovers with the ICC
    /// key, its hash covers the unpredictable number, its CID equals 9F27, and its transaction
    /// data hash covers the PDOL data, the CDOL1 data and the response's other data objects.
    /// Returns the application cryptogram it carries.
    fn check_cda(&self, tlvs: &[Tlv]) -> Result<[u8; 8], String> {
        let key = self.icc_key.as_ref().ok_or("no ICC key")?;
        let objects: &[Tlv] = match tlvs {
            [t] if t.tag().raw() == 0x77 => t.children().unwrap_or_default(),
            _ => return Err("a CDA response must be a template 77".into()),
        };
        let sdad = find_value(objects, 0x9F4B).ok_or("no signed dynamic data (9F4B)")?;
        let dynamic = recover_sdad(key, sdad, &self.terminal.un)?;
        // ICC dynamic data: Lidn || IDN || CID || AC (8) || transaction data hash code (20).
        let lidn = usize::from(*dynamic.first().ok_or("no ICC dynamic data")?);
        let rest = dynamic
            .get(1 + lidn..)
            .filter(|r| r.len() >= 29)
            .ok_or("ICC dynamic data too short for CID, AC and hash")?;
        let (cid, ac, tdhc) = (rest[0], &rest[1..9], &rest[9..29]);
        if find_value(objects, 0x9F27) != Some(&[cid][..]) {
            return Err("the CID in the signature differs from 9F27".into());
        }
        let mut h = Sha1::new();
        h.update(&self.pdol_data);
        h.update(&self.cdol1_data);
        for t in objects.iter().filter(|t| t.tag().raw() != 0x9F4B) {
            h.update(t.to_bytes());
        }
        if h.finalize().as_slice() != tdhc {
            return Err("transaction data hash code does not match".into());
        }
        <[u8; 8]>::try_from(ac).map_err(|_| "AC is not 8 bytes".to_string())
    }

    fn take_arqc(&mut self, status: u16, data: &[u8]) {
        const NAME: &str = "GENERATE AC (ARQC)";
        if status != 0x9000 {
            self.check(NAME, Outcome::Fail(format!("SW {status:04X}")));
            return;
        }
        let Ok(tlvs) = tlv::parse_all(data) else {
            self.check(NAME, Outcome::Fail("response is not BER-TLV".into()));
            return;
        };
        let get = |tag| find_value(&tlvs, tag);
        let cda_ac = if self.cda {
            match self.check_cda(&tlvs) {
                Ok(ac) => {
                    self.check("CDA: signed dynamic data (9F4B) over the AC", Outcome::Pass);
                    Some(ac)
                }
                Err(why) => {
                    self.check(
                        "CDA: signed dynamic data (9F4B) over the AC",
                        Outcome::Fail(why),
                    );
                    return;
                }
            }
        } else {
            None
        };
        let ac = cda_ac.as_ref().map(<[u8; 8]>::as_slice).or(get(0x9F26));
        let (Some(&[cid]), Some(&[a, b]), Some(ac), Some(iad)) =
            (get(0x9F27), get(0x9F36), ac, get(0x9F10))
        else {
            self.check(
                NAME,
                Outcome::Fail("9F27, 9F36, 9F26 or 9F10 missing".into()),
            );
            return;
        };
        let Ok(ac) = <[u8; 8]>::try_from(ac) else {
            self.check(NAME, Outcome::Fail("9F26 is not 8 bytes".into()));
            return;
        };
        if cid & 0xC0 != 0x80 {
            self.check(
                NAME,
                Outcome::Fail(format!("card answered CID {cid:02X}, not an ARQC")),
            );
            return;
        }
        self.check(NAME, Outcome::Pass);
        let elements = find_value(&self.data, 0x8C)
            .ok_or_else(|| "no CDOL1 (8C)".to_string())
            .and_then(|cdol1| terminal_cvn::ac_elements(cdol1, &self.cdol1_data));
        self.keep_arqc(cid, [a, b], ac, iad.to_vec(), elements);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10];
    const UN: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn terminal() -> TerminalData {
        TerminalData {
            un: UN,
            date: [0x26, 0x01, 0x01],
            amount: [0, 0, 0, 0, 0x10, 0x00],
            country: [0x08, 0x40],
        }
    }

    fn ok(data: &[&[u8]]) -> Vec<u8> {
        [data.concat(), vec![0x90, 0x00]].concat()
    }

    /// A card without ODA: PPSE listing one AID, its FCI, a format 1 GPO answer (AIP 0000, AFL
    /// SFI 1 record 1), one record with CDOL1 = 9F37 04, ATC 5, PIN tries 3 and an ARQC.
    fn answer(command: &[u8]) -> Vec<u8> {
        match command {
            [0x00, 0xA4, 0x04, 0x00, 0x0E, ..] => ok(&[
                &[0x6F, 0x21, 0x84, 0x0E],
                &PPSE,
                &[0xA5, 0x0F, 0xBF, 0x0C, 0x0C, 0x61, 0x0A, 0x4F, 0x05],
                &AID[..5],
                &[0x87, 0x01, 0x01],
            ]),
            [0x00, 0xA4, 0x04, 0x00, 0x07, ..] => {
                ok(&[&[0x6F, 0x0B, 0x84, 0x07], &AID, &[0xA5, 0x00]])
            }
            [0x80, 0xA8, ..] => ok(&[&[0x80, 0x06, 0x00, 0x00, 0x08, 0x01, 0x01, 0x00]]),
            [0x00, 0xB2, 0x01, 0x0C, 0x00] => ok(&[&[0x70, 0x05, 0x8C, 0x03, 0x9F, 0x37, 0x04]]),
            [0x80, 0xCA, 0x9F, 0x36, 0x00] => ok(&[&[0x9F, 0x36, 0x02, 0x00, 0x05]]),
            [0x80, 0xCA, 0x9F, 0x17, 0x00] => ok(&[&[0x9F, 0x17, 0x01, 0x03]]),
            [0x80, 0xAE, 0x80, ..] => ok(&[
                &[0x9F, 0x27, 0x01, 0x80, 0x9F, 0x36, 0x02, 0x00, 0x05],
                &[0x9F, 0x26, 0x08, 1, 2, 3, 4, 5, 6, 7, 8],
                &[0x9F, 0x10, 0x07, 0x06, 0x01, 0x0A, 0x03, 0xA0, 0x00, 0x00],
            ]),
            _ => vec![0x6D, 0x00],
        }
    }

    #[test]
    fn a_read_back_runs_the_terminal_phases_in_order() {
        // The PPSE lists a 5-byte AID the card does not answer; the caller's candidate follows.
        let (mut session, first) = ReadBackSession::start(terminal(), None, vec![AID.to_vec()]);
        let mut phases = vec![session.phase()];
        let mut commands = vec![first.to_bytes()];
        let result = loop {
            let response = answer(commands.last().map_or(&[][..], Vec::as_slice));
            match session.handle(&response) {
                ReadStep::Transmit(next) => {
                    phases.push(session.phase());
                    commands.push(next.to_bytes());
                }
                ReadStep::Done(r) => break r,
            }
        };
        use ReadPhase::*;
        assert_eq!(
            phases,
            [
                SelectPpse,
                SelectAid,
                SelectAid,
                GetProcessingOptions,
                ReadRecord,
                GetAtc,
                GetPinTries,
                GenerateAc
            ]
        );
        assert_eq!(session.phase(), Finished);
        // Command encodings of EMV Book 1 §11.3 and Book 3 §6.5: SELECT PPSE by name, GPO with
        // an empty PDOL (83 00), READ RECORD P2 = SFI << 3 | 4, GET DATA, GENERATE AC ARQC.
        let hex: Vec<String> = commands.iter().map(hex::encode_upper).collect();
        assert_eq!(hex[0], "00A404000E325041592E5359532E444446303100");
        assert_eq!(hex[1], "00A4040005A00000000300");
        assert_eq!(hex[2], "00A4040007A000000003101000");
        assert_eq!(hex[3], "80A8000002830000");
        assert_eq!(hex[4], "00B2010C00");
        assert_eq!(hex[5], "80CA9F3600");
        assert_eq!(hex[6], "80CA9F1700");
        assert_eq!(hex[7], "80AE8000041122334400");
        assert_eq!(result.commands, 8);
        assert_eq!(result.card.atc, Some(5));
        assert_eq!(result.card.pin_tries, Some(3));
        assert_eq!(result.records.len(), 1);
        let arqc = result.arqc.as_ref().expect("ARQC evidence");
        assert_eq!(arqc.ac, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(arqc.un, UN);
        assert!(result.passed(), "{:?}", result.checks);
    }

    #[test]
    fn a_failed_read_record_ends_the_read_back_there() {
        let (mut session, _) = ReadBackSession::start(terminal(), None, vec![AID.to_vec()]);
        let mut step = session.handle(&[0x6A, 0x82]);
        let mut phases = vec![];
        while let ReadStep::Transmit(command) = step {
            phases.push(session.phase());
            let bytes = command.to_bytes();
            let response = if bytes.starts_with(&[0x00, 0xB2]) {
                vec![0x6A, 0x83]
            } else {
                answer(&bytes)
            };
            step = session.handle(&response);
        }
        let ReadStep::Done(result) = step else {
            unreachable!("the loop ends on Done")
        };
        use ReadPhase::*;
        assert_eq!(phases, [SelectAid, GetProcessingOptions, ReadRecord]);
        assert_eq!(
            result.checks.last().map(|c| (c.name.as_str(), &c.outcome)),
            Some((
                "READ RECORD SFI 1 record 1",
                &Outcome::Fail("SW 6A83".into())
            ))
        );
    }
}
