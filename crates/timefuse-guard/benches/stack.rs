//! The whole stack (fallback, retry, admission, rate limiter, breaker, bulkhead, per-try
//! timeout: every guard on) around a no-op service, against the bare service (target: at most
//! 300 ns of overhead per call), without a request context and inside one.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/main/target/bench cargo bench -p timefuse-guard --bench stack
//! ```
//!
//! Every call is admitted and succeeds: the common path.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use timefuse::Context;
use timefuse::budget::TimeoutPolicy;
use timefuse_guard::admission::AdmissionLayer;
use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer};
use timefuse_guard::bulkhead::BulkheadLayer;
use timefuse_guard::fallback::{self, FallbackLayer, Marked, Why};
use timefuse_guard::rate_limit::{ByContext, Rate, RateLimitLayer, WaitMode};
use timefuse_guard::retry::{PerTryTimeoutLayer, RetryLayer, RetryPolicy};
use timefuse_guard::stack::GuardLayer;
use tower::{Layer, Service};

/// A no-op service: its future is ready at once.
#[derive(Clone, Copy)]
struct Noop;

impl Service<u64> for Noop {
    type Response = Marked<u64>;
    type Error = Infallible;
    type Future = Ready<Result<Marked<u64>, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(Marked::new(req)))
    }
}

/// One `poll_ready` + `call` + poll of the response future, which is ready at once.
fn call_once<S: Service<u64>>(svc: &mut S, req: u64) -> bool {
    let mut cx = TaskContext::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
        panic!("not ready")
    };
    let fut = pin!(svc.call(req));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
}

/// Every guard on. `per_try`: the per-try cap (one that binds makes a child context per call).
fn full_layer(
    per_try: Option<Duration>,
) -> GuardLayer<impl fallback::FallbackHook<u64, Marked<u64>>> {
    GuardLayer::new("bench")
        .with_admission()
        .with_rate_limit(
            Rate::per_second(u32::MAX),
            WaitMode::NoWait,
            ByContext::Global,
        )
        .with_breaker(BreakerConfig::fifty_percent_over_a_minute("bench"))
        .with_bulkhead(1 << 20, Duration::ZERO)
        .with_retry(RetryLayer::new(RetryPolicy::default()))
        .with_per_try(per_try)
        .with_fallback(fallback::default_response(|_: &Why<'_>| {
            Some(Marked::new(0))
        }))
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("stack");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));

    let mut bare = Noop;
    g.bench_function("bare_noop", |b| {
        b.iter(|| black_box(call_once(&mut bare, 1)))
    });

    let mut guarded = full_layer(None).layer(Noop);
    g.bench_function("all_layers_noop (no context)", |b| {
        b.iter(|| black_box(call_once(&mut guarded, 1)))
    });

    // Inside a request: every guard reads the context.
    let (ctx, _guard) = Context::background()
        .with_request_budget(TimeoutPolicy::http_edge(), Some(Duration::from_secs(3600)));
    let mut bare = Noop;
    g.bench_function("bare_noop (request context)", |b| {
        b.iter(|| ctx.sync_scope(|| black_box(call_once(&mut bare, 1))))
    });
    let mut guarded = full_layer(None).layer(Noop);
    g.bench_function("all_layers_noop (request context)", |b| {
        b.iter(|| ctx.sync_scope(|| black_box(call_once(&mut guarded, 1))))
    });
    // A per-try cap shorter than the request's time: each attempt gets a child context.
    let mut guarded = full_layer(Some(Duration::from_secs(1))).layer(Noop);
    g.bench_function(
        "all_layers_noop (request context, binding per-try cap)",
        |b| b.iter(|| ctx.sync_scope(|| black_box(call_once(&mut guarded, 1)))),
    );
    g.finish();

    // Each guard alone around the no-op, without and with a request context.
    let mut g = c.benchmark_group("per_layer");
    g.measurement_time(Duration::from_secs(1));
    g.warm_up_time(Duration::from_millis(300));
    macro_rules! layer {
        ($name:literal, $layer:expr) => {{
            let mut svc = $layer.layer(Noop);
            g.bench_function(concat!($name, " (no context)"), |b| {
                b.iter(|| black_box(call_once(&mut svc, 1)))
            });
            let mut svc = $layer.layer(Noop);
            g.bench_function(concat!($name, " (request context)"), |b| {
                b.iter(|| ctx.sync_scope(|| black_box(call_once(&mut svc, 1))))
            });
        }};
    }
    layer!(
        "fallback",
        FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(Marked::new(
            0
        ))))
    );
    layer!("retry", RetryLayer::new(RetryPolicy::default()));
    layer!("admission", AdmissionLayer::new());
    layer!(
        "rate_limit",
        RateLimitLayer::new(Rate::per_second(u32::MAX))
    );
    layer!(
        "breaker",
        CircuitBreakerLayer::new(BreakerConfig::fifty_percent_over_a_minute("b"))
    );
    layer!("bulkhead", BulkheadLayer::new(1 << 20));
    layer!("per_try (no cap)", PerTryTimeoutLayer::new(None));
    layer!(
        "per_try (1 s cap)",
        PerTryTimeoutLayer::new(Some(Duration::from_secs(1)))
    );
    let mut bare = Noop;
    g.bench_function("bare (request context)", |b| {
        b.iter(|| ctx.sync_scope(|| black_box(call_once(&mut bare, 1))))
    });
    g.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
