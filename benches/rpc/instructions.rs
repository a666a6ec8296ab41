//! Instruction counts per no-op round trip for the rpc bench: this binary
//! re-run under valgrind's cachegrind, as a child told what to count.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;

use super::baselines::{stock_network, StockServer};
use super::*;

/// Instructions per no-op round trip, by row name.
pub(crate) struct Instructions {
    pub(crate) counts: Vec<(&'static str, f64)>,
    /// Why there are none, if there are none.
    pub(crate) skipped: Option<String>,
}

impl Instructions {
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.counts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }
}

/// The rows counted, by the name the child is told and the row's name.
pub(crate) const COUNTED: [(&str, &str); 4] = [
    ("raw", "raw TCP 64 B ping-pong"),
    ("stock", "stock capnp-rpc TCP"),
    ("tcp", "capactor TCP"),
    ("unix", "capactor Unix"),
];

/// Runs this binary under cachegrind for each counted row, twice, and
/// takes instructions per round trip from the difference.
pub(crate) fn instructions() -> Instructions {
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
pub(crate) fn count_child(what: &str) {
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
