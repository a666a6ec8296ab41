//! Bad input on the wire: oversized messages, garbage, truncated and lying
//! frames, and calls to interfaces the worker does not serve. The worker
//! must drop the offending connection and go on serving everyone else.

mod common;

use std::time::Duration;

use capactor::schema::actor_capnp::gate;
use capactor::{ConnectOptions, Heartbeat, Limits, ServeOptions, TcpServer};
use capnp::capability::FromClientHook;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use common::{
    closed_by_peer, connect_probe, connect_raw, each_on, ping, serve_probe, within, Transport,
};
use tokio::io::AsyncWriteExt;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

const LIMIT: Duration = Duration::from_secs(20);
/// How long the worker may take to close a connection that sent garbage.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);
const TCP: [Transport; 1] = [Transport::Tcp];

#[test]
fn a_message_over_the_size_limit_fails_its_caller_and_others_are_still_served() {
    // One vat: the offender and the bystander share the actor's thread.
    each_on(&TCP, 1, |h| async move {
        let mut limits = Limits::default();
        limits.max_message_bytes = 1 << 20;
        let mut opts = ServeOptions::default();
        opts.limits = limits;
        let server = serve_probe(&h.rt, "probe", opts).await;
        let offender = connect_probe(&server, &ConnectOptions::default()).await;
        let bystander = connect_probe(&server, &ConnectOptions::default()).await;
        ping(&offender, LIMIT).await;
        ping(&bystander, LIMIT).await;

        // Under the limit: served.
        let mut req = offender.echo_request();
        req.get().set_data(&vec![1u8; 512 << 10]);
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        assert_eq!(reply.get().unwrap().get_data().unwrap().len(), 512 << 10);

        // Over it: refused. The stream cannot be resynchronised after a
        // refused frame, so the connection may go with it.
        let mut req = offender.echo_request();
        req.get().set_data(&vec![2u8; 2 << 20]);
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        eprintln!("oversized message: {err}");

        ping(&bystander, LIMIT).await;
        let mut req = bystander.echo_request();
        req.get().set_data(b"still served");
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        assert_eq!(reply.get().unwrap().get_data().unwrap(), b"still served");
        let newcomer = connect_probe(&server, &ConnectOptions::default()).await;
        ping(&newcomer, LIMIT).await;
    });
}

/// The first word of a Cap'n Proto frame: segment count minus one, then the
/// first segment's size in words.
fn frame_header(segments_minus_one: u32, first_words: u32) -> Vec<u8> {
    let mut v = segments_minus_one.to_le_bytes().to_vec();
    v.extend_from_slice(&first_words.to_le_bytes());
    v
}

/// Writes `bytes` to the worker on a raw socket (then closes the writing
/// half if `half_close`), checks the worker closes the connection, and that
/// a client connected before and one connecting after are both served.
async fn assert_rejected(server: &TcpServer, bytes: &[u8], half_close: bool) {
    let bystander = connect_probe(server, &ConnectOptions::default()).await;
    ping(&bystander, LIMIT).await;

    let mut raw = connect_raw(server).await;
    // The worker may close before reading everything; a failed write is
    // fine, it is what closing looks like from here.
    let _ = within(LIMIT, raw.write_all(bytes)).await;
    if half_close {
        let _ = within(LIMIT, raw.shutdown()).await;
    }
    closed_by_peer(&mut raw, CLOSE_LIMIT).await;

    ping(&bystander, LIMIT).await;
    let newcomer = connect_probe(server, &ConnectOptions::default()).await;
    ping(&newcomer, LIMIT).await;
}

/// Runs `check` against a fresh one-vat worker.
fn against_a_worker<F, Fut>(check: F)
where
    F: Fn(TcpServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    each_on(&TCP, 1, |h| {
        let check = &check;
        async move {
            let server = serve_probe(&h.rt, "probe", ServeOptions::default()).await;
            check(server).await;
        }
    });
}

#[test]
fn garbage_bytes_close_the_connection_and_the_worker_keeps_serving() {
    against_a_worker(|server| async move {
        assert_rejected(&server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", false).await;
        assert_rejected(&server, &[0xff; 64], false).await;
    });
}

#[test]
fn a_truncated_frame_closes_the_connection_and_the_worker_keeps_serving() {
    against_a_worker(|server| async move {
        // Claims 16 words, sends 2 and stops writing.
        let mut frame = frame_header(0, 16);
        frame.extend_from_slice(&[0u8; 16]);
        assert_rejected(&server, &frame, true).await;
        // Stops inside the segment table itself.
        assert_rejected(&server, &frame_header(2, 1)[..6], true).await;
    });
}

#[test]
fn a_peer_stalled_mid_frame_is_closed_by_the_idle_timeout() {
    each_on(&TCP, 1, |h| async move {
        let mut opts = ServeOptions::default();
        opts.idle_timeout = Some(Duration::from_millis(200));
        let server = serve_probe(&h.rt, "probe", opts).await;
        // Heartbeats keep a client that has nothing to say from idling out.
        let mut hb = Heartbeat::default();
        hb.interval = Duration::from_millis(50);
        let mut connect = ConnectOptions::default();
        connect.heartbeat = Some(hb);
        let bystander = connect_probe(&server, &connect).await;
        // Claims 16 words, sends 2, then neither sends nor closes.
        let mut frame = frame_header(0, 16);
        frame.extend_from_slice(&[0u8; 16]);
        let mut raw = connect_raw(&server).await;
        within(LIMIT, raw.write_all(&frame)).await.unwrap();
        closed_by_peer(&mut raw, CLOSE_LIMIT).await;
        ping(&bystander, LIMIT).await;
        assert!(!bystander.link().is_closed());
    });
}

#[test]
fn a_segment_table_claiming_too_many_segments_closes_the_connection() {
    against_a_worker(|server| async move {
        // 2^32 - 1 segments.
        assert_rejected(&server, &frame_header(u32::MAX - 1, 1), false).await;
        // 2^32 segments, which wraps to none.
        assert_rejected(&server, &frame_header(u32::MAX, 1), false).await;
    });
}

#[test]
fn a_frame_claiming_a_huge_first_segment_is_refused_before_allocation() {
    against_a_worker(|server| async move {
        // 2^32 - 1 words (32 GiB) in one segment.
        assert_rejected(&server, &frame_header(0, u32::MAX), false).await;
        // 511 segments of 2^28 words each: every size plausible, the sum
        // far over the limit.
        let mut frame = frame_header(510, 1 << 28);
        for _ in 0..510 {
            frame.extend_from_slice(&(1u32 << 28).to_le_bytes());
        }
        frame.extend_from_slice(&[0u8; 4]); // pad the table to a word
        assert_rejected(&server, &frame, false).await;
    });
}

#[test]
fn a_well_framed_message_with_a_garbage_body_closes_the_connection() {
    against_a_worker(|server| async move {
        // One segment of one word whose root pointer is not a struct.
        let mut frame = frame_header(0, 1);
        frame.extend_from_slice(&[0xff; 8]);
        assert_rejected(&server, &frame, false).await;
        // A struct pointer to far outside its segment.
        let mut frame = frame_header(0, 1);
        frame.extend_from_slice(&[0x00, 0x00, 0x00, 0x7f, 0x01, 0x00, 0x01, 0x00]);
        assert_rejected(&server, &frame, false).await;
    });
}

/// A bare two-party connection to the worker at `server`, without the gate
/// or any of capactor's client machinery: its bootstrap capability.
async fn raw_bootstrap(server: &TcpServer) -> capnp::capability::Client {
    let stream = connect_raw(server).await;
    stream.set_nodelay(true).unwrap();
    let (r, w) = stream.into_split();
    let network = twoparty::VatNetwork::new(
        r.compat(),
        w.compat_write(),
        Side::Client,
        capnp::message::ReaderOptions::new(),
    );
    let mut system = RpcSystem::new(Box::new(network), None);
    let bootstrap: capnp::capability::Client = system.bootstrap(Side::Server);
    tokio::task::spawn_local(system);
    bootstrap
}

#[test]
fn an_unknown_interface_on_the_bootstrap_answers_unimplemented() {
    against_a_worker(|server| async move {
        let bootstrap = raw_bootstrap(&server).await;
        let req = bootstrap.new_call::<capnp::any_pointer::Owned, capnp::any_pointer::Owned>(
            0x1234_5678_9abc_def0,
            0,
            None,
        );
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented, "{err}");

        // An unknown method of the gate's own interface, likewise.
        use capnp::traits::HasTypeId;
        let req = bootstrap.new_call::<capnp::any_pointer::Owned, capnp::any_pointer::Owned>(
            gate::Client::TYPE_ID,
            9,
            None,
        );
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented, "{err}");

        // The connection survives both, and the gate still opens.
        let gate = gate::Client::new(bootstrap.hook);
        let mut req = gate.open_request();
        req.get().set_token(b"");
        let actor = req.send().pipeline.get_actor();
        within(LIMIT, actor.ping_request().send().promise)
            .await
            .unwrap();
    });
}
