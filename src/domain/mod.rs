//! The card domain: pure, sans-I/O logic over bytes and strings.
//!
//! Nothing here touches files, sockets, devices, threads or the clock; nothing imports from
//! outside `domain` except crates. Adapters (key store, CLI, GUI, devices) live beside it.

pub mod approval;
pub mod chip;
pub mod crypto;
pub mod cvv;
pub mod date;
pub mod decimal;
pub mod des_tables;
pub mod dgi;
pub mod dgi_text;
pub mod emv_keys;
pub mod envelope;
pub mod fields;
pub mod finding;
pub mod gp;
pub mod json;
pub mod jwe;
pub mod keystore;
pub mod mask;
pub mod mode;
pub mod msr206;
pub mod oda;
pub mod order;
pub mod pinblock;
pub mod prepare;
pub mod product;
pub mod pvv;
pub mod readback;
pub mod review;
pub mod rsa_crt;
pub mod seal;
pub mod status;
pub mod tags;
pub mod terminal;
pub mod tlv;
pub mod track;
pub mod wipe;

/// Test known answers are written in hex: the bytes of `s`.
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}
