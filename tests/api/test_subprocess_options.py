"""run() and create_process() with subprocess' options (stdio constants, file objects, text
mode, input, check), sync and asyncio.

Runs on whichever backend PYHCS_BACKEND selects (CI runs the suite once per backend)."""

from __future__ import annotations

import asyncio
import io
import subprocess
from pathlib import Path

import pytest

import pyhcs
from pyhcs import ComputeSystem, aio, errors

from pyutil import CONFIG, new_id

BOTH = ["sh", "-c", "echo out; echo err >&2"]


# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def test_constants_are_subprocess_ones() -> None:
    assert (pyhcs.PIPE, pyhcs.STDOUT, pyhcs.DEVNULL) == (subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL)


def test_existing_forms_still_capture(system: ComputeSystem) -> None:
    result = system.run(BOTH)
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    assert system.run(BOTH, capture_output=False).stdout is None


def test_stdio_constants(system: ComputeSystem) -> None:
    r = system.run(BOTH, stdout=subprocess.PIPE)
    assert (r.stdout, r.stderr) == (b"out\n", None)  # stderr given implicitly as "not captured"
    r = system.run(BOTH, stdout=pyhcs.DEVNULL, stderr=pyhcs.PIPE)
    assert (r.stdout, r.stderr) == (None, b"err\n")
    r = system.run(BOTH, stdout=None, stderr=None)
    assert (r.stdout, r.stderr) == (None, None)
    r = system.run(["sh", "-c", "echo a; sleep 0.1; echo b >&2; sleep 0.1; echo c"], stdout=pyhcs.PIPE,
                   stderr=pyhcs.STDOUT)
    assert (r.stdout, r.stderr) == (b"a\nb\nc\n", None)


def test_capture_output_conflicts_like_subprocess(system: ComputeSystem) -> None:
    with pytest.raises(ValueError, match="capture_output"):
        system.run(BOTH, capture_output=True, stdout=pyhcs.PIPE)
    with pytest.raises(ValueError, match="stdin and input"):
        system.run(["cat"], input=b"x", stdin=pyhcs.PIPE)
    with pytest.raises(ValueError, match="stdout="):
        system.run(BOTH, stdout=42)


def test_text_mode_and_input(system: ComputeSystem) -> None:
    r = system.run(["sh", "-c", "cat; printf 'x\\r\\ny'"], input="héllo\n", text=True)
    assert r.stdout == "héllo\nx\ny" and r.stderr == ""
    r = system.run(["cat"], input="é", encoding="latin-1")
    assert r.stdout == "é"
    r = system.run(["printf", "\\377"], errors="replace")
    assert r.stdout == "\ufffd"
    with pytest.raises(TypeError, match="text=True"):
        system.run(["cat"], input="text but bytes mode")


def test_stdin_forms(system: ComputeSystem, tmp_path: Path) -> None:
    assert system.run(["cat"], stdin=pyhcs.DEVNULL).stdout == b""
    assert system.run(["cat"], stdin=pyhcs.PIPE).stdout == b""
    source = tmp_path / "in.txt"
    source.write_bytes(b"from a file\n")
    with source.open("rb") as f:
        assert system.run(["cat"], stdin=f).stdout == b"from a file\n"
    assert system.run(["cat"], stdin=io.StringIO("text file"), text=True).stdout == "text file"


def test_output_to_files(system: ComputeSystem, tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as fo, err.open("w") as fe:
        r = system.run(BOTH, stdout=fo, stderr=fe)
    assert (r.stdout, r.stderr) == (None, None)
    assert out.read_bytes() == b"out\n" and err.read_text() == "err\n"


def test_check_raises_called_process_error(system: ComputeSystem) -> None:
    with pytest.raises(subprocess.CalledProcessError) as exc:
        system.run(["sh", "-c", "echo bad >&2; exit 2"], check=True, text=True)
    assert isinstance(exc.value, errors.CalledProcessError)
    assert exc.value.returncode == 2 and exc.value.stderr == "bad\n" and exc.value.system_id == system.id


def test_create_process_takes_the_constants(system: ComputeSystem) -> None:
    with system.create_process(["cat"], stdin=pyhcs.DEVNULL, stdout=pyhcs.PIPE) as p:
        assert p.stdin is None and p.stdout is not None
        assert p.communicate(timeout=10) == (b"", None)
        assert p.wait(10) == 0
    with system.create_process(["true"], stdout=subprocess.DEVNULL, stderr=None) as p:
        assert p.stdout is None and p.stderr is None
        assert p.wait(10) == 0
    with pytest.raises(ValueError, match=r"run\(\)"):
        system.create_process(["true"], stderr=pyhcs.STDOUT)
    with pytest.raises(ValueError, match=r"run\(\)"):
        system.create_process(["true"], stdout=io.BytesIO())


def test_async_twins() -> None:
    async def main() -> None:
        async with await aio.ComputeSystem.create(new_id("opt"), CONFIG) as s:
            await s.start()
            r = await s.run(BOTH, text=True)
            assert (r.stdout, r.stderr) == ("out\n", "err\n")
            r = await s.run(BOTH, stdout=pyhcs.PIPE, stderr=pyhcs.STDOUT)
            assert sorted(r.stdout.splitlines()) == [b"err", b"out"] and r.stderr is None
            r = await s.run(["cat"], input="hi", text=True)
            assert r.stdout == "hi"
            with pytest.raises(errors.CalledProcessError):
                await s.run(["false"], check=True)
            p = await s.create_process(["cat"], stdin=pyhcs.DEVNULL, stdout=pyhcs.PIPE)
            async with p:
                assert p.poll() is None or p.poll() == 0
                assert p.stdout is not None and await p.stdout.read() == b""
                assert await p.wait(10) == 0
                assert p.poll() == 0

    asyncio.run(main())
