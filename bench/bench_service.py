"""Benchmark: the emulator's service process (hcsemud) against its floors.

1. Round trip: ``HcsGetComputeSystemProperties`` on a running container and its wait, through
   the raw API, with the service in its own process (``HCSEMU_SERVICE=private``: a request and
   a response over a Unix socket), against the floor: a bare ping-pong of one small message
   over a Unix socketpair between two processes (this interpreter and a forked echo loop).
   The same round trip in-process (``direct``) shows what the service half itself costs.
2. Lifecycle: create a container, start it, run ``true`` with stdout captured, wait for it,
   terminate, close, through the raw API in private mode, against ``subprocess.run(["true"],
   stdout=PIPE)``; and the same lifecycle in-process.

Every measurement runs in a fresh interpreter per mode (the mode is chosen once per process),
one after the other in one run, and each figure is the median of its samples. Run::

    PYTHONPATH=src python bench/bench_service.py [--json] [--scale 0.2] [--backend cython|ctypes]

Targets: round trip <= 2x the socket ping-pong; private lifecycle <= 2x subprocess.run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIG = json.dumps(
    {
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Owner": "pyhcs-bench",
        "Container": {},
        "ShouldTerminateOnLastHandleClosed": True,
    }
)


def _median_us(fn: Any, n: int, repeat: int = 5) -> float:
    """Median over `repeat` batches of the mean time per call of a batch of n calls (us)."""
    batches = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        batches.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(batches)


def ping_pong(n: int) -> float:
    """Microseconds per round trip of 64 bytes over a socketpair to a forked echo process."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        try:
            while True:
                data = os.read(b.fileno(), 4096)
                if not data:
                    break
                os.write(b.fileno(), data)
        finally:
            os._exit(0)
    b.close()
    fd, msg = a.fileno(), b"x" * 64

    def once() -> None:
        os.write(fd, msg)
        os.read(fd, 4096)

    for _ in range(1000):
        once()
    try:
        return _median_us(once, n)
    finally:
        a.close()
        os.waitpid(pid, 0)


def worker(backend: str, n: int, lifecycles: int) -> dict[str, float]:
    """In this interpreter's mode: the properties round trip and the raw lifecycle (us)."""
    from pyhcs._native import _backend

    B = _backend.load(backend)
    op = B.hcs_create_operation()
    tag = f"bench-svc-{os.getpid()}"
    h = B.hcs_create_compute_system(tag, CONFIG, op)
    B.hcs_wait_for_operation_result(op, 10_000)
    B.hcs_start_compute_system(h, op)
    B.hcs_wait_for_operation_result(op, 10_000)

    def roundtrip() -> None:
        B.hcs_get_compute_system_properties(h, op, None)
        B.hcs_wait_for_operation_result(op, 10_000)

    for _ in range(500):
        roundtrip()
    rt = _median_us(roundtrip, n)
    B.hcs_terminate_compute_system(h, op)
    B.hcs_wait_for_operation_result(op, 10_000)
    B.hcs_close_compute_system(h)
    params = json.dumps({"CommandLine": "true", "CreateStdOutPipe": True})  # a Container: a Windows guest
    counter = iter(range(10**9))

    def lifecycle() -> None:
        s = B.hcs_create_compute_system(f"{tag}-{next(counter)}", CONFIG, op)
        B.hcs_wait_for_operation_result(op, 10_000)
        B.hcs_start_compute_system(s, op)
        B.hcs_wait_for_operation_result(op, 10_000)
        p = B.hcs_create_process(s, params, op)
        info, _ = B.hcs_wait_for_operation_result_and_process_info(op, 10_000)
        while os.read(info.std_output, 65536):
            pass
        os.close(info.std_output)
        B.hcs_wait_for_process_exit(p, 10_000)
        B.hcs_close_process(p)
        B.hcs_terminate_compute_system(s, op)
        B.hcs_wait_for_operation_result(op, 10_000)
        B.hcs_close_compute_system(s)

    def floor() -> None:
        subprocess.run(["true"], stdout=subprocess.PIPE, check=True)

    for _ in range(20):
        lifecycle()
        floor()
    samples: dict[str, list[float]] = {"lifecycle": [], "floor": []}
    for _ in range(lifecycles):  # interleaved, so a busy machine skews both alike
        for name, fn in (("lifecycle", lifecycle), ("floor", floor)):
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e6)
    B.hcs_close_operation(op)
    return {
        "roundtrip_us": rt,
        "lifecycle_us": statistics.median(samples["lifecycle"]),
        "subprocess_us": statistics.median(samples["floor"]),
    }


def run_worker(mode: str, backend: str, n: int, lifecycles: int) -> dict[str, float]:
    env = {**os.environ, "HCSEMU_SERVICE": mode}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", backend, "--n", str(n), "--lifecycles", str(lifecycles)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--backend", default=os.environ.get("PYHCS_BACKEND", "cython"))
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--lifecycles", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.lifecycles)))
        return
    n, lifecycles = max(100, int(4000 * args.scale)), max(20, int(300 * args.scale))
    floor = ping_pong(n)
    private = run_worker("private", args.backend, n, lifecycles)
    direct = run_worker("direct", args.backend, n, lifecycles)
    ratios = {
        "roundtrip.private_over_pingpong": private["roundtrip_us"] / floor,
        "lifecycle.private_over_subprocess": private["lifecycle_us"] / private["subprocess_us"],
        "lifecycle.direct_over_subprocess": direct["lifecycle_us"] / direct["subprocess_us"],
        "roundtrip.private_over_direct": private["roundtrip_us"] / direct["roundtrip_us"],
    }
    targets = {
        "roundtrip.private_over_pingpong": 2.0,
        "lifecycle.private_over_subprocess": 2.0,
    }
    report = {
        "backend": args.backend,
        "pingpong_us": floor,
        "private": private,
        "direct": direct,
        "ratios": ratios,
        "targets": {k: {"limit": v, "met": ratios[k] <= v} for k, v in targets.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"backend {args.backend}")
    print(f"{'':34} {'private':>10} {'direct':>10}")
    print(f"{'round trip (properties + wait)':34} {private['roundtrip_us']:>8.1f}us {direct['roundtrip_us']:>8.1f}us")
    print(f"{'socket ping-pong (floor)':34} {floor:>8.1f}us")
    print(f"{'raw lifecycle':34} {private['lifecycle_us'] / 1000:>8.2f}ms {direct['lifecycle_us'] / 1000:>8.2f}ms")
    print(
        f"{'subprocess.run(true) (floor)':34} {private['subprocess_us'] / 1000:>8.2f}ms {direct['subprocess_us'] / 1000:>8.2f}ms"
    )
    for k, v in ratios.items():
        t = targets.get(k)
        print(f"  {k:40} {v:6.2f}" + (f"  (target <= {t}: {'met' if v <= t else 'MISSED'})" if t else ""))


if __name__ == "__main__":
    main()
