//! The conformance case interpreter for the Rust runner: a plain capnp-rpc
//! two-party client (not capactor's own client), which reads the case files
//! and drives calls through capnp's dynamic structs, so a case added to the
//! data files runs here unchanged. capnp-rust has no reflection for
//! interfaces, so the methods are listed once in `methods.rs` (a method
//! added to the schema needs one line there); everything else, arguments and
//! results included, goes by the schema.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use capnp::any_pointer;
use capnp::capability::{Client, Promise, Response};
use capnp::dynamic_struct;
use capnp::dynamic_value;
use capnp::introspect::{Type, TypeVariant};
use capnp::private::layout::ElementSize;
use capnp::schema::{EnumSchema, StructSchema};
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use futures::AsyncReadExt;

use capactor::schema::actor_capnp;

use super::json::Json;
use super::methods::{lookup, type_id};
use super::values::{
    as_f64, as_int, e, elem_size, enum_value, hex, kind_name, pack, path_value, results_reader,
    size_of, slot_offset, RawB, RawR,
};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_FOR: Duration = Duration::from_secs(10);
const BAD_TOKEN: &[u8] = b"not-the-token";

/// Where the cases run, and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub address: String,
    pub token: Vec<u8>,
    pub peer: Option<String>,
    pub peer_token: Option<Vec<u8>>,
    pub filter: Option<String>,
}

/// A call a case sent: its answer, awaited at most once.
struct Call {
    promise: Option<Promise<Response<any_pointer::Owned>, capnp::Error>>,
    response: Option<Response<any_pointer::Owned>>,
    results: StructSchema,
}

struct Conn {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(addr: &str) -> Result<(Client, Conn), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(e)?;
    stream.set_nodelay(true).map_err(e)?;
    let (r, w) = tokio_util::compat::TokioAsyncReadCompatExt::compat(stream).split();
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(r),
        futures::io::BufWriter::new(w),
        Side::Client,
        Default::default(),
    );
    let mut rpc = RpcSystem::new(Box::new(network), None);
    let gate: Client = rpc.bootstrap(Side::Server);
    let task = tokio::task::spawn_local(async move {
        let _ = rpc.await;
    });
    Ok((gate, Conn { task }))
}

struct Case<'o> {
    opts: &'o Options,
    caps: HashMap<String, Client>,
    bound_by: HashMap<String, (usize, String)>,
    later: HashMap<String, futures::channel::oneshot::Sender<Client>>,
    calls: Vec<Option<Call>>,
    values: HashMap<String, f64>,
    gate: String,
}

impl Case<'_> {
    async fn step(&mut self, s: &Json) -> Result<(), String> {
        if let Some(names) = s.get("release") {
            for n in names.items() {
                let n = n.str().unwrap_or_default();
                self.caps.remove(n);
                if let Some((i, _)) = self.bound_by.remove(n) {
                    self.calls[i] = None;
                }
            }
            return Ok(());
        }
        if let Some(name) = s.get("bind").and_then(Json::str) {
            let (tx, rx) = futures::channel::oneshot::channel::<Client>();
            let promised: Client = capnp_rpc::new_future_client(async move {
                rx.await
                    .map_err(|_| capnp::Error::failed("never bound".into()))
            });
            self.caps.insert(name.into(), promised);
            self.later.insert(name.into(), tx);
            return Ok(());
        }
        let full = s
            .get("call")
            .and_then(Json::str)
            .ok_or("a step is a call")?;
        let m = lookup(full).ok_or_else(|| format!("unknown method {full}"))?;
        self.gate = s
            .get("on")
            .and_then(Json::str)
            .unwrap_or_default()
            .to_string();
        let target = self.cap(&self.gate.clone())?;
        let empty = Json::Object(Default::default());
        let args = s.get("args").unwrap_or(&empty);
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let mut req =
                target.new_call::<any_pointer::Owned, any_pointer::Owned>(m.iface, m.ordinal, None);
            self.fill_params(req.get(), m.params, args).await?;
            let sent = req.send();
            let index = self.calls.len();
            self.bind(s, &sent.pipeline, m.results, index)?;
            let Some(expect) = s.get("expect") else {
                self.calls.push(Some(Call {
                    promise: Some(sent.promise),
                    response: None,
                    results: m.results,
                }));
                return Ok(());
            };
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, sent.promise).await {
                Ok(r) => r,
                Err(_) => return Err(format!("{full}: no answer within {CALL_TIMEOUT:?}")),
            };
            let problem = match &outcome {
                Ok(r) => self.check(expect, Some(r), None, m.results),
                Err(err) => self.check(expect, None, Some(err), m.results),
            };
            match problem {
                Ok(()) => {
                    if let (Some(Json::Object(vals)), Ok(r)) = (s.get("as_value"), &outcome) {
                        let rd = results_reader(r, m.results).map_err(e)?;
                        for (k, path) in vals {
                            let v = path_value(rd, path.str().unwrap_or_default())?;
                            self.values.insert(k.clone(), v);
                        }
                    }
                    self.calls.push(Some(Call {
                        promise: None,
                        response: outcome.ok(),
                        results: m.results,
                    }));
                    return Ok(());
                }
                Err(p) if !s.truthy("retry") || Instant::now() > deadline => {
                    return Err(format!("{full}: {p}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn cap(&self, name: &str) -> Result<Client, String> {
        self.caps
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no capability named {name}"))
    }

    async fn settled(&mut self, name: &str) -> Result<Client, String> {
        let Some((i, field)) = self.bound_by.get(name).cloned() else {
            return self.cap(name);
        };
        let call = self.calls[i].as_mut().ok_or("released")?;
        if let Some(p) = call.promise.take() {
            let r = tokio::time::timeout(CALL_TIMEOUT, p)
                .await
                .map_err(e)?
                .map_err(e)?;
            call.response = Some(r);
        }
        let r = call.response.as_ref().ok_or("the call failed")?;
        let rd = results_reader(r, call.results).map_err(e)?;
        let f = call.results.get_field_by_name(&field).map_err(e)?;
        let RawR(p) = r.get().map_err(e)?.get_as::<RawR<'_>>().map_err(e)?;
        let _ = rd;
        let hook = p
            .get_struct(None)
            .map_err(e)?
            .get_pointer_field(slot_offset(f)? as usize)
            .get_capability()
            .map_err(e)?;
        Ok(Client::new(hook))
    }

    fn bind(
        &mut self,
        s: &Json,
        pipeline: &any_pointer::Pipeline,
        results: StructSchema,
        index: usize,
    ) -> Result<(), String> {
        let Some(Json::Object(names)) = s.get("as") else {
            return Ok(());
        };
        for (name, field) in names {
            let f = results
                .get_field_by_name(field.str().unwrap_or_default())
                .map_err(e)?;
            let got = Client::new(pipeline.get_pointer_field(slot_offset(f)?).as_cap());
            if let Some(tx) = self.later.remove(name) {
                let _ = tx.send(got.clone());
            } else if self.caps.contains_key(name) && !s.truthy("retry") {
                return Err(format!("the name {name} is bound twice"));
            }
            self.caps.insert(name.clone(), got);
            self.bound_by.insert(
                name.clone(),
                (index, field.str().unwrap_or_default().into()),
            );
        }
        Ok(())
    }

    fn token(&self, which: &Json) -> Vec<u8> {
        if which.str() != Some("good") {
            return BAD_TOKEN.to_vec();
        }
        match (&self.opts.peer_token, self.gate.as_str()) {
            (Some(t), "gate2") => t.clone(),
            _ => self.opts.token.clone(),
        }
    }

    async fn reference(&mut self, v: &Json) -> Result<Client, String> {
        let name = v
            .get("$ref")
            .and_then(Json::str)
            .ok_or("a capability is {\"$ref\": name}")?;
        if v.truthy("settled") {
            self.settled(name).await
        } else {
            self.cap(name)
        }
    }

    // ---- arguments ----

    async fn fill_params(
        &mut self,
        params: any_pointer::Builder<'_>,
        schema: StructSchema,
        args: &Json,
    ) -> Result<(), String> {
        let RawB(pb) = params.init_as::<RawB<'_>>();
        let mut sb = pb.init_struct(size_of(schema)?);
        let Json::Object(fields) = args else {
            return Err("args must be an object".into());
        };
        // Capabilities by hand, the rest through the dynamic API.
        for (k, v) in fields {
            let f = schema.get_field_by_name(k).map_err(e)?;
            match f.get_type().which() {
                TypeVariant::Capability => {
                    let c = self.reference(v).await?;
                    sb.reborrow()
                        .get_pointer_field(slot_offset(f)? as usize)
                        .set_capability(c.hook);
                }
                TypeVariant::List(et) if matches!(et.which(), TypeVariant::Capability) => {
                    let mut list = sb
                        .reborrow()
                        .get_pointer_field(slot_offset(f)? as usize)
                        .init_list(ElementSize::Pointer, v.items().len() as u32);
                    for (i, item) in v.items().iter().enumerate() {
                        let c = self.reference(item).await?;
                        list.reborrow()
                            .get_pointer_element(i as u32)
                            .set_capability(c.hook);
                    }
                }
                _ => {}
            }
        }
        self.fill(dynamic_struct::Builder::new(sb, schema), args)
    }

    fn fill(&self, mut b: dynamic_struct::Builder<'_>, j: &Json) -> Result<(), String> {
        if let (Some(dt), Some(vals)) = (j.get("dtype").and_then(Json::str), j.get("values")) {
            let schema = b.get_schema();
            let f = schema.get_field_by_name("dtype").map_err(e)?;
            let TypeVariant::Enum(raw) = f.get_type().which() else {
                return Err("dtype is not an enum".into());
            };
            b.set(
                f,
                dynamic_value::Reader::Enum(enum_value(
                    EnumSchema::new(raw),
                    &Json::Str(dt.into()),
                )?),
            )
            .map_err(e)?;
            let shape = j.get("shape").map(Json::items).unwrap_or_default();
            let dynamic_value::Builder::List(mut l) = b
                .reborrow()
                .initn_named("shape", shape.len() as u32)
                .map_err(e)?
            else {
                return Err("shape is not a list".into());
            };
            for (i, d) in shape.iter().enumerate() {
                l.set(
                    i as u32,
                    dynamic_value::Reader::UInt64(d.as_i128().unwrap_or(0) as u64),
                )
                .map_err(e)?;
            }
            let data = pack(dt, vals.items())?;
            b.set_named("data", dynamic_value::Reader::Data(&data))
                .map_err(e)?;
            return Ok(());
        }
        let Json::Object(fields) = j else {
            return Err("a struct is written as an object".into());
        };
        for (k, v) in fields {
            let schema = b.get_schema();
            let f = schema.get_field_by_name(k).map_err(e)?;
            let ty = f.get_type();
            match ty.which() {
                TypeVariant::Capability => {}
                TypeVariant::List(et) if matches!(et.which(), TypeVariant::Capability) => {}
                TypeVariant::Struct(_) => {
                    let dynamic_value::Builder::Struct(sb) = b.reborrow().init(f).map_err(e)?
                    else {
                        return Err(format!("{k} is not a struct"));
                    };
                    self.fill(sb, v)?;
                }
                TypeVariant::List(et) => {
                    let items = v.items();
                    let dynamic_value::Builder::List(mut l) =
                        b.reborrow().initn(f, items.len() as u32).map_err(e)?
                    else {
                        return Err(format!("{k} is not a list"));
                    };
                    for (i, item) in items.iter().enumerate() {
                        if let TypeVariant::Struct(_) = et.which() {
                            let dynamic_value::Builder::Struct(sb) =
                                l.reborrow().get(i as u32).map_err(e)?
                            else {
                                return Err(format!("{k}[{i}] is not a struct"));
                            };
                            self.fill(sb, item)?;
                        } else {
                            self.with_scalar(et, item, |r| l.set(i as u32, r).map_err(e))?;
                        }
                    }
                }
                _ => self.with_scalar(ty, v, |r| b.set(f, r).map_err(e))?,
            }
        }
        Ok(())
    }

    fn with_scalar<R>(
        &self,
        ty: Type,
        v: &Json,
        f: impl FnOnce(dynamic_value::Reader<'_>) -> Result<R, String>,
    ) -> Result<R, String> {
        use dynamic_value::Reader as D;
        let num = || v.as_f64().ok_or_else(|| format!("not a number: {v:?}"));
        let int = || v.as_i128().ok_or_else(|| format!("not an integer: {v:?}"));
        match ty.which() {
            TypeVariant::Bool => f(D::Bool(matches!(v, Json::Bool(true)))),
            TypeVariant::Int8 => f(D::Int8(int()? as i8)),
            TypeVariant::Int16 => f(D::Int16(int()? as i16)),
            TypeVariant::Int32 => f(D::Int32(int()? as i32)),
            TypeVariant::Int64 => f(D::Int64(int()? as i64)),
            TypeVariant::UInt8 => f(D::UInt8(int()? as u8)),
            TypeVariant::UInt16 => f(D::UInt16(int()? as u16)),
            TypeVariant::UInt32 => f(D::UInt32(int()? as u32)),
            TypeVariant::UInt64 => f(D::UInt64(int()? as u64)),
            TypeVariant::Float32 => f(D::Float32(num()? as f32)),
            TypeVariant::Float64 => f(D::Float64(num()?)),
            TypeVariant::Text => f(D::Text(v.str().unwrap_or_default().into())),
            TypeVariant::Data => {
                let bytes = if let Some(h) = v.get("$hex").and_then(Json::str) {
                    hex(h)?
                } else if let Some(t) = v.get("$token") {
                    self.token(t)
                } else {
                    return Err("Data is {\"$hex\": ...} or {\"$token\": ...}".into());
                };
                f(D::Data(&bytes))
            }
            TypeVariant::Enum(raw) => f(D::Enum(enum_value(EnumSchema::new(raw), v)?)),
            _ => Err("unsupported argument type".into()),
        }
    }

    // ---- expectations ----

    fn check(
        &self,
        expect: &Json,
        r: Option<&Response<any_pointer::Owned>>,
        err: Option<&capnp::Error>,
        results: StructSchema,
    ) -> Result<(), String> {
        if let Some(want) = expect.get("error") {
            let kind = want.get("kind").and_then(Json::str).unwrap_or_default();
            let Some(err) = err else {
                return Err(format!("succeeded, expected a {kind} error"));
            };
            let mut msg = err.extra.as_str();
            while let Some(rest) = msg.strip_prefix("remote exception: ") {
                msg = rest;
            }
            if kind_name(err.kind) != kind {
                return Err(format!(
                    "error kind {} ({msg}), expected {kind}",
                    kind_name(err.kind)
                ));
            }
            if let Some(p) = want.get("prefix").and_then(Json::str) {
                if !msg.starts_with(p) {
                    return Err(format!("error {msg:?} does not start with {p:?}"));
                }
            }
            if let Some(c) = want.get("contains").and_then(Json::str) {
                if !msg.contains(c) {
                    return Err(format!("error {msg:?} does not contain {c:?}"));
                }
            }
            return Ok(());
        }
        if let Some(err) = err {
            return Err(format!("failed: {} {}", kind_name(err.kind), err.extra));
        }
        if let (Some(want), Some(r)) = (expect.get("results"), r) {
            let rd = results_reader(r, results).map_err(e)?;
            return self.matches(want, dynamic_value::Reader::Struct(rd), "results");
        }
        Ok(())
    }

    fn matches(
        &self,
        want: &Json,
        got: dynamic_value::Reader<'_>,
        path: &str,
    ) -> Result<(), String> {
        use dynamic_value::Reader as D;
        let bad = |what: String| Err(format!("{path}: {what}"));
        match want {
            Json::Object(m) => {
                if m.contains_key("$schemaVersion") {
                    return if as_int(&got) == Some(actor_capnp::SCHEMA_VERSION as i128) {
                        Ok(())
                    } else {
                        bad("not the schema's version".into())
                    };
                }
                if let Some(name) = m.get("$typeId").and_then(Json::str) {
                    return if as_int(&got) == type_id(name).map(i128::from) {
                        Ok(())
                    } else {
                        bad(format!("not the type id of {name}"))
                    };
                }
                if m.contains_key("$nonEmpty") {
                    return match got {
                        D::Text(t) if !t.as_bytes().is_empty() => Ok(()),
                        _ => bad("empty".into()),
                    };
                }
                let num = as_f64(&got).unwrap_or(f64::NAN);
                if let Some(n) = m.get("$atLeast").and_then(Json::as_f64) {
                    return if num >= n {
                        Ok(())
                    } else {
                        bad(format!("{num} < {n}"))
                    };
                }
                if let Some(k) = m.get("$above").and_then(Json::str) {
                    let v = self.values.get(k).copied().unwrap_or(f64::NAN);
                    return if num > v {
                        Ok(())
                    } else {
                        bad(format!("{num} not above {v}"))
                    };
                }
                if let Some(k) = m.get("$atMost").and_then(Json::str) {
                    let v = self.values.get(k).copied().unwrap_or(f64::NAN);
                    return if num <= v {
                        Ok(())
                    } else {
                        bad(format!("{num} above {v}"))
                    };
                }
                if let Some(k) = m.get("$equals").and_then(Json::str) {
                    let v = self.values.get(k).copied().unwrap_or(f64::NAN);
                    return if num == v {
                        Ok(())
                    } else {
                        bad(format!("{num} != {v}"))
                    };
                }
                let D::Struct(s) = got else {
                    return bad("not a struct".into());
                };
                if m.contains_key("values") {
                    return self.matches_tensor(want, s, path);
                }
                for (k, w) in m {
                    self.matches(w, s.get_named(k).map_err(e)?, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            Json::Array(items) => {
                let D::List(l) = got else {
                    return bad("not a list".into());
                };
                if l.len() as usize != items.len() {
                    return bad(format!("{} elements, expected {}", l.len(), items.len()));
                }
                for (i, w) in items.iter().enumerate() {
                    self.matches(w, l.get(i as u32).map_err(e)?, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            Json::Str(w) => {
                let g = match got {
                    D::Enum(en) => match en.get_enumerant().map_err(e)? {
                        Some(x) => x
                            .get_proto()
                            .get_name()
                            .map_err(e)?
                            .to_string()
                            .map_err(e)?,
                        None => format!("#{}", en.get_value()),
                    },
                    D::Text(t) => t.to_string().map_err(e)?,
                    _ => return bad("not text or an enum".into()),
                };
                if &g == w {
                    Ok(())
                } else {
                    bad(format!("{g:?} != {w:?}"))
                }
            }
            Json::Bool(w) => match got {
                D::Bool(g) if g == *w => Ok(()),
                _ => bad(format!("expected {w}")),
            },
            Json::Int(w) => {
                if as_int(&got) == Some(*w) || as_f64(&got) == Some(*w as f64) {
                    Ok(())
                } else {
                    bad(format!("expected {w}"))
                }
            }
            Json::Float(w) => {
                if as_f64(&got) == Some(*w) {
                    Ok(())
                } else {
                    bad(format!("expected {w}"))
                }
            }
            Json::Null => Ok(()),
        }
    }

    fn matches_tensor(
        &self,
        want: &Json,
        s: dynamic_struct::Reader<'_>,
        path: &str,
    ) -> Result<(), String> {
        let dt = want.get("dtype").and_then(Json::str).unwrap_or_default();
        self.matches(
            want.get("dtype").unwrap_or(&Json::Null),
            s.get_named("dtype").map_err(e)?,
            &format!("{path}.dtype"),
        )?;
        self.matches(
            want.get("shape").unwrap_or(&Json::Null),
            s.get_named("shape").map_err(e)?,
            &format!("{path}.shape"),
        )?;
        let dynamic_value::Reader::Data(data) = s.get_named("data").map_err(e)? else {
            return Err(format!("{path}.data is not Data"));
        };
        let vals = want.get("values").map(Json::items).unwrap_or_default();
        let size = elem_size(dt)?;
        if data.len() != vals.len() * size {
            return Err(format!(
                "{path}: {} bytes of data for {} values",
                data.len(),
                vals.len()
            ));
        }
        let tol = want.get("tol").and_then(Json::as_f64).unwrap_or(0.0);
        for (i, (w, g)) in vals.iter().zip(data.chunks(size)).enumerate() {
            let ok = match dt {
                "f32" | "f64" | "f16" | "bf16" => {
                    let g = match dt {
                        "f32" => f32::from_le_bytes(g.try_into().unwrap()) as f64,
                        "f16" => half::f16::from_le_bytes(g.try_into().unwrap()).to_f64(),
                        "bf16" => half::bf16::from_le_bytes(g.try_into().unwrap()).to_f64(),
                        _ => f64::from_le_bytes(g.try_into().unwrap()),
                    };
                    let w = w.as_f64().unwrap_or(f64::NAN);
                    if w.is_nan() {
                        g.is_nan()
                    } else if tol > 0.0 {
                        (g - w).abs() <= tol * w.abs().max(1.0)
                    } else {
                        g == w
                    }
                }
                "i32" => Some(i32::from_le_bytes(g.try_into().unwrap()) as i128) == w.as_i128(),
                "i64" => Some(i64::from_le_bytes(g.try_into().unwrap()) as i128) == w.as_i128(),
                "u8" | "u16" | "u32" | "u64" => {
                    let mut b = [0u8; 16];
                    b[..g.len()].copy_from_slice(g);
                    Some(i128::from_le_bytes(b)) == w.as_i128()
                }
                "i8" | "i16" => {
                    let mut b = [if g[g.len() - 1] & 0x80 != 0 { 0xff } else { 0 }; 16];
                    b[..g.len()].copy_from_slice(g);
                    Some(i128::from_le_bytes(b)) == w.as_i128()
                }
                _ => (g[0] != 0) == matches!(w, Json::Bool(true)),
            };
            if !ok {
                return Err(format!("{path}.values[{i}]: {g:?} != {w:?}"));
            }
        }
        Ok(())
    }
}

/// The outcome of one case file's worth of cases, or all of them.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: Vec<String>,
}

/// Runs every case in `dir` against the worker(s) in `opts`, printing a
/// line per failure and `N passed, M failed`.
pub async fn run_all(opts: &Options, dir: &std::path::Path) -> Summary {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the cases directory")
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut summary = Summary::default();
    for file in files {
        let doc = super::json::parse(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        for c in doc.get("cases").map(Json::items).unwrap_or_default() {
            let name = format!(
                "{stem}: {}",
                c.get("name").and_then(Json::str).unwrap_or_default()
            );
            if opts
                .filter
                .as_ref()
                .is_some_and(|f| !name.contains(f.as_str()))
            {
                continue;
            }
            match run_case(opts, c).await {
                Ok(()) => summary.passed += 1,
                Err(why) => {
                    println!("FAILED {name}: {why}");
                    summary.failed.push(name);
                }
            }
        }
    }
    println!("{} passed, {} failed", summary.passed, summary.failed.len());
    summary
}

async fn run_case(opts: &Options, c: &Json) -> Result<(), String> {
    let (g1, _c1) = connect(&opts.address).await?;
    let (g2, _c2) = connect(opts.peer.as_deref().unwrap_or(&opts.address)).await?;
    let mut case = Case {
        opts,
        caps: HashMap::from([("gate".to_string(), g1), ("gate2".to_string(), g2)]),
        bound_by: HashMap::new(),
        later: HashMap::new(),
        calls: Vec::new(),
        values: HashMap::new(),
        gate: String::new(),
    };
    for (i, s) in c
        .get("steps")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        case.step(s)
            .await
            .map_err(|why| format!("step {i}: {why}"))?;
    }
    Ok(())
}
