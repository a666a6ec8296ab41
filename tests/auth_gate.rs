//! Only a client with the worker's token reaches the actor; guessing is
//! throttled and a connection that never authenticates is closed.
//! (Floods of guesses and of silent sockets: `gate_guessing.rs`,
//! `gate_slots.rs`.)

mod common;

use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, LinkConditions, Runtime, ServeOptions};
use common::{closed_by_peer, connect_probe, connect_raw, each, ping, serve_probe, within, REMOTE};

const LIMIT: Duration = Duration::from_secs(20);

fn guarded() -> ServeOptions {
    let mut opts = ServeOptions::default();
    opts.token = Some(b"correct horse battery".to_vec());
    opts
}

fn with_token(token: &[u8]) -> ConnectOptions {
    let mut opts = ConnectOptions::default();
    opts.token = token.to_vec();
    opts
}

#[test]
fn the_right_token_opens_the_gate_and_a_wrong_one_reaches_nothing() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let server = serve_probe(&rt, "guarded", guarded()).await;
        let good = connect_probe(&server, &with_token(b"correct horse battery")).await;
        ping(&good, LIMIT).await;

        for token in [
            &b""[..],
            b"correct horse batter",
            b"correct horse batterz",
            b"correct horse battery ",
        ] {
            let bad = connect_probe(&server, &with_token(token)).await;
            let mut req = bad.echo_request();
            req.get().set_data(b"x");
            let err = within(LIMIT, req.send().promise)
                .await
                .err()
                .expect("refused");
            assert_eq!(err.kind, capnp::ErrorKind::Failed);
            assert!(err.extra.contains("credential rejected"), "{err}");
        }
        // The good client is unaffected.
        ping(&good, LIMIT).await;
    })
    .unwrap();
}

/// The gate is the same over a virtual link: a test against a virtual
/// worker meets the token check a TCP client would.
#[test]
fn a_virtual_actor_served_with_a_token_checks_it_as_tcp_does() {
    each(&REMOTE, |h| async move {
        let spawn = |token: &'static [u8]| {
            h.spawn_with::<probe::Client, _, _>(
                || Probe::new("guarded"),
                LinkConditions::default(),
                guarded(),
                with_token(token),
            )
        };
        let good = spawn(b"correct horse battery").await;
        ping(&good, LIMIT).await;
        let bad = spawn(b"correct horse batter").await;
        let err = within(LIMIT, bad.echo_request().send().promise)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind, capnp::ErrorKind::Failed);
        assert!(err.extra.contains("credential rejected"), "{err}");
    });
}

#[test]
fn failed_attempts_are_throttled_and_the_connection_closed_after_five() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let server = serve_probe(&rt, "guarded", guarded()).await;
        let gate = {
            // Speak to the gate directly, as a guessing client would.
            use capactor::schema::actor_capnp::gate;
            let stream = connect_raw(&server).await;
            let (r, w) = stream.into_split();
            use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
            let net = capnp_rpc::twoparty::VatNetwork::new(
                r.compat(),
                w.compat_write(),
                capnp_rpc::rpc_twoparty_capnp::Side::Client,
                Default::default(),
            );
            let mut system = capnp_rpc::RpcSystem::new(Box::new(net), None);
            let gate: gate::Client = system.bootstrap(capnp_rpc::rpc_twoparty_capnp::Side::Server);
            tokio::task::spawn_local(system);
            gate
        };
        let started = Instant::now();
        let mut errors = Vec::new();
        for _ in 0..6 {
            let mut req = gate.open_request();
            req.get().set_token(b"guess");
            errors.push(
                within(LIMIT, req.send().promise)
                    .await
                    .err()
                    .expect("refused"),
            );
        }
        // The n-th attempt of an address waits 100 ms × 2^(n-2) after the
        // one before it: 100 + 200 + 400 + 800 ms before the fifth.
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        for e in &errors[..4] {
            assert!(e.extra.contains("credential rejected"), "{e}");
        }
        // The fifth failure closes the connection.
        for e in &errors[4..] {
            assert_eq!(e.kind, capnp::ErrorKind::Disconnected, "{e}");
        }
    })
    .unwrap();
}

#[test]
fn a_connection_that_never_opens_the_gate_is_closed_after_the_handshake_timeout() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut opts = guarded();
        opts.handshake_timeout = Some(Duration::from_millis(200));
        let server = serve_probe(&rt, "guarded", opts).await;
        let mut silent = connect_raw(&server).await;
        closed_by_peer(&mut silent, LIMIT).await;
        // Authenticated clients stay.
        let good = connect_probe(&server, &with_token(b"correct horse battery")).await;
        ping(&good, LIMIT).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        ping(&good, LIMIT).await;
    })
    .unwrap();
}
