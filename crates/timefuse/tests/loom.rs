//! loom models of the cancel tree's races: waiter registration, child creation and drop, causes
//! and after-functions, each against a concurrent cancel (in the manner of tokio-util's
//! `CancellationToken` loom tests).
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg timefuse_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p timefuse --test loom --release
//! ```
//!
//! The preemption bound defaults to 3 here (override with `LOOM_MAX_PREEMPTIONS`). The models
//! use no deadlines: a deadline path touches tokio's timers, which loom does not model.
#![cfg(timefuse_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context as TaskCx, Poll, Wake, Waker};

use loom::future::block_on;
use loom::thread;
use timefuse::{Cause, Context};

/// `loom::model` with a default preemption bound, so the whole file stays within minutes.
fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn bg() -> Context {
    Context::background()
}

fn err_cause(msg: &'static str) -> Cause {
    Cause::other(std::io::Error::other(msg))
}

/// A std waker whose `Arc` strong count counts its live clones.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

/// No lost wake-up: a waiter registering while the context is cancelled always returns.
#[test]
fn cancel_races_done_registration() {
    model(|| {
        let (ctx, guard) = bg().with_cancel();
        let waiter = thread::spawn(move || block_on(ctx.done()));
        guard.cancel_with(Cause::Shutdown);
        assert_eq!(waiter.join().unwrap(), Cause::Shutdown);
    });
}

/// The same through the cascade: the waiter sits on a grandchild of the cancelled node.
#[test]
fn cancel_wakes_a_waiter_on_a_descendant() {
    model(|| {
        let (root, guard) = bg().with_cancel();
        let (child, _cg) = root.with_cancel();
        let (grandchild, _gg) = child.with_value(1_u8).with_cancel();
        let waiter = thread::spawn(move || block_on(grandchild.done()));
        guard.cancel_with(Cause::ClientGone);
        assert_eq!(waiter.join().unwrap(), Cause::ClientGone);
        assert_eq!(child.cause(), Some(Cause::ClientGone));
    });
}

/// A registered `done()` future dropped while the context is cancelled leaks no waker and
/// leaves nothing behind to wake.
#[test]
fn done_drop_races_cancel() {
    model(|| {
        let (ctx, guard) = bg().with_cancel();
        let w = Arc::new(CountingWaker::default());
        let t = {
            let w = w.clone();
            thread::spawn(move || {
                let waker = Waker::from(w);
                let mut done = Box::pin(ctx.done());
                let first = done.as_mut().poll(&mut TaskCx::from_waker(&waker));
                drop(done);
                first
            })
        };
        guard.cancel();
        let first = t.join().unwrap();
        assert_eq!(
            Arc::strong_count(&w),
            1,
            "the registered waker clone was released"
        );
        match first {
            Poll::Ready(cause) => assert_eq!(cause, Cause::Canceled),
            Poll::Pending => assert!(w.wakes.load(SeqCst) <= 1),
        }
    });
}

/// A child made while its parent is cancelled ends either way, with the parent's cause, and
/// the parent keeps no link to it.
#[test]
fn cancel_races_child_creation() {
    model(|| {
        let because = err_cause("parent gone");
        let (parent, guard) = bg().with_cancel();
        let maker = {
            let parent = parent.clone();
            thread::spawn(move || {
                let (child, child_guard) = parent.with_cancel();
                let cause = block_on(child.done());
                (child, child_guard, cause)
            })
        };
        assert!(guard.cancel_with(because.clone()));
        let (child, child_guard, cause) = maker.join().unwrap();
        assert_eq!(cause, because);
        assert_eq!(child.cause(), Some(because.clone()));
        assert!(!child_guard.cancel(), "the child had already ended");
        assert_eq!(parent.live_children(), 0);
    });
}

/// A child dropped while its parent is cancelled: no panic, no use after free, and the parent's
/// list ends up empty; the sibling still held is cancelled.
#[test]
fn child_drop_races_parent_cancel() {
    model(|| {
        let (parent, guard) = bg().with_cancel();
        let (gone, g1) = parent.with_cancel();
        g1.disarm();
        let (kept, g2) = parent.with_cancel();
        g2.disarm();
        let dropper = thread::spawn(move || drop(gone));
        guard.cancel_with(Cause::Shutdown);
        dropper.join().unwrap();
        assert_eq!(parent.live_children(), 0);
        assert_eq!(kept.cause(), Some(Cause::Shutdown));
    });
}

/// Two children dropped at once, one of them the entry the other's removal moves: the list stays
/// exact and the survivor stays reachable by a later cancel.
#[test]
fn sibling_drops_race_each_other() {
    model(|| {
        let (parent, guard) = bg().with_cancel();
        let mut kids: Vec<Context> = (0..3)
            .map(|_| {
                let (c, g) = parent.with_cancel();
                g.disarm();
                c
            })
            .collect();
        let last = kids.pop().unwrap();
        let survivor = kids.pop().unwrap();
        let first = kids.pop().unwrap();
        let a = thread::spawn(move || drop(first));
        let b = thread::spawn(move || drop(last));
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(parent.live_children(), 1);
        guard.cancel();
        assert!(survivor.is_done());
        assert_eq!(parent.live_children(), 0);
    });
}

/// Two cancellers with different causes: exactly one wins, and every observer (the node, a
/// descendant and a waiter) sees the winner's cause.
#[test]
fn two_cancellers_one_cause() {
    model(|| {
        let a = err_cause("a");
        let b = err_cause("b");
        let (ctx, guard) = bg().with_cancel();
        let (child, _cg) = ctx.with_cancel();
        let guard = Arc::new(guard);
        let t1 = {
            let (guard, a) = (guard.clone(), a.clone());
            thread::spawn(move || guard.cancel_ref(a))
        };
        let t2 = {
            let (guard, b) = (guard.clone(), b.clone());
            thread::spawn(move || guard.cancel_ref(b))
        };
        let seen = block_on(child.done());
        let (won_a, won_b) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(won_a ^ won_b, "exactly one cancel wins");
        let winner = if won_a { a } else { b };
        assert_eq!(seen, winner);
        assert_eq!(ctx.cause(), Some(winner.clone()));
        assert_eq!(child.cause(), Some(winner));
    });
}

/// A parent cancel racing a child's own cancel: each node is ended once, by whichever reached
/// it first, and the parent's list is empty afterwards.
#[test]
fn parent_cancel_races_child_cancel() {
    model(|| {
        let (parent, guard) = bg().with_cancel();
        let (child, child_guard) = parent.with_cancel();
        let (grandchild, _gg) = child.with_cancel();
        let t = thread::spawn(move || child_guard.cancel_with(Cause::ClientGone));
        assert!(guard.cancel_with(Cause::Shutdown));
        let child_won = t.join().unwrap();
        let want = if child_won {
            Cause::ClientGone
        } else {
            Cause::Shutdown
        };
        assert_eq!(child.cause(), Some(want.clone()));
        assert_eq!(grandchild.cause(), Some(want));
        assert_eq!(parent.cause(), Some(Cause::Shutdown));
        assert_eq!(parent.live_children(), 0);
        assert_eq!(child.live_children(), 0);
    });
}

/// An after-function registered and stopped while the context is cancelled: it runs exactly
/// once, or `stop` returns true and it never runs; never both, never neither.
#[test]
fn after_func_stop_races_cancel() {
    model(|| {
        let (ctx, guard) = bg().with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let t = {
            let runs = runs.clone();
            thread::spawn(move || {
                let handle = ctx.after(move || {
                    runs.fetch_add(1, SeqCst);
                });
                handle.stop()
            })
        };
        guard.cancel();
        let stopped = t.join().unwrap();
        assert_eq!(runs.load(SeqCst), if stopped { 0 } else { 1 });
    });
}

/// An after-function registered while the context is cancelled runs exactly once: by the
/// canceller, or at once by the registering thread.
#[test]
fn after_func_registration_races_cancel() {
    model(|| {
        let (ctx, guard) = bg().with_cancel();
        let (child, _cg) = ctx.with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let t = {
            let runs = runs.clone();
            thread::spawn(move || {
                child.after(move || {
                    runs.fetch_add(1, SeqCst);
                })
            })
        };
        guard.cancel();
        let handle = t.join().unwrap();
        assert_eq!(runs.load(SeqCst), 1);
        assert!(!handle.stop());
        assert_eq!(runs.load(SeqCst), 1);
    });
}

/// `run` against a concurrent cancel: the future never runs after it was seen cancelled, and
/// the result names the cause or the future's output.
#[test]
fn run_races_cancel() {
    model(|| {
        let (ctx, guard) = bg().with_cancel();
        let t = thread::spawn(move || {
            let mut polls = 0;
            let fut = std::future::poll_fn(|_| {
                polls += 1;
                Poll::Ready(7)
            });
            let out = block_on(ctx.run(fut));
            (out, polls)
        });
        guard.cancel();
        let (out, polls) = t.join().unwrap();
        match out {
            Ok(v) => assert_eq!((v, polls), (7, 1)),
            Err(cause) => assert_eq!((cause, polls), (Cause::Canceled, 0)),
        }
    });
}
