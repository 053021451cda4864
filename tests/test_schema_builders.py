"""The builders produce the documents of hcs-schema-notes.md section 5."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from test_schema_examples import EXAMPLES

from pyhcs.schema import (
    Attachment,
    ComputeSystem,
    HcsModel,
    HostedSystem,
    Plan9Share,
    builders,
    check_version,
)

BASE = ("02740e08-d1d3-5715-9c08-c255eab4ca01", "C:\\layers\\<base-os-layer>")
APP = ("6ba9cac1-7086-5ee9-a197-c465d3f50ad7", "C:\\layers\\<app-layer>")
VSMB = "\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\"


def example(label: str) -> Any:
    return json.loads(next(text for lab, _, text in EXAMPLES if lab.startswith(label)))


def wire(doc: HcsModel) -> Any:
    return json.loads(doc.to_json())


def test_process_isolated_container() -> None:
    doc = builders.process_isolated_container(
        layers=[APP, BASE],
        scratch_path="\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}\\",
        owner="my-runtime",
        hostname="ctr1",
        mapped_directories=[builders.mapped_directory("C:\\data", "C:\\data", read_only=True)],
        network_namespace="<HNS namespace GUID>",
        processor_count=2,
        memory_mb=1024,
    )
    assert wire(doc) == example("5.1")


def _uvm() -> ComputeSystem:
    return builders.windows_utility_vm(
        os_files_path="C:\\layers\\<base-os-layer>\\UtilityVM\\Files",
        scratch_vhdx="C:\\uvm\\sandbox.vhdx",
        owner="my-runtime",
    )


def _hosted_kwargs() -> dict[str, Any]:
    return {
        "layers": [(APP[0], VSMB + "s1"), (BASE[0], VSMB + "s2")],
        "scratch_path": "C:\\c\\1\\scratch",
        "owner": "my-runtime",
        "mapped_directories": [builders.mapped_directory(VSMB + "s3", "c:\\mappedro",
                                                         read_only=True)],
    }


def test_windows_utility_vm() -> None:
    assert wire(_uvm()) == example("5.2a")


def test_hosted_container() -> None:
    doc = builders.hosted_container(hosting_system_id="<uvm id>", **_hosted_kwargs())
    assert isinstance(doc.hosted_system, HostedSystem)
    assert wire(doc) == example("5.2b")


def test_hyperv_isolated_container_gives_both_documents() -> None:
    uvm, ctr = builders.hyperv_isolated_container(
        uvm_id="<uvm id>",
        os_files_path="C:\\layers\\<base-os-layer>\\UtilityVM\\Files",
        uvm_scratch_vhdx="C:\\uvm\\sandbox.vhdx",
        **_hosted_kwargs(),
    )
    assert wire(uvm) == example("5.2a")
    assert wire(ctr) == example("5.2b")


def test_linux_utility_vm_kernel_direct() -> None:
    cmdline = example("5.3")["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]["KernelCmdLine"]
    doc = builders.linux_utility_vm(
        boot_files_path="C:\\ContainerPlat\\LinuxBootFiles",
        kernel_cmdline=cmdline,
        owner="my-runtime",
    )
    assert wire(doc) == example("5.3")


def test_linux_utility_vm_uefi() -> None:
    doc = builders.linux_utility_vm(boot_files_path="C:\\boot", kernel_cmdline="quiet",
                                    kernel_direct=False, plan9=False, scsi_controllers=())
    vm = wire(doc)["VirtualMachine"]
    assert vm["Chipset"] == {"Uefi": {"BootThis": {
        "DeviceType": "VmbFs", "DevicePath": "\\vmlinux", "OptionalData": "quiet",
        "VmbFsRootPath": "C:\\boot"}}}
    assert "Plan9" not in vm["Devices"] and "Scsi" not in vm["Devices"]
    assert check_version(doc) == []  # UEFI boot needs nothing newer than 2.1


def test_process_parameters() -> None:
    expected = example("5.4 process parameters")
    del expected["EmulateConsole"]  # False is left out, as hcsshim does
    doc = builders.process_parameters(
        "cmd.exe /c echo hello",
        working_directory="C:\\",
        user="ContainerUser",
        environment={"PATH": "C:\\Windows\\system32;C:\\Windows"},
        stdin=True,
        console_size=(25, 80),
    )
    assert wire(doc) == expected
    linux = builders.process_parameters(args=["/bin/echo", "hi"], stdout=False, stderr=False)
    assert wire(linux) == {"CommandArgs": ["/bin/echo", "hi"]}
    with pytest.raises(ValueError):
        builders.process_parameters()


def test_modify_requests() -> None:
    disk = builders.add_scsi_disk("C:\\data\\disk.vhdx", lun=1)
    assert wire(disk) == example("5.4 hot-add disk")
    assert isinstance(disk.settings, Attachment)
    assert wire(builders.update_memory_size(4096)) == example("5.4 resize memory")
    removed = builders.remove_scsi_disk(lun=1, controller="0")
    assert wire(removed) == {"ResourcePath": "VirtualMachine/Devices/Scsi/0/Attachments/1",
                             "RequestType": "Remove"}
    mapped = builders.add_mapped_directory("C:\\h", "C:\\c", read_only=True)
    assert wire(mapped) == {"ResourcePath": "Container/MappedDirectories", "RequestType": "Add",
                            "Settings": {"HostPath": "C:\\h", "ContainerPath": "C:\\c",
                                         "ReadOnly": True}}
    nic = builders.add_network_adapter("nic0", "8d0c6d6b-0a7c-4d0e-9f3a-000000000001")
    assert wire(nic)["ResourcePath"] == "VirtualMachine/Devices/NetworkAdapters/nic0"
    share = builders.add_plan9_share("s", "C:\\share", port=564, read_only=True)
    assert isinstance(share.settings, Plan9Share)
    assert wire(share)["Settings"] == {"Name": "s", "AccessName": "s", "Path": "C:\\share",
                                       "Port": 564, "Flags": 1}
    vsmb = builders.add_vsmb_share("s1", "C:\\layers\\l1")
    assert wire(vsmb)["Settings"]["Options"]["ReadOnly"] is True


def test_process_and_lifecycle_options() -> None:
    assert wire(builders.property_query("Memory", "Statistics", "ProcessList")) == example(
        "5.4 property query"
    )
    assert wire(builders.console_size(40, 120)) == example("5.4 console size")
    assert wire(builders.close_handle("StdIn")) == example("5.4 close handle")
    assert wire(builders.signal_options("CtrlC")) == example("5.4 signal")
    assert wire(builders.save_options("C:\\HCS_Test\\save.vmrs")) == example("5.4 save")
    assert wire(builders.pause_options("Suspend", reason="Save")) == example("5.4 pause")
    expected = example("5.4 shutdown")
    del expected["Force"]  # False is left out
    assert wire(builders.shutdown_options(mechanism="GuestConnection", shutdown_type="Shutdown",
                                          reason="maintenance")) == expected
    assert wire(builders.crash_options()) == {"Type": "CrashGuest"}
    assert wire(builders.service_property_query("Basic")) == example(
        "5.4 service property query"
    )


def test_layer_data() -> None:
    doc = builders.layer_data([builders.layer(*BASE, path_type="AbsolutePath")])
    assert wire(doc) == example("5.4 layer data")


def test_builders_are_strict() -> None:
    with pytest.raises(pydantic.ValidationError):
        builders.signal_options("CtrlZ")
    with pytest.raises(pydantic.ValidationError):
        builders.property_query("Memroy")


def test_builder_documents_declare_their_version() -> None:
    assert builders.schema_version("2.5").to_json() == '{"Major":2,"Minor":5}'
    doc = builders.process_isolated_container(layers=[BASE], scratch_path="s", version=(2, 5))
    assert wire(doc)["SchemaVersion"] == {"Major": 2, "Minor": 5}
    assert check_version(doc) == []
