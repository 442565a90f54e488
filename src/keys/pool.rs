//! A pool of pre-generated ICC RSA key pairs, filled by a background thread, so that per-card
//! preparation does not wait on RSA key generation. A request the pool cannot serve (empty, or a
//! size or exponent it does not hold) is generated inline, correctly, and said so.
//!
//! Pairs are handed out once and zeroized when dropped; the pool lives in memory only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rsa::rand_core::UnwrapErr;

use crate::domain::chip::keys::{IccKeyPair, IccKeySource};
use crate::domain::oda::{OdaError, RsaExponent, RsaKeyPair};

/// Generates one key pair with the system RNG.
pub fn generate(bits: usize, exponent: RsaExponent) -> Result<RsaKeyPair, OdaError> {
    let mut rng = UnwrapErr(getrandom::SysRng);
    RsaKeyPair::generate(&mut rng, bits, exponent)
}

/// Three random bytes for an ICC certificate serial number (system RNG).
pub fn random_serial() -> Result<[u8; 3], OdaError> {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b)
        .map_err(|_| OdaError::Rsa("the system random number generator failed"))?;
    Ok(b)
}

/// Inline generation only (no pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct InlineKeys;

impl IccKeySource for InlineKeys {
    fn certificate_serial(&self, _pair: &IccKeyPair, _n: u8) -> Result<[u8; 3], OdaError> {
        random_serial()
    }

    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        Ok(IccKeyPair {
            pair: generate(bits, exponent)?,
            from_pool: false,
        })
    }
}

struct Shared {
    bits: usize,
    exponent: RsaExponent,
    target: usize,
    ready: Mutex<VecDeque<RsaKeyPair>>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<RsaKeyPair>> {
        // A panic while holding the lock leaves a queue of whole key pairs: still usable.
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pre-generated ICC key pairs of one size and exponent, kept topped up to `target` by a named
/// background thread (`icc-key-pool`). Dropping the pool stops and joins the thread.
pub struct KeyPool {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPool")
            .field("bits", &self.shared.bits)
            .field("exponent", &self.shared.exponent.value())
            .field("target", &self.shared.target)
            .field("ready", &self.len())
            .finish()
    }
}

impl KeyPool {
    /// Starts a pool of `target` pairs of `bits` bits with `exponent`.
    pub fn start(bits: usize, exponent: RsaExponent, target: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            bits,
            exponent,
            target,
            ready: Mutex::new(VecDeque::with_capacity(target)),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("icc-key-pool".into())
            .spawn(move || fill(&s))?;
        Ok(Self {
            shared,
            worker: Some(worker),
        })
    }

    /// Key size of the pairs held.
    pub fn bits(&self) -> usize {
        self.shared.bits
    }

    /// Pairs ready now.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    /// True when no pair is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` pairs are ready (at most `target`) or `timeout` passes; returns
    /// whether they are.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let n = n.min(self.shared.target);
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        while q.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = match self.shared.changed.wait_timeout(q, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Takes a ready pair of this size and exponent, if any.
    pub fn take(&self, bits: usize, exponent: RsaExponent) -> Option<RsaKeyPair> {
        if bits != self.shared.bits || exponent != self.shared.exponent {
            return None;
        }
        let pair = self.shared.lock().pop_front();
        self.shared.changed.notify_all();
        pair
    }
}

fn fill(s: &Shared) {
    loop {
        {
            let mut q = s.lock();
            while q.len() >= s.target && !s.stop.load(Ordering::Acquire) {
                q = match s.changed.wait_timeout(q, Duration::from_millis(200)) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        match generate(s.bits, s.exponent) {
            Ok(pair) => {
                s.lock().push_back(pair);
                s.changed.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %e, bits = s.bits, "ICC key pool: key generation failed");
                return;
            }
        }
    }
}

impl Drop for KeyPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.changed.notify_all();
        if let Some(w) = self.worker.take() {
            // A generation in progress finishes first (bounded: one key pair).
            let _ = w.join();
        }
    }
}

impl IccKeySource for KeyPool {
    fn certificate_serial(&self, _pair: &IccKeyPair, _n: u8) -> Result<[u8; 3], OdaError> {
        random_serial()
    }

    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        if let Some(pair) = self.take(bits, exponent) {
            return Ok(IccKeyPair {
                pair,
                from_pool: true,
            });
        }
        tracing::debug!(
            bits,
            "ICC key pool empty or of another size: generating inline"
        );
        InlineKeys.icc_key_pair(bits, exponent)
    }
}

/// Several pools, one per (size, exponent); requests for other sizes are generated inline.
#[derive(Debug, Default)]
pub struct KeyPools {
    pools: Vec<KeyPool>,
}

impl KeyPools {
    /// Pools for each (bits, exponent), `target` pairs each.
    pub fn start(specs: &[(usize, RsaExponent)], target: usize) -> std::io::Result<Self> {
        let mut pools: Vec<KeyPool> = Vec::with_capacity(specs.len());
        for (bits, e) in specs {
            if !pools
                .iter()
                .any(|p| p.shared.bits == *bits && p.shared.exponent == *e)
            {
                pools.push(KeyPool::start(*bits, *e, target)?);
            }
        }
        Ok(Self { pools })
    }
}

impl IccKeySource for KeyPools {
    fn certificate_serial(&self, _pair: &IccKeyPair, _n: u8) -> Result<[u8; 3], OdaError> {
        random_serial()
    }

    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        for p in &self.pools {
            if let Some(pair) = p.take(bits, exponent) {
                return Ok(IccKeyPair {
                    pair,
                    from_pool: true,
                });
            }
        }
        InlineKeys.icc_key_pair(bits, exponent)
    }
}
