//! Findings, suppressed findings, file errors and the report that collects them.

use std::collections::BTreeSet;
use std::fmt;

use crate::rules::Rule;

/// What to lint and how.
///
/// ```
/// let mut options = timefuse_lint::Options::default();
/// options.include_tests = true;
/// options.disabled.insert(timefuse_lint::Rule::ContextInStruct);
/// assert!(!options.is_enabled(timefuse_lint::Rule::ContextInStruct));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// Also lint test code: directories named `tests` or `benches` or `fuzz` found while
    /// walking a directory, and `#[cfg(test)]` items and `#[test]`-like functions. Off by
    /// default: tests misuse contexts on purpose to check what happens.
    pub include_tests: bool,
    /// Rules not to run.
    pub disabled: BTreeSet<Rule>,
    /// Extra struct-name suffixes for which [`Rule::ContextInStruct`] allows a `Context` field,
    /// on top of `Request`, `Call` and `Task`.
    pub extra_struct_suffixes: Vec<String>,
}

impl Options {
    /// These options with [`include_tests`](Options::include_tests) set to `yes`.
    ///
    /// ```
    /// let options = timefuse_lint::Options::default().with_tests(true);
    /// assert!(options.include_tests);
    /// ```
    pub fn with_tests(mut self, yes: bool) -> Options {
        self.include_tests = yes;
        self
    }

    /// These options with `rule` disabled.
    ///
    /// ```
    /// use timefuse_lint::{Options, Rule};
    /// let options = Options::default().without(Rule::ContextInStruct);
    /// assert!(!options.is_enabled(Rule::ContextInStruct));
    /// ```
    pub fn without(mut self, rule: Rule) -> Options {
        self.disabled.insert(rule);
        self
    }

    /// These options with one more struct-name suffix allowed to hold a `Context` (TF030).
    pub fn with_struct_suffix(mut self, suffix: impl Into<String>) -> Options {
        self.extra_struct_suffixes.push(suffix.into());
        self
    }

    /// True unless `rule` is in [`disabled`](Options::disabled).
    pub fn is_enabled(&self, rule: Rule) -> bool {
        !self.disabled.contains(&rule)
    }
}

/// A position in a source file: 1-based line, 1-based column counted in characters (as rustc
/// prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// One problem found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule that found it.
    pub rule: Rule,
    /// The file, as it was given or found.
    pub file: String,
    /// Where the flagged code starts.
    pub start: Position,
    /// Where the flagged code ends (exclusive column).
    pub end: Position,
    /// What is wrong, naming the code involved.
    pub message: String,
    /// The source line at `start`, without its line break.
    pub source_line: String,
}

impl Finding {
    /// How to fix it (the rule's hint).
    pub fn help(&self) -> &'static str {
        self.rule.help()
    }
}

impl fmt::Display for Finding {
    /// `file:line:col: TF020 message`, one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {} {}",
            self.file, self.start.line, self.start.column, self.rule, self.message
        )
    }
}

/// A finding silenced by an allow comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    /// The finding.
    pub finding: Finding,
    /// The line of the allow comment.
    pub allow_line: usize,
    /// The reason written after the allow, if any.
    pub reason: Option<String>,
}

/// Why a file could not be linted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file or directory could not be read.
    Io,
    /// The file is not valid Rust syntax (or nests too deeply to analyse safely).
    Parse,
    /// The analysis itself failed: a bug in the linter, reported instead of a crash.
    Internal,
}

/// A file that could not be linted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The path.
    pub file: String,
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where, for a parse error.
    pub position: Option<Position>,
    /// The error message.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The result of a lint run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Findings, sorted by file, position and rule.
    pub findings: Vec<Finding>,
    /// Findings silenced by allow comments, in the same order.
    pub suppressed: Vec<Suppressed>,
    /// Files that could not be read or parsed.
    pub errors: Vec<FileError>,
    /// How many files were read and parsed.
    pub files_scanned: usize,
}

impl Report {
    /// True if there are neither findings nor errors.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.errors.is_empty()
    }

    /// The process exit code: 2 if a file could not be read or parsed, 1 if there are
    /// findings, 0 when clean.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if !self.findings.is_empty() {
            1
        } else {
            0
        }
    }

    /// Adds another report's contents to this one (findings stay sorted).
    pub fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.suppressed.extend(other.suppressed);
        self.errors.extend(other.errors);
        self.files_scanned += other.files_scanned;
        self.sort();
    }

    pub(crate) fn sort(&mut self) {
        let key = |f: &Finding| (f.file.clone(), f.start, f.rule);
        self.findings.sort_by_key(key);
        self.suppressed.sort_by_key(|s| key(&s.finding));
    }

    /// How many findings each rule produced, in code order (rules without findings omitted).
    pub fn counts(&self) -> Vec<(Rule, usize)> {
        Rule::ALL
            .into_iter()
            .map(|r| (r, self.findings.iter().filter(|f| f.rule == r).count()))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}
