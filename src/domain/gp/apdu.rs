//! ISO/IEC 7816-4 short command and response APDUs and the status words a personalization session
//! meets.
//!
//! Only short APDUs are modelled (Lc and Le up to 255/256): every CPS personalization command fits,
//! and the secure channel budgets are computed for them.
//!
//! Transport-level status words are not the session's business: `61xx` (more data, fetch with
//! GET RESPONSE) and `6Cxx` (wrong Le, resend with Le = xx) are handled by the PC/SC adapter, which
//! hands the session the final response. If one of them still reaches the session it is an error
//! like any other non-`9000` status word.

use std::fmt;

use zeroize::Zeroizing;

/// A malformed APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    /// A response must hold at least the two status bytes.
    #[error("response APDU of {len} bytes is shorter than the 2-byte status word")]
    ResponseTooShort {
        /// The number of bytes received.
        len: usize,
    },
    /// A short command APDU carries at most 255 data bytes.
    #[error("command data of {len} bytes does not fit a short APDU (255 bytes at most)")]
    CommandTooLong {
        /// The data length asked for.
        len: usize,
    },
}

/// A short command APDU: header, optional data field (Lc is its length) and optional Le.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandApdu {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Cleared on drop: STORE DATA fields carry card data.
    data: Zeroizing<Vec<u8>>,
    /// Expected response length; `Some(0)` means "up to 256 bytes".
    pub le: Option<u8>,
    /// When set, [`fmt::Debug`] shows the header and the data length only.
    redacted: bool,
}

impl CommandApdu {
    /// Builds a command APDU; fails when `data` is longer than 255 bytes.
    pub fn new(
        cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        data: Vec<u8>,
        le: Option<u8>,
    ) -> Result<Self, ApduError> {
        if data.len() > 255 {
            return Err(ApduError::CommandTooLong { len: data.len() });
        }
        Ok(Self {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(data),
            le,
            redacted: false,
        })
    }

    /// A command whose data field is a fixed array (possibly empty) of at most 255 bytes, checked
    /// when compiling: it needs no error path.
    pub fn fixed<const N: usize>(
        cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        data: [u8; N],
        le: Option<u8>,
    ) -> Self {
        const {
            assert!(
                N <= 255,
                "a short command APDU carries at most 255 data bytes"
            )
        };
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(data.to_vec()),
            le,
            redacted: false,
        }
    }

    /// Marks the command as carrying card data (DGIs): its `Debug` then shows the header and the
    /// data length, never the data.
    #[must_use]
    pub fn redact(mut self) -> Self {
        self.redacted = true;
        self
    }

    /// Whether `Debug` hides the data field.
    pub fn is_redacted(&self) -> bool {
        self.redacted
    }

    /// The data field.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Lc: the length of the data field (0 when absent).
    pub fn lc(&self) -> u8 {
        // `new` guarantees the length is at most 255.
        u8::try_from(self.data.len()).unwrap_or(u8::MAX)
    }

    /// Appends the wire encoding: `CLA INS P1 P2 [Lc data] [Le]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            out.push(self.lc());
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(le);
        }
    }

    /// The wire encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.data.len());
        self.encode(&mut out);
        out
    }
}

impl fmt::Debug for CommandApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CommandApdu({:02X} {:02X} {:02X} {:02X}",
            self.cla, self.ins, self.p1, self.p2
        )?;
        if !self.data.is_empty() {
            if self.redacted {
                write!(
                    f,
                    " Lc={:02X} <{} bytes redacted>",
                    self.lc(),
                    self.data.len()
                )?;
            } else {
                write!(
                    f,
                    " Lc={:02X} {}",
                    self.lc(),
                    hex::encode_upper(&self.data[..])
                )?;
            }
        }
        if let Some(le) = self.le {
            write!(f, " Le={le:02X}")?;
        }
        write!(f, ")")
    }
}

/// A response APDU: data field and status word.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseApdu {
    /// Cleared on drop (card data read back).
    data: Zeroizing<Vec<u8>>,
    /// The status word (`SW1 SW2`).
    pub sw: StatusWord,
}

impl ResponseApdu {
    /// Splits raw response bytes into data and status word; fewer than 2 bytes is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        match bytes {
            [data @ .., sw1, sw2] => Ok(Self {
                data: Zeroizing::new(data.to_vec()),
                sw: StatusWord::from_u16(u16::from_be_bytes([*sw1, *sw2])),
            }),
            _ => Err(ApduError::ResponseTooShort { len: bytes.len() }),
        }
    }

    /// Builds a response from parts (for tests and simulated cards).
    pub fn new(data: Vec<u8>, sw: StatusWord) -> Self {
        Self {
            data: Zeroizing::new(data),
            sw,
        }
    }

    /// The data field (may be empty).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The wire encoding: data then `SW1 SW2`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.data.to_vec();
        out.extend_from_slice(&self.sw.to_u16().to_be_bytes());
        out
    }
}

impl fmt::Debug for ResponseApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseApdu(<{} bytes> {})", self.data.len(), self.sw)
    }
}

/// A status word, with names for those a personalization session meets; anything else is kept
/// as [`StatusWord::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusWord {
    /// `9000`: normal processing.
    Success,
    /// `61xx`: xx more bytes available (GET RESPONSE; handled by the transport).
    BytesAvailable(u8),
    /// `6Cxx`: wrong Le, xx bytes available (resend; handled by the transport).
    WrongLe(u8),
    /// `6283`: selected file or application invalidated / locked.
    SelectedFileInvalidated,
    /// `6300`: authentication failed (EXTERNAL AUTHENTICATE: host cryptogram rejected).
    AuthenticationFailed,
    /// `63Cx`: verification failed, x retries left.
    RetriesLeft(u8),
    /// `6400`: execution error, state unchanged.
    ExecutionError,
    /// `6581`: memory failure.
    MemoryFailure,
    /// `6700`: wrong length.
    WrongLength,
    /// `6881`: logical channel not supported.
    LogicalChannelNotSupported,
    /// `6882`: secure messaging not supported.
    SecureMessagingNotSupported,
    /// `6982`: security status not satisfied.
    SecurityStatusNotSatisfied,
    /// `6983`: authentication method blocked.
    AuthenticationMethodBlocked,
    /// `6984`: referenced data invalidated.
    ReferencedDataInvalidated,
    /// `6985`: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// `6988`: incorrect secure messaging data objects (bad C-MAC).
    IncorrectSecureMessaging,
    /// `6A80`: incorrect values in the command data.
    IncorrectData,
    /// `6A81`: function not supported.
    FunctionNotSupported,
    /// `6A82`: application or file not found.
    NotFound,
    /// `6A84`: not enough memory space.
    NotEnoughMemory,
    /// `6A86`: incorrect P1 P2.
    IncorrectP1P2,
    /// `6A88`: referenced data not found (e.g. key version).
    ReferencedDataNotFound,
    /// `6B00`: wrong parameters P1 P2.
    WrongP1P2,
    /// `6D00`: instruction not supported.
    InsNotSupported,
    /// `6E00`: class not supported.
    ClaNotSupported,
    /// `6F00`: no precise diagnosis.
    NoPreciseDiagnosis,
    /// Any other value, kept as is.
    Unknown(u16),
}

impl StatusWord {
    /// Classifies a raw status word.
    pub fn from_u16(sw: u16) -> Self {
        let [sw1, sw2] = sw.to_be_bytes();
        match (sw1, sw2) {
            (0x90, 0x00) => Self::Success,
            (0x61, n) => Self::BytesAvailable(n),
            (0x6C, n) => Self::WrongLe(n),
            (0x62, 0x83) => Self::SelectedFileInvalidated,
            (0x63, 0x00) => Self::AuthenticationFailed,
            (0x63, n) if n & 0xF0 == 0xC0 => Self::RetriesLeft(n & 0x0F),
            (0x64, 0x00) => Self::ExecutionError,
            (0x65, 0x81) => Self::MemoryFailure,
            (0x67, 0x00) => Self::WrongLength,
            (0x68, 0x81) => Self::LogicalChannelNotSupported,
            (0x68, 0x82) => Self::SecureMessagingNotSupported,
            (0x69, 0x82) => Self::SecurityStatusNotSatisfied,
            (0x69, 0x83) => Self::AuthenticationMethodBlocked,
            (0x69, 0x84) => Self::ReferencedDataInvalidated,
            (0x69, 0x85) => Self::ConditionsNotSatisfied,
            (0x69, 0x88) => Self::IncorrectSecureMessaging,
            (0x6A, 0x80) => Self::IncorrectData,
            (0x6A, 0x81) => Self::FunctionNotSupported,
            (0x6A, 0x82) => Self::NotFound,
            (0x6A, 0x84) => Self::NotEnoughMemory,
            (0x6A, 0x86) => Self::IncorrectP1P2,
            (0x6A, 0x88) => Self::ReferencedDataNotFound,
            (0x6B, 0x00) => Self::WrongP1P2,
            (0x6D, 0x00) => Self::InsNotSupported,
            (0x6E, 0x00) => Self::ClaNotSupported,
            (0x6F, 0x00) => Self::NoPreciseDiagnosis,
            _ => Self::Unknown(sw),
        }
    }

    /// The raw value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Success => 0x9000,
            Self::BytesAvailable(n) => 0x6100 | u16::from(n),
            Self::WrongLe(n) => 0x6C00 | u16::from(n),
            Self::SelectedFileInvalidated => 0x6283,
            Self::AuthenticationFailed => 0x6300,
            Self::RetriesLeft(n) => 0x63C0 | u16::from(n & 0x0F),
            Self::ExecutionError => 0x6400,
            Self::MemoryFailure => 0x6581,
            Self::WrongLength => 0x6700,
            Self::LogicalChannelNotSupported => 0x6881,
            Self::SecureMessagingNotSupported => 0x6882,
            Self::SecurityStatusNotSatisfied => 0x6982,
            Self::AuthenticationMethodBlocked => 0x6983,
            Self::ReferencedDataInvalidated => 0x6984,
            Self::ConditionsNotSatisfied => 0x6985,
            Self::IncorrectSecureMessaging => 0x6988,
            Self::IncorrectData => 0x6A80,
            Self::FunctionNotSupported => 0x6A81,
            Self::NotFound => 0x6A82,
            Self::NotEnoughMemory => 0x6A84,
            Self::IncorrectP1P2 => 0x6A86,
            Self::ReferencedDataNotFound => 0x6A88,
            Self::WrongP1P2 => 0x6B00,
            Self::InsNotSupported => 0x6D00,
            Self::ClaNotSupported => 0x6E00,
            Self::NoPreciseDiagnosis => 0x6F00,
            Self::Unknown(sw) => sw,
        }
    }

    /// Whether this is `9000`.
    pub fn is_success(self) -> bool {
        self == Self::Success
    }

    /// A short human name ("security status not satisfied"); `None` for unknown values.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Success => "success",
            Self::BytesAvailable(_) => "more data available (GET RESPONSE)",
            Self::WrongLe(_) => "wrong Le (resend with the given Le)",
            Self::SelectedFileInvalidated => "selected application invalidated or locked",
            Self::AuthenticationFailed => "authentication failed",
            Self::RetriesLeft(_) => "verification failed, retries left",
            Self::ExecutionError => "execution error",
            Self::MemoryFailure => "memory failure",
            Self::WrongLength => "wrong length",
            Self::LogicalChannelNotSupported => "logical channel not supported",
            Self::SecureMessagingNotSupported => "secure messaging not supported",
            Self::SecurityStatusNotSatisfied => "security status not satisfied",
            Self::AuthenticationMethodBlocked => "authentication method blocked",
            Self::ReferencedDataInvalidated => "referenced data invalidated",
            Self::ConditionsNotSatisfied => "conditions of use not satisfied",
            Self::IncorrectSecureMessaging => "incorrect secure messaging data (C-MAC)",
            Self::IncorrectData => "incorrect data",
            Self::FunctionNotSupported => "function not supported",
            Self::NotFound => "application or file not found",
            Self::NotEnoughMemory => "not enough memory",
            Self::IncorrectP1P2 => "incorrect P1 P2",
            Self::ReferencedDataNotFound => "referenced data not found",
            Self::WrongP1P2 => "wrong P1 P2",
            Self::InsNotSupported => "instruction not supported",
            Self::ClaNotSupported => "class not supported",
            Self::NoPreciseDiagnosis => "no precise diagnosis",
            Self::Unknown(_) => return None,
        })
    }
}

impl fmt::Display for StatusWord {
    /// `6982 (security status not satisfied)`, or the bare hex value when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{:04X} ({name})", self.to_u16()),
            None => write!(f, "{:04X}", self.to_u16()),
        }
    }
}

/// `SELECT` by AID (`00 A4 04 00 Lc AID 00`).
pub fn select_by_aid(aid: &[u8]) -> Result<CommandApdu, ApduError> {
    CommandApdu::new(0x00, 0xA4, 0x04, 0x00, aid.to_vec(), Some(0x00))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_status_word_round_trips() {
        for raw in 0u16..=0xFFFF {
            let sw = StatusWord::from_u16(raw);
            assert_eq!(sw.to_u16(), raw, "{raw:04X}");
        }
        assert_eq!(
            StatusWord::from_u16(0x6982),
            StatusWord::SecurityStatusNotSatisfied
        );
        assert_eq!(StatusWord::from_u16(0x63C2), StatusWord::RetriesLeft(2));
        assert_eq!(
            StatusWord::from_u16(0x6A80).to_string(),
            "6A80 (incorrect data)"
        );
        assert_eq!(StatusWord::from_u16(0x6F12).to_string(), "6F12");
    }

    #[test]
    fn responses_never_panic() {
        assert!(ResponseApdu::parse(&[]).is_err());
        assert!(ResponseApdu::parse(&[0x90]).is_err());
        let r = ResponseApdu::parse(&[0x01, 0x90, 0x00]).expect("parse");
        assert_eq!(r.data(), [0x01]);
        assert!(r.sw.is_success());
    }

    #[test]
    fn redacted_debug_hides_data() {
        let c = CommandApdu::new(0x84, 0xE2, 0x60, 0x00, vec![0xAB; 20], None)
            .expect("apdu")
            .redact();
        let d = format!("{c:?}");
        assert!(!d.contains("ABAB"), "{d}");
        assert!(d.contains("20 bytes"), "{d}");
        assert!(CommandApdu::new(0, 0, 0, 0, vec![0; 256], None).is_err());
    }
}
