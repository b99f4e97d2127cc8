//! Tasks bound to a context.
use std::future::Future;

use crate::{Cause, Context};

impl Context {
    /// Spawns `fut` bound to this context (placeholder until the registry lands).
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<Result<F::Output, Cause>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let ctx = self.clone();
        tokio::spawn(async move { ctx.scope(ctx.run(fut)).await })
    }
}
