//! `persodesk keys import` and `persodesk keys list`: the key ceremony on a PKCS#11 token
//! (docs/hsm.md) and the inventory of a key store.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use zeroize::Zeroizing;

use crate::cli::{Exit, unreadable};
use crate::domain::keystore::{JweKeys, KeyAlgorithm, KeyRef};
use crate::domain::review::{Role, Session};
use crate::keys::pkcs11::ceremony::{self, Component, Imported};
use crate::keys::pkcs11::{self, Pkcs11KeyStore};
use crate::keys::{LoadedKeys, SoftwareKeyStore, software_jwe};

/// Arguments of `keys import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The PKCS#11 store file of the token to import into.
    #[arg(long)]
    keys: PathBuf,
    /// Import every key of this software key file (test keys only, for demos).
    #[arg(long, conflicts_with_all = ["label", "algorithm", "components"])]
    from: Option<PathBuf>,
    /// The label of the key to enter as components, e.g. `kek/3` or `cvk/2`.
    #[arg(long, requires = "algorithm")]
    label: Option<String>,
    /// Algorithm of the key entered as components: tdes or aes.
    #[arg(long)]
    algorithm: Option<String>,
    /// Number of components (2 or 3), each typed without echo with its KCV.
    #[arg(long, default_value_t = 2)]
    components: usize,
    /// Who runs the ceremony, for the audit trail (default: $USER).
    #[arg(long)]
    user: Option<String>,
}

/// Runs `keys import`.
pub fn import(a: &ImportArgs) -> Exit {
    let name = a.keys.display().to_string();
    let text = match std::fs::read_to_string(&a.keys) {
        Ok(t) => t,
        Err(e) => return unreadable(format!("{name}: cannot be read: {}", e.kind())),
    };
    let file = match pkcs11::StoreFile::parse_text(&name, &text) {
        Ok(f) => f,
        Err(e) => return unreadable(e),
    };
    let mut store = match Pkcs11KeyStore::open(&name, file, true) {
        Ok(s) => s,
        Err(e) => return unreadable(e),
    };
    let result = match (&a.from, &a.label) {
        (Some(from), _) => import_file(&mut store, from, &a.keys),
        (None, Some(label)) => import_components(&mut store, label, a),
        (None, None) => Err("give --from FILE or --label LABEL --algorithm ALG".into()),
    };
    match result {
        Ok(done) => {
            let who = Session {
                user: a
                    .user
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "cli".into()),
                role: Role::Supervisor,
            };
            for i in &done {
                println!("imported {}  kcv {}", pkcs11::label(i.key), i.kcv);
            }
            audit(&who, store.token_label(), &done)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Invalid
        }
    }
}

/// Records who imported which label with which KCV (never a component).
fn audit(who: &Session, token: &str, done: &[Imported]) -> Exit {
    let store = match crate::store::Store::open_default() {
        Ok(s) => s,
        Err(e) => return unreadable(format!("workstation store: {e}")),
    };
    for i in done {
        let outcome = format!("{} on token {token}, kcv {}", pkcs11::label(i.key), i.kcv);
        if let Err(e) = store.audit(who, "key import", None, &outcome) {
            return unreadable(format!("workstation store: {e}"));
        }
    }
    Exit::Ok
}

fn import_file(
    store: &mut Pkcs11KeyStore,
    from: &Path,
    keys: &Path,
) -> Result<Vec<Imported>, String> {
    let software = SoftwareKeyStore::load(from).map_err(|e| e.to_string())?;
    let (done, issuers) = ceremony::import_software(store, &software)?;
    if !issuers.is_empty() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(keys)
            .map_err(|e| format!("{}: cannot be written: {}", keys.display(), e.kind()))?;
        f.write_all(ceremony::issuer_toml(&issuers).as_bytes())
            .map_err(|e| format!("{}: cannot be written: {}", keys.display(), e.kind()))?;
        eprintln!(
            "appended {} [[issuer]] entr{} to {}",
            issuers.len(),
            if issuers.len() == 1 { "y" } else { "ies" },
            keys.display()
        );
    }
    Ok(done)
}

/// Reads one line from the terminal without echo (plain when stdin is not a terminal).
fn read_secret(prompt: &str) -> Result<Zeroizing<String>, String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    read.map_err(|e| format!("reading the component: {}", e.kind()))?;
    Ok(Zeroizing::new(line.trim().to_string()))
}

fn import_components(
    store: &mut Pkcs11KeyStore,
    label: &str,
    a: &ImportArgs,
) -> Result<Vec<Imported>, String> {
    let (key, half): (KeyRef, _) = pkcs11::parse_label(label)
        .ok_or_else(|| format!("--label {label}: not of the form <usage>/<index>"))?;
    if half.is_some() {
        return Err(format!("--label {label}: name the CVK (cvk/N), not a half"));
    }
    let algorithm = match a.algorithm.as_deref() {
        Some("tdes") => KeyAlgorithm::Tdes,
        Some("aes") => KeyAlgorithm::Aes,
        _ => return Err("--algorithm must be tdes or aes".into()),
    };
    let mut comps = Vec::new();
    for n in 1..=a.components {
        let value = read_secret(&format!("component {n} of {label} (hex, not echoed): "))?;
        let kcv = read_secret(&format!("KCV of component {n}: "))?;
        let value = Zeroizing::new(
            hex::decode(value.as_bytes()).map_err(|_| format!("component {n}: must be hex"))?,
        );
        comps.push(Component {
            value,
            kcv: kcv.to_string(),
        });
    }
    let (_, kcv) = ceremony::combine(algorithm, &comps)?;
    eprintln!("combined key KCV: {kcv}");
    let confirmed = read_secret("type the combined KCV to confirm: ")?;
    Ok(vec![ceremony::import_components(
        store, key, algorithm, &comps, &confirmed,
    )?])
}

/// Runs `keys list`: label, algorithm, KCV and flags of every key.
pub fn list(keys: &Path) -> Exit {
    let loaded = match crate::keys::load(keys) {
        Ok(k) => k,
        Err(e) => return unreadable(e),
    };
    match &loaded {
        LoadedKeys::Pkcs11(p) => {
            for (label, obj) in p.objects() {
                let kcv = match label.strip_prefix("jwe/") {
                    Some(kid) => p
                        .jwe_public(kid)
                        .map_or_else(|_| "-".to_string(), |k| software_jwe::ec_kcv(&k.point)),
                    None => pkcs11::parse_label(&label)
                        .filter(|(_, half)| half.is_none())
                        .and_then(|(k, _)| loaded.list().into_iter().find(|i| i.key == k))
                        .map_or_else(|| "-".to_string(), |i| i.kcv),
                };
                println!(
                    "{label:<16} {:<10} kcv {kcv:<6}  {}{}",
                    obj.kind.name(),
                    if obj.sensitive {
                        "sensitive"
                    } else {
                        "NOT-SENSITIVE"
                    },
                    if obj.extractable {
                        " EXTRACTABLE"
                    } else {
                        " non-extractable"
                    },
                );
            }
            if p.list().iter().any(|i| i.key.usage.as_str() == "cvk") {
                for i in p.list().iter().filter(|i| i.key.usage.as_str() == "cvk") {
                    println!(
                        "{:<16} {:<10} kcv {}  (the pair of halves)",
                        pkcs11::label(i.key),
                        "tdes-2key",
                        i.kcv
                    );
                }
            }
        }
        LoadedKeys::Software(s) => {
            for i in s.list() {
                println!(
                    "{:<16} {:<10} kcv {}  software{}",
                    pkcs11::label(i.key),
                    i.algorithm.as_str(),
                    i.kcv,
                    if i.test { ", test" } else { "" }
                );
            }
        }
    }
    Exit::Ok
}
