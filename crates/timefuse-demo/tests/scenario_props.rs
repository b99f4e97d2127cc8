//! Property tests of the scenario parser (a config file crosses a trust boundary): any text,
//! and TOML-shaped documents made of the real keys with good and bad values, never panic; what
//! is accepted is valid and survives a round trip through `to_toml_string`; what is refused
//! says why, naming the key where one is at fault.

use proptest::prelude::*;
use timefuse_demo::scenario::Scenario;

const TABLES: &[&str] = &[
    "",
    "[load]",
    "[guard]",
    "[services.order]",
    "[services.risk]",
    "[services.deduct]",
    "[services.ledger]",
    "[services.notify]",
    "[services.riks]",
    "[services.risk.latency]",
    "[[services.ledger.partitions]]",
    "[[services.risk.partitions]]",
];

const KEYS: &[&str] = &[
    "name",
    "description",
    "rate",
    "stress_rate",
    "duration",
    "accounts",
    "balance",
    "amount_min",
    "amount_max",
    "seed",
    "order_rate_limit",
    "breaker_failure_rate",
    "breaker_window",
    "breaker_minimum_calls",
    "breaker_open",
    "latency",
    "error_rate",
    "hang_probability",
    "pool",
    "partitions",
    "start",
    "dist",
    "median",
    "sigma",
    "max",
    "value",
    "scale",
    "shape",
    "bogus",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "7",
    "110",
    "190",
    "-1",
    "20001",
    "18446744073709551615",
    "99999999999999999999999",
    "0.5",
    "1.5",
    "-0.0",
    "nan",
    "inf",
    "-inf",
    "true",
    "\"x\"",
    "\"\"",
    "\"5ms\"",
    "\"250us\"",
    "\"1.5s\"",
    "\"2m\"",
    "\"20s\"",
    "\"0s\"",
    "\"-3s\"",
    "\"1parsec\"",
    "\"999999999999999999h\"",
    "\"lognormal\"",
    "\"pareto\"",
    "\"fixed\"",
    "[]",
    "[1, 2]",
    "{}",
    "{ dist = \"fixed\", value = \"5ms\" }",
    "{ dist = \"lognormal\", median = \"80ms\", sigma = 0.9, max = \"5s\" }",
    "{ dist = \"lognormal\", median = \"80ms\", sigma = 0 }",
    "{ dist = \"pareto\", scale = \"3ms\", shape = 1.5 }",
    "{ dist = \"pareto\", scale = \"3ms\", shape = 0.5 }",
    "{ dist = \"cauchy\" }",
];

/// A document: a minimal valid head (so the parser gets past the required keys), then random
/// tables and `key = value` lines.
fn document() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        1 => prop::sample::select(TABLES).prop_map(str::to_owned),
        4 => (prop::sample::select(KEYS), prop::sample::select(VALUES))
            .prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    (any::<bool>(), prop::collection::vec(line, 0..16)).prop_map(|(head, lines)| {
        let mut text = if head {
            "name = \"p\"\n[load]\nrate = 10\nduration = \"1s\"\n".to_owned()
        } else {
            String::new()
        };
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        text
    })
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match Scenario::from_toml_str(text) {
        Ok(scenario) => {
            prop_assert!(scenario.validate().is_ok(), "accepted invalid: {text}");
            let again = Scenario::from_toml_str(&scenario.to_toml_string());
            prop_assert_eq!(
                again.as_ref().ok(),
                Some(&scenario),
                "round trip of {}",
                text
            );
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(!shown.trim().is_empty());
            if let Some(key) = &e.key {
                prop_assert!(
                    !key.is_empty() && shown.starts_with(key.as_str()),
                    "{shown}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn toml_shaped_documents_never_panic(text in document()) {
        check(&text)?;
    }

    #[test]
    fn any_text_never_panics(text in ".{0,200}") {
        check(&text)?;
    }
}

#[test]
fn shipped_scenarios_round_trip() {
    for name in ["steady", "slow-risk", "ledger-partition", "storm"] {
        let s = Scenario::load(name).unwrap();
        assert_eq!(
            Scenario::from_toml_str(&s.to_toml_string()).unwrap(),
            s,
            "{name}"
        );
    }
}

/// The generator reaches both sides of the parser: some documents are accepted (so the round
/// trip is exercised), some refused with a key named.
#[test]
fn documents_are_both_accepted_and_refused() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let (mut accepted, mut keyed) = (0, 0);
    for _ in 0..2000 {
        let text = document().new_tree(&mut runner).unwrap().current();
        match Scenario::from_toml_str(&text) {
            Ok(_) => accepted += 1,
            Err(e) if e.key.is_some() => keyed += 1,
            Err(_) => {}
        }
    }
    eprintln!("of 2000: accepted {accepted}, refused naming a key {keyed}");
    assert!(
        accepted > 20 && keyed > 200,
        "accepted {accepted}, refused naming a key {keyed}"
    );
}
