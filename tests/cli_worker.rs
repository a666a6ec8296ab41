//! The `capactor` binary: a worker started from the command line answers
//! `capactor info` and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_capactor");
const LIMIT: Duration = Duration::from_secs(20);

/// A child process that is killed if the test fails before it exits, and
/// whose stderr is shown then.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting capactor");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits for the process to exit, failing the test after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "process still running after {limit:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit and collects its stdout.
    fn output(mut self, limit: Duration) -> Output {
        let mut stdout = self.child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let status = self.wait(limit);
        let stdout = reader.join().unwrap();
        if let Some(r) = self.stderr_reader.take() {
            r.join().unwrap();
        }
        let stderr = self.stderr.lock().unwrap().clone().into_bytes();
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- stderr of {BIN}:\n{}", self.stderr.lock().unwrap());
        }
    }
}

/// Reads the worker's stdout until its `listening on <addr>` line.
fn listening_addr(worker: &mut Running) -> String {
    let stdout = worker.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = rx
        .recv_timeout(LIMIT)
        .expect("the worker prints where it listens");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(!addr.ends_with(":0"), "the real port, not 0: {addr}");
    addr
}

#[test]
fn a_cli_worker_answers_info_and_exits_cleanly_on_sigterm() {
    let mut worker = Running::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "cli-test",
        "--vats",
        "1",
    ]));
    let addr = listening_addr(&mut worker);
    let token_file = generated_token_file(&worker);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token file is private");

    // Without the token: refused.
    let refused = Running::spawn(Command::new(BIN).args(["info", &addr])).output(LIMIT);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("credential rejected"), "{stderr}");

    let info = Running::spawn(Command::new(BIN).args(["info", &addr, "--token-file", &token_file]))
        .output(LIMIT);
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success(),
        "info failed: {}\n{stdout}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(stdout.contains("cli-test"), "{stdout}");
    assert!(stdout.contains("Actor"), "{stdout}");

    let pid = worker.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("running kill");
    assert!(killed.success());
    let status = worker.wait(LIMIT);
    assert!(status.success(), "worker exited with {status}");
    let _ = std::fs::remove_file(&token_file);
}

/// The path the worker printed on stderr for the token it generated.
fn generated_token_file(worker: &Running) -> String {
    let start = Instant::now();
    loop {
        let stderr = worker.stderr.lock().unwrap().clone();
        if let Some(rest) = stderr.split("token written to ").nth(1) {
            if let Some(path) = rest.lines().next() {
                return path.trim().to_string();
            }
        }
        assert!(start.elapsed() < LIMIT, "no token path printed: {stderr}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_token_from_a_file_or_the_environment_is_required_by_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let token_file = token_file.to_str().unwrap().to_string();
    let mut worker = Running::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--vats",
        "1",
        "--token-file",
        &token_file,
    ]));
    let addr = listening_addr(&mut worker);
    let by_env = Running::spawn(
        Command::new(BIN)
            .args(["info", &addr])
            .env("CAPACTOR_TOKEN", "s3cret-token"),
    )
    .output(LIMIT);
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    let wrong = Running::spawn(
        Command::new(BIN)
            .args(["info", &addr])
            .env("CAPACTOR_TOKEN", "guess"),
    )
    .output(LIMIT);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("credential rejected"));
}

#[test]
fn serving_without_auth_is_refused_off_loopback() {
    let out = Running::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "0.0.0.0:0",
        "--insecure-no-auth",
    ]))
    .output(LIMIT);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only allowed on a loopback address"),
        "{stderr}"
    );

    let mut open = Running::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--vats",
        "1",
        "--insecure-no-auth",
    ]));
    let addr = listening_addr(&mut open);
    let info = Running::spawn(Command::new(BIN).args(["info", &addr])).output(LIMIT);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
}

#[test]
fn cli_info_fails_cleanly_when_no_worker_listens() {
    // Bind a port, then free it: nothing listens there afterwards.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let info = Running::spawn(Command::new(BIN).args(["info", &addr])).output(LIMIT);
    assert!(!info.status.success());
    let stderr = String::from_utf8_lossy(&info.stderr);
    assert!(stderr.contains("capactor: "), "{stderr}");
}
