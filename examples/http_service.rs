//! An HTTP service (axum) whose handlers compute on a capactor tensor
//! worker through a `Send` [`WorkerHandle`]: ordinary multi-threaded tokio
//! code, no `LocalSet`, no `block_on`.
//!
//! ```text
//! cargo run --example http_service                     # a virtual worker in-process
//! cargo run --example http_service -- 127.0.0.1:7001   # a `capactor worker` over TCP
//! curl -s -XPOST localhost:3000/dot -H 'content-type: application/json' \
//!      -d '{"a": [1, 2, 3], "b": [4, 5, 6]}'          # {"dot":32.0}
//! ```
//!
//! `CAPACTOR_HTTP_LISTEN` picks the address (default `127.0.0.1:3000`);
//! `CAPACTOR_TOKEN` is the worker's token when connecting over TCP.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use capactor::actors::tensor::{Quota, TensorWorker, WorkerHandle};
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

/// The body of `POST /dot`.
#[derive(Debug, Deserialize)]
pub struct DotRequest {
    /// The left vector.
    pub a: Vec<f64>,
    /// The right vector, as long as `a`.
    pub b: Vec<f64>,
}

/// What `POST /dot` answers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DotReply {
    /// `a · b`, computed on the worker.
    pub dot: f64,
}

/// What `GET /memory` answers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct MemoryReply {
    /// The worker's memory limit, in bytes.
    pub limit: u64,
    /// Bytes its tensors hold now.
    pub used: u64,
}

type Failure = (StatusCode, String);

/// The service: its routes, sharing one worker handle (cloned per request;
/// a clone is a reference count).
pub fn app(worker: WorkerHandle) -> Router {
    Router::new()
        .route("/dot", post(dot))
        .route("/memory", get(memory))
        .with_state(worker)
}

async fn dot(
    State(w): State<WorkerHandle>,
    Json(req): Json<DotRequest>,
) -> Result<Json<DotReply>, Failure> {
    if req.a.len() != req.b.len() {
        let msg = format!("a has {} elements and b {}", req.a.len(), req.b.len());
        return Err((StatusCode::UNPROCESSABLE_ENTITY, msg));
    }
    let n = req.a.len();
    let vector = |v: Vec<f64>| ArrayD::from_shape_vec(vec![n], v).expect("length checked");
    let (a, b) = (w.tensor(vector(req.a)), w.tensor(vector(req.b)));
    // Three calls pipelined through the handle: one round trip.
    let dot = a.mul(&b).sum().item().await.map_err(worker_failed)?;
    Ok(Json(DotReply { dot }))
}

async fn memory(State(w): State<WorkerHandle>) -> Result<Json<MemoryReply>, Failure> {
    let m = w.memory().await.map_err(worker_failed)?;
    Ok(Json(MemoryReply {
        limit: m.limit,
        used: m.used,
    }))
}

fn worker_failed(e: capactor::Error) -> Failure {
    (StatusCode::BAD_GATEWAY, format!("worker: {e}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The vat threads the worker's connection (and a virtual worker) run on.
    let rt = capactor::Runtime::new()?;
    let worker = match std::env::args().nth(1) {
        Some(addr) => {
            let mut opts = capactor::ConnectOptions::default();
            opts.token = std::env::var("CAPACTOR_TOKEN")
                .unwrap_or_default()
                .into_bytes();
            WorkerHandle::connect(&rt, &addr, &opts).await?
        }
        None => WorkerHandle::spawn(&rt, || TensorWorker::new("http", Quota::new(256 << 20))),
    };
    let listen = std::env::var("CAPACTOR_HTTP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("serving on http://{}", listener.local_addr()?);
    axum::serve(listener, app(worker)).await?;
    Ok(())
}
