"""Compute systems at the raw level (spec sections 2.2 and 5), on both backends."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from images import make_vhdx

from pyhcs import errors
from pyhcs._native._types import EventType, HcsEvent

from rawutil import (
    close_info,
    container_config,
    ignore_event,
    new_id,
    operation,
    running_system,
    set_switches,
    start_process,
    wait,
)


def props(hcs: ModuleType, h: int, *types: str) -> dict[str, Any]:
    with operation(hcs) as op:
        hcs.hcs_get_compute_system_properties(h, op, json.dumps({"PropertyTypes": list(types)}) if types else None)
        result: dict[str, Any] = json.loads(wait(hcs, op) or "{}")
        return result


def call(hcs: ModuleType, fn: Any, h: int, options: str | None = None) -> str | None:
    with operation(hcs) as op:
        fn(h, op, options)
        return wait(hcs, op)


@pytest.mark.parametrize(
    "config, needle",
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (json.dumps({"Container": {}}), "SchemaVersion is required"),
        (json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}}), "Exactly one of"),
        (json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}, "VirtualMachine": {}}), "Exactly one"),
        (json.dumps({"SchemaVersion": {"Major": 2, "Minor": 99}, "Container": {}}), "not supported"),
        (json.dumps({"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": 5, "Container": {}}), "Owner"),
    ],
)
def test_invalid_configuration_fails_the_operation(hcs: ModuleType, config: str, needle: str) -> None:
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id(), config, op)
        assert h != 0  # the handle comes back even though creation will fail
        try:
            with pytest.raises(errors.InvalidJsonError) as exc:
                wait(hcs, op)
            assert needle in exc.value.message
            assert exc.value.error_events and needle in exc.value.error_events[0]["Message"]
            hcs.hcs_start_compute_system(h, op)
            with pytest.raises(errors.SystemNotFoundError):
                wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(h)


def test_synchronous_argument_checks(hcs: ModuleType) -> None:
    with operation(hcs) as op:
        with pytest.raises(errors.InvalidArgumentError):
            hcs.hcs_create_compute_system("", container_config(), op)
        with pytest.raises(errors.InvalidArgumentError):
            hcs.hcs_open_compute_system("x", 0)
        with pytest.raises(ValueError):
            hcs.hcs_create_compute_system("a\x00b", container_config(), op)
        with pytest.raises(errors.InvalidHandleError):
            hcs.hcs_start_compute_system(0xBAD0, op)
        with pytest.raises(errors.InvalidHandleError):
            hcs.hcs_create_compute_system("x", container_config(), 0xBAD0)
    hcs.hcs_close_compute_system(0xBAD0)


def test_duplicate_id_and_open(hcs: ModuleType) -> None:
    sid = new_id()
    with running_system(hcs, sid) as h, operation(hcs) as op:
        dup = hcs.hcs_create_compute_system(sid, container_config(), op)
        try:
            with pytest.raises(errors.SystemAlreadyExistsError) as exc:
                wait(hcs, op)
            assert isinstance(exc.value, FileExistsError)
        finally:
            hcs.hcs_close_compute_system(dup)
        other = hcs.hcs_open_compute_system(sid)
        try:
            assert other != h
            assert props(hcs, other)["Id"] == sid
        finally:
            hcs.hcs_close_compute_system(other)
    with pytest.raises(errors.SystemNotFoundError) as nf:
        hcs.hcs_open_compute_system(sid)
    assert isinstance(nf.value, FileNotFoundError)


def test_enumerate_filters(hcs: ModuleType) -> None:
    a, b = new_id("enum"), new_id("enum")
    with running_system(hcs, a, Owner="alice"), running_system(hcs, b, Owner="bob"), operation(hcs) as op:
        def ids(query: dict[str, Any] | None) -> set[str]:
            hcs.hcs_enumerate_compute_systems(json.dumps(query) if query is not None else None, op)
            return {p["Id"] for p in json.loads(wait(hcs, op) or "[]")}

        assert {a, b} <= ids(None)
        assert ids({"Ids": [a]}) == {a}
        assert ids({"Owners": ["bob"], "Ids": [a, b]}) == {b}
        assert ids({"Names": [b]}) == {b}
        assert ids({"Types": ["VirtualMachine"], "Ids": [a, b]}) == set()
        assert {a, b} <= ids({"Types": ["Container"]})
        hcs.hcs_enumerate_compute_systems(json.dumps({"Ids": "x"}), op)
        with pytest.raises(errors.InvalidJsonError):
            wait(hcs, op)


def test_state_machine(hcs: ModuleType, tmp_path: Path) -> None:
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id(), container_config(), op)
        try:
            wait(hcs, op)
            assert props(hcs, h)["State"] == "Created"
            for fn in (hcs.hcs_pause_compute_system, hcs.hcs_resume_compute_system, hcs.hcs_save_compute_system,
                       hcs.hcs_shut_down_compute_system, hcs.hcs_crash_compute_system):
                with pytest.raises(errors.InvalidStateError):
                    call(hcs, fn, h)
            call(hcs, hcs.hcs_start_compute_system, h)
            assert props(hcs, h)["State"] == "Running"
            with pytest.raises(errors.InvalidStateError):
                call(hcs, hcs.hcs_start_compute_system, h)
            with pytest.raises(errors.InvalidStateError):
                call(hcs, hcs.hcs_resume_compute_system, h)
            with pytest.raises(errors.InvalidStateError) as running:
                call(hcs, hcs.hcs_save_compute_system, h, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": "/tmp/x"}))
            assert "still running" in running.value.message
            call(hcs, hcs.hcs_pause_compute_system, h, json.dumps({"SuspensionLevel": "Suspend"}))
            assert props(hcs, h)["State"] == "Paused"
            with pytest.raises(errors.InvalidJsonError):
                call(hcs, hcs.hcs_pause_compute_system, h, json.dumps({"SuspensionLevel": "Deep"}))
            vmrs = tmp_path / "state.vmrs"
            call(hcs, hcs.hcs_save_compute_system, h, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(vmrs)}))
            assert vmrs.read_bytes().startswith(b"HCSEMU-VMRS 1\n")
            compat = json.loads(hcs.hcs_get_processor_compatibility_from_saved_state(str(vmrs)))
            assert "ProcessorFeatures" in compat and compat["CacheLineFlushSize"] > 0
            assert props(hcs, h)["State"] == "Paused"
            call(hcs, hcs.hcs_resume_compute_system, h)
            call(hcs, hcs.hcs_shut_down_compute_system, h)
            p = props(hcs, h)
            assert p["State"] == "Stopped" and p["Stopped"] is True and p["ExitType"] == "GracefulExit"
            for fn in (hcs.hcs_shut_down_compute_system, hcs.hcs_terminate_compute_system):
                with pytest.raises(errors.SystemAlreadyStoppedError) as stopped:
                    call(hcs, fn, h)
                assert errors.is_already_stopped(stopped.value)
            with pytest.raises(errors.SystemAlreadyStoppedError):
                call(hcs, hcs.hcs_modify_compute_system, h, json.dumps({"ResourcePath": "Container/Memory/SizeInMB", "RequestType": "Update", "Settings": 5}))
        finally:
            hcs.hcs_close_compute_system(h)


def test_save_as_template(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        call(hcs, hcs.hcs_pause_compute_system, h)
        call(hcs, hcs.hcs_save_compute_system, h, json.dumps({"SaveType": "AsTemplate"}))
        assert props(hcs, h)["State"] == "SavedAsTemplate"


def _proc_state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def test_pause_really_stops_processes(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "sleep 30")
        try:
            call(hcs, hcs.hcs_pause_compute_system, h)
            assert _proc_state(info.process_id) in "TtD"  # stopped (D: still in a syscall, stops on return)
            call(hcs, hcs.hcs_resume_compute_system, h)
            assert _proc_state(info.process_id) in "SRD"
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_properties(hcs: ModuleType) -> None:
    with running_system(hcs, ShouldTerminateOnLastHandleClosed=True) as h:
        p, info = start_process(hcs, h, "sleep 5")
        try:
            doc = props(hcs, h, "Statistics", "ProcessList", "TerminateOnLastHandleClosed", "SystemGUID", "Memory")
            assert doc["SystemType"] == "Container" and doc["Owner"] == "pyhcs-tests"
            assert doc["TerminateOnLastHandleClosed"] is True
            assert doc["SystemGUID"] == doc["RuntimeId"]
            pids = {x["ProcessId"] for x in doc["ProcessList"]}
            assert info.process_id in pids
            stats = doc["Statistics"]
            assert stats["Memory"]["MemoryUsageCommitBytes"] > 0
            assert {"Processor", "Storage", "Uptime100ns", "Timestamp"} <= set(stats)
            with pytest.raises(errors.InvalidJsonError):
                props(hcs, h, "NoSuchProperty")
            with pytest.raises(errors.NotSupportedError):
                props(hcs, h, "CpuGroup")
            with operation(hcs) as op:
                hcs.hcs_get_compute_system_properties(h, op, json.dumps({"Queries": {"Statistics": {}, "Bogus": {}}}))
                resp = json.loads(wait(hcs, op) or "{}")["PropertyResponses"]
            assert "Response" in resp["Statistics"] and "Error" in resp["Bogus"]
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_statistics_count_cpu_of_exited_processes(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
        try:
            hcs.hcs_wait_for_process_exit(p, 60_000)
        finally:
            hcs.hcs_close_process(p)
            close_info(info)
        cpu = props(hcs, h, "Statistics")["Statistics"]["Processor"]["TotalRuntime100ns"]
        assert cpu > 0


def test_modify_is_recorded_and_reflected(hcs: ModuleType, tmp_path: Path) -> None:
    image = make_vhdx(tmp_path / "d.vhdx")
    vm = {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": {"ComputeTopology": {"Memory": {"SizeInMB": 512}}}}
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(new_id("vm"), json.dumps(vm), op)
        try:
            wait(hcs, op)
            call(hcs, hcs.hcs_start_compute_system, h)
            assert props(hcs, h, "Memory")["Memory"]["VirtualMachineMemory"]["AssignedMemory"] == 512
            req = {"ResourcePath": "VirtualMachine/ComputeTopology/Memory/SizeInMB", "RequestType": "Update", "Settings": 1024}
            call(hcs, hcs.hcs_modify_compute_system, h, json.dumps(req))
            assert props(hcs, h, "Memory")["Memory"]["VirtualMachineMemory"]["AssignedMemory"] == 1024
            disk = {"ResourcePath": "VirtualMachine/Devices/Scsi/0/Attachments/1", "RequestType": "Add",
                    "Settings": {"Type": "VirtualDisk", "Path": str(image)}}
            call(hcs, hcs.hcs_modify_compute_system, h, json.dumps(disk))
            cfg = props(hcs, h, "EmulatorConfiguration")["EmulatorConfiguration"]
            assert cfg["VirtualMachine"]["Devices"]["Scsi"]["0"]["Attachments"]["1"]["Type"] == "VirtualDisk"
            with pytest.raises(errors.AlreadyExistsError):
                call(hcs, hcs.hcs_modify_compute_system, h, json.dumps(disk))
            call(hcs, hcs.hcs_modify_compute_system, h, json.dumps({**disk, "RequestType": "Remove"}))
            with pytest.raises(errors.ElementNotFoundError):
                call(hcs, hcs.hcs_modify_compute_system, h, json.dumps({**disk, "RequestType": "Remove"}))
            with pytest.raises(errors.InvalidJsonError):
                call(hcs, hcs.hcs_modify_compute_system, h, json.dumps({**disk, "RequestType": "Replace"}))
            with pytest.raises(errors.NotSupportedError):
                call(hcs, hcs.hcs_modify_compute_system, h, json.dumps({**disk, "ResourcePath": "Container/Memory/SizeInMB"}))
            with pytest.raises(errors.InvalidJsonError):
                call(hcs, hcs.hcs_modify_compute_system, h, "{")
            assert props(hcs, h)["RuntimeOsType"] == "Windows"
            call(hcs, hcs.hcs_terminate_compute_system, h)
        finally:
            hcs.hcs_close_compute_system(h)


def test_wait_for_exit(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        with pytest.raises(errors.OperationTimeoutError):
            hcs.hcs_wait_for_compute_system_exit(h, 20)
        result: list[str | None] = []
        t = threading.Thread(target=lambda: result.append(hcs.hcs_wait_for_compute_system_exit(h, 10_000)))
        t.start()
        time.sleep(0.05)
        call(hcs, hcs.hcs_terminate_compute_system, h)
        t.join(10)
        assert json.loads(result[0] or "{}")["ExitType"] == "ForcedExit"


def test_wait_exit_timeout_code_is_switchable(hcs: ModuleType) -> None:
    set_switches(hcs, WaitExitTimeoutResult="WaitTimeout")
    with running_system(hcs) as h, pytest.raises(errors.WaitTimeoutError):
        hcs.hcs_wait_for_compute_system_exit(h, 10)


def test_system_events_exit_and_crash(hcs: ModuleType) -> None:
    for action, expected_type in (("terminate", "ForcedExit"), ("crash", "UnexpectedExit"), ("unexpected", "UnexpectedExit")):
        events: list[Any] = []
        exited = threading.Event()

        def on_event(ev: Any, ctx: int, events: list[Any] = events, exited: threading.Event = exited) -> None:
            events.append(ev)
            if ev.type == EventType.SYSTEM_EXITED:
                exited.set()

        with running_system(hcs) as h:
            hcs.hcs_set_compute_system_callback(h, 0, 1, on_event)
            if action == "terminate":
                call(hcs, hcs.hcs_terminate_compute_system, h)
            elif action == "crash":
                call(hcs, hcs.hcs_crash_compute_system, h, json.dumps({"Type": "CrashGuest"}))
            else:
                sid = props(hcs, h)["Id"]
                hcs.hcs_modify_service_settings(json.dumps(
                    {"PropertyType": "EmulatorActions", "Settings": {"Action": "UnexpectedExit", "SystemId": sid}}))
            assert exited.wait(10), action
            hcs.flush_callbacks()
        types = [e.type for e in events]
        assert types.count(EventType.SYSTEM_EXITED) == 1
        status = json.loads(events[types.index(EventType.SYSTEM_EXITED)].event_data)
        assert status["ExitType"] == expected_type
        if action == "crash":
            assert types[:2] == [EventType.SYSTEM_CRASH_INITIATED, EventType.SYSTEM_CRASH_REPORT]
            report = json.loads(events[1].event_data)
            hcs.hcs_submit_wer_report(json.dumps(report))


def test_one_callback_per_handle(hcs: ModuleType) -> None:
    with running_system(hcs) as h:
        hcs.hcs_set_compute_system_callback(h, 0, 1, ignore_event)
        with pytest.raises(errors.OperationSystemCallbackAlreadySetError):
            hcs.hcs_set_compute_system_callback(h, 0, 2, ignore_event)
        with pytest.raises(errors.InvalidArgumentError):
            other = hcs.hcs_open_compute_system(props(hcs, h)["Id"])
            try:
                hcs.hcs_set_compute_system_callback(other, 0x40, 2, ignore_event)
            finally:
                hcs.hcs_close_compute_system(other)


def test_no_event_after_close(hcs: ModuleType) -> None:
    events: list[HcsEvent] = []
    with running_system(hcs) as h:
        sid = props(hcs, h)["Id"]
        watcher = hcs.hcs_open_compute_system(sid)

        def on_event(e: HcsEvent, c: int) -> None:
            events.append(e)

        hcs.hcs_set_compute_system_callback(watcher, 0, 1, on_event)
        hcs.hcs_close_compute_system(watcher)
        call(hcs, hcs.hcs_terminate_compute_system, h)
        hcs.flush_callbacks()
    assert events == []


@pytest.mark.parametrize("terminate_on_close", [True, False])
def test_last_handle_close(hcs: ModuleType, terminate_on_close: bool) -> None:
    sid = new_id()
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(sid, container_config(ShouldTerminateOnLastHandleClosed=terminate_on_close), op)
        wait(hcs, op)
        call(hcs, hcs.hcs_start_compute_system, h)
        _, info = start_process(hcs, h, "sleep 30")
        close_info(info)
        hcs.hcs_close_compute_system(h)
        deadline = time.monotonic() + 10
        if terminate_on_close:
            while time.monotonic() < deadline:
                try:
                    hcs.hcs_close_compute_system(hcs.hcs_open_compute_system(sid))
                except errors.SystemNotFoundError:
                    break
                time.sleep(0.02)
            with pytest.raises(errors.SystemNotFoundError):
                hcs.hcs_open_compute_system(sid)
            with pytest.raises(ProcessLookupError):
                while time.monotonic() < deadline:
                    os.kill(info.process_id, 0)
                    time.sleep(0.02)
        else:
            again = hcs.hcs_open_compute_system(sid)
            assert props(hcs, again)["State"] == "Running"
            call(hcs, hcs.hcs_terminate_compute_system, again)
            hcs.hcs_close_compute_system(again)


def test_shutdown_escalation_with_ignored_shutdown(hcs: ModuleType) -> None:
    set_switches(hcs, IgnoreShutdown=True)
    with running_system(hcs) as h:
        shutdown = hcs.hcs_create_operation()
        try:
            hcs.hcs_shut_down_compute_system(h, shutdown, None)
            with pytest.raises(errors.OperationTimeoutError):
                hcs.hcs_wait_for_operation_result(shutdown, 100)
            call(hcs, hcs.hcs_terminate_compute_system, h)
            with pytest.raises(errors.TerminatedError):
                hcs.hcs_wait_for_operation_result(shutdown, 10_000)
        finally:
            hcs.hcs_close_operation(shutdown)
        assert props(hcs, h)["ExitType"] == "ForcedExit"


def test_graceful_shutdown_escalates_after_grace(hcs: ModuleType) -> None:
    set_switches(hcs, ShutdownGraceMs=100)
    with running_system(hcs) as h:
        p, info = start_process(hcs, h, "trap '' TERM; sleep 30")
        try:
            time.sleep(0.1)
            call(hcs, hcs.hcs_shut_down_compute_system, h)
            assert props(hcs, h)["State"] == "Stopped"
            status = json.loads(hcs.hcs_wait_for_process_exit(p, 5000) or "{}")
            assert status["Exited"] and status["ExitCode"] == 128 + 9
        finally:
            hcs.hcs_close_process(p)
            close_info(info)


def test_service_disconnect(hcs: ModuleType) -> None:
    events: list[int] = []
    got = threading.Event()
    def on_event(e: HcsEvent, c: int) -> None:
        events.append(e.type)
        got.set()

    with running_system(hcs) as h, operation(hcs) as hung:
        hcs.hcs_set_compute_system_callback(h, 0, 1, on_event)
        hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Faults": [{"Function": "HcsGetComputeSystemProperties", "Hang": True, "Count": 1}]}}))
        hcs.hcs_get_compute_system_properties(h, hung, None)
        hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorActions", "Settings": {"Action": "ServiceDisconnect"}}))
        with pytest.raises(errors.ServiceDisconnectedError):
            hcs.hcs_wait_for_operation_result(hung, 5000)
        assert got.wait(5)
        assert EventType.SERVICE_DISCONNECT in events
        with operation(hcs) as op, pytest.raises(errors.ServiceDisconnectedError):
            hcs.hcs_get_compute_system_properties(h, op, None)
        with pytest.raises(errors.ServiceDisconnectedError):
            hcs.hcs_wait_for_compute_system_exit(h, 1000)
        hcs.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorActions", "Settings": {"Action": "Reconnect"}}))
        assert props(hcs, h)["State"] == "Running"


def test_restore_from_saved_state_and_template(hcs: ModuleType, tmp_path: Path) -> None:
    vmrs = tmp_path / "saved.vmrs"
    empty = tmp_path / "empty.vmrs"
    hcs.hcs_create_empty_runtime_state_file(str(empty))
    template_id = new_id("tmpl")
    with running_system(hcs, template_id) as h:
        call(hcs, hcs.hcs_pause_compute_system, h)
        call(hcs, hcs.hcs_save_compute_system, h, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(vmrs)}))

        def create(restore: dict[str, Any]) -> None:
            vm = {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": {"RestoreState": restore}}
            with operation(hcs) as op:
                r = hcs.hcs_create_compute_system(new_id("restored"), json.dumps(vm), op)
                try:
                    wait(hcs, op)
                    hcs.hcs_terminate_compute_system(r, op)
                    wait(hcs, op)
                finally:
                    hcs.hcs_close_compute_system(r)

        create({"SaveStateFilePath": str(vmrs)})
        with pytest.raises(errors.InvalidDataError):
            create({"SaveStateFilePath": str(empty)})
        with pytest.raises(errors.Win32FileNotFoundError):
            create({"SaveStateFilePath": str(tmp_path / "missing.vmrs")})
        with pytest.raises(errors.InvalidStateError):
            create({"TemplateSystemId": template_id})
        call(hcs, hcs.hcs_save_compute_system, h, json.dumps({"SaveType": "AsTemplate"}))
        create({"TemplateSystemId": template_id})
        with pytest.raises(errors.SystemNotFoundError):
            create({"TemplateSystemId": "no-such-template"})
