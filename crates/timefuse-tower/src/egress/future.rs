use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::Response;
use pin_project_lite::pin_project;

use timefuse::Done;
use timefuse::budget::BudgetScope;

use super::{EgressBody, EgressError};
use crate::BoxError;

pin_project! {
    /// Response future of [`Egress`](super::Egress): the call raced against its budget.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        done: Option<Done>,
        scope: Option<BudgetScope>,
        error: Option<EgressError>,
        grpc: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn running(inner: F, scope: BudgetScope, grpc: bool) -> Self {
        let done = scope.context().done();
        ResponseFuture {
            inner: Some(inner),
            done: Some(done),
            scope: Some(scope),
            error: None,
            grpc,
        }
    }

    pub(super) fn passthrough(inner: F, grpc: bool) -> Self {
        ResponseFuture {
            inner: Some(inner),
            done: None,
            scope: None,
            error: None,
            grpc,
        }
    }

    pub(super) fn failed(error: EgressError, grpc: bool) -> Self {
        ResponseFuture {
            inner: None,
            done: None,
            scope: None,
            error: Some(error),
            grpc,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<EgressBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e.boxed(*this.grpc)));
        }
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("polled after completion");
        if let Poll::Ready(result) = inner.poll(cx) {
            this.inner.set(None);
            this.done.set(None); // unregister before the scope can end (no spurious wake-up)
            let scope = this.scope.take();
            let grpc = *this.grpc;
            return Poll::Ready(match result {
                Ok(res) => Ok(res.map(|b| EgressBody::new(b, scope, grpc))),
                // A failure once the call's context has ended is that end. tonic's channel, for
                // one, times the call by the `grpc-timeout` written here and fails it with
                // CANCELLED ("Timeout expired") in the same timer tick as the budget.
                Err(e) => match scope.as_ref().and_then(|s| s.context().cause()) {
                    Some(cause) => Err(EgressError::Ended(cause).boxed(grpc)),
                    None => Err(e.into()),
                },
            });
        }
        if let Some(done) = this.done.as_pin_mut() {
            let cause = std::task::ready!(done.poll(cx));
            this.inner.set(None); // cancel the call: drop it
            this.scope.take();
            return Poll::Ready(Err(EgressError::Ended(cause).boxed(*this.grpc)));
        }
        Poll::Pending
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}
