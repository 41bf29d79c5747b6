"""Architectural faults raised by SGX leaves (SDM Vol. 3D 38.x "Flags Affected / Protected Mode
Exceptions" of each leaf).

Status codes are values (see :mod:`vsgx.cpu.status`); faults are exceptions, so a leaf either
returns or raises :class:`SgxFault`, and the engine delivers the fault to the guest (an AEX when
the processor is in enclave mode).
"""

from __future__ import annotations

from vsgx.arch import Pfec, Vector


class SgxFault(Exception):
    """An architectural exception: vector, error code and (for #PF) the faulting address."""

    def __init__(self, vector: Vector, error_code: int = 0, address: int | None = None,
                 reason: str = "") -> None:
        self.vector = vector
        self.error_code = error_code
        self.address = address
        self.reason = reason
        where = "" if address is None else f" at {address:#x}"
        why = f": {reason}" if reason else ""
        super().__init__(f"#{vector.name}({error_code:#x}){where}{why}")


def gp(reason: str) -> SgxFault:
    """#GP(0): misalignment, reserved bits, wrong state (SDM "General rules")."""
    return SgxFault(Vector.GP, 0, None, reason)


def pf(address: int, reason: str, *, write: bool = False, epcm: bool = True) -> SgxFault:
    """#PF on ``address``. EPCM-induced faults carry PFEC.SGX (bit 15) with P set."""
    code = int(Pfec.P | Pfec.U) if epcm else int(Pfec.U)
    if epcm:
        code |= int(Pfec.SGX)
    if write:
        code |= int(Pfec.W)
    return SgxFault(Vector.PF, code, address, reason)


def ud(reason: str) -> SgxFault:
    """#UD: the leaf or instruction is not available."""
    return SgxFault(Vector.UD, 0, None, reason)
