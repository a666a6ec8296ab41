//! TLS for TCP workers (rustls with the *ring* provider).
//!
//! A worker serves TLS when [`ServeOptions::tls`](crate::ServeOptions) holds
//! a [`ServerTls`]; a client speaks it when
//! [`ConnectOptions::tls`](crate::ConnectOptions) holds a [`ClientTls`],
//! which trusts either a set of root certificates or exactly one pinned
//! certificate (for self-signed workers).
//!
//! # Examples
//!
//! ```no_run
//! # fn main() -> capactor::Result<()> {
//! let server = capactor::tls::ServerTls::from_pem_files("cert.pem".as_ref(), "key.pem".as_ref())?;
//! let client = capactor::tls::ClientTls::pinned_pem_file("cert.pem".as_ref())?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;

use crate::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl fmt::Display) -> Error {
    Error::invalid(format!("{what}: {e}"))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_error(
                &format!("cannot read certificates from {}", path.display()),
                e,
            )
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// A worker's TLS identity.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// The leaf certificate (DER), which other workers pin for direct
    /// transfers.
    certificate: Vec<u8>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From a certificate chain and its private key, DER encoded.
    ///
    /// # Errors
    ///
    /// Fails if the key does not fit the certificate or is unsupported.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self> {
        let certificate = chain.first().map(|c| c.to_vec()).unwrap_or_default();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("tls", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls_error("tls certificate", e))?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// The leaf certificate it presents (DER): what a worker hands to
    /// [`WorkerState::set_endpoint`](crate::actors::tensor::WorkerState::set_endpoint)
    /// so that other workers pin it when they connect for a direct transfer.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// From PEM files (`--tls-cert`, `--tls-key`).
    ///
    /// # Errors
    ///
    /// Fails if a file cannot be read or parsed, or the key does not fit.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            tls_error(
                &format!("cannot read private key from {}", key.display()),
                e,
            )
        })?;
        Self::new(chain, key)
    }
}

/// How a client authenticates a worker over TLS.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// The name to verify the certificate against; by default the host part
    /// of the address connected to.
    pub server_name: Option<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    fn from_config(config: rustls::ClientConfig) -> Self {
        ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: None,
        }
    }

    /// Trusts certificates issued by `roots` (DER).
    ///
    /// # Errors
    ///
    /// Fails if a root certificate cannot be parsed.
    pub fn with_roots(roots: &[CertificateDer<'static>]) -> Result<Self> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| tls_error("tls root", e))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("tls", e))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self::from_config(config))
    }

    /// Trusts the roots in a PEM file (`--tls-ca`).
    ///
    /// # Errors
    ///
    /// Fails if the file cannot be read or parsed.
    pub fn roots_pem_file(path: &Path) -> Result<Self> {
        Self::with_roots(&read_certs(path)?)
    }

    /// Trusts exactly one certificate, the worker's own (DER), whatever its
    /// issuer and name: for self-signed workers.
    ///
    /// # Errors
    ///
    /// Fails if the TLS configuration cannot be built.
    pub fn pinned(cert: CertificateDer<'static>) -> Result<Self> {
        let verifier = Arc::new(Pinned {
            cert,
            provider: provider(),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("tls", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self::from_config(config))
    }

    /// Pins the first certificate of a PEM file (`--tls-pin`).
    ///
    /// # Errors
    ///
    /// Fails if the file cannot be read or parsed.
    pub fn pinned_pem_file(path: &Path) -> Result<Self> {
        let mut certs = read_certs(path)?;
        Self::pinned(certs.swap_remove(0))
    }

    pub(crate) async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(addr),
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|_| Error::invalid(format!("{host:?} is not a valid TLS server name")))?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| Error::Disconnected(format!("tls handshake with {addr} failed: {e}")))
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> String {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host,
        None => addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Accepts exactly one end-entity certificate.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the worker's certificate is not the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
