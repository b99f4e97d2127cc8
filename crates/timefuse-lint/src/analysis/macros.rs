//! Reading inside macro invocations: `select!` branches, comma-separated expressions
//! (`join!`, `assert!`, `format!`, ...), items (`pin_project!`), and a token-level fallback.

use proc_macro2::{TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Item, Macro, Pat, Token};

/// One branch of a `tokio::select!`.
pub(crate) struct SelectBranch {
    /// The pattern, `None` for the `else` branch.
    pub pat: Option<Pat>,
    /// The future, `None` for the `else` branch.
    pub fut: Option<Expr>,
    /// The `, if cond` precondition.
    pub cond: Option<Expr>,
    /// The handler.
    pub handler: Expr,
}

/// The last segment of a macro's path: `select` for `tokio::select!`.
pub(crate) fn macro_name(mac: &Macro) -> String {
    mac.path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// Parses a `select!` body.
pub(crate) fn parse_select(tokens: TokenStream) -> Option<Vec<SelectBranch>> {
    let parser = |input: ParseStream<'_>| {
        let mut out = Vec::new();
        if input.peek(syn::Ident) && input.peek2(Token![;]) {
            input.parse::<syn::Ident>()?;
            input.parse::<Token![;]>()?;
        }
        while !input.is_empty() {
            if input.peek(Token![else]) {
                input.parse::<Token![else]>()?;
                input.parse::<Token![=>]>()?;
                let handler = parse_handler(input)?;
                out.push(SelectBranch {
                    pat: None,
                    fut: None,
                    cond: None,
                    handler,
                });
            } else {
                let pat = Pat::parse_single(input)?;
                input.parse::<Token![=]>()?;
                let fut: Expr = input.parse()?;
                let cond = if input.peek(Token![,]) && input.peek2(Token![if]) {
                    input.parse::<Token![,]>()?;
                    input.parse::<Token![if]>()?;
                    Some(input.parse::<Expr>()?)
                } else {
                    None
                };
                input.parse::<Token![=>]>()?;
                let handler = parse_handler(input)?;
                out.push(SelectBranch {
                    pat: Some(pat),
                    fut: Some(fut),
                    cond,
                    handler,
                });
            }
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(out)
    };
    parser.parse2(tokens).ok()
}

fn parse_handler(input: ParseStream<'_>) -> syn::Result<Expr> {
    if input.peek(syn::token::Brace) {
        let block: syn::ExprBlock = input.parse()?;
        Ok(Expr::Block(block))
    } else {
        input.parse()
    }
}

/// Parses a macro body as comma-separated expressions, if it is one.
pub(crate) fn parse_exprs(mac: &Macro) -> Option<Vec<Expr>> {
    mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        .ok()
        .map(|p| p.into_iter().collect())
}

/// Parses an item-position macro body (`pin_project! { struct .. }`) as items.
pub(crate) fn parse_items(mac: &Macro) -> Option<Vec<Item>> {
    if macro_name(mac) == "macro_rules" {
        return None;
    }
    let parser = |input: ParseStream<'_>| {
        let mut items = Vec::new();
        while !input.is_empty() {
            items.push(input.parse::<Item>()?);
        }
        Ok(items)
    };
    mac.parse_body_with(parser).ok()
}

/// A flattened token: an identifier or punctuation, with whether a `(..)` group follows.
#[derive(Debug)]
pub(crate) struct Tok {
    /// The identifier, or the punctuation character as a string.
    pub text: String,
    /// True if the token is an identifier.
    pub is_ident: bool,
    /// True if a parenthesized group follows it directly.
    pub called: bool,
    /// The previous token was a `.`.
    pub after_dot: bool,
}

/// Flattens a token stream (iteratively, whatever its nesting) into identifiers and punctuation.
pub(crate) fn flatten(tokens: &TokenStream) -> Vec<Tok> {
    let mut out: Vec<Tok> = Vec::new();
    let mut stack: Vec<std::iter::Peekable<proc_macro2::token_stream::IntoIter>> =
        vec![tokens.clone().into_iter().peekable()];
    let mut prev_dot = false;
    while let Some(iter) = stack.last_mut() {
        let Some(tt) = iter.next() else {
            stack.pop();
            continue;
        };
        let next_is_paren = matches!(
            iter.peek(),
            Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Parenthesis
        );
        match tt {
            TokenTree::Group(g) => {
                prev_dot = false;
                stack.push(g.stream().into_iter().peekable());
            }
            TokenTree::Ident(i) => {
                out.push(Tok {
                    text: i.to_string(),
                    is_ident: true,
                    called: next_is_paren,
                    after_dot: prev_dot,
                });
                prev_dot = false;
            }
            TokenTree::Punct(p) => {
                out.push(Tok {
                    text: p.as_char().to_string(),
                    is_ident: false,
                    called: false,
                    after_dot: prev_dot,
                });
                prev_dot = p.as_char() == '.';
            }
            TokenTree::Literal(_) => prev_dot = false,
        }
    }
    out
}

/// The deepest delimiter nesting of a token stream, computed without recursion.
pub(crate) fn max_depth(tokens: &TokenStream) -> usize {
    let mut max = 0;
    let mut stack: Vec<proc_macro2::token_stream::IntoIter> = vec![tokens.clone().into_iter()];
    while let Some(iter) = stack.last_mut() {
        match iter.next() {
            Some(TokenTree::Group(g)) => {
                stack.push(g.stream().into_iter());
                max = max.max(stack.len() - 1);
            }
            Some(_) => {}
            None => {
                stack.pop();
            }
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_select_branches() {
        let tokens: TokenStream = "biased; _ = ctx.done() => return, Some(m) = rx.recv(), if open => { handle(m) } else => break,"
            .parse()
            .unwrap();
        let branches = parse_select(tokens).unwrap();
        assert_eq!(branches.len(), 3);
        assert!(branches[1].cond.is_some());
        assert!(branches[2].fut.is_none());
    }

    #[test]
    fn flattens_and_measures_depth() {
        let tokens: TokenStream = "a.done() ((b))".parse().unwrap();
        let toks = flatten(&tokens);
        assert!(
            toks.iter()
                .any(|t| t.text == "done" && t.called && t.after_dot)
        );
        assert_eq!(max_depth(&tokens), 2);
    }
}
