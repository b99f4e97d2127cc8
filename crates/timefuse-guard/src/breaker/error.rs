//! Which results the breaker counts as failures: [`Classify`], [`DefaultClassifier`],
//! [`FailureIf`].
//!
//! The breaker's own refusal is [`GuardError::OpenCircuit`](crate::GuardError::OpenCircuit);
//! this module decides how the *inner* service's results count.

use crate::{GuardError, Outcome};

/// Turns a call's result into the outcome the breaker records: `Some(Success | Failure |
/// Slow)` counts in the window (a call longer than the slow-call threshold is slow anyway);
/// `None`, or any other outcome, records nothing.
///
/// Implemented by [`DefaultClassifier`], [`FailureIf`] and any
/// `Fn(Result<&Res, &GuardError>) -> Option<Outcome>`. A classifier that looks at responses can
/// count, say, HTTP 503 answers as failures.
///
/// ```
/// use timefuse_guard::breaker::Classify;
/// use timefuse_guard::{GuardError, Outcome};
///
/// // Count HTTP-style 5xx answers as failures too.
/// let by_status = |res: Result<&u16, &GuardError>| match res {
///     Ok(status) if *status >= 500 => Some(Outcome::Failure),
///     Ok(_) => Some(Outcome::Success),
///     Err(e) if e.is_refusal() => None,
///     Err(_) => Some(Outcome::Failure),
/// };
/// assert_eq!(by_status.classify(Ok(&503)), Some(Outcome::Failure));
/// assert_eq!(by_status.classify(Ok(&200)), Some(Outcome::Success));
/// ```
pub trait Classify<Res> {
    /// The outcome to record for `result`, or `None` to record nothing.
    fn classify(&self, result: Result<&Res, &GuardError>) -> Option<Outcome>;
}

impl<Res, F> Classify<Res> for F
where
    F: Fn(Result<&Res, &GuardError>) -> Option<Outcome>,
{
    fn classify(&self, result: Result<&Res, &GuardError>) -> Option<Outcome> {
        self(result)
    }
}

/// The default: every response is a success and every error a failure, including a call
/// ended by the request's deadline — except what says nothing about the callee, which records
/// nothing:
///
/// - refusals from guards further in ([`GuardError::is_refusal`]: a full bulkhead, an inner
///   rate limiter or breaker);
/// - the request being cancelled for another reason than its deadline
///   ([`GuardError::Ended`] with a cancel cause — the client went away, shutdown — or an inner
///   error that is such a [`Cause`](timefuse::Cause)).
///
/// ```
/// use std::time::Duration;
/// use timefuse::Cause;
/// use timefuse_guard::breaker::{Classify, DefaultClassifier};
/// use timefuse_guard::{GuardError, Outcome};
///
/// let c = DefaultClassifier;
/// assert_eq!(c.classify(Ok(&())), Some(Outcome::Success));
/// assert_eq!(Classify::<()>::classify(&c, Err(&GuardError::from_inner("boom"))), Some(Outcome::Failure));
/// let deadline = GuardError::ended(Cause::DeadlineExceeded);
/// assert_eq!(Classify::<()>::classify(&c, Err(&deadline)), Some(Outcome::Failure));
/// let gone = GuardError::ended(Cause::ClientGone);
/// assert_eq!(Classify::<()>::classify(&c, Err(&gone)), None);
/// let gone = GuardError::from_inner(Cause::ClientGone);
/// assert_eq!(Classify::<()>::classify(&c, Err(&gone)), None);
/// let full = GuardError::bulkhead_full(4, Duration::ZERO);
/// assert_eq!(Classify::<()>::classify(&c, Err(&full)), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

/// The part of every built-in classifier that ignores non-verdicts.
fn says_nothing(err: &GuardError) -> bool {
    match err {
        GuardError::Ended { cause } => !cause.is_deadline_exceeded(),
        GuardError::Inner(e) => e
            .downcast_ref::<timefuse::Cause>()
            .is_some_and(|cause| !cause.is_deadline_exceeded()),
        e => e.is_refusal(),
    }
}

impl<Res> Classify<Res> for DefaultClassifier {
    fn classify(&self, result: Result<&Res, &GuardError>) -> Option<Outcome> {
        match result {
            Ok(_) => Some(Outcome::Success),
            Err(e) if says_nothing(e) => None,
            Err(_) => Some(Outcome::Failure),
        }
    }
}

/// Counts an error as a failure only if a predicate says so; other errors count as successes
/// (resilience4j's `recordException` predicate). Refusals and cancellations record nothing,
/// as with [`DefaultClassifier`].
///
/// ```
/// use timefuse_guard::breaker::{Classify, FailureIf};
/// use timefuse_guard::{GuardError, Outcome};
///
/// // A "not found" from the callee is an answer, not a failure.
/// let c = FailureIf::new(|e: &GuardError| {
///     e.inner().is_none_or(|inner| inner.to_string() != "not found")
/// });
/// assert_eq!(Classify::<()>::classify(&c, Err(&GuardError::from_inner("not found"))), Some(Outcome::Success));
/// assert_eq!(Classify::<()>::classify(&c, Err(&GuardError::from_inner("reset"))), Some(Outcome::Failure));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FailureIf<F>(F);

impl<F> FailureIf<F> {
    /// Counts errors for which `predicate` is true as failures.
    ///
    /// ```
    /// use timefuse_guard::breaker::FailureIf;
    /// use timefuse_guard::GuardError;
    /// let c = FailureIf::new(|e: &GuardError| e.is_deadline_exceeded());
    /// # let _ = c;
    /// ```
    pub fn new(predicate: F) -> Self
    where
        F: Fn(&GuardError) -> bool,
    {
        FailureIf(predicate)
    }
}

impl<Res, F> Classify<Res> for FailureIf<F>
where
    F: Fn(&GuardError) -> bool,
{
    fn classify(&self, result: Result<&Res, &GuardError>) -> Option<Outcome> {
        match result {
            Ok(_) => Some(Outcome::Success),
            Err(e) if says_nothing(e) => None,
            Err(e) if (self.0)(e) => Some(Outcome::Failure),
            Err(_) => Some(Outcome::Success),
        }
    }
}
