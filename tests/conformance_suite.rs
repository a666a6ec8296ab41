//! The language-neutral conformance suite (tests/conformance/cases/*.json),
//! run by a plain capnp-rpc client over TCP: the same cases the Python and C++
//! runners run.
//!
//! By default it serves two tensor workers in this process on 127.0.0.1:0
//! (with tokens) and runs every case against them. To check another server,
//! or a `capactor worker` process, point it elsewhere:
//!
//! ```sh
//! CAPACTOR_CONFORMANCE_ADDRESS=127.0.0.1:7001 \
//! CAPACTOR_CONFORMANCE_TOKEN_FILE=worker.token \
//! [CAPACTOR_CONFORMANCE_PEER=127.0.0.1:7002 CAPACTOR_CONFORMANCE_PEER_TOKEN_FILE=peer.token] \
//! [CAPACTOR_CONFORMANCE_FILTER=ops:] [CAPACTOR_CONFORMANCE_CASES=dir] \
//!   cargo test --test conformance_suite -- --nocapture
//! ```

#[path = "conformance/rust/interp.rs"]
mod interp;
#[path = "conformance/rust/json.rs"]
mod json;
#[path = "conformance/rust/methods.rs"]
mod methods;
#[path = "conformance/rust/values.rs"]
mod values;

use std::path::Path;
use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{Runtime, ServeOptions, TcpServer};

const SETUP: Duration = Duration::from_secs(20);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn token_from(var: &str) -> Option<Vec<u8>> {
    let path = env(var)?;
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{var}={path}: {e}"));
    Some(String::from_utf8_lossy(&text).trim().as_bytes().to_vec())
}

async fn serve(rt: &Runtime, name: &'static str, token: &[u8]) -> TcpServer {
    let quota = Quota::new(256 << 20);
    let mut opts = ServeOptions::default();
    opts.token = Some(token.to_vec());
    let serving = rt.serve_tcp::<tensor_worker::Client, _, _>(
        "127.0.0.1:0",
        move || TensorWorker::new(name, quota.clone()),
        opts,
    );
    tokio::time::timeout(SETUP, serving)
        .await
        .expect("serving in time")
        .expect("serving")
}

#[test]
fn every_conformance_case_passes_over_tcp() {
    let cases = env("CAPACTOR_CONFORMANCE_CASES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases"),
        Into::into,
    );
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let mut servers = Vec::new();
        let opts = match env("CAPACTOR_CONFORMANCE_ADDRESS") {
            Some(address) => interp::Options {
                address,
                token: token_from("CAPACTOR_CONFORMANCE_TOKEN_FILE").unwrap_or_default(),
                peer: env("CAPACTOR_CONFORMANCE_PEER"),
                peer_token: token_from("CAPACTOR_CONFORMANCE_PEER_TOKEN_FILE"),
                filter: env("CAPACTOR_CONFORMANCE_FILTER"),
            },
            None => {
                let (t1, t2) = (b"conformance-main-token", b"conformance-peer-token");
                let main = serve(&rt, "main", t1).await;
                let peer = serve(&rt, "peer", t2).await;
                let opts = interp::Options {
                    address: main.local_addr().to_string(),
                    token: t1.to_vec(),
                    peer: Some(peer.local_addr().to_string()),
                    peer_token: Some(t2.to_vec()),
                    filter: env("CAPACTOR_CONFORMANCE_FILTER"),
                };
                servers.push(main);
                servers.push(peer);
                opts
            }
        };
        let summary = interp::run_all(&opts, &cases).await;
        assert!(summary.passed > 0, "no case ran");
        assert!(
            summary.failed.is_empty(),
            "{} conformance cases failed: {:#?}",
            summary.failed.len(),
            summary.failed
        );
        drop(servers);
    })
    .unwrap();
}
