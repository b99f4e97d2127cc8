//! A bulkhead: a concurrency limit shared across clones whose wait for a permit is bounded by
//! the caller's budget.
//!
//! - [`Compartment`]: the shared limit (a tokio `Semaphore` in an `Arc`) and its wait rule:
//!   at most `min(max_wait, remaining − floor)`, so a permit is never handed to a caller with no
//!   time left to use it. Usable without tower ([`Compartment::acquire`]).
//! - [`BulkheadLayer`] / [`Bulkhead`]: the tower middleware.
//!
//! A call that gets no permit within its wait is refused with [`GuardError::BulkheadFull`], a
//! refusal (outcome [`BulkheadFull`](crate::Outcome::BulkheadFull)): a circuit breaker
//! outside it records nothing for it. A context cancelled while waiting ends the wait with
//! [`GuardError::Ended`].
//!
//! The permit is taken in `call` (the request's context is needed to bound the wait), not in
//! `poll_ready`, so the service is always ready when its inner service is. The request's
//! context is the task-local [`Context::try_current`](timefuse::Context::try_current), read
//! only when no permit is free.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use timefuse_guard::bulkhead::{BulkheadLayer, Compartment};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = BulkheadLayer::new(2);
//! let compartment = Arc::clone(layer.compartment());
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|()| async {
//!     tokio::time::sleep(Duration::from_millis(100)).await;
//!     Ok::<_, std::convert::Infallible>(())
//! });
//! // Ten calls without a deadline through ten clones: two at a time, all served.
//! let start = tokio::time::Instant::now();
//! let calls: Vec<_> = (0..10)
//!     .map(|_| {
//!         let mut svc = svc.clone();
//!         tokio::spawn(async move { svc.ready().await.unwrap().call(()).await })
//!     })
//!     .collect();
//! for c in calls {
//!     c.await.unwrap().unwrap();
//! }
//! assert_eq!(start.elapsed(), Duration::from_millis(500));
//! assert_eq!(compartment.rejected(), 0);
//! # }
//! ```

mod compartment;
pub mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tower_service::Service;

use timefuse::Context;

use crate::{BoxError, GuardError};

pub use compartment::{BulkheadPermit, Compartment};
pub use future::ResponseFuture;
pub use layer::BulkheadLayer;

/// The service made by [`BulkheadLayer`].
///
/// ```
/// use std::sync::Arc;
/// use timefuse_guard::bulkhead::{Bulkhead, Compartment};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut svc = Bulkhead::new(
///     tower::service_fn(|x: u8| async move { Ok::<_, std::convert::Infallible>(x) }),
///     Arc::new(Compartment::new(4)),
/// );
/// assert_eq!(svc.ready().await.unwrap().call(9).await.unwrap(), 9);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bulkhead<S> {
    inner: S,
    compartment: Arc<Compartment>,
}

impl<S> Bulkhead<S> {
    /// Wraps `inner`, limited by `compartment`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timefuse_guard::bulkhead::{Bulkhead, Compartment};
    /// let svc = Bulkhead::new((), Arc::new(Compartment::new(1)));
    /// # let _ = svc;
    /// ```
    pub fn new(inner: S, compartment: Arc<Compartment>) -> Self {
        Bulkhead { inner, compartment }
    }

    /// The shared compartment.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timefuse_guard::bulkhead::{Bulkhead, Compartment};
    /// let svc = Bulkhead::new((), Arc::new(Compartment::new(7)));
    /// assert_eq!(svc.compartment().max_concurrent(), 7);
    /// ```
    pub fn compartment(&self) -> &Arc<Compartment> {
        &self.compartment
    }

    /// The wrapped service.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timefuse_guard::bulkhead::{Bulkhead, Compartment};
    /// let svc = Bulkhead::new(1u8, Arc::new(Compartment::new(1)));
    /// assert_eq!(*svc.get_ref(), 1);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timefuse_guard::bulkhead::{Bulkhead, Compartment};
    /// let mut svc = Bulkhead::new(1u8, Arc::new(Compartment::new(1)));
    /// *svc.get_mut() = 2;
    /// assert_eq!(*svc.get_ref(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timefuse_guard::bulkhead::{Bulkhead, Compartment};
    /// let svc = Bulkhead::new(1u8, Arc::new(Compartment::new(1)));
    /// assert_eq!(svc.into_inner(), 1);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(permit) = self.compartment.try_acquire() {
            return ResponseFuture::running(self.inner.call(req), permit);
        }
        let ctx = Context::try_current();
        if let Some(ctx) = &ctx
            && ctx.is_done()
        {
            let cause = ctx.cause().unwrap_or(timefuse::Cause::DeadlineExceeded);
            return ResponseFuture::refused(GuardError::ended(cause));
        }
        let budget = self.compartment.wait_budget(ctx.as_ref());
        if budget == Some(std::time::Duration::ZERO) {
            return ResponseFuture::refused(self.compartment.full(std::time::Duration::ZERO));
        }
        let wait = Box::pin(Arc::clone(&self.compartment).wait_owned(budget, ctx));
        // Keep the instance `poll_ready` readied for the call; leave a clone here.
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::waiting(wait, svc, req)
    }
}
