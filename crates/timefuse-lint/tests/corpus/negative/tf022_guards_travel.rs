//! Futures, tasks and streams that own the guard of the context they use.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use timefuse::{CancelGuard, Context};
use tokio::task::JoinHandle;

async fn get(ctx: &Context, key: &str) -> Option<String> {
    ctx.run(async { Some(key.to_owned()) }).await.ok().flatten()
}

async fn refresh() {}

fn fetch(parent: &Context, key: String) -> impl Future<Output = Option<String>> {
    let (ctx, guard) = parent.with_timeout(Duration::from_millis(250));
    async move {
        let _guard = guard;
        get(&ctx, &key).await
    }
}

fn boxed(parent: &Context) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> {
    let stage = parent.stage("render").expect("budget");
    Box::pin(async move { get(&stage, "k").await })
}

async fn awaited_task(parent: &Context) {
    let (ctx, _guard) = parent.with_timeout(Duration::from_secs(2));
    let handle = ctx.spawn(refresh());
    let _ = handle.await;
}

async fn detached_with_guard(parent: &Context) {
    let (ctx, guard) = parent.with_timeout(Duration::from_secs(2));
    tokio::spawn(async move {
        let _guard = guard;
        let _ = get(&ctx, "k").await;
    });
}

struct Pending {
    ctx: Context,
    guard: CancelGuard,
}

fn pending(parent: &Context) -> Pending {
    let (ctx, guard) = parent.with_cancel();
    Pending { ctx, guard }
}

fn blocking(parent: &Context) -> Option<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (ctx, _guard) = parent.with_timeout(Duration::from_secs(1));
    rt.block_on(async { get(&ctx, "k").await })
}

fn handle_and_guard(parent: &Context) -> (JoinHandle<()>, CancelGuard) {
    let (ctx, guard) = parent.with_cancel();
    let task = tokio::spawn(async move {
        let _ = get(&ctx, "k").await;
    });
    (task, guard)
}

async fn in_async_fn(parent: &Context) -> Option<String> {
    let (ctx, _guard) = parent.with_timeout(Duration::from_secs(1));
    let fut = async { get(&ctx, "k").await };
    fut.await
}
