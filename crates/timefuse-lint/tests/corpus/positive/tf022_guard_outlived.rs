//! TF022: futures, streams and tasks that outlive the guard of the context they capture.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::Stream;
use timefuse::Context;
use tokio::task::JoinHandle;

async fn get(ctx: &Context, key: &str) -> Option<String> {
    ctx.run(async { Some(key.to_owned()) }).await.ok().flatten()
}

async fn refresh() {}

/// The guard dies when `fetch` returns; the future runs later, on a cancelled context.
fn fetch(parent: &Context, key: String) -> impl Future<Output = Option<String>> {
    let (ctx, _guard) = parent.with_timeout(Duration::from_millis(250));
    async move { get(&ctx, &key).await } // expect: TF022
}

/// The bound task is cancelled as soon as `start` returns.
fn start(parent: &Context) -> JoinHandle<Result<(), timefuse::Cause>> {
    let (ctx, guard) = parent.with_cancel();
    ctx.spawn(refresh()) // expect: TF022
}

struct Handler {
    ctx: Context, // expect: TF030
}

impl tower_service::Service<String> for Handler {
    type Response = Option<String>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Option<String>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, key: String) -> Self::Future {
        let stage = self.ctx.stage("handler").expect("budget");
        let ctx = stage.context().clone();
        Box::pin(async move { Ok(get(&ctx, &key).await) }) // expect: TF022
    }
}

/// A fire-and-forget task whose context is cancelled when `kick` returns.
async fn kick(parent: &Context) {
    let (ctx, _guard) = parent.with_timeout(Duration::from_secs(2));
    ctx.spawn(refresh()); // expect: TF022
}

/// A stream that outlives the guard of the context it polls with.
fn watch(parent: &Context) -> impl Stream<Item = Option<String>> {
    let (ctx, _guard) = parent.with_timeout(Duration::from_secs(30));
    futures::stream::unfold(ctx, |ctx| async move { // expect: TF022
        let v = get(&ctx, "k").await;
        Some((v, ctx))
    })
}

/// A detached task capturing the child but not its guard.
async fn detach(parent: &Context) {
    let (ctx, _guard) = parent.with_timeout(Duration::from_secs(2));
    tokio::spawn(async move { // expect: TF022
        let _ = get(&ctx, "k").await;
    });
}
