//! Bound tasks, the task registry and `TaskScope`.
//!
//! Tests run in parallel, each on its own runtime, and share the process-wide registry: every
//! assertion on the registry filters by the test's runtime.
//!
//! Every async test runs under `#[timefuse_leak::test]`, which also checks, per runtime, that
//! nothing the test spawned is still alive when it returns.
use std::sync::{Arc, Barrier};
use std::time::Duration;

use timefuse::task::{self, TaskInfo, TaskKind, TaskScope};
use timefuse::{Cause, Context, RequestId, TraceContext};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// This test's live registered tasks.
fn mine() -> Vec<TaskInfo> {
    task::snapshot_for_runtime(Handle::current().id())
}

fn names(infos: &[TaskInfo]) -> Vec<&str> {
    infos.iter().map(|t| t.name().unwrap()).collect()
}

fn find(id: u64) -> Option<TaskInfo> {
    task::snapshot_where(|t| t.id() == id).pop()
}

#[timefuse_leak::test(start_paused = true)]
async fn bound_task_stops_at_deadline() {
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let handle = ctx.spawn(async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        "finished"
    });
    assert_eq!(handle.await.unwrap(), Err(Cause::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(mine().is_empty());
}

#[timefuse_leak::test(start_paused = true)]
async fn bound_task_stops_at_cancel() {
    let (ctx, guard) = Context::background().with_cancel();
    let handle = ctx.spawn(std::future::pending::<()>());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!handle.is_finished());
    guard.cancel_with(Cause::ClientGone);
    assert_eq!(handle.await.unwrap(), Err(Cause::ClientGone));
    assert!(mine().is_empty());
}

#[timefuse_leak::test]
async fn bound_task_completes_with_its_output() {
    let ctx = Context::background();
    assert_eq!(ctx.spawn(async { 7 }).await.unwrap(), Ok(7));
}

#[timefuse_leak::test]
async fn ended_context_never_starts_the_task() {
    let (ctx, guard) = Context::background().with_cancel();
    guard.cancel_with(Cause::Shutdown);
    let handle = ctx.spawn(async { unreachable!("work whose budget is gone is not started") });
    assert_eq!(handle.await.unwrap(), Err(Cause::Shutdown));
    assert!(mine().is_empty());
}

#[timefuse_leak::test]
async fn current_context_inside_the_task_is_the_spawners() {
    let (ctx, _guard) = Context::background().with_value("tenant-7").with_cancel();
    let expected = ctx.clone();
    let seen = ctx
        .spawn(async move {
            let current = Context::current();
            tokio::task::yield_now().await;
            (
                current.same_as(&expected),
                *Context::current().value::<&str>().unwrap(),
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, (true, "tenant-7"));
    // The spawner's own current context is untouched.
    assert!(Context::try_current().is_none());
}

#[timefuse_leak::test]
async fn registry_records_the_task_then_drops_it_on_completion() {
    let trace = TraceContext::new([0x5a; 16], [1; 8], 1);
    let ctx = Context::background()
        .with_request_id(RequestId::new("req-reg-1").unwrap())
        .with_trace(trace.clone());
    let (release, released) = oneshot::channel::<()>();
    let before = Instant::now();
    let work = async move {
        released.await.unwrap();
        5
    };
    let (handle, line) = (ctx.spawn_named("registry-worker", work), line!());

    let live = mine();
    assert_eq!(live.len(), 1, "{live:?}");
    let info = &live[0];
    assert_eq!(info.name(), Some("registry-worker"));
    assert_eq!(info.location().file(), file!());
    assert_eq!(info.location().line(), line);
    assert_eq!(info.request_id().map(RequestId::as_str), Some("req-reg-1"));
    assert_eq!(info.trace(), Some(&trace));
    assert_eq!(
        info.trace_id().as_deref(),
        Some("5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a")
    );
    assert_eq!(info.tokio_id(), Some(handle.id()));
    assert_eq!(info.runtime(), Some(Handle::current().id()));
    assert_eq!(info.kind(), TaskKind::Bound);
    assert!(info.started() >= before);
    assert!(info.started_at() <= std::time::SystemTime::now());
    assert!(!info.context_ended());
    assert_eq!(info.cause(), None);
    assert!(info.context().same_as(&ctx));
    let text = info.to_string();
    assert!(
        text.contains("\"registry-worker\"") && text.contains("req-reg-1"),
        "{text}"
    );
    assert!(format!("{info:?}").contains("registry-worker"));

    release.send(()).unwrap();
    assert_eq!(handle.await.unwrap(), Ok(5));
    assert!(mine().is_empty(), "a joined task is never still listed");
}

#[timefuse_leak::test(start_paused = true)]
async fn registry_drops_the_task_on_cancel_and_on_abort() {
    let (ctx, guard) = Context::background().with_cancel();
    let cancelled = ctx.spawn_named("to-cancel", std::future::pending::<()>());
    let aborted = ctx.spawn_named("to-abort", std::future::pending::<()>());
    let never_polled = ctx.spawn_named("aborted-before-first-poll", std::future::pending::<()>());
    assert_eq!(
        names(&mine()),
        ["to-cancel", "to-abort", "aborted-before-first-poll"],
        "oldest first"
    );

    never_polled.abort();
    assert!(never_polled.await.unwrap_err().is_cancelled());
    assert_eq!(names(&mine()), ["to-cancel", "to-abort"]);

    tokio::time::sleep(Duration::from_millis(5)).await; // both are now parked
    aborted.abort();
    assert!(aborted.await.unwrap_err().is_cancelled());
    assert_eq!(names(&mine()), ["to-cancel"]);

    guard.cancel();
    assert_eq!(cancelled.await.unwrap(), Err(Cause::Canceled));
    assert!(mine().is_empty());
}

#[timefuse_leak::test(start_paused = true)]
async fn registry_shows_age_and_a_detached_task() {
    let (ctx, guard) = Context::background().with_timeout(Duration::from_secs(60));
    // Detached: the handle is dropped, the task lives on and stays visible.
    drop(ctx.spawn_named("detached", std::future::pending::<()>()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = mine().pop().unwrap();
    assert_eq!(info.name(), Some("detached"));
    assert!(info.age() >= Duration::from_secs(2));
    drop(guard);
    tokio::task::yield_now().await;
    assert!(mine().is_empty());
}

#[timefuse_leak::test]
async fn registry_drops_the_task_on_panic() {
    let handle = Context::background().spawn_named("panicky", async { panic!("boom") });
    assert!(handle.await.unwrap_err().is_panic());
    assert!(mine().is_empty());
}

#[timefuse_leak::test(start_paused = true)]
async fn cooperative_task_alive_after_its_context_ended_is_visible() {
    let (parent, parent_guard) = Context::background()
        .with_request_id(RequestId::new("req-deaf").unwrap())
        .with_cancel();
    let mut scope = TaskScope::new(&parent);
    let deaf = tokio::time::sleep(Duration::from_secs(3600));
    let (_, line) = (scope.spawn("deaf", deaf), line!());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let info = mine().pop().unwrap();
    assert_eq!(info.kind(), TaskKind::Cooperative);
    assert!(!info.context_ended());

    drop(parent_guard);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leaked: Vec<_> = mine().into_iter().filter(TaskInfo::context_ended).collect();
    assert_eq!(leaked.len(), 1);
    let info = &leaked[0];
    assert_eq!(info.name(), Some("deaf"));
    assert_eq!(info.location().line(), line);
    assert_eq!(info.cause(), Some(Cause::Canceled));
    assert_eq!(info.request_id().unwrap().as_str(), "req-deaf");
    assert!(info.age() >= Duration::from_secs(5));
    assert!(info.to_string().contains("context ended (") && info.to_string().contains("req-deaf"));
}

#[timefuse_leak::test(start_paused = true)]
async fn shutdown_finishes_the_cooperative_and_aborts_the_deaf() {
    let mut scope = TaskScope::new(&Context::background());
    let (cleaned, cleaned_rx) = oneshot::channel();
    scope.spawn("polite", async move {
        let cause = Context::current().done().await;
        tokio::time::sleep(Duration::from_millis(300)).await; // cleanup inside the grace
        cleaned.send(cause).unwrap();
    });
    let deaf = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let (_, deaf_line) = (scope.spawn("deaf", deaf), line!());
    scope.spawn_bound("bound", std::future::pending::<()>());
    scope.spawn("quick", async {});
    assert_eq!(scope.len(), 4);
    tokio::time::sleep(Duration::from_millis(10)).await;

    let start = Instant::now();
    let report = scope.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "waited the whole grace for the deaf task"
    );
    assert_eq!(cleaned_rx.await.unwrap(), Cause::Shutdown);

    assert_eq!(names(&report.finished), ["polite", "bound", "quick"]);
    assert_eq!(names(&report.aborted), ["deaf"]);
    assert!(report.panicked.is_empty());
    assert!(!report.is_clean());
    let deaf = &report.aborted[0];
    assert_eq!(
        (deaf.location().file(), deaf.location().line()),
        (file!(), deaf_line)
    );
    assert!(deaf.age() >= Duration::from_secs(2));
    assert_eq!(deaf.cause(), Some(Cause::Shutdown));
    let polite = &report.finished[0];
    assert!(polite.age() >= Duration::from_millis(300) && polite.age() < Duration::from_secs(2));
    assert!(report.to_string().contains("aborted: task #"), "{report}");
    assert!(mine().is_empty());
}

#[timefuse_leak::test(start_paused = true)]
async fn shutdown_returns_early_when_everyone_listens() {
    let mut scope = TaskScope::new(&Context::background());
    for n in 0..3 {
        scope.spawn(format!("listener-{n}"), async {
            Context::current().done().await;
        });
    }
    let start = Instant::now();
    let report = scope.shutdown(Duration::from_secs(30)).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(report.is_clean());
    assert_eq!(report.finished.len(), 3);
}

#[timefuse_leak::test]
async fn shutdown_with_an_unbounded_grace_waits() {
    let mut scope = TaskScope::new(&Context::background());
    scope.spawn("listener", async {
        Context::current().done().await;
    });
    let report = scope.shutdown(Duration::MAX).await;
    assert_eq!(report.finished.len(), 1);
}

#[timefuse_leak::test]
async fn wait_joins_without_cancelling_and_reports_panics_and_aborts() {
    let mut scope = TaskScope::new(&Context::background());
    scope.spawn("ok", async {});
    scope.spawn_bound("bound-ok", async {});
    scope.spawn("panics", async { panic!("scope task panic") });
    let stuck = scope.spawn("aborted-by-hand", std::future::pending::<()>());
    stuck.abort();
    let report = scope.wait().await;
    assert_eq!(names(&report.finished), ["ok", "bound-ok"]);
    assert_eq!(names(&report.panicked), ["panics"]);
    assert_eq!(names(&report.aborted), ["aborted-by-hand"]);
    assert!(!scope.context().is_done());
    assert!(scope.is_empty());

    // Still usable after wait.
    scope.spawn("again", async {});
    assert_eq!(scope.wait().await.finished.len(), 1);
}

#[timefuse_leak::test]
async fn scope_tasks_run_under_the_scope_context() {
    let parent = Context::background().with_value(11_u32);
    let mut scope = TaskScope::new(&parent);
    let expected = scope.context().clone();
    let (tx, rx) = oneshot::channel();
    scope.spawn("reads-current", async move {
        let current = Context::current();
        tx.send((current.same_as(&expected), current.value::<u32>().copied()))
            .unwrap();
    });
    assert_eq!(rx.await.unwrap(), (true, Some(11)));
    scope.wait().await;
}

#[timefuse_leak::test]
async fn dropping_a_scope_cancels_and_aborts() {
    let mut scope = TaskScope::new(&Context::background());
    let ctx = scope.context().clone();
    scope.spawn("left-behind", std::future::pending::<()>());
    tokio::task::yield_now().await;
    assert_eq!(mine().len(), 1);
    drop(scope);
    assert_eq!(ctx.cause(), Some(Cause::Shutdown));
    for _ in 0..10 {
        if mine().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(mine().is_empty());
}

#[timefuse_leak::test]
async fn dropping_the_shutdown_future_aborts_the_rest() {
    let mut scope = TaskScope::new(&Context::background());
    scope.spawn("deaf", std::future::pending::<()>());
    let shutdown = scope.shutdown(Duration::from_secs(3600));
    // Poll it once, then give up on it.
    assert!(
        tokio::time::timeout(Duration::from_millis(1), shutdown)
            .await
            .is_err()
    );
    for _ in 0..10 {
        if mine().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(mine().is_empty());
}

#[timefuse_leak::test]
async fn track_registers_foreign_tasks() {
    let ctx = Context::background().with_request_id(RequestId::new("req-track").unwrap());
    let tracked = ctx.sync_scope(|| task::track("foreign", std::future::pending::<()>()));
    let id = tracked.id().unwrap();
    let info = find(id).unwrap();
    assert_eq!(info.kind(), TaskKind::Cooperative);
    assert_eq!(info.tokio_id(), None, "not polled yet");
    assert_eq!(info.request_id().unwrap().as_str(), "req-track");
    let handle = tokio::spawn(tracked);
    tokio::task::yield_now().await;
    assert_eq!(find(id).unwrap().tokio_id(), Some(handle.id()));
    handle.abort();
    let _ = handle.await;
    assert!(find(id).is_none());
}

#[test]
fn track_outside_a_runtime_fills_the_runtime_at_first_poll() {
    let tracked = task::track("made-outside", std::future::pending::<()>());
    let id = tracked.id().unwrap();
    assert_eq!(find(id).unwrap().runtime(), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let handle = tokio::spawn(tracked);
        tokio::task::yield_now().await;
        let info = find(id).unwrap();
        assert_eq!(info.runtime(), Some(Handle::current().id()));
        assert_eq!(info.tokio_id(), Some(handle.id()));
        handle.abort();
        let _ = handle.await;
    });
    assert!(find(id).is_none());
}

#[test]
fn dropping_a_runtime_removes_its_detached_tasks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let rt_id = rt.handle().id();
    let (ctx, _guard) = Context::background().with_cancel();
    rt.block_on(async {
        drop(ctx.spawn_named("orphan", std::future::pending::<()>()));
        tokio::task::yield_now().await;
    });
    assert_eq!(task::live_count_for_runtime(rt_id), 1);
    drop(rt);
    assert_eq!(task::live_count_for_runtime(rt_id), 0);
}

#[test]
fn spawn_outside_a_runtime_panics_at_the_call_site() {
    let err = std::panic::catch_unwind(|| Context::background().spawn(async {})).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("Context::spawn called outside a tokio runtime"),
        "{msg}"
    );
}

#[test]
fn registry_attributes_tasks_to_their_runtime() {
    const PER_RUNTIME: usize = 50;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|n| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let (ctx, guard) = Context::background().with_cancel();
                    let handles: Vec<_> = (0..PER_RUNTIME)
                        .map(|i| {
                            ctx.spawn_named(format!("rt{n}-task{i}"), std::future::pending::<()>())
                        })
                        .collect();
                    tokio::task::yield_now().await;
                    barrier.wait(); // both runtimes have their tasks live
                    let me = Handle::current().id();
                    let live = task::snapshot_for_runtime(me);
                    assert_eq!(live.len(), PER_RUNTIME);
                    assert_eq!(task::live_count_for_runtime(me), PER_RUNTIME);
                    let prefix = format!("rt{n}-");
                    assert!(live.iter().all(|t| t.name().unwrap().starts_with(&prefix)));
                    assert!(live.iter().all(|t| t.runtime() == Some(me)));
                    assert!(task::live_count() >= 2 * PER_RUNTIME);
                    barrier.wait(); // neither cancels before both have looked
                    guard.cancel();
                    for h in handles {
                        assert_eq!(h.await.unwrap(), Err(Cause::Canceled));
                    }
                    assert_eq!(task::live_count_for_runtime(me), 0);
                    me
                })
            })
        })
        .collect();
    let ids: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(ids[0], ids[1]);
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_leave_the_registry_empty() {
    let me = Handle::current().id();
    let (ctx, guard) = Context::background().with_cancel();
    // Two spawners on two workers at once, half the tasks finishing, half cancelled.
    let spawners: Vec<_> = (0..2)
        .map(|s| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                (0..5_000)
                    .map(|i| {
                        if i % 2 == 0 {
                            ctx.spawn_named(format!("s{s}-{i}"), async {
                                tokio::task::yield_now().await
                            })
                        } else {
                            ctx.spawn(std::future::pending::<()>())
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut handles = Vec::new();
    for s in spawners {
        handles.extend(s.await.unwrap());
    }
    assert_eq!(handles.len(), 10_000);
    assert!(
        task::live_count_for_runtime(me) >= 2_500,
        "the pending half is still live"
    );
    guard.cancel();
    let mut finished = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(()) => finished += 1,
            Err(cause) => assert_eq!(cause, Cause::Canceled),
        }
    }
    assert!(finished <= 5_000);
    assert_eq!(task::live_count_for_runtime(me), 0);
    assert!(task::snapshot_for_runtime(me).is_empty());
}
