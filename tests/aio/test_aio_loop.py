"""pyhcs.aio never blocks the event loop: every public coroutine runs while each synchronous
HCS call (open, set-callback, wait-for-exit, ...) is delayed, and a watchdog fails the test on
any loop callback that runs longer than 50 ms.

The watchdog is asyncio's own slow-callback detection (debug mode, ``slow_callback_duration``):
it times every callback and task step the loop runs, which is exactly what a blocking call on
the loop thread shows up as. A blocked step stalls for the whole delay, in every run. A step
can also be stretched past the limit once without blocking: a busy machine, or another thread
holding the GIL for one-time work (the first strict check of a configuration builds its
validators). So a run with stalls is repeated, and the test fails on the steps that stalled
both times.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from pyhcs import aio, emulator, errors

from pyutil import CONFIG, new_id

pytestmark = [
    pytest.mark.skipif(not emulator.active(), reason="needs the emulator's delay faults"),
    pytest.mark.usefixtures("hcs_emulator"),
]

#: A stall longer than this fails the test.
STALL_LIMIT = 0.05
#: What every synchronous HCS call is delayed by (operations complete this much later too).
DELAY_MS = 200



class LoopWatchdog(logging.Handler):
    """Collects asyncio's "Executing <handle> took N seconds" reports, labelled with the step
    the test was in."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.step = "setup"
        self.stalls: list[tuple[str, float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Executing") and isinstance(record.args, tuple) and len(record.args) == 2:
            handle, seconds = record.args
            # asyncio's format: "Executing %s took %.3f seconds" (handle, float)
            self.stalls.append((self.step, float(cast(float, seconds)), str(handle)[:200]))


def run_watched(main: Any) -> list[tuple[str, float, str]]:
    watchdog = LoopWatchdog()
    logger = logging.getLogger("asyncio")
    logger.addHandler(watchdog)

    async def wrapper() -> None:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = STALL_LIMIT
        await main(watchdog)

    try:
        asyncio.run(wrapper(), debug=True)
    finally:
        logger.removeHandler(watchdog)
    return watchdog.stalls


def test_no_public_coroutine_blocks_the_loop(tmp_path: Path) -> None:
    runs = 0

    async def main(dog: LoopWatchdog) -> None:
        nonlocal runs
        runs += 1
        emulator.add_faults({"Function": "*", "DelayMs": DELAY_MS})
        try:
            await scenario(dog, tmp_path / f"run{runs}")
        finally:
            emulator.add_faults(reset=True)

    async def scenario(dog: LoopWatchdog, tmp_path: Path) -> None:
        tmp_path.mkdir()
        sid = new_id("aioloop")
        dog.step = "ComputeSystem.create"
        system = await aio.ComputeSystem.create(sid, CONFIG)
        async with system:
            dog.step = "wait_created"
            await system.wait_created()
            dog.step = "start"
            await system.start()
            dog.step = "guest_os"
            assert await system.guest_os() == "windows"
            dog.step = "properties/state"
            assert (await system.properties())["State"] == "Running"
            assert await system.state() == "Running"
            dog.step = "modify"
            await system.modify({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 128})
            dog.step = "pause/save/resume"
            await system.pause()
            await system.save({"SaveType": "ToFile", "SaveStateFilePath": str(tmp_path / "state.vmrs")})
            await system.resume()
            dog.step = "enumerate"
            assert [s["Id"] for s in await aio.enumerate(ids=[sid])] == [sid]
            dog.step = "wait_operation"
            op = system.sync.submit("properties", callback=True)
            try:
                assert await aio.wait_operation(op, timeout=10) is not None
            finally:
                op.close()
            dog.step = "open"
            other = await aio.open(sid)
            dog.step = "opened guest_os (asks HCS)"
            assert await other.guest_os() == "windows"
            dog.step = "opened aclose"
            await other.aclose()
            dog.step = "open with guest_os"
            other = await aio.ComputeSystem.open(sid, guest_os="linux")
            assert await other.guest_os() == "linux"
            await other.aclose()
            dog.step = "run"
            result = await system.run(["sh", "-c", "echo out; echo err >&2"])
            assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
            dog.step = "run with input"
            result = await system.run(["cat"], input=b"in")
            assert result.stdout == b"in"
            dog.step = "run timeout"
            with pytest.raises(errors.TimeoutExpiredError):
                await system.run(["sleep", "30"], timeout=1.5)
            dog.step = "create_process"
            proc = await system.create_process(["cat"], stdin=True, stdout=True)
            async with proc:
                dog.step = "process properties"
                assert (await proc.properties())["ProcessId"] == proc.pid
                dog.step = "open_process"
                again = await system.open_process(proc.pid)
                await again.aclose()
                dog.step = "open_process stdio"
                again = await system.open_process(proc.pid, stdio=True)
                await again.aclose()
                dog.step = "communicate"
                out, _ = await proc.communicate(b"hello", timeout=10)
                assert out == b"hello"
                dog.step = "wait"
                assert await proc.wait(10) == 0
            dog.step = "readline"
            proc = await system.create_process(["sh", "-c", "echo one; echo two"], stdout=True)
            async with proc:
                assert proc.stdout is not None
                assert await proc.stdout.readline() == b"one\n"
                assert [line async for line in proc.stdout] == [b"two\n"]
                assert await proc.wait(10) == 0
                dog.step = "events of the blocking object"
                # ends (the exit may have been read by a zero wait before the event came)
                assert "SystemExited" not in [ev.name async for ev in aio.events(proc.sync, timeout=10)]
            dog.step = "console process"
            proc = await system.create_process(["sleep", "30"], console=True, stdin=True, stdout=True)
            try:
                dog.step = "resize"
                await proc.resize(30, 100)
                dog.step = "close_stdin"
                await proc.close_stdin()
                dog.step = "signal"
                assert await proc.signal("CtrlC") is True
                dog.step = "wait after signal"
                await proc.wait(10)
                dog.step = "signal after exit"
                assert await proc.signal("CtrlC") is False
                assert await proc.terminate() is False
                assert await proc.kill() is False
            finally:
                await proc.aclose()
            dog.step = "terminate a process"
            proc = await system.create_process(["sleep", "30"])
            async with proc:
                assert await proc.terminate() is True
                await proc.wait(10)
            dog.step = "kill a process"
            proc = await system.create_process(["sleep", "30"], stdout=True)
            async with proc:
                assert await proc.kill() is True
                assert await proc.wait(10) == 137
                dog.step = "process events"
                names = [ev.name async for ev in proc.events(timeout=10)]
                assert names[-1] == "ProcessExited"
            dog.step = "process __aexit__ on error (kill)"
            with pytest.raises(KeyError):
                async with await system.create_process(["sleep", "30"]):
                    raise KeyError("leave")
            dog.step = "stop"
            status = await system.stop(grace=5)
            assert status.exit_type == "GracefulExit"
            dog.step = "wait_exit"
            assert await system.wait_exit(1) == status
            dog.step = "system events"
            assert [ev.name async for ev in system.events(timeout=10)][-1] == "SystemExited"
            dog.step = "shutdown/terminate after exit"
            assert await system.shutdown() is False
            assert await system.terminate() is False
        dog.step = "__aexit__ on error (terminate)"
        with pytest.raises(KeyError):
            async with await aio.ComputeSystem.create(new_id("aioloop"), CONFIG) as doomed:
                await doomed.start()
                raise KeyError("leave")
        dog.step = "stop escalation"
        async with await aio.ComputeSystem.create(new_id("aioloop"), CONFIG) as stubborn:
            await stubborn.start()
            emulator.configure(IgnoreShutdown=True)
            status = await stubborn.stop(grace=0.3)
            assert status.exit_type != "GracefulExit"
            emulator.configure(IgnoreShutdown=False)
        async with await aio.ComputeSystem.create(new_id("aioloop"), CONFIG) as victim:
            await victim.start()
            dog.step = "crash"
            await victim.crash()
            await victim.wait_exit(10)
        dog.step = "done"

    first = run_watched(main)
    if not first:
        return
    second = run_watched(main)
    both = {step for step, _, _ in first} & {step for step, _, _ in second}
    report = "\n".join(f"  run {n}: {s}: {t:.3f} s in {h}" for n, run in ((1, first), (2, second))
                       for s, t, h in run)
    assert not both, f"the event loop stalled in {sorted(both)} in both runs:\n{report}"
