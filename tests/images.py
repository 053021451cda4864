"""Minimal disk images that the emulator accepts as VM attachments: a file carries the real
format's signature (src/hcsemu/service/systems.c check_image), nothing more, so a test about something
else than storage can give a VM a disk that exists."""

from __future__ import annotations

from pathlib import Path

_SECTOR = 512


def _vhd_footer(size: int, disk_type: int) -> bytes:
    """A VHD footer: "conectix" cookie, features, version 1.0, data offset, sizes, disk type
    (2 fixed, 3 dynamic); the checksum is the ones' complement of the byte sum."""
    footer = bytearray(_SECTOR)
    footer[0:8] = b"conectix"
    footer[8:12] = (2).to_bytes(4, "big")
    footer[12:16] = (0x00010000).to_bytes(4, "big")
    footer[16:24] = (_SECTOR if disk_type == 3 else 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    footer[40:48] = size.to_bytes(8, "big")
    footer[48:56] = size.to_bytes(8, "big")
    footer[60:64] = disk_type.to_bytes(4, "big")
    footer[64:68] = (~sum(footer) & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(footer)


def make_vhd(path: Path | str, size: int = 64 * 1024, dynamic: bool = False) -> Path:
    """A fixed VHD (data then footer) or a dynamic one (footer copy at offset 0, then footer)."""
    path = Path(path)
    if dynamic:
        footer = _vhd_footer(size, 3)
        path.write_bytes(footer + b"\0" * 1024 + footer)
    else:
        path.write_bytes(b"\0" * size + _vhd_footer(size, 2))
    return path


def make_vhdx(path: Path | str) -> Path:
    """A VHDX file identifier: "vhdxfile" at offset 0, then the creator (UTF-16) in 64 KiB."""
    path = Path(path)
    ident = b"vhdxfile" + "pyhcs tests".encode("utf-16-le")
    path.write_bytes(ident + b"\0" * (64 * 1024 - len(ident)))
    return path


def make_iso(path: Path | str) -> Path:
    """An ISO 9660 primary volume descriptor at sector 16: type 1, "CD001", version 1."""
    path = Path(path)
    data = bytearray(17 * 2048)
    data[0x8000:0x8007] = b"\x01CD001\x01"
    path.write_bytes(bytes(data))
    return path
