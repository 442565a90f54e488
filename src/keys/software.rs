//! A software key store read from TOML:
//!
//! ```toml
//! [[key]]
//! usage = "cvk"          # cvk | pvk | zpk | pin-tk | imk-ac | imk-smi | imk-smc | kek | kmc | issuer-rsa | jwe
//! index = 3              # the index orders use
//! algorithm = "tdes"     # tdes (16 or 24 bytes) | aes (16, 24, 32 bytes)
//! value = "0123456789ABCDEFFEDCBA9876543210"
//! kcv = "08D7B4"         # checked at load
//! test = true            # only test keys may ever be revealed
//! ```
//!
//! `jwe` entries (named by `kid`, not `index`) are read by [`super::software_jwe`].
//!
//! Key values are zeroized on drop and never appear in `Debug` or in errors; the file's text and
//! the parsed TOML strings are zeroized as soon as the keys are read.
//!
//! An `audit` key (algorithm `aes`, 16-32 bytes) seals the store's audit trail
//! ([`SoftwareKeyStore::audit_sealer`]). [`SoftwareKeyStore::production_findings`] names keys
//! production refuses: published test-vector values, the demo store's values, all-zero keys and
//! TDES keys with equal halves (K1 = K2, or K2 = K3), whatever their `test` flag says.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

use crate::domain::crypto;
use crate::domain::fields::{Cvv, Pan, PinBlockFormat, Pvv};
use crate::domain::keystore::{
    KeyAlgorithm, KeyError, KeyInfo, KeyRef, KeyStore, KeyUsage, PinBlockRef,
};
use crate::domain::{cvv, pinblock, pvv};

/// A key file could not be loaded. Names the file, the entry and the rule, never a key value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}: {rule}")]
pub struct KeyFileError {
    /// The file.
    pub file: String,
    /// `key[3].kcv`, or `key cvk #3`, or the TOML position.
    pub location: String,
    /// The rule.
    pub rule: String,
}

/// One stored key. Other key store traits implemented for [`SoftwareKeyStore`] (in sibling
/// files) read values through [`SoftwareKeyStore::entry`]; values never leave `keys/`.
pub(crate) struct Entry {
    pub(crate) info: KeyInfo,
    pub(crate) value: Zeroizing<Vec<u8>>,
    /// The precomputed schedule of a TDES key (zeroized on drop), built once at load.
    pub(crate) tdes: Option<Box<crypto::TdesSchedule>>,
    /// The issuer RSA key and its certificate material (`algorithm = "rsa"` entries only).
    pub(crate) rsa: Option<Box<super::software_chip::IssuerRsa>>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("info", &self.info)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Keys held in memory, looked up by usage and index.
#[derive(Debug, Default)]
pub struct SoftwareKeyStore {
    keys: BTreeMap<KeyRef, Entry>,
    /// JWE keys (usage `jwe`), by `kid`.
    jwe: super::software_jwe::JweKeyring,
    source: String,
}

const KEY_FIELDS: [&str; 6] = ["usage", "index", "algorithm", "value", "kcv", "test"];

impl SoftwareKeyStore {
    /// Reads and checks a key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let file = path.display().to_string();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyFileError {
            file: file.clone(),
            location: "file".into(),
            rule: format!("cannot be read: {}", e.kind()),
        })?);
        Self::from_toml(&file, &text)
    }

    /// Parses and checks key file text; `file` names it in errors. The parsed strings are
    /// zeroized before returning (the caller zeroizes `text`).
    pub fn from_toml(file: &str, text: &str) -> Result<Self, KeyFileError> {
        let mut table = Self::parse_table(file, text)?;
        let result = Self::from_table(file, &table);
        scrub_table(&mut table);
        result
    }

    fn parse_table(file: &str, text: &str) -> Result<toml::Table, KeyFileError> {
        let err = |location: String, rule: String| KeyFileError {
            file: file.to_string(),
            location,
            rule,
        };
        // A TOML syntax error message quotes the offending line, which may hold a key value, so
        // only the position is kept.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "file".into());
            err(at, "not valid TOML".into())
        })?;
        Ok(table)
    }

    fn from_table(file: &str, table: &toml::Table) -> Result<Self, KeyFileError> {
        let err = |location: String, rule: String| key_file_error(file, location, rule);
        if let Some(k) = table.keys().find(|k| k.as_str() != "key") {
            return Err(err(
                k.clone(),
                "unknown top-level key (expected [[key]] tables)".into(),
            ));
        }
        let entries = match table.get("key") {
            None => &Vec::new(),
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                return Err(err(
                    "key".into(),
                    "must be an array of [[key]] tables".into(),
                ));
            }
        };
        let mut keys = BTreeMap::new();
        let mut jwe = super::software_jwe::JweKeyring::default();
        for (i, e) in entries.iter().enumerate() {
            let toml::Value::Table(t) = e else {
                return Err(err(format!("key[{}]", i + 1), "must be a table".into()));
            };
            if t.get("usage").and_then(|u| u.as_str()) == Some("jwe") {
                jwe.add(t)
                    .map_err(|(field, rule)| err(format!("key[{}].{field}", i + 1), rule))?;
                continue;
            }
            let (key, entry) = parse_entry(file, i + 1, t)?;
            if keys.insert(key, entry).is_some() {
                return Err(err(
                    format!("key {key}"),
                    "is defined twice (usage and index must be unique)".into(),
                ));
            }
        }
        Ok(Self {
            keys,
            jwe,
            source: file.to_string(),
        })
    }

    /// The sealer of the audit trail: the `audit` key with the lowest index, if any.
    pub fn audit_sealer(&self) -> Option<Arc<dyn crate::store::Sealer>> {
        let (key, e) = self
            .keys
            .iter()
            .find(|(k, e)| k.usage == KeyUsage::Audit && !e.value.is_empty())?;
        Some(Arc::new(AuditSeal {
            key: e.value.clone(),
            name: key.to_string(),
        }))
    }

    /// Keys production refuses whatever their `test` flag: published or demo values, weak keys.
    /// Each finding names the key and the rule, never the value.
    pub fn production_findings(&self) -> Vec<(KeyRef, &'static str)> {
        let demo = demo_values();
        let mut out = Vec::new();
        for (key, e) in &self.keys {
            let v = e.value.as_slice();
            if v.is_empty() {
                continue;
            }
            let rule = if v.iter().all(|b| *b == 0) {
                Some("is all zeros (a weak key)")
            } else if e.info.algorithm == KeyAlgorithm::Tdes && tdes_halves_equal(v) {
                Some("has equal TDES parts (K1 = K2 or K2 = K3: a weak key)")
            } else if demo.iter().any(|d| same_key(v, d)) {
                Some("is a demo key value (assets/demo/keys.toml)")
            } else if super::published::PUBLISHED_KEYS
                .iter()
                .any(|(hex, _)| same_key(v, &hex::decode(hex).unwrap_or_default()))
            {
                Some("is a value published in test vectors")
            } else {
                None
            };
            if let Some(rule) = rule {
                out.push((*key, rule));
            }
        }
        out
    }

    /// The file the keys came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every key's public information.
    pub fn list(&self) -> Vec<KeyInfo> {
        let keys = self.keys.values().map(|e| &e.info);
        keys.chain(self.jwe.infos()).cloned().collect()
    }

    /// The JWE keys.
    pub(crate) fn jwe_ring(&self) -> &super::software_jwe::JweKeyring {
        &self.jwe
    }

    /// The entry of `key`, checked to be of the `needed` algorithm.
    pub(crate) fn entry(&self, key: KeyRef, needed: KeyAlgorithm) -> Result<&Entry, KeyError> {
        let e = self.keys.get(&key).ok_or(KeyError::NotFound(key))?;
        if e.info.algorithm != needed {
            return Err(KeyError::WrongAlgorithm {
                key,
                found: e.info.algorithm.as_str(),
                needed: needed.as_str(),
            });
        }
        Ok(e)
    }
}

/// The demo store's key values (embedded), for [`SoftwareKeyStore::production_findings`].
fn demo_values() -> Vec<Zeroizing<Vec<u8>>> {
    const DEMO: &str = include_str!("../../assets/demo/keys.toml");
    SoftwareKeyStore::from_toml("embedded demo keys", DEMO)
        .map(|s| s.keys.into_values().map(|e| e.value.clone()).collect())
        .unwrap_or_default()
}

/// Equal keys, ignoring the DES parity bits (the low bit of each byte) for DES-sized values.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x & 0xFE == y & 0xFE)
}

/// TDES keying option 2 with K1 = K2, or option 1 with K1 = K2 or K2 = K3 (single DES in
/// effect), parity bits ignored.
fn tdes_halves_equal(v: &[u8]) -> bool {
    let part = |i: usize| v.get(i * 8..i * 8 + 8).unwrap_or_default();
    same_key(part(0), part(1)) || (v.len() == 24 && same_key(part(1), part(2)))
}

/// Zeroizes every string of a parsed key file.
fn scrub_table(table: &mut toml::Table) {
    fn scrub(v: &mut toml::Value) {
        match v {
            toml::Value::String(s) => s.zeroize(),
            toml::Value::Array(a) => a.iter_mut().for_each(scrub),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| scrub(v)),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, v)| scrub(v));
}

/// HMAC-SHA256 with the audit key; the key stays here and is zeroized on drop.
struct AuditSeal {
    key: Zeroizing<Vec<u8>>,
    name: String,
}

impl crate::store::Sealer for AuditSeal {
    fn mac(&self, message: &[u8]) -> Result<[u8; 32], String> {
        Ok(crate::store::audit::hmac_sha256(&self.key, message))
    }

    fn key_name(&self) -> String {
        self.name.clone()
    }
}

impl KeyStore for SoftwareKeyStore {
    fn info(&self, key: KeyRef) -> Result<KeyInfo, KeyError> {
        self.keys
            .get(&key)
            .map(|e| e.info.clone())
            .or_else(|| self.jwe.info(key))
            .ok_or(KeyError::NotFound(key))
    }

    fn visa_cvv(
        &self,
        cvk: KeyRef,
        pan: &Pan,
        exp: &str,
        service_code: &str,
    ) -> Result<Cvv, KeyError> {
        let e = self.entry(cvk, KeyAlgorithm::Tdes)?;
        match &e.tdes {
            Some(schedule) => cvv::visa_cvv_scheduled(schedule, pan.reveal(), exp, service_code),
            None => cvv::visa_cvv(&e.value, pan.reveal(), exp, service_code),
        }
        .map_err(|source| KeyError::Crypto { key: cvk, source })
    }

    fn visa_pvv(
        &self,
        pvk: KeyRef,
        pvki: u8,
        pan: &Pan,
        pin: PinBlockRef<'_>,
    ) -> Result<Pvv, KeyError> {
        let pvk_entry = self.entry(pvk, KeyAlgorithm::Tdes)?;
        let pin_key = pin.key;
        let clear_pin = match pin.format {
            PinBlockFormat::Iso0 | PinBlockFormat::Iso0Tk => {
                let e = self.entry(pin_key, KeyAlgorithm::Tdes)?;
                match &e.tdes {
                    Some(schedule) => {
                        pinblock::iso0_decrypt_scheduled(schedule, pin.block.bytes(), pan)
                    }
                    None => pinblock::iso0_decrypt(&e.value, pin.block.bytes(), pan),
                }
            }
            PinBlockFormat::Iso4 => {
                let e = self.entry(pin_key, KeyAlgorithm::Aes)?;
                pinblock::iso4_decrypt(&e.value, pin.block.bytes(), pan)
            }
        }
        .map_err(|source| KeyError::PinBlock {
            key: pin_key,
            source,
        })?;
        match &pvk_entry.tdes {
            Some(schedule) => pvv::visa_pvv_scheduled(schedule, pan, pvki, &clear_pin),
            None => pvv::visa_pvv(&pvk_entry.value, pan, pvki, &clear_pin),
        }
        .map_err(|source| KeyError::Crypto { key: pvk, source })
    }
}

impl SoftwareKeyStore {
    /// An ISO 9564 format 0 PIN block of `pin` for `pan` under the PIN key `zpk`, for test order
    /// files (`persodesk demo orders`): refused unless `zpk` is a test key.
    pub fn test_iso0_pin_block(
        &self,
        zpk: KeyRef,
        pin: &crate::domain::fields::Pin,
        pan: &Pan,
    ) -> Result<[u8; 8], KeyError> {
        let e = self.entry(zpk, KeyAlgorithm::Tdes)?;
        if !e.info.test {
            return Err(KeyError::NotFound(zpk));
        }
        pinblock::iso0_encrypt(&e.value, pin, pan)
            .map_err(|source| KeyError::Crypto { key: zpk, source })
    }
}

fn key_file_error(file: &str, location: String, rule: String) -> KeyFileError {
    KeyFileError {
        file: file.to_string(),
        location,
        rule,
    }
}

/// One `[[key]]` table (the `n`th, 1-based) other than a JWE key: usage, index, test flag and
/// algorithm, then the RSA or symmetric key it holds.
fn parse_entry(file: &str, n: usize, t: &toml::Table) -> Result<(KeyRef, Entry), KeyFileError> {
    let err = |location: String, rule: String| key_file_error(file, location, rule);
    let loc = |field: &str| format!("key[{n}].{field}");
    let is_rsa = t.get("algorithm").and_then(|a| a.as_str()) == Some("rsa");
    let allowed = |k: &str| {
        if is_rsa {
            k != "value" && (KEY_FIELDS.contains(&k) || super::software_chip::is_rsa_field(k))
        } else {
            KEY_FIELDS.contains(&k)
        }
    };
    if let Some(k) = t.keys().find(|k| !allowed(k.as_str())) {
        return Err(err(
            loc(k),
            format!("unknown field (known: {})", KEY_FIELDS.join(", ")),
        ));
    }
    let s = |field: &str| -> Result<&str, KeyFileError> {
        match t.get(field) {
            Some(toml::Value::String(s)) => Ok(s),
            Some(_) => Err(err(loc(field), "must be a string".into())),
            None => Err(err(loc(field), "is required".into())),
        }
    };
    let usage_s = s("usage")?;
    let usage = KeyUsage::parse(usage_s).ok_or_else(|| {
        let known: Vec<_> = KeyUsage::ALL.iter().map(|u| u.as_str()).collect();
        err(
            loc("usage"),
            format!("unknown usage `{usage_s}` (known: {})", known.join(", ")),
        )
    })?;
    let index = match t.get("index") {
        Some(toml::Value::Integer(n)) => u32::try_from(*n)
            .map_err(|_| err(loc("index"), "must be a non-negative integer".into()))?,
        Some(_) => return Err(err(loc("index"), "must be a non-negative integer".into())),
        None => return Err(err(loc("index"), "is required".into())),
    };
    let key = KeyRef::new(usage, index);
    let test = match t.get("test") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(err(loc("test"), "must be true or false".into())),
    };
    let algorithm = match s("algorithm")? {
        "tdes" => KeyAlgorithm::Tdes,
        "aes" => KeyAlgorithm::Aes,
        "rsa" => return rsa_entry(file, key, test, t, || s("kcv")).map(|e| (key, e)),
        _ => {
            return Err(err(
                loc("algorithm"),
                "must be tdes or aes (or rsa for issuer-rsa keys)".into(),
            ));
        }
    };
    let value_hex = Zeroizing::new(s("value")?.to_string());
    let entry = symmetric_entry(file, key, algorithm, test, &value_hex, || s("kcv"))?;
    Ok((key, entry))
}

/// An issuer RSA key; the declared `kcv` (read once the key parsed) must be the modulus's
/// check value.
fn rsa_entry<'a>(
    file: &str,
    key: KeyRef,
    test: bool,
    t: &toml::Table,
    declared_kcv: impl FnOnce() -> Result<&'a str, KeyFileError>,
) -> Result<Entry, KeyFileError> {
    let err = |location: String, rule: String| key_file_error(file, location, rule);
    let (rsa, kcv_hex) = super::software_chip::parse_issuer_rsa(key, t)
        .map_err(|(field, rule)| err(format!("key {key}: {field}"), rule))?;
    if !declared_kcv()?.eq_ignore_ascii_case(&kcv_hex) {
        return Err(err(
            format!("key {key}: kcv"),
            "does not match the RSA modulus (first 3 bytes of SHA-1(modulus))".into(),
        ));
    }
    let info = KeyInfo {
        key,
        algorithm: KeyAlgorithm::Rsa,
        kcv: kcv_hex,
        test,
    };
    Ok(Entry {
        info,
        value: Zeroizing::new(Vec::new()),
        tdes: None,
        rsa: Some(Box::new(rsa)),
    })
}

/// A TDES or AES key from its hex value, of a length the algorithm has; the declared `kcv` (read
/// once the value checked) must be its check value.
fn symmetric_entry<'a>(
    file: &str,
    key: KeyRef,
    algorithm: KeyAlgorithm,
    test: bool,
    value_hex: &str,
    declared_kcv: impl FnOnce() -> Result<&'a str, KeyFileError>,
) -> Result<Entry, KeyFileError> {
    let err = |location: String, rule: String| key_file_error(file, location, rule);
    if !value_hex.len().is_multiple_of(2) || !value_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(
            format!("key {key}: value"),
            "must be an even number of hex digits".into(),
        ));
    }
    let value = Zeroizing::new(
        hex::decode(value_hex.as_bytes())
            .map_err(|_| err(format!("key {key}: value"), "must be hex".into()))?,
    );
    let (ok_len, lengths) = match algorithm {
        KeyAlgorithm::Tdes => (matches!(value.len(), 16 | 24), "16 or 24 bytes"),
        KeyAlgorithm::Aes => (matches!(value.len(), 16 | 24 | 32), "16, 24 or 32 bytes"),
        KeyAlgorithm::Rsa | KeyAlgorithm::EcP256 => (false, "n/a"),
    };
    if !ok_len {
        return Err(err(
            format!("key {key}: value"),
            format!(
                "is {} bytes; {} keys are {lengths}",
                value.len(),
                algorithm.as_str()
            ),
        ));
    }
    let kcv = match algorithm {
        KeyAlgorithm::Aes => crypto::kcv_aes(&value),
        _ => crypto::kcv_tdes(&value),
    }
    .map_err(|e| err(format!("key {key}: value"), e.to_string()))?;
    let kcv_hex = hex::encode_upper(kcv);
    if !declared_kcv()?.eq_ignore_ascii_case(&kcv_hex) {
        return Err(err(
            format!("key {key}: kcv"),
            "does not match the key value (check value mismatch)".into(),
        ));
    }
    let tdes = match algorithm {
        KeyAlgorithm::Tdes => crypto::TdesSchedule::new(&value).ok().map(Box::new),
        _ => None,
    };
    Ok(Entry {
        info: KeyInfo {
            key,
            algorithm,
            kcv: kcv_hex,
            test,
        },
        value,
        tdes,
        rsa: None,
    })
}
