//! Fault scenarios: what load to offer and how each of the five services misbehaves, read from
//! TOML (`scenarios/*.toml`).
//!
//! Per service: a latency distribution with a heavy tail (lognormal or Pareto, capped), an
//! error rate, a hang probability (the call never answers until its caller gives up), the size
//! of its connection pool, and timed partitions (the service is black-holed from `start` for
//! `duration`). Unknown keys and impossible values are rejected with the key named
//! (`services.risk.latency.sigma: must be > 0`). `docs/demo.md` is the file reference.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The five services of the chain, in call order.
pub const SERVICES: [&str; 5] = ["order", "risk", "deduct", "ledger", "notify"];

/// The scenario the `demo` command runs when none is named.
pub const DEFAULT_SCENARIO: &str = "slow-risk";

/// The shipped scenarios, by name, with their TOML text.
pub const SHIPPED: [(&str, &str); 4] = [
    ("steady", include_str!("../scenarios/steady.toml")),
    ("slow-risk", include_str!("../scenarios/slow-risk.toml")),
    (
        "ledger-partition",
        include_str!("../scenarios/ledger-partition.toml"),
    ),
    ("storm", include_str!("../scenarios/storm.toml")),
];

/// A duration written as `"20ms"`, `"1.5s"`, `"250us"` or a bare integer of milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `"20ms"`, `"1.5s"`, `"250us"`, `"2m"`, or a bare number of milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_demo::scenario::Dur;
    /// assert_eq!(Dur::parse("1.5s").unwrap().0, Duration::from_millis(1500));
    /// assert_eq!(Dur::parse("40ms").unwrap().0, Duration::from_millis(40));
    /// assert!(Dur::parse("-3ms").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Dur, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a duration such as \"40ms\" or \"1.5s\""))?;
        let scale = match unit.trim() {
            "" | "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "s" => 1.0,
            "m" => 60.0,
            other => return Err(format!("unknown unit `{other}` in `{text}` (us, ms, s, m)")),
        };
        let secs = value * scale;
        if !secs.is_finite() || secs > 86_400.0 {
            return Err(format!("`{text}` is out of range (at most 24 h)"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us.is_multiple_of(1000) {
            write!(f, "{}ms", us / 1000)
        } else {
            write!(f, "{us}us")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Dur(Duration::from_millis(ms))),
            Raw::Text(t) => Dur::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A latency distribution. Every sample is capped at `max` (default 30 s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// The latency.
        value: Dur,
    },
    /// Lognormal: `median · exp(sigma · N(0,1))`. `sigma` 1.0 puts P99 near 10× the median.
    Lognormal {
        /// The median.
        median: Dur,
        /// The standard deviation of the log; > 0.
        sigma: f64,
        /// The cap of a sample.
        #[serde(default)]
        max: Option<Dur>,
    },
    /// Pareto: `scale / U^(1/shape)`, the classic heavy tail; `shape` > 1 for a finite mean.
    Pareto {
        /// The minimum latency.
        scale: Dur,
        /// The tail index; > 1.
        shape: f64,
        /// The cap of a sample.
        #[serde(default)]
        max: Option<Dur>,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed {
            value: Dur(Duration::from_millis(2)),
        }
    }
}

/// The cap of a latency sample when the distribution names none.
pub const DEFAULT_LATENCY_CAP: Duration = Duration::from_secs(30);

impl Latency {
    /// Draws one latency.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        let (secs, max) = match self {
            Latency::Fixed { value } => return value.0,
            Latency::Lognormal { median, sigma, max } => {
                let z = standard_normal(rng);
                (median.0.as_secs_f64() * (sigma * z).exp(), *max)
            }
            Latency::Pareto { scale, shape, max } => {
                let u = 1.0 - rng.f64(); // (0, 1]
                (scale.0.as_secs_f64() / u.powf(1.0 / shape), *max)
            }
        };
        let cap = max.map_or(DEFAULT_LATENCY_CAP, |m| m.0);
        Duration::from_secs_f64(secs.clamp(0.0, cap.as_secs_f64()))
    }

    fn validate(&self, key: &str) -> Result<(), ScenarioError> {
        match self {
            Latency::Fixed { .. } => Ok(()),
            Latency::Lognormal { median, sigma, .. } => {
                if median.0.is_zero() {
                    return Err(ScenarioError::invalid(
                        format!("{key}.median"),
                        "must be > 0",
                    ));
                }
                if !(sigma.is_finite() && *sigma > 0.0 && *sigma <= 5.0) {
                    return Err(ScenarioError::invalid(
                        format!("{key}.sigma"),
                        "must be > 0 and at most 5",
                    ));
                }
                Ok(())
            }
            Latency::Pareto { scale, shape, .. } => {
                if scale.0.is_zero() {
                    return Err(ScenarioError::invalid(
                        format!("{key}.scale"),
                        "must be > 0",
                    ));
                }
                if !(shape.is_finite() && *shape > 1.0) {
                    return Err(ScenarioError::invalid(
                        format!("{key}.shape"),
                        "must be > 1 (a finite mean)",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Box–Muller.
fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A window in which a service is black-holed: requests to it get no answer until the window
/// ends (then they are processed, late, as TCP would deliver them) or their caller gives up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When it starts, from the start of the load.
    pub start: Dur,
    /// How long it lasts; > 0.
    pub duration: Dur,
}

/// How one service behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFaults {
    /// The time its database work takes, holding one pooled connection.
    #[serde(default)]
    pub latency: Latency,
    /// The share of calls that fail (before any effect), in [0, 1].
    #[serde(default)]
    pub error_rate: f64,
    /// The share of calls whose database work never answers, in [0, 1]: the connection is
    /// held until the caller's budget (or the hop's own timeout) ends it.
    #[serde(default)]
    pub hang_probability: f64,
    /// Connections in its pool; a call waits for one within its budget. 1 ..= 10 000.
    #[serde(default = "default_pool")]
    pub pool: u32,
    /// Timed partitions.
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

fn default_pool() -> u32 {
    32
}

impl Default for ServiceFaults {
    fn default() -> Self {
        ServiceFaults {
            latency: Latency::default(),
            error_rate: 0.0,
            hang_probability: 0.0,
            pool: default_pool(),
            partitions: Vec::new(),
        }
    }
}

impl ServiceFaults {
    fn validate(&self, key: &str) -> Result<(), ScenarioError> {
        self.latency.validate(&format!("{key}.latency"))?;
        for (name, p) in [
            ("error_rate", self.error_rate),
            ("hang_probability", self.hang_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ScenarioError::invalid(
                    format!("{key}.{name}"),
                    "must be within [0, 1]",
                ));
            }
        }
        if !(1..=10_000).contains(&self.pool) {
            return Err(ScenarioError::invalid(
                format!("{key}.pool"),
                "must be within 1 ..= 10000",
            ));
        }
        for (i, p) in self.partitions.iter().enumerate() {
            if p.duration.0.is_zero() {
                return Err(ScenarioError::invalid(
                    format!("{key}.partitions[{i}].duration"),
                    "must be > 0",
                ));
            }
        }
        Ok(())
    }

    /// True while a partition window covers `t` (time since the start of the load).
    pub fn partitioned_at(&self, t: Duration) -> Option<Duration> {
        self.partitions
            .iter()
            .find(|p| t >= p.start.0 && t < p.start.0 + p.duration.0)
            .map(|p| p.start.0 + p.duration.0 - t)
    }
}

/// The five services' behaviour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The order service (the chain's entry).
    #[serde(default)]
    pub order: ServiceFaults,
    /// The risk check.
    #[serde(default)]
    pub risk: ServiceFaults,
    /// The charge.
    #[serde(default)]
    pub deduct: ServiceFaults,
    /// The ledger entry.
    #[serde(default)]
    pub ledger: ServiceFaults,
    /// The notification.
    #[serde(default)]
    pub notify: ServiceFaults,
}

impl Services {
    /// The faults of the service `name` (one of [`SERVICES`]).
    pub fn get(&self, name: &str) -> Option<&ServiceFaults> {
        match name {
            "order" => Some(&self.order),
            "risk" => Some(&self.risk),
            "deduct" => Some(&self.deduct),
            "ledger" => Some(&self.ledger),
            "notify" => Some(&self.notify),
            _ => None,
        }
    }
}

/// The load offered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Orders per second (open loop): > 0, at most 20 000.
    pub rate: f64,
    /// A second, higher rate at which `timefuse demo` also runs the scenario when no rate is
    /// given on the command line: the stress point of a load test (the document's figures are
    /// peak-load figures). Above `rate`, at most 20 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress_rate: Option<f64>,
    /// How long each strategy is loaded.
    pub duration: Dur,
    /// Accounts to pay from.
    #[serde(default = "default_accounts")]
    pub accounts: u32,
    /// Each account's opening balance, in cents.
    #[serde(default = "default_balance")]
    pub balance: i64,
    /// The smallest order, in cents.
    #[serde(default = "default_amount_min")]
    pub amount_min: i64,
    /// The largest order, in cents.
    #[serde(default = "default_amount_max")]
    pub amount_max: i64,
    /// The seed of every random draw of the run.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_accounts() -> u32 {
    1000
}
fn default_balance() -> i64 {
    10_000_000
}
fn default_amount_min() -> i64 {
    100
}
fn default_amount_max() -> i64 {
    20_000
}
fn default_seed() -> u64 {
    7
}

/// The defenses on order's calls (timefuse-guard): the same for every strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    /// Orders admitted per second by order's rate limiter (GCRA); the rest are shed.
    #[serde(default = "default_limit")]
    pub order_rate_limit: u32,
    /// The breaker opens at this failure rate, in percent (0, 100].
    #[serde(default = "default_failure_rate")]
    pub breaker_failure_rate: f64,
    /// Calls in the breaker's count-based window.
    #[serde(default = "default_window")]
    pub breaker_window: u32,
    /// Calls needed before the breaker judges.
    #[serde(default = "default_minimum_calls")]
    pub breaker_minimum_calls: u32,
    /// How long an open breaker stays open before probing.
    #[serde(default = "default_open")]
    pub breaker_open: Dur,
}

fn default_limit() -> u32 {
    2000
}
fn default_failure_rate() -> f64 {
    50.0
}
fn default_window() -> u32 {
    100
}
fn default_minimum_calls() -> u32 {
    50
}
fn default_open() -> Dur {
    Dur(Duration::from_secs(2))
}

impl Default for GuardSpec {
    fn default() -> Self {
        GuardSpec {
            order_rate_limit: default_limit(),
            breaker_failure_rate: default_failure_rate(),
            breaker_window: default_window(),
            breaker_minimum_calls: default_minimum_calls(),
            breaker_open: default_open(),
        }
    }
}

/// A fault scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (the file name without `.toml` for shipped ones).
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The load.
    pub load: LoadSpec,
    /// The defenses.
    #[serde(default)]
    pub guard: GuardSpec,
    /// The services.
    #[serde(default)]
    pub services: Services,
}

/// A scenario that cannot be used; names the key when one is at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The dotted key (`services.risk.error_rate`), when one is at fault.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ScenarioError {
    fn invalid(key: String, message: &str) -> ScenarioError {
        ScenarioError {
            key: Some(key),
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{k}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Parses and validates a scenario.
    ///
    /// ```
    /// use timefuse_demo::scenario::Scenario;
    /// let err = Scenario::from_toml_str(
    ///     "name = \"x\"\n[load]\nrate = 10\nduration = \"1s\"\n[services.risk]\nlatncy = 3",
    /// )
    /// .unwrap_err();
    /// assert_eq!(err.key.as_deref(), Some("services.risk.latncy"));
    /// let err = Scenario::from_toml_str(
    ///     "name = \"x\"\n[load]\nrate = 10\nduration = \"1s\"\n[services.risk]\nerror_rate = 1.5",
    /// )
    /// .unwrap_err();
    /// assert_eq!(err.to_string(), "services.risk.error_rate: must be within [0, 1]");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ScenarioError {
            key: None,
            message: format!("invalid TOML: {}", e.message().trim_end()),
        })?;
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut key = e.path().to_string();
            let message = e.inner().message().trim_end().to_owned();
            // serde_path_to_error stops at the table holding an unknown key: add the key.
            if let Some(rest) = message.strip_prefix("unknown field `")
                && let Some(field) = rest.split('`').next()
            {
                if key == "." {
                    key = field.to_owned();
                } else if !key.ends_with(&format!(".{field}")) && key != field {
                    key = format!("{key}.{field}");
                }
            }
            ScenarioError {
                key: (key != ".").then_some(key),
                message,
            }
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads a scenario file, or a shipped scenario by name (`slow-risk`).
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((_, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::from_toml_str(text);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            key: None,
            message: format!(
                "cannot read scenario `{name_or_path}` ({e}); shipped ones: {}",
                SHIPPED.map(|(n, _)| n).join(", ")
            ),
        })?;
        Scenario::from_toml_str(&text)
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let l = &self.load;
        if !(l.rate.is_finite() && l.rate > 0.0 && l.rate <= 20_000.0) {
            return Err(ScenarioError::invalid(
                "load.rate".into(),
                "must be > 0 and at most 20000 orders/s",
            ));
        }
        if let Some(stress) = l.stress_rate
            && !(stress.is_finite() && stress > l.rate && stress <= 20_000.0)
        {
            return Err(ScenarioError::invalid(
                "load.stress_rate".into(),
                "must be above load.rate and at most 20000 orders/s",
            ));
        }
        if l.duration.0.is_zero() || l.duration.0 > Duration::from_secs(3600) {
            return Err(ScenarioError::invalid(
                "load.duration".into(),
                "must be > 0 and at most 1 h",
            ));
        }
        if l.accounts == 0 {
            return Err(ScenarioError::invalid(
                "load.accounts".into(),
                "must be > 0",
            ));
        }
        if l.amount_min <= 0 {
            return Err(ScenarioError::invalid(
                "load.amount_min".into(),
                "must be > 0",
            ));
        }
        if l.amount_max < l.amount_min {
            return Err(ScenarioError::invalid(
                "load.amount_max".into(),
                "must be at least load.amount_min",
            ));
        }
        if l.balance < 0 {
            return Err(ScenarioError::invalid(
                "load.balance".into(),
                "must be >= 0",
            ));
        }
        let g = &self.guard;
        if g.order_rate_limit == 0 {
            return Err(ScenarioError::invalid(
                "guard.order_rate_limit".into(),
                "must be > 0",
            ));
        }
        if !(g.breaker_failure_rate > 0.0 && g.breaker_failure_rate <= 100.0) {
            return Err(ScenarioError::invalid(
                "guard.breaker_failure_rate".into(),
                "must be within (0, 100]",
            ));
        }
        if g.breaker_window == 0 || g.breaker_minimum_calls == 0 {
            return Err(ScenarioError::invalid(
                "guard.breaker_window".into(),
                "breaker_window and breaker_minimum_calls must be > 0",
            ));
        }
        if g.breaker_open.0.is_zero() {
            return Err(ScenarioError::invalid(
                "guard.breaker_open".into(),
                "must be > 0",
            ));
        }
        for name in SERVICES {
            let faults = self.services.get(name).expect("a known service");
            faults.validate(&format!("services.{name}"))?;
        }
        Ok(())
    }

    /// The scenario as TOML, to store next to a report.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }

    /// This scenario loaded for `duration` instead: the partition windows are scaled by the
    /// same factor, so a partition "from 40 % of the run for 20 % of it" stays that.
    pub fn with_duration(mut self, duration: Duration) -> Scenario {
        let old = self.load.duration.0.as_secs_f64();
        let factor = duration.as_secs_f64() / old;
        self.load.duration = Dur(duration);
        for name in SERVICES {
            let faults = match name {
                "order" => &mut self.services.order,
                "risk" => &mut self.services.risk,
                "deduct" => &mut self.services.deduct,
                "ledger" => &mut self.services.ledger,
                _ => &mut self.services.notify,
            };
            for p in &mut faults.partitions {
                p.start = Dur(p.start.0.mul_f64(factor));
                p.duration = Dur(p.duration.0.mul_f64(factor));
            }
        }
        self
    }

    /// Every partition window of the scenario: (service, start, end) from the start of the load.
    pub fn windows(&self) -> Vec<(&'static str, Duration, Duration)> {
        let mut out = Vec::new();
        for name in SERVICES {
            for p in &self.services.get(name).expect("known").partitions {
                out.push((name, p.start.0, p.start.0 + p.duration.0));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        for (name, text) in SHIPPED {
            let s = Scenario::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.name, name);
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let base = "name = \"x\"\n[load]\nrate = 10\nduration = \"1s\"\n";
        let err = Scenario::from_toml_str(&format!("{base}[services.riks]\npool = 3")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("services.riks"), "{err}");
        let err = Scenario::from_toml_str(&format!(
            "{base}[services.risk.latency]\ndist = \"lognormal\"\nmedian = \"5ms\"\nsigma = 1\nmu = 2"
        ))
        .unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("services.risk.latency.mu"),
            "{err}"
        );
        let err = Scenario::from_toml_str(&format!(
            "{base}[services.risk.latency]\ndist = \"lognormal\"\nmedian = \"5ms\"\nsigma = 0"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("services.risk.latency.sigma"));
        let err = Scenario::from_toml_str(&format!(
            "{base}[[services.ledger.partitions]]\nstart = \"1s\"\nduration = \"0s\""
        ))
        .unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("services.ledger.partitions[0].duration")
        );
        let err = Scenario::from_toml_str("name = \"x\"\n[load]\nrate = -1\nduration = \"1s\"")
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("load.rate"));
        for bad in ["5", "10", "nan", "inf", "30000"] {
            let err = Scenario::from_toml_str(&format!(
                "name = \"x\"\n[load]\nrate = 10\nstress_rate = {bad}\nduration = \"1s\""
            ))
            .unwrap_err();
            assert_eq!(err.key.as_deref(), Some("load.stress_rate"), "{bad}: {err}");
        }
        let ok = Scenario::from_toml_str(
            "name = \"x\"\n[load]\nrate = 10\nstress_rate = 20\nduration = \"1s\"",
        )
        .unwrap();
        assert_eq!(ok.load.stress_rate, Some(20.0));
        let err = Scenario::from_toml_str("name = \"x\"\n[load]\nrate = 1\nduration = \"1parsec\"")
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("load.duration"), "{err}");
    }

    #[test]
    fn heavy_tails_are_heavy() {
        let mut rng = fastrand::Rng::with_seed(1);
        let l = Latency::Lognormal {
            median: Dur(Duration::from_millis(50)),
            sigma: 1.0,
            max: None,
        };
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| l.sample(&mut rng).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[10_000];
        let p99 = v[19_800];
        assert!((0.045..0.055).contains(&p50), "{p50}");
        assert!(p99 > 8.0 * p50, "{p99} vs {p50}");
    }

    #[test]
    fn with_duration_scales_partitions() {
        let s = Scenario::load("ledger-partition").unwrap();
        let full = s.windows();
        let half = s.clone().with_duration(s.load.duration.0 / 2).windows();
        assert_eq!(full[0].1 / 2, half[0].1);
    }
}
