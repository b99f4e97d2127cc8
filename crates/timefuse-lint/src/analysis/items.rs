//! Item-level rule: `TF030`, a context stored in a struct (Go's containedctx).

use syn::spanned::Spanned;

use super::RawFinding;
use super::names::Names;
use crate::report::Options;
use crate::rules::Rule;

/// Struct-name suffixes that mark a per-request value, allowed to hold its context.
pub(crate) const PER_REQUEST_SUFFIXES: &[&str] = &["Request", "Call", "Task"];

/// The TF030 finding for `s`, if it stores a context and is not exempt.
pub(crate) fn contained_ctx(
    s: &syn::ItemStruct,
    names: &Names,
    opts: &Options,
) -> Option<RawFinding> {
    // The crate that defines `Context` stores contexts by design (its registries, scopes).
    if names.defines_context {
        return None;
    }
    let name = s.ident.to_string();
    let per_request = PER_REQUEST_SUFFIXES
        .iter()
        .map(|s| s.to_string())
        .chain(opts.extra_struct_suffixes.iter().cloned())
        .any(|suffix| !suffix.is_empty() && name.ends_with(&suffix));
    // A future, stream or body lives exactly as long as the work it does.
    let per_call = names.per_call_types.contains(&name);
    // A struct that owns the guard of its context is that context's scope.
    let owns_guard = s.fields.iter().any(|f| names.type_contains_guard(&f.ty));
    if per_request || per_call || owns_guard {
        return None;
    }
    let (i, field) = s
        .fields
        .iter()
        .enumerate()
        .find(|(_, f)| names.type_contains_ctx(&f.ty))?;
    let field_name = field
        .ident
        .as_ref()
        .map_or_else(|| i.to_string(), |id| id.to_string());
    let span = field.span();
    Some(RawFinding {
        rule: Rule::ContextInStruct,
        start: span.start(),
        end: span.end(),
        message: format!(
            "struct `{name}` stores a `Context` in field `{field_name}`: a context belongs to one request, and a long-lived value outlives it or shares it between requests"
        ),
        extra_anchor: Some(s.ident.span().start().line),
    })
}
