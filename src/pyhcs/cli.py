"""The ``pyhcs`` command: manage compute systems as hcsdiag and runhcs do, on the public API.

Every command goes through the Pythonic layer (:class:`~pyhcs.ComputeSystem`,
:class:`~pyhcs.Process`), so the same commands drive the real Host Compute Service on Windows
and the emulator elsewhere. docs/cli.md is the user documentation; ``pyhcs COMMAND --help``
shows each command with an example.

Exit statuses (as docker's): the command's own exit code for ``exec`` and ``run``; 0 for
success; 2 for a usage error; 124 when ``--timeout`` ran out; 125 for an error of pyhcs or of
HCS; 126 when the command cannot be invoked, 127 when it does not exist; 130 after Ctrl-C;
143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import datetime
import errno
import importlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, Protocol, cast

from . import __version__, errors
from ._narrow import is_json_mapping, is_json_object

if TYPE_CHECKING:
    from .events import Event
    from .process import Process
    from .system import ComputeSystem



class Subparsers(Protocol):
    """What the commands use of the object ``ArgumentParser.add_subparsers()`` returns
    (argparse's class for it is private)."""

    def add_parser(
        self,
        name: str,
        *,
        help: str | None = ...,
        description: str | None = ...,
        epilog: str | None = ...,
        parents: Sequence[argparse.ArgumentParser] = ...,
        formatter_class: type[argparse.HelpFormatter] = ...,
    ) -> argparse.ArgumentParser: ...

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_FAILURE = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_BROKEN_PIPE = 141

#: How the emulator's library reaches its service (docs/emulator.md); PYHCS_LIBRARY picks the
#: library itself. The command sets HCSEMU_SERVICE=shared only when neither is set.
SERVICE_ENV = "HCSEMU_SERVICE"
LIBRARY_ENV = "PYHCS_LIBRARY"
FAULTS_ENV = "HCSEMU_FAULTS"
SETTINGS_ENV = "HCSEMU_SETTINGS"

#: Seconds to go on copying a process's output after it exited: a background child that
#: inherited the pipe can keep it open for ever.
DRAIN_GRACE = 5.0
_CHUNK = 65536

_CTRL_EVENTS = ("CtrlC", "CtrlBreak", "CtrlClose", "CtrlLogOff", "CtrlShutdown")
#: Linux signal numbers (a Linux guest's, whatever the host): names for ``kill --signal``.
_SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "CHLD": 17, "CONT": 18,
    "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "WINCH": 28,
}  # fmt: skip


class CliError(Exception):
    """An error of the command itself: printed as one line, exits with ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``with`` blocks clean up as for Ctrl-C."""


# ------------------------------------------------------------------------------ the library


#: What ``info`` reports about the service the library talks to (set by _choose_service).
_service_choice = "not chosen yet"


def _choose_service() -> None:
    """On the emulator, use the user's shared service (so every ``pyhcs`` sees the same
    systems, as on Windows) unless the user chose a mode or a library. Must run before the
    library loads: the library reads the variable once."""
    global _service_choice
    if sys.platform == "win32":
        _service_choice = "the Host Compute Service (vmcompute)"
    elif os.environ.get(SERVICE_ENV):
        _service_choice = f"{SERVICE_ENV}={os.environ[SERVICE_ENV]} (from the environment)"
    elif os.environ.get(LIBRARY_ENV):
        _service_choice = f"what {LIBRARY_ENV}={os.environ[LIBRARY_ENV]} does by default ({SERVICE_ENV} is not set)"
    elif "pyhcs._native._backend" in sys.modules:
        _service_choice = "whatever the library chose: it was loaded before the pyhcs command ran"
    else:
        os.environ[SERVICE_ENV] = "shared"
        _service_choice = f"the shared emulator service ({SERVICE_ENV}=shared, set by the pyhcs command)"


def _load_library() -> None:
    """Loads the backend; a failure is one line (exit 125), not a traceback."""
    try:
        importlib.import_module("pyhcs._native._backend")
    except ImportError as exc:
        text = str(exc)
        raise CliError(text.removeprefix("pyhcs: ")) from None
    _check_emulator_environment()


def _on_emulator() -> bool:
    from . import emulator

    return emulator.active()


def _check_emulator_environment() -> None:
    """HCSEMU_FAULTS / HCSEMU_SETTINGS that the emulator rejected are errors: a fault job must
    not pass with no fault injected. The emulator applies each all or nothing and only prints
    a warning, so compare what it reports with what the variables ask for."""
    faults_text = os.environ.get(FAULTS_ENV, "").strip()
    settings_text = os.environ.get(SETTINGS_ENV, "").strip()
    if not (faults_text or settings_text) or not _on_emulator():
        return
    from . import emulator

    if faults_text:
        wanted = _env_json(FAULTS_ENV, faults_text)
        rules = wanted if _is_list(wanted) else _obj(wanted).get("Faults")  # an object, or a bare array
        if not _is_list(rules):
            raise CliError(f"{FAULTS_ENV} must be a JSON object with a Faults array (docs/emulator.md)")
        reported = emulator.faults()
        # a rejected variable is reported as a rule naming it (every call then fails)
        refused = any(is_json_object(r) and r.get("Variable") == FAULTS_ENV for r in reported)  # JSON: checked
        if refused or len(reported) < len(cast("list[object]", rules)):
            raise CliError(
                f"{FAULTS_ENV} was rejected by the emulator (its message is above), so no fault would be "
                "injected; fix the variable (docs/emulator.md lists the rule fields)"
            )
    if settings_text:
        wanted = _env_json(SETTINGS_ENV, settings_text)
        if not _is_obj(wanted):
            raise CliError(f"{SETTINGS_ENV} must be a JSON object (docs/emulator.md)")
        current = emulator.settings()
        wrong = [str(k) for k, v in _obj(wanted).items() if _setting_differs(k, v, current)]
        if wrong:
            raise CliError(
                f"{SETTINGS_ENV} is not in effect (the emulator reports other values for "
                f"{', '.join(sorted(wrong))}; its message is above); fix the variable (docs/emulator.md "
                "lists the switches)"
            )


def _setting_differs(key: str, wanted: Any, current: dict[str, Any]) -> bool:
    """Whether the emulator's switch ``key`` is not what HCSEMU_SETTINGS asked for."""
    if key not in current:
        return True
    have = current[key]
    if key == "WaitExitTimeoutResult" and isinstance(have, int):
        # Takes an HRESULT or a name ("WaitTimeout") and reads back as the unsigned code.
        return isinstance(wanted, bool) or not isinstance(wanted, (int, str)) or (
            isinstance(wanted, int) and errors.to_unsigned(wanted) != have)
    if isinstance(wanted, bool) or isinstance(have, bool):
        return wanted is not have
    if isinstance(wanted, (int, float)) and isinstance(have, (int, float)):
        return bool(wanted != have)
    return type(wanted) is not type(have) or bool(wanted != have)


def _env_json(name: str, text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{name} is not valid JSON: {exc}") from None


# ------------------------------------------------------------------------------ output


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _print_json(value: Any, *, pretty: bool = False) -> None:
    sys.stdout.write(json.dumps(value, indent=2 if pretty else None) + "\n")
    sys.stdout.flush()


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def event_name(ev: Event) -> str:
    """The event's name as the HCS documentation writes it (``HcsEventSystemExited`` ->
    ``SystemExited``), from pyhcs' enum name (``SYSTEM_EXITED``)."""
    from ._native._types import EventType

    if isinstance(ev.type, EventType):
        return "".join(part.capitalize() for part in ev.type.name.split("_"))
    return f"0x{int(ev.type):08X}"


def _obj(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else {} (HCS leaves out members it has no value for)."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _objs(value: object) -> list[dict[str, Any]]:
    """The JSON objects of a JSON array (others skipped); [] for anything else."""
    items = cast("list[object]", value) if _is_list(value) else []
    return [_obj(item) for item in items if _is_obj(item)]


def _is_obj(value: object) -> bool:
    return isinstance(value, dict)


def _is_list(value: object) -> bool:
    return isinstance(value, list)


def _seconds(value_100ns: Any) -> str:
    try:
        return f"{int(value_100ns) / 1e7:.2f}s"
    except (TypeError, ValueError):
        return "-"


def _mib(value: Any) -> str:
    try:
        return f"{int(value) / 2**20:.1f}MiB"
    except (TypeError, ValueError):
        return "-"


# ------------------------------------------------------------------------------ errors


def hresult_meaning(hresult: int) -> tuple[str | None, str | None]:
    """``(symbol, meaning)`` of an HRESULT: pyhcs' table first, then (on Windows) the system's
    message for a Win32 code the table does not know."""
    info = errors.hresult_info(hresult)
    if info is not None:
        return info.symbol, info.meaning
    win32 = errors.win32_from_hresult(hresult)
    if win32 is not None and sys.platform == "win32":  # pragma: no cover - Windows only
        import ctypes

        text = ctypes.FormatError(win32).strip().rstrip(".")
        return None, text or None
    return None, None


def describe_error(exc: BaseException, *, system_id: str | None = None) -> dict[str, Any]:
    """What the command prints for an exception: a message plus, for HCS errors, the HRESULT,
    its symbol and meaning, the call, the system and the process."""
    if not isinstance(exc, errors.HcsError):
        return {"Message": str(exc) or type(exc).__name__}
    symbol, meaning = hresult_meaning(exc.hresult)
    sid = exc.system_id or system_id
    where = f"system '{sid}'" if sid else ""
    if exc.process_id is not None:
        where += f"{', ' if where else ''}process {exc.process_id}"
    code = f"HRESULT 0x{exc.hresult:08X}"
    if symbol:
        code += f" ({symbol})"
    elif errors.win32_from_hresult(exc.hresult) is not None:
        code += f" (Win32 error {errors.win32_from_hresult(exc.hresult)})"
    head = f"{where}: " if where else ""
    head += f"{exc.call} failed with {code}" if exc.call else code
    head += f": {meaning}" if meaning else ": an HRESULT pyhcs' table does not know"
    detail = exc.message if exc.message and exc.message != meaning else None
    out: dict[str, Any] = {
        "Message": head,
        "HResult": f"0x{exc.hresult:08X}",
        "Symbol": symbol,
        "Meaning": meaning,
        "Detail": detail,
        "Suggestion": exc.suggestion,
        "Call": exc.call,
        "SystemId": sid,
        "ProcessId": exc.process_id,
    }
    return out


def _report(prog: str, exc: BaseException, ns: argparse.Namespace, status: int) -> int:
    info = describe_error(exc, system_id=getattr(ns, "id", None))
    info["ExitStatus"] = status
    if getattr(ns, "json", False):
        sys.stderr.write(json.dumps({"Error": {k: v for k, v in info.items() if v is not None}}) + "\n")
    else:
        lines = [f"{prog}: {info['Message']}"]
        if info.get("Detail"):
            lines.append(f"{prog}:   detail: {info['Detail']}")
        if info.get("Suggestion"):
            lines.append(f"{prog}:   suggestion: {info['Suggestion']}")
        sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    return status


def _status_of(exc: errors.HcsError, ns: argparse.Namespace) -> int:
    budget: _Budget | None = getattr(ns, "budget", None)
    if errors.is_timeout(exc) and budget is not None and budget.limit is not None and budget.expired():
        return EXIT_TIMEOUT
    if exc.call == "HcsCreateProcess" and getattr(ns, "starts_process", False):
        if isinstance(exc, (errors.Win32FileNotFoundError, errors.PathNotFoundError)):
            return EXIT_NOT_FOUND
        if isinstance(exc, (errors.Win32AccessDeniedError, errors.InvalidDirectoryError)):
            return EXIT_CANNOT_INVOKE
    return EXIT_FAILURE


# ------------------------------------------------------------------------------ timeouts


class _Budget:
    """The command's ``--timeout``: one deadline for everything the command waits for."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.end = None if limit is None else time.monotonic() + limit

    def call(self) -> float:
        """The timeout of one HCS call: what is left of --timeout, else pyhcs' default."""
        if self.end is None:
            import pyhcs

            return float(pyhcs.DEFAULT_TIMEOUT)
        return max(0.0, self.end - time.monotonic())

    def process(self) -> float:
        """A wait for the user's process: what is left of --timeout, else no limit."""
        return math.inf if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def _timed_out(ns: argparse.Namespace, what: str) -> CliError:
    return CliError(f"{what} did not finish within --timeout {ns.budget.limit:g} s", EXIT_TIMEOUT)


# ------------------------------------------------------------------------------ stdio relay


class _Relay:
    """Copies our stdin to a process and its stdout/stderr to ours while it runs.

    One thread per stream, reading the Process' own file objects (so HANDLEs on Windows and
    file descriptors elsewhere are both fine); our own stdin is read with os.read, which
    holds no buffer lock a blocked daemon thread could keep at interpreter exit. With
    ``json_lines`` the output becomes JSON lines ``{"Stream": ..., "Data": ...}``.
    """

    def __init__(self, proc: Process, *, stdin_fd: int | None, json_lines: bool, timeout: float) -> None:
        self._proc = proc
        self._stdin_fd = stdin_fd
        self._json = json_lines
        self._timeout = timeout
        self._out_lock = threading.Lock()
        self._outputs: list[threading.Thread] = []
        self._stopping = False
        self.broken_pipe = False

    def start(self) -> None:
        for f, name in ((self._proc.stdout, "stdout"), (self._proc.stderr, "stderr")):
            if f is not None:
                t = threading.Thread(target=self._pump_out, args=(f, name), name=f"pyhcs-{name}", daemon=True)
                self._outputs.append(t)
                t.start()
        if self._stdin_fd is not None and self._proc.stdin is not None:
            threading.Thread(target=self._pump_in, name="pyhcs-stdin", daemon=True).start()

    def finish(self, grace: float) -> bool:
        """Waits up to ``grace`` seconds for the outputs to reach EOF; True if they did."""
        end = time.monotonic() + grace
        for t in self._outputs:
            t.join(max(0.0, end - time.monotonic()))
        # Not under a lock: the stdin thread may be blocked writing to a child that does not
        # read; it notices the flag (or the closed pipe) and ends on its own.
        self._stopping = True
        return not any(t.is_alive() for t in self._outputs)

    def _pump_out(self, f: IO[bytes], name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                data = f.read(_CHUNK)
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: a console whose process exited
                    sys.stderr.write(f"pyhcs: reading the process' {name} failed: {exc}\n")
                break
            except ValueError:  # closed under us at the end
                break
            if not data:
                break
            if not self._emit(name, data, decoder):
                self._reader_gone(f)
                break
        tail = decoder.decode(b"", final=True)
        if self._json and tail:
            self._emit_text(name, tail)

    def _reader_gone(self, f: IO[bytes]) -> None:
        """Our stdout was closed (`pyhcs exec ... | head`): stop reading, so the process gets
        EPIPE/SIGPIPE as it would writing into a closed local pipe. One that goes on anyway
        is killed after a second: nobody can read what it writes."""
        with contextlib.suppress(OSError):
            f.close()
        try:
            self._proc.wait(1.0)
        except errors.OperationTimeoutError:
            with contextlib.suppress(errors.HcsError):
                self._proc.kill(timeout=self._timeout)
        except errors.HcsError:
            pass

    def _emit(self, name: str, data: bytes, decoder: codecs.IncrementalDecoder) -> bool:
        if self._json:
            text = decoder.decode(data)
            return self._emit_text(name, text) if text else True
        stream = sys.stdout if name == "stdout" else sys.stderr
        try:
            stream.buffer.write(data)
            stream.buffer.flush()
        except BrokenPipeError:
            self.broken_pipe = True
            return False
        return True

    def _emit_text(self, name: str, text: str) -> bool:
        line = json.dumps({"Stream": name, "Data": text}) + "\n"
        with self._out_lock:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except BrokenPipeError:
                self.broken_pipe = True
                return False
        return True

    def _pump_in(self) -> None:
        fd = self._stdin_fd
        assert fd is not None
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except OSError:
                data = b""
            stdin = self._proc.stdin
            if self._stopping or stdin is None:
                return
            if not data:
                break
            try:
                view = memoryview(data)
                while view:
                    n = stdin.write(view)
                    view = view[n or 0 :]
            except (OSError, ValueError):  # the process closed its stdin, exited or was closed
                return
        if self._stopping:
            return
        try:
            self._proc.close_stdin(timeout=self._timeout)
        except errors.HcsError as exc:
            if not self._stopping:
                sys.stderr.write(f"pyhcs: could not close the process' stdin: {exc}\n")


@contextlib.contextmanager
def _raw_terminal(fd: int | None) -> Generator[None, None, None]:
    """Our terminal in raw mode while a console process runs: keys (Ctrl-C included) go to
    the process, whose console does the line editing and signals."""
    if fd is None or sys.platform == "win32" or not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _console_size() -> tuple[int, int]:
    """(height, width) of our terminal (COLUMNS/LINES, else 80x24 when there is none)."""
    size = shutil.get_terminal_size()
    return size.lines, size.columns


@contextlib.contextmanager
def _follow_resizes(proc: Process, timeout: float) -> Generator[None, None, None]:
    """Passes our terminal's size changes (SIGWINCH) on to the process' console."""
    sigwinch = getattr(signal, "SIGWINCH", None)
    if sigwinch is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    changed = threading.Event()
    done = False

    def resizer() -> None:
        while True:
            changed.wait()
            changed.clear()
            if done:
                return
            height, width = _console_size()
            try:
                proc.resize(height, width, timeout=timeout)
            except errors.HcsError:
                return  # the process is gone

    previous = signal.signal(sigwinch, lambda _sig, _frame: changed.set())
    thread = threading.Thread(target=resizer, name="pyhcs-resize", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.signal(sigwinch, previous)
        done = True
        changed.set()
        thread.join(timeout)


def _exit_status(code: int) -> int:
    """The process' exit code as ours. POSIX keeps 8 bits: a code they would turn into 0 (or
    misread) becomes 1, with a note."""
    if sys.platform == "win32" or 0 <= code <= 255:
        return code
    sys.stderr.write(f"pyhcs: the process exited with code {code}, which an exit status cannot hold; exiting 1\n")
    return 1


def _process_options(ns: argparse.Namespace) -> dict[str, Any]:
    """create_process() arguments from exec/run options."""
    env: dict[str, str] = {}
    for item in ns.env or ():
        name, sep, value = item.partition("=")
        if not name:
            raise CliError(f"--env {item!r}: give NAME=VALUE, or NAME to pass this environment's value", EXIT_USAGE)
        if sep:
            env[name] = value
        elif name in os.environ:  # as docker: NAME alone passes our value, or nothing if unset
            env[name] = os.environ[name]
    opts: dict[str, Any] = {"stdout": True, "stderr": not ns.tty, "stdin": not ns.no_stdin, "bufsize": 0}
    if env:
        opts["env"] = env
    if ns.workdir:
        opts["cwd"] = ns.workdir
    if ns.user:
        opts["user"] = ns.user
    if ns.tty:
        opts["console"] = True
        opts["console_size"] = _console_size()
    return opts


def _stdin_fd(ns: argparse.Namespace) -> int | None:
    if ns.no_stdin or sys.stdin is None:
        return None
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError):
        return None


def _command(ns: argparse.Namespace) -> list[str]:
    command = list(ns.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CliError(f"give the command to run after the {'ID and ' if hasattr(ns, 'id') else ''}--", EXIT_USAGE)
    return command


def _run_process(system: ComputeSystem, ns: argparse.Namespace) -> int:
    """Starts the command in ``system``, relays its stdio while it runs and returns its exit
    code. On Ctrl-C, SIGTERM or --timeout the process is killed, and what it wrote so far
    is still copied out."""
    budget: _Budget = ns.budget
    command = _command(ns)
    ns.starts_process = True
    proc = system.create_process(command, timeout=budget.call(), **_process_options(ns))
    with proc:
        stdin_fd = _stdin_fd(ns)
        relay = _Relay(proc, stdin_fd=stdin_fd, json_lines=ns.json, timeout=budget.call())
        with _raw_terminal(stdin_fd if ns.tty else None), (
            _follow_resizes(proc, budget.call()) if ns.tty else contextlib.nullcontext()
        ):
            relay.start()
            try:
                code = proc.wait(budget.process())
            except (KeyboardInterrupt, _Terminated, errors.OperationTimeoutError) as exc:
                with contextlib.suppress(errors.HcsError):
                    proc.kill(timeout=min(budget.call(), 10.0) or 10.0)
                relay.finish(2.0)
                if isinstance(exc, errors.OperationTimeoutError):
                    if not budget.expired():
                        raise
                    raise _timed_out(ns, f"{command[0]} in '{system.id}'") from None
                raise
        if not relay.finish(1.0 if relay.broken_pipe else DRAIN_GRACE) and not relay.broken_pipe:
            sys.stderr.write(
                f"pyhcs: the process exited but its output stayed open for {DRAIN_GRACE:g} s "
                "(a child of it still holds it); stopped copying\n"
            )
        if relay.broken_pipe:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        if ns.json:
            _print_json({"Id": system.id, "Pid": proc.pid, "ExitCode": code})
    return _exit_status(code)


def _silence_stdout() -> None:
    """After a closed stdout (EPIPE), later flushes (interpreter exit too) go nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# ------------------------------------------------------------------------------ commands


def _open(ns: argparse.Namespace) -> ComputeSystem:
    from .system import ComputeSystem

    return ComputeSystem.open(ns.id, default_timeout=ns.budget.call())


def _container_config(owner: str, *, terminate_on_close: bool) -> dict[str, Any]:
    return {
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Owner": owner,
        "ShouldTerminateOnLastHandleClosed": terminate_on_close,
        "Container": {},
    }


def cmd_demo(ns: argparse.Namespace) -> int:
    import pyhcs
    from pyhcs import emulator
    from pyhcs.system import ComputeSystem

    budget: _Budget = ns.budget
    print(f"pyhcs {__version__} on the {pyhcs.backend} backend, library {emulator.library_path()}")
    t0 = time.perf_counter()
    system_id = f"pyhcs-demo-{uuid.uuid4().hex[:8]}"
    with ComputeSystem.create(system_id, _container_config("pyhcs-demo", terminate_on_close=True),
                              timeout=budget.call()) as system:
        system.start(timeout=budget.call())
        print(f"created and started compute system {system_id}")
        command = "echo hello from $(hostname) in a compute system; uname -sr; exit 3"
        result = system.run(["sh", "-c", command], timeout=budget.call())
        text = (result.stdout or b"").decode(errors="replace").strip()
        print("process output:\n  " + text.replace("\n", "\n  "))
        print(f"process exit code: {result.returncode}")
        props = system.properties("Statistics", timeout=budget.call())
        stats = _obj(props.get("Statistics"))
        cpu_ms = int(_obj(stats.get("Processor")).get("TotalRuntime100ns", 0)) / 10_000
        mem = int(_obj(stats.get("Memory")).get("MemoryUsageCommitBytes", 0))
        print(f"statistics: state {props.get('State')}, CPU {cpu_ms:.1f} ms, commit {mem / 2**20:.1f} MiB")
        system.terminate(timeout=budget.call())
    print(f"terminated and closed ({(time.perf_counter() - t0) * 1000:.0f} ms in all)")
    return EXIT_OK if result.returncode == 3 else EXIT_FAILURE


def cmd_info(ns: argparse.Namespace) -> int:
    import pyhcs
    import pyhcs._native._backend as B
    from pyhcs import emulator

    service = json.loads(B.hcs_get_service_properties(json.dumps({"PropertyTypes": ["Basic", "ProcessorTopology"]})))
    on_emulator = emulator.active()
    has_service = on_emulator and hasattr(emulator, "service_status")
    mode = _service_choice if (has_service or not on_emulator) else (
        "in this process (this build of the emulator has no separate service)"
    )
    doc = {
        "Version": __version__,
        "Backend": pyhcs.backend,
        "BackendFeatures": sorted(pyhcs.backend_features),
        "Library": B.library_path(),
        "Emulator": on_emulator,
        "ServiceMode": mode,
        "Service": service,
    }
    isolation = _isolation_report() if on_emulator else None  # docs/emulator.md, "Isolation"
    cgroup: dict[str, Any] = _obj(isolation.get("Cgroup")) if isolation is not None else {}
    if isolation is not None:
        doc["Isolation"] = isolation
    if ns.json:
        _print_json(doc)
        return EXIT_OK
    props = _objs(_obj(service).get("Properties"))
    versions = [f"{v.get('Major')}.{v.get('Minor')}" for p in props for v in _objs(p.get("SupportedSchemaVersions"))]
    cpus = next((p["LogicalProcessorCount"] for p in props if "LogicalProcessorCount" in p), "?")
    print(f"pyhcs {__version__}")
    print(f"backend:    {pyhcs.backend} ({', '.join(sorted(pyhcs.backend_features)) or 'no extra features'})")
    print(f"library:    {B.library_path()}{' (the pyhcs emulator)' if on_emulator else ''}")
    print(f"service:    {mode}")
    print(f"schema:     {', '.join(versions) or '?'}")
    print(f"processors: {cpus}")
    if isolation is not None:
        print(f"isolation:  {_isolation_line(isolation)}")
    if cgroup:
        in_effect = ", ".join(cgroup.get("Controllers") or []) or "none"
        fallback = ", ".join(sorted(_obj(cgroup.get("Fallbacks")))) or "none"
        print(f"cgroups:    v{cgroup.get('Version')} ({in_effect}); falling back: {fallback}")
    return EXIT_OK


def _isolation_report() -> dict[str, Any] | None:
    """What isolation the emulator's service allows (docs/emulator.md, "Isolation"); None from
    a build that does not answer ``EmulatorIsolation``."""
    from .service import properties

    try:
        props = _objs(properties("EmulatorIsolation"))
    except errors.HcsError:
        return None
    return props[0] if props else None


def _isolation_line(report: dict[str, Any]) -> str:
    available = ", ".join(str(a) for a in report.get("Available", [])) or "none"
    fallbacks = _obj(report.get("Fallbacks"))
    line = f"{report.get('Isolation', '?')} (available: {available}"
    if fallbacks:
        reasons = sorted({str(v) for v in fallbacks.values()})
        line += f"; falls back to the host's: {', '.join(sorted(fallbacks))}: {'; '.join(reasons)}"
    return line + ")"


def cmd_list(ns: argparse.Namespace) -> int:
    from .system import ComputeSystem

    systems = ComputeSystem.enumerate(owners=[ns.owner] if ns.owner else None, timeout=ns.budget.call())
    if ns.json:
        _print_json(systems)
        return EXIT_OK
    rows = [(s.get("Id", ""), s.get("SystemType", ""), s.get("State", ""), s.get("Owner", "")) for s in systems]
    if rows:
        _table(rows, ("ID", "TYPE", "STATE", "OWNER"))
    return EXIT_OK


def cmd_ps(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        props = system.properties("ProcessList", timeout=ns.budget.call())
    processes = _objs(props.get("ProcessList"))
    if ns.json:
        _print_json(processes)
        return EXIT_OK
    rows = [
        (
            p.get("ProcessId", ""),
            p.get("ImageName", ""),
            p.get("CreateTimestamp", ""),
            _seconds(int(p.get("UserTime100ns", 0) or 0) + int(p.get("KernelTime100ns", 0) or 0)),
            _mib(p.get("MemoryCommitBytes")),
        )
        for p in processes
    ]
    _table(rows, ("PID", "IMAGE", "CREATED", "CPU", "COMMIT"))
    return EXIT_OK


def cmd_stats(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        props = system.properties("Statistics", timeout=ns.budget.call())
    stats = _obj(props.get("Statistics"))
    if ns.json:
        _print_json(props)
        return EXIT_OK
    cpu, mem, io = _obj(stats.get("Processor")), _obj(stats.get("Memory")), _obj(stats.get("Storage"))
    print(f"system:  {props.get('Id', ns.id)} ({props.get('State', '?')})")
    print(f"uptime:  {_seconds(stats.get('Uptime100ns'))}")
    print(f"cpu:     {_seconds(cpu.get('TotalRuntime100ns'))} (user {_seconds(cpu.get('RuntimeUser100ns'))}, "
          f"kernel {_seconds(cpu.get('RuntimeKernel100ns'))})")
    print(f"memory:  commit {_mib(mem.get('MemoryUsageCommitBytes'))} (peak {_mib(mem.get('MemoryUsageCommitPeakBytes'))}),"
          f" private working set {_mib(mem.get('MemoryUsagePrivateWorkingSetBytes'))}")
    if io:
        print(f"storage: read {io.get('ReadCountNormalized', '?')} ops / {_mib(io.get('ReadSizeBytes'))}, "
              f"written {io.get('WriteCountNormalized', '?')} ops / {_mib(io.get('WriteSizeBytes'))}")
    return EXIT_OK


def cmd_properties(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        props = system.properties(*ns.types, timeout=ns.budget.call())
    _print_json(props, pretty=not ns.json)
    return EXIT_OK


def _action_result(ns: argparse.Namespace, action: str, changed: bool, done: str, already: str) -> int:
    if ns.json:
        _print_json({"Id": ns.id, "Action": action, "Changed": changed})
    else:
        print(f"{done if changed else already} '{ns.id}'")
    return EXIT_OK


def cmd_pause(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        system.pause(timeout=ns.budget.call())
    return _action_result(ns, "pause", True, "paused", "")


def cmd_resume(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        system.resume(timeout=ns.budget.call())
    return _action_result(ns, "resume", True, "resumed", "")


def cmd_save(ns: argparse.Namespace) -> int:
    path = os.path.abspath(ns.path)  # HCS takes absolute paths
    with _open(ns) as system:
        system.save({"SaveType": "ToFile", "SaveStateFilePath": path}, timeout=ns.budget.call())
    if ns.json:
        _print_json({"Id": ns.id, "Action": "save", "Changed": True, "Path": path})
    else:
        print(f"saved '{ns.id}' to {path}")
    return EXIT_OK


def cmd_shutdown(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        if ns.force_after is not None:
            status = system.stop(ns.force_after, timeout=ns.budget.call())
            changed = True
            if ns.json:
                _print_json({"Id": ns.id, "Action": "shutdown", "Changed": changed, "ExitType": status.exit_type})
                return EXIT_OK
            print(f"stopped '{ns.id}' ({status.exit_type})")
            return EXIT_OK
        changed = system.shutdown(timeout=ns.budget.call())
    return _action_result(ns, "shutdown", changed, "shut down", "already stopped:")


def cmd_terminate(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        changed = system.terminate(timeout=ns.budget.call())
    return _action_result(ns, "terminate", changed, "terminated", "already stopped:")


def parse_signal(text: str) -> int | str:
    """A ``--signal`` value: a number, a POSIX name (``TERM``, ``SIGTERM``) or a Windows Ctrl
    event (``CtrlC``...); raises ValueError otherwise."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    for name in _CTRL_EVENTS:
        if value.lower() == name.lower():
            return name
    key = value.upper().removeprefix("SIG")
    if key in _SIGNALS:
        return _SIGNALS[key]
    raise ValueError(
        f"unknown signal {text!r}: give a number, a name ({', '.join(sorted(_SIGNALS))}) "
        f"or a Windows Ctrl event ({', '.join(_CTRL_EVENTS)})"
    )


def cmd_kill(ns: argparse.Namespace) -> int:
    try:
        sig = parse_signal(ns.signal) if ns.signal is not None else None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    timeout = ns.budget.call()
    with _open(ns) as system:
        if sig is None and ns.pid is None:
            changed = system.terminate(timeout=timeout)
            return _action_result(ns, "terminate", changed, "terminated", "already stopped:")
        if ns.pid is not None:
            pids = list(ns.pid)
        else:
            listing = _objs(system.properties("ProcessList", timeout=timeout).get("ProcessList"))
            pids = [int(p["ProcessId"]) for p in listing if "ProcessId" in p]
        results: list[dict[str, Any]] = []
        for pid in pids:
            try:
                proc = system.open_process(pid)
            except errors.HcsError as exc:
                if ns.pid is None and (errors.is_not_found(exc) or errors.is_already_stopped(exc)):
                    continue  # exited since the listing
                if exc.process_id is None:
                    exc.process_id = pid
                raise
            with proc:
                changed = proc.signal(sig, timeout=timeout) if sig is not None else proc.kill(timeout=timeout)
            results.append({"Pid": pid, "Changed": changed})
    action = "signal" if sig is not None else "kill"
    if ns.json:
        _print_json({"Id": ns.id, "Action": action, "Signal": sig, "Processes": results})
    else:
        for r in results:
            what = f"sent {sig} to" if sig is not None else "killed"
            print(f"{what} process {r['Pid']} in '{ns.id}'" if r["Changed"] else
                  f"process {r['Pid']} in '{ns.id}' had already exited")
        if not results:
            print(f"no process in '{ns.id}'")
    return EXIT_OK


def cmd_events(ns: argparse.Namespace) -> int:
    budget: _Budget = ns.budget
    with _open(ns) as system:
        stream = system.events(replay=True, timeout=0.5)
        seen = 0
        last: Event | None = None
        while True:
            try:
                ev = next(stream)
            except StopIteration:
                break
            except errors.OperationTimeoutError:
                if budget.expired():
                    raise _timed_out(ns, f"following the events of '{ns.id}'") from None
                continue
            seen += 1
            last = ev
            name = event_name(ev)
            if ns.json:
                _print_json({"Time": _now(), "Event": name, "SystemId": ev.system_id, "Data": ev.document})
            else:
                print(f"{_now()} {name} {ev.data or ''}".rstrip(), flush=True)
        exit_status = system.exit_status
    if last is not None and event_name(last) == "ServiceDisconnect":
        raise CliError(f"the compute service went away while following '{ns.id}'")
    if seen == 0 and exit_status is not None and not ns.json:
        sys.stderr.write(f"pyhcs events: '{ns.id}' had already exited ({exit_status.exit_type})\n")
    return EXIT_OK


def cmd_sweep(ns: argparse.Namespace) -> int:
    from .system import ComputeSystem

    budget: _Budget = ns.budget
    systems = ComputeSystem.enumerate(owners=[ns.owner], timeout=budget.call())
    results: list[dict[str, Any]] = []
    failed = 0
    for item in systems:
        sid = str(item.get("Id", ""))
        entry: dict[str, Any] = {"Id": sid, "State": item.get("State")}
        if ns.dry_run:
            entry["Result"] = "would stop"
        else:
            try:
                with ComputeSystem.open(sid, default_timeout=budget.call()) as system:
                    status = system.stop(ns.grace, timeout=budget.call())
                entry["Result"] = "stopped"
                entry["ExitType"] = status.exit_type
            except errors.HcsError as exc:
                if errors.is_not_found(exc) or errors.is_already_stopped(exc):
                    entry["Result"] = "already gone"
                else:
                    failed += 1
                    entry["Result"] = "failed"
                    entry["Error"] = describe_error(exc, system_id=sid)["Message"]
        results.append(entry)
    if ns.json:
        _print_json(results)
    else:
        for entry in results:
            extra = f" ({entry['ExitType']})" if entry.get("ExitType") else ""
            extra += f": {entry['Error']}" if entry.get("Error") else ""
            print(f"{entry['Result']}: {entry['Id']}{extra}")
        if not results:
            print(f"no compute system owned by '{ns.owner}'")
    return EXIT_FAILURE if failed else EXIT_OK


def cmd_exec(ns: argparse.Namespace) -> int:
    with _open(ns) as system:
        return _run_process(system, ns)


def _detach_refusal() -> str | None:
    """Why a detached system would not outlive this command, or None when it would."""
    if not _on_emulator():
        return None
    from . import emulator

    if not hasattr(emulator, "service_status"):
        return "this build of the emulator has no separate service: the system would end with this command"
    mode = os.environ.get(SERVICE_ENV, "").strip()
    if mode in ("", "private", "direct"):
        return (f"the emulator's service is private to this command ({SERVICE_ENV}={mode or 'unset'}): "
                f"the system would end with it; use {SERVICE_ENV}=shared")
    return None


def _read_config(path: str) -> dict[str, Any]:
    """A ComputeSystem document from a file (``-``: stdin), for ``run --config``."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--config {path}: {exc.strerror or exc}") from None
    try:
        doc: object = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--config {path} is not valid JSON: {exc}") from None
    if not _is_obj(doc):
        raise CliError(f"--config {path} must hold a JSON object (a ComputeSystem document)")
    return _obj(doc)


def cmd_run(ns: argparse.Namespace) -> int:
    from .system import ComputeSystem

    budget: _Budget = ns.budget
    command = _command(ns)
    if ns.detach:
        reason = _detach_refusal()
        if reason:
            raise CliError(f"cannot run detached: {reason}")
    system_id = ns.id or f"{ns.owner}-{uuid.uuid4().hex[:12]}"
    config = _container_config(ns.owner, terminate_on_close=not ns.detach)
    if ns.config:
        if ns.config == "-":
            ns.no_stdin = True  # stdin held the configuration
        config = {**_read_config(ns.config), "Owner": ns.owner, "ShouldTerminateOnLastHandleClosed": not ns.detach}
    ns.id = system_id
    with ComputeSystem.create(system_id, config, timeout=budget.call()) as system:
        system.start(timeout=budget.call())
        if ns.detach:
            ns.starts_process = True
            options = _process_options(ns)
            options.update(stdin=False, stdout=False, stderr=False)
            with system.create_process(command, timeout=budget.call(), **options) as proc:
                pid = proc.pid
            if ns.json:
                _print_json({"Id": system_id, "Pid": pid})
            else:
                print(system_id)
            return EXIT_OK
        try:
            return _run_process(system, ns)
        finally:
            with contextlib.suppress(errors.HcsError):
                system.terminate(timeout=min(budget.call(), 30.0) or 30.0)


def _emulator_api(name: str) -> Callable[..., Any]:
    if sys.platform == "win32":
        raise CliError("there is no emulator on Windows: pyhcs talks to the Host Compute Service (vmcompute)")
    try:
        from . import emulator
    except ImportError as exc:
        raise CliError(str(exc).removeprefix("pyhcs: ")) from None
    fn = getattr(emulator, name, None)
    if not callable(fn):
        raise CliError(
            f"this build has no emulator service (pyhcs.emulator.{name} is missing): the emulator runs "
            "inside each process that loads it"
        )
    return fn  # type: ignore[no-any-return]


def cmd_emulator_serve(ns: argparse.Namespace) -> int:
    serve = _emulator_api("serve")
    return int(serve(ns.socket, foreground=not ns.background))


def cmd_emulator_status(ns: argparse.Namespace) -> int:
    status = _emulator_api("service_status")(ns.socket)
    path = ns.socket or _emulator_api("default_socket_path")()
    if status is None:
        if ns.json:
            _print_json({"Running": False, "SocketPath": str(path)})
        else:
            print(f"no emulator service is running at {path}")
        return 1
    if ns.json:
        _print_json({"Running": True, "SocketPath": str(path), **dict(status)})
    else:
        print(f"emulator service running at {path}")
        for key, value in dict(status).items():
            print(f"  {key}: {value if isinstance(value, (str, int, float)) else json.dumps(value)}")
    return EXIT_OK


def cmd_emulator_stop(ns: argparse.Namespace) -> int:
    stopped = bool(_emulator_api("stop_service")(ns.socket, timeout=ns.timeout if ns.timeout is not None else 10.0))
    path = ns.socket or _emulator_api("default_socket_path")()
    if ns.json:
        _print_json({"Stopped": stopped, "SocketPath": str(path)})
    else:
        print(f"stopped the emulator service at {path}" if stopped else f"no emulator service was stopped at {path}")
    return EXIT_OK if stopped else 1


# ------------------------------------------------------------------------------ the parser


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _common(json_help: str = "print JSON for scripts") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--timeout", type=_seconds_arg, metavar="SECONDS",
                   help="give up after this long (exit 124); default: pyhcs' default per call "
                        "(PYHCS_TIMEOUT, 240 s)")
    return p


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds: {text!r}")
    return value


def _add(sub: Subparsers, name: str, fn: Callable[[argparse.Namespace], int], help: str, example: str | Sequence[str],
         *, json_help: str = "print JSON for scripts", library: bool = True) -> argparse.ArgumentParser:
    lines = [example] if isinstance(example, str) else list(example)
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=_examples(*lines),
                       parents=[_common(json_help)], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(fn=fn, library=library)
    return p


def _add_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="the compute system's id (see `pyhcs list`)")


def _add_process_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the process a console (EmulateConsole) the size of this terminal; "
                        "keys, Ctrl-C included, go to it")
    p.add_argument("-n", "--no-stdin", action="store_true",
                   help="do not forward this command's stdin (the process gets none)")
    p.add_argument("-e", "--env", action="append", metavar="NAME[=VALUE]",
                   help="set a variable; NAME alone passes this environment's value (skipped if unset)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="the process' working directory")
    p.add_argument("-u", "--user", help="the user to run as")


def add_demo_parser(sub: Subparsers) -> None:
    _add(sub, "demo", cmd_demo, "create a compute system, run a process, show its output and statistics",
         "pyhcs demo")


def add_info_parser(sub: Subparsers) -> None:
    _add(sub, "info", cmd_info, "the backend, the library, the service and its properties", "pyhcs info --json")


def add_list_parser(sub: Subparsers) -> None:
    p = _add(sub, "list", cmd_list, "list the compute systems (ID, type, state, owner)",
             ["pyhcs list", "pyhcs list --owner ci-job-17 --json"],
             json_help="print HCS's own documents (Id, SystemType, State, Owner...) as a JSON array")
    p.add_argument("--owner", help="only systems with this Owner")


def add_ps_parser(sub: Subparsers) -> None:
    _add_id(_add(sub, "ps", cmd_ps, "list the processes of a compute system", "pyhcs ps my-system",
                 json_help="print HCS's ProcessList as a JSON array"))


def add_exec_parser(sub: Subparsers) -> None:
    p = _add(sub, "exec", cmd_exec,
             "run a command in a running compute system, relaying its stdio; exits with its exit code",
             ["pyhcs exec my-system -- uname -a", "echo data | pyhcs exec my-system -- sort",
              "pyhcs exec -t my-system -- sh"],
             json_help='print the output as JSON lines {"Stream", "Data"}, then {"Id", "Pid", "ExitCode"}')
    _add_process_options(p)
    _add_id(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...", help="the command and its arguments")


def add_run_parser(sub: Subparsers) -> None:
    p = _add(sub, "run", cmd_run,
             "run a command in a new container, relaying its stdio; exits with its exit code",
             ["pyhcs run -- sh -c 'echo hello; exit 3'", "pyhcs run --env FOO=1 --timeout 60 -- env",
              "pyhcs run -d --id web --owner me -- sleep 600"],
             json_help='print the output as JSON lines {"Stream", "Data"}, then {"Id", "Pid", "ExitCode"}')
    _add_process_options(p)
    p.add_argument("--config", metavar="FILE",
                   help="the ComputeSystem document to create (JSON; - for stdin, which is then not forwarded); "
                        "default: a Container with no layers, which the emulator runs and Windows needs layers for")
    p.add_argument("--id", help="the new system's id (default: OWNER-<random>)")
    p.add_argument("--owner", default="pyhcs-run", help="its Owner, for `list --owner` and `sweep` (default: pyhcs-run)")
    p.add_argument("-d", "--detach", action="store_true",
                   help="start the command and leave the system running (it outlives this command); print its id")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...", help="the command and its arguments")


def add_kill_parser(sub: Subparsers) -> None:
    p = _add(sub, "kill", cmd_kill,
             "terminate a compute system, or kill or signal its processes",
             ["pyhcs kill my-system", "pyhcs kill --pid 42 my-system", "pyhcs kill --signal TERM my-system",
              "pyhcs kill --signal CtrlC --pid 42 my-windows-container"])
    p.add_argument("--signal", "-s", metavar="SIG",
                   help="send this signal (number, name as TERM, or a Windows Ctrl event as CtrlC) instead of "
                        "terminating; to --pid, else to every process of the system")
    p.add_argument("--pid", type=int, action="append", metavar="PID",
                   help="only this process (repeatable); without --signal it is terminated")
    _add_id(p)


def add_action_parsers(sub: Subparsers) -> None:
    for name, fn, text in (
        ("pause", cmd_pause, "pause a running compute system"),
        ("resume", cmd_resume, "resume a paused compute system"),
        ("terminate", cmd_terminate, "terminate (power off) a compute system"),
    ):
        _add_id(_add(sub, name, fn, text, f"pyhcs {name} my-system"))
    p = _add(sub, "shutdown", cmd_shutdown, "shut a compute system down gracefully",
             ["pyhcs shutdown my-system", "pyhcs shutdown --force-after 30 my-system"])
    p.add_argument("--force-after", type=_seconds_arg, metavar="SECONDS",
                   help="terminate it if it has not stopped after this long")
    _add_id(p)
    p = _add(sub, "save", cmd_save, "save a paused compute system's state to a file",
             ["pyhcs pause my-system && pyhcs save my-system /var/lib/state/my-system.vmrs"])
    _add_id(p)
    p.add_argument("path", metavar="PATH", help="the state file to write")


def add_stats_parser(sub: Subparsers) -> None:
    _add_id(_add(sub, "stats", cmd_stats, "show a compute system's statistics (CPU, memory, storage)",
                 "pyhcs stats my-system --json",
                 json_help="print HCS's properties document with its Statistics"))


def add_properties_parser(sub: Subparsers) -> None:
    p = _add(sub, "properties", cmd_properties, "print a compute system's properties document",
             ["pyhcs properties my-system", "pyhcs properties my-system Statistics ProcessList"],
             json_help="print it on one line")
    _add_id(p)
    p.add_argument("types", nargs="*", metavar="TYPE", help="property types to add (Statistics, ProcessList, Memory...)")


def add_events_parser(sub: Subparsers) -> None:
    _add_id(_add(sub, "events", cmd_events,
                 "print a compute system's events as they come, until it exits (or Ctrl-C)",
                 ["pyhcs events my-system", "pyhcs events --json --timeout 600 my-system"],
                 json_help='print JSON lines {"Time", "Event", "SystemId", "Data"}'))


def add_sweep_parser(sub: Subparsers) -> None:
    p = _add(sub, "sweep", cmd_sweep,
             "stop every compute system of an owner (shutdown, then terminate): the cleanup after a crashed job",
             ["pyhcs sweep --owner ci-job-17", "pyhcs sweep --owner ci-job-17 --dry-run --json"])
    p.add_argument("--owner", required=True, help="the Owner whose systems are stopped")
    p.add_argument("--grace", type=_seconds_arg, default=10.0, metavar="SECONDS",
                   help="how long a shutdown may take before terminate (default 10)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be stopped")


def add_emulator_parser(sub: Subparsers) -> None:
    p = sub.add_parser("emulator", help="the emulator's shared service: serve, status, stop",
                       description="Manage the emulator's shared service (off Windows).",
                       epilog=_examples("pyhcs emulator serve --background", "pyhcs emulator status",
                                        "pyhcs emulator stop"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(fn=None, library=False, parser=p)
    esub = p.add_subparsers(dest="emulator_cmd", metavar="{serve,status,stop}")
    for name, fn, text, example in (
        ("serve", cmd_emulator_serve, "run the shared service (in the foreground unless --background)",
         "pyhcs emulator serve --socket /tmp/hcs.sock"),
        ("status", cmd_emulator_status, "whether the shared service runs (exit 0) or not (exit 1)",
         "pyhcs emulator status --json"),
        ("stop", cmd_emulator_stop, "stop the shared service (exit 1 if none was stopped)",
         "pyhcs emulator stop --timeout 10"),
    ):
        e = _add(esub, name, fn, text, example, library=False)
        e.add_argument("--socket", metavar="PATH", help="the service's socket (default: the user's shared one)")
        if name == "serve":
            e.add_argument("--background", action="store_true", help="detach and return once it listens")


def add_trace_parser(sub: Subparsers) -> None:
    """``pyhcs trace show|replay`` (docs/tracing.md), from the trace package."""
    from .trace._cli import add_trace_command

    add_trace_command(sub)


#: The subcommands, in the order ``pyhcs --help`` lists them. Each takes the subparsers
#: object, adds its parser and sets ``fn`` (handler: namespace -> exit status) with
#: ``set_defaults``; ``library=True`` as well has the command pick the service and load the HCS
#: library before the handler runs (a broken backend or a rejected HCSEMU_FAULTS is then one
#: line and status 125). Another module's command is one more entry here, e.g.
#: ``SUBCOMMANDS.append(add_x_parser)``.
SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    add_list_parser,
    add_ps_parser,
    add_exec_parser,
    add_run_parser,
    add_kill_parser,
    add_action_parsers,
    add_stats_parser,
    add_properties_parser,
    add_events_parser,
    add_sweep_parser,
    add_emulator_parser,
    add_trace_parser,
    add_info_parser,
    add_demo_parser,
]

_DESCRIPTION = """\
Manage compute systems of the Windows Host Compute Service (HCS), as hcsdiag and runhcs do.
The same commands drive real HCS on Windows and pyhcs' emulator elsewhere; on the emulator
they use the user's shared service (HCSEMU_SERVICE=shared, unless HCSEMU_SERVICE or
PYHCS_LIBRARY is set), so every pyhcs command sees the same systems."""

_EPILOG = """\
examples:
  pyhcs run -- sh -c 'echo hello; exit 3'      run in a new container; exits 3
  pyhcs run -d --id web --owner me -- sleep 600
  pyhcs list --owner me --json
  pyhcs exec -t web -- sh                      an interactive console in it
  pyhcs events web                             follow its events until it exits
  pyhcs sweep --owner me                       stop everything 'me' left behind

exit status: the command's own for exec and run; 0 success; 1 "no" of emulator status/stop;
2 usage error; 124 --timeout ran out; 125 an error of pyhcs or HCS (the message names the
system, the HRESULT and what it means); 126 the command cannot be invoked; 127 the command
was not found; 130 Ctrl-C; 143 SIGTERM. `pyhcs COMMAND --help` shows each command.
docs/cli.md has the details."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyhcs", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pyhcs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and pyhcs' debug log")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", title="commands")
    for add in SUBCOMMANDS:
        add(sub)
    parser.set_defaults(fn=None, parser=parser)
    return parser


def command_names() -> list[str]:
    """The subcommands' names, in the order ``pyhcs --help`` lists them."""
    for action in build_parser()._actions:
        if action.dest == "cmd" and is_json_mapping(action.choices):  # the subparsers: name -> parser
            return list(action.choices)
    return []


# ------------------------------------------------------------------------------ main


def _raise_terminated(_sig: int, _frame: object) -> NoReturn:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``pyhcs`` command line and returns its exit status."""
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if ns.fn is None:  # `pyhcs --debug` or `pyhcs emulator` without a command
        ns.parser.print_help(sys.stderr)
        return EXIT_USAGE
    if ns.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    prog = " ".join(["pyhcs", *(c for c in (ns.cmd, getattr(ns, "emulator_cmd", None)) if c)])
    ns.budget = _Budget(getattr(ns, "timeout", None))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        if getattr(ns, "library", False):
            _choose_service()
            _load_library()
        status: int = ns.fn(ns)
        return status
    except CliError as exc:
        return _report(prog, exc, ns, exc.status)
    except errors.HcsError as exc:
        _debug_traceback(ns)
        return _report(prog, exc, ns, _status_of(exc, ns))
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except _Terminated:
        sys.stderr.write(f"{prog}: terminated\n")
        return EXIT_TERMINATED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ValueError, TypeError, OSError, ImportError) as exc:
        # pyhcs' own validation (a bad document, a bad argument) and local OS errors.
        _debug_traceback(ns)
        return _report(prog, exc, ns, EXIT_FAILURE)
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _debug_traceback(ns: argparse.Namespace) -> None:
    if getattr(ns, "debug", False):
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
