"""Which kind of guest runs a compute system's processes, and what each kind takes.

HCS starts processes in two kinds of guest, and they read process documents differently:

* **Windows guests**: process-isolated Windows containers (a ``Container`` system),
  Hyper-V-isolated ones (a container hosted in a Windows utility VM) and Windows VMs. They
  take ``CommandLine`` only, which Windows splits into arguments by the CommandLineToArgvW
  rules, and signals named by their console control event: ``CtrlC``, ``CtrlBreak``,
  ``CtrlClose``, ``CtrlLogOff``, ``CtrlShutdown``.
* **Linux guests**: a Linux utility VM (one booted with ``LinuxKernelDirect``) and the systems
  it hosts (LCOW). They take ``CommandArgs``, the argument vector itself, and POSIX signal
  numbers.

How pyhcs decides (:func:`guest_of_config`, then the system's properties): the caller's
``guest_os=`` wins; else a system hosted by another (``HostingSystemId``) has its host's guest,
unless its document is hcsshim's LCOW shape (``OciSpecification``/``OciBundlePath``: Linux); a
``Container`` is Windows; a ``VirtualMachine`` is Linux when it boots ``LinuxKernelDirect``,
else Windows. A system opened by id is asked for its ``RuntimeOsType`` (its host's, when it
has a ``HostingSystemId``); without an answer it is taken as Windows, whose ``CommandLine``
every guest accepts.

The emulator reads a Container's process document as Windows does (it splits ``CommandLine``
by the Windows rules and refuses ``CommandArgs``: docs/emulator.md), so the same documents go
to both and quoting bugs show on Linux too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ._narrow import as_given, is_json_mapping
from .errors import HcsError, make_error

__all__ = [
    "CTRL_EVENTS",
    "GuestOs",
    "check_guest_os",
    "command_fields",
    "guest_of_config",
    "guest_of_properties",
    "signal_value",
    "windows_command_line",
]

GuestOs = Literal["windows", "linux"]

_E_INVALIDARG = 0x80070057

#: The signals a Windows guest accepts (ProcessSignal).
CTRL_EVENTS = ("CtrlC", "CtrlBreak", "CtrlClose", "CtrlLogOff", "CtrlShutdown")

# POSIX signals (Linux numbering, fixed: the host may be Windows) -> the Ctrl event that asks
# a Windows process the same thing, and back.
_POSIX_NUMBERS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12,
                  "SIGTERM": 15, "SIGCONT": 18, "SIGSTOP": 19, "SIGWINCH": 28}
_SIGBREAK = 21  # signal.SIGBREAK of Windows' C runtime
_TO_CTRL = {2: "CtrlC", 3: "CtrlBreak", _SIGBREAK: "CtrlBreak", 1: "CtrlClose", 15: "CtrlShutdown"}
_FROM_CTRL = {"CtrlC": 2, "CtrlBreak": 3, "CtrlClose": 1, "CtrlLogOff": 1, "CtrlShutdown": 15}


def check_guest_os(value: str | None) -> GuestOs | None:
    """Validates a caller's ``guest_os=``: "windows", "linux" (any case) or None."""
    if value is None:
        return None
    given = as_given(value)
    if isinstance(given, str) and given.lower() in ("windows", "linux"):
        return "windows" if given.lower() == "windows" else "linux"
    raise ValueError(f"guest_os must be 'windows' or 'linux', not {value!r}")


def _boots_linux(vm: Mapping[str, Any]) -> bool:
    chipset = vm.get("Chipset")
    return "LinuxKernelDirect" in vm or (isinstance(chipset, Mapping) and "LinuxKernelDirect" in chipset)


def guest_of_config(config: Mapping[str, Any]) -> GuestOs | None:
    """The guest a ComputeSystem document describes; None when it depends on the hosting
    system (``HostingSystemId``), which only that system's properties can tell."""
    hosted = config.get("HostedSystem")
    if isinstance(hosted, Mapping) and ("OciSpecification" in hosted or "OciBundlePath" in hosted):
        return "linux"  # hcsshim's LCOW container document
    if config.get("HostingSystemId"):
        return None
    vm = config.get("VirtualMachine")
    if is_json_mapping(vm):
        return "linux" if _boots_linux(vm) else "windows"
    return "windows"  # a Container, or a HostedSystem without its host: HCS' own guest


def guest_of_properties(properties: Mapping[str, Any]) -> GuestOs | None:
    """The guest named by a system's ``RuntimeOsType`` property, if it has one."""
    value = properties.get("RuntimeOsType")
    given = as_given(value)
    if isinstance(given, str) and given.lower() in ("windows", "linux"):
        return "windows" if given.lower() == "windows" else "linux"
    return None


def _invalid(message: str, member: str) -> HcsError:
    return make_error(_E_INVALIDARG, message=f"{member}: {message}", call="HcsCreateProcess")


def windows_command_line(args: Sequence[str]) -> str:
    """The ``CommandLine`` that a Windows guest splits back into exactly ``args``.

    The arguments after the first are quoted as :func:`subprocess.list2cmdline` does (the C
    runtime's rules, which CommandLineToArgvW shares). The program name follows simpler rules
    there: it ends at the first space or tab, or, when it starts with a quote, at the next
    quote, with backslashes always literal; so it is quoted only when it must be, never
    escaped, and one that holds both a quote and a space (or starts with a quote) cannot be
    expressed at all: InvalidArgumentError.
    """
    if not args:
        raise ValueError("the argument list is empty")
    program = args[0]
    if program and not any(c in program for c in " \t") and not program.startswith('"'):
        head = program
    elif '"' in program:
        raise _invalid(f"the program name {program!r} cannot be quoted for a Windows guest (it holds a quote "
                       "and a space, or starts with a quote)", "CommandLine")
    else:
        head = f'"{program}"'
    rest = subprocess.list2cmdline(args[1:])
    return f"{head} {rest}" if len(args) > 1 else head


def command_fields(command: Sequence[str], guest: GuestOs) -> dict[str, Any]:
    """``{"CommandLine": ...}`` (Windows guests) or ``{"CommandArgs": [...]}`` (Linux guests)
    for an argument list. An embedded NUL cannot cross the C API: InvalidArgumentError."""
    args = list(command)
    if not args:
        raise ValueError("the argument list is empty")
    for i, arg in enumerate(args):
        if not isinstance(as_given(arg), str):
            raise TypeError(f"argument {i} is {type(arg).__name__}, not str")
        if "\0" in arg:
            member = "CommandArgs" if guest == "linux" else "CommandLine"
            raise _invalid(f"argument {i} holds a NUL character, which no process can receive", member)
    if guest == "linux":
        return {"CommandArgs": args}
    return {"CommandLine": windows_command_line(args)}


def signal_value(sig: int | str, guest: GuestOs) -> int | str:
    """The ``Signal`` of SignalProcessOptions for ``sig`` in this kind of guest.

    Windows guests get Ctrl event names: a POSIX number or name maps to the event asking the
    same (SIGINT: CtrlC, SIGQUIT/SIGBREAK: CtrlBreak, SIGHUP: CtrlClose, SIGTERM:
    CtrlShutdown); other signals have none (InvalidArgumentError: use kill() or terminate()).
    Linux guests get numbers: a Ctrl name maps to its POSIX twin, a ``SIG*`` name to its
    (Linux) number. Other names go to HCS as given, which judges them.
    """
    given = as_given(sig)
    if isinstance(given, bool) or not isinstance(given, (int, str)):
        raise TypeError(f"a signal is an int or a name, not {type(sig).__name__}")
    if isinstance(sig, str) and sig.upper() in _POSIX_NUMBERS:
        sig = _POSIX_NUMBERS[sig.upper()]
    if guest == "linux":
        if isinstance(sig, str):
            return _FROM_CTRL.get(sig, sig)
        return int(sig)
    if isinstance(sig, str):
        return sig
    ctrl = _TO_CTRL.get(int(sig))
    if ctrl is None:
        raise make_error(
            _E_INVALIDARG,
            message=f"Signal: signal {int(sig)} has no console control event; a Windows guest accepts only "
            f"{', '.join(CTRL_EVENTS)} (SIGINT, SIGQUIT, SIGHUP and SIGTERM map to them): use kill() or "
            "terminate() to end the process",
            call="HcsSignalProcess",
        )
    return ctrl
