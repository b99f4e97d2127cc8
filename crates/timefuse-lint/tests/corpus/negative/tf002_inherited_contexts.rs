//! Passing the inherited context on, or making a root where there is none.

use std::sync::Arc;
use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::{CancelGuard, Context};

async fn fetch(ctx: &Context, key: &str) -> Option<String> {
    ctx.run(async { Some(key.to_owned()) }).await.ok().flatten()
}

async fn serve(ctx: &Context) {
    let _ = fetch(ctx, "k").await;
}

#[tokio::main]
async fn main() {
    // The root of the process: nothing to inherit from.
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(30));
    serve(&ctx).await;
}

async fn audit(ctx: &Context) {
    // Work that must finish even if the request is abandoned keeps the values, not the cancel.
    let _ = fetch(&ctx.without_cancel(), "audit").await;
}

async fn child(ctx: &Context) -> Option<String> {
    let (call, _guard) = ctx.with_timeout(Duration::from_millis(200));
    fetch(&call, "user:1").await
}

async fn compare(ctx: &Context) -> bool {
    !ctx.same_as(&Context::background())
}

fn request_root(policy: Arc<TimeoutPolicy>) -> (Context, CancelGuard) {
    Context::background().with_request_budget(policy, None)
}

async fn from_task_local() -> Option<String> {
    let ctx = Context::try_current().unwrap_or_default();
    fetch(&ctx, "user:2").await
}
