//! The distributed limiter against a real Redis: the GCRA script's arithmetic, one limit shared
//! by separate limiter instances, keys, the `NOSCRIPT` fallback, the layer's budget-bounded
//! wait, and an outage (a private `redis-server` this file starts, kills and restarts) in both
//! fail modes, logged once, with recovery.
//!
//! Needs `redis-server` on the PATH and a Redis at 127.0.0.1:6379 (`.ci/run` starts one). Every
//! test uses its own key prefix; the outage tests run on their own ports, one at a time.
#![cfg(feature = "redis")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use timefuse::Context;
use timefuse::budget::TimeoutPolicy;
use timefuse_guard::GuardError;
use timefuse_guard::rate_limit::Rate;
use timefuse_guard::redis_limit::{Decision, FailMode, RedisRateLimitLayer, RedisRateLimiter};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const SHARED: &str = "redis://127.0.0.1:6379";

/// Outage tests start and kill servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tfg-test:{test}:{}:{nanos}", std::process::id())
}

fn echo() -> impl Service<u32, Response = u32, Error = std::convert::Infallible> + Clone {
    tower::service_fn(|x: u32| async move { Ok(x) })
}

/// A private redis-server on a free port, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        self.child = Some(child);
        // Wait until it answers PING.
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the private redis-server on port {} did not start",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[timefuse_leak::test]
async fn gcra_on_redis() {
    // 5 per 10 s: nothing replenishes while the test runs (a permit every 2 s).
    let limiter = RedisRateLimiter::new(SHARED, Rate::new(5, Duration::from_secs(10)))
        .unwrap()
        .prefix(unique_prefix("gcra"));
    for _ in 0..5 {
        assert_eq!(limiter.check("k").await, Decision::Allowed);
    }
    match limiter.check("k").await {
        Decision::Limited(after) => {
            assert!(
                after > Duration::from_millis(1500) && after <= Duration::from_secs(2),
                "{after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        limiter.check("other-key").await,
        Decision::Allowed,
        "keys are independent"
    );
    assert!(!limiter.is_down());
}

/// Two limiter instances (two service instances) with one prefix share one limit.
#[timefuse_leak::test]
async fn instances_share_the_limit() {
    let prefix = unique_prefix("shared");
    let rate = Rate::new(4, Duration::from_secs(10));
    let a = RedisRateLimiter::new(SHARED, rate)
        .unwrap()
        .prefix(prefix.clone());
    let b = RedisRateLimiter::new(SHARED, rate).unwrap().prefix(prefix);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { limiter.check("global").await });
    }
    let mut allowed = 0;
    while let Some(d) = tasks.join_next().await {
        if d.unwrap() == Decision::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4);
}

/// The layer: refusals are `RateLimited`; a wait for the next permit stays within the budget.
#[timefuse_leak::test]
async fn the_layer_waits_within_the_budget() {
    let limiter = RedisRateLimiter::new(SHARED, Rate::per_second(10).with_burst(1))
        .unwrap()
        .prefix(unique_prefix("layer"))
        .named("redis-test");
    let mut svc = RedisRateLimitLayer::new(limiter.clone())
        .max_wait(Duration::from_secs(1))
        .layer(echo());
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    ctx.scope(async {
        svc.ready().await.unwrap().call(1).await.unwrap();
        let start = Instant::now();
        svc.ready().await.unwrap().call(2).await.unwrap(); // waits for the next permit
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_millis(400),
            "{waited:?}"
        );
    })
    .await;

    let mut no_wait = RedisRateLimitLayer::new(limiter).no_wait().layer(echo());
    let err = no_wait.ready().await.unwrap().call(3).await.unwrap_err();
    assert!(matches!(err, GuardError::RateLimited { .. }), "{err}");
    assert!(err.to_string().starts_with("rate limited by 'redis-test'"));
}

/// After `SCRIPT FLUSH` the first check gets `NOSCRIPT` and sends the script with `EVAL`;
/// the next ones use `EVALSHA` again.
#[timefuse_leak::test]
async fn noscript_falls_back_to_eval() {
    let _serial = SERIAL.lock().await;
    let redis = PrivateRedis::start().await;
    let limiter = RedisRateLimiter::new(&redis.url(), Rate::per_second(1000))
        .unwrap()
        .prefix(unique_prefix("noscript"));
    assert_eq!(limiter.check("k").await, Decision::Allowed);
    assert_eq!(
        limiter.stats().script_loads,
        1,
        "a fresh server has no script"
    );
    for _ in 0..5 {
        assert_eq!(limiter.check("k").await, Decision::Allowed);
    }
    assert_eq!(limiter.stats().script_loads, 1, "EVALSHA from then on");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(limiter.check("k").await, Decision::Allowed);
    assert_eq!(limiter.stats().script_loads, 2);
}

/// Redis goes away mid-run and comes back: failing open lets calls through, failing closed
/// refuses them, each outage is logged once (however many calls), and limiting resumes when
/// Redis answers again.
#[timefuse_leak::test]
async fn outage_fail_open_fail_closed_and_recovery() {
    let _serial = SERIAL.lock().await;
    let mut redis = PrivateRedis::start().await;
    let rate = Rate::new(3, Duration::from_secs(30));
    let make = |mode: FailMode, name: &str| {
        RedisRateLimiter::new(&redis.url(), rate)
            .unwrap()
            .prefix(unique_prefix(name))
            .fail_mode(mode)
            .timeout(Duration::from_millis(200))
            .reconnect_every(Duration::from_millis(50))
            .named(name.to_owned())
    };
    let open = make(FailMode::Open, "open");
    let closed = make(FailMode::Closed, "closed");
    let mut open_svc = RedisRateLimitLayer::new(open.clone())
        .no_wait()
        .layer(echo());
    let mut closed_svc = RedisRateLimitLayer::new(closed.clone())
        .no_wait()
        .layer(echo());

    // Healthy: both limit at 3.
    for svc in [&mut open_svc, &mut closed_svc] {
        for i in 0..3 {
            svc.ready().await.unwrap().call(i).await.unwrap();
        }
        assert!(svc.ready().await.unwrap().call(9).await.is_err());
    }

    // Outage.
    redis.kill();
    for i in 0..50 {
        open_svc
            .ready()
            .await
            .unwrap()
            .call(i)
            .await
            .expect("fails open");
        let err = closed_svc.ready().await.unwrap().call(i).await.unwrap_err();
        assert!(
            matches!(err, GuardError::RateLimited { .. }),
            "fails closed: {err}"
        );
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await; // let reconnects be tried
        }
    }
    assert!(open.is_down() && closed.is_down());
    let (o, c) = (open.stats(), closed.stats());
    assert_eq!(
        (o.outages, c.outages),
        (1, 1),
        "logged once per outage, not per call"
    );
    assert_eq!((o.failed_open, c.failed_closed), (50, 50));

    // Recovery: a fresh server (empty), found again by the reconnect.
    redis.restart().await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    for svc in [&mut open_svc, &mut closed_svc] {
        for i in 0..3 {
            svc.ready()
                .await
                .unwrap()
                .call(i)
                .await
                .expect("limiting resumes");
        }
        let err = svc.ready().await.unwrap().call(9).await.unwrap_err();
        assert!(matches!(err, GuardError::RateLimited { .. }));
    }
    assert!(!open.is_down() && !closed.is_down());
    assert_eq!((open.stats().outages, closed.stats().outages), (1, 1));

    // A second outage is a second log line.
    redis.kill();
    let _ = open.check("x").await;
    let _ = open.check("x").await;
    assert_eq!(open.stats().outages, 2);
}
