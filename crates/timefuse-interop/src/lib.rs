//! gRPC interop harness for `timefuse-tower`.
//!
//! - [`pb`]: the `grpc.testing` messages and `TestService` client and server, generated at
//!   build time from `proto/grpc/testing/*.proto` (wire-compatible with the gRPC interop
//!   suite) by protox and tonic-prost-build: no `protoc` needed.
//! - [`InteropService`]: `TestService` as the interop spec describes it, each handler running
//!   under the request's [`timefuse::Context`] and recording in a [`CallLog`] the deadline it
//!   saw, its request id and how its context ended.
//! - [`serve`]: the service behind [`timefuse_tower::IngressLayer::grpc`] on a listener; the
//!   `interop-server` binary does the same and prints the log as JSON lines.
//!
//! The tests in `tests/` run third-party gRPC peers (Python `grpcio`) against it, and a
//! `timefuse_tower::EgressLayer` client against a Python server.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let log = timefuse_interop::CallLog::new();
//! tokio::spawn(timefuse_interop::serve(listener, log.clone()));
//! // ... call it, then inspect `log.records()`.
//! # Ok(()) }
//! ```

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

pub mod echo;
mod log;
mod service;

pub use echo::EchoMetadataLayer;
pub use log::{CallLog, CallRecord, cause_name};
pub use service::{InteropService, ResponseStream, SLEEP_MS_KEY};

/// The `grpc.testing` protos, generated at build time.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("grpc.testing");
}

/// Serves [`InteropService`] on `listener` behind `IngressLayer::grpc()` (outermost) and the
/// metadata echo, recording calls in `log`, until the listener fails.
///
/// # Errors
///
/// The transport's error, if the server fails.
pub async fn serve(listener: TcpListener, log: CallLog) -> Result<(), tonic::transport::Error> {
    serve_with_shutdown(listener, log, std::future::pending()).await
}

/// As [`serve`], stopping gracefully when `shutdown` completes.
///
/// # Errors
///
/// The transport's error, if the server fails.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    log: CallLog,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // Small frames must not wait for Nagle: the tests measure budgets in milliseconds.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    Server::builder()
        .layer(timefuse_tower::IngressLayer::grpc())
        .layer(EchoMetadataLayer)
        .add_service(pb::test_service_server::TestServiceServer::new(
            InteropService::new(log),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
