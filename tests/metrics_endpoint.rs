//! `capactor worker --metrics ADDR`: the endpoint is scraped and its
//! Prometheus text parsed, and the numbers are the calls made, the objects
//! held and the connection open; other paths answer 404.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use capactor::actors::tensor::{DType, Worker};
use capactor::schema::tensor_capnp::tensor_worker;

#[path = "common/mod.rs"]
mod common;
#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(20);

/// Starts a worker with metrics on a free port; returns it, its RPC address
/// and its metrics address (read from its `metrics on ADDR` line).
fn start_worker() -> (WorkerProcess, String, String) {
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--insecure-no-auth",
        "--vats",
        "2",
        "--metrics",
        "127.0.0.1:0",
    ]));
    let stdout = worker.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keeps reading to the end, so the worker never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let next = || {
        rx.recv_timeout(LIMIT)
            .expect("the worker prints its addresses")
    };
    let listen = next();
    let rpc = listen
        .strip_prefix("listening on ")
        .expect(&listen)
        .to_owned();
    let line = next();
    let metrics = line.strip_prefix("metrics on ").expect(&line).to_owned();
    assert!(
        metrics.starts_with("127.0.0.1:") && !metrics.ends_with(":0"),
        "{metrics}"
    );
    (worker, rpc, metrics)
}

/// One HTTP/1.1 request; the status code and the body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect(&raw);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A sample of the text exposition: its name and labels.
type Key = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format: every sample line, by name and
/// labels. Fails the test on a line that is not a comment or a sample.
fn parse(text: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect(line);
                let labels = rest
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect(line);
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        out.insert((name.to_owned(), labels), value);
    }
    out
}

fn scrape(addr: &str) -> BTreeMap<Key, f64> {
    let (status, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

fn get(samples: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no sample {key:?} in {samples:#?}"))
}

/// The labels of one method's call-duration series.
fn method<'a>(service: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("rpc_system", "capnp"),
        ("rpc_service", service),
        ("rpc_method", method),
    ]
}

#[test]
fn scraped_metrics_count_the_calls_made_and_the_objects_held() {
    let (_worker, rpc, metrics) = start_worker();
    const N: usize = 7;
    let before = scrape(&metrics);
    assert_eq!(get(&before, "capactor_connections", &[]), 0.0);
    assert_eq!(get(&before, "capactor_live_objects", &[]), 0.0);
    assert_eq!(
        get(&before, "capactor_quota_limit_bytes", &[]),
        (1u64 << 30) as f64
    );

    capactor::block_on(async {
        let opts = capactor::ConnectOptions::default();
        let conn: capactor::Connection<tensor_worker::Client> =
            capactor::connect_tcp(&rpc, &opts).await.unwrap();
        let w = Worker::new(conn.client().clone());
        // N tensors of 256 f32 each, made by `full`, then N relus of them,
        // each waited for (`shape` is a Tensor.meta call).
        let mut held = Vec::new();
        for _ in 0..N {
            let x = w.full(DType::F32, &[16, 16], 1.0);
            let y = x.relu();
            assert_eq!(y.shape().await.unwrap(), vec![16, 16]);
            held.push(y);
        }
        // Every call has been answered: the histograms hold them all.
        let s = scrape(&metrics);
        let full = method("tensor.capnp:TensorWorker", "full");
        let unary = method("tensor.capnp:Tensor", "unary");
        let meta = method("tensor.capnp:Tensor", "meta");
        for labels in [&full, &unary, &meta] {
            let count = get(&s, "rpc_server_call_duration_seconds_count", labels);
            assert_eq!(count, N as f64, "{labels:?}");
            // Cumulative buckets: +Inf holds every call, and no bucket
            // holds more than the next.
            let mut inf = labels.clone();
            inf.push(("le", "+Inf"));
            assert_eq!(
                get(&s, "rpc_server_call_duration_seconds_bucket", &inf),
                N as f64
            );
            let buckets: Vec<f64> = s
                .iter()
                .filter(|((name, l), _)| {
                    name == "rpc_server_call_duration_seconds_bucket"
                        && labels
                            .iter()
                            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
                })
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(buckets.len(), 21, "20 bounds and +Inf");
            let sum = get(&s, "rpc_server_call_duration_seconds_sum", labels);
            assert!(sum > 0.0 && sum < 60.0, "{sum}");
        }
        assert_eq!(get(&s, "capactor_connections", &[]), 1.0);
        assert_eq!(get(&s, "capactor_connections_unauthenticated", &[]), 0.0);
        // The scrape is no RPC call: nothing is in flight.
        assert_eq!(get(&s, "rpc_server_calls_in_flight", &[]), 0.0);
        // The client holds the N relus; the `full` inputs were released
        // as each relu was answered... or not yet: at least N, at most 2N.
        let live = get(&s, "capactor_live_objects", &[]);
        assert!((N as f64..=2.0 * N as f64).contains(&live), "{live}");
        let bytes = get(&s, "capactor_live_bytes", &[]);
        assert_eq!(bytes, live * 1024.0, "256 f32 each");
        assert_eq!(get(&s, "capactor_quota_used_bytes", &[]), bytes);
        let sent = get(
            &s,
            "capactor_transferred_bytes_total",
            &[("direction", "sent")],
        );
        let received = get(
            &s,
            "capactor_transferred_bytes_total",
            &[("direction", "received")],
        );
        assert!(sent > 0.0 && received > 0.0, "{sent} {received}");

        // Dropping them frees them on the worker, which the gauges show.
        drop(held);
        common::eventually(LIMIT, || {
            get(&scrape(&metrics), "capactor_live_objects", &[]) == 0.0
        })
        .await;
        assert_eq!(get(&scrape(&metrics), "capactor_live_bytes", &[]), 0.0);
    })
    .unwrap();
    // The client has gone: so has its connection.
    capactor::block_on(common::eventually(LIMIT, || {
        get(&scrape(&metrics), "capactor_connections", &[]) == 0.0
    }))
    .unwrap();
}

#[test]
fn unknown_metrics_paths_answer_404_and_other_methods_405() {
    let (_worker, _rpc, metrics) = start_worker();
    for path in [
        "/",
        "/metric",
        "/metrics/extra",
        "/debug/pprof",
        "/../etc/passwd",
    ] {
        let (status, body) = http(&metrics, "GET", path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("metrics are at /metrics"), "{body}");
    }
    let (status, _) = http(&metrics, "POST", "/metrics");
    assert_eq!(status, 405);
    // A malformed request is refused without taking the endpoint down.
    let mut s = std::net::TcpStream::connect(&metrics).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let (status, body) = http(&metrics, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE rpc_server_call_duration_seconds histogram"));
}
