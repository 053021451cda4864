"""Processes in a compute system: :class:`Process` and :class:`CompletedProcess`.

::

    proc = system.create_process(["sort"], stdin=True, stdout=True)
    out, _ = proc.communicate(b"b\\na\\n", timeout=30)   # b'a\\nb\\n'
    proc.exit_code                                      # 0
    proc.close()

The stdio pipes are binary file objects (``proc.stdin.write``, ``proc.stdout.read``). Two
things are different from local pipes, as in HCS itself: the child sees EOF on stdin
only when the host both closed its end *and* sent HcsModifyProcess CloseHandle/StdIn, which
:meth:`Process.close_stdin` and :meth:`Process.communicate` do; and the exit of a process is
an event, which pyhcs registers for before anything can be missed.

:meth:`Process.communicate` drains stdout and stderr concurrently (no pipe deadlock whatever the
output size) and reports the exit only after both reached EOF. The exit status is a typed
:class:`~pyhcs.events.ExitStatus` (code, LastWaitResult, where it came from), never made up.

:meth:`Process.kill`, :meth:`Process.terminate` and :meth:`Process.signal` are idempotent: a
process that already exited is not an error (they return False), whatever benign code HCS
uses to say so.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import os
import selectors
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from . import _log, _stdio
from ._docs import Document, loads, to_json
from ._flow import Action, Call, EventWait, Flow, OperationWait, run
from ._guest import GuestOs, command_fields, signal_value
from ._handle import DEFAULT, Deadline, Handle, Timeout, reports_timeout, resolve_timeout, timeout_error
from ._native import _backend as B
from ._native._types import HcsProcessInformation
from ._stdio import PipeIO
from .errors import (
    CalledProcessError,
    HcsError,
    OperationTimeoutError,
    TimeoutExpiredError,
    Win32AccessDeniedError,
    is_already_stopped,
    is_json_object,
    is_timeout,
    make_error,
)
from .events import (
    END_CLOSED,
    END_DISCONNECTED,
    END_LOST,
    Event,
    EventHub,
    EventStream,
    ExitStatus,
    dispatch_event,
)
from .operation import Operation, complete, initiate

if TYPE_CHECKING:
    from .system import ComputeSystem

__all__ = ["CompletedProcess", "Process", "process_parameters"]

_HCS_E_UNEXPECTED_EXIT = 0x80370106
_HCS_E_SERVICE_DISCONNECT = 0x8037011E
_E_UNEXPECTED = 0x8000FFFF
_PIPE_BUF = 512  # bytes written per select() round: never blocks a writable pipe
_READ_CHUNK = 65536

if hasattr(selectors, "PollSelector"):
    _Selector: type[selectors.BaseSelector] = selectors.PollSelector
else:  # pragma: no cover - Windows uses threads instead
    _Selector = selectors.SelectSelector


def process_parameters(
    command: str | Sequence[str] | None,
    *,
    params: Document | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    stdin: bool | None = None,
    stdout: bool | None = None,
    stderr: bool | None = None,
    console: bool | None = None,
    console_size: tuple[int, int] | None = None,
    guest_os: GuestOs = "windows",
) -> str:
    """The ProcessParameters JSON for HcsCreateProcess.

    A ``str`` command is sent as ``CommandLine``, unchanged. An argument list becomes what
    the guest takes (see :attr:`ComputeSystem.guest_os`): for ``guest_os="windows"`` a ``CommandLine``
    quoted so that Windows splits it back into exactly these arguments, for ``"linux"`` the
    ``CommandArgs`` list itself. A command replaces the command of ``params``.
    """
    base: dict[str, Any] = {}
    if params is not None:
        parsed = loads(to_json(params, "process parameters"))
        if not is_json_object(parsed):
            raise TypeError("process parameters must be a JSON object")
        base = parsed
    if command is not None:
        base.pop("CommandLine", None)
        base.pop("CommandArgs", None)
        if isinstance(command, str):
            base["CommandLine"] = command
        else:
            base.update(command_fields([os.fspath(a) for a in command], guest_os))
    if "CommandLine" not in base and "CommandArgs" not in base:
        raise ValueError("a command (or params with CommandLine/CommandArgs) is required")
    if cwd is not None:
        base["WorkingDirectory"] = os.fspath(cwd)
    if env is not None:
        base["Environment"] = dict(env)
    if user is not None:
        base["User"] = user
    for key, flag in (
        ("CreateStdInPipe", stdin),
        ("CreateStdOutPipe", stdout),
        ("CreateStdErrPipe", stderr),
        ("EmulateConsole", console),
    ):
        if flag is not None:
            base[key] = bool(flag)
    if console_size is not None:
        base["ConsoleSize"] = [int(console_size[0]), int(console_size[1])]
    return to_json(base) or "{}"


@dataclass
class CompletedProcess:
    """What :meth:`ComputeSystem.run` returns (like :class:`subprocess.CompletedProcess`)."""

    args: str | Sequence[str]
    returncode: int
    #: bytes, str with ``text=True``/``encoding=``, None when not captured
    stdout: Any
    stderr: Any
    exit_status: ExitStatus
    pid: int
    system_id: str | None = None

    def check_returncode(self) -> None:
        """Raises :class:`~pyhcs.errors.CalledProcessError` (a
        :class:`subprocess.CalledProcessError`) for a non-zero exit code."""
        if self.returncode:
            raise CalledProcessError(
                self.returncode, self.args, self.stdout, self.stderr,
                system_id=self.system_id, pid=self.pid, exit_status=self.exit_status,
            )


class _Communication:
    """The state of a communicate() in progress, kept across a timeout for a retry.

    It holds the pipes themselves (not the Process attributes, which a close from another
    thread clears), so the I/O loop never touches a descriptor it does not hold.
    """

    def __init__(
        self, data: bytes | None, stdin: PipeIO | None, stdout: PipeIO | None, stderr: PipeIO | None,
        merge: bool = False,
    ) -> None:
        self.input = memoryview(data).cast("B") if data else None
        self.offset = 0
        self.stdin = stdin if self.input is not None else None
        self.out: list[bytes] | None = [] if stdout is not None or (merge and stderr is not None) else None
        # stderr=STDOUT: both pipes feed one buffer, chunk by chunk as they arrive
        self.err: list[bytes] | None = self.out if merge else [] if stderr is not None else None
        self.merge = merge
        self.outputs: list[tuple[PipeIO, list[bytes]]] = [
            (pipe, sink) for pipe, sink in ((stdout, self.out), (stderr, self.err)) if pipe is not None and sink is not None
        ]
        self.result: tuple[bytes | None, bytes | None] | None = None
        # the thread strategy
        self.threads: list[threading.Thread] = []
        self.writer: threading.Thread | None = None
        self.failures: list[BaseException] = []

    def output(self) -> tuple[bytes | None, bytes | None]:
        out = b"".join(self.out) if self.out is not None else None
        err = b"".join(self.err) if self.err is not None and not self.merge else None
        return out, err


class Process(Handle):
    """A process in a compute system (HCS_PROCESS handle). Get one from
    :meth:`ComputeSystem.create_process` or :meth:`ComputeSystem.open_process`.

    Attributes
    ----------
    pid: int
        Its process id (in the guest).
    system: ComputeSystem
        The system it runs in; closing that closes this too.
    stdin, stdout, stderr: binary file objects or None
        The pipes that were asked for. Owned by the process object: closed by :meth:`close`.

    Closing a Process closes its handle and pipes but, as in HCS, does not end the process:
    :meth:`kill` it first if that is what you want (a ``with`` block left by an exception
    does). Waits, signals and properties may be used from several threads at once;
    :meth:`communicate` and the pipes belong to one thread at a time, as with
    :class:`subprocess.Popen`. :meth:`close` may come from any thread and never blocks: a
    thread still reading a pipe (or in :meth:`communicate`) then gets ValueError
    (HandleClosedError), and the pipe's descriptor is freed once that read returned. Input
    written to ``stdin`` but not flushed is dropped by :meth:`close` (flush, or
    :meth:`close_stdin`, to deliver it).
    """

    _kind = "process"

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def __init__(self, handle: int, system: ComputeSystem, pid: int = 0, *, bufsize: int = -1) -> None:
        super().__init__(handle)
        self.system = system
        self.system_id = system.id
        self.pid = pid
        self.default_timeout = system.default_timeout
        self.stdin = self.stdout = self.stderr = None
        self._had_stdin = False
        self._bufsize = bufsize
        self._creation: Operation | None = None
        self._comm: _Communication | None = None
        self._merge_stderr = False  # run(stderr=STDOUT)
        self._hub = EventHub("process", system.id, pid or None)
        key = self._hub.register()
        try:
            system._add_child(self)
            self._native("HcsSetProcessCallback", B.hcs_set_process_callback, 0, key, dispatch_event)
        except BaseException:
            self._hub.unregister()
            self._closed = True  # the caller closes the handle
            raise

    @classmethod
    def _adopt(
        cls, handle: int, system: ComputeSystem, *, creation: Operation | None = None, pid: int = 0, bufsize: int = -1
    ) -> Process:
        try:
            proc = cls(handle, system, pid, bufsize=bufsize)
        except BaseException:
            B.hcs_close_process(handle)
            raise
        proc._creation = creation
        return proc

    @classmethod
    def open(cls, system: ComputeSystem, pid: int, *, stdio: bool = False, bufsize: int = -1) -> Process:
        """HcsOpenProcess by pid (``errors.ElementNotFoundError`` if there is no such process,
        or it already exited). ``stdio=True`` also gets new pipe handles (HcsGetProcessInfo)."""
        return run(open_flow(system, pid, stdio=stdio, bufsize=bufsize))

    # -- description ------------------------------------------------------------------------------
    def _context(self) -> tuple[str | None, int | None]:
        return self.system_id, self.pid or None

    def __repr__(self) -> str:
        status = self._hub.exit
        state = (
            "closed"
            if self._closed
            else f"exited({status.code})"
            if isinstance(status, ExitStatus)
            else "starting"
            if self._creation is not None
            else "running"
        )
        return f"<pyhcs.Process pid={self.pid} system={self.system_id!r} {state}>"

    # -- creation ---------------------------------------------------------------------------------
    def wait_started(self, timeout: Timeout = DEFAULT) -> None:
        """Waits for a pending creation (only needed after create_process timed out)."""
        if self._creation is not None:
            run(wait_started_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def _take_pipes(self, pi: HcsProcessInformation) -> None:
        """Takes the pid and ownership of the pipes (no call to HCS)."""
        self.pid = pi.process_id
        self._hub.process_id = pi.process_id
        std = ((pi.std_input, "wb", "stdin"), (pi.std_output, "rb", "stdout"), (pi.std_error, "rb", "stderr"))
        for i, (handle, mode, name) in enumerate(std):
            if handle is None:
                continue
            try:
                setattr(self, name, _stdio.open_std_handle(handle, mode, buffering=self._bufsize))
            except BaseException:
                for later, _, _ in std[i + 1 :]:
                    if later is not None:
                        B.close_handle(later)
                raise
            if name == "stdin":
                self._had_stdin = True

    def _exit_polled(self, doc: str | None, err: HcsError | None) -> None:
        """Records what a zero HcsWaitForProcessExit said."""
        if err is not None:
            if is_timeout(err):
                return  # still running: ProcessExited will come to the callback
            if is_already_stopped(err):
                # The process is gone and HCS can no longer say how it ended. Not made up:
                # waits raise this error instead of returning an exit code.
                self._hub.end(END_LOST, make_error(
                    err.hresult,
                    err.result_document,
                    message=f"process {self.pid} exited before its exit status could be read; "
                    "HCS no longer knows it",
                    call="HcsWaitForProcessExit",
                    system_id=self.system_id,
                    process_id=self.pid or None,
                ))
                return
            _log.log.debug("pyhcs: exit poll of %r failed: %s", self, err)
            return
        if doc:
            self._hub.set_exit(ExitStatus.from_document(doc, "wait", self.pid))

    # -- exit -----------------------------------------------------------------------------------------
    @property
    def exit_status(self) -> ExitStatus | None:
        """How the process ended, once known (else None). Does not block."""
        status = self._hub.exit
        return status if isinstance(status, ExitStatus) else None

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process exited (None before, or when HCS gave none)."""
        status = self.exit_status
        return status.code if status is not None else None

    returncode = exit_code

    def poll(self) -> int | None:
        """The exit code if the process has exited, else None; never blocks or raises for a
        missing code."""
        return self.exit_code

    def _exit_ready(self) -> bool:
        hub = self._hub
        return hub.exit is not None or hub.end_reason is not None or hub.closed or hub.system_gone

    def _exit_outcome(self) -> ExitStatus | None:
        hub = self._hub
        if isinstance(hub.exit, ExitStatus):
            return hub.exit
        if hub.failure is not None:
            raise hub.failure
        if hub.end_reason == END_DISCONNECTED:
            raise make_error(
                _HCS_E_SERVICE_DISCONNECT,
                message="the connection to the compute service was lost before the process exited",
                call="HcsWaitForProcessExit",
                system_id=self.system_id,
                process_id=self.pid or None,
            )
        if hub.closed or self._closed:
            raise self._closed_error("wait")
        if hub.system_gone:
            # The system exited; if HCS sent no ProcessExited, the flow asked once (see
            # _needs_exit_poll); give up honestly rather than invent a code.
            if isinstance(hub.exit, ExitStatus):
                return hub.exit
            if hub.failure is not None:
                raise hub.failure
            raise make_error(
                _HCS_E_UNEXPECTED_EXIT,
                message=f"the compute system exited; HCS reported no exit status for process {self.pid}",
                system_id=self.system_id,
                process_id=self.pid or None,
            )
        return None

    def _needs_exit_poll(self) -> bool:
        hub = self._hub
        return (hub.system_gone and hub.exit is None and hub.failure is None and hub.end_reason != END_DISCONNECTED
                and not hub.closed and not self._closed)

    def _wait_status(self, deadline: Deadline) -> ExitStatus:
        return run(wait_status_flow(self, deadline))

    def wait(self, timeout: Timeout = DEFAULT) -> int:
        """Waits for the process to exit and returns its exit code.

        Raises OperationTimeoutError (the process keeps running), the HcsError HCS gave in
        place of an exit code (LastWaitResult), ServiceDisconnectedError, or
        HandleClosedError when the process object is closed meanwhile.
        """
        status = self._wait_status(Deadline(resolve_timeout(timeout, self.default_timeout)))
        return status.check(system_id=self.system_id)

    # -- stdio ----------------------------------------------------------------------------------------
    def close_stdin(self, *, timeout: Timeout = DEFAULT) -> None:
        """Ends the child's stdin: closes our end and sends HcsModifyProcess CloseHandle/StdIn
        (both are needed for the child to see EOF). Idempotent; fine after the exit."""
        self._close_stdin_file()
        if not self._had_stdin or self._hub.exit is not None or self._closed:
            return
        run(close_stdin_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def _close_stdin_file(self) -> None:
        f, self.stdin = self.stdin, None
        if f is not None:
            try:
                f.close()
            except OSError:  # BrokenPipeError flushing to a child that is gone
                pass

    def communicate(
        self, input: bytes | None = None, timeout: Timeout = DEFAULT
    ) -> tuple[bytes | None, bytes | None]:
        """Sends ``input``, reads stdout and stderr to EOF (concurrently: no deadlock however
        much the child writes), closes stdin, then waits for the exit.

        Returns ``(stdout, stderr)``, None for a stream without a pipe. On a timeout raises
        OperationTimeoutError with the output so far as ``err.output``/``err.stderr``; the
        process keeps running and communicate() may be called again (without input) to go on.
        ``timeout=None`` waits without a limit; Ctrl-C interrupts the wait either way.
        If another thread closes the process meanwhile, this raises HandleClosedError.
        Like :mod:`subprocess`, do not mix it with reads of your own on the same pipes.
        """
        deadline = Deadline(resolve_timeout(timeout, self.default_timeout))
        if self._creation is not None:
            self.wait_started(deadline.remaining())
        comm = self._comm
        if comm is None:
            if input and self.stdin is None and not self._had_stdin:
                raise ValueError("the process has no stdin pipe (create it with stdin=True)")
            if self.stdin is not None:
                try:
                    self.stdin.flush()
                except OSError:
                    pass
            pipes = [None if f is None else _stdio.pipe_of(f) for f in (self.stdin, self.stdout, self.stderr)]
            comm = self._comm = _Communication(input, pipes[0], pipes[1], pipes[2], merge=self._merge_stderr)
            if comm.stdin is None:
                self.close_stdin(timeout=deadline.remaining())
        elif input:
            raise ValueError("cannot send input after communication has started")
        if comm.result is None:
            try:
                if _stdio.WINDOWS_IO:
                    self._communicate_threads(comm, deadline)
                else:
                    self._communicate_select(comm, deadline)
            except TimeoutExpiredError as err:
                err.output, err.stderr = comm.output()
                raise
            except ValueError:
                if self._closed:  # a pipe closed by close() from another thread
                    raise self._closed_error("communicate") from None
                raise
            comm.result = comm.output()
        # Output is drained; only now is the exit reported.
        self._wait_status(deadline)
        return comm.result

    def _communicate_timeout(self, deadline: Deadline) -> HcsError:
        return timeout_error(
            f"communicating with process {self.pid}",
            deadline,
            system_id=self.system_id,
            process_id=self.pid or None,
            still="it is still running: call communicate() again to go on reading, or kill() it",
        )

    def _input_done(self, comm: _Communication, deadline: Deadline) -> None:
        comm.stdin = None
        self.close_stdin(timeout=deadline.remaining())

    def _check_connection(self) -> None:
        """Raises ServiceDisconnectedError once the compute service is gone: the pipes of a
        process may then never reach EOF, and waiting out the timeout would tell nothing."""
        if self._hub.end_reason == END_DISCONNECTED or self.system._hub.end_reason == END_DISCONNECTED:
            raise make_error(
                _HCS_E_SERVICE_DISCONNECT,
                message="the connection to the compute service was lost while reading the process output",
                call="communicate",
                system_id=self.system_id,
                process_id=self.pid or None,
            )

    def _communicate_select(self, comm: _Communication, deadline: Deadline) -> None:
        """Readiness polling: one thread, no blocking call longer than a wait slice."""
        with _Selector() as sel:
            if comm.stdin is not None:
                sel.register(comm.stdin.fileno(), selectors.EVENT_WRITE, (comm.stdin, None))
            for pipe, sink in comm.outputs:
                sel.register(pipe.fileno(), selectors.EVENT_READ, (pipe, sink))
            while sel.get_map():
                self._check_connection()
                if deadline.expired():
                    raise self._communicate_timeout(deadline)
                # Every registered descriptor is pinned while it is polled and used: a close
                # from another thread cannot free (and the program then reuse) its number.
                held: list[PipeIO] = []
                try:
                    for key in list(sel.get_map().values()):
                        key.data[0].acquire()
                        held.append(key.data[0])
                    for key, _ in sel.select(deadline.slice()):
                        pipe, sink = key.data
                        if sink is None:
                            self._write_some(comm, pipe, sel, key.fd, deadline)
                            continue
                        data = pipe.read(_READ_CHUNK)
                        if data:
                            sink.append(data)
                        elif data is not None:
                            sel.unregister(key.fd)
                            self._close_std(pipe)
                finally:
                    for pipe in held:
                        pipe.release()

    def _write_some(
        self, comm: _Communication, pipe: PipeIO, sel: selectors.BaseSelector, fd: int, deadline: Deadline
    ) -> None:
        assert comm.input is not None
        try:
            n = pipe.write(comm.input[comm.offset : comm.offset + _PIPE_BUF])
            comm.offset += n or 0
        except BrokenPipeError:
            comm.offset = len(comm.input)  # the child closed its stdin
        if comm.offset >= len(comm.input):
            sel.unregister(fd)
            self._input_done(comm, deadline)

    def _close_std(self, pipe: PipeIO) -> None:
        for name in ("stdout", "stderr"):
            f = getattr(self, name)
            if f is not None and _stdio.pipe_of(f) is pipe:
                setattr(self, name, None)
        pipe.close()

    def _communicate_threads(self, comm: _Communication, deadline: Deadline) -> None:
        """The Windows strategy (pipes cannot be polled there): a blocking thread per pipe;
        this thread waits in slices, so Ctrl-C and ``math.inf`` both work, and every HCS call
        stays on the caller's thread."""
        if not comm.threads:

            def reader(pipe: PipeIO, sink: list[bytes]) -> None:
                try:
                    while data := pipe.read(_READ_CHUNK):
                        sink.append(data)
                except ValueError:
                    pass  # closed under us: the waiting thread reports that
                except BaseException as exc:
                    comm.failures.append(exc)

            def writer(pipe: PipeIO, data: memoryview) -> None:
                try:
                    pipe.write_all(data)
                except (BrokenPipeError, ValueError):
                    pass  # the child closed its stdin, or we were closed
                except BaseException as exc:
                    comm.failures.append(exc)

            for pipe, sink in comm.outputs:
                comm.threads.append(threading.Thread(target=reader, args=(pipe, sink), daemon=True,
                                                     name=f"pyhcs-read-{self.pid}"))
            if comm.stdin is not None and comm.input is not None:
                comm.writer = threading.Thread(target=writer, args=(comm.stdin, comm.input[comm.offset :]),
                                               daemon=True, name=f"pyhcs-write-{self.pid}")
                comm.threads.append(comm.writer)
            for t in comm.threads:
                t.start()
        while True:
            if comm.writer is not None and not comm.writer.is_alive():
                comm.writer = None
                if comm.input is not None:
                    comm.offset = len(comm.input)
                self._input_done(comm, deadline)
            alive = [t for t in comm.threads if t.is_alive()]
            if not alive:
                break
            if self._closed:
                raise self._closed_error("communicate")
            self._check_connection()
            if deadline.expired():
                raise self._communicate_timeout(deadline)
            alive[0].join(deadline.slice())
        if comm.failures:
            raise comm.failures[0]
        if self._closed:
            raise self._closed_error("communicate")
        for pipe, _ in comm.outputs:
            self._close_std(pipe)

    # -- control ----------------------------------------------------------------------------------
    def _submit(
        self, call: str, fn: Callable[..., None], doc: str | None, *, callback: bool, timeout: Timeout = DEFAULT
    ) -> Operation:
        if self._creation is not None:
            self.wait_started(timeout)
        op = Operation(
            call=call,
            system_id=self.system_id,
            process_id=self.pid or None,
            owner=self,
            callback=callback,
            default_timeout=self.default_timeout,
        )
        try:
            initiate(self, op, call, fn, doc)
        except BaseException:
            op.close()
            raise
        return op

    def _run(self, call: str, fn: Callable[..., None], doc: str | None, timeout: Timeout) -> str | None:
        deadline = Deadline(resolve_timeout(timeout, self.default_timeout))
        op = self._submit(call, fn, doc, callback=False, timeout=deadline.remaining())
        return complete(op, deadline)


    def signal(self, signal: int | str, *, timeout: Timeout = DEFAULT) -> bool:
        """HcsSignalProcess, with the signal in the form the guest takes (see
        :attr:`ComputeSystem.guest_os`): a Windows guest gets a Ctrl event name ("CtrlC",
        "CtrlBreak", "CtrlClose", "CtrlLogOff", "CtrlShutdown"; SIGINT, SIGQUIT, SIGHUP and
        SIGTERM map to them, other numbers raise InvalidArgumentError), a Linux guest a POSIX
        number (Ctrl names map to their POSIX twins). False if the process had exited."""
        return run(signal_flow(self, signal, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def terminate(self, *, timeout: Timeout = DEFAULT) -> bool:
        """HcsTerminateProcess on this handle (no signal document: it is the same call for
        every guest). False if the process had already exited."""
        return run(terminate_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def kill(self, *, timeout: Timeout = DEFAULT) -> bool:
        """Ends the process now; idempotent. False if it had already exited.

        Signals are serialized per process per system handle in HCS, so a kill could queue
        behind a slow Ctrl-C: like hcsshim, this terminates through freshly opened handles,
        falling back to this handle when they cannot be opened.
        """
        return run(kill_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def resize(self, height: int, width: int, *, timeout: Timeout = DEFAULT) -> None:
        """HcsModifyProcess ConsoleSize (processes created with ``console=True``)."""
        doc = to_json({"Operation": "ConsoleSize", "ConsoleSize": {"Height": int(height), "Width": int(width)}})
        self._run("HcsModifyProcess", _modify_process, doc, timeout)

    def modify(self, request: Document, *, timeout: Timeout = DEFAULT) -> None:
        """HcsModifyProcess with any ProcessModifyRequest."""
        self._run("HcsModifyProcess", _modify_process, to_json(request, "process modify request"), timeout)

    def properties(self, query: Document | None = None, *, timeout: Timeout = DEFAULT) -> dict[str, Any]:
        """HcsGetProcessProperties: the ProcessStatus (ProcessId, Exited, ExitCode, ...)."""
        return run(properties_flow(self, query, Deadline(resolve_timeout(timeout, self.default_timeout))))

    # -- events -----------------------------------------------------------------------------------
    def events(self, *, replay: bool = True, timeout: Timeout = DEFAULT) -> EventStream:
        """A blocking iterator over this process's events; ends after ProcessExited."""
        return EventStream(self._hub, replay=replay, timeout=resolve_timeout(timeout, self.default_timeout))

    def add_event_callback(self, fn: Callable[[Event], None], *, replay: bool = False) -> None:
        """Calls ``fn(event)`` for each event of this process on the dispatcher thread."""
        self._hub.add_callback(fn, replay)

    def remove_event_callback(self, fn: Callable[[Event], None]) -> None:
        self._hub.remove_callback(fn)

    # -- closing --------------------------------------------------------------------------------------
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        run(leave_flow(self, exc is not None))

    def _wake_waiters(self) -> None:
        self._hub.end(END_CLOSED)

    def _close_children(self) -> None:
        for name in ("stdin", "stdout", "stderr"):
            f = getattr(self, name)
            setattr(self, name, None)
            if f is not None:
                # Never blocks, even under a thread blocked in a read of this pipe; the
                # descriptor is freed only once that read returned. Unflushed stdin data
                # is dropped (flush or close_stdin() first to deliver it).
                _stdio.close_file(f)
        creation = self._creation
        if creation is not None:
            self._creation = None
            creation.close()

    def _close_native(self) -> None:
        try:
            B.hcs_set_process_callback(self._handle, 0, 0, None)
        except HcsError:
            _log.log.debug("pyhcs: unregistering the callback of %r failed", self, exc_info=True)
        B.hcs_close_process(self._handle)
        self._hub.unregister()


class _FreshProcess(Handle):
    """A second, short-lived process handle (for kill); closed by its creator."""

    _kind = "process"

    def __init__(self, handle: int, system_id: str, pid: int) -> None:
        super().__init__(handle)
        self._system_id = system_id
        self._pid = pid
        self._closed = True  # the creator closes the native handle; nothing for __del__

    def _context(self) -> tuple[str | None, int | None]:
        return self._system_id, self._pid

    def _acquire(self, call: str | None = None) -> int:
        return self._handle

    def _release(self) -> None:
        pass

    def _submit(self, call: str, fn: Callable[..., None], doc: str | None, *, callback: bool) -> Operation:
        op = Operation(call=call, system_id=self._system_id, process_id=self._pid, callback=callback)
        try:
            initiate(self, op, call, fn, doc)
        except BaseException:
            op.close()
            raise
        return op

    def _run(self, call: str, fn: Callable[..., None], doc: str | None, timeout: float) -> str | None:
        return complete(self._submit(call, fn, doc, callback=False), timeout)


def _get_process_info(handle: int, op: int) -> None:
    B.hcs_get_process_info(handle, op)


def _signal_process(handle: int, op: int, doc: str | None) -> None:
    B.hcs_signal_process(handle, op, doc)


def _terminate_process(handle: int, op: int, doc: str | None) -> None:
    B.hcs_terminate_process(handle, op, doc)


def _modify_process(handle: int, op: int, doc: str | None) -> None:
    B.hcs_modify_process(handle, op, doc or "")


def _process_properties(handle: int, op: int, doc: str | None) -> None:
    B.hcs_get_process_properties(handle, op, doc)



# ------------------------------------------------------------------------------------------- flows
# The compound calls, written once as steps (see pyhcs._flow); the methods above run them with
# the blocking driver, pyhcs.aio with its own.

_CLOSE_STDIN = '{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}'


def action(proc: Process, call: str, fn: Callable[..., None], doc: str | None, deadline: Deadline) -> Flow[str | None]:
    """One operation-based call on ``proc`` (after its pending creation, if any)."""
    yield from wait_started_flow(proc, deadline)
    result: str | None = yield Action(
        lambda timeout: proc._run(call, fn, doc, timeout),
        lambda: proc._submit(call, fn, doc, callback=True),
        deadline,
    )
    return result


def properties_flow(proc: Process, query: Document | None, deadline: Deadline) -> Flow[dict[str, Any]]:
    doc = yield from action(proc, "HcsGetProcessProperties", _process_properties, to_json(query, "property query"),
                            deadline)
    value = loads(doc)
    if not is_json_object(value):
        raise make_error(
            _E_UNEXPECTED,
            message="HcsGetProcessProperties succeeded but returned no document",
            call="HcsGetProcessProperties",
            system_id=proc.system_id,
            process_id=proc.pid or None,
        )
    return value


def resize_flow(proc: Process, height: int, width: int, deadline: Deadline) -> Flow[None]:
    doc = to_json({"Operation": "ConsoleSize", "ConsoleSize": {"Height": int(height), "Width": int(width)}})
    yield from action(proc, "HcsModifyProcess", _modify_process, doc, deadline)


def poll_exit_flow(proc: Process) -> Flow[None]:
    """Records an exit that happened before the callback could see it (a zero wait)."""
    try:
        doc = yield Call(lambda: proc._native("HcsWaitForProcessExit", B.hcs_wait_for_process_exit, 0))
    except HcsError as err:
        proc._exit_polled(None, err)
        return
    proc._exit_polled(doc, None)


def process_info_flow(proc: Process, deadline: Deadline) -> Flow[HcsProcessInformation]:
    """HcsGetProcessInfo: the process information (with new handles to its pipes)."""
    call = "HcsGetProcessInfo"
    op = Operation(call=call, system_id=proc.system_id, process_id=proc.pid or None, owner=proc, process_info=True)
    try:
        initiate(proc, op, call, _get_process_info)
        yield OperationWait(op, deadline)
        op.result(0)
        pi = op.take_process_info()
    finally:
        op.close()
    if pi is None:
        raise make_error(_E_UNEXPECTED, message="HcsGetProcessInfo returned no process information", call=call)
    return pi


def started_flow(proc: Process, pi: HcsProcessInformation) -> Flow[None]:
    """Takes ownership of the pipes, then looks whether the process already exited."""
    proc._take_pipes(pi)
    yield from poll_exit_flow(proc)


def wait_started_flow(proc: Process, deadline: Deadline) -> Flow[None]:
    """Waits for a pending creation, then takes the pid and pipes; on a timeout the error
    carries the process (``err.process``)."""
    op = proc._creation
    if op is None:
        return
    try:
        yield OperationWait(op, deadline)
    except TimeoutExpiredError as err:
        if err.operation is op and not op._done:
            err.process = proc
        raise
    if proc._creation is not op:
        return  # another waiter took it over meanwhile
    proc._creation = None
    failure = op.exception(0)
    try:
        if failure is None:
            pi = op.take_process_info()
            if pi is None:
                raise make_error(
                    _E_UNEXPECTED,
                    message="HcsCreateProcess returned no process information",
                    call="HcsCreateProcess",
                    system_id=proc.system_id,
                )
        else:
            # A Windows Server 2022 quirk: the wait can fail spuriously although the process
            # exists; only then ask HcsGetProcessInfo, whose answer is authoritative.
            try:
                pi = yield from process_info_flow(proc, Deadline(resolve_timeout(DEFAULT, proc.default_timeout)))
            except HcsError:
                raise failure from None
            _log.log.info("pyhcs: HcsCreateProcess reported %s but the process exists; recovered", failure.name)
        yield from started_flow(proc, pi)
    except BaseException:
        op.close()
        yield Call(proc.close)
        raise
    op.close()


def open_flow(system: ComputeSystem, pid: int, *, stdio: bool, bufsize: int) -> Flow[Process]:
    """HcsOpenProcess by pid; ``stdio``: HcsGetProcessInfo for new pipe handles too."""

    def open_process() -> Process:
        handle: int = system._native("HcsOpenProcess", B.hcs_open_process, pid)
        return Process._adopt(handle, system, pid=pid, bufsize=bufsize)

    proc: Process = yield Call(open_process, discard=Process.close)
    try:
        if stdio:
            pi = yield from process_info_flow(proc, Deadline(resolve_timeout(DEFAULT, proc.default_timeout)))
            yield from started_flow(proc, pi)
        else:
            yield from poll_exit_flow(proc)
    except BaseException:
        yield Call(proc.close)
        raise
    return proc


def wait_status_flow(proc: Process, deadline: Deadline) -> Flow[ExitStatus]:
    """Waits for the exit; the status, or the error HCS gave in place of one."""
    yield from wait_started_flow(proc, deadline)
    yield EventWait(proc._hub, proc._exit_ready, deadline, f"waiting for process {proc.pid} to exit")
    if proc._needs_exit_poll():
        yield from poll_exit_flow(proc)
    status = proc._exit_outcome()
    if status is None:  # pragma: no cover - the wait returned, so it is ready
        raise timeout_error(f"waiting for process {proc.pid} to exit", deadline, system_id=proc.system_id,
                            process_id=proc.pid or None, still="it is still running")
    return status


def close_stdin_flow(proc: Process, deadline: Deadline) -> Flow[None]:
    """Sends HcsModifyProcess CloseHandle/StdIn once (the pipe itself is closed by the
    caller): the child sees EOF. Fine after the exit."""
    if not proc._had_stdin or proc._hub.exit is not None or proc._closed:
        return
    proc._had_stdin = False
    try:
        yield from action(proc, "HcsModifyProcess", _modify_process, _CLOSE_STDIN, deadline)
    except HcsError as err:
        if not is_already_stopped(err):
            raise


#: How long a refusal that may only mean "already exited" waits for the exit to show.
_EXIT_SHOW_GRACE = 5.0


def benign_flow(proc: Process, err: HcsError, deadline: Deadline) -> Flow[bool]:
    """Whether a failed signal/terminate only says the process is already gone."""
    if is_already_stopped(err):
        return True
    if isinstance(err, Win32AccessDeniedError):
        # TerminateProcess on an exited process is access denied on Windows; make sure that is
        # what happened before calling it benign. The exit can reach this handle a moment after
        # the refusal (HCS reports an exit to waits once its event went out), so it is awaited
        # briefly, within the caller's deadline.
        if proc._hub.exit is None:
            yield from poll_exit_flow(proc)
        if proc._hub.exit is None and proc._hub.failure is None:
            grace = Deadline(min(_EXIT_SHOW_GRACE, deadline.remaining()))
            try:
                yield EventWait(proc._hub, proc._exit_ready, grace, f"waiting for process {proc.pid} to exit")
            except TimeoutExpiredError:
                pass  # still running: the refusal was a real one
        return proc._hub.exit is not None or proc._hub.failure is not None
    return False


def signal_flow(proc: Process, signal: int | str, deadline: Deadline) -> Flow[bool]:
    proc._ensure_open("HcsSignalProcess")
    if proc._hub.exit is not None:
        return False
    with reports_timeout(deadline):
        guest = yield from proc.system._guest_os_flow(deadline)
        doc = to_json({"Signal": signal_value(signal, guest)})
        try:
            yield from action(proc, "HcsSignalProcess", _signal_process, doc, deadline)
        except HcsError as err:
            if (yield from benign_flow(proc, err, deadline)):
                return False
            raise
        return True


def terminate_flow(proc: Process, deadline: Deadline) -> Flow[bool]:
    proc._ensure_open("HcsTerminateProcess")
    if proc._hub.exit is not None:
        return False
    try:
        yield from action(proc, "HcsTerminateProcess", _terminate_process, None, deadline)
    except HcsError as err:
        if (yield from benign_flow(proc, err, deadline)):
            return False
        raise
    return True


def kill_flow(proc: Process, deadline: Deadline) -> Flow[bool]:
    """Terminates through freshly opened handles (see :meth:`Process.kill`)."""
    proc._ensure_open("HcsTerminateProcess")
    if proc._hub.exit is not None:
        return False
    with reports_timeout(deadline):
        yield from wait_started_flow(proc, deadline)
        system_id, pid = proc.system_id, proc.pid
        try:
            fresh_system: int = yield Call(
                lambda: _log.timed("HcsOpenComputeSystem", proc._detail, B.hcs_open_compute_system, system_id),
                discard=B.hcs_close_compute_system,
            )
        except HcsError:
            return (yield from terminate_flow(proc, deadline))
        fresh = 0

        def close_fresh() -> None:
            if fresh:
                B.hcs_close_process(fresh)
            B.hcs_close_compute_system(fresh_system)

        deferred = False
        try:
            try:
                fresh = yield Call(
                    lambda: _log.timed("HcsOpenProcess", proc._detail, B.hcs_open_process, fresh_system, pid),
                    discard=B.hcs_close_process,
                )
            except HcsError as err:
                if is_already_stopped(err):
                    return False
                return (yield from terminate_flow(proc, deadline))
            helper = _FreshProcess(fresh, system_id, pid)
            try:
                yield Action(
                    lambda timeout: helper._run("HcsTerminateProcess", _terminate_process, None, timeout),
                    lambda: helper._submit("HcsTerminateProcess", _terminate_process, None, callback=True),
                    deadline,
                )
            except OperationTimeoutError as err:
                op = err.operation
                if isinstance(op, Operation) and not op._done:
                    # The terminate is still running on the fresh handles: they are closed
                    # once it completes, never under it.
                    op.add_done_callback(lambda _op: close_fresh())
                    deferred = True
                raise
            except HcsError as err:
                if (yield from benign_flow(proc, proc._annotate(err), deadline)):
                    return False
                raise
            return True
        finally:
            if not deferred:
                close_fresh()


def leave_flow(proc: Process, failed: bool) -> Flow[None]:
    """Leaving a ``with`` block: kill the process if it was left by an exception, close."""
    try:
        if failed and not proc._closed and proc._hub.exit is None and proc._creation is None:
            try:
                yield from kill_flow(proc, Deadline(resolve_timeout(DEFAULT, proc.default_timeout)))
            except Exception:
                _log.log.debug("pyhcs: killing %r on error failed", proc, exc_info=True)
    finally:
        yield Call(proc.close)
