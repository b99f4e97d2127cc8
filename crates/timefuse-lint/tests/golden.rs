//! Golden tests of the three output formats: `tests/golden/input.rs` and `broken.rs` are
//! linted and rendered as text, JSON and SARIF, and compared with `tests/golden/expected.*`.
//!
//! After an intended change of the output, regenerate the files with
//! `TIMEFUSE_LINT_BLESS=1 cargo test -p timefuse-lint --test golden` and review the diff.

use std::path::{Path, PathBuf};

use serde_json::Value;
use timefuse_lint::{Format, Options, Report, lint_source, render};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn report() -> Report {
    let mut report = Report::default();
    for name in ["input.rs", "broken.rs"] {
        let source = std::fs::read_to_string(dir().join(name)).unwrap();
        report.merge(lint_source(
            &format!("tests/golden/{name}"),
            &source,
            &Options::default(),
        ));
    }
    report
}

fn check(format: Format, file: &str) {
    let actual = render(&report(), format);
    let path = dir().join(file);
    if std::env::var_os("TIMEFUSE_LINT_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with TIMEFUSE_LINT_BLESS=1)", path.display()));
    assert_eq!(
        actual.replace("\r\n", "\n"),
        expected.replace("\r\n", "\n"),
        "{file} differs; bless with TIMEFUSE_LINT_BLESS=1 if intended"
    );
}

#[test]
fn human_output_is_golden() {
    check(Format::Human, "expected.txt");
}

#[test]
fn json_output_is_golden() {
    check(Format::Json, "expected.json");
}

#[test]
fn sarif_output_is_golden() {
    check(Format::Sarif, "expected.sarif");
}

#[test]
fn report_contents() {
    let r = report();
    let codes: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.start.line, f.rule.code()))
        .collect();
    assert_eq!(codes, [(6, "TF020"), (7, "TF001"), (20, "TF030")]);
    assert_eq!(r.suppressed.len(), 1);
    assert_eq!(
        r.suppressed[0].reason.as_deref(),
        Some("one per connection, dropped with it")
    );
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.exit_code(), 2);
}

/// The required properties of the SARIF 2.1.0 schema, for every object the output uses.
#[test]
fn sarif_has_the_schema_required_fields() {
    let log: Value = serde_json::from_str(&render(&report(), Format::Sarif)).unwrap();
    let has = |v: &Value, keys: &[&str], what: &str| {
        for k in keys {
            assert!(v.get(k).is_some(), "{what} lacks required `{k}`: {v}");
        }
    };
    has(&log, &["version", "runs"], "sarifLog");
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    for run in log["runs"].as_array().unwrap() {
        has(run, &["tool"], "run");
        has(&run["tool"], &["driver"], "tool");
        has(&run["tool"]["driver"], &["name"], "toolComponent");
        for rule in run["tool"]["driver"]["rules"].as_array().unwrap() {
            has(rule, &["id"], "reportingDescriptor");
            for m in ["shortDescription", "fullDescription", "help"] {
                has(&rule[m], &["text"], "multiformatMessageString");
            }
        }
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        for result in run["results"].as_array().unwrap() {
            has(result, &["message"], "result");
            assert!(
                result["message"].get("text").is_some() || result["message"].get("id").is_some()
            );
            let index = result["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[index]["id"], result["ruleId"]);
            for loc in result["locations"].as_array().unwrap() {
                let region = &loc["physicalLocation"]["region"];
                assert!(region["startLine"].as_u64().unwrap() >= 1);
                assert!(region["startColumn"].as_u64().unwrap() >= 1);
            }
            if let Some(sups) = result.get("suppressions") {
                for s in sups.as_array().unwrap() {
                    has(s, &["kind"], "suppression");
                }
            }
        }
        for inv in run["invocations"].as_array().unwrap() {
            has(inv, &["executionSuccessful"], "invocation");
            for n in inv["toolExecutionNotifications"].as_array().unwrap() {
                has(n, &["message"], "notification");
            }
        }
    }
}
