//! After the gate: a frame's memory follows the bytes that really arrive,
//! never its header's claim, and every connection's buffered frames count
//! against one budget for the worker, refused with a clear error when
//! full and given back when the frames go. Over TCP on 127.0.0.1:0.

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::tensor_capnp::{tensor_worker, DType};
use capactor::{ConnectOptions, Connection, ServeOptions, TcpServer};
use common::{each_on, eventually, within, SETUP_LIMIT};
use raw::{header, vm_rss, Raw, Reply};

const TCP: [common::Transport; 1] = [common::Transport::Tcp];
const TOKEN: &[u8] = b"buffers-test-token-0123456789";
const PROMPT: Duration = Duration::from_secs(5);
const LIMIT: Duration = Duration::from_secs(20);

/// The RSS test reads the whole process's memory, and the others allocate
/// megabytes: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn gated() -> ServeOptions {
    let mut opts = ServeOptions::default();
    opts.token = Some(TOKEN.to_vec());
    opts
}

async fn serve_tensors(h: &common::Harness, opts: ServeOptions) -> TcpServer {
    let quota = Quota::new(256 << 20);
    let serving = h.rt.serve_tcp::<tensor_worker::Client, _, _>(
        "127.0.0.1:0",
        move || TensorWorker::new("w", quota.clone()),
        opts,
    );
    within(SETUP_LIMIT, serving).await.unwrap()
}

async fn connect(server: &TcpServer) -> Connection<tensor_worker::Client> {
    let mut opts = ConnectOptions::default();
    opts.token = TOKEN.to_vec();
    let addr = server.local_addr().to_string();
    within(SETUP_LIMIT, capactor::connect_tcp(&addr, &opts))
        .await
        .unwrap()
}

/// Uploads `bytes` bytes through `w` and reads their length back.
async fn upload(w: &tensor_worker::Client, bytes: usize) -> capnp::Result<usize> {
    let mut req = w.from_data_request();
    {
        let mut d = req.get().init_data();
        d.set_dtype(DType::I32);
        d.reborrow().init_shape(1).set(0, (bytes / 4) as u64);
        d.init_data(bytes as u32).fill(5);
    }
    let tensor = req.send().pipeline.get_tensor();
    let reply = within(LIMIT, tensor.read_request().send().promise).await?;
    Ok(reply.get()?.get_data()?.get_data()?.len())
}

#[test]
fn headers_claiming_63_mib_on_100_authenticated_connections_hold_only_what_arrived() {
    const CONNECTIONS: usize = 100;
    let _serial = serial();
    each_on(&TCP, 1, |h| async move {
        let opts = gated();
        let limits = opts.limits.clone();
        let server = serve_tensors(&h, opts).await;
        let bystander = connect(&server).await;
        assert_eq!(upload(&bystander, 4096).await.unwrap(), 4096);
        let before = vm_rss();
        let mut crowd = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut raw = Raw::authenticated(server.local_addr(), TOKEN).await;
            raw.send_bytes(&header(63 << 17)).await;
            crowd.push(raw);
        }
        // Every header has been read: each holds its first step of memory.
        eventually(LIMIT, || {
            limits.buffered_bytes() >= (CONNECTIONS as u64) << 16
        })
        .await;
        let held = limits.buffered_bytes();
        let grew = vm_rss().saturating_sub(before);
        eprintln!(
            "{CONNECTIONS} authenticated headers claiming 63 MiB: {} KiB buffered, RSS grew by \
             {} KiB",
            held >> 10,
            grew >> 10
        );
        assert!(grew < 64 << 20, "RSS grew by {grew} bytes");
        assert!(held < 16 << 20, "{held} bytes buffered");
        within(PROMPT, upload(&bystander, 4096)).await.unwrap();
        drop(crowd);
        eventually(LIMIT, || limits.buffered_bytes() == 0).await;
    });
}

#[test]
fn a_frame_past_the_workers_receive_budget_is_refused_and_the_budget_comes_back() {
    let _serial = serial();
    each_on(&TCP, 2, |h| async move {
        let mut opts = gated();
        opts.limits.max_buffered_bytes = 8 << 20;
        let limits = opts.limits.clone();
        let server = serve_tensors(&h, opts).await;
        // One connection holds 5 MiB of a 6 MiB frame.
        let mut holder = Raw::authenticated(server.local_addr(), TOKEN).await;
        holder.send_bytes(&header(6 << 17)).await;
        holder.send_bytes(&vec![0u8; 5 << 20]).await;
        eventually(LIMIT, || limits.buffered_bytes() >= 5 << 20).await;

        // Another's 4 MiB upload does not fit beside it.
        let refused = connect(&server).await;
        let err = upload(&refused, 4 << 20).await.unwrap_err();
        eprintln!("refused: {err}");
        assert!(
            err.extra.contains("receive buffers limit exceeded") && err.extra.contains("8388608"),
            "{err}"
        );
        // The refused connection is closed and what it held given back;
        // small calls still fit, on a connection of their own.
        eventually(LIMIT, || limits.buffered_bytes() <= 6 << 20).await;
        let small = connect(&server).await;
        assert_eq!(upload(&small, 4096).await.unwrap(), 4096);

        // Once the holder goes, the budget is whole again.
        drop(holder);
        eventually(LIMIT, || limits.buffered_bytes() < 1 << 20).await;
        let fresh = connect(&server).await;
        assert_eq!(upload(&fresh, 4 << 20).await.unwrap(), 4 << 20);
        drop((refused, small, fresh));
        eventually(LIMIT, || limits.buffered_bytes() == 0).await;
    });
}

#[test]
fn a_header_claiming_more_than_the_message_limit_after_the_gate_is_still_refused_from_the_header() {
    let _serial = serial();
    each_on(&TCP, 1, |h| async move {
        let server = serve_tensors(&h, gated()).await;
        let mut raw = Raw::authenticated(server.local_addr(), TOKEN).await;
        raw.send_bytes(&header(65 << 17)).await;
        let (_, end) = raw.until_closed().await;
        match end {
            Reply::Closed(why) => assert!(why.contains("exceeds the limit of 67108864"), "{why}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn uploads_dropped_halfway_give_their_memory_back_to_the_system() {
    // 50 connections each send half of an 8 MiB message and hang up: 200 MiB
    // the worker held a moment ago must leave its RSS, not stay in the
    // allocator (src/transport/heap.rs).
    const CONNECTIONS: usize = 50;
    let _serial = serial();
    each_on(&TCP, 2, |h| async move {
        let opts = gated();
        let limits = opts.limits.clone();
        let server = serve_tensors(&h, opts).await;
        let bystander = connect(&server).await;
        assert_eq!(upload(&bystander, 4096).await.unwrap(), 4096);
        let before = vm_rss();
        let half = vec![0x5au8; 4 << 20];
        let mut crowd = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut raw = Raw::authenticated(server.local_addr(), TOKEN).await;
            raw.send_bytes(&header(1 << 20)).await;
            raw.send_bytes(&half).await;
            crowd.push(raw);
        }
        eventually(LIMIT, || {
            limits.buffered_bytes() >= (CONNECTIONS as u64) << 22
        })
        .await;
        let peak = vm_rss();
        drop(crowd);
        eventually(LIMIT, || limits.buffered_bytes() == 0).await;
        // The allocator hands the memory back as it is freed, and trims
        // its arenas a moment after the last close.
        eventually(LIMIT, || vm_rss() < before + (32 << 20)).await;
        eprintln!(
            "RSS {} MiB before, {} MiB with {CONNECTIONS} half uploads, {} MiB after",
            before >> 20,
            peak >> 20,
            vm_rss() >> 20
        );
        assert_eq!(upload(&bystander, 4096).await.unwrap(), 4096);
    });
}
