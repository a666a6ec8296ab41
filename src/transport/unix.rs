//! The Unix domain socket transport: workers on the same host as their
//! clients (one per process or per device), reached without TCP's work.
//!
//! The socket file is created mode 0600 (the worker's user only) and
//! removed when the server stops accepting. A file left by a crashed
//! worker is replaced; one a live worker answers on is refused. Every
//! peer's credentials (`SO_PEERCRED`) are checked against
//! [`UnixOptions::peers`]: by default only the worker's own user (and
//! root) may connect. Past the listener, a Unix connection is served
//! exactly as a TCP one: the same gate, limits and heartbeats.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use capnp::capability::FromClientHook;
use tokio::net::UnixStream;

use super::address::check_unix_path;
use super::address::Address;
use super::connect_options::ConnectOptions;
use super::connection::Connection;
use super::gate_policy::Peer;
use super::listener::{Accept, Incoming, Listener};
use super::options::ServeOptions;
use super::server::{Bound, Server};
pub use super::unix_options::{PeerCredentials, UnixOptions};
use crate::{Error, Result};

/// A running worker on a Unix domain socket: a [`Server`] bound to a path.
///
/// # Examples
///
/// ```no_run
/// use capactor::actors::Probe;
/// use capactor::schema::probe_capnp::probe;
///
/// let rt = capactor::Runtime::new().unwrap();
/// capactor::block_on(async {
///     let opts = capactor::ServeOptions::insecure_loopback();
///     let server: capactor::UnixServer = rt
///         .serve_unix::<probe::Client, _, _>("/tmp/probe.sock", || Probe::new("p"), opts)
///         .await?;
///     let p: capactor::Connection<probe::Client> =
///         capactor::connect("unix:/tmp/probe.sock", &capactor::ConnectOptions::default()).await?;
///     let actor: capactor::schema::actor_capnp::actor::Client = capactor::cast(p.client());
///     actor.ping_request().send().promise.await?;
///     server.shutdown(std::time::Duration::from_secs(1)).await;
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
pub type UnixServer = Server<PathBuf>;

/// The socket file of a listening worker: removed when dropped, if it is
/// still the one the worker created.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another worker may have replaced a file we left (it would only do
        // so once ours stopped answering): leave theirs alone.
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// A bound Unix listener and who may connect to it.
pub(crate) struct UnixBound {
    listener: std::os::unix::net::UnixListener,
    peers: PeerCredentials,
}

/// Binds the socket file at `path` for a worker serving as `opts` say.
///
/// # Errors
///
/// A path too long for a socket address, a directory that does not exist,
/// a file there that is not a socket, or a socket a live worker answers
/// on; TLS asked for (a Unix socket never leaves the host).
pub(crate) fn bind(path: &Path, opts: &ServeOptions) -> Result<Bound<UnixBound>> {
    opts.check_token()?;
    if opts.tls.is_some() {
        return Err(Error::invalid(
            "TLS is not served over Unix sockets (they never leave the host): \
             leave ServeOptions::tls unset",
        ));
    }
    check_unix_path(path)?;
    let shown = path.display();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "cannot listen on {shown}: the directory {} does not exist",
            dir.display()
        )));
    }
    replace_stale(path)?;
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| Error::invalid(format!("cannot listen on {shown}: {e}")))?;
    let meta = std::fs::symlink_metadata(path)?;
    // Only now does the file have our inode; removing it on failure below
    // is ours to do.
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    // With the usual umask the file starts 0755, which already keeps other
    // users from connecting (connecting needs write permission).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.unix.mode))?;
    listener.set_nonblocking(true)?;
    if opts.token.is_none() {
        tracing::warn!("serving without authentication (Unix socket {shown})");
    }
    Ok(Bound {
        listener: UnixBound {
            listener,
            peers: opts.unix.peers.clone(),
        },
        address: Address::Unix(path.to_owned()),
        on_stop: Some(Box::new(file)),
    })
}

/// Removes a socket file no worker answers on; refuses a live one, and
/// anything that is not a socket.
fn replace_stale(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::invalid(format!("cannot listen on {shown}: {e}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::invalid(format!(
            "cannot listen on {shown}: a file that is not a socket is there"
        )));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::invalid(format!(
            "cannot listen on {shown}: a live worker is serving on it"
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing the stale socket {shown}");
            std::fs::remove_file(path)?;
            Ok(())
        }
        Err(e) => Err(Error::invalid(format!(
            "cannot listen on {shown}: cannot tell whether a worker serves on it: {e}"
        ))),
    }
}

impl Listener for UnixBound {
    type Accept = UnixAccept;

    fn register(self) -> io::Result<UnixAccept> {
        Ok(UnixAccept {
            listener: tokio::net::UnixListener::from_std(self.listener)?,
            peers: self.peers,
            our_uid: our_uid(),
        })
    }
}

/// A Unix listener registered on the accepting vat.
pub(crate) struct UnixAccept {
    listener: tokio::net::UnixListener,
    peers: PeerCredentials,
    our_uid: u32,
}

impl Accept for UnixAccept {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<Incoming<UnixStream>> {
        let (stream, _) = self.listener.accept().await?;
        let refused = match (&self.peers, stream.peer_cred()) {
            (PeerCredentials::Any, _) => None,
            (_, Err(e)) => Some(Error::invalid(format!(
                "peer credentials refused: the kernel gave none ({e})"
            ))),
            (peers, Ok(cred)) => {
                let uid = cred.uid();
                let allowed = match peers {
                    PeerCredentials::SameUser => uid == self.our_uid || uid == 0,
                    PeerCredentials::Uids(uids) => uids.contains(&uid),
                    PeerCredentials::Any => true,
                };
                (!allowed).then(|| {
                    Error::invalid(format!(
                        "peer credentials refused: uid {uid} may not use this worker"
                    ))
                })
            }
        };
        Ok(Incoming {
            stream,
            // Every local peer counts under one label: there is no address
            // to tell them apart by.
            peer: Peer::Label("unix"),
            refused,
        })
    }
}

/// The effective uid of this process.
fn our_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Connects to the actor served on the Unix socket at `path`, entering
/// through `enter` (see [`super::rpc::connect_stream_with`]).
pub(crate) async fn connect_with<C: FromClientHook>(
    path: &Path,
    opts: &ConnectOptions,
    enter: impl FnOnce(&crate::schema::actor_capnp::gate::Client) -> C,
) -> Result<Connection<C>> {
    crate::local_loop::check_local_loop()?;
    check_unix_path(path)?;
    if opts.tls.is_some() {
        return Err(Error::invalid(
            "TLS is not spoken over Unix sockets: leave ConnectOptions::tls unset",
        ));
    }
    let shown = path.display();
    let stream = tokio::time::timeout(opts.connect_timeout, UnixStream::connect(path))
        .await
        .map_err(|_| {
            Error::Disconnected(format!(
                "connecting to unix:{shown} took longer than {:?}",
                opts.connect_timeout
            ))
        })?
        .map_err(|e| Error::Disconnected(format!("cannot connect to unix:{shown}: {e}")))?;
    Ok(super::rpc::connect_stream_with(stream, opts, enter))
}
