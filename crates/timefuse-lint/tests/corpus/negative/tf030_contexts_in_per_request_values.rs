//! Per-request values that may hold their context.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use timefuse::{CancelGuard, Context};

/// A request, named so.
struct FetchRequest {
    ctx: Context,
    url: String,
}

/// One call to a replica.
pub struct ReplicaCall {
    ctx: Context,
}

/// One background job of a request.
struct FlushTask {
    ctx: Context,
    batch: Vec<u8>,
}

/// Owns the guard of the context it stores: it is that context's scope.
struct Scoped {
    ctx: Context,
    guard: CancelGuard,
}

/// A future lives as long as the work it does.
struct Deadline<F> {
    ctx: Context,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        if self.ctx.is_done() {
            return Poll::Ready(None);
        }
        self.fut.as_mut().poll(cx).map(Some)
    }
}

// timefuse-lint: allow(TF030) one per connection, dropped with it
struct Connection {
    ctx: Context,
}

/// No context at all.
struct Config {
    timeout_ms: u64,
}
