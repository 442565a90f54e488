//! BER-TLV as used by EMV (EMV Book 3 Annex B; a strict subset of ISO/IEC 8825-1).
//!
//! * Tags are 1 to 3 bytes. Bit 6 of the first byte marks a constructed object (its value is a
//!   sequence of TLVs); the low five bits `1F` announce subsequent tag bytes, each with bit 8 set
//!   while another byte follows.
//! * Lengths are definite and minimal: `00..7F`, `81 80..FF`, `82 0100..FFFF`. The indefinite
//!   form `80`, the forms `83` and longer, and overlong encodings such as `81 05` are errors.
//! * Constructed objects nest at most [`MAX_DEPTH`] levels deep, so hostile input cannot make the
//!   parser recurse without bound.
//! * Padding: ISO/IEC 7816-4 and EMV allow `00` (and ISO `FF`) bytes before, between and after
//!   TLVs. The strict readers ([`parse_all`], [`Tlv::from_bytes`], [`Reader::new`]) reject them
//!   with [`TlvError::Padding`]: personalization data is generated, so padding there is a bug.
//!   Card responses read from the wire may use [`parse_all_skip_padding`] /
//!   [`Reader::skipping_padding`], which skip `00` and `FF` wherever a tag may start.
//!
//! A strictly parsed input re-encodes to exactly the same bytes. Errors carry byte offsets and
//! tags, never value bytes; [`Tlv`]'s `Debug` shows values only for tags the dictionary
//! ([`crate::domain::tags`]) marks public, and primitive values are zeroized on drop.

use std::fmt;

use zeroize::Zeroize;

use crate::domain::tags;

/// Maximum number of nested constructed objects (the outermost one counts as 1).
pub const MAX_DEPTH: usize = 16;
/// Maximum length of one value: the `82 hi lo` form is the longest one supported.
pub const MAX_VALUE_LEN: usize = 0xFFFF;
/// Maximum number of bytes in a tag.
pub const MAX_TAG_LEN: usize = 3;

/// Builds a [`Tag`] from an integer literal, checked at compile time: `tag!(0x9F1F)`.
///
/// An invalid encoding (for example `0x9F`, which announces a second byte) fails the build.
#[macro_export]
macro_rules! tag {
    ($raw:expr) => {
        const {
            match $crate::domain::tlv::Tag::new($raw) {
                Some(t) => t,
                None => panic!("invalid BER-TLV tag literal"),
            }
        }
    };
}

/// A BER-TLV tag: its 1 to 3 encoded bytes, big-endian in a `u32` (`9F1F` is `0x9F1F`).
///
/// Every value of this type is a valid encoding; build one with [`Tag::new`], [`tag!`] or
/// [`Tag::from_bytes`]. `Display` prints upper-case hex (`9F1F`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(u32);

/// The class bits (b8 b7) of a tag's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagClass {
    /// `00xxxxxx`
    Universal,
    /// `01xxxxxx` (for example `4F`, `5A`, `70`)
    Application,
    /// `10xxxxxx` (for example `82`, `9F1F`)
    ContextSpecific,
    /// `11xxxxxx` (for example the M/Chip `C3`..`DD`)
    Private,
}

impl Tag {
    /// Returns the tag whose encoded bytes are `raw` (big-endian), or `None` when `raw` is not a
    /// valid 1-3 byte encoding: `00` and `FF` first bytes, a first byte announcing subsequent
    /// bytes that are missing, a short-form first byte followed by more bytes, or a middle byte
    /// without bit 8 / a last byte with bit 8.
    pub const fn new(raw: u32) -> Option<Tag> {
        let [top, b1, b2, b3] = raw.to_be_bytes();
        if top != 0 || raw == 0 {
            return None;
        }
        let (first, subsequent): (u8, &[u8]) = if b1 != 0 {
            (b1, &[b2, b3])
        } else if b2 != 0 {
            (b2, &[b3])
        } else {
            (b3, &[])
        };
        if first == 0xFF {
            return None;
        }
        if first & 0x1F != 0x1F {
            return if subsequent.is_empty() {
                Some(Tag(raw))
            } else {
                None
            };
        }
        match subsequent {
            [last] if *last & 0x80 == 0 => Some(Tag(raw)),
            [middle, last] if *middle & 0x80 != 0 && *last & 0x80 == 0 => Some(Tag(raw)),
            _ => None,
        }
    }

    /// Returns the tag encoded by exactly `bytes`, or `None` when they are not one valid tag.
    pub fn from_bytes(bytes: &[u8]) -> Option<Tag> {
        if bytes.is_empty() || bytes.len() > MAX_TAG_LEN {
            return None;
        }
        let raw = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        Tag::new(raw).filter(|t| t.byte_len() == bytes.len())
    }

    /// The encoded bytes as a big-endian integer (`0x9F1F`).
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Number of encoded bytes (1 to 3).
    pub const fn byte_len(self) -> usize {
        if self.0 <= 0xFF {
            1
        } else if self.0 <= 0xFFFF {
            2
        } else {
            3
        }
    }

    /// The first encoded byte (class, constructed bit, tag number or `1F`).
    pub const fn first_byte(self) -> u8 {
        let [_, b1, b2, b3] = self.0.to_be_bytes();
        match self.byte_len() {
            1 => b3,
            2 => b2,
            _ => b1,
        }
    }

    /// True when bit 6 of the first byte is set: the value is a sequence of TLVs.
    pub const fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    /// The class encoded in bits 8 and 7 of the first byte.
    pub const fn class(self) -> TagClass {
        match self.first_byte() >> 6 {
            0 => TagClass::Universal,
            1 => TagClass::Application,
            2 => TagClass::ContextSpecific,
            _ => TagClass::Private,
        }
    }

    /// Appends the encoded tag bytes.
    pub fn encode(self, out: &mut Vec<u8>) {
        let bytes = self.0.to_be_bytes();
        if let Some(encoded) = bytes.get(4 - self.byte_len()..) {
            out.extend_from_slice(encoded);
        }
    }

    /// Reads one tag. In a padding-skipping reader, call sites skip padding first.
    pub fn read(r: &mut Reader<'_>) -> Result<Tag, TlvError> {
        let offset = r.offset();
        let first = r.read_u8().ok_or(TlvError::TruncatedTag { offset })?;
        if first == 0x00 || first == 0xFF {
            return Err(TlvError::Padding {
                offset,
                byte: first,
            });
        }
        let mut raw = u32::from(first);
        if first & 0x1F == 0x1F {
            let mut len = 1;
            loop {
                let b = r.read_u8().ok_or(TlvError::TruncatedTag { offset })?;
                len += 1;
                raw = (raw << 8) | u32::from(b);
                if b & 0x80 == 0 {
                    break;
                }
                if len == MAX_TAG_LEN {
                    return Err(TlvError::TagTooLong { offset });
                }
            }
        }
        Tag::new(raw).ok_or(TlvError::TagTooLong { offset })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$X}", self.0, width = self.byte_len() * 2)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

/// A strict BER-TLV decoding or building error. Offsets are absolute positions in the input
/// given to the outermost reader; no variant carries value bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The input ends inside a tag; `offset` is where the tag starts.
    #[error("truncated tag at offset {offset}")]
    TruncatedTag { offset: usize },
    /// A tag announces more than [`MAX_TAG_LEN`] bytes; `offset` is where it starts.
    #[error("tag at offset {offset} is longer than 3 bytes")]
    TagTooLong { offset: usize },
    /// A `00` or `FF` padding byte where a tag must start (strict readers only).
    #[error("padding byte {byte:02X} at offset {offset} where a tag was expected")]
    Padding { offset: usize, byte: u8 },
    /// The input ends inside a length field; `offset` is where the length starts.
    #[error("truncated length of tag {tag} at offset {offset}")]
    TruncatedLength { offset: usize, tag: Tag },
    /// Indefinite (`80`) or `83`+ length form; `offset` is the length byte.
    #[error(
        "length form {first_byte:02X} of tag {tag} at offset {offset} is not supported (00..7F, 81, 82 only)"
    )]
    UnsupportedLengthForm {
        offset: usize,
        tag: Tag,
        first_byte: u8,
    },
    /// A length that a shorter form could encode (`81 05`, `82 00 FF`); `offset` is the length.
    #[error("non-minimal length of tag {tag} at offset {offset}")]
    NonMinimalLength { offset: usize, tag: Tag },
    /// The value runs past the end of its input or parent; `offset` is where the value starts.
    #[error(
        "value of tag {tag} at offset {offset} needs {needed} bytes but only {available} remain"
    )]
    TruncatedValue {
        offset: usize,
        tag: Tag,
        needed: usize,
        available: usize,
    },
    /// Bytes left after the one TLV that was expected; `offset` is the first extra byte.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    /// A constructed object nested deeper than [`MAX_DEPTH`]; `offset` is where its tag starts.
    #[error("tag {tag} at offset {offset} nests deeper than {MAX_DEPTH} constructed levels")]
    DepthLimit { offset: usize, tag: Tag },
    /// Building: a primitive value was given for a constructed tag.
    #[error("tag {tag} is constructed: it holds TLVs, not a primitive value")]
    NotPrimitive { tag: Tag },
    /// Building: children were given for a primitive tag.
    #[error("tag {tag} is primitive: it cannot hold TLVs")]
    NotConstructed { tag: Tag },
    /// Building: the value (or the encoded children) exceed [`MAX_VALUE_LEN`] bytes.
    #[error("value of tag {tag} is {len} bytes, more than {MAX_VALUE_LEN}")]
    ValueTooLong { tag: Tag, len: usize },
    /// Building: the children already nest [`MAX_DEPTH`] constructed levels.
    #[error("tag {tag} would nest deeper than {MAX_DEPTH} constructed levels")]
    TooDeep { tag: Tag },
}

/// A cursor over input bytes that knows its absolute offset for error messages.
///
/// `Debug` shows the position and the length, never the bytes.
#[derive(Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    skip_padding: bool,
}

impl<'a> Reader<'a> {
    /// A strict reader: padding bytes where a tag must start are errors.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            base: 0,
            skip_padding: false,
        }
    }

    /// A lenient reader that skips `00` and `FF` bytes wherever a tag may start (card
    /// responses). Nested readers inherit the setting.
    pub fn skipping_padding(bytes: &'a [u8]) -> Self {
        Reader {
            skip_padding: true,
            ..Reader::new(bytes)
        }
    }

    /// Absolute offset of the next byte (relative to the outermost input).
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Number of bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or(&[])
    }

    /// The next byte, without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consumes one byte.
    pub fn read_u8(&mut self) -> Option<u8> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes a big-endian `u16`.
    pub fn read_u16(&mut self) -> Option<u16> {
        match self.take(2)? {
            [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }

    /// Consumes exactly `n` bytes, or nothing when fewer remain.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let taken = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(taken)
    }

    /// Consumes `00`/`FF` padding bytes when this reader skips padding; no-op otherwise.
    pub fn skip_padding(&mut self) {
        if self.skip_padding {
            while matches!(self.peek_u8(), Some(0x00 | 0xFF)) {
                self.pos += 1;
            }
        }
    }

    /// A reader over `bytes`, which start at absolute offset `base`, with this reader's padding
    /// setting.
    fn nested(&self, bytes: &'a [u8], base: usize) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            base,
            skip_padding: self.skip_padding,
        }
    }

    /// Fails with [`TlvError::TrailingBytes`] unless every byte has been read.
    pub fn expect_end(&self) -> Result<(), TlvError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(TlvError::TrailingBytes {
                offset: self.offset(),
                count,
            }),
        }
    }
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("offset", &self.offset())
            .field("remaining", &self.remaining())
            .finish()
    }
}

/// Appends a length in the minimal definite form (`00..7F`, `81 xx`, `82 xx xx`).
pub fn encode_length(len: u16, out: &mut Vec<u8>) {
    write_length(usize::from(len), out);
}

/// Number of bytes the minimal length field for `len` takes.
pub const fn length_field_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else if len <= 0xFF {
        2
    } else {
        3
    }
}

/// Writes `len`, which callers keep at most [`MAX_VALUE_LEN`].
fn write_length(len: usize, out: &mut Vec<u8>) {
    let [.., hi, lo] = len.to_be_bytes();
    match length_field_len(len) {
        1 => out.push(lo),
        2 => out.extend_from_slice(&[0x81, lo]),
        _ => out.extend_from_slice(&[0x82, hi, lo]),
    }
}

/// Reads a definite, minimal length field of `tag`.
fn read_length(r: &mut Reader<'_>, tag: Tag) -> Result<usize, TlvError> {
    let offset = r.offset();
    let truncated = TlvError::TruncatedLength { offset, tag };
    let first = r.read_u8().ok_or(truncated.clone())?;
    let (len, minimum) = match first {
        0x00..=0x7F => return Ok(usize::from(first)),
        0x81 => (usize::from(r.read_u8().ok_or(truncated)?), 0x80),
        0x82 => (usize::from(r.read_u16().ok_or(truncated)?), 0x100),
        _ => {
            return Err(TlvError::UnsupportedLengthForm {
                offset,
                tag,
                first_byte: first,
            });
        }
    };
    if len < minimum {
        return Err(TlvError::NonMinimalLength { offset, tag });
    }
    Ok(len)
}

/// One TLV read without copying: its tag and a borrowed value (children not decoded).
///
/// `Debug` shows the tag, offsets and length, never the value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawTlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// Absolute offset of the tag's first byte.
    pub offset: usize,
    /// Absolute offset of the value's first byte.
    pub value_offset: usize,
    /// The value bytes (for a constructed tag, the encoded children).
    pub value: &'a [u8],
}

impl<'a> RawTlv<'a> {
    /// Reads one tag, length and value; skips leading padding in a padding-skipping reader.
    /// Constructed values are not checked here (see [`validate_all`]).
    pub fn read(r: &mut Reader<'a>) -> Result<RawTlv<'a>, TlvError> {
        r.skip_padding();
        let offset = r.offset();
        let tag = Tag::read(r)?;
        let len = read_length(r, tag)?;
        let value_offset = r.offset();
        let available = r.remaining();
        let value = r.take(len).ok_or(TlvError::TruncatedValue {
            offset: value_offset,
            tag,
            needed: len,
            available,
        })?;
        Ok(RawTlv {
            tag,
            offset,
            value_offset,
            value,
        })
    }
}

impl fmt::Debug for RawTlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawTlv")
            .field("tag", &self.tag)
            .field("offset", &self.offset)
            .field("len", &self.value.len())
            .finish()
    }
}

/// Checks, without allocating, that `bytes` are a sequence of valid TLVs (strict: no padding),
/// constructed values included.
pub fn validate_all(bytes: &[u8]) -> Result<(), TlvError> {
    validate_children(&mut Reader::new(bytes), 1)
}

/// Checks, without allocating, that `bytes` are exactly one valid TLV (strict), and returns it.
pub fn validate_one(bytes: &[u8]) -> Result<RawTlv<'_>, TlvError> {
    let mut r = Reader::new(bytes);
    let raw = validate_at_depth(&mut r, 1)?;
    r.expect_end()?;
    Ok(raw)
}

fn validate_children(r: &mut Reader<'_>, depth: usize) -> Result<(), TlvError> {
    loop {
        r.skip_padding();
        if r.is_empty() {
            return Ok(());
        }
        validate_at_depth(r, depth)?;
    }
}

fn validate_at_depth<'a>(r: &mut Reader<'a>, depth: usize) -> Result<RawTlv<'a>, TlvError> {
    let raw = RawTlv::read(r)?;
    if raw.tag.is_constructed() {
        check_depth(&raw, depth)?;
        validate_children(&mut r.nested(raw.value, raw.value_offset), depth + 1)?;
    }
    Ok(raw)
}

fn check_depth(raw: &RawTlv<'_>, depth: usize) -> Result<(), TlvError> {
    if depth > MAX_DEPTH {
        return Err(TlvError::DepthLimit {
            offset: raw.offset,
            tag: raw.tag,
        });
    }
    Ok(())
}

/// The content of a [`Tlv`].
#[derive(Clone, PartialEq, Eq)]
enum Body {
    Primitive(Vec<u8>),
    Constructed(Vec<Tlv>),
}

/// A decoded BER-TLV object: a tag with either a primitive value or child objects.
///
/// Invariants (kept by every constructor): primitive tags hold values, constructed tags hold
/// children, every value fits [`MAX_VALUE_LEN`], and nesting stays within [`MAX_DEPTH`]; so
/// encoding cannot fail. Primitive values are zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Tlv {
    tag: Tag,
    body: Body,
}

impl Drop for Tlv {
    fn drop(&mut self) {
        if let Body::Primitive(value) = &mut self.body {
            value.zeroize();
        }
    }
}

impl Tlv {
    /// A primitive object. Fails when `tag` is constructed or the value is too long.
    pub fn primitive(tag: Tag, value: impl Into<Vec<u8>>) -> Result<Tlv, TlvError> {
        let mut value = value.into();
        let error = if tag.is_constructed() {
            TlvError::NotPrimitive { tag }
        } else if value.len() > MAX_VALUE_LEN {
            TlvError::ValueTooLong {
                tag,
                len: value.len(),
            }
        } else {
            return Ok(Tlv {
                tag,
                body: Body::Primitive(value),
            });
        };
        value.zeroize();
        Err(error)
    }

    /// A constructed object. Fails when `tag` is primitive, the encoded children are longer than
    /// [`MAX_VALUE_LEN`], or they already nest [`MAX_DEPTH`] constructed levels.
    pub fn constructed(tag: Tag, children: Vec<Tlv>) -> Result<Tlv, TlvError> {
        if !tag.is_constructed() {
            return Err(TlvError::NotConstructed { tag });
        }
        if children
            .iter()
            .map(Tlv::constructed_depth)
            .max()
            .unwrap_or(0)
            >= MAX_DEPTH
        {
            return Err(TlvError::TooDeep { tag });
        }
        let len = children.iter().map(Tlv::encoded_len).sum();
        if len > MAX_VALUE_LEN {
            return Err(TlvError::ValueTooLong { tag, len });
        }
        Ok(Tlv {
            tag,
            body: Body::Constructed(children),
        })
    }

    /// Reads one object (strict unless `r` skips padding), checking nested objects.
    pub fn read(r: &mut Reader<'_>) -> Result<Tlv, TlvError> {
        Tlv::read_at_depth(r, 1)
    }

    /// Parses exactly one object from `bytes` (strict); extra bytes are an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tlv, TlvError> {
        let mut r = Reader::new(bytes);
        let tlv = Tlv::read(&mut r)?;
        r.expect_end()?;
        Ok(tlv)
    }

    fn read_at_depth(r: &mut Reader<'_>, depth: usize) -> Result<Tlv, TlvError> {
        let raw = RawTlv::read(r)?;
        let body = if raw.tag.is_constructed() {
            check_depth(&raw, depth)?;
            let mut inner = r.nested(raw.value, raw.value_offset);
            Body::Constructed(read_children(&mut inner, depth + 1)?)
        } else {
            Body::Primitive(raw.value.to_vec())
        };
        Ok(Tlv { tag: raw.tag, body })
    }

    /// The tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// True for a constructed object.
    pub fn is_constructed(&self) -> bool {
        matches!(self.body, Body::Constructed(_))
    }

    /// The value of a primitive object; `None` for a constructed one.
    pub fn value(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Primitive(value) => Some(value),
            Body::Constructed(_) => None,
        }
    }

    /// The children of a constructed object; `None` for a primitive one.
    pub fn children(&self) -> Option<&[Tlv]> {
        match &self.body {
            Body::Primitive(_) => None,
            Body::Constructed(children) => Some(children),
        }
    }

    /// Length of the value field (for a constructed object, of its encoded children).
    pub fn value_len(&self) -> usize {
        match &self.body {
            Body::Primitive(value) => value.len(),
            Body::Constructed(children) => children.iter().map(Tlv::encoded_len).sum(),
        }
    }

    /// Length of the whole encoding: tag, length field and value.
    pub fn encoded_len(&self) -> usize {
        let len = self.value_len();
        self.tag.byte_len() + length_field_len(len) + len
    }

    /// Appends the encoding (minimal lengths).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.tag.encode(out);
        write_length(self.value_len(), out);
        self.encode_value(out);
    }

    /// Appends only the value field (for a constructed object, its encoded children), as hashed
    /// for offline data authentication (EMV Book 2: template `70` content of SFI 1..10 records).
    pub fn encode_value(&self, out: &mut Vec<u8>) {
        match &self.body {
            Body::Primitive(value) => out.extend_from_slice(value),
            Body::Constructed(children) => encode_all(children, out),
        }
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// The first object with `tag`, searching this object and then its descendants depth-first.
    pub fn find(&self, tag: Tag) -> Option<&Tlv> {
        if self.tag == tag {
            return Some(self);
        }
        find(self.children().unwrap_or(&[]), tag)
    }

    /// Number of nested constructed levels: 0 for a primitive object.
    fn constructed_depth(&self) -> usize {
        match &self.body {
            Body::Primitive(_) => 0,
            Body::Constructed(children) => {
                1 + children
                    .iter()
                    .map(Tlv::constructed_depth)
                    .max()
                    .unwrap_or(0)
            }
        }
    }
}

impl fmt::Debug for Tlv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tlv");
        d.field("tag", &self.tag);
        match &self.body {
            Body::Primitive(value) => {
                d.field("len", &value.len());
                if tags::value_may_be_shown(self.tag) {
                    d.field("value", &format_args!("{}", hex::encode_upper(value)));
                } else {
                    d.field("value", &format_args!("<redacted>"));
                }
            }
            Body::Constructed(children) => {
                d.field("children", children);
            }
        }
        d.finish()
    }
}

fn read_children(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Tlv>, TlvError> {
    let mut children = Vec::new();
    loop {
        r.skip_padding();
        if r.is_empty() {
            return Ok(children);
        }
        children.push(Tlv::read_at_depth(r, depth)?);
    }
}

/// Parses a whole buffer as a sequence of TLVs (strict: padding and any partial object at the
/// end are errors). An empty buffer is an empty sequence.
pub fn parse_all(bytes: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    read_children(&mut Reader::new(bytes), 1)
}

/// Like [`parse_all`] but skips `00`/`FF` padding before, between and after objects, at every
/// nesting level (data read from cards).
pub fn parse_all_skip_padding(bytes: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    read_children(&mut Reader::skipping_padding(bytes), 1)
}

/// Appends the encodings of `tlvs` in order.
pub fn encode_all(tlvs: &[Tlv], out: &mut Vec<u8>) {
    for tlv in tlvs {
        tlv.encode(out);
    }
}

/// The first object with `tag` in `tlvs`, searching each object and its descendants in order.
pub fn find(tlvs: &[Tlv], tag: Tag) -> Option<&Tlv> {
    tlvs.iter().find_map(|tlv| tlv.find(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_new_accepts_only_valid_encodings() {
        assert_eq!(Tag::new(0x9F1F).map(Tag::raw), Some(0x9F1F));
        assert_eq!(Tag::new(0x9F8101).map(Tag::byte_len), Some(3));
        for bad in [
            0, 0x9F, 0x1F, 0xFF, 0x5A01, 0x9F80, 0x9F0101, 0x9F818101, 0xFF01,
        ] {
            assert_eq!(Tag::new(bad), None, "{bad:X}");
        }
    }

    #[test]
    fn tag_from_bytes_rejects_leading_zero_bytes() {
        assert_eq!(Tag::from_bytes(&[0x00, 0x5A]), None);
        assert_eq!(Tag::from_bytes(&[0x5F, 0x20]), Some(tag!(0x5F20)));
        assert_eq!(Tag::from_bytes(&[]), None);
    }

    #[test]
    fn write_length_uses_minimal_forms() {
        let mut out = Vec::new();
        for len in [0, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF] {
            write_length(len, &mut out);
        }
        assert_eq!(
            out,
            [
                0x00, 0x7F, 0x81, 0x80, 0x81, 0xFF, 0x82, 0x01, 0x00, 0x82, 0xFF, 0xFF
            ]
        );
    }

    #[test]
    fn nested_reader_reports_absolute_offsets() {
        let r = Reader::new(&[1, 2, 3]);
        let inner = r.nested(&[9], 7);
        assert_eq!(inner.offset(), 7);
        assert_eq!(format!("{r:?}"), "Reader { offset: 0, remaining: 3 }");
    }
}
