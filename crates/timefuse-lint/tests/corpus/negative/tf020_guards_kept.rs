//! Guards and scopes kept alive for the work they guard.

use std::sync::Arc;
use std::time::Duration;

use timefuse::budget::{BudgetExhausted, BudgetRecord, TimeoutPolicy};
use timefuse::{CancelGuard, Context};
use tokio::task::JoinHandle;

async fn call(ctx: &Context) {
    let _ = ctx.run(async {}).await;
}

async fn refresh() {}

async fn named_guard(parent: &Context) {
    let (ctx, _guard) = parent.with_timeout(Duration::from_millis(200));
    call(&ctx).await;
}

async fn dropped_after_use(parent: &Context) {
    let (ctx, guard) = parent.with_cancel();
    call(&ctx).await;
    drop(guard);
}

async fn stage_finished(parent: &Context) -> Result<BudgetRecord, BudgetExhausted> {
    let stage = parent.stage("validate")?;
    call(&stage).await;
    Ok(stage.finish())
}

async fn stage_leaving_by_match(parent: &Context, keep: std::time::Duration) {
    // The order service's risk step: the stage is kept for the call made under it.
    match parent.stage_leaving("risk-check", keep) {
        Ok(stage) => call(&stage).await,
        Err(_) => return,
    }
}

async fn scope_by_match(parent: &Context) {
    let scope = match parent.downstream("ledger") {
        Ok(scope) => scope,
        Err(_) => return,
    };
    call(&scope).await;
}

fn request(policy: Arc<TimeoutPolicy>) -> (Context, CancelGuard) {
    Context::request(policy)
}

async fn cancel_then_inspect(parent: &Context) -> bool {
    let (ctx, guard) = parent.with_cancel();
    call(&ctx).await;
    guard.cancel();
    ctx.is_done() && ctx.cause().is_some()
}

fn start(parent: &Context) -> (JoinHandle<Result<(), timefuse::Cause>>, CancelGuard) {
    let (ctx, guard) = parent.with_cancel();
    (ctx.spawn(refresh()), guard)
}

async fn disarmed(parent: &Context) {
    let (ctx, guard) = parent.with_timeout(Duration::from_secs(1));
    guard.disarm();
    call(&ctx).await;
}

fn summarize(ctx: &Context) -> usize {
    ctx.budget_records().len()
}

async fn inspect_after_cancel(parent: &Context) -> usize {
    let (ctx, guard) = parent.with_cancel();
    call(&ctx).await;
    guard.cancel();
    summarize(&ctx)
}
