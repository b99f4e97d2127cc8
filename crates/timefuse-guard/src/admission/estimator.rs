//! [`LatencyEstimator`]: the expected latency of a callee, per route, in atomics.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// No sample yet.
const NO_SAMPLE: u64 = u64::MAX;

/// The statistics of one route: an EWMA of successful latencies (f64 nanoseconds, as bits),
/// the number of samples, and the time of the last probe.
#[derive(Debug)]
pub(crate) struct Route {
    ewma: AtomicU64,
    samples: AtomicU64,
    /// ms since the estimator was made; `u64::MAX` before the first probe.
    last_probe: AtomicU64,
    /// ms since the estimator was made of the last sample.
    last_sample: AtomicU64,
    refused: AtomicU64,
    admitted: AtomicU64,
}

impl Route {
    fn new() -> Route {
        Route {
            ewma: AtomicU64::new(NO_SAMPLE),
            samples: AtomicU64::new(0),
            last_probe: AtomicU64::new(u64::MAX),
            last_sample: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
        }
    }

    /// Adds a successful call's latency, ended `now_ms` after the estimator was made. A
    /// compare-and-swap loop: no sample is lost.
    pub(crate) fn sample(&self, latency: Duration, alpha: f64, now_ms: u64) {
        self.last_sample.store(now_ms, Relaxed);
        let x = latency.as_nanos() as f64;
        let _ = self.ewma.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == NO_SAMPLE {
                x.to_bits()
            } else {
                let old = f64::from_bits(old);
                (old + alpha * (x - old)).to_bits()
            })
        });
        self.samples.fetch_add(1, Relaxed);
    }

    fn expected(&self) -> Option<Duration> {
        match self.ewma.load(Relaxed) {
            NO_SAMPLE => None,
            bits => Some(Duration::from_nanos(f64::from_bits(bits) as u64)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) alpha: f64,
    pub(crate) min_samples: u64,
    pub(crate) probe_interval: Option<Duration>,
    pub(crate) max_routes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.2,
            min_samples: 1,
            probe_interval: Some(Duration::from_secs(1)),
            max_routes: 1024,
        }
    }
}

struct Shared<K> {
    settings: Settings,
    base: Instant,
    /// The one route of an unkeyed estimator, and the overflow route of a keyed one.
    default: Arc<Route>,
    routes: RwLock<HashMap<K, Arc<Route>>>,
}

/// The expected latency of a callee per route: an EWMA of the latencies of recent
/// successful calls, kept in atomics (`f64` bits in an `AtomicU64`) and shared by every clone
/// (and by every service an [`AdmissionLayer`](super::AdmissionLayer) makes).
///
/// Routes are keys of type `K` (`()` for a single route). At most
/// [`max_routes`](LatencyEstimator::max_routes) keys get their own statistics; the
/// others share one overflow route.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::admission::LatencyEstimator;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let estimator = LatencyEstimator::<&str>::new();
/// assert_eq!(estimator.expected(&"ledger"), None); // cold: admits
/// estimator.record(&"ledger", Duration::from_millis(100));
/// estimator.record(&"ledger", Duration::from_millis(200));
/// assert_eq!(estimator.expected(&"ledger"), Some(Duration::from_millis(120))); // α = 0.2
/// assert_eq!(estimator.samples(&"ledger"), 2);
/// # }
/// ```
pub struct LatencyEstimator<K = ()> {
    shared: Arc<Shared<K>>,
}

impl<K> LatencyEstimator<K> {
    /// An empty estimator with the default settings (α = 0.2, 1 sample needed, a probe a
    /// second, 1024 routes).
    ///
    /// ```
    /// let estimator = timefuse_guard::admission::LatencyEstimator::<()>::new();
    /// assert_eq!(estimator.expected(&()), None);
    /// ```
    pub fn new() -> Self {
        LatencyEstimator::with_settings(Settings::default())
    }

    /// Sets the weight of a new sample, `0 < α ≤ 1` (default 0.2; larger follows changes
    /// faster). Configure before use: this returns a fresh, empty estimator.
    ///
    /// # Panics
    ///
    /// If `alpha` is not in `(0, 1]`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let estimator = LatencyEstimator::<()>::new().alpha(0.5);
    /// estimator.record(&(), Duration::from_millis(100));
    /// estimator.record(&(), Duration::from_millis(200));
    /// assert_eq!(estimator.expected(&()), Some(Duration::from_millis(150)));
    /// # }
    /// ```
    #[must_use]
    pub fn alpha(self, alpha: f64) -> Self {
        assert!(alpha > 0.0 && alpha <= 1.0, "alpha must be in (0, 1]");
        self.reconfigure(|s| s.alpha = alpha)
    }

    /// Sets how many successful samples a route needs before its estimate refuses anything
    /// (default 1). Configure before use: this returns a fresh, empty estimator.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let estimator = LatencyEstimator::<()>::new().min_samples(2);
    /// estimator.record(&(), Duration::from_millis(100));
    /// assert_eq!(estimator.expected(&()), None, "still cold");
    /// # }
    /// ```
    #[must_use]
    pub fn min_samples(self, samples: u64) -> Self {
        self.reconfigure(|s| s.min_samples = samples.max(1))
    }

    /// Lets one call per `interval` through despite its estimate on a route that had no
    /// successful sample for `interval` (default one second; `None`: never), so a route whose
    /// callers would all be refused still gets fresh samples and notices when the callee is
    /// fast again. The floor still applies.
    /// Configure before use: this returns a fresh, empty estimator.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// let estimator = LatencyEstimator::<()>::new().probe_interval(Some(Duration::from_secs(5)));
    /// # let _ = estimator;
    /// ```
    #[must_use]
    pub fn probe_interval(self, interval: Option<Duration>) -> Self {
        self.reconfigure(|s| s.probe_interval = interval)
    }

    /// Sets how many routes get statistics of their own (default 1024); later keys share one
    /// overflow route. Configure before use: this returns a fresh, empty estimator.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let estimator = LatencyEstimator::<u32>::new().max_routes(1);
    /// estimator.record(&1, Duration::from_millis(10));
    /// estimator.record(&2, Duration::from_millis(10)); // the overflow route
    /// assert_eq!(estimator.routes(), 1);
    /// assert_eq!(estimator.samples(&3), 1, "3 shares the overflow route with 2");
    /// # }
    /// ```
    #[must_use]
    pub fn max_routes(self, routes: usize) -> Self {
        self.reconfigure(|s| s.max_routes = routes)
    }

    fn reconfigure(self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings;
        f(&mut settings);
        LatencyEstimator::with_settings(settings)
    }

    pub(crate) fn with_settings(settings: Settings) -> Self {
        LatencyEstimator {
            shared: Arc::new(Shared {
                settings,
                base: Instant::now(),
                default: Arc::new(Route::new()),
                routes: RwLock::new(HashMap::new()),
            }),
        }
    }

    pub(crate) fn alpha_value(&self) -> f64 {
        self.shared.settings.alpha
    }

    /// The instant the estimator's clock counts from.
    pub(crate) fn clock_base(&self) -> Instant {
        self.shared.base
    }
}

impl<K: Hash + Eq + Clone> LatencyEstimator<K> {
    /// The statistics of `key`'s route, made on first use (or the overflow route once
    /// `max_routes` are tracked).
    pub(crate) fn route(&self, key: &K) -> Arc<Route> {
        if size_of::<K>() == 0 {
            return Arc::clone(&self.shared.default); // one route: no map
        }
        if let Some(r) = self
            .shared
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Arc::clone(r);
        }
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if routes.len() >= self.shared.settings.max_routes && !routes.contains_key(key) {
            return Arc::clone(&self.shared.default);
        }
        Arc::clone(
            routes
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Route::new())),
        )
    }

    /// The expected latency of `key`'s route: `None` until it has the minimum number of
    /// samples (a cold route admits every call).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let estimator = LatencyEstimator::<()>::new();
    /// estimator.record(&(), Duration::from_millis(30));
    /// assert_eq!(estimator.expected(&()), Some(Duration::from_millis(30)));
    /// # }
    /// ```
    pub fn expected(&self, key: &K) -> Option<Duration> {
        self.expected_of(&self.route(key))
    }

    /// Adds a successful call's latency to `key`'s route.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let estimator = LatencyEstimator::<u8>::new();
    /// estimator.record(&1, Duration::from_millis(5));
    /// assert_eq!(estimator.expected(&2), None, "routes are separate");
    /// # }
    /// ```
    pub fn record(&self, key: &K, latency: Duration) {
        self.route(key)
            .sample(latency, self.shared.settings.alpha, self.now_ms());
    }

    /// The number of samples of `key`'s route.
    ///
    /// ```
    /// let estimator = timefuse_guard::admission::LatencyEstimator::<()>::new();
    /// assert_eq!(estimator.samples(&()), 0);
    /// ```
    pub fn samples(&self, key: &K) -> u64 {
        self.route(key).samples.load(Relaxed)
    }

    /// Calls refused on `key`'s route.
    ///
    /// ```
    /// let estimator = timefuse_guard::admission::LatencyEstimator::<()>::new();
    /// assert_eq!(estimator.refused(&()), 0);
    /// ```
    pub fn refused(&self, key: &K) -> u64 {
        self.route(key).refused.load(Relaxed)
    }

    /// Calls admitted on `key`'s route.
    ///
    /// ```
    /// let estimator = timefuse_guard::admission::LatencyEstimator::<()>::new();
    /// assert_eq!(estimator.admitted(&()), 0);
    /// ```
    pub fn admitted(&self, key: &K) -> u64 {
        self.route(key).admitted.load(Relaxed)
    }

    /// The number of routes with statistics of their own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::admission::LatencyEstimator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let estimator = LatencyEstimator::<&str>::new();
    /// estimator.record(&"a", Duration::ZERO);
    /// estimator.record(&"b", Duration::ZERO);
    /// assert_eq!(estimator.routes(), 2);
    /// # }
    /// ```
    pub fn routes(&self) -> usize {
        if size_of::<K>() == 0 {
            return 1;
        }
        self.shared
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl<K> LatencyEstimator<K> {
    pub(crate) fn expected_of(&self, route: &Route) -> Option<Duration> {
        if route.samples.load(Relaxed) < self.shared.settings.min_samples {
            return None;
        }
        route.expected()
    }

    pub(crate) fn note_admitted(&self, route: &Route) {
        route.admitted.fetch_add(1, Relaxed);
    }

    pub(crate) fn note_refused(&self, route: &Route) {
        route.refused.fetch_add(1, Relaxed);
    }

    /// Milliseconds since the estimator was made.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.shared.base)
                .as_millis(),
        )
        .unwrap_or(u64::MAX - 1)
    }

    /// Claims this route's probe slot if the route is starved — no successful sample for a
    /// `probe_interval` — and the last probe is at least that old: one call per interval then
    /// passes despite the estimate, so a route whose callers are all refused still learns when
    /// the callee is fast again. Routes with admitted traffic never probe.
    pub(crate) fn try_probe(&self, route: &Route) -> bool {
        let Some(interval) = self.shared.settings.probe_interval else {
            return false;
        };
        let interval = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        if now < route.last_sample.load(Relaxed).saturating_add(interval) {
            return false;
        }
        let last = route.last_probe.load(Relaxed);
        if last != u64::MAX && now < last.saturating_add(interval) {
            return false;
        }
        route
            .last_probe
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    }
}

impl<K> Default for LatencyEstimator<K> {
    fn default() -> Self {
        LatencyEstimator::new()
    }
}

impl<K> Clone for LatencyEstimator<K> {
    fn clone(&self) -> Self {
        LatencyEstimator {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for LatencyEstimator<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyEstimator")
            .field("settings", &self.shared.settings)
            .field("default_route", &self.shared.default.expected())
            .finish_non_exhaustive()
    }
}
