//! What a Unix socket worker's own options are: the socket file's mode
//! and which peers may connect ([`UnixOptions`], a field of
//! [`ServeOptions`](crate::ServeOptions)). A leaf, so that the shared
//! options can name it without importing the transport.

/// Which local processes may connect to a Unix socket worker, by the
/// credentials the kernel reports for them (`SO_PEERCRED`).
///
/// # Examples
///
/// ```
/// let mut opts = capactor::ServeOptions::default();
/// opts.unix.peers = capactor::PeerCredentials::Uids(vec![1000, 1001]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerCredentials {
    /// Processes running as the worker's own user, or as root (default).
    #[default]
    SameUser,
    /// Processes running as one of these uids (root only if listed).
    Uids(Vec<u32>),
    /// Any process that can open the socket file (its mode still applies).
    Any,
}

/// How a worker serves on a Unix domain socket.
///
/// # Examples
///
/// ```
/// let mut opts = capactor::ServeOptions::insecure_loopback();
/// opts.unix.mode = 0o660; // the worker's group too
/// opts.unix.peers = capactor::PeerCredentials::Any;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UnixOptions {
    /// Permission bits of the socket file. Default `0o600`.
    pub mode: u32,
    /// Which peers are served; others get a `peer credentials refused`
    /// error and are closed. Default [`PeerCredentials::SameUser`].
    pub peers: PeerCredentials,
}

impl Default for UnixOptions {
    fn default() -> Self {
        UnixOptions {
            mode: 0o600,
            peers: PeerCredentials::SameUser,
        }
    }
}
