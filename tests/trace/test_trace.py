"""Recording traces (pyhcs.trace): what a trace holds, that it costs nothing when off, that
lines never interleave, the PYHCS_TRACE variable, ``pyhcs trace show``, and malformed files."""

# Tests the private recorder and the backend module it wraps.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyhcs import errors, trace
from pyhcs._native import _backend
from pyhcs.cli import main as cli_main
from pyhcs.testing.plugin import use_backend
from pyhcs.trace import _record, _spec

from rawutil import new_id

CONFIG = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-trace-tests", "Container": {}}


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def traced(hcs: ModuleType, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The whole of pyhcs on the backend under test, traced to a file."""
    name = "cython" if hcs.__name__ == "pyhcs._native.cython._core" else "ctypes"
    path = tmp_path / "t.jsonl"
    with use_backend(name), trace.tracing(path):
        yield name, path


def test_table_matches_both_backends(hcs: ModuleType) -> None:
    for api, spec in _spec.BY_API.items():
        params = list(inspect.signature(getattr(hcs, api)).parameters.values())
        assert [p.name for p in params] == [p.name for p in spec.params], api
        for p, mine in zip(params, spec.params, strict=True):
            assert (p.default is inspect.Parameter.empty) == mine.required, (api, p.name)
            if not mine.required:
                assert p.default == mine.default, (api, p.name)
    assert set(_spec.BY_API) | _spec.UNTRACED == set(_backend.PUBLIC_API)
    assert _spec.lookup("HcsSetupBaseOSLayer") is _spec.BY_API["hcs_setup_base_os_layer"]
    assert _spec.lookup("CloseHandle") is _spec.BY_API["close_handle"]


def test_off_means_the_backend_functions_themselves(tmp_path: Path) -> None:
    import pyhcs.raw as raw

    module = _backend._module
    names = list(_spec.BY_API)
    before = {n: getattr(raw, n) for n in names}
    assert trace.active() is None
    assert all(getattr(_backend, n) is getattr(module, n) for n in names)
    with trace.tracing(tmp_path / "t.jsonl"):
        assert trace.active() == tmp_path / "t.jsonl"
        assert all(getattr(_backend, n).__wrapped__ is getattr(module, n) for n in names)
        assert all(_record.is_wrapped(getattr(raw, n)) for n in names)
    assert trace.active() is None
    assert all(getattr(_backend, n) is getattr(module, n) for n in names)
    assert all(getattr(raw, n) is before[n] for n in names)
    assert records(tmp_path / "t.jsonl")[-1]["kind"] == "end"


def test_start_twice_and_unwritable_path(tmp_path: Path) -> None:
    with trace.tracing(tmp_path / "a.jsonl"), pytest.raises(RuntimeError, match="already tracing"):
        trace.start(tmp_path / "b.jsonl")
    with pytest.raises(OSError):
        trace.start(tmp_path / "missing-dir" / "t.jsonl")
    assert trace.active() is None
    assert trace.stop() is None


def test_a_lifecycle_recorded(traced: tuple[str, Path]) -> None:
    backend, path = traced
    completions: list[int] = []
    created = threading.Event()
    events: list[int] = []
    sid = new_id("trace")

    def on_done(_op: int, context: int) -> None:
        completions.append(context)
        created.set()

    op = _backend.hcs_create_operation(11, on_done)
    system = _backend.hcs_create_compute_system(sid, json.dumps(CONFIG), op)
    _backend.hcs_set_compute_system_callback(system, 0, 12, lambda e, c: events.append(e.type))
    assert created.wait(10)
    plain = _backend.hcs_create_operation()
    _backend.hcs_start_compute_system(system, plain)
    _backend.hcs_wait_for_operation_result(plain, 10_000)
    process = _backend.hcs_create_process(system, json.dumps({"CommandLine": 'sh -c "sleep 0.1; exit 5"', "CreateStdOutPipe": True}), plain)
    exited = threading.Event()

    def on_process_event(event: Any, _context: int) -> None:
        events.append(event.type)
        exited.set()

    _backend.hcs_set_process_callback(process, 0, 13, on_process_event)
    info, _ = _backend.hcs_wait_for_operation_result_and_process_info(plain, 10_000)
    status = json.loads(_backend.hcs_wait_for_process_exit(process, 10_000) or "{}")
    assert status["ExitCode"] == 5
    _backend.hcs_start_compute_system(system, plain)
    with pytest.raises(errors.InvalidStateError):
        _backend.hcs_wait_for_operation_result(plain, 10_000)
    with pytest.raises(errors.SystemNotFoundError):
        _backend.hcs_open_compute_system(new_id("missing"))
    assert info.std_output is not None
    assert exited.wait(10)  # delivered before the handle is closed (no event after close)
    _backend.close_handle(info.std_output)
    _backend.hcs_close_process(process)
    _backend.hcs_terminate_compute_system(system, plain)
    _backend.hcs_wait_for_operation_result(plain, 10_000)
    _backend.flush_callbacks()
    _backend.hcs_close_operation(plain)
    _backend.hcs_close_operation(op)
    _backend.hcs_close_compute_system(system)
    trace.stop()

    recs = records(path)
    header = recs[0]
    from pyhcs import __version__

    assert header["kind"] == "header" and header["format"] == 1
    assert header["pyhcs"] == __version__ and header["backend"] == backend
    assert header["library"] == str(_backend.library_path()) and header["emulated"] is True
    assert header["platform"] and header["os"] == sys.platform and header["pid"] == os.getpid()
    seqs = [r["seq"] for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    calls = [r for r in recs if r["kind"] == "call"]
    fns = [c["fn"] for c in calls]
    assert fns[:4] == ["HcsCreateOperation", "HcsCreateComputeSystem", "HcsSetComputeSystemCallback", "HcsCreateOperation"]
    assert "HcsGetServiceProperties" not in fns  # nothing but what the program called
    first = calls[0]
    assert first["args"] == {"context": 11, "callback": True} and first["result"] == "op#1"
    assert calls[1]["args"]["configuration"] == CONFIG  # documents parsed
    assert calls[1]["args"]["operation"] == "op#1" and calls[1]["result"] == "system#1"
    assert all(c["start"] < c["seq"] and c["dur"] >= 0 and c["thread"] == "T1" for c in calls)
    create = next(c for c in calls if c["fn"] == "HcsCreateProcess")
    assert create["args"]["compute_system"] == "system#1" and create["result"] == "process#1"
    assert create["args"]["process_parameters"] == {"CommandLine": 'sh -c "sleep 0.1; exit 5"', "CreateStdOutPipe": True}
    pi = next(c for c in calls if c["fn"] == "HcsWaitForOperationResultAndProcessInfo")
    assert pi["process_info"]["StdOutput"] == "pipe#1" and pi["process_info"]["StdInput"] is None
    exit_wait = next(c for c in calls if c["fn"] == "HcsWaitForProcessExit")
    assert exit_wait["result"]["ExitCode"] == 5 and exit_wait["args"]["timeout_ms"] == 10_000
    failed = [c for c in calls if c["hresult"] != "0x00000000"]
    assert [(c["fn"], c["error"], c["error_class"]) for c in failed] == [
        ("HcsWaitForOperationResult", "HCS_E_INVALID_STATE", "InvalidStateError"),
        ("HcsOpenComputeSystem", "HCS_E_SYSTEM_NOT_FOUND", "SystemNotFoundError"),
    ]
    assert failed[0]["hresult"] == "0x80370105" and failed[0]["error_document"]["Error"] == errors.to_signed(0x80370105)
    assert next(c for c in calls if c["fn"] == "CloseHandle")["args"] == {"handle": "pipe#1"}
    evs = [(r["handle"], r["type"]) for r in recs if r["kind"] == "event"]
    assert evs == [("process#1", "PROCESS_EXITED"), ("system#1", "SYSTEM_EXITED")]
    exit_event = next(r for r in recs if r["kind"] == "event" and r["type"] == "PROCESS_EXITED")
    assert exit_event["data"]["ExitCode"] == 5 and exit_event["thread"] != "T1"
    done = [r for r in recs if r["kind"] == "completion"]
    assert done and all(r["handle"] == "op#1" and r["context"] == 11 for r in done)
    assert completions and all(c == 11 for c in completions)  # the program's callbacks still run
    assert events.count(0x00010000) == 1 and events.count(1) == 1
    assert recs[-1] == {"seq": recs[-1]["seq"], "kind": "end", "records": len(recs) - 2}


def test_handles_reused_by_the_library_get_new_ids(traced: tuple[str, Path]) -> None:
    _, path = traced
    for _ in range(3):
        _backend.hcs_close_operation(_backend.hcs_create_operation())
    _backend.hcs_close_operation(0x0BAD0001)  # made up: never made by a traced call
    trace.stop()
    calls = [r for r in records(path) if r["kind"] == "call"]
    assert [c["result"] for c in calls if c["fn"] == "HcsCreateOperation"] == ["op#1", "op#2", "op#3"]
    assert [c["args"]["operation"] for c in calls if c["fn"] == "HcsCloseOperation"] == ["op#1", "op#2", "op#3", "op?1"]


def test_lines_never_interleave(traced: tuple[str, Path]) -> None:
    _, path = traced
    query = json.dumps({"PropertyTypes": ["Basic"]})

    def work() -> None:
        for _ in range(40):
            _backend.hcs_close_operation(_backend.hcs_create_operation())
            _backend.hcs_get_service_properties(query)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trace.stop()
    recs = records(path)  # every line is one JSON object
    calls = [r for r in recs if r["kind"] == "call"]
    assert len(calls) == 6 * 40 * 3
    assert len({c["thread"] for c in calls}) == 6
    assert [r["seq"] for r in recs] == sorted({r["seq"] for r in recs})
    ops = [c["result"] for c in calls if c["fn"] == "HcsCreateOperation"]
    assert len(set(ops)) == len(ops)  # every handle its own id, even across threads
    assert all(c["result"] == {"Properties": [{"SupportedSchemaVersions": [{"Major": 2, "Minor": 6}]}]}
               for c in calls if c["fn"] == "HcsGetServiceProperties")


def test_not_json_documents_are_kept_verbatim(traced: tuple[str, Path]) -> None:
    _, path = traced
    op = _backend.hcs_create_operation()
    try:
        with pytest.raises(errors.HcsError):
            system = _backend.hcs_create_compute_system(new_id("bad"), "{not json", op)
            try:
                _backend.hcs_wait_for_operation_result(op, 10_000)
            finally:
                _backend.hcs_close_compute_system(system)
    finally:
        _backend.hcs_close_operation(op)
    trace.stop()
    create = next(r for r in records(path) if r.get("fn") == "HcsCreateComputeSystem")
    assert create["args"]["configuration"] == {"$text": "{not json"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYHCS_TRACE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update(extra)
    return env


def test_env_variable_with_pid_and_a_bad_path(tmp_path: Path, hcs: ModuleType) -> None:
    name = "cython" if hcs.__name__ == "pyhcs._native.cython._core" else "ctypes"
    code = "import pyhcs.raw as r, os; r.hcs_close_operation(r.hcs_create_operation()); print(os.getpid())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(PYHCS_TRACE=str(tmp_path / "t-{pid}.jsonl"), PYHCS_BACKEND=name),
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    recs = records(tmp_path / f"t-{out.stdout.strip()}.jsonl")
    assert recs[0]["backend"] == name and [r.get("fn") for r in recs[1:3]] == ["HcsCreateOperation", "HcsCloseOperation"]
    assert recs[-1]["kind"] == "end"
    bad = subprocess.run(
        [sys.executable, "-c", code], env=_env(PYHCS_TRACE=str(tmp_path / "no" / "t.jsonl")),
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 0 and "RuntimeWarning" in bad.stderr and "not tracing" in bad.stderr


def test_a_program_without_hcs_calls_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", "import pyhcs.raw"], env=_env(PYHCS_TRACE=str(path)),
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert not path.exists()


# ------------------------------------------------------------------------------ show


def test_show(traced: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, path = traced
    op = _backend.hcs_create_operation()
    with pytest.raises(errors.SystemNotFoundError):
        _backend.hcs_open_compute_system("trace-show-missing")
    _backend.hcs_close_operation(op)
    trace.stop()
    assert cli_main(["trace", "show", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: pyhcs ")
    assert "HcsCreateOperation(callback=NULL) -> S_OK op#1" in out[1] and "ms" in out[1]
    assert out[2].endswith(
        'T1  HcsOpenComputeSystem(id="trace-show-missing") -> HCS_E_SYSTEM_NOT_FOUND (0x8037010E) SystemNotFoundError'
    )
    assert out[-1] == "3 calls (1 failed), 0 events and completions"
    assert cli_main(["trace", "show", "--json", str(path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[2]["hresult_name"] == "HCS_E_SYSTEM_NOT_FOUND" and lines[2]["line"] == 3


BAD_LINES = [
    ("not json", "2: not JSON"),
    ("[1, 2]", "2: a record must be a JSON object"),
    ('{"kind": "call"}', "2: a call needs 'fn'"),
    ('{"kind": "call", "fn": "HcsFly"}', "2: unknown function 'HcsFly'"),
    ('{"kind": "call", "fn": "HcsCloseOperation", "args": {}}', "2: HcsCloseOperation: argument 'operation' is missing"),
    ('{"kind": "call", "fn": "HcsCloseOperation", "args": {"operation": "op#1", "x": 1}}', "2: HcsCloseOperation has no parameter x"),
    ('{"kind": "call", "fn": "HcsCloseOperation", "args": {"operation": "system#1"}}', "is not a handle of kind 'op'"),
    ('{"kind": "call", "fn": "HcsCloseOperation", "args": {"operation": 5}}', "5 is not a handle id"),
    ('{"kind": "call", "fn": "HcsCloseOperation", "args": {"operation": "op#1"}, "hresult": "E_NOPE"}', "2: 'hresult':"),
    ('{"kind": "call", "fn": "HcsWaitForProcessExit", "args": {"process": "process#1", "timeout_ms": -1}}', "a timeout is milliseconds"),
    ('{"kind": "event", "handle": "system#1"}', "2: an event needs 'type'"),
    ('{"kind": "event", "handle": "system#1", "type": "Exploded"}', "2: 'type': 'Exploded' is not an event type"),
    ('{"kind": "event", "type": 1}', "2: a event needs 'handle'"),
    ('{"kind": "elephant"}', "2: unknown record kind 'elephant'"),
    ('{"kind": "header", "format": 1}', "2: a second header"),
    ('{"kind": "call", "fn": "HcsCloseOperation", "args": {"operation": "op#1"}, "seq": -4}', "2: 'seq' -4 does not follow 0"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_malformed_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "header", "format": 1}\n' + line + "\n")
    with pytest.raises(trace.TraceFormatError) as info:
        trace.load(path)
    assert str(info.value).startswith(f"{path}:")
    assert message in str(info.value)
    assert info.value.line == 2


def test_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "call", "fn": "HcsCloseOperation", "args": {"operation": "op#1"}}\n')
    with pytest.raises(trace.TraceFormatError, match=":1: the first record must be the header"):
        trace.load(path)
    path.write_text('{"kind": "header", "format": 7}\n')
    with pytest.raises(trace.TraceFormatError, match="unsupported trace format 7"):
        trace.load(path)
    path.write_text("\n\n")
    with pytest.raises(trace.TraceFormatError, match="empty"):
        trace.load(path)
    path.write_bytes(b'{"kind": "header", "format": 1}\n\xff\xfe\n')
    with pytest.raises(trace.TraceFormatError, match="not UTF-8"):
        trace.load(path)
    path.write_text('{"kind": "header", "format": 1}\n{"kind": "call", "fn": "HcsFly"}\n')
    assert cli_main(["trace", "show", str(path)]) == 2
    assert cli_main(["trace", "replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"malformed trace: {path}:2: unknown function 'HcsFly'" in err
    assert cli_main(["trace", "show", str(tmp_path / "missing.jsonl")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_values_round_trip() -> None:
    from pyhcs.trace._values import doc_from_trace, doc_to_trace, parse_event_type, parse_hresult

    for text in ('{"a": 1}', "[]", "1.5"):
        assert json.loads(doc_from_trace(doc_to_trace(text)) or "") == json.loads(text)
    for text in ("nope", "null", '"x"', '{"a": 1, "a": 2}', '{"$text": "x"}', "NaN", "1e999"):
        assert doc_to_trace(text) == {"$text": text} and doc_from_trace(doc_to_trace(text)) == text
    assert parse_hresult("HCS_E_INVALID_STATE") == parse_hresult("0x80370105") == parse_hresult(-2143878907)
    assert parse_hresult("S_OK") == 0
    assert parse_event_type("SystemExited") == parse_event_type("SYSTEM_EXITED") == parse_event_type("HcsEventSystemExited") == 1
    assert parse_event_type(0x10000) == parse_event_type("ProcessExited")
    assert doc_to_trace(None) is None and doc_from_trace(None) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_stops_tracing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with trace.tracing(path):
        _backend.hcs_close_operation(_backend.hcs_create_operation())
        pid = os.fork()
        if pid == 0:  # the child: its calls are not written into the parent's trace
            code = 0
            try:
                _backend.hcs_get_service_properties(json.dumps({"PropertyTypes": ["Basic"]}))
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        _backend.hcs_close_operation(_backend.hcs_create_operation())
    fns = [r.get("fn") for r in records(path) if r["kind"] == "call"]
    assert fns == ["HcsCreateOperation", "HcsCloseOperation"] * 2


def test_show_a_hand_written_trace_with_notes(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parent.parent / "traces" / "start_started_system.jsonl"
    assert cli_main(["trace", "show", "--width", "40", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: written by hand"
    assert out[1].strip() == "# Starting a running compute system fails with HCS_E_INVALID_STATE, reported by the operation"
    assert 'configuration={"SchemaVersion":{"Major":2,"Minor":1..., op#1)' in out[3]  # cut at 40 characters
    note = out.index(f"{'':36}# the initiating call is accepted; the operation fails")
    assert out[note - 1].endswith("HcsStartComputeSystem(system#1, op#1) -> S_OK")
    assert out[note + 1].endswith("HcsWaitForOperationResult(op#1, timeout_ms=10000) -> HCS_E_INVALID_STATE (0x80370105)")
    assert out[-1] == "13 calls (1 failed), 0 events and completions; no end record (the traced process did not stop tracing)"
