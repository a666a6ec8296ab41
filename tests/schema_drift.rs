//! Fails when `schema/*.capnp` and the generated code committed in
//! `src/schema/` disagree.
//!
//! The code is regenerated with the Cap'n Proto compiler embedded as
//! WebAssembly (no system tool needed) and compared byte for byte. To
//! accept a schema change, regenerate:
//!
//! ```text
//! CAPACTOR_BLESS=1 cargo test --test schema_drift
//! ```
//!
//! With `CAPACTOR_CAPNP=/path/to/capnp` (CI sets it after installing
//! Debian's `capnproto` and `libcapnp-dev`, whose standard imports
//! `-> stream` methods need), or a `capnp` on `PATH`, the reference C++
//! compiler compiles the schemas too, and its output must give the same Rust
//! API (the embedded node encodings, which differ between compiler versions,
//! are left out). Without a compiler that check says on stderr why it is
//! skipped; with `CI=true` it fails instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every schema file, in `schema/`.
const SCHEMAS: &[&str] = &[
    "actor.capnp",
    "probe.capnp",
    "tensor.capnp",
    "registry.capnp",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(request: &[u8]) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().unwrap();
    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(out.path())
        .default_parent_module(vec!["schema".into()])
        .run(request)
        .unwrap();
    read_dir(out.path())
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs") && p.file_name().unwrap() != "mod.rs")
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn embedded_request() -> Vec<u8> {
    let schema = root().join("schema");
    let mut cmd = capnpc_embedded::CompileCommand::new();
    cmd.src_prefix(&schema);
    for s in SCHEMAS {
        cmd.file(schema.join(s));
    }
    cmd.compile().unwrap()
}

#[test]
fn committed_code_matches_schema() {
    let generated = generate(&embedded_request());
    let committed_dir = root().join("src/schema");
    if std::env::var_os("CAPACTOR_BLESS").is_some() {
        for (name, text) in &generated {
            std::fs::write(committed_dir.join(name), text).unwrap();
        }
    }
    let committed = read_dir(&committed_dir);
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "src/schema/ holds other files than schema/ generates; run CAPACTOR_BLESS=1 cargo test --test schema_drift"
    );
    for (name, text) in &generated {
        assert!(
            committed[name] == *text,
            "src/schema/{name} is out of date with schema/; run CAPACTOR_BLESS=1 cargo test --test schema_drift"
        );
    }
}

/// What `src/schema/nodes.bin` must hold: the request's schema nodes and
/// their doc comments, and nothing else (the request's file list names
/// paths on the machine that compiled it).
fn nodes_only(request: &[u8]) -> Vec<u8> {
    use capnp::schema_capnp::code_generator_request;
    let reader = capnp::serialize::read_message_from_flat_slice(
        &mut &request[..],
        capnp::message::ReaderOptions::new(),
    )
    .unwrap();
    let full = reader
        .get_root::<code_generator_request::Reader<'_>>()
        .unwrap();
    let mut message = capnp::message::Builder::new_default();
    let mut out = message.init_root::<code_generator_request::Builder<'_>>();
    out.set_nodes(full.get_nodes().unwrap()).unwrap();
    out.set_source_info(full.get_source_info().unwrap())
        .unwrap();
    capnp::serialize::write_message_to_words(&message)
}

#[test]
fn committed_nodes_match_schema() {
    let nodes = nodes_only(&embedded_request());
    let path = root().join("src/schema/nodes.bin");
    if std::env::var_os("CAPACTOR_BLESS").is_some() {
        std::fs::write(&path, &nodes).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == nodes,
        "src/schema/nodes.bin (the schema nodes `capactor describe` and the metrics read) \
         is out of date with schema/; run CAPACTOR_BLESS=1 cargo test --test schema_drift"
    );
}

/// Drops what legitimately differs between compiler versions: the header
/// naming the compiler and the encoded schema nodes.
fn api_only(code: &str) -> String {
    let mut out = String::new();
    let mut in_node = false;
    for line in code.lines() {
        if line.starts_with("// capnp binary version") {
            continue;
        }
        if line.contains("static ENCODED_NODE") {
            in_node = true;
            continue;
        }
        if in_node {
            if line.trim() == "];" {
                in_node = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The reference compiler: `CAPACTOR_CAPNP`, else `capnp` on `PATH`, or
/// why there is none.
fn reference_compiler() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CAPACTOR_CAPNP").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        // Asked for by name: a wrong path is a mistake, not a skip.
        assert!(
            path.is_file(),
            "CAPACTOR_CAPNP={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("capnp"))
        .find(|p| p.is_file())
        .ok_or_else(|| "CAPACTOR_CAPNP is not set and there is no `capnp` on PATH".to_string())
}

#[test]
fn reference_compiler_agrees_when_available() {
    let capnp = match reference_compiler() {
        Ok(capnp) => capnp,
        // In CI the check must run: a missing compiler is a broken CI
        // setup, not a reason to pass.
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "the reference-compiler check must run in CI (CI=true), but {why}; \
             install capnproto and libcapnp-dev and set CAPACTOR_CAPNP"
        ),
        Err(why) => {
            eprintln!(
                "SKIPPED the reference-compiler check: {why}. To run it, install the C++ \
                 Cap'n Proto compiler (Debian: apt-get install capnproto libcapnp-dev) and \
                 set CAPACTOR_CAPNP=$(command -v capnp). With CI=true a missing compiler fails."
            );
            return;
        }
    };
    let schema = root().join("schema");
    let output = std::process::Command::new(capnp)
        .arg("compile")
        .arg("-o-")
        .arg(format!("--src-prefix={}", schema.display()))
        .args(SCHEMAS.iter().map(|s| schema.join(s)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "capnp compile failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference = generate(&output.stdout);
    let embedded = generate(&embedded_request());
    for (name, text) in &embedded {
        assert_eq!(
            api_only(&reference[name]),
            api_only(text),
            "{name}: the reference compiler and the embedded one disagree"
        );
    }
}
