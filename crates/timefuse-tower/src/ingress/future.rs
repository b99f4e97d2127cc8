use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

use timefuse::{CancelGuard, Cause, Context, Done};

use super::body::IngressBody;
use crate::headers::X_REQUEST_ID;
use crate::outcome::{cause_name, grpc_code_for, grpc_response, http_response, http_status_for};

pin_project! {
    /// Response future of [`Ingress`](super::Ingress): the handler raced against the request's
    /// context. Dropped before it completes, it cancels the context with
    /// [`Cause::ClientGone`], so work started for the request stops.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Option<TaskLocalFuture<Context, F>>,
        #[pin]
        done: Option<Done>,
        guard: Option<CancelGuard>,
        ctx: Option<Context>,
        immediate: Option<Response<IngressBody<B>>>,
        request_id: HeaderValue,
        grpc: bool,
    }

    impl<F, B> PinnedDrop for ResponseFuture<F, B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(guard) = this.project().guard.take() {
                guard.cancel_with(Cause::ClientGone);
            }
        }
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn running(
        inner: TaskLocalFuture<Context, F>,
        ctx: Context,
        guard: CancelGuard,
        request_id: HeaderValue,
        grpc: bool,
    ) -> Self {
        ResponseFuture {
            inner: Some(inner),
            done: Some(ctx.done()),
            guard: Some(guard),
            ctx: Some(ctx),
            immediate: None,
            request_id,
            grpc,
        }
    }

    pub(super) fn refused(
        grpc: bool,
        code: u16,
        status: http::StatusCode,
        error: &str,
        request_id: HeaderValue,
    ) -> Self {
        let res = if grpc {
            grpc_response(code, error)
        } else {
            http_response(status, error, request_id.to_str().ok())
        };
        let mut res = res.map(IngressBody::full);
        res.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        ResponseFuture {
            inner: None,
            done: None,
            guard: None,
            ctx: None,
            immediate: Some(res),
            request_id,
            grpc,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<IngressBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(res) = this.immediate.take() {
            return Poll::Ready(Ok(res));
        }
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("polled after completion");
        let cause = match inner.poll(cx) {
            Poll::Ready(result) => {
                this.inner.set(None);
                match this.ctx.as_ref().and_then(Context::cause) {
                    // A handler that answers after the deadline (having seen its context end,
                    // say) is too late: the caller has given up. Answer for it.
                    Some(cause) if cause.is_deadline_exceeded() => cause,
                    _ => {
                        this.done.set(None); // unregister before the guard can end the context
                        let guard = this.guard.take();
                        return Poll::Ready(result.map(|res| {
                            let (mut parts, body) = res.into_parts();
                            parts.headers.insert(X_REQUEST_ID, this.request_id.clone());
                            let body = IngressBody::inner(body, guard, this.ctx.take(), *this.grpc);
                            Response::from_parts(parts, body)
                        }));
                    }
                }
            }
            Poll::Pending => {
                let done = this
                    .done
                    .as_mut()
                    .as_pin_mut()
                    .expect("polled after completion");
                let cause = std::task::ready!(done.poll(cx));
                // The budget ended before the handler answered: drop the handler.
                this.inner.set(None);
                cause
            }
        };
        if let Some(guard) = this.guard.take() {
            guard.cancel_with(cause.clone());
        }
        let res = if *this.grpc {
            grpc_response(grpc_code_for(&cause), &cause.to_string())
        } else {
            http_response(
                http_status_for(&cause),
                cause_name(&cause),
                this.request_id.to_str().ok(),
            )
        };
        let mut res = res.map(IngressBody::full);
        res.headers_mut()
            .insert(X_REQUEST_ID, this.request_id.clone());
        Poll::Ready(Ok(res))
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}
