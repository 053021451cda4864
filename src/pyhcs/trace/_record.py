"""Recording: wraps the flat API's functions and writes one JSON line per call, event and
operation completion.

Tracing costs nothing while it is off: pyhcs calls the library through the names in
``pyhcs._native._backend``, and only :func:`install` replaces them (with wrappers that keep the
original in ``__wrapped__``); :func:`uninstall` puts the originals back. The backend modules
themselves are never touched.

Each record is serialised and written as one line under one lock, then flushed, so lines from
several threads never interleave and a process that dies leaves a readable trace. Handles are
written as symbolic ids (``op#1``, ``system#1``, ``process#1``, ``pipe#1``, ``vhd#1``) that
stay the same however the library numbers its handles, which is what lets a trace be replayed.
A handle the trace never saw being made (closed already, made up, or opened before tracing
started) is written ``<kind>?<n>``.

Sequence numbers order everything: a call takes one when it starts (``start``) and one when
its line is written (``seq``); events and completions take one when delivered. Replay uses
them to know what had happened before each call began.
"""

from __future__ import annotations

import atexit
import inspect
import itertools
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from types import ModuleType
from typing import IO, Any

from .. import errors
from .._native._types import HcsEvent
from . import _spec
from ._values import doc_to_trace, event_type_name, format_hresult

FORMAT = 1

#: Where a trace goes when the process starts: a path; ``{pid}`` in it is replaced by the id of
#: the process (so that several processes can trace at once).
ENV = "PYHCS_TRACE"

_WRAPPED = "__pyhcs_trace__"


class _Symbols:
    """int handle -> symbolic id, per kind. Guarded by the tracer's lock."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, int], str] = {}
        self._made = {kind: itertools.count(1) for kind in _spec.HANDLE_KINDS}
        self._unknown = {kind: itertools.count(1) for kind in _spec.HANDLE_KINDS}

    def name(self, kind: str, value: object) -> str | None:
        """The symbol of a handle argument (a ``?`` symbol if it was never made)."""
        if value is None or value == 0 or not isinstance(value, int):
            return None
        key = (kind, value)
        sym = self._by_value.get(key)
        if sym is None:
            sym = f"{kind}?{next(self._unknown[kind])}"
            self._by_value[key] = sym
        return sym

    def made(self, kind: str, value: object, *, reuse: bool = False) -> str | None:
        """A handle a call returned: a new symbol (or the known one, with ``reuse``)."""
        if value is None or value == 0 or not isinstance(value, int):
            return None
        key = (kind, value)
        if reuse:
            sym = self._by_value.get(key)
            if sym is not None and "#" in sym:
                return sym
        sym = f"{kind}#{next(self._made[kind])}"
        self._by_value[key] = sym
        return sym

    def peek(self, kind: str, value: int) -> str | None:
        return self._by_value.get((kind, value)) if value else None

    def forget(self, kind: str, value: object, sym: str | None) -> None:
        key = (kind, value) if isinstance(value, int) else None
        if key is not None and sym is not None and self._by_value.get(key) == sym:
            del self._by_value[key]


def _vhd_path(handle: int) -> str | None:
    """The file behind a VHD handle, so that replay can open it again."""
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import ctypes

            buf = ctypes.create_unicode_buffer(32768)
            n = ctypes.windll.kernel32.GetFinalPathNameByHandleW(ctypes.c_void_p(handle), buf, 32768, 0)
            return buf.value if 0 < n < 32768 else None
        return os.readlink(f"/proc/self/fd/{handle}")
    except (OSError, AttributeError, ValueError):
        return None


class Tracer:
    """One trace file being written."""

    def __init__(self, path: str, raw: ModuleType | None = None) -> None:
        self.path = path
        self._raw = raw
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._seq = itertools.count(1)
        self._symbols = _Symbols()
        self._local = threading.local()
        self._thread_count = itertools.count(1)
        self._t0 = time.monotonic()
        self._started = datetime.now(timezone.utc)
        self.active = True
        self.records = 0

    # -- writing -------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        from .. import __version__

        raw = self._raw
        backend = getattr(raw, "backend", None) if raw is not None else None
        module = getattr(raw, "_module", None)  # the module actually called (pyhcs.testing's use_backend swaps it)
        if module is not None:
            backend = {"pyhcs._native.cython._core": "cython", "pyhcs._native.ctypes": "ctypes"}.get(module.__name__, backend)
        library = None
        emulated = None
        if raw is not None:
            try:
                library = str(raw.library_path())
                from .._native._library import is_emulator

                emulated = is_emulator(library)
            except Exception:  # pragma: no cover - a broken library still gets traced
                library = None
        return {
            "kind": "header",
            "format": FORMAT,
            "pyhcs": __version__,
            "backend": backend,
            "library": library,
            "emulated": emulated,
            "platform": platform.platform(),
            "os": sys.platform,
            "windows_version": platform.version() if sys.platform == "win32" else None,
            "python": platform.python_version(),
            "pid": os.getpid(),
            "started": self._started.isoformat().replace("+00:00", "Z"),
        }

    def open(self) -> None:
        """Opens the file and writes the header (done at the first record otherwise)."""
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        if self._file is not None:
            return
        f = open(self.path, "w", encoding="utf-8")  # kept open until close()
        f.write(json.dumps({"seq": 0, **self._header()}, default=repr) + "\n")
        f.flush()
        self._file = f

    def next_seq(self) -> int:
        return next(self._seq)

    def thread(self) -> str:
        """The traced thread's name (thread idents are reused; a thread-local is not)."""
        name: str | None = getattr(self._local, "name", None)
        if name is None:
            name = self._local.name = f"T{next(self._thread_count)}"
        return name

    def now(self) -> float:
        return round(time.monotonic() - self._t0, 6)

    def write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        body = json.dumps(record, default=repr, ensure_ascii=False)
        with self._lock:
            if not self.active:
                return
            self._open_locked()
            assert self._file is not None
            # the sequence number is taken under the lock, so the file is in seq order
            self._file.write(f'{{"seq": {next(self._seq)}, {body[1:]}\n')
            self._file.flush()
            self.records += 1

    def close(self) -> None:
        with self._lock:
            if not self.active:
                return
            if self._file is not None:
                self._file.write(json.dumps({"seq": next(self._seq), "kind": "end", "records": self.records}) + "\n")
                self._file.close()
                self._file = None
            self.active = False

    def abandon(self) -> None:
        """In a forked child: stop without writing. The parent owns the file: the child's
        descriptor is pointed at the null device, so that nothing the child's copy of the file
        object may still flush (a line another thread was writing at the fork) reaches it."""
        self.active = False
        self._lock = threading.Lock()  # another thread may have held it at the fork
        f = self._file
        if f is not None:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, f.fileno())
                os.close(null)
            except OSError:
                pass

    # -- symbols -------------------------------------------------------------------
    def sym(self, kind: str, value: object) -> str | None:
        with self._lock:
            return self._symbols.name(kind, value)

    def made(self, kind: str, value: object, *, reuse: bool = False) -> str | None:
        with self._lock:
            return self._symbols.made(kind, value, reuse=reuse)

    def forget(self, kind: str, value: object, sym: str | None) -> None:
        with self._lock:
            self._symbols.forget(kind, value, sym)

    def peek(self, kind: str, value: int) -> str | None:
        with self._lock:
            return self._symbols.peek(kind, value)

    # -- callbacks -----------------------------------------------------------------
    def completion(self, operation: int, context: int) -> None:
        if self.active:
            self.write({
                "kind": "completion",
                "handle": self.peek("op", operation) or self.sym("op", operation),
                "context": context,
                "thread": self.thread(),
                "t": self.now(),
            })

    def event(self, handle: str | None, event: HcsEvent) -> None:
        if self.active:
            op = self.sym("op", event.operation) if event.operation else None
            self.write({
                "kind": "event",
                "handle": handle,
                "type": event_type_name(event.type),
                "data": doc_to_trace(event.event_data),
                "operation": op,
                "thread": self.thread(),
                "t": self.now(),
            })


def _completion_wrapper(tracer: Tracer, callback: Callable[[int, int], None]) -> Callable[[int, int], None]:
    def traced_completion(operation: int, context: int) -> None:
        tracer.completion(operation, context)
        callback(operation, context)

    return traced_completion


def _event_wrapper(tracer: Tracer, handle: str | None, callback: Callable[[HcsEvent, int], None]) -> Callable[[HcsEvent, int], None]:
    def traced_event(event: HcsEvent, context: int) -> None:
        tracer.event(handle, event)
        callback(event, context)

    return traced_event


def _exception_fields(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, errors.HcsError):
        return {
            "hresult": format_hresult(exc.hresult),
            "error": exc.name,
            "error_class": type(exc).__name__,
            "error_document": doc_to_trace(exc.result_document),
        }
    out: dict[str, Any] = {"exception": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, OSError) and exc.errno is not None:
        out["errno"] = exc.errno
    return out


def _make_wrapper(tracer_ref: Callable[[], Tracer | None], spec: _spec.FunctionSpec, fn: Callable[..., Any]) -> Callable[..., Any]:
    sig = inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                **({} if p.required else {"default": p.default}),
            )
            for p in spec.params
        ]
    )
    handle_kind = {p.name: p.kind for p in spec.params}

    def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = tracer_ref()
        if tracer is None or not tracer.active:
            return fn(*args, **kwargs)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # the backend reports the mistake itself
        bound.apply_defaults()
        values = bound.arguments
        start = tracer.next_seq()
        thread = tracer.thread()
        t = tracer.now()
        recorded: dict[str, Any] = {}
        call_args = dict(values)
        extra: dict[str, Any] = {}
        for name, value in values.items():
            kind = handle_kind[name]
            if kind in ("op", "system", "process", "pipe"):
                recorded[name] = tracer.sym(kind, value)
            elif kind == "vhd":  # opened by the program, not by HCS: named when first seen
                recorded[name] = tracer.made("vhd", value, reuse=True)
                if isinstance(value, int) and value:
                    extra["vhd_path"] = _vhd_path(value)
            elif kind == "doc":
                recorded[name] = doc_to_trace(value) if isinstance(value, str) else value
            elif kind == "callback":
                recorded[name] = value is not None
                if value is not None:
                    if spec.api in ("hcs_create_operation", "hcs_set_operation_callback"):
                        call_args[name] = _completion_wrapper(tracer, value)
                    else:
                        target = values.get("compute_system", values.get("process"))
                        target_kind = "system" if "compute_system" in values else "process"
                        call_args[name] = _event_wrapper(tracer, tracer.sym(target_kind, target), value)
            else:
                recorded[name] = value
        closing = values.get(spec.params[0].name) if spec.closes else None
        closing_sym = recorded.get(spec.params[0].name) if spec.closes else None
        t0 = time.perf_counter()
        record: dict[str, Any] = {"kind": "call", "fn": spec.cname, "thread": thread, "start": start, "t": t}
        try:
            result = fn(**call_args)
        except BaseException as exc:
            record["dur"] = round(time.perf_counter() - t0, 6)
            record["args"] = recorded
            record.update(extra)
            record.update(_exception_fields(exc))
            if spec.closes:
                tracer.forget(spec.closes, closing, closing_sym)
            tracer.write(record)
            raise
        record["dur"] = round(time.perf_counter() - t0, 6)
        record["args"] = recorded
        record.update(extra)
        record["hresult"] = "0x00000000"
        kind = spec.result
        if kind in ("op", "system", "process"):
            reuse = spec.api in ("hcs_get_compute_system_from_operation", "hcs_get_process_from_operation")
            record["result"] = tracer.made(kind, result, reuse=reuse)
        elif kind == "doc":
            record["result"] = doc_to_trace(result)
        elif kind == "procinfo":
            info, doc = result
            record["process_info"] = {
                "ProcessId": info.process_id,
                "StdInput": tracer.made("pipe", info.std_input),
                "StdOutput": tracer.made("pipe", info.std_output),
                "StdError": tracer.made("pipe", info.std_error),
            }
            record["result"] = doc_to_trace(doc)
        elif kind in ("value", "text"):
            record["result"] = result
        if spec.closes:
            tracer.forget(spec.closes, closing, closing_sym)
        tracer.write(record)
        return result

    traced.__name__ = spec.api
    traced.__qualname__ = spec.api
    traced.__doc__ = getattr(fn, "__doc__", None)
    traced.__wrapped__ = fn  # type: ignore[attr-defined]
    setattr(traced, _WRAPPED, True)
    return traced


# ------------------------------------------------------------------------------ install

_current: Tracer | None = None
_install_lock = threading.Lock()
_backend: ModuleType | None = None  # the backend module install() was handed, for uninstall()


def current() -> Tracer | None:
    return _current


def _targets(backend: ModuleType) -> list[ModuleType]:
    out: list[ModuleType] = [backend]
    raw = sys.modules.get("pyhcs.raw")
    if raw is not None:
        out.append(raw)
    return out


def is_wrapped(fn: object) -> bool:
    return bool(getattr(fn, _WRAPPED, False))


def install(path: str, backend: ModuleType) -> Tracer:
    """Starts writing a trace to ``path``: wraps the functions pyhcs calls the library through.

    ``backend`` is ``pyhcs._native._backend``, handed in by its caller (the backend's own
    ``PYHCS_TRACE`` hook, or :func:`pyhcs.trace.start`): the recorder sits above the backend
    and never imports it, so the hook closes no import cycle.
    """
    global _current, _backend

    with _install_lock:
        if _current is not None and _current.active:
            raise RuntimeError(f"pyhcs is already tracing to {_current.path}; stop that trace first")
        tracer = Tracer(path, backend)
        _current = tracer
        _backend = backend

        def ref() -> Tracer | None:
            return _current

        made: dict[int, Callable[..., Any]] = {}  # one wrapper per function, whichever module holds it
        for target in _targets(backend):
            for api in _spec.BY_API:
                fn = target.__dict__.get(api)
                if fn is None or is_wrapped(fn):
                    continue
                wrapper = made.get(id(fn))
                if wrapper is None:
                    wrapper = made[id(fn)] = _make_wrapper(ref, _spec.BY_API[api], fn)
                setattr(target, api, wrapper)
        return tracer


def uninstall() -> Tracer | None:
    """Stops tracing: the original functions are back, the file is closed."""
    global _current
    with _install_lock:
        tracer, _current = _current, None
        for target in _targets(_backend) if _backend is not None else []:
            for api in _spec.BY_API:
                fn = target.__dict__.get(api)
                if fn is not None and is_wrapped(fn):
                    setattr(target, api, fn.__wrapped__)
        if tracer is not None:
            tracer.close()
        return tracer


def expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path.replace("{pid}", str(os.getpid()))))


def install_from_env(backend: ModuleType) -> None:
    """The hook ``backend`` (pyhcs._native._backend) runs at its selection when ``PYHCS_TRACE`` is set.

    A trace is a diagnostic: a path that cannot be written turns tracing off with a warning
    instead of breaking the program being traced.
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return
    path = expand(text)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK) or os.path.isdir(path):
        import warnings

        warnings.warn(f"pyhcs: {ENV}={text!r}: cannot write {path}; not tracing", RuntimeWarning, stacklevel=2)
        return
    install(path, backend)


def _at_exit() -> None:
    tracer = _current
    if tracer is not None:
        tracer.close()


def _after_fork_in_child() -> None:
    tracer = _current
    if tracer is not None:
        tracer.abandon()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
