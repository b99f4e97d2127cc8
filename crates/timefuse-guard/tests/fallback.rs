//! Fallbacks: served and marked on refusals and exhausted budgets, up front when the request
//! should degrade (without calling), from a stale cache; failures and departed callers pass
//! through; the counters.
#![cfg(feature = "fallback")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::{Cause, Context};
use timefuse_guard::fallback::{
    self, DegradeReason, Degraded, FallbackLayer, Marked, StaleCache, Triggers, Why,
};
use timefuse_guard::{GuardError, Outcome};
use tower::{Layer, Service, ServiceExt};

type Res = http::Response<String>;

/// A service answering with what `behave` says for each request, counting calls.
fn scripted(
    calls: Arc<AtomicU32>,
    behave: impl Fn(u32) -> Result<Res, GuardError> + Clone + Send + 'static,
) -> impl Service<u32, Response = Res, Error = GuardError, Future: Send> + Clone {
    tower::service_fn(move |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        let r = behave(x);
        async move { r }
    })
}

fn default_layer() -> FallbackLayer<impl fallback::FallbackHook<u32, Res> + Clone> {
    FallbackLayer::new(fallback::from_fn(
        |x: &u32| *x,
        |x, why: &Why<'_>| {
            Some(http::Response::new(format!(
                "fallback {x} ({})",
                why.reason()
            )))
        },
    ))
    .named("quotes")
}

#[timefuse_leak::test]
async fn refusals_are_answered_and_marked() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = default_layer();
    let mut svc = layer.layer(scripted(calls.clone(), |x| match x {
        1 => Err(GuardError::rate_limited(Duration::from_millis(9))),
        2 => Err(GuardError::open_circuit("pricing", None)),
        3 => Err(GuardError::bulkhead_full(4, Duration::ZERO)),
        4 => Err(GuardError::refused_for_budget(
            Duration::from_millis(10),
            Duration::from_millis(50),
        )),
        _ => Ok(http::Response::new("fresh".to_owned())),
    }));
    let fresh = svc.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(fresh.body(), "fresh");
    assert!(
        fresh.extensions().get::<Degraded>().is_none(),
        "a real answer is not marked"
    );
    for (x, outcome) in [
        (1, Outcome::RateLimited),
        (2, Outcome::OpenCircuit),
        (3, Outcome::BulkheadFull),
        (4, Outcome::RefusedForBudget),
    ] {
        let res = svc.ready().await.unwrap().call(x).await.unwrap();
        assert_eq!(res.body(), &format!("fallback {x} ({})", outcome.as_str()));
        let marker = res.extensions().get::<Degraded>().unwrap();
        assert_eq!(marker.outcome(), Some(outcome));
        assert_eq!(marker.route(), Some("quotes"));
    }
    let stats = layer.stats();
    assert_eq!((stats.served, stats.up_front, stats.declined), (4, 0, 0));
}

#[timefuse_leak::test]
async fn failures_pass_through_unless_asked() {
    let calls = Arc::new(AtomicU32::new(0));
    let failing = scripted(calls.clone(), |_| Err(GuardError::from_inner("db down")));
    let mut plain = default_layer().layer(failing.clone());
    let err = plain.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(err.to_string(), "db down");

    let mut triggers = Triggers::default();
    triggers.failures = true;
    let hook = fallback::default_response(|_: &Why<'_>| Some(http::Response::new(String::new())));
    let mut eager = FallbackLayer::with_triggers(hook, triggers).layer(failing);
    let res = eager.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        res.extensions().get::<Degraded>().unwrap().reason(),
        DegradeReason::Failure
    );
}

#[timefuse_leak::test]
async fn an_exhausted_budget_is_answered_a_departed_caller_is_not() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = default_layer().layer(scripted(calls, |x| match x {
        1 => Err(GuardError::ended(Cause::DeadlineExceeded)),
        _ => Err(GuardError::ended(Cause::ClientGone)),
    }));
    let res = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        res.extensions().get::<Degraded>().unwrap().reason(),
        DegradeReason::BudgetExhausted
    );
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(matches!(
        err,
        GuardError::Ended {
            cause: Cause::ClientGone,
            ..
        }
    ));
}

/// Below the policy's `degrade_below` the fallback answers up front: the callee is not called.
#[timefuse_leak::test(start_paused = true)]
async fn should_degrade_answers_up_front() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = default_layer();
    let mut svc = layer.layer(scripted(calls.clone(), |_| {
        Ok(http::Response::new("fresh".into()))
    }));
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms, degrade below 300
    let body = ctx
        .scope(async {
            svc.ready()
                .await
                .unwrap()
                .call(1)
                .await
                .unwrap()
                .into_body()
        })
        .await;
    assert_eq!(body, "fresh");
    tokio::time::advance(Duration::from_millis(550)).await; // 250 ms left
    let res = ctx
        .scope(async { svc.ready().await.unwrap().call(2).await.unwrap() })
        .await;
    assert_eq!(res.body(), "fallback 2 (should_degrade)");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no call for the degraded request"
    );
    let stats = layer.stats();
    assert_eq!((stats.served, stats.up_front), (1, 1));

    // With the trigger off, the call is made.
    let mut triggers = Triggers::default();
    triggers.should_degrade = false;
    let hook = fallback::default_response(|_: &Why<'_>| Some(http::Response::new(String::new())));
    let mut svc = FallbackLayer::with_triggers(hook, triggers)
        .layer(scripted(calls.clone(), |_| {
            Ok(http::Response::new("fresh".into()))
        }));
    let res = ctx
        .scope(async { svc.ready().await.unwrap().call(3).await.unwrap() })
        .await;
    assert_eq!(res.body(), "fresh");
}

/// The stale cache: the last good answer per key, while fresh enough.
#[timefuse_leak::test(start_paused = true)]
async fn stale_values_from_a_local_cache() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let svc = {
        let healthy = healthy.clone();
        tower::service_fn(move |user: u64| {
            let ok = healthy.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(Marked::new(format!("profile {user}")))
                } else {
                    Err(GuardError::open_circuit("profiles", None))
                }
            }
        })
    };
    let cache = StaleCache::new(|user: &u64| *user, Duration::from_secs(30));
    let layer = FallbackLayer::new(cache.clone());
    let mut svc = layer.layer(svc);
    let fresh = svc.ready().await.unwrap().call(7).await.unwrap();
    assert!(!fresh.is_degraded());
    assert_eq!(cache.len(), 1);

    healthy.store(false, Ordering::SeqCst);
    let stale = svc.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(*stale, "profile 7");
    assert!(stale.is_degraded());
    let err = svc.ready().await.unwrap().call(8).await.unwrap_err();
    assert!(
        matches!(err, GuardError::OpenCircuit { .. }),
        "nothing cached for 8"
    );

    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(
        svc.ready().await.unwrap().call(7).await.is_err(),
        "too stale"
    );
    assert_eq!(layer.stats().declined, 2);
}
