//! [`Compartment`]: the shared part of a bulkhead — a semaphore and its wait rule.

use std::fmt;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use timefuse::{Cause, Context};

use crate::GuardError;

/// A concurrency limit shared by every clone of the services that use it (`Arc`), whose wait
/// for a permit never outlasts the caller's budget.
///
/// A call takes a permit at once if one is free. Otherwise it waits, in FIFO order, at most
///
/// ```text
/// min(max_wait, remaining − floor)
/// ```
///
/// — the caller's remaining time less its policy's floor, so a permit is never granted with no
/// time left to use it, and at most [`max_wait`](Compartment::with_max_wait) if set. Without a
/// deadline and without `max_wait` it waits as long as it takes (as tower's
/// `ConcurrencyLimit`). A wait that runs out is [`GuardError::BulkheadFull`]; a context
/// cancelled during the wait is [`GuardError::Ended`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::TimeoutPolicy;
/// use timefuse_guard::GuardError;
/// use timefuse_guard::bulkhead::Compartment;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let compartment = Arc::new(Compartment::new(1));
/// let held = compartment.try_acquire().unwrap();
/// let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms, floor 50 ms
/// let start = tokio::time::Instant::now();
/// let err = compartment.acquire(Some(&ctx)).await.unwrap_err();
/// assert!(matches!(err, GuardError::BulkheadFull { max_concurrent: 1, .. }));
/// assert_eq!(start.elapsed(), Duration::from_millis(750)); // never past remaining − floor
/// drop(held);
/// # }
/// ```
pub struct Compartment {
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    max_wait: Option<Duration>,
    rejected: AtomicU64,
}

impl Compartment {
    /// A compartment of `max_concurrent` permits, waiting within the budget only.
    ///
    /// # Panics
    ///
    /// If `max_concurrent` is zero or above [`Semaphore::MAX_PERMITS`].
    ///
    /// ```
    /// let c = timefuse_guard::bulkhead::Compartment::new(25);
    /// assert_eq!(c.available(), 25);
    /// ```
    pub fn new(max_concurrent: usize) -> Self {
        assert!(
            max_concurrent > 0 && max_concurrent <= Semaphore::MAX_PERMITS,
            "a bulkhead needs 1..=Semaphore::MAX_PERMITS permits"
        );
        Compartment {
            semaphore: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_wait: None,
            rejected: AtomicU64::new(0),
        }
    }

    /// Also bounds every wait by `max_wait` (`Some(Duration::ZERO)`: never wait, resilience4j's
    /// default; `None`: the budget alone bounds it).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::bulkhead::Compartment;
    /// let c = Compartment::new(4).with_max_wait(Some(Duration::from_millis(20)));
    /// assert_eq!(c.max_wait(), Some(Duration::from_millis(20)));
    /// ```
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Option<Duration>) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The configured bound on waits, if any.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::bulkhead::Compartment::new(1).max_wait(), None);
    /// ```
    pub fn max_wait(&self) -> Option<Duration> {
        self.max_wait
    }

    /// The concurrency limit.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::bulkhead::Compartment::new(8).max_concurrent(), 8);
    /// ```
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Free permits now.
    ///
    /// ```
    /// let c = timefuse_guard::bulkhead::Compartment::new(2);
    /// let _p = c.try_acquire().unwrap();
    /// assert_eq!(c.available(), 1);
    /// ```
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Calls running under a permit now.
    ///
    /// ```
    /// let c = timefuse_guard::bulkhead::Compartment::new(2);
    /// let _p = c.try_acquire().unwrap();
    /// assert_eq!(c.in_flight(), 1);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.max_concurrent - self.available().min(self.max_concurrent)
    }

    /// Calls refused ([`GuardError::BulkheadFull`]) so far.
    ///
    /// ```
    /// let c = timefuse_guard::bulkhead::Compartment::new(1);
    /// assert_eq!(c.rejected(), 0);
    /// ```
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// A permit if one is free now, without waiting.
    ///
    /// ```
    /// let c = timefuse_guard::bulkhead::Compartment::new(1);
    /// let p = c.try_acquire().unwrap();
    /// assert!(c.try_acquire().is_none());
    /// drop(p);
    /// assert!(c.try_acquire().is_some());
    /// ```
    pub fn try_acquire(&self) -> Option<BulkheadPermit> {
        Arc::clone(&self.semaphore)
            .try_acquire_owned()
            .ok()
            .map(|p| BulkheadPermit { _permit: p })
    }

    /// How long a caller on `ctx` may wait for a permit: `min(max_wait, remaining − floor)`,
    /// `None` when nothing bounds it (no deadline, no `max_wait`), zero once `ctx` is done.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    /// use timefuse_guard::bulkhead::Compartment;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms, floor 50 ms
    /// let c = Compartment::new(1);
    /// assert_eq!(c.wait_budget(Some(&ctx)), Some(Duration::from_millis(750)));
    /// assert_eq!(c.wait_budget(None), None);
    /// let c = c.with_max_wait(Some(Duration::from_millis(10)));
    /// assert_eq!(c.wait_budget(Some(&ctx)), Some(Duration::from_millis(10)));
    /// # }
    /// ```
    pub fn wait_budget(&self, ctx: Option<&Context>) -> Option<Duration> {
        let by_ctx = ctx.and_then(|c| {
            if c.is_done() {
                return Some(Duration::ZERO);
            }
            c.remaining()
                .map(|left| left.saturating_sub(c.policy().floor()))
        });
        match (self.max_wait, by_ctx) {
            (None, b) => b,
            (a, None) => a,
            (Some(a), Some(b)) => Some(a.min(b)),
        }
    }

    /// A permit for a caller on `ctx` (`None`: no context), waiting for one at most
    /// [`wait_budget`](Compartment::wait_budget).
    ///
    /// # Errors
    ///
    /// [`GuardError::BulkheadFull`] if no permit came within the wait;
    /// [`GuardError::Ended`] if `ctx` ended (was cancelled) first.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future leaves the queue without taking a permit.
    ///
    /// ```
    /// use timefuse_guard::bulkhead::Compartment;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let c = Compartment::new(1);
    /// let permit = c.acquire(None).await.unwrap();
    /// assert_eq!(c.in_flight(), 1);
    /// drop(permit);
    /// # }
    /// ```
    pub async fn acquire(&self, ctx: Option<&Context>) -> Result<BulkheadPermit, GuardError> {
        if let Some(p) = self.try_acquire() {
            return Ok(p);
        }
        let budget = self.wait_budget(ctx);
        self.wait(budget, ctx.cloned()).await
    }

    /// [`wait`](Compartment::wait) on an owned handle, for a `'static` future.
    pub(crate) async fn wait_owned(
        self: Arc<Self>,
        budget: Option<Duration>,
        ctx: Option<Context>,
    ) -> Result<BulkheadPermit, GuardError> {
        self.wait(budget, ctx).await
    }

    /// Waits up to `budget` (`None`: unbounded) for a permit, or until `ctx` ends.
    pub(crate) async fn wait(
        &self,
        budget: Option<Duration>,
        ctx: Option<Context>,
    ) -> Result<BulkheadPermit, GuardError> {
        let start = Instant::now();
        if let Some(ctx) = &ctx
            && ctx.is_done()
        {
            return Err(GuardError::ended(
                ctx.cause().unwrap_or(Cause::DeadlineExceeded),
            ));
        }
        if budget == Some(Duration::ZERO) {
            return Err(self.full(Duration::ZERO));
        }
        let mut acquire = pin!(Arc::clone(&self.semaphore).acquire_owned());
        let mut sleep = pin!(budget.map(tokio::time::sleep));
        let mut done = pin!(ctx.as_ref().map(Context::done));
        let waited = poll_fn(|cx| {
            if let Poll::Ready(p) = acquire.as_mut().poll(cx) {
                return Poll::Ready(Ok(p.expect("the semaphore is never closed")));
            }
            if let Some(done) = done.as_mut().as_pin_mut()
                && let Poll::Ready(cause) = done.poll(cx)
            {
                return Poll::Ready(Err(Some(cause)));
            }
            if let Some(sleep) = sleep.as_mut().as_pin_mut()
                && sleep.poll(cx).is_ready()
            {
                return Poll::Ready(Err(None));
            }
            Poll::Pending
        })
        .await;
        match waited {
            Ok(permit) => Ok(BulkheadPermit { _permit: permit }),
            Err(Some(cause)) => Err(GuardError::ended(cause)),
            Err(None) => Err(self.full(start.elapsed())),
        }
    }

    pub(crate) fn full(&self, waited: Duration) -> GuardError {
        self.rejected.fetch_add(1, Relaxed);
        GuardError::bulkhead_full(self.max_concurrent, waited)
    }
}

impl fmt::Debug for Compartment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compartment")
            .field("max_concurrent", &self.max_concurrent)
            .field("available", &self.available())
            .field("max_wait", &self.max_wait)
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// A permit of a [`Compartment`]: one call may run while it lives.
///
/// ```
/// let c = timefuse_guard::bulkhead::Compartment::new(1);
/// let permit = c.try_acquire().unwrap();
/// drop(permit); // the next caller may go
/// assert_eq!(c.available(), 1);
/// ```
#[derive(Debug)]
#[must_use = "the permit is released when dropped"]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}
