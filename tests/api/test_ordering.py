"""Orderings that broke other bindings: exit before wait, close before exit, output larger than
a pipe, callbacks closing their own handle, thousands of operations at once, random orders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhcs import CompletedProcess, ComputeSystem, Operation, errors
from pyhcs._native import _backend as B

from pyutil import CONFIG
from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "ord") -> str:
    return _new_id(prefix)


@pytest.fixture(scope="module")
def system() -> Iterator[ComputeSystem]:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        yield s


def test_exit_before_wait(system: ComputeSystem) -> None:
    for _ in range(50):
        with system.create_process(["true"]) as p:
            time.sleep(0.001)
            assert p.wait(10) == 0
            assert p.exit_status is not None and p.exit_status.code == 0
    with system.create_process(["sh", "-c", "exit 9"]) as p:
        while p.exit_status is None:  # wait for the event without waiting on the process
            B.flush_callbacks()
            time.sleep(0.001)
        assert p.wait(0) == 9  # a zero timeout is enough once it is known


def test_exit_before_the_callback_is_registered(system: ComputeSystem) -> None:
    # The process exits while HcsCreateProcess is still returning: the exit is read from
    # HcsWaitForProcessExit, never invented.
    for _ in range(30):
        with system.create_process(["sh", "-c", "exit 3"]) as p:
            assert p.wait(10) == 3
            assert p.exit_status is not None and p.exit_status.source in ("event", "wait")


def test_close_before_exit(system: ComputeSystem) -> None:
    p = system.create_process(["sleep", "30"], stdout=True)
    pid = p.pid
    p.close()
    with pytest.raises(errors.HandleClosedError):
        p.wait(1)
    assert p.exit_status is None  # no exit code made up for a closed handle
    with system.open_process(pid) as q:
        assert q.kill() is True
        assert q.wait(10) == 137


def test_close_while_another_thread_waits(system: ComputeSystem) -> None:
    p = system.create_process(["sleep", "30"])
    pid = p.pid
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            p.wait(30)
        except BaseException as e:
            outcome.append(e)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    p.close()
    for t in threads:
        t.join(10)
    assert len(outcome) == 5 and all(isinstance(e, errors.HandleClosedError) for e in outcome)
    with system.open_process(pid) as q:
        q.kill()
        q.wait(10)


def test_output_larger_than_a_pipe_buffer(system: ComputeSystem) -> None:
    size = 8 * 1024 * 1024
    script = f"head -c {size} /dev/zero; head -c {size} /dev/zero >&2; echo done >&2"
    with system.create_process(["sh", "-c", script], stdout=True, stderr=True) as p:
        out, err = p.communicate(timeout=120)
        assert out is not None and err is not None
        assert len(out) == size and len(err) == size + 5
        assert p.exit_code == 0


def test_output_drained_before_the_exit_is_reported(system: ComputeSystem) -> None:
    # The child exits while most of its output is still in the pipe; communicate() must
    # return all of it, and only then the exit.
    size = 60000  # fits in the pipe, so the child can exit before anything is read
    with system.create_process(["sh", "-c", f"head -c {size} /dev/zero"], stdout=True) as p:
        deadline = time.monotonic() + 30
        while p.exit_status is None:
            B.flush_callbacks()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        out, _ = p.communicate(timeout=30)
        assert out is not None and len(out) == size


def test_operation_callback_closes_its_own_operation(system: ComputeSystem) -> None:
    done = threading.Event()
    op = system.submit("properties", callback=True)

    def cb(o: Operation) -> None:
        o.close()
        done.set()

    op.add_done_callback(cb)
    assert done.wait(10)
    assert op.closed and op.result() is not None


def test_thousands_of_concurrent_operations_from_threads(system: ComputeSystem) -> None:
    ops = [system.submit("properties", callback=(i % 2 == 0)) for i in range(1500)]
    try:
        def result(op: Operation) -> str | None:
            return op.result(60)

        with ThreadPoolExecutor(16) as pool:
            docs = list(pool.map(result, ops))
        assert all(docs)
    finally:
        for op in ops:
            op.close()
    def state(_: int) -> object:
        return system.properties()["State"]

    with ThreadPoolExecutor(16) as pool:
        states = list(pool.map(state, range(1500)))
    assert set(states) == {"Running"}


def test_many_processes_at_once(system: ComputeSystem) -> None:
    def run(i: int) -> CompletedProcess:
        return system.run(["sh", "-c", f"echo {i}; exit {i % 7}"])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(200)))
    for i, r in enumerate(results):
        assert r.stdout == f"{i}\n".encode() and r.returncode == i % 7


ACTIONS = st.sampled_from(["write", "close_stdin", "kill", "wait0", "close", "read", "terminate", "signal"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ACTIONS, min_size=1, max_size=8))
def test_random_orders_of_stdio_exit_and_close(system: ComputeSystem, actions: list[str]) -> None:
    """Whatever the order of writes, stdin close, kill, waits and close, nothing hangs, every
    outcome is one of the documented ones, and nothing leaks."""
    p = system.create_process(["cat"], stdin=True, stdout=True)
    written = 0
    try:
        for action in actions:
            try:
                if action == "write" and p.stdin is not None:
                    p.stdin.write(b"z" * 1000)
                    p.stdin.flush()
                    written += 1000
                elif action == "close_stdin":
                    p.close_stdin()
                elif action == "kill":
                    assert p.kill() in (True, False)
                elif action == "terminate":
                    assert p.terminate() in (True, False)
                elif action == "signal":
                    assert p.signal(15) in (True, False)
                elif action == "wait0":
                    try:
                        code = p.wait(0)
                        assert code in (0, 137, 143)
                    except errors.OperationTimeoutError:
                        assert p.exit_status is None
                elif action == "read" and p.stdout is not None and p.exit_status is not None:
                    p.stdout.read()
                elif action == "close":
                    p.close()
            except errors.HandleClosedError:
                assert p.closed
            except BrokenPipeError:
                pass  # writing to a child that is gone
        if not p.closed:
            p.kill()
            out, _ = p.communicate(timeout=30)
            assert out is None or len(out) <= written
            assert p.exit_code in (0, 137, 143)
    finally:
        p.close()
        # Closing a process handle does not end the process (HCS semantics): end it by pid.
        try:
            with system.open_process(p.pid) as q:
                q.kill()
                q.wait(10)
        except errors.ElementNotFoundError:
            pass
