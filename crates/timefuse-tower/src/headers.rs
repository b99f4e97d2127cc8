//! The budget and identity headers: names, parsers and formatters.
//!
//! Every parser here reads bytes from another host, so every parser is total: any input gives a
//! value or a [`HeaderError`], never a panic. Values are relative durations only (no absolute
//! timestamps), so clock skew between hosts does not matter.
//!
//! | header | meaning |
//! |---|---|
//! | `grpc-timeout` | remaining time: 1–8 digits and a unit `H M S m u n` (gRPC spec) |
//! | `x-deadline-ms` | budget granted to this hop, in ms |
//! | `x-request-timeout-ms` | the request's original total budget, in ms |
//! | `x-upstream-timeout-ms` | time already spent upstream, in ms |
//! | `x-envoy-expected-rq-timeout-ms` | Envoy's budget for this hop, in ms (read only if trusted) |
//! | `x-request-id` | the request's identity |
//! | `traceparent` / `tracestate` | W3C trace context |

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// `x-deadline-ms`.
pub const X_DEADLINE_MS: HeaderName = HeaderName::from_static("x-deadline-ms");
/// `x-request-timeout-ms`.
pub const X_REQUEST_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");
/// `x-upstream-timeout-ms`.
pub const X_UPSTREAM_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-upstream-timeout-ms");
/// `x-envoy-expected-rq-timeout-ms`.
pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The most digits a millisecond value may have (`u64::MAX` has 20; larger values are refused).
const MAX_MS_DIGITS: usize = 20;

/// Why a header value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The value is empty.
    Empty,
    /// More digits than the format allows.
    TooManyDigits,
    /// A byte that is not a digit where a digit belongs.
    NotANumber,
    /// A `grpc-timeout` unit other than `H M S m u n`.
    BadUnit,
    /// A leading minus sign: budgets are never negative.
    Negative,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::Empty => "empty value",
            HeaderError::TooManyDigits => "too many digits",
            HeaderError::NotANumber => "not a decimal number",
            HeaderError::BadUnit => "unit is not one of H M S m u n",
            HeaderError::Negative => "negative duration",
        })
    }
}

impl std::error::Error for HeaderError {}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by one unit of `H` (hours),
/// `M` (minutes), `S` (seconds), `m` (ms), `u` (µs) or `n` (ns).
///
/// # Errors
///
/// A [`HeaderError`] for anything else; the gRPC spec gives no leeway (no spaces, no sign).
///
/// ```
/// use std::time::Duration;
/// use timefuse_tower::headers::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout(b"800m"), Ok(Duration::from_millis(800)));
/// assert_eq!(parse_grpc_timeout(b"99999999H"), Ok(Duration::from_secs(99_999_999 * 3600)));
/// assert!(parse_grpc_timeout(b"123456789m").is_err());
/// assert!(parse_grpc_timeout(b"10x").is_err());
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, HeaderError> {
    let (&unit, digits) = value.split_last().ok_or(HeaderError::Empty)?;
    if digits.first() == Some(&b'-') {
        return Err(HeaderError::Negative);
    }
    if digits.is_empty() {
        return Err(HeaderError::NotANumber);
    }
    if digits.len() > 8 {
        return Err(HeaderError::TooManyDigits);
    }
    let n = parse_digits(digits)?;
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(HeaderError::BadUnit),
    })
}

/// Formats a duration as a `grpc-timeout` value, in the finest unit whose value fits in 8
/// digits, rounding down so a callee is never promised more than the caller has.
///
/// ```
/// use std::time::Duration;
/// use timefuse_tower::headers::format_grpc_timeout;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(650)), "650000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(3600 * 1000)), "3600000S");
/// assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
/// ```
pub fn format_grpc_timeout(d: Duration) -> HeaderValue {
    const UNITS: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    let nanos = d.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(per, unit)| (nanos / per, unit))
        .find(|&(v, _)| v < 100_000_000)
        .unwrap_or((99_999_999, b'H'));
    let mut s = value.to_string();
    s.push(unit as char);
    HeaderValue::try_from(s).expect("digits and a unit letter are a valid header value")
}

/// Parses a millisecond header (`x-deadline-ms` and friends): 1 to 20 ASCII digits whose value
/// fits in a `u64`.
///
/// # Errors
///
/// A [`HeaderError`] for an empty, signed, non-numeric or longer value.
///
/// ```
/// use std::time::Duration;
/// use timefuse_tower::headers::parse_millis;
///
/// assert_eq!(parse_millis(b"650"), Ok(Duration::from_millis(650)));
/// assert!(parse_millis(b"-5").is_err());
/// assert!(parse_millis(b"1e3").is_err());
/// ```
pub fn parse_millis(value: &[u8]) -> Result<Duration, HeaderError> {
    if value.first() == Some(&b'-') {
        return Err(HeaderError::Negative);
    }
    if value.is_empty() {
        return Err(HeaderError::Empty);
    }
    if value.len() > MAX_MS_DIGITS {
        return Err(HeaderError::TooManyDigits);
    }
    parse_digits(value).map(Duration::from_millis)
}

/// Formats a duration as whole milliseconds, rounding down.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(timefuse_tower::headers::format_millis(Duration::from_micros(650_999)), "650");
/// ```
pub fn format_millis(d: Duration) -> HeaderValue {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    HeaderValue::from(ms)
}

fn parse_digits(digits: &[u8]) -> Result<u64, HeaderError> {
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(HeaderError::NotANumber);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(HeaderError::TooManyDigits)
    })
}

/// Which header a budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetSource {
    /// `grpc-timeout`.
    GrpcTimeout,
    /// `x-deadline-ms`.
    DeadlineMs,
    /// `x-request-timeout-ms` less `x-upstream-timeout-ms`.
    RequestTimeoutMs,
    /// `x-envoy-expected-rq-timeout-ms`.
    Envoy,
}

/// What the budget headers of one request said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingBudget {
    /// The smallest budget any trusted header gave, and which header gave it.
    pub budget: Option<(Duration, BudgetSource)>,
    /// `x-request-timeout-ms`: the request's original total, if sent.
    pub original_total: Option<Duration>,
    /// `x-upstream-timeout-ms`: time spent upstream, if sent.
    pub upstream_spent: Option<Duration>,
    /// A malformed `grpc-timeout` (gRPC servers refuse the call, as grpc-go does).
    pub bad_grpc_timeout: Option<HeaderError>,
    /// Other budget headers that were present but malformed and so ignored.
    pub ignored: Vec<(HeaderName, HeaderError)>,
}

/// Reads every budget header of a request. The smallest budget wins; `x-request-timeout-ms`
/// counts as `total − upstream spent`. Envoy's header is read only when `trust_envoy` is set.
/// When a header appears more than once, its smallest valid value counts.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use timefuse_tower::headers::{read_budget, BudgetSource};
///
/// let mut h = HeaderMap::new();
/// h.insert("grpc-timeout", "2S".parse().unwrap());
/// h.insert("x-request-timeout-ms", "3000".parse().unwrap());
/// h.insert("x-upstream-timeout-ms", "1500".parse().unwrap());
/// let b = read_budget(&h, false);
/// assert_eq!(b.budget, Some((Duration::from_millis(1500), BudgetSource::RequestTimeoutMs)));
/// ```
pub fn read_budget(headers: &HeaderMap, trust_envoy: bool) -> IncomingBudget {
    let mut out = IncomingBudget::default();
    let mut offer = |d: Duration, src: BudgetSource| {
        if out.budget.is_none_or(|(best, _)| d < best) {
            out.budget = Some((d, src));
        }
    };
    let mut grpc = None;
    for v in headers.get_all(GRPC_TIMEOUT) {
        match parse_grpc_timeout(v.as_bytes()) {
            Ok(d) => grpc = Some(grpc.map_or(d, |g: Duration| g.min(d))),
            Err(e) => out.bad_grpc_timeout = Some(e),
        }
    }
    if let Some(d) = grpc {
        offer(d, BudgetSource::GrpcTimeout);
    }
    let mut ignored = Vec::new();
    let mut millis = |name: &HeaderName| -> Option<Duration> {
        let mut best: Option<Duration> = None;
        for v in headers.get_all(name) {
            match parse_millis(v.as_bytes()) {
                Ok(d) => best = Some(best.map_or(d, |b| b.min(d))),
                Err(e) => ignored.push((name.clone(), e)),
            }
        }
        best
    };
    let deadline = millis(&X_DEADLINE_MS);
    let total = millis(&X_REQUEST_TIMEOUT_MS);
    let spent = millis(&X_UPSTREAM_TIMEOUT_MS);
    let envoy = if trust_envoy {
        millis(&X_ENVOY_EXPECTED_RQ_TIMEOUT_MS)
    } else {
        None
    };
    if let Some(d) = deadline {
        offer(d, BudgetSource::DeadlineMs);
    }
    if let Some(t) = total {
        offer(
            t.saturating_sub(spent.unwrap_or_default()),
            BudgetSource::RequestTimeoutMs,
        );
    }
    if let Some(d) = envoy {
        offer(d, BudgetSource::Envoy);
    }
    out.original_total = total;
    out.upstream_spent = spent;
    out.ignored = ignored;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grpc_timeout_table() {
        for (input, want) in [
            (&b"1H"[..], Ok(Duration::from_secs(3600))),
            (b"2M", Ok(Duration::from_secs(120))),
            (b"3S", Ok(Duration::from_secs(3))),
            (b"4m", Ok(Duration::from_millis(4))),
            (b"5u", Ok(Duration::from_micros(5))),
            (b"6n", Ok(Duration::from_nanos(6))),
            (b"00000000m", Ok(Duration::ZERO)),
            (b"", Err(HeaderError::Empty)),
            (b"m", Err(HeaderError::NotANumber)),
            (b"-1m", Err(HeaderError::Negative)),
            (b"123456789m", Err(HeaderError::TooManyDigits)),
            (b"1 m", Err(HeaderError::NotANumber)),
            (b"1ms", Err(HeaderError::NotANumber)),
            (b"1h", Err(HeaderError::BadUnit)),
        ] {
            assert_eq!(
                parse_grpc_timeout(input),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn conflicting_headers_smallest_wins_and_bad_ones_are_listed() {
        let mut h = HeaderMap::new();
        h.append(X_DEADLINE_MS, HeaderValue::from_static("900"));
        h.append(X_DEADLINE_MS, HeaderValue::from_static("700"));
        h.append(X_DEADLINE_MS, HeaderValue::from_static("abc"));
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        h.insert(
            X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
            HeaderValue::from_static("5"),
        );
        let b = read_budget(&h, false);
        assert_eq!(
            b.budget,
            Some((Duration::from_millis(700), BudgetSource::DeadlineMs))
        );
        assert_eq!(b.ignored, vec![(X_DEADLINE_MS, HeaderError::NotANumber)]);
        let trusting = read_budget(&h, true);
        assert_eq!(
            trusting.budget,
            Some((Duration::from_millis(5), BudgetSource::Envoy))
        );
    }

    #[test]
    fn spent_more_than_total_is_zero_budget() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_TIMEOUT_MS, HeaderValue::from_static("100"));
        h.insert(X_UPSTREAM_TIMEOUT_MS, HeaderValue::from_static("250"));
        assert_eq!(
            read_budget(&h, false).budget,
            Some((Duration::ZERO, BudgetSource::RequestTimeoutMs))
        );
    }

    proptest! {
        #[test]
        fn grpc_timeout_round_trips_within_one_unit(nanos in 0u64..=u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            let v = format_grpc_timeout(d);
            prop_assert!(v.len() <= 9);
            let back = parse_grpc_timeout(v.as_bytes()).unwrap();
            prop_assert!(back <= d, "never promises more: {:?} > {:?}", back, d);
            // Loses less than one unit, and a coarser unit is only chosen when the value in it
            // still has at least 10^5 of them.
            prop_assert!(d - back <= d / 100_000 + Duration::from_nanos(1));
        }

        #[test]
        fn millis_round_trip(ms in any::<u64>()) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_millis(format_millis(d).as_bytes()), Ok(d));
        }

        #[test]
        fn parsers_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_grpc_timeout(&bytes);
            let _ = parse_millis(&bytes);
        }

        #[test]
        fn read_budget_is_total(values in proptest::collection::vec("[ -~]{0,30}", 0..6)) {
            let names = [GRPC_TIMEOUT, X_DEADLINE_MS, X_REQUEST_TIMEOUT_MS, X_UPSTREAM_TIMEOUT_MS, X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, X_REQUEST_ID];
            let mut h = HeaderMap::new();
            for (i, v) in values.iter().enumerate() {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.append(names[i % names.len()].clone(), v);
                }
            }
            let b = read_budget(&h, true);
            if let Some((d, _)) = b.budget {
                // The winner is no larger than any single valid value.
                for v in h.get_all(X_DEADLINE_MS) {
                    if let Ok(x) = parse_millis(v.as_bytes()) { prop_assert!(d <= x); }
                }
                for v in h.get_all(GRPC_TIMEOUT) {
                    if let Ok(x) = parse_grpc_timeout(v.as_bytes()) { prop_assert!(d <= x); }
                }
            }
        }
    }
}
