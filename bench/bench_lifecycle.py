"""Benchmark: the whole life of a compute system through pyhcs, against subprocess.run.

One iteration = create a system, start it, run ``true`` with stdout captured, wait for it,
terminate the system, close everything. The floor is :func:`subprocess.run` of the same
command with ``stdout=PIPE``: the cost of one process on this machine. The emulator starts two
processes per iteration (the system's process-group holder and ``true``), so a ratio near 2 is
where the emulator itself lies; the "raw" line (the same steps through ``pyhcs.raw``) shows
what the objects layer adds on top.

Second scenario: 10,000 operations in flight at once under asyncio
(``await asyncio.gather(*(system.properties() for _ in range(10000)))``), against the same
number of blocking ``system.properties()`` calls one after the other.

The three lifecycles are timed in turn, one iteration of each again and again, and the
median iteration of each is reported, so a busy machine skews them alike. Every scenario
runs in a fresh interpreter per backend (``PYHCS_BACKEND=cython`` and
``ctypes``, each when available), side by side. Run::

    PYTHONPATH=src python bench/bench_lifecycle.py [--json] [--iterations N] [--backend B]

Target: a lifecycle within 2x of the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

# The binding's own cost, with the emulator's service in this process; bench_service.py
# measures the service process (HCSEMU_SERVICE=private, the library's default).
os.environ.setdefault("HCSEMU_SERVICE", "direct")


CONFIG = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-bench", "Container": {}}


def _interleaved(fns: dict[str, Any], iterations: int, repeat: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in turn (one call of each, again and
    again), so a machine that slows down or speeds up affects all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        fn(-1 - len(samples[name]))  # warm up (imports, threads, the emulator's worker pool)
    for i in range(iterations * repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(i)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def _measure(iterations: int, repeat: int, concurrent: int) -> dict[str, Any]:
    import asyncio

    import pyhcs
    from pyhcs import ComputeSystem, aio
    from pyhcs import raw as R

    tag = f"bench-{os.getpid()}"
    config_text = json.dumps({**CONFIG, "ShouldTerminateOnLastHandleClosed": True})

    def floor(_: int) -> None:
        subprocess.run(["true"], stdout=subprocess.PIPE, check=True)

    def lifecycle(i: int) -> None:
        with ComputeSystem.create(f"{tag}-{i}", CONFIG) as system:
            system.start()
            with system.create_process(["true"], stdout=True) as proc:
                proc.communicate()
                assert proc.exit_code == 0
            system.terminate()

    def _op(fn: Any, *args: Any) -> Any:
        op = R.hcs_create_operation()
        try:
            fn(*args, op)
            return R.hcs_wait_for_operation_result(op, 60_000)
        finally:
            R.hcs_close_operation(op)

    def raw(i: int) -> None:
        op = R.hcs_create_operation()
        h = R.hcs_create_compute_system(f"{tag}-raw-{i}", config_text, op)
        R.hcs_wait_for_operation_result(op, 60_000)
        R.hcs_close_operation(op)
        op = R.hcs_create_operation()
        R.hcs_start_compute_system(h, op, None)
        R.hcs_wait_for_operation_result(op, 60_000)
        R.hcs_close_operation(op)
        op = R.hcs_create_operation()
        p = R.hcs_create_process(h, '{"CommandLine":"true","CreateStdOutPipe":true}', op)
        info, _ = R.hcs_wait_for_operation_result_and_process_info(op, 60_000)
        R.hcs_close_operation(op)
        assert info.std_output is not None
        with open(info.std_output, "rb") as f:
            f.read()
        R.hcs_wait_for_process_exit(p, 60_000)
        R.hcs_close_process(p)
        op = R.hcs_create_operation()
        R.hcs_terminate_compute_system(h, op, None)
        R.hcs_wait_for_operation_result(op, 60_000)
        R.hcs_close_operation(op)
        R.hcs_close_compute_system(h)

    results: dict[str, Any] = {"backend": pyhcs.backend, "iterations": iterations * repeat}
    medians = _interleaved({"floor": floor, "lifecycle": lifecycle, "raw": raw}, iterations, repeat)
    results["floor_s"] = medians["floor"]
    results["lifecycle_s"] = medians["lifecycle"]
    results["raw_lifecycle_s"] = medians["raw"]
    results["lifecycle_ratio"] = results["lifecycle_s"] / results["floor_s"]
    results["raw_ratio"] = results["raw_lifecycle_s"] / results["floor_s"]
    results["layer_overhead_ratio"] = results["lifecycle_s"] / results["raw_lifecycle_s"]

    # The same lifecycle on a thread other than the main one, where the synchronous calls that
    # pyhcs._native._blocking hands to a helper on the main thread (so that Ctrl-C interrupts them) are
    # made directly: the difference is the price of that guarantee (bench/README.md).
    off_main: list[float] = []

    def off_main_thread() -> None:
        lifecycle(-1000)
        for i in range(iterations * repeat):
            start = time.perf_counter()
            lifecycle(100_000 + i)
            off_main.append(time.perf_counter() - start)

    thread = threading.Thread(target=off_main_thread)
    thread.start()
    thread.join()
    results["lifecycle_off_main_s"] = statistics.median(off_main)

    async def many(system: aio.ComputeSystem) -> float:
        start = time.perf_counter()
        docs = await asyncio.gather(*(system.properties() for _ in range(concurrent)))
        elapsed = time.perf_counter() - start
        assert len(docs) == concurrent
        return elapsed

    async def scenario() -> tuple[float, float]:
        async with await aio.ComputeSystem.create(f"{tag}-aio", CONFIG) as system:
            await system.start()
            await many(system)  # warm up
            concurrent_s = min([await many(system) for _ in range(repeat)])
            sync = system.sync

            def sequential() -> float:
                start = time.perf_counter()
                for _ in range(concurrent):
                    sync.properties()
                return time.perf_counter() - start

            sequential_s = min(sequential() for _ in range(repeat))  # best of, like the concurrent figure
            await system.terminate()
            return concurrent_s, sequential_s

    concurrent_s, sequential_s = asyncio.run(scenario())
    results["concurrent_ops"] = concurrent
    results["concurrent_s"] = concurrent_s
    results["concurrent_ops_per_s"] = concurrent / concurrent_s
    results["sequential_s"] = sequential_s
    results["concurrent_vs_sequential_ratio"] = concurrent_s / sequential_s
    return results


def _backends() -> list[str]:
    names = []
    for name in ("cython", "ctypes"):
        code = f"import os; os.environ['PYHCS_BACKEND']={name!r}; import pyhcs"
        ok = subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
        if ok:
            names.append(name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=10_000)
    parser.add_argument("--backend", choices=["cython", "ctypes"], help="only this backend")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(_measure(args.iterations, args.repeat, args.concurrent)))
        return 0

    results = []
    for backend in [args.backend] if args.backend else _backends():
        env = {**os.environ, "PYHCS_BACKEND": backend}
        cmd = [sys.executable, __file__, "--child", f"--iterations={args.iterations}",
               f"--repeat={args.repeat}", f"--concurrent={args.concurrent}"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        results.append(json.loads(out.stdout))

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'backend':8} {'floor':>9} {'pyhcs':>9} {'raw':>9} {'pyhcs/floor':>12} {'raw/floor':>10} "
          f"{'pyhcs/raw':>10} {'10k async':>10} {'async/seq':>10}")
    for r in results:
        print(
            f"{r['backend']:8} {r['floor_s'] * 1e3:8.3f}m {r['lifecycle_s'] * 1e3:8.3f}m "
            f"{r['raw_lifecycle_s'] * 1e3:8.3f}m {r['lifecycle_ratio']:11.2f}x {r['raw_ratio']:9.2f}x "
            f"{r['layer_overhead_ratio']:9.2f}x {r['concurrent_s']:9.3f}s {r['concurrent_vs_sequential_ratio']:9.2f}x"
        )
    print("(ms per lifecycle; target pyhcs/floor <= 2x; 10k async = 10,000 awaited operations at once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
