//! The circuit breaker on tokio's paused clock: count- and time-based windows, the minimum
//! number of calls, slow calls, open → half-open → closed (and → open again), bounded and
//! deadline-aware half-open probes, forced states, events, stale permits, and the tower layer
//! sharing one breaker across clones under concurrent use.
#![cfg(feature = "breaker")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::{Cause, Context};
use timefuse_guard::breaker::{
    Breaker, BreakerConfig, CircuitBreakerLayer, CircuitState, SlidingWindow, TransitionReason,
};
use timefuse_guard::{GuardError, Outcome};
use tokio::time::advance;
use tower::{Service, ServiceBuilder, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn bg() -> Context {
    Context::background()
}

/// Records `n` calls of `outcome` taking `latency`.
fn record(breaker: &Breaker, n: usize, outcome: Outcome, latency: Duration) {
    for _ in 0..n {
        breaker
            .try_acquire(&bg())
            .expect("admitted")
            .record(outcome, latency);
    }
}

fn count_based(n: u32, min: u32) -> BreakerConfig {
    BreakerConfig::new("test")
        .sliding_window(SlidingWindow::CountBased(n))
        .minimum_calls(min)
}

#[timefuse_leak::test(start_paused = true)]
async fn defaults_are_resilience4j_s() {
    let c = BreakerConfig::default();
    assert_eq!(c.get_sliding_window(), SlidingWindow::CountBased(100));
    assert_eq!(c.get_minimum_calls(), 100);
    assert_eq!(c.get_failure_rate_threshold(), 50.0);
    assert_eq!(c.get_slow_call_rate_threshold(), 100.0);
    assert_eq!(
        c.get_slow_call_duration_threshold(),
        Duration::from_secs(60)
    );
    assert_eq!(c.get_wait_in_open(), Duration::from_secs(60));
    assert_eq!(c.get_permitted_calls_in_half_open(), 10);

    // With the defaults, 99 failures out of 99 calls do not open it; the 100th call does.
    let breaker = Breaker::new(c);
    record(&breaker, 99, Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().failure_rate, None);
    record(&breaker, 1, Outcome::Success, MS);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[timefuse_leak::test(start_paused = true)]
async fn minimum_calls_gate_the_rates() {
    let breaker = Breaker::new(count_based(10, 5));
    record(&breaker, 4, Outcome::Failure, MS);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "4 of 4 failed, but 4 < 5"
    );
    record(&breaker, 1, Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[timefuse_leak::test(start_paused = true)]
async fn count_window_slides() {
    let breaker = Breaker::new(count_based(4, 4));
    record(&breaker, 1, Outcome::Failure, MS);
    record(&breaker, 3, Outcome::Success, MS); // 25 %
    record(&breaker, 4, Outcome::Success, MS); // the failure slid out
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls, m.failure_rate), (4, 0, Some(0.0)));
    record(&breaker, 1, Outcome::Failure, MS); // 1 of 4
    assert_eq!(breaker.state(), CircuitState::Closed);
    record(&breaker, 1, Outcome::Failure, MS); // 2 of 4 = 50 %
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().failure_rate, Some(50.0));
}

#[timefuse_leak::test(start_paused = true)]
async fn time_window_forgets_calls_older_than_its_span() {
    // The design document's preset: 50 % failures over the last 60 s.
    let breaker =
        Breaker::new(BreakerConfig::fifty_percent_over_a_minute("payments").minimum_calls(10));
    record(&breaker, 10, Outcome::Success, MS);
    advance(Duration::from_secs(30)).await;
    record(&breaker, 9, Outcome::Failure, MS); // 9 of 19: below 50 %
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().calls, 19);
    advance(Duration::from_secs(31)).await; // the 10 successes are now 61 s old
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls, m.failure_rate), (9, 9, None));
    record(&breaker, 1, Outcome::Success, MS); // 9 of 10 in the last minute
    assert_eq!(breaker.state(), CircuitState::Open);

    // Nothing lingers after a long quiet spell.
    breaker.reset();
    record(&breaker, 5, Outcome::Failure, MS);
    advance(Duration::from_secs(3600)).await;
    assert_eq!(breaker.metrics().calls, 0);
}

#[timefuse_leak::test(start_paused = true)]
async fn slow_calls_open_it_at_the_slow_rate() {
    let breaker = Breaker::new(
        count_based(10, 10)
            .slow_call_duration_threshold(Duration::from_millis(200))
            .slow_call_rate_threshold(60.0),
    );
    let mut events = breaker.subscribe();
    record(&breaker, 4, Outcome::Success, Duration::from_millis(250)); // slow by latency
    record(&breaker, 1, Outcome::Slow, MS); // slow as reported
    record(&breaker, 4, Outcome::Success, Duration::from_millis(200)); // at the threshold: not slow
    assert_eq!(breaker.metrics().slow_calls, 5);
    record(&breaker, 1, Outcome::Failure, Duration::from_millis(300)); // slow and failed
    let m = breaker.metrics();
    assert_eq!((m.slow_calls, m.failed_calls), (6, 1));
    assert_eq!(breaker.state(), CircuitState::Open);
    let e = events.try_recv().unwrap();
    assert_eq!(e.reason, TransitionReason::SlowCallRate);
    assert_eq!(e.slow_call_rate, Some(60.0));
}

#[timefuse_leak::test(start_paused = true)]
async fn open_half_open_closed_and_open_again() {
    let breaker = Breaker::new(
        count_based(4, 4)
            .wait_in_open(Duration::from_secs(10))
            .permitted_calls_in_half_open(2),
    );
    let mut events = breaker.subscribe();
    record(&breaker, 4, Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Open);

    advance(Duration::from_secs(4)).await;
    let err = breaker.try_acquire(&bg()).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(6)));
    assert!(err.is_refusal());

    advance(Duration::from_secs(6)).await;
    let p1 = breaker.try_acquire(&bg()).unwrap();
    let p2 = breaker.try_acquire(&bg()).unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // Both probe places are taken.
    assert!(matches!(
        breaker.try_acquire(&bg()).unwrap_err(),
        GuardError::OpenCircuit {
            retry_after: None,
            ..
        }
    ));
    p1.record(Outcome::Success, MS);
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "waits for every probe"
    );
    p2.record(Outcome::Success, MS);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        breaker.metrics().calls,
        0,
        "closed starts with an empty window"
    );

    // Again: open, then probes that fail (1 of 2 = 50 %) re-open it.
    record(&breaker, 4, Outcome::Failure, MS);
    advance(Duration::from_secs(10)).await;
    breaker
        .try_acquire(&bg())
        .unwrap()
        .record(Outcome::Success, MS);
    breaker
        .try_acquire(&bg())
        .unwrap()
        .record(Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker.try_acquire(&bg()).unwrap_err().retry_after(),
        Some(Duration::from_secs(10)),
        "the wait starts again"
    );

    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.from, e.to, e.reason))
        .collect();
    use CircuitState::*;
    use TransitionReason::*;
    assert_eq!(
        seen,
        vec![
            (Closed, Open, FailureRate),
            (Open, HalfOpen, WaitElapsed),
            (HalfOpen, Closed, ProbesHealthy),
            (Closed, Open, FailureRate),
            (Open, HalfOpen, WaitElapsed),
            (HalfOpen, Open, FailureRate),
        ]
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn a_dropped_probe_gives_its_place_back() {
    let breaker = Breaker::new(count_based(2, 2).permitted_calls_in_half_open(1));
    breaker.transition_to_half_open();
    let probe = breaker.try_acquire(&bg()).unwrap();
    assert!(breaker.try_acquire(&bg()).is_err());
    assert_eq!(breaker.metrics().probes_reserved, 1);
    drop(probe);
    assert_eq!(breaker.metrics().probes_reserved, 0);
    let probe = breaker.try_acquire(&bg()).unwrap();
    // A refusal further in records nothing, and also frees the place.
    probe.record(Outcome::BulkheadFull, MS);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    breaker
        .try_acquire(&bg())
        .unwrap()
        .record(Outcome::Success, MS);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[timefuse_leak::test(start_paused = true)]
async fn max_wait_in_half_open_reopens() {
    let breaker = Breaker::new(
        count_based(2, 2)
            .permitted_calls_in_half_open(2)
            .max_wait_in_half_open(Duration::from_secs(5)),
    );
    breaker.transition_to_half_open();
    let _stuck = breaker.try_acquire(&bg()).unwrap();
    advance(Duration::from_secs(5)).await;
    assert!(breaker.try_acquire(&bg()).is_err());
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[timefuse_leak::test(start_paused = true)]
async fn probes_need_a_caller_with_budget() {
    let breaker = Breaker::new(
        count_based(4, 4)
            .slow_call_duration_threshold(Duration::from_secs(2))
            .permitted_calls_in_half_open(1),
    );
    // Expected latency 400 ms (EWMA of successes), then the breaker opens.
    record(&breaker, 2, Outcome::Success, Duration::from_millis(400));
    record(&breaker, 2, Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.expected_latency(), Some(Duration::from_millis(400)));
    breaker.transition_to_half_open();

    // internal_grpc: 800 ms total, 150 ms reserve, 50 ms floor. A probe needs
    // max(50 ms, min(2 s, 400 ms)) = 400 ms of call budget (remaining − reserve).
    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(Duration::from_millis(260)).await; // 540 − 150 = 390 ms: not enough
    let err = breaker.try_acquire(&request).unwrap_err();
    assert!(matches!(
        err,
        GuardError::OpenCircuit {
            retry_after: None,
            ..
        }
    ));
    assert_eq!(
        breaker.metrics().probes_reserved,
        0,
        "a refused caller reserves nothing"
    );

    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(Duration::from_millis(250)).await; // 550 − 150 = 400 ms: enough
    let probe = breaker.try_acquire(&request).unwrap();
    assert!(probe.is_probe());
    drop(probe);

    // A caller without a deadline can always probe; a finished one never.
    assert!(breaker.try_acquire(&bg()).unwrap().is_probe());
    let (done, guard) = bg().with_cancel();
    guard.cancel();
    assert!(breaker.try_acquire(&done).is_err());
}

#[timefuse_leak::test(start_paused = true)]
async fn probes_on_a_cold_breaker_need_only_the_floor() {
    let breaker = Breaker::new(count_based(2, 2).permitted_calls_in_half_open(1));
    breaker.transition_to_half_open();
    assert_eq!(breaker.expected_latency(), None);
    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(Duration::from_millis(600)).await; // 200 − 150 = 50 ms = the floor
    assert!(breaker.try_acquire(&request).is_ok());
    advance(MS).await; // 49 ms
    assert!(breaker.try_acquire(&request).is_err());
}

#[timefuse_leak::test(start_paused = true)]
async fn forced_states() {
    let breaker = Breaker::new(count_based(2, 2));
    let mut events = breaker.subscribe();

    assert!(breaker.force_open());
    assert!(!breaker.force_open(), "already forced open");
    let err = breaker.try_acquire(&bg()).unwrap_err();
    assert_eq!(err.retry_after(), None);
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        breaker.state(),
        CircuitState::ForcedOpen,
        "no automatic way out"
    );

    breaker.disable();
    record(&breaker, 10, Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Disabled);
    assert_eq!(breaker.metrics().calls, 0, "disabled records nothing");

    breaker.metrics_only();
    record(&breaker, 10, Outcome::Failure, MS);
    let m = breaker.metrics();
    assert_eq!(
        (m.state, m.calls, m.failure_rate),
        (CircuitState::MetricsOnly, 2, Some(100.0))
    );

    breaker.transition_to_closed();
    assert_eq!(
        breaker.metrics().calls,
        2,
        "metrics-only → closed keeps the window"
    );
    breaker.reset();
    let m = breaker.metrics();
    assert_eq!(
        (m.state, m.calls, m.not_permitted),
        (CircuitState::Closed, 0, 0)
    );

    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.to, e.reason))
        .collect();
    assert_eq!(
        seen,
        vec![
            (CircuitState::ForcedOpen, TransitionReason::Manual),
            (CircuitState::Disabled, TransitionReason::Manual),
            (CircuitState::MetricsOnly, TransitionReason::Manual),
            (CircuitState::Closed, TransitionReason::Manual),
            (CircuitState::Closed, TransitionReason::Manual),
        ]
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn permits_from_before_a_transition_record_nothing() {
    let breaker = Breaker::new(count_based(4, 4).permitted_calls_in_half_open(1));
    let late = breaker.try_acquire(&bg()).unwrap();
    record(&breaker, 4, Outcome::Failure, MS);
    assert_eq!(breaker.state(), CircuitState::Open);
    breaker.transition_to_half_open();
    // A call started while closed ends during the half-open state: it is not a probe.
    late.record(Outcome::Success, MS);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.metrics().probes_recorded, 0);
}

#[timefuse_leak::test(start_paused = true)]
async fn the_hook_sees_each_transition_once() {
    let breaker = Breaker::new(count_based(2, 2));
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    breaker.on_transition(move |e| {
        assert_eq!(&*e.name, "test");
        counter.fetch_add(1, Ordering::SeqCst);
    });
    record(&breaker, 2, Outcome::Failure, MS);
    breaker.transition_to_half_open();
    breaker.transition_to_closed();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

// ---- the tower layer ---------------------------------------------------------------------

/// A callee that fails when asked to, after `delay`.
fn callee(
    delay: Duration,
) -> impl Service<bool, Response = (), Error = &'static str, Future: Send> + Clone + Send {
    tower::service_fn(move |fail: bool| async move {
        tokio::time::sleep(delay).await;
        if fail { Err("callee failed") } else { Ok(()) }
    })
}

#[timefuse_leak::test(start_paused = true)]
async fn layer_times_calls_and_counts_slow_ones() {
    let layer = CircuitBreakerLayer::new(
        count_based(10, 10).slow_call_duration_threshold(Duration::from_millis(100)),
    );
    let breaker = Arc::clone(layer.breaker());
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(callee(Duration::from_millis(150)));
    svc.ready().await.unwrap().call(false).await.unwrap();
    let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert_eq!(err.inner().unwrap().to_string(), "callee failed");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls, m.slow_calls), (2, 1, 2));
}

#[timefuse_leak::test(start_paused = true)]
async fn refusals_and_cancellations_from_inside_are_not_failures() {
    let layer = CircuitBreakerLayer::new(count_based(2, 2));
    let breaker = Arc::clone(layer.breaker());
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|e: u8| async move {
            Err::<(), GuardError>(match e {
                0 => GuardError::bulkhead_full(1, MS),
                1 => GuardError::rate_limited(MS),
                2 => GuardError::ended(Cause::ClientGone),
                _ => GuardError::ended(Cause::DeadlineExceeded),
            })
        });
    for e in 0..3 {
        let err = svc.ready().await.unwrap().call(e).await.unwrap_err();
        assert!(!matches!(err, GuardError::Inner(_)), "not nested: {err:?}");
    }
    assert_eq!(breaker.metrics().calls, 0);
    // The deadline cutting a call off is a failure.
    svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(breaker.metrics().failed_calls, 1);
}

#[timefuse_leak::test(start_paused = true)]
async fn layer_failure_predicate() {
    let layer = CircuitBreakerLayer::new(count_based(2, 2))
        .failure_if(|e: &GuardError| e.to_string() != "not found");
    let breaker = Arc::clone(layer.breaker());
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|msg: &'static str| async move { Err::<(), _>(msg) });
    svc.ready()
        .await
        .unwrap()
        .call("not found")
        .await
        .unwrap_err();
    svc.ready().await.unwrap().call("reset").await.unwrap_err();
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls), (2, 1));
}

#[timefuse_leak::test(start_paused = true)]
async fn dropping_the_response_future_releases_the_probe() {
    let layer = CircuitBreakerLayer::new(count_based(2, 2).permitted_calls_in_half_open(1));
    let breaker = Arc::clone(layer.breaker());
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(callee(Duration::from_secs(10)));
    breaker.transition_to_half_open();
    let fut = svc.ready().await.unwrap().call(false);
    assert_eq!(breaker.metrics().probes_reserved, 1);
    let timed_out = tokio::time::timeout(Duration::from_secs(1), fut).await;
    assert!(timed_out.is_err());
    assert_eq!(breaker.metrics().probes_reserved, 0);
    svc.ready().await.unwrap().call(false).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[timefuse_leak::test(start_paused = true)]
async fn the_probe_rule_reads_the_task_local_context() {
    let layer = CircuitBreakerLayer::new(count_based(2, 2).permitted_calls_in_half_open(1));
    let breaker = Arc::clone(layer.breaker());
    let mut svc = ServiceBuilder::new().layer(layer).service(callee(MS));
    breaker.transition_to_half_open();
    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(Duration::from_millis(700)).await; // 100 − 150 < floor
    let err = request
        .scope(async { svc.ready().await.unwrap().call(false).await })
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::OpenCircuit { .. }));
    svc.ready().await.unwrap().call(false).await.unwrap(); // no context: may probe
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// 1000 concurrent calls through clones of one service on a multi-threaded runtime: every call
/// counts in the one shared window, and once it opens every clone refuses.
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_breaker_under_concurrency() {
    let layer = CircuitBreakerLayer::new(count_based(1000, 1000).failure_rate_threshold(100.0));
    let breaker = Arc::clone(layer.breaker());
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|i: usize| async move {
            tokio::task::yield_now().await;
            if i.is_multiple_of(2) {
                Ok(i)
            } else {
                Err("odd")
            }
        });
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let mut svc = svc.clone();
            tokio::spawn(async move { svc.ready().await.unwrap().call(i).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap().is_ok());
    }
    assert_eq!(ok, 500);
    let m = breaker.metrics();
    assert_eq!(
        (m.calls, m.failed_calls, m.state),
        (1000, 500, CircuitState::Closed)
    );

    // 1000 failures from 1000 clones fill the window: it opens exactly once.
    let mut events = breaker.subscribe();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { svc.ready().await.unwrap().call(1).await })
        })
        .collect();
    for t in tasks {
        let _ = t.await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(events.try_recv().unwrap().to, CircuitState::Open);
    assert!(events.try_recv().is_err(), "one transition, one event");
    let mut other = svc.clone();
    let err = other.ready().await.unwrap().call(0).await.unwrap_err();
    assert!(matches!(err, GuardError::OpenCircuit { .. }));
}

#[timefuse_leak::test(start_paused = true)]
async fn infallible_inner_services_work() {
    let mut svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(BreakerConfig::new("x")))
        .service_fn(|x: u8| async move { Ok::<_, Infallible>(x) });
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
}
