use std::sync::Arc;

use tower_layer::Layer;

use super::{OnErrors, Retry, RetryBudget, RetryPolicy, RetryStats, Shared};

/// Retries failed calls under a [`RetryBudget`], and only when the request's remaining budget
/// covers another attempt. See the [module docs](super).
///
/// Every service made by one layer (and every clone of those) shares the budget, the attempt
/// latency estimate and the [`RetryStats`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use timefuse_guard::retry::{Backoff, RetryLayer, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let calls = Arc::new(AtomicU32::new(0));
/// let flaky = {
///     let calls = calls.clone();
///     tower::service_fn(move |x: u32| {
///         let n = calls.fetch_add(1, Ordering::SeqCst);
///         async move { if n == 0 { Err("connection reset") } else { Ok(x) } }
///     })
/// };
/// let layer = RetryLayer::new(RetryPolicy::default().backoff(Backoff::None));
/// let mut svc = ServiceBuilder::new().layer(layer.clone()).service(flaky);
/// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// assert_eq!(layer.stats().retries, 1);
/// # }
/// ```
#[derive(Debug)]
pub struct RetryLayer<C = OnErrors> {
    shared: Arc<Shared<C>>,
}

impl<C> RetryLayer<C> {
    /// Retries with `policy` under the default budget (20 % of requests plus 10 per second,
    /// over 10 s).
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// let layer = RetryLayer::new(RetryPolicy::default());
    /// assert_eq!(layer.budget().ratio(), 0.2);
    /// ```
    pub fn new(policy: RetryPolicy<C>) -> Self {
        RetryLayer::with_budget(policy, RetryBudget::default())
    }

    /// Retries with `policy` under `budget` (share one budget between layers to bound their
    /// retries together).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::retry::{RetryBudget, RetryLayer, RetryPolicy};
    /// let budget = RetryBudget::new(Duration::from_secs(10), 5, 0.1);
    /// let layer = RetryLayer::with_budget(RetryPolicy::default(), budget.clone());
    /// assert_eq!(layer.budget().min_per_sec(), 5);
    /// ```
    pub fn with_budget(policy: RetryPolicy<C>, budget: RetryBudget) -> Self {
        RetryLayer {
            shared: Arc::new(Shared::new(policy, budget)),
        }
    }

    /// The retry budget.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// assert_eq!(RetryLayer::new(RetryPolicy::default()).budget().min_per_sec(), 10);
    /// ```
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// The policy.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// assert_eq!(RetryLayer::new(RetryPolicy::default().max_attempts(2)).policy().attempts(), 2);
    /// ```
    pub fn policy(&self) -> &RetryPolicy<C> {
        &self.shared.policy
    }

    /// Counters so far, for every service of this layer.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// assert_eq!(RetryLayer::new(RetryPolicy::default()).stats().retries, 0);
    /// ```
    pub fn stats(&self) -> RetryStats {
        self.shared.stats()
    }
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Clone, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            instance: Arc::new(super::Instance {
                shared: Arc::clone(&self.shared),
                template: std::sync::Mutex::new(inner.clone()),
            }),
            inner,
        }
    }
}
