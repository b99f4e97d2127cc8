//! Tracked resources: [`Tracked<R>`], a guard around a held connection, file, buffer, lock or
//! permit, recorded in a process-wide registry from acquire to release, and flagged when it is
//! held past its scope timeout or past the end of its request's context.
//!
//! This is HikariCP's `leakDetectionThreshold` for anything: the scope (the design document's
//! `@ResourceScope(service, timeout)`) names the owning service and how long a resource of it
//! may be held; [`Tracked`] records the acquire site (`#[track_caller]`), the time, and the
//! request and trace id of the context it was acquired under. Like HikariCP it is diagnostic
//! only: a flagged resource is logged once with [`tracing::warn!`] and counted
//! ([`metrics`]), never closed or reclaimed.
//!
//! Flagging happens when someone looks: [`sweep`], every [`snapshot`], the live dump, or a
//! periodic [`spawn_sweeper`]. The leak check reports tracked resources still held at the end
//! of a test.
//!
//! # Clocks
//!
//! Ages and timeouts are measured on tokio's clock, which a test may pause. A resource is
//! judged by the clock it was acquired under: [`sweep`] flags the resources acquired on the
//! calling runtime (or outside any runtime, when called outside one), so a test that advances
//! its paused clock by an hour never flags another test's resources.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use timefuse::{Context, RequestId};
//! use timefuse_leak::{ResourceScope, resource};
//!
//! const BILLING_DB: ResourceScope = ResourceScope::new("billing").with_timeout(Duration::from_secs(2));
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let request = Context::background().with_request_id(RequestId::new("req-42").unwrap());
//! let conn = BILLING_DB.track_in(&request, "pg-connection", String::from("conn#3"));
//! assert_eq!(conn.len(), 6, "derefs to the resource");
//!
//! tokio::time::sleep(Duration::from_secs(3)).await; // held past the 2 s scope timeout
//! let flagged = resource::sweep();                   // logs a warning, once
//! assert_eq!(flagged[0].kind(), "pg-connection");
//! assert!(resource::sweep().is_empty(), "flagged once");
//!
//! drop(conn); // released: the entry is gone
//! assert!(resource::snapshot_where(|r| r.request_id().map(|r| r.as_str()) == Some("req-42")).is_empty());
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use timefuse::task::{Registration, Registry};
use timefuse::{Cause, Context, RequestId};
use tokio::runtime::Handle;
use tokio::time::Instant;

/// A name that clones without allocating.
#[derive(Clone)]
pub(crate) enum Label {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Label {
    fn new(s: Cow<'static, str>) -> Label {
        match s {
            Cow::Borrowed(s) => Label::Static(s),
            Cow::Owned(s) => Label::Shared(Arc::from(s)),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Label::Static(s) => s,
            Label::Shared(s) => s,
        }
    }
}

/// The owner of a group of resources and how long one of them may be held: the design
/// document's `@ResourceScope(service, timeout)`. `const`, so a scope can be a constant next
/// to the pool or client it describes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_leak::ResourceScope;
///
/// const SEARCH_CACHE: ResourceScope =
///     ResourceScope::new("search").with_timeout(Duration::from_millis(500));
/// assert_eq!(SEARCH_CACHE.service(), "search");
/// assert_eq!(SEARCH_CACHE.timeout(), Some(Duration::from_millis(500)));
/// ```
#[derive(Clone)]
pub struct ResourceScope {
    service: Label,
    timeout: Option<Duration>,
}

impl ResourceScope {
    /// A scope owned by `service`, without a timeout: its resources are flagged only when
    /// held past the end of their context.
    ///
    /// ```
    /// let scope = timefuse_leak::ResourceScope::new("ledger");
    /// assert_eq!(scope.timeout(), None);
    /// ```
    pub const fn new(service: &'static str) -> ResourceScope {
        ResourceScope {
            service: Label::Static(service),
            timeout: None,
        }
    }

    /// A scope whose service name is only known at run time.
    ///
    /// ```
    /// let tenant = "acme";
    /// let scope = timefuse_leak::ResourceScope::named(format!("tenant-{tenant}"));
    /// assert_eq!(scope.service(), "tenant-acme");
    /// ```
    pub fn named(service: impl Into<Cow<'static, str>>) -> ResourceScope {
        ResourceScope {
            service: Label::new(service.into()),
            timeout: None,
        }
    }

    /// This scope with a timeout: a resource held longer is flagged.
    ///
    /// ```
    /// use std::time::Duration;
    /// let scope = timefuse_leak::ResourceScope::new("ledger").with_timeout(Duration::from_secs(1));
    /// assert_eq!(scope.timeout(), Some(Duration::from_secs(1)));
    /// ```
    pub const fn with_timeout(mut self, timeout: Duration) -> ResourceScope {
        self.timeout = Some(timeout);
        self
    }

    /// The owning service.
    ///
    /// ```
    /// assert_eq!(timefuse_leak::ResourceScope::new("ledger").service(), "ledger");
    /// ```
    pub fn service(&self) -> &str {
        self.service.as_str()
    }

    /// How long a resource of this scope may be held, if bounded.
    ///
    /// ```
    /// assert_eq!(timefuse_leak::ResourceScope::new("ledger").timeout(), None);
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Wraps `resource`, of kind `kind` (`"pg-connection"`, `"file"`, `"permit"`), in a
    /// [`Tracked`] guard recorded under the [current](Context::current) context (or a
    /// background one), with the caller's location.
    ///
    /// ```
    /// use timefuse::{Context, RequestId};
    /// use timefuse_leak::ResourceScope;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let request = Context::background().with_request_id(RequestId::new("r-1").unwrap());
    /// request.scope(async {
    ///     let file = ResourceScope::new("exporter").track("file", vec![0_u8; 16]);
    ///     assert_eq!(file.info().unwrap().request_id().unwrap().as_str(), "r-1");
    /// }).await;
    /// # }
    /// ```
    #[track_caller]
    pub fn track<R>(&self, kind: impl Into<Cow<'static, str>>, resource: R) -> Tracked<R> {
        let ctx = Context::try_current().unwrap_or_default();
        Tracked::register(
            resource,
            self,
            Label::new(kind.into()),
            ctx,
            Location::caller(),
        )
    }

    /// [`track`](ResourceScope::track) under the context `ctx`.
    ///
    /// ```
    /// use timefuse::{Context, RequestId};
    /// use timefuse_leak::ResourceScope;
    ///
    /// let request = Context::background().with_request_id(RequestId::new("r-2").unwrap());
    /// let permit = ResourceScope::new("bulkhead").track_in(&request, "permit", ());
    /// assert_eq!(permit.info().unwrap().request_id().unwrap().as_str(), "r-2");
    /// ```
    #[track_caller]
    pub fn track_in<R>(
        &self,
        ctx: &Context,
        kind: impl Into<Cow<'static, str>>,
        resource: R,
    ) -> Tracked<R> {
        Tracked::register(
            resource,
            self,
            Label::new(kind.into()),
            ctx.clone(),
            Location::caller(),
        )
    }
}

impl fmt::Debug for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceScope")
            .field("service", &self.service())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a resource was flagged.
///
/// ```
/// use std::time::Duration;
/// use timefuse_leak::resource::Overdue;
///
/// let overdue = Overdue::PastTimeout(Duration::from_secs(2));
/// assert_eq!(overdue.to_string(), "held past its scope timeout of 2s");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overdue {
    /// Its request's context ended (with this cause) while it was still held: the strongest
    /// leak signal.
    ContextEnded(Cause),
    /// It was held longer than its scope's timeout.
    PastTimeout(Duration),
}

impl fmt::Display for Overdue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overdue::ContextEnded(cause) => write!(f, "held after its context ended ({cause})"),
            Overdue::PastTimeout(t) => write!(f, "held past its scope timeout of {t:?}"),
        }
    }
}

/// One held resource as recorded in the registry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_leak::{ResourceScope, resource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = ResourceScope::new("billing").with_timeout(Duration::from_secs(2));
/// let (conn, line) = (scope.track("pg-connection", ()), line!());
/// let info = conn.info().unwrap();
/// assert_eq!((info.service(), info.kind()), ("billing", "pg-connection"));
/// assert_eq!((info.location().file(), info.location().line()), (file!(), line));
/// assert_eq!(info.timeout(), Some(Duration::from_secs(2)));
/// assert!(info.overdue().is_none());
/// # }
/// ```
#[derive(Clone)]
pub struct ResourceInfo {
    id: u64,
    service: Label,
    kind: Label,
    location: &'static Location<'static>,
    // timefuse-lint: allow(TF030) a registry record of the acquiring request, read (never derived from) to flag resources held past its end
    ctx: Context,
    runtime: Option<tokio::runtime::Id>,
    acquired: Instant,
    acquired_at: SystemTime,
    timeout: Option<Duration>,
    flag: Option<Overdue>,
}

impl ResourceInfo {
    /// The entry's id, unique in the process; ascending ids are acquire order.
    ///
    /// ```
    /// let a = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// let b = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert!(a.info().unwrap().id() < b.info().unwrap().id());
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The owning service, from the [`ResourceScope`].
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("billing").track("k", ());
    /// assert_eq!(r.info().unwrap().service(), "billing");
    /// ```
    pub fn service(&self) -> &str {
        self.service.as_str()
    }

    /// The kind of resource, as given at acquire.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("billing").track("pg-connection", ());
    /// assert_eq!(r.info().unwrap().kind(), "pg-connection");
    /// ```
    pub fn kind(&self) -> &str {
        self.kind.as_str()
    }

    /// Where it was acquired: the caller of [`ResourceScope::track`].
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert_eq!(r.info().unwrap().location().file(), file!());
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// The tokio runtime it was acquired on, if any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert_eq!(r.info().unwrap().runtime(), Some(tokio::runtime::Handle::current().id()));
    /// # }
    /// ```
    pub fn runtime(&self) -> Option<tokio::runtime::Id> {
        self.runtime
    }

    /// When it was acquired, on tokio's clock.
    ///
    /// ```
    /// let before = tokio::time::Instant::now();
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert!(r.info().unwrap().acquired() >= before);
    /// ```
    pub fn acquired(&self) -> Instant {
        self.acquired
    }

    /// When it was acquired, on the wall clock.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert!(r.info().unwrap().acquired_at() <= std::time::SystemTime::now());
    /// ```
    pub fn acquired_at(&self) -> SystemTime {
        self.acquired_at
    }

    /// How long it has been held.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// assert_eq!(r.info().unwrap().held_for(), Duration::from_secs(1));
    /// # }
    /// ```
    pub fn held_for(&self) -> Duration {
        Instant::now().saturating_duration_since(self.acquired)
    }

    /// The scope's timeout, if any.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert_eq!(r.info().unwrap().timeout(), None);
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The context it was acquired under.
    ///
    /// ```
    /// let ctx = timefuse::Context::background().with_value(9_u8);
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// assert_eq!(r.info().unwrap().context().value::<u8>(), Some(&9));
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// True if its context has ended.
    ///
    /// ```
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// guard.cancel();
    /// assert!(r.info().unwrap().context_ended());
    /// ```
    pub fn context_ended(&self) -> bool {
        self.ctx.is_done()
    }

    /// Why its context ended, if it has.
    ///
    /// ```
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// guard.cancel_with(timefuse::Cause::ClientGone);
    /// assert_eq!(r.info().unwrap().cause(), Some(timefuse::Cause::ClientGone));
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.ctx.cause()
    }

    /// The request id of its context.
    ///
    /// ```
    /// use timefuse::{Context, RequestId};
    /// let ctx = Context::background().with_request_id(RequestId::new("r-9").unwrap());
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// assert_eq!(r.info().unwrap().request_id().unwrap().as_str(), "r-9");
    /// ```
    pub fn request_id(&self) -> Option<&RequestId> {
        self.ctx.request_id()
    }

    /// The trace id of its context, as 32 hex digits.
    ///
    /// ```
    /// use timefuse::{Context, TraceContext};
    /// let ctx = Context::background().with_trace(TraceContext::new([0xab; 16], [1; 8], 1));
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// assert_eq!(r.info().unwrap().trace_id().unwrap(), "ab".repeat(16));
    /// ```
    pub fn trace_id(&self) -> Option<String> {
        self.ctx.trace().map(|t| t.trace_id_hex())
    }

    /// Whether it is overdue now: held after its context ended (checked first), or past its
    /// scope timeout.
    ///
    /// ```
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// assert_eq!(r.info().unwrap().overdue(), None);
    /// drop(guard);
    /// assert!(matches!(r.info().unwrap().overdue(), Some(timefuse_leak::resource::Overdue::ContextEnded(_))));
    /// ```
    pub fn overdue(&self) -> Option<Overdue> {
        self.overdue_at(Instant::now())
    }

    fn overdue_at(&self, now: Instant) -> Option<Overdue> {
        if let Some(cause) = self.ctx.cause() {
            return Some(Overdue::ContextEnded(cause));
        }
        let timeout = self.timeout?;
        (now.saturating_duration_since(self.acquired) > timeout)
            .then_some(Overdue::PastTimeout(timeout))
    }

    /// Why it was flagged, if a [`sweep`] has flagged it (each resource is flagged once).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// let r = timefuse_leak::ResourceScope::new("s").track_in(&ctx, "k", ());
    /// drop(guard);
    /// assert!(r.info().unwrap().flagged().is_none(), "nobody looked yet");
    /// timefuse_leak::resource::sweep();
    /// assert!(r.info().unwrap().flagged().is_some());
    /// # }
    /// ```
    pub fn flagged(&self) -> Option<&Overdue> {
        self.flag.as_ref()
    }
}

impl fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResourceInfo");
        d.field("id", &self.id)
            .field("service", &self.service())
            .field("kind", &self.kind())
            .field("location", &format_args!("{}", self.location))
            .field("held_for", &self.held_for())
            .field("timeout", &self.timeout);
        if let Some(id) = self.request_id() {
            d.field("request_id", &id.as_str());
        }
        if let Some(trace) = self.trace_id() {
            d.field("trace_id", &trace);
        }
        d.field("context_ended", &self.context_ended())
            .field("flagged", &self.flag)
            .finish_non_exhaustive()
    }
}

/// One line: `resource #3 "pg-connection" of billing acquired at src/db.rs:9:5, held 2.1s,
/// request r-1, held past its scope timeout of 2s`.
impl fmt::Display for ResourceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resource #{} {:?} of {} acquired at {}, held {:?}",
            self.id,
            self.kind(),
            self.service(),
            self.location,
            self.held_for()
        )?;
        if let Some(id) = self.request_id() {
            write!(f, ", request {}", id.as_str())?;
        }
        if let Some(trace) = self.trace_id() {
            write!(f, ", trace {trace}")?;
        }
        match self.overdue() {
            Some(overdue) => write!(f, ", {overdue}"),
            None => Ok(()),
        }
    }
}

/// The block form used by leak reports and the dump.
pub(crate) fn write_resource_block(f: &mut impl fmt::Write, r: &ResourceInfo) -> fmt::Result {
    write!(f, "resource #{} {:?} of {}", r.id, r.kind(), r.service())?;
    match r.overdue() {
        Some(Overdue::ContextEnded(cause)) => {
            writeln!(f, " HELD AFTER ITS CONTEXT ENDED ({cause})")?;
        }
        Some(Overdue::PastTimeout(t)) => {
            writeln!(f, " HELD PAST ITS SCOPE TIMEOUT ({t:?})")?;
        }
        None => writeln!(f, " still held, context live")?,
    }
    writeln!(f, "    acquired at {}", r.location)?;
    write!(f, "    held {:?}", r.held_for())?;
    if let Some(t) = r.timeout {
        write!(f, ", scope timeout {t:?}")?;
    }
    writeln!(f)?;
    writeln!(
        f,
        "    request {}, trace {}",
        r.request_id().map_or("-", |r| r.as_str()),
        r.trace_id().as_deref().unwrap_or("-")
    )
}

static RESOURCES: Registry<ResourceInfo> = Registry::new();
static ACQUIRED: AtomicU64 = AtomicU64::new(0);
static RELEASED: AtomicU64 = AtomicU64::new(0);
static FLAGGED_CONTEXT: AtomicU64 = AtomicU64::new(0);
static FLAGGED_TIMEOUT: AtomicU64 = AtomicU64::new(0);
static RELEASED_AFTER_FLAG: AtomicU64 = AtomicU64::new(0);

/// A held resource, recorded in the resource registry until it is dropped (released) or
/// [`into_inner`](Tracked::into_inner) takes it back. Derefs to the resource.
///
/// Made by [`ResourceScope::track`] and [`ResourceScope::track_in`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use timefuse_leak::ResourceScope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Arc::new(tokio::sync::Semaphore::new(4));
/// let permit = ResourceScope::new("search").track("permit", pool.clone().acquire_owned().await.unwrap());
/// assert_eq!(pool.available_permits(), 3);
/// drop(permit); // the permit goes back, and the registry entry goes away
/// assert_eq!(pool.available_permits(), 4);
/// # }
/// ```
pub struct Tracked<R> {
    // Declared first so that it is dropped first: the entry stays while the resource's own
    // drop runs.
    resource: R,
    hold: Hold,
}

/// The registry entry of a [`Tracked`]; removing it is the release.
struct Hold {
    registration: Registration<'static, ResourceInfo>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut flagged = None;
        let mut held = Duration::ZERO;
        self.registration.update(|r| {
            flagged = r.flag.clone();
            held = Instant::now().saturating_duration_since(r.acquired);
        });
        RELEASED.fetch_add(1, Ordering::Relaxed);
        if let Some(overdue) = flagged {
            RELEASED_AFTER_FLAG.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "timefuse_leak::resource",
                resource_id = self.registration.id(),
                held_ms = held.as_millis() as u64,
                "previously flagged resource released after {held:?} ({overdue})"
            );
        }
    }
}

impl<R> Tracked<R> {
    fn register(
        resource: R,
        scope: &ResourceScope,
        kind: Label,
        ctx: Context,
        location: &'static Location<'static>,
    ) -> Tracked<R> {
        let runtime = Handle::try_current().ok().map(|h| h.id());
        let registration = RESOURCES.register_with(|id| ResourceInfo {
            id,
            service: scope.service.clone(),
            kind,
            location,
            ctx,
            runtime,
            acquired: Instant::now(),
            acquired_at: SystemTime::now(),
            timeout: scope.timeout,
            flag: None,
        });
        ACQUIRED.fetch_add(1, Ordering::Relaxed);
        Tracked {
            resource,
            hold: Hold { registration },
        }
    }

    /// The registry id of this resource.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert_eq!(r.info().unwrap().id(), r.id());
    /// ```
    pub fn id(&self) -> u64 {
        self.hold.registration.id()
    }

    /// The registry entry as it is now.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
    /// assert_eq!(r.info().unwrap().kind(), "k");
    /// ```
    pub fn info(&self) -> Option<ResourceInfo> {
        RESOURCES.get(self.id())
    }

    /// Releases the tracking and returns the resource itself.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("s").track("k", String::from("conn"));
    /// let id = r.id();
    /// let conn: String = r.into_inner();
    /// assert_eq!(conn, "conn");
    /// assert!(timefuse_leak::resource::snapshot_where(|r| r.id() == id).is_empty());
    /// ```
    pub fn into_inner(self) -> R {
        let Tracked { resource, hold } = self;
        drop(hold);
        resource
    }
}

impl<R> Deref for Tracked<R> {
    type Target = R;

    fn deref(&self) -> &R {
        &self.resource
    }
}

impl<R> DerefMut for Tracked<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.resource
    }
}

impl<R> AsRef<R> for Tracked<R> {
    fn as_ref(&self) -> &R {
        &self.resource
    }
}

impl<R> AsMut<R> for Tracked<R> {
    fn as_mut(&mut self) -> &mut R {
        &mut self.resource
    }
}

impl<R: fmt::Debug> fmt::Debug for Tracked<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("id", &self.id())
            .field("resource", &self.resource)
            .finish()
    }
}

fn current_runtime() -> Option<tokio::runtime::Id> {
    Handle::try_current().ok().map(|h| h.id())
}

/// Flags, once each, the resources acquired on the calling runtime (or outside any runtime,
/// when called outside one) that are held after their context ended or past their scope
/// timeout: logs each with [`tracing::warn!`] (target `timefuse_leak::resource`) and counts it
/// in [`metrics`]. Returns the resources flagged by this call.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, guard) = timefuse::Context::background().with_cancel();
/// let conn = timefuse_leak::ResourceScope::new("billing").track_in(&ctx, "pg-connection", ());
/// drop(guard); // the request ended; the connection is still held
/// let flagged = timefuse_leak::resource::sweep();
/// assert_eq!(flagged.len(), 1);
/// assert!(timefuse_leak::resource::sweep().is_empty(), "each resource is flagged once");
/// # drop(conn);
/// # }
/// ```
pub fn sweep() -> Vec<ResourceInfo> {
    let runtime = current_runtime();
    let now = Instant::now();
    let candidates = RESOURCES.snapshot_where(|r| {
        r.flag.is_none() && r.runtime == runtime && r.overdue_at(now).is_some()
    });
    let mut flagged = Vec::new();
    for mut info in candidates {
        let Some(overdue) = info.overdue_at(now) else {
            continue;
        };
        let mut newly = false;
        RESOURCES.update(info.id, |r| {
            if r.flag.is_none() {
                r.flag = Some(overdue.clone());
                newly = true;
            }
        });
        if !newly {
            continue;
        }
        match &overdue {
            Overdue::ContextEnded(_) => FLAGGED_CONTEXT.fetch_add(1, Ordering::Relaxed),
            Overdue::PastTimeout(_) => FLAGGED_TIMEOUT.fetch_add(1, Ordering::Relaxed),
        };
        let held = now.saturating_duration_since(info.acquired);
        tracing::warn!(
            target: "timefuse_leak::resource",
            resource_id = info.id,
            service = info.service(),
            kind = info.kind(),
            location = %info.location,
            held_ms = held.as_millis() as u64,
            request_id = info.request_id().map(RequestId::as_str),
            trace_id = info.trace_id(),
            "apparent resource leak: {:?} of {} acquired at {} {overdue}, held {held:?}",
            info.kind(),
            info.service(),
            info.location,
        );
        info.flag = Some(overdue);
        flagged.push(info);
    }
    flagged
}

/// Every tracked resource still held in the process, oldest first, after a [`sweep`].
///
/// ```
/// let r = timefuse_leak::ResourceScope::new("s").track("snapshot-doc", ());
/// assert!(timefuse_leak::resource::snapshot().iter().any(|i| i.kind() == "snapshot-doc"));
/// # drop(r);
/// ```
pub fn snapshot() -> Vec<ResourceInfo> {
    sweep();
    RESOURCES.snapshot()
}

/// The held resources for which `pred` holds, oldest first, after a [`sweep`]. `pred` runs
/// under a registry lock: keep it short.
///
/// ```
/// let r = timefuse_leak::ResourceScope::new("where-doc").track("k", ());
/// assert_eq!(timefuse_leak::resource::snapshot_where(|i| i.service() == "where-doc").len(), 1);
/// # drop(r);
/// ```
pub fn snapshot_where(pred: impl FnMut(&ResourceInfo) -> bool) -> Vec<ResourceInfo> {
    sweep();
    RESOURCES.snapshot_where(pred)
}

/// The held resources acquired on `runtime`, oldest first, after a [`sweep`]: one test's
/// resources when tests run in parallel.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
/// let mine = timefuse_leak::resource::snapshot_for_runtime(tokio::runtime::Handle::current().id());
/// assert_eq!(mine.len(), 1);
/// # drop(r);
/// # }
/// ```
pub fn snapshot_for_runtime(runtime: tokio::runtime::Id) -> Vec<ResourceInfo> {
    snapshot_where(|r| r.runtime == Some(runtime))
}

/// Number of tracked resources held in the process.
///
/// ```
/// let r = timefuse_leak::ResourceScope::new("s").track("k", ());
/// assert!(timefuse_leak::resource::live_count() >= 1);
/// # drop(r);
/// ```
pub fn live_count() -> usize {
    RESOURCES.len()
}

/// Process-wide counters of the resource registry, for a metrics exporter.
///
/// ```
/// let before = timefuse_leak::resource::metrics();
/// drop(timefuse_leak::ResourceScope::new("s").track("k", ()));
/// let after = timefuse_leak::resource::metrics();
/// assert!(after.acquired_total > before.acquired_total);
/// assert!(after.released_total > before.released_total);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceMetrics {
    /// Resources held now.
    pub live: u64,
    /// Resources ever tracked.
    pub acquired_total: u64,
    /// Resources ever released.
    pub released_total: u64,
    /// Resources flagged because their context ended while they were held.
    pub flagged_after_context_ended_total: u64,
    /// Resources flagged because they were held past their scope timeout.
    pub flagged_past_timeout_total: u64,
    /// Flagged resources that were released afterwards (HikariCP's "previously reported
    /// leaked connection was returned").
    pub released_after_flag_total: u64,
}

impl ResourceMetrics {
    /// All flags: after context end plus past timeout.
    ///
    /// ```
    /// let m = timefuse_leak::resource::metrics();
    /// assert_eq!(m.flagged_total(), m.flagged_after_context_ended_total + m.flagged_past_timeout_total);
    /// ```
    pub fn flagged_total(&self) -> u64 {
        self.flagged_after_context_ended_total + self.flagged_past_timeout_total
    }
}

/// The counters now.
///
/// ```
/// let m = timefuse_leak::resource::metrics();
/// assert!(m.released_total <= m.acquired_total);
/// ```
pub fn metrics() -> ResourceMetrics {
    ResourceMetrics {
        live: RESOURCES.len() as u64,
        acquired_total: ACQUIRED.load(Ordering::Relaxed),
        released_total: RELEASED.load(Ordering::Relaxed),
        flagged_after_context_ended_total: FLAGGED_CONTEXT.load(Ordering::Relaxed),
        flagged_past_timeout_total: FLAGGED_TIMEOUT.load(Ordering::Relaxed),
        released_after_flag_total: RELEASED_AFTER_FLAG.load(Ordering::Relaxed),
    }
}

/// A periodic [`sweep`] on the current runtime, stopped when dropped. Its task is tracked
/// under the name `"timefuse-leak-sweeper"` (ignore that name in leak checks of tests that
/// keep one running).
///
/// # Panics
///
/// Outside a tokio runtime, or if `interval` is zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse_leak::{ResourceScope, resource};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let sweeper = resource::spawn_sweeper(Duration::from_millis(100));
/// let scope = ResourceScope::new("billing").with_timeout(Duration::from_millis(250));
/// let conn = scope.track("pg-connection", ());
/// tokio::time::sleep(Duration::from_millis(400)).await;
/// assert!(conn.info().unwrap().flagged().is_some(), "the sweeper flagged it");
/// sweeper.stop();
/// # }
/// ```
pub fn spawn_sweeper(interval: Duration) -> Sweeper {
    let handle = match Handle::try_current() {
        Ok(handle) => handle,
        Err(e) => panic!("spawn_sweeper called outside a tokio runtime: {e}"),
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let task = handle.spawn(timefuse::task::track("timefuse-leak-sweeper", async move {
        loop {
            ticker.tick().await;
            sweep();
        }
    }));
    Sweeper { task }
}

/// The periodic sweep started by [`spawn_sweeper`]; dropping it stops the sweep.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sweeper = timefuse_leak::resource::spawn_sweeper(std::time::Duration::from_secs(1));
/// drop(sweeper); // stops it
/// # }
/// ```
#[derive(Debug)]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Sweeper {
    /// Stops the sweep (the same as dropping it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// timefuse_leak::resource::spawn_sweeper(std::time::Duration::from_secs(1)).stop();
    /// # }
    /// ```
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
