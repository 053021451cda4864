"""Make the HCS emulator misbehave the way real HCS does, deterministically, from Python.

::

    from pyhcs import errors
    from pyhcs.testing import Faults

    faults = Faults()
    faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError, count=2)
    faults.hang("HcsShutDownComputeSystem")
    with faults.quirks(legacy_error_forms=True):
        ...
    with faults.call_budget(HcsGetComputeSystemProperties=3):
        ...
    faults.reset()

Everything here goes through the normal HCS API: the emulator-only sections of
HcsModifyServiceSettings (``Emulator``, ``EmulatorFaults``, ``EmulatorActions``) and the
emulator-only property types of HcsGetServiceProperties (docs/emulator.md). Real HCS rejects
those names, so a :class:`Faults` refuses to work anywhere but on the emulator
(:class:`EmulatorRequired`) and a fault-injection test can never pass by accident on Windows.
The emulator answers these control requests even when faults are configured for every
function or the service is "disconnected", and does not count them as calls.

The pytest plugin (:mod:`pyhcs.testing.plugin`) hands out a :class:`Faults` as the ``faults``
fixture and resets the emulator around every test; without pytest, call :meth:`Faults.reset`.

Rules and numbers
-----------------
* A rule counts the calls of its function from the moment it is added: ``on_call=2`` fails the
  second call after :meth:`Faults.fail`, not the second call of the process.
* ``count=None`` fires on every matching call, ``count=n`` at most n times.
* ``probability`` with a ``seed`` fires pseudo-randomly but reproducibly: the same seed gives the
  same pattern of failures on every run.
* ``where="result"`` (the default) fails the operation, the way HCS reports state, guest and
  configuration errors; ``where="call"`` makes the function itself return the HRESULT, the way
  HCS rejects bad arguments and handles. Functions without an operation (HcsOpenComputeSystem,
  HcsWaitForComputeSystemExit, the service functions...) fail the call either way.
* Durations are in seconds, like every timeout in pyhcs.
"""

# A fault rule reads its emulator's bookkeeping (the generation of its rules), and the toolkit
# uses the emulator package's private control module.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .. import errors
from .._narrow import as_given
from ..emulator import _control as _emucontrol
from ..emulator._control import EmulatorControl
from ._functions import HCS_FUNCTIONS

if TYPE_CHECKING:
    from ..process import Process
    from ..system import ComputeSystem

__all__ = [
    "HCS_FUNCTIONS",
    "QUIRKS",
    "CallBudget",
    "CallBudgetExceeded",
    "Emulator",
    "EmulatorRequired",
    "FaultRule",
    "FaultSchedule",
    "FaultSpec",
    "Faults",
    "HResultLike",
    "Quirks",
    "hresult_of",
]

#: An HRESULT as the fault API takes it: a number (signed or unsigned), a string (``"0x80370109"``,
#: ``"HCS_E_CONNECTION_TIMEOUT"``), an :class:`~pyhcs.errors.HcsError` class registered to a code
#: (``errors.ConnectionTimeoutError``) or an HcsError instance.
HResultLike = int | str | type[errors.HcsError] | errors.HcsError

#: The environment variables the emulator reads at load time (docs/emulator.md).
SETTINGS_ENV = _emucontrol.SETTINGS_ENV
FAULTS_ENV = _emucontrol.FAULTS_ENV

_HCS_E_SERVICE_DISCONNECT = 0x8037011E


class EmulatorRequired(RuntimeError):
    """Fault injection, quirk switches and call accounting exist only on the HCS emulator;
    pyhcs is talking to the real Host Compute Service (or cannot load a library at all)."""


class CallBudgetExceeded(AssertionError):
    """A :meth:`Faults.call_budget` block made more native calls than allowed.

    ``counts`` holds the calls made in the block, by function; ``over`` the functions over
    budget as ``{name: (calls, budget)}``.
    """

    def __init__(self, message: str, counts: dict[str, int], over: dict[str, tuple[int, int]]) -> None:
        super().__init__(message)
        self.counts = counts
        self.over = over


def hresult_of(value: HResultLike) -> int:
    """The unsigned HRESULT ``value`` stands for (see :data:`HResultLike`); it must be a failure.

    >>> hex(hresult_of(errors.ConnectionTimeoutError))
    '0x80370109'
    >>> hex(hresult_of("HCS_E_INVALID_STATE"))
    '0x80370105'
    """
    given = as_given(value)
    if isinstance(given, bool):
        raise TypeError("an HRESULT is not a bool")
    hr: int
    if isinstance(given, errors.HcsError):
        hr = given.hresult
    elif isinstance(given, type) and issubclass(given, errors.HcsError):
        code = given.__dict__.get("hresult")
        if not isinstance(code, int) or errors.error_class(code) is not given:
            raise TypeError(
                f"{given.__name__} is not registered to one HRESULT (a family or the base class); "
                "pass a concrete class such as errors.ConnectionTimeoutError, or a number"
            )
        hr = code
    elif isinstance(given, int):
        hr = errors.to_unsigned(given)
    elif isinstance(given, str):
        hr = _parse_hresult_text(given)
    else:
        raise TypeError(f"expected an HRESULT (int, str or HcsError class), not {type(value).__name__}")
    if errors.is_success(hr):
        raise ValueError(f"0x{hr:08X} is a success code; a fault needs a failure HRESULT")
    return hr


def _parse_hresult_text(text: str) -> int:
    stripped = text.strip()
    try:
        return errors.to_unsigned(int(stripped, 0))
    except ValueError:
        pass
    for info in errors.CODES:
        if stripped in (info.symbol, info.class_name):
            return info.hresult
    raise ValueError(f"unknown HRESULT {text!r}: use a number, an HCS_E_/E_/ERROR_ symbol or an error class name")


def check_function_name(function: str) -> str:
    if function != "*" and function not in HCS_FUNCTIONS:
        close = sorted(f for f in HCS_FUNCTIONS if f.lower() == function.lower().replace("_", ""))
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"{function!r} is not an HCS function{hint}; use the exported name, e.g. 'HcsStartComputeSystem', or '*'"
        )
    return function


def _ms(seconds: float, what: str) -> int:
    value = float(seconds)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {seconds!r}")
    return round(value * 1000)


# ------------------------------------------------------------------------------------ quirks

#: The quirk switches :meth:`Faults.quirks` knows, keyword -> emulator switch. Switches whose
#: keyword ends in a duration (shutdown_grace, terminate_timeout, worker_idle) take seconds.
QUIRKS: Mapping[str, str] = {
    "legacy_error_forms": "LegacyErrorForms",
    "pending_on_initiate": "PendingOnInitiate",
    "null_success_documents": "NullSuccessDocuments",
    "create_process_sync_quirk": "CreateProcessSyncQuirk",
    "close_waits_in_own_callback": "CloseWaitsInOwnCallback",
    "inherit_environment": "InheritEnvironment",
    "ignore_shutdown": "IgnoreShutdown",
    "cancel_operation": "CancelOperation",
    "wait_exit_timeout_result": "WaitExitTimeoutResult",
    "shutdown_grace": "ShutdownGraceMs",
    "terminate_timeout": "TerminateTimeoutMs",
    "worker_idle": "WorkerIdleMs",
    "schema_version": "SchemaMajor/SchemaMinor",
}


def _quirk_settings(switches: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword switches -> the emulator's settings object (CamelCase names pass through)."""
    out: dict[str, Any] = {}
    for key, value in switches.items():
        if value is None:
            continue
        if key[:1].isupper():  # an emulator switch by its own name: passed on as it is
            out[key] = value
            continue
        if key not in QUIRKS:
            raise TypeError(f"unknown quirk switch {key!r}; known: {', '.join(QUIRKS)} (or an emulator switch name)")
        name = QUIRKS[key]
        if key == "cancel_operation":
            if isinstance(value, bool):
                value = "Implemented" if value else "NotImplemented"
            elif value not in ("Implemented", "NotImplemented"):
                raise ValueError("cancel_operation is True/'Implemented' or False/'NotImplemented'")
            out[name] = value
        elif key == "wait_exit_timeout_result":
            out[name] = hresult_of(value)
        elif key in ("shutdown_grace", "terminate_timeout", "worker_idle"):
            out[name] = _ms(value, key)
        elif key == "schema_version":
            major, minor = value
            out["SchemaMajor"], out["SchemaMinor"] = int(major), int(minor)
        else:
            if not isinstance(value, bool):
                raise TypeError(f"quirk switch {key} takes True or False, not {value!r}")
            out[name] = value
    return out


class Quirks:
    """Quirk switches applied by :meth:`Faults.quirks`.

    They are in effect as soon as ``quirks()`` returns. Used as a context manager, the block's
    end puts back the values the switches had before (nested blocks unwind in order)::

        with faults.quirks(legacy_error_forms=True):
            ...                          # HCS_E_* codes come back as 0xC037xxxx
        # back to what it was
    """

    def __init__(self, emulator: Emulator, applied: dict[str, Any], previous: dict[str, Any]) -> None:
        self._emulator = emulator
        #: The emulator settings that were changed, as the emulator names them.
        self.applied = applied
        #: Their values before.
        self.previous = previous
        self._restored = False

    def restore(self) -> None:
        """Puts the switches back to the values they had before (once)."""
        if not self._restored:
            self._restored = True
            if self.previous:
                self._emulator.configure(**self.previous)

    def __enter__(self) -> Quirks:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.restore()

    def __repr__(self) -> str:
        return f"<pyhcs.testing.Quirks {self.applied}>"


# ------------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class FaultRule:
    """One fault rule, as added by :meth:`Faults.fail`, :meth:`Faults.delay` or
    :meth:`Faults.hang`. ``seen`` and ``fired`` ask the emulator how often the rule matched a
    call and how often it acted."""

    function: str
    where: Literal["call", "result"] | None
    hresult: int | None
    on_call: int | None
    count: int | None
    probability: float | None
    seed: int | None
    delay: float | None
    hang: bool
    _owner: Emulator = field(repr=False, compare=False)
    _index: int = field(repr=False, compare=False)
    _generation: int = field(repr=False, compare=False)

    def _state(self) -> dict[str, Any]:
        owner = self._owner
        if owner._generation != self._generation:
            raise LookupError("this fault rule was removed (Faults.clear() or reset())")
        rules = owner.rules()
        if self._index >= len(rules):
            raise LookupError("this fault rule is no longer configured (the emulator was reset elsewhere)")
        return rules[self._index]

    @property
    def seen(self) -> int:
        """Calls of the function since the rule was added."""
        return int(self._state().get("Seen", 0))

    @property
    def fired(self) -> int:
        """Calls the rule acted on."""
        return int(self._state().get("Fired", 0))


@dataclass(frozen=True)
class FaultSpec:
    """A fault rule as a value, before it is added: what the hypothesis strategy
    :func:`pyhcs.testing.strategies.faults` draws. :meth:`apply` adds it to the emulator through
    :meth:`Faults.fail`, :meth:`Faults.delay` or :meth:`Faults.hang`."""

    function: str
    action: Literal["fail", "delay", "hang"]
    error: int | None = None
    """The HRESULT of a ``fail`` (unsigned)."""
    where: Literal["call", "result"] = "result"
    on_call: int | None = None
    count: int | None = None
    probability: float | None = None
    seed: int | None = None
    delay: float | None = None
    """Seconds of a ``delay`` (or how late a ``fail`` completes)."""

    def apply(self, faults: Faults) -> FaultRule:
        """Adds the rule; returns the :class:`FaultRule`."""
        common: dict[str, Any] = {"on_call": self.on_call, "count": self.count,
                                  "probability": self.probability, "seed": self.seed}
        if self.action == "fail":
            if self.error is None:
                raise ValueError("a fail fault needs an error")
            return faults.fail(self.function, self.error, where=self.where, delay=self.delay, **common)
        if self.action == "delay":
            return faults.delay(self.function, self.delay or 0.0, **common)
        if self.action == "hang":
            return faults.hang(self.function, **common)
        raise ValueError(f"unknown fault action {self.action!r}")

    def __str__(self) -> str:
        parts = [f"{self.action} {self.function}"]
        if self.action == "fail" and self.error is not None:
            parts.append(f"with 0x{self.error:08X} ({errors.hresult_name(self.error)}) at the {self.where}")
        if self.delay:
            parts.append(f"after {self.delay:g} s")
        if self.on_call is not None:
            parts.append(f"from call {self.on_call}")
        parts.append("every time" if self.count is None else f"{self.count} time(s)")
        if self.probability is not None:
            parts.append(f"with probability {self.probability:g} (seed {self.seed})")
        return " ".join(parts)


@dataclass(frozen=True)
class FaultSchedule:
    """Several :class:`FaultSpec` s, applied together (what
    :func:`pyhcs.testing.strategies.fault_schedules` draws)."""

    rules: tuple[FaultSpec, ...] = ()

    def apply(self, faults: Faults) -> list[FaultRule]:
        """Adds every rule, in order; returns their :class:`FaultRule` s."""
        return [rule.apply(faults) for rule in self.rules]

    def __iter__(self) -> Iterator[FaultSpec]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __str__(self) -> str:
        return "; ".join(map(str, self.rules)) or "no faults"


# ------------------------------------------------------------------------------------ budgets


class CallBudget:
    """A block that may make at most so many native calls (see :meth:`Faults.call_budget`).

    ``used()`` tells how many calls the block made so far; after the block, ``counts`` holds
    them all, by function (``"*"``: the total).
    """

    def __init__(self, emulator: Emulator, budgets: dict[str, int]) -> None:
        self._emulator = emulator
        self.budgets = budgets
        self.counts: dict[str, int] = {}
        self._start: dict[str, int] | None = None

    def _delta(self) -> dict[str, int]:
        if self._start is None:
            raise RuntimeError("the call budget is not active (use it in a with statement)")
        now = self._emulator.call_counts()
        start = self._start
        delta = {name: n - start.get(name, 0) for name, n in now.items() if n - start.get(name, 0) > 0}
        delta["*"] = sum(delta.values())
        return delta

    def used(self, function: str = "*") -> int:
        """Calls of ``function`` (``"*"``: of all functions) since the block began."""
        return self._delta().get(function, 0)

    def __enter__(self) -> CallBudget:
        self._start = self._emulator.call_counts()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.counts = self._delta()
        self._start = None
        if exc is not None:
            return  # never hide the block's own failure behind a budget report
        over = {
            name: (self.counts.get(name, 0), limit)
            for name, limit in self.budgets.items()
            if self.counts.get(name, 0) > limit
        }
        if over:
            lines = [
                f"  {'all functions' if name == '*' else name}: {used} calls, budget {limit}"
                for name, (used, limit) in sorted(over.items())
            ]
            calls = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()) if k != "*")
            raise CallBudgetExceeded(
                "the block made more native HCS calls than its budget:\n"
                + "\n".join(lines)
                + f"\n  all calls: {calls}",
                self.counts,
                over,
            )


# ------------------------------------------------------------------------------------ emulator


class Emulator(EmulatorControl):
    """The emulator's own controls: settings, statistics, call counts, reset.

    ``backend`` is the raw module the requests go through (``pyhcs._native._backend`` when None,
    looked up at each call, so it follows :func:`pyhcs.testing.plugin.use_backend`); the
    ``hcs`` fixture of pyhcs' own tests passes one backend explicitly. On real HCS ``active``
    is False and every control raises :class:`EmulatorRequired`. Built on pyhcs' one client of
    the emulator's controls; what it adds is the refusal off the emulator and ``ValueError``
    for a request the emulator rejects.
    """

    def __init__(self, backend: ModuleType | None = None) -> None:
        super().__init__(backend)
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        """The name of the backend behind :attr:`raw` ("cython" or "ctypes")."""
        name = getattr(self.raw, "backend", None)
        if isinstance(name, str):
            return name
        return "cython" if self.raw.__name__.endswith("_core") else "ctypes"

    def _require(self) -> None:
        if not self.active:
            raise EmulatorRequired(
                f"fault injection and the emulator's controls need the HCS emulator; pyhcs is using "
                f"{self.library_path}, the real Host Compute Service"
            )

    def query(self, kind: str) -> Any:
        self._require()
        return super().query(kind)

    def modify(self, kind: str, settings: Any) -> None:
        self._require()
        try:
            super().modify(kind, settings)
        except errors.InvalidJsonError as err:
            raise ValueError(f"the emulator rejected the {kind} request: {err.message}") from err

    def action(self, name: str, **arguments: Any) -> None:
        """Runs an emulator action (``EmulatorActions``): ``ServiceDisconnect``, ``Reconnect``,
        ``Reset``, ``ResetCallCounts``, ``UnexpectedExit`` (SystemId=...), ``ProcessExit``
        (SystemId=..., ProcessId=...)."""
        self._require()
        EmulatorControl.modify(self, "EmulatorActions", {"Action": name, **arguments})

    def rules(self) -> list[dict[str, Any]]:
        """The fault rules as the emulator holds them, with ``Seen`` and ``Fired`` counts."""
        return self.faults()

    def reset_call_counts(self) -> None:
        """Starts the call counts from zero."""
        self.action("ResetCallCounts")

    def clear(self) -> None:
        """Removes every fault rule (quirk switches and the connection stay as they are)."""
        with self._lock:
            self.modify("EmulatorFaults", {"Faults": [], "Reset": True})
            self._generation += 1

    def reset(self, *, call_counts: bool = True, environment: bool = True) -> None:
        """Back to a clean emulator: no fault rules, the documented default switches, the
        service connected, call counts at zero.

        With ``environment=True`` the process's own baseline is then applied again:
        ``HCSEMU_SETTINGS`` and ``HCSEMU_FAULTS``, which the emulator read when it was loaded,
        so a whole test run under those variables keeps them in every test.
        """
        with self._lock:
            super().reset(call_counts=call_counts, environment=environment)
            self._generation += 1


class Faults(Emulator):
    """The fault-injection API (the ``faults`` fixture). See the module docstring.

    Raises :class:`EmulatorRequired` when pyhcs is not talking to the emulator.
    """

    def __init__(self, backend: ModuleType | None = None) -> None:
        super().__init__(backend)
        self._require()

    # -- rules ----------------------------------------------------------------------------------
    def _add_rule(
        self,
        function: str,
        *,
        where: str | None = None,
        hresult: int | None = None,
        on_call: int | None = None,
        count: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        delay: float | None = None,
        hang: bool = False,
    ) -> FaultRule:
        spec: dict[str, Any] = {"Function": check_function_name(function)}
        place: Literal["call", "result"] | None = None
        if where is not None:
            lowered = where.lower()
            if lowered not in ("call", "result"):
                raise ValueError(f"where must be 'call' or 'result', not {where!r}")
            place = "call" if lowered == "call" else "result"
            spec["Where"] = place.capitalize()
        if hresult is not None:
            spec["HResult"] = hresult
        if on_call is not None:
            if on_call < 1:
                raise ValueError("on_call counts calls from 1")
            spec["OnCall"] = int(on_call)
        if count is not None:
            if count < 1:
                raise ValueError("count must be >= 1 (None: every call)")
            spec["Count"] = int(count)
        if probability is not None:
            if not 0.0 < probability <= 1.0:
                raise ValueError("probability must be in (0, 1]")
            spec["Probability"] = float(probability)
            spec["Seed"] = int(seed) if seed is not None else 0
        elif seed is not None:
            raise ValueError("seed only makes sense with a probability")
        if delay is not None:
            spec["DelayMs"] = _ms(delay, "delay")
        if hang:
            spec["Hang"] = True
        with self._lock:
            index = len(self.rules())
            self.modify("EmulatorFaults", {"Faults": [spec], "Reset": False})
            generation = self._generation
        return FaultRule(
            function=function,
            where=place,
            hresult=hresult,
            on_call=on_call,
            count=count,
            probability=probability,
            seed=seed,
            delay=delay,
            hang=hang,
            _owner=self,
            _index=index,
            _generation=generation,
        )

    def fail(
        self,
        function: str,
        error: HResultLike,
        *,
        where: Literal["call", "result"] = "result",
        on_call: int | None = None,
        count: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        delay: float | None = None,
    ) -> FaultRule:
        """Makes ``function`` fail with ``error`` (an HRESULT, see :data:`HResultLike`).

        ``where="result"``: the call is accepted and its operation completes with the error
        (without doing the work: a failed start leaves the system Created). ``where="call"``:
        the function itself returns the error. ``on_call``: start at that call (1-based,
        counted from now); ``count``: at most that many times (None: always); ``probability``
        and ``seed``: fail that share of calls, reproducibly; ``delay``: complete that many
        seconds late. Returns the :class:`FaultRule`.

        Example: the second start fails once with a connection timeout::

            faults.fail("HcsStartComputeSystem", errors.ConnectionTimeoutError, on_call=2, count=1)
        """
        return self._add_rule(
            function,
            where=where,
            hresult=hresult_of(error),
            on_call=on_call,
            count=count,
            probability=probability,
            seed=seed,
            delay=delay,
        )

    def delay(
        self,
        function: str,
        seconds: float,
        *,
        on_call: int | None = None,
        count: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> FaultRule:
        """Makes ``function`` take ``seconds`` longer: its operation completes that much later
        (functions without an operation return that much later)."""
        return self._add_rule(function, delay=seconds, on_call=on_call, count=count, probability=probability, seed=seed)

    def hang(
        self,
        function: str,
        *,
        on_call: int | None = None,
        count: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> FaultRule:
        """Makes ``function`` never complete, like the HCS calls that hung for hours in
        production. Nothing of the call happens: a hung shutdown leaves the system running.

        Its operation stays pending until it is closed or cancelled (``cancel_operation``
        quirk) or the service disconnects (it then fails with HCS_E_SERVICE_DISCONNECT).
        A function without an operation blocks its caller until :meth:`service_disconnect`,
        :meth:`clear` or :meth:`reset` (from another thread). An operation that hangs keeps
        its handle until someone closes it: code that abandons one leaks it, and the plugin's
        leak check reports that.
        """
        return self._add_rule(function, hang=True, on_call=on_call, count=count, probability=probability, seed=seed)

    # -- events ----------------------------------------------------------------------------------
    def unexpected_exit(self, system: ComputeSystem | str) -> None:
        """The system's "guest" dies: every handle gets SystemExited with ExitType
        ``UnexpectedExit`` and Status HCS_E_UNEXPECTED_EXIT, and the system is Stopped.

        Asynchronous: wait for it with ``system.wait_exit()``. The system must be running or
        paused (``errors.InvalidStateError`` otherwise).
        """
        system_id = system if isinstance(system, str) else system.id
        self.action("UnexpectedExit", SystemId=system_id)

    def process_exit(
        self, process: Process | None = None, *, system: ComputeSystem | str | None = None, pid: int | None = None
    ) -> None:
        """A process dies unexpectedly (as if killed: exit code 137 on the emulator), and its
        handles get ProcessExited. Pass the :class:`~pyhcs.Process`, or ``system`` and ``pid``.

        Asynchronous: ``process.wait()`` sees it. ``errors.ElementNotFoundError`` if the
        process has already exited.
        """
        if process is not None:
            if system is not None or pid is not None:
                raise TypeError("pass a process, or system and pid, not both")
            system_id, process_id = process.system_id, process.pid
        else:
            if system is None or pid is None:
                raise TypeError("process_exit needs a process, or system and pid")
            system_id = system if isinstance(system, str) else system.id
            process_id = pid
        self.action("ProcessExit", SystemId=system_id, ProcessId=int(process_id))

    def service_disconnect(self) -> None:
        """The compute service goes away (vmcompute crashed): every pending operation fails with
        HCS_E_SERVICE_DISCONNECT, every system and process callback gets a ServiceDisconnect
        event, and later calls fail with HCS_E_SERVICE_DISCONNECT until :meth:`reconnect`
        (or :meth:`reset`). Handles stay valid and can still be closed."""
        self.action("ServiceDisconnect")

    def reconnect(self) -> None:
        """The service is back: calls work again (old handles too, on the emulator)."""
        self.action("Reconnect")

    @property
    def disconnected(self) -> bool:
        return bool(self.statistics().get("Disconnected", False))

    # -- quirks ----------------------------------------------------------------------------------
    def quirks(
        self,
        *,
        legacy_error_forms: bool | None = None,
        pending_on_initiate: bool | None = None,
        null_success_documents: bool | None = None,
        create_process_sync_quirk: bool | None = None,
        close_waits_in_own_callback: bool | None = None,
        inherit_environment: bool | None = None,
        ignore_shutdown: bool | None = None,
        cancel_operation: bool | Literal["Implemented", "NotImplemented"] | None = None,
        wait_exit_timeout_result: HResultLike | None = None,
        shutdown_grace: float | None = None,
        terminate_timeout: float | None = None,
        worker_idle: float | None = None,
        schema_version: tuple[int, int] | None = None,
        **emulator_switches: Any,
    ) -> Quirks:
        """Switches behaviours that differ between Windows builds or that the documentation
        leaves open. Defaults follow current documented Windows.

        legacy_error_forms
            HCS_E_* codes in the old NTSTATUS-shaped 0xC037xxxx form (old vmcompute).
        pending_on_initiate
            Initiating calls return HCS_E_OPERATION_PENDING instead of S_OK (2018-2020 docs).
        null_success_documents
            Successful operations carry no result document, even property queries.
        create_process_sync_quirk
            WS2022: the CreateProcess operation fails with E_INVALIDARG and loses the pipes
            although the process runs; HcsGetProcessInfo recovers them.
        close_waits_in_own_callback
            Closing a handle from inside its own event callback waits for that callback (the
            deadlock real HCS has).
        inherit_environment
            Processes start from the caller's environment (default True).
        ignore_shutdown
            The guest ignores graceful shutdown: the shutdown stays pending until a terminate,
            which fails it with HCS_E_TERMINATED.
        cancel_operation
            HcsCancelOperation works (True) or returns E_NOTIMPL as documented (False).
        wait_exit_timeout_result
            What HcsWaitForComputeSystemExit/HcsWaitForProcessExit return on timeout
            (default HCS_E_OPERATION_TIMEOUT; e.g. ``errors.WaitTimeoutError``).
        shutdown_grace, terminate_timeout, worker_idle
            Seconds: SIGTERM-to-SIGKILL grace of a shutdown, how long a stop waits for the
            processes to go, how long idle emulator threads live.
        schema_version
            ``(major, minor)``: the newest schema version the service reports and accepts.

        Other emulator switches can be passed by their own name (``IgnoreShutdown=True``).
        Applied at once, all or nothing; as a context manager the previous values come back
        at the end of the block.
        """
        given = {
            "legacy_error_forms": legacy_error_forms,
            "pending_on_initiate": pending_on_initiate,
            "null_success_documents": null_success_documents,
            "create_process_sync_quirk": create_process_sync_quirk,
            "close_waits_in_own_callback": close_waits_in_own_callback,
            "inherit_environment": inherit_environment,
            "ignore_shutdown": ignore_shutdown,
            "cancel_operation": cancel_operation,
            "wait_exit_timeout_result": wait_exit_timeout_result,
            "shutdown_grace": shutdown_grace,
            "terminate_timeout": terminate_timeout,
            "worker_idle": worker_idle,
            "schema_version": schema_version,
            **emulator_switches,
        }
        applied = _quirk_settings(given)
        current = self.settings()
        previous = {name: current[name] for name in applied if name in current}
        if applied:
            self.configure(**applied)
        return Quirks(self, applied, previous)

    # -- call accounting -------------------------------------------------------------------------
    def call_budget(
        self, function: str | Mapping[str, int] | None = None, max_calls: int | None = None, /, **budgets: int
    ) -> CallBudget:
        """A context manager that fails (:class:`CallBudgetExceeded`, an AssertionError) when
        the block makes more native calls than allowed. Polling HCS too often is a known
        production problem (hcsshim #989); this turns a call budget into a test::

            with faults.call_budget("HcsGetComputeSystemProperties", 3):
                wait_until_running(system)
            with faults.call_budget(HcsCreateOperation=10, HcsWaitForOperationResult=20):
                ...
            with faults.call_budget({"*": 50}):   # all functions together
                ...
        """
        limits: dict[str, int] = {}
        if isinstance(function, Mapping):
            if max_calls is not None:
                raise TypeError("pass a mapping of budgets, or a function and a number")
            limits.update(function)
        elif function is not None:
            if max_calls is None:
                raise TypeError(f"call_budget({function!r}) needs the number of calls allowed")
            limits[function] = max_calls
        elif max_calls is not None:
            raise TypeError("max_calls needs a function name")
        limits.update(budgets)
        if not limits:
            raise TypeError("call_budget needs at least one budget")
        for name, limit in limits.items():
            check_function_name(name)
            given = as_given(limit)
            if isinstance(given, bool) or not isinstance(given, int) or given < 0:
                raise ValueError(f"the budget of {name} must be an int >= 0, not {limit!r}")
        return CallBudget(self, limits)
