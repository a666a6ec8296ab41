//! A worker's side of the registry: register, keep the lease alive with a
//! health report every interval, and register again whenever the lease or
//! the registry is lost (a registry restart, a cut link).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Health, Registration, RegistryClient};
use crate::schema::actor_capnp::actor;
use crate::Result;

/// Where a worker stands with its registry, as [`Joiner::state`] tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinState {
    /// True while the worker holds a lease it has renewed.
    pub registered: bool,
    /// Registrations so far (1 + re-registrations).
    pub registrations: u64,
    /// Why the last attempt or lease failed, if one did.
    pub last_error: Option<String>,
}

/// Keeps a worker registered. Runs on the current `LocalSet`; dropping it
/// stops reporting and drops the lease (the registry removes the worker at
/// once).
///
/// # Examples
///
/// ```
/// use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
/// use capactor::fleet::{Health, Joiner, Registration, RegistryClient};
/// use std::time::Duration;
///
/// capactor::block_on(async {
///     let state = RegistryState::new(RegistryOptions::default());
///     let r = RegistryClient::new(capactor::spawn_local(Registry::new("r", state.clone())));
///     let joiner = Joiner::spawn(
///         move || { let r = r.clone(); async move { Ok(r) } },
///         Registration::new("w1", "tensor-worker", "127.0.0.1:7001"),
///         None,
///         Health::default,
///     );
///     while !joiner.state().registered {
///         tokio::time::sleep(Duration::from_millis(1)).await;
///     }
///     assert_eq!(state.status().totals.workers, 1);
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct Joiner {
    state: Rc<RefCell<JoinState>>,
    stop: CancellationToken,
}

/// The shortest and longest wait before registering again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Joiner {
    /// Registers through the registry `connect` reaches (called again for
    /// every new attempt), with `actor` handed to clients if given, and
    /// reports `health()` as often as the registry asks.
    pub fn spawn<C, F>(
        connect: C,
        registration: Registration,
        actor: Option<actor::Client>,
        health: impl Fn() -> Health + 'static,
    ) -> Joiner
    where
        C: Fn() -> F + 'static,
        F: Future<Output = Result<RegistryClient>> + 'static,
    {
        let state = Rc::new(RefCell::new(JoinState::default()));
        let stop = CancellationToken::new();
        let (s, done) = (state.clone(), stop.clone());
        tokio::task::spawn_local(async move {
            let mut wait = RETRY_MIN;
            loop {
                let run = keep(&connect, &registration, actor.clone(), &health, &s);
                let failed = tokio::select! {
                    () = done.cancelled() => return,
                    e = run => e,
                };
                let ok_before = s.borrow().registered;
                {
                    let mut st = s.borrow_mut();
                    st.registered = false;
                    st.last_error = Some(failed.to_string());
                }
                tracing::warn!("registry lease lost, registering again: {failed}");
                if ok_before {
                    wait = RETRY_MIN;
                }
                tokio::select! {
                    () = done.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        });
        Joiner { state, stop }
    }

    /// Where the worker stands.
    pub fn state(&self) -> JoinState {
        self.state.borrow().clone()
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One registration, kept until it fails; returns why.
async fn keep<C, F>(
    connect: &C,
    registration: &Registration,
    actor: Option<actor::Client>,
    health: &impl Fn() -> Health,
    state: &Rc<RefCell<JoinState>>,
) -> crate::Error
where
    C: Fn() -> F,
    F: Future<Output = Result<RegistryClient>>,
{
    let registry = match connect().await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let lease = match registry.register(registration, actor).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    // Report at once, then every interval; a report that does not get
    // through within the TTL means the lease is as good as gone.
    let every = lease.report_interval().max(Duration::from_millis(1));
    let ttl = lease.ttl().max(every);
    {
        let mut st = state.borrow_mut();
        st.registrations += 1;
    }
    loop {
        match tokio::time::timeout(ttl, lease.report(&health())).await {
            Ok(Ok(())) => state.borrow_mut().registered = true,
            Ok(Err(e)) => return e,
            Err(_) => {
                return crate::Error::Disconnected(
                    "a health report took longer than the TTL".into(),
                )
            }
        }
        tokio::time::sleep(every).await;
    }
}
