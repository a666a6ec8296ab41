"""A Python client of `capactor worker`, written from `schema/` alone.

pycapnp parses the `.capnp` files at run time and speaks the two-party
RPC protocol over TCP (or a Unix socket, `test_unix_socket.py`); nothing here comes from the Rust code. Every test
opens the worker's `Gate`, pipelines `open(token).actor` into calls cast
to `TensorWorker` or `Actor`, and checks results against numpy.
"""

import asyncio
import re
from pathlib import Path

import capnp
import numpy as np
import pytest

from conftest import actor_capnp, tensor_capnp

# numpy dtype (little-endian) of each schema DType.
NP_DTYPE = {
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "i32": np.dtype("<i4"),
    "i64": np.dtype("<i8"),
    "bool": np.dtype("?"),
}
CALL_TIMEOUT = 30.0


def run(coro):
    """Runs `coro` on asyncio with pycapnp's KJ event loop attached."""
    return asyncio.run(capnp.run(asyncio.wait_for(coro, CALL_TIMEOUT)))


class Conn:
    """One connection: the byte stream and the RPC client on it."""

    def __init__(self, stream, client):
        self.stream = stream
        self.client = client

    def close(self):
        # pycapnp's TwoPartyClient.close() leaves the socket open; closing
        # the stream is what the worker sees as a disconnect.
        self.client.close()
        self.stream.close()


async def connect(w, token=None):
    """Connects to worker `w` and opens its gate with `token` (default: the
    worker's own). Returns the connection (keep it alive) and the
    pipelined `TensorWorker`: no round trip has happened yet."""
    if w.unix_path is not None:
        stream = await capnp.AsyncIoStream.create_unix_connection(str(w.unix_path))
    else:
        stream = await capnp.AsyncIoStream.create_connection(host=w.host, port=w.port)
    client = capnp.TwoPartyClient(stream)
    gate = client.bootstrap().cast_as(actor_capnp.Gate)
    actor = gate.open(token=w.token if token is None else token).actor
    return Conn(stream, client), actor.cast_as(tensor_capnp.TensorWorker)


def to_wire(a: np.ndarray, dtype: str) -> dict:
    """A `TensorData` for `a`: little-endian, row-major."""
    # Not np.ascontiguousarray: it turns a 0-d array into shape [1].
    a = np.asarray(a, dtype=NP_DTYPE[dtype])
    return {"dtype": dtype, "shape": list(a.shape), "data": a.tobytes(order="C")}


def from_wire(d) -> np.ndarray:
    """The numpy array of a `TensorData` reader."""
    dtype = NP_DTYPE[str(d.dtype)]
    shape = tuple(d.shape)
    return np.frombuffer(d.data, dtype=dtype).reshape(shape).copy()


async def read(tensor) -> np.ndarray:
    return from_wire((await tensor.read()).data)


async def actor_info(tw):
    """`Actor.info` of a `TensorWorker`, called through a cast to `Actor`."""
    return (await tw.cast_as(actor_capnp.Actor).info()).info


async def wait_live_objects(tw, want, timeout=10.0):
    """Polls `info` until the worker holds `want` objects; returns the last
    info. Releases travel asynchronously, so this may take a few turns."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await actor_info(tw)
        if info.liveObjects == want or asyncio.get_running_loop().time() > deadline:
            return info
        await asyncio.sleep(0.02)


# Texts that would betray the implementation: source paths, Rust paths
# and type names.
LEAKS = re.compile(r"\.rs\b|/src/|/home/|/work/|::|capnp::Error|capactor::|"
                   r"OpError|ShapeMismatch|thread '|panicked at")


def assert_clean_message(msg: str) -> None:
    assert not LEAKS.search(msg), f"error message leaks implementation details: {msg!r}"


def test_pipelined_chain_matches_numpy(worker):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3)).astype("<f4")
    w = rng.standard_normal((3, 5)).astype("<f4")
    b = rng.standard_normal((5,)).astype("<f4")
    hidden = np.maximum(x @ w + b, 0)

    async def main():
        conn, tw = await connect(worker)
        tx = tw.fromData(data=to_wire(x, "f32")).tensor
        tweights = tw.fromData(data=to_wire(w, "f32")).tensor
        tb = tw.fromData(data=to_wire(b, "f32")).tensor
        # Every call below is sent before any has returned: the whole chain
        # (gate included) is pipelined on promised capabilities.
        h = (tx.matmul(other=tweights).result
             .binary(op="add", other=tb).result
             .unary(op="relu").result)
        per_col = h.reduce(op="sum", axis=0, allAxes=False, keepDims=False).result
        total = h.reduce(op="sum", axis=0, allAxes=True, keepDims=False).result
        meta, got_h, got_col, got_total = await asyncio.gather(
            h.meta(), read(h), read(per_col), read(total))
        assert str(meta.dtype) == "f32" and list(meta.shape) == [4, 5]
        return got_h, got_col, got_total

    got_h, got_col, got_total = run(main())
    np.testing.assert_allclose(got_h, hidden, rtol=1e-5, atol=1e-6)
    assert got_col.shape == (5,)
    np.testing.assert_allclose(got_col, hidden.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert got_total.shape == ()
    np.testing.assert_allclose(got_total, hidden.sum(), rtol=1e-5, atol=1e-5)


def test_every_dtype_round_trips_and_computes(worker):
    arrays = {
        "f32": np.array([[1.5, -2.0], [0.25, 3.0]], dtype="<f4"),
        "f64": np.array([[1e300, -2.5], [0.125, np.pi]], dtype="<f8"),
        "i32": np.array([[1, -2], [2**31 - 1, 7]], dtype="<i4"),
        "i64": np.array([[2**62, -3], [5, 0]], dtype="<i8"),
        "bool": np.array([[True, False], [False, True]]),
    }

    async def main():
        conn, tw = await connect(worker)
        out = {}
        for dtype, a in arrays.items():
            t = tw.fromData(data=to_wire(a, dtype)).tensor
            out[dtype] = (
                await read(t),
                await read(t.transpose(perm=[]).result),
                await read(t.compareScalar(op="ne", scalar={"int": 0} if dtype != "bool"
                                           else {"bool": False}).result),
            )
        ints = tw.arange(dtype="i64", start=0, stop=12).tensor
        grid = ints.reshape(shape=[3, -1]).result
        sliced = grid.slice(specs=[{"start": 1, "hasStart": True},
                                   {"step": -2}]).result
        scaled = ints.cast(dtype="f64").result.binaryScalar(
            op="div", scalar={"float": 4.0}, scalarOnLeft=False).result
        out["ops"] = (await read(grid), await read(sliced), await read(scaled))
        return out

    out = run(main())
    for dtype, a in arrays.items():
        same, transposed, nonzero = out[dtype]
        assert same.dtype == a.dtype and same.shape == a.shape
        np.testing.assert_array_equal(same, a)
        np.testing.assert_array_equal(transposed, a.T)
        np.testing.assert_array_equal(nonzero, a != 0)
    grid, sliced, scaled = out["ops"]
    ref = np.arange(12, dtype="<i8").reshape(3, -1)
    np.testing.assert_array_equal(grid, ref)
    np.testing.assert_array_equal(sliced, ref[1:, ::-2])
    np.testing.assert_allclose(scaled, np.arange(12) / 4.0)


def test_info_names_the_kind_and_interfaces(worker):
    async def main():
        conn, tw = await connect(worker)
        actor = tw.cast_as(actor_capnp.Actor)
        await actor.ping()
        t = tw.fromData(data=to_wire(np.zeros((2, 3)), "f64")).tensor
        await t.meta()
        return await actor_info(tw)

    info = run(main())
    assert info.name == "py"
    assert info.kind == "tensor-worker"
    assert info.schemaVersion == actor_capnp.schemaVersion
    ifaces = [(i.id, i.name) for i in info.interfaces]
    assert ifaces == [
        (tensor_capnp.TensorWorker.schema.node.id, "TensorWorker"),
        (actor_capnp.Actor.schema.node.id, "Actor"),
    ]
    assert info.liveObjects == 1
    assert info.liveBytes == 2 * 3 * 8
    assert info.callsInFlight >= 1


def test_shape_mismatch_fails_the_call_and_everything_pipelined_on_it(worker):
    async def main():
        conn, tw = await connect(worker)
        a = tw.fromData(data=to_wire(np.ones((2, 3)), "f32")).tensor
        bad = a.matmul(other=a).result
        errors = []
        for call in (bad.read(), bad.unary(op="neg").result.read()):
            with pytest.raises(capnp.KjException) as e:
                await call
            errors.append(e.value)
        with pytest.raises(capnp.KjException) as e:
            await a.binary(op="add", other=a.reshape(shape=[3, 2]).result).result.meta()
        errors.append(e.value)
        # The connection and `a` are unharmed.
        errors.append(await read(a))
        return errors

    mm, piped, add, a = run(main())
    for e in (mm, piped):
        assert e.type == "FAILED"
        assert "matmul" in e.description and "[2, 3]" in e.description, e.description
        assert_clean_message(e.description)
    assert add.type == "FAILED"
    assert "add" in add.description and "[2, 3]" in add.description \
        and "[3, 2]" in add.description, add.description
    assert_clean_message(add.description)
    np.testing.assert_array_equal(a, np.ones((2, 3), dtype="<f4"))


def test_other_invalid_requests_say_what_is_wrong(worker):
    cases = {
        "length": lambda tw: tw.fromData(
            data={"dtype": "f32", "shape": [2, 3], "data": b"\0" * 20}).tensor,
        # Mixed dtypes promote (test_dtypes.py); bool subtraction is refused.
        "dtypes": lambda tw: tw.fromData(data=to_wire(np.ones(2), "bool")).tensor.binary(
            op="sub", other=tw.fromData(data=to_wire(np.ones(2), "bool")).tensor).result,
        "huge": lambda tw: tw.full(dtype="f32", shape=[1 << 40, 1 << 40],
                                   value={"float": 0.0}).tensor,
    }
    expect = {
        "length": ["data has 20 bytes", "24"],
        "dtypes": ["sub", "bool"],
        "huge": ["too large"],
    }

    async def main():
        conn, tw = await connect(worker)
        out = {}
        for name, make in cases.items():
            with pytest.raises(capnp.KjException) as e:
                await make(tw).meta()
            out[name] = e.value
        return out

    for name, e in run(main()).items():
        assert e.type == "FAILED", (name, e.type)
        for word in expect[name]:
            assert word in e.description, (name, e.description)
        assert_clean_message(e.description)


def test_an_interface_the_actor_lacks_answers_unimplemented(worker):
    async def main():
        conn, tw = await connect(worker)
        # The actor is no Gate: casting is unchecked, the call is refused.
        not_a_gate = tw.cast_as(actor_capnp.Gate)
        with pytest.raises(capnp.KjException) as e:
            await not_a_gate.open(token=b"")
        await tw.ping()
        return e.value

    e = run(main())
    assert e.type == "UNIMPLEMENTED", e


def test_release_and_disconnect_free_tensors(make_worker, worker_flags):
    # Client b watches what a holds: the worker's totals, which a worker
    # shows every client only when told to.
    totals = "--report-worker-totals"
    worker = make_worker(extra=[totals] if totals in worker_flags else [])

    async def main():
        conn_a, tw_a = await connect(worker)
        conn_b, tw_b = await connect(worker)
        # A tensor only ever reached through a pipeline is freed with it.
        await tw_a.arange(dtype="f64", start=0, stop=10).tensor.meta()
        t = (await tw_a.arange(dtype="f64", start=0, stop=100)).tensor
        u = (await tw_b.full(dtype="i32", shape=[4], value={"int": 1})).tensor
        before = await wait_live_objects(tw_b, 2)
        del t  # releasing the last reference frees the tensor
        after_release = await wait_live_objects(tw_b, 1)
        v = (await tw_a.full(dtype="bool", shape=[8], value={"bool": True})).tensor
        await wait_live_objects(tw_b, 2)
        conn_a.close()  # a disconnect frees what the connection held
        del v, tw_a
        after_disconnect = await wait_live_objects(tw_b, 1)
        still = await read(u)
        return before, after_release, after_disconnect, still

    before, after_release, after_disconnect, still = run(main())
    assert (before.liveObjects, before.liveBytes) == (2, 100 * 8 + 4 * 4)
    assert (after_release.liveObjects, after_release.liveBytes) == (1, 16)
    assert (after_disconnect.liveObjects, after_disconnect.liveBytes) == (1, 16)
    np.testing.assert_array_equal(still, np.ones(4, dtype="<i4"))


def test_fetch_copies_and_moves_tensors_between_workers(make_worker):
    w1, w2 = make_worker(), make_worker()
    a = np.arange(6, dtype="<f4").reshape(2, 3)

    async def main():
        conn1, tw1 = await connect(w1)
        conn2, tw2 = await connect(w2)
        src = tw1.fromData(data=to_wire(a, "f32")).tensor
        # Arguments must live on the worker doing the op.
        with pytest.raises(capnp.KjException) as foreign:
            await tw2.full(dtype="f32", shape=[3], value={"float": 1}).tensor.binary(
                op="add", other=src).result.meta()
        copy = tw2.fetch(source=src, move=False).tensor
        doubled = copy.binaryScalar(op="mul", scalar={"float": 2},
                                    scalarOnLeft=False).result
        got_copy = await read(doubled)
        still_there = await read(src)
        moved = tw2.fetch(source=src, move=True).tensor
        got_moved = await read(moved)
        with pytest.raises(capnp.KjException) as gone:
            await src.read()
        return foreign.value, got_copy, still_there, got_moved, gone.value

    foreign, got_copy, still_there, got_moved, gone = run(main())
    assert foreign.type == "FAILED" and "fetch" in foreign.description, foreign.description
    np.testing.assert_array_equal(got_copy, a * 2)
    np.testing.assert_array_equal(still_there, a)
    np.testing.assert_array_equal(got_moved, a)
    assert gone.type == "FAILED" and "moved" in gone.description, gone.description


def test_memory_quota_refuses_and_the_worker_keeps_serving(small_worker):
    async def main():
        conn, tw = await connect(small_worker)
        with pytest.raises(capnp.KjException) as e:
            await tw.full(dtype="f64", shape=[1 << 18], value={"float": 1}).tensor.meta()
        small = await read(tw.full(dtype="f64", shape=[4], value={"float": 1}).tensor)
        return e.value, small

    e, small = run(main())
    # A limit: `overloaded`, "worker memory limit exceeded: 2097152 > 1048576".
    assert e.type == "OVERLOADED", e
    assert "memory limit exceeded" in e.description, e.description
    assert str(2 * 1024 * 1024) in e.description and str(1 << 20) in e.description
    assert_clean_message(e.description)
    np.testing.assert_array_equal(small, np.ones(4))


def test_a_wrong_token_fails_open_and_every_call_pipelined_on_it(worker):
    if not worker.checks_tokens:
        pytest.skip("this capactor binary has no --token-file option, so its "
                    "worker accepts any token")

    async def main():
        stream = await capnp.AsyncIoStream.create_connection(host=worker.host,
                                                             port=worker.port)
        client = capnp.TwoPartyClient(stream)
        gate = client.bootstrap().cast_as(actor_capnp.Gate)
        errors = []
        for token in (b"not the token", b"", worker.token[:-1]):
            opened = gate.open(token=token)
            tw = opened.actor.cast_as(tensor_capnp.TensorWorker)
            piped = tw.arange(dtype="f32", start=0, stop=3).tensor.read()
            for call in (opened, piped):
                with pytest.raises(capnp.KjException) as e:
                    await call
                errors.append(e.value)
        # Fewer than five failures: the same connection may still open
        # the gate with the right token.
        tw = gate.open(token=worker.token).actor.cast_as(tensor_capnp.TensorWorker)
        ok = await read(tw.arange(dtype="f32", start=0, stop=3).tensor)
        return errors, ok

    errors, ok = run(main())
    for e in errors:
        assert e.type == "FAILED", e
        assert "credential rejected" in e.description, e.description
        assert worker.token.decode() not in e.description
    np.testing.assert_array_equal(ok, np.arange(3, dtype="<f4"))


def test_a_worker_without_auth_accepts_an_empty_token(open_worker):
    async def main():
        conn, tw = await connect(open_worker, token=b"")
        return await read(tw.full(dtype="i64", shape=[2], value={"int": 5}).tensor)

    np.testing.assert_array_equal(run(main()), np.full(2, 5, dtype="<i8"))


def test_protocol_md_to_wire_keeps_a_scalar_zero_dimensional(worker):
    # The helper PROTOCOL.md shows, run as written.
    doc = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
    src = re.search(r"^def to_wire\(.*?(?=^\S)", doc, re.S | re.M).group(0)
    scope = {"np": np}
    exec(src, scope)
    doc_to_wire = scope["to_wire"]
    assert doc_to_wire(np.float32(2.5), "f32")["shape"] == []
    assert doc_to_wire(np.arange(6).reshape(2, 3).T, "i64")["shape"] == [3, 2]

    async def main():
        conn, tw = await connect(worker)
        s = tw.fromData(data=doc_to_wire(np.array(2.5), "f32")).tensor
        v = tw.fromData(data=doc_to_wire(np.arange(6).reshape(2, 3).T, "f32")).tensor
        out = await read(v.binary(op="mul", other=s).result)
        conn.close()
        return out

    got = run(main())
    want = np.arange(6).reshape(2, 3).T.astype("<f4") * np.float32(2.5)
    assert got.shape == (3, 2)
    np.testing.assert_array_equal(got, want)


def test_a_failed_pipelined_argument_fails_each_op_with_the_first_error(worker):
    async def main():
        conn, tw = await connect(worker)
        a = tw.fromData(data=to_wire(np.ones((2, 3)), "f32")).tensor
        bad = tw.fromData(data=to_wire(np.ones(2), "f32")).tensor
        cond = tw.fromData(data=to_wire(np.array([True, False]), "bool")).tensor
        failed = a.matmul(other=bad).result
        messages = {}
        # Once while the failure is a promise, once after the client has
        # seen it fail (libcapnp then sends it back as a capability it hosts).
        for seen in (False, True):
            if seen:
                with pytest.raises(capnp.KjException):
                    await failed.read()
            uses = {
                "binary": a.binary(op="add", other=failed).result,
                "matmul": a.matmul(other=failed).result,
                "compare": a.compare(op="lt", other=failed).result,
                "select": cond.select(ifTrue=failed, ifFalse=bad).result,
                "concat": tw.concat(tensors=[a, failed], axis=0).tensor,
                "fetch": tw.fetch(source=failed, move=False).tensor,
            }
            for name, t in uses.items():
                with pytest.raises(capnp.KjException) as e:
                    await t.read()
                messages[(seen, name)] = e.value.description
        conn.close()
        return messages

    for (seen, name), msg in run(main()).items():
        assert "matmul: inner dimensions" in msg, (seen, name, msg)
        assert "another worker" not in msg, (seen, name, msg)
        assert msg.count("remote exception") <= 1, (seen, name, msg)


def test_arange_past_an_integer_dtype_is_refused_and_select_errors_say_select(worker):
    async def main():
        conn, tw = await connect(worker)
        out = []
        t = tw.arange(dtype="i32", start=2147483646, stop=2147483650, step=1).tensor
        with pytest.raises(capnp.KjException) as e:
            await t.read()
        out.append(e.value.description)
        f = tw.fromData(data=to_wire(np.ones(2), "f32")).tensor
        d = tw.fromData(data=to_wire(np.ones(2), "f64")).tensor
        # Branches of two dtypes promote; a condition that is not bool fails.
        with pytest.raises(capnp.KjException) as e:
            await d.select(ifTrue=f, ifFalse=d).result.read()
        out.append(e.value.description)
        conn.close()
        return out

    arange, select = run(main())
    assert "arange: value 2147483649 at index 3 does not fit dtype i32" in arange, arange
    assert "select: dtypes bool and f64" in select and "where" not in select, select


def test_schema_v4_ops_match_numpy(worker):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5)).astype("<f4") * 4
    xi = rng.integers(-9, 9, size=(3, 5)).astype("<i4")
    yi = rng.integers(1, 5, size=(3, 5)).astype("<i4") * np.where(rng.random((3, 5)) < 0.5, -1, 1).astype("<i4")
    yf = (rng.standard_normal((3, 5)) * 3).astype("<f8")
    xf = (rng.standard_normal((3, 5)) * 5).astype("<f8")
    xf[0, 0] = np.nan
    b = rng.random((3, 5)) < 0.5

    async def main():
        conn, tw = await connect(worker)
        t = tw.fromData(data=to_wire(x, "f32")).tensor
        ti = tw.fromData(data=to_wire(xi, "i32")).tensor
        tyi = tw.fromData(data=to_wire(yi, "i32")).tensor
        tf = tw.fromData(data=to_wire(xf, "f64")).tensor
        tyf = tw.fromData(data=to_wire(yf, "f64")).tensor
        tb = tw.fromData(data=to_wire(b, "bool")).tensor
        got = {}
        for op in ["mod", "floorDivide"]:
            got[op + " i32"] = await read(ti.binary(op=op, other=tyi).result)
            got[op + " f64"] = await read(tf.binary(op=op, other=tyf).result)
        for op in ["logicalAnd", "logicalOr", "logicalXor"]:
            got[op] = await read(ti.binary(op=op, other=tb.cast(dtype="i32").result).result)
        for op in ["floor", "ceil", "round", "sin", "cos", "tan", "log1p", "expm1",
                   "logicalNot", "isnan", "isfinite"]:
            got[op] = await read(tf.unary(op=op).result)
        for op in ["floor", "round", "logicalNot", "isnan", "isfinite"]:
            got[op + " i32"] = await read(ti.unary(op=op).result)
        for op in ["sum", "prod", "var", "std", "any", "all", "normL1", "normL2", "normInf"]:
            got[op] = await read(t.reduce(op=op, axis=-1, allAxes=False, keepDims=False,
                                          ddof=1).result)
            got[op + " all"] = await read(ti.reduce(op=op, axis=0, allAxes=True,
                                                    keepDims=True, ddof=0).result)
        got["softmax"] = await read(t.softmax(axis=1, log=False).result)
        got["log_softmax"] = await read(t.softmax(axis=0, log=True).result)
        got["cumsum"] = await read(ti.cumulative(op="cumsum", axis=-1).result)
        got["cumprod"] = await read(t.cumulative(op="cumprod", axis=0).result)
        got["cumsum bool"] = await read(tb.cumulative(op="cumsum", axis=1).result)
        got["clip"] = await read(tf.clip(min={"float": -1.0}, hasMin=True, max={"float": 2.5},
                                         hasMax=True).result)
        got["clip i32"] = await read(ti.clip(min={"int": -3}, hasMin=True, hasMax=False).result)
        errors = {}
        for name, bad in {
            "softmax": ti.softmax(axis=0, log=False).result,
            "mod": ti.binary(op="mod", other=ti.binary(op="sub", other=ti).result).result,
            "cumulative": t.cumulative(op="cumsum", axis=2).result,
            "clip": ti.clip(min={"float": 0.5}, hasMin=True, hasMax=False).result,
        }.items():
            with pytest.raises(capnp.KjException) as e:
                await bad.read()
            errors[name] = e.value.description
        conn.close()
        return got, errors

    got, errors = run(main())
    with np.errstate(all="ignore"):
        want = {
            "mod i32": np.mod(xi, yi), "floorDivide i32": np.floor_divide(xi, yi),
            "mod f64": np.mod(xf, yf), "floorDivide f64": np.floor_divide(xf, yf),
            "logicalAnd": np.logical_and(xi, b), "logicalOr": np.logical_or(xi, b),
            "logicalXor": np.logical_xor(xi, b),
            "floor": np.floor(xf), "ceil": np.ceil(xf), "round": np.round(xf),
            "sin": np.sin(xf), "cos": np.cos(xf), "tan": np.tan(xf),
            "log1p": np.log1p(xf), "expm1": np.expm1(xf),
            "logicalNot": np.logical_not(xf), "isnan": np.isnan(xf), "isfinite": np.isfinite(xf),
            "floor i32": np.floor(xi).astype("<i4"), "round i32": xi,
            "logicalNot i32": np.logical_not(xi), "isnan i32": np.isnan(xi),
            "isfinite i32": np.isfinite(xi),
            "sum": x.sum(-1), "prod": x.prod(-1), "var": x.var(-1, ddof=1),
            "std": x.std(-1, ddof=1), "any": x.any(-1), "all": x.all(-1),
            "normL1": np.linalg.norm(x, 1, axis=-1), "normL2": np.linalg.norm(x, 2, axis=-1),
            "normInf": np.linalg.norm(x, np.inf, axis=-1),
            "sum all": xi.sum(keepdims=True), "prod all": xi.prod(keepdims=True),
            "var all": xi.var(keepdims=True), "std all": xi.std(keepdims=True),
            "any all": xi.any(keepdims=True), "all all": xi.all(keepdims=True),
            "normL1 all": np.abs(xi).sum(keepdims=True).astype("<f8"),
            "normL2 all": np.sqrt((xi.astype("<f8") ** 2).sum(keepdims=True)),
            "normInf all": np.abs(xi).max(keepdims=True).astype("<f8"),
            "softmax": np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True),
            "log_softmax": (x - x.max(0)) - np.log(np.exp(x - x.max(0)).sum(0)),
            "cumsum": np.cumsum(xi, -1), "cumprod": np.cumprod(x, 0),
            "cumsum bool": np.cumsum(b, 1),
            "clip": np.clip(xf, -1.0, 2.5), "clip i32": np.clip(xi, -3, None),
        }
    for name, w in want.items():
        g = got[name]
        assert g.shape == np.shape(w), (name, g.shape, np.shape(w))
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
    assert errors["softmax"].endswith("softmax: not supported for dtype i32"), errors
    assert "mod: integer division by zero" in errors["mod"], errors
    assert "cumsum: axis 2 is out of range" in errors["cumulative"], errors
    assert "clip: scalar 0.5 is not an integer" in errors["clip"], errors
