//! Fallbacks: a typed hook per route that answers, marked degraded, when the guards refuse a
//! call, when the budget is exhausted, or up front when the request should degrade.
//!
//! - [`FallbackHook`]: keeps what it needs of the request before the call, and produces the
//!   degraded response from it and [`Why`]. Ready-made: [`from_fn`], [`default_response`],
//!   [`StaleCache`] (the last good response per key).
//! - [`FallbackLayer`] / [`Fallback`]: the middleware, outermost in the stack. It answers with
//!   the hook's response for the [`Triggers`] it is set for — by default refusals (rate
//!   limited, open circuit, full bulkhead, refused for budget), an exhausted budget (the
//!   request's deadline ended the call) and, before calling at all, a request whose context
//!   [should degrade](timefuse::Context::should_degrade) (less than the policy's
//!   `degrade_below` left). Plain failures of the callee are passed through unless
//!   [`Triggers::failures`] is set.
//! - A fallback response is **marked**: [`MarkDegraded`] puts a [`Degraded`] marker on it (in
//!   the extensions of an `http::Response`), and the layer counts it ([`FallbackStats`], and a
//!   `tracing` event with `outcome = "degraded"`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use timefuse_guard::fallback::{self, Degraded, FallbackLayer, Why};
//! use timefuse_guard::{GuardError, Outcome};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = FallbackLayer::new(fallback::default_response(|why: &Why<'_>| {
//!     Some(http::Response::new(format!("degraded: {}", why.reason())))
//! }));
//! let refusing = tower::service_fn(|_: ()| async {
//!     Err::<http::Response<String>, _>(GuardError::open_circuit("pricing", None))
//! });
//! let mut svc = layer.layer(refusing);
//! let res = svc.ready().await.unwrap().call(()).await.unwrap();
//! assert_eq!(res.body(), "degraded: open_circuit");
//! assert_eq!(res.extensions().get::<Degraded>().unwrap().outcome(), Some(Outcome::OpenCircuit));
//! assert_eq!(layer.stats().served, 1);
//! # }
//! ```

pub mod future;
mod hook;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};

use timefuse::Context;
use tower_service::Service;

pub use hook::{DefaultResponse, FallbackHook, FnHook, StaleCache, default_response, from_fn};
pub use layer::FallbackLayer;

use crate::{BoxError, GuardError, Outcome};
use future::ResponseFuture;

/// Why a fallback answered.
///
/// ```
/// use timefuse_guard::Outcome;
/// use timefuse_guard::fallback::DegradeReason;
/// assert_eq!(DegradeReason::Refused(Outcome::RateLimited).to_string(), "rate_limited");
/// assert_eq!(DegradeReason::ShouldDegrade.to_string(), "should_degrade");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DegradeReason {
    /// A guard refused the call: the refusal's outcome (rate limited, open circuit, full
    /// bulkhead, refused for budget).
    Refused(Outcome),
    /// The request's deadline ended the call.
    BudgetExhausted,
    /// The callee failed (only with [`Triggers::failures`]).
    Failure,
    /// The request's context had less than the policy's `degrade_below` left: the callee was
    /// not called.
    ShouldDegrade,
}

impl fmt::Display for DegradeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            DegradeReason::Refused(outcome) => outcome.as_str(),
            DegradeReason::BudgetExhausted => "budget_exhausted",
            DegradeReason::Failure => "failure",
            DegradeReason::ShouldDegrade => "should_degrade",
        })
    }
}

/// What a [`FallbackHook`] is told: the reason and, unless the fallback was taken up front,
/// the error it replaces.
///
/// ```
/// use timefuse_guard::GuardError;
/// use timefuse_guard::fallback::{DegradeReason, Why};
///
/// assert_eq!(Why::up_front().reason(), DegradeReason::ShouldDegrade);
/// let err = GuardError::rate_limited(std::time::Duration::from_millis(5));
/// let why = Why::from_error(&err).unwrap();
/// assert_eq!(why.error().unwrap().retry_after(), Some(std::time::Duration::from_millis(5)));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Why<'a> {
    reason: DegradeReason,
    error: Option<&'a GuardError>,
}

impl<'a> Why<'a> {
    /// The request should degrade: no call was made.
    ///
    /// ```
    /// use timefuse_guard::fallback::{DegradeReason, Why};
    /// assert!(Why::up_front().error().is_none());
    /// assert_eq!(Why::up_front().reason(), DegradeReason::ShouldDegrade);
    /// ```
    pub fn up_front() -> Why<'static> {
        Why {
            reason: DegradeReason::ShouldDegrade,
            error: None,
        }
    }

    /// The reason for `error`: a refusal, an exhausted budget or a failure. `None` for an
    /// ended context whose cause is not its deadline (the caller went away: nobody to answer).
    ///
    /// ```
    /// use timefuse::Cause;
    /// use timefuse_guard::GuardError;
    /// use timefuse_guard::fallback::{DegradeReason, Why};
    /// let late = GuardError::ended(Cause::DeadlineExceeded);
    /// assert_eq!(Why::from_error(&late).unwrap().reason(), DegradeReason::BudgetExhausted);
    /// assert!(Why::from_error(&GuardError::ended(Cause::ClientGone)).is_none());
    /// ```
    pub fn from_error(error: &'a GuardError) -> Option<Why<'a>> {
        let reason = if error.is_refusal() {
            DegradeReason::Refused(error.outcome())
        } else if error.is_deadline_exceeded() {
            DegradeReason::BudgetExhausted
        } else if matches!(error, GuardError::Ended { .. }) {
            return None;
        } else {
            DegradeReason::Failure
        };
        Some(Why {
            reason,
            error: Some(error),
        })
    }

    /// Why.
    ///
    /// ```
    /// use timefuse_guard::GuardError;
    /// use timefuse_guard::fallback::{DegradeReason, Why};
    /// let err = GuardError::from_inner("boom");
    /// assert_eq!(Why::from_error(&err).unwrap().reason(), DegradeReason::Failure);
    /// ```
    pub fn reason(&self) -> DegradeReason {
        self.reason
    }

    /// The error replaced, if a call was refused or failed.
    ///
    /// ```
    /// use timefuse_guard::GuardError;
    /// use timefuse_guard::fallback::Why;
    /// let err = GuardError::open_circuit("db", None);
    /// assert!(Why::from_error(&err).unwrap().error().unwrap().is_refusal());
    /// ```
    pub fn error(&self) -> Option<&'a GuardError> {
        self.error
    }
}

/// Which reasons a [`Fallback`] answers for.
///
/// ```
/// use timefuse_guard::fallback::Triggers;
/// let t = Triggers::default();
/// assert!(t.refusals && t.budget_exhausted && t.should_degrade && !t.failures);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Triggers {
    /// Refusals by a guard. Default: yes.
    pub refusals: bool,
    /// The request's deadline ended the call. Default: yes.
    pub budget_exhausted: bool,
    /// The callee's own failures. Default: no.
    pub failures: bool,
    /// Up front, without calling, when the context [should degrade]. Default: yes.
    ///
    /// [should degrade]: timefuse::Context::should_degrade
    pub should_degrade: bool,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            refusals: true,
            budget_exhausted: true,
            failures: false,
            should_degrade: true,
        }
    }
}

impl Triggers {
    fn wants(&self, reason: DegradeReason) -> bool {
        match reason {
            DegradeReason::Refused(_) => self.refusals,
            DegradeReason::BudgetExhausted => self.budget_exhausted,
            DegradeReason::Failure => self.failures,
            DegradeReason::ShouldDegrade => self.should_degrade,
        }
    }
}

/// The marker on a fallback response: why it was degraded, and the route.
///
/// ```
/// use timefuse_guard::Outcome;
/// use timefuse_guard::fallback::{Degraded, DegradeReason};
///
/// let d = Degraded::new(DegradeReason::Refused(Outcome::BulkheadFull), Some("search".into()));
/// assert_eq!(d.outcome(), Some(Outcome::BulkheadFull));
/// assert_eq!(d.route(), Some("search"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degraded {
    reason: DegradeReason,
    route: Option<Arc<str>>,
}

impl Degraded {
    /// A marker.
    ///
    /// ```
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::fallback::{DegradeReason, Degraded};
    /// let d = Degraded::new(DegradeReason::Refused(Outcome::RateLimited), Some("api".into()));
    /// assert_eq!(d.route(), Some("api"));
    /// ```
    pub fn new(reason: DegradeReason, route: Option<Arc<str>>) -> Self {
        Degraded { reason, route }
    }

    /// Why the response was degraded.
    ///
    /// ```
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::fallback::{DegradeReason, Degraded};
    /// let d = Degraded::new(DegradeReason::Refused(Outcome::RateLimited), Some("api".into()));
    /// assert_eq!(d.reason(), DegradeReason::Refused(Outcome::RateLimited));
    /// ```
    pub fn reason(&self) -> DegradeReason {
        self.reason
    }

    /// The refusal that was replaced, if it was one.
    ///
    /// ```
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::fallback::{DegradeReason, Degraded};
    /// let d = Degraded::new(DegradeReason::Refused(Outcome::RateLimited), Some("api".into()));
    /// assert_eq!(d.outcome(), Some(Outcome::RateLimited));
    /// ```
    pub fn outcome(&self) -> Option<Outcome> {
        match self.reason {
            DegradeReason::Refused(o) => Some(o),
            _ => None,
        }
    }

    /// The route, if the layer is named.
    ///
    /// ```
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::fallback::{DegradeReason, Degraded};
    /// let d = Degraded::new(DegradeReason::Refused(Outcome::RateLimited), Some("api".into()));
    /// assert_eq!(d.route(), Some("api"));
    /// ```
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }
}

/// Puts the [`Degraded`] marker on a response. Implemented for `http::Response<B>` (the marker
/// goes into its extensions) and [`Marked<T>`]; implement it for your own response types.
///
/// ```
/// use timefuse_guard::fallback::{Degraded, DegradeReason, MarkDegraded};
///
/// let mut res = http::Response::new(());
/// res.mark_degraded(Degraded::new(DegradeReason::ShouldDegrade, None));
/// assert!(res.extensions().get::<Degraded>().is_some());
/// ```
pub trait MarkDegraded {
    /// Marks the response.
    fn mark_degraded(&mut self, marker: Degraded);
}

impl<B> MarkDegraded for http::Response<B> {
    fn mark_degraded(&mut self, marker: Degraded) {
        self.extensions_mut().insert(marker);
    }
}

/// A response value with room for the [`Degraded`] marker, for services whose responses have
/// no extensions of their own.
///
/// ```
/// use timefuse_guard::fallback::{Degraded, DegradeReason, MarkDegraded, Marked};
///
/// let mut m = Marked::new(42);
/// assert!(!m.is_degraded());
/// m.mark_degraded(Degraded::new(DegradeReason::ShouldDegrade, None));
/// assert!(m.is_degraded());
/// assert_eq!(*m, 42);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marked<T> {
    /// The response.
    pub value: T,
    /// The marker, on a fallback response.
    pub degraded: Option<Degraded>,
}

impl<T> Marked<T> {
    /// An unmarked response.
    ///
    /// ```
    /// let m = timefuse_guard::fallback::Marked::new("fresh");
    /// assert_eq!(m.value, "fresh");
    /// assert!(m.degraded.is_none());
    /// ```
    pub fn new(value: T) -> Self {
        Marked {
            value,
            degraded: None,
        }
    }

    /// True on a fallback response.
    ///
    /// ```
    /// assert!(!timefuse_guard::fallback::Marked::new(1).is_degraded());
    /// ```
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }
}

impl<T> std::ops::Deref for Marked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> MarkDegraded for Marked<T> {
    fn mark_degraded(&mut self, marker: Degraded) {
        self.degraded = Some(marker);
    }
}

/// Counters of a [`FallbackLayer`].
///
/// ```
/// let stats = timefuse_guard::fallback::FallbackStats::default();
/// assert_eq!(stats.served + stats.declined + stats.up_front, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackStats {
    /// Degraded responses served (up-front ones included).
    pub served: u64,
    /// Of those, served up front because the context should degrade.
    pub up_front: u64,
    /// Times the hook was asked and returned `None` (the error went through).
    pub declined: u64,
}

#[derive(Debug)]
pub(crate) struct Shared<H> {
    hook: H,
    triggers: Triggers,
    route: Option<Arc<str>>,
    served: AtomicU64,
    up_front: AtomicU64,
    declined: AtomicU64,
}

impl<H> Shared<H> {
    fn stats(&self) -> FallbackStats {
        FallbackStats {
            served: self.served.load(Ordering::Relaxed),
            up_front: self.up_front.load(Ordering::Relaxed),
            declined: self.declined.load(Ordering::Relaxed),
        }
    }

    /// The hook's answer for `why`, marked and counted; `None` if the trigger is off or the
    /// hook declines.
    fn degrade<Req, Res>(&self, key: H::Key, why: &Why<'_>) -> Option<Res>
    where
        H: FallbackHook<Req, Res>,
        Res: MarkDegraded,
    {
        if !self.triggers.wants(why.reason) {
            return None;
        }
        match self.hook.fallback(key, why) {
            Some(mut res) => {
                self.served.fetch_add(1, Ordering::Relaxed);
                if why.reason == DegradeReason::ShouldDegrade {
                    self.up_front.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(
                    outcome = Outcome::Degraded.as_str(),
                    reason = %why.reason,
                    route = self.route.as_deref(),
                    "fallback served"
                );
                res.mark_degraded(Degraded::new(why.reason, self.route.clone()));
                Some(res)
            }
            None => {
                self.declined.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// The service made by [`FallbackLayer`]: see the [module docs](self).
///
/// ```
/// use timefuse_guard::fallback::{self, FallbackLayer, Why};
/// use tower::Layer;
/// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
/// let svc = layer.layer(tower::service_fn(|_: ()| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
/// assert_eq!(svc.stats().served, 0);
/// ```
#[derive(Debug)]
pub struct Fallback<S, H> {
    inner: S,
    shared: Arc<Shared<H>>,
}

impl<S: Clone, H> Clone for Fallback<S, H> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, H> Fallback<S, H> {
    /// The wrapped service.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// use tower::Layer;
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
    /// assert_eq!(*layer.layer(7_u8).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// use tower::Layer;
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
    /// let mut svc = layer.layer(7_u8);
    /// *svc.get_mut() = 8;
    /// assert_eq!(*svc.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// use tower::Layer;
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
    /// assert_eq!(layer.layer(7_u8).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Counters so far, shared with the layer.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// use tower::Layer;
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
    /// assert_eq!(layer.layer(7_u8).stats().declined, 0);
    /// ```
    pub fn stats(&self) -> FallbackStats {
        self.shared.stats()
    }
}

impl<S, H, Req> Service<Req> for Fallback<S, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Response: MarkDegraded,
    H: FallbackHook<Req, S::Response>,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S, H, Req>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.shared.hook.key(&req);
        if self.shared.triggers.should_degrade
            && let Some(ctx) = Context::try_current()
            && ctx.should_degrade()
        {
            match self.shared.degrade(key, &Why::up_front()) {
                Some(res) => return ResponseFuture::ready(res),
                // The hook had nothing: try the call after all, and ask again if it fails.
                None => {
                    let key = self.shared.hook.key(&req);
                    return ResponseFuture::new(self.inner.call(req), key, &self.shared);
                }
            }
        }
        ResponseFuture::new(self.inner.call(req), key, &self.shared)
    }
}
