"""Container storage: image layers, writable layers and their merged view (computestorage.dll).

Before a container starts, its image layers are imported, a writable layer is initialised on
top of them and the storage filter is attached, which gives the container one merged view of
the whole chain. This module wraps the twelve computestorage functions in three objects:

* :class:`Layer`: a read-only layer folder (``Files``, ``Hives``, ``layout``) and its parents.
* :class:`LayerChain`: layers ordered top-most first, base layer last, the order HCS expects in
  ``LayerData``; it turns into the ``LayerData`` document.
* :class:`WritableLayer`: a writable (scratch) layer; attaching it (``with layer.attached() as
  view:``) gives the merged view in which writes land in the writable layer and deletions
  hide the parents' files.
* :class:`VirtualDisk`: a VHD/VHDX file and the handle the VHD functions take, from
  virtdisk.dll on Windows and from the emulator's disk image format elsewhere.

Layer ids are derived from folder names as HCS does it (:func:`layer_id`, :func:`name_to_guid`),
so they equal the ids hcsshim and Docker use for the same folders.

Example::

    >>> from pyhcs.storage import Layer, WritableLayer
    >>> base = Layer.import_from("/images/base-transport", "/layers/base")
    >>> app = Layer.import_from("/images/app-transport", "/layers/app", parents=base)
    >>> scratch = WritableLayer.initialize("/layers/scratch", parents=app)
    >>> with scratch.attached() as view:            # doctest: +SKIP
    ...     (view / "hello.txt").write_text("hi")
    >>> scratch.export("/export/scratch")            # a folder that imports back as a layer

Every document argument accepts a :mod:`pyhcs.schema` model (``LayerData``,
``ExportLayerOptions``, ``OsLayerOptions``), a ``dict`` (checked strictly against that model) or
a JSON string (sent verbatim). Parents accept a :class:`Layer` (meaning it and its parents), a
:class:`LayerChain`, a sequence of layers or paths, or a ``LayerData`` model or ``dict``.

Errors are the same :class:`pyhcs.errors.HcsError` subclasses on every backend and library:
``PathNotFoundError`` (also ``FileNotFoundError``) for a missing folder, ``InvalidLayerError``
for a folder that is not a layer, ``SharingViolationError`` for destroying or exporting a layer
in use, ``InvalidStateError`` for attaching twice or detaching what is not attached,
``AlreadyExistsError`` (also ``FileExistsError``), ``DirectoryNotEmptyError``,
``InvalidArgumentError`` (a relative path or one with ``..`` at the C level),
``InvalidJsonError``, ``InvalidHandleError`` (a bad VHD handle) and ``ResourceBusyError`` (the
view is still in use at detach). A document that does not fit its model raises
``pydantic.ValidationError`` before anything is called.

Where the view is: on Windows the storage filter merges the chain *at the writable layer's
path*; on the emulator the view is the folder ``Merged`` inside the writable layer
(:attr:`WritableLayer.view` knows which). Paths given here may be relative: they are made
absolute first (Windows rules on Windows), because HCS takes absolute paths only.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import errno
import hashlib
import json
import ntpath
import os
import posixpath
import re
import stat
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast, overload

from pyhcs import _log, _virtdisk

if TYPE_CHECKING:
    from typing import TypeAlias

    from pydantic import BaseModel
    from typing_extensions import Self, TypeIs

    from pyhcs._native import _backend as B
    from pyhcs.errors import HcsError
    from pyhcs.schema import LayerData

    StrPath: TypeAlias = "str | os.PathLike[str]"
    #: A document: a pyhcs.schema model, a dict (checked against the model) or JSON text.
    Document: TypeAlias = "BaseModel | Mapping[str, Any] | str | bytes"
    #: Parent layers: a Layer (it and its parents), a LayerChain, layers or paths, or LayerData.
    ParentsLike: TypeAlias = "Layer | LayerChain | Iterable[Layer | StrPath] | BaseModel | Mapping[str, Any]"
    #: A disk for the VHD functions: a VirtualDisk, an open file or a raw handle/descriptor.
    VhdLike: TypeAlias = "VirtualDisk | int | _HasFileno"

__all__ = [
    "Layer",
    "LayerChain",
    "VirtualDisk",
    "WritableLayer",
    "attach_layer_storage_filter",
    "destroy_layer",
    "detach_layer_storage_filter",
    "export_layer",
    "export_legacy_writable_layer",
    "format_writable_layer_vhd",
    "get_layer_vhd_mount_path",
    "import_layer",
    "initialize_legacy_writable_layer",
    "initialize_writable_layer",
    "layer_folder_name",
    "layer_id",
    "name_to_guid",
    "setup_base_os_layer",
    "setup_base_os_volume",
]

#: Namespace of the layer GUIDs the Host Compute Service derives from layer folder names
#: (vmcompute.dll's NameToGuid, which hcsshim's wclayer.LayerID calls for Docker and
#: containerd): a version 5 UUID over the UTF-16LE name. For a folder named ``4`` it gives
#: ``bd9c3ef9-f239-59b5-a27e-15c523b1d149``, the id hcsshim reports for such layers
#: (tests/api/test_virtual_disk.py checks it).
LAYER_ID_NAMESPACE = uuid.UUID("800872c5-909c-403a-89c9-931fe5e2fd08")

#: Path rules of the platform HCS runs on: Windows' (drive letters, ``\\?\`` and UNC prefixes,
#: both separators) there, POSIX on the emulator. Tests set it to ``ntpath`` to check the
#: Windows rules anywhere.
_pathmod: ModuleType = ntpath if sys.platform == "win32" else posixpath

if not TYPE_CHECKING:

    class _Backend:
        """pyhcs._native._backend on first use, so that importing this module (layer ids, VirtualDisk
        on Windows) needs no HCS library, like ``import pyhcs``."""

        def __getattr__(self, name: str) -> Any:
            from pyhcs._native import _backend

            return getattr(_backend, name)

    B = _Backend()

#: The schema version of the LayerData documents built here.
_SCHEMA_VERSION = (2, 1)


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


# ------------------------------------------------------------------------------ coercion


def _path(p: StrPath) -> str:
    s = cast(object, os.fspath(p))  # bytes for a bytes path, despite the annotation
    if not isinstance(s, str):
        raise TypeError(f"a path must be str or os.PathLike[str], not {type(s).__name__}")
    return str(_pathmod.abspath(s))


def _opt_doc(doc: Document | None, model: str) -> str | None:
    """JSON text of an optional document (None stays None: the C side gets NULL)."""
    if doc is None:
        return None
    from pyhcs import schema

    text: str = schema.to_json(doc, getattr(schema, model))
    return text


def _layer_data_json(doc: Document | LayerChain | None) -> str:
    """JSON text of a LayerData argument; None is a chain without parents."""
    if doc is None:
        return LayerChain().to_json()
    if isinstance(doc, LayerChain):
        return doc.to_json()
    text = _opt_doc(doc, "LayerData")
    assert text is not None
    return text


def _vhd_handle(vhd: VhdLike | None) -> int:
    """A VHD handle for the C ABI: a HANDLE on Windows, a file descriptor elsewhere.

    A :class:`VirtualDisk` gives its handle (on Windows the virtual-disk handle HCS needs); a
    file object (anything with ``fileno()``) is converted; an ``int`` is taken as it is.
    """
    if vhd is None:
        return 0
    if isinstance(vhd, VirtualDisk):
        return vhd.handle
    if isinstance(vhd, bool):
        raise TypeError("a VHD handle must be an int or an open file, not bool")
    if isinstance(vhd, int):
        return vhd
    fileno = getattr(vhd, "fileno", None)
    if fileno is None:
        raise TypeError(f"a VHD handle must be an int or an open file, not {type(vhd).__name__}")
    fd = int(fileno())
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        return int(msvcrt.get_osfhandle(fd))
    return fd


def name_to_guid(name: str) -> str:
    """The GUID the Host Compute Service derives from a name (vmcompute's NameToGuid): a
    version 5 UUID (SHA-1) in :data:`LAYER_ID_NAMESPACE` over the name in UTF-16LE."""
    data = LAYER_ID_NAMESPACE.bytes + name.encode("utf-16-le", "surrogatepass")
    return str(uuid.UUID(bytes=hashlib.sha1(data, usedforsecurity=False).digest()[:16], version=5))


def layer_folder_name(path: StrPath) -> str:
    """The name a layer id is derived from: the folder's last component, as hcsshim's
    ``wclayer.LayerID`` takes it (trailing separators ignored).

    A volume root has no component (hcsshim then hashes the empty name, so every volume gets
    the same id): its name is the volume's, ``Volume{...}`` for ``\\\\?\\Volume{...}\\``, ``C:``
    for ``C:\\``, the share for ``\\\\server\\share\\``.
    """
    p = _path(path)
    seps = "\\/" if _pathmod is ntpath else "/"
    drive, rest = _pathmod.splitdrive(p)
    name = _pathmod.basename(rest.rstrip(seps))
    if not name:
        parts = [x for x in re.split(f"[{re.escape(seps)}]", drive) if x and x != "?"]
        name = parts[-1] if parts else p
    return str(name)


def _derive_layer_id(path: StrPath) -> str:
    return name_to_guid(layer_folder_name(path))


def layer_id(path: StrPath) -> str:
    """The layer GUID HCS, hcsshim and Docker derive for a layer folder: :func:`name_to_guid`
    of :func:`layer_folder_name` (so two folders of the same name share an id, as there)."""
    return _derive_layer_id(path)


def _host_formats() -> ModuleType | None:
    from pyhcs._native._library import host_formats

    return host_formats(B.library_path())


# ------------------------------------------------------------------------------ the flat functions
# Every call goes through _log.timed: call statistics and the slow-call watchdog see it.


def _about(path: StrPath) -> str:
    return f"layer {os.fspath(path)!r}"



def import_layer(path: StrPath, source: StrPath, layer_data: Document | LayerChain | None = None) -> None:
    """HcsImportLayer: copy a layer in transport format (``source``) into the folder ``path``.

    Args:
        path: the layer folder; created if missing, must be empty otherwise.
        source: a folder with ``Files`` (and optionally ``Hives``, ``layout``, ``UtilityVM``).
        layer_data: the layer's parents (``LayerData``); None for a base layer.

    Raises:
        PathNotFoundError: ``source`` (or ``path``'s parent folder, or a parent layer) is missing.
        InvalidLayerError: ``source`` is not a layer (no ``Files``, unexpected entries, special
            files, a tombstone escaping the layer).
        DirectoryNotEmptyError: ``path`` exists and is not empty.
    """
    _log.timed(
        "HcsImportLayer", _about(path), B.hcs_import_layer,
        _path(path), _path(source), _layer_data_json(layer_data),
   )


def export_layer(
    path: StrPath, folder: StrPath, layer_data: Document | LayerChain | None = None, options: Document | None = None
) -> None:
    """HcsExportLayer: write layer ``path`` in transport format into the empty folder ``folder``.

    ``options`` is ``ExportLayerOptions`` (``{"IsWritableLayer": true}`` for a writable layer).
    The result imports back (:func:`import_layer`) to the same layer.

    Raises:
        PathNotFoundError: ``path`` or ``folder`` is missing.
        DirectoryNotEmptyError: ``folder`` is not empty.
        SharingViolationError: ``path`` is an attached writable layer.
    """
    _log.timed(
        "HcsExportLayer", _about(path), B.hcs_export_layer,
        _path(path), _path(folder), _layer_data_json(layer_data), _opt_doc(options, "ExportLayerOptions"),
   )


def export_legacy_writable_layer(
    mount_path: StrPath, folder: StrPath, export_folder: StrPath, layer_data: Document | LayerChain | None = None
) -> None:
    """HcsExportLegacyWritableLayer: export a legacy writable layer (files at ``mount_path``,
    hives in ``folder``) into ``export_folder``."""
    _log.timed(
        "HcsExportLegacyWritableLayer", _about(mount_path), B.hcs_export_legacy_writable_layer,
        _path(mount_path), _path(folder), _path(export_folder), _layer_data_json(layer_data),
   )


def destroy_layer(path: StrPath) -> None:
    """HcsDestroyLayer: delete a layer folder and everything in it.

    Raises:
        SharingViolationError: the layer is attached or a parent of an attached layer.
        InvalidLayerError: the folder does not look like a layer (nothing is deleted).
    """
    _log.timed("HcsDestroyLayer", _about(path), B.hcs_destroy_layer, _path(path))


def setup_base_os_layer(path: StrPath, vhd: VhdLike | None = None, options: Document | None = None) -> None:
    """HcsSetupBaseOSLayer: make an imported layer a base OS layer (creates ``Hives`` and
    ``layout``). ``options`` is ``OsLayerOptions``; ``{"Type": "Vm"}`` needs ``vhd``, the
    formatted system-template disk, a container base layer takes none.

    Raises:
        AlreadyExistsError: the layer is already set up.
    """
    _log.timed(
        "HcsSetupBaseOSLayer", _about(path), B.hcs_setup_base_os_layer,
        _path(path), _vhd_handle(vhd), _opt_doc(options, "OsLayerOptions"),
   )


def setup_base_os_volume(path: StrPath, volume_path: StrPath, options: Document | None = None) -> None:
    """HcsSetupBaseOSVolume: like :func:`setup_base_os_layer`, onto a mounted volume."""
    _log.timed(
        "HcsSetupBaseOSVolume", _about(path), B.hcs_setup_base_os_volume,
        _path(path), _path(volume_path), _opt_doc(options, "OsLayerOptions"),
   )


def initialize_writable_layer(
    path: StrPath, layer_data: Document | LayerChain | None = None, options: Document | None = None
) -> None:
    """HcsInitializeWritableLayer: prepare the folder ``path`` as a writable layer over the
    parents in ``layer_data``. ``options`` is reserved (None)."""
    _log.timed(
        "HcsInitializeWritableLayer", _about(path), B.hcs_initialize_writable_layer,
        _path(path), _layer_data_json(layer_data), _opt_doc_any(options),
   )


def initialize_legacy_writable_layer(
    mount_path: StrPath,
    folder: StrPath,
    layer_data: Document | LayerChain | None = None,
    options: Document | None = None,
) -> None:
    """HcsInitializeLegacyWritableLayer: a writable layer whose files live on the mounted volume
    ``mount_path`` and whose hives live in ``folder``."""
    _log.timed(
        "HcsInitializeLegacyWritableLayer", _about(mount_path), B.hcs_initialize_legacy_writable_layer,
        _path(mount_path), _path(folder), _layer_data_json(layer_data), _opt_doc_any(options),
   )


def attach_layer_storage_filter(path: StrPath, layer_data: Document | LayerChain | None = None) -> None:
    """HcsAttachLayerStorageFilter: merge writable layer ``path`` with its parents.

    Raises:
        InvalidStateError: already attached.
        InvalidArgumentError: ``layer_data`` names other parents than the layer was initialised with.
        SharingViolationError: a parent is itself an attached writable layer.
    """
    _log.timed(
        "HcsAttachLayerStorageFilter", _about(path), B.hcs_attach_layer_storage_filter,
        _path(path), _layer_data_json(layer_data),
   )


def detach_layer_storage_filter(path: StrPath) -> None:
    """HcsDetachLayerStorageFilter: remove the merged view; changes stay in the writable layer.

    Raises:
        InvalidStateError: not attached.
        ResourceBusyError: a process still uses the view (emulator, overlay mode).
    """
    _log.timed("HcsDetachLayerStorageFilter", _about(path), B.hcs_detach_layer_storage_filter, _path(path))


def format_writable_layer_vhd(vhd: VhdLike) -> None:
    """HcsFormatWritableLayerVhd: format a disk (a :class:`VirtualDisk`; an open file or a raw
    handle/descriptor also works on the emulator and on Windows Server 2019, whose HCS took a
    file handle: later Windows versions need the virtual-disk handle only VirtualDisk gives)."""
    _log.timed("HcsFormatWritableLayerVhd", None, B.hcs_format_writable_layer_vhd, _vhd_handle(vhd))


def get_layer_vhd_mount_path(vhd: VhdLike) -> str:
    """HcsGetLayerVhdMountPath: the volume path of a formatted, mounted disk image."""
    path: str = _log.timed("HcsGetLayerVhdMountPath", None, B.hcs_get_layer_vhd_mount_path, _vhd_handle(vhd))
    return path


def _opt_doc_any(doc: Document | None) -> str | None:
    """An options document with no schema type: a model, a dict or a JSON string."""
    if doc is None:
        return None
    if isinstance(doc, (str, bytes, bytearray)):
        return doc if isinstance(doc, str) else bytes(doc).decode("utf-8")
    from pyhcs import schema

    text: str = schema.to_json(doc)
    return text


# ------------------------------------------------------------------------------ virtual disks

_GIB = 1 << 30
# errno -> the Win32 error virtdisk reports for the same condition, so that both platforms
# raise the same HcsError subclasses (all also FileNotFoundError, FileExistsError, ...)
_WIN32_FROM_ERRNO = {
    errno.ENOENT: 2,  # ERROR_FILE_NOT_FOUND
    errno.ENOTDIR: 3,  # ERROR_PATH_NOT_FOUND
    errno.EACCES: 5,  # ERROR_ACCESS_DENIED
    errno.EPERM: 5,
    errno.EISDIR: 5,
    errno.EEXIST: 80,  # ERROR_FILE_EXISTS
    errno.ENOSPC: 112,  # ERROR_DISK_FULL
}


def _disk_error(call: str, path: str, code: int) -> HcsError:
    from pyhcs import errors

    return errors.make_error(errors.HRESULT_FROM_WIN32(code), message=f"{call} failed for {path!r}", call=call)


class _DiskBackend(Protocol):
    def create(self, path: str, size_bytes: int, fixed: bool) -> int: ...
    def open(self, path: str, read_only: bool) -> int: ...
    def attach(self, handle: int, read_only: bool) -> None: ...
    def detach(self, handle: int) -> None: ...
    def close(self, handle: int) -> None: ...


class _WindowsDisks:
    """virtdisk.dll: the handles are virtual-disk HANDLEs."""

    def __init__(self, virtdisk: _virtdisk.VirtDisk) -> None:
        self.v = virtdisk

    def _call(self, path: str, fn: Callable[[], int | None]) -> int | None:
        try:
            return fn()
        except _virtdisk.Win32Error as exc:
            raise _disk_error(exc.call, path, exc.code) from None

    def create(self, path: str, size_bytes: int, fixed: bool) -> int:
        return int(self._call(path, lambda: self.v.create(path, size_bytes, fixed=fixed)) or 0)

    def open(self, path: str, read_only: bool) -> int:
        return int(self._call(path, lambda: self.v.open(path, read_only=read_only)) or 0)

    def attach(self, handle: int, read_only: bool) -> None:
        self._call(str(handle), lambda: self.v.attach(handle, read_only=read_only))

    def detach(self, handle: int) -> None:
        self._call(str(handle), lambda: self.v.detach(handle))

    def close(self, handle: int) -> None:
        self._call(str(handle), lambda: self.v.close(handle))


class _EmulatorDisks:
    """The emulator's disk images (docs/emulator.md): a file whose descriptor is the handle.
    Every open descriptor of a formatted image counts as mounted there, so attach and detach
    change no file; :class:`VirtualDisk` still tracks the state, as on Windows."""

    def _os(self, call: str, path: str, fn: Callable[[], int]) -> int:
        try:
            return fn()
        except OSError as exc:
            code = _WIN32_FROM_ERRNO.get(exc.errno or 0)
            if code is None:
                raise
            raise _disk_error(call, path, code) from exc

    def create(self, path: str, size_bytes: int, fixed: bool) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = self._os("CreateVirtualDisk", path, lambda: os.open(path, flags, 0o644))
        try:
            if fixed:
                os.posix_fallocate(fd, 0, size_bytes)
            else:
                os.ftruncate(fd, size_bytes)  # sparse, like a dynamic VHDX
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            code = _WIN32_FROM_ERRNO.get(exc.errno or 0)
            if code is None:
                raise
            raise _disk_error("CreateVirtualDisk", path, code) from exc
        return fd

    def open(self, path: str, read_only: bool) -> int:
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        fd = self._os("OpenVirtualDisk", path, lambda: os.open(path, flags))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _disk_error("OpenVirtualDisk", path, 87)  # ERROR_INVALID_PARAMETER
        return fd

    def attach(self, handle: int, read_only: bool) -> None:
        os.fstat(handle)  # still open

    def detach(self, handle: int) -> None:
        os.fstat(handle)

    def close(self, handle: int) -> None:
        os.close(handle)


_disk_backend: _DiskBackend | None = None


def _disks() -> _DiskBackend:
    global _disk_backend
    if _disk_backend is None:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import ctypes

            _disk_backend = _WindowsDisks(
                _virtdisk.VirtDisk(_virtdisk.load_windows_table(), getattr(ctypes, "get_last_error"))  # noqa: B009
           )
        else:
            _disk_backend = _EmulatorDisks()
    return _disk_backend


class VirtualDisk:
    """A virtual disk file (``.vhd``/``.vhdx``) and the handle HCS takes for it.

    On Windows the handle comes from virtdisk.dll (CreateVirtualDisk/OpenVirtualDisk): the
    virtual-disk handle HcsFormatWritableLayerVhd, HcsGetLayerVhdMountPath and
    HcsSetupBaseOSLayer need. On the emulator it is a descriptor of the emulator's disk image.
    The same code runs on both::

        with VirtualDisk.create("scratch.vhdx", size_gb=20) as disk:
            disk.format()                 # HcsFormatWritableLayerVhd
            disk.attach()                 # Windows: the disk's volume appears (no drive letter)
            print(disk.mount_path())      # HcsGetLayerVhdMountPath

    Closing (or leaving the ``with`` block) detaches the disk if this object attached it and
    closes the handle. Paths are made absolute first; the extension picks the format.

    Raises (as :class:`pyhcs.errors.HcsError` subclasses, on both platforms): ``FileExistsError``
    (``create`` over an existing file), ``FileNotFoundError`` (``open`` of a missing one),
    ``PermissionError``, ``InvalidStateError`` (attach twice, detach when not attached);
    ``ValueError`` for another extension, a size that is not a positive multiple of 512 bytes,
    or a closed disk.
    """

    def __init__(self, path: StrPath, handle: int, *, read_only: bool = False) -> None:
        """Wraps a handle already open on ``path``; :meth:`create` and :meth:`open` make one."""
        self.path = Path(_path(path))
        self._handle: int | None = handle
        self.read_only = read_only
        self._attached = False
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: StrPath, size_gb: float, *, fixed: bool = False) -> VirtualDisk:
        """Create a new disk of ``size_gb`` GiB (dynamic, or ``fixed``: fully allocated) and open it."""
        p = _path(path)
        _virtdisk.storage_type(p)
        size = round(size_gb * _GIB)
        if size <= 0 or size % 512:
            raise ValueError(f"a virtual disk's size is a positive multiple of 512 bytes, not {size_gb} GiB")
        return cls(p, _disks().create(p, size, fixed))

    @classmethod
    def open(cls, path: StrPath, *, read_only: bool = False) -> VirtualDisk:
        """Open an existing disk."""
        p = _path(path)
        _virtdisk.storage_type(p)
        return cls(p, _disks().open(p, read_only), read_only=read_only)

    @property
    def handle(self) -> int:
        """The handle to pass to HCS (a virtual-disk HANDLE on Windows, a descriptor elsewhere)."""
        if self._handle is None:
            raise ValueError(f"virtual disk {str(self.path)!r} is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def attached(self) -> bool:
        """Whether this object attached the disk (and has not detached it)."""
        return self._attached

    def _state_error(self, what: str) -> HcsError:
        from pyhcs import errors

        return errors.make_error(errors.HCS_E_INVALID_STATE, message=f"virtual disk {str(self.path)!r} {what}")

    def attach(self, *, read_only: bool | None = None) -> None:
        """Attach the disk (AttachVirtualDisk; no drive letter), until :meth:`detach` or close."""
        with self._lock:
            handle = self.handle
            if self._attached:
                raise self._state_error("is already attached")
            _disks().attach(handle, self.read_only if read_only is None else read_only)
            self._attached = True

    def detach(self) -> None:
        """Detach what :meth:`attach` attached (DetachVirtualDisk)."""
        with self._lock:
            handle = self.handle
            if not self._attached:
                raise self._state_error("is not attached")
            _disks().detach(handle)
            self._attached = False

    def format(self) -> None:
        """Format the disk as a writable layer volume (HcsFormatWritableLayerVhd)."""
        format_writable_layer_vhd(self)

    def mount_path(self) -> str:
        """The volume path of the formatted, mounted disk (HcsGetLayerVhdMountPath)."""
        return get_layer_vhd_mount_path(self)

    def close(self) -> None:
        """Detach (if attached here) and close the handle; closing twice is allowed."""
        with self._lock:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            try:
                if self._attached:
                    self._attached = False
                    _disks().detach(handle)
            finally:
                _disks().close(handle)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else ("attached" if self._attached else "open")
        return f"VirtualDisk({str(self.path)!r}, {state})"


# ------------------------------------------------------------------------------ objects


def _is_model(value: object) -> TypeIs[BaseModel]:
    return hasattr(value, "model_dump")


def _parents(parents: ParentsLike | None) -> LayerChain:
    if parents is None:
        return LayerChain()
    if isinstance(parents, LayerChain):
        return parents
    if isinstance(parents, Layer):
        return parents.chain
    if isinstance(parents, (str, bytes)):
        raise TypeError("parents must be layers, paths, a LayerChain or a LayerData document, not a string")
    if isinstance(parents, Mapping) or _is_model(parents):
        return LayerChain.from_layer_data(cast("Document", parents))
    return LayerChain(parents)


class LayerChain(Sequence["Layer"]):
    """Read-only layers, top-most first and the base layer last (immutable).

    ``LayerChain([app, base])`` or ``LayerChain(["/layers/app", "/layers/base"])``; a
    :class:`Layer` in it keeps its own parents, but only the chain's order matters to HCS.
    """

    __slots__ = ("_layers",)

    def __init__(self, layers: Iterable[Layer | StrPath] = ()) -> None:
        self._layers: tuple[Layer, ...] = tuple(x if isinstance(x, Layer) else Layer(x) for x in layers)

    @classmethod
    def from_layer_data(cls, doc: Document) -> LayerChain:
        """The chain a ``LayerData`` document (model, dict or JSON) describes."""
        from pyhcs.schema import LayerData, coerce

        data = coerce(LayerData, cast("LayerData | Mapping[str, Any] | str | bytes", doc))
        items = [(item.path, item.id) for item in data.layers or ()]
        if any(not p for p, _ in items):
            raise ValueError("a LayerData layer without a Path")
        # each layer's parents are the ones below it, built from the base up
        chain: list[Layer] = []
        for p, lid in reversed(items):
            chain.insert(0, Layer(str(p), LayerChain(chain), layer_id=lid))
        return cls(chain)

    @overload
    def __getitem__(self, index: int) -> Layer: ...
    @overload
    def __getitem__(self, index: slice) -> LayerChain: ...
    def __getitem__(self, index: int | slice) -> Layer | LayerChain:
        if isinstance(index, slice):
            return LayerChain(self._layers[index])
        return self._layers[index]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerChain):
            return NotImplemented
        return self.paths == other.paths

    def __hash__(self) -> int:
        return hash(self.paths)

    def __repr__(self) -> str:
        return f"LayerChain([{', '.join(repr(str(p)) for p in self.paths)}])"

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(x.path for x in self._layers)

    def layer_data(self) -> LayerData:
        """The ``LayerData`` model for this chain."""
        from pyhcs.schema import builders

        return builders.layer_data([(x.id, str(x.path)) for x in self._layers], version=_SCHEMA_VERSION)

    def to_json(self) -> str:
        """The ``LayerData`` document as HCS takes it (built without pydantic: same text as
        ``self.layer_data().to_json()``)."""
        doc = {
            "SchemaVersion": {"Major": _SCHEMA_VERSION[0], "Minor": _SCHEMA_VERSION[1]},
            "Layers": [{"Id": x.id, "Path": str(x.path)} for x in self._layers],
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class Layer:
    """A layer folder and the chain of parents it sits on (top-most parent first).

    Creating the object touches nothing; :meth:`import_from` imports one. ``Layer`` objects
    compare by path.
    """

    def __init__(self, path: StrPath, parents: ParentsLike | None = None, *, layer_id: str | None = None) -> None:
        self.path = Path(_path(path))
        self.parents: LayerChain = _parents(parents)
        self.id: str = layer_id or _derive_layer_id(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, parents={len(self.parents)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        return self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def chain(self) -> LayerChain:
        """This layer followed by its parents: what a layer on top of it names as parents."""
        return LayerChain((self, *self.parents))

    @property
    def layer_data(self) -> LayerData:
        """The ``LayerData`` of this layer's parents (what the layer APIs take for it)."""
        return self.parents.layer_data()

    @property
    def exists(self) -> bool:
        return (self.path / "Files").is_dir()

    @classmethod
    def import_from(cls, source: StrPath, path: StrPath, parents: ParentsLike | None = None) -> Self:
        """Import the transport-format folder ``source`` as the layer ``path`` (HcsImportLayer).

        Raises: see :func:`import_layer`.
        """
        layer = cls(path, parents)
        import_layer(layer.path, source, layer.parents)
        return layer

    def export(self, folder: StrPath, *, options: Document | None = None) -> Path:
        """Export into the empty folder ``folder`` (HcsExportLayer); returns its path."""
        target = Path(_path(folder))
        export_layer(self.path, target, self.parents, options)
        return target

    def destroy(self) -> None:
        """Delete the layer folder (HcsDestroyLayer). Raises SharingViolationError while in use."""
        destroy_layer(self.path)

    def setup_base_os(self, vhd: VhdLike | None = None, *, options: Document | None = None) -> None:
        """Make this layer a base OS layer (HcsSetupBaseOSLayer)."""
        setup_base_os_layer(self.path, vhd, options)

    def setup_base_os_volume(self, volume_path: StrPath, *, options: Document | None = None) -> None:
        """Set this base OS layer up on a mounted volume (HcsSetupBaseOSVolume)."""
        setup_base_os_volume(self.path, volume_path, options)


class WritableLayer(Layer):
    """A writable (scratch) layer over a chain of read-only parents.

    ``with layer.attached() as view:`` attaches the storage filter for the block;
    ``with layer:`` does the same and gives the layer. Attach state is per object and
    thread-safe; the library itself refuses a second attach from anywhere
    (``InvalidStateError``).
    """

    def __init__(
        self,
        path: StrPath,
        parents: ParentsLike | None = None,
        *,
        layer_id: str | None = None,
        legacy_folder: StrPath | None = None,
    ) -> None:
        super().__init__(path, parents, layer_id=layer_id)
        self.legacy_folder = Path(_path(legacy_folder)) if legacy_folder is not None else None
        self._lock = threading.Lock()
        self._attached = False

    @classmethod
    def initialize(cls, path: StrPath, parents: ParentsLike | None = None, *, options: Document | None = None) -> Self:
        """Create the writable layer ``path`` over ``parents`` (HcsInitializeWritableLayer).

        Raises:
            AlreadyExistsError: ``path`` is already a writable layer.
            PathNotFoundError: a parent layer (or ``path``'s parent folder) is missing.
        """
        layer = cls(path, parents)
        initialize_writable_layer(layer.path, layer.parents, options)
        return layer

    @classmethod
    def initialize_legacy(
        cls,
        mount_path: StrPath,
        folder: StrPath,
        parents: ParentsLike | None = None,
        *,
        options: Document | None = None,
    ) -> Self:
        """A legacy writable layer: files on the mounted volume ``mount_path`` (e.g. from
        :func:`get_layer_vhd_mount_path`), hives in ``folder`` (HcsInitializeLegacyWritableLayer)."""
        layer = cls(mount_path, parents, legacy_folder=folder)
        initialize_legacy_writable_layer(layer.path, folder, layer.parents, options)
        return layer

    @classmethod
    def open(cls, path: StrPath, parents: ParentsLike | None = None) -> Self:
        """An existing writable layer. Without ``parents``, the emulator's record of the layer
        (written at initialisation) supplies them; on Windows they must be given.

        Raises:
            FileNotFoundError: no parents given and no record of them.
        """
        layer = cls(path, parents)
        if parents is None:
            formats = _host_formats()
            meta = formats.layer_record(layer.path) if formats is not None else None
            if meta is None:
                raise FileNotFoundError(f"{layer.path} has no record of its parents; pass parents=")
            # "Parents" holds the resolved folders; the LayerData as given keeps the layer ids
            given = LayerChain.from_layer_data(meta.get("LayerData") or {"Layers": []})
            resolved = [str(p) for p in meta.get("Parents") or ()]
            if len(resolved) == len(given):
                ids = [x.id for x in given]
                chain: list[Layer] = []
                for p, lid in reversed(list(zip(resolved, ids, strict=True))):
                    chain.insert(0, Layer(p, LayerChain(chain), layer_id=lid))
                given = LayerChain(chain)
            layer.parents = given
            if meta.get("LegacyFolder"):
                layer.legacy_folder = Path(meta["LegacyFolder"])
            layer._attached = bool(meta.get("Attached"))
        return layer

    @property
    def is_attached(self) -> bool:
        """Whether this object attached the storage filter (and has not detached it)."""
        return self._attached

    @property
    def view(self) -> Path:
        """Where the merged view appears while attached: the layer folder itself on Windows,
        its ``Merged`` folder on the emulator."""
        formats = _host_formats()
        return formats.merged_view(self.path) if formats is not None else self.path

    def attach(self) -> Path:
        """Attach the storage filter (HcsAttachLayerStorageFilter); returns :attr:`view`."""
        with self._lock:
            attach_layer_storage_filter(self.path, self.parents)
            self._attached = True
        return self.view

    def detach(self) -> None:
        """Detach the storage filter (HcsDetachLayerStorageFilter); changes stay in the layer."""
        with self._lock:
            detach_layer_storage_filter(self.path)
            self._attached = False

    @contextmanager
    def attached(self) -> Generator[Path, None, None]:
        """Attach for the duration of a ``with`` block, yielding the merged view."""
        view = self.attach()
        try:
            yield view
        finally:
            self.detach()

    def __enter__(self) -> Self:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._attached:
            self.detach()

    def export(self, folder: StrPath, *, options: Document | None = None) -> Path:
        """Export as a layer (HcsExportLayer with ``IsWritableLayer``, or
        HcsExportLegacyWritableLayer for a legacy layer). Detach first."""
        target = Path(_path(folder))
        if self.legacy_folder is not None:
            export_legacy_writable_layer(self.path, self.legacy_folder, target, self.parents)
        else:
            export_layer(self.path, target, self.parents, options if options is not None else {"IsWritableLayer": True})
        return target
