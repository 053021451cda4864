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

A snapshot also starts recording the pyhcs objects the garbage collector closes (objects
dropped without ``close()``: pyhcs closes them in their finalizer, with a ResourceWarning that
is otherwise hidden by default); :func:`check` reports those too, as the pytest plugin does.
:func:`watch` pairs the two in a ``with`` block.

Things wind down asynchronously (callbacks are delivered on a dispatcher thread, exited
children are reaped by the emulator), so :func:`check` polls for a while before it reports;
when nothing leaked it returns at once. On the emulator a check that finds every count back
where it was skips the full garbage collection: an unclosed pyhcs object always still owns a
handle, an event hub, a pending operation or a descriptor, which the counts show.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO, cast

from ..emulator._control import EmulatorControl

__all__ = [
    "EMULATOR_COUNTERS",
    "LeakError",
    "Snapshot",
    "check",
    "compare",
    "open_objects",
    "release",
    "snapshot",
    "watch",
]

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
    gc_closed: int = 0
    """How many pyhcs objects the garbage collector had closed (while recording) when taken."""
    token: object | None = field(default=None, compare=False, repr=False)
    """Keeps the recording of garbage-collected objects going until :func:`check` or
    :func:`release` (None: not recording)."""


# ------------------------------------------------------------------------------------ finalizers

_UNCLOSED = re.compile(r"unclosed <pyhcs\.")


class _GcClosedRecorder:
    """Records the "unclosed <pyhcs...>" ResourceWarnings pyhcs' finalizers give, while at
    least one snapshot is being compared; other warnings go where they would have gone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[str] = []
        self._tokens: set[int] = set()
        self._previous: Any = None

    def start(self) -> tuple[object, int]:
        token = object()
        with self.lock:
            if not self._tokens:
                self.messages = []
                self._install()
            self._tokens.add(id(token))
            return token, len(self.messages)

    def stop(self, token: object | None) -> None:
        with self.lock:
            if token is None or id(token) not in self._tokens:
                return
            self._tokens.discard(id(token))
            if not self._tokens:
                self._uninstall()

    def since(self, index: int) -> list[str]:
        with self.lock:
            return self.messages[index:]

    def _install(self) -> None:
        warnings.filterwarnings("always", category=ResourceWarning, message=_UNCLOSED.pattern)
        self._previous = warnings.showwarning
        warnings.showwarning = self._show

    def _uninstall(self) -> None:
        if warnings.showwarning == self._show:
            warnings.showwarning = self._previous
        self._previous = None
        # A test runner may have put back its own filter list meanwhile: remove ours if there.
        for entry in list(warnings.filters):
            pattern = entry[1]
            if entry[0] == "always" and entry[2] is ResourceWarning and pattern is not None \
                    and getattr(pattern, "pattern", None) == _UNCLOSED.pattern:
                cast("list[Any]", warnings.filters).remove(entry)
                mutated = getattr(warnings, "_filters_mutated", None)
                if callable(mutated):
                    mutated()
                break

    def _show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, ResourceWarning) and _UNCLOSED.match(str(message)):
            with self.lock:
                self.messages.append(str(message))
            return
        previous = self._previous or getattr(warnings, "_showwarning_orig", None)
        impl = getattr(warnings, "_showwarnmsg_impl", None)
        if previous is getattr(warnings, "_showwarning_orig", None) and callable(impl):
            # What warnings itself does when showwarning was not replaced (a runner's
            # catch_warnings(record=True) collects through this).
            impl(warnings.WarningMessage(message, category, filename, lineno, file, line))
        elif callable(previous):
            previous(message, category, filename, lineno, file, line)


_recorder = _GcClosedRecorder()


# ------------------------------------------------------------------------------------ probes


def _raw(backend: ModuleType | None) -> ModuleType:
    if backend is not None:
        return backend
    from .._native import _backend

    return _backend


def _emulator_counters(raw: ModuleType) -> dict[str, int] | None:
    control = EmulatorControl(raw)
    if not control.active:
        return None
    stats = control.statistics()
    return {name: int(stats.get(name, 0)) for name in EMULATOR_COUNTERS}


def _pyhcs_counters() -> dict[str, int]:
    out: dict[str, int] = {}
    events = sys.modules.get("pyhcs.events")
    hubs: object = getattr(events, "_hubs", None)
    if isinstance(hubs, dict):
        out["event hubs"] = len(cast("dict[object, object]", hubs))
    operation = sys.modules.get("pyhcs.operation")
    pending: object = getattr(operation, "pending_count", None)
    if callable(pending):
        out["pending operations"] = int(cast("Callable[[], int]", pending)())
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


def _probe(raw: ModuleType, *, fds: bool, children: bool) -> Snapshot:
    """What is alive now, without starting a recording (for comparisons)."""
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


def snapshot(backend: ModuleType | None = None, *, fds: bool = True, children: bool = True) -> Snapshot:
    """What is alive now. ``backend``: the raw module to ask the emulator through (default
    ``pyhcs._native._backend``). Off the emulator only pyhcs' registries, fds and children count.

    Starts recording the pyhcs objects the garbage collector closes, until :func:`check` (or
    :func:`release`) with this snapshot."""
    now = _probe(_raw(backend), fds=fds, children=children)
    token, gc_closed = _recorder.start()
    return Snapshot(
        counters=now.counters,
        fds=now.fds,
        children=now.children,
        emulated=now.emulated,
        gc_closed=gc_closed,
        token=token,
    )


def release(before: Snapshot) -> None:
    """Stops recording for ``before`` without checking (e.g. the code under test failed)."""
    _recorder.stop(before.token)


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
    try:
        _settle(raw)
        after = _probe(raw, fds=before.fds is not None, children=before.children is not None)
        problems = compare(before, after)
        collected = False
        if problems or not after.emulated:
            # A pyhcs object dropped without close() while it still owned something shows as a
            # grown count (its native handle, event hub, pending operation or descriptor); only
            # then, or where the emulator cannot count handles, is a full collection (which runs
            # the finalizers of dropped objects caught in reference cycles) worth its cost:
            # about 0.1-0.2 s in a large test process, most of a clean check's time otherwise.
            gc.collect()
            collected = True
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.01
        while collected:
            _settle(raw)
            after = _probe(raw, fds=before.fds is not None, children=before.children is not None)
            problems = compare(before, after)
            if not problems or time.monotonic() >= deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        dropped = _recorder.since(before.gc_closed) if before.token is not None else []
        if not problems and not dropped:
            return
    finally:
        _recorder.stop(before.token)
    if dropped:
        problems.insert(
            0,
            "pyhcs objects dropped without close() (the garbage collector closed them): "
            + ", ".join(dropped[:10]),
        )
    objects = open_objects()
    if objects:
        problems.append("pyhcs objects open now: " + ", ".join(objects[:10]))
    raise LeakError(problems, hint)


@contextlib.contextmanager
def watch(
    *, timeout: float = 10.0, backend: ModuleType | None = None, hint: str = ""
) -> Generator[Snapshot, None, None]:
    """``with leaks.watch(): ...`` checks at the end of the block that it left nothing behind
    (:class:`LeakError` otherwise). A block that raises is not checked: its error wins."""
    before = snapshot(backend)
    try:
        yield before
    except BaseException:
        release(before)
        raise
    check(before, timeout=timeout, backend=backend, hint=hint)
