//! rustc-style text.

use std::fmt::Write;

use crate::allow::MARKER;
use crate::report::{ErrorKind, Finding, Report};

/// Renders `report` as rustc-style diagnostics followed by a summary line.
///
/// ```text
/// warning[TF020]: `let _ = ctx.with_timeout(..)` drops the guard at once: ..
///  --> src/handler.rs:6:5
///   |
/// 6 |     let _ = ctx.with_timeout(Duration::from_millis(200));
///   |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
///   |
///   = help: bind the guard to a named variable ..
///   = note: context released too early; silence with `// timefuse-lint: allow(TF020) reason`
/// ```
pub fn render_human(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.errors {
        let what = match e.kind {
            ErrorKind::Io => "cannot read",
            ErrorKind::Parse => "cannot parse",
            ErrorKind::Internal => "internal error in",
        };
        let _ = writeln!(out, "error: {what} `{}`: {}", e.file, e.message);
        match e.position {
            Some(p) => {
                let _ = writeln!(out, " --> {}:{}:{}\n", e.file, p.line, p.column);
            }
            None => out.push('\n'),
        }
    }
    for f in &report.findings {
        finding(&mut out, f);
    }
    summary(&mut out, report);
    out
}

fn finding(out: &mut String, f: &Finding) {
    let width = f.start.line.to_string().len();
    let pad = " ".repeat(width);
    let _ = writeln!(out, "warning[{}]: {}", f.rule.code(), f.message);
    let _ = writeln!(
        out,
        "{pad}--> {}:{}:{}",
        f.file, f.start.line, f.start.column
    );
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{} | {}", f.start.line, f.source_line);
    let _ = writeln!(out, "{pad} | {}", caret(f));
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{pad} = help: {}", f.rule.help());
    let _ = writeln!(
        out,
        "{pad} = note: {} ({}); silence with `// {MARKER} allow({}) reason`",
        f.rule.family(),
        f.rule.name(),
        f.rule.code()
    );
    out.push('\n');
}

/// Spaces (tabs kept) up to the start column, then `^` to the end of the span on that line.
fn caret(f: &Finding) -> String {
    let chars: Vec<char> = f.source_line.chars().collect();
    let start = f.start.column.saturating_sub(1).min(chars.len());
    let end = if f.end.line == f.start.line {
        f.end.column.saturating_sub(1).clamp(start, chars.len())
    } else {
        chars.len() - chars.iter().rev().take_while(|c| c.is_whitespace()).count()
    };
    let lead: String = chars[..start]
        .iter()
        .map(|&c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{lead}{}", "^".repeat(end.saturating_sub(start).max(1)))
}

fn summary(out: &mut String, report: &Report) {
    let files = plural(report.files_scanned, "file");
    let suppressed = if report.suppressed.is_empty() {
        String::new()
    } else {
        format!(", {} suppressed", report.suppressed.len())
    };
    if report.findings.is_empty() {
        let _ = writeln!(out, "timefuse-lint: no findings{suppressed}, in {files}");
    } else {
        let by_rule: Vec<String> = report
            .counts()
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "warning: {} ({}){suppressed}, in {files}",
            plural(report.findings.len(), "finding"),
            by_rule.join(", ")
        );
    }
    if !report.errors.is_empty() {
        let _ = writeln!(
            out,
            "error: {} could not be linted",
            plural(report.errors.len(), "path")
        );
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
