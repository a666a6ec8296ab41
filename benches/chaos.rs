//! Chaos bench: reconnecting clients against a worker process that is
//! SIGKILLed and restarted, then a thousand clients killed mid-call and
//! mid-transfer against one worker.
//!
//! Run with `cargo bench --bench chaos` (100 clients for 60 s, the worker
//! killed every 10 s, then 1,000 killed clients; a few minutes in all). A
//! smoke run: `CHAOS_CLIENTS=20 CHAOS_SECS=12 CHAOS_KILL_EVERY=4
//! CHAOS_KILLED=100 cargo bench --bench chaos`.
//!
//! **Part 1, kills.** A `capactor worker` process (the
//! `CARGO_BIN_EXE_capactor` of this target) listens on a loopback port.
//! `CHAOS_CLIENTS` clients (default 100), spread over `CHAOS_THREADS`
//! client threads (default 4, each one [`capactor::block_on`] loop), each
//! hold one reconnecting connection ([`capactor::Reconnect`], the default
//! back-off capped at 250 ms, calls while down waiting up to 5 s) and loop a
//! pipelined chain (`ones(16).relu().sum()`, read and checked: 4 calls, one
//! round trip) for `CHAOS_SECS` (default 60). Every `CHAOS_KILL_EVERY`
//! seconds (default 10) the harness SIGKILLs the worker, keeps it down for
//! `CHAOS_DOWN_MS` (default 500) and starts it again on the same port. It
//! reports
//!
//! - how long calls take to fail after a kill (every failure after a kill,
//!   measured from the kill or from the call's start if later);
//! - how long each client takes to recover once the worker is back (from
//!   the new worker's `listening on` line to that client's first successful
//!   chain);
//! - calls that neither succeeded nor failed within 30 s (must be 0).
//!
//! **Part 2, killed clients.** A fresh worker (uploads cut midway wait
//! `--resume-secs 1` to be resumed). After a warm-up of clients that do the
//! same work and leave cleanly, its RSS and live objects are the baseline.
//! Then `CHAOS_KILLED` clients (default 1,000), 25 at a time, each hold a
//! tensor, start a `CHAOS_UPLOAD_MIB` MiB (default 5) streamed upload and a
//! 256x256 matmul, and are cut off abruptly 0–20 ms later (their
//! connections dropped: the worker sees what a killed process leaves, a
//! closed socket). Then the worker's live objects (`Actor.info`) and tensor
//! bytes (`TensorWorker.memory`), and its RSS against the baseline.
//!
//! Targets print PASS or MISS; a miss is reported, not fatal.

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use capactor::actors::tensor::{Array, DType, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Connection, Error, Reconnect};
use futures::future::join_all;

#[path = "../tests/common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

/// A call that has neither succeeded nor failed by then counts as hung.
const HANG: Duration = Duration::from_secs(30);
/// How long a worker may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Killed clients cut off at once.
const BATCH: usize = 25;
/// How long the worker has to free everything and give memory back.
const SETTLE: Duration = Duration::from_secs(15);

struct Config {
    clients: usize,
    threads: usize,
    secs: u64,
    kill_every: u64,
    down: Duration,
    killed: usize,
    upload_mib: usize,
}

impl Config {
    fn from_env() -> Config {
        let var = |name: &str, default: u64| -> u64 {
            std::env::var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
            })
        };
        Config {
            clients: var("CHAOS_CLIENTS", 100).max(1) as usize,
            threads: var("CHAOS_THREADS", 4).max(1) as usize,
            secs: var("CHAOS_SECS", 60),
            kill_every: var("CHAOS_KILL_EVERY", 10).max(1),
            down: Duration::from_millis(var("CHAOS_DOWN_MS", 500)),
            killed: var("CHAOS_KILLED", 1000) as usize,
            upload_mib: var("CHAOS_UPLOAD_MIB", 5).max(5) as usize,
        }
    }
}

fn worker(listen: &str, extra: &[&str]) -> WorkerProcess {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "worker",
        "--listen",
        listen,
        "--insecure-no-auth",
        "--name",
        "chaos",
    ]);
    cmd.args(extra);
    WorkerProcess::spawn(&mut cmd)
}

fn main() {
    let config = Config::from_env();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "capactor chaos bench: {} reconnecting clients on {} threads for {} s, the worker \
         SIGKILLed every {} s and restarted {} ms later on the same port; then {} clients \
         killed mid-call and mid-transfer ({cores} cores, load {})\n",
        config.clients,
        config.threads,
        config.secs,
        config.kill_every,
        config.down.as_millis(),
        config.killed,
        load_average()
    );
    let kills = part_one(&config);
    let killed = part_two(&config);

    println!("\ntargets");
    check(
        "pending calls fail ≤ 1 s",
        kills.fail_max <= Duration::from_secs(1),
        format!(
            "max {:?} after a kill ({} failures)",
            kills.fail_max, kills.failures
        ),
    );
    check(
        "clients back ≤ 1 s",
        kills.recover_max <= Duration::from_secs(1) && kills.not_recovered == 0,
        format!(
            "max {:?} after the worker was back; {} client-restarts without recovery",
            kills.recover_max, kills.not_recovered
        ),
    );
    check(
        "0 calls hang",
        kills.hung == 0,
        format!("{} hung", kills.hung),
    );
    check(
        "0 wrong answers",
        kills.wrong == 0,
        format!("{} wrong or unexpected errors", kills.wrong),
    );
    if let Some(k) = killed {
        check(
            "RSS within 10% after kills",
            k.after_kib as f64 <= k.baseline_kib as f64 * 1.10,
            format!(
                "{} after vs {} baseline = {:.3}x",
                mib(k.after_kib),
                mib(k.baseline_kib),
                k.after_kib as f64 / k.baseline_kib.max(1) as f64
            ),
        );
        check(
            "0 live objects left",
            k.live == Some(0) && k.bytes == Some(0),
            format!("{:?} live objects, {:?} tensor bytes", k.live, k.bytes),
        );
    }
}

/// One chain's outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Wrong,
    Hung,
}

struct Call {
    client: usize,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

#[derive(Default)]
struct Kills {
    failures: usize,
    fail_max: Duration,
    recover_max: Duration,
    not_recovered: usize,
    hung: usize,
    wrong: usize,
}

fn part_one(config: &Config) -> Kills {
    let mut current = worker("127.0.0.1:0", &[]);
    let addr = current.listening_addr(START_TIMEOUT);
    println!("part 1: worker on {addr}");

    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.secs);
    let quoted = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..config.threads)
        .map(|t| {
            let clients: Vec<usize> = (t..config.clients).step_by(config.threads).collect();
            let addr = addr.clone();
            let quoted = quoted.clone();
            thread::Builder::new()
                .name(format!("chaos-client-{t}"))
                .spawn(move || {
                    capactor::block_on(client_thread(addr, clients, deadline, quoted)).unwrap()
                })
                .expect("starting a client thread")
        })
        .collect();

    // The kills: (killed at, back at).
    let mut kills: Vec<(Instant, Instant)> = Vec::new();
    let every = Duration::from_secs(config.kill_every);
    let mut next = started + every;
    while next + config.down < deadline {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let killed = Instant::now();
        current.child.kill().expect("SIGKILL");
        current.wait(START_TIMEOUT);
        thread::sleep(config.down);
        current = worker(&addr, &[]);
        assert_eq!(
            current.listening_addr(START_TIMEOUT),
            addr,
            "restarted on the same port"
        );
        kills.push((killed, Instant::now()));
        next += every;
    }
    let mut calls: Vec<Call> = Vec::new();
    for t in threads {
        calls.extend(t.join().expect("a client thread panicked"));
    }
    current.child.kill().ok();
    let elapsed = started.elapsed();

    let mut k = Kills::default();
    let (mut fails, mut recoveries) = (Vec::new(), Vec::new());
    for (i, &(killed, back)) in kills.iter().enumerate() {
        let until = kills.get(i + 1).map_or(deadline + HANG, |n| n.0);
        for c in calls.iter().filter(|c| c.outcome == Outcome::Failed) {
            if c.end >= killed && c.end < until {
                fails.push(c.end - c.start.max(killed));
            }
        }
        for client in 0..config.clients {
            let first = calls
                .iter()
                .filter(|c| {
                    c.client == client && c.outcome == Outcome::Ok && c.end >= back && c.end < until
                })
                .map(|c| c.end)
                .min();
            match first {
                Some(t) => recoveries.push(t - back),
                None if until < deadline => k.not_recovered += 1,
                None => {}
            }
        }
    }
    fails.sort_unstable();
    recoveries.sort_unstable();
    k.failures = fails.len();
    k.fail_max = fails.last().copied().unwrap_or_default();
    k.recover_max = recoveries.last().copied().unwrap_or_default();
    k.hung = calls.iter().filter(|c| c.outcome == Outcome::Hung).count();
    k.wrong = calls.iter().filter(|c| c.outcome == Outcome::Wrong).count();
    let ok = calls.iter().filter(|c| c.outcome == Outcome::Ok).count();
    println!("\npart 1 results");
    println!(
        "  chains       {} run in {:.1} s: {ok} right, {} failed, {} wrong, {} hung ({:.0} chains/s)",
        calls.len(),
        elapsed.as_secs_f64(),
        k.failures,
        k.wrong,
        k.hung,
        ok as f64 / elapsed.as_secs_f64()
    );
    println!("  kills        {}", kills.len());
    println!(
        "  failing      after a kill: p50 {:?}  p99 {:?}  max {:?} ({} calls)",
        quantile(&fails, 0.5),
        quantile(&fails, 0.99),
        k.fail_max,
        fails.len()
    );
    println!(
        "  recovering   after the worker is back: p50 {:?}  p99 {:?}  max {:?} ({} client-restarts, {} without recovery)",
        quantile(&recoveries, 0.5),
        quantile(&recoveries, 0.99),
        k.recover_max,
        recoveries.len(),
        k.not_recovered
    );
    for q in quoted.lock().unwrap().iter() {
        println!("    seen: {q}");
    }
    k
}

async fn client_thread(
    addr: String,
    clients: Vec<usize>,
    deadline: Instant,
    quoted: Arc<Mutex<Vec<String>>>,
) -> Vec<Call> {
    let mut policy = Reconnect::default();
    policy.max_elapsed = None;
    let mut opts = ConnectOptions::default();
    opts.reconnect = Some(policy);
    let calls = Rc::new(RefCell::new(Vec::new()));
    let runs =
        clients.into_iter().map(|client| {
            let (addr, opts, calls, quoted) =
                (addr.clone(), opts.clone(), calls.clone(), quoted.clone());
            async move {
                let conn: Connection<tensor_worker::Client> =
                    match tokio::time::timeout(START_TIMEOUT, capactor::connect_tcp(&addr, &opts))
                        .await
                    {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => panic!("client {client}: {e}"),
                        Err(_) => panic!("client {client}: connecting timed out"),
                    };
                let w = Worker::new(conn.client().clone());
                while Instant::now() < deadline {
                    let start = Instant::now();
                    let sum = w.ones(DType::F32, &[16]).relu().sum();
                    let outcome = match tokio::time::timeout(HANG, sum.item()).await {
                        Ok(Ok(16.0)) => Outcome::Ok,
                        Ok(Ok(v)) => {
                            quote(&quoted, format!("wrong value {v}"));
                            Outcome::Wrong
                        }
                        Ok(Err(e)) => {
                            let wire: capnp::Error = e.into();
                            if wire.kind == capnp::ErrorKind::Disconnected {
                                sample(&quoted, &wire.extra);
                                Outcome::Failed
                            } else {
                                quote(&quoted, wire.to_string());
                                Outcome::Wrong
                            }
                        }
                        Err(_) => Outcome::Hung,
                    };
                    calls.borrow_mut().push(Call {
                        client,
                        start,
                        end: Instant::now(),
                        outcome,
                    });
                }
            }
        });
    join_all(runs).await;
    Rc::try_unwrap(calls)
        .ok()
        .expect("every client is done")
        .into_inner()
}

/// Keeps the first few distinct kinds of failure (their text up to the
/// first parenthesis or digit), to show what clients saw.
fn sample(quoted: &Mutex<Vec<String>>, e: &str) {
    let kind: String = e
        .chars()
        .take_while(|c| *c != '(' && !c.is_ascii_digit())
        .collect();
    let line = format!("failure: {kind}");
    let mut q = quoted.lock().unwrap();
    if q.len() < 8 && !q.contains(&line) {
        q.push(line);
    }
}

fn quote(quoted: &Mutex<Vec<String>>, e: String) {
    let mut q = quoted.lock().unwrap();
    if q.len() < 5 {
        q.push(e);
    }
}

struct Killed {
    baseline_kib: u64,
    after_kib: u64,
    live: Option<u64>,
    bytes: Option<u64>,
}

fn part_two(config: &Config) -> Option<Killed> {
    if config.killed == 0 {
        return None;
    }
    let mut w = worker(
        "127.0.0.1:0",
        &["--resume-secs", "1", "--report-worker-totals"],
    );
    let addr = w.listening_addr(START_TIMEOUT);
    let pid = w.child.id();
    let elems = (config.upload_mib << 20) / 4;
    let big = Arc::new(Array::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[elems]))));
    println!("\npart 2: worker pid {pid} on {addr}");

    // Warm-up: the same work, finished cleanly.
    capactor::block_on(async {
        for _ in 0..2 {
            join_all((0..BATCH).map(|_| clean_client(&addr, &big))).await;
        }
    })
    .unwrap();
    let (live0, _) = capactor::block_on(settled(&addr)).unwrap();
    let baseline = rss_kib(pid).unwrap_or(0);
    println!(
        "  baseline     RSS {}, {live0:?} live objects",
        mib(baseline)
    );

    let started = Instant::now();
    capactor::block_on(async {
        let mut left = config.killed;
        while left > 0 {
            let n = left.min(BATCH);
            left -= n;
            join_all((0..n).map(|_| killed_client(&addr, &big))).await;
        }
    })
    .unwrap();
    println!(
        "  killed       {} clients in {:.1} s",
        config.killed,
        started.elapsed().as_secs_f64()
    );
    let left = Instant::now();
    let (live, bytes) = capactor::block_on(settled(&addr)).unwrap();
    let mut after = rss_kib(pid).unwrap_or(0);
    while after as f64 > baseline as f64 * 1.10 && left.elapsed() < SETTLE {
        thread::sleep(Duration::from_millis(100));
        after = rss_kib(pid).unwrap_or(0);
    }
    println!(
        "  after        RSS {} = {:.3}x baseline, {live:?} live objects, {bytes:?} tensor bytes ({:.1} s after the last kill)",
        mib(after),
        after as f64 / baseline.max(1) as f64,
        left.elapsed().as_secs_f64()
    );
    w.child.kill().ok();
    Some(Killed {
        baseline_kib: baseline,
        after_kib: after,
        live,
        bytes,
    })
}

async fn connect(addr: &str) -> capactor::Result<Connection<tensor_worker::Client>> {
    let mut opts = ConnectOptions::default();
    opts.heartbeat = None;
    match tokio::time::timeout(START_TIMEOUT, capactor::connect_tcp(addr, &opts)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Disconnected("connecting timed out".into())),
    }
}

/// Holds a tensor, uploads, multiplies, and leaves cleanly.
async fn clean_client(addr: &str, big: &Arc<Array>) {
    let Ok(conn) = connect(addr).await else {
        return;
    };
    let w = Worker::new(conn.client().clone());
    let held = w.ones(DType::F32, &[1024]);
    let up = w.send_array(big.clone());
    let m = w.ones(DType::F32, &[256, 256]);
    let prod = m.matmul(&m);
    let _ = tokio::time::timeout(HANG, async {
        (held.shape().await, up.shape().await, prod.shape().await)
    })
    .await;
}

/// The same work, cut off 0–20 ms in.
async fn killed_client(addr: &str, big: &Arc<Array>) {
    let Ok(conn) = connect(addr).await else {
        return;
    };
    let w = Worker::new(conn.client().clone());
    let held = w.ones(DType::F32, &[1024]);
    let up = w.send_array(big.clone());
    let m = w.ones(DType::F32, &[256, 256]);
    let prod = m.matmul(&m);
    let shapes = tokio::task::spawn_local(async move {
        let _ = (held.shape().await, up.shape().await, prod.shape().await);
    });
    tokio::time::sleep(Duration::from_micros(rand::random::<u64>() % 20_000)).await;
    conn.link().cut();
    drop(conn);
    let _ = shapes.await;
}

/// Waits (bounded) until the worker holds no live objects and no tensor
/// bytes; the last counts seen.
async fn settled(addr: &str) -> (Option<u64>, Option<u64>) {
    let Ok(conn) = connect(addr).await else {
        return (None, None);
    };
    let w = Worker::new(conn.client().clone());
    let base: capactor::schema::actor_capnp::actor::Client = capactor::cast(conn.client());
    let start = Instant::now();
    loop {
        let live = match base.info_request().send().promise.await {
            Ok(r) => r
                .get()
                .ok()
                .and_then(|r| r.get_info().ok())
                .map(|i| i.get_live_objects()),
            Err(_) => None,
        };
        let bytes = w.memory().await.ok().map(|m| m.used);
        if (live == Some(0) && bytes == Some(0)) || start.elapsed() > SETTLE {
            return (live, bytes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<28} {numbers}");
}
