//! [`ResponseFuture`] of the [`CircuitBreaker`](super::CircuitBreaker) service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{Classify, OwnedPermit};
use crate::{BoxError, GuardError};

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker): the inner call,
    /// recorded in the breaker when it ends, or the breaker's refusal.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before the call ends records nothing and releases its permit (a half-open
    /// probe gives its place back).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Refused { error: Option<GuardError> },
        Running {
            #[pin]
            future: F,
            permit: Option<OwnedPermit>,
            start: Instant,
            classifier: C,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn refused(error: GuardError) -> Self {
        ResponseFuture {
            kind: Kind::Refused { error: Some(error) },
        }
    }

    pub(crate) fn running(future: F, permit: OwnedPermit, start: Instant, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                future,
                permit: Some(permit),
                start,
                classifier,
            },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            KindProj::Running {
                future,
                permit,
                start,
                classifier,
            } => {
                let result = std::task::ready!(future.poll(cx)).map_err(GuardError::from_inner);
                if let Some(permit) = permit.take() {
                    let now = Instant::now();
                    match classifier.classify(result.as_ref()) {
                        Some(outcome) => {
                            permit.record_at(outcome, now.saturating_duration_since(*start), now)
                        }
                        None => drop(permit),
                    }
                }
                Poll::Ready(result)
            }
        }
    }
}
