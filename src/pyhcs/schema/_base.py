"""Base model, scalar types and schema-version machinery for :mod:`pyhcs.schema`.

Hand-written; the generated :mod:`pyhcs.schema._models` builds on it. Pure pydantic: nothing
here (or in the generated code) may import a pyhcs backend.

Lenient results, strict documents
---------------------------------
All models share one configuration with ``extra="allow"``, so that parsing what HCS returns
never fails on a member this library does not know (the schema grows with every Windows
release) and unknown members survive re-serialisation. Documents *we build* are held to the
schema instead; "strict" means: no unknown member anywhere in the tree, no enum value the
schema does not list, and the members whose type another member chooses checked against that
type (``ModifySettingRequest.Settings`` by its ``ResourcePath``, its ``GuestRequest`` and that
request's ``Settings`` by ``ResourceType``, ``ModificationRequest.Settings`` by
``PropertyType``, ``OperationDetails`` by ``Operation``: the tables are generated from
``tools/schema/payloads.json``). A key no table lists leaves its payload free-form, with a
:class:`SchemaWarning`. Strictness is applied

* when a model is constructed from Python (``ComputeSystem(Owner="x", Contaner=...)`` raises
  :class:`pydantic.ValidationError` with an ``extra_forbidden`` error at ``Contaner``);
* by ``Model.from_json(text, strict=True)``, ``Model.from_dict(data, strict=True)`` and
  :func:`check_strict`;
* by :func:`pyhcs.schema.to_json`, the helper the Pythonic layer uses for every document it
  sends (``strict=False`` opts out).

Parsing (``from_json``, ``from_dict``, ``model_validate*``) is lenient by default, and runs
entirely inside pydantic-core. Strict parsing is the same single pass, with pydantic's
``extra="forbid"`` and a validation context that makes the enum fields (``OpenEnum``) refuse
unknown strings; the only Python code it runs is the payload check of the few models that have
one (:class:`PayloadModel`). :func:`check_strict` walks a tree that already exists (models
built in Python, results parsed leniently).

``None`` and ``null``
---------------------
In Python, ``None`` means "not set": keyword arguments, ``dict`` values and attributes that are
``None`` are left out of :meth:`HcsModel.to_json`. An explicit ``null`` in parsed JSON text is
kept (``model_fields_set`` records it), so a result re-serialises as it came.

Versions
--------
Every field records the schema version that introduced it (the docs' ``NewInVersion``) in
``json_schema_extra["since"]``; enum values register theirs with :func:`register_enum_since`.
:func:`check_version` lists every set field (and enum value) newer than a target version;
:func:`target_from_supported` picks the target from the host's ``SupportedSchemaVersions``.
The legacy schema 1.0 models (:mod:`pyhcs.schema.v1`, base :class:`HcsModelV1`) are 1.0
throughout; checking one against 2.x, or a 2.x document against 1.0, gives one
:class:`MajorVersionIssue`. ``SchemaVersion: {}`` says no version (:func:`document_version`).
"""

from __future__ import annotations

import json
import re
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Final,
    NamedTuple,
    Protocol,
    TypeAlias,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
)

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import (
    CoreSchema,
    InitErrorDetails,
    PydanticCustomError,
    PydanticKnownError,
    core_schema,
)
from typing_extensions import Self  # typing.Self needs Python 3.11

if TYPE_CHECKING:
    from typing_extensions import LiteralString  # typing's from Python 3.11

from .._narrow import is_array, is_json_mapping, is_json_object, is_sequence

__all__ = [
    "Base64",
    "Binary",
    "DateTime",
    "Guid",
    "HasMajorMinor",
    "HcsModel",
    "HcsModelV1",
    "IndexKey",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "MacAddress",
    "MajorVersionIssue",
    "OpenEnum",
    "PayloadModel",
    "SchemaVersion",
    "SchemaWarning",
    "StrFormat",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "VersionIssue",
    "VersionLike",
    "as_version",
    "check_strict",
    "check_version",
    "document_version",
    "enum_value_since",
    "field_since",
    "format_version",
    "payload_types",
    "register_enum_since",
    "register_payload",
    "target_from_supported",
    "unknown_members",
]

# --------------------------------------------------------------------------- scalar types

#: Integer widths from the docs' schema reference (authoritative where hcsshim narrows them).
Int8: TypeAlias = Annotated[int, Ge(-(2**7)), Le(2**7 - 1)]
Int16: TypeAlias = Annotated[int, Ge(-(2**15)), Le(2**15 - 1)]
Int32: TypeAlias = Annotated[int, Ge(-(2**31)), Le(2**31 - 1)]
Int64: TypeAlias = Annotated[int, Ge(-(2**63)), Le(2**63 - 1)]
UInt8: TypeAlias = Annotated[int, Ge(0), Le(2**8 - 1)]
UInt16: TypeAlias = Annotated[int, Ge(0), Le(2**16 - 1)]
UInt32: TypeAlias = Annotated[int, Ge(0), Le(2**32 - 1)]
UInt64: TypeAlias = Annotated[int, Ge(0), Le(2**64 - 1)]


@dataclass(frozen=True, slots=True)
class StrFormat:
    """Marks a ``str`` with the schema's string format (``guid``, ``date-time``, ...).

    The format is documentation and a hint for :mod:`pyhcs.testing.strategies`; it is *not*
    validated. HCS itself is the judge, values differ between hosts (Go writes nanosecond
    timestamps, Windows 100 ns ones), and placeholder IDs are common in samples.
    """

    format: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: Any
    ) -> JsonSchemaValue:
        schema: JsonSchemaValue = handler(core_schema)
        schema["format"] = self.format
        return schema


#: A GUID string without braces, e.g. ``"02740e08-d1d3-5715-9c08-c255eab4ca01"``.
Guid: TypeAlias = Annotated[str, StrFormat("guid")]
#: An RFC 3339 timestamp string; kept as text so it round-trips byte for byte.
DateTime: TypeAlias = Annotated[str, StrFormat("date-time")]
#: Base64 text (Go ``[]byte``).
Base64: TypeAlias = Annotated[str, StrFormat("byte")]
#: Opaque binary-as-string (docs ``NullableByteArray``/``string_binary``).
Binary: TypeAlias = Annotated[str, StrFormat("binary")]
#: A MAC address string, e.g. ``"00-15-5D-12-34-56"``.
MacAddress: TypeAlias = Annotated[str, StrFormat("mac-address")]


def _index_key(value: object) -> object:
    # Map keys that the docs type as integers (LUNs, port numbers, offsets) are decimal
    # strings on the wire; accept a Python int for convenience.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


#: Key of a map whose keys are numbers in the docs but strings on the wire.
IndexKey: TypeAlias = Annotated[str, BeforeValidator(_index_key)]

_E = TypeVar("_E", bound=Enum)

#: The validation context that makes parsing strict (see the module docstring); pydantic
#: passes it down to every nested validator, so one Rust pass checks the whole tree.
_STRICT_KEY: Final = "pyhcs.schema.strict"
STRICT_CONTEXT: Final[dict[str, bool]] = {_STRICT_KEY: True}


def _is_strict(info: ValidationInfo) -> bool:
    ctx = info.context
    return is_json_object(ctx) and bool(ctx.get(_STRICT_KEY))


def _expected(enum_cls: type[Enum]) -> str:
    names = [repr(m.value) for m in enum_cls]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True, slots=True)
class _OpenEnumSchema:
    """Builds the core schema of ``OpenEnum[E]``: ``E`` first, then any string, except in
    strict mode, where a string that is no value of ``E`` fails with an ``enum`` error.

    Known values never reach Python code (the enum branch matches first), so lenient parsing
    costs what ``E | str`` costs."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> CoreSchema:
        enum_cls = next(
            a for a in get_args(source) if isinstance(a, type) and issubclass(a, Enum)
        )
        expected = _expected(enum_cls)

        def other_string(value: str, info: ValidationInfo) -> str:
            if _is_strict(info):
                raise PydanticKnownError("enum", {"expected": expected})
            return value

        return core_schema.union_schema(
            [
                handler.generate_schema(enum_cls),
                core_schema.with_info_after_validator_function(
                    other_string, core_schema.str_schema()
                ),
            ],
            mode="left_to_right",
            custom_error_type="enum",
            custom_error_context={"expected": expected},
        )


#: A value of enum ``E``, or any other string. Known values parse to enum members; a string
#: that a newer host sends (or hcsshim knows and the docs do not) is kept as ``str``.
#: Strict mode (see the module docstring) rejects such strings in documents we build.
OpenEnum: TypeAlias = Annotated[Union[_E, str], _OpenEnumSchema()]  # noqa: UP007

# --------------------------------------------------------------------------- versions

#: A schema version as ``(major, minor)``.
SchemaVersion: TypeAlias = tuple[int, int]


class HasMajorMinor(Protocol):
    """Anything with ``major``/``minor`` attributes, e.g. the ``Version`` model."""

    @property
    def major(self) -> int | None: ...

    @property
    def minor(self) -> int | None: ...


#: ``"2.1"``, ``(2, 1)``, ``{"Major": 2, "Minor": 1}`` or a ``Version`` model.
VersionLike: TypeAlias = Union[str, tuple[int, int], Mapping[str, Any], HasMajorMinor]  # noqa: UP007


def as_version(value: VersionLike) -> SchemaVersion:
    """Normalise a version to ``(major, minor)``.

    >>> as_version("2.1"), as_version({"Major": 2, "Minor": 5}), as_version((2, 3))
    ((2, 1), (2, 5), (2, 3))

    Raises:
        ValueError: if the value does not describe a version.
    """
    try:
        if isinstance(value, str):
            major, _, minor = value.strip().partition(".")
            return int(major), int(minor or 0)
        if isinstance(value, tuple):
            return int(value[0]), int(value[1])
        if isinstance(value, Mapping):
            return int(value.get("Major", value.get("major"))), int(
                value.get("Minor", value.get("minor", 0)) or 0
            )
        return int(value.major or 0), int(value.minor or 0)
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"not a schema version: {value!r}") from exc


def format_version(version: SchemaVersion) -> str:
    """``(2, 1)`` -> ``"2.1"``."""
    return f"{version[0]}.{version[1]}"


class VersionIssue(NamedTuple):
    """One member of a document that is newer than the target schema version.

    ``path`` is the ``/``-joined chain of JSON names, list indexes and map keys from the
    document root (the same shape as an HCS ``ResourcePath``). When an enum *value* is the
    newer part, the path ends in ``=<value>``, e.g. ``"PropertyTypes/0=ProcessorTopology"``.
    ``since`` is the version that introduced it, or ``None`` when no source gives one (only
    reported with ``include_unknown=True``).

    A document of the other major version gives a :class:`MajorVersionIssue` instead.
    """

    path: str
    since: SchemaVersion | None

    def __str__(self) -> str:
        when = "unknown version" if self.since is None else format_version(self.since)
        return f"{self.path} (schema {when})"


class MajorVersionIssue(VersionIssue):
    """The whole document is of the other major version: a legacy 1.0 ``ContainerConfig``
    checked against 2.x, or a 2.x document against 1.0 (major versions are not compatible).

    ``path`` is ``""``, ``since`` the document's own version, ``target`` the one asked for.
    """

    target: SchemaVersion
    document: str

    def __str__(self) -> str:
        kind = "legacy schema 1.0" if self.since == (1, 0) else "schema 2.x"
        own = format_version(self.since) if self.since is not None else "?"
        return (f"a {kind} document ({self.document}, {own}) where schema "
                f"{format_version(self.target)} is expected: major versions are not compatible")


_ENUM_SINCE: dict[type[Enum], dict[str, SchemaVersion]] = {}


def register_enum_since(enum_cls: type[Enum], since: Mapping[str, str]) -> None:
    """Record the schema version of each value of ``enum_cls`` (called by generated code)."""
    _ENUM_SINCE[enum_cls] = {value: as_version(v) for value, v in since.items()}


def enum_value_since(member: Enum) -> SchemaVersion | None:
    """The schema version that introduced an enum value, or ``None`` if unknown."""
    return _ENUM_SINCE.get(type(member), {}).get(str(member.value))


@dataclass(frozen=True, slots=True)
class _Slot:
    """What the tree walkers need to know about one field, computed once per class."""

    name: str
    alias: str
    since: SchemaVersion | None
    enum: type[Enum] | None  # the enum of an OpenEnum field (possibly inside list/dict)
    nested: bool  # may hold models: a model type, or Any


_TABLES: dict[type[BaseModel], dict[str, _Slot]] = {}


def _type_parts(annotation: Any) -> Iterator[Any]:
    """Every leaf type inside Annotated/Union/list/dict, e.g. ``list[Layer] | None``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _type_parts(get_args(annotation)[0])
    elif origin is Union or origin is UnionType or origin in (list, dict, tuple):
        for arg in get_args(annotation):
            yield from _type_parts(arg)
    else:
        yield annotation


def _table(cls: type[BaseModel]) -> dict[str, _Slot]:
    """Python field name -> what the walkers need, in field order."""
    table = _TABLES.get(cls)
    if table is None:
        slots: list[_Slot] = []
        for name, info in cls.model_fields.items():
            parts = list(_type_parts(info.annotation))
            enum = next((p for p in parts if isinstance(p, type) and issubclass(p, Enum)), None)
            nested = any(
                p is Any or (isinstance(p, type) and issubclass(p, BaseModel)) for p in parts
            )
            extra = info.json_schema_extra
            since = extra.get("since") if is_json_object(extra) else None
            slots.append(
                _Slot(
                    name=name,
                    alias=info.alias or name,
                    since=as_version(since) if isinstance(since, str) else None,
                    enum=enum,
                    nested=nested,
                )
            )
        table = _TABLES[cls] = {slot.name: slot for slot in slots}
    return table


_CHECKED: dict[type[BaseModel], tuple[_Slot, ...]] = {}


def _checked_slots(cls: type[BaseModel]) -> tuple[_Slot, ...]:
    """The fields the strict check must look into: enums and anything that nests models."""
    slots = _CHECKED.get(cls)
    if slots is None:
        slots = _CHECKED[cls] = tuple(
            s for s in _table(cls).values() if s.enum is not None or s.nested
        )
    return slots


def field_since(model_cls: type[BaseModel], name: str) -> SchemaVersion | None:
    """Schema version that introduced a field, given its Python name or its JSON name.

    >>> from pyhcs.schema import Chipset
    >>> field_since(Chipset, "LinuxKernelDirect")
    (2, 2)

    Raises:
        KeyError: if the model has no such field.
    """
    for slot in _table(model_cls).values():
        if name in (slot.name, slot.alias):
            return slot.since
    raise KeyError(f"{model_cls.__name__} has no field {name!r}")


def _join(path: str, key: str | int) -> str:
    return f"{path}/{key}" if path else str(key)


def check_version(
    doc: BaseModel,
    target: VersionLike | None = None,
    *,
    include_unknown: bool = False,
) -> list[VersionIssue]:
    """List every member of ``doc`` that is newer than the schema version ``target``.

    The walk covers every set (non-``None``) field, recursing into sub-models, lists, maps
    and models held by ``Any`` members (e.g. ``ModifySettingRequest.Settings``); enum values
    newer than the target are reported too.

    Args:
        doc: the document (any model).
        target: the version to check against; by default the document's own version
            (:func:`document_version`: its ``SchemaVersion``, 1.0 for legacy models). Use
            :func:`target_from_supported` to check against what a host supports.
        include_unknown: also report members for which no source gives a version
            (hcsshim-only fields), with ``since=None``.

    Returns:
        ``[VersionIssue(path, since), ...]`` in document order; empty when ``doc`` fits.

    Raises:
        ValueError: if no target is given and the document gives no version (no
            ``SchemaVersion``, or an empty one).

    Example (hcsshim declares 2.1 for its Linux utility VM, yet boots it kernel-direct)::

        >>> from pyhcs.schema import builders
        >>> doc = builders.linux_utility_vm(boot_files_path="C:\\boot", version="2.1")
        >>> for issue in check_version(doc):
        ...     print(issue)
        VirtualMachine/Chipset/LinuxKernelDirect (schema 2.2)
        VirtualMachine/Chipset/LinuxKernelDirect/KernelFilePath (schema 2.2)
        VirtualMachine/Chipset/LinuxKernelDirect/InitRdPath (schema 2.2)
        >>> check_version(doc, "2.2")
        []
    """
    own = document_version(doc)
    if target is None:
        if own is None:
            raise ValueError(
                f"{type(doc).__name__} has no SchemaVersion: pass the target version"
            )
        target = own
    goal = as_version(target)
    if own is not None and (own[0] == 1) != (goal[0] == 1):
        # Major versions are not compatible with one another: a 1.0 ContainerConfig is not
        # an older 2.x ComputeSystem, so no member-by-member comparison makes sense.
        issue = MajorVersionIssue("", own)
        issue.target, issue.document = goal, type(doc).__name__
        return [issue]
    out: list[VersionIssue] = []
    _walk_versions(doc, "", goal, include_unknown, out)
    return out


def document_version(doc: BaseModel) -> SchemaVersion | None:
    """The schema version a document is written in, or ``None`` when it does not say.

    Legacy models (:class:`HcsModelV1`) are ``(1, 0)``. A 2.x document says it with its
    ``SchemaVersion`` member (``ComputeSystem``, ``HostedSystem``, ``LayerData``); an empty
    ``SchemaVersion: {}`` (hcsshim sends one in ``LayerData``) gives no version, like a
    missing one. A declared major version of 1 is taken as written.

    >>> from pyhcs.schema import LayerData
    >>> document_version(LayerData.from_json('{"SchemaVersion": {}}')) is None
    True
    """
    if isinstance(doc, HcsModelV1):
        return (1, 0)
    own = getattr(doc, "schema_version", None)
    if own is None:
        return None
    major = getattr(own, "major", None)
    minor = getattr(own, "minor", None)
    if major is None and minor is None:
        return None
    return as_version(own)


def _walk_versions(
    value: object, path: str, target: SchemaVersion, unknown: bool, out: list[VersionIssue]
) -> None:
    if isinstance(value, BaseModel):
        table = _table(type(value))
        # __dict__ holds exactly the fields, in declaration order; most are None.
        for name, v in value.__dict__.items():
            if v is None:
                continue
            slot = table[name]
            here = _join(path, slot.alias)
            if slot.since is None:
                if unknown:
                    out.append(VersionIssue(here, None))
            elif slot.since > target:
                out.append(VersionIssue(here, slot.since))
            if slot.enum is not None:
                _walk_enum_versions(v, here, target, unknown, out)
            if slot.nested:
                _walk_versions(v, here, target, unknown, out)
    elif is_array(value):
        for i, item in enumerate(value):
            _walk_versions(item, _join(path, i), target, unknown, out)
    elif is_json_object(value):
        for key, item in value.items():
            _walk_versions(item, _join(path, key), target, unknown, out)


def _walk_enum_versions(
    value: object, path: str, target: SchemaVersion, unknown: bool, out: list[VersionIssue]
) -> None:
    if isinstance(value, Enum):
        since = enum_value_since(value)
        if since is None:
            if unknown:
                out.append(VersionIssue(f"{path}={value.value}", None))
        elif since > target:
            out.append(VersionIssue(f"{path}={value.value}", since))
    elif is_array(value):
        for i, item in enumerate(value):
            _walk_enum_versions(item, _join(path, i), target, unknown, out)
    elif is_json_object(value):
        for key, item in value.items():
            _walk_enum_versions(item, _join(path, key), target, unknown, out)


def target_from_supported(supported: object, *, major: int | None = 2) -> SchemaVersion:
    """Pick the highest schema version a host supports.

    Args:
        supported: the host's ``SupportedSchemaVersions``, in any of these shapes: a list of
            versions (``Version`` models, ``{"Major":..,"Minor":..}`` dicts, ``(2, 1)``,
            ``"2.1"``), a ``BasicInformation`` model or dict, a ``ServiceProperties`` result
            of a ``Basic`` query, a ``GuestConnectionInfo``, or the JSON text of any of these.
        major: only consider this major version (``None``: any). The docs say an element
            ``A.X`` means ``A.0`` to ``A.X`` are all supported, so the highest minor wins.

    Raises:
        ValueError: if no version (of that major) is found.

    Example::

        >>> target_from_supported('{"SupportedSchemaVersions": [{"Major": 2, "Minor": 5}]}')
        (2, 5)
    """
    # as_version checks each element's shape at run time (ValueError), whatever a host sent.
    versions = [as_version(cast("VersionLike", v)) for v in _supported_list(supported)]
    if major is not None:
        versions = [v for v in versions if v[0] == major]
    if not versions:
        raise ValueError(f"no supported schema version (major {major}) in {supported!r}")
    return max(versions)


def _supported_list(value: object) -> Sequence[object]:
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_none=True)
    if is_json_mapping(value):
        if "SupportedSchemaVersions" in value:
            return _supported_list(value["SupportedSchemaVersions"])
        properties = value.get("Properties")
        if is_array(properties):  # ServiceProperties of a Basic query
            for item in properties:
                if is_json_mapping(item) and "SupportedSchemaVersions" in item:
                    return _supported_list(item)
        if "Major" in value or "major" in value:
            return [value]
        raise ValueError(f"no SupportedSchemaVersions in {value!r}")
    if is_sequence(value):
        return [
            v.model_dump(by_alias=True) if isinstance(v, BaseModel) else v
            for v in value
        ]
    raise ValueError(f"cannot read supported schema versions from {value!r}")


# --------------------------------------------------------------------------- strictness


class SchemaWarning(UserWarning):
    """Strict mode met a member it cannot check, e.g. ``Settings`` of a ``ResourcePath``
    that no table lists; the member is sent as it is."""


#: A payload type: a model class, or the name of a scalar type ("uint64", "string", ...),
#: or "none" (no payload: absent, null or ``{}``).
PayloadType: TypeAlias = Union[type[BaseModel], str]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class PayloadRule:
    """An ``Any`` member whose type a sibling member chooses (generated from
    ``tools/schema/payloads.json``)."""

    alias: str  # JSON name of the payload member, e.g. "Settings"
    name: str  # its Python name
    key_alias: str | None  # JSON name of the member that chooses, e.g. "ResourcePath"
    key_name: str | None
    exact: dict[str, tuple[PayloadType, ...] | None]
    patterns: tuple[tuple[re.Pattern[str], tuple[PayloadType, ...] | None], ...]
    fixed: tuple[PayloadType, ...] | None

    def lookup(
        self, model: BaseModel
    ) -> tuple[bool, tuple[PayloadType, ...] | None, str | None]:
        """``(known, types, key)``: ``types`` None means free-form; ``key`` None: absent."""
        if self.key_name is None:
            return True, self.fixed, ""
        key = model.__dict__.get(self.key_name)
        if key is None:
            return False, None, None
        text = key.value if isinstance(key, Enum) else key
        if not isinstance(text, str):
            return False, None, repr(text)
        if text in self.exact:
            return True, self.exact[text], text
        for pattern, types in self.patterns:
            if pattern.fullmatch(text):
                return True, types, text
        return False, None, text


_PAYLOADS: dict[type[BaseModel], list[PayloadRule]] = {}


def payload_rules(model: type[BaseModel]) -> tuple[PayloadRule, ...]:
    """The payload members of ``model`` (none for most models)."""
    return tuple(_PAYLOADS.get(model, ()))


def _field_name(cls: type[BaseModel], alias: str) -> str:
    for name, info in cls.model_fields.items():
        if info.alias == alias:
            return name
    raise KeyError(f"{cls.__name__} has no member {alias!r}")


def register_payload(
    owner: type[BaseModel],
    field: str,
    *,
    key: str | None = None,
    match: str = "exact",
    table: Mapping[str, tuple[PayloadType, ...] | None] | None = None,
    fixed: tuple[PayloadType, ...] | None = None,
) -> None:
    """Record the type of ``owner.<field>`` (called by generated code).

    Either ``fixed`` types, or a ``table`` from the value of the sibling member ``key`` to
    the types (``None``: known, free-form). With ``match="path"``, a ``*`` segment of a
    table key stands for any one segment of a resource path.
    """
    exact: dict[str, tuple[PayloadType, ...] | None] = {}
    patterns: list[tuple[re.Pattern[str], tuple[PayloadType, ...] | None]] = []
    for k, types in (table or {}).items():
        if match == "path" and "*" in k:
            regex = "/".join("[^/]+" if seg == "*" else re.escape(seg) for seg in k.split("/"))
            patterns.append((re.compile(regex), types))
        else:
            exact[k] = types
    rule = PayloadRule(
        alias=field,
        name=_field_name(owner, field),
        key_alias=key,
        key_name=_field_name(owner, key) if key is not None else None,
        exact=exact,
        patterns=tuple(patterns),
        fixed=fixed,
    )
    _PAYLOADS.setdefault(owner, []).append(rule)


def payload_types(model: BaseModel, field: str) -> tuple[PayloadType, ...] | None:
    """The types ``model.<field>`` may have, chosen by its sibling member (e.g. the types of
    ``ModifySettingRequest.Settings`` for its ``ResourcePath``); ``None`` when free-form.

    >>> from pyhcs.schema import ModifySettingRequest
    >>> req = ModifySettingRequest(ResourcePath="VirtualMachine/Devices/Scsi/0/Attachments/1")
    >>> [t.__name__ for t in payload_types(req, "Settings")]
    ['Attachment']

    Raises:
        KeyError: if the member's type does not depend on another member.
    """
    for rule in _PAYLOADS.get(type(model), ()):
        if field in (rule.alias, rule.name):
            return rule.lookup(model)[1]
    raise KeyError(f"{type(model).__name__}.{field} has no payload table")


@cache
def _scalar_adapter(name: str) -> TypeAdapter[Any]:
    scalars: dict[str, Any] = {
        "int8": Int8, "int16": Int16, "int32": Int32, "int64": Int64, "uint8": UInt8,
        "uint16": UInt16, "uint32": UInt32, "uint64": UInt64, "string": str, "bool": bool,
        "float": float,
    }
    return TypeAdapter(scalars[name])


def _type_label(t: PayloadType) -> str:
    return t if isinstance(t, str) else t.__name__


def _details(err: ValidationError, prefix: tuple[str | int, ...]) -> list[InitErrorDetails]:
    """The errors of ``err`` as details for a new ValidationError, located under ``prefix``."""
    out: list[InitErrorDetails] = []
    for e in err.errors():
        loc = (*prefix, *e["loc"])
        detail: InitErrorDetails = {"type": e["type"], "loc": loc, "input": e["input"]}
        if "ctx" in e:
            detail["ctx"] = e["ctx"]
        try:  # a built-in error type keeps its type and context
            ValidationError.from_exception_data("probe", [detail])
        except (KeyError, TypeError, ValueError):
            # The type is pydantic's own name for the error, not text to format: LiteralString
            # (which guards the message template) has nothing to guard here. mypy reads
            # LiteralString as str, hence its redundant-cast.
            error_type = cast("LiteralString", e["type"])  # type: ignore[redundant-cast,unused-ignore]
            detail = {"type": PydanticCustomError(error_type, "{message}", {"message": e["msg"]}),
                      "loc": loc, "input": e["input"]}
        out.append(detail)
    return out


def _check_payload(
    value: object, types: tuple[PayloadType, ...], loc: tuple[str | int, ...], what: str
) -> list[InitErrorDetails]:
    """Errors of ``value`` against the first of ``types`` it fits (none: the best try's)."""
    if isinstance(value, BaseModel):
        if any(isinstance(value, t) for t in types if not isinstance(t, str)):
            return []  # a model: the tree walk checks its own members
        expected = " or ".join(_type_label(t) for t in types)
        return [{"type": PydanticCustomError(
            "payload_type", "{what} must be {expected}, not {actual}",
            {"what": what, "expected": expected, "actual": type(value).__name__}),
            "loc": loc, "input": value}]
    best: list[InitErrorDetails] | None = None
    for t in types:
        try:
            if t == "none":
                if value != {}:
                    return [{"type": PydanticCustomError(
                        "payload_none", "{what} takes no settings", {"what": what}),
                        "loc": loc, "input": value}]
                return []
            if isinstance(t, str):
                _scalar_adapter(t).validate_python(value, strict=True)
            else:
                t.model_validate(value, extra="forbid", context=STRICT_CONTEXT)
            return []
        except ValidationError as err:
            found = _details(err, loc)
            if best is None or len(found) < len(best):
                best = found
    return best or []


def _payload_problems(
    model: BaseModel, loc: tuple[str | int, ...], strict: bool
) -> list[InitErrorDetails]:
    out: list[InitErrorDetails] = []
    for rule in _PAYLOADS.get(type(model), ()):
        value = model.__dict__.get(rule.name)
        if value is None:
            continue
        known, types, key = rule.lookup(model)
        if not known:
            if strict:
                why = (f"no {rule.key_alias}" if key is None
                       else f"no table lists {rule.key_alias} {key}")
                warnings.warn(f"{type(model).__name__}.{rule.alias} is not checked: {why}",
                              SchemaWarning, stacklevel=4)
            continue
        if types is not None:
            what = f"{rule.alias} of {rule.key_alias} {key}" if rule.key_alias else rule.alias
            out += _check_payload(value, types, (*loc, rule.alias), what)
    return out


def _walk_unknown(
    value: object, loc: tuple[str | int, ...], out: list[InitErrorDetails],
    strict: bool = False,
) -> None:
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__
        if extra:
            for key, item in extra.items():
                out.append({"type": "extra_forbidden", "loc": (*loc, key), "input": item})
        values = value.__dict__
        for slot in _checked_slots(type(value)):
            v = values.get(slot.name)
            if v is None:
                continue
            if slot.enum is not None:
                _walk_unknown_enum(v, (*loc, slot.alias), slot.enum, out)
            if slot.nested:
                _walk_unknown(v, (*loc, slot.alias), out, strict)
        if type(value) in _PAYLOADS:
            out += _payload_problems(value, loc, strict)
    elif is_array(value):
        for i, item in enumerate(value):
            _walk_unknown(item, (*loc, i), out, strict)
    elif is_json_object(value):
        for key, item in value.items():
            _walk_unknown(item, (*loc, key), out, strict)


def _walk_unknown_enum(
    value: object, loc: tuple[str | int, ...], enum: type[Enum], out: list[InitErrorDetails]
) -> None:
    if isinstance(value, Enum):
        return
    if isinstance(value, str):
        out.append({"type": "enum", "loc": loc, "input": value,
                    "ctx": {"expected": _expected(enum)}})
    elif is_array(value):
        for i, item in enumerate(value):
            _walk_unknown_enum(item, (*loc, i), enum, out)
    elif is_json_object(value):
        for key, item in value.items():
            _walk_unknown_enum(item, (*loc, key), enum, out)


def unknown_members(doc: BaseModel) -> list[str]:
    """Paths of the members of ``doc`` the schema does not know (extra keys, enum values).

    Useful on results, which are parsed leniently: ``unknown_members(props)`` shows what a
    newer host returned that this library's schema lacks. Paths are ``/``-joined JSON names.
    Payloads typed by a sibling member (``ModifySettingRequest.Settings``...) are looked into.
    """
    problems: list[InitErrorDetails] = []
    _walk_unknown(doc, (), problems)
    out: list[str] = []
    for p in problems:
        path = "/".join(str(k) for k in p.get("loc", ()))
        out.append(f"{path}={p['input']}" if p["type"] == "enum" else path)
    return out


def check_strict(doc: BaseModel) -> None:
    """Raise if ``doc`` has members the schema does not know (strict mode).

    Also checks the payloads typed by a sibling member (``ModifySettingRequest.Settings`` by
    its ``ResourcePath``, ``GuestRequest``, ``OperationDetails``...); a payload whose key no
    table lists stays free-form, with a :class:`SchemaWarning`.

    Raises:
        pydantic.ValidationError: one ``extra_forbidden`` error per unknown key and one
            ``enum`` error per unknown enum value, located by JSON names from the root.
    """
    problems: list[InitErrorDetails] = []
    _walk_unknown(doc, (), problems, strict=True)
    if problems:
        raise ValidationError.from_exception_data(type(doc).__name__, problems)


# --------------------------------------------------------------------------- raw JSON

# Raw result text, keyed by id() of the model parsed from it. Kept outside the model so that
# equality, copies and pickling ignore it, and parsing pays nothing per nested model; the
# finalizer drops the entry before the id can be reused.
_RAW: dict[int, str] = {}


def _remember_raw(model: BaseModel, text: str | bytes | bytearray) -> None:
    key = id(model)
    if key not in _RAW:
        weakref.finalize(model, _RAW.pop, key, None).atexit = False
    _RAW[key] = text if isinstance(text, str) else bytes(text).decode("utf-8")


# --------------------------------------------------------------------------- base model


class HcsModel(BaseModel):
    """Base of every HCS schema model.

    * Field names are snake_case; every field has its exact JSON name as alias. Both
      ``Version(Major=2, Minor=1)`` and ``Version(major=2, minor=1)`` work (type checkers
      know the JSON names); attributes are snake_case (``v.major``).
    * :meth:`to_json` / :meth:`to_dict` write JSON names, leave out what was never set and
      keep empty sub-objects as ``{}`` (``"Keyboard": {}`` switches the keyboard on). In
      Python, ``None`` means "not set" (a keyword argument, a ``dict`` value given to
      ``model_validate``/``from_dict`` or an attribute set to ``None`` is left out); an
      explicit ``null`` in parsed JSON text is kept, like every other member, so a document
      survives a parse and re-serialisation unchanged.
    * Constructing a model is strict, parsing is lenient (see the module docstring).
    """

    model_config = ConfigDict(
        populate_by_name=True,
        serialize_by_alias=True,
        extra="allow",
        # ~290 classes: build each validator on first use, not at import.
        defer_build=True,
    )

    def __init__(self, /, **data: Any) -> None:
        super().__init__(**{k: v for k, v in data.items() if v is not None})
        check_strict(self)

    # pydantic calls a model's own __init__ during validation when the class defines one;
    # this marker (which pydantic sets on BaseModel.__init__ itself) tells it not to, so
    # that the strict check runs for Python construction only, never while parsing results.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if value is None:  # back to "not set": to_json leaves it out
            self.__pydantic_fields_set__.discard(name)

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """pydantic's ``model_validate``; a ``None`` in Python data means "not set"."""
        model = super().model_validate(
            obj, strict=strict, extra=extra, from_attributes=from_attributes,
            context=context, by_alias=by_alias, by_name=by_name,
        )
        _forget_nones(model)
        return model

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialise as HCS expects: JSON names, unset members left out, ``{}`` kept."""
        return self.model_dump_json(by_alias=True, exclude_unset=True, indent=indent)

    def to_dict(self) -> dict[str, Any]:
        """Like :meth:`to_json`, as a JSON-compatible ``dict``."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def from_json(cls, text: str | bytes | bytearray, *, strict: bool = False) -> Self:
        """Parse JSON text; the text stays available as :attr:`raw_json`.

        Args:
            text: the JSON document.
            strict: reject unknown members (for documents we build; results are parsed
                leniently by default). The check runs inside the one validation pass.

        Raises:
            pydantic.ValidationError: on malformed JSON, wrong types, or (strict) unknown
                members.
        """
        if strict:
            model = cls.model_validate_json(text, extra="forbid", context=STRICT_CONTEXT)
        else:
            model = cls.model_validate_json(text)
        _remember_raw(model, text)
        return model

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> Self:
        """Validate a ``dict`` (JSON names or Python names); see :meth:`from_json`.

        Model instances inside ``data`` are taken as they are (they were checked when
        they were constructed)."""
        if strict:
            return cls.model_validate(data, extra="forbid", context=STRICT_CONTEXT)
        return cls.model_validate(data)

    @property
    def raw_json(self) -> str | None:
        """The JSON text this model was parsed from (``from_json``/``parse``), else None."""
        return _RAW.get(id(self))

    def check_version(
        self, target: VersionLike | None = None, *, include_unknown: bool = False
    ) -> list[VersionIssue]:
        """Shorthand for :func:`check_version` on this document."""
        return check_version(self, target, include_unknown=include_unknown)


def _forget_nones(value: object) -> None:
    """Mark every ``None`` field of a tree as unset (Python data: ``None`` is "absent")."""
    if isinstance(value, BaseModel):
        fields_set = value.__pydantic_fields_set__
        values = value.__dict__
        for name in [n for n in fields_set if n in values and values[n] is None]:
            fields_set.discard(name)
        for slot in _checked_slots(type(value)):
            v = values.get(slot.name)
            if v is not None and slot.nested:
                _forget_nones(v)
    elif is_array(value):
        for item in value:
            _forget_nones(item)
    elif is_json_object(value):
        for item in value.values():
            _forget_nones(item)


class PayloadModel(HcsModel):
    """A model with a member whose type another member chooses (``ModifySettingRequest``:
    ``Settings`` by ``ResourcePath``). Strict parsing validates that member too."""

    @model_validator(mode="after")
    def _check_payloads(self, info: ValidationInfo) -> Self:
        if _is_strict(info):
            problems = _payload_problems(self, (), strict=True)
            if problems:
                raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


class HcsModelV1(HcsModel):
    """Base of the legacy schema 1.0 models (:mod:`pyhcs.schema.v1`)."""

    #: The schema major version of the model's documents.
    schema_major: ClassVar[int] = 1
