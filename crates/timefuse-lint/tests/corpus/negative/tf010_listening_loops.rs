//! Loops that listen to the context.

use std::time::Duration;

use timefuse::budget::BudgetExhausted;
use timefuse::{Cause, Context};
use tokio::sync::mpsc;

async fn handle(msg: String) {
    let _ = msg;
}

async fn process(ctx: &Context, item: u32) -> Result<(), Cause> {
    ctx.run(async move { drop(item) }).await
}

async fn polls(ctx: &Context, mut rx: mpsc::Receiver<String>) {
    loop {
        if ctx.is_done() {
            break;
        }
        match rx.try_recv() {
            Ok(msg) => handle(msg).await,
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

async fn selects(ctx: &Context, mut rx: mpsc::Receiver<String>) {
    loop {
        tokio::select! {
            _ = ctx.done() => break,
            msg = rx.recv() => match msg {
                Some(msg) => handle(msg).await,
                None => break,
            },
        }
    }
}

async fn races(ctx: &Context, mut rx: mpsc::Receiver<String>) {
    while let Ok(Some(msg)) = ctx.run(rx.recv()).await {
        handle(msg).await;
    }
}

async fn passes(ctx: &Context, items: &[u32]) -> Result<(), Cause> {
    for &item in items {
        process(ctx, item).await?;
    }
    Ok(())
}

async fn admits(ctx: &Context, items: &[u32]) -> Result<(), BudgetExhausted> {
    for &item in items {
        let _stage = ctx.stage("item")?;
        handle(item.to_string()).await;
    }
    Ok(())
}

async fn sums(ctx: &Context, items: &[u32]) -> u32 {
    let mut sum = 0;
    for &x in items {
        sum += x;
    }
    let _ = ctx.remaining();
    sum
}

fn sync_retry(ctx: &Context) {
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = ctx.remaining();
}

async fn raced_whole_loop(ctx: &Context, mut rx: mpsc::Receiver<String>) {
    let _ = ctx
        .run(async move {
            loop {
                let Some(msg) = rx.recv().await else { break };
                handle(msg).await;
            }
        })
        .await;
}

async fn raced_local(ctx: &Context, mut rx: mpsc::Receiver<String>) {
    let worker = async move {
        while let Some(msg) = rx.recv().await {
            handle(msg).await;
        }
    };
    let _ = ctx.run(worker).await;
}

async fn per_item_child(ctx: &Context, items: &[u32]) {
    for &item in items {
        let (child, _guard) = ctx.with_timeout(Duration::from_millis(50));
        let _ = process(&child, item).await;
    }
}
