//! Children derived per iteration into new bindings.

use std::time::Duration;

use timefuse::Context;

async fn handle(ctx: &Context, i: u32) {
    let _ = ctx.run(async { i }).await;
}

async fn child_per_iteration(ctx: &Context, n: u32) {
    for i in 0..n {
        let (child, _guard) = ctx.with_timeout(Duration::from_millis(50));
        handle(&child, i).await;
    }
}

async fn reset_from_outer(ctx: &Context, items: &[u32]) {
    let mut cur = ctx.clone();
    for &i in items {
        cur = ctx.with_value(i);
        handle(&cur, i).await;
    }
}

async fn once_outside_a_loop(mut ctx: Context) {
    ctx = ctx.with_value(1_u32);
    handle(&ctx, 1).await;
}

async fn shadowed(ctx: &Context, items: &[u32]) {
    for &i in items {
        let ctx = ctx.with_value(i);
        handle(&ctx, i).await;
    }
}

async fn clone_back(mut ctx: Context, parent: &Context, n: u32) {
    for i in 0..n {
        ctx = parent.clone();
        handle(&ctx, i).await;
    }
}
