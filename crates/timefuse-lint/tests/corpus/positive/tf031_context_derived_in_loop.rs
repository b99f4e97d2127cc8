//! TF031: a context re-derived from itself in a loop (Go's fatcontext).

use std::time::Duration;

use timefuse::budget::BudgetExhausted;
use timefuse::Context;

async fn handle(ctx: &Context, i: u32) {
    let _ = ctx.run(async { i }).await;
}

async fn tag_each(mut ctx: Context, items: &[u32]) {
    for &i in items {
        ctx = ctx.with_value(i); // expect: TF031
        handle(&ctx, i).await;
    }
}

async fn timeout_each(mut ctx: Context, n: u32) {
    for i in 0..n {
        let (child, _guard) = ctx.with_timeout(Duration::from_millis(50));
        ctx = child; // expect: TF031
        handle(&ctx, i).await;
    }
}

async fn cancel_each(parent: &Context, n: u32) {
    let mut ctx = parent.clone();
    let mut guard;
    let mut i = 0;
    while i < n {
        (ctx, guard) = ctx.with_cancel(); // expect: TF031
        handle(&ctx, i).await;
        drop(guard);
        i += 1;
    }
}

async fn stage_each(mut ctx: Context, stages: &[&str]) -> Result<(), BudgetExhausted> {
    for (i, name) in stages.iter().enumerate() {
        let stage = ctx.stage(*name)?;
        ctx = stage.context().clone(); // expect: TF031
        handle(&ctx, i as u32).await;
    }
    Ok(())
}

async fn deadline_chain(mut ctx: Context) {
    loop {
        if ctx.is_done() {
            break;
        }
        ctx = ctx.with_timeout(Duration::from_secs(1)).0; // expect: TF020, TF031
        handle(&ctx, 0).await;
    }
}
