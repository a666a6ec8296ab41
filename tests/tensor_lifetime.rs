//! A tensor lives as long as someone holds it: freed when the last handle
//! drops or its holder disconnects, and counted in the worker's info.

mod common;

use std::time::Duration;

use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker};
use capactor::schema::actor_capnp::actor;
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, until, within, ALL, REMOTE};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn dropping_the_last_handle_frees_the_tensor() {
    each(&ALL, |h| async move {
        let quota = Quota::new(1 << 30);
        let q = quota.clone();
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let x = w.zeros(DType::F32, &[256, 256]);
        let y = x.add_scalar(1.0);
        within(LIMIT, y.shape()).await.unwrap();
        assert_eq!(quota.live_tensors(), 2);
        assert_eq!(quota.used(), 2 * 256 * 256 * 4);

        // info reports the same.
        let base: actor::Client = capactor::cast(&s.client);
        let reply = within(LIMIT, base.info_request().send().promise)
            .await
            .unwrap();
        let info = reply.get().unwrap().get_info().unwrap();
        assert_eq!(info.get_live_objects(), 2);
        assert_eq!(info.get_live_bytes(), 2 * 256 * 256 * 4);

        let twin = y.clone();
        drop(x);
        until(|| quota.live_tensors() == 1).await;
        drop(y);
        // A clone still holds it.
        within(LIMIT, twin.shape()).await.unwrap();
        assert_eq!(quota.live_tensors(), 1);
        drop(twin);
        until(|| quota.live_tensors() == 0 && quota.used() == 0).await;
    });
}

#[test]
fn a_client_that_disconnects_frees_everything_it_held() {
    each(&REMOTE, |h| async move {
        let quota = Quota::new(1 << 30);
        let q = quota.clone();
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let held: Vec<_> = (0..10)
            .map(|i| w.full(DType::F64, &[100], i as f64))
            .collect();
        within(LIMIT, held[9].shape()).await.unwrap();
        assert_eq!(quota.live_tensors(), 10);
        s.cut();
        until(|| quota.live_tensors() == 0 && quota.used() == 0).await;
        drop(held);
    });
}
