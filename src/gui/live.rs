//! Live statuses from a shared store: a background thread reads every order's state from the
//! store (its own connection) every [`LIVE_EVERY`] and sends it to the window, which updates the
//! rows other stations changed (only a shared store, PostgreSQL: an SQLite store belongs to this
//! workstation). Both are read for the production counter ([`super::counter`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::Duration;

use super::worker::Waker;
use crate::store::queue::StationTally;
use crate::store::{OrderState, Sealer, Store, StoreLocation};

/// How often the shared store is read.
pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// One read of the store.
pub struct LiveRead {
    /// Every order's state.
    pub states: HashMap<String, OrderState>,
    /// Per station, what it finished since midnight UTC (`None` when that read failed).
    pub stations: Option<BTreeMap<String, StationTally>>,
}

/// The watcher of a shared store; stops its thread when dropped.
pub struct LiveStates {
    rx: Receiver<LiveRead>,
    stop: Arc<AtomicBool>,
    shared: bool,
}

impl LiveStates {
    /// Starts reading `location` every `every` (`None` when the thread cannot start).
    pub fn start(
        location: &StoreLocation,
        sealer: Option<Arc<dyn Sealer>>,
        every: Duration,
        waker: Waker,
    ) -> Option<LiveStates> {
        let shared = location.is_shared();
        let (tx, rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let (location, flag) = (location.clone(), Arc::clone(&stop));
        let spawned = super::worker::spawn_named("live-states", move || {
            // This workstation's own SQLite store is only read here (nothing written).
            let opened = if shared {
                Store::open_at(&location, sealer)
            } else {
                Store::open_at_for_verify(&location, sealer)
            };
            let store = match opened {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "live statuses unavailable"),
            };
            while !flag.load(Ordering::Relaxed) {
                match read(&store) {
                    // A full channel means the window has not read the last one yet.
                    Ok(live) => match tx.try_send(live) {
                        Ok(()) => waker.wake(),
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {}
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
                    },
                    Err(e) => tracing::warn!(error = %e, "live statuses: read failed"),
                }
                std::thread::sleep(every);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "live statuses: cannot start the thread");
            return None;
        }
        Some(LiveStates { rx, stop, shared })
    }

    /// A shared store (other stations change its rows); else only counted.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The newest read, if a new one arrived.
    pub fn latest(&self) -> Option<LiveRead> {
        let mut newest = None;
        loop {
            match self.rx.try_recv() {
                Ok(states) => newest = Some(states),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return newest,
            }
        }
    }
}

/// Reads every state, and each station's production since midnight UTC.
fn read(store: &Store) -> Result<LiveRead, crate::store::StoreError> {
    let states = store.states()?;
    let since = super::counter::midnight_utc(crate::store::now());
    let stations = match store.station_production(since) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "live statuses: per-station counts unavailable");
            None
        }
    };
    Ok(LiveRead { states, stations })
}

impl Drop for LiveStates {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
