//! Precision and recall over the corpus in `tests/corpus/`.
//!
//! Every `positive/*.rs` line ending in `// expect: TF0xx[, TF0yy]` must be flagged with
//! exactly those rules; nothing else in the positive files and nothing at all in the
//! `negative/*.rs` files may be flagged. `gaps/*.rs` document what the heuristics get wrong:
//! lines marked `// gap: TF0xx` are misuse that is not flagged, lines marked `// gap-fp: TF0xx`
//! correct code that is; they count in the overall numbers, and the test fails if a gap
//! closes (so that the documentation stays true). The test prints precision and recall per
//! rule and overall (`cargo test -p timefuse-lint --test corpus -- --nocapture`), then asserts
//! that recall is 1 and that there is no false positive outside the documented gaps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use timefuse_lint::{Family, Options, Rule, lint_source};

fn corpus_files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    files
}

/// `(line, rule)` pairs marked `// expect: ..` in `source`.
fn expectations(source: &str) -> BTreeSet<(usize, Rule)> {
    markers(source, "// expect:")
}

/// `(line, rule)` pairs marked with `marker` (`// expect:`, `// gap:`, `// gap-fp:`).
fn markers(source: &str, marker: &str) -> BTreeSet<(usize, Rule)> {
    let mut out = BTreeSet::new();
    for (i, line) in source.lines().enumerate() {
        if let Some(at) = line.find(marker) {
            for code in line[at + marker.len()..].split(',') {
                let rule = Rule::from_code(code.trim())
                    .unwrap_or_else(|| panic!("line {}: unknown rule `{code}`", i + 1));
                out.insert((i + 1, rule));
            }
        }
    }
    out
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn precision(self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

#[test]
fn corpus_precision_and_recall() {
    let options = Options::default();
    let mut by_rule: BTreeMap<Rule, Counts> =
        Rule::ALL.iter().map(|r| (*r, Counts::default())).collect();
    let mut problems = Vec::new();
    let mut cases = BTreeMap::<Family, (usize, usize)>::new();
    let (mut pos_files, mut neg_files) = (0, 0);

    for path in corpus_files("positive") {
        pos_files += 1;
        let source = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let report = lint_source(&name, &source, &options);
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        let expected = expectations(&source);
        assert!(!expected.is_empty(), "{name} has no `// expect:` marker");
        let found: BTreeSet<(usize, Rule)> = report
            .findings
            .iter()
            .map(|f| (f.start.line, f.rule))
            .collect();
        for &(line, rule) in &expected {
            cases.entry(rule.family()).or_default().0 += 1;
            let c = by_rule.get_mut(&rule).unwrap();
            if found.contains(&(line, rule)) {
                c.tp += 1;
            } else {
                c.fn_ += 1;
                problems.push(format!("missed   {name}:{line} {rule}"));
            }
        }
        for f in &report.findings {
            if !expected.contains(&(f.start.line, f.rule)) {
                by_rule.get_mut(&f.rule).unwrap().fp += 1;
                problems.push(format!(
                    "spurious {name}:{} {} {}",
                    f.start.line, f.rule, f.message
                ));
            }
        }
    }

    // Negative cases: one per function, struct or loop the file documents; counted as the
    // number of `fn`/`struct` items, since each is a separate idiom that must stay clean.
    for path in corpus_files("negative") {
        neg_files += 1;
        let source = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let report = lint_source(&name, &source, &options);
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        assert!(
            !source.contains("// expect:"),
            "{name}: negative files carry no expectations"
        );
        let family = family_of_file(&name);
        let items = source
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                t.starts_with("fn ")
                    || t.starts_with("async fn ")
                    || t.starts_with("pub async fn ")
                    || t.starts_with("pub fn ")
                    || t.starts_with("struct ")
                    || t.starts_with("pub struct ")
            })
            .count();
        if let Some(family) = family {
            cases.entry(family).or_default().1 += items;
        }
        for f in &report.findings {
            by_rule.get_mut(&f.rule).unwrap().fp += 1;
            problems.push(format!(
                "false+   {name}:{} {} {}",
                f.start.line, f.rule, f.message
            ));
        }
    }

    // Documented gaps: misses that must still be missed, false positives that must still be
    // flagged, nothing else. They count in the overall numbers only.
    let (mut gap_fn, mut gap_fp) = (0, 0);
    for path in corpus_files("gaps") {
        let source = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let report = lint_source(&name, &source, &options);
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        let misses = markers(&source, "// gap:");
        let false_positives = markers(&source, "// gap-fp:");
        let found: BTreeSet<(usize, Rule)> = report
            .findings
            .iter()
            .map(|f| (f.start.line, f.rule))
            .collect();
        for m in &misses {
            if found.contains(m) {
                problems.push(format!(
                    "gap closed {name}:{} {}: move it to positive/",
                    m.0, m.1
                ));
            }
        }
        for fp in &false_positives {
            if !found.contains(fp) {
                problems.push(format!(
                    "gap closed {name}:{} {}: move it to negative/",
                    fp.0, fp.1
                ));
            }
        }
        for f in &report.findings {
            if !false_positives.contains(&(f.start.line, f.rule)) {
                problems.push(format!(
                    "unlisted {name}:{} {} {}",
                    f.start.line, f.rule, f.message
                ));
            }
        }
        gap_fn += misses.len();
        gap_fp += false_positives.len();
    }

    let mut total = Counts::default();
    println!("\ncorpus: {pos_files} positive files, {neg_files} negative files");
    println!(
        "{:<6} {:<26} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "rule", "name", "tp", "fp", "fn", "precision", "recall"
    );
    for (rule, c) in &by_rule {
        total.tp += c.tp;
        total.fp += c.fp;
        total.fn_ += c.fn_;
        println!(
            "{:<6} {:<26} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
            rule.code(),
            rule.name(),
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
    }
    println!(
        "{:<33} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
        "all",
        total.tp,
        total.fp,
        total.fn_,
        total.precision(),
        total.recall()
    );
    let overall = Counts {
        tp: total.tp,
        fp: total.fp + gap_fp,
        fn_: total.fn_ + gap_fn,
    };
    println!(
        "{:<33} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
        "all, with the documented gaps",
        overall.tp,
        overall.fp,
        overall.fn_,
        overall.precision(),
        overall.recall()
    );
    for (family, (pos, neg)) in &cases {
        println!("{family}: {pos} positive cases, {neg} negative cases");
    }

    assert!(
        problems.is_empty(),
        "corpus problems:\n{}",
        problems.join("\n")
    );
    for family in [
        Family::NotPassed,
        Family::NotListened,
        Family::ReleasedEarly,
        Family::Containment,
    ] {
        let (pos, neg) = cases.get(&family).copied().unwrap_or_default();
        assert!(
            pos >= 4 && neg >= 4,
            "{family}: {pos} positive and {neg} negative cases, want 4 each"
        );
    }
}

/// The family a negative file exercises, from its `tfNNN_` prefix.
fn family_of_file(name: &str) -> Option<Family> {
    let code = name.get(..5)?.to_ascii_uppercase();
    Rule::from_code(&code).map(Rule::family)
}
