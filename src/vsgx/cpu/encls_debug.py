"""Debugger access to debug enclaves: EDBGRD and EDBGWR (SDM Vol. 3D EDBGRD/EDBGWR).

In 64-bit mode each access moves 8 naturally aligned bytes between RBX and the EPC, in the
pseudo-code's order: an invalid entry or a page that is not REG/TCS (or, for EDBGRD, a VA page)
is #PF; a PENDING or MODIFIED page is SGX_PAGE_NOT_DEBUGGABLE; a page of an enclave without
ATTRIBUTES.DEBUG is #GP(0). EDBGRD of a VA slot reads all ones when the slot holds a version and
0 when it is empty. EDBGWR may write a TCS only in its FLAGS word.
"""

from __future__ import annotations

from vsgx.arch import PAGE_SIZE, TCS, AttributesFlags, PageType, SgxError
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import gp, pf
from vsgx.cpu.processor import LeafResult, LogicalProcessor, SgxProcessor
from vsgx.cpu.status import SUCCESS, error

_WORD = 8
_TCS_FLAGS_OFFSET = TCS.field_offset("flags")
_ALL_ONES = (1 << 64) - 1


def _target(cpu: SgxProcessor, rcx: int, types: tuple[PageType, ...]) -> tuple[int, int]:
    """(EPC index, page type) after the checks both leaves share; raises the faults."""
    if rcx % _WORD:
        raise gp(f"EDBGRD/EDBGWR address {rcx:#x} is not 8-byte aligned")
    idx = cpu.epc_index(rcx, align=_WORD)
    e = cpu.epcm
    if not e.valid(idx) or e.page_type(idx) not in types:
        raise pf(rcx, "not a valid EPC page of a type the debugger may access")
    return idx, e.page_type(idx)


def _not_debuggable(cpu: SgxProcessor, idx: int) -> bool:
    """PENDING or MODIFIED pages are not debuggable; other enclaves' pages need DEBUG."""
    if cpu.epcm.bits(idx) & (m.PENDING | m.MODIFIED):
        return True
    owner = cpu.enclaves[int(cpu.epcm.owner[idx])]
    if not owner.secs.attributes.flags & AttributesFlags.DEBUG:
        raise gp("the enclave is not a debug enclave (ATTRIBUTES.DEBUG = 0)")
    return False


def edbgrd(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[EDBGRD]: read 8 bytes of a debug enclave's page (or a VA slot) into RBX."""
    idx, pt = _target(cpu, rcx, (PageType.PT_REG, PageType.PT_TCS, PageType.PT_VA))
    off = rcx % PAGE_SIZE
    value = int.from_bytes(cpu.epc.page(idx)[off : off + _WORD], "little")
    if pt == PageType.PT_VA:
        return LeafResult(SUCCESS, rbx=_ALL_ONES if value else 0)
    if _not_debuggable(cpu, idx):
        return LeafResult(error(SgxError.SGX_PAGE_NOT_DEBUGGABLE))
    return LeafResult(SUCCESS, rbx=value)


def edbgwr(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[EDBGWR]: write RBX's 8 bytes into a debug enclave's REG page or TCS.FLAGS."""
    idx, pt = _target(cpu, rcx, (PageType.PT_REG, PageType.PT_TCS))
    if _not_debuggable(cpu, idx):
        return LeafResult(error(SgxError.SGX_PAGE_NOT_DEBUGGABLE))
    off = rcx % PAGE_SIZE
    if pt == PageType.PT_TCS and off != _TCS_FLAGS_OFFSET:
        raise gp("EDBGWR may write a TCS only in its FLAGS field")
    cpu.epc.page(idx)[off : off + _WORD] = (rbx & _ALL_ONES).to_bytes(_WORD, "little")
    cpu.epcm.code_written(idx)
    return LeafResult(SUCCESS)
