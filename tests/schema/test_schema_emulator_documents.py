"""Every document the emulator returns parses in pyhcs.schema's strict mode (no unknown member,
no unknown enum value, right types): the properties of every property type on a container and
on Linux and Windows utility VMs, statistics, process status, service properties, errors and
the data of events. Raw API, both backends.

Where the emulator's document is what is wrong (not the schema), the case is marked
``xfail(strict=True)`` with the fix in its reason, so that it fails loudly once the emulator
is fixed and the mark can go.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Generator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pydantic
import pytest
from images import make_vhdx

from pyhcs import errors
from pyhcs.schema import (
    SERVICE_PROPERTY_MODELS,
    ComputeSystem,
    CrashReport,
    GetPropertyType,
    HcsModel,
    ProcessStatus,
    Properties,
    PropertyType,
    ResultError,
    ServiceProperties,
    SystemExitStatus,
    VmProcessorRequirements,
    builders,
    to_json,
    unknown_members,
)

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet  # what pytest.param returns (not exported)

_TIMEOUT_MS = 10_000
_ids = itertools.count()

# HcsEventType values (HCS_EVENT_TYPE).
_SYSTEM_EXITED, _CRASH_INITIATED, _CRASH_REPORT, _PROCESS_EXITED = 0x1, 0x2, 0x3, 0x10000

_KINDS = {
    "container": lambda: builders.process_isolated_container(layers=[], scratch_path="scratch"),
    "lcow": lambda: builders.linux_utility_vm(boot_files_path="/tmp"),
    "wcow": lambda: builders.windows_utility_vm(os_files_path=_WCOW_FILES[0],
                                            scratch_vhdx=_WCOW_FILES[1]),
}
# The Windows utility VM's OS share (a directory) and scratch disk (a real VHDX): the
# emulator checks a VM's devices.
_WCOW_FILES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _wcow_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    base = tmp_path_factory.mktemp("wcow")
    _WCOW_FILES[:] = [str(base), str(make_vhdx(base / "s.vhdx"))]
    yield
    _WCOW_FILES.clear()

# Property types the emulator documents as not supported (it answers ERROR_NOT_SUPPORTED).
# ProcessorTopology is the host's topology, a service property (HcsGetServiceProperties): a
# system's Properties has no member for it.
_UNSUPPORTED = {PropertyType.CPU_GROUP, PropertyType.CONTAINER_CREDENTIAL_GUARD,
                PropertyType.PROCESSOR_TOPOLOGY}

# Emulator documents that do not fit the schema, with the fix each needs (src/hcsemu): none
# today; an entry here marks its cases xfail(strict=True) until the emulator is fixed.
_EMULATOR_MISMATCH: dict[PropertyType, str] = {}


def _new_id(kind: str) -> str:
    return f"schema-docs-{kind}-{os.getpid()}-{next(_ids)}"


def _strict(model: type[HcsModel], text: str | None) -> HcsModel:
    """Parse ``text`` strictly; on failure the error says which member is wrong."""
    assert text is not None and text.strip(), "no document"
    doc = model.from_json(text, strict=True)
    assert unknown_members(doc) == []
    return doc


class _Events:
    """Collects the events of a handle's callback."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, event: Any, context: int) -> None:
        with self.lock:
            self.items.append(event)

    def of(self, event_type: int) -> list[str | None]:
        with self.lock:
            return [e.event_data for e in self.items if e.type == event_type]


@contextlib.contextmanager
def _system(hcs: ModuleType, kind: str, events: _Events | None = None
            ) -> Generator[tuple[int, int], None, None]:
    """A started system of ``kind``: ``(handle, operation)``."""
    op = hcs.hcs_create_operation()
    try:
        handle = hcs.hcs_create_compute_system(_new_id(kind), to_json(_KINDS[kind](),
                                                                      ComputeSystem), op)
        try:
            hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
            if events is not None:
                hcs.hcs_set_compute_system_callback(handle, 0, 0, events)
            hcs.hcs_start_compute_system(handle, op)
            hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
            yield handle, op
        finally:
            with contextlib.suppress(errors.HcsError):
                hcs.hcs_terminate_compute_system(handle, op)
                hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
            hcs.hcs_close_compute_system(handle)
    finally:
        hcs.hcs_close_operation(op)


def _query(hcs: ModuleType, handle: int, op: int, types: list[str] | None) -> str | None:
    query = None if types is None else json.dumps({"PropertyTypes": types})
    hcs.hcs_get_compute_system_properties(handle, op, query)
    text: str | None = hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
    return text


def _property_cases() -> list[ParameterSet]:
    cases: list[ParameterSet] = []
    for kind in _KINDS:
        for prop in PropertyType:
            marks: list[pytest.MarkDecorator] = []
            if prop in _EMULATOR_MISMATCH:
                marks.append(pytest.mark.xfail(strict=True, raises=pydantic.ValidationError,
                                               reason=_EMULATOR_MISMATCH[prop]))
            cases.append(pytest.param(kind, prop, marks=marks, id=f"{kind}-{prop.value}"))
    return cases


# --------------------------------------------------------------------------- systems


@pytest.mark.parametrize(("kind", "prop"), _property_cases())
def test_every_property_type_parses_strictly(hcs: ModuleType, kind: str,
                                             prop: PropertyType) -> None:
    with _system(hcs, kind) as (handle, op):
        if prop in _UNSUPPORTED:
            with pytest.raises(errors.NotSupportedError) as err:
                _query(hcs, handle, op, [prop.value])
            _strict(ResultError, err.value.result_document)
            return
        props = _strict(Properties, _query(hcs, handle, op, [prop.value]))
        assert isinstance(props, Properties) and props.id and props.system_type


@pytest.mark.parametrize("kind", list(_KINDS))
def test_basic_and_combined_properties_parse_strictly(hcs: ModuleType, kind: str) -> None:
    fine = [p.value for p in PropertyType if p not in _UNSUPPORTED | set(_EMULATOR_MISMATCH)]
    with _system(hcs, kind) as (handle, op):
        for types in (None, [], fine):
            props = _strict(Properties, _query(hcs, handle, op, types))
            assert isinstance(props, Properties)
        full = _strict(Properties, _query(hcs, handle, op, fine))
        assert isinstance(full, Properties)
        assert full.statistics is not None and full.process_list is not None
        assert full.memory is not None and full.system_guid


def test_enumerated_systems_parse_strictly(hcs: ModuleType) -> None:
    with _system(hcs, "container"), _system(hcs, "lcow"):
        op = hcs.hcs_create_operation()
        try:
            hcs.hcs_enumerate_compute_systems(None, op)
            text = hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        finally:
            hcs.hcs_close_operation(op)
        listed = json.loads(text)
        assert len(listed) >= 2
        for item in listed:
            _strict(Properties, json.dumps(item))


# --------------------------------------------------------------------------- processes


def test_process_documents_and_exit_event_parse_strictly(hcs: ModuleType) -> None:
    events = _Events()
    with _system(hcs, "container") as (handle, op):
        # The process outlives the callback registration: this test is about the documents,
        # not about an exit that happens before a callback is set.
        params = builders.process_parameters('sh -c "sleep 0.3; exit 3"', stdout=False, stderr=False)
        process = hcs.hcs_create_process(handle, params.to_json(), op)
        try:
            hcs.hcs_set_process_callback(process, 0, 0, events)
            hcs.hcs_wait_for_operation_result_and_process_info(op, _TIMEOUT_MS)
            status = _strict(ProcessStatus, hcs.hcs_wait_for_process_exit(process, _TIMEOUT_MS))
            assert isinstance(status, ProcessStatus) and status.exit_code == 3
            hcs.hcs_get_process_properties(process, op, None)
            _strict(ProcessStatus, hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS))
            assert hcs.flush_callbacks(5.0)
            [data] = events.of(_PROCESS_EXITED)
            exited = _strict(ProcessStatus, data)
            assert isinstance(exited, ProcessStatus) and exited.exited is True
        finally:
            hcs.hcs_close_process(process)


# --------------------------------------------------------------------------- service


@pytest.mark.parametrize("prop", [*GetPropertyType, None],
                         ids=[*(p.value for p in GetPropertyType), "default"])
def test_service_properties_parse_strictly(hcs: ModuleType, prop: GetPropertyType | None
                                           ) -> None:
    query = None if prop is None else json.dumps({"PropertyTypes": [prop.value]})
    result = _strict(ServiceProperties, hcs.hcs_get_service_properties(query))
    assert isinstance(result, ServiceProperties)
    payloads = result.properties or []
    if prop is not None:
        assert len(payloads) == 1
        _strict(SERVICE_PROPERTY_MODELS[prop.value], json.dumps(payloads[0]))


# --------------------------------------------------------------------------- errors


def test_error_documents_parse_strictly(hcs: ModuleType) -> None:
    with _system(hcs, "container") as (handle, op):
        failing: list[Callable[[], object]] = [
            lambda: hcs.hcs_start_compute_system(handle, op),
            lambda: hcs.hcs_modify_compute_system(
                handle, op, json.dumps({"ResourcePath": "Nope", "RequestType": "Add"})),
            lambda: hcs.hcs_get_compute_system_properties(
                handle, op, json.dumps({"PropertyTypes": ["Nope"]})),
            lambda: hcs.hcs_save_compute_system(handle, op, None),
        ]
        for call in failing:
            with pytest.raises(errors.HcsError) as err:
                call()
                hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
            error = _strict(ResultError, err.value.result_document)
            assert isinstance(error, ResultError) and error.error == err.value.hresult - 2**32
    op = hcs.hcs_create_operation()
    try:
        with pytest.raises(errors.InvalidJsonError) as err:
            hcs.hcs_create_compute_system(_new_id("bad"), "{not json", op)
            hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        _strict(ResultError, err.value.result_document)
    finally:
        hcs.hcs_close_operation(op)


# --------------------------------------------------------------------------- events


@pytest.mark.parametrize("stop", ["shutdown", "terminate"])
def test_system_exit_documents_parse_strictly(hcs: ModuleType, stop: str) -> None:
    events = _Events()
    with _system(hcs, "lcow", events) as (handle, op):
        call = (hcs.hcs_shut_down_compute_system if stop == "shutdown"
                else hcs.hcs_terminate_compute_system)
        call(handle, op, None)
        hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        _strict(SystemExitStatus, hcs.hcs_wait_for_compute_system_exit(handle, _TIMEOUT_MS))
        assert hcs.flush_callbacks(5.0)
        [data] = events.of(_SYSTEM_EXITED)
        _strict(SystemExitStatus, data)


def test_crash_event_documents_parse_strictly(hcs: ModuleType) -> None:
    events = _Events()
    with _system(hcs, "lcow", events) as (handle, op):
        hcs.hcs_crash_compute_system(handle, op, builders.crash_options().to_json())
        hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        assert hcs.flush_callbacks(5.0)
        for event_type in (_CRASH_INITIATED, _CRASH_REPORT):
            [data] = events.of(event_type)
            report = _strict(CrashReport, data)
            assert isinstance(report, CrashReport) and report.crash_parameters


def test_exit_after_a_crash_parses_strictly(hcs: ModuleType) -> None:
    events = _Events()
    with _system(hcs, "lcow", events) as (handle, op):
        hcs.hcs_crash_compute_system(handle, op, builders.crash_options().to_json())
        hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        status = _strict(SystemExitStatus,
                         hcs.hcs_wait_for_compute_system_exit(handle, _TIMEOUT_MS))
        assert isinstance(status, SystemExitStatus) and status.attribution
        records = status.attribution
        crash = [r.guest_crash for r in records if r.guest_crash is not None]
        assert crash and crash[0].crash_parameters and crash[0].crash_parameters[0] == 0xE2
        exits = [r.system_exit for r in records if r.system_exit is not None]
        assert all(e.detail == "UnexpectedExit" and e.initiator == "GuestOS" for e in exits)


def test_guest_memory_and_heartbeat_report_the_system(hcs: ModuleType) -> None:
    with _system(hcs, "lcow") as (handle, op):
        props = _strict(Properties, _query(hcs, handle, op, ["GuestMemory", "ICHeartbeatStatus"]))
        assert isinstance(props, Properties)
        memory, heartbeat = props.guest_memory_info, props.ic_heartbeat_status
        assert memory is not None and heartbeat is not None
        # linux_utility_vm's default memory size, in bytes.
        vm = builders.linux_utility_vm(boot_files_path="/tmp").virtual_machine
        topology = vm.compute_topology if vm is not None else None
        assert topology is not None and topology.memory is not None
        expected_mb = topology.memory.size_in_mb
        assert expected_mb is not None
        assert memory.total_physical_bytes == expected_mb << 20
        assert memory.commit_limit_bytes is not None and memory.commit_limit_bytes >= (
            memory.committed_bytes or 0)
        assert (memory.peak_commitment_bytes or 0) >= (memory.committed_bytes or 0)
        assert heartbeat.is_enabled is True and heartbeat.state == "Ok"
        assert heartbeat.reason == "HealthyApps"
        hcs.hcs_pause_compute_system(handle, op, None)
        hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        paused = _strict(Properties, _query(hcs, handle, op, ["ICHeartbeatStatus"]))
        assert isinstance(paused, Properties) and paused.ic_heartbeat_status is not None
        assert paused.ic_heartbeat_status.state == "NoContact"


# --------------------------------------------------------------------------- saved state


def test_processor_requirements_of_a_saved_state_parse_strictly(
    hcs: ModuleType, tmp_path: Any
) -> None:
    path = str(tmp_path / "vm.vmrs")
    with _system(hcs, "lcow") as (handle, op):
        hcs.hcs_pause_compute_system(handle, op, None)
        hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
        hcs.hcs_save_compute_system(handle, op, builders.save_options(path).to_json())
        hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
    needs = _strict(VmProcessorRequirements,
                    hcs.hcs_get_processor_compatibility_from_saved_state(path))
    assert isinstance(needs, VmProcessorRequirements) and needs.processor_features
