//! The faults of one service at run time, drawn from its [`ServiceFaults`]: latency, errors,
//! hangs and partitions, on a clock that starts with the load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use timefuse::{CancelGuard, Context};
use tokio::time::Instant;

use crate::scenario::ServiceFaults;

/// What one call to a service will suffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    /// How long its database work takes.
    pub latency: Duration,
    /// It fails (before any effect).
    pub error: bool,
    /// Its database work never answers.
    pub hang: bool,
}

/// One service's faults, shared by its handlers.
#[derive(Debug)]
pub struct Chaos {
    faults: ServiceFaults,
    start: Instant,
    rng: Mutex<fastrand::Rng>,
    healed: Context,
    heal: Mutex<Option<CancelGuard>>,
}

impl Chaos {
    /// The faults of a service, with the load starting at `start`; `seed` makes the draws
    /// repeatable.
    pub fn new(faults: ServiceFaults, start: Instant, seed: u64) -> Arc<Chaos> {
        let (healed, heal) = Context::background().with_cancel();
        Arc::new(Chaos {
            faults,
            start,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            healed,
            heal: Mutex::new(Some(heal)),
        })
    }

    /// The service's connection pool size.
    pub fn pool(&self) -> u32 {
        self.faults.pool
    }

    /// Draws the faults of one call.
    pub fn draw(&self) -> Draw {
        if self.healed.is_done() {
            return Draw {
                latency: Duration::from_millis(1),
                error: false,
                hang: false,
            };
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        Draw {
            latency: self.faults.latency.sample(&mut rng),
            error: rng.f64() < self.faults.error_rate,
            hang: rng.f64() < self.faults.hang_probability,
        }
    }

    /// If the service is black-holed now, how long until the window ends.
    pub fn partitioned(&self) -> Option<Duration> {
        if self.healed.is_done() {
            return None;
        }
        self.faults.partitioned_at(self.start.elapsed())
    }

    /// Waits out a partition: until its window ends or the chaos is healed.
    pub async fn black_hole(&self, left: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = self.healed.done() => {}
        }
    }

    /// A hang: waits until the chaos is healed (the end of the run); whoever owns the call
    /// ends it first by dropping it, if they can.
    pub async fn hang(&self) {
        self.healed.done().await;
    }

    /// Ends every fault for good: hangs return, partitions close, draws are fast (so the chain
    /// can drain and reconcile at the end of a run).
    pub fn heal(&self) {
        if let Some(guard) = self.heal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            guard.cancel();
        }
    }
}
