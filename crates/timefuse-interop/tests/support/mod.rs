//! Test support: a Python interpreter with `grpcio`, the Python stubs of the interop protos,
//! and Python peer processes that die with the test.
//!
//! The interpreter is `$TIMEFUSE_PYTHON` if set; otherwise a venv at
//! `<workspace>/target/interop-venv`, created once (`python3 -m venv`, then `pip install -r
//! python/requirements.txt`) under a file lock, since test threads and concurrent `cargo test`
//! runs race for it. When Python cannot be set up the tests skip, except under CI (`CI` set) or
//! when `$TIMEFUSE_PYTHON` was given: then they fail.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A Python interpreter that imports `grpc`, and the generated stubs for it.
#[derive(Debug)]
pub struct Python {
    /// The interpreter.
    pub exe: PathBuf,
    /// The directory holding the package `pb` (put it on `PYTHONPATH`).
    pub stubs: PathBuf,
}

static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();

const VENV_TIMEOUT: Duration = Duration::from_secs(120);
const PIP_TIMEOUT: Duration = Duration::from_secs(900);
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_dir() -> PathBuf {
    // Resolved, so that Python (which normalizes `..` textually) and the OS agree on it.
    let dir = crate_dir().join("../..");
    fs::canonicalize(&dir).unwrap_or(dir)
}

fn requirements() -> PathBuf {
    crate_dir().join("python/requirements.txt")
}

/// The path of a script under `python/`.
pub fn script(name: &str) -> PathBuf {
    crate_dir().join("python").join(name)
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The Python peer, or `None` when it cannot be set up and the test should skip (never under
/// CI, nor when `TIMEFUSE_PYTHON` is set: then this panics with the reason).
pub fn python(test: &str) -> Option<&'static Python> {
    match PYTHON.get_or_init(setup) {
        Ok(p) => Some(p),
        Err(e) if is_ci() || std::env::var_os("TIMEFUSE_PYTHON").is_some() => {
            panic!("{test}: the Python gRPC peer could not be set up: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: the Python gRPC peer could not be set up ({e}); \
                 set TIMEFUSE_PYTHON to a python with grpcio and grpcio-tools"
            );
            None
        }
    }
}

fn setup() -> Result<Python, String> {
    let exe = match std::env::var_os("TIMEFUSE_PYTHON") {
        Some(p) => {
            let exe = PathBuf::from(p);
            check_python(&exe).map_err(|e| format!("TIMEFUSE_PYTHON={}: {e}", exe.display()))?;
            exe
        }
        None => venv()?,
    };
    let stubs = generate_stubs(&exe)?;
    Ok(Python { exe, stubs })
}

/// Runs `cmd` with a time limit; its output on success, else an error with its stderr.
fn run(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: still running after {limit:?}; killed"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let tail: String = stderr
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        Err(format!("{what}: {status}\n{tail}"))
    }
}

fn check_python(exe: &Path) -> Result<(), String> {
    run(
        Command::new(exe).args(["-c", "import grpc, grpc_tools.protoc, google.protobuf"]),
        CHECK_TIMEOUT,
    )
    .map(drop)
}

/// `<workspace>/target/interop-venv`, created and filled on first use.
fn venv() -> Result<PathBuf, String> {
    let target = workspace_dir().join("target");
    fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let lock_path = target.join("interop-venv.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // Held until this function returns: other test processes wait here.
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let dir = target.join("interop-venv");
    let exe = dir.join("bin/python");
    let marker = dir.join(".timefuse-ready");
    let want = fs::read_to_string(requirements()).map_err(|e| format!("requirements: {e}"))?;
    if fs::read_to_string(&marker).is_ok_and(|m| m == want) && check_python(&exe).is_ok() {
        return Ok(exe);
    }
    eprintln!(
        "creating the Python venv {} (pip install grpcio grpcio-tools protobuf)...",
        dir.display()
    );
    let _ = fs::remove_dir_all(&dir);
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&dir),
        VENV_TIMEOUT,
    )?;
    run(
        Command::new(&exe)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(requirements()),
        PIP_TIMEOUT,
    )?;
    check_python(&exe)?;
    fs::write(&marker, want).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(exe)
}

/// Generates the Python stubs into a directory named after the protos' contents, under
/// cargo's temp dir. The protos are staged as package `pb.grpc.testing`: a top-level `grpc`
/// package of stubs would hide grpcio's own.
fn generate_stubs(exe: &Path) -> Result<PathBuf, String> {
    let names = ["empty", "messages", "test"];
    let mut sources = Vec::new();
    let mut hasher = DefaultHasher::new();
    exe.hash(&mut hasher);
    for name in names {
        let path = crate_dir().join(format!("proto/grpc/testing/{name}.proto"));
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let staged = text.replace("import \"grpc/testing/", "import \"pb/grpc/testing/");
        staged.hash(&mut hasher);
        sources.push((name, staged));
    }
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let done = base.join(format!("interop-pb-{:016x}", hasher.finish()));
    if done.join("pb/grpc/testing/test_pb2_grpc.py").exists() {
        return Ok(done);
    }
    let work = base.join(format!("interop-pb-tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let stage = work.join("proto");
    let out = work.join("out");
    let proto_dir = stage.join("pb/grpc/testing");
    fs::create_dir_all(&proto_dir).map_err(|e| e.to_string())?;
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    for (name, text) in &sources {
        fs::write(proto_dir.join(format!("{name}.proto")), text).map_err(|e| e.to_string())?;
    }
    let mut cmd = Command::new(exe);
    cmd.args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", stage.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()));
    for name in names {
        cmd.arg(format!("pb/grpc/testing/{name}.proto"));
    }
    run(&mut cmd, CHECK_TIMEOUT)?;
    // Another process may have won the race: its copy is as good as ours.
    if fs::rename(&out, &done).is_err() && !done.join("pb/grpc/testing/test_pb2_grpc.py").exists() {
        return Err(format!("could not move the stubs to {}", done.display()));
    }
    let _ = fs::remove_dir_all(&work);
    Ok(done)
}

/// A Python peer process: JSON lines from its stdout, lines to its stdin. Killed when
/// dropped.
#[derive(Debug)]
pub struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<String>,
}

impl Peer {
    /// Starts `python/<script>` with `args`, on loopback only (proxies disabled).
    pub fn spawn(py: &Python, script_name: &str, args: &[&str]) -> Peer {
        let mut cmd = tokio::process::Command::new(&py.exe);
        cmd.arg(script(script_name))
            .args(args)
            .env("PYTHONPATH", &py.stubs)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("NO_PROXY", "127.0.0.1,localhost");
        for var in [
            "http_proxy",
            "https_proxy",
            "grpc_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
        ] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {script_name}: {e}"));
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped");
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        Peer {
            name: format!("{script_name} {}", args.join(" ")),
            child,
            stdin,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    fn fail(&self, why: &str) -> ! {
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        panic!(
            "{}: {why}\nstdout so far: {:#?}\nstderr: {stderr}",
            self.name, self.seen
        )
    }

    /// The next JSON line on stdout, waiting at most `limit`.
    pub async fn next_json(&mut self, limit: Duration) -> Value {
        let until = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(until, self.lines.next_line()).await {
                Err(_) => self.fail(&format!("no JSON line within {limit:?}")),
                Ok(Err(e)) => self.fail(&format!("reading stdout: {e}")),
                Ok(Ok(None)) => {
                    // Give the stderr reader a moment to collect the traceback.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.fail("exited before the expected line")
                }
                Ok(Ok(Some(line))) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        return v;
                    }
                }
            }
        }
    }

    /// Waits at most `limit` for the line that has `key`, and returns its value.
    pub async fn wait_key(&mut self, key: &str, limit: Duration) -> Value {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let mut v = self.next_json(left).await;
            if let Some(found) = v.get_mut(key) {
                return found.take();
            }
        }
    }

    /// Waits for the event line `{"event": name}` and returns the whole line.
    pub async fn wait_event(&mut self, name: &str, limit: Duration) -> Value {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next_json(left).await;
            if v.get("event").and_then(Value::as_str) == Some(name) {
                return v;
            }
        }
    }

    /// Writes `line` to the peer's stdin.
    pub async fn send_line(&mut self, line: &str) {
        let Some(stdin) = self.stdin.as_mut() else {
            self.fail("stdin already closed")
        };
        let r = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = r {
            self.fail(&format!("writing stdin: {e}"));
        }
    }

    /// Closes stdin and waits at most `limit` for the peer to exit (then kills it).
    pub async fn finish(mut self, limit: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
