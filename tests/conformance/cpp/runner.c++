// The conformance cases, run by a client built with the reference Cap'n Proto
// library (libcapnp, C++). It uses only the code `capnp compile -oc++`
// generates from schema/ and the case files, through capnp's dynamic API, so
// a case added to the data files runs here without changing this file.
//
//   conformance-runner --address 127.0.0.1:7001 --token-file worker.token \
//       [--peer ADDR --peer-token-file FILE] [--cases DIR] [--filter S] [--verbose]
//
// Prints `N passed, M failed` and exits 1 if any case failed. Built by
// tests/conformance/cpp/build.sh; the case format: tests/conformance/README.md.

#include <capnp/dynamic.h>
#include <capnp/ez-rpc.h>
#include <capnp/schema.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/timer.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>
#include <algorithm>

#include "actor.capnp.h"
#include "tensor.capnp.h"

using json = nlohmann::json;
using capnp::DynamicCapability;
using capnp::DynamicList;
using capnp::DynamicStruct;
using capnp::DynamicValue;
using Response = capnp::Response<DynamicStruct>;

namespace {

const kj::Duration CALL_TIMEOUT = 30 * kj::SECONDS;
const kj::Duration RETRY_FOR = 10 * kj::SECONDS;
const char BAD_TOKEN[] = "not-the-token";

struct CaseFailed {
  std::string why;
};

[[noreturn]] void fail(const std::string& why) { throw CaseFailed{why}; }

capnp::InterfaceSchema interfaceNamed(const std::string& name) {
  if (name == "Gate") return capnp::Schema::from<Gate>();
  if (name == "Actor") return capnp::Schema::from<Actor>();
  if (name == "TensorWorker") return capnp::Schema::from<TensorWorker>();
  if (name == "Tensor") return capnp::Schema::from<Tensor>();
  fail("unknown interface " + name);
}

std::string readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string trim(std::string s) {
  auto ws = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && ws(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && ws(s[i])) i++;
  return s.substr(i);
}

double number(const json& v) {
  if (v.is_string()) {
    auto s = v.get<std::string>();
    if (s == "nan") return NAN;
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    fail("not a number: " + s);
  }
  return v.get<double>();
}

size_t elemSize(const std::string& dtype) {
  if (dtype == "f32" || dtype == "i32" || dtype == "u32") return 4;
  if (dtype == "f64" || dtype == "i64" || dtype == "u64") return 8;
  if (dtype == "f16" || dtype == "bf16" || dtype == "i16" || dtype == "u16") return 2;
  if (dtype == "bool" || dtype == "u8" || dtype == "i8") return 1;
  fail("unknown dtype " + dtype);
}

// IEEE half <-> float, for the values the cases hold (round to nearest even).
float halfToFloat(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float f;
  if (exp == 0) f = std::ldexp((float)man, -24);
  else if (exp == 31) f = man ? NAN : INFINITY;
  else f = std::ldexp((float)(man | 0x400), (int)exp - 25);
  uint32_t bits;
  memcpy(&bits, &f, 4);
  bits |= sign;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t floatToHalf(double v) {
  uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  double a = std::fabs(v);
  if (std::isnan(v)) return 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;
  if (a < std::ldexp(1.0, -14)) return sign | (uint16_t)std::nearbyint(a * std::ldexp(1.0, 24));
  int e;
  double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  uint32_t man = (uint32_t)std::nearbyint(m * 2048.0);  // 11 bits with the implicit one
  if (man == 2048) { man = 1024; e += 1; }
  return sign | (uint16_t)(((e + 14) << 10) | (man - 1024));
}

std::string pack(const std::string& dtype, const json& values) {
  std::string out;
  for (auto& v : values) {
    char buf[8];
    if (dtype == "f32") { float x = number(v); memcpy(buf, &x, 4); }
    else if (dtype == "f64") { double x = number(v); memcpy(buf, &x, 8); }
    else if (dtype == "i32") { int32_t x = v.get<int32_t>(); memcpy(buf, &x, 4); }
    else if (dtype == "i64") { int64_t x = v.get<int64_t>(); memcpy(buf, &x, 8); }
    else if (dtype == "u64") { uint64_t x = v.get<uint64_t>(); memcpy(buf, &x, 8); }
    else if (dtype == "u8" || dtype == "i8" || dtype == "i16" || dtype == "u16" || dtype == "u32") {
      int64_t x = v.get<int64_t>();  // little-endian: the low bytes
      memcpy(buf, &x, elemSize(dtype));
    }
    else if (dtype == "f16") { uint16_t x = floatToHalf(number(v)); memcpy(buf, &x, 2); }
    else if (dtype == "bf16") {
      float f = number(v);
      uint32_t bits;
      memcpy(&bits, &f, 4);
      uint16_t x = bits >> 16;  // the cases' values are exact in bf16
      memcpy(buf, &x, 2);
    }
    else { buf[0] = v.get<bool>() ? 1 : 0; }
    out.append(buf, elemSize(dtype));
  }
  return out;
}

double unpackAt(const std::string& dtype, const kj::byte* p) {
  if (dtype == "f32") { float x; memcpy(&x, p, 4); return x; }
  if (dtype == "f64") { double x; memcpy(&x, p, 8); return x; }
  if (dtype == "i32") { int32_t x; memcpy(&x, p, 4); return x; }
  if (dtype == "i64") { int64_t x; memcpy(&x, p, 8); return (double)x; }
  if (dtype == "u64") { uint64_t x; memcpy(&x, p, 8); return (double)x; }
  if (dtype == "u32") { uint32_t x; memcpy(&x, p, 4); return x; }
  if (dtype == "i16") { int16_t x; memcpy(&x, p, 2); return x; }
  if (dtype == "u16") { uint16_t x; memcpy(&x, p, 2); return x; }
  if (dtype == "i8") { int8_t x; memcpy(&x, p, 1); return x; }
  if (dtype == "f16") { uint16_t x; memcpy(&x, p, 2); return halfToFloat(x); }
  if (dtype == "bf16") {
    uint16_t x;
    memcpy(&x, p, 2);
    uint32_t bits = (uint32_t)x << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
  }
  return p[0];
}

std::string hexBytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back((char)std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::string kindName(kj::Exception::Type t) {
  switch (t) {
    case kj::Exception::Type::FAILED: return "failed";
    case kj::Exception::Type::OVERLOADED: return "overloaded";
    case kj::Exception::Type::DISCONNECTED: return "disconnected";
    case kj::Exception::Type::UNIMPLEMENTED: return "unimplemented";
  }
  return "unknown";
}

std::string stripRemote(std::string m) {
  const std::string p = "remote exception: ";
  while (m.rfind(p, 0) == 0) m = m.substr(p.size());
  return m;
}

struct Options {
  std::string address, peer, token, peerToken, cases = "tests/conformance/cases", filter;
  bool verbose = false;
};

// One call sent by a case: its answer, awaited at most once.
struct Call {
  kj::Maybe<kj::Promise<Response>> promise;
  kj::Maybe<Response> response;
};

class Case {
 public:
  Case(const Options& opts, kj::WaitScope& ws, kj::Timer& timer) : opts(opts), ws(ws), timer(timer) {
    conn1 = kj::heap<capnp::EzRpcClient>(opts.address);
    conn2 = kj::heap<capnp::EzRpcClient>(opts.peer.empty() ? opts.address : opts.peer);
    caps.emplace("gate", conn1->getMain());
    caps.emplace("gate2", conn2->getMain());
  }
  ~Case() {
    // Capabilities and calls go before the connections they live on.
    later.clear();
    boundBy.clear();
    calls.clear();
    caps.clear();
  }

  void step(const json& s) {
    if (s.contains("release")) {
      // Drops the names and the calls that made them: an answer holds
      // its capabilities until the call is finished.
      for (auto& n : s["release"]) {
        auto name = n.get<std::string>();
        caps.erase(name);
        auto b = boundBy.find(name);
        if (b == boundBy.end()) continue;
        Call* c = b->second.first;
        boundBy.erase(b);
        calls.erase(std::remove_if(calls.begin(), calls.end(),
                                   [c](const kj::Own<Call>& x) { return x.get() == c; }),
                    calls.end());
      }
      return;
    }
    if (s.contains("bind")) {
      auto name = s["bind"].get<std::string>();
      auto paf = kj::newPromiseAndFulfiller<capnp::Capability::Client>();
      caps.erase(name);
      caps.emplace(name, capnp::Capability::Client(kj::mv(paf.promise)));
      later[name] = kj::mv(paf.fulfiller);
      return;
    }
    auto full = s["call"].get<std::string>();
    auto dot = full.find('.');
    auto iface = interfaceNamed(full.substr(0, dot));
    auto method = full.substr(dot + 1);
    gate = s["on"].get<std::string>();
    auto target = cap(gate).castAs<DynamicCapability>(iface);
    bool hasExpect = s.contains("expect");
    auto deadline = timer.now() + RETRY_FOR;
    while (true) {
      auto req = target.newRequest(method);
      if (s.contains("args")) fill(req, s["args"]);
      auto sent = req.send();
      auto call = kj::heap<Call>();
      Call* c = call.get();
      bind(s, sent, c);
      kj::Promise<Response> promise = kj::mv(sent);
      if (!hasExpect) {
        c->promise = kj::mv(promise);
        calls.push_back(kj::mv(call));
        return;
      }
      std::string problem;
      kj::Maybe<Response> response;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
        response = timer.timeoutAfter(CALL_TIMEOUT, kj::mv(promise)).wait(ws);
      })) {
        problem = check(s["expect"], nullptr, e);
      } else {
        KJ_IF_MAYBE(r, response) { problem = check(s["expect"], r, nullptr); }
      }
      if (problem.empty()) {
        KJ_IF_MAYBE(r, response) {
          if (s.contains("as_value")) {
            for (auto& kv : s["as_value"].items()) values[kv.key()] = pathValue(*r, kv.value().get<std::string>());
          }
          c->response = kj::mv(*r);
        }
        calls.push_back(kj::mv(call));
        return;
      }
      if (!s.value("retry", false) || timer.now() > deadline) fail(full + ": " + problem);
      timer.afterDelay(10 * kj::MILLISECONDS).wait(ws);
    }
  }

 private:
  const Options& opts;
  kj::WaitScope& ws;
  kj::Timer& timer;
  kj::Own<capnp::EzRpcClient> conn1, conn2;
  std::map<std::string, capnp::Capability::Client> caps;
  std::map<std::string, std::pair<Call*, std::string>> boundBy;
  std::map<std::string, kj::Own<kj::PromiseFulfiller<capnp::Capability::Client>>> later;
  std::vector<kj::Own<Call>> calls;
  std::map<std::string, double> values;
  std::string gate;

  capnp::Capability::Client cap(const std::string& name) {
    auto it = caps.find(name);
    if (it == caps.end()) fail("no capability named " + name);
    return it->second;
  }

  capnp::Capability::Client settled(const std::string& name) {
    auto it = boundBy.find(name);
    if (it == boundBy.end()) return cap(name);
    Call* c = it->second.first;
    if (c->response == nullptr) {
      KJ_IF_MAYBE(p, c->promise) {
        c->response = timer.timeoutAfter(CALL_TIMEOUT, kj::mv(*p)).wait(ws);
        c->promise = nullptr;
      }
    }
    KJ_IF_MAYBE(r, c->response) { return r->get(it->second.second).as<DynamicCapability>(); }
    fail("the call that made " + name + " was awaited already");
  }

  void bind(const json& s, capnp::RemotePromise<DynamicStruct>& sent, Call* c) {
    if (!s.contains("as")) return;
    for (auto& kv : s["as"].items()) {
      auto name = kv.key();
      auto field = kv.value().get<std::string>();
      capnp::Capability::Client got = sent.get(field).releaseAs<DynamicCapability>();
      auto l = later.find(name);
      if (l != later.end()) {
        l->second->fulfill(capnp::Capability::Client(got));
        later.erase(l);
      } else if (caps.count(name) && !s.value("retry", false)) {
        fail("the name " + name + " is bound twice");
      }
      caps.erase(name);
      caps.emplace(name, got);
      boundBy[name] = {c, field};
    }
  }

  std::string token(const json& which) {
    if (which.get<std::string>() != "good") return BAD_TOKEN;
    return gate == "gate2" && !opts.peerToken.empty() ? opts.peerToken : opts.token;
  }

  // ---- arguments ----

  void fill(DynamicStruct::Builder b, const json& j) {
    if (j.contains("values") && j.contains("dtype")) {
      auto dt = j["dtype"].get<std::string>();
      b.set("dtype", capnp::DynamicEnum(capnp::Schema::from<DType>().getEnumerantByName(dt)));
      auto shape = b.init("shape", j["shape"].size()).as<DynamicList>();
      for (size_t i = 0; i < j["shape"].size(); i++) shape.set(i, j["shape"][i].get<uint64_t>());
      auto bytes = pack(dt, j["values"]);
      b.set("data", capnp::Data::Reader((const kj::byte*)bytes.data(), bytes.size()));
      return;
    }
    for (auto& kv : j.items()) {
      KJ_IF_MAYBE(f, b.getSchema().findFieldByName(kv.key())) { setField(b, *f, kv.value()); }
      else fail("no field " + kv.key());
    }
  }

  DynamicValue::Reader scalar(capnp::Type t, const json& v, std::string& hold) {
    switch (t.which()) {
      case capnp::schema::Type::BOOL: return v.get<bool>();
      case capnp::schema::Type::INT8: case capnp::schema::Type::INT16:
      case capnp::schema::Type::INT32: case capnp::schema::Type::INT64: return v.get<int64_t>();
      case capnp::schema::Type::UINT8: case capnp::schema::Type::UINT16:
      case capnp::schema::Type::UINT32: case capnp::schema::Type::UINT64: return v.get<uint64_t>();
      case capnp::schema::Type::FLOAT32: case capnp::schema::Type::FLOAT64: return number(v);
      case capnp::schema::Type::TEXT: hold = v.get<std::string>(); return capnp::Text::Reader(hold.c_str());
      case capnp::schema::Type::DATA:
        if (v.contains("$hex")) hold = hexBytes(v["$hex"].get<std::string>());
        else if (v.contains("$token")) hold = token(v["$token"]);
        else fail("Data must be $hex or $token");
        return capnp::Data::Reader((const kj::byte*)hold.data(), hold.size());
      case capnp::schema::Type::ENUM: {
        auto es = t.asEnum();
        if (v.is_string()) return capnp::DynamicEnum(es.getEnumerantByName(v.get<std::string>()));
        return capnp::DynamicEnum(es, v.get<uint16_t>());
      }
      default: fail("unsupported argument type");
    }
  }

  void setField(DynamicStruct::Builder b, capnp::StructSchema::Field f, const json& v) {
    auto t = f.getType();
    if (t.isStruct()) { fill(b.init(f).as<DynamicStruct>(), v); return; }
    if (t.isInterface()) {
      b.set(f, ref(v).castAs<DynamicCapability>(t.asInterface()));
      return;
    }
    if (t.isList()) {
      auto et = t.asList().getElementType();
      auto l = b.init(f, v.size()).as<DynamicList>();
      for (size_t i = 0; i < v.size(); i++) {
        if (et.isStruct()) fill(l[i].as<DynamicStruct>(), v[i]);
        else if (et.isInterface()) l.set(i, ref(v[i]).castAs<DynamicCapability>(et.asInterface()));
        else { std::string hold; l.set(i, scalar(et, v[i], hold)); }
      }
      return;
    }
    std::string hold;
    b.set(f, scalar(t, v, hold));
  }

  capnp::Capability::Client ref(const json& v) {
    auto name = v["$ref"].get<std::string>();
    return v.value("settled", false) ? settled(name) : cap(name);
  }

  // ---- expectations ----

  std::string check(const json& expect, const Response* r, const kj::Exception* e) {
    if (expect.contains("error")) {
      auto& want = expect["error"];
      if (e == nullptr) return "succeeded, expected a " + want["kind"].get<std::string>() + " error";
      auto kind = kindName(e->getType());
      auto msg = stripRemote(std::string(e->getDescription().cStr()));
      if (kind != want["kind"].get<std::string>()) return "error kind " + kind + " (" + msg + ")";
      if (want.contains("prefix") && msg.rfind(want["prefix"].get<std::string>(), 0) != 0)
        return "error '" + msg + "' does not start with '" + want["prefix"].get<std::string>() + "'";
      if (want.contains("contains") && msg.find(want["contains"].get<std::string>()) == std::string::npos)
        return "error '" + msg + "' does not contain '" + want["contains"].get<std::string>() + "'";
      return "";
    }
    if (e != nullptr) return "failed: " + kindName(e->getType()) + " " + std::string(e->getDescription().cStr());
    if (expect.contains("results")) return match(expect["results"], DynamicValue::Reader(*r), "results");
    return "";
  }

  std::string match(const json& want, DynamicValue::Reader got, const std::string& path) {
    if (want.is_object()) {
      if (want.contains("$schemaVersion"))
        return got.as<uint64_t>() == SCHEMA_VERSION ? "" : path + ": not the schema's version";
      if (want.contains("$typeId")) {
        auto id = interfaceNamed(want["$typeId"].get<std::string>()).getProto().getId();
        return got.as<uint64_t>() == id ? "" : path + ": not the type id";
      }
      if (want.contains("$nonEmpty")) return got.as<capnp::Text>().size() > 0 ? "" : path + ": empty";
      if (want.contains("$atLeast"))
        return got.as<double>() >= want["$atLeast"].get<double>() ? "" : path + ": too small";
      if (want.contains("$above"))
        return got.as<double>() > values[want["$above"].get<std::string>()] ? "" : path + ": not above";
      if (want.contains("$atMost"))
        return got.as<double>() <= values[want["$atMost"].get<std::string>()] ? "" : path + ": above";
      if (want.contains("$equals"))
        return got.as<double>() == values[want["$equals"].get<std::string>()] ? "" : path + ": not equal";
      auto st = got.as<DynamicStruct>();
      if (want.contains("values")) return matchTensor(want, st, path);
      for (auto& kv : want.items()) {
        auto p = match(kv.value(), st.get(kv.key()), path + "." + kv.key());
        if (!p.empty()) return p;
      }
      return "";
    }
    if (want.is_array()) {
      auto l = got.as<DynamicList>();
      if (l.size() != want.size()) return path + ": wrong length";
      for (size_t i = 0; i < want.size(); i++) {
        auto p = match(want[i], l[i], path + "[" + std::to_string(i) + "]");
        if (!p.empty()) return p;
      }
      return "";
    }
    if (want.is_string()) {
      std::string g;
      if (got.getType() == DynamicValue::ENUM) {
        KJ_IF_MAYBE(en, got.as<capnp::DynamicEnum>().getEnumerant()) { g = en->getProto().getName().cStr(); }
      } else {
        g = got.as<capnp::Text>().cStr();
      }
      return g == want.get<std::string>() ? "" : path + ": '" + g + "' != '" + want.get<std::string>() + "'";
    }
    if (want.is_boolean()) return got.as<bool>() == want.get<bool>() ? "" : path + ": wrong bool";
    if (want.is_number_unsigned() && got.getType() == DynamicValue::UINT)
      return got.as<uint64_t>() == want.get<uint64_t>() ? "" : path + ": wrong number";
    if (want.is_number_integer() && got.getType() != DynamicValue::FLOAT)
      return got.as<int64_t>() == want.get<int64_t>() ? "" : path + ": wrong number";
    return got.as<double>() == want.get<double>() ? "" : path + ": wrong number";
  }

  std::string matchTensor(const json& want, DynamicStruct::Reader got, const std::string& path) {
    auto dt = want["dtype"].get<std::string>();
    auto p = match(want["dtype"], got.get("dtype"), path + ".dtype");
    if (!p.empty()) return p;
    p = match(want["shape"], got.get("shape"), path + ".shape");
    if (!p.empty()) return p;
    auto data = got.get("data").as<capnp::Data>();
    size_t n = want["values"].size(), sz = elemSize(dt);
    if (data.size() != n * sz) return path + ": " + std::to_string(data.size()) + " bytes of data";
    double tol = want.value("tol", 0.0);
    for (size_t i = 0; i < n; i++) {
      double g = unpackAt(dt, data.begin() + i * sz);
      auto& wv = want["values"][i];
      bool ok;
      if (dt == "i64") {
        int64_t gi;
        memcpy(&gi, data.begin() + i * sz, 8);
        ok = gi == wv.get<int64_t>();
      } else if (dt == "u64") {
        uint64_t gu;
        memcpy(&gu, data.begin() + i * sz, 8);
        ok = gu == wv.get<uint64_t>();
      } else if (wv.is_boolean()) {
        ok = (g != 0) == wv.get<bool>();
      } else {
        double w = number(wv);
        if (std::isnan(w)) ok = std::isnan(g);
        else if (tol > 0) ok = std::fabs(g - w) <= tol * std::max(1.0, std::fabs(w));
        else ok = g == w;
      }
      if (!ok) return path + ".values[" + std::to_string(i) + "]: " + std::to_string(g) + " differs";
    }
    return "";
  }

  double pathValue(const Response& r, const std::string& path) {
    DynamicValue::Reader v = DynamicValue::Reader(r);
    std::stringstream ss(path);
    std::string part;
    while (std::getline(ss, part, '.')) v = v.as<DynamicStruct>().get(part);
    return v.as<double>();
  }
};

std::vector<std::string> caseFiles(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) fail("cannot open " + dir);
  while (auto* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.substr(n.size() - 5) == ".json") out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  std::string tokenFile, peerTokenFile;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; exit(2); }
      return argv[++i];
    };
    if (a == "--address") opts.address = next();
    else if (a == "--peer") opts.peer = next();
    else if (a == "--token-file") tokenFile = next();
    else if (a == "--peer-token-file") peerTokenFile = next();
    else if (a == "--cases") opts.cases = next();
    else if (a == "--filter") opts.filter = next();
    else if (a == "--verbose") opts.verbose = true;
    else { std::cerr << "unknown argument " << a << "\n"; return 2; }
  }
  if (opts.address.empty()) { std::cerr << "--address is required\n"; return 2; }
  try {
    if (!tokenFile.empty()) opts.token = trim(readFile(tokenFile));
    if (!peerTokenFile.empty()) opts.peerToken = trim(readFile(peerTokenFile));
  } catch (CaseFailed& e) { std::cerr << e.why << "\n"; return 2; }

  // Keeps the thread's event loop alive between cases.
  capnp::EzRpcClient anchor(opts.address);
  auto& ws = anchor.getWaitScope();
  auto& timer = anchor.getIoProvider().getTimer();
  int passed = 0, failed = 0;
  for (auto& file : caseFiles(opts.cases)) {
    auto doc = json::parse(readFile(opts.cases + "/" + file));
    auto stem = file.substr(0, file.size() - 5);
    for (auto& c : doc["cases"]) {
      auto name = stem + ": " + c["name"].get<std::string>();
      if (!opts.filter.empty() && name.find(opts.filter) == std::string::npos) continue;
      std::string why;
      size_t i = 0;
      try {
        Case run(opts, ws, timer);
        for (; i < c["steps"].size(); i++) run.step(c["steps"][i]);
      } catch (CaseFailed& e) {
        why = "step " + std::to_string(i) + ": " + e.why;
      } catch (kj::Exception& e) {
        why = "step " + std::to_string(i) + ": " + kindName(e.getType()) + " " + e.getDescription().cStr();
      } catch (std::exception& e) {
        why = "step " + std::to_string(i) + ": " + e.what();
      }
      if (why.empty()) {
        passed++;
        if (opts.verbose) std::cout << "PASSED " << name << "\n";
      } else {
        failed++;
        std::cout << "FAILED " << name << ": " << why << "\n";
      }
    }
  }
  std::cout << passed << " passed, " << failed << " failed" << std::endl;
  return failed == 0 ? 0 : 1;
}
