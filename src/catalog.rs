//! The schemas compiled into this binary, as data: every interface with
//! its methods, and every method with its parameter and result fields.
//!
//! capnp-rust's generated code knows an interface only by its id; its
//! methods' names and fields are nowhere in it. So the compiled schema
//! nodes themselves (the `CodeGeneratorRequest` the schema compiler
//! produces, without its file list) are committed as `src/schema/nodes.bin`
//! beside the generated code, kept in step with `schema/` by
//! `tests/schema_drift.rs`, and embedded here. `capactor describe` reads
//! them to show what an actor's interfaces look like, and the metrics name
//! calls by them (`tensor.capnp:Tensor` / `unary`, not ids).
//!
//! Actors with schemas of their own add their nodes with
//! [`Catalog::extend`] (the same bytes: `capnp compile -o-` output, or
//! what `capnpc::CompilerCommand::raw_code_generator_request_path` writes).
//!
//! # Examples
//!
//! ```
//! use capactor::catalog::Catalog;
//! use capactor::schema::tensor_capnp::tensor;
//! use capnp::traits::HasTypeId;
//!
//! let tensor = Catalog::builtin().interface(tensor::Client::TYPE_ID).unwrap();
//! assert_eq!(tensor.name, "tensor.capnp:Tensor");
//! assert!(tensor.methods.iter().any(|m| m.name == "unary"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use capnp::schema_capnp::{code_generator_request, field, node, type_};

/// The compiled schema nodes of `schema/*.capnp` (see the module docs).
static BUILTIN_NODES: &[u8] = include_bytes!("schema/nodes.bin");

/// The id of `stream.capnp:StreamResult`, the result type of every
/// `-> stream` method.
const STREAM_RESULT: u64 = 0x995f_9a3377c0b16e;

/// Interfaces and the structs their methods take and return, by id.
///
/// # Examples
///
/// ```
/// let catalog = capactor::catalog::Catalog::builtin();
/// assert!(catalog.interfaces().any(|i| i.name == "actor.capnp:Actor"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    interfaces: HashMap<u64, InterfaceSchema>,
}

/// One interface: its name, what it extends and its methods.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InterfaceSchema {
    /// The 64-bit type id.
    pub id: u64,
    /// The schema's display name, file and path: `tensor.capnp:Tensor`.
    pub name: String,
    /// The doc comment written above it, if any.
    pub doc: String,
    /// The interfaces it extends directly, by display name.
    pub extends: Vec<String>,
    /// Its own methods (not the inherited ones), by ordinal.
    pub methods: Vec<MethodSchema>,
}

/// One method of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodSchema {
    /// Its ordinal: the method id calls carry.
    pub ordinal: u16,
    /// Its name as written in the schema (camelCase).
    pub name: String,
    /// The doc comment written above it, if any.
    pub doc: String,
    /// The parameter struct's name when it is a named struct rather than a
    /// parameter list.
    pub params_struct: Option<String>,
    /// The parameters.
    pub params: Vec<FieldSchema>,
    /// Whether it is declared `-> stream` (flow-controlled, no results).
    pub streaming: bool,
    /// The result struct's name when it is a named struct rather than a
    /// result list.
    pub results_struct: Option<String>,
    /// The results.
    pub results: Vec<FieldSchema>,
    /// The interfaces its parameters and results pass (a `Tensor`, a
    /// `List(Tensor)`), by type id: the capabilities it takes or hands out.
    pub mentions: Vec<u64>,
}

/// One field of a parameter or result struct.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldSchema {
    /// Its name.
    pub name: String,
    /// Its type in schema syntax: `UInt32`, `List(Float32)`, `Tensor`,
    /// `union { ... }` members show as fields of their own.
    pub ty: String,
}

impl Catalog {
    /// The schemas compiled into capactor itself: `Gate`, `Actor`, `Probe`,
    /// `Tensor`, `TensorWorker` and the rest of `schema/`.
    ///
    /// # Panics
    ///
    /// Never in a build whose `tests/schema_drift.rs` passes: the embedded
    /// nodes are checked there.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::schema::actor_capnp::actor;
    /// use capnp::traits::HasTypeId;
    ///
    /// let actor = capactor::catalog::Catalog::builtin().interface(actor::Client::TYPE_ID).unwrap();
    /// assert_eq!(actor.to_string().lines().last().unwrap().trim(), "info @1 () -> (info :ActorInfo);");
    /// ```
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let mut c = Catalog::default();
            c.extend(BUILTIN_NODES)
                .expect("src/schema/nodes.bin is a valid CodeGeneratorRequest");
            c
        })
    }

    /// Adds the interfaces of a serialized `CodeGeneratorRequest` (what
    /// `capnp compile -o-` writes), for actors with schemas of their own.
    ///
    /// # Errors
    ///
    /// Fails if the bytes are not a valid request.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut catalog = capactor::catalog::Catalog::builtin().clone();
    /// assert!(catalog.extend(b"not a schema").is_err());
    /// ```
    pub fn extend(&mut self, request: &[u8]) -> crate::Result<()> {
        let message =
            capnp::serialize::read_message(&mut &request[..], capnp::message::ReaderOptions::new())
                .map_err(|e| crate::Error::invalid(format!("not compiled schema nodes: {e}")))?;
        let request: code_generator_request::Reader<'_> = message.get_root()?;
        let nodes = request.get_nodes()?;
        let mut by_id: HashMap<u64, node::Reader<'_>> = HashMap::new();
        for n in nodes.iter() {
            by_id.insert(n.get_id(), n);
        }
        let mut docs: HashMap<u64, (String, Vec<String>)> = HashMap::new();
        for info in request.get_source_info()?.iter() {
            let members = info
                .get_members()?
                .iter()
                .map(|m| Ok(text(m.get_doc_comment())?.trim().to_owned()))
                .collect::<crate::Result<Vec<_>>>()?;
            let doc = text(info.get_doc_comment())?.trim().to_owned();
            docs.insert(info.get_id(), (doc, members));
        }
        let names = Names { nodes: &by_id };
        for n in nodes.iter() {
            let Ok(node::Which::Interface(iface)) = n.which() else {
                continue;
            };
            let (doc, member_docs) = docs.remove(&n.get_id()).unwrap_or_default();
            let extends = iface
                .get_superclasses()?
                .iter()
                .map(|s| names.display(s.get_id()))
                .collect();
            let mut methods = Vec::new();
            for (i, m) in iface.get_methods()?.iter().enumerate() {
                let (params_struct, params) = names.fields(m.get_param_struct_type())?;
                let streaming = m.get_result_struct_type() == STREAM_RESULT;
                let (results_struct, results) = if streaming {
                    (None, Vec::new())
                } else {
                    names.fields(m.get_result_struct_type())?
                };
                let mut mentions = Vec::new();
                names.mentions(m.get_param_struct_type(), &mut mentions)?;
                names.mentions(m.get_result_struct_type(), &mut mentions)?;
                methods.push(MethodSchema {
                    ordinal: u16::try_from(i).unwrap_or(u16::MAX),
                    name: text(m.get_name())?.to_owned(),
                    doc: member_docs.get(i).cloned().unwrap_or_default(),
                    params_struct,
                    params,
                    streaming,
                    results_struct,
                    results,
                    mentions,
                });
            }
            self.interfaces.insert(
                n.get_id(),
                InterfaceSchema {
                    id: n.get_id(),
                    name: text(n.get_display_name())?.to_owned(),
                    doc,
                    extends,
                    methods,
                },
            );
        }
        Ok(())
    }

    /// The interface with type id `id`, if its schema is known.
    pub fn interface(&self, id: u64) -> Option<&InterfaceSchema> {
        self.interfaces.get(&id)
    }

    /// Method `ordinal` of interface `id`, if known.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::schema::actor_capnp::actor;
    /// use capnp::traits::HasTypeId;
    ///
    /// let ping = capactor::catalog::Catalog::builtin().method(actor::Client::TYPE_ID, 0).unwrap();
    /// assert_eq!((ping.name.as_str(), ping.params.len()), ("ping", 0));
    /// ```
    pub fn method(&self, id: u64, ordinal: u16) -> Option<&MethodSchema> {
        self.interface(id)?.methods.get(usize::from(ordinal))
    }

    /// The interfaces `roots` pass in their methods' parameters and
    /// results, and those these pass, and so on, excluding `roots`: what a
    /// client of `roots` can come to hold. In the order first met.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::catalog::Catalog;
    /// use capactor::schema::tensor_capnp::{tensor, tensor_worker};
    /// use capnp::traits::HasTypeId;
    ///
    /// let reached = Catalog::builtin().reachable(&[tensor_worker::Client::TYPE_ID]);
    /// assert!(reached.iter().any(|i| i.id == tensor::Client::TYPE_ID));
    /// ```
    pub fn reachable(&self, roots: &[u64]) -> Vec<&InterfaceSchema> {
        let mut seen: Vec<u64> = roots.to_vec();
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<u64> = roots.iter().copied().collect();
        while let Some(id) = queue.pop_front() {
            let Some(iface) = self.interface(id) else {
                continue;
            };
            for m in &iface.methods {
                for &next in &m.mentions {
                    if !seen.contains(&next) {
                        seen.push(next);
                        queue.push_back(next);
                        if let Some(found) = self.interface(next) {
                            out.push(found);
                        }
                    }
                }
            }
        }
        out
    }

    /// Every known interface, in no particular order.
    pub fn interfaces(&self) -> impl Iterator<Item = &InterfaceSchema> {
        self.interfaces.values()
    }
}

/// A doc comment's first sentence (of its first paragraph), on one line.
fn summary(doc: &str) -> Option<String> {
    let paragraph: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    if paragraph.is_empty() {
        return None;
    }
    let joined = paragraph.join(" ");
    Some(match joined.find(". ") {
        Some(end) => joined[..=end].to_owned(),
        None => joined,
    })
}

fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> crate::Result<&str> {
    Ok(t?.to_str()?)
}

/// Renders ids as names, and structs as field lists.
struct Names<'n, 'a> {
    nodes: &'n HashMap<u64, node::Reader<'a>>,
}

impl Names<'_, '_> {
    /// The display name of node `id` (`tensor.capnp:Tensor`), or its id.
    fn display(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .and_then(|n| n.get_display_name().ok()?.to_str().ok().map(str::to_owned))
            .unwrap_or_else(|| format!("{id:#018x}"))
    }

    /// Node `id`'s name within its file (`Tensor.DType`), or its id.
    fn short(&self, id: u64) -> String {
        let full = self.display(id);
        match full.split_once(':') {
            Some((_, path)) => path.to_owned(),
            None => full,
        }
    }

    /// A method's parameter or result struct: its name if it is a named
    /// struct (not an implicit `$Params` / `$Results` list), and its fields.
    fn fields(&self, id: u64) -> crate::Result<(Option<String>, Vec<FieldSchema>)> {
        let Some(n) = self.nodes.get(&id) else {
            return Ok((Some(format!("{id:#018x}")), Vec::new()));
        };
        let name = text(n.get_display_name())?;
        let implicit = name.ends_with("$Params") || name.ends_with("$Results");
        let named = (!implicit).then(|| self.short(id));
        Ok((named, self.struct_fields(*n)?))
    }

    fn struct_fields(&self, n: node::Reader<'_>) -> crate::Result<Vec<FieldSchema>> {
        let Ok(node::Which::Struct(s)) = n.which() else {
            return Ok(Vec::new());
        };
        let mut fields: Vec<_> = s.get_fields()?.iter().collect();
        fields.sort_by_key(|f| f.get_code_order());
        fields
            .into_iter()
            .map(|f| {
                let ty = match f.which() {
                    Ok(field::Slot(slot)) => self.ty(slot.get_type()?)?,
                    Ok(field::Group(g)) => match self.nodes.get(&g.get_type_id()) {
                        Some(group) => {
                            let inner = self.struct_fields(*group)?;
                            let parts: Vec<String> = inner
                                .iter()
                                .map(|f| format!("{} :{}", f.name, f.ty))
                                .collect();
                            format!("group {{ {} }}", parts.join(", "))
                        }
                        None => "group".to_owned(),
                    },
                    Err(_) => "unknown".to_owned(),
                };
                let union = f.get_discriminant_value() != field::NO_DISCRIMINANT;
                Ok(FieldSchema {
                    name: text(f.get_name())?.to_owned(),
                    ty: if union { format!("{ty} (union)") } else { ty },
                })
            })
            .collect()
    }

    /// Adds the interfaces the fields of struct `id` (and its groups) pass.
    fn mentions(&self, id: u64, out: &mut Vec<u64>) -> crate::Result<()> {
        let Some(Ok(node::Which::Struct(s))) = self.nodes.get(&id).map(|n| n.which()) else {
            return Ok(());
        };
        for f in s.get_fields()?.iter() {
            match f.which() {
                Ok(field::Slot(slot)) => {
                    let mut t = slot.get_type()?;
                    while let Ok(type_::List(l)) = t.which() {
                        t = l.get_element_type()?;
                    }
                    if let Ok(type_::Interface(i)) = t.which() {
                        if !out.contains(&i.get_type_id()) {
                            out.push(i.get_type_id());
                        }
                    }
                }
                Ok(field::Group(g)) => self.mentions(g.get_type_id(), out)?,
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn ty(&self, t: type_::Reader<'_>) -> crate::Result<String> {
        use type_::Which as T;
        Ok(match t.which() {
            Ok(T::Void(())) => "Void".into(),
            Ok(T::Bool(())) => "Bool".into(),
            Ok(T::Int8(())) => "Int8".into(),
            Ok(T::Int16(())) => "Int16".into(),
            Ok(T::Int32(())) => "Int32".into(),
            Ok(T::Int64(())) => "Int64".into(),
            Ok(T::Uint8(())) => "UInt8".into(),
            Ok(T::Uint16(())) => "UInt16".into(),
            Ok(T::Uint32(())) => "UInt32".into(),
            Ok(T::Uint64(())) => "UInt64".into(),
            Ok(T::Float32(())) => "Float32".into(),
            Ok(T::Float64(())) => "Float64".into(),
            Ok(T::Text(())) => "Text".into(),
            Ok(T::Data(())) => "Data".into(),
            Ok(T::List(l)) => format!("List({})", self.ty(l.get_element_type()?)?),
            Ok(T::Enum(e)) => self.short(e.get_type_id()),
            Ok(T::Struct(s)) => self.short(s.get_type_id()),
            Ok(T::Interface(i)) => self.short(i.get_type_id()),
            Ok(T::AnyPointer(_)) => "AnyPointer".into(),
            Err(_) => "unknown".into(),
        })
    }
}

impl fmt::Display for InterfaceSchema {
    /// Schema syntax, one method a line, with each method's doc comment's
    /// first line:
    ///
    /// ```text
    /// interface tensor.capnp:Tensor (0x…) extends actor.capnp:Actor
    ///   # The tensor's shape and dtype.
    ///   meta @0 () -> (shape :List(UInt32), dtype :DType);
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interface {} ({:#018x})", self.name, self.id)?;
        if !self.extends.is_empty() {
            write!(f, " extends {}", self.extends.join(", "))?;
        }
        if let Some(line) = summary(&self.doc) {
            write!(f, "\n  # {line}")?;
        }
        for m in &self.methods {
            write!(f, "\n  {m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MethodSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(named: &Option<String>, fields: &[FieldSchema]) -> String {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{} :{}", f.name, f.ty))
                .collect();
            match named {
                Some(name) => format!("{name} ({})", inner.join(", ")),
                None => format!("({})", inner.join(", ")),
            }
        }
        if let Some(line) = summary(&self.doc) {
            write!(f, "# {line}\n  ")?;
        }
        let results = if self.streaming {
            "stream".to_owned()
        } else {
            list(&self.results_struct, &self.results)
        };
        write!(
            f,
            "{} @{} {} -> {};",
            self.name,
            self.ordinal,
            list(&self.params_struct, &self.params),
            results
        )
    }
}
