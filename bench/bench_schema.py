"""Benchmark: parsing and validating HCS documents with pyhcs.schema vs plain json.loads.

Three documents, each timed side by side in one run:

* a ``Properties`` result with 100 processes (what HcsGetComputeSystemProperties returns for
  ``{"PropertyTypes": ["ProcessList", "Statistics"]}`` on a busy container);
* a full ``ComputeSystem`` for a VM (UEFI, SCSI, network, VSMB, Plan9, VPMem, COM ports,
  hv_socket services, registry changes...), about 9 KB, and the same with more disks, shares
  and registry values, about 28 KB.

Results are ratios to ``json.loads`` of the same text. Targets: parsing (lenient, what results
go through) at most 4x, strict parsing (``from_json(strict=True)``, what documents we are
given as text go through) at most 3x. Run::

    PYTHONPATH=src python bench/bench_schema.py [--check] [--rounds N]

``--check`` exits 1 when a ratio is above its target.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from functools import partial

from pyhcs.schema import (
    Attachment,
    ComPort,
    ComputeSystem,
    EnhancedModeVideo,
    GuestState,
    HcsModel,
    HvSocketServiceConfig,
    Keyboard,
    Mouse,
    NetworkAdapter,
    Properties,
    RegistryChanges,
    RegistryKey,
    RegistryValue,
    Scsi,
    VideoMonitor,
    VirtualPMemController,
    VirtualPMemDevice,
    VirtualSmbShare,
    builders,
    parse,
)

TARGET = 4.0
STRICT_TARGET = 3.0


def properties_text(processes: int = 100) -> str:
    """A Properties result shaped like a Windows host's answer (7-digit timestamps)."""
    doc = {
        "Id": "ctr-0123456789abcdef",
        "SystemType": "Container",
        "RuntimeOsType": "Windows",
        "Name": "ctr-0123456789abcdef",
        "Owner": "my-runtime",
        "RuntimeId": "3c1b2a8e-5f0d-4c3e-9b7a-1d2e3f405162",
        "State": "Running",
        "Stopped": False,
        "Statistics": {
            "Timestamp": "2026-08-20T12:34:56.1234567Z",
            "ContainerStartTime": "2026-08-20T10:00:00.7654321Z",
            "Uptime100ns": 92_960_000_000,
            "Processor": {"TotalRuntime100ns": 123_456_789, "RuntimeUser100ns": 100_000_000,
                          "RuntimeKernel100ns": 23_456_789},
            "Memory": {"MemoryUsageCommitBytes": 734_003_200,
                       "MemoryUsageCommitPeakBytes": 812_003_328,
                       "MemoryUsagePrivateWorkingSetBytes": 402_653_184},
            "Storage": {"ReadCountNormalized": 18_220, "ReadSizeBytes": 745_369_600,
                        "WriteCountNormalized": 9_012, "WriteSizeBytes": 104_857_600},
        },
        "ProcessList": [
            {
                "ProcessId": 4000 + 4 * i,
                "ImageName": f"worker{i}.exe" if i % 3 else "svchost.exe",
                "CreateTimestamp": f"2026-08-20T10:{i % 60:02d}:{(7 * i) % 60:02d}.{i:07d}Z",
                "UserTime100ns": 1_562_500 * i,
                "KernelTime100ns": 781_250 * i,
                "MemoryCommitBytes": 25_165_824 + 4096 * i,
                "MemoryWorkingSetPrivateBytes": 8_388_608 + 4096 * i,
                "MemoryWorkingSetSharedBytes": 16_777_216 + 8192 * i,
            }
            for i in range(processes)
        ],
    }
    return json.dumps(doc)


def vm_text(luns: int = 8, shares: int = 16, values: int = 16) -> str:
    """A full VM ComputeSystem document, built with the builders and the models."""
    doc = builders.windows_utility_vm(
        os_files_path=r"C:\layers\base\UtilityVM\Files",
        scratch_vhdx=r"C:\vm\scratch.vhdx",
        owner="bench",
        memory_mb=8192,
        processor_count=8,
    )
    vm = doc.virtual_machine
    assert vm is not None and vm.devices is not None and vm.chipset is not None
    devices = vm.devices
    devices.scsi = {
        f"controller{c}": Scsi(Attachments={
            str(lun): Attachment(Type="VirtualDisk", Path=rf"C:\vm\disk{c}-{lun}.vhdx",
                                 ReadOnly=lun % 2 == 0, CachingMode="ReadOnlyCached")
            for lun in range(luns)
        })
        for c in range(4)
    }
    devices.network_adapters = {
        f"nic{i}": NetworkAdapter(EndpointId=f"8d0c6d6b-0a7c-4d0e-9f3a-0000000000{i:02d}",
                                  MacAddress=f"00-15-5D-00-00-{i:02X}")
        for i in range(4)
    }
    devices.com_ports = {"0": ComPort(NamedPipe=r"\\.\pipe\vm-com1"),
                         "1": ComPort(NamedPipe=r"\\.\pipe\vm-com2")}
    assert devices.virtual_smb is not None and devices.virtual_smb.shares is not None
    devices.virtual_smb.shares += [
        VirtualSmbShare(Name=f"s{i}", Path=rf"C:\layers\layer{i}") for i in range(shares)
    ]
    devices.plan9 = None
    devices.virtual_pmem = VirtualPMemController(
        MaximumCount=16, MaximumSizeBytes=2**30,
        Devices={str(i): VirtualPMemDevice(HostPath=rf"C:\layers\l{i}.vhd", ReadOnly=True,
                                           ImageFormat="Vhd1") for i in range(8)},
    )
    devices.keyboard, devices.mouse = Keyboard(), Mouse()
    devices.video_monitor, devices.enhanced_mode_video = VideoMonitor(), EnhancedModeVideo()
    assert devices.hv_socket is not None and devices.hv_socket.hv_socket_config is not None
    devices.hv_socket.hv_socket_config.service_table = {
        f"0000{i:04d}-facb-11e6-bd58-64006a7986d3": HvSocketServiceConfig(
            BindSecurityDescriptor="D:P(A;;FA;;;SY)", ConnectSecurityDescriptor="D:P(A;;FA;;;SY)"
        )
        for i in range(8)
    }
    vm.guest_state = GuestState(GuestStateFilePath=r"C:\vm\vm.vmgs",
                                RuntimeStateFilePath=r"C:\vm\vm.vmrs")
    vm.registry_changes = RegistryChanges(AddValues=[
        RegistryValue(Key=RegistryKey(Hive="System", Name=rf"ControlSet001\Services\s{i}"),
                      Name="Start", DWordValue=i % 5, Type="DWord")
        for i in range(values)
    ])
    text = doc.to_json()
    ComputeSystem.from_json(text, strict=True)  # the document must be valid
    return text


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds per call of each function: the best of ``rounds`` short samples, taken in
    turn (one sample of each function per round).

    Short samples taken in turn keep the ratios honest on a shared machine: a burst of load
    slows the samples it overlaps, and every function gets samples outside the bursts.
    """
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    # About 2 ms per sample.
    numbers = {name: max(1, int(0.002 / (t.timeit(1) or 1e-6))) for name, t in timers.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name])
    return best


def run(rounds: int) -> list[tuple[str, float, float]]:
    """Return ``[(case, seconds, ratio_to_json_loads), ...]``."""
    rows: list[tuple[str, float, float]] = []
    cases: tuple[tuple[str, type[HcsModel], str], ...] = (
        ("Properties, 100 processes", Properties, properties_text()),
        ("ComputeSystem, full VM", ComputeSystem, vm_text()),
        ("ComputeSystem, large VM", ComputeSystem, vm_text(luns=40, shares=64, values=48)),
    )
    for name, model, text in cases:
        model.model_validate_json(text)  # build the validator outside the timing
        doc = model.model_validate_json(text)
        loaded = json.loads(text)
        times = _interleaved({
            "json.loads": partial(json.loads, text),
            "model_validate_json": partial(model.model_validate_json, text),
            "pyhcs.schema.parse (+raw_json)": partial(parse, model, text),
            "from_json(strict=True)": partial(model.from_json, text, strict=True),
            "json.dumps": partial(json.dumps, loaded),
            "to_json": doc.to_json,
        }, rounds)
        base = times["json.loads"]
        rows.append((f"{name}: json.loads ({len(text)} bytes)", base, 1.0))
        for label in ("model_validate_json", "pyhcs.schema.parse (+raw_json)",
                      "from_json(strict=True)"):
            rows.append((f"{name}: {label}", times[label], times[label] / base))
        rows.append((f"{name}: to_json vs json.dumps", times["to_json"],
                     times["to_json"] / times["json.dumps"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200,
                        help="samples of each function (short, taken in turn)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if parsing is slower than {TARGET}x json.loads, or "
                             f"strict parsing slower than {STRICT_TARGET}x")
    args = parser.parse_args(argv)
    rows = run(args.rounds)
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'time':>10}  ratio")
    for name, seconds, ratio in rows:
        print(f"{name:<{width}}  {seconds * 1e6:8.1f}us  {ratio:5.2f}x")
    worst = max(ratio for name, _, ratio in rows if "parse" in name)
    strict = max(ratio for name, _, ratio in rows if "strict=True" in name)
    print(f"parse + validate: worst ratio {worst:.2f}x (target <= {TARGET}x)")
    print(f"strict parse: worst ratio {strict:.2f}x (target <= {STRICT_TARGET}x)")
    return 1 if args.check and (worst > TARGET or strict > STRICT_TARGET) else 0


if __name__ == "__main__":
    sys.exit(main())
