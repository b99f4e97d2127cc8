//! The `timefuse-lint` binary: exit codes, formats, options and usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_timefuse-lint"))
}

fn corpus(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(path)
}

fn run(args: &[&str], paths: &[PathBuf]) -> Output {
    bin()
        .args(args)
        .args(paths)
        .output()
        .expect("run timefuse-lint")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn exit_one_on_findings_zero_when_clean() {
    let dirty = run(&[], &[corpus("positive/tf020_guard_dropped_at_once.rs")]);
    assert_eq!(dirty.status.code(), Some(1), "{}", stdout(&dirty));
    assert!(stdout(&dirty).contains("warning[TF020]"));

    let clean = run(&[], &[corpus("negative")]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    assert!(stdout(&clean).contains("no findings"));
}

#[test]
fn exit_two_on_parse_errors_and_missing_paths() {
    let dir = std::env::temp_dir().join(format!("tflint-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.rs");
    std::fs::write(&broken, "fn f( {").unwrap();
    let o = run(&[], std::slice::from_ref(&broken));
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("cannot parse"));

    let o = run(&[], &[dir.join("missing.rs")]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_two() {
    for args in [
        &["--format", "xml"][..],
        &["--allow", "TF999"],
        &["--no-such-flag"],
    ] {
        let o = run(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn json_and_sarif_formats() {
    let file = corpus("positive/tf030_context_in_struct.rs");
    let o = run(&["--format", "json"], std::slice::from_ref(&file));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["by_rule"]["TF030"], 5);

    let o = run(&["-f", "sarif"], std::slice::from_ref(&file));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), 5);
}

#[test]
fn output_file_and_rule_selection() {
    let out = std::env::temp_dir().join(format!("tflint-cli-{}.sarif", std::process::id()));
    let file = corpus("positive/tf031_context_derived_in_loop.rs");
    let o = run(
        &["--format", "sarif", "--output", out.to_str().unwrap()],
        std::slice::from_ref(&file),
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), 6);
    std::fs::remove_file(&out).unwrap();

    let only = run(
        &["--only", "TF020", "--format", "json"],
        std::slice::from_ref(&file),
    );
    let v: serde_json::Value = serde_json::from_slice(&only.stdout).unwrap();
    assert_eq!(v["summary"]["findings"], 1);

    let allowed = run(
        &["-A", "TF020,context-derived-in-loop"],
        std::slice::from_ref(&file),
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", stdout(&allowed));
}

#[test]
fn list_and_explain() {
    let o = run(&["--list-rules"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 9);
    let o = run(&["--explain", "guard-outlived"], &[]);
    assert!(stdout(&o).contains("TF022"));
}
