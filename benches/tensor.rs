//! What pipelining buys a tensor client, and what a remote op costs over
//! computing it locally.
//!
//! Run with `cargo bench --bench tensor` (the run itself takes a few
//! seconds; every figure comes from the same run).
//!
//! It measures and prints:
//!
//! 1. A chain of [`CHAIN_OPS`] dependent ops on a 16x16 f32 tensor already
//!    on a [`TensorWorker`] (cycling `add_scalar`, `mul_scalar`, `relu` and
//!    `matmul` with a fixed 16x16 matrix, then `sum()` and one
//!    `item().await`), over a virtual link with [`LATENCY`] one-way latency:
//!    - *pipelined*: the whole chain is sent at once and the client awaits
//!      only the final `item()`: one round trip in all;
//!    - *awaiting each op*: `.shape().await` after every op, so every op
//!      costs a round trip of its own.
//!
//!    Printed: the median wall time of each, their ratio, and the pipelined
//!    time in nominal round trips (time / 2 x [`LATENCY`]). Targets:
//!    pipelined <= 1.5 nominal round trips + *compute* (the pipelined chain
//!    over a virtual link without latency), and at least 10x faster than
//!    awaiting each op.
//!
//!    For reference it also prints what the link really delays: a tokio
//!    `sleep(LATENCY)` and one lone call on the link. The virtual link
//!    delays each direction with such a sleep, and tokio's timer has 1 ms
//!    ticks and rounds deadlines up, so each direction takes about 1 ms
//!    more than nominal (a real round trip of about 6 ms, not 4). The
//!    pipelined time divided by that lone call shows what pipelining
//!    itself costs, whatever the link's overshoot.
//! 2. The same chain, both ways, over TCP loopback (`Runtime::serve_tcp` +
//!    `capactor::connect_tcp`), and their ratio. No target: on loopback a
//!    round trip costs about as much as the work each call does on the
//!    worker, so the ratio shows what pipelining saves without real latency.
//! 3. A 1024x1024 f32 matmul of two tensors already on the worker: the
//!    time from sending `a.matmul(&b)` to the return of a `.shape()` call
//!    pipelined on its result (which waits until the result exists but does
//!    not transfer it), over a virtual link without latency and over TCP,
//!    against `Array2<f32>::dot` on the client's thread. Target: remote
//!    <= 1.3x local. To show where any excess goes it also times, on the
//!    client: the worker's kernel (`ops::Array::matmul`), the same kernel
//!    run through `spawn_blocking` (the worker offloads ops on more than
//!    64K elements to tokio's blocking pool), and a lone `.shape()` round
//!    trip on each link. Every one of these runs in each repetition, in
//!    turn, so machine noise hits each alike; the minimum is printed next
//!    to each median.
//!    Target (issue 12, kernels on every core): remote <= 0.6x local.
//! 4. A [`BIG_ELEMENTS`]-element f32 elementwise op and sum on the worker
//!    (`x.mul_scalar(2).sum().item()`, `x` already there) against the same
//!    on this thread with ndarray (`x.mapv(|v| v * 2).sum()`), over TCP.
//!    Target: <= 0.6x.
//! 5. The round trip of a call that computes nothing (`.shape()` of a
//!    small tensor) on the same worker and connection, idle and while a
//!    big kernel runs there (a chain of 1024^2 matmuls). The kernels run in
//!    a bounded, lower-priority compute pool, so the vat keeps answering.
//!    Target: busy <= 2x idle.
//! 6. A summary: every target, PASS or MISS (a miss is reported, not
//!    fatal).
//!
//! `CAPACTOR_BENCH_QUICK=1` runs fewer repetitions on smaller tensors: a
//! smoke run whose figures mean little.
//!
//! Every figure is the median of its repetitions, after one untimed
//! warm-up. Results are checked against the same computation done locally
//! with ndarray. On a shared machine other work skews every figure: the
//! load average is printed with the results.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use capactor::actors::tensor::ops::{Array, Unlimited};
use capactor::actors::tensor::{Quota, RemoteTensor, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Connection, LinkConditions, Runtime, ServeOptions, VirtualOptions};
use ndarray::Array2;

/// Dependent ops in the chain (the final `sum` comes on top).
const CHAIN_OPS: usize = 20;
/// Rows and columns of the chain's tensors.
const CHAIN_DIM: usize = 16;
/// One-way latency of the virtual link in section 1.
const LATENCY: Duration = Duration::from_millis(2);
/// Timed repetitions of each pipelined chain.
const PIPELINED_REPS: usize = 15;
/// Timed repetitions of each chain awaiting every op (21 round trips,
/// about 130 ms, each over the slow link).
const AWAITED_REPS: usize = 7;
/// Rows and columns of the matmul operands.
const MATMUL_DIM: usize = 1024;
/// Timed repetitions of each matmul.
const MATMUL_REPS: usize = 9;

/// Section 1 target: pipelined time <= this many nominal round trips +
/// compute.
const TARGET_ROUND_TRIPS: f64 = 1.5;
/// Section 1 target: pipelined at least this many times faster.
const TARGET_SPEEDUP: f64 = 10.0;
/// Section 3 target: remote matmul at most this many times the local one.
const TARGET_MATMUL_RATIO: f64 = 0.6;
/// Elements of section 4's tensor.
const BIG_ELEMENTS: usize = 16 << 20;
/// Section 4 target: remote elementwise op + sum at most this many times
/// the local one.
const TARGET_ELEMENTWISE_RATIO: f64 = 0.6;
/// Section 5 target: a no-op round trip while a kernel runs at most this
/// many times the idle one.
const TARGET_BUSY_RATIO: f64 = 2.0;

/// A smoke run: fewer repetitions, smaller tensors.
fn quick() -> bool {
    std::env::var_os("CAPACTOR_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn main() {
    let started = Instant::now();
    let load_before = load_average();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = Runtime::new().expect("starting the runtime");
    println!(
        "capactor tensor bench: {cores} cores, {} vats, {} compute threads; medians of the \
         timed repetitions after one warm-up\n",
        rt.vat_count(),
        capactor::actors::tensor::ops::compute_threads()
    );

    let (x, m) = chain_inputs();
    let expected = chain_locally(&x, &m);

    let slow = capactor::block_on(chain_over_virtual(&rt, &x, &m, expected)).unwrap();
    let tcp = capactor::block_on(chain_over_tcp(&rt, &x, &m, expected)).unwrap();
    let matmul = capactor::block_on(matmul(&rt)).unwrap();
    let elementwise = capactor::block_on(elementwise(&rt)).unwrap();
    let busy = capactor::block_on(busy_latency(&rt)).unwrap();

    summary(&slow, &tcp, &matmul);
    summary_cores(&elementwise, &busy);
    println!(
        "\nbench took {:.1} s; load average before {load_before}, after {} \
         (other work on the machine skews every figure)",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

// ---------------------------------------------------------------------------
// Measurement helpers.

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Runs `f` once untimed, then `reps` times timed; gives the median and
/// the last result.
async fn time<T, F, Fut>(reps: usize, mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut out = f().await;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        out = f().await;
        samples.push(t.elapsed());
    }
    (median(samples), out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The 1-minute load average, or "?" off Linux.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Deterministic values in `[-scale, scale)` (xorshift).
fn filled(rows: usize, cols: usize, seed: u64, scale: f32) -> Array2<f32> {
    let mut state = seed | 1;
    Array2::from_shape_simple_fn((rows, cols), move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    })
}

fn worker_quota() -> std::sync::Arc<Quota> {
    Quota::new(1 << 30)
}

fn check(what: &str, got: f64, expected: f64) {
    let tolerance = 1e-3 * expected.abs().max(1.0);
    assert!(
        (got - expected).abs() <= tolerance,
        "{what}: worker computed {got}, ndarray {expected}"
    );
}

// ---------------------------------------------------------------------------
// 1 and 2. The chain.

/// The chain's input and its fixed matrix. The matrix's entries are small
/// enough that 20 ops keep the values finite.
fn chain_inputs() -> (Array2<f32>, Array2<f32>) {
    (
        filled(CHAIN_DIM, CHAIN_DIM, 0x2545_F491_4F6C_DD1D, 1.0),
        filled(CHAIN_DIM, CHAIN_DIM, 0x9E37_79B9_7F4A_7C15, 0.25),
    )
}

/// Op `i` of the chain.
fn chain_step(t: &RemoteTensor, m: &RemoteTensor, i: usize) -> RemoteTensor {
    match i % 4 {
        0 => t.add_scalar(0.5f32),
        1 => t.mul_scalar(0.9f32),
        2 => t.relu(),
        _ => t.matmul(m),
    }
}

/// The chain computed with ndarray, for checking.
fn chain_locally(x: &Array2<f32>, m: &Array2<f32>) -> f64 {
    let mut t = x.clone();
    for i in 0..CHAIN_OPS {
        t = match i % 4 {
            0 => t + 0.5,
            1 => t * 0.9,
            2 => t.mapv(|v| v.max(0.0)),
            _ => t.dot(m),
        };
    }
    t.sum() as f64
}

/// Sends the whole chain, awaits only its result.
async fn chain_pipelined(x: &RemoteTensor, m: &RemoteTensor) -> f64 {
    let mut t = x.clone();
    for i in 0..CHAIN_OPS {
        t = chain_step(&t, m, i);
    }
    t.sum().item().await.expect("pipelined chain")
}

/// Awaits every op before sending the next.
async fn chain_awaited(x: &RemoteTensor, m: &RemoteTensor) -> f64 {
    let mut t = x.clone();
    for i in 0..CHAIN_OPS {
        t = chain_step(&t, m, i);
        t.shape().await.expect("awaited chain op");
    }
    t.sum().item().await.expect("awaited chain")
}

/// Uploads the chain's inputs and waits until they are on the worker.
async fn upload(w: &Worker, x: &Array2<f32>, m: &Array2<f32>) -> (RemoteTensor, RemoteTensor) {
    let (x, m) = (w.tensor(x), w.tensor(m));
    x.shape().await.expect("uploading x");
    m.shape().await.expect("uploading m");
    (x, m)
}

/// The two ways of running the chain over one link.
struct Chain {
    pipelined: Duration,
    awaited: Duration,
}

impl Chain {
    async fn measure(w: &Worker, x: &Array2<f32>, m: &Array2<f32>, expected: f64) -> Chain {
        let (x, m) = upload(w, x, m).await;
        let (pipelined, got) = time(PIPELINED_REPS, || chain_pipelined(&x, &m)).await;
        check("pipelined chain", got, expected);
        let (awaited, got) = time(AWAITED_REPS, || chain_awaited(&x, &m)).await;
        check("awaited chain", got, expected);
        Chain { pipelined, awaited }
    }

    fn speedup(&self) -> f64 {
        self.awaited.as_secs_f64() / self.pipelined.as_secs_f64()
    }

    fn print(&self) {
        println!("  pipelined (one await)     {:>8.2} ms", ms(self.pipelined));
        println!("  awaiting each op          {:>8.2} ms", ms(self.awaited));
        println!("  awaiting / pipelined      {:>8.1}x", self.speedup());
    }
}

/// Section 1's figures.
struct SlowLink {
    chain: Chain,
    /// The pipelined chain over a link without latency.
    compute: Duration,
    /// One lone call on the slow link.
    measured_rtt: Duration,
    /// A tokio `sleep(LATENCY)` on the client's thread: what the link's
    /// delay really is.
    sleep: Duration,
}

impl SlowLink {
    fn nominal_rtt() -> Duration {
        LATENCY * 2
    }

    fn round_trips(&self) -> f64 {
        self.chain.pipelined.as_secs_f64() / Self::nominal_rtt().as_secs_f64()
    }

    fn budget(&self) -> Duration {
        Self::nominal_rtt().mul_f64(TARGET_ROUND_TRIPS) + self.compute
    }

    /// The pipelined chain in round trips of the link as measured.
    fn measured_round_trips(&self) -> f64 {
        self.chain.pipelined.as_secs_f64() / self.measured_rtt.as_secs_f64()
    }
}

fn spawn(rt: &Runtime, link: &LinkConditions) -> Connection<tensor_worker::Client> {
    let quota = worker_quota();
    let mut opts = VirtualOptions::default();
    opts.link = link.clone();
    rt.spawn_virtual_with(move || TensorWorker::new("bench", quota), &opts)
}

async fn chain_over_virtual(
    rt: &Runtime,
    x: &Array2<f32>,
    m: &Array2<f32>,
    expected: f64,
) -> SlowLink {
    println!(
        "1. chain of {CHAIN_OPS} dependent ops on {CHAIN_DIM}x{CHAIN_DIM} f32 + sum + item, \
         virtual link, {} ms one way ({} ms nominal round trip)",
        ms(LATENCY),
        ms(SlowLink::nominal_rtt())
    );
    let fast = spawn(rt, &LinkConditions::default());
    let w = Worker::new(fast.client().clone());
    let (xr, mr) = upload(&w, x, m).await;
    let (compute, got) = time(PIPELINED_REPS, || chain_pipelined(&xr, &mr)).await;
    check("pipelined chain without latency", got, expected);
    drop((xr, mr, w, fast));

    let mut link = LinkConditions::default();
    link.latency = LATENCY;
    let conn = spawn(rt, &link);
    let w = Worker::new(conn.client().clone());
    let (measured_rtt, ()) = {
        let (xr, _) = upload(&w, x, m).await;
        time(PIPELINED_REPS, || async {
            xr.shape().await.expect("one call");
        })
        .await
    };
    let chain = Chain::measure(&w, x, m, expected).await;
    let (sleep, ()) = time(PIPELINED_REPS, || tokio::time::sleep(LATENCY)).await;
    let slow = SlowLink {
        chain,
        compute,
        measured_rtt,
        sleep,
    };
    println!(
        "  tokio sleep({} ms)          {:>8.2} ms (the link delays each direction with such a \
         sleep; tokio's timer has 1 ms ticks)",
        ms(LATENCY),
        ms(slow.sleep)
    );
    println!(
        "  one lone call             {:>8.2} ms (nominal {:.2} ms)",
        ms(slow.measured_rtt),
        ms(SlowLink::nominal_rtt())
    );
    println!(
        "  compute (no latency)      {:>8.2} ms (the pipelined chain on a link without latency)",
        ms(slow.compute)
    );
    slow.chain.print();
    println!(
        "  pipelined in round trips  {:>8.2} (time / {} ms); budget {} round trips + compute = {:.2} ms",
        slow.round_trips(),
        ms(SlowLink::nominal_rtt()),
        TARGET_ROUND_TRIPS,
        ms(slow.budget())
    );
    println!(
        "  ... in measured round trips {:>6.2} (time / one lone call)\n",
        slow.measured_round_trips()
    );
    slow
}

async fn serve(rt: &Runtime) -> capactor::TcpServer {
    let quota = worker_quota();
    rt.serve_tcp::<tensor_worker::Client, _, _>(
        "127.0.0.1:0",
        move || TensorWorker::new("bench", quota.clone()),
        ServeOptions::insecure_loopback(),
    )
    .await
    .expect("serving on loopback")
}

async fn connect(server: &capactor::TcpServer) -> Connection<tensor_worker::Client> {
    capactor::connect_tcp(&server.local_addr().to_string(), &ConnectOptions::default())
        .await
        .expect("connecting over loopback")
}

async fn chain_over_tcp(rt: &Runtime, x: &Array2<f32>, m: &Array2<f32>, expected: f64) -> Chain {
    println!("2. the same chain over TCP loopback");
    let server = serve(rt).await;
    let conn = connect(&server).await;
    let chain = Chain::measure(&Worker::new(conn.client().clone()), x, m, expected).await;
    chain.print();
    println!();
    chain
}

// ---------------------------------------------------------------------------
// 3. One big matmul.

/// Section 3's medians.
struct Matmul {
    local: Duration,
    virtual_: Duration,
    tcp: Duration,
}

impl Matmul {
    fn ratio(&self, remote: Duration) -> f64 {
        remote.as_secs_f64() / self.local.as_secs_f64()
    }
}

/// `a.matmul(b)` on the worker, waiting until the result exists.
async fn remote_matmul(a: &RemoteTensor, b: &RemoteTensor) -> Duration {
    let t = Instant::now();
    let c = a.matmul(b);
    c.shape().await.expect("remote matmul");
    t.elapsed()
}

/// One call that computes nothing: the round trip under a remote matmul.
async fn remote_meta(a: &RemoteTensor) -> Duration {
    let t = Instant::now();
    a.shape().await.expect("remote shape");
    t.elapsed()
}

async fn matmul(rt: &Runtime) -> Matmul {
    let n = MATMUL_DIM;
    println!(
        "3. {n}x{n} f32 matmul, operands already on the worker, until `.shape()` of the result \
         returns; vs Array2::dot on this thread"
    );
    let a = filled(n, n, 0xA076_1D64_78BD_642F, 1.0);
    let b = filled(n, n, 0xE703_7ED1_A0B4_28DB, 1.0);

    let vconn = spawn(rt, &LinkConditions::default());
    let server = serve(rt).await;
    let tconn = connect(&server).await;
    let (vw, tw) = (
        Worker::new(vconn.client().clone()),
        Worker::new(tconn.client().clone()),
    );
    let (va, vb, ta, tb) = (vw.tensor(&a), vw.tensor(&b), tw.tensor(&a), tw.tensor(&b));
    for t in [&va, &vb, &ta, &tb] {
        t.shape().await.expect("uploading a matmul operand");
    }

    // Spot check: the worker computes what ndarray does.
    let expected = a.dot(&b).sum() as f64;
    for (what, x, y) in [("virtual", &va, &vb), ("tcp", &ta, &tb)] {
        let got = x.matmul(y).sum().item().await.expect("matmul check");
        check(&format!("{what} matmul"), got, expected);
    }

    // What the worker does, piece by piece, on this side: its kernel
    // (`ops::Array::matmul`: zeroed output, then the same GEMM as `dot`),
    // and that kernel handed to a blocking-pool thread as the worker hands
    // ops over 64K elements.
    let (ka, kb) = (
        std::sync::Arc::new(Array::F32(a.clone().into_dyn())),
        std::sync::Arc::new(Array::F32(b.clone().into_dyn())),
    );
    let kernel = |ka: &Array, kb: &Array| {
        black_box(Array::matmul(black_box(ka), black_box(kb), &Unlimited).expect("kernel"));
    };
    let offloaded = || {
        let (ka, kb) = (ka.clone(), kb.clone());
        async move {
            let t = Instant::now();
            tokio::task::spawn_blocking(move || kernel(&ka, &kb))
                .await
                .expect("blocking task");
            t.elapsed()
        }
    };
    let timed = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let local = || black_box(black_box(&a).dot(black_box(&b)));

    // Warm-up, then all interleaved so machine noise hits each alike.
    const ROWS: [&str; 7] = [
        "local Array2::dot",
        "worker's kernel, here",
        "  ... on a blocking thread",
        "round trip, virtual",
        "remote, virtual",
        "round trip, TCP",
        "remote, TCP",
    ];
    let mut samples: [Vec<Duration>; ROWS.len()] = Default::default();
    let reps = if quick() { 2 } else { MATMUL_REPS };
    for rep in 0..=reps {
        let row = [
            timed(&|| drop(local())),
            timed(&|| kernel(&ka, &kb)),
            offloaded().await,
            remote_meta(&va).await,
            remote_matmul(&va, &vb).await,
            remote_meta(&ta).await,
            remote_matmul(&ta, &tb).await,
        ];
        if rep > 0 {
            for (s, d) in samples.iter_mut().zip(row) {
                s.push(d);
            }
        }
    }
    let mins = samples
        .clone()
        .map(|s| s.into_iter().min().unwrap_or_default());
    let medians = samples.map(median);
    let mm = Matmul {
        local: medians[0],
        virtual_: medians[4],
        tcp: medians[6],
    };
    for ((name, med), min) in ROWS.iter().zip(medians).zip(mins) {
        println!(
            "  {name:<26}{:>8.2} ms (min {:>6.2}; {:.2}x local)",
            ms(med),
            ms(min),
            mm.ratio(med)
        );
    }
    println!();
    mm
}

// ---------------------------------------------------------------------------
// 4. A big elementwise op and sum.

/// Section 4's medians.
struct Elementwise {
    local: Duration,
    remote: Duration,
}

async fn elementwise(rt: &Runtime) -> Elementwise {
    let n = if quick() { 1 << 20 } else { BIG_ELEMENTS };
    println!(
        "4. {n}-element f32 `x * 2` then sum, `x` already on the worker, over TCP; vs ndarray \
         on this thread"
    );
    let x = filled(n / 1024, 1024, 0x1234_5678_9ABC_DEF1, 1.0);
    let server = serve(rt).await;
    let conn = connect(&server).await;
    let w = Worker::new(conn.client().clone());
    let tx = w.tensor(&x);
    tx.shape().await.expect("uploading the operand");
    let reps = if quick() { 2 } else { 7 };
    let (local, want) = time(reps, || {
        let x = &x;
        async move { black_box(black_box(x).mapv(|v| v * 2.0).sum()) }
    })
    .await;
    let (remote, got) = time(reps, || {
        let tx = &tx;
        async move { tx.mul_scalar(2.0f32).sum().item().await.expect("remote op") }
    })
    .await;
    check("elementwise + sum", got, f64::from(want));
    let e = Elementwise { local, remote };
    println!(
        "  local mapv + sum         {:>8.2} ms\n  remote mul_scalar + sum  {:>8.2} ms ({:.2}x local)\n",
        ms(local),
        ms(remote),
        remote.as_secs_f64() / local.as_secs_f64()
    );
    e
}

// ---------------------------------------------------------------------------
// 5. A no-op call while a big kernel runs.

/// Section 5's medians.
struct Busy {
    idle: Duration,
    busy: Duration,
    calls: usize,
}

async fn busy_latency(rt: &Runtime) -> Busy {
    let n = if quick() { 512 } else { MATMUL_DIM };
    let kernels = if quick() { 4 } else { 12 };
    println!(
        "5. `.shape()` round trip on the worker's connection, idle and while {kernels} \
         {n}x{n} matmuls run there (TCP)"
    );
    let server = serve(rt).await;
    let conn = connect(&server).await;
    let w = Worker::new(conn.client().clone());
    let small = w.tensor(&filled(2, 2, 7, 1.0));
    let (a, b) = (
        w.tensor(&filled(n, n, 0xA076_1D64_78BD_642F, 1.0)),
        w.tensor(&filled(n, n, 0xE703_7ED1_A0B4_28DB, 1.0)),
    );
    for t in [&small, &a, &b] {
        t.shape().await.expect("uploading");
    }
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(remote_meta(&small).await);
    }
    // Independent matmuls, all sent at once: the worker runs them one
    // after the other (or side by side) for a while.
    let work: Vec<RemoteTensor> = (0..kernels).map(|_| a.matmul(&b)).collect();
    let all_done = futures::future::join_all(work.iter().map(|t| t.shape()));
    let probe = async {
        let mut busy = Vec::new();
        let t = Instant::now();
        // Only calls made while kernels certainly still run count.
        while busy.len() < 2000 {
            busy.push(remote_meta(&small).await);
            if t.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        busy
    };
    let (done, busy) = futures::join!(all_done, probe);
    for d in done {
        d.expect("a kernel under load");
    }
    let b = Busy {
        idle: median(idle),
        calls: busy.len(),
        busy: median(busy),
    };
    println!(
        "  idle                     {:>8.3} ms\n  while kernels run        {:>8.3} ms ({:.2}x idle, \
         {} calls)\n",
        ms(b.idle),
        ms(b.busy),
        b.busy.as_secs_f64() / b.idle.as_secs_f64(),
        b.calls
    );
    b
}

// ---------------------------------------------------------------------------
// 6. Summary.

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn summary(slow: &SlowLink, tcp: &Chain, mm: &Matmul) {
    println!("6. summary (medians)");
    println!(
        "  {:<48} {:>26}  {:<31} result",
        "figure", "measured", "target"
    );
    let row = |figure: &str, measured: String, target: String, result: &str| {
        println!("  {figure:<48} {measured:>26}  {target:<31} {result}");
    };
    row(
        &format!("chain, virtual {} ms: pipelined", ms(LATENCY)),
        format!(
            "{:.2} ms = {:.2} RT",
            ms(slow.chain.pipelined),
            slow.round_trips()
        ),
        format!(
            "<= {TARGET_ROUND_TRIPS} RT + compute = {:.2} ms",
            ms(slow.budget())
        ),
        verdict(slow.chain.pipelined <= slow.budget()),
    );
    row(
        &format!(
            "chain, virtual {} ms: awaiting each / pipelined",
            ms(LATENCY)
        ),
        format!(
            "{:.2} / {:.2} ms = {:.1}x",
            ms(slow.chain.awaited),
            ms(slow.chain.pipelined),
            slow.chain.speedup()
        ),
        format!(">= {TARGET_SPEEDUP}x"),
        verdict(slow.chain.speedup() >= TARGET_SPEEDUP),
    );
    row(
        "  diagnostic: pipelined / one lone call",
        format!(
            "{:.2} / {:.2} ms = {:.2} RT",
            ms(slow.chain.pipelined),
            ms(slow.measured_rtt),
            slow.measured_round_trips()
        ),
        format!("(link's real RT; sleep {:.2} ms)", ms(slow.sleep)),
        "-",
    );
    row(
        "chain, TCP loopback: awaiting each / pipelined",
        format!(
            "{:.2} / {:.2} ms = {:.1}x",
            ms(tcp.awaited),
            ms(tcp.pipelined),
            tcp.speedup()
        ),
        "(no target)".into(),
        "-",
    );
    for (name, remote) in [("virtual", mm.virtual_), ("TCP", mm.tcp)] {
        row(
            &format!("matmul {MATMUL_DIM}^2, {name}: remote / local"),
            format!(
                "{:.2} / {:.2} ms = {:.2}x",
                ms(remote),
                ms(mm.local),
                mm.ratio(remote)
            ),
            format!("<= {TARGET_MATMUL_RATIO}x"),
            verdict(mm.ratio(remote) <= TARGET_MATMUL_RATIO),
        );
    }
}

/// The summary rows of sections 4 and 5.
fn summary_cores(e: &Elementwise, b: &Busy) {
    let row = |figure: &str, measured: String, target: String, result: &str| {
        println!("  {figure:<48} {measured:>26}  {target:<31} {result}");
    };
    let er = e.remote.as_secs_f64() / e.local.as_secs_f64();
    row(
        "elementwise + sum, TCP: remote / local",
        format!("{:.2} / {:.2} ms = {er:.2}x", ms(e.remote), ms(e.local)),
        format!("<= {TARGET_ELEMENTWISE_RATIO}x"),
        verdict(er <= TARGET_ELEMENTWISE_RATIO),
    );
    let br = b.busy.as_secs_f64() / b.idle.as_secs_f64();
    row(
        "no-op call during kernels / idle",
        format!("{:.3} / {:.3} ms = {br:.2}x", ms(b.busy), ms(b.idle)),
        format!("<= {TARGET_BUSY_RATIO}x"),
        verdict(br <= TARGET_BUSY_RATIO),
    );
}
