use std::sync::Arc;
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use tower_layer::Layer;

use super::{Config, Ingress, Protocol};

/// Builds each request's [`Context`](timefuse::Context) from the budget, request id and trace
/// headers that arrive, and answers `DEADLINE_EXCEEDED` / 504 when the budget ends first.
///
/// Install it outermost, so time spent queued in inner layers counts against the budget.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_tower::{IngressLayer, Protocol};
///
/// // An internal gRPC service: 800 ms when the caller sends no budget.
/// let grpc = IngressLayer::grpc();
/// // A public HTTP edge that ignores what clients claim and refuses < 100 ms.
/// let edge = IngressLayer::http_edge()
///     .trust_incoming(false)
///     .min_admit(Duration::from_millis(100));
/// # let _ = (grpc, edge);
/// ```
#[derive(Debug, Clone)]
pub struct IngressLayer {
    pub(super) config: Arc<Config>,
}

impl IngressLayer {
    /// For internal gRPC services: fallback 800 ms, maximum 60 s, protocol detected per request.
    pub fn grpc() -> Self {
        Self::with(Config {
            fallback: Duration::from_millis(800),
            max: Duration::from_secs(60),
            min_admit: Duration::ZERO,
            trust_incoming: true,
            trust_envoy: false,
            protocol: Protocol::Auto,
            policy: Arc::new(TimeoutPolicy::internal_grpc()),
        })
    }

    /// For an HTTP edge: fallback and maximum 30 s.
    pub fn http_edge() -> Self {
        Self::with(Config {
            fallback: Duration::from_secs(30),
            max: Duration::from_secs(30),
            min_admit: Duration::ZERO,
            trust_incoming: true,
            trust_envoy: false,
            protocol: Protocol::Auto,
            policy: Arc::new(TimeoutPolicy::http_edge()),
        })
    }

    fn with(config: Config) -> Self {
        IngressLayer {
            config: Arc::new(config),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The budget when no budget header arrives (or incoming budgets are not trusted).
    pub fn fallback(self, budget: Duration) -> Self {
        self.edit(|c| c.fallback = budget)
    }

    /// The largest budget granted, whatever arrives.
    pub fn max(self, budget: Duration) -> Self {
        self.edit(|c| c.max = budget)
    }

    /// Refuse at once a request that arrives with less budget than this.
    pub fn min_admit(self, budget: Duration) -> Self {
        self.edit(|c| c.min_admit = budget)
    }

    /// Whether to read incoming budget headers at all (an edge may ignore them).
    pub fn trust_incoming(self, trust: bool) -> Self {
        self.edit(|c| c.trust_incoming = trust)
    }

    /// Whether to read Envoy's `x-envoy-expected-rq-timeout-ms`.
    pub fn trust_envoy(self, trust: bool) -> Self {
        self.edit(|c| c.trust_envoy = trust)
    }

    /// Fix the protocol instead of detecting it from `content-type`.
    pub fn protocol(self, protocol: Protocol) -> Self {
        self.edit(|c| c.protocol = protocol)
    }

    /// The timeout policy handlers' stages and outgoing calls derive their budgets from.
    pub fn policy(self, policy: Arc<TimeoutPolicy>) -> Self {
        self.edit(|c| c.policy = policy)
    }
}

impl<S> Layer<S> for IngressLayer {
    type Service = Ingress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Ingress::new(inner, self)
    }
}
