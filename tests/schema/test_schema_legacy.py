"""The legacy schema 1.0 (process-isolated containers on hosts before Windows Server 2019):
models, strict and lenient parsing, and version checks that tell 1.0 from 2.x."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from pyhcs.schema import (
    ComputeSystem,
    MajorVersionIssue,
    builders,
    check_version,
    config_version,
    document_version,
    parse_config,
    to_json,
    v1,
)

# The shape docker's hcsshim v1 API sends (hcsshim internal/hcs/schema1 ContainerConfig).
V1_CONFIG: dict[str, Any] = {
    "SystemType": "Container",
    "Name": "3f5a0c1d",
    "Owner": "docker",
    "VolumePath": "\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}",
    "IgnoreFlushesDuringBoot": True,
    "LayerFolderPath": "C:\\ProgramData\\docker\\windowsfilter\\3f5a0c1d",
    "Layers": [{"ID": "02740e08-d1d3-5715-9c08-c255eab4ca01",
                "Path": "C:\\ProgramData\\docker\\windowsfilter\\base"}],
    "HostName": "3f5a0c1d",
    "MappedDirectories": [{"HostPath": "C:\\data", "ContainerPath": "C:\\data",
                           "ReadOnly": False, "BandwidthMaximum": 0, "IOPSMaximum": 0,
                           "CreateInUtilityVM": False}],
    "HvPartition": False,
    "EndpointList": ["6b3a2f8e-0000-4000-8000-000000000001"],
    "AllowUnqualifiedDNSQuery": True,
    "MappedPipes": [{"HostPath": "\\\\.\\pipe\\docker_engine",
                     "ContainerPipeName": "docker_engine"}],
}


def test_v1_config_parses_strictly_and_round_trips() -> None:
    text = json.dumps(V1_CONFIG)
    doc = v1.ContainerConfig.from_json(text, strict=True)
    assert doc.layer_folder_path == V1_CONFIG["LayerFolderPath"]
    assert doc.layers is not None and doc.layers[0].id == V1_CONFIG["Layers"][0]["ID"]
    assert doc.hv_partition is False
    assert json.loads(doc.to_json()) == V1_CONFIG  # explicit false/0 of Go's untagged fields


def test_v1_strict_rejects_and_lenient_keeps_unknown_members() -> None:
    bad = {**V1_CONFIG, "LayerFolder": "x"}
    with pytest.raises(pydantic.ValidationError) as err:
        v1.ContainerConfig.from_json(json.dumps(bad), strict=True)
    assert err.value.errors()[0]["loc"] == ("LayerFolder",)
    with pytest.raises(pydantic.ValidationError):
        v1.ContainerConfig(SystemType="Container", Nam="x")  # type: ignore[call-arg]  # misspelt on purpose
    kept = v1.ContainerConfig.from_json(json.dumps(bad))
    assert json.loads(kept.to_json())["LayerFolder"] == "x"
    # A 1.0 document is not a 2.x one: ComputeSystem rejects it strictly.
    with pytest.raises(pydantic.ValidationError):
        ComputeSystem.from_json(json.dumps(V1_CONFIG), strict=True)


def test_v1_results_parse() -> None:
    props = v1.ContainerProperties.from_json(json.dumps({
        "Id": "c1", "State": "Running", "Name": "c1", "SystemType": "Container",
        "Owner": "docker", "SiloGuid": "0b9b2a4e-0000-4000-8000-000000000001",
        "Statistics": {"Timestamp": "2026-08-20T12:34:56.1234567Z", "Uptime100ns": 10,
                       "Memory": {"MemoryUsageCommitBytes": 1},
                       "Network": [{"EndpointId": "e", "BytesSent": 3}]},
        "ProcessList": [{"ProcessId": 4, "ImageName": "System"}],
        "MappedVirtualDiskControllers": {"0": {"MappedVirtualDisks": {
            "1": {"ContainerPath": "/tmp/x", "Lun": 1}}}},
        "GuestConnectionInfo": {"SupportedSchemaVersions": [{"Major": 2, "Minor": 1}],
                                "ProtocolVersion": 4},
    }), strict=False)
    assert props.statistics is not None and props.statistics.network is not None
    assert props.statistics.network[0].bytes_sent == 3
    query = v1.PropertyQuery(PropertyTypes=["Statistics", "MappedVirtualDisk"])
    assert query.to_json() == '{"PropertyTypes":["Statistics","MappedVirtualDisk"]}'
    with pytest.raises(pydantic.ValidationError):
        v1.PropertyQuery(PropertyTypes=["Memory"])  # a 2.x property type
    process = v1.ProcessConfig(CommandLine="cmd", ConsoleSize=[25, 80], CreateStdOutPipe=True)
    assert process.to_json() == ('{"CommandLine":"cmd","CreateStdOutPipe":true,'
                                 '"ConsoleSize":[25,80]}')


def test_version_checks_tell_1_0_from_2_x() -> None:
    legacy = v1.ContainerConfig.from_json(json.dumps(V1_CONFIG))
    assert document_version(legacy) == (1, 0)
    assert check_version(legacy) == []
    assert check_version(legacy, "1.0") == []
    [issue] = check_version(legacy, "2.1")
    assert isinstance(issue, MajorVersionIssue)
    assert issue.target == (2, 1) and issue == ("", (1, 0))
    assert "legacy schema 1.0" in str(issue) and "2.1" in str(issue)
    modern = builders.process_isolated_container(layers=[], scratch_path="s")
    [issue] = check_version(modern, "1.0")
    assert issue.since == (2, 1) and "schema 2.x" in str(issue)
    assert check_version(modern, "2.1") == []


def test_config_version_and_parse_config() -> None:
    assert config_version(V1_CONFIG) == (1, 0)
    assert config_version(json.dumps(V1_CONFIG)) == (1, 0)
    assert config_version({"SchemaVersion": {"Major": 1, "Minor": 0}, "Name": "x"}) == (1, 0)
    assert config_version({"SchemaVersion": {"Major": 2, "Minor": 5}}) == (2, 5)
    assert config_version({"SchemaVersion": {}, "Container": {}}) == (2, 0)
    assert config_version({"Owner": "x"}) is None
    assert config_version("not json") is None
    assert config_version(v1.ContainerConfig(Name="x")) == (1, 0)
    assert isinstance(parse_config(json.dumps(V1_CONFIG), strict=True), v1.ContainerConfig)
    modern = builders.process_isolated_container(layers=[], scratch_path="s").to_json()
    assert isinstance(parse_config(modern, strict=True), ComputeSystem)


def test_to_json_accepts_a_v1_config_where_a_compute_system_is_expected() -> None:
    text = to_json(V1_CONFIG, ComputeSystem)
    assert json.loads(text) == V1_CONFIG
    assert to_json(json.dumps(V1_CONFIG), ComputeSystem, strict=True) == json.dumps(V1_CONFIG)
    model = v1.ContainerConfig.from_dict(V1_CONFIG)
    assert json.loads(to_json(model, ComputeSystem)) == V1_CONFIG
    with pytest.raises(pydantic.ValidationError):
        to_json({**V1_CONFIG, "Layer": []}, ComputeSystem)  # still strict, as 1.0
