//! [`RateLimiter`]: the shared GCRA state, global or keyed.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use timefuse::Context;

use super::{LimiterClock, Rate};

type Direct = governor::RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Nanos>>;
type Keyed<K> = governor::RateLimiter<K, DashMapStateStore<K>, LimiterClock, NoOpMiddleware<Nanos>>;

enum State<K> {
    Direct(Direct),
    Keyed(Box<dyn KeyedStore<K>>),
}

/// The keyed governor limiter behind a trait object, so that `K: Hash + Eq + Clone` is needed
/// only where a keyed limiter is made, not on every type that holds one.
trait KeyedStore<K>: Send + Sync {
    fn check(&self, key: &K) -> Result<(), Duration>;
    fn len(&self) -> usize;
    fn retain_recent(&self);
}

impl<K: Hash + Eq + Clone + Send + Sync> KeyedStore<K> for Keyed<K> {
    #[inline]
    fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_key(key)
            .map_err(|nu| nu.wait_time_from(self.clock().now()))
    }

    fn len(&self) -> usize {
        governor::RateLimiter::len(self)
    }

    fn retain_recent(&self) {
        governor::RateLimiter::retain_recent(self);
        self.shrink_to_fit();
    }
}

struct Shared<K> {
    state: State<K>,
    rate: Rate,
    refused: AtomicU64,
    name: Option<Arc<str>>,
    tokio_clock: bool,
}

/// A GCRA rate limiter shared by every clone: one global limit (`RateLimiter<()>`, from
/// [`direct`](RateLimiter::direct)) or one limit per key (from [`keyed`](RateLimiter::keyed):
/// per tenant, route or peer).
///
/// Cloning is cheap (one `Arc`) and every clone draws on the same permits, so a limiter
/// cloned into each of axum's per-connection services still holds the configured rate in
/// total (the failure of tower's per-instance `RateLimit`, tower#794 / axum#2634).
///
/// Built on [`governor`]: the global limiter is one `AtomicU64` updated by compare-and-swap, the
/// keyed one a `DashMap` of those. It reads a [`LimiterClock`]: governor's fast `quanta` clock by
/// default, or tokio's clock ([`direct_with_clock`](RateLimiter::direct_with_clock)) to follow
/// tokio's paused test clock, as the example does.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimiter::direct_with_clock(Rate::per_second(2), LimiterClock::tokio());
/// let clone = limiter.clone();
/// assert!(limiter.check(&()).is_ok());
/// assert!(clone.check(&()).is_ok());
/// // The burst of two is spent, across both handles: the next permit is in 500 ms.
/// assert_eq!(limiter.check(&()), Err(Duration::from_millis(500)));
/// tokio::time::advance(Duration::from_millis(500)).await;
/// assert!(clone.check(&()).is_ok());
/// # }
/// ```
pub struct RateLimiter<K = ()> {
    shared: Arc<Shared<K>>,
}

impl RateLimiter<()> {
    /// One limit for every call.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// let limiter = RateLimiter::direct(Rate::per_second(100));
    /// assert!(!limiter.is_keyed());
    /// ```
    pub fn direct(rate: Rate) -> RateLimiter<()> {
        RateLimiter::direct_any(rate, LimiterClock::default())
    }

    /// One limit for every call, reading `clock`.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimiter};
    /// let limiter = RateLimiter::direct_with_clock(Rate::per_second(100), LimiterClock::tokio());
    /// assert!(limiter.clock_is_tokio());
    /// ```
    pub fn direct_with_clock(rate: Rate, clock: LimiterClock) -> RateLimiter<()> {
        RateLimiter::direct_any(rate, clock)
    }
}

impl<K> RateLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// One limit per key: each tenant, route or peer gets `rate` of its own.
    ///
    /// Keys are kept until [`retain_recent`](RateLimiter::retain_recent) drops those whose
    /// limit is back to full; call it now and then if keys come and go (peers, say).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::keyed_with_clock(Rate::per_second(1), LimiterClock::tokio());
    /// assert!(limiter.check(&"acme").is_ok());
    /// assert!(limiter.check(&"acme").is_err());
    /// assert!(limiter.check(&"globex").is_ok(), "each tenant has its own limit");
    /// assert_eq!(limiter.len(), 2);
    /// # }
    /// ```
    pub fn keyed(rate: Rate) -> RateLimiter<K> {
        RateLimiter::keyed_with_clock(rate, LimiterClock::default())
    }

    /// One limit per key, reading `clock`.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimiter};
    /// let limiter = RateLimiter::<u32>::keyed_with_clock(Rate::per_second(5), LimiterClock::tokio());
    /// assert!(limiter.is_keyed() && limiter.clock_is_tokio());
    /// ```
    pub fn keyed_with_clock(rate: Rate, clock: LimiterClock) -> RateLimiter<K> {
        let tokio_clock = clock.is_tokio();
        let keyed: Keyed<K> = Keyed::dashmap_with_clock(rate.quota(), clock);
        RateLimiter::from_state(State::Keyed(Box::new(keyed)), rate, tokio_clock)
    }
}

impl<K> RateLimiter<K> {
    /// One limit for every call whatever its key (the fast direct limiter, for a key type
    /// that may also be keyed elsewhere).
    pub(crate) fn direct_any(rate: Rate, clock: LimiterClock) -> RateLimiter<K> {
        let tokio_clock = clock.is_tokio();
        let state = State::Direct(Direct::direct_with_clock(rate.quota(), clock));
        RateLimiter::from_state(state, rate, tokio_clock)
    }

    fn from_state(state: State<K>, rate: Rate, tokio_clock: bool) -> RateLimiter<K> {
        RateLimiter {
            shared: Arc::new(Shared {
                state,
                rate,
                refused: AtomicU64::new(0),
                name: None,
                tokio_clock,
            }),
        }
    }

    /// True if the limiter reads tokio's clock.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// assert!(!RateLimiter::direct(Rate::per_second(5)).clock_is_tokio(), "quanta by default");
    /// ```
    pub fn clock_is_tokio(&self) -> bool {
        self.shared.tokio_clock
    }

    /// Names the limiter: the name appears in its [`GuardError::RateLimited`] refusals and logs.
    ///
    /// [`GuardError::RateLimited`]: crate::GuardError::RateLimited
    ///
    /// # Panics
    ///
    /// If the limiter has been cloned: name it first.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// let limiter = RateLimiter::direct(Rate::per_second(1)).named("checkout");
    /// assert_eq!(limiter.name(), Some("checkout"));
    /// ```
    #[must_use]
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("name a RateLimiter before cloning it")
            .name = Some(name.into());
        self
    }

    /// The limiter's name, if it has one.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// assert_eq!(RateLimiter::direct(Rate::per_second(1)).name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    pub(crate) fn name_arc(&self) -> Option<Arc<str>> {
        self.shared.name.clone()
    }

    /// The rate.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// let limiter = RateLimiter::direct(Rate::per_second(5));
    /// assert_eq!(limiter.rate(), Rate::per_second(5));
    /// ```
    pub fn rate(&self) -> Rate {
        self.shared.rate
    }

    /// True for a limiter with one limit per key.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// assert!(RateLimiter::<u32>::keyed(Rate::per_second(5)).is_keyed());
    /// ```
    pub fn is_keyed(&self) -> bool {
        matches!(self.shared.state, State::Keyed(_))
    }

    /// Takes one permit for `key` (ignored by a [`direct`](RateLimiter::direct) limiter) if
    /// one is free now.
    ///
    /// # Errors
    ///
    /// The time until the next permit for `key`, if none is free now. Nothing is taken.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let rate = Rate::per_second(10).with_burst(1);
    /// let limiter = RateLimiter::direct_with_clock(rate, timefuse_guard::rate_limit::LimiterClock::tokio());
    /// assert!(limiter.check(&()).is_ok());
    /// assert_eq!(limiter.check(&()), Err(std::time::Duration::from_millis(100)));
    /// # }
    /// ```
    #[inline]
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let result = match &self.shared.state {
            State::Direct(l) => l.check().map_err(|nu| nu.wait_time_from(l.clock().now())),
            State::Keyed(l) => l.check(key),
        };
        result.map_err(|wait| {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            // A permit due "now" (rounding) is still a wait of at least 1 ns.
            wait.max(Duration::from_nanos(1))
        })
    }

    /// Checks, by every clone, that found no free permit (a caller that waited counts once per
    /// check that found none).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::direct(Rate::per_second(1));
    /// let _ = limiter.check(&());
    /// let _ = limiter.check(&());
    /// assert_eq!(limiter.refused(), 1);
    /// # }
    /// ```
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Number of keys held (zero for a direct limiter).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// assert_eq!(RateLimiter::direct(Rate::per_second(1)).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        match &self.shared.state {
            State::Direct(_) => 0,
            State::Keyed(l) => l.len(),
        }
    }

    /// True if no key is held.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    /// assert!(RateLimiter::<String>::keyed(Rate::per_second(1)).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the keys whose limit is back to full (they would be recreated identical), so a
    /// keyed limiter's memory follows its active keys. A no-op for a direct limiter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::keyed_with_clock(Rate::per_second(1), LimiterClock::tokio());
    /// let _ = limiter.check(&"peer-1");
    /// tokio::time::advance(Duration::from_secs(2)).await;
    /// limiter.retain_recent();
    /// assert!(limiter.is_empty());
    /// # }
    /// ```
    pub fn retain_recent(&self) {
        if let State::Keyed(l) = &self.shared.state {
            l.retain_recent();
        }
    }

    /// How long a caller on `ctx` may wait for a permit: at most `max_wait`, and never past
    /// `remaining − floor` of a context with a deadline, so a permit is never granted with no
    /// time left to use it. Zero once the context is done.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    /// use timefuse_guard::rate_limit::{Rate, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms, floor 50 ms
    /// let max = Duration::from_secs(5);
    /// assert_eq!(RateLimiter::<()>::wait_budget(Some(&ctx), max), Duration::from_millis(750));
    /// assert_eq!(RateLimiter::<()>::wait_budget(None, max), max);
    /// # }
    /// ```
    pub fn wait_budget(ctx: Option<&Context>, max_wait: Duration) -> Duration {
        match ctx.and_then(|c| c.remaining().map(|left| (c, left))) {
            None => max_wait,
            Some((ctx, left)) => max_wait.min(left.saturating_sub(ctx.policy().floor())),
        }
    }
}

impl<K> Clone for RateLimiter<K> {
    fn clone(&self) -> Self {
        RateLimiter {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.name)
            .field("rate", &self.shared.rate)
            .field("keyed", &matches!(self.shared.state, State::Keyed(_)))
            .field("refused", &self.shared.refused.load(Ordering::Relaxed))
            .finish()
    }
}
