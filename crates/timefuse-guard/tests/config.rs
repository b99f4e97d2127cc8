//! The configuration matrix: the document preset, field-by-field merging, builders equal to
//! TOML, an error naming the key for each class of bad value, round trips, and a property test
//! that arbitrary input never panics.
#![cfg(feature = "config")]

use std::time::Duration;

use proptest::prelude::*;
use timefuse_guard::config::{
    BreakerSection, BulkheadConfig, ConfigErrorKind, FallbackConfig, FallbackKind, GuardConfig,
    OnOutage, RateConfig, RateKey, RetryConfig, RouteConfig,
};

#[test]
fn the_document_preset() {
    let preset = GuardConfig::document_preset();
    let file = GuardConfig::from_toml_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/presets/document.toml"
    ))
    .unwrap();
    assert_eq!(preset, file);
    let r = preset.route("pay").unwrap();
    assert_eq!(r.timeout.global(), Duration::from_millis(800));
    assert_eq!(r.timeout.reserve(), Duration::from_millis(150));
    assert!(r.admission);
    let rate = r.rate.unwrap();
    assert_eq!(
        (rate.limit, rate.per, rate.burst),
        (100, Duration::from_secs(1), 100)
    );
    assert_eq!(rate.key, RateKey::Global);
    let breaker = r.breaker.unwrap();
    assert_eq!(breaker.window, Some(Duration::from_secs(60)));
    assert_eq!(breaker.calls, None);
    assert_eq!(breaker.failure_rate, 50.0);
    assert_eq!(r.bulkhead.unwrap().max_concurrent, 25);
    let retry = r.retry.unwrap();
    assert_eq!(
        (
            retry.max_attempts,
            retry.budget_ratio,
            retry.budget_min_per_sec
        ),
        (3, 0.2, 10)
    );
    assert_eq!(r.fallback.kind, FallbackKind::DefaultResponse);
}

#[test]
fn routes_override_the_defaults_field_by_field() {
    let config = GuardConfig::from_toml_str(
        r#"
        [defaults.timeout]
        global = "800ms"
        [defaults.rate]
        limit = 100
        max_wait = "200ms"
        [defaults.breaker]
        window = "60s"
        failure_rate = 50
        wait_in_open = "30s"

        [routes.pay.timeout]
        global = "2s"
        [routes.pay.rate]
        limit = 10
        key = "tenant"
        [routes.pay.rate.distributed]
        url = "redis://127.0.0.1:6379/2"
        on_outage = "closed"
        [routes.pay.breaker]
        calls = 20
        failure_rate = 25

        [routes.search.rate]
        enabled = false
        [routes.search.retry]
        max_attempts = 2
        per_try = 300
        "#,
    )
    .unwrap();

    let pay = config.route("pay").unwrap();
    assert_eq!(pay.timeout.global(), Duration::from_secs(2));
    let rate = pay.rate.unwrap();
    assert_eq!(
        (rate.limit, rate.burst, rate.max_wait),
        (10, 10, Duration::from_millis(200))
    );
    assert_eq!(rate.key, RateKey::Tenant);
    let dist = rate.distributed.unwrap();
    assert_eq!(dist.url, "redis://127.0.0.1:6379/2");
    assert_eq!(dist.on_outage, OnOutage::Closed);
    assert_eq!(dist.timeout, Duration::from_millis(50));
    let breaker = pay.breaker.unwrap();
    assert_eq!(
        (breaker.window, breaker.calls),
        (None, Some(20)),
        "the route's window kind wins"
    );
    assert_eq!(breaker.failure_rate, 25.0);
    assert_eq!(breaker.wait_in_open, Duration::from_secs(30), "inherited");
    assert!(pay.retry.is_none() && pay.bulkhead.is_none() && !pay.admission);

    let search = config.route("search").unwrap();
    assert!(search.rate.is_none(), "enabled = false");
    let retry = search.retry.unwrap();
    assert_eq!(
        retry.per_try,
        Some(Duration::from_millis(300)),
        "bare integers are ms"
    );
    assert_eq!(search.timeout.global(), Duration::from_millis(800));

    let other = config.route("unknown-route").unwrap();
    assert_eq!(
        other.rate.unwrap().limit,
        100,
        "a route without a section gets the defaults"
    );
}

#[test]
fn builders_equal_toml() {
    let toml = GuardConfig::from_toml_str(
        r#"
        [defaults.rate]
        limit = 50
        burst = 5
        key = "peer"
        [defaults.bulkhead]
        max_concurrent = 8
        [routes.pay.breaker]
        calls = 10
        failure_rate = 30
        [routes.pay.retry]
        max_attempts = 2
        [routes.pay.fallback]
        kind = "stale_cache"
        "#,
    )
    .unwrap();
    let code = GuardConfig::default()
        .with_defaults(
            RouteConfig::default()
                .with_rate(RateConfig::per_second(50).burst(5).key(RateKey::Peer))
                .with_bulkhead(BulkheadConfig::max_concurrent(8)),
        )
        .with_route(
            "pay",
            RouteConfig::default()
                .with_breaker(BreakerSection::count_based(10).failure_rate(30.0))
                .with_retry(RetryConfig::attempts(2))
                .with_fallback(FallbackConfig::kind(FallbackKind::StaleCache)),
        );
    code.validate().unwrap();
    assert_eq!(toml, code);
    assert_eq!(toml.route("pay").unwrap(), code.route("pay").unwrap());
    assert_eq!(
        GuardConfig::from_toml_str(&code.to_toml_string()).unwrap(),
        code
    );
}

fn err(text: &str) -> (ConfigErrorKind, Option<String>, String) {
    let e = GuardConfig::from_toml_str(text).expect_err(text);
    (e.kind(), e.key().map(str::to_owned), e.to_string())
}

#[test]
fn each_class_of_bad_value_names_its_key() {
    use ConfigErrorKind::*;
    let cases: &[(&str, ConfigErrorKind, &str, &str)] = &[
        // Syntax.
        ("[routes.pay", Syntax, "", "invalid TOML"),
        // Unknown keys, at every level.
        ("surprise = 1", UnknownKey, "surprise", "unknown field"),
        (
            "[defaults.cache]",
            UnknownKey,
            "defaults.cache",
            "unknown field",
        ),
        (
            "[routes.pay.rate]\nqps = 5",
            UnknownKey,
            "routes.pay.rate.qps",
            "unknown field",
        ),
        (
            "[routes.pay.breaker]\nfailure_rat = 5",
            UnknownKey,
            "routes.pay.breaker.failure_rat",
            "unknown field",
        ),
        (
            "[routes.pay.rate.distributed]\nhost = \"x\"",
            UnknownKey,
            "routes.pay.rate.distributed.host",
            "unknown field",
        ),
        // Wrong types and unparsable values.
        (
            "[defaults.rate]\nlimit = \"many\"",
            BadValue,
            "defaults.rate.limit",
            "invalid type",
        ),
        (
            "[defaults.rate]\nlimit = -1",
            BadValue,
            "defaults.rate.limit",
            "",
        ),
        (
            "[defaults.rate]\nper = \"1 second\"",
            BadValue,
            "defaults.rate.per",
            "unknown unit",
        ),
        (
            "[defaults.rate]\nper = -5",
            BadValue,
            "defaults.rate.per",
            "negative",
        ),
        (
            "[defaults.rate]\nkey = \"ip\"",
            BadValue,
            "defaults.rate.key",
            "unknown variant",
        ),
        (
            "[defaults.breaker]\nfailure_rate = \"half\"",
            BadValue,
            "defaults.breaker.failure_rate",
            "invalid type",
        ),
        (
            "[defaults.fallback]\nkind = \"cache\"",
            BadValue,
            "defaults.fallback.kind",
            "unknown variant",
        ),
        (
            "[defaults.timeout]\nglobal = \"soon\"",
            BadValue,
            "defaults.timeout",
            "global",
        ),
        (
            "[routes.pay.timeout]\nreserve = \"1s\"",
            BadValue,
            "routes.pay.timeout",
            "reserve",
        ),
        // Out of range.
        (
            "[routes.pay.breaker]\nfailure_rate = 0",
            Invalid,
            "routes.pay.breaker.failure_rate",
            "routes.pay.breaker.failure_rate: must be in (0, 100]",
        ),
        (
            "[routes.pay.breaker]\nfailure_rate = 100.5",
            Invalid,
            "routes.pay.breaker.failure_rate",
            "(0, 100]",
        ),
        (
            "[routes.pay.breaker]\nslow_rate = nan",
            Invalid,
            "routes.pay.breaker.slow_rate",
            "(0, 100]",
        ),
        (
            "[defaults.breaker]\nwindow = \"1.5s\"",
            Invalid,
            "defaults.breaker.window",
            "whole seconds",
        ),
        (
            "[defaults.breaker]\nwindow = \"2h\"",
            Invalid,
            "defaults.breaker.window",
            "[1s, 3600s]",
        ),
        (
            "[defaults.breaker]\ncalls = 0",
            Invalid,
            "defaults.breaker.calls",
            "1..=1048576",
        ),
        (
            "[defaults.breaker]\nhalf_open_calls = 2000",
            Invalid,
            "defaults.breaker.half_open_calls",
            "1..=1023",
        ),
        (
            "[defaults.rate]\nlimit = 0",
            Invalid,
            "defaults.rate.limit",
            "at least 1",
        ),
        (
            "[defaults.rate]\nburst = 0",
            Invalid,
            "defaults.rate.burst",
            "at least 1",
        ),
        (
            "[defaults.rate]\nper = 0",
            Invalid,
            "defaults.rate.per",
            "(0, 24h]",
        ),
        (
            "[defaults.rate.distributed]\nurl = \"http://x\"",
            Invalid,
            "defaults.rate.distributed.url",
            "redis://",
        ),
        (
            "[defaults.rate.distributed]\nprefix = \"a b\"",
            Invalid,
            "defaults.rate.distributed.prefix",
            "spaces",
        ),
        (
            "[defaults.bulkhead]\nmax_concurrent = 0",
            Invalid,
            "defaults.bulkhead.max_concurrent",
            "1..=1048576",
        ),
        (
            "[defaults.retry]\nmax_attempts = 0",
            Invalid,
            "defaults.retry.max_attempts",
            "1..=10",
        ),
        (
            "[defaults.retry]\nbudget_ratio = 11.0",
            Invalid,
            "defaults.retry.budget_ratio",
            "[0, 10]",
        ),
        (
            "[defaults.retry]\nbudget_ttl = \"500ms\"",
            Invalid,
            "defaults.retry.budget_ttl",
            "[1s, 60s]",
        ),
        (
            "[defaults.retry]\nbackoff_base = \"1s\"\nbackoff_max = \"100ms\"",
            Invalid,
            "defaults.retry.backoff_base",
            "exceeds backoff_max",
        ),
        (
            "[defaults.fallback]\nkind = \"default_response\"\nmax_age = \"5s\"",
            Invalid,
            "defaults.fallback.max_age",
            "stale_cache",
        ),
        // Contradictions.
        (
            "[defaults.breaker]\nwindow = \"10s\"\ncalls = 10",
            Invalid,
            "defaults.breaker.calls",
            "not both",
        ),
        (
            "[defaults.retry]\nbackoff_base = \"1s\"\n[routes.pay.retry]\nbackoff_max = \"10ms\"",
            Invalid,
            "routes.pay.retry.backoff_base",
            "exceeds",
        ),
        (
            "[routes.\"\".rate]\nlimit = 1",
            Invalid,
            "routes.\"\"",
            "name",
        ),
    ];
    for &(text, kind, key, contains) in cases {
        let (k, got_key, message) = err(text);
        assert_eq!(k, kind, "{text:?}: {message}");
        let want_key = (!key.is_empty()).then(|| key.to_owned());
        assert_eq!(got_key, want_key, "{text:?}: {message}");
        assert!(
            message.contains(contains),
            "{text:?}: {message:?} lacks {contains:?}"
        );
    }
}

#[test]
fn io_errors_name_the_path() {
    let e = GuardConfig::from_toml_file("/nonexistent/guards.toml").unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Io);
    assert!(e.to_string().contains("/nonexistent/guards.toml"));
}

#[cfg(all(feature = "rate-limit", feature = "breaker", feature = "retry"))]
#[test]
fn settings_convert_to_the_layers_types() {
    let route = GuardConfig::document_preset().route("pay").unwrap();
    let rate = route.rate.unwrap();
    assert_eq!(
        rate.rate(),
        timefuse_guard::rate_limit::Rate::per_second(100)
    );
    assert_eq!(
        rate.wait_mode(),
        timefuse_guard::rate_limit::WaitMode::UpTo(Duration::from_millis(500))
    );
    let breaker = route.breaker.unwrap().to_config();
    assert!(breaker.validate().is_ok());
    assert_eq!(breaker.name(), "pay");
    let retry = route.retry.unwrap();
    assert_eq!(retry.policy().attempts(), 3);
    assert_eq!(retry.budget().ratio(), 0.2);
}

const KEYS: &[&str] = &[
    "[defaults]",
    "[routes.a]",
    "[routes.a.rate]",
    "[defaults.breaker]",
    "[routes.b.retry]",
    "[defaults.bulkhead]",
    "[routes.a.fallback]",
    "[defaults.timeout]",
    "[routes.a.rate.distributed]",
    "limit",
    "per",
    "burst",
    "max_wait",
    "key",
    "window",
    "calls",
    "failure_rate",
    "slow_rate",
    "half_open_calls",
    "max_concurrent",
    "max_attempts",
    "budget_ratio",
    "budget_ttl",
    "kind",
    "max_age",
    "global",
    "reserve",
    "url",
    "enabled",
    "on_outage",
];
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "100",
    "4294967296",
    "1.5",
    "nan",
    "inf",
    "true",
    "\"1s\"",
    "\"0\"",
    "\"1.5s\"",
    "\"99999999999999999999h\"",
    "\"global\"",
    "\"closed\"",
    "\"stale_cache\"",
    "\"redis://x\"",
    "[]",
    "{}",
    "\"\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary text never panics.
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = GuardConfig::from_toml_str(&text);
    }

    /// Plausible-looking configurations never panic; what is accepted resolves for every
    /// route and survives a round trip.
    #[test]
    fn plausible_configs_never_panic(lines in prop::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..12)) {
        let mut text = String::new();
        for (k, v) in lines {
            let key = KEYS[k];
            if key.starts_with('[') {
                text.push_str(key);
            } else {
                text.push_str(&format!("{key} = {}", VALUES[v]));
            }
            text.push('\n');
        }
        if let Ok(config) = GuardConfig::from_toml_str(&text) {
            for name in config.routes.keys().map(String::as_str).chain(["other"]) {
                prop_assert!(config.route(name).is_ok());
            }
            let again = GuardConfig::from_toml_str(&config.to_toml_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&config), "{}", config.to_toml_string());
        }
    }
}
