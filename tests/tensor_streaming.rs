//! Tensors larger than one message travel in checksummed chunks, over
//! every transport, as the normal path of the client API.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{
    Array, DType, DataOptions, Download, Quota, TensorWorker, Upload, Worker, WorkerState,
};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, within, Harness, ALL};
use ndarray::ArrayD;

const LIMIT: Duration = Duration::from_secs(60);
/// Over the 4 MiB single-message threshold, under what a debug build moves
/// quickly.
const ELEMS: usize = 3 << 20; // 12 MiB of f32

fn ramp(n: usize) -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![n / 1024, 1024], |i| (i[0] * 1024 + i[1]) as f32 * 0.5)
}

async fn worker(
    h: &Harness,
    state: Arc<WorkerState>,
) -> (common::Spawned<tensor_worker::Client>, Worker) {
    let s = h
        .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::with_state("w", state.clone()))
        .await;
    let w = Worker::new(s.client.clone());
    (s, w)
}

#[test]
fn a_tensor_larger_than_a_message_goes_up_and_comes_back_whole() {
    each(&ALL, |h| async move {
        let state = WorkerState::new(Quota::new(1 << 30));
        let (_s, w) = worker(&h, state.clone()).await;
        let x = ramp(ELEMS);
        let t = w.tensor(&x);
        // Ops pipeline on the streamed upload like on any tensor.
        let doubled = &t * 2.0;
        let back = within(LIMIT, t.to_ndarray::<f32>()).await.unwrap();
        assert_eq!(back, x);
        let d = within(LIMIT, doubled.to_ndarray::<f32>()).await.unwrap();
        assert_eq!(d, x.mapv(|v| v * 2.0));
        assert_eq!(state.quota().used(), 2 * 4 * ELEMS as u64);
        drop((t, doubled));
        common::eventually(LIMIT, || state.quota().used() == 0).await;
    });
}

#[test]
fn every_dtype_streams_and_a_transposed_tensor_reads_in_logical_order() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, WorkerState::new(Quota::new(1 << 30))).await;
        let n = (5 << 20) + 8; // over the threshold for every dtype but bool
        let arrays = [
            Array::F64(ArrayD::from_shape_fn(vec![n / 8], |i| i[0] as f64 - 3.5)),
            Array::I32(ArrayD::from_shape_fn(vec![n / 4], |i| i[0] as i32 * -7)),
            Array::I64(ArrayD::from_shape_fn(vec![n / 8], |i| {
                i[0] as i64 * 1_000_003
            })),
            Array::Bool(ArrayD::from_shape_fn(vec![n], |i| i[0] % 3 == 0)),
        ];
        for a in arrays {
            let t = w.from_array(&a);
            assert_eq!(within(LIMIT, t.to_array()).await.unwrap(), a);
        }
        let m = ramp(ELEMS);
        let t = w.tensor(&m).t();
        let back = within(LIMIT, t.to_ndarray::<f32>()).await.unwrap();
        assert_eq!(back, m.t().to_owned());
    });
}

#[test]
fn progress_is_reported_both_ways_and_take_frees_the_tensor() {
    each(&ALL, |h| async move {
        let state = WorkerState::new(Quota::new(1 << 30));
        let (_s, w) = worker(&h, state.clone()).await;
        let a = Array::F32(ramp(ELEMS));
        let total = a.nbytes() as u64;
        let seen = Rc::new(Cell::new(0u64));
        let mut up = Upload::new(a.clone());
        let s = seen.clone();
        up.on_progress(move |done, all| {
            assert!(done > s.get() && all == total);
            s.set(done);
        });
        let t = within(LIMIT, up.run(&w)).await.unwrap();
        assert_eq!((seen.get(), up.bytes_sent()), (total, total));
        let down = Rc::new(Cell::new(0u64));
        let mut d = Download::new();
        let s = down.clone();
        d.on_progress(move |done, _| s.set(done));
        assert_eq!(within(LIMIT, d.run(&t)).await.unwrap(), a);
        assert_eq!(down.get(), total);
        let again = t.clone();
        assert_eq!(within(LIMIT, t.take()).await.unwrap(), a);
        let err = within(LIMIT, again.shape()).await.unwrap_err();
        assert!(err.to_string().contains("moved"), "{err}");
        drop(again);
        common::eventually(LIMIT, || state.quota().used() == 0).await;
    });
}

#[test]
fn a_single_message_read_of_a_tensor_too_large_for_one_is_refused_clearly() {
    each(&ALL, |h| async move {
        let mut opts = DataOptions::default();
        opts.max_single_message = 1 << 20;
        let state = WorkerState::with_options(Quota::new(1 << 30), opts);
        let (s, w) = worker(&h, state).await;
        let t = w.zeros(DType::F32, &[1 << 19]); // 2 MiB
        let err = within(LIMIT, t.client().read_request().send().promise)
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("larger than one message may carry"),
            "{err}"
        );
        // The connection is fine, and the streamed read works.
        assert_eq!(within(LIMIT, t.to_array()).await.unwrap().nbytes(), 2 << 20);
        drop(s);
    });
}
