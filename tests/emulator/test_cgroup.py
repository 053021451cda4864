"""A cgroup per compute system on the emulator (docs/emulator.md, "Limits and accounting"):
memory and processor limits, per-system statistics, a pause the processes cannot see, a
terminate nothing escapes, Modify applied live, and the fallback (the ``Cgroups`` switch Off,
or a caller without cgroup access) reported instead of pretended.

Every test runs on both backends through the raw API, in the mode ``cgroup`` (the default
switches; skipped where this host gives the service no cgroup), ``v2`` (``Cgroups: V2``: the
cgroup2 hierarchy, which on a hybrid host has no controllers but the core kill, freezer and
CPU time; a test needing a controller it lacks is skipped) and, where the behaviour has a
fallback, in the mode ``fallback`` (``Cgroups: Off``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pyhcs
from pyhcs import errors

from conftest import ON_EMULATOR
from pyutil import python_mappings
from rawutil import close_info, new_id, set_switches, wait

pytestmark = pytest.mark.skipif(not ON_EMULATOR, reason="cgroups are how the emulator contains a system")

STATUS_NO_MEMORY = 0xC0000017
FEATURES = {"memory", "cpu", "cpuacct", "pids", "freezer", "io"}


def host_cgroup(hcs: ModuleType) -> dict[str, Any]:
    doc = json.loads(hcs.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorIsolation"]})))
    cgroup: dict[str, Any] = doc["Properties"][0]["Cgroup"]
    return cgroup


@pytest.fixture(autouse=True)
def _isolation_off(hcs: ModuleType) -> None:
    # Here the cgroup alone contains a system: with isolation a PID namespace would end its
    # processes at a terminate by itself, and the pids the tests read from a system's output
    # ($$) would be the namespace's. Isolated and limited at once: the memory test below.
    set_switches(hcs, Isolation="Off")


@pytest.fixture(params=["cgroup", "v2", "fallback"])
def mode(request: pytest.FixtureRequest, hcs: ModuleType) -> str:
    name: str = request.param
    if name == "fallback":
        set_switches(hcs, Cgroups="Off")
        return name
    if name == "v2":
        set_switches(hcs, Cgroups="V2")
    if not host_cgroup(hcs)["Controllers"]:
        pytest.skip(f"this host gives the emulator no cgroup: {host_cgroup(hcs)['Fallbacks']}")
    return name


def needs(hcs: ModuleType, *features: str) -> None:
    missing = set(features) - set(host_cgroup(hcs)["Controllers"])
    if missing:
        pytest.skip(f"no {', '.join(sorted(missing))} controller for the emulator here")


def config(kind: str = "Container", **body: Any) -> str:
    return json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests", kind: body})


class System:
    """A started compute system driven through the raw API; terminated and closed on exit."""

    def __init__(self, hcs: ModuleType, cfg: str) -> None:
        self.hcs = hcs
        self.id = new_id("cg")
        self.op = hcs.hcs_create_operation()
        self.handle = hcs.hcs_create_compute_system(self.id, cfg, self.op)
        self.procs: list[tuple[int, Any]] = []
        wait(hcs, self.op)
        hcs.hcs_start_compute_system(self.handle, self.op)
        wait(hcs, self.op)

    def props(self, *types: str) -> dict[str, Any]:
        self.hcs.hcs_get_compute_system_properties(self.handle, self.op, json.dumps({"PropertyTypes": list(types)}))
        doc: dict[str, Any] = json.loads(wait(self.hcs, self.op) or "{}")
        return doc

    def cgroup(self) -> dict[str, Any]:
        cg: dict[str, Any] = self.props("Isolation")["Isolation"]["Cgroup"]
        return cg

    def stats(self) -> dict[str, Any]:
        st: dict[str, Any] = self.props("Statistics")["Statistics"]
        return st

    def start(self, argv: list[str], *, stdout: bool = False) -> tuple[int, Any]:
        # A Container's CommandLine is split by the Windows rules: list2cmdline quotes by them.
        doc: dict[str, Any] = {"CommandLine": subprocess.list2cmdline(argv), "CreateStdOutPipe": stdout}
        p = self.hcs.hcs_create_process(self.handle, json.dumps(doc), self.op)
        info, _ = self.hcs.hcs_wait_for_operation_result_and_process_info(self.op, 10_000)
        self.procs.append((p, info))
        return p, info

    def exit_code(self, process: int, timeout_ms: int = 30_000) -> int:
        self.hcs.hcs_wait_for_process_exit(process, timeout_ms)
        self.hcs.hcs_get_process_properties(process, self.op, None)
        doc = json.loads(wait(self.hcs, self.op) or "{}")
        assert doc["Exited"] is True
        code: int = doc["ExitCode"]
        return code

    def modify(self, path: str, settings: Any) -> None:
        request = {"ResourcePath": path, "RequestType": "Update", "Settings": settings}
        self.hcs.hcs_modify_compute_system(self.handle, self.op, json.dumps(request))
        wait(self.hcs, self.op)

    def pause(self) -> None:
        self.hcs.hcs_pause_compute_system(self.handle, self.op, None)
        wait(self.hcs, self.op)

    def resume(self) -> None:
        self.hcs.hcs_resume_compute_system(self.handle, self.op, None)
        wait(self.hcs, self.op)

    def terminate(self) -> None:
        self.hcs.hcs_terminate_compute_system(self.handle, self.op, None)
        wait(self.hcs, self.op)

    def close(self) -> None:
        try:
            self.terminate()
        except errors.HcsError:
            pass
        for p, info in self.procs:
            self.hcs.hcs_close_process(p)
            close_info(info)
        self.hcs.hcs_close_compute_system(self.handle)
        self.hcs.hcs_close_operation(self.op)


def system(hcs: ModuleType, cfg: str) -> Iterator[System]:
    s = System(hcs, cfg)
    try:
        yield s
    finally:
        s.close()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def read_line(fd: int, timeout: float = 10.0) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no line within {timeout}s (got {out!r})"
        chunk = os.read(fd, 1)
        assert chunk, f"end of output (got {out!r})"
        out += chunk
    return out.decode()


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether the pid is gone (or a zombie awaiting its reaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def cgroup_dirs(cg: dict[str, Any]) -> list[str]:
    paths = cg.get("Paths") or ({"all": cg["Path"]} if cg.get("Path") else {})
    return sorted(set(paths.values()))


ALLOCATE = """
    import sys
    data = b"\\x01" * ({mb} << 20)  # written, so every page is really used
    print(len(data) >> 20, flush=True)
"""


# ----------------------------------------------------------------------------- what is in effect


def test_isolation_reports_the_cgroup_or_the_fallback(hcs: ModuleType, mode: str) -> None:
    for s in system(hcs, config(Memory={"SizeInMB": 256}, Processor={"Count": 1})):
        cg = s.cgroup()
        assert set(cg) >= {"Version", "Controllers", "Fallbacks", "Kill"}
        if mode == "fallback":
            assert cg["Version"] == 0 and cg["Controllers"] == []
            assert set(cg["Fallbacks"]) == FEATURES
            assert all("Cgroups switch is Off" in why for why in cg["Fallbacks"].values())
            assert cg["Kill"] == "process group and environment marker"
        else:
            assert cg["Version"] in (1, 2)
            assert set(cg["Controllers"]) | set(cg["Fallbacks"]) == FEATURES
            assert not set(cg["Controllers"]) & set(cg["Fallbacks"])
            for d in cgroup_dirs(cg):
                assert os.path.isdir(d) and d.endswith(s.props()["RuntimeId"])
            # only what is enforced is reported as a limit
            if "memory" in cg["Controllers"]:
                assert cg["Limits"]["MemoryBytes"] == 256 << 20
            else:
                assert "MemoryBytes" not in cg["Limits"] and "memory" in cg["Fallbacks"]
            if "pids" in cg["Controllers"]:
                assert cg["Limits"]["PidsMax"] == 16384


def test_service_reports_what_a_new_system_gets(hcs: ModuleType, mode: str) -> None:
    cg = host_cgroup(hcs)
    assert (cg["Version"] == 0) == (mode == "fallback")
    if mode == "fallback":
        assert set(cg["Fallbacks"]) == FEATURES


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("isolation", ["Off", "Auto"])
def test_memory_limit_stops_a_process_and_reports_out_of_memory(hcs: ModuleType, mode: str, isolation: str) -> None:
    if mode != "fallback":
        needs(hcs, "memory")
    set_switches(hcs, Isolation=isolation)
    for s in system(hcs, config(Memory={"SizeInMB": 64}, MappedDirectories=python_mappings())):
        big, _ = s.start(python(ALLOCATE.format(mb=160)))
        small, _ = s.start(python(ALLOCATE.format(mb=8)))
        assert s.exit_code(small) == 0
        if mode != "fallback":
            # A Windows guest (a Container) reports the out-of-memory status, not a signal.
            assert s.exit_code(big) == STATUS_NO_MEMORY
            peak = s.stats()["Memory"]["MemoryUsageCommitPeakBytes"]
            assert 32 << 20 < peak <= 64 << 20
        else:
            assert s.exit_code(big) == 0  # no limit: the fallback says so in Isolation


def test_out_of_memory_exit_code_is_a_switch_and_linux_guests_get_sigkill(hcs: ModuleType) -> None:
    needs(hcs, "memory")
    set_switches(hcs, OutOfMemoryExitCode=3)
    for s in system(hcs, config(Memory={"SizeInMB": 48})):
        p, _ = s.start(python(ALLOCATE.format(mb=160)))
        assert s.exit_code(p) == 3
    vm = config("VirtualMachine", ComputeTopology={"Memory": {"SizeInMB": 48}})
    for s in system(hcs, vm):
        doc = {"CommandArgs": python(ALLOCATE.format(mb=160))}
        p = hcs.hcs_create_process(s.handle, json.dumps(doc), s.op)
        info, _ = hcs.hcs_wait_for_operation_result_and_process_info(s.op, 10_000)
        s.procs.append((p, info))
        assert s.exit_code(p) == 128 + 9  # what a Linux guest's own OOM kill gives


def test_modify_changes_the_memory_limit_live(hcs: ModuleType) -> None:
    needs(hcs, "memory")
    for s in system(hcs, config(Memory={"SizeInMB": 256})):
        assert s.cgroup()["Limits"]["MemoryBytes"] == 256 << 20
        ok, _ = s.start(python(ALLOCATE.format(mb=100)))
        assert s.exit_code(ok) == 0
        s.modify("Container/Memory/SizeInMB", 64)
        cg = s.cgroup()
        assert cg["Limits"]["MemoryBytes"] == 64 << 20
        d = cg["Paths"]["memory"] if cg["Version"] == 1 else cg["Path"]
        limit_file = "memory.limit_in_bytes" if cg["Version"] == 1 else "memory.max"
        assert int(Path(d, limit_file).read_text()) == 64 << 20
        killed, _ = s.start(python(ALLOCATE.format(mb=100)))
        assert s.exit_code(killed) == STATUS_NO_MEMORY
        assert s.props("EmulatorConfiguration")["EmulatorConfiguration"]["Container"]["Memory"]["SizeInMB"] == 64
    vm = config("VirtualMachine", ComputeTopology={"Memory": {"SizeInMB": 512}, "Processor": {"Count": 1}})
    for s in system(hcs, vm):
        s.modify("VirtualMachine/ComputeTopology/Memory/SizeInMB", 128)
        assert s.cgroup()["Limits"]["MemoryBytes"] == 128 << 20


# ----------------------------------------------------------------------------- processors

BUSY = """
    import time
    cpu0 = time.process_time()  # the interpreter's start-up is not the loop's
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        pass
    print(time.process_time() - cpu0, flush=True)
"""


def busy_cpu(s: System, seconds: float) -> tuple[int, Any]:
    return s.start(python(BUSY.format(seconds=seconds)), stdout=True)


def test_cpu_limit_gives_about_the_share(hcs: ModuleType) -> None:
    needs(hcs, "cpu")
    cpus = os.cpu_count() or 1
    share = 0.05  # of one processor (small: the unlimited loop shares a busy machine); Maximum
    # is hundredths of a percent of the whole host
    limited_cfg = config(Processor={"Maximum": int(share * 10000 / cpus)})
    for limited in system(hcs, limited_cfg):
        for free in system(hcs, config()):
            assert limited.cgroup()["Limits"]["CpuQuotaUs"] == pytest.approx(share * 100_000, rel=0.01)
            lp, linfo = busy_cpu(limited, 2.0)
            fp, finfo = busy_cpu(free, 2.0)
            limited_cpu = float(read_line(linfo.std_output, 30))
            free_cpu = float(read_line(finfo.std_output, 30))
            assert limited.exit_code(lp) == 0 and free.exit_code(fp) == 0
            # Generous bounds: the machine is shared, so the unlimited loop may get less than
            # a whole processor, but the limited one can never get much more than its share.
            assert 2.0 * share * 0.3 <= limited_cpu <= 2.0 * share * 1.5 + 0.02, limited_cpu
            assert limited_cpu / free_cpu < 0.6, (limited_cpu, free_cpu)
            # the statistics see the same
            assert limited.stats()["Processor"]["TotalRuntime100ns"] < free.stats()["Processor"]["TotalRuntime100ns"]


def test_modify_changes_processor_limits_live(hcs: ModuleType) -> None:
    needs(hcs, "cpu")
    cpus = os.cpu_count() or 1
    for s in system(hcs, config(Processor={"Count": 1})):
        before = s.cgroup()["Limits"]
        assert before["CpuQuotaUs"] == (100_000 if cpus > 1 else 0)  # one processor of the host's
        # Maximum 1000: a tenth of the whole host, i.e. cpus tenths of one processor
        s.modify("Container/Processor", {"Maximum": 1000, "Weight": 400})
        after = s.cgroup()["Limits"]
        assert after["CpuWeight"] == 400
        assert after["CpuQuotaUs"] == 10_000 * cpus
    vm = config("VirtualMachine", ComputeTopology={"Processor": {"Count": 2}})
    for s in system(hcs, vm):
        s.modify("VirtualMachine/ComputeTopology/Processor/Limits", {"Limit": 25_000, "Weight": 50})
        limits = s.cgroup()["Limits"]
        assert limits["CpuQuotaUs"] == 50_000 and limits["CpuWeight"] == 50


# ----------------------------------------------------------------------------- pause

WATCH = """
    import signal, time
    def cont(signum, frame):
        print("SIGCONT", flush=True)
    signal.signal(signal.SIGCONT, cont)
    print("ready", flush=True)
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last > 0.3:
            print(f"gap {{now - last:.2f}}", flush=True)
        last = now
        time.sleep(0.01)
"""


def test_pause_freezes_without_a_signal_and_resume_continues(hcs: ModuleType, mode: str) -> None:
    if mode != "fallback":
        needs(hcs, "freezer")
    for s in system(hcs, config()):
        _p, info = s.start(python(WATCH), stdout=True)
        assert read_line(info.std_output) == "ready\n"
        _busy, _ = s.start(python(BUSY.format(seconds=30)))
        time.sleep(0.2)
        s.pause()
        cpu_paused = s.stats()["Processor"]["TotalRuntime100ns"]
        time.sleep(0.6)
        assert s.stats()["Processor"]["TotalRuntime100ns"] - cpu_paused < 200_000  # < 20 ms: frozen
        s.resume()
        lines = [read_line(info.std_output), read_line(info.std_output) if mode == "fallback" else ""]
        seen = "".join(lines)
        assert "gap" in seen  # it was stopped for the pause and runs again
        if mode != "fallback":
            # the freezer is invisible: no SIGCONT (nor SIGSTOP) ever reached the process
            time.sleep(0.2)
            ready, _, _ = select.select([info.std_output], [], [], 0)
            assert not ready or "SIGCONT" not in read_line(info.std_output)
            assert "SIGCONT" not in seen
        else:
            assert "SIGCONT" in seen  # the fallback is SIGSTOP/SIGCONT, and a process can see it
        # busy again: 50 ms more CPU time (the kernel counts it in ticks, and a loaded machine
        # gives the loop only a share of a core, so this is polled, not timed)
        deadline = time.monotonic() + 20
        while s.stats()["Processor"]["TotalRuntime100ns"] <= cpu_paused + 500_000:
            assert time.monotonic() < deadline, "the busy process did not run again after resume"
            time.sleep(0.05)


def test_a_process_of_a_paused_system_can_be_terminated(hcs: ModuleType, mode: str) -> None:
    # TerminateProcess works on a suspended process on Windows; a v1-frozen task acts on
    # SIGKILL only once thawed, so the emulator lets it out of the frozen cgroup to die.
    if mode != "fallback":
        needs(hcs, "freezer")
    for s in system(hcs, config()):
        victim, _ = s.start(["sleep", "300"])
        other, _ = s.start(["sleep", "300"])
        s.pause()
        hcs.hcs_terminate_process(victim, s.op, None)
        wait(hcs, s.op)
        assert s.exit_code(victim, 10_000) == 128 + 9
        s.resume()
        s.hcs.hcs_get_process_properties(other, s.op, None)
        assert json.loads(wait(hcs, s.op) or "{}")["Exited"] is False  # the rest was only paused


# ----------------------------------------------------------------------------- terminate

ESCAPE = "setsid -f sh -c 'echo $$; exec sleep 300'; {clear}setsid -f sh -c 'echo $$; exec sleep 300'; exec sleep 300"


def test_terminate_leaves_no_process_and_no_cgroup(hcs: ModuleType, mode: str) -> None:
    if shutil.which("setsid") is None:
        pytest.skip("no setsid(1)")
    # The second grandchild clears its environment: only the cgroup can still find it.
    clear = "env -i /usr/bin/" if mode != "fallback" else ""
    for s in system(hcs, config()):
        _p, info = s.start(["sh", "-c", ESCAPE.format(clear=clear)], stdout=True)
        grandchildren = [int(read_line(info.std_output)), int(read_line(info.std_output))]
        for pid in grandchildren:
            assert not gone(pid, 0.1)
            assert os.getsid(pid) == pid  # each left the system's session and process group
        dirs = cgroup_dirs(s.cgroup())
        assert bool(dirs) == (mode != "fallback")
        s.terminate()
        for pid in grandchildren:
            assert gone(pid), f"process {pid} outlived its system"
        for d in dirs:
            assert not os.path.exists(d), f"{d} outlived its system"
        # what was in effect is still reported after the stop
        assert cgroup_dirs(s.cgroup()) == dirs


# ----------------------------------------------------------------------------- statistics


def test_statistics_are_per_system(hcs: ModuleType, mode: str) -> None:
    for worker in system(hcs, config()):
        for idle in system(hcs, config()):
            hold = """
                import time
                data = b"\\x01" * (96 << 20)
                while time.process_time() < 0.8:  # CPU time, which a loaded machine hands out slowly
                    pass
                print("done", flush=True)
            """
            wp, winfo = worker.start(python(hold), stdout=True)
            ip, _ = idle.start(["sleep", "1"])
            assert read_line(winfo.std_output, 30) == "done\n"
            assert worker.exit_code(wp) == 0 and idle.exit_code(ip) == 0
            w, i = worker.stats(), idle.stats()
            assert w["Processor"]["TotalRuntime100ns"] > i["Processor"]["TotalRuntime100ns"] + 3_000_000
            if "memory" in worker.cgroup()["Controllers"]:
                # the peak of the system's memory outlives the process that made it
                assert w["Memory"]["MemoryUsageCommitPeakBytes"] > 90 << 20
                assert i["Memory"]["MemoryUsageCommitPeakBytes"] < 32 << 20


# ----------------------------------------------------------------------------- no privileges

UNPRIVILEGED = """
import json, os, subprocess, sys
from pyhcs._native import _backend as B
op = B.hcs_create_operation()
cfg = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {"Memory": {"SizeInMB": 64}}}
h = B.hcs_create_compute_system("unpriv-%d" % os.getpid(), json.dumps(cfg), op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_start_compute_system(h, op)
B.hcs_wait_for_operation_result(op, 10000)
doc = {"CommandLine": subprocess.list2cmdline(["sh", "-c", "setsid -f sleep 300; exec sleep 300"])}
p = B.hcs_create_process(h, json.dumps(doc), op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_pause_compute_system(h, op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_resume_compute_system(h, op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_get_compute_system_properties(h, op, json.dumps({"PropertyTypes": ["Isolation"]}))
iso = json.loads(B.hcs_wait_for_operation_result(op, 10000))["Isolation"]
B.hcs_terminate_compute_system(h, op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_close_process(p)
B.hcs_close_compute_system(h)
B.hcs_close_operation(op)
print(json.dumps(iso))
"""


def test_unprivileged_caller_falls_back_with_one_warning() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to drop to nobody with setpriv)")
    interpreter = "/usr/bin/python3"
    if not os.access(interpreter, os.X_OK):
        pytest.skip("no system python3 that nobody can run")
    src = Path(pyhcs.__file__).resolve().parents[1]  # the pyhcs under test (a worktree's src, or site-packages)
    site = [p for p in sys.path if p.endswith("site-packages") and os.access(p, os.R_OK)]
    with tempfile.TemporaryDirectory() as home:  # pytest's tmp_path is below a folder only root may enter
        os.chmod(home, 0o777)
        run_as_nobody(interpreter, src, site, Path(home))


def run_as_nobody(interpreter: str, src: Path, site: list[str], tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(src), *site]),
           "HCSEMU_SERVICE": "private", "PYHCS_BACKEND": "ctypes"}
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", interpreter, "-c",
                            "import pyhcs._native._backend as B; B.library_path()"], env=env, cwd=tmp_path,
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"pyhcs cannot be imported as nobody here: {probe.stderr.decode()[-300:]}")
    run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", interpreter, "-c",
                          UNPRIVILEGED], env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    cg = json.loads(run.stdout)["Cgroup"]
    assert cg["Version"] == 0 and cg["Controllers"] == [] and set(cg["Fallbacks"]) == FEATURES
    assert all("not writable" in why or "not found" in why or "not mounted" in why for why in cg["Fallbacks"].values())
    warnings = [line for line in run.stderr.decode().splitlines() if "hcsemu: warning: no cgroup" in line]
    assert len(warnings) == 1, run.stderr.decode()


# ----------------------------------------------------------------------------- pyhcs info


@pytest.mark.parametrize("switch", ["Auto", "Off"])
def test_pyhcs_info_says_what_is_in_effect(switch: str) -> None:
    env = dict(os.environ, HCSEMU_SERVICE="private", HCSEMU_SETTINGS=json.dumps({"Cgroups": switch}),
               PYTHONPATH=str(Path(pyhcs.__file__).resolve().parents[1]))
    run = subprocess.run([sys.executable, "-m", "pyhcs", "info", "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    cg = json.loads(run.stdout)["Isolation"]["Cgroup"]
    text = subprocess.run([sys.executable, "-m", "pyhcs", "info"], env=env, capture_output=True, text=True,
                          timeout=60).stdout
    line = next(x for x in text.splitlines() if x.startswith("cgroups:"))
    assert f"v{cg['Version']} " in line
    if switch == "Off":
        assert cg["Version"] == 0 and "falling back: cpu, cpuacct, freezer, io, memory, pids" in line
    else:
        assert all(c in line for c in cg["Controllers"])
