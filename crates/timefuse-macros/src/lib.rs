//! Procedural macros for timefuse. Use them through their re-exports: `#[timefuse_leak::test]`
//! is [`macro@test`].
//!
//! This crate has no runtime code of its own; the code it generates calls into `timefuse_leak`
//! and `tokio`, which the crate using it must depend on (as it already does to use
//! `#[tokio::test]`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, Token};

/// `#[tokio::test]` with a leak check: the test fails if, once its body has returned, a task it
/// spawned through timefuse, an unbound tokio task on its runtime, or a tracked resource it
/// acquired is still alive.
///
/// The check is `timefuse_leak::LeakGuard`: taken before the body runs, verified with
/// retries (1 µs doubling to 100 ms, 20 tries, as goleak does) after the body has returned and
/// its locals have been dropped. Each `#[tokio::test]` has its own runtime, and the check only
/// looks at that runtime, so tests running in parallel never see each other's tasks.
///
/// # Arguments
///
/// Every argument of `#[tokio::test]` (`flavor`, `worker_threads`, `start_paused`,
/// `unhandled_panic`, `crate`, ...) is passed on to it unchanged. The leak check adds:
///
/// | argument | effect |
/// |---|---|
/// | `ignore_name = "name"` | tasks with this name and resources of this kind are not leaks (repeatable) |
/// | `ignore_location = "path/file.rs:42"` | tasks spawned and resources acquired where the location (`file:line:column`) starts with this prefix are not leaks (repeatable) |
/// | `ignore_current` | ignore what was alive when the test started (goleak's `IgnoreCurrent`) |
/// | `allow_unbound = 2` | up to this many unbound tokio tasks may stay alive (a test server, say) |
///
/// # Examples
///
/// ```ignore
/// #[timefuse_leak::test(start_paused = true)]
/// async fn bound_task_stops_at_deadline() {
///     let (ctx, _guard) = timefuse::Context::background().with_timeout(Duration::from_millis(100));
///     let handle = ctx.spawn(tokio::time::sleep(Duration::from_secs(10)));
///     assert!(handle.await.unwrap().is_err());
/// }
///
/// #[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
/// async fn against_a_real_server() {
///     tokio::spawn(serve()); // runs until the runtime shuts down
///     // ...
/// }
/// ```
///
/// The runnable examples are on `timefuse_leak::test`, where the generated code's paths
/// resolve.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The leak-check options found in the attribute, as builder calls on `LeakOptions`.
struct Options {
    calls: Vec<TokenStream2>,
    forwarded: Vec<Meta>,
}

fn string_arg(expr: &Expr, name: &str) -> syn::Result<syn::LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` takes a string literal, e.g. {name} = \"...\""),
        )),
    }
}

fn bool_arg(expr: &Expr, name: &str) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{name}` takes `true` or `false`"),
        )),
    }
}

fn parse_options(args: TokenStream2) -> syn::Result<Options> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut options = Options {
        calls: Vec::new(),
        forwarded: Vec::new(),
    };
    for meta in metas {
        let name = meta.path().get_ident().map(ToString::to_string);
        match (name.as_deref(), &meta) {
            (Some("ignore_name"), Meta::NameValue(nv)) => {
                let s = string_arg(&nv.value, "ignore_name")?;
                options
                    .calls
                    .push(quote_spanned!(s.span()=> .ignore_name(#s)));
            }
            (Some("ignore_location"), Meta::NameValue(nv)) => {
                let s = string_arg(&nv.value, "ignore_location")?;
                options
                    .calls
                    .push(quote_spanned!(s.span()=> .ignore_location(#s)));
            }
            (Some("ignore_current"), Meta::Path(_)) => {
                options.calls.push(quote!(.ignore_current()));
            }
            (Some("ignore_current"), Meta::NameValue(nv)) => {
                if bool_arg(&nv.value, "ignore_current")? {
                    options.calls.push(quote!(.ignore_current()));
                }
            }
            (Some("allow_unbound"), Meta::NameValue(nv)) => {
                let value = match &nv.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(n), ..
                    }) => n.base10_parse::<usize>()?,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "`allow_unbound` takes an integer, e.g. allow_unbound = 1",
                        ));
                    }
                };
                options.calls.push(quote!(.allow_unbound(#value)));
            }
            (Some(n @ ("ignore_name" | "ignore_location" | "allow_unbound")), _) => {
                return Err(syn::Error::new(
                    meta.span(),
                    format!("`{n}` needs a value: {n} = ..."),
                ));
            }
            _ => options.forwarded.push(meta),
        }
    }
    Ok(options)
}

fn expand(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let options = parse_options(args)?;
    let func: ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            func.sig.fn_token.span(),
            "#[timefuse_leak::test] goes on an `async fn`, as #[tokio::test] does",
        ));
    }
    if !func.sig.inputs.is_empty() {
        return Err(syn::Error::new(
            func.sig.inputs.span(),
            "a test function takes no arguments",
        ));
    }
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let output = &sig.output;
    let calls = &options.calls;
    let forwarded = &options.forwarded;
    let body_ident = syn::Ident::new("__timefuse_leak_body", Span::mixed_site());
    let guard = syn::Ident::new("__timefuse_leak_guard", Span::mixed_site());
    let out = syn::Ident::new("__timefuse_leak_output", Span::mixed_site());
    // The body moves into an inner `async fn` with the test's own return type, so `return` and
    // `?` mean what they meant; its locals are dropped before the check runs.
    Ok(quote! {
        #(#attrs)*
        #[::tokio::test(#(#forwarded),*)]
        #vis #sig {
            #[allow(clippy::unused_async)]
            async fn #body_ident() #output #block
            let #guard = ::timefuse_leak::LeakGuard::with_options(
                ::timefuse_leak::LeakOptions::new() #(#calls)*
            );
            let #out = #body_ident().await;
            #guard.verify_or_panic().await;
            #out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn expand_str(args: &str, item: &str) -> String {
        expand(args.parse().unwrap(), item.parse().unwrap())
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn forwards_tokio_arguments_and_builds_options() {
        let out = expand_str(
            r#"flavor = "multi_thread", worker_threads = 2, ignore_name = "detached", ignore_current, allow_unbound = 1"#,
            "async fn t() { body(); }",
        );
        assert!(
            out.contains(r#"# [:: tokio :: test (flavor = "multi_thread" , worker_threads = 2)]"#),
            "{out}"
        );
        assert!(out.contains(r#". ignore_name ("detached")"#), "{out}");
        assert!(out.contains(". ignore_current ()"), "{out}");
        assert!(out.contains(". allow_unbound (1usize)"), "{out}");
        assert!(out.contains("verify_or_panic"), "{out}");
    }

    #[test]
    fn rejects_sync_functions_and_bad_values() {
        assert!(expand_str("", "fn t() {}").contains("goes on an `async fn`"));
        assert!(expand_str("ignore_name = 3", "async fn t() {}").contains("string literal"));
        assert!(expand_str("allow_unbound", "async fn t() {}").contains("needs a value"));
        assert!(expand_str("ignore_current = 1", "async fn t() {}").contains("`true` or `false`"));
    }

    #[test]
    fn keeps_the_return_type_and_attributes() {
        let out = expand_str(
            "",
            "/// doc\n#[ignore] async fn t() -> Result<(), String> { Ok(()) }",
        );
        assert!(out.contains("# [ignore]"), "{out}");
        assert!(
            out.contains("async fn __timefuse_leak_body () -> Result < () , String >"),
            "{out}"
        );
    }
}
