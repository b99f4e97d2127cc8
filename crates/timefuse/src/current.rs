//! The task-local current context, so outgoing layers find the budget without threading it by
//! hand. A context passed explicitly always wins over the current one.

use std::future::Future;

use tokio::task::futures::TaskLocalFuture;

use crate::Context;

tokio::task_local! {
    static CURRENT: Context;
}

impl Context {
    /// The context the current task runs under (set by [`scope`](Context::scope), by
    /// [`Context::spawn`] and by the timefuse server layers), or
    /// [`background`](Context::background) if none.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_value("order-7");
    /// ctx.scope(async {
    ///     assert_eq!(Context::current().value::<&str>(), Some(&"order-7"));
    /// })
    /// .await;
    /// assert_eq!(Context::current().value::<&str>(), None);
    /// # }
    /// ```
    pub fn current() -> Context {
        Self::try_current().unwrap_or_default()
    }

    /// The current task's context, or `None` outside any [`scope`](Context::scope).
    pub fn try_current() -> Option<Context> {
        CURRENT.try_with(Context::clone).ok()
    }

    /// Runs `fut` with this context as the task-local current one.
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as `fut`.
    pub fn scope<F: Future>(&self, fut: F) -> TaskLocalFuture<Context, F> {
        CURRENT.scope(self.clone(), fut)
    }

    /// Runs the closure `f` with this context as the current one (for synchronous code).
    ///
    /// ```
    /// let ctx = timefuse::Context::background().with_value(3_u8);
    /// let seen = ctx.sync_scope(|| *timefuse::Context::current().value::<u8>().unwrap());
    /// assert_eq!(seen, 3);
    /// ```
    pub fn sync_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }
}
