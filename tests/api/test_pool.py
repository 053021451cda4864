"""pyhcs.ComputeSystemPool: concurrent.futures conventions, per-task timeouts, system reuse, and
nothing left behind (the plugin's leak check runs after every test) under faults, Ctrl-C and
SIGTERM. Both backends (the ``pyhcs_backends`` marker)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pyhcs
from pyhcs import errors
from pyhcs.pool import ComputeSystemPool, TaskAborted
from pyhcs.testing import Emulator, Faults

from pyutil import python_mappings, settled_system_count, system_count_at_most

#: Systems the service already held when the test began (a private service is shared by the
#: whole session, so another test's system still closing may be counted): the pool must
#: leave nothing of its own.
_BEFORE = {"systems": 0}


@pytest.fixture(autouse=True)
def _systems_before() -> None:
    _BEFORE["systems"] = settled_system_count()


def assert_no_system_left() -> None:
    """The service holds no more systems than before the test (those the pool closed are
    ended by the service a moment later: polled)."""
    assert system_count_at_most(_BEFORE["systems"]) <= _BEFORE["systems"]


pytestmark = pytest.mark.pyhcs_backends

CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pool-test", "Container": {}}


def creates(faults: Faults) -> int:
    return faults.call_counts().get("HcsCreateComputeSystem", 0)


def test_exported_from_pyhcs() -> None:
    assert pyhcs.ComputeSystemPool is ComputeSystemPool
    assert "ComputeSystemPool" in pyhcs.__all__


def test_map_returns_completed_processes_in_order(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=3, timeout=30) as pool:
        results = list(pool.map([["sh", "-c", f"echo {n}; exit {n % 3}"] for n in range(6)]))
    assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(6)]
    assert [r.returncode for r in results] == [n % 3 for n in range(6)]
    assert all(isinstance(r, pyhcs.CompletedProcess) for r in results)
    assert creates(faults) == 6  # tasks_per_system=1: a fresh system per task
    assert_no_system_left()


def test_tasks_per_system_reuses_a_running_system(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=1, tasks_per_system=3, timeout=30) as pool:
        futures = [pool.submit(["true"]) for _ in range(7)]
        assert all(f.result(30).returncode == 0 for f in futures)
    assert creates(faults) == 3  # 3 + 3 + 1


def test_the_tasks_left_at_shutdown_still_reuse_systems(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=1, tasks_per_system=3, timeout=30) as pool:
        futures = [pool.submit(["echo", str(n)]) for n in range(5)]
    # the block's end (shutdown(wait=True)) ran them all, and tore every system down
    assert [f.result(0).stdout for f in futures] == [f"{n}\n".encode() for n in range(5)]
    assert creates(faults) == 2  # 3 + 2
    assert_no_system_left()


def test_max_workers_bounds_the_systems_alive_at_once(faults: Faults) -> None:
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        emulator = Emulator()
        while not stop.is_set():
            peak = max(peak, int(emulator.statistics()["Systems"]))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ComputeSystemPool(CONFIG, max_workers=2, timeout=30) as pool:
            list(pool.map([["sleep", "0.2"]] * 6))
    finally:
        stop.set()
        watcher.join()
    assert peak == 2 + _BEFORE["systems"]


def test_submit_options_and_check(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=2, tasks_per_system=2, timeout=30) as pool:
        echoed = pool.submit(["cat"], input=b"data")
        env = pool.submit(["sh", "-c", "echo $POOL_VAR"], env={"POOL_VAR": "x1"})
        failing = pool.submit(["sh", "-c", "echo no >&2; exit 4"], check=True)
        assert echoed.result(30).stdout == b"data"
        assert env.result(30).stdout == b"x1\n"
        exc = failing.exception(30)
    assert isinstance(exc, subprocess.CalledProcessError)
    assert exc.returncode == 4 and exc.stderr == b"no\n"


def test_as_completed_and_wait(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=3, timeout=30) as pool:
        slow = pool.submit(["sleep", "0.5"])
        fast = pool.submit(["true"])
        order = list(pool.as_completed(timeout=30))
        assert set(order) == {slow, fast}
        assert order[-1] is slow
        done, _ = concurrent.futures.wait([slow, fast], timeout=0)
        assert done == {slow, fast}


def test_a_task_over_its_timeout_fails_alone(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=2, tasks_per_system=5, timeout=30) as pool:
        start = time.monotonic()
        hung = pool.submit(["sleep", "60"], timeout=0.5)
        fine = pool.submit(["echo", "ok"])
        exc = hung.exception(30)
        assert time.monotonic() - start < 10
        assert isinstance(exc, errors.OperationTimeoutError)
        assert fine.result(30).stdout == b"ok\n"
        # the timed-out task's system was torn down, not reused
        again = pool.submit(["echo", "again"]).result(30)
        assert again.stdout == b"again\n"


def test_validation_and_shutdown_rules(faults: Faults) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        ComputeSystemPool(CONFIG, max_workers=0)
    with pytest.raises(ValueError, match="tasks_per_system"):
        ComputeSystemPool(CONFIG, tasks_per_system=0)
    with pytest.raises(ValueError, match="timeout"):
        ComputeSystemPool(CONFIG, timeout=-1)
    pool = ComputeSystemPool(CONFIG, max_workers=1, timeout=30)
    running = pool.submit(["sleep", "0.3"])
    queued = [pool.submit(["true"]) for _ in range(3)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(0).returncode == 0
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(["true"])


@pytest.mark.parametrize(
    "fault",
    ["create-hangs", "start-delayed", "start-fails", "process-fails", "terminate-hangs", "create-delayed-past-timeout"],
)
def test_nothing_is_left_behind_under_faults(faults: Faults, fault: str) -> None:
    expect: type[BaseException] | None = None
    if fault == "create-hangs":
        faults.hang("HcsCreateComputeSystem", count=1)
        expect = errors.OperationTimeoutError
    elif fault == "start-delayed":
        faults.delay("HcsStartComputeSystem", 0.2)
    elif fault == "start-fails":
        faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError, count=1)
        expect = errors.ConnectionTimeoutError
    elif fault == "process-fails":
        faults.fail("HcsCreateProcess", errors.AccessDeniedError, count=1)
        expect = errors.AccessDeniedError
    elif fault == "terminate-hangs":
        faults.hang("HcsTerminateComputeSystem")
    else:
        faults.delay("HcsCreateComputeSystem", 2.0, count=1)
        expect = errors.OperationTimeoutError
    start = time.monotonic()
    with ComputeSystemPool(CONFIG, max_workers=1, timeout=1.0, teardown_timeout=0.5) as pool:
        first = pool.submit(["echo", "1"])
        second = pool.submit(["echo", "2"])
        if expect is None:
            assert first.result(30).stdout == b"1\n"
        else:
            assert isinstance(first.exception(30), expect)
        assert second.result(30).stdout == b"2\n"  # the pool goes on after a failed task
    assert time.monotonic() - start < 15
    faults.reset()  # the leak check then sees only what the pool left


def test_ctrl_c_in_the_submitting_thread_tears_everything_down(faults: Faults) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    futures: list[concurrent.futures.Future[pyhcs.CompletedProcess]] = []
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt), ComputeSystemPool(CONFIG, max_workers=2, timeout=None) as pool:
            futures = [pool.submit(["sleep", "60"]) for _ in range(5)]
            for f in futures:
                f.result()
    finally:
        timer.cancel()
    assert time.monotonic() - start < 20
    assert all(f.done() for f in futures)
    outcomes = [type(f.exception()) if not f.cancelled() else "cancelled" for f in futures]
    assert outcomes.count(TaskAborted) == 2 and outcomes.count("cancelled") == 3
    assert_no_system_left()


def test_a_generator_abandoned_midway_cancels_the_rest(faults: Faults) -> None:
    with ComputeSystemPool(CONFIG, max_workers=1, timeout=30) as pool:
        results = pool.map([["echo", str(n)] for n in range(5)])
        assert next(results).stdout == b"0\n"
        results.close()
    assert creates(faults) < 5


_SIGTERM_SCRIPT = """
import sys, time
from pyhcs import ComputeSystemPool
config = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {"MappedDirectories": #MAPS#}}
with ComputeSystemPool(config, max_workers=2) as pool:
    command = [sys.executable, "-c", "import time; time.sleep(3600)", "#MARK#"]
    futures = [pool.submit(command) for _ in range(4)]
    while sum(f.running() for f in futures) < 2:
        time.sleep(0.05)
    time.sleep(0.5)
    print("running", flush=True)
    for f in futures:
        f.result()
"""


def _processes_with(marker: str) -> list[int]:
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_leaves_no_process_behind(pyhcs_backend: str, tmp_path: Path) -> None:
    marker = f"pool-sigterm-{os.getpid()}-{pyhcs_backend}"
    script = tmp_path / "pool_sigterm.py"
    # the commands are this interpreter: mapped into the containers (pyutil.python_mappings)
    script.write_text(_SIGTERM_SCRIPT.replace("#MARK#", marker).replace("#MAPS#", repr(python_mappings())),
                      encoding="utf-8")
    src = str(Path(pyhcs.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCSEMU_")}
    env.update(PYTHONPATH=src, PYHCS_BACKEND=pyhcs_backend)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"running\n"
        started = time.monotonic() + 20  # the two commands are Python interpreters: let them start
        while len(_processes_with(marker)) < 2 and time.monotonic() < started:
            time.sleep(0.05)
        assert len(_processes_with(marker)) == 2
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert code == -signal.SIGTERM, stderr  # it died of the signal, after the pool's abort
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker) == []


DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "pool.md"


@pytest.mark.parametrize("index", [0, 1])
def test_the_doc_examples_run(pyhcs_backend: str, tmp_path: Path, index: int) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 2
    script = tmp_path / "example.py"
    script.write_text(blocks[index], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCSEMU_")}
    env.update(PYTHONPATH=str(Path(pyhcs.__file__).resolve().parent.parent), PYHCS_BACKEND=pyhcs_backend)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if index == 0:
        assert lines[:20] == [f"0 b'{n}\\n'" for n in range(20)] and lines[20] == "b'1\\n'"
    else:
        assert lines == [f"b'{n}\\n'" for n in range(20)] + ["0"]

