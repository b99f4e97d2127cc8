//! The lexical environment of a function: which local names hold a context, a guard or a
//! `done()` future, and what an expression evaluates to, as far as syntax tells.

use syn::{Expr, Member, Pat};

use super::names::Names;

/// Where a context comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Handed in: a parameter, `Context::current()`, or a child of one of those.
    Inherited,
    /// A new request root made here: a child of `Context::background()`, `Context::request(..)`.
    Root,
    /// `Context::background()`/`Context::default()` itself, or a value child of it: never ends.
    Fresh,
}

impl Kind {
    /// The kind of a cancellable child of a context of this kind.
    pub fn child(self) -> Kind {
        match self {
            Kind::Inherited => Kind::Inherited,
            Kind::Root | Kind::Fresh => Kind::Root,
        }
    }
}

/// A local that holds a context (or a `BudgetScope`, which derefs to one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CtxVar {
    pub kind: Kind,
    /// Local guards and scopes whose drop cancels this context (its own and its ancestors').
    pub guards: Vec<String>,
    /// The local it was derived from, if any.
    pub parent: Option<String>,
}

/// What a local name holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Other,
    Ctx(CtxVar),
    /// A `CancelGuard`, for the context named.
    Guard {
        ctx: Option<String>,
    },
    /// A `Done` future of a context.
    Done,
    /// A deadline or remaining time read from a context (`ctx.remaining()`).
    Deadline,
}

#[derive(Clone, Debug)]
pub(crate) struct Binding {
    pub name: String,
    pub class: Class,
    /// How many loops enclosed the binding.
    pub loop_depth: usize,
}

/// Nested lexical scopes of bindings; later bindings shadow earlier ones.
#[derive(Debug, Default)]
pub(crate) struct Env {
    scopes: Vec<Vec<Binding>>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            scopes: vec![Vec::new()],
        }
    }

    pub fn push(&mut self) {
        self.scopes.push(Vec::new());
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
        if self.scopes.is_empty() {
            self.scopes.push(Vec::new());
        }
    }

    pub fn bind(&mut self, name: String, class: Class, loop_depth: usize) {
        if let Some(top) = self.scopes.last_mut() {
            top.push(Binding {
                name,
                class,
                loop_depth,
            });
        }
    }

    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|b| b.name == name)
    }

    pub fn ctx(&self, name: &str) -> Option<&CtxVar> {
        match self.get(name).map(|b| &b.class) {
            Some(Class::Ctx(c)) => Some(c),
            _ => None,
        }
    }

    /// Every visible binding, innermost and latest first, shadowed ones skipped.
    pub fn visible(&self) -> Vec<&Binding> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for b in self.scopes.iter().rev().flat_map(|s| s.iter().rev()) {
            if seen.insert(b.name.as_str()) {
                out.push(b);
            }
        }
        out
    }

    /// The nearest visible context whose kind passes `pred`.
    pub fn nearest_ctx(&self, pred: impl Fn(Kind) -> bool) -> Option<(&str, &CtxVar)> {
        self.visible().into_iter().find_map(|b| match &b.class {
            Class::Ctx(c) if pred(c.kind) => Some((b.name.as_str(), c)),
            _ => None,
        })
    }

    /// Names of visible contexts and `done()` futures.
    pub fn ctx_names(&self) -> std::collections::HashSet<String> {
        self.visible()
            .into_iter()
            .filter(|b| matches!(b.class, Class::Ctx(_) | Class::Done))
            .map(|b| b.name.clone())
            .collect()
    }

    /// Names of visible contexts, `done()` futures and deadlines read from a context.
    pub fn ctx_and_deadline_names(&self) -> std::collections::HashSet<String> {
        self.visible()
            .into_iter()
            .filter(|b| matches!(b.class, Class::Ctx(_) | Class::Done | Class::Deadline))
            .map(|b| b.name.clone())
            .collect()
    }

    /// True if `name` is `ancestor` or was derived from it, following `parent` links.
    pub fn derived_from(&self, name: &str, ancestor: &str) -> bool {
        let mut cur = name.to_owned();
        for _ in 0..64 {
            if cur == ancestor {
                return true;
            }
            match self.ctx(&cur).and_then(|c| c.parent.clone()) {
                Some(p) if p != cur => cur = p,
                _ => return false,
            }
        }
        false
    }
}

/// What an expression evaluates to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Other,
    Ctx(CtxVar),
    /// `(Context, CancelGuard)`: the child, before its guard is bound.
    Pair(CtxVar),
    /// A `BudgetScope` (after `?`/`unwrap()`).
    Scope(CtxVar),
    /// `Result<BudgetScope, BudgetExhausted>`.
    ScopeResult(CtxVar),
    Done,
}

/// Methods that derive a value-only child: same cancellation, same guards.
pub(crate) const VALUE_DERIVE: &[&str] = &[
    "with_value",
    "with_request_id",
    "with_trace",
    "with_policy",
    "clone",
    "to_owned",
    "context",
];

/// Methods that return `(Context, CancelGuard)`.
pub(crate) const PAIR_DERIVE: &[&str] = &[
    "with_cancel",
    "with_timeout",
    "with_deadline",
    "with_request_budget",
    "with_request_deadline",
];

/// Methods that return `Result<BudgetScope, _>`.
pub(crate) const SCOPE_DERIVE: &[&str] = &["stage", "stage_leaving", "downstream"];

/// Peels parentheses, groups, references and derefs.
pub(crate) fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => peel(&p.expr),
        Expr::Group(g) => peel(&g.expr),
        Expr::Reference(r) => peel(&r.expr),
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => peel(&u.expr),
        _ => expr,
    }
}

/// The single identifier of a path expression (`ctx`), if it is one.
pub(crate) fn ident_of(expr: &Expr) -> Option<String> {
    match peel(expr) {
        Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            let seg = &p.path.segments[0];
            matches!(seg.arguments, syn::PathArguments::None).then(|| seg.ident.to_string())
        }
        _ => None,
    }
}

/// True for a name that by convention holds a context (`ctx`, `parent_ctx`, `context`).
pub(crate) fn ctx_like_name(name: &str) -> bool {
    let n = name.trim_start_matches('_');
    n == "ctx"
        || n == "context"
        || n.ends_with("_ctx")
        || n.starts_with("ctx_")
        || n.ends_with("_context")
}

/// The last two segments of a call's path, such as `("Context", "current")`.
pub(crate) fn call_path(expr: &Expr) -> Option<(Option<String>, String)> {
    let Expr::Call(call) = peel(expr) else {
        return None;
    };
    let Expr::Path(p) = &*call.func else {
        return None;
    };
    let segs: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let last = segs.last()?.clone();
    let prev = (segs.len() >= 2).then(|| segs[segs.len() - 2].clone());
    Some((prev, last))
}

/// Classifies what `expr` evaluates to in `env`.
pub(crate) fn classify(expr: &Expr, env: &Env, names: &Names) -> Value {
    match peel(expr) {
        Expr::Try(t) => match classify(&t.expr, env, names) {
            Value::ScopeResult(c) => Value::Scope(c),
            other => other,
        },
        e @ Expr::Path(_) => {
            let Some(name) = ident_of(e) else {
                return Value::Other;
            };
            match env.get(&name).map(|b| &b.class) {
                Some(Class::Ctx(c)) => Value::Ctx(CtxVar {
                    kind: c.kind,
                    guards: c.guards.clone(),
                    parent: Some(name),
                }),
                Some(Class::Done) => Value::Done,
                _ => Value::Other,
            }
        }
        Expr::Field(f) => {
            if let Member::Named(field) = &f.member
                && names.ctx_fields.contains(&field.to_string())
            {
                return Value::Ctx(CtxVar {
                    kind: Kind::Inherited,
                    guards: Vec::new(),
                    parent: None,
                });
            }
            if let Member::Unnamed(i) = &f.member
                && i.index == 0
                && let Value::Pair(c) = classify(&f.base, env, names)
            {
                return Value::Ctx(c);
            }
            Value::Other
        }
        Expr::Call(call) => {
            let Some((prev, last)) = call_path(expr) else {
                return Value::Other;
            };
            let on_context = prev.as_ref().is_some_and(|p| names.ctx_types.contains(p))
                || prev.as_deref() == Some("Context");
            if !on_context {
                return Value::Other;
            }
            let fresh = CtxVar {
                kind: Kind::Fresh,
                guards: Vec::new(),
                parent: None,
            };
            match last.as_str() {
                "current" | "try_current" => Value::Ctx(CtxVar {
                    kind: Kind::Inherited,
                    guards: Vec::new(),
                    parent: None,
                }),
                "background" | "default" => Value::Ctx(fresh),
                "request" => Value::Pair(CtxVar {
                    kind: Kind::Root,
                    ..fresh
                }),
                "clone" => call
                    .args
                    .first()
                    .map_or(Value::Other, |a| classify(a, env, names)),
                _ => Value::Other,
            }
        }
        Expr::Match(m) => {
            // `match ctx.stage("x") { Ok(s) => s, Err(e) => return .. }`
            let value = classify(&m.expr, env, names);
            for arm in &m.arms {
                if let Pat::TupleStruct(ts) = &arm.pat
                    && ts.elems.len() == 1
                    && ts
                        .path
                        .segments
                        .last()
                        .is_some_and(|s| s.ident == "Ok" || s.ident == "Some")
                    && let Some(bound) = ident_pat(&ts.elems[0])
                    && ident_of(&arm.body).as_deref() == Some(bound.as_str())
                {
                    return match value {
                        Value::ScopeResult(c) => Value::Scope(c),
                        v @ (Value::Ctx(_) | Value::Done) => v,
                        _ => Value::Other,
                    };
                }
            }
            Value::Other
        }
        Expr::MethodCall(m) => {
            let method = m.method.to_string();
            let recv = classify(&m.receiver, env, names);
            let recv_name = ident_of(&m.receiver);
            let recv_ctx = match &recv {
                Value::Ctx(c) | Value::Scope(c) => Some(c.clone()),
                _ => None,
            };
            // A receiver we cannot see but that is named like a context.
            let guessed = || {
                is_ctx_like_expr(&m.receiver).then(|| CtxVar {
                    kind: Kind::Inherited,
                    guards: Vec::new(),
                    parent: None,
                })
            };
            let m_str = method.as_str();
            if VALUE_DERIVE.contains(&m_str) {
                return match (recv, m_str) {
                    (Value::Done, "clone") => Value::Done,
                    (Value::Ctx(c) | Value::Scope(c), _) => Value::Ctx(CtxVar {
                        parent: recv_name.or(c.parent),
                        ..c
                    }),
                    _ => Value::Other,
                };
            }
            match m_str {
                "without_cancel" => match recv_ctx {
                    Some(c) => Value::Ctx(CtxVar {
                        kind: c.kind,
                        guards: Vec::new(),
                        parent: recv_name,
                    }),
                    None => Value::Other,
                },
                _ if PAIR_DERIVE.contains(&m_str) => match recv_ctx.or_else(guessed) {
                    Some(c) => Value::Pair(CtxVar {
                        kind: c.kind.child(),
                        guards: c.guards,
                        parent: recv_name,
                    }),
                    None => Value::Other,
                },
                _ if SCOPE_DERIVE.contains(&m_str) => match recv_ctx.or_else(guessed) {
                    Some(c) => Value::ScopeResult(CtxVar {
                        kind: c.kind.child(),
                        guards: c.guards,
                        parent: recv_name,
                    }),
                    None => Value::Other,
                },
                "unwrap" | "expect" | "unwrap_or_default" | "unwrap_or_else" | "unwrap_or" => {
                    match recv {
                        Value::ScopeResult(c) => Value::Scope(c),
                        Value::Ctx(c) => Value::Ctx(c),
                        _ => Value::Other,
                    }
                }
                "into_parts" => match recv {
                    Value::Scope(c) => Value::Pair(c),
                    Value::Ctx(c) if recv_name.as_ref().is_some_and(|n| c.guards.contains(n)) => {
                        Value::Pair(c)
                    }
                    _ => Value::Other,
                },
                "done" => match recv {
                    Value::Ctx(_) | Value::Scope(_) => Value::Done,
                    _ => Value::Other,
                },
                _ => Value::Other,
            }
        }
        _ => Value::Other,
    }
}

/// True for an expression that looks like a context without the environment knowing it: a
/// local named like one, a `.ctx`/`.context` field, `.context()`, `Context::current()`.
pub(crate) fn is_ctx_like_expr(expr: &Expr) -> bool {
    match peel(expr) {
        e @ Expr::Path(_) => ident_of(e).is_some_and(|n| ctx_like_name(&n)),
        Expr::Field(f) => match &f.member {
            Member::Named(n) => ctx_like_name(&n.to_string()),
            Member::Unnamed(_) => false,
        },
        Expr::MethodCall(m) => {
            (m.method == "context" && m.args.is_empty())
                || (m.method == "clone" && is_ctx_like_expr(&m.receiver))
        }
        e @ Expr::Call(_) => matches!(
            call_path(e),
            Some((Some(p), l)) if p == "Context" && (l == "current" || l == "try_current")
        ),
        _ => false,
    }
}

/// The identifiers a pattern binds, in order.
pub(crate) fn pat_idents(pat: &Pat, out: &mut Vec<String>) {
    match pat {
        Pat::Ident(i) => {
            out.push(i.ident.to_string());
            if let Some((_, sub)) = &i.subpat {
                pat_idents(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pat_idents(&f.pat, out)),
        Pat::Slice(s) => s.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::Reference(r) => pat_idents(&r.pat, out),
        Pat::Paren(p) => pat_idents(&p.pat, out),
        Pat::Type(t) => pat_idents(&t.pat, out),
        Pat::Or(o) => {
            if let Some(first) = o.cases.first() {
                pat_idents(first, out);
            }
        }
        _ => {}
    }
}

/// Peels `(p)`, `&p`, `p: T` to the core pattern.
pub(crate) fn peel_pat(pat: &Pat) -> &Pat {
    match pat {
        Pat::Paren(p) => peel_pat(&p.pat),
        Pat::Reference(r) => peel_pat(&r.pat),
        Pat::Type(t) => peel_pat(&t.pat),
        _ => pat,
    }
}

/// Binds `pat` to `value` in `env`.
pub(crate) fn bind_pat(env: &mut Env, pat: &Pat, value: Value, loop_depth: usize, names: &Names) {
    // A type annotation can tell what the value cannot.
    if let Pat::Type(t) = pat
        && value == Value::Other
        && names.is_ctx_param_type(&t.ty)
    {
        let ctx = Value::Ctx(CtxVar {
            kind: Kind::Inherited,
            guards: Vec::new(),
            parent: None,
        });
        return bind_pat(env, &t.pat, ctx, loop_depth, names);
    }
    match (peel_pat(pat), value) {
        (Pat::Ident(i), value) if i.subpat.is_none() => {
            let name = i.ident.to_string();
            let class = match value {
                Value::Ctx(c) => Class::Ctx(c),
                Value::Scope(mut c) => {
                    c.guards.push(name.clone());
                    Class::Ctx(c)
                }
                Value::Done => Class::Done,
                Value::Other | Value::Pair(_) | Value::ScopeResult(_) => Class::Other,
            };
            env.bind(name, class, loop_depth);
        }
        (Pat::Tuple(t), Value::Pair(mut c)) if t.elems.len() == 2 => {
            let ctx_name = ident_pat(&t.elems[0]);
            let guard_name = ident_pat(&t.elems[1]);
            if let Some(g) = &guard_name {
                c.guards.push(g.clone());
                env.bind(
                    g.clone(),
                    Class::Guard {
                        ctx: ctx_name.clone(),
                    },
                    loop_depth,
                );
            }
            if let Some(n) = ctx_name {
                env.bind(n, Class::Ctx(c), loop_depth);
            }
        }
        (Pat::TupleStruct(ts), value)
            if ts.elems.len() == 1
                && ts
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Ok" || s.ident == "Some") =>
        {
            let inner = match value {
                Value::ScopeResult(c) => Value::Scope(c),
                v @ (Value::Ctx(_) | Value::Done) => v,
                _ => Value::Other,
            };
            bind_pat(env, &ts.elems[0], inner, loop_depth, names);
        }
        (p, _) => {
            let mut ids = Vec::new();
            pat_idents(p, &mut ids);
            for id in ids {
                env.bind(id, Class::Other, loop_depth);
            }
        }
    }
}

/// The identifier of a plain `x`/`mut x` pattern.
pub(crate) fn ident_pat(pat: &Pat) -> Option<String> {
    match peel_pat(pat) {
        Pat::Ident(i) if i.subpat.is_none() => Some(i.ident.to_string()),
        _ => None,
    }
}
