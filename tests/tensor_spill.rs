//! A worker with a spill directory keeps uploads past its memory limit in
//! memory-mapped files, serves them from there, and removes the files when
//! the tensors are freed (and what a crashed worker left at start-up).

mod common;

use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{
    Array, DataOptions, Quota, Spill, TensorWorker, Worker, WorkerState,
};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, eventually, within, REMOTE};
use ndarray::ArrayD;

const LIMIT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

fn tensor(seed: i64) -> Array {
    Array::I64(ArrayD::from_shape_fn(vec![(12 * MIB / 8) as usize], |i| {
        i[0] as i64 * seed
    }))
}

fn spilling(ram: u64, dir: &std::path::Path) -> (Arc<WorkerState>, Arc<Spill>) {
    let spill = Spill::open(dir, 64 * MIB).unwrap();
    let mut opts = DataOptions::default();
    opts.spill = Some(spill.clone());
    (WorkerState::with_options(Quota::new(ram), opts), spill)
}

#[test]
fn uploads_past_the_memory_limit_are_held_and_served_from_spill_files() {
    each(&REMOTE, |h| async move {
        let dir = tempfile::tempdir().unwrap();
        let (state, spill) = spilling(16 * MIB, dir.path());
        let s = state.clone();
        let w = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::with_state("w", s.clone()))
            .await;
        let w = Worker::new(w.client.clone());
        // The third, spilled, is f16: the spill path is dtype-generic.
        let c = Array::F16(ArrayD::from_shape_fn(vec![(6 * MIB) as usize], |i| {
            capactor::actors::tensor::f16::from_f32((i[0] % 1000) as f32)
        }));
        let (a, b) = (tensor(1), tensor(2));
        let (ta, tb, tc) = (w.from_array(&a), w.from_array(&b), w.from_array(&c));
        for (t, x) in [(&ta, &a), (&tb, &b), (&tc, &c)] {
            assert_eq!(within(LIMIT, t.to_array()).await.unwrap(), *x);
        }
        // 36 MiB held by a worker whose memory limit is 16 MiB.
        assert_eq!(state.quota().used(), 12 * MIB);
        assert_eq!(spill.quota().used(), 24 * MIB);
        assert_eq!(spill.files(), 2);
        // An op needs its input in memory: there is no room for a spilled one
        // while `ta` holds the memory, and then there is.
        let err = within(LIMIT, tb.sum().item()).await.unwrap_err();
        assert!(
            err.to_string().contains("worker memory limit exceeded"),
            "{err}"
        );
        drop(ta);
        eventually(LIMIT, || state.quota().used() == 0).await;
        let sum: f64 = (0..(12 * MIB / 8)).map(|i| (i * 2) as f64).sum();
        assert_eq!(within(LIMIT, tb.sum().item()).await.unwrap(), sum);
        // Read back into memory for good: its file is gone.
        eventually(LIMIT, || spill.files() == 1).await;
        drop((tb, tc));
        eventually(LIMIT, || spill.files() == 0 && spill.quota().used() == 0).await;
    });
}

#[test]
fn a_copy_into_a_full_worker_lands_in_its_spill_directory() {
    let rt = capactor::Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (state, spill) = spilling(8 * MIB, dir.path());
        let dest: capactor::Connection<tensor_worker::Client> =
            rt.spawn_virtual(move || TensorWorker::with_state("dest", state.clone()));
        let source: capactor::Connection<tensor_worker::Client> =
            rt.spawn_virtual(|| TensorWorker::new("source", Quota::new(1 << 30)));
        let (from, to) = (
            Worker::new(source.client().clone()),
            Worker::new(dest.client().clone()),
        );
        let x = tensor(5);
        let copy = from.from_array(&x).copy_to(&to);
        assert_eq!(within(LIMIT, copy.to_array()).await.unwrap(), x);
        assert_eq!((spill.files(), spill.quota().used()), (1, 12 * MIB));
        drop(copy);
        eventually(LIMIT, || spill.files() == 0).await;
    })
    .unwrap();
}

#[test]
fn spill_files_a_dead_worker_left_are_removed_and_a_bad_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("capactor-spill-4000000000");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("0.tensor"), b"left behind").unwrap();
    let live = dir.path().join("capactor-spill-1");
    std::fs::create_dir(&live).unwrap();
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"not ours").unwrap();
    let spill = Spill::open(dir.path(), MIB).unwrap();
    assert!(!stale.exists(), "a dead worker's files are removed");
    assert!(live.exists() && other.exists(), "nothing else is touched");
    let mine = spill.path().to_path_buf();
    assert!(mine.exists());
    drop(spill);
    assert!(!mine.exists(), "a worker removes its own directory");
    let err = Spill::open(dir.path().join("missing"), MIB).unwrap_err();
    assert!(err.to_string().contains("spill directory"), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}
