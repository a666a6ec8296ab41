//! What a capactor call costs, against the baselines it should approach.
//!
//! This file holds sections 2 and 3 and the shared measuring; the
//! baselines, vat scaling, the summary and the instruction counts have a
//! file each under `benches/rpc/`.
//!
//! Run with `cargo bench --bench rpc` (the run itself takes about 10 s;
//! every figure comes from the same run, on loopback).
//!
//! It measures and prints:
//!
//! 1. Baselines: a raw TCP 64-byte ping-pong (blocking std sockets,
//!    `TCP_NODELAY`, echo server on a thread) and a stock capnp-rpc no-op
//!    call (`RpcSystem` + `twoparty::VatNetwork` over an unbuffered
//!    `TcpStream`, as capnp-rpc's examples do, server on its own thread
//!    with its own runtime). The same stock system with `BufReader` /
//!    `BufWriter` is shown too: capactor buffers, so that row isolates what
//!    capactor adds on top of capnp-rpc.
//! 2. The round trip of a no-op capactor call (`Actor.ping` on a
//!    [`Probe`]) over the local, virtual, TCP and Unix socket transports,
//!    and over TCP to a server recording call metrics
//!    (`ServeOptions::metrics`).
//! 3. Calls per second over the same transports, one call at a time and
//!    with [`WINDOW`] calls in flight.
//! 4. Calls per second of a server doing real work per call
//!    (`Probe.spin(50 µs)`) on 1 vat and on N vats (N = cores, at least 2),
//!    reached over virtual and over TCP, with the CPU each side spent.
//! 5. A summary: every figure as a ratio to raw TCP and to stock
//!    capnp-rpc, the CPU each call cost both sides (client thread and
//!    server threads, from Linux's per-thread clock), the instructions per
//!    no-op round trip when `valgrind` is installed, and the targets
//!    PASS/MISS (a miss is reported, not fatal).
//!
//! On a shared machine a single round trip is dominated by thread
//! wake-ups; CPU per call and calls/s with many in flight are the figures
//! that compare implementations. Instruction counts run this binary under
//! `valgrind --tool=cachegrind` (both sides, every thread) for
//! [`COUNT_FEW`] and [`COUNT_MANY`] pings and take the difference, so setup
//! cancels out; `RPC_VALGRIND=0` skips them.
//!
//! Round trips are medians of [`SAMPLES`] calls after [`WARMUP`] untimed
//! ones. capactor connections use the default `ConnectOptions` (heartbeat
//! every 5 s: at most one ping lands inside a measurement) and the TCP
//! server the default `ServeOptions` (so every call carries the 5-minute
//! call deadline timer users get). On a shared machine other work skews
//! every figure: the load average is printed with the results.

use std::future::Future;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::actor_capnp::actor;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Runtime, ServeOptions};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

#[path = "rpc/baselines.rs"]
mod baselines;
#[path = "rpc/instructions.rs"]
mod instructions;
#[path = "rpc/scaling.rs"]
mod scaling;
#[path = "rpc/summary.rs"]
mod summary;

use baselines::{raw_tcp, stock_capnp_rpc};
use instructions::{count_child, instructions};
use scaling::{vat_scaling, Reach};
use summary::summary;

/// Timed round trips per latency figure.
const SAMPLES: usize = 2000;
/// Untimed round trips before them.
const WARMUP: usize = 200;
/// Calls kept in flight for the pipelined throughput figures.
const WINDOW: usize = 64;
/// How long each throughput figure runs (after a warm-up of a fifth of it).
const RUN: Duration = Duration::from_millis(500);
/// Alternating rounds of TCP, TCP with metrics and Unix.
const ROUNDS: usize = 3;
/// Bytes per raw TCP ping.
const PING_BYTES: usize = 64;
/// Round trips of the two instruction-counting runs.
const COUNT_FEW: usize = 200;
const COUNT_MANY: usize = 1200;
/// Set in the instruction-counting child: which transport, and how many
/// pings.
const COUNT_ENV: &str = "CAPACTOR_RPC_COUNT";
/// The name of the baselines' server threads, so their CPU is counted
/// like the vats'.
const SERVER_THREAD: &str = "bench-server";

/// Section 4: client connections, calls in flight on each, work per call.
const SCALE_CONNECTIONS: usize = 8;
const SCALE_WINDOW: usize = 8;
const SPIN_MICROS: u32 = 50;
const SCALE_RUN: Duration = Duration::from_secs(1);

fn main() {
    if let Ok(what) = std::env::var(COUNT_ENV) {
        return count_child(&what);
    }
    let started = Instant::now();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    println!("capactor rpc bench: {cores} cores, loopback TCP");
    println!(
        "round trips: median (and p90) of {SAMPLES} sequential calls after {WARMUP} warm-up; \
         sequential calls/s = {SAMPLES} / their total time"
    );
    println!(
        "pipelined calls/s: {WINDOW} calls in flight for {} ms after {} ms warm-up\n",
        RUN.as_millis(),
        RUN.as_millis() / 5
    );

    let raw = raw_tcp();
    let stock =
        [false, true].map(|buffered| capactor::block_on(stock_capnp_rpc(buffered)).unwrap());
    let capactor = capactor::block_on(capactor_transports()).unwrap();
    println!(
        "4. vat scaling: Probe.spin({SPIN_MICROS} µs), {SCALE_CONNECTIONS} connections x \
         {SCALE_WINDOW} calls in flight, {} ms timed after {} ms warm-up",
        SCALE_RUN.as_millis(),
        SCALE_RUN.as_millis() / 5
    );
    let scaling = [Reach::Virtual, Reach::Tcp]
        .map(|reach| capactor::block_on(vat_scaling(reach, cores.max(2), cores)).unwrap());

    let instructions = instructions();
    summary(&raw, &stock, &capactor, &scaling, &instructions);
    println!(
        "\nbench took {:.1} s; load average before {}, after {} (other work on the machine skews every figure)",
        started.elapsed().as_secs_f64(),
        load_before,
        load_average()
    );
}

/// The 1-minute load average, or "?" off Linux.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Latency and throughput of one way of making a call.
struct Figures {
    name: &'static str,
    rtt: Rtt,
    pipelined: f64,
    pipelined_cpu: CpuPerCall,
}

/// Round-trip statistics of [`SAMPLES`] sequential calls.
#[derive(Clone, Copy)]
struct Rtt {
    median_us: f64,
    p90_us: f64,
    calls_per_s: f64,
    /// On-CPU time per call of the client and the server threads.
    cpu: CpuPerCall,
}

/// On-CPU µs per call of the client thread and of the server's threads
/// (vats, or a baseline's server thread); `None` without schedstat.
#[derive(Clone, Copy, Default)]
struct CpuPerCall {
    client_us: Option<f64>,
    server_us: Option<f64>,
}

impl CpuPerCall {
    fn of(used: &Cpu, calls: usize) -> CpuPerCall {
        let per_call = |t: Option<Duration>| t.map(|t| t.as_secs_f64() * 1e6 / calls as f64);
        CpuPerCall {
            client_us: per_call(used.client),
            server_us: per_call(used.vats),
        }
    }

    fn total_us(&self) -> Option<f64> {
        Some(self.client_us? + self.server_us?)
    }

    fn show(&self) -> String {
        let us = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
        format!(
            "{} + {} = {} µs",
            us(self.client_us),
            us(self.server_us),
            us(self.total_us())
        )
    }
}

impl Rtt {
    fn of(mut samples: Vec<Duration>, cpu: CpuPerCall) -> Rtt {
        let total: Duration = samples.iter().sum();
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        Rtt {
            median_us: at(0.5),
            p90_us: at(0.9),
            calls_per_s: samples.len() as f64 / total.as_secs_f64(),
            cpu,
        }
    }
}

fn report(f: &Figures) {
    println!(
        "  {:<22} rtt median {:>7.1} µs  p90 {:>7.1} µs | {:>9.0} calls/s sequential | {:>9.0} calls/s x{WINDOW}",
        f.name, f.rtt.median_us, f.rtt.p90_us, f.rtt.calls_per_s, f.pipelined
    );
    println!(
        "  {:<22} CPU per call (client + server): sequential {}, x{WINDOW} {}",
        "",
        f.rtt.cpu.show(),
        f.pipelined_cpu.show()
    );
}

// ---------------------------------------------------------------------------
// 2 and 3. capactor over each transport.

async fn capactor_transports() -> [Figures; 6] {
    println!("2-3. capactor Actor.ping (Probe), server on 1 vat thread");
    let rt = Runtime::builder().vats(1).build().unwrap();

    let p: probe::Client = capactor::spawn_local(Probe::new("local"));
    let local = measure("capactor local", &capactor::cast(&p)).await;
    drop(p);
    // The same local call through a guard that times it into metrics:
    // what the hook itself costs, without a network's noise around it.
    let metrics = capactor::metrics::Metrics::new();
    let calls = capactor::call::ActorCalls::with_metrics(None, Some(&metrics));
    let guard = capactor::call::Guard::new(calls, None, None, None);
    let p: probe::Client = guard.client_from_rc(Rc::new(Probe::new("local")));
    let local_metrics = measure("capactor local+metrics", &capactor::cast(&p)).await;
    drop(p);

    let conn = rt.spawn_virtual::<probe::Client, _, _>(|| Probe::new("virtual"));
    let virt = measure("capactor virtual", &capactor::cast(conn.client())).await;
    drop(conn);

    // TCP, TCP to a server timing every call into metrics, and a Unix
    // socket, measured in alternating rounds (best of each), so that the
    // machine's other work skews them alike.
    let mut with_metrics = ServeOptions::insecure_loopback();
    with_metrics.metrics = Some(capactor::metrics::Metrics::new());
    let mut servers = Vec::new();
    let mut conns = Vec::new();
    for opts in [ServeOptions::insecure_loopback(), with_metrics] {
        let server = rt
            .serve_tcp::<probe::Client, _, _>("127.0.0.1:0", || Probe::new("tcp"), opts)
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let conn = capactor::connect_tcp::<probe::Client>(&addr, &ConnectOptions::default())
            .await
            .unwrap();
        servers.push(server);
        conns.push(conn);
    }
    let (unix_server, unix_conn) = serve_unix(&rt).await;
    let (mut tcp, mut tcp_metrics, mut unix) = (None, None, None);
    for _ in 0..ROUNDS {
        let plain = measure_quiet("capactor TCP", &capactor::cast(conns[0].client())).await;
        tcp = Some(best(tcp, plain));
        let timed = measure_quiet("capactor TCP+metrics", &capactor::cast(conns[1].client())).await;
        tcp_metrics = Some(best(tcp_metrics, timed));
        let local = measure_quiet("capactor Unix", &capactor::cast(unix_conn.client())).await;
        unix = Some(best(unix, local));
    }
    let (tcp, tcp_metrics, unix) = (tcp.unwrap(), tcp_metrics.unwrap(), unix.unwrap());
    report(&tcp);
    report(&tcp_metrics);
    report(&unix);
    drop(conns);
    drop(servers);
    drop(unix_conn);
    drop(unix_server);
    drop(rt);
    [local, virt, tcp, unix, tcp_metrics, local_metrics]
}

/// A probe served on a Unix socket in a fresh directory (removed with the
/// server), and a connection to it.
async fn serve_unix(
    rt: &Runtime,
) -> (
    (capactor::UnixServer, tempfile::TempDir),
    capactor::Connection<probe::Client>,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = rt
        .serve_unix::<probe::Client, _, _>(
            dir.path().join("probe.sock"),
            || Probe::new("unix"),
            ServeOptions::insecure_loopback(),
        )
        .await
        .unwrap();
    let conn = capactor::connect(server.address(), &ConnectOptions::default())
        .await
        .unwrap();
    ((server, dir), conn)
}

async fn measure(name: &'static str, actor: &actor::Client) -> Figures {
    let f = measure_quiet(name, actor).await;
    report(&f);
    f
}

async fn measure_quiet(name: &'static str, actor: &actor::Client) -> Figures {
    let rtt = rtt(ping(actor)).await;
    let pipe = pipelined(1, WINDOW, RUN, |_| ping(actor)()).await;
    Figures {
        name,
        rtt,
        pipelined: pipe.calls_per_s,
        pipelined_cpu: CpuPerCall {
            client_us: pipe.client_us,
            server_us: pipe.vats_us,
        },
    }
}

/// The better of two measurements of the same thing: the lower round
/// trip, the higher throughput (each with the CPU of its own run).
fn best(a: Option<Figures>, b: Figures) -> Figures {
    let Some(a) = a else { return b };
    let (pipelined, pipelined_cpu) = if a.pipelined >= b.pipelined {
        (a.pipelined, a.pipelined_cpu)
    } else {
        (b.pipelined, b.pipelined_cpu)
    };
    Figures {
        name: b.name,
        rtt: if a.rtt.median_us <= b.rtt.median_us {
            a.rtt
        } else {
            b.rtt
        },
        pipelined,
        pipelined_cpu,
    }
}

/// Runs `f` on a thread whose CPU the bench counts as the server's.
fn server_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(SERVER_THREAD.into())
        .spawn(f)
        .unwrap()
}

/// A function that makes one `Actor.ping` call.
fn ping(actor: &actor::Client) -> impl Fn() -> capnp::capability::Promise<(), capnp::Error> + '_ {
    || {
        let reply = actor.ping_request().send().promise;
        capnp::capability::Promise::from_future(async move { reply.await.map(drop) })
    }
}

/// Round trips of sequential calls made by `call`.
async fn rtt<F, Fut>(call: F) -> Rtt
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), capnp::Error>>,
{
    for _ in 0..WARMUP {
        call().await.unwrap();
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    let cpu = Cpu::now();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        call().await.unwrap();
        samples.push(t.elapsed());
    }
    Rtt::of(samples, CpuPerCall::of(&Cpu::now().since(&cpu), SAMPLES))
}

/// What a pipelined run measured.
struct Throughput {
    calls_per_s: f64,
    /// On-CPU time per call of the bench (client) thread and of all vat
    /// threads, in µs; `None` where Linux's schedstat is unavailable.
    client_us: Option<f64>,
    vats_us: Option<f64>,
}

/// Calls per second with `window` calls in flight on each of `streams`
/// targets: `call(i)` makes one call on target `i`, and every completion is
/// replaced at once by a new call on the same target. Runs a fifth of `run`
/// as warm-up, then `run` timed.
async fn pipelined<F, Fut>(streams: usize, window: usize, run: Duration, call: F) -> Throughput
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), capnp::Error>>,
{
    let issue = |i: usize| call(i).map(move |r| r.map(|()| i));
    let mut in_flight = FuturesUnordered::new();
    for i in 0..streams {
        for _ in 0..window {
            in_flight.push(issue(i));
        }
    }
    let mut timed = None;
    for d in [run / 5, run] {
        let cpu = Cpu::now();
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < d {
            let i = in_flight.next().await.unwrap().unwrap();
            done += 1;
            in_flight.push(issue(i));
        }
        let elapsed = start.elapsed();
        let used = Cpu::now().since(&cpu);
        let per_call = |t: Option<Duration>| t.map(|t| t.as_secs_f64() * 1e6 / done as f64);
        timed = Some(Throughput {
            calls_per_s: done as f64 / elapsed.as_secs_f64(),
            client_us: per_call(used.client),
            vats_us: per_call(used.vats),
        });
    }
    while let Some(r) = in_flight.next().await {
        r.unwrap();
    }
    timed.expect("ran")
}

/// On-CPU time so far of the calling thread and of this process's server
/// threads (vats, and the baselines' servers), from Linux's
/// `/proc/.../schedstat` (the per-thread clock, nanosecond resolution).
struct Cpu {
    client: Option<Duration>,
    vats: Option<Duration>,
}

impl Cpu {
    fn now() -> Cpu {
        let vats = std::fs::read_dir("/proc/self/task").ok().map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| {
                        c.starts_with("capactor-vat") || c.starts_with(SERVER_THREAD)
                    })
                })
                .filter_map(|t| on_cpu(&t.path().join("schedstat")))
                .sum()
        });
        Cpu {
            client: on_cpu(std::path::Path::new("/proc/thread-self/schedstat")),
            vats,
        }
    }

    fn since(&self, earlier: &Cpu) -> Cpu {
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Cpu {
            client: diff(self.client, earlier.client),
            vats: diff(self.vats, earlier.vats),
        }
    }
}

fn on_cpu(schedstat: &std::path::Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(schedstat).ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}
