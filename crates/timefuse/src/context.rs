//! [`Context`]: a request's deadline, cancel signal, cause and values.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::cause::Cause;
use crate::done::{Done, Run};
use crate::identity::{RequestId, TraceContext};
use crate::loom::Arc;
use crate::node::CancelNode;

type AnyValue = dyn Any + Send + Sync;

/// The sized start of every value node: all a lookup reads at each hop.
///
/// A lookup walks `parent_header`, a thin copy of the node's `parent` link, instead of the
/// `Arc<ValueNode<dyn Any>>` itself: dereferencing that fat pointer reads the value's alignment
/// from its vtable at every hop to find where the node starts. Measured with the value-lookup
/// bench (10 hops): see docs/benchmarks.md.
///
/// # Invariants
///
/// 1. `parent_header` is null or points at the header of the node `parent` owns; a node never
///    changes after it is made (until it is dropped), so the copy stays right.
/// 2. A node is only ever made by `with_value::<T>` with `type_id == TypeId::of::<T>()`, as a
///    `#[repr(C)]` `ValueNode<T>`: a header whose `type_id` is `T`'s starts a `ValueNode<T>`.
/// 3. A walk starts from a context's own `values` and borrows that context: every node on the
///    way is kept alive by its child's `parent`, so no pointer it follows can dangle.
#[repr(C)]
struct Header {
    type_id: TypeId,
    parent_header: *const Header,
}

// SAFETY: the header is immutable once made (invariant 1), and what `parent_header` points at is
// owned by the same node's `parent` (`Arc<ValueNode<dyn Any + Send + Sync>>`, itself Send +
// Sync). Sharing or sending the pointer shares or sends nothing more than that `Arc` does.
unsafe impl Send for Header {}
// SAFETY: as for `Send`: read-only data owned through a `Send + Sync` `Arc`.
unsafe impl Sync for Header {}

/// One link of the value chain: a single allocation holding the value inline.
#[repr(C)]
struct ValueNode<V: ?Sized> {
    header: Header,
    parent: Option<Arc<ValueNode<AnyValue>>>,
    value: V,
}

/// The header a context's value chain starts at, or null.
fn header_of(values: &Option<Arc<ValueNode<AnyValue>>>) -> *const Header {
    // `#[repr(C)]` puts the header first: the node's address is its header's.
    values
        .as_ref()
        .map_or(std::ptr::null(), |node| Arc::as_ptr(node).cast::<Header>())
}

impl<V: ?Sized> Drop for ValueNode<V> {
    fn drop(&mut self) {
        // Release a long chain in a loop: a parent we hold uniquely loses its own parent
        // before it is dropped, so no drop recurses.
        let mut next = self.parent.take();
        while let Some(mut parent) = next {
            next = match Arc::get_mut(&mut parent) {
                Some(node) => node.parent.take(),
                None => None,
            };
        }
    }
}

/// A request's deadline budget, cancel signal, cancel cause and typed values, in the manner of
/// Go's `context.Context`.
///
/// A `Context` is a cheap handle (24 bytes; `clone` bumps at most two reference counts). It is
/// `Send + Sync + 'static`, so it crosses tasks and threads freely. Derive children with
/// [`with_cancel`](Context::with_cancel), [`with_timeout`](Context::with_timeout),
/// [`with_deadline`](Context::with_deadline) and [`with_value`](Context::with_value); a child
/// never outlives its parent: its deadline is the earlier of its own and its parent's, and
/// cancelling a parent cancels every descendant.
///
/// Checking a context is lock-free: [`is_done`](Context::is_done) is one atomic load, plus one
/// clock read when there is a deadline. A deadline costs nothing until something awaits
/// [`done`](Context::done): no timer is armed for it before then.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::{Cause, Context};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (request, _guard) = Context::background().with_timeout(Duration::from_millis(800));
/// let (call, call_guard) = request.with_timeout(Duration::from_secs(5));
/// // The child never outlives its parent.
/// assert!(call.deadline() <= request.deadline());
///
/// drop(call_guard); // Go's `defer cancel()`
/// assert_eq!(call.cause(), Some(Cause::Canceled));
/// assert!(!request.is_done(), "cancelling a child leaves the parent alone");
///
/// let slow = tokio::time::sleep(Duration::from_secs(10));
/// assert_eq!(request.run(slow).await, Err(Cause::DeadlineExceeded));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Context {
    pub(crate) node: Option<Arc<CancelNode>>,
    values: Option<Arc<ValueNode<AnyValue>>>,
}

/// Cancels its context when dropped: Go's `defer cancel()`.
///
/// Returned with every child that can be cancelled. Keep it alive for as long as the work the
/// context guards: `let _ = ctx.with_timeout(..)` drops it at once and cancels the context
/// before it is used (the "released too early" anti-pattern).
///
/// # Examples
///
/// ```
/// use timefuse::{Cause, Context};
///
/// let (ctx, guard) = Context::background().with_cancel();
/// assert!(!ctx.is_done());
/// assert!(guard.cancel());
/// assert_eq!(ctx.cause(), Some(Cause::Canceled));
/// ```
#[must_use = "dropping the guard cancels the context at once"]
pub struct CancelGuard {
    node: Option<Arc<CancelNode>>,
}

impl Context {
    /// The empty root context: never done, no deadline, no values (Go's `context.Background()`).
    ///
    /// ```
    /// let ctx = timefuse::Context::background();
    /// assert!(!ctx.is_done());
    /// assert_eq!(ctx.deadline(), None);
    /// ```
    pub const fn background() -> Context {
        Context {
            node: None,
            values: None,
        }
    }

    /// A child that is cancelled when the returned guard is dropped or cancelled, or when this
    /// context ends (Go's `WithCancel`).
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// let (parent, parent_guard) = Context::background().with_cancel();
    /// let (child, _child_guard) = parent.with_cancel();
    /// drop(parent_guard);
    /// assert!(child.is_done());
    /// ```
    pub fn with_cancel(&self) -> (Context, CancelGuard) {
        self.child(None)
    }

    /// A child that ends at `deadline` at the latest (Go's `WithDeadline`). A deadline later
    /// than this context's own is clamped to it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use tokio::time::Instant;
    ///
    /// let soon = Instant::now() + Duration::from_millis(50);
    /// let (ctx, _guard) = Context::background().with_deadline(soon);
    /// assert_eq!(ctx.deadline(), Some(soon));
    /// let (child, _g) = ctx.with_deadline(soon + Duration::from_secs(60));
    /// assert_eq!(child.deadline(), Some(soon), "clamped to the parent");
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelGuard) {
        self.child(Some(deadline))
    }

    /// A child that ends `timeout` from now at the latest (Go's `WithTimeout`). A timeout too
    /// large to represent means no deadline of its own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    ///
    /// let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(800));
    /// assert!(ctx.remaining().unwrap() <= Duration::from_millis(800));
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelGuard) {
        self.child(Instant::now().checked_add(timeout))
    }

    fn child(&self, deadline: Option<Instant>) -> (Context, CancelGuard) {
        let node = CancelNode::new(self.node.as_ref(), deadline);
        let ctx = Context {
            node: Some(Arc::clone(&node)),
            values: self.values.clone(),
        };
        (ctx, CancelGuard { node: Some(node) })
    }

    /// A child carrying `value`, found by [`value`](Context::value) on it and its descendants
    /// (Go's `WithValue`, keyed by type instead of by an untyped key). The nearest value of a
    /// type wins. Shares this context's cancellation and deadline.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Tenant(&'static str);
    ///
    /// let ctx = Context::background().with_value(Tenant("acme"));
    /// let inner = ctx.with_value(Tenant("globex"));
    /// assert_eq!(ctx.value::<Tenant>(), Some(&Tenant("acme")));
    /// assert_eq!(inner.value::<Tenant>(), Some(&Tenant("globex")));
    /// assert_eq!(inner.value::<u32>(), None);
    /// ```
    pub fn with_value<T>(&self, value: T) -> Context
    where
        T: Any + Send + Sync,
    {
        let node: Arc<ValueNode<AnyValue>> = Arc::new(ValueNode {
            header: Header {
                type_id: TypeId::of::<T>(),
                parent_header: header_of(&self.values),
            },
            parent: self.values.clone(),
            value,
        });
        Context {
            node: self.node.clone(),
            values: Some(node),
        }
    }

    /// The nearest value of type `T` on this context or its ancestors.
    ///
    /// ```
    /// let ctx = timefuse::Context::background().with_value(42_u64);
    /// assert_eq!(ctx.value::<u64>(), Some(&42));
    /// ```
    pub fn value<T>(&self) -> Option<&T>
    where
        T: Any + Send + Sync,
    {
        let wanted = TypeId::of::<T>();
        let mut cur = header_of(&self.values);
        while !cur.is_null() {
            // SAFETY: `cur` is the header of a node on `self`'s chain, alive while `self` is
            // borrowed (invariant 3).
            let header = unsafe { &*cur };
            if header.type_id == wanted {
                // SAFETY: this header starts a `ValueNode<T>` (invariant 2), alive for as long
                // as the returned reference borrows `self` (invariant 3).
                let node = unsafe { &*cur.cast::<ValueNode<T>>() };
                return Some(&node.value);
            }
            cur = header.parent_header;
        }
        None
    }

    /// A context with this one's values but no cancellation and no deadline: it is never done
    /// (Go's `WithoutCancel`). For work that must finish even if the request is abandoned, such
    /// as writing an audit record.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().with_value("trace-7").with_cancel();
    /// let detached = ctx.without_cancel();
    /// drop(guard);
    /// assert!(ctx.is_done());
    /// assert!(!detached.is_done());
    /// assert_eq!(detached.value::<&str>(), Some(&"trace-7"));
    /// ```
    pub fn without_cancel(&self) -> Context {
        Context {
            node: None,
            values: self.values.clone(),
        }
    }

    /// True once the context has ended: cancelled, or its deadline passed (Go's `ctx.Err() != nil`).
    ///
    /// Lock-free: one atomic load, plus one clock read when the context has a deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    ///
    /// let (ctx, _guard) = Context::background().with_timeout(Duration::ZERO);
    /// assert!(ctx.is_done());
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        match &self.node {
            None => false,
            Some(node) => node.is_done(),
        }
    }

    /// Why the context ended, or `None` while it is live (Go's `context.Cause`).
    ///
    /// ```
    /// use timefuse::{Cause, Context};
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// assert_eq!(ctx.cause(), None);
    /// guard.cancel_with(Cause::ClientGone);
    /// assert_eq!(ctx.cause(), Some(Cause::ClientGone));
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.node.as_ref().and_then(|n| n.cause())
    }

    /// The instant the context ends at the latest, if it has a deadline.
    ///
    /// ```
    /// assert_eq!(timefuse::Context::background().deadline(), None);
    /// ```
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        self.node.as_ref().and_then(|n| n.deadline())
    }

    /// Time left before the deadline: `None` without a deadline, zero once it has passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    ///
    /// let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(1));
    /// let left = ctx.remaining().unwrap();
    /// assert!(left > Duration::from_millis(900) && left <= Duration::from_secs(1));
    /// ```
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// A future that resolves with the cause when the context ends: cancelled, or its deadline
    /// reached (Go's `<-ctx.Done()`). On a context that can never end it never resolves.
    ///
    /// The first poll on a context with a deadline arms one tokio timer; nothing before it does.
    ///
    /// # Panics
    ///
    /// Polling it on a context with a deadline panics outside a tokio runtime with time enabled.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it unregisters its waker, and awaiting a new one later resolves
    /// at once if the context ended in between.
    ///
    /// ```
    /// use timefuse::{Cause, Context};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, guard) = Context::background().with_cancel();
    /// let waiter = tokio::spawn({
    ///     let ctx = ctx.clone();
    ///     async move { ctx.done().await }
    /// });
    /// guard.cancel();
    /// assert_eq!(waiter.await.unwrap(), Cause::Canceled);
    /// # }
    /// ```
    pub fn done(&self) -> Done {
        Done::new(self.node.clone())
    }

    /// Runs `fut` until it completes or the context ends, whichever is first; in the second
    /// case `fut` is dropped and the cause returned. If the context has already ended, `fut` is
    /// never polled: work whose budget is gone does not start.
    ///
    /// When both are ready at the same poll, the future's output wins.
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as `fut` itself.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::{Cause, Context};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(20));
    /// assert_eq!(ctx.run(async { 7 }).await, Ok(7));
    /// let never = std::future::pending::<()>();
    /// assert_eq!(ctx.run(never).await, Err(Cause::DeadlineExceeded));
    /// # }
    /// ```
    pub fn run<F: Future>(&self, fut: F) -> Run<F> {
        Run::new(fut, self.done())
    }

    /// Calls `f` once, on the thread that ends the context, after the context and all its
    /// descendants are marked ended (Go's `AfterFunc`). If the context has already ended, `f`
    /// runs at once, on this thread. Keep `f` short: spawn a task for anything longer.
    ///
    /// On a context with a deadline this spawns one small task that waits for the deadline, so
    /// that `f` runs even if nothing else is watching.
    ///
    /// # Panics
    ///
    /// On a live context with a deadline, panics outside a tokio runtime.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = ran.clone();
    /// let handle = ctx.after(move || flag.store(true, Ordering::SeqCst));
    /// guard.cancel();
    /// assert!(ran.load(Ordering::SeqCst));
    /// assert!(!handle.stop(), "too late to stop: it already ran");
    /// ```
    pub fn after<F>(&self, f: F) -> AfterHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let Some(node) = &self.node else {
            // This context can never end: `f` will never run, and stopping it says so.
            return AfterHandle {
                node: None,
                key: 0,
                watcher: None,
                never_runs: true,
            };
        };
        node.is_done(); // observe a passed deadline before registering
        match node.add_after(Box::new(f)) {
            Err(f) => {
                f();
                AfterHandle {
                    node: None,
                    key: 0,
                    watcher: None,
                    never_runs: false,
                }
            }
            Ok(key) => {
                let watcher = node.deadline().map(|_| {
                    let done = self.done();
                    tokio::spawn(async move {
                        done.await;
                    })
                    .abort_handle()
                });
                AfterHandle {
                    node: Some(Arc::clone(node)),
                    key,
                    watcher,
                    never_runs: false,
                }
            }
        }
    }

    /// The request id carried by this context, if any.
    ///
    /// ```
    /// use timefuse::{Context, RequestId};
    ///
    /// let ctx = Context::background().with_request_id(RequestId::new("req-42").unwrap());
    /// assert_eq!(ctx.request_id().map(RequestId::as_str), Some("req-42"));
    /// ```
    pub fn request_id(&self) -> Option<&RequestId> {
        self.value::<RequestId>()
    }

    /// A child carrying `id` as its request id.
    pub fn with_request_id(&self, id: RequestId) -> Context {
        self.with_value(id)
    }

    /// The W3C trace context carried by this context, if any.
    ///
    /// ```
    /// use timefuse::{Context, TraceContext};
    ///
    /// let tc = TraceContext::new([7; 16], [1; 8], 0x01);
    /// let ctx = Context::background().with_trace(tc.clone());
    /// assert_eq!(ctx.trace(), Some(&tc));
    /// ```
    pub fn trace(&self) -> Option<&TraceContext> {
        self.value::<TraceContext>()
    }

    /// A child carrying `trace` as its W3C trace context.
    pub fn with_trace(&self, trace: TraceContext) -> Context {
        self.with_value(trace)
    }

    /// True if both handles share one cancel node (or both have none) and one value chain.
    ///
    /// ```
    /// let ctx = timefuse::Context::background().with_value(1_u8);
    /// assert!(ctx.same_as(&ctx.clone()));
    /// assert!(!ctx.same_as(&ctx.with_value(2_u8)));
    /// ```
    pub fn same_as(&self, other: &Context) -> bool {
        let nodes = match (&self.node, &other.node) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let values = match (&self.values, &other.values) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        nodes && values
    }

    /// Linked children of this context's cancel node (diagnostics and tests).
    #[doc(hidden)]
    pub fn live_children(&self) -> usize {
        self.node.as_ref().map_or(0, |n| n.child_count())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Context");
        d.field("done", &self.is_done());
        if let Some(rem) = self.remaining() {
            d.field("remaining", &rem);
        }
        if let Some(cause) = self.cause() {
            d.field("cause", &cause);
        }
        if let Some(id) = self.request_id() {
            d.field("request_id", &id.as_str());
        }
        d.finish_non_exhaustive()
    }
}

impl CancelGuard {
    /// Cancels the context with [`Cause::Canceled`]. Returns false if it had already ended.
    ///
    /// ```
    /// let (_ctx, guard) = timefuse::Context::background().with_cancel();
    /// assert!(guard.cancel());
    /// ```
    pub fn cancel(mut self) -> bool {
        self.node.take().is_some_and(|n| n.cancel(Cause::Canceled))
    }

    /// Cancels the context with `cause` (Go's `WithCancelCause`). Returns false, and leaves the
    /// first cause in place, if it had already ended.
    ///
    /// ```
    /// use timefuse::{Cause, Context};
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// assert!(guard.cancel_with(Cause::other(std::io::Error::other("payment voided"))));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "payment voided");
    /// ```
    pub fn cancel_with(mut self, cause: Cause) -> bool {
        self.node.take().is_some_and(|n| n.cancel(cause))
    }

    /// Cancels the context without consuming the guard. Returns false if it had already ended.
    ///
    /// ```
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// assert!(guard.cancel_ref(timefuse::Cause::Shutdown));
    /// assert!(!guard.cancel_ref(timefuse::Cause::Canceled), "the first cause stays");
    /// assert_eq!(ctx.cause(), Some(timefuse::Cause::Shutdown));
    /// ```
    pub fn cancel_ref(&self, cause: Cause) -> bool {
        self.node.as_ref().is_some_and(|n| n.cancel(cause))
    }

    /// Gives up the guard without cancelling: the context now ends only with its parent or its
    /// deadline.
    ///
    /// ```
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// guard.disarm();
    /// assert!(!ctx.is_done());
    /// ```
    pub fn disarm(mut self) {
        self.node = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.cancel(Cause::Canceled);
        }
    }
}

impl fmt::Debug for CancelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelGuard")
            .field("armed", &self.node.is_some())
            .finish()
    }
}

/// Handle to a function registered with [`Context::after`].
#[derive(Debug)]
pub struct AfterHandle {
    node: Option<Arc<CancelNode>>,
    key: usize,
    watcher: Option<tokio::task::AbortHandle>,
    /// Registered on a context that can never end: the function was dropped unrun.
    never_runs: bool,
}

impl AfterHandle {
    /// Stops the function from running. Returns true if this prevented the run, false if it had
    /// already run or started (Go's `stop()`). On a context that can never end, such as
    /// [`background`](Context::background), the function never runs and this returns true.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// let handle = ctx.after(|| unreachable!("stopped before the cancel"));
    /// assert!(handle.stop());
    /// guard.cancel();
    /// ```
    pub fn stop(mut self) -> bool {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.never_runs || self.node.take().is_some_and(|n| n.remove_after(self.key))
    }
}
