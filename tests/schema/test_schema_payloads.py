"""Strict mode looks inside the members whose type another member chooses:
``ModifySettingRequest.Settings`` by ``ResourcePath``, ``GuestRequest`` and its ``Settings`` by
``ResourceType``, ``ModificationRequest.Settings`` by ``PropertyType`` and ``OperationDetails``
by ``Operation``, whether they come as JSON text, a dict or models."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pydantic
import pytest

from pyhcs.schema import (
    Attachment,
    CpuGroup,
    CreateGroupOperation,
    HostProcessorModificationRequest,
    LCOWMappedDirectory,
    MappedDirectory,
    ModificationRequest,
    ModifySettingRequest,
    Plan9Share,
    SchemaWarning,
    builders,
    check_strict,
    payload_types,
    to_json,
    unknown_members,
)

SCSI = "VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/1"


def request(path: str, settings: Any, **extra: Any) -> dict[str, Any]:
    return {"ResourcePath": path, "RequestType": "Add", "Settings": settings, **extra}


#: Where an error is (pydantic's ``loc``) and its type.
Located = tuple[tuple[int | str, ...], str]


def errors(doc: dict[str, Any], model: type[Any] = ModifySettingRequest) -> list[Located]:
    """The (location, type) of every error, by all three strict entry points, which agree."""
    found: list[list[Located]] = []
    for check in (
        lambda: model.from_json(json.dumps(doc), strict=True),
        lambda: model.from_dict(doc, strict=True),
        lambda: to_json(json.dumps(doc), model, strict=True),
        lambda: check_strict(model.from_json(json.dumps(doc))),
    ):
        try:
            check()
        except pydantic.ValidationError as err:
            found.append(sorted((e["loc"], e["type"]) for e in err.errors()))
        else:
            found.append([])
    assert all(f == found[0] for f in found), found
    return found[0]


# (resource path, a valid Settings, a misspelt member of it)
PATHS: list[tuple[str, dict[str, Any], str]] = [
    (SCSI, {"Type": "VirtualDisk", "Path": "C:\\d.vhdx"}, "Pth"),
    ("VirtualMachine/Devices/NetworkAdapters/nic1", {"EndpointId": "e"}, "EndPointId"),
    ("VirtualMachine/Devices/Plan9/Shares", {"Name": "s", "Port": 564, "Flags": 5}, "Flag"),
    ("VirtualMachine/Devices/VirtualSmb/Shares", {"Name": "s", "Path": "C:\\x"}, "Paht"),
    ("VirtualMachine/Devices/VirtualPMem/Devices/0", {"HostPath": "C:\\l.vhd"}, "Hostpath"),
    ("VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/4096", {"HostPath": "x"}, "Path"),
    ("VirtualMachine/Devices/ComPorts/0", {"NamedPipe": "\\\\.\\pipe\\c"}, "Pipe"),
    ("VirtualMachine/ComputeTopology/Processor/CpuGroup", {"Id": "g"}, "GroupId"),
    ("VirtualMachine/ComputeTopology/Processor/Limits", {"Limit": 100}, "Limt"),
    ("VirtualMachine/ComputeTopology/Gpu", {"AssignmentMode": "Default"}, "Mode"),
    ("VirtualMachine/Devices/SharedMemory/Regions", {"SectionName": "s"}, "Name"),
    ("VirtualMachine/Devices/VirtualPci/dev1", {"Functions": []}, "Function"),
    ("VirtualMachine/Devices/FlexibleIov/dev1", {"EmulatorId": "e"}, "Emulator"),
    ("VirtualMachine/Devices/HvSocket/HvSocketConfig/ServiceTable/"
     "0000abcd-facb-11e6-bd58-64006a7986d3", {"BindSecurityDescriptor": "D:P"}, "Bind"),
    ("Container/MappedDirectories", {"HostPath": "C:\\h", "ContainerPath": "C:\\c"}, "Host"),
    ("Container/MappedPipes", {"ContainerPipeName": "p", "HostPath": "h"}, "PipeName"),
    ("Container/Processor", {"Count": 2, "Maximum": 5000, "Weight": 100}, "Limit"),
    ("Container/RegistryFlushState", {"Enabled": True}, "Enable"),
]


@pytest.mark.parametrize(("path", "settings", "typo"), PATHS, ids=[p[0] for p in PATHS])
def test_settings_are_typed_by_resource_path(path: str, settings: Any, typo: str) -> None:
    assert errors(request(path, settings)) == []
    bad = {**settings, typo: 1}
    assert errors(request(path, bad)) == [(("Settings", typo), "extra_forbidden")]
    # Lenient parsing keeps it, and says where the unknown member is.
    assert unknown_members(ModifySettingRequest.from_json(json.dumps(request(path, bad)))) == [
        f"Settings/{typo}"]


def test_enum_values_and_types_inside_settings() -> None:
    assert errors(request(SCSI, {"Type": "VirtualDsk"})) == [(("Settings", "Type"), "enum")]
    assert errors(request(SCSI, {"ReadOnly": "maybe"})) == [(("Settings", "ReadOnly"),
                                                             "bool_parsing")]
    memory = "VirtualMachine/ComputeTopology/Memory/SizeInMB"
    assert errors(request(memory, 4096)) == []
    assert errors(request(memory, "4096")) == [(("Settings",), "int_type")]
    assert errors(request(memory, -1)) == [(("Settings",), "greater_than_equal")]
    assert errors(request("Container/Memory/SizeInMB", 512)) == []
    pipe = "VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\p"
    assert errors(request(pipe, {})) == []
    assert errors(request(pipe, {"x": 1})) == [(("Settings",), "payload_none")]


def test_several_problems() -> None:
    doc = request(SCSI, {"Type": "Iso", "Bogus": 1}, Extra=2)
    # Strict parsing checks a payload once its request parsed; the walk over a parsed
    # document (check_strict) reports everything at once.
    with pytest.raises(pydantic.ValidationError) as err:
        ModifySettingRequest.from_json(json.dumps(doc), strict=True)
    assert [e["loc"] for e in err.value.errors()] == [("Extra",)]
    with pytest.raises(pydantic.ValidationError) as err:
        check_strict(ModifySettingRequest.from_json(json.dumps(doc)))
    assert [e["loc"] for e in err.value.errors()] == [("Extra",), ("Settings", "Bogus")]


def test_remove_requests_and_absent_settings_pass() -> None:
    assert errors({"ResourcePath": SCSI, "RequestType": "Remove"}) == []
    assert errors({"ResourcePath": SCSI, "RequestType": "Remove", "Settings": None}) == []


def test_unknown_resource_path_stays_free_form_with_a_warning() -> None:
    doc = request("VirtualMachine/Devices/Battery/Frobnicate", {"Anything": 1})
    with pytest.warns(SchemaWarning, match="ResourcePath VirtualMachine/Devices/Battery"):
        ModifySettingRequest.from_json(json.dumps(doc), strict=True)
    with pytest.warns(SchemaWarning):
        ModifySettingRequest(**doc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lenient parsing does not warn
        ModifySettingRequest.from_json(json.dumps(doc))
        assert unknown_members(ModifySettingRequest.from_json(json.dumps(doc))) == []
        # A path known to be free-form does not warn either.
        ModifySettingRequest.from_json(
            json.dumps(request("VirtualMachine/Devices/Licensing", {"x": 1})), strict=True)


def test_models_as_settings_must_be_of_the_right_type() -> None:
    ModifySettingRequest(ResourcePath=SCSI, RequestType="Add",
                         Settings=Attachment(Path="C:\\d.vhdx"))
    with pytest.raises(pydantic.ValidationError) as err:
        ModifySettingRequest(ResourcePath=SCSI, RequestType="Add",
                             Settings=Plan9Share(Name="s"))
    assert err.value.errors()[0]["type"] == "payload_type"
    assert "Attachment" in str(err.value)
    # A dict given in Python is checked as well.
    with pytest.raises(pydantic.ValidationError):
        ModifySettingRequest(ResourcePath=SCSI, RequestType="Add", Settings={"Pth": "x"})
    with pytest.raises(pydantic.ValidationError):
        builders.modify_request(SCSI, "Add", {"Pth": "x"})
    req = ModifySettingRequest(ResourcePath=SCSI)
    assert payload_types(req, "Settings") == (Attachment,)
    assert payload_types(ModifySettingRequest(ResourcePath="Nope"), "Settings") is None


def test_guest_request_is_typed_by_resource_type() -> None:
    plan9 = request("VirtualMachine/Devices/Plan9/Shares", {"Name": "1", "Port": 564},
                    GuestRequest={"ResourceType": "MappedDirectory", "RequestType": "Add",
                                  "Settings": {"MountPath": "/m", "ShareName": "1",
                                               "Port": 564, "ReadOnly": True}})
    assert errors(plan9) == []
    plan9["GuestRequest"]["Settings"]["MountPth"] = "/m"
    assert errors(plan9) == [(("GuestRequest", "Settings", "MountPth"), "extra_forbidden")]
    # The WCOW shape of the same resource type is accepted too (either fits).
    wcow = request("VirtualMachine/Devices/VirtualSmb/Shares", {"Name": "s"},
                   GuestRequest={"ResourceType": "MappedDirectory", "RequestType": "Add",
                                 "Settings": {"HostPath": "h", "ContainerPath": "c"}})
    assert errors(wcow) == []
    envelope = request(SCSI, {"Path": "p"}, GuestRequest={"ResourceTyp": "MappedVirtualDisk"})
    assert errors(envelope) == [(("GuestRequest", "ResourceTyp"), "extra_forbidden")]
    disk = request(SCSI, {"Path": "p"}, GuestRequest={
        "ResourceType": "MappedVirtualDisk", "RequestType": "Add",
        "Settings": {"MountPath": "/run/layers/p0", "Lun": 1, "Controller": 0,
                     "ReadOnly": True}})
    assert errors(disk) == []


def test_guest_request_models() -> None:
    share = LCOWMappedDirectory(MountPath="/m", ShareName="1", Port=564)
    assert share.to_json() == '{"MountPath":"/m","Port":564,"ShareName":"1"}'
    with pytest.raises(pydantic.ValidationError):
        LCOWMappedDirectory(MountPth="/m")  # type: ignore[call-arg]  # misspelt on purpose
    assert isinstance(MappedDirectory(HostPath="h"), MappedDirectory)


def test_service_settings_and_operation_details() -> None:
    create: dict[str, Any] = {"PropertyType": "CpuGroup", "Settings": {
        "Operation": "CreateGroup",
        "OperationDetails": {"GroupId": "g", "LogicalProcessorCount": 2,
                             "LogicalProcessors": [0, 1]}}}
    assert errors(create, ModificationRequest) == []
    create["Settings"]["OperationDetails"]["LogicalProcesors"] = [2]
    assert errors(create, ModificationRequest) == [
        (("Settings", "OperationDetails", "LogicalProcesors"), "extra_forbidden")]
    assert errors({"PropertyType": "CpuGrup"}, ModificationRequest) == [
        (("PropertyType",), "enum")]
    ccg: dict[str, Any] = {"PropertyType": "ContainerCredentialGuard", "Settings": {
        "Operation": "RemoveInstance", "OperationDetails": {"Id": "x"}}}
    assert errors(ccg, ModificationRequest) == []
    ccg["Settings"]["OperationDetails"] = {"Ident": "x"}
    assert errors(ccg, ModificationRequest) == [
        (("Settings", "OperationDetails", "Ident"), "extra_forbidden")]
    # Models: the right one passes, a wrong one is named.
    HostProcessorModificationRequest(
        Operation="CreateGroup", OperationDetails=CreateGroupOperation(GroupId="g"))
    with pytest.raises(pydantic.ValidationError, match="CreateGroupOperation"):
        HostProcessorModificationRequest(Operation="CreateGroup",
                                         OperationDetails=CpuGroup(Id="g"))


def test_payload_inside_a_larger_tree_is_located_from_the_root() -> None:
    text = json.dumps({"Requests": [request(SCSI, {"Pth": 1})]})
    holder = pydantic.TypeAdapter(dict[str, list[ModifySettingRequest]])
    from pyhcs.schema._base import STRICT_CONTEXT
    with pytest.raises(pydantic.ValidationError) as err:
        holder.validate_json(text, extra="forbid", context=STRICT_CONTEXT)
    assert err.value.errors()[0]["loc"] == ("Requests", 0, "Settings", "Pth")
