//! What the network does to calls: cut links, latency, bandwidth, a server
//! that goes away, a peer that goes silent, and a client that never speaks.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Heartbeat, LinkConditions, ServeOptions, VirtualOptions};
use common::{
    assert_disconnected, closed_by_peer, connect_probe, connect_raw, each, eventually, ping,
    serve_probe, sleep_call, within, Harness, Transport, REMOTE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// A virtual probe over a link with `conditions`.
fn shaped_probe(h: &Harness, conditions: LinkConditions) -> capactor::Connection<probe::Client> {
    let mut opts = VirtualOptions::default();
    opts.link = conditions;
    h.rt.spawn_virtual_with(|| Probe::new("probe"), &opts)
}

fn latency(l: Duration) -> LinkConditions {
    let mut c = LinkConditions::default();
    c.latency = l;
    c
}

#[test]
fn cutting_a_link_fails_pending_calls_on_both_sides_with_disconnected() {
    each(&REMOTE, |h| async move {
        let live = Arc::new(AtomicU32::new(0));
        let shared = live.clone();
        let p = h
            .spawn::<probe::Client, _, _>(move || Probe::counting("probe", shared.clone()))
            .await;
        // The client holds a counter on the actor's side of the link.
        let mut req = p.counter_request();
        req.get().set_start(0);
        let counter = req.send().pipeline.get_counter();
        within(LIMIT, counter.next_request().send().promise)
            .await
            .unwrap();
        assert_eq!(live.load(Ordering::Relaxed), 1);

        let sleeping = sleep_call(&p, 60_000);
        // Calls on one capability arrive in order: once the ping is
        // answered, the sleep is running on the actor.
        ping(&p, LIMIT).await;
        p.cut();

        let err = within(LIMIT, sleeping).await.unwrap_err();
        assert_disconnected(&err);
        within(LIMIT, p.link().closed()).await;
        assert!(p.link().is_closed());
        // The actor's side lets go of what the connection held.
        eventually(LIMIT, || live.load(Ordering::Relaxed) == 0).await;
        // New calls fail at once too.
        let err = within(LIMIT, counter.next_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
    });
}

#[test]
fn a_call_over_a_slow_link_takes_at_least_a_round_trip() {
    each(&[Transport::Virtual], |h| async move {
        let l = Duration::from_millis(30);
        let p = shaped_probe(&h, latency(l));
        ping(&p, LIMIT).await;
        let start = Instant::now();
        ping(&p, LIMIT).await;
        let took = start.elapsed();
        eprintln!("one call: {took:?}");
        assert!(took >= 2 * l, "one call took {took:?}, less than 2 x {l:?}");
    });
}

#[test]
fn a_pipelined_chain_costs_one_round_trip_where_awaiting_each_costs_one_per_call() {
    each(&[Transport::Virtual], |h| async move {
        let l = Duration::from_millis(30);
        let rtt = 2 * l;
        let p = shaped_probe(&h, latency(l));
        ping(&p, LIMIT).await;

        // counter(), then ten next() on the counter before it exists: each
        // next depends on the counter and on the one before it.
        let start = Instant::now();
        let mut req = p.counter_request();
        req.get().set_start(0);
        let counter = req.send().pipeline.get_counter();
        let calls: Vec<_> = (0..10)
            .map(|_| counter.next_request().send().promise)
            .collect();
        let mut values = Vec::new();
        for c in calls {
            values.push(within(LIMIT, c).await.unwrap().get().unwrap().get_value());
        }
        let pipelined = start.elapsed();
        assert_eq!(values, (0..10).collect::<Vec<_>>());

        // The same chain, awaiting every step.
        let start = Instant::now();
        let mut req = p.counter_request();
        req.get().set_start(0);
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        let counter = reply.get().unwrap().get_counter().unwrap();
        let mut values = Vec::new();
        for _ in 0..10 {
            let r = within(LIMIT, counter.next_request().send().promise)
                .await
                .unwrap();
            values.push(r.get().unwrap().get_value());
        }
        let awaited = start.elapsed();
        assert_eq!(values, (0..10).collect::<Vec<_>>());

        eprintln!("pipelined: {pipelined:?}, awaited: {awaited:?}");
        assert!(
            pipelined < 4 * rtt,
            "pipelined chain took {pipelined:?}, RTT {rtt:?}"
        );
        assert!(
            awaited >= 10 * rtt,
            "awaited chain took {awaited:?}, RTT {rtt:?}"
        );
    });
}

#[test]
fn a_bandwidth_cap_slows_a_large_echo_both_ways() {
    each(&[Transport::Virtual], |h| async move {
        let mut cond = LinkConditions::default();
        cond.bandwidth = Some(10 << 20);
        let p = shaped_probe(&h, cond);
        ping(&p, LIMIT).await;
        let payload = vec![0x5au8; 1 << 20];
        let start = Instant::now();
        let mut req = p.echo_request();
        req.get().set_data(&payload);
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        let took = start.elapsed();
        assert_eq!(
            reply.get().unwrap().get_data().unwrap().len(),
            payload.len()
        );
        eprintln!("1 MiB echo: {took:?}");
        // 1 MiB at 10 MiB/s is 0.1 s each way.
        assert!(
            took >= Duration::from_millis(195),
            "1 MiB there and back at 10 MiB/s took only {took:?}"
        );
    });
}

#[test]
fn dropping_the_tcp_server_fails_a_pending_call_with_disconnected() {
    each(&[Transport::Tcp], |h| async move {
        let mut p = h.probe().await;
        let sleeping = sleep_call(&p, 60_000);
        ping(&p, LIMIT).await;
        drop(p.take_server());
        let err = within(Duration::from_secs(5), sleeping).await.unwrap_err();
        assert_disconnected(&err);
        within(LIMIT, p.link().closed()).await;
    });
}

/// A TCP proxy on 127.0.0.1 that forwards bytes both ways until frozen,
/// then forwards nothing more but keeps both sockets open: a half-open
/// peer, as a dead host or a dropped route looks to TCP.
struct FreezingProxy {
    addr: String,
    freeze: CancellationToken,
}

impl FreezingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = within(LIMIT, TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let freeze = CancellationToken::new();
        let frozen = freeze.clone();
        tokio::task::spawn_local(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let up = within(LIMIT, TcpStream::connect(upstream)).await.unwrap();
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::task::spawn_local(forward(dr, uw, frozen.clone()));
                tokio::task::spawn_local(forward(ur, dw, frozen.clone()));
            }
        });
        FreezingProxy { addr, freeze }
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: CancellationToken,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = tokio::select! {
            _ = frozen.cancelled() => break,
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    // Frozen: hold both sockets open, silent, until the test ends.
    std::future::pending::<()>().await;
    drop((from, to));
}

#[test]
fn heartbeats_notice_a_half_open_peer_and_fail_pending_calls() {
    each(&[Transport::Tcp], |h| async move {
        let server = serve_probe(&h.rt, "probe", ServeOptions::default()).await;
        let proxy = FreezingProxy::start(server.local_addr()).await;
        let mut hb = Heartbeat::default();
        hb.interval = Duration::from_millis(100);
        hb.timeout = Duration::from_millis(300);
        let mut opts = ConnectOptions::default();
        opts.heartbeat = Some(hb);
        let conn: capactor::Connection<probe::Client> =
            within(LIMIT, capactor::connect_tcp(&proxy.addr, &opts))
                .await
                .unwrap();

        // A healthy link outlives several heartbeat timeouts.
        within(LIMIT, sleep_call(&conn, 1_000)).await.unwrap();
        assert!(!conn.link().is_closed());

        let sleeping = sleep_call(&conn, 60_000);
        ping(&conn, LIMIT).await;
        proxy.freeze.cancel();
        let frozen_at = Instant::now();
        let err = within(Duration::from_secs(5), sleeping).await.unwrap_err();
        assert_disconnected(&err);
        within(LIMIT, conn.link().closed()).await;
        let took = frozen_at.elapsed();
        eprintln!("half-open peer noticed after {took:?}");
        assert!(
            took >= Duration::from_millis(300),
            "closed {took:?} after the freeze, before the heartbeat timeout"
        );
        drop(server);
    });
}

#[test]
fn a_tcp_server_with_an_idle_timeout_closes_a_silent_connection() {
    each(&[Transport::Tcp], |h| async move {
        let mut opts = ServeOptions::default();
        opts.idle_timeout = Some(Duration::from_millis(200));
        let server = serve_probe(&h.rt, "probe", opts).await;
        let start = Instant::now();
        let mut raw = connect_raw(&server).await;
        closed_by_peer(&mut raw, Duration::from_secs(5)).await;
        let took = start.elapsed();
        eprintln!("silent connection closed after {took:?}");
        assert!(
            took >= Duration::from_millis(200),
            "closed after {took:?}, before the idle timeout"
        );
        // A client that talks is served.
        let conn = connect_probe(&server, &ConnectOptions::default()).await;
        ping(&conn, LIMIT).await;
    });
}
