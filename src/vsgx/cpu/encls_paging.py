"""EPC paging: EPA, EBLOCK, ETRACK, EWB, ELDB, ELDU (SDM Vol. 3D 38.5 "EPC management" and the
leaves' pseudo-code).

Tracking follows the SDM's epoch model: EBLOCK stamps a page with the enclave's current epoch;
ETRACK starts a new epoch and records which logical processors are inside; EWB (and EACCEPT of a
modified page) requires a later ETRACK whose recorded processors have all left the enclave.

The MAC header that binds an evicted page is not architectural; vsgx's layout is documented in
:func:`vsgx.crypto.pcmd_mac_header`. Its EID is the owning SECS's EID for REG/TCS/TRIM pages and
0 for SECS and VA pages (SDM EWB). A SECS carries its own EID inside the encrypted page
(:data:`vsgx.cpu.processor.SECS_EID_OFFSET`), as on silicon, and PCMD.ENCLAVEID reports it.

:func:`ewb_pages` and :func:`eld_pages` run EWB and ELDB/ELDU over a batch of pages with their
operands by value, as Linux's reclaimer (``sgx_reclaim_pages``: EBLOCK every page, one ETRACK,
then EWB each) and fault handler use the leaves; they are exactly the leaf sequence, through the
same per-page code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from vsgx.arch import (
    PAGE_SIZE,
    PAGEINFO,
    PCMD,
    SECINFO_FLAGS_VALID,
    PageType,
    SgxError,
)
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import SgxFault, gp, pf
from vsgx.cpu.processor import (
    SECS_EID_OFFSET,
    EnclaveState,
    LeafResult,
    LogicalProcessor,
    SgxProcessor,
)
from vsgx.cpu.status import SUCCESS, LeafStatus, error, warning_cf
from vsgx.crypto import MacMismatch, pcmd_mac_header
from vsgx.crypto.paging import PagingCipher, paging_cipher

VA_SLOT_SIZE = 8
_U64 = struct.Struct("<Q")
"""A VA slot, and PAGEINFO.LINADDR as EWB writes it back."""
_PCMD_IMAGE = struct.Struct("<Q56xQ40x16s")
"""PCMD (SDM 38.12) as EWB writes it: SECINFO.FLAGS at 0 (the rest of SECINFO reserved),
ENCLAVEID at 64, reserved 72..111, MAC at 112; the same image as :class:`vsgx.arch.PCMD`."""
_PCMD_MAC = 112
"""Offset of PCMD.MAC."""
_PT_SECS = int(PageType.PT_SECS)
_PT_VA = int(PageType.PT_VA)
_MAX_PAGE_TYPE = max(int(t) for t in PageType)
_U64_LIMIT = 1 << 64
_ZERO_PAGE = bytes(PAGE_SIZE)
_CHILD_TYPE_LIST = sorted(m.CHILD_TYPES)
_PCMD_RESERVED = np.frombuffer(PCMD.reserved_mask(), dtype=np.uint8)

_CHILD_PRESENT = error(SgxError.SGX_CHILD_PRESENT)
_PAGE_NOT_BLOCKED = error(SgxError.SGX_PAGE_NOT_BLOCKED)
_NOT_TRACKED = error(SgxError.SGX_NOT_TRACKED)
_VA_SLOT_OCCUPIED = warning_cf(SgxError.SGX_VA_SLOT_OCCUPIED)
_MAC_COMPARE_FAIL = error(SgxError.SGX_MAC_COMPARE_FAIL)


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
    if pt == _PT_SECS:
        return LeafResult(warning_cf(SgxError.SGX_PG_IS_SECS))
    if pt not in m.CHILD_TYPES:
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


# -- EWB / ELDB / ELDU -------------------------------------------------------------------------
#
# One implementation serves the leaves and the batches. A leaf reads PAGEINFO and checks what
# concerns only PAGEINFO, then takes the single-page path: _operands (the RCX/RDX checks), the
# EPCM/PCMD checks, and the per-page core (_ewb_page, _eld_page) with its memory operands. A
# batch has its operands by value: numpy finds the longest run of pages whose checks cannot fail
# (_ewb_run_length, _eld_run_length), the same core processes that run with the EPCM read and
# written once for the whole run, and the page that ends the run takes the single-page path,
# which faults exactly as the leaf does.

def _operands(cpu: SgxProcessor, epc_pa: int, slot_pa: int) -> tuple[int, int]:
    """The checks EWB, ELDB and ELDU make on RCX (the EPC page) and RDX (the VA slot):
    alignment and "RCX and RDX in the same 4 KiB page" (#GP), RCX outside the EPC (#PF), RDX
    outside the EPC or not in a valid PT_VA page (#PF). Returns (EPC index, VA page index)."""
    if epc_pa % PAGE_SIZE or slot_pa % VA_SLOT_SIZE:
        raise gp("EPC page must be 4 KiB aligned and the VA slot 8-byte aligned")
    if epc_pa // PAGE_SIZE == slot_pa // PAGE_SIZE:
        raise gp("the EPC page and the VA slot are in the same page")
    idx = cpu.epc_index(epc_pa)
    va_idx = cpu.epc_index(slot_pa, align=VA_SLOT_SIZE)
    e = cpu.epcm
    if not e.valid(va_idx) or e.page_type(va_idx) != _PT_VA:
        raise pf(slot_pa, "VA slot is not in a valid PT_VA page")
    return idx, va_idx


def _pageinfo(cpu: SgxProcessor, rbx: int) -> PAGEINFO:
    """PAGEINFO of a paging leaf: SRCPGE 4 KiB and PCMD 128-byte aligned (#GP)."""
    pageinfo = cpu.read_struct(PAGEINFO, rbx)
    if pageinfo.srcpge % PAGE_SIZE or pageinfo.secinfo % PCMD.ALIGN:
        raise gp("PAGEINFO.SRCPGE must be 4 KiB aligned and PAGEINFO.PCMD 128-byte aligned")
    return pageinfo


Fill = tuple[int, int, int, int, int, int]
"""An EPCM entry ELDB/ELDU makes valid: EPC index, page type, SECINFO-style bits (BLOCKED
included), ENCLAVESECS, ENCLAVEADDRESS and, for a child page, the enclave's epoch (-1 for a
SECS or VA page)."""


@dataclass(slots=True)
class _Pass:
    """EWB or ELDB/ELDU over one page (a leaf, or the single-page path of a batch) or over a
    run of a batch. For a run, ``freed`` (EWB) or ``fills`` (ELDB/ELDU) collects the EPCM
    writes, which :meth:`finish` applies when the run ends; otherwise each page writes its
    EPCM entry as it completes."""

    cpu: SgxProcessor
    blocked: bool = False
    freed: list[int] | None = None
    fills: list[Fill] | None = None
    cipher: PagingCipher = field(init=False)

    def __post_init__(self) -> None:
        self.cipher = paging_cipher(self.cpu.boot.paging_key)

    def finish(self) -> None:
        """Apply the EPCM writes collected for a run (vectorised, as :class:`Epcm` does)."""
        e = self.cpu.epcm
        if self.freed:
            e.invalidate_many(np.asarray(self.freed, dtype=np.int64))
        if self.fills:
            idx_col, pt, bits, owner, linaddr, epoch_col = zip(*self.fills, strict=True)
            idx = np.array(idx_col, dtype=np.int64)
            e.set_valid_many(idx, np.array(pt, dtype=np.uint8), np.array(bits, dtype=np.uint16),
                             np.array(owner, dtype=np.int64), np.array(linaddr, dtype=np.uint64))
            epoch = np.array(epoch_col, dtype=np.int64)
            children = epoch >= 0
            e.bepoch[idx[children]] = epoch[children]
            e.mepoch[idx[children]] = 0


class EvictedPage(NamedTuple):
    """What EWB produced for one page: its status (RAX/RFLAGS), the encrypted page (SRCPGE),
    the 128-byte PCMD image and ENCLAVEADDRESS (written back to PAGEINFO.LINADDR).

    When the status is an error (SGX_CHILD_PRESENT, SGX_PAGE_NOT_BLOCKED, SGX_NOT_TRACKED)
    EWB wrote nothing: ``ciphertext`` and ``pcmd`` are empty and ``linaddr`` is 0. (A named
    tuple: immutable like a frozen dataclass, and built in half the time, once per page.)
    """

    status: LeafStatus
    ciphertext: bytes
    pcmd: bytes
    linaddr: int


_EWB_CHILD_PRESENT = EvictedPage(_CHILD_PRESENT, b"", b"", 0)
_EWB_NOT_BLOCKED = EvictedPage(_PAGE_NOT_BLOCKED, b"", b"", 0)
_EWB_NOT_TRACKED = EvictedPage(_NOT_TRACKED, b"", b"", 0)

Store = Callable[[bytes, bytes, int], None]
"""EWB's stores to ordinary memory: (ciphertext to SRCPGE, PCMD image, LINADDR to PAGEINFO)."""

Entry = tuple[int, int, int, int, int]
"""The EPCM fields EWB reads: flags (VALID, BLOCKED, SECINFO bits), page type, ENCLAVESECS,
the EBLOCK epoch and ENCLAVEADDRESS."""


def _entry(cpu: SgxProcessor, idx: int) -> Entry:
    """EWB's EPCM fields of one page, read as the leaf reads them."""
    e = cpu.epcm
    return (int(e.flags.item(idx)), int(e.pt.item(idx)), int(e.owner.item(idx)),
            int(e.bepoch.item(idx)), int(e.linaddr.item(idx)))


def _ewb_page(p: _Pass, idx: int, page: memoryview, epc_pa: int, entry: Entry,
              va_page: memoryview, slot_off: int, store: Store | None) -> EvictedPage:
    """EWB of EPC page ``idx`` (contents ``page``, EPCM ``entry``) into the slot at
    ``slot_off`` of ``va_page``, after :func:`_operands` (SDM EWB, from the EPCM checks on):
    #PF if the page is invalid; a SECS with children is SGX_CHILD_PRESENT; a REG/TCS/TRIM
    page must be blocked (SGX_PAGE_NOT_BLOCKED) and tracked (SGX_NOT_TRACKED). Otherwise seal
    it under a fresh version, ``store`` the results (the leaf's memory operands; a faulting
    store leaves the page resident), record the version in the slot (SGX_VA_SLOT_OCCUPIED
    with CF if the slot held one, the write completing anyway), wipe the page and free its
    EPCM entry."""
    bits, pt, owner_idx, bepoch, linaddr = entry
    if not bits & m.VALID:
        raise pf(epc_pa, "EWB of an invalid EPC page")
    cpu = p.cpu
    owner: EnclaveState | None = None
    header_eid = 0
    if pt == _PT_SECS:
        state = cpu.enclaves[idx]
        if state.children:
            return _EWB_CHILD_PRESENT
        eid = state.eid
    elif pt == _PT_VA:
        eid = 0
    else:
        owner = cpu.enclaves[owner_idx]
        if not bits & m.BLOCKED:
            return _EWB_NOT_BLOCKED
        if not tracked(owner, bepoch):
            return _EWB_NOT_TRACKED
        eid = header_eid = owner.eid
    flags = (pt << 8) | (bits & m.SECINFO_BITS)
    version = cpu.new_version()
    ciphertext, mac = p.cipher.seal(version, pcmd_mac_header(header_eid, linaddr, flags), page)
    pcmd = _PCMD_IMAGE.pack(flags, eid, mac)
    if store is not None:
        store(ciphertext, pcmd, linaddr)
    status = _VA_SLOT_OCCUPIED if _U64.unpack_from(va_page, slot_off)[0] else SUCCESS
    _U64.pack_into(va_page, slot_off, version)
    if pt == _PT_SECS:
        cpu.evicted_secs[eid] = cpu.enclaves.pop(idx)
    elif owner is not None:
        owner.children -= 1
    page[:] = _ZERO_PAGE
    if p.freed is None:
        cpu.epcm.invalidate(idx)
    else:
        p.freed.append(idx)
    return EvictedPage(status, ciphertext, pcmd, linaddr)


def _ewb_one(cpu: SgxProcessor, epc_pa: int, slot_pa: int, store: Store | None) -> EvictedPage:
    """EWB of one page, every check made as the leaf makes it."""
    idx, va_idx = _operands(cpu, epc_pa, slot_pa)
    return _ewb_page(_Pass(cpu), idx, cpu.epc.page(idx), epc_pa, _entry(cpu, idx),
                     cpu.epc.page(va_idx), slot_pa % PAGE_SIZE, store)


def ewb(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int, rdx: int) -> LeafResult:
    """ENCLS[EWB]: encrypt an EPC page out to ordinary memory, recording its version in a VA
    slot (SDM EWB)."""
    pageinfo = _pageinfo(cpu, rbx)
    if pageinfo.linaddr or pageinfo.secs:
        raise gp("PAGEINFO.LINADDR and PAGEINFO.SECS must be 0 for EWB")

    def store(ciphertext: bytes, pcmd: bytes, linaddr: int) -> None:
        cpu.write(pageinfo.srcpge, ciphertext)
        cpu.write(pageinfo.secinfo, pcmd)
        cpu.write(rbx, _U64.pack(linaddr))

    return LeafResult(_ewb_one(cpu, rcx, rdx, store).status)


def _eld_check(cpu: SgxProcessor, idx: int, epc_pa: int, secs_pa: int,
               raw_pcmd: bytes) -> tuple[int, int, EnclaveState | None]:
    """ELDB/ELDU's checks after :func:`_operands` (SDM ELDB/ELDU): reserved
    PCMD.SECINFO.FLAGS bits are #GP, a valid destination #PF; a REG/TCS/TRIM page needs
    PAGEINFO.SECS (``secs_pa``) 4 KiB aligned (#GP) and a valid SECS (#PF). Returns
    (PCMD.SECINFO.FLAGS, the SECS's EPC index, its enclave), (flags, 0, None) for a SECS or VA
    page."""
    flags = _U64.unpack_from(raw_pcmd)[0]
    if flags & ~SECINFO_FLAGS_VALID or flags >> 8 > _MAX_PAGE_TYPE:
        raise gp(f"PCMD.SECINFO.FLAGS {flags:#x} has reserved bits set")
    if cpu.epcm.valid(idx):
        raise pf(epc_pa, "ELD target EPC page is already in use")
    if flags >> 8 not in m.CHILD_TYPES:
        return flags, 0, None
    if secs_pa % PAGE_SIZE:
        raise gp("PAGEINFO.SECS is not 4 KiB aligned")
    secs_idx = cpu.epc_index(secs_pa)
    return flags, secs_idx, cpu.secs_of(secs_idx, secs_pa)


def _eld_page(p: _Pass, idx: int, page: memoryview, va_page: memoryview, slot_off: int,
              flags: int, secs_idx: int, owner: EnclaveState | None, linaddr: int, mac: bytes,
              reserved_ok: bool, ciphertext: bytes) -> LeafStatus:
    """ELDB/ELDU into EPC page ``idx`` (contents ``page``) after :func:`_eld_check`
    (SDM ELDB/ELDU): rebuild the MAC header and decrypt with the version in the slot at
    ``slot_off`` of ``va_page``. A mismatch (or altered PCMD reserved bytes: not
    ``reserved_ok``; or a SECS whose enclave is resident) is SGX_MAC_COMPARE_FAIL with no
    effect. On success the page is
    written, its EPCM entry filled in (BLOCKED for ELDB of a child page) and the slot
    cleared, so the page cannot be replayed."""
    cpu = p.cpu
    pt = flags >> 8
    eid = 0 if owner is None else owner.eid
    if owner is None:
        linaddr = 0
    if not reserved_ok:
        return _MAC_COMPARE_FAIL
    try:
        plaintext = p.cipher.open(_U64.unpack_from(va_page, slot_off)[0],
                                  pcmd_mac_header(eid, linaddr, flags), ciphertext, mac)
    except MacMismatch:
        return _MAC_COMPARE_FAIL
    if pt == _PT_SECS:
        state = cpu.evicted_secs.pop(_U64.unpack_from(plaintext, SECS_EID_OFFSET)[0], None)
        if state is None:  # an authentic page whose enclave is already resident again
            return _MAC_COMPARE_FAIL
        cpu.enclaves[idx] = state
    page[:] = plaintext
    bits = flags & m.SECINFO_BITS
    if p.blocked and owner is not None:
        bits |= m.BLOCKED
    if owner is not None:
        owner.children += 1
    if p.fills is None:
        e = cpu.epcm
        e.set_valid(idx, pt, bits, owner=secs_idx, linaddr=linaddr)
        if owner is not None:
            e.bepoch[idx] = owner.epoch
            # The EWB that evicted it needed a completed ETRACK after any EMODPR/EMODT.
            e.mepoch[idx] = 0
    else:
        p.fills.append((idx, pt, bits, secs_idx, linaddr, -1 if owner is None else owner.epoch))
    _U64.pack_into(va_page, slot_off, 0)
    return SUCCESS


def _eld_one(cpu: SgxProcessor, request: LoadRequest, blocked: bool) -> LeafStatus:
    """ELDB/ELDU of one request, every check made as the leaf makes it."""
    idx, va_idx = _operands(cpu, request.epc_pa, request.va_slot_pa)
    flags, secs_idx, owner = _eld_check(cpu, idx, request.epc_pa, request.secs_pa,
                                        request.pcmd)
    return _eld_page(_Pass(cpu, blocked), idx, cpu.epc.page(idx), cpu.epc.page(va_idx),
                     request.va_slot_pa % PAGE_SIZE, flags, secs_idx, owner, request.linaddr,
                     request.pcmd[_PCMD_MAC:], PCMD.reserved_nonzero(request.pcmd) is None,
                     request.ciphertext)


def _load(cpu: SgxProcessor, rbx: int, rcx: int, rdx: int, *, blocked: bool) -> LeafResult:
    """ELDB/ELDU: decrypt an evicted page back into the EPC after checking its MAC and version
    (SDM ELDB/ELDU). The VA slot is cleared on success, so a page cannot be replayed."""
    pageinfo = _pageinfo(cpu, rbx)
    idx, va_idx = _operands(cpu, rcx, rdx)
    raw_pcmd = cpu.read(pageinfo.secinfo, PCMD.SIZE)
    flags, secs_idx, owner = _eld_check(cpu, idx, rcx, pageinfo.secs, raw_pcmd)
    ciphertext = cpu.read(pageinfo.srcpge, PAGE_SIZE)
    return LeafResult(_eld_page(_Pass(cpu, blocked), idx, cpu.epc.page(idx),
                                cpu.epc.page(va_idx), rdx % PAGE_SIZE, flags, secs_idx, owner,
                                pageinfo.linaddr, raw_pcmd[_PCMD_MAC:],
                                PCMD.reserved_nonzero(raw_pcmd) is None, ciphertext))


def eldb(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
         rdx: int) -> LeafResult:
    """ENCLS[ELDB]: load an evicted page and leave it blocked."""
    return _load(cpu, rbx, rcx, rdx, blocked=True)


def eldu(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
         rdx: int) -> LeafResult:
    """ENCLS[ELDU]: load an evicted page unblocked."""
    return _load(cpu, rbx, rcx, rdx, blocked=False)


# -- batches ----------------------------------------------------------------------------------

_R = TypeVar("_R")


class BatchFault(SgxFault, Generic[_R]):
    """The fault a page of a batch raised, as its leaf would have: same vector, error code,
    address and reason. ``index`` is the faulting page's position in the batch; ``done``
    holds the results of the pages before it, which took effect (for :func:`ewb_pages`, their
    ciphertexts and PCMDs, which exist nowhere else)."""

    def __init__(self, fault: SgxFault, index: int, done: list[_R]) -> None:
        super().__init__(fault.vector, fault.error_code, fault.address, fault.reason)
        self.index = index
        self.done = done


def _check_u64(what: str, values: Sequence[int]) -> None:
    if values and (min(values) < 0 or max(values) >= _U64_LIMIT):
        raise ValueError(f"{what}: every address must fit in 64 bits")


def _first_bad(bad: npt.NDArray[np.bool_]) -> int:
    return int(np.argmax(bad)) if bad.any() else len(bad)


def _operands_ok(cpu: SgxProcessor, pas: npt.NDArray[np.uint64],
                 slots: npt.NDArray[np.uint64]
                 ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Vectorised :func:`_operands`: (where it would fault, EPC indices, VA page indices).
    An index is -1 where the address is outside the EPC."""
    page_mask = np.uint64(PAGE_SIZE - 1)
    idx = cpu.epc.indices_of(pas & ~page_mask)
    va = cpu.epc.indices_of(slots & ~page_mask)
    bad = (pas & page_mask) != 0
    bad |= (slots & np.uint64(VA_SLOT_SIZE - 1)) != 0
    bad |= (pas & ~page_mask) == (slots & ~page_mask)
    bad |= (idx < 0) | (va < 0)
    e = cpu.epcm
    va_safe = np.where(va < 0, 0, va)
    bad |= ((e.flags[va_safe] & m.VALID) == 0) | (e.pt[va_safe] != _PT_VA)
    return bad, idx, va


def _later_occurrence(values: npt.NDArray[np.int64], probes: npt.NDArray[np.int64]
                      ) -> npt.NDArray[np.bool_]:
    """For each position k: does ``probes[k]`` occur in ``values`` before position k?"""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    at = np.minimum(np.searchsorted(ordered, probes), len(values) - 1)
    result: npt.NDArray[np.bool_] = (ordered[at] == probes) & (order[at] < np.arange(len(probes)))
    return result


def _va_pages(cpu: SgxProcessor, va: npt.NDArray[np.int64]) -> dict[int, memoryview]:
    """The VA pages a run's slots are in, by EPC index."""
    unique = np.unique(va)
    return dict(zip(unique.tolist(), cpu.epc_pages(unique), strict=True))


def _ewb_run_length(cpu: SgxProcessor, pas: npt.NDArray[np.uint64],
                    slots: npt.NDArray[np.uint64]
                    ) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """How many leading pages of an EWB batch pass every check that faults and read no EPCM
    entry an earlier page of the batch frees: a page named twice (its second EWB finds the
    entry invalid) or a slot in a VA page evicted earlier in the batch ends the run. Also
    returns the EPC indices of the pages and of their slots' VA pages."""
    bad, idx, va = _operands_ok(cpu, pas, slots)
    bad |= (cpu.epcm.flags[np.where(idx < 0, 0, idx)] & m.VALID) == 0
    bad |= _later_occurrence(idx, idx)
    bad |= _later_occurrence(idx, va)
    return _first_bad(bad), idx, va


def _ewb_run(cpu: SgxProcessor, epc_pas: Sequence[int], slot_pas: Sequence[int],
             idx: npt.NDArray[np.int64], va: npt.NDArray[np.int64],
             done: list[EvictedPage]) -> None:
    """EWB of the pages :func:`_ewb_run_length` cleared, their EPCM entries read up front and
    freed when the run ends."""
    e = cpu.epcm
    entries = zip(e.flags[idx].tolist(), e.pt[idx].tolist(), e.owner[idx].tolist(),
                  e.bepoch[idx].tolist(), e.linaddr[idx].tolist(), strict=True)
    va_pages = _va_pages(cpu, va)
    p = _Pass(cpu, freed=[])
    try:
        for epc_pa, slot_pa, i, page, v, entry in zip(
                epc_pas, slot_pas, idx.tolist(), cpu.epc_pages(idx), va.tolist(), entries,
                strict=True):
            done.append(_ewb_page(p, i, page, epc_pa, entry, va_pages[v], slot_pa % PAGE_SIZE,
                                  None))
    finally:
        p.finish()


def ewb_pages(cpu: SgxProcessor, epc_pas: Sequence[int],
              va_slot_pas: Sequence[int]) -> list[EvictedPage]:
    """ENCLS[EWB] of each EPC page ``epc_pas[k]`` into the VA slot ``va_slot_pas[k]``, in
    order, with the results returned instead of stored through PAGEINFO (SDM EWB).

    Exactly the leaf sequence (the EWB loop of Linux ``sgx_reclaim_pages``, after its EBLOCKs
    and ETRACK): per-page statuses (SGX_PAGE_NOT_BLOCKED, SGX_NOT_TRACKED, SGX_CHILD_PRESENT
    with no effect; SGX_VA_SLOT_OCCUPIED with CF, the eviction completing), versions from
    :meth:`SgxProcessor.new_version`, EPCM entries freed, children counts, a SECS moving to
    ``cpu.evicted_secs``, pages wiped. A page that would fault (misaligned operands, RCX and
    RDX in one page: #GP; a page outside the EPC or with an invalid EPCM entry, a slot not in
    a valid VA page: #PF) raises :class:`BatchFault` after the pages before it took effect.
    The whole batch runs under ``cpu.lock``. ValueError (nothing done) if the sequences
    differ in length or hold an address that does not fit in 64 bits.
    """
    count = len(epc_pas)
    if len(va_slot_pas) != count:
        raise ValueError("ewb_pages needs one VA slot per EPC page")
    _check_u64("epc_pas", epc_pas)
    _check_u64("va_slot_pas", va_slot_pas)
    pas = np.asarray(epc_pas, dtype=np.uint64)
    slots = np.asarray(va_slot_pas, dtype=np.uint64)
    done: list[EvictedPage] = []
    with cpu.lock:
        k = 0
        while k < count:
            run, idx, va = _ewb_run_length(cpu, pas[k:], slots[k:])
            if run:
                _ewb_run(cpu, epc_pas[k : k + run], va_slot_pas[k : k + run], idx[:run],
                         va[:run], done)
                k += run
            if k < count:
                try:
                    done.append(_ewb_one(cpu, epc_pas[k], va_slot_pas[k], None))
                except SgxFault as fault:
                    raise BatchFault(fault, k, done) from fault
                k += 1
    return done


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """The operands of one ELDB/ELDU, by value: RCX (``epc_pa``, the destination EPC page),
    RDX (``va_slot_pa``, the slot holding the version), PAGEINFO.SECS and PAGEINFO.LINADDR
    (used for REG/TCS/TRIM pages, ignored otherwise), and what EWB produced (the 128-byte
    PCMD image and the 4096-byte ciphertext). ValueError if a length or an address is out of
    range."""

    epc_pa: int
    va_slot_pa: int
    secs_pa: int
    linaddr: int
    pcmd: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if len(self.pcmd) != PCMD.SIZE or len(self.ciphertext) != PAGE_SIZE:
            raise ValueError(f"a LoadRequest needs a {PCMD.SIZE}-byte PCMD and a "
                             f"{PAGE_SIZE}-byte ciphertext")
        _check_u64("LoadRequest", (self.epc_pa, self.va_slot_pa, self.secs_pa, self.linaddr))


def _eld_run_length(cpu: SgxProcessor, requests: Sequence[LoadRequest]
                    ) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64],
                               npt.NDArray[np.int64], list[int], list[bool]]:
    """How many leading requests of an ELD batch pass every ELDB/ELDU check that faults,
    checked against the EPCM as it is before the batch. A batch only makes entries valid, so
    a request that needs an entry an earlier one fills in (a SECS or VA page loaded earlier in
    the batch) ends the run, conservatively, and so does a destination named twice (its second
    load would find the entry valid). Also returns the EPC indices of the destinations, VA
    pages and SECSs, the PCMD.SECINFO.FLAGS values and whether the PCMDs' reserved bytes are
    zero."""
    pas = np.array([r.epc_pa for r in requests], dtype=np.uint64)
    slots = np.array([r.va_slot_pa for r in requests], dtype=np.uint64)
    secs = np.array([r.secs_pa for r in requests], dtype=np.uint64)
    pcmds = np.frombuffer(b"".join([r.pcmd for r in requests]),
                          dtype=np.uint8).reshape(-1, PCMD.SIZE)
    flags = np.ascontiguousarray(pcmds[:, :8]).view("<u8")[:, 0]
    reserved_ok = ~np.any(pcmds & _PCMD_RESERVED, axis=1)
    bad, idx, va = _operands_ok(cpu, pas, slots)
    e = cpu.epcm
    pt = flags >> np.uint64(8)
    bad |= (flags & np.uint64(~SECINFO_FLAGS_VALID & (_U64_LIMIT - 1))) != 0
    bad |= pt > _MAX_PAGE_TYPE
    bad |= (e.flags[np.where(idx < 0, 0, idx)] & m.VALID) != 0
    page_mask = np.uint64(PAGE_SIZE - 1)
    secs_idx = cpu.epc.indices_of(secs & ~page_mask)
    secs_safe = np.where(secs_idx < 0, 0, secs_idx)
    bad_secs = ((secs & page_mask) != 0) | (secs_idx < 0)
    bad_secs |= ((e.flags[secs_safe] & m.VALID) == 0) | (e.pt[secs_safe] != _PT_SECS)
    bad |= np.isin(pt, _CHILD_TYPE_LIST) & bad_secs
    bad |= _later_occurrence(idx, idx)
    return _first_bad(bad), idx, va, secs_idx, flags.tolist(), reserved_ok.tolist()


def _eld_run(cpu: SgxProcessor, requests: Sequence[LoadRequest], idx: npt.NDArray[np.int64],
             va: npt.NDArray[np.int64], secs_idx: npt.NDArray[np.int64], flags: list[int],
             reserved_ok: list[bool], blocked: bool, done: list[LeafStatus]) -> None:
    """ELDB/ELDU of the requests :func:`_eld_run_length` cleared, their EPCM entries written
    when the run ends."""
    va_pages = _va_pages(cpu, va)
    enclaves = cpu.enclaves
    p = _Pass(cpu, blocked, fills=[])
    try:
        for r, i, page, v, s, f, ok in zip(requests, idx.tolist(), cpu.epc_pages(idx),
                                           va.tolist(), secs_idx.tolist(), flags, reserved_ok,
                                           strict=True):
            if f >> 8 in m.CHILD_TYPES:
                owner: EnclaveState | None = enclaves[s]
            else:
                owner, s = None, 0
            done.append(_eld_page(p, i, page, va_pages[v], r.va_slot_pa % PAGE_SIZE, f, s,
                                  owner, r.linaddr, r.pcmd[_PCMD_MAC:], ok, r.ciphertext))
    finally:
        p.finish()


def eld_pages(cpu: SgxProcessor, requests: Sequence[LoadRequest], *,
              blocked: bool) -> list[LeafStatus]:
    """ENCLS[ELDB] (``blocked``) or ENCLS[ELDU] of each request, in order, with the operands
    by value instead of through PAGEINFO/PCMD/SRCPGE (SDM ELDB/ELDU).

    Exactly the leaf sequence: per-page SGX_MAC_COMPARE_FAIL with no effect; on success the
    page is decrypted into the EPC, its EPCM entry filled in (BLOCKED for ELDB of a child
    page), the enclave's children counted, an evicted SECS made resident again and the VA slot
    cleared. A request that would fault (misaligned RCX/RDX/PAGEINFO.SECS, RCX and RDX in one
    page, reserved PCMD.SECINFO.FLAGS bits: #GP; a destination outside the EPC or valid, a
    slot not in a valid VA page, PAGEINFO.SECS not a valid SECS: #PF) raises
    :class:`BatchFault` after the requests before it took effect. The whole batch runs under
    ``cpu.lock``.
    """
    count = len(requests)
    done: list[LeafStatus] = []
    with cpu.lock:
        k = 0
        while k < count:
            rest = requests[k:]
            run, idx, va, secs_idx, flags, reserved_ok = _eld_run_length(cpu, rest)
            if run:
                _eld_run(cpu, rest[:run], idx[:run], va[:run], secs_idx[:run], flags[:run],
                         reserved_ok[:run], blocked, done)
                k += run
            if k < count:
                try:
                    done.append(_eld_one(cpu, requests[k], blocked))
                except SgxFault as fault:
                    raise BatchFault(fault, k, done) from fault
                k += 1
    return done
