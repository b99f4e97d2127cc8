//! [`TimeoutPolicy`]: the numbers of the three-layer model, and [`PolicyError`].

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Context;

/// The numbers of the three-layer budget model: a global budget per request, caps per stage and
/// per downstream call, the reserve kept back for the way home, the floor below which a call is
/// not worth starting and the threshold below which a request takes its fallback path.
///
/// | field | [`internal_grpc`](TimeoutPolicy::internal_grpc) | [`http_edge`](TimeoutPolicy::http_edge) |
/// |---|---|---|
/// | [`global`](TimeoutPolicy::global) | 800 ms | 30 s |
/// | [`default_stage_cap`](TimeoutPolicy::default_stage_cap) | 5 s | 5 s |
/// | [`default_downstream_cap`](TimeoutPolicy::default_downstream_cap) | 2 s | 2 s |
/// | [`reserve`](TimeoutPolicy::reserve) | 150 ms | 150 ms |
/// | [`floor`](TimeoutPolicy::floor) | 50 ms | 50 ms |
/// | [`degrade_below`](TimeoutPolicy::degrade_below) | 300 ms | 300 ms |
///
/// Stages and downstream calls may have caps of their own, by name. The `with_*` methods build a
/// policy in code; with the `config` feature (on by default) it can also be loaded from TOML
/// (`from_toml_str`, `from_toml_file`). Nothing checks a policy built in code until you call
/// [`validate`](TimeoutPolicy::validate); the budget arithmetic stays safe (it never grants a
/// child more than its parent has) whatever the numbers.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::budget::TimeoutPolicy;
///
/// let policy = TimeoutPolicy::internal_grpc()
///     .with_stage_cap("risk", Duration::from_secs(3))
///     .with_downstream_cap("ledger", Duration::from_secs(1));
/// policy.validate()?;
/// assert_eq!(policy.global(), Duration::from_millis(800));
/// assert_eq!(policy.stage_cap("risk"), Duration::from_secs(3));
/// assert_eq!(policy.stage_cap("notify"), Duration::from_secs(5), "the default stage cap");
/// assert_eq!(policy.downstream_cap("ledger"), Duration::from_secs(1));
/// # Ok::<(), timefuse::budget::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimeoutPolicy {
    global: Duration,
    default_stage_cap: Duration,
    stage_caps: BTreeMap<String, Duration>,
    default_downstream_cap: Duration,
    downstream_caps: BTreeMap<String, Duration>,
    reserve: Duration,
    floor: Duration,
    degrade_below: Duration,
}

/// The policy used when a context carries none.
pub(crate) static DEFAULT_POLICY: TimeoutPolicy = TimeoutPolicy::internal_grpc();

impl TimeoutPolicy {
    /// The largest duration [`validate`](TimeoutPolicy::validate) accepts anywhere in a policy:
    /// 24 hours.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let policy = TimeoutPolicy::http_edge().with_global(TimeoutPolicy::MAX_DURATION + Duration::from_secs(1));
    /// assert!(policy.validate().is_err());
    /// ```
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

    /// The policy for internal gRPC services: an 800 ms global budget per request, stages capped
    /// at 5 s, downstream calls at 2 s, a 150 ms reserve, a 50 ms floor, degrading below 300 ms.
    ///
    /// This is also [`TimeoutPolicy::default`] and the policy of a context that carries none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let policy = TimeoutPolicy::internal_grpc();
    /// assert_eq!(policy.global(), Duration::from_millis(800));
    /// assert_eq!(policy, TimeoutPolicy::default());
    /// ```
    pub const fn internal_grpc() -> Self {
        TimeoutPolicy {
            global: Duration::from_millis(800),
            default_stage_cap: Duration::from_secs(5),
            stage_caps: BTreeMap::new(),
            default_downstream_cap: Duration::from_secs(2),
            downstream_caps: BTreeMap::new(),
            reserve: Duration::from_millis(150),
            floor: Duration::from_millis(50),
            degrade_below: Duration::from_millis(300),
        }
    }

    /// The policy for an HTTP edge: as [`internal_grpc`](TimeoutPolicy::internal_grpc) but with
    /// a 30 s global budget per request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// assert_eq!(TimeoutPolicy::http_edge().global(), Duration::from_secs(30));
    /// ```
    pub const fn http_edge() -> Self {
        let mut policy = TimeoutPolicy::internal_grpc();
        policy.global = Duration::from_secs(30);
        policy
    }

    /// The whole budget of one request.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// assert_eq!(TimeoutPolicy::internal_grpc().global(), Duration::from_millis(800));
    /// ```
    pub fn global(&self) -> Duration {
        self.global
    }

    /// The cap of a stage that has no cap of its own.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// assert_eq!(TimeoutPolicy::internal_grpc().default_stage_cap(), Duration::from_secs(5));
    /// ```
    pub fn default_stage_cap(&self) -> Duration {
        self.default_stage_cap
    }

    /// The caps of named stages.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_stage_cap("risk", Duration::from_secs(3));
    /// assert_eq!(policy.stage_caps().get("risk"), Some(&Duration::from_secs(3)));
    /// ```
    pub fn stage_caps(&self) -> &BTreeMap<String, Duration> {
        &self.stage_caps
    }

    /// The cap of the stage `name`: its own, else the default.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_stage_cap("risk", Duration::from_secs(3));
    /// assert_eq!(policy.stage_cap("risk"), Duration::from_secs(3));
    /// assert_eq!(policy.stage_cap("anything else"), Duration::from_secs(5));
    /// ```
    pub fn stage_cap(&self, name: &str) -> Duration {
        self.stage_caps
            .get(name)
            .copied()
            .unwrap_or(self.default_stage_cap)
    }

    /// The cap of a downstream call that has no cap of its own.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// assert_eq!(TimeoutPolicy::internal_grpc().default_downstream_cap(), Duration::from_secs(2));
    /// ```
    pub fn default_downstream_cap(&self) -> Duration {
        self.default_downstream_cap
    }

    /// The caps of named downstream calls.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_downstream_cap("ledger", Duration::from_secs(1));
    /// assert_eq!(policy.downstream_caps().len(), 1);
    /// ```
    pub fn downstream_caps(&self) -> &BTreeMap<String, Duration> {
        &self.downstream_caps
    }

    /// The cap of the downstream call `name`: its own, else the default.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_downstream_cap("ledger", Duration::from_secs(1));
    /// assert_eq!(policy.downstream_cap("ledger"), Duration::from_secs(1));
    /// assert_eq!(policy.downstream_cap("notify"), Duration::from_secs(2));
    /// ```
    pub fn downstream_cap(&self, name: &str) -> Duration {
        self.downstream_caps
            .get(name)
            .copied()
            .unwrap_or(self.default_downstream_cap)
    }

    /// The time kept back from every downstream call for the response to travel home: a call
    /// gets at most the parent's remaining time minus the reserve.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// assert_eq!(TimeoutPolicy::internal_grpc().reserve(), Duration::from_millis(150));
    /// ```
    pub fn reserve(&self) -> Duration {
        self.reserve
    }

    /// The least budget worth starting a downstream call with. A threshold, never a grant: a
    /// call whose budget would be below it is not started at all.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// assert_eq!(TimeoutPolicy::internal_grpc().floor(), Duration::from_millis(50));
    /// ```
    pub fn floor(&self) -> Duration {
        self.floor
    }

    /// A request with less than this left should take its fallback path
    /// ([`Context::should_degrade`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// assert_eq!(TimeoutPolicy::internal_grpc().degrade_below(), Duration::from_millis(300));
    /// ```
    pub fn degrade_below(&self) -> Duration {
        self.degrade_below
    }

    /// Sets the global budget of a request.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_global(Duration::from_secs(2));
    /// assert_eq!(policy.global(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn with_global(mut self, global: Duration) -> Self {
        self.global = global;
        self
    }

    /// Sets the cap of stages that have none of their own.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::http_edge().with_default_stage_cap(Duration::from_secs(8));
    /// assert_eq!(policy.stage_cap("any"), Duration::from_secs(8));
    /// ```
    #[must_use]
    pub fn with_default_stage_cap(mut self, cap: Duration) -> Self {
        self.default_stage_cap = cap;
        self
    }

    /// Sets the cap of the stage `name`. The name `default` is reserved (see
    /// [`validate`](TimeoutPolicy::validate)): use
    /// [`with_default_stage_cap`](TimeoutPolicy::with_default_stage_cap).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::http_edge().with_stage_cap("risk", Duration::from_secs(3));
    /// assert_eq!(policy.stage_cap("risk"), Duration::from_secs(3));
    /// ```
    #[must_use]
    pub fn with_stage_cap(mut self, name: impl Into<String>, cap: Duration) -> Self {
        self.stage_caps.insert(name.into(), cap);
        self
    }

    /// Sets the cap of downstream calls that have none of their own.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::http_edge().with_default_downstream_cap(Duration::from_secs(3));
    /// assert_eq!(policy.downstream_cap("any"), Duration::from_secs(3));
    /// ```
    #[must_use]
    pub fn with_default_downstream_cap(mut self, cap: Duration) -> Self {
        self.default_downstream_cap = cap;
        self
    }

    /// Sets the cap of the downstream call `name`. The name `default` is reserved (see
    /// [`validate`](TimeoutPolicy::validate)): use
    /// [`with_default_downstream_cap`](TimeoutPolicy::with_default_downstream_cap).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::http_edge().with_downstream_cap("ledger", Duration::from_secs(1));
    /// assert_eq!(policy.downstream_cap("ledger"), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_downstream_cap(mut self, name: impl Into<String>, cap: Duration) -> Self {
        self.downstream_caps.insert(name.into(), cap);
        self
    }

    /// Sets the reserve kept back from every downstream call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_reserve(Duration::ZERO);
    /// assert!(policy.validate().is_ok(), "a zero reserve is allowed");
    /// ```
    #[must_use]
    pub fn with_reserve(mut self, reserve: Duration) -> Self {
        self.reserve = reserve;
        self
    }

    /// Sets the floor: the least budget worth starting a downstream call with.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_floor(Duration::from_millis(20));
    /// assert_eq!(policy.floor(), Duration::from_millis(20));
    /// ```
    #[must_use]
    pub fn with_floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    /// Sets the degrade threshold (see [`Context::should_degrade`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use timefuse::budget::TimeoutPolicy;
    /// let policy = TimeoutPolicy::internal_grpc().with_degrade_below(Duration::from_millis(200));
    /// assert_eq!(policy.degrade_below(), Duration::from_millis(200));
    /// ```
    #[must_use]
    pub fn with_degrade_below(mut self, threshold: Duration) -> Self {
        self.degrade_below = threshold;
        self
    }

    /// Checks that the policy makes sense:
    ///
    /// - every duration is greater than zero, except the reserve, which may be zero;
    /// - every duration is at most [`MAX_DURATION`](TimeoutPolicy::MAX_DURATION) (24 h);
    /// - `floor <= degrade_below`;
    /// - `reserve + floor < global`, so that a fresh request can make a downstream call at all;
    /// - no stage or downstream call is named `default` or the empty string.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] of kind [`PolicyErrorKind::Invalid`] naming the first offending key as
    /// it would be written in TOML, e.g. `downstream.ledger`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::budget::{PolicyErrorKind, TimeoutPolicy};
    ///
    /// let policy = TimeoutPolicy::internal_grpc().with_downstream_cap("ledger", Duration::ZERO);
    /// let err = policy.validate().unwrap_err();
    /// assert_eq!(err.kind(), PolicyErrorKind::Invalid);
    /// assert_eq!(err.key(), Some("downstream.ledger"));
    /// ```
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = |key: String, d: Duration| -> Result<(), PolicyError> {
            if d.is_zero() {
                return Err(PolicyError::invalid(
                    key,
                    "must be greater than zero".to_owned(),
                ));
            }
            at_most_max(key, d)
        };
        positive("global".to_owned(), self.global)?;
        at_most_max("reserve".to_owned(), self.reserve)?;
        positive("floor".to_owned(), self.floor)?;
        positive("degrade_below".to_owned(), self.degrade_below)?;
        for (table, default, caps) in [
            ("stage", self.default_stage_cap, &self.stage_caps),
            (
                "downstream",
                self.default_downstream_cap,
                &self.downstream_caps,
            ),
        ] {
            positive(format!("{table}.default"), default)?;
            for (name, &cap) in caps {
                let key = key_path(table, name);
                if name.is_empty() || name == "default" {
                    let reason = format!(
                        "`{name}` cannot name a {table}: it is empty or reserved for the default cap"
                    );
                    return Err(PolicyError::invalid(key, reason));
                }
                positive(key, cap)?;
            }
        }
        if self.floor > self.degrade_below {
            let reason = format!(
                "the floor ({:?}) exceeds degrade_below ({:?})",
                self.floor, self.degrade_below
            );
            return Err(PolicyError::invalid("floor".to_owned(), reason));
        }
        if self.reserve + self.floor >= self.global {
            let reason = format!(
                "reserve ({:?}) + floor ({:?}) must be less than global ({:?}): \
                 no downstream call could ever start",
                self.reserve, self.floor, self.global
            );
            return Err(PolicyError::invalid("reserve".to_owned(), reason));
        }
        Ok(())
    }
}

fn at_most_max(key: String, d: Duration) -> Result<(), PolicyError> {
    if d > TimeoutPolicy::MAX_DURATION {
        return Err(PolicyError::invalid(
            key,
            format!("{d:?} exceeds the 24h maximum"),
        ));
    }
    Ok(())
}

/// `table.name` as TOML would write it: the name quoted unless it is a bare key.
pub(crate) fn key_path(table: &str, name: &str) -> String {
    format!("{table}.{}", quote_key(name))
}

/// A key as TOML would write it: quoted unless it is a bare key.
pub(crate) fn quote_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

impl Default for TimeoutPolicy {
    /// [`TimeoutPolicy::internal_grpc`].
    fn default() -> Self {
        TimeoutPolicy::internal_grpc()
    }
}

/// What kind of problem a [`PolicyError`] reports.
///
/// ```
/// use timefuse::budget::{PolicyErrorKind, TimeoutPolicy};
///
/// let err = TimeoutPolicy::internal_grpc().with_global(std::time::Duration::ZERO).validate().unwrap_err();
/// assert_eq!(err.kind(), PolicyErrorKind::Invalid);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The text is not valid TOML.
    Syntax,
    /// A key the policy does not know.
    UnknownKey,
    /// A value of the wrong type, or a duration that does not parse.
    BadValue,
    /// Values that parse but break a rule of [`TimeoutPolicy::validate`].
    Invalid,
    /// The policy file could not be read.
    Io,
}

/// Why a [`TimeoutPolicy`] was rejected: bad TOML, an unknown key, a bad value or a broken rule.
///
/// The message names the key as written in TOML (`downstream.ledger`) and, for a bad value, the
/// value itself.
///
/// ```
/// use std::time::Duration;
/// use timefuse::budget::TimeoutPolicy;
///
/// let err = TimeoutPolicy::internal_grpc().with_floor(Duration::from_secs(1)).validate().unwrap_err();
/// assert_eq!(err.key(), Some("floor"));
/// assert_eq!(err.to_string(), "timeout policy: `floor`: the floor (1s) exceeds degrade_below (300ms)");
/// ```
#[derive(Clone, Debug)]
pub struct PolicyError {
    kind: PolicyErrorKind,
    key: Option<String>,
    value: Option<String>,
    message: String,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

/// Longest offending value quoted in a message, in characters.
const MAX_QUOTED: usize = 64;

impl PolicyError {
    pub(crate) fn invalid(key: String, message: String) -> Self {
        PolicyError {
            kind: PolicyErrorKind::Invalid,
            key: Some(key),
            value: None,
            message,
            source: None,
        }
    }

    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn new(kind: PolicyErrorKind, key: Option<String>, message: String) -> Self {
        PolicyError {
            kind,
            key,
            value: None,
            message,
            source: None,
        }
    }

    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn bad_value(key: String, value: &str, message: String) -> Self {
        let mut quoted: String = value.chars().take(MAX_QUOTED).collect();
        if quoted.len() < value.len() {
            quoted.push('…');
        }
        PolicyError {
            kind: PolicyErrorKind::BadValue,
            key: Some(key),
            value: Some(quoted),
            message,
            source: None,
        }
    }

    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn with_source(mut self, source: impl Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of problem this is.
    ///
    /// ```
    /// use timefuse::budget::{PolicyErrorKind, TimeoutPolicy};
    ///
    /// let err = TimeoutPolicy::internal_grpc().with_floor(std::time::Duration::ZERO).validate().unwrap_err();
    /// assert_eq!(err.kind(), PolicyErrorKind::Invalid);
    /// ```
    pub fn kind(&self) -> PolicyErrorKind {
        self.kind
    }

    /// The offending key as written in TOML (`global`, `stage.default`, `downstream.ledger`), if
    /// the error is about one key.
    ///
    /// ```
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let err = TimeoutPolicy::internal_grpc().with_floor(std::time::Duration::ZERO).validate().unwrap_err();
    /// assert_eq!(err.key(), Some("floor"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The offending value as written (cut to 64 characters), for a
    /// [`BadValue`](PolicyErrorKind::BadValue) error that has one.
    ///
    /// ```
    /// # #[cfg(feature = "config")] {
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let err = TimeoutPolicy::from_toml_str(r#"floor = "5 parsecs""#).unwrap_err();
    /// assert_eq!(err.key(), Some("floor"));
    /// assert_eq!(err.value(), Some("5 parsecs"));
    /// # }
    /// ```
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timeout policy: ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        if let Some(value) = &self.value {
            write!(f, "bad value {value:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Error for PolicyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The context value carrying a policy: a private type, so only this module reads or writes it.
struct PolicyValue(Arc<TimeoutPolicy>);

impl Context {
    /// A child carrying `policy`, which [`policy`](Context::policy),
    /// [`stage`](Context::stage), [`downstream`](Context::downstream) and
    /// [`should_degrade`](Context::should_degrade) use on it and its descendants. Shares this
    /// context's cancellation and deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let ctx = Context::background().with_policy(TimeoutPolicy::http_edge());
    /// assert_eq!(ctx.policy().global(), Duration::from_secs(30));
    /// ```
    pub fn with_policy(&self, policy: impl Into<Arc<TimeoutPolicy>>) -> Context {
        self.with_value(PolicyValue(policy.into()))
    }

    /// The nearest policy on this context or its ancestors, else
    /// [`TimeoutPolicy::internal_grpc`].
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// assert_eq!(Context::background().policy(), &TimeoutPolicy::internal_grpc());
    /// ```
    pub fn policy(&self) -> &TimeoutPolicy {
        self.policy_arc().map_or(&DEFAULT_POLICY, |p| &**p)
    }

    pub(crate) fn policy_arc(&self) -> Option<&Arc<TimeoutPolicy>> {
        self.value::<PolicyValue>().map(|v| &v.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        TimeoutPolicy::internal_grpc().validate().unwrap();
        TimeoutPolicy::http_edge().validate().unwrap();
        assert_eq!(DEFAULT_POLICY, TimeoutPolicy::default());
    }

    #[test]
    fn key_paths_quote_odd_names() {
        assert_eq!(key_path("stage", "risk-2_b"), "stage.risk-2_b");
        assert_eq!(key_path("stage", "a.b"), "stage.\"a.b\"");
        assert_eq!(key_path("stage", ""), "stage.\"\"");
    }

    #[test]
    fn bad_value_is_cut() {
        let long = "x".repeat(200);
        let err = PolicyError::bad_value("global".into(), &long, "nope".into());
        assert_eq!(err.value().unwrap().chars().count(), MAX_QUOTED + 1);
    }
}
