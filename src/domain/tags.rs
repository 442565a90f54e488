//! EMV tag dictionary and CPS DGI names.
//!
//! [`TAGS`] is a static table sorted by tag, looked up by binary search; it names the tags a
//! personalization workstation builds, checks or shows (EMV Books 1-4, CPS, Visa VCPS and
//! M/Chip public notes), with their format and how sensitive their values are. Names of
//! scheme-specific tags are those of the public notes; their layouts stay in profile files.
//! [`dgi_info`] names the well-known CPS and scheme DGIs and flags key and PIN material.

use crate::domain::tlv::Tag;

/// The EMV data element format of a tag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `b`: binary.
    Binary,
    /// `n`: BCD digits, right-justified, leading zeros.
    Numeric,
    /// `cn`: BCD digits, left-justified, padded with `F`.
    CompressedNumeric,
    /// `an`: letters and digits.
    AlphaNumeric,
    /// `ans`: printable characters.
    AlphaNumericSpecial,
    /// A data object list: tag and length pairs, no values.
    Dol,
    /// A list of tags without lengths (9F4A).
    TagList,
    /// A constructed template whose value is a sequence of TLVs.
    Template,
}

/// How a tag's value may be shown to a human or written to logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sensitivity {
    /// Anyone may see it.
    Public,
    /// Personal data (cardholder name, account reference): masked in logs.
    Personal,
    /// The PAN: only the masking rules decide what is shown.
    Pan,
    /// Track data or its discretionary part: contains the PAN and verification values.
    TrackData,
    /// Never shown (PIN data, static CVC3 and its IV).
    Secret,
}

/// One dictionary entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag.
    pub tag: Tag,
    /// Its EMV (or scheme) name.
    pub name: &'static str,
    /// The format of its value.
    pub format: Format,
    /// How its value may be shown.
    pub sensitivity: Sensitivity,
}

macro_rules! entry {
    ($raw:literal, $name:literal, $format:ident, $sensitivity:ident) => {
        TagInfo {
            tag: crate::tag!($raw),
            name: $name,
            format: Format::$format,
            sensitivity: Sensitivity::$sensitivity,
        }
    };
}

/// Every known tag, sorted by tag value (1-byte tags first), without duplicates.
pub static TAGS: &[TagInfo] = &[
    entry!(0x4F, "Application Identifier (AID)", Binary, Public),
    entry!(0x50, "Application Label", AlphaNumericSpecial, Public),
    entry!(0x56, "Track 1 Data", AlphaNumericSpecial, TrackData),
    entry!(0x57, "Track 2 Equivalent Data", Binary, TrackData),
    entry!(0x5A, "Application PAN", CompressedNumeric, Pan),
    entry!(0x61, "Application Template", Template, Public),
    entry!(
        0x6F,
        "File Control Information (FCI) Template",
        Template,
        Public
    ),
    entry!(
        0x70,
        "READ RECORD Response Message Template",
        Template,
        Public
    ),
    entry!(0x77, "Response Message Template Format 2", Template, Public),
    entry!(0x80, "Response Message Template Format 1", Binary, Public),
    entry!(
        0x82,
        "Application Interchange Profile (AIP)",
        Binary,
        Public
    ),
    entry!(0x84, "Dedicated File (DF) Name", Binary, Public),
    entry!(0x87, "Application Priority Indicator", Binary, Public),
    entry!(0x88, "Short File Identifier (SFI)", Binary, Public),
    entry!(0x8C, "CDOL1", Dol, Public),
    entry!(0x8D, "CDOL2", Dol, Public),
    entry!(0x8E, "CVM List", Binary, Public),
    entry!(
        0x8F,
        "Certification Authority Public Key Index",
        Binary,
        Public
    ),
    entry!(0x90, "Issuer Public Key Certificate", Binary, Public),
    entry!(0x92, "Issuer Public Key Remainder", Binary, Public),
    entry!(0x93, "Signed Static Application Data", Binary, Public),
    entry!(0x94, "Application File Locator (AFL)", Binary, Public),
    entry!(0x95, "Terminal Verification Results", Binary, Public),
    entry!(0x99, "Transaction PIN Data", Binary, Secret),
    entry!(0x9A, "Transaction Date", Numeric, Public),
    entry!(0x9C, "Transaction Type", Numeric, Public),
    entry!(0xA5, "FCI Proprietary Template", Template, Public),
    entry!(
        0xC3,
        "Card Issuer Action Code - Decline (M/Chip)",
        Binary,
        Public
    ),
    entry!(
        0xC4,
        "Card Issuer Action Code - Default (M/Chip)",
        Binary,
        Public
    ),
    entry!(
        0xC5,
        "Card Issuer Action Code - Online (M/Chip)",
        Binary,
        Public
    ),
    entry!(0xC6, "PIN Try Limit (M/Chip)", Binary, Public),
    entry!(0xC7, "CDOL1 Related Data Length (M/Chip)", Binary, Public),
    entry!(0xC8, "CRM Country Code (M/Chip)", Numeric, Public),
    entry!(0xC9, "CRM Currency Code (M/Chip)", Numeric, Public),
    entry!(
        0xCA,
        "Lower Cumulative Offline Transaction Amount (M/Chip)",
        Numeric,
        Public
    ),
    entry!(
        0xCB,
        "Upper Cumulative Offline Transaction Amount (M/Chip)",
        Numeric,
        Public
    ),
    entry!(
        0xCD,
        "Card Issuer Action Code (PayPass) - Default (M/Chip)",
        Binary,
        Public
    ),
    entry!(
        0xCE,
        "Card Issuer Action Code (PayPass) - Online (M/Chip)",
        Binary,
        Public
    ),
    entry!(
        0xCF,
        "Card Issuer Action Code (PayPass) - Decline (M/Chip)",
        Binary,
        Public
    ),
    entry!(0xD1, "Currency Conversion Table (M/Chip)", Binary, Public),
    entry!(0xD3, "Additional Check Table (M/Chip)", Binary, Public),
    entry!(0xD5, "Application Control (M/Chip)", Binary, Public),
    entry!(0xD6, "Default ARPC Response Code (M/Chip)", Binary, Public),
    entry!(
        0xD7,
        "Application Control (PayPass) (M/Chip)",
        Binary,
        Public
    ),
    entry!(
        0xD8,
        "Application Interchange Profile (PayPass) (M/Chip)",
        Binary,
        Public
    ),
    entry!(
        0xD9,
        "Application File Locator (PayPass) (M/Chip)",
        Binary,
        Public
    ),
    entry!(0xDA, "Static CVC3 Track 1 (M/Chip)", Binary, Secret),
    entry!(0xDB, "Static CVC3 Track 2 (M/Chip)", Binary, Secret),
    entry!(0xDC, "IVCVC3 Track 1 (M/Chip)", Binary, Secret),
    entry!(0xDD, "IVCVC3 Track 2 (M/Chip)", Binary, Secret),
    entry!(0x5F20, "Cardholder Name", AlphaNumericSpecial, Personal),
    entry!(0x5F24, "Application Expiration Date", Numeric, Public),
    entry!(0x5F25, "Application Effective Date", Numeric, Public),
    entry!(0x5F28, "Issuer Country Code", Numeric, Public),
    entry!(0x5F2A, "Transaction Currency Code", Numeric, Public),
    entry!(0x5F2D, "Language Preference", AlphaNumeric, Public),
    entry!(0x5F30, "Service Code", Numeric, Public),
    entry!(0x5F34, "Application PAN Sequence Number", Numeric, Public),
    entry!(0x9F02, "Amount, Authorised", Numeric, Public),
    entry!(0x9F03, "Amount, Other", Numeric, Public),
    entry!(0x9F07, "Application Usage Control", Binary, Public),
    entry!(0x9F08, "Application Version Number", Binary, Public),
    entry!(
        0x9F0B,
        "Cardholder Name Extended",
        AlphaNumericSpecial,
        Personal
    ),
    entry!(0x9F0D, "Issuer Action Code - Default", Binary, Public),
    entry!(0x9F0E, "Issuer Action Code - Denial", Binary, Public),
    entry!(0x9F0F, "Issuer Action Code - Online", Binary, Public),
    entry!(0x9F10, "Issuer Application Data", Binary, Public),
    entry!(0x9F11, "Issuer Code Table Index", Numeric, Public),
    entry!(
        0x9F12,
        "Application Preferred Name",
        AlphaNumericSpecial,
        Public
    ),
    entry!(0x9F13, "Last Online ATC Register", Binary, Public),
    entry!(0x9F14, "Lower Consecutive Offline Limit", Binary, Public),
    entry!(0x9F17, "PIN Try Counter", Binary, Public),
    entry!(0x9F19, "Token Requestor ID", Numeric, Public),
    entry!(0x9F1A, "Terminal Country Code", Numeric, Public),
    entry!(
        0x9F1F,
        "Track 1 Discretionary Data",
        AlphaNumericSpecial,
        TrackData
    ),
    entry!(
        0x9F20,
        "Track 2 Discretionary Data",
        CompressedNumeric,
        TrackData
    ),
    entry!(0x9F21, "Transaction Time", Numeric, Public),
    entry!(0x9F23, "Upper Consecutive Offline Limit", Binary, Public),
    entry!(
        0x9F24,
        "Payment Account Reference (PAR)",
        AlphaNumeric,
        Personal
    ),
    entry!(0x9F25, "Last 4 Digits of PAN", Numeric, Public),
    entry!(0x9F26, "Application Cryptogram", Binary, Public),
    entry!(0x9F27, "Cryptogram Information Data", Binary, Public),
    entry!(
        0x9F2D,
        "ICC PIN Encipherment Public Key Certificate",
        Binary,
        Public
    ),
    entry!(
        0x9F2E,
        "ICC PIN Encipherment Public Key Exponent",
        Binary,
        Public
    ),
    entry!(
        0x9F2F,
        "ICC PIN Encipherment Public Key Remainder",
        Binary,
        Public
    ),
    entry!(0x9F32, "Issuer Public Key Exponent", Binary, Public),
    entry!(0x9F33, "Terminal Capabilities", Binary, Public),
    entry!(
        0x9F34,
        "Cardholder Verification Method (CVM) Results",
        Binary,
        Public
    ),
    entry!(0x9F35, "Terminal Type", Numeric, Public),
    entry!(
        0x9F36,
        "Application Transaction Counter (ATC)",
        Binary,
        Public
    ),
    entry!(0x9F37, "Unpredictable Number", Binary, Public),
    entry!(
        0x9F38,
        "Processing Options Data Object List (PDOL)",
        Dol,
        Public
    ),
    entry!(0x9F40, "Additional Terminal Capabilities", Binary, Public),
    entry!(0x9F42, "Application Currency Code", Numeric, Public),
    entry!(0x9F44, "Application Currency Exponent", Numeric, Public),
    entry!(0x9F46, "ICC Public Key Certificate", Binary, Public),
    entry!(0x9F47, "ICC Public Key Exponent", Binary, Public),
    entry!(0x9F48, "ICC Public Key Remainder", Binary, Public),
    entry!(
        0x9F49,
        "Dynamic Data Authentication Data Object List (DDOL)",
        Dol,
        Public
    ),
    entry!(
        0x9F4A,
        "Static Data Authentication Tag List",
        TagList,
        Public
    ),
    entry!(0x9F4B, "Signed Dynamic Application Data", Binary, Public),
    entry!(0x9F4C, "ICC Dynamic Number", Binary, Public),
    entry!(0x9F4D, "Log Entry", Binary, Public),
    entry!(0x9F4F, "Log Format", Dol, Public),
    entry!(
        0x9F5A,
        "Application Program Identifier (Visa)",
        Binary,
        Public
    ),
    entry!(
        0x9F5D,
        "Available Offline Spending Amount (Visa)",
        Binary,
        Public
    ),
    entry!(
        0x9F63,
        "Offline Counter Initial Value (Visa) / PUNATC Track 1 (Mastercard)",
        Binary,
        Public
    ),
    entry!(
        0x9F66,
        "Terminal Transaction Qualifiers (TTQ)",
        Binary,
        Public
    ),
    entry!(0x9F68, "Card Additional Processes (Visa)", Binary, Public),
    entry!(
        0x9F69,
        "Card Authentication Related Data (Visa) / UDOL (Mastercard)",
        Binary,
        Public
    ),
    entry!(
        0x9F6B,
        "Track 2 Data (Mastercard) / Card CVM Limit (Visa)",
        Binary,
        TrackData
    ),
    entry!(0x9F6C, "Card Transaction Qualifiers (Visa)", Binary, Public),
    entry!(
        0x9F6E,
        "Form Factor Indicator (Visa) / Third Party Data (Mastercard)",
        Binary,
        Public
    ),
    entry!(0x9F7C, "Customer Exclusive Data (Visa)", Binary, Public),
    entry!(0xBF0C, "FCI Issuer Discretionary Data", Template, Public),
];

/// The dictionary entry for `tag`, if known.
pub fn lookup(tag: Tag) -> Option<&'static TagInfo> {
    let index = TAGS.binary_search_by_key(&tag, |info| info.tag).ok()?;
    TAGS.get(index)
}

/// The name of `tag`, if known.
pub fn name(tag: Tag) -> Option<&'static str> {
    lookup(tag).map(|info| info.name)
}

/// True only for known tags marked [`Sensitivity::Public`]: unknown tags are treated as
/// sensitive, so their values are never printed by `Debug` implementations.
pub fn value_may_be_shown(tag: Tag) -> bool {
    lookup(tag).is_some_and(|info| info.sensitivity == Sensitivity::Public)
}

/// What a known DGI holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DgiInfo {
    /// A short human name.
    pub name: &'static str,
    /// True when the DGI carries key or PIN material: it is sent encrypted and its value is
    /// never shown. Chip profiles still list encryption per DGI; this is the default.
    pub secret: bool,
}

const fn dgi(name: &'static str, secret: bool) -> Option<DgiInfo> {
    Some(DgiInfo { name, secret })
}

/// Names the well-known CPS, Visa VSDC and M/Chip DGIs (docs/domain.md §1.5, §2.1, §2.2).
pub const fn dgi_info(id: u16) -> Option<DgiInfo> {
    match id {
        0x3001 => dgi("Internal data (Visa)", false),
        0x7FFF => dgi("Completion data", false),
        0x8000 => dgi("ICC master keys (MK-AC, MK-SMI, MK-SMC)", true),
        0x8001 => dgi("ICC master keys, contactless keyset (M/Chip)", true),
        0x8010 => dgi("Reference PIN block", true),
        0x8101 => dgi("ICC private exponent", true),
        0x8102 => dgi("ICC PIN encipherment private exponent", true),
        0x8103 => dgi("ICC modulus", false),
        0x8104 => dgi("ICC PIN encipherment modulus", false),
        0x8105 | 0x8106 => dgi("ICC ECC private key (CPS 2.0)", true),
        0x8201 => dgi("ICC private key CRT: q^-1 mod p", true),
        0x8202 => dgi("ICC private key CRT: d mod (q-1)", true),
        0x8203 => dgi("ICC private key CRT: d mod (p-1)", true),
        0x8204 => dgi("ICC private key CRT: prime q", true),
        0x8205 => dgi("ICC private key CRT: prime p", true),
        0x8200..=0x82FF => dgi("ICC private key CRT component", true),
        0x8301 => dgi("ICC PIN encipherment key CRT: q^-1 mod p", true),
        0x8302 => dgi("ICC PIN encipherment key CRT: d mod (q-1)", true),
        0x8303 => dgi("ICC PIN encipherment key CRT: d mod (p-1)", true),
        0x8304 => dgi("ICC PIN encipherment key CRT: prime q", true),
        0x8305 => dgi("ICC PIN encipherment key CRT: prime p", true),
        0x8300..=0x83FF => dgi("ICC PIN encipherment key CRT component", true),
        0x8400 | 0x8401 => dgi("KDCVC3 key (M/Chip)", true),
        0x9000 => dgi("Key check values", false),
        0x9010 => dgi("PIN try counter and limit", false),
        0x9102 => dgi("FCI contact", false),
        0x9103 => dgi("FCI contactless", false),
        0x9104 => dgi("GPO response contact (AIP, AFL)", false),
        0x9115 => dgi("qVSDC GPO response (online/decline, no ODA)", false),
        0x9116 => dgi("qVSDC GPO response (contactless path)", false),
        0x9117 => dgi("qVSDC GPO response (online, with ODA)", false),
        0x9200 => dgi("IAD construction options", false),
        0x9206 => dgi("MSD GPO response", false),
        0xA006 => dgi("ICC Dynamic Number key, contact (M/Chip)", true),
        0xA016 => dgi("ICC Dynamic Number key, contactless (M/Chip)", true),
        0xA000..=0xA0FF | 0xB000..=0xB0FF => dgi("M/Chip configuration", false),
        _ if is_record_id(id) => dgi("Application record", false),
        _ => None,
    }
}

/// True when the DGI is known to carry key or PIN material ([`DgiInfo::secret`]).
pub const fn dgi_is_secret(id: u16) -> bool {
    match dgi_info(id) {
        Some(info) => info.secret,
        None => false,
    }
}

/// True for record DGI ids: SFI `01..1E` followed by record number `01..FF`.
pub const fn is_record_id(id: u16) -> bool {
    let [sfi, record] = id.to_be_bytes();
    matches!(sfi, 0x01..=0x1E) && record != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_strictly_sorted() {
        for pair in TAGS.windows(2) {
            if let [a, b] = pair {
                assert!(a.tag < b.tag, "{} before {}", a.tag, b.tag);
            }
        }
    }

    #[test]
    fn record_ids() {
        assert!(is_record_id(0x0101));
        assert!(is_record_id(0x1EFF));
        assert!(!is_record_id(0x1F01));
        assert!(!is_record_id(0x0100));
        assert!(!is_record_id(0x0001));
    }
}
