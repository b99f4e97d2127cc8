//! Rate limiting: GCRA shared across clones, global or keyed, waiting for a permit only within
//! the caller's budget.
//!
//! - [`Rate`]: `n` permits per period, with a burst.
//! - [`RateLimiter`]: the shared limiter state, on [`governor`] (one `AtomicU64` for a global
//!   limit, a `DashMap` of them for a keyed one), read on the [`TokioClock`].
//! - [`RateLimitLayer`] / [`RateLimit`]: the tower middleware.
//!
//! # Waiting within the budget
//!
//! When no permit is free, a call may wait for the next one, but only if that wait ends
//! before **both** the layer's [`WaitMode`] bound and the request's deadline less the policy
//! floor (`ctx.remaining() − floor`, see [`RateLimiter::wait_budget`]): a call is never handed a
//! permit with no time left to use it. If the next permit is later than that, the call is
//! refused at once with [`GuardError::RateLimited`] carrying `retry_after`, the time until the
//! next permit. [`WaitMode::NoWait`] never waits. The request's context is the task-local
//! [`Context::current`](timefuse::Context::current), which timefuse-tower's ingress layer and
//! [`Context::scope`](timefuse::Context::scope) set; without one, only the `WaitMode` bounds the
//! wait.
//!
//! A waiting call does not hold a permit; when its timer fires it checks again, and if
//! another caller took that permit it waits for the next one, still within its bound.
//!
//! # Clock
//!
//! A limiter reads a [`LimiterClock`]: by default governor's `quanta` clock, the cheapest to
//! read (a check costs what a plain governor check does); or [`TokioClock`], a governor clock
//! over `tokio::time::Instant`, with which a limiter runs on tokio's paused test clock (the
//! tests check its accuracy over simulated hours this way). Both are real time in production.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use timefuse::Context;
//! use timefuse::budget::TimeoutPolicy;
//! use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimitLayer, RateLimiter};
//! use timefuse_guard::GuardError;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // tokio's clock, so that the paused test clock drives the limiter.
//! let limiter = RateLimiter::direct_with_clock(Rate::per_second(2).with_burst(1), LimiterClock::tokio());
//! let mut svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::with_limiter(limiter).max_wait(Duration::from_secs(1)))
//!     .service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) });
//!
//! let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms, floor 50 ms
//! ctx.scope(async {
//!     svc.ready().await.unwrap().call(1).await.unwrap(); // the burst
//!     let start = tokio::time::Instant::now();
//!     svc.ready().await.unwrap().call(2).await.unwrap(); // waits 500 ms: within 750 ms
//!     assert_eq!(start.elapsed(), Duration::from_millis(500));
//!     // The next permit is 500 ms away, but only 300 ms − 50 ms are left: refused at once.
//!     let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
//!     assert!(matches!(err, GuardError::RateLimited { .. }));
//! })
//! .await;
//! # }
//! ```

mod clock;
pub mod future;
mod key;
mod layer;
mod limiter;
mod rate;

use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use timefuse::Context;
use tokio::time::Instant;
use tower_service::Service;

pub use clock::{LimiterClock, TokioClock};
pub use key::{ByContext, ContextKey, Global, KeyFn, Peer, Tenant};
pub use layer::RateLimitLayer;
pub use limiter::RateLimiter;
pub use rate::{InvalidRate, Rate};

use crate::{BoxError, GuardError};
use future::{ResponseFuture, Waiting};

/// How long a call may wait for a permit when none is free.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::rate_limit::WaitMode;
/// assert_eq!(WaitMode::default(), WaitMode::UpTo(Duration::from_millis(500)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitMode {
    /// Never wait: refuse at once.
    NoWait,
    /// Wait up to this long, and never past the request's deadline less the policy floor.
    UpTo(Duration),
}

impl Default for WaitMode {
    /// Up to 500 ms (Sentinel's default queueing time), within the budget.
    fn default() -> Self {
        WaitMode::UpTo(Duration::from_millis(500))
    }
}

/// The service made by [`RateLimitLayer`]: see the [module docs](self).
///
/// Cloning shares the limiter. Waiting for a permit needs a service to call after the wait,
/// so the inner service must be `Clone` (as for tower's `Retry`); the clone made for a waiting
/// call is driven to readiness after the wait.
///
/// ```
/// use tower::{Layer, Service, ServiceExt};
/// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut svc = RateLimitLayer::new(Rate::per_second(10)).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimit<S, K = (), F = Global> {
    inner: S,
    limiter: RateLimiter<K>,
    key_fn: F,
    wait: WaitMode,
}

impl<S, K, F> RateLimit<S, K, F> {
    /// Wraps `inner`, drawing on `limiter` with the keys of `key_fn`.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Global, Rate, RateLimit, RateLimiter, WaitMode};
    /// let svc = RateLimit::new(
    ///     tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }),
    ///     RateLimiter::direct(Rate::per_second(10)),
    ///     Global,
    ///     WaitMode::NoWait,
    /// );
    /// # let _ = svc;
    /// ```
    pub fn new(inner: S, limiter: RateLimiter<K>, key_fn: F, wait: WaitMode) -> Self {
        RateLimit {
            inner,
            limiter,
            key_fn,
            wait,
        }
    }

    /// The shared limiter.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Global, Rate, RateLimit, RateLimiter, WaitMode};
    /// let svc = RateLimit::new(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }), RateLimiter::direct(Rate::per_second(3)), Global, WaitMode::NoWait);
    /// assert_eq!(svc.limiter().rate(), Rate::per_second(3));
    /// ```
    pub fn limiter(&self) -> &RateLimiter<K> {
        &self.limiter
    }

    /// The wrapped service.
    ///
    /// ```
    /// use tower::Layer;
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    /// let svc = RateLimitLayer::new(Rate::per_second(3)).layer(7_u8);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use tower::Layer;
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    /// let mut svc = RateLimitLayer::new(Rate::per_second(3)).layer(7_u8);
    /// *svc.get_mut() = 8;
    /// assert_eq!(svc.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    /// assert_eq!(RateLimitLayer::new(Rate::per_second(3)).layer(7_u8).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F: Clone> Clone for RateLimit<S, K, F> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key_fn: self.key_fn.clone(),
            wait: self.wait,
        }
    }
}

impl<S, Req, K, F> Service<Req> for RateLimit<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: KeyFn<Req, Key = K>,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S, Req, K>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key_fn.key(&req);
        let next = match self.limiter.check(&key) {
            Ok(()) => return ResponseFuture::call(self.inner.call(req)),
            Err(next) => next,
        };
        // No permit free: the context decides whether we may wait (only now, off the fast path).
        let ctx = Context::try_current();
        if let Some(ctx) = &ctx
            && ctx.is_done()
        {
            let cause = ctx.cause().unwrap_or(timefuse::Cause::DeadlineExceeded);
            return ResponseFuture::refused(GuardError::ended(cause));
        }
        let budget = match self.wait {
            WaitMode::NoWait => Duration::ZERO,
            WaitMode::UpTo(max) => RateLimiter::<K>::wait_budget(ctx.as_ref(), max),
        };
        if next > budget {
            return ResponseFuture::refused(GuardError::RateLimited {
                retry_after: next,
                name: self.limiter.name_arc(),
            });
        }
        let now = Instant::now();
        ResponseFuture::wait(Waiting {
            sleep: tokio::time::sleep_until(now + next),
            done: ctx.map(|c| c.done()),
            until: now + budget,
            svc: self.inner.clone(),
            req: Some(req),
            limiter: self.limiter.clone(),
            key,
            permitted: false,
        })
    }
}
