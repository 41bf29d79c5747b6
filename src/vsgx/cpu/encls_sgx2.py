"""SGX2 dynamic memory management on the OS side: EAUG, EMODPR, EMODT (SDM Vol. 3D 39.5
"Intel SGX2 instructions" and the leaves' pseudo-code). The enclave completes each change
with EACCEPT (:mod:`vsgx.cpu.enclu`).
"""

from __future__ import annotations

from vsgx.arch import PAGE_SIZE, PAGEINFO, SECINFO, SECINFO_FLAGS_VALID, PageType, SgxError
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import gp, pf
from vsgx.cpu.processor import EnclaveState, LeafResult, LogicalProcessor, SgxProcessor
from vsgx.cpu.status import SUCCESS, error


def eaug(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
         rdx: int) -> LeafResult:
    """ENCLS[EAUG]: add a zeroed, pending PT_REG RW page to an initialised enclave (SDM EAUG)."""
    cpu.require_sgx2("EAUG")
    pageinfo = cpu.read_struct(PAGEINFO, rbx)
    idx = cpu.epc_index(rcx)
    if pageinfo.srcpge or pageinfo.secinfo:
        raise gp("PAGEINFO.SRCPGE and PAGEINFO.SECINFO must be 0 for EAUG")
    if pageinfo.secs % PAGE_SIZE:
        raise gp("PAGEINFO.SECS is not 4 KiB aligned")
    secs_idx = cpu.epc_index(pageinfo.secs)
    state = cpu.secs_of(secs_idx, pageinfo.secs)
    if cpu.epcm.valid(idx):
        raise pf(rcx, "EPC page is already in use")
    if not state.initialized:
        raise gp("EAUG to an enclave that is not initialised")
    la = pageinfo.linaddr
    if la % PAGE_SIZE or not state.in_elrange(la, PAGE_SIZE):
        raise gp(f"PAGEINFO.LINADDR {la:#x} is misaligned or outside ELRANGE")
    cpu.epc.wipe(idx)
    cpu.epcm.set_valid(idx, PageType.PT_REG, m.R | m.W | m.PENDING, owner=secs_idx,
                       linaddr=la)
    state.children += 1
    return LeafResult(SUCCESS)


def _modify_target(cpu: SgxProcessor, rbx: int, rcx: int) -> tuple[SECINFO, int]:
    if rbx % SECINFO.ALIGN or rcx % PAGE_SIZE:
        raise gp("SECINFO must be 64-byte aligned and the EPC page 4 KiB aligned")
    secinfo = cpu.read_struct(SECINFO, rbx)
    if secinfo.flags & ~SECINFO_FLAGS_VALID:
        raise gp(f"SECINFO.FLAGS {secinfo.flags:#x} has reserved bits set")
    return secinfo, cpu.epc_index(rcx)


def _modifiable(cpu: SgxProcessor, idx: int, rcx: int) -> tuple[EnclaveState, int | None]:
    e = cpu.epcm
    if not e.valid(idx) or e.bits(idx) & m.BLOCKED:
        raise pf(rcx, "EPCM entry is invalid or blocked")
    state = cpu.enclaves.get(int(e.owner[idx]))
    if state is None or e.page_type(idx) in (PageType.PT_SECS, PageType.PT_VA):
        raise pf(rcx, "not an enclave page")
    if e.bits(idx) & (m.PENDING | m.MODIFIED):
        return state, SgxError.SGX_PAGE_NOT_MODIFIABLE
    return state, None


def emodpr(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
           rdx: int) -> LeafResult:
    """ENCLS[EMODPR]: restrict a REG page's EPCM permissions (SDM EMODPR)."""
    cpu.require_sgx2("EMODPR")
    secinfo, idx = _modify_target(cpu, rbx, rcx)
    if secinfo.flags & m.W and not secinfo.flags & m.R:
        raise gp("EMODPR to write-only permissions")
    state, code = _modifiable(cpu, idx, rcx)
    if code is not None:
        return LeafResult(error(SgxError(code)))
    if cpu.epcm.page_type(idx) != PageType.PT_REG:
        raise pf(rcx, "EMODPR target is not a PT_REG page")
    if not state.initialized:
        raise gp("EMODPR on an enclave that is not initialised")
    bits = cpu.epcm.bits(idx)
    rwx = bits & secinfo.flags & m.RWX
    cpu.epcm.set_bits(idx, (bits & ~m.RWX) | rwx | m.PR)
    cpu.epcm.mepoch[idx] = state.epoch
    return LeafResult(SUCCESS)


def emodt(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
          rdx: int) -> LeafResult:
    """ENCLS[EMODT]: change a page's type to PT_TCS or PT_TRIM (SDM EMODT)."""
    cpu.require_sgx2("EMODT")
    secinfo, idx = _modify_target(cpu, rbx, rcx)
    new = secinfo.page_type
    if new not in (PageType.PT_TCS, PageType.PT_TRIM):
        raise gp(f"EMODT to page type {new}: only PT_TCS and PT_TRIM are allowed")
    state, code = _modifiable(cpu, idx, rcx)
    if code is not None:
        return LeafResult(error(SgxError(code)))
    old = cpu.epcm.page_type(idx)
    if not (old == PageType.PT_REG or (old == PageType.PT_TCS and new == PageType.PT_TRIM)):
        raise pf(rcx, f"EMODT cannot change page type {old} to {new}")
    if not state.initialized:
        raise gp("EMODT on an enclave that is not initialised")
    cpu.epcm.set_bits(idx, (cpu.epcm.bits(idx) & ~(m.RWX | m.PR)) | m.MODIFIED)
    cpu.epcm.set_type(idx, PageType(new))
    cpu.epcm.mepoch[idx] = state.epoch
    return LeafResult(SUCCESS)
