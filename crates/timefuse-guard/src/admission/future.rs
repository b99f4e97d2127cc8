//! [`ResponseFuture`] of the [`Admission`](super::Admission) service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::estimator::Route;
use crate::{BoxError, GuardError};

pin_project! {
    /// The response future of [`Admission`](super::Admission): the inner call, whose latency
    /// feeds the route's estimate if it succeeds, or the refusal.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before the call ends records nothing.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Refused { error: Option<GuardError> },
        Running {
            #[pin]
            future: F,
            route: Arc<Route>,
            alpha: f64,
            base: Instant,
            start: Instant,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn refused(error: GuardError) -> Self {
        ResponseFuture {
            kind: Kind::Refused { error: Some(error) },
        }
    }

    pub(crate) fn running(future: F, route: Arc<Route>, alpha: f64, base: Instant) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                future,
                route,
                alpha,
                base,
                start: Instant::now(),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            KindProj::Running {
                future,
                route,
                alpha,
                base,
                start,
            } => {
                let result = std::task::ready!(future.poll(cx));
                match result {
                    Ok(response) => {
                        let now = Instant::now();
                        let since_base = now.saturating_duration_since(*base).as_millis();
                        route.sample(
                            now.saturating_duration_since(*start),
                            *alpha,
                            u64::try_from(since_base).unwrap_or(u64::MAX - 1),
                        );
                        Poll::Ready(Ok(response))
                    }
                    Err(e) => Poll::Ready(Err(GuardError::from_inner(e))),
                }
            }
        }
    }
}
