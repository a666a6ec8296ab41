//! What a stranger can make a worker do before its gate opens: one
//! question at a time, one `Bootstrap`, a few questions, small messages and
//! a small byte budget. Each attack is refused with a clear reason (an
//! `Abort`), costs the worker next to no memory, and leaves every
//! authenticated client served. Over TCP on 127.0.0.1:0, raw sockets
//! speaking the protocol by hand (tests/common/raw.rs).

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::tensor_capnp::{tensor_worker, DType};
use capactor::{ConnectOptions, Connection, ServeOptions, TcpServer};
use capnp::message::Builder;
use capnp_rpc::rpc_capnp::message;
use common::{each_on, within, SETUP_LIMIT};
use raw::{bootstrap, from_data, header, open, vm_rss, Raw, Reply};

const TCP: [common::Transport; 1] = [common::Transport::Tcp];
const TOKEN: &[u8] = b"preauth-test-token-0123456789";
/// How long a legitimate client may wait for its answer under attack.
const PROMPT: Duration = Duration::from_secs(5);

/// The RSS tests read the whole process's memory: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn gated() -> ServeOptions {
    let mut opts = ServeOptions::default();
    opts.token = Some(TOKEN.to_vec());
    opts
}

fn with_token() -> ConnectOptions {
    let mut opts = ConnectOptions::default();
    opts.token = TOKEN.to_vec();
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
    let addr = server.local_addr().to_string();
    within(SETUP_LIMIT, capactor::connect_tcp(&addr, &with_token()))
        .await
        .unwrap()
}

/// Uploads `bytes` bytes through `w` and reads their length back, within
/// [`PROMPT`].
async fn assert_uploads(w: &tensor_worker::Client, bytes: usize) {
    let mut req = w.from_data_request();
    {
        let mut d = req.get().init_data();
        d.set_dtype(DType::I32);
        d.reborrow().init_shape(1).set(0, (bytes / 4) as u64);
        d.init_data(bytes as u32).fill(3);
    }
    let tensor = req.send().pipeline.get_tensor();
    let reply = within(PROMPT, tensor.read_request().send().promise)
        .await
        .expect("a legitimate client is served");
    let data = reply.get().unwrap().get_data().unwrap().get_data().unwrap();
    assert_eq!(data.len(), bytes);
    assert!(data.iter().all(|&b| b == 3));
}

/// Runs `attack` against a gated one-vat worker, with an authenticated
/// client served before and after it, and a newcomer after it.
fn against_a_gated_worker<F, Fut>(attack: F)
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _serial = serial();
    each_on(&TCP, 1, |h| {
        let attack = &attack;
        async move {
            let server = serve_tensors(&h, gated()).await;
            let bystander = connect(&server).await;
            assert_uploads(&bystander, 4096).await;
            attack(server.local_addr()).await;
            assert_uploads(&bystander, 4096).await;
            let newcomer = connect(&server).await;
            assert_uploads(&newcomer, 4096).await;
        }
    });
}

/// Asserts the worker closed the connection with an abort saying `words`.
///
/// Floods leave bytes the worker never reads; closing such a socket resets
/// it, and a reset can discard the abort in flight. The worker lingers
/// after an abort (it sends end-of-stream and drops what still arrives for
/// a bounded while), so the abort arrives first even then.
#[track_caller]
fn assert_aborted_with(end: &Reply, words: &str) {
    match end {
        Reply::Closed(why) if why.contains(words) => {}
        other => panic!("expected an abort saying {words:?}, got {other:?}"),
    }
}

#[test]
fn headers_claiming_63_mib_on_100_connections_before_the_gate_are_refused_from_the_header() {
    const CONNECTIONS: usize = 100;
    against_a_gated_worker(|addr| async move {
        let before = vm_rss();
        let mut crowd = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut raw = Raw::connect(addr).await;
            raw.send_bytes(&header(63 << 17)).await;
            crowd.push(raw);
        }
        let during = vm_rss();
        for raw in &mut crowd {
            let (answers, end) = raw.until_closed().await;
            assert!(answers.is_empty());
            assert_aborted_with(&end, "message size before the gate opens limit exceeded");
            assert!(end.text().contains("> 65536"), "{}", end.text());
        }
        let grew = during.max(vm_rss()).saturating_sub(before);
        eprintln!(
            "{CONNECTIONS} headers claiming 63 MiB: RSS grew by {} KiB",
            grew >> 10
        );
        assert!(grew < 64 << 20, "RSS grew by {grew} bytes");
    });
}

#[test]
fn a_second_bootstrap_before_the_gate_is_refused() {
    against_a_gated_worker(|addr| async move {
        let mut raw = Raw::connect(addr).await;
        raw.send(&bootstrap(0)).await;
        raw.send(&bootstrap(1)).await;
        let (answers, end) = raw.until_closed().await;
        assert_eq!(answers.len(), 1, "the first is answered");
        assert_aborted_with(&end, "a second Bootstrap before the gate opened is refused");
    });
}

#[test]
fn a_bootstrap_flood_before_the_gate_is_cut_at_the_second_bootstrap() {
    against_a_gated_worker(|addr| async move {
        let before = vm_rss();
        let mut raw = Raw::connect(addr).await;
        let flood: Vec<u8> = (0..10_000)
            .flat_map(|q| raw::framed(&bootstrap(q)))
            .collect();
        let sent = flood.len();
        let writing = raw.flood(flood);
        let (answers, end) = raw.until_closed().await;
        let written = within(PROMPT, writing).await.unwrap();
        eprintln!("{written} of {sent} bytes of bootstraps written before the cut: {end:?}");
        assert!(answers.len() <= 1, "{} bootstraps answered", answers.len());
        assert_aborted_with(&end, "a second Bootstrap before the gate opened is refused");
        let grew = vm_rss().saturating_sub(before);
        assert!(grew < 16 << 20, "RSS grew by {grew} bytes");
    });
}

#[test]
fn megabyte_calls_pipelined_behind_a_wrong_token_are_refused_unread() {
    // 400 x 1 MiB `fromData` pipelined on the actor a wrong `open` would
    // hand out: the worker reads the `open`, answers it, then refuses the
    // first call from its header (it is over the pre-auth message size).
    against_a_gated_worker(|addr| async move {
        let before = vm_rss();
        let mut raw = Raw::connect(addr).await;
        let mut flood = raw::framed(&bootstrap(0));
        flood.extend(raw::framed(&open(1, 0, b"wrong-token-wrong-token")));
        let call = raw::framed(&from_data(2, 1, 1 << 20));
        for _ in 0..400 {
            flood.extend_from_slice(&call);
        }
        let sent = flood.len();
        let writing = raw.flood(flood);
        let (answers, end) = raw.until_closed().await;
        let written = within(PROMPT, writing).await.unwrap();
        let grew = vm_rss().saturating_sub(before);
        eprintln!(
            "{} MiB of {} MiB written before the cut; RSS grew by {} KiB",
            written >> 20,
            sent >> 20,
            grew >> 10
        );
        assert!(answers.iter().all(|(q, _)| *q != 2), "no call was served");
        assert_aborted_with(&end, "message size before the gate opens limit exceeded");
        assert!(written < sent / 10, "the worker read the flood");
        assert!(grew < 32 << 20, "RSS grew by {grew} bytes");
    });
}

#[test]
fn a_megabyte_call_behind_a_wrong_token_is_refused_from_its_header() {
    against_a_gated_worker(|addr| async move {
        let mut raw = Raw::connect(addr).await;
        raw.send(&bootstrap(0)).await;
        raw.send(&open(1, 0, b"wrong-token-wrong-token")).await;
        raw.send_bytes(&header((1 << 20) / 8)).await;
        let (answers, end) = raw.until_closed().await;
        let rejected = answers
            .iter()
            .any(|(q, r)| *q == 1 && r.text().contains("credential rejected"));
        assert!(rejected, "the open is answered first: {answers:?}");
        assert_aborted_with(&end, "message size before the gate opens limit exceeded");
        assert!(end.text().contains("> 65536"), "{}", end.text());
    });
}

#[test]
fn small_calls_pipelined_before_the_gate_are_taken_one_at_a_time_up_to_the_unfinished_question_limit(
) {
    // Calls small enough to be read, pipelined behind a wrong token and
    // never finished: each waits its turn, fails (the actor was never
    // handed out), and the seventeenth unfinished question closes the
    // connection.
    against_a_gated_worker(|addr| async move {
        let mut raw = Raw::connect(addr).await;
        let mut flood = raw::framed(&bootstrap(0));
        flood.extend(raw::framed(&open(1, 0, b"wrong-token-wrong-token")));
        // Seventeen questions in all, so the worker reads everything sent.
        for q in 2..17 {
            flood.extend(raw::framed(&from_data(q, 1, 1024)));
        }
        let writing = raw.flood(flood);
        let (answers, end) = raw.until_closed().await;
        within(PROMPT, writing).await.unwrap();
        let questions: Vec<u32> = answers.iter().map(|(q, _)| *q).collect();
        assert_eq!(
            questions,
            (0..16).collect::<Vec<_>>(),
            "answered in turn, up to the limit"
        );
        assert!(answers[2..]
            .iter()
            .all(|(_, r)| !matches!(r, Reply::Results)));
        assert_aborted_with(
            &end,
            "unfinished questions before the gate opens limit exceeded: 17 > 16",
        );
    });
}

#[test]
fn open_calls_flooded_before_the_gate_are_taken_one_at_a_time() {
    // 10,000 wrong `open`s sent at once: the worker holds one at a time (the
    // rest wait in the socket, costing it nothing) and closes the connection
    // after the gate's last allowed failure.
    against_a_gated_worker(|addr| async move {
        let before = vm_rss();
        let mut raw = Raw::connect(addr).await;
        let mut flood = raw::framed(&bootstrap(0));
        for q in 1..=10_000 {
            flood.extend(raw::framed(&open(
                q,
                0,
                format!("guess-{q:016}").as_bytes(),
            )));
        }
        let writing = raw.flood(flood);
        let (answers, _end) = raw.until_closed().await;
        within(PROMPT, writing).await.unwrap();
        let evaluated = answers
            .iter()
            .filter(|(_, r)| r.text().contains("credential rejected"))
            .count();
        let grew = vm_rss().saturating_sub(before);
        eprintln!(
            "{evaluated} of 10000 guesses evaluated; RSS grew by {} KiB",
            grew >> 10
        );
        assert!(
            (1..=7).contains(&evaluated),
            "{evaluated} guesses evaluated"
        );
        assert!(grew < 16 << 20, "RSS grew by {grew} bytes");
    });
}

#[test]
fn a_stranger_sending_more_than_the_preauth_budget_is_cut_at_the_frame_that_passes_it() {
    // Messages that ask nothing (a `Finish` for no question, which capnp-rpc
    // ignores) padded with a 60 KiB segment nobody points at: under the
    // pre-auth message size, but the fifth passes the 256 KiB budget.
    against_a_gated_worker(|addr| async move {
        let mut m = Builder::new_default();
        m.init_root::<message::Builder<'_>>()
            .init_finish()
            .set_question_id(4242);
        let first = m.get_segments_for_output()[0].to_vec();
        let pad = vec![0u8; 60 << 10];
        let mut frame = 1u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&((first.len() / 8) as u32).to_le_bytes());
        frame.extend_from_slice(&((pad.len() / 8) as u32).to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&first);
        frame.extend_from_slice(&pad);
        let mut raw = Raw::connect(addr).await;
        // Four fit (240 KiB); the fifth's table says it would not.
        let mut flood: Vec<u8> = (0..4).flat_map(|_| frame.iter().copied()).collect();
        flood.extend_from_slice(&frame[..16]);
        let writing = raw.flood(flood);
        let (answers, end) = raw.until_closed().await;
        within(PROMPT, writing).await.unwrap();
        assert!(answers.is_empty());
        assert_aborted_with(&end, "bytes before the gate opens limit exceeded");
        assert!(end.text().contains("> 262144"), "{}", end.text());
    });
}

#[test]
fn a_client_pipelining_a_megabyte_first_call_behind_the_gate_is_served() {
    // The pre-auth limits hold what a stranger sends before the gate
    // answers, not what a client pipelines behind a good token: its large
    // first call is read once the gate has opened.
    let _serial = serial();
    each_on(&TCP, 1, |h| async move {
        let server = serve_tensors(&h, gated()).await;
        let conn = connect(&server).await;
        assert_uploads(&conn, 1 << 20).await;
    });
}
