//! The analysis of one parsed file.
//!
//! Everything here is syntactic: there is no type checking and no name resolution across
//! files. A value is a context because of where it comes from (a parameter typed `Context`,
//! `&Context` or `BudgetScope`; `Context::current()`; a `with_*`, `stage` or `downstream`
//! child of a context), a guard because of the tuple it was destructured from. See
//! `docs/lint.md` for the heuristics of each rule and their limits.

mod env;
mod items;
mod macros;
mod names;
mod scan;
mod walker;

use proc_macro2::LineColumn;
use syn::visit::Visit;

pub(crate) use macros::max_depth;

use crate::report::Options;
use crate::rules::Rule;

/// A finding before it is matched with allow comments and rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawFinding {
    pub rule: Rule,
    /// 1-based line, 0-based character column.
    pub start: LineColumn,
    pub end: LineColumn,
    pub message: String,
    /// Another line an allow comment may sit on (the struct line for a field).
    pub extra_anchor: Option<usize>,
}

/// Runs every enabled rule over `file`, whose text is `source`.
pub(crate) fn analyze(file: &syn::File, source: &str, opts: &Options) -> Vec<RawFinding> {
    let names = names::Names::of(file);
    if names.test_only && !opts.include_tests {
        return Vec::new();
    }
    let mut walker = walker::Walker::new(&names, opts, source);
    walker.visit_file(file);
    let mut out = walker.out;
    out.sort_by_key(|f| (f.start.line, f.start.column, f.rule));
    out.dedup_by(|a, b| a.rule == b.rule && a.start == b.start);
    out
}

/// `#[cfg(test)]`, `#[cfg(all(test, ..))]`: an item compiled for tests only.
pub(crate) fn is_cfg_test(attr: &syn::Attribute) -> bool {
    if !attr.path().is_ident("cfg") {
        return false;
    }
    let syn::Meta::List(list) = &attr.meta else {
        return false;
    };
    let toks = macros::flatten(&list.tokens);
    toks.iter().any(|t| t.is_ident && t.text == "test")
        && !toks
            .iter()
            .any(|t| t.is_ident && (t.text == "not" || t.text == "any"))
}

/// `#[test]`, `#[tokio::test]`, `#[bench]`, `#[rstest]`-style test functions.
pub(crate) fn is_test_attr(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| matches!(s.ident.to_string().as_str(), "test" | "bench" | "rstest"))
}

/// The items inside an item-position macro such as `pin_project! { .. }`.
pub(crate) fn macro_items(m: &syn::ItemMacro) -> Option<Vec<syn::Item>> {
    if m.ident.is_some() {
        return None; // macro_rules! name { .. }
    }
    macros::parse_items(&m.mac)
}

#[cfg(test)]
mod tests;
