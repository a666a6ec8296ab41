//! Tensors copied and moved between workers, identically for virtual and
//! TCP workers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Connection, Runtime, ServeOptions, TcpServer, VirtualOptions};
use common::{until, within};
use ndarray::array;

const LIMIT: Duration = Duration::from_secs(30);

struct Pair {
    _virtual: Connection<tensor_worker::Client>,
    _tcp: (TcpServer, Connection<tensor_worker::Client>),
    virt: (Worker, Arc<Quota>),
    tcp: (Worker, Arc<Quota>),
}

async fn pair(rt: &Runtime) -> Pair {
    let vq = Quota::new(1 << 30);
    let q = vq.clone();
    let v: Connection<tensor_worker::Client> =
        rt.spawn_virtual(move || TensorWorker::new("virtual", q));
    let tq = Quota::new(1 << 30);
    let q = tq.clone();
    let server = rt
        .serve_tcp::<tensor_worker::Client, _, _>(
            "127.0.0.1:0",
            move || TensorWorker::new("tcp", q.clone()),
            ServeOptions::insecure_loopback(),
        )
        .await
        .unwrap();
    let t: Connection<tensor_worker::Client> =
        capactor::connect_tcp(&server.local_addr().to_string(), &ConnectOptions::default())
            .await
            .unwrap();
    Pair {
        virt: (Worker::new(v.client().clone()), vq),
        tcp: (Worker::new(t.client().clone()), tq),
        _virtual: v,
        _tcp: (server, t),
    }
}

#[test]
fn copy_to_gives_each_worker_its_own_copy_both_ways() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let p = pair(&rt).await;
        let x = array![[1.0f32, -2.0], [3.0, 4.5]].into_dyn();
        for ((from, fq), (to, tq)) in [(&p.virt, &p.tcp), (&p.tcp, &p.virt)] {
            let a = from.tensor(&x);
            let b = a.copy_to(to);
            // The copy computes on the destination, pipelined.
            let doubled = b.mul_scalar(2.0f32);
            assert_eq!(
                within(LIMIT, doubled.to_ndarray::<f32>()).await.unwrap(),
                x.mapv(|v| v * 2.0)
            );
            assert_eq!(within(LIMIT, a.to_ndarray::<f32>()).await.unwrap(), x);
            assert_eq!(fq.live_tensors(), 1);
            assert_eq!(tq.live_tensors(), 2);
            drop((a, b, doubled));
            until(|| fq.live_tensors() == 0 && tq.live_tensors() == 0).await;
        }
    })
    .unwrap();
}

#[test]
fn move_to_frees_the_original_once_the_copy_lands() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let p = pair(&rt).await;
        let x = array![1i64, 2, 3].into_dyn();
        for ((from, fq), (to, tq)) in [(&p.virt, &p.tcp), (&p.tcp, &p.virt)] {
            let a = from.tensor(&x);
            let other_handle = a.clone();
            let moved = a.move_to(to);
            assert_eq!(within(LIMIT, moved.sum().item()).await.unwrap(), 6.0);
            assert_eq!(fq.used(), 0, "the original's bytes are freed");
            let err = within(LIMIT, other_handle.to_array()).await.unwrap_err();
            assert!(err.to_string().contains("moved"), "{err}");
            until(|| tq.live_tensors() == 1).await;
            drop((moved, other_handle));
            until(|| fq.live_tensors() == 0 && tq.live_tensors() == 0).await;
        }
    })
    .unwrap();
}

#[test]
fn a_tensor_from_another_worker_is_refused_as_an_argument() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let p = pair(&rt).await;
        let a = p.virt.0.tensor(&array![1.0f32].into_dyn());
        // `b` as the TCP worker's answer itself, not a pipelined promise:
        // it reaches the virtual worker as a capability the client hosts.
        let b = p.tcp.0.tensor(&array![1.0f32].into_dyn());
        let mut req = p.tcp.0.client().from_data_request();
        req.get()
            .set_data(
                within(LIMIT, b.client().read_request().send().promise)
                    .await
                    .unwrap()
                    .get()
                    .unwrap()
                    .get_data()
                    .unwrap(),
            )
            .unwrap();
        let answer = within(LIMIT, req.send().promise).await.unwrap();
        let settled = answer.get().unwrap().get_tensor().unwrap();
        let mut add = a.client().binary_request();
        add.get()
            .set_op(capactor::schema::tensor_capnp::BinaryOp::Add);
        add.get().set_other(settled);
        let sum = add.send().pipeline.get_result();
        let err = within(LIMIT, sum.meta_request().send().promise)
            .await
            .map(drop)
            .unwrap_err();
        assert!(
            err.to_string().contains("bring it here with fetch"),
            "{err}"
        );
    })
    .unwrap();
}

#[test]
fn a_promise_from_another_worker_passed_as_an_argument_fails_by_the_call_deadline() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let p = pair(&rt).await;
        let mut opts = VirtualOptions::default();
        opts.serve.call_deadline = Some(Duration::from_millis(300));
        let q = Quota::new(1 << 20);
        let short: Connection<tensor_worker::Client> =
            rt.spawn_virtual_with(move || TensorWorker::new("short", q), &opts);
        let short = Worker::new(short.client().clone());
        let a = short.tensor(&array![1.0f32].into_dyn());
        // Still a promise of the TCP worker's answer: the worker must wait
        // for it to resolve (a promise of its own would, within a round
        // trip), and capnp-rpc 0.27 never resolves one passed on from a
        // third connection. The call deadline bounds the wait.
        let b = p.tcp.0.tensor(&array![1.0f32].into_dyn());
        let err = within(LIMIT, a.add(&b).shape()).await.unwrap_err();
        assert_eq!(err.kind(), capnp::ErrorKind::Overloaded, "{err}");
        assert!(err.to_string().contains("deadline"), "{err}");
        // The worker goes on serving the connection.
        assert_eq!(within(LIMIT, a.shape()).await.unwrap(), vec![1]);
    })
    .unwrap();
}

#[test]
fn a_copy_can_be_used_as_an_argument_on_its_destination_before_it_lands() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let p = pair(&rt).await;
        let a = p.virt.0.tensor(&array![1.0f32, 2.0].into_dyn());
        let b = p.tcp.0.tensor(&array![10.0f32, 20.0].into_dyn());
        // b's copy on the virtual worker, used there at once: pipelined.
        let sum = a.add(&b.copy_to(&p.virt.0));
        let got = within(LIMIT, sum.to_ndarray::<f32>()).await.unwrap();
        assert_eq!(got, array![11.0f32, 22.0].into_dyn());
    })
    .unwrap();
}
