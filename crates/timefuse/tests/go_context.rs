//! The behaviours Go's `context` package tests (`context_test.go`, `x_test.go`,
//! `afterfunc_test.go`), ported to timefuse: the behaviours, not the code.
//!
//! Go names are kept in the comments (`// Go: TestFoo`) so a reader can line the two suites up.
//! Time-dependent tests run on paused tokio time (`start_paused = true`); tests with real threads
//! synchronise through joins, barriers and counters, never through sleeps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context as TaskCx, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use timefuse::{CancelGuard, Cause, Context};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn bg() -> Context {
    Context::background()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Go's `veryLongDuration`.
const VERY_LONG: Duration = Duration::from_secs(1000 * 3600);

/// An application error cause with a recognisable message (Go's `fmt.Errorf("…")`).
fn err_cause(msg: &'static str) -> Cause {
    Cause::other(std::io::Error::other(msg))
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut TaskCx::from_waker(Waker::noop()))
}

/// A waker that counts its wake-ups; `Arc::strong_count` on it counts the live `Waker` clones,
/// so a registration the library forgot to release shows up as a count that does not go down.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

/// Runs `f` on a thread with a 256 KiB stack: a recursion proportional to a 100 000-deep chain
/// would overflow it and abort the test binary.
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    thread::Builder::new()
        .name("small-stack".into())
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn small-stack thread")
        .join()
        .expect("small-stack thread panicked");
}

/// A deterministic xorshift generator (Go's tests use `math/rand` with a logged seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Counts allocations made by the current thread (Go's `testing.AllocsPerRun`).
struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` unchanged; the thread-local counter is
// const-initialised and has no destructor, so touching it never allocates or re-enters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Average allocations per run of `f` on this thread, after one warm-up run.
fn allocs_per_run(runs: u64, mut f: impl FnMut()) -> f64 {
    f();
    let before = ALLOCS.with(Cell::get);
    for _ in 0..runs {
        f();
    }
    (ALLOCS.with(Cell::get) - before) as f64 / runs as f64
}

// ---------------------------------------------------------------------------------------------
// Background
// ---------------------------------------------------------------------------------------------

// Go: TestBackground, TestTODO
#[timefuse_leak::test(start_paused = true)]
async fn background_is_never_done_and_has_no_deadline() {
    for ctx in [Context::background(), Context::default()] {
        assert!(!ctx.is_done());
        assert_eq!(ctx.cause(), None);
        assert_eq!(ctx.deadline(), None);
        assert_eq!(ctx.remaining(), None);
        assert_eq!(ctx.live_children(), 0);
        assert_eq!(ctx.value::<u32>(), None);
        let mut done = pin!(ctx.done());
        assert!(poll_once(done.as_mut()).is_pending());
        // An hour of (paused) time later it still has not ended.
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), done)
                .await
                .is_err()
        );
        assert!(!ctx.is_done());
    }
}

// ---------------------------------------------------------------------------------------------
// WithCancel
// ---------------------------------------------------------------------------------------------

// Go: TestWithCancel
#[test]
fn with_cancel_propagates_synchronously() {
    let (c1, cancel) = bg().with_cancel();
    let o = c1.with_value("wrapped"); // Go's otherContext: same cancellation, another layer
    let (c2, _g2) = o.with_cancel();
    let all = [&c1, &o, &c2];
    for c in all {
        assert!(!c.is_done());
        assert_eq!(c.cause(), None);
        assert!(poll_once(pin!(c.done())).is_pending());
    }
    assert!(cancel.cancel());
    // Synchronous: no waiting needed between the cancel and the observation.
    for c in all {
        assert!(c.is_done());
        assert_eq!(c.cause(), Some(Cause::Canceled));
        assert_eq!(poll_once(pin!(c.done())), Poll::Ready(Cause::Canceled));
    }
}

// Go: TestParentFinishesChild
#[test]
fn parent_finishes_children_and_grandchildren() {
    // parent -> cancel_child
    // parent -> value_child -> timer_child -> grandchild
    let (parent, cancel) = bg().with_cancel();
    let (cancel_child, _stop1) = parent.with_cancel();
    let value_child = parent.with_value("value");
    let (timer_child, _stop2) = value_child.with_timeout(Duration::from_secs(10_000 * 3600));
    let (grandchild, _stop3) = timer_child.with_cancel();

    for c in [
        &parent,
        &cancel_child,
        &value_child,
        &timer_child,
        &grandchild,
    ] {
        assert!(!c.is_done());
    }
    // The value layer shares the parent's node: the parent links exactly the two cancellable
    // children; the grandchild is linked under the timer child.
    assert_eq!(parent.live_children(), 2);
    assert_eq!(value_child.live_children(), 2);
    assert_eq!(timer_child.live_children(), 1);

    cancel.cancel();

    assert_eq!(
        parent.live_children(),
        0,
        "cancel clears the parent's children"
    );
    assert_eq!(timer_child.live_children(), 0);
    for c in [
        &parent,
        &cancel_child,
        &value_child,
        &timer_child,
        &grandchild,
    ] {
        assert!(c.is_done());
        assert_eq!(c.cause(), Some(Cause::Canceled));
    }

    // A child made on a cancelled parent is born cancelled.
    let precancelled = parent.with_value("key");
    assert!(precancelled.is_done());
    assert_eq!(precancelled.cause(), Some(Cause::Canceled));
}

// Go: TestChildFinishesFirst
#[test]
fn child_cancel_leaves_parent_alone() {
    let (cancellable, _stop) = bg().with_cancel();
    for parent in [bg(), cancellable] {
        let (child, cancel) = parent.with_cancel();
        assert!(!parent.is_done());
        assert!(!child.is_done());
        // Background has no node to link to; a cancellable parent links the child.
        let linked = parent.live_children();

        assert!(cancel.cancel());

        assert!(child.is_done());
        assert_eq!(child.cause(), Some(Cause::Canceled));
        assert!(
            !parent.is_done(),
            "cancelling a child must not cancel its parent"
        );
        assert_eq!(parent.cause(), None);
        assert_eq!(
            parent.live_children(),
            linked.saturating_sub(1),
            "the child removed itself"
        );
        assert_eq!(parent.live_children(), 0);
    }
}

// Go: TestCancelRemoves
#[test]
fn cancel_removes_child_from_parent() {
    let (ctx, _g) = bg().with_cancel();
    assert_eq!(ctx.live_children(), 0);
    let (_c, cancel) = ctx.with_cancel();
    assert_eq!(ctx.live_children(), 1);
    cancel.cancel();
    assert_eq!(ctx.live_children(), 0);

    let (ctx, _g) = bg().with_cancel();
    let (_c, cancel) = ctx.with_timeout(Duration::from_secs(3600));
    assert_eq!(ctx.live_children(), 1);
    cancel.cancel();
    assert_eq!(ctx.live_children(), 0);
}

#[test]
fn cancel_twice_is_a_no_op() {
    let (ctx, guard) = bg().with_cancel();
    let (child, _cg) = ctx.with_cancel();
    assert!(guard.cancel_ref(Cause::Shutdown));
    assert!(
        !guard.cancel_ref(Cause::ClientGone),
        "second cancel reports it did nothing"
    );
    assert!(!guard.cancel_ref(Cause::Shutdown));
    assert!(
        !guard.cancel_with(err_cause("late")),
        "consuming cancel after the fact"
    );
    assert_eq!(ctx.cause(), Some(Cause::Shutdown), "the first cause stays");
    assert_eq!(child.cause(), Some(Cause::Shutdown));

    // Dropping the guard after a cancel changes nothing either.
    let (ctx, guard) = bg().with_cancel();
    assert!(guard.cancel_ref(Cause::ClientGone));
    drop(guard);
    assert_eq!(ctx.cause(), Some(Cause::ClientGone));
}

#[test]
fn disarmed_guard_never_cancels() {
    let (parent, pg) = bg().with_cancel();
    let (ctx, guard) = parent.with_cancel();
    guard.disarm();
    assert!(!ctx.is_done());
    assert_eq!(
        parent.live_children(),
        1,
        "still linked: it ends with its parent"
    );
    pg.cancel_with(Cause::Shutdown);
    assert_eq!(ctx.cause(), Some(Cause::Shutdown));
}

// Go: TestWithCancelCanceledParent
#[test]
fn child_of_cancelled_parent_is_born_cancelled_with_parents_cause() {
    let because = err_cause("Because!");
    let (parent, pcancel) = bg().with_cancel();
    pcancel.cancel_with(because.clone());

    let (c, _g) = parent.with_cancel();
    assert!(c.is_done(), "done immediately upon construction");
    assert!(c.cause().unwrap().is_canceled());
    assert_eq!(
        c.cause(),
        Some(because.clone()),
        "same cause, not just an equal message"
    );
    assert_eq!(poll_once(pin!(c.done())), Poll::Ready(because.clone()));

    let (t, _tg) = parent.with_timeout(VERY_LONG);
    assert_eq!(t.cause(), Some(because.clone()));
    let (gc, _gg) = c.with_cancel();
    assert_eq!(gc.cause(), Some(because.clone()), "and the grandchild too");
    assert_eq!(
        parent.live_children(),
        0,
        "born-ended children are never linked"
    );

    // Built-in causes too.
    let (parent, pcancel) = bg().with_cancel();
    pcancel.cancel_with(Cause::ClientGone);
    let (c, _g) = parent.with_cancel();
    assert_eq!(c.cause(), Some(Cause::ClientGone));
}

// Go: TestWithCancelSimultaneouslyCanceledParent
#[test]
fn child_made_while_parent_is_cancelled_ends_with_parents_cause() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for _ in 0..200 {
        let because = err_cause("Because!");
        let (parent, pcancel) = bg().with_cancel();
        let cause = because.clone();
        let t = thread::spawn(move || pcancel.cancel_with(cause));
        let (c, _g) = parent.with_cancel();
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), c.done())
                .await
                .expect("child never ended")
        });
        assert_eq!(got, because);
        assert_eq!(c.cause(), Some(because));
        assert!(t.join().unwrap());
        assert_eq!(parent.live_children(), 0);
    }
}

// Go: TestSimultaneousCancels
#[test]
fn simultaneous_cancels() {
    let (root, cancel) = bg().with_cancel();
    let mut all: Vec<(Context, CancelGuard)> = vec![(root.clone(), cancel)];
    let mut queue = vec![root.clone()];
    let mut next = 0;
    while next < queue.len() && all.len() < 100 {
        let parent = queue[next].clone();
        next += 1;
        for _ in 0..4 {
            let (ctx, g) = parent.with_cancel();
            queue.push(ctx.clone());
            all.push((ctx, g));
        }
    }
    let (contexts, guards): (Vec<_>, Vec<_>) = all.into_iter().unzip();
    let start = Arc::new(Barrier::new(guards.len()));
    let threads: Vec<_> = guards
        .into_iter()
        .map(|g| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                g.cancel()
            })
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for ctx in &contexts {
            let cause = tokio::time::timeout(Duration::from_secs(10), ctx.done())
                .await
                .expect("timed out waiting for done");
            assert_eq!(cause, Cause::Canceled);
        }
    });
    for t in threads {
        t.join().expect("a cancel panicked");
    }
    for ctx in &contexts {
        assert_eq!(ctx.live_children(), 0);
    }
}

// Go: TestInterlockedCancels
#[test]
fn interlocked_cancels() {
    let (parent, cancel_parent) = bg().with_cancel();
    let (child, cancel_child) = parent.with_cancel();
    let watcher = {
        let parent = parent.clone();
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(parent.done());
            cancel_child.cancel_with(Cause::Shutdown)
        })
    };
    cancel_parent.cancel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let cause = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), child.done()).await })
        .expect("timed out waiting for child.done()");
    // The watcher may see the parent ended before the cascade reaches the child (the tree is
    // not cancelled atomically), so either cancel may end the child; the winner owns the cause.
    let watcher_won = watcher.join().unwrap();
    let want = if watcher_won {
        Cause::Shutdown
    } else {
        Cause::Canceled
    };
    assert_eq!(cause, want);
    assert_eq!(child.cause(), Some(want));
}

/// The interlock in its tightest form: an after-function that cancels a relative runs inside
/// the parent's cancel. It must neither deadlock nor see the relative live.
#[test]
fn after_func_cancelling_a_relative_inside_cancel() {
    let (parent, cancel_parent) = bg().with_cancel();
    let (child, cancel_child) = parent.with_cancel();
    let (sibling, cancel_sibling) = bg().with_cancel();
    let saw = Arc::new(Mutex::new(None));
    let seen = saw.clone();
    let _h = parent.after(move || {
        *seen.lock().unwrap() = Some((cancel_child.cancel(), cancel_sibling.cancel()));
    });
    cancel_parent.cancel();
    assert_eq!(
        *saw.lock().unwrap(),
        Some((false, true)),
        "child already marked; sibling not"
    );
    assert_eq!(child.cause(), Some(Cause::Canceled));
    assert_eq!(sibling.cause(), Some(Cause::Canceled));
}

// ---------------------------------------------------------------------------------------------
// Layers (Go: TestLayersCancel, TestLayersTimeout)
// ---------------------------------------------------------------------------------------------

/// Typed keys: `Key<0>` … `Key<3>` are four distinct types with the same representation.
#[derive(Debug, PartialEq)]
struct Key<const N: usize>(usize);

fn push_value(ctx: &Context, key: usize, v: usize) -> Context {
    match key {
        0 => ctx.with_value(Key::<0>(v)),
        1 => ctx.with_value(Key::<1>(v)),
        2 => ctx.with_value(Key::<2>(v)),
        _ => ctx.with_value(Key::<3>(v)),
    }
}

fn get_value(ctx: &Context, key: usize) -> Option<usize> {
    match key {
        0 => ctx.value::<Key<0>>().map(|k| k.0),
        1 => ctx.value::<Key<1>>().map(|k| k.0),
        2 => ctx.value::<Key<2>>().map(|k| k.0),
        _ => ctx.value::<Key<3>>().map(|k| k.0),
    }
}

struct Layers {
    ctx: Context,
    guards: Vec<CancelGuard>,
    expected: [Option<usize>; 4],
}

fn build_layers(seed: u64, timeout: Duration) -> Layers {
    let mut rng = Rng(seed | 1);
    let mut ctx = bg();
    let mut guards = Vec::new();
    let mut expected = [None; 4];
    let mut timers = 0;
    let mut i = 0;
    while i < 30 || timers == 0 || guards.is_empty() || expected.iter().all(Option::is_none) {
        match rng.below(3) {
            0 => {
                let k = rng.below(4) as usize;
                ctx = push_value(&ctx, k, i);
                expected[k] = Some(i);
            }
            1 => {
                let (c, g) = ctx.with_cancel();
                ctx = c;
                guards.push(g);
            }
            _ => {
                let (c, g) = ctx.with_timeout(timeout);
                ctx = c;
                guards.push(g);
                timers += 1;
            }
        }
        i += 1;
    }
    Layers {
        ctx,
        guards,
        expected,
    }
}

fn check_values(l: &Layers, ctx: &Context, seed: u64, when: &str) {
    for k in 0..4 {
        assert_eq!(
            get_value(ctx, k),
            l.expected[k],
            "seed {seed}, {when}: key {k}"
        );
    }
}

#[test]
fn layers_cancel() {
    for seed in 1..=50_u64 {
        let mut l = build_layers(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), VERY_LONG);
        assert!(!l.ctx.is_done(), "seed {seed}: done before cancel");
        check_values(&l, &l.ctx, seed, "before cancel");
        let pick = Rng(seed).below(l.guards.len() as u64) as usize;
        let g = l.guards.swap_remove(pick);
        assert!(g.cancel());
        assert!(
            l.ctx.is_done(),
            "seed {seed}: leaf not cancelled synchronously"
        );
        assert_eq!(l.ctx.cause(), Some(Cause::Canceled));
        check_values(&l, &l.ctx, seed, "after cancel");
    }
}

#[timefuse_leak::test(start_paused = true)]
async fn layers_timeout() {
    for seed in 1..=50_u64 {
        let start = Instant::now();
        let l = build_layers(seed.wrapping_mul(0xD1B5_4A32_D192_ED03), ms(1));
        check_values(&l, &l.ctx, seed, "before timeout");
        assert_eq!(l.ctx.done().await, Cause::DeadlineExceeded, "seed {seed}");
        assert_eq!(
            Instant::now() - start,
            ms(1),
            "seed {seed}: ended at its deadline"
        );
        check_values(&l, &l.ctx, seed, "after timeout");
        drop(l);
    }
}

// ---------------------------------------------------------------------------------------------
// WithDeadline / WithTimeout
// ---------------------------------------------------------------------------------------------

// Go: TestDeadline
#[timefuse_leak::test(start_paused = true)]
async fn with_deadline_expires_with_deadline_exceeded() {
    let start = Instant::now();
    let (c, _g) = bg().with_deadline(start + ms(1));
    assert_eq!(c.deadline(), Some(start + ms(1)));
    assert!(!c.is_done());
    assert_eq!(c.done().await, Cause::DeadlineExceeded);
    assert_eq!(
        Instant::now(),
        start + ms(1),
        "woke exactly at the deadline"
    );
    assert!(c.is_done());
    assert_eq!(c.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(c.remaining(), Some(Duration::ZERO));

    // A later deadline under an earlier one ends with the parent
    // (WithDeadline+otherContext+WithDeadline).
    let start = Instant::now();
    let (p, _pg) = bg().with_deadline(start + ms(1));
    let o = p.with_value("other");
    let (c, _g) = o.with_deadline(start + VERY_LONG);
    assert_eq!(
        c.deadline(),
        Some(start + ms(1)),
        "child deadline = min(own, parent)"
    );
    assert_eq!(c.done().await, Cause::DeadlineExceeded);
    assert_eq!(Instant::now(), start + ms(1));
}

#[timefuse_leak::test(start_paused = true)]
async fn child_deadline_is_min_of_own_and_parents() {
    let start = Instant::now();
    let (p, _pg) = bg().with_deadline(start + ms(100));
    let (earlier, _g1) = p.with_deadline(start + ms(40));
    let (later, _g2) = p.with_deadline(start + ms(400));
    let (plain, _g3) = p.with_cancel();
    let (unbounded, _g4) = p.with_timeout(Duration::MAX);
    assert_eq!(earlier.deadline(), Some(start + ms(40)));
    assert_eq!(later.deadline(), Some(start + ms(100)));
    assert_eq!(
        plain.deadline(),
        Some(start + ms(100)),
        "a cancel child inherits the deadline"
    );
    assert_eq!(unbounded.deadline(), Some(start + ms(100)));
    let (free, _g5) = bg().with_timeout(Duration::MAX);
    assert_eq!(
        free.deadline(),
        None,
        "an unrepresentable timeout means no deadline of its own"
    );

    assert_eq!(earlier.done().await, Cause::DeadlineExceeded);
    assert_eq!(Instant::now(), start + ms(40));
    assert!(
        !p.is_done(),
        "an earlier child deadline does not end the parent"
    );
    assert_eq!(later.done().await, Cause::DeadlineExceeded);
    assert_eq!(Instant::now(), start + ms(100));
    assert_eq!(p.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(plain.cause(), Some(Cause::DeadlineExceeded));
}

// Go: TestTimeout
#[timefuse_leak::test(start_paused = true)]
async fn with_timeout_expires_with_deadline_exceeded() {
    let start = Instant::now();
    let (c, _g) = bg().with_timeout(ms(1));
    assert_eq!(c.deadline(), Some(start + ms(1)));
    assert_eq!(c.done().await, Cause::DeadlineExceeded);
    assert_eq!(Instant::now(), start + ms(1));

    let start = Instant::now();
    let (p, _pg) = bg().with_timeout(ms(1));
    let (c, _g) = p.with_value("other").with_timeout(Duration::from_secs(3));
    assert_eq!(c.done().await, Cause::DeadlineExceeded);
    assert_eq!(Instant::now(), start + ms(1));
}

#[timefuse_leak::test(start_paused = true)]
async fn remaining_counts_down_on_paused_time() {
    let (c, _g) = bg().with_timeout(ms(800));
    assert_eq!(c.remaining(), Some(ms(800)));
    tokio::time::advance(ms(300)).await;
    assert_eq!(c.remaining(), Some(ms(500)));
    assert!(!c.is_done());
    tokio::time::advance(ms(500)).await;
    assert_eq!(c.remaining(), Some(Duration::ZERO));
    assert!(c.is_done(), "done exactly at the deadline");
}

// Go: TestDeadline (WithDeadline+inthepast, WithDeadline+now)
#[timefuse_leak::test(start_paused = true)]
async fn past_or_zero_deadline_is_done_at_once() {
    let now = Instant::now();
    let past = now.checked_sub(ms(1)).expect("an instant in the past");
    let (a, _ga) = bg().with_deadline(past);
    let (b, _gb) = bg().with_deadline(now);
    let (c, _gc) = bg().with_timeout(Duration::ZERO);
    for ctx in [&a, &b, &c] {
        assert!(ctx.is_done());
        assert_eq!(ctx.cause(), Some(Cause::DeadlineExceeded));
        assert_eq!(ctx.remaining(), Some(Duration::ZERO));
        assert_eq!(
            poll_once(pin!(ctx.done())),
            Poll::Ready(Cause::DeadlineExceeded)
        );
    }
    assert_eq!(Instant::now(), now, "no time had to pass");
}

#[test]
fn zero_timeout_is_done_without_a_runtime() {
    // A passed deadline is a clock comparison: no timer, so no runtime is needed to see it.
    let (c, _g) = bg().with_timeout(Duration::ZERO);
    assert!(c.is_done());
    assert_eq!(c.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(
        poll_once(pin!(c.done())),
        Poll::Ready(Cause::DeadlineExceeded)
    );
}

// Go: TestCanceledTimeout
#[timefuse_leak::test(start_paused = true)]
async fn cancelled_timeout_reports_canceled() {
    let (p, _pg) = bg().with_timeout(Duration::from_secs(1));
    let o = p.with_value("other");
    let (c, cancel) = o.with_timeout(VERY_LONG);
    cancel.cancel();
    assert!(c.is_done());
    assert_eq!(c.cause(), Some(Cause::Canceled));
    assert!(!p.is_done());
}

/// Deadlines are lazy: with nobody waiting, the expiry is observed on the next check, and a
/// descendant made earlier sees it too.
#[timefuse_leak::test(start_paused = true)]
async fn deadline_is_observed_lazily_by_the_tree() {
    let (p, _pg) = bg().with_timeout(ms(100));
    let (child, _cg) = p.with_cancel();
    let grandchild = child.with_value(7_u8);
    tokio::time::advance(ms(100)).await;
    assert!(grandchild.is_done());
    assert_eq!(grandchild.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(p.cause(), Some(Cause::DeadlineExceeded));
    // A child made after the deadline is done as well.
    let (late, _lg) = p.with_cancel();
    assert_eq!(late.cause(), Some(Cause::DeadlineExceeded));
}

#[timefuse_leak::test(start_paused = true)]
async fn deadline_wakes_waiters_on_descendants() {
    let start = Instant::now();
    let (p, _pg) = bg().with_timeout(ms(100));
    let (child, _cg) = p.with_cancel();
    let (gc, _gg) = child.with_value("v").with_cancel();
    let waiter = tokio::spawn(async move { (gc.done().await, Instant::now()) });
    let (cause, at) = waiter.await.unwrap();
    assert_eq!(cause, Cause::DeadlineExceeded);
    assert_eq!(at, start + ms(100));
    assert_eq!(p.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(child.cause(), Some(Cause::DeadlineExceeded));
}

// Go: TestDeadlineExceededSupportsTimeout
#[test]
fn deadline_exceeded_is_a_timeout() {
    assert!(Cause::DeadlineExceeded.is_deadline_exceeded());
    assert!(!Cause::DeadlineExceeded.is_canceled());
    let io: std::io::Error = Cause::DeadlineExceeded.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    for c in [
        Cause::Canceled,
        Cause::ClientGone,
        Cause::Shutdown,
        err_cause("x"),
    ] {
        assert!(c.is_canceled());
        assert!(!c.is_deadline_exceeded());
        assert_ne!(std::io::Error::from(c).kind(), std::io::ErrorKind::TimedOut);
    }
}

// ---------------------------------------------------------------------------------------------
// WithValue
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct K1(&'static str);
#[derive(Debug, PartialEq)]
struct K2(&'static str);

// Go: TestValues
#[test]
fn values_nearest_wins_and_typed_keys_do_not_collide() {
    let check = |c: &Context, v1: Option<&str>, v2: Option<&str>| {
        assert_eq!(c.value::<K1>().map(|k| k.0), v1);
        assert_eq!(c.value::<K2>().map(|k| k.0), v2);
    };
    let c0 = bg();
    check(&c0, None, None);
    let c1 = c0.with_value(K1("c1k1"));
    check(&c1, Some("c1k1"), None);
    // K2 has the same representation as K1 but is another type: no collision.
    let c2 = c1.with_value(K2("c2k2"));
    check(&c2, Some("c1k1"), Some("c2k2"));
    // The nearest value of a type wins...
    let c3 = c2.with_value(K1("c3k1"));
    check(&c3, Some("c3k1"), Some("c2k2"));
    // ...without changing what the ancestors see.
    check(&c2, Some("c1k1"), Some("c2k2"));
    check(&c1, Some("c1k1"), None);
    // A layer of another type in between does not hide anything.
    let c4 = c3.with_value(0_u64);
    check(&c4, Some("c3k1"), Some("c2k2"));
    assert_eq!(c4.value::<u64>(), Some(&0));
    assert_eq!(c4.value::<u32>(), None, "u32 and u64 are different keys");
    // Go's `otherContext` wrapping: values pass through cancellable layers.
    let (o, _g) = c4.with_cancel();
    check(&o, Some("c3k1"), Some("c2k2"));
    let o2 = o.with_value(K2("o2k2"));
    check(&o2, Some("c3k1"), Some("o2k2"));
}

#[test]
fn value_child_shares_cancellation_and_values_survive_it() {
    let (ctx, cancel) = bg().with_cancel();
    let v = ctx.with_value(K1("kept"));
    assert!(!v.is_done());
    cancel.cancel_with(Cause::Shutdown);
    assert!(
        v.is_done(),
        "a value layer shares its parent's cancellation"
    );
    assert_eq!(v.cause(), Some(Cause::Shutdown));
    assert_eq!(
        v.value::<K1>(),
        Some(&K1("kept")),
        "values survive the cancel"
    );
}

#[test]
fn values_survive_without_cancel_and_children() {
    let (ctx, cancel) = bg().with_value(K1("a")).with_cancel();
    let ctx = ctx.with_value(K2("b"));
    let detached = ctx.without_cancel();
    let (child, _g) = detached.with_cancel();
    cancel.cancel();
    for c in [&detached, &child] {
        assert!(!c.is_done());
        assert_eq!(c.value::<K1>(), Some(&K1("a")));
        assert_eq!(c.value::<K2>(), Some(&K2("b")));
    }
}

/// A 100 000-deep value chain drops without recursion.
#[test]
fn deep_value_chain_drops_on_a_small_stack() {
    on_small_stack(|| {
        let mut ctx = bg().with_value(K1("root"));
        for i in 0..100_000_usize {
            ctx = ctx.with_value(i);
        }
        assert_eq!(ctx.value::<usize>(), Some(&99_999));
        assert_eq!(ctx.value::<K1>(), Some(&K1("root")));
        drop(ctx);
    });
}

// ---------------------------------------------------------------------------------------------
// WithoutCancel
// ---------------------------------------------------------------------------------------------

// Go: TestWithoutCancel
#[timefuse_leak::test(start_paused = true)]
async fn without_cancel_is_never_done_has_no_deadline_and_keeps_values() {
    let (ctx, cancel) = bg().with_value(("key", "value")).with_timeout(ms(10));
    let detached = ctx.without_cancel();
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.remaining(), None);
    assert!(!detached.is_done());
    assert_eq!(detached.cause(), None);
    assert_eq!(detached.value::<(&str, &str)>(), Some(&("key", "value")));

    // Its origin times out and is cancelled: it still is not done.
    assert_eq!(ctx.done().await, Cause::DeadlineExceeded);
    cancel.cancel();
    assert!(!detached.is_done());
    assert_eq!(detached.cause(), None);
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), detached.done())
            .await
            .is_err()
    );
    assert_eq!(detached.value::<(&str, &str)>(), Some(&("key", "value")));
}

// ---------------------------------------------------------------------------------------------
// Cause (Go: TestCause, TestCauseRace)
// ---------------------------------------------------------------------------------------------

#[test]
fn cause_table() {
    let parent_cause = err_cause("parentCause");
    let child_cause = err_cause("childCause");
    let finished_early = err_cause("finishedEarly");
    let forever = Duration::from_secs(1_000_000);

    type Case = (&'static str, Box<dyn Fn() -> Context>, Option<Cause>);
    let pc = parent_cause.clone();
    let cc = child_cause.clone();
    let fe = finished_early.clone();
    let cases: Vec<Case> = vec![
        ("Background", Box::new(Context::background), None),
        (
            "WithCancel",
            Box::new(|| {
                let (c, cancel) = bg().with_cancel();
                cancel.cancel();
                c
            }),
            Some(Cause::Canceled),
        ),
        (
            "WithCancelCause",
            Box::new({
                let pc = pc.clone();
                move || {
                    let (c, cancel) = bg().with_cancel();
                    cancel.cancel_with(pc.clone());
                    c
                }
            }),
            Some(parent_cause.clone()),
        ),
        (
            "parent cause before child",
            Box::new({
                let (pc, cc) = (pc.clone(), cc.clone());
                move || {
                    let (p, cancel_parent) = bg().with_cancel();
                    let (c, cancel_child) = p.with_cancel();
                    cancel_parent.cancel_with(pc.clone());
                    cancel_child.cancel_with(cc.clone());
                    c
                }
            }),
            Some(parent_cause.clone()),
        ),
        (
            "parent cause after child",
            Box::new({
                let (pc, cc) = (pc.clone(), cc.clone());
                move || {
                    let (p, cancel_parent) = bg().with_cancel();
                    let (c, cancel_child) = p.with_cancel();
                    cancel_child.cancel_with(cc.clone());
                    cancel_parent.cancel_with(pc.clone());
                    c
                }
            }),
            Some(child_cause.clone()),
        ),
        (
            "parent cause before plain child cancel",
            Box::new({
                let pc = pc.clone();
                move || {
                    let (p, cancel_parent) = bg().with_cancel();
                    let (c, cancel_child) = p.with_cancel();
                    cancel_parent.cancel_with(pc.clone());
                    cancel_child.cancel();
                    c
                }
            }),
            Some(parent_cause.clone()),
        ),
        (
            "parent cause after plain child cancel",
            Box::new({
                let pc = pc.clone();
                move || {
                    let (p, cancel_parent) = bg().with_cancel();
                    let (c, cancel_child) = p.with_cancel();
                    cancel_child.cancel();
                    cancel_parent.cancel_with(pc.clone());
                    c
                }
            }),
            Some(Cause::Canceled),
        ),
        (
            "child cause after plain parent cancel",
            Box::new({
                let cc = cc.clone();
                move || {
                    let (p, cancel_parent) = bg().with_cancel();
                    let (c, cancel_child) = p.with_cancel();
                    cancel_parent.cancel();
                    cancel_child.cancel_with(cc.clone());
                    c
                }
            }),
            Some(Cause::Canceled),
        ),
        (
            "child cause before plain parent cancel",
            Box::new({
                let cc = cc.clone();
                move || {
                    let (p, cancel_parent) = bg().with_cancel();
                    let (c, cancel_child) = p.with_cancel();
                    cancel_child.cancel_with(cc.clone());
                    cancel_parent.cancel();
                    c
                }
            }),
            Some(child_cause.clone()),
        ),
        (
            "WithTimeout(0) then cancel",
            Box::new(|| {
                let (c, cancel) = bg().with_timeout(Duration::ZERO);
                cancel.cancel();
                c
            }),
            Some(Cause::DeadlineExceeded),
        ),
        (
            "WithTimeout(forever) then cancel",
            Box::new(move || {
                let (c, cancel) = bg().with_timeout(forever);
                cancel.cancel();
                c
            }),
            Some(Cause::Canceled),
        ),
        (
            "WithTimeout(0) under a parent cancelled with a cause (stacked)",
            Box::new({
                let fe = fe.clone();
                move || {
                    let (p, cancel) = bg().with_cancel();
                    let (c, _stop) = p.with_timeout(Duration::ZERO);
                    cancel.cancel_with(fe.clone());
                    c
                }
            }),
            Some(Cause::DeadlineExceeded),
        ),
        (
            "WithTimeout(forever) under a parent cancelled with a cause (stacked canceled)",
            Box::new({
                let fe = fe.clone();
                move || {
                    let (p, cancel) = bg().with_cancel();
                    let (c, _stop) = p.with_timeout(forever);
                    cancel.cancel_with(fe.clone());
                    c
                }
            }),
            Some(finished_early.clone()),
        ),
        ("WithoutCancel", Box::new(|| bg().without_cancel()), None),
        (
            "WithoutCancel of a cancelled context",
            Box::new({
                let fe = fe.clone();
                move || {
                    let (c, cancel) = bg().with_cancel();
                    let d = c.without_cancel();
                    cancel.cancel_with(fe.clone());
                    d
                }
            }),
            None,
        ),
        (
            "WithoutCancel of a timed-out context",
            Box::new(|| {
                let (c, cancel) = bg().with_timeout(Duration::ZERO);
                let d = c.without_cancel();
                cancel.cancel();
                d
            }),
            None,
        ),
    ];
    for (name, make, want) in cases {
        let ctx = make();
        assert_eq!(ctx.is_done(), want.is_some(), "{name}: is_done");
        assert_eq!(ctx.cause(), want, "{name}: cause");
    }
}

#[test]
fn cause_is_inherited_by_every_descendant() {
    let because = err_cause("ledger fenced");
    let (root, cancel) = bg().with_cancel();
    let (a, _ga) = root.with_cancel();
    let (b, _gb) = a.with_value("v").with_timeout(VERY_LONG);
    let (c, _gc) = b.with_cancel();
    cancel.cancel_with(because.clone());
    for ctx in [&root, &a, &b, &c] {
        assert_eq!(ctx.cause(), Some(because.clone()));
    }
}

#[test]
fn custom_error_cause_keeps_the_error() {
    #[derive(Debug)]
    struct PaymentVoided {
        order: u32,
    }
    impl std::fmt::Display for PaymentVoided {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "payment voided for order {}", self.order)
        }
    }
    impl std::error::Error for PaymentVoided {}

    let (ctx, cancel) = bg().with_cancel();
    let (child, _g) = ctx.with_cancel();
    assert!(cancel.cancel_with(Cause::other(PaymentVoided { order: 7 })));
    let cause = child.cause().unwrap();
    assert!(
        cause.is_canceled(),
        "an application cause is a cancellation (Go: Err() == Canceled)"
    );
    assert_eq!(cause.to_string(), "payment voided for order 7");
    let Cause::Other(err) = &cause else {
        panic!("expected Cause::Other, got {cause:?}")
    };
    assert_eq!(
        err.downcast_ref::<PaymentVoided>().map(|p| p.order),
        Some(7)
    );
    let src = std::error::Error::source(&cause).expect("the error is the source");
    assert_eq!(src.to_string(), "payment voided for order 7");
    // Equality is identity of the error, not of its message.
    assert_ne!(cause, err_cause("payment voided for order 7"));
    assert_eq!(ctx.cause(), Some(cause));
}

/// A deadline that has passed is the first cause, even when nobody looked before the cancel.
#[timefuse_leak::test(start_paused = true)]
async fn deadline_beats_a_later_explicit_cancel() {
    let (ctx, cancel) = bg().with_timeout(ms(100));
    let (child, _cg) = ctx.with_cancel();
    tokio::time::advance(ms(150)).await;
    // Nobody observed the deadline; the context has ended all the same.
    assert!(
        !cancel.cancel_with(Cause::Shutdown),
        "the context had already ended at its deadline: the cancel changes nothing"
    );
    assert_eq!(ctx.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(child.cause(), Some(Cause::DeadlineExceeded));

    // Same through a parent: a descendant whose own deadline passed ends with
    // DeadlineExceeded even if an ancestor is cancelled before anyone looked at it.
    let (p, pcancel) = bg().with_cancel();
    let (timed, _tg) = p.with_timeout(ms(100));
    let (under, _ug) = timed.with_cancel();
    let (untimed, _ng) = p.with_cancel();
    tokio::time::advance(ms(150)).await;
    assert!(pcancel.cancel_with(Cause::Shutdown));
    assert_eq!(timed.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(under.cause(), Some(Cause::DeadlineExceeded));
    assert_eq!(untimed.cause(), Some(Cause::Shutdown));
    assert_eq!(p.cause(), Some(Cause::Shutdown));
}

#[test]
fn cause_race_sees_the_cause_as_soon_as_it_sees_the_end() {
    for _ in 0..200 {
        let because = err_cause("TestCauseRace");
        let (ctx, cancel) = bg().with_cancel();
        let (child, _g) = ctx.with_cancel();
        let c = because.clone();
        let t = thread::spawn(move || cancel.cancel_with(c));
        loop {
            // Poll the cause rather than waiting for done: the cause must be readable the
            // moment the end is.
            if let Some(got) = child.cause() {
                assert_eq!(got, because);
                break;
            }
            thread::yield_now();
        }
        assert!(t.join().unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// AfterFunc
// ---------------------------------------------------------------------------------------------

fn flag() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    (runs, move || {
        r.fetch_add(1, SeqCst);
    })
}

// Go: TestAfterFuncCalledAfterCancel
#[test]
fn after_func_runs_once_on_cancel() {
    let (ctx, cancel) = bg().with_cancel();
    let (child, child_cancel) = ctx.with_cancel();
    let (runs, f) = flag();
    let stop = child.after(f);
    assert_eq!(
        runs.load(SeqCst),
        0,
        "not called before the context is done"
    );
    cancel.cancel();
    assert_eq!(runs.load(SeqCst), 1, "called by the time cancel returns");
    child_cancel.cancel();
    assert!(!stop.stop(), "stop() after the run reports false");
    assert_eq!(runs.load(SeqCst), 1, "called exactly once");
}

/// timefuse runs the function on the cancelling thread after the whole subtree is marked
/// (Go runs it in a new goroutine; the documented contract here is stronger).
#[test]
fn after_func_sees_the_subtree_already_ended() {
    let (ctx, cancel) = bg().with_cancel();
    let (child, _cg) = ctx.with_cancel();
    let (grandchild, _gg) = child.with_cancel();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let me = thread::current().id();
    let _h = ctx.after(move || {
        *s.lock().unwrap() = Some((
            grandchild.cause(),
            child.is_done(),
            thread::current().id() == me,
        ));
    });
    cancel.cancel_with(Cause::Shutdown);
    assert_eq!(
        *seen.lock().unwrap(),
        Some((Some(Cause::Shutdown), true, true))
    );
}

// Go: TestAfterFuncCalledImmediately
#[test]
fn after_func_runs_at_once_on_a_done_context() {
    let (ctx, cancel) = bg().with_cancel();
    cancel.cancel();
    let (runs, f) = flag();
    let stop = ctx.after(f);
    assert_eq!(runs.load(SeqCst), 1);
    assert!(!stop.stop());

    // A passed deadline counts as done, and needs no runtime.
    let (ctx, _g) = bg().with_timeout(Duration::ZERO);
    let (runs, f) = flag();
    let stop = ctx.after(f);
    assert_eq!(runs.load(SeqCst), 1);
    assert!(!stop.stop());
}

// Go: TestAfterFuncNotCalledAfterStop, TestCustomContextAfterFuncUnregisterAfterFunc
#[test]
fn after_func_stopped_before_never_runs() {
    let (ctx, cancel) = bg().with_cancel();
    let (runs, f) = flag();
    let stop = ctx.after(f);
    assert_eq!(Arc::strong_count(&runs), 2, "the closure is registered");
    assert!(stop.stop(), "stop() before the cancel reports true");
    assert_eq!(Arc::strong_count(&runs), 1, "stop released the closure");
    cancel.cancel();
    assert_eq!(runs.load(SeqCst), 0);
}

#[test]
fn after_funcs_run_independently() {
    let (ctx, cancel) = bg().with_cancel();
    let (a, fa) = flag();
    let (b, fb) = flag();
    let (c, fc) = flag();
    let ha = ctx.after(fa);
    let hb = ctx.after(fb);
    drop(ctx.after(fc)); // a dropped handle does not unregister (Go: ignoring stop)
    assert!(hb.stop());
    cancel.cancel();
    assert_eq!((a.load(SeqCst), b.load(SeqCst), c.load(SeqCst)), (1, 0, 1));
    assert!(!ha.stop());
}

/// On a context that can never end, `f` never runs, so stopping it prevents the run: Go's
/// `stop()` returns true there.
#[test]
fn after_func_on_a_never_done_context() {
    for ctx in [
        bg(),
        bg().with_value(1_u8),
        bg().with_cancel().0.without_cancel(),
    ] {
        let (runs, f) = flag();
        let stop = ctx.after(f);
        assert_eq!(runs.load(SeqCst), 0);
        assert!(
            stop.stop(),
            "f can never run: stop() reports that it prevented the run"
        );
        assert_eq!(runs.load(SeqCst), 0);
    }
}

// Go: TestAfterFuncCalledAfterTimeout
#[timefuse_leak::test(start_paused = true)]
async fn after_func_runs_on_deadline_expiry() {
    let start = Instant::now();
    let (ctx, _g) = bg().with_timeout(ms(100));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _h = ctx.after(move || {
        let _ = tx.send(Instant::now());
    });
    // Nobody else waits on the context: the function alone must notice the deadline.
    let at = rx.await.expect("after-function dropped without running");
    assert_eq!(at, start + ms(100));
    assert_eq!(ctx.cause(), Some(Cause::DeadlineExceeded));
}

#[timefuse_leak::test(start_paused = true)]
async fn after_func_stopped_before_deadline_never_runs() {
    let (ctx, _g) = bg().with_timeout(ms(100));
    let (runs, f) = flag();
    let h = ctx.after(f);
    assert!(h.stop());
    tokio::time::sleep(ms(200)).await;
    assert!(ctx.is_done());
    assert_eq!(runs.load(SeqCst), 0);
}

// Go: TestCustomContextGoroutines — nothing runs in the background unless asked for.
#[timefuse_leak::test(start_paused = true)]
async fn no_background_tasks_until_an_after_func_needs_one() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (ctx1, cancel1) = bg().with_cancel();
    let (ctx3, _c3) = ctx1.with_value("v").with_cancel();
    let (ctx4, _c4) = ctx3.with_timeout(Duration::from_secs(3600));
    let (ctx5, cancel5) = ctx4.with_cancel();
    assert!(!ctx5.is_done());
    cancel5.cancel();
    let (_ctx6, _c6) = ctx5.with_timeout(Duration::from_secs(3600));
    assert_eq!(
        metrics.num_alive_tasks(),
        0,
        "contexts and deadlines spawn nothing"
    );

    // A cancel-only context runs its after-function on the canceller: still no task.
    let _h = ctx3.after(|| {});
    assert_eq!(metrics.num_alive_tasks(), 0);

    // A deadline with an after-function needs a watcher; stopping it removes the watcher.
    let h = ctx4.after(|| {});
    assert_eq!(
        metrics.num_alive_tasks(),
        1,
        "one watcher task for the deadline"
    );
    assert!(h.stop());
    for _ in 0..100 {
        if metrics.num_alive_tasks() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), 0, "stop() aborts the watcher");
    cancel1.cancel();
}

// ---------------------------------------------------------------------------------------------
// done()
// ---------------------------------------------------------------------------------------------

#[timefuse_leak::test]
async fn done_wakes_on_cancel() {
    let (ctx, cancel) = bg().with_cancel();
    let (child, _cg) = ctx.with_cancel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        let mut done = pin!(child.done());
        assert!(poll_once(done.as_mut()).is_pending());
        tx.send(()).unwrap();
        done.await
    });
    rx.await.unwrap(); // the waiter is about to register
    cancel.cancel_with(Cause::ClientGone);
    assert_eq!(waiter.await.unwrap(), Cause::ClientGone);
}

#[test]
fn done_registration_wakes_exactly_the_registered_waiters() {
    let (ctx, cancel) = bg().with_cancel();
    let (child, _cg) = ctx.with_cancel();
    let w = Arc::new(CountingWaker::default());
    let waker = Waker::from(w.clone());
    let mut cx = TaskCx::from_waker(&waker);
    let mut waiters: Vec<Pin<Box<timefuse::Done>>> = Vec::new();
    for i in 0..1000 {
        let mut d = Box::pin(if i % 2 == 0 { ctx.done() } else { child.done() });
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert!(
            d.as_mut().poll(&mut cx).is_pending(),
            "a re-poll does not register twice"
        );
        waiters.push(d);
    }
    // One registered clone per waiter, plus `w` and `waker`.
    assert_eq!(Arc::strong_count(&w), 1002);
    assert_eq!(w.wakes.load(SeqCst), 0);
    cancel.cancel();
    assert_eq!(w.wakes.load(SeqCst), 1000, "every waiter woken, once");
    assert_eq!(Arc::strong_count(&w), 2, "the woken wakers were released");
    for d in &mut waiters {
        assert_eq!(d.as_mut().poll(&mut cx), Poll::Ready(Cause::Canceled));
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_waiters_on_many_threads_all_wake() {
    let (root, cancel) = bg().with_cancel();
    let (mid, _mg) = root.with_cancel();
    let ready = Arc::new(tokio::sync::Barrier::new(201));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ctx = if i % 2 == 0 {
            root.clone()
        } else {
            let (c, g) = mid.with_cancel();
            g.disarm();
            c
        };
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = pin!(ctx.done());
            let first = poll_once(done.as_mut());
            ready.wait().await;
            match first {
                Poll::Ready(c) => c,
                Poll::Pending => done.await,
            }
        }));
    }
    ready.wait().await;
    cancel.cancel_with(Cause::Shutdown);
    for t in tasks {
        let got = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("waiter hung");
        assert_eq!(got.unwrap(), Cause::Shutdown);
    }
}

#[test]
fn dropped_done_unregisters() {
    let (ctx, cancel) = bg().with_cancel();
    let w = Arc::new(CountingWaker::default());
    for _ in 0..100_000 {
        let waker = Waker::from(w.clone());
        let mut cx = TaskCx::from_waker(&waker);
        let mut d = Box::pin(ctx.done());
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            Arc::strong_count(&w),
            3,
            "registered: w, waker and the stored clone"
        );
        drop(d);
        assert_eq!(
            Arc::strong_count(&w),
            2,
            "dropping the future released its registration"
        );
    }
    assert_eq!(Arc::strong_count(&w), 1);

    // A waiter re-polled with another waker swaps it in and releases the old one.
    let w1 = Arc::new(CountingWaker::default());
    let w2 = Arc::new(CountingWaker::default());
    let mut d = Box::pin(ctx.done());
    assert!(
        d.as_mut()
            .poll(&mut TaskCx::from_waker(&Waker::from(w1.clone())))
            .is_pending()
    );
    assert!(
        d.as_mut()
            .poll(&mut TaskCx::from_waker(&Waker::from(w2.clone())))
            .is_pending()
    );
    assert_eq!((Arc::strong_count(&w1), Arc::strong_count(&w2)), (1, 2));

    cancel.cancel();
    assert_eq!(
        w.wakes.load(SeqCst),
        0,
        "no stale registration was left to wake"
    );
    assert_eq!(
        (w1.wakes.load(SeqCst), w2.wakes.load(SeqCst)),
        (0, 1),
        "the newest waker is woken"
    );
    assert_eq!(poll_once(d.as_mut()), Poll::Ready(Cause::Canceled));
    // Dropping a future whose context ended is fine too.
    drop(d);
}

#[test]
fn new_done_after_the_end_is_ready_at_once() {
    // Cancel safety: a dropped waiter loses nothing; a new one sees the end.
    let (ctx, cancel) = bg().with_cancel();
    drop(Box::pin(ctx.done()));
    let mut d = Box::pin(ctx.done());
    assert!(poll_once(d.as_mut()).is_pending());
    drop(d);
    cancel.cancel_with(Cause::Shutdown);
    assert_eq!(poll_once(pin!(ctx.done())), Poll::Ready(Cause::Shutdown));
}

// ---------------------------------------------------------------------------------------------
// run()
// ---------------------------------------------------------------------------------------------

#[timefuse_leak::test(start_paused = true)]
async fn run_returns_ok_when_the_future_wins() {
    let (ctx, _g) = bg().with_timeout(ms(100));
    assert_eq!(ctx.run(async { 7 }).await, Ok(7));
    let slept = ctx.run(tokio::time::sleep(ms(50))).await;
    assert_eq!(slept, Ok(()));
    assert!(!ctx.is_done());
    assert_eq!(bg().run(async { "bg" }).await, Ok("bg"));
}

#[test]
fn run_future_wins_a_tie() {
    // Live at the first poll; by the second both the future and the context are ready.
    let (ctx, cancel) = bg().with_cancel();
    let mut first = true;
    let fut = std::future::poll_fn(move |_| {
        if std::mem::take(&mut first) {
            Poll::Pending
        } else {
            Poll::Ready(42)
        }
    });
    let mut run = pin!(ctx.run(fut));
    assert!(poll_once(run.as_mut()).is_pending());
    cancel.cancel();
    assert_eq!(poll_once(run.as_mut()), Poll::Ready(Ok(42)));
}

#[timefuse_leak::test(start_paused = true)]
async fn run_returns_the_cause_when_the_context_wins() {
    let start = Instant::now();
    let (ctx, _g) = bg().with_timeout(ms(100));
    let got = ctx.run(std::future::pending::<()>()).await;
    assert_eq!(got, Err(Cause::DeadlineExceeded));
    assert_eq!(Instant::now(), start + ms(100));

    let (ctx, cancel) = bg().with_cancel();
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let guard = SetOnDrop(dropped.clone());
    let runner = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            ctx.run(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            })
            .await
        }
    });
    tokio::task::yield_now().await;
    cancel.cancel_with(Cause::ClientGone);
    assert_eq!(runner.await.unwrap(), Err(Cause::ClientGone));
    assert!(dropped.load(SeqCst), "the losing future is dropped");
}

#[test]
fn run_never_polls_the_future_when_the_context_is_already_done() {
    let polled = Arc::new(AtomicBool::new(false));
    let make = |polled: Arc<AtomicBool>| {
        std::future::poll_fn(move |_| {
            polled.store(true, SeqCst);
            Poll::Ready(())
        })
    };
    let (ctx, cancel) = bg().with_cancel();
    cancel.cancel_with(Cause::Shutdown);
    assert_eq!(
        poll_once(pin!(ctx.run(make(polled.clone())))),
        Poll::Ready(Err(Cause::Shutdown))
    );
    assert!(
        !polled.load(SeqCst),
        "work whose budget is gone is never started"
    );

    // A deadline that passed unobserved counts as done too.
    let (ctx, _g) = bg().with_timeout(Duration::ZERO);
    assert_eq!(
        poll_once(pin!(ctx.run(make(polled.clone())))),
        Poll::Ready(Err(Cause::DeadlineExceeded))
    );
    assert!(!polled.load(SeqCst));
}

// ---------------------------------------------------------------------------------------------
// A dropped child unlinks itself
// ---------------------------------------------------------------------------------------------

#[test]
fn a_million_short_lived_children_do_not_grow_the_parent() {
    let (parent, _g) = bg().with_cancel();
    let (held, _hg) = parent.with_cancel(); // a long-lived sibling that stays linked
    for i in 0..1_000_000_u32 {
        let (child, guard) = parent.with_cancel();
        assert_eq!(parent.live_children(), 2);
        match i % 3 {
            0 => drop((child, guard)), // the guard cancels, then the node drops
            1 => {
                guard.disarm(); // never cancelled: the node's Drop unlinks it
                drop(child);
            }
            _ => {
                let (grandchild, gg) = child.with_timeout(VERY_LONG);
                gg.disarm();
                guard.disarm();
                drop(child);
                drop(grandchild); // the last handle releases the chain
            }
        }
        if i % 100_000 == 0 {
            assert_eq!(parent.live_children(), 1, "iteration {i}");
        }
    }
    assert_eq!(parent.live_children(), 1);
    assert!(!held.is_done());
    // Allocation does not grow either: one child costs one allocation in the steady state.
    let per_child = allocs_per_run(1000, || {
        let (c, g) = parent.with_cancel();
        g.disarm();
        drop(c);
    });
    assert!(
        per_child <= 1.0,
        "{per_child} allocations per short-lived child"
    );
}

#[test]
fn cancelled_children_unlink_while_still_held() {
    let (parent, pg) = bg().with_cancel();
    let kids: Vec<_> = (0..10_000).map(|_| parent.with_cancel()).collect();
    assert_eq!(parent.live_children(), 10_000);
    let mut held = Vec::new();
    for (i, (c, g)) in kids.into_iter().enumerate() {
        if i % 2 == 0 {
            g.cancel();
        } else {
            g.cancel_with(Cause::Shutdown);
        }
        held.push(c);
    }
    assert_eq!(
        parent.live_children(),
        0,
        "cancelled children left the list though still held"
    );
    assert!(held.iter().all(Context::is_done));
    assert!(!parent.is_done());
    pg.cancel();
    assert_eq!(
        held[1].cause(),
        Some(Cause::Shutdown),
        "their own cause stays"
    );
}

#[test]
fn children_dropped_in_any_order_keep_the_list_exact() {
    let (parent, _g) = bg().with_cancel();
    let mut rng = Rng(0x5eed);
    let mut kids: Vec<Option<Context>> = (0..2000)
        .map(|_| {
            let (c, g) = parent.with_cancel();
            g.disarm();
            Some(c)
        })
        .collect();
    let mut live = kids.len();
    while live > 0 {
        let i = rng.below(kids.len() as u64) as usize;
        if let Some(c) = kids[i].take() {
            drop(c);
            live -= 1;
            assert_eq!(parent.live_children(), live);
        }
        // Every survivor is still linked: a parent cancel reaches each of them.
    }
    let (parent, pg) = bg().with_cancel();
    let mut kids: Vec<Context> = (0..500)
        .map(|_| {
            let (c, g) = parent.with_cancel();
            g.disarm();
            c
        })
        .collect();
    for _ in 0..250 {
        let i = rng.below(kids.len() as u64) as usize;
        kids.swap_remove(i);
    }
    assert_eq!(parent.live_children(), 250);
    pg.cancel_with(Cause::Shutdown);
    assert!(
        kids.iter().all(|k| k.cause() == Some(Cause::Shutdown)),
        "no survivor was missed"
    );
}

#[test]
fn deep_chain_cancels_and_drops_on_a_small_stack() {
    on_small_stack(|| {
        let (root, cancel) = bg().with_cancel();
        let mut leaf = root.clone();
        let mut middle = None;
        for i in 0..100_000 {
            let (c, g) = leaf.with_cancel();
            g.disarm();
            leaf = c;
            if i == 50_000 {
                middle = Some(leaf.clone());
            }
        }
        assert!(!leaf.is_done());
        assert!(cancel.cancel_with(Cause::Shutdown));
        assert_eq!(leaf.cause(), Some(Cause::Shutdown));
        assert_eq!(middle.as_ref().unwrap().cause(), Some(Cause::Shutdown));
        drop(root);
        drop(middle);
        drop(leaf);
    });
}

#[test]
fn deep_chain_drops_without_cancel_on_a_small_stack() {
    on_small_stack(|| {
        let (root, _cancel) = bg().with_cancel();
        let mut leaf = root.clone();
        for _ in 0..100_000 {
            let (c, g) = leaf.with_timeout(VERY_LONG);
            g.disarm();
            leaf = c.with_value(1_u8);
        }
        assert_eq!(root.live_children(), 1);
        drop(leaf); // releases 100 000 nodes and values, none of them cancelled
        assert_eq!(root.live_children(), 0);
    });
}

#[test]
fn deep_chain_cancelled_from_the_middle_on_a_small_stack() {
    on_small_stack(|| {
        let (root, _cancel) = bg().with_cancel();
        let mut leaf = root.clone();
        let mut middle_guard = None;
        let mut guards = Vec::new();
        for i in 0..100_000 {
            let (c, g) = leaf.with_cancel();
            if i == 50_000 {
                middle_guard = Some(g);
            } else {
                guards.push(g);
            }
            leaf = c;
        }
        middle_guard.unwrap().cancel();
        assert!(leaf.is_done());
        assert!(!root.is_done());
        assert_eq!(root.live_children(), 1, "the upper half is untouched");
        drop(guards); // the first guard cancels the upper half; the rest find it ended
        drop(leaf);
        assert_eq!(root.live_children(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Allocation counts (Go: TestAllocs)
// ---------------------------------------------------------------------------------------------

#[test]
fn allocation_counts() {
    let bg = bg();
    let n = allocs_per_run(100, || drop(Context::background()));
    assert_eq!(n, 0.0, "background()");
    let n = allocs_per_run(100, || {
        let c = bg.with_value(1_u32);
        assert_eq!(c.value::<u32>(), Some(&1));
    });
    assert!(n <= 1.0, "with_value: {n}");
    let n = allocs_per_run(100, || {
        let (c, cancel) = bg.with_cancel();
        cancel.cancel();
        assert!(c.is_done());
        assert_eq!(c.cause(), Some(Cause::Canceled));
    });
    assert!(n <= 1.0, "with_cancel + cancel + is_done: {n}");
    let n = allocs_per_run(100, || {
        let (c, cancel) = bg.with_timeout(ms(5));
        cancel.cancel();
        assert!(c.is_done());
        assert_eq!(poll_once(pin!(c.done())), Poll::Ready(Cause::Canceled));
    });
    assert!(n <= 1.0, "with_timeout + cancel + done: {n}");
    let n = allocs_per_run(100, || {
        let (c, _g) = bg.with_timeout(Duration::ZERO);
        assert!(c.is_done());
    });
    assert!(n <= 1.0, "with_timeout(0) + is_done: {n}");
}

// ---------------------------------------------------------------------------------------------
// Task-local current context
// ---------------------------------------------------------------------------------------------

#[timefuse_leak::test]
async fn current_defaults_to_background() {
    assert!(Context::try_current().is_none());
    let cur = Context::current();
    assert!(!cur.is_done());
    assert_eq!(cur.deadline(), None);
    assert!(cur.same_as(&Context::background()));
}

#[timefuse_leak::test(start_paused = true)]
async fn scope_sets_nests_and_restores_the_current_context() {
    let (outer, cancel) = bg().with_value(K1("outer")).with_timeout(ms(100));
    let inner = outer.with_value(K1("inner"));
    outer
        .scope(async {
            let cur = Context::current();
            assert!(cur.same_as(&outer));
            assert_eq!(cur.value::<K1>(), Some(&K1("outer")));
            assert_eq!(cur.deadline(), outer.deadline());
            inner
                .scope(async {
                    assert_eq!(Context::current().value::<K1>(), Some(&K1("inner")));
                    // The current context is the real one: it sees the cancel.
                    assert!(!Context::current().is_done());
                })
                .await;
            assert_eq!(
                Context::current().value::<K1>(),
                Some(&K1("outer")),
                "restored"
            );
            let seen = inner.sync_scope(|| Context::current().value::<K1>().map(|k| k.0));
            assert_eq!(seen, Some("inner"));
            // A spawned task does not inherit task-locals.
            let spawned = tokio::spawn(async { Context::try_current().is_none() });
            assert!(spawned.await.unwrap());
            cancel.cancel_with(Cause::Shutdown);
            assert_eq!(Context::current().cause(), Some(Cause::Shutdown));
        })
        .await;
    assert!(Context::try_current().is_none(), "restored after the scope");
}

// ---------------------------------------------------------------------------------------------
// Concurrency smoke tests with real threads
// ---------------------------------------------------------------------------------------------

#[test]
fn threads_create_and_drop_children_while_another_cancels() {
    const WORKERS: usize = 3;
    const PER_WORKER: usize = 20_000;
    for round in 0..10 {
        let (parent, cancel) = bg().with_cancel();
        let progress = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(WORKERS + 1));
        let workers: Vec<_> = (0..WORKERS)
            .map(|t| {
                let (parent, progress, start) = (parent.clone(), progress.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    let mut kept = Vec::new();
                    for i in 0..PER_WORKER {
                        let (c, g) = parent.with_cancel();
                        match (i + t) % 5 {
                            0 => kept.push((c, Some(g))),
                            1 => {
                                g.disarm();
                                kept.push((c, None));
                            }
                            2 => drop((c, g)),
                            3 => {
                                g.disarm();
                                drop(c);
                            }
                            _ => {
                                let (gc, gg) = c.with_cancel();
                                drop(c);
                                gg.cancel();
                                drop((gc, g));
                            }
                        }
                        progress.fetch_add(1, SeqCst);
                    }
                    kept
                })
            })
            .collect();
        let canceller = {
            let progress = progress.clone();
            thread::spawn(move || {
                start.wait();
                // Cancel in the middle of the workers' run (explicit progress, not a sleep).
                let target = (WORKERS * PER_WORKER) / 2 + round * 1000;
                while progress.load(SeqCst) < target {
                    std::hint::spin_loop();
                    thread::yield_now();
                }
                cancel.cancel_with(Cause::Shutdown)
            })
        };
        let kept: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        assert!(canceller.join().unwrap());
        assert!(!kept.is_empty());
        for (c, _g) in &kept {
            assert!(
                c.is_done(),
                "round {round}: a surviving child missed the cancel"
            );
            assert_eq!(c.cause(), Some(Cause::Shutdown));
        }
        assert_eq!(parent.live_children(), 0, "round {round}");
    }
}

#[test]
fn threads_create_and_drop_children_without_cancel_keep_the_count_exact() {
    const WORKERS: usize = 4;
    let (parent, _cancel) = bg().with_cancel();
    let start = Arc::new(Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|t| {
            let (parent, start) = (parent.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut rng = Rng(0xC0FFEE + t as u64);
                let mut kept: Vec<Context> = Vec::new();
                for _ in 0..20_000 {
                    match rng.below(4) {
                        0 if !kept.is_empty() => {
                            let i = rng.below(kept.len() as u64) as usize;
                            kept.swap_remove(i);
                        }
                        1 => {
                            let (c, g) = parent.with_cancel();
                            g.disarm();
                            kept.push(c);
                        }
                        _ => {
                            let (c, g) = parent.with_cancel();
                            g.disarm();
                            drop(c);
                        }
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<Vec<Context>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let total: usize = kept.iter().map(Vec::len).sum();
    assert_eq!(
        parent.live_children(),
        total,
        "exactly the survivors are linked"
    );

    // Drop the survivors from all threads at once.
    let start = Arc::new(Barrier::new(kept.len()));
    let droppers: Vec<_> = kept
        .into_iter()
        .map(|k| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                drop(k);
            })
        })
        .collect();
    for d in droppers {
        d.join().unwrap();
    }
    assert_eq!(parent.live_children(), 0);
}

#[test]
fn threads_cancel_their_children_while_the_parent_is_cancelled() {
    for _ in 0..20 {
        let (parent, cancel) = bg().with_cancel();
        let kids: Vec<_> = (0..4_000).map(|_| parent.with_cancel()).collect();
        let mut chunks: Vec<Vec<(Context, CancelGuard)>> = Vec::new();
        let mut it = kids.into_iter();
        for _ in 0..3 {
            chunks.push(it.by_ref().take(1_334).collect());
        }
        let start = Arc::new(Barrier::new(4));
        let threads: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    chunk
                        .into_iter()
                        .map(|(c, g)| {
                            let mine = g.cancel_with(Cause::ClientGone);
                            (c, mine)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        start.wait();
        cancel.cancel_with(Cause::Shutdown);
        for t in threads {
            for (c, mine) in t.join().unwrap() {
                let want = if mine {
                    Cause::ClientGone
                } else {
                    Cause::Shutdown
                };
                assert_eq!(
                    c.cause(),
                    Some(want),
                    "the winner of each race owns the cause"
                );
            }
        }
        assert_eq!(parent.live_children(), 0);
    }
}
