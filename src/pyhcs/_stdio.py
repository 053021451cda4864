"""The std handles of an HCS process as Python files, one way on every platform.

HCS_PROCESS_INFORMATION hands out pipe HANDLEs on Windows and, on the emulator, POSIX file
descriptors. :func:`open_std_handle` turns either into a binary file object that owns it:
``msvcrt.open_osfhandle`` on Windows, the descriptor itself elsewhere; never inheritable by
child processes; and if anything fails on the way the handle is closed, never leaked.

The file sits on a :class:`PipeIO`, whose descriptor cannot be freed under a thread that is
using it: :meth:`PipeIO.close` marks the pipe closed at once (new I/O raises ValueError) but
the descriptor is released only when the last read or write in progress has returned. A
thread blocked in a read therefore never ends up reading whatever file the program opens
next under the same number, and a close never waits for a read the child may never answer.

Which I/O strategy the Pythonic layer uses is decided here too (:data:`WINDOWS_IO`): threads
for blocking pipe I/O on Windows, where pipes cannot be polled, and readiness polling
(``select``/``add_reader``) elsewhere. ``PYHCS_FORCE_WINDOWS_IO=1`` forces the Windows
strategy on any platform, so that it is tested where HCS is emulated.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import threading
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from ._narrow import as_given

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["FORCE_WINDOWS_IO_ENV", "WINDOWS_IO", "PipeIO", "close_file", "open_std_handle", "pipe_of"]

#: Environment variable that forces the Windows I/O strategy (threads, no polling) on any OS.
FORCE_WINDOWS_IO_ENV = "PYHCS_FORCE_WINDOWS_IO"

#: True: the process and aio layers do pipe I/O in threads (Windows pipes cannot be polled and
#: report a broken pipe as EINVAL). Read when I/O starts, so tests may change it.
WINDOWS_IO: bool = sys.platform == "win32" or os.environ.get(FORCE_WINDOWS_IO_ENV, "").strip() == "1"

# Indirections so that tests can make a write fail as a Windows pipe does.
_os_read = os.read
_os_write = os.write


def _close_os_handle(handle: int) -> None:
    """Closes a handle that is not yet a C runtime descriptor."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import _winapi

        _winapi.CloseHandle(handle)
    else:
        os.close(handle)


def _to_fd(handle: int, reading: bool) -> int:
    """A non-inheritable file descriptor owning ``handle``; ``handle`` is closed on failure."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            os.set_handle_inheritable(handle, False)
            return msvcrt.open_osfhandle(handle, os.O_RDONLY if reading else 0)
        except BaseException:
            try:
                _close_os_handle(handle)
            except OSError:
                pass
            raise
    try:
        os.set_inheritable(handle, False)
    except BaseException:
        try:
            _close_os_handle(handle)
        except OSError:
            pass  # EBADF: there was nothing to close
        raise
    return handle


class PipeIO(io.RawIOBase):
    """A raw, unbuffered std pipe of an HCS process (see the module docstring).

    ``read``/``readinto`` return what one read gives (``b""`` at EOF; a console whose child
    exited reports EIO, which is EOF too), or None on a non-blocking descriptor with nothing
    ready. ``write`` raises BrokenPipeError when the child closed its end, also where Windows
    reports that as EINVAL.
    """

    def __init__(self, fd: int, mode: str) -> None:
        super().__init__()
        self._fd = fd
        self._reading = mode.startswith("r")
        self._guard = threading.Lock()
        self._users = 0
        self._closing = False

    # -- the guard ----------------------------------------------------------------------------------
    def acquire(self) -> int:
        """The descriptor, pinned open until :meth:`release`; ValueError once closed."""
        with self._guard:
            if self._closing:
                raise ValueError("I/O operation on a closed process pipe")
            self._users += 1
            return self._fd

    def release(self) -> None:
        with self._guard:
            self._users -= 1
            fd = self._fd if self._closing and self._users == 0 else -1
            if fd >= 0:
                self._fd = -1
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        """Closes the pipe; never blocks. The descriptor goes once no I/O is in progress."""
        with self._guard:
            first = not self._closing
            self._closing = True
            fd = self._fd if self._users == 0 else -1
            if fd >= 0:
                self._fd = -1
        if fd >= 0:
            os.close(fd)
        if first:
            super().close()

    @property
    def closed(self) -> bool:
        return self._closing

    def flush(self) -> None:
        """Nothing to flush: every write goes straight to the pipe."""

    # -- RawIOBase ----------------------------------------------------------------------------------
    def fileno(self) -> int:
        if self._closing:
            raise ValueError("I/O operation on a closed process pipe")
        return self._fd

    def readable(self) -> bool:
        return self._reading

    def writable(self) -> bool:
        return not self._reading

    def isatty(self) -> bool:
        fd = self.acquire()
        try:
            return os.isatty(fd)
        finally:
            self.release()

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        if not self._reading:
            raise io.UnsupportedOperation("read from a stdin pipe")
        view = memoryview(buffer).cast("B")
        fd = self.acquire()
        try:
            data = _os_read(fd, len(view))
        except BlockingIOError:
            return None
        except OSError as err:
            if err.errno != errno.EIO:
                raise
            data = b""  # a pseudo-terminal whose other side is gone: end of output
        finally:
            self.release()
        view[: len(data)] = data
        return len(data)

    def write(self, data: ReadableBuffer) -> int | None:
        if self._reading:
            raise io.UnsupportedOperation("write to a stdout/stderr pipe")
        fd = self.acquire()
        try:
            return _os_write(fd, data)
        except BlockingIOError:
            return None
        except OSError as err:
            # A Windows pipe whose reader is gone fails with ERROR_NO_DATA, which the C
            # runtime reports as EINVAL, not EPIPE.
            if err.errno == errno.EINVAL and WINDOWS_IO and not isinstance(err, BrokenPipeError):
                raise BrokenPipeError(errno.EPIPE, "the process closed its stdin (EINVAL from the pipe)") from err
            raise
        finally:
            self.release()

    def write_all(self, data: ReadableBuffer) -> None:
        """Writes everything, blocking (a blocking descriptor). BrokenPipeError as :meth:`write`."""
        view = memoryview(data).cast("B")
        while view:
            n = self.write(view)
            if n is None:  # pragma: no cover - only on a non-blocking descriptor
                raise BlockingIOError(errno.EAGAIN, "the pipe is non-blocking")
            view = view[n:]


def open_std_handle(handle: int, mode: str, *, buffering: int = -1) -> BinaryIO:
    """A binary file object owning a std handle of HCS_PROCESS_INFORMATION.

    ``mode`` is ``"rb"`` (stdout, stderr) or ``"wb"`` (stdin). ``buffering=0`` gives the
    unbuffered :class:`PipeIO`; otherwise a buffered reader or writer over it. The handle is
    made non-inheritable; closing the file closes it. On any failure, including a bad
    ``mode``, the handle is closed before the error is raised.
    """
    given = as_given(handle)
    if mode not in ("rb", "wb") or isinstance(given, bool) or not isinstance(given, int):
        if isinstance(given, int) and not isinstance(given, bool):
            try:
                _close_os_handle(handle)
            except OSError:
                pass
        if mode not in ("rb", "wb"):
            raise ValueError(f"mode must be 'rb' or 'wb', not {mode!r}")
        raise TypeError(f"a std handle is an int, not {type(handle).__name__}")
    reading = mode == "rb"
    fd = _to_fd(handle, reading)
    try:
        raw = PipeIO(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    if buffering == 0:
        return cast(BinaryIO, raw)
    size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
    buffered: IO[bytes] = io.BufferedReader(raw, size) if reading else io.BufferedWriter(raw, size)
    return cast(BinaryIO, buffered)


def pipe_of(f: IO[bytes]) -> PipeIO:
    """The :class:`PipeIO` under a file from :func:`open_std_handle`."""
    raw = getattr(f, "raw", f)
    if not isinstance(raw, PipeIO):
        raise TypeError(f"not a pyhcs std pipe: {f!r}")
    return raw


def close_file(f: IO[bytes]) -> None:
    """Closes a std file without ever blocking: the pipe under a buffered file is closed
    directly, so a thread blocked in the buffered file's read (which holds its lock) cannot
    hold the closer up. Data still buffered for stdin is discarded."""
    raw = getattr(f, "raw", f)
    if isinstance(raw, PipeIO):
        raw.close()
    else:  # pragma: no cover - only pyhcs' own files reach here
        f.close()
