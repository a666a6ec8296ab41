//! Supervised children over each transport of the parity harness. Include
//! with `#[path = "common/supervised.rs"] mod supervised;` next to `mod common;`.

#![allow(dead_code, unreachable_pub)]

use capactor::supervisor::ChildSpec;
use capactor::{Address, ConnectOptions, ServeOptions, VirtualOptions};

use crate::common::{Harness, Transport};

/// A child spec for the actor `make` makes, over the harness's transport.
pub fn spec<C, S, F>(h: &Harness, name: &str, make: F) -> ChildSpec<C>
where
    C: capnp::capability::FromClientHook + capnp::capability::FromServer<S> + 'static,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    match h.transport {
        Transport::Local => ChildSpec::local(name, make),
        Transport::Virtual => {
            ChildSpec::virtual_on(name, h.rt.clone(), make, VirtualOptions::default())
        }
        Transport::Tcp => ChildSpec::tcp(
            name,
            h.rt.clone(),
            "127.0.0.1:0",
            make,
            ServeOptions::insecure_loopback(),
            ConnectOptions::default(),
        ),
        // Every incarnation binds the same path: the file goes with the
        // one before.
        Transport::Unix => ChildSpec::serve(
            name,
            h.rt.clone(),
            Address::Unix(h.dir.path().join(format!("{name}.sock"))),
            make,
            ServeOptions::insecure_loopback(),
            ConnectOptions::default(),
        ),
    }
}
