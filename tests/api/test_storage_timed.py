"""pyhcs.storage goes through the same call accounting as the rest of the Pythonic layer:
its calls appear in pyhcs.call_statistics() and are watched by the slow-call watchdog."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import pyhcs
from pyhcs import emulator, errors, storage

pytestmark = pytest.mark.skipif(not emulator.active(), reason="the layer files are the emulator's")


def test_storage_calls_are_counted_and_watched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    (src / "Files").mkdir(parents=True)
    (src / "Files" / "a").write_text("a")
    pyhcs.reset_call_statistics()
    storage.import_layer(tmp_path / "base", src)
    with pytest.raises(errors.HcsError):
        storage.destroy_layer(tmp_path / "not-a-layer-at-all")
    storage.destroy_layer(tmp_path / "base")
    stats = pyhcs.call_statistics()
    assert stats["HcsImportLayer"]["count"] == 1
    assert stats["HcsDestroyLayer"]["count"] == 2  # a failed call counts too

    emulator.add_faults({"Function": "HcsImportLayer", "DelayMs": 300, "Count": 1})
    old = pyhcs.slow_call_threshold()
    try:
        pyhcs.set_slow_call_threshold(0.05)
        with caplog.at_level(logging.INFO, logger="pyhcs"):
            storage.import_layer(tmp_path / "slow", src)
    finally:
        pyhcs.set_slow_call_threshold(old)
    messages = [r.getMessage() for r in caplog.records]
    layer = f"layer {str(tmp_path / 'slow')!r}"
    assert any(f"HcsImportLayer ({layer}) has not returned" in m for m in messages), messages
    assert any(f"HcsImportLayer ({layer}) returned after" in m for m in messages), messages
    storage.destroy_layer(tmp_path / "slow")
