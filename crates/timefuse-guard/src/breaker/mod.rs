//! A resilience4j-style circuit breaker whose half-open probes respect the caller's deadline.
//!
//! - [`Breaker`]: the shared state machine (`Arc<Breaker>`; atomics on the hot path, a lock
//!   only to rotate a time-based window), usable without tower:
//!   [`try_acquire`](Breaker::try_acquire) → [`Permit::record`].
//! - [`BreakerConfig`] / [`SlidingWindow`]: thresholds and windows, resilience4j's defaults
//!   (100 calls, minimum 100, 50 % failures, slow above 60 s at 100 %, 60 s open, 10 probes),
//!   and the design document's preset
//!   [`fifty_percent_over_a_minute`](BreakerConfig::fifty_percent_over_a_minute).
//! - [`CircuitBreakerLayer`] / [`CircuitBreaker`]: the tower middleware, with a
//!   [`Classify`] deciding which results are failures.
//! - [`BreakerEvent`]: state transitions, via [`Breaker::subscribe`] (a tokio broadcast) or
//!   [`Breaker::on_transition`] (a hook), and [`BreakerMetrics`].
//!
//! # Where it sits
//!
//! Outermost first: deadline admission → rate limiter → **circuit breaker** → bulkhead → call.
//! Admission and rate-limit refusals never reach the breaker; a full bulkhead further in is a
//! refusal too and records nothing. A call cut off by the deadline is a failure. See
//! [`Breaker`] for the state machine and the rule that decides whether a caller may make a
//! half-open probe, and [`DefaultClassifier`] for what counts.
//!
//! # The request's context
//!
//! The service reads the task-local [`Context::try_current`](timefuse::Context::try_current)
//! (set by timefuse-tower's ingress layer and by [`Context::scope`](timefuse::Context::scope)),
//! and only when the breaker is half-open; without one a probe is always affordable.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState, SlidingWindow};
//! use timefuse_guard::Outcome;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(
//!     BreakerConfig::new("ledger")
//!         .sliding_window(SlidingWindow::TimeBased(10))
//!         .minimum_calls(2)
//!         .wait_in_open(Duration::from_secs(5))
//!         .permitted_calls_in_half_open(1),
//! );
//! let ctx = timefuse::Context::background();
//! for _ in 0..2 {
//!     breaker.try_acquire(&ctx).unwrap().record(Outcome::Failure, Duration::from_millis(3));
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! tokio::time::advance(Duration::from_secs(5)).await;
//! let probe = breaker.try_acquire(&ctx).unwrap();
//! assert!(probe.is_probe());
//! probe.record(Outcome::Success, Duration::from_millis(3));
//! assert_eq!(breaker.state(), CircuitState::Closed);
//! # }
//! ```

mod circuit;
mod config;
mod error;
mod event;
pub mod future;
mod layer;
mod state;
pub(crate) mod sync;
mod window;

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::time::Instant;
use tower_service::Service;

use timefuse::Context;

use crate::{BoxError, GuardError};

pub use circuit::{Breaker, BreakerMetrics, OwnedPermit, Permit};
pub use config::{BreakerConfig, InvalidConfig, MAX_HALF_OPEN_CALLS, SlidingWindow};
pub use error::{Classify, DefaultClassifier, FailureIf};
pub use event::{BreakerEvent, TransitionReason};
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use state::CircuitState;

/// The service made by [`CircuitBreakerLayer`]: asks the shared [`Breaker`] before each call
/// and records the call's outcome (per its [`Classify`]) and latency when it ends.
///
/// Refusals are [`GuardError::OpenCircuit`]; inner errors pass through as
/// [`GuardError::Inner`] (or unchanged, if they already are `GuardError`s).
///
/// ```
/// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Breaker::new(BreakerConfig::new("echo"));
/// let mut svc = CircuitBreaker::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) }),
///     breaker.clone(),
/// );
/// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
/// assert_eq!(breaker.metrics().calls, 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    breaker: Arc<Breaker>,
    classifier: C,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` with `breaker` and the [`DefaultClassifier`].
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker};
    /// let svc = CircuitBreaker::new(tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }),
    ///     Breaker::new(BreakerConfig::new("x")));
    /// # let _ = svc;
    /// ```
    pub fn new(inner: S, breaker: Arc<Breaker>) -> Self {
        CircuitBreaker::with_classifier(inner, breaker, DefaultClassifier)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Wraps `inner` with `breaker` and `classifier`.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker, FailureIf};
    /// use timefuse_guard::GuardError;
    /// let svc = CircuitBreaker::with_classifier(
    ///     tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }),
    ///     Breaker::new(BreakerConfig::new("x")),
    ///     FailureIf::new(|e: &GuardError| e.is_deadline_exceeded()),
    /// );
    /// # let _ = svc;
    /// ```
    pub fn with_classifier(inner: S, breaker: Arc<Breaker>, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            classifier,
        }
    }

    /// The shared breaker.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker};
    /// let svc = CircuitBreaker::new((), Breaker::new(BreakerConfig::new("x")));
    /// assert_eq!(svc.breaker().name(), "x");
    /// ```
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// The wrapped service.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker};
    /// let svc = CircuitBreaker::new(5u8, Breaker::new(BreakerConfig::new("x")));
    /// assert_eq!(*svc.get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker};
    /// let mut svc = CircuitBreaker::new(5u8, Breaker::new(BreakerConfig::new("x")));
    /// *svc.get_mut() = 6;
    /// assert_eq!(svc.into_inner(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreaker};
    /// let svc = CircuitBreaker::new(5u8, Breaker::new(BreakerConfig::new("x")));
    /// assert_eq!(svc.into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.acquire_owned_lazy(Context::try_current) {
            Ok(permit) => {
                let start = Instant::now();
                ResponseFuture::running(
                    self.inner.call(req),
                    permit,
                    start,
                    self.classifier.clone(),
                )
            }
            Err(refused) => ResponseFuture::refused(refused),
        }
    }
}
