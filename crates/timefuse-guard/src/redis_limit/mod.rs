//! A distributed GCRA rate limiter on Redis (the `redis` feature): one limit shared by every
//! instance of a service.
//!
//! - [`RedisRateLimiter`]: the GCRA in one Lua script, on the Redis server's clock (so
//!   instances' clocks do not matter), **one round trip per check**: `EVALSHA`, falling back to
//!   `EVAL` (which also caches the script) when Redis answers `NOSCRIPT`.
//! - [`RedisRateLimitLayer`] / [`RedisRateLimit`]: the tower middleware, global or keyed, with
//!   the same budget-bounded wait as the local [`RateLimitLayer`](crate::rate_limit::RateLimitLayer).
//!
//! # When Redis is unreachable
//!
//! A check that cannot reach Redis (connection refused or dropped, no answer within the
//! limiter's timeout) follows the limiter's [`FailMode`]: [`Open`](FailMode::Open) lets the
//! call through, [`Closed`](FailMode::Closed) refuses it with [`GuardError::RateLimited`]. The
//! outage is logged **once** when it starts (`warn`) and once when Redis answers again
//! (`info`), not per call; during it, a reconnect is tried at most every
//! [`reconnect_interval`](RedisRateLimiter::reconnect_interval), and the checks in between do
//! not wait on the network at all. [`RedisStats`] counts the outages and the calls let through
//! or refused because of them.
//!
//! [`GuardError::RateLimited`]: crate::GuardError::RateLimited
//!
//! # Example
//!
//! ```no_run
//! use timefuse_guard::rate_limit::Rate;
//! use timefuse_guard::redis_limit::{FailMode, RedisRateLimitLayer, RedisRateLimiter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(100))?
//!     .prefix("checkout")
//!     .fail_mode(FailMode::Open);
//! let layer = RedisRateLimitLayer::new(limiter);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

pub mod future;
mod layer;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, ServerErrorKind};
use timefuse::Context;
use tokio::time::Instant;
use tower_service::Service;

pub use layer::RedisRateLimitLayer;

use crate::rate_limit::{Global, Rate, RateLimiter, WaitMode};
use crate::{BoxError, GuardError};
use future::ResponseFuture;

/// The GCRA script (`gcra.lua`).
pub const GCRA_SCRIPT: &str = include_str!("gcra.lua");

/// What a [`RedisRateLimiter`] does while Redis is unreachable.
///
/// ```
/// assert_eq!(timefuse_guard::redis_limit::FailMode::default(), timefuse_guard::redis_limit::FailMode::Open);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FailMode {
    /// Let calls through: availability first (the local guards still apply).
    #[default]
    Open,
    /// Refuse calls with `RateLimited`: protection first.
    Closed,
}

/// The answer to one check.
///
/// ```
/// use timefuse_guard::redis_limit::Decision;
/// assert!(Decision::FailedOpen.admits());
/// assert!(!Decision::Limited(std::time::Duration::from_millis(5)).admits());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A permit was taken.
    Allowed,
    /// No permit free: the next one is this far away.
    Limited(Duration),
    /// Redis was unreachable and the limiter fails open: let through.
    FailedOpen,
    /// Redis was unreachable and the limiter fails closed: refuse.
    FailedClosed,
}

impl Decision {
    /// True if the call may go ahead.
    ///
    /// ```
    /// use timefuse_guard::redis_limit::Decision;
    /// assert!(Decision::Allowed.admits() && !Decision::FailedClosed.admits());
    /// ```
    pub fn admits(self) -> bool {
        matches!(self, Decision::Allowed | Decision::FailedOpen)
    }
}

/// Counters of a [`RedisRateLimiter`].
///
/// ```
/// let stats = timefuse_guard::redis_limit::RedisStats::default();
/// assert_eq!(stats.outages, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Outages seen (each logged once).
    pub outages: u64,
    /// Calls let through because Redis was unreachable.
    pub failed_open: u64,
    /// Calls refused because Redis was unreachable.
    pub failed_closed: u64,
    /// Times Redis answered `NOSCRIPT` and the script was sent with `EVAL`.
    pub script_loads: u64,
}

/// A GCRA rate limiter whose state lives in Redis, shared by every instance and every clone.
///
/// See the [module docs](self). The connection is made on the first check (a
/// `MultiplexedConnection`, shared by every concurrent check) and remade after an outage.
///
/// ```
/// use timefuse_guard::rate_limit::Rate;
/// use timefuse_guard::redis_limit::RedisRateLimiter;
/// use timefuse_guard::redis_limit::FailMode;
/// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(100))?
///     .prefix("checkout")
///     .fail_mode(FailMode::Closed)
///     .timeout(std::time::Duration::from_millis(20))
///     .named("checkout");
/// assert_eq!(limiter.redis_key("tenant:acme"), "checkout:tenant:acme");
/// # Ok::<(), redis::RedisError>(())
/// ```
pub struct RedisRateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    script_hash: String,
    rate: Rate,
    prefix: String,
    fail_mode: FailMode,
    timeout: Duration,
    reconnect_interval: Duration,
    name: Option<Arc<str>>,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Serializes connection attempts (the slow path only): concurrent checks wait for one
    /// attempt instead of racing, or failing, on their own.
    connecting: tokio::sync::Mutex<()>,
    next_connect: Mutex<Option<Instant>>,
    down: AtomicBool,
    outages: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
    script_loads: AtomicU64,
}

enum Unreachable {
    Redis(RedisError),
    Timeout,
    Waiting,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreachable::Redis(e) => write!(f, "{e}"),
            Unreachable::Timeout => f.write_str("no answer within the timeout"),
            Unreachable::Waiting => f.write_str("waiting to reconnect"),
        }
    }
}

impl RedisRateLimiter {
    /// A limiter of `rate` on the Redis at `url` (`redis://host:port/db`), failing open, with
    /// the key prefix `timefuse:rl`, a 50 ms timeout and a reconnect every 250 ms at most
    /// during an outage. Nothing is connected until the first check.
    ///
    /// # Errors
    ///
    /// The `RedisError` for a URL that does not parse.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// assert!(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10)).is_ok());
    /// assert!(RedisRateLimiter::new("not a url", Rate::per_second(10)).is_err());
    /// ```
    pub fn new(url: &str, rate: Rate) -> Result<RedisRateLimiter, RedisError> {
        let client = redis::Client::open(url)?;
        Ok(RedisRateLimiter {
            shared: Arc::new(Shared {
                client,
                script_hash: redis::Script::new(GCRA_SCRIPT).get_hash().to_owned(),
                rate,
                prefix: "timefuse:rl".to_owned(),
                fail_mode: FailMode::Open,
                timeout: Duration::from_millis(50),
                reconnect_interval: Duration::from_millis(250),
                name: None,
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                next_connect: Mutex::new(None),
                down: AtomicBool::new(false),
                outages: AtomicU64::new(0),
                failed_open: AtomicU64::new(0),
                failed_closed: AtomicU64::new(0),
                script_loads: AtomicU64::new(0),
            }),
        })
    }

    fn configure(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::get_mut(&mut self.shared).expect("configure a RedisRateLimiter before cloning it"));
        self
    }

    /// Sets the key prefix: keys are `{prefix}:{key}`.
    ///
    /// # Panics
    ///
    /// If the limiter has been cloned (configure it first); so do the other setters.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.prefix("orders");
    /// assert_eq!(limiter.redis_key("global"), "orders:global");
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.configure(|s| s.prefix = prefix)
    }

    /// Sets what happens while Redis is unreachable.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::FailMode;
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.fail_mode(FailMode::Closed);
    /// assert_eq!(limiter.get_fail_mode(), FailMode::Closed);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn fail_mode(self, mode: FailMode) -> Self {
        self.configure(|s| s.fail_mode = mode)
    }

    /// Sets the longest wait for a connection or an answer; past it, Redis counts as
    /// unreachable for that check.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.timeout(std::time::Duration::from_millis(10));
    /// # let _ = limiter;
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.configure(|s| s.timeout = timeout)
    }

    /// Sets how often a reconnect is tried during an outage.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use std::time::Duration;
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.reconnect_every(Duration::from_secs(1));
    /// assert_eq!(limiter.reconnect_interval(), Duration::from_secs(1));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn reconnect_every(self, interval: Duration) -> Self {
        self.configure(|s| s.reconnect_interval = interval)
    }

    /// Names the limiter (in refusals and logs).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.named("search");
    /// # let _ = limiter;
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn named(self, name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        self.configure(|s| s.name = Some(name))
    }

    /// The rate.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// assert_eq!(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.rate(), Rate::per_second(10));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn rate(&self) -> Rate {
        self.shared.rate
    }

    /// The fail mode.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::FailMode;
    /// assert_eq!(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.get_fail_mode(), FailMode::Open);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn get_fail_mode(&self) -> FailMode {
        self.shared.fail_mode
    }

    /// How often a reconnect is tried during an outage (and the `retry_after` of a refusal
    /// while failing closed).
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// assert_eq!(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.reconnect_interval(), std::time::Duration::from_millis(250));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn reconnect_interval(&self) -> Duration {
        self.shared.reconnect_interval
    }

    /// True while Redis is unreachable.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// assert!(!RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.is_down(), "not until a check fails");
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::Acquire)
    }

    /// Counters so far.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// assert_eq!(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.stats().outages, 0);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn stats(&self) -> RedisStats {
        let s = &self.shared;
        RedisStats {
            outages: s.outages.load(Ordering::Relaxed),
            failed_open: s.failed_open.load(Ordering::Relaxed),
            failed_closed: s.failed_closed.load(Ordering::Relaxed),
            script_loads: s.script_loads.load(Ordering::Relaxed),
        }
    }

    /// The Redis key of `key`.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// assert_eq!(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.redis_key("global"), "timefuse:rl:global");
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}:{key}", self.shared.prefix)
    }

    /// Takes a permit for `key` if one is free: one round trip to Redis.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that dropping it takes no permit locally; a request already sent may
    /// still take one in Redis.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redis::RedisError> {
    /// let prefix = format!("doc:{}", std::process::id());
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?.prefix(prefix);
    /// // Allowed; or, without a Redis to ask, let through (the default fails open).
    /// assert!(limiter.check("global").await.admits());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check(&self, key: &str) -> Decision {
        match self.try_check(key).await {
            Ok(decision) => {
                if self.shared.down.swap(false, Ordering::AcqRel) {
                    tracing::info!(limiter = ?self.shared.name, "redis rate limiter reachable again");
                }
                decision
            }
            Err(why) => self.outage(&why),
        }
    }

    async fn try_check(&self, key: &str) -> Result<Decision, Unreachable> {
        let mut conn = self.connection().await?;
        let s = &self.shared;
        let interval = s.rate.interval().as_micros().max(1);
        let tolerance = interval * u128::from(s.rate.burst() - 1);
        let key = self.redis_key(key);
        let eval = async {
            let reply: Result<(i64, i64), RedisError> = redis::cmd("EVALSHA")
                .arg(&s.script_hash)
                .arg(1)
                .arg(&key)
                .arg(interval as u64)
                .arg(tolerance as u64)
                .query_async(&mut conn)
                .await;
            match reply {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    s.script_loads.fetch_add(1, Ordering::Relaxed);
                    redis::cmd("EVAL")
                        .arg(GCRA_SCRIPT)
                        .arg(1)
                        .arg(&key)
                        .arg(interval as u64)
                        .arg(tolerance as u64)
                        .query_async(&mut conn)
                        .await
                }
                other => other,
            }
        };
        let reply = match tokio::time::timeout(s.timeout, eval).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.drop_connection();
                return Err(Unreachable::Redis(e));
            }
            Err(_) => {
                self.drop_connection();
                return Err(Unreachable::Timeout);
            }
        };
        Ok(match reply {
            (1, _) => Decision::Allowed,
            (_, us) => Decision::Limited(Duration::from_micros(us.max(1) as u64)),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Unreachable> {
        let s = &self.shared;
        if let Some(conn) = s
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(conn);
        }
        let _connecting = s.connecting.lock().await;
        if let Some(conn) = s
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(conn); // made while we waited
        }
        {
            let mut next = s
                .next_connect
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if next.is_some_and(|at| now < at) {
                return Err(Unreachable::Waiting); // a recent attempt failed: fail fast
            }
            *next = Some(now + s.reconnect_interval);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.timeout))
            .set_response_timeout(Some(s.timeout));
        let connect = s
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = match tokio::time::timeout(s.timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Unreachable::Redis(e)),
            Err(_) => return Err(Unreachable::Timeout),
        };
        *s.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        *s.next_connect
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Ok(conn)
    }

    fn drop_connection(&self) {
        self.shared
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn outage(&self, why: &Unreachable) -> Decision {
        let s = &self.shared;
        if !s.down.swap(true, Ordering::AcqRel) {
            s.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limiter = ?s.name,
                error = %why,
                fail_mode = ?s.fail_mode,
                "redis rate limiter unreachable: failing {} until it answers again",
                match s.fail_mode {
                    FailMode::Open => "open",
                    FailMode::Closed => "closed",
                },
            );
        }
        match s.fail_mode {
            FailMode::Open => {
                s.failed_open.fetch_add(1, Ordering::Relaxed);
                Decision::FailedOpen
            }
            FailMode::Closed => {
                s.failed_closed.fetch_add(1, Ordering::Relaxed);
                Decision::FailedClosed
            }
        }
    }

    /// Checks `key`, waiting for a permit within `budget`.
    ///
    /// # Errors
    ///
    /// [`GuardError::RateLimited`] when the next permit is later than `budget`, or Redis is
    /// unreachable and the limiter fails closed; [`GuardError::Ended`] if `ctx` ends first.
    pub(crate) async fn acquire(
        &self,
        key: &str,
        ctx: Option<&Context>,
        budget: Duration,
    ) -> Result<(), GuardError> {
        let until = Instant::now() + budget;
        loop {
            match self.check(key).await {
                Decision::Allowed | Decision::FailedOpen => return Ok(()),
                Decision::FailedClosed => {
                    return Err(GuardError::RateLimited {
                        retry_after: self.shared.reconnect_interval,
                        name: self.shared.name.clone(),
                    });
                }
                Decision::Limited(next) => {
                    if Instant::now() + next > until {
                        return Err(GuardError::RateLimited {
                            retry_after: next,
                            name: self.shared.name.clone(),
                        });
                    }
                    match ctx {
                        Some(ctx) => {
                            if let Err(cause) = ctx.run(tokio::time::sleep(next)).await {
                                return Err(GuardError::ended(cause));
                            }
                        }
                        None => tokio::time::sleep(next).await,
                    }
                }
            }
        }
    }
}

impl Clone for RedisRateLimiter {
    fn clone(&self) -> Self {
        RedisRateLimiter {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("name", &self.shared.name)
            .field("rate", &self.shared.rate)
            .field("prefix", &self.shared.prefix)
            .field("fail_mode", &self.shared.fail_mode)
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

/// The Redis key (after the prefix) a request counts against: [`Global`] (`"global"`) or any
/// `Fn(&Req) -> String`.
///
/// ```
/// use timefuse_guard::rate_limit::Global;
/// use timefuse_guard::redis_limit::RedisKey;
/// assert_eq!(RedisKey::<u8>::redis_key(&Global, &1), "global");
/// let by_tenant = |t: &String| format!("tenant:{t}");
/// assert_eq!(by_tenant.redis_key(&"acme".to_owned()), "tenant:acme");
/// ```
pub trait RedisKey<Req> {
    /// The key of `req`.
    fn redis_key(&self, req: &Req) -> String;
}

impl<Req> RedisKey<Req> for Global {
    fn redis_key(&self, _: &Req) -> String {
        "global".to_owned()
    }
}

impl<Req> RedisKey<Req> for crate::rate_limit::ByContext {
    fn redis_key(&self, _: &Req) -> String {
        self.current_key().to_string()
    }
}

impl<Req, F> RedisKey<Req> for F
where
    F: Fn(&Req) -> String,
{
    fn redis_key(&self, req: &Req) -> String {
        self(req)
    }
}

/// The service made by [`RedisRateLimitLayer`]. The inner service must be `Clone`: the call is
/// made from the response future, after Redis answers.
///
/// ```
/// use timefuse_guard::rate_limit::Rate;
/// use timefuse_guard::redis_limit::RedisRateLimiter;
/// use timefuse_guard::redis_limit::RedisRateLimitLayer;
/// use tower::Layer;
/// let svc = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert!(!svc.limiter().is_down());
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Debug)]
pub struct RedisRateLimit<S, F = Global> {
    inner: S,
    limiter: RedisRateLimiter,
    key_fn: F,
    wait: WaitMode,
}

impl<S: Clone, F: Clone> Clone for RedisRateLimit<S, F> {
    fn clone(&self) -> Self {
        RedisRateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key_fn: self.key_fn.clone(),
            wait: self.wait,
        }
    }
}

impl<S, F> RedisRateLimit<S, F> {
    /// The limiter.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// use tower::Layer;
    /// let svc = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?).layer(());
    /// assert_eq!(svc.limiter().rate(), Rate::per_second(10));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn limiter(&self) -> &RedisRateLimiter {
        &self.limiter
    }

    /// The wrapped service.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// use tower::Layer;
    /// let svc = RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?).layer(7_u8);
    /// assert_eq!(*svc.get_ref(), 7);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::RedisRateLimiter;
    /// use timefuse_guard::redis_limit::RedisRateLimitLayer;
    /// use tower::Layer;
    /// assert_eq!(RedisRateLimitLayer::new(RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(10))?).layer(7_u8).into_inner(), 7);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, Req> Service<Req> for RedisRateLimit<S, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: RedisKey<Req>,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key_fn.redis_key(&req);
        let ctx = Context::try_current();
        let budget = match self.wait {
            WaitMode::NoWait => Duration::ZERO,
            WaitMode::UpTo(max) => RateLimiter::<()>::wait_budget(ctx.as_ref(), max),
        };
        let limiter = self.limiter.clone();
        let admit = Box::pin(async move { limiter.acquire(&key, ctx.as_ref(), budget).await });
        ResponseFuture::new(admit, self.inner.clone(), req)
    }
}
