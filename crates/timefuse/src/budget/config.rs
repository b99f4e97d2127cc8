//! Loading a [`TimeoutPolicy`] from TOML (the `config` feature).
//!
//! ```toml
//! global = "800ms"
//! reserve = "150ms"
//! floor = "50ms"
//! degrade_below = "300ms"
//!
//! [stage]
//! default = "5s"
//! risk = "3s"
//!
//! [downstream]
//! default = "2s"
//! ledger = "1s"
//! ```
//!
//! Every key is optional and takes its value from [`TimeoutPolicy::internal_grpc`] when absent.
//! A duration is a string, a number followed by a unit (`ns`, `us` or `µs`, `ms`, `s`, `m`,
//! `h`), or a bare TOML integer meaning milliseconds (`reserve = 150`). Decimals are accepted
//! when they come to a whole number of nanoseconds (`"1.5s"`, `"0.25ms"`); `"0"` alone is zero.
//! Signs, spaces, compound forms (`"1m30s"`) and floats (`reserve = 1.5`) are rejected.

use std::path::Path;
use std::time::Duration;

use super::policy::{PolicyError, PolicyErrorKind, TimeoutPolicy, key_path, quote_key};

const UNITS: &str = "ns, us, ms, s, m or h";
const TOP_KEYS: &str = "global, reserve, floor, degrade_below, [stage] and [downstream]";

impl TimeoutPolicy {
    /// Parses a policy from TOML text (see the [module docs](crate::budget) for the format) and
    /// [validates](TimeoutPolicy::validate) it. Missing keys take the values of
    /// [`TimeoutPolicy::internal_grpc`]. Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] of kind [`Syntax`](PolicyErrorKind::Syntax) for text that is not TOML,
    /// [`UnknownKey`](PolicyErrorKind::UnknownKey) naming a key the policy does not know,
    /// [`BadValue`](PolicyErrorKind::BadValue) naming the key and the value for a duration that
    /// does not parse or a value of the wrong type, and [`Invalid`](PolicyErrorKind::Invalid)
    /// when [`validate`](TimeoutPolicy::validate) fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::budget::{PolicyErrorKind, TimeoutPolicy};
    ///
    /// let policy = TimeoutPolicy::from_toml_str(r#"
    ///     global = "800ms"
    ///     reserve = 150          # a bare integer is milliseconds
    ///     [stage]
    ///     risk = "3s"
    ///     [downstream]
    ///     ledger = "1s"
    /// "#)?;
    /// assert_eq!(policy.reserve(), Duration::from_millis(150));
    /// assert_eq!(policy.stage_cap("risk"), Duration::from_secs(3));
    /// assert_eq!(policy.downstream_cap("ledger"), Duration::from_secs(1));
    ///
    /// let err = TimeoutPolicy::from_toml_str("[downstream]\nledger = \"1 second\"").unwrap_err();
    /// assert_eq!(err.kind(), PolicyErrorKind::BadValue);
    /// assert_eq!(err.key(), Some("downstream.ledger"));
    /// assert_eq!(err.value(), Some("1 second"));
    /// # Ok::<(), timefuse::budget::PolicyError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn from_toml_str(text: &str) -> Result<Self, PolicyError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            PolicyError::new(
                PolicyErrorKind::Syntax,
                None,
                format!("invalid TOML: {}", e.message()),
            )
            .with_source(e)
        })?;
        from_table(&table)
    }

    /// Reads and parses a policy file: [`from_toml_str`](TimeoutPolicy::from_toml_str) on the
    /// file's contents.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] of kind [`Io`](PolicyErrorKind::Io) naming the path if the file cannot
    /// be read as UTF-8 text, else any error of
    /// [`from_toml_str`](TimeoutPolicy::from_toml_str).
    ///
    /// ```
    /// use timefuse::budget::{PolicyErrorKind, TimeoutPolicy};
    ///
    /// let path = std::env::temp_dir().join(format!("timefuse-doc-policy-{}.toml", std::process::id()));
    /// std::fs::write(&path, "global = \"30s\"\n")?;
    /// let policy = TimeoutPolicy::from_toml_file(&path)?;
    /// assert_eq!(policy, TimeoutPolicy::http_edge());
    /// std::fs::remove_file(&path)?;
    ///
    /// let err = TimeoutPolicy::from_toml_file(&path).unwrap_err();
    /// assert_eq!(err.kind(), PolicyErrorKind::Io);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            PolicyError::new(
                PolicyErrorKind::Io,
                None,
                format!("cannot read {}: {e}", path.display()),
            )
            .with_source(e)
        })?;
        TimeoutPolicy::from_toml_str(&text)
    }

    /// The policy as TOML text that [`from_toml_str`](TimeoutPolicy::from_toml_str) reads back
    /// to an equal policy. Every key is written, each duration in the largest unit that
    /// represents it exactly.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let policy = TimeoutPolicy::http_edge().with_downstream_cap("ledger", Duration::from_millis(1500));
    /// let text = policy.to_toml_string();
    /// assert!(text.contains(r#"global = "30s""#));
    /// assert!(text.contains(r#"ledger = "1500ms""#));
    /// assert_eq!(TimeoutPolicy::from_toml_str(&text)?, policy);
    /// # Ok::<(), timefuse::budget::PolicyError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn to_toml_string(&self) -> String {
        self.to_table().to_string()
    }

    fn to_table(&self) -> toml::Table {
        let s = |d: Duration| toml::Value::String(format_duration(d));
        let caps = |default: Duration, caps: &std::collections::BTreeMap<String, Duration>| {
            let mut t = toml::Table::new();
            t.insert("default".to_owned(), s(default));
            t.extend(caps.iter().map(|(name, &cap)| (name.clone(), s(cap))));
            toml::Value::Table(t)
        };
        let mut t = toml::Table::new();
        t.insert("global".to_owned(), s(self.global()));
        t.insert("reserve".to_owned(), s(self.reserve()));
        t.insert("floor".to_owned(), s(self.floor()));
        t.insert("degrade_below".to_owned(), s(self.degrade_below()));
        t.insert(
            "stage".to_owned(),
            caps(self.default_stage_cap(), self.stage_caps()),
        );
        t.insert(
            "downstream".to_owned(),
            caps(self.default_downstream_cap(), self.downstream_caps()),
        );
        t
    }
}

/// Serialized as the TOML table [`TimeoutPolicy::to_toml_string`] writes, durations as strings.
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
impl serde::Serialize for TimeoutPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_table().serialize(serializer)
    }
}

/// Deserialized from the table [`TimeoutPolicy::from_toml_str`] reads, with the same checks, so
/// a policy can sit inside a larger configuration file.
///
/// ```
/// use timefuse::budget::TimeoutPolicy;
///
/// #[derive(serde::Deserialize)]
/// struct ServiceConfig {
///     name: String,
///     timeouts: TimeoutPolicy,
/// }
///
/// let config: ServiceConfig = toml::from_str(r#"
///     name = "payments"
///     [timeouts]
///     global = "30s"
/// "#)?;
/// assert_eq!(config.timeouts, TimeoutPolicy::http_edge());
/// # Ok::<(), toml::de::Error>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
impl<'de> serde::Deserialize<'de> for TimeoutPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        from_table(&table).map_err(serde::de::Error::custom)
    }
}

fn from_table(table: &toml::Table) -> Result<TimeoutPolicy, PolicyError> {
    let mut policy = TimeoutPolicy::internal_grpc();
    for (key, value) in table {
        policy = match key.as_str() {
            "global" => policy.with_global(duration_value(key, value)?),
            "reserve" => policy.with_reserve(duration_value(key, value)?),
            "floor" => policy.with_floor(duration_value(key, value)?),
            "degrade_below" => policy.with_degrade_below(duration_value(key, value)?),
            "stage" => {
                let mut policy = policy;
                for (name, value) in sub_table(key, value)? {
                    let cap = duration_value(&key_path(key, name), value)?;
                    policy = match name.as_str() {
                        "default" => policy.with_default_stage_cap(cap),
                        _ => policy.with_stage_cap(name.as_str(), cap),
                    };
                }
                policy
            }
            "downstream" => {
                let mut policy = policy;
                for (name, value) in sub_table(key, value)? {
                    let cap = duration_value(&key_path(key, name), value)?;
                    policy = match name.as_str() {
                        "default" => policy.with_default_downstream_cap(cap),
                        _ => policy.with_downstream_cap(name.as_str(), cap),
                    };
                }
                policy
            }
            _ => {
                let message = format!("unknown key (expected {TOP_KEYS})");
                return Err(PolicyError::new(
                    PolicyErrorKind::UnknownKey,
                    Some(quote_key(key)),
                    message,
                ));
            }
        };
    }
    policy.validate()?;
    Ok(policy)
}

fn sub_table<'a>(key: &str, value: &'a toml::Value) -> Result<&'a toml::Table, PolicyError> {
    match value {
        toml::Value::Table(t) => Ok(t),
        other => {
            let message = format!(
                "expected a table of caps by name, such as [{key}] default = \"2s\", found {}",
                other.type_str()
            );
            Err(wrong_type(key, other, message))
        }
    }
}

/// A bad-value error for `value` of the wrong type, quoting it if it is a scalar.
fn wrong_type(key: &str, value: &toml::Value, message: String) -> PolicyError {
    let quoted = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            return PolicyError::new(PolicyErrorKind::BadValue, Some(key.to_owned()), message);
        }
    };
    PolicyError::bad_value(key.to_owned(), &quoted, message)
}

fn duration_value(key: &str, value: &toml::Value) -> Result<Duration, PolicyError> {
    match value {
        toml::Value::String(s) => {
            parse_duration(s).map_err(|message| PolicyError::bad_value(key.to_owned(), s, message))
        }
        toml::Value::Integer(ms) => match u64::try_from(*ms) {
            Ok(ms) => Ok(Duration::from_millis(ms)),
            Err(_) => Err(PolicyError::bad_value(
                key.to_owned(),
                &ms.to_string(),
                "a duration cannot be negative".to_owned(),
            )),
        },
        other => {
            let message = format!(
                "expected a duration: a string such as \"150ms\" or an integer number of \
                 milliseconds, found {}",
                other.type_str()
            );
            Err(wrong_type(key, other, message))
        }
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses `"150ms"`, `"1.5s"`, `"2h"`, `"0"`: see the module docs. The error is the reason.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err(format!(
            "empty duration (expected a number and a unit: {UNITS})"
        ));
    }
    if s.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(format!("expected a number followed by a unit ({UNITS})"));
    }
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "" if number.bytes().all(|b| b == b'0') && !number.is_empty() => return Ok(Duration::ZERO),
        "" => {
            return Err(format!(
                "missing unit ({UNITS}); write bare milliseconds as a TOML integer"
            ));
        }
        _ => return Err(format!("unknown unit {unit:?} (expected {UNITS})")),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(format!("{number:?} is not a number"));
    }
    const TOO_LARGE: &str = "too large for a duration";
    let mut nanos = digits(whole)
        .and_then(|w| w.checked_mul(unit_nanos))
        .ok_or(TOO_LARGE)?;
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        // A fraction of 25 or more significant digits is never a whole number of nanoseconds:
        // the largest unit is 2^13 * 3^2 * 5^11 ns, so 10^25 cannot divide it times a number
        // that does not end in 0.
        const FINER: &str = "finer than one nanosecond";
        if frac.len() > 24 {
            return Err(FINER.to_owned());
        }
        let scale = 10_u128.pow(frac.len() as u32);
        let scaled = digits(frac).ok_or(TOO_LARGE)? * unit_nanos; // < 10^24 * 3.6e12 < 2^128
        if !scaled.is_multiple_of(scale) {
            return Err(FINER.to_owned());
        }
        nanos = nanos.checked_add(scaled / scale).ok_or(TOO_LARGE)?;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| TOO_LARGE)?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// The value of a string of ASCII digits, if it fits.
fn digits(s: &str) -> Option<u128> {
    s.bytes().try_fold(0_u128, |acc, b| {
        acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })
}

/// `d` in the largest unit that represents it exactly: `"800ms"`, `"30s"`, `"1500ms"`.
pub(crate) fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0ms".to_owned();
    }
    let (unit, per) = [
        ("h", 3_600 * NANOS_PER_SEC),
        ("m", 60 * NANOS_PER_SEC),
        ("s", NANOS_PER_SEC),
        ("ms", 1_000_000),
        ("us", 1_000),
    ]
    .into_iter()
    .find(|&(_, per)| nanos.is_multiple_of(per))
    .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / per)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn durations() {
        assert_eq!(ok("150ms"), Duration::from_millis(150));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.25ms"), Duration::from_micros(250));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("3m"), Duration::from_secs(180));
        assert_eq!(ok("7us"), Duration::from_micros(7));
        assert_eq!(ok("7µs"), Duration::from_micros(7));
        assert_eq!(ok("9ns"), Duration::from_nanos(9));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("000"), Duration::ZERO);
        assert_eq!(
            ok("1.000000000000000000000000000000s"),
            Duration::from_secs(1)
        );
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(
            ok("18446744073709551615s"),
            Duration::MAX - Duration::from_nanos(999_999_999)
        );
        for bad in [
            "",
            "ms",
            "5",
            "1.5",
            "-5ms",
            "+5ms",
            "5 ms",
            " 5ms",
            "5ms ",
            "1m30s",
            "1.s",
            ".5s",
            "1..5s",
            "1.2.3s",
            "5sec",
            "5S",
            "0.0000000001s",
            "0.1ns",
            "18446744073709551616s",
            "99999999999999999999999999999999999999999h",
            "1.0000000000000000000000001h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_millis(800),
            Duration::from_millis(1500),
            Duration::from_secs(30),
            Duration::from_secs(120),
            Duration::from_secs(7200),
            Duration::MAX,
        ] {
            assert_eq!(ok(&format_duration(d)), d, "{}", format_duration(d));
        }
        assert_eq!(format_duration(Duration::from_millis(800)), "800ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }
}
