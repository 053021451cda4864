"""The example documents of hcs-schema-notes.md parse and re-serialise unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pyhcs.schema import TYPES_BY_NAME, HcsModel, check_strict, parse, to_json, unknown_members

NOTES = Path(__file__).resolve().parent.parent.parent / "shared" / "spec" / "hcs-schema-notes.md"

# (label, schema type, document), copied from the notes (section 5) so the suite does not
# depend on the shared folder; a test below keeps the copy in step when the notes are there.
EXAMPLES: list[tuple[str, str, str]] = [
    (
        "5.1 process-isolated container",
        "ComputeSystem",
        r"""{
  "Owner": "my-runtime",
  "SchemaVersion": {"Major": 2, "Minor": 1},
  "ShouldTerminateOnLastHandleClosed": true,
  "Container": {
    "GuestOs": {"HostName": "ctr1"},
    "Storage": {
      "Layers": [
        {"Id": "6ba9cac1-7086-5ee9-a197-c465d3f50ad7", "Path": "C:\\layers\\<app-layer>"},
        {"Id": "02740e08-d1d3-5715-9c08-c255eab4ca01", "Path": "C:\\layers\\<base-os-layer>"}
      ],
      "Path": "\\\\?\\Volume{baac0fd5-16b7-405b-9621-112aa8e3d973}\\"
    },
    "MappedDirectories": [
      {"HostPath": "C:\\data", "ContainerPath": "C:\\data", "ReadOnly": true}
    ],
    "Networking": {"Namespace": "<HNS namespace GUID>"},
    "Processor": {"Count": 2},
    "Memory": {"SizeInMB": 1024}
  }
}""",
    ),
    (
        "5.2a Hyper-V utility VM",
        "ComputeSystem",
        r"""{
  "Owner": "my-runtime",
  "SchemaVersion": {"Major": 2, "Minor": 1},
  "ShouldTerminateOnLastHandleClosed": true,
  "VirtualMachine": {
    "StopOnReset": true,
    "Chipset": {
      "Uefi": {
        "BootThis": {"DeviceType": "VmbFs", "DevicePath": "\\EFI\\Microsoft\\Boot\\bootmgfw.efi"}
      }
    },
    "ComputeTopology": {
      "Memory": {"SizeInMB": 1024, "AllowOvercommit": true, "EnableHotHint": true, "EnableDeferredCommit": true},
      "Processor": {"Count": 2}
    },
    "Devices": {
      "Scsi": {
        "df6d0690-79e5-55b6-a5ec-c1e2f77f580a": {
          "Attachments": {"0": {"Type": "VirtualDisk", "Path": "C:\\uvm\\sandbox.vhdx"}}
        }
      },
      "HvSocket": {"HvSocketConfig": {"DefaultBindSecurityDescriptor": "D:P(A;;FA;;;SY)(A;;FA;;;BA)"}},
      "VirtualSmb": {
        "DirectFileMappingInMB": 1024,
        "Shares": [
          {"Name": "os", "Path": "C:\\layers\\<base-os-layer>\\UtilityVM\\Files",
           "Options": {"ReadOnly": true, "ShareRead": true, "CacheIo": true, "PseudoOplocks": true, "TakeBackupPrivilege": true}}
        ]
      }
    }
  }
}""",
    ),
    (
        "5.2b hosted container",
        "ComputeSystem",
        r"""{
  "Owner": "my-runtime",
  "SchemaVersion": {"Major": 2, "Minor": 1},
  "HostingSystemId": "<uvm id>",
  "ShouldTerminateOnLastHandleClosed": true,
  "HostedSystem": {
    "SchemaVersion": {"Major": 2, "Minor": 1},
    "Container": {
      "Storage": {
        "Layers": [
          {"Id": "6ba9cac1-7086-5ee9-a197-c465d3f50ad7", "Path": "\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\s1"},
          {"Id": "02740e08-d1d3-5715-9c08-c255eab4ca01", "Path": "\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\s2"}
        ],
        "Path": "C:\\c\\1\\scratch"
      },
      "MappedDirectories": [
        {"HostPath": "\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\s3", "ContainerPath": "c:\\mappedro", "ReadOnly": true}
      ]
    }
  }
}""",
    ),
    (
        "5.3 Linux utility VM",
        "ComputeSystem",
        r"""{
  "Owner": "my-runtime",
  "SchemaVersion": {"Major": 2, "Minor": 1},
  "ShouldTerminateOnLastHandleClosed": true,
  "VirtualMachine": {
    "StopOnReset": true,
    "Chipset": {
      "LinuxKernelDirect": {
        "KernelFilePath": "C:\\ContainerPlat\\LinuxBootFiles\\vmlinux",
        "InitRdPath": "C:\\ContainerPlat\\LinuxBootFiles\\initrd.img",
        "KernelCmdLine": "8250_core.nr_uarts=0 panic=-1 quiet pci=off nr_cpus=2 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel debug"
      }
    },
    "ComputeTopology": {
      "Memory": {"SizeInMB": 1024, "AllowOvercommit": true},
      "Processor": {"Count": 2}
    },
    "Devices": {
      "Scsi": {"0": {}},
      "HvSocket": {"HvSocketConfig": {"DefaultBindSecurityDescriptor": "D:P(A;;FA;;;SY)(A;;FA;;;BA)"}},
      "Plan9": {}
    }
  }
}""",
    ),
    (
        "5.4 process parameters",
        "ProcessParameters",
        r"""{"CommandLine": "cmd.exe /c echo hello", "WorkingDirectory": "C:\\", "User": "ContainerUser",
 "Environment": {"PATH": "C:\\Windows\\system32;C:\\Windows"},
 "EmulateConsole": false, "CreateStdInPipe": true, "CreateStdOutPipe": true, "CreateStdErrPipe": true,
 "ConsoleSize": [25, 80]}""",
    ),
    (
        "5.4 hot-add disk",
        "ModifySettingRequest",
        r"""{"ResourcePath": "VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/1",
 "RequestType": "Add",
 "Settings": {"Type": "VirtualDisk", "Path": "C:\\data\\disk.vhdx", "ReadOnly": false}}""",
    ),
    (
        "5.4 resize memory",
        "ModifySettingRequest",
        r"""{"ResourcePath": "VirtualMachine/ComputeTopology/Memory/SizeInMB", "RequestType": "Update", "Settings": 4096}""",
    ),
    (
        "5.4 property query",
        "PropertyQuery",
        r"""{"PropertyTypes": ["Memory", "Statistics", "ProcessList"]}""",
    ),
    (
        "5.4 console size",
        "ProcessModifyRequest",
        r"""{"Operation": "ConsoleSize", "ConsoleSize": {"Height": 40, "Width": 120}}""",
    ),
    (
        "5.4 close handle",
        "ProcessModifyRequest",
        r"""{"Operation": "CloseHandle", "CloseHandle": {"Handle": "StdIn"}}""",
    ),
    (
        "5.4 signal",
        "SignalProcessOptions",
        r"""{"Signal": "CtrlC"}""",
    ),
    (
        "5.4 save",
        "SaveOptions",
        r"""{"SaveType": "ToFile", "SaveStateFilePath": "C:\\HCS_Test\\save.vmrs"}""",
    ),
    (
        "5.4 pause",
        "PauseOptions",
        r"""{"SuspensionLevel": "Suspend", "HostedNotification": {"Reason": "Save"}}""",
    ),
    (
        "5.4 shutdown",
        "ShutdownOptions",
        r"""{"Mechanism": "GuestConnection", "Type": "Shutdown", "Force": false, "Reason": "maintenance"}""",
    ),
    (
        "5.4 layer data",
        "LayerData",
        r"""{"SchemaVersion": {"Major": 2, "Minor": 1},
 "Layers": [{"Id": "02740e08-d1d3-5715-9c08-c255eab4ca01", "Path": "C:\\layers\\<base-os-layer>", "PathType": "AbsolutePath"}]}""",
    ),
    (
        "5.4 service property query",
        "Service_PropertyQuery",
        r"""{"PropertyTypes": ["Basic"]}""",
    ),
]


def _model(name: str) -> type[HcsModel]:
    cls = TYPES_BY_NAME[name]
    assert isinstance(cls, type) and issubclass(cls, HcsModel)
    return cls


@pytest.mark.parametrize(("label", "name", "text"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_round_trips(label: str, name: str, text: str) -> None:
    model = _model(name)
    doc = parse(model, text, strict=True)  # every key and enum value is known
    assert unknown_members(doc) == []
    assert json.loads(doc.to_json()) == json.loads(text)
    assert doc.raw_json == text
    # The same document as a dict and as a string goes through to_json unchanged.
    assert json.loads(to_json(json.loads(text), model)) == json.loads(text)
    assert to_json(text, model, strict=True) == text
    check_strict(model.from_dict(json.loads(text)))


def test_examples_keep_empty_objects() -> None:
    lcow = next(text for label, _, text in EXAMPLES if label.startswith("5.3"))
    out = json.loads(_model("ComputeSystem").from_json(lcow).to_json())
    assert out["VirtualMachine"]["Devices"]["Scsi"] == {"0": {}}
    assert out["VirtualMachine"]["Devices"]["Plan9"] == {}


@pytest.mark.skipif(not NOTES.exists(), reason="shared spec folder not available")
def test_examples_match_the_notes() -> None:
    found = re.findall(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", NOTES.read_text("utf-8"),
                       re.S)
    assert [(name, body.rstrip()) for name, body in found] == [(n, t) for _, n, t in EXAMPLES]
