"""Tests for pyhcs.errors and the generated pyhcs.errors._table (pure Python, no backend needed)."""

# The registry of classes by HRESULT is private, and tested here.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import builtins
import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

import pyhcs

pytest.importorskip("hypothesis")

from hypothesis import example, given
from hypothesis import strategies as st

from pyhcs import Operation, errors
from pyhcs.errors import (
    AlreadyStoppedError,
    CancelledError,
    HandleClosedError,
    HcsError,
    NotFoundError,
    ServiceError,
)

# The private generated module, as loaded by pyhcs.errors (importing it first is an error).
_hresults = sys.modules["pyhcs.errors._table"]

ROOT = Path(__file__).resolve().parent.parent.parent
GENERATOR = ROOT / "tools" / "gen_errors.py"
GENERATED = Path(str(_hresults.__file__))

# Independent copy of the codes the table must cover (spec section 4.1 and 4.2 plus the extra
# Win32 codes), so that dropping a row from tools/errors.toml fails here.
HCS_CODES = {
    "HCS_E_TERMINATED_DURING_START": 0x80370100,
    "HCS_E_IMAGE_MISMATCH": 0x80370101,
    "HCS_E_HYPERV_NOT_INSTALLED": 0x80370102,
    "HCS_E_INVALID_STATE": 0x80370105,
    "HCS_E_UNEXPECTED_EXIT": 0x80370106,
    "HCS_E_TERMINATED": 0x80370107,
    "HCS_E_CONNECT_FAILED": 0x80370108,
    "HCS_E_CONNECTION_TIMEOUT": 0x80370109,
    "HCS_E_CONNECTION_CLOSED": 0x8037010A,
    "HCS_E_UNKNOWN_MESSAGE": 0x8037010B,
    "HCS_E_UNSUPPORTED_PROTOCOL_VERSION": 0x8037010C,
    "HCS_E_INVALID_JSON": 0x8037010D,
    "HCS_E_SYSTEM_NOT_FOUND": 0x8037010E,
    "HCS_E_SYSTEM_ALREADY_EXISTS": 0x8037010F,
    "HCS_E_SYSTEM_ALREADY_STOPPED": 0x80370110,
    "HCS_E_PROTOCOL_ERROR": 0x80370111,
    "HCS_E_INVALID_LAYER": 0x80370112,
    "HCS_E_WINDOWS_INSIDER_REQUIRED": 0x80370113,
    "HCS_E_SERVICE_NOT_AVAILABLE": 0x80370114,
    "HCS_E_OPERATION_NOT_STARTED": 0x80370115,
    "HCS_E_OPERATION_ALREADY_STARTED": 0x80370116,
    "HCS_E_OPERATION_PENDING": 0x80370117,
    "HCS_E_OPERATION_TIMEOUT": 0x80370118,
    "HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET": 0x80370119,
    "HCS_E_OPERATION_RESULT_ALLOCATION_FAILED": 0x8037011A,
    "HCS_E_ACCESS_DENIED": 0x8037011B,
    "HCS_E_GUEST_CRITICAL_ERROR": 0x8037011C,
    "HCS_E_PROCESS_INFO_NOT_AVAILABLE": 0x8037011D,
    "HCS_E_SERVICE_DISCONNECT": 0x8037011E,
    "HCS_E_PROCESS_ALREADY_STOPPED": 0x8037011F,
    "HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION": 0x80370120,
    "HCS_E_OPERATION_ALREADY_CANCELLED": 0x80370121,
}
GENERIC_CODES = {
    "E_NOTIMPL": 0x80004001,
    "E_POINTER": 0x80004003,
    "E_FAIL": 0x80004005,
    "E_UNEXPECTED": 0x8000FFFF,
    "E_INVALIDARG": 0x80070057,
    "E_HANDLE": 0x80070006,
    "E_OUTOFMEMORY": 0x8007000E,
    "E_ACCESSDENIED": 0x80070005,
    "ERROR_FILE_NOT_FOUND": 0x80070002,
    "ERROR_PATH_NOT_FOUND": 0x80070003,
    "ERROR_NOT_FOUND": 0x80070490,
    "ERROR_INVALID_DATA": 0x8007000D,
    "ERROR_NOT_SUPPORTED": 0x80070032,
    "ERROR_PROC_NOT_FOUND": 0x8007007F,
    "ERROR_ALREADY_EXISTS": 0x800700B7,
    "ERROR_FILE_EXISTS": 0x80070050,
    "ERROR_CANCELLED": 0x800704C7,
    "ERROR_OPERATION_ABORTED": 0x800703E3,
    "RPC_S_SERVER_UNAVAILABLE": 0x800706BA,
    "RPC_X_SS_IN_NULL_CONTEXT": 0x800706EF,
    "WAIT_TIMEOUT": 0x80070102,
    "ERROR_SHARING_VIOLATION": 0x80070020,
    "ERROR_DIR_NOT_EMPTY": 0x80070091,
    "ERROR_BAD_PATHNAME": 0x800700A1,
    "ERROR_INVALID_NAME": 0x8007007B,
    "ERROR_BUSY": 0x800700AA,
    "ERROR_DISK_FULL": 0x80070070,
}
ALL_CODES = {**HCS_CODES, **GENERIC_CODES}
LEGACY_PENDING = 0xC0370103
FAILURE_ROWS = [info for info in errors.CODES if info.class_name is not None]
CLASS_ROWS = [
    info for info in FAILURE_ROWS if info.hresult != LEGACY_PENDING
]  # one per class

hresults_u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
hresults_any = st.one_of(hresults_u32, st.integers(min_value=-(2**31), max_value=-1))


def twin(hr: int) -> int:
    """The 0xC037xxxx form of an HCS code."""
    return hr | 0x40000000


def result_doc(hr: int, message: str | None = "from the document", **extra: Any) -> str:
    doc: dict[str, Any] = {"Error": errors.to_signed(hr), **extra}
    if message is not None:
        doc["ErrorMessage"] = message
    return json.dumps(doc)


# ---------------------------------------------------------------------------------------------
# Table coverage and constants
# ---------------------------------------------------------------------------------------------


def test_table_covers_every_required_code() -> None:
    table = {info.symbol: info.hresult for info in errors.CODES}
    for symbol, value in ALL_CODES.items():
        assert table.get(symbol) == value, symbol
    assert table["S_OK"] == 0
    assert table["HCS_E_OPERATION_PENDING_LEGACY"] == LEGACY_PENDING


def test_not_hcs_codes_are_absent() -> None:
    for value in (0x80370103, 0x80370104, 0xC0370104):
        assert errors.hresult_info(value) is None
        assert errors.error_class(value) is HcsError
    assert errors.make_error(0x80370104).name == "HRESULT 0x80370104"


def test_module_constants() -> None:
    for info in errors.CODES:
        assert getattr(errors, info.symbol) == info.hresult
    assert errors.S_OK == 0
    assert errors.E_HANDLE == 0x80070006
    assert errors.HCS_E_INVALID_STATE == 0x80370105
    assert errors.HCS_E_OPERATION_PENDING_LEGACY == LEGACY_PENDING
    assert set(_hresults.__all__) <= set(errors.__all__)
    for name in errors.__all__:
        assert hasattr(errors, name), name


def test_s_ok_is_not_an_error_class() -> None:
    info = errors.hresult_info(errors.S_OK)
    assert info is not None
    assert info.class_name is None
    assert errors.hresult_name(0) == "S_OK"


# ---------------------------------------------------------------------------------------------
# Classes and registry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("info", CLASS_ROWS, ids=lambda i: i.symbol)
def test_every_code_maps_to_its_class_in_both_forms(info: errors.HResultInfo) -> None:
    cls = getattr(errors, info.class_name or "")
    assert issubclass(cls, HcsError)
    assert cls.hresult == info.hresult
    forms = [info.hresult, errors.to_signed(info.hresult)]
    if info.hresult & 0xFFFF0000 == 0x80370000:
        forms += [twin(info.hresult), errors.to_signed(twin(info.hresult))]
    for form in forms:
        assert errors.error_class(form) is cls
        err = errors.make_error(form)
        assert type(err) is cls
        assert err.hresult == errors.to_unsigned(form)  # original form kept
        assert err.normalized_hresult == info.hresult
        assert err.name == info.symbol
        assert err.message == info.meaning
        assert err.suggestion == info.suggestion
        with pytest.raises(cls) as caught:
            errors.check_hr(form)
        assert caught.value.hresult == errors.to_unsigned(form)


def test_hcs_class_names_follow_the_rule() -> None:
    exceptions = {
        "HCS_E_HYPERV_NOT_INSTALLED": "HyperVNotInstalledError",
        "HCS_E_SERVICE_DISCONNECT": "ServiceDisconnectedError",
    }
    for symbol, value in HCS_CODES.items():
        info = errors.hresult_info(value)
        assert info is not None
        camel = "".join(
            p.capitalize() for p in symbol.removeprefix("HCS_E_").split("_")
        )
        expected = camel if camel.endswith("Error") else camel + "Error"
        assert info.class_name == exceptions.get(symbol, expected)
    assert errors.InvalidStateError.hresult == errors.HCS_E_INVALID_STATE
    assert errors.OperationTimeoutError.hresult == errors.HCS_E_OPERATION_TIMEOUT
    assert errors.InvalidHandleError.hresult == errors.E_HANDLE


def test_generic_class_names_are_documented() -> None:
    doc = errors.__doc__ or ""
    for value in GENERIC_CODES.values():
        info = errors.hresult_info(value)
        assert info is not None
        assert f"``{info.class_name}``" in doc, info.class_name


def test_class_names_are_unique_and_do_not_shadow_builtins() -> None:
    names = [info.class_name for info in CLASS_ROWS]
    assert len(names) == len(set(names))
    for name in names:
        assert name is not None
        assert not hasattr(builtins, name), name


def test_access_denied_classes_are_distinct() -> None:
    hcs = errors.error_class(errors.HCS_E_ACCESS_DENIED)
    win32 = errors.error_class(errors.E_ACCESSDENIED)
    assert hcs is not win32
    assert hcs is errors.AccessDeniedError
    assert win32 is errors.Win32AccessDeniedError
    assert issubclass(hcs, PermissionError)
    assert issubclass(win32, PermissionError)


@pytest.mark.parametrize(
    ("symbols", "builtin"),
    [
        (
            ["HCS_E_OPERATION_TIMEOUT", "HCS_E_CONNECTION_TIMEOUT", "WAIT_TIMEOUT"],
            TimeoutError,
        ),
        (["HCS_E_ACCESS_DENIED", "E_ACCESSDENIED"], PermissionError),
        (
            [
                "HCS_E_SYSTEM_NOT_FOUND",
                "ERROR_FILE_NOT_FOUND",
                "ERROR_PATH_NOT_FOUND",
                "ERROR_NOT_FOUND",
            ],
            FileNotFoundError,
        ),
        (
            [
                "ERROR_ALREADY_EXISTS",
                "ERROR_FILE_EXISTS",
                "HCS_E_SYSTEM_ALREADY_EXISTS",
            ],
            FileExistsError,
        ),
        (["E_NOTIMPL"], NotImplementedError),
    ],
)
def test_builtin_mixins(symbols: list[str], builtin: type[BaseException]) -> None:
    for name, value in ALL_CODES.items():
        err = errors.make_error(value)
        assert isinstance(err, builtin) == (name in symbols), name
        # The mix-ins never change the OSError fields.
        assert isinstance(err, OSError)
        assert err.errno is None


def test_mixins_keep_errno_none_and_catchable() -> None:
    with pytest.raises(FileNotFoundError) as caught:
        errors.check_hr(errors.HCS_E_SYSTEM_NOT_FOUND)
    assert caught.value.errno is None
    assert caught.value.filename is None
    with pytest.raises(TimeoutError):
        errors.check_hr(twin(errors.HCS_E_OPERATION_TIMEOUT))
    with pytest.raises(NotImplementedError):
        errors.check_hr(errors.E_NOTIMPL)
    assert not issubclass(errors.ProcedureNotFoundError, FileNotFoundError)


def test_families() -> None:
    assert errors.SystemAlreadyStoppedError.__mro__[1] is AlreadyStoppedError
    assert issubclass(errors.ProcessAlreadyStoppedError, AlreadyStoppedError)
    assert issubclass(errors.SystemNotFoundError, NotFoundError)
    assert issubclass(errors.ElementNotFoundError, NotFoundError)
    for cls in (
        errors.ServiceDisconnectedError,
        errors.ServiceNotAvailableError,
        errors.RpcServerUnavailableError,
    ):
        assert issubclass(cls, ServiceError)
    for cancelled in (
        errors.Win32CancelledError,
        errors.OperationAbortedError,
        errors.OperationAlreadyCancelledError,
    ):
        assert issubclass(cancelled, CancelledError)
    assert not issubclass(CancelledError, asyncio.CancelledError)
    assert not issubclass(errors.ProcedureNotFoundError, NotFoundError)
    families = (AlreadyStoppedError, NotFoundError, ServiceError, CancelledError)
    registered = set(errors._BY_HRESULT.values()) | set(errors._BY_EXACT.values())
    for family in families:
        assert issubclass(family, HcsError)
        assert family not in registered
        assert "hresult" not in family.__dict__


def test_local_errors() -> None:
    err = HandleClosedError(call="ComputeSystem.start", system_id="c1")
    assert isinstance(err, errors.InvalidHandleError)
    assert err.hresult == errors.E_HANDLE
    assert err.winerror == 6
    assert "closed by this process" in err.message
    assert str(err).startswith(
        "E_HANDLE (0x80070006) in ComputeSystem.start [system 'c1']: "
    )
    assert errors.error_class(errors.E_HANDLE) is errors.InvalidHandleError
    assert errors.HcsClosedError is HandleClosedError
    assert HandleClosedError("custom").message == "custom"
    assert errors.ServiceDisconnectedError.hresult == errors.HCS_E_SERVICE_DISCONNECT
    assert errors.ServiceDisconnectError is errors.ServiceDisconnectedError
    assert errors.UnexpectedExitError.hresult == errors.HCS_E_UNEXPECTED_EXIT
    assert (
        errors.UnexpectedExitError(errors.HCS_E_UNEXPECTED_EXIT).hresult == 0x80370106
    )


def test_legacy_pending_is_an_exact_alias() -> None:
    assert errors.error_class(LEGACY_PENDING) is errors.OperationPendingError
    err = errors.make_error(LEGACY_PENDING)
    assert err.hresult == LEGACY_PENDING
    assert err.name == "HCS_E_OPERATION_PENDING_LEGACY"
    assert err.normalized_hresult == 0x80370103  # arithmetic only, documented
    assert errors.error_class(0x80370103) is HcsError


def test_duplicate_registration_raises() -> None:
    before = (dict(errors._BY_HRESULT), dict(errors._BY_EXACT))
    with pytest.raises(TypeError, match="already registered"):

        class Dup(HcsError):  # pyright: ignore[reportUnusedClass]  # defining it raises
            hresult = errors.HCS_E_INVALID_STATE

    with pytest.raises(TypeError, match="already registered"):

        class DupTwin(HcsError):  # pyright: ignore[reportUnusedClass]  # defining it raises
            hresult = twin(errors.HCS_E_INVALID_STATE)

    with pytest.raises(TypeError, match="already registered"):

        class DupAlias(HcsError):  # pyright: ignore[reportUnusedClass]  # defining it raises
            hresult = 0x8037FFF0
            hresult_aliases = (LEGACY_PENDING,)

    with pytest.raises(ValueError, match="success code"):

        class Success(HcsError):  # pyright: ignore[reportUnusedClass]  # defining it raises
            hresult = 0

    assert (errors._BY_HRESULT, errors._BY_EXACT) == before


def test_new_subclass_registers_by_normalised_code() -> None:
    try:

        class Custom(HcsError):
            hresult = 0xC037FFF1

        assert Custom.hresult == 0x8037FFF1
        assert errors.error_class(0x8037FFF1) is Custom
        assert errors.error_class(0xC037FFF1) is Custom
        assert type(errors.make_error(0xC037FFF1)) is Custom
    finally:
        errors._BY_HRESULT.pop(0x8037FFF1, None)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="belongs to"):
        errors.InvalidStateError(errors.HCS_E_UNEXPECTED_EXIT)
    with pytest.raises(ValueError, match="belongs to"):
        NotFoundError(errors.ERROR_PROC_NOT_FOUND)
    assert (
        NotFoundError(errors.HCS_E_SYSTEM_NOT_FOUND).hresult
        == errors.HCS_E_SYSTEM_NOT_FOUND
    )
    assert HcsError(errors.HCS_E_INVALID_STATE).name == "HCS_E_INVALID_STATE"
    with pytest.raises(ValueError, match="32-bit"):
        HcsError(2**32)
    with pytest.raises(TypeError):
        HcsError("0x80370105")  # type: ignore[arg-type]  # a str on purpose: refused at run time


# ---------------------------------------------------------------------------------------------
# Integer helpers
# ---------------------------------------------------------------------------------------------


@given(hresults_any)
def test_signed_unsigned_round_trip(hr: int) -> None:
    unsigned = errors.to_unsigned(hr)
    signed = errors.to_signed(hr)
    assert 0 <= unsigned <= 0xFFFFFFFF
    assert -(2**31) <= signed < 2**31
    assert errors.to_unsigned(signed) == unsigned
    assert errors.to_signed(unsigned) == signed
    assert signed % 2**32 == unsigned


@pytest.mark.parametrize("bad", [2**32, -(2**31) - 1, 2**40, -(2**40)])
def test_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="32-bit"):
        errors.to_unsigned(bad)
    with pytest.raises(ValueError, match="32-bit"):
        errors.check_hr(bad)


@given(hresults_any)
@example(0xC0370105)
@example(0xC0370103)
@example(0x80370105)
def test_normalize(hr: int) -> None:
    value = errors.normalize(hr)
    assert errors.normalize(value) == value  # idempotent
    assert value & 0xFFFF0000 != 0xC0370000
    unsigned = errors.to_unsigned(hr)
    if unsigned & 0xFFFF0000 == 0xC0370000:
        assert value == (unsigned & 0xFFFF) | 0x80370000
    else:
        assert value == unsigned


def test_is_success() -> None:
    assert errors.is_success(0)
    assert errors.is_success(1)
    assert errors.is_success(0x7FFFFFFF)
    assert not errors.is_success(0x80000000)
    assert not errors.is_success(-1)
    assert not errors.is_success(errors.to_signed(errors.HCS_E_INVALID_STATE))


def test_hresult_from_win32() -> None:
    assert errors.HRESULT_FROM_WIN32(0) == 0
    assert errors.HRESULT_FROM_WIN32(5) == errors.E_ACCESSDENIED
    assert errors.HRESULT_FROM_WIN32(6) == errors.E_HANDLE
    assert errors.HRESULT_FROM_WIN32(0x490) == errors.ERROR_NOT_FOUND
    assert errors.HRESULT_FROM_WIN32(258) == errors.WAIT_TIMEOUT
    assert (
        errors.HRESULT_FROM_WIN32(errors.E_FAIL) == errors.E_FAIL
    )  # already an HRESULT
    assert errors.HRESULT_FROM_WIN32(-2147024891) == errors.E_ACCESSDENIED


@given(st.integers(min_value=1, max_value=0xFFFF))
def test_hresult_from_win32_round_trip(code: int) -> None:
    hr = errors.HRESULT_FROM_WIN32(code)
    assert errors.win32_from_hresult(hr) == code
    assert errors.facility(hr) == 7
    assert not errors.is_success(hr)


def test_winerror_attribute() -> None:
    assert errors.make_error(errors.ERROR_NOT_FOUND).winerror == 0x490
    assert errors.make_error(errors.E_ACCESSDENIED).winerror == 5
    assert errors.make_error(errors.HCS_E_INVALID_STATE).winerror is None
    assert errors.make_error(errors.E_FAIL).winerror is None  # facility NULL, not WIN32
    assert errors.win32_from_hresult(errors.E_NOTIMPL) is None


def test_hresult_name() -> None:
    assert errors.hresult_name(errors.HCS_E_INVALID_STATE) == "HCS_E_INVALID_STATE"
    assert errors.hresult_name(0xC0370105) == "HCS_E_INVALID_STATE"
    assert errors.hresult_name(-2143878907) == "HCS_E_INVALID_STATE"
    assert errors.hresult_name(LEGACY_PENDING) == "HCS_E_OPERATION_PENDING_LEGACY"
    assert errors.hresult_name(0x80370104) == "HRESULT 0x80370104"
    assert errors.hresult_name(-1) == "HRESULT 0xFFFFFFFF"


# ---------------------------------------------------------------------------------------------
# check_hr and make_error
# ---------------------------------------------------------------------------------------------


@given(hresults_any)
@example(0)
@example(0x7FFFFFFF)
@example(0x80000000)
@example(0xFFFFFFFF)
@example(-1)
@example(LEGACY_PENDING)
def test_check_hr_never_crashes(hr: int) -> None:
    unsigned = errors.to_unsigned(hr)
    if errors.to_signed(hr) >= 0:
        assert errors.check_hr(hr) == unsigned
        return
    with pytest.raises(HcsError) as caught:
        errors.check_hr(hr, call="HcsTest", system_id="s", process_id=1)
    err = caught.value
    assert err.hresult == unsigned
    assert type(err) is errors.error_class(hr)
    assert errors.to_signed(err.hresult) == errors.to_signed(hr)
    assert err.call == "HcsTest"
    assert isinstance(str(err), str)
    assert isinstance(repr(err), str)
    assert err.name.startswith(
        ("HRESULT 0x", "HCS_E_", "E_", "ERROR_", "RPC_", "WAIT_")
    )


def test_check_hr_accept_pending() -> None:
    for pending in (errors.HCS_E_OPERATION_PENDING, LEGACY_PENDING, twin(0x80370117)):
        assert errors.check_hr(pending, accept_pending=True) == pending
        assert (
            errors.check_hr(errors.to_signed(pending), accept_pending=True) == pending
        )
        with pytest.raises(errors.OperationPendingError):
            errors.check_hr(pending)
    with pytest.raises(errors.InvalidStateError):
        errors.check_hr(errors.HCS_E_INVALID_STATE, accept_pending=True)


def test_check_hr_passes_context() -> None:
    op = cast(Operation, object())  # a stand-in: only its identity is checked
    doc = result_doc(errors.HCS_E_PROCESS_ALREADY_STOPPED, "process 12 exited")
    with pytest.raises(AlreadyStoppedError) as caught:
        errors.check_hr(
            errors.to_signed(errors.HCS_E_PROCESS_ALREADY_STOPPED),
            doc,
            call="HcsTerminateProcess",
            system_id="c1",
            process_id=12,
            operation=op,
        )
    err = caught.value
    assert err.result_document == doc
    assert err.operation is op
    assert err.process_id == 12
    assert err.message == "process 12 exited"


# ---------------------------------------------------------------------------------------------
# Attributes, str(), result documents
# ---------------------------------------------------------------------------------------------


def test_str_example() -> None:
    err = errors.make_error(
        errors.HCS_E_INVALID_STATE, call="HcsStartComputeSystem", system_id="c1"
    )
    assert str(err) == (
        "HCS_E_INVALID_STATE (0x80370105) in HcsStartComputeSystem [system 'c1']: "
        "The requested virtual machine or container operation is not valid in the current state"
    )
    assert err.strerror == err.message
    assert err.errno is None


def test_str_variants() -> None:
    err = errors.make_error(twin(errors.HCS_E_PROCESS_ALREADY_STOPPED), process_id=42)
    assert str(err).startswith("HCS_E_PROCESS_ALREADY_STOPPED (0xC037011F) [pid 42]: ")
    err = errors.make_error(errors.E_FAIL, system_id="vm", process_id=7, call="HcsX")
    assert str(err).startswith("E_FAIL (0x80004005) in HcsX [system 'vm', pid 7]: ")
    err = errors.make_error(0x80370104)
    assert str(err).startswith("HRESULT 0x80370104: ")
    err = errors.make_error(errors.E_FAIL, message="explicit")
    assert str(err) == "E_FAIL (0x80004005): explicit"
    assert "0x80004005" in repr(err)
    assert "explicit" in repr(err)


def test_valid_result_document() -> None:
    events = [
        {"Message": "first", "StackTrace": "", "Provider": "{guid}", "EventId": 1},
        "not an object",
        {"Message": "second", "Data": [{"Type": "String", "Value": "x"}]},
    ]
    doc = result_doc(
        errors.HCS_E_SYSTEM_NOT_FOUND, "  no such system  ", ErrorEvents=events
    )
    err = errors.make_error(errors.HCS_E_SYSTEM_NOT_FOUND, doc)
    assert err.result is not None
    assert err.result["Error"] == -2143878898
    assert err.message == "no such system"
    assert [e["Message"] for e in err.error_events] == ["first", "second"]
    assert err.result is err.result  # cached
    assert err.error_document == doc


@pytest.mark.parametrize(
    "document",
    [
        None,
        "",
        "   ",
        "not json at all",
        "{",
        "[1, 2, 3]",
        "42",
        "null",
        '"a string"',
        "[" * 100_000 + "]" * 100_000,
        '{"ErrorMessage": 5, "ErrorEvents": {"not": "a list"}}',
        '{"ErrorMessage": "   ", "ErrorEvents": null}',
    ],
)
def test_unusable_result_documents(document: str | None) -> None:
    err = errors.make_error(errors.HCS_E_INVALID_STATE, document)
    result = err.result
    assert result is None or isinstance(result, dict)
    assert err.error_events == []
    info = errors.hresult_info(errors.HCS_E_INVALID_STATE)
    assert info is not None
    assert err.message == info.meaning
    assert err.result_document == document
    str(err)


def test_bytes_document_is_tolerated() -> None:
    doc = result_doc(errors.E_FAIL, "bytes message").encode()
    err = errors.make_error(errors.E_FAIL, doc)  # type: ignore[arg-type]  # bytes on purpose: tolerated
    assert err.message == "bytes message"
    bad = errors.make_error(errors.E_FAIL, b"\xff\xfe")  # type: ignore[arg-type]  # bytes on purpose
    assert bad.result is None


@given(st.one_of(st.none(), st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_result_never_raises(document: str | None) -> None:
    err = errors.make_error(errors.E_UNEXPECTED, document)
    assert err.result is None or isinstance(err.result, dict)
    assert isinstance(err.error_events, list)
    assert isinstance(err.message, str)
    assert err.message


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_result_document_any_json(value: object) -> None:
    err = errors.make_error(errors.E_UNEXPECTED, json.dumps(value))
    if isinstance(value, dict):
        assert err.result == value
    else:
        assert err.result is None
    assert all(isinstance(e, dict) for e in err.error_events)


def test_operation_is_settable() -> None:
    err = errors.make_error(errors.HCS_E_OPERATION_TIMEOUT)
    assert err.operation is None
    op = cast(Operation, object())  # a stand-in: only its identity is checked
    err.operation = op
    assert err.operation is op


# ---------------------------------------------------------------------------------------------
# Pickling and copying
# ---------------------------------------------------------------------------------------------


def _same(a: HcsError, b: HcsError) -> None:
    assert type(a) is type(b)
    for attr in (
        "hresult",
        "message",
        "result_document",
        "call",
        "system_id",
        "process_id",
    ):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.result == b.result
    assert str(a) == str(b)
    assert a.args == b.args
    assert b.errno is None
    assert a.winerror == b.winerror


@pytest.mark.parametrize("info", FAILURE_ROWS, ids=lambda i: i.symbol)
def test_pickle_every_class(info: errors.HResultInfo) -> None:
    doc = result_doc(info.hresult, "doc message", ErrorEvents=[{"Message": "e"}])
    err = errors.make_error(
        info.hresult,
        doc,
        call="HcsCall",
        system_id="sys",
        process_id=3,
        operation=cast(Operation, object()),  # a stand-in: never pickled
    )
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(err, protocol=protocol))
        _same(err, clone)
        assert clone.operation is None  # a live handle is never pickled


def test_pickle_keeps_explicit_message_notes_and_extras() -> None:
    err = errors.make_error(
        twin(errors.HCS_E_INVALID_STATE), message="custom", call="HcsX"
    )
    err.add_note("a note")
    vars(err)["extra"] = {"k": 1}  # an attribute the class does not declare
    clone = pickle.loads(pickle.dumps(err))
    _same(err, clone)
    assert clone.hresult == 0xC0370105
    assert clone.message == "custom"
    assert clone.__notes__ == ["a note"]
    assert vars(clone)["extra"] == {"k": 1}


def test_pickle_local_errors_and_base() -> None:
    err = HandleClosedError(call="Process.kill", system_id="c", process_id=9)
    clone = pickle.loads(pickle.dumps(err))
    _same(err, clone)
    base = HcsError(0x80370104, "weird", system_id="x")
    _same(base, pickle.loads(pickle.dumps(base)))


def test_copy_and_deepcopy_keep_operation() -> None:
    op = cast(Operation, object())  # a stand-in: only its identity is checked
    err = errors.make_error(
        errors.HCS_E_SYSTEM_NOT_FOUND,
        result_doc(0x8037010E),
        system_id="c",
        operation=op,
    )
    vars(err)["extra"] = [1, 2]  # an attribute the class does not declare
    shallow = copy.copy(err)
    deep = copy.deepcopy(err)
    for clone in (shallow, deep):
        _same(err, clone)
        assert clone is not err
        assert clone.operation is op
    assert vars(shallow)["extra"] is vars(err)["extra"]
    assert vars(deep)["extra"] == vars(err)["extra"]
    assert vars(deep)["extra"] is not vars(err)["extra"]


def test_classes_live_in_pyhcs_errors() -> None:
    assert errors.InvalidStateError.__module__ == "pyhcs.errors"
    assert (
        pickle.loads(pickle.dumps(errors.InvalidStateError)) is errors.InvalidStateError
    )


def test_unpickle_refuses_foreign_classes() -> None:
    # the function pickle calls to rebuild an error, given a class that is not an HcsError
    rebuild, args = errors.make_error(errors.E_FAIL).__reduce__()[:2]
    with pytest.raises(TypeError, match="not an HcsError class"):
        rebuild(ValueError, *args[1:])


# ---------------------------------------------------------------------------------------------
# Predicates
# ---------------------------------------------------------------------------------------------

PREDICATES = {
    errors.is_not_found: {"HCS_E_SYSTEM_NOT_FOUND", "ERROR_NOT_FOUND"},
    errors.is_already_stopped: {
        "HCS_E_SYSTEM_ALREADY_STOPPED",
        "HCS_E_PROCESS_ALREADY_STOPPED",
        "ERROR_NOT_FOUND",
    },
    errors.is_pending: {"HCS_E_OPERATION_PENDING"},
    errors.is_access_denied: {"HCS_E_ACCESS_DENIED", "E_ACCESSDENIED"},
    errors.is_invalid_state: {"HCS_E_INVALID_STATE"},
    errors.is_timeout: {
        "HCS_E_OPERATION_TIMEOUT",
        "HCS_E_CONNECTION_TIMEOUT",
        "WAIT_TIMEOUT",
    },
    errors.is_cancelled: {
        "ERROR_CANCELLED",
        "ERROR_OPERATION_ABORTED",
        "HCS_E_OPERATION_ALREADY_CANCELLED",
    },
    errors.is_retryable: {
        "HCS_E_CONNECTION_TIMEOUT",
        "HCS_E_INVALID_STATE",
        "HCS_E_OPERATION_PENDING",
        "HCS_E_OPERATION_TIMEOUT",
        "WAIT_TIMEOUT",
        "ERROR_BUSY",
        "ERROR_SHARING_VIOLATION",
    },
}


@pytest.mark.parametrize("predicate", list(PREDICATES), ids=lambda p: p.__name__)
def test_predicates_are_exact(predicate: Any) -> None:
    expected = PREDICATES[predicate]
    for name, value in ALL_CODES.items():
        forms = [value, errors.to_signed(value)]
        if name in HCS_CODES:
            forms += [twin(value), errors.to_signed(twin(value))]
        for form in forms:
            want = name in expected
            assert predicate(form) is want, (name, hex(form))
            assert predicate(errors.make_error(form)) is want, (name, hex(form))
    assert predicate(0) is False
    assert predicate(ValueError("x")) is False
    assert predicate(TimeoutError()) is False  # only HcsError instances are classified


def test_legacy_pending_predicates() -> None:
    assert errors.is_pending(LEGACY_PENDING)
    assert errors.is_pending(errors.to_signed(LEGACY_PENDING))
    assert errors.is_retryable(LEGACY_PENDING)
    assert not errors.is_pending(0x80370103)  # not an HCS code


def test_proc_not_found_is_not_stopped_or_missing() -> None:
    # moby #42610: a missing DLL export must never look like "already stopped".
    err = errors.make_error(errors.ERROR_PROC_NOT_FOUND)
    assert type(err) is errors.ProcedureNotFoundError
    for form in (
        errors.ERROR_PROC_NOT_FOUND,
        errors.to_signed(errors.ERROR_PROC_NOT_FOUND),
        err,
    ):
        assert not errors.is_already_stopped(form)
        assert not errors.is_not_found(form)
    assert not isinstance(err, AlreadyStoppedError)
    assert not isinstance(err, NotFoundError)
    assert not isinstance(err, FileNotFoundError)
    # Bare Win32 codes are not HRESULTs.
    assert not errors.is_already_stopped(0x490)
    assert not errors.is_not_found(0x7F)


def test_predicates_agree_with_families() -> None:
    for info in CLASS_ROWS:
        err = errors.make_error(info.hresult)
        assert errors.is_not_found(err) == isinstance(err, NotFoundError)
        assert errors.is_timeout(err) == isinstance(err, TimeoutError)
        assert errors.is_access_denied(err) == isinstance(err, PermissionError)
        assert errors.is_cancelled(err) == isinstance(err, CancelledError)
        if isinstance(err, AlreadyStoppedError):
            assert errors.is_already_stopped(err)
        assert errors.is_pending(err) == isinstance(err, errors.OperationPendingError)


def test_service_errors_are_not_retryable() -> None:
    for info in FAILURE_ROWS:
        err = errors.make_error(info.hresult)
        if isinstance(err, ServiceError):
            assert not errors.is_retryable(err), info.symbol


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


def _gen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_generated_module_is_up_to_date() -> None:
    proc = _gen("--check")
    assert proc.returncode == 0, proc.stderr


def test_generated_module_header() -> None:
    text = GENERATED.read_text(encoding="utf-8")
    assert text.startswith("# GENERATED FILE - DO NOT EDIT.")
    assert "tools/gen_errors.py" in text.splitlines()[1]


def test_check_detects_stale_output(tmp_path: Path) -> None:
    stale = tmp_path / "_hresults.py"
    stale.write_text(
        GENERATED.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8"
    )
    assert _gen("--check", "--output", stale).returncode == 1
    assert _gen("--check", "--output", tmp_path / "missing.py").returncode == 1
    assert _gen("--output", stale).returncode == 0
    assert _gen("--check", "--output", stale).returncode == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("0x80370106", "0x80370105"), "already used"),
        (("0x80370100", "0x80370103"), "not an HCS code"),
        (('class = "DiskFullError"', 'class = "TimeoutError"'), "shadow"),
        (
            (
                'tags = ["invalid_state", "retryable"]',
                'tags = ["invalid_state", "bogus"]',
            ),
            "tag",
        ),
        (
            ('symbol = "HCS_E_OPERATION_PENDING"\n', 'symbol = "HCS_E_OP_PENDING"\n'),
            "target",
        ),
    ],
)
def test_generator_rejects_bad_tables(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    source = (ROOT / "tools" / "errors.toml").read_text(encoding="utf-8")
    old, new = edit
    assert old in source
    table = tmp_path / "errors.toml"
    table.write_text(source.replace(old, new, 1), encoding="utf-8")
    proc = _gen("--check", "--table", table, "--output", tmp_path / "out.py")
    assert proc.returncode == 2
    assert message in proc.stderr


def test_private_module_imported_first() -> None:
    # Either pyhcs/__init__ already loaded pyhcs.errors (fine) or the user gets a clear message.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(pyhcs.__file__).resolve().parents[1]), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", "import pyhcs.errors._table"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        assert "import pyhcs.errors instead" in proc.stderr
