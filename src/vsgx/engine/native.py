"""The engine's only contact with Unicorn: one x86-64 ``uc_engine`` driven through raw ctypes.

The Python binding's ``Uc`` wraps every call and every hook in several layers of Python; on
the paths the engine takes for each enclave transition (a hook for ENCLU, a TLB fill, a
register batch) those layers cost more than the work. :class:`Unicorn` therefore calls the
library the binding loaded directly: the frequent calls through function pointers without
ctypes argument conversion (every argument is already a ctypes object), the rest through the
binding's prototypes. ``uc_emu_start`` is a foreign call, so ctypes releases the GIL while
guest code runs: engines on different host threads execute in parallel.

Unicorn facts the engine relies on (checked against 2.1.4, the pinned minimum):

* ``UC_TLB_VIRTUAL`` + ``UC_HOOK_TLB_FILL``: the hook runs on TLB misses only, with the
  page-aligned virtual address and the access type (``UC_MEM_READ``/``WRITE``/``FETCH``), and
  fills one entry (``uc_tlb_entry``: physical page, ``UC_PROT_*``). The engine never returns
  False: at the end of every run Unicorn looks up the code page of ``until - 1`` (to discard
  the translation block there), and a refused fill at that point unwinds into a finished
  ``cpu_exec``.
* An access (data or fetch) that reaches an unmapped *physical* address calls
  ``UC_HOOK_MEM_*_UNMAPPED`` with that physical address and, when the hook returns False,
  stops with a precise guest state (RIP at the faulting instruction). That is how the engine
  faults, and learns the exact faulting linear address.
* ``UC_HOOK_INSN_INVALID`` runs for every #UD (ENCLU, ENCLS, UD2, ...) with RIP at the
  instruction; the hook's return value is honoured since 2.1.4. Writing RIP from a hook makes
  Unicorn leave the current translation block and continue at the new RIP.
* ``UC_CTL_TLB_FLUSH`` empties the TLB, not the translation-block cache.
* ``count`` is implemented with an instruction hook Unicorn installs at the start of the
  first counted run (and removes, flushing its translations, at the next uncounted run); code
  translated before it was installed does not count, so the engine flushes the translations
  when counting starts.
* At the end of every run Unicorn discards the translation block that ends at ``until``, so
  the code before ``until`` is translated again by the next run.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import struct
from collections.abc import Callable
from typing import Any

from unicorn import unicorn_const as uc
from unicorn import x86_const as x86
from unicorn.unicorn_py3.arch.intel import HOOK_INSN_CPUID_CFUNC, HOOK_INSN_SYSCALL_CFUNC
from unicorn.unicorn_py3.arch.types import uc_engine, uc_hook_h
from unicorn.unicorn_py3.unicorn import (
    HOOK_INSN_INVALID_CFUNC,
    HOOK_INTR_CFUNC,
    HOOK_MEM_INVALID_CFUNC,
    MMIO_READ_CFUNC,
    MMIO_WRITE_CFUNC,
    uclib,
)

READ = uc.UC_MEM_READ
WRITE = uc.UC_MEM_WRITE
FETCH = uc.UC_MEM_FETCH
"""Access types a TLB fill reports."""

ERR_OK = uc.UC_ERR_OK

GPR_IDS = (
    x86.UC_X86_REG_RAX, x86.UC_X86_REG_RBX, x86.UC_X86_REG_RCX, x86.UC_X86_REG_RDX,
    x86.UC_X86_REG_RSI, x86.UC_X86_REG_RDI, x86.UC_X86_REG_RBP, x86.UC_X86_REG_RSP,
    x86.UC_X86_REG_R8, x86.UC_X86_REG_R9, x86.UC_X86_REG_R10, x86.UC_X86_REG_R11,
    x86.UC_X86_REG_R12, x86.UC_X86_REG_R13, x86.UC_X86_REG_R14, x86.UC_X86_REG_R15,
    x86.UC_X86_REG_RIP, x86.UC_X86_REG_RFLAGS, x86.UC_X86_REG_FS_BASE, x86.UC_X86_REG_GS_BASE,
)
"""The register file the engine moves in one batch, in :mod:`vsgx.engine.registers` order."""
GPR_COUNT = len(GPR_IDS)
_FPU_REGS = (
    (x86.UC_X86_REG_FPCW, 0), (x86.UC_X86_REG_FPSW, 2), (x86.UC_X86_REG_FPTAG, 4),
    (x86.UC_X86_REG_FOP, 6), (x86.UC_X86_REG_FIP, 8), (x86.UC_X86_REG_FDP, 16),
    (x86.UC_X86_REG_MXCSR, 24),
    *((x86.UC_X86_REG_FP0 + i, 32 + 16 * i) for i in range(8)),
    *((x86.UC_X86_REG_XMM0 + i, 160 + 16 * i) for i in range(16)),
)
"""The x87 and SSE registers and where each lands in :meth:`Unicorn.read_fpu`'s buffer: the
FXSAVE slots, except that Unicorn gives the full tag word (2 bits per physical register, 11 =
empty) where FXSAVE has the abridged one, and FP0-7 are the physical registers R0-R7, not
ST(0)-ST(7). Each read writes the register's own size (10 bytes for FPi, 2 for FOP, 8 for
FIP and FDP)."""
FPU_SIZE = 416
"""The XSAVE legacy region up to the end of XMM15 (SDM Vol. 1 10.5.1 Table 10-2, 64-bit
format): what :meth:`Unicorn.read_fpu` returns and :meth:`Unicorn.write_fpu` takes."""
_ST = slice(32, 160)
_MXCSR_MASK = (0xFFFF).to_bytes(4, "little")
"""MXCSR_MASK as FXSAVE stores it: every MXCSR bit 15:0 supported (DAZ included)."""
_EMPTY = 3
_ABRIDGED = bytes(sum(1 << i for i in range(4) if b >> 2 * i & 3 != _EMPTY) for b in range(256))
"""One byte of the full tag word (four registers) -> their four abridged tag bits."""
_FULL = tuple(sum(_EMPTY << 2 * i for i in range(8) if not b >> i & 1).to_bytes(2, "little")
              for b in range(256))
"""Abridged tag byte -> the full tag word Unicorn takes (valid = 00, empty = 11)."""

RegisterArray = ctypes.Array[ctypes.c_uint64]
PointerArray = ctypes.Array[ctypes.c_void_p]

_TLB_ENTRY = struct.Struct("<QI")
"""``uc_tlb_entry``: the physical page, then the ``UC_PROT_*`` permissions."""

TLB_FILL_CFUNC = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64,
                                  ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
"""``UC_HOOK_TLB_FILL`` with the entry as a plain address (see :func:`tlb_entry`)."""
TlbFill = Callable[[int, int, int, int, Any], bool]
"""``(handle, virtual page, access type, entry address, user data) -> handled``."""
InvalidHook = Callable[[int, Any], bool]
"""``(handle, user data) -> handled``: the raw ``UC_HOOK_INSN_INVALID`` signature."""


def tlb_entry(paddr: int, perms: int) -> bytes:
    """The bytes a TLB fill copies to its entry address (``ctypes.memmove(entry, it, 12)``)."""
    return _TLB_ENTRY.pack(paddr, perms)


def pointers(buffer: ctypes.Array[Any], stride: int, count: int) -> PointerArray:
    """``count`` pointers into ``buffer``, ``stride`` bytes apart (a batch call's ``vals``)."""
    base = ctypes.addressof(buffer)
    return (ctypes.c_void_p * count)(*(base + stride * i for i in range(count)))


class UnicornError(RuntimeError):
    """Unicorn refused a setup call (mapping, hook); the message has its error string."""


def error_name(status: int) -> str:
    """Unicorn's text for an error status."""
    return str(uclib.uc_strerror(status).decode())


def _check(status: int, what: str) -> None:
    if status != ERR_OK:
        raise UnicornError(f"{what}: {error_name(status)}")


_raw = ctypes.CDLL(uclib._name)
"""The same library, with function pointers free of argument conversion."""
_raw.uc_reg_read_batch.restype = ctypes.c_int
_raw.uc_reg_write_batch.restype = ctypes.c_int
_raw.uc_ctl.restype = ctypes.c_int
_raw.uc_emu_stop.restype = ctypes.c_int


class Unicorn:
    """One Unicorn x86-64 instance with a virtual TLB, and the engine's calls into it."""

    def __init__(self) -> None:
        handle = uc_engine()
        _check(uclib.uc_open(uc.UC_ARCH_X86, uc.UC_MODE_64, ctypes.byref(handle)), "uc_open")
        self.handle = handle
        self._keep: list[Any] = []
        _check(uclib.uc_ctl(handle, (uc.UC_CTL_IO_WRITE << 30) | (1 << 26) | uc.UC_CTL_TLB_TYPE,
                            ctypes.c_uint(uc.UC_TLB_VIRTUAL)), "selecting the virtual TLB")
        ids = (ctypes.c_int * GPR_COUNT)(*GPR_IDS)
        self._fpu = (ctypes.c_uint8 * FPU_SIZE)()
        self._fpu_ids = (ctypes.c_int * len(_FPU_REGS))(*(reg for reg, _ in _FPU_REGS))
        base = ctypes.addressof(self._fpu)
        self._fpu_ptrs = (ctypes.c_void_p * len(_FPU_REGS))(
            *(base + offset for _, offset in _FPU_REGS))
        # The hot paths, bound once to the handle: calling a partial of the foreign function
        # costs about a third less than a method that makes the same call.
        self.start: Callable[[int, int, int, int], int] = functools.partial(
            uclib.uc_emu_start, handle)
        """``start(begin, until, timeout_us, count)``: ``uc_emu_start``; returns Unicorn's
        status (ctypes releases the GIL meanwhile)."""
        self.stop: Callable[[], int] = functools.partial(_raw.uc_emu_stop, handle)
        """``uc_emu_stop``: the run ends after the current instruction or hook."""
        self.flush_tlb: Callable[[], int] = functools.partial(
            _raw.uc_ctl, handle, ctypes.c_int((uc.UC_CTL_IO_WRITE << 30) | uc.UC_CTL_TLB_FLUSH))
        """Empty the TLB (``UC_CTL_TLB_FLUSH``)."""
        self.load_registers: Callable[[PointerArray, int], int] = functools.partial(
            _raw.uc_reg_read_batch, handle, ids)
        """``load_registers(into, count)``: read the first ``count`` registers of
        :data:`GPR_IDS` through ``into`` (:attr:`vsgx.engine.Registers.pointers`) in one
        batch."""
        self.store_registers: Callable[[PointerArray, int], int] = functools.partial(
            _raw.uc_reg_write_batch, handle, ids)
        """``store_registers(source, count)``: write the first ``count`` registers (all of
        them, or 4: RAX, RBX, RCX, RDX, leaving RIP alone)."""

    def close(self) -> None:
        """Free the engine. The handle the bound calls hold becomes NULL in place."""
        if self.handle.value:
            uclib.uc_close(self.handle)
            self.handle.value = None
            self._keep.clear()

    # -- setup --------------------------------------------------------------------------------

    def map_memory(self, base: int, memory: mmap.mmap) -> None:
        """Map ``memory`` at guest-physical ``base`` without copying. The ctypes view taken
        here pins the mapping (``mmap.close`` refuses while it lives)."""
        pin = ctypes.c_char.from_buffer(memory)
        self._keep.append(pin)
        _check(uclib.uc_mem_map_ptr(self.handle, base, len(memory), uc.UC_PROT_ALL,
                                    ctypes.addressof(pin)),
               f"mapping {len(memory):#x} bytes at {base:#x}")

    def map_mmio(self, base: int, size: int, read: Callable[[int, int], int],
                 write: Callable[[int, int, int], None]) -> None:
        """An MMIO range: ``read(offset, size) -> value``, ``write(offset, size, value)``."""
        rcb = MMIO_READ_CFUNC(lambda _h, off, n, _u: read(off, n))
        wcb = MMIO_WRITE_CFUNC(lambda _h, off, n, value, _u: write(off, n, value))
        self._keep += [rcb, wcb]
        _check(uclib.uc_mmio_map(self.handle, base, size, ctypes.cast(rcb, ctypes.c_void_p),
                                 None, ctypes.cast(wcb, ctypes.c_void_p), None),
               f"mapping MMIO at {base:#x}")

    def _hook(self, kind: int, callback: Any, *extra: Any) -> None:
        handle = uc_hook_h()
        self._keep.append(callback)
        _check(uclib.uc_hook_add(self.handle, ctypes.byref(handle), kind,
                                 ctypes.cast(callback, ctypes.c_void_p), None,
                                 ctypes.c_uint64(1), ctypes.c_uint64(0), *extra),
               f"adding hook {kind:#x}")

    def hook_tlb_fill(self, fill: TlbFill) -> None:
        self._hook(uc.UC_HOOK_TLB_FILL, TLB_FILL_CFUNC(fill))

    def hook_unmapped(self, unmapped: Callable[[int], None]) -> None:
        """``unmapped(physical address)``: an access (data or instruction fetch) reached no
        memory; the run stops there."""
        def cb(_h: int, _access: int, address: int, _size: int, _v: int, _u: Any) -> bool:
            unmapped(address)
            return False
        self._hook(uc.UC_HOOK_MEM_UNMAPPED, HOOK_MEM_INVALID_CFUNC(cb))

    def hook_invalid(self, hook: InvalidHook) -> None:
        self._hook(uc.UC_HOOK_INSN_INVALID, HOOK_INSN_INVALID_CFUNC(hook))

    def hook_interrupt(self, hook: Callable[[int], None]) -> None:
        self._hook(uc.UC_HOOK_INTR, HOOK_INTR_CFUNC(lambda _h, intno, _u: hook(intno)))

    def hook_cpuid(self, hook: Callable[[], bool]) -> None:
        """``hook() -> skip``: True = the hook answered (or refused) the CPUID."""
        self._hook(uc.UC_HOOK_INSN, HOOK_INSN_CPUID_CFUNC(lambda _h, _u: int(hook())),
                   ctypes.c_int(x86.UC_X86_INS_CPUID))

    def hook_syscall(self, syscall: Callable[[], None], sysenter: Callable[[], None]) -> None:
        self._hook(uc.UC_HOOK_INSN, HOOK_INSN_SYSCALL_CFUNC(lambda _h, _u: syscall()),
                   ctypes.c_int(x86.UC_X86_INS_SYSCALL))
        self._hook(uc.UC_HOOK_INSN, HOOK_INSN_SYSCALL_CFUNC(lambda _h, _u: sysenter()),
                   ctypes.c_int(x86.UC_X86_INS_SYSENTER))

    # -- hot paths ----------------------------------------------------------------------------

    def timed_out(self) -> bool:
        """The last run ended because its timeout expired."""
        result = ctypes.c_size_t()
        _check(uclib.uc_query(self.handle, uc.UC_QUERY_TIMEOUT, ctypes.byref(result)),
               "uc_query")
        return bool(result.value)

    def flush_translations(self) -> None:
        """Drop every translated block (so that a newly added hook sees all code)."""
        _raw.uc_ctl(self.handle, ctypes.c_int((uc.UC_CTL_IO_WRITE << 30) | uc.UC_CTL_TB_FLUSH))

    def read_fpu(self) -> bytes:
        """The x87 and SSE state as FXSAVE lays it out in 64-bit mode (SDM Vol. 1 10.5.1
        Table 10-2), bytes 0-415: FCW, FSW, the abridged FTW (bit i set = physical register
        Ri not empty), FOP, FIP, FDP, MXCSR, MXCSR_MASK, ST(0)-ST(7) in stack order (80-bit
        values in 16-byte slots) and XMM0-15. One batch read; the conversion from Unicorn's
        full tag word and physical register order happens here."""
        buf = self._fpu
        ctypes.memset(buf, 0, FPU_SIZE)
        _raw.uc_reg_read_batch(self.handle, self._fpu_ids, self._fpu_ptrs, len(_FPU_REGS))
        raw = bytes(buf)
        abridged = _ABRIDGED[raw[4]] | _ABRIDGED[raw[5]] << 4
        top = 32 + 16 * (raw[3] >> 3 & 7)  # FSW.TOP (bits 13:11): ST(0) is R[TOP]
        return b"".join((raw[:4], bytes((abridged, 0)), raw[6:28], _MXCSR_MASK,
                         raw[top:160], raw[32:top], raw[160:]))

    def write_fpu(self, state: bytes) -> None:
        """The inverse of :meth:`read_fpu` (as FXRSTOR loads it: MXCSR_MASK is ignored, a
        tag bit of 0 makes the register empty, 1 valid)."""
        st = state[_ST]
        first = 16 * (-(state[3] >> 3) & 7)  # R0 is ST((0 - TOP) mod 8)
        raw = b"".join((state[:4], _FULL[state[4]], state[6:32], st[first:], st[:first],
                        state[160:FPU_SIZE]))
        ctypes.memmove(self._fpu, raw, FPU_SIZE)
        _raw.uc_reg_write_batch(self.handle, self._fpu_ids, self._fpu_ptrs, len(_FPU_REGS))
