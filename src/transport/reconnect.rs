//! Reconnecting clients: a [`Connection`] whose client survives the loss of
//! its TCP connection.
//!
//! With [`ConnectOptions::reconnect`] set, [`crate::connect_tcp`] returns a
//! connection whose client is a stable capability ([`crate::stable`]): a
//! task on the caller's `LocalSet` watches the TCP connection of the moment,
//! and when it drops (the worker died, a heartbeat went unanswered, the
//! network broke) connects again under the [`Reconnect`] policy, opens the
//! gate with the same token, checks the worker answers, and points the
//! client at it. The same client value then works again.

use std::time::Instant;

use capnp::capability::FromClientHook;
use tokio_util::sync::CancellationToken;

use super::connect_options::ConnectOptions;
pub use super::connect_options::Reconnect;
use super::connection::{Connection, LinkHandle};
use crate::schema::actor_capnp::actor;
use crate::stable::Stable;
use crate::{Error, Result};

/// Connects to `addr` under `opts.reconnect` (see the module docs).
pub(crate) async fn connect<C: FromClientHook>(
    addr: &str,
    opts: &ConnectOptions,
) -> Result<Connection<C>> {
    let mut once = opts.clone();
    let policy = once
        .reconnect
        .take()
        .expect("called with a reconnect policy");
    policy.check()?;
    let first = until_up(addr, &once, &policy).await?;
    let stable = Stable::new(policy.call_wait, "the connection is being re-made");
    up(&stable, &first);
    let outer = LinkHandle::new(CancellationToken::new());
    tokio::task::spawn_local(keep_up(
        addr.to_string(),
        once,
        policy,
        stable.clone(),
        first,
        outer.clone(),
    ));
    Ok(Connection {
        client: stable.client(),
        link: outer,
    })
}

fn up(stable: &Stable, conn: &Connection<actor::Client>) {
    let link = conn.link().clone();
    stable.set_up(
        conn.client().client.hook.add_ref(),
        std::rc::Rc::new(move || !link.is_closed()),
        true,
    );
}

/// Keeps `stable` pointed at a live connection to `addr` until `outer` is
/// cut or the policy gives up.
async fn keep_up(
    addr: String,
    opts: ConnectOptions,
    policy: Reconnect,
    stable: Stable,
    mut conn: Connection<actor::Client>,
    outer: LinkHandle,
) {
    let stopped = loop {
        tokio::select! {
            () = outer.cut.cancelled() => break None,
            () = conn.link().closed() => {}
        }
        stable.set_down("the connection was lost and is being re-made");
        tracing::info!(%addr, "connection lost; reconnecting");
        let lost = Instant::now();
        drop(conn);
        let next = tokio::select! {
            () = outer.cut.cancelled() => break None,
            next = until_up(&addr, &opts, &policy) => next,
        };
        match next {
            Ok(c) => {
                tracing::info!(%addr, after = ?lost.elapsed(), "reconnected");
                up(&stable, &c);
                conn = c;
            }
            Err(e) => break Some(e),
        }
    };
    let reason = match stopped {
        Some(e) => {
            tracing::error!(%addr, "giving up reconnecting: {e}");
            e
        }
        None => Error::Disconnected("the connection was closed".into()),
    };
    stable.close(reason.into());
    outer.cut.cancel();
    outer.closed.cancel();
}

/// Connects under the policy until a connection answers a ping; fails with
/// why once the policy is used up, or at once if the gate refuses the token.
async fn until_up(
    addr: &str,
    opts: &ConnectOptions,
    policy: &Reconnect,
) -> Result<Connection<actor::Client>> {
    let start = Instant::now();
    let mut failures = 0u32;
    loop {
        let last = match attempt(addr, opts).await {
            Ok(conn) => return Ok(conn),
            // The gate refused the token: trying again will not help. (Any
            // other refusal, such as a worker closing surplus
            // unauthenticated connections during a reconnect storm, will.)
            Err(Error::Remote(e)) if refused_token(&e) => return Err(Error::Remote(e)),
            Err(e) => e,
        };
        failures += 1;
        let wait = policy.backoff(failures - 1);
        let out_of_attempts = policy.max_attempts.is_some_and(|max| failures >= max);
        let out_of_time = policy
            .max_elapsed
            .is_some_and(|max| start.elapsed() + wait > max);
        if out_of_attempts || out_of_time {
            return Err(Error::Disconnected(format!(
                "could not reach {addr}: the reconnect policy gave up after {failures} attempts in {:?}; last error: {last}",
                start.elapsed()
            )));
        }
        tracing::debug!(%addr, ?wait, "connect attempt failed: {last}");
        tokio::time::sleep(wait).await;
    }
}

/// Whether the gate refused the credential (see `Error::Unauthorized`).
fn refused_token(e: &capnp::Error) -> bool {
    e.kind == capnp::ErrorKind::Failed && e.extra.contains(&Error::Unauthorized.to_string())
}

/// One connection attempt: connect, open the gate, ping.
async fn attempt(addr: &str, opts: &ConnectOptions) -> Result<Connection<actor::Client>> {
    let token = &opts.token;
    let conn: Connection<actor::Client> =
        super::tcp::connect_with(addr, opts, |gate| super::gatekeeper::open(gate, token)).await?;
    let ping = conn.client().ping_request().send().promise;
    match tokio::time::timeout(opts.connect_timeout, ping).await {
        Ok(Ok(_)) => Ok(conn),
        Ok(Err(e)) => Err(Error::Remote(e)),
        Err(_) => Err(Error::Disconnected(format!(
            "{addr} did not answer within {:?}",
            opts.connect_timeout
        ))),
    }
}
