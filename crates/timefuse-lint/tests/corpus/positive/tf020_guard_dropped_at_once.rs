//! TF020: the guard (or budget scope) dies on the line that creates it.

use std::time::Duration;

use timefuse::budget::BudgetExhausted;
use timefuse::Context;
use tokio::time::Instant;

async fn call(ctx: &Context) {
    let _ = ctx.run(async {}).await;
}

async fn underscore(ctx: &Context) {
    let _ = ctx.with_timeout(Duration::from_millis(200)); // expect: TF020
    call(ctx).await;
}

async fn guard_bound_to_wildcard(ctx: &Context) {
    let (child, _) = ctx.with_cancel(); // expect: TF020
    call(&child).await;
}

async fn stage_discarded(ctx: &Context) -> Result<(), BudgetExhausted> {
    let _ = ctx.stage("validate"); // expect: TF020
    call(ctx).await;
    Ok(())
}

async fn stage_leaving_discarded(ctx: &Context, keep: Duration) -> Result<(), BudgetExhausted> {
    ctx.stage_leaving("risk", keep)?; // expect: TF020
    call(ctx).await;
    Ok(())
}

async fn downstream_statement(ctx: &Context) -> Result<(), BudgetExhausted> {
    ctx.downstream("ledger")?; // expect: TF020
    call(ctx).await;
    Ok(())
}

async fn tuple_temporary(ctx: &Context) {
    let child = ctx.with_timeout(Duration::from_secs(1)).0; // expect: TF020
    call(&child).await;
}

async fn assignment(parent: &Context, at: Instant) {
    _ = parent.with_deadline(at); // expect: TF020
    call(parent).await;
}

async fn current_context_stage() {
    let _ = Context::current().stage("render").unwrap(); // expect: TF020
}
