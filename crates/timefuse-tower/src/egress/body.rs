use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use timefuse::Done;
use timefuse::budget::BudgetScope;

use super::EgressError;
use crate::BoxError;

pin_project! {
    /// Response body of [`Egress`](super::Egress): the call's budget still bounds the body, so a
    /// server that stalls mid-stream is cut off when the budget ends.
    pub struct EgressBody<B> {
        #[pin]
        inner: B,
        scope: Option<BudgetScope>,
        #[pin]
        done: Option<Done>,
        grpc: bool,
    }
}

impl<B> EgressBody<B> {
    pub(super) fn new(inner: B, scope: Option<BudgetScope>, grpc: bool) -> Self {
        EgressBody {
            inner,
            scope,
            done: None,
            grpc,
        }
    }
}

impl<B> Body for EgressBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(None) => {
                // Unregister first: ending the scope would otherwise wake this task for nothing.
                this.done.set(None);
                this.scope.take(); // the call is complete: record it
                return Poll::Ready(None);
            }
            Poll::Ready(Some(frame)) => {
                if this.inner.is_end_stream() {
                    this.done.set(None);
                    this.scope.take();
                }
                return Poll::Ready(Some(frame.map_err(Into::into)));
            }
            Poll::Pending => {}
        }
        let Some(scope) = this.scope.as_ref() else {
            return Poll::Pending;
        };
        if this.done.is_none() {
            this.done.set(Some(scope.context().done()));
        }
        let cause = ready!(this.done.as_pin_mut().expect("set above").poll(cx));
        this.scope.take();
        Poll::Ready(Some(Err(EgressError::Ended(cause).boxed(*this.grpc))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for EgressBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressBody")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}
