//! The key ceremony: keys are created on the token as sensitive, non-extractable objects under
//! the label scheme — from a software store file (test keys only, for demos) or from 2-3 clear
//! components, each checked against its KCV, the combined key's KCV confirmed by the token.

use cryptoki::object::{Attribute, KeyType, ObjectClass};
use zeroize::Zeroizing;

use super::{IssuerPublic, Pkcs11KeyStore, label};
use crate::domain::crypto;
use crate::domain::keystore::{KeyAlgorithm, KeyRef, KeyStore, KeyUsage};
use crate::keys::SoftwareKeyStore;

/// One created key: its reference and the KCV the token computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The key.
    pub key: KeyRef,
    /// The KCV computed by the token after creation.
    pub kcv: String,
}

fn secret_template(
    label: &str,
    key_type: KeyType,
    value: &[u8],
    usage: KeyUsage,
) -> Vec<Attribute> {
    let wraps = matches!(usage, KeyUsage::Kek | KeyUsage::Ktk);
    // A bureau transport key only wraps and unwraps (and encrypts, for its KCV): with
    // CKA_DECRYPT a caller could undo CKM_AES_KEY_WRAP_PAD block by block (docs/hsm.md).
    let ktk = usage == KeyUsage::Ktk;
    // The IMKs derive the ICC master keys, the KMC the card's GlobalPlatform keys, in the token
    // (C_DeriveKey, docs/hsm.md).
    let derives = matches!(
        usage,
        KeyUsage::ImkAc | KeyUsage::ImkSmi | KeyUsage::ImkSmc | KeyUsage::Kmc
    );
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(!ktk),
        Attribute::Sign(!ktk),
        Attribute::Verify(!ktk),
        Attribute::Wrap(wraps),
        Attribute::Unwrap(wraps),
        Attribute::Derive(derives),
        Attribute::Value(value.to_vec()),
    ]
}

/// The `audit` key as a generic secret for `CKM_SHA256_HMAC` (SoftHSM2 and PKCS#11 HMAC take
/// no AES key): sign and verify only.
fn hmac_template(label: &str, value: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Derive(false),
        Attribute::Value(value.to_vec()),
    ]
}

/// The KCV the token will compute for `key` made from `value`: the HMAC KCV for the audit key
/// (a generic secret, [`super::hmac_kcv`]), the algorithm's KCV otherwise.
fn token_kcv(key: KeyRef, algorithm: KeyAlgorithm, value: &[u8]) -> Result<String, String> {
    if key.usage == KeyUsage::Audit {
        Ok(super::hmac_kcv(value))
    } else {
        kcv_of(algorithm, value)
    }
}

impl Pkcs11KeyStore {
    fn create(&self, template: &[Attribute], what: &str) -> Result<(), String> {
        if self.token.object(what).is_some() {
            return Err(format!("{what} is already on token {}", self.token.label));
        }
        let s = self.token.session().map_err(|e| e.rule)?;
        s.create_object(template)
            .map(|_| ())
            .map_err(|e| format!("{what}: C_CreateObject: {}", super::token::describe(&e)))
    }

    /// Creates the secret key `key` from its clear `value` (zeroized by the caller) as sensitive,
    /// non-extractable token objects; a CVK as its two single-DES halves.
    pub fn create_secret(
        &self,
        key: KeyRef,
        algorithm: KeyAlgorithm,
        value: &[u8],
    ) -> Result<(), String> {
        let l = label(key);
        if key.usage == KeyUsage::Audit {
            if algorithm != KeyAlgorithm::Aes || !(16..=32).contains(&value.len()) {
                return Err(format!("{l}: an audit key is aes, 16 to 32 bytes"));
            }
            return self.create(&hmac_template(&l, value), &l);
        }
        let key_type = match (algorithm, value.len()) {
            (KeyAlgorithm::Tdes, 16) => KeyType::DES2,
            (KeyAlgorithm::Tdes, 24) => KeyType::DES3,
            (KeyAlgorithm::Aes, 16 | 24 | 32) => KeyType::AES,
            _ => {
                return Err(format!(
                    "{l}: a {} key of {} bytes",
                    algorithm.as_str(),
                    value.len()
                ));
            }
        };
        if key.usage == KeyUsage::Cvk {
            if key_type != KeyType::DES2 {
                return Err(format!("{l}: a CVK is a 2-key TDES key"));
            }
            // Each half as a CKK_DES3 object K||K||K (single DES as a permutation): SoftHSM2
            // on OpenSSL 3 has no single-DES cipher left, so CKK_DES objects cannot be used.
            for (half, part) in [("a", &value[..8]), ("b", &value[8..])] {
                let hl = format!("{l}/{half}");
                let k = Zeroizing::new([part, part, part].concat());
                self.create(&secret_template(&hl, KeyType::DES3, &k, key.usage), &hl)?;
            }
            return Ok(());
        }
        self.create(&secret_template(&l, key_type, value, key.usage), &l)
    }

    /// Re-reads the token's objects and recomputes the KCVs (after creating objects).
    pub fn refresh(&mut self) -> Result<(), crate::keys::KeyFileError> {
        self.token
            .reindex()
            .map_err(|e| super::err(&self.source, e.location, e.rule))?;
        self.index()
    }
}

/// Imports every key of a software store file (test keys only) into the token; returns the keys
/// created with the token's KCVs (each checked against the file's) and the `[[issuer]]` entries
/// for the store file.
pub fn import_software(
    store: &mut Pkcs11KeyStore,
    software: &SoftwareKeyStore,
) -> Result<(Vec<Imported>, Vec<IssuerPublic>), String> {
    if let Some(live) = software.list().iter().find(|i| !i.test) {
        return Err(format!(
            "{}: key {} is not a test key; importing from a key file is for test keys only \
             (live keys come in as components)",
            software.source(),
            live.key
        ));
    }
    let list: Vec<_> = software
        .list()
        .into_iter()
        .filter(|i| i.key.usage != KeyUsage::Jwe)
        .collect();
    let mut issuers = Vec::new();
    // The KCV the token computes where it is not the file's (the audit key's HMAC KCV).
    let mut expected: Vec<(KeyRef, String)> = Vec::new();
    let jwe = software.jwe_keys();
    for key in &jwe {
        let scalar = software
            .jwe_test_scalar(&key.kid)
            .ok_or_else(|| format!("jwe kid {}: not a test key", key.kid))?;
        let l = format!("jwe/{}", key.kid);
        store.create(&ec_private_template(&l, &scalar), &l)?;
        store.create(&ec_public_template(&l, &key.point.sec1()), &l)?;
    }
    for info in &list {
        let e = software
            .entry(info.key, info.algorithm)
            .map_err(|e| e.to_string())?;
        match &e.rsa {
            Some(rsa) => {
                store.create(&rsa_template(info.key, &rsa.pair)?, &label(info.key))?;
                issuers.push(IssuerPublic {
                    index: info.key.index,
                    exponent: rsa.pair.public_key().exponent(),
                    certificate: rsa.oda.certificate.certificate.clone(),
                    remainder: rsa.oda.certificate.remainder.clone(),
                    rid: rsa.oda.rid,
                    ca_index: rsa.oda.ca_index,
                    ca_key: rsa.ca.key.clone(),
                });
            }
            None => {
                if info.key.usage == KeyUsage::Audit {
                    expected.push((info.key, super::hmac_kcv(&e.value)));
                }
                store.create_secret(info.key, info.algorithm, &e.value)?;
            }
        }
    }
    store.file.issuers = issuers.clone();
    store.refresh().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for key in &jwe {
        use crate::domain::keystore::JweKeys;
        let on_token = store.jwe_public(&key.kid).map_err(|e| e.to_string())?;
        if on_token.point != key.point {
            return Err(format!(
                "jwe/{}: the token holds another public point",
                key.kid
            ));
        }
        let info = store
            .list()
            .into_iter()
            .find(|i| {
                i.key.usage == KeyUsage::Jwe
                    && i.kcv == crate::keys::software_jwe::ec_kcv(&key.point)
            })
            .ok_or_else(|| format!("jwe/{}: not indexed on the token", key.kid))?;
        out.push(Imported {
            key: info.key,
            kcv: info.kcv,
        });
    }
    for info in list {
        let on_token = store.info(info.key).map_err(|e| e.to_string())?;
        let want = expected
            .iter()
            .find(|(k, _)| *k == info.key)
            .map_or(info.kcv.clone(), |(_, v)| v.clone());
        if on_token.kcv != want {
            return Err(format!(
                "{}: the token computes KCV {} where the file says {}",
                label(info.key),
                on_token.kcv,
                want
            ));
        }
        out.push(Imported {
            key: info.key,
            kcv: on_token.kcv,
        });
    }
    Ok((out, issuers))
}

/// A P-256 private key for ECDH only: sensitive, non-extractable, derive.
fn ec_private_template(label: &str, scalar: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Derive(true),
        Attribute::Sign(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::EcParams(super::token::P256_PARAMS.to_vec()),
        Attribute::Value(scalar.to_vec()),
    ]
}

/// The public half, same label: `CKA_EC_POINT` as the DER OCTET STRING of `04 || X || Y`.
fn ec_public_template(label: &str, point: &[u8]) -> Vec<Attribute> {
    let mut der = vec![0x04, u8::try_from(point.len()).unwrap_or(0)];
    der.extend_from_slice(point);
    vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::EcParams(super::token::P256_PARAMS.to_vec()),
        Attribute::EcPoint(der),
    ]
}

fn rsa_template(
    key: KeyRef,
    pair: &crate::domain::oda::RsaKeyPair,
) -> Result<Vec<Attribute>, String> {
    let crt = pair.crt_components().map_err(|e| e.to_string())?;
    let d = pair.private_exponent().map_err(|e| e.to_string())?;
    Ok(vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Label(label(key).into_bytes()),
        Attribute::Modulus(pair.modulus().to_vec()),
        Attribute::PublicExponent(pair.public_key().exponent().bytes().to_vec()),
        Attribute::PrivateExponent(d.expose().to_vec()),
        Attribute::Prime1(crt.p.expose().to_vec()),
        Attribute::Prime2(crt.q.expose().to_vec()),
        Attribute::Exponent1(crt.d_mod_p1.expose().to_vec()),
        Attribute::Exponent2(crt.d_mod_q1.expose().to_vec()),
        Attribute::Coefficient(crt.q_inv_mod_p.expose().to_vec()),
    ])
}

/// A clear key component with the KCV its custodian declared.
pub struct Component {
    /// The component value (zeroized on drop).
    pub value: Zeroizing<Vec<u8>>,
    /// Its declared KCV (hex, 6 digits).
    pub kcv: String,
}

fn kcv_of(algorithm: KeyAlgorithm, value: &[u8]) -> Result<String, String> {
    match algorithm {
        KeyAlgorithm::Aes => crypto::kcv_aes(value),
        _ => crypto::kcv_tdes(value),
    }
    .map(hex::encode_upper)
    .map_err(|e| e.to_string())
}

/// Checks each component against its KCV and XORs them; returns the combined key and its KCV.
/// Errors name the component by number, never a value.
pub fn combine(
    algorithm: KeyAlgorithm,
    components: &[Component],
) -> Result<(Zeroizing<Vec<u8>>, String), String> {
    if !(2..=3).contains(&components.len()) {
        return Err("a key is entered as 2 or 3 components".into());
    }
    let len = components[0].value.len();
    let mut key = Zeroizing::new(vec![0u8; len]);
    for (i, c) in components.iter().enumerate() {
        if c.value.len() != len {
            return Err(format!(
                "component {}: must be {len} bytes like component 1",
                i + 1
            ));
        }
        if !kcv_of(algorithm, &c.value)?.eq_ignore_ascii_case(&c.kcv) {
            return Err(format!("component {}: does not match its KCV", i + 1));
        }
        for (k, v) in key.iter_mut().zip(c.value.iter()) {
            *k ^= v;
        }
    }
    if algorithm == KeyAlgorithm::Tdes {
        crypto::adjust_odd_parity(&mut key);
    }
    let kcv = kcv_of(algorithm, &key)?;
    Ok((key, kcv))
}

/// Creates `key` from components whose combined KCV the officers confirmed as `confirmed`; the
/// token's KCV of the new object must equal it.
pub fn import_components(
    store: &mut Pkcs11KeyStore,
    key: KeyRef,
    algorithm: KeyAlgorithm,
    components: &[Component],
    confirmed: &str,
) -> Result<Imported, String> {
    let (value, kcv) = combine(algorithm, components)?;
    if !kcv.eq_ignore_ascii_case(confirmed) {
        return Err(format!(
            "{}: the combined key's KCV is {kcv}, not the confirmed {confirmed}",
            label(key)
        ));
    }
    let want = token_kcv(key, algorithm, &value)?;
    store.create_secret(key, algorithm, &value)?;
    drop(value);
    store.refresh().map_err(|e| e.to_string())?;
    let on_token = store.info(key).map_err(|e| e.to_string())?;
    if !on_token.kcv.eq_ignore_ascii_case(&want) {
        return Err(format!(
            "{}: the token computes KCV {} for the new object, not {want}",
            label(key),
            on_token.kcv
        ));
    }
    Ok(Imported {
        key,
        kcv: on_token.kcv,
    })
}

/// The `[[issuer]]` tables of a store file for `issuers`.
pub fn issuer_toml(issuers: &[IssuerPublic]) -> String {
    let mut out = String::new();
    for i in issuers {
        out.push_str(&format!(
            "\n[[issuer]]\nindex = {}\nexponent = {}\ncertificate = \"{}\"\nremainder = \"{}\"\n\
             rid = \"{}\"\nca_index = \"{:02X}\"\nca_modulus = \"{}\"\nca_exponent = {}\n",
            i.index,
            i.exponent.value(),
            hex::encode_upper(&i.certificate),
            hex::encode_upper(&i.remainder),
            hex::encode_upper(i.rid),
            i.ca_index,
            hex::encode_upper(i.ca_key.modulus()),
            i.ca_key.exponent().value(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Components and KCVs: the demo CVK 0123456789ABCDEFFEDCBA9876543210 (KCV 08D7B4, in
    // assets/demo/keys.toml) split as C1 = 1111.. and C2 = C1 xor key.
    #[test]
    fn components_are_checked_then_combined() {
        let key = hex::decode("0123456789ABCDEFFEDCBA9876543210").expect("hex");
        let c1 = vec![0x11u8; 16];
        let c2: Vec<u8> = key.iter().zip(&c1).map(|(k, c)| k ^ c).collect();
        let comp = |v: &Vec<u8>| Component {
            value: Zeroizing::new(v.clone()),
            kcv: kcv_of(KeyAlgorithm::Tdes, v).expect("kcv"),
        };
        let (combined, kcv) = combine(KeyAlgorithm::Tdes, &[comp(&c1), comp(&c2)]).expect("ok");
        assert_eq!(kcv, "08D7B4");
        assert_eq!(combined.as_slice(), key.as_slice());
        let mut bad = comp(&c2);
        bad.kcv = "000000".into();
        let e = combine(KeyAlgorithm::Tdes, &[comp(&c1), bad]).expect_err("bad kcv");
        assert_eq!(e, "component 2: does not match its KCV");
        assert!(combine(KeyAlgorithm::Tdes, &[comp(&c1)]).is_err());
    }
}
