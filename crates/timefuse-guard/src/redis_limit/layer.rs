use std::time::Duration;

use tower_layer::Layer;

use super::{RedisRateLimit, RedisRateLimiter};
use crate::rate_limit::{Global, WaitMode};

/// Limits calls with a [`RedisRateLimiter`], globally or per key, waiting for a permit only
/// within the budget (as [`RateLimitLayer`](crate::rate_limit::RateLimitLayer) does).
///
/// ```no_run
/// use timefuse_guard::rate_limit::Rate;
/// use timefuse_guard::redis_limit::{RedisRateLimitLayer, RedisRateLimiter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?;
/// let per_tenant = RedisRateLimitLayer::keyed(limiter, |tenant: &String| tenant.clone());
/// # let _ = per_tenant;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RedisRateLimitLayer<F = Global> {
    limiter: RedisRateLimiter,
    key_fn: F,
    wait: WaitMode,
}

impl RedisRateLimitLayer<Global> {
    /// One limit for every call.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// let layer = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?);
    /// assert_eq!(layer.limiter().rate(), Rate::per_second(10));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn new(limiter: RedisRateLimiter) -> Self {
        RedisRateLimitLayer {
            limiter,
            key_fn: Global,
            wait: WaitMode::default(),
        }
    }
}

impl<F> RedisRateLimitLayer<F> {
    /// One limit per key, the key of each request given by `key_fn`.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// let per_route = RedisRateLimitLayer::keyed(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?, |path: &String| path.clone());
    /// # let _ = per_route;
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn keyed(limiter: RedisRateLimiter, key_fn: F) -> Self {
        RedisRateLimitLayer {
            limiter,
            key_fn,
            wait: WaitMode::default(),
        }
    }

    /// Never wait for a permit.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// let layer = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?).no_wait();
    /// # let _ = layer;
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn no_wait(mut self) -> Self {
        self.wait = WaitMode::NoWait;
        self
    }

    /// Wait up to `max` for a permit (and never past the budget).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// let layer = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?).max_wait(std::time::Duration::from_millis(50));
    /// # let _ = layer;
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.wait = WaitMode::UpTo(max);
        self
    }

    /// The limiter.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// let layer = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.named("api"));
    /// assert!(!layer.limiter().is_down());
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn limiter(&self) -> &RedisRateLimiter {
        &self.limiter
    }
}

impl<S, F: Clone> Layer<S> for RedisRateLimitLayer<F> {
    type Service = RedisRateLimit<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit {
            inner,
            limiter: self.limiter.clone(),
            key_fn: self.key_fn.clone(),
            wait: self.wait,
        }
    }
}
