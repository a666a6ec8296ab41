//! The server's connections, from the accept loop on vat 0 to the vat
//! that serves each: admitting (the connection cap, an unauthenticated
//! connection making room), refusing with a reason, handing off, the TLS
//! handshake. [`super::server`] starts and stops them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::closing::Closing;
use super::listener::{Accept, Handoff, Incoming, Listener};
use super::options::Limits;
use super::preauth_pool::PreauthPool;
use super::serve::{serve_bootstrap, serve_stream, Arrival, ServeSite};
use super::tls::ServerTls;
use crate::Error;

/// What the accept loop and the vats share with the [`Server`](super::server::Server).
#[derive(Clone)]
pub(super) struct Shared {
    /// Stops every connection reading (shutdown).
    pub(super) closing: CancellationToken,
    /// Cuts every connection.
    pub(super) connections: CancellationToken,
    pub(super) tracker: TaskTracker,
}

/// A connection on its way from the accept loop to its vat.
pub(super) struct Accepted<T> {
    pub(super) stream: T,
    pub(super) slot: OpenSlot,
    pub(super) cut: CancellationToken,
    pub(super) arrival: Arrival,
}

/// What the accept loop admits connections by.
pub(super) struct Admission {
    /// Connections served (authenticated or not).
    pub(super) open: Arc<AtomicUsize>,
    /// Refused connections still open to tell their peer why.
    pub(super) refusing: Arc<AtomicUsize>,
    pub(super) max: usize,
    pub(super) preauth: Arc<PreauthPool>,
    pub(super) limits: Limits,
}

/// Refused connections kept open at once to say why; more are closed
/// without a word (they take file descriptors, not connection slots).
pub(super) const REFUSING_MAX: usize = 64;

/// How long a refused connection stays open, so that its peer can read
/// why.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// The accept loop, on vat 0.
pub(super) struct Acceptor<T> {
    pub(super) vats: Vec<mpsc::UnboundedSender<Accepted<T>>>,
    pub(super) accepting: CancellationToken,
    pub(super) admission: Admission,
    pub(super) shared: Shared,
}

impl<T: Send + 'static> Acceptor<T> {
    pub(super) async fn run<L>(self, listener: L)
    where
        L: Listener,
        <L::Accept as Accept>::Stream: Handoff<Sent = T>,
    {
        let mut listener = match listener.register() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot register listener: {e}");
                return;
            }
        };
        let mut next = 0usize;
        loop {
            let accepted = tokio::select! {
                _ = self.accepting.cancelled() => return,
                a = listener.accept() => a,
            };
            let Incoming {
                stream,
                peer,
                refused,
            } = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // briefly rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Some(why) = refused {
                tracing::debug!(%peer, "refusing connection: {why}");
                self.refuse(stream, why);
                continue;
            }
            let max = self.admission.max;
            let now_open = self.admission.open.fetch_add(1, Ordering::AcqRel) + 1;
            let slot = OpenSlot(self.admission.open.clone());
            // At the limit, an unauthenticated connection makes room before
            // a newcomer is refused: only clients with a key hold slots for
            // long.
            if now_open > max && !self.admission.preauth.evict_oldest() {
                drop(slot);
                tracing::debug!(%peer, "refusing connection: {max} already open");
                self.refuse(stream, Error::limit("connections", now_open, max));
                continue;
            }
            tracing::debug!(%peer, "accepted");
            let stream = match stream.send() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot hand over connection: {e}");
                    continue;
                }
            };
            let cut = self.shared.connections.child_token();
            let ticket = self.admission.preauth.admit(peer.key(), cut.clone());
            let accepted = Accepted {
                stream,
                slot,
                cut,
                arrival: Arrival::now(peer, Some(ticket)),
            };
            // A vat only goes away with the runtime; the connection is then
            // dropped with the message.
            let _ = self.vats[next % self.vats.len()].send(accepted);
            next = next.wrapping_add(1);
        }
    }

    /// Answers a connection turned away with why, if few others are being
    /// answered, and closes it.
    fn refuse<S: Handoff>(&self, stream: S, why: Error) {
        let refusing = &self.admission.refusing;
        if refusing.fetch_add(1, Ordering::AcqRel) >= REFUSING_MAX {
            refusing.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let refusing = OpenSlot(refusing.clone());
        let limits = self.admission.limits.clone();
        let cut = self.shared.connections.child_token();
        let stream = Closing::new(stream, &self.shared.closing);
        self.shared.tracker.spawn_local(async move {
            let _refusing = refusing;
            let broken = capnp_rpc::new_broken_cap(why.into());
            // The refused peer gets an answer to its first call, then a
            // short while to read it. The while is not an idle timeout: a
            // peer that keeps talking (a heartbeat) would otherwise hold its
            // place for ever. Shutdown cuts it short.
            let serve = serve_bootstrap(stream, broken, &limits, None, cut, None);
            let _ = tokio::time::timeout(REFUSED_LINGER, serve).await;
        });
    }
}

/// One vat's side of the server: serves the connections handed to it.
pub(super) struct VatServer {
    pub(super) site: ServeSite,
    pub(super) tls: Option<ServerTls>,
    pub(super) shared: Shared,
}

impl VatServer {
    pub(super) async fn run<S: Handoff>(self, mut rx: mpsc::UnboundedReceiver<Accepted<S::Sent>>) {
        loop {
            let accepted = tokio::select! {
                _ = self.shared.connections.cancelled() => return,
                s = rx.recv() => match s { Some(s) => s, None => return },
            };
            let Accepted {
                stream,
                slot,
                cut,
                arrival,
            } = accepted;
            let stream = match S::receive(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot register connection: {e}");
                    continue;
                }
            };
            let site = self.site.clone();
            let closing = self.shared.closing.clone();
            let tls = self.tls.clone();
            self.shared.tracker.spawn_local(async move {
                let _slot = slot;
                match tls {
                    None => {
                        let stream = Closing::new(stream, &closing);
                        serve_stream(stream, &site, cut, arrival).await
                    }
                    Some(tls) => serve_tls(stream, tls, site, closing, cut, arrival).await,
                }
            });
        }
    }
}

/// Serves a connection that first does its TLS handshake.
async fn serve_tls<S: Handoff>(
    stream: S,
    tls: ServerTls,
    site: ServeSite,
    closing: CancellationToken,
    cut: CancellationToken,
    arrival: Arrival,
) {
    // One deadline covers the TLS handshake and the gate: it runs from the
    // connection's arrival.
    let limit = site.handshake_timeout;
    let handshake = tls.acceptor.accept(stream);
    let handshake = async {
        match limit {
            Some(limit) => tokio::time::timeout_at((arrival.at + limit).into(), handshake)
                .await
                .map_err(|_| limit),
            None => Ok(handshake.await),
        }
    };
    match tokio::select! {
        _ = cut.cancelled() => return,
        h = handshake => h,
    } {
        Ok(Ok(stream)) => {
            let stream = Closing::new(stream, &closing);
            serve_stream(stream, &site, cut, arrival).await
        }
        Ok(Err(e)) => site
            .policy
            .log_rejection(&arrival.peer, format_args!("tls handshake failed: {e}")),
        Err(limit) => site.policy.log_rejection(
            &arrival.peer,
            format_args!("tls handshake took longer than {limit:?}"),
        ),
    }
}

/// Counts one open connection until dropped.
pub(super) struct OpenSlot(pub(super) Arc<AtomicUsize>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
