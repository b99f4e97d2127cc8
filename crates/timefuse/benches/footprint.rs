//! What criterion measures badly: allocations per child create+drop, bytes per live child, and
//! 100 000 deadlines that fall at the same instant against 100 000 bare tokio sleeps.
//!
//! A counting `#[global_allocator]` wraps the system allocator and counts calls and requested
//! bytes (not the allocator's own rounding and headers). Prints a markdown table.
//!
//! ```text
//! CARGO_TARGET_DIR=target/bench cargo bench -p timefuse --bench footprint
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use timefuse::Context;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counts allocator calls and live requested bytes.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Off for the timing test: two workers bumping shared counters on every allocation would
/// bounce their cache line and tax the side that allocates more.
static COUNTING: AtomicBool = AtomicBool::new(true);

fn count(calls: &AtomicUsize, add: usize, sub: usize) {
    if COUNTING.load(Relaxed) {
        calls.fetch_add(1, Relaxed);
        LIVE.fetch_add(add, Relaxed);
        LIVE.fetch_sub(sub, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters
// are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCS, layout.size(), 0);
        // SAFETY: forwarded from our caller, who upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCS, layout.size(), 0);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        // SAFETY: `ptr` was returned by `System` for `layout`, as our caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&REALLOCS, new_size, layout.size());
        // SAFETY: as in `dealloc`, and `new_size` meets `realloc`'s contract per our caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HOUR: Duration = Duration::from_secs(3600);
const N: usize = 100_000;
/// Rounds of the same-instant comparison (`TF_BENCH_REPEATS`, default 11): a round's ratio
/// varies by ±15 % on a 2-core VM, so the median needs more than a handful.
fn repeats() -> usize {
    std::env::var("TF_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(11)
}

fn allocs() -> usize {
    ALLOCS.load(SeqCst) + REALLOCS.load(SeqCst)
}

fn live() -> usize {
    LIVE.load(SeqCst)
}

/// Allocator calls per `op`, over `N` runs per thread after a warm-up, on `threads` threads
/// sharing `shared`. Thread start-up and exit are outside the count.
fn allocs_per_op<S: Sync>(shared: &S, threads: usize, op: impl Fn(&S) + Sync) -> f64 {
    for _ in 0..1000 {
        op(shared);
    }
    let ready = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let go = AtomicBool::new(false);
    let exit = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                ready.fetch_add(1, SeqCst);
                while !go.load(SeqCst) {
                    std::hint::spin_loop();
                }
                for _ in 0..N {
                    op(shared);
                }
                finished.fetch_add(1, SeqCst);
                while !exit.load(SeqCst) {
                    std::hint::spin_loop();
                }
            });
        }
        while ready.load(SeqCst) < threads {
            std::hint::spin_loop();
        }
        let before = allocs();
        go.store(true, SeqCst);
        while finished.load(SeqCst) < threads {
            std::hint::spin_loop();
        }
        let calls = allocs() - before;
        exit.store(true, SeqCst);
        calls as f64 / (N * threads) as f64
    })
}

/// Requested bytes per item for `N` items made by `make` and kept alive (the `Vec` holding them
/// is allocated beforehand and not counted), and the bytes of the last one alone.
fn bytes_per_live<T>(mut make: impl FnMut() -> T) -> (f64, usize) {
    let mut keep: Vec<T> = Vec::with_capacity(N);
    let before = live();
    for _ in 0..N {
        keep.push(make());
    }
    let total = live() - before;
    // One more, into room the containers already have: its own allocations only.
    keep.reserve(1);
    let before_one = live();
    keep.push(make());
    let one = live() - before_one;
    drop(keep);
    (total as f64 / N as f64, one)
}

/// Shared by the tasks of one same-instant round.
struct Round {
    registered: AtomicUsize,
    woken: AtomicUsize,
    finished: AtomicUsize,
    last: Mutex<Option<Instant>>,
    all_woken: Notify,
}

impl Round {
    async fn wait<F: Future>(&self, fut: F) {
        let mut fut = pin!(fut);
        let mut first = true;
        poll_fn(|cx| {
            let p = fut.as_mut().poll(cx);
            if std::mem::take(&mut first) {
                self.registered.fetch_add(1, SeqCst);
            }
            p
        })
        .await;
        if self.woken.fetch_add(1, SeqCst) + 1 == N {
            *self.last.lock().unwrap() = Some(Instant::now());
            self.all_woken.notify_one();
        }
    }

    /// Counts a task as finished: call it last, after the task has dropped what it held.
    fn finish(&self) {
        self.finished.fetch_add(1, SeqCst);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Waiter {
    BareSleep,
    RootContexts,
    ChildContexts,
}

/// Spawns `N` tasks that each wait for the same instant `at` (about 400 ms ahead) and returns
/// (last woken − `at`, last woken − first spawn, all registered before `at`).
fn same_instant(rt: &Runtime, how: Waiter) -> (Duration, Duration, bool) {
    rt.block_on(async move {
        let round = Arc::new(Round {
            registered: AtomicUsize::new(0),
            woken: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            last: Mutex::new(None),
            all_woken: Notify::new(),
        });
        let (parent, _parent_guard) = Context::background().with_cancel();
        let start = Instant::now();
        let at = start + Duration::from_millis(400);
        // Detached tasks and counters rather than a `JoinSet`, whose per-task bookkeeping would
        // land in the timed window.
        for _ in 0..N {
            let round = Arc::clone(&round);
            match how {
                Waiter::BareSleep => tokio::spawn(async move {
                    round.wait(tokio::time::sleep_until(at)).await;
                    round.finish();
                }),
                Waiter::RootContexts => tokio::spawn(async move {
                    let (ctx, guard) = Context::background().with_deadline(at);
                    round.wait(ctx.done()).await;
                    drop((ctx, guard));
                    round.finish();
                }),
                Waiter::ChildContexts => {
                    let parent = parent.clone();
                    tokio::spawn(async move {
                        let (ctx, guard) = parent.with_deadline(at);
                        round.wait(ctx.done()).await;
                        drop((ctx, guard, parent));
                        round.finish();
                    })
                }
            };
        }
        while round.registered.load(SeqCst) < N && Instant::now() < at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let in_time = round.registered.load(SeqCst) == N && Instant::now() < at;
        round.all_woken.notified().await;
        let last = round.last.lock().unwrap().expect("set by the last task");
        while round.finished.load(SeqCst) < N {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (last.saturating_duration_since(at), last - start, in_time)
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // Arguments cargo passes (`--bench`, filters) are ignored.
    println!("# timefuse footprint (N = {N})\n");

    // ---- allocations per child create + drop ----
    let (parent, _pg) = Context::background().with_cancel();
    let token = CancellationToken::new();
    let tf_cancel = |p: &Context| {
        let (child, guard) = p.with_cancel();
        black_box(&child);
        drop(guard);
    };
    let tf_timeout = |p: &Context| {
        let (child, guard) = p.with_timeout(HOUR);
        black_box(&child);
        drop(guard);
    };
    let tu_child = |p: &CancellationToken| drop(black_box(p.child_token()));
    let a_tf1 = allocs_per_op(&parent, 1, tf_cancel);
    let a_tf2 = allocs_per_op(&parent, 2, tf_cancel);
    let a_tft = allocs_per_op(&parent, 1, tf_timeout);
    let a_tu1 = allocs_per_op(&token, 1, tu_child);
    let a_tu2 = allocs_per_op(&token, 2, tu_child);

    // ---- bytes per live child ----
    let (parent, _pg) = Context::background().with_cancel();
    let (b_tf, b_tf_one) = bytes_per_live(|| parent.with_timeout(HOUR));
    let (parent, _pg) = Context::background().with_cancel();
    let (b_tfc, b_tfc_one) = bytes_per_live(|| parent.with_cancel());
    let token = CancellationToken::new();
    let (b_tu, b_tu_one) = bytes_per_live(|| token.child_token());
    // tokio-util has no deadline: the nearest equivalent is a child token plus a boxed Sleep.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (b_tus, b_tus_one) = {
        let _enter = rt.enter();
        bytes_per_live(|| (token.child_token(), Box::pin(tokio::time::sleep(HOUR))))
    };

    // ---- same-instant deadlines vs bare sleeps ----
    COUNTING.store(false, SeqCst); // byte counts are meaningless from here on
    let mut late: [Vec<Duration>; 3] = Default::default();
    let mut total: [Vec<Duration>; 3] = Default::default();
    let mut all_in_time = true;
    let kinds = [
        Waiter::BareSleep,
        Waiter::RootContexts,
        Waiter::ChildContexts,
    ];
    let repeats = repeats();
    let _ = same_instant(&rt, Waiter::BareSleep); // warm-up: worker threads, timer wheel
    for _ in 0..repeats {
        for (i, how) in kinds.into_iter().enumerate() {
            let (l, t, ok) = same_instant(&rt, how);
            late[i].push(l);
            total[i].push(t);
            all_in_time &= ok;
        }
    }
    // Each round's ratio to the bare sleeps of the same round: the spread says how far to
    // trust the median.
    let spread: Vec<(f64, f64)> = (1..3)
        .map(|i| {
            let r: Vec<f64> = late[i]
                .iter()
                .zip(&late[0])
                .map(|(x, b)| x.as_secs_f64() / b.as_secs_f64())
                .collect();
            (
                r.iter().copied().fold(f64::INFINITY, f64::min),
                r.iter().copied().fold(0.0, f64::max),
            )
        })
        .collect();
    let late: Vec<Duration> = late.into_iter().map(median).collect();
    let total: Vec<Duration> = total.into_iter().map(median).collect();

    println!("## Allocations per child create + drop\n");
    println!("| operation | timefuse | tokio-util | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| `with_cancel` / `child_token`, 1 thread | {a_tf1:.2} | {a_tu1:.2} | {:.2} |",
        a_tf1 / a_tu1
    );
    println!(
        "| `with_cancel` / `child_token`, 2 threads on one parent | {a_tf2:.2} | {a_tu2:.2} | {:.2} |",
        a_tf2 / a_tu2
    );
    println!(
        "| `with_timeout` / `child_token`, 1 thread | {a_tft:.2} | {a_tu1:.2} | {:.2} |",
        a_tft / a_tu1
    );
    println!();
    println!("## Requested bytes per live child ({N} children under one parent)\n");
    println!(
        "| child | timefuse B/child | (one more, own allocs) | tokio-util B/child | (one more) | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| with a deadline (`with_timeout` / `child_token`) | {b_tf:.1} | {b_tf_one} | {b_tu:.1} | {b_tu_one} | {:.2} |",
        b_tf / b_tu
    );
    println!(
        "| without (`with_cancel` / `child_token`) | {b_tfc:.1} | {b_tfc_one} | {b_tu:.1} | {b_tu_one} | {:.2} |",
        b_tfc / b_tu
    );
    println!(
        "| with a deadline (`with_timeout` / `child_token` + `Box::pin(sleep)`) | {b_tf:.1} | {b_tf_one} | {b_tus:.1} | {b_tus_one} | {:.2} |",
        b_tf / b_tus
    );
    println!();
    println!("## {N} tasks waiting for one instant (median of {repeats} rounds, 2 workers)\n");
    println!(
        "| waiters | last woken after the instant | ratio to bare sleeps | per-round ratios | first spawn → last woken |"
    );
    println!("|---|---|---|---|---|");
    let names = [
        "bare `sleep_until`",
        "root contexts `with_deadline` + `done()`",
        "children of one parent + `done()`",
    ];
    for i in 0..3 {
        let range = match i {
            0 => "1.00".to_owned(),
            _ => format!("{:.2}–{:.2}", spread[i - 1].0, spread[i - 1].1),
        };
        println!(
            "| {} | {} | {:.2} | {range} | {} |",
            names[i],
            ms(late[i]),
            late[i].as_secs_f64() / late[0].as_secs_f64(),
            ms(total[i]),
        );
    }
    println!();
    println!("all tasks registered before the instant in every round: {all_in_time}");
    println!(
        "raw medians (ns): late {:?} total {:?}",
        late.iter().map(Duration::as_nanos).collect::<Vec<_>>(),
        total.iter().map(Duration::as_nanos).collect::<Vec<_>>()
    );
}
