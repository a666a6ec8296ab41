//! What a capactor call costs, against the baselines it should approach.
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
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::actor_capnp::actor;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Runtime, ServeOptions};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::{AsyncReadExt, FutureExt};
use tokio_util::compat::TokioAsyncReadCompatExt;

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
// 1a. Raw TCP ping-pong.

fn raw_tcp() -> Figures {
    println!("1. baselines");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = server_thread(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; PING_BYTES];
        // Until the client hangs up.
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
        }
    });

    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [7u8; PING_BYTES];
    let mut ping = |s: &mut TcpStream| {
        s.write_all(&buf).unwrap();
        s.read_exact(&mut buf).unwrap();
    };
    for _ in 0..WARMUP {
        ping(&mut s);
    }
    let cpu = Cpu::now();
    let samples = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            ping(&mut s);
            t.elapsed()
        })
        .collect();
    let rtt = Rtt::of(samples, CpuPerCall::of(&Cpu::now().since(&cpu), SAMPLES));

    // Pipelined: WINDOW pings outstanding, a new one sent per echo read.
    let pipelined = {
        let mut buf = [7u8; PING_BYTES];
        for _ in 0..WINDOW {
            s.write_all(&buf).unwrap();
        }
        let mut run = |d: Duration| {
            let cpu = Cpu::now();
            let start = Instant::now();
            let mut done = 0usize;
            while start.elapsed() < d {
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
                done += 1;
            }
            let rate = done as f64 / start.elapsed().as_secs_f64();
            (rate, CpuPerCall::of(&Cpu::now().since(&cpu), done))
        };
        run(RUN / 5);
        let rate = run(RUN);
        for _ in 0..WINDOW {
            s.read_exact(&mut buf).unwrap();
        }
        rate
    };
    drop(s);
    echo.join().unwrap();

    let f = Figures {
        name: "raw TCP 64 B ping-pong",
        rtt,
        pipelined: pipelined.0,
        pipelined_cpu: pipelined.1,
    };
    report(&f);
    f
}

// ---------------------------------------------------------------------------
// 1b. Stock capnp-rpc.

/// The trivial server of the stock baseline: `ping` and nothing else.
struct Noop;

impl actor::Server for Noop {
    async fn ping(
        self: Rc<Self>,
        _: actor::PingParams,
        _: actor::PingResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }
}

/// A plain capnp-rpc server on its own thread (current-thread runtime and
/// `LocalSet`), serving [`Noop`] as the bootstrap capability.
struct StockServer {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl StockServer {
    fn start(buffered: bool) -> StockServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = server_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio::task::LocalSet::new().block_on(&rt, async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let noop: actor::Client = capnp_rpc::new_client(Noop);
                loop {
                    let stream = tokio::select! {
                        _ = &mut stopped => return,
                        a = listener.accept() => a.unwrap().0,
                    };
                    let network = stock_network(stream, Side::Server, buffered);
                    let system = RpcSystem::new(network, Some(noop.clone().client));
                    tokio::task::spawn_local(system.map(|_| ()));
                }
            });
        });
        StockServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for StockServer {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A two-party network over `stream` for a stock capnp-rpc system, over
/// the bare socket (as capnp-rpc's examples do) or with futures' default
/// 8 KiB `BufReader`/`BufWriter` around it.
fn stock_network(
    stream: tokio::net::TcpStream,
    side: Side,
    buffered: bool,
) -> Box<dyn capnp_rpc::VatNetwork<Side>> {
    stream.set_nodelay(true).unwrap();
    let (r, w) = stream.compat().split();
    if buffered {
        let (r, w) = (
            futures::io::BufReader::new(r),
            futures::io::BufWriter::new(w),
        );
        Box::new(twoparty::VatNetwork::new(r, w, side, Default::default()))
    } else {
        Box::new(twoparty::VatNetwork::new(r, w, side, Default::default()))
    }
}

async fn stock_capnp_rpc(buffered: bool) -> Figures {
    let server = StockServer::start(buffered);
    let stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let mut system = RpcSystem::new(stock_network(stream, Side::Client, buffered), None);
    let noop: actor::Client = system.bootstrap(Side::Server);
    let disconnector = system.get_disconnector();
    let system = tokio::task::spawn_local(system.map(|_| ()));

    let name = if buffered {
        "stock capnp-rpc, BufIO"
    } else {
        "stock capnp-rpc TCP"
    };
    let f = measure(name, &noop).await;

    drop(noop);
    let _ = disconnector.await;
    let _ = system.await;
    drop(server);
    f
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

// ---------------------------------------------------------------------------
// 4. Server scaling over vats.

/// How the bench thread reaches the spinning actors of section 4.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    Tcp,
    Virtual,
}

/// Calls/s of a CPU-bound server on 1 vat and on `n` vats.
struct Scaling {
    reach: &'static str,
    n: usize,
    cores: usize,
    one: Throughput,
    many: Throughput,
}

impl Scaling {
    fn gain(&self) -> f64 {
        self.many.calls_per_s / self.one.calls_per_s
    }

    /// A note for figures measured while the machine was not ours: the
    /// 1-vat run should keep its vat busy, and the `n`-vat run should keep
    /// its vats busy or use every core (vats and client together). Well
    /// short of that, other processes held the cores and the gain says
    /// little about the server.
    fn caveat(&self) -> String {
        let busy = |t: &Throughput, us: Option<f64>| us.map(|us| us * t.calls_per_s / 1e6);
        let Some(one) = busy(&self.one, self.one.vats_us) else {
            return String::new();
        };
        if one < 0.9 {
            return format!(
                " [1-vat run only {:.0}% busy: machine busy, re-run]",
                one * 100.0
            );
        }
        let (Some(vats), Some(client)) = (
            busy(&self.many, self.many.vats_us),
            busy(&self.many, self.many.client_us),
        ) else {
            return String::new();
        };
        let cores = self.cores as f64;
        if vats < 0.9 * self.n as f64 && vats + client < 0.9 * cores {
            return format!(
                " [{}-vat run used only {:.2} of {cores} cores: machine busy, re-run]",
                self.n,
                vats + client
            );
        }
        String::new()
    }

    /// The most the `n`-vat run could have gained over the 1-vat run on
    /// this machine: it spent s µs of vat CPU and c µs of client CPU per
    /// call, all on the same `cores`, so it served at most
    /// cores / (s + c) calls per µs (and at most n times the 1-vat rate).
    fn ceiling(&self) -> Option<f64> {
        let per_call = self.many.vats_us? + self.many.client_us?;
        let most = self.cores as f64 * 1e6 / per_call;
        Some((self.n as f64).min(most / self.one.calls_per_s))
    }
}

/// Setup: [`SCALE_CONNECTIONS`] connections from the bench thread to
/// `Probe` actors on a runtime of 1 vat, then of `n` vats, each call
/// spinning [`SPIN_MICROS`] µs of CPU on its vat. Over TCP the listener
/// deals the connections round-robin over the vats; over virtual,
/// `spawn_virtual` places the actors round-robin: either way every vat gets
/// the same share. [`SCALE_WINDOW`] calls stay in flight on each
/// connection, so a vat never waits for the client.
///
/// The client's work per call is only its side of a round trip (no spin),
/// so the server is the bottleneck. The client still shares the machine's
/// cores, so the CPU each side spends per call is measured and printed, with
/// the gain that left possible ([`Scaling::ceiling`]). Over virtual the
/// client's share is smallest (no kernel TCP on either side), so that ratio
/// is closest to the server's own scaling; over TCP it is what a deployment
/// on one host sees.
async fn vat_scaling(reach: Reach, n: usize, cores: usize) -> Scaling {
    let name = match reach {
        Reach::Tcp => "TCP",
        Reach::Virtual => "virtual",
    };
    let one = spin_rate(reach, 1).await;
    let many = spin_rate(reach, n).await;
    for (vats, t) in [(1, &one), (n, &many)] {
        let us = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
        let busy = |v: Option<f64>, threads: usize| {
            v.map_or("?".into(), |v| {
                format!("{:.0}%", v * t.calls_per_s / 1e4 / threads as f64)
            })
        };
        println!(
            "  {name:<7} {vats} vat{} {:>7.0} calls/s | CPU per call: vats {:>5} µs, client {:>5} µs | \
             vats {:>4} busy, client {:>4}",
            if vats == 1 { " " } else { "s" },
            t.calls_per_s,
            us(t.vats_us),
            us(t.client_us),
            busy(t.vats_us, vats),
            busy(t.client_us, 1),
        );
    }
    let scaling = Scaling {
        reach: name,
        n,
        cores,
        one,
        many,
    };
    print!("  {name:<7} gain {:.2}x", scaling.gain());
    match scaling.ceiling() {
        Some(c) => println!(" (the cores allowed at most {c:.2}x){}", scaling.caveat()),
        None => println!(),
    }
    scaling
}

async fn spin_rate(reach: Reach, vats: usize) -> Throughput {
    let rt = Runtime::builder().vats(vats).build().unwrap();
    let mut server = None;
    let mut conns = Vec::new();
    for _ in 0..SCALE_CONNECTIONS {
        let conn = match reach {
            Reach::Virtual => rt.spawn_virtual::<probe::Client, _, _>(|| Probe::new("spin")),
            Reach::Tcp => {
                if server.is_none() {
                    let s = rt
                        .serve_tcp::<probe::Client, _, _>(
                            "127.0.0.1:0",
                            || Probe::new("spin"),
                            ServeOptions::insecure_loopback(),
                        )
                        .await
                        .unwrap();
                    server = Some(s);
                }
                let addr = server.as_ref().unwrap().local_addr().to_string();
                capactor::connect_tcp::<probe::Client>(&addr, &ConnectOptions::default())
                    .await
                    .unwrap()
            }
        };
        conns.push(conn);
    }
    let spin = |i: usize| {
        let mut req = conns[i].spin_request();
        req.get().set_micros(SPIN_MICROS);
        let reply = req.send().promise;
        async move { reply.await.map(drop) }
    };
    let rate = pipelined(SCALE_CONNECTIONS, SCALE_WINDOW, SCALE_RUN, spin).await;
    drop(conns);
    drop(server);
    drop(rt);
    rate
}

// ---------------------------------------------------------------------------
// 5. Summary.

fn summary(
    raw: &Figures,
    stock: &[Figures],
    capactor: &[Figures],
    scaling: &[Scaling],
    instructions: &Instructions,
) {
    let stock_buffered = &stock[1];
    let stock = &stock[0];
    println!("\nsummary (ratio = figure / baseline; for RTT lower is better, for calls/s higher)");
    println!(
        "  {:<22} {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7}",
        "",
        "RTT µs",
        "x raw",
        "x stock",
        "seq/s",
        "x raw",
        "x stock",
        format!("x{WINDOW}/s"),
        "x raw",
        "x stock"
    );
    for f in [raw, stock, stock_buffered].into_iter().chain(capactor) {
        println!(
            "  {:<22} {:>9.1} {:>7.2} {:>7.2} | {:>9.0} {:>7.2} {:>7.2} | {:>9.0} {:>7.2} {:>7.2}",
            f.name,
            f.rtt.median_us,
            f.rtt.median_us / raw.rtt.median_us,
            f.rtt.median_us / stock.rtt.median_us,
            f.rtt.calls_per_s,
            f.rtt.calls_per_s / raw.rtt.calls_per_s,
            f.rtt.calls_per_s / stock.rtt.calls_per_s,
            f.pipelined,
            f.pipelined / raw.pipelined,
            f.pipelined / stock.pipelined,
        );
    }
    println!(
        "\n  CPU per call, µs       {:>22} | {:>22} | instructions",
        "sequential cli+srv=all",
        format!("x{WINDOW} cli+srv=all")
    );
    for f in [raw, stock, stock_buffered].into_iter().chain(capactor) {
        let us = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
        let cpu = |c: &CpuPerCall| {
            format!(
                "{:>6} {:>6} {:>7}",
                us(c.client_us),
                us(c.server_us),
                us(c.total_us())
            )
        };
        let count = instructions
            .get(f.name)
            .map_or("-".into(), |n| format!("{n:>9.0} per round trip"));
        println!(
            "  {:<22} {:>22} | {:>22} | {count}",
            f.name,
            cpu(&f.rtt.cpu),
            cpu(&f.pipelined_cpu)
        );
    }
    if let Some(why) = &instructions.skipped {
        println!("  (instruction counts: {why})");
    }
    for sc in scaling {
        println!(
            "  spin {SPIN_MICROS} µs, {:<7} 1 vat {:>6.0} calls/s, {} vats {:>6.0} calls/s = {:.2}x{}",
            sc.reach,
            sc.one.calls_per_s,
            sc.n,
            sc.many.calls_per_s,
            sc.gain(),
            sc.ceiling()
                .map_or(String::new(), |c| format!(" (cores allowed {c:.2}x)"))
        );
    }

    let [local, virt, tcp, unix, tcp_metrics, local_metrics] = capactor else {
        unreachable!("local, virtual, TCP, Unix, TCP with metrics, local with metrics")
    };
    println!("\ntargets");
    let tcp_vs_raw = tcp.rtt.median_us / raw.rtt.median_us;
    check(
        "TCP no-op RTT ≤ 1.5× raw TCP ping-pong",
        tcp_vs_raw <= 1.5,
        format!(
            "{:.1} µs vs {:.1} µs = {tcp_vs_raw:.3}x",
            tcp.rtt.median_us, raw.rtt.median_us
        ),
    );
    let metrics_cost = tcp_metrics.rtt.median_us / tcp.rtt.median_us;
    check(
        "TCP RTT with metrics ≤ 1.05× without",
        metrics_cost <= 1.05,
        format!(
            "{:.1} µs vs {:.1} µs = {metrics_cost:.3}x; x{WINDOW} {:.0} vs {:.0} calls/s = {:.3}x",
            tcp_metrics.rtt.median_us,
            tcp.rtt.median_us,
            tcp_metrics.pipelined,
            tcp.pipelined,
            tcp_metrics.pipelined / tcp.pipelined
        ),
    );
    let hook_ns = (local_metrics.rtt.median_us - local.rtt.median_us) * 1e3;
    check(
        "metrics add ≤ 100 ns to a local call",
        hook_ns <= 100.0,
        format!(
            "{:.0} ns vs {:.0} ns = {hook_ns:+.0} ns ({:.3}x)",
            local_metrics.rtt.median_us * 1e3,
            local.rtt.median_us * 1e3,
            local_metrics.rtt.median_us / local.rtt.median_us
        ),
    );
    check(
        "virtual RTT < TCP RTT",
        virt.rtt.median_us < tcp.rtt.median_us,
        format!(
            "{:.1} µs vs {:.1} µs",
            virt.rtt.median_us, tcp.rtt.median_us
        ),
    );
    let cpu = |f: &Figures| f.rtt.cpu.total_us();
    match (cpu(unix), cpu(tcp)) {
        (Some(u), Some(t)) => check(
            "Unix CPU per call ≤ TCP's (sequential, both sides)",
            u <= t,
            format!("{u:.1} µs vs {t:.1} µs = {:.3}x", u / t),
        ),
        _ => println!("  ?     Unix CPU per call ≤ TCP's: no per-thread clock here"),
    }
    if let (Some(u), Some(t)) = (unix.pipelined_cpu.total_us(), tcp.pipelined_cpu.total_us()) {
        check(
            &format!("Unix CPU per call ≤ TCP's (x{WINDOW})"),
            u <= t,
            format!("{u:.1} µs vs {t:.1} µs = {:.3}x", u / t),
        );
    }
    if let (Some(u), Some(t)) = (instructions.get(unix.name), instructions.get(tcp.name)) {
        check(
            "Unix instructions per call ≤ TCP's",
            u <= t,
            format!("{u:.0} vs {t:.0} = {:.3}x", u / t),
        );
    }
    let ratio = unix.pipelined / tcp.pipelined;
    check(
        &format!("Unix x{WINDOW} calls/s ≥ 1.1× TCP's"),
        ratio >= 1.1,
        format!(
            "{:.0} vs {:.0} calls/s = {ratio:.3}x",
            unix.pipelined, tcp.pipelined
        ),
    );
    for sc in scaling {
        let gain = sc.gain();
        check(
            &format!("{} vats ≥ 1.6× 1 vat calls/s ({})", sc.n, sc.reach),
            gain >= 1.6,
            format!(
                "{:.0} vs {:.0} calls/s = {gain:.3}x{}",
                sc.many.calls_per_s,
                sc.one.calls_per_s,
                sc.caveat()
            ),
        );
    }
}

fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<42} {numbers}");
}

// ---------------------------------------------------------------------------
// Instruction counts, under valgrind.

/// Instructions per no-op round trip, by row name.
struct Instructions {
    counts: Vec<(&'static str, f64)>,
    /// Why there are none, if there are none.
    skipped: Option<String>,
}

impl Instructions {
    fn get(&self, name: &str) -> Option<f64> {
        self.counts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }
}

/// The rows counted, by the name the child is told and the row's name.
const COUNTED: [(&str, &str); 4] = [
    ("raw", "raw TCP 64 B ping-pong"),
    ("stock", "stock capnp-rpc TCP"),
    ("tcp", "capactor TCP"),
    ("unix", "capactor Unix"),
];

/// Runs this binary under cachegrind for each counted row, twice, and
/// takes instructions per round trip from the difference.
fn instructions() -> Instructions {
    let none = |why: &str| Instructions {
        counts: Vec::new(),
        skipped: Some(why.into()),
    };
    if std::env::var("RPC_VALGRIND").is_ok_and(|v| v == "0") {
        return none("skipped, RPC_VALGRIND=0");
    }
    let valgrind_runs = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !valgrind_runs {
        return none("valgrind is not installed");
    }
    println!("\ncounting instructions under valgrind ({COUNT_FEW} and {COUNT_MANY} pings per row)");
    let exe = std::env::current_exe().unwrap();
    let run = |what: &str, n: usize| -> Option<f64> {
        let out = std::process::Command::new("valgrind")
            .args([
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
            ])
            .arg(&exe)
            .env(COUNT_ENV, format!("{what}:{n}"))
            .output()
            .ok()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("I   refs:") || l.contains("I refs:"))?;
        line.rsplit(':')
            .next()?
            .trim()
            .replace(',', "")
            .parse()
            .ok()
    };
    let mut counts = Vec::new();
    for (what, name) in COUNTED {
        match (run(what, COUNT_FEW), run(what, COUNT_MANY)) {
            (Some(few), Some(many)) => {
                let per = (many - few) / (COUNT_MANY - COUNT_FEW) as f64;
                println!("  {name:<22} {per:>9.0} instructions per round trip");
                counts.push((name, per));
            }
            _ => println!("  {name:<22} valgrind run failed"),
        }
    }
    Instructions {
        counts,
        skipped: None,
    }
}

/// The child of [`instructions`]: `what:n` says which row to ping n times.
fn count_child(what: &str) {
    let (row, n) = what.split_once(':').expect("row:count");
    let n: usize = n.parse().expect("a count");
    match row {
        "raw" => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let echo = server_thread(move || {
                let (mut s, _) = listener.accept().unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = [0u8; PING_BYTES];
                while s.read_exact(&mut buf).is_ok() {
                    s.write_all(&buf).unwrap();
                }
            });
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [7u8; PING_BYTES];
            for _ in 0..n {
                s.write_all(&buf).unwrap();
                s.read_exact(&mut buf).unwrap();
            }
            drop(s);
            echo.join().unwrap();
        }
        "stock" => capactor::block_on(async {
            let server = StockServer::start(false);
            let stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
            let mut system = RpcSystem::new(stock_network(stream, Side::Client, false), None);
            let noop: actor::Client = system.bootstrap(Side::Server);
            let disconnector = system.get_disconnector();
            let system = tokio::task::spawn_local(system.map(|_| ()));
            for _ in 0..n {
                ping(&noop)().await.unwrap();
            }
            drop(noop);
            let _ = disconnector.await;
            let _ = system.await;
        })
        .unwrap(),
        "tcp" | "unix" => capactor::block_on(async {
            let rt = Runtime::builder().vats(1).build().unwrap();
            let mut opts = ConnectOptions::default();
            // No heartbeat landing in one run and not the other.
            opts.heartbeat = None;
            let (_server, conn) = if row == "tcp" {
                let server = rt
                    .serve::<probe::Client, _, _>(
                        "127.0.0.1:0",
                        || Probe::new("tcp"),
                        ServeOptions::insecure_loopback(),
                    )
                    .await
                    .unwrap();
                let conn: capactor::Connection<probe::Client> =
                    capactor::connect(server.address(), &opts).await.unwrap();
                (Box::new(server) as Box<dyn std::any::Any>, conn)
            } else {
                let (server, _) = serve_unix(&rt).await;
                let conn: capactor::Connection<probe::Client> =
                    capactor::connect(server.0.address(), &opts).await.unwrap();
                (Box::new(server) as Box<dyn std::any::Any>, conn)
            };
            let actor: actor::Client = capactor::cast(conn.client());
            for _ in 0..n {
                ping(&actor)().await.unwrap();
            }
        })
        .unwrap(),
        other => panic!("unknown row {other}"),
    }
}
