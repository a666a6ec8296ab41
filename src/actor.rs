//! What every actor shares: its identity and the `Actor.info` answer.

use std::time::Instant;

use capnp::capability::FromClientHook;
use capnp::traits::HasTypeId;

use crate::call::Guard;
use crate::schema::actor_capnp::{actor, actor_info};

/// Names one Cap'n Proto interface an actor implements.
///
/// # Examples
///
/// ```
/// use capactor::Interface;
/// use capactor::schema::actor_capnp::actor;
///
/// let base = Interface::of::<actor::Client>("Actor");
/// assert_eq!(base, capactor::actor::ACTOR);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The interface's 64-bit type id.
    pub id: u64,
    /// Its name as written in the schema.
    pub name: &'static str,
}

impl Interface {
    /// The interface whose generated client is `C`.
    pub const fn of<C: HasTypeId>(name: &'static str) -> Interface {
        Interface {
            id: C::TYPE_ID,
            name,
        }
    }
}

/// The base interface every actor implements.
pub const ACTOR: Interface = Interface::of::<actor::Client>("Actor");

/// An actor's identity, and what it needs to answer `Actor.info`.
///
/// Embed one in your actor and answer `info` with
/// [`ActorMeta::write_info`].
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use capactor::ActorMeta;
/// use capactor::schema::actor_capnp::actor;
///
/// struct Hello { meta: ActorMeta }
///
/// impl actor::Server for Hello {
///     async fn ping(self: Rc<Self>, _: actor::PingParams, _: actor::PingResults) -> Result<(), capnp::Error> {
///         Ok(())
///     }
///     async fn info(self: Rc<Self>, _: actor::InfoParams, mut r: actor::InfoResults) -> Result<(), capnp::Error> {
///         self.meta.write_info(r.get().init_info(), 0, 0);
///         Ok(())
///     }
/// }
///
/// let hello = Hello { meta: ActorMeta::new("hello", "greeter", &[]) };
/// ```
#[derive(Debug, Clone)]
pub struct ActorMeta {
    name: String,
    kind: String,
    interfaces: Vec<Interface>,
    started: Instant,
}

impl ActorMeta {
    /// An actor called `name`, of kind `kind`, implementing `interfaces`
    /// (most derived first; `Actor` is appended if missing).
    pub fn new(name: impl Into<String>, kind: impl Into<String>, interfaces: &[Interface]) -> Self {
        let mut interfaces = interfaces.to_vec();
        if !interfaces.contains(&ACTOR) {
            interfaces.push(ACTOR);
        }
        ActorMeta {
            name: name.into(),
            kind: kind.into(),
            interfaces,
            started: Instant::now(),
        }
    }

    /// The actor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interfaces the actor implements, most derived first.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Fills an `ActorInfo`, with the call counts of the actor serving the
    /// current call and the live objects the actor reports.
    pub fn write_info(
        &self,
        mut info: actor_info::Builder<'_>,
        live_objects: u64,
        live_bytes: u64,
    ) {
        let guard = Guard::current();
        info.set_name(&self.name);
        info.set_kind(&self.kind);
        info.set_schema_version(crate::schema::actor_capnp::SCHEMA_VERSION);
        info.set_uptime_millis(
            self.started
                .elapsed()
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        );
        info.set_live_objects(live_objects);
        info.set_live_bytes(live_bytes);
        let calls = guard.actor();
        info.set_calls_served(calls.served());
        info.set_calls_in_flight(calls.in_flight().try_into().unwrap_or(u32::MAX));
        let mut list = info.init_interfaces(self.interfaces.len() as u32);
        for (i, iface) in self.interfaces.iter().enumerate() {
            let mut e = list.reborrow().get(i as u32);
            e.set_id(iface.id);
            e.set_name(iface.name);
        }
    }
}

/// Views a capability as another interface it implements: most often a
/// derived client as its base (`Probe` as `Actor`), or the `Actor` a
/// worker hands out as the richer interface `info` says it implements.
///
/// Generated clients have no methods of their base interfaces; cast to the
/// base to call them. Casting to an interface the object does not implement
/// gives a client whose calls fail with `unimplemented`.
///
/// # Examples
///
/// ```
/// use capactor::schema::actor_capnp::actor;
/// use capactor::schema::probe_capnp::probe;
///
/// capactor::block_on(async {
///     let p: probe::Client = capactor::spawn_local(capactor::actors::Probe::new("p"));
///     let base: actor::Client = capactor::cast(&p);
///     base.ping_request().send().promise.await.unwrap();
/// });
/// ```
pub fn cast<T: FromClientHook, C: FromClientHook>(client: &C) -> T {
    T::new(client.as_client_hook().add_ref())
}
