"""The example documents of tools/schema/examples.md parse and re-serialise unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pyhcs.schema import TYPES_BY_NAME, HcsModel, check_strict, parse, to_json, unknown_members

EXAMPLES_FILE = Path(__file__).resolve().parents[2] / "tools" / "schema" / "examples.md"


def _examples() -> list[tuple[str, str, str]]:
    """(label, schema type, document) of every example in tools/schema/examples.md."""
    found = re.findall(r"^## (.+?)\n\n<!-- example: (\w+) -->\n```json\n(.*?)\n```$",
                       EXAMPLES_FILE.read_text("utf-8"), re.S | re.M)
    return [(label, name, body) for label, name, body in found]


EXAMPLES = _examples()


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
    as_dict: dict[str, Any] = json.loads(text)
    assert json.loads(to_json(as_dict, model)) == json.loads(text)
    assert to_json(text, model, strict=True) == text
    check_strict(model.from_dict(json.loads(text)))


def test_examples_keep_empty_objects() -> None:
    lcow = next(text for label, _, text in EXAMPLES if label.startswith("5.3"))
    out = json.loads(_model("ComputeSystem").from_json(lcow).to_json())
    assert out["VirtualMachine"]["Devices"]["Scsi"] == {"0": {}}
    assert out["VirtualMachine"]["Devices"]["Plan9"] == {}


def test_every_example_is_read() -> None:
    text = EXAMPLES_FILE.read_text("utf-8")
    assert len(EXAMPLES) == text.count("<!-- example: ") >= 10
    assert len({label for label, _, _ in EXAMPLES}) == len(EXAMPLES)
