//! Tasks bound to a context, and the process-wide registry of live tasks.
//!
//! # Why
//!
//! In Go, a goroutine that outlives its request is the classic leak: it holds memory, a
//! connection or a lock after nobody wants its result, and `goleak` exists to catch it in tests.
//! A detached tokio task leaks the same way: dropping a [`JoinHandle`]
//! detaches the task, and tokio keeps no list of detached tasks to inspect or wait for (it
//! declined to, in tokio#2039, as "out of scope for `Runtime`").
//!
//! This module is that additional layer:
//!
//! - [`Context::spawn`] and [`Context::spawn_named`] spawn a task *bound* to a context: it runs
//!   with the context as its [current](Context::current) one and is raced against it
//!   ([`Context::run`]), so it stops, with the [`Cause`], when the request's budget is gone or
//!   the request is cancelled. Nothing outlives its request by accident.
//! - Every task spawned through timefuse is recorded in a process-wide registry from spawn until
//!   its future is dropped (completion, cancellation, abort or panic), with its spawn location,
//!   name, request and trace id, start time, runtime and context. [`snapshot`] reads it; a task
//!   whose [`context_ended`](TaskInfo::context_ended) but which is still alive is the leak
//!   signal the leak check and the live task dump report.
//! - [`TaskScope`] is structured concurrency with a grace period: tasks spawned into it share
//!   a child context; [`shutdown`](TaskScope::shutdown) cancels it, waits up to a grace period
//!   for cooperative tasks to clean up, aborts the rest and reports which were aborted.
//!
//! The registry is sharded (16 locks) and holds its locks only to insert, update, remove or
//! copy an entry, so spawning from many threads does not serialize on one lock. The storage is
//! the general [`Registry`], reusable for anything else with a lifetime worth tracking.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use timefuse::{Cause, Context, RequestId, task};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let request = Context::background().with_request_id(RequestId::new("req-1").unwrap());
//! let (request, _guard) = request.with_timeout(Duration::from_millis(800));
//!
//! let refresh = request.spawn_named("refresh-cache", async {
//!     tokio::time::sleep(Duration::from_secs(5)).await; // longer than the budget
//! });
//! let live = task::snapshot_where(|t| t.name() == Some("refresh-cache"));
//! assert_eq!(live[0].request_id().unwrap().as_str(), "req-1");
//!
//! assert_eq!(refresh.await.unwrap(), Err(Cause::DeadlineExceeded));
//! assert!(task::snapshot_where(|t| t.name() == Some("refresh-cache")).is_empty());
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{Cause, Context};

mod registry;
mod scope;

pub use registry::{
    Registration, Registry, TaskInfo, TaskKind, live_count, live_count_for_runtime, snapshot,
    snapshot_for_runtime, snapshot_where,
};
pub use scope::{ShutdownReport, TaskScope};

use registry::{TASKS, TaskName};

/// The current runtime, or a panic that names the timefuse call site.
#[track_caller]
pub(crate) fn runtime_handle(what: &str) -> Handle {
    match Handle::try_current() {
        Ok(handle) => handle,
        Err(e) => panic!("{what} called outside a tokio runtime: {e}"),
    }
}

/// Records a task in the registry; the returned registration removes it when dropped.
pub(crate) fn register(
    ctx: &Context,
    name: Option<TaskName>,
    location: &'static Location<'static>,
    runtime: Option<tokio::runtime::Id>,
    kind: TaskKind,
) -> Registration<'static, TaskInfo> {
    TASKS.register_with(|id| TaskInfo::new(id, ctx.clone(), name, location, runtime, kind))
}

/// Spawns `fut` bound to `ctx` on the current runtime. `#[track_caller]` so that tokio's own
/// spawn location (under `tokio_unstable`) is the user's call site too.
#[track_caller]
fn spawn_bound<F>(
    ctx: &Context,
    name: Option<TaskName>,
    location: &'static Location<'static>,
    fut: F,
) -> JoinHandle<Result<F::Output, Cause>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = runtime_handle("Context::spawn");
    let registration = register(ctx, name, location, Some(handle.id()), TaskKind::Bound);
    let id = registration.id();
    let fut = Tracked::new(ctx.scope(ctx.run(fut)), registration, false);
    let join = handle.spawn(fut);
    // The task may already have finished on another worker: then there is nothing to update.
    TASKS.update(id, |t| t.tokio_id = Some(join.id()));
    join
}

impl Context {
    /// Spawns `fut` on the current tokio runtime as a task bound to this context: it runs with
    /// this context as the [current](Context::current) one and is raced against it
    /// ([`run`](Context::run)). The task resolves to `Ok(output)` if `fut` completes first, or
    /// to `Err(cause)` if the context ends first, in which case `fut` is dropped at once. If the
    /// context has already ended, `fut` is never polled.
    ///
    /// The task is recorded in the task registry ([`snapshot`]) with the caller's location
    /// until its future is dropped. As with `tokio::spawn`, dropping the returned handle
    /// detaches the task, and [`abort`](JoinHandle::abort) cancels it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::{Cause, Context};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (ctx, guard) = Context::background().with_value("tenant-a").with_cancel();
    /// let quick = ctx.spawn(async { *Context::current().value::<&str>().unwrap() });
    /// assert_eq!(quick.await.unwrap(), Ok("tenant-a"));
    ///
    /// let slow = ctx.spawn(tokio::time::sleep(Duration::from_secs(60)));
    /// guard.cancel();
    /// assert_eq!(slow.await.unwrap(), Err(Cause::Canceled));
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<Result<F::Output, Cause>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_bound(self, None, Location::caller(), fut)
    }

    /// [`spawn`](Context::spawn) with a name, shown in the task registry and in leak reports.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use timefuse::{Context, task};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background();
    /// let handle = ctx.spawn_named(format!("poller-{}", 3), std::future::pending::<()>());
    /// let info = task::snapshot_where(|t| t.name() == Some("poller-3")).pop().unwrap();
    /// assert_eq!(info.location().file(), file!());
    /// handle.abort();
    /// assert!(handle.await.unwrap_err().is_cancelled());
    /// assert!(task::snapshot_where(|t| t.name() == Some("poller-3")).is_empty());
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn_named<F>(
        &self,
        name: impl Into<Cow<'static, str>>,
        fut: F,
    ) -> JoinHandle<Result<F::Output, Cause>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let location = Location::caller();
        spawn_bound(self, Some(TaskName::new(name.into())), location, fut)
    }
}

/// Records `fut` in the task registry, with the caller's location and the
/// [current](Context::current) context, for as long as the returned future is alive.
///
/// For tasks spawned by other means than timefuse's (`tokio::spawn`, a `JoinSet`, another
/// crate's executor hooks), so that the leak check and the task dump see them too. The future is
/// neither raced against the context nor run under it: it is recorded as
/// [`TaskKind::Cooperative`]. Its tokio task id and runtime are filled in at its first poll,
/// from the task that polls it.
///
/// # Examples
///
/// ```
/// use timefuse::task;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = tokio::spawn(task::track("legacy-worker", std::future::pending::<()>()));
/// tokio::task::yield_now().await; // let it be polled once
/// let info = task::snapshot_where(|t| t.name() == Some("legacy-worker")).pop().unwrap();
/// assert_eq!(info.tokio_id(), Some(handle.id()));
/// handle.abort();
/// # let _ = handle.await;
/// assert!(task::snapshot_where(|t| t.name() == Some("legacy-worker")).is_empty());
/// # }
/// ```
#[track_caller]
pub fn track<F: Future>(name: impl Into<Cow<'static, str>>, fut: F) -> Tracked<F> {
    let location = Location::caller();
    let runtime = Handle::try_current().ok().map(|h| h.id());
    let ctx = Context::current();
    let registration = register(
        &ctx,
        Some(TaskName::new(name.into())),
        location,
        runtime,
        TaskKind::Cooperative,
    );
    Tracked::new(fut, registration, true)
}

pin_project! {
    /// A future recorded in the task registry until it completes or is dropped. Returned by
    /// [`track`]; also what [`Context::spawn`] and [`TaskScope`] spawn.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tracked = timefuse::task::track("tracked-doc", async { 40 + 2 });
    /// assert_eq!(timefuse::task::snapshot_where(|t| t.name() == Some("tracked-doc")).len(), 1);
    /// assert_eq!(tracked.await, 42);
    /// assert!(timefuse::task::snapshot_where(|t| t.name() == Some("tracked-doc")).is_empty());
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as the future it wraps; dropping it removes the registry entry.
    #[must_use = "futures do nothing unless polled"]
    pub struct Tracked<F> {
        // Declared first so that it is dropped first: the entry stays while the future's own
        // drop runs.
        #[pin]
        fut: F,
        registration: Option<Registration<'static, TaskInfo>>,
        fill_ids: bool,
    }
}

impl<F> Tracked<F> {
    pub(crate) fn new(
        fut: F,
        registration: Registration<'static, TaskInfo>,
        fill_ids: bool,
    ) -> Self {
        Tracked {
            fut,
            registration: Some(registration),
            fill_ids,
        }
    }

    /// The timefuse task id ([`TaskInfo::id`]) of this future, or `None` once it has completed.
    ///
    /// ```
    /// let tracked = timefuse::task::track("tracked-id-doc", async {});
    /// let id = tracked.id().unwrap();
    /// assert_eq!(timefuse::task::snapshot_where(|t| t.id() == id).len(), 1);
    /// ```
    pub fn id(&self) -> Option<u64> {
        self.registration.as_ref().map(Registration::id)
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        if *this.fill_ids {
            *this.fill_ids = false;
            if let Some(registration) = this.registration.as_ref() {
                let tokio_id = tokio::task::try_id();
                let runtime = Handle::try_current().ok().map(|h| h.id());
                registration.update(|t| {
                    t.tokio_id = tokio_id.or(t.tokio_id);
                    t.runtime = runtime.or(t.runtime);
                });
            }
        }
        let out = ready!(this.fut.poll(cx));
        // Unregister before the output reaches the JoinHandle, so that a joined task is never
        // still listed.
        this.registration.take();
        Poll::Ready(out)
    }
}

impl<F> fmt::Debug for Tracked<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}
