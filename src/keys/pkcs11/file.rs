//! The PKCS#11 store file (docs/hsm.md): which module, which token, where the user PIN comes
//! from, whether the token is a test token, and the public halves of the issuer ODA keys.
//!
//! ```toml
//! [pkcs11]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token = "persodesk-demo"
//! pin_env = "PERSODESK_HSM_PIN"      # or pin_file = "/etc/persodesk/hsm.pin" (mode 0600)
//! test = true
//!
//! [[issuer]]                          # the private key is the token object issuer-rsa/<index>
//! index = 1
//! exponent = 3
//! certificate = "…"                   # 90
//! remainder = "…"                     # 92
//! rid = "A000000004"
//! ca_index = "E1"
//! ca_modulus = "…"
//! ca_exponent = 3
//! ```

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::domain::oda::{EmvPublicKey, RsaExponent};
use crate::keys::KeyFileError;

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable.
    Env(String),
    /// A file readable by its owner only (mode 0600 or stricter).
    File(PathBuf),
}

/// The public half of an issuer ODA key whose private key is on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPublic {
    /// The order's `odaKeyIndex`.
    pub index: u32,
    /// The issuer public exponent.
    pub exponent: RsaExponent,
    /// Issuer public key certificate (90).
    pub certificate: Vec<u8>,
    /// Issuer public key remainder (92), empty when absent.
    pub remainder: Vec<u8>,
    /// RID of the CA.
    pub rid: [u8; 5],
    /// CA public key index (8F).
    pub ca_index: u8,
    /// The CA public key, to check the certificate at load.
    pub ca_key: EmvPublicKey,
}

/// A parsed store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFile {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token label.
    pub token: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// A test token: its keys count as test keys.
    pub test: bool,
    /// The issuer entries.
    pub issuers: Vec<IssuerPublic>,
}

impl StoreFile {
    /// Parses store file text; `file` names it in errors.
    pub fn parse_text(file: &str, text: &str) -> Result<Self, KeyFileError> {
        parse(file, text)
    }
}

/// Whether `text` is a PKCS#11 store file (it has a `[pkcs11]` table).
pub fn is_pkcs11_file(text: &str) -> bool {
    text.parse::<toml::Table>()
        .map(|t| t.contains_key("pkcs11"))
        .unwrap_or(false)
}

type Rule = (String, String);

fn string<'t>(t: &'t toml::Table, at: &str, field: &str) -> Result<Option<&'t str>, Rule> {
    match t.get(field) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err((format!("{at}.{field}"), "must be a string".into())),
    }
}

fn required<'t>(t: &'t toml::Table, at: &str, field: &str) -> Result<&'t str, Rule> {
    string(t, at, field)?.ok_or_else(|| (format!("{at}.{field}"), "is required".into()))
}

fn hex_field(t: &toml::Table, at: &str, field: &str, empty_ok: bool) -> Result<Vec<u8>, Rule> {
    match string(t, at, field)? {
        None | Some("") if empty_ok => Ok(Vec::new()),
        None => Err((format!("{at}.{field}"), "is required (hex string)".into())),
        Some(s) => hex::decode(s).map_err(|_| {
            (
                format!("{at}.{field}"),
                "must be an even number of hex digits".into(),
            )
        }),
    }
}

fn exponent(t: &toml::Table, at: &str, field: &str) -> Result<RsaExponent, Rule> {
    match t.get(field) {
        Some(toml::Value::Integer(i)) => u32::try_from(*i)
            .ok()
            .and_then(|e| RsaExponent::from_value(e).ok())
            .ok_or_else(|| (format!("{at}.{field}"), "must be 3 or 65537".into())),
        _ => Err((format!("{at}.{field}"), "is required: 3 or 65537".into())),
    }
}

const PKCS11_FIELDS: [&str; 5] = ["module", "token", "pin_env", "pin_file", "test"];

fn unknown(t: &toml::Table, at: &str, known: &[&str]) -> Result<(), Rule> {
    match t.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err((
            format!("{at}.{k}"),
            format!("unknown field (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn pkcs11_table(t: &toml::Table) -> Result<(PathBuf, String, PinSource, bool), Rule> {
    let at = "pkcs11";
    unknown(t, at, &PKCS11_FIELDS)?;
    let module = PathBuf::from(required(t, at, "module")?);
    let token = required(t, at, "token")?.to_string();
    let pin = match (string(t, at, "pin_env")?, string(t, at, "pin_file")?) {
        (Some(v), None) => PinSource::Env(v.to_string()),
        (None, Some(f)) => PinSource::File(PathBuf::from(f)),
        _ => {
            return Err((
                "pkcs11.pin_env".into(),
                "exactly one of pin_env and pin_file is required".into(),
            ));
        }
    };
    let test = match t.get("test") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(("pkcs11.test".into(), "must be true or false".into())),
    };
    Ok((module, token, pin, test))
}

fn issuer(i: usize, v: &toml::Value) -> Result<IssuerPublic, Rule> {
    let at = format!("issuer[{}]", i + 1);
    let toml::Value::Table(t) = v else {
        return Err((at, "must be a table".into()));
    };
    let known: Vec<&str> = std::iter::once("index")
        .chain(crate::keys::software_chip::ISSUER_PUBLIC_FIELDS)
        .collect();
    unknown(t, &at, &known)?;
    let index = match t.get("index") {
        Some(toml::Value::Integer(n)) => u32::try_from(*n).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        (
            format!("{at}.index"),
            "must be a non-negative integer".into(),
        )
    })?;
    let rid = hex_field(t, &at, "rid", false)?
        .try_into()
        .map_err(|_| (format!("{at}.rid"), "must be 5 bytes".to_string()))?;
    let ca_index = match hex_field(t, &at, "ca_index", false)?.as_slice() {
        [b] => *b,
        _ => return Err((format!("{at}.ca_index"), "must be 1 byte".into())),
    };
    let ca_key = EmvPublicKey::new(
        &hex_field(t, &at, "ca_modulus", false)?,
        exponent(t, &at, "ca_exponent")?,
    )
    .map_err(|e| (format!("{at}.ca_modulus"), e.to_string()))?;
    Ok(IssuerPublic {
        index,
        exponent: exponent(t, &at, "exponent")?,
        certificate: hex_field(t, &at, "certificate", false)?,
        remainder: hex_field(t, &at, "remainder", true)?,
        rid,
        ca_index,
        ca_key,
    })
}

/// Parses a store file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<StoreFile, KeyFileError> {
    let err = |(location, rule): Rule| KeyFileError {
        file: file.to_string(),
        location,
        rule,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|_| err(("file".into(), "not valid TOML".into())))?;
    if let Some(k) = table
        .keys()
        .find(|k| !["pkcs11", "issuer"].contains(&k.as_str()))
    {
        return Err(err((
            k.clone(),
            "unknown top-level key (expected [pkcs11] and [[issuer]])".into(),
        )));
    }
    let Some(toml::Value::Table(p)) = table.get("pkcs11") else {
        return Err(err(("pkcs11".into(), "must be a table".into())));
    };
    let (module, token, pin, test) = pkcs11_table(p).map_err(err)?;
    let issuers = match table.get("issuer") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| issuer(i, v))
            .collect::<Result<_, _>>()
            .map_err(err)?,
        Some(_) => return Err(err(("issuer".into(), "must be [[issuer]] tables".into()))),
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = issuers.iter().find(|i| !seen.insert(i.index)) {
        return Err(err((
            format!("issuer index {}", dup.index),
            "is defined twice".into(),
        )));
    }
    Ok(StoreFile {
        module,
        token,
        pin,
        test,
        issuers,
    })
}

impl PinSource {
    /// Reads the PIN. Errors name the variable or file, never the PIN.
    pub fn read(&self) -> Result<Zeroizing<String>, (String, String)> {
        match self {
            Self::Env(var) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
                (
                    "pkcs11.pin_env".into(),
                    format!("the environment variable {var} is not set"),
                )
            }),
            Self::File(path) => read_pin_file(path),
        }
    }
}

fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, (String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let at = || "pkcs11.pin_file".to_string();
    let meta = std::fs::metadata(path).map_err(|e| {
        (
            at(),
            format!("{} cannot be read: {}", path.display(), e.kind()),
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err((
            at(),
            format!(
                "{} is readable by others (mode {mode:o}); it must be 0600",
                path.display()
            ),
        ));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        (
            at(),
            format!("{} cannot be read: {}", path.display(), e.kind()),
        )
    })?);
    Ok(Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[pkcs11]\nmodule = \"/m.so\"\ntoken = \"t\"\npin_env = \"P\"\n";

    #[test]
    fn recognises_and_parses_a_minimal_file() {
        assert!(is_pkcs11_file(MIN));
        assert!(!is_pkcs11_file("[[key]]\nusage = \"cvk\"\n"));
        let f = parse("s.toml", MIN).expect("parses");
        assert_eq!(f.token, "t");
        assert_eq!(f.pin, PinSource::Env("P".into()));
        assert!(!f.test);
    }

    #[test]
    fn names_the_field_and_the_rule() {
        let both = format!("{MIN}pin_file = \"/p\"\n");
        let e = parse("s.toml", &both).expect_err("two PIN sources");
        assert_eq!(e.location, "pkcs11.pin_env");
        let e = parse("s.toml", "[pkcs11]\ntoken = \"t\"\n").expect_err("no module");
        assert_eq!(e.to_string(), "s.toml: pkcs11.module: is required");
        let e = parse("s.toml", &format!("{MIN}colour = 1\n")).expect_err("unknown");
        assert_eq!(e.location, "pkcs11.colour");
    }

    #[test]
    fn a_pin_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("persodesk-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("pin");
        std::fs::write(&f, "1234\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = PinSource::File(f.clone()).read().expect_err("0644 refused");
        assert!(e.1.contains("must be 0600"), "{}", e.1);
        assert!(!e.1.contains("1234"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(PinSource::File(f).read().expect("0600").as_str(), "1234");
        let _ = std::fs::remove_dir_all(dir);
    }
}
