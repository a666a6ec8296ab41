//! No error text that reaches a client carries a path, a backtrace, a Rust
//! type name or environment content: only what the caller did and, for
//! internal failures, an error id.

mod common;

use std::time::Duration;

use capactor::actors::tensor::{DType, TensorWorker, Worker};
use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, Quota, Runtime, ServeOptions};
use common::{sleep_call, within};
use ndarray::array;

const LIMIT: Duration = Duration::from_secs(20);

fn assert_clean(what: &str, text: &str) {
    let leaks = [
        ("a path", text.contains('/') || text.contains(".rs")),
        ("a Rust path or type name", text.contains("::")),
        (
            "a backtrace",
            text.to_lowercase().contains("backtrace") || text.contains("panicked at"),
        ),
    ];
    for (kind, leaked) in leaks {
        assert!(!leaked, "{what}: error text contains {kind}: {text:?}");
    }
    for (key, value) in std::env::vars() {
        if value.len() >= 12 {
            assert!(
                !text.contains(&value),
                "{what}: error text contains ${key}: {text:?}"
            );
        }
    }
}

#[test]
fn errors_reaching_a_tcp_client_say_nothing_about_the_worker() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut texts: Vec<(&str, String)> = Vec::new();

        // A probe worker with small limits.
        let mut serve = ServeOptions::default();
        serve.token = Some(b"token-of-16-bytes".to_vec());
        serve.limits.max_message_bytes = 1 << 20;
        serve.limits.max_calls_in_flight = 2;
        serve.call_deadline = Some(Duration::from_millis(100));
        let server = rt
            .serve_tcp::<probe::Client, _, _>("127.0.0.1:0", || Probe::new("p"), serve)
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let mut opts = ConnectOptions::default();
        opts.token = b"token-of-16-bytes".to_vec();
        let p: capactor::Connection<probe::Client> =
            capactor::connect_tcp(&addr, &opts).await.unwrap();

        let e = within(LIMIT, p.panic_request().send().promise)
            .await
            .err()
            .unwrap();
        texts.push(("panic", e.extra));
        let e = within(LIMIT, sleep_call(&p, 10_000)).await.err().unwrap();
        texts.push(("deadline", e.extra));
        let held: Vec<_> = (0..2).map(|_| sleep_call(&p, 50)).collect();
        let e = within(LIMIT, sleep_call(&p, 1)).await.err().unwrap();
        texts.push(("calls in flight", e.extra));
        for h in held {
            let _ = within(LIMIT, h).await;
        }
        let req = p
            .client()
            .client
            .new_call::<capnp::any_pointer::Owned, capnp::any_pointer::Owned>(
                capactor::actors::PROBE.id,
                77,
                None,
            );
        let e = within(LIMIT, req.send().promise).await.err().unwrap();
        texts.push(("unknown method", e.extra));

        let mut wrong = ConnectOptions::default();
        wrong.token = b"nope".to_vec();
        let w: capactor::Connection<probe::Client> =
            capactor::connect_tcp(&addr, &wrong).await.unwrap();
        let e = within(LIMIT, sleep_call(&w, 1)).await.err().unwrap();
        texts.push(("wrong token", e.extra));

        let big: capactor::Connection<probe::Client> =
            capactor::connect_tcp(&addr, &opts).await.unwrap();
        let mut req = big.echo_request();
        req.get().set_data(&vec![0u8; 2 << 20]);
        let e = within(LIMIT, req.send().promise).await.err().unwrap();
        texts.push(("oversized message", e.extra));

        // A tensor worker.
        let q = Quota::new(1 << 20);
        let mut serve = ServeOptions::default();
        serve.token = Some(b"token-of-16-bytes".to_vec());
        let tserver = rt
            .serve_tcp::<tensor_worker::Client, _, _>(
                "127.0.0.1:0",
                move || TensorWorker::new("t", q.clone()),
                serve,
            )
            .await
            .unwrap();
        let t: capactor::Connection<tensor_worker::Client> =
            capactor::connect_tcp(&tserver.local_addr().to_string(), &opts)
                .await
                .unwrap();
        let w = Worker::new(t.client().clone());
        let a = w.tensor(&array![[1.0f32, 2.0, 3.0]]);
        let cases = [
            ("shape mismatch", a.matmul(&a)),
            (
                "unsupported dtype",
                a.cast(DType::Bool).sub(&w.tensor(&array![true])),
            ),
            ("quota", w.zeros(DType::F64, &[1024, 1024])),
            ("axis", a.sum_axis(5, false)),
            ("bad cast chain", a.cast(DType::Bool).exp()),
        ];
        for (what, t) in cases {
            let e = within(LIMIT, t.to_array()).await.unwrap_err();
            texts.push((what, e.to_string()));
        }

        assert!(texts.len() >= 11);
        for (what, text) in &texts {
            eprintln!("{what}: {text}");
            assert_clean(what, text);
        }
        // Internal failures carry an id and nothing else.
        assert!(texts[0].1.contains("internal error (id "), "{}", texts[0].1);
    })
    .unwrap();
}
