use std::time::Duration;

use timefuse::Context;

async fn handle(ctx: &Context, id: u64) {
    let _ = ctx.with_timeout(Duration::from_millis(200));
	tokio::spawn(async move { audit(id).await });
}

async fn audit(id: u64) {
    let _ = id;
}

// timefuse-lint: allow(TF030) — one per connection, dropped with it
struct Connection {
    ctx: Context,
}

struct Server {
    ctx: Context,
}
