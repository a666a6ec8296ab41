//! A reconnect policy's limits: used up against an address where nothing
//! listens, a worker that never comes back, a token the gate refuses.

mod common;

use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Connection, Error, Reconnect, Runtime, ServeOptions};
use common::{assert_disconnected, ping, sleep_call, within};

const LIMIT: Duration = Duration::from_secs(20);

fn policy(f: impl FnOnce(&mut Reconnect)) -> ConnectOptions {
    let mut p = Reconnect::default();
    f(&mut p);
    let mut opts = ConnectOptions::default();
    opts.reconnect = Some(p);
    opts
}

/// An address on 127.0.0.1 where nothing listens.
fn nothing_listening() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn a_policy_pointed_at_nothing_gives_a_clear_error_when_used_up() {
    capactor::block_on(async {
        let addr = nothing_listening();
        let opts = policy(|p| p.max_attempts = Some(3));
        let err = within(LIMIT, capactor::connect_tcp::<probe::Client>(&addr, &opts))
            .await
            .err()
            .unwrap();
        assert!(err.is_disconnected(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&addr) && text.contains("gave up after 3 attempts"),
            "{text}"
        );

        // A limit on time, too.
        let opts = policy(|p| p.max_elapsed = Some(Duration::from_millis(300)));
        let start = Instant::now();
        let err = within(LIMIT, capactor::connect_tcp::<probe::Client>(&addr, &opts))
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("reconnect policy gave up"),
            "{err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    })
    .unwrap();
}

#[test]
fn a_worker_that_never_comes_back_fails_calls_with_the_policys_error() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let server = within(
            LIMIT,
            rt.serve_tcp::<probe::Client, _, _>(
                "127.0.0.1:0",
                || Probe::new("p"),
                ServeOptions::insecure_loopback(),
            ),
        )
        .await
        .unwrap();
        let addr = server.local_addr().to_string();
        let opts = policy(|p| p.max_attempts = Some(3));
        let p: Connection<probe::Client> = within(LIMIT, capactor::connect_tcp(&addr, &opts))
            .await
            .unwrap();
        ping(&p, LIMIT).await;
        drop(server);
        within(LIMIT, p.link().closed()).await;
        let err = within(LIMIT, sleep_call(&p, 1)).await.err().unwrap();
        assert_disconnected(&err);
        assert!(!Error::is_restarting(&err), "{err}");
        assert!(err.extra.contains("gave up after 3 attempts"), "{err}");
    })
    .unwrap();
}

#[test]
fn a_rejected_token_is_not_retried() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut serve = ServeOptions::default();
        serve.token = Some(b"the right token, 16+ bytes".to_vec());
        let server = within(
            LIMIT,
            rt.serve_tcp::<probe::Client, _, _>("127.0.0.1:0", || Probe::new("p"), serve),
        )
        .await
        .unwrap();
        let mut opts = policy(|p| p.max_elapsed = None);
        opts.token = b"a wrong token of 16+ bytes".to_vec();
        let addr = server.local_addr().to_string();
        let err = within(LIMIT, capactor::connect_tcp::<probe::Client>(&addr, &opts))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("credential rejected"), "{err}");
    })
    .unwrap();
}

#[test]
fn a_policy_with_no_attempts_is_refused() {
    capactor::block_on(async {
        let opts = policy(|p| p.max_attempts = Some(0));
        let err = capactor::connect_tcp::<probe::Client>("127.0.0.1:1", &opts)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    })
    .unwrap();
}
