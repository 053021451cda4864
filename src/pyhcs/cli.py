"""The ``pyhcs`` command: ``demo``, ``info``, ``run`` and ``list``.

``pyhcs demo`` shows the main job end to end on whatever library pyhcs loads (the emulator
off Windows): create a compute system, run a process, read its output and exit code, query
statistics, tear down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from . import __version__, errors
from . import _backend as B

WAIT_MS = 60_000


def _container(owner: str) -> str:
    return json.dumps(
        {
            "SchemaVersion": {"Major": 2, "Minor": 1},
            "Owner": owner,
            "ShouldTerminateOnLastHandleClosed": True,
            "Container": {},
        }
    )


@contextlib.contextmanager
def _system(owner: str) -> Iterator[tuple[int, int, str]]:
    system_id = f"{owner}-{uuid.uuid4().hex[:8]}"
    op = B.hcs_create_operation()
    system = B.hcs_create_compute_system(system_id, _container(owner), op)
    try:
        B.hcs_wait_for_operation_result(op, WAIT_MS)
        B.hcs_start_compute_system(system, op)
        B.hcs_wait_for_operation_result(op, WAIT_MS)
        yield system, op, system_id
    finally:
        with contextlib.suppress(errors.HcsError):
            B.hcs_terminate_compute_system(system, op)
            B.hcs_wait_for_operation_result(op, WAIT_MS)
        B.hcs_close_operation(op)
        B.hcs_close_compute_system(system)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _run(system: int, op: int, args: dict[str, Any]) -> tuple[int, bytes, bytes]:
    process = B.hcs_create_process(system, json.dumps(args), op)
    try:
        info, _ = B.hcs_wait_for_operation_result_and_process_info(op, WAIT_MS)
        out = _read_all(info.std_output) if info.std_output is not None else b""
        err = _read_all(info.std_error) if info.std_error is not None else b""
        status = json.loads(B.hcs_wait_for_process_exit(process, WAIT_MS) or "{}")
        for fd in (info.std_input, info.std_output, info.std_error):
            if fd is not None:
                B.close_handle(fd)
        return int(status.get("ExitCode", 255)), out, err
    finally:
        B.hcs_close_process(process)


def cmd_demo(_: argparse.Namespace) -> int:
    print(f"pyhcs {__version__} on the {B.backend} backend, library {B.library_path()}")
    t0 = time.perf_counter()
    with _system("pyhcs-demo") as (system, op, system_id):
        print(f"created and started compute system {system_id}")
        command = "echo hello from $(hostname) in a compute system; uname -sr; exit 3"
        code, out, _err = _run(system, op, {"CommandLine": command, "CreateStdOutPipe": True, "CreateStdErrPipe": True})
        print("process output:\n  " + out.decode(errors="replace").strip().replace("\n", "\n  "))
        print(f"process exit code: {code}")
        B.hcs_get_compute_system_properties(system, op, json.dumps({"PropertyTypes": ["Statistics"]}))
        props = json.loads(B.hcs_wait_for_operation_result(op, WAIT_MS) or "{}")
        stats = props.get("Statistics", {})
        cpu_ms = stats.get("Processor", {}).get("TotalRuntime100ns", 0) / 10_000
        mem = stats.get("Memory", {}).get("MemoryUsageCommitBytes", 0)
        print(f"statistics: state {props.get('State')}, CPU {cpu_ms:.1f} ms, commit {mem / 2**20:.1f} MiB")
    print(f"terminated and closed ({(time.perf_counter() - t0) * 1000:.0f} ms in all)")
    return 0 if code == 3 else 1


def cmd_info(_: argparse.Namespace) -> int:
    print(json.dumps({
        "version": __version__,
        "backend": B.backend,
        "backend_features": sorted(B.backend_features),
        "library": B.library_path(),
        "service": json.loads(B.hcs_get_service_properties(json.dumps({"PropertyTypes": ["Basic", "ProcessorTopology"]}))),
    }, indent=2))
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    if not ns.command:
        print("pyhcs run: give a command after --", file=sys.stderr)
        return 2
    with _system("pyhcs-run") as (system, op, _):
        args: dict[str, Any] = {"CommandArgs": ns.command, "CreateStdOutPipe": True, "CreateStdErrPipe": True}
        if ns.workdir:
            args["WorkingDirectory"] = ns.workdir
        if ns.env:
            args["Environment"] = dict(e.split("=", 1) for e in ns.env)
        code, out, err = _run(system, op, args)
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return code


def cmd_list(ns: argparse.Namespace) -> int:
    query = {"Owners": [ns.owner]} if ns.owner else None
    op = B.hcs_create_operation()
    try:
        B.hcs_enumerate_compute_systems(json.dumps(query) if query else None, op)
        systems = json.loads(B.hcs_wait_for_operation_result(op, WAIT_MS) or "[]")
    finally:
        B.hcs_close_operation(op)
    for s in systems:
        print(f"{s.get('Id')}\t{s.get('SystemType')}\t{s.get('State')}\t{s.get('Owner', '')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyhcs", description="The Windows Host Compute System API from Python.")
    parser.add_argument("--version", action="version", version=f"pyhcs {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="create a compute system, run a process, show output and statistics").set_defaults(fn=cmd_demo)
    sub.add_parser("info", help="backend, library and service properties").set_defaults(fn=cmd_info)
    run = sub.add_parser("run", help="run a command in a new container and relay its output and exit code")
    run.add_argument("--workdir")
    run.add_argument("--env", action="append", metavar="NAME=VALUE")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(fn=cmd_run)
    ls = sub.add_parser("list", help="compute systems the service knows (on the emulator: of this process)")
    ls.add_argument("--owner")
    ls.set_defaults(fn=cmd_list)
    from .trace import add_trace_command  # `pyhcs trace show|replay` (docs/tracing.md)

    add_trace_command(sub)
    ns = parser.parse_args(argv)
    if getattr(ns, "command", None) and ns.command[:1] == ["--"]:
        ns.command = ns.command[1:]
    try:
        result: int = ns.fn(ns)
        return result
    except errors.HcsError as exc:
        print(f"pyhcs: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
