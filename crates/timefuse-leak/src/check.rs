//! The leak check for tests: [`LeakGuard`], [`LeakOptions`], [`LeakReport`] and
//! [`verify_no_leaks`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use timefuse::task::{self, TaskInfo};
use tokio::runtime::Handle;

use crate::resource::{self, ResourceInfo};

/// goleak's schedule: sleep `1 µs << attempt`, capped at 100 ms, for up to 20 retries.
const DEFAULT_RETRIES: u32 = 20;
const FIRST_BACKOFF: Duration = Duration::from_micros(1);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// What the leak check ignores and how long it waits, built with chained calls.
///
/// The defaults report everything that is alive on the test's runtime, and retry 20 times with
/// a backoff from 1 µs doubling to 100 ms (about 0.43 s in all), as goleak does.
///
/// # Examples
///
/// ```
/// use timefuse_leak::{LeakGuard, LeakOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let options = LeakOptions::new()
///     .ignore_name("metrics-flusher")            // a task name, or a resource kind
///     .ignore_location("src/background.rs")      // a file, or a file:line prefix
///     .ignore_current()                          // what is alive now (goleak's IgnoreCurrent)
///     .allow_unbound(1);                         // one plain tokio::spawn, e.g. a test server
/// let guard = LeakGuard::with_options(options);
/// timefuse::Context::background().spawn_named("metrics-flusher", std::future::pending::<()>());
/// assert!(guard.verify().await.is_ok());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LeakOptions {
    ignore_names: Vec<Cow<'static, str>>,
    ignore_locations: Vec<Cow<'static, str>>,
    ignore_current: bool,
    allow_unbound: usize,
    check_unbound: bool,
    check_resources: bool,
    retries: u32,
    max_backoff: Duration,
}

impl Default for LeakOptions {
    fn default() -> Self {
        LeakOptions {
            ignore_names: Vec::new(),
            ignore_locations: Vec::new(),
            ignore_current: false,
            allow_unbound: 0,
            check_unbound: true,
            check_resources: true,
            retries: DEFAULT_RETRIES,
            max_backoff: MAX_BACKOFF,
        }
    }
}

impl LeakOptions {
    /// The defaults: nothing ignored, 20 retries, backoff capped at 100 ms.
    ///
    /// ```
    /// let options = timefuse_leak::LeakOptions::new();
    /// assert_eq!(options.retries(), 20);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Tasks named `name`, and tracked resources of kind `name`, are not leaks. May be repeated.
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().ignore_name("cache-refresher"));
    /// let handle = timefuse::Context::background()
    ///     .spawn_named("cache-refresher", std::future::pending::<()>());
    /// assert!(guard.verify().await.is_ok());
    /// # handle.abort();
    /// # }
    /// ```
    pub fn ignore_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.ignore_names.push(name.into());
        self
    }

    /// Tasks spawned, and resources acquired, at a location that starts with `prefix` are not
    /// leaks. A location reads `file:line:column` (`src/pool.rs:42:17`), so `prefix` may be a
    /// directory, a file, or a file and line; `"src/pool.rs:4"` does not match line 42. May be
    /// repeated. (goleak's `IgnoreTopFunction`, by spawn site.)
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().ignore_location(file!()));
    /// let handle = timefuse::Context::background().spawn(std::future::pending::<()>());
    /// assert!(guard.verify().await.is_ok());
    /// # handle.abort();
    /// # }
    /// ```
    pub fn ignore_location(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.ignore_locations.push(prefix.into());
        self
    }

    /// Ignore the tasks and resources alive when the guard is taken, and as many unbound tasks
    /// as were alive then (goleak's `IgnoreCurrent`). For checks inside a long-lived runtime;
    /// a `#[tokio::test]` starts with an empty one.
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let old = timefuse::Context::background().spawn(std::future::pending::<()>());
    /// let guard = LeakGuard::with_options(LeakOptions::new().ignore_current());
    /// assert!(guard.verify().await.is_ok(), "`old` was there before");
    /// # old.abort();
    /// # }
    /// ```
    pub fn ignore_current(mut self) -> Self {
        self.ignore_current = true;
        self
    }

    /// Up to `n` unbound tokio tasks (spawned without timefuse) may stay alive: a test server
    /// that runs until the runtime shuts down, say.
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().allow_unbound(1));
    /// let server = tokio::spawn(std::future::pending::<()>());
    /// assert!(guard.verify().await.is_ok());
    /// # server.abort();
    /// # }
    /// ```
    pub fn allow_unbound(mut self, n: usize) -> Self {
        self.allow_unbound = n;
        self
    }

    /// Do not count unbound tokio tasks at all (layer (b) of the check off).
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().skip_unbound());
    /// let h = tokio::spawn(std::future::pending::<()>());
    /// assert!(guard.verify().await.is_ok());
    /// # h.abort();
    /// # }
    /// ```
    pub fn skip_unbound(mut self) -> Self {
        self.check_unbound = false;
        self
    }

    /// Do not report tracked resources still held.
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions, ResourceScope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().skip_resources());
    /// let conn = ResourceScope::new("billing").track("conn", ());
    /// assert!(guard.verify().await.is_ok());
    /// # drop(conn);
    /// # }
    /// ```
    pub fn skip_resources(mut self) -> Self {
        self.check_resources = false;
        self
    }

    /// How many times to look again before calling something a leak (default 20). Zero checks
    /// once, without waiting.
    ///
    /// ```
    /// let options = timefuse_leak::LeakOptions::new().with_retries(3);
    /// assert_eq!(options.retries(), 3);
    /// ```
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The longest single wait between two looks (default 100 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = timefuse_leak::LeakOptions::new().with_max_backoff(Duration::from_millis(10));
    /// # let _ = options;
    /// ```
    pub fn with_max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// The number of retries.
    ///
    /// ```
    /// assert_eq!(timefuse_leak::LeakOptions::default().retries(), 20);
    /// ```
    pub fn retries(&self) -> u32 {
        self.retries
    }

    fn ignores_name(&self, name: Option<&str>) -> bool {
        name.is_some_and(|n| self.ignore_names.iter().any(|i| i == n))
    }

    fn ignores_location(&self, location: &Location<'_>) -> bool {
        if self.ignore_locations.is_empty() {
            return false;
        }
        let text = location.to_string();
        self.ignore_locations
            .iter()
            .any(|prefix| location_matches(&text, prefix))
    }
}

/// True if `location` (`file:line:col`) starts with `prefix` at a boundary: a prefix ending in
/// a digit does not match a longer number (`x.rs:4` does not match `x.rs:42:1`).
pub(crate) fn location_matches(location: &str, prefix: &str) -> bool {
    let Some(rest) = location.strip_prefix(prefix) else {
        return false;
    };
    let ends_in_digit = prefix.chars().last().is_some_and(|c| c.is_ascii_digit());
    !(ends_in_digit && rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// What the check found on one look.
struct Found {
    tasks: Vec<TaskInfo>,
    resources: Vec<ResourceInfo>,
    unbound: usize,
}

impl Found {
    fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.resources.is_empty() && self.unbound == 0
    }
}

/// A leak check taken at the start of a test and verified at its end: goleak's
/// `defer goleak.VerifyNone(t)`, for the current tokio runtime only.
///
/// [`verify`](LeakGuard::verify) looks, with retries, for
///
/// 1. tasks spawned through timefuse ([`Context::spawn`](timefuse::Context::spawn),
///    [`TaskScope`](timefuse::task::TaskScope), [`task::track`]) on this runtime and still alive,
///    each with its name, spawn location, age, request and trace id;
/// 2. other tokio tasks still alive on this runtime, as a count (tokio's
///    `RuntimeMetrics::num_alive_tasks`, which names nobody);
/// 3. [tracked resources](crate::Tracked) acquired on this runtime and still held.
///
/// Because every `#[tokio::test]` has its own runtime, tests running in parallel do not see
/// each other's tasks. With `--cfg tokio_unstable` and the `taskdump` feature, the report also
/// says where each leaked task is stuck.
///
/// # Examples
///
/// ```
/// use timefuse::{Context, RequestId};
/// use timefuse_leak::LeakGuard;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let guard = LeakGuard::start();
/// let ctx = Context::background().with_request_id(RequestId::new("req-7").unwrap());
/// let leaked = ctx.spawn_named("poller", std::future::pending::<()>());
///
/// let report = guard.verify().await.unwrap_err();
/// assert_eq!(report.tasks()[0].name(), Some("poller"));
/// assert!(report.to_string().contains("request req-7"));
/// # leaked.abort();
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a leak guard checks nothing until it is verified"]
pub struct LeakGuard {
    options: LeakOptions,
    runtime: tokio::runtime::Id,
    before_tasks: HashSet<u64>,
    before_resources: HashSet<u64>,
    before_unbound: usize,
}

impl LeakGuard {
    /// Takes the guard with the default [`LeakOptions`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// timefuse::Context::background().spawn(async {}).await.unwrap().unwrap();
    /// guard.verify().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn start() -> LeakGuard {
        LeakGuard::with_options(LeakOptions::default())
    }

    /// Takes the guard with `options`; with [`ignore_current`](LeakOptions::ignore_current), it
    /// remembers what is alive now.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().with_retries(5));
    /// guard.verify().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn with_options(options: LeakOptions) -> LeakGuard {
        let handle = match Handle::try_current() {
            Ok(handle) => handle,
            Err(e) => panic!("LeakGuard taken outside a tokio runtime: {e}"),
        };
        let runtime = handle.id();
        let mut guard = LeakGuard {
            options,
            runtime,
            before_tasks: HashSet::new(),
            before_resources: HashSet::new(),
            before_unbound: 0,
        };
        if guard.options.ignore_current {
            guard.before_tasks = task::snapshot_for_runtime(runtime)
                .iter()
                .map(TaskInfo::id)
                .collect();
            guard.before_resources = resource::snapshot_for_runtime(runtime)
                .iter()
                .map(ResourceInfo::id)
                .collect();
            guard.before_unbound = unbound_now(&handle, runtime);
        }
        guard
    }

    /// The runtime this guard watches.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// assert_eq!(guard.runtime(), tokio::runtime::Handle::current().id());
    /// # }
    /// ```
    pub fn runtime(&self) -> tokio::runtime::Id {
        self.runtime
    }

    /// Looks for leaks once, without waiting.
    fn look(&self, handle: &Handle) -> Found {
        let current_task = tokio::task::try_id();
        let all_tasks = task::snapshot_for_runtime(self.runtime);
        // Every tokio task timefuse knows of on this runtime, leak or not, is not "unbound".
        let known: HashSet<tokio::task::Id> =
            all_tasks.iter().filter_map(TaskInfo::tokio_id).collect();
        let tasks: Vec<TaskInfo> = all_tasks
            .into_iter()
            .filter(|t| {
                !self.before_tasks.contains(&t.id())
                    && t.tokio_id().is_none_or(|id| Some(id) != current_task)
                    && !self.options.ignores_name(t.name())
                    && !self.options.ignores_location(t.location())
            })
            .collect();
        let resources = if self.options.check_resources {
            resource::snapshot_for_runtime(self.runtime)
                .into_iter()
                .filter(|r| {
                    !self.before_resources.contains(&r.id())
                        && !self.options.ignores_name(Some(r.kind()))
                        && !self.options.ignores_location(r.location())
                })
                .collect()
        } else {
            Vec::new()
        };
        let unbound = if self.options.check_unbound {
            let alive = handle.metrics().num_alive_tasks();
            // The task calling verify, if it is one and not a timefuse task.
            let me = usize::from(current_task.is_some_and(|id| !known.contains(&id)));
            let allowed = self.options.allow_unbound
                + me
                + if self.options.ignore_current {
                    self.before_unbound
                } else {
                    0
                };
            alive.saturating_sub(known.len()).saturating_sub(allowed)
        } else {
            0
        };
        Found {
            tasks,
            resources,
            unbound,
        }
    }

    /// Verifies that nothing leaked: looks, and while something is found, waits (1 µs doubling
    /// to 100 ms) and looks again, up to the retry count; then reports what is left.
    ///
    /// Needs the runtime's timer (`#[tokio::test]` enables it). With paused time the waits
    /// advance the paused clock.
    ///
    /// # Panics
    ///
    /// Outside the runtime the guard was taken on.
    ///
    /// # Examples
    ///
    /// ```
    /// use timefuse_leak::LeakGuard;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = LeakGuard::start();
    /// let stray = tokio::spawn(std::future::pending::<()>());
    /// let report = guard.verify().await.unwrap_err();
    /// assert_eq!(report.unbound_tasks(), 1);
    /// assert!(report.to_string().contains("1 unbound task still alive"));
    /// # stray.abort();
    /// # }
    /// ```
    pub async fn verify(self) -> Result<(), LeakReport> {
        let handle = Handle::current();
        assert_eq!(
            handle.id(),
            self.runtime,
            "LeakGuard verified on another runtime than the one it was taken on"
        );
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            let found = self.look(&handle);
            if found.is_empty() {
                return Ok(());
            }
            if attempt >= self.options.retries {
                return Err(self.report(found, attempt, waited).await);
            }
            let backoff = FIRST_BACKOFF
                .saturating_mul(1_u32.checked_shl(attempt).unwrap_or(u32::MAX))
                .min(self.options.max_backoff);
            tokio::time::sleep(backoff).await;
            waited += backoff;
            attempt += 1;
        }
    }

    /// [`verify`](LeakGuard::verify), panicking with the report on a leak: for tests.
    ///
    /// # Panics
    ///
    /// If anything leaked, with the [`LeakReport`] as the message.
    ///
    /// ```should_panic
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// timefuse::Context::background().spawn_named("stuck", std::future::pending::<()>());
    /// guard.verify_or_panic().await; // panics: task "stuck" leaked
    /// # }
    /// ```
    pub async fn verify_or_panic(self) {
        if let Err(report) = self.verify().await {
            panic!("{report}");
        }
    }

    async fn report(&self, found: Found, attempts: u32, waited: Duration) -> LeakReport {
        let Found {
            mut tasks,
            mut resources,
            unbound,
        } = found;
        // "Alive after its context ended" first: the strongest signal. Stable: oldest first
        // within each group.
        tasks.sort_by_key(|t| !t.context_ended());
        resources.sort_by_key(|r| !r.context_ended());
        #[cfg_attr(
            not(all(feature = "taskdump", tokio_unstable, target_os = "linux")),
            allow(unused_mut)
        )]
        let mut report = LeakReport {
            runtime: Some(self.runtime),
            tasks,
            resources,
            unbound,
            attempts,
            waited,
            traces: Vec::new(),
        };
        #[cfg(all(feature = "taskdump", tokio_unstable, target_os = "linux"))]
        {
            report.traces = crate::taskdump::traces().await;
        }
        report
    }
}

/// Verifies, with retries, that nothing timefuse knows of is alive on the current runtime:
/// no task spawned through timefuse, no other tokio task, no tracked resource. For a check at
/// the end of a test that did not take a [`LeakGuard`] at its start.
///
/// # Panics
///
/// Outside a tokio runtime.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = timefuse::Context::background().spawn(async { 1 + 1 });
/// assert_eq!(handle.await.unwrap(), Ok(2));
/// timefuse_leak::verify_no_leaks().await.unwrap();
/// # }
/// ```
pub async fn verify_no_leaks() -> Result<(), LeakReport> {
    LeakGuard::start().verify().await
}

/// [`verify_no_leaks`] with options.
///
/// # Panics
///
/// Outside a tokio runtime.
///
/// ```
/// use timefuse_leak::LeakOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let h = timefuse::Context::background().spawn_named("daemon", std::future::pending::<()>());
/// timefuse_leak::verify_no_leaks_with(LeakOptions::new().ignore_name("daemon")).await.unwrap();
/// # h.abort();
/// # }
/// ```
pub async fn verify_no_leaks_with(options: LeakOptions) -> Result<(), LeakReport> {
    LeakGuard::with_options(options).verify().await
}

fn unbound_now(handle: &Handle, runtime: tokio::runtime::Id) -> usize {
    let known: HashSet<tokio::task::Id> = task::snapshot_for_runtime(runtime)
        .iter()
        .filter_map(TaskInfo::tokio_id)
        .collect();
    handle
        .metrics()
        .num_alive_tasks()
        .saturating_sub(known.len())
}

/// What a failed leak check found: the tasks and resources still alive on the test's runtime
/// after the last retry, and how many unbound tokio tasks.
///
/// Its [`Display`](fmt::Display) form is the failure message: one block per leaked task, like
/// a panic report, "alive after its context ended" first.
///
/// # Examples
///
/// ```
/// use timefuse_leak::LeakGuard;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let guard = LeakGuard::start();
/// let h = timefuse::Context::background().spawn_named("forgotten", std::future::pending::<()>());
/// let report = guard.verify().await.unwrap_err();
/// assert!(!report.is_empty());
/// assert_eq!(report.tasks().len(), 1);
/// assert!(report.to_string().contains("task #"));
/// # h.abort();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LeakReport {
    runtime: Option<tokio::runtime::Id>,
    tasks: Vec<TaskInfo>,
    resources: Vec<ResourceInfo>,
    unbound: usize,
    attempts: u32,
    waited: Duration,
    traces: Vec<(tokio::task::Id, String)>,
}

impl LeakReport {
    /// The leaked timefuse tasks, those alive after their context ended first, then oldest
    /// first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// let h = timefuse::Context::background().spawn_named("t", std::future::pending::<()>());
    /// assert_eq!(guard.verify().await.unwrap_err().tasks()[0].name(), Some("t"));
    /// # h.abort();
    /// # }
    /// ```
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// The tracked resources still held, those whose context ended first.
    ///
    /// ```
    /// use timefuse_leak::ResourceScope;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// let conn = ResourceScope::new("billing").track("pg-connection", ());
    /// let report = guard.verify().await.unwrap_err();
    /// assert_eq!(report.resources()[0].kind(), "pg-connection");
    /// # drop(conn);
    /// # }
    /// ```
    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// How many tokio tasks not spawned through timefuse were still alive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// let h = tokio::spawn(std::future::pending::<()>());
    /// assert_eq!(guard.verify().await.unwrap_err().unbound_tasks(), 1);
    /// # h.abort();
    /// # }
    /// ```
    pub fn unbound_tasks(&self) -> usize {
        self.unbound
    }

    /// True if nothing leaked (never the case for a report returned by
    /// [`verify`](LeakGuard::verify)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// let h = tokio::spawn(std::future::pending::<()>());
    /// assert!(!guard.verify().await.unwrap_err().is_empty());
    /// # h.abort();
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.resources.is_empty() && self.unbound == 0
    }

    /// How many times the check looked again, and how long it waited in all, before giving up.
    ///
    /// ```
    /// use timefuse_leak::{LeakGuard, LeakOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let guard = LeakGuard::with_options(LeakOptions::new().with_retries(3));
    /// let h = tokio::spawn(std::future::pending::<()>());
    /// let (retries, waited) = guard.verify().await.unwrap_err().retries();
    /// assert_eq!(retries, 3);
    /// assert_eq!(waited, std::time::Duration::from_micros(1 + 2 + 4));
    /// # h.abort();
    /// # }
    /// ```
    pub fn retries(&self) -> (u32, Duration) {
        (self.attempts, self.waited)
    }

    /// Where each leaked tokio task is stuck, from `Handle::dump()`: filled only with
    /// `--cfg tokio_unstable` and the `taskdump` feature on Linux; empty otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let guard = timefuse_leak::LeakGuard::start();
    /// let h = tokio::spawn(std::future::pending::<()>());
    /// let report = guard.verify().await.unwrap_err();
    /// if !cfg!(tokio_unstable) {
    ///     assert!(report.stack_traces().is_empty());
    /// }
    /// # h.abort();
    /// # }
    /// ```
    pub fn stack_traces(&self) -> &[(tokio::task::Id, String)] {
        &self.traces
    }

    fn trace_of(&self, id: Option<tokio::task::Id>) -> Option<&str> {
        let id = id?;
        self.traces
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, s)| s.as_str())
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Writes one leaked task as a block:
///
/// ```text
/// task #12 "poller" ALIVE AFTER ITS CONTEXT ENDED (context deadline exceeded)
///     spawned at tests/leak.rs:40:9
///     age 1.2s, bound, tokio task 7
///     request req-7, trace 4bf92f3577b34da6a3ce929d0e0e4736
/// ```
pub(crate) fn write_task_block(
    f: &mut impl fmt::Write,
    t: &TaskInfo,
    trace: Option<&str>,
) -> fmt::Result {
    write!(f, "task #{}", t.id())?;
    if let Some(name) = t.name() {
        write!(f, " {name:?}")?;
    }
    match t.cause() {
        Some(cause) => writeln!(f, " ALIVE AFTER ITS CONTEXT ENDED ({cause})")?,
        None => writeln!(f, " still running, context live")?,
    }
    writeln!(f, "    spawned at {}", t.location())?;
    write!(
        f,
        "    age {:?}, {}",
        t.age(),
        match t.kind() {
            task::TaskKind::Bound => "bound",
            _ => "cooperative",
        }
    )?;
    if let Some(id) = t.tokio_id() {
        write!(f, ", tokio task {id}")?;
    }
    writeln!(f)?;
    writeln!(
        f,
        "    request {}, trace {}",
        t.request_id().map_or("-", |r| r.as_str()),
        t.trace_id().as_deref().unwrap_or("-")
    )?;
    if let Some(trace) = trace {
        writeln!(f, "    stuck at:")?;
        for line in trace.lines() {
            writeln!(f, "      {line}")?;
        }
    }
    Ok(())
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.tasks.is_empty() {
            parts.push(plural(self.tasks.len(), "leaked task", "leaked tasks"));
        }
        if !self.resources.is_empty() {
            parts.push(plural(
                self.resources.len(),
                "held resource",
                "held resources",
            ));
        }
        if self.unbound > 0 {
            parts.push(plural(self.unbound, "unbound task", "unbound tasks"));
        }
        write!(f, "timefuse-leak: found {}", parts.join(", "))?;
        if let Some(rt) = self.runtime {
            write!(f, " on runtime {rt}")?;
        }
        writeln!(f, " after {} retries ({:?})", self.attempts, self.waited)?;
        let ended = self.tasks.iter().filter(|t| t.context_ended()).count()
            + self.resources.iter().filter(|r| r.context_ended()).count();
        if ended > 0 {
            writeln!(
                f,
                "{ended} of them alive after their context ended: the strongest leak signal, listed first"
            )?;
        }
        for t in &self.tasks {
            writeln!(f)?;
            write_task_block(f, t, self.trace_of(t.tokio_id()))?;
        }
        for r in &self.resources {
            writeln!(f)?;
            resource::write_resource_block(f, r)?;
        }
        if self.unbound > 0 {
            writeln!(f)?;
            writeln!(
                f,
                "{} still alive: spawned without timefuse (tokio::spawn, a JoinSet, a library), so \
                 nothing names them; spawn them with Context::spawn or wrap them in \
                 timefuse::task::track to see their name and spawn site",
                plural(self.unbound, "unbound task", "unbound tasks")
            )?;
            if !self.traces.is_empty() {
                let known: HashSet<tokio::task::Id> =
                    self.tasks.iter().filter_map(TaskInfo::tokio_id).collect();
                for (id, trace) in self.traces.iter().filter(|(id, _)| !known.contains(id)) {
                    writeln!(f, "    tokio task {id} stuck at:")?;
                    for line in trace.lines() {
                        writeln!(f, "      {line}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for LeakReport {}

#[cfg(test)]
mod tests {
    use super::location_matches;

    #[test]
    fn location_prefixes_stop_at_number_boundaries() {
        let loc = "tests/a.rs:42:9";
        assert!(location_matches(loc, "tests/"));
        assert!(location_matches(loc, "tests/a.rs"));
        assert!(location_matches(loc, "tests/a.rs:42"));
        assert!(location_matches(loc, "tests/a.rs:42:9"));
        assert!(!location_matches(loc, "tests/a.rs:4"));
        assert!(!location_matches(loc, "src/"));
    }
}
