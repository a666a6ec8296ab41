//! Safe defaults in the library: serving TCP needs a token of at least 16
//! bytes or an explicit loopback-only opt-in, a worker refuses to start
//! when its connections cannot have a file descriptor each, and `Debug`
//! never prints a token.

mod common;

use std::time::Duration;

use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Runtime, ServeOptions};
use common::{connect_probe, ping, within};

const LIMIT: Duration = Duration::from_secs(20);

async fn serve(
    rt: &Runtime,
    addr: &str,
    opts: ServeOptions,
) -> capactor::Result<capactor::TcpServer> {
    within(
        LIMIT,
        rt.serve_tcp::<probe::Client, _, _>(addr, || capactor::actors::Probe::new("p"), opts),
    )
    .await
}

#[test]
fn serving_tcp_with_the_default_options_is_refused_for_want_of_a_token() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let err = serve(&rt, "127.0.0.1:0", ServeOptions::default())
            .await
            .expect_err("no token, no opt-in: refused");
        assert!(err.to_string().contains("insecure_no_auth"), "{err}");
    })
    .unwrap();
}

#[test]
fn serving_without_a_token_is_an_opt_in_allowed_on_loopback_only() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        // Refused before anything is bound.
        let err = serve(&rt, "0.0.0.0:0", ServeOptions::insecure_loopback())
            .await
            .expect_err("off loopback: refused");
        assert!(
            err.to_string()
                .contains("only allowed on a loopback address"),
            "{err}"
        );
        let server = serve(&rt, "127.0.0.1:0", ServeOptions::insecure_loopback())
            .await
            .unwrap();
        let client = connect_probe(&server, &ConnectOptions::default()).await;
        ping(&client, LIMIT).await;
    })
    .unwrap();
}

#[test]
fn a_token_shorter_than_sixteen_bytes_is_refused_at_start() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut opts = ServeOptions::default();
        opts.token = Some(vec![b'x'; capactor::MIN_TOKEN_BYTES - 1]);
        let err = serve(&rt, "127.0.0.1:0", opts.clone())
            .await
            .expect_err("short token: refused");
        assert!(err.to_string().contains("at least 16"), "{err}");
        opts.token = Some(vec![b'x'; capactor::MIN_TOKEN_BYTES]);
        serve(&rt, "127.0.0.1:0", opts).await.unwrap();
    })
    .unwrap();
}

#[test]
fn a_worker_whose_connections_exceed_the_open_file_limit_refuses_to_start() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut opts = ServeOptions::insecure_loopback();
        opts.max_connections = 1 << 40;
        let err = serve(&rt, "127.0.0.1:0", opts).await.expect_err("refused");
        assert!(err.to_string().contains("open files"), "{err}");
    })
    .unwrap();
}

#[test]
fn debug_output_of_the_options_never_shows_the_token() {
    const SECRET: &str = "do-not-print-this-token";
    let mut serve = ServeOptions::default();
    serve.token = Some(SECRET.as_bytes().to_vec());
    let mut connect = ConnectOptions::default();
    connect.token = SECRET.as_bytes().to_vec();
    let mut virt = capactor::VirtualOptions::default();
    virt.serve = serve.clone();
    virt.connect = connect.clone();
    for shown in [
        format!("{serve:?}"),
        format!("{serve:#?}"),
        format!("{connect:?}"),
        format!("{virt:?}"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        // Neither as bytes.
        let bytes = format!("{:?}", SECRET.as_bytes());
        assert!(!shown.contains(&bytes[1..bytes.len() - 1]), "{shown}");
        assert!(shown.contains("redacted, 23 bytes"), "{shown}");
    }
}

/// What one client does is not shown to another: `info` and `memory`
/// report the caller's own connection unless the worker is told to show
/// worker-wide totals.
#[test]
fn info_and_memory_show_a_caller_its_own_connection_and_totals_only_when_allowed() {
    use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker};
    use capactor::schema::tensor_capnp::tensor_worker;
    const TOKEN: &[u8] = b"info privacy test token";
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        for totals in [false, true] {
            let mut opts = ServeOptions::default();
            opts.token = Some(TOKEN.to_vec());
            opts.report_worker_totals = totals;
            let quota = Quota::new(64 << 20);
            let server = within(
                LIMIT,
                rt.serve_tcp::<tensor_worker::Client, _, _>(
                    "127.0.0.1:0",
                    move || TensorWorker::new("w", quota.clone()),
                    opts,
                ),
            )
            .await
            .unwrap();
            let addr = server.local_addr().to_string();
            let mut copts = ConnectOptions::default();
            copts.token = TOKEN.to_vec();
            copts.heartbeat = None;
            let connect = || capactor::connect_tcp::<tensor_worker::Client>(&addr, &copts);
            let a = within(LIMIT, connect()).await.unwrap();
            let b = within(LIMIT, connect()).await.unwrap();

            let wa = Worker::new(a.client().clone());
            let x = wa.zeros(DType::F32, &[64, 64]);
            let y = x.add_scalar(1.0);
            within(LIMIT, y.shape()).await.unwrap();

            let seen_by_a = within(LIMIT, capactor::describe(a.client())).await.unwrap();
            assert_eq!(
                (seen_by_a.live_objects, seen_by_a.live_bytes),
                (2, 2 * 64 * 64 * 4)
            );
            let seen_by_b = within(LIMIT, capactor::describe(b.client())).await.unwrap();
            let mem_b = within(LIMIT, Worker::new(b.client().clone()).memory())
                .await
                .unwrap();
            if totals {
                assert_eq!(seen_by_b.live_objects, 2);
                assert!(seen_by_b.calls_served >= 3, "{seen_by_b:?}");
                assert_eq!(mem_b.used, 2 * 64 * 64 * 4);
            } else {
                assert_eq!((seen_by_b.live_objects, seen_by_b.live_bytes), (0, 0));
                // Only its own calls: none finished before this `info`.
                assert_eq!(seen_by_b.calls_served, 0, "{seen_by_b:?}");
                assert_eq!(mem_b.used, 0);
            }
        }
    })
    .unwrap();
}
