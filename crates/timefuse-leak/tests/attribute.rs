//! `#[timefuse_leak::test]`: the `#[tokio::test]` arguments pass through, the leak options
//! apply, a leak fails the test, and many tests running in parallel (cargo's default) never see
//! each other's tasks.

use std::time::Duration;

use timefuse::Context;
use timefuse::task::TaskScope;
use tokio::runtime::{Handle, RuntimeFlavor};

#[timefuse_leak::test]
async fn plain() {
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::CurrentThread
    );
    let ctx = Context::background();
    assert_eq!(ctx.spawn(async { 1 }).await.unwrap(), Ok(1));
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_flavor() {
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::MultiThread
    );
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    let handles: Vec<_> = (0..64)
        .map(|i| Context::background().spawn(async move { i * 2 }))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap(), Ok(i * 2));
    }
}

#[timefuse_leak::test(start_paused = true)]
async fn start_paused() {
    let start = tokio::time::Instant::now();
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(30));
    let h = ctx.spawn(tokio::time::sleep(Duration::from_secs(3600)));
    assert!(h.await.unwrap().is_err());
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[timefuse_leak::test]
async fn returns_a_result() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[timefuse_leak::test]
async fn early_return_still_checks() {
    let h = Context::background().spawn(async {});
    h.await.unwrap().unwrap();
    if Handle::current().id() == Handle::current().id() {
        return;
    }
    unreachable!();
}

#[timefuse_leak::test(ignore_name = "detached", ignore_name = "also-detached")]
async fn ignore_name() {
    drop(Context::background().spawn_named("detached", std::future::pending::<()>()));
    drop(Context::background().spawn_named("also-detached", std::future::pending::<()>()));
}

#[timefuse_leak::test(ignore_location = "crates/timefuse-leak/tests/attribute.rs")]
async fn ignore_location() {
    drop(Context::background().spawn(std::future::pending::<()>()));
}

#[timefuse_leak::test(allow_unbound = 1)]
async fn allow_unbound() {
    drop(tokio::spawn(std::future::pending::<()>()));
}

#[timefuse_leak::test]
async fn locals_are_dropped_before_the_check() {
    // A scope left in a local: dropping it at the end of the body aborts its task, and the
    // check (which runs after) retries until the abort has taken effect.
    let mut scope = TaskScope::new(&Context::background());
    scope.spawn("until-dropped", std::future::pending::<()>());
    tokio::task::yield_now().await;
}

#[timefuse_leak::test]
#[should_panic(expected = "timefuse-leak: found 1 leaked task")]
async fn a_leak_fails_the_test() {
    drop(Context::background().spawn_named("forgotten", std::future::pending::<()>()));
}

#[timefuse_leak::test]
#[should_panic(expected = "1 unbound task still alive")]
async fn an_unbound_leak_fails_the_test() {
    drop(tokio::spawn(std::future::pending::<()>()));
}

/// Many tests run in parallel, each spawning tasks that outlive a yield or two while the
/// others check: none sees another's.
macro_rules! busy_tests {
    ($($name:ident),*) => {$(
        #[timefuse_leak::test]
        async fn $name() {
            let (ctx, guard) = Context::background().with_cancel();
            let handles: Vec<_> = (0..200)
                .map(|i| ctx.spawn_named(format!("{}-{i}", stringify!($name)), async move {
                    for _ in 0..(i % 7) {
                        tokio::task::yield_now().await;
                    }
                }))
                .collect();
            let stuck: Vec<_> = (0..20)
                .map(|_| ctx.spawn(std::future::pending::<()>()))
                .collect();
            std::thread::sleep(Duration::from_millis(5)); // let the other tests overlap
            for h in handles {
                h.await.unwrap().unwrap();
            }
            guard.cancel();
            for h in stuck {
                assert!(h.await.unwrap().is_err());
            }
        }
    )*};
}

busy_tests!(
    busy_00, busy_01, busy_02, busy_03, busy_04, busy_05, busy_06, busy_07, busy_08, busy_09,
    busy_10, busy_11, busy_12, busy_13, busy_14, busy_15
);

/// While the busy tests run, one of them leaking would be seen here if the check were not
/// per runtime; this one leaks on purpose and sees only its own task.
#[tokio::test]
async fn a_leaking_test_among_busy_ones_sees_only_its_own() {
    let guard =
        timefuse_leak::LeakGuard::with_options(timefuse_leak::LeakOptions::new().with_retries(3));
    let h = Context::background().spawn_named("mine", std::future::pending::<()>());
    std::thread::sleep(Duration::from_millis(5));
    let report = guard.verify().await.unwrap_err();
    let names: Vec<_> = report.tasks().iter().map(|t| t.name().unwrap()).collect();
    assert_eq!(names, ["mine"]);
    h.abort();
}
