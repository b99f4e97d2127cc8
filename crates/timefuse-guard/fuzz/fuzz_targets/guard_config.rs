//! Feeds arbitrary UTF-8 to `GuardConfig::from_toml_str`: it must never panic; whatever it
//! accepts must resolve for every route, convert to the layers' types, and survive a round
//! trip through `to_toml_string`.
//!
//! Run with `cargo +nightly fuzz run guard_config -- -dict=guard_config.dict` from
//! `crates/timefuse-guard/fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timefuse_guard::config::GuardConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = GuardConfig::from_toml_str(text) else {
        return;
    };
    for name in config
        .routes
        .keys()
        .map(String::as_str)
        .chain(["__other__"])
    {
        let route = config.route(name).expect("a validated config resolves");
        if let Some(rate) = &route.rate {
            let _ = (rate.rate(), rate.wait_mode());
        }
        if let Some(breaker) = &route.breaker {
            assert!(breaker.to_config().validate().is_ok(), "{breaker:?}");
        }
        if let Some(retry) = &route.retry {
            let _ = (retry.policy(), retry.budget());
        }
        let _ = route.fallback.triggers();
    }
    let again = GuardConfig::from_toml_str(&config.to_toml_string()).expect("round trip");
    assert_eq!(again, config);
});
