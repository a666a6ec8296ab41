//! Tensor arguments that arrive as promises from the caller's own
//! connection, in the message order libcapnp 0.9 sends them: the caller
//! exports its promise for `w` (`senderPromise`), sends the `matmul` that
//! uses it *before* the `fromData` that makes `w`, and only then a
//! `Resolve` pointing the promise at that `fromData`'s answer. The worker
//! must wait for the `Resolve` (within the call's deadline) and compute.
//!
//! The messages are built by hand on a raw socket, so the order is exactly
//! the one under test whatever our own client library would do.

mod common;

use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::actor_capnp::gate;
use capactor::schema::tensor_capnp::{tensor, tensor_data, tensor_worker, DType};
use capactor::{ServeOptions, TcpServer};
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::traits::{HasTypeId, ImbueMut};
use capnp_rpc::rpc_capnp::{message, return_};
use common::{connect_raw, each_on, within, Transport, SETUP_LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long anything the worker should do at once may take.
const LIMIT: Duration = Duration::from_secs(20);

/// The id under which the raw client exports its promise for `w`.
const PROMISE: u32 = 7;

/// x (2×3) and w (3×2), and x·w.
const X: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
const W: [f32; 6] = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
const XW: [f32; 4] = [4.0, 5.0, 10.0, 11.0];

async fn serve(opts: ServeOptions, h: &common::Harness) -> TcpServer {
    let quota = Quota::new(64 << 20);
    within(
        SETUP_LIMIT,
        h.rt.serve_tcp::<tensor_worker::Client, _, _>(
            "127.0.0.1:0",
            move || TensorWorker::new("w", quota.clone()),
            opts,
        ),
    )
    .await
    .unwrap()
}

/// A raw two-party session, speaking rpc.capnp messages one by one.
struct Raw {
    stream: TcpStream,
}

/// How the worker answered one question.
#[derive(Debug)]
enum Reply {
    Results(Vec<f32>),
    Exception(capnp_rpc::rpc_capnp::exception::Type, String),
}

/// A stand-in capability: writing it into a message gives the capability
/// pointer whose descriptor we then write by hand.
struct Placeholder;
impl tensor::Server for Placeholder {}

impl Raw {
    async fn connect(server: &TcpServer) -> Raw {
        Raw {
            stream: connect_raw(server).await,
        }
    }

    async fn send(&mut self, m: &Builder<HeapAllocator>) {
        let mut bytes = Vec::new();
        capnp::serialize::write_message(&mut bytes, m).unwrap();
        within(LIMIT, self.stream.write_all(&bytes)).await.unwrap();
    }

    async fn bootstrap_and_open(&mut self) {
        let mut m = Builder::new_default();
        m.init_root::<message::Builder<'_>>()
            .init_bootstrap()
            .set_question_id(0);
        self.send(&m).await;
        let m = call(1, 0, false, gate::Client::TYPE_ID, 0, |c| {
            c.init_as::<gate::open_params::Builder<'_>>().set_token(b"");
        });
        self.send(&m).await;
    }

    /// `fromData` of a 2-D f32 tensor on the actor from the gate.
    async fn make_tensor(&mut self, question: u32, shape: [u64; 2], values: &[f32]) {
        let m = call(question, 1, true, tensor_worker::Client::TYPE_ID, 0, |c| {
            let p = c.init_as::<tensor_worker::from_data_params::Builder<'_>>();
            set_f32(p.init_data(), shape, values);
        });
        self.send(&m).await;
    }

    /// `matmul` on the tensor of question `on`, whose `other` is the
    /// client's exported promise [`PROMISE`].
    async fn matmul_with_promise(&mut self, question: u32, on: u32) {
        let mut m = Builder::new_default();
        {
            let mut c = m.init_root::<message::Builder<'_>>().init_call();
            c.set_question_id(question);
            c.set_interface_id(tensor::Client::TYPE_ID);
            c.set_method_id(7);
            let mut target = c.reborrow().init_target().init_promised_answer();
            target.set_question_id(on);
            target.init_transform(1).get(0).set_get_pointer_field(0);
            let mut payload = c.init_params();
            let mut caps = Vec::new();
            {
                let mut content = payload.reborrow().get_content();
                content.imbue_mut(&mut caps);
                let mut p = content.init_as::<tensor::matmul_params::Builder<'_>>();
                p.set_other(capnp_rpc::new_client(Placeholder));
            }
            assert_eq!(caps.len(), 1, "one capability pointer, index 0");
            payload.init_cap_table(1).get(0).set_sender_promise(PROMISE);
        }
        self.send(&m).await;
    }

    /// `matmul` on the tensor of question `on`, whose `other` is a
    /// capability the client hosts itself (`senderHosted` [`PROMISE`]):
    /// what libcapnp sends for a pipelined result it has already seen fail.
    async fn matmul_with_hosted(&mut self, question: u32, on: u32) {
        let mut m = Builder::new_default();
        {
            let mut c = m.init_root::<message::Builder<'_>>().init_call();
            c.set_question_id(question);
            c.set_interface_id(tensor::Client::TYPE_ID);
            c.set_method_id(7);
            let mut target = c.reborrow().init_target().init_promised_answer();
            target.set_question_id(on);
            target.init_transform(1).get(0).set_get_pointer_field(0);
            let mut payload = c.init_params();
            let mut caps = Vec::new();
            {
                let mut content = payload.reborrow().get_content();
                content.imbue_mut(&mut caps);
                let mut p = content.init_as::<tensor::matmul_params::Builder<'_>>();
                p.set_other(capnp_rpc::new_client(Placeholder));
            }
            payload.init_cap_table(1).get(0).set_sender_hosted(PROMISE);
        }
        self.send(&m).await;
    }

    /// Reads messages until the worker answers `question`, answering every
    /// call the worker makes on the client's capability [`PROMISE`] with
    /// an exception saying `reason`. Returns the reply and how many such
    /// calls there were.
    async fn reply_failing_calls(&mut self, question: u32, reason: &str) -> (Reply, usize) {
        let mut calls = 0;
        loop {
            let bytes = within(LIMIT, read_frame(&mut self.stream)).await;
            let m = capnp::serialize::read_message(&mut &bytes[..], ReaderOptions::new())
                .expect("the worker sends well-formed messages");
            let root = m.get_root::<message::Reader<'_>>().unwrap();
            match root.which().unwrap() {
                message::Call(c) => {
                    let c = c.unwrap();
                    let target = c.get_target().unwrap();
                    let ours = matches!(
                        target.which().unwrap(),
                        capnp_rpc::rpc_capnp::message_target::ImportedCap(id) if id == PROMISE
                    );
                    if ours {
                        calls += 1;
                        let mut out = Builder::new_default();
                        {
                            let mut r = out.init_root::<message::Builder<'_>>().init_return();
                            r.set_answer_id(c.get_question_id());
                            r.init_exception().set_reason(reason);
                        }
                        self.send(&out).await;
                    }
                }
                message::Return(r) => {
                    let r = r.unwrap();
                    if r.get_answer_id() != question {
                        continue;
                    }
                    if let return_::Exception(e) = r.which().unwrap() {
                        let e = e.unwrap();
                        let reply = Reply::Exception(
                            e.get_type().unwrap(),
                            e.get_reason().unwrap().to_string().unwrap(),
                        );
                        return (reply, calls);
                    }
                    panic!("the call with a broken argument succeeded");
                }
                _ => {}
            }
        }
    }

    /// Resolves [`PROMISE`] to the tensor in the answer to `question`.
    async fn resolve_to_answer(&mut self, question: u32) {
        let mut m = Builder::new_default();
        {
            let mut r = m.init_root::<message::Builder<'_>>().init_resolve();
            r.set_promise_id(PROMISE);
            let mut a = r.init_cap().init_receiver_answer();
            a.set_question_id(question);
            a.init_transform(1).get(0).set_get_pointer_field(0);
        }
        self.send(&m).await;
    }

    /// Resolves [`PROMISE`] to an exception.
    async fn resolve_to_exception(&mut self, reason: &str) {
        let mut m = Builder::new_default();
        {
            let mut r = m.init_root::<message::Builder<'_>>().init_resolve();
            r.set_promise_id(PROMISE);
            r.init_exception().set_reason(reason);
        }
        self.send(&m).await;
    }

    /// `read` on the tensor of question `on`.
    async fn read(&mut self, question: u32, on: u32) {
        let m = call(question, on, true, tensor::Client::TYPE_ID, 1, |_| {});
        self.send(&m).await;
    }

    /// Reads messages until the worker answers `question`.
    async fn reply(&mut self, question: u32, limit: Duration) -> Reply {
        within(limit, async {
            loop {
                let bytes = read_frame(&mut self.stream).await;
                let m = capnp::serialize::read_message(&mut &bytes[..], ReaderOptions::new())
                    .expect("the worker sends well-formed messages");
                let root = m.get_root::<message::Reader<'_>>().unwrap();
                let message::Return(r) = root.which().unwrap() else {
                    continue;
                };
                let r = r.unwrap();
                if r.get_answer_id() != question {
                    continue;
                }
                return match r.which().unwrap() {
                    return_::Results(p) => {
                        let results: tensor::read_results::Reader<'_> =
                            p.unwrap().get_content().get_as().unwrap();
                        let d = results.get_data().unwrap();
                        Reply::Results(
                            d.get_data()
                                .unwrap()
                                .chunks(4)
                                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                                .collect(),
                        )
                    }
                    return_::Exception(e) => {
                        let e = e.unwrap();
                        Reply::Exception(
                            e.get_type().unwrap(),
                            e.get_reason().unwrap().to_string().unwrap(),
                        )
                    }
                    _ => panic!("unexpected kind of return"),
                };
            }
        })
        .await
    }
}

/// A call message: `question` calls `interface.method` on the answer to
/// `on`, or on the capability in its first pointer field if `field`.
fn call(
    question: u32,
    on: u32,
    field: bool,
    interface: u64,
    method: u16,
    content: impl FnOnce(capnp::any_pointer::Builder<'_>),
) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
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

fn set_f32(mut b: tensor_data::Builder<'_>, shape: [u64; 2], values: &[f32]) {
    b.set_dtype(DType::F32);
    let mut s = b.reborrow().init_shape(2);
    s.set(0, shape[0]);
    s.set(1, shape[1]);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    b.set_data(&bytes);
}

/// One framed message off `stream`.
async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    stream.read_exact(&mut out).await.expect("a frame");
    let count = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize + 1;
    let table = 4 * (count + usize::from(count % 2 == 0));
    out.resize(4 + table, 0);
    stream.read_exact(&mut out[4..]).await.expect("a frame");
    let words: usize = out[4..4 + 4 * count]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
        .sum();
    let body = out.len();
    out.resize(body + words * 8, 0);
    stream.read_exact(&mut out[body..]).await.expect("a frame");
    out
}

#[test]
fn a_promise_resolved_after_the_call_that_uses_it_is_awaited_in_libcapnp_order() {
    each_on(&[Transport::Tcp], 1, |h| async move {
        let server = serve(ServeOptions::insecure_loopback(), &h).await;
        let mut raw = Raw::connect(&server).await;
        // libcapnp 0.9's order: open, x, matmul(x, promise), w, Resolve.
        raw.bootstrap_and_open().await;
        raw.make_tensor(2, [2, 3], &X).await;
        raw.matmul_with_promise(3, 2).await;
        raw.make_tensor(4, [3, 2], &W).await;
        raw.resolve_to_answer(4).await;
        raw.read(5, 3).await;
        match raw.reply(5, LIMIT).await {
            Reply::Results(v) => assert_eq!(v, XW),
            other => panic!("the chain failed: {other:?}"),
        }
    });
}

#[test]
fn a_promise_resolved_to_a_question_not_yet_asked_is_refused_not_awaited() {
    each_on(&[Transport::Tcp], 1, |h| async move {
        let server = serve(ServeOptions::insecure_loopback(), &h).await;
        let mut raw = Raw::connect(&server).await;
        raw.bootstrap_and_open().await;
        raw.make_tensor(2, [2, 3], &X).await;
        raw.matmul_with_promise(3, 2).await;
        // The Resolve names an answer the worker has not been asked for
        // yet: a protocol error of the client's, refused with a clear error.
        raw.resolve_to_answer(4).await;
        raw.make_tensor(4, [3, 2], &W).await;
        raw.read(5, 3).await;
        match raw.reply(5, LIMIT).await {
            Reply::Exception(_, reason) => assert!(reason.contains("receiver answer"), "{reason}"),
            other => panic!("served: {other:?}"),
        }
        // The connection goes on being served.
        raw.read(6, 4).await;
        match raw.reply(6, LIMIT).await {
            Reply::Results(v) => assert_eq!(v, W),
            other => panic!("not served after the refusal: {other:?}"),
        }
    });
}

#[test]
fn a_promise_resolved_to_an_exception_fails_the_call_with_it() {
    each_on(&[Transport::Tcp], 1, |h| async move {
        let server = serve(ServeOptions::insecure_loopback(), &h).await;
        let mut raw = Raw::connect(&server).await;
        raw.bootstrap_and_open().await;
        raw.make_tensor(2, [2, 3], &X).await;
        raw.matmul_with_promise(3, 2).await;
        raw.resolve_to_exception("w could not be made").await;
        raw.read(4, 3).await;
        match raw.reply(4, LIMIT).await {
            Reply::Exception(_, reason) => {
                assert!(reason.contains("w could not be made"), "{reason}")
            }
            other => panic!("served: {other:?}"),
        }
    });
}

#[test]
fn a_promise_never_resolved_fails_the_call_at_its_deadline() {
    each_on(&[Transport::Tcp], 1, |h| async move {
        let mut opts = ServeOptions::insecure_loopback();
        opts.call_deadline = Some(Duration::from_millis(300));
        let server = serve(opts, &h).await;
        let mut raw = Raw::connect(&server).await;
        raw.bootstrap_and_open().await;
        raw.make_tensor(2, [2, 3], &X).await;
        raw.matmul_with_promise(3, 2).await;
        raw.read(4, 3).await;
        match raw.reply(4, LIMIT).await {
            Reply::Exception(kind, reason) => {
                assert_eq!(
                    kind,
                    capnp_rpc::rpc_capnp::exception::Type::Overloaded,
                    "{reason}"
                );
                assert!(reason.contains("deadline"), "{reason}");
            }
            other => panic!("served: {other:?}"),
        }
        // The worker keeps serving the connection.
        raw.make_tensor(5, [3, 2], &W).await;
        raw.read(6, 5).await;
        match raw.reply(6, LIMIT).await {
            Reply::Results(v) => assert_eq!(v, W),
            other => panic!("not served after the refusal: {other:?}"),
        }
    });
}

#[test]
fn a_broken_capability_the_caller_hosts_fails_the_call_with_its_own_error() {
    // libcapnp sends a pipelined result it has already seen fail as a
    // capability it hosts, which answers every call with that failure.
    // The worker must report that failure, not "lives on another worker".
    each_on(&[Transport::Tcp], 1, |h| async move {
        let server = serve(ServeOptions::insecure_loopback(), &h).await;
        let mut raw = Raw::connect(&server).await;
        raw.bootstrap_and_open().await;
        raw.make_tensor(2, [2, 3], &X).await;
        raw.matmul_with_hosted(3, 2).await;
        let reason = "matmul: inner dimensions of shapes [2, 3] and [2] differ";
        match raw.reply_failing_calls(3, reason).await {
            (Reply::Exception(_, got), calls) => {
                assert!(got.contains(reason), "{got}");
                assert!(!got.contains("another worker"), "{got}");
                assert!(calls >= 1, "the worker never asked the capability");
            }
            other => panic!("served: {other:?}"),
        }
        // The connection goes on being served.
        raw.make_tensor(4, [3, 2], &W).await;
        raw.read(5, 4).await;
        match raw.reply(5, LIMIT).await {
            Reply::Results(v) => assert_eq!(v, W),
            other => panic!("not served after the failure: {other:?}"),
        }
    });
}
