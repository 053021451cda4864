"""Benchmark: a compute system lifecycle with the emulator's isolation on (what is on by
default: namespaces, a root of its own and an init, docs/emulator.md "Isolation", and a
cgroup per system, "Limits and accounting") against its floors.

One lifecycle: create a container, start it, run ``true`` with stdout read to EOF, wait for
it, terminate, close, through the raw API with the service in its own process
(``HCSEMU_SERVICE=private``, the library's default). Floors, interleaved with it in the same
loop so a busy machine skews all alike:

- ``subprocess.run(["true"], stdout=PIPE)``: running the command at all;
- ``unshare --mount --uts --ipc --pid --net --fork true`` from the command line: the kernel's
  cost of creating the namespaces a contained system gets (the floor of isolation);
- the same lifecycle with the ``Isolation`` switch Off (the cgroup only), and with both it and
  ``Cgroups`` Off (a process group): what the namespaces and the cgroup cost;
- with ``--features``, the lifecycle with each isolation feature left out in turn
  (``IsolationWithout``): what each namespace (and the root's mounts) costs.

Each figure is the median of its samples. Run::

    PYTHONPATH=src python bench/bench_isolation.py [--json] [--scale 0.2] [--backend cython|ctypes]

Target: lifecycle <= 1.5x the unshare floor (``lifecycle.isolated_over_unshare``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIG = json.dumps(
    {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-bench", "Container": {"Memory": {"SizeInMB": 256}}}
)
UNSHARE = ["unshare", "--mount", "--uts", "--ipc", "--pid", "--net", "--fork", "true"]
TARGETS = {"lifecycle.isolated_over_unshare": 1.5}


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(UNSHARE, capture_output=True).returncode == 0


def worker(backend: str, lifecycles: int, features: list[str]) -> dict[str, Any]:
    from pyhcs._native import _backend

    B = _backend.load(backend)
    op = B.hcs_create_operation()
    tag = f"bench-iso-{os.getpid()}"
    params = json.dumps({"CommandLine": "true", "CreateStdOutPipe": True})
    counter = iter(range(10**9))

    def switches(**settings: Any) -> None:
        B.hcs_modify_service_settings(json.dumps({"PropertyType": "Emulator", "Settings": settings}))

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

    def isolated() -> None:
        lifecycle()

    def with_switches(**settings: Any) -> Any:
        def run() -> None:
            switches(**settings)
            try:
                lifecycle()
            finally:
                switches(Isolation="Auto", Cgroups="Auto", IsolationWithout=[])

        return run

    def floor() -> None:
        subprocess.run(["true"], stdout=subprocess.PIPE, check=True)

    def namespaces() -> None:
        subprocess.run(UNSHARE, stdout=subprocess.PIPE, check=True)

    runs: list[tuple[str, Any]] = [("isolated", isolated), ("cgroup_only", with_switches(Isolation="Off")),
                                   ("plain", with_switches(Isolation="Off", Cgroups="Off")), ("subprocess", floor)]
    if unshare_works():
        runs.append(("unshare", namespaces))
    for feature in features:
        runs.append((f"without_{feature}", with_switches(IsolationWithout=[feature])))
    for _ in range(5):
        for _, fn in runs:
            fn()
    samples: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(lifecycles):
        for name, fn in runs:
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e6)
    doc = json.loads(B.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorIsolation"]})))
    B.hcs_close_operation(op)
    out: dict[str, Any] = {f"{name}_us": statistics.median(v) for name, v in samples.items()}
    out["cgroup"] = doc["Properties"][0]["Cgroup"]
    out["namespaces"] = doc["Properties"][0]["Available"]
    out["user_namespace"] = doc["Properties"][0].get("UserNamespace", False)
    return out


FEATURES = ["Mount", "Uts", "Ipc", "Pid", "Network"]


def measure(backend: str, scale: float, features: bool = False) -> dict[str, Any]:
    """Runs the worker in a fresh interpreter in private mode; figures, ratios and targets."""
    lifecycles = max(10, int(200 * scale))
    env = {**os.environ, "HCSEMU_SERVICE": "private"}
    env.pop("HCSEMU_SETTINGS", None)  # the defaults are what is measured
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", backend, "--lifecycles", str(lifecycles),
         "--features", ",".join(FEATURES if features else [])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures: dict[str, Any] = json.loads(out)
    ratios: dict[str, float] = {
        "lifecycle.isolated_over_subprocess": figures["isolated_us"] / figures["subprocess_us"],
        "lifecycle.isolated_over_plain": figures["isolated_us"] / figures["plain_us"],
        "lifecycle.isolated_over_cgroup_only": figures["isolated_us"] / figures["cgroup_only_us"],
    }
    if "unshare_us" in figures:
        ratios["lifecycle.isolated_over_unshare"] = figures["isolated_us"] / figures["unshare_us"]
    targets = {
        k: {"limit": v, "met": ratios[k] <= v if k in ratios else None, "value": ratios.get(k)}
        for k, v in TARGETS.items()
    }
    return {"backend": backend, "figures": figures, "ratios": ratios, "targets": targets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--backend", default=os.environ.get("PYHCS_BACKEND", "cython"))
    ap.add_argument("--worker")
    ap.add_argument("--lifecycles", type=int, default=0)
    ap.add_argument("--features", nargs="?", const=",".join(FEATURES), default=None,
                    help="also time the lifecycle without each isolation feature")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.lifecycles, [f for f in (args.features or "").split(",") if f])))
        return
    report = measure(args.backend, args.scale, features=args.features is not None)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    f = report["figures"]
    cg = f["cgroup"]
    print(f"backend {args.backend}; cgroup v{cg['Version']}: {', '.join(cg['Controllers']) or 'none'}; "
          f"namespaces: {', '.join(f['namespaces']) or 'none'}" + (" (user namespace)" if f["user_namespace"] else ""))
    rows = [
        ("lifecycle, isolation on (default)", f["isolated_us"]),
        ("lifecycle, Isolation Off (cgroup only)", f["cgroup_only_us"]),
        ("lifecycle, Isolation and Cgroups Off", f["plain_us"]),
        ("subprocess.run(true) (floor)", f["subprocess_us"]),
    ]
    if "unshare_us" in f:
        rows.append(("unshare of the namespaces (floor)", f["unshare_us"]))
    rows += [(f"lifecycle without {k[8:-3]}", v) for k, v in f.items() if k.startswith("without_")]
    for name, us in rows:
        print(f"{name:40} {us / 1000:8.2f}ms")
    for k, v in report["ratios"].items():
        t = TARGETS.get(k)
        print(f"  {k:40} {v:6.2f}" + (f"  (target <= {t}: {'met' if v <= t else 'MISSED'})" if t else ""))


if __name__ == "__main__":
    main()
