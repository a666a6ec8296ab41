"""The language-neutral conformance suite (tests/conformance/), run by its
pycapnp runner against `capactor worker` processes: the same cases the Rust
and C++ runners run."""

import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "conformance" / "run.py"


def test_every_conformance_case_passes_against_two_workers(make_worker):
    main = make_worker(auth=True, extra=["--memory-mib", "256"])
    peer = make_worker(auth=True, extra=["--memory-mib", "256"])
    tokens = []
    for w, name in ((main, "main.token"), (peer, "peer.token")):
        path = w.stderr_path.parent / name
        path.write_bytes(w.token)
        tokens.append(str(path))
    out = subprocess.run(
        [sys.executable, str(RUNNER),
         "--address", f"{main.host}:{main.port}", "--token-file", tokens[0],
         "--peer", f"{peer.host}:{peer.port}", "--peer-token-file", tokens[1]],
        capture_output=True, text=True, timeout=600,
    )
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert out.returncode == 0 and " 0 failed" in summary, out.stdout + out.stderr
