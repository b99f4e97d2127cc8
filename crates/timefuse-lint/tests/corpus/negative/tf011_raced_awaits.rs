//! Long waits raced with the context, or bounded by its deadline.

use std::time::Duration;

use timefuse::{Cause, Context};
use tokio::sync::mpsc;

async fn backoff(ctx: &Context) -> Result<(), Cause> {
    ctx.run(tokio::time::sleep(Duration::from_secs(5))).await
}

async fn next_message(ctx: &Context, rx: &mut mpsc::Receiver<String>) -> Option<String> {
    tokio::select! {
        _ = ctx.done() => None,
        msg = rx.recv() => msg,
    }
}

async fn until_deadline(ctx: &Context) {
    tokio::time::sleep(ctx.remaining().unwrap_or(Duration::from_secs(1))).await;
}

async fn bounded(ctx: &Context, rx: &mut mpsc::Receiver<String>) -> Option<String> {
    let _ = ctx.remaining();
    tokio::time::timeout(Duration::from_millis(100), rx.recv())
        .await
        .ok()
        .flatten()
}

async fn in_bound_task(ctx: &Context) {
    let _ = ctx
        .spawn(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await;
}

async fn no_context() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn pinned_done(ctx: &Context, rx: &mut mpsc::Receiver<String>) -> Option<String> {
    let done = ctx.done();
    tokio::pin!(done);
    tokio::select! {
        _ = &mut done => None,
        msg = rx.recv() => msg,
    }
}

async fn call(ctx: &Context, latency: Option<u64>) -> Result<(), String> {
    let scope = ctx.downstream("svc").map_err(|e| e.to_string())?;
    let service = async {
        match latency {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    scope.run(service).await.map_err(|c: Cause| c.to_string())
}

async fn deadline_timeout(ctx: &Context, rx: &mut mpsc::Receiver<String>) -> Option<String> {
    let left = ctx.remaining().unwrap_or(Duration::MAX);
    tokio::time::timeout(left, async { rx.recv().await }).await.ok().flatten()
}
