"""The models match the schema facts, and behave as documented (wire names, strictness...)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import Enum, IntFlag
from pathlib import Path
from typing import Any

import pydantic
import pytest

from pyhcs import schema
from pyhcs.schema import (
    DOCS_NAMES,
    ENUM_CLASSES,
    MODEL_CLASSES,
    TYPES_BY_NAME,
    Attachment,
    AttachmentType,
    ComputeSystem,
    Container,
    Devices,
    HcsModel,
    HostedSystem,
    Keyboard,
    ModifySettingRequest,
    NumaProcessors,
    Plan9Share,
    Plan9ShareFlags,
    ProcessDetails,
    ProcessParameters,
    Properties,
    Scsi,
    State,
    Version,
    VirtioSerial,
    VirtualMachine,
)

ROOT = Path(__file__).resolve().parent.parent.parent
FACTS = json.loads((ROOT / "tools" / "schema" / "hcs-schema2.json").read_text("utf-8"))
GUEST = json.loads((ROOT / "tools" / "schema" / "guest-resources.json").read_text("utf-8"))
OVERRIDES = json.loads((ROOT / "tools" / "schema" / "overrides.json").read_text("utf-8"))


def _effective_types() -> dict[str, Any]:
    """The facts as the models must reflect them: the schema types, the guest request types,
    and the additions of overrides.json and guest-resources.json (extra enum values, fields)."""
    types: dict[str, Any] = {
        name: dict(spec) for name, spec in FACTS["types"].items() if not spec.get("boilerplate")
    }
    for name, spec in OVERRIDES["additions"]["types"].items():
        types[name] = spec
    for name, spec in GUEST["types"].items():
        types[name] = {**spec, "fields": [{**f, "since": None} for f in spec["fields"]]}
    added = {n: [{"value": v} for v in vs] for n, vs in GUEST["enum_values"].items()}
    for n, members in OVERRIDES["additions"]["enum_values"].items():
        added.setdefault(n, []).extend(members)
    for n, members in added.items():
        types[n]["members"] = [*types[n]["members"], *members]
        types[n]["values"] = [*types[n]["values"], *(m["value"] for m in members)]
    for n, fields in OVERRIDES["additions"]["fields"].items():
        types[n]["fields"] = [*types[n]["fields"], *fields]
    return types


TYPES: dict[str, Any] = _effective_types()
OBJECTS = [n for n, s in TYPES.items() if s["kind"] == "object"]
ENUMS = [n for n, s in TYPES.items() if s["kind"] == "enum"]


def _model(name: str) -> type[HcsModel]:
    cls = TYPES_BY_NAME[name]
    assert isinstance(cls, type) and issubclass(cls, HcsModel)
    return cls


# --------------------------------------------------------------------------- coverage


def test_every_type_has_a_class() -> None:
    assert set(TYPES_BY_NAME) == set(TYPES)
    assert len(MODEL_CLASSES) == len(OBJECTS)
    assert len(ENUM_CLASSES) == len(ENUMS)
    boilerplate = {n for n, s in FACTS["types"].items() if s.get("boilerplate")}
    assert boilerplate == {"APIKey", "BasicAuth", "Configuration", "contextKey"}


def test_every_class_is_exported() -> None:
    for name, cls in TYPES_BY_NAME.items():
        assert getattr(schema, cls.__name__) is cls, name
    assert schema.SystemExit_ is TYPES_BY_NAME["SystemExit"]
    assert "SystemExit" not in schema.__all__  # never shadow the builtin on `import *`


def test_docs_names_are_aliases() -> None:
    assert DOCS_NAMES == {s["docs_name"]: n for n, s in TYPES.items() if "docs_name" in s}
    for docs_name, name in DOCS_NAMES.items():
        assert getattr(schema, docs_name) is TYPES_BY_NAME[name]
    assert schema.System_PropertyQuery is schema.PropertyQuery
    assert schema.Container_Memory is schema.Memory
    assert schema.VirtualMachine_Memory is schema.VirtualMachineMemory


@pytest.mark.parametrize("name", OBJECTS)
def test_fields_match_facts(name: str) -> None:
    cls = _model(name)
    facts = TYPES[name].get("fields", [])
    infos = list(cls.model_fields.values())
    assert [f.alias for f in infos] == [f["json"] for f in facts]
    for info, fact in zip(infos, facts, strict=True):
        schema_extra = info.json_schema_extra
        extra: Mapping[str, object] = {} if schema_extra is None or callable(schema_extra) else schema_extra
        assert extra.get("since") == fact["since"], fact["json"]
        assert info.default is None
        since = schema.as_version(fact["since"]) if fact["since"] else None
        assert schema.field_since(cls, fact["json"]) == since


@pytest.mark.parametrize("name", ENUMS)
def test_enum_values_match_facts(name: str) -> None:
    cls = TYPES_BY_NAME[name]
    assert issubclass(cls, Enum)
    assert [m.value for m in cls.__members__.values()] == TYPES[name]["values"]
    if TYPES[name]["base"] == "string":
        assert issubclass(cls, str)
        for member, fact in zip(cls, TYPES[name]["members"], strict=True):
            since = schema.as_version(fact["since"]) if fact.get("since") else None
            assert schema.enum_value_since(member) == since


def test_non_pascal_case_keys_are_exact() -> None:
    odd = [(n, f["json"]) for n in OBJECTS for f in TYPES[n].get("fields", [])
           if not re.match(r"[A-Z]", f["json"])]
    assert len(odd) > 50
    for name, key in odd:
        assert key in {i.alias for i in _model(name).model_fields.values()}
    doc = NumaProcessors(count_per_node=schema.Range(max=2), node_per_socket=1)
    assert json.loads(doc.to_json()) == {"count_per_node": {"max": 2}, "node_per_socket": 1}
    with pytest.raises(pydantic.ValidationError):
        NumaProcessors.from_dict({"count_per_node": {"Max": 2}}, strict=True)  # not PascalCase


# --------------------------------------------------------------------------- wire format


def test_names_on_the_wire() -> None:
    doc = ComputeSystem(
        Owner="me",
        SchemaVersion=Version(Major=2, Minor=1),
        ShouldTerminateOnLastHandleClosed=True,
    )
    assert doc.to_json() == (
        '{"Owner":"me","SchemaVersion":{"Major":2,"Minor":1},'
        '"ShouldTerminateOnLastHandleClosed":true}'
    )
    # Python names work too (populate_by_name), and model_dump defaults to wire names.
    by_name = ComputeSystem.model_validate({"owner": "me", "schema_version": {"major": 2}})
    assert by_name.model_dump(exclude_none=True) == {"Owner": "me",
                                                     "SchemaVersion": {"Major": 2}}


def test_none_left_out_empty_objects_kept() -> None:
    devices = Devices(Keyboard=Keyboard(), Scsi={"0": Scsi()}, Plan9=schema.Plan9())
    vm = VirtualMachine(Devices=devices, StopOnReset=None)
    assert vm.to_json() == '{"Devices":{"Scsi":{"0":{}},"Keyboard":{},"Plan9":{}}}'
    assert vm.to_dict() == {"Devices": {"Scsi": {"0": {}}, "Keyboard": {}, "Plan9": {}}}
    assert Container().to_json() == "{}"


def test_explicit_false_and_zero_are_sent() -> None:
    # exclude_none, not exclude_defaults: a deliberate False/0 reaches HCS.
    assert Attachment(ReadOnly=False, Type="VirtualDisk").to_json() == (
        '{"Type":"VirtualDisk","ReadOnly":false}'
    )
    assert schema.IovSettings(OffloadWeight=0).to_json() == '{"OffloadWeight":0}'


@pytest.mark.parametrize(
    ("model", "field", "bad", "good"),
    [
        (Version, "Major", -1, 2**32 - 1),  # uint32 in the docs (hcsshim: int32)
        (ProcessDetails, "MemoryCommitBytes", -1, 2**64 - 1),  # uint64 (hcsshim: int32)
        (ProcessDetails, "MemoryCommitBytes", 2**64, 0),
        (schema.ConsoleSize, "Height", 2**16, 2**16 - 1),  # uint16
        (schema.Processor, "Maximum", 2**63, -(2**63)),  # int64 (hcsshim: int32)
        (schema.ProcessStatus, "LastWaitResult", 2**31, -(2**31)),  # int32
        (schema.MemoryInformationForVm, "VirtualNodeCount", 256, 255),  # uint8
    ],
)
def test_integer_widths_follow_the_docs(
    model: type[HcsModel], field: str, bad: int, good: int
) -> None:
    name = next(n for n, info in model.model_fields.items() if info.alias == field)
    assert getattr(model.model_validate({field: good}), name) == good
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({field: bad})


def test_fixed_length_console_size() -> None:
    assert ProcessParameters(ConsoleSize=[25, 80]).console_size == [25, 80]
    with pytest.raises(pydantic.ValidationError):
        ProcessParameters(ConsoleSize=[25])


def test_map_keys_may_be_numbers() -> None:
    serial = VirtioSerial.model_validate({"Ports": {0: {}, "1": {}}})
    assert serial.to_json() == '{"Ports":{"0":{},"1":{}}}'


def test_plan9_flags_combine() -> None:
    share = Plan9Share(Flags=Plan9ShareFlags.READ_ONLY | Plan9ShareFlags.LINUX_METADATA)
    assert share.to_json() == '{"Flags":5}'
    assert issubclass(Plan9ShareFlags, IntFlag)
    assert Plan9Share.model_validate_json('{"Flags": 260}').flags == 260


def test_any_members_hold_models_or_json() -> None:
    req = ModifySettingRequest(ResourcePath="VirtualMachine/Devices/Scsi/0/Attachments/1",
                               RequestType="Add",
                               Settings=Attachment(Type="VirtualDisk", Path="C:\\d.vhdx"))
    assert json.loads(req.to_json())["Settings"] == {"Type": "VirtualDisk", "Path": "C:\\d.vhdx"}
    resize = ModifySettingRequest(ResourcePath="VirtualMachine/ComputeTopology/Memory/SizeInMB",
                                  RequestType="Update", Settings=4096)
    assert json.loads(resize.to_json())["Settings"] == 4096
    # Without a ResourcePath nothing says what Settings is: kept as given, with a warning.
    with pytest.warns(schema.SchemaWarning, match="no ResourcePath"):
        raw = ModifySettingRequest(Settings={"Anything": [1, None]})
    assert raw.to_json() == '{"Settings":{"Anything":[1,null]}}'


def test_hosted_system_parses_as_a_model() -> None:
    doc = ComputeSystem.model_validate({"HostedSystem": {"SchemaVersion": {"Major": 2}}})
    assert isinstance(doc.hosted_system, HostedSystem)
    odd = ComputeSystem.model_validate({"HostedSystem": "opaque"})
    assert odd.hosted_system == "opaque"


# --------------------------------------------------------------------------- enums


def test_enums_are_str_enums_on_the_wire() -> None:
    att = Attachment(Type=AttachmentType.VIRTUAL_DISK)
    assert att.type is AttachmentType.VIRTUAL_DISK
    assert isinstance(att.type, str) and att.type.value == "VirtualDisk"
    assert att.to_json() == '{"Type":"VirtualDisk"}'
    assert schema.FilesystemIsolationMode("hard").value == "hard"
    assert schema.ObjectDirectoryShadow.IFEXISTS.value == "ifexists"


def test_results_keep_unknown_enum_values() -> None:
    props = Properties.model_validate_json(
        '{"Id": "x", "State": "SomethingNew", "PropertyResponses": {}}'
    )
    assert props.state == "SomethingNew" and not isinstance(props.state, Enum)
    assert Properties.model_validate_json('{"State": "Running"}').state is State.RUNNING
    assert schema.unknown_members(props) == ["State=SomethingNew"]


# --------------------------------------------------------------------------- strictness


def test_constructing_rejects_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ComputeSystem(Owner="me", Contaner={"Storage": {}})  # type: ignore[call-arg]  # misspelt on purpose
    err = info.value.errors()[0]
    assert err["type"] == "extra_forbidden" and err["loc"] == ("Contaner",)


def test_constructing_rejects_unknown_keys_deep_down() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ComputeSystem(VirtualMachine={"Devices": {"Scsi": {"0": {"Atachments": {}}}}})  # type: ignore[arg-type]  # misspelt
    assert info.value.errors()[0]["loc"] == ("VirtualMachine", "Devices", "Scsi", "0",
                                             "Atachments")


def test_constructing_rejects_unknown_enum_values() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Attachment(Type="VirtualDsk")
    err = info.value.errors()[0]
    assert err["type"] == "enum" and err["loc"] == ("Type",)
    with pytest.raises(pydantic.ValidationError):
        schema.PropertyQuery(PropertyTypes=["Memory", "Statistcs"])


def test_parsing_is_lenient_and_keeps_unknowns() -> None:
    text = '{"Id": "c1", "SystemType": "Container", "NewIn27": {"X": 1}}'
    props = Properties.model_validate_json(text)
    assert props.model_extra == {"NewIn27": {"X": 1}}
    assert json.loads(props.to_json()) == json.loads(text)
    assert schema.unknown_members(props) == ["NewIn27"]
    with pytest.raises(pydantic.ValidationError):
        Properties.from_json(text, strict=True)


def test_lenient_construction_escape_hatch() -> None:
    # A member this schema does not know yet: build leniently, send with strict=False.
    att = Attachment.model_validate({"Type": "EmbeddedDisk", "Path": "x", "FutureKnob": 1})
    assert schema.to_json(att, strict=False) == (
        '{"Type":"EmbeddedDisk","Path":"x","FutureKnob":1}'
    )
    with pytest.raises(pydantic.ValidationError):
        schema.to_json(att)


def test_typo_on_assignment_is_caught_on_send() -> None:
    doc = ComputeSystem(Owner="me")
    doc.ownr = "typo"
    with pytest.raises(pydantic.ValidationError):
        schema.to_json(doc)


def test_field_named_like_basemodel_attributes() -> None:
    # `Type`, `Json`-like names get Python names that do not shadow BaseModel.
    assert Attachment.model_fields["type"].alias == "Type"
    for cls in MODEL_CLASSES:
        for name in cls.model_fields:
            assert not hasattr(pydantic.BaseModel, name), (cls, name)
            assert name not in {"to_json", "to_dict", "from_json", "from_dict", "raw_json",
                                "check_version"}
