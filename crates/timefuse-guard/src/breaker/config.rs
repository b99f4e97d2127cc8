//! [`BreakerConfig`]: the breaker's thresholds and windows, with resilience4j's defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The largest count-based window.
pub(crate) const MAX_WINDOW_CALLS: u32 = 1 << 20;
/// The largest number of calls permitted in the half-open state (10 bits of the state word).
///
/// ```
/// use timefuse_guard::breaker::{BreakerConfig, MAX_HALF_OPEN_CALLS};
/// let config = BreakerConfig::new("x").permitted_calls_in_half_open(MAX_HALF_OPEN_CALLS + 1);
/// assert!(config.validate().is_err());
/// ```
pub const MAX_HALF_OPEN_CALLS: u32 = 1023;
/// The longest time-based window, in seconds (one bucket a second).
pub(crate) const MAX_WINDOW_SECONDS: u32 = 3600;

/// How the breaker aggregates the outcomes of recent calls.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::breaker::SlidingWindow;
///
/// assert_eq!(SlidingWindow::default(), SlidingWindow::CountBased(100));
/// let last_minute = SlidingWindow::time_based(Duration::from_secs(60));
/// assert_eq!(last_minute, SlidingWindow::TimeBased(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlidingWindow {
    /// The last `n` calls (resilience4j `COUNT_BASED`): a ring of `n` outcomes. `1..=2^20`.
    CountBased(u32),
    /// The calls of the last `n` seconds (resilience4j `TIME_BASED`): `n` one-second buckets,
    /// the current (partial) second included. `1..=3600`.
    TimeBased(u32),
}

impl SlidingWindow {
    /// A time-based window covering `span`, rounded up to whole seconds (at least one).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::breaker::SlidingWindow;
    /// assert_eq!(SlidingWindow::time_based(Duration::from_millis(1500)), SlidingWindow::TimeBased(2));
    /// ```
    pub fn time_based(span: Duration) -> SlidingWindow {
        let secs = span.as_secs() + u64::from(span.subsec_nanos() > 0);
        SlidingWindow::TimeBased(u32::try_from(secs.max(1)).unwrap_or(u32::MAX))
    }
}

impl Default for SlidingWindow {
    /// `CountBased(100)`, resilience4j's default.
    fn default() -> Self {
        SlidingWindow::CountBased(100)
    }
}

/// The configuration of a [`Breaker`](super::Breaker), with resilience4j's names and defaults.
///
/// | setting | default |
/// |---|---|
/// | [`sliding_window`](BreakerConfig::sliding_window) | count-based, 100 calls |
/// | [`minimum_calls`](BreakerConfig::minimum_calls) | 100 |
/// | [`failure_rate_threshold`](BreakerConfig::failure_rate_threshold) | 50 % |
/// | [`slow_call_duration_threshold`](BreakerConfig::slow_call_duration_threshold) | 60 s |
/// | [`slow_call_rate_threshold`](BreakerConfig::slow_call_rate_threshold) | 100 % |
/// | [`wait_in_open`](BreakerConfig::wait_in_open) | 60 s |
/// | [`permitted_calls_in_half_open`](BreakerConfig::permitted_calls_in_half_open) | 10 |
/// | [`max_wait_in_half_open`](BreakerConfig::max_wait_in_half_open) | zero: wait for every probe |
///
/// A count-based window never needs more calls than it holds: the minimum is capped at the
/// window size, as in resilience4j. The breaker moves from open to half-open by itself once
/// the wait is over, on the next call or state read (no timer task).
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::breaker::{BreakerConfig, SlidingWindow};
///
/// let config = BreakerConfig::new("ledger")
///     .sliding_window(SlidingWindow::CountBased(20))
///     .minimum_calls(10)
///     .failure_rate_threshold(25.0)
///     .wait_in_open(Duration::from_secs(5));
/// assert_eq!(config.name(), "ledger");
/// assert_eq!(config.minimum_calls_effective(), 10);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct BreakerConfig {
    pub(crate) name: Arc<str>,
    pub(crate) window: SlidingWindow,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate: f64,
    pub(crate) slow_rate: f64,
    pub(crate) slow_threshold: Duration,
    pub(crate) wait_in_open: Duration,
    pub(crate) half_open_calls: u32,
    pub(crate) max_wait_in_half_open: Duration,
    pub(crate) events_capacity: usize,
}

impl BreakerConfig {
    /// resilience4j's defaults, named `name` (the name appears in errors and events).
    ///
    /// ```
    /// let config = timefuse_guard::breaker::BreakerConfig::new("ledger");
    /// assert_eq!(config.get_minimum_calls(), 100);
    /// ```
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        BreakerConfig {
            name: name.into(),
            window: SlidingWindow::CountBased(100),
            minimum_calls: 100,
            failure_rate: 50.0,
            slow_rate: 100.0,
            slow_threshold: Duration::from_secs(60),
            wait_in_open: Duration::from_secs(60),
            half_open_calls: 10,
            max_wait_in_half_open: Duration::ZERO,
            events_capacity: 64,
        }
    }

    /// The design document's preset: open at 50 % failures over the last 60 s (time-based),
    /// the other settings at their defaults.
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, SlidingWindow};
    /// let config = BreakerConfig::fifty_percent_over_a_minute("payments");
    /// assert_eq!(config.get_sliding_window(), SlidingWindow::TimeBased(60));
    /// assert_eq!(config.get_failure_rate_threshold(), 50.0);
    /// ```
    pub fn fifty_percent_over_a_minute(name: impl Into<Arc<str>>) -> Self {
        BreakerConfig::new(name)
            .sliding_window(SlidingWindow::TimeBased(60))
            .failure_rate_threshold(50.0)
    }

    /// Sets the sliding window.
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, SlidingWindow};
    /// let config = BreakerConfig::new("x").sliding_window(SlidingWindow::TimeBased(10));
    /// assert_eq!(config.get_sliding_window(), SlidingWindow::TimeBased(10));
    /// ```
    #[must_use]
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.window = window;
        self
    }

    /// Sets how many calls the window must hold before a rate is computed (below it the
    /// breaker never opens, even if every call failed).
    ///
    /// ```
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x").minimum_calls(5);
    /// assert_eq!(config.get_minimum_calls(), 5);
    /// ```
    #[must_use]
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// Sets the failure rate, in percent (`0 < p ≤ 100`), at or above which the breaker opens.
    ///
    /// ```
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x").failure_rate_threshold(20.0);
    /// assert_eq!(config.get_failure_rate_threshold(), 20.0);
    /// ```
    #[must_use]
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate = percent;
        self
    }

    /// Sets the slow-call rate, in percent (`0 < p ≤ 100`), at or above which the breaker
    /// opens.
    ///
    /// ```
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x").slow_call_rate_threshold(80.0);
    /// assert_eq!(config.get_slow_call_rate_threshold(), 80.0);
    /// ```
    #[must_use]
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_rate = percent;
        self
    }

    /// Sets the duration above which a call is slow (successful or not).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x")
    ///     .slow_call_duration_threshold(Duration::from_millis(300));
    /// assert_eq!(config.get_slow_call_duration_threshold(), Duration::from_millis(300));
    /// ```
    #[must_use]
    pub fn slow_call_duration_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    /// Sets how long the breaker stays open before it lets probes through (half-open).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x").wait_in_open(Duration::from_secs(5));
    /// assert_eq!(config.get_wait_in_open(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait_in_open = wait;
        self
    }

    /// Sets how many probes the half-open state admits (`1..=1023`); their outcomes decide
    /// between closed and open again.
    ///
    /// ```
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x").permitted_calls_in_half_open(3);
    /// assert_eq!(config.get_permitted_calls_in_half_open(), 3);
    /// ```
    #[must_use]
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.half_open_calls = calls;
        self
    }

    /// Sets how long the breaker may stay half-open before it opens again without a verdict
    /// (resilience4j `maxWaitDurationInHalfOpenState`); zero, the default, waits for every
    /// probe.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x")
    ///     .max_wait_in_half_open(Duration::from_secs(10));
    /// assert_eq!(config.get_max_wait_in_half_open(), Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.max_wait_in_half_open = wait;
        self
    }

    /// Sets how many unread events each [`subscribe`](super::Breaker::subscribe)r may lag
    /// behind (default 64; older ones are dropped for a slow subscriber).
    ///
    /// ```
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x").events_capacity(16);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn events_capacity(mut self, capacity: usize) -> Self {
        self.events_capacity = capacity.max(1);
        self
    }

    /// The breaker's name.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::breaker::BreakerConfig::new("db").name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sliding window.
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, SlidingWindow};
    /// assert_eq!(BreakerConfig::new("x").get_sliding_window(), SlidingWindow::CountBased(100));
    /// ```
    pub fn get_sliding_window(&self) -> SlidingWindow {
        self.window
    }

    /// The minimum number of calls, as configured.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::breaker::BreakerConfig::new("x").get_minimum_calls(), 100);
    /// ```
    pub fn get_minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The minimum number of calls as applied: capped at the size of a count-based window,
    /// and at least one.
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, SlidingWindow};
    /// let config = BreakerConfig::new("x").sliding_window(SlidingWindow::CountBased(10));
    /// assert_eq!(config.minimum_calls_effective(), 10);
    /// ```
    pub fn minimum_calls_effective(&self) -> u32 {
        let min = match self.window {
            SlidingWindow::CountBased(n) => self.minimum_calls.min(n),
            SlidingWindow::TimeBased(_) => self.minimum_calls,
        };
        min.max(1)
    }

    /// The failure-rate threshold, in percent.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::breaker::BreakerConfig::new("x").get_failure_rate_threshold(), 50.0);
    /// ```
    pub fn get_failure_rate_threshold(&self) -> f64 {
        self.failure_rate
    }

    /// The slow-call-rate threshold, in percent.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::breaker::BreakerConfig::new("x").get_slow_call_rate_threshold(), 100.0);
    /// ```
    pub fn get_slow_call_rate_threshold(&self) -> f64 {
        self.slow_rate
    }

    /// The slow-call duration threshold.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x");
    /// assert_eq!(config.get_slow_call_duration_threshold(), Duration::from_secs(60));
    /// ```
    pub fn get_slow_call_duration_threshold(&self) -> Duration {
        self.slow_threshold
    }

    /// The wait in the open state.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x");
    /// assert_eq!(config.get_wait_in_open(), Duration::from_secs(60));
    /// ```
    pub fn get_wait_in_open(&self) -> Duration {
        self.wait_in_open
    }

    /// The number of half-open probes.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::breaker::BreakerConfig::new("x").get_permitted_calls_in_half_open(), 10);
    /// ```
    pub fn get_permitted_calls_in_half_open(&self) -> u32 {
        self.half_open_calls
    }

    /// The longest stay in the half-open state (zero: unbounded).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = timefuse_guard::breaker::BreakerConfig::new("x");
    /// assert_eq!(config.get_max_wait_in_half_open(), Duration::ZERO);
    /// ```
    pub fn get_max_wait_in_half_open(&self) -> Duration {
        self.max_wait_in_half_open
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first setting out of range: a window of zero or more than
    /// 2^20 calls (3600 s), a threshold outside `(0, 100]`, or a half-open probe count
    /// outside `1..=1023`.
    ///
    /// ```
    /// use timefuse_guard::breaker::BreakerConfig;
    /// let err = BreakerConfig::new("x").failure_rate_threshold(0.0).validate().unwrap_err();
    /// assert_eq!(err.setting(), "failure_rate_threshold");
    /// ```
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad =
            |setting: &'static str, reason: &'static str| Err(InvalidConfig { setting, reason });
        match self.window {
            SlidingWindow::CountBased(n) if n == 0 || n > MAX_WINDOW_CALLS => {
                return bad(
                    "sliding_window",
                    "a count-based window holds 1..=1048576 calls",
                );
            }
            SlidingWindow::TimeBased(s) if s == 0 || s > MAX_WINDOW_SECONDS => {
                return bad(
                    "sliding_window",
                    "a time-based window spans 1..=3600 seconds",
                );
            }
            _ => {}
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 100.0) {
            return bad("failure_rate_threshold", "must be in (0, 100]");
        }
        if !(self.slow_rate > 0.0 && self.slow_rate <= 100.0) {
            return bad("slow_call_rate_threshold", "must be in (0, 100]");
        }
        if self.half_open_calls == 0 || self.half_open_calls > MAX_HALF_OPEN_CALLS {
            return bad("permitted_calls_in_half_open", "must be in 1..=1023");
        }
        Ok(())
    }
}

impl Default for BreakerConfig {
    /// [`BreakerConfig::new("default")`](BreakerConfig::new).
    fn default() -> Self {
        BreakerConfig::new("default")
    }
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("name", &self.name)
            .field("sliding_window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("failure_rate_threshold", &self.failure_rate)
            .field("slow_call_rate_threshold", &self.slow_rate)
            .field("slow_call_duration_threshold", &self.slow_threshold)
            .field("wait_in_open", &self.wait_in_open)
            .field("permitted_calls_in_half_open", &self.half_open_calls)
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .finish()
    }
}

/// A [`BreakerConfig`] setting out of range.
///
/// ```
/// use timefuse_guard::breaker::BreakerConfig;
/// let err = BreakerConfig::new("x").permitted_calls_in_half_open(0).validate().unwrap_err();
/// assert_eq!(err.to_string(), "invalid breaker setting permitted_calls_in_half_open: must be in 1..=1023");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    setting: &'static str,
    reason: &'static str,
}

impl InvalidConfig {
    /// The setting's name.
    ///
    /// ```
    /// use timefuse_guard::breaker::BreakerConfig;
    /// let err = BreakerConfig::new("x").slow_call_rate_threshold(101.0).validate().unwrap_err();
    /// assert_eq!(err.setting(), "slow_call_rate_threshold");
    /// ```
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid breaker setting {}: {}",
            self.setting, self.reason
        )
    }
}

impl std::error::Error for InvalidConfig {}
