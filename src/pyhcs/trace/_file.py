"""Reading a trace file: every line checked, every mistake named by its line.

The format (JSON lines, one object per line; docs/tracing.md describes it for users):

* ``{"kind": "header", "format": 1, ...}`` first: pyhcs version, backend, library, platform;
* ``{"kind": "call", "fn": "HcsStartComputeSystem", "args": {...}, "hresult": "0x...", ...}``;
* ``{"kind": "event", "handle": "system#1", "type": "SYSTEM_EXITED", "data": {...}}``;
* ``{"kind": "completion", "handle": "op#3"}`` (an operation's completion callback ran);
* ``{"kind": "end"}`` when tracing stopped.

Hand-written traces may leave out what they do not care about: ``seq`` (line order),
``start`` (the call began after everything above it), ``thread``, ``t``, ``dur``; a call
without ``result`` or an event without ``data`` is not compared there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._narrow import is_json_object
from . import _spec
from ._values import parse_event_type, parse_hresult

_SYMBOL = re.compile(r"^(op|system|process|pipe|vhd)([#?])([0-9]+)$")


class TraceFormatError(ValueError):
    """A trace file that cannot be read; the message names the file and the line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line


class _Missing:
    """Marks a member a (hand-written) record left out: it is not compared."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Call:
    line: int
    seq: int
    start: int
    thread: str
    spec: _spec.FunctionSpec
    args: dict[str, Any]
    hresult: int | None
    """None when the call raised something that is not an HcsError (``exception``)."""
    exception: str | None = None
    errno: int | None = None
    message: str | None = None
    result: Any = MISSING
    error_document: Any = MISSING
    process_info: Any = MISSING
    vhd_path: str | None = None
    t: float | None = None
    dur: float | None = None
    note: str | None = None
    raw: dict[str, Any] = field(default_factory=dict[str, Any], repr=False)


@dataclass
class Event:
    line: int
    seq: int
    kind: str
    """``event`` or ``completion``."""
    handle: str | None
    type: int | None = None
    data: Any = MISSING
    operation: str | None = None
    context: Any = None
    thread: str | None = None
    t: float | None = None
    note: str | None = None
    raw: dict[str, Any] = field(default_factory=dict[str, Any], repr=False)


@dataclass
class Trace:
    path: str
    header: dict[str, Any]
    records: list[Call | Event] = field(default_factory=list[Call | Event])
    ended: bool = False

    @property
    def calls(self) -> list[Call]:
        return [r for r in self.records if isinstance(r, Call)]

    @property
    def events(self) -> list[Event]:
        return [r for r in self.records if isinstance(r, Event)]


def _symbol(path: str, line: int, where: str, value: object, kind: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not (m := _SYMBOL.match(value)):
        raise TraceFormatError(path, line, f"{where}: {value!r} is not a handle id such as 'system#1'")
    if kind is not None and m.group(1) != kind:
        raise TraceFormatError(path, line, f"{where}: {value!r} is not a handle of kind {kind!r}")
    return value


def _number(path: str, line: int, rec: dict[str, Any], name: str, default: int) -> int:
    value = rec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceFormatError(path, line, f"{name!r} must be an integer, not {value!r}")
    return value


def _float(path: str, line: int, rec: dict[str, Any], name: str) -> float | None:
    value = rec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceFormatError(path, line, f"{name!r} must be a number, not {value!r}")
    return float(value)


def _text(path: str, line: int, rec: dict[str, Any], name: str) -> str | None:
    value = rec.get(name)
    if value is not None and not isinstance(value, str):
        raise TraceFormatError(path, line, f"{name!r} must be a string, not {value!r}")
    return value


def _call(path: str, line: int, rec: dict[str, Any], seq: int) -> Call:
    fn = rec.get("fn")
    if not isinstance(fn, str):
        raise TraceFormatError(path, line, "a call needs 'fn', the function's name (e.g. 'HcsStartComputeSystem')")
    spec = _spec.lookup(fn)
    if spec is None:
        raise TraceFormatError(path, line, f"unknown function {fn!r}")
    args = rec.get("args", {})
    if not is_json_object(args):
        raise TraceFormatError(path, line, f"'args' must be an object, not {args!r}")
    names = {p.name for p in spec.params}
    unknown = sorted(set(args) - names)
    if unknown:
        raise TraceFormatError(
            path, line, f"{spec.cname} has no parameter {', '.join(unknown)} (its parameters: {', '.join(p.name for p in spec.params)})"
        )
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name not in args:
            if p.required:
                raise TraceFormatError(path, line, f"{spec.cname}: argument {p.name!r} is missing")
            out[p.name] = p.default
            continue
        value = args[p.name]
        where = f"{spec.cname} argument {p.name!r}"
        if p.kind in _spec.HANDLE_KINDS:
            out[p.name] = _symbol(path, line, where, value, p.kind)
        elif p.kind == "callback":
            if not isinstance(value, bool):
                raise TraceFormatError(path, line, f"{where}: a callback is recorded as true or false, not {value!r}")
            out[p.name] = value
        elif p.kind == "timeout":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise TraceFormatError(path, line, f"{where}: a timeout is milliseconds (0..4294967295), not {value!r}")
            out[p.name] = value
        else:
            out[p.name] = value
    exception = _text(path, line, rec, "exception")
    hresult: int | None
    if exception is not None:
        hresult = None
    else:
        try:
            hresult = parse_hresult(rec.get("hresult", 0))
        except ValueError as exc:
            raise TraceFormatError(path, line, f"'hresult': {exc}") from None
    call = Call(
        line=line,
        seq=seq,
        start=_number(path, line, rec, "start", seq),
        thread=str(rec.get("thread", "main")),
        spec=spec,
        args=out,
        hresult=hresult,
        exception=exception,
        message=_text(path, line, rec, "message"),
        vhd_path=_text(path, line, rec, "vhd_path"),
        t=_float(path, line, rec, "t"),
        dur=_float(path, line, rec, "dur"),
        note=_text(path, line, rec, "note"),
        raw=rec,
    )
    errno = rec.get("errno")
    if errno is not None:
        call.errno = _number(path, line, rec, "errno", 0)
    if call.start > seq:
        raise TraceFormatError(path, line, f"'start' {call.start} is after the call's own seq {seq}")
    if "result" in rec:
        result = rec["result"]
        if spec.result in ("op", "system", "process"):
            result = _symbol(path, line, f"{spec.cname} result", result, spec.result)
        call.result = result
    if "error_document" in rec:
        call.error_document = rec["error_document"]
    if "process_info" in rec:
        info = rec["process_info"]
        if spec.result != "procinfo":
            raise TraceFormatError(path, line, f"{spec.cname} returns no process information")
        if info is not None:
            if not is_json_object(info):
                raise TraceFormatError(path, line, f"'process_info' must be an object, not {info!r}")
            for name in ("StdInput", "StdOutput", "StdError"):
                _symbol(path, line, f"process_info {name}", info.get(name), "pipe")
        call.process_info = info
    return call


def _event(path: str, line: int, rec: dict[str, Any], seq: int, kind: str) -> Event:
    ev = Event(
        line=line,
        seq=seq,
        kind=kind,
        handle=_symbol(path, line, f"{kind} 'handle'", rec.get("handle"), "op" if kind == "completion" else None),
        thread=str(rec["thread"]) if rec.get("thread") is not None else None,
        t=_float(path, line, rec, "t"),
        note=_text(path, line, rec, "note"),
        context=rec.get("context"),
        raw=rec,
    )
    if ev.handle is None:
        raise TraceFormatError(path, line, f"a {kind} needs 'handle', the handle id it was delivered to")
    if kind == "event":
        if "type" not in rec:
            raise TraceFormatError(path, line, "an event needs 'type' (e.g. 'SYSTEM_EXITED')")
        try:
            ev.type = parse_event_type(rec["type"])
        except ValueError as exc:
            raise TraceFormatError(path, line, f"'type': {exc}") from None
        if "data" in rec:
            ev.data = rec["data"]
        ev.operation = _symbol(path, line, "event 'operation'", rec.get("operation"), "op")
    return ev


def parse_lines(lines: list[str], path: str = "<trace>") -> Trace:
    trace: Trace | None = None
    last_seq = -1
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
        except ValueError as exc:
            raise TraceFormatError(path, number, f"not JSON ({exc})") from None
        if not is_json_object(rec):
            raise TraceFormatError(path, number, f"a record must be a JSON object, not {type(rec).__name__}")
        kind = rec.get("kind")
        if trace is None:
            if kind != "header":
                raise TraceFormatError(path, number, 'the first record must be the header ({"kind": "header", "format": 1, ...})')
            if rec.get("format") != 1:
                raise TraceFormatError(path, number, f"unsupported trace format {rec.get('format')!r} (this pyhcs reads format 1)")
            trace = Trace(path, rec)
            last_seq = _number(path, number, rec, "seq", 0)
            continue
        seq = _number(path, number, rec, "seq", last_seq + 1)
        if seq <= last_seq:
            raise TraceFormatError(path, number, f"'seq' {seq} does not follow {last_seq}: records must be in seq order")
        last_seq = seq
        if trace.ended:
            raise TraceFormatError(path, number, "a record after the 'end' record")
        if kind == "call":
            trace.records.append(_call(path, number, rec, seq))
        elif kind in ("event", "completion"):
            trace.records.append(_event(path, number, rec, seq, kind))
        elif kind == "end":
            trace.ended = True
        elif kind == "header":
            raise TraceFormatError(path, number, "a second header (one trace per file)")
        else:
            raise TraceFormatError(path, number, f"unknown record kind {kind!r} (header, call, event, completion, end)")
    if trace is None:
        raise TraceFormatError(path, 0, "empty: no header record")
    return trace


def load(path: str | Path) -> Trace:
    """Reads and checks a trace file; :class:`TraceFormatError` names the first bad line."""
    name = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise TraceFormatError(name, 0, f"not UTF-8 text ({exc})") from None
    return parse_lines(lines, name)
