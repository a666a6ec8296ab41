//! Guessing costs what it should: `open` calls on a connection are handled
//! one at a time, attempts are counted as they arrive under a back-off
//! shared by every connection of an address, the fifth failure cuts a
//! connection, and rejections are logged rate-limited with the peer's
//! address.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use capactor::schema::actor_capnp::gate;
use capactor::{Runtime, ServeOptions, TcpServer};
use capnp_rpc::rpc_twoparty_capnp::Side;
use common::{connect_raw, serve_probe, within};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

const LIMIT: Duration = Duration::from_secs(30);
const TOKEN: &[u8] = b"the one right token, 16+ bytes";

fn guarded() -> ServeOptions {
    let mut opts = ServeOptions::default();
    opts.token = Some(TOKEN.to_vec());
    opts
}

/// A connection that speaks to the gate directly, as a guessing client
/// would (capnp-rpc's own two-party network, not capactor's client).
async fn raw_gate(server: &TcpServer) -> gate::Client {
    let (r, w) = connect_raw(server).await.into_split();
    let net = capnp_rpc::twoparty::VatNetwork::new(
        r.compat(),
        w.compat_write(),
        Side::Client,
        Default::default(),
    );
    let mut system = capnp_rpc::RpcSystem::new(Box::new(net), None);
    let gate: gate::Client = system.bootstrap(Side::Server);
    tokio::task::spawn_local(system);
    gate
}

/// Sends `n` guesses at once and tells how their answers went.
async fn guess_all(gate: &gate::Client, n: usize, tag: usize) -> Outcome {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let mut req = gate.open_request();
            req.get()
                .set_token(format!("wrong guess {tag:04}-{i:06}").as_bytes());
            req.send().promise
        })
        .collect();
    let mut out = Outcome::default();
    for r in futures::future::join_all(calls).await {
        match r {
            Ok(_) => out.opened += 1,
            Err(e) if e.extra.contains("credential rejected") => out.compared += 1,
            Err(e) if e.kind == capnp::ErrorKind::Disconnected => out.cut += 1,
            Err(e) => {
                assert_eq!(e.kind, capnp::ErrorKind::Overloaded, "{e}");
                assert!(
                    e.extra.contains("gate opens pending") || e.extra.contains("gate back-off"),
                    "{e}"
                );
                out.refused += 1;
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Outcome {
    opened: usize,
    /// Compared with the token, and wrong.
    compared: usize,
    /// Refused without being compared.
    refused: usize,
    /// Failed because the worker cut the connection.
    cut: usize,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Outcome) {
        self.opened += o.opened;
        self.compared += o.compared;
        self.refused += o.refused;
        self.cut += o.cut;
    }
}

#[test]
fn ten_thousand_concurrent_guesses_on_one_connection_get_at_most_five_compared() {
    let logs = capture_logs();
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let server = serve_probe(&rt, "guarded", guarded()).await;
        let gate = raw_gate(&server).await;
        let out = within(LIMIT, guess_all(&gate, 10_000, 0)).await;
        eprintln!("10,000 guesses on one connection: {out:?}");
        assert_eq!(out.opened, 0);
        assert!(out.compared <= 5, "{out:?}");
        assert!(out.cut > 0, "the connection was cut: {out:?}");
        assert_eq!(out.compared + out.refused + out.cut, 10_000);
    })
    .unwrap();
    // Each rejection logged names the peer.
    let logs = logs.lock().unwrap().clone();
    let logs = String::from_utf8_lossy(&logs);
    assert!(
        logs.lines()
            .any(|l| l.contains("gate:") && l.contains("127.0.0.1:")),
        "{logs}"
    );
}

#[test]
fn ten_thousand_guesses_over_fifty_connections_share_one_back_off() {
    let logs = capture_logs();
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let server = serve_probe(&rt, "guarded", guarded()).await;
        let mut gates = Vec::new();
        for _ in 0..50 {
            gates.push(raw_gate(&server).await);
        }
        let floods = gates
            .iter()
            .enumerate()
            .map(|(tag, g)| guess_all(g, 200, tag));
        let mut total = Outcome::default();
        for out in within(LIMIT, futures::future::join_all(floods)).await {
            total += out;
        }
        eprintln!("10,000 guesses over 50 connections: {total:?}");
        assert_eq!(total.opened, 0);
        // One address: its attempts are compared 100 ms × 2^(n-2) apart, so
        // within the 5 s handshake deadline at 0, 0.1, 0.3, 0.7, 1.5 and
        // 3.1 s; later ones are refused uncompared.
        assert!(total.compared <= 6, "{total:?}");
        assert_eq!(total.compared + total.refused + total.cut, 10_000);
    })
    .unwrap();
    // Rate-limited: at most 10 lines per 10 s per worker, and the other
    // test of this file has its own worker.
    let logs = logs.lock().unwrap().clone();
    let lines = String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.contains("gate:"))
        .count();
    assert!(lines <= 20, "{lines} rejection lines logged");
}

/// Captures this test binary's log lines (every test's).
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
