"""Host service and VM utility functions at the raw level (spec sections 2.4, 2.5, 8.2)."""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyhcs import errors

from rawutil import operation, running_system, wait


def service(hcs: ModuleType, *types: str) -> list[Any]:
    doc = json.loads(hcs.hcs_get_service_properties(json.dumps({"PropertyTypes": list(types)})))
    props: list[Any] = doc["Properties"]
    return props


def modify_service(hcs: ModuleType, kind: str, settings: Any) -> str | None:
    result: str | None = hcs.hcs_modify_service_settings(json.dumps({"PropertyType": kind, "Settings": settings}))
    return result


def test_basic_and_topology(hcs: ModuleType) -> None:
    assert json.loads(hcs.hcs_get_service_properties(None))["Properties"] == service(hcs, "Basic")
    basic, topo, qos, ccg = service(hcs, "Basic", "ProcessorTopology", "QoSCapabilities", "ContainerCredentialGuard")
    assert basic["SupportedSchemaVersions"][-1]["Major"] == 2
    assert topo["LogicalProcessorCount"] == os.cpu_count() == len(topo["LogicalProcessors"])
    assert isinstance(qos["ProcessorQoSSupported"], bool)
    assert ccg == {"Instances": []}
    with pytest.raises(errors.InvalidJsonError):
        service(hcs, "Memory")  # the ServiceSample's doc bug: not a service property
    with pytest.raises(errors.InvalidJsonError):
        hcs.hcs_get_service_properties("{")


def test_cpu_groups(hcs: ModuleType) -> None:
    gid = "6ac5a1a4-3c4c-4e2b-9c6e-0d9f1d2b6a01"
    modify_service(hcs, "CpuGroup", {"Operation": "CreateGroup", "OperationDetails": {"GroupId": gid, "LogicalProcessorCount": 1, "LogicalProcessors": [0]}})
    try:
        with pytest.raises(errors.AlreadyExistsError):
            modify_service(hcs, "CpuGroup", {"Operation": "CreateGroup", "OperationDetails": {"GroupId": gid, "LogicalProcessors": [0]}})
        modify_service(hcs, "CpuGroup", {"Operation": "SetProperty", "OperationDetails": {"GroupId": gid, "PropertyCode": 1, "PropertyValue": 100}})
        (groups,) = service(hcs, "CpuGroup")
        (g,) = [x for x in groups["CpuGroups"] if x["GroupId"] == gid]
        assert g["Affinity"]["LogicalProcessors"] == [0]
        assert g["GroupProperties"] == [{"PropertyCode": 1, "PropertyValue": 100}]
        other = "0d1c2b3a-4f5e-4d6c-8b7a-695847362514"
        with pytest.raises(errors.InvalidArgumentError):
            modify_service(hcs, "CpuGroup", {"Operation": "CreateGroup", "OperationDetails": {"GroupId": other, "LogicalProcessors": [4096]}})
        for not_a_guid in ("GUID", "x", gid + "0", "{" + gid + "}"):  # a GUID-typed member
            with pytest.raises(errors.InvalidJsonError, match="GroupId"):
                modify_service(hcs, "CpuGroup", {"Operation": "CreateGroup", "OperationDetails": {"GroupId": not_a_guid, "LogicalProcessors": [0]}})
    finally:
        modify_service(hcs, "CpuGroup", {"Operation": "DeleteGroup", "OperationDetails": {"GroupId": gid}})
    with pytest.raises(errors.ElementNotFoundError):
        modify_service(hcs, "CpuGroup", {"Operation": "DeleteGroup", "OperationDetails": {"GroupId": gid}})
    with pytest.raises(errors.InvalidJsonError):
        modify_service(hcs, "Nonsense", {})
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_modify_service_settings("")


def test_emulator_settings_are_validated(hcs: ModuleType) -> None:
    with pytest.raises(errors.InvalidJsonError) as exc:
        modify_service(hcs, "Emulator", {"NoSuchSwitch": True})
    assert "NoSuchSwitch" in exc.value.message
    with pytest.raises(errors.InvalidJsonError):
        modify_service(hcs, "Emulator", {"LegacyErrorForms": "yes"})
    modify_service(hcs, "Emulator", {"ShutdownGraceMs": 1234})
    (s,) = service(hcs, "EmulatorSettings")
    assert s["ShutdownGraceMs"] == 1234 and s["CancelOperation"] == "NotImplemented"
    with pytest.raises(errors.InvalidJsonError):
        modify_service(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsNope", "HResult": -1}]})
    with pytest.raises(errors.InvalidJsonError):
        modify_service(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsStartComputeSystem"}]})


def test_call_counts_and_seeded_probability(hcs: ModuleType) -> None:
    (before,) = service(hcs, "EmulatorCallCounts")
    with operation(hcs) as op:
        hcs.hcs_enumerate_compute_systems(None, op)
        wait(hcs, op)
    (after,) = service(hcs, "EmulatorCallCounts")
    assert after["HcsEnumerateComputeSystems"] == before.get("HcsEnumerateComputeSystems", 0) + 1

    def pattern() -> list[bool]:
        hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Reset": True, "Faults": [
            {"Function": "HcsEnumerateComputeSystems", "HResult": "0x80370109", "Probability": 0.5, "Seed": 7}]}}))
        out: list[bool] = []
        with operation(hcs) as op:
            for _ in range(32):
                try:
                    hcs.hcs_enumerate_compute_systems(None, op)
                    wait(hcs, op)
                    out.append(False)
                except errors.ConnectionTimeoutError:
                    out.append(True)
        return out

    first = pattern()
    assert first == pattern()  # seeded: the same failures in the same places
    assert 0 < sum(first) < 32


def test_wer_reports_are_validated_and_recorded(hcs: ModuleType) -> None:
    report = {"SystemId": "vm1", "ActivityId": "00000000-0000-0000-0000-000000000001", "CrashParameters": [1, 2, 3, 4, 5]}
    hcs.hcs_submit_wer_report(json.dumps(report))
    (reports,) = service(hcs, "EmulatorWerReports")
    assert report in reports
    for bad in ("{", "[]", json.dumps({"SystemId": 5})):
        with pytest.raises(errors.InvalidJsonError):
            hcs.hcs_submit_wer_report(bad)


def test_state_files(hcs: ModuleType, tmp_path: Path) -> None:
    vmgs, vmrs = tmp_path / "g.vmgs", tmp_path / "r.vmrs"
    hcs.hcs_create_empty_guest_state_file(str(vmgs))
    hcs.hcs_create_empty_runtime_state_file(str(vmrs))
    assert vmgs.read_bytes().startswith(b"HCSEMU-VMGS 1\n")
    assert json.loads(vmrs.read_bytes().split(b"\n", 1)[1])["Kind"] == "RuntimeState"
    with pytest.raises(errors.Win32FileExistsError):
        hcs.hcs_create_empty_guest_state_file(str(vmgs))
    with pytest.raises(errors.PathNotFoundError):
        hcs.hcs_create_empty_runtime_state_file(str(tmp_path / "missing" / "r.vmrs"))
    with pytest.raises(errors.InvalidDataError):  # an empty runtime state holds no saved state
        hcs.hcs_get_processor_compatibility_from_saved_state(str(vmrs))
    with pytest.raises(errors.Win32FileNotFoundError):
        hcs.hcs_get_processor_compatibility_from_saved_state(str(tmp_path / "nope.vmrs"))
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_create_empty_guest_state_file("")


def _acl(path: Path) -> list[dict[str, Any]]:
    try:
        raw = os.getxattr(path, "user.hcs.acl")
    except OSError:
        sidecar = Path(str(path) + ".hcs-acl")
        raw = sidecar.read_bytes() if sidecar.exists() else b"[]"
    result: list[dict[str, Any]] = json.loads(raw)
    return result


def test_vm_access_grants(hcs: ModuleType, tmp_path: Path) -> None:
    disk = tmp_path / "disk.vhdx"
    disk.write_bytes(b"x")
    vm = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
    hcs.hcs_grant_vm_access(vm, str(disk))
    hcs.hcs_grant_vm_access(vm, str(disk))  # idempotent
    hcs.hcs_grant_vm_access("my-vm-name", str(disk))  # ids need not be GUIDs
    hcs.hcs_grant_vm_group_access(str(disk))
    acl = _acl(disk)
    sids = [a["Sid"] for a in acl]
    assert len(sids) == 3 and len(set(sids)) == 3
    assert "S-1-5-83-0" in sids
    assert all(s.startswith("S-1-5-83-") for s in sids)
    (mine,) = [a for a in acl if a.get("VmId") == vm]
    # the four little-endian words of the GUID, as Windows lays a GUID out in memory
    words = struct.unpack("<4I", uuid.UUID(vm).bytes_le)
    assert mine["Sid"] == "S-1-5-83-1-" + "-".join(map(str, words))
    hcs.hcs_revoke_vm_access(vm, str(disk))
    hcs.hcs_revoke_vm_group_access(str(disk))
    assert [a.get("VmId") for a in _acl(disk)] == ["my-vm-name"]
    hcs.hcs_revoke_vm_access("my-vm-name", str(disk))
    assert _acl(disk) == []
    with pytest.raises(errors.Win32FileNotFoundError):
        hcs.hcs_grant_vm_access(vm, str(tmp_path / "missing"))
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_grant_vm_access("", str(disk))


def test_saved_state_feeds_processor_compatibility(hcs: ModuleType, tmp_path: Path) -> None:
    vmrs = tmp_path / "saved.vmrs"
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_pause_compute_system(h, op, None)
        wait(hcs, op)
        hcs.hcs_save_compute_system(h, op, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(vmrs)}))
        wait(hcs, op)
    compat = json.loads(hcs.hcs_get_processor_compatibility_from_saved_state(str(vmrs)))
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if " sse4_2" in cpuinfo:
        assert "Sse4_2" in compat["ProcessorFeatures"]
    assert compat["NonArchitecturalCoreSharing"] == "Unreported"
