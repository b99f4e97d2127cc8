//! The cancel tree behind every cancellable [`Context`](crate::Context).
//!
//! A node is one `Arc` allocation of 64 bytes: a state byte, an optional deadline, a strong
//! pointer to its parent and a lock around a lazily allocated extension (children, waiters,
//! after-functions, an application cause). A leaf that nobody waits on never allocates the
//! extension, so creating and dropping a child is one allocation.
//!
//! # Invariants
//!
//! 1. `state` moves from `ACTIVE` to a terminal cause code exactly once, and only while the
//!    node's own lock is held. The same critical section takes the node's children, waiters and
//!    after-functions out of its extension. A waiter, child or after-function that registers
//!    under the lock therefore either sees the terminal state or is in the lists the canceller
//!    takes: no wake-up is lost, no child is missed, and the cause is written once.
//! 2. A node's deadline is never later than its parent's (it is clamped when the node is made),
//!    so expiry is a clock comparison on one node and never a walk up the tree. No timer exists
//!    for a deadline until a [`Done`](crate::Done) future waits on it. A node whose deadline
//!    has passed has ended, observed or not: a later cancel of it, or of an ancestor, ends it
//!    with `DeadlineExceeded` (the deadline came first), and its own cancel reports false.
//! 3. The parent's `children` list holds `Weak`s. A child is linked iff its address stands in the
//!    list at the index in its `slot`; the list and every `slot` change only under the parent's
//!    lock, and a `slot` is only written through a strong reference. A child whose last strong
//!    reference is gone cannot be upgraded; its `Drop` takes the parent's lock and unlinks itself
//!    if it is still listed (an address compare, so it never trusts a stale `slot`).
//! 4. No code holds two node locks at once, and no `Arc<CancelNode>`, waker or closure is dropped
//!    while a node lock is held (a drop may run a node's `Drop`, which locks its parent). The
//!    canceller upgrades the children under the node's lock, releases it, then visits each child
//!    from a heap stack: cancelling a 100 000-deep chain costs heap, not stack.
//! 5. Dropping the last handle of a deep chain releases the ancestors in a loop, not by recursion.
//!
//! Cancellation is not atomic across the tree: a descendant may still read "active" for a moment
//! after its ancestor's `cancel` has returned in another thread. It is atomic per node, and a
//! node is always marked before it is woken.

use std::error::Error;
use std::task::Waker;

use tokio::time::Instant;

use crate::cause::{ACTIVE, Cause, OTHER};
use crate::loom::{Arc, AtomicU8, AtomicU32, Mutex, Weak, lock};
use crate::slab::Slab;

type AfterFn = Box<dyn FnOnce() + Send + 'static>;
type CustomCause = Arc<dyn Error + Send + Sync + 'static>;

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

pub(crate) struct CancelNode {
    state: AtomicU8,
    /// Index in the parent's `children`; meaningful only while linked (invariant 3).
    slot: AtomicU32,
    deadline: Option<Instant>,
    parent: Option<Arc<CancelNode>>,
    inner: Mutex<Option<Box<Ext>>>,
}

#[derive(Default)]
struct Ext {
    children: Vec<Weak<CancelNode>>,
    waiters: Slab<Waker>,
    after: Slab<AfterFn>,
    custom: Option<CustomCause>,
}

/// What a cancel gathered to run once every node is marked: wakers, after-functions and the
/// upgraded children still to visit.
#[derive(Default)]
struct Pending {
    stack: Vec<Arc<CancelNode>>,
    wakers: Vec<Waker>,
    after: Vec<AfterFn>,
}

impl CancelNode {
    /// Makes a node under `parent` (or a root), with `deadline` clamped to the parent's.
    pub(crate) fn new(parent: Option<&Arc<CancelNode>>, deadline: Option<Instant>) -> Arc<Self> {
        let Some(parent) = parent else {
            return Arc::new(CancelNode::bare(None, deadline, ACTIVE));
        };
        let deadline = match (deadline, parent.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let node = Arc::new(CancelNode::bare(Some(Arc::clone(parent)), deadline, ACTIVE));
        let mut guard = lock(&parent.inner);
        let parent_state = parent.state.load(Relaxed);
        if parent_state == ACTIVE {
            let ext = guard.get_or_insert_with(Default::default);
            let slot =
                u32::try_from(ext.children.len()).expect("more than 4 billion live children");
            node.slot.store(slot, Relaxed);
            ext.children.push(Arc::downgrade(&node));
        } else {
            // Born ended: inherit the cause, stay unlinked.
            let custom = guard.as_ref().and_then(|e| e.custom.clone());
            drop(guard);
            node.state.store(parent_state, Release);
            if parent_state == OTHER {
                lock(&node.inner)
                    .get_or_insert_with(Default::default)
                    .custom = custom;
            }
            return node;
        }
        drop(guard);
        node
    }

    fn bare(parent: Option<Arc<CancelNode>>, deadline: Option<Instant>, state: u8) -> Self {
        CancelNode {
            state: AtomicU8::new(state),
            slot: AtomicU32::new(u32::MAX),
            deadline,
            parent,
            inner: Mutex::new(None),
        }
    }

    #[inline]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Lock-free: one atomic load, plus one clock read when the node has a deadline.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        if self.state.load(Acquire) != ACTIVE {
            return true;
        }
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                self.end(Cause::DeadlineExceeded);
                true
            }
            _ => false,
        }
    }

    /// The cause once the node has ended, observing its deadline on the way.
    pub(crate) fn cause(&self) -> Option<Cause> {
        if !self.is_done() {
            return None;
        }
        let code = self.state.load(Acquire);
        match Cause::from_code(code) {
            Some(c) => Some(c),
            None => {
                debug_assert_eq!(code, OTHER);
                let custom = lock(&self.inner).as_ref().and_then(|e| e.custom.clone());
                Some(custom.map_or(Cause::Canceled, Cause::Other))
            }
        }
    }

    /// Ends this node and every descendant with `cause`. Returns false if it had already ended,
    /// which includes a deadline that passed unobserved: the deadline came first, so the node
    /// ends with `DeadlineExceeded` and the late cancel reports that it changed nothing.
    pub(crate) fn cancel(&self, cause: Cause) -> bool {
        if self.state.load(Acquire) != ACTIVE {
            return false; // already ended: skip the clock read and the lock
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.end(Cause::DeadlineExceeded);
            return false;
        }
        self.end(cause)
    }

    fn end(&self, cause: Cause) -> bool {
        let mut pending = Pending::default();
        if !self.mark(&cause, &mut pending) {
            return false;
        }
        // Go's removeChild: an ended node leaves its parent's list at once, so a long-lived
        // parent does not keep ended children until they are dropped.
        let moved = self.unlink(self as *const CancelNode);
        drop(moved);
        let mut now = None;
        while let Some(child) = pending.stack.pop() {
            // Invariant 2: a descendant whose own deadline has passed ended then, whether or not
            // anyone looked, so it ends with `DeadlineExceeded` (and so do its descendants, whose
            // deadlines are no later than its own).
            let expired = !cause.is_deadline_exceeded()
                && child
                    .deadline
                    .is_some_and(|d| *now.get_or_insert_with(Instant::now) >= d);
            child.mark(
                if expired {
                    &Cause::DeadlineExceeded
                } else {
                    &cause
                },
                &mut pending,
            );
            // `child` is dropped here, outside every lock (invariant 4).
        }
        for waker in pending.wakers {
            waker.wake();
        }
        for f in pending.after {
            f();
        }
        true
    }

    /// Marks one node ended and takes its lists into `pending`. Invariant 1.
    fn mark(&self, cause: &Cause, pending: &mut Pending) -> bool {
        let mut guard = lock(&self.inner);
        if self.state.load(Relaxed) != ACTIVE {
            return false;
        }
        if let Some(ext) = guard.as_mut() {
            if let Cause::Other(e) = cause {
                ext.custom = Some(Arc::clone(e));
            }
            pending.stack.reserve(ext.children.len());
            pending
                .stack
                .extend(ext.children.drain(..).filter_map(|w| w.upgrade()));
            ext.children = Vec::new();
            pending.wakers.extend(ext.waiters.drain());
            pending.after.extend(ext.after.drain());
        } else if let Cause::Other(e) = cause {
            *guard = Some(Box::new(Ext {
                custom: Some(Arc::clone(e)),
                ..Ext::default()
            }));
        }
        self.state.store(cause.code(), Release);
        true
    }

    /// Removes the node at address `me` from its parent's list if it is still there. Returns the
    /// child moved into its place, upgraded, for the caller to drop after the lock (invariant 4).
    fn unlink(&self, me: *const CancelNode) -> Option<Arc<CancelNode>> {
        let parent = self.parent.as_ref()?;
        let mut guard = lock(&parent.inner);
        let ext = guard.as_mut()?;
        let slot = self.slot.load(Relaxed) as usize;
        let listed = ext
            .children
            .get(slot)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), me));
        if !listed {
            return None;
        }
        ext.children.swap_remove(slot);
        let mut moved = None;
        while let Some(w) = ext.children.get(slot) {
            match w.upgrade() {
                Some(child) => {
                    child.slot.store(slot as u32, Relaxed);
                    moved = Some(child);
                    break;
                }
                // Being dropped: take it out too; its Drop will not find itself and skip.
                None => {
                    ext.children.swap_remove(slot);
                }
            }
        }
        let children = &mut ext.children;
        if children.capacity() > 8 && children.len() * 4 <= children.capacity() {
            children.shrink_to(children.len() * 2);
        }
        moved
    }

    /// Registers `waker` to be woken when the node ends. Returns true if it already has.
    pub(crate) fn register(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        let mut guard = lock(&self.inner);
        if self.state.load(Relaxed) != ACTIVE {
            return true;
        }
        let ext = guard.get_or_insert_with(Default::default);
        let old = match key.and_then(|k| ext.waiters.get_mut(k)) {
            Some(w) if w.will_wake(waker) => None,
            Some(w) => Some(std::mem::replace(w, waker.clone())),
            None => {
                *key = Some(ext.waiters.insert(waker.clone()));
                None
            }
        };
        drop(guard);
        drop(old);
        false
    }

    pub(crate) fn unregister(&self, key: usize) {
        if self.state.load(Acquire) != ACTIVE {
            return; // the canceller took the list
        }
        let mut guard = lock(&self.inner);
        let removed = guard.as_mut().and_then(|e| e.waiters.remove(key));
        drop(guard);
        drop(removed);
    }

    /// Registers `f` to run when the node ends; returns `Err(f)` if it already has.
    pub(crate) fn add_after(&self, f: AfterFn) -> Result<usize, AfterFn> {
        let mut guard = lock(&self.inner);
        if self.state.load(Relaxed) != ACTIVE {
            return Err(f);
        }
        Ok(guard.get_or_insert_with(Default::default).after.insert(f))
    }

    /// Removes an after-function; true if it had not run (and now never will).
    pub(crate) fn remove_after(&self, key: usize) -> bool {
        let mut guard = lock(&self.inner);
        let removed = guard.as_mut().and_then(|e| e.after.remove(key));
        drop(guard);
        removed.is_some()
    }

    /// Number of linked children (for tests and the task dump).
    pub(crate) fn child_count(&self) -> usize {
        lock(&self.inner).as_ref().map_or(0, |e| e.children.len())
    }
}

impl Drop for CancelNode {
    fn drop(&mut self) {
        let me = self as *const CancelNode;
        // An ended node is no longer listed: `end` unlinked it, or its parent's `mark` drained
        // the list, or it was born ended. Only a live node takes its parent's lock here.
        if self.state.load(Relaxed) == ACTIVE {
            drop(self.unlink(me));
        }
        // Invariant 5: release ancestors iteratively. A parent we held the last reference to is
        // unlinked here and dropped with no parent of its own, so its Drop does not recurse.
        let mut next = self.parent.take();
        while let Some(parent) = next {
            let addr = Arc::as_ptr(&parent);
            // `into_inner` is one decrement (`try_unwrap` is a compare-exchange, then a
            // decrement when the parent is shared, which it nearly always is).
            match Arc::into_inner(parent) {
                Some(mut node) => {
                    if node.state.load(Relaxed) == ACTIVE {
                        drop(node.unlink(addr));
                    }
                    next = node.parent.take();
                }
                None => break,
            }
        }
    }
}

impl std::fmt::Debug for CancelNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelNode")
            .field("state", &self.state.load(Relaxed))
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
