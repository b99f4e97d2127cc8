//! [`PerTryTimeoutLayer`]: each attempt gets `min(per-try cap, remaining − reserve)`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use timefuse::{CancelGuard, Cause, Context, Done};
use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::{BoxError, GuardError};

/// Bounds each call by the attempt's budget: `min(cap, remaining − reserve)` of the request's
/// context (the policy's reserve, as for a downstream call), or just `cap` without a deadline.
///
/// When the cap is what binds, the call runs under a child context ending then, the task-local
/// current context while the call runs, so the callee (timefuse-tower's egress layer, say)
/// sends the attempt's budget downstream, not the request's. Otherwise the budget is the one a
/// callee derives from the request's context itself, and a plain timer enforces it, armed only
/// if the call is still pending after its first poll (a call that completes at once costs no
/// timer and no child context).
///
/// A budget below the policy's floor is not started: [`GuardError::RefusedForBudget`]. When the
/// attempt's time is up the call is dropped and the error is [`GuardError::Ended`] with
/// [`Cause::DeadlineExceeded`]; the retry layer outside may try again if the request still has
/// time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::TimeoutPolicy;
/// use timefuse_guard::GuardError;
/// use timefuse_guard::retry::PerTryTimeoutLayer;
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = tower::service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, std::io::Error>(())
/// });
/// let mut svc = PerTryTimeoutLayer::new(Some(Duration::from_millis(300))).layer(slow);
/// let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
/// let start = tokio::time::Instant::now();
/// let err = ctx.scope(async { svc.ready().await.unwrap().call(()).await }).await.unwrap_err();
/// assert!(err.is_deadline_exceeded());
/// assert_eq!(start.elapsed(), Duration::from_millis(300)); // the cap, under 800 − 150 ms
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PerTryTimeoutLayer {
    cap: Option<Duration>,
}

impl PerTryTimeoutLayer {
    /// Each attempt gets at most `cap` (`None`: only the request's budget less the reserve).
    ///
    /// ```
    /// let layer = timefuse_guard::retry::PerTryTimeoutLayer::new(None);
    /// assert_eq!(layer.cap(), None);
    /// ```
    pub const fn new(cap: Option<Duration>) -> Self {
        PerTryTimeoutLayer { cap }
    }

    /// The per-try cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = timefuse_guard::retry::PerTryTimeoutLayer::new(Some(Duration::from_secs(1)));
    /// assert_eq!(layer.cap(), Some(Duration::from_secs(1)));
    /// ```
    pub const fn cap(&self) -> Option<Duration> {
        self.cap
    }
}

impl<S> Layer<S> for PerTryTimeoutLayer {
    type Service = PerTryTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PerTryTimeout {
            inner,
            cap: self.cap,
        }
    }
}

/// The service made by [`PerTryTimeoutLayer`].
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::retry::PerTryTimeoutLayer;
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut svc = PerTryTimeoutLayer::new(Some(Duration::from_secs(1)))
///     .layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PerTryTimeout<S> {
    inner: S,
    cap: Option<Duration>,
}

impl<S> PerTryTimeout<S> {
    /// Wraps `inner`.
    ///
    /// ```
    /// let svc = timefuse_guard::retry::PerTryTimeout::new(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }), None);
    /// # let _ = svc;
    /// ```
    pub const fn new(inner: S, cap: Option<Duration>) -> Self {
        PerTryTimeout { inner, cap }
    }

    /// The wrapped service.
    ///
    /// ```
    /// use timefuse_guard::retry::PerTryTimeout;
    /// assert_eq!(*PerTryTimeout::new(7_u8, None).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use timefuse_guard::retry::PerTryTimeout;
    /// let mut svc = PerTryTimeout::new(7_u8, None);
    /// *svc.get_mut() = 8;
    /// assert_eq!(svc.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use timefuse_guard::retry::PerTryTimeout;
    /// assert_eq!(PerTryTimeout::new(7_u8, None).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// How one attempt is bounded.
#[derive(Debug)]
pub(crate) enum Bound {
    /// No bound at all: no deadline and no cap.
    None,
    /// A child context ending after the attempt's budget: the cap binds, and the callee must
    /// see the shorter deadline.
    Child(Duration),
    /// A timer at this instant: the budget is the request's `remaining − reserve`, which a
    /// callee derives from the request's context itself.
    At(Instant),
    /// A timer this long after the first poll that finds the call pending (no request context).
    After(Duration),
}

/// How an attempt made now under `ctx` with `cap` is bounded.
///
/// # Errors
///
/// The refusal, when the context has ended or the budget is below the floor.
pub(crate) fn attempt_bound(
    ctx: Option<&Context>,
    cap: Option<Duration>,
) -> Result<Bound, GuardError> {
    let Some(ctx) = ctx else {
        return Ok(cap.map_or(Bound::None, Bound::After));
    };
    if ctx.is_done() {
        return Err(GuardError::ended(
            ctx.cause().unwrap_or(Cause::DeadlineExceeded),
        ));
    }
    let Some(deadline) = ctx.deadline() else {
        return Ok(cap.map_or(Bound::None, Bound::Child));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let policy = ctx.policy();
    let budget = left.saturating_sub(policy.reserve());
    if cap.is_some_and(|cap| cap < budget) {
        let cap = cap.unwrap_or(budget);
        if cap < policy.floor() {
            return Err(GuardError::refused_for_budget(cap, policy.floor()));
        }
        return Ok(Bound::Child(cap));
    }
    if budget < policy.floor() {
        return Err(GuardError::refused_for_budget(budget, policy.floor()));
    }
    Ok(Bound::At(
        deadline.checked_sub(policy.reserve()).unwrap_or(deadline),
    ))
}

impl<S, Req> Service<Req> for PerTryTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = GuardError;
    type Future = PerTryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(GuardError::from_inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let ctx = Context::try_current();
        match attempt_bound(ctx.as_ref(), self.cap) {
            Err(e) => PerTryFuture::failed(e),
            Ok(Bound::None) => PerTryFuture::timed(self.inner.call(req), None),
            Ok(Bound::At(deadline)) => {
                PerTryFuture::timed(self.inner.call(req), Some(Timer::At(deadline)))
            }
            Ok(Bound::After(budget)) => {
                PerTryFuture::timed(self.inner.call(req), Some(Timer::After(budget)))
            }
            Ok(Bound::Child(budget)) => {
                let parent = ctx.unwrap_or_default();
                let (child, guard) = match Instant::now().checked_add(budget) {
                    Some(deadline) => parent.with_deadline(deadline),
                    None => parent.with_cancel(),
                };
                let fut = child.sync_scope(|| self.inner.call(req));
                PerTryFuture::scoped(fut, child, guard)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    At(Instant),
    After(Duration),
}

pin_project! {
    /// Response future of [`PerTryTimeout`]: the call raced against the attempt's deadline
    /// (its child context's, or a timer armed only if the call is still pending after its
    /// first poll).
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the call and cancels the attempt's context.
    ///
    /// ```
    /// use timefuse_guard::retry::PerTryTimeoutLayer;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut svc = PerTryTimeoutLayer::new(None).layer(tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let future = svc.ready().await.unwrap().call(3); // this type
    /// assert_eq!(future.await.unwrap(), 3);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct PerTryFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The common case, kept small: the nested futures of a stack are moved at each level.
        Timed {
            #[pin]
            fut: F,
            timer: Option<Timer>,
            sleep: Option<Pin<Box<Sleep>>>,
        },
        // A child context (the cap binds): boxed, it is already the costlier path.
        Scoped { scoped: Pin<Box<Scoped<F>>> },
        Failed { error: Option<GuardError> },
    }
}

pin_project! {
    struct Scoped<F> {
        #[pin]
        call: TaskLocalFuture<Context, F>,
        #[pin]
        done: Done,
        guard: Option<CancelGuard>,
    }
}

impl<F: Future> PerTryFuture<F> {
    fn timed(fut: F, timer: Option<Timer>) -> Self {
        PerTryFuture {
            state: State::Timed {
                fut,
                timer,
                sleep: None,
            },
        }
    }

    fn scoped(fut: F, child: Context, guard: CancelGuard) -> Self {
        PerTryFuture {
            state: State::Scoped {
                scoped: Box::pin(Scoped {
                    done: child.done(),
                    call: child.scope(fut),
                    guard: Some(guard),
                }),
            },
        }
    }

    fn failed(error: GuardError) -> Self {
        PerTryFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for PerTryFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, GuardError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
            StateProj::Timed { fut, timer, sleep } => {
                if let Poll::Ready(result) = fut.poll(cx) {
                    return Poll::Ready(result.map_err(GuardError::from_inner));
                }
                let Some(timer) = *timer else {
                    return Poll::Pending;
                };
                let sleep = sleep.get_or_insert_with(|| {
                    Box::pin(match timer {
                        Timer::At(deadline) => tokio::time::sleep_until(deadline),
                        Timer::After(budget) => tokio::time::sleep(budget),
                    })
                });
                std::task::ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Err(GuardError::ended(Cause::DeadlineExceeded)))
            }
            StateProj::Scoped { scoped } => {
                let s = scoped.as_mut().project();
                if let Poll::Ready(result) = s.call.poll(cx) {
                    s.guard.take();
                    return Poll::Ready(result.map_err(GuardError::from_inner));
                }
                let cause = std::task::ready!(s.done.poll(cx));
                // The attempt's time is up: cancel its context; the call is dropped with us.
                s.guard.take();
                Poll::Ready(Err(GuardError::ended(cause)))
            }
        }
    }
}

impl<F> fmt::Debug for PerTryFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.state {
            State::Timed { .. } => "timed",
            State::Scoped { .. } => "child context",
            State::Failed { .. } => "refused",
        };
        f.debug_struct("PerTryFuture")
            .field("bound", &kind)
            .finish()
    }
}
