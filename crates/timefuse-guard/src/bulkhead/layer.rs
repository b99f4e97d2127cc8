use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::{Bulkhead, Compartment};

/// Limits concurrent calls with one [`Compartment`] shared by every service the layer makes
/// and every clone of those; a call waits for a permit only within its budget.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::TimeoutPolicy;
/// use timefuse_guard::GuardError;
/// use timefuse_guard::bulkhead::BulkheadLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut svc = ServiceBuilder::new().layer(BulkheadLayer::new(1)).service_fn(|()| async {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     Ok::<_, std::convert::Infallible>(())
/// });
/// let busy = tokio::spawn({
///     let mut svc = svc.clone();
///     async move { svc.ready().await.unwrap().call(()).await }
/// });
/// tokio::task::yield_now().await; // the first call holds the only permit for 1 s
///
/// // 800 ms budget, 50 ms floor: waits 750 ms, then gives up.
/// let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
/// let err = ctx.scope(async { svc.ready().await.unwrap().call(()).await }).await.unwrap_err();
/// assert!(matches!(err, GuardError::BulkheadFull { max_concurrent: 1, waited, .. }
///     if waited == Duration::from_millis(750)));
/// busy.await.unwrap().unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    compartment: Arc<Compartment>,
}

impl BulkheadLayer {
    /// At most `max_concurrent` calls at once, waiting within the budget only.
    ///
    /// # Panics
    ///
    /// If `max_concurrent` is zero (see [`Compartment::new`]).
    ///
    /// ```
    /// let layer = timefuse_guard::bulkhead::BulkheadLayer::new(25);
    /// assert_eq!(layer.compartment().max_concurrent(), 25);
    /// ```
    pub fn new(max_concurrent: usize) -> Self {
        BulkheadLayer::with_compartment(Arc::new(Compartment::new(max_concurrent)))
    }

    /// Shares `compartment` (with other layers, or with code calling
    /// [`Compartment::acquire`] itself).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timefuse_guard::bulkhead::{BulkheadLayer, Compartment};
    /// let shared = Arc::new(Compartment::new(10));
    /// let a = BulkheadLayer::with_compartment(shared.clone());
    /// let b = BulkheadLayer::with_compartment(shared);
    /// assert!(Arc::ptr_eq(a.compartment(), b.compartment()));
    /// ```
    pub fn with_compartment(compartment: Arc<Compartment>) -> Self {
        BulkheadLayer { compartment }
    }

    /// At most `max_concurrent` calls at once, each waiting at most `max_wait` (and never
    /// past its budget); `Duration::ZERO` never waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::bulkhead::BulkheadLayer;
    /// let layer = BulkheadLayer::with_max_wait(4, Duration::ZERO);
    /// assert_eq!(layer.compartment().max_wait(), Some(Duration::ZERO));
    /// ```
    pub fn with_max_wait(max_concurrent: usize, max_wait: Duration) -> Self {
        BulkheadLayer::with_compartment(Arc::new(
            Compartment::new(max_concurrent).with_max_wait(Some(max_wait)),
        ))
    }

    /// The shared compartment.
    ///
    /// ```
    /// let layer = timefuse_guard::bulkhead::BulkheadLayer::new(3);
    /// assert_eq!(layer.compartment().available(), 3);
    /// ```
    pub fn compartment(&self) -> &Arc<Compartment> {
        &self.compartment
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, Arc::clone(&self.compartment))
    }
}
