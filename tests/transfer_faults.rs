//! Streamed transfers under faults and bad input: a cut upload resumes
//! from what arrived, an abandoned one is freed, and every bad chunk,
//! id, size or ticket fails only its own transfer, clearly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::{
    Array, DType, DataOptions, Quota, TensorWorker, Upload, Worker, WorkerState,
};
use capactor::schema::tensor_capnp::{tensor_worker, upload};
use common::{each, eventually, within, Harness, Spawned, ALL, REMOTE};
use ndarray::ArrayD;

const LIMIT: Duration = Duration::from_secs(60);

fn state(resume: Duration, quota: u64) -> Arc<WorkerState> {
    let mut opts = DataOptions::default();
    opts.resume_timeout = resume;
    WorkerState::with_options(Quota::new(quota), opts)
}

async fn spawn(h: &Harness, state: &Arc<WorkerState>) -> (Spawned<tensor_worker::Client>, Worker) {
    let state = state.clone();
    let s = h
        .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::with_state("w", state.clone()))
        .await;
    let w = Worker::new(s.client.clone());
    (s, w)
}

fn big() -> Array {
    Array::I32(ArrayD::from_shape_fn(vec![3 << 20], |i| i[0] as i32)) // 12 MiB
}

/// Runs `up` against `w` and cuts `s`'s link once half has been sent.
async fn cut_halfway(up: &mut Upload, s: &Spawned<tensor_worker::Client>, w: &Worker) {
    let link = s.link().clone();
    up.on_progress(move |done, total| {
        if done >= total / 2 {
            link.cut();
        }
    });
    let err = within(LIMIT, up.run(w))
        .await
        .map(|_| ())
        .expect_err("the cut fails the run");
    assert!(err.is_disconnected(), "{err}");
    up.on_progress(|_, _| {});
}

#[test]
fn an_upload_cut_midway_resumes_on_a_new_connection_without_resending() {
    each(&REMOTE, |h| async move {
        let state = state(Duration::from_secs(30), 1 << 30);
        let (s1, w1) = spawn(&h, &state).await;
        let a = big();
        let total = a.nbytes() as u64;
        let mut up = Upload::new(a.clone());
        cut_halfway(&mut up, &s1, &w1).await;
        let sent_before = up.bytes_sent();
        let (_s2, w2) = spawn(&h, &state).await;
        let t = within(LIMIT, up.run(&w2)).await.unwrap();
        let from = up.resumed_from();
        assert!(
            from > 0 && from <= sent_before,
            "resumed from {from} of {sent_before}"
        );
        assert_eq!(up.bytes_sent() - sent_before, total - from);
        assert_eq!(within(LIMIT, t.to_array()).await.unwrap(), a);
        drop(t);
        eventually(LIMIT, || state.quota().used() == 0).await;
    });
}

#[test]
fn an_upload_left_past_the_resume_time_is_freed_and_cannot_resume() {
    each(&REMOTE, |h| async move {
        let state = state(Duration::from_millis(200), 1 << 30);
        let (s1, w1) = spawn(&h, &state).await;
        let mut up = Upload::new(big());
        cut_halfway(&mut up, &s1, &w1).await;
        eventually(LIMIT, || state.quota().used() == 0).await;
        let (_s2, w2) = spawn(&h, &state).await;
        let err = within(LIMIT, up.run(&w2)).await.err().unwrap();
        assert!(
            err.to_string().contains("no upload under way has that id"),
            "{err}"
        );
    });
}

async fn begin(w: &Worker, dtype_i32_len: u64) -> capnp::Result<upload::Client> {
    let mut req = w.client().upload_request();
    req.get()
        .set_dtype(capactor::schema::tensor_capnp::DType::I32);
    req.get().set_shape(&[dtype_i32_len][..]).unwrap();
    let reply = req.send().promise.await?;
    reply.get()?.get_upload()
}

fn write(
    up: &upload::Client,
    offset: u64,
    data: &[u8],
    crc: u32,
) -> capnp::capability::Promise<(), capnp::Error> {
    let mut req = up.write_request();
    req.get().set_offset(offset);
    req.get().set_data(data);
    req.get().set_crc32c(crc);
    req.send()
}

#[test]
fn a_corrupted_out_of_order_or_oversized_chunk_fails_only_its_upload() {
    each(&ALL, |h| async move {
        let state = state(Duration::from_secs(30), 1 << 30);
        let (_s, w) = spawn(&h, &state).await;
        let kept = w.zeros(DType::I32, &[16]);
        assert_eq!(within(LIMIT, kept.shape()).await.unwrap(), [16]);
        let chunk = [7u8; 16];
        let good = crc32c::crc32c(&chunk);
        let cases: [(u64, u32, usize, &str); 3] = [
            (0, good ^ 1, 16, "corrupted"),
            (16, good, 16, "arrived when offset 0 was due"),
            (0, good, 4, "runs past"),
        ];
        for (offset, crc, elems, why) in cases {
            let up = within(LIMIT, begin(&w, elems as u64 / 4)).await.unwrap();
            // Over a network the chunk's own answer only reaches the
            // stream's window; the finish that follows says what went wrong.
            let chunk_sent = write(&up, offset, &chunk, crc);
            let mut fin = up.finish_request();
            fin.get().set_crc32c(0);
            let (sent, fin) =
                within(LIMIT, futures::future::join(chunk_sent, fin.send().promise)).await;
            let err = fin
                .map(|_| ())
                .expect_err("a failed upload does not finish");
            assert!(err.to_string().contains(why), "{err}");
            if let Err(e) = sent {
                assert!(e.to_string().contains(why), "{e}");
            }
            // Freed at once.
            eventually(LIMIT, || state.quota().used() == 64).await;
        }
        // A finish with a wrong whole-tensor checksum publishes nothing.
        let up = within(LIMIT, begin(&w, 4)).await.unwrap();
        within(LIMIT, write(&up, 0, &chunk, good)).await.unwrap();
        let mut fin = up.finish_request();
        fin.get().set_crc32c(good ^ 1);
        let err = within(LIMIT, fin.send().promise).await.err().unwrap();
        assert!(err.to_string().contains("corrupted"), "{err}");
        eventually(LIMIT, || state.quota().used() == 64).await;
        // Everyone else is still served.
        assert_eq!(within(LIMIT, kept.shape()).await.unwrap(), [16]);
    });
}

#[test]
fn an_announced_size_over_the_quota_or_an_unknown_upload_is_refused() {
    each(&ALL, |h| async move {
        let state = state(Duration::from_secs(30), 1 << 20);
        let (_s, w) = spawn(&h, &state).await;
        let err = within(LIMIT, begin(&w, 1 << 20)).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Overloaded, "{err}");
        assert!(err.to_string().contains("memory limit exceeded"), "{err}");
        assert_eq!(state.quota().used(), 0);
        let mut req = w.client().resume_upload_request();
        req.get().set_id(&[0u8; 16]);
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        assert!(
            err.to_string().contains("no upload under way has that id"),
            "{err}"
        );
        // Two uploads at once: the second does not fit, the first goes on.
        let a = Array::I32(ArrayD::from_shape_fn(vec![160 << 10], |i| i[0] as i32));
        let first = within(LIMIT, begin(&w, 160 << 10)).await.unwrap();
        let err = within(LIMIT, begin(&w, 160 << 10)).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Overloaded, "{err}");
        let bytes = a.to_le_bytes();
        within(LIMIT, write(&first, 0, &bytes, crc32c::crc32c(&bytes)))
            .await
            .unwrap();
        let mut fin = first.finish_request();
        fin.get().set_crc32c(crc32c::crc32c(&bytes));
        let reply = within(LIMIT, fin.send().promise).await.unwrap();
        let t = w.adopt(reply.get().unwrap().get_tensor().unwrap());
        assert_eq!(within(LIMIT, t.to_array()).await.unwrap(), a);
    });
}

#[test]
fn a_client_cut_in_the_middle_of_a_download_leaves_nothing_behind() {
    each(&REMOTE, |h| async move {
        let state = state(Duration::from_secs(30), 1 << 30);
        let (s, w) = spawn(&h, &state).await;
        let t = w.send_array(big());
        let link = s.link().clone();
        let mut d = capactor::actors::tensor::Download::new();
        d.on_progress(move |done, total| {
            if done >= total / 3 {
                link.cut();
            }
        });
        assert!(within(LIMIT, d.run(&t)).await.is_err());
        assert!(d.offset() > 0);
        eventually(LIMIT, || state.quota().used() == 0).await;
    });
}

#[test]
fn many_clients_transfer_at_once() {
    each(&REMOTE, |h| async move {
        let state = state(Duration::from_secs(30), 1 << 30);
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(spawn(&h, &state).await);
        }
        let jobs = clients.iter().enumerate().map(|(i, (_, w))| async move {
            let a = Array::I64(ArrayD::from_shape_fn(vec![640 << 10], |j| {
                (j[0] * (i + 1)) as i64
            }));
            let t = w.from_array(&a);
            assert_eq!(within(LIMIT, t.to_array()).await.unwrap(), a);
        });
        futures::future::join_all(jobs).await;
        eventually(LIMIT, || state.quota().used() == 0).await;
    });
}
