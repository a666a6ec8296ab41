//! `capactor describe ADDR`: each interface the worker implements, with
//! its methods and their parameter and result fields, from the schema
//! nodes compiled into the binary; and the capabilities those methods pass.

use std::process::{Command, Output};
use std::time::Duration;

#[path = "common/process.rs"]
mod process;
use process::{WorkerProcess, BIN};

const LIMIT: Duration = Duration::from_secs(20);

fn run(args: &[&str]) -> Output {
    WorkerProcess::spawn(Command::new(BIN).args(args)).output(LIMIT)
}

/// A worker with a generated token: its address and its token file.
fn worker() -> (WorkerProcess, String, String) {
    let mut w = WorkerProcess::spawn(Command::new(BIN).args([
        "worker",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "described",
        "--vats",
        "1",
    ]));
    let addr = w.listening_addr(LIMIT);
    let token = w.wait_for_stderr(LIMIT, |stderr| {
        let rest = stderr.split("token written to ").nth(1)?;
        Some(rest.split_once('\n')?.0.trim().to_string())
    });
    (w, addr, token)
}

#[test]
fn describe_lists_interfaces_methods_and_fields_from_the_compiled_schema() {
    let (_w, addr, token) = worker();
    let out = run(&["describe", &addr, "--token-file", &token]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Who it is, then its interfaces, most derived first.
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("described (kind tensor-worker, schema version "),
        "{first}"
    );
    let worker = stdout
        .find("interface tensor.capnp:TensorWorker (0x")
        .expect(&stdout);
    let actor = stdout
        .find("interface actor.capnp:Actor (0x")
        .expect(&stdout);
    assert!(worker < actor, "{stdout}");
    assert!(stdout.contains("extends actor.capnp:Actor"), "{stdout}");
    // Methods with their ordinals, parameter and result fields and types,
    // and the doc comment's first sentence above them.
    for line in [
        "fromData @0 (data :TensorData) -> (tensor :Tensor);",
        "full @1 (dtype :DType, shape :List(UInt64), value :Scalar) -> (tensor :Tensor);",
        "store @9 (name :Text, tensor :Tensor, ttlMillis :UInt64) -> ();",
        "list @12 () -> (objects :List(ObjectInfo));",
        "ping @0 () -> ();",
        "info @1 () -> (info :ActorInfo);",
        "# The cheapest call there is.",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim() == line),
            "missing {line:?} in\n{stdout}"
        );
    }
    // The capabilities its methods hand out are described too, streaming
    // methods as such.
    let handed = stdout
        .find("# The capabilities its methods take or hand out:")
        .expect(&stdout);
    assert!(handed > actor);
    for line in [
        "unary @4 (op :UnaryOp) -> (result :Tensor);",
        "write @0 (offset :UInt64, data :Data, crc32c :UInt32) -> stream;",
        "finish @1 (crc32c :UInt32) -> (tensor :Tensor);",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim() == line),
            "missing {line:?} in\n{stdout}"
        );
    }
    for iface in [
        "tensor.capnp:Tensor",
        "tensor.capnp:Upload",
        "tensor.capnp:Sink",
    ] {
        assert_eq!(
            stdout.matches(&format!("interface {iface} (")).count(),
            1,
            "{iface} once in\n{stdout}"
        );
    }
}

#[test]
fn describe_without_the_token_is_refused_clearly() {
    let (_w, addr, _token) = worker();
    let out = run(&["describe", &addr]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("credential rejected"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing described");
}

#[test]
fn every_interface_in_schema_is_in_the_catalog_with_all_its_methods() {
    use capactor::catalog::Catalog;
    use capactor::schema::{actor_capnp, probe_capnp, tensor_capnp};
    use capnp::traits::HasTypeId;
    let catalog = Catalog::builtin();
    let method_count = |id| catalog.interface(id).map(|i| i.methods.len());
    // The generated clients' request builders are the methods the code
    // knows; the catalog must know the same number.
    assert_eq!(method_count(actor_capnp::actor::Client::TYPE_ID), Some(2));
    assert_eq!(method_count(actor_capnp::gate::Client::TYPE_ID), Some(2));
    let probe = catalog
        .interface(probe_capnp::probe::Client::TYPE_ID)
        .unwrap();
    assert!(probe.methods.iter().any(|m| m.name == "echo"), "{probe}");
    let tensor = catalog
        .interface(tensor_capnp::tensor::Client::TYPE_ID)
        .unwrap();
    assert_eq!(tensor.name, "tensor.capnp:Tensor");
    for (i, m) in tensor.methods.iter().enumerate() {
        assert_eq!(usize::from(m.ordinal), i, "methods by ordinal");
    }
    assert_eq!(
        catalog
            .method(tensor_capnp::tensor::Client::TYPE_ID, 4)
            .map(|m| m.name.as_str()),
        Some("unary")
    );
}
