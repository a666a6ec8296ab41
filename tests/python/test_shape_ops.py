"""The shape ops of schema version 4 from an independent client (pycapnp,
written from `schema/` alone), each checked against numpy: contractions,
layout, order, erf and the makers, and bad input that fails only its own
call with a message naming the op and the shapes."""

import math

import capnp
import numpy as np
import pytest

from test_tensor_client import connect, read, run, to_wire


def test_shape_ops_match_numpy(worker):
    rng = np.random.default_rng(12)
    a = rng.standard_normal((3, 4)).astype("<f8")
    b = rng.standard_normal((4, 5)).astype("<f8")
    batch = rng.standard_normal((2, 3, 4)).astype("<f4")
    batch2 = rng.standard_normal((2, 4, 2)).astype("<f4")
    sq = rng.standard_normal((4, 4)).astype("<f8")
    t3 = rng.standard_normal((2, 3, 4)).astype("<f8")
    t3b = rng.standard_normal((4, 3, 2)).astype("<f8")
    xi = rng.integers(-5, 5, size=(3, 6)).astype("<i4")
    xs = rng.standard_normal((3, 6)).astype("<f8")
    xs[1, 2] = np.nan
    xs[0, :2] = 7.0  # ties, for stability

    async def main():
        conn, tw = await connect(worker)
        ta = tw.fromData(data=to_wire(a, "f64")).tensor
        tb = tw.fromData(data=to_wire(b, "f64")).tensor
        tbatch = tw.fromData(data=to_wire(batch, "f32")).tensor
        tbatch2 = tw.fromData(data=to_wire(batch2, "f32")).tensor
        tsq = tw.fromData(data=to_wire(sq, "f64")).tensor
        t3t = tw.fromData(data=to_wire(t3, "f64")).tensor
        t3bt = tw.fromData(data=to_wire(t3b, "f64")).tensor
        ti = tw.fromData(data=to_wire(xi, "i32")).tensor
        ts = tw.fromData(data=to_wire(xs, "f64")).tensor
        got = {}
        for name, subs, ops in [
            ("matmul", "ij,jk->ik", [ta, tb]),
            ("implicit", "ij,jk", [ta, tb]),
            ("outer", "i,j->ij", [tsq, tsq]),
            ("batched", "bij,bjk->bik", [tbatch, tbatch2]),
            ("ellipsis", "...ij,...jk->...ik", [tbatch, tbatch2]),
            ("trace", "ii->", [tsq]),
            ("diagonal", "ii->i", [tsq]),
            ("transpose", "ij->ji", [ta]),
            ("sum rows", "ij->j", [ta]),
            ("three", "ij,jk,kl->il", [ta, tb, tb.transpose(perm=[]).result]),
        ]:
            if name == "outer":
                ops = [tsq.reshape(shape=[-1]).result, tsq.reshape(shape=[-1]).result]
            got["einsum " + name] = await read(tw.einsum(subscripts=subs, operands=ops).tensor)
        got["tensordot 1"] = await read(t3t.tensordot(other=t3bt, axes=1).result)
        got["tensordot lists"] = await read(t3t.tensordot(other=t3bt, axesSelf=[1, 2],
                                                          axesOther=[1, 0]).result)
        got["stack"] = await read(tw.stack(tensors=[ta, ta], axis=-1).tensor)
        split = await ti.split(axis=1, sections=3, indices=[])
        got["split"] = [await read(p) for p in split.parts]
        at = await ti.split(axis=-1, sections=0, indices=[2, -1, 10])
        got["split at"] = [await read(p) for p in at.parts]
        got["squeeze"] = await read(ta.reshape(shape=[1, 3, 1, 4]).result.squeeze(axes=[]).result)
        got["squeeze axis"] = await read(ta.reshape(shape=[1, 3, 1, 4]).result.squeeze(axes=[-2]).result)
        got["expand_dims"] = await read(ta.expandDims(axes=[0, -1]).result)
        got["broadcast_to"] = await read(ti.reshape(shape=[3, 1, 6]).result.broadcastTo(shape=[2, 3, 4, 6]).result)
        got["tile"] = await read(ti.tile(reps=[2, 1, 2]).result)
        got["flip"] = await read(ti.flip(axes=[]).result)
        got["flip axis"] = await read(ti.flip(axes=[-1]).result)
        got["sort"] = await read(ts.sort(axis=-1).result)
        got["sort 0"] = await read(ts.sort(axis=0).result)
        got["argsort"] = await read(ts.argsort(axis=1).result)
        got["argsort i32"] = await read(ti.argsort(axis=0).result)
        top = ti.topk(k=3, axis=1, largest=True)
        got["topk values"] = await read(top.values)
        got["topk indices"] = await read(top.indices)
        low = ti.topk(k=2, axis=0, largest=False)
        got["bottomk values"] = await read(low.values)
        got["erf"] = await read(ta.unary(op="erf").result)
        got["eye"] = await read(tw.eye(dtype="f32", n=3, m=4, hasM=True, k=1).tensor)
        got["eye square"] = await read(tw.eye(dtype="i64", n=3, k=-1).tensor)
        got["linspace"] = await read(tw.linspace(dtype="f64", start=-1, stop=2, num=7).tensor)
        got["linspace open"] = await read(tw.linspace(dtype="f32", start=0, stop=1, num=4,
                                                      endpoint=False).tensor)
        got["linspace int"] = await read(tw.linspace(dtype="i64", start=-1, stop=10, num=4).tensor)
        got["randint"] = await read(tw.randint(dtype="i32", low=-2, high=3, shape=[50, 4], seed=4).tensor)
        got["randint again"] = await read(tw.randint(dtype="i32", low=-2, high=3, shape=[50, 4],
                                                     seed=4).tensor)
        got["permutation"] = await read(tw.permutation(n=20, seed=1).tensor)
        got["permutation again"] = await read(tw.permutation(n=20, seed=1).tensor)
        conn.close()
        return got

    got = run(main())
    want = {
        "einsum matmul": a @ b,
        "einsum implicit": np.einsum("ij,jk", a, b),
        "einsum outer": np.einsum("i,j->ij", sq.ravel(), sq.ravel()),
        "einsum batched": np.einsum("bij,bjk->bik", batch, batch2),
        "einsum ellipsis": np.einsum("...ij,...jk->...ik", batch, batch2),
        "einsum trace": np.einsum("ii->", sq),
        "einsum diagonal": np.einsum("ii->i", sq),
        "einsum transpose": a.T,
        "einsum sum rows": a.sum(0),
        "einsum three": np.einsum("ij,jk,kl->il", a, b, b.T),
        "tensordot 1": np.tensordot(t3, t3b, 1),
        "tensordot lists": np.tensordot(t3, t3b, ([1, 2], [1, 0])),
        "stack": np.stack([a, a], -1),
        "squeeze": a.reshape(1, 3, 1, 4).squeeze(),
        "squeeze axis": a.reshape(1, 3, 1, 4).squeeze(-2),
        "expand_dims": np.expand_dims(a, (0, -1)),
        "broadcast_to": np.broadcast_to(xi.reshape(3, 1, 6), (2, 3, 4, 6)),
        "tile": np.tile(xi, (2, 1, 2)),
        "flip": np.flip(xi),
        "flip axis": np.flip(xi, -1),
        "sort": np.sort(xs, -1),
        "sort 0": np.sort(xs, 0),
        "argsort": np.argsort(xs, 1, kind="stable"),
        "argsort i32": np.argsort(xi, 0, kind="stable"),
        "erf": np.vectorize(math.erf)(a),
        "eye": np.eye(3, 4, 1, dtype="<f4"),
        "eye square": np.eye(3, k=-1, dtype="<i8"),
        "linspace": np.linspace(-1, 2, 7),
        "linspace open": np.linspace(0, 1, 4, endpoint=False, dtype="<f4"),
        "linspace int": np.linspace(-1, 10, 4, dtype="<i8"),
    }
    # topk as torch.topk: the k largest in order, ties by lower index.
    order = np.argsort(-xi, 1, kind="stable")[:, :3]
    want["topk values"] = np.take_along_axis(xi, order, 1)
    want["topk indices"] = order
    want["bottomk values"] = np.sort(xi, 0)[:2]
    for name, w in want.items():
        g = got[name]
        assert g.shape == np.shape(w), (name, g.shape, np.shape(w))
        assert g.dtype == np.asarray(w).dtype, (name, g.dtype)
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
    for g, w in zip(got["split"], np.split(xi, 3, 1)):
        np.testing.assert_array_equal(g, w)
    parts = np.split(xi, [2, -1, 10], -1)
    assert len(got["split at"]) == len(parts)
    for g, w in zip(got["split at"], parts):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    r = got["randint"]
    assert r.shape == (50, 4) and r.dtype == np.dtype("<i4")
    assert set(np.unique(r)) == {-2, -1, 0, 1, 2}
    np.testing.assert_array_equal(r, got["randint again"])
    p = got["permutation"]
    assert p.dtype == np.dtype("<i8")
    np.testing.assert_array_equal(np.sort(p), np.arange(20))
    np.testing.assert_array_equal(p, got["permutation again"])


def test_bad_shape_op_input_fails_only_its_call(worker):
    a = np.arange(6, dtype="<f8").reshape(2, 3)

    async def main():
        conn, tw = await connect(worker)
        t = tw.fromData(data=to_wire(a, "f64")).tensor
        errors = {}
        for name, bad in {
            "einsum char": tw.einsum(subscripts="ij,j%", operands=[t, t]).tensor,
            "einsum count": tw.einsum(subscripts="ij,jk->ik", operands=[t]).tensor,
            "einsum dims": tw.einsum(subscripts="ij,jk->ik", operands=[t, t]).tensor,
            "tensordot": t.tensordot(other=t, axes=0, axesSelf=[1], axesOther=[0]).result,
            "squeeze": t.squeeze(axes=[1]).result,
            "axes": t.flip(axes=[2]).result,
            "topk": t.topk(k=4, axis=1, largest=True).values,
            "broadcast": t.broadcastTo(shape=[2, 2]).result,
            "stack": tw.stack(tensors=[t, t.transpose(perm=[]).result], axis=0).tensor,
            "erf": t.cast(dtype="i32").result.unary(op="erf").result,
            "randint": tw.randint(dtype="f64", low=0, high=3, shape=[2], seed=0).tensor,
        }.items():
            with pytest.raises(capnp.KjException) as e:
                await bad.read()
            errors[name] = e.value.description
        with pytest.raises(capnp.KjException) as e:
            await t.split(axis=1, sections=2, indices=[])
        errors["split"] = e.value.description
        ok = await read(t.sort(axis=0).result)
        conn.close()
        return errors, ok

    errors, ok = run(main())
    np.testing.assert_array_equal(ok, a)
    for name, words in {
        "einsum char": ["einsum: invalid character '%'"],
        "einsum count": ["einsum:", "name 2 operands but 1 were given"],
        "einsum dims": ["einsum:", "length 3 in operand 0 (shape [2, 3]) but 2 in operand 1"],
        "tensordot": ["tensordot:", "[2, 3]", "differ"],
        "squeeze": ["squeeze: cannot remove axis 1 of length 3 from shape [2, 3]"],
        "axes": ["flip: axis 2 is out of range for shape [2, 3]"],
        "topk": ["topk: k (4) is larger than axis 1 of length 3 (shape [2, 3])"],
        "broadcast": ["broadcastTo: cannot broadcast shape [2, 3] to shape [2, 2]"],
        "stack": ["stack: all arrays must have one shape, got [2, 3] and [3, 2]"],
        "erf": ["erf: not supported for dtype i32"],
        "randint": ["randint: not supported for dtype f64"],
        "split": ["split: 2 sections do not divide axis 1 of length 3 (shape [2, 3])"],
    }.items():
        for w in words:
            assert w in errors[name], (name, errors[name])
