"""Benchmark: cost of a lifecycle and of a property query with N compute systems alive, and
the memory of an idle system with one running process.

For N = 10, 100 and 1,000 (in that order, the population grows), N systems are kept alive,
each with a sleeping process (``sleep 3600``), through the Pythonic layer; among them, full
lifecycles (create, start, run ``true`` with stdout captured, terminate, close) and
``properties()`` queries on the live systems are timed. A flat cost from 10 to 1,000 means no
O(n) scan on a hot path (the emulator's handle tables, process tracking and /proc statistics,
the binding's registries and dispatcher).

Each size is measured on the way up and again on the way down (10, 100, 1000, 100, 10) and
keeps its better median. Memory: the resident set of this process, plus that of the
emulator's service process when it runs out of process (``HCSEMU_SERVICE=private``), before
and after the population grew from 10 to the largest N, per added system. The child processes (the sleeping ones) are not
counted: they are the guest's.

    PYTHONPATH=src python bench/bench_scale.py [--json] [--sizes 10,100,1000]

``bench/run.py`` runs it once per service mode and reports the ratios; see bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

CONFIG = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-bench-scale", "Container": {}}
SIZES = (10, 100, 1000)


def _rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _service_pids() -> list[int]:
    """The emulator's service processes that are children of this one (private mode)."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm.startswith("hcsemud"):
            pids.append(int(entry))
    return pids


def _memory_kib() -> int:
    """This process and its service process, if any (never the guests' processes)."""
    return _rss_kib() + sum(_rss_kib(pid) for pid in _service_pids())


def measure(sizes: tuple[int, ...] = SIZES, lifecycles: int = 40, queries: int = 2000) -> dict[str, Any]:
    from pyhcs import ComputeSystem

    tag = f"scale-{os.getpid()}"
    alive: list[tuple[Any, Any]] = []
    out: dict[str, Any] = {"sizes": list(sizes), "mode": os.environ.get("HCSEMU_SERVICE", "private")}
    counter = [0]

    def add_system() -> None:
        system = ComputeSystem.create(f"{tag}-idle-{len(alive)}", CONFIG)
        system.start()
        proc = system.create_process(["sleep", "3600"])
        alive.append((system, proc))

    def lifecycle() -> None:
        counter[0] += 1
        with ComputeSystem.create(f"{tag}-lc-{counter[0]}", CONFIG) as system:
            system.start()
            with system.create_process(["true"], stdout=True) as proc:
                proc.communicate()
            system.terminate()

    def drop_system() -> None:
        system, proc = alive.pop()
        proc.close()
        system.terminate()
        system.close()

    rng = random.Random(1)
    memory_start: tuple[int, int] | None = None
    # Up and down again (10, 100, 1000, 100, 10): each size is measured twice, at different
    # moments, and keeps its better median, so a machine whose load drifts during the run
    # does not pass for a cost that grows with N.
    order = list(sizes) + list(sizes[-2::-1])
    try:
        for n in order:
            while len(alive) < n:
                add_system()
            while len(alive) > n:
                drop_system()
            gc.collect()
            if memory_start is None:
                memory_start = (len(alive), _memory_kib())
            if n == sizes[-1] and "memory_per_system_kib" not in out and len(alive) > memory_start[0]:
                added = len(alive) - memory_start[0]
                out["memory_per_system_kib"] = (_memory_kib() - memory_start[1]) / added
                out["memory_systems_added"] = added
            lifecycle()  # warm up at this size
            samples = []
            for _ in range(lifecycles):
                start = time.perf_counter()
                lifecycle()
                samples.append(time.perf_counter() - start)
            key = f"lifecycle_s.{n}"
            out[key] = min(out.get(key, float("inf")), statistics.median(samples))
            best = float("inf")
            for _ in range(5):
                picks = [alive[rng.randrange(len(alive))][0] for _ in range(queries // 5)]
                start = time.perf_counter()
                for system in picks:
                    system.properties()
                best = min(best, (time.perf_counter() - start) / len(picks))
            key = f"properties_s.{n}"
            out[key] = min(out.get(key, float("inf")), best)
    finally:
        for system, proc in alive:
            proc.close()
            system.terminate()
            system.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="the numbers of systems alive")
    parser.add_argument("--lifecycles", type=int, default=40, help="lifecycles timed at each size")
    args = parser.parse_args()
    os.environ.setdefault("HCSEMU_SERVICE", "direct")
    sizes = tuple(int(s) for s in args.sizes.split(","))
    result = measure(sizes, args.lifecycles)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"service: {result['mode']}")
    for n in sizes:
        print(f"N={n:5}: lifecycle {result[f'lifecycle_s.{n}'] * 1e3:7.3f} ms   "
              f"properties {result[f'properties_s.{n}'] * 1e6:7.2f} us")  # fmt: skip
    if "memory_per_system_kib" in result:
        print(f"memory per idle system with one process: {result['memory_per_system_kib']:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
