"""``pyhcs trace show FILE`` and ``pyhcs trace replay FILE``.

Exit status of ``replay``: 0 when the replay matches the trace, 1 when it diverges, 2 for an
error (a file that cannot be read, a malformed line, a library that is not the emulator).
"""

# The subcommand drives the recorder (the package's private module) directly: importing the
# package's own start/stop would import the package back.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Any

from .._narrow import is_json_object
from . import _spec
from ._file import MISSING, Call, Event, Trace, TraceFormatError, load
from ._values import event_type_name, hresult_label

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_ERROR = 2


def _compact(value: Any, width: int) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    if width and len(text) > width:
        return text[: max(1, width - 3)] + "..."
    return text


def _call_line(call: Call, width: int) -> str:
    parts: list[str] = []
    for p in call.spec.params:
        value = call.args.get(p.name)
        if p.kind in _spec.HANDLE_KINDS:
            parts.append(str(value) if value is not None else "NULL")
        elif p.kind == "callback":
            parts.append(f"{p.name}={'yes' if value else 'NULL'}")
        elif not p.required and value == p.default:
            continue
        else:
            parts.append(f"{p.name}={_compact(value, width)}")
    text = f"{call.spec.cname}({', '.join(parts)})"
    if call.exception is not None:
        return f"{text} raised {call.exception}" + (f": {call.message}" if call.message else "")
    assert call.hresult is not None
    text += f" -> {hresult_label(call.hresult)}"
    cls = call.raw.get("error_class")
    if call.hresult and isinstance(cls, str):
        text += f" {cls}"
    if call.hresult and call.error_document not in (MISSING, None):
        text += f" {_compact(call.error_document, width)}"
    if not call.hresult:
        if is_json_object(call.process_info):
            text += f" {_compact(call.process_info, width)}"
        if call.result not in (MISSING, None):
            text += f" {call.result}" if call.spec.result in _spec.HANDLE_KINDS else f" {_compact(call.result, width)}"
    return text


def _event_line(ev: Event, width: int) -> str:
    if ev.kind == "completion":
        return f"completion {ev.handle}"
    text = f"event {ev.handle} {event_type_name(ev.type or 0)}"
    if ev.operation:
        text += f" operation={ev.operation}"
    if ev.data not in (MISSING, None):
        text += f" {_compact(ev.data, width)}"
    return text


def _header_line(trace: Trace) -> str:
    h = trace.header
    bits = [f"pyhcs {h['pyhcs']}"] if h.get("pyhcs") else ["written by hand"]
    if h.get("backend"):
        bits.append(f"{h['backend']} backend")
    if h.get("library"):
        bits.append(f"library {h['library']}" + (" (emulator)" if h.get("emulated") else ""))
    if h.get("platform"):
        bits.append(str(h["platform"]))
    if h.get("started"):
        bits.append(f"started {h['started']}")
    return f"{trace.path}: " + ", ".join(bits)


def cmd_show(ns: argparse.Namespace) -> int:
    trace = load(ns.file)
    width = 0 if ns.full else ns.width
    out = sys.stdout
    if ns.json:
        out.write(json.dumps({"line": 1, **trace.header}) + "\n")
        for rec in trace.records:
            item: dict[str, Any] = {"line": rec.line, **rec.raw}
            if isinstance(rec, Call) and rec.hresult is not None:
                item["hresult_name"] = hresult_label(rec.hresult).split(" ")[0]
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
        return EXIT_OK
    out.write(_header_line(trace) + "\n")
    if isinstance(trace.header.get("note"), str):
        out.write(f"{'':36}# {trace.header['note']}\n")
    for rec in trace.records:
        t = f"+{rec.t:.4f}s" if rec.t is not None else ""
        if isinstance(rec, Call):
            dur = f"{rec.dur * 1000:.3f}ms" if rec.dur is not None else ""
            body = _call_line(rec, width)
        else:
            dur = ""
            body = _event_line(rec, width)
        thread = rec.thread or ""
        out.write(f"{rec.line:6d} {t:>11} {dur:>11} {thread:>4}  {body}\n")
        if rec.note:
            out.write(f"{'':36}# {rec.note}\n")
    calls = len(trace.calls)
    failed = sum(1 for c in trace.calls if c.hresult or c.exception)
    out.write(f"{calls} calls ({failed} failed), {len(trace.events)} events and completions"
              + ("" if trace.ended else "; no end record (the traced process did not stop tracing)") + "\n")
    return EXIT_OK


def cmd_replay(ns: argparse.Namespace) -> int:
    from . import _record
    from ._replay import replay

    trace = load(ns.file)
    traced = os.environ.get(_record.ENV, "")
    if traced and os.path.realpath(traced.replace("{pid}", str(os.getpid()))) == os.path.realpath(ns.file):
        del os.environ[_record.ENV]  # before the backend loads: its hook would truncate the input
    tracer = _record.current()
    if tracer is not None and os.path.realpath(tracer.path) == os.path.realpath(ns.file):
        _record.uninstall()  # PYHCS_TRACE names the input: never overwrite it with the replay
    report = replay(trace, strict=ns.strict, wait_bound=ns.wait_bound)
    if ns.json:
        print(json.dumps({
            "ok": report.ok,
            "file": report.path,
            "backend": report.backend,
            "library": report.library,
            "calls": report.calls,
            "events": report.events,
            "divergences": [d.as_dict() for d in report.divergences],
            "ignored": [d.as_dict() for d in report.ignored],
        }, indent=2, default=repr))
    else:
        for d in report.divergences:
            print(str(d))
        if ns.show_ignored:
            for d in report.ignored:
                print(f"(volatile) {d}")
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_DIVERGED


def _run(fn: Any, ns: argparse.Namespace) -> int:
    try:
        result: int = fn(ns)
        return result
    except BrokenPipeError:  # `pyhcs trace show FILE | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except TraceFormatError as exc:
        print(f"pyhcs trace: malformed trace: {exc}", file=sys.stderr)
    except (OSError, ValueError, ImportError) as exc:
        print(f"pyhcs trace: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _bound(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the bound must be > 0 seconds")
    return value


def add_trace_command(subparsers: Any) -> None:
    """Adds the ``trace`` command (``show``, ``replay``) to an argparse subparsers object."""
    trace = subparsers.add_parser(
        "trace", help="show a trace of HCS calls (PYHCS_TRACE=file), or replay it against the emulator",
        epilog="example:\n  PYHCS_TRACE=calls.jsonl python my_tool.py\n  pyhcs trace show calls.jsonl\n"
        "  pyhcs trace replay calls.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = trace.add_subparsers(dest="trace_cmd", required=True)
    show = sub.add_parser(
        "show", help="one line per call: arguments, HRESULT names, results, durations",
        epilog="example:\n  pyhcs trace show --json calls.jsonl", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="the records as JSON lines, with line numbers and HRESULT names")
    show.add_argument("--width", type=int, default=120, help="cut documents longer than this (default 120)")
    show.add_argument("--full", action="store_true", help="never cut documents")
    show.set_defaults(fn=functools.partial(_run, cmd_show))
    rep = sub.add_parser(
        "replay",
        help="replay against the emulator; report every divergence (exit 0: none, 1: divergences, 2: error)",
        epilog="example:\n  pyhcs trace replay --strict calls.jsonl", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("file")
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument(
        "--ignore-volatile", dest="strict", action="store_false", default=False,
        help="do not compare volatile members: ids, times, pids, handles, runtime ids, GUIDs, durations (default)",
    )
    mode.add_argument("--strict", dest="strict", action="store_true", help="compare everything, timing included")
    rep.add_argument("--wait-bound", type=_bound, default=30.0, metavar="SECONDS",
                     help="the longest any wait or precondition may take (default 30)")
    rep.add_argument("--json", action="store_true", help="the report as JSON")
    rep.add_argument("--show-ignored", action="store_true", help="also list the volatile differences ignored")
    rep.set_defaults(fn=functools.partial(_run, cmd_replay))
