//! The local rate limiter's check against plain `governor` in the same run (target: within
//! 1.5×), and the `RateLimit` middleware around a no-op service against the bare service.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/main/target/bench cargo bench -p timefuse-guard --bench limiter
//! ```
//!
//! Every check here is allowed (a quota too large to run out): the common path.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter as Governor};
use timefuse_guard::rate_limit::{Rate, RateLimitLayer, RateLimiter, TokioClock};
use tower::{Layer, Service};

const HUGE: u32 = u32::MAX;

/// A no-op service: its future is ready at once.
#[derive(Clone, Copy)]
struct Noop;

impl Service<u64> for Noop {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
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

fn checks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("limiter_check");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));

    let quota = Quota::per_second(NonZeroU32::new(HUGE).unwrap());
    let plain = Governor::direct(quota);
    g.bench_function("governor_direct (quanta clock)", |b| {
        b.iter(|| black_box(plain.check().is_ok()))
    });
    let tokio_clock = Governor::direct_with_clock(quota, TokioClock::new());
    g.bench_function("governor_direct (tokio clock)", |b| {
        b.iter(|| black_box(tokio_clock.check().is_ok()))
    });
    let ours = RateLimiter::direct(Rate::per_second(HUGE));
    g.bench_function("timefuse_direct", |b| {
        b.iter(|| black_box(ours.check(black_box(&())).is_ok()))
    });

    let keys: Vec<u64> = (0..1000).collect();
    let plain_keyed = Governor::keyed(quota);
    let mut i = 0;
    g.bench_function("governor_keyed_1000_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(plain_keyed.check_key(&keys[i]).is_ok())
        })
    });
    let ours_keyed = RateLimiter::<u64>::keyed(Rate::per_second(HUGE));
    let mut i = 0;
    g.bench_function("timefuse_keyed_1000_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(ours_keyed.check(&keys[i]).is_ok())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("limiter_service");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    let mut bare = Noop;
    g.bench_function("bare_noop", |b| {
        b.iter(|| black_box(call_once(&mut bare, 1)))
    });
    let mut limited = RateLimitLayer::new(Rate::per_second(HUGE)).layer(Noop);
    g.bench_function("rate_limit_noop", |b| {
        b.iter(|| black_box(call_once(&mut limited, 1)))
    });
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
