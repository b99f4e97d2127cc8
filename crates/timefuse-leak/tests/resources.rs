//! Tracked resources: flagged once past their scope timeout (paused time) and past the end of
//! their request's context, logged with `tracing::warn!`, counted in the metrics, released on
//! drop; a sweep only judges the resources of its own runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timefuse::{Cause, Context, RequestId};
use timefuse_leak::resource::{self, Overdue};
use timefuse_leak::{LeakGuard, ResourceScope};
use tokio::runtime::Handle;
use tracing_subscriber::layer::SubscriberExt;

/// A subscriber that keeps the messages of `timefuse_leak::resource` events, for the thread it
/// is set on (each current-thread test runtime runs on its test's thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "timefuse_leak::resource" {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0));
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn messages(&self, level: tracing::Level) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

const BILLING_DB: ResourceScope =
    ResourceScope::new("billing").with_timeout(Duration::from_secs(2));

#[tokio::test(start_paused = true)]
async fn flagged_once_past_its_scope_timeout() {
    let logs = Captured::default();
    let _log = logs.install();
    let before = resource::metrics();
    let request = Context::background().with_request_id(RequestId::new("req-slow").unwrap());
    let line = line!() + 1;
    let conn = BILLING_DB.track_in(&request, "pg-connection", "conn#7");
    assert_eq!(*conn, "conn#7", "derefs to the resource");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(resource::sweep().is_empty(), "1 s of 2 s: not yet");
    assert_eq!(conn.info().unwrap().overdue(), None);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let flagged = resource::sweep();
    assert_eq!(flagged.len(), 1);
    let info = &flagged[0];
    assert_eq!(
        info.flagged(),
        Some(&Overdue::PastTimeout(Duration::from_secs(2)))
    );
    assert_eq!(info.held_for(), Duration::from_millis(2500));
    assert_eq!(
        conn.info().unwrap().flagged(),
        info.flagged(),
        "recorded in the registry"
    );
    assert!(resource::sweep().is_empty(), "flagged once");

    let warnings = logs.messages(tracing::Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let expected = format!(
        "apparent resource leak: \"pg-connection\" of billing acquired at {}:{line}:",
        file!()
    );
    assert!(warnings[0].starts_with(&expected), "{warnings:?}");
    assert!(
        warnings[0].contains("held past its scope timeout of 2s, held 2.5s"),
        "{warnings:?}"
    );
    println!("warn: {}", warnings[0]);

    let after = resource::metrics();
    assert!(after.flagged_past_timeout_total > before.flagged_past_timeout_total);

    drop(conn);
    let infos = logs.messages(tracing::Level::INFO);
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert!(
        infos[0].starts_with("previously flagged resource released after 2.5s"),
        "{infos:?}"
    );
    println!("info: {}", infos[0]);
    assert!(resource::metrics().released_after_flag_total > before.released_after_flag_total);
    assert!(resource::snapshot_for_runtime(Handle::current().id()).is_empty());
}

#[tokio::test]
async fn flagged_when_held_past_its_context() {
    let logs = Captured::default();
    let _log = logs.install();
    let before = resource::metrics();
    let (request, cancel) = Context::background()
        .with_request_id(RequestId::new("req-gone").unwrap())
        .with_cancel();
    // Acquired under the current context, without a timeout.
    let file = request
        .scope(async { ResourceScope::new("exporter").track("file", vec![0_u8; 64]) })
        .await;
    assert_eq!(
        file.info().unwrap().request_id().map(RequestId::as_str),
        Some("req-gone")
    );
    assert!(resource::sweep().is_empty());

    cancel.cancel_with(Cause::ClientGone);
    let flagged = resource::sweep();
    assert_eq!(flagged.len(), 1);
    assert_eq!(
        flagged[0].flagged(),
        Some(&Overdue::ContextEnded(Cause::ClientGone))
    );
    let warnings = logs.messages(tracing::Level::WARN);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("held after its context ended (client went away)"),
        "{warnings:?}"
    );
    assert!(
        resource::metrics().flagged_after_context_ended_total
            > before.flagged_after_context_ended_total
    );
    assert_eq!(file.len(), 64);
    drop(file);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_flags_without_anyone_looking() {
    let sweeper = resource::spawn_sweeper(Duration::from_millis(100));
    let conn = ResourceScope::new("search")
        .with_timeout(Duration::from_millis(250))
        .track("redis-connection", ());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(conn.info().unwrap().flagged().is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        conn.info().unwrap().flagged(),
        Some(&Overdue::PastTimeout(Duration::from_millis(250)))
    );
    sweeper.stop();
    drop(conn);
    timefuse_leak::verify_no_leaks().await.unwrap();
}

#[tokio::test]
async fn into_inner_releases_and_the_guard_wraps_real_resources() {
    let guard = LeakGuard::start();
    let pool = Arc::new(tokio::sync::Semaphore::new(2));
    let permit =
        ResourceScope::new("bulkhead").track("permit", pool.clone().acquire_owned().await.unwrap());
    let mutex = tokio::sync::Mutex::new(5);
    let mut locked = ResourceScope::new("cache").track("lock", mutex.lock().await);
    **locked += 1;
    assert_eq!(pool.available_permits(), 1);
    assert_eq!(
        resource::snapshot_for_runtime(Handle::current().id()).len(),
        2
    );

    let raw = permit.into_inner();
    assert_eq!(
        resource::snapshot_for_runtime(Handle::current().id()).len(),
        1
    );
    drop(raw);
    assert_eq!(pool.available_permits(), 2);
    drop(locked);
    assert_eq!(*mutex.lock().await, 6);
    guard.verify().await.unwrap();
}

#[test]
fn a_sweep_judges_only_its_own_runtime() {
    // Runtime A acquires; runtime B, whose paused clock has run far ahead, sweeps: A's
    // resource is not B's to judge.
    let a = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = a.block_on(async {
        ResourceScope::new("other")
            .with_timeout(Duration::from_millis(1))
            .track("conn", ())
    });
    let b = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    b.block_on(async {
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(resource::sweep().iter().all(|r| r.id() != conn.id()));
    });
    assert!(conn.info().unwrap().flagged().is_none());
    std::thread::sleep(Duration::from_millis(5));
    a.block_on(async {
        assert!(resource::sweep().iter().any(|r| r.id() == conn.id()));
    });
}

#[tokio::test]
async fn counters_move() {
    let before = resource::metrics();
    let kept = AtomicUsize::new(0);
    for _ in 0..10 {
        let r = ResourceScope::new("counted").track("buffer", Vec::<u8>::with_capacity(8));
        kept.fetch_add(r.capacity(), Ordering::Relaxed);
    }
    let after = resource::metrics();
    assert!(after.acquired_total >= before.acquired_total + 10);
    assert!(after.released_total >= before.released_total + 10);
    assert_eq!(
        after.flagged_total(),
        after.flagged_after_context_ended_total + after.flagged_past_timeout_total
    );
}
