//! Partitions on a live link: traffic held both ways and delivered on
//! heal, stalls, a partition that outlasts the heartbeat, and virtual links
//! whose latency differs per direction and jitters reproducibly.

mod common;

use std::time::{Duration, Instant};

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Heartbeat, LinkConditions, ServeOptions, VirtualOptions};
use common::{assert_disconnected, each, ping, within, REMOTE};

const LIMIT: Duration = Duration::from_secs(20);

fn echo(p: &probe::Client, data: &[u8]) -> impl std::future::Future<Output = Vec<u8>> {
    let mut req = p.echo_request();
    req.get().set_data(data);
    let reply = req.send().promise;
    async move {
        reply
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_data()
            .unwrap()
            .to_vec()
    }
}

#[test]
fn a_partitioned_link_holds_calls_both_ways_and_delivers_them_in_order_on_heal() {
    each(&REMOTE, |h| async move {
        let p = h.probe().await;
        ping(&p, LIMIT).await;
        p.link().partition();
        assert!(p.link().is_partitioned());
        let calls: Vec<_> = (0..10u8).map(|i| echo(&p, &[i])).collect();
        let all = futures::future::join_all(calls);
        tokio::pin!(all);
        // Nothing gets through while the partition lasts.
        let held = tokio::time::timeout(Duration::from_millis(100), &mut all).await;
        assert!(held.is_err(), "a call crossed a partition");
        p.link().heal();
        assert!(!p.link().is_partitioned());
        let replies = within(LIMIT, all).await;
        let want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
        assert_eq!(replies, want);
        assert!(!p.link().is_closed());
    });
}

#[test]
fn a_stall_delivers_nothing_for_its_duration_then_everything() {
    each(&REMOTE, |h| async move {
        let p = h.probe().await;
        ping(&p, LIMIT).await;
        let stall = Duration::from_millis(150);
        let start = Instant::now();
        p.link().stall(stall);
        let got = within(LIMIT, echo(&p, b"late")).await;
        assert_eq!(got, b"late");
        assert!(
            start.elapsed() >= stall,
            "answered after {:?}",
            start.elapsed()
        );
        assert!(!p.link().is_partitioned());
        // And the link works as before.
        ping(&p, LIMIT).await;
    });
}

#[test]
fn a_partition_longer_than_the_heartbeat_timeout_ends_the_connection() {
    each(&REMOTE, |h| async move {
        let mut connect = ConnectOptions::default();
        let mut hb = Heartbeat::default();
        hb.interval = Duration::from_millis(50);
        hb.timeout = Duration::from_millis(200);
        connect.heartbeat = Some(hb);
        let p = h
            .spawn_with::<probe::Client, _, _>(
                || Probe::new("probe"),
                LinkConditions::default(),
                ServeOptions::default(),
                connect,
            )
            .await;
        ping(&p, LIMIT).await;
        p.link().partition();
        let pending = echo_result(&p);
        within(LIMIT, p.link().closed()).await;
        assert_disconnected(&within(LIMIT, pending).await.unwrap_err());
        // Healing a closed connection brings nothing back.
        p.link().heal();
        assert_disconnected(&within(LIMIT, echo_result(&p)).await.unwrap_err());
    });
}

fn echo_result(p: &probe::Client) -> impl std::future::Future<Output = Result<(), capnp::Error>> {
    let mut req = p.echo_request();
    req.get().set_data(b"x");
    let reply = req.send().promise;
    async move { reply.await.map(drop) }
}

#[test]
fn a_cut_during_a_partition_still_fails_the_calls_at_once() {
    each(&REMOTE, |h| async move {
        let p = h.probe().await;
        ping(&p, LIMIT).await;
        p.link().partition();
        let pending = echo_result(&p);
        p.cut();
        assert_disconnected(&within(LIMIT, pending).await.unwrap_err());
    });
}

/// A virtual probe whose requests travel under `there` and replies under
/// `back`.
fn shaped(
    h: &common::Harness,
    there: LinkConditions,
    back: LinkConditions,
) -> capactor::Connection<probe::Client> {
    let mut opts = VirtualOptions::default();
    opts.link = there;
    opts.reply_link = Some(back);
    h.rt.spawn_virtual_with(|| Probe::new("probe"), &opts)
}

fn latency(l: Duration, jitter: Duration, seed: u64) -> LinkConditions {
    let mut c = LinkConditions::default();
    (c.latency, c.jitter, c.seed) = (l, jitter, seed);
    c
}

#[test]
fn latency_can_differ_per_direction_and_jitter_keeps_bytes_in_order() {
    each(&[common::Transport::Virtual], |h| async move {
        let there = Duration::from_millis(5);
        let back = Duration::from_millis(40);
        let jitter = Duration::from_millis(20);
        let p = shaped(
            &h,
            latency(there, jitter, 1),
            latency(back, Duration::ZERO, 0),
        );
        ping(&p, LIMIT).await;
        let start = Instant::now();
        ping(&p, LIMIT).await;
        let rtt = start.elapsed();
        assert!(rtt >= there + back, "round trip {rtt:?}");
        // Many calls, each delayed by a different jitter: replies still
        // come back in the order the calls were made, all of them.
        let calls: Vec<_> = (0..50u8).map(|i| echo(&p, &[i])).collect();
        let replies = within(LIMIT, futures::future::join_all(calls)).await;
        let want: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i]).collect();
        assert_eq!(replies, want);
    });
}
