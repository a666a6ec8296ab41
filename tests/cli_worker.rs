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
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token file is private");

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
    let _ = std::fs::remove_file(&token_file);
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
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
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
            .env("CAPACTOR_TOKEN", "s3cret-token"),
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
