//! Client side: give each outgoing call its share of the request's budget, and say so on the
//! wire.
//!
//! For each request the layer takes the [`Context`] from the request's extensions (an
//! explicitly passed context wins) or else the task-local current one, and derives the call's
//! budget with the downstream rule: `min(call cap, remaining − reserve)`. Below the floor the
//! call fails locally with `DEADLINE_EXCEEDED` and nothing is sent, as grpc-go does. Otherwise it
//! writes:
//!
//! | header | value |
//! |---|---|
//! | `grpc-timeout` (gRPC only) | the call's budget |
//! | `x-deadline-ms` | the call's budget |
//! | `x-request-timeout-ms` | the request's original total budget |
//! | `x-upstream-timeout-ms` | time spent on the request so far |
//! | `x-request-id` | the request id |
//! | `traceparent` / `tracestate` | the trace, with a new span id for this call |
//!
//! and ends the call — response head and body — when the call's budget or the request's
//! context ends. Without any context the request passes through untouched.

mod body;
mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tower_service::Service;

use timefuse::budget::BudgetExhausted;
use timefuse::{Cause, Context, TraceContext};

use crate::BoxError;
use crate::headers::{self, format_grpc_timeout, format_millis};
use crate::ingress::{Protocol, WireBudget};

pub use body::EgressBody;
pub use future::ResponseFuture;
pub use layer::EgressLayer;

/// Why an outgoing call did not complete.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EgressError {
    /// The budget left after the reserve was below the floor: nothing was sent.
    BudgetExhausted(BudgetExhausted),
    /// The call's context ended (its budget ran out, or the request was cancelled).
    Ended(Cause),
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressError::BudgetExhausted(e) => write!(f, "call not started: {e}"),
            EgressError::Ended(cause) => write!(f, "call ended: {cause}"),
        }
    }
}

impl std::error::Error for EgressError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EgressError::BudgetExhausted(e) => Some(e),
            EgressError::Ended(c) => Some(c),
        }
    }
}

impl EgressError {
    /// True when the call failed for lack of time (gRPC `DEADLINE_EXCEEDED`).
    pub fn is_deadline(&self) -> bool {
        match self {
            EgressError::BudgetExhausted(_) => true,
            EgressError::Ended(c) => c.is_deadline_exceeded(),
        }
    }

    /// The error boxed for the service's error type: a `tonic::Status` on gRPC calls (so tonic
    /// clients see `DEADLINE_EXCEEDED` / `CANCELLED`), else the `EgressError` itself.
    pub(crate) fn boxed(self, grpc: bool) -> BoxError {
        #[cfg(feature = "grpc")]
        if grpc {
            let code = if self.is_deadline() {
                tonic::Code::DeadlineExceeded
            } else {
                tonic::Code::Cancelled
            };
            return Box::new(tonic::Status::new(code, self.to_string()));
        }
        let _ = grpc;
        Box::new(self)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) protocol: Protocol,
    pub(crate) name: Option<Arc<str>>,
}

/// The service made by [`EgressLayer`].
#[derive(Debug, Clone)]
pub struct Egress<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Egress<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: &EgressLayer) -> Self {
        Egress {
            inner,
            config: Arc::clone(&layer.config),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Egress<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<EgressBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let grpc = self.config.protocol.is_grpc(&req);
        let ctx = req
            .extensions()
            .get::<Context>()
            .cloned()
            .or_else(Context::try_current);
        let Some(ctx) = ctx else {
            return ResponseFuture::passthrough(self.inner.call(req), grpc);
        };
        let name: Arc<str> = match &self.config.name {
            Some(n) => Arc::clone(n),
            None => call_name(&req, grpc).into(),
        };
        let scope = match ctx.downstream(Arc::clone(&name)) {
            Ok(scope) => scope,
            Err(e) => {
                tracing::debug!(call = %name, error = %e, "call refused locally: budget below the floor");
                return ResponseFuture::failed(EgressError::BudgetExhausted(e), grpc);
            }
        };
        write_headers(req.headers_mut(), &ctx, scope.granted(), grpc);
        req.extensions_mut().insert(scope.context().clone());
        ResponseFuture::running(self.inner.call(req), scope, grpc)
    }
}

/// The policy name of a call: the gRPC service (`pkg.Service` of `/pkg.Service/Method`), else
/// the URI's host.
fn call_name<B>(req: &Request<B>, grpc: bool) -> String {
    if grpc
        && let Some(service) = req.uri().path().trim_start_matches('/').split('/').next()
        && !service.is_empty()
    {
        return service.to_owned();
    }
    req.uri().host().unwrap_or("downstream").to_owned()
}

pub(crate) fn write_headers(h: &mut http::HeaderMap, ctx: &Context, budget: Duration, grpc: bool) {
    if grpc {
        h.insert(headers::GRPC_TIMEOUT, format_grpc_timeout(budget));
    }
    h.insert(headers::X_DEADLINE_MS, format_millis(budget));
    let (total, spent) = match ctx.value::<WireBudget>() {
        Some(w) => (w.original_total, w.spent()),
        None => (budget, Duration::ZERO),
    };
    h.insert(headers::X_REQUEST_TIMEOUT_MS, format_millis(total));
    h.insert(headers::X_UPSTREAM_TIMEOUT_MS, format_millis(spent));
    if let Some(id) = ctx.request_id()
        && let Ok(v) = HeaderValue::from_str(id.as_str())
    {
        h.insert(headers::X_REQUEST_ID, v);
    }
    let trace = ctx
        .trace()
        .map_or_else(new_trace, |t| t.with_parent_id(new_span_id()));
    if let Ok(v) = HeaderValue::try_from(trace.to_traceparent()) {
        h.insert(headers::TRACEPARENT, v);
    }
    if let Some(state) = trace
        .tracestate()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        h.insert(headers::TRACESTATE, state);
    }
}

/// A fresh, sampled trace with random ids.
pub(crate) fn new_trace() -> TraceContext {
    TraceContext::new(*uuid::Uuid::new_v4().as_bytes(), new_span_id(), 0x01)
}

fn new_span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0; 8] {
        id[7] = 1; // an all-zero span id is invalid
    }
    id
}
