"""Replaying a trace against the emulator and reporting where it behaves otherwise.

Every call of the trace is made again, with the same arguments; handles are the replay's own
(``system#1`` of the trace maps to whatever the emulator returns for the call that made it).
Callbacks are registered where the trace registered them, and record what the replay delivers.

Order. Calls of one traced thread run in one replay thread, in their order. A call starts only
once everything the trace shows had happened before it started has happened in the replay too:
every call that had returned, and every event and completion that had been delivered. Calls
that overlapped in the trace overlap in the replay. If a precondition is not met within the
bound, that is a divergence (``order``) and the call is made anyway.

Waits. A wait that timed out in the trace waits its own timeout (at most the bound); one that
returned in the trace may wait up to the bound, since the emulator's speed is not the host's.
A poll (``HcsGetOperationResult``) that found the operation complete in the trace is repeated
until it does here too (up to the bound). An operation that was still pending or a wait that
timed out in the trace but completes in the replay is a timing difference, not a divergence
(``--strict`` reports it).

Pipes. What went through a process's std pipes is not traced: the replay writes nothing to
stdin (it closes it where the trace did) and reads and discards stdout and stderr, so that a
process never blocks on a full pipe.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import select
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import errors
from .._narrow import is_json_object
from .._native._library import is_emulator
from .._native._types import HcsEvent
from . import _spec
from ._compare import diff
from ._file import MISSING, Call, Event, Trace, load
from ._values import doc_from_trace, doc_to_trace, event_type_name, hresult_label

_PENDING = frozenset(errors.to_unsigned(c) for c in (0x80370117, 0xC0370117, 0xC0370103))
_TIMEOUTS = frozenset({0x80370118, 0xC0370118, 0x80070102, 0x800705B4})
_POLLS = frozenset({"hcs_get_operation_result", "hcs_get_operation_result_and_process_info"})
_VOLATILE_RESULTS = frozenset({"hcs_get_operation_id"})


@dataclass
class Divergence:
    """One place where the replay behaved otherwise than the trace."""

    line: int
    """The line of the trace file (of the call or the event)."""
    where: str
    """The call, ``HcsStartComputeSystem(system#1, op#1)``, or ``events of system#1``."""
    what: str
    """``hresult``, ``exception``, ``result``, ``error_document``, ``process_info``, ``handle``,
    ``event``, ``completion`` or ``order``."""
    member: str | None
    """For documents: the member's path (``Statistics.Memory``, ``[0].State``)."""
    expected: Any
    actual: Any
    volatile: bool = False

    def __str__(self) -> str:
        member = f" member {self.member}" if self.member else ""
        line = f"line {self.line}: " if self.line else ""
        return f"{line}{self.where}: {self.what}{member}: trace {_show(self.expected)}, replay {_show(self.actual)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "where": self.where,
            "what": self.what,
            "member": self.member,
            "expected": None if self.expected is MISSING else self.expected,
            "expected_missing": self.expected is MISSING,
            "actual": None if self.actual is MISSING else self.actual,
            "actual_missing": self.actual is MISSING,
            "volatile": self.volatile,
        }


def _show(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, default=repr)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class ReplayReport:
    path: str
    backend: str
    library: str
    calls: int = 0
    events: int = 0
    divergences: list[Divergence] = field(default_factory=list[Divergence])
    ignored: list[Divergence] = field(default_factory=list[Divergence])
    """Volatile differences, not counted as divergences (every difference with strict)."""

    @property
    def ok(self) -> bool:
        return not self.divergences

    def summary(self) -> str:
        head = (
            f"replayed {self.calls} calls and {self.events} events of {self.path} "
            f"on the {self.backend} backend, library {self.library}: "
        )
        tail = f" ({len(self.ignored)} volatile differences ignored)" if self.ignored else ""
        if self.ok:
            return head + "no divergence" + tail
        return head + f"{len(self.divergences)} divergence{'s' if len(self.divergences) != 1 else ''}" + tail


def _backend_name(raw: ModuleType) -> str:
    name = getattr(raw, "backend", None)
    if isinstance(name, str):
        return name
    return {"pyhcs._native.cython._core": "cython", "pyhcs._native.ctypes": "ctypes"}.get(raw.__name__, raw.__name__)


def _closes_stdin(settings: Any) -> bool:
    """Whether an HcsModifyProcess document closes the process's stdin."""
    if is_json_object(settings):
        handle = settings.get("CloseHandle")
        return settings.get("Operation") == "CloseHandle" and is_json_object(handle) and handle.get("Handle") == "StdIn"
    return False


def describe(call: Call) -> str:
    parts: list[str] = []
    for p in call.spec.params:
        value = call.args.get(p.name)
        if p.kind in _spec.HANDLE_KINDS:
            parts.append(str(value) if value is not None else "NULL")
        elif p.kind == "callback":
            parts.append("callback" if value else "NULL")
        elif p.kind == "value" and isinstance(value, str) and len(value) <= 60:
            parts.append(json.dumps(value))  # ids and paths: which system, which layer
    return f"{call.spec.cname}({', '.join(parts)})"


class _Drain:
    """Reads and discards a process's output pipe so that the process never blocks on it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stopped = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="pyhcs-replay-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
            except (OSError, ValueError):
                return
            with self.lock:
                if self.stopped:
                    return
                if ready:
                    try:
                        if not os.read(self.fd, 65536):
                            return
                    except OSError:
                        return

    def stop(self) -> None:
        with self.lock:  # after this no read can start, so the descriptor may be closed
            self.stopped = True


class _Replayer:
    def __init__(self, trace: Trace, raw: ModuleType, strict: bool, wait_bound: float) -> None:
        self.trace = trace
        self.raw = raw
        self.strict = strict
        self.bound = wait_bound
        self.bound_ms = max(1, int(wait_bound * 1000))
        self.cond = threading.Condition()
        self.handles: dict[str, int] = {}
        self.reverse: dict[tuple[str, int], str] = {}
        self.listening: set[str] = set()
        self.got_events: dict[str, list[tuple[int, Any, str | None]]] = defaultdict(list)
        self.got_completions: dict[str, int] = defaultdict(int)
        self.drains: dict[str, _Drain] = {}
        self.process_of_op: dict[str, str] = {}
        self.stdin_of: dict[str, str] = {}
        self.closed_early: set[str] = set()
        self.given_up: set[tuple[str, str]] = set()
        self.report = ReplayReport(trace.path, _backend_name(raw), str(raw.library_path()))
        self._stale = 0
        self.calls = trace.calls
        self.done = [False] * len(self.calls)
        self.prefix = 0
        self._plan()

    # -- what must have happened before each call ---------------------------------------
    def _plan(self) -> None:
        seqs = [c.seq for c in self.calls]
        self.need_calls = [bisect.bisect_left(seqs, c.start) for c in self.calls]
        self.events = self.trace.events
        ev_seqs = [e.seq for e in self.events]
        # how many events and completions the trace had delivered when each call started
        self.need_upto = [bisect.bisect_left(ev_seqs, c.start) for c in self.calls]
        # each event's ordinal on its handle: the n-th event of system#1 needs n in the replay
        per: dict[tuple[str, str], int] = defaultdict(int)
        self.ev_key: list[tuple[str, str]] = []
        self.ev_ord: list[int] = []
        for e in self.events:
            key = (e.kind, e.handle or "")
            per[key] += 1
            self.ev_key.append(key)
            self.ev_ord.append(per[key])
        self.ev_ptr = 0  # every event before this one has its counterpart in the replay

    def _got(self, kind: str, sym: str) -> int:
        if kind == "completion":
            return self.got_completions.get(sym, 0)
        return len(self.got_events.get(sym, ()))

    def _event_pending(self, j: int) -> bool:
        kind, sym = self.ev_key[j]
        return sym in self.listening and (kind, sym) not in self.given_up and self._got(kind, sym) < self.ev_ord[j]

    def _events_ready(self, i: int) -> bool:
        # Only called once the calls before call i have returned: by then every handle with an
        # event before it has had its callback registered (or failed to), so ``listening`` is
        # final for those events and the pointer may move past the ones that cannot come.
        upto = self.need_upto[i]
        while self.ev_ptr < upto:
            if self._event_pending(self.ev_ptr):
                return False
            self.ev_ptr += 1
        return True

    def _wait_ready(self, i: int) -> None:
        call = self.calls[i]
        with self.cond:
            # Calls first, without giving up: every replayed call is bounded itself, so the
            # calls before this one end (the limit only guards against a native call that hangs).
            if not self.cond.wait_for(lambda: self.prefix >= self.need_calls[i], timeout=10 * self.bound + 60):
                j = next(j for j in range(self.need_calls[i]) if not self.done[j])
                late = f"{describe(self.calls[j])} (line {self.calls[j].line}) had returned"
                self.report.divergences.append(
                    Divergence(call.line, describe(call), "order", None, late, "still running")
                )
                return
            if self._events_ready(i):
                return
            awaited = {
                self.ev_key[j][1] for j in range(self.ev_ptr, self.need_upto[i])
                if self.ev_key[j][0] == "event" and self._event_pending(j)
            }
        for sym in awaited & set(self.stdin_of):  # the process had exited in the trace: its input was over
            self._end_stdin(sym)
        with self.cond:
            if self.cond.wait_for(lambda: self._events_ready(i), timeout=self.bound):
                return
            missing: dict[tuple[str, str], int] = {}
            for j in range(self.ev_ptr, self.need_upto[i]):
                if self._event_pending(j):
                    missing[self.ev_key[j]] = missing.get(self.ev_key[j], 0) + 1
            self.given_up.update(missing)  # reported once: later calls do not wait for it again
        text = "; ".join(f"{n} more {kind}(s) of {sym}" for (kind, sym), n in missing.items())
        self._diverge(call.line, describe(call), "order", None, "delivered before the call: " + text,
                      f"not delivered within {self.bound:g} s")

    def _finished(self, i: int) -> None:
        with self.cond:
            self.done[i] = True
            while self.prefix < len(self.done) and self.done[self.prefix]:
                self.prefix += 1
            self.cond.notify_all()

    # -- callbacks ---------------------------------------------------------------------
    def _sym_of(self, kind: str, value: int) -> str | None:
        with self.cond:
            return self.reverse.get((kind, value)) if value else None

    def _on_completion(self, operation: int, context: int) -> None:
        sym = self._sym_of("op", operation)
        if sym is None:
            return
        with self.cond:
            self.got_completions[sym] += 1
            self.cond.notify_all()

    def _event_callback(self, sym: str) -> Any:
        def on_event(event: HcsEvent, context: int) -> None:
            op = self._sym_of("op", event.operation) if event.operation else None
            with self.cond:
                self.got_events[sym].append((event.type, doc_to_trace(event.event_data), op))
                self.cond.notify_all()

        return on_event

    # -- handles -----------------------------------------------------------------------
    def _stale_handle(self, kind: str) -> int:
        with self.cond:
            self._stale += 1
            n = self._stale
        if kind in ("pipe", "vhd"):
            return (1 << 20) + n  # far above any descriptor this process has open
        return 0x0BAD0000 + n  # the emulator answers a made-up handle with E_HANDLE

    def _handle(self, kind: str, sym: str | None) -> int:
        if sym is None:
            return 0
        with self.cond:
            value = self.handles.get(sym)
        return value if value is not None else self._stale_handle(kind)

    def _bind(self, sym: str, kind: str, value: int) -> None:
        with self.cond:
            old = self.handles.get(sym)
            if old is not None:
                self.reverse.pop((kind, old), None)
            self.handles[sym] = value
            self.reverse[(kind, value)] = sym

    def _unbind(self, sym: str | None, kind: str) -> None:
        if sym is None:
            return
        with self.cond:
            value = self.handles.pop(sym, None)
            if value is not None and self.reverse.get((kind, value)) == sym:
                del self.reverse[(kind, value)]

    def _end_stdin(self, process: str | None) -> None:
        """Closes the replay's end of a process's stdin. The program's own writes and closes of
        its pipes are not HCS calls and not traced; this is where the trace shows the input was
        over (HcsModifyProcess CloseHandle StdIn, or the process's exit had been seen)."""
        with self.cond:
            pipe = self.stdin_of.pop(process, None) if process else None
            value = self.handles.pop(pipe, None) if pipe else None
            if pipe is not None and value is not None:
                self.reverse.pop(("pipe", value), None)
                self.closed_early.add(pipe)
        if value is not None:
            with contextlib.suppress(Exception):
                self.raw.close_handle(value)

    # -- divergences -------------------------------------------------------------------
    def _diverge(
        self, line: int, where: str, what: str, member: str | None, expected: Any, actual: Any, volatile: bool = False
    ) -> None:
        d = Divergence(line, where, what, member, expected, actual, volatile)
        with self.cond:
            if volatile and not self.strict:
                self.report.ignored.append(d)
            else:
                self.report.divergences.append(d)

    def _compare_doc(self, call: Call, what: str, expected: Any, actual: Any) -> None:
        for d in diff(expected, doc_to_trace(actual) if isinstance(actual, str) else actual):
            self._diverge(call.line, describe(call), what, d.member or None, d.expected, d.actual, d.volatile)

    # -- one call ----------------------------------------------------------------------
    def _timeout(self, call: Call, traced: int) -> int:
        if call.hresult is not None and call.hresult in _TIMEOUTS:
            return min(traced, self.bound_ms)
        return self.bound_ms

    def _run_call(self, call: Call) -> tuple[Any, BaseException | None]:
        spec = call.spec
        fn = getattr(self.raw, spec.api)
        kwargs: dict[str, Any] = {}
        opened: list[int] = []
        if spec.api == "close_handle" and call.args.get("handle") in self.closed_early:
            self.closed_early.discard(call.args["handle"])
            return None, None  # the replay closed it already (see _end_stdin)
        if spec.api == "hcs_wait_for_process_exit" and call.hresult == 0:
            self._end_stdin(call.args.get("process"))
        for p in spec.params:
            value = call.args.get(p.name)
            if p.kind in ("op", "system", "process", "pipe"):
                kwargs[p.name] = self._handle(p.kind, value)
                if p.kind == "pipe" and value is not None:
                    drain = self.drains.pop(value, None)
                    if drain is not None:
                        drain.stop()
            elif p.kind == "vhd":
                if value is not None and call.vhd_path and os.path.exists(call.vhd_path):
                    fd = os.open(call.vhd_path, os.O_RDWR)
                    opened.append(fd)
                    kwargs[p.name] = fd
                else:
                    kwargs[p.name] = self._handle("vhd", value)
            elif p.kind == "doc":
                kwargs[p.name] = doc_from_trace(value) if not isinstance(value, str) else value
            elif p.kind == "callback":
                if not value:
                    kwargs[p.name] = None
                elif spec.api in ("hcs_create_operation", "hcs_set_operation_callback"):
                    kwargs[p.name] = self._on_completion
                else:
                    target = call.args.get(spec.params[0].name)
                    kwargs[p.name] = self._event_callback(str(target))
            elif p.kind == "timeout":
                kwargs[p.name] = self._timeout(call, int(value if value is not None else 0xFFFFFFFF))
            else:
                kwargs[p.name] = value
        try:
            deadline = time.monotonic() + self.bound
            while True:
                try:
                    return fn(**kwargs), None
                except errors.HcsError as exc:
                    if (
                        spec.api in _POLLS
                        and exc.hresult in _PENDING
                        and call.hresult is not None
                        and call.hresult not in _PENDING
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.01)  # complete in the trace by now: wait for it here too
                        continue
                    return None, exc
                except Exception as exc:
                    return None, exc
        finally:
            for fd in opened:
                os.close(fd)

    def _play(self, call: Call) -> None:
        spec = call.spec
        where = describe(call)
        if spec.api in ("hcs_set_compute_system_callback", "hcs_set_process_callback"):
            target = call.args.get(spec.params[0].name)
            if call.args.get("callback") and target is not None:
                with self.cond:
                    self.listening.add(str(target))
        result, exc = self._run_call(call)
        if spec.api == "hcs_create_operation" and call.args.get("callback") and exc is None and call.result:
            with self.cond:
                self.listening.add(str(call.result))
        if spec.api == "hcs_set_operation_callback" and call.args.get("callback"):
            with self.cond:
                self.listening.add(str(call.args.get("operation")))
        # handles the call made or closed
        if spec.closes:
            self._unbind(call.args.get(spec.params[0].name), spec.closes)
        if exc is None:
            if spec.result in ("op", "system", "process") and isinstance(call.result, str) and result:
                with self.cond:
                    known = self.handles.get(call.result)
                if known is not None and known != result:
                    self._diverge(call.line, where, "handle", None, f"the handle of {call.result}", f"another handle ({result})")
                self._bind(call.result, spec.result, int(result))
            elif spec.result in ("op", "system", "process") and call.result not in (None, MISSING) and not result:
                self._diverge(call.line, where, "result", None, call.result, None)
            elif spec.result in ("op", "system", "process") and result:
                # a handle the trace's call did not make (it failed there): kept for the cleanup
                self._bind(f"{spec.result}#extra-{call.line}", spec.result, int(result))
            if spec.result == "procinfo" and not is_json_object(call.process_info):
                for n, value in enumerate(result[0][1:]):
                    if value is not None:
                        self._bind(f"pipe#extra-{call.line}-{n}", "pipe", int(value))
            if spec.api == "hcs_create_process" and isinstance(call.result, str):
                self.process_of_op[str(call.args.get("operation"))] = call.result
            if spec.api == "hcs_get_process_info" and call.args.get("process"):
                self.process_of_op[str(call.args.get("operation"))] = str(call.args.get("process"))
            if spec.api == "hcs_modify_process" and _closes_stdin(call.args.get("settings")):
                self._end_stdin(call.args.get("process"))
            if spec.result == "procinfo" and is_json_object(call.process_info):
                info = result[0]
                process = self.process_of_op.get(str(call.args.get("operation")))
                stdin = call.process_info.get("StdInput")
                if process is not None and isinstance(stdin, str) and info.std_input is not None:
                    with self.cond:
                        self.stdin_of[process] = stdin
                for name, value in (
                    ("StdInput", info.std_input),
                    ("StdOutput", info.std_output),
                    ("StdError", info.std_error),
                ):
                    sym = call.process_info.get(name)
                    if isinstance(sym, str) and value is not None:
                        self._bind(sym, "pipe", int(value))
                        if name != "StdInput" and os.name == "posix":
                            self.drains[sym] = _Drain(int(value))
        self._compare(call, result, exc)

    def _compare(self, call: Call, result: Any, exc: BaseException | None) -> None:
        spec = call.spec
        where = describe(call)
        if call.exception is not None:
            got = type(exc).__name__ if exc is not None and not isinstance(exc, errors.HcsError) else None
            if exc is None:
                self._diverge(call.line, where, "exception", None, call.exception, "returned")
            elif isinstance(exc, errors.HcsError):
                self._diverge(call.line, where, "exception", None, call.exception, hresult_label(exc.hresult))
            elif got != call.exception or (call.errno is not None and getattr(exc, "errno", None) != call.errno):
                self._diverge(call.line, where, "exception", None, call.exception, f"{got}: {exc}")
            return
        assert call.hresult is not None
        if exc is not None and not isinstance(exc, errors.HcsError):
            self._diverge(call.line, where, "exception", None, hresult_label(call.hresult), f"{type(exc).__name__}: {exc}")
            return
        hr = exc.hresult if isinstance(exc, errors.HcsError) else 0
        if hr != call.hresult:
            timing = (call.hresult in _PENDING or call.hresult in _TIMEOUTS) and hr == 0
            self._diverge(call.line, where, "hresult", None, hresult_label(call.hresult), hresult_label(hr), timing)
            return
        if isinstance(exc, errors.HcsError):
            self._compare_doc(call, "error_document", call.error_document, exc.result_document)
            return
        if call.result is MISSING:
            pass
        elif spec.result == "doc":
            self._compare_doc(call, "result", call.result, result)
        elif spec.result == "procinfo":
            self._compare_doc(call, "result", call.result, result[1])
        elif spec.result in ("value", "text"):
            volatile = spec.api in _VOLATILE_RESULTS
            for d in diff(call.result, result):
                self._diverge(call.line, where, "result", d.member or None, d.expected, d.actual, volatile or d.volatile)
        if spec.result == "procinfo" and call.process_info is not MISSING and call.process_info is not None:
            info = result[0]
            actual = {
                "ProcessId": info.process_id,
                "StdInput": info.std_input is not None,
                "StdOutput": info.std_output is not None,
                "StdError": info.std_error is not None,
            }
            expected = {
                k: (v is not None if k != "ProcessId" else v)
                for k, v in call.process_info.items()
                if k in actual
            }
            for d in diff(expected, {k: actual[k] for k in expected}):
                self._diverge(call.line, where, "process_info", d.member or None, d.expected, d.actual, d.volatile)

    # -- the whole trace ---------------------------------------------------------------
    def _thread(self, indexes: list[int]) -> None:
        for i in indexes:
            self._wait_ready(i)
            try:
                self._play(self.calls[i])
            except Exception as exc:  # a bug here must not hang the other threads
                self._diverge(self.calls[i].line, describe(self.calls[i]), "exception", None, "a replayable call", repr(exc))
            finally:
                self._finished(i)

    def run(self) -> ReplayReport:
        by_thread: dict[str, list[int]] = defaultdict(list)
        for i, call in enumerate(self.calls):
            by_thread[call.thread].append(i)
        threads = [
            threading.Thread(target=self._thread, args=(idx,), name=f"pyhcs-replay-{name}", daemon=True)
            for name, idx in by_thread.items()
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self._settle()
            self._compare_events()
        finally:
            self._cleanup()
        self.report.calls = len(self.calls)
        self.report.events = len(self.trace.events)
        return self.report

    def _settle(self) -> None:
        """Waits (bounded) for the events the trace delivered, then for any extra ones queued."""
        want_events: dict[str, int] = defaultdict(int)
        want_completions: dict[str, int] = defaultdict(int)
        for e in self.trace.events:
            if e.kind == "event":
                want_events[e.handle or ""] += 1
            else:
                want_completions[e.handle or ""] += 1

        def arrived() -> bool:
            return all(
                len(self.got_events.get(h, ())) >= n for h, n in want_events.items() if h in self.listening
            ) and all(self.got_completions.get(h, 0) >= n for h, n in want_completions.items() if h in self.listening)

        with self.cond:
            self.cond.wait_for(arrived, timeout=self.bound)
        self.raw.flush_callbacks(min(self.bound, 5.0))

    def _compare_events(self) -> None:
        expected: dict[str, list[Event]] = defaultdict(list)
        completions: dict[str, list[Event]] = defaultdict(list)
        for e in self.trace.events:
            (expected if e.kind == "event" else completions)[e.handle or ""].append(e)
        with self.cond:
            got = {h: list(v) for h, v in self.got_events.items()}
            got_completions = dict(self.got_completions)
        for handle in sorted(set(expected) | set(got)):
            want = expected.get(handle, [])
            have = got.get(handle, [])
            where = f"events of {handle}"
            for i, e in enumerate(want):
                if i >= len(have):
                    self._diverge(e.line, where, "event", f"[{i}]", event_type_name(e.type or 0), MISSING)
                    continue
                t, data, op = have[i]
                if t != e.type:
                    self._diverge(e.line, where, "event", f"[{i}].type", event_type_name(e.type or 0), event_type_name(t))
                    continue
                for d in diff(e.data, data):
                    member = f"[{i}].data" + (("." + d.member) if d.member and not d.member.startswith("[") else d.member)
                    self._diverge(e.line, where, "event", member, d.expected, d.actual, d.volatile)
                if e.operation is not None and op != e.operation:
                    self._diverge(e.line, where, "event", f"[{i}].operation", e.operation, op)
            for i in range(len(want), len(have)):
                line = want[-1].line if want else 0
                self._diverge(line, where, "event", f"[{i}]", MISSING, event_type_name(have[i][0]))
        for handle in sorted(set(completions) | set(got_completions)):
            want_n = len(completions.get(handle, []))
            have_n = got_completions.get(handle, 0)
            if want_n != have_n:
                line = completions[handle][-1].line if completions.get(handle) else 0
                self._diverge(line, f"completions of {handle}", "completion", None, want_n, have_n)

    def _cleanup(self) -> None:
        """Closes what the trace left open, so that an in-process replay leaks nothing."""
        for drain in self.drains.values():
            drain.stop()
        with self.cond:
            left = dict(self.handles)
            self.handles.clear()
        kinds = {sym: sym.split("#")[0].split("?")[0] for sym in left}
        for kind in ("process", "system", "op", "pipe"):
            for sym, value in left.items():
                if kinds[sym] != kind:
                    continue
                with contextlib.suppress(Exception):
                    if kind == "process":
                        self.raw.hcs_close_process(value)
                    elif kind == "system":
                        op = self.raw.hcs_create_operation()
                        try:
                            with contextlib.suppress(errors.HcsError):
                                self.raw.hcs_terminate_compute_system(value, op)
                                self.raw.hcs_wait_for_operation_result(op, self.bound_ms)
                        finally:
                            self.raw.hcs_close_operation(op)
                        self.raw.hcs_close_compute_system(value)
                    elif kind == "op":
                        self.raw.hcs_close_operation(value)
                    else:
                        self.raw.close_handle(value)


def replay(
    trace: Trace | str | Path,
    *,
    strict: bool = False,
    wait_bound: float = 30.0,
    raw: ModuleType | None = None,
) -> ReplayReport:
    """Replays ``trace`` against the library pyhcs loaded (``raw``: a backend module, default
    ``pyhcs._native._backend``) and reports every divergence.

    ``strict`` compares volatile members too (ids, times, pids, GUIDs) and reports timing
    differences; ``wait_bound`` (seconds) bounds every wait and every precondition.
    Raises :class:`TraceFormatError` for a malformed trace, ValueError for a library that is
    not the emulator (replaying against the real HCS would create real compute systems).
    """
    if raw is None:
        from .._native import _backend

        raw = _backend
    library = str(raw.library_path())
    if not is_emulator(library):
        raise ValueError(f"replay runs against the HCS emulator; this pyhcs loads {library}")
    if not isinstance(trace, Trace):
        trace = load(trace)
    if wait_bound <= 0:
        raise ValueError(f"the wait bound must be > 0 seconds, not {wait_bound!r}")
    return _Replayer(trace, raw, strict, wait_bound).run()
