"""The trusted/untrusted runtime contract, mirrored from ``runtime/include/vsgx/abi.h`` (a test
parses the header and compares): commands passed in RDI at EENTER, exit reasons in RDI at
EEXIT, statuses, and the shared-area and thread-data offsets."""

from __future__ import annotations

from enum import IntEnum

CMD_ORET = -1
CMD_EXCEPTION = -2


class Exit(IntEnum):
    """Why the enclave left (RDI at EEXIT)."""

    ECALL_RETURN = 0
    OCALL = 1
    EXCEPTION_HANDLED = 2
    EXCEPTION_UNHANDLED = 3
    ECALL_ABORTED = 4


class Status(IntEnum):
    """The trusted runtime's statuses (RSI at EEXIT, the shared area's status word)."""

    SUCCESS = 0
    INVALID_FUNCTION = 1
    INVALID_STATE = 2
    INVALID_SHARED = 3
    RELOCATION = 4
    OCALL_FAILED = 5
    OCALL_UNKNOWN = 6


SHARED_ARGS = 0x00
SHARED_RET = 0x30
SHARED_STATUS = 0x38
SHARED_NAME = 0x40
SHARED_SCRATCH = 0x80
SHARED_SIZE = 0x10000
OCALL_NAME_MAX = 63
MAX_ARGS = 6
