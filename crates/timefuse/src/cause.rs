//! Why a context ended.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why a [`Context`](crate::Context) ended: Go's `ctx.Err()` and `context.Cause(ctx)` in one value.
///
/// A context's cause is written once, when it ends, and every descendant inherits it.
/// [`Canceled`](Cause::Canceled), [`ClientGone`](Cause::ClientGone), [`Shutdown`](Cause::Shutdown)
/// and [`Other`](Cause::Other) are all cancellations; only
/// [`DeadlineExceeded`](Cause::DeadlineExceeded) is a timeout. The wire layers map them to gRPC
/// `DEADLINE_EXCEEDED` / `CANCELLED` and to HTTP 504 / 499.
///
/// # Examples
///
/// ```
/// use timefuse::{Cause, Context};
///
/// let (ctx, guard) = Context::background().with_cancel();
/// guard.cancel_with(Cause::Shutdown);
/// assert_eq!(ctx.cause(), Some(Cause::Shutdown));
/// assert!(!ctx.cause().unwrap().is_deadline_exceeded());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Cause {
    /// Canceled by its owner (the guard was dropped or `cancel()` was called).
    Canceled,
    /// The deadline passed.
    DeadlineExceeded,
    /// The caller went away: the connection closed or the response was dropped.
    ClientGone,
    /// The process or the owning scope is shutting down.
    Shutdown,
    /// A cause supplied by the application.
    Other(Arc<dyn Error + Send + Sync + 'static>),
}

impl Cause {
    /// Wraps an application error as a cause.
    ///
    /// ```
    /// let cause = timefuse::Cause::other(std::io::Error::other("ledger fenced"));
    /// assert_eq!(cause.to_string(), "ledger fenced");
    /// ```
    pub fn other<E>(err: E) -> Cause
    where
        E: Error + Send + Sync + 'static,
    {
        Cause::Other(Arc::new(err))
    }

    /// True for [`Cause::DeadlineExceeded`]: Go's `errors.Is(err, context.DeadlineExceeded)`.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, Cause::DeadlineExceeded)
    }

    /// True for every cause but [`Cause::DeadlineExceeded`]: Go's `errors.Is(err, context.Canceled)`.
    pub fn is_canceled(&self) -> bool {
        !self.is_deadline_exceeded()
    }

    pub(crate) fn code(&self) -> u8 {
        match self {
            Cause::Canceled => CANCELED,
            Cause::DeadlineExceeded => DEADLINE,
            Cause::ClientGone => CLIENT_GONE,
            Cause::Shutdown => SHUTDOWN,
            Cause::Other(_) => OTHER,
        }
    }

    /// The built-in cause for a state code; `None` for ACTIVE and OTHER.
    pub(crate) fn from_code(code: u8) -> Option<Cause> {
        match code {
            CANCELED => Some(Cause::Canceled),
            DEADLINE => Some(Cause::DeadlineExceeded),
            CLIENT_GONE => Some(Cause::ClientGone),
            SHUTDOWN => Some(Cause::Shutdown),
            _ => None,
        }
    }
}

pub(crate) const ACTIVE: u8 = 0;
pub(crate) const CANCELED: u8 = 1;
pub(crate) const DEADLINE: u8 = 2;
pub(crate) const CLIENT_GONE: u8 = 3;
pub(crate) const SHUTDOWN: u8 = 4;
pub(crate) const OTHER: u8 = 5;

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Canceled => f.pad("context canceled"),
            Cause::DeadlineExceeded => f.pad("context deadline exceeded"),
            Cause::ClientGone => f.pad("client went away"),
            Cause::Shutdown => f.pad("shutting down"),
            Cause::Other(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Canceled => f.write_str("Canceled"),
            Cause::DeadlineExceeded => f.write_str("DeadlineExceeded"),
            Cause::ClientGone => f.write_str("ClientGone"),
            Cause::Shutdown => f.write_str("Shutdown"),
            Cause::Other(e) => f.debug_tuple("Other").field(e).finish(),
        }
    }
}

/// Two causes are equal when they are the same built-in cause, or the same application error
/// (the same `Arc`).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Cause::Other(a), Cause::Other(b)) => Arc::ptr_eq(a, b),
            _ => self.code() == other.code(),
        }
    }
}

impl Eq for Cause {}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Cause::Other(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<Cause> for std::io::Error {
    fn from(cause: Cause) -> Self {
        let kind = match cause {
            Cause::DeadlineExceeded => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Interrupted,
        };
        std::io::Error::new(kind, cause)
    }
}
