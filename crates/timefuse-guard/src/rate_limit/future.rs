//! [`ResponseFuture`] of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use timefuse::Done;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::RateLimiter;
use crate::{BoxError, GuardError};

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): the call, or the bounded wait for
    /// a permit and then the call, or a refusal.
    ///
    /// # Cancel safety
    ///
    /// Dropping it while it waits for a permit gives nothing back: it has taken no permit yet.
    /// Once the call has started, dropping it drops the inner future.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{Rate, RateLimitLayer};
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut svc = RateLimitLayer::new(Rate::per_second(5)).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let future = svc.ready().await.unwrap().call(3); // this type
    /// assert_eq!(future.await.unwrap(), 3);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Req, K>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, K>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, K>
    where
        S: Service<Req>,
    {
        Call { #[pin] fut: S::Future },
        Wait { wait: Pin<Box<Waiting<S, Req, K>>> },
        Refused { error: Option<GuardError> },
    }
}

pin_project! {
    pub(super) struct Waiting<S, Req, K> {
        #[pin]
        pub(super) sleep: Sleep,
        #[pin]
        pub(super) done: Option<Done>,
        // Never wait past this instant.
        pub(super) until: Instant,
        pub(super) svc: S,
        pub(super) req: Option<Req>,
        pub(super) limiter: RateLimiter<K>,
        pub(super) key: K,
        pub(super) permitted: bool,
    }
}

impl<S: Service<Req>, Req, K> ResponseFuture<S, Req, K> {
    pub(super) fn call(fut: S::Future) -> Self {
        ResponseFuture {
            state: State::Call { fut },
        }
    }

    pub(super) fn wait(wait: Waiting<S, Req, K>) -> Self {
        ResponseFuture {
            state: State::Wait {
                wait: Box::pin(wait),
            },
        }
    }

    pub(super) fn refused(error: GuardError) -> Self {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<S, Req, K> Future for ResponseFuture<S, Req, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let fut = match this.state.as_mut().project() {
                StateProj::Call { fut } => {
                    return fut.poll(cx).map_err(GuardError::from_inner);
                }
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::Wait { wait } => {
                    let mut w = wait.as_mut().project();
                    if !*w.permitted {
                        if let Some(done) = w.done.as_mut().as_pin_mut()
                            && let Poll::Ready(cause) = done.poll(cx)
                        {
                            return Poll::Ready(Err(GuardError::ended(cause)));
                        }
                        ready!(w.sleep.as_mut().poll(cx));
                        match w.limiter.check(w.key) {
                            Ok(()) => *w.permitted = true,
                            Err(next) => {
                                let now = Instant::now();
                                if now + next > *w.until {
                                    return Poll::Ready(Err(GuardError::RateLimited {
                                        retry_after: next,
                                        name: w.limiter.name_arc(),
                                    }));
                                }
                                // Another caller took the permit: wait for the next one.
                                w.sleep.as_mut().reset(now + next);
                                continue;
                            }
                        }
                    }
                    ready!(w.svc.poll_ready(cx)).map_err(GuardError::from_inner)?;
                    let req = w.req.take().expect("polled after completion");
                    w.svc.call(req)
                }
            };
            this.state.set(State::Call { fut });
        }
    }
}

impl<S: Service<Req>, Req, K> fmt::Debug for ResponseFuture<S, Req, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Call { .. } => "call",
            State::Wait { .. } => "waiting for a permit",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
