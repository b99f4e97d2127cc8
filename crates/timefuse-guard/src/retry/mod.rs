//! Retries under a retry budget, never without the time to finish, with a per-try timeout.
//!
//! - [`RetryLayer`] / [`Retry`]: retries results that the [`RetryPolicy`]'s [`Classify`]
//!   picks, at most `max_attempts` in all, with a [`Backoff`] between them.
//! - [`RetryBudget`]: Finagle's and Linkerd's budget (20 % of requests plus 10 retries per
//!   second, over a 10 s window), shared by every clone: every request deposits, every retry
//!   withdraws, and no retry is made without a withdrawal.
//! - [`PerTryTimeoutLayer`]: each attempt runs under a child context of
//!   `min(per-try cap, remaining − reserve)`.
//!
//! # Never retry with no time to finish
//!
//! A retry starts only if the request's context, after the policy's reserve and the backoff
//! delay, still has at least what an attempt needs: the larger of the policy floor and the
//! expected attempt latency (an exponentially weighted average of recent successful attempts).
//! A backoff delay that would eat into that is shortened; if even the least delay (a refusal's
//! `retry_after`) does not fit, there is no retry and the caller gets the last result at once.
//! Nothing is retried once the request's context has ended.
//!
//! # What is retried
//!
//! Errors, by default ([`OnErrors`]); responses too with a [`Classify`] closure. Refusals by a
//! guard (rate limited, open circuit, full bulkhead, refused for budget) are **not** retried
//! unless [`RetryPolicy::retry_refusals`] says so: the callee was not called, and retrying
//! into an overloaded or broken dependency is how retry storms start.
//!
//! # Requests must be `Clone`
//!
//! Each attempt sends a clone of the request (as tower's `Retry` needs `Policy::clone_request`),
//! so `Req: Clone`; for an HTTP request with a streaming body, buffer the body first (Linkerd
//! does not retry bodies over 64 KiB). The inner service must be `Clone` too: the response
//! future keeps a clone to make the retries.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use timefuse::Context;
//! use timefuse::budget::TimeoutPolicy;
//! use timefuse_guard::retry::{Backoff, PerTryTimeoutLayer, RetryLayer, RetryPolicy};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let retry = RetryLayer::new(RetryPolicy::default().backoff(Backoff::None));
//! let mut svc = ServiceBuilder::new()
//!     .layer(retry.clone())
//!     .layer(PerTryTimeoutLayer::new(Some(Duration::from_millis(200))))
//!     .service_fn(|_: ()| async {
//!         tokio::time::sleep(Duration::from_secs(10)).await; // hangs
//!         Ok::<_, std::io::Error>(())
//!     });
//!
//! let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
//! let start = tokio::time::Instant::now();
//! let err = ctx.scope(async { svc.ready().await.unwrap().call(()).await }).await.unwrap_err();
//! assert!(err.is_deadline_exceeded());
//! // 200 ms + 200 ms, then 400 ms left − 150 ms reserve = 250 ms: a third try fits
//! // (it gets 200 ms). After it, 200 ms − 150 ms = 50 ms left for a fourth: the policy says 3.
//! assert_eq!(start.elapsed(), Duration::from_millis(600));
//! assert_eq!(retry.stats().retries, 2);
//! # }
//! ```

mod backoff;
mod budget;
pub mod future;
mod layer;
mod policy;
mod timeout;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use timefuse::Context;
use tokio::time::Instant;
use tower_service::Service;

pub use backoff::Backoff;
pub use budget::{InvalidBudget, RetryBudget};
pub use layer::RetryLayer;
pub use policy::{Classify, OnErrors, RetryPolicy};
pub use timeout::{PerTryFuture, PerTryTimeout, PerTryTimeoutLayer};

use crate::{BoxError, GuardError};
use future::ResponseFuture;

/// Counters of a [`RetryLayer`].
///
/// ```
/// let stats = timefuse_guard::retry::RetryStats::default();
/// assert_eq!(stats.retries + stats.refused_by_budget + stats.refused_by_time, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries made.
    pub retries: u64,
    /// Retries the policy wanted but the retry budget had none for.
    pub refused_by_budget: u64,
    /// Retries the policy wanted but the request's remaining time could not cover.
    pub refused_by_time: u64,
}

/// State shared by a layer's services.
#[derive(Debug)]
pub(crate) struct Shared<C> {
    policy: RetryPolicy<C>,
    budget: RetryBudget,
    /// EWMA of successful attempt latency, in nanoseconds; 0 before the first sample.
    expected_nanos: AtomicU64,
    retries: AtomicU64,
    refused_by_budget: AtomicU64,
    refused_by_time: AtomicU64,
}

impl<C> Shared<C> {
    fn new(policy: RetryPolicy<C>, budget: RetryBudget) -> Self {
        Shared {
            policy,
            budget,
            expected_nanos: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            refused_by_budget: AtomicU64::new(0),
            refused_by_time: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> RetryStats {
        RetryStats {
            retries: self.retries.load(Ordering::Relaxed),
            refused_by_budget: self.refused_by_budget.load(Ordering::Relaxed),
            refused_by_time: self.refused_by_time.load(Ordering::Relaxed),
        }
    }

    /// Records a successful attempt's latency (EWMA, weight 0.2; races lose a sample). First
    /// attempts are timed one in eight (a clock read saved on the others), retries always.
    fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.expected_nanos.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old / 5) * 4 + sample / 5
        };
        self.expected_nanos.store(new.max(1), Ordering::Relaxed);
    }

    fn expected(&self) -> Duration {
        Duration::from_nanos(self.expected_nanos.load(Ordering::Relaxed))
    }

    /// Whether to retry after attempt number `attempt` ended with `result`, and after what
    /// delay. Takes the retry from the budget when the answer is yes.
    fn next_retry<Res>(
        &self,
        attempt: u32,
        result: &Result<Res, GuardError>,
        ctx: Option<&Context>,
    ) -> Option<Duration>
    where
        C: Classify<Res>,
    {
        if attempt >= self.policy.max_attempts {
            return None;
        }
        let at_least = self.policy.wants_retry(result)?;
        let backoff = self.policy.backoff.delay(attempt);
        let delay = match ctx {
            Some(ctx) if ctx.is_done() => return None,
            Some(ctx) if ctx.deadline().is_some() => {
                let left = ctx.remaining().unwrap_or_default();
                let policy = ctx.policy();
                let available = left.saturating_sub(policy.reserve());
                let needed = self.expected().max(policy.floor());
                let fitted = available
                    .checked_sub(needed)
                    .and_then(|slack| future::fit_delay(backoff, at_least, slack));
                match fitted {
                    Some(delay) => delay,
                    None => {
                        self.refused_by_time.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(?left, ?needed, "no retry: not enough time left");
                        return None;
                    }
                }
            }
            _ => backoff.max(at_least),
        };
        if !self.budget.withdraw() {
            self.refused_by_budget.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("no retry: the retry budget is spent");
            return None;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        Some(delay)
    }
}

/// The service made by [`RetryLayer`]: see the [module docs](self).
///
/// A retry calls a clone of the inner service, made from a template kept when the service was
/// layered, and only when a retry is made: the common path (no retry) clones nothing.
///
/// ```
/// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
/// use tower::Layer;
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut svc = RetryLayer::new(RetryPolicy::default()).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
/// assert_eq!(svc.stats().retries, 0);
/// # }
/// ```
#[derive(Debug)]
pub struct Retry<S, C = OnErrors> {
    inner: S,
    instance: Arc<Instance<S, C>>,
}

/// What a service's response futures share: the layer's state and the template for retries.
#[derive(Debug)]
pub(crate) struct Instance<S, C> {
    shared: Arc<Shared<C>>,
    template: Mutex<S>,
}

impl<S, C> Retry<S, C> {
    /// The wrapped service.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// use tower::Layer;
    /// let svc = RetryLayer::new(RetryPolicy::default()).layer(7_u8);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// use tower::Layer;
    /// let mut svc = RetryLayer::new(RetryPolicy::default()).layer(7_u8);
    /// *svc.get_mut() = 8;
    /// assert_eq!(*svc.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// use tower::Layer;
    /// assert_eq!(RetryLayer::new(RetryPolicy::default()).layer(7_u8).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Counters so far, shared with the layer and its other services.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// use tower::Layer;
    /// let svc = RetryLayer::new(RetryPolicy::default()).layer(7_u8);
    /// assert_eq!(svc.stats().refused_by_budget, 0);
    /// ```
    pub fn stats(&self) -> RetryStats {
        self.instance.shared.stats()
    }
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            instance: Arc::clone(&self.instance),
        }
    }
}

impl<S, Req, C> Service<Req> for Retry<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response>,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.instance.shared;
        // One call in eight (and every call until the first sample) is timed for the latency
        // estimate; its clock read also keeps the budget's current slot fresh for the others.
        let started = if shared.expected_nanos.load(Ordering::Relaxed) == 0 || fastrand::u8(..) < 32
        {
            let now = Instant::now();
            shared.budget.deposit_at(now);
            Some(now)
        } else {
            shared.budget.deposit_recent();
            None
        };
        let ctx = Context::try_current();
        let fut = self.inner.call(req.clone());
        ResponseFuture::new(fut, Arc::clone(&self.instance), req, ctx, started)
    }
}
