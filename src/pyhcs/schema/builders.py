r"""Builders for the documents most programs send to HCS.

Each builder returns a model (strictly checked), ready for the Pythonic layer or for
``.to_json()``. They follow the shapes hcsshim and the HCS docs use; anything they do not
cover can be set on the returned model or built from the models directly.

Conventions, as in hcsshim (whose Go ``omitempty`` tags cannot send ``false``/``0``): a
boolean option that is ``False`` is left out of the document rather than sent as ``false``.

>>> from pyhcs.schema import builders
>>> doc = builders.process_isolated_container(
...     layers=[("02740e08-d1d3-5715-9c08-c255eab4ca01", "C:\\layers\\base")],
...     scratch_path="\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}\\",
...     owner="my-runtime",
... )
>>> print(doc.to_json(indent=1))
{
 "Owner": "my-runtime",
 "SchemaVersion": {
  "Major": 2,
  "Minor": 1
 },
 "Container": {
  "Storage": {
   "Layers": [
    {
     "Id": "02740e08-d1d3-5715-9c08-c255eab4ca01",
     "Path": "C:\\layers\\base"
    }
   ],
   "Path": "\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}\\"
  }
 },
 "ShouldTerminateOnLastHandleClosed": true
}
"""

from __future__ import annotations

import ntpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias, Union
from uuid import UUID

from pyhcs.schema._base import VersionLike, as_version
from pyhcs.schema._models import (
    Attachment,
    AttachmentType,
    Chipset,
    CloseHandle,
    ComPort,
    ComputeSystem,
    ConsoleSize,
    Container,
    CrashOptions,
    CrashType,
    Device,
    Devices,
    DeviceType,
    GetPropertyType,
    GuestModifySettingRequest,
    GuestOs,
    HostedSystem,
    HvSocket2,
    HvSocketServiceConfig,
    HvSocketSystemConfig,
    Layer,
    LayerData,
    LCOWMappedDirectory,
    LinuxKernelDirect,
    MappedDirectory,
    MappedPipe,
    Memory,
    ModifyResourceType,
    ModifySettingRequest,
    NetworkAdapter,
    Networking,
    PathType,
    PauseNotification,
    PauseOptions,
    PauseReason,
    PauseSuspensionLevel,
    Plan9,
    Plan9Share,
    Plan9ShareFlags,
    ProcessModifyOperation,
    ProcessModifyRequest,
    Processor,
    ProcessParameters,
    ProcessSignal,
    PropertyQuery,
    PropertyType,
    RegistryChanges,
    RegistryValue,
    RequestType,
    SaveOptions,
    SaveType,
    Scsi,
    Service_PropertyQuery,
    ShutdownMechanism,
    ShutdownOptions,
    ShutdownType,
    SignalProcessOptions,
    STDIOHandle,
    Storage,
    StorageQoS,
    Topology,
    Uefi,
    UefiBootDevice,
    UefiBootEntry,
    Version,
    VirtualMachine,
    VirtualMachineMemory,
    VirtualMachineProcessor,
    VirtualPMemController,
    VirtualPMemDevice,
    VirtualSmb,
    VirtualSmbShare,
    VirtualSmbShareOptions,
)

__all__ = [
    "DEFAULT_HVSOCKET_SDDL",
    "DEFAULT_SCHEMA_VERSION",
    "DEFAULT_SCSI_CONTROLLER",
    "PLAN9_PORT",
    "SCSI_CONTROLLER_GUIDS",
    "LayerLike",
    "add_hvsocket_service",
    "add_mapped_directory",
    "add_mapped_pipe",
    "add_network_adapter",
    "add_plan9_share",
    "add_scsi_disk",
    "add_vpmem_device",
    "add_vsmb_share",
    "assigned_device",
    "close_handle",
    "console_size",
    "crash_options",
    "hosted_container",
    "hyperv_isolated_container",
    "layer",
    "layer_data",
    "linux_utility_vm",
    "mapped_directory",
    "mapped_pipe",
    "modify_request",
    "pause_options",
    "process_isolated_container",
    "process_parameters",
    "property_query",
    "remove_scsi_disk",
    "save_options",
    "schema_version",
    "service_property_query",
    "shutdown_options",
    "signal_options",
    "update_memory_size",
    "vsmb_options",
    "windows_utility_vm",
]

#: The version hcsshim declares for containers and utility VMs from Windows Server 2019 on.
DEFAULT_SCHEMA_VERSION = (2, 1)
#: The names hcsshim gives the SCSI controllers of a utility VM, by index: version-5 GUIDs of
#: "0", "1", "2", "3" in the namespace d422512d-2bf2-4752-809d-7b82b5fcb1b4 (any unique
#: string works for HCS; these are what hcsshim's clients and guests expect).
SCSI_CONTROLLER_GUIDS: tuple[str, ...] = (
    "df6d0690-79e5-55b6-a5ec-c1e2f77f580a",
    "0110f83b-de10-5172-a266-78bca56bf50a",
    "b5d2d8d4-3a75-51bf-945b-3444dc6b8579",
    "305891a9-b251-5dfe-91a2-c25d9212275b",
)
#: The name hcsshim gives the first SCSI controller of a utility VM.
DEFAULT_SCSI_CONTROLLER = SCSI_CONTROLLER_GUIDS[0]
#: The vsock port of the Plan9 file server in a Linux utility VM, as hcsshim uses it.
PLAN9_PORT = 564
#: hv_socket binding allowed for SYSTEM and Administrators only, as hcsshim sets it up.
DEFAULT_HVSOCKET_SDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"

#: A layer: a ``Layer`` model, or ``(id, path)``.
LayerLike: TypeAlias = Union[Layer, tuple[Union[str, UUID], str]]  # noqa: UP007


def _true_or_none(flag: bool) -> bool | None:
    return True if flag else None


def schema_version(version: VersionLike = DEFAULT_SCHEMA_VERSION) -> Version:
    """``Version`` model from ``"2.1"``, ``(2, 1)``, a dict or a ``Version``."""
    major, minor = as_version(version)
    return Version(Major=major, Minor=minor)


def layer(
    layer_id: str | UUID, path: str, *, path_type: PathType | str | None = None
) -> Layer:
    """One read-only layer: its GUID and its folder (``PathType`` ``AbsolutePath`` or
    ``VirtualSmbShareName`` when given)."""
    return Layer(Id=str(layer_id), Path=path, PathType=path_type)


def _layers(layers: Iterable[LayerLike]) -> list[Layer]:
    return [item if isinstance(item, Layer) else layer(*item) for item in layers]


def mapped_directory(
    host_path: str, container_path: str, *, read_only: bool = False
) -> MappedDirectory:
    """A host folder mapped into a container."""
    return MappedDirectory(
        HostPath=host_path, ContainerPath=container_path, ReadOnly=_true_or_none(read_only)
    )


def mapped_pipe(host_path: str, container_pipe_name: str) -> MappedPipe:
    """A host named pipe (``\\\\.\\pipe\\name``) mapped into a container as
    ``\\\\.\\pipe\\<container_pipe_name>``."""
    return MappedPipe(HostPath=host_path, ContainerPipeName=container_pipe_name)


def assigned_device(
    interface_class_guid: str | None = None,
    *,
    location_path: str | None = None,
    device_type: DeviceType | str | None = None,
) -> Device:
    """A host device assigned to a process-isolated container: a device interface class
    (``ClassGuid``, the default) or one device instance by its location path
    (``DeviceInstance``)."""
    if device_type is None:
        device_type = DeviceType.DEVICE_INSTANCE if location_path else DeviceType.CLASS_GUID
    return Device(Type=device_type, InterfaceClassGuid=interface_class_guid,
                  LocationPath=location_path)


def _container(
    *,
    layers: Iterable[LayerLike],
    scratch_path: str,
    hostname: str | None,
    mapped_directories: Iterable[MappedDirectory],
    network_namespace: str | None,
    processor_count: int | None,
    memory_mb: int | None,
    processor_maximum: int | None = None,
    processor_weight: int | None = None,
    storage_iops_maximum: int | None = None,
    storage_bandwidth_maximum: int | None = None,
    dns_search_list: Sequence[str] = (),
    allow_unqualified_dns_query: bool = False,
    network_shared_container_name: str | None = None,
    mapped_pipes: Iterable[MappedPipe] = (),
    assigned_devices: Iterable[Device] = (),
    registry_values: Iterable[RegistryValue] = (),
) -> Container:
    mapped = list(mapped_directories)
    pipes = list(mapped_pipes)
    devices = list(assigned_devices)
    values = list(registry_values)
    qos = None
    if storage_iops_maximum or storage_bandwidth_maximum:
        qos = StorageQoS(IopsMaximum=storage_iops_maximum or None,
                         BandwidthMaximum=storage_bandwidth_maximum or None)
    networking = None
    if network_namespace or dns_search_list or allow_unqualified_dns_query \
            or network_shared_container_name:
        networking = Networking(
            Namespace=network_namespace,
            # hcsshim joins the OCI spec's DNS search domains with commas.
            DnsSearchList=",".join(dns_search_list) or None,
            AllowUnqualifiedDnsQuery=_true_or_none(allow_unqualified_dns_query),
            NetworkSharedContainerName=network_shared_container_name,
        )
    processor = None
    if processor_count or processor_maximum or processor_weight:
        processor = Processor(Count=processor_count or None,
                              Maximum=processor_maximum or None,
                              Weight=processor_weight or None)
    return Container(
        GuestOs=GuestOs(HostName=hostname) if hostname else None,
        Storage=Storage(Layers=_layers(layers), Path=scratch_path, QoS=qos),
        MappedDirectories=mapped or None,
        MappedPipes=pipes or None,
        Networking=networking,
        Processor=processor,
        Memory=Memory(SizeInMB=memory_mb) if memory_mb else None,
        AssignedDevices=devices or None,
        RegistryChanges=RegistryChanges(AddValues=values) if values else None,
    )


def process_isolated_container(
    *,
    layers: Iterable[LayerLike],
    scratch_path: str,
    owner: str | None = None,
    hostname: str | None = None,
    mapped_directories: Iterable[MappedDirectory] = (),
    network_namespace: str | None = None,
    processor_count: int | None = None,
    memory_mb: int | None = None,
    processor_maximum: int | None = None,
    processor_weight: int | None = None,
    storage_iops_maximum: int | None = None,
    storage_bandwidth_maximum: int | None = None,
    dns_search_list: Sequence[str] = (),
    allow_unqualified_dns_query: bool = False,
    network_shared_container_name: str | None = None,
    mapped_pipes: Iterable[MappedPipe] = (),
    assigned_devices: Iterable[Device] = (),
    registry_values: Iterable[RegistryValue] = (),
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A process-isolated Windows container ("Argon") for HcsCreateComputeSystem.

    Args:
        layers: the read-only parent layers, top-most first and the base OS layer last.
        scratch_path: the mounted scratch volume (``\\\\?\\Volume{...}\\``).
        owner: the owning client's name (shown by ``hcsdiag list``).
        hostname: the container's host name.
        mapped_directories: host folders to map (see :func:`mapped_directory`).
        network_namespace: the HNS namespace GUID.
        processor_count, memory_mb: resource limits.
        processor_maximum: CPU cap in hundredths of a percent of the host (1-10000), as
            hcsshim converts the OCI CPU maximum (``Container.Processor.Maximum``).
        processor_weight: relative CPU weight (1-10000, ``Container.Processor.Weight``).
        storage_iops_maximum, storage_bandwidth_maximum: ``Storage.QoS`` limits (bytes/s).
        dns_search_list: DNS search suffixes (sent comma-separated, as hcsshim does).
        allow_unqualified_dns_query: ``Networking.AllowUnqualifiedDnsQuery``.
        network_shared_container_name: share another container's network compartment.
        mapped_pipes: host named pipes to map (see :func:`mapped_pipe`).
        assigned_devices: host devices to assign (see :func:`assigned_device`).
        registry_values: registry values to add in the container (``RegistryChanges``).
        version: the declared ``SchemaVersion``.
        terminate_on_last_handle_closed: ``ShouldTerminateOnLastHandleClosed``.
    """
    return ComputeSystem(
        Owner=owner,
        SchemaVersion=schema_version(version),
        Container=_container(
            layers=layers,
            scratch_path=scratch_path,
            hostname=hostname,
            mapped_directories=mapped_directories,
            network_namespace=network_namespace,
            processor_count=processor_count,
            memory_mb=memory_mb,
            processor_maximum=processor_maximum,
            processor_weight=processor_weight,
            storage_iops_maximum=storage_iops_maximum,
            storage_bandwidth_maximum=storage_bandwidth_maximum,
            dns_search_list=dns_search_list,
            allow_unqualified_dns_query=allow_unqualified_dns_query,
            network_shared_container_name=network_shared_container_name,
            mapped_pipes=mapped_pipes,
            assigned_devices=assigned_devices,
            registry_values=registry_values,
        ),
        ShouldTerminateOnLastHandleClosed=_true_or_none(terminate_on_last_handle_closed),
    )


def _hvsocket(
    sddl: str, services: Mapping[str, HvSocketServiceConfig] | None
) -> HvSocket2:
    return HvSocket2(
        HvSocketConfig=HvSocketSystemConfig(
            DefaultBindSecurityDescriptor=sddl,
            ServiceTable=dict(services) if services else None,
        )
    )


def _vm_processor(count: int, limit: int | None, weight: int | None) -> VirtualMachineProcessor:
    return VirtualMachineProcessor(Count=count, Limit=limit or None, Weight=weight or None)


def windows_utility_vm(
    *,
    os_files_path: str,
    scratch_vhdx: str,
    owner: str | None = None,
    memory_mb: int = 1024,
    processor_count: int = 2,
    processor_limit: int | None = None,
    processor_weight: int | None = None,
    allow_overcommit: bool = True,
    deferred_commit: bool = False,
    scsi_controller: str = DEFAULT_SCSI_CONTROLLER,
    hvsocket_sddl: str = DEFAULT_HVSOCKET_SDDL,
    hvsocket_services: Mapping[str, HvSocketServiceConfig] | None = None,
    vsmb_direct_file_mapping_mb: int | None = 1024,
    storage_iops_maximum: int | None = None,
    storage_bandwidth_maximum: int | None = None,
    registry_values: Iterable[RegistryValue] = (),
    console_pipe: str | None = None,
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """The Windows utility VM that hosts a Hyper-V isolated container ("Xenon").

    It boots UEFI from a VSMB share named ``os`` (``os_files_path``: the base OS layer's
    ``UtilityVM\\Files`` folder) and gets its scratch VHDX as LUN 0 of one SCSI controller.
    Layers are exposed later by hot-adding VSMB shares (:func:`add_vsmb_share`).

    Args:
        allow_overcommit: back memory by the host's virtual memory (``AllowOvercommit`` and
            ``EnableHotHint``, which physical backing does not take).
        deferred_commit: ``EnableDeferredCommit``, only when asked for (as hcsshim does).
        processor_limit, processor_weight: ``Processor.Limit`` (1-100000) and ``Weight``.
        hvsocket_services: extra hv_socket service table entries, by service GUID.
        storage_iops_maximum, storage_bandwidth_maximum: ``VirtualMachine.StorageQoS``.
        registry_values: registry values to add in the guest (``RegistryChanges``).
        console_pipe: a named pipe for COM1 (``ComPorts["0"]``).
    """
    values = list(registry_values)
    qos = None
    if storage_iops_maximum or storage_bandwidth_maximum:
        qos = StorageQoS(IopsMaximum=storage_iops_maximum or None,
                         BandwidthMaximum=storage_bandwidth_maximum or None)
    return ComputeSystem(
        Owner=owner,
        SchemaVersion=schema_version(version),
        ShouldTerminateOnLastHandleClosed=_true_or_none(terminate_on_last_handle_closed),
        VirtualMachine=VirtualMachine(
            StopOnReset=True,
            Chipset=Chipset(
                Uefi=Uefi(
                    BootThis=UefiBootEntry(
                        DeviceType=UefiBootDevice.VMB_FS,
                        DevicePath="\\EFI\\Microsoft\\Boot\\bootmgfw.efi",
                    )
                )
            ),
            ComputeTopology=Topology(
                Memory=VirtualMachineMemory(
                    SizeInMB=memory_mb,
                    AllowOvercommit=_true_or_none(allow_overcommit),
                    EnableHotHint=_true_or_none(allow_overcommit),
                    EnableDeferredCommit=_true_or_none(deferred_commit),
                ),
                Processor=_vm_processor(processor_count, processor_limit, processor_weight),
            ),
            Devices=Devices(
                Scsi={
                    scsi_controller: Scsi(
                        Attachments={
                            "0": Attachment(Type=AttachmentType.VIRTUAL_DISK, Path=scratch_vhdx)
                        }
                    )
                },
                ComPorts={"0": ComPort(NamedPipe=console_pipe)} if console_pipe else None,
                HvSocket=_hvsocket(hvsocket_sddl, hvsocket_services),
                VirtualSmb=VirtualSmb(
                    DirectFileMappingInMB=vsmb_direct_file_mapping_mb,
                    Shares=[
                        VirtualSmbShare(
                            Name="os", Path=os_files_path,
                            Options=vsmb_options(read_only=True, backup_privilege=True),
                        )
                    ],
                ),
            ),
            StorageQoS=qos,
            RegistryChanges=RegistryChanges(AddValues=values) if values else None,
        ),
    )


def vsmb_options(*, read_only: bool = True, backup_privilege: bool = False,
                 no_direct_map: bool = False) -> VirtualSmbShareOptions:
    """VSMB share options as hcsshim sets them: a read-only share is ``ReadOnly``,
    ``ShareRead``, ``CacheIo`` and ``PseudoOplocks``; ``backup_privilege`` adds
    ``TakeBackupPrivilege``, which hcsshim gives the OS share and layer shares only (the guest
    must read every file of a layer whatever its ACL)."""
    return VirtualSmbShareOptions(
        ReadOnly=_true_or_none(read_only),
        ShareRead=_true_or_none(read_only),
        CacheIo=_true_or_none(read_only),
        PseudoOplocks=_true_or_none(read_only),
        TakeBackupPrivilege=_true_or_none(backup_privilege),
        NoDirectmap=_true_or_none(no_direct_map),
    )


def hosted_container(
    *,
    hosting_system_id: str,
    layers: Iterable[LayerLike],
    scratch_path: str,
    owner: str | None = None,
    hostname: str | None = None,
    mapped_directories: Iterable[MappedDirectory] = (),
    network_namespace: str | None = None,
    processor_count: int | None = None,
    memory_mb: int | None = None,
    processor_maximum: int | None = None,
    processor_weight: int | None = None,
    storage_iops_maximum: int | None = None,
    storage_bandwidth_maximum: int | None = None,
    dns_search_list: Sequence[str] = (),
    allow_unqualified_dns_query: bool = False,
    mapped_pipes: Iterable[MappedPipe] = (),
    registry_values: Iterable[RegistryValue] = (),
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A container inside an existing utility VM (``HostingSystemId`` + ``HostedSystem``).

    ``layers``, ``scratch_path`` and mapped host paths are paths *as seen in the utility VM*,
    e.g. the VSMB share paths (``\\\\?\\VMSMB\\VSMB-{...}\\s1``) of the hot-added layers. The
    resource parameters are those of :func:`process_isolated_container`.
    """
    return ComputeSystem(
        Owner=owner,
        SchemaVersion=schema_version(version),
        HostingSystemId=hosting_system_id,
        ShouldTerminateOnLastHandleClosed=_true_or_none(terminate_on_last_handle_closed),
        HostedSystem=HostedSystem(
            SchemaVersion=schema_version(version),
            Container=_container(
                layers=layers,
                scratch_path=scratch_path,
                hostname=hostname,
                mapped_directories=mapped_directories,
                network_namespace=network_namespace,
                processor_count=processor_count,
                memory_mb=memory_mb,
                processor_maximum=processor_maximum,
                processor_weight=processor_weight,
                storage_iops_maximum=storage_iops_maximum,
                storage_bandwidth_maximum=storage_bandwidth_maximum,
                dns_search_list=dns_search_list,
                allow_unqualified_dns_query=allow_unqualified_dns_query,
                mapped_pipes=mapped_pipes,
                registry_values=registry_values,
            ),
        ),
    )


def hyperv_isolated_container(
    *,
    uvm_id: str,
    os_files_path: str,
    uvm_scratch_vhdx: str,
    layers: Iterable[LayerLike],
    scratch_path: str,
    owner: str | None = None,
    mapped_directories: Iterable[MappedDirectory] = (),
    uvm_memory_mb: int = 1024,
    uvm_processor_count: int = 2,
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
) -> tuple[ComputeSystem, ComputeSystem]:
    """A Hyper-V isolated container: ``(utility_vm_doc, container_doc)``.

    Create the utility VM (id ``uvm_id``) from the first document, start it, expose the
    layers to it (e.g. :func:`add_vsmb_share`), then create the container from the second.
    ``layers``/``scratch_path``/mapped paths are as seen inside the utility VM.
    """
    uvm = windows_utility_vm(
        os_files_path=os_files_path,
        scratch_vhdx=uvm_scratch_vhdx,
        owner=owner,
        memory_mb=uvm_memory_mb,
        processor_count=uvm_processor_count,
        version=version,
    )
    container = hosted_container(
        hosting_system_id=uvm_id,
        layers=layers,
        scratch_path=scratch_path,
        owner=owner,
        mapped_directories=mapped_directories,
        version=version,
    )
    return uvm, container


def linux_utility_vm(
    *,
    boot_files_path: str,
    kernel_file: str = "vmlinux",
    initrd_file: str | None = "initrd.img",
    kernel_cmdline: str = "",
    kernel_direct: bool = True,
    owner: str | None = None,
    memory_mb: int = 1024,
    processor_count: int = 2,
    processor_limit: int | None = None,
    processor_weight: int | None = None,
    allow_overcommit: bool = True,
    deferred_commit: bool = False,
    scsi_controllers: int | Sequence[str] = 1,
    plan9: bool = True,
    vpmem_count: int = 0,
    vpmem_size_bytes: int | None = None,
    hvsocket_sddl: str = DEFAULT_HVSOCKET_SDDL,
    hvsocket_services: Mapping[str, HvSocketServiceConfig] | None = None,
    storage_iops_maximum: int | None = None,
    storage_bandwidth_maximum: int | None = None,
    console_pipe: str | None = None,
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A Linux utility VM (LCOW).

    Args:
        boot_files_path: the host folder with the kernel and initrd.
        kernel_file, initrd_file: their file names in that folder; ``initrd_file=None``
            boots without an initrd (a root file system on a disk).
        kernel_cmdline: the kernel command line.
        kernel_direct: boot the kernel directly (``Chipset.LinuxKernelDirect``, schema 2.2,
            which hcsshim sends with ``SchemaVersion`` 2.1); ``False`` boots UEFI from a
            VMBFS share of ``boot_files_path`` instead, the initrd then being named in
            ``OptionalData`` (``initrd=/initrd.img <kernel_cmdline>``).
        processor_limit, processor_weight: ``Processor.Limit`` and ``Weight``.
        allow_overcommit: back memory by the host's virtual memory (``AllowOvercommit``).
        deferred_commit: ``EnableDeferredCommit``, only when asked for (as hcsshim does).
        scsi_controllers: how many empty SCSI controllers (1-4) to add for disks hot-added
            later, named by :data:`SCSI_CONTROLLER_GUIDS` as hcsshim names them; or the names.
        plan9: add an empty Plan9 device, for shares hot-added later.
        vpmem_count, vpmem_size_bytes: a VPMem controller for up to ``vpmem_count`` read-only
            layer devices of at most ``vpmem_size_bytes`` each (``Devices.VirtualPMem``).
        hvsocket_services: extra hv_socket service table entries, by service GUID.
        storage_iops_maximum, storage_bandwidth_maximum: ``VirtualMachine.StorageQoS``.
        console_pipe: a named pipe for COM1 (``ComPorts["0"]``).

    Raises:
        ValueError: for more SCSI controllers than hcsshim names (4).
    """
    if isinstance(scsi_controllers, int):
        if not 0 <= scsi_controllers <= len(SCSI_CONTROLLER_GUIDS):
            raise ValueError(f"scsi_controllers must be 0-{len(SCSI_CONTROLLER_GUIDS)}")
        controllers: Sequence[str] = SCSI_CONTROLLER_GUIDS[:scsi_controllers]
    else:
        controllers = scsi_controllers
    if kernel_direct:
        chipset = Chipset(
            LinuxKernelDirect=LinuxKernelDirect(
                KernelFilePath=ntpath.join(boot_files_path, kernel_file),
                InitRdPath=ntpath.join(boot_files_path, initrd_file) if initrd_file else None,
                KernelCmdLine=kernel_cmdline or None,
            )
        )
    else:
        words = [f"initrd=/{initrd_file}"] if initrd_file else []
        if kernel_cmdline:
            words.append(kernel_cmdline)
        chipset = Chipset(
            Uefi=Uefi(
                BootThis=UefiBootEntry(
                    DeviceType=UefiBootDevice.VMB_FS,
                    DevicePath="\\" + kernel_file,
                    VmbFsRootPath=boot_files_path,
                    OptionalData=" ".join(words) or None,
                )
            )
        )
    qos = None
    if storage_iops_maximum or storage_bandwidth_maximum:
        qos = StorageQoS(IopsMaximum=storage_iops_maximum or None,
                         BandwidthMaximum=storage_bandwidth_maximum or None)
    return ComputeSystem(
        Owner=owner,
        SchemaVersion=schema_version(version),
        ShouldTerminateOnLastHandleClosed=_true_or_none(terminate_on_last_handle_closed),
        VirtualMachine=VirtualMachine(
            StopOnReset=True,
            Chipset=chipset,
            ComputeTopology=Topology(
                Memory=VirtualMachineMemory(
                    SizeInMB=memory_mb,
                    AllowOvercommit=_true_or_none(allow_overcommit),
                    EnableDeferredCommit=_true_or_none(deferred_commit),
                ),
                Processor=_vm_processor(processor_count, processor_limit, processor_weight),
            ),
            Devices=Devices(
                Scsi={name: Scsi() for name in controllers} or None,
                ComPorts={"0": ComPort(NamedPipe=console_pipe)} if console_pipe else None,
                HvSocket=_hvsocket(hvsocket_sddl, hvsocket_services),
                Plan9=Plan9() if plan9 else None,
                VirtualPMem=VirtualPMemController(
                    MaximumCount=vpmem_count, MaximumSizeBytes=vpmem_size_bytes
                ) if vpmem_count else None,
            ),
            StorageQoS=qos,
        ),
    )


# --------------------------------------------------------------------------- processes


def process_parameters(
    command_line: str | None = None,
    *,
    args: Sequence[str] | None = None,
    working_directory: str | None = None,
    user: str | None = None,
    environment: Mapping[str, str] | None = None,
    emulate_console: bool = False,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    console_size: tuple[int, int] | None = None,
) -> ProcessParameters:
    """Parameters for HcsCreateProcess.

    Args:
        command_line: the command line (Windows; also what a Linux guest runs).
        args: ``CommandArgs`` instead of a command line (Linux guests).
        working_directory, user, environment: as named.
        emulate_console: give the process a pseudo console (then stderr goes to stdout).
        stdin, stdout, stderr: create a pipe for that handle.
        console_size: ``(height, width)`` of the pseudo console.

    Raises:
        ValueError: if neither ``command_line`` nor ``args`` is given.
    """
    if command_line is None and not args:
        raise ValueError("give a command_line or args")
    return ProcessParameters(
        CommandLine=command_line,
        CommandArgs=list(args) if args else None,
        WorkingDirectory=working_directory,
        User=user,
        Environment=dict(environment) if environment is not None else None,
        EmulateConsole=_true_or_none(emulate_console),
        CreateStdInPipe=_true_or_none(stdin),
        CreateStdOutPipe=_true_or_none(stdout),
        CreateStdErrPipe=_true_or_none(stderr),
        ConsoleSize=list(console_size) if console_size is not None else None,
    )


def console_size(height: int, width: int) -> ProcessModifyRequest:
    """HcsModifyProcess request resizing the pseudo console."""
    return ProcessModifyRequest(
        Operation=ProcessModifyOperation.CONSOLE_SIZE,
        ConsoleSize=ConsoleSize(Height=height, Width=width),
    )


def close_handle(handle: STDIOHandle | str = STDIOHandle.STD_IN) -> ProcessModifyRequest:
    """HcsModifyProcess request closing a std handle (``StdIn`` closes the input pipe)."""
    return ProcessModifyRequest(
        Operation=ProcessModifyOperation.CLOSE_HANDLE, CloseHandle=CloseHandle(Handle=handle)
    )


def signal_options(signal: ProcessSignal | str) -> SignalProcessOptions:
    """HcsSignalProcess options, e.g. ``signal_options("CtrlC")``."""
    return SignalProcessOptions(Signal=signal)


# --------------------------------------------------------------------------- queries


def property_query(
    *types: PropertyType | str, queries: Mapping[str, Any] | None = None
) -> PropertyQuery:
    """HcsGetComputeSystemProperties query, e.g. ``property_query("Statistics")``."""
    return PropertyQuery(
        PropertyTypes=list(types) if types else None,
        Queries=dict(queries) if queries is not None else None,
    )


def service_property_query(*types: GetPropertyType | str) -> Service_PropertyQuery:
    """HcsGetServiceProperties query; ``service_property_query("Basic")`` gives the host's
    supported schema versions."""
    return Service_PropertyQuery(PropertyTypes=list(types) if types else None)


# --------------------------------------------------------------------------- modify


def modify_request(
    resource_path: str,
    request_type: RequestType | str = RequestType.UPDATE,
    settings: Any = None,
    *,
    guest_request: Any = None,
) -> ModifySettingRequest:
    """HcsModifyComputeSystem request; ``settings`` may be a model, a dict or a scalar."""
    return ModifySettingRequest(
        ResourcePath=resource_path,
        RequestType=request_type,
        Settings=settings,
        GuestRequest=guest_request,
    )


def _controller(controller: int | str) -> str:
    if isinstance(controller, int):
        if not 0 <= controller < len(SCSI_CONTROLLER_GUIDS):
            raise ValueError(f"controller index must be 0-{len(SCSI_CONTROLLER_GUIDS) - 1}")
        return SCSI_CONTROLLER_GUIDS[controller]
    return controller


def add_scsi_disk(
    path: str,
    *,
    lun: int,
    controller: int | str = 0,
    read_only: bool = False,
    attachment_type: AttachmentType | str = AttachmentType.VIRTUAL_DISK,
    extensible_virtual_disk_type: str | None = None,
) -> ModifySettingRequest:
    """Hot-add a disk to a VM's SCSI controller at ``lun``.

    Args:
        controller: the controller's index (named as hcsshim names it, see
            :data:`SCSI_CONTROLLER_GUIDS`) or its name.
        attachment_type: ``VirtualDisk``, ``Iso``, ``PassThru`` or ``ExtensibleVirtualDisk``
            (then ``path`` is e.g. ``evd://space/myvolume`` and
            ``extensible_virtual_disk_type`` names the provider, e.g. ``space``).
    """
    return modify_request(
        f"VirtualMachine/Devices/Scsi/{_controller(controller)}/Attachments/{lun}",
        RequestType.ADD,
        Attachment(Type=attachment_type, Path=path, ReadOnly=read_only,
                   ExtensibleVirtualDiskType=extensible_virtual_disk_type),
    )


def remove_scsi_disk(*, lun: int, controller: int | str = 0) -> ModifySettingRequest:
    """Hot-remove the disk at ``lun`` (``controller``: index or name, as for
    :func:`add_scsi_disk`)."""
    return modify_request(
        f"VirtualMachine/Devices/Scsi/{_controller(controller)}/Attachments/{lun}",
        RequestType.REMOVE,
    )


def update_memory_size(size_mb: int) -> ModifySettingRequest:
    """Resize a VM's memory (``Settings`` is the bare number of MB)."""
    return modify_request("VirtualMachine/ComputeTopology/Memory/SizeInMB", RequestType.UPDATE,
                          size_mb)


def add_mapped_directory(
    host_path: str, container_path: str, *, read_only: bool = False
) -> ModifySettingRequest:
    """Map a host folder into a running process-isolated container."""
    return modify_request(
        "Container/MappedDirectories",
        RequestType.ADD,
        mapped_directory(host_path, container_path, read_only=read_only),
    )


def add_mapped_pipe(host_path: str, container_pipe_name: str) -> ModifySettingRequest:
    """Map a host named pipe into a running process-isolated container."""
    return modify_request(
        "Container/MappedPipes", RequestType.ADD, mapped_pipe(host_path, container_pipe_name)
    )


def add_network_adapter(
    adapter_id: str, endpoint_id: str, *, mac_address: str | None = None
) -> ModifySettingRequest:
    """Hot-add a network adapter connected to an HNS endpoint."""
    return modify_request(
        f"VirtualMachine/Devices/NetworkAdapters/{adapter_id}",
        RequestType.ADD,
        NetworkAdapter(EndpointId=endpoint_id, MacAddress=mac_address),
    )


def add_plan9_share(
    name: str,
    host_path: str,
    *,
    guest_path: str | None = None,
    port: int = PLAN9_PORT,
    read_only: bool = False,
    restrict_to: Sequence[str] | None = None,
    access_name: str | None = None,
) -> ModifySettingRequest:
    """Hot-add a Plan9 share to a Linux utility VM, as hcsshim does.

    ``Flags`` is ``LinuxMetadata`` (0x4), plus ``ReadOnly`` (0x1) for a read-only share
    (5 in all) and ``RestrictFileAccess`` (0x80) when ``restrict_to`` lists the only files
    (names in ``host_path``) the share exposes. With ``guest_path``, the request also carries
    the guest request that mounts the share there (``GuestRequest``: ``MappedDirectory``,
    ``LCOWMappedDirectory``), which the guest compute service executes.
    """
    flags = Plan9ShareFlags.LINUX_METADATA
    if read_only:
        flags |= Plan9ShareFlags.READ_ONLY
    if restrict_to is not None:
        flags |= Plan9ShareFlags.RESTRICT_FILE_ACCESS
    share_name = access_name or name
    guest = None
    if guest_path is not None:
        guest = GuestModifySettingRequest(
            ResourceType=ModifyResourceType.MAPPED_DIRECTORY,
            RequestType=RequestType.ADD,
            Settings=LCOWMappedDirectory(
                MountPath=guest_path, ShareName=share_name, Port=port,
                ReadOnly=_true_or_none(read_only),
            ),
        )
    return modify_request(
        "VirtualMachine/Devices/Plan9/Shares",
        RequestType.ADD,
        Plan9Share(Name=name, AccessName=share_name, Path=host_path, Port=port,
                   Flags=int(flags),
                   AllowedFiles=list(restrict_to) if restrict_to is not None else None),
        guest_request=guest,
    )


def add_vsmb_share(
    name: str,
    host_path: str,
    *,
    read_only: bool = True,
    backup_privilege: bool = False,
    restrict_to: Sequence[str] | None = None,
    options: VirtualSmbShareOptions | None = None,
) -> ModifySettingRequest:
    """Hot-add a VSMB share (how layers and mapped folders reach a Windows utility VM).

    Args:
        read_only: a read-only share (the options of :func:`vsmb_options`).
        backup_privilege: add ``TakeBackupPrivilege``: for layer (and OS) shares only, as
            hcsshim does; a mapped folder does not get it.
        restrict_to: expose only these files of ``host_path`` (``AllowedFiles``).
        options: explicit options instead (then ``read_only``/``backup_privilege`` are
            ignored).
    """
    if options is None:
        options = vsmb_options(read_only=read_only, backup_privilege=backup_privilege)
    return modify_request(
        "VirtualMachine/Devices/VirtualSmb/Shares",
        RequestType.ADD,
        VirtualSmbShare(Name=name, Path=host_path, Options=options,
                        AllowedFiles=list(restrict_to) if restrict_to is not None else None),
    )


def add_vpmem_device(
    device: int, host_path: str, *, image_format: str = "Vhd1", read_only: bool = True
) -> ModifySettingRequest:
    """Hot-add a read-only layer as VPMem device ``device`` of a Linux utility VM (whose
    document has a VPMem controller, see ``vpmem_count`` of :func:`linux_utility_vm`)."""
    return modify_request(
        f"VirtualMachine/Devices/VirtualPMem/Devices/{device}",
        RequestType.ADD,
        VirtualPMemDevice(HostPath=host_path, ReadOnly=_true_or_none(read_only),
                          ImageFormat=image_format),
    )


def add_hvsocket_service(
    service_id: str,
    *,
    bind_security_descriptor: str | None = None,
    connect_security_descriptor: str | None = None,
    allow_wildcard_binds: bool = False,
) -> ModifySettingRequest:
    """Add (or replace) an entry of a running VM's hv_socket service table."""
    return modify_request(
        f"VirtualMachine/Devices/HvSocket/HvSocketConfig/ServiceTable/{service_id}",
        RequestType.UPDATE,
        HvSocketServiceConfig(
            BindSecurityDescriptor=bind_security_descriptor,
            ConnectSecurityDescriptor=connect_security_descriptor,
            AllowWildcardBinds=_true_or_none(allow_wildcard_binds),
        ),
    )


# --------------------------------------------------------------------------- lifecycle


def shutdown_options(
    *,
    mechanism: ShutdownMechanism | str | None = None,
    shutdown_type: ShutdownType | str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> ShutdownOptions:
    """Options for HcsShutDownComputeSystem (schema 2.5; older hosts take none)."""
    return ShutdownOptions(
        Mechanism=mechanism, Type=shutdown_type, Force=_true_or_none(force), Reason=reason
    )


def save_options(
    save_state_file_path: str | None = None, *, save_type: SaveType | str | None = None
) -> SaveOptions:
    """Options for HcsSaveComputeSystem; a path alone means ``SaveType`` ``ToFile``."""
    if save_type is None and save_state_file_path is not None:
        save_type = SaveType.TO_FILE
    return SaveOptions(SaveType=save_type, SaveStateFilePath=save_state_file_path)


def pause_options(
    suspension_level: PauseSuspensionLevel | str | None = None,
    *,
    reason: PauseReason | str | None = None,
) -> PauseOptions:
    """Options for HcsPauseComputeSystem, e.g. ``pause_options("Suspend", reason="Save")``."""
    return PauseOptions(
        SuspensionLevel=suspension_level,
        HostedNotification=PauseNotification(Reason=reason) if reason is not None else None,
    )


def crash_options(crash_type: CrashType | str = CrashType.CRASH_GUEST) -> CrashOptions:
    """Options for HcsCrashComputeSystem."""
    return CrashOptions(Type=crash_type)


# --------------------------------------------------------------------------- storage


def layer_data(
    layers: Iterable[LayerLike],
    *,
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    filter_type: str | None = None,
) -> LayerData:
    """``LayerData`` for the layer APIs (HcsImportLayer, HcsExportLayer, ...)."""
    return LayerData(
        SchemaVersion=schema_version(version), Layers=_layers(layers), FilterType=filter_type
    )
