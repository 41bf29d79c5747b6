"""Debugger access to debug enclaves: EDBGRD and EDBGWR (SDM Vol. 3D EDBGRD/EDBGWR).

Only pages of enclaves whose ATTRIBUTES.DEBUG is set may be read or written; in 64-bit mode each
access moves 8 naturally aligned bytes between RBX and the EPC. A TCS may be written only in its
FLAGS field, and only to set or clear DBGOPTIN.
"""

from __future__ import annotations

from vsgx.arch import PAGE_SIZE, AttributesFlags, PageType, SgxError, TcsFlags
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import gp, pf
from vsgx.cpu.processor import EnclaveState, LeafResult, LogicalProcessor, SgxProcessor
from vsgx.cpu.status import SUCCESS, error

_WORD = 8
_TCS_FLAGS_OFFSET = 8


def _debuggable(cpu: SgxProcessor, rcx: int) -> tuple[int, int, EnclaveState | None]:
    """(EPC index, page type, owning enclave or None if the page is not debuggable)."""
    if rcx % _WORD:
        raise gp(f"EDBGRD/EDBGWR address {rcx:#x} is not 8-byte aligned")
    idx = cpu.epc_index(rcx, align=_WORD)
    e = cpu.epcm
    if not e.valid(idx) or e.bits(idx) & m.BLOCKED:
        raise pf(rcx, "EPCM entry is invalid or blocked")
    pt = e.page_type(idx)
    if pt == PageType.PT_VA:
        return idx, pt, None
    state = cpu.enclaves[idx] if pt == PageType.PT_SECS else cpu.enclaves[int(e.owner[idx])]
    if not state.secs.attributes.flags & AttributesFlags.DEBUG:
        return idx, pt, None
    return idx, pt, state


def edbgrd(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[EDBGRD]: read 8 bytes of a debug enclave's page into RBX."""
    idx, _, state = _debuggable(cpu, rcx)
    if state is None:
        return LeafResult(error(SgxError.SGX_PAGE_NOT_DEBUGGABLE))
    off = rcx % PAGE_SIZE
    value = int.from_bytes(cpu.epc.page(idx)[off : off + _WORD], "little")
    return LeafResult(SUCCESS, rbx=value)


def edbgwr(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[EDBGWR]: write RBX's 8 bytes into a debug enclave's page."""
    idx, pt, state = _debuggable(cpu, rcx)
    if state is None or pt == PageType.PT_SECS:
        return LeafResult(error(SgxError.SGX_PAGE_NOT_DEBUGGABLE))
    off = rcx % PAGE_SIZE
    page = cpu.epc.page(idx)
    if pt == PageType.PT_TCS:
        old = int.from_bytes(page[off : off + _WORD], "little")
        if off != _TCS_FLAGS_OFFSET or (old ^ rbx) & ~int(TcsFlags.DBGOPTIN):
            raise gp("EDBGWR may change only TCS.FLAGS.DBGOPTIN")
    page[off : off + _WORD] = (rbx & (1 << 64) - 1).to_bytes(_WORD, "little")
    return LeafResult(SUCCESS)
