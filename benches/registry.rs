//! The fleet registry under a fleet's load, and a cluster collective.
//!
//! ```text
//! cargo bench --bench registry
//! REGISTRY_WORKERS=200 REGISTRY_SECS=2 cargo bench --bench registry   # a smoke run
//! ```
//!
//! 1. `REGISTRY_WORKERS` (1,000) workers, each on its own virtual
//!    connection, report their health once a second, staggered: the
//!    registry's CPU (its vat thread's CPU time over `REGISTRY_SECS`, 5 s)
//!    as a fraction of one core.
//! 2. `Registry.status()` with those workers: median and p90 of 50 calls,
//!    client-side (encode, transfer, decode included).
//! 3. Time from a worker's last report to the registry's `unhealthy`
//!    event, with a TTL of 1 s (3 runs).
//! 4. `Pool::all_reduce(Sum)` of one 1M-element f32 tensor per worker over
//!    4 virtual workers, read back, against the same sum done locally with
//!    ndarray.
//!
//! Ends with a `targets` section of PASS/MISS lines.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
use capactor::actors::tensor::{Array, Quota, TensorWorker, Worker};
use capactor::fleet::{Change, Cluster, Health, Reach, Reduce, Registration, RegistryClient};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{Connection, Runtime};
use ndarray::ArrayD;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time of the runtime's vat 0, read on that thread.
async fn vat_cpu(rt: &Runtime) -> Duration {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.run_on_vat(0, move || {
        let _ = tx.send(thread_cpu());
    });
    rx.await.expect("vat answered")
}

fn registry(rt: &Runtime, state: &Arc<RegistryState>) -> RegistryClient {
    let s = state.clone();
    RegistryClient::from_connection(rt.spawn_virtual(move || Registry::new("registry", s.clone())))
}

fn health(i: usize) -> Health {
    Health {
        calls_in_flight: (i % 7) as u32,
        calls_per_second: i as f64,
        live_objects: i as u64,
        live_bytes: 1 << 20,
        quota_used: 1 << 20,
        quota_limit: 1 << 30,
        load: (i % 7) as f64,
        uptime: Duration::from_secs(60),
    }
}

struct Figures {
    workers: usize,
    cpu_fraction: f64,
    status_median_ms: f64,
    status_p90_ms: f64,
    notice_ms: Vec<f64>,
    ttl: Duration,
    reduce_ms: f64,
    local_ms: f64,
}

async fn fleet_load(rt: &Runtime, workers: usize, secs: u64) -> (f64, f64, f64) {
    let state = RegistryState::new(RegistryOptions::default());
    let mut clients = Vec::with_capacity(workers);
    let setup = Instant::now();
    for i in 0..workers {
        let c = registry(rt, &state);
        let lease = c
            .register(
                &Registration::new(
                    format!("worker-{i:04}"),
                    "tensor-worker",
                    format!("10.0.{}.{}:7001", i / 250, i % 250 + 1),
                ),
                None,
            )
            .await
            .expect("register");
        clients.push((c, Rc::new(lease)));
    }
    println!(
        "1. {workers} workers registered over {workers} virtual connections in {:.2} s",
        setup.elapsed().as_secs_f64()
    );
    let reports = Rc::new(Cell::new(0u64));
    let stop = tokio_util::sync::CancellationToken::new();
    for (i, (_, lease)) in clients.iter().enumerate() {
        let (lease, reports, stop) = (lease.clone(), reports.clone(), stop.clone());
        let offset = Duration::from_micros((i as u64 * 1_000_000) / workers as u64);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if lease.report(&health(i)).await.is_ok() {
                    reports.set(reports.get() + 1);
                }
            }
        });
    }
    // Warm up a second, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu0, wall0, reports0) = (vat_cpu(rt).await, Instant::now(), reports.get());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (cpu1, wall1, reports1) = (vat_cpu(rt).await, Instant::now(), reports.get());
    let fraction = (cpu1 - cpu0).as_secs_f64() / (wall1 - wall0).as_secs_f64();
    println!(
        "   {} reports in {:.2} s ({:.0}/s); registry vat CPU {:.3} s = {:.1}% of a core",
        reports1 - reports0,
        (wall1 - wall0).as_secs_f64(),
        (reports1 - reports0) as f64 / (wall1 - wall0).as_secs_f64(),
        (cpu1 - cpu0).as_secs_f64(),
        fraction * 100.0
    );
    assert_eq!(
        state.status().totals.healthy as usize,
        workers,
        "every worker healthy"
    );

    // 2. status() with the fleet still reporting.
    let asker = registry(rt, &state);
    let mut times = Vec::new();
    for _ in 0..55 {
        let t = Instant::now();
        let s = asker.status().await.expect("status");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(s.workers.len(), workers);
    }
    times.drain(..5);
    times.sort_by(f64::total_cmp);
    let (median, p90) = (times[times.len() / 2], times[times.len() * 9 / 10]);
    println!(
        "2. status() with {workers} workers: median {median:.2} ms, p90 {p90:.2} ms (50 calls)"
    );
    stop.cancel();
    (fraction, median, p90)
}

async fn notice(rt: &Runtime, ttl: Duration) -> Vec<f64> {
    let mut opts = RegistryOptions::default();
    opts.ttl = ttl;
    let state = RegistryState::new(opts);
    let watcher = registry(rt, &state);
    let mut watch = watcher.watch(64).await.expect("watch");
    watch.next().await;
    let mut out = Vec::new();
    for run in 0..3 {
        let c = registry(rt, &state);
        let lease = c
            .register(
                &Registration::new(format!("dead-{run}"), "k", "10.0.0.1:7001"),
                None,
            )
            .await
            .expect("register");
        // Its last report: acknowledged once status shows it.
        lease.report(&health(run)).await.expect("report");
        while state
            .status()
            .workers
            .iter()
            .all(|w| w.health.live_objects != run as u64 || w.name != format!("dead-{run}"))
        {
            tokio::task::yield_now().await;
        }
        let last = Instant::now();
        loop {
            match watch.next().await.expect("watch").change {
                Change::HealthChanged(w) if !w.healthy => break,
                _ => {}
            }
        }
        out.push(last.elapsed().as_secs_f64() * 1e3);
        drop(lease);
    }
    println!(
        "3. a silent worker marked unhealthy {} ms after its last report (TTL {} ms)",
        out.iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        ttl.as_millis()
    );
    out
}

async fn collective(rt: &Runtime) -> (f64, f64) {
    const N: usize = 1 << 20;
    let state = RegistryState::new(RegistryOptions::default());
    let reg = registry(rt, &state);
    let mut conns: Vec<Connection<tensor_worker::Client>> = Vec::new();
    let mut clients = HashMap::new();
    let mut leases = Vec::new();
    for i in 0..4 {
        let name = format!("w{i}");
        let n = name.clone();
        let conn: Connection<tensor_worker::Client> =
            rt.spawn_virtual(move || TensorWorker::new(n.clone(), Quota::new(1 << 30)));
        clients.insert(name.clone(), conn.client().clone());
        conns.push(conn);
        leases.push(
            reg.register(
                &Registration::new(&name, "tensor-worker", format!("in-process:{name}")),
                None,
            )
            .await
            .expect("register"),
        );
    }
    let clients = Rc::new(clients);
    let cluster = Cluster::new(reg.clone(), move |w| {
        let c = clients.get(&w.name).cloned();
        Box::pin(async move {
            Ok(Reach {
                worker: Worker::new(c.expect("known worker")),
                connection: None,
            })
        })
    });
    let pool = cluster.pool("tensor-worker", 4).await.expect("pool");
    let arrays: Vec<ArrayD<f32>> = (0..4)
        .map(|k| ArrayD::from_shape_fn(vec![N], |i| (i[0] % 97) as f32 * (k + 1) as f32))
        .collect();
    // Each worker holds its own tensor, as after a local step.
    let base = pool
        .scatter(&Array::F32(ArrayD::zeros(vec![4])), 0)
        .expect("scatter");
    let mine = base.map(|i, t| {
        let local = t.worker().from_array(&Array::F32(arrays[i].clone()));
        local
    });
    for t in mine.shards() {
        t.shape().await.expect("uploaded");
    }
    let mut reduce_times = Vec::new();
    let mut result = None;
    for _ in 0..5 {
        let t = Instant::now();
        let sum = pool.all_reduce(&mine, Reduce::Sum).expect("all_reduce");
        for s in sum.shards() {
            s.shape().await.expect("reduced");
        }
        let back = sum.shards()[3].to_array().await.expect("read");
        reduce_times.push(t.elapsed().as_secs_f64() * 1e3);
        result = Some(back);
    }
    let mut local_times = Vec::new();
    let mut expected = None;
    for _ in 0..5 {
        let t = Instant::now();
        let mut total = arrays[0].clone();
        for a in &arrays[1..] {
            total += a;
        }
        local_times.push(t.elapsed().as_secs_f64() * 1e3);
        expected = Some(total);
    }
    assert_eq!(
        result,
        Some(Array::F32(expected.unwrap())),
        "all_reduce = local sum"
    );
    reduce_times.sort_by(f64::total_cmp);
    local_times.sort_by(f64::total_cmp);
    let (r, l) = (reduce_times[2], local_times[2]);
    println!(
        "4. all_reduce(sum) of 4 x {N} f32 over 4 virtual workers, every worker given the result and one read back: {r:.1} ms; locally with ndarray: {l:.2} ms ({:.0}x)",
        r / l
    );
    drop(leases);
    (r, l)
}

fn main() {
    let workers = env("REGISTRY_WORKERS", 1000) as usize;
    let secs = env("REGISTRY_SECS", 5);
    println!("capactor registry bench: {workers} workers, {secs} s measured");
    // One vat: the registry and everything it serves is on vat 0, so its
    // thread's CPU time is the registry's.
    let rt = Runtime::builder().vats(1).build().expect("runtime");
    let ttl = Duration::from_secs(1);
    let f = capactor::block_on(async {
        let (cpu_fraction, status_median_ms, status_p90_ms) = fleet_load(&rt, workers, secs).await;
        let notice_ms = notice(&rt, ttl).await;
        let four = Runtime::builder().vats(2).build().expect("runtime");
        let (reduce_ms, local_ms) = collective(&four).await;
        Figures {
            workers,
            cpu_fraction,
            status_median_ms,
            status_p90_ms,
            notice_ms,
            ttl,
            reduce_ms,
            local_ms,
        }
    })
    .unwrap();
    println!("\ntargets");
    check(
        &format!(
            "registry CPU, {} workers at 1 report/s ≤ 10% of a core",
            f.workers
        ),
        f.cpu_fraction <= 0.10,
        format!("{:.1}%", f.cpu_fraction * 100.0),
    );
    check(
        &format!("status() with {} workers ≤ 10 ms", f.workers),
        f.status_median_ms <= 10.0,
        format!(
            "median {:.2} ms, p90 {:.2} ms",
            f.status_median_ms, f.status_p90_ms
        ),
    );
    let worst = f.notice_ms.iter().copied().fold(0.0, f64::max);
    check(
        "dead worker marked unhealthy ≤ TTL + 1 s",
        worst <= (f.ttl + Duration::from_secs(1)).as_secs_f64() * 1e3,
        format!("worst {worst:.0} ms, TTL {} ms", f.ttl.as_millis()),
    );
    println!(
        "  info  all_reduce over 4 workers vs local     {:.1} ms vs {:.2} ms = {:.0}x (the cost of moving 4 MiB tensors between vats)",
        f.reduce_ms,
        f.local_ms,
        f.reduce_ms / f.local_ms
    );
}

fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<52} {numbers}");
}
