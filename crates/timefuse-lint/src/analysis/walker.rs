//! The function walker: one pass over each function body, in statement order, with a lexical
//! environment of contexts, guards and `done()` futures, reporting every rule but `TF030`.

use std::collections::HashSet;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Block, Expr, FnArg, Pat, ReturnType, Signature, Stmt};

use super::RawFinding;
use super::env::{
    Class, CtxVar, Env, Kind, Value, bind_pat, classify, ident_of, ident_pat, peel, peel_pat,
};
use super::macros::{macro_name, parse_exprs, parse_select};
use super::names::{Names, is_deferred_type};
use super::scan::{self, ListenCtx, block_awaits, idents, is_drop_call, kept_names, long_op};
use crate::report::Options;
use crate::rules::Rule;

/// Methods whose use of a context starts work on it (TF021).
const WORK_METHODS: &[&str] = &[
    "spawn",
    "spawn_named",
    "run",
    "scope",
    "sync_scope",
    "stage",
    "stage_leaving",
    "downstream",
    "with_cancel",
    "with_timeout",
    "with_deadline",
    "with_request_budget",
    "with_request_deadline",
    "after",
];

/// Calls that compare or inspect a context rather than hand it work (TF002 ignores them).
const INFORMATIONAL_CALLS: &[&str] = &[
    "same_as",
    "eq",
    "ne",
    "cmp",
    "partial_cmp",
    "drop",
    "contains",
    "format",
    "debug",
];

/// Methods on a context that return a future or task bound to it (TF022 escapes).
const BOUND_FUTURE_METHODS: &[&str] = &["run", "scope", "spawn", "spawn_named"];

/// Per-function state.
#[derive(Debug, Default)]
struct Frame {
    fn_name: String,
    in_fn: bool,
    is_async_fn: bool,
    deferred_return: bool,
    body_pending: bool,
    async_depth: usize,
    closure_depth: usize,
    /// Inside a future raced with the context (`ctx.run(..)`, `ctx.spawn(..)`, a `select!` on
    /// `done()`).
    raced: usize,
    /// Inside the arguments of `block_on(..)`: the future does not outlive the function.
    no_escape: usize,
    loop_depth: usize,
    /// An enclosing loop was already reported by TF010.
    flagged_loop: bool,
    /// Names used as values somewhere in the function (guards that are kept alive).
    kept: HashSet<String>,
    /// Guards already reported by TF022.
    reported_guards: HashSet<String>,
    /// Locals later handed to `x.run(..)`, `x.spawn(..)` or a `select!` on the context: the
    /// futures bound to them are raced.
    raced_locals: HashSet<String>,
}

/// Walks one file's functions.
pub(crate) struct Walker<'a> {
    names: &'a Names,
    opts: &'a Options,
    lines: Vec<&'a str>,
    pub out: Vec<RawFinding>,
    env: Env,
    frame: Frame,
}

impl<'a> Walker<'a> {
    pub fn new(names: &'a Names, opts: &'a Options, source: &'a str) -> Walker<'a> {
        Walker {
            names,
            opts,
            lines: source.lines().collect(),
            out: Vec::new(),
            env: Env::new(),
            frame: Frame::default(),
        }
    }

    fn emit(&mut self, rule: Rule, span: Span, message: String, extra_anchor: Option<usize>) {
        if !self.opts.is_enabled(rule) {
            return;
        }
        self.out.push(RawFinding {
            rule,
            start: span.start(),
            end: span.end(),
            message,
            extra_anchor,
        });
    }

    /// The source text of `span`, shortened to one line and 60 characters.
    fn snippet(&self, span: Span) -> String {
        let (s, e) = (span.start(), span.end());
        let Some(line) = s.line.checked_sub(1).and_then(|l| self.lines.get(l)) else {
            return String::from("..");
        };
        let chars: Vec<char> = line.chars().collect();
        let from = s.column.min(chars.len());
        let to = if e.line == s.line {
            e.column.clamp(from, chars.len())
        } else {
            chars.len()
        };
        let mut text: String = chars[from..to].iter().collect();
        let mut cut = e.line != s.line;
        if text.chars().count() > 60 {
            text = text.chars().take(57).collect();
            cut = true;
        }
        let text = text.trim_end().to_owned();
        if cut { format!("{text} ..") } else { text }
    }

    fn skip_attrs(&self, attrs: &[syn::Attribute]) -> bool {
        !self.opts.include_tests
            && attrs
                .iter()
                .any(|a| super::is_cfg_test(a) || super::is_test_attr(a))
    }

    fn in_async(&self) -> bool {
        self.frame.is_async_fn || self.frame.async_depth > 0
    }

    fn sync_frame(&self) -> bool {
        self.frame.in_fn
            && !self.frame.is_async_fn
            && self.frame.async_depth == 0
            && self.frame.closure_depth == 0
            && self.frame.no_escape == 0
    }

    fn inherited(&self) -> Option<String> {
        self.env
            .nearest_ctx(|k| k == Kind::Inherited)
            .map(|(n, _)| n.to_owned())
    }

    fn ctx_names(&self) -> HashSet<String> {
        self.env.ctx_names()
    }

    fn listen_cx<'n>(&'n self, ctx_names: &'n HashSet<String>) -> ListenCtx<'n> {
        ListenCtx {
            ctx_names,
            ctx_fields: &self.names.ctx_fields,
        }
    }

    /// True if `expr` mentions a context in scope (a local, a context field, `Context::current()`).
    fn mentions_ctx(&self, expr: &Expr) -> bool {
        let names = self.ctx_names();
        if idents(expr).iter().any(|i| names.contains(i)) {
            return true;
        }
        struct Find<'c, 'n> {
            cx: &'c ListenCtx<'n>,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Find<'_, '_> {
            fn visit_expr(&mut self, e: &'ast Expr) {
                if self.cx.is_ctx(e) {
                    self.found = true;
                } else {
                    visit::visit_expr(self, e);
                }
            }
        }
        let cx = self.listen_cx(&names);
        let mut f = Find {
            cx: &cx,
            found: false,
        };
        f.visit_expr(expr);
        f.found
    }

    /// True if `expr` reads a context's deadline or remaining time (`ctx.remaining()`).
    fn reads_deadline(&self, expr: &Expr) -> bool {
        struct Find<'c, 'n> {
            cx: &'c ListenCtx<'n>,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Find<'_, '_> {
            fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
                if matches!(m.method.to_string().as_str(), "remaining" | "deadline")
                    && self.cx.is_ctx(&m.receiver)
                {
                    self.found = true;
                }
                visit::visit_expr_method_call(self, m);
            }
        }
        let names = self.env.ctx_and_deadline_names();
        let cx = self.listen_cx(&names);
        let mut f = Find {
            cx: &cx,
            found: false,
        };
        f.visit_expr(expr);
        f.found
    }

    // ----- functions -----

    fn enter_fn(&mut self, attrs: &[syn::Attribute], sig: &Signature, body: &Block) {
        if self.skip_attrs(attrs) {
            return;
        }
        let saved_env = std::mem::replace(&mut self.env, Env::new());
        let frame = Frame {
            fn_name: sig.ident.to_string(),
            in_fn: true,
            is_async_fn: sig.asyncness.is_some(),
            deferred_return: matches!(&sig.output, ReturnType::Type(_, ty) if is_deferred_type(ty)),
            body_pending: true,
            kept: kept_names(body),
            ..Frame::default()
        };
        let saved_frame = std::mem::replace(&mut self.frame, frame);
        for input in &sig.inputs {
            if let FnArg::Typed(pt) = input {
                let value = if self.names.is_ctx_param_type(&pt.ty) {
                    Value::Ctx(CtxVar {
                        kind: Kind::Inherited,
                        guards: Vec::new(),
                        parent: None,
                    })
                } else {
                    Value::Other
                };
                bind_pat(&mut self.env, &pt.pat, value, 0, self.names);
            }
        }
        self.visit_block(body);
        self.env = saved_env;
        self.frame = saved_frame;
    }

    // ----- TF022 -----

    /// `expr` is a future, closure or task that may outlive the function: report each local
    /// guard whose context it captures while the guard itself is neither captured nor kept.
    fn check_escape(&mut self, expr: &Expr, receiver: Option<&Expr>, what: &str) {
        if !self.opts.is_enabled(Rule::GuardOutlived) || self.frame.no_escape > 0 {
            return;
        }
        let mentioned = idents(expr);
        let recv = receiver.and_then(ident_of);
        let mut captured: Vec<String> = mentioned.iter().cloned().collect();
        captured.sort();
        if let Some(r) = &recv {
            captured.push(r.clone());
        }
        // Without the receiver: `s.run(..)` does not move the scope `s` into the future.
        let moved: HashSet<&String> = if receiver.is_some() {
            let args_only = match peel(expr) {
                Expr::MethodCall(m) => m.args.iter().flat_map(idents).collect::<HashSet<_>>(),
                _ => mentioned.clone(),
            };
            mentioned
                .iter()
                .filter(|m| args_only.contains(*m))
                .collect()
        } else {
            mentioned.iter().collect()
        };
        for name in &captured {
            let Some(c) = self.env.ctx(name) else {
                continue;
            };
            for g in c.guards.clone() {
                if moved.contains(&g)
                    || self.frame.kept.contains(&g)
                    || self.frame.reported_guards.contains(&g)
                    || self.env.get(&g).is_none()
                {
                    continue;
                }
                self.frame.reported_guards.insert(g.clone());
                let by = if &g == name {
                    format!("the scope `{g}`")
                } else {
                    format!("its guard `{g}`")
                };
                let msg = format!(
                    "{what} `{}` uses `{name}` but does not own {by}, which is dropped when `{}` returns: the context is cancelled before the work runs",
                    self.snippet(expr.span()),
                    self.frame.fn_name
                );
                self.emit(Rule::GuardOutlived, expr.span(), msg, None);
            }
        }
    }

    /// True if `expr` spawns a task: a spawn path, `ctx.spawn(..)`, `Handle::current().spawn(..)`.
    fn is_spawn_expr(&self, expr: &Expr) -> bool {
        match peel(expr) {
            Expr::Call(c) => matches!(&*c.func, Expr::Path(p) if self.names.is_spawn_path(&p.path)),
            Expr::MethodCall(m) => {
                matches!(m.method.to_string().as_str(), "spawn" | "spawn_named")
                    && ident_of(&m.receiver).is_some_and(|r| self.env.ctx(&r).is_some())
            }
            _ => false,
        }
    }

    /// `ctx.spawn(..)` style call whose handle is discarded in async code (TF022).
    fn check_discarded_spawn(&mut self, expr: &Expr) {
        if self.in_async() && self.is_spawn_expr(expr) {
            let receiver = match peel(expr) {
                Expr::MethodCall(m) => Some(&*m.receiver),
                _ => None,
            };
            self.check_escape(expr, receiver, "the detached task");
        }
    }

    // ----- TF020 -----

    fn guard_value(&self, expr: &Expr) -> Option<&'static str> {
        match classify(expr, &self.env, self.names) {
            Value::Pair(_) => Some("guard"),
            Value::Scope(_) | Value::ScopeResult(_) => Some("scope"),
            _ => None,
        }
    }

    fn check_let_drop(&mut self, local: &syn::Local) {
        let Some(init) = &local.init else {
            return;
        };
        let expr = &*init.expr;
        let what = self.guard_value(expr);
        let pat = peel_pat(&local.pat);
        let wild = |p: &Pat| matches!(peel_pat(p), Pat::Wild(_));
        let snippet = self.snippet(expr.span());
        match (pat, what) {
            (Pat::Wild(_), Some(what)) => {
                let msg = format!(
                    "`let _ = {snippet}` drops the {what} at once: its context is cancelled before it is used"
                );
                self.emit(Rule::GuardDroppedAtOnce, local.span(), msg, None);
            }
            (Pat::Tuple(t), Some("guard")) if t.elems.len() == 2 && wild(&t.elems[1]) => {
                let msg = format!(
                    "the guard of `{snippet}` is bound to `_` and dropped at once: the child context is cancelled before it is used"
                );
                self.emit(Rule::GuardDroppedAtOnce, t.elems[1].span(), msg, None);
            }
            _ => self.check_tuple_temp(expr),
        }
    }

    /// `let c = ctx.with_timeout(d).0;`, `c = ..0;`: the tuple temporary, guard included, is
    /// dropped at the end of the statement.
    fn check_tuple_temp(&mut self, expr: &Expr) {
        if let Expr::Field(f) = peel(expr)
            && matches!(f.member, syn::Member::Unnamed(ref i) if i.index == 0)
            && ident_of(&f.base).is_none()
            && matches!(classify(&f.base, &self.env, self.names), Value::Pair(_))
        {
            let msg = format!(
                "`{}` keeps the context but drops its guard with the temporary tuple: the context is cancelled at the end of this statement",
                self.snippet(expr.span())
            );
            self.emit(Rule::GuardDroppedAtOnce, expr.span(), msg, None);
        }
    }

    fn check_discarded(&mut self, expr: &Expr) {
        if let Some(what) = self.guard_value(expr) {
            let msg = format!(
                "the result of `{}` is discarded: the {what} is dropped at once and its context cancelled",
                self.snippet(expr.span())
            );
            self.emit(Rule::GuardDroppedAtOnce, expr.span(), msg, None);
        }
    }

    // ----- TF021 -----

    /// If `stmt` releases a guard or scope (`drop(g)`, `g.cancel()`, `s.finish()`), its name.
    fn released(&self, stmt: &Stmt) -> Option<(String, Span)> {
        let expr = match stmt {
            Stmt::Expr(e, _) => e,
            Stmt::Local(l) if matches!(peel_pat(&l.pat), Pat::Wild(_)) => &*l.init.as_ref()?.expr,
            _ => return None,
        };
        let name = match peel(expr) {
            Expr::Call(c) if is_drop_call(c) => ident_of(&c.args[0])?,
            Expr::MethodCall(m)
                if matches!(
                    m.method.to_string().as_str(),
                    "cancel" | "cancel_with" | "finish"
                ) =>
            {
                ident_of(&m.receiver)?
            }
            _ => return None,
        };
        let is_guard = match self.env.get(&name).map(|b| &b.class) {
            Some(Class::Guard { .. }) => true,
            Some(Class::Ctx(c)) => c.guards.contains(&name),
            _ => false,
        };
        is_guard.then(|| (name, expr.span()))
    }

    fn check_released(&mut self, guard: &str, span: Span, rest: &[Stmt]) {
        if !self.opts.is_enabled(Rule::GuardDroppedBeforeUse) {
            return;
        }
        let mut watched: HashSet<String> = self
            .env
            .visible()
            .into_iter()
            .filter(|b| matches!(&b.class, Class::Ctx(c) if c.guards.iter().any(|g| g == guard)))
            .map(|b| b.name.clone())
            .collect();
        if watched.is_empty() {
            return;
        }
        for stmt in rest {
            if let Some((used, at)) = work_use(stmt, &watched, &self.names.ctx_fields) {
                let msg = format!(
                    "`{guard}` is released here, but `{used}` is used after it (line {}): that work starts on a cancelled context",
                    at.start().line
                );
                self.emit(Rule::GuardDroppedBeforeUse, span, msg, None);
                return;
            }
            if let Stmt::Local(l) = stmt {
                let mut bound = Vec::new();
                super::env::pat_idents(&l.pat, &mut bound);
                let carries = l.init.as_ref().is_some_and(|i| {
                    ListenCtx {
                        ctx_names: &watched,
                        ctx_fields: &HashSet::new(),
                    }
                    .carries(&i.expr)
                });
                for b in bound {
                    if carries {
                        watched.insert(b);
                    } else {
                        watched.remove(&b);
                    }
                }
                if watched.is_empty() {
                    return;
                }
            }
        }
    }

    // ----- TF010 -----

    fn check_loop(&mut self, span: Span, kind: &str, body: &Block, cond: Option<&Expr>) -> bool {
        if !self.opts.is_enabled(Rule::LoopNotListening)
            || !self.in_async()
            || self.frame.raced > 0
            || self.frame.flagged_loop
        {
            return false;
        }
        let Some(ctx) = self.inherited() else {
            return false;
        };
        if !(block_awaits(body) || cond.is_some_and(scan::awaits)) {
            return false;
        }
        let mut names = self.ctx_names();
        extend_with_derived(body, &mut names, &self.names.ctx_fields);
        let cx = self.listen_cx(&names);
        if cx.block_listens(body) || cond.is_some_and(|c| cx.listens(c)) {
            return false;
        }
        let msg = format!(
            "this `{kind}` awaits but never checks the context `{ctx}`: it keeps going after the request has ended"
        );
        self.emit(Rule::LoopNotListening, span, msg, None);
        true
    }

    fn visit_loop_body(&mut self, body: &Block, flagged: bool) {
        let saved = self.frame.flagged_loop;
        self.frame.flagged_loop |= flagged;
        self.frame.loop_depth += 1;
        self.visit_block(body);
        self.frame.loop_depth -= 1;
        self.frame.flagged_loop = saved;
    }

    // ----- TF031 -----

    fn check_reassign(&mut self, left: &Expr, right: &Expr, span: Span) {
        if self.frame.loop_depth == 0 || !self.opts.is_enabled(Rule::ContextDerivedInLoop) {
            return;
        }
        let target = match peel(left) {
            Expr::Tuple(t) if !t.elems.is_empty() => ident_of(&t.elems[0]),
            e => ident_of(e),
        };
        let Some(target) = target else {
            return;
        };
        let Some(b) = self.env.get(&target) else {
            return;
        };
        if !matches!(b.class, Class::Ctx(_)) || b.loop_depth >= self.frame.loop_depth {
            return;
        }
        let parent = match classify(right, &self.env, self.names) {
            Value::Ctx(c) | Value::Pair(c) | Value::Scope(c) => c.parent,
            _ => None,
        };
        let Some(parent) = parent else {
            return;
        };
        // `ctx = ctx.clone()` is an alias, not a child.
        let alias = parent == target
            && matches!(peel(right), Expr::MethodCall(m)
                if matches!(m.method.to_string().as_str(), "clone" | "to_owned" | "context"));
        let grows = !alias && self.env.derived_from(&parent, &target);
        if grows {
            let msg = format!(
                "`{target}` is reassigned from a child of itself in a loop: each iteration nests one level deeper (and a guard dropped per iteration cancels it)"
            );
            self.emit(Rule::ContextDerivedInLoop, span, msg, None);
        }
    }

    // ----- macros -----

    fn visit_select(&mut self, mac: &syn::Macro) -> bool {
        let Some(branches) = parse_select(mac.tokens.clone()) else {
            return false;
        };
        let names = self.ctx_names();
        let cx = self.listen_cx(&names);
        let listening = branches.iter().any(|b| {
            b.fut
                .as_ref()
                .is_some_and(|f| cx.is_ctx(f) || cx.listens(f) || cx.carries(f))
        });
        let long = branches.iter().find_map(|b| {
            b.fut
                .as_ref()
                .and_then(|f| long_op(f, &cx).map(|op| (op, f.span())))
        });
        if !listening
            && self.in_async()
            && self.frame.raced == 0
            && !self.frame.flagged_loop
            && let Some(ctx) = self.inherited()
            && let Some((op, at)) = long
        {
            let msg = format!(
                "`select!` waits on `{}` ({op}) but has no branch for the context `{ctx}`",
                self.snippet(at)
            );
            self.emit(Rule::AwaitNotRaced, mac.path.span(), msg, None);
        }
        for b in &branches {
            if let Some(f) = &b.fut {
                self.frame.raced += usize::from(listening);
                self.visit_expr(f);
                self.frame.raced -= usize::from(listening);
            }
            self.env.push();
            if let Some(p) = &b.pat {
                bind_pat(
                    &mut self.env,
                    p,
                    Value::Other,
                    self.frame.loop_depth,
                    self.names,
                );
            }
            if let Some(c) = &b.cond {
                self.visit_expr(c);
            }
            self.visit_expr(&b.handler);
            self.env.pop();
        }
        true
    }

    fn check_fresh_args<'e>(&mut self, callee: &str, args: impl Iterator<Item = &'e Expr>) {
        if !self.opts.is_enabled(Rule::FreshContext) || INFORMATIONAL_CALLS.contains(&callee) {
            return;
        }
        let Some(ctx) = self.inherited() else {
            return;
        };
        for arg in args {
            if let Value::Ctx(c) = classify(arg, &self.env, self.names)
                && c.kind != Kind::Inherited
            {
                let msg = format!(
                    "`{}` passes a fresh context to `{callee}` while `{ctx}` is in scope: the callee loses its deadline, cancel signal and values",
                    self.snippet(arg.span())
                );
                self.emit(Rule::FreshContext, arg.span(), msg, None);
            }
        }
    }
}

/// Adds to `names` the locals of `block` bound from an expression that carries a context.
fn extend_with_derived(block: &Block, names: &mut HashSet<String>, fields: &HashSet<String>) {
    struct Locals<'n> {
        names: &'n mut HashSet<String>,
        fields: &'n HashSet<String>,
    }
    impl<'ast> Visit<'ast> for Locals<'_> {
        fn visit_local(&mut self, l: &'ast syn::Local) {
            if let Some(init) = &l.init {
                let carries = ListenCtx {
                    ctx_names: self.names,
                    ctx_fields: self.fields,
                }
                .carries(&init.expr);
                if carries {
                    let mut ids = Vec::new();
                    super::env::pat_idents(&l.pat, &mut ids);
                    self.names.extend(ids);
                }
            }
            visit::visit_local(self, l);
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    for _ in 0..2 {
        Locals { names, fields }.visit_block(block);
    }
}

/// Locals of `block` handed to a racing call (`x.run(local)`, `x.spawn(local)`,
/// `run_until_cancelled(local)`) or named in a `select!` that listens to the context.
fn raced_locals(block: &Block, cx: &ListenCtx<'_>) -> HashSet<String> {
    struct Find<'c, 'n> {
        cx: &'c ListenCtx<'n>,
        found: HashSet<String>,
    }
    impl<'ast> Visit<'ast> for Find<'_, '_> {
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            if matches!(
                m.method.to_string().as_str(),
                "run" | "spawn" | "spawn_named" | "spawn_bound" | "run_until_cancelled"
            ) {
                self.found.extend(m.args.iter().filter_map(ident_of));
            }
            visit::visit_expr_method_call(self, m);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            let name = macro_name(m);
            if (name == "select" || name == "select_biased") && self.cx.macro_listens(m) {
                for t in super::macros::flatten(&m.tokens) {
                    if t.is_ident && !t.after_dot {
                        self.found.insert(t.text);
                    }
                }
            }
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut f = Find {
        cx,
        found: HashSet::new(),
    };
    for stmt in &block.stmts {
        f.visit_stmt(stmt);
    }
    f.found
}

/// The first use in `stmt` of a watched context that starts work on it: a work method on it
/// (`spawn`, `run`, `stage`, `with_timeout`, ...), or the context handed to a call that is
/// awaited or spawns. Handing it to a plain call (`Timeline::capture(&ctx)`) inspects it.
fn work_use(
    stmt: &Stmt,
    watched: &HashSet<String>,
    fields: &HashSet<String>,
) -> Option<(String, Span)> {
    struct Find<'w> {
        cx: ListenCtx<'w>,
        found: Option<(String, Span)>,
    }
    impl Find<'_> {
        fn carried<'e>(&self, args: impl IntoIterator<Item = &'e Expr>) -> Option<&'e Expr> {
            args.into_iter().find(|a| self.cx.carries(a))
        }
        fn hit(&mut self, e: &Expr) {
            self.found = Some((first_ident(e, self.cx.ctx_names), e.span()));
        }
    }
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_expr(&mut self, e: &'ast Expr) {
            if self.found.is_none() {
                visit::visit_expr(self, e);
            }
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            if let Some(r) = ident_of(&m.receiver)
                && self.cx.ctx_names.contains(&r)
                && WORK_METHODS.contains(&m.method.to_string().as_str())
            {
                self.found = Some((r, m.span()));
                return;
            }
            if m.method.to_string().starts_with("spawn")
                && let Some(a) = self.carried(&m.args)
            {
                self.hit(a);
                return;
            }
            visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            let spawns = matches!(&*c.func, Expr::Path(p)
                if p.path.segments.last().is_some_and(|s| s.ident.to_string().starts_with("spawn")));
            if spawns && let Some(a) = self.carried(&c.args) {
                self.hit(a);
                return;
            }
            visit::visit_expr_call(self, c);
        }
        fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
            let carried = match peel(&e.base) {
                Expr::Call(c) if !is_drop_call(c) => self.carried(&c.args),
                Expr::MethodCall(m) => self.carried(&m.args),
                _ => None,
            };
            if let Some(a) = carried {
                self.hit(a);
                return;
            }
            visit::visit_expr_await(self, e);
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    fn first_ident(e: &Expr, names: &HashSet<String>) -> String {
        let mut ids: Vec<String> = idents(e)
            .into_iter()
            .filter(|i| names.contains(i))
            .collect();
        ids.sort();
        ids.into_iter()
            .next()
            .unwrap_or_else(|| "the context".into())
    }
    let mut f = Find {
        cx: ListenCtx {
            ctx_names: watched,
            ctx_fields: fields,
        },
        found: None,
    };
    f.visit_stmt(stmt);
    f.found
}

impl<'ast> Visit<'ast> for Walker<'_> {
    // ----- items -----

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.enter_fn(&f.attrs, &f.sig, &f.block);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.enter_fn(&f.attrs, &f.sig, &f.block);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(body) = &f.default {
            self.enter_fn(&f.attrs, &f.sig, body);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !self.skip_attrs(&i.attrs) {
            visit::visit_item_impl(self, i);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !self.skip_attrs(&m.attrs) {
            visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        if !self.skip_attrs(&t.attrs) {
            visit::visit_item_trait(self, t);
        }
    }

    fn visit_item_struct(&mut self, s: &'ast syn::ItemStruct) {
        if self.skip_attrs(&s.attrs) || !self.opts.is_enabled(Rule::ContextInStruct) {
            return;
        }
        if let Some(f) = super::items::contained_ctx(s, self.names, self.opts) {
            self.out.push(f);
        }
    }

    fn visit_item_macro(&mut self, m: &'ast syn::ItemMacro) {
        if let Some(items) = super::macro_items(m) {
            for item in &items {
                self.visit_item(item);
            }
        }
    }

    fn visit_item_const(&mut self, c: &'ast syn::ItemConst) {
        if !self.frame.in_fn {
            visit::visit_item_const(self, c);
        }
    }

    fn visit_item_static(&mut self, s: &'ast syn::ItemStatic) {
        if !self.frame.in_fn {
            visit::visit_item_static(self, s);
        }
    }

    // ----- blocks and statements -----

    fn visit_block(&mut self, b: &'ast Block) {
        let is_body = std::mem::take(&mut self.frame.body_pending);
        let names = self.ctx_names();
        let raced_here = raced_locals(b, &self.listen_cx(&names));
        let added: Vec<String> = raced_here
            .into_iter()
            .filter(|n| self.frame.raced_locals.insert(n.clone()))
            .collect();
        self.env.push();
        for (i, stmt) in b.stmts.iter().enumerate() {
            if let Some((guard, span)) = self.released(stmt) {
                self.check_released(&guard, span, &b.stmts[i + 1..]);
            }
            let is_tail = i + 1 == b.stmts.len() && matches!(stmt, Stmt::Expr(_, None));
            if is_tail
                && is_body
                && self.sync_frame()
                && self.frame.deferred_return
                && let Stmt::Expr(e, None) = stmt
            {
                self.check_escape(e, None, "the returned value");
            }
            if is_tail
                && is_body
                && self.frame.is_async_fn
                && let Stmt::Expr(e, None) = stmt
            {
                self.check_discarded_spawn(e);
            }
            self.visit_stmt(stmt);
        }
        self.env.pop();
        for n in added {
            self.frame.raced_locals.remove(&n);
        }
    }

    fn visit_stmt(&mut self, s: &'ast Stmt) {
        match s {
            Stmt::Expr(e, Some(_)) => {
                self.check_discarded(e);
                self.check_discarded_spawn(e);
                self.visit_expr(e);
            }
            Stmt::Macro(m) => self.visit_macro(&m.mac),
            _ => visit::visit_stmt(self, s),
        }
    }

    fn visit_local(&mut self, l: &'ast syn::Local) {
        self.check_let_drop(l);
        if let Some(init) = &l.init {
            if matches!(peel_pat(&l.pat), Pat::Wild(_)) {
                self.check_discarded_spawn(&init.expr);
            }
            let raced = ident_pat(&l.pat).is_some_and(|n| self.frame.raced_locals.contains(&n))
                && matches!(peel(&init.expr), Expr::Async(_) | Expr::Closure(_));
            self.frame.raced += usize::from(raced);
            self.visit_expr(&init.expr);
            self.frame.raced -= usize::from(raced);
            if let Some((_, diverge)) = &init.diverge {
                self.visit_expr(diverge);
            }
        }
        let value = l
            .init
            .as_ref()
            .map_or(Value::Other, |i| classify(&i.expr, &self.env, self.names));
        let deadline = value == Value::Other
            && l.init
                .as_ref()
                .is_some_and(|i| self.reads_deadline(&i.expr));
        bind_pat(
            &mut self.env,
            &l.pat,
            value,
            self.frame.loop_depth,
            self.names,
        );
        if deadline && let Some(name) = ident_pat(&l.pat) {
            self.env.bind(name, Class::Deadline, self.frame.loop_depth);
        }
    }

    // ----- control flow -----

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.env.push();
        self.visit_expr(&e.cond);
        self.visit_block(&e.then_branch);
        self.env.pop();
        if let Some((_, els)) = &e.else_branch {
            self.visit_expr(els);
        }
    }

    fn visit_expr_let(&mut self, e: &'ast syn::ExprLet) {
        self.visit_expr(&e.expr);
        let value = classify(&e.expr, &self.env, self.names);
        bind_pat(
            &mut self.env,
            &e.pat,
            value,
            self.frame.loop_depth,
            self.names,
        );
    }

    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.visit_expr(&e.expr);
        let value = classify(&e.expr, &self.env, self.names);
        for arm in &e.arms {
            self.env.push();
            bind_pat(
                &mut self.env,
                &arm.pat,
                value.clone(),
                self.frame.loop_depth,
                self.names,
            );
            if let Some((_, g)) = &arm.guard {
                self.visit_expr(g);
            }
            self.visit_expr(&arm.body);
            self.env.pop();
        }
    }

    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        let flagged = self.check_loop(e.loop_token.span, "loop", &e.body, None);
        self.visit_loop_body(&e.body, flagged);
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        let flagged = self.check_loop(e.while_token.span, "while loop", &e.body, Some(&e.cond));
        self.env.push();
        let saved = self.frame.flagged_loop;
        self.frame.flagged_loop |= flagged;
        self.frame.loop_depth += 1;
        self.visit_expr(&e.cond);
        self.frame.loop_depth -= 1;
        self.frame.flagged_loop = saved;
        self.visit_loop_body(&e.body, flagged);
        self.env.pop();
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        let flagged = self.check_loop(e.for_token.span, "for loop", &e.body, Some(&e.expr));
        let saved = self.frame.flagged_loop;
        self.frame.flagged_loop |= flagged;
        self.visit_expr(&e.expr);
        self.frame.flagged_loop = saved;
        self.env.push();
        bind_pat(
            &mut self.env,
            &e.pat,
            Value::Other,
            self.frame.loop_depth + 1,
            self.names,
        );
        self.visit_loop_body(&e.body, flagged);
        self.env.pop();
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        if self.sync_frame()
            && (c.asyncness.is_some() || (c.capture.is_some() && self.frame.deferred_return))
        {
            self.check_escape(&Expr::Closure(c.clone()), None, "the closure");
        }
        self.env.push();
        for input in &c.inputs {
            let value = match input {
                Pat::Type(t) if self.names.is_ctx_param_type(&t.ty) => Value::Ctx(CtxVar {
                    kind: Kind::Inherited,
                    guards: Vec::new(),
                    parent: None,
                }),
                _ => Value::Other,
            };
            bind_pat(
                &mut self.env,
                input,
                value,
                self.frame.loop_depth,
                self.names,
            );
        }
        let is_async = c.asyncness.is_some();
        let saved_flagged = std::mem::take(&mut self.frame.flagged_loop);
        self.frame.closure_depth += 1;
        self.frame.async_depth += usize::from(is_async);
        self.visit_expr(&c.body);
        self.frame.async_depth -= usize::from(is_async);
        self.frame.closure_depth -= 1;
        self.frame.flagged_loop = saved_flagged;
        self.env.pop();
    }

    fn visit_expr_async(&mut self, a: &'ast syn::ExprAsync) {
        if self.sync_frame() {
            self.check_escape(&Expr::Async(a.clone()), None, "the future");
        }
        let saved_flagged = std::mem::take(&mut self.frame.flagged_loop);
        self.frame.async_depth += 1;
        self.visit_block(&a.block);
        self.frame.async_depth -= 1;
        self.frame.flagged_loop = saved_flagged;
    }

    fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
        if let Some(e) = &r.expr {
            if self.sync_frame() && self.frame.deferred_return {
                self.check_escape(e, None, "the returned value");
            }
            self.visit_expr(e);
        }
    }

    fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
        if matches!(peel(&a.left), Expr::Infer(_)) {
            self.check_discarded(&a.right);
        } else {
            self.check_tuple_temp(&a.right);
        }
        self.check_reassign(&a.left, &a.right, a.span());
        visit::visit_expr_assign(self, a);
    }

    // ----- calls -----

    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        let callee = match &*c.func {
            Expr::Path(p) => Some(p),
            _ => None,
        };
        let callee_name = callee
            .and_then(|p| p.path.segments.last())
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if let Some(p) = callee
            && self.names.is_spawn_path(&p.path)
        {
            let path = self.snippet(p.span());
            // A task that does not take the context is reported once, here; the listening
            // rules do not apply inside it.
            let detached = !c.args.iter().any(|a| self.mentions_ctx(a));
            if self.opts.is_enabled(Rule::SpawnWithoutContext)
                && detached
                && let Some((ctx, _)) = self
                    .env
                    .nearest_ctx(|k| k != Kind::Fresh)
                    .map(|(n, c)| (n.to_owned(), c.clone()))
            {
                let msg = format!(
                    "`{path}` starts a task without the context `{ctx}` that is in scope: it keeps running after the request ends"
                );
                self.emit(Rule::SpawnWithoutContext, p.span(), msg, None);
            }
            if self.sync_frame() {
                self.check_escape(&Expr::Call(c.clone()), None, "the spawned task");
            }
            // A spawned task is not raced with anything it was spawned from.
            let saved = std::mem::replace(&mut self.frame.raced, usize::from(detached));
            let saved_loop = std::mem::take(&mut self.frame.flagged_loop);
            for a in &c.args {
                self.visit_expr(a);
            }
            self.frame.raced = saved;
            self.frame.flagged_loop = saved_loop;
            return;
        }
        let skip_fresh =
            callee_name == "drop" || callee_name.chars().next().is_some_and(char::is_uppercase);
        if !skip_fresh {
            self.check_fresh_args(&callee_name, c.args.iter());
        }
        // `timeout(ctx.remaining()?, fut)`: the future is bounded by the context's deadline.
        let deadline_bound = matches!(callee_name.as_str(), "timeout" | "timeout_at")
            && c.args.first().is_some_and(|a| {
                let names = self.env.ctx_and_deadline_names();
                self.mentions_ctx(a) || idents(a).iter().any(|i| names.contains(i))
            });
        let block_on = callee_name == "block_on";
        self.visit_expr(&c.func);
        self.frame.raced += usize::from(deadline_bound);
        self.frame.no_escape += usize::from(block_on);
        for a in &c.args {
            self.visit_expr(a);
        }
        self.frame.raced -= usize::from(deadline_bound);
        self.frame.no_escape -= usize::from(block_on);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        let name = m.method.to_string();
        let names = self.ctx_names();
        let recv_is_ctx = self.listen_cx(&names).is_ctx(&m.receiver);
        drop(names);
        self.check_fresh_args(&name, m.args.iter());
        if matches!(name.as_str(), "spawn" | "spawn_named" | "run" | "scope")
            && self.opts.is_enabled(Rule::FreshContext)
            && let Some(ctx) = self.inherited()
            && let Value::Ctx(c) = classify(&m.receiver, &self.env, self.names)
            && c.kind != Kind::Inherited
        {
            let msg = format!(
                "`{}.{name}(..)` runs on a fresh context while `{ctx}` is in scope: the work loses its deadline and cancel signal",
                self.snippet(m.receiver.span())
            );
            self.emit(Rule::FreshContext, m.receiver.span(), msg, None);
        }
        // `Handle::current().spawn(..)`: a detached spawn like `tokio::spawn`.
        if name == "spawn"
            && is_runtime_handle(&m.receiver)
            && self.opts.is_enabled(Rule::SpawnWithoutContext)
            && let Some((ctx, _)) = self
                .env
                .nearest_ctx(|k| k != Kind::Fresh)
                .map(|(n, c)| (n.to_owned(), c.clone()))
            && !m.args.iter().any(|a| self.mentions_ctx(a))
        {
            let msg = format!(
                "`{}` starts a task without the context `{ctx}` that is in scope: it keeps running after the request ends",
                self.snippet(m.span())
            );
            self.emit(Rule::SpawnWithoutContext, m.method.span(), msg, None);
        }
        if recv_is_ctx && BOUND_FUTURE_METHODS.contains(&name.as_str()) && self.sync_frame() {
            let what = if name.starts_with("spawn") {
                "the spawned task"
            } else {
                "the future"
            };
            self.check_escape(&Expr::MethodCall(m.clone()), Some(&m.receiver), what);
        }
        let raced = (recv_is_ctx && matches!(name.as_str(), "run" | "spawn" | "spawn_named"))
            || matches!(name.as_str(), "run_until_cancelled" | "spawn_bound");
        let spawned = name.starts_with("spawn");
        let block_on = name == "block_on";
        self.visit_expr(&m.receiver);
        let saved_raced = if spawned {
            std::mem::take(&mut self.frame.raced)
        } else {
            self.frame.raced
        };
        let saved_loop = if spawned {
            std::mem::take(&mut self.frame.flagged_loop)
        } else {
            self.frame.flagged_loop
        };
        self.frame.raced += usize::from(raced);
        self.frame.no_escape += usize::from(block_on);
        for a in &m.args {
            self.visit_expr(a);
        }
        self.frame.no_escape -= usize::from(block_on);
        self.frame.raced = saved_raced;
        self.frame.flagged_loop = saved_loop;
    }

    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        if self.opts.is_enabled(Rule::AwaitNotRaced)
            && self.in_async()
            && self.frame.raced == 0
            && !self.frame.flagged_loop
            && let Some(ctx) = self.inherited()
        {
            let names = self.env.ctx_and_deadline_names();
            let cx = self.listen_cx(&names);
            if let Some(op) = long_op(&e.base, &cx) {
                let msg = format!(
                    "`{}` can wait without bound ({op}) and is not raced with the context `{ctx}`",
                    self.snippet(e.span())
                );
                self.emit(Rule::AwaitNotRaced, e.span(), msg, None);
            }
        }
        visit::visit_expr_await(self, e);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = macro_name(m);
        if (name == "select" || name == "select_biased") && self.visit_select(m) {
            return;
        }
        if let Some(exprs) = parse_exprs(m) {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
    }
}

/// `Handle::current()`, `tokio::runtime::Handle::current()`, `Handle::try_current()?`.
fn is_runtime_handle(expr: &Expr) -> bool {
    let e = match peel(expr) {
        Expr::Try(t) => &*t.expr,
        Expr::MethodCall(m) if m.method == "unwrap" || m.method == "expect" => &*m.receiver,
        e => e,
    };
    matches!(
        super::env::call_path(e),
        Some((Some(p), l)) if p == "Handle" && (l == "current" || l == "try_current")
    )
}
