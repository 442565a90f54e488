//! The duplicate-id rule of a streamed batch in bounded memory.
//!
//! [`SeenIds`] keeps each id as its 96-bit keyed hash ([`crate::domain::order::IdHasher`], a
//! per-process random key: nothing written holds an order id) with its 1-based position. The
//! ids live in a flat open-addressing table in memory (16 bytes a slot, at most
//! [`DEFAULT_MEMORY_SLOTS`] slots: 32 MiB, filled to 3/4); when it is full its entries are
//! merged into an on-disk hash table and the memory table starts again empty. The disk table is
//! a file of 4 KiB buckets (a count and up to 255 entries each) addressed by the top bits of
//! the hash, filled to at most 2/3 on average; a lookup reads one bucket (`pread`). The file is
//! created 0600 in a private directory of the OS temp dir and unlinked at once (it disappears
//! with the process), so process memory stays flat whatever the file size.
//!
//! Exact: an id is reported seen only when its 96-bit key was seen (a collision refuses the
//! later order, probability about n²/2⁹⁷); a read or write error of the spill file is returned
//! to the caller, which refuses the order (fails closed).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use crate::domain::order::IdKey;

/// Memory slots by default: 2²¹ × 16 bytes = 32 MiB (about 1.57 million ids before a spill).
pub const DEFAULT_MEMORY_SLOTS: usize = 1 << 21;

/// Environment variable (tests only) forcing a smaller memory table, in slots, so that the
/// spill path runs on a few thousand orders. It changes where ids are kept, not the answers.
pub const SLOTS_ENV: &str = "PERSODESK_TEST_ID_SLOTS";

/// Bytes of one disk bucket; slot 0 holds the entry count.
const BUCKET_BYTES: usize = 4096;
/// Entries a disk bucket holds.
const BUCKET_ENTRIES: usize = BUCKET_BYTES / 16 - 1;

/// A slot: the key's three words and the position (0: empty; positions start at 1).
type Slot = [u32; 4];

/// The ids seen so far in a streamed file (see the module documentation).
#[derive(Debug)]
pub struct SeenIds {
    table: Vec<Slot>,
    len: usize,
    max_slots: usize,
    disk: Option<Spill>,
    /// Where the spill file is made (the OS temp dir).
    dir: std::path::PathBuf,
}

/// The on-disk table.
#[derive(Debug)]
struct Spill {
    file: File,
    /// Number of buckets (a power of two).
    buckets: u64,
    /// Entries held.
    entries: u64,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl SeenIds {
    /// Room for about `n` ids in memory up front (at most the memory budget: the table then
    /// never grows for a file of `n` orders); the budget is [`DEFAULT_MEMORY_SLOTS`] unless
    /// [`SLOTS_ENV`] names a smaller power of two.
    pub fn with_capacity(n: usize) -> Self {
        let budget = std::env::var(SLOTS_ENV)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|s| s.is_power_of_two() && *s >= 16)
            .map_or(DEFAULT_MEMORY_SLOTS, |s| s.min(DEFAULT_MEMORY_SLOTS));
        Self::with_budget(n, budget)
    }

    /// [`Self::with_capacity`] with a memory table of at most `max_slots` slots (rounded up to
    /// a power of two, at least 16).
    pub fn with_budget(n: usize, max_slots: usize) -> Self {
        let max_slots = max_slots.max(16).next_power_of_two();
        let slots = (n.saturating_mul(4) / 3 + 1)
            .next_power_of_two()
            .clamp(16, max_slots);
        Self {
            table: vec![[0; 4]; slots],
            len: 0,
            max_slots,
            disk: None,
            dir: std::env::temp_dir(),
        }
    }

    /// Whether some ids are on disk.
    pub fn spilled(&self) -> bool {
        self.disk.is_some()
    }

    /// Notes the id with `key` at `position` (1-based); returns the earlier position when it
    /// was seen. An error of the spill file is returned (the caller refuses the order).
    pub fn check(&mut self, key: IdKey, position: usize) -> std::io::Result<Option<usize>> {
        let pos = u32::try_from(position).unwrap_or(u32::MAX).max(1);
        let mut at = self.find_slot(key);
        if self.table[at][3] != 0 {
            return Ok(Some(self.table[at][3] as usize));
        }
        if let Some(disk) = &self.disk
            && let Some(p) = disk.find(key)?
        {
            return Ok(Some(p as usize));
        }
        // Room before inserting: the table is never filled beyond 3/4, even when a spill fails.
        if self.len * 4 >= self.table.len() * 3 {
            if self.table.len() < self.max_slots {
                self.grow();
            } else {
                self.spill()?;
            }
            at = self.find_slot(key);
        }
        self.table[at] = [key[0], key[1], key[2], pos];
        self.len += 1;
        Ok(None)
    }

    /// The slot holding `key`, else the empty slot where it goes (linear probing).
    fn find_slot(&self, key: IdKey) -> usize {
        let mask = self.table.len() - 1;
        let mut i = key[2] as usize & mask;
        loop {
            let s = &self.table[i];
            if s[3] == 0 || s[..3] == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Doubles the memory table.
    fn grow(&mut self) {
        let doubled = vec![[0; 4]; self.table.len() * 2];
        let old = std::mem::replace(&mut self.table, doubled);
        for s in old.into_iter().filter(|s| s[3] != 0) {
            let at = self.find_slot([s[0], s[1], s[2]]);
            self.table[at] = s;
        }
    }

    /// Moves the memory table's entries to disk and empties it; on an error the table is
    /// rebuilt as it was (every id still found).
    fn spill(&mut self) -> std::io::Result<()> {
        let n = self.len;
        match self.try_spill() {
            Ok(disk) => {
                self.disk = Some(disk);
                self.table.fill([0; 4]);
                self.len = 0;
                Ok(())
            }
            Err(e) => {
                let entries = self.table[..n].to_vec();
                self.table.fill([0; 4]);
                for s in entries {
                    let at = self.find_slot([s[0], s[1], s[2]]);
                    self.table[at] = s;
                }
                Err(e)
            }
        }
    }

    /// The disk table holding the old one's entries and the memory table's (which this
    /// compacts to the front and sorts, in place).
    fn try_spill(&mut self) -> std::io::Result<Spill> {
        // Compact the entries to the front and sort them by disk bucket, in place.
        let mut n = 0;
        for i in 0..self.table.len() {
            if self.table[i][3] != 0 {
                self.table.swap(n, i);
                n += 1;
            }
        }
        let fresh = &mut self.table[..n];
        fresh.sort_unstable_by_key(|s| hash64(s));
        let total = self.disk.as_ref().map_or(0, |d| d.entries) + n as u64;
        let mut buckets = self.disk.as_ref().map_or(1, |d| d.buckets);
        // At most 2/3 full on average; twice the buckets again should one overflow.
        let want = (total * 3).div_ceil(2 * BUCKET_ENTRIES as u64).max(1);
        buckets = buckets.max(want.next_power_of_two());
        loop {
            match Spill::merge(self.disk.as_ref(), fresh, buckets, &self.dir)? {
                Some(d) => return Ok(d),
                None => buckets *= 2,
            }
        }
    }
}

/// The 64 bits of the key that address disk buckets (its first hash).
fn hash64(s: &[u32]) -> u64 {
    (u64::from(s[1]) << 32) | u64::from(s[0])
}

/// The bucket of `h` among `buckets` (a power of two): its top bits.
fn bucket_of(h: u64, buckets: u64) -> u64 {
    match buckets.trailing_zeros() {
        0 => 0,
        bits => h >> (64 - bits),
    }
}

impl Spill {
    /// A new, unlinked, private file.
    fn create(tmp: &std::path::Path) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = tmp.join(format!(
            "persodesk-ids-{}-{}",
            std::process::id(),
            hex::encode(rnd)
        ));
        crate::files::private_dir(&dir)?;
        let path = dir.join("ids");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(crate::files::FILE_MODE)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        file
    }

    /// The position of `key` when this table holds it.
    fn find(&self, key: IdKey) -> std::io::Result<Option<u32>> {
        let mut buf = [0u8; BUCKET_BYTES];
        let b = bucket_of(hash64(&key), self.buckets);
        self.file.read_exact_at(&mut buf, b * BUCKET_BYTES as u64)?;
        let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let count = (word(0) as usize).min(BUCKET_ENTRIES);
        Ok((1..=count)
            .map(|i| 16 * i)
            .find(|&at| [word(at), word(at + 4), word(at + 8)] == key)
            .map(|at| word(at + 12)))
    }

    /// A new table of `buckets` buckets holding `old`'s entries and `fresh` (sorted by
    /// [`hash64`]); `None` when a bucket would overflow.
    fn merge(
        old: Option<&Spill>,
        fresh: &[Slot],
        buckets: u64,
        tmp: &std::path::Path,
    ) -> std::io::Result<Option<Self>> {
        let file = Self::create(tmp)?;
        let mut out = BufWriter::with_capacity(256 * 1024, &file);
        let (old_buckets, ratio) = match old {
            Some(o) => (o.buckets, buckets / o.buckets),
            None => (1, buckets),
        };
        let mut buf = [0u8; BUCKET_BYTES];
        let mut next_fresh = 0;
        for ob in 0..old_buckets {
            let olds: Vec<Slot> = match old {
                Some(o) => {
                    o.file.read_exact_at(&mut buf, ob * BUCKET_BYTES as u64)?;
                    let slots = decode(&buf);
                    let count = (slots[0][0] as usize).min(BUCKET_ENTRIES);
                    slots[1..=count].to_vec()
                }
                None => Vec::new(),
            };
            for nb in ob * ratio..(ob + 1) * ratio {
                let mut bucket: Vec<Slot> = olds
                    .iter()
                    .filter(|s| bucket_of(hash64(&s[..]), buckets) == nb)
                    .copied()
                    .collect();
                while next_fresh < fresh.len()
                    && bucket_of(hash64(&fresh[next_fresh]), buckets) == nb
                {
                    bucket.push(fresh[next_fresh]);
                    next_fresh += 1;
                }
                if bucket.len() > BUCKET_ENTRIES {
                    return Ok(None);
                }
                out.write_all(&encode(&bucket))?;
            }
        }
        out.flush()?;
        drop(out);
        let entries = old.map_or(0, |o| o.entries) + fresh.len() as u64;
        Ok(Some(Self {
            file,
            buckets,
            entries,
        }))
    }
}

/// A bucket's bytes: the count, then the entries, little-endian words, zero-padded.
fn encode(entries: &[Slot]) -> [u8; BUCKET_BYTES] {
    let mut buf = [0u8; BUCKET_BYTES];
    buf[..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, s) in entries.iter().enumerate() {
        for (j, w) in s.iter().enumerate() {
            let at = 16 * (i + 1) + 4 * j;
            buf[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
    buf
}

/// The slots of a bucket's bytes (slot 0: the count in its first word).
fn decode(buf: &[u8; BUCKET_BYTES]) -> Vec<Slot> {
    buf.chunks_exact(16)
        .map(|c| {
            let w =
                |j: usize| u32::from_le_bytes([c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3]]);
            [w(0), w(1), w(2), w(3)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::IdHasher;
    use std::collections::HashMap;

    /// Checks `ids` in turn against a `HashMap` of the ids themselves (the reference).
    fn agrees_with_a_map(seen: &mut SeenIds, ids: &[String]) {
        let hasher = IdHasher::default();
        let mut reference: HashMap<&str, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            let pos = i + 1;
            let key = hasher.key(id).expect("not positional");
            let got = seen.check(key, pos).expect("spill file");
            let want = reference.get(id.as_str()).copied();
            assert_eq!(got, want, "id {id} at {pos}");
            reference.entry(id).or_insert(pos);
        }
    }

    fn ids_with_repeats(n: usize) -> Vec<String> {
        // Every 7th order repeats an earlier id, some far back (in the spilled part), some
        // just before (in memory).
        (0..n)
            .map(|i| match i % 7 {
                6 if i > 100 => format!("ID-{}", (i * 31) % (i - 50)),
                3 if i > 10 => format!("ID-{}", i - 2),
                _ => format!("ID-{i}"),
            })
            .collect()
    }

    #[test]
    fn a_tiny_memory_table_spills_and_still_finds_every_repeat() {
        let ids = ids_with_repeats(20_000);
        let mut seen = SeenIds::with_budget(0, 64);
        agrees_with_a_map(&mut seen, &ids);
        assert!(seen.spilled());
        let disk = seen.disk.as_ref().expect("spilled");
        assert!(disk.buckets > 1, "the disk table grew: {}", disk.buckets);
        assert_eq!(seen.table.len(), 64, "the memory table stays at its budget");
    }

    #[test]
    fn a_large_memory_table_never_spills_and_agrees() {
        let ids = ids_with_repeats(20_000);
        let mut seen = SeenIds::with_budget(10, 1 << 16);
        agrees_with_a_map(&mut seen, &ids);
        assert!(!seen.spilled());
    }

    #[test]
    fn an_overflowing_bucket_doubles_the_disk_table() {
        // Keys whose top bits are equal all land in one bucket until the table splits them.
        // The top two bits are always set, the next eight take 256 values: 2,000 keys need
        // at least 32 buckets (top five bits) where their count alone would give 16.
        let key = |i: u32| {
            [
                i.wrapping_mul(2_654_435_761),
                0xC000_0000 | ((i & 0xFF) << 22),
                i,
            ]
        };
        let mut seen = SeenIds::with_budget(0, 256);
        for i in 0..2_000u32 {
            assert_eq!(seen.check(key(i), i as usize + 1).expect("io"), None);
        }
        let buckets = seen.disk.as_ref().expect("spilled").buckets;
        assert!(buckets >= 32, "{buckets} buckets");
        for i in 0..2_000u32 {
            assert_eq!(seen.check(key(i), 9_999).expect("io"), Some(i as usize + 1));
        }
    }

    #[test]
    fn a_failed_spill_refuses_and_forgets_no_id() {
        let hasher = IdHasher::default();
        let mut seen = SeenIds::with_budget(0, 16);
        // A temp dir under a regular file: the spill file cannot be made.
        let blocker = std::env::temp_dir().join(format!("persodesk-seen-{}", std::process::id()));
        std::fs::write(&blocker, b"").expect("file");
        seen.dir = blocker.join("sub");
        let key = |i: usize| hasher.key(&format!("ID-{i}")).expect("key");
        let mut kept = Vec::new();
        for i in 1..=40 {
            match seen.check(key(i), i) {
                Ok(None) => kept.push(i),
                Ok(Some(at)) => panic!("{i} taken for {at}"),
                Err(_) => {}
            }
        }
        assert_eq!(kept.len(), 12, "3/4 of 16 slots, then every order refused");
        for &i in &kept {
            assert_eq!(seen.check(key(i), 99).expect("no spill needed"), Some(i));
        }
        std::fs::remove_file(&blocker).expect("cleanup");
    }

    #[test]
    fn the_spill_file_is_unlinked_and_holds_no_id() {
        let mut seen = SeenIds::with_budget(0, 16);
        let ids: Vec<String> = (0..500).map(|i| format!("SECRET-ORDER-{i:05}")).collect();
        agrees_with_a_map(&mut seen, &ids);
        let disk = seen.disk.as_ref().expect("spilled");
        let meta = disk.file.metadata().expect("metadata");
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 0, "unlinked");
        let mut bytes = vec![0u8; meta.len() as usize];
        disk.file.read_exact_at(&mut bytes, 0).expect("read");
        assert!(!bytes.windows(6).any(|w| w == b"SECRET"));
        assert!(bytes.iter().any(|b| *b != 0), "entries were written");
    }
}
