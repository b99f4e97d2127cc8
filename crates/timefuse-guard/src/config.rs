//! One configuration matrix for every guard: per-route sections in one TOML file (or built in
//! code), with the design document's values as a ready preset.
//!
//! ```toml
//! [defaults.timeout]      # timefuse's TimeoutPolicy: the request's budget
//! global = "800ms"
//!
//! [defaults.rate]         # 100 calls a second, shared by every clone
//! limit = 100
//!
//! [defaults.breaker]      # open at 50 % failures over the last 60 s
//! window = "60s"
//! failure_rate = 50
//!
//! [routes.pay.breaker]    # this route: stricter, field by field over the defaults
//! failure_rate = 25
//!
//! [routes.search.rate]
//! enabled = false         # no limit on search
//! ```
//!
//! Every route inherits `[defaults]` **field by field**: a route's `breaker.failure_rate`
//! replaces only that field. The exception is `timeout`, a whole [`TimeoutPolicy`] whose
//! missing keys take timefuse's own defaults: a route's `[routes.x.timeout]` replaces the
//! defaults' policy. A section that appears in neither `[defaults]` nor the route turns its
//! guard off for that route, as does `enabled = false`.
//!
//! # Reference
//!
//! Durations are strings with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`; decimals such as
//! `"1.5s"` allowed) or bare integers meaning milliseconds.
//!
//! | section | key | type | default | rule |
//! |---|---|---|---|---|
//! | `timeout` | see [`TimeoutPolicy`] | | `internal_grpc` | its own |
//! | `admission` | `enabled` | bool | `true` once the section is present | |
//! | `rate` | `limit` | integer | 100 | ≥ 1 |
//! | | `per` | duration | `1s` | in (0, 24h] |
//! | | `burst` | integer | `limit` | ≥ 1 |
//! | | `max_wait` | duration | `500ms` | `0` means never wait; ≤ 24h |
//! | | `key` | `global`, `tenant`, `peer` | `global` | |
//! | `rate.distributed` | `url` | string | `redis://127.0.0.1:6379` | `redis://`, `rediss://` or `unix://` |
//! | | `prefix` | string | `timefuse:rl` | not empty, no spaces |
//! | | `on_outage` | `open`, `closed` | `open` | |
//! | | `timeout` | duration | `50ms` | > 0 |
//! | `breaker` | `window` | duration | — | time-based window, whole seconds in [1s, 3600s] |
//! | | `calls` | integer | 100 | count-based window in 1..=1048576; not with `window` |
//! | | `minimum_calls` | integer | 100 | ≥ 1 |
//! | | `failure_rate` | percent | 50 | in (0, 100] |
//! | | `slow_rate` | percent | 100 | in (0, 100] |
//! | | `slow_call` | duration | `60s` | > 0 |
//! | | `wait_in_open` | duration | `60s` | > 0 |
//! | | `half_open_calls` | integer | 10 | in 1..=1023 |
//! | | `max_wait_in_half_open` | duration | `0` (wait for every probe) | |
//! | `bulkhead` | `max_concurrent` | integer | 25 | in 1..=1048576 |
//! | | `max_wait` | duration | `0` | ≤ 24h |
//! | `retry` | `max_attempts` | integer | 3 | in 1..=10, the first attempt included |
//! | | `per_try` | duration | none (only the budget) | > 0 |
//! | | `backoff_base`, `backoff_max` | duration | `25ms`, `250ms` | base ≤ max |
//! | | `budget_ratio` | number | 0.2 | in [0, 10] |
//! | | `budget_min_per_sec` | integer | 10 | |
//! | | `budget_ttl` | duration | `10s` | in [1s, 60s] |
//! | | `retry_refusals` | bool | false | |
//! | `fallback` | `kind` | `none`, `default_response`, `stale_cache` | `none` | |
//! | | `max_age` | duration | `30s` | > 0; `stale_cache` only |
//! | | `on_failure` | bool | false | also answer the callee's own failures |
//! | | `up_front` | bool | true | answer at once when the request should degrade |
//!
//! Every section but `timeout` also takes `enabled` (bool). Unknown keys are errors.
//!
//! # Errors name the key
//!
//! ```
//! use timefuse_guard::config::{ConfigErrorKind, GuardConfig};
//!
//! let err = GuardConfig::from_toml_str("[routes.pay.breaker]\nfailure_rate = 0").unwrap_err();
//! assert_eq!(err.to_string(), "routes.pay.breaker.failure_rate: must be in (0, 100]");
//! assert_eq!(err.kind(), ConfigErrorKind::Invalid);
//!
//! let err = GuardConfig::from_toml_str("[defaults.rate]\nlimt = 5").unwrap_err();
//! assert_eq!(err.kind(), ConfigErrorKind::UnknownKey);
//! assert_eq!(err.key(), Some("defaults.rate.limt"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timefuse::budget::TimeoutPolicy;

/// The design document's preset, as shipped in `presets/document.toml`.
pub const DOCUMENT_PRESET: &str = include_str!("../presets/document.toml");

const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------------------------
// Durations

/// A duration as written in the configuration: `"150ms"`, `"1.5s"`, `"2m"`, or an integer of
/// milliseconds. Serialized in the largest unit that represents it exactly.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::config::ConfigDuration;
///
/// assert_eq!("1.5s".parse::<ConfigDuration>().unwrap().0, Duration::from_millis(1500));
/// assert_eq!(ConfigDuration(Duration::from_millis(800)).to_string(), "800ms");
/// assert!("5 parsecs".parse::<ConfigDuration>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl From<Duration> for ConfigDuration {
    fn from(d: Duration) -> Self {
        ConfigDuration(d)
    }
}

impl std::str::FromStr for ConfigDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(ConfigDuration)
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0ms");
        }
        let (unit, per) = [
            ("h", 3_600_000_000_000_u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ]
        .into_iter()
        .find(|&(_, per)| nanos.is_multiple_of(per))
        .unwrap_or(("ns", 1));
        write!(f, "{}{unit}", nanos / per)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "ns, us, ms, s, m or h";
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" if !number.is_empty() && number.bytes().all(|b| b == b'0') => return Ok(Duration::ZERO),
        "" => return Err(format!("{s:?} has no unit ({UNITS})")),
        _ => return Err(format!("{s:?}: unknown unit (expected {UNITS})")),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |d: &str| -> Option<u128> {
        d.bytes().try_fold(0_u128, |acc, b| {
            acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
        })
    };
    let bad = || format!("{s:?} is not a duration (a number and a unit: {UNITS})");
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    let too_large = || format!("{s:?} is too large");
    let mut nanos = digits(whole)
        .and_then(|w| w.checked_mul(unit_nanos))
        .ok_or_else(too_large)?;
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        if frac.len() > 24 {
            return Err(format!("{s:?} is finer than a nanosecond"));
        }
        let scale = 10_u128.pow(frac.len() as u32);
        let scaled = digits(frac).ok_or_else(bad)? * unit_nanos;
        if !scaled.is_multiple_of(scale) {
            return Err(format!("{s:?} is finer than a nanosecond"));
        }
        nanos = nanos.checked_add(scaled / scale).ok_or_else(too_large)?;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

impl Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"150ms\", or an integer of milliseconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                u64::try_from(v)
                    .map(|ms| ConfigDuration(Duration::from_millis(ms)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                Ok(ConfigDuration(Duration::from_millis(v)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix as written

/// The whole configuration: `[defaults]` and `[routes.NAME]` sections. See the
/// [module docs](self) for the format.
///
/// # Examples
///
/// From TOML, and the same built in code:
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::config::{BreakerSection, GuardConfig, RateConfig, RouteConfig};
///
/// let from_toml = GuardConfig::from_toml_str(r#"
///     [defaults.rate]
///     limit = 100
///     [routes.pay.breaker]
///     window = "60s"
///     failure_rate = 50
/// "#)?;
///
/// let in_code = GuardConfig::default()
///     .with_defaults(RouteConfig::default().with_rate(RateConfig::per_second(100)))
///     .with_route("pay", RouteConfig::default().with_breaker(
///         BreakerSection::time_based(Duration::from_secs(60)).failure_rate(50.0),
///     ));
/// in_code.validate()?;
/// assert_eq!(from_toml, in_code);
///
/// let pay = from_toml.route("pay")?;
/// assert_eq!(pay.rate.unwrap().limit, 100);
/// assert_eq!(pay.breaker.unwrap().failure_rate, 50.0);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// What every route inherits.
    #[serde(skip_serializing_if = "RouteConfig::is_empty")]
    pub defaults: RouteConfig,
    /// Per-route overrides, by route name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteConfig>,
}

/// The sections of one route (or of `[defaults]`): every one optional.
///
/// ```
/// use timefuse_guard::config::{GuardConfig, RouteConfig};
/// let config = GuardConfig::from_toml_str("[routes.pay.bulkhead]\nmax_concurrent = 4")?;
/// assert_eq!(config.routes["pay"].bulkhead.as_ref().unwrap().max_concurrent, Some(4));
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// The request budget: a whole [`TimeoutPolicy`] (replaces the defaults' one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutPolicy>,
    /// Deadline admission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionConfig>,
    /// The rate limiter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateConfig>,
    /// The circuit breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSection>,
    /// The bulkhead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<BulkheadConfig>,
    /// Retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackConfig>,
}

/// `[…admission]`.
///
/// ```
/// use timefuse_guard::config::{GuardConfig, RouteConfig};
/// let config = GuardConfig::from_toml_str("[defaults.admission]\nenabled = false")?;
/// assert!(!config.route("x")?.admission);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// On or off (on once the section is present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Which limit a request counts against.
///
/// ```
/// use timefuse_guard::config::{GuardConfig, RouteConfig};
/// use timefuse_guard::config::RateKey;
/// let config = GuardConfig::from_toml_str("[defaults.rate]\nkey = \"tenant\"")?;
/// assert_eq!(config.route("x")?.rate.unwrap().key, RateKey::Tenant);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// One limit for the route.
    #[default]
    Global,
    /// One limit per tenant: the request context's `rate_limit::Tenant` value.
    Tenant,
    /// One limit per peer: the request context's `rate_limit::Peer` value.
    Peer,
}

/// What a distributed limiter does while Redis is unreachable.
///
/// ```
/// use timefuse_guard::config::{GuardConfig, RouteConfig};
/// use timefuse_guard::config::OnOutage;
/// let config = GuardConfig::from_toml_str("[defaults.rate.distributed]\non_outage = \"closed\"")?;
/// assert_eq!(config.route("x")?.rate.unwrap().distributed.unwrap().on_outage, OnOutage::Closed);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOutage {
    /// Let calls through (availability first).
    #[default]
    Open,
    /// Refuse calls (protection first).
    Closed,
}

/// `[…rate]`.
///
/// ```
/// use timefuse_guard::config::{RateConfig, RateKey};
/// let rate = RateConfig::per_second(100).burst(10).key(RateKey::Peer);
/// assert_eq!((rate.limit, rate.burst), (Some(100), Some(10)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// On or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Calls per `per`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per: Option<ConfigDuration>,
    /// The burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// The longest wait for a permit (zero: never wait).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<ConfigDuration>,
    /// Global or keyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<RateKey>,
    /// Count on Redis, shared by every instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedConfig>,
}

/// `[…rate.distributed]`.
///
/// ```
/// use timefuse_guard::config::{GuardConfig, RouteConfig};
/// let config = GuardConfig::from_toml_str("[defaults.rate.distributed]\nurl = \"redis://10.0.0.5:6379\"")?;
/// assert_eq!(config.route("x")?.rate.unwrap().distributed.unwrap().url, "redis://10.0.0.5:6379");
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedConfig {
    /// On or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The Redis URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The key prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Open or closed while Redis is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_outage: Option<OnOutage>,
    /// The longest wait for Redis's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ConfigDuration>,
}

/// `[…breaker]`.
///
/// ```
/// use std::time::Duration;
/// use timefuse_guard::config::BreakerSection;
/// let breaker = BreakerSection::time_based(Duration::from_secs(60)).failure_rate(50.0);
/// assert_eq!(breaker.failure_rate, Some(50.0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// On or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A time-based window of this span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<ConfigDuration>,
    /// A count-based window of this many calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<u32>,
    /// Calls needed before the rates count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    /// Open at this failure rate, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Open at this slow-call rate, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_rate: Option<f64>,
    /// A call slower than this is slow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call: Option<ConfigDuration>,
    /// How long the circuit stays open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_in_open: Option<ConfigDuration>,
    /// Probes let through when half-open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_calls: Option<u32>,
    /// The longest the circuit stays half-open (zero: until the probes are done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_in_half_open: Option<ConfigDuration>,
}

/// `[…bulkhead]`.
///
/// ```
/// let bulkhead = timefuse_guard::config::BulkheadConfig::max_concurrent(25);
/// assert_eq!(bulkhead.max_concurrent, Some(25));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// On or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Calls in flight at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// The longest wait for a permit (and never past the budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<ConfigDuration>,
}

/// `[…retry]`.
///
/// ```
/// let retry = timefuse_guard::config::RetryConfig::attempts(2);
/// assert_eq!(retry.max_attempts, Some(2));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// On or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Attempts in all, the first included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The cap of one attempt (under `remaining − reserve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try: Option<ConfigDuration>,
    /// The first retry's backoff bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_base: Option<ConfigDuration>,
    /// The largest backoff bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<ConfigDuration>,
    /// Share of requests that may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ratio: Option<f64>,
    /// Free retries per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_min_per_sec: Option<u32>,
    /// The budget's window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ttl: Option<ConfigDuration>,
    /// Retry refusals too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_refusals: Option<bool>,
}

/// Which fallback a route uses (the hook itself is code, given to the stack builder).
///
/// ```
/// use timefuse_guard::config::{FallbackKind, GuardConfig};
/// let config = GuardConfig::from_toml_str("[defaults.fallback]\nkind = \"stale_cache\"\nmax_age = \"1m\"")?;
/// let fallback = config.route("x")?.fallback;
/// assert_eq!((fallback.kind, fallback.max_age), (FallbackKind::StaleCache, std::time::Duration::from_secs(60)));
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackKind {
    /// No fallback: refusals reach the caller.
    #[default]
    None,
    /// The route's default response.
    DefaultResponse,
    /// The last good response per key, while fresh.
    StaleCache,
}

/// `[…fallback]`.
///
/// ```
/// use timefuse_guard::config::{FallbackConfig, FallbackKind};
/// let fallback = FallbackConfig::kind(FallbackKind::DefaultResponse);
/// assert_eq!(fallback.kind, Some(FallbackKind::DefaultResponse));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// Which fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<FallbackKind>,
    /// The oldest cached response served (`stale_cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<ConfigDuration>,
    /// Also answer the callee's own failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<bool>,
    /// Answer at once when the request should degrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_front: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Builders

impl GuardConfig {
    /// Sets `[defaults]`.
    ///
    /// ```
    /// use timefuse_guard::config::{GuardConfig, RouteConfig};
    /// use timefuse_guard::config::RateConfig;
    /// let config = GuardConfig::default().with_defaults(RouteConfig::default().with_rate(RateConfig::per_second(5)));
    /// assert_eq!(config.route("any")?.rate.unwrap().limit, 5);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_defaults(mut self, defaults: RouteConfig) -> Self {
        self.defaults = defaults;
        self
    }

    /// Sets `[routes.name]`.
    ///
    /// ```
    /// use timefuse_guard::config::{GuardConfig, RouteConfig};
    /// let config = GuardConfig::default().with_route("pay", RouteConfig::default().with_admission());
    /// assert!(config.route("pay")?.admission);
    /// assert!(!config.route("search")?.admission);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_route(mut self, name: impl Into<String>, route: RouteConfig) -> Self {
        self.routes.insert(name.into(), route);
        self
    }
}

impl RouteConfig {
    fn is_empty(&self) -> bool {
        *self == RouteConfig::default()
    }

    /// Sets the timeout policy.
    ///
    /// ```
    /// use timefuse_guard::config::{GuardConfig, RouteConfig};
    /// use timefuse::budget::TimeoutPolicy;
    /// let config = GuardConfig::default().with_defaults(RouteConfig::default().with_timeout(TimeoutPolicy::http_edge()));
    /// assert_eq!(config.route("x")?.timeout, TimeoutPolicy::http_edge());
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, policy: TimeoutPolicy) -> Self {
        self.timeout = Some(policy);
        self
    }

    /// Turns deadline admission on.
    ///
    /// ```
    /// let route = timefuse_guard::config::RouteConfig::default().with_admission();
    /// assert!(route.admission.is_some());
    /// ```
    #[must_use]
    pub fn with_admission(mut self) -> Self {
        self.admission = Some(AdmissionConfig::default());
        self
    }

    /// Sets the rate section.
    ///
    /// ```
    /// use timefuse_guard::config::{RateConfig, RouteConfig};
    /// let route = RouteConfig::default().with_rate(RateConfig::per_second(10));
    /// assert!(route.rate.is_some());
    /// ```
    #[must_use]
    pub fn with_rate(mut self, rate: RateConfig) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Sets the breaker section.
    ///
    /// ```
    /// use timefuse_guard::config::{BreakerSection, RouteConfig};
    /// let route = RouteConfig::default().with_breaker(BreakerSection::count_based(20));
    /// assert_eq!(route.breaker.unwrap().calls, Some(20));
    /// ```
    #[must_use]
    pub fn with_breaker(mut self, breaker: BreakerSection) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Sets the bulkhead section.
    ///
    /// ```
    /// use timefuse_guard::config::{BulkheadConfig, RouteConfig};
    /// let route = RouteConfig::default().with_bulkhead(BulkheadConfig::max_concurrent(4));
    /// assert!(route.bulkhead.is_some());
    /// ```
    #[must_use]
    pub fn with_bulkhead(mut self, bulkhead: BulkheadConfig) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// Sets the retry section.
    ///
    /// ```
    /// use timefuse_guard::config::{RetryConfig, RouteConfig};
    /// let route = RouteConfig::default().with_retry(RetryConfig::attempts(3));
    /// assert!(route.retry.is_some());
    /// ```
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the fallback section.
    ///
    /// ```
    /// use timefuse_guard::config::{FallbackConfig, FallbackKind, RouteConfig};
    /// let route = RouteConfig::default().with_fallback(FallbackConfig::kind(FallbackKind::StaleCache));
    /// assert!(route.fallback.is_some());
    /// ```
    #[must_use]
    pub fn with_fallback(mut self, fallback: FallbackConfig) -> Self {
        self.fallback = Some(fallback);
        self
    }
}

impl RateConfig {
    /// `limit` calls per second.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::RateConfig::per_second(7).limit, Some(7));
    /// ```
    pub fn per_second(limit: u32) -> Self {
        RateConfig {
            limit: Some(limit),
            ..RateConfig::default()
        }
    }

    /// Sets the burst.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::RateConfig::per_second(7).burst(2).burst, Some(2));
    /// ```
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets the longest wait for a permit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rate = timefuse_guard::config::RateConfig::per_second(7).max_wait(Duration::ZERO);
    /// assert_eq!(rate.max_wait.unwrap().0, Duration::ZERO);
    /// ```
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait.into());
        self
    }

    /// Sets the key.
    ///
    /// ```
    /// use timefuse_guard::config::{RateConfig, RateKey};
    /// assert_eq!(RateConfig::per_second(7).key(RateKey::Tenant).key, Some(RateKey::Tenant));
    /// ```
    #[must_use]
    pub fn key(mut self, key: RateKey) -> Self {
        self.key = Some(key);
        self
    }
}

impl BreakerSection {
    /// A time-based window of `span`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = timefuse_guard::config::BreakerSection::time_based(Duration::from_secs(10));
    /// assert_eq!(b.window.unwrap().0, Duration::from_secs(10));
    /// ```
    pub fn time_based(span: Duration) -> Self {
        BreakerSection {
            window: Some(span.into()),
            ..BreakerSection::default()
        }
    }

    /// A count-based window of `calls`.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::BreakerSection::count_based(50).calls, Some(50));
    /// ```
    pub fn count_based(calls: u32) -> Self {
        BreakerSection {
            calls: Some(calls),
            ..BreakerSection::default()
        }
    }

    /// Sets the failure-rate threshold, in percent.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::BreakerSection::count_based(50).failure_rate(25.0).failure_rate, Some(25.0));
    /// ```
    #[must_use]
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.failure_rate = Some(percent);
        self
    }

    /// Sets the minimum number of calls.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::BreakerSection::count_based(50).minimum_calls(10).minimum_calls, Some(10));
    /// ```
    #[must_use]
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = Some(calls);
        self
    }

    /// Sets how long the circuit stays open.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = timefuse_guard::config::BreakerSection::count_based(50).wait_in_open(Duration::from_secs(5));
    /// assert_eq!(b.wait_in_open.unwrap().0, Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.wait_in_open = Some(wait.into());
        self
    }

    /// Sets the number of half-open probes.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::BreakerSection::count_based(50).half_open_calls(2).half_open_calls, Some(2));
    /// ```
    #[must_use]
    pub fn half_open_calls(mut self, calls: u32) -> Self {
        self.half_open_calls = Some(calls);
        self
    }
}

impl BulkheadConfig {
    /// At most `max_concurrent` calls in flight.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::BulkheadConfig::max_concurrent(3).max_concurrent, Some(3));
    /// ```
    pub fn max_concurrent(max_concurrent: u32) -> Self {
        BulkheadConfig {
            max_concurrent: Some(max_concurrent),
            ..BulkheadConfig::default()
        }
    }
}

impl RetryConfig {
    /// At most `attempts` attempts in all.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::config::RetryConfig::attempts(3).max_attempts, Some(3));
    /// ```
    pub fn attempts(attempts: u32) -> Self {
        RetryConfig {
            max_attempts: Some(attempts),
            ..RetryConfig::default()
        }
    }
}

impl FallbackConfig {
    /// A fallback of `kind`.
    ///
    /// ```
    /// use timefuse_guard::config::{FallbackConfig, FallbackKind};
    /// assert_eq!(FallbackConfig::kind(FallbackKind::None).kind, Some(FallbackKind::None));
    /// ```
    pub fn kind(kind: FallbackKind) -> Self {
        FallbackConfig {
            kind: Some(kind),
            ..FallbackConfig::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What kind of problem a [`ConfigError`] reports.
///
/// ```
/// use timefuse_guard::config::{ConfigErrorKind, GuardConfig};
/// assert_eq!(GuardConfig::from_toml_str("x = ").unwrap_err().kind(), ConfigErrorKind::Syntax);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Not valid TOML.
    Syntax,
    /// A key the configuration does not know.
    UnknownKey,
    /// A value of the wrong type, or a duration that does not parse.
    BadValue,
    /// A value out of range, or settings that contradict each other.
    Invalid,
    /// The file could not be read.
    Io,
}

/// Why a configuration was rejected, naming the key as written in TOML
/// (`routes.pay.breaker.failure_rate`).
///
/// ```
/// use timefuse_guard::config::{ConfigErrorKind, GuardConfig};
/// let err = GuardConfig::from_toml_str("[defaults.retry]\nbudget_ttl = \"2m\"").unwrap_err();
/// assert_eq!(err.key(), Some("defaults.retry.budget_ttl"));
/// assert_eq!(err.to_string(), "defaults.retry.budget_ttl: must be in [1s, 60s]");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            kind,
            key,
            message: message.into(),
        }
    }

    /// The kind of problem.
    ///
    /// ```
    /// use timefuse_guard::config::{ConfigErrorKind, GuardConfig};
    /// let err = GuardConfig::from_toml_str("[defaults.bulkhead]\nmax_concurrent = 0").unwrap_err();
    /// assert_eq!(err.kind(), ConfigErrorKind::Invalid);
    /// ```
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The offending key, dotted as in TOML, if the problem is about one key.
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let err = GuardConfig::from_toml_str("[defaults.bulkhead]\nmax_concurrent = 0").unwrap_err();
    /// assert_eq!(err.key(), Some("defaults.bulkhead.max_concurrent"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong.
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let err = GuardConfig::from_toml_str("[defaults.bulkhead]\nmax_concurrent = 0").unwrap_err();
    /// assert_eq!(err.message(), "must be in 1..=1048576");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A key as TOML writes it: quoted unless bare.
fn quote_key(name: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// Loading and validation

impl GuardConfig {
    /// The design document's values: 800 ms per request, 100 QPS, a breaker opening at 50 %
    /// failures over 60 s (`presets/document.toml`, in [`DOCUMENT_PRESET`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_guard::config::GuardConfig;
    ///
    /// let preset = GuardConfig::document_preset();
    /// let route = preset.route("anything").unwrap();
    /// assert_eq!(route.timeout.global(), Duration::from_millis(800));
    /// assert_eq!(route.rate.unwrap().limit, 100);
    /// let breaker = route.breaker.unwrap();
    /// assert_eq!((breaker.failure_rate, breaker.window), (50.0, Some(Duration::from_secs(60))));
    /// ```
    pub fn document_preset() -> GuardConfig {
        GuardConfig::from_toml_str(DOCUMENT_PRESET).expect("the shipped preset is valid")
    }

    /// Parses and [validates](GuardConfig::validate) a configuration. Never panics, whatever
    /// the input.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key: [`Syntax`](ConfigErrorKind::Syntax) for text that is
    /// not TOML, [`UnknownKey`](ConfigErrorKind::UnknownKey),
    /// [`BadValue`](ConfigErrorKind::BadValue) for a value of the wrong type or a bad
    /// duration, [`Invalid`](ConfigErrorKind::Invalid) for a value out of range.
    ///
    /// ```
    /// use timefuse_guard::config::{ConfigErrorKind, GuardConfig};
    /// let err = GuardConfig::from_toml_str("[defaults.rate]\nlimit = \"many\"").unwrap_err();
    /// assert_eq!(err.kind(), ConfigErrorKind::BadValue);
    /// assert_eq!(err.key(), Some("defaults.rate.limit"));
    /// ```
    pub fn from_toml_str(text: &str) -> Result<GuardConfig, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Syntax,
                None,
                format!("invalid TOML: {}", e.message().trim_end()),
            )
        })?;
        let config: GuardConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().message().trim_end().to_owned();
            let kind = if message.starts_with("unknown field") {
                ConfigErrorKind::UnknownKey
            } else {
                ConfigErrorKind::BadValue
            };
            let key = (key != ".").then_some(key);
            ConfigError::new(kind, key, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    ///
    /// [`Io`](ConfigErrorKind::Io) if the file cannot be read, else as
    /// [`from_toml_str`](GuardConfig::from_toml_str).
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/document.toml");
    /// assert_eq!(GuardConfig::from_toml_file(path)?, GuardConfig::document_preset());
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<GuardConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                None,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        GuardConfig::from_toml_str(&text)
    }

    /// The configuration as TOML that [`from_toml_str`](GuardConfig::from_toml_str) reads
    /// back equal.
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let preset = GuardConfig::document_preset();
    /// assert_eq!(GuardConfig::from_toml_str(&preset.to_toml_string())?, preset);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks every value's range and every route's resolved settings (see the
    /// [module docs](self) for the rules).
    ///
    /// # Errors
    ///
    /// The first problem, as a [`ConfigError`] of kind [`Invalid`](ConfigErrorKind::Invalid)
    /// naming the key where the bad value is written.
    ///
    /// ```
    /// use timefuse_guard::config::{BreakerSection, GuardConfig, RouteConfig};
    /// let config = GuardConfig::default()
    ///     .with_route("pay", RouteConfig::default().with_breaker(BreakerSection::count_based(0)));
    /// assert_eq!(config.validate().unwrap_err().key(), Some("routes.pay.breaker.calls"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.defaults.validate("defaults")?;
        for (name, route) in &self.routes {
            let prefix = format!("routes.{}", quote_key(name));
            if name.is_empty() {
                return Err(invalid(prefix, "a route needs a name"));
            }
            route.validate(&prefix)?;
            self.route(name)?;
        }
        Ok(())
    }

    /// The settings of route `name`: its section over `[defaults]` over the built-in defaults.
    /// A name without a section gets `[defaults]`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the merged settings contradict each other (a time-based window
    /// from the defaults and a count-based one from the route, say).
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let config = GuardConfig::from_toml_str("[defaults.bulkhead]\nmax_concurrent = 8\n[routes.pay.bulkhead]\nenabled = false")?;
    /// assert_eq!(config.route("search")?.bulkhead.unwrap().max_concurrent, 8);
    /// assert!(config.route("pay")?.bulkhead.is_none());
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn route(&self, name: &str) -> Result<RouteSettings, ConfigError> {
        let empty = RouteConfig::default();
        let r = self.routes.get(name).unwrap_or(&empty);
        let d = &self.defaults;
        let prefix = if self.routes.contains_key(name) {
            format!("routes.{}", quote_key(name))
        } else {
            "defaults".to_owned()
        };
        let timeout = r
            .timeout
            .clone()
            .or_else(|| d.timeout.clone())
            .unwrap_or_default();

        macro_rules! pick {
            ($section:ident . $field:ident) => {
                r.$section
                    .as_ref()
                    .and_then(|s| s.$field.clone())
                    .or_else(|| d.$section.as_ref().and_then(|s| s.$field.clone()))
            };
        }
        let on = |present: bool, enabled: Option<bool>| present && enabled.unwrap_or(true);

        let admission = on(
            r.admission.is_some() || d.admission.is_some(),
            pick!(admission.enabled),
        );

        let rate = on(r.rate.is_some() || d.rate.is_some(), pick!(rate.enabled)).then(|| {
            let limit = pick!(rate.limit).unwrap_or(100);
            let distributed_present = r.rate.as_ref().is_some_and(|s| s.distributed.is_some())
                || d.rate.as_ref().is_some_and(|s| s.distributed.is_some());
            let dist = |f: fn(&DistributedConfig) -> Option<String>| {
                r.rate
                    .as_ref()
                    .and_then(|s| s.distributed.as_ref())
                    .and_then(f)
                    .or_else(|| {
                        d.rate
                            .as_ref()
                            .and_then(|s| s.distributed.as_ref())
                            .and_then(f)
                    })
            };
            let dist_enabled =
                dist(|c| c.enabled.map(|b| b.to_string())).is_none_or(|s| s == "true");
            RateSettings {
                limit,
                per: pick!(rate.per).map_or(Duration::from_secs(1), |d| d.0),
                burst: pick!(rate.burst).unwrap_or(limit),
                max_wait: pick!(rate.max_wait).map_or(Duration::from_millis(500), |d| d.0),
                key: pick!(rate.key).unwrap_or_default(),
                distributed: (distributed_present && dist_enabled).then(|| DistributedSettings {
                    url: dist(|c| c.url.clone())
                        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
                    prefix: dist(|c| c.prefix.clone()).unwrap_or_else(|| "timefuse:rl".to_owned()),
                    on_outage: match dist(|c| c.on_outage.map(|o| format!("{o:?}"))).as_deref() {
                        Some("Closed") => OnOutage::Closed,
                        _ => OnOutage::Open,
                    },
                    timeout: dist(|c| c.timeout.map(|t| t.to_string()))
                        .and_then(|t| parse_duration(&t).ok())
                        .unwrap_or(Duration::from_millis(50)),
                }),
            }
        });

        let breaker = if on(
            r.breaker.is_some() || d.breaker.is_some(),
            pick!(breaker.enabled),
        ) {
            // The route's window kind wins as a whole over the defaults' one.
            let (window, calls) = match &r.breaker {
                Some(b) if b.window.is_some() || b.calls.is_some() => (b.window, b.calls),
                _ => match &d.breaker {
                    Some(b) => (b.window, b.calls),
                    None => (None, None),
                },
            };
            if window.is_some() && calls.is_some() {
                return Err(invalid(
                    format!("{prefix}.breaker.calls"),
                    "set either window (time-based) or calls (count-based), not both",
                ));
            }
            Some(BreakerSettings {
                name: name.to_owned(),
                window: window.map(|w| w.0),
                calls: if window.is_some() {
                    None
                } else {
                    Some(calls.unwrap_or(100))
                },
                minimum_calls: pick!(breaker.minimum_calls).unwrap_or(100),
                failure_rate: pick!(breaker.failure_rate).unwrap_or(50.0),
                slow_rate: pick!(breaker.slow_rate).unwrap_or(100.0),
                slow_call: pick!(breaker.slow_call).map_or(Duration::from_secs(60), |d| d.0),
                wait_in_open: pick!(breaker.wait_in_open).map_or(Duration::from_secs(60), |d| d.0),
                half_open_calls: pick!(breaker.half_open_calls).unwrap_or(10),
                max_wait_in_half_open: pick!(breaker.max_wait_in_half_open)
                    .map_or(Duration::ZERO, |d| d.0),
            })
        } else {
            None
        };

        let bulkhead = on(
            r.bulkhead.is_some() || d.bulkhead.is_some(),
            pick!(bulkhead.enabled),
        )
        .then(|| BulkheadSettings {
            max_concurrent: pick!(bulkhead.max_concurrent).unwrap_or(25) as usize,
            max_wait: pick!(bulkhead.max_wait).map_or(Duration::ZERO, |d| d.0),
        });

        let retry = on(r.retry.is_some() || d.retry.is_some(), pick!(retry.enabled)).then(|| {
            RetrySettings {
                max_attempts: pick!(retry.max_attempts).unwrap_or(3),
                per_try: pick!(retry.per_try).map(|d| d.0),
                backoff_base: pick!(retry.backoff_base).map_or(Duration::from_millis(25), |d| d.0),
                backoff_max: pick!(retry.backoff_max).map_or(Duration::from_millis(250), |d| d.0),
                budget_ratio: pick!(retry.budget_ratio).unwrap_or(0.2),
                budget_min_per_sec: pick!(retry.budget_min_per_sec).unwrap_or(10),
                budget_ttl: pick!(retry.budget_ttl).map_or(Duration::from_secs(10), |d| d.0),
                retry_refusals: pick!(retry.retry_refusals).unwrap_or(false),
            }
        });
        if let Some(retry) = &retry
            && retry.backoff_base > retry.backoff_max
        {
            return Err(invalid(
                format!("{prefix}.retry.backoff_base"),
                format!(
                    "{} exceeds backoff_max ({})",
                    ConfigDuration(retry.backoff_base),
                    ConfigDuration(retry.backoff_max)
                ),
            ));
        }

        let fallback = FallbackSettings {
            kind: pick!(fallback.kind).unwrap_or_default(),
            max_age: pick!(fallback.max_age).map_or(Duration::from_secs(30), |d| d.0),
            on_failure: pick!(fallback.on_failure).unwrap_or(false),
            up_front: pick!(fallback.up_front).unwrap_or(true),
        };

        Ok(RouteSettings {
            name: name.to_owned(),
            timeout,
            admission,
            rate,
            breaker,
            bulkhead,
            retry,
            fallback,
        })
    }
}

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::new(ConfigErrorKind::Invalid, Some(key), message)
}

/// Field-by-field range checks on one section as written.
struct Check<'a> {
    prefix: &'a str,
}

impl Check<'_> {
    fn fail(&self, key: &str, message: impl Into<String>) -> Result<(), ConfigError> {
        Err(invalid(format!("{}.{key}", self.prefix), message))
    }

    fn range_u32(
        &self,
        key: &str,
        v: Option<u32>,
        lo: u32,
        hi: u32,
        msg: &str,
    ) -> Result<(), ConfigError> {
        match v {
            Some(v) if v < lo || v > hi => self.fail(key, msg),
            _ => Ok(()),
        }
    }

    fn duration(
        &self,
        key: &str,
        v: Option<ConfigDuration>,
        lo: Duration,
        hi: Duration,
        msg: &str,
    ) -> Result<(), ConfigError> {
        match v {
            Some(ConfigDuration(v)) if v < lo || v > hi => self.fail(key, msg),
            _ => Ok(()),
        }
    }

    fn percent(&self, key: &str, v: Option<f64>) -> Result<(), ConfigError> {
        match v {
            Some(v) if !(v > 0.0 && v <= 100.0) => self.fail(key, "must be in (0, 100]"),
            _ => Ok(()),
        }
    }
}

const NS: Duration = Duration::from_nanos(1);

impl RouteConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if let Some(rate) = &self.rate {
            let prefix = format!("{prefix}.rate");
            let c = Check { prefix: &prefix };
            c.range_u32("limit", rate.limit, 1, u32::MAX, "must be at least 1")?;
            c.range_u32("burst", rate.burst, 1, u32::MAX, "must be at least 1")?;
            c.duration("per", rate.per, NS, MAX_DURATION, "must be in (0, 24h]")?;
            c.duration(
                "max_wait",
                rate.max_wait,
                Duration::ZERO,
                MAX_DURATION,
                "must be at most 24h",
            )?;
            if let Some(dist) = &rate.distributed {
                let prefix = format!("{prefix}.distributed");
                let c = Check { prefix: &prefix };
                if let Some(url) = &dist.url
                    && !["redis://", "rediss://", "unix://", "redis+unix://"]
                        .iter()
                        .any(|scheme| url.starts_with(scheme))
                {
                    c.fail("url", "must start with redis://, rediss:// or unix://")?;
                }
                if let Some(p) = &dist.prefix
                    && (p.is_empty() || p.chars().any(char::is_whitespace))
                {
                    c.fail("prefix", "must be non-empty, without spaces")?;
                }
                c.duration(
                    "timeout",
                    dist.timeout,
                    NS,
                    MAX_DURATION,
                    "must be in (0, 24h]",
                )?;
            }
        }
        if let Some(b) = &self.breaker {
            let prefix = format!("{prefix}.breaker");
            let c = Check { prefix: &prefix };
            if b.window.is_some() && b.calls.is_some() {
                c.fail(
                    "calls",
                    "set either window (time-based) or calls (count-based), not both",
                )?;
            }
            if let Some(w) = b.window
                && (w.0 < Duration::from_secs(1)
                    || w.0 > Duration::from_secs(3600)
                    || w.0.subsec_nanos() != 0)
            {
                c.fail("window", "must be whole seconds in [1s, 3600s]")?;
            }
            c.range_u32("calls", b.calls, 1, 1 << 20, "must be in 1..=1048576")?;
            c.range_u32(
                "minimum_calls",
                b.minimum_calls,
                1,
                u32::MAX,
                "must be at least 1",
            )?;
            c.percent("failure_rate", b.failure_rate)?;
            c.percent("slow_rate", b.slow_rate)?;
            c.duration(
                "slow_call",
                b.slow_call,
                NS,
                MAX_DURATION,
                "must be in (0, 24h]",
            )?;
            c.duration(
                "wait_in_open",
                b.wait_in_open,
                NS,
                MAX_DURATION,
                "must be in (0, 24h]",
            )?;
            c.range_u32(
                "half_open_calls",
                b.half_open_calls,
                1,
                1023,
                "must be in 1..=1023",
            )?;
            c.duration(
                "max_wait_in_half_open",
                b.max_wait_in_half_open,
                Duration::ZERO,
                MAX_DURATION,
                "must be at most 24h",
            )?;
        }
        if let Some(b) = &self.bulkhead {
            let prefix = format!("{prefix}.bulkhead");
            let c = Check { prefix: &prefix };
            c.range_u32(
                "max_concurrent",
                b.max_concurrent,
                1,
                1 << 20,
                "must be in 1..=1048576",
            )?;
            c.duration(
                "max_wait",
                b.max_wait,
                Duration::ZERO,
                MAX_DURATION,
                "must be at most 24h",
            )?;
        }
        if let Some(r) = &self.retry {
            let prefix = format!("{prefix}.retry");
            let c = Check { prefix: &prefix };
            c.range_u32("max_attempts", r.max_attempts, 1, 10, "must be in 1..=10")?;
            c.duration(
                "per_try",
                r.per_try,
                NS,
                MAX_DURATION,
                "must be in (0, 24h]",
            )?;
            c.duration(
                "backoff_base",
                r.backoff_base,
                Duration::ZERO,
                MAX_DURATION,
                "must be at most 24h",
            )?;
            c.duration(
                "backoff_max",
                r.backoff_max,
                Duration::ZERO,
                MAX_DURATION,
                "must be at most 24h",
            )?;
            if let Some(ratio) = r.budget_ratio
                && !(0.0..=10.0).contains(&ratio)
            {
                c.fail("budget_ratio", "must be in [0, 10] (0.2 is 20 %)")?;
            }
            c.duration(
                "budget_ttl",
                r.budget_ttl,
                Duration::from_secs(1),
                Duration::from_secs(60),
                "must be in [1s, 60s]",
            )?;
            if let (Some(base), Some(max)) = (r.backoff_base, r.backoff_max)
                && base > max
            {
                c.fail(
                    "backoff_base",
                    format!("{base} exceeds backoff_max ({max})"),
                )?;
            }
        }
        if let Some(f) = &self.fallback {
            let prefix = format!("{prefix}.fallback");
            let c = Check { prefix: &prefix };
            c.duration(
                "max_age",
                f.max_age,
                NS,
                MAX_DURATION,
                "must be in (0, 24h]",
            )?;
            if f.max_age.is_some() && f.kind.is_some_and(|k| k != FallbackKind::StaleCache) {
                c.fail("max_age", "applies only to kind = \"stale_cache\"")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved settings

/// One route's settings, resolved from the matrix by [`GuardConfig::route`]: what the stack
/// builder turns into layers. A guard that is off is `None`.
///
/// ```
/// use timefuse_guard::config::GuardConfig;
/// let pay = GuardConfig::document_preset().route("pay")?;
/// assert_eq!(pay.name, "pay");
/// assert!(pay.admission && pay.rate.is_some() && pay.breaker.is_some());
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouteSettings {
    /// The route's name.
    pub name: String,
    /// The request budget.
    pub timeout: TimeoutPolicy,
    /// Deadline admission on.
    pub admission: bool,
    /// The rate limiter.
    pub rate: Option<RateSettings>,
    /// The circuit breaker.
    pub breaker: Option<BreakerSettings>,
    /// The bulkhead.
    pub bulkhead: Option<BulkheadSettings>,
    /// Retries.
    pub retry: Option<RetrySettings>,
    /// The fallback.
    pub fallback: FallbackSettings,
}

/// A route's rate limit.
///
/// ```
/// use timefuse_guard::config::GuardConfig;
/// let pay = GuardConfig::document_preset().route("pay")?;
/// let rate = pay.rate.unwrap();
/// assert_eq!((rate.limit, rate.burst), (100, 100));
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateSettings {
    /// Calls per `per`.
    pub limit: u32,
    /// The period.
    pub per: Duration,
    /// The burst.
    pub burst: u32,
    /// The longest wait for a permit.
    pub max_wait: Duration,
    /// Global or keyed.
    pub key: RateKey,
    /// On Redis, if distributed.
    pub distributed: Option<DistributedSettings>,
}

/// A distributed limit's Redis settings.
///
/// ```
/// use timefuse_guard::config::GuardConfig;
/// let config = GuardConfig::from_toml_str("[defaults.rate.distributed]")?;
/// let d = config.route("x")?.rate.unwrap().distributed.unwrap();
/// assert_eq!((d.url.as_str(), d.prefix.as_str()), ("redis://127.0.0.1:6379", "timefuse:rl"));
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DistributedSettings {
    /// The Redis URL.
    pub url: String,
    /// The key prefix.
    pub prefix: String,
    /// Open or closed while Redis is unreachable.
    pub on_outage: OnOutage,
    /// The longest wait for Redis's answer.
    pub timeout: Duration,
}

/// A route's circuit breaker.
///
/// ```
/// use timefuse_guard::config::GuardConfig;
/// let pay = GuardConfig::document_preset().route("pay")?;
/// let breaker = pay.breaker.unwrap();
/// assert_eq!((breaker.failure_rate, breaker.half_open_calls), (50.0, 10));
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerSettings {
    /// The breaker's name: the route's.
    pub name: String,
    /// A time-based window's span, or
    pub window: Option<Duration>,
    /// a count-based window's size.
    pub calls: Option<u32>,
    /// Calls needed before the rates count.
    pub minimum_calls: u32,
    /// Open at this failure rate, in percent.
    pub failure_rate: f64,
    /// Open at this slow-call rate, in percent.
    pub slow_rate: f64,
    /// A call slower than this is slow.
    pub slow_call: Duration,
    /// How long the circuit stays open.
    pub wait_in_open: Duration,
    /// Probes let through when half-open.
    pub half_open_calls: u32,
    /// The longest the circuit stays half-open.
    pub max_wait_in_half_open: Duration,
}

/// A route's bulkhead.
///
/// ```
/// use timefuse_guard::config::GuardConfig;
/// let pay = GuardConfig::document_preset().route("pay")?;
/// assert_eq!(pay.bulkhead.unwrap().max_concurrent, 25);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadSettings {
    /// Calls in flight at most.
    pub max_concurrent: usize,
    /// The longest wait for a permit.
    pub max_wait: Duration,
}

/// A route's retries.
///
/// ```
/// use timefuse_guard::config::GuardConfig;
/// let pay = GuardConfig::document_preset().route("pay")?;
/// assert_eq!(pay.retry.unwrap().budget_ratio, 0.2);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetrySettings {
    /// Attempts in all.
    pub max_attempts: u32,
    /// The per-try cap.
    pub per_try: Option<Duration>,
    /// The first retry's backoff bound.
    pub backoff_base: Duration,
    /// The largest backoff bound.
    pub backoff_max: Duration,
    /// Share of requests that may be retried.
    pub budget_ratio: f64,
    /// Free retries per second.
    pub budget_min_per_sec: u32,
    /// The budget's window.
    pub budget_ttl: Duration,
    /// Retry refusals too.
    pub retry_refusals: bool,
}

/// A route's fallback choice.
///
/// ```
/// use timefuse_guard::config::{FallbackKind, GuardConfig};
/// let pay = GuardConfig::document_preset().route("pay")?;
/// assert_eq!(pay.fallback.kind, FallbackKind::DefaultResponse);
/// # Ok::<(), timefuse_guard::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackSettings {
    /// Which fallback.
    pub kind: FallbackKind,
    /// The oldest cached response served.
    pub max_age: Duration,
    /// Also answer the callee's own failures.
    pub on_failure: bool,
    /// Answer at once when the request should degrade.
    pub up_front: bool,
}

#[cfg(feature = "rate-limit")]
impl RateSettings {
    /// The [`Rate`](crate::rate_limit::Rate).
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let rate = GuardConfig::document_preset().route("x")?.rate.unwrap().rate();
    /// assert_eq!(rate, timefuse_guard::rate_limit::Rate::per_second(100));
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn rate(&self) -> crate::rate_limit::Rate {
        crate::rate_limit::Rate::new(self.limit, self.per).with_burst(self.burst)
    }

    /// The [`WaitMode`](crate::rate_limit::WaitMode): `NoWait` for a zero `max_wait`.
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// use timefuse_guard::rate_limit::WaitMode;
    /// let config = GuardConfig::from_toml_str("[defaults.rate]\nmax_wait = 0")?;
    /// assert_eq!(config.route("x")?.rate.unwrap().wait_mode(), WaitMode::NoWait);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn wait_mode(&self) -> crate::rate_limit::WaitMode {
        if self.max_wait.is_zero() {
            crate::rate_limit::WaitMode::NoWait
        } else {
            crate::rate_limit::WaitMode::UpTo(self.max_wait)
        }
    }
}

#[cfg(feature = "breaker")]
impl BreakerSettings {
    /// The [`BreakerConfig`](crate::breaker::BreakerConfig).
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let config = GuardConfig::document_preset().route("pay")?.breaker.unwrap().to_config();
    /// assert_eq!(config.name(), "pay");
    /// assert_eq!(config.get_failure_rate_threshold(), 50.0);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn to_config(&self) -> crate::breaker::BreakerConfig {
        use crate::breaker::{BreakerConfig, SlidingWindow};
        let window = match (self.window, self.calls) {
            (Some(span), _) => SlidingWindow::time_based(span),
            (None, Some(calls)) => SlidingWindow::CountBased(calls),
            (None, None) => SlidingWindow::default(),
        };
        BreakerConfig::new(self.name.as_str())
            .sliding_window(window)
            .minimum_calls(self.minimum_calls)
            .failure_rate_threshold(self.failure_rate)
            .slow_call_rate_threshold(self.slow_rate)
            .slow_call_duration_threshold(self.slow_call)
            .wait_in_open(self.wait_in_open)
            .permitted_calls_in_half_open(self.half_open_calls)
            .max_wait_in_half_open(self.max_wait_in_half_open)
    }
}

#[cfg(feature = "retry")]
impl RetrySettings {
    /// The [`RetryPolicy`](crate::retry::RetryPolicy).
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let pay = GuardConfig::document_preset().route("pay")?;
    /// assert_eq!(pay.retry.unwrap().policy().attempts(), 3);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy::default()
            .max_attempts(self.max_attempts.max(1))
            .backoff(crate::retry::Backoff::Exponential {
                base: self.backoff_base,
                max: self.backoff_max,
            })
            .retry_refusals(self.retry_refusals)
    }

    /// The [`RetryBudget`](crate::retry::RetryBudget) (a new one: share it by cloning).
    ///
    /// # Panics
    ///
    /// If the settings were not validated (a ttl outside `[1 s, 60 s]`, a ratio outside
    /// `[0, 10]`); [`GuardConfig::route`] only returns validated settings.
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let pay = GuardConfig::document_preset().route("pay")?;
    /// assert_eq!(pay.retry.unwrap().budget().min_per_sec(), 10);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn budget(&self) -> crate::retry::RetryBudget {
        crate::retry::RetryBudget::new(self.budget_ttl, self.budget_min_per_sec, self.budget_ratio)
    }
}

#[cfg(feature = "fallback")]
impl FallbackSettings {
    /// The [`Triggers`](crate::fallback::Triggers).
    ///
    /// ```
    /// use timefuse_guard::config::GuardConfig;
    /// let pay = GuardConfig::document_preset().route("pay")?;
    /// assert!(pay.fallback.triggers().should_degrade);
    /// # Ok::<(), timefuse_guard::config::ConfigError>(())
    /// ```
    pub fn triggers(&self) -> crate::fallback::Triggers {
        crate::fallback::Triggers {
            failures: self.on_failure,
            should_degrade: self.up_front,
            ..crate::fallback::Triggers::default()
        }
    }
}
