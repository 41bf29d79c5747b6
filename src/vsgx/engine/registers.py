"""The register file a run starts from and ends with: the 64-bit GPRs, RIP, RFLAGS and the FS/GS
bases (the state GPRSGX saves, SDM Vol. 3D 38.9.1, less the SGX-only fields).

:class:`Registers` is a ctypes structure laid out like the engine's register batch, so handing
it to Unicorn and back is one batch call each way, and each named register is a C-level field
(a 64-bit unsigned slot: assigning wraps modulo 2**64, as the register does). The index
constants name the slots of :attr:`Registers.buffer` for the engine's own use.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

from vsgx.engine.native import PointerArray, RegisterArray, pointers

NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
         "r12", "r13", "r14", "r15", "rip", "rflags", "fs_base", "gs_base")
(RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15, RIP, RFLAGS,
 FS_BASE, GS_BASE) = range(len(NAMES))
SIZE = 8 * len(NAMES)

RFLAGS_FIXED = 1 << 1
"""RFLAGS bit 1 always reads as 1."""


class Registers(ctypes.Structure):
    """GPRs, RIP, RFLAGS and FS/GS base of one logical processor; unset registers are 0
    (RFLAGS defaults to its fixed bit 1). ``buffer`` is the same bytes as an array indexed by
    the slot constants and ``pointers`` points at each slot, ready for a register batch."""

    _fields_ = [(name, ctypes.c_uint64) for name in NAMES]
    __slots__ = ("buffer", "pointers")

    rax: int
    rbx: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    rbp: int
    rsp: int
    r8: int
    r9: int
    r10: int
    r11: int
    r12: int
    r13: int
    r14: int
    r15: int
    rip: int
    rflags: int
    fs_base: int
    gs_base: int
    buffer: RegisterArray
    pointers: PointerArray

    def __init__(self, **values: int) -> None:
        super().__init__()
        self.buffer = (ctypes.c_uint64 * len(NAMES)).from_buffer(self)
        self.pointers = pointers(self.buffer, 8, len(NAMES))
        self.rflags = RFLAGS_FIXED
        for name, value in values.items():
            if name not in NAMES:
                raise TypeError(f"unknown register {name!r}")
            setattr(self, name, value)

    def reset(self, **values: int) -> None:
        """Every register zero (RFLAGS its fixed bit), then ``values``: a fresh register file
        without allocating one."""
        ctypes.memset(self.buffer, 0, SIZE)
        self.rflags = RFLAGS_FIXED
        for name, value in values.items():
            setattr(self, name, value)

    def copy(self) -> Registers:
        out = Registers()
        ctypes.memmove(out.buffer, self.buffer, SIZE)
        return out

    def items(self) -> Iterator[tuple[str, int]]:
        return zip(NAMES, (int(v) for v in self.buffer), strict=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Registers):
            return NotImplemented
        return bytes(self.buffer) == bytes(other.buffer)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "Registers(" + ", ".join(f"{n}={v:#x}" for n, v in self.items() if v) + ")"
