"""The register file a run starts from and ends with: the 64-bit GPRs, RIP, RFLAGS and the FS/GS
bases (the state GPRSGX saves, SDM Vol. 3D 38.9.1, less the SGX-only fields).

:class:`Registers` keeps its values in one ctypes buffer laid out like the engine's register
batch, so handing it to Unicorn and back is two ``memmove`` calls. The index constants name the
slots for the engine's own use.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import overload

from vsgx.engine.native import PointerArray, RegisterArray, pointers, register_array

NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
         "r12", "r13", "r14", "r15", "rip", "rflags", "fs_base", "gs_base")
(RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15, RIP, RFLAGS,
 FS_BASE, GS_BASE) = range(len(NAMES))
SIZE = 8 * len(NAMES)
MASK64 = (1 << 64) - 1

RFLAGS_FIXED = 1 << 1
"""RFLAGS bit 1 always reads as 1."""


class _Register:
    """One named slot of :class:`Registers`."""

    def __init__(self, index: int) -> None:
        self.index = index

    @overload
    def __get__(self, obj: None, owner: type[Registers]) -> _Register: ...

    @overload
    def __get__(self, obj: Registers, owner: type[Registers]) -> int: ...

    def __get__(self, obj: Registers | None, owner: type[Registers]) -> int | _Register:
        if obj is None:
            return self
        return int(obj.buffer[self.index])

    def __set__(self, obj: Registers, value: int) -> None:
        obj.buffer[self.index] = value & MASK64


class Registers:
    """GPRs, RIP, RFLAGS and FS/GS base of one logical processor; unset registers are 0
    (RFLAGS defaults to its fixed bit 1). ``buffer`` holds the values and ``pointers``
    points at each, ready for a register batch."""

    __slots__ = ("buffer", "pointers")

    rax = _Register(RAX)
    rbx = _Register(RBX)
    rcx = _Register(RCX)
    rdx = _Register(RDX)
    rsi = _Register(RSI)
    rdi = _Register(RDI)
    rbp = _Register(RBP)
    rsp = _Register(RSP)
    r8 = _Register(R8)
    r9 = _Register(R9)
    r10 = _Register(R10)
    r11 = _Register(R11)
    r12 = _Register(R12)
    r13 = _Register(R13)
    r14 = _Register(R14)
    r15 = _Register(R15)
    rip = _Register(RIP)
    rflags = _Register(RFLAGS)
    fs_base = _Register(FS_BASE)
    gs_base = _Register(GS_BASE)

    def __init__(self, **values: int) -> None:
        self.buffer: RegisterArray = register_array()
        self.pointers: PointerArray = pointers(self.buffer, 8, len(NAMES))
        self.buffer[RFLAGS] = RFLAGS_FIXED
        for name, value in values.items():
            if name not in NAMES:
                raise TypeError(f"unknown register {name!r}")
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
