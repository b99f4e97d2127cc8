//! Static audit of timefuse context misuse: the document's three anti-patterns in their Rust
//! forms — the context **not passed**, **not listened to**, **released too early** — plus the
//! checks Go's linters make (`contextcheck`, `lostcancel`, `containedctx`, `fatcontext`).
//!
//! The audit is syntactic: each `.rs` file is parsed with `syn`, every function is walked in
//! statement order with a lexical environment of contexts, guards and scopes, and nothing is
//! type-checked. `docs/lint.md` lists each rule with its heuristics and limits.
//!
//! | code | rule | finds |
//! |---|---|---|
//! | `TF001` | [`Rule::SpawnWithoutContext`] | `tokio::spawn` while a context is in scope, without it |
//! | `TF002` | [`Rule::FreshContext`] | `Context::background()` passed on while one is inherited |
//! | `TF010` | [`Rule::LoopNotListening`] | an async loop that awaits but never checks the context |
//! | `TF011` | [`Rule::AwaitNotRaced`] | a long await not raced with the context |
//! | `TF020` | [`Rule::GuardDroppedAtOnce`] | `let _ = ctx.with_timeout(..)`: the guard dies at once |
//! | `TF021` | [`Rule::GuardDroppedBeforeUse`] | `drop(guard)` before later uses of its context |
//! | `TF022` | [`Rule::GuardOutlived`] | a returned or spawned future that outlives its guard |
//! | `TF030` | [`Rule::ContextInStruct`] | a `Context` stored in a long-lived struct |
//! | `TF031` | [`Rule::ContextDerivedInLoop`] | `ctx = ctx.with_value(..)` in a loop |
//!
//! A finding is silenced by `// timefuse-lint: allow(TF020) reason` on its line or the line
//! above.
//!
//! ```
//! use timefuse_lint::{Format, Options, Rule, lint_source};
//!
//! let source = r#"
//! use timefuse::Context;
//! use std::time::Duration;
//!
//! async fn handle(ctx: &Context) {
//!     let _ = ctx.with_timeout(Duration::from_millis(200));
//! }
//! "#;
//! let report = lint_source("handler.rs", source, &Options::default());
//! assert_eq!(report.findings.len(), 1);
//! assert_eq!(report.findings[0].rule, Rule::GuardDroppedAtOnce);
//! assert_eq!(report.exit_code(), 1);
//! let text = timefuse_lint::render(&report, Format::Human);
//! assert!(text.contains("warning[TF020]"));
//! ```

mod allow;
mod analysis;
mod discover;
mod output;
mod report;
mod rules;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

pub use allow::MARKER as ALLOW_MARKER;
pub use output::{Format, UnknownFormat, render, render_human, render_json, render_sarif};
pub use report::{ErrorKind, FileError, Finding, Options, Position, Report, Suppressed};
pub use rules::{Family, Rule, UnknownRule};

/// The deepest delimiter nesting analysed; deeper files are reported as parse errors rather
/// than risking the stack.
pub const MAX_NESTING: usize = 256;

/// The stack size of the thread [`lint_paths`] analyses on: deep but valid code (long method
/// chains, nested closures) is walked recursively.
const WORKER_STACK: usize = 256 * 1024 * 1024;

/// Lints the files and directories in `paths`.
///
/// Directories are walked recursively in name order, reading `.rs` files and skipping hidden
/// directories and `target`; unless [`Options::include_tests`] is set, directories named
/// `tests`, `benches` or `fuzz` too. Files named explicitly are always read. The work runs on a
/// dedicated thread with a large stack.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("timefuse-lint-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("ok.rs"), "fn main() {}\n").unwrap();
/// let report = timefuse_lint::lint_paths(&[&dir], &timefuse_lint::Options::default());
/// assert_eq!((report.files_scanned, report.exit_code()), (1, 0));
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn lint_paths<P: AsRef<Path>>(paths: &[P], options: &Options) -> Report {
    let paths: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let opts = options.clone();
    let work = move || {
        let (files, errors) = discover::collect(&paths, &opts);
        let mut report = Report {
            errors,
            ..Report::default()
        };
        for file in files {
            report.merge(lint_file(&file, &opts));
        }
        report.sort();
        report
    };
    let spawned = std::thread::Builder::new()
        .name("timefuse-lint".into())
        .stack_size(WORKER_STACK)
        .spawn(work);
    match spawned {
        Ok(handle) => handle.join().unwrap_or_else(|_| Report {
            errors: vec![FileError {
                file: String::from("<lint>"),
                kind: ErrorKind::Internal,
                position: None,
                message: String::from("the lint worker panicked"),
            }],
            ..Report::default()
        }),
        Err(e) => Report {
            errors: vec![FileError {
                file: String::from("<lint>"),
                kind: ErrorKind::Io,
                position: None,
                message: format!("cannot start the lint worker: {e}"),
            }],
            ..Report::default()
        },
    }
}

/// Lints one file from disk; `path` is shown as given.
pub fn lint_file(path: &Path, options: &Options) -> Report {
    let label = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(source) => lint_source(&label, &source, options),
            Err(_) => error_report(&label, ErrorKind::Io, None, "not valid UTF-8".into()),
        },
        Err(e) => error_report(&label, ErrorKind::Io, None, format!("cannot read: {e}")),
    }
}

/// Lints Rust source text; `path` is the name shown in findings.
///
/// Never panics on any input: text that does not parse (or nests deeper than
/// [`MAX_NESTING`]) becomes a [`FileError`] of kind [`ErrorKind::Parse`], and a failure of
/// the analysis itself one of kind [`ErrorKind::Internal`]. Runs on the calling thread: for
/// untrusted input with very long expression chains prefer [`lint_paths`], which runs on a
/// large stack.
pub fn lint_source(path: &str, source: &str, options: &Options) -> Report {
    panic::catch_unwind(AssertUnwindSafe(|| {
        lint_source_inner(path, source, options)
    }))
    .unwrap_or_else(|_| {
        error_report(
            path,
            ErrorKind::Internal,
            None,
            "internal error: the analysis panicked (please report it)".into(),
        )
    })
}

fn lint_source_inner(path: &str, source: &str, options: &Options) -> Report {
    let text = strip_shebang(source.strip_prefix('\u{feff}').unwrap_or(source));
    let tokens: proc_macro2::TokenStream = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let start = e.span().start();
            return error_report(
                path,
                ErrorKind::Parse,
                Some(Position {
                    line: start.line.max(1),
                    column: start.column + 1,
                }),
                format!(
                    "cannot tokenize ({e}): an unbalanced delimiter, or an unterminated string, character or block comment"
                ),
            );
        }
    };
    let depth = analysis::max_depth(&tokens);
    if depth > MAX_NESTING {
        return error_report(
            path,
            ErrorKind::Parse,
            None,
            format!("nesting too deep to analyse ({depth} levels, at most {MAX_NESTING})"),
        );
    }
    let file: syn::File = match syn::parse2(tokens) {
        Ok(f) => f,
        Err(e) => {
            let start = e.span().start();
            return error_report(
                path,
                ErrorKind::Parse,
                Some(Position {
                    line: start.line.max(1),
                    column: start.column + 1,
                }),
                format!("cannot parse: {e}"),
            );
        }
    };
    let raw = analysis::analyze(&file, &text, options);
    let allows = allow::AllowMap::new(&text);
    let lines: Vec<&str> = text.lines().collect();
    let mut report = Report {
        files_scanned: 1,
        ..Report::default()
    };
    for f in raw {
        let source_line = lines
            .get(f.start.line.saturating_sub(1))
            .map_or_else(String::new, |l| (*l).to_owned());
        let finding = Finding {
            rule: f.rule,
            file: path.to_owned(),
            start: Position {
                line: f.start.line,
                column: f.start.column + 1,
            },
            end: Position {
                line: f.end.line,
                column: f.end.column + 1,
            },
            message: f.message,
            source_line,
        };
        let mut anchors = vec![f.start.line];
        anchors.extend(f.extra_anchor);
        match allows.find(f.rule, &anchors) {
            Some(a) => report.suppressed.push(Suppressed {
                finding,
                allow_line: a.line,
                reason: a.reason.clone(),
            }),
            None => report.findings.push(finding),
        }
    }
    report.sort();
    report
}

/// Blanks a `#!` first line (not `#![..]`), keeping line numbers.
fn strip_shebang(source: &str) -> std::borrow::Cow<'_, str> {
    if source.starts_with("#!") && !source.starts_with("#![") {
        let end = source.find('\n').unwrap_or(source.len());
        let mut s = String::with_capacity(source.len());
        s.push_str(&" ".repeat(source[..end].chars().count()));
        s.push_str(&source[end..]);
        std::borrow::Cow::Owned(s)
    } else {
        std::borrow::Cow::Borrowed(source)
    }
}

fn error_report(
    path: &str,
    kind: ErrorKind,
    position: Option<Position>,
    message: String,
) -> Report {
    Report {
        errors: vec![FileError {
            file: path.to_owned(),
            kind,
            position,
            message,
        }],
        ..Report::default()
    }
}
