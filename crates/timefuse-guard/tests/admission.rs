//! Deadline admission on tokio's paused clock: the EWMA converges, calls whose budget is below
//! the expected latency (or the floor) are refused without calling, a cold route admits, the
//! probe lets one call a second through so the estimate can recover, routes are separate, the
//! estimate is shared across clones, and a refusal never counts in a circuit breaker.
#![cfg(feature = "admission")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::{Cause, Context};
use timefuse_guard::admission::{AdmissionLayer, LatencyEstimator};
use timefuse_guard::{GuardError, Outcome};
use tokio::time::{advance, sleep};
use tower::{Service, ServiceBuilder, ServiceExt};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A callee taking the requested time, counting its calls.
fn callee(
    calls: Arc<AtomicUsize>,
) -> impl Service<u64, Response = u64, Error = std::convert::Infallible, Future: Send> + Clone {
    tower::service_fn(move |took: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            sleep(ms(took)).await;
            Ok(took)
        }
    })
}

/// A request context on the internal gRPC policy (800 ms, 150 ms reserve, 50 ms floor) with
/// `call_budget` of downstream budget left: `remaining − reserve`.
async fn with_call_budget(call_budget: u64) -> (Context, timefuse::CancelGuard) {
    let (ctx, guard) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(650 - call_budget)).await;
    (ctx, guard)
}

#[timefuse_leak::test(start_paused = true)]
async fn ewma_converges_on_the_recent_latency() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AdmissionLayer::new();
    let est = layer.estimator().clone();
    let mut svc = ServiceBuilder::new().layer(layer).service(callee(calls));
    for _ in 0..5 {
        svc.ready().await.unwrap().call(500).await.unwrap();
    }
    assert_eq!(est.expected(&()), Some(ms(500)));
    // The callee speeds up to 100 ms: after 20 samples with α = 0.2 the estimate is within
    // 400 ms · 0.8^20 ≈ 4.6 ms of it.
    for _ in 0..20 {
        svc.ready().await.unwrap().call(100).await.unwrap();
    }
    let e = est.expected(&()).unwrap();
    assert!(e >= ms(100) && e < ms(105), "{e:?}");
    assert_eq!(est.samples(&()), 25);
}

#[timefuse_leak::test(start_paused = true)]
async fn refuses_below_the_expected_latency_without_calling() {
    let calls = Arc::new(AtomicUsize::new(0));
    // No probes here, so that every refusal below is deterministic.
    let layer = AdmissionLayer::with_estimator(LatencyEstimator::new().probe_interval(None));
    let est = layer.estimator().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(callee(Arc::clone(&calls)));
    svc.ready().await.unwrap().call(200).await.unwrap(); // learn: 200 ms

    let (ctx, _g) = with_call_budget(199).await;
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(10).await })
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), Outcome::RefusedForBudget);
    assert!(err.is_refusal());
    match err {
        GuardError::RefusedForBudget {
            remaining,
            needed,
            expected,
            route,
            ..
        } => {
            assert_eq!(remaining, ms(199));
            assert_eq!(needed, ms(200));
            assert_eq!(expected, ms(200));
            assert_eq!(route, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "refused without calling");
    assert_eq!(est.refused(&()), 1);

    let (ctx, _g) = with_call_budget(200).await; // exactly enough
    ctx.scope(async { svc.ready().await.unwrap().call(10).await })
        .await
        .unwrap();
}

#[timefuse_leak::test(start_paused = true)]
async fn a_cold_route_admits_but_the_floor_holds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(AdmissionLayer::new())
        .service(callee(Arc::clone(&calls)));
    let (ctx, _g) = with_call_budget(50).await; // = floor: admitted
    ctx.scope(svc.ready().await.unwrap().call(1)).await.unwrap();
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(651)).await; // 149 ms left: below the reserve, a zero call budget
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::RefusedForBudget { needed, .. } if needed == ms(50)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[timefuse_leak::test(start_paused = true)]
async fn done_contexts_and_contexts_without_deadline() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(AdmissionLayer::new())
        .service(callee(Arc::clone(&calls)));
    svc.ready().await.unwrap().call(5000).await.unwrap(); // expected 5 s
    // No deadline: admitted whatever the estimate.
    let ctx = Context::background();
    ctx.scope(svc.ready().await.unwrap().call(1)).await.unwrap();
    // A cancelled context: refused with its cause.
    let (ctx, guard) = Context::background().with_cancel();
    guard.cancel_with(Cause::ClientGone);
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        GuardError::Ended {
            cause: Cause::ClientGone,
            ..
        }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[timefuse_leak::test(start_paused = true)]
async fn one_probe_a_second_lets_the_estimate_recover() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AdmissionLayer::new();
    let est = layer.estimator().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(callee(Arc::clone(&calls)));
    svc.ready().await.unwrap().call(900).await.unwrap(); // a slow spell: 900 ms

    // Every caller has at most 650 ms: all would be refused forever without probes.
    let mut admitted = 0;
    for _ in 0..10 {
        let (ctx, _g) = with_call_budget(600).await;
        if ctx
            .scope(async { svc.ready().await.unwrap().call(20).await })
            .await
            .is_ok()
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 0, "a sample less than a second old: no probe yet");
    advance(Duration::from_secs(1)).await;
    // The callee is fast again: each second's probe pulls the estimate down, until callers
    // pass on their own.
    let mut seconds = 0;
    loop {
        let (ctx, _g) = with_call_budget(600).await;
        let _ = ctx
            .scope(async { svc.ready().await.unwrap().call(20).await })
            .await;
        if est.expected(&()).unwrap() <= ms(600) {
            break;
        }
        seconds += 1;
        advance(Duration::from_secs(1)).await;
    }
    assert!(seconds < 10, "{seconds} s to recover");
    let (ctx, _g) = with_call_budget(600).await;
    ctx.scope(async { svc.ready().await.unwrap().call(20).await })
        .await
        .unwrap();
}

#[timefuse_leak::test(start_paused = true)]
async fn routes_have_their_own_estimates() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AdmissionLayer::routed(|took: &u64| if *took >= 300 { "slow" } else { "fast" });
    let est = layer.estimator().clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(callee(Arc::clone(&calls)));
    svc.ready().await.unwrap().call(400).await.unwrap();
    svc.ready().await.unwrap().call(10).await.unwrap();
    assert_eq!(est.expected(&"slow"), Some(ms(400)));
    assert_eq!(est.expected(&"fast"), Some(ms(10)));
    assert_eq!(est.routes(), 2);

    let (ctx, _g) = with_call_budget(350).await;
    ctx.scope(async {
        let err = svc.ready().await.unwrap().call(300).await.unwrap_err();
        match err {
            GuardError::RefusedForBudget { route, .. } => {
                assert_eq!(route.as_deref(), Some("\"slow\""));
            }
            other => panic!("{other:?}"),
        }
        svc.ready().await.unwrap().call(10).await.unwrap();
    })
    .await;
}

#[timefuse_leak::test(start_paused = true)]
async fn downstream_caps_bound_the_budget() {
    let policy = TimeoutPolicy::http_edge().with_downstream_cap("ledger", ms(100));
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AdmissionLayer::with_estimator(LatencyEstimator::new().probe_interval(None))
        .downstream("ledger");
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(callee(Arc::clone(&calls)));
    svc.ready().await.unwrap().call(150).await.unwrap();
    // 30 s left, but a ledger call gets at most 100 ms: the 150 ms callee cannot make it.
    let (ctx, _g) = Context::request(policy);
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::RefusedForBudget { remaining, .. } if remaining == ms(100)));
}

#[timefuse_leak::test(start_paused = true)]
async fn clones_share_the_estimate() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AdmissionLayer::new();
    let est = layer.estimator().clone();
    let svc = ServiceBuilder::new().layer(layer).service(callee(calls));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { svc.ready().await.unwrap().call(50).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(est.samples(&()), 100);
    assert_eq!(est.expected(&()), Some(ms(50)));
    assert_eq!(est.admitted(&()), 100);
}

#[cfg(feature = "breaker")]
mod with_the_breaker {
    use super::*;
    use timefuse_guard::breaker::{
        BreakerConfig, CircuitBreakerLayer, CircuitState, SlidingWindow,
    };

    fn trigger_happy() -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(
            BreakerConfig::new("ledger")
                .sliding_window(SlidingWindow::CountBased(2))
                .minimum_calls(1),
        )
    }

    /// In its place (outermost), admission's refusals never reach the breaker; placed inside
    /// one, they are ignored as every refusal is.
    #[timefuse_leak::test(start_paused = true)]
    async fn refusals_never_count_in_the_breaker() {
        for admission_outside in [true, false] {
            let calls = Arc::new(AtomicUsize::new(0));
            let breaker = trigger_happy();
            let b = Arc::clone(breaker.breaker());
            let admission =
                AdmissionLayer::with_estimator(LatencyEstimator::new().probe_interval(None));
            let inner = callee(Arc::clone(&calls));
            let mut svc = if admission_outside {
                ServiceBuilder::new()
                    .layer(admission)
                    .layer(breaker)
                    .service(inner)
                    .boxed()
            } else {
                ServiceBuilder::new()
                    .layer(breaker)
                    .layer(admission)
                    .service(inner)
                    .boxed()
            };
            svc.ready().await.unwrap().call(300).await.unwrap(); // expected 300 ms
            for _ in 0..5 {
                let (ctx, _g) = with_call_budget(100).await;
                let err = ctx
                    .scope(async { svc.ready().await.unwrap().call(1).await })
                    .await
                    .unwrap_err();
                assert_eq!(err.outcome(), Outcome::RefusedForBudget);
            }
            let m = b.metrics();
            assert_eq!(m.state, CircuitState::Closed);
            assert_eq!(
                (m.calls, m.failed_calls),
                (1, 0),
                "outside = {admission_outside}"
            );
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }
}
