//! SARIF 2.1.0 output.

use serde_json::{Value, json};

use crate::report::{Finding, Report};
use crate::rules::Rule;

/// The SARIF schema the output declares.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Renders `report` as a SARIF 2.1.0 log with one run: every rule in the driver, one result
/// per finding (suppressed ones carry an `inSource` suppression with the allow's reason), and
/// parse or read errors as tool execution notifications. Columns count Unicode code points.
pub fn render_sarif(report: &Report) -> String {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.code(),
                "name": r.name(),
                "shortDescription": { "text": r.summary() },
                "fullDescription": { "text": r.description() },
                "help": { "text": r.help() },
                "defaultConfiguration": { "level": "warning" },
                "properties": { "family": r.family().name(), "tags": [r.family().name()] },
            })
        })
        .collect();
    let mut results: Vec<Value> = report.findings.iter().map(result).collect();
    for s in &report.suppressed {
        let mut v = result(&s.finding);
        let mut suppression = json!({ "kind": "inSource" });
        if let Some(reason) = &s.reason {
            suppression["justification"] = json!(reason);
        }
        v["suppressions"] = json!([suppression]);
        results.push(v);
    }
    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| {
            let mut region = json!({});
            if let Some(p) = e.position {
                region = json!({ "startLine": p.line, "startColumn": p.column });
            }
            let mut location = json!({ "artifactLocation": { "uri": uri(&e.file) } });
            if e.position.is_some() {
                location["region"] = region;
            }
            json!({
                "level": "error",
                "message": { "text": format!("{}: {}", e.file, e.message) },
                "locations": [{ "physicalLocation": location }],
            })
        })
        .collect();
    let doc = json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "timefuse-lint",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": env!("CARGO_PKG_REPOSITORY"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"));
    s.push('\n');
    s
}

fn result(f: &Finding) -> Value {
    let index = Rule::ALL.iter().position(|r| *r == f.rule).unwrap_or(0);
    json!({
        "ruleId": f.rule.code(),
        "ruleIndex": index,
        "level": "warning",
        "message": { "text": f.message },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": { "uri": uri(&f.file) },
                "region": {
                    "startLine": f.start.line,
                    "startColumn": f.start.column,
                    "endLine": f.end.line,
                    "endColumn": f.end.column,
                    "snippet": { "text": f.source_line },
                }
            }
        }],
    })
}

/// A path as a relative (or absolute-path) URI reference: forward slashes, other bytes
/// outside the unreserved set percent-encoded.
fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn uris_are_encoded() {
        assert_eq!(super::uri("src\\a b.rs"), "src/a%20b.rs");
        assert_eq!(super::uri("crates/x/src/ü.rs"), "crates/x/src/%C3%BC.rs");
    }
}
