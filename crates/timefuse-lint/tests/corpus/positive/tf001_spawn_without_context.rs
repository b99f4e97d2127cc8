//! TF001: tasks spawned while a context is in scope, without it.

use std::time::Duration;

use timefuse::{BudgetScope, Context};
use tokio::spawn;
use tokio::task;

async fn audit(id: u64) {
    let _ = id;
}

fn rebuild_index() {}

async fn flush() {}

async fn process(i: u64) {
    let _ = i;
}

/// The document's `processOrder`: the goroutine ignores the request.
async fn process_order(ctx: &Context, id: u64) {
    tokio::spawn(async move { // expect: TF001
        tokio::time::sleep(Duration::from_secs(5)).await;
        audit(id).await;
    });
    let _ = ctx;
}

/// A thread started from a handler.
fn start_compaction(ctx: Context) {
    std::thread::spawn(move || rebuild_index()); // expect: TF001
    drop(ctx);
}

/// The task-local context is in scope, the blocking task does not get it.
async fn refresh() {
    let ctx = Context::current();
    let handle = task::spawn_blocking(rebuild_index); // expect: TF001
    let _ = handle.await;
    let _ = ctx.is_done();
}

/// A budget scope is a context too; `spawn` is tokio's, imported bare.
async fn close_stage(scope: &BudgetScope) {
    spawn(flush()); // expect: TF001
    let _ = scope.name();
}

/// A child with its own timeout, and a runtime handle that ignores it.
async fn with_child(parent: &Context) {
    let (ctx, _guard) = parent.with_timeout(Duration::from_millis(300));
    tokio::runtime::Handle::current().spawn(flush()); // expect: TF001
    let _ = ctx.remaining();
}

/// Fan-out in a closure: each item's task is detached from the request.
async fn fan_out(ctx: &Context, items: Vec<u64>) {
    items.into_iter().for_each(|i| {
        tokio::task::spawn(process(i)); // expect: TF001
    });
    let _ = ctx.deadline();
}
