"""The builders produce the documents of hcs-schema-notes.md section 5."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from test_schema_examples import EXAMPLES

from pyhcs.schema import (
    Attachment,
    AttachmentType,
    ComputeSystem,
    HcsModel,
    HostedSystem,
    HvSocketServiceConfig,
    ModifySettingRequest,
    Plan9Share,
    RegistryKey,
    RegistryValue,
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


def _uvm(**kwargs: Any) -> ComputeSystem:
    return builders.windows_utility_vm(
        os_files_path="C:\\layers\\<base-os-layer>\\UtilityVM\\Files",
        scratch_vhdx="C:\\uvm\\sandbox.vhdx",
        owner="my-runtime",
        **kwargs,
    )


def _without_deferred_commit(doc: Any) -> Any:
    del doc["VirtualMachine"]["ComputeTopology"]["Memory"]["EnableDeferredCommit"]
    return doc


def _hosted_kwargs() -> dict[str, Any]:
    return {
        "layers": [(APP[0], VSMB + "s1"), (BASE[0], VSMB + "s2")],
        "scratch_path": "C:\\c\\1\\scratch",
        "owner": "my-runtime",
        "mapped_directories": [builders.mapped_directory(VSMB + "s3", "c:\\mappedro",
                                                         read_only=True)],
    }


def test_windows_utility_vm() -> None:
    # The example is hcsshim's document with deferred commit asked for.
    assert wire(_uvm(deferred_commit=True)) == example("5.2a")


def test_windows_utility_vm_defers_commit_only_on_request() -> None:
    memory = wire(_uvm())["VirtualMachine"]["ComputeTopology"]["Memory"]
    assert memory == {"SizeInMB": 1024, "AllowOvercommit": True, "EnableHotHint": True}
    physical = wire(_uvm(allow_overcommit=False))["VirtualMachine"]["ComputeTopology"]
    assert physical["Memory"] == {"SizeInMB": 1024}


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
    assert wire(uvm) == _without_deferred_commit(example("5.2a"))
    assert wire(ctr) == example("5.2b")


def test_linux_utility_vm_kernel_direct() -> None:
    cmdline = example("5.3")["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]["KernelCmdLine"]
    doc = builders.linux_utility_vm(
        boot_files_path="C:\\ContainerPlat\\LinuxBootFiles",
        kernel_cmdline=cmdline,
        owner="my-runtime",
    )
    expected = example("5.3")
    # The example names its controller "0"; hcsshim names it by its GUID, as add_scsi_disk.
    expected["VirtualMachine"]["Devices"]["Scsi"] = {builders.DEFAULT_SCSI_CONTROLLER: {}}
    assert wire(doc) == expected


def test_linux_utility_vm_uefi() -> None:
    doc = builders.linux_utility_vm(boot_files_path="C:\\boot", kernel_cmdline="quiet",
                                    kernel_direct=False, plan9=False, scsi_controllers=())
    vm = wire(doc)["VirtualMachine"]
    assert vm["Chipset"] == {"Uefi": {"BootThis": {
        "DeviceType": "VmbFs", "DevicePath": "\\vmlinux",
        "OptionalData": "initrd=/initrd.img quiet", "VmbFsRootPath": "C:\\boot"}}}
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
                                       "Port": 564, "Flags": 5}
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


# --------------------------------------------------------------------------- hcsshim's shapes


def test_scsi_controllers_are_named_as_hcsshim_names_them() -> None:
    assert builders.SCSI_CONTROLLER_GUIDS[0] == "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
    lcow = wire(builders.linux_utility_vm(boot_files_path="C:\\b", scsi_controllers=4))
    assert list(lcow["VirtualMachine"]["Devices"]["Scsi"]) == list(builders.SCSI_CONTROLLER_GUIDS)
    first = wire(builders.linux_utility_vm(boot_files_path="C:\\b"))
    assert list(first["VirtualMachine"]["Devices"]["Scsi"]) == [builders.DEFAULT_SCSI_CONTROLLER]
    # add_scsi_disk and remove_scsi_disk address the same controllers, by index or name.
    for controller in (0, builders.DEFAULT_SCSI_CONTROLLER):
        path = wire(builders.add_scsi_disk("C:\\d.vhdx", lun=2, controller=controller))
        assert path["ResourcePath"] == (
            f"VirtualMachine/Devices/Scsi/{builders.DEFAULT_SCSI_CONTROLLER}/Attachments/2")
    removed = wire(builders.remove_scsi_disk(lun=2, controller=3))["ResourcePath"]
    assert removed == "VirtualMachine/Devices/Scsi/305891a9-b251-5dfe-91a2-c25d9212275b/Attachments/2"
    with pytest.raises(ValueError):
        builders.add_scsi_disk("C:\\d.vhdx", lun=0, controller=4)
    with pytest.raises(ValueError):
        builders.linux_utility_vm(boot_files_path="C:\\b", scsi_controllers=5)


def test_extensible_virtual_disk_attachment() -> None:
    doc = builders.add_scsi_disk("evd://space/myvolume", lun=3,
                                 attachment_type="ExtensibleVirtualDisk",
                                 extensible_virtual_disk_type="space")
    assert wire(doc)["Settings"] == {"Type": "ExtensibleVirtualDisk",
                                     "Path": "evd://space/myvolume", "ReadOnly": False,
                                     "ExtensibleVirtualDiskType": "space"}
    assert doc.settings.type is AttachmentType.EXTENSIBLE_VIRTUAL_DISK
    # hcsshim's own document passes strict parsing.
    text = ('{"ResourcePath": "VirtualMachine/Devices/Scsi/0/Attachments/1", "RequestType": '
            '"Add", "Settings": {"Type":"ExtensibleVirtualDisk","Path":"evd://space/myvolume",'
            '"ExtensibleVirtualDiskType":"space"}}')
    ModifySettingRequest.from_json(text, strict=True)


def test_uefi_linux_boot_keeps_the_initrd() -> None:
    def optional_data(**kwargs: Any) -> Any:
        doc = builders.linux_utility_vm(boot_files_path="C:\\b", kernel_direct=False, **kwargs)
        return wire(doc)["VirtualMachine"]["Chipset"]["Uefi"]["BootThis"].get("OptionalData")

    assert optional_data() == "initrd=/initrd.img"
    assert optional_data(initrd_file="rootfs.img", kernel_cmdline="quiet") == (
        "initrd=/rootfs.img quiet")
    assert optional_data(initrd_file=None, kernel_cmdline="root=/dev/sda") == "root=/dev/sda"
    assert optional_data(initrd_file=None) is None
    direct = builders.linux_utility_vm(boot_files_path="C:\\b", initrd_file=None)
    assert "InitRdPath" not in wire(direct)["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]


def test_vsmb_backup_privilege_only_for_layers_and_os() -> None:
    mapped = wire(builders.add_vsmb_share("s2", "C:\\data"))["Settings"]["Options"]
    assert mapped == {"ReadOnly": True, "ShareRead": True, "CacheIo": True,
                      "PseudoOplocks": True}
    layer = wire(builders.add_vsmb_share("s1", "C:\\l1", backup_privilege=True))
    assert layer["Settings"]["Options"]["TakeBackupPrivilege"] is True
    writable = wire(builders.add_vsmb_share("s3", "C:\\rw", read_only=False))
    assert writable["Settings"]["Options"] == {}
    restricted = wire(builders.add_vsmb_share("s4", "C:\\f", restrict_to=["a.txt"]))
    assert restricted["Settings"]["AllowedFiles"] == ["a.txt"]
    os_share = wire(_uvm())["VirtualMachine"]["Devices"]["VirtualSmb"]["Shares"][0]
    assert os_share["Options"]["TakeBackupPrivilege"] is True


def test_plan9_share_flags_and_guest_mount() -> None:
    doc = builders.add_plan9_share("1", "C:\\share", guest_path="/run/mounts/m1",
                                   read_only=True)
    assert wire(doc) == {
        "ResourcePath": "VirtualMachine/Devices/Plan9/Shares",
        "RequestType": "Add",
        "Settings": {"Name": "1", "AccessName": "1", "Path": "C:\\share", "Port": 564,
                     "Flags": 5},
        "GuestRequest": {"ResourceType": "MappedDirectory", "RequestType": "Add",
                         "Settings": {"MountPath": "/run/mounts/m1", "ShareName": "1",
                                      "Port": 564, "ReadOnly": True}},
    }
    writable = wire(builders.add_plan9_share("2", "C:\\rw"))
    assert writable["Settings"]["Flags"] == 4 and "GuestRequest" not in writable
    restricted = wire(builders.add_plan9_share("3", "C:\\f", restrict_to=["x"]))
    assert restricted["Settings"]["Flags"] == 4 | 0x80
    assert restricted["Settings"]["AllowedFiles"] == ["x"]
    # What the builder sends passes strict parsing, guest request included.
    ModifySettingRequest.from_json(doc.to_json(), strict=True)


def test_container_resource_parameters() -> None:
    doc = builders.process_isolated_container(
        layers=[BASE], scratch_path="s", processor_count=2, processor_maximum=5000,
        processor_weight=200, storage_iops_maximum=500, storage_bandwidth_maximum=10**6,
        dns_search_list=["corp.example", "example"], allow_unqualified_dns_query=True,
        network_namespace="ns", network_shared_container_name="other",
        mapped_pipes=[builders.mapped_pipe("\\\\.\\pipe\\host", "ctr")],
        assigned_devices=[builders.assigned_device("5B45201D-F2F2-4F3B-85BB-30FF1F953599"),
                          builders.assigned_device(location_path="PCIROOT(0)#PCI(0100)")],
        registry_values=[RegistryValue(Key=RegistryKey(Hive="System", Name="ControlSet001\\x"),
                                       Name="Start", DWordValue=2, Type="DWord")],
    )
    ctr = wire(doc)["Container"]
    assert ctr["Processor"] == {"Count": 2, "Maximum": 5000, "Weight": 200}
    assert ctr["Storage"]["QoS"] == {"IopsMaximum": 500, "BandwidthMaximum": 1000000}
    assert ctr["Networking"] == {"Namespace": "ns", "DnsSearchList": "corp.example,example",
                                 "AllowUnqualifiedDnsQuery": True,
                                 "NetworkSharedContainerName": "other"}
    assert ctr["MappedPipes"] == [{"ContainerPipeName": "ctr", "HostPath": "\\\\.\\pipe\\host"}]
    assert ctr["AssignedDevices"] == [
        {"Type": "ClassGuid", "InterfaceClassGuid": "5B45201D-F2F2-4F3B-85BB-30FF1F953599"},
        {"Type": "DeviceInstance", "LocationPath": "PCIROOT(0)#PCI(0100)"},
    ]
    assert ctr["RegistryChanges"]["AddValues"][0]["DWordValue"] == 2
    hosted = wire(builders.hosted_container(hosting_system_id="u", layers=[BASE],
                                            scratch_path="s", processor_maximum=100))
    assert hosted["HostedSystem"]["Container"]["Processor"] == {"Maximum": 100}
    mapped = wire(builders.add_mapped_pipe("\\\\.\\pipe\\h", "c"))
    assert mapped["ResourcePath"] == "Container/MappedPipes"


def test_vm_parameters() -> None:
    service = HvSocketServiceConfig(BindSecurityDescriptor="D:P(A;;FA;;;SY)")
    guid = "0000abcd-facb-11e6-bd58-64006a7986d3"
    lcow = wire(builders.linux_utility_vm(
        boot_files_path="C:\\b", vpmem_count=16, vpmem_size_bytes=2**30,
        hvsocket_services={guid: service}, processor_limit=50000, processor_weight=100,
        storage_iops_maximum=10, console_pipe="\\\\.\\pipe\\com1", deferred_commit=True,
    ))["VirtualMachine"]
    assert lcow["Devices"]["VirtualPMem"] == {"MaximumCount": 16, "MaximumSizeBytes": 2**30}
    assert lcow["Devices"]["HvSocket"]["HvSocketConfig"]["ServiceTable"] == {
        guid: {"BindSecurityDescriptor": "D:P(A;;FA;;;SY)"}}
    assert lcow["ComputeTopology"]["Processor"] == {"Count": 2, "Limit": 50000, "Weight": 100}
    assert lcow["ComputeTopology"]["Memory"]["EnableDeferredCommit"] is True
    assert lcow["StorageQoS"] == {"IopsMaximum": 10}
    assert lcow["Devices"]["ComPorts"] == {"0": {"NamedPipe": "\\\\.\\pipe\\com1"}}
    wcow = wire(_uvm(registry_values=[RegistryValue(
        Key=RegistryKey(Hive="System", Name="CurrentControlSet\\Services\\gns"),
        Name="EnableCompartmentNamespace", DWordValue=1, Type="DWord")],
        hvsocket_services={guid: service}, processor_weight=5))["VirtualMachine"]
    assert wcow["RegistryChanges"]["AddValues"][0]["Name"] == "EnableCompartmentNamespace"
    assert guid in wcow["Devices"]["HvSocket"]["HvSocketConfig"]["ServiceTable"]
    vpmem = wire(builders.add_vpmem_device(3, "C:\\layer.vhd"))
    assert vpmem == {"ResourcePath": "VirtualMachine/Devices/VirtualPMem/Devices/3",
                     "RequestType": "Add",
                     "Settings": {"HostPath": "C:\\layer.vhd", "ReadOnly": True,
                                  "ImageFormat": "Vhd1"}}
    svc = wire(builders.add_hvsocket_service(guid, bind_security_descriptor="D:P"))
    assert svc["ResourcePath"].endswith(f"ServiceTable/{guid}")
    for request in (builders.add_vpmem_device(3, "C:\\l.vhd"),
                    builders.add_hvsocket_service(guid)):
        ModifySettingRequest.from_json(request.to_json(), strict=True)
