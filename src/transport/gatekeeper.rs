//! The `Gate`: the bootstrap capability of every capactor connection.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use tokio_util::sync::CancellationToken;

use super::gate_policy::{GatePolicy, Peer, Verdict};
use super::preauth_pool::PreauthTicket;
use crate::fleet::Trust;
use crate::schema::actor_capnp::{actor, gate};
use crate::Error;

/// Failed attempts on which a connection is closed.
pub(crate) const MAX_FAILURES: u32 = 5;

/// How long an attempt may wait for its slot on a connection without a
/// handshake deadline.
const MAX_WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);

/// Failed attempts per second a redeem-only gate (an in-process link made
/// to redeem one ticket) allows; nobody can open it anyway.
const REDEEM_ONLY_FAILURES_PER_SECOND: u32 = 20;

/// Serves `Gate.open` for one connection: hands out `actor` to a caller
/// with the right token.
///
/// One `open` is handled at a time: another that arrives while one waits
/// for its slot is refused uncompared, and counts as a failure. Slots and
/// back-off are the worker's [`GatePolicy`], shared by every connection of
/// the peer's address; the connection is closed on its [`MAX_FAILURES`]-th
/// failure.
pub(crate) struct Gate {
    actor: actor::Client,
    credentials: Option<Rc<Credentials>>,
    failures: Cell<u32>,
    waiting: Cell<bool>,
    opened: Rc<Cell<bool>>,
    cut: CancellationToken,
    who: Who,
}

/// Whom a gate serves and under which policy.
pub(crate) struct Who {
    pub(crate) peer: Peer,
    pub(crate) policy: Arc<GatePolicy>,
    /// When the connection must have opened the gate.
    pub(crate) deadline: Option<Instant>,
    /// The connection's place among the unauthenticated ones, given up
    /// when the gate opens.
    pub(crate) ticket: RefCell<Option<PreauthTicket>>,
}

impl Gate {
    /// The gate of one connection. `opened` turns true at the first
    /// successful `open`; `cut` closes the connection.
    pub(crate) fn client(
        actor: actor::Client,
        credentials: Option<Rc<Credentials>>,
        opened: Rc<Cell<bool>>,
        cut: CancellationToken,
        who: Who,
    ) -> gate::Client {
        capnp_rpc::new_client(Gate {
            actor,
            credentials,
            failures: Cell::new(0),
            waiting: Cell::new(false),
            opened,
            cut,
            who,
        })
    }

    /// A gate that only redeems transfer tickets (for an in-process link
    /// made to redeem one): no token opens it.
    pub(crate) fn redeem_only(cut: CancellationToken) -> gate::Client {
        let mut token = [0u8; 32];
        rand::fill(&mut token);
        let nothing = actor::Client {
            client: capnp_rpc::new_broken_cap(capnp::Error::failed(
                "this link only redeems transfer tickets".into(),
            )),
        };
        let who = Who {
            peer: Peer::Label("in-process"),
            policy: Arc::new(GatePolicy::new(REDEEM_ONLY_FAILURES_PER_SECOND)),
            deadline: None,
            ticket: RefCell::new(None),
        };
        let credentials = Credentials::new(Some(&token[..]), None);
        Gate::client(nothing, credentials, Rc::default(), cut, who)
    }

    /// Counts a failure of this connection; the fifth closes it.
    fn fail(&self, what: std::fmt::Arguments<'_>) {
        let n = self.failures.get() + 1;
        self.failures.set(n);
        self.who.policy.log_rejection(
            &self.who.peer,
            format_args!("{what} (failure {n} on this connection)"),
        );
        if n >= MAX_FAILURES {
            self.cut.cancel();
        }
    }

    fn admit(&self, results: &mut gate::OpenResults) {
        self.opened.set(true);
        self.who.ticket.borrow_mut().take();
        results.get().set_actor(self.actor.clone());
    }
}

/// Clears the gate's `waiting` flag when the waiting attempt ends, however
/// it ends (the connection closing drops it).
struct Waiting<'a>(&'a Cell<bool>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl gate::Server for Gate {
    async fn open(
        self: Rc<Self>,
        params: gate::OpenParams,
        mut results: gate::OpenResults,
    ) -> Result<(), capnp::Error> {
        let Some(expected) = self.credentials.clone() else {
            self.admit(&mut results);
            return Ok(());
        };
        if self.waiting.get() {
            self.fail(format_args!("open refused: another is pending"));
            return Err(Error::limit("gate opens pending", 2, 1).into());
        }
        let offered = params.get()?.get_token()?;
        let key = self.who.peer.key();
        let max_wait = match self.who.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => MAX_WAIT_WITHOUT_DEADLINE,
        };
        let check = || expected.accepts(offered);
        match self.who.policy.arrive(key, max_wait, check) {
            Verdict::Accepted => {
                self.admit(&mut results);
                Ok(())
            }
            Verdict::Rejected => {
                self.fail(format_args!("credential rejected"));
                Err(Error::Unauthorized.into())
            }
            Verdict::Refused(wait) => {
                self.fail(format_args!(
                    "open refused uncompared: this address's next attempt is in {wait:?}"
                ));
                Err(
                    Error::limit("gate back-off (ms)", wait.as_millis(), max_wait.as_millis())
                        .into(),
                )
            }
            Verdict::Slot(at) => {
                self.waiting.set(true);
                let _waiting = Waiting(&self.waiting);
                tokio::time::sleep_until(at.into()).await;
                if self.who.policy.compare_slot(key, check) {
                    self.admit(&mut results);
                    Ok(())
                } else {
                    self.fail(format_args!("credential rejected"));
                    Err(Error::Unauthorized.into())
                }
            }
        }
    }

    async fn redeem(
        self: Rc<Self>,
        params: gate::RedeemParams,
        mut results: gate::RedeemResults,
    ) -> Result<(), capnp::Error> {
        let granted = crate::ticket::redeem(params.get()?.get_ticket()?)
            .inspect_err(|_| self.fail(format_args!("transfer ticket refused")))?;
        // A connection made to redeem a ticket is as good as opened: neither
        // the handshake deadline nor the unauthenticated pool may cut the
        // transfer.
        self.opened.set(true);
        self.who.ticket.borrow_mut().take();
        results.get().init_object().set_as_capability(granted.hook);
        Ok(())
    }
}

// --- fleet credentials (issue 11) ---
/// What opens a gate: the worker's static token, a token signed by the
/// key it trusts (`ServeOptions::trust`, see `crate::fleet`), or either.
pub(crate) struct Credentials {
    token: Option<Box<[u8]>>,
    trust: Option<Trust>,
}

impl Credentials {
    /// The credentials of a worker serving with `token` and `trust`; `None`
    /// (no authentication) when it has neither.
    pub(crate) fn new(token: Option<&[u8]>, trust: Option<&Trust>) -> Option<Rc<Self>> {
        if token.is_none() && trust.is_none() {
            return None;
        }
        Some(Rc::new(Credentials {
            token: token.map(Box::from),
            trust: trust.cloned(),
        }))
    }

    /// True if `offered` is the static token (compared in constant time)
    /// or a valid signed token for this worker.
    fn accepts(&self, offered: &[u8]) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| constant_time_eq(offered, t))
            || self
                .trust
                .as_ref()
                .is_some_and(|t| t.verify(offered).is_ok())
    }
}
// --- end fleet credentials ---

/// Compares without an early exit, so the time taken says nothing about
/// how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Opens the gate behind `bootstrap` with `token` and casts the (pipelined)
/// actor to the interface `C`. Costs no round trip before the first call.
pub(crate) fn open<C: FromClientHook>(bootstrap: &gate::Client, token: &[u8]) -> C {
    let mut req = bootstrap.open_request();
    req.get().set_token(token);
    let actor = req.send().pipeline.get_actor();
    C::new(actor.client.hook)
}
