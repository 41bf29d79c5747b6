"""Why a run of guest code ended: what the engine hands to the guest kernel model."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ExitReason(Enum):
    """The event that ended :meth:`vsgx.engine.Vcpu.run`."""

    STOP = "stop"
    """Execution reached ``stop_at``."""
    EXCEPTION = "exception"
    """A fault or trap the OS must handle (#PF, #GP, #UD, #BP, ...): ``vector``,
    ``error_code`` and, for #PF, ``address`` (CR2) say which. RIP is where the OS would resume
    (the faulting instruction; after INT3 for #BP; the AEP after an AEX)."""
    SYSCALL = "syscall"
    """SYSCALL outside enclave mode; RIP is past it, RCX and R11 hold RIP and RFLAGS."""
    SYSENTER = "sysenter"
    """SYSENTER outside enclave mode; RIP is past it."""
    INT = "int"
    """``INT n`` outside enclave mode (``vector`` = n); RIP is past it."""
    HLT = "hlt"
    """HLT outside enclave mode; RIP is past it."""
    INTERRUPT = "interrupt"
    """The run used up its instruction ``count`` or ``timeout_us``: an interrupt arrived."""


@dataclass(frozen=True, slots=True)
class Exit:
    """The end of a run. ``aex`` says the event hit enclave mode and was delivered after an
    asynchronous enclave exit: the registers then hold the AEX synthetic state (RAX = 3,
    RBX = TCS, RCX = RIP = AEP) and ``address`` has CR2's low 12 bits cleared (SDM Vol. 3D
    Table 40-1); the enclave sees the full address in its SSA's EXINFO."""

    reason: ExitReason
    vector: int = 0
    error_code: int = 0
    address: int = 0
    aex: bool = False


STOPPED = Exit(ExitReason.STOP)
