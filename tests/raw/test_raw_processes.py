"""Processes at the raw level (spec sections 2.3 and 6): real children, real pipes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhcs import errors
from pyhcs._native._types import EventType, HcsEvent, OperationType

from rawutil import close_info, operation, read_all, running_system, set_switches, shell_cmdline, start_process, wait


def modify(hcs: ModuleType, p: int, request: dict[str, Any]) -> None:
    with operation(hcs) as op:
        hcs.hcs_modify_process(p, op, json.dumps(request))
        wait(hcs, op)


def status(hcs: ModuleType, p: int) -> dict[str, Any]:
    with operation(hcs) as op:
        hcs.hcs_get_process_properties(p, op, None)
        result: dict[str, Any] = json.loads(wait(hcs, op) or "{}")
        return result


def test_stdout_stderr_exit_code(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(
            hcs, h, "echo out; echo err >&2; exit 7", CreateStdOutPipe=True, CreateStdErrPipe=True
        )
        try:
            assert info.std_input is None
            assert read_all(info.std_output) == b"out\n"
            assert read_all(info.std_error) == b"err\n"
            done = json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")
            assert done == {"ProcessId": info.process_id, "Exited": True, "ExitCode": 7, "LastWaitResult": 0}
            assert status(hcs, p)["ExitCode"] == 7
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_stdin_needs_close_handle_for_eof(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "cat", CreateStdInPipe=True, CreateStdOutPipe=True)
        try:
            os.write(info.std_input, b"hello")
            os.close(info.std_input)
            # closing our end alone is not EOF: the service holds the pipe (as HCS does)
            with pytest.raises(errors.OperationTimeoutError):
                hcs.hcs_wait_for_process_exit(p, 100)
            modify(hcs, p, {"Operation": "CloseHandle", "CloseHandle": {"Handle": "StdIn"}})
            assert read_all(info.std_output) == b"hello"
            assert json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")["ExitCode"] == 0
        finally:
            hcs.hcs_close_process(p)
            os.close(info.std_output)


def test_environment_working_directory_and_args(hcs: ModuleType, tmp_path: Path) -> None:
    # the working directory is a host folder: mapped, as an isolated Container sees no other
    mapped = {"HostPath": str(tmp_path), "ContainerPath": str(tmp_path)}
    with running_system(hcs, Container={"MappedDirectories": [mapped]}) as h:
        p, info = start_process(
            hcs, h, 'printf "%s|%s" "$GREETING" "$(pwd)"', CreateStdOutPipe=True,
            Environment={"GREETING": "héllo wörld"}, WorkingDirectory=str(tmp_path),
        )
        try:
            assert read_all(info.std_output).decode() == f"héllo wörld|{tmp_path}"
        finally:
            hcs.hcs_close_process(p)
            close_info(info)
        with operation(hcs) as op:
            # quoted for a Windows guest; the same words through /bin/sh -c (ContainerCommandLine Shell)
            params = {"CommandLine": '/bin/echo "a b" c', "CreateStdOutPipe": True}
            p = hcs.hcs_create_process(h, json.dumps(params), op)
            info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
            try:
                assert read_all(info.std_output) == b"a b c\n"
                assert hcs.hcs_get_operation_type(op) == OperationType.CREATE_PROCESS
                assert hcs.hcs_get_process_from_operation(op) == p
            finally:
                hcs.hcs_close_process(p)
                close_info(info)


@pytest.mark.parametrize(
    "params, error",
    [
        ({"CommandLine": "true", "WorkingDirectory": "/no/such/dir"}, errors.HcsError),
        ({"CommandLine": "/no/such/binary"}, errors.Win32FileNotFoundError),
        ({"CommandArgs": ["/bin/true"]}, errors.InvalidArgumentError),  # only Linux guests take it
        ({"CommandLine": 5}, errors.InvalidJsonError),
        ({"CommandLine": "true", "CreateStdOutPipe": "yes"}, errors.InvalidJsonError),
        ({"CommandLine": "true", "Environment": {"A": 1}}, errors.InvalidJsonError),
        ({}, errors.InvalidArgumentError),
        ({"CommandLine": "true", "Environment": ["A=1"]}, errors.InvalidJsonError),
    ],
)
def test_create_process_errors(hcs: ModuleType, params: dict[str, Any], error: type[Exception]) -> None:
    # a Container as HCS has it: a Windows guest (no shell, no CommandArgs), whatever the defaults
    set_switches(hcs, ContainerCommandLine="Windows", ContainerCommandArgs="Refuse")
    with running_system(hcs) as h, operation(hcs) as op:
        p = hcs.hcs_create_process(h, json.dumps(params), op)
        try:
            with pytest.raises(error):
                hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
        finally:
            hcs.hcs_close_process(p)
        p = hcs.hcs_create_process(h, "{bad", op)
        try:
            with pytest.raises(errors.InvalidJsonError):
                wait(hcs, op)
        finally:
            hcs.hcs_close_process(p)


def test_process_in_a_system_that_is_not_running(hcs: ModuleType) -> None:
    with running_system(hcs) as h, operation(hcs) as op:
        hcs.hcs_pause_compute_system(h, op, None)
        wait(hcs, op)
        p = hcs.hcs_create_process(h, json.dumps({"CommandLine": "true"}), op)
        try:
            with pytest.raises(errors.InvalidStateError):
                wait(hcs, op)
        finally:
            hcs.hcs_close_process(p)


@pytest.mark.parametrize("signal, code", [(15, 143), ("CtrlC", 130), ("CtrlBreak", 131), (9, 137)])
def test_signals(hcs: ModuleType, signal: Any, code: int) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "exec sleep 30")
        try:
            with operation(hcs) as op:
                hcs.hcs_signal_process(p, op, json.dumps({"Signal": signal}))
                wait(hcs, op)
                assert hcs.hcs_get_operation_type(op) == OperationType.SIGNAL_PROCESS
            assert json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")["ExitCode"] == code
            with operation(hcs) as op:
                hcs.hcs_signal_process(p, op, json.dumps({"Signal": 15}))
                with pytest.raises(errors.ProcessAlreadyStoppedError):
                    wait(hcs, op)
                hcs.hcs_signal_process(p, op, json.dumps({"Signal": "CtrlNope"}))
                with pytest.raises(errors.InvalidJsonError):
                    wait(hcs, op)
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_terminate_open_and_properties(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "exec sleep 30")
        try:
            other = hcs.hcs_open_process(h, info.process_id)
            assert status(hcs, other)["Exited"] is False
            with operation(hcs) as op:
                hcs.hcs_terminate_process(other, op, None)
                wait(hcs, op)
            assert json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")["Exited"] is True
            with operation(hcs) as op:
                # Windows semantics: TerminateProcess after exit is access denied
                hcs.hcs_terminate_process(p, op, None)
                with pytest.raises(errors.Win32AccessDeniedError):
                    wait(hcs, op)
            with pytest.raises(errors.ProcessAlreadyStoppedError):
                modify(hcs, p, {"Operation": "CloseHandle", "CloseHandle": {"Handle": "StdIn"}})
            hcs.hcs_close_process(other)
            with pytest.raises(errors.ElementNotFoundError):
                hcs.hcs_open_process(h, info.process_id)
            with pytest.raises(errors.ElementNotFoundError):
                hcs.hcs_open_process(h, 1)
            with pytest.raises(errors.InvalidHandleError):
                hcs.hcs_open_process(0xBAD0, 1)
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_get_process_info_gives_new_handles(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "cat", CreateStdInPipe=True, CreateStdOutPipe=True)
        try:
            with operation(hcs) as op:
                hcs.hcs_get_process_info(p, op)
                again, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
            assert again.process_id == info.process_id
            assert again.std_input not in (None, info.std_input)
            # stdout has one reader, the creator: the service keeps no copy of it, so a reader
            # that closes it gives the writer SIGPIPE (see docs/emulator.md)
            assert again.std_output is None
            os.write(again.std_input, b"via the second handle")
            for fd in (again.std_input, info.std_input):
                os.close(fd)
            modify(hcs, p, {"Operation": "CloseHandle", "CloseHandle": {"Handle": "StdIn"}})
            assert read_all(info.std_output) == b"via the second handle"
        finally:
            hcs.hcs_close_process(p)
            os.close(info.std_output)


def test_create_process_sync_quirk_and_recovery(hcs: ModuleType) -> None:
    set_switches(hcs, CreateProcessSyncQuirk=True)
    with running_system(hcs) as h, operation(hcs) as op:
        p = hcs.hcs_create_process(h, json.dumps({"CommandLine": "echo recovered", "CreateStdOutPipe": True}), op)
        try:
            with pytest.raises(errors.InvalidArgumentError):
                hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
            hcs.hcs_get_process_info(p, op)  # the hcsshim recovery path
            info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, 10_000)
            assert read_all(info.std_output) == b"recovered\n"
            close_info(info)
        finally:
            hcs.hcs_close_process(p)


def test_large_output_does_not_block(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "head -c 1000000 /dev/zero", CreateStdOutPipe=True)
        try:
            assert len(read_all(info.std_output)) == 1_000_000
            assert json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")["ExitCode"] == 0
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_console_process_gets_a_terminal(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(
            hcs, h, "test -t 1 && stty size", EmulateConsole=True, CreateStdOutPipe=True, ConsoleSize=[30, 100]
        )
        try:
            out = b""
            while b"\n" not in out:
                chunk = os.read(info.std_output, 100)
                if not chunk:
                    break
                out += chunk
            assert out.strip() == b"30 100"
            assert json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")["ExitCode"] == 0
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_resize_console(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(
            hcs, h, "read x; stty size", EmulateConsole=True, CreateStdInPipe=True, CreateStdOutPipe=True
        )
        try:
            # every modify comes before the input that lets the process finish
            modify(hcs, p, {"Operation": "ConsoleSize", "ConsoleSize": {"Height": 12, "Width": 34}})
            with pytest.raises(errors.InvalidJsonError):
                modify(hcs, p, {"Operation": "ConsoleSize", "ConsoleSize": {"Height": -1}})
            with pytest.raises(errors.InvalidJsonError):
                modify(hcs, p, {"Operation": "Explode"})
            os.write(info.std_input, b"go\n")
            out = b""
            while b"12 34" not in out:
                chunk = os.read(info.std_output, 100)
                if not chunk:
                    break
                out += chunk
            assert b"12 34" in out
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_process_exited_event_only_on_process_callbacks(hcs: ModuleType) -> None:
    system_events: list[int] = []
    process_events: list[tuple[HcsEvent, int]] = []
    got = threading.Event()

    def on_system_event(e: HcsEvent, c: int) -> None:
        system_events.append(e.type)

    def on_process_event(e: HcsEvent, c: int) -> None:
        process_events.append((e, c))
        got.set()

    with running_system(hcs) as h:
        hcs.hcs_set_compute_system_callback(h, 0, 1, on_system_event)
        with operation(hcs) as op:
            p = hcs.hcs_create_process(h, json.dumps({"CommandLine": shell_cmdline("sleep 0.1; exit 4")}), op)
            hcs.hcs_set_process_callback(p, 0, 9, on_process_event)
            wait(hcs, op)
        try:
            assert got.wait(10)
            ev, ctx = process_events[0]
            assert ctx == 9 and ev.type == EventType.PROCESS_EXITED
            assert ev.event_data is not None and json.loads(ev.event_data)["ExitCode"] == 4
            hcs.flush_callbacks()
            assert EventType.PROCESS_EXITED not in system_events
        finally:
            hcs.hcs_close_process(p)


def test_wait_for_process_exit_timeout_and_bogus_handles(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "exec sleep 30")
        try:
            with pytest.raises(errors.OperationTimeoutError):
                hcs.hcs_wait_for_process_exit(p, 10)
        finally:
            hcs.hcs_close_process(p)
            close_info(info)
        with pytest.raises(errors.InvalidHandleError):
            hcs.hcs_wait_for_process_exit(p, 10)
        with operation(hcs) as op, pytest.raises(errors.InvalidHandleError):
            hcs.hcs_signal_process(p, op, None)
    hcs.hcs_close_process(p)


text_no_nul = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=200)


@settings(max_examples=25)
@given(value=text_no_nul)
def test_unicode_round_trips_through_a_real_process(hcs: ModuleType, value: str) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, 'printf "%s" "$V"', CreateStdOutPipe=True, Environment={"V": value})
        try:
            assert read_all(info.std_output) == value.encode()
        finally:
            hcs.hcs_close_process(p)
            close_info(info)
