//! Unit tests of each rule on small snippets.

use crate::report::Options;
use crate::rules::Rule;

/// `(line, code)` of every finding in `body`, placed after a fixed prelude of 3 lines.
fn lint(body: &str) -> Vec<(usize, &'static str)> {
    lint_with(body, &Options::default())
}

fn lint_with(body: &str, opts: &Options) -> Vec<(usize, &'static str)> {
    let source =
        format!("use std::time::Duration;\nuse timefuse::{{BudgetScope, Context}};\n\n{body}");
    let report = crate::lint_source("t.rs", &source, opts);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
        .findings
        .iter()
        .map(|f| (f.start.line - 3, f.rule.code()))
        .collect()
}

#[test]
fn tf001_spawn_without_context() {
    let hit = lint("async fn f(ctx: &Context) {\n    tokio::spawn(work());\n}\n");
    assert_eq!(hit, [(2, "TF001")]);
    let ok = lint(
        "async fn f(ctx: &Context) {\n    tokio::spawn(work(ctx.clone()));\n    ctx.spawn(work());\n}\n",
    );
    assert_eq!(ok, []);
    // No context in scope, or only a fresh one.
    assert_eq!(lint("async fn f() {\n    tokio::spawn(work());\n}\n"), []);
    assert_eq!(
        lint("async fn f() {\n    let bg = Context::background();\n    tokio::spawn(work());\n}\n"),
        []
    );
    // `spawn` imported from tokio, called bare.
    assert_eq!(
        lint(
            "use tokio::task::spawn_blocking;\nfn f(s: BudgetScope) {\n    spawn_blocking(|| 1);\n}\n"
        ),
        [(3, "TF001")]
    );
    // A local function called `spawn` is not tokio's.
    assert_eq!(lint("fn f(ctx: Context) {\n    spawn(1);\n}\n"), []);
}

#[test]
fn tf002_fresh_context() {
    let hit = lint("async fn f(ctx: &Context) {\n    g(&Context::background()).await;\n}\n");
    assert_eq!(hit, [(2, "TF002")]);
    let root = lint("async fn f() {\n    g(&Context::background()).await;\n}\n");
    assert_eq!(root, [], "no inherited context: a root is fine");
    let detached = lint("async fn f(ctx: &Context) {\n    g(&ctx.without_cancel()).await;\n}\n");
    assert_eq!(detached, []);
}

#[test]
fn tf010_loop_not_listening() {
    let hit = lint("async fn f(ctx: &Context) {\n    loop {\n        step().await;\n    }\n}\n");
    assert_eq!(hit, [(2, "TF010")]);
    for ok in [
        "async fn f(ctx: &Context) {\n    loop {\n        if ctx.is_done() { break }\n        step().await;\n    }\n}\n",
        "async fn f(ctx: &Context) {\n    loop {\n        step(&ctx).await;\n    }\n}\n",
        "async fn f(ctx: &Context) {\n    loop {\n        tokio::select! { _ = ctx.done() => break, _ = step() => {} }\n    }\n}\n",
        "fn f(ctx: &Context) {\n    loop {\n        step();\n    }\n}\n",
        "async fn f(ctx: &Context) {\n    let _ = ctx.run(async { loop { step().await; } }).await;\n}\n",
    ] {
        assert_eq!(lint(ok), [], "{ok}");
    }
    // A child derived inside the loop and passed on counts as passing the context.
    let child = "async fn f(ctx: &Context) {\n    loop {\n        let (c, _g) = ctx.with_timeout(Duration::ZERO);\n        step(&c).await;\n    }\n}\n";
    assert_eq!(lint(child), []);
}

#[test]
fn tf011_await_not_raced() {
    let hit = lint(
        "async fn f(ctx: &Context) {\n    tokio::time::sleep(Duration::from_secs(1)).await;\n}\n",
    );
    assert_eq!(hit, [(2, "TF011")]);
    let hit = lint("async fn f(ctx: &Context, rx: &mut Rx) {\n    let m = rx.recv().await;\n}\n");
    assert_eq!(hit, [(2, "TF011")]);
    for ok in [
        "async fn f(ctx: &Context) {\n    ctx.run(tokio::time::sleep(Duration::from_secs(1))).await;\n}\n",
        "async fn f(ctx: &Context) {\n    tokio::time::sleep(ctx.remaining().unwrap()).await;\n}\n",
        "async fn f() {\n    tokio::time::sleep(Duration::from_secs(1)).await;\n}\n",
        "async fn f(ctx: &Context) {\n    compute().await;\n}\n",
    ] {
        assert_eq!(lint(ok), [], "{ok}");
    }
}

#[test]
fn tf020_guard_dropped_at_once() {
    assert_eq!(
        lint("fn f(ctx: &Context) {\n    let _ = ctx.with_cancel();\n}\n"),
        [(2, "TF020")]
    );
    assert_eq!(
        lint("fn f(ctx: &Context) {\n    let (c, _) = ctx.with_cancel();\n    g(&c);\n}\n"),
        [(2, "TF020")]
    );
    assert_eq!(
        lint("fn f(ctx: &Context) {\n    ctx.stage(\"s\").unwrap();\n}\n"),
        [(2, "TF020")]
    );
    assert_eq!(
        lint(
            "fn f(ctx: &Context) {\n    let (c, _guard) = ctx.with_cancel();\n    let _s = ctx.stage(\"s\");\n    g(&c);\n}\n"
        ),
        []
    );
    // `let _ = place` does not move: the guard lives on.
    assert_eq!(
        lint(
            "fn f(ctx: &Context) {\n    let (c, guard) = ctx.with_cancel();\n    let _ = guard;\n    g(&c);\n}\n"
        ),
        []
    );
}

#[test]
fn tf021_guard_dropped_before_use() {
    let hit = "async fn f(ctx: &Context) {\n    let (c, g) = ctx.with_cancel();\n    drop(g);\n    h(&c).await;\n}\n";
    assert_eq!(lint(hit), [(3, "TF021")]);
    let ok = "async fn f(ctx: &Context) {\n    let (c, g) = ctx.with_cancel();\n    h(&c).await;\n    drop(g);\n    assert!(c.is_done());\n}\n";
    assert_eq!(lint(ok), []);
    let rebound = "async fn f(ctx: &Context) {\n    let (c, g) = ctx.with_cancel();\n    drop(g);\n    let c = ctx.clone();\n    h(&c).await;\n}\n";
    assert_eq!(lint(rebound), []);
}

#[test]
fn tf022_guard_outlived() {
    let hit = "fn f(p: &Context) -> impl Future<Output = ()> {\n    let (c, _g) = p.with_cancel();\n    async move { h(&c).await }\n}\n";
    assert_eq!(lint(hit), [(3, "TF022")]);
    let ok = "fn f(p: &Context) -> impl Future<Output = ()> {\n    let (c, g) = p.with_cancel();\n    async move { let _g = g; h(&c).await }\n}\n";
    assert_eq!(lint(ok), []);
    let sync_spawn =
        "fn f(p: &Context) {\n    let (c, _g) = p.with_cancel();\n    c.spawn(h());\n}\n";
    assert_eq!(lint(sync_spawn), [(3, "TF022")]);
    let scope = "fn f(p: &Context) -> impl Future<Output = ()> {\n    let s = p.stage(\"x\").unwrap();\n    s.run(h())\n}\n";
    assert_eq!(lint(scope), [(3, "TF022")]);
}

#[test]
fn tf030_context_in_struct() {
    assert_eq!(
        lint("struct Server {\n    ctx: Context,\n}\n"),
        [(2, "TF030")]
    );
    assert_eq!(lint("struct GetRequest {\n    ctx: Context,\n}\n"), []);
    assert_eq!(
        lint("struct S {\n    ctx: Context,\n    g: timefuse::CancelGuard,\n}\n"),
        []
    );
    let opts = Options::default().with_struct_suffix("Job");
    assert_eq!(
        lint_with("struct SyncJob {\n    ctx: Context,\n}\n", &opts),
        []
    );
    // std's Context is not timefuse's.
    let report = crate::lint_source(
        "t.rs",
        "use std::task::Context;\nstruct S<'a> {\n    cx: Context<'a>,\n}\nstruct T {\n    cx: *mut Context<'static>,\n}\n",
        &Options::default(),
    );
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Renamed imports are followed.
    let report = crate::lint_source(
        "t.rs",
        "use std::task::Context as Cx;\nuse timefuse::Context as Ctx;\nstruct S {\n    c: Ctx,\n}\n",
        &Options::default(),
    );
    assert_eq!(report.findings.len(), 1);
}

#[test]
fn tf031_context_derived_in_loop() {
    let hit = "async fn f(mut ctx: Context) {\n    loop {\n        ctx = ctx.with_value(1);\n        h(&ctx).await;\n    }\n}\n";
    assert_eq!(lint(hit), [(3, "TF031")]);
    let ok = "async fn f(mut ctx: Context, p: &Context) {\n    loop {\n        ctx = p.with_value(1);\n        h(&ctx).await;\n    }\n}\n";
    assert_eq!(lint(ok), []);
}

#[test]
fn allow_comments_disabled_rules_and_test_code() {
    let src = "fn f(ctx: &Context) {\n    // timefuse-lint: allow(TF020) the test wants a cancelled child\n    let _ = ctx.with_cancel();\n}\n";
    let report = crate::lint_source("t.rs", src, &Options::default());
    assert!(report.findings.is_empty());
    assert_eq!(report.suppressed.len(), 1);
    assert_eq!(
        report.suppressed[0].reason.as_deref(),
        Some("the test wants a cancelled child")
    );

    let body = "fn f(ctx: &Context) {\n    let _ = ctx.with_cancel();\n}\n";
    assert_eq!(
        lint_with(body, &Options::default().without(Rule::GuardDroppedAtOnce)),
        []
    );

    let tests = "#[cfg(test)]\nmod tests {\n    fn f(ctx: &Context) {\n        let _ = ctx.with_cancel();\n    }\n}\n#[tokio::test]\nasync fn t(ctx: &Context) {\n    let _ = ctx.with_cancel();\n}\n";
    assert_eq!(lint(tests), []);
    assert_eq!(
        lint_with(tests, &Options::default().with_tests(true)).len(),
        2
    );
    let file_level = "#![cfg(test)]\nfn f(ctx: &Context) {\n    let _ = ctx.with_cancel();\n}\n";
    assert!(
        crate::lint_source("t.rs", file_level, &Options::default())
            .findings
            .is_empty()
    );
}

#[test]
fn parse_errors_are_reported_with_a_position() {
    let report = crate::lint_source("t.rs", "fn f() {\n    let = ;\n}\n", &Options::default());
    assert_eq!(report.errors.len(), 1);
    let e = &report.errors[0];
    assert_eq!(e.kind, crate::ErrorKind::Parse);
    assert_eq!(e.position.map(|p| p.line), Some(2));
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn shebang_and_bom_keep_line_numbers() {
    let src = "\u{feff}#!/usr/bin/env run-cargo-script\nfn f(ctx: &timefuse::Context) {\n    let _ = ctx.with_cancel();\n}\n";
    let report = crate::lint_source("t.rs", src, &Options::default());
    assert_eq!(report.findings[0].start.line, 3);
}

#[test]
fn macros_are_looked_into() {
    // A spawn inside `assert!` and a guard dropped inside `vec![]`.
    let body = "fn f(ctx: &Context) {\n    assert!(tokio::spawn(work()).is_finished());\n}\n";
    assert_eq!(lint(body), [(2, "TF001")]);
    // `pin_project!` structs are read as structs.
    let pinned =
        "pin_project_lite::pin_project! {\n    struct Holder {\n        ctx: Context,\n    }\n}\n";
    assert_eq!(lint(pinned), [(3, "TF030")]);
}
