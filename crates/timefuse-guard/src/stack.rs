//! The whole defense as one layer, in the documented order, from one route's configuration.
//!
//! ```text
//! fallback                      answers refusals, exhausted budgets, should_degrade() up front
//!  └─ retry                     under the retry budget, only with time for another attempt
//!      └─ admission             refuses calls whose budget is below the expected latency
//!          └─ rate limiter      GCRA, local (governor) or distributed (Redis)
//!              └─ breaker       resilience4j semantics, deadline-aware probes
//!                  └─ bulkhead  concurrency limit, wait bounded by the budget
//!                      └─ per-try timeout: min(per-try cap, remaining − reserve)
//!                          └─ your service
//! ```
//!
//! Every attempt (the first and each retry) passes admission, the limiter, the breaker and the
//! bulkhead again: a retry is load like any other call. The fallback sits outside the retries:
//! it answers when they are exhausted or refused, and before anything when the request should
//! degrade.
//!
//! [`GuardLayer::from_config`] builds it from a [`GuardConfig`](crate::config::GuardConfig)
//! route; [`GuardLayer::new`] and the `with_*` methods build it in code. A guard that is off is
//! skipped (one branch per call). Each service [`GuardLayer`] makes is a [`GuardStack`].
//!
//! # Requirements
//!
//! - `Req: Clone`: retries send clones of the request (see [`retry`](crate::retry)).
//! - `S: Clone`: waiting guards and retries call clones of the inner service.
//! - `S::Response:` [`MarkDegraded`](crate::fallback::MarkDegraded) (`http::Response` is), so
//!   that a fallback answer can be marked.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use timefuse::Context;
//! use timefuse_guard::config::GuardConfig;
//! use timefuse_guard::fallback::{self, Why};
//! use timefuse_guard::stack::GuardLayer;
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = GuardConfig::document_preset(); // 800 ms, 100 QPS, breaker 50 % over 60 s
//! let layer = GuardLayer::from_config(&config, "quotes")?
//!     .with_fallback(fallback::default_response(|why: &Why<'_>| {
//!         Some(http::Response::new(format!("no quote ({})", why.reason())))
//!     }));
//! let mut svc = layer.layer(tower::service_fn(|_: ()| async {
//!     Ok::<_, std::io::Error>(http::Response::new("42.00".to_owned()))
//! }));
//!
//! let (ctx, _guard) = Context::request(config.route("quotes")?.timeout);
//! let res = ctx.scope(async { svc.ready().await?.call(()).await }).await?;
//! assert_eq!(res.body(), "42.00");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::admission::{Admission, AdmissionLayer};
use crate::breaker::{Breaker, BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use crate::bulkhead::{Bulkhead, BulkheadLayer, Compartment};
use crate::fallback::{Fallback, FallbackHook, FallbackLayer, FallbackStats, Triggers, Why};
use crate::rate_limit::{
    ByContext, ContextKey, LimiterClock, Rate, RateLimit, RateLimitLayer, RateLimiter, WaitMode,
};
#[cfg(feature = "redis")]
use crate::redis_limit::{RedisRateLimit, RedisRateLimitLayer, RedisRateLimiter};
use crate::retry::{PerTryTimeout, PerTryTimeoutLayer, Retry, RetryLayer, RetryStats};
use crate::{BoxError, GuardError};

// ---------------------------------------------------------------------------------------------
// Toggle

/// A guard that may be off: `On` runs it, `Off` calls the inner service directly (its errors
/// still become [`GuardError`]s).
///
/// ```
/// use timefuse_guard::retry::PerTryTimeout;
/// use timefuse_guard::stack::Toggle;
/// use tower::{Service, ServiceExt};
///
/// fn off<S>(inner: S) -> Toggle<PerTryTimeout<S>, S> {
///     Toggle::Off(inner)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut svc = off(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
/// # }
/// ```
#[derive(Clone, Debug)]
pub enum Toggle<A, B> {
    /// The guard runs.
    On(A),
    /// The guard is off.
    Off(B),
}

impl<A, B, Req> Service<Req> for Toggle<A, B>
where
    A: Service<Req, Error = GuardError>,
    B: Service<Req, Response = A::Response>,
    B::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = GuardError;
    type Future = ToggleFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), GuardError>> {
        match self {
            Toggle::On(a) => a.poll_ready(cx),
            Toggle::Off(b) => b.poll_ready(cx).map_err(GuardError::from_inner),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Toggle::On(a) => ToggleFuture {
                state: ToggleState::On { fut: a.call(req) },
            },
            Toggle::Off(b) => ToggleFuture {
                state: ToggleState::Off { fut: b.call(req) },
            },
        }
    }
}

pin_project! {
    /// Response future of [`Toggle`].
    ///
    /// ```
    /// use timefuse_guard::retry::PerTryTimeout;
    /// use timefuse_guard::stack::Toggle;
    /// use tower::{Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// fn on<S>(inner: S) -> Toggle<PerTryTimeout<S>, S> {
    ///     Toggle::On(PerTryTimeout::new(inner, None))
    /// }
    /// let mut on = on(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let future = on.ready().await.unwrap().call(3); // this type
    /// assert_eq!(future.await.unwrap(), 3);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ToggleFuture<A, B> {
        #[pin]
        state: ToggleState<A, B>,
    }
}

pin_project! {
    #[project = ToggleProj]
    enum ToggleState<A, B> {
        On { #[pin] fut: A },
        Off { #[pin] fut: B },
    }
}

impl<A, B, T, E> Future for ToggleFuture<A, B>
where
    A: Future<Output = Result<T, GuardError>>,
    B: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, GuardError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ToggleProj::On { fut } => fut.poll(cx),
            ToggleProj::Off { fut } => fut.poll(cx).map_err(GuardError::from_inner),
        }
    }
}

impl<A, B> fmt::Debug for ToggleFuture<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            ToggleState::On { .. } => "ToggleFuture::On",
            ToggleState::Off { .. } => "ToggleFuture::Off",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The stack

/// A fallback hook that never answers: the stack without a fallback.
///
/// ```
/// use timefuse_guard::fallback::{FallbackHook, Why};
/// use timefuse_guard::stack::NoFallback;
/// assert_eq!(FallbackHook::<u8, u8>::fallback(&NoFallback, (), &Why::up_front()), None);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

impl<Req, Res> FallbackHook<Req, Res> for NoFallback {
    type Key = ();

    #[inline]
    fn key(&self, _: &Req) {}

    fn fallback(&self, (): (), _: &Why<'_>) -> Option<Res> {
        None
    }
}

type L1<S> = PerTryTimeout<S>;
type L2<S> = Toggle<Bulkhead<L1<S>>, L1<S>>;
type L3<S> = Toggle<CircuitBreaker<L2<S>>, L2<S>>;
#[cfg(feature = "redis")]
type L4<S> = Toggle<RedisRateLimit<L3<S>, ByContext>, L3<S>>;
#[cfg(not(feature = "redis"))]
type L4<S> = L3<S>;
type L5<S> = Toggle<RateLimit<L4<S>, ContextKey, ByContext>, L4<S>>;
type L6<S> = Toggle<Admission<L5<S>>, L5<S>>;
type L7<S> = Toggle<Retry<L6<S>>, L6<S>>;

/// The service [`GuardLayer`] makes: fallback → retry → admission → rate limiter (local or
/// Redis) → breaker → bulkhead → per-try timeout → `S`.
///
/// ```
/// use timefuse_guard::stack::GuardLayer;
/// use timefuse_guard::stack::{GuardStack, NoFallback};
/// use tower::Layer;
/// let svc: GuardStack<_, NoFallback> = GuardLayer::new("ledger").layer(tower::service_fn(|x: u8| async move {
///     Ok::<_, std::io::Error>(http::Response::new(x))
/// }));
/// # let _ = svc;
/// ```
pub type GuardStack<S, H = NoFallback> = Fallback<L7<S>, H>;

/// The whole defense for one route, in the documented order (see the [module docs](self)).
///
/// Every service it makes (and every clone) shares the route's limiter, breaker, bulkhead,
/// retry budget, latency estimate and fallback counters.
///
/// ```
/// use timefuse_guard::stack::GuardLayer;
/// use timefuse_guard::config::GuardConfig;
/// let layer = GuardLayer::from_config(&GuardConfig::document_preset(), "pay")?;
/// assert_eq!(layer.route(), "pay");
/// assert!(layer.admission().is_some() && layer.compartment().is_some());
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct GuardLayer<H = NoFallback> {
    route: Arc<str>,
    fallback: FallbackLayer<H>,
    retry: Option<RetryLayer>,
    admission: Option<AdmissionLayer>,
    rate: Option<RateLimitLayer<ContextKey, ByContext>>,
    #[cfg(feature = "redis")]
    redis: Option<RedisRateLimitLayer<ByContext>>,
    breaker: Option<CircuitBreakerLayer>,
    bulkhead: Option<BulkheadLayer>,
    per_try: PerTryTimeoutLayer,
    /// The fallback triggers a configuration chose, for the hook given later.
    configured_triggers: Option<Triggers>,
}

impl<H> Clone for GuardLayer<H> {
    fn clone(&self) -> Self {
        GuardLayer {
            route: Arc::clone(&self.route),
            fallback: self.fallback.clone(),
            retry: self.retry.clone(),
            admission: self.admission.clone(),
            rate: self.rate.clone(),
            #[cfg(feature = "redis")]
            redis: self.redis.clone(),
            breaker: self.breaker.clone(),
            bulkhead: self.bulkhead.clone(),
            per_try: self.per_try,
            configured_triggers: self.configured_triggers,
        }
    }
}

fn no_triggers() -> Triggers {
    Triggers {
        refusals: false,
        budget_exhausted: false,
        failures: false,
        should_degrade: false,
    }
}

impl GuardLayer<NoFallback> {
    /// A stack for `route` with every guard off (only the per-try timeout, without a cap):
    /// turn guards on with the `with_*` methods.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::breaker::BreakerConfig;
    /// use timefuse_guard::rate_limit::{ByContext, Rate, WaitMode};
    /// use timefuse_guard::stack::GuardLayer;
    ///
    /// let layer = GuardLayer::new("pay")
    ///     .with_admission()
    ///     .with_rate_limit(Rate::per_second(100), WaitMode::NoWait, ByContext::Global)
    ///     .with_breaker(BreakerConfig::fifty_percent_over_a_minute("pay"))
    ///     .with_bulkhead(25, Duration::from_millis(100))
    ///     .with_retry(timefuse_guard::retry::RetryLayer::new(Default::default()))
    ///     .with_per_try(Some(Duration::from_millis(300)));
    /// assert!(layer.breaker().is_some());
    /// ```
    pub fn new(route: impl Into<Arc<str>>) -> Self {
        GuardLayer {
            route: route.into(),
            fallback: FallbackLayer::with_triggers(NoFallback, no_triggers()),
            retry: None,
            admission: None,
            rate: None,
            #[cfg(feature = "redis")]
            redis: None,
            breaker: None,
            bulkhead: None,
            per_try: PerTryTimeoutLayer::new(None),
            configured_triggers: None,
        }
    }
}

impl<H> GuardLayer<H> {
    /// The route's name.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert_eq!(GuardLayer::new("ledger").route(), "ledger");
    /// ```
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Turns deadline admission on (its expected latency per route named after the route's
    /// downstream cap).
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").with_admission().admission().is_some());
    /// ```
    #[must_use]
    pub fn with_admission(mut self) -> Self {
        self.admission = Some(AdmissionLayer::new().downstream(Arc::clone(&self.route)));
        self
    }

    /// Turns a local rate limit on: `rate`, waiting per `wait` (within the budget), keyed per
    /// `key`.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::rate_limit::{ByContext, Rate, WaitMode};
    /// let layer = GuardLayer::new("ledger").with_rate_limit(Rate::per_second(50), WaitMode::NoWait, ByContext::Tenant);
    /// assert!(layer.rate_limiter().unwrap().is_keyed());
    /// ```
    #[must_use]
    pub fn with_rate_limit(self, rate: Rate, wait: WaitMode, key: ByContext) -> Self {
        self.with_rate_limit_clock(rate, wait, key, LimiterClock::default())
    }

    /// As [`with_rate_limit`](GuardLayer::with_rate_limit), the limiter reading `clock`
    /// ([`LimiterClock::tokio`] for tests on tokio's paused clock).
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::rate_limit::{ByContext, LimiterClock, Rate, WaitMode};
    /// let layer = GuardLayer::new("ledger")
    ///     .with_rate_limit_clock(Rate::per_second(50), WaitMode::NoWait, ByContext::Global, LimiterClock::tokio());
    /// assert!(layer.rate_limiter().unwrap().clock_is_tokio());
    /// ```
    #[must_use]
    pub fn with_rate_limit_clock(
        mut self,
        rate: Rate,
        wait: WaitMode,
        key: ByContext,
        clock: LimiterClock,
    ) -> Self {
        let limiter = match key {
            ByContext::Global => RateLimiter::direct_any(rate, clock),
            _ => RateLimiter::keyed_with_clock(rate, clock),
        }
        .named(Arc::clone(&self.route));
        self.rate = Some(RateLimitLayer::with_key_fn(limiter, key).wait(wait));
        self
    }

    /// Turns a distributed rate limit on, replacing any local one.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::rate_limit::{ByContext, Rate, WaitMode};
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(50))?;
    /// let layer = GuardLayer::new("ledger").with_redis_rate_limit(limiter, WaitMode::NoWait, ByContext::Global);
    /// assert!(layer.redis_rate_limiter().is_some() && layer.rate_limiter().is_none());
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_redis_rate_limit(
        mut self,
        limiter: RedisRateLimiter,
        wait: WaitMode,
        key: ByContext,
    ) -> Self {
        let layer = RedisRateLimitLayer::keyed(limiter, key);
        self.redis = Some(match wait {
            WaitMode::NoWait => layer.no_wait(),
            WaitMode::UpTo(max) => layer.max_wait(max),
        });
        self.rate = None;
        self
    }

    /// Turns the circuit breaker on.
    ///
    /// # Panics
    ///
    /// If `config` is invalid (see [`BreakerConfig::validate`]).
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::breaker::BreakerConfig;
    /// let layer = GuardLayer::new("ledger").with_breaker(BreakerConfig::new("ledger"));
    /// assert_eq!(layer.breaker().unwrap().name(), "ledger");
    /// ```
    #[must_use]
    pub fn with_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(CircuitBreakerLayer::new(config));
        self
    }

    /// Turns the bulkhead on: `max_concurrent` calls, waiting up to `max_wait` (within the
    /// budget) for a permit.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// let layer = GuardLayer::new("ledger").with_bulkhead(8, std::time::Duration::from_millis(20));
    /// assert_eq!(layer.compartment().unwrap().max_concurrent(), 8);
    /// ```
    #[must_use]
    pub fn with_bulkhead(mut self, max_concurrent: usize, max_wait: Duration) -> Self {
        self.bulkhead = Some(BulkheadLayer::with_max_wait(max_concurrent, max_wait));
        self
    }

    /// Turns retries on.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// let layer = GuardLayer::new("ledger").with_retry(RetryLayer::new(RetryPolicy::default()));
    /// assert_eq!(layer.retry_stats().unwrap().retries, 0);
    /// ```
    #[must_use]
    pub fn with_retry(mut self, retry: RetryLayer) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the per-try cap (`None`: each attempt gets `remaining − reserve`).
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// let layer = GuardLayer::new("ledger").with_per_try(Some(std::time::Duration::from_millis(300)));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn with_per_try(mut self, cap: Option<Duration>) -> Self {
        self.per_try = PerTryTimeoutLayer::new(cap);
        self
    }

    /// Sets the fallback hook, keeping the triggers (from the configuration, or the default
    /// [`Triggers`] if none were set). On a route whose configuration says `kind = "none"` the
    /// hook is never asked.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::fallback::{self, Why};
    /// let layer = GuardLayer::new("ledger")
    ///     .with_fallback(fallback::default_response(|_: &Why<'_>| Some(http::Response::new("later"))));
    /// assert_eq!(layer.fallback_stats().served, 0);
    /// ```
    #[must_use]
    pub fn with_fallback<H2>(self, hook: H2) -> GuardLayer<H2> {
        let triggers = self.configured_triggers.unwrap_or_default();
        self.with_fallback_triggers(hook, triggers)
    }

    /// Sets the fallback hook and its triggers.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::fallback::{self, Triggers, Why};
    /// let mut triggers = Triggers::default();
    /// triggers.failures = true;
    /// let layer = GuardLayer::new("ledger")
    ///     .with_fallback_triggers(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))), triggers);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn with_fallback_triggers<H2>(self, hook: H2, triggers: Triggers) -> GuardLayer<H2> {
        GuardLayer {
            route: Arc::clone(&self.route),
            fallback: FallbackLayer::with_triggers(hook, triggers).named(Arc::clone(&self.route)),
            retry: self.retry,
            admission: self.admission,
            rate: self.rate,
            #[cfg(feature = "redis")]
            redis: self.redis,
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            per_try: self.per_try,
            configured_triggers: self.configured_triggers,
        }
    }

    /// The circuit breaker, if on.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").breaker().is_none(), "off until with_breaker");
    /// ```
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.breaker.as_ref().map(CircuitBreakerLayer::breaker)
    }

    /// The local rate limiter, if on.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").rate_limiter().is_none());
    /// ```
    pub fn rate_limiter(&self) -> Option<&RateLimiter<ContextKey>> {
        self.rate.as_ref().map(RateLimitLayer::limiter)
    }

    /// The distributed rate limiter, if on.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").redis_rate_limiter().is_none());
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis_rate_limiter(&self) -> Option<&RedisRateLimiter> {
        self.redis.as_ref().map(RedisRateLimitLayer::limiter)
    }

    /// The bulkhead's compartment, if on.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").compartment().is_none());
    /// ```
    pub fn compartment(&self) -> Option<&Arc<Compartment>> {
        self.bulkhead.as_ref().map(BulkheadLayer::compartment)
    }

    /// The admission layer, if on (its estimator holds the expected latency).
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").admission().is_none());
    /// ```
    pub fn admission(&self) -> Option<&AdmissionLayer> {
        self.admission.as_ref()
    }

    /// The retry counters, if retries are on.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert!(GuardLayer::new("ledger").retry_stats().is_none());
    /// ```
    pub fn retry_stats(&self) -> Option<RetryStats> {
        self.retry.as_ref().map(RetryLayer::stats)
    }

    /// The fallback counters.
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// assert_eq!(GuardLayer::new("ledger").fallback_stats().served, 0);
    /// ```
    pub fn fallback_stats(&self) -> FallbackStats {
        self.fallback.stats()
    }
}

#[cfg(feature = "config")]
impl GuardLayer<NoFallback> {
    /// The stack of route `route` of `config` (see
    /// [`GuardConfig::route`](crate::config::GuardConfig::route)). Add the fallback hook with
    /// [`with_fallback`](GuardLayer::with_fallback).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::config::ConfigError) if the route's settings are invalid or a
    /// distributed limiter's URL does not parse.
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// use timefuse_guard::stack::GuardLayer;
    ///
    /// let layer = GuardLayer::from_config(&GuardConfig::document_preset(), "pay")?;
    /// assert_eq!(layer.breaker().unwrap().name(), "pay");
    /// assert_eq!(layer.rate_limiter().unwrap().rate().num(), 100);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn from_config(
        config: &crate::config::GuardConfig,
        route: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        GuardLayer::from_settings(&config.route(route)?)
    }

    /// The stack of resolved `settings`.
    ///
    /// # Errors
    ///
    /// As [`from_config`](GuardLayer::from_config).
    ///
    /// ```
    /// use timefuse_guard::stack::GuardLayer;
    /// use timefuse_guard::config::GuardConfig;
    /// let settings = GuardConfig::document_preset().route("pay")?;
    /// let layer = GuardLayer::from_settings(&settings)?;
    /// assert_eq!(layer.rate_limiter().unwrap().rate().num(), 100);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn from_settings(
        settings: &crate::config::RouteSettings,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{ConfigError, ConfigErrorKind, FallbackKind, RateKey};
        let route: Arc<str> = Arc::from(settings.name.as_str());
        let key_path =
            |section: &str, key: &str| format!("routes.{}.{section}.{key}", settings.name);
        let mut layer = GuardLayer::new(Arc::clone(&route));
        if settings.admission {
            layer = layer.with_admission();
        }
        if let Some(rate) = &settings.rate {
            let key = match rate.key {
                RateKey::Global => ByContext::Global,
                RateKey::Tenant => ByContext::Tenant,
                RateKey::Peer => ByContext::Peer,
            };
            match &rate.distributed {
                None => layer = layer.with_rate_limit(rate.rate(), rate.wait_mode(), key),
                #[cfg(feature = "redis")]
                Some(d) => {
                    let limiter = RedisRateLimiter::new(&d.url, rate.rate())
                        .map_err(|e| {
                            ConfigError::new(
                                ConfigErrorKind::Invalid,
                                Some(key_path("rate.distributed", "url")),
                                e.to_string(),
                            )
                        })?
                        .prefix(format!("{}:{}", d.prefix, settings.name))
                        .fail_mode(match d.on_outage {
                            crate::config::OnOutage::Open => crate::redis_limit::FailMode::Open,
                            crate::config::OnOutage::Closed => crate::redis_limit::FailMode::Closed,
                        })
                        .timeout(d.timeout)
                        .named(Arc::clone(&route));
                    layer = layer.with_redis_rate_limit(limiter, rate.wait_mode(), key);
                }
                #[cfg(not(feature = "redis"))]
                Some(_) => {
                    return Err(ConfigError::new(
                        ConfigErrorKind::Invalid,
                        Some(key_path("rate", "distributed")),
                        "a distributed limit needs the `redis` feature",
                    ));
                }
            }
        }
        if let Some(breaker) = &settings.breaker {
            let config = breaker.to_config();
            if let Err(e) = config.validate() {
                let key = match e.setting() {
                    "sliding_window" => "window",
                    "failure_rate_threshold" => "failure_rate",
                    "slow_call_rate_threshold" => "slow_rate",
                    "permitted_calls_in_half_open" => "half_open_calls",
                    other => other,
                };
                return Err(ConfigError::new(
                    ConfigErrorKind::Invalid,
                    Some(key_path("breaker", key)),
                    e.to_string(),
                ));
            }
            layer = layer.with_breaker(config);
        }
        if let Some(b) = &settings.bulkhead {
            layer = layer.with_bulkhead(b.max_concurrent, b.max_wait);
        }
        let mut per_try = None;
        if let Some(r) = &settings.retry {
            per_try = r.per_try;
            layer = layer.with_retry(RetryLayer::with_budget(r.policy(), r.budget()));
        }
        layer = layer.with_per_try(per_try);
        let triggers = match settings.fallback.kind {
            FallbackKind::None => no_triggers(),
            _ => settings.fallback.triggers(),
        };
        layer.configured_triggers = Some(triggers);
        Ok(layer.with_fallback_triggers(NoFallback, triggers))
    }
}

impl<S: Clone, H> Layer<S> for GuardLayer<H> {
    type Service = GuardStack<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        fn toggle<L: Layer<S>, S>(layer: Option<&L>, inner: S) -> Toggle<L::Service, S> {
            match layer {
                Some(l) => Toggle::On(l.layer(inner)),
                None => Toggle::Off(inner),
            }
        }
        let s = self.per_try.layer(inner);
        let s = toggle(self.bulkhead.as_ref(), s);
        let s = toggle(self.breaker.as_ref(), s);
        #[cfg(feature = "redis")]
        let s = toggle(self.redis.as_ref(), s);
        let s = toggle(self.rate.as_ref(), s);
        let s = toggle(self.admission.as_ref(), s);
        let s = toggle(self.retry.as_ref(), s);
        self.fallback.layer(s)
    }
}
