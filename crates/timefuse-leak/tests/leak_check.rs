//! The leak check (`LeakGuard`, `verify_no_leaks`): seeded leaks are reported with their name,
//! spawn location and request; clean runs pass without false positives, on both runtime
//! flavours and in parallel; unbound tokio tasks are reported as a count; the ignore options
//! work.
//!
//! These tests take guards by hand (with the non-panicking `verify()`) so that they can look
//! at the report; `tests/attribute.rs` covers `#[timefuse_leak::test]`.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use timefuse::task::TaskScope;
use timefuse::{Cause, Context, RequestId, TraceContext};
use timefuse_leak::{LeakGuard, LeakOptions, LeakReport, ResourceScope, verify_no_leaks};

fn request(id: &str) -> Context {
    Context::background()
        .with_request_id(RequestId::new(id).unwrap())
        .with_trace(TraceContext::new([0x4b; 16], [7; 8], 1))
}

/// Few retries with a short cap, for the tests that expect a leak (the default waits ~0.43 s).
fn quick() -> LeakOptions {
    LeakOptions::new().with_retries(4)
}

#[tokio::test]
async fn seeded_leak_is_reported_with_name_location_and_request() {
    let guard = LeakGuard::with_options(quick());
    let ctx = request("req-seeded");
    let line = line!() + 1;
    let handle = ctx.spawn_named("seeded-leak", std::future::pending::<()>());

    let report: LeakReport = guard.verify().await.unwrap_err();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.tasks().len(), 1, "{text}");
    assert_eq!(report.unbound_tasks(), 0, "{text}");
    assert!(
        text.starts_with("timefuse-leak: found 1 leaked task on runtime "),
        "{text}"
    );
    assert!(
        text.contains("task #") && text.contains("\"seeded-leak\" still running, context live"),
        "{text}"
    );
    assert!(
        text.contains(&format!("    spawned at {}:{line}:", file!())),
        "{text}"
    );
    assert!(
        text.contains("    request req-seeded, trace 4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b"),
        "{text}"
    );
    assert!(text.contains("    age "), "{text}");
    assert!(text.contains(", bound, tokio task "), "{text}");
    let (retries, _) = report.retries();
    assert_eq!(retries, 4);

    handle.abort();
    let _ = handle.await;
    verify_no_leaks().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn alive_after_context_ended_is_listed_first() {
    let guard = LeakGuard::with_options(quick());
    let live = request("req-live").spawn_named("still-useful", std::future::pending::<()>());
    let (parent, parent_guard) = request("req-gone").with_cancel();
    let mut scope = TaskScope::new(&parent);
    // A cooperative task that never looks at its context.
    scope.spawn("deaf", tokio::time::sleep(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(parent_guard);

    let report = guard.verify().await.unwrap_err();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.tasks().len(), 2);
    assert_eq!(report.tasks()[0].name(), Some("deaf"), "{text}");
    assert!(
        text.contains("1 of them alive after their context ended"),
        "{text}"
    );
    let deaf = text.find("\"deaf\" ALIVE AFTER ITS CONTEXT ENDED (context canceled)");
    let useful = text.find("\"still-useful\" still running");
    assert!(
        deaf.is_some() && useful.is_some() && deaf < useful,
        "{text}"
    );
    assert!(text.contains("request req-gone"), "{text}");
    assert!(text.contains(", cooperative"), "{text}");

    live.abort();
    drop(scope);
    verify_no_leaks().await.unwrap();
}

#[tokio::test]
async fn unbound_tokio_tasks_are_reported_as_a_count() {
    let guard = LeakGuard::with_options(quick());
    let a = tokio::spawn(std::future::pending::<()>());
    let b = tokio::spawn(std::future::pending::<()>());
    // Timefuse tasks are named, not counted as unbound.
    let named = Context::background().spawn_named("named", std::future::pending::<()>());

    let report = guard.verify().await.unwrap_err();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.unbound_tasks(), 2, "{text}");
    assert_eq!(report.tasks().len(), 1, "{text}");
    assert!(
        text.starts_with("timefuse-leak: found 1 leaked task, 2 unbound tasks on runtime"),
        "{text}"
    );
    assert!(
        text.contains("2 unbound tasks still alive: spawned without timefuse"),
        "{text}"
    );

    for h in [a, b] {
        h.abort();
        let _ = h.await;
    }
    named.abort();
    let _ = named.await;
    verify_no_leaks().await.unwrap();
}

#[tokio::test]
async fn a_task_that_is_finishing_is_not_a_leak() {
    let guard = LeakGuard::start();
    // Still running when the check starts; done within the retries (real time).
    let ctx = Context::background();
    drop(ctx.spawn_named("almost-done", tokio::time::sleep(Duration::from_millis(30))));
    drop(tokio::spawn(tokio::time::sleep(Duration::from_millis(30))));
    guard.verify().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_that_is_finishing_is_not_a_leak_on_paused_time() {
    let guard = LeakGuard::start();
    drop(
        Context::background()
            .spawn_named("almost-done", tokio::time::sleep(Duration::from_millis(50))),
    );
    guard.verify().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_request_leaves_nothing() {
    let guard = LeakGuard::start();
    let (ctx, cancel) = request("req-clean").with_cancel();
    let handles: Vec<_> = (0..50)
        .map(|i| ctx.spawn_named(format!("worker-{i}"), std::future::pending::<()>()))
        .collect();
    let mut scope = TaskScope::new(&ctx);
    for i in 0..10 {
        scope.spawn(format!("listener-{i}"), async {
            Context::current().done().await;
        });
    }
    cancel.cancel();
    for h in handles {
        assert_eq!(h.await.unwrap(), Err(Cause::Canceled));
    }
    assert!(scope.wait().await.is_clean());
    guard.verify().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime_has_no_false_positives() {
    // num_alive_tasks lags on the multi-thread runtime: the retries absorb it.
    for round in 0..20 {
        let guard = LeakGuard::start();
        let ctx = Context::background();
        let mut handles = Vec::new();
        for i in 0..100 {
            handles.push(ctx.spawn_named(format!("r{round}-{i}"), async {
                tokio::task::yield_now().await;
            }));
        }
        let plain: Vec<_> = (0..20)
            .map(|_| tokio::spawn(tokio::task::yield_now()))
            .collect();
        for h in handles {
            h.await.unwrap().unwrap();
        }
        for h in plain {
            h.await.unwrap();
        }
        guard.verify().await.unwrap();
    }
}

#[tokio::test]
async fn ignore_by_name_location_and_current() {
    let before = Context::background().spawn_named("was-here", std::future::pending::<()>());
    let guard = LeakGuard::with_options(
        quick()
            .ignore_current()
            .ignore_name("daemon")
            .ignore_location(format!("{}:{}", file!(), line!() + 3)),
    );
    let daemon = Context::background().spawn_named("daemon", std::future::pending::<()>());
    let by_line = Context::background().spawn_named("by-line", std::future::pending::<()>());
    guard.verify().await.unwrap();

    // Without the options, all three are leaks.
    let report = LeakGuard::with_options(quick()).verify().await.unwrap_err();
    let mut names: Vec<_> = report.tasks().iter().map(|t| t.name().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["by-line", "daemon", "was-here"]);

    // A file prefix ignores the whole file.
    LeakGuard::with_options(quick().ignore_location(file!()))
        .verify()
        .await
        .unwrap();

    for h in [before, daemon, by_line] {
        h.abort();
        let _ = h.await;
    }
}

#[tokio::test]
async fn ignore_current_covers_unbound_tasks_alive_at_start() {
    let old = tokio::spawn(std::future::pending::<()>());
    let guard = LeakGuard::with_options(quick().ignore_current());
    guard.verify().await.unwrap();

    let guard = LeakGuard::with_options(quick().ignore_current());
    let new = tokio::spawn(std::future::pending::<()>());
    assert_eq!(guard.verify().await.unwrap_err().unbound_tasks(), 1);

    let guard = LeakGuard::with_options(quick().allow_unbound(2));
    guard.verify().await.unwrap();
    old.abort();
    new.abort();
}

#[tokio::test]
async fn held_resources_are_reported() {
    let guard = LeakGuard::with_options(quick());
    let ctx = request("req-res");
    let scope = ResourceScope::new("billing").with_timeout(Duration::from_secs(2));
    let line = line!() + 1;
    let conn = scope.track_in(&ctx, "pg-connection", "conn#1");
    let report = guard.verify().await.unwrap_err();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.resources().len(), 1);
    assert!(
        text.starts_with("timefuse-leak: found 1 held resource"),
        "{text}"
    );
    assert!(
        text.contains("resource #") && text.contains("\"pg-connection\" of billing still held"),
        "{text}"
    );
    assert!(
        text.contains(&format!("    acquired at {}:{line}:", file!())),
        "{text}"
    );
    assert!(text.contains(", scope timeout 2s"), "{text}");
    assert!(text.contains("request req-res"), "{text}");
    drop(conn);
    verify_no_leaks().await.unwrap();
}

#[tokio::test]
#[should_panic(expected = "\"panicky-leak\" still running")]
async fn verify_or_panic_panics_with_the_report() {
    let guard = LeakGuard::with_options(LeakOptions::new().with_retries(1));
    drop(Context::background().spawn_named("panicky-leak", std::future::pending::<()>()));
    guard.verify_or_panic().await;
}

#[tokio::test]
async fn verify_from_inside_a_task_does_not_count_that_task() {
    let outcome = tokio::spawn(async { verify_no_leaks().await })
        .await
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    let bound = Context::background()
        .spawn(async { verify_no_leaks().await })
        .await
        .unwrap()
        .unwrap();
    assert!(bound.is_ok(), "{bound:?}");
}

/// Many runtimes on many threads at once, half of them leaking on purpose: each check sees
/// exactly its own runtime's tasks, never another's.
#[test]
fn parallel_runtimes_see_only_their_own_tasks() {
    const RUNTIMES: usize = 8;
    let barrier = Arc::new(Barrier::new(RUNTIMES));
    let threads: Vec<_> = (0..RUNTIMES)
        .map(|n| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let guard = LeakGuard::with_options(quick());
                    let ctx = request(&format!("req-rt{n}"));
                    let mut handles = Vec::new();
                    for i in 0..50 {
                        handles.push(ctx.spawn_named(format!("rt{n}-task{i}"), async {
                            tokio::task::yield_now().await;
                        }));
                    }
                    let leak = (n % 2 == 1).then(|| {
                        ctx.spawn_named(format!("rt{n}-leak"), std::future::pending::<()>())
                    });
                    // Every runtime has live tasks while the others check.
                    barrier.wait();
                    for h in handles {
                        h.await.unwrap().unwrap();
                    }
                    let outcome = guard.verify().await;
                    match leak {
                        None => assert!(outcome.is_ok(), "runtime {n}: {outcome:?}"),
                        Some(h) => {
                            let report = outcome.unwrap_err();
                            let names: Vec<_> =
                                report.tasks().iter().map(|t| t.name().unwrap()).collect();
                            assert_eq!(names, [format!("rt{n}-leak")]);
                            assert_eq!(report.unbound_tasks(), 0);
                            h.abort();
                        }
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// With `RUSTFLAGS="--cfg tokio_unstable"` and `--features taskdump` on Linux, the report says
/// where each leaked task is stuck.
#[cfg(all(tokio_unstable, feature = "taskdump", target_os = "linux"))]
#[tokio::test]
async fn taskdump_shows_where_a_leak_is_stuck() {
    async fn waits_forever_for_a_notification() {
        tokio::sync::Notify::new().notified().await;
    }
    let guard = LeakGuard::with_options(quick());
    let stuck = Context::background().spawn_named("stuck", waits_forever_for_a_notification());
    tokio::task::yield_now().await;
    let report = guard.verify().await.unwrap_err();
    let text = report.to_string();
    println!("{text}");
    assert!(!report.stack_traces().is_empty());
    assert!(text.contains("    stuck at:"), "{text}");
    assert!(text.contains("waits_forever_for_a_notification"), "{text}");
    stuck.abort();
}
