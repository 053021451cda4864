"""Isolation of compute systems on the emulator (docs/emulator.md, "Isolation").

With the ``Isolation`` switch at ``"Auto"`` a Container gets its own mount, UTS, IPC, PID and
network namespaces, a root of its own (a scratch root, or its writable layer's merged view)
with the host's system folders read-only beneath it, its mapped directories, its host name
and an init as PID 1. What the service's privileges do not allow (or the ``IsolationWithout``
switch turns off) falls back to the host's, and the ``EmulatorIsolation`` property says so.

Runs on whichever backend PYHCS_BACKEND selects (CI runs the suite once per backend). The
full-isolation tests need root (CAP_SYS_ADMIN); the fallback tests run anywhere, and one test
runs a client as the unprivileged user ``nobody`` (setpriv) when this host allows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pyhcs
from pyhcs import ComputeSystem, emulator, errors, service

from conftest import ON_EMULATOR
from pyutil import new_id

pytestmark = pytest.mark.skipif(not ON_EMULATOR, reason="isolation is the emulator's (a real HCS has its own)")

FEATURES = ("Mount", "Uts", "Ipc", "Pid", "Network")


def host_report() -> dict[str, Any]:
    emulator.configure(Isolation="Auto")
    report: dict[str, Any] = service.properties("EmulatorIsolation")[0]
    return report


def _full_isolation_available() -> bool:
    if not ON_EMULATOR:
        return False
    try:
        return set(host_report()["Available"]) == set(FEATURES)
    finally:
        emulator.reset()


needs_privileges = pytest.mark.skipif(
    not _full_isolation_available(), reason="full isolation needs CAP_SYS_ADMIN (run as root)"
)


def container(**body: Any) -> dict[str, Any]:
    return {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": body}


@pytest.fixture(autouse=True)
def _isolation_on() -> Iterator[None]:
    emulator.configure(Isolation="Auto")
    yield


@pytest.fixture
def system() -> Iterator[ComputeSystem]:
    with ComputeSystem.create(new_id("iso"), container()) as s:
        s.start()
        yield s
        s.terminate()


def sh(system: ComputeSystem, script: str, **kw: Any) -> pyhcs.CompletedProcess:
    """Runs a POSIX shell script in the system (sh is the host's /bin/sh, bound read-only)."""
    return system.run(["sh", "-c", script], text=True, timeout=30, **kw)


def isolation(system: ComputeSystem) -> dict[str, Any]:
    props: dict[str, Any] = system.properties("EmulatorIsolation")["Isolation"]
    return props


def pids_in_namespace(inode: int) -> list[int]:
    """Host pids of every process whose PID namespace is `inode`."""
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino == inode:
                out.append(int(entry))
        except OSError:
            continue
    return out


def namespace_in_use(inode: int) -> bool:
    """Whether any process still has a namespace (of any kind) with this inode."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            names = os.listdir(f"/proc/{entry}/ns")
        except OSError:
            continue
        for name in names:
            try:
                if os.stat(f"/proc/{entry}/ns/{name}").st_ino == inode:
                    return True
            except OSError:
                continue
    return False


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# ----------------------------------------------------------------------------- full isolation


@needs_privileges
def test_report_names_every_namespace(system: ComputeSystem) -> None:
    iso = isolation(system)
    assert iso["Enabled"] and iso["Running"]
    assert set(iso["Namespaces"]) == set(FEATURES) and iso["Fallbacks"] == {}
    assert iso["Root"] == "Scratch" and iso["HostName"] == system.id
    for name in FEATURES:
        assert iso["NamespaceIds"][name] != os.stat(f"/proc/self/ns/{dict(Mount='mnt', Uts='uts', Ipc='ipc', Pid='pid', Network='net')[name]}").st_ino


@needs_privileges
def test_host_files_are_neither_visible_nor_writable(system: ComputeSystem, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host only")
    marker = f"/written-by-{system.id}"
    r = sh(system, f"cat {secret}; echo cat=$?; ls /; echo made > {marker}; echo write=$?; cat {marker}; "
                   f"ls /root /work /home 2>&1 | head -3; echo x > /usr/x-{system.id}; echo usr=$?")
    assert "host only" not in r.stdout and "cat=1" in r.stdout
    assert "write=0" in r.stdout and "made" in r.stdout, "the scratch root is writable"
    assert not os.path.exists(marker), "the write landed in the scratch root, not the host's"
    assert not os.path.exists(f"/usr/x-{system.id}") and "usr=0" not in r.stdout, "/usr is read-only"
    listing = set(r.stdout.split())
    assert {"bin", "usr", "etc", "proc", "dev", "tmp"} <= listing
    assert "work" not in listing and "root" not in listing


@needs_privileges
def test_mapped_directories_honour_read_only(tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "given.txt").write_text("from the host")
    doc = container(MappedDirectories=[
        {"HostPath": str(rw), "ContainerPath": "C:\\data\\rw"},
        {"HostPath": str(ro), "ContainerPath": "/data/ro", "ReadOnly": True},
    ])
    with ComputeSystem.create(new_id("iso"), doc) as s:
        s.start()
        r = sh(s, "echo hi > /data/rw/out.txt; echo rw=$?; cat /data/ro/given.txt; "
                  "echo no > /data/ro/new.txt; echo ro=$?; rm /data/ro/given.txt; echo rm=$?")
        s.terminate()
    assert "rw=0" in r.stdout and (rw / "out.txt").read_text() == "hi\n"
    assert "from the host" in r.stdout
    assert "ro=0" not in r.stdout and "rm=0" not in r.stdout and "Read-only file system" in r.stderr
    assert not (ro / "new.txt").exists() and (ro / "given.txt").exists()


@needs_privileges
def test_host_name_is_the_documents_or_the_id(tmp_path: Path) -> None:
    with ComputeSystem.create(new_id("iso"), container(GuestOs={"HostName": "box-one"})) as s:
        s.start()
        named = sh(s, "hostname; cat /etc/hostname").stdout.split()
        s.terminate()
    with ComputeSystem.create(new_id("iso"), container()) as s:
        s.start()
        default = sh(s, "hostname").stdout.strip()
        s.terminate()
        sid = s.id
    assert named == ["box-one", "box-one"]
    assert default == sid and default != os.uname().nodename


@needs_privileges
def test_process_list_pids_and_exit_codes(system: ComputeSystem) -> None:
    with ComputeSystem.create(new_id("iso"), container()) as other:
        other.start()
        stranger = other.create_process(["sleep", "30"])
        sleeper = system.create_process(["sh", "-c", "sleep 30 & sleep 31 & wait"])
        def names() -> list[str]:
            return sorted(p["ImageName"] for p in system.properties("ProcessList")["ProcessList"])

        # (the shell's children are listed as "sh" from their fork until their exec)
        assert wait_until(lambda: names() == ["sh", "sleep", "sleep"])
        listed = system.properties("ProcessList")["ProcessList"]
        pids = {p["ProcessId"] for p in listed}
        iso = isolation(system)
        # the pids HCS reports are host pids: the one HcsCreateProcess returned, which
        # HcsOpenProcess takes; the init is the emulator's and is not listed
        assert sleeper.pid in pids and iso["Init"] not in pids and stranger.pid not in pids
        assert len(listed) == 3
        with system.open_process(sleeper.pid) as again:
            assert again.pid == sleeper.pid
        sleeper.kill()
        assert sleeper.wait(10) == 137
        sleeper.close()
        stranger.kill()
        stranger.close()
        other.terminate()
    # inside, the first process sees itself as pid 2 (the init is 1), and exit codes pass through
    r = sh(system, "echo $$; cat /proc/1/comm; exit 7")
    assert r.returncode == 7
    assert r.stdout.split() == ["2", "hcsemu-init"] or r.stdout.split()[1] == "hcsemu-init"


@needs_privileges
def test_setsid_child_does_not_escape_and_terminate_leaves_nothing() -> None:
    mounts_before = Path("/proc/self/mountinfo").read_text()
    with ComputeSystem.create(new_id("iso"), container()) as s:
        s.start()
        iso = isolation(s)
        proc = s.create_process(["sh", "-c", "setsid sleep 300 & echo $!; exec sleep 301"], stdout=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit()
        def names() -> list[str]:
            return sorted(p["ImageName"] for p in s.properties("ProcessList")["ProcessList"])

        # the setsid child is listed: it is in the system's namespace (once setsid exec'd sleep)
        assert wait_until(lambda: names() == ["sleep", "sleep"]), names()
        ns = iso["NamespaceIds"]
        assert len(pids_in_namespace(ns["Pid"])) == 3  # init, sleep 301, setsid sleep 300
        s.terminate()
        proc.close()
    assert wait_until(lambda: not pids_in_namespace(ns["Pid"])), "no process of the system is left"
    assert not os.path.exists(f"/proc/{iso['Init']}") or Path(f"/proc/{iso['Init']}/comm").read_text() != "hcsemu-init\n"
    for name, inode in ns.items():
        assert wait_until(lambda inode=inode: not namespace_in_use(inode)), f"the {name} namespace is gone"
    # (a writable layer another test attaches meanwhile is its own overlay on the host)
    added = set(Path("/proc/self/mountinfo").read_text().splitlines()) - set(mounts_before.splitlines())
    assert not [m for m in added if " - overlay hcsemu " not in m], "no mount reached the host"


@needs_privileges
def test_paths_and_errors_are_the_systems(system: ComputeSystem, tmp_path: Path) -> None:
    assert sh(system, "pwd", cwd="C:\\").stdout == "/\n"
    assert sh(system, "mkdir -p /work/here && cd /work/here && pwd").stdout == "/work/here\n"
    assert sh(system, "pwd", cwd="/work/here").stdout == "/work/here\n"
    with pytest.raises(errors.HcsError) as info:
        system.run(["true"], cwd=str(tmp_path), timeout=30)  # a host folder: not in the system
    assert "ERROR_DIRECTORY" in str(info.value)
    with pytest.raises(errors.Win32FileNotFoundError):
        system.run([str(Path(sys.executable).resolve())], timeout=30)  # the venv's python is the host's
    # a console is a terminal of the system's own devpts: its name resolves inside, and it is
    # the controlling terminal of the process' session (a Ctrl-C written to it is a SIGINT)
    proc = system.create_process(["sh", "-c", "tty; stty size; ls /dev/pts"], console=True,
                                 console_size=(30, 100), stdout=True)
    assert proc.stdout is not None
    out = proc.stdout.read().decode().split()
    assert proc.wait(10) == 0 and out[0].startswith("/dev/pts/") and out[1:3] == ["30", "100"]
    assert set(out[3:]) == {"ptmx", out[0].rsplit("/", 1)[1]}, "the host's terminals are not there"
    proc.close()
    with system.create_process(["sh", "-c", "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.05; done"],
                               console=True, stdin=True, stdout=True) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.stdin.write(b"\x03")
        proc.stdin.flush()
        assert b"got-int" in proc.stdout.readline() and proc.wait(10) == 7


@needs_privileges
def test_network_is_loopback_only_unless_attached() -> None:
    with ComputeSystem.create(new_id("iso"), container()) as s:
        s.start()
        devs = sh(s, "cat /proc/net/dev").stdout
        s.terminate()
    names = {line.split(":")[0].strip() for line in devs.splitlines()[2:]}
    assert names == {"lo"}
    doc = container(Networking={"Namespace": "00000000-0000-0000-0000-000000000001"})
    with ComputeSystem.create(new_id("iso"), doc) as s:
        s.start()
        iso = isolation(s)
        s.terminate()
    assert "Network" not in iso["Namespaces"] and "Network" in iso["Shared"] and "Network" not in iso["Fallbacks"]


@needs_privileges
def test_modify_mounts_and_unmounts_a_mapped_directory(system: ComputeSystem, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("live")
    mapping = {"HostPath": str(tmp_path), "ContainerPath": "/live", "ReadOnly": True}
    assert sh(system, "cat /live/f.txt").returncode != 0
    system.modify({"ResourcePath": "Container/MappedDirectories", "RequestType": "Add", "Settings": mapping})
    r = sh(system, "cat /live/f.txt; touch /live/g; echo touch=$?")
    assert r.stdout.startswith("live") and "touch=0" not in r.stdout
    conf = system.properties("EmulatorConfiguration")["EmulatorConfiguration"]
    assert conf["Container"]["MappedDirectories"] == [mapping]
    system.modify({"ResourcePath": "Container/MappedDirectories", "RequestType": "Remove", "Settings": mapping})
    assert sh(system, "cat /live/f.txt").returncode != 0
    conf = system.properties("EmulatorConfiguration")["EmulatorConfiguration"]
    assert conf["Container"]["MappedDirectories"] == []
    missing = dict(mapping, HostPath=str(tmp_path / "absent"))
    with pytest.raises(errors.HcsError) as info:
        system.modify({"ResourcePath": "Container/MappedDirectories", "RequestType": "Add", "Settings": missing})
    assert "absent" in str(info.value)


@needs_privileges
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to make a shared host mount")
def test_a_live_mapping_of_a_shared_host_mount_does_not_propagate(system: ComputeSystem, tmp_path: Path) -> None:
    # (a clone of a shared mount joins its peer group: without being made private, a mount on
    # either side would appear on the other)
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "hcsemu-test", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        (shared / "sub").mkdir()
        mapping = {"HostPath": str(shared), "ContainerPath": "/live"}
        system.modify({"ResourcePath": "Container/MappedDirectories", "RequestType": "Add", "Settings": mapping})
        subprocess.run(["mount", "-t", "tmpfs", "hcsemu-test-sub", str(shared / "sub")], check=True)
        r = sh(system, "grep ' /live' /proc/self/mountinfo; mkdir /live/inner && mount -t tmpfs x /live/inner; "
                       "echo mounted=$?")
        assert "mounted=0" in r.stdout, r.stderr
        lines = [line for line in r.stdout.splitlines() if " /live" in line]
        assert lines and not [line for line in lines if "shared:" in line], lines
        assert not [line for line in lines if " /live/sub " in line], "a host mount reached the system"
        host = Path("/proc/self/mountinfo").read_text()
        assert f"{shared}/inner" not in host, "a mount of the system reached the host"
    finally:
        subprocess.run(["umount", "-R", "-l", str(shared)], check=False)


@needs_privileges
def test_writable_layer_is_the_root(tmp_path: Path) -> None:
    from pyhcs.storage import WritableLayer

    layer = WritableLayer.initialize(tmp_path / "scratch")
    with layer.attached() as view:
        before = set(os.listdir(view))
        doc = container(Storage={"Path": str(layer.path)})
        with ComputeSystem.create(new_id("iso"), doc) as s:
            s.start()
            assert isolation(s)["Root"] == str(view)
            r = sh(s, "echo in-layer > /note.txt; ls /usr/bin/env; cat /note.txt")
            assert r.stdout.split() == ["/usr/bin/env", "in-layer"]
            s.terminate()
        after = set(os.listdir(view))
        # the file the container wrote is in the layer; the mount points are gone again
        assert after - before == {"note.txt"} and (Path(view) / "note.txt").read_text() == "in-layer\n"


@needs_privileges
def test_virtual_machine_has_its_own_processes_and_name_but_the_hosts_files(tmp_path: Path) -> None:
    doc = {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": {}}
    (tmp_path / "seen.txt").write_text("host file\n")
    with ComputeSystem.create(new_id("iso"), doc) as vm:
        vm.start()
        iso = isolation(vm)
        r = vm.run(f"hostname; cat {tmp_path / 'seen.txt'}; echo $$", text=True, timeout=30)
        vm.terminate()
    assert set(iso["Namespaces"]) == {"Uts", "Ipc", "Pid", "Network"} and "Mount" in iso["Shared"]
    assert r.stdout.split() == [vm.id, "host", "file", "2"]


# ----------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("feature", FEATURES)
def test_each_feature_falls_back_alone(feature: str, tmp_path: Path) -> None:
    emulator.configure(IsolationWithout=[feature])
    (tmp_path / "f.txt").write_text("mapped")
    doc = container(MappedDirectories=[{"HostPath": str(tmp_path), "ContainerPath": "/m"}])
    with ComputeSystem.create(new_id("iso"), doc) as s:
        s.start()
        iso = isolation(s)
        assert feature not in iso["Namespaces"]
        assert "IsolationWithout" in iso["Fallbacks"][feature] or "CAP_SYS_ADMIN" in iso["Fallbacks"][feature]
        r = sh(s, "echo ok; exit 3")
        assert r.returncode == 3 and r.stdout == "ok\n"
        proc = s.create_process(["sleep", "30"])
        assert wait_until(lambda: proc.pid in {p["ProcessId"] for p in s.properties("ProcessList")["ProcessList"]})
        if feature == "Mount":
            assert iso["Root"] == "Host"
            assert sh(s, f"cat {tmp_path / 'f.txt'}").stdout == "mapped"  # the host's files
        elif "Mount" in iso["Namespaces"]:
            assert sh(s, "cat /m/f.txt").stdout == "mapped"
        if feature == "Uts":
            assert sh(s, "hostname").stdout.strip() == os.uname().nodename
        s.terminate()
        assert proc.wait(10) == 137
        proc.close()


def test_isolation_off_reports_it(tmp_path: Path) -> None:
    emulator.configure(Isolation="Off")
    with ComputeSystem.create(new_id("iso"), container()) as s:
        s.start()
        iso = isolation(s)
        # (other parts of the emulator may add members of their own: only isolation's are compared)
        mine = {k: iso[k] for k in ("Enabled", "Running", "Namespaces", "Root", "HostName", "Fallbacks")}
        assert mine == {"Enabled": False, "Running": False, "Namespaces": [], "Root": "Host", "HostName": "Host",
                        "Fallbacks": {}}
        assert sh(s, f"test -d {tmp_path}").returncode == 0
        s.terminate()


def test_switches_are_checked() -> None:
    for bad in ({"Isolation": "On"}, {"IsolationWithout": ["Users"]}, {"IsolationWithout": "Pid"}):
        with pytest.raises(errors.HcsError):
            service.modify_settings({"PropertyType": "Emulator", "Settings": bad})
    emulator.configure(IsolationWithout=["Pid", "Network"])
    assert emulator.settings()["IsolationWithout"] == ["Pid", "Network"]
    report = host_report()
    assert set(report) >= {"Isolation", "Available", "Fallbacks"} and report["Isolation"] == "Auto"
    assert "Pid" not in report["Available"] and "Pid" in report["Fallbacks"]


_CLIENT = textwrap.dedent(
    r"""
    # A raw ctypes client of libhcsemu.so (no pyhcs, so any python3 will do). argv: library,
    # mode, a folder of the caller's (mapped at /out), a host file the container must not see.
    import ctypes, json, sys
    lib = ctypes.CDLL(sys.argv[1])
    W = lambda s: ctypes.create_string_buffer(s.encode("utf-16-le") + b"\0\0") if s is not None else None
    lib.HcsCreateOperation.restype = ctypes.c_void_p
    lib.HcsCreateComputeSystem.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_void_p)]
    for name in ("HcsStartComputeSystem", "HcsTerminateComputeSystem", "HcsGetComputeSystemProperties"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    lib.HcsCreateProcess.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.POINTER(ctypes.c_void_p)]
    lib.HcsWaitForProcessExit.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
    lib.HcsCloseProcess.argtypes = [ctypes.c_void_p]
    lib.HcsWaitForOperationResult.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
    lib.HcsCloseOperation.argtypes = [ctypes.c_void_p]
    lib.HcsCloseComputeSystem.argtypes = [ctypes.c_void_p]
    lib.hcsemu_wcslen.argtypes = [ctypes.c_void_p]
    lib.hcsemu_wcslen.restype = ctypes.c_size_t
    lib.LocalFree.argtypes = [ctypes.c_void_p]

    def text_of(doc):
        text = ctypes.string_at(doc.value, 2 * lib.hcsemu_wcslen(doc.value)).decode("utf-16-le") if doc.value else ""
        if doc.value:
            lib.LocalFree(doc.value)
        return text

    def wait(op):
        doc = ctypes.c_void_p()
        hr = lib.HcsWaitForOperationResult(op, 30000, ctypes.byref(doc))
        text = text_of(doc)
        lib.HcsCloseOperation(op)
        if hr & 0x80000000:
            raise SystemExit(f"hr {hr & 0xffffffff:#x}: {text}")
        return text

    out, secret = sys.argv[3], sys.argv[4]
    cfg = {"SchemaVersion": {"Major": 2, "Minor": 1},
           "Container": {"MappedDirectories": [{"HostPath": out, "ContainerPath": "/out"}]}}
    h = ctypes.c_void_p()
    op = lib.HcsCreateOperation(None, None)
    lib.HcsCreateComputeSystem(W("unpriv-" + sys.argv[2]), W(json.dumps(cfg)), op, None, ctypes.byref(h))
    wait(op)
    op = lib.HcsCreateOperation(None, None)
    lib.HcsStartComputeSystem(h, op, None)
    wait(op)
    script = (f"cat {secret} >/out/cat 2>&1; echo $? >/out/rc; id -u >/out/uid; echo $$ >/out/pid; "
              "hostname >/out/host; ls / >/out/ls; echo x >/usr/x 2>/dev/null; echo $? >/out/usr")
    p = ctypes.c_void_p()
    op = lib.HcsCreateOperation(None, None)
    params = {"CommandLine": "sh -c \"" + script + "\""}
    lib.HcsCreateProcess(h, W(json.dumps(params)), op, None, ctypes.byref(p))
    wait(op)
    doc = ctypes.c_void_p()
    lib.HcsWaitForProcessExit(p, 30000, ctypes.byref(doc))
    exited = json.loads(text_of(doc) or "{}")
    lib.HcsCloseProcess(p)
    op = lib.HcsCreateOperation(None, None)
    lib.HcsGetComputeSystemProperties(h, op, W(json.dumps({"PropertyTypes": ["EmulatorIsolation"]})))
    iso = json.loads(wait(op))["Isolation"]
    op = lib.HcsCreateOperation(None, None)
    lib.HcsTerminateComputeSystem(h, op, None)
    wait(op)
    lib.HcsCloseComputeSystem(h)
    print(json.dumps({"Isolation": iso, "Exit": exited}))
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
@pytest.mark.parametrize("mode", ["direct", "private"])
def test_unprivileged_service_isolates_through_a_user_namespace(mode: str) -> None:
    lib = Path(emulator.library_path())
    # pytest's tmp_path is root's alone: nobody needs a folder it can read and write
    tmp_path = Path(tempfile.mkdtemp(prefix="hcsemu-unprivileged-"))
    try:
        _run_unprivileged(lib, tmp_path, mode)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _run_unprivileged(lib: Path, tmp_path: Path, mode: str) -> None:
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "secret.txt"  # readable by nobody on the host, absent in the container
    secret.write_text("host only")
    for path in (tmp_path, out):
        os.chown(path, 65534, 65534)
    script.chmod(0o644)
    secret.chmod(0o644)
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    env = {"PATH": "/usr/bin:/bin", "HCSEMU_SERVICE": mode, "HCSEMU_SETTINGS": json.dumps({"Isolation": "Auto"}),
           "HCSEMU_DAEMON": str(lib.with_name("hcsemud")), "HCSEMU_RUNTIME_DIR": str(tmp_path / "rt")}
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, python, "-c", "import sys; "
                            f"open({str(lib)!r}, 'rb').close()"], env=env, capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot read the library here: {probe.stderr.decode()[-200:]}")
    if subprocess.run([*nobody, "unshare", "--user", "true"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("this host gives unprivileged users no user namespace")
    done = subprocess.run([*nobody, python, str(script), str(lib), mode, str(out), str(secret)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    iso = result["Isolation"]
    assert iso["Enabled"] and iso["UserNamespace"] is True and iso["Fallbacks"] == {}
    assert set(iso["Namespaces"]) == set(FEATURES) and iso["Root"] == "Scratch"
    assert result["Exit"]["ExitCode"] == 0
    seen = {name: (out / name).read_text().strip() for name in ("cat", "rc", "uid", "pid", "host", "ls", "usr")}
    assert seen["rc"] != "0" and "host only" not in seen["cat"], "a host file is invisible"
    assert seen["uid"] == "65534", "the caller's uid maps to itself"
    assert seen["pid"] == "2" and seen["host"] == f"unpriv-{mode}"
    assert "tmp" in seen["ls"].split() and "work" not in seen["ls"].split() and seen["usr"] != "0"
    assert "warning: isolation is partial" not in done.stderr, "nothing fell back"


def test_one_warning_per_service_process(tmp_path: Path) -> None:
    script = tmp_path / "two.py"
    script.write_text(textwrap.dedent(
        """
        import pyhcs
        from pyhcs import ComputeSystem, emulator
        emulator.configure(Isolation="Auto", IsolationWithout=["Network"])
        for i in range(2):
            with ComputeSystem.create(f"warn-{i}", {"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}}) as s:
                s.start()
                s.run(["true"], timeout=30)
                s.terminate()
        """
    ))
    env = dict(os.environ, HCSEMU_SERVICE="direct")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(pyhcs.__file__).parents[1]), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: isolation is partial") == 1, done.stderr


def test_pyhcs_info_reports_isolation() -> None:
    env = dict(os.environ, HCSEMU_SERVICE="direct",
               HCSEMU_SETTINGS=json.dumps({"Isolation": "Auto", "IsolationWithout": ["Ipc"]}))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(pyhcs.__file__).parents[1]), env.get("PYTHONPATH", "")])
    text = subprocess.run([sys.executable, "-m", "pyhcs", "info"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert text.returncode == 0, text.stderr
    line = next(line for line in text.stdout.splitlines() if line.startswith("isolation:"))
    assert "Auto" in line and "Ipc" in line and "IsolationWithout" in line
    doc = json.loads(subprocess.run([sys.executable, "-m", "pyhcs", "info", "--json"], env=env, capture_output=True,
                                    text=True, timeout=120).stdout)
    assert doc["Isolation"]["Isolation"] == "Auto" and "Ipc" in doc["Isolation"]["Fallbacks"]
