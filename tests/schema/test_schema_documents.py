"""Documents in (model, dict or JSON string) and results out (models with their raw JSON)."""

# Tests the private raw-document form of pyhcs.schema.documents too.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import gc
import json

import pydantic
import pytest

from pyhcs import schema
from pyhcs.schema import (
    BasicInformation,
    ComputeSystem,
    PauseOptions,
    ProcessorTopology,
    ProcessStatus,
    Properties,
    PropertyQuery,
    ResultError,
    ServiceProperties,
    SignalProcessOptions,
    SystemExitStatus,
    Version,
    builders,
    coerce,
    parse,
    parse_list,
    parse_optional,
    service_property_payloads,
    to_json,
)


def test_to_json_accepts_model_dict_and_string() -> None:
    model = builders.property_query("Memory")
    as_dict = {"PropertyTypes": ["Memory"]}
    as_text = '{"PropertyTypes": ["Memory"]}'
    assert to_json(model) == '{"PropertyTypes":["Memory"]}'
    assert to_json(as_dict, PropertyQuery) == '{"PropertyTypes":["Memory"]}'
    assert to_json(as_text, PropertyQuery) == as_text  # strings go through verbatim
    assert to_json(None) is None


def test_to_json_dict_without_a_model() -> None:
    doc = {"Settings": builders.signal_options("CtrlC"), "Kind": schema.ProcessSignal.CTRL_C}
    assert json.loads(to_json(doc)) == {"Settings": {"Signal": "CtrlC"}, "Kind": "CtrlC"}
    with pytest.raises(TypeError):
        to_json({"x": object()})


def test_dicts_may_use_python_names() -> None:
    assert to_json({"schema_version": {"major": 2, "minor": 1}}, ComputeSystem) == (
        '{"SchemaVersion":{"Major":2,"Minor":1}}'
    )


def test_to_json_is_strict_for_models_and_dicts() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        to_json({"PropertyTypes": ["Memory"], "Querys": {}}, PropertyQuery)
    assert info.value.errors()[0]["loc"] == ("Querys",)
    with pytest.raises(pydantic.ValidationError):
        to_json({"SuspensionLevel": "Snooze"}, PauseOptions)
    lenient = to_json({"PropertyTypes": ["Memory"], "Querys": {}}, PropertyQuery, strict=False)
    assert lenient == '{"PropertyTypes":["Memory"],"Querys":{}}'


def test_strings_are_the_escape_hatch_unless_strict() -> None:
    text = '{"Signal": "CtrlC", "Future": 1}'
    assert to_json(text, SignalProcessOptions) == text
    with pytest.raises(pydantic.ValidationError):
        to_json(text, SignalProcessOptions, strict=True)
    with pytest.raises(ValueError):
        to_json("{not json", strict=True)
    assert to_json(b'{"Signal": "CtrlC"}') == '{"Signal": "CtrlC"}'


def test_to_json_checks_the_model_type() -> None:
    with pytest.raises(TypeError):
        to_json(builders.signal_options("CtrlC"), PropertyQuery)
    with pytest.raises(TypeError):
        to_json(42)  # type: ignore[call-overload]  # not a document, on purpose


def test_coerce() -> None:
    expected = SignalProcessOptions(Signal="CtrlC")
    assert coerce(SignalProcessOptions, {"Signal": "CtrlC"}) == expected
    assert coerce(SignalProcessOptions, '{"Signal": "CtrlC"}') == expected
    assert coerce(SignalProcessOptions, expected) is expected
    with pytest.raises(TypeError):
        coerce(SignalProcessOptions, PropertyQuery())
    with pytest.raises(pydantic.ValidationError):
        coerce(SignalProcessOptions, {"Sígnal": "CtrlC"})
    assert coerce(SignalProcessOptions, {"X": 1}, strict=False).model_extra == {"X": 1}


@pytest.mark.parametrize(
    ("model", "text"),
    [
        (ProcessStatus, '{"ProcessId": 42, "Exited": true, "ExitCode": 3, "LastWaitResult": 0}'),
        (SystemExitStatus, '{"Status": -2147023895, "ExitType": "UnexpectedExit"}'),
        (ResultError, '{"Error": -2143878906, "ErrorMessage": "The system was not found",'
                      ' "ErrorEvents": [{"Message": "m", "EventId": 1, "Provider":'
                      ' "17103e3f-3c6e-4677-bb17-3b267eb5be57"}]}'),
        (ServiceProperties, '{"Properties": [{"SupportedSchemaVersions":'
                            ' [{"Major": 2, "Minor": 6}]}]}'),
        (Properties, '{"Id": "c1", "SystemType": "Container", "State": "Running",'
                     ' "ProcessList": [{"ProcessId": 4, "ImageName": "init",'
                     ' "CreateTimestamp": "2026-08-20T10:00:00.1234567Z"}]}'),
    ],
)
def test_parse_results_keeps_raw_json(model: type[schema.HcsModel], text: str) -> None:
    result = parse(model, text)
    assert isinstance(result, model)
    assert result.raw_json == text
    assert json.loads(result.to_json()) == json.loads(text)
    assert model.model_validate_json(text) == result  # raw text does not affect equality
    assert result.model_copy().raw_json is None


def test_raw_json_is_released_with_the_model() -> None:
    from pyhcs.schema import _base

    before = len(_base._RAW)
    result = parse(ProcessStatus, '{"ProcessId": 1}')
    assert len(_base._RAW) == before + 1
    del result
    gc.collect()
    assert len(_base._RAW) == before


def test_parse_is_lenient_on_results() -> None:
    props = parse(Properties, '{"Id": "c1", "State": "Hibernating", "FutureInfo": {}}')
    assert props.state == "Hibernating"
    assert props.model_extra == {"FutureInfo": {}}
    with pytest.raises(pydantic.ValidationError):
        parse(Properties, '{"Id": "c1", "FutureInfo": {}}', strict=True)
    with pytest.raises(pydantic.ValidationError):
        parse(ProcessStatus, '{"ProcessId": "not a number"}')
    with pytest.raises(pydantic.ValidationError):
        parse(ProcessStatus, "{")


def test_parse_optional_and_list() -> None:
    assert parse_optional(ResultError, None) is None
    assert parse_optional(ResultError, "  ") is None
    error = parse_optional(ResultError, '{"Error": 5}')
    assert error is not None and error.error == 5
    systems = parse_list(Properties, '[{"Id": "a"}, {"Id": "b", "Owner": "me"}]')
    assert [p.id for p in systems] == ["a", "b"]


def test_service_property_payloads() -> None:
    text = (
        '{"Properties": [{"SupportedSchemaVersions": [{"Major": 2, "Minor": 1},'
        ' {"Major": 2, "Minor": 6}]}, {"LogicalProcessorCount": 8}, {"Other": 1}]}'
    )
    result = parse(ServiceProperties, text)
    basic, topology, other = service_property_payloads(
        result, builders.service_property_query("Basic", "ProcessorTopology")
    )
    assert isinstance(basic, BasicInformation)
    assert basic.supported_schema_versions == [Version(Major=2, Minor=1),
                                               Version(Major=2, Minor=6)]
    assert isinstance(topology, ProcessorTopology) and topology.logical_processor_count == 8
    assert other == {"Other": 1}
    assert schema.target_from_supported(basic) == (2, 6)
    assert schema.target_from_supported(result) == (2, 6)
    assert service_property_payloads(result, ["Basic"])[1] == {"LogicalProcessorCount": 8}


def test_unknown_members_lists_extras_and_values() -> None:
    props = parse(Properties, '{"State": "New", "Statistics": {"Timestamp": "t", "Gpu": {}},'
                              ' "X": 1}')
    assert schema.unknown_members(props) == ["X", "State=New", "Statistics/Gpu"]
