use std::time::Duration;

use tower_layer::Layer;

use super::{Global, Rate, RateLimit, RateLimiter, WaitMode};

/// Limits the rate of calls with a GCRA limiter shared by every service it makes and every
/// clone of those: globally, or per key (tenant, route, peer).
///
/// A call that finds no free permit waits for one only if the wait fits in its budget: at most
/// the layer's [`WaitMode`], and never past the request's remaining time less the policy floor.
/// Otherwise it is refused at once with [`GuardError::RateLimited`] and its `retry_after`.
///
/// [`GuardError::RateLimited`]: crate::GuardError::RateLimited
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimitLayer, RateLimiter};
/// use timefuse_guard::GuardError;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // tokio's clock, so that the paused test clock drives the limiter (exact numbers below).
/// let limiter = RateLimiter::direct_with_clock(Rate::per_second(1), LimiterClock::tokio());
/// let layer = RateLimitLayer::with_limiter(limiter).no_wait();
/// let mut a = ServiceBuilder::new()
///     .layer(layer.clone())
///     .service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) });
/// let mut b = a.clone(); // axum clones services per connection: the limit is still shared
/// assert_eq!(a.ready().await.unwrap().call(1).await.unwrap(), 1);
/// let err = b.ready().await.unwrap().call(2).await.unwrap_err();
/// assert!(matches!(err, GuardError::RateLimited { .. }));
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimitLayer<K = (), F = Global> {
    limiter: RateLimiter<K>,
    key_fn: F,
    wait: WaitMode,
}

impl RateLimitLayer<(), Global> {
    /// A global limit of `rate`, waiting up to [`WaitMode::default`] (500 ms, within the
    /// budget) for a permit.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    /// let layer = RateLimitLayer::new(Rate::per_second(100));
    /// # let _ = layer;
    /// ```
    pub fn new(rate: Rate) -> Self {
        RateLimitLayer::with_limiter(RateLimiter::direct(rate))
    }

    /// A global limit drawing on `limiter` (share one limiter between layers or with code
    /// that calls [`RateLimiter::check`] itself).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer, RateLimiter};
    /// let limiter = RateLimiter::direct(Rate::per_second(100));
    /// let layer = RateLimitLayer::with_limiter(limiter.clone());
    /// # let _ = layer;
    /// ```
    pub fn with_limiter(limiter: RateLimiter<()>) -> Self {
        RateLimitLayer {
            limiter,
            key_fn: Global,
            wait: WaitMode::default(),
        }
    }
}

impl<K, F> RateLimitLayer<K, F>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A limit of `rate` per key, the key of each request given by `key_fn`: a closure
    /// `Fn(&Req) -> K` (implement [`KeyFn`](super::KeyFn) on a type and use
    /// [`RateLimit::new`](super::RateLimit::new) for other key functions).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    ///
    /// struct Call { tenant: String }
    /// let per_tenant = RateLimitLayer::keyed(Rate::per_second(10), |c: &Call| c.tenant.clone());
    /// let svc = tower::Layer::layer(&per_tenant, tower::service_fn(|c: Call| async move {
    ///     Ok::<_, std::io::Error>(c.tenant)
    /// }));
    /// # let _ = svc;
    /// ```
    pub fn keyed<Req>(rate: Rate, key_fn: F) -> Self
    where
        F: Fn(&Req) -> K,
    {
        RateLimitLayer::keyed_with_limiter(RateLimiter::keyed(rate), key_fn)
    }
}

impl<K, F> RateLimitLayer<K, F> {
    /// A limit per key drawing on `limiter`.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer, RateLimiter};
    /// use std::net::IpAddr;
    /// let limiter = RateLimiter::<IpAddr>::keyed(Rate::per_second(10));
    /// let layer = RateLimitLayer::keyed_with_limiter(limiter, |peer: &IpAddr| *peer);
    /// # let _ = layer;
    /// ```
    pub fn keyed_with_limiter<Req>(limiter: RateLimiter<K>, key_fn: F) -> Self
    where
        F: Fn(&Req) -> K,
    {
        RateLimitLayer {
            limiter,
            key_fn,
            wait: WaitMode::default(),
        }
    }
}

impl<K, F> RateLimitLayer<K, F> {
    /// A limit drawing on `limiter`, keyed by any [`KeyFn`](super::KeyFn) (such as
    /// [`ByContext`](super::ByContext)).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{ByContext, ContextKey, Rate, RateLimitLayer, RateLimiter};
    /// let limiter = RateLimiter::<ContextKey>::keyed(Rate::per_second(10));
    /// let layer = RateLimitLayer::with_key_fn(limiter, ByContext::Tenant);
    /// # let _ = layer;
    /// ```
    pub fn with_key_fn(limiter: RateLimiter<K>, key_fn: F) -> Self {
        RateLimitLayer {
            limiter,
            key_fn,
            wait: WaitMode::default(),
        }
    }

    /// Never wait for a permit: refuse at once when none is free.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer, WaitMode};
    /// let layer = RateLimitLayer::new(Rate::per_second(100)).no_wait();
    /// assert_eq!(layer.wait_mode(), WaitMode::NoWait);
    /// ```
    #[must_use]
    pub fn no_wait(self) -> Self {
        self.wait(WaitMode::NoWait)
    }

    /// Wait up to `max` for a permit (and never past the budget).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer, WaitMode};
    /// let layer = RateLimitLayer::new(Rate::per_second(100)).max_wait(Duration::from_millis(50));
    /// assert_eq!(layer.wait_mode(), WaitMode::UpTo(Duration::from_millis(50)));
    /// ```
    #[must_use]
    pub fn max_wait(self, max: Duration) -> Self {
        self.wait(WaitMode::UpTo(max))
    }

    /// Sets the wait mode.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer, WaitMode};
    /// let layer = RateLimitLayer::new(Rate::per_second(100)).wait(WaitMode::NoWait);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn wait(mut self, wait: WaitMode) -> Self {
        self.wait = wait;
        self
    }

    /// The wait mode.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer, WaitMode};
    /// assert_eq!(RateLimitLayer::new(Rate::per_second(1)).wait_mode(), WaitMode::default());
    /// ```
    pub fn wait_mode(&self) -> WaitMode {
        self.wait
    }

    /// The shared limiter.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    /// let layer = RateLimitLayer::new(Rate::per_second(3));
    /// assert_eq!(layer.limiter().rate(), Rate::per_second(3));
    /// ```
    pub fn limiter(&self) -> &RateLimiter<K> {
        &self.limiter
    }
}

impl<K, F: Clone> Clone for RateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            key_fn: self.key_fn.clone(),
            wait: self.wait,
        }
    }
}

impl<S, K, F: Clone> Layer<S> for RateLimitLayer<K, F> {
    type Service = RateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone(), self.key_fn.clone(), self.wait)
    }
}
