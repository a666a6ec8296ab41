//! Tests of `wire.rs`.

use super::super::inbox::parse_table;
use super::*;
use capnp_rpc::VatNetwork as _;
use futures::FutureExt;
use std::io;

/// A peer's byte stream, handed out at most `step` bytes per read; and
/// what we write, taken at most `step` bytes per write.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .step
            .min(self.bytes.len() - self.at)
            .min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = self.step.min(b.len());
        self.bytes.extend_from_slice(&b[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A message whose root is a `Data` of `len` bytes, in segments that
/// start at `first_words`.
fn data_message(len: usize, first_words: u32) -> Vec<u8> {
    let mut m = Builder::new(HeapAllocator::new().first_segment_words(first_words));
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    m.set_root::<capnp::data::Owned>(&data[..]).unwrap();
    capnp::serialize::write_message_to_words(&m)
}

#[test]
fn messages_are_read_whole_however_the_stream_is_cut() {
    // One segment; several segments; a body larger than the read buffer.
    let lens = [10, 3000, 3 * BUFFER + 5];
    let mut stream = Vec::new();
    for (len, first) in lens.iter().zip([64, 1, 64]) {
        stream.extend(data_message(*len, first));
    }
    for step in [1, 7, 4096, BUFFER, usize::MAX] {
        let trickle = Trickle {
            bytes: stream.clone(),
            at: 0,
            step,
        };
        let mut network = network(trickle, Side::Server, &Limits::default());
        let mut conn = network.accept().now_or_never().unwrap().unwrap();
        for len in lens {
            let message = conn
                .receive_incoming_message()
                .now_or_never()
                .expect("the stream is always ready")
                .unwrap()
                .expect("a message");
            let data: capnp::data::Reader<'_> = message.get_body().unwrap().get_as().unwrap();
            assert_eq!(data.len(), len, "step {step}");
            assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        }
        let end = conn.receive_incoming_message().now_or_never().unwrap();
        assert!(
            matches!(end, Ok(None)),
            "a clean end after the last message"
        );
    }
}

#[test]
fn messages_are_written_in_the_stream_framing() {
    for step in [1, 7, 4096, usize::MAX] {
        let trickle = Trickle {
            bytes: Vec::new(),
            at: 0,
            step,
        };
        let mut network = network(trickle, Side::Client, &Limits::default());
        let mut conn = network.accept().now_or_never().unwrap().unwrap();
        let mut expected = Vec::new();
        // Small ones are copied into the buffer; the large segment of
        // the last is written from the message.
        for len in [10, 3000, 3 * DIRECT] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = conn.new_outgoing_message(0);
            out.get_body()
                .unwrap()
                .set_as::<capnp::data::Owned>(&data[..])
                .unwrap();
            let (_, sent) = out.send();
            expected.extend(capnp::serialize::write_message_to_words(&*sent));
        }
        let mut driver = network.drive_until_shutdown();
        assert!(
            (&mut driver).now_or_never().is_none(),
            "drives until shutdown"
        );
        assert_eq!(network.wire.stream.borrow().bytes, expected, "step {step}");
        // Shutdown completes once the driver has written everything;
        // the driver, once the connection is dropped too.
        let mut closed = conn.shutdown(Ok(()));
        assert!((&mut closed).now_or_never().is_none());
        assert!((&mut driver).now_or_never().is_none());
        assert!(matches!(closed.now_or_never(), Some(Ok(()))));
        drop(conn);
        assert!(matches!(driver.now_or_never(), Some(Ok(()))));
    }
}

#[test]
fn a_stream_cut_mid_message_is_an_error() {
    let mut bytes = data_message(100, 64);
    bytes.truncate(bytes.len() - 3);
    let trickle = Trickle {
        bytes,
        at: 0,
        step: 10,
    };
    let mut network = network(trickle, Side::Server, &Limits::default());
    let mut conn = network.accept().now_or_never().unwrap().unwrap();
    let end = conn.receive_incoming_message().now_or_never().unwrap();
    assert_eq!(
        end.err().unwrap().kind,
        capnp::ErrorKind::PrematureEndOfFile
    );
}

#[test]
fn tables_written_are_tables_read() {
    for n in 1..5 {
        let segments: Vec<Vec<u8>> = (0..n).map(|i| vec![0u8; 8 * (i + 1)]).collect();
        let slices: Vec<&[u8]> = segments.iter().map(|s| &s[..]).collect();
        let mut buf = Vec::new();
        write_table(&mut buf, &slices);
        assert_eq!(buf.len() % 8, 0);
        let (ends, len) = parse_table(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(ends.len(), n);
        assert_eq!(*ends.last().unwrap() as usize, (1..=n).sum::<usize>());
    }
}
