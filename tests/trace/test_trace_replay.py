"""Replaying traces against the emulator (pyhcs.trace.replay, ``pyhcs trace replay``): the
project's own scenarios recorded and replayed without divergence, hand-made traces of
documented HCS behaviours (tests/traces), and wrong traces reported precisely."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pyhcs import ComputeSystem, errors, storage, trace
from pyhcs.cli import main as cli_main
from pyhcs.testing.plugin import use_backend
from pyhcs.trace import ReplayReport
from pyhcs.trace._file import MISSING

from rawutil import new_id

ROOT = Path(__file__).resolve().parent.parent.parent
TRACES = sorted((ROOT / "tests" / "traces").glob("*.jsonl"))
CONFIG = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-trace-tests", "Container": {}}


def backend_name(hcs: ModuleType) -> str:
    return "cython" if hcs.__name__ == "pyhcs._native.cython._core" else "ctypes"


def assert_no_divergence(report: ReplayReport) -> None:
    assert report.ok, "\n".join(str(d) for d in report.divergences)
    assert report.calls > 0


# ------------------------------------------------------------------------------ the project's scenarios


def test_the_readme_example_replays(hcs: ModuleType, tmp_path: Path) -> None:
    name = backend_name(hcs)
    path = tmp_path / "example.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "PYHCS_TRACE": str(path), "PYHCS_BACKEND": name}
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "example.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    recorded = trace.load(path)
    assert recorded.header["backend"] == name and recorded.ended
    fns = {c.spec.cname for c in recorded.calls}
    assert {"HcsCreateComputeSystem", "HcsCreateProcess", "HcsModifyProcess", "HcsShutDownComputeSystem",
            "HcsTerminateComputeSystem", "HcsWaitForProcessExit"} <= fns
    assert {e.kind for e in recorded.events} == {"event", "completion"}  # aio waits through completions
    assert len({c.thread for c in recorded.calls}) >= 2  # calls made from callbacks
    # The example's processes exit at once and their callbacks are cleared right after the
    # exit is seen: every exit reaches its callback before the clearing call returns, in the
    # recording as in the replay, so nothing diverges.
    report = trace.replay(recorded, raw=hcs, wait_bound=5)
    assert_no_divergence(report)
    assert any("ProcessId" in (d.member or "") for d in report.ignored)  # volatile, not divergences


def test_a_lifecycle_with_processes_and_events_replays(hcs: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.jsonl"
    sid = new_id("trace-life")
    with use_backend(backend_name(hcs)), trace.tracing(path):
        seen: list[str] = []
        with ComputeSystem.create(sid, CONFIG) as system:
            system.add_event_callback(lambda e: seen.append(e.name))
            system.start(timeout=30)
            result = system.run(["sh", "-c", "sleep 0.1; echo hi; exit 4"], timeout=30)
            assert (result.returncode, result.stdout) == (4, b"hi\n")
            with system.create_process(["cat"], stdin=True, stdout=True) as proc:
                out, _ = proc.communicate(b"x" * 100_000, timeout=30)
                assert out is not None and len(out) == 100_000
            system.pause(timeout=30)
            assert system.properties()["State"] == "Paused"
            system.resume(timeout=30)
            system.properties("Statistics", "ProcessList")
            with ComputeSystem.open(sid) as other:
                assert other.properties()["Id"] == sid
            status = system.stop(grace=10)
            assert status.exit_type == "GracefulExit"
    report = trace.replay(path, raw=hcs, wait_bound=10)
    assert_no_divergence(report)
    assert report.events >= 3
    assert {d.member for d in report.ignored} & {"RuntimeId", "ProcessId"}  # volatile members were compared


def test_storage_calls_replay(hcs: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCSEMU_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("HCSEMU_STORAGE_MODE", raising=False)
    src = tmp_path / "src"
    (src / "Files").mkdir(parents=True)
    (src / "Files" / "hello.txt").write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "storage.jsonl"
    with use_backend(backend_name(hcs)), trace.tracing(path):
        base = storage.Layer.import_from(src, tmp_path / "base")
        scratch = storage.WritableLayer.initialize(tmp_path / "scratch", parents=base)
        with scratch.attached() as view:
            assert (view / "hello.txt").read_text() == "hello"
        with pytest.raises(errors.InvalidStateError):
            storage.detach_layer_storage_filter(scratch.path)  # not attached any more
        base.export(out)
        scratch.destroy()
        base.destroy()
        with open(tmp_path / "scratch.vhdx", "w+b") as vhd:
            with pytest.raises(errors.HcsError):
                storage.get_layer_vhd_mount_path(vhd)  # not formatted yet
            storage.format_writable_layer_vhd(vhd)
            assert Path(storage.get_layer_vhd_mount_path(vhd)).is_dir()
    (tmp_path / "scratch.vhdx").write_bytes(b"")
    shutil.rmtree(out)  # what the program did outside HCS is undone, so the replay starts alike
    out.mkdir()
    recorded = trace.load(path)
    assert {"HcsImportLayer", "HcsInitializeWritableLayer", "HcsAttachLayerStorageFilter",
            "HcsDetachLayerStorageFilter", "HcsExportLayer", "HcsDestroyLayer"} <= {c.spec.cname for c in recorded.calls}
    vhd_calls = [c for c in recorded.calls if c.spec.cname == "HcsGetLayerVhdMountPath"]
    assert [c.args["vhd_handle"] for c in vhd_calls] == ["vhd#1", "vhd#1"]
    assert vhd_calls[0].vhd_path == str(tmp_path / "scratch.vhdx")
    report = trace.replay(recorded, raw=hcs, wait_bound=10)
    assert_no_divergence(report)
    # the mount path holds the volume's GUID, new at every format: volatile
    assert any(d.what == "result" and d.where.startswith("HcsGetLayerVhdMountPath") for d in report.ignored)
    assert (tmp_path / "scratch.vhdx").stat().st_size > 0  # formatted again by the replay
    assert (out / "Files" / "hello.txt").read_text() == "hello"
    assert not (tmp_path / "base").exists()


# ------------------------------------------------------------------------------ hand-made traces


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_documented_behaviour(hcs: ModuleType, path: Path) -> None:
    report = trace.replay(path, raw=hcs, wait_bound=10)
    assert_no_divergence(report)


def _edit(src: str, dst: Path, old: str, new: str) -> Path:
    text = (ROOT / "tests" / "traces" / src).read_text()
    assert text.count(old) >= 1, old
    dst.write_text(text.replace(old, new, 1))
    return dst


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_wrong_result_member_is_named(hcs: ModuleType, tmp_path: Path) -> None:
    wrong = _edit("process_exit_code.jsonl", tmp_path / "w.jsonl",
                  '"HcsWaitForProcessExit", "args": {"process": "process#1", "timeout_ms": 10000}, '
                  '"result": {"ProcessId": 1, "Exited": true, "ExitCode": 7',
                  '"HcsWaitForProcessExit", "args": {"process": "process#1", "timeout_ms": 10000}, '
                  '"result": {"ProcessId": 1, "Exited": true, "ExitCode": 8')
    report = trace.replay(wrong, raw=hcs, wait_bound=10)
    line = _line_of(wrong, '"ExitCode": 8')
    assert [(d.line, d.where, d.what, d.member, d.expected, d.actual) for d in report.divergences] == [
        (line, "HcsWaitForProcessExit(process#1)", "result", "ExitCode", 8, 7)
    ]
    assert str(report.divergences[0]) == (
        f"line {line}: HcsWaitForProcessExit(process#1): result member ExitCode: trace 8, replay 7"
    )


def test_wrong_hresult_event_data_and_missing_members(hcs: ModuleType, tmp_path: Path) -> None:
    wrong = _edit("start_started_system.jsonl", tmp_path / "w.jsonl", '"hresult": "HCS_E_INVALID_STATE"', '"hresult": "S_OK"')
    report = trace.replay(wrong, raw=hcs, wait_bound=10)
    assert [(d.what, d.expected, d.actual) for d in report.divergences] == [
        ("hresult", "S_OK", "HCS_E_INVALID_STATE (0x80370105)")
    ]
    assert report.divergences[0].line == 10
    wrong = _edit("start_started_system.jsonl", tmp_path / "w2.jsonl", '"State": "Running", ', '"State": "Paused", "Color": "red", ')
    report = trace.replay(wrong, raw=hcs, wait_bound=10)
    assert [(d.line, d.member, d.expected, d.actual) for d in report.divergences] == [
        (8, "State", "Paused", "Running"),
        (8, "Color", "red", MISSING),
    ]
    wrong = _edit("terminate_events.jsonl", tmp_path / "w3.jsonl", '"ExitType": "ForcedExit", "Attribution"', '"ExitType": "GracefulExit", "Attribution"')
    report = trace.replay(wrong, raw=hcs, wait_bound=10)
    assert [(d.line, d.where, d.what, d.member, d.expected, d.actual) for d in report.divergences] == [
        (10, "events of system#1", "event", "[0].data.ExitType", "GracefulExit", "ForcedExit")
    ]


def test_event_order_and_missing_events(hcs: ModuleType, tmp_path: Path) -> None:
    wrong = _edit("terminate_events.jsonl", tmp_path / "w.jsonl", '"type": "SystemExited"', '"type": "SystemCrashInitiated"')
    report = trace.replay(wrong, raw=hcs, wait_bound=10)
    assert [(d.line, d.what, d.member, d.expected, d.actual) for d in report.divergences] == [
        (10, "event", "[0].type", "SYSTEM_CRASH_INITIATED", "SYSTEM_EXITED")
    ]
    # a second SystemExited, expected before the next call: waited for (bounded), then reported
    extra = '{"kind": "event", "handle": "system#1", "type": "SystemExited"}\n'
    lines = (ROOT / "tests" / "traces" / "terminate_events.jsonl").read_text().splitlines(keepends=True)
    lines.insert(10, extra)
    wrong = tmp_path / "w2.jsonl"
    wrong.write_text("".join(lines))
    report = trace.replay(wrong, raw=hcs, wait_bound=1)
    got = [(d.line, d.where, d.what, d.member, d.expected, d.actual) for d in report.divergences]
    assert got == [
        (12, "HcsWaitForComputeSystemExit(system#1)", "order", None,
         "delivered before the call: 1 more event(s) of system#1", "not delivered within 1 s"),
        (11, "events of system#1", "event", "[1]", "SYSTEM_EXITED", MISSING),
    ]


def test_strict_compares_volatile_members(hcs: ModuleType, tmp_path: Path) -> None:
    path = ROOT / "tests" / "traces" / "process_exit_code.jsonl"
    relaxed = trace.replay(path, raw=hcs, wait_bound=10)
    assert relaxed.ok and {d.member for d in relaxed.ignored} == {"ProcessId", "[0].data.ProcessId"}
    strict = trace.replay(path, raw=hcs, wait_bound=10, strict=True)
    assert not strict.ok and not strict.ignored
    assert {(d.what, d.member) for d in strict.divergences} == {
        ("process_info", "ProcessId"), ("result", "ProcessId"), ("event", "[0].data.ProcessId")
    }


def test_replay_command(hcs: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = ROOT / "tests" / "traces" / "open_missing_system.jsonl"
    with use_backend(backend_name(hcs)):
        assert cli_main(["trace", "replay", str(good)]) == 0
        assert capsys.readouterr().out.strip().endswith(": no divergence")
        wrong = _edit("open_missing_system.jsonl", tmp_path / "w.jsonl", '"hresult": "HCS_E_SYSTEM_NOT_FOUND"', '"hresult": "HCS_E_ACCESS_DENIED"')
        assert cli_main(["trace", "replay", "--wait-bound", "5", str(wrong)]) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[0] == (
            'line 2: HcsOpenComputeSystem("trace-no-such-system"): hresult: trace "HCS_E_ACCESS_DENIED (0x8037011B)", '
            'replay "HCS_E_SYSTEM_NOT_FOUND (0x8037010E)"'
        )
        assert out[-1].endswith(": 1 divergence")
        assert cli_main(["trace", "replay", "--json", "--strict", str(wrong)]) == 1
        doc = json.loads(capsys.readouterr().out)
        assert doc["ok"] is False and doc["divergences"][0]["what"] == "hresult" and doc["divergences"][0]["line"] == 2
        assert cli_main(["trace", "replay", str(tmp_path / "missing.jsonl")]) == 2
    assert cli_main(["trace", "replay", "--wait-bound", "0", str(good)]) == 2  # a usage error


def test_replay_refuses_a_real_hcs(tmp_path: Path) -> None:
    class RealHcs:
        __name__ = "pyhcs._native.cython._core"

        @staticmethod
        def library_path() -> str:
            return r"C:\Windows\System32\computecore.dll"

    with pytest.raises(ValueError, match="replay runs against the HCS emulator"):
        trace.replay(TRACES[0], raw=RealHcs())  # type: ignore[arg-type]  # not a module: a stand-in, on purpose


def test_the_replay_can_be_traced_but_never_over_its_input(tmp_path: Path) -> None:
    src = ROOT / "tests" / "traces" / "start_started_system.jsonl"
    mine = tmp_path / "in.jsonl"
    shutil.copy(src, mine)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYHCS_TRACE": str(mine)}
    out = subprocess.run([sys.executable, "-m", "pyhcs", "trace", "replay", str(mine)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert mine.read_text() == src.read_text()
    env["PYHCS_TRACE"] = str(tmp_path / "emulated.jsonl")
    out = subprocess.run([sys.executable, "-m", "pyhcs", "trace", "replay", str(mine)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    emulated = trace.load(tmp_path / "emulated.jsonl")
    assert [c.spec.cname for c in emulated.calls] == [c.spec.cname for c in trace.load(src).calls]
    assert trace.replay(emulated).ok  # and the emulator's own trace replays as it was


def test_a_handle_the_trace_did_not_get_is_reported_and_closed(hcs: ModuleType, tmp_path: Path) -> None:
    from pyhcs import errors as hcs_errors

    lines = (ROOT / "tests" / "traces" / "start_started_system.jsonl").read_text().splitlines(keepends=True)
    lines.insert(3, '{"kind": "call", "fn": "HcsOpenComputeSystem", "args": {"id": "trace-start-twice"}, '
                    '"hresult": "HCS_E_SYSTEM_NOT_FOUND"}\n')
    wrong = tmp_path / "w.jsonl"
    wrong.write_text("".join(lines))
    report = trace.replay(wrong, raw=hcs, wait_bound=10)
    assert [(d.line, d.where, d.what, d.expected, d.actual) for d in report.divergences] == [
        (4, 'HcsOpenComputeSystem("trace-start-twice")', "hresult", "HCS_E_SYSTEM_NOT_FOUND (0x8037010E)", "S_OK")
    ]
    with pytest.raises(hcs_errors.SystemNotFoundError):  # the replay closed the extra handle too
        hcs.hcs_open_compute_system("trace-start-twice")
