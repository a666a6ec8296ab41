//! A raw RPC session over a TCP socket: messages built with capnp-rpc's own
//! schema and written in the stream framing by hand, so a test can send what
//! no well-behaved client would (floods, pipelines past the gate, headers
//! that claim more than follows). Include with
//! `#[path = "common/raw.rs"] mod raw;`.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use capactor::schema::actor_capnp::gate;
use capactor::schema::tensor_capnp::{tensor_worker, DType};
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize::OwnedSegments;
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::{message, return_};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a raw session waits for anything the worker should do at once.
pub const RAW_LIMIT: Duration = Duration::from_secs(20);

/// One raw connection.
pub struct Raw {
    reader: OwnedReadHalf,
    /// `None` once handed to a [`Raw::flood`].
    writer: Option<OwnedWriteHalf>,
}

/// What the worker sent back, read until a given answer or the end.
#[derive(Debug)]
pub enum Reply {
    /// The question was answered with results.
    Results,
    /// The question was answered with an exception (its reason).
    Exception(String),
    /// The worker aborted the connection (`aborted: <reason>`) or closed it.
    Closed(String),
}

impl Reply {
    /// The text of an exception or of the close, for assertions.
    pub fn text(&self) -> &str {
        match self {
            Reply::Results => "results",
            Reply::Exception(e) | Reply::Closed(e) => e,
        }
    }
}

/// A framed message, as the stream framing writes it.
pub fn framed(m: &Builder<HeapAllocator>) -> Vec<u8> {
    capnp::serialize::write_message_to_words(m)
}

/// The 8-byte frame header of a one-segment message of `words` words.
pub fn header(words: u32) -> Vec<u8> {
    let mut h = 0u32.to_le_bytes().to_vec();
    h.extend_from_slice(&words.to_le_bytes());
    h
}

/// A `Bootstrap` asking question `q`.
pub fn bootstrap(q: u32) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    m.init_root::<message::Builder<'_>>()
        .init_bootstrap()
        .set_question_id(q);
    m
}

/// `Gate.open(token)` as question `q`, on the answer to question `on` (the
/// bootstrap).
pub fn open(q: u32, on: u32, token: &[u8]) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    {
        let mut c = m.init_root::<message::Builder<'_>>().init_call();
        c.set_question_id(q);
        c.set_interface_id(gate::Client::TYPE_ID);
        c.set_method_id(0);
        c.reborrow()
            .init_target()
            .init_promised_answer()
            .set_question_id(on);
        c.init_params()
            .init_content()
            .init_as::<gate::open_params::Builder<'_>>()
            .set_token(token);
    }
    m
}

/// `TensorWorker.fromData` of `bytes` bytes (an `i32` vector) as question
/// `q`, pipelined on the actor that the `open` asked as question `on`
/// hands out.
pub fn from_data(q: u32, on: u32, bytes: usize) -> Builder<HeapAllocator> {
    let mut m = Builder::new_default();
    {
        let mut c = m.init_root::<message::Builder<'_>>().init_call();
        c.set_question_id(q);
        c.set_interface_id(tensor_worker::Client::TYPE_ID);
        c.set_method_id(0);
        let mut target = c.reborrow().init_target().init_promised_answer();
        target.set_question_id(on);
        target.init_transform(1).get(0).set_get_pointer_field(0);
        let mut data = c
            .init_params()
            .init_content()
            .init_as::<tensor_worker::from_data_params::Builder<'_>>()
            .init_data();
        data.set_dtype(DType::I32);
        data.reborrow().init_shape(1).set(0, (bytes / 4) as u64);
        data.init_data((bytes / 4 * 4) as u32).fill(1);
    }
    m
}

impl Raw {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(RAW_LIMIT, TcpStream::connect(addr))
            .await
            .expect("connecting timed out")
            .expect("connecting");
        let (reader, writer) = stream.into_split();
        Raw {
            reader,
            writer: Some(writer),
        }
    }

    /// Connects and opens the gate with `token` (bootstrap as question 0,
    /// `open` as question 1), waiting for the answer: the next question is
    /// 2, asked of an authenticated connection.
    pub async fn authenticated(addr: SocketAddr, token: &[u8]) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(&bootstrap(0)).await;
        raw.send(&open(1, 0, token)).await;
        match raw.reply(1).await {
            Reply::Results => raw,
            other => panic!("the gate did not open: {other:?}"),
        }
    }

    /// Writes `m`, framed. The worker may have closed the connection; that
    /// shows in what it sent back.
    pub async fn send(&mut self, m: &Builder<HeapAllocator>) {
        self.send_bytes(&framed(m)).await;
    }

    /// Writes `bytes` as they are (see [`Raw::send`]).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let writer = self.writer.as_mut().expect("not flooding");
        let _ = tokio::time::timeout(RAW_LIMIT, writer.write_all(bytes)).await;
    }

    /// Writes `bytes` from a task of its own (on the current `LocalSet`),
    /// for floods the worker is not expected to read whole; the task ends
    /// when everything is written or the worker closes the connection, and
    /// says how many bytes went out. No more can be sent after it.
    pub fn flood(&mut self, bytes: Vec<u8>) -> JoinHandle<usize> {
        let mut writer = self.writer.take().expect("one flood per connection");
        tokio::task::spawn_local(async move {
            let mut sent = 0;
            for chunk in bytes.chunks(64 << 10) {
                if writer.write_all(chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    }

    /// Reads until the worker answers question `q`, aborts or closes.
    pub async fn reply(&mut self, q: u32) -> Reply {
        loop {
            match self.next().await {
                Ok((answer, reply)) if answer == q => return reply,
                Ok(_) => {}
                Err(closed) => return closed,
            }
        }
    }

    /// Reads every answer until the worker aborts or closes: the answers
    /// (question, reply) in order and how it ended.
    pub async fn until_closed(&mut self) -> (Vec<(u32, Reply)>, Reply) {
        let mut answers = Vec::new();
        loop {
            match self.next().await {
                Ok(a) => answers.push(a),
                Err(closed) => return (answers, closed),
            }
        }
    }

    /// The next answer, or how the connection ended; other messages are
    /// skipped.
    async fn next(&mut self) -> Result<(u32, Reply), Reply> {
        let read = async {
            loop {
                let Ok(bytes) = read_frame(&mut self.reader).await else {
                    return Err(Reply::Closed("connection closed".into()));
                };
                let m: capnp::message::Reader<OwnedSegments> =
                    capnp::serialize::read_message(&mut &bytes[..], ReaderOptions::new())
                        .expect("the worker sends well-formed messages");
                let root = m.get_root::<message::Reader<'_>>().unwrap();
                match root.which().unwrap() {
                    message::Abort(e) => {
                        let reason = e.unwrap().get_reason().unwrap().to_string().unwrap();
                        return Err(Reply::Closed(format!("aborted: {reason}")));
                    }
                    message::Return(r) => {
                        let r = r.unwrap();
                        let reply = match r.which().unwrap() {
                            return_::Results(_) => Reply::Results,
                            return_::Exception(e) => Reply::Exception(
                                e.unwrap().get_reason().unwrap().to_string().unwrap(),
                            ),
                            _ => Reply::Exception("another kind of return".into()),
                        };
                        return Ok((r.get_answer_id(), reply));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(RAW_LIMIT, read)
            .await
            .expect("the worker neither answered nor closed in time")
    }
}

/// One framed message off `stream`.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
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

/// The resident set of this process (the worker included), in bytes.
pub fn vm_rss() -> u64 {
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
