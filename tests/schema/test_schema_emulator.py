"""Documents from pyhcs.testing.strategies and pyhcs.schema.builders are accepted by the
emulator where they are complete, and the properties it returns reflect what was asked.

Runs against every backend that loads (raw API, JSON text in and out); skips cleanly when no
backend or emulator is available.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from images import make_vhdx

from pyhcs.schema import (
    BasicInformation,
    ComputeSystem,
    ProcessParameters,
    ProcessStatus,
    Properties,
    PropertyQuery,
    PropertyType,
    ServiceProperties,
    builders,
    check_version,
    parse,
    service_property_payloads,
    target_from_supported,
    to_json,
)
from pyhcs.testing import strategies as hs

_backend: Any = pytest.importorskip("pyhcs._native._backend", reason="no pyhcs backend importable")
errors: Any = pytest.importorskip("pyhcs.errors")

_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_TIMEOUT_MS = 10_000
_ids = itertools.count()

# What a query for each property type adds to Properties (GuestConnection needs a guest,
# which the emulator does not run, so it may stay empty).
_SECTIONS = {
    PropertyType.MEMORY: "memory",
    PropertyType.STATISTICS: "statistics",
    PropertyType.PROCESS_LIST: "process_list",
    PropertyType.TERMINATE_ON_LAST_HANDLE_CLOSED: "terminate_on_last_handle_closed",
    PropertyType.SHARED_MEMORY_REGION: "shared_memory_region_info",
}


def _plausible(doc: ComputeSystem) -> bool:
    """Not hosted, and memory that fits the int32 ``VmMemory.AvailableMemory`` (MB) that the
    emulator reports it back in (a schema-valid uint64 ``SizeInMB`` of 2**31 MB or more
    would overflow that result field)."""
    if doc.hosted_system is not None:
        return False
    memory: int | None = None
    if doc.container is not None and doc.container.memory is not None:
        memory = doc.container.memory.size_in_mb
    vm = doc.virtual_machine
    if vm is not None and vm.compute_topology is not None and vm.compute_topology.memory:
        memory = vm.compute_topology.memory.size_in_mb
    return memory is None or memory < 2**31


def _backends() -> list[str]:
    names: list[str] = []
    for name in ("cython", "ctypes"):
        try:
            _backend.load(name)
        except ImportError:
            continue
        names.append(name)
    return names


@pytest.fixture(scope="module", params=_backends())
def hcs(request: pytest.FixtureRequest) -> ModuleType:
    """The raw API of one backend (no backend loads: no parameters, the tests skip)."""
    module: ModuleType = _backend.load(request.param)
    return module


def _new_id(prefix: str) -> str:
    return f"schema-{prefix}-{os.getpid()}-{next(_ids)}"


def _wait(hcs: ModuleType, op: int) -> str | None:
    result: str | None = hcs.hcs_wait_for_operation_result(op, _TIMEOUT_MS)
    return result


@contextlib.contextmanager
def _system(hcs: ModuleType, doc: ComputeSystem, system_id: str | None = None
            ) -> Generator[tuple[int, int, str], None, None]:
    """Create and start a compute system from ``doc``; yields (handle, operation, id)."""
    sid = system_id or _new_id("cs")
    op = hcs.hcs_create_operation()
    try:
        handle = hcs.hcs_create_compute_system(sid, to_json(doc, ComputeSystem), op)
        try:
            _wait(hcs, op)
            hcs.hcs_start_compute_system(handle, op)
            _wait(hcs, op)
            yield handle, op, sid
        finally:
            with contextlib.suppress(Exception):
                hcs.hcs_terminate_compute_system(handle, op)
                _wait(hcs, op)
            hcs.hcs_close_compute_system(handle)
    finally:
        hcs.hcs_close_operation(op)


def _properties(hcs: ModuleType, handle: int, op: int, query: PropertyQuery | None) -> Properties:
    hcs.hcs_get_compute_system_properties(handle, op, to_json(query))
    text = _wait(hcs, op)
    assert text is not None
    return parse(Properties, text)


# --------------------------------------------------------------------------- systems


def test_generated_systems_are_accepted(hcs: ModuleType) -> None:
    @_SETTINGS
    @given(doc=hs.compute_systems(kind=None, version="2.1").filter(_plausible))
    def check(doc: ComputeSystem) -> None:
        with _system(hcs, doc) as (handle, op, sid):
            props = _properties(hcs, handle, op, None)
            assert props.id == sid
            assert props.system_type == ("Container" if doc.container else "VirtualMachine")
            assert props.state == "Running"
            if doc.owner:
                assert props.owner == doc.owner

    check()


def test_generated_hosted_systems_are_accepted(hcs: ModuleType, tmp_path: Path) -> None:
    # the utility VM's OS share and scratch disk must exist: the emulator checks VM devices
    scratch = make_vhdx(tmp_path / "s.vhdx")
    uvm_doc = builders.windows_utility_vm(os_files_path=str(tmp_path), scratch_vhdx=str(scratch))
    with _system(hcs, uvm_doc) as (_, _, uvm_id):

        @_SETTINGS
        @given(doc=hs.compute_systems(kind="hosted", hosting_system_ids=st.just(uvm_id)))
        def check(doc: ComputeSystem) -> None:
            with _system(hcs, doc) as (handle, op, sid):
                props = _properties(hcs, handle, op, None)
                assert props.id == sid and props.hosting_system_id == uvm_id

        check()


def test_properties_reflect_the_query(hcs: ModuleType) -> None:
    @_SETTINGS
    @given(doc=hs.compute_systems(kind=None, version="2.1").filter(_plausible),
           query=hs.property_queries(version="2.1"))
    def check(doc: ComputeSystem, query: PropertyQuery) -> None:
        with _system(hcs, doc) as (handle, op, _):
            props = _properties(hcs, handle, op, query)
            assert props.id and props.system_type  # always returned
            asked = set(query.property_types or [])
            for prop_type, attr in _SECTIONS.items():
                assert (getattr(props, attr) is not None) == (prop_type in asked), prop_type
            if PropertyType.TERMINATE_ON_LAST_HANDLE_CLOSED in asked:
                expected = bool(doc.should_terminate_on_last_handle_closed)
                assert props.terminate_on_last_handle_closed == expected

    check()


# --------------------------------------------------------------------------- processes


def _exit_status(hcs: ModuleType, process: int) -> ProcessStatus | None:
    """Wait for the process and parse its status.

    ``None`` when the emulator has lost track of a process that already exited
    (ERROR_NOT_FOUND from HcsWaitForProcessExit: an emulator race, reported; it does not
    depend on the document, which HcsCreateProcess has accepted by then).
    """
    try:
        text = hcs.hcs_wait_for_process_exit(process, _TIMEOUT_MS)
    except errors.ElementNotFoundError:
        return None
    assert text is not None
    return parse(ProcessStatus, text)



def test_generated_processes_run(hcs: ModuleType) -> None:
    container = builders.process_isolated_container(layers=[], scratch_path="scratch")
    with _system(hcs, container) as (handle, op, _):

        @_SETTINGS
        @given(params=hs.process_parameters(version="2.1"))
        def check(params: ProcessParameters) -> None:
            process = hcs.hcs_create_process(handle, to_json(params), op)
            try:
                info, _ = hcs.hcs_wait_for_operation_result_and_process_info(op, _TIMEOUT_MS)
                pipes = (info.std_input, info.std_output, info.std_error)
                asked = (params.create_std_in_pipe, params.create_std_out_pipe,
                         params.create_std_err_pipe)
                for fd in pipes:
                    if fd is not None:
                        os.close(fd)  # no reader: the safe commands write a few bytes only
                if not params.emulate_console:
                    assert [fd is not None for fd in pipes] == [bool(a) for a in asked]
                status = _exit_status(hcs, process)
                if status is not None:
                    assert status.exited is True
                    expected = 3 if params.command_line == 'sh -c "exit 3"' else 0
                    # the output pipes were closed unread: a command that writes to one gets
                    # SIGPIPE, as under subprocess (the service keeps no copy of them)
                    closed = not params.emulate_console and (params.create_std_out_pipe or params.create_std_err_pipe)
                    assert status.exit_code == expected or (closed and status.exit_code == 128 + signal.SIGPIPE)
                    assert status.process_id == info.process_id
            finally:
                hcs.hcs_close_process(process)

        check()


# --------------------------------------------------------------------------- builders


def test_builder_documents_are_accepted(hcs: ModuleType, tmp_path: Path) -> None:
    for name in ("app", "base", "data"):
        (tmp_path / name).mkdir()
    container = builders.process_isolated_container(
        layers=[("6ba9cac1-7086-5ee9-a197-c465d3f50ad7", str(tmp_path / "app")),
                ("02740e08-d1d3-5715-9c08-c255eab4ca01", str(tmp_path / "base"))],
        scratch_path=str(tmp_path / "scratch"),
        owner="pyhcs-schema-tests",
        hostname="ctr1",
        mapped_directories=[builders.mapped_directory(str(tmp_path / "data"), "C:\\data")],
        processor_count=2,
        memory_mb=512,
    )
    with _system(hcs, container) as (handle, op, _):
        props = _properties(hcs, handle, op, builders.property_query("Memory"))
        assert props.system_type == "Container" and props.memory is not None
    lcow = builders.linux_utility_vm(boot_files_path=str(tmp_path))
    with _system(hcs, lcow) as (handle, op, _):
        assert _properties(hcs, handle, op, None).system_type == "VirtualMachine"


def test_host_versions_gate_documents(hcs: ModuleType) -> None:
    query = builders.service_property_query("Basic")
    result = parse(ServiceProperties, hcs.hcs_get_service_properties(to_json(query)))
    (basic,) = service_property_payloads(result, query)
    assert isinstance(basic, BasicInformation)
    target = target_from_supported(basic)
    assert target >= (2, 1)
    # hcsshim's Linux utility VM declares 2.1 but boots kernel-direct (2.2): fine on this host?
    lcow = builders.linux_utility_vm(boot_files_path="C:\\boot")
    assert (check_version(lcow, target) == []) == (target >= (2, 2))
