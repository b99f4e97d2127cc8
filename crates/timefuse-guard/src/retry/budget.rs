//! [`RetryBudget`]: Finagle's and Linkerd's retry budget, shared across clones.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Buckets of the sliding window.
const SLOTS: usize = 10;

/// Bounds retries to a share of recent requests: `retry_ratio` of the requests of the last
/// `ttl`, plus `min_per_sec · ttl` free retries (Finagle's `RetryBudget`, Linkerd's
/// `retryBudget`: 20 % plus 10 per second over 10 s by default).
///
/// Every request [deposits](RetryBudget::deposit) into the budget; every retry
/// [withdraws](RetryBudget::withdraw) one from it and is not made if there is none. Unlike a
/// maximum number of retries per request, a budget stops retry storms: when a dependency
/// fails everything, retries add at most `retry_ratio` to its load instead of multiplying it.
///
/// The window is ten buckets of `ttl / 10`, each one `AtomicU64` holding its slot number and
/// count, so deposits and withdrawals are lock-free and shared by every clone. Under contention
/// a withdrawal may overdraw by the number of racing withdrawals (as tower's `TpsBudget` may).
/// Time is read from `tokio::time::Instant`, so the budget follows tokio's paused test clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // 20 % of requests, no free retries.
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "two retries for ten requests");
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    origin: Instant,
    slot_nanos: u64,
    ttl: Duration,
    min_per_sec: u32,
    ratio: f64,
    /// Free retries per window: `min_per_sec · ttl`.
    reserve: f64,
    deposits: [AtomicU64; SLOTS],
    withdrawals: [AtomicU64; SLOTS],
    /// The latest slot seen by a clock read: deposits that skip the clock use it.
    recent_slot: AtomicU64,
}

/// Why a [`RetryBudget`] could not be made.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::retry::RetryBudget;
/// let err = RetryBudget::try_new(Duration::from_secs(90), 10, 0.2).unwrap_err();
/// assert_eq!(err.to_string(), "a retry budget's ttl must be within [1s, 60s]");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidBudget(&'static str);

impl fmt::Display for InvalidBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.0)
    }
}

impl std::error::Error for InvalidBudget {}

/// Packs a slot number (low 32 bits kept) and a count.
fn pack(slot: u64, count: u32) -> u64 {
    (slot << 32) | u64::from(count)
}

fn unpack(word: u64) -> (u64, u32) {
    (word >> 32, word as u32)
}

impl RetryBudget {
    /// A budget of `retry_ratio` of the requests of the last `ttl`, plus `min_per_sec` free
    /// retries per second.
    ///
    /// # Panics
    ///
    /// If `ttl` is outside `[1 s, 60 s]` or `retry_ratio` outside `[0, 10]` or not a number
    /// (Finagle's bounds); use [`try_new`](RetryBudget::try_new) for an error instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::retry::RetryBudget;
    /// let budget = RetryBudget::new(Duration::from_secs(10), 10, 0.2);
    /// assert_eq!(budget.ratio(), 0.2);
    /// ```
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f64) -> RetryBudget {
        match RetryBudget::try_new(ttl, min_per_sec, retry_ratio) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// As [`new`](RetryBudget::new).
    ///
    /// # Errors
    ///
    /// [`InvalidBudget`] if `ttl` is outside `[1 s, 60 s]` or `retry_ratio` outside `[0, 10]`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::retry::RetryBudget;
    /// assert!(RetryBudget::try_new(Duration::from_secs(10), 10, 0.2).is_ok());
    /// assert!(RetryBudget::try_new(Duration::from_secs(10), 10, -1.0).is_err());
    /// ```
    pub fn try_new(
        ttl: Duration,
        min_per_sec: u32,
        retry_ratio: f64,
    ) -> Result<RetryBudget, InvalidBudget> {
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
            return Err(InvalidBudget(
                "a retry budget's ttl must be within [1s, 60s]",
            ));
        }
        if !(0.0..=10.0).contains(&retry_ratio) {
            return Err(InvalidBudget(
                "a retry budget's ratio must be within [0, 10] (0.2 is 20 %)",
            ));
        }
        let slot_nanos = (ttl.as_nanos() / SLOTS as u128) as u64;
        Ok(RetryBudget {
            shared: Arc::new(Shared {
                origin: Instant::now(),
                slot_nanos,
                ttl,
                min_per_sec,
                ratio: retry_ratio,
                reserve: f64::from(min_per_sec) * ttl.as_secs_f64(),
                deposits: Default::default(),
                withdrawals: Default::default(),
                recent_slot: AtomicU64::new(0),
            }),
        })
    }

    /// The window over which requests and retries are counted.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(timefuse_guard::retry::RetryBudget::default().ttl(), Duration::from_secs(10));
    /// ```
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// The free retries per second.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::retry::RetryBudget::default().min_per_sec(), 10);
    /// ```
    pub fn min_per_sec(&self) -> u32 {
        self.shared.min_per_sec
    }

    /// The share of requests that may be retried.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::retry::RetryBudget::default().ratio(), 0.2);
    /// ```
    pub fn ratio(&self) -> f64 {
        self.shared.ratio
    }

    fn slot_now(&self) -> u64 {
        self.slot_at(Instant::now())
    }

    fn slot_at(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.shared.origin);
        // u64 nanoseconds last 584 years; a u64 division is several times cheaper than u128.
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = nanos / self.shared.slot_nanos;
        if self.shared.recent_slot.load(Ordering::Relaxed) < slot {
            self.shared.recent_slot.fetch_max(slot, Ordering::Relaxed);
        }
        slot & 0xFFFF_FFFF
    }

    fn add(buckets: &[AtomicU64; SLOTS], slot: u64) {
        let bucket = &buckets[(slot % SLOTS as u64) as usize];
        let mut cur = bucket.load(Ordering::Relaxed);
        loop {
            let (s, n) = unpack(cur);
            let next = if s == slot {
                pack(slot, n.saturating_add(1))
            } else {
                pack(slot, 1) // a stale bucket: its slot left the window
            };
            match bucket.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn sum(buckets: &[AtomicU64; SLOTS], now: u64) -> u64 {
        buckets
            .iter()
            .map(|b| unpack(b.load(Ordering::Relaxed)))
            .filter(|&(slot, _)| now.wrapping_sub(slot) & 0xFFFF_FFFF < SLOTS as u64)
            .map(|(_, n)| u64::from(n))
            .sum()
    }

    /// Records a request (call it once per original request, not per retry).
    ///
    /// ```
    /// let budget = timefuse_guard::retry::RetryBudget::new(std::time::Duration::from_secs(10), 0, 1.0);
    /// assert!(!budget.withdraw());
    /// budget.deposit();
    /// assert!(budget.withdraw());
    /// ```
    pub fn deposit(&self) {
        Self::add(&self.shared.deposits, self.slot_now());
    }

    /// Records a request made at `now` (saves a clock read for a caller that has one).
    pub(crate) fn deposit_at(&self, now: Instant) {
        Self::add(&self.shared.deposits, self.slot_at(now));
    }

    /// Records a request without reading the clock: in the latest slot any clock read saw.
    /// Under steady traffic that is the current slot; after a quiet spell it may be an older
    /// one, so the deposit leaves the window early (fewer retries, never more).
    pub(crate) fn deposit_recent(&self) {
        let slot = self.shared.recent_slot.load(Ordering::Relaxed) & 0xFFFF_FFFF;
        Self::add(&self.shared.deposits, slot);
    }

    /// Takes one retry from the budget if there is one.
    ///
    /// ```
    /// let budget = timefuse_guard::retry::RetryBudget::new(std::time::Duration::from_secs(1), 2, 0.0);
    /// assert!(budget.withdraw() && budget.withdraw());
    /// assert!(!budget.withdraw(), "two free retries per second, none from requests");
    /// ```
    pub fn withdraw(&self) -> bool {
        let now = self.slot_now();
        if self.balance_at(now) < 1.0 {
            return false;
        }
        Self::add(&self.shared.withdrawals, now);
        true
    }

    /// Retries available now (may be fractional: 20 % of three requests is 0.6).
    ///
    /// ```
    /// let budget = timefuse_guard::retry::RetryBudget::default();
    /// assert_eq!(budget.balance(), 100.0, "10 free retries a second over 10 s");
    /// ```
    pub fn balance(&self) -> f64 {
        self.balance_at(self.slot_now())
    }

    fn balance_at(&self, now: u64) -> f64 {
        let s = &self.shared;
        let deposits = Self::sum(&s.deposits, now) as f64;
        let withdrawals = Self::sum(&s.withdrawals, now) as f64;
        s.reserve + s.ratio * deposits - withdrawals
    }
}

impl Default for RetryBudget {
    /// Finagle's and Linkerd's default: 20 % of requests plus 10 retries per second, over 10 s.
    fn default() -> Self {
        RetryBudget::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ttl", &self.shared.ttl)
            .field("min_per_sec", &self.shared.min_per_sec)
            .field("ratio", &self.shared.ratio)
            .field("balance", &self.balance())
            .finish()
    }
}
