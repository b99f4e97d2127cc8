//! TF002: a fresh context passed on while one is inherited (Go's contextcheck).

use std::time::Duration;

use timefuse::Context;
use timefuse::task::TaskScope;

async fn fetch(ctx: &Context, key: &str) -> Option<String> {
    ctx.run(async { Some(key.to_owned()) }).await.ok().flatten()
}

struct Client;

impl Client {
    async fn get(&self, ctx: &Context, key: &str) -> Option<String> {
        fetch(ctx, key).await
    }
}

async fn background_literal(ctx: &Context) -> Option<String> {
    let _ = ctx.remaining();
    fetch(&Context::background(), "user:1").await // expect: TF002
}

async fn background_local(ctx: &Context) -> Option<String> {
    let bg = Context::background();
    let _ = ctx.remaining();
    fetch(&bg, "user:2").await // expect: TF002
}

async fn new_root_with_timeout(ctx: &Context) -> Option<String> {
    let (call, _guard) = Context::background().with_timeout(Duration::from_millis(200));
    let _ = ctx.remaining();
    fetch(&call, "user:3").await // expect: TF002
}

async fn method_argument(ctx: &Context, client: &Client) -> Option<String> {
    let _ = ctx.remaining();
    client.get(&Context::default(), "user:4").await // expect: TF002
}

async fn task_scope_on_a_new_root() {
    let ctx = Context::current();
    let scope = TaskScope::new(&Context::background()); // expect: TF002
    let _ = (ctx, scope);
}

async fn spawn_on_a_fresh_receiver(ctx: &Context) {
    let _ = ctx.remaining();
    let bg = Context::background().with_value(7_u32);
    let _ = bg.spawn(async {}).await; // expect: TF002
}
