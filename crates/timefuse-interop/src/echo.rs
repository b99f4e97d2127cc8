//! The interop spec's `custom_metadata` echo, as a tower layer around the tonic routes.
//!
//! tonic gives a successful unary handler no way to set trailers, so the echo is done on the
//! HTTP level: `x-grpc-test-echo-initial` is copied from the request headers to the response
//! headers, and `x-grpc-test-echo-trailing-bin` to the response trailers (or to the headers of
//! a trailers-only response).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Echoed into the response's initial metadata.
pub const ECHO_INITIAL: HeaderName = HeaderName::from_static("x-grpc-test-echo-initial");
/// Echoed into the response's trailing metadata.
pub const ECHO_TRAILING_BIN: HeaderName = HeaderName::from_static("x-grpc-test-echo-trailing-bin");

/// Adds the metadata echo to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoMetadataLayer;

impl<S> Layer<S> for EchoMetadataLayer {
    type Service = EchoMetadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EchoMetadata { inner }
    }
}

/// The service made by [`EchoMetadataLayer`].
#[derive(Debug, Clone)]
pub struct EchoMetadata<S> {
    inner: S,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for EchoMetadata<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<EchoBody<ResB>>;
    type Error = S::Error;
    type Future = EchoFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let initial = req.headers().get(ECHO_INITIAL).cloned();
        let trailing = req.headers().get(ECHO_TRAILING_BIN).cloned();
        EchoFuture {
            inner: self.inner.call(req),
            initial,
            trailing,
        }
    }
}

pin_project! {
    /// Response future of [`EchoMetadata`].
    #[derive(Debug)]
    pub struct EchoFuture<F> {
        #[pin]
        inner: F,
        initial: Option<HeaderValue>,
        trailing: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for EchoFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<EchoBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(v) = this.initial.take() {
            res.headers_mut().insert(ECHO_INITIAL, v);
        }
        let mut trailing = this.trailing.take();
        if res.headers().contains_key("grpc-status") {
            // Trailers-only response: its headers are its trailers.
            if let Some(v) = trailing.take() {
                res.headers_mut().insert(ECHO_TRAILING_BIN, v);
            }
        }
        Poll::Ready(Ok(res.map(|inner| EchoBody { inner, trailing })))
    }
}

pin_project! {
    /// Response body of [`EchoMetadata`]: adds the echoed entry to the trailers.
    #[derive(Debug)]
    pub struct EchoBody<B> {
        #[pin]
        inner: B,
        trailing: Option<HeaderValue>,
    }
}

impl<B> Body for EchoBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    if let Some(v) = this.trailing.take() {
                        trailers.insert(ECHO_TRAILING_BIN, v);
                    }
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(this.trailing.take().map(|v| {
                let mut trailers = HeaderMap::new();
                trailers.insert(ECHO_TRAILING_BIN, v);
                Ok(Frame::trailers(trailers))
            })),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailing.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
