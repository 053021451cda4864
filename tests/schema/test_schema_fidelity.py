"""What real documents carry survives pyhcs.schema: explicit nulls, empty SchemaVersion
objects (hcsshim's LayerData), the members and values that hcsshim and newer hosts send."""

from __future__ import annotations

import json

import pydantic
import pytest

from pyhcs.schema import (
    Attachment,
    AttachmentType,
    ComputeSystem,
    LayerData,
    ModificationRequest,
    ModifyPropertyType,
    Properties,
    VirtioSerialPort,
    builders,
    check_version,
    document_version,
    field_since,
    parse,
    to_json,
)


def test_explicit_nulls_survive_a_round_trip() -> None:
    text = ('{"Id":"c1","SystemType":"Container","Owner":null,"RuntimeId":null,'
            '"NewerMember":null,"Statistics":{"Timestamp":null,"Memory":null}}')
    doc = parse(Properties, text)
    assert json.loads(doc.to_json()) == json.loads(text)
    assert doc.to_dict() == json.loads(text)
    # Strict parsing keeps them too (a null is no unknown member when the member is known).
    strict = ComputeSystem.from_json('{"Owner":null,"HostingSystemId":null}', strict=True)
    assert strict.to_json() == '{"Owner":null,"HostingSystemId":null}'


def test_none_from_python_means_not_set() -> None:
    doc = ComputeSystem(Owner="me", HostingSystemId=None)
    assert doc.to_json() == '{"Owner":"me"}'
    doc.owner = None  # setting None takes the member out again
    assert doc.to_json() == "{}"
    parsed = ComputeSystem.from_json('{"Owner":null}')
    parsed.owner = "x"
    assert parsed.to_json() == '{"Owner":"x"}'
    assert ComputeSystem.from_dict({"Owner": None}).to_json() == "{}"
    assert ComputeSystem.model_validate({"Owner": "x", "VirtualMachine": {"Chipset": None}}
                                        ).to_json() == '{"Owner":"x","VirtualMachine":{}}'
    assert to_json({"Owner": None, "Container": {}}, ComputeSystem) == '{"Container":{}}'
    # False and 0 are values, not absence.
    assert Attachment(ReadOnly=False).to_json() == '{"ReadOnly":false}'


def test_empty_schema_version_means_no_version() -> None:
    # hcsshim sends LayerData with "SchemaVersion": {} to the layer APIs.
    data = LayerData.from_json('{"SchemaVersion": {}, "Layers": [{"Id": "x", "Path": "p"}],'
                               ' "FilterType": "WCIFS"}', strict=True)
    assert document_version(data) is None
    with pytest.raises(ValueError, match="no SchemaVersion"):
        check_version(data)
    assert check_version(data, "2.1") == []
    assert data.to_json() == ('{"SchemaVersion":{},"Layers":[{"Id":"x","Path":"p"}],'
                              '"FilterType":"WCIFS"}')
    partial = LayerData.from_json('{"SchemaVersion": {"Major": 2}}')
    assert document_version(partial) == (2, 0)


def test_modification_request_takes_modify_property_types() -> None:
    req = ModificationRequest.from_json('{"PropertyType": "CpuGroup"}', strict=True)
    assert req.property_type is ModifyPropertyType.CPU_GROUP
    with pytest.raises(pydantic.ValidationError):
        ModificationRequest.from_json('{"PropertyType": "Statistics"}', strict=True)
    assert ModificationRequest.from_json('{"PropertyType": "Statistics"}').property_type == (
        "Statistics")  # lenient: kept as text


def test_virtio_serial_console_support() -> None:
    port = VirtioSerialPort(NamedPipe="\\\\.\\pipe\\vm", Name="console", ConsoleSupport=True)
    assert json.loads(port.to_json())["ConsoleSupport"] is True
    assert field_since(VirtioSerialPort, "ConsoleSupport") == (2, 6)
    VirtioSerialPort.from_json('{"ConsoleSupport": true}', strict=True)


def test_extensible_virtual_disk_type() -> None:
    text = ('{"Type":"ExtensibleVirtualDisk","Path":"evd://space/myvolume",'
            '"ExtensibleVirtualDiskType":"space"}')
    disk = Attachment.from_json(text, strict=True)
    assert disk.type is AttachmentType.EXTENSIBLE_VIRTUAL_DISK
    assert disk.extensible_virtual_disk_type == "space"
    assert disk.to_json() == text
    assert builders.add_scsi_disk("evd://x/y", lun=0, attachment_type="ExtensibleVirtualDisk")
