//! [`FallbackHook`] and the ready-made hooks: [`from_fn`], [`default_response`], [`StaleCache`].

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Why;

/// Produces a degraded response for a request the guards refused (or that failed, or that had
/// too little time), from what was kept of the request and why.
///
/// Before the call, [`key`](FallbackHook::key) keeps what the fallback will need of the request
/// (a cache key, a route, nothing); the request itself goes to the service. On a successful
/// response [`on_success`](FallbackHook::on_success) sees it (a cache remembers it); on a
/// refusal [`fallback`](FallbackHook::fallback) may answer instead: `None` lets the error
/// through.
///
/// Ready-made: [`from_fn`] (two closures), [`default_response`] (one closure, no key),
/// [`StaleCache`] (the last good response per key, while fresh enough).
///
/// # Examples
///
/// ```
/// use timefuse_guard::fallback::{FallbackHook, Why};
///
/// /// Price quotes: when the pricing service is refused, answer "price unavailable" for the SKU.
/// struct Unavailable;
///
/// impl FallbackHook<String, String> for Unavailable {
///     type Key = String;
///     fn key(&self, sku: &String) -> String {
///         sku.clone()
///     }
///     fn fallback(&self, sku: String, _why: &Why<'_>) -> Option<String> {
///         Some(format!("{sku}: price unavailable"))
///     }
/// }
/// # let _ = Unavailable;
/// ```
pub trait FallbackHook<Req, Res> {
    /// What is kept of the request for the fallback.
    type Key;

    /// Keeps what the fallback needs of `req`, before `req` goes to the service.
    fn key(&self, req: &Req) -> Self::Key;

    /// A degraded response for the request `key` came from, or `None` to let the error through.
    fn fallback(&self, key: Self::Key, why: &Why<'_>) -> Option<Res>;

    /// Sees each successful response (a cache keeps it). Does nothing by default.
    fn on_success(&self, key: &Self::Key, response: &Res) {
        let _ = (key, response);
    }
}

/// A hook from two closures: `key: Fn(&Req) -> K` and `fallback: Fn(K, &Why) -> Option<Res>`.
///
/// ```
/// use timefuse_guard::fallback::{self, FallbackHook, Why};
///
/// let hook = fallback::from_fn(|id: &u64| *id, |id, _why: &Why<'_>| Some(format!("cached #{id}")));
/// let key = hook.key(&7);
/// assert_eq!(hook.fallback(key, &Why::up_front()), Some("cached #7".to_owned()));
/// ```
pub fn from_fn<KF, FF>(key: KF, fallback: FF) -> FnHook<KF, FF> {
    FnHook { key, fallback }
}

/// A hook that ignores the request: `fallback: Fn(&Why) -> Option<Res>` (a default response).
///
/// ```
/// use timefuse_guard::fallback::{self, FallbackHook, Why};
///
/// let hook = fallback::default_response(|_why: &Why<'_>| Some(0_u32));
/// assert_eq!(FallbackHook::<&str, u32>::fallback(&hook, (), &Why::up_front()), Some(0));
/// ```
pub fn default_response<FF>(fallback: FF) -> DefaultResponse<FF> {
    DefaultResponse { fallback }
}

/// The hook made by [`from_fn`].
///
/// ```
/// use timefuse_guard::fallback::{self, FallbackHook, Why};
/// let hook = fallback::from_fn(|q: &String| q.len(), |n, _: &Why<'_>| Some(n));
/// assert_eq!(hook.fallback(hook.key(&"abc".to_owned()), &Why::up_front()), Some(3));
/// ```
#[derive(Clone, Copy)]
pub struct FnHook<KF, FF> {
    key: KF,
    fallback: FF,
}

impl<KF, FF> fmt::Debug for FnHook<KF, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHook").finish_non_exhaustive()
    }
}

impl<Req, Res, K, KF, FF> FallbackHook<Req, Res> for FnHook<KF, FF>
where
    KF: Fn(&Req) -> K,
    FF: Fn(K, &Why<'_>) -> Option<Res>,
{
    type Key = K;

    fn key(&self, req: &Req) -> K {
        (self.key)(req)
    }

    fn fallback(&self, key: K, why: &Why<'_>) -> Option<Res> {
        (self.fallback)(key, why)
    }
}

/// The hook made by [`default_response`].
///
/// ```
/// use timefuse_guard::fallback::{self, FallbackHook, Why};
/// let hook = fallback::default_response(|_: &Why<'_>| Some("default"));
/// assert_eq!(FallbackHook::<(), &str>::fallback(&hook, (), &Why::up_front()), Some("default"));
/// ```
#[derive(Clone, Copy)]
pub struct DefaultResponse<FF> {
    fallback: FF,
}

impl<FF> fmt::Debug for DefaultResponse<FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultResponse").finish_non_exhaustive()
    }
}

impl<Req, Res, FF> FallbackHook<Req, Res> for DefaultResponse<FF>
where
    FF: Fn(&Why<'_>) -> Option<Res>,
{
    type Key = ();

    #[inline]
    fn key(&self, _: &Req) {}

    fn fallback(&self, (): (), why: &Why<'_>) -> Option<Res> {
        (self.fallback)(why)
    }
}

/// The last good response per key, served (cloned) as the fallback while it is at most
/// `max_age` old: Hystrix's "stale value from a local cache". Clones share the cache.
///
/// The cache holds one response per key seen, up to `capacity` keys (a full cache stops
/// remembering new keys until [`clear`](StaleCache::clear)); a `std::sync::Mutex` guards it,
/// taken once per successful response and per fallback.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::fallback::{FallbackHook, StaleCache, Why};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let cache = StaleCache::new(|user: &u64| *user, Duration::from_secs(60));
/// cache.on_success(&7, &"profile of 7".to_owned());
/// assert_eq!(cache.fallback(7, &Why::up_front()), Some("profile of 7".to_owned()));
/// assert_eq!(cache.fallback(8, &Why::up_front()), None, "nothing cached for 8");
/// tokio::time::advance(Duration::from_secs(61)).await;
/// assert_eq!(cache.fallback(7, &Why::up_front()), None, "too stale");
/// # }
/// ```
pub struct StaleCache<K, Res, KF> {
    key: KF,
    max_age: Duration,
    capacity: usize,
    entries: Arc<Mutex<HashMap<K, (Instant, Res)>>>,
}

impl<K, Res, KF> StaleCache<K, Res, KF> {
    /// A cache keyed by `key`, serving responses at most `max_age` old, of up to 10 000 keys.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::fallback::StaleCache;
    /// let cache = StaleCache::<u64, String, _>::new(|user: &u64| *user, Duration::from_secs(30));
    /// assert!(cache.is_empty());
    /// ```
    pub fn new(key: KF, max_age: Duration) -> Self {
        StaleCache {
            key,
            max_age,
            capacity: 10_000,
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Holds at most `capacity` keys.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::fallback::StaleCache;
    /// let cache = StaleCache::<u64, String, _>::new(|k: &u64| *k, Duration::from_secs(1)).capacity(100);
    /// # let _ = cache;
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Forgets every cached response.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::fallback::StaleCache;
    /// let cache = StaleCache::<u64, String, _>::new(|k: &u64| *k, Duration::from_secs(1));
    /// cache.clear();
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Keys held.
    ///
    /// ```
    /// use timefuse_guard::fallback::{FallbackHook, StaleCache};
    /// let cache = StaleCache::new(|k: &u8| *k, std::time::Duration::from_secs(1));
    /// FallbackHook::<u8, &str>::on_success(&cache, &1, &"one");
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True if nothing is cached.
    ///
    /// ```
    /// use timefuse_guard::fallback::StaleCache;
    /// assert!(StaleCache::<u8, u8, _>::new(|k: &u8| *k, std::time::Duration::from_secs(1)).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, Res, KF: Clone> Clone for StaleCache<K, Res, KF> {
    fn clone(&self) -> Self {
        StaleCache {
            key: self.key.clone(),
            max_age: self.max_age,
            capacity: self.capacity,
            entries: Arc::clone(&self.entries),
        }
    }
}

impl<K, Res, KF> fmt::Debug for StaleCache<K, Res, KF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCache")
            .field("max_age", &self.max_age)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, K, KF> FallbackHook<Req, Res> for StaleCache<K, Res, KF>
where
    KF: Fn(&Req) -> K,
    K: Hash + Eq + Clone,
    Res: Clone,
{
    type Key = K;

    fn key(&self, req: &Req) -> K {
        (self.key)(req)
    }

    fn fallback(&self, key: K, _why: &Why<'_>) -> Option<Res> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, res) = entries.get(&key)?;
        (at.elapsed() <= self.max_age).then(|| res.clone())
    }

    fn on_success(&self, key: &K, response: &Res) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() < self.capacity || entries.contains_key(key) {
            entries.insert(key.clone(), (Instant::now(), response.clone()));
        }
    }
}
