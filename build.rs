//! Tells crates that depend on capactor where its schemas are.
//!
//! With `links = "capactor"` in Cargo.toml, what this script prints as
//! `cargo:schema_dir=...` reaches the build scripts of capactor's direct
//! dependents as the environment variable `DEP_CAPACTOR_SCHEMA_DIR`: the
//! import path under which a user's `.capnp` finds `/actor.capnp` and
//! `/tensor.capnp` (see docs/EXTENDING.md).

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:schema_dir={}", dir.display());
}
