use std::sync::Arc;

use tower_layer::Layer;

use super::{Breaker, BreakerConfig, CircuitBreaker, DefaultClassifier, FailureIf};
use crate::GuardError;

/// Wraps services in a [`CircuitBreaker`] sharing one [`Breaker`]: every service the layer
/// makes, and every clone of those, counts in the same window and sees the same state.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer, CircuitState, SlidingWindow};
/// use timefuse_guard::GuardError;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = CircuitBreakerLayer::new(
///     BreakerConfig::new("ledger").sliding_window(SlidingWindow::CountBased(2)).minimum_calls(2),
/// );
/// let breaker = layer.breaker().clone();
/// let mut a = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|fail: bool| async move { if fail { Err("down") } else { Ok(()) } });
/// let mut b = a.clone();
/// a.ready().await.unwrap().call(true).await.unwrap_err();
/// b.ready().await.unwrap().call(true).await.unwrap_err();
/// assert_eq!(breaker.state(), CircuitState::Open); // two clones, one window
/// let err = a.ready().await.unwrap().call(false).await.unwrap_err();
/// assert!(matches!(err, GuardError::OpenCircuit { .. }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: Arc<Breaker>,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer over a new breaker with `config`.
    ///
    /// # Panics
    ///
    /// If `config` is invalid (see [`BreakerConfig::validate`]).
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer};
    /// let layer = CircuitBreakerLayer::new(BreakerConfig::fifty_percent_over_a_minute("ledger"));
    /// # let _ = layer;
    /// ```
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreakerLayer::from_breaker(Breaker::new(config))
    }

    /// A layer over an existing breaker (to share it with other layers, or with code that
    /// calls [`Breaker::try_acquire`] itself).
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreakerLayer};
    /// let breaker = Breaker::new(BreakerConfig::new("ledger"));
    /// let layer = CircuitBreakerLayer::from_breaker(breaker.clone());
    /// assert!(std::sync::Arc::ptr_eq(layer.breaker(), &breaker));
    /// ```
    pub fn from_breaker(breaker: Arc<Breaker>) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Counts an inner error as a failure only if `predicate` says so (others count as
    /// successes); see [`FailureIf`].
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer};
    /// use timefuse_guard::GuardError;
    /// let layer = CircuitBreakerLayer::new(BreakerConfig::new("x"))
    ///     .failure_if(|e: &GuardError| !e.to_string().contains("not found"));
    /// # let _ = layer;
    /// ```
    pub fn failure_if<F>(self, predicate: F) -> CircuitBreakerLayer<FailureIf<F>>
    where
        F: Fn(&GuardError) -> bool,
    {
        self.classifier(FailureIf::new(predicate))
    }

    /// Classifies results with `classifier` (see [`Classify`](super::Classify)).
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer};
    /// use timefuse_guard::{GuardError, Outcome};
    /// let layer = CircuitBreakerLayer::new(BreakerConfig::new("x")).classifier(
    ///     |res: Result<&u16, &GuardError>| match res {
    ///         Ok(&status) => Some(if status >= 500 { Outcome::Failure } else { Outcome::Success }),
    ///         Err(e) if e.is_refusal() => None,
    ///         Err(_) => Some(Outcome::Failure),
    ///     },
    /// );
    /// # let _ = layer;
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The shared breaker (for metrics, events and manual transitions).
    ///
    /// ```
    /// use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer};
    /// let layer = CircuitBreakerLayer::new(BreakerConfig::new("ledger"));
    /// assert_eq!(layer.breaker().name(), "ledger");
    /// ```
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::with_classifier(inner, Arc::clone(&self.breaker), self.classifier.clone())
    }
}
