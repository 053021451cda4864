"""pyhcs in one page: a compute system, a process, events, errors, asyncio.

Runs as is on Linux (against the bundled HCS emulator); on Windows, give the configuration
the layers and the commands of a real container image.
"""

import asyncio

import pyhcs
from pyhcs import ComputeSystem, aio, errors

config = {
    "SchemaVersion": {"Major": 2, "Minor": 1},
    "Owner": "readme-example",
    "Container": {},  # ShouldTerminateOnLastHandleClosed defaults to true: nothing leaks
}

with ComputeSystem.create("readme-demo", config) as system:  # closed (and ended) on exit
    system.start(timeout=60)  # every wait takes a timeout; pyhcs.DEFAULT_TIMEOUT otherwise,
    #                           None for no limit (as in subprocess and asyncio)

    # subprocess-like: output is drained before the exit is reported
    result = system.run(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    print(result.returncode, result.stdout, result.stderr)  # 3 b'hello\n' b'oops\n'

    # a process with pipes; communicate() cannot deadlock however much it writes
    with system.create_process(["sort"], stdin=True, stdout=True) as proc:
        out, _ = proc.communicate(b"pear\napple\n", timeout=30)
        print(out, proc.exit_status)  # b'apple\npear\n' ExitStatus(... code=0 ...)

    # errors say what failed: the HRESULT's class, the call, the system
    try:
        system.start()
    except errors.InvalidStateError as err:
        print(err)  # HCS_E_INVALID_STATE (0x80370105) in HcsStartComputeSystem [system 'readme-demo']: ...

    # events: callbacks (on pyhcs' dispatcher thread), or iterate (ends after SystemExited)
    system.add_event_callback(lambda event: print("event:", event.name))  # event: SystemExited
    status = system.stop(grace=10)  # shutdown; terminate if the guest does not stop in time
    # (a wait returns only once the callbacks of the event it saw have run)
    print(status.exit_type, [event.name for event in system.events()])  # GracefulExit ['SystemExited']


async def main() -> None:
    async with await aio.ComputeSystem.create("readme-async", config) as system:
        await system.start()
        results = await asyncio.gather(*(system.run(["echo", str(i)]) for i in range(3)))
        print([r.stdout for r in results])  # [b'0\n', b'1\n', b'2\n']
        try:
            await system.wait_exit(timeout=0.1)
        except TimeoutError as err:  # errors.OperationTimeoutError is a TimeoutError
            print("still running:", isinstance(err, pyhcs.HcsError))
        await system.terminate()


asyncio.run(main())
