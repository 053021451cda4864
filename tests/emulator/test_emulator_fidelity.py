"""What the emulator refuses where HCS does: a VM's devices are checked at create and on
hot-add (the files exist, disks are VHD/VHDX by their signature, an Iso attachment is an ISO
image). Raw API, both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from images import make_iso, make_vhd, make_vhdx

from pyhcs import errors

from rawutil import new_id, operation, wait

_NOT_VIRTUAL_DISK = 0xC03A0015  # ERROR_VIRTDISK_NOT_VIRTUAL_DISK, already an HRESULT


def _vm(devices: dict[str, Any] | None = None) -> str:
    vm: dict[str, Any] = {"ComputeTopology": {"Memory": {"SizeInMB": 256}}}
    if devices is not None:
        vm["Devices"] = devices
    return json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": vm})


def _scsi(attachment: dict[str, Any]) -> dict[str, Any]:
    return {"Scsi": {"0": {"Attachments": {"0": attachment}}}}


def _create(hcs: ModuleType, config: str) -> None:
    """Creates, starts and terminates a VM: raises what the create raises."""
    with operation(hcs) as op:
        handle = hcs.hcs_create_compute_system(new_id("fid"), config, op)
        try:
            wait(hcs, op)
            hcs.hcs_start_compute_system(handle, op)
            wait(hcs, op)
            hcs.hcs_terminate_compute_system(handle, op)
            wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(handle)


_GOOD: dict[str, Callable[[Path], tuple[str, Path]]] = {
    "vhdx": lambda d: ("VirtualDisk", make_vhdx(d / "a.vhdx")),
    "fixed-vhd": lambda d: ("VirtualDisk", make_vhd(d / "a.vhd")),
    "dynamic-vhd": lambda d: ("VirtualDisk", make_vhd(d / "b.vhd", dynamic=True)),
    "no-type-vhdx": lambda d: ("", make_vhdx(d / "c.vhdx")),
    "iso": lambda d: ("Iso", make_iso(d / "a.iso")),
}


@pytest.mark.parametrize("kind", list(_GOOD))
def test_real_images_are_attached(hcs: ModuleType, tmp_path: Path, kind: str) -> None:
    att_type, path = _GOOD[kind](tmp_path)
    attachment: dict[str, Any] = {"Path": str(path)}
    if att_type:
        attachment["Type"] = att_type
    _create(hcs, _vm(_scsi(attachment)))


def test_an_extensible_virtual_disk_is_no_file(hcs: ModuleType) -> None:
    _create(hcs, _vm(_scsi({"Type": "ExtensibleVirtualDisk", "Path": "evd://space/myvolume",
                            "ExtensibleVirtualDiskType": "space"})))


def test_a_missing_disk_is_file_not_found(hcs: ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "missing.vhdx"
    with pytest.raises(errors.Win32FileNotFoundError) as err:
        _create(hcs, _vm(_scsi({"Type": "VirtualDisk", "Path": str(missing)})))
    assert str(missing) in str(err.value) and "Scsi" in str(err.value)


def _not_a_disk(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.vhdx"
    text.write_bytes(b"not a disk" * 100)
    empty = tmp_path / "empty.vhd"
    empty.write_bytes(b"")
    return {"text": text, "empty": empty, "directory": tmp_path,
            "iso-as-disk": make_iso(tmp_path / "x.iso")}


@pytest.mark.parametrize("which", ["text", "empty", "directory", "iso-as-disk"])
def test_what_is_not_a_virtual_disk_is_refused(hcs: ModuleType, tmp_path: Path, which: str) -> None:
    path = _not_a_disk(tmp_path)[which]
    with pytest.raises(errors.NotVirtualDiskError) as err:
        _create(hcs, _vm(_scsi({"Type": "VirtualDisk", "Path": str(path)})))
    assert err.value.hresult == _NOT_VIRTUAL_DISK


def test_an_iso_attachment_must_be_an_iso(hcs: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(errors.NotVirtualDiskError):
        _create(hcs, _vm(_scsi({"Type": "Iso", "Path": str(make_vhdx(tmp_path / "a.vhdx"))})))


def test_vpmem_and_shares_are_checked(hcs: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(errors.Win32FileNotFoundError):
        _create(hcs, _vm({"VirtualSmb": {"Shares": [{"Name": "os", "Path": str(tmp_path / "no")}]}}))
    with pytest.raises(errors.NotVirtualDiskError):
        bad = tmp_path / "layer.vhd"
        bad.write_bytes(b"x" * 4096)
        _create(hcs, _vm({"VirtualPMem": {"Devices": {"0": {"HostPath": str(bad)}}}}))
    _create(hcs, _vm({"VirtualSmb": {"Shares": [{"Name": "os", "Path": str(tmp_path)}]},
                      "VirtualPMem": {"Devices": {"0": {"HostPath": str(make_vhd(tmp_path / "l.vhd"))}}}}))


def test_hot_add_is_checked_and_a_refused_one_changes_nothing(hcs: ModuleType, tmp_path: Path) -> None:
    good = make_vhdx(tmp_path / "d.vhdx")
    junk = tmp_path / "junk.vhdx"
    junk.write_bytes(b"junk" * 200)
    with operation(hcs) as op:
        handle = hcs.hcs_create_compute_system(new_id("fid-hot"), _vm(), op)
        try:
            wait(hcs, op)
            hcs.hcs_start_compute_system(handle, op)
            wait(hcs, op)

            def modify(resource: str, settings: Any, request: str = "Add") -> None:
                hcs.hcs_modify_compute_system(handle, op, json.dumps(
                    {"ResourcePath": resource, "RequestType": request, "Settings": settings}))
                wait(hcs, op)

            lun = "VirtualMachine/Devices/Scsi/0/Attachments/0"
            with pytest.raises(errors.Win32FileNotFoundError):
                modify(lun, {"Type": "VirtualDisk", "Path": str(tmp_path / "none.vhdx")})
            with pytest.raises(errors.NotVirtualDiskError):
                modify(lun, {"Type": "VirtualDisk", "Path": str(junk)})
            with pytest.raises(errors.NotVirtualDiskError):
                modify("VirtualMachine/Devices/Scsi/1", {"Attachments": {"0": {"Path": str(junk)}}})
            with pytest.raises(errors.Win32FileNotFoundError):
                modify("VirtualMachine/Devices/VirtualSmb/Shares", {"Name": "x", "Path": str(tmp_path / "no")})
            hcs.hcs_get_compute_system_properties(handle, op, json.dumps(
                {"PropertyTypes": ["EmulatorConfiguration"]}))
            config = json.loads(wait(hcs, op) or "{}")["EmulatorConfiguration"]
            assert "Devices" not in config["VirtualMachine"]  # nothing refused was recorded
            modify(lun, {"Type": "VirtualDisk", "Path": str(good)})
            modify(lun, {"Type": "VirtualDisk", "Path": str(junk)}, "Remove")  # a removal opens no file
            hcs.hcs_terminate_compute_system(handle, op)
            wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(handle)


# ------------------------------------------------------------------ GUID-typed members

_GUID = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
_NOT_GUIDS = ["GUID", "{" + _GUID + "}", _GUID[:-1], _GUID.replace("-", ""), _GUID + "0",
              _GUID.replace("1f", "zz")]


def _with_adapter(endpoint: str) -> str:
    return _vm({"NetworkAdapters": {"nic0": {"EndpointId": endpoint, "MacAddress": "00-15-5D-00-00-01"}}})


def _with_cpu_group(group: str) -> str:
    config = json.loads(_vm())
    config["VirtualMachine"]["ComputeTopology"]["Processor"] = {"Count": 1, "CpuGroup": {"Id": group}}
    return json.dumps(config)


def _container_layer(layer_id: str, path: Path) -> str:
    return json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1},
                       "Container": {"Storage": {"Layers": [{"Id": layer_id, "Path": str(path)}]}}})


@pytest.mark.parametrize("text", _NOT_GUIDS)
def test_guid_members_refuse_what_is_no_guid(hcs: ModuleType, tmp_path: Path, text: str) -> None:
    for config, member in ((_with_adapter(text), "EndpointId"),
                           (_container_layer(text, tmp_path), "Layers[0].Id"),
                           (_with_cpu_group(text), "CpuGroup.Id")):
        with pytest.raises(errors.InvalidJsonError) as err:
            _create(hcs, config)
        assert member in str(err.value)


def test_guid_members_take_guids_of_either_case(hcs: ModuleType, tmp_path: Path) -> None:
    _create(hcs, _with_adapter(_GUID.upper()))
    _create(hcs, _container_layer(_GUID, tmp_path))


def test_a_modify_checks_the_guid_members_of_its_settings(hcs: ModuleType) -> None:
    with operation(hcs) as op:
        handle = hcs.hcs_create_compute_system(new_id("fid-guid"), _vm(), op)
        try:
            wait(hcs, op)
            hcs.hcs_start_compute_system(handle, op)
            wait(hcs, op)

            def add(resource: str, settings: Any) -> None:
                hcs.hcs_modify_compute_system(handle, op, json.dumps(
                    {"ResourcePath": resource, "RequestType": "Add", "Settings": settings}))
                wait(hcs, op)

            with pytest.raises(errors.InvalidJsonError, match="EndpointId"):
                add("VirtualMachine/Devices/NetworkAdapters/nic0", {"EndpointId": "{" + _GUID + "}"})
            with pytest.raises(errors.InvalidJsonError, match="InstanceId"):
                add("VirtualMachine/Devices/NetworkAdapters", {"nic1": {"InstanceId": "x"}})
            add("VirtualMachine/Devices/NetworkAdapters/nic0", {"EndpointId": _GUID})
            hcs.hcs_terminate_compute_system(handle, op)
            wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(handle)


# ------------------------------------------------------------------ malformed fault variables

_MALFORMED_SCRIPT = r"""
import importlib, json, sys
from pyhcs import errors
hcs = importlib.import_module(sys.argv[2])
def faults():
    doc = json.loads(hcs.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorFaults"]})))
    return doc["Properties"][0]
failures = []
for call in (lambda: hcs.hcs_enumerate_compute_systems(None, 0),
             lambda: hcs.hcs_get_service_properties(None)):
    try:
        call()
        failures.append("ran")
    except errors.HcsError as e:
        failures.append(hex(e.hresult))
try:  # it returns a handle, not an HRESULT: NULL, which the binding reports
    hcs.hcs_create_operation()
    failures.append("ran")
except errors.HcsError:
    pass
reported = faults()
hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": json.loads(sys.argv[1])}))
op = hcs.hcs_create_operation()
hcs.hcs_close_operation(op)
print(json.dumps({"failures": failures, "reported": reported, "after": faults()}))
"""


@pytest.mark.parametrize(("variable", "value"), [
    ("HCSEMU_FAULTS", "{not json"),
    ("HCSEMU_FAULTS", '{"Faults": [{"Function": "HcsNoSuchFunction"}]}'),
    ("HCSEMU_SETTINGS", '{"ShutdownGraceMs": "soon"}'),
])
@pytest.mark.parametrize("fix", ["reset", "set"])
def test_a_malformed_fault_variable_fails_every_call(hcs: ModuleType, variable: str, value: str,
                                                      fix: str) -> None:
    backend = "cython" if hcs.__name__ == "pyhcs._native.cython._core" else "ctypes"
    env = {k: v for k, v in os.environ.items() if k not in ("HCSEMU_FAULTS", "HCSEMU_SETTINGS")}
    env.update({"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYHCS_BACKEND": backend,
                variable: value})
    settings: Any = {"Reset": True} if fix == "reset" else {"Faults": []}
    out = subprocess.run([sys.executable, "-c", _MALFORMED_SCRIPT, json.dumps(settings), hcs.__name__], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["failures"] == [hex(0x8037010D)] * 2  # HCS_E_INVALID_JSON, at once
    [entry] = result["reported"]
    assert entry["Variable"] == variable and variable in entry["Error"]
    assert entry["HResult"] == 0x8037010D and entry["Function"] == "*"
    assert result["after"] == []
    assert variable in out.stderr
