//! Servers and clients of different schema versions work together, over
//! the virtual and the TCP transport.
//!
//! The old side is built from the frozen schema of the release
//! (`tests/compat/v1/`, schema version 1; v2 and v3 clients too), so it knows exactly what that
//! release knew: an old client has no `ActorInfo.runtime` to read and no
//! `TensorWorker.memory` to call; an old server's generated dispatch
//! answers `unimplemented` to a method it does not know, and writes an
//! `ActorInfo` without the fields added since.

#[path = "compat/v1/mod.rs"]
mod v1;
#[path = "compat/v2/mod.rs"]
mod v2;
#[path = "compat/v3/mod.rs"]
mod v3;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{Connection, Runtime, TcpServer};
use capnp::capability::{Params, Results};
use capnp::traits::HasTypeId;

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Transport {
    Virtual,
    Tcp,
}

const REMOTE: [Transport; 2] = [Transport::Virtual, Transport::Tcp];

/// Serves what `make` makes as `S` (the server's own view) and connects
/// to it as `C` (the client's view, of another schema version).
async fn reach<S, C, F, A>(
    t: Transport,
    rt: &Runtime,
    make: F,
) -> (C, Option<TcpServer>, Box<dyn std::any::Any>)
where
    S: capnp::capability::FromClientHook + capnp::capability::FromServer<A> + Clone + 'static,
    C: capnp::capability::FromClientHook + Clone + 'static,
    A: 'static,
    F: Fn() -> A + Send + Sync + 'static,
{
    match t {
        Transport::Virtual => {
            // The virtual transport speaks the real protocol: the client's
            // calls are encoded with C's schema and decoded with S's.
            let conn: Connection<S> = rt.spawn_virtual(make);
            let client: C = capactor::cast(conn.client());
            (client, None, Box::new(conn))
        }
        Transport::Tcp => {
            let server = rt
                .serve_tcp::<S, _, _>(
                    "127.0.0.1:0",
                    make,
                    capactor::ServeOptions::insecure_loopback(),
                )
                .await
                .unwrap();
            let addr = server.local_addr().to_string();
            let conn: Connection<C> =
                capactor::connect_tcp(&addr, &capactor::ConnectOptions::default())
                    .await
                    .unwrap();
            let client = conn.client().clone();
            (client, Some(server), Box::new(conn))
        }
    }
}

fn each<F, Fut>(body: F)
where
    F: Fn(Transport, Arc<Runtime>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for t in REMOTE {
        eprintln!("--- over {t:?}");
        let rt = Arc::new(Runtime::builder().vats(2).build().unwrap());
        capactor::block_on(async {
            tokio::time::timeout(LIMIT, body(t, rt.clone()))
                .await
                .unwrap_or_else(|_| panic!("timed out over {t:?}"));
        })
        .unwrap();
    }
}

#[test]
fn a_v1_client_works_against_the_current_server() {
    each(|t, rt| async move {
        let (old, _server, _keep) =
            reach::<tensor_worker::Client, v1::tensor_capnp::tensor_worker::Client, _, _>(
                t,
                &rt,
                || TensorWorker::new("now", Quota::new(1 << 20)),
            )
            .await;

        // Tensor calls, pipelined, as version 1 knew them.
        let mut full = old.full_request();
        full.get().set_dtype(v1::tensor_capnp::DType::F32);
        full.get().init_shape(1).set(0, 3);
        full.get().init_value().set_float(2.0);
        let t3 = full.send().pipeline.get_tensor();
        let mut add = t3.binary_scalar_request();
        add.get().set_op(v1::tensor_capnp::BinaryOp::Add);
        add.get().init_scalar().set_float(0.5);
        let sum = add.send().pipeline.get_result();
        let read = sum.read_request().send().promise.await.unwrap();
        let data = read.get().unwrap().get_data().unwrap();
        assert_eq!(data.get_dtype().unwrap(), v1::tensor_capnp::DType::F32);
        let values: Vec<f32> = data
            .get_data()
            .unwrap()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, [2.5, 2.5, 2.5]);

        // Info, read with version 1's ActorInfo: the fields it knows, and
        // the server's (newer) version.
        let base: v1::actor_capnp::actor::Client = capactor::cast(&old);
        let reply = base.info_request().send().promise.await.unwrap();
        let info = reply.get().unwrap().get_info().unwrap();
        assert_eq!(info.get_name().unwrap().to_str().unwrap(), "now");
        assert_eq!(
            info.get_schema_version(),
            capactor::schema::actor_capnp::SCHEMA_VERSION
        );
        assert!(info.get_schema_version() > v1::actor_capnp::SCHEMA_VERSION);
        let names: Vec<&str> = info
            .get_interfaces()
            .unwrap()
            .iter()
            .map(|i| i.get_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["TensorWorker", "Actor"]);
        assert_eq!(
            info.get_interfaces().unwrap().get(0).get_id(),
            v1::tensor_capnp::tensor_worker::Client::TYPE_ID
        );
    });
}

/// A worker as version 1 built it: served through version 1's generated
/// code, so it knows version 1's methods only and writes version 1's
/// `ActorInfo`. Its tensor methods run the current implementation (the
/// wire encoding of their parameters and results is unchanged).
struct OldWorker {
    inner: Rc<TensorWorker>,
}

impl OldWorker {
    fn new() -> Self {
        OldWorker {
            inner: Rc::new(TensorWorker::new("old", Quota::new(1 << 20))),
        }
    }
}

impl v1::actor_capnp::actor::Server for OldWorker {
    async fn ping(
        self: Rc<Self>,
        _: v1::actor_capnp::actor::PingParams,
        _: v1::actor_capnp::actor::PingResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }

    async fn info(
        self: Rc<Self>,
        _: v1::actor_capnp::actor::InfoParams,
        mut results: v1::actor_capnp::actor::InfoResults,
    ) -> Result<(), capnp::Error> {
        let mut info = results.get().init_info();
        info.set_name("old");
        info.set_kind("tensor-worker");
        info.set_schema_version(v1::actor_capnp::SCHEMA_VERSION);
        info.set_live_objects(self.inner.quota().live_tensors());
        info.set_live_bytes(self.inner.quota().used());
        let mut list = info.init_interfaces(2);
        list.reborrow()
            .get(0)
            .set_id(v1::tensor_capnp::tensor_worker::Client::TYPE_ID);
        list.reborrow().get(0).set_name("TensorWorker");
        list.reborrow()
            .get(1)
            .set_id(v1::actor_capnp::actor::Client::TYPE_ID);
        list.reborrow().get(1).set_name("Actor");
        Ok(())
    }
}

/// Version 1's `TensorWorker` methods, run by the current implementation.
macro_rules! forward_v1 {
    ($($method:ident($params:ident, $results:ident)),* $(,)?) => {
        $(
            async fn $method(
                self: Rc<Self>,
                params: v1::tensor_capnp::tensor_worker::$params,
                results: v1::tensor_capnp::tensor_worker::$results,
            ) -> Result<(), capnp::Error> {
                tensor_worker::Server::$method(
                    self.inner.clone(),
                    Params::new(params.hook),
                    Results::new(results.hook),
                )
                .await
            }
        )*
    };
}

impl v1::tensor_capnp::tensor_worker::Server for OldWorker {
    forward_v1!(
        from_data(FromDataParams, FromDataResults),
        full(FullParams, FullResults),
        arange(ArangeParams, ArangeResults),
        random(RandomParams, RandomResults),
        concat(ConcatParams, ConcatResults),
        fetch(FetchParams, FetchResults),
    );
}

async fn old_server(
    t: Transport,
    rt: &Runtime,
) -> (
    tensor_worker::Client,
    Option<TcpServer>,
    Box<dyn std::any::Any>,
) {
    reach::<v1::tensor_capnp::tensor_worker::Client, tensor_worker::Client, _, _>(
        t,
        rt,
        OldWorker::new,
    )
    .await
}

#[test]
fn a_current_client_works_against_a_v1_server() {
    each(|t, rt| async move {
        let (client, _server, _keep) = old_server(t, &rt).await;
        let w = Worker::new(client.clone());
        let x = w.arange(DType::F32, 0.0, 4.0, 1.0).reshape(&[2, 2]);
        let y = (x.matmul(&x) * 2.0f32).sum();
        assert_eq!(y.item().await.unwrap(), 44.0);

        // A field version 1 did not have reads as its default.
        let about = capactor::describe(&client).await.unwrap();
        assert_eq!(about.name, "old");
        assert_eq!(about.schema_version, 1);
        assert_eq!(about.runtime, "", "ActorInfo.runtime defaults to empty");
        assert!(about.implements::<tensor_worker::Client>());
        assert!(
            about
                .to_string()
                .contains("runtime:        unknown (built before schema version 2)"),
            "{about}"
        );
    });
}

#[test]
fn a_method_a_v1_server_lacks_answers_unimplemented_with_a_clear_message() {
    each(|t, rt| async move {
        let (client, _server, _keep) = old_server(t, &rt).await;
        // The raw call: the old server's generated dispatch does not know
        // method @6 of TensorWorker.
        let err = client
            .memory_request()
            .send()
            .promise
            .await
            .err()
            .expect("version 1 has no TensorWorker.memory");
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented, "{err}");

        // capactor's client says what is missing, and why.
        let err = Worker::new(client.clone()).memory().await.unwrap_err();
        assert_eq!(err.kind(), capnp::ErrorKind::Unimplemented);
        let msg = err.to_string();
        assert!(
            msg.contains(
                "TensorWorker.memory (added in schema version 2) is not implemented by actor \
                 \"old\" (kind tensor-worker, schema version 1, implementing TensorWorker, Actor)"
            ),
            "{msg}"
        );

        // The connection is fine afterwards.
        let w = Worker::new(client);
        assert_eq!(
            w.full(DType::I64, &[2], 7i64).sum().item().await.unwrap(),
            14.0
        );
    });
}

#[test]
fn the_current_server_answers_the_new_method() {
    each(|t, rt| async move {
        let quota = Quota::new(1 << 20);
        let q = quota.clone();
        let (client, _server, _keep) =
            reach::<tensor_worker::Client, tensor_worker::Client, _, _>(t, &rt, move || {
                TensorWorker::new("now", q.clone())
            })
            .await;
        let w = Worker::new(client.clone());
        let x = w.zeros(DType::F64, &[16]);
        x.shape().await.unwrap();
        let m = w.memory().await.unwrap();
        assert_eq!((m.limit, m.used), (1 << 20, 128));
        assert_eq!(m.connection, None);
        let about = capactor::describe(&client).await.unwrap();
        assert_eq!(about.runtime, capactor::actor::RUNTIME);
    });
}

#[test]
fn a_v2_client_works_against_the_current_server() {
    each(|t, rt| async move {
        let (old, _server, _keep) =
            reach::<tensor_worker::Client, v2::tensor_capnp::tensor_worker::Client, _, _>(
                t,
                &rt,
                || TensorWorker::new("now", Quota::new(1 << 20)),
            )
            .await;
        let mut full = old.full_request();
        full.get().set_dtype(v2::tensor_capnp::DType::I32);
        full.get().set_shape(&[3][..]).unwrap();
        full.get().init_value().set_int(5);
        let x = full.send().pipeline.get_tensor();
        let reply = x.read_request().send().promise.await.unwrap();
        let data = reply.get().unwrap().get_data().unwrap();
        assert_eq!(
            data.get_data().unwrap(),
            &[5, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0]
        );
        // Version 2's `fetch` has no `name`: it reads as empty, a plain copy.
        let mut fetch = old.fetch_request();
        fetch.get().set_source(x.clone());
        let copy = fetch.send().pipeline.get_tensor();
        let meta = copy.meta_request().send().promise.await.unwrap();
        assert_eq!(meta.get().unwrap().get_shape().unwrap().len(), 1);
        let m = old.memory_request().send().promise.await.unwrap();
        assert_eq!(m.get().unwrap().get_used(), 24);
    });
}

#[test]
fn a_v3_client_works_against_the_current_server() {
    each(|t, rt| async move {
        let (old, _server, _keep) =
            reach::<tensor_worker::Client, v3::tensor_capnp::tensor_worker::Client, _, _>(
                t,
                &rt,
                || TensorWorker::new("now", Quota::new(1 << 20)),
            )
            .await;
        let mut arange = old.arange_request();
        arange.get().set_dtype(v3::tensor_capnp::DType::F64);
        arange.get().set_start(1.0);
        arange.get().set_stop(5.0);
        arange.get().set_step(1.0);
        let x = arange.send().pipeline.get_tensor();
        // Version 3's `reduce` has no `ddof`: it reads as 0.
        let mut sum = x.reduce_request();
        sum.get().set_op(v3::tensor_capnp::ReduceOp::Sum);
        sum.get().set_all_axes(true);
        let total = sum.send().pipeline.get_result();
        let reply = total.read_request().send().promise.await.unwrap();
        let data = reply.get().unwrap().get_data().unwrap();
        assert_eq!(data.get_data().unwrap(), &10f64.to_le_bytes());
        let mut relu = x.unary_request();
        relu.get().set_op(v3::tensor_capnp::UnaryOp::Relu);
        let r = relu.send().pipeline.get_result();
        let meta = r.meta_request().send().promise.await.unwrap();
        assert_eq!(meta.get().unwrap().get_shape().unwrap().len(), 1);
    });
}

#[test]
fn a_large_tensor_for_a_server_without_streaming_fails_with_a_clear_message() {
    each(|t, rt| async move {
        let (client, _server, _keep) = old_server(t, &rt).await;
        let w = Worker::new(client);
        let big = capactor::actors::tensor::Array::F32(ndarray::ArrayD::zeros(vec![2 << 20]));
        let err = w.send_array(big).shape().await.unwrap_err();
        assert_eq!(err.kind(), capnp::ErrorKind::Unimplemented, "{err}");
        assert!(
            err.to_string()
                .contains("TensorWorker.upload (added in schema version 3"),
            "{err}"
        );
        // Small tensors still go in one message.
        assert_eq!(
            w.full(DType::I64, &[2], 3i64).sum().item().await.unwrap(),
            6.0
        );
    });
}
