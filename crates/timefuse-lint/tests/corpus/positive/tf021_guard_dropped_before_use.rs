//! TF021: a guard or scope released before later work on its context.

use std::time::Duration;

use timefuse::budget::BudgetExhausted;
use timefuse::{Cause, Context};

async fn call(ctx: &Context) {
    let _ = ctx.run(async {}).await;
}

async fn work() {}

async fn dropped_then_called(ctx: &Context) {
    let (child, guard) = ctx.with_timeout(Duration::from_millis(100));
    drop(guard); // expect: TF021
    call(&child).await;
}

async fn scope_dropped_then_spawned(ctx: &Context) -> Result<(), BudgetExhausted> {
    let stage = ctx.stage("enrich")?;
    let inner = stage.context().clone();
    drop(stage); // expect: TF021
    let _ = inner.spawn(work()).await;
    Ok(())
}

async fn cancelled_then_run(ctx: &Context) {
    let (child, guard) = ctx.with_cancel();
    guard.cancel_with(Cause::Shutdown); // expect: TF021
    let _ = child.run(work()).await;
}

async fn descendant_after_drop(ctx: &Context) {
    let (child, guard) = ctx.with_cancel();
    let tagged = child.with_value(42_u32);
    std::mem::drop(guard); // expect: TF021
    call(&tagged).await;
}

async fn finished_then_used(ctx: &Context) -> Result<(), BudgetExhausted> {
    let search = ctx.downstream("search")?;
    let inner = search.context().clone();
    search.finish(); // expect: TF021
    call(&inner).await;
    Ok(())
}
