"""Process: stdio, communicate, exit statuses, signals, kill/terminate, errors and timeouts."""

# Two tests set a process's private state to reach paths HCS takes rarely.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import subprocess
from typing import Any

import pytest

import pyhcs
from pyhcs import ComputeSystem, emulator, errors
from pyhcs._native import _backend as B
from pyhcs.events import ExitStatus

from pyutil import CONFIG
from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "proc") -> str:
    return _new_id(prefix)


def test_run_captures_output(system: ComputeSystem) -> None:
    result = system.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.stdout, result.stderr, result.returncode) == (b"out\n", b"err\n", 3)
    assert result.exit_status.code == 3 and result.exit_status.source in ("event", "wait")
    assert result.pid > 0
    with pytest.raises(subprocess.CalledProcessError) as exc:
        system.run('sh -c "exit 4"', check=True)  # read alike by a shell and by Windows
    err = exc.value
    assert isinstance(err, errors.CalledProcessError) and not isinstance(err, pyhcs.HcsError)
    assert err.returncode == 4 and err.cmd == 'sh -c "exit 4"' and err.system_id == system.id and err.pid > 0
    assert err.exit_status is not None and err.exit_status.code == 4
    assert f"compute system {system.id!r}" in str(err)
    assert system.run("true", capture_output=False).stdout is None


def test_run_with_input_env_cwd(system: ComputeSystem, tmp_path: Any) -> None:
    # the working directory is a host folder: mapped (live), as an isolated Container sees no other
    system.modify({"ResourcePath": "Container/MappedDirectories", "RequestType": "Add",
                   "Settings": {"HostPath": str(tmp_path), "ContainerPath": str(tmp_path)}})
    result = system.run(["sh", "-c", 'cat; echo "$GREETING"; pwd'], input=b"data\n", env={"GREETING": "hi"},
                        cwd=tmp_path)
    assert result.stdout == f"data\nhi\n{tmp_path}\n".encode()


def test_stdio_file_objects(system: ComputeSystem) -> None:
    with system.create_process("cat", stdin=True, stdout=True) as p:
        assert p.stdin is not None and p.stdout is not None and p.stderr is None
        p.stdin.write(b"hello\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"hello\n"
        p.close_stdin()  # EOF needs our close AND CloseHandle/StdIn
        assert p.stdin is None
        assert p.stdout.read() == b""
        assert p.wait(10) == 0
        p.close_stdin()  # idempotent, also after the exit


def test_closing_our_end_alone_is_not_eof(system: ComputeSystem) -> None:
    # HCS semantics: the service holds another write end until CloseHandle/StdIn.
    with system.create_process("cat", stdin=True, stdout=True) as p:
        assert p.stdin is not None
        p.stdin.close()
        with pytest.raises(errors.OperationTimeoutError):
            p.wait(0.2)
        p._had_stdin = True
        p.stdin = None
        p.close_stdin()
        assert p.wait(10) == 0


def test_communicate_large_output_on_both_streams(system: ComputeSystem) -> None:
    # Far more than a pipe buffer (64 KiB) on stdout and stderr at once, plus a big input.
    script = "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2; wc -c"
    with system.create_process(["sh", "-c", script], stdin=True, stdout=True, stderr=True) as p:
        out, err = p.communicate(b"x" * 1_000_000, timeout=60)
        assert out is not None and err is not None
        assert len(err) == 2_000_000
        assert out[:3_000_000] == b"\0" * 3_000_000 and out[3_000_000:].strip() == b"1000000"
        assert p.exit_code == 0
        assert p.communicate() == (out, err)  # repeatable


def test_communicate_timeout_then_retry(system: ComputeSystem) -> None:
    with system.create_process(["sh", "-c", "echo first; exec sleep 30"], stdin=True, stdout=True) as p:
        with pytest.raises(errors.TimeoutExpiredError) as exc:
            p.communicate(b"ignored input", timeout=0.3)
        err = exc.value
        assert isinstance(err, errors.OperationTimeoutError)
        assert err.output == b"first\n"
        assert "communicate() again" in str(err)
        with pytest.raises(ValueError):
            p.communicate(b"late input")
        p.kill()
        out, _ = p.communicate(timeout=10)
        assert out == b"first\n"
        assert p.exit_code == 137  # 128 + SIGKILL


def test_exit_codes_and_signals(system: ComputeSystem) -> None:
    with system.create_process(["sleep", "30"]) as p:
        assert p.poll() is None and p.exit_status is None
        assert p.signal(15) is True
        assert p.wait(10) == 143
        assert p.signal(15) is False  # already exited: not an error
        assert p.kill() is False and p.terminate() is False
        status = p.exit_status
        assert status is not None and status == ExitStatus(p.pid, True, 143, 0, status.source)
    with system.create_process(["sleep", "30"]) as p:
        assert p.terminate() is True
        assert p.wait(10) == 137
    with system.create_process(["sleep", "30"]) as p:
        assert p.kill() is True
        assert p.kill() in (True, False)  # idempotent whether or not the exit arrived yet
        assert p.wait(10) == 137
        assert p.returncode == 137


def test_signal_by_name_and_bad_signal(system: ComputeSystem) -> None:
    with system.create_process(["sleep", "30"]) as p:
        assert p.signal("CtrlC") is True
        assert p.wait(10) == 130
    with system.create_process(["sleep", "30"]) as p:
        with pytest.raises(errors.InvalidJsonError):
            p.signal("NoSuchSignal")
        with pytest.raises(errors.InvalidArgumentError):
            p.signal(99)
        p.kill()
        p.wait(10)


def test_benign_terminate_codes_after_exit(system: ComputeSystem) -> None:
    with system.create_process("true") as p:
        p.wait(10)
        p._hub.exit = None  # pretend the exit was not seen: HCS then answers E_ACCESSDENIED
        assert p.terminate() is False
        assert p.exit_status is not None


def test_wait_timeout_keeps_the_process(system: ComputeSystem) -> None:
    with system.create_process("sleep 30") as p:
        with pytest.raises(errors.OperationTimeoutError) as exc:
            p.wait(0.05)
        assert exc.value.process_id == p.pid and exc.value.system_id == system.id
        assert p.properties()["Exited"] is False
        p.kill()
        assert p.wait(10) == 137
        assert p.properties()["Exited"] is True


def test_console_resize(system: ComputeSystem) -> None:
    with system.create_process(["sh", "-c", "stty size; read x"], console=True, console_size=(24, 80), stdin=True,
                               stdout=True) as p:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == b"24 80"
        p.resize(40, 120)
        p.kill()
        p.wait(10)


def test_modify_and_properties(system: ComputeSystem) -> None:
    with system.create_process("sleep 30", stdin=True) as p:
        props = p.properties()
        assert props["ProcessId"] == p.pid and props["Exited"] is False
        with pytest.raises(errors.InvalidJsonError):
            p.modify({"Operation": "Nonsense"})
        p.kill()
        p.wait(10)
        with pytest.raises(errors.ProcessAlreadyStoppedError):
            p.modify({"Operation": "ConsoleSize", "ConsoleSize": {"Height": 1, "Width": 1}})


def test_missing_program_and_wrong_state(system: ComputeSystem) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        system.create_process(["/no/such/program"])
    assert isinstance(exc.value, errors.Win32FileNotFoundError)
    assert exc.value.system_id == system.id and exc.value.call == "HcsCreateProcess"
    with pytest.raises(ValueError):
        system.create_process()
    with pytest.raises(ValueError):
        system.create_process([])
    with ComputeSystem.create(new_id(), CONFIG) as created:
        with pytest.raises(errors.InvalidStateError):
            created.create_process("true")
    system.pause()
    with pytest.raises(errors.InvalidStateError):
        system.create_process("true")
    system.resume()


def test_create_process_sync_quirk_is_recovered(system: ComputeSystem) -> None:
    emulator.configure(CreateProcessSyncQuirk=True)
    with system.create_process(["sh", "-c", "echo hi; sleep 30"], stdout=True) as p:
        assert p.pid > 0 and p.stdout is not None
        assert p.stdout.readline() == b"hi\n"
        p.kill()
        assert p.wait(10) == 137


def test_open_process_by_pid(system: ComputeSystem) -> None:
    with system.create_process(["sh", "-c", "echo ready; exec sleep 30"], stdout=True) as p:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        with system.open_process(p.pid) as q:
            assert q.pid == p.pid and q.stdout is None
            assert q.properties()["Exited"] is False
        with system.open_process(p.pid, stdio=True) as q:
            assert q.stdin is None and q.stdout is None  # stdout's one reader is the creator
        p.kill()
        p.wait(10)
    with pytest.raises(errors.ElementNotFoundError):
        system.open_process(p.pid)


def test_process_params_document(system: ComputeSystem) -> None:
    params = {"CommandLine": 'sh -c "echo $X"', "Environment": {"X": "from-params"}, "CreateStdOutPipe": True}
    with system.create_process(params=params) as p:
        assert p.communicate(timeout=10) == (b"from-params\n", None)
    with system.create_process(params=params, env={"X": "override"}) as p:
        assert p.communicate(timeout=10)[0] == b"override\n"


def test_process_calls_after_close_raise_locally(system: ComputeSystem) -> None:
    p = system.create_process("sleep 30", stdout=True)
    pid = p.pid
    p.close()
    assert p.stdout is None
    for call in (p.kill, p.terminate, lambda: p.signal(9), p.properties, lambda: p.resize(1, 1)):
        with pytest.raises(errors.HandleClosedError) as exc:
            call()
        assert exc.value.process_id == pid
    with pytest.raises(errors.HandleClosedError):
        p.wait(1)
    # closing the handle did not end the process (HCS semantics); end it by pid
    with system.open_process(pid) as q:
        q.kill()
        q.wait(10)


def test_system_close_closes_its_processes() -> None:
    s = ComputeSystem.create(new_id(), CONFIG)
    s.start()
    p = s.create_process("sleep 30", stdin=True, stdout=True)
    s.close()
    assert p.closed and p.stdin is None and p.stdout is None


def test_process_wait_fails_when_the_system_ends_without_exit_event(system: ComputeSystem) -> None:
    with system.create_process("sleep 30") as p:
        system.terminate()
        # the emulator reports ProcessExited before SystemExited: a real exit code
        assert p.wait(10) == 137


def test_disconnect_fails_process_wait(system: ComputeSystem) -> None:
    with system.create_process("sleep 30") as p:
        emulator.action("ServiceDisconnect")
        try:
            with pytest.raises(errors.ServiceDisconnectedError):
                p.wait(10)
        finally:
            emulator.action("Reconnect")
        p.kill()


def test_exit_status_values() -> None:
    ok = ExitStatus.from_document('{"ProcessId": 5, "Exited": true, "ExitCode": 3, "LastWaitResult": 0}', "event")
    assert ok.code == 3 and ok.ok and ok.check() == 3 and ok.error() is None
    failed = ExitStatus.from_document('{"ProcessId": 5, "Exited": true, "ExitCode": 0, "LastWaitResult": -2147024890}',
                                      "event")
    assert failed.code is None and failed.last_wait_result == 0x80070006
    with pytest.raises(errors.InvalidHandleError):
        failed.check()
    running = ExitStatus.from_document('{"ProcessId": 5, "Exited": false, "ExitCode": 0}', "properties")
    with pytest.raises(errors.ProcessInfoNotAvailableError):
        running.check()


def test_create_process_timeout_hands_over_the_process(system: ComputeSystem) -> None:
    emulator.add_faults({"Function": "HcsCreateProcess", "DelayMs": 300, "Count": 1})
    with pytest.raises(errors.TimeoutExpiredError) as exc:
        system.create_process("sleep 30", timeout=0.01)
    p = exc.value.process
    assert p is not None
    del exc
    with p:
        p.wait_started(10)
        assert p.pid > 0
        p.kill()
        assert p.wait(10) == 137


def test_run_timeout_kills(system: ComputeSystem) -> None:
    with pytest.raises(errors.TimeoutExpiredError) as exc:
        system.run(["sh", "-c", "echo partial; exec sleep 30"], timeout=0.5)
    assert exc.value.output == b"partial\n"
    assert exc.value.system_id == system.id


def test_repr(system: ComputeSystem) -> None:
    with system.create_process("sleep 30") as p:
        assert "running" in repr(p) and str(p.pid) in repr(p)
        p.kill()
        p.wait(10)
        assert "exited(137)" in repr(p)
    assert "closed" in repr(p)
    assert isinstance(pyhcs.Process, type)


def test_console_output_until_exit(system: ComputeSystem) -> None:
    # A console (pty) reports EIO, not EOF, once its child is gone: communicate() copes.
    with system.create_process(["sh", "-c", "echo on a console"], console=True, stdout=True) as p:
        out, err = p.communicate(timeout=10)
        assert out is not None and out.replace(b"\r", b"") == b"on a console\n" and err is None
        assert p.exit_code == 0


@pytest.mark.parametrize(
    "method, function",
    [
        ("signal", "HcsSignalProcess"),
        ("terminate", "HcsTerminateProcess"),
        ("kill", "HcsTerminateProcess"),
        ("properties", "HcsGetProcessProperties"),
        ("resize", "HcsModifyProcess"),
        ("close_stdin", "HcsModifyProcess"),
    ],
)
def test_each_process_call_times_out(system: ComputeSystem, method: str, function: str) -> None:
    emulator.configure(CancelOperation="Implemented")
    with system.create_process(["sleep", "30"], stdin=True) as p:
        emulator.add_faults({"Function": function, "Hang": True, "Count": 1})
        args: list[Any] = {"signal": [15], "resize": [10, 10]}.get(method, [])
        with pytest.raises(errors.OperationTimeoutError) as exc:
            getattr(p, method)(*args, timeout=0.05)
        err = exc.value
        assert err.call == function and err.process_id == p.pid and err.system_id == system.id
        op = err.operation
        assert isinstance(op, pyhcs.Operation) and op.cancel() is True
        B.flush_callbacks()
        assert op.closed  # abandoned: closed itself once cancelled
        p.kill()
        p.wait(10)
