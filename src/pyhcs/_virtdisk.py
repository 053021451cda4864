"""virtdisk.dll through ctypes: the structures and calls that give the virtual-disk HANDLE HCS
takes (HcsFormatWritableLayerVhd, HcsGetLayerVhdMountPath, HcsSetupBaseOSLayer).

Only :mod:`pyhcs.storage` uses this module, and only on Windows; the function table is an
argument (:class:`VirtDisk`), so tests drive the marshalling on any platform with a fake table.

The layouts are those of the Windows SDK's virtdisk.h for x64 (tests/api/test_virtual_disk.py
checks every size and offset). mingw-w64's virtdisk.h is not a reference: its
CREATE_VIRTUAL_DISK_PARAMETERS.Version2 lacks ``PhysicalSectorSizeInBytes``, which shifts every
later member by 8 bytes.

Facts used (virtdisk.h): every function returns a Win32 error code (0 is success); with
version 2 open or create parameters the access mask must be ``VIRTUAL_DISK_ACCESS_NONE``; a
storage type of device 0 (unknown) and a zero vendor lets virtdisk pick the format from the
file's extension; a VHD takes ``.vhd``, a VHDX ``.vhdx``.
"""

from __future__ import annotations

import ctypes
import uuid
from collections.abc import Callable
from typing import Any, Protocol

# Fixed-size spellings of the Windows types (ctypes.c_ulong is 8 bytes on Linux; the layouts
# must be Windows' on every platform the tests run on).
ULONG = ctypes.c_uint32
USHORT = ctypes.c_uint16
BOOL = ctypes.c_int32
ULONGLONG = ctypes.c_uint64
HANDLE = ctypes.c_void_p
PCWSTR = ctypes.c_wchar_p


class GUID(ctypes.Structure):
    _fields_ = (("Data1", ULONG), ("Data2", USHORT), ("Data3", USHORT), ("Data4", ctypes.c_ubyte * 8))

    @classmethod
    def from_uuid(cls, value: uuid.UUID | None) -> GUID:
        guid = cls()
        if value is not None:
            # a GUID in memory is uuid.bytes_le (Data1..Data3 little-endian)
            ctypes.memmove(ctypes.addressof(guid), value.bytes_le, 16)
        return guid

    def to_uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes_le=bytes(self))


class VIRTUAL_STORAGE_TYPE(ctypes.Structure):
    _fields_ = (("DeviceId", ULONG), ("VendorId", GUID))


class _OpenV1(ctypes.Structure):
    _fields_ = (("RWDepth", ULONG),)


class _OpenV2(ctypes.Structure):
    _fields_ = (("GetInfoOnly", BOOL), ("ReadOnly", BOOL), ("ResiliencyGuid", GUID))


class _OpenUnion(ctypes.Union):
    _fields_ = (("Version1", _OpenV1), ("Version2", _OpenV2))


class OPEN_VIRTUAL_DISK_PARAMETERS(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = (("Version", ULONG), ("u", _OpenUnion))


class _CreateV1(ctypes.Structure):
    _fields_ = (
        ("UniqueId", GUID),
        ("MaximumSize", ULONGLONG),
        ("BlockSizeInBytes", ULONG),
        ("SectorSizeInBytes", ULONG),
        ("ParentPath", PCWSTR),
        ("SourcePath", PCWSTR),
    )


class _CreateV2(ctypes.Structure):
    _fields_ = (
        ("UniqueId", GUID),
        ("MaximumSize", ULONGLONG),
        ("BlockSizeInBytes", ULONG),
        ("SectorSizeInBytes", ULONG),
        ("PhysicalSectorSizeInBytes", ULONG),
        ("ParentPath", PCWSTR),
        ("SourcePath", PCWSTR),
        ("OpenFlags", ULONG),
        ("ParentVirtualStorageType", VIRTUAL_STORAGE_TYPE),
        ("SourceVirtualStorageType", VIRTUAL_STORAGE_TYPE),
        ("ResiliencyGuid", GUID),
    )


class _CreateUnion(ctypes.Union):
    _fields_ = (("Version1", _CreateV1), ("Version2", _CreateV2))


class CREATE_VIRTUAL_DISK_PARAMETERS(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = (("Version", ULONG), ("u", _CreateUnion))


class _AttachV1(ctypes.Structure):
    _fields_ = (("Reserved", ULONG),)


class _AttachV2(ctypes.Structure):
    _fields_ = (("RestrictedOffset", ULONGLONG), ("RestrictedLength", ULONGLONG))


class _AttachUnion(ctypes.Union):
    _fields_ = (("Version1", _AttachV1), ("Version2", _AttachV2))


class ATTACH_VIRTUAL_DISK_PARAMETERS(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = (("Version", ULONG), ("u", _AttachUnion))


# virtdisk.h constants
VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN = 0
VIRTUAL_STORAGE_TYPE_DEVICE_VHD = 2
VIRTUAL_STORAGE_TYPE_DEVICE_VHDX = 3
VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT = uuid.UUID("ec984aec-a0f9-47e9-901f-71415a66345b")
VIRTUAL_DISK_ACCESS_NONE = 0
OPEN_VIRTUAL_DISK_FLAG_NONE = 0
OPEN_VIRTUAL_DISK_VERSION_2 = 2
CREATE_VIRTUAL_DISK_FLAG_NONE = 0
CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION = 0x1
CREATE_VIRTUAL_DISK_VERSION_2 = 2
ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY = 0x1
ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER = 0x2
ATTACH_VIRTUAL_DISK_VERSION_1 = 1
DETACH_VIRTUAL_DISK_FLAG_NONE = 0
#: The block size hcsshim gives the VHDX files it creates for container layers (1 MiB).
DEFAULT_BLOCK_SIZE = 1 << 20

_DEVICE_BY_SUFFIX = {".vhd": VIRTUAL_STORAGE_TYPE_DEVICE_VHD, ".vhdx": VIRTUAL_STORAGE_TYPE_DEVICE_VHDX}


def storage_type(path: str) -> VIRTUAL_STORAGE_TYPE:
    """The storage type of a disk file, from its extension (``.vhd`` or ``.vhdx``)."""
    dot = path.rfind(".")
    suffix = path[dot:].lower() if dot > max(path.rfind("\\"), path.rfind("/")) else ""
    device = _DEVICE_BY_SUFFIX.get(suffix)
    if device is None:
        raise ValueError(f"a virtual disk file ends in .vhd or .vhdx: {path!r}")
    return VIRTUAL_STORAGE_TYPE(device, GUID.from_uuid(VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT))


class Win32Error(Exception):
    """A virtdisk/kernel32 call returned a Win32 error code (turned into an HcsError by the caller)."""

    def __init__(self, call: str, code: int) -> None:
        super().__init__(f"{call} failed with Win32 error {code}")
        self.call = call
        self.code = code


class FunctionTable(Protocol):
    """What :class:`VirtDisk` calls: the five functions by their Windows names (read-only, so
    that a class whose methods they are, a test's fake, is a table too)."""

    @property
    def OpenVirtualDisk(self) -> Callable[..., int]: ...
    @property
    def CreateVirtualDisk(self) -> Callable[..., int]: ...
    @property
    def AttachVirtualDisk(self) -> Callable[..., int]: ...
    @property
    def DetachVirtualDisk(self) -> Callable[..., int]: ...
    @property
    def CloseHandle(self) -> Callable[..., int]: ...


def load_windows_table() -> FunctionTable:  # pragma: no cover - Windows only
    """virtdisk.dll and kernel32.dll from System32, with their prototypes."""
    windll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 - absent off Windows, for type checkers
    flags = 0x00000800  # LOAD_LIBRARY_SEARCH_SYSTEM32: never a DLL planted beside the program
    virtdisk = windll("virtdisk.dll", use_last_error=True, winmode=flags)
    kernel32 = windll("kernel32.dll", use_last_error=True, winmode=flags)
    p = ctypes.POINTER

    class _Table:
        OpenVirtualDisk = virtdisk.OpenVirtualDisk
        CreateVirtualDisk = virtdisk.CreateVirtualDisk
        AttachVirtualDisk = virtdisk.AttachVirtualDisk
        DetachVirtualDisk = virtdisk.DetachVirtualDisk
        CloseHandle = kernel32.CloseHandle

    _Table.OpenVirtualDisk.argtypes = (
        p(VIRTUAL_STORAGE_TYPE),
        PCWSTR,
        ULONG,
        ULONG,
        p(OPEN_VIRTUAL_DISK_PARAMETERS),
        p(HANDLE),
    )
    _Table.CreateVirtualDisk.argtypes = (
        p(VIRTUAL_STORAGE_TYPE), PCWSTR, ULONG, ctypes.c_void_p, ULONG, ULONG,
        p(CREATE_VIRTUAL_DISK_PARAMETERS), ctypes.c_void_p, p(HANDLE),
    )  # fmt: skip
    _Table.AttachVirtualDisk.argtypes = (
        HANDLE,
        ctypes.c_void_p,
        ULONG,
        ULONG,
        p(ATTACH_VIRTUAL_DISK_PARAMETERS),
        ctypes.c_void_p,
    )
    _Table.DetachVirtualDisk.argtypes = (HANDLE, ULONG, ULONG)
    _Table.CloseHandle.argtypes = (HANDLE,)
    for fn in (_Table.OpenVirtualDisk, _Table.CreateVirtualDisk, _Table.AttachVirtualDisk, _Table.DetachVirtualDisk):
        fn.restype = ULONG
    _Table.CloseHandle.restype = BOOL
    return _Table()


class VirtDisk:
    """The virtual-disk calls pyhcs makes, over a function table (Windows' or a test's)."""

    def __init__(self, table: FunctionTable, last_error: Callable[[], int] | None = None) -> None:
        self.table = table
        self._last_error = last_error or (lambda: 0)

    def _check(self, call: str, code: int) -> None:
        if code != 0:
            raise Win32Error(call, int(code))

    def open(self, path: str, *, read_only: bool = False) -> int:
        """OpenVirtualDisk with version 2 parameters (access none, as they require)."""
        stype = storage_type(path)
        params = OPEN_VIRTUAL_DISK_PARAMETERS()
        params.Version = OPEN_VIRTUAL_DISK_VERSION_2
        params.Version2.GetInfoOnly = 0
        params.Version2.ReadOnly = 1 if read_only else 0
        handle = HANDLE()
        code = self.table.OpenVirtualDisk(
            ctypes.byref(stype), path, VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
            ctypes.byref(params), ctypes.byref(handle),
        )  # fmt: skip
        self._check("OpenVirtualDisk", code)
        return int(handle.value or 0)

    def create(self, path: str, size_bytes: int, *, block_size: int = DEFAULT_BLOCK_SIZE, fixed: bool = False) -> int:
        """CreateVirtualDisk (version 2): a new dynamic (or fixed) disk of ``size_bytes``."""
        if size_bytes <= 0 or size_bytes % 512:
            raise ValueError(f"a virtual disk's size is a positive multiple of 512 bytes, not {size_bytes}")
        stype = storage_type(path)
        params = CREATE_VIRTUAL_DISK_PARAMETERS()
        params.Version = CREATE_VIRTUAL_DISK_VERSION_2
        params.Version2.MaximumSize = size_bytes
        params.Version2.BlockSizeInBytes = block_size
        handle = HANDLE()
        flags = CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION if fixed else CREATE_VIRTUAL_DISK_FLAG_NONE
        code = self.table.CreateVirtualDisk(
            ctypes.byref(stype), path, VIRTUAL_DISK_ACCESS_NONE, None, flags, 0,
            ctypes.byref(params), None, ctypes.byref(handle),
        )  # fmt: skip
        self._check("CreateVirtualDisk", code)
        return int(handle.value or 0)

    def attach(self, handle: int, *, read_only: bool = False, drive_letter: bool = False) -> None:
        """AttachVirtualDisk (version 1 parameters, which every Windows with HCS accepts)."""
        params = ATTACH_VIRTUAL_DISK_PARAMETERS()
        params.Version = ATTACH_VIRTUAL_DISK_VERSION_1
        flags = (ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY if read_only else 0) | (
            0 if drive_letter else ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER
        )
        code = self.table.AttachVirtualDisk(HANDLE(handle), None, flags, 0, ctypes.byref(params), None)
        self._check("AttachVirtualDisk", code)

    def detach(self, handle: int) -> None:
        code = self.table.DetachVirtualDisk(HANDLE(handle), DETACH_VIRTUAL_DISK_FLAG_NONE, 0)
        self._check("DetachVirtualDisk", code)

    def close(self, handle: int) -> None:
        if not self.table.CloseHandle(HANDLE(handle)):
            raise Win32Error("CloseHandle", self._last_error() or 6)  # ERROR_INVALID_HANDLE
