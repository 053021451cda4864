"""pyhcs.raw.open_std_handle and the pipes under every std file: ownership, no leak on failure,
non-inheritable handles, a descriptor never freed under a reader, Windows' EINVAL."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from types import ModuleType

import pytest

from pyhcs import _stdio, raw

import rawutil


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as err:
        assert err.errno == errno.EBADF
        return False
    return True


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_raw_reexports_the_one_helper() -> None:
    assert raw.open_std_handle is _stdio.open_std_handle
    assert "open_std_handle" in raw.__all__


def test_open_read_and_write_ends(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    with _stdio.open_std_handle(w, "wb") as out, _stdio.open_std_handle(r, "rb") as inp:
        assert not os.get_inheritable(r) and not os.get_inheritable(w)  # a child must never get them
        assert isinstance(inp, io.BufferedReader) and isinstance(out, io.BufferedWriter)
        out.write(b"through the pipe\n")
        out.flush()
        assert inp.readline() == b"through the pipe\n"
    assert not _is_open(r) and not _is_open(w)  # the files owned the handles


def test_unbuffered_gives_the_pipe(pipe: tuple[int, int]) -> None:
    r, w = pipe
    f = _stdio.open_std_handle(r, "rb", buffering=0)
    assert isinstance(f, _stdio.PipeIO) and _stdio.pipe_of(f) is f
    os.write(w, b"abc")
    assert f.read(10) == b"abc"
    f.close()
    f.close()  # idempotent
    assert f.closed and not _is_open(r)
    with pytest.raises(ValueError):
        f.read(1)
    with pytest.raises(ValueError):
        f.fileno()


@pytest.mark.parametrize("mode", ["r", "w", "rb+", "", "ab"])
def test_bad_mode_closes_the_handle(pipe: tuple[int, int], mode: str) -> None:
    r, _ = pipe
    with pytest.raises(ValueError, match="mode"):
        _stdio.open_std_handle(r, mode)
    assert not _is_open(r)


def test_failure_after_taking_the_handle_closes_it(pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    r, _ = pipe

    def broken(*_args: object) -> None:
        raise MemoryError("no memory for the pipe object")

    monkeypatch.setattr(_stdio, "PipeIO", broken)
    with pytest.raises(MemoryError):
        _stdio.open_std_handle(r, "rb")
    assert not _is_open(r)


def test_not_a_handle() -> None:
    with pytest.raises(TypeError):
        _stdio.open_std_handle("3", "rb")  # type: ignore[arg-type]  # a str on purpose
    with pytest.raises(OSError) as exc:
        _stdio.open_std_handle(987_654, "rb")  # no such descriptor
    assert exc.value.errno == errno.EBADF


def test_close_never_waits_for_a_blocked_reader(pipe: tuple[int, int]) -> None:
    # A reader blocked in the pipe (its lock held, as a BufferedReader's would be) does not
    # hold close() up, and the descriptor stays valid (not reusable) until it returns.
    r, w = pipe
    f = _stdio.open_std_handle(r, "rb")
    got: list[object] = []

    def reader() -> None:
        try:
            got.append(f.read(5))
            got.append(f.read(5))
        except ValueError as err:
            got.append(err)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    _stdio.close_file(f)
    assert time.monotonic() - start < 1  # the bug waited for the child
    assert f.closed and _is_open(r)  # still held by the blocked read
    os.write(w, b"late!")
    t.join(5)
    assert not t.is_alive()
    assert got[0] == b"late!" and isinstance(got[1], ValueError)
    assert not _is_open(r)  # freed when the reader left


def test_buffered_close_under_a_blocked_reader(pipe: tuple[int, int]) -> None:
    # BufferedReader.close() would wait for the reader's lock; close_file() does not.
    r, w = pipe
    f = _stdio.open_std_handle(r, "rb")
    t = threading.Thread(target=lambda: f.read(1), daemon=True)
    t.start()
    time.sleep(0.1)
    start = time.monotonic()
    _stdio.close_file(f)
    assert time.monotonic() - start < 1  # the bug waited for the child
    os.close(w)  # EOF: the reader returns, the descriptor goes
    t.join(5)
    assert not _is_open(r)
    f.close()  # the buffered object's own close is a no-op now


def test_windows_broken_pipe_is_einval(pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    _, w = pipe
    f = _stdio.open_std_handle(w, "wb", buffering=0)
    assert isinstance(f, _stdio.PipeIO)

    def einval(_fd: int, _data: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(_stdio, "_os_write", einval)
    monkeypatch.setattr(_stdio, "WINDOWS_IO", True)
    with pytest.raises(BrokenPipeError):
        f.write_all(b"x")
    monkeypatch.setattr(_stdio, "WINDOWS_IO", False)
    with pytest.raises(OSError) as exc:  # elsewhere EINVAL means something else: not masked
        f.write(b"x")
    assert exc.value.errno == errno.EINVAL and not isinstance(exc.value, BrokenPipeError)
    f.close()


def test_console_eio_is_end_of_output(pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    r, _ = pipe
    f = _stdio.open_std_handle(r, "rb", buffering=0)

    def eio(_fd: int, _n: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_stdio, "_os_read", eio)
    assert f.read(10) == b""
    f.close()


def test_direction_is_enforced(pipe: tuple[int, int]) -> None:
    r, w = pipe
    inp = _stdio.open_std_handle(r, "rb", buffering=0)
    out = _stdio.open_std_handle(w, "wb", buffering=0)
    assert inp.readable() and not inp.writable() and out.writable() and not out.readable()
    with pytest.raises(io.UnsupportedOperation):
        inp.write(b"x")
    with pytest.raises(io.UnsupportedOperation):
        out.read(1)
    inp.close()
    out.close()


def test_raw_process_output_through_the_helper(hcs: ModuleType) -> None:
    # The README's raw example, on each backend: the std handle becomes a file.
    with rawutil.running_system(hcs) as system, rawutil.operation(hcs) as op:
        # Parsed alike by a shell and by the Windows rules of a Container.
        params = {"CommandLine": 'sh -c "cat; echo done >&2"', "CreateStdInPipe": True,
                  "CreateStdOutPipe": True, "CreateStdErrPipe": True}
        process = hcs.hcs_create_process(system, json.dumps(params), op)
        info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
        try:
            stdin = raw.open_std_handle(info.std_input, "wb")
            stdout = raw.open_std_handle(info.std_output, "rb")
            stderr = raw.open_std_handle(info.std_error, "rb")
            with stdin:
                stdin.write(b"to the child and back")
            hcs.hcs_modify_process(process, op, '{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}')
            rawutil.wait(hcs, op)
            with stdout, stderr:
                assert stdout.read() == b"to the child and back"
                assert stderr.read() == b"done\n"
            assert json.loads(hcs.hcs_wait_for_process_exit(process, 10_000))["ExitCode"] == 0
        finally:
            hcs.hcs_close_process(process)


# ------------------------------------------------------------------------------ the Windows branch

_HANDLE = 0x2A4  # a Windows HANDLE value: no descriptor of this process


class _FakeWin32:
    """msvcrt, _winapi and os.set_handle_inheritable as Windows has them, recording every call.
    open_osfhandle gives a real descriptor (a pipe end) so that the file works here."""

    def __init__(self, crt_fd: int, fail: str = "") -> None:
        self.calls: list[tuple[object, ...]] = []
        self.crt_fd = crt_fd
        self.fail = fail

    def set_handle_inheritable(self, handle: int, inheritable: bool) -> None:
        self.calls.append(("set_handle_inheritable", handle, inheritable))
        if self.fail == "inheritable":
            raise OSError(errno.EBADF, "The handle is invalid")

    def open_osfhandle(self, handle: int, flags: int) -> int:
        self.calls.append(("open_osfhandle", handle, flags))
        if self.fail == "osfhandle":
            raise OSError(errno.EMFILE, "Too many open files")
        return self.crt_fd

    def CloseHandle(self, handle: int) -> None:
        self.calls.append(("CloseHandle", handle))


@pytest.fixture
def fake_win32(pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> _FakeWin32:
    fake = _FakeWin32(pipe[0])
    monkeypatch.setattr(_stdio, "sys", types.SimpleNamespace(platform="win32"))
    monkeypatch.setattr(os, "set_handle_inheritable", fake.set_handle_inheritable, raising=False)
    monkeypatch.setitem(sys.modules, "msvcrt", types.SimpleNamespace(open_osfhandle=fake.open_osfhandle))
    monkeypatch.setitem(sys.modules, "_winapi", types.SimpleNamespace(CloseHandle=fake.CloseHandle))
    return fake


def test_windows_handle_is_made_non_inheritable_before_it_gets_a_descriptor(
    pipe: tuple[int, int], fake_win32: _FakeWin32
) -> None:
    r, w = pipe
    with _stdio.open_std_handle(_HANDLE, "rb") as f:
        os.write(w, b"from the HANDLE")
        os.close(w)
        assert f.read() == b"from the HANDLE"
    assert fake_win32.calls == [("set_handle_inheritable", _HANDLE, False), ("open_osfhandle", _HANDLE, os.O_RDONLY)]
    assert not _is_open(r)  # the CRT descriptor owned the HANDLE: closing the file closed it


@pytest.mark.parametrize("fail", ["inheritable", "osfhandle"])
def test_windows_handle_is_closed_when_it_cannot_become_a_file(
    pipe: tuple[int, int], fake_win32: _FakeWin32, fail: str
) -> None:
    fake_win32.fail = fail
    with pytest.raises(OSError):
        _stdio.open_std_handle(_HANDLE, "wb")
    assert fake_win32.calls[-1] == ("CloseHandle", _HANDLE)  # no leaked HANDLE
    assert fake_win32.calls[0] == ("set_handle_inheritable", _HANDLE, False)
    assert _is_open(pipe[0])  # nothing else was closed
