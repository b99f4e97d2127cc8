//! The rate limiter: accuracy over long simulated runs on tokio's paused clock (these limiters
//! read [`LimiterClock::tokio`], governor's clock trait over `tokio::time::Instant`, so virtual
//! time drives them), limits shared across clones and tasks (the axum#2634 scenario, on the
//! default `quanta` clock and real time), waits bounded by the caller's budget, keyed limits.
#![cfg(feature = "rate-limit")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::{Cause, Context};
use timefuse_guard::GuardError;
use timefuse_guard::rate_limit::{LimiterClock, Rate, RateLimitLayer, RateLimiter, WaitMode};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn echo() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
    tower::service_fn(|x: u32| async move { Ok::<_, Infallible>(x) })
}

/// A global limit on tokio's (paused) clock.
fn simulated(rate: Rate) -> RateLimitLayer {
    RateLimitLayer::with_limiter(RateLimiter::direct_with_clock(rate, LimiterClock::tokio()))
}

fn within_one_percent(got: u64, expected: f64) {
    let err = (got as f64 - expected).abs() / expected;
    assert!(
        err <= 0.01,
        "admitted {got}, expected {expected:.0}: off by {:.3} %",
        err * 100.0
    );
}

/// A client hammering a no-wait limiter every 3 ms for 20 simulated minutes gets the rate
/// (plus the initial burst) within 1 %.
#[timefuse_leak::test(start_paused = true)]
async fn no_wait_accuracy_over_a_long_run() {
    let rate = Rate::per_second(100);
    let mut svc = simulated(rate).no_wait().layer(echo());
    let run = Duration::from_secs(20 * 60);
    let start = Instant::now();
    let (mut ok, mut limited) = (0_u64, 0_u64);
    while start.elapsed() < run {
        match svc.ready().await.unwrap().call(1).await {
            Ok(_) => ok += 1,
            Err(GuardError::RateLimited { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_millis(10));
                limited += 1;
            }
            Err(e) => panic!("{e}"),
        }
        tokio::time::advance(Duration::from_millis(3)).await;
    }
    within_one_percent(ok, 100.0 * run.as_secs_f64() + 100.0);
    assert!(limited > 0);
}

/// Many waiting callers, each looping for 5 simulated minutes: every call that gets through
/// was within its budget, and the total is the rate within 1 %.
#[timefuse_leak::test(start_paused = true)]
async fn waiting_callers_get_the_rate() {
    let rate = Rate::per_second(50).with_burst(5);
    let layer = simulated(rate).max_wait(Duration::from_millis(200));
    let svc = layer.layer(echo());
    let run = Duration::from_secs(300);
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut svc = svc.clone();
        let (ok, limited) = (ok.clone(), limited.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < run {
                let before = Instant::now();
                match svc.ready().await.unwrap().call(1).await {
                    Ok(_) => {
                        assert!(before.elapsed() <= Duration::from_millis(200));
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(GuardError::RateLimited { .. }) => {
                        limited.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(7)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    within_one_percent(ok.load(Ordering::Relaxed), 50.0 * run.as_secs_f64() + 5.0);
}

/// axum#2634: a cap of 5 requests let 1500 concurrent requests through, because every clone of
/// tower's `RateLimit` had its own window. Here 1500 concurrent requests through 1500 clones,
/// on a multi-threaded runtime, pass exactly the burst.
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_concurrent_requests_through_clones_pass_exactly_the_limit() {
    // 5 per minute: no permit is replenished while the test runs.
    let layer = RateLimitLayer::new(Rate::new(5, Duration::from_secs(60))).no_wait();
    let svc = layer.layer(echo());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1500 {
        let mut svc = svc.clone();
        tasks.spawn(async move { svc.ready().await.unwrap().call(i).await });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            Err(GuardError::RateLimited { .. }) => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, limited), (5, 1495));
}

/// A limiter shared by two layers (two routes drawing on one budget) and checked by hand.
#[timefuse_leak::test(start_paused = true)]
async fn one_limiter_shared_by_layers_and_code() {
    let limiter =
        RateLimiter::direct_with_clock(Rate::per_second(3), LimiterClock::tokio()).named("shared");
    let mut a = RateLimitLayer::with_limiter(limiter.clone())
        .no_wait()
        .layer(echo());
    let mut b = RateLimitLayer::with_limiter(limiter.clone())
        .no_wait()
        .layer(echo());
    a.ready().await.unwrap().call(1).await.unwrap();
    b.ready().await.unwrap().call(2).await.unwrap();
    limiter.check(&()).unwrap();
    let err = a.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "rate limited by 'shared'; retry after 333.333333ms"
    );
    assert_eq!(limiter.refused(), 1);
}

/// The wait never exceeds `remaining − floor`; a caller is refused as soon as the next
/// permit lies past that bound (at once, or when a racing caller took the permit it waited for).
#[timefuse_leak::test(start_paused = true)]
async fn waits_never_exceed_the_budget() {
    // One permit every 100 ms, burst 1: the k-th queued caller needs k·100 ms.
    let layer = simulated(Rate::per_second(10).with_burst(1)).max_wait(Duration::from_secs(10));
    let svc = layer.layer(echo());
    let policy = Arc::new(TimeoutPolicy::internal_grpc()); // floor 50 ms
    for budget_ms in [60_u64, 120, 149, 150, 151, 260, 400, 800] {
        tokio::time::advance(Duration::from_secs(1)).await; // the limiter is full again
        let mut tasks = Vec::new();
        for i in 0..6_u32 {
            let mut svc = svc.clone();
            let (ctx, guard) = Context::background()
                .with_request_budget(policy.clone(), Some(Duration::from_millis(budget_ms)));
            tasks.push(tokio::spawn(ctx.clone().scope(async move {
                let _guard = guard;
                let start = Instant::now();
                let result = svc.ready().await.unwrap().call(i).await;
                (result, start.elapsed(), ctx)
            })));
        }
        let mut ok = 0;
        for t in tasks {
            let (result, waited, ctx) = t.await.unwrap();
            let bound = Duration::from_millis(budget_ms - 50);
            assert!(
                waited <= bound,
                "waited {waited:?} with a bound of {bound:?}"
            );
            match result {
                Ok(_) => {
                    ok += 1;
                    let left = ctx.remaining().unwrap();
                    assert!(
                        left >= Duration::from_millis(50),
                        "granted with {left:?} left"
                    );
                }
                Err(GuardError::RateLimited { retry_after, .. }) => {
                    // Refused as soon as the next permit lay past the bound: at once, or after
                    // waiting for a permit another caller took first.
                    assert!(waited + retry_after > bound, "refused too early");
                }
                Err(e) => panic!("{e}"),
            }
        }
        // Permits at 0, 100, 200, ... ms: those that fit in the bound.
        let expected = 1 + (budget_ms - 50) / 100;
        assert_eq!(ok, expected.min(6), "budget {budget_ms} ms");
    }
}

/// Without a context only the wait mode bounds the wait; `NoWait` never waits.
#[timefuse_leak::test(start_paused = true)]
async fn wait_modes_without_a_context() {
    let rate = Rate::per_second(4).with_burst(1); // a permit every 250 ms
    let mut up_to_300 = simulated(rate)
        .max_wait(Duration::from_millis(300))
        .layer(echo());
    up_to_300.ready().await.unwrap().call(0).await.unwrap();
    let start = Instant::now();
    up_to_300.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    let mut never = simulated(rate).wait(WaitMode::NoWait).layer(echo());
    never.ready().await.unwrap().call(0).await.unwrap();
    let err = never.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(250)));
    assert_eq!(err.outcome(), timefuse_guard::Outcome::RateLimited);
}

/// A caller whose context is cancelled while it waits for a permit stops waiting at once.
#[timefuse_leak::test(start_paused = true)]
async fn cancel_while_waiting() {
    let layer = simulated(Rate::per_second(1)).max_wait(Duration::from_secs(5));
    let mut svc = layer.layer(echo());
    svc.ready().await.unwrap().call(0).await.unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    let waiter = tokio::spawn(ctx.clone().scope(async move {
        let start = Instant::now();
        (svc.ready().await.unwrap().call(1).await, start.elapsed())
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    guard.cancel_with(Cause::ClientGone);
    let (result, waited) = waiter.await.unwrap();
    assert!(matches!(
        result,
        Err(GuardError::Ended {
            cause: Cause::ClientGone,
            ..
        })
    ));
    assert_eq!(waited, Duration::from_millis(100));
}

/// A context that has already ended is not made to wait.
#[timefuse_leak::test(start_paused = true)]
async fn ended_context_does_not_wait() {
    let mut svc = simulated(Rate::per_second(1)).layer(echo());
    svc.ready().await.unwrap().call(0).await.unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    drop(guard);
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::Ended { .. }));
}

/// Per-tenant limits: one tenant's burst does not touch another's.
#[timefuse_leak::test(start_paused = true)]
async fn keyed_limits_are_independent() {
    #[derive(Clone)]
    struct Req {
        tenant: &'static str,
    }
    let limiter = RateLimiter::keyed_with_clock(Rate::per_second(2), LimiterClock::tokio());
    let layer = RateLimitLayer::keyed_with_limiter(limiter, |r: &Req| r.tenant).no_wait();
    let inner = tower::service_fn(|r: Req| async move { Ok::<_, Infallible>(r.tenant) });
    let mut svc = layer.layer(inner);
    let mut results = Vec::new();
    for tenant in ["acme", "acme", "acme", "globex", "globex", "globex"] {
        results.push(
            svc.ready()
                .await
                .unwrap()
                .call(Req { tenant })
                .await
                .is_ok(),
        );
    }
    assert_eq!(results, [true, true, false, true, true, false]);
    assert_eq!(layer.limiter().len(), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    layer.limiter().retain_recent();
    assert!(layer.limiter().is_empty(), "idle keys are forgotten");
}

/// The inner service's errors pass through as `GuardError::Inner`.
#[timefuse_leak::test(start_paused = true)]
async fn inner_errors_pass_through() {
    let inner = tower::service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("down")) });
    let mut svc = simulated(Rate::per_second(10)).layer(inner);
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(err.inner().unwrap().to_string(), "down");
}

/// A lone caller whose next permit lies past its bound is refused at once, without waiting.
#[timefuse_leak::test(start_paused = true)]
async fn refused_at_once_when_the_permit_is_past_the_budget() {
    let mut svc = simulated(Rate::per_second(1))
        .max_wait(Duration::from_secs(10))
        .layer(echo());
    svc.ready().await.unwrap().call(0).await.unwrap();
    let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
    let start = Instant::now();
    let err = ctx
        .scope(async { svc.ready().await.unwrap().call(1).await })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}
