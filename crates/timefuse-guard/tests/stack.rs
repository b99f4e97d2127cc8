//! The whole stack end to end, on tokio's paused clock: an example service whose dependency
//! is injected failing, then slow, then healthy again. The breaker opens, fallbacks are served
//! (marked), no call starts without the budget to finish, and the route recovers through
//! half-open probes.
#![cfg(all(
    feature = "admission",
    feature = "rate-limit",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "fallback",
    feature = "config"
))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use timefuse::Context;
use timefuse::budget::TimeoutPolicy;
use timefuse_guard::breaker::CircuitState;
use timefuse_guard::config::GuardConfig;
use timefuse_guard::fallback::{self, DegradeReason, Degraded, Why};
use timefuse_guard::stack::GuardLayer;
use timefuse_guard::{GuardError, Outcome};
use tower::{Layer, Service, ServiceExt};

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const SLOW: u8 = 2;

/// The injected dependency: healthy (20 ms), failing (an error after 20 ms) or slow (10 s).
#[derive(Clone)]
struct Dependency {
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicU32>,
}

impl Dependency {
    fn new() -> Self {
        Dependency {
            mode: Arc::new(AtomicU8::new(HEALTHY)),
            calls: Arc::new(AtomicU32::new(0)),
        }
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
    fn service(
        &self,
    ) -> impl Service<
        u32,
        Response = http::Response<String>,
        Error = std::io::Error,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        let dep = self.clone();
        tower::service_fn(move |order: u32| {
            dep.calls.fetch_add(1, Ordering::SeqCst);
            let mode = dep.mode.load(Ordering::SeqCst);
            async move {
                match mode {
                    HEALTHY => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(http::Response::new(format!("quote for {order}")))
                    }
                    FAILING => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Err(std::io::Error::other("pricing backend down"))
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        Ok(http::Response::new("too late".to_owned()))
                    }
                }
            }
        })
    }
}

const CONFIG: &str = r#"
[defaults.timeout]
global = "800ms"
reserve = "150ms"
floor = "50ms"
degrade_below = "300ms"

[routes.quotes.admission]
[routes.quotes.rate]
limit = 1000
[routes.quotes.breaker]
calls = 10
minimum_calls = 10
failure_rate = 50
wait_in_open = "5s"
half_open_calls = 2
[routes.quotes.bulkhead]
max_concurrent = 10
[routes.quotes.retry]
max_attempts = 2
per_try = "200ms"
backoff_base = "10ms"
backoff_max = "20ms"
[routes.quotes.fallback]
kind = "default_response"
up_front = false
"#;

fn degraded(res: &http::Response<String>) -> Option<&Degraded> {
    res.extensions().get::<Degraded>()
}

#[timefuse_leak::test(start_paused = true)]
async fn breaker_opens_fallbacks_serve_no_call_without_budget_and_recovery() {
    let config = GuardConfig::from_toml_str(CONFIG).unwrap();
    let policy = Arc::new(config.route("quotes").unwrap().timeout);
    let layer = GuardLayer::from_config(&config, "quotes")
        .unwrap()
        .with_fallback(fallback::default_response(|why: &Why<'_>| {
            Some(http::Response::new(format!(
                "cached quote ({})",
                why.reason()
            )))
        }));
    let breaker = layer.breaker().unwrap().clone();
    let dep = Dependency::new();
    let svc = layer.layer(dep.service());

    let request = |order: u32| {
        let mut svc = svc.clone();
        let policy = policy.clone();
        async move {
            let (ctx, _guard) = Context::request(policy);
            ctx.scope(async move { svc.ready().await?.call(order).await })
                .await
        }
    };

    // 1. Healthy: real answers, not marked.
    for i in 0..5 {
        let res = request(i).await.unwrap();
        assert_eq!(res.body(), &format!("quote for {i}"));
        assert!(degraded(&res).is_none());
    }
    assert_eq!(dep.calls(), 5);

    // 2. The dependency fails: failures (each retried once, within the budget) fill the window
    //    and open the breaker; from then on the fallback answers and nothing is called.
    dep.set(FAILING);
    let mut requests = 0;
    while breaker.state() == CircuitState::Closed {
        match request(100).await {
            // The breaker opened between this request's attempts: its retry was refused,
            // and the fallback answered the refusal.
            Ok(res) => assert_eq!(
                degraded(&res).unwrap().outcome(),
                Some(Outcome::OpenCircuit)
            ),
            // Retries exhausted on plain failures: not a refusal, so the caller sees the error
            // (`on_failure` is off).
            Err(e) => assert_eq!(e.inner().unwrap().to_string(), "pricing backend down"),
        }
        requests += 1;
        assert!(requests < 20, "the breaker never opened");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let calls_at_open = dep.calls();
    for i in 0..20 {
        let res = request(200 + i).await.unwrap();
        assert_eq!(res.body(), "cached quote (open_circuit)");
        assert_eq!(
            degraded(&res).unwrap().outcome(),
            Some(Outcome::OpenCircuit)
        );
        assert_eq!(degraded(&res).unwrap().route(), Some("quotes"));
    }
    assert_eq!(
        dep.calls(),
        calls_at_open,
        "no call while the circuit is open"
    );
    assert!(layer.fallback_stats().served >= 20);

    // 3. No call starts without the budget to finish it: 180 ms left is 30 ms for the call,
    //    under the 50 ms floor. Admission refuses it; the fallback answers.
    dep.set(HEALTHY);
    {
        let (ctx, _guard) = Context::request(policy.clone());
        tokio::time::advance(Duration::from_millis(620)).await;
        let mut svc = svc.clone();
        let res = ctx
            .scope(async move { svc.ready().await?.call(7).await })
            .await
            .unwrap();
        let marker = degraded(&res).unwrap();
        assert!(
            matches!(
                marker.reason(),
                DegradeReason::Refused(Outcome::RefusedForBudget | Outcome::OpenCircuit)
            ),
            "{marker:?}"
        );
        assert_eq!(
            dep.calls(),
            calls_at_open,
            "nothing called with no time left"
        );
    }

    // 4. Recovery: after the open wait, half-open probes reach the (healthy again) dependency
    //    and close the circuit.
    tokio::time::advance(Duration::from_secs(5)).await;
    let mut answered = 0;
    for i in 0..6 {
        let res = request(300 + i).await.unwrap();
        if degraded(&res).is_none() {
            answered += 1;
        }
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(answered >= 4, "answered {answered} of 6 after recovery");
    let res = request(400).await.unwrap();
    assert_eq!(res.body(), "quote for 400");
    assert!(degraded(&res).is_none());
}

/// A slow dependency: each attempt is cut at its per-try budget, the request still answers
/// within its deadline (by the fallback once the breaker opens), never after it.
#[timefuse_leak::test(start_paused = true)]
async fn a_slow_dependency_is_cut_per_try_and_opens_the_breaker() {
    let config = GuardConfig::from_toml_str(CONFIG).unwrap();
    let policy = Arc::new(config.route("quotes").unwrap().timeout);
    let layer = GuardLayer::from_config(&config, "quotes")
        .unwrap()
        .with_fallback(fallback::default_response(|why: &Why<'_>| {
            Some(http::Response::new(format!(
                "cached quote ({})",
                why.reason()
            )))
        }));
    let breaker = layer.breaker().unwrap().clone();
    let dep = Dependency::new();
    dep.set(SLOW);
    let svc = layer.layer(dep.service());
    let mut outcomes = Vec::new();
    for i in 0..12 {
        let (ctx, _guard) = Context::request(policy.clone());
        let start = tokio::time::Instant::now();
        let mut svc = svc.clone();
        let result = ctx
            .scope(async move { svc.ready().await?.call(i).await })
            .await;
        let took = start.elapsed();
        assert!(
            took <= Duration::from_millis(800),
            "answered after the deadline: {took:?}"
        );
        outcomes.push(match result {
            Ok(res) => degraded(&res)
                .map(|d| d.reason().to_string())
                .unwrap_or_default(),
            Err(e) => {
                assert!(e.is_deadline_exceeded(), "{e}");
                "timeout".to_owned()
            }
        });
    }
    assert_eq!(breaker.state(), CircuitState::Open, "{outcomes:?}");
    assert!(
        outcomes.contains(&"open_circuit".to_owned()),
        "{outcomes:?}"
    );
    // Per-try 200 ms, two attempts: a slow call costs at most 2 × 200 ms + backoff.
    assert!(dep.calls() <= 2 * 12);
}

/// The stack built in code behaves as the one from the configuration; without a fallback,
/// refusals reach the caller.
#[timefuse_leak::test(start_paused = true)]
async fn built_in_code_without_a_fallback() {
    use timefuse_guard::breaker::{BreakerConfig, SlidingWindow};
    use timefuse_guard::rate_limit::{ByContext, Rate, WaitMode};
    let layer = GuardLayer::new("ledger")
        .with_admission()
        .with_rate_limit(Rate::per_second(2), WaitMode::NoWait, ByContext::Global)
        .with_breaker(
            BreakerConfig::new("ledger")
                .sliding_window(SlidingWindow::CountBased(4))
                .minimum_calls(4),
        )
        .with_bulkhead(4, Duration::ZERO);
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.service());
    let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    ctx.scope(async {
        svc.ready().await.unwrap().call(1).await.unwrap();
        svc.ready().await.unwrap().call(2).await.unwrap();
        let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
        assert!(matches!(err, GuardError::RateLimited { .. }), "{err}");
    })
    .await;
    assert_eq!(layer.rate_limiter().unwrap().refused(), 1);
}
