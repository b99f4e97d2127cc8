//! Leak governance for timefuse: find the task or resource that outlived its request.
//!
//! | tool | Go / JVM analog | what it is |
//! |---|---|---|
//! | [`LeakGuard`], [`verify_no_leaks`], [`#[timefuse_leak::test]`](macro@test) | goleak's `VerifyNone` | a test fails if a task it spawned, or a resource it acquired, is still alive at its end |
//! | [`Tracked`], [`ResourceScope`] | HikariCP's `leakDetectionThreshold` | a guard around any held resource, flagged when held past its scope timeout or its request |
//! | [`dump`] | `/debug/pprof/goroutine?debug=2` | every live task and resource, oldest first, "alive after its context ended" at the top |
//! | [`timeline`] | `go tool trace` | one request's stages, downstream calls, tasks and resources as a Chrome/Perfetto trace |
//!
//! # Leak check in tests
//!
//! Replace `#[tokio::test]` by `#[timefuse_leak::test]` (same arguments). Every
//! `#[tokio::test]` runs on its own runtime, and the check only looks at that runtime, so
//! tests running in parallel do not see each other's tasks, which goleak cannot do. It
//! looks at three layers:
//!
//! 1. tasks spawned through timefuse on this runtime, named with their spawn location, age,
//!    request and trace id, "alive after its context ended" first;
//! 2. every other tokio task on this runtime, as a count (`RuntimeMetrics::num_alive_tasks`);
//! 3. [tracked resources](Tracked) acquired on this runtime and still held;
//!
//! and, with `--cfg tokio_unstable` and the `taskdump` feature on Linux, where each leaked
//! task is stuck. It retries before calling anything a leak: 1 µs doubling to 100 ms, 20
//! times, as goleak does.
//!
//! ```
//! use timefuse::{Context, RequestId};
//! use timefuse_leak::LeakGuard;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let guard = LeakGuard::start();
//! let request = Context::background().with_request_id(RequestId::new("req-1").unwrap());
//! let leaked = request.spawn_named("refresh-cache", std::future::pending::<()>());
//!
//! let report = guard.verify().await.unwrap_err();
//! let text = report.to_string();
//! assert!(text.contains("task #") && text.contains("\"refresh-cache\""));
//! assert!(text.contains("request req-1"));
//! # leaked.abort();
//! # }
//! ```
//!
//! # Features
//!
//! - `axum`: [`dump::router`], the live dump as an axum handler.
//! - `taskdump`: with `RUSTFLAGS="--cfg tokio_unstable"` on Linux, leak reports carry tokio task
//!   dumps (where each leaked task is stuck). Inert without `tokio_unstable`.
//!
//! - `otel`: `otel::set_parent` (a timefuse trace context as the OpenTelemetry parent of a
//!   `tracing` span) and `otel::export_timeline` (a request's timeline through an OpenTelemetry
//!   tracer, to a collector). [`timeline::TimelineLayer`] is a plain `tracing` layer: it sits
//!   next to `tracing-opentelemetry`'s in the same subscriber.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod check;
pub mod dump;
#[cfg(feature = "otel")]
pub mod otel;
pub mod resource;
#[cfg(all(feature = "taskdump", tokio_unstable, target_os = "linux"))]
mod taskdump;
pub mod timeline;

pub use check::{LeakGuard, LeakOptions, LeakReport, verify_no_leaks, verify_no_leaks_with};
pub use resource::{ResourceInfo, ResourceScope, Tracked};

/// `#[tokio::test]` with a leak check at the end: the test fails if a task it spawned through
/// timefuse, an unbound tokio task on its runtime, or a tracked resource it acquired is still
/// alive once its body has returned (after retries, 1 µs doubling to 100 ms, 20 times).
///
/// Takes every argument of `#[tokio::test]` (`flavor`, `worker_threads`, `start_paused`, ...)
/// unchanged, plus:
///
/// | argument | effect |
/// |---|---|
/// | `ignore_name = "name"` | tasks with this name and resources of this kind are not leaks (repeatable) |
/// | `ignore_location = "tests/x.rs:42"` | tasks spawned and resources acquired at a location starting with this prefix are not leaks (repeatable) |
/// | `ignore_current` | ignore what was alive when the test started (goleak's `IgnoreCurrent`) |
/// | `allow_unbound = 1` | up to this many unbound tokio tasks may stay alive (a test server, say) |
///
/// The crate using it needs `tokio` (with the `macros` and `rt` features, as for
/// `#[tokio::test]`) and `timefuse-leak` as dependencies.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
///
/// #[timefuse_leak::test(start_paused = true)]
/// async fn bound_task_stops_at_deadline() {
///     let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(100));
///     let handle = ctx.spawn(tokio::time::sleep(Duration::from_secs(10)));
///     assert!(handle.await.unwrap().is_err());
/// } // nothing left: passes
///
/// #[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, ignore_name = "detached")]
/// async fn detached_on_purpose() {
///     drop(Context::background().spawn_named("detached", std::future::pending::<()>()));
/// }
/// # fn main() {}
/// ```
pub use timefuse_macros::test;
