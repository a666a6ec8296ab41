//! TLS workers: clients that trust the worker's root or pin its certificate
//! get in; anyone else gets a clear error, and the worker keeps serving.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::tls::{ClientTls, ServerTls};
use capactor::{ConnectOptions, Runtime, ServeOptions};
use common::{connect_probe, ping, serve_probe, within};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const LIMIT: Duration = Duration::from_secs(20);
const TOKEN: &[u8] = b"tls test token, 16+ bytes";

/// A self-signed certificate for 127.0.0.1, made for this test run.
fn identity() -> (CertificateDer<'static>, ServerTls) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = ServerTls::new(vec![der.clone()], key).unwrap();
    (der, server)
}

fn tls_server_opts(server: ServerTls) -> ServeOptions {
    let mut opts = ServeOptions::default();
    opts.tls = Some(server);
    opts.token = Some(TOKEN.to_vec());
    opts
}

fn client(tls: ClientTls) -> ConnectOptions {
    let mut opts = ConnectOptions::default();
    opts.tls = Some(tls);
    opts.token = TOKEN.to_vec();
    opts
}

#[test]
fn a_client_trusting_the_root_or_pinning_the_certificate_is_served() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let (cert, server_identity) = identity();
        let server = serve_probe(&rt, "tls", tls_server_opts(server_identity)).await;
        let by_root = connect_probe(
            &server,
            &client(ClientTls::with_roots(std::slice::from_ref(&cert)).unwrap()),
        )
        .await;
        ping(&by_root, LIMIT).await;
        let pinned = connect_probe(&server, &client(ClientTls::pinned(cert).unwrap())).await;
        let mut req = pinned.echo_request();
        req.get().set_data(&[7u8; 100_000]);
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        assert_eq!(reply.get().unwrap().get_data().unwrap().len(), 100_000);
    })
    .unwrap();
}

#[test]
fn a_client_that_does_not_trust_the_worker_gets_a_clear_error() {
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let (cert, server_identity) = identity();
        let (other, _) = identity();
        let server = serve_probe(&rt, "tls", tls_server_opts(server_identity)).await;
        let addr = server.local_addr().to_string();
        for tls in [
            ClientTls::with_roots(std::slice::from_ref(&other)).unwrap(),
            ClientTls::pinned(other).unwrap(),
        ] {
            let err = within(
                LIMIT,
                capactor::connect_tcp::<capactor::schema::probe_capnp::probe::Client>(
                    &addr,
                    &client(tls),
                ),
            )
            .await
            .err()
            .expect("refused");
            assert!(err.to_string().contains("tls handshake"), "{err}");
        }
        // A plain-TCP client gets a disconnect, not a hang.
        let mut plain = ConnectOptions::default();
        plain.token = TOKEN.to_vec();
        let p = connect_probe(&server, &plain).await;
        let base: capactor::schema::actor_capnp::actor::Client = capactor::cast(&*p);
        let err = within(LIMIT, base.ping_request().send().promise)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(
                err.kind,
                capnp::ErrorKind::Disconnected | capnp::ErrorKind::PrematureEndOfFile
            ),
            "{err}"
        );
        // Still serving trusted clients.
        let ok = connect_probe(&server, &client(ClientTls::pinned(cert).unwrap())).await;
        ping(&ok, LIMIT).await;
    })
    .unwrap();
}

/// One deadline covers the TLS handshake and the gate: a client that takes
/// most of it to finish TLS and then stays silent is closed when the
/// deadline that began at its arrival ends, not a whole deadline after its
/// handshake (as when each had its own timer).
#[test]
fn one_deadline_from_arrival_covers_the_tls_handshake_and_the_gate() {
    use tokio::io::AsyncReadExt;
    const DEADLINE: Duration = Duration::from_secs(2);
    const TLS_AFTER: Duration = Duration::from_millis(1600);
    let rt = Runtime::builder().vats(1).build().unwrap();
    capactor::block_on(async {
        let (cert, server_identity) = identity();
        let mut opts = tls_server_opts(server_identity);
        opts.handshake_timeout = Some(DEADLINE);
        let server = serve_probe(&rt, "tls", opts).await;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

        let arrived = Instant::now();
        let tcp = common::connect_raw(&server).await;
        // The slow part of this peer's behaviour: it starts TLS late.
        tokio::time::sleep(TLS_AFTER).await;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = within(LIMIT, connector.connect(name, tcp))
            .await
            .expect("the handshake itself is served");
        // Then silence: no Bootstrap, no `open`.
        let mut buf = [0u8; 64];
        let closed = within(LIMIT, async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return Instant::now(),
                    Ok(_) => {}
                }
            }
        })
        .await;
        let after = closed - arrived;
        eprintln!("closed {after:?} after arrival (deadline {DEADLINE:?})");
        assert!(after >= DEADLINE - Duration::from_millis(50), "{after:?}");
        assert!(
            after < TLS_AFTER + DEADLINE - Duration::from_millis(200),
            "{after:?}"
        );

        // A peer that never starts TLS is closed at the same deadline.
        let mut silent = common::connect_raw(&server).await;
        let started = Instant::now();
        common::closed_by_peer(&mut silent, LIMIT).await;
        assert!(started.elapsed() < DEADLINE + Duration::from_secs(1));

        // And trusted clients are still served.
        let ok = connect_probe(&server, &client(ClientTls::pinned(cert).unwrap())).await;
        ping(&ok, LIMIT).await;
    })
    .unwrap();
}
