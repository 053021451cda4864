"""Version awareness: fields know their schema version; documents check against a target."""

from __future__ import annotations

import pytest

from pyhcs.schema import (
    Attachment,
    BasicInformation,
    Chipset,
    ComputeSystem,
    Devices,
    LinuxKernelDirect,
    ModifySettingRequest,
    PropertyQuery,
    PropertyType,
    Scsi,
    ShutdownOptions,
    Version,
    VersionIssue,
    VersionLike,
    VirtualMachine,
    VirtualMachineMemory,
    as_version,
    builders,
    check_version,
    enum_value_since,
    field_since,
    format_version,
    target_from_supported,
)


def test_fields_know_their_version() -> None:
    assert field_since(Chipset, "LinuxKernelDirect") == (2, 2)
    assert field_since(Chipset, "linux_kernel_direct") == (2, 2)
    assert field_since(VirtualMachineMemory, "HighMmioGapInMB") == (2, 3)
    assert field_since(ShutdownOptions, "Force") == (2, 5)
    assert field_since(Attachment, "IgnoreFlushes") is None  # hcsshim-only, undated
    with pytest.raises(KeyError):
        field_since(Chipset, "Nope")


def test_enum_values_know_their_version() -> None:
    assert enum_value_since(PropertyType.MEMORY) == (2, 1)
    assert enum_value_since(PropertyType.CPU_GROUP) is None  # hcsshim adds it, undated


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2.1", (2, 1)), ((2, 5), (2, 5)), ({"Major": 2, "Minor": 3}, (2, 3)),
     (Version(Major=2, Minor=6), (2, 6)), ("2", (2, 0))],
)
def test_as_version(value: VersionLike, expected: tuple[int, int]) -> None:
    assert as_version(value) == expected
    assert format_version(expected) == f"{expected[0]}.{expected[1]}"


def test_as_version_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        as_version("two")


def _lcow() -> ComputeSystem:
    return builders.linux_utility_vm(boot_files_path="C:\\boot", kernel_cmdline="quiet")


def test_check_reports_every_too_new_field_with_its_path() -> None:
    issues = check_version(_lcow(), (2, 1))
    assert issues == [
        ("VirtualMachine/Chipset/LinuxKernelDirect", (2, 2)),
        ("VirtualMachine/Chipset/LinuxKernelDirect/KernelFilePath", (2, 2)),
        ("VirtualMachine/Chipset/LinuxKernelDirect/InitRdPath", (2, 2)),
        ("VirtualMachine/Chipset/LinuxKernelDirect/KernelCmdLine", (2, 2)),
    ]
    assert all(isinstance(i, VersionIssue) for i in issues)
    assert str(issues[0]) == "VirtualMachine/Chipset/LinuxKernelDirect (schema 2.2)"
    assert check_version(_lcow(), "2.2") == []


def test_check_defaults_to_the_documents_own_version() -> None:
    assert check_version(_lcow()) == check_version(_lcow(), "2.1")
    assert _lcow().check_version() == check_version(_lcow(), "2.1")
    with pytest.raises(ValueError):
        check_version(Chipset())


def test_check_recurses_into_maps_lists_and_any() -> None:
    doc = ComputeSystem(
        SchemaVersion=Version(Major=2, Minor=0),
        VirtualMachine=VirtualMachine(
            Devices=Devices(Scsi={"ctl": Scsi(Attachments={"3": Attachment(
                Type="VirtualDisk", CachingMode="ReadOnlyCached", AlwaysAllowSparseFiles=True
            )})})
        ),
    )
    paths = {i.path: i.since for i in check_version(doc, "2.0")}
    base = "VirtualMachine/Devices/Scsi/ctl/Attachments/3"
    assert paths[f"{base}/CachingMode"] == (2, 1)
    assert paths[f"{base}/AlwaysAllowSparseFiles"] == (2, 6)
    req = ModifySettingRequest(ResourcePath="VirtualMachine/Devices/Scsi/0/Attachments/0",
                               Settings=Attachment(SupportCompressedVolumes=True))
    assert check_version(req, "2.0") == [("ResourcePath", (2, 1)),
                                         ("Settings/SupportCompressedVolumes", (2, 3))]


def test_check_reports_too_new_enum_values() -> None:
    query = PropertyQuery(PropertyTypes=[PropertyType.MEMORY, PropertyType.CPU_GROUP])
    assert check_version(query, "2.1") == []
    assert check_version(query, "2.0") == [
        ("PropertyTypes", (2, 1)),
        ("PropertyTypes/0=Memory", (2, 1)),
    ]
    unknown = check_version(query, "2.1", include_unknown=True)
    assert ("PropertyTypes/1=CpuGroup", None) in unknown


def test_include_unknown_reports_undated_fields() -> None:
    att = Attachment(Type="VirtualDisk", IgnoreFlushes=True)
    assert check_version(att, "2.6") == []
    assert check_version(att, "2.6", include_unknown=True) == [("IgnoreFlushes", None)]


def test_unset_fields_are_not_reported() -> None:
    assert check_version(Chipset(LinuxKernelDirect=None), "2.0") == []
    assert check_version(Chipset(LinuxKernelDirect=LinuxKernelDirect()), "2.0") == [
        ("LinuxKernelDirect", (2, 2))
    ]


@pytest.mark.parametrize(
    "supported",
    [
        '{"Properties": [{"SupportedSchemaVersions": [{"Major": 2, "Minor": 1},'
        ' {"Major": 2, "Minor": 5}, {"Major": 1, "Minor": 0}]}]}',
        '{"SupportedSchemaVersions": [{"Major": 2, "Minor": 5}, {"Major": 1, "Minor": 0}]}',
        '[{"Major": 2, "Minor": 5}]',
        [Version(Major=2, Minor=5), Version(Major=2, Minor=3)],
        BasicInformation(SupportedSchemaVersions=[Version(Major=2, Minor=5)]),
        [(2, 1), "2.5", {"Major": 2, "Minor": 4}],
    ],
)
def test_target_from_supported(supported: object) -> None:
    assert target_from_supported(supported) == (2, 5)


def test_target_from_supported_other_majors() -> None:
    versions = [(1, 0), (2, 4), (3, 0)]
    assert target_from_supported(versions) == (2, 4)
    assert target_from_supported(versions, major=None) == (3, 0)
    with pytest.raises(ValueError):
        target_from_supported([(1, 0)])
    with pytest.raises(ValueError):
        target_from_supported('{"Nothing": 1}')


def test_host_target_gates_a_document() -> None:
    host = '{"SupportedSchemaVersions": [{"Major": 2, "Minor": 1}]}'
    assert check_version(_lcow(), target_from_supported(host)) != []
    newer = '{"SupportedSchemaVersions": [{"Major": 2, "Minor": 6}]}'
    assert check_version(_lcow(), target_from_supported(newer)) == []
