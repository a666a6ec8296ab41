//! `capactor health ADDR`: exit 0 when the actor opens its gate and answers
//! a ping, non-zero with the reason otherwise (what readiness probes run).

use std::process::{Command, Output};
use std::time::Duration;

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(20);

fn run(args: &[&str]) -> Output {
    WorkerProcess::spawn(Command::new(BIN).args(args)).output(LIMIT)
}

#[test]
fn health_passes_for_a_serving_worker_and_fails_clearly_otherwise() {
    let mut w = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--vats",
        "1",
    ]));
    let addr = w.listening_addr(LIMIT);
    let token = w.wait_for_stderr(LIMIT, |stderr| {
        let rest = stderr.split("token written to ").nth(1)?;
        Some(rest.split_once('\n')?.0.trim().to_string())
    });

    let ok = run(&["health", &addr, "--token-file", &token]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(stdout.trim(), format!("{addr} is serving"));

    // The token from the environment works the same.
    let secret = std::fs::read_to_string(&token).unwrap();
    let env = WorkerProcess::spawn(
        Command::new(BIN)
            .args(["health", &addr])
            .env("CAPACTOR_TOKEN", secret.trim()),
    )
    .output(LIMIT);
    assert!(
        env.status.success(),
        "{}",
        String::from_utf8_lossy(&env.stderr)
    );

    // A wrong token: not serving *us*, and it says why.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token-but-long-enough\n").unwrap();
    let refused = run(&["health", &addr, "--token-file", wrong.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("{addr} is not serving")),
        "{stderr}"
    );
    assert!(stderr.contains("credential rejected"), "{stderr}");

    // Nothing listening: fails at once, naming the address.
    let port = addr.rsplit(':').next().unwrap().to_string();
    w.signal_term();
    assert!(w.wait(LIMIT).success());
    // (The worker removed its generated token file as it exited.)
    let down = WorkerProcess::spawn(
        Command::new(BIN)
            .args(["health", &format!("127.0.0.1:{port}")])
            .env("CAPACTOR_TOKEN", secret.trim()),
    )
    .output(LIMIT);
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("is not serving"), "{stderr}");
}

#[test]
fn health_gives_up_after_its_timeout_on_a_peer_that_never_answers() {
    // A listener that accepts and never speaks: the probe must not hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let out = run(&[
        "health",
        &addr,
        "--timeout",
        "300ms",
        "--token-file",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // /dev/null is an empty token file: refused before connecting.
    assert!(stderr.contains("is empty"), "{stderr}");
    let hung = WorkerProcess::spawn(
        Command::new(BIN)
            .args(["health", &addr, "--timeout", "300ms"])
            .env("CAPACTOR_TOKEN", "some-token-of-16-bytes"),
    )
    .output(LIMIT);
    assert_eq!(hung.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&hung.stderr);
    assert!(stderr.contains("did not answer within 300ms"), "{stderr}");
    assert!(started.elapsed() < LIMIT);
    drop(silent);
}
