//! [`Address`]: where a worker listens or is reached, parsed once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Error, Result};

/// Where a worker listens or is reached: TCP, TLS over TCP, or a Unix
/// domain socket.
///
/// Written `tcp://host:port`, `tls://host:port` or `unix:/path/to.sock`
/// (`unix:///path` is accepted too, as gRPC writes it); a bare
/// `host:port` means TCP. A host is a name, an IPv4 address or an IPv6
/// address in brackets (`[::1]:7001`). Parsing checks the form (a port
/// that is a number, a non-empty path without NUL bytes, no more than a
/// Unix socket path can hold) but resolves nothing.
///
/// `Display` writes the form it parses from, TCP without its scheme, so an
/// address can be handed on as a string.
///
/// # Examples
///
/// ```
/// use capactor::Address;
///
/// let tcp: Address = "127.0.0.1:7001".parse().unwrap();
/// assert_eq!(tcp, Address::Tcp("127.0.0.1:7001".into()));
/// let unix: Address = "unix:/run/capactor/w1.sock".parse().unwrap();
/// assert_eq!(unix.to_string(), "unix:/run/capactor/w1.sock");
/// let err = "tcp://localhost".parse::<Address>().unwrap_err();
/// assert!(err.to_string().contains("port"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// Plain TCP to `host:port`.
    Tcp(String),
    /// TLS over TCP to `host:port`: the worker serves TLS, the client
    /// needs [`ConnectOptions::tls`](crate::ConnectOptions::tls).
    Tls(String),
    /// A Unix domain socket at this path.
    Unix(PathBuf),
}

/// The longest path a Unix socket address holds, in bytes (Linux's
/// `sun_path` is 108 bytes, one of them the terminating NUL).
pub const MAX_UNIX_PATH: usize = 107;

impl Address {
    /// The `host:port` of a TCP or TLS address.
    pub fn host_port(&self) -> Option<&str> {
        match self {
            Address::Tcp(h) | Address::Tls(h) => Some(h),
            Address::Unix(_) => None,
        }
    }

    /// The path of a Unix socket address.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Address::Unix(p) => Some(p),
            _ => None,
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(path) = s.strip_prefix("unix:") {
            // `unix:///p` is gRPC's spelling of `unix:/p`.
            let path = path.strip_prefix("//").unwrap_or(path);
            return unix_path(s, path).map(Address::Unix);
        }
        match s.split_once("://") {
            Some(("tcp", rest)) => host_port(s, rest).map(Address::Tcp),
            Some(("tls", rest)) => host_port(s, rest).map(Address::Tls),
            Some((scheme, _)) => Err(Error::invalid(format!(
                "address {s:?} has an unknown scheme {scheme:?}: \
                 expected tcp://host:port, tls://host:port, unix:/path or host:port"
            ))),
            None => host_port(s, s).map(Address::Tcp),
        }
    }
}

/// Checks a `host:port`.
fn host_port(whole: &str, s: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "address {whole:?} is not host:port ({why}); expected tcp://host:port, \
             tls://host:port, unix:/path or host:port"
        ))
    };
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(bad("the port is not a number from 0 to 65535"));
    }
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let v6 = inner.strip_suffix(']').ok_or_else(|| bad("unclosed ["))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address in brackets"));
        }
    } else if host.contains(':') {
        return Err(bad("an IPv6 host goes in brackets, as in [::1]:7001"));
    } else if host.contains(['/', '?', '#', ' ', '@']) {
        return Err(bad("the host has characters a host name cannot"));
    }
    Ok(s.to_owned())
}

/// Checks a Unix socket path.
fn unix_path(whole: &str, path: &str) -> Result<PathBuf> {
    if path.is_empty() {
        return Err(Error::invalid(format!(
            "address {whole:?} has no path: expected unix:/path/to.sock"
        )));
    }
    if path.contains('\0') {
        return Err(Error::invalid(format!(
            "address {whole:?} has a NUL byte in its path"
        )));
    }
    check_unix_path(Path::new(path))?;
    Ok(PathBuf::from(path))
}

/// Checks that `path` fits in a Unix socket address.
pub(crate) fn check_unix_path(path: &Path) -> Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_UNIX_PATH {
        return Err(Error::invalid(format!(
            "the socket path {} is {len} bytes long; a Unix socket path holds at most \
             {MAX_UNIX_PATH}",
            path.display()
        )));
    }
    Ok(())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(h) => f.write_str(h),
            Address::Tls(h) => write!(f, "tls://{h}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a.to_string())
    }
}

/// What can name an [`Address`]: an `Address`, a string in one of its
/// forms, or a `SocketAddr` (TCP).
///
/// # Examples
///
/// ```
/// use capactor::{Address, ToAddress};
///
/// assert_eq!("unix:/tmp/w.sock".to_address().unwrap(), Address::Unix("/tmp/w.sock".into()));
/// assert!("tcp://".to_address().is_err());
/// ```
pub trait ToAddress {
    /// The address, or why this is not one.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a malformed address.
    fn to_address(&self) -> Result<Address>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::from(*self))
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> Result<Address> {
        (**self).to_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Address> {
        s.parse()
    }

    #[test]
    fn every_form_parses_to_its_transport() {
        assert_eq!(parse("h:1").unwrap(), Address::Tcp("h:1".into()));
        assert_eq!(parse("tcp://h:1").unwrap(), Address::Tcp("h:1".into()));
        assert_eq!(parse("tls://h:443").unwrap(), Address::Tls("h:443".into()));
        assert_eq!(
            parse("tcp://[::1]:7").unwrap(),
            Address::Tcp("[::1]:7".into())
        );
        assert_eq!(parse("unix:/a/b").unwrap(), Address::Unix("/a/b".into()));
        assert_eq!(parse("unix:///a/b").unwrap(), Address::Unix("/a/b".into()));
        assert_eq!(
            parse("unix:rel.sock").unwrap(),
            Address::Unix("rel.sock".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["h:1", "tls://h:2", "unix:/x/y.sock", "[::1]:3"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
            assert_eq!(
                parse(&parse(s).unwrap().to_string()).unwrap(),
                parse(s).unwrap()
            );
        }
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        let cases = [
            ("", "no port"),
            ("localhost", "no port"),
            ("tcp://h", "no port"),
            ("h:99999", "port is not a number"),
            ("h:x", "port is not a number"),
            (":80", "no host"),
            ("::1:80", "brackets"),
            ("[::1:80", "unclosed"),
            ("[zz]:80", "IPv6"),
            ("tcp://h:1/path", "port is not a number"),
            ("http://h:80", "unknown scheme \"http\""),
            ("unix:", "no path"),
            ("unix:/a\0b", "NUL"),
        ];
        for (s, says) in cases {
            let e = parse(s).expect_err(s).to_string();
            assert!(e.contains(says), "{s:?}: {e}");
        }
        let long = format!("unix:/{}", "x".repeat(MAX_UNIX_PATH));
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.contains("at most 107"), "{e}");
        assert!(parse(&format!("unix:/{}", "x".repeat(MAX_UNIX_PATH - 1))).is_ok());
    }
}
