//! [`Rate`]: how many permits per period, and the burst.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// A rate: `num` permits per `per`, with a burst of `burst` permits (by default `num`).
///
/// The limiter is a GCRA (generic cell rate algorithm): one permit every `per / num`, and up
/// to `burst` permits at once after a quiet spell. Over any window of length `T` it admits at
/// most `burst + T · num / per` calls.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::rate_limit::Rate;
///
/// let rate = Rate::per_second(100);
/// assert_eq!(rate.interval(), Duration::from_millis(10));
/// assert_eq!(rate.burst(), 100);
///
/// let smooth = Rate::new(5, Duration::from_secs(1)).with_burst(1);
/// assert_eq!(smooth.burst(), 1);
/// assert!(Rate::try_new(0, Duration::from_secs(1)).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    num: NonZeroU32,
    per: Duration,
    burst: NonZeroU32,
}

/// Why a [`Rate`] could not be made.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::rate_limit::Rate;
///
/// let err = Rate::try_new(10, Duration::ZERO).unwrap_err();
/// assert_eq!(err.to_string(), "a rate's period must be greater than zero");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRate(&'static str);

impl fmt::Display for InvalidRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.0)
    }
}

impl std::error::Error for InvalidRate {}

impl Rate {
    /// `num` permits per `per`, burst `num`.
    ///
    /// # Panics
    ///
    /// If `num` is zero or `per` is zero (use [`try_new`](Rate::try_new) to get an error).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rate = timefuse_guard::rate_limit::Rate::new(6000, Duration::from_secs(60));
    /// assert_eq!(rate.interval(), Duration::from_millis(10));
    /// ```
    pub fn new(num: u32, per: Duration) -> Rate {
        match Rate::try_new(num, per) {
            Ok(rate) => rate,
            Err(e) => panic!("{e}"),
        }
    }

    /// `num` permits per `per`, burst `num`.
    ///
    /// # Errors
    ///
    /// [`InvalidRate`] if `num` or `per` is zero, or `per` is over 24 hours.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::rate_limit::Rate;
    /// assert!(Rate::try_new(100, Duration::from_secs(1)).is_ok());
    /// assert!(Rate::try_new(0, Duration::from_secs(1)).is_err());
    /// ```
    pub fn try_new(num: u32, per: Duration) -> Result<Rate, InvalidRate> {
        let num = NonZeroU32::new(num).ok_or(InvalidRate("a rate must allow at least one call"))?;
        if per.is_zero() {
            return Err(InvalidRate("a rate's period must be greater than zero"));
        }
        if per > Duration::from_secs(24 * 3600) {
            return Err(InvalidRate("a rate's period must be at most 24h"));
        }
        Ok(Rate {
            num,
            per,
            burst: num,
        })
    }

    /// `num` permits per second, burst `num`.
    ///
    /// # Panics
    ///
    /// If `num` is zero.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::rate_limit::Rate::per_second(100).num(), 100);
    /// ```
    pub fn per_second(num: u32) -> Rate {
        Rate::new(num, Duration::from_secs(1))
    }

    /// The same rate with a burst of `burst` permits.
    ///
    /// # Panics
    ///
    /// If `burst` is zero.
    ///
    /// ```
    /// let rate = timefuse_guard::rate_limit::Rate::per_second(100).with_burst(10);
    /// assert_eq!(rate.burst(), 10);
    /// ```
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Rate {
        self.burst = NonZeroU32::new(burst).expect("a burst must be at least one");
        self
    }

    /// Permits per period.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::rate_limit::Rate::per_second(7).num(), 7);
    /// ```
    pub fn num(&self) -> u32 {
        self.num.get()
    }

    /// The period.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(timefuse_guard::rate_limit::Rate::per_second(7).per(), Duration::from_secs(1));
    /// ```
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The most permits granted at once.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::rate_limit::Rate::per_second(7).burst(), 7);
    /// ```
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The time between two permits at the steady rate: `per / num` (at least 1 ns).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rate = timefuse_guard::rate_limit::Rate::per_second(4);
    /// assert_eq!(rate.interval(), Duration::from_millis(250));
    /// ```
    pub fn interval(&self) -> Duration {
        let nanos = self.per.as_nanos() / u128::from(self.num.get());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
    }

    /// The governor quota for this rate.
    pub(crate) fn quota(&self) -> Quota {
        Quota::with_period(self.interval())
            .expect("the interval is at least 1 ns")
            .allow_burst(self.burst)
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rate({}/{:?}, burst {})", self.num, self.per, self.burst)
    }
}
