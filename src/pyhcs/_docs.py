"""Documents in, documents out: what users pass (a pydantic model, a dict or JSON text) becomes
the JSON text the backends take, and result documents become Python values.

``pyhcs.schema`` (pydantic) is imported only when a model is actually passed, so the objects
layer works, and imports fast, without it: a dict is dumped with :mod:`json`, a string is sent
as it is (the escape hatch: HCS itself reports what it dislikes in it).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["Document", "compute_system_config", "loads", "to_json"]

#: A document: a pydantic model of pyhcs.schema, a mapping, JSON text (str or bytes).
Document = Any

_TERMINATE_ON_CLOSE = "ShouldTerminateOnLastHandleClosed"


def _default(value: object) -> object:
    """json.dumps fallback for what a hand-written dict may contain."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model nested in a dict
        return dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _model_to_json(doc: Any) -> str:
    try:
        from .schema.documents import to_json as schema_to_json
    except ImportError:  # the schema package is optional for this layer
        text: str = doc.model_dump_json(by_alias=True, exclude_none=True)
        return text
    result: str = schema_to_json(doc)
    return result


def to_json(doc: Document | None, what: str = "document") -> str | None:
    """JSON text for ``doc``; None stays None (the backends pass NULL).

    Raises TypeError for anything that is not a document.
    """
    if doc is None:
        return None
    if isinstance(doc, str):
        return doc
    if isinstance(doc, (bytes, bytearray, memoryview)):
        return bytes(doc).decode("utf-8")
    if isinstance(doc, Mapping):
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=_default)
    if callable(getattr(doc, "model_dump_json", None)):
        return _model_to_json(doc)
    raise TypeError(f"the {what} must be a pyhcs.schema model, a dict or JSON text, not {type(doc).__name__}")


def compute_system_config(config: Document) -> str:
    """The configuration for HcsCreateComputeSystem, with ``ShouldTerminateOnLastHandleClosed``
    defaulting to true (a crashed or careless caller then leaks no system).

    An explicit value, true or false, is kept. Text that is not a JSON object is sent as it
    is, so HCS reports the problem itself.
    """
    if isinstance(config, Mapping):
        if _TERMINATE_ON_CLOSE not in config:
            config = {**config, _TERMINATE_ON_CLOSE: True}
        return json.dumps(config, separators=(",", ":"), ensure_ascii=False, default=_default)
    text = to_json(config, "compute system configuration")
    if text is None:
        raise TypeError("a compute system configuration is required")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if not isinstance(parsed, dict) or _TERMINATE_ON_CLOSE in parsed:
        return text
    parsed[_TERMINATE_ON_CLOSE] = True
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    """A result document as Python data (None for no document)."""
    if text is None or not text.strip():
        return None
    return json.loads(text)
