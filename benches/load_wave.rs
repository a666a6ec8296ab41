//! The killed-clients wave of the load bench: clients that die with memory
//! in the worker, and what the worker's RSS does once they are gone.
//!
//! One wave is
//!
//! - `dropped` connections that open the gate, send half of an
//!   `upload_mib` MiB message and hang up (raw sockets: a header claiming
//!   the whole message, then half its bytes), `BATCH` at a time;
//! - `killed` clients in a child process (this bench binary, run with
//!   `--hold`), each holding a tensor of `hold_kib` KiB in the worker, then
//!   the child SIGKILLed.
//!
//! After each wave the worker must free every tensor, and its RSS is read
//! (polled for a bounded while) against the RSS before the first wave.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use capactor::actors::tensor::Worker;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::ConnectOptions;
use futures::future::join_all;
use ndarray::Array1;

use crate::raw::{header, Raw};

/// Dropped uploads in flight at once.
const BATCH: usize = 50;
/// How long the holder process may take to make its tensors.
const HOLD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the waves are made of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaveConfig {
    pub(crate) waves: usize,
    pub(crate) dropped: usize,
    pub(crate) killed: usize,
    pub(crate) upload_mib: usize,
    pub(crate) hold_kib: usize,
}

/// The worker's RSS after one wave, and how long it took to get there.
#[derive(Debug)]
pub(crate) struct WaveResult {
    pub(crate) after_kib: u64,
    pub(crate) settled_in: Duration,
    pub(crate) held: Result<u64, String>,
}

/// Runs `config.waves` waves against the worker at `addr` (pid `pid`), each
/// followed by `settle` (which waits for the tensors to be freed, then for
/// RSS to come down, and returns both).
pub(crate) fn run(
    config: WaveConfig,
    addr: &str,
    token: &str,
    settle: impl Fn() -> WaveResult,
) -> Vec<WaveResult> {
    let sock: SocketAddr = addr.parse().expect("a socket address");
    (0..config.waves)
        .map(|_| {
            capactor::block_on(dropped_uploads(sock, token, config)).unwrap();
            killed_holders(addr, token, config);
            settle()
        })
        .collect()
}

/// `config.dropped` uploads cut halfway, [`BATCH`] at a time.
async fn dropped_uploads(addr: SocketAddr, token: &str, config: WaveConfig) {
    let words = (config.upload_mib << 20) / 8;
    let half = vec![0x5au8; (config.upload_mib << 20) / 2];
    let mut left = config.dropped;
    while left > 0 {
        let n = left.min(BATCH);
        left -= n;
        join_all((0..n).map(|_| async {
            let mut raw = Raw::authenticated(addr, token.as_bytes()).await;
            raw.send_bytes(&header(words as u32)).await;
            raw.send_bytes(&half).await;
            drop(raw);
        }))
        .await;
    }
}

/// Starts the holder process, waits until its clients hold their tensors,
/// and SIGKILLs it.
fn killed_holders(addr: &str, token: &str, config: WaveConfig) {
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut child = Command::new(exe)
        .args([
            "--hold",
            addr,
            &config.killed.to_string(),
            &config.hold_kib.to_string(),
        ])
        .env("LOAD_HOLD_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the holder process");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + HOLD_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("holding") => break,
            Ok(line) => println!("  holder: {line}"),
            Err(_) => {
                let _ = child.kill();
                panic!("the holder process did not report its tensors in time");
            }
        }
    }
    child.kill().expect("SIGKILL the holder");
    let _ = child.wait();
}

/// The holder process (`--hold ADDR CLIENTS KIB`): connects `CLIENTS`
/// clients, each making a tensor of `KIB` KiB in the worker, prints
/// `holding` once they all have, and waits to be killed.
pub(crate) fn hold_main(args: &[String]) {
    let [addr, clients, kib] = args else {
        panic!("--hold ADDR CLIENTS KIB");
    };
    let clients: usize = clients.parse().expect("CLIENTS");
    let kib: usize = kib.parse().expect("KIB");
    let mut opts = ConnectOptions::default();
    opts.token = std::env::var("LOAD_HOLD_TOKEN")
        .expect("LOAD_HOLD_TOKEN")
        .into_bytes();
    capactor::block_on(async move {
        let held = join_all((0..clients).map(|i| {
            let opts = opts.clone();
            async move {
                let conn = capactor::connect_tcp::<tensor_worker::Client>(addr, &opts)
                    .await
                    .expect("connecting");
                let w = Worker::new(conn.client().clone());
                let a = Array1::from_elem(kib * 256, i as f32);
                let t = w.tensor(&a);
                // Answered only once the tensor exists.
                t.sum().item().await.expect("making the tensor");
                (conn, t)
            }
        }))
        .await;
        println!("holding {} tensors", held.len());
        std::future::pending::<()>().await;
    })
    .unwrap();
}

/// One line saying what the waves are.
pub(crate) fn describe(config: &WaveConfig) -> String {
    format!(
        "{} waves of {} uploads of {} MiB dropped halfway and {} clients SIGKILLed holding \
         {} KiB each",
        config.waves, config.dropped, config.upload_mib, config.killed, config.hold_kib
    )
}
