"""What the HCS emulator writes on disk, read back: the places where the emulator's state
differs in form from what Windows keeps (docs/emulator.md).

* VM access grants (HcsGrantVmAccess): Windows adds an entry to the file's ACL; the emulator
  records a JSON list in the ``user.hcs.acl`` extended attribute, or in ``<path>.hcs-acl``
  where the filesystem has no user xattrs.
* A writable layer's merged view (HcsAttachLayerStorageFilter): the layer folder itself on
  Windows; the emulator's overlay appears in the folder ``Merged`` inside it.
* A writable layer's record (HcsInitializeWritableLayer): the emulator keeps the layer data it
  was given, its resolved parents, the legacy folder and whether it is attached in
  ``.hcsemu/layer.json`` inside the layer; Windows keeps no such record.

Standard library only: the native layer hands this module to the Pythonic layer
(``pyhcs._native._library.host_formats``), which never reads these formats itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

__all__ = ["ACL_SIDECAR", "ACL_XATTR", "access_entries", "layer_record", "merged_view"]

ACL_XATTR = "user.hcs.acl"
ACL_SIDECAR = ".hcs-acl"


def access_entries(path: str) -> list[dict[str, Any]]:
    """The access entries recorded for the absolute ``path`` (``Sid``, ``VmId``, ``Access``,
    ``Inherit``); [] when none were. FileNotFoundError when ``path`` does not exist."""
    raw: bytes | None = None
    getxattr = getattr(os, "getxattr", None)
    if getxattr is not None:
        try:
            raw = getxattr(path, ACL_XATTR)
        except OSError:
            raw = None
    if raw is None:
        try:
            with open(path + ACL_SIDECAR, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            if not os.path.exists(path):
                raise
            return []
    try:
        entries: object = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    # JSON objects: json.loads gives them str keys
    return [cast("dict[str, Any]", e) for e in cast("list[object]", entries) if isinstance(e, dict)]


def merged_view(layer: Path) -> Path:
    """Where the merged view of the writable layer ``layer`` appears while it is attached."""
    return layer / "Merged"


def layer_record(layer: Path) -> dict[str, Any] | None:
    """The record the emulator wrote when it initialised the writable layer ``layer``
    (``LayerData``, ``Parents``, ``LegacyFolder``, ``Attached``); None if there is none."""
    try:
        meta: object = json.loads((layer / ".hcsemu" / "layer.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return cast("dict[str, Any]", meta) if isinstance(meta, dict) else None
