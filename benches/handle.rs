//! What a call through a `Send` [`Handle`] costs, against the same call
//! made on the thread that owns the connection.
//!
//! Run with `cargo bench --bench handle` (about 10 s; `CAPACTOR_BENCH_MS`
//! sets each figure's run time, default 1000).
//!
//! The call is a no-op (`Probe.echo` of 0 bytes) to a virtual probe, and to
//! a TCP probe on 127.0.0.1, both served by another `Runtime` of this
//! process:
//!
//! - **owner**: the client on the calling thread, inside
//!   `capactor::block_on`;
//! - **handle**: a `Handle<probe::Client>` called from the tasks of a
//!   `#[tokio::main]` runtime (one worker thread per core) (the client lives on a vat of
//!   the handle's runtime).
//!
//! For each: calls per second one call at a time and with 64 in flight
//! (64 tasks for the handle, 64 concurrent calls for the owner), and CPU
//! per call, from `getrusage` of the whole process (client, server and the
//! handle's hop together), which is the figure a wake-up-dominated RTT on a
//! shared VM does not blur. Target: the handle's CPU per call ≤ 1.5× the
//! owner's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Handle, Runtime, ServeOptions};
use futures::stream::{FuturesUnordered, StreamExt};

const WINDOW: usize = 64;

fn run_for() -> Duration {
    let ms = std::env::var("CAPACTOR_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

/// CPU seconds this process has used, user and system.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

#[derive(Clone, Copy, Debug)]
struct Figure {
    calls_per_sec: f64,
    cpu_us_per_call: f64,
}

/// Measures `calls` (which runs calls until told to stop and returns how
/// many it made) over `run`.
async fn measure<F, Fut>(run: Duration, calls: F) -> Figure
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    calls(Instant::now() + run / 5).await;
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let n = calls(Instant::now() + run).await;
    let (cpu, secs) = (cpu_secs() - cpu0, t0.elapsed().as_secs_f64());
    Figure {
        calls_per_sec: n as f64 / secs,
        cpu_us_per_call: cpu / n as f64 * 1e6,
    }
}

async fn echo(p: &probe::Client) {
    p.echo_request().send().promise.await.unwrap();
}

/// Calls from the owning thread: one at a time, then `WINDOW` in flight.
async fn owner(p: &probe::Client, run: Duration) -> [Figure; 2] {
    let one = measure(run, |until| async move {
        let mut n = 0;
        while Instant::now() < until {
            echo(p).await;
            n += 1;
        }
        n
    })
    .await;
    let many = measure(run, |until| async move {
        let mut inflight: FuturesUnordered<_> = (0..WINDOW).map(|_| echo(p)).collect();
        let mut n = 0;
        while inflight.next().await.is_some() {
            n += 1;
            if Instant::now() < until {
                inflight.push(echo(p));
            }
        }
        n
    })
    .await;
    [one, many]
}

async fn handle_echo(p: &Handle<probe::Client>) {
    p.run(|p| async move { p.echo_request().send().promise.await.map(drop) })
        .await
        .unwrap()
        .unwrap();
}

/// Calls through a handle from a multi-thread runtime's tasks: one task,
/// then `WINDOW` tasks.
fn through_handle(p: &Handle<probe::Client>, run: Duration) -> [Figure; 2] {
    // What `#[tokio::main]` builds: one worker thread per core.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let tasks = |k: usize| {
            move |until: Instant| {
                let tasks: Vec<_> = (0..k)
                    .map(|_| {
                        let p = p.clone();
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            while Instant::now() < until {
                                handle_echo(&p).await;
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                async move {
                    let mut n = 0;
                    for t in tasks {
                        n += t.await.unwrap();
                    }
                    n
                }
            }
        };
        [
            measure(run, tasks(1)).await,
            measure(run, tasks(WINDOW)).await,
        ]
    })
}

fn main() {
    let run = run_for();
    let server_rt = Arc::new(Runtime::builder().vats(1).build().unwrap());
    let client_rt = Runtime::builder().vats(1).build().unwrap();

    // A TCP probe, served by its own runtime.
    let addr = {
        let rt = server_rt.clone();
        capactor::block_on(async move {
            let server = rt
                .serve_tcp::<probe::Client, _, _>(
                    "127.0.0.1:0",
                    || Probe::new("p"),
                    ServeOptions::insecure_loopback(),
                )
                .await
                .unwrap();
            let addr = server.local_addr().to_string();
            std::mem::forget(server); // served until the process exits
            addr
        })
        .unwrap()
    };

    let mut rows = Vec::new();
    for transport in ["virtual", "tcp"] {
        let owned = capactor::block_on(async {
            let conn: capactor::Connection<probe::Client> = match transport {
                "virtual" => server_rt.spawn_virtual(|| Probe::new("p")),
                _ => capactor::connect_tcp(&addr, &ConnectOptions::default())
                    .await
                    .unwrap(),
            };
            owner(conn.client(), run).await
        })
        .unwrap();
        let handle: Handle<probe::Client> = match transport {
            "virtual" => Handle::spawn_virtual(&client_rt, || Probe::new("p")),
            _ => futures::executor::block_on(Handle::connect_tcp(
                &client_rt,
                &addr,
                &ConnectOptions::default(),
            ))
            .unwrap(),
        };
        let handled = through_handle(&handle, run);
        rows.push((transport, owned, handled));
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("no-op call, owner thread vs Send handle from a multi-thread tokio runtime");
    println!(
        "(load average {})",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!(
        "{:<8} {:<10} {:>14} {:>14} {:>16} {:>16}",
        "link", "from", "calls/s (1)", "calls/s (64)", "cpu µs/call (1)", "cpu µs/call (64)"
    );
    let mut worst: f64 = 0.0;
    for (transport, owned, handled) in &rows {
        for (from, f) in [("owner", owned), ("handle", handled)] {
            println!(
                "{transport:<8} {from:<10} {:>14.0} {:>14.0} {:>16.2} {:>16.2}",
                f[0].calls_per_sec, f[1].calls_per_sec, f[0].cpu_us_per_call, f[1].cpu_us_per_call
            );
        }
        let cpu = [0, 1].map(|i| handled[i].cpu_us_per_call / owned[i].cpu_us_per_call);
        let rate = [0, 1].map(|i| owned[i].calls_per_sec / handled[i].calls_per_sec);
        println!(
            "{transport:<8} {:<10} cpu per call {:.2}x (1) {:.2}x (64); time per call {:.2}x (1) {:.2}x (64)",
            "ratio", cpu[0], cpu[1], rate[0], rate[1]
        );
        worst = worst.max(cpu[0]).max(cpu[1]);
    }
    let verdict = if worst <= 1.5 { "PASS" } else { "MISS" };
    println!("target: handle CPU per call <= 1.5x owner's: worst {worst:.2}x {verdict}");
}
