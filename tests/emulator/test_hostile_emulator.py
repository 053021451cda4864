"""Hostile input against the emulator, through the raw API of both backends: each class of
issue 11 that lives in the C emulator gets an HcsError naming what was wrong, never a crash,
a hang, a silent loss or a change outside what the caller named. Also the Windows command-line
rules of a Container (a Windows guest)."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhcs import errors, storage
from pyhcs._native._types import EventOptions, EventType, HcsEvent
from pyhcs.storage import LayerChain

from pyutil import python_mappings
from rawutil import container_config, new_id, operation, read_all, running_system, set_switches, wait

INVALID_JSON = 0x8037010D


def props(hcs: ModuleType, h: int, query: Any) -> dict[str, Any]:
    with operation(hcs) as op:
        hcs.hcs_get_compute_system_properties(h, op, query if isinstance(query, str) else json.dumps(query))
        out: dict[str, Any] = json.loads(wait(hcs, op) or "{}")
        return out


def modify(hcs: ModuleType, h: int, request: dict[str, Any]) -> None:
    with operation(hcs) as op:
        hcs.hcs_modify_compute_system(h, op, json.dumps(request))
        wait(hcs, op)


def create_process(hcs: ModuleType, h: int, params: dict[str, Any]) -> tuple[int, Any]:
    with operation(hcs) as op:
        p = hcs.hcs_create_process(h, json.dumps(params), op)
        try:
            info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
        except BaseException:
            hcs.hcs_close_process(p)
            raise
    return p, info


# ------------------------------------------------------------------------------ wrong types


@pytest.mark.parametrize(
    "query, member",
    [
        ({"Queries": ["Memory"]}, "Queries"),  # once a NULL reached strcmp: a segfault
        ({"Queries": "Memory"}, "Queries"),
        ({"PropertyTypes": [["Memory"]]}, "PropertyTypes[0]"),
        ({"PropertyTypes": {"a": 1}}, "PropertyTypes"),
    ],
)
def test_wrong_type_query_members_name_the_member(hcs: ModuleType, query: Any, member: str) -> None:
    with running_system(hcs) as h:
        with pytest.raises(errors.InvalidJsonError) as ei:
            props(hcs, h, query)
        assert ei.value.hresult == INVALID_JSON and member in str(ei.value)
        assert "Memory" in props(hcs, h, {"Queries": {"Memory": {}}})["PropertyResponses"]


@pytest.mark.parametrize(
    "params, member",
    [
        ({"CommandLine": ["true"]}, "CommandLine"),
        ({"CommandLine": "true", "WorkingDirectory": 7}, "WorkingDirectory"),
        ({"CommandLine": "true", "Environment": {"A": "ok", "B": 1}}, "Environment.B"),
        ({"CommandLine": "true", "EmulateConsole": "yes"}, "EmulateConsole"),
        ({"CommandArgs": "true"}, "CommandArgs"),
        ({"CommandArgs": ["true", 1]}, "CommandArgs[1]"),
    ],
)
def test_wrong_type_process_members(hcs: ModuleType, params: dict[str, Any], member: str) -> None:
    with running_system(hcs) as h:
        with pytest.raises(errors.InvalidJsonError) as ei:
            create_process(hcs, h, params)
        assert member in str(ei.value)


def test_wrong_type_process_requests_and_queries(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, _info = create_process(hcs, h, {"CommandLine": "sleep 30"})
        try:
            for call, doc, member in [
                (hcs.hcs_modify_process, {"Operation": 1}, "Operation"),
                (hcs.hcs_modify_process, {"Operation": "CloseHandle", "CloseHandle": {"Handle": ["StdIn"]}}, "Handle"),
                (hcs.hcs_modify_process, {"Operation": "ConsoleSize", "ConsoleSize": [1, 2]}, "ConsoleSize"),
                (hcs.hcs_signal_process, {"Signal": "CtrlC\0x"}, "U+0000"),
            ]:
                with operation(hcs) as op:
                    call(p, op, json.dumps(doc))
                    with pytest.raises(errors.InvalidJsonError) as ei:
                        wait(hcs, op)
                    assert member in str(ei.value)
        finally:
            hcs.hcs_close_process(p)
    with operation(hcs) as op:
        hcs.hcs_enumerate_compute_systems(json.dumps({"Ids": [1]}), op)
        with pytest.raises(errors.InvalidJsonError, match=r"Ids\[0\]"):
            wait(hcs, op)


@pytest.mark.parametrize(
    "section, member",
    [
        ({"Container": {"Storage": {"Layers": [{"Path": ["/"]}]}}}, "Layers[0].Path"),
        ({"Container": {"MappedDirectories": {}}}, "MappedDirectories"),
        ({"Container": {}, "Owner": 3}, "Owner"),
        ({"Container": {}, "ShouldTerminateOnLastHandleClosed": "no"}, "ShouldTerminateOnLastHandleClosed"),
        ({"VirtualMachine": {"RestoreState": {"SaveStateFilePath": 1}}}, "SaveStateFilePath"),
        # read later by the cgroup and isolation code, which would take a wrong type as absent
        # (a mapping's ContainerPath as its HostPath, ReadOnly "true" as read-write)
        ({"Container": {"MappedDirectories": [{"HostPath": "/tmp", "ContainerPath": 5}]}},
         "Container.MappedDirectories[0].ContainerPath"),
        ({"Container": {"MappedDirectories": [{"HostPath": "/tmp", "ReadOnly": "true"}]}},
         "Container.MappedDirectories[0].ReadOnly"),
        ({"Container": {"MappedDirectories": ["/tmp"]}}, "Container.MappedDirectories[0]"),
        ({"Container": {"Processor": {"Maximum": "5000"}}}, "Container.Processor.Maximum"),
        ({"Container": {"GuestOs": {"HostName": 1}}}, "Container.GuestOs.HostName"),
        ({"HostedSystem": {"Container": {"Memory": {"SizeInMB": "1"}}}}, "HostedSystem.Container.Memory.SizeInMB"),
        ({"VirtualMachine": {"ComputeTopology": {"Processor": {"Count": 1.5}}}},
         "VirtualMachine.ComputeTopology.Processor.Count"),
    ],
)
def test_wrong_type_configuration_members(hcs: ModuleType, section: dict[str, Any], member: str) -> None:
    doc = {"SchemaVersion": {"Major": 2, "Minor": 1}, **section}
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id(), json.dumps(doc), op)
        try:
            with pytest.raises(errors.InvalidJsonError) as ei:
                wait(hcs, op)
            assert member in str(ei.value)
        finally:
            hcs.hcs_close_compute_system(h)


@pytest.mark.parametrize(
    "request_doc, member",
    [
        ({"ResourcePath": "Container/MappedDirectories", "RequestType": "Add",
          "Settings": {"HostPath": "/tmp", "ContainerPath": ["/x"]}}, "Container.MappedDirectories[0].ContainerPath"),
        ({"ResourcePath": "Container/Processor", "RequestType": "Update", "Settings": {"Weight": "high"}},
         "Container.Processor.Weight"),
        ({"ResourcePath": "Container/Processor/Count", "RequestType": "Update", "Settings": "2"},
         "Container.Processor.Count"),
    ],
)
def test_wrong_type_modify_settings_change_nothing(hcs: ModuleType, request_doc: dict[str, Any], member: str) -> None:
    with running_system(hcs) as h:
        before = props(hcs, h, {"PropertyTypes": ["EmulatorConfiguration"]})
        with pytest.raises(errors.InvalidJsonError) as ei:
            modify(hcs, h, request_doc)
        assert member in str(ei.value)
        assert props(hcs, h, {"PropertyTypes": ["EmulatorConfiguration"]}) == before
        ok = {**request_doc, "Settings": {"HostPath": "/tmp", "ContainerPath": "/x", "ReadOnly": True}} \
            if "MappedDirectories" in request_doc["ResourcePath"] else \
            {"ResourcePath": "Container/Processor", "RequestType": "Update", "Settings": {"Count": 1, "Weight": 200}}
        modify(hcs, h, ok)  # the right types are taken


def test_wrong_type_emulator_controls(hcs: ModuleType) -> None:
    for faults, member in [({"Function": 5, "HResult": 1}, "Function"), ({"Hang": "yes"}, "Hang")]:
        with pytest.raises(errors.InvalidJsonError) as ei:
            hcs.hcs_modify_service_settings(
                json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Faults": [faults]}})
            )
        assert member in str(ei.value)
    with pytest.raises(errors.InvalidJsonError) as ei:
        hcs.hcs_modify_service_settings(json.dumps({"PropertyType": ["Emulator"]}))
    assert "PropertyType" in str(ei.value)
    # out of a 32-bit range: an error, never a wrapped value (2**32 + 5 once became 5)
    for faults, member in [
        ({"Function": "HcsOpenComputeSystem", "DelayMs": 2**32 + 5}, "DelayMs"),
        ({"Function": "HcsOpenComputeSystem", "HResult": 1, "OnCall": -1}, "OnCall"),
        ({"Function": "HcsOpenComputeSystem", "HResult": 1, "Count": 2**40}, "Count"),
    ]:
        with pytest.raises(errors.InvalidJsonError, match=member):
            hcs.hcs_modify_service_settings(
                json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Faults": [faults]}})
            )
    with pytest.raises(errors.InvalidJsonError, match="Reset"):
        hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Reset": "yes"}}))


# ------------------------------------------------------------------------------ NUL and surrogates


def test_embedded_nul_is_refused_wherever_it_becomes_a_c_string(hcs: ModuleType, tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("x")
    with pytest.raises(errors.InvalidJsonError):  # "keep\0/cache" once deleted keep
        hcs.hcs_initialize_writable_layer(str(tmp_path / "wl"), json.dumps({"Layers": [{"Path": f"{keep}\0/cache"}]}))
    assert (keep / "precious").read_text() == "x"
    with running_system(hcs) as h:
        for params in (
            {"CommandLine": "tr\0ue"},
            {"CommandLine": "true", "Environment": {"A": "1\0B=2"}},
            {"CommandLine": "true", "WorkingDirectory": f"{tmp_path}\0/x"},
        ):
            with pytest.raises(errors.InvalidJsonError, match="U\\+0000"):
                create_process(hcs, h, params)
        with pytest.raises(errors.InvalidJsonError, match="U\\+0000"):
            modify(hcs, h, {"ResourcePath": "Container/X", "Settings": {"Path": "a\0b"}})
    victim = tmp_path / "x.txt"
    victim.write_text("keep me")
    with operation(hcs) as op:  # a state file "x.txt\0.vmrs" once overwrote x.txt
        h = hcs.hcs_create_compute_system(
            new_id(), container_config(Container={"MappedDirectories": [{"HostPath": f"{victim}\0.vmrs"}]}), op
        )
        try:
            with pytest.raises(errors.InvalidJsonError, match="U\\+0000"):
                wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(h)
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_pause_compute_system(h, op)
        wait(hcs, op)
        hcs.hcs_save_compute_system(h, op, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": f"{victim}\0.vmrs"}))
        with pytest.raises(errors.InvalidJsonError):
            wait(hcs, op)
    assert victim.read_text() == "keep me"


def test_lone_surrogates_in_names_are_refused(hcs: ModuleType, tmp_path: Path) -> None:
    with running_system(hcs, system_id=f"sur-{os.getpid()}-\ufffd") as h:
        assert h
        with pytest.raises(errors.InvalidArgumentError):  # would have become U+FFFD: that system
            hcs.hcs_open_compute_system(f"sur-{os.getpid()}-\ud800")
    target = tmp_path / "f\ufffd"
    target.write_text("")
    calls: list[Callable[[], object]] = [
        lambda: hcs.hcs_grant_vm_access("vm-\udc00", str(target)),
        lambda: hcs.hcs_grant_vm_access("vm", str(tmp_path / "f\ud800")),
        lambda: hcs.hcs_create_empty_runtime_state_file(str(tmp_path / "s\ud800.vmrs")),
        lambda: hcs.hcs_destroy_layer(str(tmp_path / "l\ud800")),
    ]
    for call in calls:
        with pytest.raises(errors.InvalidArgumentError):
            call()
    assert not (tmp_path / "s\ufffd.vmrs").exists()  # nothing was done under the U+FFFD name either


# ------------------------------------------------------------------------------ nesting limit


def test_configuration_past_the_nesting_limit_is_an_error_not_a_silent_loss(hcs: ModuleType, tmp_path: Path) -> None:
    with running_system(hcs) as h:
        modify(hcs, h, {"ResourcePath": "Container/Marker", "Settings": {"Kept": True}})
        with pytest.raises(errors.InvalidJsonError):
            modify(hcs, h, {"ResourcePath": "Container" + "/a" * 600, "Settings": 1})
        with pytest.raises(errors.InvalidJsonError, match="deeper"):
            deep: Any = 1
            for _ in range(30):
                deep = [deep]
            modify(hcs, h, {"ResourcePath": "Container" + "/a" * 480, "Settings": {"b": deep}})
        cfg = props(hcs, h, {"PropertyTypes": ["EmulatorConfiguration"]})["EmulatorConfiguration"]
        assert cfg["Container"]["Marker"] == {"Kept": True} and "a" not in cfg["Container"]
        # the deepest accepted configuration is still readable and saved whole
        modify(hcs, h, {"ResourcePath": "Container" + "/a" * 400, "Settings": {"deep": True}})
        assert "EmulatorConfiguration" in props(hcs, h, {"PropertyTypes": ["EmulatorConfiguration"]})
        with operation(hcs) as op:
            hcs.hcs_pause_compute_system(h, op)
            wait(hcs, op)
            path = tmp_path / "s.vmrs"
            hcs.hcs_save_compute_system(h, op, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(path)}))
            wait(hcs, op)
        saved = json.loads(path.read_text().split("\n", 1)[1])
        node = saved["Configuration"]["Container"]
        for _ in range(400):
            node = node["a"]
        assert node == {"deep": True}


# ------------------------------------------------------------------------------ special files


def test_fifos_and_devices_are_refused_as_state_files(hcs: ModuleType, tmp_path: Path) -> None:
    fifo = tmp_path / "state.vmrs"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_get_processor_compatibility_from_saved_state(str(fifo))
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_pause_compute_system(h, op)
        wait(hcs, op)
        hcs.hcs_save_compute_system(h, op, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(fifo)}))
        with pytest.raises(errors.InvalidArgumentError, match="regular file"):
            wait(hcs, op)
    vm = {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": {"RestoreState": {"SaveStateFilePath": str(fifo)}}}
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id(), json.dumps(vm), op)
        try:
            with pytest.raises(errors.InvalidArgumentError):
                wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(h)
    assert time.monotonic() - t0 < 20  # none of them blocked on the FIFO
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_get_processor_compatibility_from_saved_state("/dev/zero")


@contextlib.contextmanager
def mounted(kind: str, source: str, target: Path) -> Generator[None, None, None]:
    """A real mount (we are root in CI); skips cleanly where mounting is not permitted."""
    args = ["mount", "--bind", source, str(target)] if kind == "bind" else ["mount", "-t", kind, "none", str(target)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount here: {e}")
    if done.returncode != 0:
        pytest.skip(f"mount is not permitted here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def test_vm_access_sidecar_never_follows_links_and_refuses_special_files(hcs: ModuleType, tmp_path: Path) -> None:
    for special in ("/dev/null", "/dev/zero"):
        with pytest.raises(errors.InvalidArgumentError):
            hcs.hcs_grant_vm_group_access(special)
    assert not Path("/dev/null.hcs-acl").exists()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_grant_vm_access("vm", str(fifo))
    noxattr = tmp_path / "ramfs"
    noxattr.mkdir()
    with mounted("ramfs", "none", noxattr):  # no user xattrs: the sidecar file is used
        victim = tmp_path / "victim"
        victim.write_text("precious")
        disk = noxattr / "disk.vhdx"
        disk.write_text("")
        (noxattr / "disk.vhdx.hcs-acl").symlink_to(victim)  # a planted link
        with pytest.raises(errors.InvalidArgumentError):
            hcs.hcs_grant_vm_access("vm-1", str(disk))
        assert victim.read_text() == "precious"
        (noxattr / "disk.vhdx.hcs-acl").unlink()
        # grant and revoke agree, one ACE per VM, the sidecar gone with the last one
        hcs.hcs_grant_vm_access("vm-1", str(disk))
        hcs.hcs_grant_vm_access("vm-2", str(disk))
        hcs.hcs_grant_vm_access("vm-1", str(disk))
        aces = json.loads((noxattr / "disk.vhdx.hcs-acl").read_text())
        assert sorted(a["VmId"] for a in aces) == ["vm-1", "vm-2"]
        hcs.hcs_revoke_vm_access("vm-1", str(disk))
        assert [a["VmId"] for a in json.loads((noxattr / "disk.vhdx.hcs-acl").read_text())] == ["vm-2"]
        hcs.hcs_revoke_vm_access("vm-2", str(disk))
        assert not (noxattr / "disk.vhdx.hcs-acl").exists()
        # a directory given with a trailing slash keeps its sidecar beside it, not inside
        (noxattr / "share").mkdir()
        hcs.hcs_grant_vm_group_access(f"{noxattr}/share/")
        assert (noxattr / "share.hcs-acl").exists() and not (noxattr / "share" / ".hcs-acl").exists()
        hcs.hcs_revoke_vm_group_access(str(noxattr / "share"))
        assert not (noxattr / "share.hcs-acl").exists()


def test_vm_access_names_the_vm_account_of_the_system(hcs: ModuleType, tmp_path: Path) -> None:
    disk = tmp_path / "disk.vhdx"
    disk.write_bytes(b"")
    sid = new_id("vm")
    with running_system(hcs, system_id=sid) as h:
        runtime = props(hcs, h, {})["RuntimeId"]
        hcs.hcs_grant_vm_access(sid, str(disk))
        acl = json.loads(os.getxattr(disk, "user.hcs.acl"))
        words = struct.unpack("<4I", uuid.UUID(runtime).bytes_le)  # NT VIRTUAL MACHINE\<RuntimeId>
        assert acl[0]["Sid"] == "S-1-5-83-1-" + "-".join(map(str, words))
        hcs.hcs_revoke_vm_access(sid, str(disk))
        assert "user.hcs.acl" not in os.listxattr(disk)  # the last ACE gone, the attribute with it


def test_format_takes_only_disk_images(hcs: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with open(log, "w+b") as f:
        f.write(b"important output" * 64)
        f.flush()
        with pytest.raises(errors.InvalidArgumentError):  # once: its first 512 bytes overwritten
            hcs.hcs_format_writable_layer_vhd(f.fileno())
    assert log.read_bytes() == b"important output" * 64
    with open(tmp_path / "empty.txt", "w+b") as f, pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_format_writable_layer_vhd(f.fileno())
    data = tmp_path / "data.vhdx"
    data.write_bytes(b"not ours" * 100)
    with open(data, "r+b") as f, pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_format_writable_layer_vhd(f.fileno())
    assert data.read_bytes() == b"not ours" * 100
    with open(tmp_path / "new.vhdx", "w+b") as f:
        hcs.hcs_format_writable_layer_vhd(f.fileno())
        hcs.hcs_format_writable_layer_vhd(f.fileno())  # ours: may be formatted again


# ------------------------------------------------------------------------------ storage trees


@pytest.fixture
def api(hcs: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setattr(storage, "B", hcs)
    monkeypatch.setenv("HCSEMU_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("HCSEMU_STORAGE_MODE", "copy")
    return hcs


def make_deep(root: Path, depth: int) -> None:
    """A chain of directories depth levels deep under root (relative steps: no PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)


@pytest.fixture
def deep_cleanup(tmp_path: Path) -> Iterator[None]:
    """Deep trees left by a failing test would defeat pytest's recursive tmp_path cleanup."""
    yield
    subprocess.run(["rm", "-rf", str(tmp_path)], capture_output=True, timeout=300)


def test_deep_trees_detach_and_destroy(api: ModuleType, tmp_path: Path, deep_cleanup: None) -> None:
    wl = tmp_path / "wl"
    api.hcs_initialize_writable_layer(str(wl), LayerChain().to_json())
    api.hcs_attach_layer_storage_filter(str(wl), LayerChain().to_json())
    make_deep(wl / "Merged", 3000)  # ~2,000 levels once overflowed the stack here
    api.hcs_detach_layer_storage_filter(str(wl))
    api.hcs_attach_layer_storage_filter(str(wl), LayerChain().to_json())
    api.hcs_detach_layer_storage_filter(str(wl))
    api.hcs_destroy_layer(str(wl))
    assert not wl.exists()
    # deeper than the walks accept: a clear error, and the layer stays attached and usable
    wl2 = tmp_path / "wl2"
    api.hcs_initialize_writable_layer(str(wl2), LayerChain().to_json())
    api.hcs_attach_layer_storage_filter(str(wl2), LayerChain().to_json())
    make_deep(wl2 / "Merged", 4200)
    with pytest.raises(errors.HcsError) as ei:
        api.hcs_detach_layer_storage_filter(str(wl2))
    assert ei.value.hresult == 0x800700CE  # ERROR_FILENAME_EXCED_RANGE
    with pytest.raises(errors.HcsError):
        api.hcs_destroy_layer(str(wl2))  # still attached
    subprocess.run(["rm", "-rf", str(wl2 / "Merged" / "d")], check=True, timeout=120)
    api.hcs_detach_layer_storage_filter(str(wl2))
    api.hcs_destroy_layer(str(wl2))


def test_destroy_and_detach_never_descend_into_a_mount(api: ModuleType, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("host data")
    # a layer with a same-device bind mount inside: destroy refuses before deleting anything
    src = tmp_path / "src"
    (src / "Files" / "sub").mkdir(parents=True)
    (src / "Files" / "a.txt").write_text("a")
    layer = tmp_path / "layer"
    api.hcs_import_layer(str(layer), str(src), LayerChain().to_json())
    with mounted("bind", str(host), layer / "Files" / "sub"):
        with pytest.raises(errors.HcsError) as ei:
            api.hcs_destroy_layer(str(layer))
        assert ei.value.hresult == 0x800700AA  # ERROR_BUSY
        assert (host / "precious").read_text() == "host data"
        assert (layer / "Files" / "a.txt").read_text() == "a"  # nothing touched
    api.hcs_destroy_layer(str(layer))
    assert (host / "precious").read_text() == "host data" and not layer.exists()
    # copy mode: a host folder mounted into the merged view stops the detach, untouched
    wl = tmp_path / "wl"
    api.hcs_initialize_writable_layer(str(wl), LayerChain().to_json())
    api.hcs_attach_layer_storage_filter(str(wl), LayerChain().to_json())
    (wl / "Merged" / "mnt").mkdir()
    (wl / "Merged" / "mine").write_text("m")
    with mounted("bind", str(host), wl / "Merged" / "mnt"):
        with pytest.raises(errors.HcsError) as ei:
            api.hcs_detach_layer_storage_filter(str(wl))
        assert ei.value.hresult == 0x800700AA
        assert (host / "precious").read_text() == "host data"
        assert (wl / "Merged" / "mine").read_text() == "m"
    api.hcs_detach_layer_storage_filter(str(wl))
    assert (wl / "Files" / "mine").read_text() == "m" and (host / "precious").read_text() == "host data"
    api.hcs_destroy_layer(str(wl))


def test_deletion_never_follows_symlinks(api: ModuleType, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("keep")
    wl = tmp_path / "wl"
    api.hcs_initialize_writable_layer(str(wl), LayerChain().to_json())
    api.hcs_attach_layer_storage_filter(str(wl), LayerChain().to_json())
    (wl / "Merged" / "link").symlink_to(outside, target_is_directory=True)
    api.hcs_detach_layer_storage_filter(str(wl))
    api.hcs_destroy_layer(str(wl))
    assert (outside / "f").read_text() == "keep"


# ------------------------------------------------------------------------------ close wakes waiters


@pytest.mark.parametrize("what", ["system", "process"])
def test_close_from_another_thread_ends_an_infinite_wait(hcs: ModuleType, what: str) -> None:
    with running_system(hcs) as h:
        p, _info = create_process(hcs, h, {"CommandLine": "sleep 30"})
        # the system is waited on through a second handle, so the fixture keeps its own
        handle = hcs.hcs_open_compute_system(props(hcs, h, {})["Id"]) if what == "system" else p
        wait_fn = hcs.hcs_wait_for_compute_system_exit if what == "system" else hcs.hcs_wait_for_process_exit
        outcome: list[BaseException | str | None] = []

        def waiter() -> None:
            try:
                outcome.append(wait_fn(handle))
            except BaseException as e:  # recorded for the assertion below
                outcome.append(e)

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        time.sleep(0.3)
        assert not outcome
        (hcs.hcs_close_compute_system if what == "system" else hcs.hcs_close_process)(handle)
        t.join(10)
        assert not t.is_alive(), "the wait did not end when its handle was closed"
        assert isinstance(outcome[0], errors.HcsError) and outcome[0].hresult == 0x80070006
        if what == "system":
            hcs.hcs_close_process(p)


# ------------------------------------------------------------------------------ Windows command lines

ARGV_PRINTER = [sys.executable, "-c", "import sys, json; sys.stdout.write(json.dumps(sys.argv[1:]))"]
_arg_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=12)


@pytest.fixture
def windows_guest(hcs: ModuleType) -> Iterator[int]:
    set_switches(hcs, ContainerCommandLine="Windows", ContainerCommandArgs="Refuse")
    with running_system(hcs, Container={"MappedDirectories": python_mappings()}) as h:  # runs ARGV_PRINTER
        yield h


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(_arg_text, max_size=5))
def test_container_command_line_round_trips_list2cmdline(hcs: ModuleType, windows_guest: int, args: list[str]) -> None:
    line = subprocess.list2cmdline([*ARGV_PRINTER, *args])
    p, info = create_process(hcs, windows_guest, {"CommandLine": line, "CreateStdOutPipe": True})
    try:
        assert json.loads(read_all(info.std_output)) == args
    finally:
        os.close(info.std_output)
        hcs.hcs_close_process(p)


def test_container_is_a_windows_guest(hcs: ModuleType, windows_guest: int) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="CommandArgs"):
        create_process(hcs, windows_guest, {"CommandArgs": ["true"]})
    # no shell: its syntax reaches the program as text
    p, info = create_process(
        hcs, windows_guest, {"CommandLine": 'echo a;b $HOME "c  d" e\\"f', "CreateStdOutPipe": True}
    )
    try:
        assert read_all(info.std_output) == b'a;b $HOME c  d e"f\n'
    finally:
        os.close(info.std_output)
        hcs.hcs_close_process(p)
    with pytest.raises(errors.Win32FileNotFoundError):
        create_process(hcs, windows_guest, {"CommandLine": "no-such-program-on-path x"})
    with pytest.raises(errors.InvalidArgumentError):
        create_process(hcs, windows_guest, {"CommandLine": "  \t "})
    # the Shell switch keeps /bin/sh -c
    set_switches(hcs, ContainerCommandLine="Shell")
    p, info = create_process(hcs, windows_guest, {"CommandLine": "echo a; echo b", "CreateStdOutPipe": True})
    try:
        assert read_all(info.std_output) == b"a\nb\n"
    finally:
        os.close(info.std_output)
        hcs.hcs_close_process(p)


# ------------------------------------------------------------------------------ early events


@pytest.mark.parametrize("deliver", [True, False])
def test_an_exit_before_the_first_callback_reaches_it(hcs: ModuleType, deliver: bool) -> None:
    set_switches(hcs, DeliverEarlyEvents=deliver)
    with running_system(hcs) as h:
        p, _info = create_process(hcs, h, {"CommandLine": 'sh -c "exit 7"'})
        try:
            hcs.hcs_wait_for_process_exit(p, 10_000)  # it has exited: no callback was set then
            got = threading.Event()
            events: list[HcsEvent] = []

            def on_event(e: HcsEvent, c: int) -> None:
                events.append(e)
                got.set()

            hcs.hcs_set_process_callback(p, 0, 5, on_event)
            assert got.wait(5 if deliver else 0.5) is deliver
            if deliver:
                data = events[0].event_data
                assert data is not None and json.loads(data)["ExitCode"] == 7
        finally:
            hcs.hcs_close_process(p)


def test_a_create_completes_to_the_event_callback_set_after_it(hcs: ModuleType) -> None:
    got = threading.Event()
    seen: list[int] = []
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id(), container_config(), op)
        try:
            # the documented pattern: the create's completion through the system's event callback
            def on_event(e: HcsEvent, c: int) -> None:
                seen.append(int(e.type))
                got.set()

            hcs.hcs_set_compute_system_callback(h, EventOptions.ENABLE_OPERATION_CALLBACKS, 0, on_event)
            assert got.wait(5)
            assert seen == [EventType.OPERATION_CALLBACK]
            wait(hcs, op)  # its result is still there to read
        finally:
            hcs.hcs_close_compute_system(h)


# ------------------------------------------------------------------------------ hostile documents

_MEMBERS = [
    "SchemaVersion", "Container", "VirtualMachine", "HostedSystem", "Owner", "HostingSystemId", "Storage", "Layers",
    "Path", "MappedDirectories", "HostPath", "Memory", "SizeInMB", "GuestState", "GuestStateFilePath",
    "RuntimeStateFilePath", "RestoreState", "SaveStateFilePath", "PropertyTypes", "Queries", "ResourcePath",
    "RequestType", "Settings", "GuestRequest", "WorkingDirectory", "Environment", "CreateStdOutPipe", "Signal",
    "Operation", "CloseHandle", "Handle", "ConsoleSize", "SaveType", "Ids", "Names",
]
_hostile_text = st.one_of(
    st.sampled_from(["", "Memory", "Add", "Container/a", "\0", "a\0b", "/", "..", "C:\\x", "\ufffd", "Statistics"]),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=8),
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | _hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_MEMBERS) | _hostile_text, inner, max_size=4),
    max_leaves=12,
)
_documents = st.dictionaries(st.sampled_from(_MEMBERS), _json_values, max_size=5)


def _tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under root (names and contents, symlinks as their targets)."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = os.readlink(p).encode() if p.is_symlink() else (
                p.read_bytes() if p.is_file() else b"<dir>")
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_documents, name=_hostile_text.filter(lambda s: "\0" not in s and "/" not in s))  # C-string arguments
def test_hostile_documents_give_hcs_errors_and_touch_nothing_else(
    hcs: ModuleType, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any],
    name: str,
) -> None:
    base = tmp_path_factory.mktemp("hostile")
    monkeypatch.setenv("HCSEMU_RUNTIME_DIR", str(base / "runtime"))  # the layer registry stays private
    sentinel = base / "sentinel"
    (sentinel / "d").mkdir(parents=True)
    (sentinel / "d" / "f").write_text("keep")
    (sentinel / "link").symlink_to(sentinel / "d")
    before = _tree_digest(sentinel)
    text = json.dumps(doc)

    def attempt(call: Any, *args: Any) -> None:
        try:
            call(*args)
        except errors.HcsError:
            pass  # any HcsError is a fine answer; anything else (or a crash) is not

    with running_system(hcs) as h:
        attempt(props, hcs, h, text)
        attempt(modify, hcs, h, doc)
        with contextlib.suppress(errors.HcsError):
            p, _ = create_process(hcs, h, {**doc, "CommandLine": "true"})
            hcs.hcs_close_process(p)
    with operation(hcs) as op:
        try:
            sh = hcs.hcs_create_compute_system(f"hostile-{name}", text, op)
        except errors.HcsError:
            sh = 0
        if sh:
            attempt(wait, hcs, op)
            with contextlib.suppress(errors.HcsError):
                hcs.hcs_terminate_compute_system(sh, op)
                wait(hcs, op)
            hcs.hcs_close_compute_system(sh)
    layer = str(base / f"l-{name}")
    attempt(hcs.hcs_initialize_writable_layer, layer, text)
    attempt(hcs.hcs_attach_layer_storage_filter, layer, text)
    attempt(hcs.hcs_detach_layer_storage_filter, layer)
    attempt(hcs.hcs_grant_vm_access, name or "x", str(base / name) if name else str(base))
    attempt(hcs.hcs_destroy_layer, layer)
    assert _tree_digest(sentinel) == before
