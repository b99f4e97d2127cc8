//! Retries: the budget's arithmetic and window, sharing across clones, retry storms bounded,
//! no retry without the time to finish, refusals not retried by default, the per-try timeout.
#![cfg(feature = "retry")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use timefuse::Context;
use timefuse::budget::TimeoutPolicy;
use timefuse_guard::GuardError;
use timefuse_guard::retry::{Backoff, PerTryTimeoutLayer, RetryBudget, RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// A service that takes `latency` and fails while `failing` is set; counts its calls.
#[derive(Clone)]
struct Dependency {
    calls: Arc<AtomicU32>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    latency: Duration,
}

impl Dependency {
    fn new(latency: Duration, failing: bool) -> Self {
        Dependency {
            calls: Arc::new(AtomicU32::new(0)),
            failing: Arc::new(std::sync::atomic::AtomicBool::new(failing)),
            latency,
        }
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Service<u32> for Dependency {
    type Response = u32;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<u32, std::io::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing.load(Ordering::SeqCst);
        let latency = self.latency;
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            if failing {
                Err(std::io::Error::other("dependency failed"))
            } else {
                Ok(x)
            }
        })
    }
}

#[timefuse_leak::test(start_paused = true)]
async fn budget_arithmetic() {
    // 20 % of requests, nothing free.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
    for _ in 0..100 {
        budget.deposit();
    }
    assert!((budget.balance() - 20.0).abs() < 1e-9);
    let granted = (0..30).filter(|_| budget.withdraw()).count();
    assert_eq!(granted, 20);

    // The free reserve: 10 per second over 10 s.
    let budget = RetryBudget::default();
    let granted = (0..150).filter(|_| budget.withdraw()).count();
    assert_eq!(granted, 100);

    // Deposits leave the window after the ttl.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
    for _ in 0..10 {
        budget.deposit();
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!((budget.balance() - 5.0).abs() < 1e-9, "still in the window");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(budget.balance(), 0.0, "the window has moved past them");
    assert!(!budget.withdraw());

    // Withdrawals leave the window too.
    let budget = RetryBudget::new(Duration::from_secs(1), 1, 0.0);
    assert!(budget.withdraw());
    assert!(!budget.withdraw());
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert!(budget.withdraw());

    // Finagle's bounds.
    assert!(RetryBudget::try_new(Duration::from_millis(500), 10, 0.2).is_err());
    assert!(RetryBudget::try_new(Duration::from_secs(10), 10, 10.5).is_err());
    assert!(RetryBudget::try_new(Duration::from_secs(10), 10, f64::NAN).is_err());
}

/// A dependency that fails everything: retries add at most 20 % (plus the free reserve) to its
/// load, across every clone of the service.
#[timefuse_leak::test(start_paused = true)]
async fn a_retry_storm_is_bounded_by_the_shared_budget() {
    let dep = Dependency::new(Duration::from_millis(1), true);
    let layer = RetryLayer::with_budget(
        RetryPolicy::default()
            .max_attempts(3)
            .backoff(Backoff::None),
        RetryBudget::new(Duration::from_secs(10), 1, 0.2),
    );
    let svc = layer.layer(dep.clone());
    let mut tasks = Vec::new();
    for i in 0..500 {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.ready().await.unwrap().call(i).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    // 500 requests: 20 % is 100 retries, plus 10 free (1 per second over 10 s).
    let stats = layer.stats();
    assert_eq!(stats.retries, 110);
    assert_eq!(dep.calls(), 610);
    assert!(stats.refused_by_budget > 0);
}

/// With a known attempt latency of 300 ms, a failure at 600 ms into an 800 ms request is not
/// retried: 200 ms − 150 ms reserve cannot cover another 300 ms attempt.
#[timefuse_leak::test(start_paused = true)]
async fn no_retry_without_time_to_finish() {
    let dep = Dependency::new(Duration::from_millis(300), false);
    let layer = RetryLayer::new(
        RetryPolicy::default()
            .max_attempts(5)
            .backoff(Backoff::None),
    );
    let mut svc = layer.layer(dep.clone());
    let policy = Arc::new(TimeoutPolicy::internal_grpc());
    // Warm the latency estimate with successes.
    for i in 0..3 {
        let (ctx, _g) = Context::request(policy.clone());
        ctx.scope(async { svc.ready().await.unwrap().call(i).await.unwrap() })
            .await;
    }
    dep.set_failing(true);
    let (ctx, _g) = Context::request(policy.clone());
    let start = Instant::now();
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(9).await })
        .await
        .unwrap_err();
    assert_eq!(err.inner().unwrap().to_string(), "dependency failed");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(600),
        "two attempts, no third"
    );
    assert_eq!(dep.calls(), 3 + 2);
    let stats = layer.stats();
    assert_eq!((stats.retries, stats.refused_by_time), (1, 1));
    assert!(ctx.remaining().unwrap() >= Duration::from_millis(150));
}

/// The backoff is shortened to leave an attempt's time, and dropped when even that cannot.
#[timefuse_leak::test(start_paused = true)]
async fn backoff_is_shortened_to_fit_the_budget() {
    let dep = Dependency::new(Duration::from_millis(100), true);
    let layer = RetryLayer::new(
        RetryPolicy::default()
            .max_attempts(2)
            .backoff(Backoff::Fixed(Duration::from_secs(2))),
    );
    let mut svc = layer.layer(dep.clone());
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
    let start = Instant::now();
    ctx.scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    // 100 ms attempt; 700 ms − 150 reserve − 50 floor = 500 ms of backoff at most; 100 ms retry.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
    assert_eq!(dep.calls(), 2);
}

/// Without a context the policy and the budget alone decide.
#[timefuse_leak::test(start_paused = true)]
async fn without_a_context_retries_follow_the_policy() {
    let dep = Dependency::new(Duration::from_millis(10), true);
    let layer = RetryLayer::new(
        RetryPolicy::default()
            .max_attempts(4)
            .backoff(Backoff::None),
    );
    let mut svc = layer.layer(dep.clone());
    svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(dep.calls(), 4);
}

/// Refusals are not retried unless configured; then at least their `retry_after` apart.
#[timefuse_leak::test(start_paused = true)]
async fn refusals_are_not_retried_by_default() {
    let calls = Arc::new(AtomicU32::new(0));
    let refusing = {
        let calls = calls.clone();
        tower::service_fn(move |_: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, _>(GuardError::rate_limited(Duration::from_millis(40))) }
        })
    };
    let mut plain = RetryLayer::new(RetryPolicy::default()).layer(refusing.clone());
    let err = plain.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(matches!(err, GuardError::RateLimited { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    calls.store(0, Ordering::SeqCst);
    let policy = RetryPolicy::default()
        .retry_refusals(true)
        .backoff(Backoff::None);
    let mut eager = RetryLayer::new(policy).layer(refusing);
    let start = Instant::now();
    eager.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(80),
        "two waits of retry_after"
    );
}

/// Retryable responses, picked by a closure.
#[timefuse_leak::test(start_paused = true)]
async fn responses_can_be_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = {
        let calls = calls.clone();
        tower::service_fn(move |_: ()| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<u16, std::io::Error>(if n < 2 { 503 } else { 200 }) }
        })
    };
    let policy = RetryPolicy::default()
        .backoff(Backoff::None)
        .classify(|r: &Result<u16, GuardError>| matches!(r, Ok(503) | Err(_)));
    let mut svc = RetryLayer::new(policy).layer(svc);
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Nothing is retried after the request's context is cancelled.
#[timefuse_leak::test(start_paused = true)]
async fn no_retry_after_the_request_ends() {
    let dep = Dependency::new(Duration::from_millis(50), true);
    let mut svc =
        RetryLayer::new(RetryPolicy::default().backoff(Backoff::Fixed(Duration::from_millis(20))))
            .layer(dep.clone());
    let (ctx, guard) = Context::background().with_cancel();
    let task = tokio::spawn(ctx.scope(async move { svc.ready().await.unwrap().call(1).await }));
    tokio::time::sleep(Duration::from_millis(60)).await; // first attempt failed; in backoff
    drop(guard);
    assert!(task.await.unwrap().is_err());
    assert_eq!(dep.calls(), 1);
}

/// The per-try timeout is `min(cap, remaining − reserve)`; when the cap binds the callee sees
/// it as its current context (otherwise the request's own, from which it derives the same
/// `remaining − reserve`); an attempt below the floor is not started.
#[timefuse_leak::test(start_paused = true)]
async fn per_try_timeout_is_derived_from_the_budget() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = {
        let seen = seen.clone();
        tower::service_fn(move |_: ()| {
            seen.lock().unwrap().push(Context::current().remaining());
            async { Ok::<_, std::io::Error>(()) }
        })
    };
    let mut capped = PerTryTimeoutLayer::new(Some(Duration::from_millis(200))).layer(probe.clone());
    let mut uncapped = PerTryTimeoutLayer::new(None).layer(probe);
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
    ctx.scope(async {
        capped.ready().await.unwrap().call(()).await.unwrap();
        uncapped.ready().await.unwrap().call(()).await.unwrap();
        tokio::time::advance(Duration::from_millis(601)).await; // 199 ms left: 49 ms < floor
        let err = uncapped.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(matches!(err, GuardError::RefusedForBudget { .. }), "{err}");
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Some(Duration::from_millis(200)),
            Some(Duration::from_millis(800))
        ]
    );
}

/// Retries compose with the per-try timeout: a hung attempt is cut at its per-try budget and
/// retried while the request has time.
/// Without a cap binding, a hung call is still cut at `remaining − reserve`.
#[timefuse_leak::test(start_paused = true)]
async fn uncapped_attempts_end_at_remaining_less_reserve() {
    let mut svc = PerTryTimeoutLayer::new(None).layer(tower::service_fn(|_: ()| async {
        std::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    }));
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let start = Instant::now();
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(()).await })
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded());
    assert_eq!(start.elapsed(), Duration::from_millis(650));
    // And without any context, the cap alone.
    let mut capped = PerTryTimeoutLayer::new(Some(Duration::from_millis(30))).layer(
        tower::service_fn(|_: ()| async {
            std::future::pending::<()>().await;
            Ok::<(), std::io::Error>(())
        }),
    );
    let start = Instant::now();
    assert!(capped.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(start.elapsed(), Duration::from_millis(30));
}

#[timefuse_leak::test(start_paused = true)]
async fn hung_attempts_are_cut_and_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let dep = {
        let calls = calls.clone();
        tower::service_fn(move |_: u32| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    std::future::pending::<()>().await; // the first attempt hangs
                }
                Ok::<_, std::io::Error>(n)
            }
        })
    };
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::default().backoff(Backoff::None),
        ))
        .layer(PerTryTimeoutLayer::new(Some(Duration::from_millis(250))))
        .service(dep);
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let start = Instant::now();
    let n = ctx
        .scope(async { svc.ready().await.unwrap().call(0).await })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}
