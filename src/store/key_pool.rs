//! The persisted ICC key pool: pre-generated ICC RSA key pairs kept in the store, each private key
//! sealed by the key store ([`crate::keys::persisted_pool`] seals and opens; this module only
//! keeps opaque blobs). Pairs are taken and deleted in one statement (`DELETE … RETURNING`, one
//! write transaction), so two processes or threads never get the same pair. A batch take
//! ([`IccKeyPoolStore::take_pairs`]) deletes and returns up to N pairs in that one transaction
//! (one fsync for N cards): batch preparation asks for exactly the number of DDA/CDA orders of
//! that size in the chunk a worker is on, so a process never takes more pairs than it has cards
//! for. A pair taken but not used (its order fails after the take) is dropped, never put back:
//! each pair is used at most once. The window's preview keeps the one-at-a-time
//! [`IccKeyPoolStore::take_pair`].
//!
//! Table `icc_key_pool` (created when first used, `CREATE TABLE IF NOT EXISTS`: additive, no
//! change to the rest of the schema): `id`, `bits`, `exponent`, `pair_id` (random, part of the
//! sealing purpose), `sealed` (the sealed private key), `created_at`. SQLite's `secure_delete`
//! is turned on for the connection so that a taken pair's sealed bytes are overwritten in the
//! file, not only unlinked.

use super::{Store, StoreError, now};

/// One sealed pair as kept: its random id (bound into the sealing purpose) and the blob.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedPair {
    /// Random id, unique in the pool.
    pub pair_id: String,
    /// The sealed private key (opaque here).
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedPair")
            .field("pair_id", &self.pair_id)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

/// Pairs of one size and exponent left in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCount {
    /// Modulus size in bits.
    pub bits: usize,
    /// Public exponent (3 or 65537).
    pub exponent: u32,
    /// Pairs left.
    pub count: u64,
}

/// Where persisted ICC key pairs are kept: put, take (each pair at most once), count.
pub trait IccKeyPoolStore {
    /// Keeps sealed pairs of `bits` bits and public exponent `exponent`, in one transaction.
    fn put_pairs(
        &mut self,
        bits: usize,
        exponent: u32,
        pairs: &[SealedPair],
    ) -> Result<(), StoreError>;

    /// Takes (and deletes) the oldest pair of `bits` bits and exponent `exponent`, if any.
    fn take_pair(&mut self, bits: usize, exponent: u32) -> Result<Option<SealedPair>, StoreError>;

    /// Takes (and deletes) up to `n` of the oldest pairs of `bits` bits and exponent
    /// `exponent` in one transaction; fewer (or none) when the pool has fewer.
    fn take_pairs(
        &mut self,
        bits: usize,
        exponent: u32,
        n: usize,
    ) -> Result<Vec<SealedPair>, StoreError>;

    /// Pairs left per size and exponent.
    fn pool_counts(&self) -> Result<Vec<PoolCount>, StoreError>;
}

/// The SQLite table, created at open when missing (additive: `CREATE … IF NOT EXISTS`).
pub(crate) const SQLITE_TABLE: &str = "
CREATE TABLE IF NOT EXISTS icc_key_pool (
    id         INTEGER PRIMARY KEY,
    bits       INTEGER NOT NULL,
    exponent   INTEGER NOT NULL,
    pair_id    TEXT NOT NULL UNIQUE,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS icc_key_pool_size ON icc_key_pool(bits, exponent, id);
";

/// The size and public exponent a pair is pooled under, as the engines store them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSize {
    /// Modulus bits.
    pub bits: i64,
    /// Public exponent.
    pub exponent: i64,
}

impl PairSize {
    fn new(bits: usize, exponent: u32) -> PairSize {
        PairSize {
            bits: i64::try_from(bits).unwrap_or(i64::MAX),
            exponent: i64::from(exponent),
        }
    }
}

/// The key pool's primitives inside one transaction, per engine.
pub trait KeyPoolTx {
    /// Keeps one sealed pair.
    fn put_pair(&mut self, size: PairSize, pair: &SealedPair, at: i64) -> Result<(), StoreError>;
    /// Takes and deletes the oldest pair of that size and exponent (skipping rows another
    /// transaction holds), if any.
    fn take_pair(&mut self, size: PairSize) -> Result<Option<SealedPair>, StoreError>;
    /// Takes and deletes up to `n` of the oldest pairs of that size and exponent in one
    /// statement (skipping rows another transaction holds).
    fn take_pairs(&mut self, size: PairSize, n: i64) -> Result<Vec<SealedPair>, StoreError>;
    /// Pairs left per size and exponent, ordered by size.
    fn pool_counts(&mut self) -> Result<Vec<PoolCount>, StoreError>;
}

impl IccKeyPoolStore for Store {
    fn put_pairs(
        &mut self,
        bits: usize,
        exponent: u32,
        pairs: &[SealedPair],
    ) -> Result<(), StoreError> {
        let at = now();
        let size = PairSize::new(bits, exponent);
        self.write_unchained(|tx| {
            for p in pairs {
                tx.put_pair(size, p, at)?;
            }
            Ok(())
        })
    }

    fn take_pair(&mut self, bits: usize, exponent: u32) -> Result<Option<SealedPair>, StoreError> {
        let size = PairSize::new(bits, exponent);
        self.write_unchained(|tx| tx.take_pair(size))
    }

    fn take_pairs(
        &mut self,
        bits: usize,
        exponent: u32,
        n: usize,
    ) -> Result<Vec<SealedPair>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let size = PairSize::new(bits, exponent);
        self.write_unchained(|tx| tx.take_pairs(size, n))
    }

    fn pool_counts(&self) -> Result<Vec<PoolCount>, StoreError> {
        self.read(|tx| tx.pool_counts())
    }
}

/// A stored count as a [`PoolCount`] (negative values, which the schema never writes, read as 0).
pub(crate) fn count_row(bits: i64, exponent: i64, count: i64) -> PoolCount {
    PoolCount {
        bits: usize::try_from(bits).unwrap_or(0),
        exponent: u32::try_from(exponent).unwrap_or(0),
        count: u64::try_from(count).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!(
            "persodesk-keypool-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir.join("s.sqlite3")).expect("store")
    }

    fn pair(id: &str) -> SealedPair {
        SealedPair {
            pair_id: id.into(),
            sealed: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn pairs_are_taken_oldest_first_once_each_and_counted_per_size() {
        let mut s = store();
        s.put_pairs(1024, 3, &[pair("a"), pair("b")]).expect("put");
        s.put_pairs(1152, 3, &[pair("c")]).expect("put");
        let counts = s.pool_counts().expect("counts");
        assert_eq!(
            counts,
            vec![
                PoolCount {
                    bits: 1024,
                    exponent: 3,
                    count: 2
                },
                PoolCount {
                    bits: 1152,
                    exponent: 3,
                    count: 1
                },
            ]
        );
        assert_eq!(s.take_pair(1024, 65537).expect("take"), None);
        assert_eq!(s.take_pair(1024, 3).expect("take"), Some(pair("a")));
        assert_eq!(s.take_pair(1024, 3).expect("take"), Some(pair("b")));
        assert_eq!(s.take_pair(1024, 3).expect("take"), None);
        assert_eq!(s.pool_counts().expect("counts").len(), 1);
    }
}
