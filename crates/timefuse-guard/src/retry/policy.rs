//! [`RetryPolicy`] and [`Classify`]: which results are retried, how often, after what delay.

use std::time::Duration;

use super::Backoff;
use crate::GuardError;

/// Decides whether a result is worth retrying. Any `Fn(&Result<Res, GuardError>) -> bool` is
/// one; [`OnErrors`] (the default) retries every error.
///
/// Refusals (rate limited, open circuit, full bulkhead, refused for budget) never reach the
/// classifier unless the policy [retries refusals](RetryPolicy::retry_refusals): the callee was
/// not called, and retrying into a refusal only adds load where it is already too high. Nor
/// does anything once the request's own context has ended.
///
/// # Examples
///
/// ```
/// use timefuse_guard::GuardError;
/// use timefuse_guard::retry::{Classify, OnErrors};
///
/// // Retry 503 responses too.
/// let on_503 = |r: &Result<u16, GuardError>| matches!(r, Ok(503) | Err(_));
/// assert!(on_503.retryable(&Ok(503)));
/// assert!(!on_503.retryable(&Ok(200)));
/// assert!(Classify::<u16>::retryable(&OnErrors, &Err(GuardError::from_inner("reset"))));
/// ```
pub trait Classify<Res> {
    /// True if `result` should be retried.
    fn retryable(&self, result: &Result<Res, GuardError>) -> bool;
}

/// Retries every error, no response.
///
/// ```
/// use timefuse_guard::retry::{Classify, OnErrors};
/// assert!(!Classify::<u8>::retryable(&OnErrors, &Ok(1)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnErrors;

impl<Res> Classify<Res> for OnErrors {
    #[inline]
    fn retryable(&self, result: &Result<Res, GuardError>) -> bool {
        result.is_err()
    }
}

impl<Res, F> Classify<Res> for F
where
    F: Fn(&Result<Res, GuardError>) -> bool,
{
    #[inline]
    fn retryable(&self, result: &Result<Res, GuardError>) -> bool {
        self(result)
    }
}

/// How a request is retried: at most `max_attempts` attempts in all, the [`Backoff`] between
/// them, whether refusals are retried, and the [`Classify`] that picks retryable results.
///
/// Defaults: 3 attempts (resilience4j's `maxAttempts`, the SRE book's "up to three
/// attempts"), Envoy's jittered backoff, refusals not retried, [`OnErrors`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::retry::{Backoff, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .max_attempts(2)
///     .backoff(Backoff::Fixed(Duration::from_millis(20)));
/// assert_eq!(policy.attempts(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy<C = OnErrors> {
    pub(super) max_attempts: u32,
    pub(super) backoff: Backoff,
    pub(super) retry_refusals: bool,
    pub(super) classify: C,
}

impl Default for RetryPolicy<OnErrors> {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::default(),
            retry_refusals: false,
            classify: OnErrors,
        }
    }
}

impl<C> RetryPolicy<C> {
    /// At most `n` attempts in all, the first included (so `1` never retries).
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    ///
    /// ```
    /// let policy = timefuse_guard::retry::RetryPolicy::default().max_attempts(5);
    /// assert_eq!(policy.attempts(), 5);
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        assert!(n > 0, "at least one attempt");
        self.max_attempts = n;
        self
    }

    /// The delay before each retry.
    ///
    /// ```
    /// use timefuse_guard::retry::{Backoff, RetryPolicy};
    /// let policy = RetryPolicy::default().backoff(Backoff::None);
    /// assert_eq!(policy.backoff_strategy(), Backoff::None);
    /// ```
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Also retry refusals (rate limited, open circuit, full bulkhead, refused for budget),
    /// waiting at least their `retry_after`. Off by default.
    ///
    /// ```
    /// let policy = timefuse_guard::retry::RetryPolicy::default().retry_refusals(true);
    /// assert!(policy.retries_refusals());
    /// ```
    #[must_use]
    pub fn retry_refusals(mut self, yes: bool) -> Self {
        self.retry_refusals = yes;
        self
    }

    /// Picks the retryable results with `classify`.
    ///
    /// ```
    /// use timefuse_guard::GuardError;
    /// use timefuse_guard::retry::RetryPolicy;
    /// let policy = RetryPolicy::default().classify(|r: &Result<u16, GuardError>| !matches!(r, Ok(200..=499)));
    /// # let _ = policy;
    /// ```
    pub fn classify<C2>(self, classify: C2) -> RetryPolicy<C2> {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            retry_refusals: self.retry_refusals,
            classify,
        }
    }

    /// Attempts in all.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::retry::RetryPolicy::default().attempts(), 3);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff.
    ///
    /// ```
    /// use timefuse_guard::retry::{Backoff, RetryPolicy};
    /// assert_eq!(RetryPolicy::default().backoff_strategy(), Backoff::default());
    /// ```
    pub fn backoff_strategy(&self) -> Backoff {
        self.backoff
    }

    /// True if refusals are retried.
    ///
    /// ```
    /// assert!(!timefuse_guard::retry::RetryPolicy::default().retries_refusals());
    /// ```
    pub fn retries_refusals(&self) -> bool {
        self.retry_refusals
    }

    /// Whether `result` is to be retried, before budget and time are considered; and the least
    /// delay (a refusal's `retry_after`).
    pub(super) fn wants_retry<Res>(&self, result: &Result<Res, GuardError>) -> Option<Duration>
    where
        C: Classify<Res>,
    {
        if let Err(e) = result
            && e.is_refusal()
        {
            if !self.retry_refusals {
                return None;
            }
            let after = e.retry_after().unwrap_or(Duration::ZERO);
            return self.classify.retryable(result).then_some(after);
        }
        self.classify.retryable(result).then_some(Duration::ZERO)
    }
}
