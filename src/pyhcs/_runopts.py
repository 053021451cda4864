"""subprocess' stdio options for ``run()`` and ``create_process()``: what each asks of HCS
(which pipes), and what becomes of the output (merged, written to a file, decoded).

HCS gives a process up to three pipes (``CreateStdInPipe``/``CreateStdOutPipe``/
``CreateStdErrPipe``) and nothing else: there is no handle to inherit and no redirection to a
file, so ``None`` (inherit) and ``DEVNULL`` both mean "no pipe" for the output (what the guest
writes there is discarded), a file object is fed from a pipe, and ``stderr=STDOUT`` reads both
pipes into one buffer in the order the chunks arrive.
"""

from __future__ import annotations

import enum
import locale
import subprocess
from dataclasses import dataclass
from typing import IO, Any, Union

from ._narrow import as_given

__all__ = ["DEVNULL", "NOT_GIVEN", "PIPE", "STDOUT", "NotGiven", "RunPlan", "Stdio", "pipe_flag", "plan_run"]

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

#: What ``stdin=``/``stdout=``/``stderr=`` take: PIPE, DEVNULL, STDOUT (stderr only), a file
#: object, None (no pipe), or a bool (True: PIPE, False: no pipe; pyhcs' older form).
Stdio = Union[int, IO[Any], None]  # noqa: UP007


class NotGiven(enum.Enum):
    """The default of run()'s ``stdout=``/``stderr=``: capture, unless ``capture_output=False``."""

    NOT_GIVEN = 0


NOT_GIVEN = NotGiven.NOT_GIVEN


def _is_file(value: object) -> bool:
    return hasattr(value, "write") or hasattr(value, "read")


def pipe_flag(value: object, name: str) -> bool | None:
    """``create_process``' form of a stdio option: True (a pipe), False/None (none).

    ``stdin=DEVNULL`` is a pipe the caller closes at once (the child reads EOF)."""
    if value is None or isinstance(value, bool):
        return value
    if value == PIPE:
        return True
    if value == DEVNULL:
        return name == "stdin"
    if value == STDOUT:
        raise ValueError(f"{name}=STDOUT is for run() (which reads both pipes into one buffer)")
    if _is_file(value):
        raise ValueError(f"{name}= takes a file object in run() only (HCS gives a process pipes, not files)")
    raise ValueError(f"{name}= must be PIPE, DEVNULL, a file object, None or a bool, not {value!r}")


@dataclass
class RunPlan:
    """What ``run()`` asks HCS for and how it treats the output afterwards."""

    stdin: bool
    stdout: bool
    stderr: bool
    input: bytes | None
    merge: bool
    out_file: IO[Any] | None
    err_file: IO[Any] | None
    encoding: str | None
    errors: str | None

    def decode(self, data: bytes | None) -> Any:
        if data is None or self.encoding is None:
            return data
        text = data.decode(self.encoding, self.errors or "strict")
        # universal newlines, as subprocess' text mode
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def finish(self, out: bytes | None, err: bytes | None) -> tuple[Any, Any]:
        """(stdout, stderr) as ``run()`` returns them; output for files is written there."""
        if self.out_file is not None:
            _write(self.out_file, out or b"", self)
            out = None
        if self.err_file is not None:
            _write(self.err_file, err or b"", self)
            err = None
        return self.decode(out), self.decode(err)


def _write(f: IO[Any], data: bytes, plan: RunPlan) -> None:
    if "b" in getattr(f, "mode", "b"):
        f.write(data)
    else:
        f.write(data.decode(getattr(f, "encoding", None) or plan.encoding or "utf-8", plan.errors or "strict"))
    f.flush()


def plan_run(
    *,
    input: bytes | str | None,
    capture_output: bool | None,
    stdin: Stdio | bool,
    stdout: Stdio | bool | NotGiven,
    stderr: Stdio | bool | NotGiven,
    text: bool | None,
    encoding: str | None,
    errors: str | None,
) -> RunPlan:
    stdout_given = stdout is not NOT_GIVEN
    stderr_given = stderr is not NOT_GIVEN
    if capture_output and (stdout_given or stderr_given):
        raise ValueError("stdout and stderr arguments may not be used with capture_output")
    if input is not None and stdin is not None:
        raise ValueError("stdin and input arguments may not both be used")
    # pyhcs captures by default; once stdout= or stderr= is given, the other follows
    # subprocess' default (not captured) unless capture_output says otherwise
    capture = capture_output if capture_output is not None else not (stdout_given or stderr_given)
    out = stdout if stdout_given else (PIPE if capture else None)
    err = stderr if stderr_given else (PIPE if capture else None)
    text_mode = bool(text) or encoding is not None or errors is not None
    enc = (encoding or locale.getpreferredencoding(False)) if text_mode else None
    data: bytes | None
    if isinstance(input, str):
        if enc is None:
            raise TypeError("input= is str: pass text=True (or encoding=) to send text")
        data = input.encode(enc, errors or "strict")
    else:
        data = input
    if stdin is True or stdin == PIPE or stdin == DEVNULL:
        data = data if data is not None else b""
    elif stdin is None or stdin is False:
        pass
    elif _is_file(stdin) and not isinstance(stdin, bool):
        raw = as_given(stdin.read())  # type: ignore[union-attr]
        if isinstance(raw, str):
            data = raw.encode(enc or "utf-8", errors or "strict")
        elif isinstance(raw, (bytes, bytearray)):
            data = bytes(raw)
        else:
            raise TypeError(f"stdin's read() returned {type(raw).__name__}, not bytes or str")
    else:
        raise ValueError(f"stdin= must be PIPE, DEVNULL, a file object or None, not {stdin!r}")

    def wants_pipe(value: object, name: str) -> tuple[bool, IO[Any] | None]:
        if value is None or value is False or value == DEVNULL:
            return False, None
        if value is True or value == PIPE:
            return True, None
        if _is_file(value):
            return True, value  # type: ignore[return-value]
        raise ValueError(f"{name}= must be PIPE, DEVNULL, STDOUT (stderr), a file object or None, not {value!r}")

    out_pipe, out_file = wants_pipe(out, "stdout")
    merge = err is not None and not isinstance(err, bool) and err == STDOUT
    if merge:
        err_pipe, err_file = out_pipe, None
    else:
        err_pipe, err_file = wants_pipe(err, "stderr")
    return RunPlan(
        stdin=data is not None,
        stdout=out_pipe,
        stderr=err_pipe,
        input=data,
        merge=merge,
        out_file=out_file,
        err_file=err_file,
        encoding=enc,
        errors=errors,
    )
