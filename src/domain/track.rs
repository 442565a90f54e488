//! Magnetic stripe tracks (ISO/IEC 7813 tracks 1 and 2, ISO 4909 track 3): building from order
//! data and product patterns, validating tracks given in orders, and masking.
//!
//! - Track 1 `%B<PAN>^<NAME>^<YYMM><SC><DD>?`, track 2 `;<PAN>=<YYMM><SC><DD>?`, track 3
//!   `;<PAN>=<BODY>?`.
//! - ISO 7813 / ISO 4909 limits of 79 / 40 / 107 characters count the start sentinel, the end
//!   sentinel and the LRC the encoder adds, so a track's text (with sentinels) holds at most
//!   78 / 39 / 106 characters; the encoder agrees (`msr206`).
//!
//! A [`Track`] knows where its PAN and secret values sit, so its masked form hides exactly those.

use std::fmt;
use std::ops::Range;

use super::fields::{Cvv, EncodedName, Pan, Pvv, ServiceCode, Yymm, is_track1_char};
use super::mask;
use super::product::{Pattern, Segment};

/// Track number 1, 2 or 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TrackNo {
    /// Track 1 (IATA, alphanumeric).
    T1,
    /// Track 2 (ABA, numeric).
    T2,
    /// Track 3 (THRIFT, numeric).
    T3,
}

impl TrackNo {
    /// 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            Self::T1 => 1,
            Self::T2 => 2,
            Self::T3 => 3,
        }
    }

    /// Maximum characters of the text with sentinels: the ISO limit less the LRC.
    pub fn max_len(self) -> usize {
        self.iso_len() - 1
    }

    /// The ISO 7813 / ISO 4909 limit, counting sentinels and the LRC: 79, 40, 107.
    pub fn iso_len(self) -> usize {
        match self {
            Self::T1 => 79,
            Self::T2 => 40,
            Self::T3 => 107,
        }
    }

    /// Start sentinel.
    pub fn start_sentinel(self) -> char {
        match self {
            Self::T1 => '%',
            Self::T2 | Self::T3 => ';',
        }
    }

    /// True when `c` is in the track's character set.
    pub fn allows(self, c: char) -> bool {
        match self {
            Self::T1 => is_track1_char(c),
            Self::T2 | Self::T3 => ('\x30'..='\x3F').contains(&c),
        }
    }

    /// The order's JSON key (`track1`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::T1 => "track1",
            Self::T2 => "track2",
            Self::T3 => "track3",
        }
    }
}

/// What a masked span of a track holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The PAN: first 6 and last 4 digits shown.
    Pan,
    /// A secret (CVV, PVV, or discretionary data of unknown layout): all `*`.
    Secret,
}

/// A track with sentinels, plus where its sensitive parts are. `Debug` and `Display` show the
/// masked form; [`Track::reveal`] gives the clear text.
#[derive(Clone, PartialEq, Eq)]
pub struct Track {
    no: TrackNo,
    text: String,
    spans: Vec<(Range<usize>, SpanKind)>,
}

impl Drop for Track {
    fn drop(&mut self) {
        super::wipe::wipe_string(&mut self.text);
    }
}

/// Why a track is not valid: the rule only, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    #[error("must start with the start sentinel '{0}'")]
    StartSentinel(char),
    #[error("must end with the end sentinel '?'")]
    EndSentinel,
    #[error("position {0}: character is not in the track {1} character set")]
    Charset(usize, u8),
    #[error("position {0}: sentinel inside the track")]
    InnerSentinel(usize),
    #[error(
        "is {len} characters with sentinels, more than the {max} that fit on track {no} ({iso} with the LRC)"
    )]
    TooLong {
        no: u8,
        len: usize,
        max: usize,
        iso: usize,
    },
    #[error("does not have the layout {0}")]
    Layout(&'static str),
    #[error("PAN does not match encryptedData.pan")]
    PanMismatch,
    #[error("expiry does not match encryptedData.exp")]
    ExpiryMismatch,
}

impl Track {
    /// The track number.
    pub fn no(&self) -> TrackNo {
        self.no
    }

    /// The clear track text with sentinels. Callers must not log or display it.
    pub fn reveal(&self) -> &str {
        &self.text
    }

    /// The body without sentinels, as MSR206-family encoders expect it.
    pub fn body(&self) -> &str {
        let end = self.text.len().saturating_sub(1);
        self.text.get(1..end).unwrap_or("")
    }

    /// Number of characters including sentinels.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Never true for a valid track.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The masked form: PAN to first 6 / last 4, secrets to `*`.
    pub fn masked(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        self.masked_pieces(&mut |s| out.push_str(s));
        out
    }

    /// [`Track::masked`] piece by piece, in order (for writers that escape into their own
    /// buffer: no string of its own).
    pub fn masked_pieces(&self, push: &mut dyn FnMut(&str)) {
        let mut pos = 0;
        for (range, kind) in &self.spans {
            push(&self.text[pos..range.start]);
            let part = &self.text[range.clone()];
            match kind {
                SpanKind::Pan => mask::masked_pan_pieces(part, push),
                SpanKind::Secret => mask::stars_pieces(part.len(), push),
            }
            pos = range.end;
        }
        push(&self.text[pos..]);
    }

    /// Appends [`Track::masked`] as bytes to `out`: the text copied once and its spans masked
    /// in place (no string of its own, no piece-by-piece copies).
    pub fn push_masked_bytes(&self, out: &mut Vec<u8>) {
        if !self.text.is_ascii() {
            self.masked_pieces(&mut |piece| out.extend_from_slice(piece.as_bytes()));
            return;
        }
        let start = out.len();
        out.extend_from_slice(self.text.as_bytes());
        let text = &mut out[start..];
        for (range, kind) in &self.spans {
            match kind {
                SpanKind::Pan => mask::mask_pan_in_place(&mut text[range.clone()]),
                SpanKind::Secret => text[range.clone()].fill(b'*'),
            }
        }
    }

    /// Validates a track given in an order: sentinels, character set, length, layout, and that its
    /// PAN (and expiry, where present) match the order's.
    pub fn from_order(
        no: TrackNo,
        text: &str,
        pan: Option<&Pan>,
        exp: Option<Yymm>,
    ) -> Result<Self, TrackError> {
        check_frame(no, text)?;
        let first = if no == TrackNo::T1 { 2 } else { 1 };
        if no == TrackNo::T1 && text.as_bytes().get(1) != Some(&b'B') {
            return Err(TrackError::Layout("%B<PAN>^<NAME>^<YYMM><SC><DD>?"));
        }
        let sep = if no == TrackNo::T1 { '^' } else { '=' };
        let pan_end = text[first..]
            .find(sep)
            .map(|i| i + first)
            .ok_or(TrackError::Layout(match no {
                TrackNo::T1 => "%B<PAN>^<NAME>^<YYMM><SC><DD>?",
                TrackNo::T2 => ";<PAN>=<YYMM><SC><DD>?",
                TrackNo::T3 => ";<PAN>=<BODY>?",
            }))?;
        let track_pan = &text[first..pan_end];
        if !(12..=19).contains(&track_pan.len()) || !track_pan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TrackError::Layout(
                "a PAN of 12-19 digits after the start sentinel",
            ));
        }
        if let Some(p) = pan
            && p.reveal() != track_pan
        {
            return Err(TrackError::PanMismatch);
        }
        // Where the expiry starts, and with it the secret discretionary data.
        let exp_start = match no {
            TrackNo::T1 => text[pan_end + 1..]
                .find('^')
                .map(|i| pan_end + 1 + i + 1)
                .ok_or(TrackError::Layout("%B<PAN>^<NAME>^<YYMM><SC><DD>?"))?,
            TrackNo::T2 => pan_end + 1,
            TrackNo::T3 => pan_end + 1,
        };
        // The track 1 name stays visible when masked, so it must not carry a card number
        // (found by fuzzing: a PAN in the name field showed in clear in the masked track).
        if no == TrackNo::T1 && longest_digit_run(&text[pan_end + 1..exp_start]) >= 12 {
            return Err(TrackError::Layout(
                "a name field without a run of 12 or more digits",
            ));
        }
        let end = text.len() - 1;
        let mut spans = vec![(first..pan_end, SpanKind::Pan)];
        if no == TrackNo::T3 {
            if exp_start < end {
                spans.push((exp_start..end, SpanKind::Secret));
            }
        } else {
            if let (Some(e), Some(yymm)) = (exp, text.get(exp_start..exp_start + 4))
                && e.to_string() != yymm
            {
                return Err(TrackError::ExpiryMismatch);
            }
            // Expiry and service code stay visible; everything after is of unknown layout.
            let dd_start = (exp_start + 7).min(end);
            if dd_start < end {
                spans.push((dd_start..end, SpanKind::Secret));
            }
        }
        Ok(Self {
            no,
            text: text.to_string(),
            spans,
        })
    }

    /// The cardholder name field of a track 1 (`%B<PAN>^<NAME>^...`), if it has one.
    pub fn name_field(&self) -> Option<&str> {
        if self.no != TrackNo::T1 {
            return None;
        }
        let mut parts = self.text.split('^');
        parts.next()?;
        let name = parts.next()?;
        parts.next().map(|_| name)
    }
}

impl fmt::Debug for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Track{}({})", self.no.number(), self.masked())
    }
}

impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Length of the longest run of ASCII digits in `s`.
fn longest_digit_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Checks sentinels, character set and maximum length (positions and lengths in characters).
fn check_frame(no: TrackNo, text: &str) -> Result<(), TrackError> {
    // Every valid track is ASCII: then bytes are characters, and no decoding is needed.
    let ascii = text.is_ascii();
    let len = if ascii {
        text.len()
    } else {
        text.chars().count()
    };
    if len > no.max_len() {
        return Err(TrackError::TooLong {
            no: no.number(),
            len,
            max: no.max_len(),
            iso: no.iso_len(),
        });
    }
    if !text.starts_with(no.start_sentinel()) {
        return Err(TrackError::StartSentinel(no.start_sentinel()));
    }
    if len < 2 || !text.ends_with('?') {
        return Err(TrackError::EndSentinel);
    }
    if ascii {
        if inner_is_clean(no, &text.as_bytes()[1..len - 1]) {
            return Ok(());
        }
        check_chars(no, text.bytes().map(char::from), len)
    } else {
        check_chars(no, text.chars(), len)
    }
}

/// Whether every byte between the sentinels is in the track's character set and is no
/// sentinel (no early exit: the loop vectorizes; a track that fails is checked again by
/// [`check_chars`] for the error).
fn inner_is_clean(no: TrackNo, inner: &[u8]) -> bool {
    let (lo, hi) = match no {
        TrackNo::T1 => (0x20, 0x5F),
        TrackNo::T2 | TrackNo::T3 => (0x30, 0x3F),
    };
    inner.iter().fold(true, |ok, &b| {
        ok & (lo..=hi).contains(&b) & (b != b'?') & (b != b';') & (b != b'%')
    })
}

/// The character set and inner-sentinel rules over a track's `len` characters.
fn check_chars(
    no: TrackNo,
    chars: impl Iterator<Item = char>,
    len: usize,
) -> Result<(), TrackError> {
    let start = no.start_sentinel();
    for (i, c) in chars.enumerate() {
        if !no.allows(c) {
            return Err(TrackError::Charset(i + 1, no.number()));
        }
        let inner = i > 0 && i < len - 1;
        if inner && (c == '?' || c == start || (no == TrackNo::T1 && c == ';')) {
            return Err(TrackError::InnerSentinel(i + 1));
        }
    }
    Ok(())
}

/// The three tracks of a card (prepared, or given in an order); track 3 only when there is one.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    /// Track 1.
    pub track1: Option<Track>,
    /// Track 2.
    pub track2: Option<Track>,
    /// Track 3.
    pub track3: Option<Track>,
}

impl Tracks {
    /// The track with this number, if present.
    pub fn get(&self, no: TrackNo) -> Option<&Track> {
        match no {
            TrackNo::T1 => self.track1.as_ref(),
            TrackNo::T2 => self.track2.as_ref(),
            TrackNo::T3 => self.track3.as_ref(),
        }
    }
}

/// The secret values a pattern may inject; `None` where the pattern does not need it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Injected<'a> {
    /// CVV1.
    pub cvv: Option<&'a Cvv>,
    /// PVV.
    pub pvv: Option<&'a Pvv>,
}

/// A pattern needed a value that was not supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingValue {
    #[error("the pattern needs a CVV")]
    Cvv,
    #[error("the pattern needs a PVV")]
    Pvv,
}

/// Builds tracks; reuses one buffer per track.
struct Builder {
    no: TrackNo,
    text: String,
    spans: Vec<(Range<usize>, SpanKind)>,
}

impl Builder {
    fn new(no: TrackNo) -> Self {
        let mut text = String::with_capacity(no.max_len());
        text.push(no.start_sentinel());
        Self {
            no,
            text,
            spans: Vec::with_capacity(4),
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn push_yymm(&mut self, exp: Yymm) {
        self.push_ascii(&exp.digits());
    }

    /// ASCII digits (expiry, service code, secrets), without a UTF-8 check of their own.
    fn push_ascii(&mut self, digits: &[u8]) {
        self.text.extend(digits.iter().map(|&d| char::from(d)));
    }

    fn push_secret(&mut self, digits: &[u8]) {
        let start = self.text.len();
        self.push_ascii(digits);
        self.spans.push((start..self.text.len(), SpanKind::Secret));
    }

    fn push_span(&mut self, s: &str, kind: SpanKind) {
        let start = self.text.len();
        self.text.push_str(s);
        self.spans.push((start..self.text.len(), kind));
    }

    fn pattern(&mut self, pattern: &Pattern, values: Injected<'_>) -> Result<(), MissingValue> {
        for seg in &pattern.segments {
            match seg {
                Segment::Literal(l) => self.push(l),
                Segment::Cvv => {
                    self.push_secret(values.cvv.ok_or(MissingValue::Cvv)?.reveal_digits());
                }
                Segment::Pvv => {
                    self.push_secret(values.pvv.ok_or(MissingValue::Pvv)?.reveal_digits());
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Track, TrackError> {
        self.text.push('?');
        check_frame(self.no, &self.text)?;
        Ok(Track {
            no: self.no,
            text: std::mem::take(&mut self.text),
            spans: std::mem::take(&mut self.spans),
        })
    }
}

/// A track could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Missing(#[from] MissingValue),
    #[error(transparent)]
    Invalid(#[from] TrackError),
}

/// Builds track 1: `%B<PAN>^<NAME>^<YYMM><SC><DD>?`.
pub fn build_track1(
    pan: &Pan,
    name: &EncodedName,
    exp: Yymm,
    sc: ServiceCode,
    dd: &Pattern,
    values: Injected<'_>,
) -> Result<Track, BuildError> {
    let mut b = Builder::new(TrackNo::T1);
    b.push("B");
    b.push_span(pan.reveal(), SpanKind::Pan);
    b.push("^");
    b.push(name.as_str());
    b.push("^");
    b.push_yymm(exp);
    b.push_ascii(sc.digits());
    b.pattern(dd, values)?;
    Ok(b.finish()?)
}

/// Builds track 2: `;<PAN>=<YYMM><SC><DD>?`.
pub fn build_track2(
    pan: &Pan,
    exp: Yymm,
    sc: ServiceCode,
    dd: &Pattern,
    values: Injected<'_>,
) -> Result<Track, BuildError> {
    let mut b = Builder::new(TrackNo::T2);
    b.push_span(pan.reveal(), SpanKind::Pan);
    b.push("=");
    b.push_yymm(exp);
    b.push_ascii(sc.digits());
    b.pattern(dd, values)?;
    Ok(b.finish()?)
}

/// Builds track 3: `;<PAN>=<BODY>?`. The body is product data (not secret).
pub fn build_track3(pan: &Pan, body: &str) -> Result<Track, BuildError> {
    let mut b = Builder::new(TrackNo::T3);
    b.push_span(pan.reveal(), SpanKind::Pan);
    b.push("=");
    b.push(body);
    Ok(b.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::PatternTrack;

    fn pan() -> Pan {
        Pan::parse("5413330089012345").expect("pan")
    }

    #[test]
    fn builds_the_seed_example_and_masks_it() {
        let cvv = Cvv::parse("123").expect("cvv");
        let values = Injected {
            cvv: Some(&cvv),
            pvv: None,
        };
        let exp = Yymm::parse("2906").expect("exp");
        let sc = ServiceCode::parse("201").expect("sc");
        let p1 = Pattern::parse("000000|cvv|000000", PatternTrack::Track1).expect("p1");
        let name = EncodedName::parse("DOE/ALICE").expect("name");
        let t1 = build_track1(&pan(), &name, exp, sc, &p1, values).expect("t1");
        assert_eq!(
            t1.reveal(),
            "%B5413330089012345^DOE/ALICE^2906201000000123000000?"
        );
        assert_eq!(
            t1.masked(),
            "%B541333******2345^DOE/ALICE^2906201000000***000000?"
        );
        assert_eq!(t1.name_field(), Some("DOE/ALICE"));
        let p2 = Pattern::parse("00000|cvv|00000", PatternTrack::Track2).expect("p2");
        let t2 = build_track2(&pan(), exp, sc, &p2, values).expect("t2");
        assert_eq!(t2.reveal(), ";5413330089012345=29062010000012300000?");
        assert_eq!(
            format!("{t2:?}"),
            "Track2(;541333******2345=290620100000***00000?)"
        );
        assert_eq!(t2.body(), "5413330089012345=29062010000012300000");
    }

    /// The rules as first written, character by character: the reference for the fast path.
    fn check_frame_by_chars(no: TrackNo, text: &str) -> Result<(), TrackError> {
        let len = text.chars().count();
        if len > no.max_len() {
            return Err(TrackError::TooLong {
                no: no.number(),
                len,
                max: no.max_len(),
                iso: no.iso_len(),
            });
        }
        if !text.starts_with(no.start_sentinel()) {
            return Err(TrackError::StartSentinel(no.start_sentinel()));
        }
        if len < 2 || !text.ends_with('?') {
            return Err(TrackError::EndSentinel);
        }
        for (i, c) in text.chars().enumerate() {
            if !no.allows(c) {
                return Err(TrackError::Charset(i + 1, no.number()));
            }
            let inner = i > 0 && i < len - 1;
            if inner && (c == '?' || c == no.start_sentinel() || (no == TrackNo::T1 && c == ';')) {
                return Err(TrackError::InnerSentinel(i + 1));
            }
        }
        Ok(())
    }

    /// Every one-character change of a valid track, and truncations, get the same verdict
    /// from the byte fast path as from the character-by-character rules.
    #[test]
    fn the_frame_check_agrees_with_the_rules_character_by_character() {
        let tracks = [
            (
                TrackNo::T1,
                "%B5413330089012345^DOE/ALICE^2906201000000123000000?",
            ),
            (TrackNo::T2, ";5413330089012345=29062010000012300000?"),
            (TrackNo::T3, ";5413330089012345=0123456789?"),
        ];
        let swaps = [
            '?', ';', '%', '^', '=', 'a', 'A', ' ', '_', '`', '0', 'é', '\u{7f}', '\n',
        ];
        let mut checked = 0;
        for (no, text) in tracks {
            let chars: Vec<char> = text.chars().collect();
            for at in 0..chars.len() {
                for swap in swaps {
                    let mut changed = chars.clone();
                    changed[at] = swap;
                    let s: String = changed.into_iter().collect();
                    assert_eq!(
                        check_frame(no, &s),
                        check_frame_by_chars(no, &s),
                        "{no:?} {at}"
                    );
                    checked += 1;
                }
                let cut: String = chars[..at].iter().collect();
                assert_eq!(check_frame(no, &cut), check_frame_by_chars(no, &cut));
            }
            assert_eq!(check_frame(no, text), Ok(()));
        }
        assert!(checked > 1000);
    }

    /// The masked bytes written in place are the masked text, for built and given tracks
    /// and PANs of every length.
    #[test]
    fn masked_bytes_are_the_masked_text() {
        let cvv = Cvv::parse("123").expect("cvv");
        let values = Injected {
            cvv: Some(&cvv),
            pvv: None,
        };
        let exp = Yymm::parse("2906").expect("exp");
        let sc = ServiceCode::parse("201").expect("sc");
        let p1 = Pattern::parse("000000|cvv|000000", PatternTrack::Track1).expect("p1");
        let name = EncodedName::parse("O\"NEIL\\/ANN").expect("name");
        let mut tracks = vec![build_track1(&pan(), &name, exp, sc, &p1, values).expect("t1")];
        let digits = "4761739001010010123";
        for n in 12..=19 {
            let text = format!(";{}=2906201123?", &digits[..n]);
            tracks.push(Track::from_order(TrackNo::T2, &text, None, None).expect("t2"));
            let text = format!(";{}=01234?", &digits[..n]);
            tracks.push(Track::from_order(TrackNo::T3, &text, None, None).expect("t3"));
        }
        for t in &tracks {
            let mut out = b">".to_vec();
            t.push_masked_bytes(&mut out);
            assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                format!(">{}", t.masked())
            );
        }
        assert_eq!(tracks[1].masked(), ";47******0101=2906201***?");
    }

    #[test]
    fn missing_injected_value_is_an_error() {
        let p2 = Pattern::parse("cvv", PatternTrack::Track2).expect("p2");
        let exp = Yymm::parse("2906").expect("exp");
        let sc = ServiceCode::parse("201").expect("sc");
        assert_eq!(
            build_track2(&pan(), exp, sc, &p2, Injected::default()),
            Err(BuildError::Missing(MissingValue::Cvv))
        );
    }

    #[test]
    fn order_tracks_are_checked() {
        let exp = Yymm::parse("2906").ok();
        let ok = Track::from_order(
            TrackNo::T2,
            ";5413330089012345=29062010000012300000?",
            Some(&pan()),
            exp,
        )
        .expect("valid");
        assert_eq!(ok.masked(), ";541333******2345=2906201*************?");
        assert_eq!(
            Track::from_order(TrackNo::T2, "5413330089012345=2906201?", None, None),
            Err(TrackError::StartSentinel(';'))
        );
        assert_eq!(
            Track::from_order(
                TrackNo::T2,
                ";5413330089012346=2906201?",
                Some(&pan()),
                None
            ),
            Err(TrackError::PanMismatch)
        );
        assert_eq!(
            Track::from_order(TrackNo::T2, ";5413330089012345=2907201?", Some(&pan()), exp),
            Err(TrackError::ExpiryMismatch)
        );
        assert!(matches!(
            Track::from_order(TrackNo::T2, ";5413330089012345=2906201A?", None, None),
            Err(TrackError::Charset(26, 2))
        ));
        let long = format!(";5413330089012345={}?", "0".repeat(30));
        assert!(matches!(
            Track::from_order(TrackNo::T2, &long, None, None),
            Err(TrackError::TooLong { .. })
        ));
    }
}
