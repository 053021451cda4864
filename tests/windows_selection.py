"""The suite on a machine without HCS: what runs and passes there, and what is skipped and why.

    python tests/windows_selection.py [--without-hcs] [--min-passed N] [PYTEST ARGS]

(PYTEST ARGS default to the tests/ folder.)

Wheel builders have no Hyper-V: on the cibuildwheel Windows runners computecore.dll is absent
or cannot start a compute system. There the wheel must still import, select its backend and
pass every test that needs no HCS (errors, schema models and documents, builders, the path and
virtual-disk marshalling tests, ...). This runs pytest so that it does:

* without the suite's conftest files (``--noconftest``): their autouse fixture resets the
  emulator around every test, which needs the library. Tests that use a fixture only a conftest
  defines (``hcs``, ``system``, ...) are deselected, and counted;
* a test (or a test module, at import) that fails because the HCS library cannot be loaded
  (the same ImportError that ``import pyhcs._native._backend`` raises here, in the test or in a child
  interpreter it runs) is reported as skipped with that reason; any other failure stays a
  failure;
* at least ``--min-passed`` tests (default 1) must pass, so an empty selection fails.

``--without-hcs`` points ``PYHCS_LIBRARY`` at a computecore.dll that does not exist, which is
what a Windows machine without the Containers feature looks like to pyhcs: the wheel test step
uses it on every runner (the suite's emulator-specific tests must not meet a real HCS there),
and CI runs the same on Linux. Without it, and with HCS present, nothing is skipped.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest


def _probe() -> BaseException | None:
    """The exception importing the backend raises here, or None if HCS loads."""
    try:
        importlib.import_module("pyhcs._native._backend")
    except (ImportError, OSError) as exc:
        return exc
    return None


def _chain(exc: BaseException | None) -> Generator[BaseException, None, None]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


class WindowsSelection:
    def __init__(self) -> None:
        self.absent = _probe()
        self.deselected: dict[str, int] = {}
        self.passed = 0
        self.skipped_absent = 0
        self.skipped_modules = 0

    def _is_absence(self, exc: BaseException, report: pytest.TestReport) -> bool:
        if self.absent is None:
            return False
        if any(type(e) is type(self.absent) and str(e) == str(self.absent) for e in _chain(exc)):
            return True
        # a child interpreter (the README and CLI tests run one) reports the same ImportError;
        # pytest shortens long reprs in the middle, so the message's end is what is compared
        return str(self.absent)[-60:] in str(report.longrepr)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, None]:
        # a module that imports the backend at import time cannot even be collected
        outcome = yield
        report: pytest.CollectReport = outcome.get_result()
        if report.failed and self.absent is not None and str(self.absent) in str(report.longrepr):
            report.outcome = "skipped"
            report.longrepr = (str(collector.path), 0, f"HCS is not available: {self.absent}")
            self.skipped_modules += 1

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            info = getattr(item, "_fixtureinfo", None)
            defined: set[str] = set(info.name2fixturedefs) if info is not None else set()
            missing = [n for n in getattr(item, "fixturenames", ()) if n not in defined and n != "request"]
            if missing:
                dropped.append(item)
                for name in missing:
                    self.deselected[name] = self.deselected.get(name, 0) + 1
            else:
                keep.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if report.failed and call.excinfo is not None and self._is_absence(call.excinfo.value, report):
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"HCS is not available: {self.absent}")
            if report.when == "call":
                self.skipped_absent += 1
        elif report.when == "call" and report.passed:
            self.passed += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        tr.section("windows selection")
        tr.write_line(f"HCS: {'available' if self.absent is None else f'absent ({self.absent})'}")
        tr.write_line(
            f"passed without HCS: {self.passed}; skipped for its absence: {self.skipped_absent} tests, "
            f"{self.skipped_modules} modules"
        )
        for name, count in sorted(self.deselected.items()):
            tr.write_line(f"deselected, need the conftest fixture {name!r}: {count}")


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    args = list(argv)
    minimum = 1
    if "--min-passed" in args:
        i = args.index("--min-passed")
        minimum = int(args[i + 1])
        del args[i : i + 2]
    if "--without-hcs" in args:
        # what a machine without the Containers feature looks like to pyhcs, even where the
        # runner has HCS: a computecore.dll that does not exist (child interpreters inherit it)
        args.remove("--without-hcs")
        missing = Path(tempfile.mkdtemp(prefix="pyhcs-no-hcs-")) / "computecore.dll"
        os.environ["PYHCS_LIBRARY"] = str(missing)
    plugin = WindowsSelection()
    try:
        import hypothesis

        # the conftest's "ci" profile, which --noconftest leaves unregistered
        hypothesis.settings.register_profile("windows-selection", deadline=None, max_examples=50, derandomize=True)
        hypothesis.settings.load_profile("windows-selection")
    except ImportError:
        pass
    # rootdir is the checkout (for the pytest options in pyproject.toml); tests/ for rawutil & co.
    sys.path.insert(0, str(here))
    targets = [a for a in args if not a.startswith("-") and os.path.exists(a.split("::")[0])]
    pytest_args = ["--noconftest", "-p", "no:cacheprovider", "--rootdir", str(here.parent), *args]
    if not targets:
        pytest_args.append(str(here))
    code = int(pytest.main(pytest_args, plugins=[plugin]))
    if code == 0 and plugin.passed < minimum:
        print(f"windows selection: {plugin.passed} tests passed, fewer than --min-passed {minimum}")
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
