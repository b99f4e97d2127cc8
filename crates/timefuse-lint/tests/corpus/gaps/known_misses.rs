//! Misuse the heuristics do not catch. Each line with a `gap:` marker should be flagged and
//! is not; `tests/corpus.rs` checks that it still is not (so that these notes stay true) and
//! counts it as a false negative in the overall numbers.

use timefuse::Context;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

async fn work() {}

async fn log(ctx: &Context) {
    let _ = ctx.request_id();
}

/// A spawn through a runtime handle held in a local.
async fn spawn_via_local_handle(ctx: &Context) {
    let rt = Handle::current();
    rt.spawn(work()); // gap: TF001
    let _ = ctx.remaining();
}

/// A callee that takes the context but only logs it counts as listening.
async fn callee_that_does_not_listen(ctx: &Context) {
    loop { // gap: TF010
        log(ctx).await;
        work().await;
    }
}

/// Awaiting a join handle or a future held in a local is not known to be long.
async fn join_handle(ctx: &Context) {
    let handle = ctx.spawn(work());
    let _ = handle.await; // gap: TF011
}

/// The guard is dropped in an inner block; the use is in the outer one.
async fn drop_in_inner_block(ctx: &Context) {
    let (child, guard) = ctx.with_cancel();
    {
        drop(guard); // gap: TF021
    }
    log(&child).await;
}

/// A fresh context stored first, then passed inside a struct.
struct Call {
    ctx: Context,
}

async fn send(call: Call) {
    let _ = call.ctx.remaining();
}

async fn fresh_in_a_struct(ctx: &Context) {
    let _ = ctx.remaining();
    send(Call { ctx: Context::background() }).await; // gap: TF002
}

/// An enum variant holding a context is not checked.
enum State {
    Idle,
    Busy(Context), // gap: TF030
}

/// Growth through a helper function is not seen.
fn tag(ctx: Context, i: u32) -> Context {
    ctx.with_value(i)
}

async fn grow_through_helper(mut ctx: Context) {
    for i in 0..10 {
        ctx = tag(ctx, i); // gap: TF031
        log(&ctx).await;
    }
}

/// A JoinSet task is aborted with the set, but not stopped by the request's end.
async fn join_set(ctx: &Context, set: &mut JoinSet<()>) {
    set.spawn(work()); // gap: TF001
    let _ = ctx.remaining();
}
