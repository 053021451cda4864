"""Ctrl-C interrupts a synchronous HCS call that never returns (the emulator's ``Hang`` fault on
a function without an operation), on both backends, like it interrupts every wait
(pyhcs._native._blocking explains how). Each case runs in its own interpreter, which sends itself
SIGINT 0.5 s into the hung call and must get KeyboardInterrupt within a couple of seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyhcs

from conftest import BACKENDS

SRC = Path(pyhcs.__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")

_SCRIPT = """
import json, os, signal, sys, threading, time
from pyhcs._native import _backend as B
function = sys.argv[1]
calls = {
    "HcsOpenComputeSystem": lambda: B.hcs_open_compute_system("hung"),
    "HcsGetServiceProperties": lambda: B.hcs_get_service_properties(None),
    "HcsModifyServiceSettings": lambda: B.hcs_modify_service_settings('{"PropertyType": "GuestNetwork"}'),
    "HcsWaitForComputeSystemExit": lambda: B.hcs_wait_for_compute_system_exit(0x5A5A5A5A, 0xFFFFFFFF),
    "HcsSetComputeSystemCallback": lambda: B.hcs_set_compute_system_callback(0x5A5A5A5A, 0, 1, lambda e, c: None),
    "HcsCreateEmptyGuestStateFile": lambda: B.hcs_create_empty_guest_state_file("/nonexistent/g.vmgs"),
    "HcsDestroyLayer": lambda: B.hcs_destroy_layer("/nonexistent/layer"),
}
def control(kind, settings):
    B.hcs_modify_service_settings(json.dumps({"PropertyType": kind, "Settings": settings}))
control("EmulatorFaults", {"Faults": [{"Function": function, "Hang": True}]})
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    calls[function]()
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - start:.2f}", flush=True)
else:
    print("returned", flush=True)
# The hung call goes on on a helper thread: a disconnect ends every hang.
control("EmulatorActions", {"Action": "ServiceDisconnect"})
control("EmulatorActions", {"Action": "Reset"})
"""

FUNCTIONS = [
    "HcsOpenComputeSystem",
    "HcsGetServiceProperties",
    "HcsModifyServiceSettings",
    "HcsWaitForComputeSystemExit",
    "HcsSetComputeSystemCallback",
    "HcsCreateEmptyGuestStateFile",
    "HcsDestroyLayer",
]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name", BACKENDS)
def test_ctrl_c_interrupts_a_hung_synchronous_call(name: str, function: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYHCS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["PYHCS_BACKEND"] = name
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), function],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    words = out.stdout.split()
    assert words[:2] == ["KeyboardInterrupt", "after"], out.stdout + out.stderr
    assert 0.4 <= float(words[2]) < 2.5, out.stdout
