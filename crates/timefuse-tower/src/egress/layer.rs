use std::sync::Arc;

use tower_layer::Layer;

use super::{Config, Egress};
use crate::ingress::Protocol;

/// Gives each outgoing call `remaining − reserve` of its request's budget (refusing locally
/// below the floor), writes the budget and identity headers, and ends the call with its context.
///
/// # Examples
///
/// ```
/// use timefuse_tower::EgressLayer;
///
/// // For a tonic channel: `ServiceBuilder::new().layer(EgressLayer::grpc()).service(channel)`.
/// let grpc = EgressLayer::grpc();
/// // For a hyper client calling the "ledger" service: its policy cap is looked up by that name.
/// let http = EgressLayer::http().named("ledger");
/// # let _ = (grpc, http);
/// ```
#[derive(Debug, Clone)]
pub struct EgressLayer {
    pub(super) config: Arc<Config>,
}

impl EgressLayer {
    /// Detects gRPC per request from `content-type`.
    pub fn new() -> Self {
        EgressLayer {
            config: Arc::new(Config {
                protocol: Protocol::Auto,
                name: None,
            }),
        }
    }

    /// For gRPC channels: always writes `grpc-timeout` and fails with `tonic::Status`.
    pub fn grpc() -> Self {
        Self::new().protocol(Protocol::Grpc)
    }

    /// For plain HTTP clients.
    pub fn http() -> Self {
        Self::new().protocol(Protocol::Http)
    }

    /// Fix the protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        Arc::make_mut(&mut self.config).protocol = protocol;
        self
    }

    /// The downstream name used to look up the call's cap in the
    /// [`TimeoutPolicy`](timefuse::budget::TimeoutPolicy). By default: the gRPC service name,
    /// or the URI's host.
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        Arc::make_mut(&mut self.config).name = Some(name.into());
        self
    }
}

impl Default for EgressLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for EgressLayer {
    type Service = Egress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Egress::new(inner, self)
    }
}
