//! Worker-to-worker copies: the destination reads straight from the
//! source through a one-time ticket, over TCP (bytes bypass the client) or
//! an in-process link between virtual workers; and named objects outlive
//! the connection that made them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{Array, Quota, TensorWorker, Worker, WorkerState};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Connection, Runtime, ServeOptions, TcpServer};
use common::{eventually, within};
use ndarray::ArrayD;
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(60);

fn big() -> Array {
    Array::F32(ArrayD::from_shape_fn(vec![3 << 20], |i| i[0] as f32 * 0.25)) // 12 MiB
}

/// The token every worker of these tests is gated with: a direct copy
/// needs none, the ticket is the credential.
const TOKEN: &[u8] = b"a-token-of-at-least-16-bytes";

fn opts() -> ConnectOptions {
    let mut o = ConnectOptions::default();
    o.token = TOKEN.to_vec();
    o
}

/// A token-gated TCP worker that tells other workers its real address.
async fn tcp_worker(rt: &Runtime, name: &'static str) -> (TcpServer, Arc<WorkerState>) {
    let state = WorkerState::new(Quota::new(1 << 30));
    let s = state.clone();
    let server = rt
        .serve_tcp::<tensor_worker::Client, _, _>(
            "127.0.0.1:0",
            move || TensorWorker::with_state(name, s.clone()),
            {
                let mut o = ServeOptions::default();
                o.token = Some(TOKEN.to_vec());
                o
            },
        )
        .await
        .unwrap();
    state.set_endpoint(server.local_addr().to_string(), None);
    (server, state)
}

/// A loopback proxy to `target` that counts the bytes it carries as they
/// pass, so a test sees what crossed the client's connections.
async fn counting_proxy(target: std::net::SocketAddr, count: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::task::spawn_local(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = TcpStream::connect(target).await.unwrap();
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::task::spawn_local(pump(ir, ow, count.clone()));
            tokio::task::spawn_local(pump(or, iw, count.clone()));
        }
    });
    addr
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 64 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[test]
fn a_copy_between_tcp_workers_goes_straight_from_source_to_destination() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let (a_server, a_state) = tcp_worker(&rt, "a").await;
        let (b_server, b_state) = tcp_worker(&rt, "b").await;
        let through_client = Arc::new(AtomicU64::new(0));
        let via_a = counting_proxy(a_server.local_addr(), through_client.clone()).await;
        let via_b = counting_proxy(b_server.local_addr(), through_client.clone()).await;
        let opts = opts();
        let a: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&via_a, &opts).await.unwrap();
        let b: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&via_b, &opts).await.unwrap();
        let (wa, wb) = (
            Worker::new(a.client().clone()),
            Worker::new(b.client().clone()),
        );
        let x = big();
        let bytes = x.nbytes() as u64;
        let on_a = wa.send_array(x.clone());
        on_a.shape().await.unwrap();
        let uploaded = through_client.load(Ordering::Relaxed);
        let on_b = on_a.copy_to(&wb);
        let sum = on_b.sum();
        within(LIMIT, sum.item()).await.unwrap();
        let copy_bytes = through_client.load(Ordering::Relaxed) - uploaded;
        assert_eq!(b_state.quota().used(), bytes + 4);
        assert!(
            uploaded >= bytes,
            "the upload itself went through the proxy"
        );
        assert!(
            copy_bytes < bytes / 100,
            "{copy_bytes} bytes crossed the client for a {bytes}-byte copy"
        );
        drop((a, b));
        let _ = a_state;
    })
    .unwrap();
}

#[test]
fn a_move_between_virtual_workers_goes_over_an_in_process_link() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let (qa, qb) = (Quota::new(1 << 30), Quota::new(1 << 30));
        let (a, b) = (qa.clone(), qb.clone());
        let ca: Connection<tensor_worker::Client> =
            rt.spawn_virtual(move || TensorWorker::new("a", a));
        let cb: Connection<tensor_worker::Client> =
            rt.spawn_virtual(move || TensorWorker::new("b", b));
        let (wa, wb) = (
            Worker::new(ca.client().clone()),
            Worker::new(cb.client().clone()),
        );
        let x = big();
        let on_a = wa.send_array(x.clone());
        let on_b = on_a.move_to(&wb);
        assert_eq!(within(LIMIT, on_b.to_array()).await.unwrap(), x);
        eventually(LIMIT, || qa.used() == 0).await;
        assert_eq!(qb.used(), x.nbytes() as u64);
    })
    .unwrap();
}

#[test]
fn a_named_copy_appears_even_if_the_client_leaves_once_it_has_started() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let (a_server, a_state) = tcp_worker(&rt, "a").await;
        let (b_server, b_state) = tcp_worker(&rt, "b").await;
        let opts = opts();
        let x = big();
        {
            let a: Connection<tensor_worker::Client> =
                capactor::connect_tcp(&a_server.local_addr().to_string(), &opts)
                    .await
                    .unwrap();
            let wa = Worker::new(a.client().clone());
            let t = wa.send_array(x.clone());
            t.shape().await.unwrap();
            wa.store("x", &t, None).await.unwrap();
        }
        let b: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&b_server.local_addr().to_string(), &opts)
                .await
                .unwrap();
        let a: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&a_server.local_addr().to_string(), &opts)
                .await
                .unwrap();
        let (wa, wb) = (
            Worker::new(a.client().clone()),
            Worker::new(b.client().clone()),
        );
        let copy = wa.load("x").copy_to_named(&wb, "x-copy");
        // Started once the destination has reserved the bytes.
        eventually(LIMIT, || b_state.quota().used() > 0).await;
        drop((copy, wa, wb, a, b));
        eventually(LIMIT, || b_state.list().iter().any(|o| o.name == "x-copy")).await;
        let b: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&b_server.local_addr().to_string(), &opts)
                .await
                .unwrap();
        let got = Worker::new(b.client().clone()).load("x-copy");
        assert_eq!(within(LIMIT, got.to_array()).await.unwrap(), x);
        assert_eq!(a_state.list().len(), 1);
    })
    .unwrap();
}

#[test]
fn named_objects_outlive_their_connection_until_deleted_or_expired() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let (server, state) = tcp_worker(&rt, "w").await;
        let addr = server.local_addr().to_string();
        let opts = opts();
        let x = Array::I64(ArrayD::from_shape_fn(vec![2, 3], |i| {
            (i[0] * 3 + i[1]) as i64
        }));
        {
            let c: Connection<tensor_worker::Client> =
                capactor::connect_tcp(&addr, &opts).await.unwrap();
            let w = Worker::new(c.client().clone());
            w.store("kept", &w.from_array(&x), None).await.unwrap();
            w.store("brief", &w.from_array(&x), Some(Duration::from_millis(100)))
                .await
                .unwrap();
            let err = w.store("kept", &w.from_array(&x), None).await.unwrap_err();
            assert!(err.to_string().contains("exists already"), "{err}");
        }
        // Another client, on a new connection (and maybe another vat).
        let c: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&addr, &opts).await.unwrap();
        let w = Worker::new(c.client().clone());
        assert_eq!(within(LIMIT, w.load("kept").to_array()).await.unwrap(), x);
        eventually(LIMIT, || state.list().len() == 1).await;
        let listed = within(LIMIT, w.list()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].name.as_str(),
                listed[0].bytes,
                &listed[0].shape[..]
            ),
            ("kept", 48, &[2u64, 3][..])
        );
        let err = within(LIMIT, w.load("brief").shape()).await.unwrap_err();
        assert!(err.to_string().contains("no object named"), "{err}");
        w.delete("kept").await.unwrap();
        let err = w.delete("kept").await.unwrap_err();
        assert!(err.to_string().contains("no object named"), "{err}");
        eventually(LIMIT, || state.quota().used() == 0).await;
        for bad in ["", "a\nb"] {
            let err = w.store(bad, &w.from_array(&x), None).await.unwrap_err();
            assert!(err.to_string().contains("object name must be"), "{err}");
        }
    })
    .unwrap();
}

#[test]
fn a_ticket_is_good_for_one_transfer_only() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let (server, _state) = tcp_worker(&rt, "w").await;
        let addr = server.local_addr().to_string();
        let c: Connection<tensor_worker::Client> =
            capactor::connect_tcp(&addr, &opts()).await.unwrap();
        let w = Worker::new(c.client().clone());
        let t = w.from_array(&Array::F32(ArrayD::zeros(vec![4])));
        let reply = within(LIMIT, t.client().handoff_request().send().promise)
            .await
            .unwrap();
        let ticket = reply.get().unwrap().get_ticket().unwrap().to_vec();
        assert_eq!(ticket.len(), 16);
        // A peer with no token redeems it once; the second time fails.
        for attempt in 0..2 {
            let gate = redeem(&addr, &ticket).await;
            if attempt == 0 {
                let granted = gate.unwrap();
                let meta = granted.meta_request().send().promise.await.unwrap();
                assert_eq!(meta.get().unwrap().get_shape().unwrap().len(), 1);
                // It grants the one read, nothing else.
                let err = granted.unary_request().send().promise.await.err().unwrap();
                assert_eq!(err.kind, capnp::ErrorKind::Unimplemented, "{err}");
            } else {
                let err = gate.err().unwrap();
                assert!(err.to_string().contains("already used or expired"), "{err}");
            }
        }
    })
    .unwrap();
}

/// Redeems `ticket` at `addr` over a raw connection to the gate.
async fn redeem(
    addr: &str,
    ticket: &[u8],
) -> Result<capactor::schema::tensor_capnp::tensor::Client, capnp::Error> {
    use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
    use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (r, w) = stream.into_split();
    let net = twoparty::VatNetwork::new(
        r.compat(),
        w.compat_write(),
        Side::Client,
        Default::default(),
    );
    let mut system = RpcSystem::new(Box::new(net), None);
    let gate: capactor::schema::actor_capnp::gate::Client = system.bootstrap(Side::Server);
    tokio::task::spawn_local(system);
    let mut req = gate.redeem_request();
    req.get().set_ticket(ticket);
    let reply = req.send().promise.await?;
    reply.get()?.get_object().get_as_capability()
}
