//! What names mean in one file: which type names are timefuse's `Context`, which paths spawn
//! tasks, which struct fields hold a context. Purely syntactic: `use` items are read, nothing is
//! resolved across files.

use std::collections::HashSet;

use syn::visit::{self, Visit};
use syn::{GenericArgument, Path, PathArguments, Type, UseTree};

/// Crates whose `Context` is not timefuse's (`std::task::Context` and friends).
const FOREIGN_CONTEXT_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "futures",
    "futures_core",
    "futures_util",
    "futures_task",
    "tokio",
    "anyhow",
    "tower",
    "opentelemetry",
    "tracing",
];

/// Per-file name facts.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Local names of timefuse's `Context` type.
    pub ctx_types: HashSet<String>,
    /// Local names of `BudgetScope`.
    pub scope_types: HashSet<String>,
    /// Local names of `CancelGuard`.
    pub guard_types: HashSet<String>,
    /// Bare function names imported from a spawning path (`use tokio::spawn;`).
    pub spawn_fns: HashSet<String>,
    /// Field names whose type is a context, in this file's structs.
    pub ctx_fields: HashSet<String>,
    /// Types that implement `Future`, `Stream`, `Body` or a similar per-call trait in this file.
    pub per_call_types: HashSet<String>,
    /// True when `Context` is reached through `crate::` (or `super::`): this file belongs to the
    /// crate that defines it.
    pub defines_context: bool,
    /// True when the file has `#![cfg(test)]`.
    pub test_only: bool,
}

impl Names {
    /// Collects the name facts of `file`.
    pub fn of(file: &syn::File) -> Names {
        let mut names = Names::default();
        names.ctx_types.insert("Context".into());
        names.scope_types.insert("BudgetScope".into());
        names.guard_types.insert("CancelGuard".into());
        names.test_only = file.attrs.iter().any(super::is_cfg_test);
        let mut c = Collector {
            names: &mut names,
            foreign_context: false,
            alias_context: false,
        };
        c.visit_file(file);
        if c.foreign_context && !c.alias_context {
            names.ctx_types.remove("Context");
        }
        // Fields are read after the imports are known.
        let mut f = FieldCollector { names: &mut names };
        f.visit_file(file);
        names
    }

    /// True if `ty` is (a reference to) timefuse's `Context`, or a `BudgetScope`.
    pub fn is_ctx_param_type(&self, ty: &Type) -> bool {
        match peel_type(ty) {
            Type::Path(p) if p.qself.is_none() => {
                self.path_is(&p.path, &self.ctx_types, "Context")
                    || self.path_is(&p.path, &self.scope_types, "BudgetScope")
            }
            _ => false,
        }
    }

    /// True if `ty` mentions timefuse's `Context` anywhere (`Context`, `Option<Context>`,
    /// `Arc<Mutex<Context>>`, ...).
    pub fn type_contains_ctx(&self, ty: &Type) -> bool {
        struct Find<'n> {
            names: &'n Names,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Find<'_> {
            fn visit_type_path(&mut self, p: &'ast syn::TypePath) {
                if p.qself.is_none()
                    && self
                        .names
                        .path_is(&p.path, &self.names.ctx_types, "Context")
                {
                    self.found = true;
                }
                visit::visit_type_path(self, p);
            }
        }
        let mut f = Find {
            names: self,
            found: false,
        };
        f.visit_type(ty);
        f.found
    }

    /// True if `ty` mentions a `CancelGuard` or `BudgetScope`.
    pub fn type_contains_guard(&self, ty: &Type) -> bool {
        struct Find<'n> {
            names: &'n Names,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Find<'_> {
            fn visit_type_path(&mut self, p: &'ast syn::TypePath) {
                if p.qself.is_none()
                    && (self
                        .names
                        .path_is(&p.path, &self.names.guard_types, "CancelGuard")
                        || self
                            .names
                            .path_is(&p.path, &self.names.scope_types, "BudgetScope"))
                {
                    self.found = true;
                }
                visit::visit_type_path(self, p);
            }
        }
        let mut f = Find {
            names: self,
            found: false,
        };
        f.visit_type(ty);
        f.found
    }

    /// True if `path` names the type `canonical` of timefuse, through a local name in `local`
    /// or a qualified `timefuse::`/`crate::` path.
    fn path_is(&self, path: &Path, local: &HashSet<String>, canonical: &str) -> bool {
        let Some(last) = path.segments.last() else {
            return false;
        };
        // `std::task::Context<'_>` has a lifetime; timefuse's has no generics.
        if !matches!(last.arguments, PathArguments::None) {
            return false;
        }
        let ident = last.ident.to_string();
        if path.segments.len() == 1 {
            return local.contains(&ident);
        }
        let first = path.segments[0].ident.to_string();
        if ident != canonical && !local.contains(&ident) {
            return false;
        }
        if FOREIGN_CONTEXT_ROOTS.contains(&first.as_str()) {
            return false;
        }
        !path.segments.iter().any(|s| s.ident == "task")
    }

    /// True if `path` (a function being called) starts a detached task or thread: `tokio::spawn`,
    /// `tokio::task::spawn_blocking`, `task::spawn_local`, `std::thread::spawn`, or a bare name
    /// imported from one of those.
    pub fn is_spawn_path(&self, path: &Path) -> bool {
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let Some(last) = segs.last() else {
            return false;
        };
        if !matches!(last.as_str(), "spawn" | "spawn_blocking" | "spawn_local") {
            return false;
        }
        match segs.len() {
            1 => self.spawn_fns.contains(last),
            _ => {
                let prev = segs[segs.len() - 2].as_str();
                matches!(
                    prev,
                    "tokio" | "task" | "thread" | "smol" | "async_std" | "rt"
                )
            }
        }
    }
}

/// `&T`, `&mut T`, `(T)` peeled down to `T`.
pub(crate) fn peel_type(ty: &Type) -> &Type {
    match ty {
        Type::Reference(r) => peel_type(&r.elem),
        Type::Paren(p) => peel_type(&p.elem),
        Type::Group(g) => peel_type(&g.elem),
        _ => ty,
    }
}

/// True if a return type describes deferred work: a future, stream, iterator, closure, task
/// handle or boxed/pinned one of those (including `Self::Future`).
pub(crate) fn is_deferred_type(ty: &Type) -> bool {
    struct Find(bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_path_segment(&mut self, s: &'ast syn::PathSegment) {
            let id = s.ident.to_string();
            if id.contains("Future")
                || id.contains("Stream")
                || matches!(
                    id.as_str(),
                    "Fn" | "FnMut" | "FnOnce" | "Iterator" | "JoinHandle" | "Sink"
                )
            {
                self.0 = true;
            }
            visit::visit_path_segment(self, s);
        }
        fn visit_generic_argument(&mut self, a: &'ast GenericArgument) {
            visit::visit_generic_argument(self, a);
        }
    }
    let mut f = Find(false);
    f.visit_type(ty);
    f.0
}

struct Collector<'n> {
    names: &'n mut Names,
    foreign_context: bool,
    alias_context: bool,
}

impl Collector<'_> {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &UseTree) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let name = n.ident.to_string();
                self.imported(prefix, &name, &name);
            }
            UseTree::Rename(r) => {
                self.imported(prefix, &r.ident.to_string(), &r.rename.to_string());
            }
            UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
            UseTree::Glob(_) => {}
        }
    }

    fn imported(&mut self, prefix: &[String], name: &str, local: &str) {
        let root = prefix.first().map(String::as_str).unwrap_or("");
        let foreign = FOREIGN_CONTEXT_ROOTS.contains(&root) || prefix.iter().any(|s| s == "task");
        match name {
            "Context" if foreign && local == "Context" => self.foreign_context = true,
            "Context" if foreign => {}
            "Context" => {
                if matches!(root, "crate" | "super" | "self") {
                    self.names.defines_context = true;
                }
                if local == "Context" {
                    self.alias_context = true;
                }
                self.names.ctx_types.insert(local.to_owned());
            }
            "BudgetScope" => {
                self.names.scope_types.insert(local.to_owned());
            }
            "CancelGuard" => {
                self.names.guard_types.insert(local.to_owned());
            }
            "spawn" | "spawn_blocking" | "spawn_local"
                if matches!(root, "tokio" | "std" | "async_std" | "smol") =>
            {
                self.names.spawn_fns.insert(local.to_owned());
            }
            _ => {}
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if let (Some((_, trait_path, _)), Type::Path(self_ty)) = (&i.trait_, &*i.self_ty)
            && let Some(last) = trait_path.segments.last()
            && matches!(
                last.ident.to_string().as_str(),
                "Future" | "Stream" | "Body"
            )
            && let Some(ty) = self_ty.path.segments.last()
        {
            self.names.per_call_types.insert(ty.ident.to_string());
        }
        visit::visit_item_impl(self, i);
    }

    fn visit_item_macro(&mut self, m: &'ast syn::ItemMacro) {
        if let Some(items) = super::macro_items(m) {
            for item in &items {
                self.visit_item(item);
            }
        }
    }
}

struct FieldCollector<'n> {
    names: &'n mut Names,
}

impl<'ast> Visit<'ast> for FieldCollector<'_> {
    fn visit_field(&mut self, f: &'ast syn::Field) {
        if let Some(ident) = &f.ident
            && self.names.is_ctx_param_type(&f.ty)
        {
            self.names.ctx_fields.insert(ident.to_string());
        }
        visit::visit_field(self, f);
    }

    fn visit_item_macro(&mut self, m: &'ast syn::ItemMacro) {
        if let Some(items) = super::macro_items(m) {
            for item in &items {
                self.visit_item(item);
            }
        }
    }
}
