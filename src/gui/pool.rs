//! The persisted ICC key pool filled in idle time: a background thread (`icc-pool-filler`, its
//! own store connection) generates ICC key pairs of the sizes the chip profiles need, seals each
//! with the key store's `store` key ([`persisted_pool::seal_pair`]) and keeps them in the store,
//! until every size holds [`POOL_TARGET`] pairs. It generates only while the window says it is
//! idle ([`PoolFiller::set_idle`]: no load, preview or personalization under way), never on the
//! UI thread, and stops when the filler is dropped (the window closing). The status bar shows
//! the pairs left ([`PoolFiller::left`]).
//!
//! Started only when a store is configured and the key store can seal (a `store` key): private
//! keys are never kept in clear.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::domain::chip::ChipProfiles;
use crate::domain::mask::debug_fields;
use crate::domain::oda::RsaExponent;
use crate::keys::LoadedKeys;
use crate::keys::persisted_pool;
use crate::store::key_pool::{IccKeyPoolStore, SealedPair};
use crate::store::{Store, StoreLocation};

/// Pairs per size the window keeps in the pool.
pub const POOL_TARGET: u64 = 1_000;

/// Pairs generated between two writes (one transaction each) and two status updates.
const BATCH: usize = 16;

/// How long the thread waits before looking again when the pool is full or the window busy
/// (another process may have taken pairs meanwhile).
const RECHECK: Duration = Duration::from_secs(2);

/// No count known yet.
const UNKNOWN: u64 = u64::MAX;

/// What the filler keeps: sizes, target, store, keys.
pub struct FillPlan {
    /// The ICC key sizes and exponents to keep (from the chip profiles).
    pub sizes: Vec<(usize, RsaExponent)>,
    /// Pairs per size.
    pub target: u64,
    /// The store (the thread opens its own connection).
    pub location: StoreLocation,
    /// The key store holding the `store` sealing key (and the audit key for the store).
    pub keys: Arc<LoadedKeys>,
}

impl FillPlan {
    /// The sizes the DDA/CDA chip profiles need, without repeats; empty when none does.
    pub fn sizes_for(profiles: &ChipProfiles) -> Vec<(usize, RsaExponent)> {
        let mut sizes: Vec<(usize, RsaExponent)> = Vec::new();
        for p in profiles.profiles() {
            let size = (p.oda.icc_key_bits, p.oda.icc_exponent);
            if p.oda.method.needs_icc_key() && !sizes.contains(&size) {
                sizes.push(size);
            }
        }
        sizes
    }
}

/// The window's filler: `sizes` kept at [`POOL_TARGET`] in the store at `location`, the status
/// bar repainted through `waker` after each write.
pub fn start_for(
    location: &StoreLocation,
    sizes: Vec<(usize, RsaExponent)>,
    keys: &Arc<LoadedKeys>,
    waker: &super::worker::Waker,
) -> Option<PoolFiller> {
    let plan = FillPlan {
        sizes,
        target: POOL_TARGET,
        location: location.clone(),
        keys: Arc::clone(keys),
    };
    let waker = waker.clone();
    PoolFiller::start(plan, move || waker.wake())
}

/// The running filler; dropping it stops and joins the thread (at most one pair's generation).
pub struct PoolFiller {
    left: Arc<AtomicU64>,
    idle: Arc<AtomicBool>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for PoolFiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_fields(f, "PoolFiller", &[("left", &self.left())])
    }
}

impl PoolFiller {
    /// Starts filling per `plan`, calling `changed` (from the thread) after each write; `None`
    /// when there is nothing to fill (no size needs ICC keys) or the key store cannot seal.
    pub fn start(plan: FillPlan, changed: impl Fn() + Send + 'static) -> Option<PoolFiller> {
        if plan.sizes.is_empty() || plan.target == 0 {
            return None;
        }
        let can_seal = plan
            .keys
            .store_seal()
            .is_some_and(|s| s.store_seal("icc-key:probe", b"").is_ok());
        if !can_seal {
            tracing::info!("no store key: the window does not fill the ICC key pool");
            return None;
        }
        let (stop, stopped) = channel();
        let filler = Filler {
            left: Arc::new(AtomicU64::new(UNKNOWN)),
            idle: Arc::new(AtomicBool::new(false)),
            error: Arc::new(Mutex::new(None)),
            stopped,
        };
        let mut running = PoolFiller {
            left: Arc::clone(&filler.left),
            idle: Arc::clone(&filler.idle),
            stop: Some(stop),
            thread: None,
            error: Arc::clone(&filler.error),
        };
        let spawned = std::thread::Builder::new()
            .name("icc-pool-filler".into())
            .spawn(move || filler.run(&plan, &changed));
        match spawned {
            Ok(handle) => running.thread = Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "ICC key pool filler: cannot start the thread");
                return None;
            }
        }
        Some(running)
    }

    /// Whether the window is idle (pairs are generated only then).
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// Pairs left in the pool for the sizes kept, once read.
    pub fn left(&self) -> Option<u64> {
        Some(self.left.load(Ordering::Relaxed)).filter(|n| *n != UNKNOWN)
    }

    /// Why the filler stopped, if it failed (the store or the key store; never key material).
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The status bar text: `pool: N left`.
    pub fn status(&self) -> String {
        match (self.left(), self.error()) {
            (_, Some(_)) => "pool: unavailable".into(),
            (Some(n), None) => format!("pool: {n} left"),
            (None, None) => "pool: …".into(),
        }
    }
}

impl Drop for PoolFiller {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread's side.
struct Filler {
    left: Arc<AtomicU64>,
    idle: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    stopped: Receiver<()>,
}

impl Filler {
    fn run(&self, plan: &FillPlan, changed: &dyn Fn()) {
        if let Err(e) = self.fill(plan, changed) {
            tracing::warn!(error = %e, "ICC key pool filler stopped");
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            changed();
        }
    }

    /// Whether to stop: the filler was dropped (waits up to `wait` for it).
    fn stopping(&self, wait: Duration) -> bool {
        match self.stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    fn fill(&self, plan: &FillPlan, changed: &dyn Fn()) -> Result<(), String> {
        let mut store = Store::open_at(&plan.location, plan.keys.audit_sealer())
            .map_err(|e| format!("workstation store: {e}"))?;
        let seal = plan.keys.store_seal().ok_or("the key store cannot seal")?;
        loop {
            let counts = counts(&store, &plan.sizes)?;
            let left: u64 = counts.iter().sum();
            if self.left.swap(left, Ordering::Relaxed) != left {
                changed();
            }
            let short = plan
                .sizes
                .iter()
                .zip(&counts)
                .find(|(_, n)| **n < plan.target);
            let Some((&(bits, e), &n)) = short.filter(|_| self.idle.load(Ordering::Relaxed)) else {
                if self.stopping(RECHECK) {
                    return Ok(());
                }
                continue;
            };
            let want = usize::try_from(plan.target - n).unwrap_or(BATCH).min(BATCH);
            let mut batch: Vec<SealedPair> = Vec::with_capacity(want);
            for _ in 0..want {
                if self.stopping(Duration::ZERO) || !self.idle.load(Ordering::Relaxed) {
                    break;
                }
                let pair = crate::keys::pool::generate(bits, e).map_err(|e| e.to_string())?;
                batch.push(persisted_pool::seal_pair(seal, &pair)?);
            }
            if !batch.is_empty() {
                store
                    .put_pairs(bits, e.value(), &batch)
                    .map_err(|e| format!("workstation store: {e}"))?;
            }
            if self.stopping(Duration::ZERO) {
                return Ok(());
            }
        }
    }
}

/// Pairs left per size, in the order of `sizes`.
fn counts(store: &Store, sizes: &[(usize, RsaExponent)]) -> Result<Vec<u64>, String> {
    let all = store
        .pool_counts()
        .map_err(|e| format!("workstation store: {e}"))?;
    Ok(sizes
        .iter()
        .map(|(bits, e)| {
            all.iter()
                .filter(|c| c.bits == *bits && c.exponent == e.value())
                .map(|c| c.count)
                .sum()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &std::path::Path, target: u64) -> FillPlan {
        FillPlan {
            sizes: vec![(512, RsaExponent::Three)],
            target,
            location: StoreLocation::Sqlite(dir.join("persodesk.sqlite3")),
            keys: Arc::new(super::super::demo_keys().expect("demo keys")),
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("persodesk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// A filler of 3 pairs into a store in `dir`, reporting each write on the receiver; with
    /// the keys and the store it writes to.
    fn start_filler(
        dir: &std::path::Path,
    ) -> (PoolFiller, Receiver<()>, Arc<LoadedKeys>, StoreLocation) {
        let (tx, rx) = channel();
        let plan = plan(dir, 3);
        let keys = Arc::clone(&plan.keys);
        let location = plan.location.clone();
        let filler = PoolFiller::start(plan, move || {
            let _ = tx.send(());
        })
        .expect("demo keys have a store key");
        (filler, rx, keys, location)
    }

    #[test]
    fn fills_to_the_target_with_sealed_pairs_that_open_and_stops_when_dropped() {
        let dir = temp_dir("pool-filler");
        let (filler, rx, keys, location) = start_filler(&dir);
        filler.set_idle(true);
        // Wait (no time limit asserted) until the status says the pool is full.
        while filler.left() != Some(3) {
            rx.recv().expect("the filler reports each write");
            assert!(filler.error().is_none(), "{:?}", filler.error());
        }
        assert_eq!(filler.status(), "pool: 3 left");
        drop(filler);

        let mut store = Store::open_at(&location, keys.audit_sealer()).expect("store");
        let counts = store.pool_counts().expect("counts");
        assert_eq!(counts.len(), 1);
        assert_eq!(
            (counts[0].bits, counts[0].exponent, counts[0].count),
            (512, 3, 3)
        );
        let seal = keys.store_seal().expect("seal");
        for _ in 0..3 {
            let p = store.take_pair(512, 3).expect("take").expect("a pair");
            let pair = persisted_pool::open_pair(seal, 512, RsaExponent::Three, &p)
                .expect("opens under the store key");
            assert_eq!(pair.public_key().bits(), 512);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generates_nothing_while_the_window_is_busy() {
        let dir = temp_dir("pool-filler-busy");
        let (filler, rx, keys, location) = start_filler(&dir);
        // The first report is the count read before any generation; idle was never set.
        rx.recv().expect("first report");
        assert_eq!(filler.left(), Some(0));
        drop(filler);
        let store = Store::open_at(&location, keys.audit_sealer()).expect("store");
        assert!(
            store
                .pool_counts()
                .expect("counts")
                .iter()
                .all(|c| c.count == 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The demo key file without its `store` key.
    fn without_store_key() -> LoadedKeys {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/keys.toml"),
        )
        .expect("demo keys");
        let kept: Vec<&str> = text
            .split("[[key]]")
            .filter(|block| !block.contains("usage = \"store\""))
            .collect();
        assert!(
            kept.len() < text.split("[[key]]").count(),
            "a store key was removed"
        );
        let keys = crate::keys::SoftwareKeyStore::from_toml("no store key", &kept.join("[[key]]"))
            .expect("keys");
        LoadedKeys::Software(keys)
    }

    #[test]
    fn does_not_start_without_a_size_to_fill_or_a_store_key() {
        let dir = temp_dir("pool-filler-none");
        let mut p = plan(&dir, 3);
        p.sizes.clear();
        assert!(PoolFiller::start(p, || {}).is_none());
        let mut p = plan(&dir, 3);
        p.keys = Arc::new(without_store_key());
        assert!(PoolFiller::start(p, || {}).is_none());
        let mut p = plan(&dir, 3);
        p.target = 0;
        assert!(PoolFiller::start(p, || {}).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
