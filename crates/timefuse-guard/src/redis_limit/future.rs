//! [`ResponseFuture`] of [`RedisRateLimit`](super::RedisRateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{BoxError, GuardError};

type Admit = Pin<Box<dyn Future<Output = Result<(), GuardError>> + Send>>;

pin_project! {
    /// Response future of [`RedisRateLimit`](super::RedisRateLimit): the check on Redis (and
    /// any bounded wait for a permit), then the call.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before the call starts makes no call (a permit may already be taken in
    /// Redis); after, it drops the call.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::Rate;
    /// use timefuse_guard::redis_limit::{RedisRateLimitLayer, RedisRateLimiter};
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redis::RedisError> {
    /// let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379", Rate::per_second(1000))?
    ///     .prefix(format!("doc-future:{}", std::process::id()));
    /// let mut svc = RedisRateLimitLayer::new(limiter).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let future = svc.ready().await.unwrap().call(3); // this type
    /// assert_eq!(future.await.unwrap(), 3); // allowed, or let through if Redis is down
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        admit: Option<Admit>,
        svc: S,
        req: Option<Req>,
        #[pin]
        call: Option<S::Future>,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(super) fn new(admit: Admit, svc: S, req: Req) -> Self {
        ResponseFuture {
            admit: Some(admit),
            svc,
            req: Some(req),
            call: None,
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(call) = this.call.as_mut().as_pin_mut() {
            return call.poll(cx).map_err(GuardError::from_inner);
        }
        if let Some(admit) = this.admit.as_mut() {
            ready!(admit.as_mut().poll(cx))?;
            *this.admit = None;
        }
        ready!(this.svc.poll_ready(cx)).map_err(GuardError::from_inner)?;
        let req = this.req.take().expect("polled after completion");
        this.call.set(Some(this.svc.call(req)));
        this.call
            .as_pin_mut()
            .expect("just set")
            .poll(cx)
            .map_err(GuardError::from_inner)
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("admitted", &self.admit.is_none())
            .finish_non_exhaustive()
    }
}
