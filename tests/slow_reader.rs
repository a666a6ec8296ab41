//! A peer that does not read what the worker sends cannot make the worker
//! queue replies without bound: large replies past the connection's budget
//! are refused, reads pause while writes are blocked, and a peer that reads
//! nothing for the stall timeout is disconnected.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use capactor::actors::tensor::{DType, TensorWorker, Worker};
use capactor::schema::actor_capnp::gate;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Quota, Runtime, ServeOptions};
use capnp_rpc::rpc_twoparty_capnp::Side;
use common::{until, within};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_reply_past_the_outgoing_budget_is_refused() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut serve = ServeOptions::insecure_loopback();
        serve.limits.max_outgoing_bytes = 1 << 20;
        let q = Quota::new(1 << 30);
        let server = rt
            .serve_tcp::<tensor_worker::Client, _, _>(
                "127.0.0.1:0",
                move || TensorWorker::new("t", q.clone()),
                serve,
            )
            .await
            .unwrap();
        let conn: capactor::Connection<tensor_worker::Client> =
            capactor::connect_tcp(&server.local_addr().to_string(), &ConnectOptions::default())
                .await
                .unwrap();
        let w = Worker::new(conn.client().clone());
        let big = w.zeros(DType::F32, &[1024, 1024]);
        let err = within(LIMIT, big.to_array()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("outgoing queue limit exceeded: 4194304 > 1048576"),
            "{err}"
        );
        let small = w.zeros(DType::F32, &[16, 16]);
        within(LIMIT, small.to_array()).await.unwrap();
    })
    .unwrap();
}

/// Reads normally until frozen, then never again.
struct Freezable<R> {
    inner: R,
    frozen: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Freezable<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[test]
fn a_peer_that_stops_reading_is_disconnected_and_frees_what_it_held() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut serve = ServeOptions::insecure_loopback();
        serve.limits.write_stall_timeout = Some(Duration::from_millis(300));
        // Room for four of the 4 MiB replies below; the rest are refused
        // without being built.
        serve.limits.max_outgoing_bytes = 16 << 20;
        let quota = Quota::new(1 << 30);
        let q = quota.clone();
        let server = rt
            .serve_tcp::<tensor_worker::Client, _, _>(
                "127.0.0.1:0",
                move || TensorWorker::new("t", q.clone()),
                serve,
            )
            .await
            .unwrap();

        let stream = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let (r, w) = stream.into_split();
        let frozen = Arc::new(AtomicBool::new(false));
        let reader = Freezable {
            inner: r,
            frozen: frozen.clone(),
        };
        let net = capnp_rpc::twoparty::VatNetwork::new(
            reader.compat(),
            w.compat_write(),
            Side::Client,
            Default::default(),
        );
        let mut system = capnp_rpc::RpcSystem::new(Box::new(net), None);
        let gate: gate::Client = system.bootstrap(Side::Server);
        tokio::task::spawn_local(system);
        let mut open = gate.open_request();
        open.get().set_token(b"");
        let actor: tensor_worker::Client = capactor::cast(&open.send().pipeline.get_actor());
        let w = Worker::new(actor);
        let big = w.zeros(DType::F32, &[1024, 1024]);
        within(LIMIT, big.shape()).await.unwrap();
        assert_eq!(quota.live_tensors(), 1);

        // Stop reading, then ask for far more than the socket buffers hold.
        frozen.store(true, Ordering::Release);
        let reads: Vec<_> = (0..32)
            .map(|_| big.client().read_request().send().promise)
            .collect();

        // The worker notices, closes the connection, and frees the tensor.
        until(|| quota.live_tensors() == 0).await;
        assert_eq!(quota.used(), 0);
        drop(reads);

        // Everyone else is still served.
        let other: capactor::Connection<tensor_worker::Client> =
            capactor::connect_tcp(&server.local_addr().to_string(), &ConnectOptions::default())
                .await
                .unwrap();
        let x = Worker::new(other.client().clone()).ones(DType::I32, &[3]);
        assert_eq!(within(LIMIT, x.sum().item()).await.unwrap(), 3.0);
    })
    .unwrap();
}
