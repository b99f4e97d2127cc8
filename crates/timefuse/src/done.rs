//! The futures that wait on a context: [`Done`] and [`Run`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::cause::Cause;
use crate::loom::Arc;
use crate::node::CancelNode;

pin_project! {
    /// Resolves with the [`Cause`] when its context ends. Returned by
    /// [`Context::done`](crate::Context::done).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it unregisters its waker and its timer.
    #[must_use = "futures do nothing unless polled"]
    pub struct Done {
        node: Option<Arc<CancelNode>>,
        key: Option<usize>,
        #[pin]
        sleep: Option<Sleep>,
    }

    impl PinnedDrop for Done {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(node), Some(key)) = (this.node.as_ref(), this.key.take()) {
                node.unregister(key);
            }
        }
    }
}

impl Done {
    pub(crate) fn new(node: Option<Arc<CancelNode>>) -> Done {
        Done {
            node,
            key: None,
            sleep: None,
        }
    }

    fn cause_now(node: &CancelNode) -> Cause {
        node.cause().unwrap_or(Cause::Canceled)
    }
}

impl Future for Done {
    type Output = Cause;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Cause> {
        let mut this = self.project();
        let Some(node) = this.node.as_ref() else {
            return Poll::Pending; // background: never done
        };
        if node.is_done() || node.register(this.key, cx.waker()) {
            return Poll::Ready(Done::cause_now(node));
        }
        if let Some(deadline) = node.deadline() {
            if this.sleep.is_none() {
                this.sleep.set(Some(tokio::time::sleep_until(deadline)));
            }
            if let Some(sleep) = this.sleep.as_pin_mut() {
                ready!(sleep.poll(cx));
                node.cancel(Cause::DeadlineExceeded);
                return Poll::Ready(Done::cause_now(node));
            }
        }
        Poll::Pending
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("registered", &self.key.is_some())
            .field("timer", &self.sleep.is_some())
            .finish()
    }
}

pin_project! {
    /// Runs a future until it completes or its context ends. Returned by
    /// [`Context::run`](crate::Context::run).
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as the future it runs.
    #[must_use = "futures do nothing unless polled"]
    pub struct Run<F> {
        #[pin]
        fut: F,
        #[pin]
        done: Done,
        started: bool,
    }
}

impl<F> Run<F> {
    pub(crate) fn new(fut: F, done: Done) -> Self {
        Run {
            fut,
            done,
            started: false,
        }
    }
}

impl<F: Future> Future for Run<F> {
    type Output = Result<F::Output, Cause>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if !*this.started {
            *this.started = true;
            // Work whose budget is already gone is never started.
            if let Some(node) = this.done.node.as_ref()
                && node.is_done()
            {
                return Poll::Ready(Err(Done::cause_now(node)));
            }
        }
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.done.poll(cx).map(Err)
    }
}

impl<F> fmt::Debug for Run<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
