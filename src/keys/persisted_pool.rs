//! ICC key pairs from the persisted pool ([`crate::store::key_pool`]): generated on every core
//! ahead of time (`persodesk keys pool fill`), each private key sealed by the key store's `store`
//! key ([`StoreSealKeys`], purpose `icc-key:<bits>:<exponent>:<pair id>`, so a blob moved to
//! another row or size does not open), and taken once by preparation.
//!
//! Sealed content: the primes p and q, each preceded by its length (2 bytes, big-endian); the
//! pair is rebuilt with [`RsaKeyPair::from_primes`]. Clear bytes exist only in zeroized buffers.
//!
//! Batch preparation takes a chunk's pairs in one store transaction ([`PersistedPool::reserve`]:
//! as many per size as the chunk has DDA/CDA orders of that size) and opens each only when its
//! card uses it; pairs reserved but not used (an order fails after the take) are dropped with the
//! chunk, still sealed, never put back: each pair is used at most once.

use std::cell::RefCell;
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::domain::chip::keys::{IccKeyPair, IccKeySource};
use crate::domain::keystore::StoreSealKeys;
use crate::domain::oda::{OdaError, RsaExponent, RsaKeyPair};
use crate::store::key_pool::{IccKeyPoolStore, SealedPair};

/// The sealing purpose of pair `pair_id` of `bits` bits and exponent `e`.
pub fn purpose(bits: usize, e: RsaExponent, pair_id: &str) -> String {
    format!("icc-key:{bits}:{}:{pair_id}", e.value())
}

/// A fresh random pair id (128 bits, hex).
fn new_pair_id() -> Result<String, OdaError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|_| OdaError::Rsa("the system random number generator failed"))?;
    Ok(hex::encode(b))
}

/// Seals `pair` for the pool.
pub fn seal_pair(seal: &dyn StoreSealKeys, pair: &RsaKeyPair) -> Result<SealedPair, String> {
    let crt = pair.crt_components().map_err(|e| e.to_string())?;
    let mut clear = Zeroizing::new(Vec::with_capacity(4 + crt.p.len() + crt.q.len()));
    for part in [&crt.p, &crt.q] {
        let len = u16::try_from(part.len()).map_err(|_| "prime too long".to_string())?;
        clear.extend_from_slice(&len.to_be_bytes());
        clear.extend_from_slice(part.expose());
    }
    let e = pair.public_key().exponent();
    let pair_id = new_pair_id().map_err(|e| e.to_string())?;
    let sealed = seal
        .store_seal(&purpose(pair.public_key().bits(), e, &pair_id), &clear)
        .map_err(|e| e.to_string())?;
    Ok(SealedPair { pair_id, sealed })
}

/// Opens a pair taken from the pool for `bits` and `e`; fails closed on any mismatch.
pub fn open_pair(
    seal: &dyn StoreSealKeys,
    bits: usize,
    e: RsaExponent,
    p: &SealedPair,
) -> Result<RsaKeyPair, OdaError> {
    let clear = seal
        .store_open(&purpose(bits, e, &p.pair_id), &p.sealed)
        .map_err(|_| OdaError::Rsa("a persisted ICC key pair does not open under the store key"))?;
    let bad = OdaError::Rsa("a persisted ICC key pair is malformed");
    let split = |b: &[u8]| -> Option<(usize, usize)> {
        let n = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        (b.len() >= 2 + n).then_some((2, 2 + n))
    };
    let (a, b) = split(&clear).ok_or(bad.clone())?;
    let prime_p = &clear[a..b];
    let rest = &clear[b..];
    let (c, d) = split(rest).ok_or(bad.clone())?;
    if d != rest.len() {
        return Err(bad);
    }
    let pair = RsaKeyPair::from_primes(prime_p, &rest[c..d], e)?;
    if pair.public_key().bits() != bits {
        return Err(bad);
    }
    Ok(pair)
}

/// Generates `count` pairs of `bits` bits on `jobs` threads, sealing each; `each` is called on
/// the calling thread with batches of sealed pairs (in no particular order) to keep them.
pub fn fill(
    seal: &dyn StoreSealKeys,
    bits: usize,
    e: RsaExponent,
    count: usize,
    jobs: usize,
    mut each: impl FnMut(&[SealedPair]) -> Result<(), String>,
) -> Result<usize, String> {
    let items = (0..count).map(|_| ());
    let mut batch: Vec<SealedPair> = Vec::new();
    let mut first_error: Option<String> = None;
    let mut kept = 0;
    crate::batch::run_ordered(
        items,
        jobs,
        |()| {
            super::pool::generate(bits, e)
                .map_err(|e| e.to_string())
                .and_then(|pair| seal_pair(seal, &pair))
        },
        |r| match r {
            Ok(p) if first_error.is_none() => {
                batch.push(p);
                if batch.len() >= 16 {
                    match each(&batch) {
                        Ok(()) => kept += batch.len(),
                        Err(e) => first_error = Some(e),
                    }
                    batch.clear();
                }
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        },
    );
    if first_error.is_none() && !batch.is_empty() {
        match each(&batch) {
            Ok(()) => kept += batch.len(),
            Err(e) => first_error = Some(e),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(kept),
    }
}

/// ICC key pairs from the persisted pool first, then `fallback` (the in-memory pool or inline
/// generation). A size the pool has run out of is not asked for again in this process.
pub struct PersistedPool<'a, S> {
    store: Mutex<S>,
    seal: &'a dyn StoreSealKeys,
    fallback: &'a (dyn IccKeySource + Sync),
    dry: Mutex<Vec<(usize, RsaExponent)>>,
}

impl<'a, S: IccKeyPoolStore> PersistedPool<'a, S> {
    /// Takes from `store`, opening with `seal`, else from `fallback`.
    pub fn new(
        store: S,
        seal: &'a dyn StoreSealKeys,
        fallback: &'a (dyn IccKeySource + Sync),
    ) -> Self {
        Self {
            store: Mutex::new(store),
            seal,
            fallback,
            dry: Mutex::new(Vec::new()),
        }
    }

    fn take(&self, bits: usize, e: RsaExponent) -> Result<Option<RsaKeyPair>, OdaError> {
        let mut dry = self.dry.lock().unwrap_or_else(|p| p.into_inner());
        if dry.contains(&(bits, e)) {
            return Ok(None);
        }
        let taken = {
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            store.take_pair(bits, e.value())
        };
        match taken {
            Ok(Some(p)) => {
                drop(dry);
                open_pair(self.seal, bits, e, &p).map(Some)
            }
            Ok(None) => {
                dry.push((bits, e));
                Ok(None)
            }
            Err(err) => {
                tracing::warn!(error = %err, "persisted ICC key pool unavailable: generating");
                dry.push((bits, e));
                Ok(None)
            }
        }
    }
}

impl<S: IccKeyPoolStore> PersistedPool<'_, S> {
    /// Takes, for each size and exponent in `needs` (one entry per card), that many pairs in
    /// one store transaction per size; a size the pool has fewer of is then marked dry. The
    /// reserve hands them out (then this pool) and drops what is not used.
    pub fn reserve(&self, needs: &[(usize, RsaExponent)]) -> Reserve<'_, Self> {
        let mut sizes: Vec<((usize, RsaExponent), usize)> = Vec::new();
        for need in needs {
            match sizes.iter_mut().find(|(k, _)| k == need) {
                Some((_, n)) => *n += 1,
                None => sizes.push((*need, 1)),
            }
        }
        let mut held = Vec::with_capacity(sizes.len());
        for ((bits, e), n) in sizes {
            let mut dry = self.dry.lock().unwrap_or_else(|p| p.into_inner());
            if dry.contains(&(bits, e)) {
                continue;
            }
            let taken = {
                let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
                store.take_pairs(bits, e.value(), n)
            };
            match taken {
                Ok(pairs) => {
                    if pairs.len() < n {
                        dry.push((bits, e));
                    }
                    held.push(((bits, e), pairs));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "persisted ICC key pool unavailable: generating");
                    dry.push((bits, e));
                }
            }
        }
        Reserve {
            pool: self,
            seal: self.seal,
            held: RefCell::new(held),
        }
    }
}

/// Sealed pairs taken for one chunk of a batch (one worker thread), opened when used; then
/// `pool`. Dropping it drops the unused pairs, still sealed.
pub struct Reserve<'p, P: ?Sized> {
    pool: &'p P,
    seal: &'p dyn StoreSealKeys,
    held: RefCell<Vec<Held>>,
}

/// Sealed pairs held for one size and exponent.
type Held = ((usize, RsaExponent), Vec<SealedPair>);

impl<P: IccKeySource + ?Sized> Reserve<'_, P> {
    /// Pairs still held, all sizes.
    pub fn held(&self) -> usize {
        self.held.borrow().iter().map(|(_, v)| v.len()).sum()
    }
}

impl<P: IccKeySource + ?Sized> IccKeySource for Reserve<'_, P> {
    fn certificate_serial(&self, _pair: &IccKeyPair, _n: u8) -> Result<[u8; 3], OdaError> {
        super::pool::random_serial()
    }

    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        let sealed = self
            .held
            .borrow_mut()
            .iter_mut()
            .find(|(k, _)| *k == (bits, exponent))
            .and_then(|(_, v)| v.pop());
        match sealed {
            Some(p) => Ok(IccKeyPair {
                pair: open_pair(self.seal, bits, exponent, &p)?,
                from_pool: true,
            }),
            None => self.pool.icc_key_pair(bits, exponent),
        }
    }
}

impl<S: IccKeyPoolStore> IccKeySource for PersistedPool<'_, S> {
    fn certificate_serial(&self, _pair: &IccKeyPair, _n: u8) -> Result<[u8; 3], OdaError> {
        super::pool::random_serial()
    }

    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        match self.take(bits, exponent)? {
            Some(pair) => Ok(IccKeyPair {
                pair,
                from_pool: true,
            }),
            None => self.fallback.icc_key_pair(bits, exponent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SoftwareKeyStore;
    use crate::keys::pool::{InlineKeys, generate};
    use crate::store::StoreError;
    use crate::store::key_pool::PoolCount;

    /// A pool store in memory that counts its batch takes.
    struct Counted {
        pairs: Vec<SealedPair>,
        batch_takes: usize,
    }

    impl IccKeyPoolStore for Counted {
        fn put_pairs(&mut self, _: usize, _: u32, p: &[SealedPair]) -> Result<(), StoreError> {
            self.pairs.extend_from_slice(p);
            Ok(())
        }
        fn take_pair(&mut self, _: usize, _: u32) -> Result<Option<SealedPair>, StoreError> {
            Ok(self.pairs.pop())
        }
        fn take_pairs(
            &mut self,
            bits: usize,
            _: u32,
            n: usize,
        ) -> Result<Vec<SealedPair>, StoreError> {
            self.batch_takes += 1;
            if bits != 512 {
                return Ok(Vec::new());
            }
            let keep = self.pairs.len().saturating_sub(n);
            Ok(self.pairs.split_off(keep))
        }
        fn pool_counts(&self) -> Result<Vec<PoolCount>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_reserve_takes_once_per_size_hands_each_pair_once_then_falls_back() {
        let keys_path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/keys.toml");
        let keys = SoftwareKeyStore::load(&keys_path).expect("demo keys");
        let e = RsaExponent::Three;
        let made: Vec<RsaKeyPair> = (0..2).map(|_| generate(512, e).expect("key")).collect();
        let sealed: Vec<SealedPair> = made
            .iter()
            .map(|p| seal_pair(&keys, p).expect("seal"))
            .collect();
        let store = Counted {
            pairs: sealed,
            batch_takes: 0,
        };
        let pool = PersistedPool::new(store, &keys, &InlineKeys);
        // Three cards of 512 bits (the pool has two) and one of 576 (the pool has none).
        let reserve = pool.reserve(&[(512, e), (512, e), (576, e), (512, e)]);
        assert_eq!(reserve.held(), 2);
        let mut moduli = Vec::new();
        for _ in 0..2 {
            let p = reserve.icc_key_pair(512, e).expect("pooled pair");
            assert!(p.from_pool);
            moduli.push(p.pair.modulus().to_vec());
        }
        let mut expected: Vec<Vec<u8>> = made.iter().map(|p| p.modulus().to_vec()).collect();
        moduli.sort();
        expected.sort();
        assert_eq!(moduli, expected, "each filled pair handed out once");
        let third = reserve.icc_key_pair(512, e).expect("generated");
        assert!(!third.from_pool, "the pool ran dry: generated inline");
        assert_eq!(third.pair.public_key().bits(), 512);
        drop(reserve);
        let store = pool.store.into_inner().expect("store");
        assert_eq!(store.batch_takes, 2, "one take per size, not one per card");
        assert!(store.pairs.is_empty());
    }
}
