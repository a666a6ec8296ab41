//! Every method of `TensorWorker` (and of `Actor`, which it extends), as
//! the schema lists them, is served by an actor built with
//! `serve_tensor_worker_via!`: a method missing from the macro would
//! compile and answer `unimplemented` only at run time.
//!
//! The method list comes from the schema itself, compiled with the
//! embedded Cap'n Proto compiler, not from a list kept by hand.

mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::tensor_capnp::tensor_worker;
use capnp::message::ReaderOptions;
use capnp::schema_capnp::{code_generator_request, node};
use capnp::traits::HasTypeId;
use common::within;

const LIMIT: Duration = Duration::from_secs(20);

/// An actor of the user's own that serves `TensorWorker` by forwarding.
struct Forwarding {
    worker: Rc<TensorWorker>,
}

capactor::serve_tensor_worker_via!(Forwarding, worker);

/// `(interface id, interface name, method ordinal, method name)` of every
/// method of `interface` and of the interfaces it extends.
fn methods_of(interface: u64) -> Vec<(u64, String, u16, String)> {
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut cmd = capnpc_embedded::CompileCommand::new();
    cmd.src_prefix(&schema);
    cmd.file(schema.join("tensor.capnp"));
    let bytes = cmd.compile().unwrap();
    let msg = capnp::serialize::read_message(&mut &bytes[..], ReaderOptions::new()).unwrap();
    let request = msg
        .get_root::<code_generator_request::Reader<'_>>()
        .unwrap();
    let nodes: Vec<node::Reader<'_>> = request.get_nodes().unwrap().iter().collect();
    let mut out = Vec::new();
    let mut todo = vec![interface];
    while let Some(id) = todo.pop() {
        let n = nodes
            .iter()
            .find(|n| n.get_id() == id)
            .expect("the interface is in the schema");
        let name = n.get_display_name().unwrap().to_string().unwrap();
        let node::Interface(i) = n.which().unwrap() else {
            panic!("{name} is not an interface");
        };
        // Methods are listed by ordinal (`@n`), their id on the wire.
        for (ordinal, m) in i.get_methods().unwrap().iter().enumerate() {
            let method = m.get_name().unwrap().to_string().unwrap();
            out.push((id, name.clone(), ordinal as u16, method));
        }
        for s in i.get_superclasses().unwrap() {
            todo.push(s.get_id());
        }
    }
    out
}

#[test]
fn every_tensor_worker_method_of_the_schema_is_served_through_the_macro() {
    let methods = methods_of(tensor_worker::Client::TYPE_ID);
    let names: Vec<&str> = methods.iter().map(|m| m.3.as_str()).collect();
    // Sanity: the walk found both interfaces.
    for expected in ["fromData", "list", "ping", "info"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    capactor::block_on(async {
        let client: tensor_worker::Client = capactor::spawn_local(Forwarding {
            worker: Rc::new(TensorWorker::new("w", Quota::new(1 << 20))),
        });
        let mut missing = Vec::new();
        for (interface, iname, ordinal, method) in &methods {
            // Empty parameters: most methods fail on them, but none may
            // be unknown to the server.
            let req = client
                .client
                .new_call::<capnp::any_pointer::Owned, capnp::any_pointer::Owned>(
                    *interface, *ordinal, None,
                );
            if let Err(e) = within(LIMIT, req.send().promise).await {
                if e.kind == capnp::ErrorKind::Unimplemented {
                    missing.push(format!("{iname}.{method} (@{ordinal}): {e}"));
                }
            }
        }
        assert!(missing.is_empty(), "not forwarded: {missing:#?}");
    })
    .unwrap();
}
