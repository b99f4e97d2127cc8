//! loom models of the circuit breaker's state machine: the half-open probe reservation (never
//! more than the permitted number of probes, whatever the interleaving), and each transition
//! (closed → open, open → half-open, half-open → closed/open) performed — and reported — by
//! exactly one thread.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg timefuse_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p timefuse-guard --test loom_breaker --release
//! ```
//!
//! The preemption bound defaults to 3 (override with `LOOM_MAX_PREEMPTIONS`). The models use
//! contexts without deadlines and a zero wait in the open state, so no tokio timer is involved;
//! the breaker's atomics and its rotation lock are loom's (`breaker::sync`).
#![cfg(timefuse_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use loom::thread;
use timefuse::Context;
use timefuse_guard::Outcome;
use timefuse_guard::breaker::{
    Breaker, BreakerConfig, CircuitState, SlidingWindow, TransitionReason,
};

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

const MS: Duration = Duration::from_millis(1);

/// A breaker opening at 50 % of 2 calls, half-open with `probes` probes, no wait in open.
fn breaker(probes: u32) -> Arc<Breaker> {
    breaker_waiting(probes, Duration::ZERO)
}

fn breaker_waiting(probes: u32, wait: Duration) -> Arc<Breaker> {
    Breaker::new(
        BreakerConfig::new("loom")
            .sliding_window(SlidingWindow::CountBased(2))
            .minimum_calls(2)
            .wait_in_open(wait)
            .permitted_calls_in_half_open(probes),
    )
}

/// Counts transitions by (to, reason) through the hook.
fn count_transitions(b: &Breaker, to: CircuitState, reason: TransitionReason) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    b.on_transition(move |e| {
        if e.to == to && e.reason == reason {
            counter.fetch_add(1, SeqCst);
        }
    });
    n
}

/// Three callers race for one half-open probe place: exactly one gets it.
#[test]
fn one_probe_place_three_callers() {
    model(|| {
        let b = breaker(1);
        b.transition_to_half_open();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&b);
                // The permit is returned, not dropped: the place stays taken.
                thread::spawn(move || b.try_acquire_owned(&Context::background()).ok())
            })
            .collect();
        let mine = b.try_acquire_owned(&Context::background()).ok();
        let theirs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let admitted = theirs.iter().flatten().count() + usize::from(mine.is_some());
        assert_eq!(admitted, 1);
        assert_eq!(b.metrics().probes_reserved, 1);
    });
}

/// Two probe places, three callers, one of which gives its place back: never more than two
/// probes live at once, and the reserved count ends equal to the live probes.
#[test]
fn probe_release_races_reservation() {
    model(|| {
        let b = breaker(2);
        b.transition_to_half_open();
        let live = Arc::new(AtomicUsize::new(0));
        let max_live = Arc::new(AtomicUsize::new(0));
        let first = b.try_acquire_owned(&Context::background()).unwrap();
        live.fetch_add(1, SeqCst);
        let releaser = {
            let live = Arc::clone(&live);
            thread::spawn(move || {
                live.fetch_sub(1, SeqCst);
                drop(first);
            })
        };
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (b, live, max_live) =
                    (Arc::clone(&b), Arc::clone(&live), Arc::clone(&max_live));
                thread::spawn(move || match b.try_acquire_owned(&Context::background()) {
                    Ok(p) => {
                        let now = live.fetch_add(1, SeqCst) + 1;
                        max_live.fetch_max(now, SeqCst);
                        Some(p)
                    }
                    Err(_) => None,
                })
            })
            .collect();
        releaser.join().unwrap();
        let held: Vec<_> = takers
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert!(max_live.load(SeqCst) <= 2);
        assert!(
            !held.is_empty(),
            "the released place or the free one was taken"
        );
        assert_eq!(b.metrics().probes_reserved as usize, held.len());
        assert_eq!(b.state(), CircuitState::HalfOpen);
    });
}

/// Two failures recorded at once fill the window: one thread opens the breaker, once.
#[test]
fn closed_to_open_exactly_once() {
    model(|| {
        let b = breaker_waiting(1, Duration::from_secs(60));
        let opened = count_transitions(&b, CircuitState::Open, TransitionReason::FailureRate);
        let p1 = b.try_acquire_owned(&Context::background()).unwrap();
        let p2 = b.try_acquire_owned(&Context::background()).unwrap();
        let t = thread::spawn(move || p1.record(Outcome::Failure, MS));
        p2.record(Outcome::Failure, MS);
        t.join().unwrap();
        let m = b.metrics();
        assert_eq!((m.calls, m.failed_calls), (2, 2));
        assert_eq!(opened.load(SeqCst), 1);
        assert_eq!(b.state(), CircuitState::Open);
    });
}

/// Two callers find the open breaker's wait over: one moves it to half-open, once, and the
/// single probe place goes to one of them.
#[test]
fn open_to_half_open_exactly_once() {
    model(|| {
        let b = breaker(1);
        b.transition_to_open();
        let half = count_transitions(&b, CircuitState::HalfOpen, TransitionReason::WaitElapsed);
        let b2 = Arc::clone(&b);
        let t = thread::spawn(move || b2.try_acquire_owned(&Context::background()).ok());
        let mine = b.try_acquire_owned(&Context::background());
        let theirs = t.join().unwrap();
        assert_eq!(half.load(SeqCst), 1);
        assert_eq!(usize::from(mine.is_ok()) + usize::from(theirs.is_some()), 1);
    });
}

/// The last two probes are recorded at once: one thread closes the breaker, once; a third
/// thread recording a stale (pre-half-open) permit changes nothing.
#[test]
fn half_open_verdict_exactly_once() {
    model(|| {
        let b = breaker(2);
        let stale = b.try_acquire_owned(&Context::background()).unwrap();
        b.transition_to_half_open();
        let closed = count_transitions(&b, CircuitState::Closed, TransitionReason::ProbesHealthy);
        let p1 = b.try_acquire_owned(&Context::background()).unwrap();
        let p2 = b.try_acquire_owned(&Context::background()).unwrap();
        let t1 = thread::spawn(move || p1.record(Outcome::Success, MS));
        let t2 = thread::spawn(move || stale.record(Outcome::Failure, MS));
        p2.record(Outcome::Success, MS);
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(closed.load(SeqCst), 1);
        let m = b.metrics();
        assert_eq!(m.state, CircuitState::Closed);
        assert_eq!(m.calls, 0, "the stale permit recorded nothing");
    });
}

/// A failing and a healthy probe race: the breaker re-opens (50 % ≥ 50 %) exactly once, and a
/// concurrent manual reset: at most one re-opening, and the reset always has the last word.
#[test]
fn verdict_races_manual_reset() {
    model(|| {
        let b = breaker(2);
        b.transition_to_half_open();
        let reopened = count_transitions(&b, CircuitState::Open, TransitionReason::FailureRate);
        let p1 = b.try_acquire_owned(&Context::background()).unwrap();
        let p2 = b.try_acquire_owned(&Context::background()).unwrap();
        let t = thread::spawn(move || p1.record(Outcome::Failure, MS));
        let b2 = Arc::clone(&b);
        let r = thread::spawn(move || b2.reset());
        p2.record(Outcome::Success, MS);
        t.join().unwrap();
        r.join().unwrap();
        // Either the verdict (open) came before the reset, or the reset made both probes
        // stale: at most one re-opening, and the reset always has the last word.
        assert!(reopened.load(SeqCst) <= 1);
        assert_eq!(b.state(), CircuitState::Closed);
    });
}
