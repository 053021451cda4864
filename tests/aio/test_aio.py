"""pyhcs.aio: awaitable systems, processes, operations, streams; cancellation and timeouts."""

# Some tests look at the internals the behaviour rests on (pending operations, the loop's waker).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any

import pytest

import pyhcs
from pyhcs import EventType, _flow_aio, aio, emulator, errors
from pyhcs import operation as op_mod
from pyhcs._native import _backend as B

from pyutil import CONFIG
from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "aio") -> str:
    return _new_id(prefix)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_lifecycle() -> None:
    async def main() -> None:
        sid = new_id()
        async with await aio.ComputeSystem.create(sid, CONFIG) as system:
            assert system.id == sid and not system.closed
            assert "aio.ComputeSystem" in repr(system)
            await system.start()
            props = await system.properties("Statistics")
            assert props["State"] == "Running" and "Statistics" in props
            assert [p["Id"] for p in await aio.enumerate(ids=[sid])] == [sid]
            await system.modify({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 128})
            await system.pause()
            await system.resume()
            result = await system.run(["sh", "-c", "echo out; echo err >&2; exit 5"])
            assert (result.stdout, result.stderr, result.returncode) == (b"out\n", b"err\n", 5)
            other = await aio.open(sid)
            other.close()
            with pytest.raises(errors.InvalidStateError) as exc:
                await system.start()
            assert exc.value.system_id == sid
            status = await system.stop(grace=10)
            assert status.exit_type == "GracefulExit"
            assert await system.wait_exit(1) == status == system.exit_status
            assert await system.terminate() is False
            assert await system.shutdown() is False

    run(main())


def test_create_errors() -> None:
    async def main() -> None:
        sid = new_id()
        async with await aio.ComputeSystem.create(sid, CONFIG):
            with pytest.raises(errors.SystemAlreadyExistsError):
                await aio.ComputeSystem.create(sid, CONFIG)
        with pytest.raises(errors.SystemNotFoundError):
            await aio.open(new_id("missing"))

    run(main())


def test_process_streams_and_communicate() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            async with await system.create_process(["cat"], stdin=True, stdout=True) as p:
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write(b"line one\nline two\n")
                await p.stdin.drain()
                assert await p.stdout.readline() == b"line one\n"
                await p.close_stdin()
                assert [line async for line in p.stdout] == [b"line two\n"]
                assert p.stdout.at_eof()
                assert await p.wait(10) == 0 and p.exit_code == 0
            big = b"y" * 3_000_000
            async with await system.create_process(["sh", "-c", "cat; head -c 1000000 /dev/zero >&2"],
                                                   stdin=True, stdout=True, stderr=True) as p:
                out, err = await p.communicate(big, timeout=60)
                assert out == big and err == b"\0" * 1_000_000
                assert p.returncode == 0
            async with await system.create_process(["sh", "-c", "echo x; exec sleep 30"], stdout=True) as p:
                with pytest.raises(errors.TimeoutExpiredError) as exc:
                    await p.communicate(timeout=0.3)
                assert exc.value.output == b"x\n"
                assert await p.kill() is True
                out, _ = await p.communicate(timeout=10)
                assert out == b"x\n" and p.exit_code == 137
                assert await p.kill() is False

    run(main())


def test_process_control() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            async with await system.create_process(["sleep", "30"]) as p:
                assert (await p.properties())["Exited"] is False
                with pytest.raises(errors.OperationTimeoutError):
                    await p.wait(0.05)
                assert await p.signal(15) is True
                assert await p.wait(10) == 143
                assert await p.signal(15) is False and await p.terminate() is False
            async with await system.create_process(["sleep", "30"]) as p:
                assert await p.terminate() is True
                assert await p.wait(10) == 137
            async with await system.create_process(["sleep", "30"], console=True, stdout=True) as p:
                await p.resize(30, 100)
                await p.kill()
                await p.wait(10)
            with pytest.raises(errors.Win32FileNotFoundError):
                await system.create_process(["/no/such/program"])
            result = await system.run(["cat"], input=b"in", check=True)
            assert result.stdout == b"in"
            async with await system.create_process(["sleep", "30"]) as p:
                assert [e async for e in p.events(timeout=0.01, replay=False)] == [] if p.exit_code else True
                await p.kill()
                assert [e.type async for e in p.events(timeout=10)] == [EventType.PROCESS_EXITED]

    run(main())


def test_with_block_error_kills_and_terminates() -> None:
    async def main() -> None:
        sid = new_id()
        proc: pyhcs.Process | None = None
        other: pyhcs.ComputeSystem | None = None
        with pytest.raises(RuntimeError):
            async with await aio.ComputeSystem.create(sid, {**CONFIG, "ShouldTerminateOnLastHandleClosed": False}) as s:
                await s.start()
                other = pyhcs.ComputeSystem.open(sid)
                async with await s.create_process(["sleep", "30"]) as p:
                    proc = p.sync
                    raise RuntimeError("boom")
        assert proc is not None and other is not None
        assert proc.closed
        with other:
            assert other.wait_exit(10).exit_type == "ForcedExit"

    run(main())


def test_thousands_of_concurrent_operations() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            results = await asyncio.gather(*(system.properties() for _ in range(2000)))
            assert len(results) == 2000 and all(r["State"] == "Running" for r in results)

    run(main())


def test_await_operation_and_timeout() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 300, "Count": 1})
            with system.sync.submit("properties", callback=True) as op:
                with pytest.raises(errors.OperationTimeoutError) as exc:
                    await aio.wait_operation(op, timeout=0.01)
                assert exc.value.operation is op
                assert (await op) is not None  # awaited again: completes
            emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 300, "Count": 1})
            with pytest.raises(errors.OperationTimeoutError) as exc2:
                await system.properties(timeout=0.01)
            abandoned = exc2.value.operation
            assert isinstance(abandoned, pyhcs.Operation)
            await abandoned  # the result is still there once it completes
            with pytest.raises(errors.OperationTimeoutError):
                await system.wait_exit(0.01)

    run(main())


def test_cancelled_task_frees_nothing_in_use() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 300, "Count": 1})
            ops_before = emulator.statistics()["Operations"]
            task = asyncio.ensure_future(system.properties())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the operation is still open while HCS runs it ...
            assert emulator.statistics()["Operations"] == ops_before + 1
            assert len(op_mod._pending) >= 1
            # ... and closes itself once HCS completes it
            deadline = time.monotonic() + 10
            while emulator.statistics()["Operations"] > ops_before:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)

    run(main())


def test_cancelled_create_closes_once_created() -> None:
    async def main() -> None:
        baseline = emulator.statistics()["SystemHandles"]
        emulator.add_faults({"Function": "HcsCreateComputeSystem", "DelayMs": 200, "Count": 1})
        sid = new_id()
        task = asyncio.ensure_future(aio.ComputeSystem.create(sid, CONFIG))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while emulator.statistics()["SystemHandles"] > baseline or pyhcs.ComputeSystem.enumerate(ids=[sid]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    run(main())


def test_cancelled_create_process_closes_once_created() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            baseline = emulator.statistics()["ProcessHandles"]
            emulator.add_faults({"Function": "HcsCreateProcess", "DelayMs": 200, "Count": 1})
            task = asyncio.ensure_future(system.create_process(["sleep", "30"], stdout=True))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + 10
            while emulator.statistics()["ProcessHandles"] > baseline:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)

    run(main())


def test_completions_for_a_closed_loop_are_dropped() -> None:
    emulator.add_faults({"Function": "HcsGetComputeSystemProperties", "DelayMs": 200, "Count": 1})
    with pyhcs.ComputeSystem.create(new_id(), CONFIG) as system:
        system.start()
        op = system.submit("properties", callback=True)
        loop = asyncio.new_event_loop()
        task = loop.create_task(aio.wait_operation(op, timeout=10))
        loop.run_until_complete(asyncio.sleep(0.01))
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()
        op.wait(10)  # completes on the dispatcher thread; the closed loop is not touched
        B.flush_callbacks()
        op.close()


def test_waker_batches_wakeups() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        waker = _flow_aio.waker(loop)
        calls = 0
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]  # counts calls, on purpose
        hits: list[int] = []
        barrier = threading.Event()

        def producer() -> None:
            for i in range(500):
                waker.call(functools.partial(hits.append, i))
            barrier.set()

        t = threading.Thread(target=producer)
        t.start()
        # The loop is blocked until the producer is done: one wake-up for the whole batch.
        barrier.wait(10)
        t.join()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del loop.call_soon_threadsafe
        assert hits == list(range(500))
        return calls

    assert run(main()) == 1


def test_creation_timeouts_hand_over_the_objects() -> None:
    async def main() -> None:
        emulator.add_faults({"Function": "HcsCreateComputeSystem", "DelayMs": 300, "Count": 1})
        with pytest.raises(errors.TimeoutExpiredError) as exc:
            await aio.ComputeSystem.create(new_id(), CONFIG, timeout=0.01)
        system = exc.value.system
        del exc
        assert isinstance(system, aio.ComputeSystem)
        async with system:
            await system.wait_created(10)
            await system.start()
            emulator.add_faults({"Function": "HcsCreateProcess", "DelayMs": 300, "Count": 1})
            with pytest.raises(errors.TimeoutExpiredError) as exc2:
                await system.create_process(["sleep", "30"], stdout=True, timeout=0.01)
            proc = exc2.value.process
            assert proc is not None
            del exc2
            with proc:
                proc.wait_started(10)
                p = await system.open_process(proc.pid, stdio=True)
                async with p:
                    # the creating handle was handed over with the process's one stdout reader
                    assert p.stdout is None and p.pid == proc.pid and proc.stdout is not None
                    assert await p.kill() is True
                    assert await p.wait(10) == 137
                    assert proc.stdout.read(10) == b""

    run(main())


def test_async_reader_partial_reads_and_closed_calls() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            p = await system.create_process(["sh", "-c", "printf abcdef"], stdout=True)
            assert p.stdout is not None
            assert await p.stdout.read(2) == b"ab"
            assert await p.stdout.read() == b"cdef"
            assert await p.stdout.readline() == b""
            assert await p.wait(10) == 0
            p.close()
            await p.aclose()  # idempotent
            with pytest.raises(errors.HandleClosedError):
                await p.properties()
            with pytest.raises(errors.HandleClosedError):
                await p.resize(1, 1)
            with pytest.raises(errors.HandleClosedError):
                await p.signal(9)
            async with await system.create_process(["true"]) as q:
                with pytest.raises(ValueError):
                    await q.communicate(b"input without a pipe")
                await q.wait(10)

    run(main())


def test_async_console_output_until_exit() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id(), CONFIG) as system:
            await system.start()
            async with await system.create_process(["sh", "-c", "echo tty"], console=True, stdout=True) as p:
                out, _ = await p.communicate(timeout=10)
                assert out is not None and out.replace(b"\r", b"") == b"tty\n"

    run(main())
