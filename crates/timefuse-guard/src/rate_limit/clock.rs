//! [`TokioClock`]: governor's clock over `tokio::time::Instant`.

use std::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A [`governor`] clock reading [`tokio::time::Instant`], so that the limiter and the timers
/// that wait for its permits share one clock.
///
/// Under tokio's paused test clock (`#[tokio::test(start_paused = true)]`,
/// `tokio::time::pause`) the limiter follows virtual time: a test can run an hour of traffic in
/// milliseconds and check the limiter's accuracy exactly. In production (tokio without
/// `test-util`) it reads the monotonic clock, as `std::time::Instant` does.
///
/// Instants are nanoseconds since the clock was made; clones share the origin.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use governor::clock::Clock;
/// use timefuse_guard::rate_limit::TokioClock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = TokioClock::new();
/// let before = clock.now();
/// tokio::time::advance(Duration::from_secs(3600)).await; // an hour of virtual time
/// assert_eq!(Duration::from(clock.now()) - Duration::from(before), Duration::from_secs(3600));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    ///
    /// ```
    /// let clock = timefuse_guard::rate_limit::TokioClock::new();
    /// # let _ = clock;
    /// ```
    pub fn new() -> TokioClock {
        TokioClock {
            origin: Instant::now(),
        }
    }

    /// The tokio instant of a reading of this clock.
    ///
    /// ```
    /// use governor::clock::Clock;
    /// use timefuse_guard::rate_limit::TokioClock;
    ///
    /// let clock = TokioClock::new();
    /// let now = clock.now();
    /// assert!(clock.instant(now) <= tokio::time::Instant::now());
    /// ```
    pub fn instant(&self, reading: Nanos) -> Instant {
        self.origin + Duration::from(reading)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        // u64 nanoseconds last 584 years.
        Nanos::new(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The clock a [`RateLimiter`](super::RateLimiter) reads.
///
/// - [`Monotonic`](LimiterClock::monotonic) (the default): governor's `quanta` clock (the TSC
///   where it is reliable): the cheapest reading, for production.
/// - [`Tokio`](LimiterClock::tokio): [`TokioClock`], for tests and simulations on tokio's
///   paused clock, where a limiter must follow virtual time.
///
/// Both are monotonic and real-time in production, so waits computed from either line up with
/// tokio's timers.
///
/// ```
/// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimiter};
///
/// let fast = RateLimiter::direct(Rate::per_second(100));
/// let simulated = RateLimiter::direct_with_clock(Rate::per_second(100), LimiterClock::tokio());
/// # let _ = (fast, simulated);
/// ```
#[derive(Clone, Debug)]
pub enum LimiterClock {
    /// governor's `quanta` clock, as nanoseconds since the clock was made.
    Monotonic {
        /// The clock.
        clock: governor::clock::QuantaClock,
        /// Its reading when made.
        start: governor::clock::QuantaInstant,
    },
    /// tokio's clock.
    Tokio(TokioClock),
}

impl LimiterClock {
    /// governor's `quanta` clock (the default).
    ///
    /// ```
    /// assert!(!timefuse_guard::rate_limit::LimiterClock::monotonic().is_tokio());
    /// ```
    pub fn monotonic() -> LimiterClock {
        let clock = governor::clock::QuantaClock::default();
        let start = clock.now();
        LimiterClock::Monotonic { clock, start }
    }

    /// tokio's clock ([`TokioClock`]), which follows tokio's paused test clock.
    ///
    /// ```
    /// assert!(timefuse_guard::rate_limit::LimiterClock::tokio().is_tokio());
    /// ```
    pub fn tokio() -> LimiterClock {
        LimiterClock::Tokio(TokioClock::new())
    }

    /// True for the tokio clock.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::LimiterClock;
    /// assert!(!LimiterClock::default().is_tokio());
    /// ```
    pub fn is_tokio(&self) -> bool {
        matches!(self, LimiterClock::Tokio(_))
    }
}

impl Default for LimiterClock {
    fn default() -> Self {
        LimiterClock::monotonic()
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        match self {
            LimiterClock::Monotonic { clock, start } => {
                governor::clock::Reference::duration_since(&clock.now(), *start)
            }
            LimiterClock::Tokio(t) => t.now(),
        }
    }
}
