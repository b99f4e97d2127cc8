//! [`TaskScope`]: structured concurrency over a child context, drained with a grace period.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::Instant;

use super::registry::{TASKS, TaskInfo, TaskKind, TaskName};
use super::{Tracked, runtime_handle};
use crate::{CancelGuard, Cause, Context};

/// A group of tasks that share a child context and end together: structured concurrency in
/// the manner of Go's `errgroup` with a context, or Kotlin's `coroutineScope`.
///
/// [`TaskScope::new`] derives a child of the given context. Tasks spawned into the scope run
/// with that child as their [current](Context::current) context and are recorded in the task
/// registry ([`snapshot`](crate::task::snapshot)):
///
/// - [`spawn`](TaskScope::spawn) runs a *cooperative* task: it is not raced against the
///   context, so it can clean up (flush, commit, say goodbye) when it sees the context end;
/// - [`spawn_bound`](TaskScope::spawn_bound) runs a task raced against the context, dropped
///   as soon as the context ends.
///
/// [`shutdown`](TaskScope::shutdown) cancels the context with [`Cause::Shutdown`], gives the
/// tasks a grace period to finish, aborts the rest and reports who was aborted.
/// [`wait`](TaskScope::wait) joins every task without cancelling anything. Dropping the scope
/// cancels its context and aborts the tasks left, as dropping a [`JoinSet`] does.
///
/// Finished tasks are kept, like in a `JoinSet`, until [`wait`](TaskScope::wait) or
/// [`shutdown`](TaskScope::shutdown) joins them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::{Context, task::TaskScope};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut scope = TaskScope::new(&Context::background());
/// scope.spawn("flusher", async {
///     Context::current().done().await; // watches its context...
///     // ...and flushes before returning.
/// });
/// scope.spawn("deaf", async {
///     tokio::time::sleep(Duration::from_secs(3600)).await; // ignores it
/// });
///
/// let report = scope.shutdown(Duration::from_secs(5)).await;
/// assert_eq!(report.finished[0].name(), Some("flusher"));
/// assert_eq!(report.aborted[0].name(), Some("deaf"));
/// assert!(report.aborted[0].age() >= Duration::from_secs(5));
/// # }
/// ```
pub struct TaskScope {
    ctx: Context,
    guard: CancelGuard,
    set: JoinSet<()>,
    tasks: HashMap<tokio::task::Id, TaskInfo>,
}

impl TaskScope {
    /// A scope whose tasks run under a new child of `parent`: it ends when `parent` does, or
    /// when the scope is cancelled, shut down or dropped.
    ///
    /// ```
    /// use timefuse::{Context, task::TaskScope};
    ///
    /// let (parent, guard) = Context::background().with_cancel();
    /// let scope = TaskScope::new(&parent);
    /// drop(guard);
    /// assert!(scope.context().is_done());
    /// ```
    #[must_use = "dropping the scope cancels its context and aborts its tasks"]
    pub fn new(parent: &Context) -> TaskScope {
        let (ctx, guard) = parent.with_cancel();
        TaskScope {
            ctx,
            guard,
            set: JoinSet::new(),
            tasks: HashMap::new(),
        }
    }

    /// The scope's context, which its tasks run under.
    ///
    /// ```
    /// use timefuse::{Context, task::TaskScope};
    ///
    /// let parent = Context::background().with_value("shard-4");
    /// let scope = TaskScope::new(&parent);
    /// assert_eq!(scope.context().value::<&str>(), Some(&"shard-4"));
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Spawns a cooperative task named `name` on the current runtime: it runs `fut` with the
    /// scope's context as the [current](Context::current) one, but is not raced against it.
    /// `fut` is expected to watch the context and return when it ends; one that does not is
    /// aborted at the end of [`shutdown`](TaskScope::shutdown)'s grace period.
    ///
    /// Returns an [`AbortHandle`] for the task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use timefuse::{Cause, Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// scope.spawn("graceful", async move {
    ///     let cause = Context::current().done().await;
    ///     tx.send(cause).unwrap(); // cleanup runs after the cancel
    /// });
    /// scope.cancel(Cause::Shutdown);
    /// assert!(scope.wait().await.is_clean());
    /// assert_eq!(rx.await.unwrap(), Cause::Shutdown);
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn<F>(&mut self, name: impl Into<Cow<'static, str>>, fut: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let location = Location::caller();
        let fut = self.ctx.scope(fut);
        self.spawn_registered(name.into(), location, TaskKind::Cooperative, fut)
    }

    /// Spawns a task named `name` on the current runtime, bound to the scope's context: it runs
    /// `fut` with the context as the [current](Context::current) one and drops it as soon as
    /// the context ends (see [`Context::spawn`]).
    ///
    /// Returns an [`AbortHandle`] for the task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::{Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// scope.spawn_bound("poller", async {
    ///     loop {
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///     }
    /// });
    /// // The bound task stops at the cancel, within any grace period.
    /// let report = scope.shutdown(Duration::from_secs(30)).await;
    /// assert_eq!(report.finished.len(), 1);
    /// assert!(report.aborted.is_empty());
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn_bound<F>(&mut self, name: impl Into<Cow<'static, str>>, fut: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let location = Location::caller();
        let ctx = self.ctx.clone();
        let fut = self.ctx.scope(async move {
            // Ending early because the context ended is this task's normal way to finish.
            let _ = ctx.run(fut).await;
        });
        self.spawn_registered(name.into(), location, TaskKind::Bound, fut)
    }

    #[track_caller]
    fn spawn_registered<F>(
        &mut self,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        kind: TaskKind,
        fut: F,
    ) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = runtime_handle("TaskScope::spawn");
        let runtime = Some(handle.id());
        let name = Some(TaskName::new(name));
        let mut info = None;
        let registration = TASKS.register_with(|id| {
            let entry = TaskInfo::new(id, self.ctx.clone(), name, location, runtime, kind);
            info = Some(entry.clone());
            entry
        });
        let id = registration.id();
        let abort = self
            .set
            .spawn_on(Tracked::new(fut, registration, false), &handle);
        let tokio_id = abort.id();
        TASKS.update(id, |t| t.tokio_id = Some(tokio_id));
        if let Some(mut info) = info {
            info.tokio_id = Some(tokio_id);
            self.tasks.insert(tokio_id, info);
        }
        abort
    }

    /// Cancels the scope's context with `cause`, without waiting for anything. Returns false
    /// if the context had already ended.
    ///
    /// ```
    /// use timefuse::{Cause, Context, task::TaskScope};
    ///
    /// let scope = TaskScope::new(&Context::background());
    /// assert!(scope.cancel(Cause::ClientGone));
    /// assert_eq!(scope.context().cause(), Some(Cause::ClientGone));
    /// ```
    pub fn cancel(&self, cause: Cause) -> bool {
        self.guard.cancel_ref(cause)
    }

    /// Number of tasks spawned and not yet joined (some may have finished).
    ///
    /// ```
    /// use timefuse::{Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// scope.spawn("one", async {});
    /// assert_eq!(scope.len(), 1);
    /// scope.wait().await;
    /// assert_eq!(scope.len(), 0);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True if every task spawned has been joined.
    ///
    /// ```
    /// let scope = timefuse::task::TaskScope::new(&timefuse::Context::background());
    /// assert!(scope.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for every task to end, without cancelling the context, and reports how each
    /// ended: [`finished`](ShutdownReport::finished), [`panicked`](ShutdownReport::panicked), or
    /// [`aborted`](ShutdownReport::aborted) through its [`AbortHandle`]. The scope stays usable.
    ///
    /// # Cancel safety
    ///
    /// No task is lost if the future is dropped: the tasks not yet joined stay in the scope.
    /// The entries of the tasks already joined are lost with the report.
    ///
    /// # Examples
    ///
    /// ```
    /// use timefuse::{Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// for shard in 0..3 {
    ///     scope.spawn(format!("shard-{shard}"), async {});
    /// }
    /// let report = scope.wait().await;
    /// assert_eq!(report.finished.len(), 3);
    /// assert!(!scope.context().is_done(), "wait does not cancel");
    /// # }
    /// ```
    pub async fn wait(&mut self) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        while let Some(res) = self.set.join_next_with_id().await {
            self.record(&mut report, res);
        }
        report.sort();
        report
    }

    /// Shuts the scope down: cancels its context with [`Cause::Shutdown`], waits up to `grace`
    /// for the tasks to return, aborts those still running, waits for the aborts to take
    /// effect, and reports how each task ended.
    ///
    /// Cooperative tasks that return after seeing the cancel, and bound tasks (which stop at
    /// the cancel), count as [`finished`](ShutdownReport::finished); tasks still running after
    /// `grace` are [`aborted`](ShutdownReport::aborted), with their name, spawn location and
    /// age, so the report names the tasks that did not listen to their context.
    ///
    /// An abort takes effect at the task's next `.await`: a task stuck in blocking code delays
    /// the end of the shutdown until it yields.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the scope, which aborts the tasks left without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::{Cause, Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// scope.spawn("drain", async {
    ///     let ctx = Context::current();
    ///     assert_eq!(ctx.done().await, Cause::Shutdown);
    ///     tokio::time::sleep(Duration::from_millis(200)).await; // drains within the grace
    /// });
    /// let report = scope.shutdown(Duration::from_secs(1)).await;
    /// assert!(report.is_clean());
    /// assert_eq!(report.finished[0].name(), Some("drain"));
    /// # }
    /// ```
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.guard.cancel_ref(Cause::Shutdown);
        let mut report = ShutdownReport::default();
        let deadline = Instant::now().checked_add(grace);
        loop {
            let next = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                        Ok(next) => next,
                        Err(_elapsed) => break,
                    }
                }
                None => self.set.join_next_with_id().await,
            };
            match next {
                Some(res) => self.record(&mut report, res),
                None => {
                    report.sort();
                    return report;
                }
            }
        }
        self.set.abort_all();
        while let Some(res) = self.set.join_next_with_id().await {
            self.record(&mut report, res);
        }
        report.sort();
        report
    }

    fn record(
        &mut self,
        report: &mut ShutdownReport,
        res: Result<(tokio::task::Id, ()), JoinError>,
    ) {
        let (id, bucket) = match res {
            Ok((id, ())) => (id, &mut report.finished),
            Err(e) if e.is_cancelled() => (e.id(), &mut report.aborted),
            Err(e) => (e.id(), &mut report.panicked),
        };
        if let Some(mut info) = self.tasks.remove(&id) {
            info.ended = Some(Instant::now());
            bucket.push(info);
        }
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        // Cancel first, so that the tasks' contexts read as ended; dropping the JoinSet right
        // after aborts them.
        self.guard.cancel_ref(Cause::Shutdown);
    }
}

impl fmt::Debug for TaskScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskScope")
            .field("ctx", &self.ctx)
            .field("tasks", &self.set.len())
            .finish()
    }
}

/// How the tasks of a [`TaskScope`] ended, from [`TaskScope::shutdown`] or [`TaskScope::wait`].
///
/// Each list is ordered oldest task first. A task's [`age`](TaskInfo::age) is its lifetime from
/// spawn until it was joined. The [`Display`](fmt::Display) form lists the aborted and
/// panicked tasks one per line.
///
/// ```
/// use std::time::Duration;
/// use timefuse::{Context, task::TaskScope};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut scope = TaskScope::new(&Context::background());
/// scope.spawn("stuck", std::future::pending::<()>());
/// let report = scope.shutdown(Duration::from_millis(100)).await;
/// assert!(!report.is_clean());
/// assert!(report.to_string().contains("\"stuck\""));
/// # }
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that returned (including bound tasks stopped by the context).
    pub finished: Vec<TaskInfo>,
    /// Tasks aborted: at the end of the grace period, or earlier through an [`AbortHandle`].
    pub aborted: Vec<TaskInfo>,
    /// Tasks that panicked (the panic payload is not kept).
    pub panicked: Vec<TaskInfo>,
}

impl ShutdownReport {
    /// True if every task finished: none aborted, none panicked.
    ///
    /// ```
    /// assert!(timefuse::task::ShutdownReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.aborted.is_empty() && self.panicked.is_empty()
    }

    fn sort(&mut self) {
        for list in [&mut self.finished, &mut self.aborted, &mut self.panicked] {
            list.sort_unstable_by_key(TaskInfo::id);
        }
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} finished, {} aborted, {} panicked",
            self.finished.len(),
            self.aborted.len(),
            self.panicked.len()
        )?;
        for info in &self.aborted {
            write!(f, "\naborted: {info}")?;
        }
        for info in &self.panicked {
            write!(f, "\npanicked: {info}")?;
        }
        Ok(())
    }
}
