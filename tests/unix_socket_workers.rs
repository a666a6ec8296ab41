//! Workers on Unix domain sockets: the socket file's life (mode 0600,
//! removed on shutdown, a stale one replaced, a live one refused), the
//! peer-credential check, and every way of asking for one wrongly. The
//! parity suites (`each(&ALL, ..)`) run every other behaviour over Unix
//! sockets too.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::{Address, ConnectOptions, Connection, PeerCredentials, Runtime, ServeOptions};
use common::{ping, within, SETUP_LIMIT};

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    Runtime::builder().vats(2).build().unwrap()
}

async fn serve(
    rt: &Runtime,
    path: &Path,
    opts: ServeOptions,
) -> capactor::Result<capactor::UnixServer> {
    within(
        SETUP_LIMIT,
        rt.serve_unix::<probe::Client, _, _>(path, || Probe::new("unix"), opts),
    )
    .await
}

async fn connect(path: &Path) -> Connection<probe::Client> {
    let addr = format!("unix:{}", path.display());
    within(
        SETUP_LIMIT,
        capactor::connect(&addr, &ConnectOptions::default()),
    )
    .await
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[capactor::test]
async fn a_unix_worker_serves_from_a_private_socket_file_it_removes_on_shutdown() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let server = serve(&rt, &path, ServeOptions::insecure_loopback())
        .await
        .unwrap();
    assert_eq!(server.path(), path);
    assert_eq!(server.address(), &Address::Unix(path.clone()));
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&path), 0o600, "only the worker's user may connect");

    let p = connect(&path).await;
    ping(&p, LIMIT).await;
    assert_eq!(server.connections(), 1);
    assert!(server.shutdown(Duration::from_secs(1)).await);
    assert!(!path.exists(), "the socket file goes with the server");

    // Dropping a server removes its file too.
    let server = serve(&rt, &path, ServeOptions::insecure_loopback())
        .await
        .unwrap();
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());
}

#[capactor::test]
async fn a_unix_worker_takes_a_token_and_a_mode_like_any_other() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let mut opts = ServeOptions::default();
    opts.token = Some(b"a token of sixteen+ bytes".to_vec());
    opts.unix.mode = 0o660;
    let _server = serve(&rt, &path, opts).await.unwrap();
    assert_eq!(mode(&path), 0o660);

    let addr = format!("unix:{}", path.display());
    let mut good = ConnectOptions::default();
    good.token = b"a token of sixteen+ bytes".to_vec();
    let p: Connection<probe::Client> = capactor::connect(&addr, &good).await.unwrap();
    ping(&p, LIMIT).await;
    let mut bad = ConnectOptions::default();
    bad.token = b"not the token, wrong bytes".to_vec();
    let q: Connection<probe::Client> = capactor::connect(&addr, &bad).await.unwrap();
    let base: capactor::schema::actor_capnp::actor::Client = capactor::cast(q.client());
    let err = within(LIMIT, base.ping_request().send().promise)
        .await
        .err()
        .expect("a wrong token is refused");
    assert!(err.to_string().contains("credential rejected"), "{err}");
}

#[capactor::test]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    // A crashed worker leaves its file, with nothing listening.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let first = serve(&rt, &path, ServeOptions::insecure_loopback())
        .await
        .unwrap();
    let p = connect(&path).await;
    ping(&p, LIMIT).await;

    let err = serve(&rt, &path, ServeOptions::insecure_loopback())
        .await
        .expect_err("a live worker's socket is not taken over")
        .to_string();
    assert!(err.contains("a live worker is serving on it"), "{err}");
    // The refused worker left the live one alone.
    ping(&p, LIMIT).await;
    ping(&*connect(&path).await, LIMIT).await;
    assert!(path.exists());
    drop(first);
}

#[capactor::test]
async fn bad_socket_paths_fail_with_what_is_wrong_and_bind_nothing() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions::insecure_loopback;

    let long = dir.path().join("x".repeat(capactor::MAX_UNIX_PATH));
    let err = serve(&rt, &long, opts()).await.unwrap_err().to_string();
    assert!(err.contains("holds at most 107"), "{err}");

    let missing = dir.path().join("no/such/dir/w.sock");
    let err = serve(&rt, &missing, opts()).await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");

    let file = dir.path().join("plain");
    std::fs::write(&file, b"keep me").unwrap();
    let err = serve(&rt, &file, opts()).await.unwrap_err().to_string();
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me", "left untouched");

    let path = dir.path().join("w.sock");
    let err = serve(&rt, &path, ServeOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("insecure_no_auth"),
        "no token needs the opt-in: {err}"
    );
    let mut tls = opts();
    tls.tls = Some(server_tls());
    let err = serve(&rt, &path, tls).await.unwrap_err().to_string();
    assert!(err.contains("TLS is not served over Unix sockets"), "{err}");
    assert!(!path.exists(), "nothing half-configured is left serving");

    // Connecting: no worker there, or a malformed address.
    let err = capactor::connect::<probe::Client>(
        format!("unix:{}", path.display()),
        &ConnectOptions::default(),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("cannot connect to unix:"), "{err}");
    // Reconnecting is TCP's: asking it of a Unix socket says so rather
    // than connecting without it.
    let mut reconnecting = ConnectOptions::default();
    reconnecting.reconnect = Some(capactor::Reconnect::default());
    let err = capactor::connect::<probe::Client>(format!("unix:{}", path.display()), &reconnecting)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("reconnect is for TCP"), "{err}");
    for (addr, says) in [
        ("unix:", "no path"),
        ("tcp://127.0.0.1", "no port"),
        ("ftp://127.0.0.1:21", "unknown scheme"),
    ] {
        let err = capactor::connect::<probe::Client>(addr, &ConnectOptions::default())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(says), "{addr}: {err}");
        let err = rt
            .serve::<probe::Client, _, _>(addr, || Probe::new("p"), opts())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{addr}: {err}");
    }
}

#[capactor::test]
async fn a_peer_with_another_uid_is_refused_with_a_clear_error() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let our_uid = std::fs::metadata(dir.path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let mut opts = ServeOptions::insecure_loopback();
    opts.unix.peers = PeerCredentials::Uids(vec![our_uid + 1]);
    let server = serve(&rt, &path, opts).await.unwrap();
    for _ in 0..2 {
        let p = connect(&path).await;
        let base: capactor::schema::actor_capnp::actor::Client = capactor::cast(p.client());
        let err = within(LIMIT, base.ping_request().send().promise)
            .await
            .err()
            .expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "peer credentials refused: uid {our_uid} may not use this worker"
            )),
            "{msg}"
        );
        assert_eq!(server.connections(), 0, "a refused peer holds no slot");
    }

    // The default: the worker's own user.
    let path = dir.path().join("same.sock");
    let _same = serve(&rt, &path, ServeOptions::insecure_loopback())
        .await
        .unwrap();
    ping(&*connect(&path).await, LIMIT).await;
}

#[test]
fn a_cli_worker_listens_on_a_unix_socket_and_refuses_a_malformed_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.sock");
    let listen = format!("unix:{}", path.display());
    let mut worker = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        &listen,
        "--insecure-no-auth",
        "--name",
        "unix-cli",
        "--vats",
        "1",
    ]));
    assert_eq!(worker.listening_on(LIMIT), listen);
    assert_eq!(mode(&path), 0o600);
    let info = WorkerProcess::spawn(Command::new(BIN).args(["info", &listen])).output(LIMIT);
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(stdout.contains("unix-cli"), "{stdout}");

    // A second worker on the same socket is refused, and exits.
    let second = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        &listen,
        "--insecure-no-auth",
    ]))
    .output(LIMIT);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("a live worker is serving on it"),
        "{stderr}"
    );

    worker.signal_term();
    assert!(worker.wait(LIMIT).success());
    assert!(!path.exists(), "removed on shutdown");

    let bad = WorkerProcess::spawn(Command::new(BIN).args(["worker", "--listen", "tcp://nowhere"]))
        .output(LIMIT);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("is not host:port (no port)"), "{stderr}");
}

/// A throwaway TLS identity.
fn server_tls() -> capactor::tls::ServerTls {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    capactor::tls::ServerTls::new(vec![cert.der().clone()], key).unwrap()
}
