"""pyhcs.service (properties, settings, WER reports, sweep) and pyhcs.vm (state files, access
grants, processor compatibility)."""

# Tests the private path normalisation of pyhcs.vm too.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import pyhcs
from pyhcs import ComputeSystem, emulator, errors, service, vm
from pyhcs._native import _backend as B
from pyhcs.emulator._control import EmulatorControl

from pyutil import CONFIG
from pyutil import new_id as _new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def new_id(prefix: str = "svc") -> str:
    return _new_id(prefix)


# ----------------------------------------------------------------------------- service


def test_service_properties() -> None:
    basic, topology = service.properties("Basic", "ProcessorTopology")
    assert basic["SupportedSchemaVersions"]
    assert topology["LogicalProcessorCount"] >= 1
    assert service.properties() == [basic]
    assert service.properties(query={"PropertyTypes": ["Basic"]}) == [basic]
    assert service.basic() == basic
    assert (2, 6) in service.supported_schema_versions()
    emulator.configure(SchemaMinor=3)
    assert service.supported_schema_versions() == [(2, 3)]
    with pytest.raises(TypeError):
        service.properties("Basic", query={"PropertyTypes": ["Basic"]})


def test_service_property_errors() -> None:
    with pytest.raises(errors.HcsError) as exc:
        service.properties(query="{not json")
    assert exc.value.call == "HcsGetServiceProperties"
    emulator.action("ServiceDisconnect")
    try:
        with pytest.raises(errors.ServiceDisconnectedError):
            service.properties("Basic")
    finally:
        emulator.action("Reconnect")


def test_modify_settings_cpu_group() -> None:
    group = str(uuid.uuid4())
    service.modify_settings({"PropertyType": "CpuGroup", "Settings": {
        "Operation": "CreateGroup",
        "OperationDetails": {"GroupId": group, "LogicalProcessorCount": 1, "LogicalProcessors": [0]},
    }})
    try:
        (groups,) = service.properties("CpuGroup")
        assert group in [g["GroupId"] for g in groups["CpuGroups"]]
    finally:
        service.modify_settings({"PropertyType": "CpuGroup", "Settings": {
            "Operation": "DeleteGroup", "OperationDetails": {"GroupId": group}}})
    with pytest.raises(errors.InvalidJsonError):
        service.modify_settings({"Settings": {}})
    with pytest.raises(errors.NotSupportedError):
        service.modify_settings({"PropertyType": "ContainerCredentialGuard", "Settings": {}})
    with pytest.raises(TypeError):
        service.modify_settings(None)


def test_wer_report_from_a_crash_event() -> None:
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        reports: list[pyhcs.Event] = []
        s.add_event_callback(lambda ev: reports.append(ev) if ev.type == pyhcs.EventType.SYSTEM_CRASH_REPORT else None)
        s.crash()
        s.wait_exit(10)
        B.flush_callbacks()
        service.submit_wer_report(reports[0].data)
        filed = EmulatorControl().query("EmulatorWerReports")
        assert any(r.get("SystemId") == s.id for r in filed)
    with pytest.raises(errors.InvalidJsonError):
        service.submit_wer_report({"CrashParameters": "not a list"})
    with pytest.raises(TypeError):
        service.submit_wer_report(None)


def test_sweep_by_owner() -> None:
    owner = new_id("owner")
    config = {**CONFIG, "Owner": owner, "ShouldTerminateOnLastHandleClosed": False}
    ids = [new_id() for _ in range(3)]
    systems = [ComputeSystem.create(i, config) for i in ids]
    try:
        systems[0].start()
        systems[1].start()
        systems[1].terminate()
        report = service.sweep(owner)
        assert report == {ids[0]: "terminated", ids[1]: "already stopped", ids[2]: "terminated"}
        assert systems[0].wait_exit(10).exit_type == "ForcedExit"
    finally:
        for s in systems:
            s.close()
    assert service.sweep(new_id("nobody")) == {}


# ----------------------------------------------------------------------------- vm


def test_state_files(tmp_path: Path) -> None:
    gs = tmp_path / "a.vmgs"
    rs = tmp_path / "a.vmrs"
    vm.create_empty_guest_state_file(gs)
    vm.create_empty_runtime_state_file(str(rs))
    assert gs.exists() and rs.exists()
    with pytest.raises(FileExistsError) as exc:
        vm.create_empty_guest_state_file(gs)
    assert isinstance(exc.value, errors.HcsError) and exc.value.filename == str(gs)
    assert exc.value.call == "HcsCreateEmptyGuestStateFile"
    with pytest.raises(FileNotFoundError):
        vm.create_empty_runtime_state_file(tmp_path / "missing-dir" / "x.vmrs")
    # an empty runtime state holds no saved state: nothing to check compatibility against
    with pytest.raises(errors.InvalidDataError):
        vm.processor_compatibility(rs)
    with pytest.raises(FileNotFoundError):
        vm.processor_compatibility(tmp_path / "nope.vmrs")


def test_state_files_in_a_vm_config(tmp_path: Path) -> None:
    gs = tmp_path / "g.vmgs"
    vm.create_empty_guest_state_file(gs)
    config = {"SchemaVersion": {"Major": 2, "Minor": 1},
              "VirtualMachine": {"GuestState": {"GuestStateFilePath": str(gs)}}}
    with ComputeSystem.create(new_id(), config) as s:
        assert s.properties()["SystemType"] == "VirtualMachine"


def test_access_grants(tmp_path: Path) -> None:
    disk = tmp_path / "disk.vhdx"
    disk.write_bytes(b"")
    vm_id = new_id("vm")
    assert vm.access_entries(disk) == []
    vm.grant_vm_access(vm_id, disk)
    vm.grant_vm_access(vm_id, disk)  # idempotent
    vm.grant_vm_group_access(str(disk))
    entries = vm.access_entries(disk)
    assert [e["Sid"].startswith("S-1-5-83-1-") for e in entries if e.get("VmId") == vm_id] == [True]
    assert any(e["Sid"] == "S-1-5-83-0" and e["Access"] == "GenericRead" for e in entries)
    vm.revoke_vm_access(vm_id, disk)
    vm.revoke_vm_group_access(disk)
    assert vm.access_entries(disk) == []
    folder = tmp_path / "vmdir"
    folder.mkdir()
    vm.grant_vm_group_access(folder)
    assert vm.access_entries(folder)[0]["Inherit"] is True
    with pytest.raises(FileNotFoundError) as exc:
        vm.grant_vm_access(vm_id, tmp_path / "missing")
    assert exc.value.filename == str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        vm.access_entries(tmp_path / "missing")


def test_processor_compatibility_of_a_saved_state(tmp_path: Path) -> None:
    path = tmp_path / "saved.vmrs"
    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        s.pause()
        s.save({"SaveType": "ToFile", "SaveStateFilePath": str(path)})
        s.terminate()
    req = vm.processor_compatibility(path)
    assert isinstance(req["ProcessorFeatures"], list) and req["CacheLineFlushSize"] > 0
    assert json.loads(json.dumps(req)) == req


# ----------------------------------------------------------------------------- paths


def test_vm_paths_are_sent_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    # The service resolves paths in a process of its own: a relative path must never reach it.
    sent: list[str] = []
    real = B.hcs_create_empty_guest_state_file

    def spy(path: str) -> None:
        sent.append(path)
        real(path)

    monkeypatch.setattr(B, "hcs_create_empty_guest_state_file", spy)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    vm.create_empty_guest_state_file(Path("sub") / ".." / "rel.vmgs")
    assert sent == [str(tmp_path / "rel.vmgs")]
    assert (tmp_path / "rel.vmgs").is_file()
    with pytest.raises(FileExistsError) as exc:
        vm.create_empty_guest_state_file("rel.vmgs")
    assert exc.value.filename == str(tmp_path / "rel.vmgs")
    vm.grant_vm_group_access("rel.vmgs")
    assert vm.access_entries("rel.vmgs") == vm.access_entries(tmp_path / "rel.vmgs") != []
    vm.revoke_vm_group_access("rel.vmgs")


@pytest.mark.parametrize(
    "given, expected",
    [
        ("C:\\vms\\a\\..\\b.vmgs", "C:\\vms\\b.vmgs"),
        ("C:/vms/./b.vmgs", "C:\\vms\\b.vmgs"),
        ("\\\\server\\share\\x\\..\\y.vhdx", "\\\\server\\share\\y.vhdx"),
        ("\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}\\a\\..\\b", "\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}\\a\\..\\b"),
        ("\\\\?\\C:\\literal\\.\\path", "\\\\?\\C:\\literal\\.\\path"),
    ],
)
def test_windows_path_rules(given: str, expected: str) -> None:
    import ntpath

    assert vm._absolute_path(given, ntpath) == expected
