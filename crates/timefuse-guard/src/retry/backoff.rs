//! [`Backoff`]: the delay before a retry.

use std::time::Duration;

/// The delay before retry number `n` (1 for the first retry): exponential with full jitter,
/// a random delay in `[0, min(max, base · 2^(n−1)))` (Envoy's: base 25 ms, max 250 ms), or
/// fixed.
///
/// The retry layer shortens a delay that would leave too little of the budget for the retry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::retry::Backoff;
///
/// let backoff = Backoff::default();
/// for n in 1..10 {
///     assert!(backoff.delay(n) < Duration::from_millis(250));
/// }
/// assert_eq!(Backoff::Fixed(Duration::from_millis(10)).delay(3), Duration::from_millis(10));
/// assert_eq!(Backoff::None.delay(1), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backoff {
    /// Retry at once.
    None,
    /// The same delay before every retry.
    Fixed(Duration),
    /// Exponential with full jitter.
    Exponential {
        /// The bound of the first retry's delay.
        base: Duration,
        /// The largest bound.
        max: Duration,
    },
}

impl Default for Backoff {
    /// Envoy's: exponential with full jitter, base 25 ms, max 250 ms.
    fn default() -> Self {
        Backoff::Exponential {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1-based).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::retry::Backoff;
    /// let b = Backoff::Exponential { base: Duration::from_millis(10), max: Duration::from_millis(40) };
    /// assert!(b.delay(1) < Duration::from_millis(10));
    /// assert!(b.delay(8) < Duration::from_millis(40));
    /// ```
    pub fn delay(&self, retry: u32) -> Duration {
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(d) => d,
            Backoff::Exponential { base, max } => {
                let shift = retry.saturating_sub(1).min(31);
                let bound = base.saturating_mul(1 << shift).min(max);
                bound.mul_f64(fastrand::f64())
            }
        }
    }
}
