"""Round trip for every model: generated instance -> JSON -> model equals the original."""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pyhcs.schema import (
    MODEL_CLASSES,
    HcsModel,
    PayloadModel,
    SchemaWarning,
    check_strict,
    check_version,
)
from pyhcs.testing.strategies import SCHEMA_VERSIONS, from_model

# ~210 models: a couple of dozen examples each keeps the whole file within a few seconds, and
# hypothesis' database replays any failure it finds.
_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _ids(cls: type[HcsModel]) -> str:
    return cls.__name__


@pytest.mark.parametrize("model", MODEL_CLASSES, ids=_ids)
@_SETTINGS
@given(data=st.data())
def test_round_trip(model: type[HcsModel], data: st.DataObject) -> None:
    doc = data.draw(from_model(model))
    text = doc.to_json()
    back = model.model_validate_json(text)
    assert back == doc
    assert back.to_json() == text
    assert json.loads(text) == doc.to_dict()
    if isinstance(doc, PayloadModel):
        # The strategy draws Settings/OperationDetails without looking at the member that
        # types them (ResourcePath...); test_schema_payloads.py covers those members.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SchemaWarning)
            unset: dict[str, None] = {name: None for name in ("settings", "guest_request", "operation_details")
                     if name in type(doc).model_fields}
            check_strict(doc.model_copy(update=unset))
    else:
        check_strict(doc)  # generated documents are valid ones


@pytest.mark.parametrize("model", MODEL_CLASSES, ids=_ids)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_versioned_documents_fit_their_version(
    model: type[HcsModel], data: st.DataObject
) -> None:
    version = data.draw(st.sampled_from(SCHEMA_VERSIONS))
    doc = data.draw(from_model(model, version=version))
    # a nested SchemaVersion drawn as 1.x marks a legacy 1.0 document, which check_version
    # rightly reports against 2.x (the strategies should not draw it: a known gap)
    assume('"SchemaVersion":{"Major":1' not in doc.to_json().replace(" ", ""))
    assert check_version(doc, version, include_unknown=True) == []
    assert model.model_validate_json(doc.to_json()) == doc
