//! Criterion benchmarks of the core [`Context`] against tokio-util's `CancellationToken`, run side
//! by side so that every ratio in `docs/benchmarks.md` comes from one run on one machine.
//!
//! Groups (each kept short: the machine this is tuned for has 2 cores):
//!
//! - `clock`: the clock reads every deadline check pays for.
//! - `primitives`: an `Arc` allocation, a lock/unlock pair, an atomic read-modify-write: the
//!   parts a child create + drop is made of.
//! - `is_done`: the check without and with a deadline, 1 thread.
//! - `is_done_threads`: the same check through one timed loop, alone and while a second thread
//!   hammers the same context.
//! - `child_create_drop`: create a child and drop it (guard first: Go's `defer cancel()`), with
//!   and without a second thread doing the same on the same parent.
//! - `with_timeout_cancel`: a child with a timeout, cancelled and dropped.
//! - `cancel_fanout`: cancel a parent of N children, until every child reports done.
//! - `cancel_waiters`: cancel a context that 100 000 tasks await, until the last has woken.
//! - `value_lookup`: a value 10 links up the value chain, and a plain `Arc` chain walk.
//!
//! Allocation counts, bytes per child and the same-instant deadline test are in `footprint.rs`.
//!
//! ```text
//! CARGO_TARGET_DIR=target/bench cargo bench -p timefuse --bench context
//! ```

use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use timefuse::Context;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Far enough away that no benchmark ever sees it pass.
const HOUR: Duration = Duration::from_secs(3600);

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g
}

/// Times `iters` calls of `op` on this thread while another thread calls `hammer` on the same
/// `shared` value in a loop. Returns this thread's time only.
fn with_hammer<S: Sync>(
    iters: u64,
    shared: &S,
    hammer: impl Fn(&S) + Sync,
    op: impl Fn(&S),
) -> Duration {
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            started.store(true, Ordering::Release);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    hammer(shared);
                }
            }
        });
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        for _ in 0..iters {
            op(shared);
        }
        let elapsed = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

/// The same timed loop as [`with_hammer`], with no second thread: its 1-thread baseline.
fn alone<S>(iters: u64, shared: &S, op: impl Fn(&S)) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        op(shared);
    }
    t0.elapsed()
}

fn clock(c: &mut Criterion) {
    let mut g = group(c, "clock");
    g.bench_function("std_instant_now", |b| b.iter(std::time::Instant::now));
    g.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    g.bench_function("tokio_instant_now_in_runtime", |b| {
        b.iter(tokio::time::Instant::now)
    });
    g.finish();
}

/// What a child create + drop is made of: one 64-byte `Arc` allocation, uncontended lock/unlock
/// pairs and atomic read-modify-writes.
fn primitives(c: &mut Criterion) {
    let mut g = group(c, "primitives");
    g.bench_function("arc_new_drop_64B", |b| {
        b.iter(|| drop(black_box(Arc::new([0_u64; 6]))))
    });
    let m = Mutex::new(0_u64);
    g.bench_function("mutex_lock_unlock", |b| {
        b.iter(|| *black_box(&m).lock().unwrap() += 1)
    });
    let a = AtomicUsize::new(0);
    g.bench_function("atomic_fetch_add", |b| {
        b.iter(|| black_box(&a).fetch_add(1, Ordering::AcqRel))
    });
    g.finish();
}

fn is_done(c: &mut Criterion) {
    let mut g = group(c, "is_done");
    let (plain, _g1) = Context::background().with_cancel();
    let (timed, _g2) = Context::background().with_timeout(HOUR);
    let token = CancellationToken::new();
    g.bench_function("timefuse/no_deadline", |b| {
        b.iter(|| black_box(&plain).is_done())
    });
    g.bench_function("timefuse/deadline", |b| {
        b.iter(|| black_box(&timed).is_done())
    });
    g.bench_function("tokio_util/is_cancelled", |b| {
        b.iter(|| black_box(&token).is_cancelled())
    });
    g.finish();

    // 1 thread vs 2 threads, both through the same `iter_custom` loop.
    let mut g = group(c, "is_done_threads");
    let check = |ctx: &Context| {
        black_box(black_box(ctx).is_done());
    };
    let check_token = |t: &CancellationToken| {
        black_box(black_box(t).is_cancelled());
    };
    for (name, ctx) in [("no_deadline", &plain), ("deadline", &timed)] {
        g.bench_function(format!("timefuse/{name}/1thread"), |b| {
            b.iter_custom(|iters| alone(iters, ctx, check))
        });
        g.bench_function(format!("timefuse/{name}/2threads"), |b| {
            b.iter_custom(|iters| with_hammer(iters, ctx, check, check))
        });
    }
    g.bench_function("tokio_util/is_cancelled/1thread", |b| {
        b.iter_custom(|iters| alone(iters, &token, check_token))
    });
    g.bench_function("tokio_util/is_cancelled/2threads", |b| {
        b.iter_custom(|iters| with_hammer(iters, &token, check_token, check_token))
    });
    g.finish();
}

fn child_create_drop(c: &mut Criterion) {
    let mut g = group(c, "child_create_drop");
    let (parent, _guard) = Context::background().with_cancel();
    let token = CancellationToken::new();
    let tf = |p: &Context| {
        let (child, guard) = black_box(p).with_cancel();
        black_box(&child);
        drop(guard);
        drop(child);
    };
    let tu = |p: &CancellationToken| {
        drop(black_box(black_box(p).child_token()));
    };
    g.bench_function("timefuse/1thread", |b| b.iter(|| tf(&parent)));
    g.bench_function("tokio_util/1thread", |b| b.iter(|| tu(&token)));
    g.bench_function("timefuse/2threads", |b| {
        b.iter_custom(|iters| with_hammer(iters, &parent, tf, tf))
    });
    g.bench_function("tokio_util/2threads", |b| {
        b.iter_custom(|iters| with_hammer(iters, &token, tu, tu))
    });
    g.finish();

    let mut g = group(c, "with_timeout_cancel");
    g.bench_function("timefuse", |b| {
        b.iter(|| {
            let (child, guard) = black_box(&parent).with_timeout(black_box(HOUR));
            black_box(&child);
            guard.cancel();
            drop(child);
        })
    });
    g.bench_function("tokio_util/child_token_cancel", |b| {
        b.iter(|| {
            let child = black_box(&token).child_token();
            child.cancel();
            drop(child);
        })
    });
    g.finish();
}

fn cancel_fanout(c: &mut Criterion) {
    for n in [1_000_usize, 100_000] {
        let mut g = group(c, "cancel_fanout");
        g.throughput(Throughput::Elements(n as u64));
        if n > 10_000 {
            g.sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .measurement_time(Duration::from_secs(3));
        }
        g.bench_with_input(BenchmarkId::new("timefuse", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let (parent, guard) = Context::background().with_cancel();
                    let children: Vec<_> = (0..n).map(|_| parent.with_cancel()).collect();
                    (parent, guard, children)
                },
                |(parent, guard, children)| {
                    guard.cancel_ref(timefuse::Cause::Canceled);
                    assert!(children.iter().all(|(c, _)| c.is_done()));
                    (parent, guard, children)
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_with_input(BenchmarkId::new("tokio_util", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let parent = CancellationToken::new();
                    let children: Vec<_> = (0..n).map(|_| parent.child_token()).collect();
                    (parent, children)
                },
                |(parent, children)| {
                    parent.cancel();
                    assert!(children.iter().all(CancellationToken::is_cancelled));
                    (parent, children)
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

/// Shared by the waiters of one `cancel_waiters` round.
struct Round {
    n: usize,
    registered: AtomicUsize,
    woken: AtomicUsize,
    finished: AtomicUsize,
    last: Mutex<Option<Instant>>,
    all_woken: Notify,
}

impl Round {
    fn new(n: usize) -> Arc<Round> {
        Arc::new(Round {
            n,
            registered: AtomicUsize::new(0),
            woken: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            last: Mutex::new(None),
            all_woken: Notify::new(),
        })
    }

    fn woke(&self) {
        if self.woken.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            *self.last.lock().unwrap() = Some(Instant::now());
            self.all_woken.notify_one();
        }
    }

    /// Awaits `fut`, counting the task as registered once `fut` has been polled once.
    async fn wait<F: Future>(&self, fut: F) {
        let mut fut = pin!(fut);
        let mut first = true;
        poll_fn(|cx| {
            let p = fut.as_mut().poll(cx);
            if std::mem::take(&mut first) {
                self.registered.fetch_add(1, Ordering::Release);
            }
            p
        })
        .await;
        self.woke();
    }

    /// Counts a task as finished: call it last, after the task has dropped what it held.
    fn finish(&self) {
        self.finished.fetch_add(1, Ordering::Release);
    }

    /// Waits for every waiter to register, runs `cancel` in a worker task and returns the time
    /// from the cancel to the last waiter woken; then waits for every task to finish. (Detached
    /// tasks and counters rather than a `JoinSet`, whose per-task bookkeeping would land in the
    /// timed window for both sides.)
    async fn cancel_and_time(&self, cancel: impl FnOnce() + Send + 'static) -> Duration {
        while self.registered.load(Ordering::Acquire) < self.n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t0 = tokio::spawn(async move {
            let t0 = Instant::now();
            cancel();
            t0
        })
        .await
        .unwrap();
        self.all_woken.notified().await;
        let t1 = self.last.lock().unwrap().expect("set by the last waiter");
        while self.finished.load(Ordering::Acquire) < self.n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        t1 - t0
    }
}

fn waiters_timefuse(rt: &Runtime, n: usize) -> Duration {
    rt.block_on(async {
        let round = Round::new(n);
        let (ctx, guard) = Context::background().with_cancel();
        for _ in 0..n {
            let (round, ctx) = (Arc::clone(&round), ctx.clone());
            tokio::spawn(async move {
                round.wait(ctx.done()).await;
                drop(ctx);
                round.finish();
            });
        }
        round
            .cancel_and_time(move || {
                guard.cancel();
            })
            .await
    })
}

fn waiters_tokio_util(rt: &Runtime, n: usize) -> Duration {
    rt.block_on(async {
        let round = Round::new(n);
        let token = CancellationToken::new();
        for _ in 0..n {
            let (round, token) = (Arc::clone(&round), token.clone());
            tokio::spawn(async move {
                round.wait(token.cancelled()).await;
                drop(token);
                round.finish();
            });
        }
        round.cancel_and_time(move || token.cancel()).await
    })
}

fn cancel_waiters(c: &mut Criterion) {
    const N: usize = 100_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = group(c, "cancel_waiters");
    g.throughput(Throughput::Elements(N as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(3));
    g.bench_function(BenchmarkId::new("timefuse", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| waiters_timefuse(&rt, N)).sum())
    });
    g.bench_function(BenchmarkId::new("tokio_util", N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| waiters_tokio_util(&rt, N)).sum())
    });
    g.finish();
}

struct V<const N: usize>(u64);

/// The peer of the value chain: a bare `Arc` linked list searched by key.
struct Link {
    parent: Option<Arc<Link>>,
    key: u64,
    value: u64,
}

fn find(mut cur: Option<&Link>, key: u64) -> Option<u64> {
    while let Some(link) = cur {
        if link.key == key {
            return Some(link.value);
        }
        cur = link.parent.as_deref();
    }
    None
}

fn value_lookup(c: &mut Criterion) {
    let mut g = group(c, "value_lookup");
    let ctx = Context::background()
        .with_value(V::<0>(0))
        .with_value(V::<1>(1))
        .with_value(V::<2>(2))
        .with_value(V::<3>(3))
        .with_value(V::<4>(4))
        .with_value(V::<5>(5))
        .with_value(V::<6>(6))
        .with_value(V::<7>(7))
        .with_value(V::<8>(8))
        .with_value(V::<9>(9));
    let mut chain: Option<Arc<Link>> = None;
    for key in 0..10 {
        chain = Some(Arc::new(Link {
            parent: chain,
            key,
            value: key,
        }));
    }
    assert_eq!(ctx.value::<V<0>>().map(|v| v.0), Some(0));
    assert_eq!(find(chain.as_deref(), 0), Some(0));
    g.bench_function("timefuse/depth10_hit", |b| {
        b.iter(|| black_box(&ctx).value::<V<0>>().map(|v| v.0))
    });
    g.bench_function("timefuse/depth10_miss", |b| {
        b.iter(|| black_box(&ctx).value::<u128>().copied())
    });
    g.bench_function("arc_chain/depth10_hit", |b| {
        b.iter(|| find(black_box(chain.as_deref()), black_box(0)))
    });
    g.finish();
}

criterion_group!(
    benches,
    clock,
    primitives,
    is_done,
    child_create_drop,
    cancel_fanout,
    cancel_waiters,
    value_lookup
);
criterion_main!(benches);
