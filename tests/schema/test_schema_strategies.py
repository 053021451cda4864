"""pyhcs.testing.strategies generates valid documents, of any model and schema version."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhcs.schema import (
    ComputeSystem,
    Container,
    HostedSystem,
    Layer,
    ModifySettingRequest,
    ProcessParameters,
    PropertyQuery,
    Version,
    builders,
    check_strict,
    check_version,
)
from pyhcs.testing import strategies as hs

_SETTINGS = settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(doc=hs.compute_systems())
def test_compute_systems_are_complete(doc: ComputeSystem) -> None:
    check_strict(doc)
    assert isinstance(doc.schema_version, Version)
    bodies = [doc.container, doc.virtual_machine, doc.hosted_system]
    assert sum(b is not None for b in bodies) == 1
    assert (doc.hosting_system_id is not None) == (doc.hosted_system is not None)
    if isinstance(doc.hosted_system, HostedSystem):
        assert doc.hosted_system.schema_version == doc.schema_version
        assert isinstance(doc.hosted_system.container, Container)
    if doc.container is not None:
        assert doc.container.mapped_directories is None
        assert doc.container.storage is None or doc.container.storage.layers is None
    if doc.virtual_machine is not None:
        assert doc.virtual_machine.guest_state is None
        assert doc.virtual_machine.restore_state is None


@_SETTINGS
@given(data=st.data(), version=st.sampled_from(hs.SCHEMA_VERSIONS))
def test_compute_systems_of_a_version(data: st.DataObject, version: tuple[int, int]) -> None:
    doc = data.draw(hs.compute_systems(version=version))
    assert doc.schema_version == Version(Major=version[0], Minor=version[1])
    assert check_version(doc, include_unknown=True) == []


@_SETTINGS
@given(doc=hs.compute_systems(kind="container", layers=st.just([builders.layer(
    "02740e08-d1d3-5715-9c08-c255eab4ca01", "C:\\layers\\base")])))
def test_compute_systems_take_real_host_state(doc: ComputeSystem) -> None:
    assert doc.container is not None
    storage = doc.container.storage
    assert storage is None or storage.layers == [
        Layer(Id="02740e08-d1d3-5715-9c08-c255eab4ca01", Path="C:\\layers\\base")
    ]


@_SETTINGS
@given(params=hs.process_parameters())
def test_process_parameters_are_safe(params: ProcessParameters) -> None:
    check_strict(params)
    assert params.command_line in hs.SAFE_COMMAND_LINES
    assert params.working_directory is None and params.user is None
    assert params.application_name is None and params.command_args is None
    for name in params.environment or {}:
        assert name and "=" not in name


@_SETTINGS
@given(params=hs.process_parameters(command_lines=st.just("echo custom")))
def test_process_parameters_custom_commands(params: ProcessParameters) -> None:
    assert params.command_line == "echo custom"


@_SETTINGS
@given(query=hs.property_queries(version="2.1"))
def test_property_queries(query: PropertyQuery) -> None:
    types = query.property_types or []
    assert types and len(set(types)) == len(types)
    assert check_version(query, "2.1", include_unknown=True) == []


@_SETTINGS
@given(req=hs.from_model(ModifySettingRequest, fields={
    "ResourcePath": st.just("VirtualMachine/ComputeTopology/Memory/SizeInMB"),
    "settings": st.integers(1, 2**20),
}))
def test_from_model_field_overrides(req: ModifySettingRequest) -> None:
    assert req.resource_path == "VirtualMachine/ComputeTopology/Memory/SizeInMB"
    assert isinstance(req.settings, int)


def test_from_model_rejects_unknown_field_overrides() -> None:
    with pytest.raises(ValueError):
        hs.from_model(PropertyQuery, fields={"PropertyTipes": st.none()})


@_SETTINGS
@given(version=hs.schema_versions(at_most="2.3"))
def test_schema_versions(version: tuple[int, int]) -> None:
    assert (2, 0) <= version <= (2, 3)


def test_register_type_strategies() -> None:
    hs.register_type_strategies()

    @settings(max_examples=5, deadline=None)
    @given(st.from_type(PropertyQuery))
    def inner(query: PropertyQuery) -> None:
        assert isinstance(query, PropertyQuery)
        check_strict(query)

    inner()
