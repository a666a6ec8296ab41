#!/usr/bin/env python3
"""The conformance cases, run by a pycapnp client.

    python3 tests/conformance/run.py --address 127.0.0.1:7001 --token-file worker.token \
        [--peer 127.0.0.1:7002 --peer-token-file peer.token] [--filter SUBSTRING] [--verbose]

Reads only schema/ and tests/conformance/cases/*.json, talks to the worker at
--address (and --peer, a second worker, for the cases that use `gate2`; the
same worker if omitted) and prints `N passed, M failed` (and the cases
skipped). Exits 1 if any case failed. The case format is described in
tests/conformance/README.md.
"""

import argparse
import asyncio
import gc
import json
import math
import struct
import sys
from pathlib import Path

import capnp

HERE = Path(__file__).resolve().parent
SCHEMA = HERE.parents[1] / "schema"
# The standard imports (/capnp/stream.capnp, which `-> stream` methods
# need) ship inside the pycapnp package.
IMPORTS = [str(Path(capnp.__file__).resolve().parents[1])]
actor_capnp = capnp.load(str(SCHEMA / "actor.capnp"), imports=IMPORTS)
tensor_capnp = capnp.load(str(SCHEMA / "tensor.capnp"), imports=IMPORTS)
INTERFACES = {
    "Gate": actor_capnp.Gate, "Actor": actor_capnp.Actor,
    "TensorWorker": tensor_capnp.TensorWorker, "Tensor": tensor_capnp.Tensor,
}
PACK = {"f32": "<f", "f64": "<d", "i32": "<i", "i64": "<q", "bool": "<?",
        "f16": "<e", "u8": "<B", "i8": "<b", "i16": "<h", "u16": "<H", "u32": "<I", "u64": "<Q"}
BAD_TOKEN = b"not-the-token"
RETRY_SECONDS = 10.0
CALL_SECONDS = 30.0
# What this runner cannot do.
UNSUPPORTED = set()


class _Later(actor_capnp.Gate.Server):
    """A promise capability of the client's own: pycapnp cannot make one
    directly, so the runner calls this local server, whose answer waits
    until the name is bound, and uses the pipelined result. Passed to the
    worker before then, it travels as a `senderPromise` and is resolved with
    a `Resolve` later, as libcapnp does with such arguments."""

    def __init__(self):
        self.bound = asyncio.get_running_loop().create_future()

    async def open(self, token, _context, **kwargs):
        _context.results.actor = (await self.bound).cast_as(actor_capnp.Actor)


class CaseFailed(Exception):
    pass


def number(v):
    if isinstance(v, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
    return v


def pack(dtype, values):
    if dtype == "bf16":  # f32's upper half (the cases' values are exact)
        return b"".join(struct.pack("<f", number(v))[2:] for v in values)
    fmt = PACK[dtype]
    return b"".join(struct.pack(fmt, number(v)) for v in values)


def unpack(dtype, data):
    if dtype == "bf16":
        return [struct.unpack("<f", b"\0\0" + data[i:i + 2])[0] for i in range(0, len(data), 2)]
    fmt = PACK[dtype]
    size = struct.calcsize(fmt)
    return [struct.unpack(fmt, data[i:i + size])[0] for i in range(0, len(data), size)]


class Case:
    def __init__(self, runner, conns):
        self.r = runner
        self.caps = dict(conns)      # name -> capability
        self.calls = {}              # name -> (promise, field) that bound it
        self.values = {}             # name -> number bound by as_value
        self.keep = []               # promises sent and never awaited
        self.later = {}              # name -> _Later, until bound

    # ---- arguments ----

    def token_for(self, which):
        if which != "good":
            return BAD_TOKEN
        return self.r.args.peer_token if self.gate == "gate2" else self.r.token

    def arg(self, v):
        if isinstance(v, dict):
            if "$ref" in v:
                return self.cap(v["$ref"], v.get("settled", False))
            if "$hex" in v:
                return bytes.fromhex(v["$hex"])
            if "$token" in v:
                return self.token_for(v["$token"])
            if "values" in v and "dtype" in v:
                return {"dtype": v["dtype"], "shape": v["shape"], "data": pack(v["dtype"], v["values"])}
            return {k: self.arg(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.arg(x) for x in v]
        return v

    async def cap(self, name, settled=False):
        if settled and name in self.calls:
            promise, field = self.calls[name]
            response = await asyncio.wait_for(promise, CALL_SECONDS)
            return getattr(response, field)
        if name not in self.caps:
            raise CaseFailed(f"no capability named {name!r}")
        return self.caps[name]

    async def resolve_args(self, v):
        v = self.arg(v)
        return await self._await_all(v)

    async def _await_all(self, v):
        if asyncio.iscoroutine(v):
            return await v
        if isinstance(v, dict):
            return {k: await self._await_all(x) for k, x in v.items()}
        if isinstance(v, list):
            return [await self._await_all(x) for x in v]
        return v

    # ---- steps ----

    async def step(self, s):
        if "release" in s:
            for name in s["release"]:
                self.caps.pop(name, None)
                self.calls.pop(name, None)
            self.keep.clear()
            gc.collect()
            return
        if "bind" in s:
            later = _Later()
            self.later[s["bind"]] = later
            # Keep the server and its call alive for the case.
            promise = actor_capnp.Gate._new_client(later).open(token=b"")
            self.keep.append(promise)
            self.caps[s["bind"]] = promise.actor
            return
        iface, method = s["call"].split(".")
        self.gate = s["on"]
        target = (await self.cap(s["on"])).cast_as(INTERFACES[iface])
        args = await self.resolve_args(s.get("args", {}))
        expect = s.get("expect")
        if expect is None:
            promise = self.send(target, method, args)
            self.bind(s, promise)
            self.keep.append(promise)
            return
        deadline = asyncio.get_running_loop().time() + RETRY_SECONDS
        while True:
            promise = self.send(target, method, args)
            self.bind(s, promise)
            try:
                response = await asyncio.wait_for(promise, CALL_SECONDS)
                error = None
            except capnp.KjException as e:
                response, error = None, e
            except asyncio.TimeoutError:
                raise CaseFailed(f"{s['call']}: no answer within {CALL_SECONDS} s")
            problem = self.check(expect, response, error)
            if problem is None:
                break
            if not s.get("retry") or asyncio.get_running_loop().time() > deadline:
                raise CaseFailed(f"{s['call']}: {problem}")
            await asyncio.sleep(0.01)
        for name, path in s.get("as_value", {}).items():
            v = response
            for part in path.split("."):
                v = getattr(v, part)
            self.values[name] = v

    def send(self, target, method, args):
        return getattr(target, method)(**self.typed(target, method, args))

    @staticmethod
    def typed(target, method, args):
        """Casts capability arguments to their fields' interfaces (pycapnp
        checks them; on the wire capabilities are untyped)."""
        by_id = {i.schema.node.id: i for i in INTERFACES.values()}
        fields = target.schema.methods[method].param_type.fields
        out = dict(args)
        for k, v in args.items():
            if not isinstance(v, capnp.lib.capnp._DynamicCapabilityClient):
                continue
            t = fields[k].proto.slot.type
            if t.which() == "interface" and t.interface.typeId in by_id:
                out[k] = v.cast_as(by_id[t.interface.typeId])
        return out

    def bind(self, s, promise):
        for name, field in s.get("as", {}).items():
            later = self.later.pop(name, None)
            if later is not None:
                later.bound.set_result(getattr(promise, field))
            elif name in self.caps and not s.get("retry"):
                raise CaseFailed(f"the name {name!r} is bound twice")
            self.caps[name] = getattr(promise, field)
            self.calls[name] = (promise, field)

    # ---- expectations ----

    def check(self, expect, response, error):
        if "error" in expect:
            e = expect["error"]
            if error is None:
                return f"succeeded, expected a {e['kind']} error"
            kind = str(error.type).lower()
            msg = error.description
            while msg.startswith("remote exception: "):
                msg = msg[len("remote exception: "):]
            if kind != e["kind"]:
                return f"error kind {kind} ({msg}), expected {e['kind']}"
            if "prefix" in e and not msg.startswith(e["prefix"]):
                return f"error {msg!r} does not start with {e['prefix']!r}"
            if "contains" in e and e["contains"] not in msg:
                return f"error {msg!r} does not contain {e['contains']!r}"
            return None
        if error is not None:
            return f"failed: {error.type} {error.description}"
        if "results" in expect:
            return self.match(expect["results"], response, "results")
        return None

    def match(self, want, got, path):
        if isinstance(want, dict):
            if "$schemaVersion" in want:
                return None if got == actor_capnp.schemaVersion else f"{path}: {got} != schemaVersion {actor_capnp.schemaVersion}"
            if "$typeId" in want:
                tid = INTERFACES[want["$typeId"]].schema.node.id
                return None if got == tid else f"{path}: {got:#x} != type id {tid:#x}"
            if "$nonEmpty" in want:
                return None if len(got) > 0 else f"{path}: empty"
            if "$atLeast" in want:
                return None if got >= want["$atLeast"] else f"{path}: {got} < {want['$atLeast']}"
            if "$above" in want:
                return None if got > self.values[want["$above"]] else f"{path}: {got} not above {self.values[want['$above']]}"
            if "$atMost" in want:
                return None if got <= self.values[want["$atMost"]] else f"{path}: {got} above {self.values[want['$atMost']]}"
            if "$equals" in want:
                return None if got == self.values[want["$equals"]] else f"{path}: {got} != {self.values[want['$equals']]}"
            if "values" in want:
                return self.match_tensor(want, got, path)
            for k, w in want.items():
                p = self.match(w, getattr(got, k), f"{path}.{k}")
                if p:
                    return p
            return None
        if isinstance(want, list):
            got = list(got)
            if len(got) != len(want):
                return f"{path}: {len(got)} elements, expected {len(want)}"
            for i, (w, g) in enumerate(zip(want, got)):
                p = self.match(w, g, f"{path}[{i}]")
                if p:
                    return p
            return None
        if isinstance(want, str):
            return None if str(got) == want else f"{path}: {got!r} != {want!r}"
        if isinstance(want, bool) or isinstance(want, int):
            return None if got == want else f"{path}: {got} != {want}"
        return None if got == want else f"{path}: {got} != {want}"

    def match_tensor(self, want, got, path):
        if str(got.dtype) != want["dtype"]:
            return f"{path}.dtype: {got.dtype} != {want['dtype']}"
        if list(got.shape) != want["shape"]:
            return f"{path}.shape: {list(got.shape)} != {want['shape']}"
        vals = unpack(want["dtype"], got.data)
        if len(vals) != len(want["values"]):
            return f"{path}: {len(vals)} values, expected {len(want['values'])}"
        tol = want.get("tol", 0)
        for i, (g, w) in enumerate(zip(vals, want["values"])):
            w = number(w)
            if isinstance(w, float) and math.isnan(w):
                ok = math.isnan(g)
            elif tol:
                ok = math.isclose(g, w, rel_tol=tol, abs_tol=tol)
            else:
                ok = g == w
            if not ok:
                return f"{path}.values[{i}]: {g} != {w}"
        return None


class Runner:
    def __init__(self, args):
        self.args = args
        self.token = args.token

    async def connect(self, address):
        host, _, port = address.rpartition(":")
        stream = await capnp.AsyncIoStream.create_connection(host=host, port=int(port))
        client = capnp.TwoPartyClient(stream)
        return stream, client.bootstrap().cast_as(actor_capnp.Gate)

    async def run_case(self, c):
        missing = set(c.get("requires", [])) & UNSUPPORTED
        if missing:
            return "skipped", f"needs {', '.join(sorted(missing))}"
        s1, g1 = await self.connect(self.args.address)
        s2, g2 = await self.connect(self.args.peer or self.args.address)
        case = Case(self, {"gate": g1, "gate2": g2})
        try:
            for i, s in enumerate(c["steps"]):
                try:
                    await case.step(s)
                except CaseFailed as e:
                    return "failed", f"step {i}: {e}"
                except capnp.KjException as e:
                    return "failed", f"step {i}: {e.type} {e.description}"
            return "passed", ""
        finally:
            del case
            gc.collect()
            s1.close()
            s2.close()

    async def run(self):
        files = sorted(Path(self.args.cases).glob("*.json"))
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for f in files:
            doc = json.loads(f.read_text())
            for c in doc["cases"]:
                name = f"{f.stem}: {c['name']}"
                if self.args.filter and self.args.filter not in name:
                    continue
                outcome, why = await self.run_case(c)
                counts[outcome] += 1
                if outcome != "passed" or self.args.verbose:
                    print(f"{outcome.upper()} {name}" + (f": {why}" if why else ""))
        line = f"{counts['passed']} passed, {counts['failed']} failed"
        if counts["skipped"]:
            line += f", {counts['skipped']} skipped"
        print(line)
        return counts["failed"] == 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="the worker, host:port")
    p.add_argument("--peer", help="a second worker for the cases that use gate2")
    p.add_argument("--token-file", help="file holding the worker's token")
    p.add_argument("--peer-token-file", help="the peer's token file (default: --token-file)")
    p.add_argument("--cases", default=str(HERE / "cases"), help="directory of case files")
    p.add_argument("--filter", help="run only cases whose 'file: name' contains this")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    args.token = Path(args.token_file).read_bytes().strip() if args.token_file else b""
    args.peer_token = (Path(args.peer_token_file).read_bytes().strip()
                       if args.peer_token_file else args.token)
    ok = asyncio.run(capnp.run(Runner(args).run()))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
