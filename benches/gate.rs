//! Gate bench: how many authenticated connections a `capactor worker`
//! process holds, and what each costs it in memory.
//!
//! ```text
//! cargo bench --bench gate                  # 10,000 connections
//! CAPACTOR_GATE_CONNS=2000 cargo bench --bench gate
//! ```
//!
//! Starts the worker binary with `--max-connections` set to the count,
//! opens that many connections from this process (each authenticated and
//! pinged once, heartbeats off), pings every one of them again, and reads
//! the worker's RSS from `/proc`. The baseline is the same worker's RSS
//! before any connection, and the cost of the first tenth of them is shown
//! beside the cost of all, so a per-connection figure that grows with the
//! count shows. Ends with one PASS/MISS line per target.

use std::process::Command;
use std::time::{Duration, Instant};

use capactor::schema::actor_capnp::actor;
use capactor::{ConnectOptions, Connection};

#[path = "../tests/common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections opened at once.
const BATCH: usize = 200;
/// The target: RSS per authenticated connection.
const TARGET_KIB_PER_CONNECTION: f64 = 32.0;

fn main() {
    let n: usize = std::env::var("CAPACTOR_GATE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // This process holds one descriptor per connection too.
    let fds = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    println!("capactor gate bench: {n} authenticated connections to a `capactor worker` process on loopback (open-file limit here {fds})\n");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let token_file = dir.path().join("token");
    let token = format!("gate-bench-{:016x}", rand::random::<u64>());
    std::fs::write(&token_file, format!("{token}\n")).expect("writing the token file");
    let max = n.to_string();
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--vats".as_ref(),
        "1".as_ref(),
        "--max-connections".as_ref(),
        max.as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
    ]));
    let addr = worker.listening_addr(START_TIMEOUT);
    let pid = worker.child.id();
    let baseline = rss_kib(pid).expect("reading the worker's VmRSS");
    println!("worker pid {pid} on {addr}; baseline RSS {baseline} KiB");

    let mut opts = ConnectOptions::default();
    opts.token = token.into_bytes();
    opts.heartbeat = None;
    let (first_tenth, all, served, took) = capactor::block_on(async {
        let started = Instant::now();
        let mut conns: Vec<Connection<actor::Client>> = Vec::with_capacity(n);
        let mut first_tenth = None;
        while conns.len() < n {
            let batch = BATCH.min(n - conns.len());
            let opening = (0..batch).map(|_| async {
                let c: Connection<actor::Client> = capactor::connect_tcp(&addr, &opts)
                    .await
                    .expect("connecting");
                c.ping_request().send().promise.await.expect("ping");
                c
            });
            conns.extend(futures::future::join_all(opening).await);
            if first_tenth.is_none() && conns.len() >= n / 10 {
                first_tenth = Some((conns.len(), rss_kib(pid).unwrap_or(0)));
            }
        }
        let took = started.elapsed();
        let all = rss_kib(pid).unwrap_or(0);
        // Every one of them is still served.
        let mut served = 0;
        for chunk in conns.chunks(BATCH) {
            let pings = chunk.iter().map(|c| c.ping_request().send().promise);
            served += futures::future::join_all(pings)
                .await
                .iter()
                .filter(|r| r.is_ok())
                .count();
        }
        (first_tenth.unwrap_or((n, all)), all, served, took)
    })
    .unwrap();

    let per = |count: usize, rss: u64| rss.saturating_sub(baseline) as f64 / count.max(1) as f64;
    let (tenth_n, tenth_rss) = first_tenth;
    let tenth = per(tenth_n, tenth_rss);
    let each = per(n, all);
    println!("opened and authenticated {n} connections in {took:.2?}");
    println!("  {tenth_n:>6} connections: RSS {tenth_rss} KiB, {tenth:.1} KiB each over baseline");
    println!(
        "  {n:>6} connections: RSS {all} KiB, {each:.1} KiB each over baseline ({:.2}x the first tenth's)",
        each / tenth.max(0.001)
    );
    println!("  {served} of {n} answered a second ping");

    worker.signal_term();
    let status = worker.wait(START_TIMEOUT);

    println!("\ntargets");
    check(
        "connections served",
        served == n && status.success(),
        format!("{served} of {n} (worker exit {status})"),
    );
    check(
        "RSS per connection",
        each < TARGET_KIB_PER_CONNECTION,
        format!("{each:.1} KiB < {TARGET_KIB_PER_CONNECTION} KiB"),
    );
}

/// The resident set size of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<22} {numbers}");
}
