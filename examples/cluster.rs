//! Data-parallel training over a fleet: a registry and 4 `capactor worker`
//! processes on 127.0.0.1, driven through `Cluster`.
//!
//! ```text
//! cargo build --bin capactor && cargo run --example cluster
//! ```
//!
//! It starts `capactor registry` and 4 `capactor worker --join` processes
//! (port 0; each address is read from its `listening on` line), trains a
//! linear model data-parallel (scatter the data, broadcast the weights,
//! all-reduce the gradients), printing each step's time and client round
//! trips, then kills one worker, shows the registry noticing, and carries
//! on over the other three after re-sharding. Set `CAPACTOR_BIN` to use
//! another `capactor` binary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capactor::actors::tensor::Array;
use capactor::fleet::{Change, Cluster, Pool, Reduce, Sharded};
use ndarray::{Array2, ArrayD};

const TOKEN: &str = "an-example-token-of-32-bytes-0123";
const ROWS: usize = 4096;
const FEATURES: usize = 16;
const LEARNING_RATE: f32 = 0.1;

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CAPACTOR_BIN") {
        return bin.into();
    }
    // target/<profile>/examples/cluster -> target/<profile>/capactor
    let exe = std::env::current_exe().expect("the example's own path");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("capactor"));
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => {
            eprintln!(
                "build the capactor binary first: cargo build --bin capactor (or set CAPACTOR_BIN)"
            );
            std::process::exit(2);
        }
    }
}

/// A child process, stopped when dropped.
struct Proc(Child);

impl Proc {
    /// Starts `capactor args...` and waits for its `listening on` line.
    fn start(bin: &PathBuf, args: &[&str]) -> (Proc, String) {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting capactor");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading its first line");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_string();
        (Proc(child), addr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// One step: predictions, residuals and gradients on every worker, the
/// gradients all-reduced, the weights updated everywhere; the loss read
/// from the first worker (the step's only round trip).
async fn step(
    pool: &Pool,
    x: &Sharded,
    y: &Sharded,
    w: &Sharded,
) -> capactor::Result<(Sharded, f64)> {
    let residual = x.zip(w, |x, w| x.matmul(w))?.zip(y, |p, y| p - y)?;
    let grad = pool.all_reduce(&x.zip(&residual, |x, r| x.t().matmul(r))?, Reduce::Sum)?;
    let loss = pool.reduce(&residual.map(|_, r| (r * r).sum()), Reduce::Sum)?;
    let w = w.zip(&grad, |w, g| w - &(g * (2.0 * LEARNING_RATE / ROWS as f32)))?;
    let loss = pool.read(loss.item()).await? / ROWS as f64;
    Ok((w, loss))
}

/// Shards the data over `pool` and trains `steps` steps from `w`.
async fn train(
    pool: &Pool,
    x: &Array,
    y: &Array,
    w: &Array,
    steps: usize,
) -> capactor::Result<Array> {
    let (xs, ys) = (pool.scatter(x, 0)?, pool.scatter(y, 0)?);
    let mut w = pool.broadcast(w)?;
    for i in 0..steps {
        let (trips, start) = (pool.round_trips(), Instant::now());
        let (next, loss) = step(pool, &xs, &ys, &w).await?;
        w = next;
        println!(
            "  step {i:2} on {} workers: loss {loss:10.6}  {:6.2} ms  {} client round trip(s)",
            pool.len(),
            start.elapsed().as_secs_f64() * 1e3,
            pool.round_trips() - trips
        );
    }
    pool.read(w.shards()[0].to_array()).await
}

fn main() -> capactor::Result<()> {
    let bin = binary();
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN)?;
    let token = token_file.to_str().unwrap();
    let (_registry, raddr) = Proc::start(
        &bin,
        &[
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token,
            "--ttl",
            "1s",
            "--report-interval",
            "200ms",
            "--grace",
            "2s",
        ],
    );
    println!("registry listening on {raddr}");
    let mut workers = Vec::new();
    for i in 0..4 {
        let name = format!("w{i}");
        let (p, addr) = Proc::start(
            &bin,
            &[
                "worker",
                "--listen",
                "127.0.0.1:0",
                "--name",
                &name,
                "--vats",
                "1",
                "--memory-mib",
                "256",
                "--token-file",
                token,
                "--join",
                &raddr,
                "--registry-token-file",
                token,
            ],
        );
        println!("worker {name} listening on {addr}");
        workers.push(p);
    }

    // Synthetic data: y = x·truth.
    let x = Array2::from_shape_fn((ROWS, FEATURES), |(i, j)| {
        ((i * FEATURES + j) as f32 * 0.013).sin()
    });
    let truth = Array2::from_shape_fn((FEATURES, 1), |(j, _)| (j as f32 - 7.5) / 8.0);
    let y = x.dot(&truth);
    let (x, y) = (Array::F32(x.into_dyn()), Array::F32(y.into_dyn()));
    let w0 = Array::F32(ArrayD::zeros(vec![FEATURES, 1]));

    capactor::block_on(async {
        let mut opts = capactor::ConnectOptions::default();
        opts.token = TOKEN.as_bytes().to_vec();
        let cluster = Cluster::connect(&raddr, &opts).await?;
        while cluster.registry().status().await?.totals.healthy < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut watch = cluster.registry().watch(64).await?;
        watch.next().await; // the membership
        let pool = cluster.pool("tensor-worker", 4).await?;
        println!("pool: {:?}", pool.names());
        let w = train(&pool, &x, &y, &w0, 8).await?;

        println!("killing worker w3");
        let killed = Instant::now();
        let _ = workers[3].0.kill();
        loop {
            match watch.next().await.map(|e| e.change) {
                Some(Change::Left { name, reason }) => {
                    println!(
                        "registry: {name} left ({reason}) {:.1} ms after the kill",
                        killed.elapsed().as_secs_f64() * 1e3
                    );
                    break;
                }
                Some(_) => {}
                None => return Err(capactor::Error::invalid("the watch ended")),
            }
        }
        while pool.gone().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match pool.scatter(&x, 0) {
            Err(e) => println!("the pool says: {e}"),
            Ok(_) => println!("the pool has not noticed yet"),
        }
        let pool = pool.without_gone();
        println!("re-sharding over {:?}", pool.names());
        let w = train(&pool, &x, &y, &w, 8).await?;
        if let Array::F32(w) = w {
            let err = w
                .iter()
                .zip(truth.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            println!("largest weight error after 16 steps: {err:.4}");
        }
        Ok(())
    })
    .unwrap()
}
