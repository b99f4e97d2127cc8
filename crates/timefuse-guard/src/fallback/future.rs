//! [`ResponseFuture`] of [`Fallback`](super::Fallback).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::{FallbackHook, MarkDegraded, Shared, Why};
use crate::{BoxError, GuardError};

pin_project! {
    /// Response future of [`Fallback`](super::Fallback): the call, answered by the fallback if
    /// it is refused; or a fallback response served up front.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the call.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Marked, Why};
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(Marked::new(0_u8))));
    /// let mut svc = layer.layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(Marked::new(x)) }));
    /// let future = svc.ready().await.unwrap().call(3); // this type
    /// assert_eq!(*future.await.unwrap(), 3);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, H, Req>
    where
        S: Service<Req>,
        H: FallbackHook<Req, S::Response>,
    {
        #[pin]
        call: Option<S::Future>,
        key: Option<H::Key>,
        shared: Option<Arc<Shared<H>>>,
        ready: Option<S::Response>,
    }
}

impl<S, H, Req> ResponseFuture<S, H, Req>
where
    S: Service<Req>,
    H: FallbackHook<Req, S::Response>,
{
    pub(super) fn new(call: S::Future, key: H::Key, shared: &Arc<Shared<H>>) -> Self {
        ResponseFuture {
            call: Some(call),
            key: Some(key),
            shared: Some(Arc::clone(shared)),
            ready: None,
        }
    }

    pub(super) fn ready(res: S::Response) -> Self {
        ResponseFuture {
            call: None,
            key: None,
            shared: None,
            ready: Some(res),
        }
    }
}

impl<S, H, Req> Future for ResponseFuture<S, H, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Response: MarkDegraded,
    H: FallbackHook<Req, S::Response>,
{
    type Output = Result<S::Response, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(res) = this.ready.take() {
            return Poll::Ready(Ok(res));
        }
        let call = this
            .call
            .as_mut()
            .as_pin_mut()
            .expect("polled after completion");
        let result = ready!(call.poll(cx));
        this.call.set(None);
        let key = this.key.take().expect("polled after completion");
        let shared = this.shared.take().expect("polled after completion");
        Poll::Ready(match result {
            Ok(res) => {
                shared.hook.on_success(&key, &res);
                Ok(res)
            }
            Err(e) => {
                let err = GuardError::from_inner(e);
                match Why::from_error(&err).and_then(|why| shared.degrade(key, &why)) {
                    Some(res) => Ok(res),
                    None => Err(err),
                }
            }
        })
    }
}

impl<S, H, Req> fmt::Debug for ResponseFuture<S, H, Req>
where
    S: Service<Req>,
    H: FallbackHook<Req, S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ready", &self.ready.is_some())
            .finish_non_exhaustive()
    }
}
