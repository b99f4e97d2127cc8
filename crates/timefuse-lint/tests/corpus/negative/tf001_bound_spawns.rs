//! Spawning done right: the task carries the request's context.

use std::time::Duration;

use timefuse::{Cause, Context};
use tokio::sync::mpsc;

async fn work() {}

async fn handle_conn(ctx: Context, conn: tokio::net::TcpStream) {
    let _ = ctx.run(async move { drop(conn) }).await;
}

async fn bound(ctx: &Context) -> Result<(), Cause> {
    let handle = ctx.spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    handle.await.expect("joined")
}

async fn named(ctx: &Context) {
    let _ = ctx.spawn_named("refresh-cache", work()).await;
}

async fn scoped(ctx: &Context) {
    // `scope` makes the context current; the task runs it under `run`.
    let inner = ctx.clone();
    let _ = tokio::spawn(ctx.scope(async move {
        let _ = inner.run(work()).await;
    }))
    .await;
}

async fn raced(ctx: &Context) {
    let _ = tokio::spawn(ctx.run(work())).await;
}

async fn watcher(ctx: &Context, log: mpsc::Sender<Cause>) {
    let done = ctx.done();
    tokio::spawn(async move {
        let cause = done.await;
        let _ = log.send(cause).await;
    });
}

async fn per_connection(ctx: &Context, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    loop {
        let (conn, _) = tokio::select! {
            _ = ctx.done() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        tokio::spawn(handle_conn(ctx.clone(), conn));
    }
}

fn metrics_loop() {
    // No context in scope: a process-wide task.
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_secs(10));
    });
}

fn detached_root() {
    // A fresh context is no request: spawning beside it loses nothing.
    let bg = Context::background();
    tokio::spawn(work());
    drop(bg);
}
