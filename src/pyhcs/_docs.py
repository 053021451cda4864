"""Documents in, documents out: what users pass (a pydantic model, a dict or JSON text) becomes
the JSON text the backends take, and result documents become Python values.

``pyhcs.schema`` (pydantic) is imported only when a model is actually passed, so the objects
layer works, and imports fast, without it: a dict is dumped with :mod:`json`, a string is sent
as it is (the escape hatch: HCS itself reports what it dislikes in it).
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import os
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Document", "check_document", "compute_system_config", "loads", "to_json"]

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


def _model_to_json(doc: Any, strict: bool) -> str:
    try:
        from .schema.documents import to_json as schema_to_json
    except ImportError:  # the schema package is optional for this layer
        text: str = doc.model_dump_json(by_alias=True, exclude_none=True)
        return text
    result: str = schema_to_json(doc, strict=strict)
    return result


def to_json(doc: Document | None, what: str = "document", *, strict: bool = True) -> str | None:
    """JSON text for ``doc``; None stays None (the backends pass NULL). A model is checked
    strictly unless ``strict=False`` (the caller then checks the text, see :func:`check_document`).

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
        return _model_to_json(doc, strict)
    raise TypeError(f"the {what} must be a pyhcs.schema model, a dict or JSON text, not {type(doc).__name__}")


def compute_system_config(config: Document, *, strict: bool = True) -> str:
    """The configuration for HcsCreateComputeSystem, with ``ShouldTerminateOnLastHandleClosed``
    defaulting to true (a crashed or careless caller then leaks no system).

    An explicit value, true or false, is kept. Text that is not a JSON object is sent as it
    is, so HCS reports the problem itself.
    """
    if isinstance(config, Mapping):
        if _TERMINATE_ON_CLOSE not in config:
            config = {**config, _TERMINATE_ON_CLOSE: True}
        return json.dumps(config, separators=(",", ":"), ensure_ascii=False, default=_default)
    text = to_json(config, "compute system configuration", strict=strict)
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


_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(text: str | None) -> Any:
    """A result document as Python data (None for no document)."""
    if not text:
        return None
    # The documents HCS returns start with their value and have nothing after it: one scan,
    # without json.loads' checks and its two whitespace matches (a third of the cost of a
    # properties round trip). Anything else takes the long way, which also raises the errors.
    if text[0] in "{[":
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    if not text.strip():
        return None
    return json.loads(text)


# ------------------------------------------------------------------------------ strict checks

#: What a document sent to HCS is validated as: (the call, what it is, the schema model name).
_KINDS: dict[str, tuple[str, str]] = {
    "config": ("HcsCreateComputeSystem", "compute system configuration"),
    "modify": ("HcsModifyComputeSystem", "modify request"),
}
_HCS_E_INVALID_JSON = 0x8037010D


def check_document(text: str, kind: str, *, system_id: str | None = None) -> None:
    """Validates ``text`` strictly against pyhcs' schema before it is sent.

    A member the schema does not know (``"Ownr"``) is an ``errors.InvalidJsonError`` naming it,
    where it is, and the close match (``Owner``): HCS itself would often ignore it silently.
    Text that is not a JSON object is left for HCS to report. Identical text is checked
    once (a cache of recent documents), so a loop creating systems from one configuration
    pays the validation once.
    """
    try:
        problems = _problems(kind, text)
    except ImportError:  # pydantic is optional for this layer: nothing to check against
        return
    if problems:
        from .errors import make_error

        call, what = _KINDS[kind]
        raise make_error(
            _HCS_E_INVALID_JSON,
            message=f"the {what} does not fit pyhcs' schema: {'; '.join(problems)} "
            "(pass strict=False to send members newer than the schema)",
            call=call,
            system_id=system_id,
        )


@functools.lru_cache(maxsize=128)
def _problems(kind: str, text: str) -> tuple[str, ...]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return ()  # HCS reports what is wrong with it
    if not isinstance(parsed, dict):
        return ()
    from pydantic import ValidationError

    from .schema import documents
    from .schema._models import ModifySettingRequest

    try:
        if kind == "config":
            documents.parse_config(text, strict=True)
        else:
            documents.coerce(ModifySettingRequest, text, strict=True)
    except ValidationError as exc:
        root = _config_model(text) if kind == "config" else ModifySettingRequest
        return tuple(_describe(error, root) for error in exc.errors())
    return ()


def _config_model(text: str) -> Any:
    from .schema import documents
    from .schema._models import ComputeSystem
    from .schema._models_v1 import ContainerConfig

    return ContainerConfig if documents.config_version(text) == (1, 0) else ComputeSystem


def _describe(error: Any, root: Any) -> str:
    loc = tuple(error.get("loc", ()))
    path = "/" + "/".join(str(k) for k in loc)
    if error.get("type") == "extra_forbidden" and loc:
        name = str(loc[-1])
        known = _members_at(root, loc[:-1])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown member {name!r} at {path}{hint}"
    return f"{path}: {error.get('msg', 'invalid')}"


def _members_at(root: Any, loc: tuple[Any, ...]) -> list[str]:
    """The JSON names the schema knows at ``loc`` (walked from the model ``root``)."""
    cls: Any = root
    for key in loc:
        fields: dict[str, Any] = getattr(cls, "model_fields", None) or {}
        if not fields:
            return []
        for name, field in fields.items():
            if (field.alias or name) == key:
                cls = _model_in(field.annotation) or cls
                break
        # a list index or a map key: the same model goes on
    known: dict[str, Any] = getattr(cls, "model_fields", None) or {}
    return [str(field.alias or name) for name, field in known.items()]


def _model_in(annotation: Any) -> Any:
    """The first pydantic model inside a field's annotation (Optional, list, dict...)."""
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
