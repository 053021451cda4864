"""Compute systems as objects: :class:`ComputeSystem`.

::

    config = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "me", "Container": {}}
    with ComputeSystem.create("demo", config) as system:
        system.start()
        result = system.run(["echo", "hello"])
        print(result.stdout)             # b'hello\\n'
        system.stop(grace=10)            # shutdown, then terminate if it does not stop

What the object guarantees:

* The handle cannot leak: ``with`` closes it, ``close()`` is idempotent, ``__del__`` closes a
  forgotten one (with a ResourceWarning), and systems created here get
  ``ShouldTerminateOnLastHandleClosed: true`` unless the configuration says otherwise, so the
  last close also ends the system. A ``with`` block left by an exception terminates the system
  it created.
* Every wait has a timeout, honoured on every path: ``timeout=`` per call, else
  ``system.default_timeout``, else ``pyhcs.DEFAULT_TIMEOUT`` (env ``PYHCS_TIMEOUT``, 240 s).
  ``timeout=None`` waits without a limit, as in subprocess and asyncio (still interruptible
  by Ctrl-C and close()).
* Errors say what failed: the HRESULT's class (``errors.InvalidStateError``...), the call, the
  system id, HCS's own message and ErrorEvents.
* Events are registered before anything can happen, so no exit is missed.

A ComputeSystem may be used from several threads at once.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _flow, _log
from ._docs import Document, check_document, compute_system_config, loads, to_json
from ._flow import Action, Call, Communicate, EventWait, Flow, OperationWait
from ._guest import GuestOs, check_guest_os, guest_of_config, guest_of_properties
from ._handle import DEFAULT, Deadline, Handle, Timeout, reports_timeout, resolve_timeout, timeout_error
from ._native import _backend as B
from ._runopts import DEVNULL, NOT_GIVEN, NotGiven, RunPlan, Stdio, pipe_flag, plan_run
from .errors import (
    HcsError,
    OperationTimeoutError,
    SystemNotFoundError,
    TimeoutExpiredError,
    is_already_stopped,
    is_json_array,
    is_json_object,
    is_timeout,
    make_error,
)
from .events import END_CLOSED, END_DISCONNECTED, Event, EventHub, EventStream, SystemExitStatus, dispatch_event
from .operation import Operation, begin, complete, initiate, run
from .process import (
    CompletedProcess,
    Process,
    close_stdin_flow,
    kill_flow,
    open_flow,
    process_parameters,
    wait_started_flow,
    wait_status_flow,
)

if TYPE_CHECKING:
    import os

__all__ = ["ComputeSystem"]

_E_UNEXPECTED = 0x8000FFFF
_HCS_E_SERVICE_DISCONNECT = 0x8037011E
#: Seconds run() gives the kill of a process that ran out of time, whatever was left: the
#: process must not outlive the call.
_KILL_GRACE = 1.0


def _modify(handle: int, op: int, doc: str | None) -> None:
    B.hcs_modify_compute_system(handle, op, doc or "")


#: action -> (HCS function name, backend function taking (system, operation, document))
_ACTIONS: dict[str, tuple[str, Callable[[int, int, str | None], None]]] = {
    "start": ("HcsStartComputeSystem", lambda h, o, d: B.hcs_start_compute_system(h, o, d)),
    "shutdown": ("HcsShutDownComputeSystem", lambda h, o, d: B.hcs_shut_down_compute_system(h, o, d)),
    "terminate": ("HcsTerminateComputeSystem", lambda h, o, d: B.hcs_terminate_compute_system(h, o, d)),
    "crash": ("HcsCrashComputeSystem", lambda h, o, d: B.hcs_crash_compute_system(h, o, d)),
    "pause": ("HcsPauseComputeSystem", lambda h, o, d: B.hcs_pause_compute_system(h, o, d)),
    "resume": ("HcsResumeComputeSystem", lambda h, o, d: B.hcs_resume_compute_system(h, o, d)),
    "save": ("HcsSaveComputeSystem", lambda h, o, d: B.hcs_save_compute_system(h, o, d)),
    "properties": ("HcsGetComputeSystemProperties", lambda h, o, d: B.hcs_get_compute_system_properties(h, o, d)),
    "modify": ("HcsModifyComputeSystem", _modify),
}


def _create_process(handle: int, op: int, params: str) -> int:
    process: int = B.hcs_create_process(handle, params, op)
    return process


def _property_query(types: Sequence[str], query: Document | None) -> Document | None:
    if query is not None:
        if types:
            raise TypeError("pass property types or query=, not both")
        return query
    return {"PropertyTypes": list(types)} if types else None


def parse_properties(doc: str | None, call: str, system_id: str | None) -> dict[str, Any]:
    """The Properties document of a successful query (HCS documents one: none is an error)."""
    value = loads(doc)
    if not is_json_object(value):
        raise make_error(
            _E_UNEXPECTED,
            message=f"{call} succeeded but returned {'no document' if value is None else 'a non-object'}",
            call=call,
            system_id=system_id,
        )
    return value


def parse_enumeration(doc: str | None) -> list[dict[str, Any]]:
    value = loads(doc)
    if value is None:
        return []
    if not is_json_array(value):
        raise make_error(
            _E_UNEXPECTED, message="HcsEnumerateComputeSystems returned a non-array", call="HcsEnumerateComputeSystems"
        )
    return [item for item in value if is_json_object(item)]


def enumeration_query(
    query: Document | None,
    ids: Sequence[str] | None,
    names: Sequence[str] | None,
    types: Sequence[str] | None,
    owners: Sequence[str] | None,
) -> str | None:
    filters = {"Ids": ids, "Names": names, "Types": types, "Owners": owners}
    given = {k: list(v) for k, v in filters.items() if v is not None}
    if query is not None:
        if given:
            raise TypeError("pass query= or the ids/names/types/owners filters, not both")
        return to_json(query, "system query")
    return json.dumps(given) if given else None


class ComputeSystem(Handle):
    """An HCS compute system (HCS_SYSTEM handle). Create with :meth:`create`, open with
    :meth:`open`; do not construct directly.

    Attributes
    ----------
    id: str
        The compute system id.
    default_timeout: float | None | pyhcs.DEFAULT
        Timeout of this system's waits when ``timeout=`` is not given (``pyhcs.DEFAULT``:
        ``pyhcs.DEFAULT_TIMEOUT``; None: no limit). Processes created here inherit it.
    guest_os: "windows" | "linux"
        The kind of guest its processes run in, which decides how argument lists and
        signals are sent (see :attr:`guest_os`).
    """

    _kind = "compute system"

    def __init__(
        self, handle: int, id: str, *, created: bool, default_timeout: Timeout = DEFAULT,
        guest_os: GuestOs | None = None, hosting_id: str | None = None,
    ) -> None:
        super().__init__(handle)
        self.id = id
        self.default_timeout = default_timeout
        self._created = created
        self._guest: GuestOs | None = guest_os
        self._hosting_id = hosting_id
        self._creation: Operation | None = None
        self._hub = EventHub("system", id)
        self._children: weakref.WeakSet[Process] = weakref.WeakSet()
        key = self._hub.register()
        try:
            # Before anything else (in particular before Start): no exit can be missed.
            self._native("HcsSetComputeSystemCallback", B.hcs_set_compute_system_callback, 0, key, dispatch_event)
        except BaseException:
            self._hub.unregister()
            self._closed = True  # nothing for __del__ to do: the caller closes the handle
            raise

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def _adopt(
        cls, handle: int, id: str, *, created: bool, default_timeout: Timeout,
        guest_os: GuestOs | None = None, hosting_id: str | None = None,
    ) -> ComputeSystem:
        try:
            return cls(handle, id, created=created, default_timeout=default_timeout, guest_os=guest_os,
                       hosting_id=hosting_id)
        except BaseException:
            B.hcs_close_compute_system(handle)
            raise

    @classmethod
    def _begin_create(
        cls, id: str, config: Document, *, callback: bool, default_timeout: Timeout,
        guest_os: str | None = None, strict: bool = True,
    ) -> ComputeSystem:
        guest = check_guest_os(guest_os)
        text = compute_system_config(config, strict=False)  # checked below, as text
        hosting: str | None = None
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None  # HCS reports what is wrong with it
        if is_json_object(parsed):
            if strict:
                check_document(text, "config", system_id=id)
            if guest is None:
                guest = guest_of_config(parsed)
            host = parsed.get("HostingSystemId")
            hosting = host if isinstance(host, str) and host else None
        call = "HcsCreateComputeSystem"
        op = Operation(call=call, system_id=id, callback=callback, default_timeout=default_timeout)
        try:
            op_handle = op._acquire(call)
            try:
                handle: int = _log.timed(call, f"system {id!r}", B.hcs_create_compute_system, id, text, op_handle)
            finally:
                op._release()
        except HcsError as err:
            op.close()
            if err.system_id is None:
                err.system_id = id
            raise
        except BaseException:
            op.close()
            raise
        try:
            system = cls._adopt(handle, id, created=True, default_timeout=default_timeout, guest_os=guest,
                                hosting_id=hosting)
        except BaseException:
            op.close()
            raise
        system._creation = op
        return system

    @classmethod
    def create(
        cls,
        id: str,
        config: Document,
        *,
        timeout: Timeout = DEFAULT,
        default_timeout: Timeout = DEFAULT,
        guest_os: str | None = None,
        strict: bool = True,
    ) -> ComputeSystem:
        """HcsCreateComputeSystem: creates the system ``id`` (state Created) and waits for it.

        ``config`` is a ``pyhcs.schema.ComputeSystem`` model, a dict or JSON text;
        ``ShouldTerminateOnLastHandleClosed`` defaults to true. ``guest_os`` ("windows" or
        "linux") overrides what the configuration says about the guest (see
        :attr:`guest_os`). Raises ``errors.SystemAlreadyExistsError`` (a FileExistsError)
        when the id is taken, ``errors.InvalidJsonError`` for a bad configuration: before
        anything is sent, the configuration (model, dict or JSON text) is validated strictly
        against ``pyhcs.schema``, so a misspelt member (``"Ownr"``) is an error naming it and
        the close match; ``strict=False`` sends members newer than the schema. On a
        timeout the error carries the half-created system as ``err.system``
        (``err.system.wait_created()`` to go on).
        """
        return _flow.run(create_flow(id, config, timeout=timeout, default_timeout=default_timeout,
                                     guest_os=guest_os, strict=strict))

    def wait_created(self, timeout: Timeout = DEFAULT) -> None:
        """Waits for a pending creation (only needed after a create timed out)."""
        if self._creation is not None:
            _flow.run(wait_created_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def _ensure_created(self, timeout: Timeout = DEFAULT) -> None:
        # A call on a half-created system (the one a timed-out create hands over) first
        # waits for the creation, within the call's own timeout.
        if self._creation is not None:
            self.wait_created(timeout)

    @classmethod
    def open(cls, id: str, *, default_timeout: Timeout = DEFAULT, guest_os: str | None = None) -> ComputeSystem:
        """HcsOpenComputeSystem: a new handle to an existing system (any process may have
        created it). Raises ``errors.SystemNotFoundError`` (a FileNotFoundError).

        ``guest_os`` ("windows" or "linux") says which guest it is; without it pyhcs asks
        the system the first time it matters (see :attr:`guest_os`)."""
        guest = check_guest_os(guest_os)
        handle: int = _log.timed("HcsOpenComputeSystem", f"system {id!r}", B.hcs_open_compute_system, id)
        system = cls._adopt(handle, id, created=False, default_timeout=default_timeout, guest_os=guest)
        try:
            system._poll_exit()
        except BaseException:
            system.close()
            raise
        return system

    def _poll_exit(self) -> None:
        """Records the exit of a system that stopped before our callback was registered."""
        try:
            doc = self._native("HcsWaitForComputeSystemExit", B.hcs_wait_for_compute_system_exit, 0)
        except HcsError as err:
            if not is_timeout(err):
                _log.log.debug("pyhcs: exit poll of system %r failed: %s", self.id, err)
            return
        self._hub.set_exit(SystemExitStatus.from_document(doc, "wait"))

    @staticmethod
    def enumerate(
        query: Document | None = None,
        *,
        ids: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        owners: Sequence[str] | None = None,
        timeout: Timeout = DEFAULT,
    ) -> list[dict[str, Any]]:
        """HcsEnumerateComputeSystems: the basic properties of every matching system.

        Either a ``SystemQuery`` document or the ``ids``/``names``/``types``/``owners`` filters.
        """
        text = enumeration_query(query, ids, names, types, owners)
        op = begin_enumerate(text, callback=False)
        return parse_enumeration(complete(op, timeout))

    # -- description ------------------------------------------------------------------------------
    def _context(self) -> tuple[str | None, int | None]:
        return self.id, None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "exited" if self._hub.exit is not None else "open"
        return f"<pyhcs.ComputeSystem {self.id!r} {state}>"

    # -- operations -------------------------------------------------------------------------------
    def submit(self, action: str, document: Document | None = None, *, callback: bool = False) -> Operation:
        """Starts an action and returns its :class:`Operation` without waiting; you own it.

        ``action`` is one of start, shutdown, terminate, crash, pause, resume, save,
        properties, modify. ``callback=True`` makes it awaitable without blocking.
        """
        return self._submit(action, document, callback=callback, timeout=DEFAULT)

    def _submit(self, action: str, document: Document | None, *, callback: bool, timeout: Timeout) -> Operation:
        self._ensure_created(timeout)
        try:
            call, fn = _ACTIONS[action]
        except KeyError:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(_ACTIONS)}") from None
        text = to_json(document, f"{action} document")
        op = Operation(call=call, system_id=self.id, owner=self, callback=callback, default_timeout=self.default_timeout)
        try:
            initiate(self, op, call, fn, text)
        except BaseException:
            op.close()
            raise
        return op

    def _begin(self, action: str, document: Document | None) -> tuple[Operation | None, str | None]:
        """Starts ``action`` for pyhcs.aio: see :func:`pyhcs.operation.begin`."""
        self._ensure_created(DEFAULT)
        try:
            call, fn = _ACTIONS[action]
        except KeyError:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(_ACTIONS)}") from None
        text = to_json(document, f"{action} document")
        return begin(self, call, fn, text, system_id=self.id, default_timeout=self.default_timeout)

    def _run(self, action: str, document: Document | None, timeout: Timeout) -> str | None:
        deadline = Deadline(resolve_timeout(timeout, self.default_timeout))
        if self._creation is not None:
            self._ensure_created(deadline.remaining())
        try:
            call, fn = _ACTIONS[action]
        except KeyError:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(_ACTIONS)}") from None
        text = to_json(document, f"{action} document")
        return run(self, call, fn, text, deadline, system_id=self.id, default_timeout=self.default_timeout)

    def start(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        """HcsStartComputeSystem: Created -> Running. ``errors.InvalidStateError`` otherwise."""
        self._run("start", options, timeout)

    def shutdown(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> bool:
        """HcsShutDownComputeSystem: asks the guest to shut down and waits until it has.

        Returns False when the system had already stopped (not an error: shutdown is
        idempotent), True otherwise. ``options``: ShutdownOptions (schema 2.5). Raises
        ``errors.InvalidStateError`` for a Created or Paused system. See :meth:`stop` for a
        shutdown that cannot hang.
        """
        return _flow.run(end_flow(self, "shutdown", options, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def terminate(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> bool:
        """HcsTerminateComputeSystem: forced power-off. False if it had already stopped."""
        return _flow.run(end_flow(self, "terminate", options, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def crash(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        """HcsCrashComputeSystem: makes the guest crash (CrashInitiated/CrashReport events,
        then the system exits with ExitType UnexpectedExit). ``options``: CrashOptions."""
        self._run("crash", options, timeout)

    def pause(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        """HcsPauseComputeSystem: Running -> Paused. ``options``: PauseOptions."""
        self._run("pause", options, timeout)

    def resume(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        """HcsResumeComputeSystem: Paused -> Running."""
        self._run("resume", options, timeout)

    def save(self, options: Document, *, timeout: Timeout = DEFAULT) -> None:
        """HcsSaveComputeSystem: ``options`` is SaveOptions, e.g.
        ``{"SaveType": "ToFile", "SaveStateFilePath": "/path/x.vmrs"}``. The system must be
        paused first (``errors.InvalidStateError`` otherwise)."""
        self._run("save", options, timeout)

    def properties(self, *types: str, query: Document | None = None, timeout: Timeout = DEFAULT) -> dict[str, Any]:
        """HcsGetComputeSystemProperties: the basic properties plus the requested ``types``
        ("Statistics", "ProcessList", "Memory", ...), or a full ``query=`` document."""
        doc = self._run("properties", _property_query(types, query), timeout)
        return parse_properties(doc, "HcsGetComputeSystemProperties", self.id)

    @property
    def state(self) -> str:
        """The ``State`` property: Created, Running, Paused, Stopped, SavedAsTemplate."""
        return str(self.properties().get("State", "Unknown"))

    @property
    def guest_os(self) -> GuestOs:
        """``"windows"`` or ``"linux"``: the kind of guest this system's processes run in.

        It decides what pyhcs sends: an argument list becomes a ``CommandLine`` quoted by the
        Windows rules for a Windows guest and ``CommandArgs`` for a Linux one; signals are
        Ctrl event names for Windows, POSIX numbers for Linux. The rule: ``guest_os=`` given
        to :meth:`create`/:meth:`open` wins. Else a system hosted by another
        (``HostingSystemId``) has its host's guest, unless its document is hcsshim's LCOW
        shape (``OciSpecification``/``OciBundlePath``, Linux); a ``Container`` (process- or
        Hyper-V-isolated Windows container) is Windows; a ``VirtualMachine`` is Linux when it
        boots ``LinuxKernelDirect``, else Windows. A system opened by id is asked for its
        ``RuntimeOsType`` (its host's if it is hosted); Windows when nothing says otherwise.
        Asking HCS (opened or hosted systems) happens once, and may raise its errors.
        """
        return self._guest_os()

    def _guest_os_flow(self, deadline: Deadline) -> Flow[GuestOs]:
        # for the flows of pyhcs.process, which does not import this module
        return guest_os_flow(self, deadline)

    def _guest_os(self, timeout: Timeout = DEFAULT) -> GuestOs:
        if self._guest is not None:
            return self._guest
        return _flow.run(guest_os_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def modify(self, request: Document, *, timeout: Timeout = DEFAULT, strict: bool = True) -> None:
        """HcsModifyComputeSystem with a ModifySettingRequest (model, dict or JSON text),
        validated strictly first (its ``Settings`` typed by its ``ResourcePath``): an unknown
        member is an ``errors.InvalidJsonError`` naming it; ``strict=False`` opts out."""
        text = to_json(request, "modify request", strict=False)
        if strict and text is not None:
            check_document(text, "modify", system_id=self.id)
        self._run("modify", text, timeout)

    # -- exit -------------------------------------------------------------------------------------
    @property
    def exit_status(self) -> SystemExitStatus | None:
        """How the system exited, once it has (else None). Does not block."""
        status = self._hub.exit
        return status if isinstance(status, SystemExitStatus) else None

    def _exit_ready(self) -> bool:
        hub = self._hub
        return hub.exit is not None or hub.end_reason is not None or hub.closed

    def _exit_outcome(self) -> SystemExitStatus | None:
        """The exit if known; raises for a stream that ended without one; None if pending."""
        hub = self._hub
        if isinstance(hub.exit, SystemExitStatus):
            return hub.exit
        if hub.end_reason == END_DISCONNECTED:
            raise make_error(
                _HCS_E_SERVICE_DISCONNECT,
                message="the connection to the compute service was lost before the system exited",
                call="HcsWaitForComputeSystemExit",
                system_id=self.id,
            )
        if hub.closed or self._closed:
            raise self._closed_error("wait_exit")
        return None

    def wait_exit(self, timeout: Timeout = DEFAULT) -> SystemExitStatus:
        """Waits until the system has exited and returns how (:class:`SystemExitStatus`).

        Raises OperationTimeoutError (the system keeps running), ServiceDisconnectedError if
        the service went away first, HandleClosedError if the object is closed meanwhile.
        """
        return _flow.run(wait_exit_flow(self, Deadline(resolve_timeout(timeout, self.default_timeout))))

    def stop(
        self, grace: float = 30.0, *, options: Document | None = None, timeout: Timeout = DEFAULT
    ) -> SystemExitStatus:
        """Stops the system whatever it takes, within bounds (a guest that ignores the shutdown
        is terminated).

        Shutdown, wait up to ``grace`` seconds for the exit, then Terminate and wait for the
        exit (``timeout`` bounds the whole). A system that is Created or Paused (which cannot
        shut down) is terminated at once; one that already stopped is fine. Each step is
        logged. Returns the exit status; raises the terminate's error if even that fails.
        """
        return _flow.run(stop_flow(self, grace, options, Deadline(resolve_timeout(timeout, self.default_timeout))))

    # -- processes -----------------------------------------------------------------------------------
    def _begin_process(self, params: str, *, callback: bool, bufsize: int, timeout: Timeout = DEFAULT) -> Process:
        self._ensure_created(timeout)
        call = "HcsCreateProcess"
        op = Operation(
            call=call,
            system_id=self.id,
            owner=self,
            process_info=True,
            callback=callback,
            default_timeout=self.default_timeout,
        )
        try:
            handle: int = initiate(self, op, call, _create_process, params)
        except BaseException:
            op.close()
            raise
        try:
            proc = Process._adopt(handle, self, creation=op, bufsize=bufsize)
        except BaseException:
            op.close()
            raise
        return proc

    def _add_child(self, proc: Process) -> None:
        with self._lock:
            if self._closed:
                raise self._closed_error("HcsCreateProcess")
            self._children.add(proc)
        self._hub.children.add(proc._hub)

    def create_process(
        self,
        command: str | Sequence[str] | None = None,
        *,
        params: Document | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdin: Stdio | bool = None,
        stdout: Stdio | bool = None,
        stderr: Stdio | bool = None,
        console: bool | None = None,
        console_size: tuple[int, int] | None = None,
        bufsize: int = -1,
        timeout: Timeout = DEFAULT,
    ) -> Process:
        """HcsCreateProcess: starts a process in the (running) system.

        ``command`` is a command line (str, sent as ``CommandLine`` unchanged) or an argument
        list, sent as the guest takes it (:attr:`guest_os`): a ``CommandLine`` that a Windows
        guest splits back into exactly these arguments, or ``CommandArgs`` for a Linux guest.
        ``params`` is a ProcessParameters document the other arguments add to.
        ``stdin``/``stdout``/``stderr`` take ``PIPE`` (or True) for a pipe, which becomes a
        binary file object (``process.stdout.read()``), None (or False) for none, and
        ``DEVNULL``: no pipe for the output (what the guest writes there is discarded), an
        already closed one for stdin (the child reads EOF). Files and ``STDOUT`` are for
        :meth:`run`.

        Raises ``errors.Win32FileNotFoundError`` for a missing program,
        ``errors.InvalidStateError`` when the system is not running. On a timeout the error
        carries the process as ``err.process``.
        """
        return _flow.run(create_process_flow(
            self, command, params=params, cwd=cwd, env=env, user=user, stdin=stdin, stdout=stdout, stderr=stderr,
            console=console, console_size=console_size, bufsize=bufsize,
            deadline=Deadline(resolve_timeout(timeout, self.default_timeout)),
        ))

    def run(
        self,
        command: str | Sequence[str],
        *,
        input: bytes | str | None = None,
        capture_output: bool | None = None,
        stdin: Stdio | bool = None,
        stdout: Stdio | bool | NotGiven = NOT_GIVEN,
        stderr: Stdio | bool | NotGiven = NOT_GIVEN,
        text: bool | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        params: Document | None = None,
        timeout: Timeout = DEFAULT,
        check: bool = False,
    ) -> CompletedProcess:
        """Runs a command to completion, like :func:`subprocess.run`, with its options.

        Both outputs are captured unless ``capture_output=False`` or ``stdout=``/``stderr=``
        are given (then, as in subprocess, the one not given is not captured); each takes ``PIPE`` (captured), ``DEVNULL`` or None (no pipe: HCS has no
        handle to inherit, so what the guest writes there is discarded), a file object
        (written when the process ends), and ``stderr=STDOUT`` reads both into ``stdout`` in
        the order the chunks arrive. ``input=`` (or ``stdin=`` a file object, read at once;
        ``PIPE``/``DEVNULL``: empty) is sent and stdin closed. ``text=True``, ``encoding=``
        or ``errors=`` decode the output (universal newlines) and encode a str input.
        The constants are :mod:`subprocess`' own (``pyhcs.PIPE is subprocess.PIPE``).

        Output is drained before the exit is reported. Whatever happens, run() leaves nothing
        open: on a timeout it kills the process, closes it and raises
        :class:`~pyhcs.errors.TimeoutExpiredError` (a ``subprocess.TimeoutExpired`` and an
        ``OperationTimeoutError``: ``.cmd``, ``.timeout`` as given, ``.output``/``.stdout``
        and ``.stderr`` read so far). A lost connection to the compute service raises
        ServiceDisconnectedError at once. ``check=True`` raises
        :class:`~pyhcs.errors.CalledProcessError` (a ``subprocess.CalledProcessError``) for a
        non-zero exit code.
        """
        plan = plan_run(
            input=input, capture_output=capture_output, stdin=stdin, stdout=stdout, stderr=stderr,
            text=text, encoding=encoding, errors=errors,
        )
        return _flow.run(run_flow(self, command, plan, cwd=cwd, env=env, user=user, params=params, check=check,
                                  deadline=Deadline(resolve_timeout(timeout, self.default_timeout))))

    def open_process(self, pid: int, *, stdio: bool = False) -> Process:
        """HcsOpenProcess: a handle to a process of this system by pid. ``stdio=True`` also
        asks HcsGetProcessInfo for new handles to its pipes."""
        return Process.open(self, pid, stdio=stdio)

    # -- events -------------------------------------------------------------------------------------
    def events(self, *, replay: bool = True, timeout: Timeout = DEFAULT) -> EventStream:
        """A blocking iterator over this system's events (see :mod:`pyhcs.events`).

        ``replay=True`` starts with the events recorded so far; each ``next()`` waits up to
        ``timeout``. Ends after SystemExited or ServiceDisconnect, or when closed.
        """
        return EventStream(self._hub, replay=replay, timeout=resolve_timeout(timeout, self.default_timeout))

    def add_event_callback(self, fn: Callable[[Event], None], *, replay: bool = False) -> None:
        """Calls ``fn(event)`` for every event of this system, on pyhcs' dispatcher thread, in
        order. It may call pyhcs (even close this system) but should not block for long."""
        self._hub.add_callback(fn, replay)

    def remove_event_callback(self, fn: Callable[[Event], None]) -> None:
        self._hub.remove_callback(fn)

    # -- closing --------------------------------------------------------------------------------------
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _flow.run(leave_flow(self, exc is not None))

    def _wake_waiters(self) -> None:
        self._hub.end(END_CLOSED)

    def _close_children(self) -> None:
        with self._lock:
            children = list(self._children)
        for child in children:
            child.close()
        creation = self._creation
        if creation is not None:
            self._creation = None
            creation.close()

    def _close_native(self) -> None:
        try:
            B.hcs_set_compute_system_callback(self._handle, 0, 0, None)
        except HcsError:
            _log.log.debug("pyhcs: unregistering the callback of %r failed", self.id, exc_info=True)
        B.hcs_close_compute_system(self._handle)
        self._hub.unregister()


def drop_kill(err: HcsError) -> None:
    """run() gives up on a kill that failed or timed out: it closes the kill's pending
    operation (which closes the handles the kill opened) rather than leave it to nobody."""
    _log.log.debug("pyhcs: kill after a failed run() failed", exc_info=err)
    if err.operation is not None:
        err.operation.close()


def _run_timeout(
    command: str | Sequence[str], deadline: Deadline, cause: TimeoutExpiredError, proc: Process | None,
    plan: RunPlan,
) -> TimeoutExpiredError:
    """The error of a run() that ran out of time, once run() has killed and closed everything."""
    op = cause.operation
    if op is not None:
        op.close()  # run() started it; closing a pending operation is safe
    shown = command if isinstance(command, str) else " ".join(command)
    err = TimeoutExpiredError(
        f"running {shown!r} did not finish within {deadline.timeout:g} s "
        f"({deadline.elapsed():.3f} s elapsed); the process was killed",
        timeout=deadline.timeout,
        elapsed=deadline.elapsed(),
        cmd=command,
        output=plan.decode(cause.stdout),
        stderr=plan.decode(cause.stderr if isinstance(cause.stderr, bytes) else None),
        call=cause.call,
        system_id=cause.system_id,
        process_id=cause.process_id if proc is None or not proc.pid else proc.pid,
    )
    err.process = proc
    return err


def begin_enumerate(query: str | None, *, callback: bool) -> Operation:
    call = "HcsEnumerateComputeSystems"
    op = Operation(call=call, callback=callback)
    try:
        op_handle = op._acquire(call)
        try:
            _log.timed(call, None, B.hcs_enumerate_compute_systems, query, op_handle)
        finally:
            op._release()
    except BaseException:
        op.close()
        raise
    return op



# ------------------------------------------------------------------------------------------- flows
# The compound calls, written once as steps (see pyhcs._flow); the methods above run them with
# the blocking driver, pyhcs.aio with its own.


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C or a cancelled task (not an error of the call): what was being made is closed
    once HCS has made it, since no caller is left to own it."""
    return not isinstance(exc, Exception)


def _close_when_done(op: Operation, obj: Handle) -> None:
    """A creation nobody waits for any more: close ``obj`` once HCS completed it."""
    op.add_done_callback(lambda _op: obj.close())
    op.abandon()


def _terminate_when_created(op: Operation, system: ComputeSystem) -> None:
    """A system creation nobody waits for any more (its caller was interrupted or cancelled):
    once HCS completed it, the system is terminated and closed, so nothing is left of it that
    no one holds. Nothing here blocks (it runs on the callback thread)."""

    def created(_op: Operation) -> None:
        try:
            ending = system._submit("terminate", None, callback=True, timeout=0)
        except Exception:  # the creation failed, or the system has ended: nothing to end
            system.close()
            return
        ending.add_done_callback(lambda _end: system.close())
        ending.abandon()

    op.add_done_callback(created)
    op.abandon()


def action_flow(system: ComputeSystem, action: str, document: Document | None, deadline: Deadline) -> Flow[str | None]:
    """One operation-based call on ``system`` (after its pending creation, if any)."""
    yield from wait_created_flow(system, deadline)
    result: str | None = yield Action(
        lambda timeout: system._run(action, document, timeout),
        lambda: system._submit(action, document, callback=True, timeout=DEFAULT),
        deadline,
        lambda: system._begin(action, document),
    )
    return result


def properties_flow(
    system: ComputeSystem, types: Sequence[str], query: Document | None, deadline: Deadline
) -> Flow[dict[str, Any]]:
    doc = yield from action_flow(system, "properties", _property_query(types, query), deadline)
    return parse_properties(doc, "HcsGetComputeSystemProperties", system.id)


def enumerate_flow(query: str | None, deadline: Deadline) -> Flow[list[dict[str, Any]]]:
    doc: str | None = yield Action(
        lambda timeout: complete(begin_enumerate(query, callback=False), timeout),
        lambda: begin_enumerate(query, callback=True),
        deadline,
    )
    return parse_enumeration(doc)


def end_flow(system: ComputeSystem, action: str, options: Document | None, deadline: Deadline) -> Flow[bool]:
    """Shutdown or terminate; False when the system had already stopped."""
    try:
        yield from action_flow(system, action, options, deadline)
    except HcsError as err:
        if is_already_stopped(err):
            return False
        raise
    return True


def wait_created_flow(system: ComputeSystem, deadline: Deadline) -> Flow[None]:
    """Waits for a pending creation; on a timeout the error carries the system
    (``err.system``); a failed creation closes it."""
    op = system._creation
    if op is None:
        return
    try:
        yield OperationWait(op, deadline)
        op.result(0)
    except OperationTimeoutError as err:
        if isinstance(err, TimeoutExpiredError) and err.operation is op and not op._done:
            err.system = system
            raise
        yield from _creation_failed_flow(system, op, err)
    except HcsError as err:
        yield from _creation_failed_flow(system, op, err)
    system._creation = None
    op.close()


def _creation_failed_flow(system: ComputeSystem, op: Operation, err: HcsError) -> Flow[None]:
    # HCS returned a handle even though creation failed: it must still be closed
    # (HCS keeps it until then); with terminate-on-close that also ends whatever was half made.
    system._creation = None
    op.close()
    yield Call(system.close)
    raise err


def create_flow(
    id: str, config: Document, *, timeout: Timeout, default_timeout: Timeout, guest_os: str | None, strict: bool
) -> Flow[ComputeSystem]:
    system: ComputeSystem = yield Call(
        lambda: ComputeSystem._begin_create(id, config, callback=False, default_timeout=default_timeout,
                                            guest_os=guest_os, strict=strict),
        discard=ComputeSystem.close,
    )
    op = system._creation
    try:
        yield from wait_created_flow(system, Deadline(resolve_timeout(timeout, default_timeout)))
    except BaseException as exc:
        if _interrupted(exc) and op is not None and system._creation is op:
            system._creation = None
            _terminate_when_created(op, system)
        raise
    return system


def guest_os_flow(system: ComputeSystem, deadline: Deadline) -> Flow[GuestOs]:
    """The system's guest (see :attr:`ComputeSystem.guest_os`); asks HCS at most once."""
    guest = system._guest
    if guest is not None:
        return guest
    hosting = system._hosting_id
    if hosting is None and not system._created:
        props = yield from properties_flow(system, (), None, deadline)
        guest = guest_of_properties(props)
        host = props.get("HostingSystemId")
        hosting = host if isinstance(host, str) and host else None
    if hosting is not None:
        host_id = hosting
        try:
            host_system: ComputeSystem = yield Call(
                lambda: ComputeSystem.open(host_id, default_timeout=system.default_timeout),
                discard=ComputeSystem.close,
            )
            try:
                host_props = yield from properties_flow(host_system, (), None, deadline)
            finally:
                yield Call(host_system.close)
            guest = guest_of_properties(host_props) or guest
        except SystemNotFoundError:
            _log.log.debug("pyhcs: the hosting system %r of %r is gone", hosting, system.id)
    system._guest = guest or "windows"
    return system._guest


def wait_exit_flow(system: ComputeSystem, deadline: Deadline) -> Flow[SystemExitStatus]:
    yield EventWait(system._hub, system._exit_ready, deadline, "waiting for the compute system to exit")
    status = system._exit_outcome()
    if status is None:  # pragma: no cover - the wait returned, so it is ready
        raise timeout_error("waiting for the compute system to exit", deadline, system_id=system.id,
                            still="it is still running")
    return status


def stop_flow(system: ComputeSystem, grace: float, options: Document | None, total: Deadline) -> Flow[SystemExitStatus]:
    """Shutdown, wait up to ``grace`` for the exit, then terminate (see :meth:`ComputeSystem.stop`)."""
    with reports_timeout(total):
        if isinstance(system._hub.exit, SystemExitStatus):
            return system._hub.exit
        yield from wait_created_flow(system, total)
        grace_deadline = Deadline(min(max(0.0, grace), total.remaining()))
        _log.log.info("pyhcs: stopping %r: shutdown (grace %.1f s)", system.id, grace_deadline.timeout)
        shutdown_op: Operation | None = None
        try:
            try:
                shutdown_op = system._submit("shutdown", options, callback=False, timeout=total.remaining())
            except HcsError as err:
                if is_already_stopped(err):
                    return (yield from wait_exit_flow(system, total))
                _log.log.info("pyhcs: %r cannot shut down (%s); terminating", system.id, err.name)
            else:
                try:
                    yield OperationWait(shutdown_op, grace_deadline)
                except OperationTimeoutError:
                    _log.log.info("pyhcs: %r did not shut down within %.1f s; terminating", system.id, grace)
                else:
                    failure = shutdown_op.exception(0)
                    if failure is None or is_already_stopped(failure):
                        try:
                            return (yield from wait_exit_flow(system, grace_deadline))
                        except OperationTimeoutError:
                            _log.log.info("pyhcs: %r shut down but did not exit in time; terminating", system.id)
                    else:
                        _log.log.info("pyhcs: shutdown of %r failed (%s); terminating", system.id, failure.name)
            yield from end_flow(system, "terminate", None, total)
            return (yield from wait_exit_flow(system, total))
        except BaseException:
            if shutdown_op is not None:
                # The terminate failed or ran out of time: nothing will complete the
                # shutdown; closing a pending operation is safe.
                shutdown_op.close()
            raise
        finally:
            if shutdown_op is not None and not shutdown_op.closed:
                if shutdown_op.done():
                    shutdown_op.close()
                else:
                    shutdown_op.abandon()  # completes once the terminate lands


def create_process_flow(
    system: ComputeSystem,
    command: str | Sequence[str] | None,
    *,
    params: Document | None,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    user: str | None,
    stdin: Stdio | bool,
    stdout: Stdio | bool,
    stderr: Stdio | bool,
    console: bool | None,
    console_size: tuple[int, int] | None,
    bufsize: int,
    deadline: Deadline,
) -> Flow[Process]:
    """HcsCreateProcess and the wait for it (see :meth:`ComputeSystem.create_process`)."""
    with reports_timeout(deadline):
        yield from wait_created_flow(system, deadline)
        guest: GuestOs = "windows"
        if command is not None and not isinstance(command, str):
            guest = yield from guest_os_flow(system, deadline)
        text = process_parameters(
            command,
            params=params,
            cwd=cwd,
            env=env,
            user=user,
            stdin=pipe_flag(stdin, "stdin"),
            stdout=pipe_flag(stdout, "stdout"),
            stderr=pipe_flag(stderr, "stderr"),
            console=console,
            console_size=console_size,
            guest_os=guest,
        )
        proc: Process = yield Call(
            lambda: system._begin_process(text, callback=False, bufsize=bufsize, timeout=deadline.remaining()),
            discard=Process.close,
        )
        op = proc._creation
        try:
            yield from wait_started_flow(proc, deadline)
        except BaseException as exc:
            if _interrupted(exc) and op is not None and proc._creation is op:
                proc._creation = None
                _close_when_done(op, proc)
            raise
        if stdin is not True and stdin == DEVNULL:
            try:
                proc._close_stdin_file()
                yield from close_stdin_flow(proc, deadline)
            except BaseException:
                yield Call(proc.close)
                raise
        return proc


def run_flow(
    system: ComputeSystem,
    command: str | Sequence[str],
    plan: RunPlan,
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    user: str | None,
    params: Document | None,
    check: bool,
    deadline: Deadline,
    bufsize: int = -1,
) -> Flow[CompletedProcess]:
    """create_process, communicate, wait; a kill and a close on every way out (see
    :meth:`ComputeSystem.run`)."""
    try:
        proc = yield from create_process_flow(
            system, command, params=params, cwd=cwd, env=env, user=user, stdin=plan.stdin, stdout=plan.stdout,
            stderr=plan.stderr, console=None, console_size=None, bufsize=bufsize, deadline=deadline,
        )
    except TimeoutExpiredError as exc:
        half_made = exc.process
        if half_made is not None:
            yield Call(half_made.close)  # ends the creation: nothing of it stays behind
        raise _run_timeout(command, deadline, exc, half_made, plan) from None
    try:
        try:
            proc._merge_stderr = plan.merge  # communicate() reads both pipes into one buffer
            out, err = yield Communicate(proc, plan.input, plan.merge, deadline)
            status = yield from wait_status_flow(proc, deadline)
            code = status.check(system_id=proc.system_id)
        except BaseException as exc:
            try:
                yield from kill_flow(proc, Deadline(max(deadline.remaining(), _KILL_GRACE)))
            except HcsError as kill_err:
                drop_kill(kill_err)
            if isinstance(exc, TimeoutExpiredError):
                yield Call(proc.close)
                raise _run_timeout(command, deadline, exc, proc, plan) from None
            raise
    finally:
        yield Call(proc.close)
    result = CompletedProcess(command, code, *plan.finish(out, err), status, proc.pid, system.id)
    if check:
        result.check_returncode()
    return result


def leave_flow(system: ComputeSystem, failed: bool) -> Flow[None]:
    """Leaving a ``with`` block: a system it created is terminated if the block was left by
    an exception; then it is closed."""
    try:
        if failed and system._created and not system._closed and system._hub.exit is None:
            # Leaving a `with` block by an exception: do not leave the system behind.
            try:
                yield from end_flow(system, "terminate", None,
                                    Deadline(resolve_timeout(DEFAULT, system.default_timeout)))
            except Exception:
                _log.log.debug("pyhcs: terminating %r on error failed", system.id, exc_info=True)
    finally:
        yield Call(system.close)


def open_process_flow(system: ComputeSystem, pid: int, *, stdio: bool, bufsize: int) -> Flow[Process]:
    return (yield from open_flow(system, pid, stdio=stdio, bufsize=bufsize))
