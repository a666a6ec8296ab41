//! A worker's lifecycle under load: graceful shutdown, the grace period,
//! call deadlines, the connection limit, and panics that must stay inside
//! one actor.

mod common;

use std::pin::pin;
use std::time::{Duration, Instant};

use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, ServeOptions};
use common::{
    assert_disconnected, connect_probe, each, each_on, eventually, ping, serve_probe, sleep_call,
    within, Transport, ALL, REMOTE,
};

const LIMIT: Duration = Duration::from_secs(20);
const TCP: [Transport; 1] = [Transport::Tcp];

#[test]
fn graceful_shutdown_lets_a_call_in_flight_finish_and_refuses_new_ones() {
    each(&TCP, |h| async move {
        let mut p = h.probe().await;
        let server = p.take_server();
        let sleeping = sleep_call(&p, 300);
        eventually(LIMIT, || server.calls_in_flight() == 1).await;

        let mut shutdown = pin!(server.shutdown(Duration::from_secs(5)));
        // One poll runs the shutdown up to waiting for the sleep: from here
        // on the actor is draining.
        assert!(futures::poll!(shutdown.as_mut()).is_pending());

        let err = within(LIMIT, sleep_call(&p, 1)).await.unwrap_err();
        assert!(
            (err.kind == capnp::ErrorKind::Overloaded
                && err.extra.contains("actor is shutting down"))
                || err.kind == capnp::ErrorKind::Disconnected,
            "a call made during shutdown: {err}"
        );
        within(LIMIT, sleeping)
            .await
            .expect("the call in flight finishes");
        assert!(
            within(LIMIT, shutdown).await,
            "every call finished within the grace period"
        );
        // Shutdown closed the connection.
        within(LIMIT, p.link().closed()).await;
        let err = within(LIMIT, sleep_call(&p, 1)).await.unwrap_err();
        assert_disconnected(&err);
    });
}

#[test]
fn a_call_running_past_the_grace_period_is_cut_off() {
    each(&TCP, |h| async move {
        let mut p = h.probe().await;
        let server = p.take_server();
        let sleeping = sleep_call(&p, 60_000);
        eventually(LIMIT, || server.calls_in_flight() == 1).await;
        let start = Instant::now();
        let clean = within(LIMIT, server.shutdown(Duration::from_millis(100))).await;
        assert!(!clean, "shutdown says a call was still running");
        assert!(start.elapsed() >= Duration::from_millis(100));
        let err = within(LIMIT, sleeping).await.unwrap_err();
        assert_disconnected(&err);
    });
}

#[test]
fn shutdown_with_nothing_in_flight_returns_at_once() {
    each(&TCP, |h| async move {
        let mut p = h.probe().await;
        ping(&p, LIMIT).await;
        let server = p.take_server();
        assert!(
            within(
                Duration::from_secs(2),
                server.shutdown(Duration::from_secs(60))
            )
            .await
        );
        within(LIMIT, p.link().closed()).await;
    });
}

#[test]
fn a_call_past_its_deadline_fails_and_the_actor_keeps_serving() {
    each(&REMOTE, |h| async move {
        let mut opts = ServeOptions::default();
        opts.call_deadline = Some(Duration::from_millis(100));
        let p = h
            .spawn_with::<probe::Client, _, _>(
                || capactor::actors::Probe::new("probe"),
                Default::default(),
                opts,
                ConnectOptions::default(),
            )
            .await;
        let start = Instant::now();
        let err = within(LIMIT, sleep_call(&p, 10_000)).await.unwrap_err();
        assert_eq!(err.kind, capnp::ErrorKind::Overloaded, "{err}");
        assert!(err.extra.contains("deadline"), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(start.elapsed() < Duration::from_secs(5));
        // A call within the deadline still succeeds.
        within(LIMIT, sleep_call(&p, 1)).await.unwrap();
        ping(&p, LIMIT).await;
    });
}

#[test]
fn a_connection_over_the_limit_is_refused_and_the_others_keep_working() {
    each(&TCP, |h| async move {
        let mut opts = ServeOptions::default();
        opts.max_connections = 2;
        let server = serve_probe(&h.rt, "probe", opts).await;
        let connect = ConnectOptions::default();
        let first = connect_probe(&server, &connect).await;
        ping(&first, LIMIT).await;
        let second = connect_probe(&server, &connect).await;
        ping(&second, LIMIT).await;

        let third = connect_probe(&server, &connect).await;
        let err = within(LIMIT, sleep_call(&third, 1)).await.unwrap_err();
        assert!(err.extra.contains("connections limit exceeded"), "{err}");

        ping(&first, LIMIT).await;
        ping(&second, LIMIT).await;

        // A slot freed is a slot the next client gets, once the server has
        // noticed the client left.
        drop(third);
        let first_link = first.link().clone();
        drop(first);
        within(LIMIT, first_link.closed()).await;
        within(LIMIT, served_once_a_slot_frees(&server)).await;
    });
}

/// Connects to `server` until a connection is not refused for the
/// connection limit (the server notices a client left a moment after the
/// client does), and returns it.
async fn served_once_a_slot_frees(
    server: &capactor::TcpServer,
) -> capactor::Connection<probe::Client> {
    loop {
        let conn = connect_probe(server, &ConnectOptions::default()).await;
        match sleep_call(&conn, 1).await {
            Ok(()) => return conn,
            Err(e) if e.extra.contains("connections limit exceeded") => {
                let link = conn.link().clone();
                drop(conn);
                link.closed().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

/// Connects a client to `server` that pings every 50 ms.
async fn chatty_client(server: &capactor::TcpServer) -> capactor::Connection<probe::Client> {
    let mut hb = capactor::Heartbeat::default();
    hb.interval = Duration::from_millis(50);
    let mut opts = ConnectOptions::default();
    opts.heartbeat = Some(hb);
    connect_probe(server, &opts).await
}

#[test]
fn a_refused_client_is_closed_even_while_it_keeps_talking() {
    each(&TCP, |h| async move {
        let mut opts = ServeOptions::default();
        opts.max_connections = 1;
        let server = serve_probe(&h.rt, "probe", opts).await;
        let first = connect_probe(&server, &ConnectOptions::default()).await;
        ping(&first, LIMIT).await;
        let refused = chatty_client(&server).await;
        let err = within(LIMIT, sleep_call(&refused, 1)).await.unwrap_err();
        assert!(err.extra.contains("connections limit exceeded"), "{err}");
        within(Duration::from_secs(10), refused.link().closed()).await;

        // The refused client held no slot for good: when the first client
        // leaves, the next one is served.
        let first_link = first.link().clone();
        drop(first);
        within(LIMIT, first_link.closed()).await;
        let next = within(LIMIT, served_once_a_slot_frees(&server)).await;
        ping(&next, LIMIT).await;
    });
}

#[test]
fn shutdown_also_closes_connections_refused_for_the_limit() {
    each(&TCP, |h| async move {
        let mut opts = ServeOptions::default();
        opts.max_connections = 1;
        let server = serve_probe(&h.rt, "probe", opts).await;
        let first = connect_probe(&server, &ConnectOptions::default()).await;
        ping(&first, LIMIT).await;
        // A refused client that keeps talking (a heartbeat) never goes idle.
        let refused = chatty_client(&server).await;
        let err = within(LIMIT, sleep_call(&refused, 1)).await.unwrap_err();
        assert!(err.extra.contains("connections limit exceeded"), "{err}");

        assert!(
            within(
                Duration::from_secs(5),
                server.shutdown(Duration::from_secs(1))
            )
            .await
        );
        within(LIMIT, first.link().closed()).await;
        within(LIMIT, refused.link().closed()).await;
    });
}

#[test]
fn a_panic_in_one_actor_leaves_another_on_the_same_vat_serving() {
    each_on(&ALL, 1, |h| async move {
        let a = h.probe().await;
        let b = h.probe().await;
        let err = within(LIMIT, a.panic_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Failed, "{err}");
        ping(&b, LIMIT).await;
        let mut req = b.echo_request();
        req.get().set_data(b"still here");
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        assert_eq!(reply.get().unwrap().get_data().unwrap(), b"still here");
        // And the one that panicked serves its next call.
        ping(&a, LIMIT).await;
    });
}
