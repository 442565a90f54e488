//! The MSR206 / MSR605 magnetic stripe encoder protocol as bytes, sans-I/O (docs/domain.md §7.1, §7.3).
//!
//! - [`TrackBody`] / [`TrackSet`]: validated track bodies (no sentinels, no LRC) ready to write.
//! - [`Command`]: the command builders (reset, communication test, hi-co/lo-co, BPI, ISO write,
//!   ISO read).
//! - [`ResponseParser`]: an incremental parser for the device's replies (feed bytes as they arrive).
//! - [`WriteSession`]: the write-and-verify flow as a state machine that takes parsed replies and
//!   yields the bytes to send; the serial adapter (`devices::encoder`) only moves bytes.
//! - [`preview`]: a bit-level view of a track (codes, data bits, odd parity, LRC) for the GUI.
//!
//! # Length limits
//!
//! docs/domain.md §7.1 gives 79 / 40 / 107 characters for tracks 1 / 2 / 3, "commonly read as including
//! start sentinel, end sentinel and LRC", with 76 data characters on track 1. We take that reading
//! for all three tracks: the limit counts the start sentinel, the end sentinel and the LRC, so a body
//! (what this module sends; the device adds the other three) may hold at most 76 / 37 / 104
//! characters. It is the stricter of the possible readings, so a card we accept fits either way.
//!
//! # Sensitive data
//!
//! Track text is cardholder data. Every type here that holds it masks it in `Debug` (track number and
//! length only) and zeroizes it on drop; errors name the track number and the rule, never the content.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::domain::mask::debug_fields;

/// Escape: every command and every reply starts with it.
pub const ESC: u8 = 0x1B;
/// File separator: last byte of the ISO write command and of the ISO read data block.
pub const FS: u8 = 0x1C;
/// End sentinel of every track (`?`).
pub const END_SENTINEL: u8 = b'?';
/// The communication test reply byte (`1B 79`).
pub const COMM_TEST_REPLY: u8 = 0x79;
/// Upper bound on one track's bytes in a read reply; longer means the reply is not what we think.
const MAX_READ_TRACK: usize = 256;

// ------------------------------------------------------------------------------------------------
// Tracks
// ------------------------------------------------------------------------------------------------

/// One of the three ISO tracks of a magnetic stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackNumber {
    /// Track 1 (ISO 7813 format B, alphanumeric, 210 bpi).
    One,
    /// Track 2 (ISO 7813, numeric, 75 bpi).
    Two,
    /// Track 3 (ISO 4909, numeric, 210 bpi).
    Three,
}

impl TrackNumber {
    /// The three tracks in order.
    pub const ALL: [TrackNumber; 3] = [TrackNumber::One, TrackNumber::Two, TrackNumber::Three];

    /// 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            TrackNumber::One => 1,
            TrackNumber::Two => 2,
            TrackNumber::Three => 3,
        }
    }

    /// The track for a number 1..=3.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(TrackNumber::One),
            2 => Some(TrackNumber::Two),
            3 => Some(TrackNumber::Three),
            _ => None,
        }
    }

    /// Start sentinel: `%` on track 1, `;` on tracks 2 and 3.
    pub fn start_sentinel(self) -> u8 {
        match self {
            TrackNumber::One => b'%',
            TrackNumber::Two | TrackNumber::Three => b';',
        }
    }

    /// Maximum characters on the stripe, counting start sentinel, end sentinel and LRC.
    pub fn max_stripe_len(self) -> usize {
        match self {
            TrackNumber::One => 79,
            TrackNumber::Two => 40,
            TrackNumber::Three => 107,
        }
    }

    /// Maximum body length (without sentinels and LRC): 76 / 37 / 104. See the module docs.
    pub fn max_body_len(self) -> usize {
        self.max_stripe_len() - 3
    }

    /// Data bits per character, without the parity bit: 6 on track 1, 4 on tracks 2 and 3.
    pub fn data_bits(self) -> u8 {
        match self {
            TrackNumber::One => 6,
            TrackNumber::Two | TrackNumber::Three => 4,
        }
    }

    /// ASCII value of code 0: 0x20 on track 1, 0x30 on tracks 2 and 3.
    pub fn code_offset(self) -> u8 {
        match self {
            TrackNumber::One => 0x20,
            TrackNumber::Two | TrackNumber::Three => 0x30,
        }
    }

    /// Whether `byte` is in the track's character set (sentinels included).
    pub fn in_charset(self, byte: u8) -> bool {
        let first = self.code_offset();
        let last = first + ((1u8 << self.data_bits()) - 1);
        (first..=last).contains(&byte)
    }

    /// Whether `byte` is a sentinel of this track (start or end).
    pub fn is_sentinel(self, byte: u8) -> bool {
        byte == self.start_sentinel() || byte == END_SENTINEL
    }

    /// The marker byte that introduces the track in ISO write/read blocks (`1B 01` .. `1B 03`).
    fn marker(self) -> u8 {
        self.number()
    }
}

impl fmt::Display for TrackNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// Which rule a track body broke. Positions are 1-based character positions in the body; no
/// variant carries the offending character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackRule {
    /// The body is empty: leave the track out (`None`) instead.
    Empty,
    /// The body is longer than the track allows.
    TooLong {
        /// Maximum body length.
        max: usize,
        /// Actual body length in characters.
        got: usize,
    },
    /// A character outside the track's character set.
    IllegalCharacter {
        /// 1-based position in the body.
        position: usize,
    },
    /// A start or end sentinel inside the body (the encoder adds the sentinels itself).
    SentinelInBody {
        /// 1-based position in the body.
        position: usize,
    },
}

impl fmt::Display for TrackRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackRule::Empty => write!(f, "body is empty (leave the track out instead)"),
            TrackRule::TooLong { max, got } => write!(
                f,
                "body has {got} characters, at most {max} fit (the limit counts sentinels and LRC)"
            ),
            TrackRule::IllegalCharacter { position } => write!(
                f,
                "character at position {position} is outside the track's character set"
            ),
            TrackRule::SentinelInBody { position } => write!(
                f,
                "character at position {position} is a sentinel; the encoder adds sentinels itself"
            ),
        }
    }
}

/// Track data rejected before anything is sent to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    /// A track body broke a rule.
    #[error("track {track}: {rule}")]
    Rule {
        /// The track.
        track: TrackNumber,
        /// The rule.
        rule: TrackRule,
    },
    /// All three tracks were left out.
    #[error("no track to write: give at least one of tracks 1, 2 and 3")]
    NoTracks,
}

/// A validated track body: the characters between the sentinels, without sentinels and LRC.
///
/// `Debug` shows the track number and length only; the text is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct TrackBody {
    track: TrackNumber,
    text: Zeroizing<String>,
}

impl TrackBody {
    /// Validates `body` for `track`: not empty, at most [`TrackNumber::max_body_len`] characters,
    /// each in the track's character set and none a sentinel.
    pub fn new(track: TrackNumber, body: &str) -> Result<Self, TrackError> {
        let fail = |rule| Err(TrackError::Rule { track, rule });
        let got = body.chars().count();
        if got == 0 {
            return fail(TrackRule::Empty);
        }
        if got > track.max_body_len() {
            return fail(TrackRule::TooLong {
                max: track.max_body_len(),
                got,
            });
        }
        for (i, c) in body.chars().enumerate() {
            let position = i + 1;
            let Ok(byte) = u8::try_from(c) else {
                return fail(TrackRule::IllegalCharacter { position });
            };
            if !track.in_charset(byte) {
                return fail(TrackRule::IllegalCharacter { position });
            }
            if track.is_sentinel(byte) {
                return fail(TrackRule::SentinelInBody { position });
            }
        }
        Ok(TrackBody {
            track,
            text: Zeroizing::new(body.to_owned()),
        })
    }

    /// The track this body belongs to.
    pub fn track(&self) -> TrackNumber {
        self.track
    }

    /// The clear body text. Cardholder data: never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Number of characters (ASCII, so also bytes).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Always false: a valid body is never empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The track as a reader returns it: start sentinel, body, end sentinel (no LRC).
    pub fn with_sentinels(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.len() + 2));
        out.push(self.track.start_sentinel());
        out.extend_from_slice(self.text.as_bytes());
        out.push(END_SENTINEL);
        out
    }
}

impl fmt::Debug for TrackBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(
            f,
            "TrackBody",
            &[("track", &self.track.number()), ("len", &self.len())],
        )
    }
}

/// Up to three validated track bodies to write, at least one present.
#[derive(Clone, PartialEq, Eq)]
pub struct TrackSet {
    t1: Option<TrackBody>,
    t2: Option<TrackBody>,
    t3: Option<TrackBody>,
}

impl TrackSet {
    /// Validates three optional bodies (without sentinels). At least one must be given.
    pub fn new(t1: Option<&str>, t2: Option<&str>, t3: Option<&str>) -> Result<Self, TrackError> {
        let body = |track, text: Option<&str>| text.map(|t| TrackBody::new(track, t)).transpose();
        let set = TrackSet {
            t1: body(TrackNumber::One, t1)?,
            t2: body(TrackNumber::Two, t2)?,
            t3: body(TrackNumber::Three, t3)?,
        };
        if set.numbers().is_empty() {
            return Err(TrackError::NoTracks);
        }
        Ok(set)
    }

    /// The body of one track, if it is to be written.
    pub fn get(&self, track: TrackNumber) -> Option<&TrackBody> {
        match track {
            TrackNumber::One => self.t1.as_ref(),
            TrackNumber::Two => self.t2.as_ref(),
            TrackNumber::Three => self.t3.as_ref(),
        }
    }

    /// The tracks present, in order.
    pub fn numbers(&self) -> Vec<TrackNumber> {
        TrackNumber::ALL
            .into_iter()
            .filter(|t| self.get(*t).is_some())
            .collect()
    }
}

impl fmt::Debug for TrackSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackSet")
            .field("t1", &self.t1)
            .field("t2", &self.t2)
            .field("t3", &self.t3)
            .finish()
    }
}

// ------------------------------------------------------------------------------------------------
// Commands
// ------------------------------------------------------------------------------------------------

/// Recording density of one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Density {
    /// 210 bits per inch.
    Bpi210,
    /// 75 bits per inch.
    Bpi75,
}

/// A command to the encoder. `IsoWrite` borrows the tracks; its `Debug` stays masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `1B 61`: reset; the device does not answer.
    Reset,
    /// `1B 65`: communication test; answered `1B 79`.
    CommTest,
    /// `1B 78`: select high coercivity; answered `1B 30`.
    HiCo,
    /// `1B 79`: select low coercivity; answered `1B 30`.
    LoCo,
    /// `1B 62 xx`: set the density of one track.
    Bpi(TrackNumber, Density),
    /// `1B 77 1B 73 1B 01 <t1> 1B 02 <t2> 1B 03 <t3> 3F 1C`: ISO write, bodies without
    /// sentinels; answered `1B <status>` after the card is swiped.
    IsoWrite(&'a TrackSet),
    /// `1B 72`: ISO read; answered with the data block and `1B <status>` after a swipe.
    IsoRead,
}

impl Command<'_> {
    /// Appends the command bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Command::Reset => out.extend_from_slice(&[ESC, 0x61]),
            Command::CommTest => out.extend_from_slice(&[ESC, 0x65]),
            Command::HiCo => out.extend_from_slice(&[ESC, 0x78]),
            Command::LoCo => out.extend_from_slice(&[ESC, 0x79]),
            Command::Bpi(track, density) => {
                out.extend_from_slice(&[ESC, 0x62, bpi_byte(*track, *density)])
            }
            Command::IsoWrite(tracks) => encode_iso_write(tracks, out),
            Command::IsoRead => out.extend_from_slice(&[ESC, 0x72]),
        }
    }

    /// The command as a fresh buffer, zeroized on drop (it may hold track data).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        self.encode(&mut out);
        out
    }

    /// The kind of reply the device sends to this command, if any.
    pub fn reply_kind(&self) -> Option<ResponseKind> {
        match self {
            Command::Reset => None,
            Command::IsoRead => Some(ResponseKind::IsoRead),
            _ => Some(ResponseKind::Status),
        }
    }
}

fn bpi_byte(track: TrackNumber, density: Density) -> u8 {
    match (track, density) {
        (TrackNumber::One, Density::Bpi210) => 0xA1,
        (TrackNumber::One, Density::Bpi75) => 0xA0,
        (TrackNumber::Two, Density::Bpi210) => 0xD2,
        (TrackNumber::Two, Density::Bpi75) => 0x4B,
        (TrackNumber::Three, Density::Bpi210) => 0xC1,
        (TrackNumber::Three, Density::Bpi75) => 0xC0,
    }
}

fn encode_iso_write(tracks: &TrackSet, out: &mut Vec<u8>) {
    out.extend_from_slice(&[ESC, 0x77, ESC, 0x73]);
    for track in TrackNumber::ALL {
        out.extend_from_slice(&[ESC, track.marker()]);
        if let Some(body) = tracks.get(track) {
            out.extend_from_slice(body.expose().as_bytes());
        }
    }
    out.extend_from_slice(&[END_SENTINEL, FS]);
}

// ------------------------------------------------------------------------------------------------
// Replies
// ------------------------------------------------------------------------------------------------

/// A status byte from `1B <status>`. Unknown values are kept as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `30`: success.
    Ok,
    /// `31`: read/write error.
    ReadWriteError,
    /// `32`: command format error.
    CommandFormatError,
    /// `34`: invalid command.
    InvalidCommand,
    /// `39`: bad swipe in write mode; the operator must swipe again.
    BadSwipe,
    /// Any other byte (for example `79`, the communication test reply).
    Other(u8),
}

impl Status {
    /// Decodes a status byte.
    pub fn from_byte(byte: u8) -> Self {
        match byte {
            0x30 => Status::Ok,
            0x31 => Status::ReadWriteError,
            0x32 => Status::CommandFormatError,
            0x34 => Status::InvalidCommand,
            0x39 => Status::BadSwipe,
            other => Status::Other(other),
        }
    }

    /// The status byte.
    pub fn byte(self) -> u8 {
        match self {
            Status::Ok => 0x30,
            Status::ReadWriteError => 0x31,
            Status::CommandFormatError => 0x32,
            Status::InvalidCommand => 0x34,
            Status::BadSwipe => 0x39,
            Status::Other(b) => b,
        }
    }

    /// `Ok(())` for success, else the matching [`DeviceError`].
    pub fn check(self) -> Result<(), DeviceError> {
        match self {
            Status::Ok => Ok(()),
            Status::ReadWriteError => Err(DeviceError::ReadWrite),
            Status::CommandFormatError => Err(DeviceError::CommandFormat),
            Status::InvalidCommand => Err(DeviceError::InvalidCommand),
            Status::BadSwipe => Err(DeviceError::BadSwipe),
            Status::Other(b) => Err(DeviceError::Unknown(b)),
        }
    }
}

/// A failure status reported by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Status `31`.
    #[error("read/write error (status 31)")]
    ReadWrite,
    /// Status `32`.
    #[error("command format error (status 32)")]
    CommandFormat,
    /// Status `34`.
    #[error("invalid command (status 34)")]
    InvalidCommand,
    /// Status `39`.
    #[error("bad swipe, swipe the card again (status 39)")]
    BadSwipe,
    /// Any other status byte.
    #[error("unknown status {0:02X}")]
    Unknown(u8),
}

/// One track as read back: the bytes between the block markers, sentinels included.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadTrack(Zeroizing<Vec<u8>>);

impl ReadTrack {
    /// The raw bytes as the device sent them. Cardholder data: never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ReadTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadTrack(len {})", self.0.len())
    }
}

/// The three tracks of an ISO read reply; an empty track is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadTracks {
    t1: Option<ReadTrack>,
    t2: Option<ReadTrack>,
    t3: Option<ReadTrack>,
}

impl ReadTracks {
    /// One track as read.
    pub fn get(&self, track: TrackNumber) -> Option<&ReadTrack> {
        match track {
            TrackNumber::One => self.t1.as_ref(),
            TrackNumber::Two => self.t2.as_ref(),
            TrackNumber::Three => self.t3.as_ref(),
        }
    }

    fn from_buffers(buffers: &mut [Vec<u8>; 3]) -> Self {
        let mut take = |i: usize| {
            buffers
                .get_mut(i)
                .filter(|b| !b.is_empty())
                .map(|b| ReadTrack(Zeroizing::new(std::mem::take(b))))
        };
        ReadTracks {
            t1: take(0),
            t2: take(1),
            t3: take(2),
        }
    }
}

/// What the device is expected to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `1B <status>`.
    Status,
    /// `1B 73 1B 01 .. 1B 02 .. 1B 03 .. 3F 1C 1B <status>`, or a bare `1B <status>` on failure.
    IsoRead,
}

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A bare status.
    Status(Status),
    /// An ISO read data block and its status.
    Read {
        /// The tracks read.
        tracks: ReadTracks,
        /// The trailing status.
        status: Status,
    },
}

impl Response {
    /// The reply's status.
    pub fn status(&self) -> Status {
        match self {
            Response::Status(s) | Response::Read { status: s, .. } => *s,
        }
    }

    /// Whether this is the communication test's `1B 79`.
    pub fn is_comm_test_ok(&self) -> bool {
        *self == Response::Status(Status::Other(COMM_TEST_REPLY))
    }
}

/// A reply that does not follow the protocol. Carries positions, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A byte other than the one the protocol requires at this point.
    #[error("unexpected byte at offset {offset} of the reply (expected {expected})")]
    Unexpected {
        /// 0-based offset within the reply.
        offset: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A track in a read reply is implausibly long.
    #[error("track {0} in the read reply is longer than {MAX_READ_TRACK} bytes")]
    TrackTooLong(TrackNumber),
    /// `feed` was called again after the reply was complete.
    #[error("the reply was already complete")]
    Finished,
}

/// Progress of a [`ResponseParser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// The reply is not complete yet; feed more bytes.
    NeedMore,
    /// The reply is complete. `consumed` bytes of the last slice belong to it; the rest do not.
    Complete {
        /// The parsed reply.
        response: Response,
        /// Bytes of the last fed slice that were used.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseState {
    Start,
    Esc,
    BlockEsc,
    BlockMarker,
    /// In a track's data; `esc` = the previous byte was ESC.
    Track {
        track: TrackNumber,
        esc: bool,
    },
    EndEsc,
    EndStatus,
    Done,
}

/// Incremental parser for one reply: feed bytes as they arrive until [`Feed::Complete`].
///
/// Never panics on any input; malformed replies give a [`ParseError`].
pub struct ResponseParser {
    kind: ResponseKind,
    state: ParseState,
    offset: usize,
    tracks: [Vec<u8>; 3],
}

impl ResponseParser {
    /// A parser for a reply of the given kind.
    pub fn new(kind: ResponseKind) -> Self {
        ResponseParser {
            kind,
            state: ParseState::Start,
            offset: 0,
            tracks: [Vec::new(), Vec::new(), Vec::new()],
        }
    }

    /// Feeds the next bytes of the reply.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Feed, ParseError> {
        if self.state == ParseState::Done {
            return Err(ParseError::Finished);
        }
        for (i, &byte) in bytes.iter().enumerate() {
            if let Some(response) = self.push(byte)? {
                return Ok(Feed::Complete {
                    response,
                    consumed: i + 1,
                });
            }
        }
        Ok(Feed::NeedMore)
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        ParseError::Unexpected {
            offset: self.offset,
            expected,
        }
    }

    fn push(&mut self, byte: u8) -> Result<Option<Response>, ParseError> {
        let result = self.step(byte);
        self.offset += 1;
        if result.is_err() {
            self.state = ParseState::Done;
            self.tracks.iter_mut().for_each(|t| t.zeroize());
        }
        result
    }

    fn step(&mut self, byte: u8) -> Result<Option<Response>, ParseError> {
        match self.state {
            ParseState::Start if byte == ESC => self.state = ParseState::Esc,
            ParseState::Start => return Err(self.unexpected("ESC")),
            ParseState::Esc => {
                if self.kind == ResponseKind::IsoRead && byte == 0x73 {
                    self.state = ParseState::BlockEsc;
                } else {
                    self.state = ParseState::Done;
                    return Ok(Some(Response::Status(Status::from_byte(byte))));
                }
            }
            ParseState::BlockEsc if byte == ESC => self.state = ParseState::BlockMarker,
            ParseState::BlockEsc => return Err(self.unexpected("ESC before track 1")),
            ParseState::BlockMarker if byte == TrackNumber::One.marker() => {
                self.state = ParseState::Track {
                    track: TrackNumber::One,
                    esc: false,
                };
            }
            ParseState::BlockMarker => return Err(self.unexpected("track 1 marker 01")),
            ParseState::Track { track, esc } => self.track_byte(track, esc, byte)?,
            ParseState::EndEsc if byte == ESC => self.state = ParseState::EndStatus,
            ParseState::EndEsc => return Err(self.unexpected("ESC before the status")),
            ParseState::EndStatus => {
                self.state = ParseState::Done;
                return Ok(Some(Response::Read {
                    tracks: ReadTracks::from_buffers(&mut self.tracks),
                    status: Status::from_byte(byte),
                }));
            }
            ParseState::Done => return Err(ParseError::Finished),
        }
        Ok(None)
    }

    fn track_byte(&mut self, track: TrackNumber, esc: bool, byte: u8) -> Result<(), ParseError> {
        let next = match track {
            TrackNumber::One => Some(TrackNumber::Two),
            TrackNumber::Two => Some(TrackNumber::Three),
            TrackNumber::Three => None,
        };
        match (esc, next) {
            (true, Some(next)) if byte == next.marker() => {
                self.state = ParseState::Track {
                    track: next,
                    esc: false,
                };
            }
            (true, _) => return Err(self.unexpected("next track marker after ESC")),
            (false, _) if byte == ESC && next.is_some() => {
                self.state = ParseState::Track { track, esc: true };
            }
            (false, _) if byte == ESC => return Err(self.unexpected("track 3 data or 3F 1C")),
            (false, None) if byte == FS => self.end_of_track3()?,
            (false, _) => {
                let buffer = self.buffer(track);
                if buffer.len() >= MAX_READ_TRACK {
                    return Err(ParseError::TrackTooLong(track));
                }
                buffer.push(byte);
            }
        }
        Ok(())
    }

    /// `FS` after track 3: the byte before it must be the block's closing `3F`.
    fn end_of_track3(&mut self) -> Result<(), ParseError> {
        let buffer = self.buffer(TrackNumber::Three);
        if buffer.last() == Some(&END_SENTINEL) {
            buffer.pop();
            self.state = ParseState::EndEsc;
            Ok(())
        } else {
            Err(self.unexpected("3F before 1C"))
        }
    }

    fn buffer(&mut self, track: TrackNumber) -> &mut Vec<u8> {
        let [t1, t2, t3] = &mut self.tracks;
        match track {
            TrackNumber::One => t1,
            TrackNumber::Two => t2,
            TrackNumber::Three => t3,
        }
    }
}

impl Drop for ResponseParser {
    fn drop(&mut self) {
        self.tracks.iter_mut().for_each(|t| t.zeroize());
    }
}

impl fmt::Debug for ResponseParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(
            f,
            "ResponseParser",
            &[
                ("kind", &self.kind),
                ("state", &self.state),
                ("offset", &self.offset),
            ],
        )
    }
}

// ------------------------------------------------------------------------------------------------
// Write-and-verify flow
// ------------------------------------------------------------------------------------------------

/// A step of the write-and-verify flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStep {
    /// Reset the device.
    Reset,
    /// Select high coercivity.
    SetHiCo,
    /// ISO write (waits for a swipe).
    Write,
    /// ISO read of the freshly written card (waits for a swipe).
    ReadBack,
}

impl fmt::Display for FlowStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlowStep::Reset => "reset",
            FlowStep::SetHiCo => "set hi-co",
            FlowStep::Write => "write",
            FlowStep::ReadBack => "read-back",
        })
    }
}

/// Why a swipe is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwipePurpose {
    /// Swipe to write the card.
    Write,
    /// Swipe again to read the card back.
    ReadBack,
}

impl fmt::Display for SwipePurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwipePurpose::Write => "swipe to write",
            SwipePurpose::ReadBack => "swipe to read back",
        })
    }
}

/// Who the reply waits for: the device alone (short timeout) or the operator (swipe timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The device answers on its own.
    Device,
    /// The device answers after the operator swipes a card.
    Swipe(SwipePurpose),
}

/// What to do after sending a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No reply: call [`WriteSession::sent`].
    Nothing,
    /// Parse a reply of this kind, then call [`WriteSession::handle`].
    Reply {
        /// The reply's kind.
        kind: ResponseKind,
        /// Who it waits for.
        wait: Wait,
    },
}

/// The next thing the driver must do.
#[must_use]
pub enum Action {
    /// Send `bytes`, then do what `expect` says.
    Send {
        /// The command bytes (may hold track data; zeroized on drop).
        bytes: Zeroizing<Vec<u8>>,
        /// What follows.
        expect: Expect,
        /// The step this command belongs to.
        step: FlowStep,
        /// 1 for the first try, 2.. after bad swipes.
        attempt: u32,
    },
    /// Written and verified.
    Done(Outcome),
    /// The flow failed; the session is finished.
    Failed(FlowError),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Send {
                bytes,
                expect,
                step,
                attempt,
            } => f
                .debug_struct("Send")
                .field("len", &bytes.len())
                .field("expect", expect)
                .field("step", step)
                .field("attempt", attempt)
                .finish_non_exhaustive(),
            Action::Done(o) => f.debug_tuple("Done").field(o).finish(),
            Action::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

/// A card written and read back equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The tracks written and verified.
    pub tracks: Vec<TrackNumber>,
    /// Bad swipes (status 39) retried along the way.
    pub bad_swipes: u32,
}

/// Track numbers, displayed as `1, 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackList(pub Vec<TrackNumber>);

impl fmt::Display for TrackList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Why the write-and-verify flow failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The device reported a failure status.
    #[error("encoder reported {error} during {step}")]
    Device {
        /// The step.
        step: FlowStep,
        /// The status.
        error: DeviceError,
    },
    /// Too many bad swipes (status 39).
    #[error("{step}: {count} bad swipes, giving up")]
    TooManyBadSwipes {
        /// The step.
        step: FlowStep,
        /// Bad swipes seen in this step.
        count: u32,
    },
    /// The card read back differs from what was written on these tracks.
    #[error("read-back differs from what was written on track(s) {0}")]
    Mismatch(TrackList),
    /// A reply of the wrong kind for the step.
    #[error("unexpected reply during {0}")]
    UnexpectedResponse(FlowStep),
    /// The driver called the session out of order.
    #[error("write session used out of order")]
    OutOfOrder,
}

/// Settings of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// How many bad swipes (status 39) to retry per swipe step before failing.
    pub max_bad_swipes: u32,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig { max_bad_swipes: 3 }
    }
}

/// Reset sent; the device does not answer it.
#[derive(Debug)]
struct ResetSent;

/// Hi-co selection sent; awaiting its status.
#[derive(Debug)]
struct HiCoSent;

/// ISO write sent; awaiting the status after the swipe. `bad_swipes`: in this step so far.
#[derive(Debug)]
struct WriteSent {
    bad_swipes: u32,
}

/// ISO read sent; awaiting the tracks after the swipe. `bad_swipes`: in this step so far.
#[derive(Debug)]
struct ReadSent {
    bad_swipes: u32,
}

/// One state per step of the flow; each consumes its reply and names the next.
#[derive(Debug)]
enum SessionState {
    Init,
    ResetSent(ResetSent),
    HiCoSent(HiCoSent),
    WriteSent(WriteSent),
    ReadSent(ReadSent),
    Finished,
}

/// What every state reads: the tracks, the settings and the bad swipes of the whole flow.
#[derive(Debug)]
struct Flow {
    tracks: TrackSet,
    config: FlowConfig,
    bad_swipes_total: u32,
}

/// The next state and what the driver does.
type Next = (SessionState, Action);

/// The write-and-verify flow: reset, hi-co, ISO write (retried on bad swipe), ISO read, compare.
///
/// Sans-I/O: call [`start`](Self::start), then for each [`Action::Send`] send the bytes and call
/// [`sent`](Self::sent) (no reply expected) or [`handle`](Self::handle) with the parsed reply,
/// until [`Action::Done`] or [`Action::Failed`]. Timeouts belong to the driver. Like
/// `gp::session`, each step is a state of its own that consumes its reply
/// ([`awaiting`](Self::awaiting) names the step).
#[derive(Debug)]
pub struct WriteSession {
    flow: Flow,
    state: SessionState,
}

impl WriteSession {
    /// A session that will write `tracks`.
    pub fn new(tracks: TrackSet, config: FlowConfig) -> Self {
        WriteSession {
            flow: Flow {
                tracks,
                config,
                bad_swipes_total: 0,
            },
            state: SessionState::Init,
        }
    }

    /// The step whose reply (or, for the reset, whose sending) the session awaits; `None` before
    /// [`start`](Self::start) and once finished.
    pub fn awaiting(&self) -> Option<FlowStep> {
        match self.state {
            SessionState::ResetSent(_) => Some(FlowStep::Reset),
            SessionState::HiCoSent(_) => Some(FlowStep::SetHiCo),
            SessionState::WriteSent(_) => Some(FlowStep::Write),
            SessionState::ReadSent(_) => Some(FlowStep::ReadBack),
            SessionState::Init | SessionState::Finished => None,
        }
    }

    /// The first action: reset.
    pub fn start(&mut self) -> Action {
        let next = match std::mem::replace(&mut self.state, SessionState::Finished) {
            SessionState::Init => (
                SessionState::ResetSent(ResetSent),
                send(Command::Reset, Expect::Nothing, FlowStep::Reset, 1),
            ),
            _ => fail(FlowError::OutOfOrder),
        };
        self.advance(next)
    }

    /// Call after sending a command that expects no reply.
    pub fn sent(&mut self) -> Action {
        let next = match std::mem::replace(&mut self.state, SessionState::Finished) {
            SessionState::ResetSent(s) => s.sent(),
            _ => fail(FlowError::OutOfOrder),
        };
        self.advance(next)
    }

    /// Call with the parsed reply to the last command.
    pub fn handle(&mut self, response: Response) -> Action {
        let flow = &mut self.flow;
        let next = match std::mem::replace(&mut self.state, SessionState::Finished) {
            SessionState::HiCoSent(s) => s.handle(flow, &response),
            SessionState::WriteSent(s) => s.handle(flow, &response),
            SessionState::ReadSent(s) => s.handle(flow, response),
            _ => fail(FlowError::OutOfOrder),
        };
        self.advance(next)
    }

    fn advance(&mut self, (state, action): Next) -> Action {
        self.state = state;
        action
    }
}

impl ResetSent {
    fn sent(self) -> Next {
        let expect = Expect::Reply {
            kind: ResponseKind::Status,
            wait: Wait::Device,
        };
        (
            SessionState::HiCoSent(HiCoSent),
            send(Command::HiCo, expect, FlowStep::SetHiCo, 1),
        )
    }
}

impl HiCoSent {
    fn handle(self, flow: &mut Flow, response: &Response) -> Next {
        match response {
            Response::Status(Status::Ok) => flow.send_write(0),
            Response::Status(status) => device_error(FlowStep::SetHiCo, *status),
            Response::Read { .. } => fail(FlowError::UnexpectedResponse(FlowStep::SetHiCo)),
        }
    }
}

impl WriteSent {
    fn handle(self, flow: &mut Flow, response: &Response) -> Next {
        match response {
            Response::Status(Status::Ok) => flow.send_read(0),
            Response::Status(Status::BadSwipe) => {
                match flow.bad_swipe(FlowStep::Write, self.bad_swipes) {
                    Ok(bad_swipes) => flow.send_write(bad_swipes),
                    Err(gave_up) => gave_up,
                }
            }
            Response::Status(status) => device_error(FlowStep::Write, *status),
            Response::Read { .. } => fail(FlowError::UnexpectedResponse(FlowStep::Write)),
        }
    }
}

impl ReadSent {
    fn handle(self, flow: &mut Flow, response: Response) -> Next {
        match response {
            Response::Read {
                tracks,
                status: Status::Ok,
            } => flow.verify(&tracks),
            r if r.status() == Status::BadSwipe => {
                match flow.bad_swipe(FlowStep::ReadBack, self.bad_swipes) {
                    Ok(bad_swipes) => flow.send_read(bad_swipes),
                    Err(gave_up) => gave_up,
                }
            }
            r => device_error(FlowStep::ReadBack, r.status()),
        }
    }
}

impl Flow {
    /// Counts a bad swipe of `step` (`seen` before it): the retry's count, or the failure once
    /// there were more than the configured retries.
    fn bad_swipe(&mut self, step: FlowStep, seen: u32) -> Result<u32, Next> {
        let count = seen + 1;
        self.bad_swipes_total += 1;
        if count > self.config.max_bad_swipes {
            return Err(fail(FlowError::TooManyBadSwipes { step, count }));
        }
        Ok(count)
    }

    fn send_write(&self, bad_swipes: u32) -> Next {
        let expect = Expect::Reply {
            kind: ResponseKind::Status,
            wait: Wait::Swipe(SwipePurpose::Write),
        };
        let command = Command::IsoWrite(&self.tracks);
        (
            SessionState::WriteSent(WriteSent { bad_swipes }),
            send(command, expect, FlowStep::Write, bad_swipes + 1),
        )
    }

    fn send_read(&self, bad_swipes: u32) -> Next {
        let expect = Expect::Reply {
            kind: ResponseKind::IsoRead,
            wait: Wait::Swipe(SwipePurpose::ReadBack),
        };
        (
            SessionState::ReadSent(ReadSent { bad_swipes }),
            send(Command::IsoRead, expect, FlowStep::ReadBack, bad_swipes + 1),
        )
    }

    fn verify(&self, read: &ReadTracks) -> Next {
        let written = self.tracks.numbers();
        let mismatched: Vec<TrackNumber> = written
            .iter()
            .copied()
            .filter(|&t| {
                let expected = self.tracks.get(t).map(TrackBody::with_sentinels);
                let got = read.get(t).map(ReadTrack::expose);
                expected.as_deref().map(Vec::as_slice) != got
            })
            .collect();
        if !mismatched.is_empty() {
            return fail(FlowError::Mismatch(TrackList(mismatched)));
        }
        let outcome = Outcome {
            tracks: written,
            bad_swipes: self.bad_swipes_total,
        };
        (SessionState::Finished, Action::Done(outcome))
    }
}

fn fail(error: FlowError) -> Next {
    (SessionState::Finished, Action::Failed(error))
}

fn device_error(step: FlowStep, status: Status) -> Next {
    match status.check() {
        Err(error) => fail(FlowError::Device { step, error }),
        Ok(()) => fail(FlowError::UnexpectedResponse(step)),
    }
}

fn send(command: Command<'_>, expect: Expect, step: FlowStep, attempt: u32) -> Action {
    Action::Send {
        bytes: command.to_bytes(),
        expect,
        step,
        attempt,
    }
}

// ------------------------------------------------------------------------------------------------
// Bit-level preview
// ------------------------------------------------------------------------------------------------

/// The role of a character on the stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharRole {
    /// Start sentinel.
    StartSentinel,
    /// Body character.
    Data,
    /// End sentinel.
    EndSentinel,
    /// Longitudinal redundancy check.
    Lrc,
}

/// One character as recorded: its code (ASCII minus the track offset), data bits and odd parity.
///
/// `Debug` shows the role and width only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BitChar {
    /// Role on the stripe.
    pub role: CharRole,
    /// The character (for the LRC: the ASCII character its code maps to).
    pub ch: char,
    /// The code: ASCII − 0x20 (track 1) or ASCII − 0x30 (tracks 2, 3).
    pub code: u8,
    /// Data bits per character: 6 or 4.
    pub width: u8,
    /// The odd parity bit: set when the data bits hold an even number of ones.
    pub parity: bool,
}

impl BitChar {
    fn new(role: CharRole, track: TrackNumber, code: u8) -> Self {
        let width = track.data_bits();
        let code = code & ((1u8 << width) - 1);
        BitChar {
            role,
            ch: char::from(code + track.code_offset()),
            code,
            width,
            parity: code.count_ones().is_multiple_of(2),
        }
    }

    /// Data bits in recording order (least significant first), then the parity bit.
    pub fn bits(&self) -> Vec<bool> {
        (0..self.width)
            .map(|i| (self.code >> i) & 1 == 1)
            .chain(std::iter::once(self.parity))
            .collect()
    }

    /// [`bits`](Self::bits) as `0`/`1` text, e.g. `"11010"` for track 2's `;`.
    pub fn bit_string(&self) -> String {
        self.bits()
            .iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect()
    }
}

impl fmt::Debug for BitChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(
            f,
            "BitChar",
            &[("role", &self.role), ("width", &self.width)],
        )
    }
}

/// A track as recorded on the stripe: start sentinel, body, end sentinel, then the LRC.
#[derive(Clone, PartialEq, Eq)]
pub struct TrackPreview {
    /// The track.
    pub track: TrackNumber,
    /// Start sentinel, body characters and end sentinel, in order.
    pub chars: Vec<BitChar>,
    /// The LRC character: XOR of the data bits of every character above, with its own odd parity.
    pub lrc: BitChar,
}

impl fmt::Debug for TrackPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(
            f,
            "TrackPreview",
            &[
                ("track", &self.track.number()),
                ("chars", &self.chars.len()),
            ],
        )
    }
}

impl Drop for TrackPreview {
    fn drop(&mut self) {
        for c in &mut self.chars {
            c.code.zeroize();
            c.ch.zeroize();
        }
        self.lrc.code.zeroize();
        self.lrc.ch.zeroize();
    }
}

/// The bit-level view of a validated body (docs/domain.md §7.1).
pub fn preview(body: &TrackBody) -> TrackPreview {
    let track = body.track();
    let offset = track.code_offset();
    let encoded = body.with_sentinels();
    let last = encoded.len().saturating_sub(1);
    let chars: Vec<BitChar> = encoded
        .iter()
        .enumerate()
        .map(|(i, &byte)| {
            let role = match i {
                0 => CharRole::StartSentinel,
                i if i == last => CharRole::EndSentinel,
                _ => CharRole::Data,
            };
            BitChar::new(role, track, byte.wrapping_sub(offset))
        })
        .collect();
    let lrc_code = chars.iter().fold(0u8, |acc, c| acc ^ c.code);
    TrackPreview {
        track,
        chars,
        lrc: BitChar::new(CharRole::Lrc, track, lrc_code),
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    fn sent(action: &Action) -> (Vec<u8>, FlowStep, u32) {
        match action {
            Action::Send {
                bytes,
                step,
                attempt,
                ..
            } => (bytes.to_vec(), *step, *attempt),
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn the_write_session_runs_its_steps_in_order() {
        let tracks = TrackSet::new(None, Some("4111111111111111=30121010000000000000"), None)
            .expect("track 2");
        let written = tracks.get(TrackNumber::Two).map(TrackBody::with_sentinels);
        let mut session = WriteSession::new(tracks, FlowConfig::default());
        assert_eq!(session.awaiting(), None);
        let mut steps = Vec::new();

        let action = session.start();
        steps.push((sent(&action).1, sent(&action).2, session.awaiting()));
        // MSR206 manual: reset `ESC a`, then hi-co `ESC x`.
        assert_eq!(sent(&action).0, [ESC, 0x61]);
        let action = session.sent();
        assert_eq!(sent(&action).0, [ESC, 0x78]);
        steps.push((sent(&action).1, sent(&action).2, session.awaiting()));
        let action = session.handle(Response::Status(Status::Ok));
        steps.push((sent(&action).1, sent(&action).2, session.awaiting()));
        // A bad swipe repeats the write as attempt 2.
        let action = session.handle(Response::Status(Status::BadSwipe));
        steps.push((sent(&action).1, sent(&action).2, session.awaiting()));
        let action = session.handle(Response::Status(Status::Ok));
        assert_eq!(sent(&action).0, [ESC, 0x72]);
        steps.push((sent(&action).1, sent(&action).2, session.awaiting()));

        use FlowStep::*;
        assert_eq!(
            steps,
            [
                (Reset, 1, Some(Reset)),
                (SetHiCo, 1, Some(SetHiCo)),
                (Write, 1, Some(Write)),
                (Write, 2, Some(Write)),
                (ReadBack, 1, Some(ReadBack)),
            ]
        );
        let mut buffers = [Vec::new(), written.expect("track 2").to_vec(), Vec::new()];
        let read = Response::Read {
            tracks: ReadTracks::from_buffers(&mut buffers),
            status: Status::Ok,
        };
        match session.handle(read) {
            Action::Done(outcome) => {
                assert_eq!(outcome.tracks, [TrackNumber::Two]);
                assert_eq!(outcome.bad_swipes, 1);
            }
            other => panic!("expected Done, got {other:?}"),
        }
        assert_eq!(session.awaiting(), None);
        assert!(matches!(
            session.handle(Response::Status(Status::Ok)),
            Action::Failed(FlowError::OutOfOrder)
        ));
    }
}
