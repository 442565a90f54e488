//! Card orders in the shape of a central-issuance card order API.
//!
//! A file holds one order object, a batch `{"cards": [...]}` (or a bare array), or JSON Lines.
//! Each order is validated on its own: one bad order never stops the others. Errors and warnings
//! name the JSON path and the rule (`encryptedData.exp: month 13 is not 01-12`); an unknown field
//! is a warning. Field names are camelCase exactly as in the API.
//!
//! File-level rules: a duplicate key in any JSON object is an error (JSON parsers disagree on
//! which value wins), so is the same order id twice in one file, and a file holding no orders.
//! `cardId` and `issuerRequestId` are printable ASCII from `A-Z a-z 0-9 - _ . : /`, at most 64
//! characters, without a run of 12 or more digits (an id is shown in clear everywhere: it must
//! not carry a card number, newlines or terminal escapes); an order with a bad id is listed as
//! `#<position>`.

use std::borrow::Cow;

use serde_json::Value;

use super::json::{self, Json, Obj};

use super::fields::{
    Cvv, EncodedName, EncryptedPinBlock, LUHN_RULE, Pan, PinBlockFormat, Psn, Pvv, Yymm,
};
use super::finding::Finding;
use super::jwe::{self, ClearObject};
use super::keystore::{JweKeys, NoJweKeys};
use super::track::{Track, TrackNo, Tracks};

/// The order's PIN: an encrypted block and the key it is under. Never a clear PIN.
#[derive(Debug, Clone)]
pub struct OrderPin {
    /// ISO 9564 format (and key usage).
    pub format: PinBlockFormat,
    /// The encrypted PIN block.
    pub block: EncryptedPinBlock,
    /// Index of the key (`zpk` or `pin-tk`) the block is encrypted under.
    pub kid: u32,
}

/// The Model 2 envelope (`encryptedData.tlvData`), syntactically checked; its cryptographic
/// checks belong to Model 2 import.
#[derive(Clone, PartialEq, Eq)]
pub struct TlvEnvelope {
    /// Application AID the data is for.
    pub applet_aid: Vec<u8>,
    /// Sum of the lengths of all DGI values.
    pub applet_data_length: u32,
    /// Applet start code, if given.
    pub applet_start_code: Option<String>,
    /// Plaintext length in bytes.
    pub tlv_data_length: u32,
    /// Index of the KEK (usage `kek`).
    pub kek_id: u32,
    /// MAC key wrapped under the KEK.
    pub mac_key: Vec<u8>,
    /// The encrypted DGI stream.
    pub tlv_data: Vec<u8>,
    /// MAC over the plaintext.
    pub mac: Vec<u8>,
}

impl std::fmt::Debug for TlvEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlvEnvelope")
            .field("applet_aid", &hex::encode_upper(&self.applet_aid))
            .field("tlv_data_length", &self.tlv_data_length)
            .field("kek_id", &self.kek_id)
            .field("tlv_data", &format_args!("<{} bytes>", self.tlv_data.len()))
            .finish_non_exhaustive()
    }
}

/// `paymentApplication`: the product configuration name and key indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentApplication {
    /// Payment application configuration name inside the product.
    pub config: Option<String>,
    /// Issuer RSA key index for ODA certificates.
    pub oda_key_index: Option<u32>,
    /// Issuer master key index (AC, SMI, SMC).
    pub derivation_key_index: Option<u32>,
    /// CVK index.
    pub cv_key_index: Option<u32>,
    /// PVK index.
    pub pv_key_index: Option<u32>,
}

/// `trackData`: tracks the issuer supplies, used as-is after validation.
pub type TrackOverrides = Tracks;

/// A validated order. Sensitive fields mask themselves in `Debug`.
#[derive(Debug, Clone)]
pub struct Order {
    /// `cardId`, else `issuerRequestId`, else `#<position>`.
    pub id: String,
    /// Product id.
    pub card_product_id: String,
    /// PAN.
    pub pan: Pan,
    /// Expiry YYMM.
    pub exp: Yymm,
    /// Track 1 name; may come from `trackData.track1` when absent.
    pub encoded_name: Option<EncodedName>,
    /// Payment account reference.
    pub par: Option<String>,
    /// PAN sequence number (default 00).
    pub psn: Psn,
    /// Effective date YYMM.
    pub effective_date: Option<Yymm>,
    /// Encrypted PIN.
    pub pin: Option<OrderPin>,
    /// iCVV given by the issuer.
    pub icvv: Option<Cvv>,
    /// CVV1 given by the issuer.
    pub cvv1: Option<Cvv>,
    /// PVV given by the issuer.
    pub pvv: Option<Pvv>,
    /// Model 2 envelope.
    pub tlv_data: Option<TlvEnvelope>,
    /// Configuration name and key indexes.
    pub payment_application: PaymentApplication,
    /// Tracks given as-is.
    pub track_data: TrackOverrides,
}

/// One order of a file: its id, whatever could be read for listing, and the outcome.
#[derive(Debug)]
pub struct OrderEntry {
    /// The order id (see [`Order::id`]).
    pub id: String,
    /// 1-based position in the file.
    pub position: usize,
    /// `cardProductId` when readable.
    pub card_product_id: Option<String>,
    /// Masked PAN when readable.
    pub masked_pan: Option<String>,
    /// The validated order, or every error found.
    pub outcome: Result<Order, Vec<Finding>>,
    /// Warnings (unknown fields, ...).
    pub warnings: Vec<Finding>,
    /// `issuerRequestId` when given and valid (production checks both ids).
    pub issuer_request_id: Option<String>,
}

/// The whole file could not be read as orders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty")]
    Empty,
    #[error("not valid JSON or JSON Lines: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
}

fn json_error(e: &serde_json::Error) -> String {
    // serde_json syntax errors carry line/column and a category, never the input text; our own
    // data errors (duplicate keys) name a known key at most.
    if e.is_data() {
        return e.to_string();
    }
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Rules that depend on products, applied while validating orders.
#[derive(Debug, Clone, Default)]
pub struct OrderRules {
    /// Products whose orders may carry a PAN with a wrong Luhn check digit (test products); for
    /// them the failure is a warning, for every other product an error.
    pub luhn_warning_only: Vec<String>,
}

impl OrderRules {
    fn luhn_is_warning(&self, product: Option<&str>) -> bool {
        product.is_some_and(|p| self.luhn_warning_only.iter().any(|x| x == p))
    }
}

/// Parses an order file's text (one order, a batch, an array, or JSON Lines) without JWE keys:
/// a JWE `encryptedData` is refused (see [`parse_orders`]).
pub fn parse_order_file(text: &str, rules: &OrderRules) -> Result<Vec<OrderEntry>, FileError> {
    parse_orders(text, rules, &NoJweKeys)
}

/// The intake of every front end: parses an order file's text (one order, a batch, an array, or
/// JSON Lines); a JWE `encryptedData` is decrypted with `jwe`'s key for its `kid`.
pub fn parse_orders(
    text: &str,
    rules: &OrderRules,
    jwe: &dyn JweKeys,
) -> Result<Vec<OrderEntry>, FileError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(FileError::Empty);
    }
    let entries = match json::parse(trimmed) {
        Ok(v) => entries_from_document(&v, rules, jwe)?,
        Err(whole) if whole.is_data() => return Err(FileError::Json(json_error(&whole))),
        Err(whole) => {
            let lines: Vec<(usize, &str)> = trimmed
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .collect();
            if lines.len() < 2 {
                return Err(FileError::Json(json_error(&whole)));
            }
            entries_from_lines(&lines, rules, jwe)
        }
    };
    if entries.is_empty() {
        return Err(FileError::Shape("the file holds no orders".into()));
    }
    Ok(flag_duplicate_ids(entries))
}

/// The same order id twice in one file: every occurrence after the first is an error.
fn flag_duplicate_ids(mut entries: Vec<OrderEntry>) -> Vec<OrderEntry> {
    let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in &mut entries {
        if e.id.starts_with('#') {
            continue;
        }
        if let Some(at) = first.get(&e.id) {
            flag_duplicate(e, *at);
        } else {
            first.insert(e.id.clone(), e.position);
        }
    }
    entries
}

/// Marks `entry` as repeating the id of the order at position `at` (an error).
pub fn flag_duplicate(entry: &mut OrderEntry, at: usize) {
    flag(entry, duplicate_finding(at));
}

/// The error of an order repeating the id of the order at position `at`.
pub fn duplicate_finding(at: usize) -> Finding {
    Finding::new(
        "cardId",
        format!("duplicate order id: order #{at} of this file has the same id"),
    )
}

/// Adds the error `f` to `entry` (a valid order becomes refused).
pub fn flag(entry: &mut OrderEntry, f: Finding) {
    match &mut entry.outcome {
        Ok(_) => entry.outcome = Err(vec![f]),
        Err(errors) => errors.push(f),
    }
}

/// An order id's key for the duplicate rule of a stream (`crate::batch::seen::SeenIds`).
pub type IdKey = [u32; 3];

/// Keys ids for the duplicate rule of a stream: two SipHash-1-3 keys drawn per process
/// (shared by the threads that parse orders).
#[derive(Debug, Default, Clone)]
pub struct IdHasher(std::hash::RandomState, std::hash::RandomState);

impl IdHasher {
    /// The key of `id`; `None` for positional ids (`#3`), which the rule does not cover.
    pub fn key(&self, id: &str) -> Option<IdKey> {
        use std::hash::BuildHasher;
        if id.starts_with('#') {
            return None;
        }
        let a = self.0.hash_one(id);
        let b = self.1.hash_one(id);
        Some([a as u32, (a >> 32) as u32, b as u32])
    }
}

/// Whether a file whose first non-blank line is `first` and that has more non-blank lines is
/// JSON Lines as [`parse_orders`] reads it: the first line is one JSON value on its own (else
/// the file is read whole, and a duplicate key on that line is a file error as there).
pub fn first_line_is_an_order_line(first: &str) -> bool {
    json::parse(first.trim()).is_ok()
}

/// The entry of one JSON Lines line at `position` (1-based among non-blank lines), `line_no`
/// its line number: the validated order, or the line's JSON error.
pub fn entry_from_line(
    line: &str,
    position: usize,
    line_no: usize,
    rules: &OrderRules,
    jwe: &dyn JweKeys,
) -> OrderEntry {
    match json::parse(line) {
        Ok(v) => validate_order_json(&v, position, rules, jwe),
        Err(e) => refused_line(
            position,
            line_no,
            format!("not valid JSON: {}", json_error(&e)),
        ),
    }
}

/// The entry of a line that cannot be an order (`rule` says why).
pub fn refused_line(position: usize, line_no: usize, rule: String) -> OrderEntry {
    OrderEntry {
        id: format!("#{position}"),
        position,
        card_product_id: None,
        masked_pan: None,
        outcome: Err(vec![Finding::new(format!("line {line_no}"), rule)]),
        warnings: Vec::new(),
        issuer_request_id: None,
    }
}

/// Whether `key` is one of the order format's keys (named in a duplicate-key error; other keys
/// are input and are not repeated).
pub fn is_known_key(key: &str) -> bool {
    [
        &ORDER_KEYS[..],
        &DATA_KEYS,
        &PIN_KEYS,
        &TLV_KEYS,
        &APP_KEYS,
        &TRACK_KEYS,
    ]
    .iter()
    .any(|set| set.contains(&key))
        || key == "cards"
}

fn entries_from_document(
    v: &Json<'_>,
    rules: &OrderRules,
    jwe: &dyn JweKeys,
) -> Result<Vec<OrderEntry>, FileError> {
    match v {
        Json::Object(m) if m.contains_key("cards") => match m.get("cards") {
            Some(Json::Array(cards)) => Ok(cards
                .iter()
                .enumerate()
                .map(|(i, c)| validate_order_json(c, i + 1, rules, jwe))
                .collect()),
            _ => Err(FileError::Shape("cards: must be an array of orders".into())),
        },
        Json::Object(_) => Ok(vec![validate_order_json(v, 1, rules, jwe)]),
        Json::Array(cards) => Ok(cards
            .iter()
            .enumerate()
            .map(|(i, c)| validate_order_json(c, i + 1, rules, jwe))
            .collect()),
        _ => Err(FileError::Shape(
            "expected an order object, {\"cards\": [...]}, or JSON Lines".into(),
        )),
    }
}

fn entries_from_lines(
    lines: &[(usize, &str)],
    rules: &OrderRules,
    jwe: &dyn JweKeys,
) -> Vec<OrderEntry> {
    lines
        .iter()
        .enumerate()
        .map(|(i, (line_no, line))| entry_from_line(line, i + 1, line_no + 1, rules, jwe))
        .collect()
}

/// Collects findings while walking one order.
#[derive(Default)]
struct Ctx {
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl Ctx {
    fn err(&mut self, path: impl Into<String>, rule: impl Into<String>) {
        self.errors.push(Finding::new(path, rule));
    }

    fn unknown_fields(&mut self, obj: &Obj<'_>, base: &str, known: &[&str]) {
        if obj.has_only(known) {
            return;
        }
        for k in obj.keys().into_iter().filter(|k| !known.contains(k)) {
            self.warnings
                .push(Finding::new(join(base, k), "unknown field, ignored"));
        }
    }

    /// A string field; `null` counts as absent.
    fn string<'v>(
        &mut self,
        obj: &'v Obj<'_>,
        base: &str,
        key: &str,
        required: bool,
    ) -> Option<&'v str> {
        match obj.get(key) {
            None | Some(Json::Null) => {
                if required {
                    self.err(join(base, key), "is required");
                }
                None
            }
            Some(Json::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.err(join(base, key), "must be a string");
                None
            }
        }
    }

    /// A string field checked by `parse`, whose error is the rule.
    fn parsed<T>(
        &mut self,
        obj: &Obj<'_>,
        base: &str,
        key: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(obj, base, key, required)?;
        match parse(s) {
            Ok(v) => Some(v),
            Err(rule) => {
                self.err(join(base, key), rule);
                None
            }
        }
    }

    /// A key index: a non-negative integer (a JSON number, or a string of digits).
    fn index(&mut self, obj: &Obj<'_>, base: &str, key: &str, required: bool) -> Option<u32> {
        let rule = "must be a non-negative integer (0-4294967295)";
        match obj.get(key) {
            None | Some(Json::Null) => {
                if required {
                    self.err(join(base, key), "is required");
                }
                None
            }
            Some(Json::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(v) => Some(v),
                None => {
                    self.err(join(base, key), rule);
                    None
                }
            },
            Some(Json::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                match s.parse::<u32>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.err(join(base, key), rule);
                        None
                    }
                }
            }
            Some(_) => {
                self.err(join(base, key), rule);
                None
            }
        }
    }

    fn object<'v, 'a>(
        &mut self,
        obj: &'v Obj<'a>,
        base: &str,
        key: &str,
        required: bool,
    ) -> Option<&'v Obj<'a>> {
        match obj.get(key) {
            None | Some(Json::Null) => {
                if required {
                    self.err(join(base, key), "is required");
                }
                None
            }
            Some(Json::Object(m)) => Some(m),
            Some(_) => {
                self.err(join(base, key), "must be an object");
                None
            }
        }
    }
}

fn hex_bytes(min: usize, max: usize) -> impl Fn(&str) -> Result<Vec<u8>, String> {
    move |s: &str| {
        if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("must be an even number of hex digits".into());
        }
        let n = s.len() / 2;
        if n < min || n > max {
            return Err(format!("must be {min}-{max} bytes, got {n}"));
        }
        hex::decode(s).map_err(|_| "must be hex".to_string())
    }
}

const ORDER_KEYS: [&str; 6] = [
    "cardId",
    "issuerRequestId",
    "cardProductId",
    "encryptedData",
    "paymentApplication",
    "trackData",
];
const DATA_KEYS: [&str; 11] = [
    "pan",
    "exp",
    "encodedName",
    "paymentAccountReference",
    "panSequenceNumber",
    "effectiveDate",
    "pin",
    "icvv",
    "cvv1",
    "pvv",
    "tlvData",
];
const PIN_KEYS: [&str; 3] = ["type", "encryptedPin", "kid"];
const TLV_KEYS: [&str; 8] = [
    "appletAid",
    "appletDataLength",
    "appletStartCode",
    "tlvDataLength",
    "kekId",
    "macKey",
    "tlvData",
    "mac",
];
const APP_KEYS: [&str; 5] = [
    "config",
    "odaKeyIndex",
    "derivationKeyIndex",
    "cvKeyIndex",
    "pvKeyIndex",
];
const TRACK_KEYS: [&str; 3] = ["track1", "track2", "track3"];

/// The longest run of digits in `s`, counting digits separated only by spaces, hyphens or dots
/// as one run (`4761 7390 0101 0010` is a 16-digit run).
pub fn longest_digit_run(s: &str) -> usize {
    // By bytes: digits and separators are ASCII, and every byte of a non-ASCII character
    // (0x80 and above) ends a run as the character does.
    let mut longest = 0;
    let mut run = 0;
    for b in s.bytes() {
        if b.is_ascii_digit() {
            run += 1;
            longest = longest.max(run);
        } else if !matches!(b, b' ' | b'-' | b'.') {
            run = 0;
        }
    }
    longest
}

/// The number of characters of `s` (its length when ASCII, without decoding).
pub fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Checks an order id (`cardId`, `issuerRequestId`): the rule when it is not acceptable.
pub fn check_order_id(s: &str) -> Result<(), String> {
    let n = char_len(s);
    if n == 0 || n > 64 {
        return Err(format!("must be 1-64 characters, got {n}"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/');
    let all_allowed = s.bytes().all(|b| allowed(char::from(b)));
    if let Some(c) = (!all_allowed)
        .then(|| s.chars().find(|c| !allowed(*c)))
        .flatten()
    {
        return Err(if c.is_ascii_graphic() || c == ' ' {
            format!("character {c:?} is not allowed (A-Z a-z 0-9 - _ . : /)")
        } else {
            "holds a control or non-ASCII character (allowed: A-Z a-z 0-9 - _ . : /)".into()
        });
    }
    if longest_digit_run(s) >= 12 {
        return Err("must not contain a run of 12 or more digits (a card number?)".into());
    }
    Ok(())
}

/// The keys an order id is read from, in order.
const ID_KEYS: [&str; 2] = ["cardId", "issuerRequestId"];

/// The order's id: the first of [`ID_KEYS`] holding a non-blank string, when that one is
/// acceptable (`ok`, per key: [`check_order_id`] passed); else `#<position>`.
fn order_id(obj: &Obj<'_>, position: usize, ok: [bool; 2]) -> String {
    ID_KEYS
        .iter()
        .zip(ok)
        .find_map(|(k, ok)| match obj.get(k) {
            Some(Json::String(s)) if !s.trim().is_empty() => Some((s.as_str(), ok)),
            _ => None,
        })
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| s.to_string())
        .unwrap_or_else(|| format!("#{position}"))
}

/// `encryptedData`: a plain object, or a JWE compact string decrypted with `jwe` into `opened`
/// (see [`jwe::open_object`]); a JWE that cannot be opened is the order's error.
fn encrypted_data<'v>(
    ctx: &mut Ctx,
    obj: &'v Obj<'v>,
    jwe: &dyn JweKeys,
    opened: &'v mut Option<ClearObject>,
) -> Option<Cow<'v, Obj<'v>>> {
    match obj.get("encryptedData") {
        Some(Json::String(compact)) => match jwe::open_object(compact, jwe) {
            Ok(clear) => Some(Cow::Owned(Obj::from_map(
                Option::insert(opened, clear).map(),
            ))),
            Err(e) => {
                ctx.err("encryptedData", e.to_string());
                None
            }
        },
        _ => ctx
            .object(obj, "", "encryptedData", true)
            .map(Cow::Borrowed),
    }
}

/// Validates one order value found at `position` (1-based), without JWE keys.
pub fn validate_order_value(value: &Value, position: usize, rules: &OrderRules) -> OrderEntry {
    validate_order_with(value, position, rules, &NoJweKeys)
}

/// Validates one order value found at `position` (1-based); a JWE `encryptedData` is decrypted
/// with `jwe`.
pub fn validate_order_with(
    value: &Value,
    position: usize,
    rules: &OrderRules,
    jwe: &dyn JweKeys,
) -> OrderEntry {
    validate_order_json(&Json::from_value(value), position, rules, jwe)
}

/// [`validate_order_with`] on a parsed [`Json`] value (strings borrowed from the input).
pub fn validate_order_json(
    value: &Json<'_>,
    position: usize,
    rules: &OrderRules,
    jwe: &dyn JweKeys,
) -> OrderEntry {
    let mut ctx = Ctx::default();
    let Json::Object(obj) = value else {
        return not_an_object(position);
    };
    ctx.unknown_fields(obj, "", &ORDER_KEYS);
    // Each id checked once: `Some(())` when present and acceptable (else its error is noted).
    let id_ok = ID_KEYS.map(|k| ctx.parsed(obj, "", k, false, check_order_id).is_some());
    let id = order_id(obj, position, id_ok);
    let issuer_request_id = match obj.get("issuerRequestId") {
        Some(Json::String(s)) if id_ok[1] => Some(s.to_string()),
        _ => None,
    };
    let card_product_id = ctx.parsed(obj, "", "cardProductId", true, |s| {
        if s.trim().is_empty() {
            Err("must not be empty".into())
        } else {
            Ok(s.to_string())
        }
    });

    let mut opened = None;
    let data = encrypted_data(&mut ctx, obj, jwe, &mut opened);
    let empty = Obj::default();
    let d: &Obj<'_> = data.as_deref().unwrap_or(&empty);
    let base = "encryptedData";
    if data.is_some() {
        ctx.unknown_fields(d, base, &DATA_KEYS);
    }
    let required = data.is_some();
    let pan = validate_pan(&mut ctx, d, required, rules, card_product_id.as_deref());
    let exp = ctx.parsed(d, base, "exp", required, Yymm::parse);
    let encoded_name = ctx.parsed(d, base, "encodedName", false, EncodedName::parse);
    let par = ctx.parsed(d, base, "paymentAccountReference", false, parse_par);
    let psn = ctx
        .parsed(d, base, "panSequenceNumber", false, Psn::parse)
        .unwrap_or_default();
    let effective_date = ctx.parsed(d, base, "effectiveDate", false, Yymm::parse);
    if let (Some(eff), Some(exp)) = (effective_date, exp)
        && eff > exp
    {
        ctx.err(
            "encryptedData.effectiveDate",
            "must not be after encryptedData.exp",
        );
    }
    let icvv = ctx.parsed(d, base, "icvv", false, Cvv::parse);
    let cvv1 = ctx.parsed(d, base, "cvv1", false, Cvv::parse);
    let pvv = ctx.parsed(d, base, "pvv", false, Pvv::parse);
    let pin = validate_pin(&mut ctx, d);
    let tlv_data = validate_tlv(&mut ctx, d);

    let payment_application = validate_payment_application(&mut ctx, obj);
    let track_data = validate_tracks(&mut ctx, obj, pan.as_ref(), exp);

    let encoded_name = cardholder_name(&mut ctx, encoded_name, &track_data);

    let masked_pan = pan.as_ref().map(Pan::masked);
    let outcome = match (ctx.errors.is_empty(), card_product_id.clone(), pan, exp) {
        (true, Some(card_product_id), Some(pan), Some(exp)) => Ok(Order {
            id: id.clone(),
            card_product_id,
            pan,
            exp,
            encoded_name,
            par,
            psn,
            effective_date,
            pin,
            icvv,
            cvv1,
            pvv,
            tlv_data,
            payment_application,
            track_data,
        }),
        _ => Err(std::mem::take(&mut ctx.errors)),
    };
    OrderEntry {
        id,
        position,
        card_product_id,
        masked_pan,
        outcome,
        warnings: ctx.warnings,
        issuer_request_id,
    }
}

/// The entry of an order that is not a JSON object.
fn not_an_object(position: usize) -> OrderEntry {
    OrderEntry {
        id: format!("#{position}"),
        position,
        card_product_id: None,
        masked_pan: None,
        outcome: Err(vec![Finding::new(
            format!("#{position}"),
            "an order must be a JSON object",
        )]),
        warnings: Vec::new(),
        issuer_request_id: None,
    }
}

/// `encryptedData.pan`; a Luhn failure is an error, or a warning for the products the rules
/// allow it.
fn validate_pan(
    ctx: &mut Ctx,
    d: &Obj<'_>,
    required: bool,
    rules: &OrderRules,
    card_product_id: Option<&str>,
) -> Option<Pan> {
    let pan = ctx.parsed(d, "encryptedData", "pan", required, Pan::parse);
    if let Some(p) = &pan
        && !p.luhn_ok()
    {
        if rules.luhn_is_warning(card_product_id) {
            ctx.warnings.push(Finding::new(
                "encryptedData.pan",
                format!("{LUHN_RULE} (allowed: test product)"),
            ));
        } else {
            ctx.err("encryptedData.pan", LUHN_RULE);
        }
    }
    pan
}

/// A payment account reference: 29 characters 0-9 A-Z.
fn parse_par(s: &str) -> Result<String, String> {
    if s.len() == 29
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        Ok(s.to_string())
    } else {
        Err("must be 29 characters 0-9 A-Z".into())
    }
}

/// The cardholder name: `encodedName`, else track 1's name field; a track 1 name that differs
/// from `encodedName` is a warning (the track is used as given).
fn cardholder_name(
    ctx: &mut Ctx,
    encoded_name: Option<EncodedName>,
    track_data: &TrackOverrides,
) -> Option<EncodedName> {
    let encoded_name = encoded_name.or_else(|| {
        let name = track_data.track1.as_ref()?.name_field()?;
        match EncodedName::parse(name) {
            Ok(n) => Some(n),
            Err(rule) => {
                ctx.err("trackData.track1", format!("name field: {rule}"));
                None
            }
        }
    });
    if let (Some(n), Some(t1)) = (&encoded_name, &track_data.track1)
        && t1.name_field().is_some_and(|f| f != n.as_str())
    {
        ctx.warnings.push(Finding::new(
            "trackData.track1",
            "name field differs from encryptedData.encodedName; the track is used as given",
        ));
    }
    encoded_name
}

fn validate_pin(ctx: &mut Ctx, d: &Obj<'_>) -> Option<OrderPin> {
    let base = "encryptedData.pin";
    let p = ctx.object(d, "encryptedData", "pin", false)?;
    ctx.unknown_fields(p, base, &PIN_KEYS);
    let format = ctx.parsed(p, base, "type", true, PinBlockFormat::parse);
    let kid = ctx.index(p, base, "kid", true);
    let block = match format {
        Some(f) => ctx.parsed(p, base, "encryptedPin", true, |s| {
            EncryptedPinBlock::parse(s, f)
        }),
        None => {
            ctx.string(p, base, "encryptedPin", true);
            None
        }
    };
    Some(OrderPin {
        format: format?,
        block: block?,
        kid: kid?,
    })
}

fn validate_tlv(ctx: &mut Ctx, d: &Obj<'_>) -> Option<TlvEnvelope> {
    let base = "encryptedData.tlvData";
    let t = ctx.object(d, "encryptedData", "tlvData", false)?;
    ctx.unknown_fields(t, base, &TLV_KEYS);
    let applet_aid = ctx.parsed(t, base, "appletAid", true, hex_bytes(5, 16));
    let applet_data_length = ctx.index(t, base, "appletDataLength", true);
    let applet_start_code = ctx
        .string(t, base, "appletStartCode", false)
        .map(str::to_string);
    let tlv_data_length = ctx.index(t, base, "tlvDataLength", true);
    let kek_id = ctx.index(t, base, "kekId", true);
    let mac_key = ctx.parsed(t, base, "macKey", true, hex_bytes(8, 48));
    let tlv_data = ctx.parsed(t, base, "tlvData", true, hex_bytes(8, 1 << 20));
    let mac = ctx.parsed(t, base, "mac", true, hex_bytes(4, 16));
    Some(TlvEnvelope {
        applet_aid: applet_aid?,
        applet_data_length: applet_data_length?,
        applet_start_code,
        tlv_data_length: tlv_data_length?,
        kek_id: kek_id?,
        mac_key: mac_key?,
        tlv_data: tlv_data?,
        mac: mac?,
    })
}

fn validate_payment_application(ctx: &mut Ctx, obj: &Obj<'_>) -> PaymentApplication {
    let base = "paymentApplication";
    let Some(a) = ctx.object(obj, "", base, false) else {
        return PaymentApplication::default();
    };
    ctx.unknown_fields(a, base, &APP_KEYS);
    PaymentApplication {
        config: ctx.string(a, base, "config", false).map(str::to_string),
        oda_key_index: ctx.index(a, base, "odaKeyIndex", false),
        derivation_key_index: ctx.index(a, base, "derivationKeyIndex", false),
        cv_key_index: ctx.index(a, base, "cvKeyIndex", false),
        pv_key_index: ctx.index(a, base, "pvKeyIndex", false),
    }
}

fn validate_tracks(
    ctx: &mut Ctx,
    obj: &Obj<'_>,
    pan: Option<&Pan>,
    exp: Option<Yymm>,
) -> TrackOverrides {
    let base = "trackData";
    let Some(t) = ctx.object(obj, "", base, false) else {
        return TrackOverrides::default();
    };
    ctx.unknown_fields(t, base, &TRACK_KEYS);
    let mut one = |no: TrackNo| {
        ctx.parsed(t, base, no.key(), false, |s| {
            let track = Track::from_order(no, s, pan, exp).map_err(|e| e.to_string())?;
            check_track_fields(no, s)?;
            Ok(track)
        })
    };
    TrackOverrides {
        track1: one(TrackNo::T1),
        track2: one(TrackNo::T2),
        track3: one(TrackNo::T3),
    }
}

/// A given track 1 or 2 carries the expiry and the service code (7 digits after the field
/// separator), and a track 1 name no card number written with spaces.
fn check_track_fields(no: TrackNo, text: &str) -> Result<(), String> {
    let after = match no {
        TrackNo::T1 => {
            let mut parts = text.splitn(3, '^');
            parts.next();
            let name = parts.next().unwrap_or_default();
            if longest_digit_run(name) >= 12 {
                return Err("the name field must not contain a run of 12 or more digits".into());
            }
            parts.next().unwrap_or_default()
        }
        TrackNo::T2 => text.split_once('=').map_or("", |(_, rest)| rest),
        TrackNo::T3 => return Ok(()),
    };
    if after.len() < 7 || !after.bytes().take(7).all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "must carry the expiry (YYMM) and the service code (3 digits) after the {}",
            if no == TrackNo::T1 {
                "name"
            } else {
                "'=' separator"
            }
        ));
    }
    Ok(())
}
