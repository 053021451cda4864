"""Coercion between what users pass as a document and the JSON text HCS takes and returns.

The Pythonic layer accepts a model, a ``dict`` or a JSON string wherever HCS takes a document,
and turns every result into a model. It does both through this module:

>>> from pyhcs.schema import ProcessStatus, PropertyQuery, parse, to_json
>>> to_json({"PropertyTypes": ["Memory"]}, PropertyQuery)
'{"PropertyTypes":["Memory"]}'
>>> status = parse(ProcessStatus, '{"ProcessId": 42, "Exited": true, "ExitCode": 3}')
>>> status.exit_code, status.raw_json
(3, '{"ProcessId": 42, "Exited": true, "ExitCode": 3}')

Inputs are checked strictly (unknown keys and enum values raise ``pydantic.ValidationError``)
unless they come as a JSON string, which is the escape hatch: a string is sent verbatim, and is
only validated when asked (``strict=True``). Results are parsed leniently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import cache
from typing import Any, TypeAlias, TypeVar, Union, overload

from pydantic import BaseModel, TypeAdapter

from pyhcs._narrow import is_json_mapping
from pyhcs.schema._base import HcsModel, SchemaVersion, as_version, check_strict
from pyhcs.schema._models import (
    BasicInformation,
    ComputeSystem,
    ContainerCredentialGuardSystemInfo,
    CpuGroupConfigurations,
    GetPropertyType,
    ProcessorTopology,
    QoSCapabilities,
    Service_PropertyQuery,
    ServiceProperties,
)
from pyhcs.schema._models_v1 import ContainerConfig

__all__ = [
    "SERVICE_PROPERTY_MODELS",
    "Document",
    "coerce",
    "config_version",
    "parse",
    "parse_config",
    "parse_list",
    "parse_optional",
    "service_property_payloads",
    "to_json",
]

#: What may be passed wherever HCS takes a document.
Document: TypeAlias = Union[BaseModel, Mapping[str, Any], str, bytes]  # noqa: UP007

_M = TypeVar("_M", bound=HcsModel)


@overload
def to_json(
    doc: None, model: type[HcsModel] | None = None, *, strict: bool | None = None
) -> None: ...
@overload
def to_json(
    doc: Document, model: type[HcsModel] | None = None, *, strict: bool | None = None
) -> str: ...
def to_json(
    doc: Document | None, model: type[HcsModel] | None = None, *, strict: bool | None = None
) -> str | None:
    """Turn a document into the JSON text HCS takes.

    Args:
        doc: a model, a ``dict`` (JSON or Python names), a JSON string, or ``None`` (an
            optional document left out: returns ``None``, which the backends pass as NULL).
        model: the schema type expected here, e.g. ``ComputeSystem``. Required to validate a
            ``dict`` or a string; a model instance must be an instance of it. For
            ``ComputeSystem``, a legacy schema 1.0 configuration (see :func:`config_version`)
            is validated as a ``v1.ContainerConfig`` instead.
        strict: reject unknown keys and enum values. Default: ``True`` for models and
            dicts, ``False`` for strings (a string is sent verbatim either way; ``True``
            only validates it first).

    Returns:
        Compact JSON: JSON names, unset members left out (explicit ``null``s of a parsed or
        dict document kept), empty sub-objects kept as ``{}``.

    Raises:
        pydantic.ValidationError: the document does not fit ``model`` (or is not strict).
        TypeError: ``doc`` is a model of another type than ``model``, or not a document.

    Example::

        >>> from pyhcs.schema import SignalProcessOptions
        >>> to_json({"Signal": "CtrlC"}, SignalProcessOptions)
        '{"Signal":"CtrlC"}'
        >>> to_json(None) is None
        True
    """
    if doc is None:
        return None
    if isinstance(doc, (str, bytes, bytearray)):
        text = doc if isinstance(doc, str) else bytes(doc).decode("utf-8")
        if strict:
            if model is not None:
                _legacy_aware(model, text).from_json(text, strict=True)
            else:
                json.loads(text)
        return text
    if isinstance(doc, BaseModel):
        if model is ComputeSystem and isinstance(doc, ContainerConfig):
            model = ContainerConfig
        if model is not None and not isinstance(doc, model):
            raise TypeError(f"expected a {model.__name__} document, got {type(doc).__name__}")
        if strict is not False:
            check_strict(doc)
        return doc.model_dump_json(by_alias=True, exclude_unset=True)
    if is_json_mapping(doc):  # a caller may pass anything: checked at run time
        if model is not None:
            chosen = _legacy_aware(model, doc)
            return chosen.from_dict(doc, strict=strict is not False).to_json()
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    raise TypeError(f"not a document: {type(doc).__name__}")


def _jsonable(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _legacy_aware(model: type[HcsModel], doc: Mapping[str, Any] | str) -> type[HcsModel]:
    if model is ComputeSystem and config_version(doc) == (1, 0):
        return ContainerConfig
    return model


def config_version(doc: Mapping[str, Any] | str | bytes | BaseModel) -> SchemaVersion | None:
    """The schema a compute system configuration is written in: ``(1, 0)`` for a legacy
    ``ContainerConfig``, ``(2, minor)`` for a ``ComputeSystem``, ``None`` when it cannot tell.

    A declared ``SchemaVersion`` decides (an empty one, ``{}``, says nothing). Without one,
    the members only a 1.0 ``ContainerConfig`` has (``SystemType``, ``LayerFolderPath``,
    ``HvPartition``, ``VolumePath``...) make it 1.0, the 2.x roots (``Container``,
    ``VirtualMachine``, ``HostedSystem``) make it 2.x (minor unknown: ``(2, 0)``).

    >>> config_version('{"SystemType": "Container", "Name": "c1", "Layers": []}')
    (1, 0)
    >>> config_version({"SchemaVersion": {"Major": 2, "Minor": 1}, "Container": {}})
    (2, 1)
    """
    if isinstance(doc, ContainerConfig):
        return (1, 0)
    if isinstance(doc, BaseModel):
        doc = doc.model_dump(by_alias=True, exclude_none=True)
    elif isinstance(doc, (str, bytes, bytearray)):
        try:
            doc = json.loads(doc)
        except ValueError:
            return None
    if not is_json_mapping(doc):
        return None
    declared = doc.get("SchemaVersion")
    if is_json_mapping(declared) and declared:
        try:
            return as_version(declared)
        except ValueError:
            return None
    if any(k in doc for k in _V1_ONLY):
        return (1, 0)
    if any(k in doc for k in ("Container", "VirtualMachine", "HostedSystem")):
        return (2, 0)
    return None


# Members of a 1.0 ContainerConfig that no 2.x ComputeSystem has at its root.
_V1_ONLY = frozenset(
    {str(f.alias) for f in ContainerConfig.model_fields.values()}
    - {str(f.alias) for f in ComputeSystem.model_fields.values()}
)


def parse_config(
    text: str | bytes, *, strict: bool = False
) -> ComputeSystem | ContainerConfig:
    """Parse a compute system configuration of either major version: a legacy schema 1.0
    document gives a ``v1.ContainerConfig``, anything else a ``ComputeSystem``.

    Raises:
        pydantic.ValidationError: as :meth:`HcsModel.from_json`.
    """
    if config_version(text) == (1, 0):
        return ContainerConfig.from_json(text, strict=strict)
    return ComputeSystem.from_json(text, strict=strict)


def coerce(model: type[_M], doc: _M | Mapping[str, Any] | str | bytes, *,
           strict: bool = True) -> _M:
    """Turn a model, ``dict`` or JSON string into a ``model`` instance.

    Raises:
        pydantic.ValidationError: the document does not fit (strict: unknown members).
        TypeError: ``doc`` is a model of another type.
    """
    if isinstance(doc, model):
        if strict:
            check_strict(doc)
        return doc
    if isinstance(doc, BaseModel):
        raise TypeError(f"expected a {model.__name__} document, got {type(doc).__name__}")
    if isinstance(doc, (str, bytes, bytearray)):
        return model.from_json(doc, strict=strict)
    return model.from_dict(doc, strict=strict)


def parse(model: type[_M], text: str | bytes, *, strict: bool = False) -> _M:
    """Parse a result document; ``.raw_json`` keeps the text.

    Lenient by default: unknown members are kept (``model_extra``, re-serialised by
    ``to_json``) and unknown enum values stay strings. ``pyhcs.schema.unknown_members``
    lists them.

    Raises:
        pydantic.ValidationError: malformed JSON or a member of the wrong type.
    """
    return model.from_json(text, strict=strict)


def parse_optional(model: type[_M], text: str | bytes | None) -> _M | None:
    """Like :func:`parse`, but ``None`` or blank text (no result document) gives ``None``."""
    if text is None or not text.strip():
        return None
    return model.from_json(text)


@cache
def _list_adapter(model: type[HcsModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def parse_list(model: type[_M], text: str | bytes) -> list[_M]:
    """Parse a JSON array of documents, e.g. the result of HcsEnumerateComputeSystems.

    The elements have no ``raw_json`` of their own; the caller holds the array's text.
    """
    items: list[_M] = _list_adapter(model).validate_json(text)
    return items


#: The payload type of each ``GetPropertyType`` in a ServiceProperties result.
SERVICE_PROPERTY_MODELS: dict[str, type[HcsModel]] = {
    GetPropertyType.BASIC.value: BasicInformation,
    GetPropertyType.CPU_GROUP.value: CpuGroupConfigurations,
    GetPropertyType.PROCESSOR_TOPOLOGY.value: ProcessorTopology,
    GetPropertyType.CONTAINER_CREDENTIAL_GUARD.value: ContainerCredentialGuardSystemInfo,
    GetPropertyType.QOS_CAPABILITIES.value: QoSCapabilities,
}


def service_property_payloads(
    result: ServiceProperties,
    query: Service_PropertyQuery | Sequence[GetPropertyType | str],
) -> list[Any]:
    """Type the ``Properties`` of an HcsGetServiceProperties result.

    HCS answers a query for ``["Basic", "ProcessorTopology"]`` with one element per type, in
    order; each element becomes the matching model (``BasicInformation``, ...). Elements of
    a type without a model, or beyond the query, are returned unchanged.

    Example::

        >>> from pyhcs.schema import target_from_supported
        >>> text = '{"Properties": [{"SupportedSchemaVersions": [{"Major": 2, "Minor": 5}]}]}'
        >>> info, = service_property_payloads(parse(ServiceProperties, text), ["Basic"])
        >>> type(info).__name__, target_from_supported(info)
        ('BasicInformation', (2, 5))
    """
    types = query.property_types or [] if isinstance(query, Service_PropertyQuery) else query
    out: list[Any] = []
    for i, payload in enumerate(result.properties or []):
        kind = types[i] if i < len(types) else None
        key = kind.value if isinstance(kind, Enum) else kind
        model = SERVICE_PROPERTY_MODELS.get(key) if isinstance(key, str) else None
        if model is not None and isinstance(payload, Mapping):
            out.append(model.model_validate(payload))
        else:
            out.append(payload)
    return out
