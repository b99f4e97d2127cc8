//! The `timefuse` binary: exit codes and messages of `lint` and of `demo` with a bad scenario.

use std::process::Command;

fn timefuse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_timefuse"))
}

#[test]
fn lint_exit_codes_follow_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.rs");
    std::fs::write(&clean, "fn main() {}\n").unwrap();
    let out = timefuse().arg("lint").arg(&clean).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let bad = dir.path().join("bad.rs");
    std::fs::write(
        &bad,
        "use timefuse::Context;\nuse std::time::Duration;\n\
         async fn handle(ctx: &Context) {\n    let _ = ctx.with_timeout(Duration::from_millis(200));\n}\n",
    )
    .unwrap();
    let out = timefuse().arg("lint").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("TF020"));
}

#[test]
fn a_bad_scenario_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "name = \"bad\"\n[load]\nrate = 10\nduration = \"1s\"\n[services.ledger]\nhang_probability = 2\n",
    )
    .unwrap();
    let out = timefuse()
        .args(["demo", "--scenario"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.ledger.hang_probability: must be within [0, 1]"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = timefuse()
        .args(["serve", "risk", "--listen", "0.0.0.0:0", "--db"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
