//! The shared vocabulary: what happened to a call ([`Outcome`]) and why a guard did not return
//! the inner service's response ([`GuardError`]).
//!
//! # One error type for every layer
//!
//! Every service in this crate has `type Error = GuardError` and accepts any inner service
//! whose error is `Into<BoxError>`. The inner error passes through **boxed and untouched** in
//! [`GuardError::Inner`]; a guard's own refusal is one of the other variants. Stacking guards
//! never nests errors: [`GuardError::from_inner`] unwraps an inner error that is already a
//! `GuardError` (an inner guard's refusal stays a refusal, an inner `Inner` stays one `Inner`).
//! So, whatever the stack, one `match` sees every case:
//!
//! ```
//! use std::time::Duration;
//! use timefuse_guard::{BoxError, GuardError, Outcome};
//!
//! fn status(err: &GuardError) -> u16 {
//!     match err {
//!         GuardError::RateLimited { .. } => 429,
//!         e if e.is_refusal() => 503, // budget, open circuit, full bulkhead
//!         GuardError::Ended { .. } => 504,
//!         _ => 502,
//!     }
//! }
//!
//! // An inner guard's refusal, seen through an outer guard: still a refusal, not an `Inner`.
//! let refused: BoxError = Box::new(GuardError::rate_limited(Duration::from_millis(20)));
//! let err = GuardError::from_inner(refused);
//! assert_eq!(status(&err), 429);
//! assert_eq!(err.outcome(), Outcome::RateLimited);
//!
//! // The inner service's own error: boxed, reachable by downcast.
//! let err = GuardError::from_inner(std::io::Error::other("connection reset"));
//! assert_eq!(err.outcome(), Outcome::Failure);
//! assert!(err.inner().unwrap().downcast_ref::<std::io::Error>().is_some());
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use timefuse::Cause;

/// A type-erased error, as in tower: what inner services' errors are converted into.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What happened to one call, as every guard reports it (to metrics, events, the breaker's
/// window and the retry budget).
///
/// The first three are calls that ran; the next four are refusals — the callee was never
/// called, so they say nothing about its health and never count in a breaker's window; the
/// last is a fallback answer.
///
/// ```
/// use timefuse_guard::Outcome;
///
/// assert!(Outcome::OpenCircuit.is_refusal());
/// assert!(Outcome::Slow.is_call() && !Outcome::Slow.is_refusal());
/// assert_eq!(Outcome::RefusedForBudget.as_str(), "refused_for_budget");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// The call ran and succeeded in time.
    Success,
    /// The call ran and failed (an inner error, or the deadline ended it).
    Failure,
    /// The call ran and succeeded, but slower than the slow-call threshold.
    Slow,
    /// Refused before the call: the remaining budget was below the callee's expected latency
    /// or the policy floor.
    RefusedForBudget,
    /// Refused by a rate limiter.
    RateLimited,
    /// Refused by an open (or forced-open, or saturated half-open) circuit breaker.
    OpenCircuit,
    /// Refused by a bulkhead: no permit within the budget.
    BulkheadFull,
    /// Answered by a fallback instead of the callee.
    Degraded,
}

impl Outcome {
    /// All outcomes, in declaration order (for metric label sets).
    ///
    /// ```
    /// let labels: Vec<_> = timefuse_guard::Outcome::ALL.iter().map(|o| o.as_str()).collect();
    /// assert_eq!(labels[0], "success");
    /// assert_eq!(labels.len(), 8);
    /// ```
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Slow,
        Outcome::RefusedForBudget,
        Outcome::RateLimited,
        Outcome::OpenCircuit,
        Outcome::BulkheadFull,
        Outcome::Degraded,
    ];

    /// True for the refusals: [`RefusedForBudget`](Outcome::RefusedForBudget),
    /// [`RateLimited`](Outcome::RateLimited), [`OpenCircuit`](Outcome::OpenCircuit) and
    /// [`BulkheadFull`](Outcome::BulkheadFull). The callee was not called.
    ///
    /// ```
    /// assert!(timefuse_guard::Outcome::BulkheadFull.is_refusal());
    /// assert!(!timefuse_guard::Outcome::Failure.is_refusal());
    /// ```
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Outcome::RefusedForBudget
                | Outcome::RateLimited
                | Outcome::OpenCircuit
                | Outcome::BulkheadFull
        )
    }

    /// True when the callee ran: [`Success`](Outcome::Success), [`Failure`](Outcome::Failure)
    /// or [`Slow`](Outcome::Slow). Only these count in a circuit breaker's window.
    ///
    /// ```
    /// assert!(timefuse_guard::Outcome::Failure.is_call());
    /// assert!(!timefuse_guard::Outcome::Degraded.is_call());
    /// ```
    pub fn is_call(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Failure | Outcome::Slow)
    }

    /// A stable `snake_case` name, for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::Outcome::OpenCircuit.as_str(), "open_circuit");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Slow => "slow",
            Outcome::RefusedForBudget => "refused_for_budget",
            Outcome::RateLimited => "rate_limited",
            Outcome::OpenCircuit => "open_circuit",
            Outcome::BulkheadFull => "bulkhead_full",
            Outcome::Degraded => "degraded",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every guard service: a refusal by a guard, the end of the request's context,
/// or the inner service's own error, boxed.
///
/// See the [module docs](crate::outcome) for the design: inner errors pass through in
/// [`Inner`](GuardError::Inner), and stacking guards never nests `GuardError`s. Refusals
/// ([`is_refusal`](GuardError::is_refusal)) mean the callee was not called: they are not
/// failures and never count in a circuit breaker's window.
///
/// The enum and each variant are `#[non_exhaustive]`: match with `{ .. }`, and build values
/// with the constructors ([`refused_for_budget`](GuardError::refused_for_budget), …).
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::GuardError;
///
/// let err = GuardError::refused_for_budget(Duration::from_millis(40), Duration::from_millis(120));
/// assert!(err.is_refusal());
/// assert_eq!(
///     err.to_string(),
///     "refused for budget: 40ms left, the call needs 120ms"
/// );
/// if let GuardError::RefusedForBudget { remaining, needed, .. } = err {
///     assert!(remaining < needed);
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum GuardError {
    /// Deadline admission refused the call: the budget left for it was below what it needs
    /// (the callee's expected latency, or the policy floor, whichever is larger).
    #[non_exhaustive]
    RefusedForBudget {
        /// The budget the call would have had (the request's remaining time, after the
        /// policy's reserve and the downstream cap).
        remaining: Duration,
        /// What the call needs: `max(expected latency, floor)`.
        needed: Duration,
        /// The callee's expected latency (zero on a cold start or when only the floor
        /// applied).
        expected: Duration,
        /// The route the expectation belongs to, if the layer names routes.
        route: Option<Arc<str>>,
    },
    /// A rate limiter refused the call.
    #[non_exhaustive]
    RateLimited {
        /// The earliest time from now at which a call may be admitted.
        retry_after: Duration,
        /// The limiter's name, if it has one.
        name: Option<Arc<str>>,
    },
    /// A circuit breaker refused the call: it is open, forced open, or half-open with every
    /// probe permit taken (or the caller had no budget for a probe).
    #[non_exhaustive]
    OpenCircuit {
        /// The breaker's name.
        name: Arc<str>,
        /// Time until the breaker lets probes through again, when known (an open breaker
        /// with automatic transition); `None` when forced open or half-open.
        retry_after: Option<Duration>,
    },
    /// A bulkhead had no free permit within the caller's budget.
    #[non_exhaustive]
    BulkheadFull {
        /// The bulkhead's concurrency limit.
        max_concurrent: usize,
        /// How long the call waited for a permit before giving up.
        waited: Duration,
    },
    /// The request's context ended (deadline or cancellation) while a guard was waiting or the
    /// call was running. Not a refusal: a call cut off by its deadline counts as a failure.
    #[non_exhaustive]
    Ended {
        /// Why the context ended.
        cause: Cause,
    },
    /// The inner service's own error, boxed and untouched.
    Inner(BoxError),
}

impl GuardError {
    /// A [`RefusedForBudget`](GuardError::RefusedForBudget) refusal with no expected latency
    /// and no route.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = timefuse_guard::GuardError::refused_for_budget(Duration::ZERO, Duration::from_millis(50));
    /// assert!(err.is_refusal());
    /// ```
    pub fn refused_for_budget(remaining: Duration, needed: Duration) -> GuardError {
        GuardError::RefusedForBudget {
            remaining,
            needed,
            expected: Duration::ZERO,
            route: None,
        }
    }

    /// A [`RateLimited`](GuardError::RateLimited) refusal without a limiter name.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = timefuse_guard::GuardError::rate_limited(Duration::from_millis(5));
    /// assert_eq!(err.retry_after(), Some(Duration::from_millis(5)));
    /// ```
    pub fn rate_limited(retry_after: Duration) -> GuardError {
        GuardError::RateLimited {
            retry_after,
            name: None,
        }
    }

    /// An [`OpenCircuit`](GuardError::OpenCircuit) refusal.
    ///
    /// ```
    /// let err = timefuse_guard::GuardError::open_circuit("ledger", None);
    /// assert_eq!(err.to_string(), "circuit 'ledger' is open");
    /// ```
    pub fn open_circuit(name: impl Into<Arc<str>>, retry_after: Option<Duration>) -> GuardError {
        GuardError::OpenCircuit {
            name: name.into(),
            retry_after,
        }
    }

    /// A [`BulkheadFull`](GuardError::BulkheadFull) refusal.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = timefuse_guard::GuardError::bulkhead_full(8, Duration::from_millis(30));
    /// assert_eq!(err.outcome(), timefuse_guard::Outcome::BulkheadFull);
    /// ```
    pub fn bulkhead_full(max_concurrent: usize, waited: Duration) -> GuardError {
        GuardError::BulkheadFull {
            max_concurrent,
            waited,
        }
    }

    /// An [`Ended`](GuardError::Ended) error.
    ///
    /// ```
    /// let err = timefuse_guard::GuardError::ended(timefuse::Cause::DeadlineExceeded);
    /// assert!(err.is_deadline_exceeded() && !err.is_refusal());
    /// ```
    pub fn ended(cause: Cause) -> GuardError {
        GuardError::Ended { cause }
    }

    /// Converts an inner service's error, without nesting: a boxed `GuardError` is unwrapped
    /// and returned as is; any other error becomes [`Inner`](GuardError::Inner).
    ///
    /// ```
    /// use timefuse_guard::{BoxError, GuardError};
    ///
    /// let inner: BoxError = Box::new(GuardError::open_circuit("db", None));
    /// assert!(matches!(GuardError::from_inner(inner), GuardError::OpenCircuit { .. }));
    /// assert!(matches!(GuardError::from_inner("boom"), GuardError::Inner(_)));
    /// ```
    pub fn from_inner<E: Into<BoxError>>(err: E) -> GuardError {
        let err: BoxError = err.into();
        match err.downcast::<GuardError>() {
            Ok(guard) => *guard,
            Err(other) => GuardError::Inner(other),
        }
    }

    /// True if a guard refused the call, so the callee was never called: budget, rate limit,
    /// open circuit or full bulkhead. Refusals are not failures.
    ///
    /// ```
    /// use timefuse_guard::GuardError;
    /// assert!(GuardError::open_circuit("db", None).is_refusal());
    /// assert!(!GuardError::from_inner("boom").is_refusal());
    /// ```
    pub fn is_refusal(&self) -> bool {
        self.outcome().is_refusal()
    }

    /// True if the request's deadline ended the call (as a guard saw it, or as the inner
    /// error says: a [`Cause`] or a `tokio::time::error::Elapsed` inside
    /// [`Inner`](GuardError::Inner)).
    ///
    /// ```
    /// use timefuse::Cause;
    /// use timefuse_guard::GuardError;
    ///
    /// assert!(GuardError::ended(Cause::DeadlineExceeded).is_deadline_exceeded());
    /// assert!(GuardError::from_inner(Cause::DeadlineExceeded).is_deadline_exceeded());
    /// assert!(!GuardError::ended(Cause::ClientGone).is_deadline_exceeded());
    /// ```
    pub fn is_deadline_exceeded(&self) -> bool {
        match self {
            GuardError::Ended { cause } => cause.is_deadline_exceeded(),
            GuardError::Inner(e) => {
                e.downcast_ref::<Cause>()
                    .is_some_and(Cause::is_deadline_exceeded)
                    || e.is::<tokio::time::error::Elapsed>()
            }
            _ => false,
        }
    }

    /// The outcome this error reports: the refusal's own outcome, or
    /// [`Failure`](Outcome::Failure) for [`Ended`](GuardError::Ended) and
    /// [`Inner`](GuardError::Inner).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::{GuardError, Outcome};
    /// assert_eq!(GuardError::rate_limited(Duration::ZERO).outcome(), Outcome::RateLimited);
    /// assert_eq!(GuardError::from_inner("boom").outcome(), Outcome::Failure);
    /// ```
    pub fn outcome(&self) -> Outcome {
        match self {
            GuardError::RefusedForBudget { .. } => Outcome::RefusedForBudget,
            GuardError::RateLimited { .. } => Outcome::RateLimited,
            GuardError::OpenCircuit { .. } => Outcome::OpenCircuit,
            GuardError::BulkheadFull { .. } => Outcome::BulkheadFull,
            GuardError::Ended { .. } | GuardError::Inner(_) => Outcome::Failure,
        }
    }

    /// When it may be worth trying again: a rate limit's `retry_after`, an open circuit's time
    /// to half-open; `None` otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::GuardError;
    /// let err = GuardError::open_circuit("db", Some(Duration::from_secs(3)));
    /// assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GuardError::RateLimited { retry_after, .. } => Some(*retry_after),
            GuardError::OpenCircuit { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The inner service's error, if this is [`Inner`](GuardError::Inner).
    ///
    /// ```
    /// let err = timefuse_guard::GuardError::from_inner("boom");
    /// assert_eq!(err.inner().unwrap().to_string(), "boom");
    /// ```
    pub fn inner(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match self {
            GuardError::Inner(e) => Some(&**e),
            _ => None,
        }
    }

    /// The inner service's error, if this is [`Inner`](GuardError::Inner).
    ///
    /// # Errors
    ///
    /// Gives `self` back if it is not [`Inner`](GuardError::Inner).
    ///
    /// ```
    /// let err = timefuse_guard::GuardError::from_inner(std::io::Error::other("reset"));
    /// let io = err.into_inner().unwrap().downcast::<std::io::Error>().unwrap();
    /// assert_eq!(io.to_string(), "reset");
    /// ```
    pub fn into_inner(self) -> Result<BoxError, GuardError> {
        match self {
            GuardError::Inner(e) => Ok(e),
            other => Err(other),
        }
    }
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::RefusedForBudget {
                remaining,
                needed,
                route,
                ..
            } => {
                write!(f, "refused for budget: {remaining:?} left, the call")?;
                if let Some(route) = route {
                    write!(f, " to '{route}'")?;
                }
                write!(f, " needs {needed:?}")
            }
            GuardError::RateLimited { retry_after, name } => {
                match name {
                    Some(name) => write!(f, "rate limited by '{name}'")?,
                    None => f.write_str("rate limited")?,
                }
                write!(f, "; retry after {retry_after:?}")
            }
            GuardError::OpenCircuit { name, retry_after } => {
                write!(f, "circuit '{name}' is open")?;
                if let Some(after) = retry_after {
                    write!(f, "; retry after {after:?}")?;
                }
                Ok(())
            }
            GuardError::BulkheadFull {
                max_concurrent,
                waited,
            } => write!(
                f,
                "bulkhead full: all {max_concurrent} permits taken, waited {waited:?}"
            ),
            GuardError::Ended { cause } => write!(f, "request ended: {cause}"),
            GuardError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl Error for GuardError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GuardError::Ended { cause } => Some(cause),
            GuardError::Inner(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<Cause> for GuardError {
    /// A context's end as an [`Ended`](GuardError::Ended) error.
    fn from(cause: Cause) -> Self {
        GuardError::Ended { cause }
    }
}

/// The budget a call made now on `ctx` would get under the downstream rule of its policy:
/// `min(downstream cap of name, remaining − reserve)`, zero once `ctx` is done, `None` when `ctx`
/// has no deadline (nothing to refuse for). `name: None` uses the policy's default cap.
#[cfg_attr(
    not(any(feature = "admission", feature = "breaker", feature = "bulkhead")),
    allow(dead_code)
)]
pub(crate) fn call_budget(ctx: &timefuse::Context, name: Option<&str>) -> Option<Duration> {
    if ctx.is_done() {
        return Some(Duration::ZERO);
    }
    let remaining = ctx.remaining()?;
    let policy = ctx.policy();
    let cap = match name {
        Some(name) => policy.downstream_cap(name),
        None => policy.default_downstream_cap(),
    };
    Some(cap.min(remaining.saturating_sub(policy.reserve())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_keeps_one_level() {
        let once = GuardError::from_inner("boom");
        let boxed: BoxError = Box::new(once);
        let twice = GuardError::from_inner(boxed);
        let inner = twice.into_inner().unwrap();
        assert!(inner.downcast_ref::<GuardError>().is_none());
        assert_eq!(inner.to_string(), "boom");
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Error + Send + Sync + 'static>() {}
        check::<GuardError>();
    }

    #[test]
    fn refusals_match_outcomes() {
        for o in Outcome::ALL {
            assert!(!(o.is_call() && o.is_refusal()), "{o}");
        }
        assert!(GuardError::bulkhead_full(1, Duration::ZERO).is_refusal());
        assert!(!GuardError::ended(Cause::DeadlineExceeded).is_refusal());
    }
}
