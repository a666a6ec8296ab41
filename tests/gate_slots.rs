//! Slots for the people with keys: connections that have not opened the
//! gate come from their own pool, so a flood of silent sockets, re-opened
//! as fast as the worker closes them, cannot crowd out authenticated
//! clients, old or new.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::{ConnectOptions, Runtime, ServeOptions};
use common::{connect_probe, eventually, ping, serve_probe, within};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);
const TOKEN: &[u8] = b"slots for the people with keys";

fn with_token() -> ConnectOptions {
    let mut opts = ConnectOptions::default();
    opts.token = TOKEN.to_vec();
    opts
}

/// `sockets` silent connections to `addr`, each re-opened as soon as the
/// worker closes it, until `stop`; counts the connections it made.
fn silent_flood(
    addr: std::net::SocketAddr,
    sockets: usize,
    stop: CancellationToken,
    made: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let tasks: Vec<_> = (0..sockets)
                .map(|_| {
                    let (stop, made) = (stop.clone(), made.clone());
                    tokio::task::spawn_local(async move {
                        while !stop.is_cancelled() {
                            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                                // Out of ports or descriptors for a moment:
                                // the attacker's own pacing.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            };
                            made.fetch_add(1, Ordering::Relaxed);
                            let mut b = [0u8; 64];
                            // Silent until the worker closes it, or the
                            // test ends.
                            tokio::select! {
                                _ = s.read(&mut b) => {}
                                () = stop.cancelled() => {}
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        });
    })
}

#[test]
fn a_thousand_silent_sockets_reopened_as_they_are_cut_do_not_stop_an_authenticated_client() {
    const SOCKETS: usize = 1024;
    const FRESH: usize = 30;
    let rt = Runtime::builder().vats(2).build().unwrap();
    capactor::block_on(async {
        let mut opts = ServeOptions::default();
        opts.token = Some(TOKEN.to_vec());
        // The default 5 s deadline would make the test wait for it to see
        // a wave re-opened; a shorter one shows the same sooner.
        opts.handshake_timeout = Some(Duration::from_secs(2));
        let server = serve_probe(&rt, "keys", opts).await;
        let kept = connect_probe(&server, &with_token()).await;
        ping(&kept, LIMIT).await;

        let stop = CancellationToken::new();
        let made = Arc::new(AtomicU64::new(0));
        let flood = silent_flood(server.local_addr(), SOCKETS, stop.clone(), made.clone());
        // The flood is in place: every socket has connected once.
        eventually(LIMIT, || made.load(Ordering::Relaxed) >= SOCKETS as u64).await;
        let crowd = server.connections();

        let started = Instant::now();
        let mut fresh_ok = 0;
        // Through at least one handshake deadline, so that a whole wave is
        // cut and re-opened while clients come and go.
        while fresh_ok < FRESH || started.elapsed() < Duration::from_secs(3) {
            let fresh = connect_probe(&server, &with_token()).await;
            ping(&fresh, LIMIT).await;
            ping(&kept, LIMIT).await;
            fresh_ok += 1;
        }
        let sockets = made.load(Ordering::Relaxed);
        eprintln!(
            "{fresh_ok} fresh clients served in {:?} against {sockets} silent connections \
             ({crowd} open when they started, {} closed to make room, {} open now)",
            started.elapsed(),
            server.unauthenticated_closed(),
            server.connections(),
        );
        assert!(sockets > SOCKETS as u64, "the flood re-opened its sockets");
        stop.cancel();
        within(LIMIT, tokio::task::spawn_blocking(move || flood.join()))
            .await
            .unwrap()
            .unwrap();
        ping(&kept, LIMIT).await;
    })
    .unwrap();
}

#[test]
fn when_every_slot_holds_an_authenticated_client_a_newcomer_is_refused_with_why() {
    const SLOTS: usize = 3;
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let mut opts = ServeOptions::default();
        opts.token = Some(TOKEN.to_vec());
        opts.max_connections = SLOTS;
        let server = serve_probe(&rt, "keys", opts).await;
        let mut held = Vec::new();
        for _ in 0..SLOTS {
            let c = connect_probe(&server, &with_token()).await;
            ping(&c, LIMIT).await;
            held.push(c);
        }
        let refused = connect_probe(&server, &with_token()).await;
        let err = within(LIMIT, refused.echo_request().send().promise)
            .await
            .err()
            .expect("refused");
        assert!(err.extra.contains("connections limit exceeded"), "{err}");
        for c in &held {
            ping(c, LIMIT).await;
        }
    })
    .unwrap();
}
