//! The HTTP example's service, called over 127.0.0.1: its handlers compute
//! on a capactor worker through a Send-able handle, from many requests at
//! once on a multi-threaded runtime.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/http_service.rs"]
mod http_service;

use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker, WorkerHandle};
use http_service::{DotReply, MemoryReply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);

/// Sends one HTTP/1.1 request and returns the status code and body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_http_service_computes_on_the_worker_for_many_requests_at_once() {
    let rt = capactor::Runtime::builder().vats(2).build().unwrap();
    let worker = WorkerHandle::spawn(&rt, || TensorWorker::new("http", Quota::new(16 << 20)));
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, http_service::app(worker)).await });

        let calls: Vec<_> = (1..=16)
            .map(|n: u32| {
                tokio::spawn(async move {
                    let a: Vec<u32> = (0..n).collect();
                    let body = format!(r#"{{"a": {a:?}, "b": {a:?}}}"#);
                    (n, request(addr, "POST", "/dot", &body).await)
                })
            })
            .collect();
        for call in calls {
            let (n, (status, body)) = tokio::time::timeout(LIMIT, call).await.unwrap().unwrap();
            assert_eq!(status, 200, "{body}");
            let reply: DotReply = serde_json::from_str(&body).unwrap();
            let want: u32 = (0..n).map(|i| i * i).sum();
            assert_eq!(reply.dot, f64::from(want));
        }

        // Bad input is the caller's error, and the service goes on.
        let (status, body) = request(addr, "POST", "/dot", r#"{"a": [1], "b": [1, 2]}"#).await;
        assert_eq!(status, 422);
        assert!(body.contains("a has 1 elements and b 2"), "{body}");
        let (status, body) = request(addr, "GET", "/memory", "").await;
        assert_eq!(status, 200);
        let m: MemoryReply = serde_json::from_str(&body).unwrap();
        assert_eq!(m.limit, 16 << 20);
        // Every request's tensors were released with its handles.
        assert_eq!(m.used, 0);
    });
}
