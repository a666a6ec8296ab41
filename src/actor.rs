//! What every actor shares: its identity and the `Actor.info` answer; and
//! what any client can learn about any actor ([`describe`]).

use std::fmt;
use std::time::{Duration, Instant};

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

/// What actors built with this crate report as `ActorInfo.runtime`.
pub const RUNTIME: &str = concat!("capactor ", env!("CARGO_PKG_VERSION"));

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

    /// Fills an `ActorInfo` for the caller of the current call.
    ///
    /// `live_objects` and `live_bytes` are the actor's own, worker-wide
    /// numbers. A remote caller sees them, and the actor-wide call counts,
    /// only if its worker shows worker-wide totals
    /// (`ServeOptions::report_worker_totals`); otherwise it sees its own
    /// connection's: the objects and bytes its memory budget holds and the
    /// calls it made. A local client (no connection) sees the actor's.
    pub fn write_info(
        &self,
        mut info: actor_info::Builder<'_>,
        live_objects: u64,
        live_bytes: u64,
    ) {
        let guard = Guard::current();
        let totals = guard.shows_worker_totals();
        let (live_objects, live_bytes) = match guard.memory() {
            Some(conn) if !totals => (conn.live_tensors(), conn.used()),
            _ if !totals => (0, 0),
            _ => (live_objects, live_bytes),
        };
        info.set_name(&self.name);
        info.set_kind(&self.kind);
        info.set_schema_version(crate::schema::actor_capnp::SCHEMA_VERSION);
        info.set_runtime(RUNTIME);
        info.set_uptime_millis(
            self.started
                .elapsed()
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        );
        info.set_live_objects(live_objects);
        info.set_live_bytes(live_bytes);
        if totals {
            let calls = guard.actor();
            info.set_calls_served(calls.served());
            info.set_calls_in_flight(calls.in_flight().try_into().unwrap_or(u32::MAX));
        } else {
            info.set_calls_served(guard.served());
            info.set_calls_in_flight(guard.in_flight());
        }
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
/// }).unwrap();
/// ```
pub fn cast<T: FromClientHook, C: FromClientHook>(client: &C) -> T {
    T::new(client.as_client_hook().add_ref())
}

/// What an actor says about itself in answer to `Actor.info`, read by
/// [`describe`].
///
/// Its `Display` is what `capactor info` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Description {
    /// The name the actor was spawned with.
    pub name: String,
    /// What the actor is, e.g. "tensor-worker".
    pub kind: String,
    /// The `schemaVersion` of capactor's schema the actor was built from.
    pub schema_version: u32,
    /// The software serving the actor, e.g. "capactor 0.1.0"; empty for
    /// actors built before schema version 2.
    pub runtime: String,
    /// Every interface the actor implements, most derived first, ending in
    /// `Actor`.
    pub interfaces: Vec<RemoteInterface>,
    /// How long the actor has been up.
    pub uptime: Duration,
    /// Capabilities the actor has handed out that are still alive.
    pub live_objects: u64,
    /// Bytes those objects hold.
    pub live_bytes: u64,
    /// Calls the actor has completed.
    pub calls_served: u64,
    /// Calls under way when it answered (including the `info` call).
    pub calls_in_flight: u32,
}

/// One interface an actor reports implementing: its type id and its name
/// in its schema. Unlike [`Interface`], owns its name (it came over the
/// wire).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteInterface {
    /// The interface's 64-bit type id.
    pub id: u64,
    /// Its name as written in its schema.
    pub name: String,
}

impl Description {
    /// Reads an `ActorInfo`.
    ///
    /// # Errors
    ///
    /// Fails if the struct is malformed (a text field that is not UTF-8).
    pub fn from_reader(info: actor_info::Reader<'_>) -> crate::Result<Self> {
        let interfaces = info
            .get_interfaces()?
            .iter()
            .map(|i| {
                Ok(RemoteInterface {
                    id: i.get_id(),
                    name: i.get_name()?.to_str()?.to_owned(),
                })
            })
            .collect::<crate::Result<_>>()?;
        Ok(Description {
            name: info.get_name()?.to_str()?.to_owned(),
            kind: info.get_kind()?.to_str()?.to_owned(),
            schema_version: info.get_schema_version(),
            runtime: info.get_runtime()?.to_str()?.to_owned(),
            interfaces,
            uptime: Duration::from_millis(info.get_uptime_millis()),
            live_objects: info.get_live_objects(),
            live_bytes: info.get_live_bytes(),
            calls_served: info.get_calls_served(),
            calls_in_flight: info.get_calls_in_flight(),
        })
    }

    /// Whether the actor reports implementing the interface with type id
    /// `id`.
    pub fn implements_id(&self, id: u64) -> bool {
        self.interfaces.iter().any(|i| i.id == id)
    }

    /// Whether the actor reports implementing the interface whose
    /// generated client is `C`: whether `cast::<C, _>` gives a client whose
    /// calls it serves.
    pub fn implements<C: HasTypeId>(&self) -> bool {
        self.implements_id(C::TYPE_ID)
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runtime = if self.runtime.is_empty() {
            "unknown (built before schema version 2)"
        } else {
            &self.runtime
        };
        writeln!(f, "name:           {}", self.name)?;
        writeln!(f, "kind:           {}", self.kind)?;
        writeln!(f, "schema version: {}", self.schema_version)?;
        writeln!(f, "runtime:        {runtime}")?;
        writeln!(f, "uptime:         {:.1} s", self.uptime.as_secs_f64())?;
        writeln!(f, "live objects:   {}", self.live_objects)?;
        writeln!(f, "live bytes:     {}", self.live_bytes)?;
        writeln!(f, "calls served:   {}", self.calls_served)?;
        write!(f, "interfaces:")?;
        for iface in &self.interfaces {
            write!(f, "\n  {:#018x} {}", iface.id, iface.name)?;
        }
        Ok(())
    }
}

/// Asks any actor what it is: its name, kind, versions and the interfaces
/// it implements (extended ones included, most derived first).
///
/// Works on a client of any interface the actor serves (every one extends
/// `Actor`), over every transport.
///
/// # Errors
///
/// Fails if the call fails.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{Quota, TensorWorker, TENSOR_WORKER};
/// use capactor::schema::tensor_capnp::tensor_worker;
///
/// capactor::block_on(async {
///     let w: tensor_worker::Client =
///         capactor::spawn_local(TensorWorker::new("w1", Quota::new(1 << 20)));
///     let about = capactor::actor::describe(&w).await.unwrap();
///     assert_eq!(about.name, "w1");
///     assert_eq!(about.interfaces[0].name, "TensorWorker");
///     assert!(about.implements::<tensor_worker::Client>());
///     assert!(about.implements_id(TENSOR_WORKER.id));
/// }).unwrap();
/// ```
pub async fn describe<C: FromClientHook>(client: &C) -> crate::Result<Description> {
    let actor: actor::Client = cast(client);
    let reply = actor.info_request().send().promise.await?;
    Description::from_reader(reply.get()?.get_info()?)
}

/// Turns an `unimplemented` answer to a call of `method` into an error
/// that says which actor lacks it and what that actor is: its name, kind,
/// schema version and the interfaces it does implement. Other errors are
/// returned as they are.
///
/// A server answers `unimplemented` to a method it does not know: one its
/// schema is too old to have, or one of an interface it does not implement
/// at all (a client cast to the wrong interface). The generated code's
/// message does not say which; this asks the actor (one more round trip,
/// on this error path only).
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{Quota, TensorWorker};
/// use capactor::schema::probe_capnp::probe;
/// use capactor::schema::tensor_capnp::tensor_worker;
///
/// capactor::block_on(async {
///     let w: tensor_worker::Client =
///         capactor::spawn_local(TensorWorker::new("w1", Quota::new(1 << 20)));
///     // A tensor worker is not a probe.
///     let p: probe::Client = capactor::cast(&w);
///     let err = p.echo_request().send().promise.await.err().unwrap();
///     let err = capactor::actor::explain_unimplemented(&p, "Probe.echo", err).await;
///     assert_eq!(err.kind(), capnp::ErrorKind::Unimplemented);
///     assert!(err.to_string().contains("Probe.echo is not implemented by actor \"w1\""));
/// }).unwrap();
/// ```
pub async fn explain_unimplemented<C: FromClientHook>(
    client: &C,
    method: &str,
    err: capnp::Error,
) -> crate::Error {
    if err.kind != capnp::ErrorKind::Unimplemented {
        return err.into();
    }
    let what = match describe(client).await {
        Ok(d) => {
            let names: Vec<&str> = d.interfaces.iter().map(|i| i.name.as_str()).collect();
            format!(
                "actor \"{}\" (kind {}, schema version {}, implementing {})",
                d.name,
                d.kind,
                d.schema_version,
                names.join(", ")
            )
        }
        Err(_) => "the actor".to_string(),
    };
    crate::Error::Remote(capnp::Error::unimplemented(format!(
        "{method} is not implemented by {what}"
    )))
}

/// Implements `Actor` (`schema/actor.capnp`) for a type, from an
/// [`ActorMeta`] field: `ping` answers at once, `info` with the meta.
///
/// For actors whose own interface extends `Actor` directly: write only the
/// methods of your interface, and let this serve the inherited ones. The
/// optional third argument, a `fn(&Self) -> (u64, u64)`, gives the live
/// objects and bytes that `info` reports (default: none).
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use capactor::{ActorMeta, Interface};
/// use capactor::schema::actor_capnp::actor;
///
/// struct Greeter { meta: ActorMeta }
/// capactor::serve_actor_via!(Greeter, meta);
///
/// capactor::block_on(async {
///     let g: actor::Client = capactor::spawn_local(Greeter {
///         meta: ActorMeta::new("hello", "greeter", &[]),
///     });
///     g.ping_request().send().promise.await.unwrap();
///     let about = capactor::actor::describe(&g).await.unwrap();
///     assert_eq!((about.name.as_str(), about.kind.as_str()), ("hello", "greeter"));
/// }).unwrap();
/// ```
#[macro_export]
macro_rules! serve_actor_via {
    ($ty:ty, $meta:ident) => {
        $crate::serve_actor_via!($ty, $meta, |_: &$ty| (0, 0));
    };
    ($ty:ty, $meta:ident, $live:expr) => {
        impl $crate::schema::actor_capnp::actor::Server for $ty {
            fn ping(
                self: ::std::rc::Rc<Self>,
                _: $crate::schema::actor_capnp::actor::PingParams,
                _: $crate::schema::actor_capnp::actor::PingResults,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<(), $crate::__private::capnp::Error>,
            > + 'static {
                ::core::future::ready(::core::result::Result::Ok(()))
            }

            fn info(
                self: ::std::rc::Rc<Self>,
                _: $crate::schema::actor_capnp::actor::InfoParams,
                mut results: $crate::schema::actor_capnp::actor::InfoResults,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<(), $crate::__private::capnp::Error>,
            > + 'static {
                let live: fn(&$ty) -> (u64, u64) = $live;
                let (objects, bytes) = live(&self);
                self.$meta
                    .write_info(results.get().init_info(), objects, bytes);
                ::core::future::ready(::core::result::Result::Ok(()))
            }
        }
    };
}

/// Forwards the listed methods of a generated `Server` trait to the server
/// in an `Rc` field. The machinery behind [`serve_actor_via!`]'s siblings.
#[doc(hidden)]
#[macro_export]
macro_rules! __forward_server {
    ($ty:ty, $field:ident, $inner:ty, $trait:path, [$($method:ident($params:ty, $results:ty)),* $(,)?]) => {
        impl $trait for $ty {
            $(
                fn $method(
                    self: ::std::rc::Rc<Self>,
                    params: $params,
                    results: $results,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<(), $crate::__private::capnp::Error>,
                > + 'static {
                    <$inner as $trait>::$method(
                        ::std::rc::Rc::clone(&self.$field),
                        params,
                        results,
                    )
                }
            )*
        }
    };
}
