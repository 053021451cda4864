"""Strict documents: what a caller sends to create and modify (dict, model or JSON text) is
validated against pyhcs.schema before the call; ``strict=False`` opts out.

Runs on whichever backend PYHCS_BACKEND selects (CI runs the suite once per backend)."""

# Looks at the private cache of the document checks.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pyhcs import ComputeSystem, aio, emulator, errors, schema
from pyhcs._docs import _problems

from pyutil import CONFIG, new_id

# The plugin's clean emulator and leak check around every test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("hcs_emulator")


def misspelt() -> dict[str, Any]:
    config = {k: v for k, v in CONFIG.items() if k != "Owner"}
    return {**config, "Ownr": "pyhcs-tests"}


@pytest.mark.parametrize("form", ["dict", "text"])
def test_a_misspelt_member_is_named_with_its_close_match(form: str) -> None:
    config: Any = misspelt() if form == "dict" else json.dumps(misspelt())
    before = emulator.call_counts().get("HcsCreateComputeSystem", 0)
    with pytest.raises(errors.InvalidJsonError) as exc:
        ComputeSystem.create(new_id("strict"), config)
    message = str(exc.value)
    assert "'Ownr'" in message and "did you mean 'Owner'?" in message and "strict=False" in message
    assert exc.value.call == "HcsCreateComputeSystem" and exc.value.system_id is not None
    # refused before anything was sent
    assert emulator.call_counts().get("HcsCreateComputeSystem", 0) == before


def test_nested_members_and_wrong_types_are_located() -> None:
    config: dict[str, Any] = {**CONFIG, "Container": {"Storag": {}}}
    with pytest.raises(errors.InvalidJsonError, match=r"/Container/Storag; did you mean 'Storage'\?"):
        ComputeSystem.create(new_id("strict"), config)
    config = {**CONFIG, "SchemaVersion": {"Major": "two", "Minor": 1}}
    with pytest.raises(errors.InvalidJsonError, match="/SchemaVersion/Major"):
        ComputeSystem.create(new_id("strict"), config)


def test_a_model_is_checked_too() -> None:
    model = schema.ComputeSystem.from_dict(misspelt())  # lenient parse keeps the extra member
    with pytest.raises(errors.InvalidJsonError, match="Ownr"):
        ComputeSystem.create(new_id("strict"), model)


def test_strict_false_sends_newer_members() -> None:
    with ComputeSystem.create(new_id("strict"), {**CONFIG, "FromANewerHost": 1}, strict=False) as s:
        assert s.properties()["Owner"] == "pyhcs-tests"


def test_identical_text_is_validated_once() -> None:
    _problems.cache_clear()
    for _ in range(3):
        with ComputeSystem.create(new_id("strict"), CONFIG):
            pass
    info = _problems.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_modify_requests_are_typed_by_their_resource_path() -> None:
    with ComputeSystem.create(new_id("strict"), CONFIG) as s:
        s.start()
        with pytest.raises(errors.InvalidJsonError, match="did you mean 'Settings'"):
            s.modify({"ResourcePath": "Container/Memory/SizeInMB", "Setings": 1})
        s.modify({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 1})
        s.modify('{"ResourcePath": "Container/Memory/SizeInMB", "Settings": 1}')
        with pytest.raises(errors.InvalidJsonError, match="Setings"):
            s.modify('{"ResourcePath": "Container/Memory/SizeInMB", "Setings": 1}')


def test_async_create_and_modify_are_strict() -> None:
    async def main() -> None:
        with pytest.raises(errors.InvalidJsonError, match="Ownr"):
            await aio.ComputeSystem.create(new_id("strict"), misspelt())
        async with await aio.ComputeSystem.create(new_id("strict"), CONFIG) as s:
            await s.start()
            with pytest.raises(errors.InvalidJsonError, match="Setings"):
                await s.modify({"ResourcePath": "Container/Memory/SizeInMB", "Setings": 1})

    asyncio.run(main())
