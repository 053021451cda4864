"""Process I/O under both strategies (readiness polling, and the Windows one: threads, no
polling), with close() from other threads, Ctrl-C, unbounded timeouts and broken pipes.

Each test runs with both strategies; CI also runs the process and aio suites a second time
with ``PYHCS_FORCE_WINDOWS_IO=1``.
"""

# One test makes the private pipe writer of pyhcs._stdio fail.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import gc
import logging
import math
import os
import signal
import threading
import time
from typing import Any

import pytest

from pyhcs import ComputeSystem, _stdio, aio, errors

from pyutil import CONFIG, new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


@pytest.fixture(params=["poll", "threads"], autouse=True)
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_stdio, "WINDOWS_IO", request.param == "threads")
    return str(request.param)


def _end(system: ComputeSystem, pid: int) -> None:
    """Ends a process whose object was closed (closing a handle does not end a process)."""
    try:
        with system.open_process(pid) as q:
            q.kill()
            q.wait(10)
    except errors.ElementNotFoundError:
        pass


def test_communicate_without_a_limit(system: ComputeSystem) -> None:
    with system.create_process(["sh", "-c", "cat; echo err >&2"], stdin=True, stdout=True, stderr=True) as p:
        assert p.communicate(b"in", timeout=math.inf) == (b"in", b"err\n")
    assert system.run(["echo", "ok"], timeout=math.inf).stdout == b"ok\n"


def test_ctrl_c_interrupts_communicate(system: ComputeSystem) -> None:
    main = threading.get_ident()
    with system.create_process(["sh", "-c", "echo started; exec sleep 30"], stdout=True, stderr=True) as p:
        timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            p.communicate(timeout=math.inf)
        assert time.monotonic() - start < 5
        timer.join()
        p.kill()
        out, err = p.communicate(timeout=10)  # goes on where it was interrupted
        assert out == b"started\n" and err == b"" and p.exit_code == 137


def test_close_after_a_communicate_timeout_returns_at_once(system: ComputeSystem) -> None:
    p = system.create_process(["sh", "-c", "exec sleep 30"], stdin=True, stdout=True, stderr=True)
    pid = p.pid
    with pytest.raises(errors.OperationTimeoutError):
        p.communicate(b"x" * 200_000, timeout=0.2)  # more than the pipe takes: a writer blocks
    start = time.monotonic()
    p.close()
    assert time.monotonic() - start < 3  # it used to wait for the child (30 s)
    _end(system, pid)


def _fresh_pipe_roundtrip(size: int) -> bytes:
    """Opens a new pipe (likely under a number just freed) and moves ``size`` bytes through."""
    r, w = os.pipe()
    try:
        os.write(w, b"z" * size)
        os.close(w)
        w = -1
        time.sleep(0.3)  # a stray poller on a reused number would have taken its share by now
        chunks: list[bytes] = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_close_from_another_thread_during_communicate(system: ComputeSystem) -> None:
    p = system.create_process(["sh", "-c", "echo started; exec sleep 30"], stdout=True, stderr=True)
    pid = p.pid
    outcome: list[BaseException | tuple[bytes | None, bytes | None]] = []

    def talk() -> None:
        try:
            outcome.append(p.communicate(timeout=30))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=talk)
    t.start()
    time.sleep(0.3)
    start = time.monotonic()
    p.close()
    assert time.monotonic() - start < 3
    # The program opens a file right away: the communicating thread must not read it.
    assert _fresh_pipe_roundtrip(2400) == b"z" * 2400
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], errors.HandleClosedError), outcome
    assert outcome[0].process_id == pid
    _end(system, pid)


def test_close_from_another_thread_during_a_plain_read(system: ComputeSystem) -> None:
    # A user's own thread blocked in p.stdout.read() (holding the buffered file's lock).
    p = system.create_process(["sh", "-c", "exec sleep 30"], stdout=True)
    pid = p.pid
    assert p.stdout is not None
    stdout = p.stdout
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(stdout.read())
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    p.close()
    assert time.monotonic() - start < 3
    _end(system, pid)  # the child goes; the blocked read returns; the descriptor is freed
    t.join(5)
    assert not t.is_alive() and len(outcome) == 1
    assert outcome[0] == b"" or isinstance(outcome[0], ValueError)


def test_system_close_from_another_thread_during_run() -> None:
    system = ComputeSystem.create(new_id("pio"), CONFIG)
    system.start()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(system.run(["sh", "-c", "echo x; exec sleep 30"], timeout=30))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    system.close()
    assert _fresh_pipe_roundtrip(2400) == b"z" * 2400
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], errors.HcsError), outcome


def test_einval_from_a_windows_pipe_is_a_broken_pipe(system: ComputeSystem, monkeypatch: pytest.MonkeyPatch,
                                                     strategy: str) -> None:
    # Windows reports a write to a pipe whose reader went away as EINVAL: communicate() must
    # take it as "the child stopped reading", as it takes EPIPE.
    monkeypatch.setattr(_stdio, "WINDOWS_IO", True)
    real_write = _stdio._os_write
    calls = 0

    def einval_after_first(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(_stdio, "_os_write", einval_after_first)
    with system.create_process(["sh", "-c", "head -c 10 >/dev/null; echo read"], stdin=True, stdout=True) as p:
        out, _ = p.communicate(b"y" * 1_000_000, timeout=30)
        assert out == b"read\n" and p.exit_code == 0 and calls >= 2

    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id("pio"), CONFIG) as s:
            await s.start()
            result = await s.run(["sh", "-c", "head -c 10 >/dev/null; echo read"], input=b"y" * 1_000_000,
                                 timeout=30)
            assert result.stdout == b"read\n" and result.returncode == 0

    calls = 0
    asyncio.run(main())


# ------------------------------------------------------------------------------ asyncio


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run_quietly(main: Any) -> list[str]:
    """Runs a coroutine; returns what asyncio reported through its exception handler or log
    (e.g. "exception was never retrieved"), after collecting garbage so that nothing hides."""
    reported: list[str] = []
    recorder = _Recorder()
    logging.getLogger("asyncio").addHandler(recorder)

    async def wrapper() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("message"))))
        await main()
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.05)

    try:
        asyncio.run(wrapper())
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(recorder)
    return reported + recorder.messages


def test_aio_cancelled_and_timed_out_run_log_nothing() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id("pio"), CONFIG) as system:
            await system.start()
            task = asyncio.ensure_future(system.run(["sh", "-c", "echo x; exec sleep 30"], input=b"in"))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(errors.TimeoutExpiredError) as exc:
                await system.run(["sh", "-c", "echo partial; exec sleep 30"], timeout=0.3)
            assert exc.value.output == b"partial\n"
            del exc
            p = await system.create_process(["sh", "-c", "exec sleep 30"], stdout=True, stderr=True)
            with pytest.raises(errors.OperationTimeoutError):
                await p.communicate(timeout=0.2)
            p.close()  # the pumps still running are stopped
            await asyncio.sleep(0.1)

    assert _run_quietly(main) == []


def test_aio_kill_never_waits_behind_pipe_reads() -> None:
    # The loop's default executor is busy (one worker, blocked): pipe reads and kill() must
    # not need it, so run() still honours its timeout.
    release = threading.Event()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(pool)
        blocker = loop.run_in_executor(None, release.wait, 30)
        try:
            async with await aio.ComputeSystem.create(new_id("pio"), CONFIG) as system:
                await system.start()
                start = time.monotonic()
                runs = [system.run(["sh", "-c", "echo x; exec sleep 30"], timeout=1) for _ in range(3)]
                results = await asyncio.gather(*runs, return_exceptions=True)
                elapsed = time.monotonic() - start
                assert all(isinstance(r, errors.OperationTimeoutError) for r in results), results
                return elapsed
        finally:
            release.set()
            await blocker

    elapsed = asyncio.run(main())
    assert elapsed < 10, elapsed  # sharing the executor took 30 s (the sleep)


def test_aio_state_poll_and_unbounded_communicate() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id("pio"), CONFIG) as system:
            assert await system.state() == "Created"
            await system.start()
            assert await system.state(timeout=10) == "Running"
            async with await system.create_process(["sh", "-c", "cat"], stdin=True, stdout=True) as p:
                assert p.poll() is None
                out, _ = await p.communicate(b"unbounded", timeout=math.inf)
                assert out == b"unbounded" and p.poll() == 0
            await system.pause()
            assert await system.state() == "Paused"
            await system.terminate()
            assert await system.state() == "Stopped"

    asyncio.run(main())


def test_aio_close_wakes_a_waiting_reader() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id("pio"), CONFIG) as system:
            await system.start()
            p = await system.create_process(["sh", "-c", "exec sleep 30"], stdout=True)
            pid = p.pid
            assert p.stdout is not None
            reader = asyncio.ensure_future(p.stdout.read())
            await asyncio.sleep(0.2)
            p.close()
            with pytest.raises(ValueError):
                await asyncio.wait_for(reader, 2)
            _end(system.sync, pid)

    asyncio.run(main())
