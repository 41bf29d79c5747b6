"""Enclave-mode ENCLU leaves that need no control transfer: EREPORT, EGETKEY, EACCEPT,
EACCEPTCOPY, EMODPE (SDM Vol. 3D 40.4 "Intel SGX User Leaf Function Reference").

Each leaf has a value-level form (operands as structures, result returned) that the ``vsgx isa``
runner uses, and a register-level form (operands as enclave linear addresses, checked for
alignment, ELRANGE and EPCM permissions) that the execution engine reaches through ENCLU.
"""

from __future__ import annotations

from collections.abc import Callable

from vsgx.arch import (
    KEYPOLICY_DEFINED,
    KEYPOLICY_KSS,
    KEYREQUEST,
    PAGE_SIZE,
    REPORT,
    REPORTBODY,
    SECINFO,
    SECINFO_FLAGS_VALID,
    TARGETINFO,
    TCS,
    AttributesFlags,
    EncluLeaf,
    KeyName,
    PageType,
    SgxError,
    StructError,
    TcsFlags,
)
from vsgx.cpu import epcm as m
from vsgx.cpu.encls_paging import tracked
from vsgx.cpu.fault import gp, pf
from vsgx.cpu.processor import (
    EnclaveContext,
    EnclaveState,
    LeafResult,
    SgxProcessor,
    cpusvn_beyond,
)
from vsgx.cpu.status import SUCCESS, LeafStatus, error
from vsgx.crypto import (
    derive_key,
    egetkey_dependencies,
    report_key_dependencies,
    report_mac,
)

REPORTDATA_SIZE = 64
REPORTDATA_ALIGN = 128
KEY_SIZE = 16


def _enclave(cpu: SgxProcessor, ctx: EnclaveContext) -> EnclaveState:
    return cpu.enclaves[ctx.secs]


def _parse(cls: type[KEYREQUEST] | type[TARGETINFO] | type[SECINFO],
           raw: bytes) -> KEYREQUEST | TARGETINFO | SECINFO:
    try:
        return cls.from_bytes(raw)
    except StructError as exc:
        raise gp(str(exc)) from None


# -- EREPORT ---------------------------------------------------------------------------------

def report(cpu: SgxProcessor, ctx: EnclaveContext, target: TARGETINFO,
           reportdata: bytes) -> REPORT:
    """EREPORT's result: the current enclave's identity, MACed with the target's REPORT key
    (SDM EREPORT)."""
    if len(reportdata) != REPORTDATA_SIZE:
        raise ValueError("REPORTDATA is 64 bytes")
    state = _enclave(cpu, ctx)
    s = state.secs
    body = REPORTBODY(
        cpusvn=cpu.platform.cpusvn, miscselect=s.miscselect, isvextprodid=state.isvextprodid,
        attributes=s.attributes, mrenclave=s.mrenclave, mrsigner=s.mrsigner,
        configid=s.configid, isvprodid=s.isvprodid, isvsvn=s.isvsvn, configsvn=s.configsvn,
        isvfamilyid=state.isvfamilyid, reportdata=reportdata,
    )
    keyid = cpu.boot.report_keyid
    key = derive_key(cpu.platform,
                     report_key_dependencies(target, state.padding, cpu.platform, keyid))
    raw_body = body.to_bytes()
    return REPORT(body=body, keyid=keyid, mac=report_mac(key, raw_body))


def enclu_ereport(cpu: SgxProcessor, ctx: EnclaveContext, rbx: int, rcx: int,
                  rdx: int) -> LeafResult:
    """ENCLU[EREPORT]: RBX = TARGETINFO, RCX = REPORTDATA, RDX = output REPORT."""
    state = _enclave(cpu, ctx)
    if rbx % TARGETINFO.ALIGN or rcx % REPORTDATA_ALIGN or rdx % REPORT.ALIGN:
        raise gp("EREPORT operands are misaligned")
    for addr, size in ((rbx, TARGETINFO.SIZE), (rcx, REPORTDATA_SIZE), (rdx, REPORT.SIZE)):
        if not state.in_elrange(addr, size):
            raise gp(f"EREPORT operand {addr:#x} is outside ELRANGE")
    target = _parse(TARGETINFO, cpu.enclave_read(ctx, rbx, TARGETINFO.SIZE, TARGETINFO.ALIGN))
    assert isinstance(target, TARGETINFO)
    data = cpu.enclave_read(ctx, rcx, REPORTDATA_SIZE, REPORTDATA_ALIGN)
    cpu.enclave_page(ctx, rdx, write=True)
    out = report(cpu, ctx, target, data)
    cpu.enclave_write(ctx, rdx, out.to_bytes(), REPORT.ALIGN)
    return LeafResult(SUCCESS)


# -- EGETKEY ---------------------------------------------------------------------------------


def getkey(cpu: SgxProcessor, ctx: EnclaveContext,
           request: KEYREQUEST) -> tuple[LeafStatus, bytes | None]:
    """EGETKEY's result: a status and, on success, the 16-byte key (SDM EGETKEY)."""
    state = _enclave(cpu, ctx)
    s = state.secs
    kss = bool(s.attributes.flags & AttributesFlags.KSS)
    if request.keypolicy & ~KEYPOLICY_DEFINED:
        raise gp(f"KEYREQUEST.KEYPOLICY {request.keypolicy:#x} has reserved bits set")
    if not kss and (request.keypolicy & KEYPOLICY_KSS or request.configsvn):
        raise gp("KEYPOLICY KSS bits and CONFIGSVN need ATTRIBUTES.KSS")
    name = request.keyname
    if name > max(KeyName):
        return error(SgxError.SGX_INVALID_KEYNAME), None
    if name == KeyName.EINITTOKEN_KEY and not s.attributes.flags & AttributesFlags.EINITTOKEN_KEY:
        return error(SgxError.SGX_INVALID_ATTRIBUTE), None
    if name in (KeyName.PROVISION_KEY, KeyName.PROVISION_SEAL_KEY) and \
            not s.attributes.flags & AttributesFlags.PROVISIONKEY:
        return error(SgxError.SGX_INVALID_ATTRIBUTE), None
    if name != KeyName.REPORT_KEY:
        if request.isvsvn > s.isvsvn:
            return error(SgxError.SGX_INVALID_ISVSVN), None
        if name in (KeyName.SEAL_KEY, KeyName.PROVISION_SEAL_KEY) and \
                request.configsvn > s.configsvn:
            return error(SgxError.SGX_INVALID_ISVSVN), None
        if cpusvn_beyond(request.cpusvn, cpu.platform.cpusvn):
            return error(SgxError.SGX_INVALID_CPUSVN), None
    deps = egetkey_dependencies(request, state.identity(), cpu.platform, cpu.boot)
    return SUCCESS, derive_key(cpu.platform, deps)


def enclu_egetkey(cpu: SgxProcessor, ctx: EnclaveContext, rbx: int, rcx: int,
                  rdx: int) -> LeafResult:
    """ENCLU[EGETKEY]: RBX = KEYREQUEST, RCX = 16-byte output (left unchanged on error)."""
    state = _enclave(cpu, ctx)
    if rbx % KEYREQUEST.ALIGN or rcx % KEY_SIZE:
        raise gp("EGETKEY operands are misaligned")
    if not state.in_elrange(rbx, KEYREQUEST.SIZE) or not state.in_elrange(rcx, KEY_SIZE):
        raise gp("EGETKEY operand outside ELRANGE")
    request = _parse(KEYREQUEST, cpu.enclave_read(ctx, rbx, KEYREQUEST.SIZE, KEYREQUEST.ALIGN))
    assert isinstance(request, KEYREQUEST)
    cpu.enclave_page(ctx, rcx, write=True)
    status, key = getkey(cpu, ctx, request)
    if key is not None:
        cpu.enclave_write(ctx, rcx, key, KEY_SIZE)
    return LeafResult(status)


# -- EACCEPT / EACCEPTCOPY / EMODPE ----------------------------------------------------------

def _target_page(cpu: SgxProcessor, ctx: EnclaveContext, la: int) -> int:
    """EPC index of an enclave page named by a SGX2 leaf, before permission checks."""
    state = _enclave(cpu, ctx)
    if la % PAGE_SIZE or not state.in_elrange(la):
        raise gp(f"page address {la:#x} is misaligned or outside ELRANGE")
    idx = cpu.walk(ctx, la)
    e = cpu.epcm
    if (idx is None or not e.valid(idx) or e.bits(idx) & m.BLOCKED
            or int(e.owner[idx]) != ctx.secs
            or e.page_type(idx) in (PageType.PT_SECS, PageType.PT_VA)):
        raise pf(la, "EPCM entry is not a page of this enclave")
    return idx


def _check_secinfo(secinfo: SECINFO) -> None:
    if secinfo.flags & ~SECINFO_FLAGS_VALID:
        raise gp(f"SECINFO.FLAGS {secinfo.flags:#x} has reserved bits set")


def accept(cpu: SgxProcessor, ctx: EnclaveContext, secinfo: SECINFO, la: int) -> LeafStatus:
    """EACCEPT: the enclave acknowledges an EAUG, EMODPR or EMODT of the page at ``la``
    (SDM EACCEPT)."""
    cpu.require_sgx2("EACCEPT")
    _check_secinfo(secinfo)
    idx = _target_page(cpu, ctx, la)
    f = secinfo.flags
    pt = secinfo.page_type
    reg_ok = pt == PageType.PT_REG and bool(f & (m.PR | m.PENDING)) and not f & m.MODIFIED
    mod_ok = (pt in (PageType.PT_TCS, PageType.PT_TRIM) and bool(f & m.MODIFIED)
              and not f & (m.PENDING | m.PR))
    if not (reg_ok or mod_ok):
        raise gp(f"SECINFO {f:#x} is not an acceptable EACCEPT request")
    e = cpu.epcm
    state = _enclave(cpu, ctx)
    bits = e.bits(idx)
    compared = m.RWX | m.PENDING | m.MODIFIED
    if (int(e.linaddr[idx]) != la or e.page_type(idx) != pt
            or bits & compared != f & compared):
        return error(SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH)
    if bits & (m.PR | m.MODIFIED) and not tracked(state, int(e.mepoch[idx])):
        return error(SgxError.SGX_NOT_TRACKED)
    if pt == PageType.PT_TCS:
        _check_accepted_tcs(bytes(cpu.epc.page(idx)))
    e.set_bits(idx, bits & ~(m.PENDING | m.MODIFIED | m.PR))
    return SUCCESS


def _check_accepted_tcs(raw: bytes) -> None:
    """A page becoming a TCS must hold a valid, inactive TCS (SDM EACCEPT, #GP conditions)."""
    try:
        tcs = TCS.from_bytes(raw)
    except StructError as exc:
        raise gp(str(exc)) from None
    if tcs.flags & ~int(TcsFlags.AEXNOTIFY):
        raise gp("a new TCS may not set DBGOPTIN or reserved TCS.FLAGS bits")
    if tcs.state or tcs.aep or tcs.cssa >= tcs.nssa:
        raise gp("a new TCS must be inactive with CSSA < NSSA and AEP 0")


def accept_copy(cpu: SgxProcessor, ctx: EnclaveContext, secinfo: SECINFO, dest: int,
                src: int) -> LeafStatus:
    """EACCEPTCOPY: initialise a pending EAUG page with a copy of another enclave page and
    set its permissions (SDM EACCEPTCOPY)."""
    cpu.require_sgx2("EACCEPTCOPY")
    _check_secinfo(secinfo)
    if secinfo.page_type != PageType.PT_REG or secinfo.flags & (m.PENDING | m.MODIFIED | m.PR):
        raise gp("EACCEPTCOPY needs a PT_REG SECINFO without PENDING/MODIFIED/PR")
    if secinfo.flags & m.W and not secinfo.flags & m.R:
        raise gp("EACCEPTCOPY to write-only permissions")
    if src % PAGE_SIZE:
        raise gp(f"source {src:#x} is not 4 KiB aligned")
    src_idx = cpu.enclave_page(ctx, src)
    idx = _target_page(cpu, ctx, dest)
    e = cpu.epcm
    want = m.R | m.W | m.PENDING
    if (int(e.linaddr[idx]) != dest or e.page_type(idx) != PageType.PT_REG
            or e.bits(idx) & m.SECINFO_BITS != want):
        return error(SgxError.SGX_PAGE_ATTRIBUTES_MISMATCH)
    cpu.epc.page(idx)[:] = cpu.epc.page(src_idx)
    e.set_bits(idx, secinfo.flags & m.RWX)
    return SUCCESS


def modpe(cpu: SgxProcessor, ctx: EnclaveContext, secinfo: SECINFO, la: int) -> None:
    """EMODPE: extend a REG page's EPCM permissions (SDM EMODPE); it reports no status."""
    cpu.require_sgx2("EMODPE")
    _check_secinfo(secinfo)
    if secinfo.flags & m.W and not secinfo.flags & m.R:
        raise gp("EMODPE to write-only permissions")
    idx = _target_page(cpu, ctx, la)
    e = cpu.epcm
    if (e.page_type(idx) != PageType.PT_REG or int(e.linaddr[idx]) != la
            or e.bits(idx) & (m.PENDING | m.MODIFIED)):
        raise pf(la, "EMODPE target is not an accepted PT_REG page")
    e.set_bits(idx, e.bits(idx) | (secinfo.flags & m.RWX))


def _secinfo_operand(cpu: SgxProcessor, ctx: EnclaveContext, rbx: int) -> SECINFO:
    secinfo = _parse(SECINFO, cpu.enclave_read(ctx, rbx, SECINFO.SIZE, SECINFO.ALIGN))
    assert isinstance(secinfo, SECINFO)
    return secinfo


def enclu_eaccept(cpu: SgxProcessor, ctx: EnclaveContext, rbx: int, rcx: int,
                  rdx: int) -> LeafResult:
    """ENCLU[EACCEPT]: RBX = SECINFO, RCX = the page."""
    return LeafResult(accept(cpu, ctx, _secinfo_operand(cpu, ctx, rbx), rcx))


def enclu_eacceptcopy(cpu: SgxProcessor, ctx: EnclaveContext, rbx: int, rcx: int,
                      rdx: int) -> LeafResult:
    """ENCLU[EACCEPTCOPY]: RBX = SECINFO, RCX = destination, RDX = source."""
    return LeafResult(accept_copy(cpu, ctx, _secinfo_operand(cpu, ctx, rbx), rcx, rdx))


def enclu_emodpe(cpu: SgxProcessor, ctx: EnclaveContext, rbx: int, rcx: int,
                 rdx: int) -> LeafResult:
    """ENCLU[EMODPE]: RBX = SECINFO, RCX = the page."""
    modpe(cpu, ctx, _secinfo_operand(cpu, ctx, rbx), rcx)
    return LeafResult(SUCCESS)


EncluHandler = Callable[[SgxProcessor, EnclaveContext, int, int, int], LeafResult]

ENCLU_LEAVES: dict[int, EncluHandler] = {
    EncluLeaf.EREPORT: enclu_ereport,
    EncluLeaf.EGETKEY: enclu_egetkey,
    EncluLeaf.EACCEPT: enclu_eaccept,
    EncluLeaf.EACCEPTCOPY: enclu_eacceptcopy,
    EncluLeaf.EMODPE: enclu_emodpe,
}
"""Enclave-mode ENCLU leaves handled here; EENTER/ERESUME/EEXIT transfer control and belong to
the execution engine."""
