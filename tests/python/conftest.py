"""Fixtures for the cross-language client tests: a `capactor worker` process
on 127.0.0.1 (or on a Unix socket in a temporary directory), and the
schemas loaded from `schema/` (and nothing else).

The binary comes from $CAPACTOR_BIN (CI sets it), else
`target/debug/capactor` under the repository root.
"""

import dataclasses
import os
import queue
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import capnp
import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schema"
HOST = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds for the worker to print its address
STOP_TIMEOUT = 20.0  # seconds for the worker to exit after SIGTERM

# Loaded once, by absolute path: pycapnp refuses to load the same file
# twice under two names ("Duplicate ID"), and tensor.capnp imports
# actor.capnp by a path relative to itself.
# The standard imports (/capnp/stream.capnp, which the `-> stream` methods
# of schema v3 need) ship inside the pycapnp package.
IMPORTS = [str(Path(capnp.__file__).resolve().parents[1])]
actor_capnp = capnp.load(str(SCHEMA / "actor.capnp"), imports=IMPORTS)
tensor_capnp = capnp.load(str(SCHEMA / "tensor.capnp"), imports=IMPORTS)


@dataclasses.dataclass
class Worker:
    """A running `capactor worker`."""

    host: str
    port: int
    # The token the gate accepts (b"" when the worker runs without auth).
    token: bytes
    # True if the worker was started with --token-file and checks tokens.
    checks_tokens: bool
    proc: subprocess.Popen
    stderr_path: Path
    # The socket file of a worker listening on a Unix socket (host and port
    # are then empty).
    unix_path: Path | None = None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""


def _binary() -> Path:
    env = os.environ.get("CAPACTOR_BIN")
    path = Path(env) if env else REPO / "target" / "debug" / "capactor"
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        pytest.fail(
            f"capactor binary not found at {path}: build it with "
            "`cargo build --bin capactor` or set CAPACTOR_BIN",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def capactor_bin() -> Path:
    return _binary()


@pytest.fixture(scope="session")
def worker_flags(capactor_bin) -> frozenset:
    """The long options `capactor worker --help` lists (read once)."""
    out = subprocess.run(
        [str(capactor_bin), "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return frozenset(
        word.split("=")[0].rstrip(",")
        for word in out.split()
        if word.startswith("--")
    )


def _read_address(proc: subprocess.Popen, timeout: float) -> str:
    """The address from the worker's single stdout line `listening on ADDR`."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: lines.put(proc.stdout.readline()), daemon=True
    ).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"worker printed nothing within {timeout} s")
    prefix = "listening on "
    if not line.startswith(prefix):
        raise RuntimeError(f"unexpected first line from the worker: {line!r}")
    return line[len(prefix):].strip()


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _start(capactor_bin: Path, flags: frozenset, tmp: Path, *, auth: bool,
           extra=(), unix=False) -> Worker:
    """Starts a worker on 127.0.0.1 with an OS-chosen port, or with `unix`
    on the socket `tmp/worker.sock`.

    With `auth` and a binary that knows --token-file, a random token goes
    to a 0600 file the worker reads. Otherwise the worker runs without
    authentication: with --insecure-no-auth if the binary knows it (newer
    binaries refuse to start without auth), else with no extra flag.
    """
    listen = f"unix:{tmp / 'worker.sock'}" if unix else f"{HOST}:0"
    args = [str(capactor_bin), "worker", "--listen", listen, "--name", "py"]
    token = b""
    checks_tokens = False
    if auth and "--token-file" in flags:
        token = secrets.token_hex(32).encode()
        path = tmp / "worker.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(token + b"\n")
        args += ["--token-file", str(path)]
        checks_tokens = True
    elif "--insecure-no-auth" in flags:
        args.append("--insecure-no-auth")
    if "--grace" in flags:
        args += ["--grace", "5"]
    args += list(extra)

    env = dict(os.environ)
    env.pop("CAPACTOR_TOKEN", None)  # only the token file decides
    env.setdefault("RUST_LOG", "info")
    stderr_path = tmp / "worker.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    try:
        addr = _read_address(proc, START_TIMEOUT)
    except Exception as e:
        _stop(proc)
        raise RuntimeError(
            f"worker did not start ({e}); args {args[1:]}; stderr:\n"
            + stderr_path.read_text(errors="replace")
        ) from None
    if unix:
        assert addr == listen, f"worker listens on {addr}, expected {listen}"
        return Worker("", 0, token, checks_tokens, proc, stderr_path,
                      unix_path=tmp / "worker.sock")
    host, _, port = addr.rpartition(":")
    assert host == HOST, f"worker listens on {addr}, expected {HOST}"
    return Worker(HOST, int(port), token, checks_tokens, proc, stderr_path)


@pytest.fixture
def make_worker(capactor_bin, worker_flags, tmp_path_factory):
    """Starts workers on demand: `make_worker(auth=True, extra=[...],
    unix=False)`.
    Every worker started is stopped (SIGTERM, then wait) at teardown and
    must exit cleanly."""
    started = []

    def make(*, auth=True, extra=(), unix=False):
        # A short directory for Unix sockets: a socket path holds at most
        # 107 bytes, and pytest's temporary directories can be deep.
        tmp = (Path(tempfile.mkdtemp(prefix="capactor-py-")) if unix
               else tmp_path_factory.mktemp("capactor-py-"))
        w = _start(capactor_bin, worker_flags, tmp, auth=auth, extra=extra, unix=unix)
        started.append(w)
        return w

    yield make
    failures = []
    for w in started:
        code = _stop(w.proc)
        if code != 0:
            failures.append(f"worker exited with {code} after SIGTERM; stderr:\n{w.stderr()}")
        if w.unix_path is not None:
            shutil.rmtree(w.unix_path.parent, ignore_errors=True)
    assert not failures, "\n".join(failures)


@pytest.fixture
def worker(make_worker):
    """A worker that checks tokens when the binary supports --token-file
    (its token is `worker.token`)."""
    return make_worker(auth=True)


@pytest.fixture
def open_worker(make_worker):
    """A worker without authentication (loopback only)."""
    return make_worker(auth=False)


@pytest.fixture
def small_worker(make_worker, worker_flags):
    """A worker whose tensors may hold at most 1 MiB."""
    if "--memory-mib" not in worker_flags:
        pytest.skip("this capactor binary has no --memory-mib option")
    return make_worker(auth=True, extra=["--memory-mib", "1"])
