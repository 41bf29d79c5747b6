"""Enclave entry and exit: ENCLU[EENTER], ENCLU[ERESUME], ENCLU[EEXIT] and the asynchronous
enclave exit (SDM Vol. 3D "Enclave Exiting Events": 40.3 "Synthetic State on Asynchronous
Enclave Exit", 40.4 "AEX Flow"; the EENTER, ERESUME and EEXIT reference pages in 41.4; section
numbers of the 2016 edition, pseudocode of May 2018, ERESUME with its later AEX-Notify branch),
and ENCLU[EDECCSSA], the leaf that came with AEX-Notify and moves the current SSA frame.

The functions work on the engine's register buffer (see :mod:`vsgx.engine.registers` for the
slots) and on the TCS and SSA pages in the EPC, and raise :class:`~vsgx.cpu.SgxFault` for the
architectural faults. A :class:`Session` holds what the processor keeps while a logical
processor is in enclave mode (the SDM's CR_* registers: the active SECS, ELRANGE, the TCS, the
AEP, the saved FS/GS bases and TF, the physical location of the current SSA frame).

Not modelled: 32-bit enclaves (the engine runs 64-bit code), segment checks (64-bit mode has
flat segments), XCR0 switching (the guest's XCR0 always covers XFRM here), debug features
(breakpoint suppression, single-step, PEBS), CET state. Of the extended state an AEX saves,
the legacy region is kept (x87 and SSE: FCW, FSW, FTW, FOP, FIP, FDP, ST0-7, MXCSR, XMM0-15,
in the 64-bit FXSAVE layout); wider vector registers are not. An AEX leaves GPRSGX.AEXNOTIFY
as the enclave set it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vsgx.arch import (
    GPRSGX,
    PAGE_SIZE,
    TCS,
    AttributesFlags,
    MiscSelect,
    PageType,
    TcsFlags,
    Vector,
    exitinfo,
    ssa_exinfo_offset,
    ssa_gprsgx_offset,
)
from vsgx.arch.structs import EXITINFO_TYPE_HARDWARE, EXITINFO_TYPE_SOFTWARE
from vsgx.cpu import epcm as m
from vsgx.cpu.fault import SgxFault, gp, pf
from vsgx.cpu.processor import EnclaveState, SgxProcessor
from vsgx.engine.native import FPU_SIZE, RegisterArray
from vsgx.engine.registers import (
    FS_BASE,
    GS_BASE,
    R8,
    R15,
    RAX,
    RBP,
    RBX,
    RCX,
    RDI,
    RDX,
    RFLAGS,
    RIP,
    RSI,
    RSP,
)
from vsgx.engine.translate import PERM_R, PERM_RW, PERM_W, AddressSpace, pfec

ENCLU_LENGTH = 3
"""ENCLU is 0F 01 D7."""

_TCS = struct.Struct("<QQQIIQQQQ")
"""TCS.STATE, FLAGS, OSSA, CSSA, NSSA, OENTRY, AEP, OFSBASGX, OGSBASGX (SDM 38.8)."""
_TCS_DYNAMIC = struct.Struct("<QQ8xI")
"""The TCS fields that change after the TCS is built: STATE, FLAGS (EDBGWR), CSSA."""
_TCS_STATE = TCS.field_offset("state")
_TCS_CSSA_OFFSET = TCS.field_offset("cssa")
_TCS_AEP_OFFSET = TCS.field_offset("aep")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
TCS_ACTIVE = 1
_DBGOPTIN = int(TcsFlags.DBGOPTIN)
_TCS_AEXNOTIFY = int(TcsFlags.AEXNOTIFY)
_TCS_FLAGS_RESERVED = ~(_DBGOPTIN | _TCS_AEXNOTIFY)
_MODE64BIT = int(AttributesFlags.MODE64BIT)
_AEXNOTIFY = int(AttributesFlags.AEXNOTIFY)
_MISC_EXINFO = int(MiscSelect.EXINFO)
_PT_TCS = int(PageType.PT_TCS)
_PT_REG = int(PageType.PT_REG)
_CANONICAL = (0, 0x1FFFF)
"""Bits 63:47 of a canonical linear address (48-bit linear addresses)."""

_GPRSGX = struct.Struct("<20QI3xB2Q")
"""GPRSGX (SDM 38.9.1): RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15, RFLAGS, RIP, URSP,
URBP, EXITINFO, reserved, AEXNOTIFY, FSBASE, GSBASE."""
assert _GPRSGX.size == GPRSGX.SIZE
_GPRSGX_SAVED = struct.Struct("<20QI")
"""What an AEX writes from offset 0: the GPRs, RFLAGS, RIP, URSP, URBP and EXITINFO."""
_GPRSGX_BASES = struct.Struct("<2Q")
_BASES_OFFSET = GPRSGX.field_offset("fsbase")
_URSP_OFFSET = GPRSGX.field_offset("ursp")
_AEXNOTIFY_OFFSET = GPRSGX.field_offset("aexnotify")
_URSP_URBP = struct.Struct("<QQ")
_EXINFO = struct.Struct("<QII")
_GPR_ORDER = (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, *range(R8, R15 + 1))
"""Register-buffer slots in GPRSGX order."""
_AEX_ZEROED = (RDX, RSI, RDI, *range(R8, R15 + 1))

CF, PF, AF, ZF, SF, TF, IF, DF, OF = (1 << b for b in (0, 2, 4, 6, 7, 8, 9, 10, 11))
NT, RF, VM, AC, ID = (1 << b for b in (14, 16, 17, 18, 21))
IOPL = 3 << 12
_RESUMED_FLAGS = CF | PF | AF | ZF | SF | DF | OF | NT | AC | ID | RF
"""RFLAGS bits ERESUME restores from the SSA (IF only when IOPL = 3)."""
_AEX_CLEARED_FLAGS = CF | PF | AF | ZF | SF | OF | RF
"""RFLAGS bits an AEX clears (SDM 40.1)."""

_REPORTED_VECTORS = frozenset(int(v) for v in (Vector.DE, Vector.DB, Vector.BP, Vector.BR,
                                               Vector.UD, Vector.MF, Vector.AC, Vector.XM))
"""Exceptions whose vector an AEX always records in EXITINFO (SDM 38.9.1.1 Table 38-10)."""
_EXINFO_VECTORS = frozenset((int(Vector.PF), int(Vector.GP)))

# XSAVE legacy region (FXSAVE layout, SDM Vol. 1 10.5.1 Table 10-2) and header (13.4).
_X87 = (slice(0, 24), slice(32, 160))
"""The x87 bytes of the legacy region: FCW, FSW, FTW, FOP, FIP, FDP; ST0-7."""
_SSE = (slice(24, 28), slice(160, FPU_SIZE))
"""The SSE bytes XRSTOR loads: MXCSR; XMM0-15."""
_MXCSR = struct.Struct("<I")
_MXCSR_OFFSET = 24
_MXCSR_RESERVED = ~0xFFFF
"""MXCSR bits XRSTOR refuses (#GP) beyond MXCSR_MASK = FFFFH."""
_XSTATE_BV_OFFSET = 512
_XSAVE_RESERVED = slice(520, 536)
"""Header bytes ERESUME requires to be zero and an AEX clears (XCOMP_BV and the next 8)."""
XSTATE_X87 = 1 << 0
XSTATE_SSE = 1 << 1
FCW_INIT = 0x037F
MXCSR_INIT = 0x1F80
FPU_INIT = (FCW_INIT.to_bytes(2, "little") + bytes(_MXCSR_OFFSET - 2)
            + MXCSR_INIT.to_bytes(4, "little")).ljust(FPU_SIZE, b"\0")
"""x87 and SSE state in their INIT configuration (SDM Vol. 1 13.6: FCW 037FH, FSW 0, every
register empty, FOP/FIP/FDP 0, ST0-7 and XMM0-15 0, MXCSR 1F80H), in the layout of
:meth:`~vsgx.engine.native.Unicorn.read_fpu`: what an AEX leaves (SDM 40.3.2) and what
ERESUME's XRSTOR loads for a component whose XSTATE_BV bit is clear."""
_XSAVE_AREA = ((2, 576, 256), (3, 960, 64), (4, 1024, 64), (5, 1088, 64), (6, 1152, 512),
               (7, 1664, 1024), (9, 2688, 8), (17, 2752, 64), (18, 2816, 8192))
"""(XCR0 bit, standard-format offset, size) of the XSAVE components beyond x87/SSE
(CPUID.(EAX=0DH,ECX=i) on Intel processors)."""


def xsave_size(xfrm: int) -> int:
    """Bytes of the standard-format XSAVE area for the components in ``xfrm``."""
    return max([576] + [off + size for bit, off, size in _XSAVE_AREA if xfrm >> bit & 1])


def canonical(la: int) -> bool:
    """48-bit canonical form: bits 63:47 all equal."""
    return la >> 47 in _CANONICAL


@dataclass(frozen=True, slots=True)
class Frame:
    """Where one SSA frame lives: views of its XSAVE area (first page), its GPRSGX and, when
    MISCSELECT.EXINFO is set, its MISC.EXINFO."""

    xsave: memoryview
    gpr: memoryview
    exinfo: memoryview | None


@dataclass(eq=False, slots=True)
class Thread:
    """A TCS page found valid for entry (EPCM checks passed), what its fields that never
    change after the TCS is built imply (the entry point and the FS/GS bases, already
    checked), and its SSA frames as they get checked."""

    la: int
    index: int
    tcs: memoryview
    secs: int
    enclave: EnclaveState
    base: int
    end: int
    aexnotify: bool
    """SECS.ATTRIBUTES.AEXNOTIFY"""
    ossa: int
    nssa: int
    target: int
    fsbase: int
    gsbase: int
    frames: dict[int, Frame] = field(default_factory=dict)


@dataclass(eq=False)
class EntryCache:
    """TCS pages already validated for an entry, keyed by linear address: the checks depend
    only on the page tables and the EPCM, so the owner clears this when either changes."""

    threads: dict[int, Thread] = field(default_factory=dict)

    def clear(self) -> None:
        self.threads.clear()


@dataclass(eq=False, slots=True)
class Session:
    """A logical processor in enclave mode: the SDM's CR_ACTIVE_SECS, CR_ELRANGE, CR_TCS_LA
    and CR_TCS_PA (all in ``thread``), the AEP, CR_GPR_PA (``frame``), CR_SAVE_FS/GS,
    CR_SAVE_TF and CR_DBGOPTIN."""

    thread: Thread
    aep: int
    frame: Frame
    saved_fs: int
    saved_gs: int
    saved_tf: int
    optin: bool


@dataclass(frozen=True, slots=True)
class Cause:
    """The exception behind an AEX: vector, error code and, for #PF, the faulting linear
    address (CR2)."""

    vector: int
    error_code: int = 0
    address: int = 0


# -- locating and checking the TCS and the SSA ---------------------------------------------------

def _epc_page(cpu: SgxProcessor, aspace: AddressSpace, la: int, need: int) -> int:
    """EPC index behind the page at ``la``: the page walk must allow ``need`` (a paging #PF
    otherwise) and land in the EPC (#PF with PFEC.SGX otherwise)."""
    walk = aspace.translate(la)
    if walk is None or (walk[1] & need) != need:
        raise SgxFault(Vector.PF, pfec(PERM_W if need & PERM_W else PERM_R,
                                       present=walk is not None),
                       la, "the page tables do not map the page for this access")
    idx = cpu.epc.index_of(walk[0])
    if idx is None:
        raise pf(la, "the page is not in the EPC")
    return idx


def _check_epcm(cpu: SgxProcessor, idx: int, la: int, page_type: int, owner: int | None,
                need: int) -> None:
    """The EPCM checks EENTER and ERESUME make on the TCS and SSA pages: VALID, not BLOCKED,
    PENDING or MODIFIED, recorded at ``la`` with ``page_type``, owned by ``owner`` (when
    given) and granting ``need``; #PF(la) with PFEC.SGX otherwise."""
    e = cpu.epcm
    bits = e.bits(idx)
    if (not bits & m.VALID or bits & (m.BLOCKED | m.PENDING | m.MODIFIED)
            or e.linaddr.item(idx) != la or e.pt.item(idx) != page_type
            or (owner is not None and e.owner.item(idx) != owner) or (bits & need) != need):
        raise pf(la, "the EPCM entry does not allow this use of the page")


def _thread(cpu: SgxProcessor, aspace: AddressSpace, la: int, aep: int) -> Thread:
    """The checks EENTER and ERESUME make on the TCS page and its fixed fields."""
    idx = _epc_page(cpu, aspace, la, PERM_R)
    if not canonical(aep):
        raise gp(f"AEP {aep:#x} is not canonical")
    _check_epcm(cpu, idx, la, _PT_TCS, None, 0)
    tcs = cpu.epc.page(idx)
    _, _, ossa, _, nssa, oentry, _, ofsbase, ogsbase = _TCS.unpack_from(tcs)
    if (ossa | ofsbase | ogsbase) & (PAGE_SIZE - 1):
        raise gp("TCS.OSSA, OFSBASGX and OGSBASGX must be 4 KiB aligned")
    secs = cpu.epcm.owner.item(idx)
    state = cpu.enclaves[secs]
    attributes = int(state.secs.attributes.flags)
    if not attributes & _MODE64BIT:
        raise gp("a 32-bit enclave cannot be entered from 64-bit mode")
    base = state.base
    target, fsbase, gsbase = base + oentry, base + ofsbase, base + ogsbase
    if not (canonical(target) and canonical(fsbase) and canonical(gsbase)):
        raise gp("the entry point or an FS/GS base is not canonical")
    return Thread(la, idx, tcs, secs, state, base, base + state.size,
                  bool(attributes & _AEXNOTIFY), ossa, nssa, target, fsbase, gsbase)


def _frame(cpu: SgxProcessor, aspace: AddressSpace, thread: Thread, n: int) -> Frame:
    """SSA frame ``n`` of ``thread``, after the checks on each of its XSAVE pages and its
    GPRSGX page: read/write in the page tables, a valid PT_REG EPC page of this enclave at
    that address with R and W in the EPCM."""
    frame = thread.frames.get(n)
    if frame is not None:
        return frame
    state = thread.enclave
    s = state.secs
    ssa = thread.base + thread.ossa + n * s.ssaframesize * PAGE_SIZE
    gpr_la = ssa + ssa_gprsgx_offset(s.ssaframesize)
    pages = sorted({*range(ssa, ssa + xsave_size(s.attributes.xfrm), PAGE_SIZE),
                    gpr_la & ~(PAGE_SIZE - 1)})
    views = {}
    for la in pages:
        idx = _epc_page(cpu, aspace, la, PERM_RW)
        _check_epcm(cpu, idx, la, _PT_REG, thread.secs, m.R | m.W)
        views[la] = cpu.epc.page(idx)
    gpr_page = views[gpr_la & ~(PAGE_SIZE - 1)]
    gpr_off = gpr_la & (PAGE_SIZE - 1)
    exinfo = None
    if s.miscselect & _MISC_EXINFO:
        off = ssa_exinfo_offset(s.ssaframesize) % PAGE_SIZE
        exinfo = gpr_page[off : off + _EXINFO.size]
    frame = thread.frames[n] = Frame(views[ssa], gpr_page[gpr_off : gpr_off + GPRSGX.SIZE],
                                     exinfo)
    return frame


# -- EENTER / ERESUME -----------------------------------------------------------------------------

def enter(cpu: SgxProcessor, aspace: AddressSpace, lp: int, regs: RegisterArray, *,
          resume: bool, cache: EntryCache) -> tuple[Session, bytes | None]:
    """ENCLU[EENTER] (``resume`` False) or ENCLU[ERESUME] executed outside enclave mode at
    ``regs[RIP]``, with RBX = the TCS, RCX = the AEP (SDM EENTER and ERESUME "Operation").

    Updates ``regs`` to the state the enclave starts with and returns the session and, for an
    ERESUME, the x87 and SSE state to load (legacy-region bytes, see :func:`_xrstor`). EENTER
    leaves RAX = CSSA, RCX = the address after ENCLU, URSP/URBP saved in SSA[CSSA]; ERESUME
    restores GPRSGX and the XSAVE area of SSA[CSSA-1] and decrements CSSA. An ERESUME on a
    TCS with FLAGS.AEXNOTIFY whose frame has GPRSGX.AEXNOTIFY set enters at OENTRY like an
    EENTER instead, keeping CSSA.
    """
    tcs_la = regs[RBX]
    aep = regs[RCX]
    if tcs_la & (PAGE_SIZE - 1):
        raise gp(f"TCS address {tcs_la:#x} is not 4 KiB aligned")
    thread = cache.threads.get(tcs_la)
    if thread is None:
        thread = cache.threads[tcs_la] = _thread(cpu, aspace, tcs_la, aep)
    elif aep >> 47 not in _CANONICAL:
        raise gp(f"AEP {aep:#x} is not canonical")
    tcs = thread.tcs
    _, flags, cssa = _TCS_DYNAMIC.unpack_from(tcs)
    if flags & _TCS_FLAGS_RESERVED:
        raise gp(f"TCS.FLAGS {flags:#x} has reserved bits set")
    state = thread.enclave
    if not state.initialized:
        raise gp("the enclave is not initialized")
    if not flags & _DBGOPTIN and bool(flags & _TCS_AEXNOTIFY) != thread.aexnotify:
        raise gp("TCS.FLAGS.AEXNOTIFY differs from SECS.ATTRIBUTES.AEXNOTIFY")
    if resume and cssa == 0:
        raise gp("ERESUME with CSSA = 0: no frame to resume")
    n = cssa - 1 if resume else cssa
    if n >= thread.nssa:
        raise gp(f"CSSA {cssa} >= NSSA {thread.nssa}: no free SSA frame")
    frame = _frame(cpu, aspace, thread, n)
    entering = True
    if resume:
        if flags & _TCS_AEXNOTIFY and frame.gpr[_AEXNOTIFY_OFFSET] & 1:
            if cssa >= thread.nssa:
                raise gp(f"CSSA {cssa} >= NSSA {thread.nssa}: no frame for the notification")
            frame = _frame(cpu, aspace, thread, cssa)
        else:
            entering = False
    if entering:
        target, fsbase, gsbase = thread.target, thread.fsbase, thread.gsbase
        saved = None
        fpu = None
    else:
        saved = _GPRSGX.unpack_from(frame.gpr)
        target, fsbase, gsbase = saved[17], saved[22], saved[23]
        if not (canonical(target) and canonical(fsbase) and canonical(gsbase)):
            raise gp("the saved RIP or an FS/GS base is not canonical")
        fpu = _xrstor(frame.xsave, state.secs.attributes.xfrm)
    secs = thread.secs
    with cpu.lock:
        if _U64.unpack_from(tcs, _TCS_STATE)[0] == TCS_ACTIVE:
            raise gp("the TCS is busy (another logical processor is in it)")
        _U64.pack_into(tcs, _TCS_STATE, TCS_ACTIVE)
        _U64.pack_into(tcs, _TCS_AEP_OFFSET, aep)
        if not entering:
            _U32.pack_into(tcs, _TCS_CSSA_OFFSET, cssa - 1)
        processor = cpu.lps[lp]
        processor.enclave = secs
        processor.tcs = thread.index
        cpu.thread_entered(secs, lp)
    rflags = regs[RFLAGS]
    optin = bool(flags & _DBGOPTIN)
    session = Session(thread, aep, frame, regs[FS_BASE], regs[GS_BASE], rflags & TF, optin)
    if saved is None:
        _URSP_URBP.pack_into(frame.gpr, _URSP_OFFSET, regs[RSP], regs[RBP])
        regs[RCX] = regs[RIP] + ENCLU_LENGTH
        regs[RAX] = cssa
    else:
        for slot, value in zip(_GPR_ORDER, saved, strict=False):
            regs[slot] = value
        rflags = (rflags & ~(_RESUMED_FLAGS | VM)) | (saved[16] & _RESUMED_FLAGS)
        if rflags & IOPL == IOPL:
            rflags = (rflags & ~IF) | (saved[16] & IF)
    if not optin:
        rflags &= ~TF
    regs[RFLAGS] = rflags
    regs[RIP] = target
    regs[FS_BASE] = fsbase
    regs[GS_BASE] = gsbase
    return session, fpu


def _xrstor(xsave: memoryview, xfrm: int) -> bytes:
    """The x87 and SSE state ERESUME's XRSTOR loads from an SSA frame, as legacy-region bytes
    (SDM Vol. 1 13.8.1): each of the two components from the frame when its XSTATE_BV bit is
    set, its INIT configuration when clear. #GP on a malformed header or on an MXCSR with
    reserved bits set."""
    xstate_bv = _U64.unpack_from(xsave, _XSTATE_BV_OFFSET)[0]
    if xstate_bv & ~xfrm or any(xsave[_XSAVE_RESERVED]):
        raise gp("the XSAVE header of the SSA frame is invalid")
    if xstate_bv & XSTATE_SSE and _MXCSR.unpack_from(xsave, _MXCSR_OFFSET)[0] & _MXCSR_RESERVED:
        raise gp("the MXCSR in the SSA frame has reserved bits set")
    if xstate_bv & (XSTATE_X87 | XSTATE_SSE) == XSTATE_X87 | XSTATE_SSE:
        return bytes(xsave[:FPU_SIZE])
    state = bytearray(FPU_INIT)
    for bit, parts in ((XSTATE_X87, _X87), (XSTATE_SSE, _SSE)):
        if xstate_bv & bit:
            for part in parts:
                state[part] = xsave[part]
    return bytes(state)


# -- EEXIT and AEX ---------------------------------------------------------------------------------

def _leave(cpu: SgxProcessor, lp: int, s: Session, cssa_delta: int) -> None:
    tcs = s.thread.tcs
    with cpu.lock:
        if cssa_delta:
            cssa = _U32.unpack_from(tcs, _TCS_CSSA_OFFSET)[0]
            _U32.pack_into(tcs, _TCS_CSSA_OFFSET, cssa + cssa_delta)
        _U64.pack_into(tcs, _TCS_STATE, 0)
        processor = cpu.lps[lp]
        processor.enclave = None
        processor.tcs = None
        cpu.thread_exited(s.thread.secs, lp)


def _restore_outside(s: Session, regs: RegisterArray) -> None:
    regs[FS_BASE] = s.saved_fs
    regs[GS_BASE] = s.saved_gs
    if not s.optin:
        regs[RFLAGS] = (regs[RFLAGS] & ~TF) | s.saved_tf


def eexit(cpu: SgxProcessor, lp: int, s: Session, regs: RegisterArray) -> None:
    """ENCLU[EEXIT] (SDM EEXIT "Operation"): jump to RBX (#GP(0) if it is not canonical) with
    RCX = the AEP, FS/GS and TF as they were at entry, the TCS free again. No other register
    is touched: clearing secrets is the enclave's business."""
    target = regs[RBX]
    if target >> 47 not in _CANONICAL:
        raise gp(f"EEXIT target {target:#x} is not canonical")
    regs[RIP] = target
    regs[RCX] = s.aep
    _restore_outside(s, regs)
    _leave(cpu, lp, s, 0)


def aex(cpu: SgxProcessor, lp: int, s: Session, regs: RegisterArray, cause: Cause | None,
        fpu: bytes) -> None:
    """Asynchronous enclave exit (SDM 40.4 "AEX flow"): save the enclave's state in SSA[CSSA]
    (GPRSGX with TF cleared, the XSAVE area, EXITINFO and, if MISCSELECT.EXINFO, EXINFO for
    #PF/#GP), CSSA += 1, free the TCS, and load the synthetic state of Table 40-1: RAX = 3
    (ERESUME), RBX = TCS, RCX = RIP = AEP, RSP/RBP = the URSP/URBP EENTER saved, RDX, RSI,
    RDI, R8-R15 = 0, CF/PF/AF/ZF/SF/OF/RF cleared, FS/GS and TF as at entry.

    ``cause`` is None for an interrupt (EXITINFO not valid). ``fpu`` is the enclave's x87 and
    SSE state in the FXSAVE layout (:meth:`~vsgx.engine.native.Unicorn.read_fpu`): it becomes
    the legacy region of the frame's XSAVE area with XSTATE_BV bits 0 and 1 set; the caller
    then loads :data:`FPU_INIT`.
    """
    gpr = s.frame.gpr
    ursp, urbp = _URSP_URBP.unpack_from(gpr, _URSP_OFFSET)
    info = 0
    if cause is not None:
        v = cause.vector
        if v in _REPORTED_VECTORS:
            info = exitinfo(v, EXITINFO_TYPE_SOFTWARE if v == Vector.BP
                            else EXITINFO_TYPE_HARDWARE)
        elif v in _EXINFO_VECTORS and s.frame.exinfo is not None:
            info = exitinfo(v, EXITINFO_TYPE_HARDWARE)
            maddr = cause.address if v == Vector.PF else 0
            _EXINFO.pack_into(s.frame.exinfo, 0, maddr, cause.error_code, 0)
    _GPRSGX_SAVED.pack_into(gpr, 0, *(regs[slot] for slot in _GPR_ORDER),
                            regs[RFLAGS] & ~TF, regs[RIP], ursp, urbp, info)
    _GPRSGX_BASES.pack_into(gpr, _BASES_OFFSET, regs[FS_BASE], regs[GS_BASE])
    xsave = s.frame.xsave
    xsave[:FPU_SIZE] = fpu
    xstate_bv = _U64.unpack_from(xsave, _XSTATE_BV_OFFSET)[0]
    _U64.pack_into(xsave, _XSTATE_BV_OFFSET, xstate_bv | XSTATE_X87 | XSTATE_SSE)
    xsave[_XSAVE_RESERVED] = bytes(_XSAVE_RESERVED.stop - _XSAVE_RESERVED.start)
    _leave(cpu, lp, s, 1)
    for slot in _AEX_ZEROED:
        regs[slot] = 0
    regs[RAX] = 3
    regs[RBX] = s.thread.la
    regs[RCX] = s.aep
    regs[RSP] = ursp
    regs[RBP] = urbp
    regs[RIP] = s.aep
    regs[RFLAGS] &= ~_AEX_CLEARED_FLAGS
    _restore_outside(s, regs)


# -- EDECCSSA --------------------------------------------------------------------------------------

def edeccssa(cpu: SgxProcessor, aspace: AddressSpace, s: Session) -> None:
    """ENCLU[EDECCSSA] (SDM Vol. 3D EDECCSSA "Operation"; enumerated by
    CPUID.(EAX=12H,ECX=0):EAX[11]): make SSA frame CSSA-1 the current one without leaving the
    enclave, so that a handler entered on frame n can go back to frame n-1. #GP(0) if
    TCS.CSSA is 0; the checks on the target frame's XSAVE and GPRSGX pages are those of
    EENTER/ERESUME (#PF). Then TCS.CSSA -= 1 and CR_GPR_PA / CR_XSAVE_PAGE_n move to that
    frame: the next AEX saves there. No register or flag changes."""
    thread = s.thread
    cssa = _U32.unpack_from(thread.tcs, _TCS_CSSA_OFFSET)[0]
    if cssa == 0:
        raise gp("EDECCSSA with CSSA = 0")
    frame = _frame(cpu, aspace, thread, cssa - 1)
    with cpu.lock:
        _U32.pack_into(thread.tcs, _TCS_CSSA_OFFSET, cssa - 1)
    s.frame = frame
