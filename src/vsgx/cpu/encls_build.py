"""Enclave construction and teardown: ECREATE, EADD, EEXTEND, EINIT, EREMOVE
(SDM Vol. 3D 40.3 "Intel SGX Instruction Reference", pseudo-code of each leaf).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from vsgx.arch import (
    EEXTEND_CHUNK,
    EINITTOKEN,
    GPRSGX,
    HARDCODED_PKCS1_5_PADDING,
    PAGE_SIZE,
    PAGEINFO,
    SECINFO,
    SECINFO_FLAGS_VALID,
    SECS,
    SIGSTRUCT,
    SIGSTRUCT_EXPONENT,
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
    SIGSTRUCT_VENDORS,
    TCS,
    XFRM_LEGACY,
    AttributesFlags,
    MiscSelect,
    PageType,
    SgxError,
    StructError,
    TcsFlags,
)
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import gp, pf
from vsgx.cpu.processor import (
    EnclaveState,
    LeafResult,
    LogicalProcessor,
    SgxProcessor,
    cpusvn_beyond,
)
from vsgx.cpu.status import SUCCESS, error
from vsgx.crypto import (
    MeasurementBuilder,
    derive_key,
    einittoken_dependencies,
    einittoken_mac,
    mrsigner,
    verify_sigstruct,
)

# XSAVE standard-format component (offset, size) by XCR0 bit (SDM Vol. 1 13.4, CPUID.0DH).
_XSAVE_COMPONENTS = {
    2: (576, 256), 3: (960, 64), 4: (1024, 64), 5: (1088, 64), 6: (1152, 512),
    7: (1664, 1024), 9: (2688, 8), 17: (2752, 64), 18: (2816, 8192),
}
_XSAVE_LEGACY_SIZE = 576  # legacy region (512) + XSAVE header (64)


def xsave_size(xfrm: int) -> int:
    """Size of the XSAVE area for the features in ``xfrm`` (standard format)."""
    end = _XSAVE_LEGACY_SIZE
    for bit, (offset, size) in _XSAVE_COMPONENTS.items():
        if xfrm >> bit & 1:
            end = max(end, offset + size)
    return end


def ssa_frame_bytes_needed(xfrm: int, miscselect: int) -> int:
    """Minimum SSA frame size: XSAVE area + MISC region + GPRSGX (SDM 38.9)."""
    misc = 16 if miscselect & MiscSelect.EXINFO else 0
    return xsave_size(xfrm) + misc + GPRSGX.SIZE


def _read_pageinfo(cpu: SgxProcessor, rbx: int) -> PAGEINFO:
    return cpu.read_struct(PAGEINFO, rbx)


def _read_secinfo(cpu: SgxProcessor, addr: int) -> SECINFO:
    secinfo = cpu.read_struct(SECINFO, addr)
    if secinfo.flags & ~SECINFO_FLAGS_VALID:
        raise gp(f"SECINFO.FLAGS {secinfo.flags:#x} has reserved bits set")
    if secinfo.page_type > max(PageType):
        raise gp(f"SECINFO page type {secinfo.page_type} is reserved")
    return secinfo


def _check_new_secs(cpu: SgxProcessor, secs: SECS) -> None:
    """ECREATE's checks on the SECS image (SDM ECREATE, #GP conditions)."""
    f = cpu.features
    size, base = secs.size, secs.baseaddr
    flags = secs.attributes.flags
    if size < 2 * PAGE_SIZE or size & (size - 1):
        raise gp(f"SECS.SIZE {size:#x} is not a power of two of at least 8 KiB")
    if base & (size - 1):
        raise gp(f"SECS.BASEADDR {base:#x} is not naturally aligned to SECS.SIZE {size:#x}")
    if flags & AttributesFlags.MODE64BIT:
        if size > 1 << f.max_enclave_size_64:
            raise gp(f"SECS.SIZE {size:#x} exceeds the maximum enclave size "
                     f"2^{f.max_enclave_size_64}")
        if base + size > 1 << 64 or not _canonical(base) or not _canonical(base + size - 1):
            raise gp("ELRANGE is not canonical")
    elif base + size > 1 << 32:
        raise gp("a 32-bit enclave's ELRANGE must lie below 4 GiB")
    supported = f.attributes_supported
    if flags & AttributesFlags.INIT:
        raise gp("SECS.ATTRIBUTES.INIT must be 0 at ECREATE")
    if flags & ~supported.flags:
        raise gp(f"SECS.ATTRIBUTES.FLAGS {flags:#x} sets bits this processor does not support "
                 f"(allowed {supported.flags:#x})")
    xfrm = secs.attributes.xfrm
    if xfrm & XFRM_LEGACY != XFRM_LEGACY:
        raise gp(f"SECS.ATTRIBUTES.XFRM {xfrm:#x} must have bits 0 and 1 set")
    if xfrm & ~supported.xfrm:
        raise gp(f"SECS.ATTRIBUTES.XFRM {xfrm:#x} is not supported (allowed {supported.xfrm:#x})")
    if secs.miscselect & ~f.miscselect_supported:
        raise gp(f"SECS.MISCSELECT {secs.miscselect:#x} is not supported")
    if not flags & AttributesFlags.KSS and (any(secs.configid) or secs.configsvn):
        raise gp("SECS.CONFIGID/CONFIGSVN need ATTRIBUTES.KSS")
    need = ssa_frame_bytes_needed(xfrm, secs.miscselect)
    if secs.ssaframesize == 0 or secs.ssaframesize * PAGE_SIZE < need:
        raise gp(f"SECS.SSAFRAMESIZE {secs.ssaframesize} page(s) cannot hold an SSA frame of "
                 f"{need} bytes")


def _canonical(addr: int) -> bool:
    top = addr >> 47
    return top == 0 or top == (1 << 17) - 1


def ecreate(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
            rdx: int) -> LeafResult:
    """ENCLS[ECREATE]: turn a free EPC page into the SECS of a new enclave (SDM ECREATE)."""
    pageinfo = _read_pageinfo(cpu, rbx)
    idx = cpu.epc_index(rcx)
    if pageinfo.srcpge % PAGE_SIZE or pageinfo.secinfo % SECINFO.ALIGN:
        raise gp("PAGEINFO.SRCPGE or PAGEINFO.SECINFO is misaligned")
    if pageinfo.linaddr or pageinfo.secs:
        raise gp("PAGEINFO.LINADDR and PAGEINFO.SECS must be 0 for ECREATE")
    secinfo = _read_secinfo(cpu, pageinfo.secinfo)
    if secinfo.page_type != PageType.PT_SECS:
        raise gp("SECINFO page type must be PT_SECS for ECREATE")
    raw = cpu.read(pageinfo.srcpge, PAGE_SIZE)
    try:
        secs = SECS.from_bytes(raw)
    except StructError as exc:
        raise gp(str(exc)) from None
    _check_new_secs(cpu, secs)
    if cpu.epcm.valid(idx):
        raise pf(rcx, "EPC page is already in use")
    secs = secs.replace(mrenclave=bytes(32), mrsigner=bytes(32), isvprodid=0, isvsvn=0)
    builder = MeasurementBuilder()
    builder.ecreate(secs.ssaframesize, secs.size)
    state = EnclaveState(eid=cpu.new_eid(), secs=secs, builder=builder)
    cpu.enclaves[idx] = state
    cpu.store_secs(idx, state)
    cpu.epcm.set_valid(idx, PageType.PT_SECS, 0)
    return LeafResult(SUCCESS)


def _check_tcs(state: EnclaveState, raw: bytes) -> bytes:
    """EADD's TCS checks; returns the page as EADD stores it (STATE, CSSA, AEP, DBGOPTIN = 0)."""
    try:
        tcs = TCS.from_bytes(raw)
    except StructError as exc:
        raise gp(str(exc)) from None
    if tcs.flags & ~int(TcsFlags.DBGOPTIN | TcsFlags.AEXNOTIFY):
        raise gp(f"TCS.FLAGS {tcs.flags:#x} has reserved bits set")
    if not state.secs.attributes.flags & AttributesFlags.MODE64BIT and (
            tcs.fslimit & 0xFFF != 0xFFF or tcs.gslimit & 0xFFF != 0xFFF):
        raise gp("TCS.FSLIMIT/GSLIMIT must end in 0xFFF for a 32-bit enclave")
    flags = tcs.flags & ~int(TcsFlags.DBGOPTIN)
    return tcs.replace(state=0, cssa=0, aep=0, flags=flags).to_bytes()


def _eadd_target(cpu: SgxProcessor, pageinfo: PAGEINFO, rcx: int) -> tuple[int, EnclaveState]:
    idx = cpu.epc_index(rcx)
    if pageinfo.srcpge % PAGE_SIZE or pageinfo.secinfo % SECINFO.ALIGN or \
            pageinfo.secs % PAGE_SIZE:
        raise gp("PAGEINFO.SRCPGE, SECINFO or SECS is misaligned")
    return idx, cpu.secs_of(cpu.epc_index(pageinfo.secs), pageinfo.secs)


def eadd(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
         rdx: int) -> LeafResult:
    """ENCLS[EADD]: copy a page into the EPC as a REG or TCS page of an uninitialised enclave
    and extend MRENCLAVE with its offset and SECINFO (SDM EADD)."""
    pageinfo = _read_pageinfo(cpu, rbx)
    idx, state = _eadd_target(cpu, pageinfo, rcx)
    secinfo = _read_secinfo(cpu, pageinfo.secinfo)
    pt = secinfo.page_type
    if pt not in (PageType.PT_REG, PageType.PT_TCS):
        raise gp(f"EADD page type must be PT_REG or PT_TCS, not {pt}")
    if pt == PageType.PT_REG and secinfo.flags & m.W and not secinfo.flags & m.R:
        raise gp("EADD of a writable page that is not readable")
    raw = cpu.read(pageinfo.srcpge, PAGE_SIZE)
    if cpu.epcm.valid(idx):
        raise pf(rcx, "EPC page is already in use")
    if state.initialized:
        raise gp("EADD to an initialised enclave")
    la = pageinfo.linaddr
    if la % PAGE_SIZE or not state.in_elrange(la, PAGE_SIZE):
        raise gp(f"PAGEINFO.LINADDR {la:#x} is misaligned or outside ELRANGE")
    if pt == PageType.PT_TCS:
        raw = _check_tcs(state, raw)
        bits = 0
    else:
        bits = secinfo.flags & m.RWX
    cpu.epc.page(idx)[:] = raw
    secs_idx = cpu.epc_index(pageinfo.secs)
    cpu.epcm.set_valid(idx, PageType(pt), bits, owner=secs_idx, linaddr=la)
    state.children += 1
    state.builder.eadd(la - state.base, secinfo.flags)
    return LeafResult(SUCCESS)


def _eextend_target(cpu: SgxProcessor, rbx: int, rcx: int) -> tuple[EnclaveState, int]:
    """EEXTEND's checks on the chunk at ``rcx`` (SDM EEXTEND): the enclave's state and the
    EPC index of the chunk's page."""
    if rcx % EEXTEND_CHUNK:
        raise gp(f"EEXTEND address {rcx:#x} is not 256-byte aligned")
    secs_idx = cpu.epc_index(rbx)
    idx = cpu.epc_index(rcx, align=EEXTEND_CHUNK)
    e = cpu.epcm
    if not e.valid(idx) or e.page_type(idx) not in (PageType.PT_REG, PageType.PT_TCS) \
            or int(e.owner[idx]) != secs_idx:
        raise pf(rcx, "EEXTEND target is not a REG/TCS page of this enclave")
    state = cpu.secs_of(secs_idx, rbx)
    if state.initialized:
        raise gp("EEXTEND on an initialised enclave")
    return state, idx


def _extend(cpu: SgxProcessor, state: EnclaveState, idx: int, chunks: range) -> None:
    """Hash EEXTEND's records for the chunks (byte offsets within the page) of EPC page
    ``idx``."""
    offset = int(cpu.epcm.linaddr[idx]) - state.base
    page = cpu.epc.page(idx)
    for chunk in chunks:
        state.builder.eextend(offset + chunk, page[chunk:chunk + EEXTEND_CHUNK])


def eextend(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
            rdx: int) -> LeafResult:
    """ENCLS[EEXTEND]: extend MRENCLAVE with 256 bytes of an EPC page (SDM EEXTEND)."""
    state, idx = _eextend_target(cpu, rbx, rcx)
    off = rcx % PAGE_SIZE
    _extend(cpu, state, idx, range(off, off + EEXTEND_CHUNK, EEXTEND_CHUNK))
    return LeafResult(SUCCESS)


def eextend_page(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int,
                 page_pa: int) -> LeafResult:
    """The sixteen ENCLS[EEXTEND]s that measure the whole EPC page at ``page_pa``, chunk by
    chunk in address order, as Linux's ``sgx_encl_extend`` issues them. Every chunk of one
    page passes or fails the same checks, so they are made once (raising the first leaf's
    exact fault) and the sixteen records are hashed after them (SDM EEXTEND)."""
    state, idx = _eextend_target(cpu, rbx, page_pa)
    _extend(cpu, state, idx, range(0, PAGE_SIZE, EEXTEND_CHUNK))
    return LeafResult(SUCCESS)


_MEASURE_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vsgx-measure")
"""Hashes a batch's measurement records while the pages are copied into the EPC (hashlib and
numpy release the GIL); the batch waits for it, so the leaves stay atomic."""
_PARALLEL_MIN_PAGES = 64


def add_pages(cpu: SgxProcessor, secs_pa: int, epc_pas: Sequence[int], linaddrs: Sequence[int],
              secinfo_flags: int, data: bytes | memoryview, measure: bool) -> None:
    """EADD of PT_REG pages, each followed by the 16 EEXTENDs that measure it when ``measure``.

    Exactly the leaf-by-leaf sequence (Linux ``sgx_encl_add_page`` + ``sgx_encl_extend``), run
    as one batch: the checks are vectorised and the measurement records are hashed together.
    On the first page that would fault, the pages before it are committed and measured, and
    the fault is raised by replaying that page through the single-page leaves.
    """
    count = len(epc_pas)
    view = memoryview(data).cast("B")
    if len(linaddrs) != count or len(view) != count * PAGE_SIZE:
        raise ValueError("add_pages needs one linear address and 4 KiB of data per EPC page")
    if count == 0:
        return
    pas = np.asarray(epc_pas, dtype=np.uint64)
    las = np.asarray(linaddrs, dtype=np.uint64)
    with cpu.lock:
        idx = cpu.epc.indices_of(pas)
        good = _add_pages_prefix(cpu, secs_pa, pas, las, idx, secinfo_flags)
        if good:
            state = cpu.enclaves[cpu.epc_index(secs_pa)]
            pages = np.frombuffer(view, dtype=np.uint8).reshape(count, PAGE_SIZE)[:good]
            offsets = las[:good] - np.uint64(state.base)
            measuring = (_MEASURE_WORKER.submit(state.builder.add_pages, offsets,
                                                secinfo_flags, view[: good * PAGE_SIZE],
                                                measure)
                         if good >= _PARALLEL_MIN_PAGES else None)
            cpu.epc.write_pages(idx[:good], pages)
            bits = np.full(good, secinfo_flags & m.RWX, dtype=np.uint16)
            cpu.epcm.set_valid_many(idx[:good], PageType.PT_REG, bits,
                                    cpu.epc_index(secs_pa), las[:good])
            state.children += good
            if measuring is None:
                state.builder.add_pages(offsets, secinfo_flags, view[: good * PAGE_SIZE],
                                        measure)
            else:
                measuring.result()
        if good < count:
            _replay_one(cpu, secs_pa, epc_pas[good], linaddrs[good], secinfo_flags,
                        view[good * PAGE_SIZE : (good + 1) * PAGE_SIZE], measure)
            # The single-page leaves succeeded where the batch checks were conservative:
            add_pages(cpu, secs_pa, epc_pas[good + 1 :], linaddrs[good + 1 :], secinfo_flags,
                      view[(good + 1) * PAGE_SIZE :], measure)


def _add_pages_prefix(cpu: SgxProcessor, secs_pa: int, pas: npt.NDArray[np.uint64],
                      las: npt.NDArray[np.uint64], idx: npt.NDArray[np.int64],
                      secinfo_flags: int) -> int:
    """How many leading pages of a batch pass every EADD check (0 if the batch-wide checks
    fail, so the first page is replayed and raises the exact fault)."""
    secs_idx = cpu.epc.index_of(secs_pa)
    if (secs_pa % PAGE_SIZE or secs_idx is None or not cpu.epcm.valid(secs_idx)
            or cpu.epcm.page_type(secs_idx) != PageType.PT_SECS):
        return 0
    state = cpu.enclaves[secs_idx]
    pt = (secinfo_flags >> 8) & 0xFF
    if (state.initialized or pt != PageType.PT_REG or secinfo_flags & ~SECINFO_FLAGS_VALID
            or (secinfo_flags & m.W and not secinfo_flags & m.R)):
        return 0
    page_mask = np.uint64(PAGE_SIZE - 1)
    bad = (pas & page_mask) != 0
    bad |= idx < 0
    bad |= (las & page_mask) != 0
    bad |= las < np.uint64(state.base)
    bad |= las > np.uint64(state.base + state.size - PAGE_SIZE)
    safe = np.where(idx < 0, 0, idx)
    bad |= (cpu.epcm.flags[safe] & m.VALID) != 0
    # A page named twice: its second occurrence would find the EPCM entry valid.
    order = np.argsort(idx, kind="stable")
    repeated = np.zeros(idx.shape, dtype=bool)
    repeated[order[1:]] = idx[order[1:]] == idx[order[:-1]]
    bad |= repeated
    return int(np.argmax(bad)) if bad.any() else len(idx)


def _replay_one(cpu: SgxProcessor, secs_pa: int, epc_pa: int, la: int, secinfo_flags: int,
                page: memoryview, measure: bool) -> None:
    """Run one page through EADD and EEXTEND with operands in a private scratch memory."""
    from vsgx.cpu.memory import SparseMemory

    scratch = SparseMemory()
    scratch.map(0, 3 * PAGE_SIZE)
    scratch.write(0, PAGEINFO(linaddr=la, srcpge=PAGE_SIZE, secinfo=2 * PAGE_SIZE,
                              secs=secs_pa).to_bytes())
    scratch.write(PAGE_SIZE, page)
    scratch.write(2 * PAGE_SIZE, SECINFO(secinfo_flags).to_bytes())
    saved, cpu.memory = cpu.memory, scratch
    try:
        proc = cpu.lps[0]
        eadd(cpu, proc, 0, epc_pa, 0)
        if measure:
            for off in range(0, PAGE_SIZE, EEXTEND_CHUNK):
                eextend(cpu, proc, secs_pa, epc_pa + off, 0)
    finally:
        cpu.memory = saved


def _sigstruct_malformed(sig: SIGSTRUCT, raw: bytes) -> bool:
    return (sig.header != SIGSTRUCT_HEADER or sig.vendor not in SIGSTRUCT_VENDORS
            or sig.header2 != SIGSTRUCT_HEADER2 or sig.exponent != SIGSTRUCT_EXPONENT
            or SIGSTRUCT.reserved_nonzero(raw) is not None)



def einit(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
          rdx: int) -> LeafResult:
    """ENCLS[EINIT]: verify SIGSTRUCT and launch authorisation, then mark the enclave
    initialised (SDM EINIT, checks in the pseudo-code's order)."""
    if rbx % SIGSTRUCT.ALIGN or rcx % PAGE_SIZE or rdx % EINITTOKEN.ALIGN:
        raise gp("SIGSTRUCT/SECS must be 4 KiB aligned and EINITTOKEN 512-byte aligned")
    secs_idx = cpu.epc_index(rcx)
    raw_sig = cpu.read(rbx, SIGSTRUCT.SIZE)
    sig = SIGSTRUCT.from_bytes(raw_sig, strict=False)
    raw_token = cpu.read(rdx, EINITTOKEN.SIZE)
    token = EINITTOKEN.from_bytes(raw_token, strict=False)
    if _sigstruct_malformed(sig, raw_sig):
        return LeafResult(error(SgxError.SGX_INVALID_SIG_STRUCT))
    if not verify_sigstruct(sig):
        return LeafResult(error(SgxError.SGX_INVALID_SIGNATURE))
    state = cpu.secs_of(secs_idx, rcx)
    if state.initialized:
        raise gp("EINIT on an initialised enclave")
    secs = state.secs
    kss = bool(secs.attributes.flags & AttributesFlags.KSS)
    if not kss and any(sig.isvfamilyid):
        return LeafResult(error(SgxError.SGX_INVALID_SIG_STRUCT))
    mrenclave = state.builder.digest()
    if mrenclave != sig.enclavehash:
        return LeafResult(error(SgxError.SGX_INVALID_MEASUREMENT))
    signer = mrsigner(sig.modulus)
    lehash = proc.msrs.lepubkeyhash_bytes()
    if secs.attributes.flags & AttributesFlags.EINITTOKEN_KEY and signer != lehash:
        return LeafResult(error(SgxError.SGX_INVALID_ATTRIBUTE))
    if (secs.attributes & sig.attributemask) != (sig.attributes & sig.attributemask):
        return LeafResult(error(SgxError.SGX_INVALID_ATTRIBUTE))
    if secs.miscselect & sig.miscmask != sig.miscselect & sig.miscmask:
        return LeafResult(error(SgxError.SGX_INVALID_ATTRIBUTE))
    if not token.valid & 1:
        if signer != lehash:
            return LeafResult(error(SgxError.SGX_INVALID_EINITTOKEN))
    else:
        status = _check_token(cpu, token, raw_token, secs, mrenclave, signer, lehash)
        if status is not None:
            return LeafResult(error(status))
    state.secs = secs.replace(
        mrenclave=mrenclave, mrsigner=signer, isvprodid=sig.isvprodid, isvsvn=sig.isvsvn,
        attributes=secs.attributes.replace(flags=secs.attributes.flags | AttributesFlags.INIT),
    )
    state.isvfamilyid = sig.isvfamilyid
    state.isvextprodid = sig.isvextprodid
    state.padding = HARDCODED_PKCS1_5_PADDING
    state.initialized = True
    cpu.store_secs(secs_idx, state)
    return LeafResult(SUCCESS)


def _check_token(cpu: SgxProcessor, token: EINITTOKEN, raw: bytes, secs: SECS,
                 mrenclave: bytes, signer: bytes, lehash: bytes) -> SgxError | None:
    """The EINITTOKEN path of EINIT (launch enclave authorisation, SDM EINIT)."""
    if token.valid & ~1 or EINITTOKEN.reserved_nonzero(raw) is not None:
        return SgxError.SGX_INVALID_EINITTOKEN
    if token.maskedattributesle.flags & AttributesFlags.DEBUG and \
            not secs.attributes.flags & AttributesFlags.DEBUG:
        return SgxError.SGX_INVALID_EINITTOKEN
    if cpusvn_beyond(token.cpusvnle, cpu.platform.cpusvn):
        return SgxError.SGX_INVALID_CPUSVN
    key = derive_key(cpu.platform, einittoken_dependencies(token, lehash, cpu.platform))
    if einittoken_mac(key, raw) != token.mac:
        return SgxError.SGX_INVALID_EINITTOKEN
    if token.mrenclave != mrenclave or token.mrsigner != signer:
        return SgxError.SGX_INVALID_MEASUREMENT
    if token.attributes != secs.attributes:
        return SgxError.SGX_INVALID_ATTRIBUTE
    return None


def eremove(cpu: SgxProcessor, proc: LogicalProcessor, rbx: int, rcx: int,
            rdx: int) -> LeafResult:
    """ENCLS[EREMOVE]: free an EPC page (SDM EREMOVE). Removing an invalid page succeeds."""
    idx = cpu.epc_index(rcx)
    e = cpu.epcm
    if not e.valid(idx):
        return LeafResult(SUCCESS)
    pt = e.page_type(idx)
    if pt == PageType.PT_SECS:
        state = cpu.enclaves[idx]
        if state.children:
            return LeafResult(error(SgxError.SGX_CHILD_PRESENT))
        del cpu.enclaves[idx]
    elif pt in (PageType.PT_REG, PageType.PT_TCS, PageType.PT_TRIM):
        owner = cpu.enclaves[int(e.owner[idx])]
        accepted_trim = pt == PageType.PT_TRIM and not e.bits(idx) & m.MODIFIED
        if owner.inside and not accepted_trim:
            return LeafResult(error(SgxError.SGX_ENCLAVE_ACT))
        owner.children -= 1
    e.invalidate(idx)
    cpu.epc.wipe(idx)
    return LeafResult(SUCCESS)
