//! `persodesk demo orders`: a JSON Lines order file of any size for testers and benchmarks —
//! unique ids, valid Luhn PANs, an ISO 9564 format 0 PIN block under the demo PIN key for each
//! (so that preparation recovers the PIN and computes the PVV and the CVV). Test keys only;
//! refused in production mode.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{DEFAULT_KEYS, Exit, read_keys, refuse_in_production};
use crate::domain::fields::{Pan, Pin};
use crate::domain::keystore::{KeyRef, KeyUsage};
use crate::keys::SoftwareKeyStore;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: DemoCommand,
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Write COUNT generated orders (JSON Lines) of the demo Visa credit product.
    Orders(OrdersArgs),
}

/// Arguments of `demo orders`.
#[derive(Debug, Args)]
pub struct OrdersArgs {
    /// How many orders.
    #[arg(long)]
    count: u64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Key store holding the test PIN key (zpk #1).
    #[arg(long, default_value = DEFAULT_KEYS)]
    keys: PathBuf,
}

/// Runs `demo`.
pub fn run(args: &DemoArgs) -> Exit {
    match &args.command {
        DemoCommand::Orders(a) => orders(a),
    }
}

/// The Luhn check digit completing `digits` (ISO/IEC 7812-1 Annex B).
pub fn luhn_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// The `i`-th generated PAN: the demo Visa BIN 4761739, 8 digits of `i`, the check digit.
pub fn pan_of(i: u64) -> String {
    let body = format!("4761739{:08}", i % 100_000_000);
    let check = luhn_digit(&body);
    format!("{body}{check}")
}

/// The `i`-th generated order (one JSON Lines line, with its line end): id `GEN-<i, 9 digits>`,
/// product DEMO_VISA_CREDIT, PAN [`pan_of`], PIN `i mod 10000` (4 digits) as an ISO 9564
/// format 0 block under the test key zpk #1 of `keys`.
pub fn order_line(i: u64, keys: &SoftwareKeyStore) -> Result<String, String> {
    let pan_text = pan_of(i);
    let pan = Pan::parse(&pan_text)?;
    let pin = Pin::parse(&format!("{:04}", i % 10_000))?;
    let block = keys
        .test_iso0_pin_block(KeyRef::new(KeyUsage::Zpk, 1), &pin, &pan)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        concat!(
            r#"{{"cardId":"GEN-{:09}","cardProductId":"DEMO_VISA_CREDIT","encryptedData":"#,
            r#"{{"pan":"{}","exp":"2812","encodedName":"TEST/CARDHOLDER","#,
            r#""pin":{{"type":"ISO0","encryptedPin":"{}","kid":1}}}},"#,
            r#""paymentApplication":{{"config":"default","odaKeyIndex":2,"#,
            r#""derivationKeyIndex":1,"cvKeyIndex":1,"pvKeyIndex":1}}}}"#,
            "\n"
        ),
        i,
        pan_text,
        hex::encode_upper(block)
    ))
}

fn orders(a: &OrdersArgs) -> Exit {
    if let Err(e) = refuse_in_production("demo orders") {
        return e;
    }
    let loaded = match read_keys(&a.keys) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let keys = match loaded.software() {
        Ok(k) => k,
        Err(e) => return super::unreadable(e),
    };
    let file = match std::fs::File::create(&a.out) {
        Ok(f) => f,
        Err(e) => return super::unreadable(format!("{}: {}", a.out.display(), e.kind())),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    for i in 0..a.count {
        let line = match order_line(i, keys) {
            Ok(l) => l,
            Err(e) => return super::unreadable(format!("{}: {e}", a.keys.display())),
        };
        if let Err(e) = w.write_all(line.as_bytes()) {
            return super::unreadable(format!("{}: {}", a.out.display(), e.kind()));
        }
    }
    if let Err(e) = w.flush() {
        return super::unreadable(format!("{}: {}", a.out.display(), e.kind()));
    }
    eprintln!("wrote {} order(s) to {}", a.count, a.out.display());
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_digits_match_published_examples() {
        // ISO/IEC 7812-1 Annex B example: 7992739871 → check digit 3.
        assert_eq!(luhn_digit("7992739871"), 3);
        // The demo Visa test PAN 4761739001010010 ends in its check digit 0.
        assert_eq!(luhn_digit("476173900101001"), 0);
        for i in [0, 1, 99_999_999, 12_345] {
            let p = Pan::parse(&pan_of(i)).expect("16 digits");
            assert!(p.luhn_ok(), "{i}");
        }
    }
}
