//! Tower layers that carry a request's deadline budget, cancel signal and identity across the
//! wire, for HTTP (axum, hyper, reqwest) and gRPC (tonic).
//!
//! - [`IngressLayer`] (servers): reads `grpc-timeout`, `x-deadline-ms`, `x-request-timeout-ms`,
//!   `x-upstream-timeout-ms` (and, if trusted, Envoy's `x-envoy-expected-rq-timeout-ms`), takes
//!   the smallest, clamps it, falls back to a default when none arrives, validates or generates
//!   `x-request-id`, parses `traceparent`, and runs the handler under a
//!   [`timefuse::Context`] that ends at the deadline — and with cause
//!   [`ClientGone`](timefuse::Cause::ClientGone) when the caller goes away. An expired budget
//!   answers gRPC `DEADLINE_EXCEEDED` (never `CANCELLED`) or HTTP 504.
//! - [`EgressLayer`] (clients): takes the context from the request's extensions or the
//!   task-local current one, grants the call `remaining − reserve` (refusing locally below the
//!   floor, sending nothing), writes the headers, and ends the call when the context ends.
//!
//! The header table, precedence and the bad-input decisions are in `docs/wire.md`.
//!
//! ```no_run
//! use axum::{Extension, Router, routing::get};
//! use timefuse::Context;
//! use timefuse_tower::IngressLayer;
//!
//! async fn handler(Extension(ctx): Extension<Context>) -> String {
//!     format!("{:?} left", ctx.remaining())
//! }
//!
//! # async fn run() {
//! let app = Router::new().route("/", get(handler)).layer(IngressLayer::http_edge());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

pub mod egress;
pub mod headers;
pub mod ingress;
mod outcome;
#[cfg(feature = "reqwest")]
pub mod reqwest_ext;

pub use egress::{EgressError, EgressLayer};
pub use ingress::{IngressLayer, Protocol, WireBudget};
pub use outcome::{grpc_code_for, http_status_for};

/// The boxed error type of the layers, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
