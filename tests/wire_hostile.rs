//! Hostile input from a peer that speaks the protocol on purpose: messages
//! built so that reading them re-reads the same words many times, nested
//! far past the limit, chained through far pointers, and hundreds of
//! connections that say nothing or dribble a byte at a time. The worker
//! must refuse (a failed call or a closed connection, nothing else), keep
//! serving everyone else, and give back the memory and connection slots
//! the crowd held.
//!
//! Messages are written word by word where the builder API cannot express
//! the attack (shared targets, far pointer chains), inside an envelope that
//! the builder does write.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::actor_capnp::gate;
use capactor::schema::tensor_capnp::{tensor, tensor_data, tensor_worker, DType};
use capactor::{ConnectOptions, Connection, Heartbeat, ServeOptions, TcpServer};
use capnp::message::{AllocationStrategy, Allocator, Builder, HeapAllocator, ReaderOptions};
use capnp::serialize::OwnedSegments;
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::{message, return_};
use common::{closed_by_peer, connect_raw, each_on, within, Harness, Transport, SETUP_LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TCP: [Transport; 1] = [Transport::Tcp];
/// How long anything the worker should do at once may take.
const LIMIT: Duration = Duration::from_secs(20);
/// How long a legitimate client may wait for its answer while the worker
/// is under attack.
const PROMPT: Duration = Duration::from_secs(2);
/// How long the worker may take to close a connection it should close.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);

/// The memory test reads the whole process's RSS, and the amplification
/// tests allocate while they run: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- the worker and its legitimate clients ----

async fn serve_tensors(h: &Harness, mut opts: ServeOptions) -> TcpServer {
    // On 127.0.0.1 only: no token is the loopback opt-in.
    opts.insecure_no_auth |= opts.token.is_none();
    let quota = Quota::new(256 << 20);
    let serving = h.rt.serve_tcp::<tensor_worker::Client, _, _>(
        "127.0.0.1:0",
        move || TensorWorker::new("w", quota.clone()),
        opts,
    );
    within(SETUP_LIMIT, serving).await.unwrap()
}

async fn connect_tensors(
    server: &TcpServer,
    opts: &ConnectOptions,
) -> Connection<tensor_worker::Client> {
    let addr = server.local_addr().to_string();
    within(SETUP_LIMIT, capactor::connect_tcp(&addr, opts))
        .await
        .unwrap()
}

/// A client whose heartbeats keep it from ever looking idle.
fn chatty() -> ConnectOptions {
    let mut hb = Heartbeat::default();
    hb.interval = Duration::from_millis(100);
    let mut opts = ConnectOptions::default();
    opts.heartbeat = Some(hb);
    opts
}

const LEGIT_SHAPE: [u64; 2] = [2, 3];

fn legit_bytes() -> Vec<u8> {
    (1..=6i32).flat_map(i32::to_le_bytes).collect()
}

fn set_legit(mut b: tensor_data::Builder<'_>) {
    b.set_dtype(DType::I32);
    let mut s = b.reborrow().init_shape(LEGIT_SHAPE.len() as u32);
    for (i, d) in LEGIT_SHAPE.iter().enumerate() {
        s.set(i as u32, *d);
    }
    b.set_data(&legit_bytes());
}

#[track_caller]
fn assert_legit(r: tensor_data::Reader<'_>) {
    assert_eq!(r.get_dtype().unwrap(), DType::I32);
    let shape: Vec<u64> = r.get_shape().unwrap().iter().collect();
    assert_eq!(shape, LEGIT_SHAPE);
    assert_eq!(r.get_data().unwrap(), &legit_bytes()[..]);
}

/// Uploads a small tensor through `w` and reads it back; fails the test
/// unless that is done within [`PROMPT`].
async fn assert_served(w: &tensor_worker::Client) {
    let mut req = w.from_data_request();
    set_legit(req.get().init_data());
    let tensor = req.send().pipeline.get_tensor();
    let reply = within(PROMPT, tensor.read_request().send().promise)
        .await
        .expect("a legitimate client is served");
    assert_legit(reply.get().unwrap().get_data().unwrap());
}

/// Serves a fresh client, and the one connected before the attack.
async fn others_still_served(server: &TcpServer, bystander: &tensor_worker::Client) {
    assert_served(bystander).await;
    let newcomer = connect_tensors(server, &ConnectOptions::default()).await;
    assert_served(&newcomer).await;
}

/// Connects to `server` until a connection is not refused for the
/// connection limit (the worker frees a slot a moment after the peer
/// sees the connection close), and returns it.
async fn served_once_a_slot_frees(server: &TcpServer) -> Connection<tensor_worker::Client> {
    loop {
        let conn = connect_tensors(server, &ConnectOptions::default()).await;
        match conn.memory_request().send().promise.await {
            Ok(_) => return conn,
            Err(e) if e.extra.contains("connections limit exceeded") => {
                let link = conn.link().clone();
                drop(conn);
                link.closed().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

/// The resident set of this process (worker included), in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib << 10
}

// ---- words: hand-made Cap'n Proto pointers ----

/// Word offset from the end of the pointer at `from` to `to`.
fn offset(from: usize, to: usize) -> u64 {
    let off = to as i64 - from as i64 - 1;
    u64::from(((off as i32) << 2) as u32)
}

fn struct_ptr(from: usize, to: usize, data: u16, ptrs: u16) -> u64 {
    offset(from, to) | u64::from(data) << 32 | u64::from(ptrs) << 48
}

/// A list pointer; `elem` is the element size code (2 bytes, 5 words, 7
/// composite) and `count` is elements, or words for a composite list.
fn list_ptr(from: usize, to: usize, elem: u8, count: u32) -> u64 {
    offset(from, to) | 1 | u64::from(elem) << 32 | u64::from(count) << 35
}

/// The tag word that starts a composite list of `count` structs.
fn composite_tag(count: u32, data: u16, ptrs: u16) -> u64 {
    u64::from(count << 2) | u64::from(data) << 32 | u64::from(ptrs) << 48
}

fn far_ptr(double: bool, pad: u32, segment: u32) -> u64 {
    2 | u64::from(double) << 2 | u64::from(pad) << 3 | u64::from(segment) << 32
}

/// Appends a `TensorData` (with a third, unknown pointer field for extra
/// data the worker never reads), and returns its position.
fn push_tensor(seg: &mut Vec<u64>, data: &[u8]) -> usize {
    let at = seg.len();
    let shape_at = at + 4;
    let data_at = shape_at + LEGIT_SHAPE.len();
    seg.push(DType::I32 as u64);
    seg.push(list_ptr(at + 1, shape_at, 5, LEGIT_SHAPE.len() as u32));
    seg.push(list_ptr(at + 2, data_at, 2, data.len() as u32));
    seg.push(0);
    seg.extend_from_slice(&LEGIT_SHAPE);
    seg.extend(
        data.chunks(8)
            .map(|c| c.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b))),
    );
    at
}

/// Points the params' content at `content` to fresh `FromDataParams`
/// holding a legitimate tensor, and returns the tensor's position.
fn push_legit_params(seg: &mut Vec<u64>, content: usize) -> usize {
    let params = seg.len();
    seg[content] = struct_ptr(content, params, 0, 1);
    seg.push(0);
    let t = push_tensor(seg, &legit_bytes());
    seg[params] = struct_ptr(params, t, 1, 3);
    t
}

/// Stream framing for `segments`.
fn frame(segments: &[Vec<u64>]) -> Vec<u8> {
    let mut out = (segments.len() as u32 - 1).to_le_bytes().to_vec();
    for s in segments {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    if segments.len() % 2 == 0 {
        out.extend_from_slice(&[0; 4]);
    }
    for s in segments {
        for w in s {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

fn segments<A: Allocator>(m: &Builder<A>) -> Vec<Vec<u64>> {
    m.get_segments_for_output()
        .iter()
        .map(|s| {
            s.chunks(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
                .collect()
        })
        .collect()
}

// ---- RPC messages ----

/// A call message: `question` calls `interface.method` on the answer to
/// `on`, or on the capability in its first pointer field if `field`.
fn call<A: Allocator>(
    mut m: Builder<A>,
    question: u32,
    on: u32,
    field: bool,
    interface: u64,
    method: u16,
    content: impl FnOnce(capnp::any_pointer::Builder<'_>),
) -> Builder<A> {
    let mut c = m.init_root::<message::Builder<'_>>().init_call();
    c.set_question_id(question);
    c.set_interface_id(interface);
    c.set_method_id(method);
    let mut answer = c.reborrow().init_target().init_promised_answer();
    answer.set_question_id(on);
    if field {
        answer.init_transform(1).get(0).set_get_pointer_field(0);
    }
    content(c.init_params().init_content());
    m
}

/// What a call placed in the content while the envelope is built, to be
/// found again and replaced by hand-made words.
const MARKER: &[u8; 8] = b"content!";

/// The envelope of a call from the raw session (question 2, `fromData` on
/// the actor from the gate), in one segment, and the position of its
/// params' content pointer (the cap table pointer follows it).
fn from_data_envelope() -> (Vec<u64>, usize) {
    let m = call(
        Builder::new_default(),
        2,
        1,
        true,
        tensor_worker::Client::TYPE_ID,
        0,
        |c| {
            c.initn_as::<capnp::data::Builder<'_>>(8)
                .copy_from_slice(MARKER);
        },
    );
    let mut segs = segments(&m);
    assert_eq!(segs.len(), 1);
    let seg = segs.pop().unwrap();
    let marker = u64::from_le_bytes(*MARKER);
    let at = seg.iter().position(|&w| w == marker).unwrap();
    let content = (0..seg.len())
        .find(|&p| seg[p] == list_ptr(p, at, 2, 8))
        .expect("the content pointer");
    assert_eq!(
        seg[content + 1],
        0,
        "an empty cap table follows the content"
    );
    (seg, content)
}

/// A session on a raw socket: bootstrap (question 0) and the gate opened
/// on it (question 1), both pipelined; further questions are the test's.
struct Raw {
    stream: TcpStream,
}

/// How the worker answered a question.
enum Reply {
    Results(capnp::message::Reader<OwnedSegments>),
    Exception(String),
    /// The worker aborted or closed the connection.
    Closed(String),
}

impl Raw {
    async fn open(server: &TcpServer) -> Raw {
        let mut raw = Raw {
            stream: connect_raw(server).await,
        };
        let mut m = Builder::new_default();
        m.init_root::<message::Builder<'_>>()
            .init_bootstrap()
            .set_question_id(0);
        raw.send(&segments(&m)).await;
        let m = call(
            Builder::new_default(),
            1,
            0,
            false,
            gate::Client::TYPE_ID,
            0,
            |c| {
                c.init_as::<gate::open_params::Builder<'_>>().set_token(b"");
            },
        );
        raw.send(&segments(&m)).await;
        raw
    }

    async fn send(&mut self, segments: &[Vec<u64>]) {
        // The worker may close before reading everything; that shows in
        // the reply.
        let _ = within(LIMIT, self.stream.write_all(&frame(segments))).await;
    }

    /// Reads until the worker answers `question`, aborts or closes.
    async fn reply(&mut self, question: u32) -> Reply {
        within(LIMIT, async {
            loop {
                let Ok(bytes) = read_frame(&mut self.stream).await else {
                    return Reply::Closed("connection closed".into());
                };
                let m = capnp::serialize::read_message(&mut &bytes[..], ReaderOptions::new())
                    .expect("the worker sends well-formed messages");
                let root = m.get_root::<message::Reader<'_>>().unwrap();
                match root.which().unwrap() {
                    message::Abort(e) => {
                        let reason = e.unwrap().get_reason().unwrap().to_string().unwrap();
                        return Reply::Closed(format!("aborted: {reason}"));
                    }
                    message::Return(r) => {
                        let r = r.unwrap();
                        if r.get_answer_id() != question {
                            continue;
                        }
                        return match r.which().unwrap() {
                            return_::Results(_) => Reply::Results(m),
                            return_::Exception(e) => Reply::Exception(
                                e.unwrap().get_reason().unwrap().to_string().unwrap(),
                            ),
                            _ => panic!("unexpected kind of return"),
                        };
                    }
                    _ => {}
                }
            }
        })
        .await
    }

    /// Asks for the tensor made by question `made` (question 3) and checks
    /// it is the legitimate one.
    async fn assert_tensor_is_legit(&mut self, made: u32) {
        let m = call(
            Builder::new_default(),
            3,
            made,
            true,
            tensor::Client::TYPE_ID,
            1,
            |_| {},
        );
        self.send(&segments(&m)).await;
        let Reply::Results(m) = self.reply(3).await else {
            panic!("reading the tensor back failed");
        };
        let root = m.get_root::<message::Reader<'_>>().unwrap();
        let message::Return(r) = root.which().unwrap() else {
            unreachable!()
        };
        let return_::Results(p) = r.unwrap().which().unwrap() else {
            unreachable!()
        };
        let results: tensor::read_results::Reader<'_> = p.unwrap().get_content().get_as().unwrap();
        assert_legit(results.get_data().unwrap());
    }
}

/// One framed message off `stream`.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; 4];
    stream.read_exact(&mut out).await?;
    let count = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize + 1;
    let table = 4 * (count + usize::from(count % 2 == 0));
    out.resize(4 + table, 0);
    stream.read_exact(&mut out[4..]).await?;
    let words: usize = out[4..4 + 4 * count]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
        .sum();
    let body = out.len();
    out.resize(body + words * 8, 0);
    stream.read_exact(&mut out[body..]).await?;
    Ok(out)
}

#[track_caller]
fn assert_results(reply: Reply, what: &str) {
    match reply {
        Reply::Results(_) => {}
        Reply::Exception(e) => panic!("{what}: the call failed: {e}"),
        Reply::Closed(e) => panic!("{what}: the connection closed: {e}"),
    }
}

#[track_caller]
fn assert_refused(reply: Reply, what: &str) {
    match reply {
        Reply::Results(_) => panic!("{what}: served"),
        Reply::Exception(e) => eprintln!("{what}: the call failed: {e}"),
        Reply::Closed(e) => eprintln!("{what}: the connection closed: {e}"),
    }
}

/// Runs `attack` against a fresh one-vat tensor worker, with a client
/// connected before it and a newcomer after it both served.
fn against_a_worker<F, Fut>(attack: F)
where
    F: Fn(TcpServer) -> Fut,
    Fut: std::future::Future<Output = TcpServer>,
{
    let _serial = serial();
    each_on(&TCP, 1, |h| {
        let attack = &attack;
        async move {
            let server = serve_tensors(&h, ServeOptions::default()).await;
            let bystander = connect_tensors(&server, &ConnectOptions::default()).await;
            assert_served(&bystander).await;
            let server = attack(server).await;
            others_still_served(&server, &bystander).await;
        }
    });
}

#[test]
fn a_control_call_written_by_hand_is_served() {
    // The same envelope and hand-made words as the attacks below, without
    // the attack: what the worker refuses below is the attack alone.
    against_a_worker(|server| async move {
        let mut raw = Raw::open(&server).await;
        let (mut seg, content) = from_data_envelope();
        push_legit_params(&mut seg, content);
        raw.send(&[seg]).await;
        assert_results(raw.reply(2).await, "hand-made call");
        raw.assert_tensor_is_legit(2).await;
        server
    });
}

#[test]
fn a_cap_table_whose_entries_share_one_huge_transform_is_stopped_by_the_traversal_limit() {
    // Ten thousand cap descriptors, all pointing at one promised answer
    // whose transform has ten thousand ops: a 240 KB message that reads as
    // 10^8 words (800 MB), far over the traversal limit of the default
    // 64 MiB. The RPC system reads every descriptor before the call is
    // dispatched.
    const DESCRIPTORS: usize = 10_000;
    const OPS: usize = 10_000;
    against_a_worker(|server| async move {
        let mut raw = Raw::open(&server).await;
        // Otherwise a call the worker serves (see the control above).
        let (mut seg, content) = from_data_envelope();
        push_legit_params(&mut seg, content);
        let table = content + 1;
        let tag = seg.len();
        seg[table] = list_ptr(table, tag, 7, (2 * DESCRIPTORS) as u32);
        seg.push(composite_tag(DESCRIPTORS as u32, 1, 1));
        let shared = tag + 1 + 2 * DESCRIPTORS;
        for i in 0..DESCRIPTORS {
            let d = tag + 1 + 2 * i;
            seg.push(4); // receiverAnswer
            seg.push(struct_ptr(d + 1, shared, 1, 1));
        }
        // The promised answer: question 0 (the bootstrap, which has a
        // pipeline), then its transform of no-ops.
        seg.push(0);
        seg.push(list_ptr(shared + 1, shared + 2, 7, OPS as u32));
        seg.push(composite_tag(OPS as u32, 1, 0));
        seg.extend(std::iter::repeat_n(0, OPS));
        assert!(seg.len() * 8 < 256 << 10);

        raw.send(&[seg]).await;
        assert_refused(raw.reply(2).await, "amplified cap table");
        server
    });
}

#[test]
fn a_message_nested_far_past_the_limit_is_refused_or_left_unread() {
    // Nesting deeper than 64 can only be where the worker never reads (no
    // schema it serves nests that deep on the path it reads), or in the
    // RPC envelope. In the first case the call is served as if the extra
    // data were not there; in the second the connection closes.
    const DEPTH: usize = 10_000;
    against_a_worker(|server| async move {
        // A legitimate tensor whose unknown third pointer field leads down
        // a chain of DEPTH structs.
        let mut raw = Raw::open(&server).await;
        let (mut seg, content) = from_data_envelope();
        let t = push_legit_params(&mut seg, content);
        let mut link = t + 3;
        for _ in 0..DEPTH {
            let next = seg.len();
            seg[link] = struct_ptr(link, next, 0, 1);
            seg.push(0);
            link = next;
        }
        raw.send(&[seg]).await;
        assert_results(raw.reply(2).await, "deep unknown field");
        raw.assert_tensor_is_legit(2).await;

        // An RPC message that is an `unimplemented` echo of one, DEPTH deep.
        let mut raw = Raw::open(&server).await;
        let mut seg = vec![0u64];
        let mut link = 0;
        for _ in 0..DEPTH {
            let next = seg.len();
            seg[link] = struct_ptr(link, next, 1, 1);
            seg.push(0); // discriminant: unimplemented
            seg.push(0);
            link = next + 1;
        }
        raw.send(&[seg]).await;
        assert_refused(raw.reply(2).await, "nested unimplemented");
        server
    });
}

#[test]
fn far_pointers_are_followed_once_and_chains_of_them_are_refused() {
    against_a_worker(|server| async move {
        // Legitimate far pointers: the builder puts every object in a
        // segment of its own, so each pointer is a far (or double-far) one.
        let mut raw = Raw::open(&server).await;
        let alloc = HeapAllocator::new()
            .first_segment_words(1)
            .allocation_strategy(AllocationStrategy::FixedSize);
        let m = call(
            Builder::new(alloc),
            2,
            1,
            true,
            tensor_worker::Client::TYPE_ID,
            0,
            |c| {
                set_legit(
                    c.init_as::<tensor_worker::from_data_params::Builder<'_>>()
                        .init_data(),
                )
            },
        );
        let segs = segments(&m);
        assert!(segs.len() > 8, "{} segments", segs.len());
        raw.send(&segs).await;
        assert_results(raw.reply(2).await, "far pointers");
        raw.assert_tensor_is_legit(2).await;

        // The params' content through a chain of 500 far pointers, each
        // landing on the next.
        let mut raw = Raw::open(&server).await;
        let (mut seg, content) = from_data_envelope();
        seg[content] = far_ptr(false, 0, 1);
        let mut segs = vec![seg];
        for s in 1..500 {
            segs.push(vec![far_ptr(false, 0, s + 1)]);
        }
        let mut last = vec![0u64];
        last[0] = struct_ptr(0, 1, 0, 1);
        last.push(0);
        segs.push(last);
        raw.send(&segs).await;
        assert_refused(raw.reply(2).await, "far pointer chain");

        // A far pointer landing on itself, and a double-far one whose
        // landing pad sends it to a segment that does not exist.
        for pad in [far_ptr(false, 0, 1), far_ptr(false, 0, 9_999)] {
            let mut raw = Raw::open(&server).await;
            let (mut seg, content) = from_data_envelope();
            seg[content] = far_ptr(pad >> 32 == 9_999, 0, 1);
            raw.send(&[seg, vec![pad, struct_ptr(1, 2, 0, 1)]]).await;
            assert_refused(raw.reply(2).await, "far pointer loop");
        }

        // The message's root itself through a chain of far pointers: not
        // even an RPC message.
        let mut raw = Raw::open(&server).await;
        let mut segs: Vec<Vec<u64>> = (0..500).map(|s| vec![far_ptr(false, 0, s + 1)]).collect();
        segs.push(vec![0]);
        raw.send(&segs).await;
        assert_refused(raw.reply(2).await, "root far pointer chain");
        server
    });
}

/// Sends `stream` one byte of a bootstrap message every `every` until the
/// worker closes it.
async fn dribble(mut stream: TcpStream, every: Duration) {
    let mut m = Builder::new_default();
    m.init_root::<message::Builder<'_>>()
        .init_bootstrap()
        .set_question_id(0);
    let bytes = frame(&segments(&m));
    let mut buf = [0u8; 64];
    for &b in bytes.iter().cycle() {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            () = tokio::time::sleep(every) => {
                if stream.write_all(&[b]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[test]
fn hundreds_of_silent_and_dribbling_connections_neither_starve_clients_nor_keep_memory() {
    // Each connection the worker holds costs buffers; a crowd that never
    // opens the gate must neither crowd out real clients nor leave its
    // memory behind once the worker has closed it.
    const CROWD: usize = 300;
    const TIMEOUT: Duration = Duration::from_secs(5);
    let _serial = serial();
    each_on(&TCP, 1, |h| async move {
        let mut opts = ServeOptions::default();
        opts.idle_timeout = Some(TIMEOUT);
        opts.handshake_timeout = Some(TIMEOUT);
        // The crowd fits the unauthenticated pool: what closes it here is
        // the timeouts (the pool's own eviction: gate_slots.rs).
        opts.max_unauthenticated = 2 * CROWD;
        opts.max_unauthenticated_per_address = 2 * CROWD;
        let server = serve_tensors(&h, opts).await;
        let bystander = connect_tensors(&server, &chatty()).await;
        assert_served(&bystander).await;
        let rss_before = vm_rss();

        let opened = Instant::now();
        let mut silent = Vec::new();
        let mut dribbling = Vec::new();
        for _ in 0..CROWD / 2 {
            silent.push(connect_raw(&server).await);
            let stream = connect_raw(&server).await;
            dribbling.push(tokio::task::spawn_local(dribble(
                stream,
                Duration::from_millis(100),
            )));
        }

        // While the crowd is there, clients old and new are served at once.
        let newcomer = connect_tensors(&server, &chatty()).await;
        assert_served(&newcomer).await;
        assert_served(&bystander).await;
        assert!(
            opened.elapsed() < TIMEOUT,
            "too slow to tell whether clients were served while the crowd was there"
        );
        for s in &silent {
            let mut b = [0u8; 1];
            assert!(
                matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "a silent connection closed early"
            );
        }

        // The worker closes every one: the silent ones for idling, the
        // dribbling ones for not opening the gate in time.
        for s in &mut silent {
            closed_by_peer(s, CLOSE_LIMIT).await;
        }
        for d in dribbling {
            within(CLOSE_LIMIT, d).await.unwrap();
        }
        drop(silent);
        assert_served(&bystander).await;
        assert_served(&newcomer).await;

        let rss_after = vm_rss();
        eprintln!(
            "RSS {} MiB before the crowd, {} MiB after",
            rss_before >> 20,
            rss_after >> 20
        );
        assert!(
            rss_after <= rss_before + (100 << 20),
            "RSS grew from {rss_before} to {rss_after} bytes"
        );
    });
}

#[test]
fn slots_held_by_silent_peers_come_back_when_the_worker_closes_them() {
    // A few slots, taken by silent peers wave after wave: a slot that did
    // not come back would leave the worker refusing everyone by the end.
    const SLOTS: usize = 4;
    const WAVES: usize = 6;
    let _serial = serial();
    each_on(&TCP, 1, |h| async move {
        let mut opts = ServeOptions::default();
        opts.max_connections = SLOTS;
        opts.idle_timeout = Some(Duration::from_millis(300));
        opts.handshake_timeout = Some(Duration::from_millis(300));
        let server = serve_tensors(&h, opts).await;
        for _ in 0..WAVES {
            let mut silent = Vec::new();
            for _ in 0..SLOTS {
                silent.push(connect_raw(&server).await);
            }
            // A client past the connection limit makes room by closing the
            // oldest connection that has not opened the gate.
            let newcomer = connect_tensors(&server, &ConnectOptions::default()).await;
            assert_served(&newcomer).await;
            drop(newcomer);

            for s in &mut silent {
                closed_by_peer(s, CLOSE_LIMIT).await;
            }
            let conn = within(LIMIT, served_once_a_slot_frees(&server)).await;
            assert_served(&conn).await;
        }
        // Every slot: as many clients as there are slots, all served.
        let mut all = Vec::new();
        for _ in 0..SLOTS {
            let conn = within(LIMIT, served_once_a_slot_frees(&server)).await;
            assert_served(&conn).await;
            all.push(conn);
        }
    });
}
