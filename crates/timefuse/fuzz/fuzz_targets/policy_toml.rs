//! Feeds arbitrary UTF-8 to `TimeoutPolicy::from_toml_str`: it must never panic, and whatever it
//! accepts must be valid and survive a round trip through `to_toml_string`.
//!
//! Run with `cargo +nightly fuzz run policy_toml -- -dict=policy_toml.dict` from
//! `crates/timefuse/fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timefuse::budget::TimeoutPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = TimeoutPolicy::from_toml_str(text) {
        assert!(
            policy.validate().is_ok(),
            "accepted an invalid policy: {policy:?}"
        );
        let again = TimeoutPolicy::from_toml_str(&policy.to_toml_string());
        assert_eq!(again.ok().as_ref(), Some(&policy), "round trip of {text:?}");
    }
});
