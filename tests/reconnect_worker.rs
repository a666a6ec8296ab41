//! A reconnecting client: after its worker dies and comes back on the same
//! address, the same client value works again. Over an in-process TCP
//! server and a real worker process killed with SIGKILL.

mod common;
#[path = "common/process.rs"]
mod process;

use std::process::Command;
use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::actor_capnp::actor;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Connection, Error, Reconnect, Runtime, ServeOptions, TcpServer};
use common::{assert_disconnected, ping, sleep_call, within};
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(20);

fn reconnecting(call_wait: Duration) -> ConnectOptions {
    let mut policy = Reconnect::default();
    policy.call_wait = call_wait;
    let mut opts = ConnectOptions::default();
    opts.reconnect = Some(policy);
    opts
}

/// Serves probes on `addr`, retrying while the previous listener on that
/// port is still going away.
async fn serve_on(rt: &Runtime, addr: &str) -> TcpServer {
    within(LIMIT, async {
        loop {
            let served = rt
                .serve_tcp::<probe::Client, _, _>(
                    addr,
                    || Probe::new("p"),
                    ServeOptions::insecure_loopback(),
                )
                .await;
            match served {
                Ok(s) => return s,
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("serving on {addr}: {e}"),
            }
        }
    })
    .await
}

#[test]
fn the_same_client_works_again_after_its_server_comes_back() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let server = serve_on(&rt, "127.0.0.1:0").await;
        let addr = server.local_addr().to_string();
        let p: Connection<probe::Client> = within(
            LIMIT,
            capactor::connect_tcp(&addr, &reconnecting(Duration::from_secs(20))),
        )
        .await
        .unwrap();
        ping(&p, LIMIT).await;
        let mut req = p.counter_request();
        req.get().set_start(1);
        let counter = req.send().pipeline.get_counter();
        within(LIMIT, counter.next_request().send().promise)
            .await
            .unwrap();
        let pending = tokio::task::spawn_local(sleep_call(&p, 60_000));
        ping(&p, LIMIT).await;

        // The worker goes away: the pending call fails at once, retryably.
        let killed = Instant::now();
        drop(server);
        let err = within(LIMIT, pending).await.unwrap().err().unwrap();
        assert!(Error::is_restarting(&err), "{err}");
        eprintln!(
            "pending call failed {:?} after the server went: {err}",
            killed.elapsed()
        );

        // A call made while it is down waits for it to come back.
        let waiting = tokio::task::spawn_local(sleep_call(&p, 1));
        let server = serve_on(&rt, &addr).await;
        within(LIMIT, waiting).await.unwrap().unwrap();
        ping(&p, LIMIT).await;
        assert!(!p.link().is_closed());
        // The counter belonged to the lost connection.
        let err = within(LIMIT, counter.next_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
        assert!(!Error::is_restarting(&err), "{err}");
        drop(server);
    })
    .unwrap();
}

#[test]
fn calls_while_down_fail_at_once_when_configured_to() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let server = serve_on(&rt, "127.0.0.1:0").await;
        let addr = server.local_addr().to_string();
        let p: Connection<probe::Client> = within(
            LIMIT,
            capactor::connect_tcp(&addr, &reconnecting(Duration::ZERO)),
        )
        .await
        .unwrap();
        ping(&p, LIMIT).await;
        drop(server);
        // Calls fail, then (once the client has noticed) fail at once.
        let err = within(LIMIT, async {
            loop {
                match sleep_call(&p, 1).await {
                    Err(e) if Error::is_restarting(&e) => return e,
                    Err(_) => {}
                    Ok(()) => panic!("served by a server that is gone"),
                }
            }
        })
        .await;
        eprintln!("while down: {err}");
        let start = Instant::now();
        let err = within(LIMIT, sleep_call(&p, 1)).await.err().unwrap();
        assert!(Error::is_restarting(&err), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "failed at once, not after {:?}",
            start.elapsed()
        );
        let _server = serve_on(&rt, &addr).await;
        within(LIMIT, async {
            while sleep_call(&p, 1).await.is_err() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    })
    .unwrap();
}

fn worker(listen: &str) -> WorkerProcess {
    WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        listen,
        "--insecure-no-auth",
        "--vats",
        "1",
    ]))
}

#[test]
fn a_client_reconnects_after_its_worker_process_is_killed_and_restarted_on_the_same_port() {
    let mut first = worker("127.0.0.1:0");
    let addr = first.listening_addr(LIMIT);
    capactor::block_on(async {
        let w: Connection<actor::Client> = within(
            LIMIT,
            capactor::connect_tcp(&addr, &reconnecting(Duration::from_secs(20))),
        )
        .await
        .unwrap();
        within(LIMIT, w.ping_request().send().promise)
            .await
            .unwrap();

        // SIGKILL: no shutdown, the kernel closes the sockets.
        first.child.kill().unwrap();
        first.wait(LIMIT);
        within(LIMIT, async {
            while w.ping_request().send().promise.await.is_ok() {
                tokio::task::yield_now().await;
            }
        })
        .await;

        let waiting = w.ping_request().send().promise;
        let mut second = worker(&addr);
        assert_eq!(second.listening_addr(LIMIT), addr);
        let back = Instant::now();
        within(LIMIT, waiting).await.unwrap();
        eprintln!(
            "a call made while down completed {:?} after the worker was back",
            back.elapsed()
        );
        let info = within(LIMIT, w.info_request().send().promise)
            .await
            .unwrap();
        assert_eq!(
            info.get().unwrap().get_info().unwrap().get_kind().unwrap(),
            "tensor-worker"
        );
        second.child.kill().unwrap();
    })
    .unwrap();
}
