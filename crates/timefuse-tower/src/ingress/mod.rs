//! Server side: build each request's [`Context`] from what arrives on the wire.
//!
//! # Decisions on what arrives
//!
//! | input | decision |
//! |---|---|
//! | no budget header | the configured fallback (800 ms for gRPC, 30 s at an HTTP edge) |
//! | several budget headers, or one header several times | the smallest valid value |
//! | a budget above the maximum | clamped to the maximum |
//! | a budget below the admission minimum, or zero | refused at once: `DEADLINE_EXCEEDED` / 504; the handler never runs |
//! | malformed `grpc-timeout` on a gRPC call | refused with `INTERNAL`, as grpc-go does |
//! | malformed `grpc-timeout` on plain HTTP, or a malformed `x-*-ms` header | that header is ignored (logged at debug); the others still count |
//! | untrusted incoming budgets (`trust_incoming(false)`) | all ignored; the fallback applies |
//! | missing or invalid `x-request-id` (empty, > 128 bytes, bad charset) | replaced by a fresh UUID v7 (logged at debug) |
//! | missing or invalid `traceparent` | a new trace is started |
//!
//! The request id (validated or generated) is written back into the request headers, so a
//! handler reading headers sees the same id, and echoed on every response.

mod body;
mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{HeaderValue, Request};
use tokio::time::Instant;
use tower_service::Service;

use timefuse::budget::TimeoutPolicy;
use timefuse::{Context, RequestId, TraceContext};

use crate::headers::{self, BudgetSource, X_REQUEST_ID};

pub use body::IngressBody;
pub use future::ResponseFuture;
pub use layer::IngressLayer;

/// How much earlier than `grpc-timeout` says a gRPC request's context ends: one tick of tokio's
/// 1 ms timer wheel, so this layer answers `DEADLINE_EXCEEDED` before tonic's own server timer
/// (which sits outside every layer) answers `CANCELLED`.
pub const GRPC_TIMER_MARGIN: Duration = Duration::from_millis(1);

/// Which protocol a service speaks, for the shape of refusals and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Decide per request: gRPC when `content-type` starts with `application/grpc`.
    #[default]
    Auto,
    /// Always gRPC.
    Grpc,
    /// Always plain HTTP.
    Http,
}

impl Protocol {
    pub(crate) fn is_grpc<B>(self, req: &Request<B>) -> bool {
        match self {
            Protocol::Grpc => true,
            Protocol::Http => false,
            Protocol::Auto => req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
        }
    }
}

/// The request's budget as it arrived, carried in the [`Context`] so outgoing calls can write
/// `x-request-timeout-ms` (the original total) and `x-upstream-timeout-ms` (time spent so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireBudget {
    /// When this hop received the request.
    pub arrival: Instant,
    /// The budget this hop granted the request (after precedence, clamping and fallback).
    pub granted: Duration,
    /// The request's original total budget, as sent by the first hop.
    pub original_total: Duration,
    /// Time spent before this hop, as reported by the caller.
    pub upstream_spent: Duration,
}

impl WireBudget {
    /// Time spent on the request so far: upstream plus since arrival here.
    pub fn spent(&self) -> Duration {
        self.upstream_spent + self.arrival.elapsed()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) fallback: Duration,
    pub(crate) max: Duration,
    pub(crate) min_admit: Duration,
    pub(crate) trust_incoming: bool,
    pub(crate) trust_envoy: bool,
    pub(crate) protocol: Protocol,
    pub(crate) policy: Arc<TimeoutPolicy>,
}

/// The service made by [`IngressLayer`].
#[derive(Debug, Clone)]
pub struct Ingress<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Ingress<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: &IngressLayer) -> Self {
        Ingress {
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

/// What the ingress decided for one request, before the handler runs.
enum Admission {
    Run {
        ctx: Context,
        guard: timefuse::CancelGuard,
    },
    Refuse {
        code: u16,
        status: http::StatusCode,
        error: &'static str,
    },
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Ingress<S>
where
    S: Service<Request<ReqB>, Response = http::Response<ResB>>,
    ResB: http_body::Body,
{
    type Response = http::Response<IngressBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        // Time queued before the handler counts against the budget: start the clock first.
        let arrival = Instant::now();
        let config = &*self.config;
        let grpc = config.protocol.is_grpc(&req);
        let (request_id, id_header) = request_id(&mut req);
        match admit(config, &req, grpc, arrival, &request_id) {
            Admission::Refuse {
                code,
                status,
                error,
            } => ResponseFuture::refused(grpc, code, status, error, id_header),
            Admission::Run { ctx, guard } => {
                req.extensions_mut().insert(ctx.clone());
                // Servers below this layer that enforce grpc-timeout themselves would report
                // CANCELLED; this layer enforces it and reports DEADLINE_EXCEEDED. (tonic's own
                // `Server` reads the header outside every layer: see GRPC_TIMER_MARGIN.)
                req.headers_mut().remove(headers::GRPC_TIMEOUT);
                let fut = ctx.sync_scope(|| self.inner.call(req));
                let scoped = ctx.scope(fut);
                ResponseFuture::running(scoped, ctx, guard, id_header, grpc)
            }
        }
    }
}

/// The request's id and the header value that echoes it: the incoming `x-request-id` when it
/// is valid (its header value is reused as is), else a new UUID v7, also set on the request.
fn request_id<B>(req: &mut Request<B>) -> (RequestId, HeaderValue) {
    if let Some(v) = req.headers().get(X_REQUEST_ID) {
        match v.to_str().map(RequestId::new) {
            Ok(Ok(id)) => return (id, v.clone()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, len = v.len(), "x-request-id refused; generating one")
            }
            Err(_) => {
                tracing::debug!(
                    len = v.len(),
                    "x-request-id is not visible ASCII; generating one"
                )
            }
        }
    }
    let id = RequestId::new(&uuid::Uuid::now_v7().hyphenated().to_string())
        .expect("a UUID is a valid request id");
    let value =
        HeaderValue::from_str(id.as_str()).expect("valid request ids are valid header values");
    req.headers_mut().insert(X_REQUEST_ID, value.clone());
    (id, value)
}

fn trace_context<B>(req: &Request<B>) -> TraceContext {
    let h = req.headers();
    if let Some(tp) = h.get(headers::TRACEPARENT).and_then(|v| v.to_str().ok()) {
        let state = h.get(headers::TRACESTATE).and_then(|v| v.to_str().ok());
        match TraceContext::parse(tp, state) {
            Ok(tc) => return tc,
            Err(e) => tracing::debug!(error = %e, "traceparent refused; starting a new trace"),
        }
    }
    crate::egress::new_trace()
}

fn admit<B>(
    config: &Config,
    req: &Request<B>,
    grpc: bool,
    arrival: Instant,
    id: &RequestId,
) -> Admission {
    let incoming = headers::read_budget(req.headers(), config.trust_envoy);
    if grpc
        && config.trust_incoming
        && let Some(e) = &incoming.bad_grpc_timeout
    {
        tracing::debug!(error = %e, request_id = %id, "malformed grpc-timeout; refusing with INTERNAL");
        return Admission::Refuse {
            code: 13,
            status: http::StatusCode::BAD_REQUEST,
            error: "malformed_grpc_timeout",
        };
    }
    for (name, e) in &incoming.ignored {
        tracing::debug!(header = %name, error = %e, request_id = %id, "malformed budget header ignored");
    }
    let (budget, upstream_spent, original_total) = match incoming.budget {
        Some((b, source)) if config.trust_incoming => (
            match source {
                // tonic's `Server` starts its own timer from grpc-timeout, outside every layer,
                // and answers CANCELLED when it fires. Ending a tick earlier makes this layer's
                // DEADLINE_EXCEEDED the answer (measured: 1 in ~6 000 calls lost the race with
                // no margin).
                BudgetSource::GrpcTimeout if grpc => b.saturating_sub(GRPC_TIMER_MARGIN),
                _ => b,
            }
            .min(config.max),
            incoming.upstream_spent.unwrap_or_default(),
            incoming.original_total.unwrap_or(b),
        ),
        _ => (
            config.fallback.min(config.max),
            Duration::ZERO,
            config.fallback.min(config.max),
        ),
    };
    if budget.is_zero() || budget < config.min_admit {
        tracing::debug!(?budget, min = ?config.min_admit, request_id = %id, "refused: budget below the admission minimum");
        return Admission::Refuse {
            code: 4,
            status: http::StatusCode::GATEWAY_TIMEOUT,
            error: "deadline_exceeded",
        };
    }
    let wire = WireBudget {
        arrival,
        granted: budget,
        original_total,
        upstream_spent,
    };
    let (ctx, guard) = Context::background()
        .with_value(wire)
        .with_request_id(id.clone())
        .with_trace(trace_context(req))
        .with_request_deadline(Arc::clone(&config.policy), Some(arrival + budget));
    Admission::Run { ctx, guard }
}
