//! The project's own code stays clean: `timefuse` and `timefuse-tower` have no finding.
//!
//! CI keeps this true; a new finding there is either a real misuse to fix or a heuristic to
//! improve (an allow comment with a reason is the last resort).

use std::path::Path;

use timefuse_lint::{Options, lint_paths, render_human};

#[test]
fn timefuse_and_timefuse_tower_sources_have_no_findings() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let paths = [
        crates.join("timefuse/src"),
        crates.join("timefuse-tower/src"),
    ];
    let report = lint_paths(&paths, &Options::default());
    assert!(
        report.files_scanned > 10,
        "scanned {} files",
        report.files_scanned
    );
    assert!(report.is_clean(), "{}", render_human(&report));
}

#[test]
fn this_crate_has_no_findings() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let report = lint_paths(&[src], &Options::default());
    assert!(report.is_clean(), "{}", render_human(&report));
}
