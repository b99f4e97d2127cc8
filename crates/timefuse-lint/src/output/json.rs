//! JSON output.

use serde_json::{Map, Value, json};

use crate::report::{ErrorKind, Finding, Report};

/// Renders `report` as one pretty-printed JSON document:
/// `{tool, version, files_scanned, findings: [..], suppressed: [..], errors: [..], summary}`.
/// Lines and columns are 1-based; columns count characters.
pub fn render_json(report: &Report) -> String {
    let mut by_rule = Map::new();
    for (rule, n) in report.counts() {
        by_rule.insert(rule.code().to_owned(), json!(n));
    }
    let doc = json!({
        "tool": "timefuse-lint",
        "version": env!("CARGO_PKG_VERSION"),
        "files_scanned": report.files_scanned,
        "findings": report.findings.iter().map(finding).collect::<Vec<_>>(),
        "suppressed": report.suppressed.iter().map(|s| {
            let mut v = finding(&s.finding);
            v["allow_line"] = json!(s.allow_line);
            v["reason"] = json!(s.reason);
            v
        }).collect::<Vec<_>>(),
        "errors": report.errors.iter().map(|e| json!({
            "file": e.file,
            "kind": match e.kind {
                ErrorKind::Io => "io",
                ErrorKind::Parse => "parse",
                ErrorKind::Internal => "internal",
            },
            "line": e.position.map(|p| p.line),
            "column": e.position.map(|p| p.column),
            "message": e.message,
        })).collect::<Vec<_>>(),
        "summary": {
            "findings": report.findings.len(),
            "suppressed": report.suppressed.len(),
            "errors": report.errors.len(),
            "by_rule": Value::Object(by_rule),
        },
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"));
    s.push('\n');
    s
}

fn finding(f: &Finding) -> Value {
    json!({
        "rule": f.rule.code(),
        "name": f.rule.name(),
        "family": f.rule.family().name(),
        "level": "warning",
        "message": f.message,
        "help": f.rule.help(),
        "file": f.file,
        "line": f.start.line,
        "column": f.start.column,
        "end_line": f.end.line,
        "end_column": f.end.column,
        "source_line": f.source_line,
    })
}
