//! Deadline admission: refuse a call that cannot finish in the time its caller has left.
//!
//! For each request the layer computes the call's budget with the downstream rule of the
//! request's policy — `min(downstream cap, remaining − reserve)`, as timefuse-tower's egress
//! layer would grant it — and refuses the call, **without calling**, with
//! [`GuardError::RefusedForBudget`] when that budget is below
//!
//! ```text
//! max(floor, expected latency of the route)
//! ```
//!
//! The expected latency is an EWMA of the latencies of the route's recent successful calls
//! ([`LatencyEstimator`], in atomics, shared across clones). Routes come from a function of
//! the request ([`AdmissionLayer::routed`]); by default there is one. A route with no sample
//! yet (a cold start) has no expectation: only the floor applies.
//!
//! - A refusal is its own outcome, [`Outcome::RefusedForBudget`](crate::Outcome), never a
//!   failure: placed outermost (its place in the stack), it never reaches the circuit breaker,
//!   and a breaker outside it ignores refusals anyway.
//! - So that a route whose callers would all be refused still learns when the callee gets
//!   faster, a route with no successful sample for a
//!   [`probe_interval`](LatencyEstimator::probe_interval) (default one second) lets one call
//!   per interval through despite the estimate, if it has at least the floor.
//! - Without a deadline (or without a context) every call is admitted; a context already
//!   done is refused with [`GuardError::Ended`].
//!
//! The request's context is the task-local
//! [`Context::try_current`](timefuse::Context::try_current), which timefuse-tower's ingress
//! layer and [`Context::scope`](timefuse::Context::scope) set.
//!
//! No peer library does this: resilience4j, Sentinel and tower-resilience all start a call
//! whatever the caller's deadline.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use timefuse::Context;
//! use timefuse::budget::TimeoutPolicy;
//! use timefuse_guard::{GuardError, Outcome};
//! use timefuse_guard::admission::AdmissionLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Per-route estimates: "report" is slow, "lookup" is fast.
//! let layer = AdmissionLayer::routed(|req: &&'static str| *req);
//! let estimator = layer.estimator().clone();
//! let mut svc = ServiceBuilder::new().layer(layer).service_fn(|req: &'static str| async move {
//!     let took = if req == "report" { 500 } else { 20 };
//!     tokio::time::sleep(Duration::from_millis(took)).await;
//!     Ok::<_, std::convert::Infallible>(req)
//! });
//! for req in ["report", "lookup"] {
//!     svc.ready().await.unwrap().call(req).await.unwrap(); // no deadline: admitted, measured
//! }
//! assert_eq!(estimator.expected(&"report"), Some(Duration::from_millis(500)));
//!
//! let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc()); // 650 ms call budget
//! tokio::time::advance(Duration::from_millis(200)).await; // 450 ms left for a call
//! ctx.scope(async {
//!     let err = svc.ready().await.unwrap().call("report").await.unwrap_err();
//!     assert_eq!(err.outcome(), Outcome::RefusedForBudget);
//!     assert_eq!(svc.ready().await.unwrap().call("lookup").await.unwrap(), "lookup");
//! })
//! .await;
//! # }
//! ```

mod estimator;
pub mod future;
mod layer;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tower_service::Service;

use timefuse::{Cause, Context};

use crate::outcome::call_budget;
use crate::{BoxError, GuardError};

pub use estimator::LatencyEstimator;
pub use future::ResponseFuture;
pub use layer::AdmissionLayer;

/// Picks the route a request belongs to: its expectation is that route's.
///
/// Any `Fn(&Req) -> K` is a `RouteFn`; [`SingleRoute`] puts every request on the one route
/// `()`.
///
/// ```
/// use timefuse_guard::admission::{RouteFn, SingleRoute};
///
/// struct Call { method: &'static str }
/// let by_method = |c: &Call| c.method;
/// assert_eq!(by_method.route(&Call { method: "Get" }), "Get");
/// assert_eq!(RouteFn::<Call>::route(&SingleRoute, &Call { method: "Get" }), ());
/// ```
pub trait RouteFn<Req> {
    /// The route key type (`Debug` names the route in refusals).
    type Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static;

    /// The route of `req`.
    fn route(&self, req: &Req) -> Self::Key;
}

/// Every request on one route.
///
/// ```
/// use timefuse_guard::admission::{RouteFn, SingleRoute};
/// assert_eq!(RouteFn::<u8>::route(&SingleRoute, &1), ());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SingleRoute;

impl<Req> RouteFn<Req> for SingleRoute {
    type Key = ();

    #[inline]
    fn route(&self, _: &Req) {}
}

impl<Req, K, F> RouteFn<Req> for F
where
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    type Key = K;

    #[inline]
    fn route(&self, req: &Req) -> K {
        self(req)
    }
}

/// The service made by [`AdmissionLayer`].
///
/// ```
/// use timefuse_guard::admission::{Admission, LatencyEstimator, SingleRoute};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let estimator = LatencyEstimator::<()>::new();
/// let mut svc = Admission::new(
///     tower::service_fn(|x: u8| async move { Ok::<_, std::convert::Infallible>(x) }),
///     estimator.clone(),
///     SingleRoute,
///     None,
/// );
/// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
/// assert_eq!(estimator.samples(&()), 1);
/// # }
/// ```
pub struct Admission<S, K = (), F = SingleRoute> {
    inner: S,
    estimator: LatencyEstimator<K>,
    route_fn: F,
    downstream: Option<Arc<str>>,
}

impl<S, K, F> Admission<S, K, F> {
    /// Wraps `inner`: routes from `route_fn`, estimates in `estimator`, budgets with the
    /// downstream cap of `downstream` (or the policy's default cap).
    ///
    /// ```
    /// use timefuse_guard::admission::{Admission, LatencyEstimator, SingleRoute};
    /// let svc = Admission::new((), LatencyEstimator::<()>::new(), SingleRoute, Some("ledger".into()));
    /// # let _ = svc;
    /// ```
    pub fn new(
        inner: S,
        estimator: LatencyEstimator<K>,
        route_fn: F,
        downstream: Option<Arc<str>>,
    ) -> Self {
        Admission {
            inner,
            estimator,
            route_fn,
            downstream,
        }
    }

    /// The shared estimator.
    ///
    /// ```
    /// use timefuse_guard::admission::{Admission, LatencyEstimator, SingleRoute};
    /// let svc = Admission::new((), LatencyEstimator::<()>::new(), SingleRoute, None);
    /// assert_eq!(svc.estimator().samples(&()), 0);
    /// ```
    pub fn estimator(&self) -> &LatencyEstimator<K> {
        &self.estimator
    }

    /// The wrapped service.
    ///
    /// ```
    /// use timefuse_guard::admission::{Admission, LatencyEstimator, SingleRoute};
    /// let svc = Admission::new(3u8, LatencyEstimator::<()>::new(), SingleRoute, None);
    /// assert_eq!(*svc.get_ref(), 3);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use timefuse_guard::admission::{Admission, LatencyEstimator, SingleRoute};
    /// let mut svc = Admission::new(3u8, LatencyEstimator::<()>::new(), SingleRoute, None);
    /// *svc.get_mut() = 4;
    /// assert_eq!(*svc.get_ref(), 4);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use timefuse_guard::admission::{Admission, LatencyEstimator, SingleRoute};
    /// let svc = Admission::new(3u8, LatencyEstimator::<()>::new(), SingleRoute, None);
    /// assert_eq!(svc.into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F: Clone> Clone for Admission<S, K, F> {
    fn clone(&self) -> Self {
        Admission {
            inner: self.inner.clone(),
            estimator: self.estimator.clone(),
            route_fn: self.route_fn.clone(),
            downstream: self.downstream.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for Admission<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("inner", &self.inner)
            .field("estimator", &self.estimator)
            .field("downstream", &self.downstream)
            .finish_non_exhaustive()
    }
}

impl<S, Req, K, F> Service<Req> for Admission<S, K, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: RouteFn<Req, Key = K>,
    K: Hash + Eq + Clone + fmt::Debug,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.route_fn.route(&req);
        let route = self.estimator.route(&key);
        if let Some(ctx) = Context::try_current() {
            if ctx.is_done() {
                let cause = ctx.cause().unwrap_or(Cause::DeadlineExceeded);
                self.estimator.note_refused(&route);
                return ResponseFuture::refused(GuardError::ended(cause));
            }
            if let Some(budget) = call_budget(&ctx, self.downstream.as_deref()) {
                let floor = ctx.policy().floor();
                let expected = self.estimator.expected_of(&route);
                let needed = floor.max(expected.unwrap_or(Duration::ZERO));
                if budget < needed && !(budget >= floor && self.estimator.try_probe(&route)) {
                    self.estimator.note_refused(&route);
                    tracing::debug!(
                        route = ?key,
                        ?budget,
                        ?needed,
                        "call refused: budget below the expected latency"
                    );
                    let route_name = (size_of::<K>() != 0).then(|| Arc::from(format!("{key:?}")));
                    return ResponseFuture::refused(GuardError::RefusedForBudget {
                        remaining: budget,
                        needed,
                        expected: expected.unwrap_or(Duration::ZERO),
                        route: route_name,
                    });
                }
            }
        }
        self.estimator.note_admitted(&route);
        let alpha = self.estimator.alpha_value();
        let base = self.estimator.clock_base();
        ResponseFuture::running(self.inner.call(req), route, alpha, base)
    }
}
