//! The fixed-width RSA CRT private operation (`domain::rsa_crt`) against an independent
//! implementation: rsa 0.10's `hazmat::rsa_decrypt_and_check` (crypto-bigint's `BoxedUint`, the
//! CRT with its own fault check) on a key rebuilt by rsa from the same primes, for random keys
//! of every EMV size class (512 to 1984 bits, exponents 3 and 65537) and random messages below
//! the modulus; and `RsaKeyPair::sign_raw` (which takes the fixed-width path) gives the same
//! bytes.

use persodesk::domain::oda::{RecoverySigner, RsaExponent, RsaKeyPair};
use persodesk::domain::rsa_crt::{CrtKey, CrtParts};
use rsa::BoxedUint;
use rsa::traits::PublicKeyParts;

/// A random message below the modulus `n` (big-endian, as long as `n`).
fn message_below(n: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; n.len()];
    getrandom::fill(&mut m).expect("rng");
    // Below n: the first byte smaller than n's (n's first byte is at least 0x80).
    m[0] %= n[0];
    m
}

/// rsa's own CRT private operation on the key rsa rebuilds from `pair`'s primes.
fn reference(pair: &RsaKeyPair, e: RsaExponent, m: &[u8]) -> Vec<u8> {
    let crt = pair.crt_components().expect("crt");
    let key = rsa::PrivateKey::from_p_q(
        BoxedUint::from_be_slice_vartime(crt.p.expose()),
        BoxedUint::from_be_slice_vartime(crt.q.expose()),
        BoxedUint::from(u64::from(e.value())),
    )
    .expect("rsa rebuilds the key");
    let c = BoxedUint::from_be_slice(m, key.n_bits_precision()).expect("message");
    let no_rng: Option<&mut dyn rsa::rand_core::TryCryptoRng<Error = core::convert::Infallible>> =
        None;
    let s = rsa::hazmat::rsa_decrypt_and_check(&key, no_rng, &c).expect("rsa signs");
    let bytes = s.to_be_bytes();
    bytes[bytes.len() - m.len()..].to_vec()
}

/// The pair's fixed-width CRT key, if its primes have a width it covers.
fn fixed_width(pair: &RsaKeyPair) -> Option<CrtKey> {
    let crt = pair.crt_components().expect("crt");
    let parts = CrtParts {
        p: crt.p.expose(),
        q: crt.q.expose(),
        dp: crt.d_mod_p1.expose(),
        dq: crt.d_mod_q1.expose(),
        qinv: crt.q_inv_mod_p.expose(),
    };
    CrtKey::new(&parts)
}

fn check_size(bits: usize, e: RsaExponent, keys: usize, messages: usize) {
    for _ in 0..keys {
        let pair = persodesk::keys::pool::generate(bits, e).expect("key");
        let fast = fixed_width(&pair).unwrap_or_else(|| panic!("{bits} bits: no fixed width"));
        let n = pair.modulus();
        let k = n.len();
        let mut cases = vec![vec![0u8; k], {
            let mut one = vec![0u8; k];
            one[k - 1] = 1;
            one
        }];
        cases.extend((0..messages).map(|_| message_below(n)));
        for m in &cases {
            let expected = reference(&pair, e, m);
            let got = fast.private_op(m, k).expect("fixed-width result");
            assert_eq!(hex::encode(&*got), hex::encode(&expected), "{bits} bits");
            assert_eq!(pair.sign_raw(m).expect("sign_raw"), expected, "{bits} bits");
        }
    }
}

#[test]
fn the_fixed_width_crt_equals_rsa_on_random_keys_of_every_size() {
    for bits in [512, 576, 640, 768, 896, 1024, 1152, 1408] {
        check_size(bits, RsaExponent::Three, 3, 8);
    }
    check_size(1024, RsaExponent::F4, 3, 8);
    check_size(1984, RsaExponent::Three, 1, 4);
}

#[test]
fn a_message_longer_than_the_key_gets_no_result() {
    let pair = persodesk::keys::pool::generate(512, RsaExponent::Three).expect("key");
    let fast = fixed_width(&pair).expect("fixed width");
    assert!(
        fast.private_op(&[0xFF; 80], 64).is_none(),
        "wider than the key"
    );
    // sign_raw refuses a block of the wrong length or not below n, by name, before any of it.
    assert!(pair.sign_raw(&[0u8; 63]).is_err());
    assert!(pair.sign_raw(&[0xFF; 64]).is_err());
}
