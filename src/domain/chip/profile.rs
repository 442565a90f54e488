//! Chip profiles (`profiles/chip/*.toml`): everything scheme-specific, as data.
//!
//! A profile names the application (AID, label, optional applet start code), the CVN and the
//! ICC master key derivation option, the AIP per interface, offline data authentication (method,
//! ICC key size and exponent, SDA tag list), the PIN rules (control nibble of the reference PIN
//! block, PIN try limit), where iCVV sits in the track 2 equivalent data, fixed tag values, the
//! tags a product configuration must supply, and every DGI in send order with its encryption and
//! padding flags:
//!
//! ```toml
//! name = "vis-1.6.3-vcps-2.2.4"
//! aid = "A0000000031010"
//! label = "VISA CREDIT"
//! cvn = "visa-cvn18"
//! mkd = "b"                        # a | b (B equals A for PANs of 16 digits or less)
//! aip = { contact = "3C00", contactless = "2020" }
//! icvv = "cvv"                     # "cvv": where the product's track 2 pattern has cvv;
//!                                  # a number: digit offset in the discretionary data; "none";
//!                                  # { track2 = 5, track1 = 9 }: an offset per track
//! config_tags = ["8E", "9F0D"]     # the product configuration must give these
//! contactless_name = true          # 5F20 in contactless-only DGIs (scheme guidance)
//! send_order = ["0101", "9102", "8000", "9000"]
//! [oda]
//! method = "dda"                   # none | sda | dda | cda
//! icc_key_bits = 1024
//! icc_exponent = 3
//! sda_tag_list = "82"
//! certificates = "shared"          # shared | per-interface (one 9F46/93 record per interface)
//! [pin]
//! control = 2
//! try_limit = 3
//! cvm_check = "warn"               # warn | refuse: 8010 and the CVM list disagree on offline PIN
//! [tags]
//! "9F08" = "0096"
//! [dgi.0101]                       # a record: SFI 01, record 01
//! tags = ["57", "5F20", "9F1F"]
//! oda = true                       # part of the static data to be authenticated
//! [dgi.9102]                       # tag DGIs: FCI, GPO responses
//! template = "A5"
//! tags = ["50", "87", "9F38"]
//! [dgi.8000]                       # 8000, 9000, 8010, 9010, 8201-8205 are computed
//! encrypt = true
//! [dgi.A002]
//! value = "00010203"               # verbatim (fixed-position configuration)
//! ```
//!
//! A tag followed by `?` is optional (left out when nothing fills it). Load errors name the file
//! and the key; a record tag nothing can fill is a load error. A record's `interfaces` (default
//! both) says whose AFL lists it; a tag may sit in several records when no interface reads two
//! of them. Every GPO answer whose AIP asks for ODA must reach, through its AFL, exactly one
//! signature (93 or 9F46) and the whole certificate chain.

use std::collections::BTreeMap;

use super::channel::ChannelRule;
use super::iad::IadRule;
use crate::domain::dgi;
use crate::domain::emv_keys::{Cvn, MkdOption};
use crate::domain::finding::Finding;
use crate::domain::oda::RsaExponent;
use crate::domain::tags;
use crate::domain::tlv::Tag;

/// A card interface; AIP and AFL may differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Interface {
    /// ISO 7816 contact.
    Contact,
    /// ISO 14443 contactless.
    Contactless,
}

impl Interface {
    /// The profile spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Contactless => "contactless",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "contact" => Some(Self::Contact),
            "contactless" => Some(Self::Contactless),
            _ => None,
        }
    }
}

/// Offline data authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OdaMethod {
    /// No offline data authentication.
    None,
    /// Static data authentication: signed static application data (93).
    Sda,
    /// Dynamic data authentication: ICC key pair and certificate.
    Dda,
    /// Combined DDA / application cryptogram generation: as DDA for personalization.
    Cda,
}

impl OdaMethod {
    /// The profile spelling (`none`, `sda`, `dda`, `cda`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Sda => "sda",
            Self::Dda => "dda",
            Self::Cda => "cda",
        }
    }

    /// True for DDA and CDA (an ICC key pair is needed).
    pub fn needs_icc_key(self) -> bool {
        matches!(self, Self::Dda | Self::Cda)
    }
}

/// The profile's offline data authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdaRule {
    /// The method.
    pub method: OdaMethod,
    /// ICC RSA key size in bits (DDA/CDA).
    pub icc_key_bits: usize,
    /// ICC public exponent (DDA/CDA).
    pub icc_exponent: RsaExponent,
    /// Static data authentication tag list (9F4A), normally `82`.
    pub sda_tag_list: Option<Vec<u8>>,
    /// Data authentication code for SDA (2 bytes).
    pub dac: [u8; 2],
    /// One signature (ICC certificate or SSAD) for every interface, or one per interface.
    pub certificates: CertificateLayout,
}

/// How the signature over the static data to be authenticated (ICC certificate 9F46 or signed
/// static application data 93) serves the card's interfaces (docs/domain.md §10).
///
/// A terminal hashes the records its own GPO's AFL flags for ODA and the AIP that GPO returned,
/// so one signature serves both interfaces only when both present the same static data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateLayout {
    /// One signature, in a record both AFLs list: every ODA path must present the same static
    /// data (same ODA records, same AIP when 9F4A lists 82).
    Shared,
    /// One signature per interface, each in a record only that interface's AFL lists (one ICC
    /// key pair, one certificate per interface).
    PerInterface,
}

impl CertificateLayout {
    /// The profile spelling (`shared`, `per-interface`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::PerInterface => "per-interface",
        }
    }
}

/// The tag that carries the signature over the static data under `method` (93 for SDA, 9F46
/// for DDA/CDA), if any.
pub fn signature_tag(method: OdaMethod) -> Option<u32> {
    match method {
        OdaMethod::None => None,
        OdaMethod::Sda => Some(0x93),
        OdaMethod::Dda | OdaMethod::Cda => Some(0x9F46),
    }
}

/// True when an AIP asks the terminal for offline data authentication (byte 1: SDA `40`, DDA
/// `20`, CDA `01`; EMV Book 3 Annex C1).
pub fn aip_asks_for_oda(aip: [u8; 2]) -> bool {
    aip[0] & 0x61 != 0
}

/// The profile's reference PIN settings (DGI 8010, 9010).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinRule {
    /// Control nibble of the reference PIN block (`2N PIN F..`): default 2.
    pub control: u8,
    /// PIN try limit (9010 = counter || limit, the counter starting at the limit): default 3.
    pub try_limit: u8,
    /// Refuse (true) or only warn (false, the default) when the reference PIN (8010) and the
    /// CVM list (8E) disagree about offline PIN.
    pub refuse_cvm_mismatch: bool,
}

/// Where iCVV sits in the track 2 equivalent data's discretionary data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcvvPosition {
    /// Where the product's track 2 pattern has its `cvv` token (the usual Visa layout).
    CvvToken,
    /// At this digit offset of the discretionary data (overwriting three digits).
    Offset(usize),
    /// Per track: the digit offsets in track 2's (57) and track 1's (9F1F, 56) discretionary
    /// data; a track without an offset keeps its pattern's CVV.
    PerTrack {
        /// Offset in the track 2 equivalent data's discretionary data.
        track2: Option<usize>,
        /// Offset in the track 1 discretionary data.
        track1: Option<usize>,
    },
    /// No iCVV: the discretionary data is the product's pattern with the CVV.
    None,
}

/// A tag a DGI holds, optional when written with a trailing `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSlot {
    /// The tag.
    pub tag: Tag,
    /// Left out when nothing fills it.
    pub optional: bool,
}

/// What a DGI holds and how it is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DgiContent {
    /// An application record (id = SFI || record number): template 70 with these tags.
    Record {
        /// The tags, in order.
        tags: Vec<TagSlot>,
        /// The record takes part in offline data authentication.
        oda: bool,
        /// The interfaces whose AFL lists it.
        interfaces: Vec<Interface>,
    },
    /// A list of tags (FCI, GPO response), optionally inside a template.
    Tags {
        /// Template tag (e.g. `A5` for the FCI proprietary template), if any.
        template: Option<Tag>,
        /// The tags, in order.
        tags: Vec<TagSlot>,
        /// The interface whose AIP and AFL fill 82 and 94.
        interface: Interface,
        /// Values that replace the profile's fixed or computed values in this DGI only.
        values: BTreeMap<Tag, Vec<u8>>,
        /// Fixed-position binary: the values concatenated without tags and lengths (M/Chip
        /// A005/B005 style GPO data).
        raw: bool,
    },
    /// Emitted as given (fixed-position configuration such as M/Chip A0xx/B0xx).
    Verbatim(Vec<u8>),
    /// 8000: MK-AC || MK-SMI || MK-SMC.
    MasterKeys,
    /// 9000: KCVs of the 8000 keys.
    KeyCheckValues,
    /// 8010: reference PIN block.
    PinBlock,
    /// 9010: PIN try counter || PIN try limit.
    PinTry,
    /// 8201-8205: ICC private key CRT component (1 = q^-1 mod p .. 5 = p).
    IccCrt(u8),
}

/// A GPO answer a profile personalizes: what a terminal on that interface receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpoAnswer {
    /// The DGI holding it.
    pub dgi: u16,
    /// The interface it answers on.
    pub interface: Interface,
    /// The AIP (82) it returns.
    pub aip: [u8; 2],
    /// The AFL (94) it returns.
    pub afl: Vec<u8>,
}

/// One DGI of the profile with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DgiRule {
    /// The DGI id.
    pub id: u16,
    /// Sent encrypted with the DEK.
    pub encrypt: bool,
    /// Padded `80 00..` before encryption.
    pub pad: bool,
    /// Every card of the profile carries it (false: only when the order yields it, e.g. 8010
    /// without a PIN).
    pub required: bool,
    /// Its content.
    pub content: DgiContent,
}

/// The tags Model 1 computes from the order, the keys and ODA (a profile may place them in its
/// DGIs without giving values).
pub const COMPUTED_TAGS: [u32; 26] = [
    0x4F, 0x50, 0x56, 0x57, 0x5A, 0x82, 0x84, 0x8F, 0x90, 0x92, 0x93, 0x94, 0x5F20, 0x5F24, 0x5F25,
    0x5F30, 0x5F34, 0x9F10, 0x9F1F, 0x9F24, 0x9F32, 0x9F46, 0x9F47, 0x9F48, 0x9F4A, 0x9F6B,
];

/// True when Model 1 computes `tag` (unless the profile fixes 9F6B, a Visa CVM limit).
pub fn is_computed(tag: Tag) -> bool {
    COMPUTED_TAGS.contains(&tag.raw())
}

/// A chip profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipProfile {
    /// Profile name (the file stem; products name it).
    pub name: String,
    /// The file it came from, for messages.
    pub source: String,
    /// Application AID (4F/84, the instance personalized).
    pub aid: Vec<u8>,
    /// Application label (50).
    pub label: String,
    /// Applet start code the issuer's Model 2 envelopes must carry, when the profile sets one.
    pub applet_start_code: Option<String>,
    /// Cryptogram version number.
    pub cvn: Cvn,
    /// ICC master key derivation option.
    pub mkd: MkdOption,
    /// AIP per interface.
    pub aip: BTreeMap<Interface, [u8; 2]>,
    /// Offline data authentication.
    pub oda: OdaRule,
    /// Reference PIN.
    pub pin: PinRule,
    /// iCVV position.
    pub icvv: IcvvPosition,
    /// Fixed tag values.
    pub tags: BTreeMap<Tag, Vec<u8>>,
    /// Tags the product configuration must supply.
    pub config_tags: Vec<Tag>,
    /// The secure channel its cards are personalized over.
    pub channel: ChannelRule,
    /// The PPSE instance personalized after the application (`[ppse]`), for contactless.
    pub ppse: Option<super::ppse::PpseRule>,
    /// Issuer application data (9F10) settings.
    pub iad: IadRule,
    /// The cardholder name (5F20) goes into contactless-only DGIs (scheme guidance differs;
    /// default true).
    pub contactless_name: bool,
    dgis: Vec<DgiRule>,
    reserved: Vec<(u16, u16)>,
}

const KNOWN_KEYS: [&str; 21] = [
    "iad",
    "contactless_name",
    "name",
    "aid",
    "label",
    "applet_start_code",
    "cvn",
    "mkd",
    "aip",
    "icvv",
    "oda",
    "pin",
    "tags",
    "config_tags",
    "send_order",
    "reserved_dgis",
    "dgi",
    "scheme",
    "description",
    "channel",
    "ppse",
];

const DGI_KEYS: [&str; 11] = [
    "raw",
    "values",
    "encrypt",
    "pad",
    "required",
    "tags",
    "oda",
    "interfaces",
    "template",
    "interface",
    "value",
];

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: impl AsRef<str>, rule: impl Into<String>) -> Finding {
        Finding::new(format!("{}: {}", self.file, key.as_ref()), rule)
    }

    fn string<'t>(
        &self,
        t: &'t toml::Table,
        key: &str,
        path: &str,
    ) -> Result<Option<&'t str>, Finding> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(path, "must be a string")),
        }
    }

    fn required<'t>(&self, t: &'t toml::Table, key: &str, path: &str) -> Result<&'t str, Finding> {
        self.string(t, key, path)?
            .ok_or_else(|| self.err(path, "is required"))
    }

    fn bool(&self, t: &toml::Table, key: &str, path: &str, default: bool) -> Result<bool, Finding> {
        match t.get(key) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(self.err(path, "must be true or false")),
        }
    }

    fn int(&self, t: &toml::Table, key: &str, path: &str) -> Result<Option<i64>, Finding> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i)),
            Some(_) => Err(self.err(path, "must be an integer")),
        }
    }

    fn hex(&self, s: &str, path: &str) -> Result<Vec<u8>, Finding> {
        hex::decode(s).map_err(|_| self.err(path, "must be an even number of hex digits"))
    }

    fn table<'t>(
        &self,
        t: &'t toml::Table,
        key: &str,
        path: &str,
    ) -> Result<Option<&'t toml::Table>, Finding> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(x)) => Ok(Some(x)),
            Some(_) => Err(self.err(path, "must be a table")),
        }
    }

    fn strings<'t>(
        &self,
        t: &'t toml::Table,
        key: &str,
        path: &str,
    ) -> Result<Option<Vec<&'t str>>, Finding> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| self.err(path, "must be an array of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.err(path, "must be an array of strings")),
        }
    }
}

/// Parses a tag written as hex (`9F1F`).
pub fn parse_tag(s: &str) -> Option<Tag> {
    hex::decode(s).ok().and_then(|b| Tag::from_bytes(&b))
}

/// Parses a DGI id written as 4 hex digits (`8000`).
pub fn parse_dgi_id(s: &str) -> Option<u16> {
    (s.len() == 4)
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

fn parse_slot(s: &str) -> Option<TagSlot> {
    let (t, optional) = match s.strip_suffix('?') {
        Some(t) => (t, true),
        None => (s, false),
    };
    parse_tag(t).map(|tag| TagSlot { tag, optional })
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => Some((parse_dgi_id(a)?, parse_dgi_id(b)?)).filter(|(a, b)| a <= b),
        None => parse_dgi_id(s).map(|a| (a, a)),
    }
}

/// The CPS 2.0 reserved DGIs (the default of `reserved_dgis`).
const CPS_RESERVED: [(u16, u16); 6] = [
    (0x7FF0, 0x7FFE),
    (0x8F01, 0x8F01),
    (0x7F01, 0x7F01),
    (0x00CF, 0x00CF),
    (0x0062, 0x0062),
    (0x9F60, 0x9F6F),
];

/// `[aip]`: the AIP per interface.
fn parse_aip(c: &Ctx<'_>, table: &toml::Table) -> Result<BTreeMap<Interface, [u8; 2]>, Finding> {
    let mut aip = BTreeMap::new();
    if let Some(t) = c.table(table, "aip", "aip")? {
        for (k, v) in t {
            let path = format!("aip.{k}");
            let i = Interface::parse(k)
                .ok_or_else(|| c.err(&path, "interface must be contact or contactless"))?;
            let s = v.as_str().ok_or_else(|| c.err(&path, "must be a string"))?;
            let b = c.hex(s, &path)?;
            let two: [u8; 2] = b.try_into().map_err(|_| c.err(&path, "must be 2 bytes"))?;
            aip.insert(i, two);
        }
    }
    Ok(aip)
}

/// `icvv`: where the iCVV goes in the chip's track data.
fn parse_icvv(c: &Ctx<'_>, table: &toml::Table) -> Result<IcvvPosition, Finding> {
    Ok(match table.get("icvv") {
        None => IcvvPosition::CvvToken,
        Some(toml::Value::String(s)) if s == "cvv" => IcvvPosition::CvvToken,
        Some(toml::Value::String(s)) if s == "none" => IcvvPosition::None,
        Some(toml::Value::Integer(i)) if (0..=30).contains(i) => {
            IcvvPosition::Offset(usize::try_from(*i).unwrap_or(0))
        }
        Some(toml::Value::Table(t)) => {
            if let Some(k) = t
                .keys()
                .find(|k| !["track1", "track2"].contains(&k.as_str()))
            {
                return Err(c.err(format!("icvv.{k}"), "unknown key (known: track1, track2)"));
            }
            let offset = |k: &str, max: i64| -> Result<Option<usize>, Finding> {
                match t.get(k) {
                    None => Ok(None),
                    Some(toml::Value::Integer(i)) if (0..=max).contains(i) => {
                        Ok(usize::try_from(*i).ok())
                    }
                    Some(_) => Err(c.err(
                        format!("icvv.{k}"),
                        format!("must be a digit offset 0-{max}"),
                    )),
                }
            };
            IcvvPosition::PerTrack {
                track2: offset("track2", 30)?,
                track1: offset("track1", 76)?,
            }
        }
        Some(_) => {
            return Err(c.err(
                "icvv",
                "must be \"cvv\", \"none\", a digit offset 0-30 or { track2 = N, track1 = M }",
            ));
        }
    })
}

/// `[tags]`: fixed tag values; computed tags and 9F10 are refused.
fn parse_fixed_tags(c: &Ctx<'_>, table: &toml::Table) -> Result<BTreeMap<Tag, Vec<u8>>, Finding> {
    let mut fixed = BTreeMap::new();
    if let Some(t) = c.table(table, "tags", "tags")? {
        for (k, v) in t {
            let path = format!("tags.{k}");
            let tag =
                parse_tag(k).ok_or_else(|| c.err(&path, "is not a valid BER-TLV tag in hex"))?;
            if tag.raw() == 0x9F10 {
                return Err(c.err(
                    &path,
                    "is built by Model 1 from the CVN and the order's derivationKeyIndex; give its CVR and IDD in [iad] instead",
                ));
            }
            if is_computed(tag) && tag.raw() != 0x9F6B {
                return Err(c.err(&path, "is computed by Model 1; remove it from [tags]"));
            }
            let s = v
                .as_str()
                .ok_or_else(|| c.err(&path, "must be a hex string"))?;
            fixed.insert(tag, c.hex(s, &path)?);
        }
    }
    Ok(fixed)
}

/// `config_tags`: the tags an order's `config` may set; computed tags are refused.
fn parse_config_tags(c: &Ctx<'_>, table: &toml::Table) -> Result<Vec<Tag>, Finding> {
    let mut config_tags = Vec::new();
    for s in c
        .strings(table, "config_tags", "config_tags")?
        .unwrap_or_default()
    {
        let tag = parse_tag(s)
            .ok_or_else(|| c.err("config_tags", format!("`{s}` is not a valid tag")))?;
        if is_computed(tag) {
            return Err(c.err("config_tags", format!("{tag} is computed by Model 1")));
        }
        config_tags.push(tag);
    }
    Ok(config_tags)
}

/// `reserved_dgis`: DGI ids and ranges no DGI may use (CPS 2.0's by default).
fn parse_reserved(c: &Ctx<'_>, table: &toml::Table) -> Result<Vec<(u16, u16)>, Finding> {
    Ok(match c.strings(table, "reserved_dgis", "reserved_dgis")? {
        None => CPS_RESERVED.to_vec(),
        Some(list) => list
            .iter()
            .map(|s| {
                parse_range(s).ok_or_else(|| {
                    c.err(
                        "reserved_dgis",
                        format!("`{s}` is not a DGI id or XXXX-YYYY range"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

/// `send_order` and the `[dgi.XXXX]` tables: every listed DGI has a table, every table is listed.
fn parse_dgis(c: &Ctx<'_>, table: &toml::Table) -> Result<Vec<DgiRule>, Finding> {
    let dgi_tables = c
        .table(table, "dgi", "dgi")?
        .ok_or_else(|| c.err("dgi", "is required ([dgi.XXXX] tables)"))?;
    let order = c
        .strings(table, "send_order", "send_order")?
        .ok_or_else(|| c.err("send_order", "is required"))?;
    let mut dgis = Vec::with_capacity(order.len());
    for s in &order {
        let id = parse_dgi_id(s)
            .ok_or_else(|| c.err("send_order", format!("`{s}` is not a 4-hex-digit DGI id")))?;
        if dgis.iter().any(|d: &DgiRule| d.id == id) {
            return Err(c.err("send_order", format!("DGI {id:04X} is listed twice")));
        }
        let t = dgi_tables
            .iter()
            .find(|(k, _)| parse_dgi_id(k) == Some(id))
            .map(|(_, v)| v)
            .ok_or_else(|| {
                c.err(
                    "send_order",
                    format!("DGI {id:04X} has no [dgi.{id:04X}] table"),
                )
            })?;
        let t = t
            .as_table()
            .ok_or_else(|| c.err(format!("dgi.{id:04X}"), "must be a table"))?;
        dgis.push(parse_dgi(c, id, t)?);
    }
    for k in dgi_tables.keys() {
        let Some(id) = parse_dgi_id(k) else {
            return Err(c.err(format!("dgi.{k}"), "is not a 4-hex-digit DGI id"));
        };
        if !dgis.iter().any(|d| d.id == id) {
            return Err(c.err(format!("dgi.{k}"), "is not in send_order"));
        }
    }
    Ok(dgis)
}

impl ChipProfile {
    /// Parses a profile's text; `file` names it in errors, `name` is the profile name (the file
    /// stem). The `name` key, when present, must agree.
    pub fn from_toml(file: &str, name: &str, text: &str) -> Result<Self, Finding> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Finding::new(file, format!("not valid TOML: {}", e.message()))
        })?;
        let c = Ctx { file };
        if let Some(k) = table.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(c.err(k, format!("unknown key (known: {})", KNOWN_KEYS.join(", "))));
        }
        if let Some(n) = c.string(&table, "name", "name")?
            && n != name
        {
            return Err(c.err("name", format!("is `{n}` but the file is named `{name}`")));
        }
        let aid = c.hex(c.required(&table, "aid", "aid")?, "aid")?;
        if !(5..=16).contains(&aid.len()) {
            return Err(c.err("aid", "must be 5 to 16 bytes"));
        }
        let label = c.required(&table, "label", "label")?.to_string();
        if label.is_empty() || label.len() > 16 || !label.bytes().all(|b| (0x20..0x7F).contains(&b))
        {
            return Err(c.err("label", "must be 1 to 16 printable ASCII characters"));
        }
        let applet_start_code = c
            .string(&table, "applet_start_code", "applet_start_code")?
            .map(str::to_string);
        let cvn: Cvn = c
            .required(&table, "cvn", "cvn")?
            .parse()
            .map_err(|e: crate::domain::emv_keys::EmvKeyError| c.err("cvn", e.to_string()))?;
        let mkd: MkdOption = c
            .required(&table, "mkd", "mkd")?
            .parse()
            .map_err(|e: crate::domain::emv_keys::EmvKeyError| c.err("mkd", e.to_string()))?;

        let aip = parse_aip(&c, &table)?;
        let oda = parse_oda(&c, &table)?;
        let pin = parse_pin(&c, &table)?;
        let channel = match c.table(&table, "channel", "channel")? {
            Some(t) => ChannelRule::from_table(file, t)?,
            None => ChannelRule::default(),
        };
        let ppse = match c.table(&table, "ppse", "ppse")? {
            Some(t) => Some(super::ppse::PpseRule::from_table(file, t)?),
            None => None,
        };
        let icvv = parse_icvv(&c, &table)?;

        let fixed = parse_fixed_tags(&c, &table)?;
        let iad = IadRule::from_table(file, c.table(&table, "iad", "iad")?, cvn)?;
        let config_tags = parse_config_tags(&c, &table)?;
        let reserved = parse_reserved(&c, &table)?;
        let dgis = parse_dgis(&c, &table)?;
        let profile = Self {
            name: name.to_string(),
            source: file.to_string(),
            aid,
            label,
            applet_start_code,
            cvn,
            mkd,
            aip,
            oda,
            pin,
            icvv,
            tags: fixed,
            config_tags,
            channel,
            ppse,
            iad,
            contactless_name: c.bool(&table, "contactless_name", "contactless_name", true)?,
            dgis,
            reserved,
        };
        profile.check(&c)?;
        Ok(profile)
    }

    /// Cross-field rules: reserved DGIs, tags nothing can fill, ODA consistency, AIP per
    /// interface, one place per tag.
    fn check(&self, c: &Ctx<'_>) -> Result<(), Finding> {
        let mut placed: BTreeMap<Tag, Vec<(u16, &[Interface])>> = BTreeMap::new();
        for d in &self.dgis {
            let path = format!("dgi.{:04X}", d.id);
            if self.is_reserved(d.id) {
                return Err(c.err(&path, "is a reserved DGI"));
            }
            let no_values = BTreeMap::new();
            let (slots, interface, record_of, local) = match &d.content {
                DgiContent::Record {
                    tags,
                    oda,
                    interfaces,
                } => {
                    for t in tags {
                        if *oda && matches!(t.tag.raw(), 0x93 | 0x9F46 | 0x9F47 | 0x9F48) {
                            return Err(c.err(&path, format!("tag {} cannot be in a record that takes part in ODA (it signs that data)", t.tag)));
                        }
                    }
                    (
                        tags.as_slice(),
                        interfaces.first().copied(),
                        Some(interfaces.as_slice()),
                        &no_values,
                    )
                }
                DgiContent::Tags {
                    tags,
                    interface,
                    values,
                    ..
                } => (tags.as_slice(), Some(*interface), None, values),
                DgiContent::IccCrt(_) if !self.oda.method.needs_icc_key() => {
                    return Err(c.err(
                        &path,
                        format!(
                            "an ICC key DGI needs oda.method dda or cda, not {}",
                            self.oda.method.as_str()
                        ),
                    ));
                }
                _ => continue,
            };
            for slot in slots {
                let tag = slot.tag;
                if let Some(ifs) = record_of {
                    let seen = placed.entry(tag).or_default();
                    if let Some((prev, _)) = seen
                        .iter()
                        .find(|(_, other)| other.iter().any(|i| ifs.contains(i)))
                    {
                        return Err(c.err(
                            &path,
                            format!("tag {tag} is also in DGI {prev:04X}, which an interface of this record also reads; each interface reads a tag from one record"),
                        ));
                    }
                    seen.push((d.id, ifs));
                }
                if local.contains_key(&tag) || slot.optional {
                    continue;
                }
                if let Some(rule) = self.unfillable(tag, interface) {
                    return Err(c.err(&path, format!("tag {tag}: {rule}")));
                }
            }
        }
        if self.oda.method.needs_icc_key() {
            for n in 1..=5u8 {
                let id = 0x8200 | u16::from(n);
                if self.dgi_rule(id).is_none() {
                    return Err(c.err(
                        "send_order",
                        format!("oda.method {} needs DGI {id:04X}", self.oda.method.as_str()),
                    ));
                }
            }
        }
        self.check_oda_layout(c)?;
        if self.dgi_rule(0x9000).is_some() && self.dgi_rule(0x8000).is_none() {
            return Err(c.err("dgi.9000", "key check values need DGI 8000"));
        }
        Ok(())
    }

    /// ODA per interface: every GPO answer whose AIP asks for ODA reads, from the records its
    /// AFL lists, exactly one signature and the whole certificate chain; the records carrying
    /// the signature follow `oda.certificates`.
    fn check_oda_layout(&self, c: &Ctx<'_>) -> Result<(), Finding> {
        let Some(sig) = signature_tag(self.oda.method) else {
            return Ok(());
        };
        let holders = self.records_with(sig);
        let paths: Vec<GpoAnswer> = self
            .gpo_answers()
            .into_iter()
            .filter(|g| aip_asks_for_oda(g.aip))
            .collect();
        if paths.is_empty() {
            return Err(c.err(
                "oda.method",
                format!(
                    "is {} but no GPO answer's AIP asks for ODA (AIP byte 1 bit 40, 20 or 01)",
                    self.oda.method.as_str()
                ),
            ));
        }
        let mut chain = vec![0x8F, 0x90, 0x9F32];
        if self.oda.method.needs_icc_key() {
            chain.push(0x9F47);
        }
        for g in &paths {
            let path = format!("dgi.{:04X}", g.dgi);
            let seen: Vec<u16> = holders
                .iter()
                .filter(|(_, ifs)| ifs.contains(&g.interface))
                .map(|(id, _)| *id)
                .collect();
            if seen.len() != 1 {
                return Err(c.err(
                    &path,
                    format!(
                        "this {} GPO answer (AIP {}) asks for ODA, but the records its AFL lists carry tag {sig:X} {} times (needs exactly one)",
                        g.interface.as_str(),
                        hex::encode_upper(g.aip),
                        seen.len()
                    ),
                ));
            }
            for t in &chain {
                if !self
                    .records_with(*t)
                    .iter()
                    .any(|(_, ifs)| ifs.contains(&g.interface))
                {
                    return Err(c.err(
                        &path,
                        format!(
                            "this {} GPO answer asks for ODA, but no record its AFL lists carries tag {t:X}",
                            g.interface.as_str()
                        ),
                    ));
                }
            }
        }
        if let Some((id, _)) = holders
            .iter()
            .find(|(_, ifs)| !paths.iter().any(|g| ifs.contains(&g.interface)))
        {
            return Err(c.err(
                format!("dgi.{id:04X}"),
                format!("carries tag {sig:X}, but no GPO answer of the interfaces listing it asks for ODA"),
            ));
        }
        let ok = match self.oda.certificates {
            CertificateLayout::Shared => holders.len() == 1,
            CertificateLayout::PerInterface => holders.iter().all(|(_, ifs)| ifs.len() == 1),
        };
        if !ok {
            let list: Vec<String> = holders.iter().map(|(id, _)| format!("{id:04X}")).collect();
            return Err(c.err(
                "oda.certificates",
                format!(
                    "{}: {} needs {}, but tag {sig:X} is in record(s) {}",
                    self.oda.certificates.as_str(),
                    if self.oda.certificates == CertificateLayout::Shared {
                        "one signature"
                    } else {
                        "one signature per interface"
                    },
                    if self.oda.certificates == CertificateLayout::Shared {
                        "exactly one record to carry it"
                    } else {
                        "each record carrying it listed by one interface only (interfaces = [...])"
                    },
                    list.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The records carrying `tag`, with the interfaces whose AFL lists them.
    pub fn records_with(&self, tag: u32) -> Vec<(u16, &[Interface])> {
        self.records()
            .filter_map(|d| match &d.content {
                DgiContent::Record {
                    tags, interfaces, ..
                } if tags.iter().any(|s| s.tag.raw() == tag) => Some((d.id, interfaces.as_slice())),
                _ => None,
            })
            .collect()
    }

    /// Every GPO answer of the profile (a tag DGI holding 82): its DGI, interface, the AIP it
    /// returns and the AFL it returns.
    pub fn gpo_answers(&self) -> Vec<GpoAnswer> {
        self.dgis
            .iter()
            .filter_map(|d| match &d.content {
                DgiContent::Tags {
                    tags,
                    interface,
                    values,
                    ..
                } if tags.iter().any(|s| s.tag.raw() == 0x82) => {
                    let aip = match values.get(&crate::tag!(0x82)) {
                        Some(v) => <[u8; 2]>::try_from(v.as_slice()).ok()?,
                        None => self.aip(*interface)?,
                    };
                    let afl = match values.get(&crate::tag!(0x94)) {
                        Some(v) => v.clone(),
                        None => self.afl(*interface),
                    };
                    Some(GpoAnswer {
                        dgi: d.id,
                        interface: *interface,
                        aip,
                        afl,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Why `tag` cannot be filled under this profile, or `None` when it can (values from the
    /// product configuration are assumed present for `config_tags`).
    fn unfillable(&self, tag: Tag, interface: Option<Interface>) -> Option<String> {
        if self.tags.contains_key(&tag) || self.config_tags.contains(&tag) {
            return None;
        }
        let method = self.oda.method;
        match tag.raw() {
            0x82 | 0x94 => match interface {
                Some(i) if self.aip.contains_key(&i) => None,
                _ => Some("AIP/AFL need an aip for the DGI's interface".into()),
            },
            0x8F | 0x90 | 0x92 | 0x9F32 if method == OdaMethod::None => {
                Some("issuer certificate data needs an oda.method".into())
            }
            0x93 if method != OdaMethod::Sda => {
                Some("signed static application data needs oda.method = sda".into())
            }
            0x9F46..=0x9F48 if !method.needs_icc_key() => {
                Some("ICC certificate data needs oda.method dda or cda".into())
            }
            0x9F4A if self.oda.sda_tag_list.is_none() => Some("needs oda.sda_tag_list".into()),
            _ if is_computed(tag) => None,
            _ => Some("nothing fills it: give it in [tags] or list it in config_tags".into()),
        }
    }

    /// The rule of DGI `id`, if the profile has it.
    pub fn dgi_rule(&self, id: u16) -> Option<&DgiRule> {
        self.dgis.iter().find(|d| d.id == id)
    }

    /// Every DGI rule in send order.
    pub fn dgis(&self) -> &[DgiRule] {
        &self.dgis
    }

    /// DGI ids in send order.
    pub fn send_order(&self) -> impl Iterator<Item = u16> + '_ {
        self.dgis.iter().map(|d| d.id)
    }

    /// The DGIs every card of this profile carries.
    pub fn required_dgis(&self) -> impl Iterator<Item = u16> + '_ {
        self.dgis.iter().filter(|d| d.required).map(|d| d.id)
    }

    /// True when the profile treats `id` as reserved (default: the CPS 2.0 list).
    pub fn is_reserved(&self, id: u16) -> bool {
        self.reserved.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }

    /// The reserved DGI ranges (inclusive).
    pub fn reserved_dgis(&self) -> &[(u16, u16)] {
        &self.reserved
    }

    /// The record rules (records in send order).
    pub fn records(&self) -> impl Iterator<Item = &DgiRule> {
        self.dgis
            .iter()
            .filter(|d| matches!(d.content, DgiContent::Record { .. }))
    }

    /// The AIP of an interface.
    pub fn aip(&self, interface: Interface) -> Option<[u8; 2]> {
        self.aip.get(&interface).copied()
    }

    /// The AFL of an interface: its records sorted by SFI and number, one entry per run of
    /// consecutive records; a new entry starts where an ODA record follows a non-ODA one, so the
    /// ODA records always lead their entry.
    pub fn afl(&self, interface: Interface) -> Vec<u8> {
        let mut recs: Vec<(u8, u8, bool)> = self
            .records()
            .filter_map(|d| match &d.content {
                DgiContent::Record {
                    oda, interfaces, ..
                } if interfaces.contains(&interface) => {
                    let [sfi, rec] = d.id.to_be_bytes();
                    Some((sfi, rec, *oda))
                }
                _ => None,
            })
            .collect();
        recs.sort_unstable();
        let mut out = Vec::with_capacity(recs.len() * 4);
        // (sfi, first, last, oda count, all so far oda)
        let mut cur: Option<(u8, u8, u8, u8, bool)> = None;
        for (sfi, rec, oda) in recs {
            cur = match cur {
                Some((s, f, l, n, lead))
                    if s == sfi && l.checked_add(1) == Some(rec) && (!oda || lead) =>
                {
                    Some((s, f, rec, n + u8::from(oda), lead && oda))
                }
                prev => {
                    if let Some((s, f, l, n, _)) = prev {
                        out.extend_from_slice(&[s << 3, f, l, n]);
                    }
                    Some((sfi, rec, rec, u8::from(oda), oda))
                }
            };
        }
        if let Some((s, f, l, n, _)) = cur {
            out.extend_from_slice(&[s << 3, f, l, n]);
        }
        out
    }
}

fn parse_oda(c: &Ctx<'_>, table: &toml::Table) -> Result<OdaRule, Finding> {
    let empty = toml::Table::new();
    let t = c.table(table, "oda", "oda")?.unwrap_or(&empty);
    const ODA_KEYS: [&str; 6] = [
        "method",
        "icc_key_bits",
        "icc_exponent",
        "sda_tag_list",
        "dac",
        "certificates",
    ];
    if let Some(k) = t.keys().find(|k| !ODA_KEYS.contains(&k.as_str())) {
        return Err(c.err(
            format!("oda.{k}"),
            format!("unknown key (known: {})", ODA_KEYS.join(", ")),
        ));
    }
    let method = match c.string(t, "method", "oda.method")?.unwrap_or("none") {
        "none" => OdaMethod::None,
        "sda" => OdaMethod::Sda,
        "dda" => OdaMethod::Dda,
        "cda" => OdaMethod::Cda,
        _ => return Err(c.err("oda.method", "must be none, sda, dda or cda")),
    };
    let icc_key_bits = match c.int(t, "icc_key_bits", "oda.icc_key_bits")? {
        None if method.needs_icc_key() => {
            return Err(c.err("oda.icc_key_bits", "is required for dda and cda"));
        }
        None => 0,
        Some(b) if (512..=1984).contains(&b) && b % 8 == 0 => usize::try_from(b).unwrap_or(0),
        Some(_) => {
            return Err(c.err(
                "oda.icc_key_bits",
                "must be a multiple of 8 from 512 to 1984",
            ));
        }
    };
    let icc_exponent = match c.int(t, "icc_exponent", "oda.icc_exponent")? {
        None => RsaExponent::Three,
        Some(e) => u32::try_from(e)
            .ok()
            .and_then(|e| RsaExponent::from_value(e).ok())
            .ok_or_else(|| c.err("oda.icc_exponent", "must be 3 or 65537"))?,
    };
    let sda_tag_list = match c.string(t, "sda_tag_list", "oda.sda_tag_list")? {
        None => None,
        Some(s) => {
            let b = c.hex(s, "oda.sda_tag_list")?;
            if b.is_empty() || b.iter().any(|t| *t != 0x82) {
                return Err(c.err("oda.sda_tag_list", "may list only tag 82 (AIP)"));
            }
            Some(b)
        }
    };
    let dac = match c.string(t, "dac", "oda.dac")? {
        None => [0xDA, 0xC0],
        Some(s) => c
            .hex(s, "oda.dac")?
            .try_into()
            .map_err(|_| c.err("oda.dac", "must be 2 bytes"))?,
    };
    let certificates = match c.string(t, "certificates", "oda.certificates")? {
        None | Some("shared") => CertificateLayout::Shared,
        Some("per-interface") => CertificateLayout::PerInterface,
        Some(_) => {
            return Err(c.err("oda.certificates", "must be shared or per-interface"));
        }
    };
    Ok(OdaRule {
        method,
        icc_key_bits,
        icc_exponent,
        sda_tag_list,
        dac,
        certificates,
    })
}

fn parse_pin(c: &Ctx<'_>, table: &toml::Table) -> Result<PinRule, Finding> {
    let empty = toml::Table::new();
    let t = c.table(table, "pin", "pin")?.unwrap_or(&empty);
    if let Some(k) = t
        .keys()
        .find(|k| !["control", "try_limit", "cvm_check"].contains(&k.as_str()))
    {
        return Err(c.err(
            format!("pin.{k}"),
            "unknown key (known: control, try_limit, cvm_check)",
        ));
    }
    let refuse_cvm_mismatch = match c.string(t, "cvm_check", "pin.cvm_check")? {
        None | Some("warn") => false,
        Some("refuse") => true,
        Some(_) => return Err(c.err("pin.cvm_check", "must be warn or refuse")),
    };
    let control = match c.int(t, "control", "pin.control")? {
        None => 2,
        Some(n) if (0..=15).contains(&n) => u8::try_from(n).unwrap_or(2),
        Some(_) => return Err(c.err("pin.control", "must be a nibble 0-15")),
    };
    let try_limit = match c.int(t, "try_limit", "pin.try_limit")? {
        None => 3,
        Some(n) if (1..=15).contains(&n) => u8::try_from(n).unwrap_or(3),
        Some(_) => return Err(c.err("pin.try_limit", "must be 1-15")),
    };
    Ok(PinRule {
        control,
        try_limit,
        refuse_cvm_mismatch,
    })
}

fn parse_slots(c: &Ctx<'_>, t: &toml::Table, path: &str) -> Result<Option<Vec<TagSlot>>, Finding> {
    let Some(list) = c.strings(t, "tags", path)? else {
        return Ok(None);
    };
    list.iter()
        .map(|s| {
            parse_slot(s).ok_or_else(|| {
                c.err(
                    path,
                    format!("`{s}` is not a valid tag (hex, optional trailing ?)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse_dgi(c: &Ctx<'_>, id: u16, t: &toml::Table) -> Result<DgiRule, Finding> {
    let base = format!("dgi.{id:04X}");
    let p = |k: &str| format!("{base}.{k}");
    if let Some(k) = t.keys().find(|k| !DGI_KEYS.contains(&k.as_str())) {
        return Err(c.err(
            p(k),
            format!("unknown key (known: {})", DGI_KEYS.join(", ")),
        ));
    }
    let secret = tags::dgi_is_secret(id);
    let encrypt = c.bool(t, "encrypt", &p("encrypt"), secret)?;
    let pad_default = matches!(id, 0x8201..=0x8205 | 0x8301..=0x8305);
    let pad = c.bool(t, "pad", &p("pad"), pad_default)?;
    let required = c.bool(t, "required", &p("required"), true)?;
    let slots = parse_slots(c, t, &p("tags"))?;
    let value = c.string(t, "value", &p("value"))?;
    let content = if tags::is_record_id(id) {
        record_content(c, id, t, slots, value.is_some())?
    } else if let Some(tags) = slots {
        tags_content(c, id, t, tags)?
    } else if let Some(v) = value {
        DgiContent::Verbatim(c.hex(v, &p("value"))?)
    } else {
        match id {
            0x8000 => DgiContent::MasterKeys,
            0x9000 => DgiContent::KeyCheckValues,
            0x8010 => DgiContent::PinBlock,
            0x9010 => DgiContent::PinTry,
            0x8201..=0x8205 => DgiContent::IccCrt(id.to_be_bytes()[1]),
            _ => {
                return Err(c.err(
                    &base,
                    "needs tags or a value (only 8000, 9000, 8010, 9010, 8201-8205 are computed)",
                ));
            }
        }
    };
    Ok(DgiRule {
        id,
        encrypt,
        pad,
        required,
        content,
    })
}

/// A record DGI's content: its tags (no value) and interfaces; SFI 1 to 10 only.
fn record_content(
    c: &Ctx<'_>,
    id: u16,
    t: &toml::Table,
    slots: Option<Vec<TagSlot>>,
    has_value: bool,
) -> Result<DgiContent, Finding> {
    let base = format!("dgi.{id:04X}");
    let p = |k: &str| format!("{base}.{k}");
    let tags = slots.ok_or_else(|| c.err(p("tags"), "a record DGI needs its tags"))?;
    if has_value {
        return Err(c.err(p("value"), "a record DGI is built from its tags"));
    }
    let interfaces = match c.strings(t, "interfaces", &p("interfaces"))? {
        None => vec![Interface::Contact, Interface::Contactless],
        Some(l) => l
            .iter()
            .map(|s| {
                Interface::parse(s)
                    .ok_or_else(|| c.err(p("interfaces"), "must list contact and/or contactless"))
            })
            .collect::<Result<_, _>>()?,
    };
    let [sfi, _] = id.to_be_bytes();
    if sfi > dgi::MAX_TEMPLATE_SFI {
        return Err(c.err(
            &base,
            "records of SFI 11-30 are not built by profiles (template 70 records only)",
        ));
    }
    Ok(DgiContent::Record {
        tags,
        oda: c.bool(t, "oda", &p("oda"), false)?,
        interfaces,
    })
}

/// A DGI built from tags: optional template, interface, per-DGI values, raw concatenation.
fn tags_content(
    c: &Ctx<'_>,
    id: u16,
    t: &toml::Table,
    tags: Vec<TagSlot>,
) -> Result<DgiContent, Finding> {
    let p = |k: &str| format!("dgi.{id:04X}.{k}");
    let template = match c.string(t, "template", &p("template"))? {
        None => None,
        Some(s) => Some(
            parse_tag(s)
                .filter(|t| t.is_constructed())
                .ok_or_else(|| c.err(p("template"), "must be a constructed tag in hex"))?,
        ),
    };
    let interface = match c.string(t, "interface", &p("interface"))? {
        None => Interface::Contact,
        Some(s) => Interface::parse(s)
            .ok_or_else(|| c.err(p("interface"), "must be contact or contactless"))?,
    };
    let mut values = BTreeMap::new();
    if let Some(v) = c.table(t, "values", &p("values"))? {
        for (k, v) in v {
            let path = p(&format!("values.{k}"));
            let tag = parse_tag(k).ok_or_else(|| c.err(&path, "is not a valid tag"))?;
            let s = v
                .as_str()
                .ok_or_else(|| c.err(&path, "must be a hex string"))?;
            values.insert(tag, c.hex(s, &path)?);
        }
    }
    let raw = c.bool(t, "raw", &p("raw"), false)?;
    if raw && template.is_some() {
        return Err(c.err(p("raw"), "a raw DGI has no template"));
    }
    Ok(DgiContent::Tags {
        template,
        tags,
        interface,
        values,
        raw,
    })
}

/// All chip profiles by name.
#[derive(Debug, Clone, Default)]
pub struct ChipProfiles {
    profiles: Vec<ChipProfile>,
}

impl ChipProfiles {
    /// Builds the set, rejecting duplicate names.
    pub fn new(profiles: Vec<ChipProfile>) -> Result<Self, Finding> {
        for (i, p) in profiles.iter().enumerate() {
            if let Some(q) = profiles.iter().take(i).find(|q| q.name == p.name) {
                return Err(Finding::new(
                    format!("{}: name", p.source),
                    format!("chip profile {} is already defined in {}", p.name, q.source),
                ));
            }
        }
        Ok(Self { profiles })
    }

    /// Looks a profile up by name.
    pub fn get(&self, name: &str) -> Option<&ChipProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// All profiles.
    pub fn profiles(&self) -> &[ChipProfile] {
        &self.profiles
    }
}
