"""Did the code under test leave anything behind? Snapshots and their comparison.

::

    from pyhcs.testing import leaks

    before = leaks.snapshot()
    run_the_code()
    leaks.check(before)          # raises LeakError, naming what was left behind

What a snapshot holds:

* the emulator's live objects (``EmulatorStatistics``): operation, system and process handles,
  compute systems, processes and result documents nobody freed (only on the emulator);
* pyhcs' own registries: event hubs (a ComputeSystem or Process object not closed) and
  operations waiting for a completion callback;
* this process's open file descriptors (``/proc/self/fd`` or ``/dev/fd``), with what they
  point to;
* its child processes that have not exited (Linux), with their command lines: the emulator runs
  every compute system and process as a real child.

Things wind down asynchronously (callbacks are delivered on a dispatcher thread, exited
children are reaped by the emulator), so :func:`check` polls for a while before it reports;
when nothing leaked it returns at once.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["EMULATOR_COUNTERS", "LeakError", "Snapshot", "check", "compare", "open_objects", "snapshot"]

#: The EmulatorStatistics counters a test must give back (WorkerThreads is left out: idle
#: threads end on their own after a while).
EMULATOR_COUNTERS: tuple[str, ...] = (
    "Operations",
    "SystemHandles",
    "ProcessHandles",
    "Systems",
    "Processes",
    "Documents",
)

_DESCRIPTIONS = {
    "Operations": "operation handle(s)",
    "SystemHandles": "compute system handle(s)",
    "ProcessHandles": "process handle(s)",
    "Systems": "compute system(s)",
    "Processes": "process(es) in compute systems",
    "Documents": "result document(s) never freed",
    "event hubs": "pyhcs ComputeSystem/Process object(s) not closed",
    "pending operations": "pyhcs Operation(s) still waiting for HCS to complete them",
}


class LeakError(AssertionError):
    """Something was left behind; ``problems`` lists what, one line each."""

    def __init__(self, problems: list[str], hint: str = "") -> None:
        self.problems = problems
        text = "leaked " + "; ".join(problems[:1]) if len(problems) == 1 else "leaked:\n  " + "\n  ".join(problems)
        super().__init__(text + (f"\n{hint}" if hint else ""))


@dataclass(frozen=True)
class Snapshot:
    """What was alive at one moment (see the module docstring)."""

    counters: Mapping[str, int]
    """Emulator counters and pyhcs registry sizes by name."""
    fds: Mapping[int, str] | None = None
    """Open file descriptor -> what it points to; None where the platform cannot tell."""
    children: Mapping[int, str] | None = None
    """Live child process id -> command line; None where the platform cannot tell."""
    emulated: bool = field(default=True)


# ------------------------------------------------------------------------------------ probes


def _raw(backend: ModuleType | None) -> ModuleType:
    if backend is not None:
        return backend
    from .. import _backend

    return _backend


def _emulator_counters(raw: ModuleType) -> dict[str, int] | None:
    from .._library import is_emulator

    if not is_emulator(str(raw.library_path())):
        return None
    text = raw.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorStatistics"]}))
    stats: dict[str, Any] = json.loads(text)["Properties"][0]
    return {name: int(stats.get(name, 0)) for name in EMULATOR_COUNTERS}


def _pyhcs_counters() -> dict[str, int]:
    out: dict[str, int] = {}
    events = sys.modules.get("pyhcs.events")
    hubs = getattr(events, "_hubs", None)
    if isinstance(hubs, dict):
        out["event hubs"] = len(hubs)
    operation = sys.modules.get("pyhcs.operation")
    pending = getattr(operation, "pending_count", None)
    if callable(pending):
        out["pending operations"] = int(pending())
    return out


def _fd_dir() -> str | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return None


def _open_fds() -> dict[int, str] | None:
    path = _fd_dir()
    if path is None:
        return None
    try:
        names = os.listdir(path)
    except OSError:
        return None
    out: dict[int, str] = {}
    for name in names:
        if not name.isdigit():
            continue
        fd = int(name)
        try:
            target = os.readlink(f"{path}/{name}")
        except OSError:
            # The descriptor listdir itself used, gone by now; or not a link (/dev/fd on macOS).
            try:
                os.fstat(fd)
            except OSError:
                continue
            target = ""
        out[fd] = target
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ")"
    return text[text.rfind(")") + 2 :].split()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def _children() -> dict[int, str] | None:
    """Live (not zombie) children of this process, from /proc; None off Linux."""
    if not os.path.isdir("/proc/self/task"):
        return None
    me = os.getpid()
    pids: set[int] = set()
    # /proc/<pid>/task/<tid>/children is cheap but needs CONFIG_PROC_CHILDREN; else scan.
    try:
        tasks = os.listdir("/proc/self/task")
        found_file = False
        for tid in tasks:
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    found_file = True
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                continue
        if not found_file:
            raise OSError
    except OSError:
        pids.clear()
        for name in os.listdir("/proc"):
            if name.isdigit():
                fields = _stat_fields(int(name))
                if fields is not None and len(fields) > 1 and fields[1] == str(me):
                    pids.add(int(name))
    out: dict[int, str] = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X"):
            continue  # gone, or exited and about to be reaped
        cmd = _cmdline(pid)
        if "hcsemud" in cmd and cmd.endswith("--private"):
            continue  # the emulator's private service (HCSEMU_SERVICE=private) lives as long as we do
        out[pid] = cmd
    return out


def snapshot(backend: ModuleType | None = None, *, fds: bool = True, children: bool = True) -> Snapshot:
    """What is alive now. ``backend``: the raw module to ask the emulator through (default
    ``pyhcs._backend``). Off the emulator only pyhcs' registries, fds and children count."""
    raw = _raw(backend)
    counters: dict[str, int] = {}
    emulated = _emulator_counters(raw)
    if emulated is None and fds:
        # The emulator connects to its service process on first use (HCSEMU_SERVICE): make that
        # connection part of "before" (on real HCS this is a harmless Basic query).
        with contextlib.suppress(Exception):
            raw.hcs_get_service_properties(None)
    if emulated is not None:
        counters.update(emulated)
    counters.update(_pyhcs_counters())
    return Snapshot(
        counters=counters,
        fds=_open_fds() if fds else None,
        children=_children() if children else None,
        emulated=emulated is not None,
    )


# ------------------------------------------------------------------------------------ comparing


def compare(before: Snapshot, after: Snapshot) -> list[str]:
    """What ``after`` holds that ``before`` did not, one human-readable line per kind ([] if
    nothing)."""
    problems: list[str] = []
    for name, now in after.counters.items():
        was = before.counters.get(name, 0)
        if now > was:
            problems.append(f"{now - was} {_DESCRIPTIONS.get(name, name)} ({name}: {was} before, {now} after)")
    if before.fds is not None and after.fds is not None and len(after.fds) > len(before.fds):
        new = {fd: t for fd, t in after.fds.items() if before.fds.get(fd) != t}
        shown = ", ".join(f"{fd} -> {t or '?'}" for fd, t in sorted(new.items())[:10])
        problems.append(
            f"{len(after.fds) - len(before.fds)} file descriptor(s) ({len(before.fds)} open before, "
            f"{len(after.fds)} after; new: {shown or 'reused numbers'})"
        )
    if before.children is not None and after.children is not None:
        new_children = {pid: cmd for pid, cmd in after.children.items() if pid not in before.children}
        if new_children:
            shown = ", ".join(f"{pid} ({cmd})" for pid, cmd in sorted(new_children.items())[:10])
            problems.append(f"{len(new_children)} child process(es) still running: {shown}")
    return problems


def open_objects() -> list[str]:
    """The pyhcs objects alive and not closed (reprs), found through the garbage collector.

    Slow-ish (it walks every object): used to explain a leak, not to detect one.
    """
    handle_module = sys.modules.get("pyhcs._handle")
    base = getattr(handle_module, "Handle", None)
    if not isinstance(base, type):
        return []
    gc.collect()
    out: list[str] = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, base) and not getattr(obj, "closed", True):
                out.append(repr(obj))
        except Exception:  # pragma: no cover - a half-built object
            continue
    return sorted(out)


def _settle(raw: ModuleType) -> None:
    flush = getattr(raw, "flush_callbacks", None)
    if callable(flush):
        try:
            flush(1.0)
        except Exception:  # pragma: no cover - best effort
            pass


def check(
    before: Snapshot,
    *,
    timeout: float = 10.0,
    backend: ModuleType | None = None,
    hint: str = "",
) -> None:
    """Raises :class:`LeakError` if, within ``timeout`` seconds, the process does not get back
    to ``before`` (only counts that grew matter). Returns at once when nothing leaked."""
    raw = _raw(backend)
    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.01
    while True:
        _settle(raw)
        after = snapshot(raw, fds=before.fds is not None, children=before.children is not None)
        problems = compare(before, after)
        if not problems:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    objects = open_objects()
    if objects:
        problems.append("pyhcs objects open now: " + ", ".join(objects[:10]))
    raise LeakError(problems, hint)
