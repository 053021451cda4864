"""Small helpers for raw-level tests (not fixtures: plain functions taking the backend)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Generator
from types import ModuleType
from typing import Any

from pyhcs._native._types import HcsEvent
from pyhcs.emulator._control import EmulatorControl

from pyutil import new_id  # one counter for every test id of the process: ids never repeat

__all__ = ["new_id"]  # re-exported: raw tests import it from here


def ignore_event(event: HcsEvent, context: int) -> None:
    """An event callback that ignores what it is given."""


def ignore_completion(operation: int, context: int) -> None:
    """An operation completion callback that ignores what it is given."""


def container_config(**extra: Any) -> str:
    doc: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests", "Container": {}}
    doc.update(extra)
    return json.dumps(doc)


def wait(hcs: ModuleType, op: int, timeout_ms: int = 10_000) -> str | None:
    result: str | None = hcs.hcs_wait_for_operation_result(op, timeout_ms)
    return result


@contextlib.contextmanager
def operation(hcs: ModuleType) -> Generator[int, None, None]:
    op: int = hcs.hcs_create_operation()
    try:
        yield op
    finally:
        hcs.hcs_close_operation(op)


@contextlib.contextmanager
def running_system(hcs: ModuleType, system_id: str | None = None, **config: Any) -> Generator[int, None, None]:
    """A started container; terminated (if still running) and closed afterwards."""
    sid = system_id or new_id()
    with operation(hcs) as op:
        h: int = hcs.hcs_create_compute_system(sid, container_config(**config), op)
        try:
            wait(hcs, op)
            hcs.hcs_start_compute_system(h, op)
            wait(hcs, op)
            yield h
        finally:
            with contextlib.suppress(Exception):
                hcs.hcs_terminate_compute_system(h, op)
                wait(hcs, op)
            hcs.hcs_close_compute_system(h)


def shell_cmdline(command: str) -> str:
    """A Container's CommandLine that runs the shell command. A Container is a Windows guest:
    the emulator splits its CommandLine by the Windows rules and runs it without a shell, so
    the command becomes ``sh -c <command>`` quoted by those rules, unless the emulator's
    ``ContainerCommandLine`` switch is ``Shell`` (the line then goes to /bin/sh -c as it is)."""
    if EmulatorControl().settings().get("ContainerCommandLine") == "Shell":
        return command
    return subprocess.list2cmdline(["sh", "-c", command])


def start_process(hcs: ModuleType, system: int, command: str, **params: Any) -> tuple[int, Any]:
    """Starts the shell command in a Container (see shell_cmdline); returns (process handle,
    HcsProcessInformation)."""
    doc = {"CommandLine": shell_cmdline(command), **params}
    with operation(hcs) as op:
        p = hcs.hcs_create_process(system, json.dumps(doc), op)
        info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
    return p, info


def read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def close_info(info: Any) -> None:
    for fd in (info.std_input, info.std_output, info.std_error):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def emulator_stats(hcs: ModuleType) -> dict[str, Any]:
    return EmulatorControl(hcs).statistics()


def set_switches(hcs: ModuleType, **switches: Any) -> None:
    EmulatorControl(hcs).configure(**switches)


def add_faults(hcs: ModuleType, *faults: dict[str, Any]) -> None:
    EmulatorControl(hcs).add_faults(*faults)
