//! DES and TDES by lookup tables (FIPS 46-3), for the per-card hot path of batch preparation
//! (CVV/iCVV, PVV, ISO 0 PIN block recovery: about ten DES block operations per card).
//!
//! The tables are built at compile time from the standard's permutations and S-boxes. The
//! rounds run on halves kept in a rotated working form (see [`W_ROT`]) in which every S-box
//! input is a byte-aligned 6-bit group, so a round is two XORs with the round key, one
//! rotation and eight byte-indexed lookups (`SP`: S-box, P and the rotation merged, 8 × 256
//! words). The initial and final permutations, with the rotation into and out of the working
//! form folded in, are split by input byte (8 × 256 words each). TDES skips the final/initial
//! permutation pair between its three passes (they cancel). Key schedules are computed once
//! per key and wiped on drop. Checked against the `des` crate (an independent implementation)
//! and the published vectors in the tests below.

use zeroize::Zeroize;

/// Initial permutation (FIPS 46-3): output bit j is input bit `IP[j]` (1-based, MSB first).
const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6,
    64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61,
    53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

/// Final permutation (the inverse of [`IP`]).
const FP: [u8; 64] = [
    40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30,
    37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
    34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
];

/// The permutation P applied to the S-boxes' output.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19,
    13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1 (key bits into C ‖ D).
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60,
    52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29,
    21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2 (C ‖ D into a 48-bit round key).
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41, 52,
    31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of C and D before each round.
const SHIFTS: [u8; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// The eight S-boxes, row-major (row = outer bits, column = inner four bits).
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12,
        11, 9, 5, 3, 8, 4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9,
        1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1,
        10, 6, 9, 11, 5, 0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15,
        4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5,
        14, 12, 11, 15, 1, 13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6,
        9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2,
        12, 1, 10, 14, 9, 10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1,
        13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15,
        10, 3, 9, 8, 6, 4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14,
        2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13,
        14, 0, 11, 3, 8, 9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5,
        15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5,
        12, 2, 15, 8, 6, 1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4,
        10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6,
        11, 0, 14, 9, 2, 7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10,
        8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// The rotation that turns a half (`L` or `R`, FIPS bit order) into its working form
/// `W = half.rotate_right(3)`, in which the rounds run. Numbering bits of a `u32` from the
/// least significant, the expansion E feeds S-box `n` (1-based) the six bits of `R` from bit
/// `31 - 4n` upward, cyclically, the first E bit being the highest. In `W` those groups move
/// down by three: S-boxes 1, 3, 5, 7 sit in bits 0..6 of bytes 3, 2, 1, 0 of `W`, and
/// S-boxes 8, 2, 4, 6 in bits 0..6 of bytes 3, 2, 1, 0 of `W.rotate_right(4)`.
const W_ROT: u32 = 3;

/// [`IP`] followed by the working-form rotation of each half.
const fn ip_to_working() -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut q = 0;
    while q < 64 {
        // Bit q of a working half (MSB first) is bit q - 3 of the half.
        out[q] = IP[q / 32 * 32 + (q % 32 + 32 - W_ROT as usize) % 32];
        q += 1;
    }
    out
}

/// The inverse working-form rotation of each half followed by [`FP`].
const fn working_to_fp() -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        // Bit s of a half (MSB first) is bit s + 3 of its working form.
        let s = (FP[j] - 1) as usize;
        out[j] = (s / 32 * 32 + (s % 32 + W_ROT as usize) % 32 + 1) as u8;
        j += 1;
    }
    out
}

/// A 64-bit permutation as eight per-input-byte tables (OR of eight lookups).
const fn byte_tables(t: &[u8; 64]) -> [[u64; 256]; 8] {
    let mut out = [[0u64; 256]; 8];
    let mut j = 0;
    while j < 64 {
        let src = (t[j] - 1) as usize;
        let (byte, bit) = (src / 8, 7 - (src % 8));
        let mut v = 0;
        while v < 256 {
            if (v >> bit) & 1 == 1 {
                out[byte][v] |= 1u64 << (63 - j);
            }
            v += 1;
        }
        j += 1;
    }
    out
}

/// S-box `i` followed by P and the working-form rotation, for each byte whose low six bits
/// are the S-box input (the two high bits, a neighbour's, are ignored: no mask per lookup).
const fn sp_tables() -> [[u32; 256]; 8] {
    let mut out = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 8 {
        let mut v = 0;
        while v < 256 {
            let x = v & 0x3F;
            let row = ((x >> 4) & 2) | (x & 1);
            let col = (x >> 1) & 0xF;
            let pre = (S[i][row * 16 + col] as u32) << (28 - 4 * i);
            let mut p = 0u32;
            let mut j = 0;
            while j < 32 {
                if (pre >> (32 - P[j] as u32)) & 1 == 1 {
                    p |= 1 << (31 - j);
                }
                j += 1;
            }
            out[i][v] = p.rotate_right(W_ROT);
            v += 1;
        }
        i += 1;
    }
    out
}

/// Block to working-form halves (IP included).
static IP_T: [[u64; 256]; 8] = byte_tables(&ip_to_working());
/// Working-form halves to block (FP included).
static FP_T: [[u64; 256]; 8] = byte_tables(&working_to_fp());
static SP: [[u32; 256]; 8] = sp_tables();

fn permute(t: &[[u64; 256]; 8], x: u64) -> u64 {
    let b = x.to_be_bytes();
    let mut out = 0;
    for (table, &v) in t.iter().zip(&b) {
        out |= table[usize::from(v)];
    }
    out
}

/// The sixteen round keys of one DES key, each as two words `[k0, k1]` laid out like the
/// working form (see [`W_ROT`]): `k0` holds the 6-bit groups of S-boxes 1, 3, 5, 7 in bytes
/// 3, 2, 1, 0 and `k1` those of S-boxes 8, 2, 4, 6 (high two bits of each byte zero).
#[derive(Clone)]
struct RoundKeys([[u32; 2]; 16]);

impl Drop for RoundKeys {
    fn drop(&mut self) {
        self.0.as_flattened_mut().zeroize();
    }
}

impl RoundKeys {
    fn new(key: &[u8; 8]) -> Self {
        let k = u64::from_be_bytes(*key);
        let mut cd = 0u64;
        for (j, &src) in PC1.iter().enumerate() {
            cd |= ((k >> (64 - u32::from(src))) & 1) << (55 - j);
        }
        let (mut c, mut d) = ((cd >> 28) as u32, (cd & 0x0FFF_FFFF) as u32);
        let mut out = [[0u32; 2]; 16];
        for (round, &s) in out.iter_mut().zip(&SHIFTS) {
            c = ((c << s) | (c >> (28 - s))) & 0x0FFF_FFFF;
            d = ((d << s) | (d >> (28 - s))) & 0x0FFF_FFFF;
            let both = (u64::from(c) << 28) | u64::from(d);
            let mut sub = 0u64;
            for (j, &src) in PC2.iter().enumerate() {
                sub |= ((both >> (56 - u32::from(src))) & 1) << (47 - j);
            }
            *round = pack(sub);
            sub.zeroize();
        }
        cd.zeroize();
        c.zeroize();
        d.zeroize();
        Self(out)
    }

    /// Sixteen rounds on the working-form halves, two per step without swapping (round keys
    /// in reverse order to decrypt); returns them swapped (the pre-output).
    #[inline(always)]
    fn rounds<const DECRYPT: bool>(&self, (mut l, mut r): (u32, u32)) -> (u32, u32) {
        let pairs = self.0.as_chunks::<2>().0;
        if DECRYPT {
            for [a, b] in pairs.iter().rev() {
                l ^= feistel(r, b);
                r ^= feistel(l, a);
            }
        } else {
            for [a, b] in pairs {
                l ^= feistel(r, a);
                r ^= feistel(l, b);
            }
        }
        (r, l)
    }
}

/// A 48-bit round key (S-box 1's group highest) as `[k0, k1]` (see [`RoundKeys`]).
fn pack(sub: u64) -> [u32; 2] {
    let g = |n: u32| ((sub >> (48 - 6 * n)) & 0x3F) as u32;
    [
        (g(1) << 24) | (g(3) << 16) | (g(5) << 8) | g(7),
        (g(8) << 24) | (g(2) << 16) | (g(4) << 8) | g(6),
    ]
}

/// The round function on a working-form half `w`: expansion and round key (two XORs and a
/// rotation, see [`W_ROT`]), then S-boxes and P into the working form (a lookup per S-box).
#[inline(always)]
fn feistel(w: u32, k: &[u32; 2]) -> u32 {
    let [s7, s5, s3, s1] = (w ^ k[0]).to_le_bytes();
    let [s6, s4, s2, s8] = (w.rotate_right(4) ^ k[1]).to_le_bytes();
    let sp = |i: usize, v: u8| SP[i][usize::from(v)];
    // The eight outputs have disjoint bits, so `|` and `^` agree; mixing them keeps the
    // compiler from turning the balanced tree back into one serial chain. A block is a single
    // chain of dependent rounds, bound by latency: a tree of depth 3 instead of 7 made TDES
    // about 10 % faster for about 13 % more instructions (helper D, session 8).
    ((sp(0, s1) ^ sp(2, s3)) | (sp(4, s5) ^ sp(6, s7)))
        ^ ((sp(7, s8) ^ sp(1, s2)) | (sp(3, s4) ^ sp(5, s6)))
}

fn split(x: u64) -> (u32, u32) {
    ((x >> 32) as u32, x as u32)
}

fn join((l, r): (u32, u32)) -> u64 {
    (u64::from(l) << 32) | u64::from(r)
}

/// A single DES key schedule.
#[derive(Clone)]
pub struct Des(RoundKeys);

impl Des {
    /// The schedule of an 8-byte key (parity bits ignored, as the standard says).
    pub fn new(key: &[u8; 8]) -> Self {
        Self(RoundKeys::new(key))
    }

    /// Encrypts one block.
    pub fn encrypt(&self, block: &mut [u8; 8]) {
        let x = split(permute(&IP_T, u64::from_be_bytes(*block)));
        *block = permute(&FP_T, join(self.0.rounds::<false>(x))).to_be_bytes();
    }

    /// Decrypts one block.
    pub fn decrypt(&self, block: &mut [u8; 8]) {
        let x = split(permute(&IP_T, u64::from_be_bytes(*block)));
        *block = permute(&FP_T, join(self.0.rounds::<true>(x))).to_be_bytes();
    }
}

/// A TDES (EDE) key schedule: 2-key (K3 = K1) or 3-key.
#[derive(Clone)]
pub struct Tdes {
    k1: RoundKeys,
    k2: RoundKeys,
    k3: RoundKeys,
}

impl Tdes {
    /// The schedule of a 16- or 24-byte key; `None` for any other length.
    pub fn new(key: &[u8]) -> Option<Self> {
        let part = |i: usize| -> Option<RoundKeys> {
            let k: &[u8; 8] = key.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(RoundKeys::new(k))
        };
        match key.len() {
            16 => Some(Self {
                k1: part(0)?,
                k2: part(1)?,
                k3: part(0)?,
            }),
            24 => Some(Self {
                k1: part(0)?,
                k2: part(1)?,
                k3: part(2)?,
            }),
            _ => None,
        }
    }

    /// `E_K3(D_K2(E_K1(block)))`.
    pub fn encrypt(&self, block: &mut [u8; 8]) {
        let x = split(permute(&IP_T, u64::from_be_bytes(*block)));
        let x = self.k1.rounds::<false>(x);
        let x = self.k2.rounds::<true>(x);
        let x = self.k3.rounds::<false>(x);
        *block = permute(&FP_T, join(x)).to_be_bytes();
    }

    /// `D_K1(E_K2(D_K3(block)))`.
    pub fn decrypt(&self, block: &mut [u8; 8]) {
        let x = split(permute(&IP_T, u64::from_be_bytes(*block)));
        let x = self.k3.rounds::<true>(x);
        let x = self.k2.rounds::<false>(x);
        let x = self.k1.rounds::<true>(x);
        *block = permute(&FP_T, join(x)).to_be_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use des::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).expect("hex").try_into().expect("length")
    }

    #[test]
    fn published_des_vectors() {
        // FIPS 81 / "Now is the time for all": key 0123456789ABCDEF.
        let d = Des::new(&h("0123456789ABCDEF"));
        let mut b = h("4E6F772069732074");
        d.encrypt(&mut b);
        assert_eq!(b, h::<8>("3FA40E8A984D4815"));
        d.decrypt(&mut b);
        assert_eq!(b, h::<8>("4E6F772069732074"));
        // The worked example of J. Orlin Grabbe, "The DES Algorithm Illustrated".
        let d = Des::new(&h("133457799BBCDFF1"));
        let mut b = h("0123456789ABCDEF");
        d.encrypt(&mut b);
        assert_eq!(b, h::<8>("85E813540F0AB405"));
    }

    #[test]
    fn tdes_with_three_equal_keys_is_des_and_wrong_lengths_are_refused() {
        let k = h::<8>("0123456789ABCDEF");
        let mut k3 = [0u8; 24];
        for c in k3.chunks_mut(8) {
            c.copy_from_slice(&k);
        }
        let t = Tdes::new(&k3).expect("24 bytes");
        let mut b = h("4E6F772069732074");
        t.encrypt(&mut b);
        assert_eq!(b, h::<8>("3FA40E8A984D4815"));
        assert!(Tdes::new(&k).is_none());
        assert!(Tdes::new(&[0u8; 17]).is_none());
    }

    /// The round keys' layout, against the subkeys K1 and K16 that Grabbe's worked example
    /// publishes for key 133457799BBCDFF1 (six-bit groups, S-box 1 first).
    #[test]
    fn round_keys_hold_the_published_subkeys_in_the_working_layout() {
        let layout = |s: &str| {
            let g: Vec<u32> = s
                .split(' ')
                .map(|g| u32::from_str_radix(g, 2).expect("bits"))
                .collect();
            [
                (g[0] << 24) | (g[2] << 16) | (g[4] << 8) | g[6],
                (g[7] << 24) | (g[1] << 16) | (g[3] << 8) | g[5],
            ]
        };
        let keys = RoundKeys::new(&h("133457799BBCDFF1"));
        let k1 = layout("000110 110000 001011 101111 111111 000111 000001 110010");
        let k16 = layout("110010 110011 110110 001011 000011 100001 011111 110101");
        assert_eq!(keys.0[0], k1);
        assert_eq!(keys.0[15], k16);
    }

    /// A small deterministic generator (xorshift64) for many keys and blocks.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn agrees_with_the_des_crate_on_random_keys_and_blocks() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..500 {
            let mut key = [0u8; 24];
            for c in key.chunks_mut(8) {
                c.copy_from_slice(&next(&mut s).to_be_bytes());
            }
            let block = next(&mut s).to_be_bytes();

            let ours = Des::new(key[..8].try_into().expect("8"));
            let theirs = des::Des::new_from_slice(&key[..8]).expect("key");
            let (mut a, mut b) = (block, block);
            ours.encrypt(&mut a);
            theirs.encrypt_block((&mut b).into());
            assert_eq!(a, b, "DES encrypt");
            ours.decrypt(&mut a);
            theirs.decrypt_block((&mut b).into());
            assert_eq!(a, b, "DES decrypt");

            let ours = Tdes::new(&key[..16]).expect("16");
            let theirs = des::TdesEde2::new_from_slice(&key[..16]).expect("key");
            let (mut a, mut b) = (block, block);
            ours.encrypt(&mut a);
            theirs.encrypt_block((&mut b).into());
            assert_eq!(a, b, "TDES-2 encrypt");
            let (mut a, mut b) = (block, block);
            ours.decrypt(&mut a);
            theirs.decrypt_block((&mut b).into());
            assert_eq!(a, b, "TDES-2 decrypt");

            let ours = Tdes::new(&key).expect("24");
            let theirs = des::TdesEde3::new_from_slice(&key).expect("key");
            let (mut a, mut b) = (block, block);
            ours.encrypt(&mut a);
            theirs.encrypt_block((&mut b).into());
            assert_eq!(a, b, "TDES-3 encrypt");
            let (mut a, mut b) = (block, block);
            ours.decrypt(&mut a);
            theirs.decrypt_block((&mut b).into());
            assert_eq!(a, b, "TDES-3 decrypt");
        }
    }
}
