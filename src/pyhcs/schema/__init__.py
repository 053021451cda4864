"""Typed HCS documents: pydantic v2 models of the HCS JSON schema 2.x.

Every HCS call takes or returns JSON, and HCS silently ignores a misspelt key. These models
catch that when a document is built, keep what a newer host returns when a result is parsed,
and know which schema version introduced each field.

* One model per schema type (``ComputeSystem``, ``ProcessParameters``, ``Properties``, ...),
  generated from ``tools/schema/hcs-schema2.json`` by ``tools/gen_schema.py``; the docs'
  names are aliases (``System_PropertyQuery is PropertyQuery``).
* :mod:`pyhcs.schema.builders`: the common documents (containers, utility VMs, processes,
  queries, modify requests, lifecycle options, layer data).
* :func:`to_json` / :func:`parse`: documents in (model, dict or JSON string), results out.
* :func:`check_version` / :func:`target_from_supported`: is a document too new for a host?
* :mod:`pyhcs.schema.v1`: the legacy schema 1.0 (``ContainerConfig``...) for hosts before
  Windows Server 2019; :func:`parse_config` / :func:`config_version` tell 1.0 from 2.x.
* :mod:`pyhcs.testing.strategies`: hypothesis strategies for property-based tests.

Example::

    >>> from pyhcs.schema import ComputeSystem, ProcessStatus, builders, parse, to_json
    >>> doc = builders.process_parameters("cmd /c echo hi")
    >>> doc.to_json()
    '{"CommandLine":"cmd /c echo hi","CreateStdOutPipe":true,"CreateStdErrPipe":true}'
    >>> to_json({"Owner": "me", "Contaner": {}}, ComputeSystem)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ComputeSystem
    Contaner
    ...
    >>> parse(ProcessStatus, '{"ProcessId": 7, "Exited": true, "ExitCode": 0}').exited
    True
"""

from pyhcs.schema import _models, builders, v1
from pyhcs.schema._base import (
    Base64,
    Binary,
    DateTime,
    Guid,
    HcsModel,
    HcsModelV1,
    IndexKey,
    Int8,
    Int16,
    Int32,
    Int64,
    MacAddress,
    MajorVersionIssue,
    OpenEnum,
    PayloadModel,
    SchemaVersion,
    SchemaWarning,
    StrFormat,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    VersionIssue,
    VersionLike,
    as_version,
    check_strict,
    check_version,
    document_version,
    enum_value_since,
    field_since,
    format_version,
    payload_types,
    target_from_supported,
    unknown_members,
)
from pyhcs.schema._models import *  # noqa: F403  (the generated module's __all__)
from pyhcs.schema.documents import (
    SERVICE_PROPERTY_MODELS,
    Document,
    coerce,
    config_version,
    parse,
    parse_config,
    parse_list,
    parse_optional,
    service_property_payloads,
    to_json,
)

__all__ = [
    "SERVICE_PROPERTY_MODELS",
    "Base64",
    "Binary",
    "DateTime",
    "Document",
    "Guid",
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
    "builders",
    "check_strict",
    "check_version",
    "coerce",
    "config_version",
    "document_version",
    "enum_value_since",
    "field_since",
    "format_version",
    "parse",
    "parse_config",
    "parse_list",
    "parse_optional",
    "payload_types",
    "service_property_payloads",
    "target_from_supported",
    "to_json",
    "unknown_members",
    "v1",
]
__all__ += _models.__all__
