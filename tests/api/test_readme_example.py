"""The README's example (docs/example.py) runs, and prints what its comments promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "example.py"


def test_readme_example_runs() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "3 b'hello\\n' b'oops\\n'"
    assert lines[1].startswith("b'apple\\npear\\n' ExitStatus(") and "code=0" in lines[1]
    assert lines[2].startswith("HCS_E_INVALID_STATE (0x80370105) in HcsStartComputeSystem [system 'readme-demo']")
    # the wait in stop() returns only after the event's callbacks ran: the order is fixed
    assert lines[3:5] == ["event: SystemExited", "GracefulExit ['SystemExited']"]
    assert "[b'0\\n', b'1\\n', b'2\\n']" in lines
    assert "still running: True" in lines
    assert "ResourceWarning" not in out.stderr
