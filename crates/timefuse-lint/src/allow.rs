//! Allow comments: `// timefuse-lint: allow(TF020)` silences one finding.
//!
//! Syntax: a line comment containing `timefuse-lint: allow(CODES)` where `CODES` is a
//! comma-separated list of rule codes (`TF020`), rule names (`guard-dropped-at-once`) or `all`,
//! optionally followed by a reason (`// timefuse-lint: allow(TF030) one per connection`; a
//! leading `:`, `-` or `—` before the reason is dropped).
//!
//! An allow applies to a finding on the same line, on the line just below it, or further below
//! across a run of comment and attribute lines (so that an allow can sit above a `#[derive]`).

use std::collections::HashMap;

use crate::rules::Rule;

/// The marker that starts an allow comment.
pub const MARKER: &str = "timefuse-lint:";

/// One parsed allow comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Allow {
    /// 1-based line of the comment.
    pub line: usize,
    /// The rules it silences; `None` for `all`.
    pub rules: Option<Vec<Rule>>,
    /// The reason after the closing parenthesis.
    pub reason: Option<String>,
}

impl Allow {
    fn covers(&self, rule: Rule) -> bool {
        self.rules
            .as_ref()
            .is_none_or(|rules| rules.contains(&rule))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind {
    Code,
    /// Only a comment, or only an attribute: the allow walk continues upward through it.
    Transparent,
}

/// The allow comments of one file.
#[derive(Debug, Default)]
pub(crate) struct AllowMap {
    by_line: HashMap<usize, Allow>,
    kinds: Vec<LineKind>,
}

impl AllowMap {
    /// Scans `source` for allow comments.
    pub fn new(source: &str) -> AllowMap {
        let mut map = AllowMap::default();
        for (i, line) in source.lines().enumerate() {
            let trimmed = line.trim_start();
            let kind = if trimmed.starts_with("//") || trimmed.starts_with("#[") {
                LineKind::Transparent
            } else {
                LineKind::Code
            };
            map.kinds.push(kind);
            if let Some(allow) = parse_line(line, i + 1) {
                map.by_line.insert(i + 1, allow);
            }
        }
        map
    }

    /// The allow that silences `rule` at any of `anchors` (1-based lines), if one does.
    pub fn find(&self, rule: Rule, anchors: &[usize]) -> Option<&Allow> {
        anchors.iter().find_map(|&line| self.find_at(rule, line))
    }

    fn find_at(&self, rule: Rule, line: usize) -> Option<&Allow> {
        let at = |l: usize| self.by_line.get(&l).filter(|a| a.covers(rule));
        if let Some(a) = at(line) {
            return Some(a);
        }
        // The line above, whatever it is, then up through comments and attributes.
        let mut l = line.checked_sub(1)?;
        while l >= 1 {
            if let Some(a) = at(l) {
                return Some(a);
            }
            if self.kinds.get(l - 1) != Some(&LineKind::Transparent) {
                return None;
            }
            l -= 1;
        }
        None
    }
}

/// Parses the allow comment on one line, if it has one.
fn parse_line(line: &str, number: usize) -> Option<Allow> {
    let comment = line.find("//")?;
    let text = &line[comment..];
    let at = text.find(MARKER)?;
    let rest = text[at + MARKER.len()..].trim_start();
    let rest = rest.strip_prefix("allow")?.trim_start();
    let rest = rest.strip_prefix('(')?;
    let close = rest.find(')')?;
    let mut rules = Vec::new();
    let mut all = false;
    for item in rest[..close].split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if item.eq_ignore_ascii_case("all") {
            all = true;
        } else if let Some(rule) = Rule::from_code(item) {
            rules.push(rule);
        }
    }
    if !all && rules.is_empty() {
        return None;
    }
    let reason = rest[close + 1..]
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '-' | '—' | '–'))
        .trim_end()
        .trim_end_matches("*/")
        .trim_end();
    Some(Allow {
        line: number,
        rules: if all { None } else { Some(rules) },
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_names_and_reasons() {
        let a = parse_line(
            "    let x = 1; // timefuse-lint: allow(TF020, context-in-struct) — one per connection",
            3,
        )
        .unwrap();
        assert_eq!(
            a.rules,
            Some(vec![Rule::GuardDroppedAtOnce, Rule::ContextInStruct])
        );
        assert_eq!(a.reason.as_deref(), Some("one per connection"));
        assert_eq!(a.line, 3);

        let all = parse_line("// timefuse-lint: allow(all)", 1).unwrap();
        assert!(all.covers(Rule::AwaitNotRaced));
        assert_eq!(all.reason, None);

        assert!(parse_line("// timefuse-lint: allow()", 1).is_none());
        assert!(parse_line("// timefuse-lint: deny(TF020)", 1).is_none());
        assert!(parse_line("// timefuse-lint: allow(TF020", 1).is_none());
        assert!(parse_line("let s = \"timefuse-lint: allow(TF020)\";", 1).is_none());
    }

    #[test]
    fn applies_to_the_line_and_up_through_comments_and_attributes() {
        let src = "\
// timefuse-lint: allow(TF030): reason here
#[derive(Debug)]
struct S {
    ctx: Context, // timefuse-lint: allow(TF001)
}
let a = 1;
let b = 2;
";
        let map = AllowMap::new(src);
        assert!(map.find(Rule::ContextInStruct, &[3]).is_some());
        assert!(map.find(Rule::ContextInStruct, &[2]).is_some());
        assert!(map.find(Rule::ContextInStruct, &[4]).is_none());
        assert!(map.find(Rule::SpawnWithoutContext, &[4]).is_some());
        assert!(
            map.find(Rule::SpawnWithoutContext, &[5]).is_some(),
            "the line above"
        );
        assert!(map.find(Rule::SpawnWithoutContext, &[6]).is_none());
        assert!(map.find(Rule::ContextInStruct, &[7, 3]).is_some());
        assert_eq!(
            map.find(Rule::ContextInStruct, &[1])
                .unwrap()
                .reason
                .as_deref(),
            Some("reason here")
        );
    }
}
