//! CPS Data Grouping Identifiers (EMV CPS 1.1 / 2.0): the unit of STORE DATA.
//!
//! ```text
//! DGI = id (2 bytes) || length || value
//! length = 1 byte 00..FE  (0..254 bytes)
//!        = FF hi lo       (0..65534 bytes)    e.g. FF 01 AF = 431 bytes
//! ```
//! [`Dgi::encode`] uses the 1-byte form up to 254 bytes and the 3-byte form above;
//! [`Dgi::encode_long_form`] always uses the 3-byte form, which some applets (Visa VSDC 2.9.2)
//! require for a DGI split over several STORE DATA commands. Readers accept both forms.
//!
//! Record DGIs are `SFI (01..1E) || record (01..FF)`. For SFI 1..10 the value is the record
//! template `70 L {BER-TLV}`; SFI 11..30 records are stored as given.
//!
//! Values hold keys and PINs: `Debug` shows the id and the length only, values are zeroized on
//! drop, and errors name offsets and DGI ids, never value bytes.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::domain::tags::{self, DgiInfo};
use crate::domain::tlv::{self, Reader, Tag, Tlv, TlvError};

/// Maximum value length: the `FF hi lo` form tops out at 65534 (`FFFF` is not a length).
pub const MAX_VALUE_LEN: usize = 0xFFFE;
/// Longest value the 1-byte length form can carry.
pub const MAX_SHORT_LEN: usize = 0xFE;
/// Highest SFI whose records must be a template `70` DGI value.
pub const MAX_TEMPLATE_SFI: u8 = 10;

/// The record template tag.
const RECORD_TEMPLATE: Tag = crate::tag!(0x70);

/// A CPS DGI decoding, building or checking error. Offsets are positions in the input stream
/// (for record template errors, positions inside the DGI value). No variant carries value bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DgiError {
    /// The stream ends inside a DGI id; `offset` is where the id starts.
    #[error("truncated DGI id at offset {offset}")]
    TruncatedId { offset: usize },
    /// The stream ends inside a length field; `offset` is where the length starts.
    #[error("truncated length of DGI {dgi:04X} at offset {offset}")]
    TruncatedLength { offset: usize, dgi: u16 },
    /// The length `FF FF FF` (65535) is not a valid DGI length; `offset` is the length field.
    #[error("length of DGI {dgi:04X} at offset {offset} is out of range (FF FFFF)")]
    LengthOutOfRange { offset: usize, dgi: u16 },
    /// The value runs past the end of the stream; `offset` is where the value starts.
    #[error(
        "value of DGI {dgi:04X} at offset {offset} needs {needed} bytes but only {available} remain"
    )]
    TruncatedValue {
        offset: usize,
        dgi: u16,
        needed: usize,
        available: usize,
    },
    /// Bytes after the one DGI that was expected; `offset` is the first extra byte.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    /// Building: the value is longer than [`MAX_VALUE_LEN`].
    #[error("value of DGI {dgi:04X} is {len} bytes, more than {MAX_VALUE_LEN}")]
    ValueTooLong { dgi: u16, len: usize },
    /// The id is not `SFI (01..1E) || record (01..FF)`.
    #[error("DGI {dgi:04X} is not a record DGI (SFI 01..1E, record 01..FF)")]
    NotARecord { dgi: u16 },
    /// A record DGI of SFI 1..10 whose value is not exactly one valid BER-TLV object.
    #[error("record DGI {dgi:04X} is not one valid BER-TLV object: {error}")]
    RecordTlv { dgi: u16, error: TlvError },
    /// A record DGI of SFI 1..10 whose value is a TLV other than template `70`.
    #[error("record DGI {dgi:04X} holds tag {tag}, not record template 70")]
    RecordTemplateTag { dgi: u16, tag: Tag },
    /// The id is reserved by CPS 2.0.
    #[error("DGI {dgi:04X} is reserved by CPS")]
    Reserved { dgi: u16 },
}

/// One DGI: a 2-byte id and its value (at most [`MAX_VALUE_LEN`] bytes).
///
/// `Debug` shows the id and the value length, never the value; the value is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Dgi {
    id: u16,
    value: Vec<u8>,
}

impl Drop for Dgi {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl fmt::Debug for Dgi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dgi")
            .field("id", &format_args!("{:04X}", self.id))
            .field("len", &self.value.len())
            .finish()
    }
}

impl Dgi {
    /// A DGI. Fails when the value is longer than [`MAX_VALUE_LEN`] (the value is then zeroized).
    pub fn new(id: u16, value: impl Into<Vec<u8>>) -> Result<Dgi, DgiError> {
        let mut value = value.into();
        if value.len() > MAX_VALUE_LEN {
            let len = value.len();
            value.zeroize();
            return Err(DgiError::ValueTooLong { dgi: id, len });
        }
        Ok(Dgi { id, value })
    }

    /// A record DGI for `sfi` (1..30) and `record` (1..255). For SFI 1..10 the value must be
    /// exactly one template `70` with valid BER-TLV inside; SFI 11..30 values are stored as given.
    pub fn record(sfi: u8, record: u8, value: impl Into<Vec<u8>>) -> Result<Dgi, DgiError> {
        let id = u16::from_be_bytes([sfi, record]);
        if !tags::is_record_id(id) {
            return Err(DgiError::NotARecord { dgi: id });
        }
        let dgi = Dgi::new(id, value)?;
        dgi.validate_record()?;
        Ok(dgi)
    }

    /// A record DGI whose value is the template `70` wrapping `tlvs` (for any SFI).
    pub fn record_from_tlvs(sfi: u8, record: u8, tlvs: Vec<Tlv>) -> Result<Dgi, DgiError> {
        let id = u16::from_be_bytes([sfi, record]);
        if !tags::is_record_id(id) {
            return Err(DgiError::NotARecord { dgi: id });
        }
        let template = Tlv::constructed(RECORD_TEMPLATE, tlvs)
            .map_err(|error| DgiError::RecordTlv { dgi: id, error })?;
        Dgi::new(id, template.to_bytes())
    }

    /// Reads one DGI, accepting both length forms.
    pub fn read(r: &mut Reader<'_>) -> Result<Dgi, DgiError> {
        let offset = r.offset();
        let id = r.read_u16().ok_or(DgiError::TruncatedId { offset })?;
        let len = read_length(r, id)?;
        let value_offset = r.offset();
        let available = r.remaining();
        let value = r.take(len).ok_or(DgiError::TruncatedValue {
            offset: value_offset,
            dgi: id,
            needed: len,
            available,
        })?;
        Ok(Dgi {
            id,
            value: value.to_vec(),
        })
    }

    /// Parses exactly one DGI from `bytes`; extra bytes are an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Dgi, DgiError> {
        let mut r = Reader::new(bytes);
        let dgi = Dgi::read(&mut r)?;
        match r.remaining() {
            0 => Ok(dgi),
            count => Err(DgiError::TrailingBytes {
                offset: r.offset(),
                count,
            }),
        }
    }

    /// The DGI id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The value bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Takes the value out, still zeroized when the returned wrapper drops.
    pub fn into_value(mut self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(std::mem::take(&mut self.value))
    }

    /// Appends id, length (1-byte form up to 254 bytes, else `FF hi lo`) and value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(out, self.value.len() > MAX_SHORT_LEN);
    }

    /// Appends id, `FF hi lo` and value, whatever the length (DGIs split over several commands
    /// on applets that demand the 3-byte form).
    pub fn encode_long_form(&self, out: &mut Vec<u8>) {
        self.encode_with(out, true);
    }

    fn encode_with(&self, out: &mut Vec<u8>, long_form: bool) {
        out.extend_from_slice(&self.id.to_be_bytes());
        let [.., hi, lo] = self.value.len().to_be_bytes();
        if long_form {
            out.extend_from_slice(&[0xFF, hi, lo]);
        } else {
            out.push(lo);
        }
        out.extend_from_slice(&self.value);
    }

    /// Length of [`Dgi::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        let len_field = if self.value.len() > MAX_SHORT_LEN {
            3
        } else {
            1
        };
        2 + len_field + self.value.len()
    }

    /// Length of [`Dgi::encode_long_form`]'s output.
    pub fn encoded_len_long_form(&self) -> usize {
        5 + self.value.len()
    }

    /// True for record DGIs: SFI `01..1E` and record `01..FF`.
    pub fn is_record(&self) -> bool {
        tags::is_record_id(self.id)
    }

    /// `(sfi, record)` of a record DGI.
    pub fn record_position(&self) -> Option<(u8, u8)> {
        let [sfi, record] = self.id.to_be_bytes();
        self.is_record().then_some((sfi, record))
    }

    /// True for ids CPS 2.0 reserves ([`is_reserved_id`]).
    pub fn is_reserved(&self) -> bool {
        is_reserved_id(self.id)
    }

    /// The dictionary entry for this id, if known.
    pub fn info(&self) -> Option<DgiInfo> {
        tags::dgi_info(self.id)
    }

    /// True when the dictionary marks this DGI as key or PIN material.
    pub fn is_secret(&self) -> bool {
        tags::dgi_is_secret(self.id)
    }

    /// Checks a record DGI: SFI 1..10 values must be exactly one template `70` holding valid
    /// BER-TLV (checked without allocating); SFI 11..30 values are accepted as given.
    pub fn validate_record(&self) -> Result<(), DgiError> {
        self.record_template_content().map(|_| ())
    }

    /// Checks any DGI: not reserved, and record DGIs as in [`Dgi::validate_record`].
    pub fn validate(&self) -> Result<(), DgiError> {
        if self.is_reserved() {
            return Err(DgiError::Reserved { dgi: self.id });
        }
        if self.is_record() {
            self.validate_record()?;
        }
        Ok(())
    }

    /// The bytes this record contributes to the static data to be authenticated (EMV Book 3,
    /// docs/domain.md §4.4): for SFI 1..10 the value of template `70` (tag and length
    /// excluded), for SFI 11..30 the whole record.
    pub fn oda_input(&self) -> Result<&[u8], DgiError> {
        self.record_template_content()
    }

    fn record_template_content(&self) -> Result<&[u8], DgiError> {
        let (sfi, _) = self
            .record_position()
            .ok_or(DgiError::NotARecord { dgi: self.id })?;
        if sfi > MAX_TEMPLATE_SFI {
            return Ok(&self.value);
        }
        let raw = tlv::validate_one(&self.value).map_err(|error| DgiError::RecordTlv {
            dgi: self.id,
            error,
        })?;
        if raw.tag != RECORD_TEMPLATE {
            return Err(DgiError::RecordTemplateTag {
                dgi: self.id,
                tag: raw.tag,
            });
        }
        Ok(raw.value)
    }
}

/// One DGI to send with STORE DATA and the profile's flags: what chip preparation produces
/// ([`crate::domain::chip::ChipData`]) and what the card session sends
/// ([`crate::domain::gp::session::PersoPlan`]). The value is clear here (keys and PIN blocks
/// included) unless it is `held` in the key store; the session pads and encrypts it with the
/// DEK as the flags say. `Debug` shows the
/// id, length and flags only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersoDgi {
    /// The DGI (its `Debug` shows id and length only; zeroized on drop).
    pub dgi: Dgi,
    /// Send encrypted with the DEK (STORE DATA P1 = 60).
    pub encrypt: bool,
    /// Pad ISO/IEC 9797-1 method 2 (`80 00..`) to the DEK block before encryption.
    pub pad: bool,
    /// The value is held in the key store (an HSM): `dgi` then holds zeros of the length the
    /// card receives, and the session asks the store for the value encrypted under the card's
    /// DEK at STORE DATA ([`crate::domain::keystore::CardKeyStore::held_secret_for_card`]).
    pub held: Option<crate::domain::keystore::HeldSecret>,
}

impl PersoDgi {
    /// A DGI with explicit flags. Fails when the value is longer than [`MAX_VALUE_LEN`].
    pub fn new(
        id: u16,
        value: impl Into<Vec<u8>>,
        encrypt: bool,
        pad: bool,
    ) -> Result<Self, DgiError> {
        Ok(Self {
            dgi: Dgi::new(id, value)?,
            encrypt,
            pad,
            held: None,
        })
    }

    /// The DGI identifier, e.g. `0x8000`.
    pub fn id(&self) -> u16 {
        self.dgi.id()
    }

    /// The value as given (before padding and encryption).
    pub fn value(&self) -> &[u8] {
        self.dgi.value()
    }
}

/// Reads a DGI length field in either form.
fn read_length(r: &mut Reader<'_>, dgi: u16) -> Result<usize, DgiError> {
    let offset = r.offset();
    let truncated = DgiError::TruncatedLength { offset, dgi };
    match r.read_u8().ok_or(truncated.clone())? {
        0xFF => match r.read_u16().ok_or(truncated)? {
            0xFFFF => Err(DgiError::LengthOutOfRange { offset, dgi }),
            len => Ok(usize::from(len)),
        },
        len => Ok(usize::from(len)),
    }
}

/// True for the DGIs CPS 2.0 reserves: `7FF0..7FFE`, `8F01`, `7F01`, `00CF`, `0062`,
/// `9F60..9F6F`. (`7FFF` is the optional completion DGI, not reserved.)
pub const fn is_reserved_id(id: u16) -> bool {
    matches!(
        id,
        0x7FF0..=0x7FFE | 0x8F01 | 0x7F01 | 0x00CF | 0x0062 | 0x9F60..=0x9F6F
    )
}

/// Parses a whole DGI stream (`DGI || length || value`, repeated). A partial DGI at the end is
/// an error; an empty stream is an empty list.
pub fn parse_stream(bytes: &[u8]) -> Result<Vec<Dgi>, DgiError> {
    let mut r = Reader::new(bytes);
    let mut dgis = Vec::new();
    while !r.is_empty() {
        dgis.push(Dgi::read(&mut r)?);
    }
    Ok(dgis)
}

/// Appends every DGI with [`Dgi::encode`].
pub fn encode_stream(dgis: &[Dgi], out: &mut Vec<u8>) {
    for dgi in dgis {
        dgi.encode(out);
    }
}

/// Sum of the value lengths (the Model 2 `appletDataLength`).
pub fn value_len_sum(dgis: &[Dgi]) -> usize {
    dgis.iter().map(|d| d.value.len()).sum()
}

/// Length of [`encode_stream`]'s output (the Model 2 `tlvDataLength` of a stream in short form).
pub fn encoded_len_sum(dgis: &[Dgi]) -> usize {
    dgis.iter().map(Dgi::encoded_len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_forms_switch_at_254() {
        let mut out = Vec::new();
        Dgi::new(0x9102, vec![0; 254])
            .expect("dgi")
            .encode(&mut out);
        assert_eq!(out.get(..3), Some(&[0x91, 0x02, 0xFE][..]));
        out.clear();
        Dgi::new(0x9102, vec![0; 255])
            .expect("dgi")
            .encode(&mut out);
        assert_eq!(out.get(..5), Some(&[0x91, 0x02, 0xFF, 0x00, 0xFF][..]));
    }

    #[test]
    fn reserved_ids() {
        for id in [
            0x7FF0, 0x7FFE, 0x8F01, 0x7F01, 0x00CF, 0x0062, 0x9F60, 0x9F6F,
        ] {
            assert!(is_reserved_id(id), "{id:04X}");
        }
        for id in [0x7FFF, 0x7FEF, 0x9F5F, 0x9F70, 0x0101, 0x8000] {
            assert!(!is_reserved_id(id), "{id:04X}");
        }
    }
}
