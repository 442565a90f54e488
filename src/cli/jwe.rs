//! `persodesk jwe seal`: encrypts every order's plain `encryptedData` as a JWE (ECDH-ES, A256GCM)
//! for a bureau key of the key store, as the central-issuance API sends them. A tool for testers:
//! it uses the public key only, seals only for test keys, and is refused in production mode.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{DEFAULT_KEYS, Exit, read_keys};
use crate::domain::jwe::{self, P256Point, SealRandom};

/// Arguments of `jwe`.
#[derive(Debug, Args)]
pub struct JweArgs {
    #[command(subcommand)]
    command: JweCommand,
}

#[derive(Debug, Subcommand)]
enum JweCommand {
    /// Encrypt each order's plain encryptedData for the key `kid` (test keys only).
    Seal(SealArgs),
}

/// Arguments of `jwe seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// Order file: one order, {"cards": [...]}, an array, or JSON Lines.
    file: PathBuf,
    /// The bureau key's kid (usage jwe in the key store).
    #[arg(long)]
    kid: String,
    /// Key store file.
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `jwe`.
pub fn run(args: &JweArgs) -> Exit {
    match &args.command {
        JweCommand::Seal(a) => match seal_file(a) {
            Ok(exit) => exit,
            Err(e) => e,
        },
    }
}

fn fail(msg: impl std::fmt::Display) -> Exit {
    eprintln!("error: {msg}");
    Exit::Invalid
}

/// The recipient's public key: a test key of the store, outside production.
fn recipient(a: &SealArgs) -> Result<P256Point, Exit> {
    let mode = super::mode()?;
    if !mode.allows_reveal() {
        return Err(fail(format!(
            "jwe seal refused: this workstation runs in {mode} mode (a tool for test orders)"
        )));
    }
    let store = read_keys(&a.keys)?;
    let key = store
        .port()
        .jwe_public(&a.kid)
        .map_err(|e| fail(format!("{}: {e}", a.keys.display())))?;
    if !key.test {
        return Err(fail(format!(
            "{}: kid {} is not a test key: jwe seal is for test keys only",
            a.keys.display(),
            a.kid
        )));
    }
    Ok(key.point)
}

fn random() -> Option<SealRandom> {
    let mut r = SealRandom {
        ephemeral: Zeroizing::new([0u8; 32]),
        iv: [0u8; jwe::IV_LEN],
    };
    getrandom::fill(r.ephemeral.as_mut()).ok()?;
    getrandom::fill(&mut r.iv).ok()?;
    Some(r)
}

/// Replaces a plain `encryptedData` object of `order` by its JWE; returns whether it did.
fn seal_order(order: &mut Value, kid: &str, to: &P256Point) -> Result<bool, String> {
    let Some(data) = order.get_mut("encryptedData") else {
        return Ok(false);
    };
    if !data.is_object() {
        return Ok(false);
    }
    let plain = Zeroizing::new(data.to_string());
    // A draw that is not a valid scalar (probability ~2^-32) is drawn again.
    for _ in 0..8 {
        let r = random().ok_or("the system random generator failed")?;
        if let Some(compact) = jwe::seal(plain.as_bytes(), kid, to, &r) {
            *data = Value::String(compact);
            return Ok(true);
        }
    }
    Err("no valid ephemeral key could be drawn".into())
}

fn seal_all<'v>(
    orders: impl Iterator<Item = &'v mut Value>,
    kid: &str,
    to: &P256Point,
) -> Result<usize, String> {
    let mut n = 0;
    for o in orders {
        n += usize::from(seal_order(o, kid, to)?);
    }
    Ok(n)
}

/// Seals a whole document (one order, a batch, an array) or JSON Lines; returns the output
/// text and how many orders were sealed.
fn seal_text(text: &str, kid: &str, to: &P256Point) -> Result<(String, usize), String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if let Ok(mut doc) = serde_json::from_str::<Value>(trimmed) {
        let n = match &mut doc {
            Value::Object(m) if m.contains_key("cards") => match m.get_mut("cards") {
                Some(Value::Array(cards)) => seal_all(cards.iter_mut(), kid, to)?,
                _ => return Err("cards: must be an array of orders".into()),
            },
            Value::Array(cards) => seal_all(cards.iter_mut(), kid, to)?,
            o @ Value::Object(_) => usize::from(seal_order(o, kid, to)?),
            _ => return Err("expected an order object, {\"cards\": [...]}, or JSON Lines".into()),
        };
        let out = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        return Ok((out + "\n", n));
    }
    let mut out = String::new();
    let mut n = 0;
    for (i, line) in trimmed.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut v: Value =
            serde_json::from_str(line).map_err(|_| format!("line {}: not valid JSON", i + 1))?;
        n += usize::from(seal_order(&mut v, kid, to)?);
        out.push_str(&v.to_string());
        out.push('\n');
    }
    Ok((out, n))
}

fn write_out(out: Option<&Path>, text: &str) -> Result<(), String> {
    match out {
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("standard output: {}", e.kind())),
        Some(p) => std::fs::write(p, text)
            .map_err(|e| format!("{}: cannot be written: {}", p.display(), e.kind())),
    }
}

fn seal_file(a: &SealArgs) -> Result<Exit, Exit> {
    let to = recipient(a)?;
    let text = std::fs::read_to_string(&a.file).map_err(|e| {
        super::unreadable(format!(
            "{}: cannot be read: {}",
            a.file.display(),
            e.kind()
        ))
    })?;
    let (out, n) = seal_text(&text, &a.kid, &to)
        .map_err(|e| super::unreadable(format!("{}: {e}", a.file.display())))?;
    write_out(a.out.as_deref(), &out).map_err(fail)?;
    eprintln!("sealed {n} order(s) for kid {}", a.kid);
    Ok(Exit::Ok)
}

/// A fresh P-256 key pair, drawn until the scalar is valid.
fn fresh_key() -> Result<p256::SecretKey, String> {
    for _ in 0..8 {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|_| "the system random generator failed")?;
        if let Ok(k) = p256::SecretKey::from_slice(bytes.as_ref()) {
            return Ok(k);
        }
    }
    Err("no valid private key could be drawn".into())
}

/// `keys jwe-new`: appends a fresh test key (usage jwe) for `kid` to `keys` and prints its
/// public JWK.
pub(crate) fn new_key(kid: &str, keys: &Path) -> Result<(), String> {
    if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
        return Err("--kid must be printable ASCII without spaces or quotes".into());
    }
    if keys.exists() {
        let store = read_keys(keys).map_err(|_| "the key store cannot be read".to_string())?;
        if store.port().jwe_public(kid).is_ok() {
            return Err(format!("{}: jwe kid {kid} exists already", keys.display()));
        }
    }
    let secret = fresh_key()?;
    let public = P256Point::from(secret.public_key());
    let value = Zeroizing::new(hex::encode_upper(secret.to_bytes()));
    let entry = Zeroizing::new(format!(
        "\n# JWE test key (ECDH-ES, A256GCM on P-256): made by `persodesk keys jwe-new`.\n\
         [[key]]\nusage = \"jwe\"\nkid = \"{kid}\"\nalgorithm = \"ec-p256\"\n\
         value = \"{}\"\npublic = \"{}\"\ntest = true\n",
        value.as_str(),
        hex::encode_upper(public.sec1()),
    ));
    append_private(keys, entry.as_bytes())?;
    println!("{}", public.jwk(Some(kid)));
    Ok(())
}

/// Appends to a key file; a new file is readable by its owner only.
fn append_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("{}: cannot be written: {}", path.display(), e.kind());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}
