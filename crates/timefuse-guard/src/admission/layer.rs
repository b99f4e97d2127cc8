use std::sync::Arc;

use tower_layer::Layer;

use super::{Admission, LatencyEstimator, SingleRoute};

/// Refuses calls whose budget is below the callee's expected latency (or the policy floor);
/// see the [module docs](super) for the rule.
///
/// Every service the layer makes, and every clone of those, shares one
/// [`LatencyEstimator`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::TimeoutPolicy;
/// use timefuse_guard::GuardError;
/// use timefuse_guard::admission::AdmissionLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut svc = ServiceBuilder::new()
///     .layer(AdmissionLayer::new())
///     .service_fn(|()| async {
///         tokio::time::sleep(Duration::from_millis(300)).await;
///         Ok::<_, std::convert::Infallible>("done")
///     });
/// // A call with time to spare teaches the layer that the callee takes 300 ms.
/// let (ctx, _g) = Context::request(TimeoutPolicy::http_edge());
/// ctx.scope(async { svc.ready().await.unwrap().call(()).await.unwrap() }).await;
///
/// // 800 ms − 150 ms reserve − 400 ms spent = 250 ms < 300 ms: refused without calling.
/// let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
/// tokio::time::advance(Duration::from_millis(400)).await;
/// let err = ctx.scope(async { svc.ready().await.unwrap().call(()).await }).await.unwrap_err();
/// assert!(matches!(err, GuardError::RefusedForBudget { .. }));
/// # }
/// ```
#[derive(Debug)]
pub struct AdmissionLayer<K = (), F = SingleRoute> {
    estimator: LatencyEstimator<K>,
    route_fn: F,
    downstream: Option<Arc<str>>,
}

impl AdmissionLayer {
    /// One route, a new estimator with the default settings.
    ///
    /// ```
    /// let layer = timefuse_guard::admission::AdmissionLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        AdmissionLayer::with_estimator(LatencyEstimator::new())
    }

    /// One route, on `estimator` (configured, or shared with other layers).
    ///
    /// ```
    /// use timefuse_guard::admission::{AdmissionLayer, LatencyEstimator};
    /// let layer = AdmissionLayer::with_estimator(LatencyEstimator::new().min_samples(10));
    /// # let _ = layer;
    /// ```
    pub fn with_estimator(estimator: LatencyEstimator<()>) -> Self {
        AdmissionLayer {
            estimator,
            route_fn: SingleRoute,
            downstream: None,
        }
    }
}

impl Default for AdmissionLayer {
    fn default() -> Self {
        AdmissionLayer::new()
    }
}

impl<K, F> AdmissionLayer<K, F> {
    /// One estimate per route, the route of each request given by `route_fn`, a closure
    /// `Fn(&Req) -> K`, on a new estimator.
    ///
    /// ```
    /// use timefuse_guard::admission::AdmissionLayer;
    /// struct Call { method: &'static str }
    /// let layer: AdmissionLayer<&str, _> = AdmissionLayer::routed(|c: &Call| c.method);
    /// # let _ = layer;
    /// ```
    pub fn routed(route_fn: F) -> Self {
        AdmissionLayer::routed_with_estimator(LatencyEstimator::new(), route_fn)
    }

    /// One estimate per route on `estimator`.
    ///
    /// ```
    /// use timefuse_guard::admission::{AdmissionLayer, LatencyEstimator};
    /// let layer = AdmissionLayer::routed_with_estimator(
    ///     LatencyEstimator::<String>::new().alpha(0.1),
    ///     |path: &String| path.clone(),
    /// );
    /// # let _ = layer;
    /// ```
    pub fn routed_with_estimator(estimator: LatencyEstimator<K>, route_fn: F) -> Self {
        AdmissionLayer {
            estimator,
            route_fn,
            downstream: None,
        }
    }

    /// Uses the policy's downstream cap for `name` when computing a call's budget (default:
    /// the policy's default downstream cap).
    ///
    /// ```
    /// let layer = timefuse_guard::admission::AdmissionLayer::new().downstream("ledger");
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn downstream(mut self, name: impl Into<Arc<str>>) -> Self {
        self.downstream = Some(name.into());
        self
    }

    /// The shared estimator.
    ///
    /// ```
    /// let layer = timefuse_guard::admission::AdmissionLayer::new();
    /// assert_eq!(layer.estimator().expected(&()), None);
    /// ```
    pub fn estimator(&self) -> &LatencyEstimator<K> {
        &self.estimator
    }
}

impl<K, F: Clone> Clone for AdmissionLayer<K, F> {
    fn clone(&self) -> Self {
        AdmissionLayer {
            estimator: self.estimator.clone(),
            route_fn: self.route_fn.clone(),
            downstream: self.downstream.clone(),
        }
    }
}

impl<S, K, F: Clone> Layer<S> for AdmissionLayer<K, F> {
    type Service = Admission<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission::new(
            inner,
            self.estimator.clone(),
            self.route_fn.clone(),
            self.downstream.clone(),
        )
    }
}
