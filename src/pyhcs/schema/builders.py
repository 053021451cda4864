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
    ComputeSystem,
    ConsoleSize,
    Container,
    CrashOptions,
    CrashType,
    Devices,
    GetPropertyType,
    GuestOs,
    HostedSystem,
    HvSocket2,
    HvSocketSystemConfig,
    Layer,
    LayerData,
    LinuxKernelDirect,
    MappedDirectory,
    Memory,
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
    Topology,
    Uefi,
    UefiBootDevice,
    UefiBootEntry,
    Version,
    VirtualMachine,
    VirtualMachineMemory,
    VirtualMachineProcessor,
    VirtualSmb,
    VirtualSmbShare,
    VirtualSmbShareOptions,
)

__all__ = [
    "DEFAULT_HVSOCKET_SDDL",
    "DEFAULT_SCHEMA_VERSION",
    "DEFAULT_SCSI_CONTROLLER",
    "LayerLike",
    "add_mapped_directory",
    "add_network_adapter",
    "add_plan9_share",
    "add_scsi_disk",
    "add_vsmb_share",
    "close_handle",
    "console_size",
    "crash_options",
    "hosted_container",
    "hyperv_isolated_container",
    "layer",
    "layer_data",
    "linux_utility_vm",
    "mapped_directory",
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
    "windows_utility_vm",
]

#: The version hcsshim declares for containers and utility VMs from Windows Server 2019 on.
DEFAULT_SCHEMA_VERSION = (2, 1)
#: The name hcsshim gives the first SCSI controller of a utility VM (any unique string works).
DEFAULT_SCSI_CONTROLLER = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
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


def _container(
    *,
    layers: Iterable[LayerLike],
    scratch_path: str,
    hostname: str | None,
    mapped_directories: Iterable[MappedDirectory],
    network_namespace: str | None,
    processor_count: int | None,
    memory_mb: int | None,
) -> Container:
    mapped = list(mapped_directories)
    return Container(
        GuestOs=GuestOs(HostName=hostname) if hostname else None,
        Storage=Storage(Layers=_layers(layers), Path=scratch_path),
        MappedDirectories=mapped or None,
        Networking=Networking(Namespace=network_namespace) if network_namespace else None,
        Processor=Processor(Count=processor_count) if processor_count else None,
        Memory=Memory(SizeInMB=memory_mb) if memory_mb else None,
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
        version: the declared ``SchemaVersion``.
        terminate_on_last_handle_closed: terminate it when the last handle is closed.
    """
    return ComputeSystem(
        Owner=owner,
        SchemaVersion=schema_version(version),
        ShouldTerminateOnLastHandleClosed=_true_or_none(terminate_on_last_handle_closed),
        Container=_container(
            layers=layers,
            scratch_path=scratch_path,
            hostname=hostname,
            mapped_directories=mapped_directories,
            network_namespace=network_namespace,
            processor_count=processor_count,
            memory_mb=memory_mb,
        ),
    )


def windows_utility_vm(
    *,
    os_files_path: str,
    scratch_vhdx: str,
    owner: str | None = None,
    memory_mb: int = 1024,
    processor_count: int = 2,
    allow_overcommit: bool = True,
    scsi_controller: str = DEFAULT_SCSI_CONTROLLER,
    hvsocket_sddl: str = DEFAULT_HVSOCKET_SDDL,
    vsmb_direct_file_mapping_mb: int | None = 1024,
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """The Windows utility VM that hosts a Hyper-V isolated container ("Xenon").

    It boots UEFI from a VSMB share named ``os`` (``os_files_path``: the base OS layer's
    ``UtilityVM\\Files`` folder) and gets its scratch VHDX as LUN 0 of one SCSI controller.
    Layers are exposed later by hot-adding VSMB shares (:func:`add_vsmb_share`).
    """
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
                    EnableDeferredCommit=_true_or_none(allow_overcommit),
                ),
                Processor=VirtualMachineProcessor(Count=processor_count),
            ),
            Devices=Devices(
                Scsi={
                    scsi_controller: Scsi(
                        Attachments={
                            "0": Attachment(Type=AttachmentType.VIRTUAL_DISK, Path=scratch_vhdx)
                        }
                    )
                },
                HvSocket=HvSocket2(
                    HvSocketConfig=HvSocketSystemConfig(
                        DefaultBindSecurityDescriptor=hvsocket_sddl
                    )
                ),
                VirtualSmb=VirtualSmb(
                    DirectFileMappingInMB=vsmb_direct_file_mapping_mb,
                    Shares=[
                        VirtualSmbShare(
                            Name="os", Path=os_files_path, Options=_read_only_vsmb_options()
                        )
                    ],
                ),
            ),
        ),
    )


def _read_only_vsmb_options() -> VirtualSmbShareOptions:
    return VirtualSmbShareOptions(
        ReadOnly=True, ShareRead=True, CacheIo=True, PseudoOplocks=True,
        TakeBackupPrivilege=True,
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
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A container inside an existing utility VM (``HostingSystemId`` + ``HostedSystem``).

    ``layers``, ``scratch_path`` and mapped host paths are paths *as seen in the utility VM*,
    e.g. the VSMB share paths (``\\\\?\\VMSMB\\VSMB-{...}\\s1``) of the hot-added layers.
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
    initrd_file: str = "initrd.img",
    kernel_cmdline: str = "",
    kernel_direct: bool = True,
    owner: str | None = None,
    memory_mb: int = 1024,
    processor_count: int = 2,
    allow_overcommit: bool = True,
    scsi_controllers: Sequence[str] = ("0",),
    plan9: bool = True,
    hvsocket_sddl: str = DEFAULT_HVSOCKET_SDDL,
    version: VersionLike = DEFAULT_SCHEMA_VERSION,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A Linux utility VM (LCOW).

    Args:
        boot_files_path: the host folder with the kernel and initrd.
        kernel_file, initrd_file: their file names in that folder.
        kernel_cmdline: the kernel command line.
        kernel_direct: boot the kernel directly (``Chipset.LinuxKernelDirect``, schema 2.2,
            which hcsshim sends with ``SchemaVersion`` 2.1); ``False`` boots UEFI from a
            VMBFS share of ``boot_files_path`` instead.
        scsi_controllers: names of empty SCSI controllers, for disks hot-added later.
        plan9: add an empty Plan9 device, for shares hot-added later.
    """
    if kernel_direct:
        chipset = Chipset(
            LinuxKernelDirect=LinuxKernelDirect(
                KernelFilePath=ntpath.join(boot_files_path, kernel_file),
                InitRdPath=ntpath.join(boot_files_path, initrd_file),
                KernelCmdLine=kernel_cmdline or None,
            )
        )
    else:
        chipset = Chipset(
            Uefi=Uefi(
                BootThis=UefiBootEntry(
                    DeviceType=UefiBootDevice.VMB_FS,
                    DevicePath="\\" + kernel_file,
                    VmbFsRootPath=boot_files_path,
                    OptionalData=kernel_cmdline or None,
                )
            )
        )
    return ComputeSystem(
        Owner=owner,
        SchemaVersion=schema_version(version),
        ShouldTerminateOnLastHandleClosed=_true_or_none(terminate_on_last_handle_closed),
        VirtualMachine=VirtualMachine(
            StopOnReset=True,
            Chipset=chipset,
            ComputeTopology=Topology(
                Memory=VirtualMachineMemory(
                    SizeInMB=memory_mb, AllowOvercommit=_true_or_none(allow_overcommit)
                ),
                Processor=VirtualMachineProcessor(Count=processor_count),
            ),
            Devices=Devices(
                Scsi={name: Scsi() for name in scsi_controllers} or None,
                HvSocket=HvSocket2(
                    HvSocketConfig=HvSocketSystemConfig(
                        DefaultBindSecurityDescriptor=hvsocket_sddl
                    )
                ),
                Plan9=Plan9() if plan9 else None,
            ),
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


def add_scsi_disk(
    path: str,
    *,
    lun: int,
    controller: str = DEFAULT_SCSI_CONTROLLER,
    read_only: bool = False,
    attachment_type: AttachmentType | str = AttachmentType.VIRTUAL_DISK,
) -> ModifySettingRequest:
    """Hot-add a disk to a VM's SCSI controller at ``lun``."""
    return modify_request(
        f"VirtualMachine/Devices/Scsi/{controller}/Attachments/{lun}",
        RequestType.ADD,
        Attachment(Type=attachment_type, Path=path, ReadOnly=read_only),
    )


def remove_scsi_disk(*, lun: int, controller: str = DEFAULT_SCSI_CONTROLLER
                     ) -> ModifySettingRequest:
    """Hot-remove the disk at ``lun``."""
    return modify_request(
        f"VirtualMachine/Devices/Scsi/{controller}/Attachments/{lun}", RequestType.REMOVE
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
    name: str, host_path: str, *, port: int, read_only: bool = False,
    access_name: str | None = None,
) -> ModifySettingRequest:
    """Hot-add a Plan9 share to a Linux utility VM (``read_only`` sets flag 0x1)."""
    return modify_request(
        "VirtualMachine/Devices/Plan9/Shares",
        RequestType.ADD,
        Plan9Share(Name=name, AccessName=access_name or name, Path=host_path, Port=port,
                   Flags=Plan9ShareFlags.READ_ONLY if read_only else None),
    )


def add_vsmb_share(
    name: str, host_path: str, *, read_only: bool = True,
    options: VirtualSmbShareOptions | None = None,
) -> ModifySettingRequest:
    """Hot-add a VSMB share (how layers reach a Windows utility VM)."""
    if options is None and read_only:
        options = _read_only_vsmb_options()
    return modify_request(
        "VirtualMachine/Devices/VirtualSmb/Shares",
        RequestType.ADD,
        VirtualSmbShare(Name=name, Path=host_path, Options=options),
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
