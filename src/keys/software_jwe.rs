//! JWE keys of the software store (usage `jwe`) and [`JweKeys`] for it:
//!
//! ```toml
//! [[key]]
//! usage = "jwe"
//! kid = "bureau-enc-2026-01"   # the JWE header kid
//! algorithm = "ec-p256"
//! value = "<64 hex digits>"    # the private scalar
//! public = "04<128 hex digits>" # the public point, checked against value at load
//! test = true
//! ```
//!
//! The private scalar stays here (zeroized on drop); the key agreement hands out only Z.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::SoftwareKeyStore;
use crate::domain::jwe::{P256Point, SharedSecret};
use crate::domain::keystore::{
    JweKeyError, JweKeys, JwePublicKey, KeyAlgorithm, KeyInfo, KeyRef, KeyUsage,
};

/// The fields of a `jwe` entry.
pub(crate) const JWE_FIELDS: [&str; 6] = ["usage", "kid", "algorithm", "value", "public", "test"];

/// One JWE key: the private scalar and its public information.
pub(crate) struct JweEntry {
    pub(crate) info: KeyInfo,
    public: P256Point,
    /// Zeroized on drop.
    secret: p256::SecretKey,
}

impl fmt::Debug for JweEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JweEntry")
            .field("info", &self.info)
            .field("public", &self.public)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// The JWE keys of a store, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct JweKeyring {
    keys: BTreeMap<String, JweEntry>,
}

/// The check value of a public point: the first 3 bytes of SHA-256(04 || X || Y), upper hex.
pub fn ec_kcv(public: &P256Point) -> String {
    hex::encode_upper(&Sha256::digest(public.sec1())[..3])
}

type FieldError = (String, String);

fn string<'t>(t: &'t toml::Table, field: &str) -> Result<&'t str, FieldError> {
    match t.get(field) {
        Some(toml::Value::String(s)) => Ok(s),
        Some(_) => Err((field.into(), "must be a string".into())),
        None => Err((field.into(), "is required".into())),
    }
}

impl JweKeyring {
    /// Parses and checks a `jwe` entry; errors are (field, rule) without values.
    pub(crate) fn add(&mut self, t: &toml::Table) -> Result<(), FieldError> {
        if let Some(k) = t.keys().find(|k| !JWE_FIELDS.contains(&k.as_str())) {
            let known = JWE_FIELDS.join(", ");
            return Err((k.clone(), format!("unknown field (jwe keys: {known})")));
        }
        let kid = string(t, "kid")?;
        if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_graphic()) {
            return Err((
                "kid".into(),
                "must be printable ASCII without spaces".into(),
            ));
        }
        if string(t, "algorithm")? != "ec-p256" {
            return Err(("algorithm".into(), "must be ec-p256 for jwe keys".into()));
        }
        let test = match t.get("test") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(("test".into(), "must be true or false".into())),
        };
        let value = Zeroizing::new(string(t, "value")?.to_string());
        let mut scalar = Zeroizing::new([0u8; 32]);
        if value.len() != 64 || hex::decode_to_slice(value.as_bytes(), scalar.as_mut()).is_err() {
            return Err((
                "value".into(),
                "must be 64 hex digits (the private scalar)".into(),
            ));
        }
        let secret = p256::SecretKey::from_slice(scalar.as_ref()).map_err(|_| {
            (
                "value".to_string(),
                "is not a valid P-256 private scalar (1 to n-1)".to_string(),
            )
        })?;
        let public = P256Point::from(secret.public_key());
        let declared = hex::decode(string(t, "public")?)
            .ok()
            .and_then(|b| P256Point::from_sec1(&b).ok())
            .ok_or_else(|| {
                let rule = "must be 04 || X || Y in hex (130 digits), a point on P-256";
                ("public".to_string(), rule.to_string())
            })?;
        if declared != public {
            return Err(("public".into(), "does not match the private value".into()));
        }
        let index = u32::try_from(self.keys.len() + 1).unwrap_or(u32::MAX);
        let info = KeyInfo {
            key: KeyRef::new(KeyUsage::Jwe, index),
            algorithm: KeyAlgorithm::EcP256,
            kcv: ec_kcv(&public),
            test,
        };
        let entry = JweEntry {
            info,
            public,
            secret,
        };
        if self.keys.insert(kid.to_string(), entry).is_some() {
            return Err(("kid".into(), format!("{kid} is defined twice")));
        }
        Ok(())
    }

    /// Every key's public information.
    pub(crate) fn infos(&self) -> impl Iterator<Item = &KeyInfo> {
        self.keys.values().map(|e| &e.info)
    }

    /// The public information of a key by its reference (`jwe #n`).
    pub(crate) fn info(&self, key: KeyRef) -> Option<KeyInfo> {
        self.infos().find(|i| i.key == key).cloned()
    }

    fn get(&self, kid: &str) -> Result<&JweEntry, JweKeyError> {
        self.keys
            .get(kid)
            .ok_or_else(|| JweKeyError::UnknownKid(kid.to_string()))
    }
}

impl SoftwareKeyStore {
    /// The private scalar of the JWE test key `kid`, for the key ceremony's import of a demo
    /// file into a token (`None` for an unknown kid or a live key). Zeroized on drop.
    pub(crate) fn jwe_test_scalar(&self, kid: &str) -> Option<Zeroizing<Vec<u8>>> {
        let e = self.jwe_ring().keys.get(kid)?;
        e.info
            .test
            .then(|| Zeroizing::new(e.secret.to_bytes().to_vec()))
    }

    /// The `kid` of every JWE key, with its public key.
    pub fn jwe_keys(&self) -> Vec<JwePublicKey> {
        self.jwe_ring()
            .keys
            .iter()
            .map(|(kid, e)| JwePublicKey {
                kid: kid.clone(),
                point: e.public.clone(),
                test: e.info.test,
            })
            .collect()
    }
}

impl JweKeys for SoftwareKeyStore {
    fn jwe_agree(&self, kid: &str, epk: &P256Point) -> Result<SharedSecret, JweKeyError> {
        let e = self.jwe_ring().get(kid)?;
        Ok(SharedSecret::agree(&e.secret, epk))
    }

    fn jwe_public(&self, kid: &str) -> Result<JwePublicKey, JweKeyError> {
        let e = self.jwe_ring().get(kid)?;
        Ok(JwePublicKey {
            kid: kid.to_string(),
            point: e.public.clone(),
            test: e.info.test,
        })
    }
}
