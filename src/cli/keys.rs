//! `persodesk keys demo-pki` and `persodesk keys ca-public`: a self-made test CA for offline data
//! authentication in demos (not a scheme CA; terminals do not know it unless told).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Exit, read_keys};
use crate::domain::oda::{self, CertExpiry, EmvPublicKey, IssuerCertFields, RsaExponent};
use crate::keys::pool::generate;
use crate::keys::software_chip::rsa_kcv;

/// Arguments of `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a test CA, an issuer RSA key and its certificate; append the issuer entry (with
    /// the CA public key) to a test key store.
    DemoPki(DemoPkiArgs),
    /// Print the CA public keys named by the key store's issuer-rsa entries, as JSON lines.
    CaPublic {
        /// Key store file [production: the configuration's, and this flag is refused].
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Load keys into a PKCS#11 token: from a software key file (test keys only) or as 2-3
    /// clear components typed without echo (docs/hsm.md).
    Import(hsm::ImportArgs),
    /// Print label, algorithm, KCV and flags of every key of a key store.
    List {
        /// Key store file (software or PKCS#11).
        #[arg(long)]
        keys: PathBuf,
    },
    /// Append a fresh P-256 test key pair (usage jwe) to a key store; print its public JWK for
    /// the issuer.
    JweNew {
        /// The kid senders will put in the JWE header.
        #[arg(long)]
        kid: String,
        /// Key store file to append to (created when missing).
        #[arg(long)]
        keys: PathBuf,
    },
    /// The persisted ICC key pool: `pool fill` pre-generates sealed ICC key pairs, `pool status`
    /// counts the pairs left (docs/performance.md).
    Pool(pool::PoolArgs),
}

#[path = "keys_hsm.rs"]
mod hsm;
#[path = "keys_pool.rs"]
mod pool;

/// Arguments of `keys demo-pki`.
#[derive(Debug, Args)]
pub struct DemoPkiArgs {
    /// Key store file to append to (created when missing).
    #[arg(long)]
    keys: PathBuf,
    /// odaKeyIndex of the new issuer entry.
    #[arg(long, default_value_t = 1)]
    index: u32,
    /// Issuer identifier: the leftmost 3-8 PAN digits the certificate covers.
    #[arg(long, default_value = "541333")]
    issuer_id: String,
    /// RID of the test CA (5 bytes hex).
    #[arg(long, default_value = "A000000004")]
    rid: String,
    /// CA public key index (8F), 2 hex digits.
    #[arg(long, default_value = "E1")]
    ca_index: String,
    /// CA key size in bits (up to 1984).
    #[arg(long, default_value_t = 1408)]
    ca_bits: usize,
    /// Issuer key size in bits (at most the CA's).
    #[arg(long, default_value_t = 1152)]
    issuer_bits: usize,
    /// Issuer certificate expiry, MMYY.
    #[arg(long, default_value = "1235")]
    expiry: String,
}

/// Runs `keys`.
pub fn run(args: &KeysArgs) -> Exit {
    match &args.command {
        KeysCommand::DemoPki(a) => {
            match super::refuse_in_production("keys demo-pki (it writes test keys)")
                .map_err(|_| String::new())
                .and_then(|()| demo_pki(a))
            {
                Err(e) if e.is_empty() => Exit::Invalid,
                Ok(()) => Exit::Ok,
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::Invalid
                }
            }
        }
        KeysCommand::CaPublic { keys } => match super::keys_path(keys.as_deref()) {
            Ok(k) => ca_public(&k),
            Err(e) => e,
        },
        KeysCommand::Import(a) => hsm::import(a),
        KeysCommand::List { keys } => hsm::list(keys),
        KeysCommand::Pool(a) => pool::run(a),
        KeysCommand::JweNew { kid, keys } => match super::jwe::new_key(kid, keys) {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Invalid
            }
        },
    }
}

fn ca_public(keys: &Path) -> Exit {
    let store = match read_keys(keys) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let cas = store.port().ca_public_keys();
    for ca in &cas {
        println!(
            "{}",
            json!({
                "rid": hex::encode_upper(ca.rid),
                "index": format!("{:02X}", ca.index),
                "modulus": hex::encode_upper(ca.key.modulus()),
                "exponent": hex::encode_upper(ca.key.exponent().bytes()),
                "bits": ca.key.bits(),
                "checkValue": hex::encode_upper(ca.check_value()),
            })
        );
    }
    if cas.is_empty() {
        eprintln!("error: {}: no issuer-rsa entry names a CA", keys.display());
        return Exit::Invalid;
    }
    Exit::Ok
}

/// Builds the TOML entry of a new demo issuer key (test key) and appends it.
fn demo_pki(a: &DemoPkiArgs) -> Result<(), String> {
    let rid: [u8; 5] = hex::decode(&a.rid)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("--rid must be 5 bytes of hex")?;
    let ca_index = match hex::decode(&a.ca_index).ok().as_deref() {
        Some([i]) => *i,
        _ => return Err("--ca-index must be 2 hex digits".into()),
    };
    let (mm, yy) = match (a.expiry.get(..2), a.expiry.get(2..)) {
        (Some(m), Some(y)) if a.expiry.len() == 4 => (
            m.parse::<u8>().map_err(|_| "--expiry must be MMYY")?,
            y.parse::<u8>().map_err(|_| "--expiry must be MMYY")?,
        ),
        _ => return Err("--expiry must be MMYY".into()),
    };
    let expiry = CertExpiry::new(mm, yy).map_err(|e| format!("--expiry: {e}"))?;
    let issuer_id =
        oda::issuer_identifier(&a.issuer_id).map_err(|e| format!("--issuer-id: {e}"))?;
    if a.issuer_bits > a.ca_bits {
        return Err(format!(
            "--issuer-bits {} exceeds --ca-bits {}: the issuer key must fit its certificate",
            a.issuer_bits, a.ca_bits
        ));
    }
    // A store that already has this entry is refused before the slow key generation.
    if a.keys.exists() {
        let store = read_keys(&a.keys).map_err(|_| "the key store cannot be read".to_string())?;
        if store
            .list()
            .iter()
            .any(|k| k.key.usage.as_str() == "issuer-rsa" && k.key.index == a.index)
        {
            return Err(format!(
                "{}: issuer-rsa #{} exists already",
                a.keys.display(),
                a.index
            ));
        }
    }
    eprintln!(
        "generating a {}-bit test CA and a {}-bit issuer key...",
        a.ca_bits, a.issuer_bits
    );
    let ca = generate(a.ca_bits, RsaExponent::Three).map_err(|e| e.to_string())?;
    let issuer = generate(a.issuer_bits, RsaExponent::Three).map_err(|e| e.to_string())?;
    let fields = IssuerCertFields {
        issuer_id,
        expiry,
        serial: [0x00, 0x00, 0x01],
    };
    let cert = oda::sign_issuer_certificate(&ca, &fields, issuer.public_key())
        .map_err(|e| e.to_string())?;
    let crt = issuer.crt_components().map_err(|e| e.to_string())?;
    let ca_pub: &EmvPublicKey = ca.public_key();
    let entry = format!(
        "\n# Demo issuer ODA key (test CA {rid} index {ca_index:02X}, issuer id {id}): made by `persodesk keys demo-pki`.\n\
         [[key]]\nusage = \"issuer-rsa\"\nindex = {index}\nalgorithm = \"rsa\"\n\
         p = \"{p}\"\nq = \"{q}\"\nexponent = 3\n\
         certificate = \"{c}\"\nremainder = \"{r}\"\n\
         rid = \"{rid}\"\nca_index = \"{ca_index:02X}\"\nca_modulus = \"{cam}\"\nca_exponent = 3\n\
         kcv = \"{kcv}\"\ntest = true\n",
        rid = hex::encode_upper(rid),
        id = a.issuer_id,
        index = a.index,
        p = hex::encode_upper(crt.p.expose()),
        q = hex::encode_upper(crt.q.expose()),
        c = hex::encode_upper(&cert.certificate),
        r = hex::encode_upper(&cert.remainder),
        cam = hex::encode_upper(ca_pub.modulus()),
        kcv = rsa_kcv(issuer.modulus()),
    );
    let mut f = crate::files::open_private(&a.keys, crate::files::Existing::Append)
        .map_err(|e| format!("{}: cannot be written: {}", a.keys.display(), e.kind()))?;
    f.write_all(entry.as_bytes())
        .map_err(|e| format!("{}: cannot be written: {}", a.keys.display(), e.kind()))?;
    // The CA private key is not kept: this demo CA signs once.
    println!(
        "{}",
        json!({
            "keys": a.keys.display().to_string(),
            "issuerRsaIndex": a.index,
            "rid": hex::encode_upper(rid),
            "caIndex": format!("{ca_index:02X}"),
            "caBits": a.ca_bits,
            "issuerBits": a.issuer_bits,
        })
    );
    Ok(())
}
