//! Read-only questions about a piece of code: which names it mentions, whether it awaits,
//! whether it listens to a context, whether an await is a long one.

use std::collections::HashSet;

use syn::visit::{self, Visit};
use syn::{Expr, Member};

use super::env::{ctx_like_name, ident_of, peel};
use super::macros::{flatten, macro_name};

/// Methods that check or wait for the end of a context on any receiver.
pub(crate) const LISTEN_ANY: &[&str] = &[
    "is_done",
    "done",
    "is_cancelled",
    "cancelled",
    "cancelled_owned",
    "run_until_cancelled",
];

/// Methods that listen when called on a context: they race it or refuse once it has ended.
pub(crate) const LISTEN_ON_CTX: &[&str] = &[
    "run",
    "scope",
    "cause",
    "stage",
    "stage_leaving",
    "downstream",
];

/// Methods that pass a context on (the value they return still carries it).
const CARRY_METHODS: &[&str] = &[
    "clone",
    "to_owned",
    "context",
    "with_value",
    "with_request_id",
    "with_trace",
    "with_policy",
    "without_cancel",
    "as_ref",
    "scope",
    "run",
];

/// Awaited methods that may wait without bound.
pub(crate) const LONG_METHODS: &[&str] = &[
    "recv",
    "recv_many",
    "recv_async",
    "recv_from",
    "accept",
    "next",
    "try_next",
    "read",
    "read_exact",
    "read_to_end",
    "read_to_string",
    "read_line",
    "read_buf",
    "readable",
    "writable",
    "changed",
    "wait_for",
    "notified",
    "acquire",
    "acquire_owned",
    "acquire_many",
    "acquire_many_owned",
    "tick",
    "wait",
    "connect",
];

/// Awaited functions that may wait without bound.
pub(crate) const LONG_FNS: &[&str] = &["sleep", "sleep_until", "pending", "ctrl_c", "connect"];

/// Macros that await the futures in them.
pub(crate) const AWAITING_MACROS: &[&str] = &["select", "join", "try_join", "select_biased"];

/// Every single-identifier path in `expr` (and identifiers in macro bodies), nested closures
/// and async blocks included, nested items excluded.
pub(crate) fn idents(expr: &Expr) -> HashSet<String> {
    let mut c = Idents::default();
    c.visit_expr(expr);
    c.found
}

#[derive(Default)]
struct Idents {
    found: HashSet<String>,
}

impl<'ast> Visit<'ast> for Idents {
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if p.qself.is_none() && p.path.segments.len() == 1 {
            self.found.insert(p.path.segments[0].ident.to_string());
        }
        visit::visit_expr_path(self, p);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        for t in flatten(&m.tokens) {
            if t.is_ident && !t.after_dot {
                self.found.insert(t.text);
            }
        }
    }
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// True if `expr` awaits, outside nested closures, async blocks and items.
pub(crate) fn awaits(expr: &Expr) -> bool {
    let mut a = Awaits(false);
    a.visit_expr(expr);
    a.0
}

/// True if `block` awaits, outside nested closures, async blocks and items.
pub(crate) fn block_awaits(block: &syn::Block) -> bool {
    let mut a = Awaits(false);
    a.visit_block(block);
    a.0
}

struct Awaits(bool);

impl<'ast> Visit<'ast> for Awaits {
    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        self.0 = true;
        visit::visit_expr_await(self, e);
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if AWAITING_MACROS.contains(&macro_name(m).as_str())
            || flatten(&m.tokens)
                .iter()
                .any(|t| t.is_ident && t.after_dot && t.text == "await")
        {
            self.0 = true;
        }
    }
}

/// Facts a listen scan needs.
pub(crate) struct ListenCtx<'a> {
    /// Names of contexts and `done()` futures in scope.
    pub ctx_names: &'a HashSet<String>,
    /// Field names that hold a context.
    pub ctx_fields: &'a HashSet<String>,
}

impl ListenCtx<'_> {
    /// True if `expr` is a context (or a `done()` future) by name, field or `Context::current()`.
    pub fn is_ctx(&self, expr: &Expr) -> bool {
        match peel(expr) {
            e @ Expr::Path(_) => ident_of(e).is_some_and(|n| self.ctx_names.contains(&n)),
            Expr::Field(f) => match &f.member {
                Member::Named(n) => {
                    let n = n.to_string();
                    self.ctx_fields.contains(&n) || ctx_like_name(&n)
                }
                Member::Unnamed(_) => false,
            },
            e @ Expr::Call(_) => matches!(
                super::env::call_path(e),
                Some((Some(p), l)) if p == "Context" && (l == "current" || l == "try_current")
            ),
            _ => false,
        }
    }

    /// True if `expr`, used as an argument, hands a context to the callee: the context itself,
    /// a clone or child of it, its deadline or remaining time, or a struct/tuple carrying one.
    pub fn carries(&self, expr: &Expr) -> bool {
        let expr = peel(expr);
        if self.is_ctx(expr) {
            return true;
        }
        match expr {
            Expr::MethodCall(m) => {
                let name = m.method.to_string();
                (CARRY_METHODS.contains(&name.as_str())
                    || name.starts_with("with_")
                    || matches!(name.as_str(), "remaining" | "deadline"))
                    && (self.is_ctx(&m.receiver) || self.carries(&m.receiver))
                    || (matches!(
                        name.as_str(),
                        "unwrap" | "unwrap_or" | "unwrap_or_default" | "unwrap_or_else" | "expect"
                    ) && self.carries(&m.receiver))
            }
            Expr::Struct(s) => s.fields.iter().any(|f| self.carries(&f.expr)),
            Expr::Tuple(t) => t.elems.iter().any(|e| self.carries(e)),
            Expr::Array(a) => a.elems.iter().any(|e| self.carries(e)),
            Expr::Call(c) => {
                let wrapper = matches!(&*c.func, Expr::Path(p) if p.path.segments.last().is_some_and(|s| {
                    let s = s.ident.to_string();
                    s == "Some" || s == "Ok" || s == "new" || s == "from"
                }));
                wrapper && c.args.iter().any(|a| self.carries(a))
            }
            Expr::Field(f) => self.carries(&f.base),
            _ => false,
        }
    }

    /// True if `expr` listens to the context somewhere (see the module docs of `walker`).
    pub fn listens(&self, expr: &Expr) -> bool {
        let mut l = Listens {
            cx: self,
            found: false,
        };
        l.visit_expr(expr);
        l.found
    }

    /// True if `block` listens to the context somewhere.
    pub fn block_listens(&self, block: &syn::Block) -> bool {
        let mut l = Listens {
            cx: self,
            found: false,
        };
        l.visit_block(block);
        l.found
    }

    /// True if the tokens of a macro body listen: a listening method call, or (in `select!`,
    /// `join!`) a context mentioned at all.
    pub fn macro_listens(&self, mac: &syn::Macro) -> bool {
        let racing = AWAITING_MACROS.contains(&macro_name(mac).as_str());
        flatten(&mac.tokens).iter().any(|t| {
            t.is_ident
                && ((t.called && t.after_dot && LISTEN_ANY.contains(&t.text.as_str()))
                    || (racing && !t.after_dot && self.ctx_names.contains(&t.text)))
        })
    }
}

struct Listens<'a, 'b> {
    cx: &'a ListenCtx<'b>,
    found: bool,
}

impl<'ast> Visit<'ast> for Listens<'_, '_> {
    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        let name = m.method.to_string();
        if LISTEN_ANY.contains(&name.as_str())
            || (LISTEN_ON_CTX.contains(&name.as_str()) && self.cx.is_ctx(&m.receiver))
            || m.args.iter().any(|a| self.cx.carries(a))
        {
            self.found = true;
            return;
        }
        visit::visit_expr_method_call(self, m);
    }
    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if c.args.iter().any(|a| self.cx.carries(a)) {
            self.found = true;
            return;
        }
        visit::visit_expr_call(self, c);
    }
    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        // Awaiting a `done()` future held in a local.
        if self.cx.is_ctx(&e.base) {
            self.found = true;
            return;
        }
        visit::visit_expr_await(self, e);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if self.cx.macro_listens(m) {
            self.found = true;
            return;
        }
        if let Some(exprs) = super::macros::parse_exprs(m) {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
    }
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The name of the long wait `expr` starts (`"recv"`, `"sleep"`), if it is one and none of its
/// arguments involves a context.
pub(crate) fn long_op(expr: &Expr, cx: &ListenCtx<'_>) -> Option<String> {
    let mentions_ctx =
        |a: &Expr| idents(a).iter().any(|i| cx.ctx_names.contains(i)) || cx.carries(a);
    match peel(expr) {
        Expr::MethodCall(m) => {
            let name = m.method.to_string();
            (LONG_METHODS.contains(&name.as_str())
                && !cx.is_ctx(&m.receiver)
                && !m.args.iter().any(mentions_ctx))
            .then_some(name)
        }
        Expr::Call(c) => {
            let Expr::Path(p) = &*c.func else {
                return None;
            };
            let name = p.path.segments.last()?.ident.to_string();
            (LONG_FNS.contains(&name.as_str()) && !c.args.iter().any(mentions_ctx)).then_some(name)
        }
        _ => None,
    }
}

/// Names that stay alive past their binding: used as a value anywhere in `block` (moved,
/// borrowed, returned, stored), as opposed to only being the receiver of a method call or the
/// argument of `drop`. A `disarm()` receiver counts as kept too.
pub(crate) fn kept_names(block: &syn::Block) -> HashSet<String> {
    let mut k = Kept::default();
    k.visit_block(block);
    k.kept
}

#[derive(Default)]
struct Kept {
    kept: HashSet<String>,
}

impl<'ast> Visit<'ast> for Kept {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::MethodCall(m) if ident_of(&m.receiver).is_some() => {
                if m.method == "disarm"
                    && let Some(n) = ident_of(&m.receiver)
                {
                    self.kept.insert(n);
                }
                for a in &m.args {
                    self.visit_expr(a);
                }
                return;
            }
            Expr::Call(c) if is_drop_call(c) => return,
            Expr::Path(_) => {
                if let Some(n) = ident_of(e) {
                    self.kept.insert(n);
                }
                return;
            }
            _ => {}
        }
        visit::visit_expr(self, e);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        for t in flatten(&m.tokens) {
            if t.is_ident && !t.after_dot {
                self.kept.insert(t.text);
            }
        }
    }
}

/// `drop(x)`, `std::mem::drop(x)`, `mem::drop(x)` with one argument.
pub(crate) fn is_drop_call(c: &syn::ExprCall) -> bool {
    c.args.len() == 1
        && matches!(&*c.func, Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "drop"))
}
