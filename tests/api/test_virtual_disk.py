"""pyhcs.storage's virtual disks and layer ids.

* ``VirtualDisk`` on the emulator, through both backends: create, open, format, mount path,
  attach state, close, and the errors, which are the same HcsError classes virtdisk gives;
* the Windows path without Windows: the ctypes structures' sizes and offsets against the
  documented x64 layouts of virtdisk.h, and every call's arguments through a fake virtdisk
  function table;
* layer ids as HCS derives them (NameToGuid), with Windows path rules (``ntpath``) including
  volume roots.
"""

# Tests the private virtual-disk layer (pyhcs._virtdisk) against fakes of its function table.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ctypes
import ntpath
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyhcs import _virtdisk as vd
from pyhcs import errors, storage
from pyhcs.storage import Layer, LayerChain, VirtualDisk

GIB = 1 << 30
#: VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT (virtdisk.h); the flag and device values below are
#: virtdisk.h's too, written out so that a wrong constant in pyhcs._virtdisk fails here.
MICROSOFT = uuid.UUID("ec984aec-a0f9-47e9-901f-71415a66345b")


@pytest.fixture
def api(hcs: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The backend under test behind pyhcs.storage, the emulator's disks, a private runtime dir."""
    monkeypatch.setattr(storage, "B", hcs)
    monkeypatch.setattr(storage, "_disk_backend", storage._EmulatorDisks())
    monkeypatch.setenv("HCSEMU_RUNTIME_DIR", str(tmp_path / "runtime"))
    return hcs


# ------------------------------------------------------------------------------ on the emulator


def test_create_format_mount_reopen(api: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "scratch.vhdx"
    with VirtualDisk.create(path, size_gb=1 / 1024) as disk:
        assert disk.path == path and path.stat().st_size == 1 << 20 and not disk.closed
        with pytest.raises(errors.HcsError) as unformatted:  # nothing on it yet
            disk.mount_path()
        assert unformatted.value.hresult == errors.HRESULT_FROM_WIN32(1005)  # ERROR_UNRECOGNIZED_VOLUME
        disk.format()
        mount = disk.mount_path()
        assert Path(mount).is_dir() and mount == storage.get_layer_vhd_mount_path(disk.handle)
        disk.attach()
        assert disk.attached and "attached" in repr(disk)
        with pytest.raises(errors.InvalidStateError, match="already attached"):
            disk.attach()
    assert disk.closed and not disk.attached and "closed" in repr(disk)
    disk.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        disk.handle  # noqa: B018
    with pytest.raises(ValueError, match="closed"):
        disk.format()

    with VirtualDisk.open(path) as again:  # the volume belongs to the image, not the handle
        assert again.mount_path() == mount
        with pytest.raises(errors.InvalidStateError, match="not attached"):
            again.detach()


def test_setup_base_os_layer_takes_a_virtual_disk(api: ModuleType, tmp_path: Path) -> None:
    efi = tmp_path / "os" / "UtilityVM" / "Files" / "EFI"
    efi.mkdir(parents=True)
    (tmp_path / "os" / "Files").mkdir()
    (efi / "boot.efi").write_bytes(b"efi")
    base = Layer.import_from(tmp_path / "os", tmp_path / "base")
    with VirtualDisk.create(tmp_path / "SystemTemplateBase.vhdx", size_gb=1 / 1024) as disk:
        disk.format()
        base.setup_base_os(disk, options={"Type": "Vm", "SkipUpdateBcdForBoot": True})
        assert (Path(disk.mount_path()) / "EFI" / "boot.efi").read_bytes() == b"efi"


def test_errors_match_virtdisk(api: ModuleType, tmp_path: Path) -> None:
    existing = tmp_path / "a.vhdx"
    VirtualDisk.create(existing, size_gb=1 / 1024).close()
    with pytest.raises(FileExistsError) as exists:
        VirtualDisk.create(existing, size_gb=1 / 1024)
    assert isinstance(exists.value, errors.HcsError) and exists.value.call == "CreateVirtualDisk"
    assert exists.value.hresult == errors.HRESULT_FROM_WIN32(80)  # ERROR_FILE_EXISTS
    with pytest.raises(FileNotFoundError) as missing:
        VirtualDisk.open(tmp_path / "missing.vhdx")
    assert isinstance(missing.value, errors.HcsError) and missing.value.call == "OpenVirtualDisk"
    (tmp_path / "dir.vhdx").mkdir()
    with pytest.raises(errors.HcsError):
        VirtualDisk.open(tmp_path / "dir.vhdx")
    with pytest.raises(ValueError, match=r"\.vhd or \.vhdx"):
        VirtualDisk.create(tmp_path / "disk.img", size_gb=1)
    with pytest.raises(ValueError, match="multiple of 512"):
        VirtualDisk.create(tmp_path / "b.vhdx", size_gb=0)
    with pytest.raises(ValueError, match="multiple of 512"):
        VirtualDisk.create(tmp_path / "b.vhdx", size_gb=1e-9)
    assert not (tmp_path / "b.vhdx").exists()
    with VirtualDisk.open(existing, read_only=True) as ro, pytest.raises(errors.Win32AccessDeniedError):
        ro.format()


def test_relative_paths_become_absolute(api: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with VirtualDisk.create("rel.vhd", size_gb=1 / 1024) as disk:
        assert disk.path == tmp_path / "rel.vhd" and disk.path.is_absolute()


# ------------------------------------------------------------------------------ the Windows path

# Sizes and offsets on Windows x64, from virtdisk.h's declarations and the x64 rules (GUID
# aligned to 4, ULONGLONG and pointers to 8, unions aligned to their widest member).
LAYOUTS: dict[type[ctypes.Structure], tuple[int, dict[str, int]]] = {
    vd.GUID: (16, {"Data1": 0, "Data2": 4, "Data3": 6, "Data4": 8}),
    vd.VIRTUAL_STORAGE_TYPE: (20, {"DeviceId": 0, "VendorId": 4}),
    vd._OpenV2: (24, {"GetInfoOnly": 0, "ReadOnly": 4, "ResiliencyGuid": 8}),
    vd._CreateV2: (
        120,
        {
            "UniqueId": 0,
            "MaximumSize": 16,
            "BlockSizeInBytes": 24,
            "SectorSizeInBytes": 28,
            "PhysicalSectorSizeInBytes": 32,
            "ParentPath": 40,
            "SourcePath": 48,
            "OpenFlags": 56,
            "ParentVirtualStorageType": 60,
            "SourceVirtualStorageType": 80,
            "ResiliencyGuid": 100,
        },
    ),
    vd._CreateV1: (
        48,
        {"UniqueId": 0, "MaximumSize": 16, "BlockSizeInBytes": 24, "SectorSizeInBytes": 28, "ParentPath": 32},
    ),
    vd._AttachV2: (16, {"RestrictedOffset": 0, "RestrictedLength": 8}),
}
# The parameter structures: Version first, the union after it at its alignment.
UNION_OFFSETS: dict[type[ctypes.Structure], int] = {
    vd.OPEN_VIRTUAL_DISK_PARAMETERS: 4,
    vd.CREATE_VIRTUAL_DISK_PARAMETERS: 8,
    vd.ATTACH_VIRTUAL_DISK_PARAMETERS: 8,
}


@pytest.mark.parametrize("struct", list(LAYOUTS), ids=lambda s: s.__name__)
def test_structure_layouts(struct: type[ctypes.Structure]) -> None:
    size, offsets = LAYOUTS[struct]
    assert ctypes.sizeof(struct) == size
    for name, offset in offsets.items():
        assert getattr(struct, name).offset == offset, name


@pytest.mark.parametrize("struct", list(UNION_OFFSETS), ids=lambda s: s.__name__)
def test_parameter_unions(struct: type[ctypes.Structure]) -> None:
    assert struct.Version.offset == 0 and struct.Version.size == 4
    assert struct.u.offset == UNION_OFFSETS[struct]


def test_guid_memory_layout() -> None:
    u = MICROSOFT
    g = vd.GUID.from_uuid(u)
    assert (g.Data1, g.Data2, g.Data3, bytes(g.Data4)) == (0xEC984AEC, 0xA0F9, 0x47E9, bytes.fromhex("901f71415a66345b"))
    assert g.to_uuid() == u and bytes(vd.GUID.from_uuid(None)) == bytes(16)


class FakeVirtDisk:
    """A virtdisk/kernel32 function table that records its arguments (copies, since the
    caller's structures die with the call) and returns the given Win32 codes."""

    def __init__(self, **results: int) -> None:
        self.results = results
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.next_handle = 0x4A0

    @staticmethod
    def _deref(arg: Any) -> Any:
        return arg._obj  # ctypes.byref(x) -> x

    def _handle_out(self, arg: Any) -> None:
        self.next_handle += 4
        self._deref(arg).value = self.next_handle

    def OpenVirtualDisk(self, stype: Any, path: str, access: int, flags: int, params: Any, handle: Any) -> int:
        p = self._deref(params)
        st = self._deref(stype)
        self.calls.append(
            (
                "OpenVirtualDisk",
                {
                    "device": st.DeviceId,
                    "vendor": st.VendorId.to_uuid(),
                    "path": path,
                    "access": access,
                    "flags": flags,
                    "version": p.Version,
                    "read_only": p.Version2.ReadOnly,
                    "info_only": p.Version2.GetInfoOnly,
                },
            )
        )
        code = self.results.get("OpenVirtualDisk", 0)
        if not code:
            self._handle_out(handle)
        return code

    def CreateVirtualDisk(
        self, stype: Any, path: str, access: int, sd: Any, flags: int, provider: int, params: Any, ov: Any, handle: Any
    ) -> int:
        p = self._deref(params)
        st = self._deref(stype)
        v2 = p.Version2
        self.calls.append(
            (
                "CreateVirtualDisk",
                {
                    "device": st.DeviceId,
                    "vendor": st.VendorId.to_uuid(),
                    "path": path,
                    "access": access,
                    "sd": sd,
                    "flags": flags,
                    "provider": provider,
                    "overlapped": ov,
                    "version": p.Version,
                    "size": v2.MaximumSize,
                    "block": v2.BlockSizeInBytes,
                    "sector": v2.SectorSizeInBytes,
                    "parent": v2.ParentPath,
                    "unique": v2.UniqueId.to_uuid(),
                },
            )
        )
        code = self.results.get("CreateVirtualDisk", 0)
        if not code:
            self._handle_out(handle)
        return code

    def AttachVirtualDisk(self, handle: Any, sd: Any, flags: int, provider: int, params: Any, ov: Any) -> int:
        p = self._deref(params)
        self.calls.append(
            (
                "AttachVirtualDisk",
                {"handle": handle.value, "sd": sd, "flags": flags, "version": p.Version, "reserved": p.Version1.Reserved},
            )
        )
        return self.results.get("AttachVirtualDisk", 0)

    def DetachVirtualDisk(self, handle: Any, flags: int, provider: int) -> int:
        self.calls.append(("DetachVirtualDisk", {"handle": handle.value, "flags": flags, "provider": provider}))
        return self.results.get("DetachVirtualDisk", 0)

    def CloseHandle(self, handle: Any) -> int:
        self.calls.append(("CloseHandle", {"handle": handle.value}))
        return 0 if self.results.get("CloseHandle") else 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVirtDisk:
    """pyhcs.storage on the Windows path, over the fake table and Windows path rules."""
    table = FakeVirtDisk()
    monkeypatch.setattr(storage, "_disk_backend", storage._WindowsDisks(vd.VirtDisk(table, lambda: 6)))
    monkeypatch.setattr(storage, "_pathmod", ntpath)
    return table


def test_windows_create_attach_close(fake: FakeVirtDisk) -> None:
    disk = VirtualDisk.create("C:\\layers\\scratch.vhdx", size_gb=20)
    assert str(disk.path) == "C:\\layers\\scratch.vhdx" and disk.handle == 0x4A4
    name, create = fake.calls[0]
    assert name == "CreateVirtualDisk"
    assert create == {
        "device": 3,  # VIRTUAL_STORAGE_TYPE_DEVICE_VHDX
        "vendor": MICROSOFT,
        "path": "C:\\layers\\scratch.vhdx",
        "access": 0,  # VIRTUAL_DISK_ACCESS_NONE, as version 2 parameters require
        "sd": None,
        "flags": 0,
        "provider": 0,
        "overlapped": None,
        "version": 2,
        "size": 20 * GIB,
        "block": 1 << 20,
        "sector": 0,  # the default
        "parent": None,
        "unique": uuid.UUID(int=0),  # virtdisk assigns one
    }
    disk.attach()
    assert fake.calls[1] == (
        "AttachVirtualDisk",
        {"handle": 0x4A4, "sd": None, "flags": 0x2, "version": 1, "reserved": 0},  # NO_DRIVE_LETTER
    )
    disk.close()
    assert [c[0] for c in fake.calls[2:]] == ["DetachVirtualDisk", "CloseHandle"]
    assert fake.calls[2][1] == {"handle": 0x4A4, "flags": 0, "provider": 0}
    assert fake.calls[3][1] == {"handle": 0x4A4}
    disk.close()
    assert len(fake.calls) == 4


def test_windows_open_and_flags(fake: FakeVirtDisk) -> None:
    with VirtualDisk.open("D:\\vm\\base.VHD", read_only=True) as disk:
        disk.attach()
    name, args = fake.calls[0]
    assert name == "OpenVirtualDisk"
    assert args == {
        "device": 2,  # VIRTUAL_STORAGE_TYPE_DEVICE_VHD
        "vendor": MICROSOFT,
        "path": "D:\\vm\\base.VHD",
        "access": 0,
        "flags": 0,
        "version": 2,
        "read_only": 1,
        "info_only": 0,
    }
    assert fake.calls[1][1]["flags"] == 0x1 | 0x2  # ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY | NO_DRIVE_LETTER
    VirtualDisk.create("C:\\fixed.vhdx", size_gb=1, fixed=True).close()
    assert fake.calls[-2][1]["flags"] == 0x1  # CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION


@pytest.mark.parametrize(
    ("call", "code", "exc"),
    [
        ("CreateVirtualDisk", 80, FileExistsError),  # ERROR_FILE_EXISTS
        ("CreateVirtualDisk", 3, FileNotFoundError),  # ERROR_PATH_NOT_FOUND
        ("OpenVirtualDisk", 2, FileNotFoundError),  # ERROR_FILE_NOT_FOUND
        ("OpenVirtualDisk", 32, errors.SharingViolationError),  # ERROR_SHARING_VIOLATION
        ("AttachVirtualDisk", 5, PermissionError),  # ERROR_ACCESS_DENIED
    ],
)
def test_windows_errors(fake: FakeVirtDisk, call: str, code: int, exc: type[BaseException]) -> None:
    fake.results[call] = code
    with pytest.raises(exc) as info:
        if call == "CreateVirtualDisk":
            VirtualDisk.create("C:\\x.vhdx", size_gb=1)
        elif call == "OpenVirtualDisk":
            VirtualDisk.open("C:\\x.vhdx")
        else:
            with VirtualDisk.open("C:\\x.vhdx") as disk:
                disk.attach()
    err = info.value
    assert isinstance(err, errors.HcsError)
    assert err.hresult == errors.HRESULT_FROM_WIN32(code) and err.call == call
    if call == "AttachVirtualDisk":  # the handle was closed anyway, not detached
        assert [c[0] for c in fake.calls] == ["OpenVirtualDisk", "AttachVirtualDisk", "CloseHandle"]


def test_windows_close_failure_is_reported(fake: FakeVirtDisk) -> None:
    fake.results["CloseHandle"] = 1
    disk = VirtualDisk.open("C:\\x.vhdx")
    with pytest.raises(errors.InvalidHandleError) as info:
        disk.close()
    assert info.value.call == "CloseHandle" and disk.closed


# ------------------------------------------------------------------------------ layer ids


def test_name_to_guid_matches_hcs() -> None:
    # hcsshim reports this id for every layer folder named "4" (its NameToGuid calls HCS)
    assert storage.name_to_guid("4") == "bd9c3ef9-f239-59b5-a27e-15c523b1d149"
    for name in ("4", "layer", "ümlaut-層", "a" * 300):
        u = uuid.UUID(storage.name_to_guid(name))
        assert u.version == 5 and u.variant == uuid.RFC_4122
    assert storage.name_to_guid("abc") != storage.name_to_guid("ABC")
    # UTF-16LE, not UTF-8: the UTF-8 form of the name hashes to another id
    assert storage.name_to_guid("abc") != str(uuid.uuid5(storage.LAYER_ID_NAMESPACE, "abc"))


V1 = "\\\\?\\Volume{6f1b2c3d-1111-4a4a-8b8b-000000000001}\\"
V2 = "\\\\?\\Volume{6f1b2c3d-2222-4a4a-8b8b-000000000002}\\"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("C:\\layers\\abc", "abc"),
        ("C:\\layers\\abc\\", "abc"),
        ("C:/layers/abc/", "abc"),
        ("c:\\Layers\\ABC", "ABC"),
        ("\\\\?\\C:\\layers\\abc", "abc"),
        ("\\\\server\\share\\layers\\abc", "abc"),
        ("C:\\layers\\a.b c", "a.b c"),
        (V1, "Volume{6f1b2c3d-1111-4a4a-8b8b-000000000001}"),
        (V1.rstrip("\\"), "Volume{6f1b2c3d-1111-4a4a-8b8b-000000000001}"),
        ("C:\\", "C:"),
        ("\\\\server\\share\\", "share"),
    ],
)
def test_windows_layer_folder_names(fake: FakeVirtDisk, path: str, name: str) -> None:
    assert storage.layer_folder_name(path) == name
    assert storage.layer_id(path) == storage.name_to_guid(name) == Layer(path).id


def test_volume_roots_get_their_own_ids(fake: FakeVirtDisk) -> None:
    assert storage.layer_id(V1) != storage.layer_id(V2)
    chain = LayerChain([V1, "C:\\layers\\base"])
    doc = chain.to_json()
    assert str(chain.paths[0]) == V1
    assert storage.name_to_guid("Volume{6f1b2c3d-1111-4a4a-8b8b-000000000001}") in doc
    assert "C:\\\\layers\\\\base" in doc  # absolute Windows paths, sent unchanged


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX path rules: the emulator's")
def test_posix_layer_folder_names(tmp_path: Path) -> None:
    assert storage.layer_folder_name(tmp_path / "abc") == "abc"
    assert storage.layer_folder_name(str(tmp_path / "abc") + "/") == "abc"
    assert storage.layer_folder_name("/") == "/"
    assert Layer(tmp_path / "abc").id == storage.name_to_guid("abc")
