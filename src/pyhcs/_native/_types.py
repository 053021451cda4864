"""Plain values shared by both backends: constants of the C API and the two small records
(process information, events) that cross it. No behaviour lives here."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

#: Waits without a limit (the C API's ``INFINITE``).
INFINITE = 0xFFFFFFFF
#: The only access HcsOpenComputeSystem/HcsOpenProcess accept.
GENERIC_ALL = 0x10000000
#: HcsGetOperationId of an operation that has not been used yet.
HCS_INVALID_OPERATION_ID = 0xFFFFFFFFFFFFFFFF


class OperationType(enum.IntEnum):
    """HCS_OPERATION_TYPE."""

    NONE = -1
    ENUMERATE = 0
    CREATE = 1
    START = 2
    SHUTDOWN = 3
    PAUSE = 4
    RESUME = 5
    SAVE = 6
    TERMINATE = 7
    MODIFY = 8
    GET_PROPERTIES = 9
    CREATE_PROCESS = 10
    SIGNAL_PROCESS = 11
    GET_PROCESS_INFO = 12
    GET_PROCESS_PROPERTIES = 13
    MODIFY_PROCESS = 14
    CRASH = 15


class EventType(enum.IntEnum):
    """HCS_EVENT_TYPE."""

    INVALID = 0x00000000
    SYSTEM_EXITED = 0x00000001
    SYSTEM_CRASH_INITIATED = 0x00000002
    SYSTEM_CRASH_REPORT = 0x00000003
    SYSTEM_RDP_ENHANCED_MODE_STATE_CHANGED = 0x00000004
    SYSTEM_SILO_JOB_CREATED = 0x00000005
    SYSTEM_GUEST_CONNECTION_CLOSED = 0x00000006
    PROCESS_EXITED = 0x00010000
    OPERATION_CALLBACK = 0x01000000
    SERVICE_DISCONNECT = 0x02000000


class EventOptions(enum.IntFlag):
    """HCS_EVENT_OPTIONS."""

    NONE = 0
    ENABLE_OPERATION_CALLBACKS = 1


class HcsProcessInformation(NamedTuple):
    """HCS_PROCESS_INFORMATION. The std handles are owned by the caller (close them with
    ``close_handle``); ``None`` where the stream was not requested. On the emulator they are
    POSIX file descriptors, on Windows pipe HANDLE values."""

    process_id: int
    std_input: int | None
    std_output: int | None
    std_error: int | None


class HcsEvent(NamedTuple):
    """HCS_EVENT, copied: ``event_data`` is the JSON text (or None), ``operation`` the
    completed operation handle for OPERATION_CALLBACK events (the receiver owns it), else 0."""

    type: int
    event_data: str | None
    operation: int


#: ``callback(operation_handle, context)``: an operation completed.
OperationCallback = Callable[[int, int], None]
#: ``callback(event, context)``: an event on a compute system or process handle.
EventCallback = Callable[[HcsEvent, int], None]
