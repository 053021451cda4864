"""The emulator's service half in a process of its own (hcsemud, docs/emulator.md "The service
process"): several client processes share one service, clients and the service die in every
way, hostile bytes reach its socket.

Each client here is a separate Python process (the mode is chosen once per process, through
HCSEMU_SERVICE), running a short script on one backend; the test orchestrates them.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pyhcs
from pyhcs import emulator, errors

from conftest import BACKENDS

SRC = str(Path(pyhcs.__file__).resolve().parents[1])  # the pyhcs under test: src/, or site-packages
HEADER = struct.Struct("<IIHHIQ")
MAGIC = 0x46534348
FR_HELLO, FR_WELCOME, FR_REFUSE, FR_REQUEST, FR_RESPONSE = 1, 2, 3, 4, 5
CALL_STATUS = 29
HCS_E_PROTOCOL_ERROR = 0x80370111
HCS_E_UNKNOWN_MESSAGE = 0x8037010B
HCS_E_UNSUPPORTED_PROTOCOL_VERSION = 0x8037010C

# The prelude of every client script: the raw API of one backend and small helpers.
PRELUDE = """
import json, os, subprocess, sys, threading, time
from pyhcs._native import _backend; from pyhcs import errors
B = _backend.load(sys.argv[1])
def cfg(owner, terminate_on_close):
    return json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": owner, "Container": {},
                       "ShouldTerminateOnLastHandleClosed": terminate_on_close})
def wait(op):
    return B.hcs_wait_for_operation_result(op, 20_000)
def create(sid, owner="svc-test", terminate_on_close=False):
    op = B.hcs_create_operation()
    h = B.hcs_create_compute_system(sid, cfg(owner, terminate_on_close), op)
    wait(op)
    B.hcs_start_compute_system(h, op)
    wait(op)
    B.hcs_close_operation(op)
    return h
def spawn(h, cmd, **kw):
    op = B.hcs_create_operation()
    # a Container is a Windows guest: the shell command goes quoted by the Windows rules
    p = B.hcs_create_process(h, json.dumps({"CommandLine": subprocess.list2cmdline(["sh", "-c", cmd]), **kw}), op)
    info, _ = B.hcs_wait_for_operation_result_and_process_info(op, 20_000)
    B.hcs_close_operation(op)
    return p, info
def ids(query=None):
    op = B.hcs_create_operation()
    B.hcs_enumerate_compute_systems(json.dumps(query) if query else None, op)
    out = [s["Id"] for s in json.loads(wait(op) or "[]")]
    B.hcs_close_operation(op)
    return out
def terminate(sid):
    h = B.hcs_open_compute_system(sid)
    op = B.hcs_create_operation()
    B.hcs_terminate_compute_system(h, op)
    try:
        wait(op)
    finally:
        B.hcs_close_operation(op)
        B.hcs_close_compute_system(h)
def say(*words):
    print(*words, flush=True)
"""


def client(backend: str, mode: str, body: str, **popen: Any) -> subprocess.Popen[str]:
    """Starts a client process in ``mode`` (an HCSEMU_SERVICE value) running ``body``."""
    env = {**os.environ, "HCSEMU_SERVICE": mode, "PYTHONPATH": SRC, "PYHCS_BACKEND": backend}
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, backend],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_client(backend: str, mode: str, body: str, timeout: float = 60) -> str:
    """Runs a client to its end; returns its output (fails the test on a non-zero exit)."""
    p = client(backend, mode, body)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"client failed ({p.returncode}):\n{out}\n{err}"
    return out


_lines: dict[int, queue.Queue[str | None]] = {}


def read_line(p: subprocess.Popen[str], timeout: float = 30) -> str:
    """The client's next output line (bounded: a silent client fails the test)."""
    if p.pid not in _lines:
        q: queue.Queue[str | None] = queue.Queue()
        _lines[p.pid] = q

        def pump() -> None:
            assert p.stdout is not None
            for line in p.stdout:
                q.put(line.strip())
            q.put(None)

        threading.Thread(target=pump, daemon=True).start()
    try:
        line = _lines[p.pid].get(timeout=timeout)
    except queue.Empty:
        line = None
    if line is None:
        p.kill()
        assert p.stderr is not None
        raise AssertionError(f"client gave no line: {p.stderr.read()}")
    return line


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A shared service of this test's own (its socket path)."""
    folder = tmp_path_factory.mktemp("svc")
    folder.chmod(0o700)
    path = str(folder / "hcsemu.sock")
    assert emulator.serve(path, foreground=False) == 0
    try:
        yield path
    finally:
        emulator.stop_service(path, timeout=20)


backends = pytest.mark.parametrize("backend", BACKENDS)


# ------------------------------------------------------------------------------------ sharing


@backends
def test_create_in_one_process_open_list_watch_kill_from_another(backend: str, service: str) -> None:
    sid = f"mp-{secrets.token_hex(4)}"
    out = run_client(
        backend,
        service,
        f"""
        h = create({sid!r}, owner="creator")
        p, info = spawn(h, "sleep 60")
        say(info.process_id)
    """,
    )
    pid = int(out.split()[0])
    assert alive(pid)  # the system outlived its creator (ShouldTerminateOnLastHandleClosed false)
    watcher = client(
        backend,
        service,
        f"""
        assert {sid!r} in ids({{"Owners": ["creator"]}}) and {sid!r} not in ids({{"Owners": ["other"]}})
        h = B.hcs_open_compute_system({sid!r})
        seen = []
        done = threading.Event()
        def on_event(ev, ctx):
            seen.append(ev.type)
            if ev.type == 1:  # SystemExited
                done.set()
        B.hcs_set_compute_system_callback(h, 0, 0, on_event)
        p = B.hcs_open_process(h, {pid})
        op = B.hcs_create_operation()
        B.hcs_get_process_properties(p, op, None)
        say("ready", json.loads(wait(op))["ProcessId"])
        say("exited" if done.wait(20) else "timeout")
        B.hcs_close_process(p)
        B.hcs_close_compute_system(h)
    """,
    )
    assert read_line(watcher) == f"ready {pid}"
    run_client(backend, service, f"terminate({sid!r})")
    assert read_line(watcher) == "exited"
    assert watcher.wait(20) == 0
    assert gone_within(pid, 10)
    assert sid not in run_client(backend, service, "say(ids())")


@backends
def test_creator_killed_with_sigkill(backend: str, service: str) -> None:
    """Its handles close with it: a system that terminates on last close ends, the other
    persists until a second process sweeps it by Owner."""
    owner = f"killed-{secrets.token_hex(4)}"
    creator = client(
        backend,
        service,
        f"""
        ends = create("{owner}-ends", owner={owner!r}, terminate_on_close=True)
        stays = create("{owner}-stays", owner={owner!r}, terminate_on_close=False)
        p1, i1 = spawn(ends, "sleep 60")
        p2, i2 = spawn(stays, "sleep 60")
        say(i1.process_id, i2.process_id)
        time.sleep(600)
    """,
    )
    ends_pid, stays_pid = map(int, read_line(creator).split())
    creator.kill()
    creator.wait(10)
    assert gone_within(ends_pid, 10)
    assert alive(stays_pid)
    out = run_client(
        backend,
        service,
        f"""
        deadline = time.monotonic() + 10
        while "{owner}-ends" in ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = ids({{"Owners": [{owner!r}]}})
        say(json.dumps(left))
        for sid in left:
            terminate(sid)
        say(json.dumps(ids({{"Owners": [{owner!r}]}})))
    """,
    )
    left, after = out.splitlines()
    assert json.loads(left) == [f"{owner}-stays"] and json.loads(after) == []
    assert gone_within(stays_pid, 10)


@backends
def test_events_reach_every_client_and_last_close_counts_all_clients(backend: str, service: str) -> None:
    sid = f"two-{secrets.token_hex(4)}"
    first = client(
        backend,
        service,
        f"""
        h = create({sid!r}, terminate_on_close=True)
        p, info = spawn(h, "sleep 60")
        say(info.process_id)
        sys.stdin.readline()
        B.hcs_close_compute_system(h)
        say("closed")
        sys.stdin.readline()
    """,
    )
    pid = int(read_line(first))
    second = client(
        backend,
        service,
        f"""
        h = B.hcs_open_compute_system({sid!r})
        say("opened")
        sys.stdin.readline()
        B.hcs_close_compute_system(h)
        say("closed")
    """,
    )
    assert read_line(second) == "opened"
    assert first.stdin is not None and second.stdin is not None
    first.stdin.write("\n")
    first.stdin.flush()
    assert read_line(first) == "closed"
    time.sleep(0.3)
    assert alive(pid)  # the second client still holds a handle
    second.stdin.write("\n")
    second.stdin.flush()
    assert read_line(second) == "closed"
    assert gone_within(pid, 10)
    first.stdin.write("\n")
    first.stdin.flush()
    assert first.wait(10) == 0 and second.wait(10) == 0


# ------------------------------------------------------------------------------------ the service dies


@backends
def test_service_killed_mid_wait(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("svc")
    folder.chmod(0o700)
    path = str(folder / "hcsemu.sock")
    assert emulator.serve(path, foreground=False) == 0
    try:
        status = emulator.service_status(path)
        assert status is not None
        c = client(
            backend,
            path,
            """
            h = create("doomed")
            p, info = spawn(h, "sleep 60")
            events = []
            got = threading.Event()
            def on_event(ev, ctx):
                events.append(ev.type)
                got.set()
            B.hcs_set_process_callback(p, 0, 0, on_event)
            say("ready", info.process_id)
            start = time.monotonic()
            try:
                B.hcs_wait_for_process_exit(p, 0xFFFFFFFF)
                say("no error")
            except errors.HcsError as exc:
                say("wait", hex(exc.hresult & 0xFFFFFFFF), round(time.monotonic() - start, 1))
            say("event", got.wait(10) and 0x02000000 in events)  # ServiceDisconnect
            op = B.hcs_create_operation()
            try:
                B.hcs_get_compute_system_properties(h, op, None)
                wait(op)
                say("old handle works")
            except errors.HcsError as exc:
                say("old", hex(exc.hresult & 0xFFFFFFFF))
            sys.stdin.readline()  # a new service runs
            say("new", json.dumps(ids()))
            B.hcs_close_process(p)
            B.hcs_close_compute_system(h)
        """,
        )
        words = read_line(c).split()
        assert words[0] == "ready"
        pid = int(words[1])
        os.kill(status["Pid"], signal.SIGKILL)
        wait_line = read_line(c).split()
        assert wait_line[:2] == ["wait", "0x8037011e"] and float(wait_line[2]) < 5  # promptly
        assert read_line(c) == "event True"
        assert read_line(c) == "old 0x8037011e"
        assert gone_within(pid, 10)  # the service's processes end with it
        deadline = time.monotonic() + 10
        while emulator.service_status(path) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emulator.serve(path, foreground=False) == 0
        assert c.stdin is not None
        assert c.poll() is None
        c.stdin.write("\n")
        c.stdin.flush()
        assert read_line(c) == "new []"
        assert c.wait(20) == 0
    finally:
        emulator.stop_service(path, timeout=20)


@backends
def test_service_killed_undoes_the_overlay_mounts_of_its_clients(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer attached through a service (an overlay mount) is detached by the service's guardian
    when the service dies: no mount is left behind for nobody to undo."""
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("HCSEMU_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("HCSEMU_STORAGE_MODE", "overlay")
    (tmp_path / "src" / "Files").mkdir(parents=True)
    (tmp_path / "src" / "Files" / "hello.txt").write_text("hello")
    c = client(
        backend,
        "private",
        f"""
        from pyhcs import storage
        base = storage.Layer.import_from({str(tmp_path / "src")!r}, {str(tmp_path / "base")!r})
        scratch = storage.WritableLayer.initialize({str(tmp_path / "scratch")!r}, parents=base)
        try:
            view = scratch.attach()
        except errors.HcsError as exc:
            say("no-overlay", exc)
            raise SystemExit(0)
        say("attached", view)
        sys.stdin.readline()
        """,
    )
    try:
        words = read_line(c).split(maxsplit=1)
        if words[0] == "no-overlay":
            pytest.skip(f"overlayfs cannot be mounted here: {words[1]}")
        assert words[0] == "attached"
        view = words[1]
        assert os.path.ismount(view) and (Path(view) / "hello.txt").read_text() == "hello"
        entries = list((runtime / "storage" / "attached").glob("*.json"))
        assert len(entries) == 1
        owner = json.loads(entries[0].read_text())["Service"]  # "<service pid>:<start time>"
        service_pid = int(owner.split(":")[0])
        assert service_pid != c.pid and open(f"/proc/{service_pid}/comm").read().startswith("hcsemud")
        os.kill(service_pid, signal.SIGKILL)

        def detached() -> bool:  # as HcsDetachLayerStorageFilter leaves it: no mount, no records
            meta = json.loads((tmp_path / "scratch" / ".hcsemu" / "layer.json").read_text())
            registered = list((runtime / "storage" / "attached").glob("*.json"))
            return not os.path.ismount(view) and not registered and "Attached" not in meta

        deadline = time.monotonic() + 10
        while not detached() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert detached()
    finally:
        c.kill()
        c.wait(10)


@backends
def test_private_service_ends_with_its_client_and_takes_its_processes(backend: str) -> None:
    c = client(
        backend,
        "private",
        """
        h = create("private-one")
        p, info = spawn(h, "sleep 60")
        say(info.process_id)
        time.sleep(600)
    """,
    )
    pid = int(read_line(c))
    service_pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    assert open(f"/proc/{service_pid}/comm").read().startswith("hcsemud")  # or an ASan build
    c.kill()
    c.wait(10)
    assert gone_within(pid, 10) and gone_within(service_pid, 10)


# ------------------------------------------------------------------------------------ consoles


@backends
def test_ctrl_c_on_a_console_is_sigint_and_terminate_still_ends_its_session(backend: str) -> None:
    """An EmulateConsole process leads a session whose controlling terminal is its console: a
    Ctrl-C (0x03) written there is its SIGINT (it dies of it, or handles it), as on a console;
    pause, resume and terminate still reach everything it started."""
    out = run_client(
        backend,
        "private",
        """
        import signal
        from pyhcs import ComputeSystem, emulator
        # the pause below reads host /proc for the pid the shell prints ($!), which a PID
        # namespace renumbers; a console in an isolated system: tests/emulator/test_isolation.py
        emulator.configure(Isolation="Off")
        config = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "svc-test", "Container": {}}
        def state(pid):
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        def paused(pid):
            # stopped by SIGSTOP ("T"), or frozen by the system's cgroup freezer (the emulator's
            # pause where it has one: docs/emulator.md)
            if state(pid) == "T":
                return "T"
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f.read().splitlines():
                    _, controllers, path = line.split(":", 2)
                    if controllers == "freezer":
                        with open(f"/sys/fs/cgroup/freezer{path}/freezer.state") as g:
                            return "T" if g.read().strip() == "FROZEN" else state(pid)
                    if controllers == "" and os.path.exists(f"/sys/fs/cgroup{path}/cgroup.events"):
                        with open(f"/sys/fs/cgroup{path}/cgroup.events") as g:
                            if "frozen 1" in g.read().splitlines():
                                return "T"
            return state(pid)
        with ComputeSystem.create(f"console-{os.getpid()}", config) as system:
            system.start(timeout=30)
            # dies of the SIGINT (128 + 2, as a shell reports it); typed again while the shell
            # may still be between its echo and its fork (a Ctrl-C then is the shell's own race)
            with system.create_process(["sh", "-c", "echo ready; sleep 30"], console=True, stdin=True,
                                       stdout=True) as p:
                assert p.stdout.readline().strip() == b"ready"
                code = None
                for _ in range(20):
                    p.stdin.write(b"\x03")
                    p.stdin.flush()
                    try:
                        code = p.wait(0.5)
                        break
                    except TimeoutError:
                        pass
                say("interrupted", code)
            # handles it
            with system.create_process(["sh", "-c", "trap 'echo got-int; exit 7' INT; echo ready; "
                                        "while :; do sleep 0.05; done"], console=True, stdin=True, stdout=True) as p:
                assert p.stdout.readline().strip() == b"ready"
                p.stdin.write(b"\x03")
                p.stdin.flush()
                say("handled", p.stdout.readline().strip().decode(), p.wait(10))
            # pause, resume and terminate reach the console's session and what it started
            p = system.create_process(["sh", "-c", "sleep 60 & echo $!; wait"], console=True, stdout=True)
            child = int(p.stdout.readline())
            other = system.create_process(["sleep", "60"])
            system.pause(timeout=30)
            say("paused", paused(p.pid), paused(child), paused(other.pid))
            system.resume(timeout=30)
            say("resumed", paused(p.pid) != "T", paused(child) != "T")
            system.terminate(timeout=30)
            say("pids", p.pid, child, other.pid)
            p.close()
            other.close()
        """,
    )
    lines = out.splitlines()
    assert lines[0] == "interrupted 130"
    assert lines[1] == "handled ^Cgot-int 7"  # the terminal echoes the ^C, as a console does
    assert lines[2] == "paused T T T"
    assert lines[3] == "resumed True True"
    pids = [int(x) for x in lines[4].split()[1:]]
    assert all(gone_within(pid, 10) for pid in pids)


# ------------------------------------------------------------------------------------ hostile hosts


@backends
def test_client_forked_while_busy(backend: str) -> None:
    out = run_client(
        backend,
        "private",
        """
        h = create("forker")
        stop = threading.Event()
        def busy():
            op = B.hcs_create_operation()
            while not stop.is_set():
                B.hcs_get_compute_system_properties(h, op, None)
                wait(op)
            B.hcs_close_operation(op)
        t = threading.Thread(target=busy)
        t.start()
        results = []
        for i in range(5):
            child = os.fork()
            if child == 0:
                # the child has a private service of its own
                try:
                    ch = create(f"child-{i}")
                    p, info = spawn(ch, "echo child", CreateStdOutPipe=True)
                    os._exit(0 if os.read(info.std_output, 100) == b"child\\n" else 3)
                except BaseException:
                    os._exit(4)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                pid, status = os.waitpid(child, os.WNOHANG)
                if pid:
                    results.append(os.waitstatus_to_exitcode(status))
                    break
                time.sleep(0.01)
            else:
                os.kill(child, 9)
                results.append("hung")
        stop.set()
        t.join()
        say(json.dumps(results))
        say(json.dumps(ids()))
    """,
    )
    results, systems = out.splitlines()
    assert json.loads(results) == [0] * 5
    assert json.loads(systems) == ["forker"]  # the children's systems were their own


@backends
@pytest.mark.parametrize("host", ["ignores-sigchld", "reaps-every-child"])
def test_host_that_ignores_sigchld_or_reaps_every_child(backend: str, host: str) -> None:
    """Systems keep working and terminate never signals an unrelated process group."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        setup = (
            "import signal; signal.signal(signal.SIGCHLD, signal.SIG_IGN)"
            if host == "ignores-sigchld"
            else textwrap.dedent("""
                def reaper():
                    while True:
                        try:
                            os.waitpid(-1, 0)
                        except ChildProcessError:
                            time.sleep(0.01)
                threading.Thread(target=reaper, daemon=True).start()
            """)
        )
        out = run_client(
            backend,
            "private",
            setup
            + textwrap.dedent("""
            codes = []
            for i in range(10):
                h = create(f"host-{i}")
                p, info = spawn(h, "exit 7")
                codes.append(json.loads(B.hcs_wait_for_process_exit(p, 20_000))["ExitCode"])
                B.hcs_close_process(p)
                p, info = spawn(h, "sleep 60")
                op = B.hcs_create_operation()
                B.hcs_terminate_compute_system(h, op)
                wait(op)
                B.hcs_close_operation(op)
                B.hcs_close_process(p)
                B.hcs_close_compute_system(h)
            say(json.dumps(codes))
            say(json.dumps(ids()))
        """),
        )
        codes, systems = out.splitlines()
        assert json.loads(codes) == [7] * 10 and json.loads(systems) == []
        assert bystander.poll() is None  # never hit by a terminate
    finally:
        bystander.kill()
        bystander.wait()


@backends
@pytest.mark.parametrize("mode", ["private", "direct"])
def test_terminate_ends_a_process_that_called_setsid(backend: str, mode: str) -> None:
    out = run_client(
        backend,
        mode,
        """
        from pyhcs import emulator
        # the fallback's terminate is tested here: the process group and marker, with host pids
        # ($$); an isolated system's (a PID namespace's) is in tests/emulator/test_isolation.py
        emulator.configure(Isolation="Off")
        h = create("setsid")
        p, info = spawn(h, "setsid sh -c 'echo $$; exec sleep 300' & wait", CreateStdOutPipe=True)
        line = b""
        while not line.endswith(b"\\n"):
            line += os.read(info.std_output, 1)
        escaped = int(line)
        sid = int(open(f"/proc/{escaped}/stat").read().rsplit(")", 1)[1].split()[3])
        op = B.hcs_create_operation()
        B.hcs_terminate_compute_system(h, op)
        wait(op)
        deadline = time.monotonic() + 10
        def running(pid):
            try:
                return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False
        while running(escaped) and time.monotonic() < deadline:
            time.sleep(0.02)
        say(escaped == sid, running(escaped))
    """,
    )
    assert out.split() == ["True", "False"]  # it had its own session, and terminate ended it


# ------------------------------------------------------------------------------------ modes


@backends
def test_a_socket_path_never_starts_a_service(backend: str, tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    out = run_client(
        backend,
        path,
        """
        try:
            ids()
            say("connected")
        except errors.HcsError as exc:
            say(type(exc).__name__)
    """,
    )
    assert out.strip() == "ServiceNotAvailableError"
    assert not os.path.exists(path)


@backends
def test_an_unknown_mode_is_refused_not_replaced(backend: str) -> None:
    p = client(
        backend,
        "bogus",
        """
        try:
            ids()
            say("worked")
        except errors.HcsError as exc:
            say(type(exc).__name__)
    """,
    )
    out, err = p.communicate(timeout=60)
    assert out.strip() == "ServiceNotAvailableError" and "HCSEMU_SERVICE" in err


def status_once_alone(timeout: float = 10) -> dict[str, Any]:
    """The shared service's status once the status query is its only client: a client that
    exited is counted until the service has read its hang-up."""
    deadline = time.monotonic() + timeout
    while True:
        status = emulator.service_status()
        assert status is not None
        if status["Clients"] == 1 or time.monotonic() > deadline:
            assert status["Clients"] == 1, status
            return status
        time.sleep(0.05)


@backends
def test_shared_mode_starts_the_user_service_once(backend: str) -> None:
    # not under tmp_path: a socket path is limited to 107 bytes, and pytest's per-test folders
    # (per worker, under a TMPDIR of CI's own) can be most of that
    runtime = Path(tempfile.mkdtemp(prefix="run-", dir="/tmp"))
    runtime.chmod(0o700)
    env_path = str(runtime / "hcsemu" / "hcsemu.sock")
    os.environ["XDG_RUNTIME_DIR"], saved = str(runtime), os.environ.get("XDG_RUNTIME_DIR")
    try:
        assert emulator.default_socket_path() == env_path
        first = run_client(backend, "shared", """h = create("shared-one"); say(ids())""")
        status = status_once_alone()
        assert status["Socket"] == env_path
        assert "shared-one" in first
        run_client(backend, "shared", """assert ids() == ["shared-one"]; terminate("shared-one")""")
        assert status_once_alone() == {**status, "Systems": 0, "Processes": 0}
        assert oct(os.stat(runtime / "hcsemu").st_mode & 0o777) == "0o700"
        assert oct(os.stat(env_path).st_mode & 0o777) == "0o600"
    finally:
        assert emulator.stop_service(timeout=20)
        if saved is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
    try:
        assert emulator.service_status(env_path) is None
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_serve_refuses_a_second_service_and_an_open_folder(service: str, tmp_path: Path) -> None:
    assert emulator.serve(service, foreground=True) == 3  # one service per socket
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    assert emulator.serve(str(open_dir / "s.sock"), foreground=True) == 2
    assert emulator.stop_service(str(open_dir / "s.sock")) is False


# ------------------------------------------------------------------------------------ the socket


def frame(ftype: int, call: int, ident: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), ftype, 0, call, ident) + payload


def recv_frame(sock: socket.socket) -> tuple[int, dict[str, object], str | None]:
    head = b""
    while len(head) < HEADER.size:
        chunk = sock.recv(HEADER.size - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    magic, length, ftype, _, _, _ = HEADER.unpack(head)
    assert magic == MAGIC
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk
        body += chunk
    meta, _, doc = body.partition(b"\0")
    return ftype, json.loads(meta), doc.decode() or None


def connect(path: str, hello: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    if hello:
        s.sendall(frame(FR_HELLO, 0, 0, json.dumps({"Protocol": 1}).encode()))
        assert recv_frame(s)[0] == FR_WELCOME
    return s


def hr_of(meta: dict[str, object]) -> int:
    value = meta["HResult"]
    assert isinstance(value, int)
    return value & 0xFFFFFFFF


def test_malformed_frames_and_random_bytes_get_errors_and_the_service_survives(service: str) -> None:
    # random bytes instead of a HELLO
    with connect(service, hello=False) as s:
        s.sendall(secrets.token_bytes(200))
        ftype, meta, _ = recv_frame(s)
        assert ftype == FR_REFUSE and hr_of(meta) == HCS_E_PROTOCOL_ERROR
    # another protocol version
    with connect(service, hello=False) as s:
        s.sendall(frame(FR_HELLO, 0, 0, json.dumps({"Protocol": 999}).encode()))
        ftype, meta, _ = recv_frame(s)
        assert ftype == FR_REFUSE and hr_of(meta) == HCS_E_UNSUPPORTED_PROTOCOL_VERSION
        assert "999" in str(meta["Error"])
    with connect(service) as s:
        s.sendall(frame(FR_REQUEST, CALL_STATUS, 1, b"not json"))
        ftype, meta, _ = recv_frame(s)
        assert ftype == FR_RESPONSE and hr_of(meta) == HCS_E_PROTOCOL_ERROR
        s.sendall(frame(FR_REQUEST, 9999, 2, b"{}"))
        assert hr_of(recv_frame(s)[1]) == HCS_E_UNKNOWN_MESSAGE
        s.sendall(frame(FR_REQUEST, 6, 3, b'{"Serial": 123456}'))  # start: a system it never held
        assert hr_of(recv_frame(s)[1]) == 0x8037010E
        s.sendall(frame(FR_REQUEST, 1, 4, b'{"Id": "x"}\0{"SchemaVersion": '))  # truncated document
        assert hr_of(recv_frame(s)[1]) == 0x8037010D
        s.sendall(frame(FR_REQUEST, CALL_STATUS, 5, b"{}"))  # still served
        assert hr_of(recv_frame(s)[1]) == 0
        s.sendall(b"XXXX" + secrets.token_bytes(60))  # bad magic: an error, then the end
        ftype, meta, _ = recv_frame(s)
        assert hr_of(meta) == HCS_E_PROTOCOL_ERROR
        try:
            assert s.recv(10) == b""  # closed
        except ConnectionResetError:
            pass  # closed with our junk unread
    for junk in (frame(FR_REQUEST, CALL_STATUS, 1, b"{}")[:30], HEADER.pack(MAGIC, 1 << 31, FR_REQUEST, 0, 1, 1)):
        with connect(service) as s:  # a truncated frame, an oversized one
            s.sendall(junk)
    for _ in range(20):
        with connect(service, hello=False) as s:
            s.sendall(secrets.token_bytes(secrets.randbelow(100)))
    status = emulator.service_status(service)
    assert status is not None and status["Systems"] == 0


def test_a_different_uid_is_refused() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as another user (the folder keeps others out anyway)")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv is not installed")
    nobody = pwd.getpwnam("nobody")
    # an interpreter the other user can run (this one may live in a private folder)
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
    if python is None:
        pytest.skip("no system python3 for the other user")
    # Open the folder and socket (the service made them 0700/0600) so that only the peer
    # credential check stands between another user and the service.
    folder = tempfile.mkdtemp(prefix="hcsemu-uid-", dir="/tmp")  # a path the other user can walk
    service = os.path.join(folder, "hcsemu.sock")
    assert emulator.serve(service, foreground=False) == 0
    try:
        os.chmod(folder, 0o755)
        os.chmod(service, 0o666)
        refusal = _as_nobody(setpriv, python, nobody, service)
    finally:
        emulator.stop_service(service, timeout=20)
        shutil.rmtree(folder, ignore_errors=True)
    assert refusal["HResult"] & 0xFFFFFFFF == 0x80070005
    assert f"uid {nobody.pw_uid} may not use" in refusal["Error"]


def _as_nobody(setpriv: str, python: str, nobody: pwd.struct_passwd, service: str) -> dict[str, Any]:
    """Says HELLO to the service as another user; returns the REFUSE frame's fields."""
    script = textwrap.dedent(f"""
        import json, socket, struct
        H = struct.Struct("<IIHHIQ")
        s = socket.socket(socket.AF_UNIX)
        s.connect({service!r})
        body = json.dumps({{"Protocol": 1}}).encode()
        s.sendall(H.pack({MAGIC}, len(body), 1, 0, 0, 0) + body)
        head = s.recv(H.size, socket.MSG_WAITALL)
        _, n, ftype, _, _, _ = H.unpack(head)
        print(ftype, s.recv(n, socket.MSG_WAITALL).decode())
    """)
    out = subprocess.run(
        [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", python, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    ftype, meta = out.split(" ", 1)
    assert int(ftype) == FR_REFUSE
    refusal: dict[str, Any] = json.loads(meta)
    return refusal


def test_service_status_of_another_protocol_raises(tmp_path: Path) -> None:
    """A peer that answers with another protocol version is refused, never misparsed."""
    path = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def fake() -> None:
        conn, _ = srv.accept()
        with conn:
            recv_frame(conn)
            conn.sendall(frame(FR_WELCOME, 0, 0, json.dumps({"Protocol": 2}).encode()))

    t = threading.Thread(target=fake)
    t.start()
    with pytest.raises(errors.HcsError) as exc:
        emulator.service_status(path)
    t.join(10)
    srv.close()
    assert exc.value.hresult & 0xFFFFFFFF == HCS_E_UNSUPPORTED_PROTOCOL_VERSION


# ------------------------------------------------------------------------------------ stdio


@backends
@pytest.mark.parametrize("mode", ["private", "direct"])
def test_a_reader_closing_stdout_gives_the_writer_sigpipe(backend: str, mode: str) -> None:
    out = run_client(
        backend,
        mode,
        """
        h = create("pipes")
        p, info = spawn(h, "yes", CreateStdOutPipe=True)
        assert os.read(info.std_output, 10).startswith(b"y")
        os.close(info.std_output)
        say(json.loads(B.hcs_wait_for_process_exit(p, 20_000))["ExitCode"])
    """,
    )
    assert out.strip() == str(128 + signal.SIGPIPE)
