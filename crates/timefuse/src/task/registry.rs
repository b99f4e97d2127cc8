//! The process-wide registry of live bound tasks, built on a general sharded [`Registry`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::{Cause, Context, RequestId, TraceContext};

/// Number of shards: a power of two, so an id picks its shard with a mask.
const SHARDS: usize = 16;
const SHARD_MASK: u64 = SHARDS as u64 - 1;

/// Hashes the registry's sequential ids for locality: the low bits (which pick the bucket) are
/// the id without its shard bits, so entries registered one after another land in neighbouring
/// buckets and a burst of spawns touches few cache lines; the top 7 bits (the SIMD tag
/// hashbrown compares first) come from a multiplicative mix, so that tags still differ.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this is a fallback that is never taken.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, id: u64) {
        let seq = id >> SHARD_MASK.count_ones();
        let tag = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) & (0x7f << 57);
        self.0 = (seq & !(0x7f << 57)) | tag;
    }
}

type ShardMap<T> = HashMap<u64, T, BuildHasherDefault<IdHasher>>;

/// One shard on its own cache lines, so two threads registering on neighbouring shards do not
/// bounce one line between them.
#[repr(align(128))]
struct Shard<T> {
    map: Mutex<ShardMap<T>>,
}

impl<T> Shard<T> {
    const fn new() -> Self {
        Shard {
            map: Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())),
        }
    }

    /// Locks the shard, ignoring poisoning: no code in this module panics while holding a shard
    /// lock (values are dropped after the lock is released), and a registry must stay usable.
    fn lock(&self) -> MutexGuard<'_, ShardMap<T>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A sharded, lock-per-shard table of live entries, each with a process-unique `u64` id, that
/// can be read as a snapshot ordered oldest first.
///
/// It is the storage behind the task registry ([`snapshot`](crate::task::snapshot)), and is
/// public so that other things with a lifetime (connections, leases, file handles) can be
/// recorded the same way: register on acquire, keep the [`Registration`] next to the resource,
/// and the entry goes away when the registration is dropped.
///
/// Ids come from one counter per registry and grow with every registration, so ascending ids
/// are registration order. An entry lives in shard `id % 16`; every shard has its own
/// [`std::sync::Mutex`], held only to insert, update, remove or clone entries, never across an
/// `.await`. `Registry::new` is `const`, so a registry can be a `static`.
///
/// # Examples
///
/// ```
/// use timefuse::task::Registry;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Lease {
///     id: u64,
///     holder: &'static str,
/// }
///
/// static LEASES: Registry<Lease> = Registry::new();
///
/// let first = LEASES.register_with(|id| Lease { id, holder: "billing" });
/// let second = LEASES.register_with(|id| Lease { id, holder: "search" });
/// let holders: Vec<_> = LEASES.snapshot().into_iter().map(|l| l.holder).collect();
/// assert_eq!(holders, ["billing", "search"], "oldest first");
///
/// drop(first);
/// assert_eq!(LEASES.len(), 1);
/// assert!(second.update(|l| l.holder = "search-v2"));
/// assert_eq!(LEASES.snapshot()[0].holder, "search-v2");
/// ```
pub struct Registry<T> {
    shards: [Shard<T>; SHARDS],
    next_id: AtomicU64,
}

impl<T> Registry<T> {
    /// An empty registry.
    ///
    /// ```
    /// static NAMES: timefuse::task::Registry<&'static str> = timefuse::task::Registry::new();
    /// assert!(NAMES.is_empty());
    /// ```
    pub const fn new() -> Self {
        Registry {
            shards: [const { Shard::new() }; SHARDS],
            next_id: AtomicU64::new(1),
        }
    }

    fn shard(&self, id: u64) -> &Shard<T> {
        // The mask keeps the index below SHARDS, so the cast cannot truncate.
        &self.shards[(id & SHARD_MASK) as usize]
    }

    /// Records `value` under a fresh id until the returned [`Registration`] is dropped.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let reg = registry.register("conn-1");
    /// assert_eq!(registry.get(reg.id()), Some("conn-1"));
    /// drop(reg);
    /// assert!(registry.is_empty());
    /// ```
    pub fn register(&self, value: T) -> Registration<'_, T> {
        self.register_with(|_| value)
    }

    /// Records the value `make` builds from the fresh id, until the returned [`Registration`]
    /// is dropped. `make` runs before any lock is taken.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let reg = registry.register_with(|id| format!("entry #{id}"));
    /// assert_eq!(registry.get(reg.id()), Some(format!("entry #{}", reg.id())));
    /// ```
    pub fn register_with(&self, make: impl FnOnce(u64) -> T) -> Registration<'_, T> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let value = make(id);
        let displaced = self.shard(id).lock().insert(id, value);
        debug_assert!(displaced.is_none(), "registry ids are never reused");
        Registration { registry: self, id }
    }

    /// Applies `f` to the entry `id` in place. Returns false if there is no such entry (it was
    /// never registered or has been removed).
    ///
    /// Keep `f` short: it runs under the shard lock, which is not re-entrant, so `f` must not
    /// call back into the registry.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let reg = registry.register(1_u32);
    /// assert!(registry.update(reg.id(), |n| *n += 1));
    /// assert_eq!(registry.get(reg.id()), Some(2));
    /// let id = reg.id();
    /// drop(reg);
    /// assert!(!registry.update(id, |n| *n += 1));
    /// ```
    pub fn update(&self, id: u64, f: impl FnOnce(&mut T)) -> bool {
        match self.shard(id).lock().get_mut(&id) {
            Some(value) => {
                f(value);
                true
            }
            None => false,
        }
    }

    /// A clone of the entry `id`, if it is live.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let reg = registry.register('x');
    /// assert_eq!(registry.get(reg.id()), Some('x'));
    /// assert_eq!(registry.get(reg.id() + 1), None);
    /// ```
    pub fn get(&self, id: u64) -> Option<T>
    where
        T: Clone,
    {
        self.shard(id).lock().get(&id).cloned()
    }

    fn remove(&self, id: u64) -> Option<T> {
        let mut shard = self.shard(id).lock();
        shard.remove(&id)
    }

    /// Number of live entries. The shards are counted one after another, so with concurrent
    /// registrations the total is approximate.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let _a = registry.register(());
    /// let _b = registry.register(());
    /// assert_eq!(registry.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// True if no entry is live.
    ///
    /// ```
    /// assert!(timefuse::task::Registry::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.lock().is_empty())
    }

    /// Number of live entries for which `pred` holds. `pred` runs under a shard lock: keep it
    /// short, and do not call back into the registry from it.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let _regs: Vec<_> = (1..=5).map(|n| registry.register(n)).collect();
    /// assert_eq!(registry.count_where(|n| n % 2 == 1), 3);
    /// ```
    pub fn count_where(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().values().filter(|v| pred(v)).count())
            .sum()
    }

    /// Clones of all live entries, oldest (lowest id) first.
    ///
    /// Each shard is locked in turn, so the result is a consistent view of every shard but not
    /// an atomic view of the whole registry.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let _regs: Vec<_> = ["a", "b", "c"].into_iter().map(|s| registry.register(s)).collect();
    /// assert_eq!(registry.snapshot(), ["a", "b", "c"]);
    /// ```
    pub fn snapshot(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.snapshot_where(|_| true)
    }

    /// Clones of the live entries for which `pred` holds, oldest first. `pred` runs under a
    /// shard lock: keep it short, and do not call back into the registry from it (the lock is
    /// not re-entrant).
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let _regs: Vec<_> = (1..=6).map(|n| registry.register(n)).collect();
    /// assert_eq!(registry.snapshot_where(|n| n % 3 == 0), [3, 6]);
    /// ```
    pub fn snapshot_where(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<T>
    where
        T: Clone,
    {
        let mut entries: Vec<(u64, T)> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock();
            entries.extend(
                shard
                    .iter()
                    .filter(|(_, v)| pred(v))
                    .map(|(id, v)| (*id, v.clone())),
            );
        }
        entries.sort_unstable_by_key(|(id, _)| *id);
        entries.into_iter().map(|(_, v)| v).collect()
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry::new()
    }
}

impl<T> fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("len", &self.len())
            .field("next_id", &self.next_id.load(Ordering::Relaxed))
            .finish()
    }
}

/// Keeps one [`Registry`] entry alive; dropping it removes the entry.
///
/// ```
/// let registry = timefuse::task::Registry::new();
/// {
///     let reg = registry.register("temporary");
///     assert_eq!(registry.len(), 1);
///     assert!(reg.id() > 0);
/// }
/// assert!(registry.is_empty());
/// ```
#[must_use = "dropping the registration removes the entry at once"]
pub struct Registration<'a, T> {
    registry: &'a Registry<T>,
    id: u64,
}

impl<T> Registration<'_, T> {
    /// The entry's id, unique within its registry.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let (a, b) = (registry.register(()), registry.register(()));
    /// assert!(a.id() < b.id());
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Applies `f` to the entry in place (see [`Registry::update`]). Returns false only if the
    /// entry was removed by other means, which this module never does.
    ///
    /// ```
    /// let registry = timefuse::task::Registry::new();
    /// let reg = registry.register(String::from("idle"));
    /// reg.update(|state| *state = "busy".into());
    /// assert_eq!(registry.get(reg.id()).as_deref(), Some("busy"));
    /// ```
    pub fn update(&self, f: impl FnOnce(&mut T)) -> bool {
        self.registry.update(self.id, f)
    }
}

impl<T> Drop for Registration<'_, T> {
    fn drop(&mut self) {
        // The value is dropped here, after the shard lock is released: dropping it may run
        // arbitrary code (a context's last handle unlinks its cancel node).
        drop(self.registry.remove(self.id));
    }
}

impl<T> fmt::Debug for Registration<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish()
    }
}

/// A task name that clones without allocating.
#[derive(Clone)]
pub(crate) enum TaskName {
    Static(&'static str),
    Shared(Arc<str>),
}

impl TaskName {
    pub(crate) fn new(name: Cow<'static, str>) -> TaskName {
        match name {
            Cow::Borrowed(s) => TaskName::Static(s),
            Cow::Owned(s) => TaskName::Shared(Arc::from(s)),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            TaskName::Static(s) => s,
            TaskName::Shared(s) => s,
        }
    }
}

/// How a registered task relates to its context.
///
/// ```
/// use timefuse::Context;
/// use timefuse::task::{self, TaskKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, _guard) = Context::background().with_cancel();
/// let handle = ctx.spawn_named("kind-doc", std::future::pending::<()>());
/// let info = task::snapshot_where(|t| t.name() == Some("kind-doc")).pop().unwrap();
/// assert_eq!(info.kind(), TaskKind::Bound);
/// handle.abort();
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// Raced against its context: dropped as soon as the context ends
    /// ([`Context::spawn`], [`TaskScope::spawn_bound`](crate::task::TaskScope::spawn_bound)).
    Bound,
    /// Runs under its context without being raced: it is expected to watch the context and
    /// return on its own ([`TaskScope::spawn`](crate::task::TaskScope::spawn),
    /// [`track`](crate::task::track)).
    Cooperative,
}

/// One live task as recorded in the registry: who spawned it, where, when, for which request,
/// and a handle to its context, read at the time of the call.
///
/// Obtained from [`snapshot`](crate::task::snapshot) and its variants, and in a
/// [`ShutdownReport`](crate::task::ShutdownReport). The [`Display`](fmt::Display) form is one
/// line meant for leak reports.
///
/// # Examples
///
/// ```
/// use timefuse::task;
/// use timefuse::{Context, RequestId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = Context::background().with_request_id(RequestId::new("req-9").unwrap());
/// let (ctx, guard) = ctx.with_cancel();
/// let handle = ctx.spawn_named("info-doc", std::future::pending::<()>());
///
/// let info = task::snapshot_where(|t| t.name() == Some("info-doc")).pop().unwrap();
/// assert_eq!(info.request_id().map(|r| r.as_str()), Some("req-9"));
/// assert_eq!(info.location().file(), file!());
/// assert!(!info.context_ended());
///
/// guard.cancel();
/// assert!(handle.await.unwrap().is_err());
/// assert!(task::snapshot_where(|t| t.name() == Some("info-doc")).is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct TaskInfo {
    pub(crate) id: u64,
    pub(crate) tokio_id: Option<tokio::task::Id>,
    pub(crate) name: Option<TaskName>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) runtime: Option<tokio::runtime::Id>,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) ended: Option<Instant>,
    pub(crate) kind: TaskKind,
    pub(crate) ctx: Context,
}

impl TaskInfo {
    pub(crate) fn new(
        id: u64,
        ctx: Context,
        name: Option<TaskName>,
        location: &'static Location<'static>,
        runtime: Option<tokio::runtime::Id>,
        kind: TaskKind,
    ) -> TaskInfo {
        TaskInfo {
            id,
            tokio_id: None,
            name,
            location,
            runtime,
            started: Instant::now(),
            started_at: SystemTime::now(),
            ended: None,
            kind,
            ctx,
        }
    }

    /// The timefuse task id: unique in the process, and growing with every spawn, so a lower
    /// id means an older task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = timefuse::Context::background();
    /// let (a, b) = (ctx.spawn_named("id-a", async {}), ctx.spawn_named("id-b", async {}));
    /// let infos = timefuse::task::snapshot_where(|t| t.name().is_some_and(|n| n.starts_with("id-")));
    /// assert!(infos[0].id() < infos[1].id());
    /// # let _ = (a.await, b.await);
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Tokio's id for the task ([`tokio::task::Id`]), once known. It is filled in right after
    /// the spawn, so it can be missing only in the instant between the two; for a
    /// [`track`](crate::task::track)ed future it is filled in at its first poll.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = timefuse::Context::background().spawn_named("tokio-id-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("tokio-id-doc")).pop().unwrap();
    /// assert_eq!(info.tokio_id(), Some(handle.id()));
    /// handle.abort();
    /// # }
    /// ```
    pub fn tokio_id(&self) -> Option<tokio::task::Id> {
        self.tokio_id
    }

    /// The name given at spawn, if any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = timefuse::Context::background().spawn_named("name-doc", std::future::pending::<()>());
    /// assert_eq!(timefuse::task::snapshot_where(|t| t.name() == Some("name-doc")).len(), 1);
    /// handle.abort();
    /// # }
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(TaskName::as_str)
    }

    /// Where the task was spawned: the caller of [`Context::spawn`] and friends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (handle, line) = (timefuse::Context::background().spawn_named("loc-doc", std::future::pending::<()>()), line!());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("loc-doc")).pop().unwrap();
    /// assert_eq!((info.location().file(), info.location().line()), (file!(), line));
    /// handle.abort();
    /// # }
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// The tokio runtime the task was spawned on ([`tokio::runtime::Handle::id`]); `None` only
    /// for a [`track`](crate::task::track)ed future created outside a runtime and not yet
    /// polled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = timefuse::Context::background().spawn_named("rt-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("rt-doc")).pop().unwrap();
    /// assert_eq!(info.runtime(), Some(tokio::runtime::Handle::current().id()));
    /// handle.abort();
    /// # }
    /// ```
    pub fn runtime(&self) -> Option<tokio::runtime::Id> {
        self.runtime
    }

    /// When the task was spawned, on tokio's clock (paused and advanced with it in tests).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let before = tokio::time::Instant::now();
    /// let handle = timefuse::Context::background().spawn_named("started-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("started-doc")).pop().unwrap();
    /// assert!(info.started() >= before);
    /// handle.abort();
    /// # }
    /// ```
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the task was spawned, on the wall clock (for logs and dumps).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = timefuse::Context::background().spawn_named("wall-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("wall-doc")).pop().unwrap();
    /// assert!(info.started_at() <= std::time::SystemTime::now());
    /// handle.abort();
    /// # }
    /// ```
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// How long the task has been alive: until now for a live task, and until it was joined
    /// for a task in a [`ShutdownReport`](crate::task::ShutdownReport).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let handle = timefuse::Context::background().spawn_named("age-doc", std::future::pending::<()>());
    /// tokio::time::sleep(Duration::from_secs(3)).await;
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("age-doc")).pop().unwrap();
    /// assert!(info.age() >= Duration::from_secs(3));
    /// handle.abort();
    /// # }
    /// ```
    pub fn age(&self) -> Duration {
        self.ended
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started)
    }

    /// Whether the task is raced against its context or cooperates with it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = timefuse::Context::background().spawn_named("kind-doc2", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("kind-doc2")).pop().unwrap();
    /// assert_eq!(info.kind(), timefuse::task::TaskKind::Bound);
    /// handle.abort();
    /// # }
    /// ```
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// The context the task runs under. Its state is read live: it may have ended since the
    /// snapshot was taken.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = timefuse::Context::background().with_value(5_u16);
    /// let handle = ctx.spawn_named("ctx-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("ctx-doc")).pop().unwrap();
    /// assert_eq!(info.context().value::<u16>(), Some(&5));
    /// handle.abort();
    /// # }
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// True if the task's context has ended. A task still alive after its context ended is the
    /// leak signal: a cooperative task that ignores its context, or a bound task stuck in a
    /// blocking call.
    ///
    /// ```
    /// use timefuse::{Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// scope.spawn("deaf", std::future::pending::<()>()); // never looks at its context
    /// scope.cancel(timefuse::Cause::Shutdown);
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("deaf")).pop().unwrap();
    /// assert!(info.context_ended(), "alive after its context ended");
    /// # }
    /// ```
    pub fn context_ended(&self) -> bool {
        self.ctx.is_done()
    }

    /// Why the task's context ended, if it has.
    ///
    /// ```
    /// use timefuse::{Cause, Context, task::TaskScope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut scope = TaskScope::new(&Context::background());
    /// scope.spawn("deaf-cause", std::future::pending::<()>());
    /// scope.cancel(Cause::Shutdown);
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("deaf-cause")).pop().unwrap();
    /// assert_eq!(info.cause(), Some(Cause::Shutdown));
    /// # }
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.ctx.cause()
    }

    /// The request id of the task's context, if any.
    ///
    /// ```
    /// use timefuse::{Context, RequestId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_request_id(RequestId::new("req-rid").unwrap());
    /// let handle = ctx.spawn_named("rid-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("rid-doc")).pop().unwrap();
    /// assert_eq!(info.request_id().unwrap().as_str(), "req-rid");
    /// handle.abort();
    /// # }
    /// ```
    pub fn request_id(&self) -> Option<&RequestId> {
        self.ctx.request_id()
    }

    /// The W3C trace context of the task's context, if any.
    ///
    /// ```
    /// use timefuse::{Context, TraceContext};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_trace(TraceContext::new([0xab; 16], [1; 8], 1));
    /// let handle = ctx.spawn_named("trace-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("trace-doc")).pop().unwrap();
    /// assert_eq!(info.trace().unwrap().trace_id(), [0xab; 16]);
    /// handle.abort();
    /// # }
    /// ```
    pub fn trace(&self) -> Option<&TraceContext> {
        self.ctx.trace()
    }

    /// The trace id of the task's context as 32 lowercase hex digits, if it carries one.
    ///
    /// ```
    /// use timefuse::{Context, TraceContext};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_trace(TraceContext::new([0x0f; 16], [1; 8], 1));
    /// let handle = ctx.spawn_named("trace-hex-doc", std::future::pending::<()>());
    /// let info = timefuse::task::snapshot_where(|t| t.name() == Some("trace-hex-doc")).pop().unwrap();
    /// assert_eq!(info.trace_id().as_deref(), Some("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"));
    /// handle.abort();
    /// # }
    /// ```
    pub fn trace_id(&self) -> Option<String> {
        self.trace().map(TraceContext::trace_id_hex)
    }
}

impl fmt::Debug for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TaskInfo");
        d.field("id", &self.id);
        if let Some(tokio_id) = self.tokio_id {
            d.field("tokio_id", &tokio_id);
        }
        d.field("name", &self.name());
        d.field("location", &format_args!("{}", self.location));
        if let Some(rt) = self.runtime {
            d.field("runtime", &rt);
        }
        d.field("kind", &self.kind);
        d.field("age", &self.age());
        if let Some(id) = self.request_id() {
            d.field("request_id", &id.as_str());
        }
        if let Some(trace) = self.trace_id() {
            d.field("trace_id", &trace);
        }
        d.field("context_ended", &self.context_ended());
        if let Some(cause) = self.cause() {
            d.field("cause", &cause);
        }
        d.finish_non_exhaustive()
    }
}

/// One line: `task #7 "name" spawned at src/x.rs:42:9, age 1.2s, request r-1, trace ab…,
/// context ended (deadline exceeded)`.
impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task #{}", self.id)?;
        if let Some(name) = self.name() {
            write!(f, " {name:?}")?;
        }
        write!(f, " spawned at {}, age {:?}", self.location, self.age())?;
        if let Some(id) = self.request_id() {
            write!(f, ", request {}", id.as_str())?;
        }
        if let Some(trace) = self.trace_id() {
            write!(f, ", trace {trace}")?;
        }
        match self.cause() {
            Some(cause) => write!(f, ", context ended ({cause})"),
            None => f.write_str(", context live"),
        }
    }
}

/// The process-wide registry of live bound tasks.
pub(crate) static TASKS: Registry<TaskInfo> = Registry::new();

/// Every live registered task in the process, oldest first.
///
/// Tests run in parallel share this registry: filter by runtime with
/// [`snapshot_for_runtime`] to see only one test's tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = timefuse::Context::background().spawn_named("snapshot-doc", std::future::pending::<()>());
/// assert!(timefuse::task::snapshot().iter().any(|t| t.name() == Some("snapshot-doc")));
/// handle.abort();
/// # }
/// ```
pub fn snapshot() -> Vec<TaskInfo> {
    TASKS.snapshot()
}

/// The live registered tasks for which `pred` holds, oldest first. `pred` runs under a shard
/// lock: keep it short, and do not call back into the registry from it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = timefuse::Context::background().spawn_named("where-doc", std::future::pending::<()>());
/// let found = timefuse::task::snapshot_where(|t| t.name() == Some("where-doc"));
/// assert_eq!(found.len(), 1);
/// handle.abort();
/// # }
/// ```
pub fn snapshot_where(pred: impl FnMut(&TaskInfo) -> bool) -> Vec<TaskInfo> {
    TASKS.snapshot_where(pred)
}

/// The live registered tasks spawned on `runtime`, oldest first: one test's tasks when tests
/// run in parallel, each on its own runtime.
///
/// ```
/// use tokio::runtime::Handle;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = timefuse::Context::background().spawn(std::future::pending::<()>());
/// let mine = timefuse::task::snapshot_for_runtime(Handle::current().id());
/// assert_eq!(mine.len(), 1);
/// handle.abort();
/// # }
/// ```
pub fn snapshot_for_runtime(runtime: tokio::runtime::Id) -> Vec<TaskInfo> {
    TASKS.snapshot_where(|t| t.runtime == Some(runtime))
}

/// Number of live registered tasks in the process.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = timefuse::Context::background().spawn(std::future::pending::<()>());
/// assert!(timefuse::task::live_count() >= 1);
/// handle.abort();
/// # }
/// ```
pub fn live_count() -> usize {
    TASKS.len()
}

/// Number of live registered tasks spawned on `runtime`.
///
/// ```
/// use tokio::runtime::Handle;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let rt = Handle::current().id();
/// let handle = timefuse::Context::background().spawn(async {});
/// assert_eq!(timefuse::task::live_count_for_runtime(rt), 1);
/// handle.await.unwrap().unwrap();
/// assert_eq!(timefuse::task::live_count_for_runtime(rt), 0);
/// # }
/// ```
pub fn live_count_for_runtime(runtime: tokio::runtime::Id) -> usize {
    TASKS.count_where(|t| t.runtime == Some(runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_shards_and_buckets() {
        let registry = Registry::new();
        let regs: Vec<_> = (0..1000).map(|n| registry.register(n)).collect();
        for shard in &registry.shards {
            assert!(shard.lock().len() >= 1000 / SHARDS - 1);
        }
        assert_eq!(registry.snapshot(), (0..1000).collect::<Vec<_>>());
        drop(regs);
        assert!(registry.is_empty());
    }

    #[test]
    fn hasher_distinguishes_keys_of_one_shard() {
        let hash = |id: u64| {
            let mut h = IdHasher::default();
            h.write_u64(id);
            h.finish()
        };
        let hashes: std::collections::HashSet<u64> = (0..64).map(|k| hash(k * 16 + 3)).collect();
        assert_eq!(hashes.len(), 64);
        let low: std::collections::HashSet<u64> = (0..64).map(|k| hash(k * 16 + 3) & 63).collect();
        assert_eq!(
            low.len(),
            64,
            "low bits pick distinct buckets for sequential ids"
        );
    }
}
