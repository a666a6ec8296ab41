//! Generates Rust for `schema/trainer.capnp`, which imports capactor's
//! schemas, with no system `capnp` tool (the compiler is embedded as
//! WebAssembly in `capnpc-embedded`).
//!
//! The types of capactor's own schemas are not generated again: they are
//! capactor's (`capactor::schema::tensor_capnp::...`), so a `Trainer`
//! client is a `TensorWorker` client and tensors pass between the two.
//! docs/EXTENDING.md explains each step.

use std::collections::HashMap;
use std::path::PathBuf;

fn main() {
    // capactor's schema/ directory, announced by its build script
    // (`links = "capactor"`).
    let capactor = PathBuf::from(
        std::env::var("DEP_CAPACTOR_SCHEMA_DIR").expect("capactor is a dependency of this crate"),
    );
    println!("cargo:rerun-if-changed=schema");
    println!("cargo:rerun-if-changed={}", capactor.display());

    let request = capnpc_embedded::CompileCommand::new()
        .src_prefix("schema")
        .import_path(&capactor)
        .file("schema/trainer.capnp")
        .compile()
        .expect("compiling schema/trainer.capnp");

    // Every file our schemas import from capactor's directory is provided
    // by the capactor crate, whose generated modules live in
    // `capactor::schema`. The file ids come from the compiler's request.
    let message =
        capnp::serialize::read_message(&mut &request[..], Default::default()).expect("request");
    let parsed: capnp::schema_capnp::code_generator_request::Reader<'_> =
        message.get_root().expect("request");
    let mut provided = HashMap::new();
    for file in parsed.get_requested_files().expect("request") {
        for import in file.get_imports().expect("request") {
            let name = import.get_name().expect("request").to_str().expect("utf-8");
            if capactor.join(name.trim_start_matches('/')).is_file() {
                provided.insert(import.get_id(), "capactor::schema".to_string());
            }
        }
    }

    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(std::env::var("OUT_DIR").expect("OUT_DIR"))
        .crates_provide_map(provided)
        .run(&request[..])
        .expect("generating Rust for schema/trainer.capnp");
}
