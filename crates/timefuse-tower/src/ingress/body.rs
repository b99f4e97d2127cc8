use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use timefuse::{CancelGuard, Cause, Context, Done};

use crate::BoxError;
use crate::outcome::grpc_code_for;

pin_project! {
    /// Response body of [`Ingress`](super::Ingress). It keeps the request's context alive while
    /// the body streams: when the body ends the context is cancelled (the request is over, so
    /// leftover work stops); dropped before its end, the context ends with
    /// [`Cause::ClientGone`]. If the budget runs out mid-stream, a gRPC body ends with
    /// `grpc-status: 4` trailers and an HTTP body with an error, which aborts the response.
    pub struct IngressBody<B> {
        #[pin]
        inner: Option<B>,
        full: Option<Bytes>,
        guard: Option<CancelGuard>,
        ctx: Option<Context>,
        #[pin]
        done: Option<Done>,
        grpc: bool,
        ended: bool,
    }

    impl<B> PinnedDrop for IngressBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(guard) = this.project().guard.take() {
                guard.cancel_with(Cause::ClientGone);
            }
        }
    }
}

impl<B: Body> IngressBody<B> {
    pub(crate) fn inner(
        body: B,
        mut guard: Option<CancelGuard>,
        ctx: Option<Context>,
        grpc: bool,
    ) -> Self {
        if body.is_end_stream() {
            // The server may drop an empty body unpolled: the request is complete now.
            drop(guard.take());
        }
        IngressBody {
            inner: Some(body),
            full: None,
            guard,
            ctx,
            done: None,
            grpc,
            ended: false,
        }
    }
}

impl<B> IngressBody<B> {
    pub(crate) fn full(data: Option<Bytes>) -> Self {
        IngressBody {
            inner: None,
            full: data,
            guard: None,
            ctx: None,
            done: None,
            grpc: false,
            ended: false,
        }
    }
}

impl<B> Body for IngressBody<B>
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
        let Some(mut body) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(this.full.take().map(|d| Ok(Frame::data(d))));
        };
        if *this.ended {
            return Poll::Ready(None);
        }
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if body.is_end_stream() {
                    *this.ended = true;
                    this.done.set(None); // unregister first: no spurious wake-up
                    drop(this.guard.take()); // complete: cancel leftovers
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                *this.ended = true;
                this.done.set(None);
                drop(this.guard.take());
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let Some(ctx) = this.ctx.as_ref() else {
            return Poll::Pending;
        };
        if this.done.is_none() {
            this.done.set(Some(ctx.done()));
        }
        let done = this.done.as_pin_mut().expect("set above");
        let cause = ready!(done.poll(cx));
        *this.ended = true;
        if let Some(guard) = this.guard.take() {
            guard.cancel_with(cause.clone());
        }
        if *this.grpc {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(grpc_code_for(&cause)));
            if let Ok(v) = HeaderValue::from_str(&cause.to_string()) {
                trailers.insert("grpc-message", v);
            }
            Poll::Ready(Some(Ok(Frame::trailers(trailers))))
        } else {
            Poll::Ready(Some(Err(Box::new(cause))))
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(b) => self.ended || b.is_end_stream(),
            None => self.full.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.full) {
            (Some(b), _) => b.size_hint(),
            (None, Some(d)) => SizeHint::with_exact(d.len() as u64),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

impl<B> std::fmt::Debug for IngressBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressBody")
            .field("grpc", &self.grpc)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
