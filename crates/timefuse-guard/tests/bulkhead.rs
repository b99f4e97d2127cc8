//! The bulkhead on tokio's paused clock: the wait for a permit is bounded by the caller's
//! budget (remaining − floor) and by `max_wait`, unbounded without either; a cancelled caller
//! leaves the queue; the limit holds across 1000 concurrent calls through cloned services;
//! a full bulkhead never counts as a failure in a circuit breaker outside it.
#![cfg(feature = "bulkhead")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::{Cause, Context};
use timefuse_guard::bulkhead::{BulkheadLayer, Compartment};
use timefuse_guard::{GuardError, Outcome};
use tokio::time::{Instant, advance, sleep};
use tower::{Service, ServiceBuilder, ServiceExt};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A callee that sleeps the requested milliseconds and tracks its peak concurrency.
#[derive(Clone, Default)]
struct Peak {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Peak {
    fn service(
        &self,
    ) -> impl Service<u64, Response = (), Error = std::convert::Infallible, Future: Send> + Clone + use<>
    {
        let this = self.clone();
        tower::service_fn(move |took: u64| {
            let this = this.clone();
            async move {
                this.calls.fetch_add(1, Ordering::SeqCst);
                let n = this.now.fetch_add(1, Ordering::SeqCst) + 1;
                this.peak.fetch_max(n, Ordering::SeqCst);
                sleep(ms(took)).await;
                this.now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
    }
}

#[timefuse_leak::test(start_paused = true)]
async fn the_wait_is_bounded_by_the_budget() {
    let compartment = Arc::new(Compartment::new(1));
    let held = compartment.try_acquire().unwrap();

    // internal_grpc: 800 ms, floor 50 ms. 300 ms spent: the wait is at most 450 ms.
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(300)).await;
    let start = Instant::now();
    let err = compartment.acquire(Some(&ctx)).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(450));
    assert!(
        matches!(err, GuardError::BulkheadFull { max_concurrent: 1, waited, .. } if waited == ms(450))
    );
    assert_eq!(err.outcome(), Outcome::BulkheadFull);
    assert_eq!(compartment.rejected(), 1);

    // A permit freed within the wait is taken.
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let c = Arc::clone(&compartment);
    let waiter = tokio::spawn(async move { c.acquire(Some(&ctx)).await.map(|_| Instant::now()) });
    advance(ms(100)).await;
    let freed_at = Instant::now();
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), freed_at);

    // Below the floor there is nothing to wait for: refused at once.
    let _held = compartment.try_acquire().unwrap();
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(760)).await;
    let start = Instant::now();
    let err = compartment.acquire(Some(&ctx)).await.unwrap_err();
    assert!(matches!(err, GuardError::BulkheadFull { waited, .. } if waited.is_zero()));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[timefuse_leak::test(start_paused = true)]
async fn max_wait_and_no_deadline() {
    let compartment = Arc::new(Compartment::new(1).with_max_wait(Some(ms(20))));
    let held = compartment.try_acquire().unwrap();
    let (ctx, _g) = Context::request(TimeoutPolicy::http_edge()); // 30 s
    let start = Instant::now();
    assert!(compartment.acquire(Some(&ctx)).await.is_err());
    assert_eq!(start.elapsed(), ms(20), "max_wait is the tighter bound");

    // Without a deadline and without max_wait: wait as long as it takes.
    let unbounded = Arc::new(Compartment::new(1));
    let held2 = unbounded.try_acquire().unwrap();
    let u = Arc::clone(&unbounded);
    let waiter = tokio::spawn(async move { u.acquire(None).await.is_ok() });
    advance(Duration::from_secs(3600)).await;
    assert!(!waiter.is_finished());
    drop(held2);
    assert!(waiter.await.unwrap());
    drop(held);
}

#[timefuse_leak::test(start_paused = true)]
async fn a_cancelled_caller_leaves_the_queue() {
    let compartment = Arc::new(Compartment::new(1));
    let held = compartment.try_acquire().unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    let c = Arc::clone(&compartment);
    let waiter = tokio::spawn(async move { c.acquire(Some(&ctx)).await.map(drop) });
    advance(ms(10)).await;
    guard.cancel_with(Cause::ClientGone);
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(
        err,
        GuardError::Ended {
            cause: Cause::ClientGone,
            ..
        }
    ));
    assert!(!err.is_refusal());
    drop(held);
    assert_eq!(
        compartment.available(),
        1,
        "the cancelled waiter took nothing"
    );
    assert_eq!(compartment.rejected(), 0);
}

#[timefuse_leak::test(start_paused = true)]
async fn the_layer_waits_within_the_task_local_budget() {
    let peak = Peak::default();
    let layer = BulkheadLayer::new(1);
    let mut svc = ServiceBuilder::new().layer(layer).service(peak.service());
    let busy = tokio::spawn({
        let mut svc = svc.clone();
        async move { svc.ready().await.unwrap().call(1000).await }
    });
    tokio::task::yield_now().await;

    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(600)).await; // 200 ms left: wait at most 150 ms
    let start = Instant::now();
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::BulkheadFull { .. }));
    assert_eq!(start.elapsed(), ms(150));
    assert_eq!(
        peak.calls.load(Ordering::SeqCst),
        1,
        "refused without calling"
    );

    // A call with enough budget waits for the permit and then runs.
    let (ctx, _g) = Context::request(TimeoutPolicy::http_edge());
    ctx.scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap();
    busy.await.unwrap().unwrap();
    assert_eq!(peak.peak.load(Ordering::SeqCst), 1);
}

#[timefuse_leak::test(start_paused = true)]
async fn dropping_a_waiting_or_running_call_frees_everything() {
    let layer = BulkheadLayer::new(1);
    let compartment = Arc::clone(layer.compartment());
    let peak = Peak::default();
    let mut svc = ServiceBuilder::new().layer(layer).service(peak.service());
    let running = svc.ready().await.unwrap().call(1000);
    let waiting = svc.ready().await.unwrap().call(1000);
    assert_eq!(compartment.in_flight(), 1);
    drop(waiting);
    drop(running);
    assert_eq!(compartment.in_flight(), 0);
    svc.ready().await.unwrap().call(1).await.unwrap();
}

/// 1000 concurrent calls through clones of one service on a multi-threaded runtime: never
/// more than the limit at once, and all are served (no deadline: they wait).
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_across_clones_under_concurrency() {
    let peak = Peak::default();
    let layer = BulkheadLayer::new(8);
    let compartment = Arc::clone(layer.compartment());
    let svc = ServiceBuilder::new().layer(layer).service(peak.service());
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { svc.ready().await.unwrap().call(0).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(peak.calls.load(Ordering::SeqCst), 1000);
    assert!(peak.peak.load(Ordering::SeqCst) <= 8);
    assert_eq!(compartment.available(), 8);
}

#[cfg(feature = "breaker")]
#[timefuse_leak::test(start_paused = true)]
async fn a_full_bulkhead_is_not_a_breaker_failure() {
    use timefuse_guard::breaker::{BreakerConfig, CircuitBreakerLayer, SlidingWindow};

    let breaker = CircuitBreakerLayer::new(
        BreakerConfig::new("ledger")
            .sliding_window(SlidingWindow::CountBased(2))
            .minimum_calls(1),
    );
    let b = Arc::clone(breaker.breaker());
    let peak = Peak::default();
    let mut svc = ServiceBuilder::new()
        .layer(breaker)
        .layer(BulkheadLayer::with_max_wait(1, Duration::ZERO))
        .service(peak.service());
    let running = tokio::spawn({
        let mut svc = svc.clone();
        async move { svc.ready().await.unwrap().call(100).await }
    });
    tokio::task::yield_now().await;
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
        assert!(matches!(err, GuardError::BulkheadFull { .. }), "{err:?}");
    }
    running.await.unwrap().unwrap();
    let m = b.metrics();
    assert_eq!((m.calls, m.failed_calls), (1, 0));
}
