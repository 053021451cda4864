"""The HCS emulator bundled with pyhcs.

Off Windows, pyhcs talks to a C library that exports the same ABI as computecore.dll and
computestorage.dll and really does the work (processes are real child processes, layers are
real folders). Other programs can use it too: link a C, Go or Rust client against
:func:`library_path` and it behaves like HCS.

The emulator's own controls (quirk switches, faults, statistics) go through the normal API
(HcsModifyServiceSettings / HcsGetServiceProperties with emulator-only property types); the
helpers below wrap them (through the one control client, ``pyhcs.emulator._control``). On real HCS
those property types are rejected, so nothing here can silently run against Windows.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from .. import errors
from .._native._library import emulator_path
from ._control import EmulatorControl

_controls = EmulatorControl()  # through pyhcs._native._backend, looked up at each call


def library_path() -> str:
    """Absolute path of the emulator library (``libhcsemu.so``)."""
    return str(emulator_path())


def active() -> bool:
    """Whether pyhcs is talking to an emulator (rather than Windows' computecore.dll)."""
    return _controls.active


def settings() -> dict[str, Any]:
    """The current quirk switches and tunables (see docs/emulator.md)."""
    return _controls.settings()


def configure(**switches: Any) -> None:
    """Changes quirk switches, e.g. ``configure(CancelOperation="Implemented")``. All or nothing."""
    _controls.configure(**switches)


def add_faults(*faults: dict[str, Any], reset: bool = False) -> None:
    """Adds fault rules (see docs/emulator.md), e.g.
    ``add_faults({"Function": "HcsStartComputeSystem", "Where": "Result", "HResult": "0x80370109"})``."""
    _controls.add_faults(*faults, reset=reset)


def faults() -> list[dict[str, Any]]:
    """The configured faults with how often each was seen and fired."""
    return _controls.faults()


def call_counts() -> dict[str, int]:
    """How often each native function has been called in this process."""
    return _controls.call_counts()


def statistics() -> dict[str, Any]:
    """Live objects inside the emulator: handles, systems, processes, documents, threads."""
    return _controls.statistics()


def action(name: str, **args: Any) -> None:
    """Emulator actions: ``ServiceDisconnect``, ``Reconnect``, ``Reset``,
    ``UnexpectedExit`` (SystemId=…), ``ProcessExit`` (SystemId=…, ProcessId=…)."""
    _controls.action(name, **args)


def reset() -> None:
    """Back to the documented defaults: no faults, default switches, service connected."""
    _controls.reset()


# ----------------------------------------------------------------------------- the service process
#
# The emulator's service half can run in a process of its own, hcsemud (docs/emulator.md,
# "The service process"); HCSEMU_SERVICE chooses how the library reaches it. The helpers below
# start, query and stop a shared service; `pyhcs emulator serve|status|stop` calls them.

_PROTOCOL_VERSION = 1  # HCSEMU_PROTOCOL_VERSION in src/hcsemu/protocol.h
_MAGIC = 0x46534348
_HEADER = struct.Struct("<IIHHIQ")  # magic, payload length, frame type, fd count, call, id
_FR_HELLO, _FR_WELCOME, _FR_REFUSE, _FR_REQUEST, _FR_RESPONSE = 1, 2, 3, 4, 5
_CALL_STATUS, _CALL_STOP = 29, 30


def hcsemud_path() -> str:
    """Absolute path of the service executable shipped beside the library (``hcsemud``)."""
    return str(Path(library_path()).with_name("hcsemud"))


def service_mode() -> str:
    """How this process reaches the emulator's service: ``HCSEMU_SERVICE`` (``private`` if unset)."""
    return os.environ.get("HCSEMU_SERVICE", "").strip() or "private"


def default_socket_path() -> str:
    """The socket of the user's shared service: ``$XDG_RUNTIME_DIR/hcsemu/hcsemu.sock`` when that
    folder is usable, else ``/tmp/hcsemu-<uid>/hcsemu.sock`` (the rule libhcsemu follows)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        try:
            st = os.stat(xdg)
        except OSError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
                return f"{xdg}/hcsemu/hcsemu.sock"
    return f"/tmp/hcsemu-{os.getuid()}/hcsemu.sock"


def serve(socket_path: str | None = None, foreground: bool = True) -> int:
    """Runs the service (hcsemud) on ``socket_path`` (default: :func:`default_socket_path`).

    In the foreground this returns once the service stops (its exit code: 0 stopped, 2 bad
    socket folder, 3 a service already runs there); otherwise it returns as soon as the
    detached service listens."""
    args = [hcsemud_path(), "--socket", socket_path or default_socket_path()]
    if not foreground:
        args.append("--detach")
    return subprocess.run(args, check=False).returncode


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the hcsemu service closed the connection")
        data += chunk
    return data


def _send(sock: socket.socket, ftype: int, call: int, ident: int, meta: dict[str, Any]) -> None:
    payload = json.dumps(meta).encode()
    sock.sendall(_HEADER.pack(_MAGIC, len(payload), ftype, 0, call, ident) + payload)


def _recv(sock: socket.socket) -> tuple[int, dict[str, Any], str | None]:
    magic, length, ftype, _nfds, _call, _ident = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if magic != _MAGIC:
        raise ConnectionError("the peer does not speak the hcsemu protocol")
    payload = _recv_exact(sock, length)
    meta, _, doc = payload.partition(b"\0")
    return ftype, json.loads(meta or b"{}"), doc.decode() if doc else None


def _connect(socket_path: str | None, timeout: float) -> socket.socket | None:
    """A connection past the handshake, or None when no service listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path or default_socket_path())
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    try:
        _send(sock, _FR_HELLO, 0, 0, {"Protocol": _PROTOCOL_VERSION, "Pid": os.getpid()})
        ftype, meta, _ = _recv(sock)
    except ConnectionError:
        sock.close()
        return None  # a service that is exiting (its socket still accepted us)
    except BaseException:
        sock.close()
        raise
    if ftype == _FR_REFUSE or meta.get("Protocol") != _PROTOCOL_VERSION:
        sock.close()
        hr = int(meta.get("HResult", errors.HCS_E_UNSUPPORTED_PROTOCOL_VERSION))
        raise errors.make_error(
            hr,
            message=str(meta.get("Error") or f"the service speaks protocol {meta.get('Protocol')}"),
            call="hcsemud handshake",
        )
    return sock


def service_status(socket_path: str | None = None, timeout: float = 10.0) -> dict[str, Any] | None:
    """The service listening on ``socket_path`` (default: the shared one): its ``Pid``, ``Uid``,
    ``Socket``, ``Protocol``, ``Clients``, ``Systems`` and ``Processes``; None if none runs.
    A service of another user or protocol version raises the :class:`~pyhcs.errors.HcsError`
    it refused this client with."""
    sock = _connect(socket_path, timeout)
    if sock is None:
        return None
    with sock:
        _send(sock, _FR_REQUEST, _CALL_STATUS, 1, {})
        _, meta, doc = _recv(sock)
    hr = int(meta.get("HResult", 0))
    if hr < 0:
        raise errors.make_error(hr, doc, call="hcsemud status")
    result: dict[str, Any] = json.loads(doc or "{}")
    return result


def stop_service(socket_path: str | None = None, timeout: float = 10.0) -> bool:
    """Stops the service on ``socket_path`` (default: the shared one): it terminates every
    compute system it runs, then exits. True once it is gone, False if none ran; raises
    :class:`TimeoutError` if it is still there after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    sock = _connect(socket_path, timeout)
    if sock is None:
        return False
    with sock:
        _send(sock, _FR_REQUEST, _CALL_STOP, 1, {})
        _recv(sock)  # the acknowledgement; the service closes the connection when it exits
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                if not sock.recv(4096):
                    break
            except TimeoutError as exc:
                raise TimeoutError(f"the hcsemu service did not stop within {timeout} s") from exc
    return True
