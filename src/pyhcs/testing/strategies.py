"""Hypothesis strategies that generate valid HCS documents and fault rules, for property-based
tests.

>>> from hypothesis import given
>>> from pyhcs.schema import ComputeSystem, Properties
>>> from pyhcs.testing.strategies import compute_systems, from_model
>>>
>>> @given(from_model(Properties))
... def test_my_parser_handles_any_properties(props): ...
>>>
>>> @given(compute_systems(kind="container", version="2.1"))
... def test_create_accepts(doc): ...

Fault rules for the emulator, to combine with :func:`pyhcs.testing.clean_emulator`:

>>> from pyhcs.testing.strategies import fault_schedules
>>>
>>> @given(schedule=fault_schedules(functions=["HcsStartComputeSystem", "HcsCreateProcess"]))
... def test_runner_survives(clean_emulator, schedule):
...     with clean_emulator() as faults:
...         schedule.apply(faults)
...         ...

What "valid" means here: every generated document passes the strict schema check (no unknown
members, only known enum values), integers stay within the docs' widths, formatted strings
(GUIDs, RFC 3339 timestamps, base64, MAC addresses) are well formed, and with ``version=`` no
member is newer than that schema version (fields and enum values that no source dates are left
out too). Generic documents (:func:`from_model`) set a random subset of fields; the
``compute_systems``/``process_parameters``/``property_queries`` strategies make *complete*
documents, which HCS (or the emulator) can act on.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin

from annotated_types import Ge, Le, MaxLen, MinLen
from hypothesis import strategies as st

from pyhcs import errors as _errors
from pyhcs.schema import (
    ComputeSystem,
    Container,
    HcsModel,
    HostedSystem,
    IndexKey,
    Layer,
    MappedDirectory,
    ProcessParameters,
    PropertyQuery,
    PropertyType,
    Storage,
    Version,
    VirtualMachine,
    enum_value_since,
    field_since,
)
from pyhcs.schema._base import (
    _PAYLOADS,
    PayloadType,
    SchemaVersion,
    StrFormat,
    VersionLike,
    _PayloadRule,
    as_version,
)
from pyhcs.testing.faults import (
    HCS_FUNCTIONS,
    FaultSchedule,
    FaultSpec,
    HResultLike,
    check_function_name,
    hresult_of,
)

__all__ = [
    "FAULT_ERRORS",
    "SAFE_COMMAND_LINES",
    "SCHEMA_VERSIONS",
    "compute_systems",
    "fault_schedules",
    "faults",
    "from_model",
    "json_values",
    "process_parameters",
    "property_queries",
    "register_type_strategies",
    "schema_versions",
]

_M = TypeVar("_M", bound=HcsModel)

#: The schema 2.x versions the docs list.
SCHEMA_VERSIONS: tuple[SchemaVersion, ...] = tuple((2, minor) for minor in range(7))

#: Command lines the emulator runs in a Container (a Windows guest: split by the Windows rules,
#: no shell), all harmless.
SAFE_COMMAND_LINES: tuple[str, ...] = (
    "echo hello",
    "echo pyhcs",
    'sh -c "exit 0"',
    'sh -c "exit 3"',
)

_Kind = Literal["container", "virtual_machine", "hosted"]

# Printable text without control characters or surrogates: what a document's strings hold.
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=16
)
_KEYS = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12)


def schema_versions(*, at_most: VersionLike | None = None) -> st.SearchStrategy[SchemaVersion]:
    """A schema version ``(2, minor)`` from the docs' list, optionally capped."""
    cap = as_version(at_most) if at_most is not None else None
    return st.sampled_from([v for v in SCHEMA_VERSIONS if cap is None or v <= cap])


def json_values(*, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value (for ``Any``-typed members such as ``ModifySettingRequest.Settings``)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | _TEXT
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
        max_leaves=max_leaves,
    )


_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.just(timezone.utc),
).map(lambda d: d.isoformat().replace("+00:00", "Z"))

_FORMAT_STRATEGIES: dict[str, st.SearchStrategy[str]] = {
    "guid": st.uuids().map(str),
    "date-time": _datetimes,
    "byte": st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode("ascii")),
    "binary": st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode("ascii")),
    "mac-address": st.binary(min_size=6, max_size=6).map(
        lambda b: "-".join(f"{x:02X}" for x in b)
    ),
}


class _Ctx:
    """Generation settings shared by one top-level strategy."""

    def __init__(self, version: SchemaVersion | None, max_depth: int) -> None:
        self.version = version
        self.max_depth = max_depth

    def new_enough(self, since: SchemaVersion | None) -> bool:
        return self.version is None or (since is not None and since <= self.version)


_CACHE: dict[tuple[type[HcsModel], SchemaVersion | None, int, int], st.SearchStrategy[Any]] = {}


def from_model(
    model: type[_M],
    *,
    version: VersionLike | None = None,
    max_depth: int = 3,
    fields: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[_M]:
    """Documents of any model, with a random subset of fields set.

    Args:
        model: the model class, e.g. ``ComputeSystem``.
        version: only use fields and enum values that exist in this schema version
            (``"2.1"``, ``(2, 1)``...); ``None`` uses everything the schema knows.
        max_depth: how many levels of sub-models to fill in below ``model``.
        fields: strategies for particular fields of ``model`` (Python or JSON names),
            replacing the generated ones; a strategy of ``None`` leaves the field out.

    Example::

        from_model(ProcessParameters, fields={"CommandLine": st.just("echo hi")})
    """
    ctx = _Ctx(as_version(version) if version is not None else None, max_depth)
    if not fields:
        return _model_strategy(model, ctx, 0)
    return _fields_strategy(model, ctx, 0, fields)


def _model_strategy(model: type[_M], ctx: _Ctx, depth: int) -> st.SearchStrategy[_M]:
    key = (model, ctx.version, ctx.max_depth, depth)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _CACHE[key] = _fields_strategy(model, ctx, depth, {})
    return cached


def _fields_strategy(
    model: type[_M], ctx: _Ctx, depth: int, fixed: Mapping[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[_M]:
    by_alias = {info.alias or name: name for name, info in model.model_fields.items()}
    fixed_by_name = {by_alias.get(k, k): v for k, v in fixed.items()}
    unknown = set(fixed_by_name) - set(model.model_fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no fields {sorted(unknown)}")
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    rules = [r for r in _PAYLOADS.get(model, ()) if r.name not in fixed_by_name]
    payloads = {r.name for r in rules}
    for name, info in model.model_fields.items():
        if name in fixed_by_name:
            required[name] = fixed_by_name[name]
            continue
        if name in payloads or not ctx.new_enough(field_since(model, name)):
            continue
        strategy = _type_strategy(info.annotation, list(info.metadata), ctx, depth)
        if strategy is not None:
            optional[name] = _key_strategy(model, name, rules, strategy)
    base = st.fixed_dictionaries(required, optional=optional).map(model.model_validate)
    if not rules:
        return base
    return base.flatmap(lambda doc: _with_payloads(doc, rules, ctx, depth))


# --------------------------------------------------------------------------- payloads
#
# Some ``Any`` members take the type their sibling chooses (``ModifySettingRequest.Settings``
# by its ``ResourcePath``: pyhcs.schema.payload_types). They are drawn after the rest of the
# document, from the types the table gives for the drawn key, as JSON values (what a round
# trip through JSON gives back); a key the table does not know leaves them unset.

_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    **{f"int{bits}": st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"uint{bits}": st.integers(0, 2**bits - 1) for bits in (8, 16, 32, 64)},
    "string": _TEXT,
    "bool": st.booleans(),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "none": st.none(),
}


def _key_strategy(
    model: type[HcsModel], name: str, rules: list[_PayloadRule], base: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """For a free-text member that chooses a payload's type (a ResourcePath), draw the keys
    the table lists (and paths matching its patterns) as well as arbitrary text."""
    for rule in rules:
        if rule.key_name != name or _mentions_enum(model.model_fields[name].annotation):
            continue  # enum-typed keys: the enum strategy draws the table's keys already
        keys: list[st.SearchStrategy[Any]] = []
        if rule.exact:
            keys.append(st.sampled_from(sorted(rule.exact)))
        for pattern, _types in rule.patterns:
            keys.append(_path_strategy(pattern.pattern))
        return st.one_of(*keys, base)
    return base


def _mentions_enum(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, Enum):
        return True
    return any(_mentions_enum(a) for a in get_args(tp))


def _path_strategy(regex: str) -> st.SearchStrategy[str]:
    """Paths matching a table pattern (segments are literal text or ``[^/]+``)."""
    parts: list[st.SearchStrategy[str]] = []
    for segment in regex.split("/"):
        if segment == "[^/]+":
            parts.append(st.integers(0, 63).map(str))
        else:
            parts.append(st.just(re.sub(r"\\(.)", r"\1", segment)))
    return st.tuples(*parts).map("/".join)


def _payload_value(t: PayloadType, ctx: _Ctx, depth: int) -> st.SearchStrategy[Any] | None:
    if isinstance(t, str):
        return _SCALARS.get(t)
    if depth >= ctx.max_depth or not issubclass(t, HcsModel):
        return None
    return _model_strategy(t, ctx, depth + 1).map(lambda m: json.loads(m.to_json()))


def _with_payloads(doc: _M, rules: list[_PayloadRule], ctx: _Ctx, depth: int) -> st.SearchStrategy[_M]:
    update: dict[str, st.SearchStrategy[Any]] = {}
    for rule in rules:
        if not ctx.new_enough(field_since(type(doc), rule.name)):
            continue  # a payload member newer than the version asked for (GuestRequest: 2.1)
        known, types, _key = rule.lookup(doc)
        if not known:
            continue  # a key no table lists: the payload stays unset
        if types is None:
            update[rule.name] = st.none() | json_values()
            continue
        choices = [v for v in (_payload_value(t, ctx, depth) for t in types) if v is not None]
        if choices:
            update[rule.name] = st.none() | st.one_of(*choices)
    if not update:
        return st.just(doc)
    fields = _set_fields(doc)
    model = type(doc)
    return st.fixed_dictionaries(update).map(lambda values: model.model_validate({**fields, **values}))


def _type_strategy(
    tp: Any, metadata: list[Any], ctx: _Ctx, depth: int
) -> st.SearchStrategy[Any] | None:
    """A strategy for values of annotation ``tp``; ``None`` if nothing valid fits."""
    origin = get_origin(tp)
    if tp is Any:
        return json_values()
    if origin is Annotated:
        base, *meta = get_args(tp)
        if tp == IndexKey:
            return st.integers(0, 2**32 - 1).map(str)
        return _type_strategy(base, [*meta, *metadata], ctx, depth)
    if origin is Union or origin is UnionType:
        members = [a for a in get_args(tp) if a is not NoneType]
        # OpenEnum (Enum | str) and the curated unions (HostedSystem | Any): the first
        # member is the schema's own type.
        return _type_strategy(members[0], metadata, ctx, depth)
    if origin is list:
        item = _type_strategy(get_args(tp)[0], [], ctx, depth)
        if item is None:
            return None
        low = next((m.min_length for m in metadata if isinstance(m, MinLen)), 0)
        high = next((m.max_length for m in metadata if isinstance(m, MaxLen)), max(3, low))
        return st.lists(item, min_size=low, max_size=high)
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        value = _type_strategy(value_tp, [], ctx, depth)
        if value is None:
            return None
        keys = _KEYS if key_tp is str else _type_strategy(key_tp, [], ctx, depth)
        return st.dictionaries(keys if keys is not None else _KEYS, value, max_size=3)
    if isinstance(tp, type) and issubclass(tp, Enum):
        members = [m for m in tp if ctx.new_enough(enum_value_since(m))]
        return st.sampled_from(members) if members else None
    if isinstance(tp, type) and issubclass(tp, HcsModel):
        if depth >= ctx.max_depth:
            return None
        return _model_strategy(tp, ctx, depth + 1)
    if tp is bool:
        return st.booleans()
    if tp is int:
        # The bounds are the int widths of pyhcs.schema._base (Ge/Le of an int).
        ge = next((cast(int, m.ge) for m in metadata if isinstance(m, Ge)), None)
        le = next((cast(int, m.le) for m in metadata if isinstance(m, Le)), None)
        return st.integers(ge, le)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        fmt = next((m.format for m in metadata if isinstance(m, StrFormat)), None)
        return _FORMAT_STRATEGIES.get(fmt, _TEXT) if fmt else _TEXT
    raise TypeError(f"no strategy for {tp!r}")


# --------------------------------------------------------------------------- complete docs


def _version_model(version: SchemaVersion) -> Version:
    return Version(Major=version[0], Minor=version[1])


def compute_systems(
    *,
    kind: _Kind | None = None,
    version: VersionLike | None = None,
    max_depth: int = 3,
    hosting_system_ids: st.SearchStrategy[str] | None = None,
    layers: st.SearchStrategy[list[Layer]] | None = None,
    mapped_directories: st.SearchStrategy[list[MappedDirectory]] | None = None,
) -> st.SearchStrategy[ComputeSystem]:
    """Complete ``ComputeSystem`` documents for HcsCreateComputeSystem.

    Each has a ``SchemaVersion`` and exactly one of ``Container``, ``VirtualMachine`` or
    ``HostedSystem`` (the docs' rule); ``HostingSystemId`` is set for, and only for, a
    ``HostedSystem``. The rest is random, except members that name host files or folders
    which must exist: a container's ``Storage.Layers`` and ``MappedDirectories`` are left
    out unless you pass strategies for them, a VM's ``GuestState`` and ``RestoreState``
    always.

    Args:
        kind: ``"container"``, ``"virtual_machine"`` or ``"hosted"``; ``None`` picks one.
        version: the schema version to declare and to stay within; ``None`` draws one and
            still uses every field (so newer fields may appear, as hcsshim does).
        max_depth: see :func:`from_model`.
        hosting_system_ids: IDs of the utility VM for ``"hosted"`` documents (default:
            random GUIDs; pass ``st.just(uvm_id)`` to create them for real).
        layers: the container's layers, e.g. ``st.just([builders.layer(id, folder)])``.
        mapped_directories: the container's mapped directories.
    """
    target = as_version(version) if version is not None else None
    kinds: list[_Kind] = [kind] if kind is not None else ["container", "virtual_machine",
                                                           "hosted"]
    container_depth = max(max_depth - 1, 1)
    storage = st.none() | from_model(
        Storage, version=target, max_depth=container_depth - 1,
        fields={"Layers": layers if layers is not None else st.none()},
    )
    container = from_model(
        Container, version=target, max_depth=container_depth,
        fields={
            "Storage": storage,
            "MappedDirectories": mapped_directories if mapped_directories is not None
            else st.none(),
        },
    )
    hosts = hosting_system_ids if hosting_system_ids is not None else st.uuids().map(str)
    # A VM's guest-state and saved-state files are read at start: leave them out.
    virtual_machine = from_model(
        VirtualMachine, version=target, max_depth=max_depth - 1,
        fields={"GuestState": st.none(), "RestoreState": st.none()},
    )

    @st.composite
    def build(draw: st.DrawFn) -> ComputeSystem:
        chosen = draw(st.sampled_from(kinds))
        declared = target if target is not None else draw(schema_versions())
        body: st.SearchStrategy[Any]
        if chosen == "container":
            body = container
        elif chosen == "virtual_machine":
            body = virtual_machine
        else:
            body = from_model(
                HostedSystem,
                version=target,
                max_depth=0,
                fields={"SchemaVersion": st.just(_version_model(declared)),
                        "Container": container},
            )
        cs = draw(
            from_model(
                ComputeSystem,
                version=target,
                max_depth=0,
                fields={
                    "SchemaVersion": st.just(_version_model(declared)),
                    "HostingSystemId": hosts if chosen == "hosted" else st.none(),
                    "Container": st.none(),
                    "VirtualMachine": st.none(),
                    "HostedSystem": st.none(),
                },
            )
        )
        update = {{"container": "container", "virtual_machine": "virtual_machine",
                   "hosted": "hosted_system"}[chosen]: draw(body)}
        return ComputeSystem.model_validate({**_set_fields(cs), **update})

    return build()


def _set_fields(model: HcsModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in type(model).model_fields
            if getattr(model, name) is not None}


def process_parameters(
    *,
    version: VersionLike | None = None,
    command_lines: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[ProcessParameters]:
    """Complete ``ProcessParameters`` for HcsCreateProcess.

    The command line comes from ``command_lines`` (default: :data:`SAFE_COMMAND_LINES`);
    the environment, std pipes, console emulation and console size are random. Fields that
    point at host state (``WorkingDirectory``, ``User``, ``ApplicationName``, ...) are left
    out so the process can start anywhere.
    """
    env_names = st.text(string.ascii_uppercase + "_", min_size=1, max_size=10)
    env_values = st.text(string.ascii_letters + string.digits + " ./:-_", max_size=20)
    leave_out = ("ApplicationName", "CommandArgs", "User", "WorkingDirectory",
                 "RestrictedToken", "UseExistingLogin", "UseLegacyConsole")
    fields: dict[str, st.SearchStrategy[Any]] = {name: st.none() for name in leave_out}
    fields["CommandLine"] = (
        command_lines if command_lines is not None else st.sampled_from(SAFE_COMMAND_LINES)
    )
    fields["Environment"] = st.none() | st.dictionaries(env_names, env_values, max_size=4)
    return from_model(ProcessParameters, version=version, fields=fields)


def property_queries(
    *, version: VersionLike | None = None
) -> st.SearchStrategy[PropertyQuery]:
    """Complete ``PropertyQuery`` documents: one or more distinct ``PropertyTypes``."""
    ctx = _Ctx(as_version(version) if version is not None else None, 0)
    allowed: list[PropertyType | str] = [
        m for m in PropertyType if ctx.new_enough(enum_value_since(m))
    ]
    return st.lists(st.sampled_from(allowed), min_size=1, max_size=len(allowed),
                    unique=True).map(lambda types: PropertyQuery(PropertyTypes=types))


def register_type_strategies() -> None:
    """Make ``st.from_type(Model)`` (and ``@given(x=...)`` inference) use :func:`from_model`
    for every schema model."""
    from pyhcs.schema import MODEL_CLASSES

    for cls in MODEL_CLASSES:
        st.register_type_strategy(cls, from_model(cls))


# --------------------------------------------------------------------------- faults

#: The HRESULTs :func:`faults` fails with by default: every failure code pyhcs knows.
FAULT_ERRORS: tuple[int, ...] = tuple(
    info.hresult for info in _errors.CODES if not _errors.is_success(info.hresult)
)

_FaultAction = Literal["fail", "delay", "hang"]


def faults(
    *,
    functions: Iterable[str] | None = None,
    actions: Iterable[_FaultAction] = ("fail", "delay", "hang"),
    errors: Iterable[HResultLike] | None = None,
    where: Iterable[Literal["call", "result"]] = ("result", "call"),
    max_delay: float = 0.25,
    max_on_call: int = 4,
    max_count: int = 3,
    probabilities: bool = True,
) -> st.SearchStrategy[FaultSpec]:
    """Valid fault rules (:class:`~pyhcs.testing.FaultSpec`), to apply with
    ``spec.apply(faults)``.

    Args:
        functions: the HCS functions to pick from (default: every function of
            computecore.dll and computestorage.dll; ``"*"`` only if you list it).
        actions: ``"fail"``, ``"delay"``, ``"hang"``.
        errors: the HRESULTs a ``fail`` uses (numbers, symbols or error classes; default
            :data:`FAULT_ERRORS`).
        where: where a ``fail`` strikes: the operation's result, or the call itself.
        max_delay: the longest ``delay`` in seconds (the shortest is 1 ms).
        max_on_call, max_count: bounds of ``on_call`` and ``count`` (each may be None too:
            from the first call, every time).
        probabilities: also draw rules that fire with a seeded probability.
    """
    names = sorted(HCS_FUNCTIONS) if functions is None else [check_function_name(f) for f in functions]
    kinds = list(actions)
    codes = list(FAULT_ERRORS) if errors is None else [hresult_of(e) for e in errors]
    places = list(where)
    if not names or not kinds or not codes or not places:
        raise ValueError("faults() needs at least one function, action, error and place")
    for kind in kinds:
        if kind not in ("fail", "delay", "hang"):
            raise ValueError(f"unknown fault action {kind!r}")
    if not max_delay >= 0.001 or max_on_call < 1 or max_count < 1:
        raise ValueError("faults() needs max_delay >= 0.001 s, max_on_call >= 1 and max_count >= 1")
    # A delay of 0 does nothing, which the emulator refuses: from 1 ms.
    delays = st.integers(1, round(max_delay * 1000)).map(lambda ms: ms / 1000)

    @st.composite
    def build(draw: st.DrawFn) -> FaultSpec:
        action = draw(st.sampled_from(kinds))
        probability = draw(st.none() | st.sampled_from((0.25, 0.5, 0.75))) if probabilities else None
        return FaultSpec(
            function=draw(st.sampled_from(names)),
            action=action,
            error=draw(st.sampled_from(codes)) if action == "fail" else None,
            where=draw(st.sampled_from(places)) if action == "fail" else "result",
            on_call=draw(st.none() | st.integers(1, max_on_call)),
            count=draw(st.none() | st.integers(1, max_count)),
            probability=probability,
            seed=draw(st.integers(0, 2**31 - 1)) if probability is not None else None,
            delay=draw(delays) if action == "delay" else None,
        )

    return build()


def fault_schedules(
    *, min_size: int = 0, max_size: int = 3, **options: Any
) -> st.SearchStrategy[FaultSchedule]:
    """Several fault rules at once (:class:`~pyhcs.testing.FaultSchedule`), applied with
    ``schedule.apply(faults)``; ``options`` are those of :func:`faults`. Hypothesis shrinks a
    failing schedule to the fewest, simplest rules."""
    return st.lists(faults(**options), min_size=min_size, max_size=max_size).map(
        lambda rules: FaultSchedule(tuple(rules))
    )
