"""Runs many full lifecycles through the raw API, then checks that the emulator holds no
handles, documents or systems, that no fd or child process is left, and that the library's
threads wind down once idle. Exits non-zero with a message on any leak."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from pyhcs._native import _backend as B

CONFIG = json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}})
B.hcs_modify_service_settings(json.dumps({"PropertyType": "Emulator", "Settings": {"WorkerIdleMs": 50}}))


def stats() -> dict[str, Any]:
    doc = B.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorStatistics"]}))
    statistics: dict[str, Any] = json.loads(doc)["Properties"][0]
    return statistics


def children() -> list[int]:
    me = os.getpid()
    out: list[int] = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                text = open(f"/proc/{name}/stat").read()
            except OSError:
                continue
            # a private emulator service (HCSEMU_SERVICE=private) is this process's child by design
            if int(text[text.rindex(")") + 2 :].split()[1]) == me and "(hcsemud" not in text:
                out.append(int(name))
    return out


def lifecycle(i: int) -> None:
    op = B.hcs_create_operation()
    events = threading.Event()
    s = B.hcs_create_compute_system(f"leak-{i}", CONFIG, op)
    B.hcs_wait_for_operation_result(op, 10_000)
    B.hcs_set_compute_system_callback(s, 0, i, lambda e, c: events.set())
    B.hcs_start_compute_system(s, op)
    B.hcs_wait_for_operation_result(op, 10_000)
    p = B.hcs_create_process(s, json.dumps({"CommandLine": "echo hi; cat", "CreateStdInPipe": True,
                                            "CreateStdOutPipe": True, "CreateStdErrPipe": True}), op)
    info, _ = B.hcs_wait_for_operation_result_and_process_info(op, 10_000)
    B.hcs_get_compute_system_properties(s, op, json.dumps({"PropertyTypes": ["Statistics", "ProcessList"]}))
    B.hcs_wait_for_operation_result(op, 10_000)
    if i % 2:
        B.hcs_terminate_compute_system(s, op)
        B.hcs_wait_for_operation_result(op, 10_000)
        events.wait(10)
    for fd in (info.std_input, info.std_output, info.std_error):
        assert fd is not None  # all three pipes were asked for
        B.close_handle(fd)
    B.hcs_close_process(p)
    B.hcs_close_operation(op)
    # even systems are closed while running: ShouldTerminateOnLastHandleClosed is false, so
    # they live on; terminate them through a fresh handle, as a sweeper would
    if not i % 2:
        h = B.hcs_open_compute_system(f"leak-{i}")
        op = B.hcs_create_operation()
        B.hcs_terminate_compute_system(h, op)
        B.hcs_wait_for_operation_result(op, 10_000)
        B.hcs_close_operation(op)
        B.hcs_close_compute_system(h)
    B.hcs_close_compute_system(s)


stats()  # connected to the service (if any) before counting descriptors
fds_before = len(os.listdir("/proc/self/fd"))
for i in range(60):
    lifecycle(i)
B.flush_callbacks()
deadline = time.monotonic() + 10
busy: dict[str, Any] = {}
while time.monotonic() < deadline:
    st = stats()
    busy = {k: v for k, v in st.items() if k in ("Operations", "SystemHandles", "ProcessHandles", "Systems",
                                                   "Processes", "Documents", "WorkerThreads") and v}
    if not busy and not children():
        break
    time.sleep(0.05)
problems: list[str] = []
if busy:
    problems.append(f"emulator still holds {busy}")
if children():
    problems.append(f"child processes left: {children()}")
fds_after = len(os.listdir("/proc/self/fd"))
if fds_after > fds_before:
    problems.append(f"file descriptors grew from {fds_before} to {fds_after}")
if problems:
    print("LEAKS:", "; ".join(problems))
    sys.exit(1)
print("no leaks")
