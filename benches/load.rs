//! Load test: a real `capactor worker` process under many concurrent
//! clients, each looping a pipelined tensor chain, and the worker's memory
//! before, during and after.
//!
//! Run with `cargo bench --bench load` (200 clients for 30 s, about 40 s in
//! all). A smoke run: `LOAD_CLIENTS=50 LOAD_SECS=5 cargo bench --bench load`,
//! or the same as arguments: `cargo bench --bench load -- --clients 50
//! --secs 5`. `LOAD_THREADS` / `--threads` sets the client threads
//! (default 4); the clients are spread over them, each thread one
//! [`capactor::block_on`] event loop driving its share of the connections.
//!
//! Cargo builds the `capactor` binary for the bench (it is the
//! `CARGO_BIN_EXE_capactor` of this target). The bench starts it on
//! `127.0.0.1:0` with a token file, reads the address from its
//! `listening on <addr>` line, and runs the clients on loopback. Each chain
//! is six calls in one round trip: send a 16x16 f32 matrix `x`,
//! `relu(x @ x + x).sum()`, read the value, compared exactly with the same
//! sum computed here (the entries are small integers, so every step is exact
//! in f32).
//!
//! It prints the chains run, errors (any error or wrong value counts), chain
//! latency p50 / p99 / max, throughput, and the worker's resident memory
//! (`VmRSS` of `/proc/<pid>/status`) at baseline (after start), at its peak
//! under load (sampled every 100 ms, and the kernel's `VmHWM`) and after every
//! client has disconnected (polled for up to [`SETTLE`] until it is back
//! near baseline, from half a second after the worker has freed every
//! tensor), each as a ratio to baseline. It checks the worker frees every
//! tensor once the clients are gone (asking its `memory`), then sends it
//! SIGTERM and checks it exits cleanly. Targets print PASS or MISS; a miss
//! is reported, not fatal.
//!
//! Before the SIGTERM come the killed-clients waves (`benches/load_wave.rs`;
//! `LOAD_WAVES` / `--waves`, default 3, 0 skips them): per wave, 300 uploads
//! of 8 MiB dropped halfway (`LOAD_DROPPED` / `--dropped`) and 300 clients
//! SIGKILLed while holding a 1 MiB tensor each (`LOAD_KILLED` /
//! `--killed`), then the worker's RSS once it has freed everything, against
//! its RSS before the first wave: it must come back within 1.5x.

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use capactor::actors::tensor::Worker;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::ConnectOptions;
use futures::future::join_all;
use ndarray::Array2;

#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/raw.rs"]
mod raw;
#[path = "load_wave.rs"]
mod wave;
use process::{WorkerProcess, BIN};

/// Longest one chain may take before it counts as an error.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on starting the worker and on connecting.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the bench waits for the worker to free its tensors and its
/// memory to come back down, after the clients have left.
const SETTLE: Duration = Duration::from_secs(10);
/// How long after the tensors are freed RSS is first read.
const SETTLE_FIRST: Duration = Duration::from_millis(500);
/// How often the worker's RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// "Back near baseline": at most this much above it, or [`NEAR_RATIO`]
/// times it.
const NEAR_SLACK_KIB: u64 = 20 << 10;
const NEAR_RATIO: f64 = 1.5;
/// Errors quoted in the report (the rest are only counted).
const QUOTED_ERRORS: usize = 5;

/// What to run.
#[derive(Debug)]
struct Config {
    clients: usize,
    secs: u64,
    threads: usize,
    wave: wave::WaveConfig,
}

impl Config {
    /// From `LOAD_CLIENTS`, `LOAD_SECS`, `LOAD_THREADS`, then the same as
    /// `--clients`, `--secs`, `--threads` arguments (cargo's own `--bench`
    /// argument is ignored).
    fn from_env_and_args() -> Config {
        let env = |name: &str, default: u64| {
            std::env::var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
            })
        };
        let mut c = Config {
            clients: env("LOAD_CLIENTS", 200) as usize,
            secs: env("LOAD_SECS", 30),
            threads: env("LOAD_THREADS", 4) as usize,
            wave: wave::WaveConfig {
                waves: env("LOAD_WAVES", 3) as usize,
                dropped: env("LOAD_DROPPED", 300) as usize,
                killed: env("LOAD_KILLED", 300) as usize,
                upload_mib: env("LOAD_UPLOAD_MIB", 8) as usize,
                hold_kib: env("LOAD_HOLD_KIB", 1024) as usize,
            },
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> u64 {
                let v = args
                    .next()
                    .unwrap_or_else(|| panic!("{name} needs a value"));
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
            };
            match arg.as_str() {
                "--clients" => c.clients = value("--clients") as usize,
                "--secs" => c.secs = value("--secs"),
                "--threads" => c.threads = value("--threads") as usize,
                "--waves" => c.wave.waves = value("--waves") as usize,
                "--dropped" => c.wave.dropped = value("--dropped") as usize,
                "--killed" => c.wave.killed = value("--killed") as usize,
                "--bench" => {}
                other => panic!(
                    "unknown argument {other:?} (expected --clients, --secs, --threads, \
                     --waves, --dropped, --killed)"
                ),
            }
        }
        c.clients = c.clients.max(1);
        c.threads = c.threads.clamp(1, c.clients);
        c
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hold") {
        return wave::hold_main(&args[2..]);
    }
    let config = Config::from_env_and_args();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    println!(
        "capactor load bench: {} clients on {} client threads for {} s, \
         against a `capactor worker` process on loopback ({cores} cores)",
        config.clients, config.threads, config.secs
    );
    println!(
        "chain: send 16x16 f32 x, relu(x @ x + x).sum(), read; 6 calls, 1 round trip, \
         result checked exactly\n"
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let token_file = dir.path().join("token");
    let token = format!("load-{:016x}", rand::random::<u64>());
    std::fs::write(&token_file, format!("{token}\n")).expect("writing the token file");

    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--name".as_ref(),
        "load".as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
    ]));
    let addr = worker.listening_addr(START_TIMEOUT);
    let pid = worker.child.id();
    let baseline = rss_kib(pid).expect("reading the worker's VmRSS");
    println!(
        "worker pid {pid} listening on {addr}; baseline RSS {}",
        mib(baseline)
    );

    // Samples the worker's RSS until the load is over.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampling.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Acquire) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                thread::sleep(SAMPLE_EVERY);
            }
            peak
        })
    };

    let token_text = token.clone();
    let mut opts = ConnectOptions::default();
    opts.token = token.into_bytes();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.secs);
    let threads: Vec<_> = (0..config.threads)
        .map(|t| {
            // Clients t, t + threads, t + 2 * threads, ...
            let clients: Vec<usize> = (t..config.clients).step_by(config.threads).collect();
            let addr = addr.clone();
            let opts = opts.clone();
            thread::Builder::new()
                .name(format!("load-client-{t}"))
                .spawn(move || {
                    capactor::block_on(client_thread(addr, opts, clients, deadline)).unwrap()
                })
                .expect("starting a client thread")
        })
        .collect();
    let mut stats = Stats::default();
    for t in threads {
        stats.merge(t.join().expect("a client thread panicked"));
    }
    let elapsed = started.elapsed();
    stop_sampling.store(true, Ordering::Release);
    let sampled_peak = sampler.join().unwrap();
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let peak = sampled_peak.max(rss_kib(pid).unwrap_or(0));

    // Every client connection is closed now (its thread's event loop is
    // gone). Once the worker has seen them go (it holds no tensor any
    // more), give it a bounded while to hand memory back.
    let left = Instant::now();
    let held = capactor::block_on(tensors_freed(&addr, &opts)).unwrap();
    let freed_in = left.elapsed();
    thread::sleep(SETTLE_FIRST);
    let near =
        |rss: u64| rss <= baseline + NEAR_SLACK_KIB || rss as f64 <= baseline as f64 * NEAR_RATIO;
    let mut after = rss_kib(pid).unwrap_or(0);
    while !near(after) && left.elapsed() < SETTLE {
        thread::sleep(SAMPLE_EVERY);
        after = rss_kib(pid).unwrap_or(0);
    }
    let after_in = left.elapsed();

    // The killed-clients waves, against the worker as the load left it.
    let wave_baseline = rss_kib(pid).unwrap_or(0);
    let near_wave = |rss: u64| rss as f64 <= wave_baseline as f64 * NEAR_RATIO;
    let waves = wave::run(config.wave, &addr, &token_text, || {
        let left = Instant::now();
        let held = capactor::block_on(tensors_freed(&addr, &opts)).unwrap();
        thread::sleep(SETTLE_FIRST);
        let mut after = rss_kib(pid).unwrap_or(0);
        while !near_wave(after) && left.elapsed() < SETTLE {
            thread::sleep(SAMPLE_EVERY);
            after = rss_kib(pid).unwrap_or(0);
        }
        wave::WaveResult {
            after_kib: after,
            settled_in: left.elapsed(),
            held,
        }
    });

    worker.signal_term();
    let exit = worker.wait(START_TIMEOUT);

    stats.latencies_us.sort_unstable();
    let at = |q: f64| {
        let l = &stats.latencies_us;
        if l.is_empty() {
            return 0.0;
        }
        f64::from(l[((l.len() - 1) as f64 * q).round() as usize]) / 1000.0
    };
    let completed = stats.latencies_us.len() as u64;
    println!("\nresults");
    println!(
        "  chains       {} run, {} right, {} errors ({} wrong values), in {:.1} s",
        completed + stats.errors,
        completed - stats.wrong,
        stats.errors + stats.wrong,
        stats.wrong,
        elapsed.as_secs_f64()
    );
    for e in &stats.quoted {
        println!("    error: {e}");
    }
    println!(
        "  latency      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "  throughput   {:.0} chains/s = {:.0} calls/s",
        completed as f64 / elapsed.as_secs_f64(),
        6.0 * completed as f64 / elapsed.as_secs_f64()
    );
    println!("  worker RSS   baseline {}", mib(baseline));
    println!(
        "               peak     {} = {:.2}x baseline (sampled every {} ms; VmHWM {} = {:.2}x)",
        mib(peak),
        ratio(peak, baseline),
        SAMPLE_EVERY.as_millis(),
        mib(hwm),
        ratio(hwm, baseline)
    );
    println!(
        "               after    {} = {:.2}x baseline, {:+.1} MiB (read {:.1} s after the \
         clients left)",
        mib(after),
        ratio(after, baseline),
        (after as f64 - baseline as f64) / 1024.0,
        after_in.as_secs_f64()
    );
    match &held {
        Ok(0) => println!(
            "  tensors      all freed by the worker {:.2} s after the clients left",
            freed_in.as_secs_f64()
        ),
        Ok(b) => println!(
            "  tensors      {b} bytes still held by the worker {:.1} s after the clients left",
            freed_in.as_secs_f64()
        ),
        Err(e) => println!("  tensors      could not ask the worker: {e}"),
    }
    if !waves.is_empty() {
        println!("  waves        {}", wave::describe(&config.wave));
        println!(
            "               before   {} (the worker after the load)",
            mib(wave_baseline)
        );
        for (i, w) in waves.iter().enumerate() {
            let held = match &w.held {
                Ok(0) => "every tensor freed".to_string(),
                Ok(b) => format!("{b} tensor bytes still held"),
                Err(e) => format!("could not ask the worker: {e}"),
            };
            println!(
                "               wave {}   {} = {:.2}x before, {:.2}x start baseline \
                 (read {:.1} s after; {held})",
                i + 1,
                mib(w.after_kib),
                ratio(w.after_kib, wave_baseline),
                ratio(w.after_kib, baseline),
                w.settled_in.as_secs_f64()
            );
        }
    }
    println!("  exit         {exit} after SIGTERM");

    println!("\ntargets");
    check(
        "zero errors",
        stats.errors + stats.wrong == 0 && completed > 0,
        format!(
            "{} errors in {} chains",
            stats.errors + stats.wrong,
            completed + stats.errors
        ),
    );
    check(
        "RSS back near baseline",
        near(after),
        format!(
            "{} after vs {} baseline (≤ +{} MiB or ≤ {NEAR_RATIO}x)",
            mib(after),
            mib(baseline),
            NEAR_SLACK_KIB >> 10
        ),
    );
    check(
        "every tensor freed",
        held.as_ref().is_ok_and(|&b| b == 0),
        match &held {
            Ok(b) => format!("{b} bytes held"),
            Err(e) => e.clone(),
        },
    );
    if let Some(last) = waves.last() {
        check(
            "RSS after killed clients",
            near_wave(last.after_kib),
            format!(
                "{} after {} waves vs {} before (≤ {NEAR_RATIO}x)",
                mib(last.after_kib),
                waves.len(),
                mib(wave_baseline)
            ),
        );
        check(
            "tensors freed after waves",
            waves.iter().all(|w| w.held.as_ref().is_ok_and(|&b| b == 0)),
            format!("{} waves", waves.len()),
        );
    }
    check("clean exit on SIGTERM", exit.success(), exit.to_string());
    println!(
        "\nbench took {:.1} s; load average before {}, after {} (other work on the machine \
         skews every figure)",
        started.elapsed().as_secs_f64(),
        load_before,
        load_average()
    );
}

/// What one client thread measured.
#[derive(Debug, Default)]
struct Stats {
    /// Round-trip time of every chain that returned a value, in µs.
    latencies_us: Vec<u32>,
    /// Chains that failed (errors and timeouts), and connections that
    /// could not be made.
    errors: u64,
    /// Chains that returned a value other than the expected one.
    wrong: u64,
    /// The first few errors, as text.
    quoted: Vec<String>,
}

impl Stats {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.quoted.len() < QUOTED_ERRORS {
            self.quoted.push(e);
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.wrong += other.wrong;
        for q in other.quoted {
            if self.quoted.len() < QUOTED_ERRORS {
                self.quoted.push(q);
            }
        }
    }
}

/// Connects `clients` and loops chains on each until `deadline`.
async fn client_thread(
    addr: String,
    opts: ConnectOptions,
    clients: Vec<usize>,
    deadline: Instant,
) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let loops = clients.into_iter().map(|index| {
        let stats = stats.clone();
        let addr = addr.clone();
        let opts = opts.clone();
        async move {
            let connecting = capactor::connect_tcp::<tensor_worker::Client>(&addr, &opts);
            let conn = match tokio::time::timeout(START_TIMEOUT, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return stats.borrow_mut().error(format!("connect: {e}")),
                Err(_) => return stats.borrow_mut().error("connect: timed out".into()),
            };
            let w = Worker::new(conn.client().clone());
            let mut round = 0u64;
            while Instant::now() < deadline {
                let seed = (index as u64) * 1_000_003 + round;
                round += 1;
                let a = input(seed);
                let t = Instant::now();
                let got = tokio::time::timeout(CHAIN_TIMEOUT, chain(&w, &a)).await;
                let took = t.elapsed();
                let mut s = stats.borrow_mut();
                match got {
                    Ok(Ok(v)) => {
                        s.latencies_us
                            .push(took.as_micros().min(u32::MAX as u128) as u32);
                        if v != expected(&a) {
                            s.wrong += 1;
                            if s.quoted.len() < QUOTED_ERRORS {
                                s.quoted.push(format!(
                                    "seed {seed}: got {v}, expected {}",
                                    expected(&a)
                                ));
                            }
                        }
                    }
                    Ok(Err(e)) => s.error(format!("{:?}: {e}", e.kind())),
                    Err(_) => s.error(format!("chain took longer than {CHAIN_TIMEOUT:?}")),
                }
            }
            drop(conn);
        }
    });
    join_all(loops).await;
    Rc::try_unwrap(stats).unwrap().into_inner()
}

/// Six calls, one round trip: send, matmul, add, relu, sum, read.
async fn chain(w: &Worker, a: &Array2<f32>) -> capactor::Result<f64> {
    let x = w.tensor(a);
    x.matmul(&x).add(&x).relu().sum().item().await
}

/// A 16x16 matrix of small integers (so every result is exact in f32).
fn input(seed: u64) -> Array2<f32> {
    Array2::from_shape_fn((16, 16), |(i, j)| {
        ((seed as usize + 7 * i + 3 * j) % 9) as f32 - 4.0
    })
}

fn expected(a: &Array2<f32>) -> f64 {
    f64::from((a.dot(a) + a).mapv(|v| v.max(0.0)).sum())
}

/// Asks the worker, over a fresh connection, for the tensor bytes it
/// holds until that is 0 or [`SETTLE`] has passed; the last answer.
async fn tensors_freed(addr: &str, opts: &ConnectOptions) -> Result<u64, String> {
    let start = Instant::now();
    let conn = tokio::time::timeout(
        START_TIMEOUT,
        capactor::connect_tcp::<tensor_worker::Client>(addr, opts),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let w = Worker::new(conn.client().clone());
    loop {
        let used = match tokio::time::timeout(START_TIMEOUT, w.memory()).await {
            Ok(m) => m.map_err(|e| e.to_string())?.used,
            Err(_) => return Err("asking timed out".into()),
        };
        if used == 0 || start.elapsed() >= SETTLE {
            return Ok(used);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// The resident set size of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ratio(kib: u64, baseline: u64) -> f64 {
    kib as f64 / baseline.max(1) as f64
}

/// The 1-minute load average, or "?" off Linux.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<26} {numbers}");
}
