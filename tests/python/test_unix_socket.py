"""A Python client of a `capactor worker --listen unix:/path`, from
`schema/` alone: the same gate, calls and errors as over TCP, a socket
file only its user can open, and gone once the worker stops.
"""

import os
import signal
import stat

import capnp
import numpy as np

from conftest import STOP_TIMEOUT, actor_capnp
from test_tensor_client import assert_clean_message, connect, read, run, to_wire


def test_a_unix_worker_serves_a_pipelined_chain_from_a_private_socket(make_worker):
    w = make_worker(auth=True, unix=True)
    assert stat.S_ISSOCK(os.stat(w.unix_path).st_mode)
    assert stat.S_IMODE(os.stat(w.unix_path).st_mode) == 0o600

    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4)).astype("<f4")
    m = rng.standard_normal((4, 2)).astype("<f4")

    async def main():
        conn, tw = await connect(w)
        tx = tw.fromData(data=to_wire(x, "f32")).tensor
        tm = tw.fromData(data=to_wire(m, "f32")).tensor
        # Gate, uploads, matmul, relu and sum: one pipelined flight.
        total = (tx.matmul(other=tm).result.unary(op="relu").result
                 .reduce(op="sum", axis=0, allAxes=True, keepDims=False).result)
        got = await read(total)
        conn.close()
        return got

    np.testing.assert_allclose(run(main()), np.maximum(x @ m, 0).sum(), rtol=1e-5)


def test_a_unix_worker_refuses_a_wrong_token_with_a_clean_error(make_worker):
    w = make_worker(auth=True, unix=True)

    async def main():
        stream = await capnp.AsyncIoStream.create_unix_connection(str(w.unix_path))
        client = capnp.TwoPartyClient(stream)
        gate = client.bootstrap().cast_as(actor_capnp.Gate)
        try:
            await gate.open(token=b"not the token").actor.ping()
        except capnp.KjException as e:
            return e.description
        finally:
            client.close()
            stream.close()
        raise AssertionError("a wrong token opened the gate")

    msg = run(main())
    assert "credential rejected" in msg, msg
    assert w.token.decode() not in msg
    assert_clean_message(msg)


def test_a_stopped_unix_worker_removes_its_socket_file(make_worker):
    w = make_worker(auth=True, unix=True)

    async def main():
        conn, tw = await connect(w)
        got = await read(tw.arange(dtype="i64", start=0, stop=4, step=1).tensor)
        conn.close()
        return got

    np.testing.assert_array_equal(run(main()), np.arange(4, dtype="<i8"))
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=STOP_TIMEOUT) == 0, w.stderr()
    assert not w.unix_path.exists()
