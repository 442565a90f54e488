//! A fixed-width RSA CRT private operation for the common prime sizes (up to 1024-bit primes,
//! moduli up to 2048 bits): crypto-bigint's const-generic `Uint<L>` and `FixedMontyForm<L>`
//! (on the stack, loops of known length) instead of rsa 0.10's `BoxedUint`, with everything
//! that depends only on the key computed once ([`CrtKey::new`]: the Montgomery parameters of p
//! and q, dP, dQ and qInv in Montgomery form). Constant time as crypto-bigint's arithmetic is
//! (`pow`, `mul`, `sub`, `widening_mul`, carry propagation; no branch on secret data). Keys of
//! other sizes get `None` from [`CrtKey::new`] and the caller keeps rsa's path.
//!
//! The result is not checked here: the caller checks `s^e mod n == m` with the public key (the
//! CRT fault check) before a signature leaves.

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Limb, Odd, Uint, Word};
use zeroize::{Zeroize, Zeroizing};

/// Bytes per limb.
const WORD_BYTES: usize = Word::BITS as usize / 8;

/// The key's CRT values, big-endian: p, q (p is the prime qInv reduces by), dP, dQ, qInv.
pub struct CrtParts<'a> {
    /// First prime.
    pub p: &'a [u8],
    /// Second prime.
    pub q: &'a [u8],
    /// d mod (p − 1).
    pub dp: &'a [u8],
    /// d mod (q − 1).
    pub dq: &'a [u8],
    /// q⁻¹ mod p.
    pub qinv: &'a [u8],
}

/// An RSA private key ready for the fixed-width CRT operation, for one prime width.
pub struct CrtKey(Width);

impl std::fmt::Debug for CrtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrtKey(..)")
    }
}

macro_rules! widths {
    ($($name:ident = $l:literal),+ $(,)?) => {
        enum Width { $($name(Box<Fixed<$l>>)),+ }

        impl CrtKey {
            /// The key for `parts`, or `None` when its primes are wider than 1024 bits (or
            /// its values do not fit their prime's width): use rsa's path then.
            pub fn new(parts: &CrtParts<'_>) -> Option<Self> {
                let bytes = significant(parts.p).len().max(significant(parts.q).len());
                let limbs = bytes.div_ceil(WORD_BYTES);
                $( if limbs <= $l {
                    return Fixed::<$l>::new(parts).map(|f| CrtKey(Width::$name(Box::new(f))));
                } )+
                None
            }

            /// `m^d mod n` for `m` (big-endian, `k` bytes, `k` the modulus length), as `k`
            /// bytes; `None` when `m` is longer than the key's moduli allow.
            pub fn private_op(&self, m: &[u8], k: usize) -> Option<Zeroizing<Vec<u8>>> {
                match &self.0 { $( Width::$name(f) => f.private_op(m, k), )+ }
            }
        }
    };
}

// One width per 64-bit limb from 512-bit to 1024-bit primes (256-bit steps below).
widths!(
    L4 = 4,
    L8 = 8,
    L9 = 9,
    L10 = 10,
    L11 = 11,
    L12 = 12,
    L13 = 13,
    L14 = 14,
    L15 = 15,
    L16 = 16,
);

/// The key's values for primes of at most `L` limbs.
struct Fixed<const L: usize> {
    p: FixedMontyParams<L>,
    q: FixedMontyParams<L>,
    q_int: Uint<L>,
    dp: Uint<L>,
    dq: Uint<L>,
    /// qInv in Montgomery form mod p.
    qinv: FixedMontyForm<L>,
    /// R mod p in Montgomery form (R = 2^(64 L)), to reduce a 2L-limb input.
    r_mod_p: FixedMontyForm<L>,
    /// R mod q in Montgomery form.
    r_mod_q: FixedMontyForm<L>,
    /// The primes' bit lengths (public: half the modulus's), bounding dP and dQ.
    p_bits: u32,
    q_bits: u32,
}

impl<const L: usize> Drop for Fixed<L> {
    fn drop(&mut self) {
        self.p.zeroize();
        self.q.zeroize();
        self.q_int.zeroize();
        self.dp.zeroize();
        self.dq.zeroize();
        self.qinv.zeroize();
        self.r_mod_p.zeroize();
        self.r_mod_q.zeroize();
    }
}

impl<const L: usize> Fixed<L> {
    fn new(parts: &CrtParts<'_>) -> Option<Self> {
        let p_int = Zeroizing::new(uint::<L>(parts.p)?);
        let q_int = uint::<L>(parts.q)?;
        let p = FixedMontyParams::new(Option::from(Odd::new(*p_int))?);
        let q = FixedMontyParams::new(Option::from(Odd::new(q_int))?);
        let qinv = Zeroizing::new(uint::<L>(parts.qinv)?);
        let bits = |b: &[u8]| -> u32 {
            let b = significant(b);
            let lead = b.first().map_or(0, |x| x.leading_zeros());
            u32::try_from(b.len() * 8).unwrap_or(u32::MAX) - lead
        };
        // R mod m in Montgomery form is R² mod m: the parameters' r2.
        let r_mod_p = FixedMontyForm::from_montgomery(*p.r2(), &p);
        let r_mod_q = FixedMontyForm::from_montgomery(*q.r2(), &q);
        Some(Self {
            qinv: FixedMontyForm::new(&qinv, &p),
            dp: uint::<L>(parts.dp)?,
            dq: uint::<L>(parts.dq)?,
            p,
            q,
            q_int,
            r_mod_p,
            r_mod_q,
            p_bits: bits(parts.p),
            q_bits: bits(parts.q),
        })
    }

    /// `x mod` the prime of `params`, for `x = hi·R + lo` (each below R).
    fn reduce(
        hi: &Uint<L>,
        lo: &Uint<L>,
        params: &FixedMontyParams<L>,
        r: &FixedMontyForm<L>,
    ) -> FixedMontyForm<L> {
        FixedMontyForm::new(hi, params)
            .mul(r)
            .add(&FixedMontyForm::new(lo, params))
    }

    fn private_op(&self, m: &[u8], k: usize) -> Option<Zeroizing<Vec<u8>>> {
        let m = significant(m);
        if m.len() > 2 * L * WORD_BYTES || k > 2 * L * WORD_BYTES {
            return None;
        }
        let split = m.len().saturating_sub(L * WORD_BYTES);
        let hi = uint::<L>(&m[..split])?;
        let lo = uint::<L>(&m[split..])?;
        // m1 = m^dP mod p, m2 = m^dQ mod q.
        // (Almost Montgomery multiplication, as rsa's own BoxedUint path; constant time for a
        // given exponent width, the primes' public bit lengths.)
        let m1 = Self::reduce(&hi, &lo, &self.p, &self.r_mod_p)
            .pow_amm_bounded_exp(&self.dp, self.p_bits);
        let mut m2 = Zeroizing::new(
            Self::reduce(&hi, &lo, &self.q, &self.r_mod_q)
                .pow_amm_bounded_exp(&self.dq, self.q_bits)
                .retrieve(),
        );
        // h = qInv · (m1 − m2) mod p; s = m2 + h·q (< n: m2 < q, h < p).
        let m2_p = FixedMontyForm::new(&m2, &self.p);
        let mut h = Zeroizing::new(self.qinv.mul(&m1.sub(&m2_p)).retrieve());
        let (hq_lo, hq_hi) = h.widening_mul(&self.q_int);
        let (s_lo, carry) = hq_lo.carrying_add(&m2, Limb::ZERO);
        let (s_hi, _) = hq_hi.carrying_add(&Uint::ZERO, carry);
        let mut s = Zeroizing::new(Vec::with_capacity(2 * L * WORD_BYTES));
        push_be(&mut s, &s_hi);
        push_be(&mut s, &s_lo);
        m2.zeroize();
        h.zeroize();
        let mut parts = [s_lo, s_hi, hq_lo, hq_hi];
        parts.iter_mut().for_each(Zeroize::zeroize);
        let (lead, tail) = s.split_at(s.len() - k);
        if lead.iter().any(|b| *b != 0) {
            return None;
        }
        Some(Zeroizing::new(tail.to_vec()))
    }
}

/// `b` without its leading zero bytes.
fn significant(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

/// `b` (big-endian) as a `Uint<L>`, or `None` when it does not fit.
fn uint<const L: usize>(b: &[u8]) -> Option<Uint<L>> {
    let b = significant(b);
    if b.len() > L * WORD_BYTES {
        return None;
    }
    let mut words = [0 as Word; L];
    for (i, byte) in b.iter().rev().enumerate() {
        words[i / WORD_BYTES] |= Word::from(*byte) << (8 * (i % WORD_BYTES));
    }
    let u = Uint::from_words(words);
    words.zeroize();
    Some(u)
}

/// Appends `u` big-endian, `L` limbs wide.
fn push_be<const L: usize>(out: &mut Vec<u8>, u: &Uint<L>) {
    for w in u.as_words().iter().rev() {
        out.extend_from_slice(&w.to_be_bytes());
    }
}
