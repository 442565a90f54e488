//! The Model 2 envelope: known answers from an independent implementation, round trips, and each
//! rejection naming its rule.
//!
//! The fixed vectors below were produced by a separate Python implementation of docs/conventions.md's
//! envelope built on the `cryptography` package (AES/TDES ECB+CBC, its own CMAC and an ISO 9797-1
//! algorithm 3 loop), not by persodesk.

use persodesk::domain::envelope::{self, EnvelopeError, EnvelopeSettings, KekAlgorithm};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

const PLAIN: &str = "01010F700D5A0854133300890123455F3401009010020303";
const MAC_KEY: &str = "2B7E151628AED2A6ABF7158809CF4F3C";
const AES_KEK: &str = "000102030405060708090A0B0C0D0E0F";
const TDES_KEK: &str = "0F0E0D0C0B0A09080706050403020100";

struct Vector {
    alg: KekAlgorithm,
    kek: &'static str,
    mac_key: &'static str,
    tlv: &'static str,
    mac: &'static str,
}

const VECTORS: [Vector; 2] = [
    Vector {
        alg: KekAlgorithm::Aes,
        kek: AES_KEK,
        mac_key: "1AB729BB895C3BBACAD01C3BDD830DC1",
        tlv: "9996C5B1F524B30C71FF05F949F7CEA098206FA6BDD567B0D9CC9479083B4991",
        mac: "5884127918FF46EC",
    },
    Vector {
        alg: KekAlgorithm::Tdes,
        kek: TDES_KEK,
        mac_key: "851C5B29900F3947C47886EF7D0BAC72",
        tlv: "704D19591E05BE0E58DDA8AE36EF77A6DD2BD60BCA14FBD98979743A28618D7E",
        mac: "AA14FAC593493EC9",
    },
];

#[test]
fn independent_vectors_open_and_seal() {
    let s = EnvelopeSettings::default();
    for v in &VECTORS {
        let plain = envelope::open(v.alg, &h(v.kek), &h(v.mac_key), &h(v.tlv), &h(v.mac), s)
            .expect("opens");
        assert_eq!(hex::encode_upper(&*plain), PLAIN);
        let mk: [u8; 16] = h(MAC_KEY).try_into().expect("16");
        let sealed = envelope::seal(v.alg, &h(v.kek), &mk, &h(PLAIN), s).expect("seals");
        assert_eq!(hex::encode_upper(&sealed.mac_key), v.mac_key);
        assert_eq!(hex::encode_upper(&sealed.tlv_data), v.tlv);
        assert_eq!(hex::encode_upper(&sealed.mac), v.mac);
    }
}

fn flip(v: &[u8], i: usize) -> Vec<u8> {
    let mut v = v.to_vec();
    v[i] ^= 0x01;
    v
}

#[test]
fn every_alteration_is_rejected_with_its_rule() {
    let s = EnvelopeSettings::default();
    for v in &VECTORS {
        let (kek, mk, tlv, mac) = (h(v.kek), h(v.mac_key), h(v.tlv), h(v.mac));
        let open = |kek: &[u8], mk: &[u8], tlv: &[u8], mac: &[u8]| {
            envelope::open(v.alg, kek, mk, tlv, mac, s).map(|_| ())
        };
        // One bit in the first block of tlvData garbles that block (CBC): the MAC catches it.
        assert_eq!(
            open(&kek, &mk, &flip(&tlv, 0), &mac),
            Err(EnvelopeError::MacMismatch)
        );
        assert_eq!(
            open(&kek, &flip(&mk, 3), &tlv, &mac),
            Err(EnvelopeError::MacMismatch)
        );
        assert_eq!(
            open(&kek, &mk, &tlv, &flip(&mac, 7)),
            Err(EnvelopeError::MacMismatch)
        );
        // The last block holds the padding: a flip there breaks it.
        let last = tlv.len() - 1;
        assert_eq!(
            open(&kek, &mk, &flip(&tlv, last), &mac),
            Err(EnvelopeError::Padding)
        );
        assert!(matches!(
            open(&kek, &mk, &tlv[..tlv.len() - 3], &mac),
            Err(EnvelopeError::CiphertextLength { .. })
        ));
        assert!(matches!(
            open(&kek, &mk[..8], &tlv, &mac),
            Err(EnvelopeError::MacKeyLength(8))
        ));
        assert!(matches!(
            open(&kek, &mk, &tlv, &mac[..4]),
            Err(EnvelopeError::MacLength {
                expected: 8,
                got: 4
            })
        ));
        // A wrong KEK of the right size (bit 7: not a DES parity bit): padding or MAC fails.
        let mut wrong = kek.clone();
        wrong[0] ^= 0x80;
        assert!(open(&wrong, &mk, &tlv, &mac).is_err());
    }
}

#[test]
fn error_messages_carry_no_data() {
    let v = &VECTORS[0];
    let e = envelope::open(
        v.alg,
        &h(v.kek),
        &h(v.mac_key),
        &h(v.tlv),
        &[0; 8],
        EnvelopeSettings::default(),
    )
    .expect_err("bad mac");
    let text = e.to_string();
    assert!(text.contains("mac: verification failed"));
    assert!(!text.contains("5413330089012345") && !text.contains("5884"));
}
