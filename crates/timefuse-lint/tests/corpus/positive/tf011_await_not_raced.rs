//! TF011: long awaits in a context-taking function, not raced with the context.

use std::time::Duration;

use timefuse::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc};

async fn backoff(ctx: &Context) {
    let _ = ctx.remaining();
    tokio::time::sleep(Duration::from_secs(5)).await; // expect: TF011
}

async fn next_message(ctx: &Context, rx: &mut mpsc::Receiver<String>) -> Option<String> {
    let _ = ctx.remaining();
    let msg = rx.recv().await; // expect: TF011
    msg
}

async fn accept_one(ctx: Context, listener: &TcpListener) -> std::io::Result<()> {
    let (sock, _) = listener.accept().await?; // expect: TF011
    drop(sock);
    let _ = ctx;
    Ok(())
}

async fn select_without_ctx(ctx: &Context, rx: &mut mpsc::Receiver<String>, stop: &Notify) {
    let _ = ctx.remaining();
    tokio::select! { // expect: TF011
        m = rx.recv() => drop(m),
        _ = stop.notified() => {}
    }
}

async fn permit(sem: &Semaphore) {
    let ctx = Context::current();
    let _ = ctx.request_id();
    let _permit = sem.acquire().await; // expect: TF011
}

async fn parked(ctx: Context) {
    let inner = ctx.clone();
    let _ = tokio::spawn(ctx.scope(async move {
        let _ = inner.deadline();
        std::future::pending::<()>().await; // expect: TF011
    }));
}
