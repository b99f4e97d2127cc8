//! [`ResponseFuture`] of the [`Bulkhead`](super::Bulkhead) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::BulkheadPermit;
use crate::{BoxError, GuardError};

type Wait = Pin<Box<dyn Future<Output = Result<BulkheadPermit, GuardError>> + Send>>;

pin_project! {
    /// The response future of [`Bulkhead`](super::Bulkhead): the call under a permit, or the
    /// bounded wait for a permit and then the call, or a refusal.
    ///
    /// # Cancel safety
    ///
    /// Dropping it while it waits leaves the queue without taking a permit; once the call has
    /// started, dropping it drops the inner future and frees the permit.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Running {
            #[pin]
            fut: S::Future,
            permit: Option<BulkheadPermit>,
        },
        Waiting {
            wait: Wait,
            svc: Option<S>,
            req: Option<Req>,
        },
        Refused { error: Option<GuardError> },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(super) fn running(fut: S::Future, permit: BulkheadPermit) -> Self {
        ResponseFuture {
            state: State::Running {
                fut,
                permit: Some(permit),
            },
        }
    }

    pub(super) fn waiting(wait: Wait, svc: S, req: Req) -> Self {
        ResponseFuture {
            state: State::Waiting {
                wait,
                svc: Some(svc),
                req: Some(req),
            },
        }
    }

    pub(super) fn refused(error: GuardError) -> Self {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, GuardError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Running { fut, permit } => {
                    let result = ready!(fut.poll(cx));
                    permit.take(); // free the permit as soon as the call ends
                    return Poll::Ready(result.map_err(GuardError::from_inner));
                }
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::Waiting { wait, svc, req } => {
                    let permit = ready!(wait.as_mut().poll(cx))?;
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        unreachable!("the call starts once");
                    };
                    // `svc` is the instance `poll_ready` readied; the service kept a clone.
                    let fut = svc.call(req);
                    this.state.set(State::Running {
                        fut,
                        permit: Some(permit),
                    });
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
