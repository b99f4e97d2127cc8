//! Feeds arbitrary UTF-8 to `Scenario::from_toml_str`: it must never panic; whatever it accepts
//! must be valid and survive a round trip through `to_toml_string`; a refusal that names a key
//! starts its message with that key.
//!
//! Run with `cargo +nightly fuzz run scenario_toml -- -dict=scenario_toml.dict` from
//! `crates/timefuse-demo/fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timefuse_demo::scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::from_toml_str(text) {
        Ok(scenario) => {
            assert!(scenario.validate().is_ok(), "accepted invalid: {text:?}");
            let again = Scenario::from_toml_str(&scenario.to_toml_string());
            assert_eq!(again.ok().as_ref(), Some(&scenario), "round trip of {text:?}");
        }
        Err(e) => {
            let shown = e.to_string();
            if let Some(key) = &e.key {
                assert!(shown.starts_with(key.as_str()), "{shown}");
            }
        }
    }
});
