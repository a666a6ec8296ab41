//! How fast tensors move between processes, against raw TCP on the same
//! machine in the same run.
//!
//! Run with `cargo bench --bench transfer` (about a minute on 2 cores at
//! the default sizes; `CAPACTOR_BENCH_GIB=0.25,1` picks other sizes in GiB,
//! `CAPACTOR_BENCH_REPS=5` other repetitions).
//!
//! Two `capactor worker` processes (one vat each) listen on loopback; this
//! process is the client. For each size of f32 tensor it measures:
//!
//! 1. *raw TCP*: the same number of bytes through a tokio socket pair on
//!    loopback, written in 4 MiB `write_all`s by one thread and read into a
//!    4 MiB buffer by another: the wire speed a transfer should approach.
//! 2. *upload*: `Upload::run` of the tensor from this process to worker A,
//!    until A has checked every chunk's and the whole tensor's CRC32C.
//! 3. *download*: `Download::run` of it back from A (the client's copy of
//!    the source freed first, so the client's peak is the download's own).
//!    A sample of the values is checked against the source's pattern.
//! 4. *worker to worker*: `copy_to` from A to B, until B holds it; the
//!    bytes go from A to B over a connection B opens with a ticket, not
//!    through this process.
//!
//! Each is timed from its first call to its last answer. For each it prints
//! the median time and throughput of the repetitions, the ratio to raw TCP's
//! median, and the peak RSS (`VmHWM` from `/proc/PID/status`, reset through
//! `/proc/PID/clear_refs` before each repetition; the largest of the
//! repetitions) of the sending and the receiving process against the
//! tensor's size, and the CPU seconds each end spent per GiB (`utime +
//! stime` of `/proc/PID/stat`; the client's includes its other threads,
//! which are idle) with the *ceiling* they imply: the GB/s the busier end
//! could move with a core of its own. On a machine whose cores other work
//! holds, the ceiling says what the transfer costs, the median what it got. For the worker-to-worker copy it prints the bytes this
//! process read and wrote meanwhile (`rchar` + `wchar` of `/proc/self/io`:
//! every socket, pipe and file, so an upper bound). The targets section
//! ends the run with one PASS or MISS line per target (a miss is reported,
//! not fatal). On a shared machine other work skews every figure: the load
//! average is printed with the results.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use capactor::actors::tensor::{Array, Download, RemoteTensor, Upload, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../tests/common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

/// Bytes per raw TCP write and read.
const RAW_CHUNK: usize = 4 << 20;
/// Columns of the f32 matrices sent.
const COLS: usize = 4096;
/// Every how many elements the download's values are checked.
const CHECK_STRIDE: usize = 4099;

/// The targets of the issue, as numbers.
const MIN_VS_RAW: f64 = 0.8;
const MAX_RECEIVER_RSS: f64 = 1.25;
const MAX_CLIENT_SHARE: f64 = 0.01;

fn main() {
    let started = Instant::now();
    load_average_at_start();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let sizes = sizes();
    let reps = env_number("CAPACTOR_BENCH_REPS", 3.0).max(1.0) as usize;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    println!("capactor transfer bench: {cores} cores, loopback TCP, f32 tensors");
    println!(
        "{reps} repetitions per figure, medians; peak RSS = the largest VmHWM of the \
         repetitions, against the tensor's size\n"
    );

    let memory_mib = (largest >> 20) + 256;
    let mut a = worker("a", memory_mib);
    let mut b = worker("b", memory_mib);
    // Before the client's runtime starts: the raw pair runs runtimes of its own.
    let raws: Vec<Timed> = sizes
        .iter()
        .map(|&bytes| {
            let mut raw = Timed::new("raw TCP", "", "");
            for _ in 0..reps {
                raw.secs.push(raw_tcp(bytes).as_secs_f64());
            }
            raw
        })
        .collect();
    let mut results = Vec::new();
    capactor::block_on(async {
        let (_ca, wa) = connect(&a.1).await;
        let (_cb, wb) = connect(&b.1).await;
        let pids = Pids {
            client: std::process::id(),
            a: a.0.child.id(),
            b: b.0.child.id(),
        };
        for (&bytes, raw) in sizes.iter().zip(raws) {
            results.push(measure(bytes, raw, reps, &wa, &wb, &pids).await);
        }
    })
    .unwrap();
    for (w, _) in [&mut a, &mut b] {
        w.signal_term();
        w.wait(Duration::from_secs(30));
    }

    println!(
        "{:<8} {:<17} {:>9} {:>8} {:>8} {:>22} {:>22}  CPU per GiB snd / rcv -> ceiling",
        "size", "transfer", "median", "GB/s", "vs raw", "sender peak RSS", "receiver peak RSS",
    );
    for r in &results {
        r.print();
    }
    println!();
    for r in &results {
        println!(
            "  {} worker to worker: the client read and wrote {} bytes ({:.4}% of the tensor)",
            gib(r.bytes),
            r.client_io,
            r.client_share() * 100.0
        );
    }
    println!(
        "\nload average before/after: {} / {}; run took {:.0} s",
        load_average_at_start(),
        load_average(),
        started.elapsed().as_secs_f64()
    );

    println!("\ntargets");
    for r in &results {
        for t in [&r.upload, &r.download, &r.copy] {
            let ratio = r.vs_raw(t);
            check(
                &format!("{} {} ≥ {MIN_VS_RAW}× raw TCP", gib(r.bytes), t.what),
                ratio >= MIN_VS_RAW,
                format!(
                    "{:.2} vs {:.2} GB/s = {ratio:.2}x",
                    t.gbps(r.bytes),
                    r.raw.gbps(r.bytes)
                ),
            );
        }
        for t in [&r.upload, &r.download, &r.copy] {
            let ratio = t.receiver_peak as f64 / r.bytes as f64;
            check(
                &format!(
                    "{} {} receiver peak RSS ≤ {MAX_RECEIVER_RSS}×",
                    gib(r.bytes),
                    t.what
                ),
                t.receiver_peak > 0 && ratio <= MAX_RECEIVER_RSS,
                format!("{} = {ratio:.3}x", mib(t.receiver_peak)),
            );
        }
        check(
            &format!("{} worker to worker: client bytes < 1%", gib(r.bytes)),
            r.client_share() < MAX_CLIENT_SHARE,
            format!("{} bytes = {:.4}%", r.client_io, r.client_share() * 100.0),
        );
    }
}

/// The tensor sizes, in bytes (multiples of a row of [`COLS`] f32).
fn sizes() -> Vec<u64> {
    let spec = std::env::var("CAPACTOR_BENCH_GIB").unwrap_or_else(|_| "1,4".into());
    let row = (COLS * 4) as u64;
    spec.split(',')
        .filter_map(|s| s.trim().parse::<f64>().ok())
        .filter(|g| *g > 0.0)
        .map(|g| (((g * (1u64 << 30) as f64) as u64) / row).max(1) * row)
        .collect()
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `capactor worker` on 127.0.0.1:0 without a token (loopback only), and
/// its address.
fn worker(name: &str, memory_mib: u64) -> (WorkerProcess, String) {
    let mut w = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--name",
        name,
        "--vats",
        "1",
        "--insecure-no-auth",
        "--memory-mib",
        &memory_mib.to_string(),
    ]));
    let addr = w.listening_addr(Duration::from_secs(30));
    (w, addr)
}

async fn connect(addr: &str) -> (Connection<tensor_worker::Client>, Worker) {
    let conn: Connection<tensor_worker::Client> =
        capactor::connect_tcp(addr, &ConnectOptions::default())
            .await
            .expect("connecting to the bench worker");
    let w = Worker::new(conn.client().clone());
    (conn, w)
}

struct Pids {
    client: u32,
    a: u32,
    b: u32,
}

/// The repetitions of one kind of transfer.
#[derive(Default)]
struct Timed {
    what: &'static str,
    secs: Vec<f64>,
    sender: &'static str,
    receiver: &'static str,
    sender_peak: u64,
    receiver_peak: u64,
    /// CPU seconds the sender and the receiver spent, over every repetition.
    sender_cpu: f64,
    receiver_cpu: f64,
}

impl Timed {
    fn new(what: &'static str, sender: &'static str, receiver: &'static str) -> Self {
        Timed {
            what,
            sender,
            receiver,
            ..Timed::default()
        }
    }

    fn median(&self) -> f64 {
        let mut s = self.secs.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// CPU seconds per GiB moved, of the sender and the receiver.
    fn cpu_per_gib(&self, bytes: u64) -> (f64, f64) {
        let gibs = (bytes * self.secs.len() as u64) as f64 / (1u64 << 30) as f64;
        (self.sender_cpu / gibs, self.receiver_cpu / gibs)
    }

    /// GB/s the busier end could move with a core to itself: what the
    /// transfer costs in CPU, whatever else the machine runs.
    fn cpu_ceiling_gbps(&self, bytes: u64) -> f64 {
        let moved = (bytes * self.secs.len() as u64) as f64;
        moved / self.sender_cpu.max(self.receiver_cpu) / 1e9
    }

    fn gbps(&self, bytes: u64) -> f64 {
        bytes as f64 / self.median() / 1e9
    }

    /// Runs one repetition: resets the peaks, times `run`, records them.
    async fn rep<T>(&mut self, pids: (u32, u32), run: impl std::future::Future<Output = T>) -> T {
        reset_peak(pids.0);
        reset_peak(pids.1);
        let cpu = (cpu_secs(pids.0), cpu_secs(pids.1));
        let t0 = Instant::now();
        let out = run.await;
        self.secs.push(t0.elapsed().as_secs_f64());
        self.sender_cpu += cpu_secs(pids.0) - cpu.0;
        self.receiver_cpu += cpu_secs(pids.1) - cpu.1;
        self.sender_peak = self.sender_peak.max(peak_rss(pids.0));
        self.receiver_peak = self.receiver_peak.max(peak_rss(pids.1));
        out
    }
}

struct Figures {
    bytes: u64,
    raw: Timed,
    upload: Timed,
    download: Timed,
    copy: Timed,
    client_io: u64,
}

impl Figures {
    fn vs_raw(&self, t: &Timed) -> f64 {
        self.raw.median() / t.median()
    }

    fn client_share(&self) -> f64 {
        self.client_io as f64 / self.bytes as f64
    }

    fn print(&self) {
        for t in [&self.raw, &self.upload, &self.download, &self.copy] {
            let rss = |who: &str, peak: u64| {
                if who.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{who} {:.2}x ({})",
                        peak as f64 / self.bytes as f64,
                        mib(peak)
                    )
                }
            };
            let busy = if t.sender.is_empty() {
                String::new()
            } else {
                let (s, r) = t.cpu_per_gib(self.bytes);
                format!(
                    "{s:.2} / {r:.2} s -> {:.2} GB/s",
                    t.cpu_ceiling_gbps(self.bytes)
                )
            };
            println!(
                "{:<8} {:<17} {:>7.3} s {:>8.2} {:>7.2}x {:>22} {:>22}  {}",
                gib(self.bytes),
                t.what,
                t.median(),
                t.gbps(self.bytes),
                self.vs_raw(t),
                rss(t.sender, t.sender_peak),
                rss(t.receiver, t.receiver_peak),
                busy,
            );
        }
    }
}

async fn measure(
    bytes: u64,
    raw: Timed,
    reps: usize,
    wa: &Worker,
    wb: &Worker,
    pids: &Pids,
) -> Figures {
    let mut upload = Timed::new("upload", "client", "worker");
    let source = Arc::new(pattern(bytes));
    let mut kept = None;
    for i in 0..reps {
        let t = upload
            .rep((pids.client, pids.a), Upload::new(source.clone()).run(wa))
            .await
            .expect("upload");
        if i + 1 == reps {
            kept = Some(t);
        } else {
            drop(t);
            expect_used(wa, 0).await;
        }
    }
    let t: RemoteTensor = kept.expect("at least one repetition");
    drop(source);

    let mut download = Timed::new("download", "worker", "client");
    for _ in 0..reps {
        let a = download
            .rep((pids.a, pids.client), Download::new().run(&t))
            .await
            .expect("download");
        check_pattern(&a, bytes);
    }

    let mut copy = Timed::new("worker to worker", "worker", "worker");
    let mut client_io = 0;
    for _ in 0..reps {
        let before = io_bytes();
        let c = copy
            .rep((pids.a, pids.b), async {
                let c = t.copy_to(wb);
                c.shape().await.expect("worker-to-worker copy");
                c
            })
            .await;
        client_io = client_io.max(io_bytes().saturating_sub(before));
        drop(c);
        expect_used(wb, 0).await;
    }
    drop(t);
    expect_used(wa, 0).await;
    Figures {
        bytes,
        raw,
        upload,
        download,
        copy,
        client_io,
    }
}

/// `bytes` of f32 in rows of [`COLS`], each element its index mod a prime.
fn pattern(bytes: u64) -> Array {
    let n = (bytes / 4) as usize;
    let v: Vec<f32> = (0..n).map(|i| (i % 65521) as f32).collect();
    let a = ndarray::Array2::from_shape_vec((n / COLS, COLS), v).expect("rows of COLS");
    Array::F32(a.into_dyn())
}

fn check_pattern(a: &Array, bytes: u64) {
    let Array::F32(a) = a else {
        panic!("the download is not f32")
    };
    assert_eq!(a.len() as u64 * 4, bytes, "the download's size");
    let flat = a.as_slice().expect("a standard-layout download");
    for i in (0..flat.len()).step_by(CHECK_STRIDE) {
        assert_eq!(flat[i], (i % 65521) as f32, "element {i} of the download");
    }
}

/// Checks that the worker holds `bytes` (what was dropped has been freed:
/// the release went before this call on the same connection).
async fn expect_used(w: &Worker, bytes: u64) {
    let used = w.memory().await.expect("memory").used;
    if used != bytes {
        println!("  note: the worker still holds {used} bytes after a release");
    }
}

/// Sends `bytes` through a loopback tokio socket pair, a thread on each
/// end; the time from the first write to the reader having every byte.
fn raw_tcp(bytes: u64) -> Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local address");
    let reader = thread::spawn(move || {
        current_thread().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; RAW_CHUNK];
            let mut got = 0u64;
            while got < bytes {
                let n = s.read(&mut buf).await.expect("raw read");
                assert!(n > 0, "raw TCP closed early");
                got += n as u64;
            }
            Instant::now()
        })
    });
    let started = current_thread().block_on(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let buf = vec![0x5au8; RAW_CHUNK];
        let t0 = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(RAW_CHUNK as u64) as usize;
            s.write_all(&buf[..n]).await.expect("raw write");
            left -= n as u64;
        }
        s.shutdown().await.expect("shutdown");
        t0
    });
    let done = reader.join().expect("the raw reader");
    done - started
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// CPU time (user + system) `pid` has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields 14 and 15, counted after the command name's closing paren.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}

/// Resets the peak RSS of `pid` to its current RSS.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The peak RSS of `pid` in bytes (0 if it cannot be read).
fn peak_rss(pid: u32) -> u64 {
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/status")) else {
        return 0;
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let kb = l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
            kb.trim().parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes this process has read and written through system calls.
fn io_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "rchar" | "wchar")
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The load average when the run began (read once).
fn load_average_at_start() -> &'static str {
    static AT_START: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AT_START.get_or_init(load_average)
}

fn check(target: &str, ok: bool, numbers: String) {
    let verdict = if ok { "PASS" } else { "MISS" };
    println!("  {verdict}  {target:<54} {numbers}");
}
