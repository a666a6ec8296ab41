//! The compatibility promise, checked on the schemas themselves: `schema/`
//! is a compatible evolution of every released version frozen in
//! `tests/compat/`, and the Rust code the wire tests build old clients and
//! servers from matches those frozen schemas.
//!
//! Compatible means what Cap'n Proto's evolution rules allow, and one
//! rule more (names are kept, because pycapnp and other dynamic clients
//! call by name): every type, field, enumerant, method and base interface
//! of a released version is still there with the same id, ordinal, name,
//! wire position and type. New ones may be added.
//!
//! To accept a deliberate change of the generated code (a new capnpc):
//!
//! ```text
//! CAPACTOR_BLESS=1 cargo test --test compat_schema
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use capnp::schema_capnp::{code_generator_request, field, node, type_};

/// Every released version frozen under `tests/compat/`, with its files.
const RELEASED: &[(u32, &[&str])] = &[
    (1, &["actor.capnp", "probe.capnp", "tensor.capnp"]),
    (2, &["actor.capnp", "probe.capnp", "tensor.capnp"]),
    (3, &["actor.capnp", "probe.capnp", "tensor.capnp"]),
];

/// The current schema files.
const CURRENT: &[&str] = &[
    "actor.capnp",
    "probe.capnp",
    "tensor.capnp",
    "registry.capnp",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compile(dir: &Path, files: &[&str]) -> Vec<u8> {
    let mut cmd = capnpc_embedded::CompileCommand::new();
    cmd.src_prefix(dir);
    for f in files {
        cmd.file(dir.join(f));
    }
    cmd.compile().unwrap()
}

fn read_rs(dir: &Path) -> BTreeMap<String, String> {
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

#[test]
fn frozen_code_matches_the_frozen_schemas() {
    for (version, files) in RELEASED {
        let dir = root().join(format!("tests/compat/v{version}"));
        let request = compile(&dir.join("schema"), files);
        let out = tempfile::tempdir().unwrap();
        capnpc::codegen::CodeGenerationCommand::new()
            .output_directory(out.path())
            .default_parent_module(vec![format!("v{version}")])
            .run(&request[..])
            .unwrap();
        let generated = read_rs(out.path());
        if std::env::var_os("CAPACTOR_BLESS").is_some() {
            for (name, text) in &generated {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
        let committed = read_rs(&dir);
        assert_eq!(
            committed.keys().collect::<Vec<_>>(),
            generated.keys().collect::<Vec<_>>(),
            "tests/compat/v{version}/ holds other files than its schema generates; \
             run CAPACTOR_BLESS=1 cargo test --test compat_schema"
        );
        for (name, text) in &generated {
            assert!(
                committed[name] == *text,
                "tests/compat/v{version}/{name} is out of date; \
                 run CAPACTOR_BLESS=1 cargo test --test compat_schema"
            );
        }
    }
}

#[test]
fn frozen_versions_are_older_than_the_current_one() {
    let current = capactor::schema::actor_capnp::SCHEMA_VERSION;
    for (version, _) in RELEASED {
        let text = std::fs::read_to_string(
            root().join(format!("tests/compat/v{version}/schema/actor.capnp")),
        )
        .unwrap();
        assert!(
            text.contains(&format!("const schemaVersion :UInt32 = {version};")),
            "tests/compat/v{version} is not the schema of version {version}"
        );
        assert!(
            *version < current,
            "version {version} is frozen but current is {current}"
        );
    }
    assert_eq!(
        RELEASED.last().map(|(v, _)| v + 1),
        Some(current),
        "the version before the current one must be frozen in tests/compat/"
    );
}

#[test]
fn the_current_schema_is_a_compatible_evolution_of_every_release() {
    let now = compile(&root().join("schema"), CURRENT);
    let now = Nodes::parse(&now);
    for (version, files) in RELEASED {
        let old = compile(
            &root().join(format!("tests/compat/v{version}/schema")),
            files,
        );
        let problems = Nodes::parse(&old).incompatibilities(&now);
        assert!(
            problems.is_empty(),
            "schema/ breaks compatibility with version {version}:\n  {}",
            problems.join("\n  ")
        );
    }
}

#[test]
fn the_check_catches_incompatible_changes() {
    let v1 = root().join("tests/compat/v1/schema");
    let files = RELEASED[0].1;
    let old = Nodes::parse(&compile(&v1, files));
    let broken = |file: &str, from: &str, to: &str| {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let mut text = std::fs::read_to_string(v1.join(f)).unwrap();
            if *f == file {
                assert!(text.contains(from), "{from}");
                text = text.replacen(from, to, 1);
            }
            std::fs::write(dir.path().join(f), text).unwrap();
        }
        old.incompatibilities(&Nodes::parse(&compile(dir.path(), files)))
    };
    let cases = [
        (
            "actor.capnp",
            "  kind @1 :Text;",
            "  sort @1 :Text;",
            "field kind was removed or renamed",
        ),
        (
            "actor.capnp",
            "uptimeMillis @4 :UInt64;",
            "uptimeMillis @4 :UInt32;",
            "field uptimeMillis changed",
        ),
        (
            "tensor.capnp",
            "step @4 :Int64 = 1;",
            "step @4 :Int64 = 2;",
            "field step changed",
        ),
        (
            "tensor.capnp",
            "  sub @1;\n  mul @2;",
            "  mul @1;\n  sub @2;",
            "enumerant @1 sub is now mul",
        ),
        (
            "tensor.capnp",
            "  take @14 () -> (data :TensorData);",
            "",
            "method take was removed",
        ),
        (
            "tensor.capnp",
            "interface TensorWorker extends(Actor) {",
            "interface TensorWorker {",
            "no longer extends",
        ),
    ];
    for (file, from, to, expected) in cases {
        let problems = broken(file, from, to);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "changing {from:?} to {to:?} should be reported as {expected:?}, got {problems:?}"
        );
    }
    // Additions are fine.
    let added = broken(
        "actor.capnp",
        "  callsInFlight @8 :UInt32;",
        "  callsInFlight @8 :UInt32;\n  extra @9 :Text;",
    );
    assert!(added.is_empty(), "{added:?}");
}

/// The nodes of one compiled schema, by id.
struct Nodes {
    message: capnp::message::Reader<capnp::serialize::OwnedSegments>,
}

impl Nodes {
    fn parse(request: &[u8]) -> Nodes {
        let message =
            capnp::serialize::read_message(&mut &request[..], Default::default()).unwrap();
        Nodes { message }
    }

    fn map(&self) -> HashMap<u64, node::Reader<'_>> {
        let req: code_generator_request::Reader<'_> = self.message.get_root().unwrap();
        req.get_nodes()
            .unwrap()
            .iter()
            .map(|n| (n.get_id(), n))
            .collect()
    }

    /// What `now` breaks of `self`, one line each.
    fn incompatibilities(&self, now: &Nodes) -> Vec<String> {
        let (old, now) = (self.map(), now.map());
        let mut problems = Vec::new();
        for (id, o) in &old {
            let name = o.get_display_name().unwrap().to_str().unwrap();
            let Some(n) = now.get(id) else {
                problems.push(format!("{name} (@{id:#x}) was removed"));
                continue;
            };
            let new_name = n.get_display_name().unwrap().to_str().unwrap();
            if name != new_name {
                problems.push(format!("{name} was renamed to {new_name}"));
            }
            compare_node(name, *o, *n, &mut problems);
        }
        problems.sort();
        problems
    }
}

fn compare_node(name: &str, old: node::Reader<'_>, now: node::Reader<'_>, out: &mut Vec<String>) {
    use node::Which as W;
    match (old.which().unwrap(), now.which().unwrap()) {
        (W::File(()), W::File(())) | (W::Annotation(_), W::Annotation(_)) => {}
        // Constants may change value (schemaVersion does); their type may not.
        (W::Const(o), W::Const(n)) => {
            if type_key(o.get_type().unwrap()) != type_key(n.get_type().unwrap()) {
                out.push(format!("{name}: type changed"));
            }
        }
        (W::Enum(o), W::Enum(n)) => {
            let now: Vec<_> = n.get_enumerants().unwrap().iter().collect();
            for (i, e) in o.get_enumerants().unwrap().iter().enumerate() {
                let en = e.get_name().unwrap().to_str().unwrap();
                match now.get(i) {
                    Some(m) if m.get_name().unwrap().to_str().unwrap() == en => {}
                    Some(m) => out.push(format!(
                        "{name}: enumerant @{i} {en} is now {}",
                        m.get_name().unwrap().to_str().unwrap()
                    )),
                    None => out.push(format!("{name}: enumerant {en} was removed")),
                }
            }
        }
        (W::Struct(o), W::Struct(n)) => {
            if n.get_data_word_count() < o.get_data_word_count()
                || n.get_pointer_count() < o.get_pointer_count()
            {
                out.push(format!("{name}: struct shrank"));
            }
            if o.get_is_group() != n.get_is_group() {
                out.push(format!("{name}: group-ness changed"));
            }
            let now: HashMap<String, field::Reader<'_>> = n
                .get_fields()
                .unwrap()
                .iter()
                .map(|f| (f.get_name().unwrap().to_string().unwrap(), f))
                .collect();
            for f in o.get_fields().unwrap() {
                let fname = f.get_name().unwrap().to_str().unwrap();
                match now.get(fname) {
                    None => out.push(format!("{name}: field {fname} was removed or renamed")),
                    Some(g) if field_key(f) != field_key(*g) => out.push(format!(
                        "{name}: field {fname} changed its ordinal, position, type or default"
                    )),
                    Some(_) => {}
                }
            }
        }
        (W::Interface(o), W::Interface(n)) => {
            let now: Vec<_> = n.get_methods().unwrap().iter().collect();
            for (i, m) in o.get_methods().unwrap().iter().enumerate() {
                let mname = m.get_name().unwrap().to_str().unwrap();
                match now.get(i) {
                    None => out.push(format!("{name}: method {mname} was removed")),
                    Some(k) => {
                        if k.get_name().unwrap().to_str().unwrap() != mname {
                            out.push(format!("{name}: method @{i} {mname} was renamed"));
                        }
                        if k.get_param_struct_type() != m.get_param_struct_type()
                            || k.get_result_struct_type() != m.get_result_struct_type()
                        {
                            out.push(format!("{name}: method {mname} changed its signature"));
                        }
                    }
                }
            }
            let bases: Vec<u64> = n
                .get_superclasses()
                .unwrap()
                .iter()
                .map(|s| s.get_id())
                .collect();
            for s in o.get_superclasses().unwrap() {
                if !bases.contains(&s.get_id()) {
                    out.push(format!("{name}: no longer extends @{:#x}", s.get_id()));
                }
            }
        }
        _ => out.push(format!("{name}: changed kind")),
    }
}

/// What a field's wire compatibility depends on.
fn field_key(f: field::Reader<'_>) -> String {
    let ordinal = match f.get_ordinal().which().unwrap() {
        field::ordinal::Implicit(()) => None,
        field::ordinal::Explicit(n) => Some(n),
    };
    let place = match f.which().unwrap() {
        field::Slot(s) => format!(
            "slot {} {} default {:?}",
            s.get_offset(),
            type_key(s.get_type().unwrap()),
            default_key(s)
        ),
        field::Group(g) => format!("group {:#x}", g.get_type_id()),
    };
    format!("{ordinal:?} {} {place}", f.get_discriminant_value())
}

fn default_key(s: field::slot::Reader<'_>) -> String {
    // The default's encoding: re-encode the value to compare it whole.
    let mut m = capnp::message::Builder::new_default();
    m.set_root(s.get_default_value().unwrap()).unwrap();
    format!("{:?}", capnp::serialize::write_message_to_words(&m))
}

fn type_key(t: type_::Reader<'_>) -> String {
    use type_::Which as T;
    match t.which().unwrap() {
        T::Struct(s) => format!("struct {:#x}", s.get_type_id()),
        T::Enum(e) => format!("enum {:#x}", e.get_type_id()),
        T::Interface(i) => format!("interface {:#x}", i.get_type_id()),
        T::List(l) => format!("list of {}", type_key(l.get_element_type().unwrap())),
        T::AnyPointer(_) => "anyPointer".into(),
        other => format!("{:?}", std::mem::discriminant(&other)),
    }
}
