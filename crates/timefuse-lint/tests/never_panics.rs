//! Arbitrary input never panics: random token soup built from the vocabulary the rules look
//! at, and random mutations (deletions, duplications, swaps, insertions) of the corpus files.
//! Every input yields a report; none may carry an internal error (a caught panic).

use std::path::Path;

use proptest::prelude::*;
use timefuse_lint::{ErrorKind, Format, Options, Report, lint_source, render};

const VOCAB: &[&str] = &[
    "fn",
    "async",
    "move",
    "let",
    "mut",
    "loop",
    "while",
    "for",
    "in",
    "if",
    "else",
    "match",
    "return",
    "break",
    "continue",
    "struct",
    "impl",
    "use",
    "mod",
    "pub",
    "_",
    "ctx",
    "guard",
    "c",
    "g",
    "s",
    "Context",
    "BudgetScope",
    "CancelGuard",
    "::",
    "current",
    "background",
    "default",
    "with_timeout",
    "with_cancel",
    "with_deadline",
    "with_value",
    "stage",
    "downstream",
    "spawn",
    "spawn_named",
    "spawn_blocking",
    "tokio",
    "task",
    "thread",
    "select",
    "!",
    "run",
    "scope",
    "done",
    "is_done",
    "drop",
    "cancel",
    "finish",
    "into_parts",
    "recv",
    "sleep",
    "accept",
    "await",
    ".",
    ",",
    ";",
    ":",
    "=",
    "=>",
    "&",
    "*",
    "?",
    "->",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    "'a",
    "0",
    "\"s\"",
    "#",
    "impl Future",
    "Self::Future",
    "Box::pin",
    "// timefuse-lint: allow(TF020)",
    "\n",
    "0.",
    "1",
    "pin_project",
    "|",
    "||",
];

fn lint(text: &str) -> Report {
    let options = Options::default().with_tests(true);
    let report = lint_source("fuzz.rs", text, &options);
    assert!(
        report.errors.iter().all(|e| e.kind != ErrorKind::Internal),
        "internal error on input:\n{text}\n{:?}",
        report.errors
    );
    for format in [Format::Human, Format::Json, Format::Sarif] {
        let _ = render(&report, format);
    }
    report
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for kind in ["positive", "negative"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| std::fs::read_to_string(p).unwrap()));
    }
    out
}

/// One edit of a text, by character positions.
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Duplicate(usize, usize),
    Swap(usize, usize),
    Insert(usize, usize),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let n = chars.len().max(1);
        match *edit {
            Edit::Delete(at, len) => {
                let at = at % n;
                let end = (at + len % 64).min(chars.len());
                chars.drain(at.min(chars.len())..end);
            }
            Edit::Duplicate(at, len) => {
                let at = (at % n).min(chars.len());
                let end = (at + len % 256).min(chars.len());
                let piece: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, piece);
            }
            Edit::Swap(a, b) => {
                if !chars.is_empty() {
                    let (a, b) = (a % chars.len(), b % chars.len());
                    chars.swap(a, b);
                }
            }
            Edit::Insert(at, word) => {
                let at = (at % n).min(chars.len());
                let word: Vec<char> = format!(" {} ", VOCAB[word % VOCAB.len()]).chars().collect();
                chars.splice(at..at, word);
            }
        }
    }
    chars.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::Delete(a, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::Duplicate(a, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, w)| Edit::Insert(a, w)),
    ]
}

proptest! {
    // 256 cases per test unless PROPTEST_CASES asks for more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn token_soup_never_panics(words in prop::collection::vec(0..VOCAB.len(), 0..200)) {
        let text: Vec<&str> = words.iter().map(|&i| VOCAB[i]).collect();
        lint(&text.join(" "));
    }

    #[test]
    fn token_soup_inside_a_function_never_panics(
        words in prop::collection::vec(0..VOCAB.len(), 0..120),
    ) {
        let body: Vec<&str> = words.iter().map(|&i| VOCAB[i]).collect();
        lint(&format!(
            "use timefuse::Context;\nasync fn f(ctx: &Context) {{\n{}\n}}\n",
            body.join(" ")
        ));
    }

    #[test]
    fn corpus_mutations_never_panic(
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let files = corpus();
        let text = &files[file.index(files.len())];
        lint(&apply(text, &edits));
    }

    #[test]
    fn arbitrary_strings_never_panic(text in ".{0,400}") {
        lint(&text);
    }
}

#[test]
fn pathological_nesting_is_an_error_not_a_crash() {
    let deep = format!("fn f() {{ {}{} }}", "(".repeat(5000), ")".repeat(5000));
    let report = lint(&deep);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].kind, ErrorKind::Parse);
    assert_eq!(report.exit_code(), 2);
}
