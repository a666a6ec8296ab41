"""A Python client of a user-defined actor: the `Trainer` of
`examples/trainer`, whose schema extends capactor's `TensorWorker`.

pycapnp loads `examples/trainer/schema/trainer.capnp` with capactor's
`schema/` on its import path (where the schema finds `/tensor.capnp`), as
the trainer's build.rs does. It calls the trainer's own methods, pipelined
on tensors made with the inherited ones, and serves a `Progress` callback
the trainer calls back over the same connection.

The binary comes from $CAPACTOR_TRAINER_BIN, else from beside
$CAPACTOR_BIN, else `target/debug/trainer-worker` under the repository
root.
"""

import asyncio
import math
import os
import secrets
import subprocess
from pathlib import Path

import capnp
import numpy as np
import pytest

from conftest import HOST, REPO, SCHEMA, START_TIMEOUT, _read_address, _stop

TRAINER_SCHEMA = REPO / "examples" / "trainer" / "schema"
CALL_TIMEOUT = 30.0

# A parser of our own: conftest loaded capactor's files by absolute path,
# and pycapnp refuses to know one file under two names ("Duplicate ID").
# Here they are known by their import-path names, as trainer.capnp
# imports them.
_parser = capnp.SchemaParser()
# The standard imports (/capnp/stream.capnp) ship inside the pycapnp package.
_IMPORTS = [str(SCHEMA), str(Path(capnp.__file__).resolve().parents[1])]
actor_capnp = _parser.load(str(SCHEMA / "actor.capnp"), imports=_IMPORTS)
tensor_capnp = _parser.load(str(SCHEMA / "tensor.capnp"), imports=_IMPORTS)
trainer_capnp = _parser.load(str(TRAINER_SCHEMA / "trainer.capnp"), imports=_IMPORTS)


def run(coro):
    """Runs `coro` on asyncio with pycapnp's KJ event loop attached."""
    return asyncio.run(capnp.run(asyncio.wait_for(coro, CALL_TIMEOUT)))


def _binary() -> Path:
    env = os.environ.get("CAPACTOR_TRAINER_BIN")
    if env:
        path = Path(env)
    elif os.environ.get("CAPACTOR_BIN"):
        # Built by the same `cargo build`, into the same directory.
        path = Path(os.environ["CAPACTOR_BIN"]).parent / "trainer-worker"
    else:
        path = REPO / "target" / "debug" / "trainer-worker"
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        pytest.fail(
            f"trainer-worker binary not found at {path}: build it with "
            "`cargo build -p capactor-trainer --bin trainer-worker` or set "
            "CAPACTOR_TRAINER_BIN",
            pytrace=False,
        )
    return path


class Trainer:
    """A running `trainer-worker`."""

    def __init__(self, proc, host, port, token, token_file, stderr_path):
        self.proc = proc
        self.host = host
        self.port = port
        self.token = token
        self.token_file = token_file
        self.stderr_path = stderr_path


@pytest.fixture
def trainer_worker(tmp_path):
    """A `trainer-worker` on 127.0.0.1 that checks a random token; stopped
    with SIGTERM at teardown, and must exit cleanly."""
    token = secrets.token_hex(32).encode()
    token_file = tmp_path / "trainer.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(token + b"\n")
    args = [str(_binary()), "--listen", f"{HOST}:0", "--name", "py-trainer",
            "--token-file", str(token_file), "--grace", "5"]
    env = dict(os.environ)
    env.pop("CAPACTOR_TOKEN", None)
    stderr_path = tmp_path / "trainer.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env=env)
    try:
        addr = _read_address(proc, START_TIMEOUT)
    except Exception as e:
        _stop(proc)
        raise RuntimeError(f"trainer-worker did not start ({e}); stderr:\n"
                           + stderr_path.read_text(errors="replace")) from None
    host, _, port = addr.rpartition(":")
    assert host == HOST
    t = Trainer(proc, HOST, int(port), token, token_file, stderr_path)
    yield t
    code = _stop(proc)
    assert code == 0, ("trainer-worker exited with "
                       f"{code}; stderr:\n{stderr_path.read_text(errors='replace')}")


async def connect(t):
    """Opens the trainer's gate; returns the connection's parts (keep them
    alive) and the pipelined `Trainer`."""
    stream = await capnp.AsyncIoStream.create_connection(host=t.host, port=t.port)
    client = capnp.TwoPartyClient(stream)
    gate = client.bootstrap().cast_as(actor_capnp.Gate)
    actor = gate.open(token=t.token).actor
    return (stream, client), actor.cast_as(trainer_capnp.Trainer)


def to_wire(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "f32", "shape": list(a.shape), "data": a.tobytes()}


def scalar(data) -> float:
    assert str(data.dtype) == "f32" and list(data.shape) == []
    return float(np.frombuffer(data.data, dtype="<f4")[0])


def batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 3)).astype("<f4")
    y = (x @ np.array([1.5, -2.0, 0.5], dtype="<f4") > 0).astype("<f4")
    return x, y


def reference_losses(x, y, lr, steps):
    """The trainer's update rule, in numpy."""
    w = np.zeros((x.shape[1], 1), dtype="<f4")
    losses = []
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)[:, 0]))
        losses.append(float(-np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7))))
        w -= lr * (x.T @ (p - y)[:, None]) / len(y)
    return losses, w


def test_step_pipelines_on_tensors_made_with_inherited_methods(trainer_worker):
    x, y = batch()

    async def main():
        conn, tr = await connect(trainer_worker)
        losses = []
        for _ in range(3):
            # fromData (TensorWorker's), step (Trainer's) and read (Tensor's):
            # sent together, one round trip.
            tx = tr.fromData(data=to_wire(x)).tensor
            ty = tr.fromData(data=to_wire(y)).tensor
            loss = tr.step(x=tx, y=ty, learningRate=0.5).loss
            losses.append(scalar((await loss.read()).data))
        weights = await tr.weights().weights.read()
        return losses, weights.data

    losses, weights = run(main())
    expected, w = reference_losses(x, y, 0.5, 3)
    assert math.isclose(losses[0], math.log(2), rel_tol=1e-4)
    np.testing.assert_allclose(losses, expected, rtol=1e-4)
    assert list(weights.shape) == [3, 1]
    np.testing.assert_allclose(np.frombuffer(weights.data, dtype="<f4").reshape(3, 1), w,
                               rtol=1e-4, atol=1e-6)


class Observer(trainer_capnp.Progress.Server):
    """The client's own `Progress`, served by Python."""

    def __init__(self, stop_at):
        self.heard = []
        self.stop_at = stop_at

    async def report(self, step, loss, _context, **kwargs):
        self.heard.append((step, loss))
        _context.results.stop = step >= self.stop_at


def test_train_calls_a_python_observer_back_over_the_same_connection(trainer_worker):
    x, y = batch()
    observer = Observer(stop_at=4)

    async def main():
        conn, tr = await connect(trainer_worker)
        r = await tr.train(x=tr.fromData(data=to_wire(x)).tensor,
                           y=tr.fromData(data=to_wire(y)).tensor,
                           learningRate=0.5, steps=10, observer=observer)
        return r.steps, r.loss

    steps, loss = run(main())
    assert steps == 4
    assert [s for s, _ in observer.heard] == [1, 2, 3, 4]
    expected, _ = reference_losses(x, y, 0.5, 4)
    np.testing.assert_allclose([l for _, l in observer.heard], expected, rtol=1e-4)
    assert loss == pytest.approx(observer.heard[-1][1])


def test_info_lists_the_trainer_first(trainer_worker):
    async def main():
        conn, tr = await connect(trainer_worker)
        return (await tr.cast_as(actor_capnp.Actor).info()).info

    info = run(main())
    assert info.name == "py-trainer" and info.kind == "trainer"
    assert info.schemaVersion == actor_capnp.schemaVersion
    assert info.runtime.startswith("capactor ")
    assert [(i.id, i.name) for i in info.interfaces] == [
        (trainer_capnp.Trainer.schema.node.id, "Trainer"),
        (tensor_capnp.TensorWorker.schema.node.id, "TensorWorker"),
        (actor_capnp.Actor.schema.node.id, "Actor"),
    ]


def test_capactor_info_prints_the_trainers_interfaces(trainer_worker, capactor_bin):
    out = subprocess.run(
        [str(capactor_bin), "info", f"{trainer_worker.host}:{trainer_worker.port}",
         "--token-file", str(trainer_worker.token_file)],
        capture_output=True, text=True, timeout=CALL_TIMEOUT,
        env={k: v for k, v in os.environ.items() if k != "CAPACTOR_TOKEN"},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    listed = lines[lines.index("interfaces:") + 1:]
    assert [line.split() for line in listed] == [
        [f"{trainer_capnp.Trainer.schema.node.id:#018x}", "Trainer"],
        [f"{tensor_capnp.TensorWorker.schema.node.id:#018x}", "TensorWorker"],
        [f"{actor_capnp.Actor.schema.node.id:#018x}", "Actor"],
    ]
