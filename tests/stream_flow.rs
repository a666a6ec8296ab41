//! `-> stream` calls: delivered in order, each connection's window bounds
//! the bytes in flight (`Limits::stream_window`), and a failed chunk fails
//! the stream.

mod common;

use std::time::Duration;

use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, LinkConditions, ServeOptions};
use common::{each, within, ALL, REMOTE};

const LIMIT: Duration = Duration::from_secs(20);
const CHUNK: usize = 4 << 10;

fn chunk(p: &probe::Client, seq: u64) -> capnp::capability::Promise<(), capnp::Error> {
    let mut req = p.sink_request();
    req.get().set_seq(seq);
    req.get().set_data(&vec![seq as u8 | 1; CHUNK]);
    req.send()
}

async fn streamed(p: &probe::Client) -> (u64, u64) {
    let reply = within(LIMIT, p.stats_request().send().promise)
        .await
        .unwrap();
    let r = reply.get().unwrap();
    (r.get_streamed_chunks(), r.get_streamed_bytes())
}

#[test]
fn a_stream_arrives_whole_and_in_order() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        for seq in 0..256 {
            within(LIMIT, chunk(&p, seq)).await.unwrap();
        }
        // Calls on one capability are delivered in order: `stats` sees
        // every chunk.
        assert_eq!(streamed(&p).await, (256, 256 * CHUNK as u64));
    });
}

#[test]
fn the_window_bounds_the_bytes_in_flight() {
    each(&REMOTE, |h| async move {
        let mut connect = ConnectOptions::default();
        connect.limits.stream_window = 4 * CHUNK;
        let p = h
            .spawn_with(
                || capactor::actors::Probe::new("probe"),
                LinkConditions::default(),
                ServeOptions::default(),
                connect,
            )
            .await;
        // Nothing is acknowledged before this task yields. A send returns at
        // once while the bytes in flight, its own included, stay under the
        // window plus the largest message (so one large message cannot
        // stall a stream): four chunks, each a little over `CHUNK` on the
        // wire.
        for seq in 0..4 {
            let sent = futures::poll!(chunk(&p, seq));
            assert!(
                matches!(sent, std::task::Poll::Ready(Ok(()))),
                "chunk {seq} is within the window"
            );
        }
        let mut over = chunk(&p, 4);
        assert!(
            futures::poll!(&mut over).is_pending(),
            "the fifth chunk must wait for acknowledgements"
        );
        // The worker acknowledges, and the window opens.
        within(LIMIT, over).await.unwrap();
        for seq in 5..64 {
            within(LIMIT, chunk(&p, seq)).await.unwrap();
        }
        assert_eq!(streamed(&p).await, (64, 64 * CHUNK as u64));
    });
}

#[test]
fn a_failed_chunk_fails_the_rest_of_the_stream() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        within(LIMIT, chunk(&p, 0)).await.unwrap();
        // Out of order: the worker refuses it. The caller learns on a later
        // send, once the refusal has come back.
        let _ = chunk(&p, 7).await;
        let err = within(LIMIT, async {
            for seq in 1.. {
                if let Err(e) = chunk(&p, seq).await {
                    return e;
                }
            }
            unreachable!("the stream never failed")
        })
        .await;
        assert!(
            err.to_string()
                .contains("sink: chunk 7 arrived when chunk 1 was due"),
            "{err}"
        );
        // A stream that failed stays failed: the capability now answers
        // every call with the same error.
        let err = within(LIMIT, p.stats_request().send().promise)
            .await
            .err()
            .expect("a failed stream's capability fails its calls");
        assert!(err.to_string().contains("chunk 7"), "{err}");
    });
}
