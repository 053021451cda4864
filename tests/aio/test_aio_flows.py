"""The blocking and the asyncio API run the same flows (pyhcs._flow): the same steps, the
same logging, the same outcome."""

from __future__ import annotations

import asyncio
import logging

import pytest

import pyhcs
from pyhcs import aio, emulator

from pyutil import CONFIG, new_id

pytestmark = pytest.mark.usefixtures("hcs_emulator")



def _stop_log(caplog: pytest.LogCaptureFixture, stop: str) -> list[str]:
    """The pyhcs log lines of a stop() of a guest that ignores the shutdown."""
    emulator.configure(IgnoreShutdown=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pyhcs"):
        if stop == "blocking":
            with pyhcs.ComputeSystem.create(new_id("flows"), CONFIG) as system:
                system.start()
                status = system.stop(grace=0.2, timeout=10)
        else:

            async def main() -> pyhcs.SystemExitStatus:
                async with await aio.ComputeSystem.create(new_id("flows"), CONFIG) as system:
                    await system.start()
                    return await system.stop(grace=0.2, timeout=10)

            status = asyncio.run(main())
    assert status.exit_type != "GracefulExit"
    messages = [r.getMessage() for r in caplog.records if r.name == "pyhcs"]
    # without the system ids, which differ
    return [m.split("'")[0] + m.split("'")[-1] for m in messages if "stopping" in m or "shut down" in m]


def test_stop_escalation_is_logged_alike(caplog: pytest.LogCaptureFixture) -> None:
    blocking = _stop_log(caplog, "blocking")
    awaited = _stop_log(caplog, "asyncio")
    assert any("did not shut down within 0.2 s; terminating" in line for line in blocking), blocking
    assert awaited == blocking


def test_async_methods_never_run_the_blocking_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """aio runs the flows itself: it never hands a whole blocking method to a thread (kill) or
    calls one on the loop (Process.open, create_process, stop, run)."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a blocking method was called from pyhcs.aio")

    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id("flows"), CONFIG) as system:
            await system.start()
            for name in ("kill", "terminate", "signal", "wait", "close_stdin", "wait_started", "open"):
                monkeypatch.setattr(pyhcs.Process, name, forbidden)
            for name in ("create_process", "run", "stop", "wait_exit", "open_process", "terminate"):
                monkeypatch.setattr(pyhcs.ComputeSystem, name, forbidden)
            result = await system.run(["cat"], input=b"x")
            assert result.stdout == b"x"
            async with await system.create_process(["sleep", "30"], stdout=True, stdin=True) as proc:
                again = await system.open_process(proc.pid, stdio=True)
                await again.aclose()
                await proc.close_stdin()
                assert await proc.kill() is True
                assert await proc.wait(10) == 137
            await system.stop(grace=5)
            monkeypatch.undo()

    asyncio.run(main())
