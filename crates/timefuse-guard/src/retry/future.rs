//! [`ResponseFuture`] of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use timefuse::Context;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::{Classify, Instance};
use crate::{BoxError, GuardError};

pin_project! {
    /// Response future of [`Retry`](super::Retry): attempts, with backoff between them, while
    /// the policy, the retry budget and the request's remaining time allow.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the attempt in flight; no further attempt starts.
    ///
    /// ```
    /// use timefuse_guard::retry::{RetryLayer, RetryPolicy};
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut svc = RetryLayer::new(RetryPolicy::default()).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let future = svc.ready().await.unwrap().call(3); // this type
    /// assert_eq!(future.await.unwrap(), 3);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // The service for retries: cloned from the template at the first retry (boxed: the
        // nested futures of a stack are moved at each level, so the common path stays small).
        svc: Option<Box<S>>,
        instance: Arc<Instance<S, C>>,
        req: Req,
        ctx: Option<Context>,
        attempt: u32,
        last: Option<Box<Result<S::Response, GuardError>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] fut: F, started: Option<Instant> },
        Backoff { sleep: Pin<Box<Sleep>> },
        Ready,
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(super) fn new(
        fut: S::Future,
        instance: Arc<Instance<S, C>>,
        req: Req,
        ctx: Option<Context>,
        started: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { fut, started },
            svc: None,
            instance,
            req,
            ctx,
            attempt: 1,
            last: None,
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut, started } => {
                    let result = ready!(fut.poll(cx)).map_err(GuardError::from_inner);
                    let shared = &this.instance.shared;
                    if result.is_ok()
                        && let Some(started) = started
                    {
                        shared.observe(started.elapsed());
                    }
                    match shared.next_retry(*this.attempt, &result, this.ctx.as_ref()) {
                        None => return Poll::Ready(result),
                        Some(delay) => {
                            *this.last = Some(Box::new(result));
                            *this.attempt += 1;
                            if delay.is_zero() {
                                this.state.set(State::Ready);
                            } else {
                                let sleep = Box::pin(tokio::time::sleep(delay));
                                this.state.set(State::Backoff { sleep });
                            }
                        }
                    }
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    let svc = this.svc.get_or_insert_with(|| {
                        Box::new(
                            this.instance
                                .template
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .clone(),
                        )
                    });
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(GuardError::from_inner(e)));
                    }
                    // The decision was made before the backoff, for exactly this much time;
                    // the context may have been cancelled since.
                    if this.ctx.as_ref().is_some_and(Context::is_done) {
                        let last = this.last.take().expect("a retry follows an attempt");
                        return Poll::Ready(*last);
                    }
                    this.last.take();
                    let fut = svc.call(this.req.clone());
                    this.state.set(State::Calling {
                        fut,
                        started: Some(Instant::now()),
                    });
                }
            }
        }
    }
}

impl<S: Service<Req>, Req, C> fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Clamps the backoff `delay` so that `needed` still fits in `available` after it.
pub(super) fn fit_delay(delay: Duration, at_least: Duration, slack: Duration) -> Option<Duration> {
    if at_least > slack {
        return None;
    }
    Some(delay.max(at_least).min(slack))
}
