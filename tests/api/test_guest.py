"""Guest-aware process documents: argument lists as a Windows-quoted CommandLine (Windows
guests) or CommandArgs (Linux guests), signals as Ctrl event names or POSIX numbers, and how
the guest of a system is decided. End to end, the process must receive exactly the argv."""

# One test spies on the private signalling call of pyhcs.process.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhcs import ComputeSystem, _guest, emulator, errors
from pyhcs import process as process_mod
from pyhcs.process import process_parameters

from pyutil import CONFIG, PYTHON_CONFIG, new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


# ------------------------------------------------------------------------------ a reference parser


def command_line_to_argv(line: str) -> list[str]:
    """CommandLineToArgvW, written from its documented rules, to check the quoting against.

    The program name: up to the first space/tab, or quoted up to the next quote, backslashes
    literal. Then each argument: 2n backslashes before a quote give n and the quote toggles
    quoting; 2n+1 give n and a literal quote; other backslashes are literal; inside quotes a
    doubled quote is a literal one.
    """
    i, n = 0, len(line)
    argv: list[str] = []
    if line.startswith('"'):
        end = line.find('"', 1)
        end = n if end < 0 else end
        argv.append(line[1:end])
        i = end + 1
    else:
        while i < n and line[i] not in " \t":
            i += 1
        argv.append(line[:i])
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return argv
        arg: list[str] = []
        quoted = False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                count = j - i
                if j < n and line[j] == '"':
                    arg.append("\\" * (count // 2))
                    if count % 2:
                        arg.append('"')
                        i = j + 1
                    else:
                        i = j
                else:
                    arg.append("\\" * count)
                    i = j
            elif line[i] == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                arg.append(line[i])
                i += 1
        argv.append("".join(arg))


# Everything a process can receive: no NUL, no lone surrogate (neither survives UTF-16/C).
arg_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=12)
tricky = st.sampled_from(["", " ", '"', '\\', '\\"', 'a\\\\', 'a b\\', '""', "\t", "ü ß", "$HOME", "'q'", "a&b|c"])
args_lists = st.lists(st.one_of(arg_text, tricky), max_size=6)
programs = st.one_of(
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters='\0 \t"'), min_size=1, max_size=10),
    st.sampled_from(["C:\\Program Files\\app.exe", "C:\\dir with space\\", "", "/usr/bin/x", "a\"b"]),
)


@given(programs, args_lists)
def test_windows_quoting_round_trips(program: str, args: list[str]) -> None:
    line = _guest.windows_command_line([program, *args])
    assert command_line_to_argv(line) == [program, *args]
    if args:  # after the program name: exactly subprocess' quoting
        assert line.endswith(" " + __import__("subprocess").list2cmdline(args))


def test_program_names_windows_cannot_express() -> None:
    for program in ['"starts', 'has " and space']:
        with pytest.raises(errors.InvalidArgumentError) as exc:
            _guest.windows_command_line([program, "x"])
        assert "CommandLine" in str(exc.value)


def test_process_parameters_per_guest() -> None:
    windows = json.loads(process_parameters(["prog", "a b", 'q"'], guest_os="windows"))
    assert windows == {"CommandLine": 'prog "a b" q\\"'}
    linux = json.loads(process_parameters(["prog", "a b", 'q"'], guest_os="linux"))
    assert linux == {"CommandArgs": ["prog", "a b", 'q"']}
    # a str is a command line, for every guest; a command replaces the one of params
    assert json.loads(process_parameters("echo hi", guest_os="linux")) == {"CommandLine": "echo hi"}
    both = {"CommandLine": "old", "CommandArgs": ["old"], "WorkingDirectory": "/"}
    assert json.loads(process_parameters(["new"], params=both, guest_os="linux")) == {
        "CommandArgs": ["new"], "WorkingDirectory": "/"}
    guests: list[tuple[_guest.GuestOs, str]] = [("windows", "CommandLine"), ("linux", "CommandArgs")]
    for guest, member in guests:
        with pytest.raises(errors.InvalidArgumentError, match=member):
            process_parameters(["prog", "nul\0inside"], guest_os=guest)
    with pytest.raises(ValueError):
        process_parameters([], guest_os="windows")


# ------------------------------------------------------------------------------ deciding the guest


LINUX_VM: dict[str, Any] = {
    "SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests",
    "VirtualMachine": {"Chipset": {"LinuxKernelDirect": {"KernelFilePath": "/boot/vmlinux"}}},
}
WINDOWS_VM: dict[str, Any] = {
    "SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests",
    "VirtualMachine": {"Chipset": {"Uefi": {}}},
}


def test_guest_of_config_shapes() -> None:
    assert _guest.guest_of_config(CONFIG) == "windows"
    assert _guest.guest_of_config(LINUX_VM) == "linux"
    assert _guest.guest_of_config({"VirtualMachine": {"LinuxKernelDirect": {}}}) == "linux"
    assert _guest.guest_of_config(WINDOWS_VM) == "windows"
    assert _guest.guest_of_config({"HostingSystemId": "uvm", "HostedSystem": {"Container": {}}}) is None
    assert _guest.guest_of_config({"HostingSystemId": "uvm", "Container": {}}) is None
    assert _guest.guest_of_config({"HostingSystemId": "uvm", "HostedSystem": {"OciSpecification": {}}}) == "linux"
    assert _guest.guest_of_properties({"RuntimeOsType": "Linux"}) == "linux"
    assert _guest.guest_of_properties({}) is None
    with pytest.raises(ValueError):
        _guest.check_guest_os("macos")
    assert _guest.check_guest_os("Linux") == "linux"


def test_guest_of_created_opened_and_hosted_systems() -> None:
    uvm_id = new_id("uvm")
    with ComputeSystem.create(uvm_id, LINUX_VM) as uvm:
        assert uvm.guest_os == "linux"
        uvm.start()
        with ComputeSystem.open(uvm_id) as again:
            assert again.guest_os == "linux"  # asked: RuntimeOsType
        with ComputeSystem.open(uvm_id, guest_os="windows") as told:
            assert told.guest_os == "windows"  # the caller said so
        hosted_config = {**CONFIG, "HostingSystemId": uvm_id}
        hosted_id = new_id("lcow")
        with ComputeSystem.create(hosted_id, hosted_config) as hosted:
            assert hosted.guest_os == "linux"  # from its host
            with ComputeSystem.open(hosted_id) as opened:
                assert opened.guest_os == "linux"
    with ComputeSystem.create(new_id("wc"), CONFIG) as container:
        assert container.guest_os == "windows"
    with ComputeSystem.create(new_id("wc"), CONFIG, guest_os="linux") as container:
        assert container.guest_os == "linux"
    with pytest.raises(ValueError):
        ComputeSystem.create(new_id("wc"), CONFIG, guest_os="dos")


# ------------------------------------------------------------------------------ end to end

ECHO_ARGV = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"


def _received(system: ComputeSystem, args: list[str]) -> list[str]:
    result = system.run([sys.executable, "-c", ECHO_ARGV, *args], timeout=30)
    assert result.returncode == 0, result.stderr
    value: list[str] = json.loads(result.stdout or b"null")
    return value


def _windows_parsing_available() -> bool:
    return "ContainerCommandLine" in emulator.settings()


def _check_exact_argv(system: ComputeSystem) -> None:
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(args_lists)
    def check(args: list[str]) -> None:
        assert _received(system, args) == args

    check()


@pytest.mark.parametrize("mode", ["default", "windows"])
def test_windows_guest_receives_exactly_the_argv(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # "default": whatever the emulator does by default (a shell, or the Windows rules): an
    # argument list must arrive intact either way. "windows": HCS' own behaviour, forced.
    sent: list[str] = []
    if mode == "windows":
        if not _windows_parsing_available():
            pytest.skip("this emulator has no ContainerCommandLine switch (it runs every CommandLine through a shell)")
        real = process_mod.process_parameters

        def spy(*a: Any, **k: Any) -> str:
            text = real(*a, **k)
            sent.append(text)
            return text

        monkeypatch.setattr("pyhcs.system.process_parameters", spy)
    with ComputeSystem.create(new_id("argv"), PYTHON_CONFIG) as system:
        system.start()
        if mode == "windows":
            emulator.configure(ContainerCommandLine="Windows", ContainerCommandArgs="Refuse")
        _check_exact_argv(system)
        if mode == "windows":
            assert sent and all("CommandLine" in json.loads(t) and "CommandArgs" not in json.loads(t) for t in sent)


def test_linux_guest_receives_exactly_the_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    real = process_mod.process_parameters

    def spy(*a: Any, **k: Any) -> str:
        text = real(*a, **k)
        sent.append(text)
        return text

    monkeypatch.setattr("pyhcs.system.process_parameters", spy)
    uvm_id = new_id("uvm")
    with ComputeSystem.create(uvm_id, LINUX_VM) as uvm:
        uvm.start()
        with ComputeSystem.create(new_id("lcow"), {**PYTHON_CONFIG, "HostingSystemId": uvm_id}) as system:
            system.start()
            if _windows_parsing_available():
                emulator.configure(ContainerCommandLine="Windows", ContainerCommandArgs="Refuse")
            _check_exact_argv(system)
    assert sent and all("CommandArgs" in json.loads(t) and "CommandLine" not in json.loads(t) for t in sent)


def test_hyperv_isolated_windows_container_is_a_windows_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Container hosted in a Windows utility VM: its document says nothing of the guest (it
    # names its host), the host's does; it takes CommandLine, never CommandArgs.
    sent: list[str] = []
    real = process_mod.process_parameters

    def spy(*a: Any, **k: Any) -> str:
        text = real(*a, **k)
        sent.append(text)
        return text

    monkeypatch.setattr("pyhcs.system.process_parameters", spy)
    uvm_id = new_id("wuvm")
    with ComputeSystem.create(uvm_id, WINDOWS_VM) as uvm:
        assert uvm.guest_os == "windows"
        uvm.start()
        hosted_id = new_id("wcow")
        with ComputeSystem.create(hosted_id, {**PYTHON_CONFIG, "HostingSystemId": uvm_id}) as system:
            assert system.guest_os == "windows"
            with ComputeSystem.open(hosted_id) as opened:
                assert opened.guest_os == "windows"
            system.start()
            if _windows_parsing_available():
                emulator.configure(ContainerCommandLine="Windows", ContainerCommandArgs="Refuse")
            _check_exact_argv(system)
    assert sent and all("CommandLine" in json.loads(t) and "CommandArgs" not in json.loads(t) for t in sent)


# ------------------------------------------------------------------------------ signals


@pytest.fixture
def signal_docs(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    docs: list[str | None] = []
    real = process_mod._signal_process

    def spy(handle: int, op: int, doc: str | None) -> None:
        docs.append(doc)
        real(handle, op, doc)

    monkeypatch.setattr(process_mod, "_signal_process", spy)
    return docs


def test_windows_guest_signals_are_ctrl_events(signal_docs: list[str | None]) -> None:
    with ComputeSystem.create(new_id("sig"), CONFIG) as system:
        system.start()
        for sig, code in (("SIGINT", 130), (15, 143), ("CtrlBreak", 131)):
            with system.create_process(["sleep", "30"]) as p:
                assert p.signal(sig) is True
                assert p.wait(10) == code
        assert [json.loads(d or "null") for d in signal_docs] == [
            {"Signal": "CtrlC"}, {"Signal": "CtrlShutdown"}, {"Signal": "CtrlBreak"}]
        with system.create_process(["sleep", "30"]) as p:
            before = emulator.call_counts().get("HcsSignalProcess", 0)
            with pytest.raises(errors.InvalidArgumentError, match="CtrlC"):
                p.signal(9)  # no Ctrl event ends a process: refused before reaching HCS
            assert emulator.call_counts().get("HcsSignalProcess", 0) == before
            with pytest.raises(TypeError):
                p.signal(True)
            assert p.kill() is True  # HcsTerminateProcess: no signal document at all
            assert p.wait(10) == 137
        assert len(signal_docs) == 3


def test_linux_guest_signals_are_posix_numbers(signal_docs: list[str | None]) -> None:
    uvm_id = new_id("uvm")
    with ComputeSystem.create(uvm_id, LINUX_VM) as uvm:
        uvm.start()
        with ComputeSystem.create(new_id("lcow"), {**CONFIG, "HostingSystemId": uvm_id}) as system:
            system.start()
            for sig, code in (("CtrlC", 130), (9, 137), ("SIGTERM", 143)):
                with system.create_process(["sleep", "30"]) as p:
                    assert p.signal(sig) is True
                    assert p.wait(10) == code
    assert [json.loads(d or "null") for d in signal_docs] == [{"Signal": 2}, {"Signal": 9}, {"Signal": 15}]


def test_aio_guests(signal_docs: list[str | None]) -> None:
    import asyncio

    from pyhcs import aio

    async def main() -> None:
        uvm_id = new_id("uvm")
        async with await aio.ComputeSystem.create(uvm_id, LINUX_VM) as uvm:
            await uvm.start()
            async with await aio.ComputeSystem.create(new_id("lcow"), {**PYTHON_CONFIG, "HostingSystemId": uvm_id}) as lcow:
                await lcow.start()
                assert await lcow.guest_os() == "linux"
                result = await lcow.run([sys.executable, "-c", ECHO_ARGV, "a b", "", 'q"', "\\"])
                assert json.loads(result.stdout or b"null") == ["a b", "", 'q"', "\\"]
                async with await lcow.create_process(["sleep", "30"]) as p:
                    assert await p.signal("CtrlC") is True
                    assert await p.wait(10) == 130
            opened = await aio.open(uvm_id)
            try:
                assert await opened.guest_os(timeout=10) == "linux"  # asked in a thread
            finally:
                opened.close()
        async with await aio.ComputeSystem.create(new_id("wc"), CONFIG) as system:
            await system.start()
            assert await system.guest_os() == "windows"
            async with await system.create_process(["sleep", "30"]) as p:
                with pytest.raises(errors.InvalidArgumentError):
                    await p.signal(9)
                assert await p.signal(2) is True
                assert await p.wait(10) == 130

    asyncio.run(main())
    assert [json.loads(d or "null") for d in signal_docs] == [{"Signal": 2}, {"Signal": "CtrlC"}]
