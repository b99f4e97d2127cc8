//! TF010: async loops that await but never check the context.

use std::time::Duration;

use timefuse::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

async fn handle(msg: String) {
    let _ = msg;
}

async fn serve(conn: tokio::net::TcpStream) {
    let _ = conn;
}

async fn fetch(url: &str) -> usize {
    url.len()
}

async fn flush() {}

async fn pump(ctx: &Context, mut rx: mpsc::Receiver<String>) {
    let _ = ctx.remaining();
    while let Some(msg) = rx.recv().await { // expect: TF010
        handle(msg).await;
    }
}

async fn accept_loop(ctx: Context, listener: TcpListener) -> std::io::Result<()> {
    loop { // expect: TF010
        let (conn, _) = listener.accept().await?;
        // The connection task is bound, but the loop itself never stops.
        ctx.spawn(serve(conn));
    }
}

async fn crawl(ctx: &Context, urls: &[&str]) -> usize {
    let _ = ctx.deadline();
    let mut total = 0;
    for url in urls { // expect: TF010
        total += fetch(url).await;
    }
    total
}

async fn ticker() {
    let ctx = Context::current();
    let _ = ctx.request_id();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop { // expect: TF010
        tick.tick().await;
        flush().await;
    }
}

async fn scoped_worker(ctx: Context, mut rx: mpsc::Receiver<String>) {
    // `scope` makes the context current but does not race the task with it.
    let _ = tokio::spawn(ctx.clone().scope(async move {
        let _ = &ctx;
        loop { // expect: TF010
            if let Some(msg) = rx.recv().await {
                handle(msg).await;
            }
        }
    }));
}

async fn retry(ctx: &Context) {
    let _ = ctx.remaining();
    let mut attempts = 0;
    while attempts < 5 { // expect: TF010
        flush().await;
        attempts += 1;
    }
}
