"""How values look in a trace: documents, HRESULTs and event types, both ways."""

from __future__ import annotations

import json
import math
from typing import Any

from .. import errors
from .._narrow import is_json_list, is_json_object
from .._native._types import EventType

#: A document that is not JSON (or would not survive a JSON round trip unchanged) is kept as
#: text in this wrapper, so replay sends exactly what was sent.
TEXT_KEY = "$text"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member")
    return out


def _safe(value: Any) -> bool:
    """JSON that json.dumps writes back with the same meaning (no NaN, no float precision loss)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if is_json_object(value):
        return all(_safe(v) for v in value.values())
    if is_json_list(value):
        return all(_safe(v) for v in value)
    return True


def doc_to_trace(text: str | None) -> Any:
    """A document as recorded: parsed JSON where it is JSON, else ``{"$text": text}``."""
    if text is None:
        return None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError:
        return {TEXT_KEY: text}
    # JSON null and JSON strings are kept as text: a recorded null means no document (a NULL
    # pointer), and a plain string in a hand-written trace means the text itself
    if value is None or isinstance(value, str) or not _safe(value) or (is_json_object(value) and list(value) == [TEXT_KEY]):
        return {TEXT_KEY: text}
    return value


def doc_from_trace(value: Any) -> str | None:
    """The text to send for a recorded document."""
    if value is None:
        return None
    if is_json_object(value) and list(value) == [TEXT_KEY]:
        text = value[TEXT_KEY]
        if isinstance(text, str):
            return text
    return json.dumps(value)


def format_hresult(hr: int) -> str:
    return f"0x{errors.to_unsigned(hr):08X}"


_BY_SYMBOL = {info.symbol: info.hresult for info in errors.CODES}


def parse_hresult(value: object) -> int:
    """An HRESULT as a trace may give it: an integer, ``"0x80370105"`` or ``"HCS_E_INVALID_STATE"``."""
    if isinstance(value, bool):
        raise ValueError(f"an HRESULT cannot be {value!r}")
    if isinstance(value, int):
        return errors.to_unsigned(value)
    if isinstance(value, str):
        text = value.strip()
        if text in _BY_SYMBOL:
            return _BY_SYMBOL[text]
        try:
            return errors.to_unsigned(int(text, 0))
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not an HRESULT (an integer, '0x...' or a name such as HCS_E_INVALID_STATE)")


def hresult_label(hr: int) -> str:
    """``HCS_E_INVALID_STATE (0x80370105)``; ``S_OK`` for success."""
    if hr == 0:
        return "S_OK"
    return f"{errors.hresult_name(hr)} ({format_hresult(hr)})"


def event_type_name(code: int) -> str:
    try:
        return EventType(code).name
    except ValueError:
        return f"0x{code:08X}"


def parse_event_type(value: object) -> int:
    """An event type as a trace may give it: a name (``SYSTEM_EXITED``, also ``SystemExited``) or a number."""
    if isinstance(value, bool):
        raise ValueError(f"an event type cannot be {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        snake = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(text)).upper()
        for name in (text.upper(), snake, snake.removeprefix("HCS_EVENT_")):
            if name in EventType.__members__:
                return int(EventType[name])
        try:
            return int(text, 0)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not an event type (a name such as SYSTEM_EXITED, or a number)")
