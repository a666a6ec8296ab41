//! The fleet from the command line: `capactor registry`, workers that
//! `--join` it and `--trust` its tokens, `capactor status`, `capactor
//! token` and `capactor health`.

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> std::process::Output {
    WorkerProcess::spawn(Command::new(BIN).args(args)).output(LIMIT)
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `capactor status` until its table satisfies `cond` (the registry
/// changes as workers come and go); fails after `LIMIT`.
fn status_until(registry: &str, token: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = run(&["status", registry, "--token-file", token]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        if cond(&stdout) {
            return stdout;
        }
        assert!(Instant::now() < deadline, "status never matched:\n{stdout}");
    }
}

#[test]
fn workers_join_a_cli_registry_trust_its_tokens_and_leave_when_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(path("registry.token"), "registry-token-0123456789abcdef\n").unwrap();
    std::fs::write(path("admin.token"), "admin-token-0123456789abcdef\n").unwrap();
    let mut registry = WorkerProcess::spawn(Command::new(BIN).args([
        "registry",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        &path("registry.token"),
        "--admin-token-file",
        &path("admin.token"),
        "--key-file",
        &path("registry.key"),
        "--public-key-file",
        &path("registry.pub"),
        "--ttl",
        "2s",
        "--report-interval",
        "200ms",
    ]));
    let raddr = registry.listening_addr(LIMIT);
    let worker = |name: &str, trust: &[&str]| {
        let mut args = vec![
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--name",
            name,
            "--vats",
            "1",
            "--join",
            &raddr,
            "--registry-token-file",
        ];
        let rt = path("registry.token");
        args.push(&rt);
        args.extend_from_slice(&["--label", "zone=a"]);
        args.extend_from_slice(trust);
        WorkerProcess::spawn(Command::new(BIN).args(&args))
    };
    let key_file = path("registry.pub");
    let mut w1 = worker("w1", &["--trust", &raddr]);
    let w1_addr = w1.listening_addr(LIMIT);
    let mut w2 = worker("w2", &["--trust-key", &key_file]);
    let w2_addr = w2.listening_addr(LIMIT);
    let table = status_until(&raddr, &path("registry.token"), |t| {
        t.contains("w1") && t.contains("w2")
    });
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains(&w1_addr) && table.contains("tensor-worker"),
        "{table}"
    );
    assert!(table.contains("2 workers, 2 healthy"), "{table}");

    // A token for w1 only opens w1.
    let out = run(&[
        "token",
        "--registry",
        &raddr,
        "--subject",
        "ci",
        "--ttl",
        "1h",
        "--audience",
        "w1",
        "--admin-token-file",
        &path("admin.token"),
        "--token-file",
        &path("registry.token"),
    ]);
    let (token, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(token.starts_with("v4.public."), "{token}");
    std::fs::write(path("ci.token"), &token).unwrap();
    let out = run(&["info", &w1_addr, "--token-file", &path("ci.token")]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("w1"));
    let out = run(&["info", &w2_addr, "--token-file", &path("ci.token")]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("credential rejected"),
        "{}",
        text(&out).1
    );
    // The registry's own gate takes its tokens too; only the admin token
    // gets one issued.
    let out = run(&["health", &w1_addr, "--token-file", &path("ci.token")]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(&[
        "token",
        "--registry",
        &raddr,
        "--subject",
        "x",
        "--admin-token-file",
        &path("registry.token"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("credential rejected"),
        "{}",
        text(&out).1
    );
    let out = run(&["health", "127.0.0.1:1", "--timeout", "1s"]);
    assert!(!out.status.success());

    // A killed worker's lease goes with its connection.
    w2.child.kill().unwrap();
    w2.wait(LIMIT);
    let table = status_until(&raddr, &path("registry.token"), |t| !t.contains("w2"));
    assert!(table.contains("1 workers, 1 healthy"), "{table}");

    // A restarted registry (same port, same key file) sees w1 register
    // again, and w1's tokens stay valid.
    registry.signal_term();
    registry.wait(LIMIT);
    let mut registry = WorkerProcess::spawn(Command::new(BIN).args([
        "registry",
        "--listen",
        &raddr,
        "--token-file",
        &path("registry.token"),
        "--key-file",
        &path("registry.key"),
    ]));
    registry.listening_addr(LIMIT);
    status_until(&raddr, &path("registry.token"), |t| t.contains("w1"));
    let out = run(&["info", &w1_addr, "--token-file", &path("ci.token")]);
    assert!(out.status.success(), "{}", text(&out).1);
    w1.signal_term();
    assert!(w1.wait(LIMIT).success());
    status_until(&raddr, &path("registry.token"), |t| t.contains("0 workers"));
}
