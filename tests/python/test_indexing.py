"""Indexing with tensors and assignment (schema version 4) from pycapnp,
checked against numpy, and the statements of docs/PROTOCOL.md's
"Assignment" section that a second, independent client can observe: E-order
over one connection, copy-on-write for what was derived or stored before,
nothing written by a failed assignment."""

import capnp
import numpy as np
import pytest

from test_tensor_client import connect, read, run, to_wire


def full_slice(start=None, stop=None, step=1):
    spec = {"step": step}
    if start is not None:
        spec.update(start=start, hasStart=True)
    if stop is not None:
        spec.update(stop=stop, hasStop=True)
    return spec


def test_indexing_ops_match_numpy(worker):
    x = np.arange(24, dtype="<f8").reshape(2, 3, 4)
    along = np.array([[[3, -4, 0, 1]], [[-1, 2, 2, 0]]], dtype="<i8")  # shape (2, 1, 4)
    rows = np.array([[2, 0], [-1, 1]], dtype="<i4")
    mask2 = np.array([[True, False, True], [False, False, True]])
    xi = np.zeros((3, 4), dtype="<i8")
    at = np.array([[0, 0, 3], [1, 1, 1], [2, -1, 2]], dtype="<i8")
    vals = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype="<i8")

    async def main():
        conn, tw = await connect(worker)
        t = tw.fromData(data=to_wire(x, "f64")).tensor
        ti = tw.fromData(data=to_wire(xi, "i64")).tensor
        got = {}
        got["take_along_axis"] = await read(t.takeAlongAxis(
            indices=tw.fromData(data=to_wire(along, "i64")).tensor, axis=-1).result)
        got["index_select"] = await read(t.indexSelect(
            indices=tw.fromData(data=to_wire(rows, "i32")).tensor, axis=1).result)
        got["mask rows"] = await read(t.maskSelect(
            mask=tw.fromData(data=to_wire(mask2, "bool")).tensor).result)
        gt = t.compareScalar(op="gt", scalar={"float": 17.5}).result
        got["mask full"] = await read(t.maskSelect(mask=gt).result)
        idx = tw.fromData(data=to_wire(at, "i64")).tensor
        v = tw.fromData(data=to_wire(vals, "i64")).tensor
        got["scatter"] = await read(ti.scatter(indices=idx, values=v, axis=1,
                                               accumulate=False).result)
        got["scatter_add"] = await read(ti.scatter(indices=idx, values=v, axis=1,
                                                   accumulate=True).result)
        conn.close()
        return got

    got = run(main())
    want_scatter = xi.copy()
    np.put_along_axis(want_scatter, at, vals, axis=1)
    want_add = xi.copy()
    np.add.at(want_add, (np.arange(3)[:, None], at), vals)
    want = {
        "take_along_axis": np.take_along_axis(x, along, axis=-1),
        "index_select": np.take(x, rows, axis=1),
        "mask rows": x[mask2],
        "mask full": x[x > 17.5],
        "scatter": want_scatter,
        "scatter_add": want_add,
    }
    for name, w in want.items():
        np.testing.assert_array_equal(got[name], w, err_msg=name)
        assert got[name].shape == w.shape, name


def test_bad_indices_fail_only_their_call_naming_what_was_wrong(worker):
    x = np.arange(12, dtype="<f8").reshape(3, 4)

    async def main():
        conn, tw = await connect(worker)
        t = tw.fromData(data=to_wire(x, "f64")).tensor
        errors = {}
        for name, bad in {
            "range": t.indexSelect(indices=tw.fromData(
                data=to_wire(np.array([0, -5]), "i64")).tensor, axis=-1).result,
            "float": t.takeAlongAxis(indices=t, axis=0).result,
            "mask": t.maskSelect(mask=tw.fromData(
                data=to_wire(np.array([True, False]), "bool")).tensor).result,
            "scatter": t.scatter(indices=tw.fromData(
                data=to_wire(np.array([[9]]), "i64")).tensor, values=t, axis=0,
                accumulate=False).result,
        }.items():
            with pytest.raises(capnp.KjException) as e:
                await bad.read()
            errors[name] = e.value.description
        ok = await read(t)
        conn.close()
        return errors, ok

    errors, ok = run(main())
    assert "indexSelect: index -5 is out of bounds for axis 1 with size 4" in errors["range"]
    assert "takeAlongAxis: indices must have an integer dtype, not f64" in errors["float"]
    assert "maskSelect: mask of shape [2] does not match the array of shape [3, 4]" in errors["mask"]
    assert "scatter: index 9 is out of bounds for axis 0 with size 3" in errors["scatter"]
    np.testing.assert_array_equal(ok, x)


def test_assignment_in_e_order_copy_on_write_and_all_or_nothing(worker):
    x = np.arange(12, dtype="<i8").reshape(3, 4)

    async def main():
        conn, tw = await connect(worker)
        t = tw.fromData(data=to_wire(x, "i64")).tensor
        derived = t.binaryScalar(op="add", scalar={"int": 0}, scalarOnLeft=False).result
        await derived.meta()
        # `name` clashes with pycapnp's own argument: build the requests.
        store = tw.store_request()
        store.name, store.tensor = "before", t
        await store.send()
        # x[1:, ::2] = -[[70000], [70000]], the value a pipelined result the
        # worker computes off its event loop; the read is sent at once after
        # it, on the same capability.
        ones = tw.full(dtype="i64", shape=[2, 70000], value={"int": 1}).tensor
        value = ones.reduce(op="sum", axis=1, allAxes=False, keepDims=True,
                            ddof=0).result.unary(op="neg").result
        done = t.assign(specs=[full_slice(1), full_slice(step=2)], value=value)
        after = read(t)
        got = {"after": await after, "result": await read(done.result)}
        got["derived"] = await read(derived)
        load = tw.load_request()
        load.name = "before"
        got["stored"] = await read(load.send().tensor)
        # x[x < 0] = 100, then a failed assignment that writes nothing.
        neg = t.compareScalar(op="lt", scalar={"int": 0}).result
        hundred = tw.fromData(data=to_wire(np.array(100), "i64")).tensor
        got["masked"] = await read(t.assignMask(mask=neg, value=hundred).result)
        bad = t.assign(specs=[full_slice(0, 2)],
                       value=tw.fromData(data=to_wire(np.arange(3), "i64")).tensor)
        with pytest.raises(capnp.KjException) as e:
            await bad.result.read()
        got["error"] = e.value.description
        got["unchanged"] = await read(t)
        conn.close()
        return got

    got = run(main())
    want = x.copy()
    want[1:, ::2] = -np.array([[70000], [70000]])
    np.testing.assert_array_equal(got["after"], want)
    np.testing.assert_array_equal(got["result"], want)
    np.testing.assert_array_equal(got["derived"], x)
    np.testing.assert_array_equal(got["stored"], x)
    want[want < 0] = 100
    np.testing.assert_array_equal(got["masked"], want)
    assert ("assign: could not broadcast a value of shape [3] into the slice of shape [2, 4]"
            in got["error"]), got["error"]
    np.testing.assert_array_equal(got["unchanged"], want)


def test_assignment_and_scatter_cast_values_of_another_dtype_as_numpy_does(worker):
    x = np.zeros(5, dtype="<i8")
    floats = np.array([2.7, -1.5], dtype="<f8")

    async def main():
        conn, tw = await connect(worker)
        t = tw.fromData(data=to_wire(x, "i64")).tensor
        v = tw.fromData(data=to_wire(floats, "f64")).tensor
        assigned = await read(t.assign(specs=[full_slice(3)], value=v).result)
        at = tw.fromData(data=to_wire(np.array([0, 1]), "i64")).tensor
        scattered = await read(t.scatter(indices=at, values=v, axis=0,
                                         accumulate=False).result)
        conn.close()
        return assigned, scattered

    assigned, scattered = run(main())
    want = x.copy()
    want[3:] = floats  # NumPy casts, truncating toward zero
    np.testing.assert_array_equal(assigned, want)
    np.put_along_axis(want, np.array([0, 1]), floats, 0)
    np.testing.assert_array_equal(scattered, want)
