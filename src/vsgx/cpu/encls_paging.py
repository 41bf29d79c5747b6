"""EPC paging: EPA, EBLOCK, ETRACK, EWB, ELDB, ELDU (SDM Vol. 3D 38.5 "EPC management" and the
leaves' pseudo-code).

Tracking follows the SDM's epoch model: EBLOCK stamps a page with the enclave's current epoch;
ETRACK starts a new epoch and records which logical processors are inside; EWB (and EACCEPT of a
modified page) requires a later ETRACK whose recorded processors have all left the enclave.

The MAC header that binds an evicted page is not architectural; vsgx's layout is documented in
:func:`vsgx.crypto.pcmd_mac_header`. Its EID is the owning SECS's EID for REG/TCS/TRIM pages and
0 for SECS and VA pages (SDM EWB). A SECS carries its own EID inside the encrypted page
(:data:`vsgx.cpu.processor.SECS_EID_OFFSET`), as on silicon, and PCMD.ENCLAVEID reports it.
"""

from __future__ import annotations

from vsgx.arch import (
    PAGE_SIZE,
    PAGEINFO,
    PCMD,
    SECINFO,
    SECINFO_FLAGS_VALID,
    PageType,
    SgxError,
)
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import gp, pf
from vsgx.cpu.processor import (
    SECS_EID_OFFSET,
    EnclaveState,
    LeafResult,
    LogicalProcessor,
    SgxProcessor,
)
from vsgx.cpu.status import SUCCESS, LeafStatus, error, warning_cf
from vsgx.crypto import MacMismatch, eldu_open, ewb_seal, pcmd_mac_header

_CHILD_TYPES = (PageType.PT_REG, PageType.PT_TCS, PageType.PT_TRIM)
VA_SLOT_SIZE = 8


def epa(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int, rdx: int) -> LeafResult:
    """ENCLS[EPA]: make a free EPC page a Version Array of 512 zeroed slots (SDM EPA)."""
    if rbx != PageType.PT_VA:
        raise gp(f"EPA needs RBX = PT_VA (3), got {rbx}")
    idx = cpu.epc_index(rcx)
    if cpu.epcm.valid(idx):
        raise pf(rcx, "EPC page is already in use")
    cpu.epc.wipe(idx)
    cpu.epcm.set_valid(idx, PageType.PT_VA, 0)
    return LeafResult(SUCCESS)


def eblock(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[EBLOCK]: mark a page blocked so no new TLB mappings to it can be made."""
    idx = cpu.epc_index(rcx)
    e = cpu.epcm
    if not e.valid(idx):
        return LeafResult(error(SgxError.SGX_PG_INVLD))
    pt = e.page_type(idx)
    if pt == PageType.PT_SECS:
        return LeafResult(warning_cf(SgxError.SGX_PG_IS_SECS))
    if pt not in _CHILD_TYPES:
        return LeafResult(warning_cf(SgxError.SGX_NOTBLOCKABLE))
    if e.bits(idx) & m.BLOCKED:
        return LeafResult(warning_cf(SgxError.SGX_BLKSTATE))
    e.set_bits(idx, e.bits(idx) | m.BLOCKED)
    e.bepoch[idx] = cpu.enclaves[int(e.owner[idx])].epoch
    return LeafResult(SUCCESS)


def etrack(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[ETRACK]: start a new tracking epoch for an enclave (SDM ETRACK)."""
    idx = cpu.epc_index(rcx)
    state = cpu.secs_of(idx, rcx)
    if state.tracking:
        return LeafResult(error(SgxError.SGX_PREV_TRK_INCMPL))
    state.epoch += 1
    state.tracking = set(state.inside)
    return LeafResult(SUCCESS)


def tracked(state: EnclaveState, stamp: int) -> bool:
    """Has an ETRACK after ``stamp`` completed (all processors then inside have left)?"""
    return stamp < state.epoch and not state.tracking


def _va_slot(cpu: SgxProcessor, rdx: int) -> tuple[int, int]:
    """(VA page index, byte offset) of a version slot; #PF unless it is in a valid VA page."""
    idx = cpu.epc_index(rdx, align=VA_SLOT_SIZE)
    if not cpu.epcm.valid(idx) or cpu.epcm.page_type(idx) != PageType.PT_VA:
        raise pf(rdx, "VA slot is not in a valid PT_VA page")
    return idx, rdx % PAGE_SIZE


def _paging_operands(cpu: SgxProcessor, rbx: int, rcx: int, rdx: int) -> PAGEINFO:
    pageinfo = cpu.read_struct(PAGEINFO, rbx)
    if rcx % PAGE_SIZE or rdx % VA_SLOT_SIZE:
        raise gp("EPC page must be 4 KiB aligned and the VA slot 8-byte aligned")
    if pageinfo.srcpge % PAGE_SIZE or pageinfo.secinfo % PCMD.ALIGN:
        raise gp("PAGEINFO.SRCPGE must be 4 KiB aligned and PAGEINFO.PCMD 128-byte aligned")
    if rcx // PAGE_SIZE == rdx // PAGE_SIZE:
        raise gp("the EPC page and the VA slot are in the same page")
    return pageinfo


def ewb(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int, rdx: int) -> LeafResult:
    """ENCLS[EWB]: encrypt an EPC page out to ordinary memory, recording its version in a VA
    slot (SDM EWB)."""
    pageinfo = _paging_operands(cpu, rbx, rcx, rdx)
    if pageinfo.linaddr or pageinfo.secs:
        raise gp("PAGEINFO.LINADDR and PAGEINFO.SECS must be 0 for EWB")
    idx = cpu.epc_index(rcx)
    va_idx, va_off = _va_slot(cpu, rdx)
    e = cpu.epcm
    if not e.valid(idx):
        raise pf(rcx, "EWB of an invalid EPC page")
    pt = PageType(e.page_type(idx))
    bits = e.bits(idx)
    owner: EnclaveState | None = None
    header_eid = 0
    if pt == PageType.PT_SECS:
        state = cpu.enclaves[idx]
        if state.children:
            return LeafResult(error(SgxError.SGX_CHILD_PRESENT))
        eid = state.eid
    elif pt == PageType.PT_VA:
        eid = 0
    else:
        owner = cpu.enclaves[int(e.owner[idx])]
        if not bits & m.BLOCKED:
            return LeafResult(error(SgxError.SGX_PAGE_NOT_BLOCKED))
        if not tracked(owner, int(e.bepoch[idx])):
            return LeafResult(error(SgxError.SGX_NOT_TRACKED))
        eid = header_eid = owner.eid
    linaddr = int(e.linaddr[idx])
    flags = (int(pt) << 8) | (bits & m.SECINFO_BITS)
    version = cpu.new_version()
    header = pcmd_mac_header(header_eid, linaddr, flags)
    ciphertext, mac = ewb_seal(cpu.boot.paging_key, version, header, cpu.epc.page(idx))
    pcmd = PCMD(secinfo=SECINFO(flags), enclaveid=eid, mac=mac)
    cpu.write(pageinfo.srcpge, ciphertext)
    cpu.write(pageinfo.secinfo, pcmd.to_bytes())
    cpu.write(rbx, linaddr.to_bytes(8, "little"))
    slot = cpu.epc.page(va_idx)[va_off : va_off + VA_SLOT_SIZE]
    status: LeafStatus = SUCCESS
    if any(slot):
        status = warning_cf(SgxError.SGX_VA_SLOT_OCCUPIED)
    slot[:] = version.to_bytes(8, "little")
    if pt == PageType.PT_SECS:
        cpu.evicted_secs[eid] = cpu.enclaves.pop(idx)
    elif owner is not None:
        owner.children -= 1
    e.invalidate(idx)
    cpu.epc.wipe(idx)
    return LeafResult(status)


def _load(cpu: SgxProcessor, rbx: int, rcx: int, rdx: int, *, blocked: bool) -> LeafResult:
    """ELDB/ELDU: decrypt an evicted page back into the EPC after checking its MAC and version
    (SDM ELDB/ELDU). The VA slot is cleared on success, so a page cannot be replayed."""
    pageinfo = _paging_operands(cpu, rbx, rcx, rdx)
    idx = cpu.epc_index(rcx)
    va_idx, va_off = _va_slot(cpu, rdx)
    raw_pcmd = cpu.read(pageinfo.secinfo, PCMD.SIZE)
    pcmd = PCMD.from_bytes(raw_pcmd, strict=False)
    flags = pcmd.secinfo.flags
    if flags & ~SECINFO_FLAGS_VALID or pcmd.secinfo.page_type > max(PageType):
        raise gp(f"PCMD.SECINFO.FLAGS {flags:#x} has reserved bits set")
    pt = PageType(pcmd.secinfo.page_type)
    if cpu.epcm.valid(idx):
        raise pf(rcx, "ELD target EPC page is already in use")
    owner: EnclaveState | None = None
    secs_idx = 0
    if pt in _CHILD_TYPES:
        if pageinfo.secs % PAGE_SIZE:
            raise gp("PAGEINFO.SECS is not 4 KiB aligned")
        secs_idx = cpu.epc_index(pageinfo.secs)
        owner = cpu.secs_of(secs_idx, pageinfo.secs)
        eid = owner.eid
    else:
        eid = 0
    version = int.from_bytes(cpu.epc.page(va_idx)[va_off : va_off + VA_SLOT_SIZE], "little")
    ciphertext = cpu.read(pageinfo.srcpge, PAGE_SIZE)
    header = pcmd_mac_header(eid, pageinfo.linaddr if owner else 0, flags)
    try:
        if PCMD.reserved_nonzero(raw_pcmd) is not None:
            raise MacMismatch("PCMD reserved bytes were altered")
        plaintext = eldu_open(cpu.boot.paging_key, version, header, ciphertext, pcmd.mac)
    except MacMismatch:
        return LeafResult(error(SgxError.SGX_MAC_COMPARE_FAIL))
    if pt == PageType.PT_SECS:
        own_eid = int.from_bytes(plaintext[SECS_EID_OFFSET : SECS_EID_OFFSET + 8], "little")
        state = cpu.evicted_secs.pop(own_eid, None)
        if state is None:  # an authentic page whose enclave is already resident again
            return LeafResult(error(SgxError.SGX_MAC_COMPARE_FAIL))
        cpu.enclaves[idx] = state
    cpu.epc.page(idx)[:] = plaintext
    bits = flags & m.SECINFO_BITS
    if blocked and owner is not None:
        bits |= m.BLOCKED
    cpu.epcm.set_valid(idx, pt, bits, owner=secs_idx, linaddr=pageinfo.linaddr if owner else 0)
    if owner is not None:
        owner.children += 1
        cpu.epcm.bepoch[idx] = owner.epoch
        # The EWB that evicted it needed a completed ETRACK after any EMODPR/EMODT.
        cpu.epcm.mepoch[idx] = 0
    cpu.epc.page(va_idx)[va_off : va_off + VA_SLOT_SIZE] = bytes(VA_SLOT_SIZE)
    return LeafResult(SUCCESS)


def eldb(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
         rdx: int) -> LeafResult:
    """ENCLS[ELDB]: load an evicted page and leave it blocked."""
    return _load(cpu, rbx, rcx, rdx, blocked=True)


def eldu(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
         rdx: int) -> LeafResult:
    """ENCLS[ELDU]: load an evicted page unblocked."""
    return _load(cpu, rbx, rcx, rdx, blocked=False)
