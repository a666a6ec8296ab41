//! Section 1 of the rpc bench: the baselines, a raw TCP ping-pong and a
//! stock capnp-rpc no-op call, measured in the same run as capactor.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::*;

pub(crate) fn raw_tcp() -> Figures {
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
pub(crate) struct Noop;

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
pub(crate) struct StockServer {
    pub(crate) addr: String,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) thread: Option<thread::JoinHandle<()>>,
}

impl StockServer {
    pub(crate) fn start(buffered: bool) -> StockServer {
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
pub(crate) fn stock_network(
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

pub(crate) async fn stock_capnp_rpc(buffered: bool) -> Figures {
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
