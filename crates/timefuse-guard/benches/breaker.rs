//! Circuit breaker cost: admit + record, uncontended and from 2 threads at once, for
//! timefuse-guard's breaker (direct API and tower service) side by side with tower-resilience's
//! circuit breaker (tower service; its state is not reachable without tower).
//!
//! Every breaker is closed, count-based over 100 calls (minimum 100, 50 %), and every call
//! succeeds, so nothing ever trips: the steady-state hot path. The tower services wrap an inner
//! service that answers at once; each call is polled to completion on a no-op waker, so no
//! runtime is measured.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/main/target/bench cargo bench -p timefuse-guard --bench breaker
//! ```

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context as TaskContext, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use timefuse::Context;
use timefuse_guard::Outcome;
use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, SlidingWindow};
use tower::{Layer, Service};

const LATENCY: Duration = Duration::from_micros(300);

/// An inner service that answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = std::io::Error;
    type Future = Ready<Result<u64, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// Drives a future to completion by polling it on a no-op waker (spinning if it is pending,
/// as tower-resilience's async mutex may be under contention).
fn block<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::hint::spin_loop();
    }
}

/// One call through a tower service: `poll_ready`, `call`, the response.
fn call<S: Service<u64>>(svc: &mut S, i: u64) -> Result<S::Response, S::Error> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(r) => {
                r?;
                break;
            }
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    block(svc.call(i))
}

fn ours() -> Arc<Breaker> {
    Breaker::new(
        BreakerConfig::new("bench")
            .sliding_window(SlidingWindow::CountBased(100))
            .minimum_calls(100)
            .failure_rate_threshold(50.0),
    )
}

fn ours_time_based() -> Arc<Breaker> {
    Breaker::new(BreakerConfig::fifty_percent_over_a_minute("bench"))
}

fn ours_tower() -> impl Service<u64, Response = u64> + Clone + Send {
    CircuitBreakerLayer::from_breaker(ours()).layer(Echo)
}

fn theirs_tower() -> impl Service<u64, Response = u64> + Clone + Send {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .sliding_window_size(100)
        .minimum_number_of_calls(100)
        .failure_rate_threshold(0.5)
        .build()
        .expect("a valid configuration")
        .layer(Echo)
}

/// Runs `op` `iters` times on each of `threads` threads at once; returns the mean wall time
/// the threads took, so criterion reports the latency of one operation under contention.
fn contended<T, F>(iters: u64, threads: usize, make: impl Fn() -> T, op: F) -> Duration
where
    T: Send + 'static,
    F: Fn(&mut T, u64) + Send + Sync + Copy + 'static,
{
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut state = make();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    op(&mut state, i);
                }
                start.elapsed()
            })
        })
        .collect();
    let total: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total / threads as u32
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_uncontended");
    let ctx = Context::background();

    let breaker = ours();
    g.bench_function("timefuse/direct_count_window", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire(black_box(&ctx)).unwrap();
            permit.record(Outcome::Success, black_box(LATENCY));
        })
    });
    let breaker = ours_time_based();
    g.bench_function("timefuse/direct_time_window", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire(black_box(&ctx)).unwrap();
            permit.record(Outcome::Success, black_box(LATENCY));
        })
    });
    let mut svc = ours_tower();
    let mut i = 0u64;
    g.bench_function("timefuse/tower_service", |b| {
        b.iter(|| {
            i += 1;
            black_box(call(&mut svc, i).ok());
        })
    });
    let mut svc = theirs_tower();
    g.bench_function("tower-resilience/tower_service", |b| {
        b.iter(|| {
            i += 1;
            black_box(call(&mut svc, i).ok());
        })
    });
    g.bench_function("clock/tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    g.bench_function("clock/std_instant_now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    let mut bare = Echo;
    g.bench_function("no_breaker/tower_service", |b| {
        b.iter(|| {
            i += 1;
            black_box(call(&mut bare, i).ok());
        })
    });
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_2_threads");

    let breaker = ours();
    g.bench_function("timefuse/direct_count_window", |b| {
        b.iter_custom(|iters| {
            let breaker = Arc::clone(&breaker);
            contended(
                iters,
                2,
                move || (Arc::clone(&breaker), Context::background()),
                |(breaker, ctx), _| {
                    let permit = breaker.try_acquire(black_box(ctx)).unwrap();
                    permit.record(Outcome::Success, black_box(LATENCY));
                },
            )
        })
    });
    let breaker = ours_time_based();
    g.bench_function("timefuse/direct_time_window", |b| {
        b.iter_custom(|iters| {
            let breaker = Arc::clone(&breaker);
            contended(
                iters,
                2,
                move || (Arc::clone(&breaker), Context::background()),
                |(breaker, ctx), _| {
                    let permit = breaker.try_acquire(black_box(ctx)).unwrap();
                    permit.record(Outcome::Success, black_box(LATENCY));
                },
            )
        })
    });
    let svc = ours_tower();
    g.bench_function("timefuse/tower_service", |b| {
        b.iter_custom(|iters| {
            let svc = svc.clone();
            contended(
                iters,
                2,
                move || svc.clone(),
                |svc, i| {
                    black_box(call(svc, i).ok());
                },
            )
        })
    });
    let svc = theirs_tower();
    g.bench_function("tower-resilience/tower_service", |b| {
        b.iter_custom(|iters| {
            let svc = svc.clone();
            contended(
                iters,
                2,
                move || svc.clone(),
                |svc, i| {
                    black_box(call(svc, i).ok());
                },
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = uncontended, two_threads
}
criterion_main!(benches);
