//! The `capactor` binary: a worker started from the command line answers
//! `capactor info` and exits cleanly on SIGTERM.

use std::process::Command;
use std::time::Duration;

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_cli_worker_answers_info_and_exits_cleanly_on_sigterm() {
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "cli-test",
        "--vats",
        "1",
    ]));
    let addr = worker.listening_addr(LIMIT);
    let token_file = generated_token_file(&worker);
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    let path = std::path::Path::new(&token_file);
    assert_eq!(mode(path), 0o600, "the token file is private");
    let dir = path.parent().unwrap();
    assert_eq!(mode(dir), 0o700, "in a private directory");
    // Named by 128 random bits, not by anything a local user can predict.
    let name = dir.file_name().unwrap().to_str().unwrap();
    let random = name.strip_prefix("capactor-").expect(name);
    assert_eq!(random.len(), 32, "{name}");
    assert!(!name.contains(&addr.rsplit(':').next().unwrap().to_string()));
    let token = std::fs::read_to_string(path).unwrap();
    assert_eq!(token.trim().len(), 64, "256 bits as hex");

    // Without the token: refused.
    let refused = WorkerProcess::spawn(Command::new(BIN).args(["info", &addr])).output(LIMIT);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("credential rejected"), "{stderr}");

    let info =
        WorkerProcess::spawn(Command::new(BIN).args(["info", &addr, "--token-file", &token_file]))
            .output(LIMIT);
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success(),
        "info failed: {}\n{stdout}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(stdout.contains("cli-test"), "{stdout}");
    assert!(stdout.contains("Actor"), "{stdout}");

    worker.signal_term();
    let status = worker.wait(LIMIT);
    assert!(status.success(), "worker exited with {status}");
    assert!(!dir.exists(), "the worker removes its token file on exit");
}

/// The path the worker printed on stderr for the token it generated.
fn generated_token_file(worker: &WorkerProcess) -> String {
    worker.wait_for_stderr(LIMIT, |stderr| {
        let rest = stderr.split("token written to ").nth(1)?;
        let (path, _) = rest.split_once('\n')?;
        Some(path.trim().to_string())
    })
}

#[test]
fn a_token_from_a_file_or_the_environment_is_required_by_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-of-16+-bytes\n").unwrap();
    let token_file = token_file.to_str().unwrap().to_string();
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--vats",
        "1",
        "--token-file",
        &token_file,
    ]));
    let addr = worker.listening_addr(LIMIT);
    let by_env = WorkerProcess::spawn(
        Command::new(BIN)
            .args(["info", &addr])
            .env("CAPACTOR_TOKEN", "s3cret-token-of-16+-bytes"),
    )
    .output(LIMIT);
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    let wrong = WorkerProcess::spawn(
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
    let out = WorkerProcess::spawn(Command::new(BIN).args([
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

    let mut open = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--vats",
        "1",
        "--insecure-no-auth",
    ]));
    let addr = open.listening_addr(LIMIT);
    let info = WorkerProcess::spawn(Command::new(BIN).args(["info", &addr])).output(LIMIT);
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
    let info = WorkerProcess::spawn(Command::new(BIN).args(["info", &addr])).output(LIMIT);
    assert!(!info.status.success());
    let stderr = String::from_utf8_lossy(&info.stderr);
    assert!(stderr.contains("capactor: "), "{stderr}");
}

/// Runs `capactor ARGS` to its end with `env` set; its status and stderr.
fn run(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = WorkerProcess::spawn(&mut cmd).output(LIMIT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_token_shorter_than_sixteen_bytes_is_refused_at_start_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("short.token");
    std::fs::write(&file, "hunter2\n").unwrap();
    let file = file.to_str().unwrap();
    let listen = ["worker", "--listen", "127.0.0.1:0", "--vats", "1"];
    let (ok, stderr) = run(&[&listen[..], &["--token-file", file]].concat(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains(file) && stderr.contains("at least 16"),
        "{stderr}"
    );

    let (ok, stderr) = run(&listen, &[("CAPACTOR_TOKEN", "hunter2".as_ref())]);
    assert!(!ok);
    assert!(
        stderr.contains("CAPACTOR_TOKEN is 7 bytes long"),
        "{stderr}"
    );
}

#[test]
fn a_capactor_token_that_is_not_utf8_is_an_error_not_ignored() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe not utf-8 but long enough");
    let listen = ["worker", "--listen", "127.0.0.1:0", "--vats", "1"];
    let (ok, stderr) = run(&listen, &[("CAPACTOR_TOKEN", bad)]);
    assert!(!ok);
    assert!(
        stderr.contains("CAPACTOR_TOKEN is not valid UTF-8"),
        "{stderr}"
    );
    let (ok, stderr) = run(&["info", "127.0.0.1:1"], &[("CAPACTOR_TOKEN", bad)]);
    assert!(!ok);
    assert!(
        stderr.contains("CAPACTOR_TOKEN is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn tls_name_without_a_root_or_a_pin_is_refused_rather_than_sent_in_clear() {
    let (ok, stderr) = run(
        &["info", "127.0.0.1:1", "--tls-name", "worker.example"],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("--tls-ca") || stderr.contains("tls_trust"),
        "{stderr}"
    );
}

#[test]
fn every_limit_is_a_worker_flag_and_a_worker_serves_with_them_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "limits-test-token-16+\n").unwrap();
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--vats",
        "1",
        "--token-file",
        file.to_str().unwrap(),
        "--max-connections",
        "64",
        "--max-unauthenticated",
        "16",
        "--max-unauthenticated-per-address",
        "8",
        "--gate-failures-per-second",
        "5",
        "--max-message-size",
        "4MiB",
        "--max-nesting",
        "32",
        "--max-calls-in-flight",
        "16",
        "--connection-memory",
        "8MiB",
        "--max-outgoing",
        "16MiB",
        "--write-stall-timeout",
        "20s",
        "--call-deadline",
        "30s",
        "--idle-timeout",
        "2m",
        "--keepalive",
        "10s",
        "--handshake-timeout",
        "2s",
    ]));
    let addr = worker.listening_addr(LIMIT);
    let (ok, stderr) = run(
        &["info", &addr, "--token-file", file.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{stderr}");
    worker.signal_term();
    assert!(worker.wait(LIMIT).success());

    let (ok, stderr) = run(&["worker", "--max-message-size", "12 parsecs"], &[]);
    assert!(!ok);
    assert!(stderr.contains("unknown size unit"), "{stderr}");
}

#[test]
fn a_worker_refuses_to_start_when_its_connections_exceed_the_open_file_limit() {
    let (ok, stderr) = run(
        &[
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--max-connections",
            "1000000000",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("open files"), "{stderr}");
}
