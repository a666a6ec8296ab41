//! Send-able handles: workers reached from multi-threaded tokio code and
//! plain threads, pipelined chains through a handle in one round trip, and
//! clear errors where a client cannot run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker, WorkerHandle};
use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Error, Handle, Runtime, ServeOptions, VirtualOptions};
use common::Transport;
use ndarray::{array, ArrayD};

const LIMIT: Duration = Duration::from_secs(30);

fn tokio_mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// A tensor worker reached through a handle over `t` (virtual or TCP).
async fn worker(rt: &Arc<Runtime>, t: Transport) -> (WorkerHandle, Option<capactor::TcpServer>) {
    let make = || TensorWorker::new("w", Quota::new(64 << 20));
    match t {
        Transport::Tcp => {
            let server = serve_tensor(rt).await;
            let addr = server.local_addr().to_string();
            let w = WorkerHandle::connect(rt, &addr, &ConnectOptions::default())
                .await
                .unwrap();
            (w, Some(server))
        }
        _ => (WorkerHandle::spawn(rt, make), None),
    }
}

/// Serves a tensor worker over TCP on 127.0.0.1, from a vat of `rt` (the
/// server side runs in a capactor event loop; the test's code does not).
async fn serve_tensor(rt: &Arc<Runtime>) -> capactor::TcpServer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt2 = rt.clone();
    std::thread::spawn(move || {
        capactor::block_on(async move {
            let server = rt2
                .serve_tcp::<capactor::schema::tensor_capnp::tensor_worker::Client, _, _>(
                    "127.0.0.1:0",
                    || TensorWorker::new("w", Quota::new(64 << 20)),
                    ServeOptions::insecure_loopback(),
                )
                .await
                .unwrap();
            let _ = tx.send(server);
        })
        .unwrap()
    });
    rx.await.unwrap()
}

#[test]
fn many_tasks_of_a_multi_thread_runtime_share_one_handle() {
    for t in [Transport::Virtual, Transport::Tcp] {
        eprintln!("--- over {t:?}");
        let rt = Arc::new(Runtime::builder().vats(2).build().unwrap());
        tokio_mt().block_on(async {
            let (w, _server) = worker(&rt, t).await;
            let tasks: Vec<_> = (0..32)
                .map(|i| {
                    let w = w.clone();
                    tokio::spawn(async move {
                        let mut sums = Vec::new();
                        for j in 0..10 {
                            let x = w.arange(DType::F64, 0.0, f64::from(i * 10 + j), 1.0);
                            sums.push((&x * 2.0).sum().item().await.unwrap());
                        }
                        sums
                    })
                })
                .collect();
            for (i, task) in tasks.into_iter().enumerate() {
                let sums = common::within(LIMIT, task).await.unwrap();
                for (j, got) in sums.into_iter().enumerate() {
                    let n = (i * 10 + j) as f64;
                    assert_eq!(got, n * (n - 1.0), "task {i}, call {j}");
                }
            }
        });
    }
}

#[test]
fn a_pipelined_chain_through_a_handle_is_one_round_trip() {
    let rt = Arc::new(Runtime::builder().vats(2).build().unwrap());
    let mut opts = VirtualOptions::default();
    let one_way = Duration::from_millis(40);
    opts.link.latency = one_way;
    let w = WorkerHandle::spawn_with(&rt, || TensorWorker::new("w", Quota::new(1 << 20)), opts);
    tokio_mt().block_on(async {
        // Warm up: the connection is open and the gate passed.
        w.zeros(DType::F32, &[1]).sum().item().await.unwrap();
        let before = w.round_trips().await.unwrap();
        let start = Instant::now();
        let x = w.tensor(array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
        let m = w.tensor(array![[1.0f32, 0.0], [0.0, 1.0]].into_dyn());
        let b = w.tensor(array![-10.0f32, 1.0].into_dyn());
        let y = x.matmul(&m).add(&b).relu().sum();
        let got = tokio::spawn(async move { y.item().await }).await.unwrap();
        let took = start.elapsed();
        // [[1,2],[3,4]] @ I + [-10, 1] = [[-9, 3], [-7, 5]]; relu; sum = 8.
        assert_eq!(got.unwrap(), 8.0);
        assert_eq!(w.round_trips().await.unwrap() - before, 1);
        // Six dependent calls; one round trip of 80 ms, not six.
        let rtt = one_way * 2;
        assert!(took >= rtt, "took {took:?}");
        assert!(took < rtt * 2, "took {took:?}: more than one round trip");
    });
}

#[test]
fn shape_ops_through_a_handle_pipeline_except_on_split_parts() {
    let rt = Arc::new(Runtime::builder().vats(2).build().unwrap());
    let mut opts = VirtualOptions::default();
    let one_way = Duration::from_millis(40);
    opts.link.latency = one_way;
    let w = WorkerHandle::spawn_with(&rt, || TensorWorker::new("w", Quota::new(1 << 20)), opts);
    let rtt = one_way * 2;
    tokio_mt().block_on(async {
        w.zeros(DType::F32, &[1]).sum().item().await.unwrap();
        let x = w.tensor(array![[1.0f64, 2.0], [3.0, 4.0]].into_dyn());
        // einsum, topk and a read of one of its results: one round trip.
        let start = Instant::now();
        let (values, indices) = w.einsum("ij,jk->ik", &[&x, &x]).flip(&[]).topk(1, 1, true);
        let got = tokio::spawn(async move { values.to_ndarray::<f64>().await })
            .await
            .unwrap();
        let took = start.elapsed();
        // x @ x = [[7, 10], [15, 22]], flipped [[22, 15], [10, 7]].
        assert_eq!(got.unwrap().into_raw_vec_and_offset().0, [22.0, 10.0]);
        assert!(took < rtt * 2, "took {took:?}: more than one round trip");
        let at = indices.to_ndarray::<i64>().await.unwrap();
        assert_eq!(at.into_raw_vec_and_offset().0, [0, 0]);
        // A split's parts are a list of capabilities: calls on them wait
        // for its answer, so reading one takes a second round trip.
        let start = Instant::now();
        let parts = w.stack(&[&x, &x], 0).split(2, 0);
        assert_eq!(parts.len(), 2);
        let sum = parts[1].sum().item().await.unwrap();
        assert_eq!(sum, 10.0);
        assert!(start.elapsed() >= rtt * 2, "took {:?}", start.elapsed());
        let at = w.arange(DType::I64, 0.0, 5.0, 1.0).split_at(&[2], 0);
        assert_eq!(at[0].to_ndarray::<i64>().await.unwrap().len(), 2);
        let bad = w.eye(DType::F32, 3, None, 0).split(2, 0);
        let e = bad[0].shape().await.unwrap_err().to_string();
        assert!(
            e.contains("split: 2 sections do not divide axis 0 of length 3"),
            "{e}"
        );
    });
}

#[test]
fn handles_work_from_plain_threads_without_any_event_loop() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    let w = WorkerHandle::spawn(&rt, || TensorWorker::new("w", Quota::new(1 << 20)));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let w = w.clone();
            std::thread::spawn(move || {
                let x = w.tensor(ArrayD::from_elem(vec![3], i as f32));
                futures::executor::block_on(x.sum().to_ndarray::<f32>()).unwrap()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let got = t.join().unwrap();
        assert_eq!(got.into_iter().next(), Some(3.0 * i as f32));
    }
}

#[test]
fn tensors_move_between_two_worker_handles_of_one_runtime() {
    let rt = Runtime::builder().vats(2).build().unwrap();
    let a = WorkerHandle::spawn(&rt, || TensorWorker::new("a", Quota::new(1 << 20)));
    let b = WorkerHandle::spawn(&rt, || TensorWorker::new("b", Quota::new(1 << 20)));
    tokio_mt().block_on(async {
        let x = a.arange(DType::I64, 0.0, 5.0, 1.0);
        let on_b = x.copy_to(&b);
        assert_eq!((&on_b + 1i64).sum().item().await.unwrap(), 15.0);
        assert_eq!(b.memory().await.unwrap().used, 5 * 8);
        // A handle of another runtime is refused, clearly.
        let other = Runtime::builder().vats(1).build().unwrap();
        let c = WorkerHandle::spawn(&other, || TensorWorker::new("c", Quota::new(1 << 20)));
        let stray = c.ones(DType::I64, &[5]);
        let err = x.add(&stray).item().await.unwrap_err();
        assert!(
            err.to_string().contains("another capactor runtime"),
            "{err}"
        );
    });
}

#[test]
fn a_handle_whose_runtime_was_dropped_fails_clearly() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    let w = WorkerHandle::spawn(&rt, || TensorWorker::new("w", Quota::new(1 << 20)));
    let x = w.ones(DType::F32, &[2]);
    tokio_mt().block_on(async {
        assert_eq!(x.sum().item().await.unwrap(), 2.0);
        drop(rt);
        let err = x.sum().item().await.unwrap_err();
        assert!(matches!(err, Error::RuntimeStopped), "{err}");
        assert!(err.is_disconnected());
        let err = w.memory().await.unwrap_err();
        assert!(err.to_string().contains("runtime"), "{err}");
    });
}

#[test]
fn block_on_inside_a_runtime_returns_an_error_that_says_what_to_do() {
    tokio_mt().block_on(async {
        let err = capactor::block_on(async { 1 }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("inside a tokio runtime"), "{msg}");
        assert!(msg.contains("Handle"), "{msg}");
        assert!(msg.contains("#[capactor::test]"), "{msg}");
    });
}

#[tokio::test]
async fn a_client_made_in_a_tokio_test_without_a_local_set_says_what_to_write() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    let err =
        Worker::spawn_virtual(&rt, || TensorWorker::new("w", Quota::new(1 << 20))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("LocalSet"), "{msg}");
    assert!(msg.contains("#[capactor::test]"), "{msg}");
    let err = Worker::connect("127.0.0.1:1", &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("capactor::block_on"), "{err}");
    // And with run_local the same code works in the same test.
    let sum = capactor::run_local(async {
        let w = Worker::spawn_virtual(&rt, || TensorWorker::new("w", Quota::new(1 << 20)))?;
        w.ones(DType::F32, &[4]).sum().item().await
    })
    .await
    .unwrap();
    assert_eq!(sum, 4.0);
}

#[capactor::test]
async fn capactor_test_runs_an_async_body_where_clients_live() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    // One call, no type annotation.
    let w = Worker::spawn_virtual(&rt, || TensorWorker::new("w", Quota::new(1 << 20))).unwrap();
    let x = w.tensor(&array![1.0f64, 2.0, 3.0].into_dyn());
    assert_eq!(x.mean().item().await.unwrap(), 2.0);
}

#[capactor::test]
async fn capactor_test_bodies_may_return_a_result() -> Result<(), Error> {
    let rt = Runtime::builder().vats(1).build().unwrap();
    let p: Handle<probe::Client> = Handle::spawn_virtual(&rt, || Probe::new("p"));
    let pinged = p
        .run(|p| async move { p.echo_request().send().promise.await.is_ok() })
        .await?;
    assert!(pinged);
    Ok(())
}

#[test]
fn indexing_and_assignment_through_a_handle_keep_their_order() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    let w = WorkerHandle::spawn(&rt, || TensorWorker::new("w", Quota::new(1 << 20)));
    futures::executor::block_on(async {
        let x = w.tensor(array![[1i64, 2, 3], [4, 5, 6]].into_dyn());
        let idx = w.tensor(array![[2i64], [0]].into_dyn());
        let before = x.take_along_axis(&idx, 1);
        let rows = x.index_select(&w.tensor(array![1i64].into_dyn()), 0);
        let zero = w.tensor(array![0i64].into_dyn());
        // x[1:] = 0; jobs run on the vat in order, so the read after it,
        // sent without waiting, sees it (the handle's link is virtual).
        let row = capactor::actors::tensor::ops::SliceSpec::new(Some(1), None, 1);
        let done = x.assign(&[row], &zero);
        let after = x.mask_select(&x.gt_scalar(1i64));
        let want = array![[1i64, 2, 3], [0, 0, 0]].into_dyn();
        assert_eq!(x.to_ndarray::<i64>().await.unwrap(), want);
        assert_eq!(
            after.to_ndarray::<i64>().await.unwrap(),
            array![2i64, 3].into_dyn()
        );
        assert_eq!(
            before.to_ndarray::<i64>().await.unwrap(),
            array![[3i64], [4]].into_dyn()
        );
        assert_eq!(
            rows.to_ndarray::<i64>().await.unwrap(),
            array![[4i64, 5, 6]].into_dyn()
        );
        assert_eq!(done.to_ndarray::<i64>().await.unwrap(), want);
        let added = zero.scatter_add(
            &w.tensor(array![0i64, 0].into_dyn()),
            &w.tensor(array![2i64, 3].into_dyn()),
            0,
        );
        assert_eq!(
            added.to_ndarray::<i64>().await.unwrap(),
            array![5i64].into_dyn()
        );
        let put = zero.scatter(
            &w.tensor(array![0i64, 0].into_dyn()),
            &w.tensor(array![2i64, 3].into_dyn()),
            0,
        );
        assert_eq!(
            put.to_ndarray::<i64>().await.unwrap(),
            array![3i64].into_dyn()
        );
        let m = x.assign_mask(&x.eq_scalar(0i64), &w.tensor(array![7i64].into_dyn()));
        assert_eq!(
            m.to_ndarray::<i64>().await.unwrap(),
            array![[1i64, 2, 3], [7, 7, 7]].into_dyn()
        );
    });
}
