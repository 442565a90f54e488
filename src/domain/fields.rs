//! Validated card data fields. Sensitive ones (PAN, CVV, PVV, PIN, PIN block) mask themselves in
//! `Debug` and `Display` and zeroize on drop; their clear form is reachable only through an
//! explicitly named method.
//!
//! Parse errors are rules (`month 13 is not 01-12`) without the offending value when it is
//! sensitive; the caller adds the field path.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::mask;

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The rule text of a Luhn failure.
pub const LUHN_RULE: &str = "Luhn check digit is wrong";

/// Luhn (mod 10) check over a string of ASCII digits, check digit included.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// A primary account number: 12 to 19 digits. The Luhn check is separate ([`Pan::luhn_ok`]) because
/// whether a failure is an error or a warning is a product rule (test products may allow it).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pan {
    digits: String,
}

impl Pan {
    /// Parses a PAN: 12-19 digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !all_digits(s) {
            return Err("must contain digits only".into());
        }
        if !(12..=19).contains(&s.len()) {
            return Err(format!("must be 12-19 digits, got {}", s.len()));
        }
        Ok(Self { digits: s.into() })
    }

    /// Parses a PAN and requires a valid Luhn check digit.
    pub fn parse_strict(s: &str) -> Result<Self, String> {
        let pan = Self::parse(s)?;
        if pan.luhn_ok() {
            Ok(pan)
        } else {
            Err(LUHN_RULE.into())
        }
    }

    /// True when the last digit is a valid Luhn check digit.
    pub fn luhn_ok(&self) -> bool {
        luhn_valid(&self.digits)
    }

    /// The clear PAN. Callers must not log or display it.
    pub fn reveal(&self) -> &str {
        &self.digits
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.digits.len()
    }

    /// Always false: a PAN has at least 12 digits.
    pub fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// The masked form, first 6 and last 4 digits.
    pub fn masked(&self) -> String {
        mask::mask_pan(&self.digits)
    }

    /// The 12 rightmost digits excluding the check digit (ISO 9564 format 0 PAN field); only 11
    /// for a 12-digit PAN (the PIN block right-justifies them, ISO 9564-1 pads with zeros).
    pub fn rightmost12_excluding_check(&self) -> &str {
        let end = self.digits.len().saturating_sub(1);
        self.digits
            .get(end.saturating_sub(12)..end)
            .unwrap_or_default()
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A year-month as `YYMM` (expiry, effective date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Yymm {
    /// Two-digit year.
    pub yy: u8,
    /// Month 1-12.
    pub mm: u8,
}

impl Yymm {
    /// Parses `YYMM` with month 01-12.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != 4 || !all_digits(s) {
            return Err("must be 4 digits YYMM".into());
        }
        let yy = (s.as_bytes()[0] - b'0') * 10 + (s.as_bytes()[1] - b'0');
        let mm = (s.as_bytes()[2] - b'0') * 10 + (s.as_bytes()[3] - b'0');
        if !(1..=12).contains(&mm) {
            return Err(format!("month {mm:02} is not 01-12"));
        }
        Ok(Self { yy, mm })
    }

    /// The four ASCII digits `YYMM` (no allocation, for track building on the hot path).
    pub fn digits(self) -> [u8; 4] {
        let d = |v: u8| [b'0' + (v / 10) % 10, b'0' + v % 10];
        let ([a, b], [c, e]) = (d(self.yy), d(self.mm));
        [a, b, c, e]
    }
}

impl fmt::Display for Yymm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.digits();
        f.write_str(std::str::from_utf8(&digits).unwrap_or("????"))
    }
}

/// PAN sequence number, two digits (default `00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Psn(pub u8);

impl Psn {
    /// Parses exactly two digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != 2 || !all_digits(s) {
            return Err("must be 2 digits".into());
        }
        Ok(Self(
            (s.as_bytes()[0] - b'0') * 10 + (s.as_bytes()[1] - b'0'),
        ))
    }
}

impl fmt::Display for Psn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

/// A three-digit magnetic stripe service code (e.g. `201`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCode([u8; 3]);

impl ServiceCode {
    /// Parses exactly three digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != 3 || !all_digits(s) {
            return Err("must be 3 digits".into());
        }
        let b = s.as_bytes();
        Ok(Self([b[0], b[1], b[2]]))
    }

    /// The three ASCII digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000")
    }

    /// The three ASCII digits.
    pub fn digits(&self) -> &[u8; 3] {
        &self.0
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for characters of the ISO/IEC 7813 track 1 set (ASCII 20h-5Fh).
pub fn is_track1_char(c: char) -> bool {
    ('\x20'..='\x5F').contains(&c)
}

/// The cardholder name as encoded on track 1 (ISO/IEC 7813): 2-26 characters of the track 1
/// set, `SURNAME/FIRST`, no field separator `^` and no sentinels. Visible to supervisors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedName(String);

impl EncodedName {
    /// Parses and checks a track 1 name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let n = super::order::char_len(s);
        if !(2..=26).contains(&n) {
            return Err(format!("must be 2-26 characters, got {n}"));
        }
        // The bytes first: only a name with a byte outside the set is read by characters.
        let in_set = s.bytes().all(|b| (0x20..=0x5F).contains(&b));
        if let Some(c) = (!in_set)
            .then(|| s.chars().find(|c| !is_track1_char(*c)))
            .flatten()
        {
            return Err(if c.is_ascii_lowercase() {
                "lowercase letters are not in the track 1 character set".into()
            } else {
                format!("character {c:?} is not in the track 1 character set")
            });
        }
        if s.bytes().any(|b| matches!(b, b'^' | b'%' | b'?')) {
            return Err(if s.contains('^') {
                "must not contain the field separator '^'".into()
            } else {
                "must not contain the sentinels '%' or '?'".into()
            });
        }
        // The name stays visible when tracks and chip data are masked, so it must not carry a
        // card number (found by tests/properties.rs; the same rule as for track 1 overrides).
        // Digits separated by spaces, hyphens or dots count as one run (issue 13, finding 15).
        if super::order::longest_digit_run(s) >= 12 {
            return Err("must not contain a run of 12 or more digits (a card number?)".into());
        }
        match s.find('/') {
            None => Err("must be SURNAME/FIRSTNAME with '/' between surname and first name".into()),
            Some(0) => Err("surname before '/' is empty".into()),
            Some(_) => Ok(Self(s.into())),
        }
    }

    /// The name as written on track 1.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EncodedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret string of exactly `N` decimal digits (CVV1, iCVV: 3; PVV: 4). Masked as `*`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretDigits<const N: usize>([u8; N]);

/// Card verification value (CVV1 on the stripe, iCVV in the chip), 3 digits.
pub type Cvv = SecretDigits<3>;
/// PIN verification value, 4 digits.
pub type Pvv = SecretDigits<4>;

impl<const N: usize> SecretDigits<N> {
    /// Parses exactly `N` digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != N || !all_digits(s) {
            return Err(format!("must be {N} digits"));
        }
        let mut out = [0u8; N];
        out.copy_from_slice(s.as_bytes());
        Ok(Self(out))
    }

    /// Builds from ASCII digits the caller has already produced (e.g. a computed CVV).
    pub fn from_ascii(digits: [u8; N]) -> Option<Self> {
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then_some(Self(digits))
    }

    /// The clear digits. Callers must not log or display them.
    pub fn reveal(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The clear ASCII digits (for builders that append bytes). Callers must not log them.
    pub fn reveal_digits(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for SecretDigits<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask::stars(N))
    }
}

impl<const N: usize> fmt::Display for SecretDigits<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask::stars(N))
    }
}

/// ISO 9564 PIN block format of an order's `encryptedData.pin.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PinBlockFormat {
    /// Format 0 under a TDES zone PIN key (usage `zpk`).
    Iso0,
    /// Format 0 under a TDES PIN transport key (usage `pin-tk`).
    Iso0Tk,
    /// Format 4 under an AES key (usage `zpk`).
    Iso4,
}

impl PinBlockFormat {
    /// Parses the order's `type` value.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ISO0" => Ok(Self::Iso0),
            "ISO0TK" => Ok(Self::Iso0Tk),
            "ISO4" => Ok(Self::Iso4),
            _ => Err("must be one of ISO0, ISO0TK, ISO4".into()),
        }
    }

    /// The encrypted block length in bytes: 8 for format 0, 16 for format 4.
    pub fn block_len(self) -> usize {
        match self {
            Self::Iso0 | Self::Iso0Tk => 8,
            Self::Iso4 => 16,
        }
    }

    /// The order's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iso0 => "ISO0",
            Self::Iso0Tk => "ISO0TK",
            Self::Iso4 => "ISO4",
        }
    }
}

/// An encrypted PIN block as received in an order. Never displayed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct EncryptedPinBlock(Vec<u8>);

impl EncryptedPinBlock {
    /// Parses hex of the length `format` needs.
    pub fn parse(s: &str, format: PinBlockFormat) -> Result<Self, String> {
        let want = format.block_len();
        if s.len() != want * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "must be {} hex digits for {}",
                want * 2,
                format.as_str()
            ));
        }
        // Every byte is a hex digit (checked above): pairs into bytes, no decoder of its own.
        let nibble = |b: u8| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b.wrapping_sub(b'A').wrapping_add(10) & 0x0F,
        };
        let block = s
            .as_bytes()
            .chunks_exact(2)
            .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
            .collect();
        Ok(Self(block))
    }

    /// The encrypted bytes, for the key store only.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for EncryptedPinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedPinBlock(<{} bytes redacted>)", self.0.len())
    }
}

/// A clear PIN, 4-12 digits; exists only inside the key-store boundary.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pin(String);

impl Pin {
    /// Parses 4-12 digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !(4..=12).contains(&s.len()) || !all_digits(s) {
            return Err("must be 4-12 digits".into());
        }
        Ok(Self(s.into()))
    }

    /// The clear PIN digits, for PIN-block and PVV computation only.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pan_rules() {
        assert!(Pan::parse_strict("4761739001010010").is_ok());
        assert_eq!(
            Pan::parse_strict("4761739001010011").map(|_| ()),
            Err("Luhn check digit is wrong".into())
        );
        assert!(!Pan::parse("5413330089012345").expect("digits").luhn_ok());
        assert!(Pan::parse("41111111111").is_err());
        assert!(Pan::parse("4111 1111 1111 1111").is_err());
        let pan = Pan::parse("5413330089012345").expect("valid");
        assert_eq!(format!("{pan:?}"), "Pan(541333******2345)");
        assert_eq!(pan.rightmost12_excluding_check(), "333008901234");
        // A 12-digit PAN has only 11 digits before its check digit (found by tests/properties.rs:
        // this used to underflow and panic).
        let short = Pan::parse("100000000008").expect("12 digits");
        assert!(EncodedName::parse("DOE/100000000008").is_err());
        assert!(EncodedName::parse("DOE 3RD/10000000000").is_ok());
        assert_eq!(short.rightmost12_excluding_check(), "10000000000");
    }

    #[test]
    fn yymm_rules() {
        assert_eq!(Yymm::parse("2906"), Ok(Yymm { yy: 29, mm: 6 }));
        assert_eq!(Yymm::parse("2913"), Err("month 13 is not 01-12".into()));
        assert_eq!(Yymm::parse("2900"), Err("month 00 is not 01-12".into()));
        assert!(Yymm::parse("290").is_err());
    }

    #[test]
    fn name_rules() {
        assert!(EncodedName::parse("DOE/ALICE").is_ok());
        assert!(EncodedName::parse("Doe/Alice").is_err());
        assert!(EncodedName::parse("DOE ALICE").is_err());
        assert!(EncodedName::parse("DOE^ALICE").is_err());
        assert!(EncodedName::parse("/ALICE").is_err());
        assert!(EncodedName::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ/A").is_err());
    }

    #[test]
    fn secrets_mask_themselves() {
        let cvv = Cvv::parse("123").expect("valid");
        assert_eq!(format!("{cvv:?} {cvv}"), "*** ***");
        assert_eq!(cvv.reveal(), "123");
        assert!(Pvv::parse("123").is_err());
        let pb = EncryptedPinBlock::parse("B4BF8522DFFB6FFB", PinBlockFormat::Iso0).expect("hex");
        assert!(!format!("{pb:?}").contains("B4BF"));
        assert!(EncryptedPinBlock::parse("B4BF8522DFFB6FFB", PinBlockFormat::Iso4).is_err());
    }

    /// PIN blocks decode as the `hex` crate decodes them, in either case; names check as
    /// before at every byte.
    #[test]
    fn pin_blocks_decode_as_hex_does_and_names_keep_their_rules() {
        for text in [
            "B4BF8522DFFB6FFB",
            "b4bf8522dffb6ffb",
            "0123456789aBcDeF",
            "FEDCBA9876543210",
        ] {
            let pb = EncryptedPinBlock::parse(text, PinBlockFormat::Iso0).expect("hex");
            assert_eq!(pb.bytes(), hex::decode(text).expect("hex crate"));
        }
        let iso4 = "00112233445566778899AABBCCDDEEFF";
        let pb = EncryptedPinBlock::parse(iso4, PinBlockFormat::Iso4).expect("hex");
        assert_eq!(pb.bytes(), hex::decode(iso4).expect("hex crate"));
        assert!(EncryptedPinBlock::parse("B4BF8522DFFB6FFG", PinBlockFormat::Iso0).is_err());
        assert_eq!(
            Yymm::parse("0501").map(|y| y.to_string()),
            Ok("0501".into())
        );
        assert_eq!(Yymm::parse("2912").map(|y| y.digits()), Ok(*b"2912"));
        assert_eq!(
            EncodedName::parse("DOE/ALICE").map(|n| n.as_str().to_string()),
            Ok("DOE/ALICE".into())
        );
        let refused = [
            (
                "DOE/alice",
                "lowercase letters are not in the track 1 character set",
            ),
            (
                "DOE/ÉLISE",
                "character 'É' is not in the track 1 character set",
            ),
            ("DOE^/A", "must not contain the field separator '^'"),
            ("DOE?/A", "must not contain the sentinels '%' or '?'"),
            (
                "ÉÉÉÉÉÉÉÉÉÉÉÉÉÉ/A",
                "character 'É' is not in the track 1 character set",
            ),
        ];
        for (name, rule) in refused {
            assert_eq!(EncodedName::parse(name), Err(rule.to_string()), "{name}");
        }
        assert_eq!(
            EncodedName::parse(&"A".repeat(27)),
            Err("must be 2-26 characters, got 27".into())
        );
    }
}
