"""The ``pyhcs`` command, run as users run it: in subprocesses, on both backends.

Most commands act on a system that exists already. Until the emulator's shared service runs
in its own process, a system lives in the process that created it, so those tests run the
command inside a host process that created one (``_hosted``: the same ``pyhcs.cli.main``
with the process' real stdin/stdout/stderr). The multi-process tests at the end need the
shared service and are skipped in a build without it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pyhcs
from pyhcs import cli, errors
from pyhcs._native._types import EventType
from pyhcs.events import Event

from conftest import BACKENDS

SRC = Path(pyhcs.__file__).resolve().parents[1]  # the pyhcs under test: src/, or site-packages
_CLEAN = ("HCSEMU_FAULTS", "HCSEMU_SETTINGS", "HCSEMU_SERVICE", "PYHCS_LIBRARY", "PYHCS_BACKEND", "COLUMNS", "LINES")

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def _env(backend: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["PYHCS_BACKEND"] = backend
    # Hermetic: never start (or reach) the user's shared emulator service from the suite.
    env["HCSEMU_SERVICE"] = "private"
    env.update(extra)
    return env


def _pyhcs(backend: str, *args: str, input: str | None = None, timeout: float = 60, **env: str
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyhcs", *args], input=input, capture_output=True, text=True,
                          env=_env(backend, **env), timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def _popen(backend: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pyhcs", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1, env=_env(backend, **env))


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


# A process that creates a running system (with one `sleep` in it), then runs the pyhcs
# command lines it is given, one after the other, and reports their exit statuses last.
_HOST = textwrap.dedent(
    """
    import json, sys, threading
    from pyhcs import ComputeSystem, cli
    sid, owner, mode, commands = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    cfg = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": owner, "Container": {}}
    with ComputeSystem.create(sid, cfg, timeout=60) as system:
        system.start(timeout=60)
        sleeper = system.create_process(["sleep", "60"], timeout=60)
        if mode == "terminate-later":
            threading.Timer(1.5, lambda: system.terminate(timeout=60)).start()
        statuses = []
        for argv in commands:
            statuses.append(cli.main(argv))
            sys.stdout.flush()
        sleeper.close()
    print("HOST-STATUSES", json.dumps(statuses), file=sys.stderr)
    """
)


def _hosted(backend: str, *commands: list[str], mode: str = "-", owner: str | None = None,
            input: str | None = None, **env: str) -> tuple[list[int], str, str, str]:
    """Runs ``commands`` in a host process with a running system; returns (statuses, stdout,
    stderr, system id)."""
    sid = f"cli-{uuid.uuid4().hex[:10]}"
    out = subprocess.run([sys.executable, "-c", _HOST, sid, owner or f"{sid}-owner", mode,
                          json.dumps([[a.replace("{id}", sid) for a in c] for c in commands])],
                         input=input, capture_output=True, text=True, env=_env(backend, **env), timeout=120,
                         stdin=None if input is not None else subprocess.DEVNULL)
    marker = "HOST-STATUSES "
    lines = out.stderr.splitlines()
    assert lines and lines[-1].startswith(marker), out.stdout + out.stderr
    statuses = json.loads(lines[-1][len(marker):])
    return statuses, out.stdout, "\n".join(lines[:-1]), sid


def _json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------- usage


def test_no_arguments_prints_usage_with_the_commands(backend: str) -> None:
    out = _pyhcs(backend)
    assert out.returncode == cli.EXIT_USAGE
    assert "required" not in out.stderr
    for command in ("list", "ps", "exec", "run", "kill", "pause", "resume", "save", "shutdown", "terminate",
                    "stats", "properties", "events", "sweep", "emulator", "info", "demo"):
        assert f"\n    {command}" in out.stderr, command
    assert "HCSEMU_SERVICE=shared" in out.stderr and "exit status" in out.stderr


def test_every_command_has_help_with_an_example(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    names = cli.command_names()
    assert len(names) >= 17
    for name in [*names, "emulator serve", "emulator status", "emulator stop"]:
        assert cli.main([*name.split(), "--help"]) == 0
        text = capsys.readouterr().out
        assert "example:" in text and "pyhcs " + name.split()[0] in text, name


def test_usage_errors_exit_2(backend: str) -> None:
    assert _pyhcs(backend, "list", "--bogus").returncode == cli.EXIT_USAGE
    assert _pyhcs(backend, "run").returncode == cli.EXIT_USAGE
    out = _pyhcs(backend, "run", "--env", "=x", "--", "true")
    assert out.returncode == cli.EXIT_USAGE and "NAME=VALUE" in out.stderr
    out = _pyhcs(backend, "kill", "--signal", "NOPE", "some-id")
    assert out.returncode == cli.EXIT_USAGE and "unknown signal 'NOPE'" in out.stderr
    out = _pyhcs(backend, "emulator")
    assert out.returncode == cli.EXIT_USAGE and "serve" in out.stderr


def test_bad_backend_is_one_line_not_a_traceback(backend: str) -> None:
    out = _pyhcs(backend, "list", PYHCS_BACKEND="nope")
    assert out.returncode == cli.EXIT_FAILURE
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == "pyhcs list: PYHCS_BACKEND='nope' is not one of auto, cython, ctypes"


def test_malformed_hcsemu_faults_is_an_error(backend: str) -> None:
    out = _pyhcs(backend, "list", HCSEMU_FAULTS="{not json")
    assert out.returncode == cli.EXIT_FAILURE and "HCSEMU_FAULTS is not valid JSON" in out.stderr
    out = _pyhcs(backend, "list", HCSEMU_FAULTS='{"Faults": [{"Function": "HcsNoSuchFunction"}]}')
    assert out.returncode == cli.EXIT_FAILURE
    assert "HCSEMU_FAULTS was rejected" in out.stderr and "no fault would be injected" in out.stderr
    # A good one is applied, and fires.
    good = '{"Faults": [{"Function": "HcsCreateComputeSystem", "HResult": "0x80370109"}]}'
    out = _pyhcs(backend, "run", "--", "true", HCSEMU_FAULTS=good)
    assert out.returncode == cli.EXIT_FAILURE
    assert "HRESULT 0x80370109 (HCS_E_CONNECTION_TIMEOUT)" in out.stderr


def test_rejected_hcsemu_settings_is_an_error(backend: str) -> None:
    out = _pyhcs(backend, "list", HCSEMU_SETTINGS='{"ShutdownGraceMs": "soon"}')
    assert out.returncode == cli.EXIT_FAILURE and "ShutdownGraceMs" in out.stderr
    out = _pyhcs(backend, "list", HCSEMU_SETTINGS='{"ShutdownGraceMs": 1234, "WaitExitTimeoutResult": "WaitTimeout"}')
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------------- run


def test_run_passes_exit_code_and_streams(backend: str) -> None:
    out = _pyhcs(backend, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (out.returncode, out.stdout, out.stderr) == (5, "out\n", "err\n")


def test_run_streams_output_while_running_and_keeps_it_on_ctrl_c(backend: str) -> None:
    proc = _popen(backend, "run", "--", "sh", "-c", "echo first; sleep 60")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"  # before the process ended
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == cli.EXIT_INTERRUPTED
    finally:
        _reap(proc)


def test_run_sigterm_cleans_up_and_exits_143(backend: str) -> None:
    proc = _popen(backend, "run", "--", "sh", "-c", "echo first; sleep 60")
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "first\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == cli.EXIT_TERMINATED
    finally:
        _reap(proc)


def test_run_forwards_stdin_while_running(backend: str) -> None:
    proc = _popen(backend, "run", "--", "sh", "-c", 'while read x; do echo "got $x"; done; exit 4')
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for word in ("a", "b"):  # each answer comes back before stdin is closed
            proc.stdin.write(word + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"got {word}\n"
        proc.stdin.close()
        assert proc.wait(30) == 4
    finally:
        _reap(proc)


def test_run_no_stdin(backend: str) -> None:
    proc = _popen(backend, "run", "-n", "--", "cat")  # our stdin stays open; cat gets none
    try:
        assert proc.wait(30) == 0
    finally:
        _reap(proc)


def test_run_input_from_a_pipe(backend: str) -> None:
    out = _pyhcs(backend, "run", "--", "sort", input="b\na\n")
    assert (out.returncode, out.stdout) == (0, "a\nb\n")


def test_run_env_without_value_takes_ours(backend: str) -> None:
    out = _pyhcs(backend, "run", "--env", "FOO", "--env", "UNSET_X", "-e", "Q=1", "--", "/bin/sh", "-c",
                 "echo $FOO ${UNSET_X-unset} $Q", FOO="bar", HCSEMU_SETTINGS='{"InheritEnvironment": false}')
    assert (out.returncode, out.stdout) == (0, "bar unset 1\n"), out.stderr


def test_run_bad_workdir_says_what_the_hresult_means(backend: str) -> None:
    sid = f"cli-{uuid.uuid4().hex[:8]}"
    out = _pyhcs(backend, "run", "--id", sid, "--workdir", "/nonexistent-dir", "--", "true")
    assert out.returncode == cli.EXIT_CANNOT_INVOKE
    first = out.stderr.splitlines()[0]
    assert first.startswith(f"pyhcs run: system '{sid}': HcsCreateProcess failed with HRESULT 0x8007010B")
    assert "ERROR_DIRECTORY" in first and "The directory name is invalid" in first
    assert "/nonexistent-dir" in out.stderr
    err = json.loads(_pyhcs(backend, "run", "--json", "--workdir", "/nonexistent-dir", "--", "true").stderr)
    assert err["Error"]["HResult"] == "0x8007010B" and err["Error"]["Meaning"] == "The directory name is invalid"
    assert err["Error"]["ExitStatus"] == cli.EXIT_CANNOT_INVOKE


def test_run_missing_program_exits_127(backend: str) -> None:
    out = _pyhcs(backend, "run", "--", "/nonexistent/program")
    assert out.returncode == cli.EXIT_NOT_FOUND and "ERROR_FILE_NOT_FOUND" in out.stderr


def test_run_timeout_kills_and_exits_124(backend: str) -> None:
    t0 = time.monotonic()
    out = _pyhcs(backend, "run", "--timeout", "1", "--", "sh", "-c", "echo start; sleep 60")
    assert out.returncode == cli.EXIT_TIMEOUT
    assert out.stdout == "start\n" and "--timeout 1 s" in out.stderr
    assert time.monotonic() - t0 < 30


def test_run_json_lines_with_id_and_owner(backend: str) -> None:
    sid = f"cli-{uuid.uuid4().hex[:8]}"
    out = _pyhcs(backend, "run", "--json", "--id", sid, "--owner", "me", "--", "sh", "-c", "echo hi; echo ho >&2; exit 2")
    assert out.returncode == 2
    lines = _json_lines(out.stdout)
    assert {"Stream": "stdout", "Data": "hi\n"} in lines and {"Stream": "stderr", "Data": "ho\n"} in lines
    assert lines[-1]["Id"] == sid and lines[-1]["ExitCode"] == 2 and lines[-1]["Pid"] > 0


def test_run_tty_has_a_console_of_our_size(backend: str) -> None:
    out = _pyhcs(backend, "run", "-t", "-n", "--", "sh", "-c", "stty size; tty", COLUMNS="100", LINES="30")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].strip() == "30 100"
    assert "/dev/pts/" in out.stdout


def test_run_broken_stdout_ends_the_process(backend: str) -> None:
    proc = _popen(backend, "run", "--", "yes")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "y\n"
        proc.stdout.close()  # as `pyhcs run -- yes | head -1`
        assert proc.wait(30) == cli.EXIT_BROKEN_PIPE
    finally:
        _reap(proc)


def test_run_detached_needs_a_service_that_outlives_it(backend: str) -> None:
    out = _pyhcs(backend, "run", "-d", "--", "sleep", "1")
    assert out.returncode == cli.EXIT_FAILURE and "cannot run detached" in out.stderr


def test_demo_and_info(backend: str) -> None:
    out = _pyhcs(backend, "demo")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "process exit code: 3" in out.stdout and f"on the {backend} backend" in out.stdout
    doc = json.loads(_pyhcs(backend, "info", "--json").stdout)
    assert doc["Backend"] == backend and doc["Emulator"] is True and doc["ServiceMode"]
    assert doc["Service"]["Properties"]
    out = _pyhcs(backend, "info")
    assert out.returncode == 0 and "service:" in out.stdout and "library:" in out.stdout


# ----------------------------------------------------------------------------------- systems


def test_list_ps_stats_properties(backend: str) -> None:
    statuses, out, err, sid = _hosted(
        backend,
        ["list"],
        ["list", "--json", "--owner", "{id}-owner"],
        ["list", "--json", "--owner", "nobody-has-this-owner"],
        ["ps", "--json", "{id}"],
        ["stats", "--json", "{id}"],
        ["properties", "--json", "{id}", "Statistics", "ProcessList"],
        ["ps", "{id}"],
        ["stats", "{id}"],
    )
    assert statuses == [0] * 8, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATE", "OWNER"]
    assert lines[1].split() == [sid, "Container", "Running", f"{sid}-owner"]
    docs = [json.loads(line) for line in lines if line.startswith(("[", "{"))]
    listed, empty, processes, stats, props = docs
    assert [s["Id"] for s in listed] == [sid] and listed[0]["Owner"] == f"{sid}-owner"
    assert empty == []
    assert [p["ImageName"] for p in processes] == ["sleep"] and processes[0]["ProcessId"] > 0
    assert stats["Id"] == sid and "Processor" in stats["Statistics"]
    assert "Statistics" in props and "ProcessList" in props
    assert any(line.split()[:2] == ["PID", "IMAGE"] for line in lines)
    assert any(line.startswith("memory:") for line in lines)


def test_exec_relays_stdin_stdout_stderr_and_exit_code(backend: str) -> None:
    statuses, out, err, _ = _hosted(
        backend,
        ["exec", "{id}", "--", "sh", "-c", "cat; echo to-stderr >&2; exit 9"],
        input="line 1\nline 2\n",
    )
    assert statuses == [9]
    assert out == "line 1\nline 2\n" and "to-stderr" in err


def test_exec_tty(backend: str) -> None:
    statuses, out, err, _ = _hosted(backend, ["exec", "-t", "-n", "{id}", "--", "sh", "-c", "stty size; exit 3"],
                                    COLUMNS="90", LINES="20")
    assert statuses == [3], err
    assert out.strip() == "20 90"


def test_exec_errors_name_the_system(backend: str) -> None:
    statuses, _, err, sid = _hosted(backend, ["exec", "{id}", "--", "/nonexistent/program"],
                                    ["exec", "{id}-missing", "--", "true"])
    assert statuses == [cli.EXIT_NOT_FOUND, cli.EXIT_FAILURE]
    assert f"system '{sid}'" in err
    assert f"system '{sid}-missing': HcsOpenComputeSystem failed with HRESULT 0x8037010E (HCS_E_SYSTEM_NOT_FOUND)" in err


def test_events_follow_the_stream_until_exit(backend: str) -> None:
    t0 = time.monotonic()
    statuses, out, err, sid = _hosted(backend, ["events", "{id}"], mode="terminate-later")
    assert statuses == [0], err
    assert time.monotonic() - t0 > 1.0  # it waited for the terminate
    assert out.split()[1] == "SystemExited" and "SYSTEM_EXITED" not in out and "EventType" not in out
    statuses, out, err, sid = _hosted(backend, ["events", "--json", "{id}"], mode="terminate-later")
    assert statuses == [0], err
    (ev,) = _json_lines(out)
    assert ev["Event"] == "SystemExited" and ev["SystemId"] == sid and ev["Data"]["ExitType"] == "ForcedExit"


def test_events_timeout(backend: str) -> None:
    statuses, _, err, _ = _hosted(backend, ["events", "--timeout", "1", "{id}"])
    assert statuses == [cli.EXIT_TIMEOUT] and "--timeout 1 s" in err


def test_kill_signal_and_terminate(backend: str) -> None:
    statuses, out, err, _ = _hosted(
        backend,
        ["kill", "--json", "--signal", "TERM", "{id}"],
        ["kill", "--json", "--pid", "999999", "{id}"],
        ["kill", "--json", "{id}"],
        ["kill", "--json", "{id}"],
    )
    assert statuses == [0, cli.EXIT_FAILURE, 0, 0], err
    signalled, first, second = _json_lines(out)
    assert signalled["Signal"] == 15 and len(signalled["Processes"]) == 1 and signalled["Processes"][0]["Changed"]
    assert "999999" in err
    assert first == {"Id": first["Id"], "Action": "terminate", "Changed": True}
    assert second["Changed"] is False  # already stopped: not an error


def test_pause_resume_save_shutdown(backend: str, tmp_path: Path) -> None:
    state = tmp_path / "state.vmrs"
    statuses, out, err, sid = _hosted(
        backend,
        ["pause", "{id}"],
        ["resume", "--json", "{id}"],
        ["save", "{id}", str(state)],  # not paused: HCS refuses
        ["pause", "{id}"],
        ["save", "--json", "{id}", str(state)],
        ["terminate", "{id}"],
        ["shutdown", "{id}"],
    )
    assert statuses == [0, 0, cli.EXIT_FAILURE, 0, 0, 0, 0], err
    assert f"paused '{sid}'" in out and f"terminated '{sid}'" in out and "already stopped" in out
    assert {"Id": sid, "Action": "resume", "Changed": True} in [json.loads(x) for x in out.splitlines() if x[:1] == "{"]
    assert "HCS_E_INVALID_STATE" in err and state.exists()


def test_sweep_by_owner(backend: str) -> None:
    owner = f"sweep-{uuid.uuid4().hex[:8]}"
    statuses, out, err, sid = _hosted(
        backend,
        ["sweep", "--json", "--dry-run", "--owner", owner],
        ["sweep", "--json", "--grace", "1", "--owner", owner],
        ["sweep", "--owner", "nobody-has-this-owner"],
        owner=owner,
    )
    assert statuses == [0, 0, 0], err
    dry, done = (json.loads(x) for x in out.splitlines()[:2])
    assert dry == [{"Id": sid, "State": "Running", "Result": "would stop"}]
    assert done[0]["Id"] == sid and done[0]["Result"] == "stopped"
    assert "no compute system owned by 'nobody-has-this-owner'" in out


def test_emulator_commands_without_a_service(backend: str) -> None:
    from pyhcs import emulator

    if hasattr(emulator, "service_status"):
        pytest.skip("this build has the emulator service (tested below)")
    out = _pyhcs(backend, "emulator", "status")
    assert out.returncode == cli.EXIT_FAILURE and "this build has no emulator service" in out.stderr


# ----------------------------------------------------------------------------------- pieces


def test_event_names_are_the_documented_ones(backend: str) -> None:
    names = {t: cli.event_name(Event(t, None)) for t in EventType}
    assert names[EventType.SYSTEM_EXITED] == "SystemExited"
    assert names[EventType.SYSTEM_CRASH_INITIATED] == "SystemCrashInitiated"
    assert names[EventType.SYSTEM_RDP_ENHANCED_MODE_STATE_CHANGED] == "SystemRdpEnhancedModeStateChanged"
    assert names[EventType.PROCESS_EXITED] == "ProcessExited"
    assert names[EventType.SERVICE_DISCONNECT] == "ServiceDisconnect"
    assert cli.event_name(Event(0x1234, None)) == "0x00001234"


def test_parse_signal(backend: str) -> None:
    assert [cli.parse_signal(s) for s in ("9", "TERM", "sigterm", "SIGKILL", "ctrlc", "CtrlBreak")] == [
        9, 15, 15, 9, "CtrlC", "CtrlBreak"]
    with pytest.raises(ValueError, match="unknown signal"):
        cli.parse_signal("TERMINATE")


def test_error_description(backend: str) -> None:
    err = errors.make_error(0x8007010B, message="The working directory '/x' is not a directory",
                            call="HcsCreateProcess", system_id="s1")
    info = cli.describe_error(err)
    assert info["Message"] == ("system 's1': HcsCreateProcess failed with HRESULT 0x8007010B (ERROR_DIRECTORY): "
                               "The directory name is invalid")
    assert info["Detail"] == "The working directory '/x' is not a directory"
    unknown = cli.describe_error(errors.make_error(0x80070999), system_id="s2")
    assert unknown["Message"].startswith("system 's2': HRESULT 0x80070999 (Win32 error 2457)")


# ----------------------------------------------------------------------------------- across processes


@pytest.fixture
def service(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A separate emulator service on its own socket, for commands in several processes."""
    from pyhcs import emulator

    if not hasattr(emulator, "service_status"):
        pytest.skip("needs the emulator's shared service (pyhcs.emulator.service_status), not in this build")
    socket = str(tmp_path_factory.mktemp("svc") / "hcs.sock")
    server = subprocess.Popen([sys.executable, "-m", "pyhcs", "emulator", "serve", "--socket", socket],
                              env=_env(backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while _pyhcs(backend, "emulator", "status", "--socket", socket).returncode != 0:
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.1)
        yield socket
        assert _pyhcs(backend, "emulator", "stop", "--socket", socket).returncode == 0
        server.wait(20)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_service_commands_across_processes(backend: str, service: str) -> None:
    owner, sid = f"mp-{uuid.uuid4().hex[:8]}", f"mp-{uuid.uuid4().hex[:8]}"
    out = _pyhcs(backend, "run", "-d", "--id", sid, "--owner", owner, "--", "sleep", "60", HCSEMU_SERVICE=service)
    assert (out.returncode, out.stdout.strip()) == (0, sid), out.stderr
    listed = json.loads(_pyhcs(backend, "list", "--json", "--owner", owner, HCSEMU_SERVICE=service).stdout)
    assert [(s["Id"], s["State"]) for s in listed] == [(sid, "Running")]
    out = _pyhcs(backend, "exec", sid, "--", "sh", "-c", "cat; exit 3", input="hi\n", HCSEMU_SERVICE=service)
    assert (out.returncode, out.stdout) == (3, "hi\n"), out.stderr
    ps = json.loads(_pyhcs(backend, "ps", "--json", sid, HCSEMU_SERVICE=service).stdout)
    assert "sleep" in [p["ImageName"] for p in ps]
    out = _pyhcs(backend, "kill", "--json", sid, HCSEMU_SERVICE=service)
    assert out.returncode == 0 and json.loads(out.stdout)["Changed"] is True
    listed = json.loads(_pyhcs(backend, "list", "--json", "--owner", owner, HCSEMU_SERVICE=service).stdout)
    assert all(s["State"] != "Running" for s in listed)


def test_service_events_follow_another_process(backend: str, service: str) -> None:
    sid = f"mp-{uuid.uuid4().hex[:8]}"
    assert _pyhcs(backend, "run", "-d", "--id", sid, "--", "sleep", "60", HCSEMU_SERVICE=service).returncode == 0
    follower = _popen(backend, "events", "--json", sid, HCSEMU_SERVICE=service)
    try:
        time.sleep(1.0)
        assert follower.poll() is None  # following
        assert _pyhcs(backend, "terminate", sid, HCSEMU_SERVICE=service).returncode == 0
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        assert [e["Event"] for e in _json_lines(out)] == ["SystemExited"]
    finally:
        _reap(follower)


def test_service_sweep_after_the_creator_was_killed(backend: str, service: str) -> None:
    owner = f"mp-{uuid.uuid4().hex[:8]}"
    creator = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pyhcs import ComputeSystem
            cfg = {{"SchemaVersion": {{"Major": 2, "Minor": 1}}, "Owner": {owner!r},
                   "ShouldTerminateOnLastHandleClosed": False, "Container": {{}}}}
            s = ComputeSystem.create({owner!r} + "-a", cfg)
            s.start()
            s.create_process(["sleep", "60"])
            print("ready", flush=True)
            time.sleep(600)
        """)],
        env=_env(backend, HCSEMU_SERVICE=service), stdout=subprocess.PIPE, text=True)
    try:
        assert creator.stdout is not None and creator.stdout.readline() == "ready\n"
        creator.send_signal(signal.SIGKILL)
        creator.wait(10)
        out = _pyhcs(backend, "sweep", "--json", "--grace", "1", "--owner", owner, HCSEMU_SERVICE=service)
        assert out.returncode == 0, out.stderr
        assert [(r["Id"], r["Result"]) for r in json.loads(out.stdout)] == [(owner + "-a", "stopped")]
    finally:
        _reap(creator)


def test_service_status_and_stop(backend: str, service: str) -> None:
    doc = json.loads(_pyhcs(backend, "emulator", "status", "--json", "--socket", service).stdout)
    assert doc["Running"] is True and doc["SocketPath"] == service


@pytest.mark.skipif(not hasattr(signal, "SIGWINCH"), reason="needs a POSIX terminal")
def test_run_tty_raw_mode_keys_and_resizes(backend: str) -> None:
    import fcntl
    import pty
    import select
    import struct
    import termios

    def set_size(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    master, slave = pty.openpty()
    set_size(slave, 24, 80)
    before = termios.tcgetattr(slave)
    # The resize reaches the console asynchronously (signal, then a modify call): the script
    # prints the size for every line it reads until the new one shows. Its INT trap shows that
    # the Ctrl-C key reached it as a signal, and keeps it (so the CLI) running afterwards.
    script = ('trap "echo interrupted" INT; stty size; while read x; do stty size; done; '
              'while :; do sleep 0.1; done')
    proc = subprocess.Popen([sys.executable, "-m", "pyhcs", "run", "-t", "--", "sh", "-c", script],
                            stdin=slave, stdout=slave, stderr=slave, env=_env(backend), start_new_session=True)
    seen = b""

    def read_until(token: bytes, timeout: float = 30) -> bool:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while token not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 4096)
        return token in seen

    try:
        assert read_until(b"24 80"), seen
        assert termios.tcgetattr(slave)[3] & termios.ICANON == 0  # ours is raw while it runs
        set_size(master, 40, 120)
        proc.send_signal(signal.SIGWINCH)  # what the terminal sends its foreground group
        deadline = time.monotonic() + 30
        while not read_until(b"40 120", 0.5) and time.monotonic() < deadline:
            os.write(master, b"go\r")
        assert b"40 120" in seen, seen
        os.write(master, b"\x03")  # Ctrl-C is a key for the console, not a signal for us
        assert read_until(b"interrupted"), seen
        assert b"^C" in seen, seen
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == cli.EXIT_TERMINATED
        assert termios.tcgetattr(slave)[3] == before[3]  # our terminal restored
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        os.close(master)
        os.close(slave)


def test_run_with_a_configuration(backend: str, tmp_path: Path) -> None:
    config = tmp_path / "system.json"
    config.write_text(json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "ignored", "Container": {}}))
    out = _pyhcs(backend, "run", "--config", str(config), "--json", "--owner", "cfg", "--", "sh", "-c", "exit 6")
    assert out.returncode == 6, out.stderr
    out = _pyhcs(backend, "run", "--config", "-", "--", "sh", "-c", "exit 7", input=config.read_text())
    assert out.returncode == 7, out.stderr
    out = _pyhcs(backend, "run", "--config", str(tmp_path / "missing.json"), "--", "true")
    assert out.returncode == cli.EXIT_FAILURE and "missing.json" in out.stderr
    config.write_text("[1, 2]")
    out = _pyhcs(backend, "run", "--config", str(config), "--", "true")
    assert out.returncode == cli.EXIT_FAILURE and "must hold a JSON object" in out.stderr


def test_run_ends_while_our_stdin_stays_open(backend: str) -> None:
    proc = _popen(backend, "run", "--", "sh", "-c", "exit 3")  # never reads; our stdin never ends
    try:
        assert proc.wait(30) == 3
    finally:
        _reap(proc)


def test_run_output_held_by_a_background_child(backend: str) -> None:
    t0 = time.monotonic()
    out = _pyhcs(backend, "run", "--", "sh", "-c", "echo before; (sleep 60 &); exit 2")
    assert out.returncode == 2 and out.stdout == "before\n"
    assert "stopped copying" in out.stderr
    assert time.monotonic() - t0 < cli.DRAIN_GRACE + 20


def test_a_registered_subcommand_runs(backend: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def add_hello(sub: Any) -> None:
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("--fail", action="store_true")

        def handler(ns: argparse.Namespace) -> int:
            if ns.fail:
                raise errors.make_error(errors.HCS_E_INVALID_STATE, call="HcsHello", system_id="s9")
            print("hello")
            return 0

        p.set_defaults(fn=handler)

    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, add_hello])
    assert cli.main(["hello"]) == 0 and capsys.readouterr().out == "hello\n"
    assert cli.main(["hello", "--fail"]) == cli.EXIT_FAILURE
    assert "system 's9': HcsHello failed with HRESULT 0x80370105 (HCS_E_INVALID_STATE)" in capsys.readouterr().err
